//! The ScyllaDB backend, on the `scylla` driver.
//!
//! The tables are in `storage/schema/scylla.cql`. Every statement is
//! prepared once at connect time. Reads and writes use `LOCAL_QUORUM`;
//! conditional writes (revisions, global ids, customer numbers, flow
//! versions, leases) are LWT with `LOCAL_SERIAL`, and the rows they touch
//! are never written without a condition. Plain writes are idempotent and
//! marked so, so the driver may retry them. Time series carry a TTL from
//! [`ScyllaOptions::retention`].
//!
//! Listings page with the server's paging state; a [`Cursor`] is that
//! state, hex-encoded. Filters of the day's call list are applied to the
//! rows of each page, so a page may hold fewer than `limit` calls while
//! more follow.

mod rows;

use crate::model::lease::{grant, still_held, LeaseRow};
use crate::model::{
    AgentId, CallId, CallRecord, ConfigDoc, ConfigKind, ContactPlan, Counters, Customer, Day,
    FlowVersion, Lease, NodeId, Retention, ServiceSummary, StatsPartial, StatsScope, StatusChange,
    TenantId, Ticket, TimelineEvent, TimelineKind, Timestamp,
};
use crate::store::{
    CallFilter, Cursor, Expect, Page, PageRequest, StatsFilter, Store, StoreFuture, TimeRange,
};
use crate::{ErrorKind, Result, StoreError};
use rows::{big, int, opt_text, text, Lwt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The schema, applied by [`ScyllaStore::connect`] when asked.
pub const SCHEMA: &str = include_str!("../../schema/scylla.cql");

/// Conditional-write retries before reporting a conflict.
const LWT_TRIES: usize = 16;
/// Page fetches of one filtered listing call before returning what it has.
const MAX_FETCHES: usize = 20;
/// Plain writes of one batch in flight at once.
const WRITE_CONCURRENCY: usize = 64;

/// How to reach the cluster and shape the schema.
#[derive(Debug, Clone)]
pub struct ScyllaOptions {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The keyspace's replication map, in CQL.
    pub replication: String,
    /// Create the keyspace and tables (idempotent) before preparing.
    pub create_schema: bool,
    /// Wait for schema agreement after DDL (off only for test servers
    /// that do not report schema versions).
    pub await_schema_agreement: bool,
    /// TTLs of the time series.
    pub retention: Retention,
    /// A request not answered in this time fails with a timeout.
    pub request_timeout: Duration,
}

impl ScyllaOptions {
    /// Options for a comma-separated list of nodes (as in `SCYLLA_URI`),
    /// keyspace `switchboard`, replication factor 3.
    pub fn new(nodes: &str) -> ScyllaOptions {
        ScyllaOptions {
            nodes: nodes
                .split(',')
                .map(|n| n.trim().trim_start_matches("scylla://").to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            keyspace: "switchboard".into(),
            replication: "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}".into(),
            create_schema: true,
            await_schema_agreement: true,
            retention: Retention::default(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The ScyllaDB store. Cheap to clone.
#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.inner.keyspace)
            .finish_non_exhaustive()
    }
}

struct Inner {
    session: Session,
    keyspace: String,
    ttl_calls: i32,
    ttl_status: i32,
    ttl_stats: i32,
    st: Statements,
}

fn ttl_secs(days: u32) -> i32 {
    i32::try_from(u64::from(days) * 86_400).unwrap_or(i32::MAX)
}

pub(crate) fn exec_error(e: ExecutionError) -> StoreError {
    let kind = match &e {
        ExecutionError::RequestTimeout(_) => ErrorKind::Timeout,
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => ErrorKind::Invalid,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::ConfigError
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. } => ErrorKind::Invalid,
            DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. } => ErrorKind::Timeout,
            _ => ErrorKind::Unavailable,
        },
        _ => ErrorKind::Unavailable,
    };
    StoreError::new(kind, "scylla").with_source(e)
}

fn decode<T: DeserializeOwned>(what: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| StoreError::decode(what, e))
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::encode(what, e))
}

