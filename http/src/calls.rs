//! Call records (通话记录): by day with filters, by agent, by customer
//! number, newest first, with the store's opaque cursors; one call; its
//! recording.
//!
//! Admins, supervisors and QA inspectors see every call; an agent sees
//! the calls it talked on. Recordings are for admins, supervisors and QA
//! inspectors.

use crate::auth::Caller;
use crate::common::{day_or_today, format_date, page_request, Page};
use crate::config::tenant_record;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::mirror::{
    DialOutcome, Direction, HangupReason, HangupSide, LegKind, OverflowReason, RingOutcome, Role,
};
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_storage::model::{self as m, AgentId, CallId, CallRecord, Timestamp};
use switchboard_storage::{CallFilter, TimeRange};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const CALLS: &[Role] = &[
    Role::TenantAdmin,
    Role::Supervisor,
    Role::QaInspector,
    Role::Agent,
];
const RECORDINGS: &[Role] = &[Role::TenantAdmin, Role::Supervisor, Role::QaInspector];

/// A call id from its hex form.
pub(crate) fn call_id(hex: &str) -> Option<CallId> {
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(CallId)
}

/// A call the caller may see, or a 404.
pub(crate) async fn call_of(state: &AppState, caller: &Caller, hex: &str) -> ApiResult<CallRecord> {
    caller.require(CALLS, "reading call records")?;
    let r = match call_id(hex) {
        Some(id) => state.store.get_call(&caller.tenant, id).await?,
        None => None,
    };
    r.filter(|r| visible(caller, r))
        .ok_or_else(|| ApiError::not_found(format!("no call {hex:?}")))
}

fn visible(caller: &Caller, r: &CallRecord) -> bool {
    !caller.agent_only() || (r.agent.is_some() && r.agent == caller.agent)
}

/// One ring of an agent's phone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RingDoc {
    pub agent: String,
    pub start: u64,
    pub end: u64,
    pub outcome: RingOutcome,
}

/// One leg: a dialog with one party.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LegDoc {
    pub kind: LegKind,
    pub party: String,
    pub start: u64,
    pub answered: Option<u64>,
    pub end: u64,
}

/// One blind transfer (转接).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransferDoc {
    pub at: u64,
    /// The agent who had the customer until then.
    pub by: String,
    /// `agent`, `group` or `number`.
    pub to: String,
    /// The agent's id, the group's id or the number.
    pub target: String,
    /// `blind` (盲转), `consulted` (咨询转: the agent talked to the target
    /// first), `taken_over` (强拆: `target` is the supervisor who took
    /// the call from `by`).
    #[schema(value_type = String)]
    pub how: m::TransferKind,
}

/// Where the number is from (归属地).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocationDoc {
    pub place: String,
    pub carrier: Option<String>,
}

/// What the caller did in the IVR.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IvrDoc {
    /// Node ids in the order visited.
    pub path: Vec<String>,
    pub keys: String,
    pub vars: BTreeMap<String, String>,
}

/// How a call's satisfaction survey went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SurveyOutcome {
    /// No survey ran (the customer hung up first, no survey configured,
    /// no agent talked).
    NotOffered,
    /// The customer pressed a level's key.
    Scored,
    /// A key that is no level's, and no valid answer when asked once more.
    InvalidKey,
    /// No key before the survey's timeout.
    Timeout,
    /// The customer hung up during the survey.
    HungUp,
}

/// The survey's outcome with its key and score.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SurveyDoc {
    pub outcome: SurveyOutcome,
    /// The level's score; only when `scored`.
    pub score: Option<u8>,
    /// The key pressed: the level's when `scored`, the last wrong key
    /// when `invalid_key`.
    pub key: Option<String>,
}

fn survey_doc(s: m::Satisfaction) -> SurveyDoc {
    let (outcome, key) = match s {
        m::Satisfaction::NotOffered => (SurveyOutcome::NotOffered, None),
        m::Satisfaction::Scored { key, .. } => (SurveyOutcome::Scored, Some(key)),
        m::Satisfaction::InvalidKey { key } => (SurveyOutcome::InvalidKey, Some(key)),
        m::Satisfaction::Timeout => (SurveyOutcome::Timeout, None),
        m::Satisfaction::HungUp => (SurveyOutcome::HungUp, None),
    };
    SurveyDoc {
        outcome,
        score: s.score(),
        key: key.map(String::from),
    }
}

/// Where an unanswered call went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverflowDoc {
    /// `group`, `ivr_node`, `number`, `voicemail` or `hang_up`.
    pub to: String,
    pub target: Option<String>,
    pub reason: OverflowReason,
}

