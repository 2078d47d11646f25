//! The node's SIP core: the transaction user behind the transport.
//!
//! Every message from the transport goes through media's
//! [`TransactionLayer`] (RFC 3261 §17), which absorbs retransmissions,
//! answers CANCEL and merged requests, and retransmits what the core
//! sends. The core answers OPTIONS, runs media's [`Registrar`] (digest
//! auth, bindings), and serves the diagnostic numbers `*43` (echo) and
//! `*44` (prompt, then hang-up) as dialogs with RTP media; everything else
//! gets the answer RFC 3261 prescribes (404, 405, 416, 420, 480, 481, 501).
//! One task owns all SIP state; each call's media runs in a task of its own.

mod cc;
mod hosting;
pub mod reload;
pub use hosting::{take_node_lease, Clustered};

use super::center::Centers;
use super::leg::{Leg, LegCmd, LegEvent, Reports};
use super::live::LiveHub;
use super::media::{self, CallMedia, MediaError, MediaPorts};
use crate::config::NodeConfig;
use anyhow::Result;
use cc::{CcCall, Party};
use ractor::{Actor, ActorRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_actors::agent::Device;
use switchboard_actors::call::{CallSetup, InboundCall};
use switchboard_actors::ivr::IvrOutcome;
use switchboard_actors::ivr::{LocalTime, ScheduleExt};
use switchboard_actors::shell::{
    AgentMsg, CallActor, CallMsg, InternalCommand, OutboundCommand, TelephonyCommand,
};
use switchboard_actors::{AgentId, CallId, TenantId, Timestamp};
use switchboard_media::sip::dialog::{authenticated_retry, OutgoingInvite};
use switchboard_media::sip::dialog::{
    make_via, Dialog, DialogId, Retransmit2xx, Retransmit2xxAction,
};
use switchboard_media::sip::digest::Algorithm;
use switchboard_media::sip::header::{self, CSeq, NameAddr};
use switchboard_media::sip::message::{reason_phrase, Method, Request, Response};
use switchboard_media::sip::registrar::{
    AccountMap, AccountStore, ContactEntry, RegisterOutcome, RegisterRequest, Registrar,
    RegistrarConfig, TenantResolver,
};
use switchboard_media::sip::sdp::{parse_answer, Direction, LocalMedia, LocalSession};
use switchboard_media::sip::sdp::{parse_offer, SdpError, SdpErrorKind};
use switchboard_media::sip::transaction::cancel_for;
use switchboard_media::sip::transaction::{
    new_branch, Incoming, TimerConfig, TransactionEvent, TransactionId, TransactionLayer,
};
use switchboard_media::sip::transport::{Inbound, SipTransport, Transport};
use switchboard_storage::model::{NodeId, Trunk, TrunkTransport};
use switchboard_storage::Store;
use tokio::sync::mpsc;

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO";

/// Media settings derived from the node config.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub ports: MediaPorts,
    /// A call-center leg whose phone sends nothing this long is taken for
    /// gone (`None`: never).
    pub silence_limit: Option<std::time::Duration>,
}

impl MediaConfig {
    pub fn new(cfg: &NodeConfig) -> Result<Self> {
        Ok(MediaConfig {
            ports: MediaPorts::new(cfg.sip.ip(), cfg.rtp_ports.0, cfg.rtp_ports.1),
            silence_limit: cfg.media_timeout,
        })
    }
}

/// What the core is started with.
#[derive(Debug)]
pub struct CoreConfig {
    pub media: MediaConfig,
    /// Digest algorithms challenged with, in order (RFC 8760).
    pub digest: Vec<Algorithm>,
    /// The tenants' call centers behind the hotlines, and their accounts.
    pub centers: Centers,
    /// Screen pops read the customer's data from it.
    pub store: Arc<dyn Store>,
    /// Where live events go (the WebSocket clients).
    pub hub: Arc<LiveHub>,
    /// How tenants were loaded, to load their changes the same way.
    pub load: super::center::Load,
    /// This node's name in the records it writes.
    pub node: NodeId,
    /// In a cluster: where agents and groups live, and the cluster.
    pub cluster: Option<hosting::Clustered>,
    /// Where voicemails are written.
    pub data_dir: std::path::PathBuf,
    /// SIP timer T1 (RFC 3261 §17).
    pub t1: std::time::Duration,
}

