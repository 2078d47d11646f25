//! Consultation from the phone bar (咨询), and what it leads to: the
//! talking agent puts the customer on hold (music) and rings another
//! agent's device or an outside number through the trunk; once the target
//! answers the agent and the target talk while the customer waits. Then:
//!
//! - transfer (咨询转): the customer goes to the target, the agent leaves
//!   and wraps up; a consulted agent is the call's agent from then on, a
//!   consulted number takes the call out of the center (its record ends,
//!   transferred), as a blind transfer to a number does;
//! - conference (三方通话): the customer comes off hold and each of the
//!   three hears the other two, mixed;
//! - end: the target's leg ends and agent and customer talk again (also
//!   when the target hangs up, or does not answer).
//!
//! A consulted party rings at most [`DIRECT_RING_TIMEOUT`] (as an agent a
//! call is transferred to does); then the consultation ends as if the
//! agent had ended it. A consultation ends with the call, or when the
//! agent leaves it. It and
//! a supervisor's monitoring exclude each other (both rewire the legs).
//!
//! Inbound and outbound calls alike: the customer's leg is the one the
//! customer opened, or the one we opened through the trunk. A blind
//! transfer of an outbound call to an agent or a number (one to a
//! group goes to its queue, see `requeue`) is a
//! consultation too, one the agent leaves at once: the customer hears
//! music while the target rings and is handed over when it answers; if it
//! does not, the customer's leg ends (`transfer_failed`).

use super::*;
use switchboard_actors::agent_ref::AgentRef;
use switchboard_actors::call::TransferError;
use switchboard_actors::shell::{OutboundMsg, DIRECT_RING_TIMEOUT};
use switchboard_http::live::{ConsultOp, LiveError};
use switchboard_storage::model::{TransferKind, TransferTarget};

/// A consultation of the talking agent.
pub(in crate::node::core) struct Consult {
    /// The agent who consults.
    pub(super) agent: AgentId,
    pub(super) to: TransferTarget,
    pub(super) leg: OutLeg,
    /// A consulted agent's actor is on this call (so no queue offers it
    /// another) until the consultation ends.
    on_call: bool,
    /// All three hear each other.
    conference: bool,
    /// The customer was on hold before: left so when it ends.
    was_held: bool,
    /// Tells this consultation's ring timeout from a later one's.
    id: u64,
    /// A blind transfer of an outbound call: the agent has left; the
    /// target takes the customer as soon as it answers.
    blind: bool,
}

pub(super) fn target_of(to: &TransferTarget) -> (&'static str, String) {
    match to {
        TransferTarget::Agent(a) => ("agent", a.0.clone()),
        TransferTarget::Group(g) => ("group", g.clone()),
        TransferTarget::Number(n) => ("number", n.clone()),
    }
}

impl SipCore {
    /// A phone-bar consultation request of `agent`.
    pub(in crate::node::core) async fn consult(
        &mut self,
        tenant: &TenantId,
        agent: &AgentId,
        op: ConsultOp,
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(call) = self.talking_call(tenant, agent) else {
            return Err(LiveError::Conflict(
                "the agent is not talking to a customer".into(),
            ));
        };
        if let ConsultOp::Start(to) = op {
            return self
                .consult_start(tenant, call, agent, to, false, now)
                .await;
        }
        let Some(k) = self.consult_of(call) else {
            return Err(LiveError::Conflict("the agent is not consulting".into()));
        };
        if k.leg.dialog.is_none() {
            if op == ConsultOp::End {
                self.consult_end(call, now);
                return Ok(());
            }
            return Err(LiveError::Conflict(
                "the consulted party has not answered yet".into(),
            ));
        }
        match op {
            ConsultOp::Transfer => self.consult_transfer(call, now).await,
            ConsultOp::Conference if k.conference => Err(LiveError::Conflict(
                "the call is a three-way call already".into(),
            )),
            ConsultOp::Conference => self.consult_conference(call, now),
            ConsultOp::End | ConsultOp::Start(_) => {
                self.consult_end(call, now);
                Ok(())
            }
        }
    }

