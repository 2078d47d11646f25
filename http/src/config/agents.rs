//! Agents (坐席): seat, device (SIP account or mobile number), skill
//! groups, missed-call rule.

use super::{create, load, remove, replace, same_id, READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_id, check_number, check_text, paginate, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_storage::model::{
    self as m, Agent, AgentId, AgentPolicy, ConfigKind, CustomStatus, Member, SkillGroup, TenantId,
    Versioned,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where an agent's calls ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeviceDoc {
    /// A SIP phone registered with this account (SIP话机).
    Sip { account: String },
    /// The agent's own phone, through the trunk (手机).
    Mobile { number: String },
}

/// Where an agent goes after too many missed calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotReadyStatus {
    Busy,
    Break {
        reason: String,
    },
    /// A custom status of the tenant, by id.
    Custom {
        id: String,
    },
    Offline,
}

/// An agent, as read and written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDoc {
    pub id: String,
    pub name: String,
    /// The seat number (工号) shown in reports.
    pub seat: String,
    pub device: DeviceDoc,
    /// The skill groups the agent is a member of; writing this list
    /// changes the groups' members.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Misses in a row after which the agent is made not ready.
    #[serde(default = "two")]
    pub max_missed: u32,
    #[serde(default = "busy")]
    pub missed_status: NotReadyStatus,
    /// A telesales agent may only be in telesales groups, and the other
    /// way round.
    #[serde(default)]
    pub telesales: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The user working as this agent (read-only: bind it on the user).
    #[serde(default)]
    pub user: Option<String>,
    pub revision: Option<u64>,
}

fn two() -> u32 {
    2
}
fn busy() -> NotReadyStatus {
    NotReadyStatus::Busy
}
fn yes() -> bool {
    true
}

fn doc_of(v: Versioned<Agent>, groups: &[Versioned<SkillGroup>]) -> AgentDoc {
    let a = v.record;
    let missed = match a.policy.missed_status {
        m::Status::Break { reason } => NotReadyStatus::Break { reason },
        m::Status::Custom { id } => NotReadyStatus::Custom { id },
        m::Status::Offline => NotReadyStatus::Offline,
        _ => NotReadyStatus::Busy,
    };
    AgentDoc {
        groups: groups
            .iter()
            .filter(|g| g.record.members.iter().any(|mm| mm.agent == a.id))
            .map(|g| g.record.id.clone())
            .collect(),
        id: a.id.0,
        name: a.name,
        seat: a.seat,
        device: match a.device {
            m::Device::Sip { account } => DeviceDoc::Sip { account },
            m::Device::Mobile { number } => DeviceDoc::Mobile { number },
        },
        max_missed: a.policy.max_missed,
        missed_status: missed,
        telesales: a.telesales,
        enabled: a.enabled,
        user: a.user,
        revision: Some(v.revision),
    }
}

/// The tenant's custom statuses as an agent policy's lists.
fn policy(statuses: &[Versioned<CustomStatus>], max_missed: u32, missed: m::Status) -> AgentPolicy {
    AgentPolicy {
        selectable_custom: statuses
            .iter()
            .filter(|s| s.record.selectable)
            .map(|s| s.record.id.clone())
            .collect(),
        custom: statuses.iter().map(|s| s.record.id.clone()).collect(),
        max_missed,
        missed_status: missed,
    }
}

/// Re-derives every agent's custom-status lists after the tenant's
/// custom statuses changed.
pub(crate) async fn sync_agent_policies(state: &AppState, tenant: &TenantId) -> ApiResult<()> {
    let statuses = state.store.list::<CustomStatus>(tenant).await?;
    for a in state.store.list::<Agent>(tenant).await? {
        let id = a.record.id.0.clone();
        let statuses = &statuses;
        state
            .store
            .update::<Agent, _>(tenant, &id, move |rec| {
                let p = policy(
                    statuses,
                    rec.policy.max_missed,
                    rec.policy.missed_status.clone(),
                );
                let changed = p != rec.policy;
                rec.policy = p;
                Ok(changed)
            })
            .await?;
        state.changed(tenant, ConfigKind::Agent, &id);
    }
    Ok(())
}

