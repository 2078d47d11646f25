//! Hotlines: dialed numbers, the schedule that picks their flow, and the
//! IVR's basic settings (基础设置).

use super::{create, load, remove, replace, same_id, Listing, READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_number, check_text, paginate, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchboard_storage::model::{self as m, Hotline, IvrSettings, TenantId, Versioned};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The IVR's basic settings for a hotline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IvrSettingsDoc {
    /// The prompt looped while a caller waits in a queue.
    pub waiting_prompt: Option<String>,
    /// Overrides the groups' max queue time for this hotline, seconds.
    pub max_queue_time_secs: Option<u32>,
    /// Played when the max queue time is reached.
    pub queue_timeout_prompt: Option<String>,
}

/// A hotline, as read and written. The number is unique across tenants.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HotlineDoc {
    /// The dialed number, as the trunk delivers it.
    pub number: String,
    pub name: String,
    /// The schedule that picks the flow.
    pub schedule: String,
    #[serde(default)]
    pub settings: IvrSettingsDoc,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub revision: Option<u64>,
}

fn yes() -> bool {
    true
}

fn settings_doc(s: IvrSettings) -> IvrSettingsDoc {
    IvrSettingsDoc {
        waiting_prompt: s.waiting_prompt,
        max_queue_time_secs: s
            .max_queue_time
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        queue_timeout_prompt: s.queue_timeout_prompt,
    }
}

fn doc_of(v: Versioned<Hotline>) -> HotlineDoc {
    let h = v.record;
    HotlineDoc {
        number: h.number,
        name: h.name,
        schedule: h.schedule,
        settings: settings_doc(h.settings),
        enabled: h.enabled,
        revision: Some(v.revision),
    }
}

async fn settings_of(
    state: &AppState,
    tenant: &TenantId,
    s: &IvrSettingsDoc,
    field: &str,
) -> ApiResult<IvrSettings> {
    for (name, p) in [
        ("waiting_prompt", &s.waiting_prompt),
        ("queue_timeout_prompt", &s.queue_timeout_prompt),
    ] {
        if let Some(p) = p {
            if state.store.get::<m::Prompt>(tenant, p).await?.is_none() {
                return Err(ApiError::field(
                    format!("{field}{name}"),
                    format!("no prompt {p:?}"),
                ));
            }
        }
    }
    let max_queue_time = match s.max_queue_time_secs {
        Some(v) if (1..=7200).contains(&v) => Some(Duration::from_secs(u64::from(v))),
        Some(_) => {
            return Err(ApiError::field(
                format!("{field}max_queue_time_secs"),
                "must be within 1..=7200 seconds",
            ))
        }
        None => None,
    };
    Ok(IvrSettings {
        waiting_prompt: s.waiting_prompt.clone(),
        max_queue_time,
        queue_timeout_prompt: s.queue_timeout_prompt.clone(),
    })
}

async fn hotline_of(state: &AppState, tenant: &TenantId, doc: &HotlineDoc) -> ApiResult<Hotline> {
    check_number("number", &doc.number)?;
    check_text("name", &doc.name, 200)?;
    if state
        .store
        .get::<m::IvrSchedule>(tenant, &doc.schedule)
        .await?
        .is_none()
    {
        return Err(ApiError::field(
            "schedule",
            format!("no schedule {:?}", doc.schedule),
        ));
    }
    Ok(Hotline {
        tenant: tenant.clone(),
        number: doc.number.clone(),
        name: doc.name.clone(),
        schedule: doc.schedule.clone(),
        settings: settings_of(state, tenant, &doc.settings, "settings.").await?,
        enabled: doc.enabled,
    })
}