/// What a call's media task tells the core.
#[derive(Debug)]
pub enum CallNotice {
    /// The media side is done (prompt finished): end the call with BYE.
    Hangup(DialogId),
    /// A call-center call's actor stopped (a call that moved on to
    /// another actor is not its old one's).
    ActorEnded(CallId, ractor::ActorId),
    /// An agent signed in: does its SIP phone's registration let it ring?
    CheckDevice { tenant: TenantId, agent: AgentId },
    /// The API wrote a configuration record.
    Config {
        tenant: TenantId,
        kind: switchboard_storage::model::ConfigKind,
        id: String,
    },
    /// Another node's API wrote a configuration record.
    PeerConfig {
        tenant: TenantId,
        kind: switchboard_storage::model::ConfigKind,
        id: String,
    },
    /// What that change means, read from the store.
    Apply(Box<reload::Change>),
    /// An agent puts its customer on hold (`on`) or takes it off.
    Hold {
        tenant: TenantId,
        agent: AgentId,
        on: bool,
        reply: cc::hold::HoldReply,
    },
    /// An agent transfers its customer.
    Transfer {
        tenant: TenantId,
        agent: AgentId,
        to: switchboard_storage::model::TransferTarget,
        reply: cc::hold::HoldReply,
    },
    /// An agent consults another agent or a number, hands the customer
    /// over, makes it a three-way call or ends the consultation.
    Consult {
        tenant: TenantId,
        agent: AgentId,
        op: switchboard_http::live::ConsultOp,
        reply: cc::hold::HoldReply,
    },
    /// The consulted party of `call` has rung its time: if consultation
    /// `id` still rings, it ends.
    ConsultTimeout { call: CallId, id: u64 },
    /// The node is draining: refuse new calls, keep the ones up.
    Drain,
    /// A supervisor joins an agent's call, changes mode or leaves.
    Monitor {
        tenant: TenantId,
        agent: AgentId,
        /// The supervisor's agent and the mode; `None`: it leaves.
        with: Option<(AgentId, switchboard_http::live::MonitorMode)>,
        reply: cc::monitor::MonitorReply,
    },
    /// The members up changed (`true`: agents and groups may have a new
    /// home), or it is time to renew the leases (`false`).
    Homes(bool),
    /// Another node holds these registrations of `account` now.
    Registered {
        from: String,
        tenant: TenantId,
        account: String,
        bindings: Vec<super::remote::Bound>,
    },
    /// An agent dials a number from the phone bar.
    Dial {
        tenant: TenantId,
        agent: AgentId,
        request: switchboard_http::live::OutboundRequest,
        reply: cc::outbound::DialReply,
    },
}

struct Call {
    dialog: Dialog,
    /// The INVITE's server transaction, until it has its final response.
    invite: Option<(TransactionId, Request)>,
    source: SocketAddr,
    transport: Transport,
    /// The 2xx to the (re-)INVITE, resent until the ACK (§13.3.1.4).
    last_2xx: Vec<u8>,
    retransmit: Option<Retransmit2xx>,
    media: Option<CallMedia>,
    /// The call-center call this dialog is a leg of.
    cc: Option<(CallId, Party)>,
    /// Our offer in a 200 to the leg's re-INVITE without SDP: the answer
    /// comes in the ACK (a call-center leg's; `media` keeps its own).
    pending_offer: Option<Direction>,
}

pub struct SipCore {
    transport: SipTransport,
    layer: TransactionLayer,
    timers: TimerConfig,
    registrar: Registrar,
    accounts: AccountMap,
    tenants: TenantResolver,
    /// The registrar counts whole seconds: Unix time at `epoch`.
    epoch: Instant,
    epoch_unix: u64,
    media: MediaConfig,
    /// The calls up, by dialog. This map and the others the core keeps per
    /// call or transaction are B-trees: a hash map grows by moving every
    /// entry at once, and while it does every message waits for the core.
    calls: BTreeMap<DialogId, Call>,
    /// The calls whose 2xx is resent until its ACK: the only ones the
    /// core's timers look at (not every call up, at every turn).
    unacked: BTreeSet<DialogId>,
    /// INVITE server transactions and the call each created, for CANCEL.
    /// An entry goes when its transaction ends (Timer L, 32 s after the
    /// 2xx); the call it names may have ended before.
    invites: BTreeMap<TransactionId, DialogId>,
    notices_tx: mpsc::Sender<CallNotice>,
    notices_rx: Option<mpsc::Receiver<CallNotice>>,
    seq: u64,
    centers: Centers,
    store: Arc<dyn Store>,
    hub: Arc<LiveHub>,
    load: super::center::Load,
    node: NodeId,
    data_dir: std::path::PathBuf,
    cc: BTreeMap<CallId, CcCall>,
    /// Our INVITEs to agents, by client transaction.
    outgoing: BTreeMap<TransactionId, (CallId, cc::Target)>,
    telephony_tx: mpsc::UnboundedSender<(CallId, TelephonyCommand)>,
    telephony_rx: Option<mpsc::UnboundedReceiver<(CallId, TelephonyCommand)>>,
    /// Our re-INVITEs (hold, unhold), by client transaction.
    reinvites: BTreeMap<TransactionId, cc::hold::ReInvite>,
    /// Outbound calls from the phone bar, and what their actors ask.
    ob: BTreeMap<CallId, cc::outbound::ObCall>,
    ob_tx: mpsc::UnboundedSender<(CallId, OutboundCommand)>,
    ob_rx: Option<mpsc::UnboundedReceiver<(CallId, OutboundCommand)>>,
    /// Internal calls (extension to extension), and what their actors ask.
    ic: BTreeMap<CallId, cc::internal::IcCall>,
    ic_tx: mpsc::UnboundedSender<(CallId, InternalCommand)>,
    ic_rx: Option<mpsc::UnboundedReceiver<(CallId, InternalCommand)>>,
    leg_tx: mpsc::UnboundedSender<(u64, LegEvent)>,
    leg_rx: Option<mpsc::UnboundedReceiver<(u64, LegEvent)>>,
    /// New calls are refused (503) while the node drains.
    draining: bool,
    /// Calls up on this node (dialogs, call-center and outbound calls).
    active: tokio::sync::watch::Sender<usize>,
    /// In a cluster: the registry, the link, and the other nodes'
    /// registrations.
    cluster: Option<hosting::Clustered>,
    /// Configuration reads asked for so far, and the newest applied of
    /// each tenant's settings (see [`reload::Change::Statics`]).
    reload_seq: u64,
    statics_applied: HashMap<TenantId, u64>,
}