/// A call record. Times are ms since the Unix epoch, durations ms.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallDoc {
    /// The call's id (hex).
    pub call: String,
    /// The tenant-local day, `YYYY-MM-DD`.
    pub day: String,
    pub direction: Direction,
    pub caller: String,
    pub dialed: String,
    pub customer_number: String,
    pub customer: Option<String>,
    pub location: Option<LocationDoc>,
    pub start: u64,
    pub end: u64,
    pub ivr: IvrDoc,
    pub group: Option<String>,
    pub enqueued: Option<u64>,
    pub dequeued: Option<u64>,
    pub rings: Vec<RingDoc>,
    pub agent: Option<String>,
    pub answered: Option<u64>,
    pub talk_end: Option<u64>,
    pub queue_ms: u64,
    pub ring_ms: u64,
    pub talk_ms: u64,
    /// Time the customer spent on hold (consultations included), and how
    /// many times it was put on hold.
    pub hold_ms: u64,
    pub holds: u32,
    pub overflow: Option<OverflowDoc>,
    pub hangup_side: HangupSide,
    pub hangup_reason: HangupReason,
    pub voicemail: bool,
    /// The survey score, if the customer gave one (`survey.score`).
    pub satisfaction: Option<u8>,
    /// How the survey went.
    pub survey: SurveyDoc,
    pub legs: Vec<LegDoc>,
    /// Whether a recording can be downloaded.
    pub recorded: bool,
    /// Outbound calls: how dialing the customer ended.
    pub outcome: Option<DialOutcome>,
    /// The agents' transfers, in order.
    pub transfers: Vec<TransferDoc>,
    /// The caller asked to be called back from the queue (排队回拨).
    pub callback: Option<CallbackDoc>,
}

/// A callback the caller asked for while waiting.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallbackDoc {
    /// When the caller pressed the key, ms since the Unix epoch.
    pub requested: u64,
    /// When its number was dialed (an agent had answered); null: never.
    pub dialed: Option<u64>,
    /// How dialing it ended (`answered`, `busy`, `no_answer`, …).
    pub outcome: Option<String>,
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn call_doc(r: CallRecord) -> CallDoc {
    let t = |x: Option<Timestamp>| x.map(|t| t.0);
    CallDoc {
        queue_ms: ms(r.queue_time()),
        ring_ms: ms(r.ring_time()),
        talk_ms: ms(r.talk_time()),
        hold_ms: ms(r.hold_time()),
        holds: u32::try_from(r.holds.len()).unwrap_or(u32::MAX),
        call: r.call.to_string(),
        day: format_date(r.day.date()),
        direction: r.direction.into(),
        caller: r.caller,
        dialed: r.dialed,
        customer_number: r.customer_number,
        customer: r.customer,
        location: r.location.map(|l| LocationDoc {
            place: l.place,
            carrier: l.carrier,
        }),
        start: r.start.0,
        end: r.end.0,
        ivr: IvrDoc {
            path: r.ivr.path,
            keys: r.ivr.keys,
            vars: r.ivr.vars,
        },
        group: r.group,
        enqueued: t(r.enqueued),
        dequeued: t(r.dequeued),
        rings: r
            .rings
            .into_iter()
            .map(|x| RingDoc {
                agent: x.agent.0,
                start: x.start.0,
                end: x.end.0,
                outcome: x.outcome.into(),
            })
            .collect(),
        agent: r.agent.map(|a| a.0),
        answered: t(r.answered),
        talk_end: t(r.talk_end),
        overflow: r.overflow.map(|(o, reason)| {
            let (to, target) = match o {
                m::Overflow::Group(g) => ("group", Some(g)),
                m::Overflow::IvrNode(n) => ("ivr_node", Some(n)),
                m::Overflow::Number(n) => ("number", Some(n)),
                m::Overflow::Voicemail => ("voicemail", None),
                m::Overflow::HangUp => ("hang_up", None),
            };
            OverflowDoc {
                to: to.into(),
                target,
                reason: reason.into(),
            }
        }),
        hangup_side: r.hangup_side.into(),
        hangup_reason: r.hangup_reason.into(),
        voicemail: r.voicemail,
        satisfaction: r.satisfaction.score(),
        survey: survey_doc(r.satisfaction),
        legs: r
            .legs
            .into_iter()
            .map(|l| LegDoc {
                kind: l.kind.into(),
                party: l.party,
                start: l.start.0,
                answered: t(l.answered),
                end: l.end.0,
            })
            .collect(),
        recorded: r.recording.is_some(),
        outcome: r.outcome.map(Into::into),
        transfers: r
            .transfers
            .into_iter()
            .map(|x| {
                let (to, target) = match x.to {
                    m::TransferTarget::Agent(a) => ("agent", a.0),
                    m::TransferTarget::Group(g) => ("group", g),
                    m::TransferTarget::Number(n) => ("number", n),
                };
                TransferDoc {
                    at: x.at.0,
                    by: x.by.0,
                    to: to.into(),
                    target,
                    how: x.how,
                }
            })
            .collect(),
        callback: r.callback.map(|c| CallbackDoc {
            requested: c.requested.0,
            dialed: c.dialed.map(|t| t.0),
            outcome: c.outcome.map(|o| o.as_str().to_owned()),
        }),
    }
}

