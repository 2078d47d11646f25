//! Configuration (tenant admins write; supervisors read): one module per
//! area, the store plumbing they share here, and the tenant's settings.

mod agents;
mod forms;
mod groups;
mod hotlines;
mod schedules;
mod sip;
mod statuses;
mod trunk;
mod users;

use crate::auth::Caller;
use crate::common::check_text;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::mirror::Role;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchboard_storage::model::{ConfigRecord, Tenant, TenantId, Versioned};
use switchboard_storage::{ErrorKind, Expect};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use agents::sync_agent_policies;
pub use agents::DeviceDoc;
pub(crate) use forms::{plain_fields, typed_fields, Form};

/// Who may change configuration.
pub(crate) const WRITE: &[Role] = &[Role::TenantAdmin];
/// Who may read it.
pub(crate) const READ: &[Role] = &[Role::TenantAdmin, Role::Supervisor];

/// A record of the caller's tenant, or a 404 naming it.
pub(crate) async fn load<T: ConfigRecord>(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
    what: &str,
) -> ApiResult<Versioned<T>> {
    state
        .store
        .get::<T>(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {what} {id:?}")))
}

/// Creates a record: 409 if its id is taken.
pub(crate) async fn create<T: ConfigRecord>(
    state: &AppState,
    record: &T,
    what: &str,
) -> ApiResult<u64> {
    let rev = state
        .store
        .put(record, Expect::Absent)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => {
                ApiError::conflict(format!("{what} {:?} exists already", record.id()))
            }
            _ => e.into(),
        })?;
    state.changed(record.tenant(), T::KIND, record.id());
    Ok(rev)
}

/// Replaces a record read at revision `current`; `asked` is the revision
/// the client saw, if it sent one (409 if it moved on).
pub(crate) async fn replace<T: ConfigRecord>(
    state: &AppState,
    record: &T,
    current: u64,
    asked: Option<u64>,
    what: &str,
) -> ApiResult<u64> {
    let rev = state
        .store
        .put(record, Expect::Revision(asked.unwrap_or(current)))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => ApiError::conflict(format!(
                "{what} {:?} was changed meanwhile: read it again",
                record.id()
            )),
            _ => e.into(),
        })?;
    state.changed(record.tenant(), T::KIND, record.id());
    Ok(rev)
}

/// Deletes a record that exists (404 if not).
pub(crate) async fn remove<T: ConfigRecord>(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
    what: &str,
) -> ApiResult<()> {
    let v = load::<T>(state, tenant, id, what).await?;
    state
        .store
        .delete::<T>(tenant, id, Expect::Revision(v.revision))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => {
                ApiError::conflict(format!("{what} {id:?} was changed meanwhile: try again"))
            }
            _ => e.into(),
        })?;
    state.changed(tenant, T::KIND, id);
    Ok(())
}

/// The path id and the body's must agree.
pub(crate) fn same_id(path: &str, body: &str) -> ApiResult<()> {
    if path == body {
        Ok(())
    } else {
        Err(ApiError::field(
            "id",
            format!("the body says {body:?} but the path says {path:?}"),
        ))
    }
}

/// The tenant's record (every tenant with users has one).
pub(crate) async fn tenant_record(state: &AppState, tenant: &TenantId) -> ApiResult<Tenant> {
    Ok(load::<Tenant>(state, tenant, Tenant::ID, "tenant")
        .await?
        .record)
}

/// The tenant's call-center-wide settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// The tenant's id (read-only).
    #[serde(default)]
    pub id: String,
    pub name: String,
    /// Minutes east of UTC of the tenant's local time (China: 480).
    pub utc_offset_minutes: i32,
    /// Answered within this many seconds counts toward the service level.
    pub service_level_secs: u32,
    /// Whether the IVR and overflow may transfer to outside numbers.
    pub allow_external_transfer: bool,
    /// The survey flow played after the agent hangs up, if any.
    pub survey_flow: Option<String>,
    /// Callers waiting in a queue may ask to be called back (排队回拨);
    /// offered only while the tenant has a trunk. Absent: not offered.
    #[serde(default)]
    pub queue_callback: Option<QueueCallbackDoc>,
    /// After-call work after an outbound call the customer answered, in
    /// seconds (0..=3600; inbound calls take their skill group's).
    #[serde(default)]
    pub outbound_wrap_up_secs: u32,
    /// The SIP domains the tenant's phones register under (their AOR's
    /// host). A node serving one tenant takes any domain for it; with
    /// several tenants each needs its own, used by no other tenant.
    #[serde(default)]
    pub sip_domains: Vec<String>,
    /// The revision read; send it back to refuse a concurrent change.
    pub revision: Option<u64>,
}

/// The callback offer: waiting callers hear `offer` on entering the
/// queue, press `key` (a digit, `*` or `#`), hear `confirm` and may hang
/// up; their call keeps its place and they are dialed once an agent
/// answers it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueCallbackDoc {
    pub key: String,
    /// Prompt ids.
    pub offer: String,
    pub confirm: String,
}

/// The tenant's settings.
#[utoipa::path(get, path = "/tenant", tag = "config",
    responses((status = 200, body = TenantSettings),
        (status = 403, body = crate::error::ErrorBody)))]
async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TenantSettings>> {
    caller.require(READ, "reading the tenant settings")?;
    let v = load::<Tenant>(&state, &caller.tenant, Tenant::ID, "tenant").await?;
    Ok(Json(settings_of(v)))
}

