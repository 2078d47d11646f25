//! Skill groups (技能组): strategy, timers, overflow, members.

use super::{create, load, remove, replace, same_id, Listing, READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_id, check_number, check_text, paginate, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::mirror::{NoAgentRule, Strategy};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchboard_storage::model::{
    self as m, AgentId, GroupConfig, Member, SkillGroup, TenantId, Versioned,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where a call goes when it leaves the queue unanswered (溢出).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "to", rename_all = "snake_case", deny_unknown_fields)]
pub enum OverflowDoc {
    /// Another skill group.
    Group {
        group: String,
    },
    /// A node of the tenant's IVR flow.
    IvrNode {
        node: String,
    },
    /// An outside number, through the trunk.
    Number {
        number: String,
    },
    Voicemail,
    /// A prompt, then the call ends.
    HangUp,
}

/// A member agent and its skill level (higher is more skilled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberDoc {
    pub agent: String,
    #[serde(default = "one")]
    pub level: u8,
}

fn one() -> u8 {
    1
}

/// A skill group, as read and written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillGroupDoc {
    pub id: String,
    pub name: String,
    pub strategy: Strategy,
    /// Seconds an offered agent's phone rings before the call is missed.
    pub ring_timeout_secs: u32,
    /// After-call work, seconds.
    pub wrap_up_secs: u32,
    /// The longest wait in the queue before overflow, seconds.
    pub max_queue_time_secs: u32,
    pub overflow: OverflowDoc,
    pub no_agent: NoAgentRule,
    /// Tell waiting callers their place and expected wait this often
    /// (seconds); absent: never.
    pub announce_every_secs: Option<u32>,
    /// Members in order (round-robin follows it).
    #[serde(default)]
    pub members: Vec<MemberDoc>,
    /// A telesales group (外呼技能组), kept out of call-center reports.
    #[serde(default)]
    pub telesales: bool,
    pub revision: Option<u64>,
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn doc_of(v: Versioned<SkillGroup>) -> SkillGroupDoc {
    let g = v.record;
    let c = g.config;
    SkillGroupDoc {
        id: g.id,
        name: g.name,
        strategy: c.strategy.into(),
        ring_timeout_secs: secs(c.ring_timeout),
        wrap_up_secs: secs(c.wrap_up),
        max_queue_time_secs: secs(c.max_queue_time),
        overflow: match c.overflow {
            m::Overflow::Group(group) => OverflowDoc::Group { group },
            m::Overflow::IvrNode(node) => OverflowDoc::IvrNode { node },
            m::Overflow::Number(number) => OverflowDoc::Number { number },
            m::Overflow::Voicemail => OverflowDoc::Voicemail,
            m::Overflow::HangUp => OverflowDoc::HangUp,
        },
        no_agent: c.no_agent.into(),
        announce_every_secs: c.announce_every.map(secs),
        members: members_doc(&g.members),
        telesales: g.telesales,
        revision: Some(v.revision),
    }
}

fn members_doc(members: &[Member]) -> Vec<MemberDoc> {
    members
        .iter()
        .map(|mm| MemberDoc {
            agent: mm.agent.0.clone(),
            level: mm.level,
        })
        .collect()
}

fn in_range(field: &str, v: u32, range: std::ops::RangeInclusive<u32>) -> ApiResult<Duration> {
    if range.contains(&v) {
        Ok(Duration::from_secs(u64::from(v)))
    } else {
        Err(ApiError::field(
            field,
            format!("must be within {}..={} seconds", range.start(), range.end()),
        ))
    }
}

/// Checks members: agents that exist, once each, on the group's side.
async fn check_members(
    state: &AppState,
    tenant: &TenantId,
    members: &[MemberDoc],
    telesales: bool,
    field: &str,
) -> ApiResult<Vec<Member>> {
    let agents = state.store.list::<m::Agent>(tenant).await?;
    let mut out: Vec<Member> = Vec::new();
    for (i, mm) in members.iter().enumerate() {
        let Some(a) = agents.iter().find(|a| a.record.id.0 == mm.agent) else {
            return Err(ApiError::field(
                format!("{field}[{i}].agent"),
                format!("no agent {:?}", mm.agent),
            ));
        };
        if a.record.telesales != telesales {
            return Err(ApiError::field(
                format!("{field}[{i}].agent"),
                "an agent is in phone skill groups or in telesales groups, never both",
            ));
        }
        if out.iter().any(|o| o.agent.0 == mm.agent) {
            return Err(ApiError::field(
                format!("{field}[{i}].agent"),
                "listed twice",
            ));
        }
        out.push(Member {
            agent: AgentId(mm.agent.clone()),
            level: mm.level,
        });
    }
    Ok(out)
}

