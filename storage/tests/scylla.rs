//! The ScyllaDB backend runs the shared suite when `SCYLLA_URI` names a
//! node (`host:port`, several separated by commas), in keyspace
//! `SCYLLA_KEYSPACE` (default `switchboard_test`, replication factor 1).
//! Without `SCYLLA_URI` each test says it was skipped.
//!
//! No in-process CQL server stands in for ScyllaDB here: the `kassandra`
//! crate (0.14) was considered for a smoke test of the CQL path, but it is
//! a library without a network server, and its parser accepts `IF NOT
//! EXISTS` only on CREATE KEYSPACE/TABLE, has no `LIMIT`, no `ORDER BY`
//! and no conditional UPDATE/DELETE. This backend prepares LWT, LIMIT and
//! clustering-range statements at connect time, so it could not even
//! connect to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

#[cfg(feature = "scylla")]
mod scylla_backend {
    use super::suite;
    use std::sync::Arc;
    use switchboard_storage::{ScyllaOptions, ScyllaStore, Store};

    pub async fn open() -> Option<Arc<dyn Store>> {
        let Ok(uri) = std::env::var("SCYLLA_URI") else {
            eprintln!("skipped: SCYLLA_URI not set");
            return None;
        };
        let mut opts = ScyllaOptions::new(&uri);
        opts.keyspace =
            std::env::var("SCYLLA_KEYSPACE").unwrap_or_else(|_| "switchboard_test".into());
        opts.replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}".into();
        let store = ScyllaStore::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("SCYLLA_URI={uri} is set but cannot be used: {e:?}"));
        Some(Arc::new(store))
    }

    crate::suite_tests!(open);
}
