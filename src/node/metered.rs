//! The store as the node uses it: every operation timed into
//! `switchboard_store_op_seconds{op}` and every failure counted in
//! `switchboard_store_op_errors_total{op}`, whatever the backend.

use super::metrics;
use std::sync::Arc;
use std::time::Duration;
use switchboard_storage::model::{
    AgentId, CallId, CallRecord, ConfigDoc, ConfigKind, ContactPlan, Customer, Day, FlowVersion,
    Lease, NodeId, ServiceSummary, StatsPartial, StatusChange, TenantId, Ticket, TimelineEvent,
    Timestamp,
};
use switchboard_storage::{
    CallFilter, Expect, Page, PageRequest, StatsFilter, Store, StoreFuture, TicketFilter, TimeRange,
};

/// A store whose operations are measured.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Store>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Store>) -> Metered {
        Metered { inner }
    }
}

/// `f`, timed and its failure counted under `op`.
fn timed<'a, T: Send + 'a>(op: &'static str, f: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
    Box::pin(async move {
        let m = metrics::get();
        let started = std::time::Instant::now();
        let r = f.await;
        let took: Duration = started.elapsed();
        m.store_ops
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
        if r.is_err() {
            m.store_op_errors.with_label_values(&[op]).inc();
        }
        r
    })
}

impl Store for Metered {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn get_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ConfigDoc>> {
        timed("get_config", self.inner.get_config(tenant, kind, id))
    }
    fn list_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
    ) -> StoreFuture<'a, Vec<ConfigDoc>> {
        timed("list_config", self.inner.list_config(tenant, kind))
    }
    fn put_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        body: String,
        expect: Expect,
    ) -> StoreFuture<'a, u64> {
        timed(
            "put_config",
            self.inner.put_config(tenant, kind, id, body, expect),
        )
    }
    fn delete_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        expect: Expect,
    ) -> StoreFuture<'a, ()> {
        timed(
            "delete_config",
            self.inner.delete_config(tenant, kind, id, expect),
        )
    }
    fn list_tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        timed("list_tenants", self.inner.list_tenants())
    }
    fn find_global<'a>(
        &'a self,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<TenantId>> {
        timed("find_global", self.inner.find_global(kind, id))
    }
    fn add_flow_version<'a>(&'a self, version: &'a FlowVersion) -> StoreFuture<'a, u32> {
        timed("add_flow_version", self.inner.add_flow_version(version))
    }
    fn flow_version<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<FlowVersion>> {
        timed(
            "flow_version",
            self.inner.flow_version(tenant, flow, version),
        )
    }
    fn flow_versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
    ) -> StoreFuture<'a, Vec<FlowVersion>> {
        timed("flow_versions", self.inner.flow_versions(tenant, flow))
    }
    fn put_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()> {
        timed("put_calls", self.inner.put_calls(records))
    }
    fn put_open_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()> {
        timed("put_open_calls", self.inner.put_open_calls(records))
    }
    fn open_calls<'a>(&'a self, node: &'a NodeId) -> StoreFuture<'a, Vec<CallRecord>> {
        timed("open_calls", self.inner.open_calls(node))
    }
    fn get_call<'a>(
        &'a self,
        tenant: &'a TenantId,
        call: CallId,
    ) -> StoreFuture<'a, Option<CallRecord>> {
        timed("get_call", self.inner.get_call(tenant, call))
    }
    fn calls_by_day<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a CallFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        timed(
            "calls_by_day",
            self.inner.calls_by_day(tenant, day, filter, page),
        )
    }
    fn calls_by_agent<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        timed(
            "calls_by_agent",
            self.inner.calls_by_agent(tenant, agent, range, page),
        )
    }
    fn calls_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        timed(
            "calls_by_number",
            self.inner.calls_by_number(tenant, number, range, page),
        )
    }
    fn put_status_changes<'a>(&'a self, changes: &'a [StatusChange]) -> StoreFuture<'a, ()> {
        timed("put_status_changes", self.inner.put_status_changes(changes))
    }
    fn status_log<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        day: Day,
    ) -> StoreFuture<'a, Vec<StatusChange>> {
        timed("status_log", self.inner.status_log(tenant, agent, day))
    }
    fn put_stats<'a>(&'a self, partials: &'a [StatsPartial]) -> StoreFuture<'a, ()> {
        timed("put_stats", self.inner.put_stats(partials))
    }
    fn stats_partials<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a StatsFilter,
    ) -> StoreFuture<'a, Vec<StatsPartial>> {
        timed(
            "stats_partials",
            self.inner.stats_partials(tenant, day, filter),
        )
    }
    fn put_customer<'a>(&'a self, customer: &'a Customer) -> StoreFuture<'a, ()> {
        timed("put_customer", self.inner.put_customer(customer))
    }
    fn get_customer<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Customer>> {
        timed("get_customer", self.inner.get_customer(tenant, id))
    }
    fn customer_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
    ) -> StoreFuture<'a, Option<Customer>> {
        timed(
            "customer_by_number",
            self.inner.customer_by_number(tenant, number),
        )
    }
    fn put_ticket<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()> {
        timed("put_ticket", self.inner.put_ticket(ticket))
    }
    fn get_ticket<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Ticket>> {
        timed("get_ticket", self.inner.get_ticket(tenant, id))
    }
    fn customers<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Customer>> {
        timed("customers", self.inner.customers(tenant, name, page))
    }
    fn tickets<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a TicketFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Ticket>> {
        timed("tickets", self.inner.tickets(tenant, filter, page))
    }
    fn put_summary<'a>(&'a self, summary: &'a ServiceSummary) -> StoreFuture<'a, ()> {
        timed("put_summary", self.inner.put_summary(summary))
    }
    fn get_summary<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ServiceSummary>> {
        timed("get_summary", self.inner.get_summary(tenant, id))
    }
    fn put_contact_plan<'a>(&'a self, plan: &'a ContactPlan) -> StoreFuture<'a, ()> {
        timed("put_contact_plan", self.inner.put_contact_plan(plan))
    }
    fn contact_plans<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
    ) -> StoreFuture<'a, Vec<ContactPlan>> {
        timed("contact_plans", self.inner.contact_plans(tenant, agent))
    }
    fn timeline<'a>(
        &'a self,
        tenant: &'a TenantId,
        customer: &'a str,
        before: Option<Timestamp>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<TimelineEvent>> {
        timed(
            "timeline",
            self.inner.timeline(tenant, customer, before, limit),
        )
    }
    fn acquire_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
        node: &'a NodeId,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease> {
        timed(
            "acquire_lease",
            self.inner.acquire_lease(tenant, key, node, ttl, now),
        )
    }
    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease> {
        timed("renew_lease", self.inner.renew_lease(lease, ttl, now))
    }
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        timed("release_lease", self.inner.release_lease(lease))
    }
    fn get_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<Lease>> {
        timed("get_lease", self.inner.get_lease(tenant, key))
    }
}
