//! Agents (坐席): their settings, the tenant's status policy and custom
//! statuses, and the status log.

use super::{config_record, AgentId, CallId, Day, NodeId, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

/// An agent's status (坐席状态).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Signed out (离线).
    Offline,
    /// May be offered calls (空闲).
    Ready,
    /// Not offered calls; may still dial out (忙碌).
    Busy,
    /// Not ready, with a reason (小休).
    Break { reason: String },
    /// A status the tenant defined (自定义状态), by its id.
    Custom { id: String },
    /// A call is offered and the device rings (振铃).
    Ringing { call: CallId },
    /// On a call (通话中).
    Talking { call: CallId },
    /// Wrap-up after a call (话后处理).
    AfterCallWork { call: CallId },
}

impl Status {
    /// The call this status is about, if any.
    pub fn call(&self) -> Option<CallId> {
        match self {
            Status::Ringing { call }
            | Status::Talking { call }
            | Status::AfterCallWork { call } => Some(*call),
            _ => None,
        }
    }

    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Offline => StatusKind::Offline,
            Status::Ready => StatusKind::Ready,
            Status::Busy => StatusKind::Busy,
            Status::Break { .. } => StatusKind::Break,
            Status::Custom { .. } => StatusKind::Custom,
            Status::Ringing { .. } => StatusKind::Ringing,
            Status::Talking { .. } => StatusKind::Talking,
            Status::AfterCallWork { .. } => StatusKind::AfterCallWork,
        }
    }
}

/// The kinds of status, for counters and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Offline,
    Ready,
    Busy,
    Break,
    Custom,
    Ringing,
    Talking,
    AfterCallWork,
}

impl StatusKind {
    /// Every kind, in a fixed order: `kind as usize` indexes it.
    pub const ALL: [StatusKind; 8] = [
        StatusKind::Offline,
        StatusKind::Ready,
        StatusKind::Busy,
        StatusKind::Break,
        StatusKind::Custom,
        StatusKind::Ringing,
        StatusKind::Talking,
        StatusKind::AfterCallWork,
    ];
}

/// The device an agent takes calls on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Device {
    /// A SIP phone registered with this account (SIP话机).
    Sip { account: String },
    /// The agent's own phone, reached through the trunk (手机).
    Mobile { number: String },
}

/// The tenant's rules for agents' statuses (one record per tenant, id
/// [`AgentPolicy::ID`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPolicy {
    /// Custom statuses agents may choose themselves; supervisors may set
    /// any custom status.
    pub selectable_custom: Vec<String>,
    /// Every custom status the tenant defined, by id (see [`CustomStatus`]
    /// for their names).
    pub custom: Vec<String>,
    /// Misses in a row after which the agent is made not ready.
    pub max_missed: u32,
    /// Where an agent goes after `max_missed` misses.
    pub missed_status: Status,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            selectable_custom: Vec::new(),
            custom: Vec::new(),
            max_missed: 2,
            missed_status: Status::Busy,
        }
    }
}

/// A status the tenant defined (自定义状态), counted in statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomStatus {
    pub tenant: TenantId,
    pub id: String,
    /// The label agents see (e.g. 培训).
    pub name: String,
    /// Whether agents may pick it themselves (else supervisors only).
    pub selectable: bool,
}
config_record!(CustomStatus, CustomStatus, id);

/// An agent's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub tenant: TenantId,
    pub id: AgentId,
    pub name: String,
    /// The seat (工号) shown to customers and in reports.
    pub seat: String,
    /// The user signed in as this agent (坐席绑定), if bound.
    pub user: Option<String>,
    /// Where calls ring by default.
    pub device: Device,
    /// The tenant's status rules as they apply to this agent.
    pub policy: AgentPolicy,
    /// Agents may be in a phone skill group or a telesales group, never
    /// both; this says which side the agent is on.
    pub telesales: bool,
    pub enabled: bool,
}

impl super::ConfigRecord for Agent {
    const KIND: super::ConfigKind = super::ConfigKind::Agent;
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn id(&self) -> &str {
        &self.id.0
    }
}

/// Who asked for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The agent, from the phone bar.
    Agent,
    /// A supervisor, from the monitor.
    Supervisor,
}

/// Why a status began: the reason column of the status log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeReason {
    /// The agent's first period.
    Created,
    SignIn,
    SignOut {
        by: Actor,
    },
    Chosen {
        by: Actor,
    },
    Offered,
    /// The offer ended without an answer (the caller left, another agent
    /// answered, the queue moved the call).
    OfferWithdrawn,
    /// Not answered within the ring timeout.
    Missed,
    MissedTooOften {
        misses: u32,
    },
    Answered,
    Dialed,
    HungUp,
    WrapUpDone,
    /// The agent's home node changed during a call that is still up: the
    /// new home resumes it on the call.
    Resumed,
}

/// A finished period in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusPeriod {
    pub status: Status,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Why this status began.
    pub reason: ChangeReason,
}

/// A row of the agent status log: one finished period of one agent.
/// Keyed by `(tenant, agent, day, period.start)`: writing it again
/// replaces it, so retries are safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub tenant: TenantId,
    pub agent: AgentId,
    /// The tenant-local day the period started.
    pub day: Day,
    pub period: StatusPeriod,
    /// The node whose Agent actor recorded it.
    pub node: NodeId,
}