fn settings_of(v: Versioned<Tenant>) -> TenantSettings {
    let t = v.record;
    TenantSettings {
        id: t.tenant.0,
        name: t.name,
        utc_offset_minutes: t.utc_offset_minutes,
        service_level_secs: u32::try_from(t.service_level.as_secs()).unwrap_or(u32::MAX),
        allow_external_transfer: t.allow_external_transfer,
        survey_flow: t.survey_flow,
        queue_callback: t.queue_callback.map(|q| QueueCallbackDoc {
            key: q.key.to_string(),
            offer: q.offer,
            confirm: q.confirm,
        }),
        outbound_wrap_up_secs: u32::try_from(t.outbound_wrap_up.as_secs()).unwrap_or(u32::MAX),
        sip_domains: t.sip_domains,
        revision: Some(v.revision),
    }
}

/// Changes the tenant's settings.
#[utoipa::path(put, path = "/tenant", tag = "config", request_body = TenantSettings,
    responses((status = 200, body = TenantSettings),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn put_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TenantSettings>,
) -> ApiResult<Json<TenantSettings>> {
    caller.require(WRITE, "changing the tenant settings")?;
    check_text("name", &body.name, 200)?;
    if !(-720..=840).contains(&body.utc_offset_minutes) {
        return Err(ApiError::field(
            "utc_offset_minutes",
            "must be within -720..=840 (UTC-12:00 to UTC+14:00)",
        ));
    }
    if !(1..=3600).contains(&body.service_level_secs) {
        return Err(ApiError::field(
            "service_level_secs",
            "must be within 1..=3600",
        ));
    }
    if body.outbound_wrap_up_secs > 3600 {
        return Err(ApiError::field(
            "outbound_wrap_up_secs",
            "must be within 0..=3600",
        ));
    }
    let sip_domains = sip_domains(&state, &caller.tenant, &body.sip_domains).await?;
    if let Some(f) = &body.survey_flow {
        load::<switchboard_storage::model::IvrFlow>(&state, &caller.tenant, f, "flow")
            .await
            .map_err(|_| ApiError::field("survey_flow", format!("no flow {f:?}")))?;
    }
    let queue_callback = match body.queue_callback {
        None => None,
        Some(q) => {
            let mut chars = q.key.chars();
            let key = match (chars.next(), chars.next()) {
                (Some(k), None) if k.is_ascii_digit() || k == '*' || k == '#' => k,
                _ => {
                    return Err(ApiError::field(
                        "queue_callback.key",
                        "one key: a digit, * or #",
                    ))
                }
            };
            for (field, id) in [
                ("queue_callback.offer", &q.offer),
                ("queue_callback.confirm", &q.confirm),
            ] {
                load::<switchboard_storage::model::Prompt>(&state, &caller.tenant, id, "prompt")
                    .await
                    .map_err(|_| ApiError::field(field, format!("no prompt {id:?}")))?;
            }
            Some(switchboard_storage::model::QueueCallback {
                key,
                offer: q.offer,
                confirm: q.confirm,
            })
        }
    };
    let v = load::<Tenant>(&state, &caller.tenant, Tenant::ID, "tenant").await?;
    let mut t = v.record.clone();
    t.queue_callback = queue_callback;
    t.sip_domains = sip_domains;
    t.outbound_wrap_up = Duration::from_secs(u64::from(body.outbound_wrap_up_secs));
    t.name = body.name;
    t.utc_offset_minutes = body.utc_offset_minutes;
    t.service_level = Duration::from_secs(u64::from(body.service_level_secs));
    t.allow_external_transfer = body.allow_external_transfer;
    t.survey_flow = body.survey_flow;
    let rev = replace(&state, &t, v.revision, body.revision, "tenant").await?;
    Ok(Json(settings_of(Versioned {
        revision: rev,
        record: t,
    })))
}

/// `asked` as host names in lower case, each once, none another
/// tenant's.
async fn sip_domains(
    state: &AppState,
    tenant: &TenantId,
    asked: &[String],
) -> ApiResult<Vec<String>> {
    let mut domains: Vec<String> = Vec::new();
    for d in asked {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let host_like = !d.is_empty()
            && d.len() <= 253
            && d.split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !host_like {
            return Err(ApiError::field(
                "sip_domains",
                format!("{d:?} is not a host name"),
            ));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    if domains.is_empty() {
        return Ok(domains);
    }
    let others = state.store.list_tenants().await?;
    for other in others.iter().filter(|t| *t != tenant) {
        let Ok(t) = load::<Tenant>(state, other, Tenant::ID, "tenant").await else {
            continue;
        };
        if let Some(d) = domains.iter().find(|d| t.record.sip_domains.contains(d)) {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!("the SIP domain {d} is another tenant's"),
            ));
        }
    }
    Ok(domains)
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_tenant, put_tenant))
        .merge(users::routes())
        .merge(sip::routes())
        .merge(agents::routes())
        .merge(groups::routes())
        .merge(statuses::routes())
        .merge(hotlines::routes())
        .merge(trunk::routes())
        .merge(schedules::routes())
        .merge(forms::routes())
}

/// Cursor and limit of a configuration listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Listing {
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// At most this many items (1..=1000, default 50).
    pub limit: Option<u32>,
}