fn call_col(c: CallId) -> i64 {
    i64::from_ne_bytes(c.0.to_ne_bytes())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn range_bounds(r: &TimeRange) -> (i64, i64) {
    (
        r.from.map_or(0, Timestamp::as_i64),
        r.to.map_or(i64::MAX, Timestamp::as_i64),
    )
}

fn encode_cursor(state: &PagingState) -> Option<Cursor> {
    state
        .as_bytes_slice()
        .map(|b| Cursor(format!("s1{}", hex::encode(b.as_ref()))))
}

fn decode_cursor(c: &Cursor) -> Result<PagingState> {
    let bad = || StoreError::invalid(format!("cursor {:?} is not one of this store's", c.0));
    let raw = c.0.strip_prefix("s1").ok_or_else(bad)?;
    let bytes = hex::decode(raw).map_err(|_| bad())?;
    Ok(PagingState::new_from_raw_bytes(bytes))
}

macro_rules! statements {
    ($($name:ident: $kind:ident $cql:expr;)*) => {
        struct Statements {
            $($name: PreparedStatement,)*
        }

        impl Statements {
            async fn prepare(session: &Session, timeout: Duration) -> Result<Statements> {
                Ok(Statements {
                    $($name: prepare(session, $cql, Mode::$kind, timeout).await?,)*
                })
            }
        }
    };
}

#[derive(Clone, Copy)]
enum Mode {
    /// A read.
    Read,
    /// A read that sees every committed LWT (SERIAL).
    Serial,
    /// A plain, idempotent write.
    Write,
    /// A conditional write.
    Lwt,
}

async fn prepare(
    session: &Session,
    cql: &str,
    mode: Mode,
    timeout: Duration,
) -> Result<PreparedStatement> {
    let mut st = session.prepare(cql).await.map_err(|e| {
        StoreError::new(ErrorKind::Unavailable, format!("cannot prepare {cql:?}")).with_source(e)
    })?;
    st.set_request_timeout(Some(timeout));
    match mode {
        Mode::Read => {
            st.set_consistency(Consistency::LocalQuorum);
            st.set_is_idempotent(true);
        }
        Mode::Serial => {
            st.set_consistency(Consistency::LocalSerial);
            st.set_is_idempotent(true);
        }
        Mode::Write => {
            st.set_consistency(Consistency::LocalQuorum);
            st.set_is_idempotent(true);
        }
        Mode::Lwt => {
            st.set_consistency(Consistency::LocalQuorum);
            st.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            st.set_is_idempotent(false);
        }
    }
    Ok(st)
}

statements! {
    get_config: Read "SELECT revision, body FROM config WHERE tenant = ? AND kind = ? AND id = ?";
    get_revision: Serial "SELECT revision FROM config WHERE tenant = ? AND kind = ? AND id = ?";
    list_config: Read "SELECT id, revision, body FROM config WHERE tenant = ? AND kind = ?";
    create_config: Lwt "INSERT INTO config (tenant, kind, id, revision, body) VALUES (?, ?, ?, 1, ?) IF NOT EXISTS";
    cas_config: Lwt "UPDATE config SET revision = ?, body = ? WHERE tenant = ? AND kind = ? AND id = ? IF revision = ?";
    delete_config_any: Lwt "DELETE FROM config WHERE tenant = ? AND kind = ? AND id = ? IF EXISTS";
    delete_config_rev: Lwt "DELETE FROM config WHERE tenant = ? AND kind = ? AND id = ? IF revision = ?";
    add_tenant: Write "INSERT INTO tenants (bucket, tenant) VALUES (0, ?)";
    remove_tenant: Write "DELETE FROM tenants WHERE bucket = 0 AND tenant = ?";
    list_tenants: Read "SELECT tenant FROM tenants WHERE bucket = 0";
    claim_global: Lwt "INSERT INTO global_ids (kind, id, tenant) VALUES (?, ?, ?) IF NOT EXISTS";
    find_global: Read "SELECT tenant FROM global_ids WHERE kind = ? AND id = ?";
    release_global: Lwt "DELETE FROM global_ids WHERE kind = ? AND id = ? IF tenant = ?";
    last_flow_version: Serial "SELECT version FROM flow_versions WHERE tenant = ? AND flow = ? ORDER BY version DESC LIMIT 1";
    add_flow_version: Lwt "INSERT INTO flow_versions (tenant, flow, version, body) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    flow_version: Read "SELECT body FROM flow_versions WHERE tenant = ? AND flow = ? AND version = ?";
    flow_versions: Read "SELECT body FROM flow_versions WHERE tenant = ? AND flow = ?";
    put_call_day: Write "INSERT INTO calls_by_day (tenant, day, start, call, body) VALUES (?, ?, ?, ?, ?) USING TTL ?";
    put_call_agent: Write "INSERT INTO calls_by_agent (tenant, agent, start, call, body) VALUES (?, ?, ?, ?, ?) USING TTL ?";
    put_call_number: Write "INSERT INTO calls_by_number (tenant, number, start, call, body) VALUES (?, ?, ?, ?, ?) USING TTL ?";
    put_call_id: Write "INSERT INTO calls_by_id (tenant, call, body) VALUES (?, ?, ?) USING TTL ?";
    get_call: Read "SELECT body FROM calls_by_id WHERE tenant = ? AND call = ?";
    put_open_call: Write "INSERT INTO open_calls (node, tenant, call, body) VALUES (?, ?, ?, ?)";
    close_open_call: Write "DELETE FROM open_calls WHERE node = ? AND tenant = ? AND call = ?";
    open_calls: Read "SELECT body FROM open_calls WHERE node = ?";
    calls_by_day: Read "SELECT body FROM calls_by_day WHERE tenant = ? AND day = ? AND start >= ? AND start < ?";
    calls_by_agent: Read "SELECT body FROM calls_by_agent WHERE tenant = ? AND agent = ? AND start >= ? AND start < ?";
    calls_by_number: Read "SELECT body FROM calls_by_number WHERE tenant = ? AND number = ? AND start >= ? AND start < ?";
    put_status: Write "INSERT INTO status_log (tenant, agent, day, start, body) VALUES (?, ?, ?, ?, ?) USING TTL ?";
    status_log: Read "SELECT body FROM status_log WHERE tenant = ? AND agent = ? AND day = ?";
    put_stats: Write "INSERT INTO stats_hourly (tenant, day, scope_kind, scope_id, hour, node, calls, offered, answered, abandoned_in_queue, abandoned_ringing, overflowed, answered_in_service_level, outbound, outbound_answered, talk_ms, ring_ms, queue_ms, wrap_up_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?";
    stats_all: Read "SELECT scope_kind, scope_id, hour, node, calls, offered, answered, abandoned_in_queue, abandoned_ringing, overflowed, answered_in_service_level, outbound, outbound_answered, talk_ms, ring_ms, queue_ms, wrap_up_ms FROM stats_hourly WHERE tenant = ? AND day = ?";
    stats_kind: Read "SELECT scope_kind, scope_id, hour, node, calls, offered, answered, abandoned_in_queue, abandoned_ringing, overflowed, answered_in_service_level, outbound, outbound_answered, talk_ms, ring_ms, queue_ms, wrap_up_ms FROM stats_hourly WHERE tenant = ? AND day = ? AND scope_kind = ?";
    stats_scope: Read "SELECT scope_kind, scope_id, hour, node, calls, offered, answered, abandoned_in_queue, abandoned_ringing, overflowed, answered_in_service_level, outbound, outbound_answered, talk_ms, ring_ms, queue_ms, wrap_up_ms FROM stats_hourly WHERE tenant = ? AND day = ? AND scope_kind = ? AND scope_id = ?";
    put_customer: Write "INSERT INTO customers (tenant, id, body) VALUES (?, ?, ?)";
    get_customer: Read "SELECT body FROM customers WHERE tenant = ? AND id = ?";
    put_customer_updated: Write "INSERT INTO customers_by_updated (tenant, updated, id, body) VALUES (?, ?, ?, ?)";
    drop_customer_updated: Write "DELETE FROM customers_by_updated WHERE tenant = ? AND updated = ? AND id = ?";
    customers_by_updated: Read "SELECT body FROM customers_by_updated WHERE tenant = ?";
    claim_number: Lwt "INSERT INTO customer_numbers (tenant, number, customer) VALUES (?, ?, ?) IF NOT EXISTS";
    release_number: Lwt "DELETE FROM customer_numbers WHERE tenant = ? AND number = ? IF customer = ?";
    number_owner: Read "SELECT customer FROM customer_numbers WHERE tenant = ? AND number = ?";
    put_ticket: Write "INSERT INTO tickets (tenant, id, body) VALUES (?, ?, ?)";
    put_ticket_updated: Write "INSERT INTO tickets_by_updated (tenant, updated, id, body) VALUES (?, ?, ?, ?)";
    drop_ticket_updated: Write "DELETE FROM tickets_by_updated WHERE tenant = ? AND updated = ? AND id = ?";
    tickets_by_updated: Read "SELECT body FROM tickets_by_updated WHERE tenant = ?";
    get_ticket: Read "SELECT body FROM tickets WHERE tenant = ? AND id = ?";
    put_summary: Write "INSERT INTO summaries (tenant, id, body) VALUES (?, ?, ?)";
    get_summary: Read "SELECT body FROM summaries WHERE tenant = ? AND id = ?";
    put_plan: Write "INSERT INTO contact_plans (tenant, agent, id, body) VALUES (?, ?, ?, ?)";
    delete_plan: Write "DELETE FROM contact_plans WHERE tenant = ? AND agent = ? AND id = ?";
    plan_agent: Read "SELECT agent FROM contact_plan_agents WHERE tenant = ? AND id = ?";
    put_plan_agent: Write "INSERT INTO contact_plan_agents (tenant, id, agent) VALUES (?, ?, ?)";
    plans: Read "SELECT body FROM contact_plans WHERE tenant = ? AND agent = ?";
    put_timeline: Write "INSERT INTO timeline (tenant, customer, at, kind, id, title) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?";
    timeline: Read "SELECT at, kind, id, title FROM timeline WHERE tenant = ? AND customer = ? AND at < ? LIMIT ?";
    get_lease: Serial "SELECT holder, epoch, expires FROM leases WHERE tenant = ? AND key = ?";
    create_lease: Lwt "INSERT INTO leases (tenant, key, holder, epoch, expires) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    take_lease: Lwt "UPDATE leases SET holder = ?, epoch = ?, expires = ? WHERE tenant = ? AND key = ? IF holder = ? AND epoch = ?";
}

/// The schema file's statements for `keyspace` with `replication`.
pub fn schema_statements(keyspace: &str, replication: &str) -> Vec<String> {
    let mut body = String::new();
    for line in SCHEMA.lines() {
        let line = line.split("--").next().unwrap_or("");
        body.push_str(line);
        body.push('\n');
    }
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
            let s = s.replace("switchboard.", &format!("{keyspace}."));
            if s.starts_with("CREATE KEYSPACE") {
                let head = s.split(" WITH").next().unwrap_or("");
                format!(
                    "{} WITH replication = {replication}",
                    head.replace(" switchboard", &format!(" {keyspace}"))
                )
            } else {
                s
            }
        })
        .collect()
}

