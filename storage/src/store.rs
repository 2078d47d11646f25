//! The `Store` trait: what the call center asks of its storage, in the
//! same words for every backend.

use crate::model::{
    AgentId, CallId, CallRecord, ConfigDoc, ConfigKind, ContactPlan, Customer, Day, Direction,
    FlowVersion, HangupSide, Lease, NodeId, ScopeKind, ServiceSummary, StatsPartial, StatsScope,
    StatusChange, TenantId, Ticket, TicketStatus, TimelineEvent, Timestamp,
};
use crate::Result;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future every [`Store`] method returns: boxed, so the trait works
/// as `Arc<dyn Store>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a configuration write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there (upsert); the revision still counts up.
    Any,
    /// Create: [`Conflict`](crate::ErrorKind::Conflict) if it exists.
    Absent,
    /// Compare-and-set: [`Conflict`](crate::ErrorKind::Conflict) unless
    /// the stored revision is this one.
    Revision(u64),
}

/// An opaque position in a listing, handed back to get the next page.
/// Its form belongs to the backend; it is safe to pass through a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(pub String);

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (1..=1000).
    pub limit: u32,
    /// `None` for the first page, else the previous page's `next`.
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    pub fn first(limit: u32) -> PageRequest {
        PageRequest {
            limit,
            cursor: None,
        }
    }

    pub(crate) fn checked_limit(&self) -> Result<u32> {
        if (1..=1000).contains(&self.limit) {
            Ok(self.limit)
        } else {
            Err(crate::StoreError::invalid(format!(
                "page limit {} is not within 1..=1000",
                self.limit
            )))
        }
    }
}

/// One page of a listing. A page may hold fewer than `limit` items even
/// when more follow (filters are applied while paging); `next` is `None`
/// only at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Start times `[from, to)`; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl TimeRange {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e)
    }
}

/// Filters of a tenant's ticket list; every set field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub assignee: Option<AgentId>,
    pub customer: Option<String>,
}

impl TicketFilter {
    pub fn matches(&self, t: &Ticket) -> bool {
        self.status.is_none_or(|s| t.status == s)
            && self
                .assignee
                .as_ref()
                .is_none_or(|a| t.assignee.as_ref() == Some(a))
            && self
                .customer
                .as_ref()
                .is_none_or(|c| t.customer.as_ref() == Some(c))
    }
}

/// Filters of the day's call list; every set field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallFilter {
    pub range: TimeRange,
    pub agent: Option<AgentId>,
    pub group: Option<String>,
    pub direction: Option<Direction>,
    /// Answered by an agent, or not.
    pub answered: Option<bool>,
    pub hangup_side: Option<HangupSide>,
}

impl CallFilter {
    pub fn matches(&self, r: &CallRecord) -> bool {
        self.range.contains(r.start)
            && self
                .agent
                .as_ref()
                .is_none_or(|a| r.agent.as_ref() == Some(a))
            && self
                .group
                .as_ref()
                .is_none_or(|g| r.group.as_ref() == Some(g))
            && self.direction.is_none_or(|d| r.direction == d)
            && self.answered.is_none_or(|a| r.answered.is_some() == a)
            && self.hangup_side.is_none_or(|s| r.hangup_side == s)
    }
}

/// Which statistics rows of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsFilter {
    All,
    /// Every scope of one kind (every group, every agent).
    Kind(ScopeKind),
    Scope(StatsScope),
}

impl StatsFilter {
    pub fn matches(&self, s: &StatsScope) -> bool {
        match self {
            StatsFilter::All => true,
            StatsFilter::Kind(k) => s.kind() == *k,
            StatsFilter::Scope(x) => x == s,
        }
    }
}

/// The storage of the call center. Every method is one round trip (or one
/// transaction) to the backend; a returned `Ok` for a write means the
/// write is durable in the backend's sense (see the crate docs).
///
/// Listings are newest first.
pub trait Store: Send + Sync + fmt::Debug {
    /// The backend's name, for logs (`embedded`, `scylla`).
    fn backend(&self) -> &'static str;

    // --- configuration ---------------------------------------------------

    fn get_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ConfigDoc>>;

