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

use super::*;
use switchboard_actors::shell::DIRECT_RING_TIMEOUT;
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
}

fn target_of(to: &TransferTarget) -> (&'static str, String) {
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
        let found = self.cc.iter().find(|(_, c)| {
            &c.tenant == tenant
                && c.customer.is_some()
                && c.agents.get(agent).is_some_and(|a| a.dialog.is_some())
        });
        let Some((&call, c)) = found else {
            let outbound = self
                .ob
                .values()
                .any(|c| &c.tenant == tenant && &c.agent == agent);
            return Err(LiveError::Conflict(
                if outbound {
                    "outbound calls cannot be consulted on yet"
                } else {
                    "the agent is not talking to a customer"
                }
                .into(),
            ));
        };
        if let ConsultOp::Start(to) = op {
            return self.consult_start(tenant, call, agent, to, now).await;
        }
        let Some(k) = c.consult.as_ref() else {
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
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(c) = self.cc.get(&call) else {
            return Err(LiveError::Conflict("the call ended".into()));
        };
        if c.consult.is_some() {
            return Err(LiveError::Conflict(
                "the agent is consulting already".into(),
            ));
        }
        if c.monitor.is_some() {
            return Err(LiveError::Conflict(
                "a supervisor is on the call: no consultation meanwhile".into(),
            ));
        }
        let was_held = c.held;
        let Some(center) = self.centers.tenant(tenant) else {
            return Err(LiveError::NotFound("no such tenant".into()));
        };
        let trunk = center.trunk.clone();
        let shown = c.caller.clone();
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
                let dial = match &handle.device {
                    Device::Sip { account } => {
                        self.phone_dial(tenant, account, &shown, self.unix(now))
                    }
                    Device::Mobile { number } => match &trunk {
                        Some(t) => self.trunk_dial(t, number).await,
                        None => None,
                    },
                };
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
            if let Err(e) = self.set_hold(tenant, agent, true, now) {
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
                let _ = self.set_hold(tenant, agent, false, now);
            }
            return Err(LiveError::Unavailable(
                "the consulted party could not be called".into(),
            ));
        };
        let (kind, target) = target_of(&to);
        tracing::info!(%call, %agent, to = kind, %target, "consulting");
        let id = rand::random();
        if let Some(c) = self.cc.get_mut(&call) {
            c.consult = Some(Box::new(Consult {
                agent: agent.clone(),
                to,
                leg,
                on_call,
                conference: false,
                was_held,
                id,
            }));
        }
        let notices = self.notices_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DIRECT_RING_TIMEOUT).await;
            let _ = notices.send(CallNotice::ConsultTimeout { call, id }).await;
        });
        self.consult_event(call, "ringing");
        Ok(())
    }

    /// The consulted party's INVITE was answered (`Some`) or not.
    pub(super) fn consult_answered(&mut self, call: CallId, dialog: Option<Dialog>, now: Instant) {
        let Some(k) = self.cc.get(&call).and_then(|c| c.consult.as_ref()) else {
            return;
        };
        let Some(dialog) = dialog else {
            tracing::info!(%call, "the consulted party did not answer");
            return self.consult_end(call, now);
        };
        let (dest, transport, cancelled) = (k.leg.dest, k.leg.transport, k.leg.cancelled);
        let id = dialog.id.clone();
        self.add_out_dialog(dialog, dest, transport, (call, Party::Consulted));
        if cancelled {
            self.hang_up(&id, now);
            return;
        }
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let (Some(k), Some(agent)) = (
            c.consult.as_ref(),
            c.consult.as_ref().and_then(|k| c.agents.get(&k.agent)),
        ) else {
            return;
        };
        // Agent and target hear each other; the held customer neither.
        agent.leg.send(LegCmd::Connect(k.leg.leg.inbox()));
        k.leg.leg.send(LegCmd::Connect(agent.leg.inbox()));
        tracing::info!(%call, agent = %k.agent, "the consulted party answered");
        self.consult_event(call, "talking");
    }

    /// Off hold, and everyone hears the other two.
    fn consult_conference(&mut self, call: CallId, now: Instant) -> Result<(), LiveError> {
        let Some((tenant, agent, held)) = self.cc.get(&call).and_then(|c| {
            let k = c.consult.as_ref()?;
            Some((c.tenant.clone(), k.agent.clone(), c.held))
        }) else {
            return Err(LiveError::Conflict("the agent is not consulting".into()));
        };
        if held {
            self.set_hold(&tenant, &agent, false, now)?;
        }
        let Some(c) = self.cc.get_mut(&call) else {
            return Ok(());
        };
        let Some(k) = c.consult.as_mut() else {
            return Ok(());
        };
        k.conference = true;
        let (Some(k), Some(a)) = (
            c.consult.as_ref(),
            c.consult.as_ref().and_then(|k| c.agents.get(&k.agent)),
        ) else {
            return Ok(());
        };
        let (customer, agent_leg, third) = (&c.customer_leg, &a.leg, &k.leg.leg);
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
        let Some((actor, tenant, agent, to, held)) = self.cc.get(&call).and_then(|c| {
            let k = c.consult.as_ref()?;
            Some((
                c.actor.clone(),
                c.tenant.clone(),
                k.agent.clone(),
                k.to.clone(),
                c.held,
            ))
        }) else {
            return Err(LiveError::Conflict("the agent is not consulting".into()));
        };
        let asked = match &to {
            TransferTarget::Agent(a) => ractor::call!(actor, |reply| CallMsg::HandOver {
                to: a.clone(),
                how: TransferKind::Consulted,
                reply
            }),
            TransferTarget::Number(n) => ractor::call!(actor, |reply| CallMsg::HandedOut {
                number: n.clone(),
                reply
            }),
            TransferTarget::Group(_) => return Err(LiveError::Conflict("no such target".into())),
        }
        .map_err(|e| LiveError::Unavailable(format!("the call did not answer: {e}")))?;
        asked.map_err(|e| LiveError::Conflict(e.to_string()))?;
        if held {
            // The agent's leg ends at the call's word: the customer is
            // taken off hold through its own dialog.
            let _ = self.set_hold(&tenant, &agent, false, now);
        }
        let Some(c) = self.cc.get_mut(&call) else {
            return Ok(());
        };
        let Some(k) = c.consult.take().map(|b| *b) else {
            return Ok(());
        };
        let party = match &to {
            TransferTarget::Agent(a) => Party::Agent(a.clone()),
            _ => Party::External,
        };
        if let Some(d) = &k.leg.dialog {
            if let Some(entry) = self.calls.get_mut(d) {
                entry.cc = Some((call, party));
            }
        }
        for a in c.agents.values() {
            a.leg.send(LegCmd::Listeners(Vec::new()));
            a.leg.send(LegCmd::Mix(false));
        }
        let (customer, third) = (&c.customer_leg, &k.leg.leg);
        customer.send(LegCmd::Listeners(Vec::new()));
        third.send(LegCmd::Listeners(Vec::new()));
        customer.send(LegCmd::Mix(false));
        third.send(LegCmd::Mix(false));
        customer.send(LegCmd::Connect(third.inbox()));
        third.send(LegCmd::Connect(customer.inbox()));
        let (kind, target) = target_of(&to);
        match &to {
            TransferTarget::Agent(a) => {
                c.agents.insert(a.clone(), k.leg);
            }
            _ => c.external = Some(k.leg),
        }
        tracing::info!(%call, %agent, to = kind, %target, "transferred after consulting");
        self.publish_consult(&tenant, call, &agent, &to, "transferred");
        Ok(())
    }

    /// Ends the consultation: the target's leg goes (BYE, or CANCEL while
    /// it rings), agent and customer talk again.
    pub(super) fn consult_end(&mut self, call: CallId, now: Instant) {
        let Some(k) = self.cc.get_mut(&call).and_then(|c| c.consult.take()) else {
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
        let ringing = self.cc.get(&call).is_some_and(|c| {
            c.consult
                .as_ref()
                .is_some_and(|k| k.id == id && k.leg.dialog.is_none())
        });
        if ringing {
            tracing::info!(%call, "the consulted party did not answer in time");
            self.consult_end(call, now);
        }
    }

    /// The consulted party hung up.
    pub(super) fn consult_hung_up(&mut self, call: CallId, now: Instant) {
        if let Some(k) = self.cc.get_mut(&call).and_then(|c| c.consult.take()) {
            tracing::info!(%call, agent = %k.agent, "the consulted party hung up");
            self.consult_over(call, *k, now);
        }
    }

    /// Ends the consultation once the agent or the customer has left.
    pub(super) fn check_consult(&mut self, call: CallId, now: Instant) {
        let gone = self.cc.get(&call).is_some_and(|c| {
            c.consult.as_ref().is_some_and(|k| {
                c.customer.is_none() || c.agents.get(&k.agent).is_none_or(|a| a.dialog.is_none())
            })
        });
        if gone {
            self.consult_end(call, now);
        }
    }

    /// What follows the end of consultation `k` (its leg is gone).
    fn consult_over(&mut self, call: CallId, k: Consult, now: Instant) {
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let (tenant, held) = (c.tenant.clone(), c.held);
        if let Some(a) = c.agents.get(&k.agent) {
            let customer = &c.customer_leg;
            customer.send(LegCmd::Listeners(Vec::new()));
            customer.send(LegCmd::Mix(false));
            a.leg.send(LegCmd::Listeners(Vec::new()));
            a.leg.send(LegCmd::Mix(false));
            a.leg.send(LegCmd::Connect(customer.inbox()));
            if held && !k.was_held && c.customer.is_some() {
                let _ = self.set_hold(&tenant, &k.agent, false, now);
            }
        }
        if k.on_call {
            if let TransferTarget::Agent(a) = &k.to {
                self.release_agent(&tenant, a, call);
            }
        }
        self.publish_consult(&tenant, call, &k.agent, &k.to, "ended");
        self.forget_if_done(call);
    }

    fn consult_event(&self, call: CallId, state: &str) {
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        if let Some(k) = c.consult.as_ref() {
            self.publish_consult(&c.tenant, call, &k.agent, &k.to, state);
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
