//! Configuration changes reach the running call centers without a
//! restart. The HTTP API's [`ConfigHooks`] tell the core what changed; a
//! task reads the new state from the store (off the core's task) and
//! hands the core a [`Change`] to apply:
//!
//! - hotlines, schedules, flows, prompts, the trunk, SIP accounts, custom
//!   statuses and the tenant's settings: the tenant's plain data is rebuilt
//!   whole; calls in progress keep the flow they started with;
//! - an agent: its rules go to its actor; a new agent gets an actor,
//!   signed in; a removed or disabled one is signed out and forgotten;
//! - a skill group: its settings and members go to its actor; a new group
//!   gets one; a removed group's actor stops.

use super::*;
use crate::node::center::{load_statics, members, Load, Statics};
use switchboard_actors::shell::GroupMsg;
use switchboard_http::ConfigHooks;
use switchboard_storage::model::{self as m, ConfigKind, Tenant};

/// A change read from the store, ready to apply.
#[derive(Debug)]
pub enum Change {
    Statics {
        tenant: TenantId,
        statics: Box<Statics>,
        /// The order the reads were asked for in: reads run concurrently
        /// and may finish out of order, and each is a whole snapshot, so
        /// an older one is not applied over a newer.
        seq: u64,
    },
    Agent {
        tenant: TenantId,
        id: AgentId,
        record: Option<m::Agent>,
        /// The groups that list the agent, to give them its actor.
        groups: Vec<m::SkillGroup>,
    },
    Group {
        tenant: TenantId,
        id: String,
        record: Option<m::SkillGroup>,
    },
}

/// The HTTP API's hooks: every configuration write becomes a notice to
/// the core.
#[derive(Debug, Clone)]
pub struct Reloads(pub mpsc::Sender<CallNotice>);

impl ConfigHooks for Reloads {
    fn changed(&self, tenant: &TenantId, kind: ConfigKind, id: &str) {
        let _ = self.0.try_send(CallNotice::Config {
            tenant: tenant.clone(),
            kind,
            id: id.to_owned(),
        });
    }
}

/// Reads what a change of (`kind`, `id`) means for the tenant.
pub async fn read_change(
    store: &dyn Store,
    load: &Load,
    tenant: TenantId,
    kind: ConfigKind,
    id: String,
    seq: u64,
) -> anyhow::Result<Option<Change>> {
    Ok(Some(match kind {
        ConfigKind::Agent => {
            let record = store
                .get::<m::Agent>(&tenant, &id)
                .await?
                .map(|v| v.record)
                .filter(|a| a.enabled && !a.telesales);
            let agent = AgentId(id);
            let groups = store
                .list::<m::SkillGroup>(&tenant)
                .await?
                .into_iter()
                .map(|v| v.record)
                .filter(|g| !g.telesales && g.members.iter().any(|mm| mm.agent == agent))
                .collect();
            Change::Agent {
                tenant,
                id: agent,
                record,
                groups,
            }
        }
        ConfigKind::SkillGroup => {
            let record = store
                .get::<m::SkillGroup>(&tenant, &id)
                .await?
                .map(|v| v.record)
                .filter(|g| !g.telesales);
            Change::Group { tenant, id, record }
        }
        ConfigKind::User | ConfigKind::FormSchema | ConfigKind::SigningKey => return Ok(None),
        _ => {
            let Some(t) = store.get::<Tenant>(&tenant, Tenant::ID).await? else {
                return Ok(None);
            };
            let statics = load_statics(store, &t.record, load).await?;
            Change::Statics {
                tenant,
                statics: Box::new(statics),
                seq,
            }
        }
    }))
}