/// The tenant's hotlines.
#[utoipa::path(get, path = "/hotlines", tag = "config", params(Listing),
    responses((status = 200, body = Page<HotlineDoc>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_hotlines(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Listing>,
) -> ApiResult<Json<Page<HotlineDoc>>> {
    caller.require(READ, "listing hotlines")?;
    let docs = state
        .store
        .list::<Hotline>(&caller.tenant)
        .await?
        .into_iter()
        .map(doc_of)
        .collect();
    Ok(Json(paginate(
        docs,
        |h: &HotlineDoc| &h.number,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One hotline.
#[utoipa::path(get, path = "/hotlines/{number}", tag = "config", params(("number" = String, Path)),
    responses((status = 200, body = HotlineDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_hotline(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(number): ApiPath<String>,
) -> ApiResult<Json<HotlineDoc>> {
    caller.require(READ, "reading hotlines")?;
    Ok(Json(doc_of(
        load::<Hotline>(&state, &caller.tenant, &number, "hotline").await?,
    )))
}

/// Creates a hotline. A number in use (by any tenant) is a 409.
#[utoipa::path(post, path = "/hotlines", tag = "config", request_body = HotlineDoc,
    responses((status = 201, body = HotlineDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_hotline(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<HotlineDoc>,
) -> ApiResult<(StatusCode, Json<HotlineDoc>)> {
    caller.require(WRITE, "creating hotlines")?;
    let h = hotline_of(&state, &caller.tenant, &doc).await?;
    let rev = create(&state, &h, "hotline").await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(Versioned {
            revision: rev,
            record: h,
        })),
    ))
}

/// Changes a hotline.
#[utoipa::path(put, path = "/hotlines/{number}", tag = "config", params(("number" = String, Path)),
    request_body = HotlineDoc,
    responses((status = 200, body = HotlineDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_hotline(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(number): ApiPath<String>,
    ApiJson(doc): ApiJson<HotlineDoc>,
) -> ApiResult<Json<HotlineDoc>> {
    caller.require(WRITE, "changing hotlines")?;
    let old = load::<Hotline>(&state, &caller.tenant, &number, "hotline").await?;
    same_id(&number, &doc.number).map_err(|e| e.in_field("number"))?;
    let h = hotline_of(&state, &caller.tenant, &doc).await?;
    let rev = replace(&state, &h, old.revision, doc.revision, "hotline").await?;
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: h,
    })))
}

/// Deletes a hotline.
#[utoipa::path(delete, path = "/hotlines/{number}", tag = "config", params(("number" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_hotline(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(number): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting hotlines")?;
    remove::<Hotline>(&state, &caller.tenant, &number, "hotline").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A hotline's IVR basic settings.
#[utoipa::path(get, path = "/hotlines/{number}/ivr-settings", tag = "config",
    params(("number" = String, Path)),
    responses((status = 200, body = IvrSettingsDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(number): ApiPath<String>,
) -> ApiResult<Json<IvrSettingsDoc>> {
    caller.require(READ, "reading hotlines")?;
    let h = load::<Hotline>(&state, &caller.tenant, &number, "hotline").await?;
    Ok(Json(settings_doc(h.record.settings)))
}

/// Changes a hotline's IVR basic settings (waiting audio, max queue time
/// and its audio).
#[utoipa::path(put, path = "/hotlines/{number}/ivr-settings", tag = "config",
    params(("number" = String, Path)), request_body = IvrSettingsDoc,
    responses((status = 200, body = IvrSettingsDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(number): ApiPath<String>,
    ApiJson(doc): ApiJson<IvrSettingsDoc>,
) -> ApiResult<Json<IvrSettingsDoc>> {
    caller.require(WRITE, "changing hotlines")?;
    let old = load::<Hotline>(&state, &caller.tenant, &number, "hotline").await?;
    let settings = settings_of(&state, &caller.tenant, &doc, "").await?;
    let mut h = old.record.clone();
    h.settings = settings;
    replace(&state, &h, old.revision, None, "hotline").await?;
    Ok(Json(settings_doc(h.settings)))
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_hotlines, create_hotline))
        .routes(routes!(get_hotline, update_hotline, delete_hotline))
        .routes(routes!(get_settings, put_settings))
}
