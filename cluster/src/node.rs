//! The shell around [`Membership`]: a `ractor_cluster` node server for
//! the connections, a membership actor that heartbeats the others
//! through a process group, dials and re-dials, and publishes the view.

use crate::codec::{self, CodecError};
use crate::membership::{Ack, Action, Heartbeat, Membership, Settings, View};
use crate::placement::{self, EntityKey};
use ractor::concurrency::JoinHandle;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{pg, Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::node::{
    NodeConnectionMode, NodeEventSubscription, NodeServerSessionInformation,
};
use ractor_cluster::{NodeServer, NodeServerMessage};
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// The process group every membership actor joins.
const GROUP: &str = "switchboard.membership";
/// How often the membership actor looks at its clock.
const TICK: Duration = Duration::from_millis(50);
/// How long one dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

fn own_group(name: &str) -> String {
    format!("{GROUP}.{name}")
}

/// The process group of a node's mailbox.
fn mail_group(name: &str) -> String {
    format!("switchboard.mail.{name}")
}

/// A letter between the nodes' applications: who sent it and its body
/// (the application's own encoding, through [`codec`] too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Letter {
    from: String,
    body: Vec<u8>,
}

/// Messages to a node's mailbox.
#[derive(Debug)]
enum MailMsg {
    Letter(Result<Letter, CodecError>),
}

impl ractor::Message for MailMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            MailMsg::Letter(Ok(l)) => Ok(SerializedMessage::Cast {
                variant: String::new(),
                args: codec::encode(&l).map_err(|_| BoxedDowncastErr)?,
                metadata: None,
            }),
            MailMsg::Letter(Err(_)) => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(bytes: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match bytes {
            SerializedMessage::Cast { args, .. } => Ok(MailMsg::Letter(
                codec::decode::<Letter>(&args).map(|(_, l)| l),
            )),
            _ => Ok(MailMsg::Letter(Err(CodecError::Decode(
                "not a cast".to_string(),
            )))),
        }
    }
}

/// Letters from other nodes: (sender's name, body).
pub type Inbox = mpsc::UnboundedReceiver<(String, Vec<u8>)>;

/// Hands letters from other nodes to the application.
struct Mailbox;

struct MailboxArgs {
    name: String,
    to: mpsc::UnboundedSender<(String, Vec<u8>)>,
    stats: Arc<Stats>,
}

impl Actor for Mailbox {
    type Msg = MailMsg;
    type State = MailboxArgs;
    type Arguments = MailboxArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MailMsg>,
        args: MailboxArgs,
    ) -> Result<MailboxArgs, ActorProcessingErr> {
        pg::join(mail_group(&args.name), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<MailMsg>,
        msg: MailMsg,
        st: &mut MailboxArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MailMsg::Letter(Ok(l)) => {
                let _ = st.to.send((l.from, l.body));
            }
            MailMsg::Letter(Err(e)) => {
                st.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "dropped a cluster letter that could not be decoded");
            }
        }
        Ok(())
    }
}

/// How a node joins.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name: unique in the cluster.
    pub name: String,
    /// Where this node accepts cluster connections. It may be unspecified
    /// (0.0.0.0) only with an `advertise` host. Connections to the others
    /// leave from its address when it names one, so a multi-homed host
    /// keeps cluster traffic on the cluster's network.
    pub listen: SocketAddr,
    /// The host (address or name) other nodes reach this node at, on the
    /// listen port: behind NAT, in a container, or through a proxy.
    /// Default: the listen address.
    pub advertise: Option<String>,
    /// Mutual TLS on every cluster connection; `None`: plain TCP.
    pub tls: Option<crate::tls::ClusterTls>,
    /// Members to join through (`host:port`).
    pub seeds: Vec<String>,
    /// The shared secret every node of the cluster is started with.
    pub cookie: String,
    pub settings: Settings,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error(
        "the cluster address {0} must name an address other nodes reach (not 0.0.0.0 or port 0), or come with an advertised host"
    )]
    Unreachable(SocketAddr),
    #[error("the advertised cluster host {0:?} is empty or has a port (the listen port is used)")]
    Advertise(String),
    #[error("cannot resolve the seed {seed}: {reason}")]
    Seed { seed: String, reason: String },
    #[error("the cluster cookie is empty")]
    NoCookie,
    #[error("cannot start the cluster on {addr}: {reason}")]
    Start { addr: SocketAddr, reason: String },
}

/// Counters an operator watches.
#[derive(Debug, Default)]
pub struct Stats {
    pub heartbeats_received: AtomicU64,
    /// Messages from other nodes that could not be decoded (dropped).
    pub decode_errors: AtomicU64,
    /// Times the set of members up changed.
    pub membership_changes: AtomicU64,
}

