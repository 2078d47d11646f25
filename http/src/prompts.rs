//! The prompt library (自定义语音库): TTS prompts (text and voice, spoken
//! at once so they can be heard), uploaded WAV files (checked: PCM WAV of
//! at most 3 MiB; any rate or channel count is converted to 8 kHz 16-bit
//! mono), their audio, and the review (审核): every new or changed prompt
//! is pending until a prompt reviewer approves it, or rejects it with a
//! reason; only approved prompts can be published in a flow.
//!
//! A prompt that a published flow or a hotline plays cannot be changed or
//! deleted (calls would hear a prompt nobody approved): make a new one
//! and publish a flow version that uses it.

use crate::auth::Caller;
use crate::common::{check_id, check_text, now, paginate, Page};
use crate::config::{load, WRITE};
use crate::error::{ApiError, ApiResult};
use crate::extract::{body_error, too_large, ApiJson, ApiPath, ApiQuery};
use crate::mirror::{ReviewStatus, Role};
use crate::tts::TtsError;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use switchboard_actors::ivr::FlowExt;
use switchboard_media::rtp::prompt::{decode_wav, encode_wav, Prompt as Audio};
use switchboard_storage::model::{
    self as m, ConfigKind, Prompt, PromptSource, Review, TenantId, Versioned,
};
use switchboard_storage::{ErrorKind, Expect};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

/// The largest WAV upload.
pub const WAV_LIMIT: usize = 3 * 1024 * 1024;
/// The longest TTS text.
const TEXT_LIMIT: usize = 1000;

/// A WAV file (the request or response body itself).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only describes the body in the OpenAPI document.
pub struct WavFile(Vec<u8>);

/// Where a prompt's audio comes from.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PromptSourceDoc {
    /// Spoken by the TTS engine.
    Tts { text: String, voice: String },
    /// An uploaded WAV file, kept as 8 kHz 16-bit mono.
    Wav { sha256: String, duration_ms: u32 },
}

/// Where a prompt is in its review.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewDoc {
    pub status: ReviewStatus,
    pub reviewer: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// ms since the Unix epoch.
    pub at: Option<u64>,
}

/// A prompt of the library.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PromptDoc {
    pub id: String,
    pub name: String,
    pub source: PromptSourceDoc,
    pub review: ReviewDoc,
    /// ms since the Unix epoch.
    pub created: u64,
    pub revision: u64,
}

fn doc_of(v: Versioned<Prompt>) -> PromptDoc {
    let p = v.record;
    PromptDoc {
        id: p.id,
        name: p.name,
        source: match p.source {
            PromptSource::Tts { text, voice } => PromptSourceDoc::Tts { text, voice },
            PromptSource::Wav {
                sha256,
                duration_ms,
                ..
            } => PromptSourceDoc::Wav {
                sha256,
                duration_ms,
            },
        },
        review: ReviewDoc {
            status: p.review.status.into(),
            reviewer: p.review.reviewer,
            reason: p.review.reason,
            at: p.review.at.map(|t| t.0),
        },
        created: p.created.0,
        revision: v.revision,
    }
}

/// A TTS prompt, created or replaced.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtsPrompt {
    pub name: String,
    /// What to say (at most 1000 characters).
    pub text: String,
    /// The TTS voice: `cmn` (Mandarin), `yue` (Cantonese), `en-us`…
    pub voice: String,
    /// The revision read, to refuse a concurrent change.
    pub revision: Option<u64>,
}

/// A review decision.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecision {
    /// `approved` or `rejected`.
    pub status: ReviewStatus,
    /// Required when rejecting.
    pub reason: Option<String>,
}

/// Filters of the prompt list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PromptQuery {
    /// Only prompts in this review status (reviewers: `pending`).
    status: Option<ReviewStatus>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// The name of a WAV upload.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WavQuery {
    /// The prompt's name (default: its id).
    name: Option<String>,
}

/// Who may read the library: the admins who build flows and the
/// reviewers who review it.
const READERS: &[Role] = &[Role::TenantAdmin, Role::Supervisor, Role::PromptReviewer];

/// The directory of a tenant's prompt files, relative to the data
/// directory (as the node resolves prompt files).
fn tenant_dir(tenant: &TenantId) -> PathBuf {
    let name = if check_id("", &tenant.0).is_ok() {
        tenant.0.clone()
    } else {
        hex::encode(&tenant.0)
    };
    Path::new("prompts").join(name)
}

