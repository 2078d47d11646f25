//! Re-INVITEs from the phone at the far end of one of a call's legs: the
//! customer's carrier refreshing the session or changing codec, a phone's
//! hold key, a new address after a network change; on every kind of call
//! (hotline, outbound, internal). Each leg keeps its own
//! side of the SDP (the session whose version the next offer raises), so
//! the answer comes from there and the leg is told where and how to send
//! from then on (RFC 3261 §14.2, RFC 3264 §8). A re-INVITE without SDP
//! gets our offer in the 200 and the answer comes in the ACK.

use super::*;

/// A leg's side of its SDP, the leg, and the direction we want on it.
struct LegSdp<'a> {
    session: &'a mut LocalSession,
    local: &'a LocalMedia,
    leg: &'a Leg,
    want: Direction,
}

impl<'a> LegSdp<'a> {
    fn of(x: &'a mut OutLeg) -> LegSdp<'a> {
        LegSdp {
            session: &mut x.session,
            local: &x.local,
            leg: &x.leg,
            want: Direction::SendRecv,
        }
    }
}

/// Ours while the agent holds the customer: we only send (music).
fn held(on: bool) -> Direction {
    if on {
        Direction::SendOnly
    } else {
        Direction::SendRecv
    }
}

impl SipCore {
    /// The SDP state of `party`'s leg of `call`, whatever the call's kind
    /// (`Customer` is an internal call's caller, any other party its
    /// callee).
    fn leg_sdp(&mut self, call: CallId, party: &Party) -> Option<LegSdp<'_>> {
        if let Some(c) = self.cc.get_mut(&call) {
            return match party {
                Party::Customer => {
                    let (session, local) = &mut c.customer_sdp;
                    Some(LegSdp {
                        session,
                        local,
                        leg: &c.customer_leg,
                        want: held(c.held),
                    })
                }
                Party::Agent(a) => c.agents.get_mut(a).map(LegSdp::of),
                Party::External => c.external.as_mut().map(LegSdp::of),
                Party::Supervisor => c.monitor.as_mut().map(|m| LegSdp::of(&mut m.leg)),
                Party::Consulted => c.consult.as_mut().map(|k| LegSdp::of(&mut k.leg)),
            };
        }
        if let Some(c) = self.ob.get_mut(&call) {
            return match party {
                Party::Customer => c.customer.as_mut().map(|x| LegSdp {
                    want: held(c.held),
                    ..LegSdp::of(x)
                }),
                Party::Agent(_) => c.agent_leg.as_mut().map(LegSdp::of),
                Party::External => c.external.as_mut().map(LegSdp::of),
                Party::Supervisor => c.monitor.as_mut().map(|m| LegSdp::of(&mut m.leg)),
                Party::Consulted => c.consult.as_mut().map(|k| LegSdp::of(&mut k.leg)),
            };
        }
        // An internal call: the caller's leg, or the callee's.
        let c = self.ic.get_mut(&call)?;
        match party {
            Party::Customer => {
                let (session, local, leg) = c.caller_sdp_mut();
                Some(LegSdp {
                    session,
                    local,
                    leg,
                    want: Direction::SendRecv,
                })
            }
            _ => c.callee_mut().map(LegSdp::of),
        }
    }

    /// The local address of `party`'s leg of `call`.
    pub(in crate::node::core) fn leg_local(
        &mut self,
        call: CallId,
        party: &Party,
    ) -> Option<SocketAddr> {
        self.leg_sdp(call, party).map(|x| x.leg.local)
    }

    /// Answers a re-INVITE from `party`'s phone: with `body` an offer, our
    /// answer (the leg now sends as it says); without, our offer, and the
    /// direction offered, whose answer the ACK brings. An offer we cannot
    /// take leaves the leg as it was.
    pub(in crate::node::core) fn leg_reinvite(
        &mut self,
        call: CallId,
        party: &Party,
        body: &str,
    ) -> Result<(String, Option<Direction>), SdpError> {
        let Some(x) = self.leg_sdp(call, party) else {
            return Err(SdpError::NoAudio);
        };
        if body.is_empty() {
            return Ok((x.session.offer(x.local, x.want), Some(x.want)));
        }
        let offer = parse_offer(body)?;
        let (answer, sdp) = x.session.answer(&offer, x.local, x.want)?;
        x.leg.send(LegCmd::Remote(answer));
        Ok((sdp, None))
    }

    /// The ACK's answer to the offer [`Self::leg_reinvite`] made.
    pub(in crate::node::core) fn leg_reinvite_answered(
        &mut self,
        call: CallId,
        party: &Party,
        offered: Direction,
        sdp: &str,
    ) {
        let Some(x) = self.leg_sdp(call, party) else {
            return;
        };
        match parse_answer(sdp, x.local, offered) {
            Ok(answer) => x.leg.send(LegCmd::Remote(answer)),
            Err(e) => tracing::info!(%call, error = %e, "unusable answer in ACK"),
        }
    }
}