impl SipCore {
    pub fn new(transport: SipTransport, config: CoreConfig) -> Self {
        let (notices_tx, notices_rx) = mpsc::channel(256);
        let registrar_config = RegistrarConfig {
            challenge_algorithms: config.digest,
            ..RegistrarConfig::default()
        };
        let mut accounts = AccountMap::new();
        let mut tenants = TenantResolver::new();
        // With one tenant every SIP domain is its; with several, each
        // tenant's phones register under its own domains.
        for (t, center) in &config.centers.tenants {
            tenants.set_domains(&t.0, &center.sip_domains);
        }
        for a in &config.centers.accounts {
            accounts.insert(a.clone());
        }
        let secret: [u8; 32] = rand::random();
        let registrar = Registrar::new(registrar_config, secret.to_vec(), rand::random());
        let timers = TimerConfig {
            t1: config.t1,
            ..TimerConfig::default()
        }
        .sanitized();
        let (telephony_tx, telephony_rx) = mpsc::unbounded_channel();
        let (leg_tx, leg_rx) = mpsc::unbounded_channel();
        let (ob_tx, ob_rx) = mpsc::unbounded_channel();
        let (ic_tx, ic_rx) = mpsc::unbounded_channel();
        SipCore {
            transport,
            layer: TransactionLayer::new(timers),
            timers,
            registrar,
            accounts,
            tenants,
            epoch: Instant::now(),
            epoch_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            media: config.media,
            calls: BTreeMap::new(),
            unacked: BTreeSet::new(),
            invites: BTreeMap::new(),
            notices_tx,
            notices_rx: Some(notices_rx),
            seq: u64::from(rand::random::<u32>()),
            centers: config.centers,
            store: config.store,
            hub: config.hub,
            load: config.load,
            node: config.node,
            data_dir: config.data_dir,
            cc: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            telephony_tx,
            telephony_rx: Some(telephony_rx),
            reinvites: BTreeMap::new(),
            ob: BTreeMap::new(),
            ob_tx,
            ob_rx: Some(ob_rx),
            ic: BTreeMap::new(),
            ic_tx,
            ic_rx: Some(ic_rx),
            leg_tx,
            leg_rx: Some(leg_rx),
            draining: false,
            active: tokio::sync::watch::channel(0).0,
            cluster: config.cluster,
            reload_seq: 0,
            statics_applied: HashMap::new(),
        }
    }

