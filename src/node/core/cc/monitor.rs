//! Supervision of a live call, inbound or outbound (监听 / 耳语 / 强插): the
//! node rings the supervisor's phone and, once it answers, wires the legs:
//!
//! - listen: the supervisor hears the customer and the agent, mixed;
//!   nobody hears the supervisor;
//! - whisper: the agent also hears the supervisor (mixed with the
//!   customer); the customer does not;
//! - barge: everyone hears everyone (each leg mixes the other two).
//!
//! The mode can change while the supervisor's phone is up (no new call);
//! the supervisor's leg ends when the supervisor hangs up, when the
//! monitored agent leaves the call, or when the call ends.
//!
//! A supervisor on a call can also take it over (强拆): the agent's leg
//! ends and the supervisor's becomes the call's agent leg, connected to
//! the customer alone.

use super::*;
use switchboard_http::live::{LiveError, MonitorMode};
use tokio::sync::oneshot;

/// Where the node answers a monitor request.
pub type MonitorReply = oneshot::Sender<Result<(), LiveError>>;

/// A supervisor on a call.
pub(in crate::node::core) struct Monitor {
    pub(super) supervisor: AgentId,
    /// The agent whose call it is.
    pub(super) agent: AgentId,
    pub(super) mode: MonitorMode,
    pub(super) leg: OutLeg,
    /// The supervisor's agent was signed in: it is on this call (busy for
    /// the queues) until the supervision ends.
    pub(super) on_call: bool,
}

fn mode_name(m: MonitorMode) -> &'static str {
    match m {
        MonitorMode::Listen => "listen",
        MonitorMode::Whisper => "whisper",
        MonitorMode::Barge => "barge",
        MonitorMode::TakeOver => "take_over",
    }
}

impl SipCore {
    /// `supervisor` monitors `agent`'s call in `mode` (`None`: stops).
    pub(in crate::node::core) async fn monitor(
        &mut self,
        tenant: TenantId,
        agent: AgentId,
        with: Option<(AgentId, MonitorMode)>,
        reply: MonitorReply,
        now: Instant,
    ) {
        let done = self.set_monitor(&tenant, &agent, with, now).await;
        let _ = reply.send(done);
    }

