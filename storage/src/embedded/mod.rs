//! The embedded store: SQLite (bundled) in one data directory.
//!
//! - One writer thread per process owns the write connection; writes reach
//!   it through a channel and are committed in batches (see [`writer`]).
//!   A write's future resolves after its batch committed.
//! - Reads run on their own connections (a small pool), on tokio's
//!   blocking threads. WAL lets them run while the writer writes.
//! - Several processes may open the same directory: SQLite's file locks
//!   serialise their writers, `busy_timeout` makes each wait its turn, and
//!   batches are kept short so nobody waits long.
//! - Durability: WAL with `synchronous=NORMAL` by default. A committed
//!   transaction is in the WAL file before the commit returns, so it
//!   survives the process being killed (`kill -9`); it can be lost to a
//!   power failure or an OS crash. [`Synchronous::Full`] fsyncs each
//!   commit and survives those too, at a cost per batch.

mod checkpoint;
mod queries;
mod schema;
mod writer;

use crate::model::{
    AgentId, CallId, CallRecord, ConfigDoc, ConfigKind, ContactPlan, Customer, Day, FlowVersion,
    Lease, NodeId, ServiceSummary, StatsPartial, StatusChange, TenantId, Ticket, TimelineEvent,
    Timestamp,
};
use crate::store::{
    CallFilter, Expect, Page, PageRequest, StatsFilter, Store, StoreFuture, TimeRange,
};
use crate::{Result, StoreError};
use checkpoint::Checkpointer;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use writer::Writer;

/// How commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// WAL without fsync per commit: survives a killed process, not a
    /// power loss.
    #[default]
    Normal,
    /// fsync per commit (per batch): survives a power loss too.
    Full,
}

/// Settings of an embedded store. The defaults suit a node.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How long a write waits for another process's transaction.
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
    /// Jobs committed together at most.
    pub max_batch_jobs: usize,
    /// Rows per batch at most (a batch of call records counts each).
    pub max_batch_rows: usize,
    /// Idle read connections kept open.
    pub max_idle_readers: usize,
    /// Page cache of the writer connection, in MiB.
    pub writer_cache_mib: u32,
    /// Page cache of each read connection, in MiB.
    pub reader_cache_mib: u32,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            max_batch_jobs: 512,
            max_batch_rows: 20_000,
            max_idle_readers: 4,
            writer_cache_mib: 256,
            reader_cache_mib: 32,
        }
    }
}

/// The embedded store. Cheap to clone; every clone shares one writer.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    options: EmbeddedOptions,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
}

pub(crate) fn sql_error(e: rusqlite::Error) -> StoreError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => crate::ErrorKind::Timeout,
            ErrorCode::ConstraintViolation => crate::ErrorKind::Conflict,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::TooBig => {
                crate::ErrorKind::Invalid
            }
            _ => crate::ErrorKind::Unavailable,
        },
        rusqlite::Error::QueryReturnedNoRows => crate::ErrorKind::NotFound,
        rusqlite::Error::SqlInputError { .. }
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidParameterCount(..) => crate::ErrorKind::Invalid,
        _ => crate::ErrorKind::Unavailable,
    };
    StoreError::new(kind, "sqlite").with_source(e)
}

impl EmbeddedStore {
    /// The database file inside the data directory.
    pub const FILE: &'static str = "switchboard.db";