    /// The number of calls up on this node, as it changes.
    pub fn active_calls(&self) -> tokio::sync::watch::Receiver<usize> {
        self.active.subscribe()
    }

    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) -> Result<()> {
        let started = (
            self.notices_rx.take(),
            self.telephony_rx.take(),
            self.leg_rx.take(),
            self.ob_rx.take(),
            self.ic_rx.take(),
        );
        let (
            Some(mut notices),
            Some(mut telephony),
            Some(mut legs),
            Some(mut outbound),
            Some(mut internal),
        ) = started
        else {
            anyhow::bail!("core started twice");
        };
        loop {
            let wake = self.next_timeout();
            let mut began = None;
            tokio::select! {
                msg = inbound.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let now = Instant::now();
                    began = Some(now);
                    self.handle_inbound(msg, now).await;
                }
                Some(n) = notices.recv() => {
                    if matches!(n, CallNotice::ActorEnded(..)) {
                        // What the actor asked before it stopped (its
                        // `Finished` above all) is in the telephony
                        // channel already: it goes first.
                        while let Ok((call, cmd)) = telephony.try_recv() {
                            self.handle_telephony(call, cmd, Instant::now()).await;
                        }
                        while let Ok((call, cmd)) = outbound.try_recv() {
                            self.handle_outbound(call, cmd, Instant::now()).await;
                        }
                        while let Ok((call, cmd)) = internal.try_recv() {
                            self.handle_internal_cmd(call, cmd, Instant::now());
                        }
                    }
                    self.handle_notice(n, Instant::now()).await;
                }
                Some((call, cmd)) = telephony.recv() => {
                    self.handle_telephony(call, cmd, Instant::now()).await;
                }
                Some((call, cmd)) = outbound.recv() => {
                    self.handle_outbound(call, cmd, Instant::now()).await;
                }
                Some((call, cmd)) = internal.recv() => {
                    self.handle_internal_cmd(call, cmd, Instant::now());
                }
                Some((tag, event)) = legs.recv() => {
                    self.handle_leg_event(CallId(tag), event, Instant::now());
                }
                _ = sleep_until(wake) => self.handle_timeout(Instant::now()),
            }
            self.flush().await;
            if let Some(b) = began {
                super::metrics::get()
                    .sip_core_busy
                    .observe(b.elapsed().as_secs_f64());
            }
            let active = self.calls.len() + self.cc.len() + self.ob.len() + self.ic.len();
            self.active
                .send_if_modified(|n| std::mem::replace(n, active) != active);
        }
    }

    /// Where the call centers and the live API tell the core things.
    pub fn notices(&self) -> mpsc::Sender<CallNotice> {
        self.notices_tx.clone()
    }

    /// An agent signed in: its SIP phone can ring if it is registered.
    fn check_device(&self, tenant: &TenantId, agent: &AgentId, now: Instant) {
        let Some(h) = self
            .centers
            .tenant(tenant)
            .and_then(|c| c.agents.get(agent))
        else {
            return;
        };
        if let Device::Sip { account } = &h.device {
            let online = !self.bindings(tenant, account, self.unix(now)).is_empty();
            let _ = h.actor.cast(AgentMsg::DeviceOnline(online));
        }
    }

    fn unix(&self, now: Instant) -> u64 {
        self.epoch_unix + now.saturating_duration_since(self.epoch).as_secs()
    }

    fn next_timeout(&mut self) -> Option<Instant> {
        let resend = |calls: &BTreeMap<DialogId, Call>, d: &DialogId| {
            calls.get(d)?.retransmit.as_ref()?.poll_timeout()
        };
        let calls = &self.calls;
        self.unacked.retain(|d| resend(calls, d).is_some());
        let calls = self.unacked.iter().filter_map(|d| resend(calls, d)).min();
        let expiry = self.registrar.next_expiry().map(|t| {
            self.epoch + Duration::from_secs(t.saturating_sub(self.epoch_unix).saturating_add(1))
        });
        [self.layer.poll_timeout(), calls, expiry]
            .into_iter()
            .flatten()
            .min()
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.seq = self.seq.wrapping_add(1);
        format!("{prefix}{:x}{:08x}", self.seq, rand::random::<u32>())
    }

    /// Sends what the transaction layer queued and hands its events on.
    async fn flush(&mut self) {
        while let Some(out) = self.layer.poll_transmit() {
            self.send(out.dest, out.transport, out.bytes.to_vec()).await;
        }
        let mut agent_responses = Vec::new();
        while let Some((id, event)) = self.layer.poll_event() {
            match event {
                TransactionEvent::Terminated => {
                    self.invites.remove(&id);
                    self.outgoing.remove(&id);
                    self.reinvite_done(&id);
                }
                TransactionEvent::Response(r) if self.is_reinvite(&id) => {
                    self.handle_reinvite_response(id, Some(r));
                }
                TransactionEvent::Timeout(_) | TransactionEvent::TransportError
                    if self.is_reinvite(&id) =>
                {
                    self.handle_reinvite_response(id, None);
                }
                TransactionEvent::Response(r) if self.outgoing.contains_key(&id) => {
                    agent_responses.push((id, Some(r)));
                }
                TransactionEvent::Response(r) => {
                    tracing::debug!(code = r.code, "response to our request");
                }
                TransactionEvent::Timeout(_) | TransactionEvent::TransportError
                    if self.outgoing.contains_key(&id) =>
                {
                    tracing::debug!("agent phone did not answer the INVITE");
                    agent_responses.push((id, None));
                }
                TransactionEvent::Timeout(timer) => {
                    tracing::debug!(?timer, "transaction timed out");
                }
                other => tracing::trace!(?other, "transaction event"),
            }
        }
        if agent_responses.is_empty() {
            return;
        }
        let now = Instant::now();
        for (id, resp) in agent_responses {
            self.handle_out_response(id, resp, now);
        }
        // ACKs and BYEs those caused.
        while let Some(out) = self.layer.poll_transmit() {
            self.send(out.dest, out.transport, out.bytes.to_vec()).await;
        }
    }

    async fn send(&self, dest: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        if let Err(e) = self.transport.send(dest, transport, bytes).await {
            tracing::debug!(error = %e, "sip send failed");
        }
    }

    /// Answers server transaction `id`. RFC 3261 §8.2.6.2: a final
    /// response carries a To tag.
    fn respond(&mut self, id: TransactionId, mut resp: Response, now: Instant) {
        if resp.code > 100 {
            let to = resp.headers.get("To").map(str::to_owned);
            if let Some(to) = to {
                if NameAddr::parse(&to)
                    .ok()
                    .and_then(|n| n.tag().map(str::to_owned))
                    .is_none()
                {
                    let tag = self.fresh("sb");
                    resp.headers.set("To", format!("{to};tag={tag}"));
                }
            }
        }
        let class = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"]
            .get(usize::from(resp.code / 100).saturating_sub(1))
            .copied()
            .unwrap_or("other");
        super::metrics::get()
            .sip_responses
            .with_label_values(&[class])
            .inc();
        if let Err(e) = self.layer.respond(id, &resp, now) {
            tracing::debug!(error = %e, code = resp.code, "response not sent");
        }
    }

    fn respond_code(&mut self, id: TransactionId, req: &Request, code: u16, now: Instant) {
        let mut resp = Response::to(req, code, reason_phrase(code));
        if code == 405 || code == 501 {
            resp.headers.push("Allow", ALLOW);
        }
        self.respond(id, resp, now);
    }

    async fn handle_inbound(&mut self, msg: Inbound, now: Instant) {
        let (source, transport, received) = (msg.source, msg.transport, msg.received);
        let waited = now.saturating_duration_since(received);
        super::metrics::get()
            .sip_queue_wait
            .observe(waited.as_secs_f64());
        match self
            .layer
            .handle_incoming(msg.message, source, transport, now)
        {
            Incoming::Request { id, request } => {
                self.handle_request(id, request, source, transport, received, now)
                    .await
            }
            Incoming::Ack { request, .. } => self.handle_ack(&request),
            Incoming::Cancel { invite, .. } => self.handle_cancel(invite, now),
            Incoming::Malformed { reason } => {
                tracing::debug!(%reason, "message without a transaction");
            }
            // Retransmissions, responses (their events come out of
            // `flush`), stray ACKs and responses, and what the layer
            // answered itself need nothing more.
            _ => {}
        }
    }

    async fn handle_request(
        &mut self,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        received: Instant,
        now: Instant,
    ) {
        let method = match &req.method {
            Method::Extension(_) => "other",
            m => m.as_str(),
        };
        super::metrics::get()
            .sip_requests
            .with_label_values(&[method])
            .inc();
        if let Method::Extension(_) = req.method {
            return self.respond_code(id, &req, 501, now);
        }
        // RFC 3261 §8.2.2.3: we support no extensions.
        let required: Vec<&str> = req.headers.values("Require").collect();
        if !required.is_empty() {
            let mut resp = Response::to(&req, 420, "Bad Extension");
            resp.headers.push("Unsupported", required.join(", "));
            return self.respond(id, resp, now);
        }
        // §8.2.2.1: only SIP, SIPS and tel URIs are served.
        if !matches!(
            header::uri_scheme(&req.uri).as_deref(),
            Some("sip" | "sips" | "tel")
        ) {
            return self.respond_code(id, &req, 416, now);
        }
        let in_dialog = DialogId::of_incoming(&req);
        match (&req.method, in_dialog) {
            (Method::Options, None) => {
                let mut resp = Response::to(&req, 200, "OK");
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                self.respond(id, resp, now);
            }
            (Method::Register, _) => {
                let resp = self.register(&req, source, transport, now);
                self.respond(id, resp, now);
            }
            (Method::Invite, None) if self.draining => {
                // RFC 3261 §21.5.4: another node (the carrier's next
                // route) takes it.
                let mut resp = Response::to(&req, 503, "Service Unavailable");
                resp.headers.push("Retry-After", "30");
                self.respond(id, resp, now);
            }
            (Method::Invite, None)
                if now.saturating_duration_since(received) > self.timers.t1.saturating_mul(4) =>
            {
                // Seconds behind on what came in (an INVITE that waited
                // 4*T1 was sent three times already): the node is
                // overloaded. The calls up (their ACKs, BYEs) go first,
                // and a new call is refused at once rather than taken and
                // served late (its caller retries elsewhere or later, RFC
                // 3261 §21.5.4). Shorter backlogs are only a late ring.
                super::metrics::get().sip_overload_rejected.inc();
                let mut resp = Response::to(&req, 503, "Service Unavailable");
                resp.headers.push("Retry-After", "5");
                self.respond(id, resp, now);
            }
            (Method::Invite, None) => {
                // When the INVITE reached our socket: the ring delay counts
                // from there, the wait for this core included.
                self.handle_invite(id, req, source, transport, received, now)
                    .await
            }
            (_, Some(dialog)) => self.handle_in_dialog(id, req, dialog, transport, now),
            (Method::Bye | Method::Info, None) => self.respond_code(id, &req, 481, now),
            _ => self.respond_code(id, &req, 405, now),
        }
    }

    /// RFC 3261 §10.3, by media's registrar.
    fn register(
        &mut self,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Response {
        let rr = match register_request(req, source, transport, self.unix(now)) {
            Ok(rr) => rr,
            Err((code, reason)) => return Response::to(req, code, reason),
        };
        let outcome = self
            .registrar
            .handle_register(&rr, &self.accounts, &self.tenants);
        let (code, reason) = outcome.status();
        let mut resp = Response::to(req, code, reason);
        match outcome {
            RegisterOutcome::Ok { bindings } => {
                for b in &bindings {
                    resp.headers.push("Contact", b.contact_header());
                }
                if let Some(t) = self.tenants.resolve(&rr.domain).map(TenantId::from) {
                    self.device_online(&t, &rr.to_user, !bindings.is_empty());
                    self.announce(&t, &rr.to_user, &bindings);
                }
                tracing::info!(user = %rr.to_user, bindings = bindings.len(), "registered");
            }
            RegisterOutcome::Challenge {
                www_authenticate, ..
            } => {
                for v in www_authenticate {
                    resp.headers.push("WWW-Authenticate", v);
                }
            }
            RegisterOutcome::IntervalTooBrief { min_expires } => {
                resp.headers.push("Min-Expires", min_expires.to_string());
            }
            RegisterOutcome::Forbidden { .. } => {
                tracing::info!(user = %rr.to_user, source = %source, "registration refused");
            }
            _ => {}
        }
        resp
    }

    /// Tells the agents signed in with SIP account `account` whether their
    /// phone can ring now.
    fn device_online(&self, tenant: &TenantId, account: &str, online: bool) {
        let Some(center) = self.centers.tenant(tenant) else {
            return;
        };
        for a in center.agents_on_account(account) {
            let _ = a.actor.cast(AgentMsg::DeviceOnline(online));
        }
    }

    /// Whether `user` is an account of the tenant serving the Request-URI.
    fn is_account(&self, req: &Request, user: &str) -> bool {
        let host = header::uri_host(&req.uri).unwrap_or_default();
        self.tenants
            .resolve(&host)
            .is_some_and(|t| self.accounts.account(t, user).is_some())
    }

    async fn handle_invite(
        &mut self,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        arrived: Instant,
        now: Instant,
    ) {
        if let Some(ct) = req.headers.get("Content-Type") {
            if !req.body.is_empty() && !ct.to_ascii_lowercase().starts_with("application/sdp") {
                let mut resp = Response::to(&req, 415, "Unsupported Media Type");
                resp.headers.push("Accept", "application/sdp");
                return self.respond(id, resp, now);
            }
        }
        let user = header::uri_user(&req.uri).unwrap_or_default();
        if self.centers.for_hotline(&user).is_some() {
            return self
                .handle_hotline(id, req, source, transport, arrived, now)
                .await;
        }
        if self.is_internal_call(&req, &user) {
            return self
                .handle_internal(id, req, user, source, transport, now)
                .await;
        }
        let service = match user.as_str() {
            "*43" => media::Service::Echo,
            "*44" => media::Service::Prompt,
            _ => {
                // A known user who cannot take calls yet, or nobody.
                let code = if self.is_account(&req, &user) {
                    480
                } else {
                    404
                };
                return self.respond_code(id, &req, code, now);
            }
        };
        let offer = match offer_in(&req) {
            Ok(o) => o,
            Err(e) => return self.refuse_offer(id, &req, &e, now),
        };
        let local_tag = self.fresh("sb");
        let mut contact = format!(
            "sip:{}@{}",
            user_for_contact(&user),
            self.contact_host_for(source)
        );
        if transport == Transport::Tcp {
            contact.push_str(";transport=tcp");
        }
        let dialog = match Dialog::uas(&req, &local_tag, &contact) {
            Ok(d) => d,
            Err(e) => {
                let resp = Response::to(&req, e.status(), &e.to_string());
                return self.respond(id, resp, now);
            }
        };
        let media = match CallMedia::start(
            &self.media.ports,
            &offer,
            service,
            dialog.id.clone(),
            self.notices_tx.clone(),
        )
        .await
        {
            Ok(m) => m,
            Err(MediaError::Sdp(e)) => return self.refuse_offer(id, &req, &e, now),
            Err(e) => {
                tracing::warn!(error = %e, "no media for call");
                return self.respond_code(id, &req, 503, now);
            }
        };
        let mut ok = dialog.response(&req, 200, "OK");
        ok.headers.push("Allow", ALLOW);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = media.sdp().as_bytes().to_vec().into();
        let dialog_id = dialog.id.clone();
        tracing::info!(call_id = %dialog_id.call_id, ?service, "call answered");
        let retransmit = (!transport.is_reliable())
            .then(|| Retransmit2xx::new(now, self.timers.t1, self.timers.t2));
        let last_2xx = ok.to_bytes();
        self.respond(id, ok, now);
        self.invites.insert(id, dialog_id.clone());
        self.unacked.insert(dialog_id.clone());
        self.calls.insert(
            dialog_id,
            Call {
                dialog,
                invite: None,
                source,
                transport,
                last_2xx,
                retransmit,
                media: Some(media),
                cc: None,
                pending_offer: None,
            },
        );
    }

    /// 400 for SDP that cannot be read, 488 for an offer we cannot take.
    fn refuse_offer(&mut self, id: TransactionId, req: &Request, e: &SdpError, now: Instant) {
        self.respond(id, offer_refusal(req, e), now);
    }

    fn handle_ack(&mut self, req: &Request) {
        let Some(id) = DialogId::of_incoming(req) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(r) = call.retransmit.as_mut() {
            r.ack();
        }
        let _ = call.dialog.handle_request(req);
        // The answer to an offer we made in a 200 (§13.2.1).
        if let (Some(m), Ok(sdp)) = (call.media.as_mut(), std::str::from_utf8(&req.body)) {
            if !sdp.is_empty() {
                if let Err(e) = m.handle_answer(sdp) {
                    tracing::info!(error = %e, "unusable answer in ACK");
                }
            }
        }
        let offered = call.pending_offer.take();
        if let (Some(offered), Some((cc, party)), Ok(sdp)) =
            (offered, call.cc.clone(), std::str::from_utf8(&req.body))
        {
            // An ACK without an answer leaves the leg as it was.
            if !sdp.is_empty() {
                self.leg_reinvite_answered(cc, &party, offered, sdp);
            }
        }
    }

    /// §9.2: the layer has answered the CANCEL; a pending INVITE gets 487.
    fn handle_cancel(&mut self, invite: TransactionId, now: Instant) {
        let Some(dialog_id) = self.invites.get(&invite).cloned() else {
            return;
        };
        let pending = self
            .calls
            .get(&dialog_id)
            .is_some_and(|c| c.invite.is_some());
        if !pending {
            return;
        }
        if let Some(mut call) = self.calls.remove(&dialog_id) {
            if let Some((tx, req)) = call.invite.take() {
                let resp = call.dialog.response(&req, 487, "Request Terminated");
                self.respond(tx, resp, now);
            }
            if let Some((c, _)) = call.cc {
                self.ic_cancelled(c);
            }
        }
    }

    fn handle_in_dialog(
        &mut self,
        id: TransactionId,
        req: Request,
        dialog_id: DialogId,
        transport: Transport,
        now: Instant,
    ) {
        let t1 = self.timers.t1;
        let t2 = self.timers.t2;
        let Some(call) = self.calls.get_mut(&dialog_id) else {
            return self.respond_code(id, &req, 481, now);
        };
        if let Err(e) = call.dialog.handle_request(&req) {
            let resp = Response::to(&req, e.status(), &e.to_string());
            return self.respond(id, resp, now);
        }
        // A call-center leg's re-INVITE is answered from its leg's SDP.
        let leg_sdp = match (&req.method, call.media.is_none(), call.cc.clone()) {
            (Method::Invite, true, Some((cc, party))) => {
                let body = std::str::from_utf8(&req.body).unwrap_or("");
                Some(self.leg_reinvite(cc, &party, body))
            }
            _ => None,
        };
        let Some(call) = self.calls.get_mut(&dialog_id) else {
            return self.respond_code(id, &req, 481, now);
        };
        let resp = match req.method {
            Method::Bye => {
                let resp = call.dialog.response(&req, 200, "OK");
                let cc = call.cc.clone();
                self.calls.remove(&dialog_id);
                tracing::info!(call_id = %dialog_id.call_id, "call ended by caller");
                if let Some((call, party)) = cc {
                    self.leg_hung_up(call, party, now);
                }
                resp
            }
            Method::Invite => {
                // Re-INVITE: hold/unhold, a new address or codec (§14.2).
                let body = std::str::from_utf8(&req.body).unwrap_or("");
                let sdp = match (leg_sdp, call.media.as_mut(), body.is_empty()) {
                    (Some(answered), _, _) => answered.map(|(sdp, offered)| {
                        call.pending_offer = offered;
                        sdp
                    }),
                    (None, Some(m), true) => Ok(m.reoffer().to_owned()),
                    (None, Some(m), false) => {
                        parse_offer(body).and_then(|o| m.update(&o).map(str::to_owned))
                    }
                    (None, None, _) => Err(SdpError::NoAudio),
                };
                match sdp {
                    Ok(sdp) => {
                        let mut ok = call.dialog.response(&req, 200, "OK");
                        ok.headers.push("Content-Type", "application/sdp");
                        ok.body = sdp.into_bytes().into();
                        if !transport.is_reliable() {
                            call.retransmit = Some(Retransmit2xx::new(now, t1, t2));
                            call.last_2xx = ok.to_bytes();
                            self.unacked.insert(dialog_id.clone());
                        }
                        ok
                    }
                    Err(e) => {
                        // §14.2: a refused re-INVITE leaves the session as it was.
                        let code = match e.kind() {
                            SdpErrorKind::Malformed => 400,
                            SdpErrorKind::NotAcceptable => 488,
                        };
                        let mut resp = call.dialog.response(&req, code, reason_phrase(code));
                        resp.headers
                            .push("Warning", format!("399 switchboard \"{e}\""));
                        resp
                    }
                }
            }
            Method::Info => {
                // RFC 2976 INFO, e.g. application/dtmf-relay: accepted.
                if let (Some(m), Some(d)) = (call.media.as_ref(), dtmf_relay_digit(&req)) {
                    m.dtmf_info(d);
                }
                call.dialog.response(&req, 200, "OK")
            }
            Method::Options => {
                let mut resp = call.dialog.response(&req, 200, "OK");
                resp.headers.push("Allow", ALLOW);
                resp
            }
            _ => {
                let mut resp = call.dialog.response(&req, 405, reason_phrase(405));
                resp.headers.push("Allow", ALLOW);
                resp
            }
        };
        self.respond(id, resp, now);
    }

    async fn handle_notice(&mut self, notice: CallNotice, now: Instant) {
        match notice {
            CallNotice::Config { tenant, kind, id } => {
                // The other nodes read the same store: they reload too.
                if let Some(c) = &self.cluster {
                    c.link.post_all(&super::remote::Mail::Config {
                        tenant: tenant.clone(),
                        kind,
                        id: id.clone(),
                    });
                }
                self.config_changed(tenant, kind, id)
            }
            CallNotice::PeerConfig { tenant, kind, id } => self.config_changed(tenant, kind, id),
            CallNotice::Apply(change) => self.apply(*change).await,
            CallNotice::Hangup(id) => self.hang_up(&id, now),
            CallNotice::ActorEnded(call, actor) => self.call_actor_ended(call, actor, now),
            CallNotice::CheckDevice { tenant, agent } => self.check_device(&tenant, &agent, now),
            CallNotice::Hold {
                tenant,
                agent,
                on,
                reply,
            } => self.hold(tenant, agent, on, reply, now),
            CallNotice::Transfer {
                tenant,
                agent,
                to,
                reply,
            } => self.transfer(tenant, agent, to, reply, now).await,
            CallNotice::Monitor {
                tenant,
                agent,
                with,
                reply,
            } => self.monitor(tenant, agent, with, reply, now).await,
            CallNotice::Consult {
                tenant,
                agent,
                op,
                reply,
            } => {
                let done = self.consult(&tenant, &agent, op, now).await;
                let _ = reply.send(done);
            }
            CallNotice::Homes(changed) => self.rehome(changed).await,
            CallNotice::Registered {
                from,
                tenant,
                account,
                bindings,
            } => self.remote_registered(from, tenant, account, bindings),
            CallNotice::ConsultTimeout { call, id } => self.consult_timeout(call, id, now),
            CallNotice::Drain => {
                self.draining = true;
                tracing::info!(
                    calls = self.calls.len() + self.ob.len(),
                    "draining: new calls are refused"
                );
            }
            CallNotice::Dial { reply, .. } if self.draining => {
                let _ = reply.send(Err(switchboard_http::live::LiveError::Unavailable(
                    "this node is draining: dial through another node".into(),
                )));
            }
            CallNotice::Dial {
                tenant,
                agent,
                request,
                reply,
            } => {
                self.start_outbound(tenant, agent, request, reply, now)
                    .await
            }
        }
    }

    /// Ends a call from our side with a BYE in a client transaction of
    /// its own (Timer E retransmissions over UDP, F gives up).
    fn hang_up(&mut self, id: &DialogId, now: Instant) {
        let Some(mut call) = self.calls.remove(id) else {
            return;
        };
        let branch = new_branch(rand::random());
        let sent_by = self.contact_host_for(call.source);
        let via = make_via(call.transport.as_str(), &sent_by, &branch);
        let bye = call.dialog.request(Method::Bye, &via);
        tracing::info!(call_id = %id.call_id, "call ended by node");
        // Sent where the INVITE came from: symmetric signalling reaches
        // a phone behind NAT (RFC 3581).
        if let Err(e) = self
            .layer
            .send_request(&bye, call.source, call.transport, now)
        {
            tracing::warn!(error = %e, "BYE not sent");
        }
    }

    fn contact_host_for(&self, peer: SocketAddr) -> String {
        let local = self.transport.local_addr();
        if local.ip().is_unspecified() {
            let ip = if peer.ip().is_loopback() {
                peer.ip()
            } else {
                super::outbound_ip(peer).unwrap_or(local.ip())
            };
            SocketAddr::new(ip, local.port()).to_string()
        } else {
            local.to_string()
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
        self.registrar.expire(self.unix(now));
        let mut resend = Vec::new();
        let mut give_up = Vec::new();
        for id in &self.unacked {
            let Some(call) = self.calls.get_mut(id) else {
                continue;
            };
            if let Some(r) = call.retransmit.as_mut() {
                match r.handle_timeout(now) {
                    Retransmit2xxAction::Resend => {
                        resend.push((call.source, call.transport, call.last_2xx.clone()))
                    }
                    Retransmit2xxAction::GiveUp => give_up.push(id.clone()),
                    Retransmit2xxAction::Nothing => {}
                }
            }
        }
        // The 2xx is the TU's to resend (RFC 6026 §8.1): straight to the
        // transport, not through the finished transaction.
        for (dest, transport, bytes) in resend {
            let t = self.transport.clone();
            tokio::spawn(async move {
                let _ = t.send(dest, transport, bytes).await;
            });
        }
        // §13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE, and
        // the call it was part of hears that this leg is gone.
        for id in give_up {
            let cc = self.calls.get(&id).and_then(|c| c.cc.clone());
            tracing::warn!(call_id = %id.call_id, "no ACK for our 2xx: the leg ends");
            self.hang_up(&id, now);
            if let Some((call, party)) = cc {
                self.leg_hung_up(call, party, now);
            }
        }
    }
}

/// What the registrar needs from a REGISTER, or the status and reason for
/// a request too broken to get that far.
fn register_request(
    req: &Request,
    source: SocketAddr,
    transport: Transport,
    now: u64,
) -> Result<RegisterRequest, (u16, &'static str)> {
    let to = req
        .headers
        .get("To")
        .and_then(|t| NameAddr::parse(t).ok())
        .ok_or((400, "Bad To header"))?;
    if !matches!(header::uri_scheme(&to.uri).as_deref(), Some("sip" | "sips")) {
        return Err((416, "Unsupported URI Scheme"));
    }
    let cseq = CSeq::parse(req.headers.get("CSeq").unwrap_or("")).map_err(|_| (400, "Bad CSeq"))?;
    let mut contacts = Vec::new();
    let mut star = false;
    for value in req.headers.values("Contact") {
        if value.trim() == "*" {
            star = true;
            continue;
        }
        let c = NameAddr::parse(value).map_err(|_| (400, "Bad Contact header"))?;
        let expires_param = match header::param(&c.params, "expires").flatten() {
            Some(v) => Some(v.trim().parse().map_err(|_| (400, "Bad Contact expires"))?),
            None => None,
        };
        let q = match header::param(&c.params, "q").flatten() {
            Some(v) => Some(v.trim().parse().map_err(|_| (400, "Bad Contact q"))?),
            None => None,
        };
        contacts.push(ContactEntry {
            uri: c.uri,
            expires_param,
            q,
            raw: value.to_owned(),
        });
    }
    let expires_header = match req.headers.get("Expires") {
        // RFC 3261 §20.19: a huge delta is taken as the largest value.
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .or_else(|e| {
                    let all_digits =
                        !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit());
                    if all_digits {
                        Ok(u64::MAX)
                    } else {
                        Err(e)
                    }
                })
                .map_err(|_| (400, "Bad Expires header"))?,
        ),
        None => None,
    };
    Ok(RegisterRequest {
        domain: header::uri_host(&to.uri).unwrap_or_default(),
        to_user: header::uri_user(&to.uri).unwrap_or_default(),
        call_id: req.headers.get("Call-ID").unwrap_or("").to_owned(),
        cseq: cseq.seq,
        contacts,
        star,
        expires_header,
        authorization: req.headers.get("Authorization").map(str::to_owned),
        source,
        transport: transport.as_str().to_owned(),
        now,
    })
}

