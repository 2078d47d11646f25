//! The node's SIP core: the user-agent server behind the transport.
//!
//! It answers OPTIONS, runs the registrar (digest auth, bindings), and
//! serves the diagnostic numbers `*43` (echo) and `*44` (prompt, then
//! hang-up) as dialogs with RTP media. Everything else gets the answer RFC
//! 3261 prescribes (404, 405, 416, 420, 481, 501). One task owns all SIP
//! state; each call's media runs in a task of its own.

use super::media::{self, CallMedia, MediaPorts};
use crate::config::NodeConfig;
use crate::demo::DemoAccount;
use anyhow::Result;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_media::sip::dialog::{
    make_via, Dialog, DialogId, Retransmit2xx, Retransmit2xxAction,
};
use switchboard_media::sip::header;
use switchboard_media::sip::message::{Message, Method, Request, Response};
use switchboard_media::sip::transport::{Inbound, SipTransport, Transport};
use tokio::sync::mpsc;

mod auth;
pub mod sdp;

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO";
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// Media settings derived from the node config.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub ports: MediaPorts,
}

impl MediaConfig {
    pub fn new(cfg: &NodeConfig) -> Result<Self> {
        Ok(MediaConfig {
            ports: MediaPorts::new(cfg.sip.ip(), cfg.rtp_ports.0, cfg.rtp_ports.1),
        })
    }
}

/// What a call's media task tells the core.
#[derive(Debug)]
pub enum CallNotice {
    /// The media side is done (prompt finished): end the call with BYE.
    Hangup(DialogId),
}

struct Call {
    dialog: Dialog,
    invite: Request,
    source: SocketAddr,
    transport: Transport,
    /// The last response to the INVITE, resent on INVITE retransmission.
    last_response: Vec<u8>,
    retransmit: Option<Retransmit2xx>,
    media: Option<CallMedia>,
    answered: bool,
}

pub struct SipCore {
    transport: SipTransport,
    auth: auth::Registrar,
    media: MediaConfig,
    calls: HashMap<DialogId, Call>,
    /// INVITE server transactions by top-Via branch, to absorb
    /// retransmissions and match CANCEL (RFC 3261 §17.2.3).
    invites: HashMap<String, DialogId>,
    notices_tx: mpsc::Sender<CallNotice>,
    notices_rx: Option<mpsc::Receiver<CallNotice>>,
    seq: u64,
}

impl SipCore {
    pub fn new(transport: SipTransport, accounts: Vec<DemoAccount>, media: MediaConfig) -> Self {
        let (notices_tx, notices_rx) = mpsc::channel(256);
        let secret: [u8; 16] = rand::random();
        SipCore {
            transport,
            auth: auth::Registrar::new(accounts, &secret),
            media,
            calls: HashMap::new(),
            invites: HashMap::new(),
            notices_tx,
            notices_rx: Some(notices_rx),
            seq: rand::random::<u32>() as u64,
        }
    }