async fn write_file(state: &AppState, rel: &Path, bytes: Vec<u8>) -> ApiResult<()> {
    let path = state.data_dir.join(rel);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| ApiError::internal("cannot make the prompt directory", e))?;
    }
    // Written aside and renamed, so a reader never sees half a file.
    let tmp = path.with_extension("wav.part");
    tokio::fs::write(&tmp, &bytes)
        .await
        .map_err(|e| ApiError::internal("cannot write the prompt file", e))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| ApiError::internal("cannot write the prompt file", e))
}

/// Where the speech of a TTS prompt is kept once made.
fn tts_file(tenant: &TenantId, text: &str, voice: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(voice.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    let digest = hex::encode(h.finalize());
    tenant_dir(tenant).join(format!("tts-{}.wav", &digest[..32]))
}

async fn speak(state: &AppState, text: &str, voice: &str) -> ApiResult<Audio> {
    let speaker = state.speaker.clone();
    let (text, voice) = (text.to_owned(), voice.to_owned());
    tokio::task::spawn_blocking(move || speaker.speak(&text, &voice))
        .await
        .map_err(|e| ApiError::internal("TTS stopped", e))?
        .map_err(|e| match e {
            TtsError::Refused(m) => ApiError::field("voice", m),
            e => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        })
}

/// 409 if a published flow or a hotline plays prompt `id`.
async fn refuse_if_live(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
    doing: &str,
) -> ApiResult<()> {
    if let Some(flow) =
        crate::flows::published_use(state, tenant, |f| f.prompts().contains(id)).await?
    {
        return Err(ApiError::conflict(format!(
            "the published flow {flow:?} plays prompt {id:?}, so it cannot be {doing}: make a new prompt and publish a flow version that uses it"
        )));
    }
    for h in state.store.list::<m::Hotline>(tenant).await? {
        let s = &h.record.settings;
        if s.waiting_prompt.as_deref() == Some(id) || s.queue_timeout_prompt.as_deref() == Some(id)
        {
            return Err(ApiError::conflict(format!(
                "hotline {:?} plays prompt {id:?}, so it cannot be {doing}",
                h.record.number
            )));
        }
    }
    Ok(())
}

/// Writes a new or changed prompt, pending review.
async fn save(
    state: &AppState,
    caller: &Caller,
    id: &str,
    name: String,
    source: PromptSource,
    revision: Option<u64>,
) -> ApiResult<(StatusCode, Json<PromptDoc>)> {
    let old = state.store.get::<Prompt>(&caller.tenant, id).await?;
    if old.is_some() {
        refuse_if_live(state, &caller.tenant, id, "changed").await?;
    }
    let p = Prompt {
        tenant: caller.tenant.clone(),
        id: id.to_owned(),
        name,
        source,
        review: Review::pending(),
        created: old.as_ref().map(|o| o.record.created).unwrap_or_else(now),
    };
    let expect = match (revision, &old) {
        (Some(r), _) => Expect::Revision(r),
        (None, Some(o)) => Expect::Revision(o.revision),
        (None, None) => Expect::Absent,
    };
    let rev = state
        .store
        .put(&p, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => ApiError::conflict(format!(
                "prompt {id:?} was changed meanwhile: read it again"
            )),
            _ => e.into(),
        })?;
    state.changed(&caller.tenant, ConfigKind::Prompt, id);
    let status = if old.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(doc_of(Versioned {
            revision: rev,
            record: p,
        })),
    ))
}