    async fn set_monitor(
        &mut self,
        tenant: &TenantId,
        agent: &AgentId,
        with: Option<(AgentId, MonitorMode)>,
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(call) = self.talking_call(tenant, agent) else {
            return Err(LiveError::Conflict(format!(
                "agent {agent} is not talking to a customer"
            )));
        };
        let consulting = self.consult_of(call).is_some();
        let monitor = self.monitor_of(call);
        let Some((supervisor, mode)) = with else {
            if monitor.is_none() {
                return Err(LiveError::Conflict("nobody monitors this call".into()));
            }
            self.end_monitor(call, now);
            return Ok(());
        };
        let supervisor = &supervisor;
        if mode == MonitorMode::TakeOver {
            return match monitor {
                Some(m) if &m.supervisor == supervisor && m.leg.dialog.is_some() => {
                    self.take_over(call, now).await
                }
                _ => Err(LiveError::Conflict(format!(
                    "supervisor {supervisor} takes over only a call it is on: listen, whisper or barge in first"
                ))),
            };
        }
        if let Some(m) = monitor {
            if &m.supervisor != supervisor {
                return Err(LiveError::Conflict(format!(
                    "supervisor {} already monitors this call",
                    m.supervisor
                )));
            }
            if let Some(m) = self.monitor_mut(call).and_then(Option::as_mut) {
                m.mode = mode;
            }
            self.rewire(call);
            self.monitor_event(call, Some(mode));
            return Ok(());
        }
        if supervisor == agent {
            return Err(LiveError::Conflict("an agent cannot monitor itself".into()));
        }
        if consulting {
            return Err(LiveError::Conflict(
                "the agent is consulting: no supervision meanwhile".into(),
            ));
        }
        let busy_ob = self.ob.values().any(|c| {
            &c.agent == supervisor
                || c.monitor
                    .as_ref()
                    .is_some_and(|m| &m.supervisor == supervisor)
        });
        if busy_ob
            || self.cc.values().any(|c| {
                c.agents.contains_key(supervisor)
                    || c.monitor
                        .as_ref()
                        .is_some_and(|m| &m.supervisor == supervisor)
            })
        {
            return Err(LiveError::Conflict(format!(
                "supervisor {supervisor} is on another call"
            )));
        }
        let Some(center) = self.centers.tenant(tenant) else {
            return Err(LiveError::NotFound("no such tenant".into()));
        };
        let Some(handle) = center.agents.get(supervisor).cloned() else {
            return Err(LiveError::NotFound(format!("no agent {supervisor}")));
        };
        // A signed-in supervisor is on this call for the queues, so none
        // offers it another; one signed out is just a phone.
        let on_it = ractor::call!(handle.actor, |reply| AgentMsg::Dial { call, reply })
            .map_err(|e| LiveError::Unavailable(e.to_string()))?;
        let on_call = match on_it {
            Ok(()) => true,
            Err(switchboard_actors::agent::AgentError::SignedOut) => false,
            Err(e) => return Err(LiveError::Conflict(format!("supervisor {supervisor}: {e}"))),
        };
        let trunk = center.trunk.clone();
        let shown = format!("monitor-{agent}");
        let dial = self
            .device_dial(tenant, &handle.device, &shown, trunk.as_ref(), now)
            .await;
        let Some(dial) = dial else {
            return Err(LiveError::Conflict(format!(
                "supervisor {supervisor}'s phone cannot be reached (not registered?)"
            )));
        };
        let name = format!("monitor-{supervisor}-{call}@switchboard");
        let Some(leg) = self
            .send_invite(call, &Target::Supervisor, name, dial, now)
            .await
        else {
            return Err(LiveError::Unavailable(
                "the supervisor's phone could not be called".into(),
            ));
        };
        if let Some(slot) = self.monitor_mut(call) {
            *slot = Some(Box::new(Monitor {
                supervisor: supervisor.clone(),
                agent: agent.clone(),
                mode,
                leg,
                on_call,
            }));
        }
        tracing::info!(%call, %agent, %supervisor, mode = mode_name(mode), "ringing the supervisor");
        Ok(())
    }

    /// The supervisor of `call` (inbound or outbound), if any.
    fn monitor_of(&self, call: CallId) -> Option<&Monitor> {
        match self.cc.get(&call) {
            Some(c) => c.monitor.as_deref(),
            None => self.ob.get(&call).and_then(|c| c.monitor.as_deref()),
        }
    }

    /// Where `call` keeps its supervisor.
    fn monitor_mut(&mut self, call: CallId) -> Option<&mut Option<Box<Monitor>>> {
        if let Some(c) = self.cc.get_mut(&call) {
            return Some(&mut c.monitor);
        }
        self.ob.get_mut(&call).map(|c| &mut c.monitor)
    }

    pub(super) fn tenant_of(&self, call: CallId) -> Option<TenantId> {
        match self.cc.get(&call) {
            Some(c) => Some(c.tenant.clone()),
            None => self.ob.get(&call).map(|c| c.tenant.clone()),
        }
    }

    /// The customer's leg of `call` and its agents' legs.
    pub(super) fn legs_of(&self, call: CallId) -> Option<(&Leg, Vec<(&AgentId, &Leg)>)> {
        if let Some(c) = self.cc.get(&call) {
            let agents = c.agents.iter().map(|(a, o)| (a, &o.leg)).collect();
            return Some((&c.customer_leg, agents));
        }
        let c = self.ob.get(&call)?;
        let agents = c.agent_leg.iter().map(|o| (&c.agent, &o.leg)).collect();
        Some((&c.customer.as_ref()?.leg, agents))
    }