async fn group_of(
    state: &AppState,
    tenant: &TenantId,
    doc: &SkillGroupDoc,
) -> ApiResult<SkillGroup> {
    check_id("id", &doc.id)?;
    check_text("name", &doc.name, 200)?;
    let overflow = match &doc.overflow {
        OverflowDoc::Group { group } => {
            if *group == doc.id {
                return Err(ApiError::field(
                    "overflow.group",
                    "a group cannot overflow to itself",
                ));
            }
            if state
                .store
                .get::<SkillGroup>(tenant, group)
                .await?
                .is_none()
            {
                return Err(ApiError::field(
                    "overflow.group",
                    format!("no skill group {group:?}"),
                ));
            }
            m::Overflow::Group(group.clone())
        }
        OverflowDoc::IvrNode { node } => {
            check_text("overflow.node", node, 64)?;
            m::Overflow::IvrNode(node.clone())
        }
        OverflowDoc::Number { number } => {
            check_number("overflow.number", number)?;
            m::Overflow::Number(number.clone())
        }
        OverflowDoc::Voicemail => m::Overflow::Voicemail,
        OverflowDoc::HangUp => m::Overflow::HangUp,
    };
    let config = GroupConfig {
        strategy: doc.strategy.into(),
        ring_timeout: in_range("ring_timeout_secs", doc.ring_timeout_secs, 5..=300)?,
        wrap_up: in_range("wrap_up_secs", doc.wrap_up_secs, 0..=3600)?,
        max_queue_time: in_range("max_queue_time_secs", doc.max_queue_time_secs, 1..=7200)?,
        overflow,
        no_agent: doc.no_agent.into(),
        announce_every: match doc.announce_every_secs {
            Some(s) => Some(in_range("announce_every_secs", s, 10..=3600)?),
            None => None,
        },
    };
    Ok(SkillGroup {
        tenant: tenant.clone(),
        id: doc.id.clone(),
        name: doc.name.clone(),
        config,
        members: check_members(state, tenant, &doc.members, doc.telesales, "members").await?,
        telesales: doc.telesales,
    })
}

/// The tenant's skill groups.
#[utoipa::path(get, path = "/skill-groups", tag = "config", params(Listing),
    responses((status = 200, body = Page<SkillGroupDoc>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Listing>,
) -> ApiResult<Json<Page<SkillGroupDoc>>> {
    caller.require(READ, "listing skill groups")?;
    let docs = state
        .store
        .list::<SkillGroup>(&caller.tenant)
        .await?
        .into_iter()
        .map(doc_of)
        .collect();
    Ok(Json(paginate(
        docs,
        |g: &SkillGroupDoc| &g.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One skill group.
#[utoipa::path(get, path = "/skill-groups/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = SkillGroupDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SkillGroupDoc>> {
    caller.require(READ, "reading skill groups")?;
    Ok(Json(doc_of(
        load::<SkillGroup>(&state, &caller.tenant, &id, "skill group").await?,
    )))
}

/// Creates a skill group.
#[utoipa::path(post, path = "/skill-groups", tag = "config", request_body = SkillGroupDoc,
    responses((status = 201, body = SkillGroupDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<SkillGroupDoc>,
) -> ApiResult<(StatusCode, Json<SkillGroupDoc>)> {
    caller.require(WRITE, "creating skill groups")?;
    let g = group_of(&state, &caller.tenant, &doc).await?;
    let rev = create(&state, &g, "skill group").await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(Versioned {
            revision: rev,
            record: g,
        })),
    ))
}

/// Changes a skill group.
#[utoipa::path(put, path = "/skill-groups/{id}", tag = "config", params(("id" = String, Path)),
    request_body = SkillGroupDoc,
    responses((status = 200, body = SkillGroupDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(doc): ApiJson<SkillGroupDoc>,
) -> ApiResult<Json<SkillGroupDoc>> {
    caller.require(WRITE, "changing skill groups")?;
    let old = load::<SkillGroup>(&state, &caller.tenant, &id, "skill group").await?;
    same_id(&id, &doc.id)?;
    let g = group_of(&state, &caller.tenant, &doc).await?;
    let rev = replace(&state, &g, old.revision, doc.revision, "skill group").await?;
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: g,
    })))
}

/// Deletes a skill group no flow or group sends calls to.
#[utoipa::path(delete, path = "/skill-groups/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting skill groups")?;
    load::<SkillGroup>(&state, &caller.tenant, &id, "skill group").await?;
    for g in state.store.list::<SkillGroup>(&caller.tenant).await? {
        if g.record.config.overflow == m::Overflow::Group(id.clone()) {
            return Err(ApiError::conflict(format!(
                "skill group {:?} overflows to {id:?}",
                g.record.id
            )));
        }
    }
    if let Some(flow) = crate::flows::published_use(&state, &caller.tenant, |f| {
        use switchboard_actors::ivr::FlowExt;
        f.groups().contains(id.as_str())
    })
    .await?
    {
        return Err(ApiError::conflict(format!(
            "the published flow {flow:?} transfers to {id:?}"
        )));
    }
    remove::<SkillGroup>(&state, &caller.tenant, &id, "skill group").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group's members.
#[utoipa::path(get, path = "/skill-groups/{id}/members", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = Vec<MemberDoc>), (status = 404, body = crate::error::ErrorBody)))]
async fn get_members(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<MemberDoc>>> {
    caller.require(READ, "reading skill groups")?;
    let g = load::<SkillGroup>(&state, &caller.tenant, &id, "skill group").await?;
    Ok(Json(members_doc(&g.record.members)))
}

/// Replaces a group's members (in order).
#[utoipa::path(put, path = "/skill-groups/{id}/members", tag = "config", params(("id" = String, Path)),
    request_body = Vec<MemberDoc>,
    responses((status = 200, body = Vec<MemberDoc>), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn put_members(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(members): ApiJson<Vec<MemberDoc>>,
) -> ApiResult<Json<Vec<MemberDoc>>> {
    caller.require(WRITE, "changing skill groups")?;
    let old = load::<SkillGroup>(&state, &caller.tenant, &id, "skill group").await?;
    let checked = check_members(&state, &caller.tenant, &members, old.record.telesales, "").await?;
    let mut g = old.record.clone();
    g.members = checked;
    replace(&state, &g, old.revision, None, "skill group").await?;
    Ok(Json(members_doc(&g.members)))
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(get_members, put_members))
}
