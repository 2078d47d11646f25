//! Leases: which node owns an entity, fenced by an epoch.

use super::{NodeId, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

/// A lease on `key` (e.g. `agent/1001`) of a tenant.
///
/// Every grant to a node that did not hold the lease increments `epoch`,
/// so epochs of one key strictly increase over its whole life, across
/// expiries and releases. A holder stamps its writes with the epoch it was
/// granted; a write stamped with an older epoch comes from a node that lost
/// the entity and is refused by whoever checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub tenant: TenantId,
    pub key: String,
    pub holder: NodeId,
    pub epoch: u64,
    /// The lease lapses at this time unless renewed.
    pub expires: Timestamp,
}

/// The lease as stored: the holder is empty once released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseRow {
    pub holder: String,
    pub epoch: u64,
    pub expires: Timestamp,
}

/// What acquiring means, the same for every backend: free, lapsed or
/// released leases go to `node` with the next epoch; `node`'s own lease is
/// extended under its epoch; a live lease of another node is a conflict.
pub(crate) fn grant(
    tenant: &TenantId,
    key: &str,
    current: Option<&LeaseRow>,
    node: &NodeId,
    expires: Timestamp,
    now: Timestamp,
) -> crate::Result<Lease> {
    let epoch = match current {
        None => 1,
        Some(c) if c.holder == node.0 => c.epoch,
        Some(c) if c.holder.is_empty() || c.expires <= now => c.epoch + 1,
        Some(c) => {
            return Err(crate::StoreError::conflict(format!(
                "lease {key:?} of tenant {tenant} is held by node {} (epoch {}) until {}",
                c.holder, c.epoch, c.expires.0
            )))
        }
    };
    Ok(Lease {
        tenant: tenant.clone(),
        key: key.to_owned(),
        holder: node.clone(),
        epoch,
        expires,
    })
}

/// Whether `lease` is still the stored grant (same holder and epoch).
pub(crate) fn still_held(lease: &Lease, current: Option<&LeaseRow>) -> crate::Result<()> {
    match current {
        Some(c) if c.holder == lease.holder.0 && c.epoch == lease.epoch => Ok(()),
        Some(c) => Err(crate::StoreError::conflict(format!(
            "lease {:?}: epoch {} of {} is no longer current (now epoch {} of {:?})",
            lease.key, lease.epoch, lease.holder, c.epoch, c.holder
        ))),
        None => Err(crate::StoreError::not_found(format!(
            "lease {:?} of tenant {} does not exist",
            lease.key, lease.tenant
        ))),
    }
}