/// Checks a document against the tenant's records and makes the agent.
async fn agent_of(state: &AppState, tenant: &TenantId, doc: &AgentDoc) -> ApiResult<Agent> {
    check_id("id", &doc.id)?;
    check_text("name", &doc.name, 200)?;
    check_text("seat", &doc.seat, 32)?;
    let device = match &doc.device {
        DeviceDoc::Sip { account } => {
            if state
                .store
                .get::<m::SipAccount>(tenant, account)
                .await?
                .is_none()
            {
                return Err(ApiError::field(
                    "device.account",
                    format!("no SIP account {account:?}"),
                ));
            }
            m::Device::Sip {
                account: account.clone(),
            }
        }
        DeviceDoc::Mobile { number } => {
            check_number("device.number", number)?;
            m::Device::Mobile {
                number: number.clone(),
            }
        }
    };
    if !(1..=100).contains(&doc.max_missed) {
        return Err(ApiError::field("max_missed", "must be within 1..=100"));
    }
    let statuses = state.store.list::<CustomStatus>(tenant).await?;
    let missed = match &doc.missed_status {
        NotReadyStatus::Busy => m::Status::Busy,
        NotReadyStatus::Offline => m::Status::Offline,
        NotReadyStatus::Break { reason } => {
            check_text("missed_status.reason", reason, 100)?;
            m::Status::Break {
                reason: reason.clone(),
            }
        }
        NotReadyStatus::Custom { id } => {
            if !statuses.iter().any(|s| s.record.id == *id) {
                return Err(ApiError::field(
                    "missed_status.id",
                    format!("no custom status {id:?}"),
                ));
            }
            m::Status::Custom { id: id.clone() }
        }
    };
    let groups = state.store.list::<SkillGroup>(tenant).await?;
    for (i, g) in doc.groups.iter().enumerate() {
        let Some(group) = groups.iter().find(|x| x.record.id == *g) else {
            return Err(ApiError::field(
                format!("groups[{i}]"),
                format!("no skill group {g:?}"),
            ));
        };
        if group.record.telesales != doc.telesales {
            return Err(ApiError::field(
                format!("groups[{i}]"),
                "an agent is in phone skill groups or in telesales groups, never both",
            ));
        }
    }
    Ok(Agent {
        tenant: tenant.clone(),
        id: AgentId(doc.id.clone()),
        name: doc.name.clone(),
        seat: doc.seat.clone(),
        user: None,
        device,
        policy: policy(&statuses, doc.max_missed, missed),
        telesales: doc.telesales,
        enabled: doc.enabled,
    })
}

/// Makes `agent` a member of exactly `groups` (a new membership at
/// level 1; an existing one keeps its level).
pub(crate) async fn set_groups(
    state: &AppState,
    tenant: &TenantId,
    agent: &AgentId,
    groups: &[String],
) -> ApiResult<()> {
    for g in state.store.list::<SkillGroup>(tenant).await? {
        let want = groups.contains(&g.record.id);
        let has = g.record.members.iter().any(|mm| mm.agent == *agent);
        if want == has {
            continue;
        }
        state
            .store
            .update::<SkillGroup, _>(tenant, &g.record.id, |rec| {
                rec.members.retain(|mm| mm.agent != *agent);
                if want {
                    rec.members.push(Member {
                        agent: agent.clone(),
                        level: 1,
                    });
                }
                Ok(true)
            })
            .await?;
        state.changed(tenant, ConfigKind::SkillGroup, &g.record.id);
    }
    Ok(())
}

/// Filters of the agent list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AgentQuery {
    /// Only members of this skill group.
    group: Option<String>,
    enabled: Option<bool>,
    /// Only telesales (true) or phone (false) agents.
    telesales: Option<bool>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// The tenant's agents.