    /// The supervisor answered, or the mode changed: every leg hears
    /// whom the mode says.
    pub(super) fn rewire(&self, call: CallId) {
        let Some((customer, agents)) = self.legs_of(call) else {
            return;
        };
        let monitor = self
            .monitor_of(call)
            .filter(|m| m.leg.dialog.is_some())
            .and_then(|m| Some((m, agents.iter().find(|(a, _)| **a == m.agent)?.1)));
        let Some((m, agent)) = monitor else {
            customer.send(LegCmd::Listeners(Vec::new()));
            customer.send(LegCmd::Mix(false));
            for (_, a) in &agents {
                a.send(LegCmd::Listeners(Vec::new()));
                a.send(LegCmd::Mix(false));
            }
            return;
        };
        let sup = &m.leg.leg;
        customer.send(LegCmd::Listeners(vec![sup.inbox()]));
        agent.send(LegCmd::Listeners(vec![sup.inbox()]));
        sup.send(LegCmd::Mix(true));
        let (hears_sup, to) = match m.mode {
            MonitorMode::Listen => ((false, false), vec![]),
            MonitorMode::Whisper => ((true, false), vec![agent.inbox()]),
            // (A taken-over call has no monitor left.)
            MonitorMode::Barge | MonitorMode::TakeOver => {
                ((true, true), vec![agent.inbox(), customer.inbox()])
            }
        };
        sup.send(LegCmd::Listeners(to));
        agent.send(LegCmd::Mix(hears_sup.0));
        customer.send(LegCmd::Mix(hears_sup.1));
    }

    /// The supervisor on `call`, its phone up, takes it over: the call's
    /// machine cuts the agent off (an inbound call's machine ends its leg;
    /// an outbound call's agent leg ends here) and the supervisor's leg is
    /// the call's agent leg from now on.
    async fn take_over(&mut self, call: CallId, now: Instant) -> Result<(), LiveError> {
        let Some((tenant, supervisor)) = self
            .monitor_of(call)
            .and_then(|m| Some((self.tenant_of(call)?, m.supervisor.clone())))
        else {
            return Err(LiveError::Conflict("nobody monitors this call".into()));
        };
        let to = switchboard_storage::model::TransferTarget::Agent(supervisor.clone());
        let how = switchboard_storage::model::TransferKind::TakenOver;
        self.hand_over_to(&tenant, call, &to, how).await?;
        let Some(m) = self.monitor_mut(call).and_then(Option::take).map(|b| *b) else {
            return Ok(());
        };
        if let Some(d) = &m.leg.dialog {
            if let Some(entry) = self.calls.get_mut(d) {
                entry.cc = Some((call, Party::Agent(supervisor.clone())));
            }
        }
        if let Some((customer, _)) = self.customer_of(call) {
            customer.send(LegCmd::Connect(m.leg.leg.inbox()));
            m.leg.leg.send(LegCmd::Connect(customer.inbox()));
        }
        let agent = m.agent.clone();
        let mut gone = None;
        if let Some(c) = self.cc.get_mut(&call) {
            c.agents.insert(supervisor.clone(), m.leg);
        } else if let Some(c) = self.ob.get_mut(&call) {
            gone = c.agent_leg.replace(m.leg);
            c.agent = supervisor.clone();
        }
        if let Some(d) = gone.and_then(|o| o.dialog) {
            self.hang_up(&d, now);
        }
        // No mixing left: the customer and the supervisor hear each other.
        self.rewire(call);
        self.publish_monitor(call, &agent, &supervisor, Some(MonitorMode::TakeOver));
        tracing::info!(%call, %agent, %supervisor, "the supervisor took the call over");
        Ok(())
    }

    /// The supervisor's INVITE was answered (`Some`) or refused.
    pub(super) fn monitor_answered(&mut self, call: CallId, dialog: Option<Dialog>, now: Instant) {
        let Some(m) = self.monitor_of(call) else {
            return;
        };
        let Some(dialog) = dialog else {
            tracing::info!(%call, supervisor = %m.supervisor, "the supervisor did not answer");
            self.drop_monitor(call);
            return;
        };
        let (dest, transport, cancelled) = (m.leg.dest, m.leg.transport, m.leg.cancelled);
        let id = dialog.id.clone();
        self.add_out_dialog(dialog, dest, transport, (call, Party::Supervisor));
        if cancelled {
            self.drop_monitor(call);
            self.hang_up(&id, now);
            return;
        }
        let mode = self.monitor_of(call).map(|m| m.mode);
        tracing::info!(%call, "the supervisor is on the call");
        self.rewire(call);
        self.monitor_event(call, mode);
    }

