//! The core in a cluster: which agents and groups run on this node (their
//! home), started and stopped as members come and go, and the SIP
//! registrations every node shares.

use super::SipCore;
use crate::node::center::{members, watch_groups};
use crate::node::records::{close_lost, Recorder};
use crate::node::remote::{Bound, ClusterLink, Mail};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_actors::remote::{Entity, Registry};
use switchboard_actors::shell::{AgentMsg, GroupMsg};
use switchboard_actors::{AgentId, TenantId};
use switchboard_media::sip::registrar::Binding;
use switchboard_storage::model as m;
use switchboard_storage::model::Lease;

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
    /// The leases of what runs here, by (tenant, key).
    leases: HashMap<(TenantId, String), Lease>,
    /// This node's own lease ([`node_lease_key`]): held while it runs, so
    /// the others close its calls only once it stopped renewing it.
    node_lease: Option<Lease>,
    /// Members down whose open calls were closed (until seen up again).
    closed: std::collections::HashSet<String>,
    recorder: Recorder,
}

impl Clustered {
    pub fn new(
        registry: Arc<Registry>,
        link: Arc<ClusterLink>,
        recorder: Recorder,
        node_lease: Option<Lease>,
    ) -> Clustered {
        Clustered {
            registry,
            link,
            remote: HashMap::new(),
            announced: HashMap::new(),
            leases: HashMap::new(),
            node_lease,
            closed: std::collections::HashSet::new(),
            recorder,
        }
    }
}

/// The tenant of the cluster's own leases.
pub fn cluster_tenant() -> TenantId {
    TenantId::from("_cluster")
}

/// The lease a running node holds on itself.
pub fn node_lease_key(node: &str) -> String {
    format!("node:{node}")
}

/// Takes this node's own lease at start, waiting (bounded) for a
/// survivor that may be closing the calls of this node's previous run,
/// then closes what that run left open. `None`: not granted in time.
pub async fn take_node_lease(
    store: &dyn switchboard_storage::Store,
    recorder: &Recorder,
    node: &m::NodeId,
    ttl: std::time::Duration,
) -> Option<Lease> {
    let deadline = std::time::Instant::now() + ttl * 3;
    let key = node_lease_key(&node.0);
    loop {
        let now = switchboard_actors::shell::Clock::system().now();
        match store
            .acquire_lease(&cluster_tenant(), &key, node, ttl, now)
            .await
        {
            Ok(l) => {
                close_lost(store, recorder, node, None).await;
                return Some(l);
            }
            Err(e) if std::time::Instant::now() > deadline => {
                tracing::warn!(error = %e, "this node's own lease not granted: calls of its previous run stay open");
                return None;
            }
            Err(_) => tokio::time::sleep(ttl / 8).await,
        }
    }
}

/// The tenant's skill groups, read when first needed (`None`: unreadable).
async fn skill_groups(
    store: &dyn switchboard_storage::Store,
    t: &TenantId,
) -> Option<Vec<m::SkillGroup>> {
    store
        .list::<m::SkillGroup>(t)
        .await
        .ok()
        .map(|g| g.into_iter().map(|v| v.record).collect())
}

/// The store's lease key of an entity.
fn lease_key(kind: Entity, id: &str) -> String {
    match kind {
        Entity::Agent => format!("agent:{id}"),
        Entity::Group => format!("group:{id}"),
    }
}

impl SipCore {
    /// Stops the entity's actor here (its proxy stays).
    fn unhost(&self, t: &TenantId, kind: Entity, id: &str) {
        let Some(c) = &self.cluster else {
            return;
        };
        let metrics = crate::node::metrics::get();
        match kind {
            Entity::Agent => {
                if let Some(real) = c.registry.unhost_agent(t, &AgentId(id.to_string())) {
                    real.stop(Some("no longer its home".into()));
                    metrics.actors.with_label_values(&["agent"]).dec();
                }
            }
            Entity::Group => {
                if let Some(real) = c.registry.unhost_group(t, id) {
                    real.stop(Some("no longer its home".into()));
                    metrics.actors.with_label_values(&["skill_group"]).dec();
                }
            }
        }
    }

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