/// Filters of a day's calls.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DayQuery {
    /// The tenant-local day, `YYYY-MM-DD` (default today).
    day: Option<String>,
    /// Started at or after (ms since the epoch).
    from: Option<u64>,
    /// Started before.
    to: Option<u64>,
    agent: Option<String>,
    group: Option<String>,
    direction: Option<Direction>,
    /// Answered by an agent, or not.
    answered: Option<bool>,
    hangup_side: Option<HangupSide>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A time range and page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RangeQuery {
    /// Started at or after (ms since the epoch).
    from: Option<u64>,
    /// Started before.
    to: Option<u64>,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn range(from: Option<u64>, to: Option<u64>) -> TimeRange {
    TimeRange {
        from: from.map(Timestamp),
        to: to.map(Timestamp),
    }
}

fn page_of(p: switchboard_storage::Page<CallRecord>, caller: &Caller) -> Page<CallDoc> {
    Page {
        items: p
            .items
            .into_iter()
            .filter(|r| visible(caller, r))
            .map(call_doc)
            .collect(),
        next: p.next.map(|c| c.0),
    }
}

/// The calls of a day, with filters. An agent gets its own calls.
#[utoipa::path(get, path = "/calls", tag = "calls", params(DayQuery),
    responses((status = 200, body = Page<CallDoc>), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn list_calls(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> ApiResult<Json<Page<CallDoc>>> {
    caller.require(CALLS, "listing call records")?;
    let offset = tenant_record(&state, &caller.tenant)
        .await?
        .utc_offset_minutes;
    let day = day_or_today("day", q.day.as_deref(), offset)?;
    let mut agent = q.agent.map(AgentId);
    if caller.agent_only() {
        if agent.is_some() && agent != caller.agent {
            return Err(ApiError::forbidden("an agent sees its own calls only"));
        }
        agent = caller.agent.clone();
        if agent.is_none() {
            return Ok(Json(Page {
                items: Vec::new(),
                next: None,
            }));
        }
    }
    let filter = CallFilter {
        range: range(q.from, q.to),
        agent,
        group: q.group,
        direction: q.direction.map(Into::into),
        answered: q.answered,
        hangup_side: q.hangup_side.map(Into::into),
    };
    let page = page_request(q.cursor, q.limit)?;
    let p = state
        .store
        .calls_by_day(&caller.tenant, day, &filter, &page)
        .await
        .map_err(|e| ApiError::from(e).in_field("cursor"))?;
    Ok(Json(page_of(p, &caller)))
}

/// The calls an agent talked on.
#[utoipa::path(get, path = "/agents/{agent}/calls", tag = "calls",
    params(("agent" = String, Path), RangeQuery),
    responses((status = 200, body = Page<CallDoc>), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn agent_calls(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Json<Page<CallDoc>>> {
    caller.require(CALLS, "listing call records")?;
    let agent = AgentId(agent);
    let own = caller.agent.as_ref() == Some(&agent);
    if caller.agent_only() && !own {
        return Err(ApiError::not_found(format!("no agent {:?}", agent.0)));
    }
    if !own
        && state
            .store
            .get::<m::Agent>(&caller.tenant, &agent.0)
            .await?
            .is_none()
    {
        return Err(ApiError::not_found(format!("no agent {:?}", agent.0)));
    }
    let page = page_request(q.cursor, q.limit)?;
    let p = state
        .store
        .calls_by_agent(&caller.tenant, &agent, range(q.from, q.to), &page)
        .await
        .map_err(|e| ApiError::from(e).in_field("cursor"))?;
    Ok(Json(page_of(p, &caller)))
}

/// The calls with a customer number. An agent gets its own calls.
#[utoipa::path(get, path = "/numbers/{number}/calls", tag = "calls",
    params(("number" = String, Path), RangeQuery),
    responses((status = 200, body = Page<CallDoc>), (status = 422, body = crate::error::ErrorBody)))]
async fn number_calls(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(number): ApiPath<String>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Json<Page<CallDoc>>> {
    caller.require(CALLS, "listing call records")?;
    crate::common::check_number("number", &number)?;
    let page = page_request(q.cursor, q.limit)?;
    let p = state
        .store
        .calls_by_number(&caller.tenant, &number, range(q.from, q.to), &page)
        .await
        .map_err(|e| ApiError::from(e).in_field("cursor"))?;
    Ok(Json(page_of(p, &caller)))
}

/// One call.
#[utoipa::path(get, path = "/calls/{call}", tag = "calls", params(("call" = String, Path)),
    responses((status = 200, body = CallDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(call): ApiPath<String>,
) -> ApiResult<Json<CallDoc>> {
    Ok(Json(call_doc(call_of(&state, &caller, &call).await?)))
}

/// A call's recording: stereo WAV, the customer left and the agent right.
/// Streamed from the file; one byte range (`Range: bytes=…`) gets 206, so
/// a browser's player can seek.
#[utoipa::path(get, path = "/calls/{call}/recording", tag = "calls", params(("call" = String, Path)),
    responses((status = 200, content_type = "audio/wav", body = crate::prompts::WavFile),
        (status = 206, content_type = "audio/wav", description = "the byte range asked for", body = crate::prompts::WavFile),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 416, description = "the range is past the end of the recording", body = crate::error::ErrorBody)))]
async fn recording(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(call): ApiPath<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    caller.require(RECORDINGS, "listening to recordings")?;
    let r = call_of(&state, &caller, &call).await?;
    let Some(file) = r.recording.as_deref() else {
        return Err(ApiError::not_found(format!(
            "call {call:?} was not recorded"
        )));
    };
    let missing = || ApiError::not_found(format!("the recording of call {call:?} is missing"));
    let path = crate::prompts::resolve(&state.data_dir, file).ok_or_else(missing)?;
    let mut f = tokio::fs::File::open(&path).await.map_err(|_| missing())?;
    let len = f.metadata().await.map_err(|_| missing())?.len();
    let asked = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, len));
    let (status, start, end) = match asked {
        None | Some(Ok(None)) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok(Some((a, b)))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the recording has {len} bytes: that range is past its end"),
            )
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| ApiError::internal("cannot read the recording", e))?;
    // 64 KiB at a time: an hour's recording is not held in memory.
    let chunks = futures_util::stream::unfold((f, count), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; left.min(64 * 1024) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let disposition = format!("attachment; filename=\"call-{}.wav\"", r.call);
    let mut res = (
        status,
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::ACCEPT_RANGES, "bytes".to_owned()),
            (header::CONTENT_LENGTH, count.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            res.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(res)
}

/// One byte range of a `Range` header (RFC 9110 §14.1.2) over `len`
/// bytes, inclusive: `Ok(None)` to send the whole (not a bytes range,
/// several ranges, or malformed: a server may ignore it), `Err` when it
/// starts past the end.
fn byte_range(header: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=-n: the last n.
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (Ok(start), Err(_)) if b.is_empty() => (start, len.saturating_sub(1)),
        (Ok(start), Ok(end)) if start <= end => (start, end.min(len.saturating_sub(1))),
        _ => return Ok(None),
    };
    if range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls))
        .routes(routes!(agent_calls))
        .routes(routes!(number_calls))
        .routes(routes!(get_call))
        .routes(routes!(recording))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-43", 1000), Ok(Some((0, 43))));
        assert_eq!(byte_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(byte_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(byte_range("bytes=-5000", 1000), Ok(Some((0, 999))));
        assert_eq!(byte_range("bytes=990-2000", 1000), Ok(Some((990, 999))));
        assert_eq!(byte_range("bytes=1000-", 1000), Err(()));
        assert_eq!(byte_range("bytes=-0", 1000), Err(()));
        // Ignored: the whole is sent.
        assert_eq!(byte_range("bytes=0-1,5-9", 1000), Ok(None));
        assert_eq!(byte_range("items=0-1", 1000), Ok(None));
        assert_eq!(byte_range("bytes=9-2", 1000), Ok(None));
        assert_eq!(byte_range("bytes=x-", 1000), Ok(None));
    }
}
