//! Hold (保持) and unhold from the phone bar, and blind transfers (转接).
//!
//! Hold: a re-INVITE towards the
//! customer offering `sendonly` (held: we send music on hold and expect
//! nothing) or `sendrecv` (back), and the customer's leg stops relaying
//! both ways meanwhile, so neither side hears the other. The recording
//! goes on. Works on inbound calls (the customer's dialog is the one the
//! customer opened) and outbound ones (the one we opened through the
//! trunk).

use super::*;
use crate::node::leg::music_on_hold;
use switchboard_actors::call::TransferError;
use switchboard_http::live::LiveError;
use switchboard_storage::model::TransferTarget;
use tokio::sync::oneshot;

/// Where the node answers a hold, unhold or transfer request.
pub type HoldReply = oneshot::Sender<Result<(), LiveError>>;

/// A re-INVITE of ours in progress.
pub(in crate::node::core) struct ReInvite {
    dialog: DialogId,
    local: LocalMedia,
    offered: Direction,
    /// Sent for the first 2xx and again for each retransmission.
    ack: Option<Request>,
}

impl SipCore {
    /// A phone-bar hold (`on`) or unhold request.
    pub(in crate::node::core) fn hold(
        &mut self,
        tenant: TenantId,
        agent: AgentId,
        on: bool,
        reply: HoldReply,
        now: Instant,
    ) {
        let done = self.set_hold(&tenant, &agent, on, now);
        let _ = reply.send(done);
    }

    pub(super) fn set_hold(
        &mut self,
        tenant: &TenantId,
        agent: &AgentId,
        on: bool,
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(call) = self.talking_call(tenant, agent) else {
            return Err(LiveError::Conflict(
                "the agent is not talking to a customer".into(),
            ));
        };
        self.hold_call(call, agent, on, now)
    }