/// The library.
#[utoipa::path(get, path = "/prompts", tag = "prompts", params(PromptQuery),
    responses((status = 200, body = Page<PromptDoc>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_prompts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PromptQuery>,
) -> ApiResult<Json<Page<PromptDoc>>> {
    caller.require(READERS, "listing prompts")?;
    let docs: Vec<PromptDoc> = state
        .store
        .list::<Prompt>(&caller.tenant)
        .await?
        .into_iter()
        .map(doc_of)
        .filter(|p| q.status.is_none_or(|s| p.review.status == s))
        .collect();
    Ok(Json(paginate(
        docs,
        |p| &p.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One prompt.
#[utoipa::path(get, path = "/prompts/{id}", tag = "prompts", params(("id" = String, Path)),
    responses((status = 200, body = PromptDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_prompt(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<PromptDoc>> {
    caller.require(READERS, "reading prompts")?;
    Ok(Json(doc_of(
        load::<Prompt>(&state, &caller.tenant, &id, "prompt").await?,
    )))
}

/// Creates or replaces a TTS prompt; the speech is made at once (a voice
/// the engine does not have is a 422). The prompt is then pending review.
#[utoipa::path(put, path = "/prompts/{id}", tag = "prompts", params(("id" = String, Path)),
    request_body = TtsPrompt,
    responses((status = 200, body = PromptDoc), (status = 201, body = PromptDoc),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn put_tts(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TtsPrompt>,
) -> ApiResult<(StatusCode, Json<PromptDoc>)> {
    caller.require(WRITE, "changing prompts")?;
    check_id("id", &id)?;
    check_text("name", &body.name, 200)?;
    check_text("text", &body.text, TEXT_LIMIT)?;
    if body.voice.is_empty()
        || body.voice.len() > 32
        || !body
            .voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
    {
        return Err(ApiError::field(
            "voice",
            format!("{:?} is not a voice name", body.voice),
        ));
    }
    let audio = speak(&state, &body.text, &body.voice).await?;
    let wav =
        encode_wav(audio.samples()).map_err(|e| ApiError::internal("cannot encode speech", e))?;
    write_file(
        &state,
        &tts_file(&caller.tenant, &body.text, &body.voice),
        wav,
    )
    .await?;
    let source = PromptSource::Tts {
        text: body.text,
        voice: body.voice,
    };
    save(&state, &caller, &id, body.name, source, body.revision).await
}

/// A WAV request body.
struct WavBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for WavBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<WavBody> {
        let ok_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "audio/wav"
                        | "audio/x-wav"
                        | "audio/wave"
                        | "audio/vnd.wave"
                        | "application/octet-stream"
                )
            })
            .unwrap_or(false);
        if !ok_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the WAV file as the body with Content-Type: audio/wav",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let e = body_error(e);
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(WAV_LIMIT)
            } else {
                e
            }
        })?;
        if bytes.len() > WAV_LIMIT {
            return Err(too_large(WAV_LIMIT));
        }
        Ok(WavBody(bytes))
    }
}

/// Checks an upload and makes it 8 kHz 16-bit mono.
fn convert_wav(bytes: &[u8]) -> ApiResult<Audio> {
    let reader = hound::WavReader::new(bytes)
        .map_err(|e| ApiError::field("body", format!("not a WAV file: {e}")))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int {
        return Err(ApiError::field(
            "body",
            "the WAV file holds floating-point samples: upload PCM (integer) audio",
        ));
    }
    decode_wav(bytes).map_err(|e| ApiError::field("body", e.to_string()))
}

/// Creates or replaces a prompt from a WAV file (the request body, PCM,
/// at most 3 MiB); it is converted to 8 kHz 16-bit mono and is then
/// pending review.
#[utoipa::path(put, path = "/prompts/{id}/wav", tag = "prompts",
    params(("id" = String, Path), WavQuery),
    request_body(content((WavFile = "audio/wav"), (WavFile = "application/octet-stream"))),
    responses((status = 200, body = PromptDoc), (status = 201, body = PromptDoc),
        (status = 409, body = crate::error::ErrorBody),
        (status = 413, description = "larger than 3 MiB", body = crate::error::ErrorBody),
        (status = 415, body = crate::error::ErrorBody),
        (status = 422, description = "not a PCM WAV file", body = crate::error::ErrorBody)))]
async fn put_wav(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WavQuery>,
    WavBody(bytes): WavBody,
) -> ApiResult<(StatusCode, Json<PromptDoc>)> {
    caller.require(WRITE, "uploading prompts")?;
    check_id("id", &id)?;
    let name = q.name.unwrap_or_else(|| id.clone());
    check_text("name", &name, 200)?;
    let audio = tokio::task::spawn_blocking(move || convert_wav(&bytes))
        .await
        .map_err(|e| ApiError::internal("WAV conversion stopped", e))??;
    let wav = encode_wav(audio.samples())
        .map_err(|e| ApiError::internal("cannot encode the prompt", e))?;
    let sha256 = hex::encode(Sha256::digest(&wav));
    let rel = tenant_dir(&caller.tenant).join(format!("{id}-{}.wav", &sha256[..16]));
    write_file(&state, &rel, wav).await?;
    let source = PromptSource::Wav {
        file: rel.to_string_lossy().into_owned(),
        sha256,
        duration_ms: u32::try_from(audio.duration().as_millis()).unwrap_or(u32::MAX),
    };
    save(&state, &caller, &id, name, source, None).await
}