#[utoipa::path(get, path = "/agents", tag = "config", params(AgentQuery),
    responses((status = 200, body = Page<AgentDoc>), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> ApiResult<Json<Page<AgentDoc>>> {
    caller.require(READ, "listing agents")?;
    let groups = state.store.list::<SkillGroup>(&caller.tenant).await?;
    let docs: Vec<AgentDoc> = state
        .store
        .list::<Agent>(&caller.tenant)
        .await?
        .into_iter()
        .map(|a| doc_of(a, &groups))
        .filter(|a| q.group.as_ref().is_none_or(|g| a.groups.contains(g)))
        .filter(|a| q.enabled.is_none_or(|e| a.enabled == e))
        .filter(|a| q.telesales.is_none_or(|t| a.telesales == t))
        .collect();
    Ok(Json(paginate(
        docs,
        |a| &a.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One agent. An agent may read itself.
#[utoipa::path(get, path = "/agents/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = AgentDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<AgentDoc>> {
    if caller.agent.as_ref().map(|a| a.0.as_str()) != Some(id.as_str()) {
        caller.require(READ, "reading agents")?;
    }
    let v = load::<Agent>(&state, &caller.tenant, &id, "agent").await?;
    let groups = state.store.list::<SkillGroup>(&caller.tenant).await?;
    Ok(Json(doc_of(v, &groups)))
}

/// Creates an agent.
#[utoipa::path(post, path = "/agents", tag = "config", request_body = AgentDoc,
    responses((status = 201, body = AgentDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<AgentDoc>,
) -> ApiResult<(StatusCode, Json<AgentDoc>)> {
    caller.require(WRITE, "creating agents")?;
    let agent = agent_of(&state, &caller.tenant, &doc).await?;
    let rev = create(&state, &agent, "agent").await?;
    set_groups(&state, &caller.tenant, &agent.id, &doc.groups).await?;
    let groups = state.store.list::<SkillGroup>(&caller.tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(
            Versioned {
                revision: rev,
                record: agent,
            },
            &groups,
        )),
    ))
}

/// Changes an agent (and its group memberships).
#[utoipa::path(put, path = "/agents/{id}", tag = "config", params(("id" = String, Path)),
    request_body = AgentDoc,
    responses((status = 200, body = AgentDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(doc): ApiJson<AgentDoc>,
) -> ApiResult<Json<AgentDoc>> {
    caller.require(WRITE, "changing agents")?;
    let old = load::<Agent>(&state, &caller.tenant, &id, "agent").await?;
    same_id(&id, &doc.id)?;
    let mut agent = agent_of(&state, &caller.tenant, &doc).await?;
    agent.user = old.record.user.clone();
    let rev = replace(&state, &agent, old.revision, doc.revision, "agent").await?;
    set_groups(&state, &caller.tenant, &agent.id, &doc.groups).await?;
    let groups = state.store.list::<SkillGroup>(&caller.tenant).await?;
    Ok(Json(doc_of(
        Versioned {
            revision: rev,
            record: agent,
        },
        &groups,
    )))
}

/// Deletes an agent: it leaves its groups and its user is unbound.
#[utoipa::path(delete, path = "/agents/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
async fn delete_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting agents")?;
    let agent = AgentId(id.clone());
    load::<Agent>(&state, &caller.tenant, &id, "agent").await?;
    set_groups(&state, &caller.tenant, &agent, &[]).await?;
    for u in state.store.list::<m::User>(&caller.tenant).await? {
        if u.record.agent.as_ref() == Some(&agent) {
            state
                .store
                .update::<m::User, _>(&caller.tenant, &u.record.id, |rec| {
                    rec.agent = None;
                    Ok(true)
                })
                .await?;
            state.changed(&caller.tenant, ConfigKind::User, &u.record.id);
        }
    }
    remove::<Agent>(&state, &caller.tenant, &id, "agent").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent, delete_agent))
}
