//! Internal calls (内部呼叫): a phone registered with one of the tenant's
//! SIP accounts dials another account's extension. The INVITE must carry
//! the caller's digest credentials (407 asks for them, as a proxy would),
//! so nobody calls from an extension that is not theirs; only extensions
//! are reached this way, never the trunk. The caller's INVITE waits while
//! the callee's phone rings (its 180 is passed on), and is answered when
//! the callee answers; busy, declined and unreachable are passed on too.
//! The agents on the two accounts are on the call meanwhile (no queue
//! offers them another); a callee agent on a call already is busy (486).
//!
//! An [`InternalCall`] machine in an actor decides; this side does the
//! signalling and the media and writes nothing itself.

use super::*;
use switchboard_actors::agent_ref::AgentRef;
use switchboard_actors::internal::{InternalCall, InternalSetup};
use switchboard_actors::shell::{InternalActor, InternalCommand, InternalMsg};
use switchboard_media::sip::registrar::{Asked, Authentication};

/// An internal call on this node.
pub(in crate::node::core) struct IcCall {
    actor: ActorRef<InternalMsg>,
    /// The caller's dialog (ours as UAS); its INVITE waits for the callee.
    caller: Option<DialogId>,
    caller_leg: Leg,
    /// Our answer to the caller's offer, sent with the 200.
    caller_sdp: String,
    /// Our side of the caller's SDP, for its phone's re-INVITEs (hold).
    caller_session: (LocalSession, LocalMedia),
    callee: Option<OutLeg>,
    /// The agents on this call, freed by the actor when it ends (by the
    /// node if the actor failed).
    agents: Vec<AgentRef>,
    /// The actor wrote the record.
    finished: bool,
}

impl IcCall {
    /// The caller's leg with our side of its SDP.
    pub(super) fn caller_sdp_mut(&mut self) -> (&mut LocalSession, &LocalMedia, &Leg) {
        let (session, local) = &mut self.caller_session;
        (session, local, &self.caller_leg)
    }

    /// The callee's leg, while it is kept.
    pub(super) fn callee_mut(&mut self) -> Option<&mut OutLeg> {
        self.callee.as_mut()
    }
}

impl SipCore {
    /// Whether an INVITE for `user` is a call from one extension of the
    /// tenant to another (its From an account, its target an account).
    pub(in crate::node::core) fn is_internal_call(&self, req: &Request, user: &str) -> bool {
        let host = header::uri_host(&req.uri).unwrap_or_default();
        let from = from_user(req);
        self.tenants.resolve(&host).is_some_and(|t| {
            self.accounts.account(t, user).is_some()
                && from.is_some_and(|f| self.accounts.account(t, &f).is_some())
        })
    }

