//! IVR flows (IVR语音导航): drafts saved as immutable versions, checked,
//! published, rolled back.
//!
//! A version is checked before it is published: the flow's own structure
//! ([`FlowExt::validate`]: start node, dangling branches, unreachable
//! nodes, loops without exit, menu keys, survey levels), then what it
//! names in the tenant: prompts that exist and are approved, skill groups
//! and agents that exist, and outside transfers only where the tenant
//! allows them.

use crate::auth::Caller;
use crate::common::{check_id, check_number, check_text, paginate, Page};
use crate::config::{load, tenant_record, Listing, READ, WRITE};
use crate::error::{ApiError, ApiResult, FieldProblem};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::mirror::ReviewStatus;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_actors::ivr::{FlowError, FlowExt};
use switchboard_storage::model::{
    self as m, AgentId, ConfigKind, Flow, FlowVersion, IvrFlow, Node, Survey, SurveyLevel, TenantId,
};
use switchboard_storage::ErrorKind;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most nodes a flow may have.
const MAX_NODES: usize = 500;

/// One step of a flow (节点). Times are in seconds; keys are single
/// phone keys (`0`-`9`, `*`, `#`, `A`-`D`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeDoc {
    /// Play a prompt, then go on.
    Play {
        prompt: String,
        next: String,
    },
    /// A prompt, then one key picks the branch.
    Menu {
        prompt: String,
        /// Key → next node.
        options: BTreeMap<String, String>,
        timeout_secs: u32,
        invalid_prompt: Option<String>,
        /// Tries after the first.
        retries: u8,
        /// Plays the menu again without using a try.
        repeat_key: Option<String>,
        on_fail: String,
    },
    /// Collect digits into `var`.
    Collect {
        prompt: String,
        min: u8,
        max: u8,
        terminator: Option<String>,
        timeout_secs: u32,
        var: String,
        next: String,
        on_fail: String,
    },
    /// `open` during the regular working hours, else `closed`.
    TimeBranch {
        open: String,
        closed: String,
    },
    TransferGroup {
        group: String,
    },
    TransferAgent {
        agent: String,
    },
    /// Out through the trunk; only if the tenant allows it.
    TransferNumber {
        number: String,
    },
    /// Satisfaction survey (满意度), played after the agent hangs up
    /// first: 2 to 5 levels, each a key (`0`-`9`, `*`, `#`) with a score
    /// (0 to 10) and a label; keys and scores differ between levels. A
    /// key that is no level's plays `invalid_prompt` (if any) and asks once
    /// more; a valid answer plays `thanks`.
    Survey {
        prompt: String,
        #[serde(default)]
        levels: Vec<SurveyLevelDoc>,
        /// Instead of `levels` (the form before them): keys 1 to `max`,
        /// each scoring its digit. Never in answers, which show the
        /// levels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u8>,
        timeout_secs: u32,
        invalid_prompt: Option<String>,
        thanks: Option<String>,
    },
    Voicemail {
        prompt: String,
        max_len_secs: u32,
    },
    HangUp {
        prompt: Option<String>,
    },
}

/// One answer of a survey, e.g. key `1`, score 5, "very satisfied".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyLevelDoc {
    pub key: String,
    /// What the call record keeps: 0 to 10.
    pub score: u8,
    pub label: String,
}

/// A flow definition: where it starts and its nodes by id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowDefinition {
    pub start: String,
    pub nodes: BTreeMap<String, NodeDoc>,
}

/// A new flow and its first draft.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlow {
    pub id: String,
    pub name: String,
    pub definition: FlowDefinition,
}

/// A new draft of a flow.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    pub definition: FlowDefinition,
}

/// Renaming a flow.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRename {
    pub name: String,
    pub revision: Option<u64>,
}

/// Which version to publish.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub version: u32,
}

/// Which version to roll back to; absent: the newest version older than
/// the published one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub version: Option<u32>,
}

/// A flow and its versions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowDoc {
    pub id: String,
    pub name: String,
    /// The version calls run, if one is published.
    pub published: Option<u32>,
    /// The newest version.
    pub latest: Option<u32>,
    pub revision: u64,
}

/// One saved version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionDoc {
    pub flow: String,
    pub version: u32,
    /// ms since the Unix epoch.
    pub created: u64,
    pub author: Option<String>,
    pub definition: FlowDefinition,
}

