//! The tenant's trunk (中继): its way out to the telephone network.

use super::{load, remove, READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_len, check_number, check_text};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::mirror::TrunkTransport;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_storage::model::{Trunk, Versioned};
use switchboard_storage::{ErrorKind, Expect};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The trunk, as read and written. The password is write-only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrunkDoc {
    /// The gateway, `host:port` (port 5060 when left out).
    pub gateway: String,
    pub transport: TrunkTransport,
    /// Digest credentials for the gateway's challenges.
    pub username: Option<String>,
    /// Left out keeps the stored one; `""` removes it.
    #[serde(default, skip_serializing)]
    #[schema(write_only)]
    pub password: Option<String>,
    /// Whether a password is stored (read-only).
    #[serde(default)]
    pub password_set: bool,
    /// The number presented to called parties (主叫号码).
    pub caller_id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub revision: Option<u64>,
}

fn yes() -> bool {
    true
}

fn doc_of(v: Versioned<Trunk>) -> TrunkDoc {
    let t = v.record;
    TrunkDoc {
        gateway: t.gateway,
        transport: t.transport.into(),
        username: t.username,
        password: None,
        password_set: t.password.is_some(),
        caller_id: t.caller_id,
        enabled: t.enabled,
        revision: Some(v.revision),
    }
}

/// `host` or `host:port` with a port in 1..=65535.
fn check_gateway(g: &str) -> ApiResult<()> {
    check_text("gateway", g, 253)?;
    let (host, port) = match g.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (g, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ApiError::field(
            "gateway",
            format!("{g:?} is not host or host:port"),
        ))
    }
}

/// The trunk.
#[utoipa::path(get, path = "/trunk", tag = "config",
    responses((status = 200, body = TrunkDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_trunk(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<TrunkDoc>> {
    caller.require(READ, "reading the trunk")?;
    Ok(Json(doc_of(
        load::<Trunk>(&state, &caller.tenant, Trunk::ID, "trunk").await?,
    )))
}

/// Sets the trunk (creating it if there is none).
#[utoipa::path(put, path = "/trunk", tag = "config", request_body = TrunkDoc,
    responses((status = 200, body = TrunkDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn put_trunk(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<TrunkDoc>,
) -> ApiResult<Json<TrunkDoc>> {
    caller.require(WRITE, "changing the trunk")?;
    check_gateway(&doc.gateway)?;
    check_number("caller_id", &doc.caller_id)?;
    if let Some(u) = &doc.username {
        check_text("username", u, 128)?;
    }
    if let Some(p) = &doc.password {
        check_len("password", p, 128)?;
    }
    let old = state.store.get::<Trunk>(&caller.tenant, Trunk::ID).await?;
    let password = match &doc.password {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p.clone()),
        None => old.as_ref().and_then(|o| o.record.password.clone()),
    };
    let t = Trunk {
        tenant: caller.tenant.clone(),
        id: Trunk::ID.into(),
        gateway: doc.gateway.clone(),
        transport: doc.transport.into(),
        username: doc.username.clone(),
        password,
        caller_id: doc.caller_id.clone(),
        enabled: doc.enabled,
    };
    let expect = match (&old, doc.revision) {
        (_, Some(r)) => Expect::Revision(r),
        (Some(o), None) => Expect::Revision(o.revision),
        (None, None) => Expect::Absent,
    };
    let rev = state
        .store
        .put(&t, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => {
                ApiError::conflict("the trunk was changed meanwhile: read it again")
            }
            _ => e.into(),
        })?;
    state.changed(
        &caller.tenant,
        switchboard_storage::model::ConfigKind::Trunk,
        Trunk::ID,
    );
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: t,
    })))
}

/// Removes the trunk: no more calls out.
#[utoipa::path(delete, path = "/trunk", tag = "config",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_trunk(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    caller.require(WRITE, "removing the trunk")?;
    remove::<Trunk>(&state, &caller.tenant, Trunk::ID, "trunk").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_trunk, put_trunk, delete_trunk))
}