    /// Starts here the agents and groups whose home this node became once
    /// it holds their lease, renews the leases it holds (stopping what it
    /// lost one for), and stops and gives up what moved away; proxies then
    /// enqueue their waiting calls where their group lives now. Run when
    /// the members change and every third of the lease time.
    pub(super) async fn rehome(&mut self, members_changed: bool) {
        let Some(c) = &self.cluster else {
            return;
        };
        let reg = c.registry.clone();
        let ttl = c.link.cluster.settings().down_after;
        let metrics = crate::node::metrics::get();
        let tenants: Vec<TenantId> = self.centers.tenants.keys().cloned().collect();
        let (mut started, mut stopped) = (0usize, 0usize);
        for t in tenants {
            let Some(center) = self.centers.tenants.get(&t) else {
                continue;
            };
            let spawner = center.spawner.clone();
            let has_trunk = center.trunk.is_some();
            let clock = center.clock;
            let mut work: Vec<(Entity, String)> = center
                .agents
                .keys()
                .map(|a| (Entity::Agent, a.0.clone()))
                .collect();
            work.extend(center.groups.keys().map(|g| (Entity::Group, g.clone())));
            let mut groups: Option<Vec<m::SkillGroup>> = None;
            let mut arrived = Vec::new();
            for (kind, id) in work {
                let home = reg.is_home(&t, kind, &id);
                let hosted = match kind {
                    Entity::Agent => reg.running_agent(&t, &AgentId(id.clone())).is_some(),
                    Entity::Group => reg.running_group(&t, &id).is_some(),
                };
                let key = lease_key(kind, &id);
                match (home, hosted) {
                    (true, false) => {
                        let asked = std::time::Instant::now();
                        let lease = match self
                            .store
                            .acquire_lease(&t, &key, &self.node, ttl, clock.now())
                            .await
                        {
                            Ok(l) => l,
                            // Another node still holds it (its lease has
                            // not lapsed): try again on the next round.
                            Err(e) => {
                                tracing::debug!(tenant = %t, %key, error = %e, "lease not granted yet");
                                continue;
                            }
                        };
                        let ok = match kind {
                            Entity::Agent => {
                                let agent = AgentId(id.clone());
                                match self.store.get::<m::Agent>(&t, &id).await {
                                    Ok(Some(v)) => {
                                        // The status it had chosen where it ran
                                        // before (its old home tells too, when it
                                        // is alive to), read before it signs in
                                        // here: that sign-in is heard as a choice
                                        // of ready.
                                        let chosen = self.hub.last_chosen(&t, &agent);
                                        match spawner.real_agent(&v.record, has_trunk).await {
                                            Ok(real) => {
                                                if let Some(st) = chosen {
                                                    let _ = real.cast(AgentMsg::Restore(st));
                                                }
                                                reg.host_agent(&t, &agent, real);
                                                arrived.push(agent);
                                                true
                                            }
                                            Err(e) => {
                                                tracing::warn!(tenant = %t, %id, error = %format!("{e:#}"), "agent not started on its home");
                                                false
                                            }
                                        }
                                    }
                                    _ => false,
                                }
                            }
                            Entity::Group => {
                                if groups.is_none() {
                                    groups = skill_groups(&*self.store, &t).await;
                                }
                                let rec = groups
                                    .as_ref()
                                    .and_then(|gs| gs.iter().find(|g| g.id == id));
                                match rec {
                                    Some(rec) => match spawner.real_group(rec).await {
                                        Ok(real) => {
                                            // Hosted before it has members:
                                            // their proxies find it by name.
                                            reg.host_group(&t, &id, real.clone());
                                            if let Some(center) = self.centers.tenants.get(&t) {
                                                let _ = real.cast(GroupMsg::Members(members(
                                                    rec,
                                                    &center.agents,
                                                )));
                                            }
                                            true
                                        }
                                        Err(e) => {
                                            tracing::warn!(tenant = %t, %id, error = %format!("{e:#}"), "skill group not started on its home");
                                            false
                                        }
                                    },
                                    None => false,
                                }
                            }
                        };
                        if ok {
                            reg.fence(kind, &t, &id, asked + ttl);
                            started += 1;
                            if let Some(c) = &mut self.cluster {
                                c.leases.insert((t.clone(), key), lease);
                            }
                        } else {
                            let _ = self.store.release_lease(&lease).await;
                        }
                    }
                    (true, true) => {
                        let Some(held) = self
                            .cluster
                            .as_ref()
                            .and_then(|c| c.leases.get(&(t.clone(), key.clone())))
                            .cloned()
                        else {
                            continue;
                        };
                        let asked = std::time::Instant::now();
                        match self.store.renew_lease(&held, ttl, clock.now()).await {
                            Ok(l) => {
                                reg.fence(kind, &t, &id, asked + ttl);
                                if let Some(c) = &mut self.cluster {
                                    c.leases.insert((t.clone(), key), l);
                                }
                            }
                            Err(e) => {
                                // Someone else may run it now: stop acting.
                                tracing::warn!(tenant = %t, %key, error = %e, "lease lost: stopping it here");
                                metrics.cluster_lease_losses.inc();
                                self.unhost(&t, kind, &id);
                                if let Some(c) = &mut self.cluster {
                                    c.leases.remove(&(t.clone(), key));
                                }
                                stopped += 1;
                            }
                        }
                    }
                    (false, true) => {
                        // A status the agent chose goes with it.
                        let agent = AgentId(id.clone());
                        let status = match (kind, reg.running_agent(&t, &agent)) {
                            (Entity::Agent, Some(real)) => {
                                ractor::call_t!(real, AgentMsg::Handover, 500).ok()
                            }
                            _ => None,
                        };
                        self.unhost(&t, kind, &id);
                        if let Some(s) = status {
                            reg.restore_at_home(&t, &agent, s);
                        }
                        let held = self
                            .cluster
                            .as_mut()
                            .and_then(|c| c.leases.remove(&(t.clone(), key)));
                        if let Some(l) = held {
                            let _ = self.store.release_lease(&l).await;
                        }
                        stopped += 1;
                    }
                    (false, false) => {}
                }
            }
            // An agent started here reports to its groups, wherever they
            // live, and learns whether its phone is registered.
            if !arrived.is_empty() {
                if groups.is_none() {
                    groups = skill_groups(&*self.store, &t).await;
                }
                if let (Some(center), Some(gs)) = (self.centers.tenants.get(&t), &groups) {
                    watch_groups(&reg, &t, gs, &center.groups, &arrived);
                }
                let now = std::time::Instant::now();
                for a in arrived {
                    self.check_device(&t, &a, now);
                }
            }
        }
        if members_changed || started > 0 || stopped > 0 {
            reg.homes_changed();
            let (agents, groups) = reg.hosted();
            tracing::info!(
                started,
                stopped,
                agents,
                groups,
                "homes recomputed: hosting these here"
            );
        }
        self.close_lost_members().await;
        if !members_changed {
            return;
        }
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

impl SipCore {
    /// Renews this node's own lease, and closes the calls members that
    /// are down left open: the first live member by name does, once it
    /// holds the dead member's node lease (so a member only cut off from
    /// the others, still renewing it, keeps its calls), ending them when
    /// the member was last heard.
    async fn close_lost_members(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let ttl = c.link.cluster.settings().down_after;
        let now = switchboard_actors::shell::Clock::system().now();
        let me = m::NodeId(c.link.cluster.name().to_owned());
        c.node_lease = match c.node_lease.take() {
            Some(l) => self.store.renew_lease(&l, ttl, now).await.ok(),
            None => None,
        }
        .or(self
            .store
            .acquire_lease(&cluster_tenant(), &node_lease_key(&me.0), &me, ttl, now)
            .await
            .ok());
        let view = c.link.cluster.view();
        let live = view.live();
        let first = live.iter().min().is_some_and(|n| *n == me.0);
        let mut down = Vec::new();
        for member in &view.members {
            let Some(name) = &member.name else { continue };
            match member.health {
                switchboard_cluster::Health::Down => {
                    if first && !c.closed.contains(name) {
                        down.push(name.clone());
                    }
                }
                _ => {
                    c.closed.remove(name);
                }
            }
        }
        for name in down {
            let dead = m::NodeId(name.clone());
            let Ok(lease) = self
                .store
                .acquire_lease(&cluster_tenant(), &node_lease_key(&name), &me, ttl, now)
                .await
            else {
                continue;
            };
            let at = m::Timestamp(now.0.saturating_sub(ttl.as_millis() as u64));
            let n = close_lost(&*self.store, &c.recorder, &dead, Some(at)).await;
            if n > 0 {
                tracing::info!(node = %name, calls = n, "closed the calls a dead member left open");
            }
            let _ = self.store.release_lease(&lease).await;
            c.closed.insert(name);
        }
    }
}