/// A problem that keeps a version from being published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FlowProblem {
    /// `no_start`, `dangling`, `unreachable`, `no_exit`, `invalid_node`,
    /// `missing_prompt`, `unapproved_prompt`, `missing_group`,
    /// `missing_agent`, `external_transfer_not_allowed`.
    pub code: String,
    pub message: String,
    /// The node at fault, if one is.
    pub node: Option<String>,
}

/// What the check of a version found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationReport {
    pub valid: bool,
    pub problems: Vec<FlowProblem>,
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn key_str(c: char) -> String {
    c.to_string()
}

fn node_doc(n: &Node) -> NodeDoc {
    match n.clone() {
        Node::Play { prompt, next } => NodeDoc::Play { prompt, next },
        Node::Menu {
            prompt,
            options,
            timeout,
            invalid_prompt,
            retries,
            repeat_key,
            on_fail,
        } => NodeDoc::Menu {
            prompt,
            options: options.into_iter().map(|(k, v)| (key_str(k), v)).collect(),
            timeout_secs: secs(timeout),
            invalid_prompt,
            retries,
            repeat_key: repeat_key.map(key_str),
            on_fail,
        },
        Node::Collect {
            prompt,
            min,
            max,
            terminator,
            timeout,
            var,
            next,
            on_fail,
        } => NodeDoc::Collect {
            prompt,
            min,
            max,
            terminator: terminator.map(key_str),
            timeout_secs: secs(timeout),
            var,
            next,
            on_fail,
        },
        Node::TimeBranch { open, closed } => NodeDoc::TimeBranch { open, closed },
        Node::TransferGroup { group } => NodeDoc::TransferGroup { group },
        Node::TransferAgent { agent } => NodeDoc::TransferAgent { agent: agent.0 },
        Node::TransferNumber { number } => NodeDoc::TransferNumber { number },
        Node::Survey(Survey {
            prompt,
            levels,
            timeout,
            invalid_prompt,
            thanks,
        }) => NodeDoc::Survey {
            prompt,
            levels: levels
                .into_iter()
                .map(|l| SurveyLevelDoc {
                    key: key_str(l.key),
                    score: l.score,
                    label: l.label,
                })
                .collect(),
            max: None,
            timeout_secs: secs(timeout),
            invalid_prompt,
            thanks,
        },
        Node::Voicemail { prompt, max_len } => NodeDoc::Voicemail {
            prompt,
            max_len_secs: secs(max_len),
        },
        Node::HangUp { prompt } => NodeDoc::HangUp { prompt },
    }
}

fn definition_doc(f: &Flow) -> FlowDefinition {
    FlowDefinition {
        start: f.start.clone(),
        nodes: f
            .nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_doc(n)))
            .collect(),
    }
}

/// A single phone key.
fn key(field: &str, s: &str) -> ApiResult<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Ok(c),
        _ => Err(ApiError::field(
            field,
            format!("{s:?} is not one phone key (0-9, *, #, A-D)"),
        )),
    }
}

fn seconds(field: &str, v: u32, range: std::ops::RangeInclusive<u32>) -> ApiResult<Duration> {
    if range.contains(&v) {
        Ok(Duration::from_secs(u64::from(v)))
    } else {
        Err(ApiError::field(
            field,
            format!("must be within {}..={} seconds", range.start(), range.end()),
        ))
    }
}

/// A survey's levels, given as such or as `max`; how many there are, and
/// whether keys or scores repeat, is the flow check's to say.
fn survey_levels(
    f: impl Fn(&str) -> String,
    levels: Vec<SurveyLevelDoc>,
    max: Option<u8>,
) -> ApiResult<Vec<SurveyLevel>> {
    match max {
        Some(_) if !levels.is_empty() => Err(ApiError::field(
            f("max"),
            "give either levels or max, not both",
        )),
        Some(max) if max > 9 => Err(ApiError::field(
            f("max"),
            "keys 1 to max: max is at most 9 (and a survey has at most 5 levels)",
        )),
        Some(max) => Ok(Survey::levels_up_to(max)),
        None => levels
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                check_text(&f(&format!("levels.{i}.label")), &l.label, 100)?;
                Ok(SurveyLevel {
                    key: key(&f(&format!("levels.{i}.key")), &l.key)?,
                    score: l.score,
                    label: l.label,
                })
            })
            .collect(),
    }
}

