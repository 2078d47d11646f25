//! Outbound calls from the phone bar (外呼): the agent's device is
//! INVITEd first (its registered SIP phone, or its mobile number through
//! the trunk); once it answers, the agent hears ring-back and the
//! customer's number is INVITEd through the tenant's trunk with the
//! tenant's caller ID; the customer's answer bridges the two legs and
//! records the conversation. The [`OutboundActor`] decides; this side
//! does what it asks and tells it what happened on the legs.

use super::*;
use switchboard_actors::agent_ref::AgentRef;
use switchboard_actors::outbound::{OutboundCall, OutboundSetup};
use switchboard_actors::shell::{OutboundActor, OutboundCommand, OutboundMsg};
use switchboard_http::live::{LiveError, OutboundRequest};
use switchboard_media::rtp::prompt::Prompt;
use switchboard_storage::model::DialOutcome;
use tokio::sync::oneshot;

/// Where the node answers a phone-bar dial request: the new call's id.
pub type DialReply = oneshot::Sender<Result<CallId, LiveError>>;

/// An outbound call's legs and actor.
pub(in crate::node::core) struct ObCall {
    pub(super) tenant: TenantId,
    pub(super) actor: ActorRef<OutboundMsg>,
    pub(super) agent: AgentId,
    pub(super) number: String,
    /// The contact plan the call carries out.
    pub(super) plan: Option<String>,
    pub(super) agent_leg: Option<OutLeg>,
    pub(super) customer: Option<OutLeg>,
    /// The actor wrote the record.
    pub(super) finished: bool,
    /// The agent put the customer on hold.
    pub(super) held: bool,
    /// A supervisor listening, whispering or barged in.
    pub(super) monitor: Option<Box<super::monitor::Monitor>>,
    /// The talking agent consulting someone, or sending the customer on.
    pub(super) consult: Option<Box<super::consult::Consult>>,
    /// The outside number the customer was handed to after a
    /// consultation (the record ended; the legs live on).
    pub(super) external: Option<OutLeg>,
    /// `number` is an extension (an internal call): rung on its phone.
    pub(super) internal: bool,
    /// The agent on that extension, on this call for the queues until it
    /// ends.
    callee: Option<AgentRef>,
}

/// The leg of an outbound call a target names.
pub(super) fn slot<'a>(c: &'a mut ObCall, target: &Target) -> &'a mut Option<OutLeg> {
    match target {
        Target::Agent(_) => &mut c.agent_leg,
        // The supervisor's and the consulted party's responses go
        // elsewhere; outbound calls have no callback: never asked for.
        Target::External | Target::Supervisor | Target::Consulted | Target::CalledBack => {
            &mut c.customer
        }
    }
}

/// China's ring-back tone: 450 Hz, one second on, four off.
pub(super) fn ringback() -> Prompt {
    Prompt::tone(450.0, 5000, Duration::from_secs(1)).then(&Prompt::silence(Duration::from_secs(4)))
}

impl SipCore {
    /// A phone-bar dial request.
    pub(in crate::node::core) async fn start_outbound(
        &mut self,
        tenant: TenantId,
        agent: AgentId,
        request: OutboundRequest,
        reply: DialReply,
        now: Instant,
    ) {
        let placed = self.place(tenant, agent, request, now).await;
        let _ = reply.send(placed);
    }