    /// Opens (creating if needed) the store in `dir`, migrating its schema.
    /// Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedStore> {
        EmbeddedStore::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<EmbeddedStore> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::unavailable(format!("cannot create data directory {}", dir.display()))
                .with_source(e)
        })?;
        let path = dir.join(Self::FILE);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_error)?;
        conn.busy_timeout(options.busy_timeout).map_err(sql_error)?;
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", synchronous_pragma(options.synchronous))
            .map_err(sql_error)?;
        // Listing indexes take inserts at random places (a customer's
        // number, an agent): keep their pages in memory.
        conn.pragma_update(
            None,
            "cache_size",
            -(i64::from(options.writer_cache_mib) * 1024),
        )
        .map_err(sql_error)?;
        // Checkpoints run on their own thread (see `checkpoint`); the
        // writer's own auto-checkpoint is the backstop.
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql_error)?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            BACKSTOP_CHECKPOINT_BYTES / page_size.max(512),
        )
        .map_err(sql_error)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(sql_error)?;
        // Each job runs in a savepoint; keep its sub-journal in memory.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(sql_error)?;
        migrate(&conn)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let checkpoints = Checkpointer::start(checkpoint_connection(&path, &options)?)?;
        let writer = Writer::start(
            conn,
            checkpoints,
            options.max_batch_jobs,
            options.max_batch_rows,
        )?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                options,
                writer,
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Creates a data directory whose schema is at `version` (the first
    /// `version` migrations), as an older build left it: for tests of the
    /// migrations. Not for production use.
    #[doc(hidden)]
    pub fn create_at_schema_version(dir: impl AsRef<Path>, version: u32) -> Result<PathBuf> {
        let dir = dir.as_ref();
        let target = usize::try_from(version).unwrap_or(usize::MAX);
        if target > schema::MIGRATIONS.len() {
            return Err(StoreError::invalid(format!(
                "schema version {version} is not one of this build's"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::unavailable(format!("cannot create data directory {}", dir.display()))
                .with_source(e)
        })?;
        let path = dir.join(Self::FILE);
        let conn = Connection::open(&path).map_err(sql_error)?;
        set_wal(&conn)?;
        migrate_to(&conn, target)?;
        Ok(path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of this build (the number of migrations).
    pub fn schema_version() -> u32 {
        MIGRATIONS_LEN
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let out = work(&conn);
            inner.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::unavailable("a read task failed").with_source(e))?
    }

    async fn write<T, F>(&self, rows: usize, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.inner.writer.write(rows, work).await
    }
}

/// Pages are read through a memory map of up to this size (fewer copies
/// than the page cache alone).
const MMAP_BYTES: i64 = 1 << 30;

/// The WAL size at which the writer checkpoints by itself, when the
/// checkpoint thread has not kept it smaller.
const BACKSTOP_CHECKPOINT_BYTES: i64 = 256 << 20;

/// Prepared statements kept per connection (rusqlite's default is 16, fewer
/// than the store's distinct statements).
const STATEMENT_CACHE: usize = 64;

const MIGRATIONS_LEN: u32 = schema::MIGRATIONS.len() as u32;

impl Inner {
    fn take_reader(&self) -> Result<Connection> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut r| r.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_error)?;
        conn.busy_timeout(self.options.busy_timeout)
            .map_err(sql_error)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)
            .map_err(sql_error)?;
        conn.pragma_update(
            None,
            "cache_size",
            -(i64::from(self.options.reader_cache_mib) * 1024),
        )
        .map_err(sql_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut r) = self.readers.lock() {
            if r.len() < self.options.max_idle_readers {
                r.push(conn);
            }
        }
    }
}

fn synchronous_pragma(s: Synchronous) -> &'static str {
    match s {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    }
}

/// The checkpoint thread's connection: it syncs the database file as the
/// writer would.
fn checkpoint_connection(path: &Path, options: &EmbeddedOptions) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_error)?;
    conn.busy_timeout(options.busy_timeout).map_err(sql_error)?;
    conn.pragma_update(None, "synchronous", synchronous_pragma(options.synchronous))
        .map_err(sql_error)?;
    Ok(conn)
}

fn set_wal(conn: &Connection) -> Result<()> {
    // Switching to WAL needs a moment alone with the file; another process
    // opening at the same time may hold it. Bounded retries.
    let mut last = None;
    for attempt in 0..50u64 {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::unavailable(format!(
                    "the database refused WAL mode (it is in {mode} mode)"
                )))
            }
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(10 + attempt * 5));
            }
        }
    }
    Err(last.map_or_else(
        || StoreError::unavailable("cannot switch to WAL"),
        sql_error,
    ))
}

fn migrate(conn: &Connection) -> Result<()> {
    migrate_to(conn, schema::MIGRATIONS.len())
}