impl ScyllaStore {
    /// Connects, applies the schema if asked, and prepares every statement.
    pub async fn connect(options: ScyllaOptions) -> Result<ScyllaStore> {
        if options.nodes.is_empty() {
            return Err(StoreError::invalid("no ScyllaDB node given"));
        }
        if !options
            .keyspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::invalid(format!(
                "keyspace name {:?} may hold only letters, digits and _",
                options.keyspace
            )));
        }
        let session = SessionBuilder::new()
            .known_nodes(&options.nodes)
            .connection_timeout(options.request_timeout)
            .auto_await_schema_agreement(options.await_schema_agreement)
            .build()
            .await
            .map_err(|e| {
                StoreError::unavailable(format!("cannot connect to {:?}", options.nodes))
                    .with_source(e)
            })?;
        if options.create_schema {
            for cql in schema_statements(&options.keyspace, &options.replication) {
                session
                    .query_unpaged(cql.as_str(), ())
                    .await
                    .map_err(exec_error)?;
            }
        }
        session
            .use_keyspace(&options.keyspace, false)
            .await
            .map_err(|e| {
                StoreError::unavailable(format!("cannot use keyspace {}", options.keyspace))
                    .with_source(e)
            })?;
        let st = Statements::prepare(&session, options.request_timeout).await?;
        Ok(ScyllaStore {
            inner: Arc::new(Inner {
                session,
                keyspace: options.keyspace,
                ttl_calls: ttl_secs(options.retention.call_records_days),
                ttl_status: ttl_secs(options.retention.status_log_days),
                ttl_stats: ttl_secs(options.retention.stats_days),
                st,
            }),
        })
    }
}

impl Inner {
    async fn exec(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<()> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(exec_error)?;
        Ok(())
    }

    /// Every row of a query, page after page.
    async fn rows(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        let mut state = PagingState::start();
        for _ in 0..100_000 {
            let (rows, next) = self.page(st, &values, state).await?;
            out.extend(rows);
            match next {
                Some(s) => state = s,
                None => return Ok(out),
            }
        }
        Err(StoreError::unavailable("a listing did not end"))
    }