/// The stored form of a definition; field errors are named under
/// `definition.`.
fn flow_of(id: &str, d: &FlowDefinition) -> ApiResult<Flow> {
    if d.nodes.is_empty() || d.nodes.len() > MAX_NODES {
        return Err(ApiError::field(
            "definition.nodes",
            format!("a flow has 1 to {MAX_NODES} nodes"),
        ));
    }
    let mut nodes = BTreeMap::new();
    for (nid, n) in &d.nodes {
        let f = |x: &str| format!("definition.nodes.{nid}.{x}");
        check_id(&format!("definition.nodes.{nid}"), nid)?;
        let node = match n.clone() {
            NodeDoc::Play { prompt, next } => Node::Play { prompt, next },
            NodeDoc::Menu {
                prompt,
                options,
                timeout_secs,
                invalid_prompt,
                retries,
                repeat_key,
                on_fail,
            } => {
                let mut keys = BTreeMap::new();
                for (k, to) in options {
                    keys.insert(key(&f(&format!("options.{k}")), &k)?, to);
                }
                Node::Menu {
                    prompt,
                    options: keys,
                    timeout: seconds(&f("timeout_secs"), timeout_secs, 1..=60)?,
                    invalid_prompt,
                    retries: if retries <= 9 {
                        retries
                    } else {
                        return Err(ApiError::field(f("retries"), "at most 9"));
                    },
                    repeat_key: match repeat_key {
                        Some(k) => Some(key(&f("repeat_key"), &k)?),
                        None => None,
                    },
                    on_fail,
                }
            }
            NodeDoc::Collect {
                prompt,
                min,
                max,
                terminator,
                timeout_secs,
                var,
                next,
                on_fail,
            } => {
                check_id(&f("var"), &var)?;
                Node::Collect {
                    prompt,
                    min,
                    max,
                    terminator: match terminator {
                        Some(k) => Some(key(&f("terminator"), &k)?),
                        None => None,
                    },
                    timeout: seconds(&f("timeout_secs"), timeout_secs, 1..=60)?,
                    var,
                    next,
                    on_fail,
                }
            }
            NodeDoc::TimeBranch { open, closed } => Node::TimeBranch { open, closed },
            NodeDoc::TransferGroup { group } => Node::TransferGroup { group },
            NodeDoc::TransferAgent { agent } => Node::TransferAgent {
                agent: AgentId(agent),
            },
            NodeDoc::TransferNumber { number } => {
                check_number(&f("number"), &number)?;
                Node::TransferNumber { number }
            }
            NodeDoc::Survey {
                prompt,
                levels,
                max,
                timeout_secs,
                invalid_prompt,
                thanks,
            } => Node::Survey(Survey {
                prompt,
                levels: survey_levels(f, levels, max)?,
                timeout: seconds(&f("timeout_secs"), timeout_secs, 1..=60)?,
                invalid_prompt,
                thanks,
            }),
            NodeDoc::Voicemail {
                prompt,
                max_len_secs,
            } => Node::Voicemail {
                prompt,
                max_len: seconds(&f("max_len_secs"), max_len_secs, 5..=600)?,
            },
            NodeDoc::HangUp { prompt } => Node::HangUp { prompt },
        };
        nodes.insert(nid.clone(), node);
    }
    Ok(Flow {
        id: id.to_owned(),
        start: d.start.clone(),
        nodes,
    })
}

fn problem(code: &str, message: String, node: Option<&str>) -> FlowProblem {
    FlowProblem {
        code: code.into(),
        message,
        node: node.map(str::to_owned),
    }
}

