//! The live half: what agents do from the phone bar (sign in with a
//! device, sign out, change status), the live monitors (坐席监控), the
//! WebSocket of events, and `/metrics`.
//!
//! The node implements [`Live`] over its actors; without it (a server of
//! the store alone) these endpoints answer 503. Agents may act on
//! themselves only; supervisors and tenant admins on any agent of their
//! tenant (the change is logged as the supervisor's).
//!
//! The WebSocket at `/api/v1/ws` (authenticated like every endpoint: the
//! bearer token, the session cookie, or `?token=` for browsers that cannot
//! set headers on a WebSocket) carries [`Event`]s as JSON text frames. An
//! agent receives its own events; supervisors and admins receive every
//! event of the tenant. A client that falls behind by more than the
//! channel's capacity is disconnected (it reconnects and takes a fresh
//! snapshot from the REST monitors): a slow client never slows the node.
//! The events are described in `docs/events.md`.

use crate::auth::Caller;
pub use crate::config::DeviceDoc;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::mirror::Role;
use crate::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use switchboard_storage::model::{self as m, AgentId, TenantId};
use tokio::sync::broadcast;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What a [`Live`] call returns.
pub type LiveFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LiveError>> + Send + 'a>>;

/// Why a live operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The agent's state does not allow it (409): "agent is talking".
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// A value the node refuses (422), with the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Unavailable(String),
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> ApiError {
        match e {
            LiveError::Conflict(m) => ApiError::conflict(m),
            LiveError::NotFound(m) => ApiError::not_found(m),
            LiveError::Invalid { field, message } => ApiError::field(field, message),
            LiveError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
        }
    }
}

/// Who changes an agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Agent,
    Supervisor,
}

impl From<By> for m::Actor {
    fn from(b: By) -> m::Actor {
        match b {
            By::Agent => m::Actor::Agent,
            By::Supervisor => m::Actor::Supervisor,
        }
    }
}

/// An agent's status as the phone bar shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StatusDoc {
    Offline,
    Ready,
    Busy,
    Break { reason: String },
    Custom { id: String },
    Ringing { call: String },
    Talking { call: String },
    AfterCallWork { call: String },
}

impl From<&m::Status> for StatusDoc {
    fn from(s: &m::Status) -> StatusDoc {
        match s {
            m::Status::Offline => StatusDoc::Offline,
            m::Status::Ready => StatusDoc::Ready,
            m::Status::Busy => StatusDoc::Busy,
            m::Status::Break { reason } => StatusDoc::Break {
                reason: reason.clone(),
            },
            m::Status::Custom { id } => StatusDoc::Custom { id: id.clone() },
            m::Status::Ringing { call } => StatusDoc::Ringing {
                call: call.to_string(),
            },
            m::Status::Talking { call } => StatusDoc::Talking {
                call: call.to_string(),
            },
            m::Status::AfterCallWork { call } => StatusDoc::AfterCallWork {
                call: call.to_string(),
            },
        }
    }
}

/// A status an agent (or a supervisor for it) may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChosenStatus {
    Ready,
    Busy,
    Break { reason: String },
    Custom { id: String },
}

impl From<ChosenStatus> for m::Status {
    fn from(s: ChosenStatus) -> m::Status {
        match s {
            ChosenStatus::Ready => m::Status::Ready,
            ChosenStatus::Busy => m::Status::Busy,
            ChosenStatus::Break { reason } => m::Status::Break { reason },
            ChosenStatus::Custom { id } => m::Status::Custom { id },
        }
    }
}

/// One agent now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentNow {
    pub agent: String,
    #[schema(value_type = Object)]
    pub status: StatusDoc,
    /// When the status began, ms since the Unix epoch.
    pub since: u64,
    /// The device it takes calls on, when signed in.
    pub device: Option<DeviceDoc>,
    /// Whether that device can ring now (a SIP phone while registered).
    pub device_online: bool,
    /// Calls answered and talk time today.
    pub calls_today: u32,
    pub talk_seconds_today: u64,
}

/// One skill group's queue now, and its day so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupNow {
    pub group: String,
    /// Calls waiting (those ringing an agent included).
    pub waiting: u32,
    /// How long the first caller has waited, seconds.
    pub longest_wait_seconds: u64,
    pub agents_signed_in: u32,
    pub agents_ready: u32,
}