    /// Every document of a kind of the tenant, by id.
    fn list_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
    ) -> StoreFuture<'a, Vec<ConfigDoc>>;

    /// Writes a document and returns its new revision. Ids of a global
    /// kind ([`ConfigKind::is_global`]) taken by another tenant are a
    /// conflict.
    fn put_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        body: String,
        expect: Expect,
    ) -> StoreFuture<'a, u64>;

    /// Deletes a document. With [`Expect::Any`] deleting nothing is fine.
    fn delete_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        expect: Expect,
    ) -> StoreFuture<'a, ()>;

    /// Every tenant that has a tenant record.
    fn list_tenants(&self) -> StoreFuture<'_, Vec<TenantId>>;

    /// The tenant owning an id of a global kind (a hotline number).
    fn find_global<'a>(
        &'a self,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<TenantId>>;

    // --- IVR flow versions --------------------------------------------------

    /// Saves a version of a flow and returns its number. `version.version`
    /// 0 takes the next number (1, 2, …); any other number is taken
    /// exactly, a conflict if it exists (idempotent creation).
    fn add_flow_version<'a>(&'a self, version: &'a FlowVersion) -> StoreFuture<'a, u32>;

    fn flow_version<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<FlowVersion>>;

    /// Every version of a flow, oldest first.
    fn flow_versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
    ) -> StoreFuture<'a, Vec<FlowVersion>>;

    // --- call records ---------------------------------------------------------

    /// Writes finished calls (one batch). Writing a call again replaces it.
    fn put_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()>;

    /// Calls in progress as their node sees them now, each replacing what
    /// was written of it before. Writing a call's record ([`Store::put_calls`])
    /// removes it, so what is left of a node that died is its calls that
    /// were up: a survivor closes them.
    fn put_open_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()>;

    /// The calls in progress that `node` wrote and no record closed yet,
    /// oldest first.
    fn open_calls<'a>(&'a self, node: &'a NodeId) -> StoreFuture<'a, Vec<CallRecord>>;

    fn get_call<'a>(
        &'a self,
        tenant: &'a TenantId,
        call: CallId,
    ) -> StoreFuture<'a, Option<CallRecord>>;

    /// The calls of a tenant-local day.
    fn calls_by_day<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a CallFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>>;

    /// The calls an agent talked on (or placed).
    fn calls_by_agent<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>>;

    /// The calls with a customer number.
    fn calls_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>>;

    // --- agent status log -------------------------------------------------------

    /// Appends finished status periods. The same period again replaces it.
    fn put_status_changes<'a>(&'a self, changes: &'a [StatusChange]) -> StoreFuture<'a, ()>;

    /// An agent's periods that started on `day`, oldest first.
    fn status_log<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        day: Day,
    ) -> StoreFuture<'a, Vec<StatusChange>>;

    // --- hourly statistics ---------------------------------------------------------

    /// Writes nodes' partials; each replaces the same node's partial for
    /// that (tenant, day, hour, scope).
    fn put_stats<'a>(&'a self, partials: &'a [StatsPartial]) -> StoreFuture<'a, ()>;

    /// The partials of every node for a day (sum them with
    /// [`hourly_stats`](crate::model::stats::sum_partials)).
    fn stats_partials<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a StatsFilter,
    ) -> StoreFuture<'a, Vec<StatsPartial>>;

    // --- customers, tickets, summaries, contact plans --------------------------------

    /// Creates or replaces a customer. A number already belonging to
    /// another customer of the tenant is a conflict.
    fn put_customer<'a>(&'a self, customer: &'a Customer) -> StoreFuture<'a, ()>;

    fn get_customer<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Customer>>;

    fn customer_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
    ) -> StoreFuture<'a, Option<Customer>>;

    fn put_ticket<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()>;

    fn get_ticket<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Ticket>>;

    /// The tenant's customers, the last updated first; with `name`, those
    /// whose name contains it (any case).
    fn customers<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Customer>>;

    /// The tenant's tickets, the last updated first.
    fn tickets<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a TicketFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Ticket>>;

    fn put_summary<'a>(&'a self, summary: &'a ServiceSummary) -> StoreFuture<'a, ()>;

    fn get_summary<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ServiceSummary>>;

    fn put_contact_plan<'a>(&'a self, plan: &'a ContactPlan) -> StoreFuture<'a, ()>;

    /// An agent's contact plans, earliest due first.
    fn contact_plans<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
    ) -> StoreFuture<'a, Vec<ContactPlan>>;

    /// A customer's calls, tickets, summaries and contact plans, newest
    /// first: at most `limit` entries from before `before` (all if `None`).
    fn timeline<'a>(
        &'a self,
        tenant: &'a TenantId,
        customer: &'a str,
        before: Option<Timestamp>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<TimelineEvent>>;

    // --- leases ---------------------------------------------------------------------------

    /// Takes the lease on `key` for `node` until `now + ttl`. Granted if it
    /// is free, lapsed or released (with a new, higher epoch) or already
    /// `node`'s (same epoch, extended); else a conflict.
    fn acquire_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
        node: &'a NodeId,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease>;

    /// Extends a held lease; a conflict if its epoch is no longer current
    /// or it lapsed (someone may have taken it).
    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease>;

    /// Gives a lease up; a conflict if the epoch is no longer current.
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()>;

    /// The lease as stored (possibly lapsed or released: `holder` empty).
    fn get_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<Lease>>;
}