    async fn consult_start(
        &mut self,
        tenant: &TenantId,
        call: CallId,
        agent: &AgentId,
        to: TransferTarget,
        blind: bool,
        now: Instant,
    ) -> Result<(), LiveError> {
        let (consulting, monitored, was_held, shown) =
            match (self.cc.get(&call), self.ob.get(&call)) {
                (Some(c), _) => (
                    c.consult.is_some(),
                    c.monitor.is_some(),
                    c.held,
                    c.caller.clone(),
                ),
                (None, Some(c)) => (
                    c.consult.is_some(),
                    c.monitor.is_some(),
                    c.held,
                    c.number.clone(),
                ),
                (None, None) => return Err(LiveError::Conflict("the call ended".into())),
            };
        if consulting {
            return Err(LiveError::Conflict(
                "the agent is consulting already".into(),
            ));
        }
        if monitored {
            return Err(LiveError::Conflict(
                "a supervisor is on the call: no consultation meanwhile".into(),
            ));
        }
        let Some(center) = self.centers.tenant(tenant) else {
            return Err(LiveError::NotFound("no such tenant".into()));
        };
        let trunk = center.trunk.clone();
        let (dial, on_call) = match &to {
            TransferTarget::Agent(a) if a == agent => {
                return Err(LiveError::Conflict("an agent cannot consult itself".into()))
            }
            TransferTarget::Agent(a) => {
                let Some(handle) = center.agents.get(a).cloned() else {
                    return Err(LiveError::Invalid {
                        field: "agent".into(),
                        message: format!("no agent {a}"),
                    });
                };
                // On this call for the queues while consulted.
                let on_it = ractor::call!(handle.actor, |reply| AgentMsg::Dial { call, reply })
                    .map_err(|e| LiveError::Unavailable(e.to_string()))?;
                if let Err(e) = on_it {
                    return Err(LiveError::Conflict(format!("agent {a}: {e}")));
                }
                let dial = self
                    .device_dial(tenant, &handle.device, &shown, trunk.as_ref(), now)
                    .await;
                if dial.is_none() {
                    self.release_agent(tenant, a, call);
                    return Err(LiveError::Conflict(format!(
                        "agent {a}'s phone cannot be reached (not registered?)"
                    )));
                }
                (dial, true)
            }
            TransferTarget::Number(n) => {
                let trunk = trunk.filter(|_| center.allow_external);
                let Some(t) = trunk else {
                    return Err(LiveError::Conflict(
                        "calls to outside numbers are not allowed for this tenant (or it has no trunk)"
                            .into(),
                    ));
                };
                (self.trunk_dial(&t, n).await, false)
            }
            TransferTarget::Group(_) => {
                return Err(LiveError::Invalid {
                    field: "agent".into(),
                    message: "consult an agent or a number".into(),
                })
            }
        };
        let release = |core: &Self| {
            if let TransferTarget::Agent(a) = &to {
                core.release_agent(tenant, a, call);
            }
        };
        let Some(dial) = dial else {
            release(self);
            return Err(LiveError::Unavailable(
                "the trunk's gateway cannot be reached".into(),
            ));
        };
        if !was_held {
            if let Err(e) = self.hold_call(call, agent, true, now) {
                release(self);
                return Err(e);
            }
        }
        let name = format!("consult-{agent}-{call}@switchboard");
        let Some(leg) = self
            .send_invite(call, &Target::Consulted, name, dial, now)
            .await
        else {
            release(self);
            if !was_held {
                let _ = self.hold_call(call, agent, false, now);
            }
            return Err(LiveError::Unavailable(
                "the consulted party could not be called".into(),
            ));
        };
        let (kind, target) = target_of(&to);
        if blind {
            tracing::info!(%call, %agent, to = kind, %target, "sending the customer on");
        } else {
            tracing::info!(%call, %agent, to = kind, %target, "consulting");
        }
        let id = rand::random();
        if let Some(slot) = self.consult_mut(call) {
            *slot = Some(Box::new(Consult {
                agent: agent.clone(),
                to,
                leg,
                on_call,
                conference: false,
                was_held,
                id,
                blind,
            }));
        }
        let notices = self.notices_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DIRECT_RING_TIMEOUT).await;
            let _ = notices.send(CallNotice::ConsultTimeout { call, id }).await;
        });
        if !blind {
            self.consult_event(call, "ringing");
        }
        Ok(())
    }

    /// A phone-bar blind transfer of an outbound call: the target is rung
    /// (as a consultation is), the call's machine records the transfer and
    /// frees the agent, whose leg ends now.
    pub(super) async fn send_on(
        &mut self,
        tenant: &TenantId,
        call: CallId,
        agent: &AgentId,
        to: TransferTarget,
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(actor) = self.ob.get(&call).map(|c| c.actor.clone()) else {
            return Err(LiveError::Conflict("the call ended".into()));
        };
        let taker = match &to {
            TransferTarget::Agent(a) if a == agent => {
                return Err(LiveError::Conflict(TransferError::ToItself.to_string()))
            }
            TransferTarget::Agent(a) => match self.agent_actor(tenant, a) {
                Some(x) => Some(x),
                None => {
                    return Err(LiveError::Invalid {
                        field: "agent".into(),
                        message: format!("no agent {a}"),
                    })
                }
            },
            TransferTarget::Group(g) => {
                return self
                    .queue_outbound(tenant, call, agent, g.clone(), now)
                    .await
            }
            TransferTarget::Number(_) => None,
        };
        self.consult_start(tenant, call, agent, to.clone(), true, now)
            .await?;
        let asked = ractor::call!(actor, |reply| OutboundMsg::Transfer {
            to: to.clone(),
            agent: taker,
            reply
        });
        let refused = match asked {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(LiveError::Conflict(e.to_string())),
            Err(e) => Some(LiveError::Unavailable(e.to_string())),
        };
        if let Some(e) = refused {
            // The agent stays: back to it, off hold, as after a
            // consultation.
            if let Some(k) = self.consult_mut(call).and_then(Option::as_mut) {
                k.blind = false;
            }
            self.consult_end(call, now);
            return Err(e);
        }
        // The agent is off the call.
        let old = self.ob.get_mut(&call).and_then(|c| c.agent_leg.take());
        if let Some(d) = old.and_then(|o| o.dialog) {
            self.hang_up(&d, now);
        }
        let (kind, target) = target_of(&to);
        tracing::info!(%call, %agent, to = kind, %target, "transferred");
        self.hub
            .publish(tenant, transferred(agent, call, kind, target));
        Ok(())
    }

    /// The consulted party's INVITE was answered (`Some`) or not.
    pub(super) fn consult_answered(&mut self, call: CallId, dialog: Option<Dialog>, now: Instant) {
        let Some(k) = self.consult_of(call) else {
            return;
        };
        let Some(dialog) = dialog else {
            tracing::info!(%call, "the consulted party did not answer");
            return self.consult_end(call, now);
        };
        let (dest, transport, cancelled, blind) =
            (k.leg.dest, k.leg.transport, k.leg.cancelled, k.blind);
        let id = dialog.id.clone();
        self.add_out_dialog(dialog, dest, transport, (call, Party::Consulted));
        if cancelled {
            self.hang_up(&id, now);
            return;
        }
        if blind {
            return self.sent_on(call, now);
        }
        let Some(k) = self.consult_of(call) else {
            return;
        };
        let Some(agent) = self.agent_leg_of(call, &k.agent) else {
            return;
        };
        // Agent and target hear each other; the held customer neither.
        agent.leg.send(LegCmd::Connect(k.leg.leg.inbox()));
        k.leg.leg.send(LegCmd::Connect(agent.leg.inbox()));
        tracing::info!(%call, agent = %k.agent, "the consulted party answered");
        self.consult_event(call, "talking");
    }

    /// The target of an outbound call's blind transfer answered: it takes
    /// the customer, off hold.
    fn sent_on(&mut self, call: CallId, now: Instant) {
        let Some(k) = self.consult_of(call) else {
            return;
        };
        let (agent, held) = (k.agent.clone(), self.held_of(call));
        if held {
            let _ = self.hold_call(call, &agent, false, now);
        }
        self.hand_to_target(call, now);
        if let Some(c) = self.ob.get(&call) {
            let _ = c.actor.cast(OutboundMsg::TransferAnswered);
        }
        tracing::info!(%call, "the customer was sent on");
    }

    /// Off hold, and everyone hears the other two.
    fn consult_conference(&mut self, call: CallId, now: Instant) -> Result<(), LiveError> {
        let Some(agent) = self.consult_of(call).map(|k| k.agent.clone()) else {
            return Err(LiveError::Conflict("the agent is not consulting".into()));
        };
        if self.held_of(call) {
            self.hold_call(call, &agent, false, now)?;
        }
        if let Some(k) = self.consult_mut(call).and_then(Option::as_mut) {
            k.conference = true;
        }
        let (Some(k), Some(a), Some((customer, _))) = (
            self.consult_of(call),
            self.agent_leg_of(call, &agent),
            self.customer_of(call),
        ) else {
            return Ok(());
        };
        let (agent_leg, third) = (&a.leg, &k.leg.leg);
        // Each relays to its peer and copies to the third: customer ↔
        // agent, the target's peer is the agent, and each mixes.
        agent_leg.send(LegCmd::Connect(customer.inbox()));
        customer.send(LegCmd::Listeners(vec![third.inbox()]));
        agent_leg.send(LegCmd::Listeners(vec![third.inbox()]));
        third.send(LegCmd::Listeners(vec![customer.inbox()]));
        for l in [customer, agent_leg, third] {
            l.send(LegCmd::Mix(true));
        }
        tracing::info!(%call, %agent, "three-way call");
        self.consult_event(call, "conference");
        Ok(())
    }

    /// The customer goes to the consulted party; the agent leaves.
    async fn consult_transfer(&mut self, call: CallId, now: Instant) -> Result<(), LiveError> {
        let Some((tenant, agent, to)) = self
            .consult_of(call)
            .and_then(|k| Some((self.tenant_of(call)?, k.agent.clone(), k.to.clone())))
        else {
            return Err(LiveError::Conflict("the agent is not consulting".into()));
        };
        self.hand_over_to(&tenant, call, &to, TransferKind::Consulted)
            .await?;
        if self.held_of(call) {
            // The customer is taken off hold through its own dialog.
            let _ = self.hold_call(call, &agent, false, now);
        }
        self.hand_to_target(call, now);
        let (kind, target) = target_of(&to);
        tracing::info!(%call, %agent, to = kind, %target, "transferred after consulting");
        self.publish_consult(&tenant, call, &agent, &to, "transferred");
        Ok(())
    }

    /// Asks the call's machine to hand the customer to `to` (an agent or a
    /// number whose leg is up), after a consultation or a take-over.
    pub(super) async fn hand_over_to(
        &self,
        tenant: &TenantId,
        call: CallId,
        to: &TransferTarget,
        how: TransferKind,
    ) -> Result<(), LiveError> {
        let gone = |e: String| LiveError::Unavailable(format!("the call did not answer: {e}"));
        let asked = match (self.cc.get(&call), self.ob.get(&call), to) {
            (Some(c), _, TransferTarget::Agent(a)) => {
                ractor::call!(c.actor, |reply| CallMsg::HandOver {
                    to: a.clone(),
                    how,
                    reply
                })
                .map_err(|e| gone(e.to_string()))?
            }
            (Some(c), _, TransferTarget::Number(n)) => {
                ractor::call!(c.actor, |reply| CallMsg::HandedOut {
                    number: n.clone(),
                    reply
                })
                .map_err(|e| gone(e.to_string()))?
            }
            (None, Some(c), TransferTarget::Agent(a)) => {
                let Some(agent) = self.agent_actor(tenant, a) else {
                    return Err(LiveError::Conflict(format!("no agent {a}")));
                };
                ractor::call!(c.actor, |reply| OutboundMsg::HandOver {
                    to: a.clone(),
                    agent,
                    how,
                    reply
                })
                .map_err(|e| gone(e.to_string()))?
            }
            (None, Some(c), TransferTarget::Number(n)) => {
                ractor::call!(c.actor, |reply| OutboundMsg::HandedOut {
                    number: n.clone(),
                    reply
                })
                .map_err(|e| gone(e.to_string()))?
            }
            _ => return Err(LiveError::Conflict("no such target".into())),
        };
        asked.map_err(|e| LiveError::Conflict(e.to_string()))
    }

    /// The consulted party takes the customer: their legs are connected
    /// (no mixing left) and its leg is the call's agent or outside leg
    /// from now; an outbound call's former agent's leg ends here (an
    /// inbound call's machine ends it).
    fn hand_to_target(&mut self, call: CallId, now: Instant) {
        let Some(k) = self.consult_mut(call).and_then(Option::take).map(|b| *b) else {
            return;
        };
        let party = match &k.to {
            TransferTarget::Agent(a) => Party::Agent(a.clone()),
            _ => Party::External,
        };
        if let Some(d) = &k.leg.dialog {
            if let Some(entry) = self.calls.get_mut(d) {
                entry.cc = Some((call, party));
            }
        }
        if let Some((customer, agents)) = self.legs_of(call) {
            let third = &k.leg.leg;
            for l in agents.iter().map(|(_, l)| *l).chain([customer, third]) {
                l.send(LegCmd::Listeners(Vec::new()));
                l.send(LegCmd::Mix(false));
            }
            customer.send(LegCmd::Connect(third.inbox()));
            third.send(LegCmd::Connect(customer.inbox()));
        }
        let mut gone = None;
        if let Some(c) = self.cc.get_mut(&call) {
            match &k.to {
                TransferTarget::Agent(a) => {
                    c.agents.insert(a.clone(), k.leg);
                }
                _ => c.external = Some(k.leg),
            }
        } else if let Some(c) = self.ob.get_mut(&call) {
            match &k.to {
                TransferTarget::Agent(a) => {
                    gone = c.agent_leg.replace(k.leg);
                    c.agent = a.clone();
                }
                _ => {
                    gone = c.agent_leg.take();
                    c.external = Some(k.leg);
                }
            }
        }
        if let Some(d) = gone.and_then(|o| o.dialog) {
            self.hang_up(&d, now);
        }
    }

    /// Ends the consultation: the target's leg goes (BYE, or CANCEL while
    /// it rings), agent and customer talk again.
    pub(super) fn consult_end(&mut self, call: CallId, now: Instant) {
        let Some(k) = self.consult_mut(call).and_then(Option::take) else {
            return;
        };
        let k = *k;
        match k.leg.dialog.clone() {
            Some(d) => self.hang_up(&d, now),
            None => {
                let cancel = cancel_for(&k.leg.invite);
                let _ = self
                    .layer
                    .send_request(&cancel, k.leg.dest, k.leg.transport, now);
            }
        }
        self.consult_over(call, k, now);
    }

    /// Consultation `id` of `call` rang its time: ended if it still rings.
    pub(in crate::node::core) fn consult_timeout(&mut self, call: CallId, id: u64, now: Instant) {
        let ringing = self
            .consult_of(call)
            .is_some_and(|k| k.id == id && k.leg.dialog.is_none());
        if ringing {
            tracing::info!(%call, "the consulted party did not answer in time");
            self.consult_end(call, now);
        }
    }

    /// The consulted party hung up.
    pub(super) fn consult_hung_up(&mut self, call: CallId, now: Instant) {
        if let Some(k) = self.consult_mut(call).and_then(Option::take) {
            tracing::info!(%call, agent = %k.agent, "the consulted party hung up");
            self.consult_over(call, *k, now);
        }
    }

    /// Ends the consultation once the agent (unless it sent the customer
    /// on) or the customer has left.
    pub(super) fn check_consult(&mut self, call: CallId, now: Instant) {
        let Some(k) = self.consult_of(call) else {
            return;
        };
        let customer = self.customer_of(call).is_some_and(|(_, up)| up);
        let agent = k.blind
            || self
                .agent_leg_of(call, &k.agent)
                .is_some_and(|a| a.dialog.is_some());
        if !(customer && agent) {
            self.consult_end(call, now);
        }
    }

    /// What follows the end of consultation `k` (its leg is gone).
    fn consult_over(&mut self, call: CallId, k: Consult, now: Instant) {
        let Some(tenant) = self.tenant_of(call) else {
            return;
        };
        if k.blind {
            // Nobody took the customer.
            if let Some(c) = self.ob.get(&call) {
                let _ = c.actor.cast(OutboundMsg::TransferFailed);
            }
        } else if let (Some(a), Some((customer, up))) =
            (self.agent_leg_of(call, &k.agent), self.customer_of(call))
        {
            customer.send(LegCmd::Listeners(Vec::new()));
            customer.send(LegCmd::Mix(false));
            a.leg.send(LegCmd::Listeners(Vec::new()));
            a.leg.send(LegCmd::Mix(false));
            a.leg.send(LegCmd::Connect(customer.inbox()));
            if self.held_of(call) && !k.was_held && up {
                let _ = self.hold_call(call, &k.agent, false, now);
            }
        }
        if k.on_call {
            if let TransferTarget::Agent(a) = &k.to {
                self.release_agent(&tenant, a, call);
            }
        }
        if !k.blind {
            self.publish_consult(&tenant, call, &k.agent, &k.to, "ended");
        }
        self.forget_if_done(call);
        self.forget_ob_if_done(call);
    }

    fn consult_event(&self, call: CallId, state: &str) {
        if let (Some(k), Some(tenant)) = (self.consult_of(call), self.tenant_of(call)) {
            self.publish_consult(&tenant, call, &k.agent, &k.to, state);
        }
    }

    /// `call.consult` for `agent`'s consultation of `to`, now in `state`.
    fn publish_consult(
        &self,
        tenant: &TenantId,
        call: CallId,
        agent: &AgentId,
        to: &TransferTarget,
        state: &str,
    ) {
        let (kind, target) = target_of(to);
        self.hub.publish(
            tenant,
            Event::CallConsult {
                version: 1,
                agent: agent.0.clone(),
                call: call.to_string(),
                to: kind.into(),
                target,
                state: state.into(),
            },
        );
    }
}