/// What a screen pop shows when an agent's phone rings (来电弹屏).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenPop {
    pub call: String,
    pub caller: String,
    /// The hotline dialed.
    pub dialed: String,
    /// Province and city, and the carrier (归属地).
    pub location: Option<m::NumberLocation>,
    pub call_type: String,
    /// Keys pressed in the IVR, and digits collected by variable.
    pub ivr_keys: String,
    pub ivr_vars: std::collections::BTreeMap<String, String>,
    pub group: Option<String>,
    pub queue_wait_seconds: u64,
    /// The customer the number belongs to, if known; else an empty
    /// profile is to be filled.
    pub customer: Option<m::Customer>,
    /// The customer's latest calls, tickets, summaries and plans.
    pub timeline: Vec<m::TimelineEvent>,
    pub open_tickets: Vec<m::Ticket>,
    pub contact_plans: Vec<m::ContactPlan>,
}

/// An event of the WebSocket; `version` is 1 for these shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum Event {
    /// An agent's status changed.
    #[serde(rename = "agent.status")]
    AgentStatus {
        version: u32,
        agent: String,
        status: StatusDoc,
        since: u64,
        reason: String,
    },
    /// A status was chosen during a call for after it (and its wrap-up).
    #[serde(rename = "agent.next_status")]
    AgentNext {
        version: u32,
        agent: String,
        status: StatusDoc,
    },
    /// An agent's phone rings with a call: the screen pop.
    #[serde(rename = "agent.ringing")]
    Ringing {
        version: u32,
        agent: String,
        pop: Box<ScreenPop>,
    },
    /// An outbound call's agent answered its device: the customer's
    /// number is being dialed.
    #[serde(rename = "call.dialing")]
    CallDialing {
        version: u32,
        agent: String,
        call: String,
        number: String,
    },
    /// The agent transferred its customer: `to` is `agent`, `group` or
    /// `number`, `target` its id or number.
    #[serde(rename = "call.transferred")]
    CallTransferred {
        version: u32,
        agent: String,
        call: String,
        to: String,
        target: String,
    },
    /// A supervisor joined the agent's call, changed mode (`listen`,
    /// `whisper`, `barge`) or left it (`mode` null).
    #[serde(rename = "call.monitored")]
    CallMonitored {
        version: u32,
        agent: String,
        call: String,
        supervisor: String,
        mode: Option<String>,
    },
    /// The agent's consultation: `to` is `agent` or `number`, `target`
    /// its id or number, `state` `ringing`, `talking` (the customer on
    /// hold), `conference` (all three), `transferred` (the customer is
    /// the target's, the agent off the call) or `ended`.
    #[serde(rename = "call.consult")]
    CallConsult {
        version: u32,
        agent: String,
        call: String,
        to: String,
        target: String,
        state: String,
    },
    /// The agent put its customer on hold (`held`) or took it off.
    #[serde(rename = "call.held")]
    CallHeld {
        version: u32,
        agent: String,
        call: String,
        held: bool,
    },
    #[serde(rename = "call.answered")]
    CallAnswered {
        version: u32,
        agent: String,
        call: String,
    },
    #[serde(rename = "call.ended")]
    CallEnded {
        version: u32,
        agent: Option<String>,
        call: String,
        group: Option<String>,
        hangup_reason: String,
        /// Outbound calls: `answered`, `busy`, `no_answer`, `rejected`,
        /// `unreachable`, `cancelled` or `agent_no_answer`.
        outcome: Option<String>,
    },
    /// A skill group's queue changed.
    #[serde(rename = "group.queue")]
    GroupQueue {
        version: u32,
        group: String,
        waiting: u32,
        longest_wait_seconds: u64,
    },
    /// A contact plan of the agent is due (a reminder to call back).
    #[serde(rename = "contact_plan.due")]
    ContactPlanDue {
        version: u32,
        agent: String,
        plan: m::ContactPlan,
    },
}