    pub async fn run(mut self, mut inbound: mpsc::Receiver<Inbound>) -> Result<()> {
        let mut notices = self
            .notices_rx
            .take()
            .ok_or_else(|| anyhow::anyhow!("core started twice"))?;
        loop {
            let wake = self.next_timeout();
            tokio::select! {
                msg = inbound.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    self.handle_inbound(msg).await;
                }
                Some(n) = notices.recv() => self.handle_notice(n).await,
                _ = sleep_until(wake) => self.handle_timeout(Instant::now()).await,
            }
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|c| c.retransmit.as_ref().and_then(|r| r.poll_timeout()))
            .min()
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.seq = self.seq.wrapping_add(1);
        format!("{prefix}{:x}{:08x}", self.seq, rand::random::<u32>())
    }

    async fn send(&self, dest: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        if let Err(e) = self.transport.send(dest, transport, bytes).await {
            tracing::debug!(error = %e, "sip send failed");
        }
    }

    async fn reply(&self, msg: &Inbound, req: &Request, resp: Response) {
        let _ = req;
        self.send(msg.source, msg.transport, resp.to_bytes()).await;
    }

    async fn reply_code(&self, msg: &Inbound, req: &Request, code: u16) {
        let mut resp = Response::to(
            req,
            code,
            switchboard_media::sip::message::reason_phrase(code),
        );
        if code == 405 || code == 501 {
            resp.headers.push("Allow", ALLOW);
        }
        self.reply(msg, req, resp).await;
    }

    async fn handle_inbound(&mut self, msg: Inbound) {
        let req = match &msg.message {
            Message::Request(r) => r.clone(),
            // No client transactions of ours wait for these: RFC 3261
            // §18.1.2 drops a response that matches nothing.
            Message::Response(r) => {
                self.handle_response(r.clone()).await;
                return;
            }
        };
        match &req.method {
            Method::Extension(_) => return self.reply_code(&msg, &req, 501).await,
            Method::Ack => return self.handle_ack(&req).await,
            Method::Cancel => return self.handle_cancel(&msg, &req).await,
            _ => {}
        }
        // RFC 3261 §8.2.2.3: we support no extensions.
        let required: Vec<&str> = req.headers.values("Require").collect();
        if !required.is_empty() {
            let mut resp = Response::to(&req, 420, "Bad Extension");
            resp.headers.push("Unsupported", required.join(", "));
            return self.reply(&msg, &req, resp).await;
        }
        // §8.2.2.1: only SIP, SIPS and tel URIs are served.
        if !matches!(
            header::uri_scheme(&req.uri).as_deref(),
            Some("sip" | "sips" | "tel")
        ) {
            return self.reply_code(&msg, &req, 416).await;
        }
        let in_dialog = DialogId::of_incoming(&req);
        match (&req.method, in_dialog) {
            (Method::Options, None) => {
                let mut resp = Response::to(&req, 200, "OK");
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                self.reply(&msg, &req, resp).await;
            }
            (Method::Register, _) => {
                let resp = self
                    .auth
                    .register(&req, msg.source, msg.transport, Instant::now());
                self.reply(&msg, &req, resp).await;
            }
            (Method::Invite, None) => self.handle_invite(&msg, req).await,
            (_, Some(id)) => self.handle_in_dialog(&msg, req, id).await,
            (Method::Bye | Method::Info, None) => self.reply_code(&msg, &req, 481).await,
            _ => self.reply_code(&msg, &req, 405).await,
        }
    }

    async fn handle_response(&mut self, resp: Response) {
        // Responses to our BYEs need no action; retransmissions of a 2xx to
        // an INVITE of ours cannot happen (we send none yet).
        tracing::debug!(code = resp.code, "response received");
    }

    async fn handle_invite(&mut self, msg: &Inbound, req: Request) {
        let branch = super::branch_key(&req);
        // A retransmitted INVITE: resend the last response (§17.2.1).
        if let Some(id) = branch.as_ref().and_then(|b| self.invites.get(b)) {
            if let Some(call) = self.calls.get(id) {
                let bytes = call.last_response.clone();
                self.send(msg.source, msg.transport, bytes).await;
            }
            return;
        }
        if let Some(ct) = req.headers.get("Content-Type") {
            if !req.body.is_empty() && !ct.to_ascii_lowercase().starts_with("application/sdp") {
                let mut resp = Response::to(&req, 415, "Unsupported Media Type");
                resp.headers.push("Accept", "application/sdp");
                return self.reply(msg, &req, resp).await;
            }
        }
        let user = header::uri_user(&req.uri).unwrap_or_default();
        let service = match user.as_str() {
            "*43" => media::Service::Echo,
            "*44" => media::Service::Prompt,
            _ => {
                let code = if self.auth.has_user(&user) { 480 } else { 404 };
                return self.reply_code(msg, &req, code).await;
            }
        };
        let offer = match std::str::from_utf8(&req.body).ok().map(sdp::Offer::parse) {
            Some(Ok(o)) => o,
            _ => {
                // No offer or no usable audio: an offer in the ACK is not
                // supported, so the call cannot proceed.
                let mut resp = Response::to(&req, 488, "Not Acceptable Here");
                resp.headers
                    .push("Warning", "399 switchboard \"no usable audio offer\"");
                return self.reply(msg, &req, resp).await;
            }
        };
        let local_tag = self.fresh("sb");
        let contact = format!("sip:{}@{}", user_for_contact(&user), self.contact_host(msg));
        let contact = if msg.transport == Transport::Tcp {
            format!("{contact};transport=tcp")
        } else {
            contact
        };
        let dialog = match Dialog::uas(&req, &local_tag, &contact) {
            Ok(d) => d,
            Err(e) => {
                let resp = Response::to(&req, e.status(), &e.to_string());
                return self.reply(msg, &req, resp).await;
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
            Err(e) => {
                tracing::warn!(error = %e, "no media for call");
                return self.reply_code(msg, &req, 503).await;
            }
        };
        let mut ok = dialog.response(&req, 200, "OK");
        ok.headers.push("Allow", ALLOW);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = media.answer_sdp().into_bytes().into();
        let bytes = ok.to_bytes();
        let id = dialog.id.clone();
        tracing::info!(call_id = %id.call_id, service = ?service, "call answered");
        let retransmit =
            (msg.transport == Transport::Udp).then(|| Retransmit2xx::new(Instant::now(), T1, T2));
        self.send(msg.source, msg.transport, bytes.clone()).await;
        if let Some(b) = branch {
            self.invites.insert(b, id.clone());
        }
        self.calls.insert(
            id,
            Call {
                dialog,
                invite: req,
                source: msg.source,
                transport: msg.transport,
                last_response: bytes,
                retransmit,
                media: Some(media),
                answered: true,
            },
        );
    }

    fn contact_host(&self, msg: &Inbound) -> String {
        self.contact_host_for(msg.source)
    }

    async fn handle_ack(&mut self, req: &Request) {
        let Some(id) = DialogId::of_incoming(req) else {
            return; // ACK for a non-2xx is absorbed; stray ACKs are dropped.
        };
        if let Some(call) = self.calls.get_mut(&id) {
            if let Some(r) = call.retransmit.as_mut() {
                r.ack();
            }
            let _ = call.dialog.handle_request(req);
        }
    }

    async fn handle_cancel(&mut self, msg: &Inbound, req: &Request) {
        // §9.2: CANCEL matches the INVITE's server transaction by branch.
        let found = super::branch_key(req).and_then(|b| self.invites.get(&b).cloned());
        let Some(id) = found else {
            return self.reply_code(msg, req, 481).await;
        };
        self.reply_code(msg, req, 200).await;
        let answered = self.calls.get(&id).is_some_and(|c| c.answered);
        if !answered {
            if let Some(call) = self.calls.remove(&id) {
                let resp = call
                    .dialog
                    .response(&call.invite, 487, "Request Terminated");
                self.send(call.source, call.transport, resp.to_bytes())
                    .await;
            }
        }
    }

    async fn handle_in_dialog(&mut self, msg: &Inbound, req: Request, id: DialogId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return self.reply_code(msg, &req, 481).await;
        };
        if let Err(e) = call.dialog.handle_request(&req) {
            let resp = Response::to(&req, e.status(), &e.to_string());
            return self.reply(msg, &req, resp).await;
        }
        match req.method {
            Method::Bye => {
                let resp = call.dialog.response(&req, 200, "OK");
                let call = self.calls.remove(&id);
                self.forget_invite(&id);
                self.reply(msg, &req, resp).await;
                tracing::info!(call_id = %id.call_id, "call ended by caller");
                drop(call);
            }
            Method::Invite => {
                // Re-INVITE: hold/unhold or a new address (§14.2).
                let offer = std::str::from_utf8(&req.body).ok().map(sdp::Offer::parse);
                let resp = match (offer, call.media.as_mut()) {
                    (Some(Ok(o)), Some(m)) => {
                        m.update(&o);
                        let mut ok = call.dialog.response(&req, 200, "OK");
                        ok.headers.push("Content-Type", "application/sdp");
                        ok.body = m.answer_sdp().into_bytes().into();
                        ok
                    }
                    (None, Some(m)) if req.body.is_empty() => {
                        let mut ok = call.dialog.response(&req, 200, "OK");
                        ok.headers.push("Content-Type", "application/sdp");
                        ok.body = m.answer_sdp().into_bytes().into();
                        ok
                    }
                    _ => call.dialog.response(&req, 488, "Not Acceptable Here"),
                };
                if resp.code == 200 && msg.transport == Transport::Udp {
                    call.retransmit = Some(Retransmit2xx::new(Instant::now(), T1, T2));
                    call.last_response = resp.to_bytes();
                }
                self.reply(msg, &req, resp).await;
            }
            Method::Info => {
                // RFC 2976 INFO, e.g. application/dtmf-relay: accepted.
                if let Some(m) = call.media.as_ref() {
                    if let Some(d) = dtmf_relay_digit(&req) {
                        m.dtmf_info(d);
                    }
                }
                let resp = call.dialog.response(&req, 200, "OK");
                self.reply(msg, &req, resp).await;
            }
            Method::Options => {
                let mut resp = call.dialog.response(&req, 200, "OK");
                resp.headers.push("Allow", ALLOW);
                self.reply(msg, &req, resp).await;
            }
            _ => self.reply_code(msg, &req, 405).await,
        }
    }

    fn forget_invite(&mut self, id: &DialogId) {
        self.invites.retain(|_, v| v != id);
    }

    async fn handle_notice(&mut self, notice: CallNotice) {
        match notice {
            CallNotice::Hangup(id) => self.hang_up(&id).await,
        }
    }

    /// Ends a call from our side with a BYE (sent once per retransmission
    /// schedule of a non-INVITE client transaction over UDP: E timers).
    async fn hang_up(&mut self, id: &DialogId) {
        let Some(mut call) = self.calls.remove(id) else {
            return;
        };
        self.forget_invite(id);
        let branch = self.fresh("z9hG4bK");
        let sent_by = self.contact_host_for(call.source);
        let via = make_via(call.transport.as_str(), &sent_by, &branch);
        let bye = call.dialog.request(Method::Bye, &via);
        let bytes = bye.to_bytes();
        let dest = call.source;
        let transport = call.transport;
        tracing::info!(call_id = %id.call_id, "call ended by node");
        self.send(dest, transport, bytes.clone()).await;
        if transport == Transport::Udp {
            // RFC 3261 §17.1.2.2 Timer E retransmissions, bounded by F; the
            // response is not awaited: a lost BYE leaves nothing behind here.
            let t = self.transport.clone();
            tokio::spawn(async move {
                let mut wait = T1;
                for _ in 0..3 {
                    tokio::time::sleep(wait).await;
                    let _ = t.send(dest, transport, bytes.clone()).await;
                    wait = (wait * 2).min(T2);
                }
            });
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

    async fn handle_timeout(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut give_up = Vec::new();
        for (id, call) in &mut self.calls {
            if let Some(r) = call.retransmit.as_mut() {
                match r.handle_timeout(now) {
                    Retransmit2xxAction::Resend => {
                        resend.push((call.source, call.transport, call.last_response.clone()))
                    }
                    Retransmit2xxAction::GiveUp => give_up.push(id.clone()),
                    Retransmit2xxAction::Nothing => {}
                }
            }
        }
        for (dest, t, bytes) in resend {
            self.send(dest, t, bytes).await;
        }
        // §13.3.1.4: no ACK within 64*T1 ends the dialog with a BYE.
        for id in give_up {
            self.hang_up(&id).await;
        }
    }
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
