//! Typed helpers over the [`Store`] primitives: configuration records by
//! type, flows with versions and publishing, prompt review, hourly sums.
//! They are written once here, for every backend.

use crate::model::stats::sum_partials;
use crate::model::{
    ConfigKind, ConfigRecord, Day, Flow, FlowVersion, Hotline, HourlyStats, IvrFlow, Prompt,
    Review, ReviewStatus, ScopeKind, StatsScope, TenantId, Timestamp, Versioned,
};
use crate::store::{Expect, StatsFilter, Store};
use crate::{ErrorKind, Result, StoreError};

/// Compare-and-set retries before giving up with a conflict.
const CAS_TRIES: usize = 16;

impl dyn Store + '_ {
    /// A configuration record by id.
    pub async fn get<T: ConfigRecord>(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<Versioned<T>>> {
        match self.get_config(tenant, T::KIND, id).await? {
            Some(doc) => Ok(Some(Versioned::decode(&doc)?)),
            None => Ok(None),
        }
    }

    /// Every record of a type of the tenant, by id.
    pub async fn list<T: ConfigRecord>(&self, tenant: &TenantId) -> Result<Vec<Versioned<T>>> {
        self.list_config(tenant, T::KIND)
            .await?
            .iter()
            .map(Versioned::decode)
            .collect()
    }

    /// Writes a record; returns its new revision.
    pub async fn put<T: ConfigRecord>(&self, record: &T, expect: Expect) -> Result<u64> {
        let body =
            serde_json::to_string(record).map_err(|e| StoreError::encode(T::KIND.as_str(), e))?;
        self.put_config(record.tenant(), T::KIND, record.id(), body, expect)
            .await
    }

    pub async fn delete<T: ConfigRecord>(
        &self,
        tenant: &TenantId,
        id: &str,
        expect: Expect,
    ) -> Result<()> {
        self.delete_config(tenant, T::KIND, id, expect).await
    }

    /// Creates a record unless it exists; `true` if this call created it.
    /// Several nodes seeding the same data at once each get `Ok`.
    pub async fn create_if_absent<T: ConfigRecord>(&self, record: &T) -> Result<bool> {
        match self.put(record, Expect::Absent).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // Taken by another tenant (a global id) is a real conflict.
                if T::KIND.is_global() {
                    if let Some(owner) = self.find_global(T::KIND, record.id()).await? {
                        if &owner != record.tenant() {
                            return Err(e);
                        }
                    }
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Read-modify-write of one record with compare-and-set, retried when
    /// another writer got in between. `change` returns `Ok(false)` to write
    /// nothing.
    pub async fn update<T, F>(&self, tenant: &TenantId, id: &str, mut change: F) -> Result<T>
    where
        T: ConfigRecord + Clone,
        F: FnMut(&mut T) -> Result<bool> + Send,
    {
        for _ in 0..CAS_TRIES {
            let Some(mut v) = self.get::<T>(tenant, id).await? else {
                return Err(StoreError::not_found(format!(
                    "{} {id:?} of tenant {tenant}",
                    T::KIND
                )));
            };
            if !change(&mut v.record)? {
                return Ok(v.record);
            }
            match self.put(&v.record, Expect::Revision(v.revision)).await {
                Ok(_) => return Ok(v.record),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::conflict(format!(
            "{} {id:?}: too many concurrent writers",
            T::KIND
        )))
    }

    /// The hotline of a dialed number, whichever tenant owns it.
    pub async fn hotline(&self, number: &str) -> Result<Option<Hotline>> {
        let Some(tenant) = self.find_global(ConfigKind::Hotline, number).await? else {
            return Ok(None);
        };
        Ok(self
            .get::<Hotline>(&tenant, number)
            .await?
            .map(|v| v.record))
    }

    /// Saves a new version of flow `flow` (creating the flow, named `name`,
    /// if it is new) and returns the version number.
    pub async fn save_flow(
        &self,
        tenant: &TenantId,
        flow: &str,
        name: &str,
        definition: &Flow,
        created: Timestamp,
        author: Option<&str>,
    ) -> Result<u32> {
        if definition.id != flow {
            return Err(StoreError::invalid(format!(
                "flow definition {:?} saved as flow {flow:?}",
                definition.id
            )));
        }
        self.create_if_absent(&IvrFlow {
            tenant: tenant.clone(),
            id: flow.to_owned(),
            name: name.to_owned(),
            published: None,
        })
        .await?;
        self.add_flow_version(&FlowVersion {
            tenant: tenant.clone(),
            flow: flow.to_owned(),
            version: 0,
            created,
            author: author.map(str::to_owned),
            definition: definition.clone(),
        })
        .await
    }

    /// Makes `version` the one calls run.
    pub async fn publish_flow(&self, tenant: &TenantId, flow: &str, version: u32) -> Result<()> {
        if self.flow_version(tenant, flow, version).await?.is_none() {
            return Err(StoreError::not_found(format!(
                "flow {flow:?} has no version {version}"
            )));
        }
        self.update::<IvrFlow, _>(tenant, flow, |f| {
            let changed = f.published != Some(version);
            f.published = Some(version);
            Ok(changed)
        })
        .await
        .map(|_| ())
    }

    /// The published version of a flow.
    pub async fn published_flow(
        &self,
        tenant: &TenantId,
        flow: &str,
    ) -> Result<Option<FlowVersion>> {
        let Some(head) = self.get::<IvrFlow>(tenant, flow).await? else {
            return Ok(None);
        };
        match head.record.published {
            Some(v) => self.flow_version(tenant, flow, v).await,
            None => Ok(None),
        }
    }

    /// Records a prompt's review (审核). Approving or rejecting needs a
    /// reviewer; rejecting needs a reason.
    pub async fn review_prompt(
        &self,
        tenant: &TenantId,
        id: &str,
        status: ReviewStatus,
        reviewer: &str,
        reason: Option<&str>,
        at: Timestamp,
    ) -> Result<Prompt> {
        if status == ReviewStatus::Rejected && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(StoreError::invalid("a rejection needs a reason"));
        }
        if reviewer.trim().is_empty() {
            return Err(StoreError::invalid("a review needs a reviewer"));
        }
        self.update::<Prompt, _>(tenant, id, |p| {
            p.review = Review {
                status,
                reviewer: Some(reviewer.to_owned()),
                reason: reason.map(str::to_owned),
                at: Some(at),
            };
            Ok(true)
        })
        .await
    }

    /// The hourly rows of one scope for a day, summed over nodes, by hour.
    pub async fn hourly_stats(
        &self,
        tenant: &TenantId,
        day: Day,
        scope: &StatsScope,
    ) -> Result<Vec<HourlyStats>> {
        let filter = StatsFilter::Scope(scope.clone());
        Ok(sum_partials(
            self.stats_partials(tenant, day, &filter).await?,
        ))
    }

    /// The hourly rows of every scope of a kind (every group, every agent).
    pub async fn hourly_stats_of_kind(
        &self,
        tenant: &TenantId,
        day: Day,
        kind: ScopeKind,
    ) -> Result<Vec<HourlyStats>> {
        let filter = StatsFilter::Kind(kind);
        Ok(sum_partials(
            self.stats_partials(tenant, day, &filter).await?,
        ))
    }
}