/// A prompt's audio: 8 kHz 16-bit mono WAV.
#[utoipa::path(get, path = "/prompts/{id}/audio", tag = "prompts", params(("id" = String, Path)),
    responses((status = 200, content_type = "audio/wav", body = WavFile),
        (status = 404, body = crate::error::ErrorBody)))]
async fn get_audio(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    caller.require(READERS, "listening to prompts")?;
    let p = load::<Prompt>(&state, &caller.tenant, &id, "prompt")
        .await?
        .record;
    let bytes = match &p.source {
        PromptSource::Wav { file, .. } => {
            let path = resolve(&state.data_dir, file)
                .ok_or_else(|| ApiError::not_found(format!("prompt {id:?} has no audio file")))?;
            tokio::fs::read(&path).await.map_err(|_| {
                ApiError::not_found(format!("the audio of prompt {id:?} is missing"))
            })?
        }
        PromptSource::Tts { text, voice } => {
            let path = state.data_dir.join(tts_file(&caller.tenant, text, voice));
            match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(_) => {
                    let audio = speak(&state, text, voice).await?;
                    let wav = encode_wav(audio.samples())
                        .map_err(|e| ApiError::internal("cannot encode speech", e))?;
                    let rel = tts_file(&caller.tenant, text, voice);
                    write_file(&state, &rel, wav.clone()).await?;
                    wav
                }
            }
        }
    };
    Ok(([(header::CONTENT_TYPE, "audio/wav")], Body::from(bytes)).into_response())
}

/// A file named in a record, inside the data directory (a relative name,
/// or an absolute one under it); anything else is refused.
pub(crate) fn resolve(data_dir: &Path, file: &str) -> Option<PathBuf> {
    let p = Path::new(file);
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return None;
    }
    if p.is_absolute() {
        p.starts_with(data_dir).then(|| p.to_path_buf())
    } else {
        Some(data_dir.join(p))
    }
}

/// Approves a prompt, or rejects it with a reason (prompt reviewers).
#[utoipa::path(post, path = "/prompts/{id}/review", tag = "prompts", params(("id" = String, Path)),
    request_body = ReviewDecision,
    responses((status = 200, body = PromptDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn review(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReviewDecision>,
) -> ApiResult<Json<PromptDoc>> {
    caller.require(&[Role::PromptReviewer], "reviewing prompts")?;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    match body.status {
        ReviewStatus::Pending => {
            return Err(ApiError::field("status", "a review approves or rejects"))
        }
        ReviewStatus::Rejected if reason.is_none() => {
            return Err(ApiError::field("reason", "a rejection needs a reason"))
        }
        _ => {}
    }
    if let Some(r) = reason {
        check_text("reason", r, 500)?;
    }
    load::<Prompt>(&state, &caller.tenant, &id, "prompt").await?;
    if body.status == ReviewStatus::Rejected {
        refuse_if_live(&state, &caller.tenant, &id, "rejected").await?;
    }
    state
        .store
        .review_prompt(
            &caller.tenant,
            &id,
            body.status.into(),
            &caller.user,
            reason,
            now(),
        )
        .await?;
    state.changed(&caller.tenant, ConfigKind::Prompt, &id);
    Ok(Json(doc_of(
        load::<Prompt>(&state, &caller.tenant, &id, "prompt").await?,
    )))
}

/// Deletes a prompt nothing live plays.
#[utoipa::path(delete, path = "/prompts/{id}", tag = "prompts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
async fn delete_prompt(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting prompts")?;
    load::<Prompt>(&state, &caller.tenant, &id, "prompt").await?;
    refuse_if_live(&state, &caller.tenant, &id, "deleted").await?;
    crate::config::remove::<Prompt>(&state, &caller.tenant, &id, "prompt").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_prompts))
        .routes(routes!(get_prompt, put_tts, delete_prompt))
        .routes(routes!(put_wav).layer(DefaultBodyLimit::max(WAV_LIMIT + 64 * 1024)))
        .routes(routes!(get_audio))
        .routes(routes!(review))
}