    /// Puts the customer of `call` (inbound or outbound) on hold, or
    /// takes it off; `agent` is who asked, for the event.
    pub(super) fn hold_call(
        &mut self,
        call: CallId,
        agent: &AgentId,
        on: bool,
        now: Instant,
    ) -> Result<(), LiveError> {
        let offered = if on {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        // The customer's dialog, our new offer and the leg.
        let (tenant, dialog, sdp, local, leg) = if let Some(c) = self.cc.get_mut(&call) {
            check_held(c.held, on)?;
            let Some(dialog) = c.customer.clone() else {
                return Err(LiveError::Conflict("the customer hung up".into()));
            };
            let (session, local) = &mut c.customer_sdp;
            let sdp = session.offer(local, offered);
            let leg = c.customer_leg.commands();
            (c.tenant.clone(), dialog, sdp, local.clone(), leg)
        } else {
            let Some(c) = self.ob.get_mut(&call) else {
                return Err(LiveError::Conflict("the call ended".into()));
            };
            check_held(c.held, on)?;
            let tenant = c.tenant.clone();
            let Some(x) = c.customer.as_mut() else {
                return Err(LiveError::Conflict("the customer hung up".into()));
            };
            let Some(dialog) = x.dialog.clone() else {
                return Err(LiveError::Conflict("the customer has not answered".into()));
            };
            let sdp = x.session.offer(&x.local, offered);
            (tenant, dialog, sdp, x.local.clone(), x.leg.commands())
        };
        self.reinvite(&dialog, sdp, local, offered, now)?;
        let _ = leg.send(LegCmd::Hold(on.then(music_on_hold)));
        if let Some(c) = self.cc.get_mut(&call) {
            c.held = on;
            let _ = c.actor.cast(CallMsg::Held(on));
        }
        if let Some(c) = self.ob.get_mut(&call) {
            c.held = on;
            let _ = c
                .actor
                .cast(switchboard_actors::shell::OutboundMsg::Held(on));
        }
        tracing::info!(%call, %agent, held = on, "hold");
        self.hub.publish(
            &tenant,
            Event::CallHeld {
                version: 1,
                agent: agent.0.clone(),
                call: call.to_string(),
                held: on,
            },
        );
        Ok(())
    }

    /// A phone-bar blind transfer: the Call actor decides (and answers);
    /// a held customer is taken off hold first, so the next agent hears
    /// it. An outbound call's target is rung here (see `consult`).
    pub(in crate::node::core) async fn transfer(
        &mut self,
        tenant: TenantId,
        agent: AgentId,
        to: TransferTarget,
        reply: HoldReply,
        now: Instant,
    ) {
        let Some(call) = self.talking_call(&tenant, &agent) else {
            let why = "the agent is not talking to a customer";
            let _ = reply.send(Err(LiveError::Conflict(why.into())));
            return;
        };
        let Some(c) = self.cc.get(&call) else {
            let done = self.send_on(&tenant, call, &agent, to, now).await;
            let _ = reply.send(done);
            return;
        };
        let (actor, held) = (c.actor.clone(), c.held);
        if held {
            if let Err(e) = self.hold_call(call, &agent, false, now) {
                let _ = reply.send(Err(e));
                return;
            }
        }
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let (kind, target) = super::consult::target_of(&to);
            let asked = ractor::call!(actor, |r| CallMsg::Transfer { to, reply: r });
            let done = match asked {
                Err(e) => Err(LiveError::Unavailable(e.to_string())),
                Ok(Err(TransferError::UnknownAgent(a))) => Err(LiveError::Invalid {
                    field: "agent".into(),
                    message: format!("no agent {a}"),
                }),
                Ok(Err(TransferError::UnknownGroup(g))) => Err(LiveError::Invalid {
                    field: "group".into(),
                    message: format!("no skill group {g}"),
                }),
                Ok(Err(e)) => Err(LiveError::Conflict(e.to_string())),
                Ok(Ok(())) => {
                    tracing::info!(%call, %agent, to = kind, %target, "transferred");
                    let event = super::consult::transferred(&agent, call, kind, target);
                    hub.publish(&tenant, event);
                    Ok(())
                }
            };
            let _ = reply.send(done);
        });
    }

    /// Sends a re-INVITE with `sdp` in `dialog`.
    fn reinvite(
        &mut self,
        dialog: &DialogId,
        sdp: String,
        local: LocalMedia,
        offered: Direction,
        now: Instant,
    ) -> Result<(), LiveError> {
        let Some(source) = self.calls.get(dialog).map(|c| c.source) else {
            return Err(LiveError::Conflict("the customer's dialog is gone".into()));
        };
        let host = self.contact_host_for(source);
        let Some(c) = self.calls.get_mut(dialog) else {
            return Err(LiveError::Conflict("the customer's dialog is gone".into()));
        };
        let via = make_via(c.transport.as_str(), &host, &new_branch(rand::random()));
        let mut req = c.dialog.request(Method::Invite, &via);
        req.headers.push("Allow", ALLOW);
        req.headers.push("Content-Type", "application/sdp");
        req.body = sdp.into_bytes().into();
        let tx = self
            .layer
            .send_request(&req, c.source, c.transport, now)
            .map_err(|e| LiveError::Unavailable(format!("the re-INVITE was not sent: {e}")))?;
        self.reinvites.insert(
            tx,
            ReInvite {
                dialog: dialog.clone(),
                local,
                offered,
                ack: None,
            },
        );
        Ok(())
    }

    /// Whether `tx` is one of our re-INVITEs.
    pub(in crate::node::core) fn is_reinvite(&self, tx: &TransactionId) -> bool {
        self.reinvites.contains_key(tx)
    }

    /// A response to a re-INVITE of ours: a 2xx is ACKed (each copy) and
    /// its answer applied to the leg; a refusal leaves the media as it is.
    pub(in crate::node::core) fn handle_reinvite_response(
        &mut self,
        tx: TransactionId,
        resp: Option<Response>,
    ) {
        let Some(resp) = resp else {
            tracing::warn!("the customer's phone did not answer the re-INVITE");
            self.reinvites.remove(&tx);
            return;
        };
        if resp.code < 200 {
            return;
        }
        if resp.code >= 300 {
            tracing::warn!(
                code = resp.code,
                "the customer's phone refused the re-INVITE"
            );
            self.reinvites.remove(&tx);
            return;
        }
        let Some(dialog) = self.reinvites.get(&tx).map(|r| r.dialog.clone()) else {
            return;
        };
        let Some(source) = self.calls.get(&dialog).map(|c| c.source) else {
            return;
        };
        let host = self.contact_host_for(source);
        let (Some(r), Some(c)) = (self.reinvites.get_mut(&tx), self.calls.get_mut(&dialog)) else {
            return;
        };
        if let Some(ack) = &r.ack {
            let _ = self.layer.send_ack(ack, c.source, c.transport);
            return;
        }
        let via = make_via(c.transport.as_str(), &host, &new_branch(rand::random()));
        let ack = c.dialog.request(Method::Ack, &via);
        let _ = self.layer.send_ack(&ack, c.source, c.transport);
        r.ack = Some(ack);
        let answer = std::str::from_utf8(&resp.body)
            .map_err(|_| SdpError::NoAudio)
            .and_then(|sdp| parse_answer(sdp, &r.local, r.offered));
        let call = c.cc.as_ref().map(|(call, _)| *call);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "the re-INVITE's answer is unusable");
                return;
            }
        };
        // The customer's leg of an inbound or an outbound call.
        let leg = call.and_then(|call| {
            self.cc.get(&call).map(|c| &c.customer_leg).or_else(|| {
                self.ob
                    .get(&call)
                    .and_then(|c| c.customer.as_ref())
                    .map(|x| &x.leg)
            })
        });
        if let Some(leg) = leg {
            leg.send(LegCmd::Remote(answer));
        }
    }

    /// The re-INVITE's transaction is over.
    pub(in crate::node::core) fn reinvite_done(&mut self, tx: &TransactionId) {
        self.reinvites.remove(tx);
    }
}

fn check_held(held: bool, on: bool) -> Result<(), LiveError> {
    match (held, on) {
        (true, true) => Err(LiveError::Conflict("the call is on hold already".into())),
        (false, false) => Err(LiveError::Conflict("the call is not on hold".into())),
        _ => Ok(()),
    }
}