impl Event {
    /// The agent the event is about; `None`: the tenant's (supervisors').
    pub fn agent(&self) -> Option<&str> {
        match self {
            Event::AgentStatus { agent, .. }
            | Event::AgentNext { agent, .. }
            | Event::Ringing { agent, .. }
            | Event::CallAnswered { agent, .. }
            | Event::CallDialing { agent, .. }
            | Event::CallHeld { agent, .. }
            | Event::CallMonitored { agent, .. }
            | Event::CallConsult { agent, .. }
            | Event::CallTransferred { agent, .. }
            | Event::ContactPlanDue { agent, .. } => Some(agent),
            Event::CallEnded { agent, .. } => agent.as_deref(),
            Event::GroupQueue { .. } => None,
        }
    }
}

/// What the node does for the live endpoints.
pub trait Live: Send + Sync {
    /// Signs `agent` in with `device` (its configured device if `None`),
    /// ready.
    fn sign_in<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        device: Option<m::Device>,
    ) -> LiveFuture<'a, AgentNow>;
    fn sign_out<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        by: By,
    ) -> LiveFuture<'a, AgentNow>;
    fn set_status<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        status: m::Status,
        by: By,
    ) -> LiveFuture<'a, AgentNow>;
    fn agent<'a>(&'a self, tenant: &'a TenantId, agent: &'a AgentId) -> LiveFuture<'a, AgentNow>;
    fn agents<'a>(&'a self, tenant: &'a TenantId) -> LiveFuture<'a, Vec<AgentNow>>;
    fn groups<'a>(&'a self, tenant: &'a TenantId) -> LiveFuture<'a, Vec<GroupNow>>;
    /// `agent` calls `number` from the phone bar (外呼): its device rings
    /// first, then the customer through the tenant's trunk.
    fn dial<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        call: OutboundRequest,
    ) -> LiveFuture<'a, Dialing>;
    /// The customer `agent` talks to goes elsewhere (blind transfer).
    fn transfer<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        to: m::TransferTarget,
    ) -> LiveFuture<'a, ()>;
    /// A consultation of `agent`'s (咨询): starts one (the customer on
    /// hold, the target rung), hands the customer to the target, makes
    /// it a three-way call, or ends it (back to the customer).
    fn consult<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        op: ConsultOp,
    ) -> LiveFuture<'a, ()>;
    /// Puts the customer `agent` talks to on hold (`on`), or takes it
    /// off.
    fn hold<'a>(&'a self, tenant: &'a TenantId, agent: &'a AgentId, on: bool)
        -> LiveFuture<'a, ()>;
    /// The supervisor's phone in `with` joins `agent`'s call in its mode, or changes
    /// mode; `None` ends the supervision.
    fn monitor<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        with: Option<(&'a AgentId, MonitorMode)>,
    ) -> LiveFuture<'a, ()>;
    /// The tenant's events from now on.
    fn events(&self, tenant: &TenantId) -> Option<broadcast::Receiver<Event>>;
    /// The node's Prometheus metrics, in the text format.
    fn metrics(&self) -> String;
}

fn live(state: &AppState) -> ApiResult<&dyn Live> {
    state.live.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "live operations need a running node",
        )
    })
}

const SUPERVISING: &[Role] = &[Role::TenantAdmin, Role::Supervisor];

/// May `caller` act on `agent`? Itself as an agent, anyone as supervisor.
fn acting_on(caller: &Caller, agent: &AgentId) -> ApiResult<By> {
    if caller
        .require(SUPERVISING, "acting on another agent")
        .is_ok()
    {
        return Ok(By::Supervisor);
    }
    if caller.is(Role::Agent) && caller.agent.as_ref() == Some(agent) {
        return Ok(By::Agent);
    }
    // Another agent's state is not this caller's business: as if absent.
    Err(ApiError::not_found(format!("no agent {}", agent.0)))
}

