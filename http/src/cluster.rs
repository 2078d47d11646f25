//! The cluster as the answering node sees it: `GET /cluster` (members and
//! their health) and `GET /cluster/placement` (which node an entity lives
//! on now). Tenant admins and supervisors may read them; so may an
//! operator holding the cluster cookie (header `X-Switchboard-Cookie`),
//! which is how `switchboard cluster status` asks. With the cookie, on a
//! node started with `--fault-injection`, `POST /cluster/fault` makes an
//! agent's or a skill group's actor panic, to see it recover (game days).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::mirror::Role;
use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The header that carries the cluster cookie.
pub const COOKIE_HEADER: &str = "x-switchboard-cookie";

const READERS: &[Role] = &[Role::TenantAdmin, Role::Supervisor];

/// What the node tells of its cluster.
pub trait ClusterInfo: Send + Sync {
    fn status(&self) -> ClusterNow;
    /// The node `(tenant, kind, id)` lives on now.
    fn home(&self, tenant: &str, kind: EntityKind, id: &str) -> String;
    /// Whether `cookie` is the cluster's (compared in constant time).
    fn cookie_ok(&self, cookie: &str) -> bool;
    /// Starts draining this node (idempotent): no new calls, the others
    /// take its entities, it exits once its calls have ended.
    fn drain(&self) -> ClusterNow;
}

/// Fault injection on the node's actors.
pub trait Faults: Send + Sync {
    /// Makes the actor of `(tenant, kind, id)` running on this node panic
    /// in its handler; `Err` says why not (it does not run here).
    fn panic(&self, tenant: &str, kind: EntityKind, id: &str) -> Result<(), String>;
}

/// An actor to make panic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub tenant: String,
    /// `agent` or `skill_group`.
    pub kind: EntityKind,
    pub id: String,
}

/// The members, this node first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterNow {
    /// The answering node.
    pub node: String,
    /// A node on its own (started without `--cluster`).
    pub standalone: bool,
    /// The answering node is draining: it takes no new calls and exits
    /// once its calls have ended.
    pub draining: bool,
    /// Calls up on the answering node.
    pub calls: u64,
    /// Silence after which a member is down.
    pub down_after_ms: u64,
    pub members: Vec<MemberNow>,
}

/// One member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberNow {
    /// Absent until it is first heard.
    pub name: Option<String>,
    /// Its cluster address.
    pub addr: String,
    /// `up`, `down`, `left` (drained) or `joining` (known, never heard).
    pub health: String,
    /// Time in this health.
    pub for_ms: u64,
    pub last_heard_ms: Option<u64>,
    /// The last heartbeat round trip, in microseconds.
    pub rtt_us: Option<u64>,
    /// When the member's process started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// A cluster session is open to it.
    pub connected: bool,
    /// The answering node.
    pub me: bool,
}

/// The kinds of entity placed on a home node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Agent,
    SkillGroup,
    TelesalesTask,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlacementQuery {
    pub kind: EntityKind,
    pub id: String,
    /// The caller's own tenant if absent; needed with the cookie.
    pub tenant: Option<String>,
}

/// Where an entity lives.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Placement {
    pub tenant: String,
    pub kind: EntityKind,
    pub id: String,
    /// Its home node now.
    pub node: String,
    /// The members up it was chosen among.
    pub members: Vec<String>,
}

/// Who is asking: a signed-in admin or supervisor, or an operator with
/// the cookie.
enum Reader {
    User(Caller),
    Operator,
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Reader> {
        if let Some(v) = parts.headers.get(COOKIE_HEADER) {
            let ok = v
                .to_str()
                .ok()
                .zip(state.cluster.as_ref())
                .is_some_and(|(c, info)| info.cookie_ok(c));
            if !ok {
                return Err(ApiError::unauthorized("wrong cluster cookie"));
            }
            return Ok(Reader::Operator);
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(READERS, "the cluster's status")?;
        Ok(Reader::User(caller))
    }
}

fn info(state: &AppState) -> ApiResult<&dyn ClusterInfo> {
    state.cluster.as_deref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server runs no node",
        )
    })
}

