//! An outbound call sent to a skill group's queue (外呼转技能组): the
//! agent who placed it leaves (wrap-up) and the customer waits in the
//! group's queue, hearing its waiting audio, as any caller of the center
//! does. From then on the call is a call-center call: the outbound call's
//! machine hands over its record so far and stops, and a queued call's
//! machine goes on from it under the same call id, so the call keeps one
//! record (direction `outbound`, the transfer to the group, every agent's
//! leg). The customer's leg, which we dialed, stays as it is (its
//! recording goes on) and reports its keys and prompt ends from now.

use super::*;
use switchboard_actors::shell::OutboundMsg;
use switchboard_http::live::LiveError;
use switchboard_storage::model::DialOutcome;

impl SipCore {
    /// `agent`, talking on outbound call `call`, sends the customer to
    /// `group`'s queue.
    pub(super) async fn queue_outbound(
        &mut self,
        tenant: &TenantId,
        call: CallId,
        agent: &AgentId,
        group: String,
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(center) = self.centers.tenant(tenant) else {
            return Err(LiveError::NotFound("no such tenant".into()));
        };
        if !center.groups.contains_key(&group) {
            return Err(LiveError::Invalid {
                field: "group".into(),
                message: format!("no skill group {group}"),
            });
        }
        let Some(c) = self.ob.get(&call) else {
            return Err(LiveError::Conflict("the call ended".into()));
        };
        if c.internal {
            return Err(LiveError::Conflict(
                "an internal call has no place in a queue".into(),
            ));
        }
        if c.monitor.is_some() {
            return Err(LiveError::Conflict(
                "a supervisor is on the call: no transfer meanwhile".into(),
            ));
        }
        if c.consult.is_some() {
            return Err(LiveError::Conflict("the agent is consulting".into()));
        }
        let (actor, held) = (c.actor.clone(), c.held);
        if held {
            self.hold_call(call, agent, false, now)?;
        }
        let record = ractor::call!(actor, |reply| OutboundMsg::ToQueue {
            group: group.clone(),
            reply
        })
        .map_err(|e| LiveError::Unavailable(format!("the call did not answer: {e}")))?
        .map_err(|e| LiveError::Conflict(e.to_string()))?;
        let Some(ob) = self.ob.remove(&call) else {
            return Ok(());
        };
        if let Some(d) = ob.agent_leg.and_then(|o| o.dialog) {
            self.hang_up(&d, now);
        }
        let Some((customer, dialog)) = ob.customer.and_then(|x| x.dialog.clone().map(|d| (x, d)))
        else {
            tracing::warn!(%call, "the customer left as the call went to the queue");
            return Ok(());
        };
        let Some(center) = self.centers.tenant(tenant) else {
            return Ok(());
        };
        // The queue's prompts are the tenant's hotline's (the first).
        let hotline = center
            .hotlines
            .iter()
            .min_by_key(|(n, _)| *n)
            .map(|(_, h)| h);
        let (waiting_prompt, voicemail_prompt) = match hotline {
            Some(h) => (h.waiting_prompt.clone(), h.voicemail_prompt.clone()),
            None => ("waiting".into(), "voicemail".into()),
        };
        let setup = CallSetup {
            tenant: tenant.clone(),
            node: self.node.clone(),
            utc_offset_minutes: center.utc_offset,
            call,
            caller: record.caller.clone(),
            dialed: record.dialed.clone(),
        };
        let started = record.start;
        let machine = InboundCall::continue_outbound(
            *record,
            group.clone(),
            center.allow_external && center.trunk.is_some(),
            Duration::ZERO,
            center.clock.now(),
        );
        let shell = self.call_shell(center, call);
        customer.leg.send(LegCmd::Stop);
        customer.leg.send(LegCmd::Report(self.leg_tx.clone()));
        let actor = match Actor::spawn(None, shell, machine).await {
            Ok((a, done)) => {
                self.watch_call_actor(call, &a, done);
                a
            }
            Err(e) => {
                tracing::error!(%call, error = %e, "the queued call's actor did not start: the call ends");
                self.hang_up(&dialog, now);
                let m = crate::node::metrics::get();
                m.calls_active.dec();
                m.actors.with_label_values(&["call"]).dec();
                return Err(LiveError::Unavailable(format!(
                    "the queued call's actor did not start: {e}"
                )));
            }
        };
        if let Some(plan) = ob.plan {
            self.plan_done(
                tenant.clone(),
                agent.clone(),
                plan,
                call,
                Some(DialOutcome::Answered),
            );
        }
        self.cc.insert(
            call,
            CcCall {
                tenant: tenant.clone(),
                waiting_prompt,
                voicemail_prompt,
                actor,
                setup,
                started,
                finished: false,
                invited: None,
                caller: ob.number,
                customer: Some(dialog),
                customer_sdp: (customer.session, customer.local),
                customer_leg: customer.leg,
                held: false,
                // The customer's leg records the call since it answered.
                recording: true,
                agents: HashMap::new(),
                external: None,
                monitor: None,
                consult: None,
                callback: None,
            },
        );
        tracing::info!(%call, %agent, %group, "the customer was sent to the queue");
        self.hub.publish(
            tenant,
            super::consult::transferred(agent, call, "group", group),
        );
        Ok(())
    }
}
