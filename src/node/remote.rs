//! What this node says to the other nodes of its cluster: agents' and
//! groups' messages (for their home node) and the SIP registrations it
//! holds (so a call on any node can ring any registered phone).

use super::core::CallNotice;
use super::live::LiveHub;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_actors::remote::{Entity, Link, Registry, Wire};
use switchboard_actors::TenantId;
use switchboard_cluster::codec;
use switchboard_cluster::placement::{EntityKey, Kind};
use switchboard_cluster::Cluster;
use switchboard_http::live::Event;
use switchboard_media::sip::registrar::Binding;
use switchboard_storage::model::ConfigKind;
use tokio::sync::mpsc;

/// A letter between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mail {
    Entity(Wire),
    /// The sender holds these registrations of `account` now (none: it
    /// holds none any more).
    Registered {
        tenant: TenantId,
        account: String,
        bindings: Vec<Bound>,
    },
    /// A live event the sender published, for this node's WebSocket
    /// clients (as JSON: its serde form is internally tagged).
    Event {
        tenant: TenantId,
        json: String,
    },
    /// The sender's API wrote this configuration record (in the store
    /// every node shares): reload it.
    Config {
        tenant: TenantId,
        kind: ConfigKind,
        id: String,
    },
}

/// A registration as other nodes need it: where to send the INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub contact: String,
    pub source: SocketAddr,
    pub transport: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl From<&Binding> for Bound {
    fn from(b: &Binding) -> Bound {
        Bound {
            contact: b.contact.clone(),
            source: b.source,
            transport: b.transport.clone(),
            expires_at: b.expires_at,
        }
    }
}

impl Bound {
    /// The registrar's form, `unix` being now.
    pub fn binding(&self, unix: u64) -> Binding {
        Binding {
            contact: self.contact.clone(),
            raw: format!("<{}>", self.contact),
            source: self.source,
            transport: self.transport.clone(),
            q: None,
            expires_at: self.expires_at,
            expires: self.expires_at.saturating_sub(unix),
            call_id: String::new(),
            cseq: 0,
        }
    }
}

/// The cluster as the registry sees it.
#[derive(Debug)]
pub struct ClusterLink {
    pub cluster: Arc<Cluster>,
}

impl ClusterLink {
    /// Sends `mail` to `node`; false when it cannot go.
    pub fn post(&self, node: &str, mail: &Mail) -> bool {
        match codec::encode(mail) {
            Ok(bytes) => self.cluster.send(node, bytes),
            Err(e) => {
                tracing::warn!(%node, error = %e, "cluster letter not sent");
                false
            }
        }
    }

    /// Sends `mail` to every other member up.
    pub fn post_all(&self, mail: &Mail) {
        let view = self.cluster.view();
        for node in view.live() {
            if node != self.cluster.name() {
                self.post(node, mail);
            }
        }
    }
}

impl Link for ClusterLink {
    fn me(&self) -> &str {
        self.cluster.name()
    }

    fn home(&self, tenant: &TenantId, kind: Entity, id: &str) -> String {
        let kind = match kind {
            Entity::Agent => Kind::Agent,
            Entity::Group => Kind::SkillGroup,
        };
        self.cluster.home(&EntityKey::new(&tenant.0, kind, id))
    }

    fn send(&self, node: &str, wire: &Wire) -> bool {
        self.post(node, &Mail::Entity(wire.clone()))
    }

    fn is_up(&self, node: &str) -> bool {
        self.cluster.view().live().contains(&node)
    }
}

/// Reads the letters of other nodes until the node stops: entity messages
/// to the registry, registrations to the core. Also expires requests
/// whose reply never came.
pub fn serve(
    cluster: &Cluster,
    registry: Arc<Registry>,
    core: mpsc::Sender<CallNotice>,
    hub: Arc<LiveHub>,
) -> tokio::task::JoinHandle<()> {
    let inbox = cluster.inbox();
    tokio::spawn(async move {
        let Some(mut inbox) = inbox else {
            return;
        };
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                letter = inbox.recv() => {
                    let Some((from, body)) = letter else { return };
                    match codec::decode::<Mail>(&body) {
                        Ok((_, Mail::Entity(w))) => registry.deliver(&from, w),
                        Ok((_, Mail::Registered { tenant, account, bindings })) => {
                            let _ = core
                                .send(CallNotice::Registered { from, tenant, account, bindings })
                                .await;
                        }
                        Ok((_, Mail::Event { tenant, json })) => match serde_json::from_str::<Event>(&json) {
                            Ok(e) => hub.publish_local(&tenant, e),
                            Err(e) => tracing::debug!(%from, error = %e, "an event this node does not know"),
                        },
                        Ok((_, Mail::Config { tenant, kind, id })) => {
                            let _ = core.send(CallNotice::PeerConfig { tenant, kind, id }).await;
                        }
                        Err(e) => {
                            crate::node::metrics::get().cluster_decode_errors.inc();
                            tracing::warn!(%from, error = %e, "dropped a cluster letter that could not be decoded");
                        }
                    }
                }
                _ = every.tick() => {
                    let n = registry.expire(Instant::now());
                    if n > 0 {
                        tracing::info!(requests = n, "requests to other nodes timed out");
                    }
                }
            }
        }
    })
}

/// Tells the core each time the members up change (homes move), and a
/// few times per lease time (leases are renewed, homes not yet started
/// are tried again).
pub fn watch_homes(
    cluster: &Cluster,
    core: mpsc::Sender<CallNotice>,
) -> tokio::task::JoinHandle<()> {
    let mut rx = cluster.watch();
    let every = cluster.settings().down_after / 4;
    tokio::spawn(async move {
        let mut live: Vec<String> = Vec::new();
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut now: Vec<String> = rx
                .borrow_and_update()
                .live()
                .into_iter()
                .map(str::to_string)
                .collect();
            now.sort();
            let changed = now != live;
            if changed {
                live = now;
                if core.send(CallNotice::Homes(true)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tick.tick() => {
                    if core.send(CallNotice::Homes(false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Tells the other members every live event published here, until the
/// node stops.
pub fn relay_events(
    link: Arc<ClusterLink>,
    mut events: mpsc::UnboundedReceiver<(TenantId, Event)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((tenant, event)) = events.recv().await {
            match serde_json::to_string(&event) {
                Ok(json) => link.post_all(&Mail::Event { tenant, json }),
                Err(e) => tracing::warn!(error = %e, "live event not relayed"),
            }
        }
    })
}