/// `call.transferred`: `agent` sent the customer of `call` on.
pub(super) fn transferred(agent: &AgentId, call: CallId, kind: &str, target: String) -> Event {
    Event::CallTransferred {
        version: 1,
        agent: agent.0.clone(),
        call: call.to_string(),
        to: kind.into(),
        target,
    }
}

impl SipCore {
    /// The call `agent` talks to a customer on, inbound or outbound.
    pub(super) fn talking_call(&self, tenant: &TenantId, agent: &AgentId) -> Option<CallId> {
        let up = |o: Option<&OutLeg>| o.is_some_and(|x| x.dialog.is_some());
        let inbound = self
            .cc
            .iter()
            .find(|(_, c)| &c.tenant == tenant && c.customer.is_some() && up(c.agents.get(agent)));
        if let Some((&call, _)) = inbound {
            return Some(call);
        }
        self.ob
            .iter()
            .find(|(_, c)| {
                &c.tenant == tenant
                    && &c.agent == agent
                    && up(c.agent_leg.as_ref())
                    && up(c.customer.as_ref())
            })
            .map(|(&call, _)| call)
    }

    /// The customer's media leg of `call`, and whether its dialog is up.
    pub(super) fn customer_of(&self, call: CallId) -> Option<(&Leg, bool)> {
        if let Some(c) = self.cc.get(&call) {
            return Some((&c.customer_leg, c.customer.is_some()));
        }
        let x = self.ob.get(&call)?.customer.as_ref()?;
        Some((&x.leg, x.dialog.is_some()))
    }