fn user_for_contact(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c == '*' {
                "%2A".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The digit of an `application/dtmf-relay` INFO body (`Signal=5`).
fn dtmf_relay_digit(req: &Request) -> Option<char> {
    let ct = req.headers.get("Content-Type")?;
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/dtmf-relay")
    {
        return None;
    }
    let body = std::str::from_utf8(&req.body).ok()?;
    body.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("signal")
            .then(|| v.trim().chars().next())
            .flatten()
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The SDP offer of an INVITE (an offer in the ACK, RFC 3261 §13.2.1, is
/// not supported).
fn offer_in(req: &Request) -> Result<switchboard_media::sip::sdp::RemoteMedia, SdpError> {
    match std::str::from_utf8(&req.body) {
        Ok(body) if !req.body.is_empty() => parse_offer(body),
        _ => Err(SdpError::NoAudio),
    }
}

/// The response refusing an offer we cannot answer.
fn offer_refusal(req: &Request, e: &SdpError) -> Response {
    let mut resp = match e.kind() {
        SdpErrorKind::Malformed => Response::to(req, 400, "Malformed SDP"),
        SdpErrorKind::NotAcceptable => Response::to(req, 488, "Not Acceptable Here"),
    };
    resp.headers
        .push("Warning", format!("399 switchboard \"{e}\""));
    resp
}
