//! Schedules: working hours per weekday, special dates (特殊时间) and the
//! flows they run.

use super::{create, load, remove, replace, same_id, Listing, READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_id, check_text, format_date, paginate, parse_date, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_storage::model::{
    self as m, Hours, IvrSchedule, Schedule, SpecialDates, TenantId, Versioned,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Opening hours `[start, end)`, local `HH:MM` (`24:00` ends the day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursDoc {
    #[schema(example = "09:00")]
    pub start: String,
    #[schema(example = "18:00")]
    pub end: String,
}

/// A special date or range with a flow of its own.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecialDatesDoc {
    /// E.g. 国庆节.
    pub name: String,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day (included).
    pub to: String,
    pub flow: String,
    /// Opening hours on these days; absent: the flow runs all day.
    pub hours: Option<Vec<HoursDoc>>,
}

/// A schedule, as read and written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDoc {
    pub id: String,
    pub name: String,
    /// The regular flow (日常IVR).
    pub regular: String,
    /// Working hours, Monday first: exactly 7 lists; an empty list is a
    /// day closed.
    pub week: Vec<Vec<HoursDoc>>,
    /// Overrides; the first match wins.
    #[serde(default)]
    pub special: Vec<SpecialDatesDoc>,
    /// The flow outside working hours.
    pub closed: String,
    pub revision: Option<u64>,
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn minutes(field: &str, s: &str) -> ApiResult<u16> {
    let bad = || ApiError::field(field, format!("{s:?} is not a time HH:MM (00:00 to 24:00)"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn hours_doc(h: &[Hours]) -> Vec<HoursDoc> {
    h.iter()
        .map(|h| HoursDoc {
            start: hhmm(h.start),
            end: hhmm(h.end),
        })
        .collect()
}

fn hours_of(field: &str, hs: &[HoursDoc]) -> ApiResult<Vec<Hours>> {
    hs.iter()
        .enumerate()
        .map(|(i, h)| {
            let start = minutes(&format!("{field}[{i}].start"), &h.start)?;
            let end = minutes(&format!("{field}[{i}].end"), &h.end)?;
            if start >= end {
                return Err(ApiError::field(
                    format!("{field}[{i}]"),
                    "the start must be before the end",
                ));
            }
            Ok(Hours { start, end })
        })
        .collect()
}

fn doc_of(v: Versioned<IvrSchedule>) -> ScheduleDoc {
    let s = v.record.schedule;
    ScheduleDoc {
        id: v.record.id,
        name: v.record.name,
        regular: s.regular,
        week: s.week.iter().map(|d| hours_doc(d)).collect(),
        special: s
            .special
            .into_iter()
            .map(|x| SpecialDatesDoc {
                name: x.name,
                from: format_date(x.from),
                to: format_date(x.to),
                flow: x.flow,
                hours: x.hours.as_deref().map(hours_doc),
            })
            .collect(),
        closed: s.closed,
        revision: Some(v.revision),
    }
}

async fn flow_exists(state: &AppState, tenant: &TenantId, field: &str, id: &str) -> ApiResult<()> {
    if state.store.get::<m::IvrFlow>(tenant, id).await?.is_none() {
        return Err(ApiError::field(field, format!("no flow {id:?}")));
    }
    Ok(())
}

async fn schedule_of(
    state: &AppState,
    tenant: &TenantId,
    doc: &ScheduleDoc,
) -> ApiResult<IvrSchedule> {
    check_id("id", &doc.id)?;
    check_text("name", &doc.name, 200)?;
    flow_exists(state, tenant, "regular", &doc.regular).await?;
    flow_exists(state, tenant, "closed", &doc.closed).await?;
    if doc.week.len() != 7 {
        return Err(ApiError::field(
            "week",
            format!("needs 7 days (Monday first), got {}", doc.week.len()),
        ));
    }
    let mut week: [Vec<Hours>; 7] = Default::default();
    for (i, day) in doc.week.iter().enumerate() {
        if let Some(slot) = week.get_mut(i) {
            *slot = hours_of(&format!("week[{i}]"), day)?;
        }
    }
    let mut special = Vec::new();
    for (i, s) in doc.special.iter().enumerate() {
        let f = |x: &str| format!("special[{i}].{x}");
        check_text(&f("name"), &s.name, 100)?;
        let from = parse_date(&f("from"), &s.from)?;
        let to = parse_date(&f("to"), &s.to)?;
        if from > to {
            return Err(ApiError::field(f("to"), "the last day is before the first"));
        }
        flow_exists(state, tenant, &f("flow"), &s.flow).await?;
        special.push(SpecialDates {
            name: s.name.clone(),
            from,
            to,
            flow: s.flow.clone(),
            hours: match &s.hours {
                Some(h) => Some(hours_of(&f("hours"), h)?),
                None => None,
            },
        });
    }
    Ok(IvrSchedule {
        tenant: tenant.clone(),
        id: doc.id.clone(),
        name: doc.name.clone(),
        schedule: Schedule {
            regular: doc.regular.clone(),
            week,
            special,
            closed: doc.closed.clone(),
        },
    })
}

/// The tenant's schedules.
#[utoipa::path(get, path = "/schedules", tag = "config", params(Listing),
    responses((status = 200, body = Page<ScheduleDoc>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Listing>,
) -> ApiResult<Json<Page<ScheduleDoc>>> {
    caller.require(READ, "listing schedules")?;
    let docs = state
        .store
        .list::<IvrSchedule>(&caller.tenant)
        .await?
        .into_iter()
        .map(doc_of)
        .collect();
    Ok(Json(paginate(
        docs,
        |s: &ScheduleDoc| &s.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One schedule.
#[utoipa::path(get, path = "/schedules/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = ScheduleDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ScheduleDoc>> {
    caller.require(READ, "reading schedules")?;
    Ok(Json(doc_of(
        load::<IvrSchedule>(&state, &caller.tenant, &id, "schedule").await?,
    )))
}

/// Creates a schedule.
#[utoipa::path(post, path = "/schedules", tag = "config", request_body = ScheduleDoc,
    responses((status = 201, body = ScheduleDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<ScheduleDoc>,
) -> ApiResult<(StatusCode, Json<ScheduleDoc>)> {
    caller.require(WRITE, "creating schedules")?;
    let s = schedule_of(&state, &caller.tenant, &doc).await?;
    let rev = create(&state, &s, "schedule").await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(Versioned {
            revision: rev,
            record: s,
        })),
    ))
}

/// Changes a schedule.
#[utoipa::path(put, path = "/schedules/{id}", tag = "config", params(("id" = String, Path)),
    request_body = ScheduleDoc,
    responses((status = 200, body = ScheduleDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(doc): ApiJson<ScheduleDoc>,
) -> ApiResult<Json<ScheduleDoc>> {
    caller.require(WRITE, "changing schedules")?;
    let old = load::<IvrSchedule>(&state, &caller.tenant, &id, "schedule").await?;
    same_id(&id, &doc.id)?;
    let s = schedule_of(&state, &caller.tenant, &doc).await?;
    let rev = replace(&state, &s, old.revision, doc.revision, "schedule").await?;
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: s,
    })))
}

/// Deletes a schedule no hotline uses.
#[utoipa::path(delete, path = "/schedules/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting schedules")?;
    load::<IvrSchedule>(&state, &caller.tenant, &id, "schedule").await?;
    if let Some(h) = state
        .store
        .list::<m::Hotline>(&caller.tenant)
        .await?
        .into_iter()
        .find(|h| h.record.schedule == id)
    {
        return Err(ApiError::conflict(format!(
            "hotline {:?} uses schedule {id:?}",
            h.record.number
        )));
    }
    remove::<IvrSchedule>(&state, &caller.tenant, &id, "schedule").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules, create_schedule))
        .routes(routes!(get_schedule, update_schedule, delete_schedule))
}