/// What nodes say to each other's membership actors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    Heartbeat(Heartbeat),
    Ack(Ack),
    /// The sender is leaving (draining).
    Leaving {
        name: String,
        addr: String,
    },
}

/// Messages to the membership actor.
#[derive(Debug)]
pub enum PeerMsg {
    /// From another node: decoded, or why not.
    Wire(Result<Wire, CodecError>),
    Tick,
    SessionUp(String),
    SessionDown(String),
    /// This node leaves the cluster.
    Leave,
}

impl ractor::Message for PeerMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            PeerMsg::Wire(Ok(w)) => Ok(SerializedMessage::Cast {
                variant: String::new(),
                args: codec::encode(&w).map_err(|_| BoxedDowncastErr)?,
                metadata: None,
            }),
            _ => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(bytes: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match bytes {
            SerializedMessage::Cast { args, .. } => {
                Ok(PeerMsg::Wire(codec::decode::<Wire>(&args).map(|(_, w)| w)))
            }
            // Calls and replies are not part of this protocol: say so
            // rather than drop them silently.
            _ => Ok(PeerMsg::Wire(Err(CodecError::Decode(
                "not a cast".to_string(),
            )))),
        }
    }
}

struct MembershipActor;

struct MembershipState {
    machine: Membership,
    addr: String,
    /// Where connections to the others leave from.
    source: Option<std::net::IpAddr>,
    tls: Option<crate::tls::ClusterTls>,
    server: ActorRef<NodeServerMessage>,
    clock: Instant,
    view: watch::Sender<View>,
    stats: Arc<Stats>,
    ticker: Option<JoinHandle<()>>,
}

struct MembershipArgs {
    machine: Membership,
    addr: String,
    source: Option<std::net::IpAddr>,
    tls: Option<crate::tls::ClusterTls>,
    server: ActorRef<NodeServerMessage>,
    view: watch::Sender<View>,
    stats: Arc<Stats>,
}

impl Actor for MembershipActor {
    type Msg = PeerMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PeerMsg>,
        args: MembershipArgs,
    ) -> Result<MembershipState, ActorProcessingErr> {
        pg::join(GROUP.to_string(), vec![myself.get_cell()]);
        pg::join(own_group(args.machine.name()), vec![myself.get_cell()]);
        let ticker = myself.send_interval(TICK, || PeerMsg::Tick);
        Ok(MembershipState {
            machine: args.machine,
            addr: args.addr,
            source: args.source,
            tls: args.tls,
            server: args.server,
            clock: Instant::now(),
            view: args.view,
            stats: args.stats,
            ticker: Some(ticker),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<PeerMsg>,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<PeerMsg>,
        msg: PeerMsg,
        st: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let actions = match msg {
            PeerMsg::Tick => st.machine.tick(now),
            PeerMsg::Wire(Ok(Wire::Heartbeat(hb))) => {
                st.stats.heartbeats_received.fetch_add(1, Ordering::Relaxed);
                let (ack, actions) = st.machine.heard(&hb, now);
                if let Some(ack) = ack {
                    send_to(&own_group(&hb.name), &Wire::Ack(ack));
                }
                actions
            }
            PeerMsg::Wire(Ok(Wire::Ack(ack))) => {
                let rtt = Duration::from_nanos(nanos_since(st.clock).saturating_sub(ack.sent));
                st.machine.acked(&ack, rtt, now)
            }
            PeerMsg::Wire(Ok(Wire::Leaving { name, addr })) => {
                tracing::info!(%name, %addr, "cluster member leaving");
                st.machine.left(&addr, now)
            }
            PeerMsg::Leave => st.machine.leave(),
            PeerMsg::Wire(Err(e)) => {
                st.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "dropped a cluster message that could not be decoded");
                Vec::new()
            }
            PeerMsg::SessionUp(addr) => {
                st.machine.connected(&addr, now);
                Vec::new()
            }
            PeerMsg::SessionDown(addr) => {
                st.machine.disconnected(&addr, now);
                Vec::new()
            }
        };
        for a in actions {
            match a {
                Action::Heartbeat(mut hb) => {
                    hb.sent = nanos_since(st.clock);
                    send_to(GROUP, &Wire::Heartbeat(hb));
                }
                Action::Leave => send_to(
                    GROUP,
                    &Wire::Leaving {
                        name: st.machine.name().to_string(),
                        addr: st.addr.clone(),
                    },
                ),
                Action::Dial(addr) => {
                    let server = st.server.clone();
                    let (source, tls) = (st.source, st.tls.clone());
                    tokio::spawn(async move {
                        let dial = dial(&server, &addr, source, tls);
                        match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                            Ok(Ok(())) => tracing::debug!(%addr, "dialed a cluster member"),
                            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                                tracing::warn!(%addr, error = %e, "cluster TLS handshake failed")
                            }
                            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "cluster dial failed"),
                            Err(_) => tracing::debug!(%addr, "cluster dial timed out"),
                        }
                    });
                }
                Action::Disconnect(addr) => {
                    tracing::warn!(%addr, "cluster member silent: closing its session");
                    let server = st.server.clone();
                    tokio::spawn(async move { disconnect(&server, &addr).await });
                }
                Action::MembersChanged => {
                    st.stats.membership_changes.fetch_add(1, Ordering::Relaxed);
                    let view = st.machine.view(now);
                    tracing::info!(members = ?view.live(), "cluster members up");
                }
            }
        }
        st.view.send_replace(st.machine.view(now));
        Ok(())
    }
}