    /// An INVITE from one extension to another.
    pub(in crate::node::core) async fn handle_internal(
        &mut self,
        id: TransactionId,
        req: Request,
        callee: String,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let host = header::uri_host(&req.uri).unwrap_or_default();
        let caller = from_user(&req).unwrap_or_default();
        let authorization = req
            .headers
            .get("Proxy-Authorization")
            .or_else(|| req.headers.get("Authorization"))
            .map(str::to_owned);
        let asked = Asked {
            method: "INVITE",
            domain: &host,
            user: &caller,
            authorization: authorization.as_deref(),
            now: self.unix(now),
        };
        let tenant = match self
            .registrar
            .authenticate(&asked, &self.accounts, &self.tenants)
        {
            Authentication::Authenticated { tenant } => TenantId(tenant),
            Authentication::Challenge { headers, .. } => {
                let mut resp = Response::to(&req, 407, "Proxy Authentication Required");
                for h in headers {
                    resp.headers.push("Proxy-Authenticate", h);
                }
                return self.respond(id, resp, now);
            }
            Authentication::Forbidden { reason } => {
                tracing::info!(%caller, %source, "internal call refused: bad credentials");
                let resp = Response::to(&req, 403, reason);
                return self.respond(id, resp, now);
            }
            Authentication::BadRequest { reason } => {
                let resp = Response::to(&req, 400, reason);
                return self.respond(id, resp, now);
            }
            _ => return self.respond_code(id, &req, 404, now),
        };
        if caller == callee {
            return self.respond_code(id, &req, 486, now);
        }
        if let Err(e) = offer_in(&req) {
            return self.refuse_offer(id, &req, &e, now);
        }
        let Some(dial) = self.phone_dial(&tenant, &callee, &caller, self.unix(now)) else {
            tracing::info!(%caller, %callee, "internal call: the extension is not registered");
            return self.respond_code(id, &req, 480, now);
        };
        let Some(center) = self.centers.tenant(&tenant) else {
            return self.respond_code(id, &req, 404, now);
        };
        let on = |account: &str| {
            center
                .agents
                .iter()
                .find(|(_, h)| matches!(&h.device, Device::Sip { account: a } if a == account))
                .map(|(id, h)| (id.clone(), h.actor.clone()))
        };
        let (callee_agent, caller_agent) = (on(&callee), on(&caller));
        let (clock, records, utc_offset) =
            (center.clock, center.records.clone(), center.utc_offset);
        let call = CallId(rand::random());
        // Both agents are on this call for the queues; a callee on a call
        // already is busy.
        let mut busy = Vec::new();
        if let Some((agent, actor)) = &callee_agent {
            match ractor::call!(actor, |reply| AgentMsg::Dial { call, reply }) {
                Ok(Ok(())) => busy.push(actor.clone()),
                Ok(Err(switchboard_actors::agent::AgentError::SignedOut)) => {}
                Ok(Err(e)) => {
                    tracing::info!(%callee, %agent, error = %e, "internal call: the callee is busy");
                    return self.respond_code(id, &req, 486, now);
                }
                Err(_) => return self.respond_code(id, &req, 503, now),
            }
        }
        if let Some((_, actor)) = &caller_agent {
            if let Ok(Ok(())) = ractor::call!(actor, |reply| AgentMsg::Dial { call, reply }) {
                busy.push(actor.clone());
            }
        }
        let free = |busy: &[AgentRef]| {
            for a in busy {
                let _ = a.cast(AgentMsg::HungUp {
                    call,
                    wrap_up: Duration::ZERO,
                });
            }
        };
        let name = format!("caller-{call}@switchboard");
        let Answering {
            leg,
            session,
            local,
            sdp,
            dialog,
        } = match self
            .answer_invite(&req, call, name, &callee, source, transport)
            .await
        {
            Ok(a) => a,
            Err(resp) => {
                free(&busy);
                return self.respond(id, resp, now);
            }
        };
        let target = Target::Agent(
            callee_agent
                .as_ref()
                .map_or_else(|| AgentId(callee.clone()), |(a, _)| a.clone()),
        );
        let name = format!("internal-{call}@switchboard");
        let Some(out) = self.send_invite(call, &target, name, dial, now).await else {
            free(&busy);
            return self.respond_code(id, &req, 503, now);
        };
        let setup = InternalSetup {
            tenant: tenant.clone(),
            node: self.node.clone(),
            utc_offset_minutes: utc_offset,
            call,
            caller: caller.clone(),
            caller_agent: caller_agent.map(|(a, _)| a),
            callee: callee.clone(),
            callee_agent: callee_agent.map(|(a, _)| a),
        };
        let shell = InternalActor {
            call,
            clock,
            telephony: self.ic_tx.clone(),
            agents: busy.clone(),
            records,
        };
        let actor = match Actor::spawn(None, shell, InternalCall::start(setup, clock.now())).await {
            Ok((a, done)) => {
                self.watch_call_actor(call, &a, done);
                a
            }
            Err(e) => {
                free(&busy);
                tracing::warn!(error = %e, "internal call actor did not start");
                let cancel = cancel_for(&out.invite);
                let _ = self
                    .layer
                    .send_request(&cancel, out.dest, out.transport, now);
                return self.respond_code(id, &req, 500, now);
            }
        };
        tracing::info!(%call, %caller, %callee, "internal call: ringing the extension");
        let dialog_id = dialog.id.clone();
        self.invites.insert(id, dialog_id.clone());
        self.calls.insert(
            dialog_id.clone(),
            Call {
                dialog,
                invite: Some((id, req)),
                source,
                transport,
                last_2xx: Vec::new(),
                retransmit: None,
                media: None,
                cc: Some((call, Party::Customer)),
                pending_offer: None,
            },
        );
        let m = crate::node::metrics::get();
        m.calls_active.inc();
        m.actors.with_label_values(&["call"]).inc();
        self.ic.insert(
            call,
            IcCall {
                actor,
                caller: Some(dialog_id),
                caller_leg: leg,
                caller_sdp: sdp,
                caller_session: (session, local),
                callee: Some(out),
                agents: busy,
                finished: false,
            },
        );
    }