#[utoipa::path(get, path = "/cluster", tag = "cluster",
    responses((status = 200, body = ClusterNow), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn status(State(state): State<AppState>, _: Reader) -> ApiResult<Json<ClusterNow>> {
    Ok(Json(info(&state)?.status()))
}

#[utoipa::path(get, path = "/cluster/placement", tag = "cluster", params(PlacementQuery),
    responses((status = 200, body = Placement), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn placement(
    State(state): State<AppState>,
    reader: Reader,
    ApiQuery(q): ApiQuery<PlacementQuery>,
) -> ApiResult<Json<Placement>> {
    let tenant = match (&reader, q.tenant) {
        (Reader::User(c), Some(t)) if t != c.tenant.0 => {
            return Err(ApiError::forbidden("another tenant's placement"));
        }
        (Reader::User(c), _) => c.tenant.0.clone(),
        (Reader::Operator, Some(t)) => t,
        (Reader::Operator, None) => {
            return Err(ApiError::bad_request("name the tenant: ?tenant=…"));
        }
    };
    if q.id.is_empty() || q.id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("id: give the entity's id"));
    }
    let info = info(&state)?;
    let node = info.home(&tenant, q.kind, &q.id);
    let members = info
        .status()
        .members
        .into_iter()
        .filter(|m| m.health == "up")
        .filter_map(|m| m.name)
        .collect();
    Ok(Json(Placement {
        tenant,
        kind: q.kind,
        id: q.id,
        node,
        members,
    }))
}

/// Drains the answering node: it refuses new calls (SIP 503), its
/// entities go to the other members, and it exits once its calls have
/// ended (bounded by its drain timeout). Only with the cluster cookie:
/// this is the operator's, not a tenant's.
#[utoipa::path(post, path = "/cluster/drain", tag = "cluster",
    responses((status = 202, body = ClusterNow), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn drain(
    State(state): State<AppState>,
    reader: Reader,
) -> ApiResult<(axum::http::StatusCode, Json<ClusterNow>)> {
    if let Reader::User(_) = reader {
        return Err(ApiError::forbidden(
            "draining a node takes the cluster cookie (X-Switchboard-Cookie)",
        ));
    }
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(info(&state)?.drain()),
    ))
}

/// Makes an agent's or a skill group's actor on the answering node panic
/// in its handler, as a bug would: it recovers (rebuilt from the store,
/// its status or its queue kept) and the node logs and counts it
/// (`switchboard_actor_recoveries_total`). Only with the cluster cookie,
/// on a node started with `--fault-injection`.
#[utoipa::path(post, path = "/cluster/fault", tag = "cluster", request_body = FaultRequest,
    responses((status = 202, description = "the actor was told to panic"),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn fault(
    State(state): State<AppState>,
    reader: Reader,
    crate::extract::ApiJson(req): crate::extract::ApiJson<FaultRequest>,
) -> ApiResult<axum::http::StatusCode> {
    if let Reader::User(_) = reader {
        return Err(ApiError::forbidden(
            "fault injection takes the cluster cookie (X-Switchboard-Cookie)",
        ));
    }
    let Some(faults) = state.faults.as_deref() else {
        return Err(ApiError::forbidden(
            "fault injection is off on this node (serve --fault-injection)",
        ));
    };
    if req.kind == EntityKind::TelesalesTask {
        return Err(ApiError::bad_request(
            "kind: an agent or a skill_group can be made to panic",
        ));
    }
    faults
        .panic(&req.tenant, req.kind, &req.id)
        .map_err(ApiError::not_found)?;
    Ok(axum::http::StatusCode::ACCEPTED)
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fault))
        .routes(routes!(drain))
        .routes(routes!(status))
        .routes(routes!(placement))
}