fn nanos_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Casts `wire` to the remote members of `group`.
fn send_to(group: &str, wire: &Wire) {
    for cell in pg::get_members(&group.to_string()) {
        if cell.get_id().is_local() {
            continue;
        }
        let peer: ActorRef<PeerMsg> = cell.into();
        if let Err(e) = peer.cast(PeerMsg::Wire(Ok(wire.clone()))) {
            tracing::debug!(error = %e, "cluster send failed");
        }
    }
}

/// Opens a cluster connection to `addr`, from the `source` address when
/// given, over TLS when configured, and hands it to the node server.
async fn dial(
    server: &ActorRef<NodeServerMessage>,
    addr: &str,
    source: Option<std::net::IpAddr>,
    tls: Option<crate::tls::ClusterTls>,
) -> Result<(), std::io::Error> {
    let to = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let socket = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| ip.is_ipv4() == to.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    let (peer_addr, local_addr) = (stream.peer_addr()?, stream.local_addr()?);
    let stream = match tls {
        None => ractor_cluster::NetworkStream::Raw {
            peer_addr,
            local_addr,
            stream,
        },
        Some(tls) => {
            let name = crate::tls::server_name(addr).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no TLS name in the address",
                )
            })?;
            let stream = tls.connector().connect(name, stream).await?;
            ractor_cluster::NetworkStream::TlsClient {
                peer_addr,
                local_addr,
                stream,
            }
        }
    };
    server
        .cast(NodeServerMessage::ConnectionOpened {
            stream: Box::new(stream),
            is_server: false,
        })
        .map_err(|e| std::io::Error::other(e.to_string()))
}

async fn disconnect(server: &ActorRef<NodeServerMessage>, addr: &str) {
    let sessions = match ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list cluster sessions");
            return;
        }
    };
    for ses in sessions.values() {
        if ses.peer_name.as_ref().map(|n| n.connection_string.as_str()) == Some(addr) {
            ses.actor.stop(Some("heartbeats went silent".to_string()));
        }
    }
}

struct Events(ActorRef<PeerMsg>);

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        if let Some(n) = ses.peer_name {
            let _ = self.0.cast(PeerMsg::SessionDown(n.connection_string));
        }
    }

    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        if let Some(n) = ses.peer_name {
            let _ = self.0.cast(PeerMsg::SessionUp(n.connection_string));
        }
    }
}

/// A running cluster membership: this node's view of the others.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    addr: String,
    membership: ActorRef<PeerMsg>,
    server: ActorRef<NodeServerMessage>,
    view: watch::Receiver<View>,
    stats: Arc<Stats>,
    settings: Settings,
    mailbox: ActorRef<MailMsg>,
    inbox: Mutex<Option<Inbox>>,
}

