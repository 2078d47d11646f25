//! Switchboard's storage: the data model and the [`Store`] trait, with an
//! embedded backend (SQLite, the default) and a ScyllaDB backend.
//!
//! # The model
//! [`model`] holds every persistent record, each carrying its tenant:
//! configuration (tenants, users and roles, SIP accounts, agents and their
//! devices, custom statuses, skill groups, hotlines, versioned IVR flows,
//! schedules with special dates, prompts under review, form schemas) and
//! operations (call records with legs and times, the agent status log,
//! hourly statistics, customers, tickets, service summaries, contact
//! plans, the customer timeline, leases).
//!
//! Configuration is stored as JSON documents per `(tenant, kind, id)` with
//! a revision: [`Expect`] makes writes create-only or compare-and-set, and
//! the typed helpers on `dyn Store` (`get`, `list`, `put`, `update`,
//! `create_if_absent`, `hotline`, `save_flow`, `publish_flow`,
//! `published_flow`, `review_prompt`, `hourly_stats`) work on the record
//! types and are written once for every backend.
//!
//! Operational data follows ScyllaDB's data model on both backends: call
//! records listed by (tenant, day), by agent and by customer number, newest
//! first, with opaque [`Cursor`]s; hourly statistics as per-node partial
//! aggregates ([`model::stats`]) summed when read; leases with an epoch
//! that only grows, to fence entity ownership.
//!
//! # The backends
//! - [`EmbeddedStore`]: one data directory, nothing to install. One writer
//!   thread commits batches; an acknowledged write survives `kill -9`.
//!   Several processes may share the directory.
//! - `ScyllaStore` (feature `scylla`, on by default): the `scylla` driver,
//!   schema in `storage/schema/scylla.cql`, TTLs from the retention
//!   settings, LWT for revisions and leases.
//!
//! Both pass one test suite (`storage/tests/suite`). The guarantees are
//! written down in `docs/storage.md`.
//!
//! # Example
//! ```
//! use switchboard_storage::model::{Agent, AgentPolicy, Device, TenantId};
//! use switchboard_storage::{EmbeddedStore, Expect, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("sb-doc-{}", std::process::id()));
//! let store = EmbeddedStore::open(&dir)?;
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! rt.block_on(async {
//!     let store: &dyn Store = &store;
//!     let tenant = TenantId::from("acme");
//!     let agent = Agent {
//!         tenant: tenant.clone(),
//!         id: "1001".into(),
//!         name: "Li Lei".into(),
//!         seat: "1001".into(),
//!         user: None,
//!         device: Device::Sip { account: "1001".into() },
//!         policy: AgentPolicy::default(),
//!         telesales: false,
//!         enabled: true,
//!     };
//!     let rev = store.put(&agent, Expect::Absent).await?;
//!     // Creating it again is a conflict; a compare-and-set needs `rev`.
//!     assert!(store.put(&agent, Expect::Absent).await.is_err());
//!     let back = store.get::<Agent>(&tenant, "1001").await?.unwrap();
//!     assert_eq!((back.revision, back.record), (rev, agent));
//!     Ok::<_, switchboard_storage::StoreError>(())
//! })?;
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

pub mod embedded;
mod error;
mod ext;
pub mod model;
#[cfg(feature = "scylla")]
pub mod scylla;
pub mod seed;
mod store;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{ErrorKind, Result, StoreError};
#[cfg(feature = "scylla")]
pub use scylla::{ScyllaOptions, ScyllaStore};
pub use store::{
    CallFilter, Cursor, Expect, Page, PageRequest, StatsFilter, Store, StoreFuture, TicketFilter,
    TimeRange,
};