    /// Whether `call` is an internal call.
    pub(in crate::node::core) fn is_internal(&self, call: CallId) -> bool {
        self.ic.contains_key(&call)
    }

    /// A response to the callee's INVITE (`None`: none at all).
    pub(in crate::node::core) fn handle_ic_response(
        &mut self,
        tx: TransactionId,
        call: CallId,
        target: Target,
        resp: Option<Response>,
        now: Instant,
    ) {
        let code = resp.as_ref().map_or(408, |r| r.code);
        let Some(c) = self.ic.get_mut(&call) else {
            return;
        };
        let actor = c.actor.clone();
        if code < 200 {
            if matches!(code, 180 | 183) {
                // The caller hears its own phone's ring-back.
                let pending = c
                    .caller
                    .as_ref()
                    .and_then(|d| self.calls.get(d))
                    .and_then(|x| {
                        let (tx, req) = x.invite.as_ref()?;
                        Some((*tx, x.dialog.response(req, 180, "Ringing")))
                    });
                if let Some((tx, ringing)) = pending {
                    self.respond(tx, ringing, now);
                }
            }
            return;
        }
        let answered = match self.final_outcome(tx, call, &target, resp.as_ref(), now) {
            None => return,
            Some(Outcome::Refused { code, cancelled }) => {
                if let Some(c) = self.ic.get_mut(&call) {
                    c.callee = None;
                }
                tracing::info!(%call, code, "internal call: the extension did not take it");
                if !cancelled {
                    let _ = actor.cast(InternalMsg::CalleeFailed(code));
                }
                self.forget_ic_if_done(call);
                return;
            }
            Some(Outcome::Answered(a)) => *a,
        };
        let id = answered.dialog.id.clone();
        let cancelled = self.keep_answered(answered, (call, Party::External));
        if cancelled {
            if let Some(c) = self.ic.get_mut(&call) {
                c.callee = None;
            }
            self.hang_up(&id, now);
            self.forget_ic_if_done(call);
            return;
        }
        let _ = actor.cast(InternalMsg::CalleeAnswered);
    }

    /// What an internal call's actor asks of its legs.
    pub(in crate::node::core) fn handle_internal_cmd(
        &mut self,
        call: CallId,
        cmd: InternalCommand,
        now: Instant,
    ) {
        let Some(c) = self.ic.get_mut(&call) else {
            return;
        };
        match cmd {
            InternalCommand::AnswerAndBridge => {
                let sdp = c.caller_sdp.clone();
                let Some(callee) = c.callee.as_ref() else {
                    return;
                };
                c.caller_leg.send(LegCmd::Connect(callee.leg.inbox()));
                callee.leg.send(LegCmd::Connect(c.caller_leg.inbox()));
                let file = format!("recordings/{call}.wav");
                c.caller_leg.send(LegCmd::RecordCall {
                    path: self.data_dir.join(&file),
                });
                let _ = c.actor.cast(InternalMsg::Recording(file));
                let Some(d) = c.caller.clone() else {
                    return;
                };
                self.answer_caller(&d, sdp, now);
                tracing::info!(%call, "internal call answered: bridged");
            }
            InternalCommand::RefuseCaller(code) => {
                if let Some(d) = c.caller.take() {
                    if let Some(mut x) = self.calls.remove(&d) {
                        if let Some((tx, req)) = x.invite.take() {
                            let resp = x.dialog.response(&req, code, reason_phrase(code));
                            self.respond(tx, resp, now);
                        }
                    }
                }
                self.forget_ic_if_done(call);
            }
            InternalCommand::HangUpCaller => {
                if let Some(d) = c.caller.take() {
                    self.hang_up(&d, now);
                }
                self.forget_ic_if_done(call);
            }
            InternalCommand::HangUpCallee => {
                let Some(out) = c.callee.as_mut() else {
                    return;
                };
                out.cancelled = true;
                match out.dialog.clone() {
                    Some(d) => {
                        c.callee = None;
                        self.hang_up(&d, now);
                    }
                    None => {
                        // The leg stays until the INVITE's 487.
                        let cancel = cancel_for(&out.invite);
                        let (dest, transport) = (out.dest, out.transport);
                        let _ = self.layer.send_request(&cancel, dest, transport, now);
                    }
                }
                self.forget_ic_if_done(call);
            }
            InternalCommand::Finished => {
                c.finished = true;
                self.forget_ic_if_done(call);
            }
        }
    }