/// Everything that keeps `flow` from being published, in the tenant's
/// current configuration.
pub(crate) async fn check_flow(
    state: &AppState,
    tenant: &TenantId,
    flow: &Flow,
) -> ApiResult<Vec<FlowProblem>> {
    let mut out = Vec::new();
    if let Err(e) = flow.validate() {
        let message = e.to_string();
        out.push(match e {
            FlowError::NoStart { node, .. } => problem("no_start", message, Some(&node)),
            FlowError::Dangling { from, .. } => problem("dangling", message, Some(&from)),
            FlowError::Invalid { node, .. } => problem("invalid_node", message, Some(&node)),
            FlowError::Unreachable { node, .. } => problem("unreachable", message, Some(&node)),
            FlowError::NoExit { nodes, .. } => {
                problem("no_exit", message, nodes.first().map(String::as_str))
            }
            _ => problem("invalid_node", message, None),
        });
    }
    let prompts = state.store.list::<m::Prompt>(tenant).await?;
    for p in flow.prompts() {
        match prompts.iter().find(|x| x.record.id == p) {
            None => out.push(problem(
                "missing_prompt",
                format!("prompt {p:?} is not in the prompt library"),
                node_using(flow, |n| node_plays(n, p)),
            )),
            Some(x) if x.record.review.status != m::ReviewStatus::Approved => {
                let status = match ReviewStatus::from(x.record.review.status) {
                    ReviewStatus::Rejected => "rejected",
                    _ => "pending review",
                };
                out.push(problem(
                    "unapproved_prompt",
                    format!("prompt {p:?} is {status}; only approved prompts can be published"),
                    node_using(flow, |n| node_plays(n, p)),
                ))
            }
            Some(_) => {}
        }
    }
    let groups = state.store.list::<m::SkillGroup>(tenant).await?;
    for g in flow.groups() {
        if !groups.iter().any(|x| x.record.id == g) {
            out.push(problem(
                "missing_group",
                format!("skill group {g:?} does not exist"),
                node_using(
                    flow,
                    |n| matches!(n, Node::TransferGroup { group } if group == g),
                ),
            ));
        }
    }
    let allow_external = tenant_record(state, tenant).await?.allow_external_transfer;
    for (id, n) in &flow.nodes {
        let agent = match n {
            Node::TransferAgent { agent } => Some(&agent.0),
            _ => None,
        };
        if let Some(a) = agent {
            if state.store.get::<m::Agent>(tenant, a).await?.is_none() {
                out.push(problem(
                    "missing_agent",
                    format!("agent {a:?} does not exist"),
                    Some(id),
                ));
            }
        }
        if matches!(n, Node::TransferNumber { .. }) && !allow_external {
            out.push(problem(
                "external_transfer_not_allowed",
                "the tenant does not allow transfers to outside numbers".into(),
                Some(id),
            ));
        }
    }
    Ok(out)
}

fn node_plays(n: &Node, prompt: &str) -> bool {
    let f = Flow {
        id: String::new(),
        start: String::new(),
        nodes: BTreeMap::from([(String::new(), n.clone())]),
    };
    f.prompts().contains(prompt)
}

fn node_using(flow: &Flow, pred: impl Fn(&Node) -> bool) -> Option<&str> {
    flow.nodes
        .iter()
        .find(|(_, n)| pred(n))
        .map(|(id, _)| id.as_str())
}

/// The first published flow of the tenant for which `pred` holds.
pub(crate) async fn published_use(
    state: &AppState,
    tenant: &TenantId,
    pred: impl Fn(&Flow) -> bool,
) -> ApiResult<Option<String>> {
    for f in state.store.list::<IvrFlow>(tenant).await? {
        if let Some(v) = state.store.published_flow(tenant, &f.record.id).await? {
            if pred(&v.definition) {
                return Ok(Some(f.record.id));
            }
        }
    }
    Ok(None)
}

async fn flow_doc(state: &AppState, v: m::Versioned<IvrFlow>) -> ApiResult<FlowDoc> {
    let versions = state
        .store
        .flow_versions(&v.record.tenant, &v.record.id)
        .await?;
    Ok(FlowDoc {
        latest: versions.iter().map(|x| x.version).max(),
        id: v.record.id,
        name: v.record.name,
        published: v.record.published,
        revision: v.revision,
    })
}

fn version_doc(v: &FlowVersion) -> VersionDoc {
    VersionDoc {
        flow: v.flow.clone(),
        version: v.version,
        created: v.created.0,
        author: v.author.clone(),
        definition: definition_doc(&v.definition),
    }
}

async fn version(
    state: &AppState,
    tenant: &TenantId,
    flow: &str,
    version: u32,
) -> ApiResult<FlowVersion> {
    state
        .store
        .flow_version(tenant, flow, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("flow {flow:?} has no version {version}")))
}