impl SipCore {
    /// A configuration write: read it from the store off this task.
    pub(super) fn config_changed(&mut self, tenant: TenantId, kind: ConfigKind, id: String) {
        if self.centers.tenant(&tenant).is_none() {
            tracing::info!(%tenant, %kind, "a change for a tenant this node has not loaded: it is loaded at the next start");
            return;
        }
        self.reload_seq += 1;
        let seq = self.reload_seq;
        let (store, load, notices) = (
            self.store.clone(),
            self.load.clone(),
            self.notices_tx.clone(),
        );
        tracing::debug!(%tenant, %kind, %id, seq, "configuration changed: reading it");
        tokio::spawn(async move {
            match read_change(&*store, &load, tenant.clone(), kind, id.clone(), seq).await {
                Ok(Some(change)) => {
                    let _ = notices.send(CallNotice::Apply(Box::new(change))).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%tenant, %kind, %id, error = %format!("{e:#}"), "configuration change not applied")
                }
            }
        });
    }

    /// Applies a change read from the store.
    pub(super) async fn apply(&mut self, change: Change) {
        match change {
            Change::Statics {
                tenant,
                statics,
                seq,
            } => {
                let newest = self.statics_applied.entry(tenant.clone()).or_insert(0);
                if seq < *newest {
                    tracing::debug!(%tenant, seq, newest = *newest, "an older read of the tenant's settings: skipped");
                    return;
                }
                *newest = seq;
                tracing::debug!(%tenant, seq, "applying the tenant's settings");
                self.apply_statics(&tenant, *statics)
            }
            Change::Agent {
                tenant,
                id,
                record,
                groups,
            } => self.apply_agent(&tenant, id, record, groups).await,
            Change::Group { tenant, id, record } => self.apply_group(&tenant, id, record).await,
        }
    }

    fn apply_statics(&mut self, tenant: &TenantId, s: Statics) {
        let Some(center) = self.centers.tenants.get_mut(tenant) else {
            return;
        };
        let published = s.published.join(",");
        self.centers.hotlines.retain(|_, t| t != tenant);
        for number in s.hotlines.keys() {
            self.centers.hotlines.insert(number.clone(), tenant.clone());
        }
        for old in center.accounts.drain(..) {
            self.accounts.remove(&tenant.0, &old);
        }
        for a in &s.accounts {
            center.accounts.push(a.username.clone());
            self.accounts.insert(a.clone());
        }
        center.utc_offset = s.utc_offset;
        center.allow_external = s.allow_external;
        center.hotlines = s.hotlines;
        center.survey = s.survey;
        center.queue_callback = s.queue_callback;
        center.outbound_wrap_up = s.outbound_wrap_up;
        self.tenants.set_domains(&tenant.0, &s.sip_domains);
        center.sip_domains = s.sip_domains;
        center.trunk = s.trunk;
        center.prompts = s.prompts;
        let prompts = center.prompts.clone();
        tokio::task::spawn_blocking(move || prompts.warm());
        tracing::info!(%tenant, hotlines = center.hotlines.len(), flows = %published, "tenant settings, hotlines, flows and prompts reloaded");
    }

    async fn apply_agent(
        &mut self,
        tenant: &TenantId,
        id: AgentId,
        record: Option<m::Agent>,
        groups: Vec<m::SkillGroup>,
    ) {
        let Some(center) = self.centers.tenants.get_mut(tenant) else {
            return;
        };
        match (record, center.agents.get_mut(&id)) {
            (Some(rec), Some(h)) => {
                let _ = h.actor.cast(AgentMsg::Policy(rec.policy.clone()));
                // The device is the one the next sign-in uses.
                h.device = rec.device;
                tracing::info!(%tenant, agent = %id, "agent settings reloaded");
            }
            (Some(rec), None) => match center.spawner.agent(&rec, center.trunk.is_some()).await {
                Ok(h) => {
                    center.agents.insert(id.clone(), h);
                    tracing::info!(%tenant, agent = %id, "agent added");
                }
                Err(e) => {
                    tracing::warn!(%tenant, agent = %id, error = %format!("{e:#}"), "new agent not started")
                }
            },
            (None, Some(_)) => {
                if let Some(h) = center.agents.remove(&id) {
                    // Signed out if it can be; on a call it finishes it.
                    let _ = ractor::call!(h.actor, |reply| AgentMsg::SignOut {
                        by: m::Actor::Supervisor,
                        reply
                    });
                    h.actor.stop(None);
                    // In a cluster that was its proxy; the agent itself
                    // runs here if this is its home.
                    let real = match &self.cluster {
                        Some(c) => {
                            c.registry.drop_agent_proxy(tenant, &id);
                            c.registry.unhost_agent(tenant, &id)
                        }
                        None => Some(h.actor.clone()),
                    };
                    if let Some(real) = real {
                        real.stop(None);
                        crate::node::metrics::get()
                            .actors
                            .with_label_values(&["agent"])
                            .dec();
                    }
                    tracing::info!(%tenant, agent = %id, "agent removed");
                }
            }
            (None, None) => {}
        }
        for g in groups {
            if let Some(actor) = center.groups.get(&g.id) {
                let _ = actor.cast(GroupMsg::Members(members(&g, &center.agents)));
            }
        }
        center.refresh_call_refs();
        self.hub
            .set_actors(tenant, center.agents.clone(), center.groups.clone());
        // A new agent's SIP phone may be registered already.
        let now = Instant::now();
        self.check_device(tenant, &id, now);
    }

    async fn apply_group(&mut self, tenant: &TenantId, id: String, record: Option<m::SkillGroup>) {
        let Some(center) = self.centers.tenants.get_mut(tenant) else {
            return;
        };
        match (record, center.groups.get(&id)) {
            (Some(rec), Some(actor)) => {
                let _ = actor.cast(GroupMsg::Config(rec.config.clone()));
                let _ = actor.cast(GroupMsg::Members(members(&rec, &center.agents)));
                tracing::info!(%tenant, group = %id, "skill group reloaded");
            }
            (Some(rec), None) => match center.spawner.group(&rec, &center.agents).await {
                Ok(actor) => {
                    center.groups.insert(id.clone(), actor);
                    tracing::info!(%tenant, group = %id, "skill group added");
                }
                Err(e) => {
                    tracing::warn!(%tenant, group = %id, error = %format!("{e:#}"), "new skill group not started")
                }
            },
            (None, Some(_)) => {
                if let Some(actor) = center.groups.remove(&id) {
                    actor.stop(None);
                    let real = match &self.cluster {
                        Some(c) => {
                            c.registry.drop_group_proxy(tenant, &id);
                            c.registry.unhost_group(tenant, &id)
                        }
                        None => Some(actor.clone()),
                    };
                    if let Some(real) = real {
                        real.stop(None);
                        crate::node::metrics::get()
                            .actors
                            .with_label_values(&["skill_group"])
                            .dec();
                    }
                    tracing::info!(%tenant, group = %id, "skill group removed");
                }
            }
            (None, None) => {}
        }
        center.refresh_call_refs();
        self.hub
            .set_actors(tenant, center.agents.clone(), center.groups.clone());
    }
}