    /// `agent`'s leg on `call`.
    pub(super) fn agent_leg_of(&self, call: CallId, agent: &AgentId) -> Option<&OutLeg> {
        if let Some(c) = self.cc.get(&call) {
            return c.agents.get(agent);
        }
        let c = self.ob.get(&call)?;
        c.agent_leg.as_ref().filter(|_| &c.agent == agent)
    }

    /// Whether the customer of `call` is on hold.
    pub(super) fn held_of(&self, call: CallId) -> bool {
        match self.cc.get(&call) {
            Some(c) => c.held,
            None => self.ob.get(&call).is_some_and(|c| c.held),
        }
    }

    /// `call`'s consultation, if any.
    pub(super) fn consult_of(&self, call: CallId) -> Option<&Consult> {
        match self.cc.get(&call) {
            Some(c) => c.consult.as_deref(),
            None => self.ob.get(&call).and_then(|c| c.consult.as_deref()),
        }
    }

    /// Where `call` keeps its consultation.
    fn consult_mut(&mut self, call: CallId) -> Option<&mut Option<Box<Consult>>> {
        if let Some(c) = self.cc.get_mut(&call) {
            return Some(&mut c.consult);
        }
        self.ob.get_mut(&call).map(|c| &mut c.consult)
    }

    /// `agent`'s actor in `tenant`.
    fn agent_actor(&self, tenant: &TenantId, agent: &AgentId) -> Option<AgentRef> {
        let center = self.centers.tenant(tenant)?;
        center.agents.get(agent).map(|h| h.actor.clone())
    }
}