impl Cluster {
    /// Listens, joins through the seeds and keeps at it until
    /// [`Cluster::stop`].
    pub async fn start(cfg: ClusterConfig) -> Result<Cluster, ClusterError> {
        if cfg.listen.port() == 0 || (cfg.listen.ip().is_unspecified() && cfg.advertise.is_none()) {
            return Err(ClusterError::Unreachable(cfg.listen));
        }
        if let Some(a) = &cfg.advertise {
            let bracketed = a.starts_with('[') && a.ends_with(']');
            if a.is_empty()
                || (a.contains(':') && !bracketed && a.parse::<std::net::Ipv6Addr>().is_err())
            {
                return Err(ClusterError::Advertise(a.clone()));
            }
        }
        if cfg.cookie.is_empty() {
            return Err(ClusterError::NoCookie);
        }
        let mut seeds = Vec::new();
        for s in &cfg.seeds {
            let addr = s
                .to_socket_addrs()
                .map_err(|e| ClusterError::Seed {
                    seed: s.clone(),
                    reason: e.to_string(),
                })?
                .next()
                .ok_or_else(|| ClusterError::Seed {
                    seed: s.clone(),
                    reason: "no address".to_string(),
                })?;
            seeds.push(addr.to_string());
        }
        let host = match (&cfg.advertise, cfg.listen.ip()) {
            (Some(a), _) if a.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{a}]"),
            (Some(a), _) => a.clone(),
            (None, std::net::IpAddr::V4(ip)) => ip.to_string(),
            (None, std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        // ractor_cluster tells its peers `host:listen port`: that is the
        // address every member knows this node by.
        let addr = format!("{host}:{}", cfg.listen.port());
        let source = (!cfg.listen.ip().is_unspecified()).then_some(cfg.listen.ip());
        let start_err = |reason: String| ClusterError::Start {
            addr: cfg.listen,
            reason,
        };
        let server = NodeServer::new(
            cfg.listen.port(),
            cfg.cookie.clone(),
            cfg.name.clone(),
            host,
            cfg.tls
                .as_ref()
                .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor())),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(cfg.listen.ip())
        .with_max_inbound_frame_size(2 * codec::MAX_MESSAGE as u64);
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| start_err(e.to_string()))?;
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let now = Instant::now();
        let machine = Membership::new(&cfg.name, &addr, incarnation, &seeds, cfg.settings, now);
        let (tx, view) = watch::channel(machine.view(now));
        let stats = Arc::new(Stats::default());
        let (membership, _) = Actor::spawn(
            None,
            MembershipActor,
            MembershipArgs {
                machine,
                addr: addr.clone(),
                source,
                tls: cfg.tls.clone(),
                server: server.clone(),
                view: tx,
                stats: stats.clone(),
            },
        )
        .await
        .map_err(|e| {
            server.stop(None);
            start_err(e.to_string())
        })?;
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "switchboard.membership".to_string(),
                subscription: Box::new(Events(membership.clone())),
            })
            .map_err(|e| start_err(e.to_string()))?;
        let (mail_tx, mail_rx) = mpsc::unbounded_channel();
        let (mailbox, _) = Actor::spawn(
            None,
            Mailbox,
            MailboxArgs {
                name: cfg.name.clone(),
                to: mail_tx,
                stats: stats.clone(),
            },
        )
        .await
        .map_err(|e| {
            membership.stop(None);
            server.stop(None);
            start_err(e.to_string())
        })?;
        tracing::info!(name = %cfg.name, %addr, seeds = ?seeds, "cluster listening");
        Ok(Cluster {
            name: cfg.name,
            addr,
            membership,
            server,
            view,
            stats,
            settings: cfg.settings,
            mailbox,
            inbox: Mutex::new(Some(mail_rx)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where this node accepts cluster connections.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The members now.
    pub fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// Changes as they happen (several times a second while the cluster
    /// runs).
    pub fn watch(&self) -> watch::Receiver<View> {
        self.view.clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The node `key` lives on now.
    pub fn home(&self, key: &EntityKey<'_>) -> String {
        let view = self.view.borrow();
        placement::home(key, view.live())
            .unwrap_or(self.name.as_str())
            .to_string()
    }

    /// Waits until every seed is up or `timeout` (a node that starts
    /// alone places nothing elsewhere, and a node joining a cluster would
    /// otherwise start everything and hand it over at once).
    pub async fn settle(&self, timeout: Duration) {
        let mut rx = self.view.clone();
        let all_up = |v: &View| {
            v.members
                .iter()
                .filter(|m| !m.me)
                .all(|m| m.health == crate::Health::Up)
        };
        let _ = tokio::time::timeout(timeout, rx.wait_for(all_up)).await;
    }

    /// Tells the others this node is leaving: they stop placing entities
    /// on it at once, and it stops heartbeating (it keeps its sessions
    /// until [`Cluster::stop`]).
    pub fn leave(&self) {
        let _ = self.membership.cast(PeerMsg::Leave);
    }

    /// Sends `body` to node `to`'s application; false when no session
    /// to it is up (or it is this node).
    pub fn send(&self, to: &str, body: Vec<u8>) -> bool {
        let Some(cell) = pg::get_members(&mail_group(to))
            .into_iter()
            .find(|c| !c.get_id().is_local())
        else {
            return false;
        };
        let letter = Letter {
            from: self.name.clone(),
            body,
        };
        let peer: ActorRef<MailMsg> = cell.into();
        peer.cast(MailMsg::Letter(Ok(letter))).is_ok()
    }

    /// What other nodes send this one, as (sender, body); given once.
    pub fn inbox(&self) -> Option<Inbox> {
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Stops heartbeating and closes every session.
    pub fn stop(&self) {
        self.mailbox.stop(None);
        self.membership.stop(None);
        self.server.stop(None);
    }
}