    /// Forgets `call`'s supervisor (its leg is gone or never came).
    fn drop_monitor(&mut self, call: CallId) {
        let m = self.monitor_mut(call).and_then(Option::take);
        if let (Some(m), Some(tenant)) = (m, self.tenant_of(call)) {
            self.released(&tenant, &m, call);
        }
    }

    /// Ends the supervisor's leg (BYE, or CANCEL while it rings).
    pub(super) fn end_monitor(&mut self, call: CallId, now: Instant) {
        let Some(m) = self.monitor_mut(call).and_then(Option::take) else {
            return;
        };
        match m.leg.dialog.clone() {
            Some(d) => self.hang_up(&d, now),
            None => {
                let cancel = cancel_for(&m.leg.invite);
                let _ = self
                    .layer
                    .send_request(&cancel, m.leg.dest, m.leg.transport, now);
            }
        }
        self.rewire(call);
        self.monitor_event_for(call, &m, None);
        if let Some(tenant) = self.tenant_of(call) {
            self.released(&tenant, &m, call);
        }
    }

    /// The supervisor hung up.
    pub(super) fn monitor_hung_up(&mut self, call: CallId) {
        let Some(m) = self.monitor_mut(call).and_then(Option::take) else {
            return;
        };
        self.rewire(call);
        self.monitor_event_for(call, &m, None);
        if let Some(tenant) = self.tenant_of(call) {
            self.released(&tenant, &m, call);
        }
    }

    /// The supervision of `call` ended: its supervisor's agent is free.
    pub(super) fn released(&self, tenant: &TenantId, m: &Monitor, call: CallId) {
        if m.on_call {
            self.release_agent(tenant, &m.supervisor, call);
        }
    }

    /// `agent`, put on `call` for the queues (a supervisor, a consulted
    /// agent), is free again.
    pub(super) fn release_agent(&self, tenant: &TenantId, agent: &AgentId, call: CallId) {
        if let Some(a) = self
            .centers
            .tenant(tenant)
            .and_then(|c| c.agents.get(agent))
        {
            let _ = a.actor.cast(AgentMsg::HungUp {
                call,
                wrap_up: std::time::Duration::ZERO,
            });
        }
    }

    /// Ends the supervision once the monitored agent or the customer has
    /// left the call.
    pub(super) fn check_monitor(&mut self, call: CallId, now: Instant) {
        self.check_consult(call, now);
        let up = |o: Option<&OutLeg>| o.is_some_and(|x| x.dialog.is_some());
        let gone = match self.cc.get(&call) {
            Some(c) => c
                .monitor
                .as_ref()
                .is_some_and(|m| c.customer.is_none() || !up(c.agents.get(&m.agent))),
            None => self.ob.get(&call).is_some_and(|c| {
                c.monitor.is_some() && !(up(c.agent_leg.as_ref()) && up(c.customer.as_ref()))
            }),
        };
        if gone {
            self.end_monitor(call, now);
        }
    }

    fn monitor_event(&self, call: CallId, mode: Option<MonitorMode>) {
        if let Some(m) = self.monitor_of(call) {
            self.publish_monitor(call, &m.agent, &m.supervisor, mode);
        }
    }

    fn monitor_event_for(&self, call: CallId, m: &Monitor, mode: Option<MonitorMode>) {
        self.publish_monitor(call, &m.agent, &m.supervisor, mode);
    }

    fn publish_monitor(
        &self,
        call: CallId,
        agent: &AgentId,
        supervisor: &AgentId,
        mode: Option<MonitorMode>,
    ) {
        let Some(tenant) = self.tenant_of(call) else {
            return;
        };
        self.hub.publish(
            &tenant,
            Event::CallMonitored {
                version: 1,
                agent: agent.0.clone(),
                call: call.to_string(),
                supervisor: supervisor.0.clone(),
                mode: mode.map(|x| mode_name(x).to_string()),
            },
        );
    }
}