    async fn place(
        &mut self,
        tenant: TenantId,
        agent: AgentId,
        request: OutboundRequest,
        now: Instant,
    ) -> Result<CallId, LiveError> {
        let OutboundRequest {
            number,
            customer,
            plan,
            internal,
        } = request;
        let unix = self.unix(now);
        let center = self
            .centers
            .tenant(&tenant)
            .ok_or_else(|| LiveError::NotFound(format!("no tenant {}", tenant.0)))?;
        let handle = center
            .agents
            .get(&agent)
            .cloned()
            .ok_or_else(|| LiveError::NotFound(format!("no agent {}", agent.0)))?;
        let trunk = center.trunk.clone();
        let caller_id = match (&trunk, internal, &handle.device) {
            (_, true, Device::Sip { account }) => account.clone(),
            (_, true, Device::Mobile { .. }) => agent.0.clone(),
            (Some(t), false, _) => t.caller_id.clone(),
            (None, false, _) => {
                return Err(LiveError::Conflict(
                    "the tenant has no trunk to call out through".into(),
                ))
            }
        };
        if let Device::Sip { account } = &handle.device {
            if self.bindings(&tenant, account, unix).is_empty() {
                return Err(LiveError::Conflict(format!(
                    "the agent's phone (SIP account {account}) is not registered"
                )));
            }
        }
        // An internal call: the extension, its phone, the agent on it.
        let callee = if internal {
            if self.accounts.account(&tenant.0, &number).is_none() {
                return Err(LiveError::Invalid {
                    field: "extension".into(),
                    message: format!("no extension {number}"),
                });
            }
            if number == caller_id {
                return Err(LiveError::Conflict("an agent cannot call itself".into()));
            }
            if self.bindings(&tenant, &number, unix).is_empty() {
                return Err(LiveError::Conflict(format!(
                    "extension {number}'s phone is not registered"
                )));
            }
            center
                .agents
                .values()
                .find(|h| matches!(&h.device, Device::Sip { account } if *account == number))
                .map(|h| h.actor.clone())
        } else {
            None
        };
        let (clock, records, utc_offset, wrap_up) = (
            center.clock,
            center.records.clone(),
            center.utc_offset,
            center.outbound_wrap_up,
        );
        let call = CallId(rand::random());
        let free = |a: &AgentRef| {
            let _ = a.cast(AgentMsg::HungUp {
                call,
                wrap_up: Duration::ZERO,
            });
        };
        // The callee first: one on a call is busy.
        let callee = match callee {
            Some(a) => match ractor::call!(a, |reply| AgentMsg::Dial { call, reply }) {
                Ok(Ok(())) => Some(a),
                Ok(Err(switchboard_actors::agent::AgentError::SignedOut)) => None,
                Ok(Err(e)) => return Err(LiveError::Conflict(format!("extension {number}: {e}"))),
                Err(e) => return Err(LiveError::Unavailable(e.to_string())),
            },
            None => None,
        };
        let on_it = ractor::call!(handle.actor, |reply| AgentMsg::Dial { call, reply })
            .map_err(|e| LiveError::Unavailable(e.to_string()));
        let on_it = match on_it {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LiveError::Conflict(e.to_string())),
            Err(e) => Err(e),
        };
        if let Err(e) = on_it {
            if let Some(a) = &callee {
                free(a);
            }
            return Err(e);
        }
        let setup = OutboundSetup {
            tenant: tenant.clone(),
            node: self.node.clone(),
            utc_offset_minutes: utc_offset,
            call,
            agent: agent.clone(),
            caller_id,
            number: number.clone(),
            customer,
            wrap_up,
            internal,
        };
        let machine = OutboundCall::start(setup, clock.now());
        let shell = OutboundActor {
            call,
            clock,
            telephony: self.ob_tx.clone(),
            agent: handle.actor.clone(),
            records,
        };
        let actor = match Actor::spawn(None, shell, machine).await {
            Ok((a, done)) => {
                self.watch_call_actor(call, &a, done);
                a
            }
            Err(e) => {
                free(&handle.actor);
                if let Some(a) = &callee {
                    free(a);
                }
                return Err(LiveError::Unavailable(format!(
                    "the call's actor did not start: {e}"
                )));
            }
        };
        tracing::info!(%call, %agent, %number, "outbound call: ringing the agent first");
        let m = crate::node::metrics::get();
        m.calls_active.inc();
        m.actors.with_label_values(&["call"]).inc();
        self.ob.insert(
            call,
            ObCall {
                tenant,
                actor,
                agent,
                number,
                plan,
                agent_leg: None,
                customer: None,
                finished: false,
                held: false,
                monitor: None,
                consult: None,
                external: None,
                internal,
                callee,
            },
        );
        Ok(call)
    }

    /// What an outbound call's actor asks of its legs.
    pub(in crate::node::core) async fn handle_outbound(
        &mut self,
        call: CallId,
        cmd: OutboundCommand,
        now: Instant,
    ) {
        let Some(c) = self.ob.get(&call) else {
            return;
        };
        let (tenant, agent, number, actor) = (
            c.tenant.clone(),
            c.agent.clone(),
            c.number.clone(),
            c.actor.clone(),
        );
        let center = self.centers.tenant(&tenant);
        let trunk = center.and_then(|x| x.trunk.clone());
        match cmd {
            OutboundCommand::DialAgent => {
                let device = center
                    .and_then(|x| x.agents.get(&agent))
                    .map(|h| h.device.clone());
                let dial = match device {
                    Some(d) => {
                        self.device_dial(&tenant, &d, &number, trunk.as_ref(), now)
                            .await
                    }
                    None => None,
                };
                let target = Target::Agent(agent.clone());
                let leg = match dial {
                    Some(d) => {
                        let name = format!("agent-{agent}-{call}@switchboard");
                        self.send_invite(call, &target, name, d, now).await
                    }
                    None => None,
                };
                match (leg, self.ob.get_mut(&call)) {
                    (Some(leg), Some(c)) => c.agent_leg = Some(leg),
                    _ => {
                        tracing::info!(%call, %agent, "the agent's device cannot be reached");
                        let _ = actor.cast(OutboundMsg::AgentFailed);
                    }
                }
            }
            OutboundCommand::DialCustomer => {
                let internal = self.ob.get(&call).is_some_and(|c| c.internal);
                let shown = center
                    .and_then(|x| x.agents.get(&agent))
                    .map(|h| match &h.device {
                        Device::Sip { account } => account.clone(),
                        Device::Mobile { .. } => agent.0.clone(),
                    })
                    .unwrap_or_default();
                let dial = match &trunk {
                    _ if internal => self.phone_dial(&tenant, &number, &shown, self.unix(now)),
                    Some(t) => self.trunk_dial(t, &number).await,
                    None => None,
                };
                let leg = match dial {
                    Some(d) => {
                        let name = format!("customer-{call}@switchboard");
                        self.send_invite(call, &Target::External, name, d, now)
                            .await
                    }
                    None => None,
                };
                match (leg, self.ob.get_mut(&call)) {
                    (Some(leg), Some(c)) => {
                        c.customer = Some(leg);
                        self.hub.publish(
                            &tenant,
                            Event::CallDialing {
                                version: 1,
                                agent: agent.0.clone(),
                                call: call.to_string(),
                                number,
                            },
                        );
                    }
                    _ => {
                        tracing::warn!(%call, "the customer cannot be dialed (no trunk, or its gateway is unreachable)");
                        let _ = actor.cast(OutboundMsg::CustomerFailed(503));
                    }
                }
            }
            OutboundCommand::Ringback => {
                if let Some(a) = self.ob.get(&call).and_then(|c| c.agent_leg.as_ref()) {
                    a.leg.send(LegCmd::Play {
                        prompt: ringback(),
                        looped: true,
                    });
                }
            }
            OutboundCommand::Bridge => {
                let legs = self
                    .ob
                    .get(&call)
                    .and_then(|c| c.agent_leg.as_ref().zip(c.customer.as_ref()));
                if let Some((a, cu)) = legs {
                    a.leg.send(LegCmd::Stop);
                    a.leg.send(LegCmd::Connect(cu.leg.inbox()));
                    cu.leg.send(LegCmd::Connect(a.leg.inbox()));
                    // Customer on the left, agent on the right.
                    let file = format!("recordings/{call}.wav");
                    cu.leg.send(LegCmd::RecordCall {
                        path: self.data_dir.join(&file),
                    });
                    let _ = actor.cast(OutboundMsg::Recording(file));
                    tracing::info!(%call, %agent, "agent and customer bridged");
                    self.hub.publish(
                        &tenant,
                        Event::CallAnswered {
                            version: 1,
                            agent: agent.0.clone(),
                            call: call.to_string(),
                        },
                    );
                }
            }
            OutboundCommand::HangUpAgent => self.end_ob_leg(call, &Target::Agent(agent), now),
            OutboundCommand::HangUpCustomer => self.end_ob_leg(call, &Target::External, now),
            OutboundCommand::Finished { outcome } => {
                if let Some(a) = self.ob.get_mut(&call).and_then(|c| c.callee.take()) {
                    let _ = a.cast(AgentMsg::HungUp {
                        call,
                        wrap_up: Duration::ZERO,
                    });
                }
                let plan = self.ob.get_mut(&call).and_then(|c| {
                    c.finished = true;
                    c.plan.take()
                });
                if let Some(plan) = plan {
                    self.plan_done(tenant, agent, plan, call, outcome);
                }
                self.forget_ob_if_done(call);
            }
        }
    }

    /// Marks the contact plan a call carried out done, with the call and
    /// its outcome (off the core's task).
    pub(super) fn plan_done(
        &self,
        tenant: TenantId,
        agent: AgentId,
        plan: String,
        call: CallId,
        outcome: Option<DialOutcome>,
    ) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let found = match store.contact_plans(&tenant, &agent).await {
                Ok(plans) => plans.into_iter().find(|p| p.id == plan),
                Err(e) => {
                    tracing::warn!(%call, plan, error = %e, "contact plan not read");
                    return;
                }
            };
            let Some(mut p) = found else {
                tracing::warn!(%call, plan, "the call's contact plan is gone");
                return;
            };
            p.status = ContactPlanStatus::Done;
            p.call = Some(call);
            p.outcome = outcome;
            match store.put_contact_plan(&p).await {
                Ok(()) => tracing::info!(%call, plan, "contact plan done"),
                Err(e) => tracing::warn!(%call, plan, error = %e, "contact plan not marked done"),
            }
        });
    }

    /// Ends one leg: CANCEL while it rings, BYE once answered.
    fn end_ob_leg(&mut self, call: CallId, target: &Target, now: Instant) {
        let Some(c) = self.ob.get_mut(&call) else {
            return;
        };
        let leg = slot(c, target);
        let Some(out) = leg.as_mut() else {
            return;
        };
        out.cancelled = true;
        if let Some(d) = out.dialog.clone() {
            *leg = None;
            self.hang_up(&d, now);
        } else {
            // The leg stays until the INVITE's final response (487).
            let cancel = cancel_for(&out.invite);
            let (dest, transport) = (out.dest, out.transport);
            if let Err(e) = self.layer.send_request(&cancel, dest, transport, now) {
                tracing::debug!(error = %e, "CANCEL not sent");
            }
        }
        self.check_monitor(call, now);
        self.forget_ob_if_done(call);
    }

    /// Whether `call` is an outbound call.
    pub(in crate::node::core) fn is_outbound(&self, call: CallId) -> bool {
        self.ob.contains_key(&call)
    }

    /// A response to one of an outbound call's INVITEs (`None`: none).
    pub(in crate::node::core) fn handle_ob_response(
        &mut self,
        tx: TransactionId,
        call: CallId,
        target: Target,
        resp: Option<Response>,
        now: Instant,
    ) {
        let code = resp.as_ref().map_or(408, |r| r.code);
        let Some(actor) = self.ob.get(&call).map(|c| c.actor.clone()) else {
            return;
        };
        if code < 200 {
            if target == Target::External && matches!(code, 180 | 183) {
                tracing::info!(%call, "the customer's phone rings");
                let _ = actor.cast(OutboundMsg::CustomerRinging);
                if let Some(r) = resp.as_ref().filter(|r| !r.body.is_empty()) {
                    self.early_media(call, r);
                }
            }
            return;
        }
        let outcome = match self.final_outcome(tx, call, &target, resp.as_ref(), now) {
            Some(o) => o,
            None => return,
        };
        let answered = match outcome {
            Outcome::Refused { code, cancelled } => {
                if let Some(c) = self.ob.get_mut(&call) {
                    *slot(c, &target) = None;
                }
                tracing::info!(%call, ?target, code, "outbound leg not answered");
                if !cancelled {
                    let _ = actor.cast(match target {
                        Target::Agent(_) => OutboundMsg::AgentFailed,
                        Target::External
                        | Target::Supervisor
                        | Target::Consulted
                        | Target::CalledBack => OutboundMsg::CustomerFailed(code),
                    });
                }
                self.forget_ob_if_done(call);
                return;
            }
            Outcome::Answered(a) => *a,
        };
        let party = match &target {
            Target::Agent(a) => Party::Agent(a.clone()),
            Target::External | Target::Supervisor | Target::Consulted | Target::CalledBack => {
                Party::Customer
            }
        };
        if self.keep_answered(answered, (call, party)) {
            // Answered as we gave up on it: end it at once.
            self.end_ob_leg(call, &target, now);
            return;
        }
        let _ = actor.cast(match target {
            Target::Agent(_) => {
                tracing::info!(%call, "the agent answered: dialing the customer");
                OutboundMsg::AgentAnswered
            }
            Target::External | Target::Supervisor | Target::Consulted | Target::CalledBack => {
                tracing::info!(%call, "the customer answered");
                OutboundMsg::CustomerAnswered
            }
        });
    }

    /// The carrier sends early media (a 180 or 183 with SDP: its ring-back,
    /// or an announcement such as "the number is not in service"): the
    /// agent hears it instead of our ring-back, and is heard only once the
    /// customer answers.
    fn early_media(&mut self, call: CallId, resp: &Response) {
        let Some(c) = self.ob.get(&call) else {
            return;
        };
        let (Some(a), Some(cu)) = (c.agent_leg.as_ref(), c.customer.as_ref()) else {
            return;
        };
        let answer = std::str::from_utf8(&resp.body)
            .map_err(|_| SdpError::NoAudio)
            .and_then(|sdp| parse_answer(sdp, &cu.local, Direction::SendRecv));
        match answer {
            Ok(answer) => {
                cu.leg.send(LegCmd::Remote(answer));
                a.leg.send(LegCmd::Stop);
                cu.leg.send(LegCmd::Connect(a.leg.inbox()));
                tracing::info!(%call, "early media from the carrier");
            }
            Err(e) => {
                tracing::info!(%call, error = %e, "unusable early media SDP: our ring-back goes on")
            }
        }
    }

    /// A leg's peer sent BYE.
    pub(in crate::node::core) fn ob_leg_hung_up(
        &mut self,
        call: CallId,
        party: Party,
        now: Instant,
    ) {
        let Some(c) = self.ob.get_mut(&call) else {
            return;
        };
        let msg = match party {
            // Kept beside the call: `leg_hung_up` handles them.
            Party::Supervisor | Party::Consulted => None,
            Party::Agent(a) if a == c.agent => {
                c.agent_leg = None;
                Some(OutboundMsg::AgentHungUp)
            }
            // An agent who left the call (its BYE crossed ours).
            Party::Agent(_) => None,
            Party::Customer => {
                c.customer = None;
                // A customer handed to a number takes it along.
                let external = c.external.take();
                if let Some(d) = external.and_then(|x| x.dialog) {
                    self.hang_up(&d, now);
                }
                Some(OutboundMsg::CustomerHungUp)
            }
            Party::External => {
                c.external = None;
                let customer = c.customer.take();
                if let Some(d) = customer.and_then(|x| x.dialog) {
                    self.hang_up(&d, now);
                }
                None
            }
        };
        if let Some(msg) = msg {
            if let Some(c) = self.ob.get(&call) {
                let _ = c.actor.cast(msg);
            }
        }
        self.check_monitor(call, now);
        self.forget_ob_if_done(call);
    }

    /// The actor stopped. Before its record (it failed), the node ends
    /// the legs and frees the agent.
    pub(in crate::node::core) fn ob_actor_ended(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.ob.get_mut(&call) else {
            return;
        };
        if c.finished {
            return;
        }
        tracing::error!(%call, "the outbound call's actor failed: the node ends the call");
        c.finished = true;
        if let Some(a) = c.callee.take() {
            let _ = a.cast(AgentMsg::HungUp {
                call,
                wrap_up: Duration::ZERO,
            });
        }
        let (tenant, agent) = (c.tenant.clone(), c.agent.clone());
        let external = c.external.take();
        if let Some(d) = external.and_then(|x| x.dialog) {
            self.hang_up(&d, now);
        }
        self.consult_end(call, now);
        self.end_ob_leg(call, &Target::Agent(agent.clone()), now);
        self.end_ob_leg(call, &Target::External, now);
        let handle = self
            .centers
            .tenant(&tenant)
            .and_then(|x| x.agents.get(&agent));
        if let Some(h) = handle {
            let _ = h.actor.cast(AgentMsg::HungUp {
                call,
                wrap_up: Duration::ZERO,
            });
        }
        self.forget_ob_if_done(call);
    }

    /// Drops an outbound call once its record is written and no leg is
    /// left.
    pub(super) fn forget_ob_if_done(&mut self, call: CallId) {
        if self.ob.get(&call).is_some_and(|c| {
            c.finished
                && c.agent_leg.is_none()
                && c.customer.is_none()
                && c.monitor.is_none()
                && c.consult.is_none()
                && c.external.is_none()
        }) {
            self.ob.remove(&call);
            let m = crate::node::metrics::get();
            m.calls_active.dec();
            m.actors.with_label_values(&["call"]).dec();
        }
    }
}