/// Applies the migrations up to version `target`.
fn migrate_to(conn: &Connection, target: usize) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
    let out = (|| {
        let have: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql_error)?;
        let have = usize::try_from(have).unwrap_or(usize::MAX);
        if have > schema::MIGRATIONS.len() {
            return Err(StoreError::invalid(format!(
                "the data directory has schema version {have}; this build knows up to {}",
                schema::MIGRATIONS.len()
            )));
        }
        let Some(todo) = schema::MIGRATIONS.get(have..target) else {
            return Ok(());
        };
        for m in todo {
            conn.execute_batch(m).map_err(sql_error)?;
        }
        conn.pragma_update(None, "user_version", target as i64)
            .map_err(sql_error)
    })();
    match out {
        Ok(()) => conn.execute_batch("COMMIT").map_err(sql_error),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn get_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ConfigDoc>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        Box::pin(self.read(move |c| queries::get_config(c, &tenant, kind, &id)))
    }

    fn list_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
    ) -> StoreFuture<'a, Vec<ConfigDoc>> {
        let tenant = tenant.clone();
        Box::pin(self.read(move |c| queries::list_config(c, &tenant, kind)))
    }

    fn put_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        body: String,
        expect: Expect,
    ) -> StoreFuture<'a, u64> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        Box::pin(self.write(1, move |c| {
            queries::put_config(c, &tenant, kind, &id, &body, expect)
        }))
    }

    fn delete_config<'a>(
        &'a self,
        tenant: &'a TenantId,
        kind: ConfigKind,
        id: &'a str,
        expect: Expect,
    ) -> StoreFuture<'a, ()> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        Box::pin(self.write(1, move |c| {
            queries::delete_config(c, &tenant, kind, &id, expect)
        }))
    }

    fn list_tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        Box::pin(self.read(queries::list_tenants))
    }

    fn find_global<'a>(
        &'a self,
        kind: ConfigKind,
        id: &'a str,
    ) -> StoreFuture<'a, Option<TenantId>> {
        let id = id.to_owned();
        Box::pin(self.read(move |c| queries::find_global(c, kind, &id)))
    }

    fn add_flow_version<'a>(&'a self, version: &'a FlowVersion) -> StoreFuture<'a, u32> {
        let mut v = version.clone();
        Box::pin(self.write(1, move |c| queries::add_flow_version(c, &mut v)))
    }

    fn flow_version<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<FlowVersion>> {
        let (tenant, flow) = (tenant.clone(), flow.to_owned());
        Box::pin(self.read(move |c| queries::flow_version(c, &tenant, &flow, version)))
    }

    fn flow_versions<'a>(
        &'a self,
        tenant: &'a TenantId,
        flow: &'a str,
    ) -> StoreFuture<'a, Vec<FlowVersion>> {
        let (tenant, flow) = (tenant.clone(), flow.to_owned());
        Box::pin(self.read(move |c| queries::flow_versions(c, &tenant, &flow)))
    }

    fn put_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let rows = queries::encode_calls(records)?;
            self.write(rows.len(), move |c| queries::put_calls(c, &rows))
                .await
        })
    }

    fn put_open_calls<'a>(&'a self, records: &'a [CallRecord]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let rows = queries::encode_calls(records)?;
            self.write(rows.len(), move |c| queries::put_open_calls(c, &rows))
                .await
        })
    }

    fn open_calls<'a>(&'a self, node: &'a NodeId) -> StoreFuture<'a, Vec<CallRecord>> {
        let node = node.0.clone();
        Box::pin(self.read(move |c| queries::open_calls(c, &node)))
    }

    fn get_call<'a>(
        &'a self,
        tenant: &'a TenantId,
        call: CallId,
    ) -> StoreFuture<'a, Option<CallRecord>> {
        let tenant = tenant.clone();
        Box::pin(self.read(move |c| queries::get_call(c, &tenant, call)))
    }

    fn calls_by_day<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a CallFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        let q = queries::CallQuery::day(tenant, day, filter);
        let page = page.clone();
        Box::pin(self.read(move |c| queries::list_calls(c, &q, &page)))
    }

    fn calls_by_agent<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        let q = queries::CallQuery::agent(tenant, agent, range);
        let page = page.clone();
        Box::pin(self.read(move |c| queries::list_calls(c, &q, &page)))
    }

    fn calls_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
        range: TimeRange,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallRecord>> {
        let q = queries::CallQuery::number(tenant, number, range);
        let page = page.clone();
        Box::pin(self.read(move |c| queries::list_calls(c, &q, &page)))
    }

    fn put_status_changes<'a>(&'a self, changes: &'a [StatusChange]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(());
            }
            let rows = queries::encode_status(changes)?;
            self.write(rows.len(), move |c| queries::put_status(c, &rows))
                .await
        })
    }

    fn status_log<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        day: Day,
    ) -> StoreFuture<'a, Vec<StatusChange>> {
        let (tenant, agent) = (tenant.clone(), agent.clone());
        Box::pin(self.read(move |c| queries::status_log(c, &tenant, &agent, day)))
    }

    fn put_stats<'a>(&'a self, partials: &'a [StatsPartial]) -> StoreFuture<'a, ()> {
        let partials = partials.to_vec();
        Box::pin(async move {
            if partials.is_empty() {
                return Ok(());
            }
            self.write(partials.len(), move |c| queries::put_stats(c, &partials))
                .await
        })
    }

    fn stats_partials<'a>(
        &'a self,
        tenant: &'a TenantId,
        day: Day,
        filter: &'a StatsFilter,
    ) -> StoreFuture<'a, Vec<StatsPartial>> {
        let (tenant, filter) = (tenant.clone(), filter.clone());
        Box::pin(self.read(move |c| queries::stats_partials(c, &tenant, day, &filter)))
    }

    fn put_customer<'a>(&'a self, customer: &'a Customer) -> StoreFuture<'a, ()> {
        let customer = customer.clone();
        Box::pin(async move {
            let body =
                serde_json::to_string(&customer).map_err(|e| StoreError::encode("customer", e))?;
            self.write(1 + customer.numbers.len(), move |c| {
                queries::put_customer(c, &customer, &body)
            })
            .await
        })
    }

    fn get_customer<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Customer>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        Box::pin(self.read(move |c| queries::get_body(c, "customers", "customer", &tenant, &id)))
    }

    fn customer_by_number<'a>(
        &'a self,
        tenant: &'a TenantId,
        number: &'a str,
    ) -> StoreFuture<'a, Option<Customer>> {
        let (tenant, number) = (tenant.clone(), number.to_owned());
        Box::pin(self.read(move |c| queries::customer_by_number(c, &tenant, &number)))
    }

    fn put_ticket<'a>(&'a self, ticket: &'a Ticket) -> StoreFuture<'a, ()> {
        let row = queries::BodyRow::new("tickets", &ticket.tenant, &ticket.id, ticket);
        let event = TimelineEvent::of_ticket(ticket);
        Box::pin(async move {
            let row = row?;
            self.write(2, move |c| queries::put_body(c, &row, event.as_ref()))
                .await
        })
    }

    fn get_ticket<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<Ticket>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        Box::pin(self.read(move |c| queries::get_body(c, "tickets", "ticket", &tenant, &id)))
    }

    fn customers<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Customer>> {
        let (tenant, name, page) = (tenant.clone(), name.map(str::to_owned), page.clone());
        Box::pin(self.read(move |c| queries::list_customers(c, &tenant, name.as_deref(), &page)))
    }

    fn tickets<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a crate::store::TicketFilter,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<Ticket>> {
        let (tenant, filter, page) = (tenant.clone(), filter.clone(), page.clone());
        Box::pin(self.read(move |c| queries::list_tickets(c, &tenant, &filter, &page)))
    }

    fn put_summary<'a>(&'a self, summary: &'a ServiceSummary) -> StoreFuture<'a, ()> {
        let row = queries::BodyRow::new("summaries", &summary.tenant, &summary.id, summary);
        let event = TimelineEvent::of_summary(summary);
        Box::pin(async move {
            let row = row?;
            self.write(2, move |c| queries::put_body(c, &row, event.as_ref()))
                .await
        })
    }

    fn get_summary<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ServiceSummary>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        Box::pin(self.read(move |c| queries::get_body(c, "summaries", "summary", &tenant, &id)))
    }

    fn put_contact_plan<'a>(&'a self, plan: &'a ContactPlan) -> StoreFuture<'a, ()> {
        let plan = plan.clone();
        Box::pin(async move {
            let body =
                serde_json::to_string(&plan).map_err(|e| StoreError::encode("contact plan", e))?;
            self.write(2, move |c| queries::put_contact_plan(c, &plan, &body))
                .await
        })
    }

    fn contact_plans<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
    ) -> StoreFuture<'a, Vec<ContactPlan>> {
        let (tenant, agent) = (tenant.clone(), agent.clone());
        Box::pin(self.read(move |c| queries::contact_plans(c, &tenant, &agent)))
    }

    fn timeline<'a>(
        &'a self,
        tenant: &'a TenantId,
        customer: &'a str,
        before: Option<Timestamp>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<TimelineEvent>> {
        let (tenant, customer) = (tenant.clone(), customer.to_owned());
        Box::pin(self.read(move |c| queries::timeline(c, &tenant, &customer, before, limit)))
    }

    fn acquire_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
        node: &'a NodeId,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease> {
        let (tenant, key, node) = (tenant.clone(), key.to_owned(), node.clone());
        Box::pin(self.write(1, move |c| {
            queries::acquire_lease(c, &tenant, &key, &node, now.after(ttl), now)
        }))
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
        now: Timestamp,
    ) -> StoreFuture<'a, Lease> {
        let lease = lease.clone();
        Box::pin(self.write(1, move |c| queries::renew_lease(c, &lease, now.after(ttl))))
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        let lease = lease.clone();
        Box::pin(self.write(1, move |c| queries::release_lease(c, &lease)))
    }

    fn get_lease<'a>(
        &'a self,
        tenant: &'a TenantId,
        key: &'a str,
    ) -> StoreFuture<'a, Option<Lease>> {
        let (tenant, key) = (tenant.clone(), key.to_owned());
        Box::pin(self.read(move |c| queries::get_lease(c, &tenant, &key)))
    }
}
