//! Customers (客户信息), tickets (工单), service summaries (服务小结),
//! contact plans (联系计划) and the customer timeline (历史动态).

use super::{AgentId, CallId, CustomFields, DialOutcome, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

/// A customer profile, matched to calls by its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    /// Phone numbers, as calls present them; each number belongs to at most
    /// one customer of the tenant.
    pub numbers: Vec<String>,
    /// The tenant's custom fields (see the `customer` form schema).
    pub fields: CustomFields,
    pub created: Timestamp,
    pub updated: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    InProgress,
    Resolved,
    Closed,
}

/// A trackable service case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub tenant: TenantId,
    pub id: String,
    pub customer: Option<String>,
    /// The call it was opened from.
    pub call: Option<CallId>,
    pub title: String,
    pub description: String,
    pub status: TicketStatus,
    /// 0 (low) to 3 (urgent).
    pub priority: u8,
    pub assignee: Option<AgentId>,
    pub fields: CustomFields,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// The agent's categorisation and notes of a call (服务小结).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub tenant: TenantId,
    pub id: String,
    pub call: Option<CallId>,
    pub customer: Option<String>,
    pub agent: AgentId,
    /// Category path, e.g. `["咨询", "账单"]`.
    pub category: Vec<String>,
    pub notes: String,
    pub fields: CustomFields,
    pub created: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactPlanStatus {
    Pending,
    Done,
    Cancelled,
}

/// A reminder to call a customer back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactPlan {
    pub tenant: TenantId,
    pub id: String,
    pub customer: String,
    /// The number to call.
    pub number: String,
    pub agent: AgentId,
    pub due: Timestamp,
    pub note: String,
    pub status: ContactPlanStatus,
    pub created: Timestamp,
    /// The outbound call that carried it out, and how its dialing ended.
    #[serde(default)]
    pub call: Option<CallId>,
    #[serde(default)]
    pub outcome: Option<DialOutcome>,
}

/// What a timeline entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Call,
    Ticket,
    Summary,
    ContactPlan,
}

impl TimelineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Call => "call",
            TimelineKind::Ticket => "ticket",
            TimelineKind::Summary => "summary",
            TimelineKind::ContactPlan => "contact_plan",
        }
    }

    pub fn parse(s: &str) -> Option<TimelineKind> {
        [
            TimelineKind::Call,
            TimelineKind::Ticket,
            TimelineKind::Summary,
            TimelineKind::ContactPlan,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One entry of a customer's timeline: a call, ticket, summary or contact
/// plan, by the time it happened (or was created). The store writes these
/// itself when the record is written with its customer set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub tenant: TenantId,
    pub customer: String,
    pub at: Timestamp,
    pub kind: TimelineKind,
    /// The record's id (a call id in hex for calls).
    pub id: String,
    /// A one-line description for the list (a ticket's title, a call's
    /// direction and outcome).
    pub title: String,
}

impl TimelineEvent {
    /// The entry of a call, if the call is linked to a customer.
    pub fn of_call(r: &super::CallRecord) -> Option<TimelineEvent> {
        let customer = r.customer.clone()?;
        Some(TimelineEvent {
            tenant: r.tenant.clone(),
            customer,
            at: r.start,
            kind: TimelineKind::Call,
            id: r.call.to_string(),
            title: call_title(r.direction.as_str(), r.answered.is_some()),
        })
    }

    pub fn of_ticket(t: &Ticket) -> Option<TimelineEvent> {
        Some(TimelineEvent {
            tenant: t.tenant.clone(),
            customer: t.customer.clone()?,
            at: t.created,
            kind: TimelineKind::Ticket,
            id: t.id.clone(),
            title: t.title.clone(),
        })
    }

    pub fn of_summary(s: &ServiceSummary) -> Option<TimelineEvent> {
        Some(TimelineEvent {
            tenant: s.tenant.clone(),
            customer: s.customer.clone()?,
            at: s.created,
            kind: TimelineKind::Summary,
            id: s.id.clone(),
            title: if s.category.is_empty() {
                s.notes.chars().take(60).collect()
            } else {
                s.category.join("/")
            },
        })
    }

    pub fn of_contact_plan(p: &ContactPlan) -> TimelineEvent {
        TimelineEvent {
            tenant: p.tenant.clone(),
            customer: p.customer.clone(),
            at: p.created,
            kind: TimelineKind::ContactPlan,
            id: p.id.clone(),
            title: p.note.chars().take(60).collect(),
        }
    }
}

/// A call's line in the timeline.
pub(crate) fn call_title(direction: &str, answered: bool) -> String {
    let outcome = if answered { "answered" } else { "unanswered" };
    format!("{direction} call, {outcome}")
}

/// Timeline order, the same on every backend: newest first, then by kind
/// and id.
pub(crate) fn sort_timeline(events: &mut [TimelineEvent]) {
    events.sort_by(|a, b| {
        (std::cmp::Reverse(a.at), a.kind.as_str(), &a.id).cmp(&(
            std::cmp::Reverse(b.at),
            b.kind.as_str(),
            &b.id,
        ))
    });
}