/// The tenant's flows.
#[utoipa::path(get, path = "/flows", tag = "flows", params(Listing),
    responses((status = 200, body = Page<FlowDoc>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_flows(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Listing>,
) -> ApiResult<Json<Page<FlowDoc>>> {
    caller.require(READ, "listing flows")?;
    let flows = state.store.list::<IvrFlow>(&caller.tenant).await?;
    let page = paginate(flows, |f| &f.record.id, q.cursor.as_deref(), q.limit)?;
    let mut items = Vec::new();
    for f in page.items {
        items.push(flow_doc(&state, f).await?);
    }
    Ok(Json(Page {
        items,
        next: page.next,
    }))
}

/// One flow.
#[utoipa::path(get, path = "/flows/{id}", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, body = FlowDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_flow(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<FlowDoc>> {
    caller.require(READ, "reading flows")?;
    let v = load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    Ok(Json(flow_doc(&state, v).await?))
}

/// Creates a flow with its first draft (version 1, not published).
#[utoipa::path(post, path = "/flows", tag = "flows", request_body = NewFlow,
    responses((status = 201, body = VersionDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_flow(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewFlow>,
) -> ApiResult<(StatusCode, Json<VersionDoc>)> {
    caller.require(WRITE, "creating flows")?;
    check_id("id", &body.id)?;
    check_text("name", &body.name, 200)?;
    let flow = flow_of(&body.id, &body.definition)?;
    if state
        .store
        .get::<IvrFlow>(&caller.tenant, &body.id)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "flow {:?} exists already",
            body.id
        )));
    }
    let created = crate::common::now();
    let n = state
        .store
        .save_flow(
            &caller.tenant,
            &body.id,
            &body.name,
            &flow,
            created,
            Some(&caller.user),
        )
        .await?;
    state.changed(&caller.tenant, ConfigKind::IvrFlow, &body.id);
    let v = version(&state, &caller.tenant, &body.id, n).await?;
    Ok((StatusCode::CREATED, Json(version_doc(&v))))
}

/// Renames a flow.
#[utoipa::path(put, path = "/flows/{id}", tag = "flows", params(("id" = String, Path)),
    request_body = FlowRename,
    responses((status = 200, body = FlowDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn rename_flow(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FlowRename>,
) -> ApiResult<Json<FlowDoc>> {
    caller.require(WRITE, "renaming flows")?;
    check_text("name", &body.name, 200)?;
    let old = load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    let mut f = old.record.clone();
    f.name = body.name;
    let rev = crate::config::replace(&state, &f, old.revision, body.revision, "flow").await?;
    Ok(Json(
        flow_doc(
            &state,
            m::Versioned {
                revision: rev,
                record: f,
            },
        )
        .await?,
    ))
}

/// A flow's versions, oldest first.
#[utoipa::path(get, path = "/flows/{id}/versions", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, body = Vec<VersionDoc>), (status = 404, body = crate::error::ErrorBody)))]
async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<VersionDoc>>> {
    caller.require(READ, "reading flows")?;
    load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    let versions = state.store.flow_versions(&caller.tenant, &id).await?;
    Ok(Json(versions.iter().map(version_doc).collect()))
}

/// Saves a new draft of a flow (the next version number).
#[utoipa::path(post, path = "/flows/{id}/versions", tag = "flows", params(("id" = String, Path)),
    request_body = NewVersion,
    responses((status = 201, body = VersionDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn add_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<NewVersion>,
) -> ApiResult<(StatusCode, Json<VersionDoc>)> {
    caller.require(WRITE, "editing flows")?;
    let head = load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    let flow = flow_of(&id, &body.definition)?;
    let n = state
        .store
        .save_flow(
            &caller.tenant,
            &id,
            &head.record.name,
            &flow,
            crate::common::now(),
            Some(&caller.user),
        )
        .await?;
    state.changed(&caller.tenant, ConfigKind::IvrFlow, &id);
    let v = version(&state, &caller.tenant, &id, n).await?;
    Ok((StatusCode::CREATED, Json(version_doc(&v))))
}

/// One version.
#[utoipa::path(get, path = "/flows/{id}/versions/{version}", tag = "flows",
    params(("id" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = VersionDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, n)): ApiPath<(String, u32)>,
) -> ApiResult<Json<VersionDoc>> {
    caller.require(READ, "reading flows")?;
    load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    Ok(Json(version_doc(
        &version(&state, &caller.tenant, &id, n).await?,
    )))
}

/// Checks a version as publishing would, without publishing it.
#[utoipa::path(post, path = "/flows/{id}/versions/{version}/validate", tag = "flows",
    params(("id" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = ValidationReport), (status = 404, body = crate::error::ErrorBody)))]