    async fn page(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
        state: PagingState,
    ) -> Result<(Vec<Row>, Option<PagingState>)> {
        let (result, paging) = self
            .session
            .execute_single_page(st, values, state)
            .await
            .map_err(exec_error)?;
        let rows = rows::all(result)?;
        Ok((
            rows,
            match paging {
                PagingStateResponse::HasMorePages { state } => Some(state),
                PagingStateResponse::NoMorePages => None,
            },
        ))
    }

    async fn first(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<Row>> {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(exec_error)?;
        Ok(rows::all(result)?.into_iter().next())
    }

    async fn lwt(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<Lwt> {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(exec_error)?;
        Lwt::of(result)
    }

    async fn body<T: DeserializeOwned>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<T>> {
        match self.first(st, values).await? {
            Some(row) => Ok(Some(decode(what, &text(&row, 0)?)?)),
            None => Ok(None),
        }
    }

    async fn bodies<T: DeserializeOwned>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<T>> {
        self.rows(st, values)
            .await?
            .iter()
            .map(|r| decode(what, &text(r, 0)?))
            .collect()
    }

    async fn put_timeline(&self, e: &TimelineEvent, ttl: i32) -> Result<()> {
        self.exec(
            &self.st.put_timeline,
            (
                &e.tenant.0,
                &e.customer,
                e.at.as_i64(),
                e.kind.as_str(),
                &e.id,
                &e.title,
                ttl,
            ),
        )
        .await
    }

    async fn put_call(&self, r: &CallRecord) -> Result<()> {
        let body = encode("call record", r)?;
        let (t, call, start, ttl) = (
            &r.tenant.0,
            call_col(r.call),
            r.start.as_i64(),
            self.ttl_calls,
        );
        self.exec(&self.st.put_call_day, (t, r.day.0, start, call, &body, ttl))
            .await?;
        self.exec(
            &self.st.put_call_number,
            (t, &r.customer_number, start, call, &body, ttl),
        )
        .await?;
        if let Some(a) = &r.agent {
            self.exec(&self.st.put_call_agent, (t, &a.0, start, call, &body, ttl))
                .await?;
        }
        if let Some(e) = TimelineEvent::of_call(r) {
            self.put_timeline(&e, ttl).await?;
        }
        // Then: a call found by id is complete in every listing.
        self.exec(&self.st.put_call_id, (t, call, &body, ttl))
            .await?;
        // Last: it is no longer open once its record is complete.
        self.exec(&self.st.close_open_call, (&r.node.0, t, call))
            .await
    }

    /// A listing of call records, paged by the server, filtered here.
    async fn list_calls(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
        filter: Option<&CallFilter>,
        page: &PageRequest,
    ) -> Result<Page<CallRecord>> {
        self.list_paged(
            "call record",
            st,
            values,
            |r: &CallRecord| filter.is_none_or(|f| f.matches(r)),
            page,
        )
        .await
    }

    /// A listing of JSON bodies, paged by the server, kept if `keep`.
    async fn list_paged<T: DeserializeOwned>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
        keep: impl Fn(&T) -> bool,
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let limit = page.checked_limit()? as usize;
        let mut state = match &page.cursor {
            Some(c) => decode_cursor(c)?,
            None => PagingState::start(),
        };
        let mut items = Vec::new();
        for _ in 0..MAX_FETCHES {
            let mut st = st.clone();
            st.set_page_size(i32::try_from(limit - items.len()).unwrap_or(1000));
            let (rows, next) = self.page(&st, &values, state).await?;
            for row in rows {
                let r: T = decode(what, &text(&row, 0)?)?;
                if keep(&r) {
                    items.push(r);
                }
            }
            match next {
                None => return Ok(Page { items, next: None }),
                Some(s) if items.len() >= limit => {
                    return Ok(Page {
                        items,
                        next: encode_cursor(&s),
                    })
                }
                Some(s) => state = s,
            }
        }
        Ok(Page {
            items,
            next: encode_cursor(&state),
        })
    }

    async fn lease_row(&self, tenant: &TenantId, key: &str) -> Result<Option<LeaseRow>> {
        match self.first(&self.st.get_lease, (&tenant.0, key)).await? {
            Some(r) => Ok(Some(LeaseRow {
                holder: text(&r, 0)?,
                epoch: u64_of(big(&r, 1)?),
                expires: Timestamp::from_i64(big(&r, 2)?),
            })),
            None => Ok(None),
        }
    }

    /// Moves a lease row from `from` to `to` if it still is `from`.
    async fn swap_lease(
        &self,
        tenant: &TenantId,
        key: &str,
        from: Option<&LeaseRow>,
        to: &LeaseRow,
    ) -> Result<bool> {
        let applied = match from {
            None => {
                self.lwt(
                    &self.st.create_lease,
                    (
                        &tenant.0,
                        key,
                        &to.holder,
                        i64_of(to.epoch),
                        to.expires.as_i64(),
                    ),
                )
                .await?
            }
            Some(f) => {
                self.lwt(
                    &self.st.take_lease,
                    (
                        &to.holder,
                        i64_of(to.epoch),
                        to.expires.as_i64(),
                        &tenant.0,
                        key,
                        &f.holder,
                        i64_of(f.epoch),
                    ),
                )
                .await?
            }
        };
        Ok(applied.applied)
    }

    async fn put_config(
        &self,
        tenant: &TenantId,
        kind: ConfigKind,
        id: &str,
        body: &str,
        expect: Expect,
    ) -> Result<u64> {
        let t = &tenant.0;
        let k = kind.as_str();
        let what = || format!("{kind} {id:?} of tenant {tenant}");
        if kind.is_global() {
            let claim = self.lwt(&self.st.claim_global, (k, id, t)).await?;
            if !claim.applied {
                let owner = claim.text("tenant");
                if owner.as_deref() != Some(t.as_str()) {
                    return Err(StoreError::conflict(format!(
                        "{kind} {id:?} belongs to another tenant"
                    )));
                }
            }
        }
        let revision = match expect {
            Expect::Absent => {
                let r = self.lwt(&self.st.create_config, (t, k, id, body)).await?;
                if !r.applied {
                    return Err(StoreError::conflict(format!("{} exists already", what())));
                }
                1
            }
            Expect::Revision(want) => {
                let r = self
                    .lwt(
                        &self.st.cas_config,
                        (i64_of(want + 1), body, t, k, id, i64_of(want)),
                    )
                    .await?;
                if !r.applied {
                    return Err(StoreError::conflict(format!(
                        "{}: expected revision {want}, found {}",
                        what(),
                        r.big("revision")
                            .map_or("none".to_owned(), |v| v.to_string())
                    )));
                }
                want + 1
            }
            Expect::Any => {
                let mut done = None;
                for _ in 0..LWT_TRIES {
                    let current = self.first(&self.st.get_revision, (t, k, id)).await?;
                    let applied = match current {
                        None => {
                            let r = self.lwt(&self.st.create_config, (t, k, id, body)).await?;
                            r.applied.then_some(1)
                        }
                        Some(row) => {
                            let have = u64_of(big(&row, 0)?);
                            let r = self
                                .lwt(
                                    &self.st.cas_config,
                                    (i64_of(have + 1), body, t, k, id, i64_of(have)),
                                )
                                .await?;
                            r.applied.then_some(have + 1)
                        }
                    };
                    if applied.is_some() {
                        done = applied;
                        break;
                    }
                }
                done.ok_or_else(|| {
                    StoreError::conflict(format!("{}: too many concurrent writers", what()))
                })?
            }
        };
        if kind == ConfigKind::Tenant {
            self.exec(&self.st.add_tenant, (t,)).await?;
        }
        Ok(revision)
    }

    async fn delete_config(
        &self,
        tenant: &TenantId,
        kind: ConfigKind,
        id: &str,
        expect: Expect,
    ) -> Result<()> {
        let (t, k) = (&tenant.0, kind.as_str());
        match expect {
            Expect::Absent => {
                return Err(StoreError::invalid(
                    "a delete cannot expect the record to be absent",
                ))
            }
            Expect::Any => {
                self.lwt(&self.st.delete_config_any, (t, k, id)).await?;
            }
            Expect::Revision(want) => {
                let r = self
                    .lwt(&self.st.delete_config_rev, (t, k, id, i64_of(want)))
                    .await?;
                if !r.applied {
                    return Err(StoreError::conflict(format!(
                        "{kind} {id:?} of tenant {tenant}: expected revision {want}, found {}",
                        r.big("revision")
                            .map_or("none".to_owned(), |v| v.to_string())
                    )));
                }
            }
        }
        if kind.is_global() {
            self.lwt(&self.st.release_global, (k, id, t)).await?;
        }
        if kind == ConfigKind::Tenant {
            self.exec(&self.st.remove_tenant, (t,)).await?;
        }
        Ok(())
    }

    async fn add_flow_version(&self, v: &FlowVersion) -> Result<u32> {
        let (t, f) = (&v.tenant.0, &v.flow);
        let exact = v.version != 0;
        for _ in 0..LWT_TRIES {
            let mut v = v.clone();
            if !exact {
                let last = match self.first(&self.st.last_flow_version, (t, f)).await? {
                    Some(r) => int(&r, 0)?,
                    None => 0,
                };
                v.version = u32::try_from(last)
                    .ok()
                    .and_then(|l| l.checked_add(1))
                    .ok_or_else(|| StoreError::invalid("flow version out of range"))?;
            }
            let version = i32::try_from(v.version)
                .map_err(|_| StoreError::invalid("flow version out of range"))?;
            let body = encode("flow version", &v)?;
            let r = self
                .lwt(&self.st.add_flow_version, (t, f, version, &body))
                .await?;
            if r.applied {
                return Ok(v.version);
            }
            if exact {
                return Err(StoreError::conflict(format!(
                    "flow {f:?} has a version {} already",
                    v.version
                )));
            }
        }
        Err(StoreError::conflict(format!(
            "flow {f:?}: too many concurrent writers"
        )))
    }

    async fn put_customer(&self, c: &Customer) -> Result<()> {
        let t = &c.tenant.0;
        let old: Option<Customer> = self
            .body("customer", &self.st.get_customer, (t, &c.id))
            .await?;
        let mut claimed = Vec::new();
        for n in &c.numbers {
            let r = self.lwt(&self.st.claim_number, (t, n, &c.id)).await?;
            if r.applied {
                claimed.push(n);
            } else if r.text("customer").as_deref() != Some(c.id.as_str()) {
                for n in claimed {
                    self.lwt(&self.st.release_number, (t, n, &c.id)).await?;
                }
                return Err(StoreError::conflict(
                    "number belongs to another customer already",
                ));
            }
        }
        let body = encode("customer", c)?;
        // The listing's row moves with the update time.
        if let Some(o) = old.as_ref().filter(|o| o.updated != c.updated) {
            self.exec(
                &self.st.drop_customer_updated,
                (t, o.updated.as_i64(), &c.id),
            )
            .await?;
        }
        self.exec(
            &self.st.put_customer_updated,
            (t, c.updated.as_i64(), &c.id, &body),
        )
        .await?;
        self.exec(&self.st.put_customer, (t, &c.id, &body)).await?;
        for n in old.iter().flat_map(|o| o.numbers.iter()) {
            if !c.numbers.contains(n) {
                self.lwt(&self.st.release_number, (t, n, &c.id)).await?;
            }
        }
        Ok(())
    }

    async fn put_contact_plan(&self, p: &ContactPlan) -> Result<()> {
        let t = &p.tenant.0;
        if let Some(row) = self.first(&self.st.plan_agent, (t, &p.id)).await? {
            let old = text(&row, 0)?;
            if old != p.agent.0 {
                self.exec(&self.st.delete_plan, (t, &old, &p.id)).await?;
            }
        }
        let body = encode("contact plan", p)?;
        self.exec(&self.st.put_plan, (t, &p.agent.0, &p.id, &body))
            .await?;
        self.exec(&self.st.put_plan_agent, (t, &p.id, &p.agent.0))
            .await?;
        self.put_timeline(&TimelineEvent::of_contact_plan(p), 0)
            .await
    }

    fn stats_row(&self, tenant: &TenantId, day: Day, r: &Row) -> Result<StatsPartial> {
        let (kind, id) = (text(r, 0)?, text(r, 1)?);
        let mut counters = [0u64; 13];
        for (i, v) in counters.iter_mut().enumerate() {
            *v = u64_of(big(r, 4 + i)?);
        }
        Ok(StatsPartial {
            tenant: tenant.clone(),
            day,
            hour: u8::try_from(int(r, 2)?).unwrap_or(u8::MAX),
            scope: StatsScope::from_parts(&kind, &id).ok_or_else(|| {
                StoreError::invalid(format!("stored scope kind {kind:?} is unknown"))
            })?,
            node: NodeId(text(r, 3)?),
            counters: Counters::from_array(counters),
        })
    }
}

/// Runs one write per item, at most [`WRITE_CONCURRENCY`] at once; the
/// first error is returned after every started write ended.
async fn write_all<T, F, Fut>(inner: &Arc<Inner>, items: &[T], write: F) -> Result<()>
where
    T: Clone + Send + 'static,
    F: Fn(Arc<Inner>, T) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut first_error = None;
    for item in items {
        if set.len() >= WRITE_CONCURRENCY {
            if let Some(done) = set.join_next().await {
                if let Err(e) = flatten(done) {
                    first_error.get_or_insert(e);
                }
            }
        }
        set.spawn(write(inner.clone(), item.clone()));
    }
    while let Some(done) = set.join_next().await {
        if let Err(e) = flatten(done) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn flatten(r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.map_err(|e| StoreError::unavailable("a write task failed").with_source(e))?
}

impl Store for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    fn get_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ConfigDoc>> {
        Box::pin(async move {
            let i = &self.inner;
            match i
                .first(&i.st.get_config, (&tenant.0, kind.as_str(), id))
                .await?
            {
                Some(r) => Ok(Some(ConfigDoc {
                    tenant: tenant.clone(),
                    kind,
                    id: id.to_owned(),
                    revision: u64_of(big(&r, 0)?),
                    body: text(&r, 1)?,
                })),
                None => Ok(None),
            }
        })
    }

    fn list_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
    ) -> StoreFuture<'a, Vec<ConfigDoc>> {
        Box::pin(async move {
            let i = &self.inner;
            i.rows(&i.st.list_config, (&tenant.0, kind.as_str()))
                .await?
                .iter()
                .map(|r| {
                    Ok(ConfigDoc {
                        tenant: tenant.clone(),
                        kind,
                        id: text(r, 0)?,
                        revision: u64_of(big(r, 1)?),
                        body: text(r, 2)?,
                    })
                })
                .collect()
        })
    }

    fn put_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        body: String,
        expect: Expect,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move { self.inner.put_config(tenant, kind, id, &body, expect).await })
    }

    fn delete_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        expect: Expect,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.inner.delete_config(tenant, kind, id, expect).await })
    }

    fn list_tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        Box::pin(async move {
            let i = &self.inner;
            i.rows(&i.st.list_tenants, ())
                .await?
                .iter()
                .map(|r| text(r, 0).map(TenantId))
                .collect()
        })
    }

    fn find_global<'a>(
        &'a self,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<TenantId>> {
        Box::pin(async move {
            let i = &self.inner;
            match i.first(&i.st.find_global, (kind.as_str(), id)).await? {
                Some(r) => Ok(Some(TenantId(text(&r, 0)?))),
                None => Ok(None),
            }
        })
    }

    fn add_flow_version<'a>(&'a self, version: &'a FlowVersion) -> StoreFuture<'a, u32> {
        Box::pin(async move { self.inner.add_flow_version(version).await })
    }

    fn flow_version<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<FlowVersion>> {
        Box::pin(async move {
            let Ok(v) = i32::try_from(version) else {
                return Ok(None);
            };
            let i = &self.inner;
            i.body("flow version", &i.st.flow_version, (&tenant.0, flow, v))
                .await
        })
    }

    fn flow_versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
    ) -> StoreFuture<'a, Vec<FlowVersion>> {
        Box::pin(async move {
            let i = &self.inner;
            i.bodies("flow version", &i.st.flow_versions, (&tenant.0, flow))
                .await
        })
    }

    fn put_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            write_all(&self.inner, records, |inner, r| async move {
                inner.put_call(&r).await
            })
            .await
        })
    }

    fn put_open_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            write_all(&self.inner, records, |inner, r| async move {
                let body = encode("open call", &r)?;
                inner
                    .exec(
                        &inner.st.put_open_call,
                        (&r.node.0, &r.tenant.0, call_col(r.call), &body),
                    )
                    .await
            })
            .await
        })
    }

    fn open_calls<'a>(&'a self, node: &'a NodeId) -> StoreFuture<'a, Vec<CallRecord>> {
        Box::pin(async move {
            let i = &self.inner;
            let mut calls: Vec<CallRecord> =
                i.bodies("open call", &i.st.open_calls, (&node.0,)).await?;
            calls.sort_by_key(|r| (r.start, r.call));
            Ok(calls)
        })
    }

    fn get_call<'a>(
        &'a self,
        tenant: &'a TenantId,
        call: CallId,
    ) -> StoreFuture<'a, Option<CallRecord>> {
        Box::pin(async move {
            let i = &self.inner;
            i.body("call record", &i.st.get_call, (&tenant.0, call_col(call)))
                .await
        })
    }

    fn calls_by_day<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a CallFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        Box::pin(async move {
            let i = &self.inner;
            let (from, to) = range_bounds(&filter.range);
            i.list_calls(
                &i.st.calls_by_day,
                (&tenant.0, day.0, from, to),
                Some(filter),
                page,
            )
            .await
        })
    }

    fn calls_by_agent<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        Box::pin(async move {
            let i = &self.inner;
            let (from, to) = range_bounds(&range);
            i.list_calls(
                &i.st.calls_by_agent,
                (&tenant.0, &agent.0, from, to),
                None,
                page,
            )
            .await
        })
    }

    fn calls_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        Box::pin(async move {
            let i = &self.inner;
            let (from, to) = range_bounds(&range);
            i.list_calls(
                &i.st.calls_by_number,
                (&tenant.0, number, from, to),
                None,
                page,
            )
            .await
        })
    }

    fn put_status_changes<'a>(&'a self, changes: &'a [StatusChange]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            write_all(&self.inner, changes, |inner, c| async move {
                let body = encode("status change", &c)?;
                inner
                    .exec(
                        &inner.st.put_status,
                        (
                            &c.tenant.0,
                            &c.agent.0,
                            c.day.0,
                            c.period.start.as_i64(),
                            &body,
                            inner.ttl_status,
                        ),
                    )
                    .await
            })
            .await
        })
    }

    fn status_log<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        day: Day,
    ) -> StoreFuture<'a, Vec<StatusChange>> {
        Box::pin(async move {
            let i = &self.inner;
            i.bodies(
                "status change",
                &i.st.status_log,
                (&tenant.0, &agent.0, day.0),
            )
            .await
        })
    }

    fn put_stats<'a>(&'a self, partials: &'a [StatsPartial]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if let Some(p) = partials.iter().find(|p| p.hour >= 24) {
                return Err(StoreError::invalid(format!(
                    "hour {} is not within 0..24",
                    p.hour
                )));
            }
            write_all(&self.inner, partials, |inner, p| async move {
                let mut values = vec![
                    CqlValue::Text(p.tenant.0.clone()),
                    CqlValue::Int(p.day.0),
                    CqlValue::Text(p.scope.kind().as_str().to_owned()),
                    CqlValue::Text(p.scope.id().to_owned()),
                    CqlValue::Int(i32::from(p.hour)),
                    CqlValue::Text(p.node.0.clone()),
                ];
                values.extend(
                    p.counters
                        .to_array()
                        .iter()
                        .map(|v| CqlValue::BigInt(i64_of(*v))),
                );
                values.push(CqlValue::Int(inner.ttl_stats));
                inner.exec(&inner.st.put_stats, values).await
            })
            .await
        })
    }

    fn stats_partials<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a StatsFilter,
    ) -> StoreFuture<'a, Vec<StatsPartial>> {
        Box::pin(async move {
            let i = &self.inner;
            let t = &tenant.0;
            let rows = match filter {
                StatsFilter::All => i.rows(&i.st.stats_all, (t, day.0)).await?,
                StatsFilter::Kind(k) => i.rows(&i.st.stats_kind, (t, day.0, k.as_str())).await?,
                StatsFilter::Scope(s) => {
                    i.rows(&i.st.stats_scope, (t, day.0, s.kind().as_str(), s.id()))
                        .await?
                }
            };
            rows.iter().map(|r| i.stats_row(tenant, day, r)).collect()
        })
    }

    fn put_customer<'a>(&'a self, customer: &'a Customer) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.inner.put_customer(customer).await })
    }

    fn get_customer<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Customer>> {
        Box::pin(async move {
            let i = &self.inner;
            i.body("customer", &i.st.get_customer, (&tenant.0, id))
                .await
        })
    }

    fn customer_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
    ) -> StoreFuture<'a, Option<Customer>> {
        Box::pin(async move {
            let i = &self.inner;
            let Some(row) = i.first(&i.st.number_owner, (&tenant.0, number)).await? else {
                return Ok(None);
            };
            let id = text(&row, 0)?;
            let c: Option<Customer> = i
                .body("customer", &i.st.get_customer, (&tenant.0, &id))
                .await?;
            // A number claimed by a write still under way is not shown yet.
            Ok(c.filter(|c| c.numbers.iter().any(|n| n == number)))
        })
    }

    fn put_ticket<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let i = &self.inner;
            let body = encode("ticket", ticket)?;
            // The listing's row moves with the update time.
            let old: Option<Ticket> = i
                .body("ticket", &i.st.get_ticket, (&ticket.tenant.0, &ticket.id))
                .await?;
            if let Some(old) = old.filter(|o| o.updated != ticket.updated) {
                i.exec(
                    &i.st.drop_ticket_updated,
                    (&ticket.tenant.0, old.updated.as_i64(), &ticket.id),
                )
                .await?;
            }
            i.exec(
                &i.st.put_ticket_updated,
                (&ticket.tenant.0, ticket.updated.as_i64(), &ticket.id, &body),
            )
            .await?;
            i.exec(&i.st.put_ticket, (&ticket.tenant.0, &ticket.id, &body))
                .await?;
            if let Some(e) = TimelineEvent::of_ticket(ticket) {
                i.put_timeline(&e, 0).await?;
            }
            Ok(())
        })
    }

    fn get_ticket<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Ticket>> {
        Box::pin(async move {
            let i = &self.inner;
            i.body("ticket", &i.st.get_ticket, (&tenant.0, id)).await
        })
    }

    fn customers<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Customer>> {
        Box::pin(async move {
            let i = &self.inner;
            let name = name.map(str::to_lowercase);
            i.list_paged(
                "customer",
                &i.st.customers_by_updated,
                (&tenant.0,),
                |c: &Customer| {
                    name.as_deref()
                        .is_none_or(|n| c.name.to_lowercase().contains(n))
                },
                page,
            )
            .await
        })
    }

    fn tickets<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a crate::store::TicketFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Ticket>> {
        Box::pin(async move {
            let i = &self.inner;
            i.list_paged(
                "ticket",
                &i.st.tickets_by_updated,
                (&tenant.0,),
                |t: &Ticket| filter.matches(t),
                page,
            )
            .await
        })
    }

    fn put_summary<'a>(&'a self, summary: &'a ServiceSummary) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let i = &self.inner;
            let body = encode("service summary", summary)?;
            i.exec(&i.st.put_summary, (&summary.tenant.0, &summary.id, &body))
                .await?;
            if let Some(e) = TimelineEvent::of_summary(summary) {
                i.put_timeline(&e, 0).await?;
            }
            Ok(())
        })
    }

    fn get_summary<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ServiceSummary>> {
        Box::pin(async move {
            let i = &self.inner;
            i.body("service summary", &i.st.get_summary, (&tenant.0, id))
                .await
        })
    }

    fn put_contact_plan<'a>(&'a self, plan: &'a ContactPlan) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.inner.put_contact_plan(plan).await })
    }

    fn contact_plans<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
    ) -> StoreFuture<'a, Vec<ContactPlan>> {
        Box::pin(async move {
            let i = &self.inner;
            let mut plans: Vec<ContactPlan> = i
                .bodies("contact plan", &i.st.plans, (&tenant.0, &agent.0))
                .await?;
            plans.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
            Ok(plans)
        })
    }

    fn timeline<'a>(
        &'a self,
        tenant: &'a TenantId,
        customer: &'a str,
        before: Option<Timestamp>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<TimelineEvent>> {
        Box::pin(async move {
            let i = &self.inner;
            let before = before.map_or(i64::MAX, Timestamp::as_i64);
            let limit = i32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
            i.rows(&i.st.timeline, (&tenant.0, customer, before, limit))
                .await?
                .iter()
                .map(|r| {
                    let kind = text(r, 1)?;
                    Ok(TimelineEvent {
                        tenant: tenant.clone(),
                        customer: customer.to_owned(),
                        at: Timestamp::from_i64(big(r, 0)?),
                        kind: TimelineKind::parse(&kind).ok_or_else(|| {
                            StoreError::invalid(format!("stored timeline kind {kind:?}"))
                        })?,
                        id: text(r, 2)?,
                        title: opt_text(r, 3).unwrap_or_default(),
                    })
                })
                .collect()
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
        node: &'a NodeId,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease> {
        Box::pin(async move {
            let i = &self.inner;
            let expires = now.after(ttl);
            for _ in 0..LWT_TRIES {
                let current = i.lease_row(tenant, key).await?;
                let lease = grant(tenant, key, current.as_ref(), node, expires, now)?;
                let to = LeaseRow {
                    holder: node.0.clone(),
                    epoch: lease.epoch,
                    expires,
                };
                if i.swap_lease(tenant, key, current.as_ref(), &to).await? {
                    return Ok(lease);
                }
            }
            Err(StoreError::conflict(format!(
                "lease {key:?}: too many concurrent takers"
            )))
        })
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease> {
        Box::pin(async move {
            let i = &self.inner;
            let expires = now.after(ttl);
            let from = LeaseRow {
                holder: lease.holder.0.clone(),
                epoch: lease.epoch,
                expires: lease.expires,
            };
            let to = LeaseRow {
                expires,
                ..from.clone()
            };
            if i.swap_lease(&lease.tenant, &lease.key, Some(&from), &to)
                .await?
            {
                return Ok(Lease {
                    expires,
                    ..lease.clone()
                });
            }
            let current = i.lease_row(&lease.tenant, &lease.key).await?;
            still_held(lease, current.as_ref())?;
            Err(StoreError::conflict(format!(
                "lease {:?} changed while renewing",
                lease.key
            )))
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let i = &self.inner;
            let from = LeaseRow {
                holder: lease.holder.0.clone(),
                epoch: lease.epoch,
                expires: lease.expires,
            };
            let to = LeaseRow {
                holder: String::new(),
                epoch: lease.epoch,
                expires: Timestamp(0),
            };
            if i.swap_lease(&lease.tenant, &lease.key, Some(&from), &to)
                .await?
            {
                return Ok(());
            }
            let current = i.lease_row(&lease.tenant, &lease.key).await?;
            if current
                .as_ref()
                .is_some_and(|c| c.holder.is_empty() && c.epoch == lease.epoch)
            {
                return Ok(()); // released already (a retry)
            }
            still_held(lease, current.as_ref())?;
            Err(StoreError::conflict(format!(
                "lease {:?} changed while releasing",
                lease.key
            )))
        })
    }

    fn get_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<Lease>> {
        Box::pin(async move {
            Ok(self.inner.lease_row(tenant, key).await?.map(|r| Lease {
                tenant: tenant.clone(),
                key: key.to_owned(),
                holder: NodeId(r.holder),
                epoch: r.epoch,
                expires: r.expires,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_file_splits_into_statements_for_any_keyspace() {
        let st = schema_statements(
            "ks_test",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        assert!(st[0].starts_with(
            "CREATE KEYSPACE IF NOT EXISTS ks_test WITH replication = {'class': 'SimpleStrategy'"
        ));
        assert!(st
            .iter()
            .skip(1)
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ks_test.")));
        assert!(!st.iter().any(|s| s.contains("switchboard")));
        // Every table the statements use is created.
        for table in [
            "config",
            "calls_by_day",
            "stats_hourly",
            "leases",
            "timeline",
        ] {
            assert!(
                st.iter().any(|s| s.contains(&format!("ks_test.{table} ("))),
                "{table}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_strangers() {
        let s = PagingState::new_from_raw_bytes(vec![1u8, 2, 255]);
        let c = encode_cursor(&s).unwrap();
        assert_eq!(decode_cursor(&c).unwrap(), s);
        assert!(decode_cursor(&Cursor("e1abc".into())).is_err());
        assert!(decode_cursor(&Cursor("s1zz".into())).is_err());
        assert!(encode_cursor(&PagingState::start()).is_none());
    }
}