/// How to sign in.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// Where calls should ring this time; the agent's configured device
    /// when left out.
    pub device: Option<DeviceDoc>,
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/sign-in", tag = "live",
    params(("id" = String, Path, description = "the agent")),
    request_body = SignIn,
    responses((status = 200, body = AgentNow), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn sign_in(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AgentNow>> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    // The body is optional: none signs in with the configured device.
    let body: SignIn = if body.iter().all(u8::is_ascii_whitespace) {
        SignIn::default()
    } else {
        crate::extract::json_from_slice(&body)?
    };
    let device = match body.device {
        None => None,
        Some(DeviceDoc::Sip { account }) => {
            if state
                .store
                .get::<m::SipAccount>(&caller.tenant, &account)
                .await?
                .is_none()
            {
                return Err(ApiError::field(
                    "device.account",
                    format!("no SIP account {account:?}"),
                ));
            }
            Some(m::Device::Sip { account })
        }
        Some(DeviceDoc::Mobile { number }) => {
            crate::common::check_number("device.number", &number)?;
            Some(m::Device::Mobile { number })
        }
    };
    Ok(Json(
        live(&state)?
            .sign_in(&caller.tenant, &agent, device)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/sign-out", tag = "live",
    params(("id" = String, Path, description = "the agent")),
    responses((status = 200, body = AgentNow), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn sign_out(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<AgentNow>> {
    let agent = AgentId(id);
    let by = acting_on(&caller, &agent)?;
    Ok(Json(
        live(&state)?.sign_out(&caller.tenant, &agent, by).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/status", tag = "live",
    params(("id" = String, Path, description = "the agent")),
    responses((status = 200, body = AgentNow), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<AgentNow>> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    Ok(Json(live(&state)?.agent(&caller.tenant, &agent).await?))
}

#[utoipa::path(put, path = "/api/v1/agents/{id}/status", tag = "live",
    params(("id" = String, Path, description = "the agent")),
    request_body = ChosenStatus,
    responses((status = 200, body = AgentNow), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(status): ApiJson<ChosenStatus>,
) -> ApiResult<Json<AgentNow>> {
    let agent = AgentId(id);
    let by = acting_on(&caller, &agent)?;
    if let ChosenStatus::Break { reason } = &status {
        crate::common::check_text("reason", reason, 100)?;
    }
    Ok(Json(
        live(&state)?
            .set_status(&caller.tenant, &agent, status.into(), by)
            .await?,
    ))
}

/// An outbound call to place from the phone bar: a number, or one of the
/// agent's pending contact plans (its number is dialed and the plan is
/// marked done with the call's outcome).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dial {
    /// The customer's number: digits, optionally with a leading `+`.
    pub number: Option<String>,
    /// A contact plan of the agent's.
    pub plan: Option<String>,
    /// Another extension (a SIP account of the tenant): an internal call
    /// (内部呼叫), rung on its registered phone, not through the trunk.
    pub extension: Option<String>,
}

/// What the node is asked to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub number: String,
    /// The customer profile of the number (the call shows in its
    /// timeline).
    pub customer: Option<String>,
    /// The contact plan carried out.
    pub plan: Option<String>,
    /// `number` is an extension of the tenant: rung on its phone.
    pub internal: bool,
}

/// An outbound call under way: the agent's device rings now; the
/// customer is dialed once the agent answers. Its progress comes on the
/// WebSocket (`call.dialing`, `call.answered`, `call.ended`) and its
/// record, with the outcome, under `/api/v1/calls/{call}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Dialing {
    /// The call's id (hex).
    pub call: String,
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/calls", tag = "live",
    params(("agent" = String, Path, description = "the agent placing the call")),
    request_body = Dial,
    responses((status = 202, body = Dialing), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn dial(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Dial>,
) -> ApiResult<(StatusCode, Json<Dialing>)> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    let request = match (body.number, body.plan, body.extension) {
        (None, None, Some(extension)) => {
            crate::common::check_id("extension", &extension)?;
            OutboundRequest {
                number: extension,
                customer: None,
                plan: None,
                internal: true,
            }
        }
        (Some(number), None, None) => {
            crate::common::check_number("number", &number)?;
            let customer = state
                .store
                .customer_by_number(&caller.tenant, &number)
                .await?
                .map(|c| c.id);
            OutboundRequest {
                number,
                customer,
                plan: None,
                internal: false,
            }
        }
        (None, Some(plan), None) => {
            let p = state
                .store
                .contact_plans(&caller.tenant, &agent)
                .await?
                .into_iter()
                .find(|p| p.id == plan)
                .ok_or_else(|| {
                    ApiError::field("plan", format!("the agent has no contact plan {plan:?}"))
                })?;
            if p.status != m::ContactPlanStatus::Pending {
                return Err(ApiError::conflict(format!(
                    "contact plan {plan:?} is {:?}, not pending",
                    p.status
                )));
            }
            OutboundRequest {
                number: p.number,
                customer: Some(p.customer),
                plan: Some(p.id),
                internal: false,
            }
        }
        _ => {
            return Err(ApiError::field(
                "number",
                "give exactly one of number, plan and extension",
            ))
        }
    };
    let started = live(&state)?.dial(&caller.tenant, &agent, request).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Where to transfer the customer: exactly one of the three.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferTo {
    /// An agent, rung directly (the call goes back to the current
    /// group's queue if it cannot take it).
    pub agent: Option<String>,
    /// A skill group: queued there, keeping the call's first enqueue time.
    pub group: Option<String>,
    /// An outside number through the trunk (if the tenant allows it).
    pub number: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/transfer", tag = "live",
    params(("agent" = String, Path, description = "the agent talking to the customer")),
    request_body = TransferTo,
    responses((status = 204, description = "the agent is off the call; the customer goes to the target"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn transfer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TransferTo>,
) -> ApiResult<StatusCode> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    let to = match (body.agent, body.group, body.number) {
        (Some(a), None, None) => {
            crate::common::check_id("agent", &a)?;
            m::TransferTarget::Agent(AgentId(a))
        }
        (None, Some(g), None) => {
            crate::common::check_id("group", &g)?;
            m::TransferTarget::Group(g)
        }
        (None, None, Some(n)) => {
            crate::common::check_number("number", &n)?;
            m::TransferTarget::Number(n)
        }
        _ => {
            return Err(ApiError::field(
                "agent",
                "give exactly one of agent, group and number",
            ))
        }
    };
    live(&state)?.transfer(&caller.tenant, &agent, to).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a consultation does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsultOp {
    /// Put the customer on hold and ring this agent or number.
    Start(m::TransferTarget),
    /// The customer goes to the target; the agent leaves (咨询转).
    Transfer,
    /// The customer joins: all three hear each other (三方通话).
    Conference,
    /// The target's leg ends; agent and customer talk again.
    End,
}

/// Whom to consult: exactly one of the two.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsultWith {
    /// Another agent, on its device (it must be signed in and not on a
    /// call).
    pub agent: Option<String>,
    /// An outside number through the trunk (if the tenant allows it).
    pub number: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/consult", tag = "live",
    params(("agent" = String, Path, description = "the agent talking to the customer")),
    request_body = ConsultWith,
    responses((status = 202, description = "the customer is on hold and the target rings"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn consult_start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ConsultWith>,
) -> ApiResult<StatusCode> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    let to = match (body.agent, body.number) {
        (Some(a), None) => {
            crate::common::check_id("agent", &a)?;
            m::TransferTarget::Agent(AgentId(a))
        }
        (None, Some(n)) => {
            crate::common::check_number("number", &n)?;
            m::TransferTarget::Number(n)
        }
        _ => {
            return Err(ApiError::field(
                "agent",
                "give exactly one of agent and number",
            ))
        }
    };
    live(&state)?
        .consult(&caller.tenant, &agent, ConsultOp::Start(to))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// A step of `agent`'s consultation after its start (204 when done).
async fn consult_step(
    state: &AppState,
    caller: &Caller,
    agent: String,
    op: ConsultOp,
) -> ApiResult<StatusCode> {
    let agent = AgentId(agent);
    acting_on(caller, &agent)?;
    live(state)?.consult(&caller.tenant, &agent, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/agents/{agent}/consult", tag = "live",
    params(("agent" = String, Path, description = "the consulting agent")),
    responses((status = 204, description = "the target's leg ended; agent and customer talk again"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn consult_end(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    consult_step(&state, &caller, id, ConsultOp::End).await
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/consult/transfer", tag = "live",
    params(("agent" = String, Path, description = "the consulting agent")),
    responses((status = 204, description = "the customer talks to the target; the agent is off the call"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn consult_transfer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    consult_step(&state, &caller, id, ConsultOp::Transfer).await
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/consult/conference", tag = "live",
    params(("agent" = String, Path, description = "the consulting agent")),
    responses((status = 204, description = "the customer, the agent and the target hear each other"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn consult_conference(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    consult_step(&state, &caller, id, ConsultOp::Conference).await
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/hold", tag = "live",
    params(("agent" = String, Path, description = "the agent talking to the customer")),
    responses((status = 204, description = "the customer is on hold and hears music"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn hold(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    live(&state)?.hold(&caller.tenant, &agent, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How a supervisor is on an agent's call (监听 / 耳语 / 强插 / 强拆).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMode {
    /// Hears both sides; nobody hears the supervisor.
    Listen,
    /// The agent hears the supervisor too; the customer does not.
    Whisper,
    /// Everyone hears everyone.
    Barge,
    /// The supervisor, already on the call, takes it over (强拆): the
    /// agent is cut off and goes to wrap-up; the supervisor talks to the
    /// customer alone.
    TakeOver,
}

/// A supervisor joins (or changes mode on) an agent's call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorRequest {
    pub mode: MonitorMode,
    /// The agent whose phone the supervisor uses; the caller's own agent
    /// if absent.
    pub supervisor: Option<String>,
}

/// The supervisor's agent: named, or the caller's own.
fn supervisor_of(caller: &Caller, named: Option<String>) -> ApiResult<AgentId> {
    match named.or_else(|| caller.agent.as_ref().map(|a| a.0.clone())) {
        Some(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(AgentId(s)),
        _ => Err(ApiError::field(
            "supervisor",
            "name the agent whose phone the supervisor uses (this user has no agent)",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/monitor/agents/{agent}", tag = "live",
    params(("agent" = String, Path, description = "the agent talking to a customer")),
    request_body = MonitorRequest,
    responses((status = 202, description = "the supervisor's phone rings (or the mode changed)"),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn monitor_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<MonitorRequest>,
) -> ApiResult<StatusCode> {
    caller.require(SUPERVISING, "monitoring a call")?;
    let supervisor = supervisor_of(&caller, req.supervisor)?;
    let agent = AgentId(id);
    live(&state)?
        .monitor(&caller.tenant, &agent, Some((&supervisor, req.mode)))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(delete, path = "/api/v1/monitor/agents/{agent}", tag = "live",
    params(("agent" = String, Path, description = "the agent whose call is monitored")),
    responses((status = 204, description = "the supervisor's leg ended"),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn unmonitor_call(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(SUPERVISING, "monitoring a call")?;
    let agent = AgentId(id);
    live(&state)?.monitor(&caller.tenant, &agent, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/agents/{agent}/unhold", tag = "live",
    params(("agent" = String, Path, description = "the agent whose customer is on hold")),
    responses((status = 204, description = "agent and customer hear each other again"),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
async fn unhold(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let agent = AgentId(id);
    acting_on(&caller, &agent)?;
    live(&state)?.hold(&caller.tenant, &agent, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The agents' monitor (坐席监控): every agent now and the counts by
/// status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentsMonitor {
    pub agents: Vec<AgentNow>,
    /// Agents by status name (`ready`, `busy`, `break`, `custom`,
    /// `ringing`, `talking`, `after_call_work`, `offline`).
    pub counts: std::collections::BTreeMap<String, u32>,
    /// Custom statuses by id.
    pub custom: std::collections::BTreeMap<String, u32>,
}

#[utoipa::path(get, path = "/api/v1/monitor/agents", tag = "live",
    responses((status = 200, body = AgentsMonitor), (status = 403, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn monitor_agents(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<AgentsMonitor>> {
    caller.require(SUPERVISING, "the agents' monitor")?;
    let agents = live(&state)?.agents(&caller.tenant).await?;
    let mut counts = std::collections::BTreeMap::new();
    let mut custom = std::collections::BTreeMap::new();
    for a in &agents {
        let name = match &a.status {
            StatusDoc::Offline => "offline",
            StatusDoc::Ready => "ready",
            StatusDoc::Busy => "busy",
            StatusDoc::Break { .. } => "break",
            StatusDoc::Custom { id } => {
                *custom.entry(id.clone()).or_insert(0) += 1;
                "custom"
            }
            StatusDoc::Ringing { .. } => "ringing",
            StatusDoc::Talking { .. } => "talking",
            StatusDoc::AfterCallWork { .. } => "after_call_work",
        };
        *counts.entry(name.to_owned()).or_insert(0) += 1;
    }
    Ok(Json(AgentsMonitor {
        agents,
        counts,
        custom,
    }))
}

/// A skill group in the monitor: its queue now and today's counts
/// (offered, answered, abandoned, service level…).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupMonitor {
    #[serde(flatten)]
    pub now: GroupNow,
    pub today: crate::reports::HourRow,
}

#[utoipa::path(get, path = "/api/v1/monitor/groups", tag = "live",
    responses((status = 200, body = [GroupMonitor]), (status = 403, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
async fn monitor_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<GroupMonitor>>> {
    caller.require(SUPERVISING, "the groups' monitor")?;
    let groups = live(&state)?.groups(&caller.tenant).await?;
    let tenant = crate::config::tenant_record(&state, &caller.tenant).await?;
    let day = crate::common::day_or_today("day", None, tenant.utc_offset_minutes)?;
    let rows = state
        .store
        .hourly_stats_of_kind(&caller.tenant, day, m::ScopeKind::Group)
        .await?;
    Ok(Json(
        groups
            .into_iter()
            .map(|g| {
                let scope = m::StatsScope::Group(g.group.clone());
                let today = crate::reports::series(&scope, &rows).total;
                GroupMonitor { now: g, today }
            })
            .collect(),
    ))
}

/// Today's traffic so far (话务状况), and its 24 hours.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Traffic {
    /// `YYYY-MM-DD`, the tenant's local day.
    pub day: String,
    /// The day so far: inbound offered and answered, outbound dialed and
    /// connected, the rates.
    pub today: crate::reports::HourRow,
    /// Hours 0 to 23.
    pub hours: Vec<crate::reports::HourRow>,
}

#[utoipa::path(get, path = "/api/v1/monitor/traffic", tag = "live",
    responses((status = 200, body = Traffic), (status = 403, body = crate::error::ErrorBody)))]
async fn monitor_traffic(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Traffic>> {
    caller.require(SUPERVISING, "the traffic monitor")?;
    let tenant = crate::config::tenant_record(&state, &caller.tenant).await?;
    let day = crate::common::day_or_today("day", None, tenant.utc_offset_minutes)?;
    let rows = state
        .store
        .hourly_stats(&caller.tenant, day, &m::StatsScope::Tenant)
        .await?;
    let s = crate::reports::series(&m::StatsScope::Tenant, &rows);
    Ok(Json(Traffic {
        day: crate::common::format_date(day.date()),
        today: s.total,
        hours: s.hours,
    }))
}

/// `?token=` for browsers, which cannot set headers on a WebSocket.
#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn ws(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let caller = match crate::auth::caller_of(&state, &headers, q.token.as_deref()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(rx) = state.live.as_ref().and_then(|l| l.events(&caller.tenant)) else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "live events need a running node",
        )
        .into_response();
    };
    let everything = caller.require(SUPERVISING, "").is_ok();
    let own = caller.agent.clone();
    upgrade.on_upgrade(move |socket| pump(socket, rx, everything, own))
}

/// Sends the caller's events until it goes away or falls behind.
async fn pump(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Event>,
    everything: bool,
    own: Option<AgentId>,
) {
    let hello = serde_json::json!({"type": "hello", "version": 1});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            e = rx.recv() => match e {
                Ok(event) => {
                    let mine = everything
                        || own.as_ref().is_some_and(|a| event.agent() == Some(a.0.as_str()));
                    if !mine {
                        continue;
                    }
                    let Ok(text) = serde_json::to_string(&event) else { continue };
                    // A client that does not take a frame in 5 s is dropped.
                    let sent = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        socket.send(Message::Text(text.into())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let _ = socket
                        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: 1008,
                            reason: format!("too slow: {n} events missed").into(),
                        })))
                        .await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.live.as_ref() {
        Some(l) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            l.metrics(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics need a running node",
        )
        .into_response(),
    }
}

/// The live routes (absolute paths), for [`crate::router_with`].
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(get_status, set_status))
        .routes(routes!(dial))
        .routes(routes!(hold))
        .routes(routes!(transfer))
        .routes(routes!(consult_start, consult_end))
        .routes(routes!(consult_transfer))
        .routes(routes!(consult_conference))
        .routes(routes!(unhold))
        .routes(routes!(monitor_agents))
        .routes(routes!(monitor_call, unmonitor_call))
        .routes(routes!(monitor_groups))
        .routes(routes!(monitor_traffic))
        .route("/api/v1/ws", axum::routing::get(ws))
        .route("/metrics", axum::routing::get(metrics))
}