async fn validate_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, n)): ApiPath<(String, u32)>,
) -> ApiResult<Json<ValidationReport>> {
    caller.require(READ, "checking flows")?;
    load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    let v = version(&state, &caller.tenant, &id, n).await?;
    let problems = check_flow(&state, &caller.tenant, &v.definition).await?;
    Ok(Json(ValidationReport {
        valid: problems.is_empty(),
        problems,
    }))
}

/// Publishes `version` after checking it; a 422 lists the problems.
async fn publish_checked(
    state: &AppState,
    caller: &Caller,
    id: &str,
    n: u32,
) -> ApiResult<FlowDoc> {
    load::<IvrFlow>(state, &caller.tenant, id, "flow").await?;
    let v = version(state, &caller.tenant, id, n).await?;
    let problems = check_flow(state, &caller.tenant, &v.definition).await?;
    if !problems.is_empty() {
        let details = problems
            .iter()
            .map(|p| FieldProblem {
                field: match &p.node {
                    Some(node) => format!("definition.nodes.{node}"),
                    None => "definition".into(),
                },
                message: format!("{}: {}", p.code, p.message),
            })
            .collect();
        return Err(ApiError::fields(
            format!(
                "version {n} of flow {id:?} cannot be published: {}",
                problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            details,
        ));
    }
    state
        .store
        .publish_flow(&caller.tenant, id, n)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => ApiError::conflict("the flow was changed meanwhile: try again"),
            _ => e.into(),
        })?;
    state.changed(&caller.tenant, ConfigKind::IvrFlow, id);
    let head = load::<IvrFlow>(state, &caller.tenant, id, "flow").await?;
    flow_doc(state, head).await
}

/// Publishes a version: calls run it from now on.
#[utoipa::path(post, path = "/flows/{id}/publish", tag = "flows", params(("id" = String, Path)),
    request_body = Publish,
    responses((status = 200, body = FlowDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 422, description = "the version has problems", body = crate::error::ErrorBody)))]
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Publish>,
) -> ApiResult<Json<FlowDoc>> {
    caller.require(WRITE, "publishing flows")?;
    Ok(Json(
        publish_checked(&state, &caller, &id, body.version).await?,
    ))
}

/// Goes back to an older version (checked again: its prompts may have
/// changed since).
#[utoipa::path(post, path = "/flows/{id}/rollback", tag = "flows", params(("id" = String, Path)),
    request_body = Rollback,
    responses((status = 200, body = FlowDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Rollback>,
) -> ApiResult<Json<FlowDoc>> {
    caller.require(WRITE, "rolling flows back")?;
    let head = load::<IvrFlow>(&state, &caller.tenant, &id, "flow").await?;
    let Some(current) = head.record.published else {
        return Err(ApiError::conflict(format!(
            "flow {id:?} is not published: publish a version instead"
        )));
    };
    let target = match body.version {
        Some(v) if v < current => v,
        Some(v) => {
            return Err(ApiError::field(
                "version",
                format!("{v} is not older than the published version {current}"),
            ))
        }
        None => state
            .store
            .flow_versions(&caller.tenant, &id)
            .await?
            .iter()
            .map(|v| v.version)
            .filter(|v| *v < current)
            .max()
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "flow {id:?} has no version older than {current} to roll back to"
                ))
            })?,
    };
    Ok(Json(publish_checked(&state, &caller, &id, target).await?))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_flows, create_flow))
        .routes(routes!(get_flow, rename_flow))
        .routes(routes!(list_versions, add_version))
        .routes(routes!(get_version))
        .routes(routes!(validate_version))
        .routes(routes!(publish))
        .routes(routes!(rollback))
}
