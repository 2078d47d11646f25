//! The core in a cluster: which agents and groups run on this node (their
//! home), started and stopped as members come and go, and the SIP
//! registrations every node shares.

use super::SipCore;
use crate::node::center::{members, watch_groups};
use crate::node::remote::{Bound, ClusterLink, Mail};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_actors::remote::{Entity, Registry};
use switchboard_actors::shell::GroupMsg;
use switchboard_actors::{AgentId, TenantId};
use switchboard_media::sip::registrar::Binding;
use switchboard_storage::model as m;

/// What the core keeps of its cluster.
#[derive(Debug)]
pub struct Clustered {
    pub registry: Arc<Registry>,
    pub link: Arc<ClusterLink>,
    /// Registrations other nodes hold, by (tenant, account): the node and
    /// its bindings.
    remote: HashMap<(TenantId, String), (String, Vec<Bound>)>,
    /// What this node told the others it holds.
    announced: HashMap<(TenantId, String), Vec<Bound>>,
}

impl Clustered {
    pub fn new(registry: Arc<Registry>, link: Arc<ClusterLink>) -> Clustered {
        Clustered {
            registry,
            link,
            remote: HashMap::new(),
            announced: HashMap::new(),
        }
    }
}

impl SipCore {
    /// The registrations of `account`: this node's, or else one another
    /// node holds.
    pub(super) fn bindings(&self, tenant: &TenantId, account: &str, unix: u64) -> Vec<Binding> {
        let local = self.registrar.lookup(&tenant.0, account, unix);
        if !local.is_empty() {
            return local;
        }
        let Some(c) = &self.cluster else {
            return local;
        };
        c.remote
            .get(&(tenant.clone(), account.to_string()))
            .map(|(_, bs)| {
                bs.iter()
                    .filter(|b| b.expires_at > unix)
                    .map(|b| b.binding(unix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tells the other nodes this node now holds `bindings` of `account`.
    pub(super) fn announce(&mut self, tenant: &TenantId, account: &str, bindings: &[Binding]) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let bound: Vec<Bound> = bindings.iter().map(Bound::from).collect();
        let key = (tenant.clone(), account.to_string());
        if bound.is_empty() {
            c.announced.remove(&key);
        } else {
            c.announced.insert(key, bound.clone());
        }
        c.link.post_all(&Mail::Registered {
            tenant: tenant.clone(),
            account: account.to_string(),
            bindings: bound,
        });
    }

    pub(super) fn remote_registered(
        &mut self,
        from: String,
        tenant: TenantId,
        account: String,
        bindings: Vec<Bound>,
    ) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let key = (tenant, account);
        if bindings.is_empty() {
            if c.remote.get(&key).is_some_and(|(n, _)| *n == from) {
                c.remote.remove(&key);
            }
        } else {
            tracing::debug!(account = %key.1, node = %from, "registered on another node");
            c.remote.insert(key, (from, bindings));
        }
    }

    /// Starts here the agents and groups whose home this node became, and
    /// stops those that moved away; proxies then enqueue their waiting
    /// calls where their group lives now.
    pub(super) async fn rehome(&mut self) {
        let Some(c) = &self.cluster else {
            return;
        };
        let reg = c.registry.clone();
        let metrics = crate::node::metrics::get();
        let tenants: Vec<TenantId> = self.centers.tenants.keys().cloned().collect();
        let (mut started, mut stopped) = (0usize, 0usize);
        for t in tenants {
            let Some(center) = self.centers.tenants.get(&t) else {
                continue;
            };
            let spawner = center.spawner.clone();
            let has_trunk = center.trunk.is_some();
            let agent_ids: Vec<AgentId> = center.agents.keys().cloned().collect();
            let group_ids: Vec<String> = center.groups.keys().cloned().collect();
            let groups = match self.store.list::<m::SkillGroup>(&t).await {
                Ok(g) => g.into_iter().map(|v| v.record).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(tenant = %t, error = %e, "cannot read the skill groups to rehome");
                    continue;
                }
            };
            let mut arrived = Vec::new();
            for a in agent_ids {
                let home = reg.is_home(&t, Entity::Agent, &a.0);
                match (home, reg.hosted_agent(&t, &a)) {
                    (true, None) => {
                        let rec = match self.store.get::<m::Agent>(&t, &a.0).await {
                            Ok(Some(v)) => v.record,
                            _ => continue,
                        };
                        match spawner.real_agent(&rec, has_trunk).await {
                            Ok(real) => {
                                reg.host_agent(&t, &a, real);
                                arrived.push(a);
                                started += 1;
                            }
                            Err(e) => {
                                tracing::warn!(tenant = %t, agent = %a, error = %format!("{e:#}"), "agent not started on its new home")
                            }
                        }
                    }
                    (false, Some(_)) => {
                        if let Some(real) = reg.unhost_agent(&t, &a) {
                            real.stop(Some("its home moved".into()));
                            metrics.actors.with_label_values(&["agent"]).dec();
                            stopped += 1;
                        }
                    }
                    _ => {}
                }
            }
            for g in group_ids {
                let home = reg.is_home(&t, Entity::Group, &g);
                match (home, reg.hosted_group(&t, &g)) {
                    (true, None) => {
                        let Some(rec) = groups.iter().find(|x| x.id == g) else {
                            continue;
                        };
                        match spawner.real_group(rec).await {
                            Ok(real) => {
                                reg.host_group(&t, &g, real.clone());
                                if let Some(center) = self.centers.tenants.get(&t) {
                                    let _ =
                                        real.cast(GroupMsg::Members(members(rec, &center.agents)));
                                }
                                started += 1;
                            }
                            Err(e) => {
                                tracing::warn!(tenant = %t, group = %g, error = %format!("{e:#}"), "skill group not started on its new home")
                            }
                        }
                    }
                    (false, Some(_)) => {
                        if let Some(real) = reg.unhost_group(&t, &g) {
                            real.stop(Some("its home moved".into()));
                            metrics.actors.with_label_values(&["skill_group"]).dec();
                            stopped += 1;
                        }
                    }
                    _ => {}
                }
            }
            // An agent started here reports to its groups, wherever they
            // live, and learns whether its phone is registered.
            if let Some(center) = self.centers.tenants.get(&t) {
                watch_groups(&reg, &t, &groups, &center.groups, &arrived);
            }
            let now = std::time::Instant::now();
            for a in arrived {
                self.check_device(&t, &a, now);
            }
        }
        reg.homes_changed();
        let (agents, groups) = reg.hosted();
        tracing::info!(
            started,
            stopped,
            agents,
            groups,
            "homes recomputed: hosting these here"
        );
        // Members that just joined learn the registrations held here.
        let unix = self.unix(std::time::Instant::now());
        if let Some(c) = &self.cluster {
            for ((tenant, account), bound) in &c.announced {
                let live: Vec<Bound> = bound
                    .iter()
                    .filter(|b| b.expires_at > unix)
                    .cloned()
                    .collect();
                if !live.is_empty() {
                    c.link.post_all(&Mail::Registered {
                        tenant: tenant.clone(),
                        account: account.clone(),
                        bindings: live,
                    });
                }
            }
        }
    }
}
