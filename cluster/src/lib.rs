//! Switchboard's cluster: what `ractor_cluster` does not do on its own.
//!
//! - [`node`]: a node joins through seed addresses over `ractor_cluster`
//!   (cookie authentication), re-dials lost members with backoff, and runs
//!   its own failure detector: heartbeats through a process group, a
//!   member down after a configurable silence (2 s by default) whatever
//!   its TCP session says.
//! - [`membership`]: that detector and dialer as a sans-IO machine, time
//!   an input.
//! - [`placement`]: rendezvous hashing of `(tenant, kind, id)` over the
//!   members up: every node computes the same home with no coordinator.
//! - [`codec`]: the one wire format between nodes (bincode 2, versioned,
//!   bounded); an undecodable message is an error, never a panic.
//! - [`tls`]: optional mutual TLS between the nodes (a cluster CA).

pub mod codec;
pub mod membership;
pub mod node;
pub mod placement;
pub mod tls;

pub use membership::{Health, Member, Settings, View};
pub use node::{Cluster, ClusterConfig, ClusterError, Stats};
pub use placement::{EntityKey, Kind};
pub use tls::{ClusterTls, TlsError};