    /// The 200 to the caller's waiting INVITE, resent until its ACK.
    fn answer_caller(&mut self, d: &DialogId, sdp: String, now: Instant) {
        let (t1, t2) = (self.timers.t1, self.timers.t2);
        let Some(x) = self.calls.get_mut(d) else {
            return;
        };
        let Some((tx, req)) = x.invite.take() else {
            return;
        };
        let mut ok = x.dialog.response(&req, 200, "OK");
        ok.headers.push("Allow", ALLOW);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = sdp.into_bytes().into();
        x.last_2xx = ok.to_bytes();
        x.retransmit = (!x.transport.is_reliable()).then(|| Retransmit2xx::new(now, t1, t2));
        self.unacked.insert(d.clone());
        self.respond(tx, ok, now);
    }

    /// A leg's peer sent BYE (`Customer`: the caller, else the callee).
    pub(in crate::node::core) fn ic_leg_hung_up(&mut self, call: CallId, party: Party) {
        let Some(c) = self.ic.get_mut(&call) else {
            return;
        };
        let msg = match party {
            Party::Customer => {
                c.caller = None;
                InternalMsg::CallerHungUp
            }
            _ => {
                c.callee = None;
                InternalMsg::CalleeHungUp
            }
        };
        let _ = c.actor.cast(msg);
        self.forget_ic_if_done(call);
    }

    /// The caller's CANCEL was answered (487) and its dialog dropped.
    pub(in crate::node::core) fn ic_cancelled(&mut self, call: CallId) {
        if let Some(c) = self.ic.get_mut(&call) {
            c.caller = None;
            let _ = c.actor.cast(InternalMsg::CallerCancelled);
        }
    }

    /// The actor stopped. Before its record (it failed), the node ends
    /// the legs (the agents are freed by the actor's end of the call).
    /// The actor of internal call `call`, if it is one.
    pub(super) fn ic_actor(&self, call: CallId) -> Option<ractor::ActorId> {
        self.ic.get(&call).map(|c| c.actor.get_id())
    }

    pub(in crate::node::core) fn ic_actor_ended(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.ic.get_mut(&call) else {
            return;
        };
        if c.finished {
            return;
        }
        tracing::error!(%call, "the internal call's actor failed: the node ends the call");
        c.finished = true;
        for a in &c.agents {
            let _ = a.cast(AgentMsg::HungUp {
                call,
                wrap_up: Duration::ZERO,
            });
        }
        self.handle_internal_cmd(call, InternalCommand::HangUpCallee, now);
        let pending = self
            .ic
            .get(&call)
            .and_then(|c| c.caller.as_ref())
            .and_then(|d| self.calls.get(d))
            .is_some_and(|x| x.invite.is_some());
        let end = if pending {
            InternalCommand::RefuseCaller(500)
        } else {
            InternalCommand::HangUpCaller
        };
        self.handle_internal_cmd(call, end, now);
    }

    /// Drops an internal call once its record is written and no leg is
    /// left.
    fn forget_ic_if_done(&mut self, call: CallId) {
        if self
            .ic
            .get(&call)
            .is_some_and(|c| c.finished && c.caller.is_none() && c.callee.is_none())
        {
            self.ic.remove(&call);
            let m = crate::node::metrics::get();
            m.calls_active.dec();
            m.actors.with_label_values(&["call"]).dec();
        }
    }
}
