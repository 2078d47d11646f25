//! The INVITE server transaction (RFC 3261 §17.2.1, as updated by RFC 6026
//! §7.1, §8.7 and §8.8 with the Accepted state).
//!
//! ```text
//!  Proceeding --300-699 from TU--> Completed --ACK--> Confirmed --Timer I--> Terminated
//!      |                              +--Timer H--> Terminated
//!      +--2xx from TU--> Accepted --Timer L--> Terminated
//! ```
//!
//! **100 Trying.** §17.2.1 asks for a 100 Trying unless the TU answers
//! within 200 ms. This machine arms [`Timer::Trying`] at creation (after
//! [`TimerConfig::trying_delay`], 200 ms by default) and sends the 100
//! itself when it fires and the TU has sent no response yet; a TU that
//! answers quickly (a 180, a 486, a 200) saves the message. A retransmitted
//! INVITE that arrives before then is answered with the 100 at once. With a
//! zero `trying_delay` the 100 goes out when the machine is created.
//!
//! **Retransmissions.** A retransmitted INVITE gets the last provisional
//! response again while Proceeding and the final response while Completed
//! (§17.2.1); in Accepted it is absorbed (RFC 6026 §7.1: the TU resends the
//! 2xx on its own schedule, §13.3.1.4, and may pass each copy through
//! [`ServerInvite::send_response`]). The ACK of a non-2xx is consumed here;
//! an ACK arriving in Accepted is reported to the TU
//! ([`TransactionEvent::AckFor2xx`]), not consumed.
//!
//! **Transport errors** are reported to the TU and do not end the
//! transaction (RFC 6026 §8.8).

use super::timer::{Timer, TimerConfig, Timers};
use super::{Outputs, TransactionError, TransactionEvent, Transmit};
use crate::sip::message::{Method, Request, Response};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Where an INVITE server transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInviteState {
    /// Waiting for the TU's final response. `provisional` is resent for
    /// each retransmitted INVITE: the machine's own 100 Trying until the TU
    /// sends a provisional response, then the TU's latest. `sent` is false
    /// while the 100 Trying is still held back (§17.2.1's 200 ms).
    Proceeding { provisional: Bytes, sent: bool },
    /// A 300-699 went out; it is resent on Timer G and per retransmitted
    /// INVITE until the ACK. `interval` is the current Timer G interval.
    Completed {
        code: u16,
        response: Bytes,
        interval: Duration,
    },
    /// The ACK arrived; ACK copies are absorbed until Timer I.
    Confirmed { code: u16 },
    /// RFC 6026 §7.1: a 2xx went out; INVITE copies are absorbed, the TU's
    /// 2xx copies pass through, ACKs go to the TU, until Timer L.
    Accepted,
    /// Over; the machine sends nothing more.
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    config: TimerConfig,
    reliable: bool,
    state: ServerInviteState,
    timers: Timers,
    out: Outputs,
}

impl ServerInvite {
    /// Starts the transaction for a received INVITE (Proceeding) and arms
    /// the 100 Trying timer.
    pub fn new(invite: &Request, reliable: bool, config: TimerConfig, now: Instant) -> Self {
        let config = config.sanitized();
        let provisional = trying_for(invite);
        let mut timers = Timers::default();
        let mut out = Outputs::default();
        // RFC 3261 17.2.1: 100 Trying unless the TU answers within 200 ms.
        let sent = config.trying_delay.is_zero();
        if sent {
            out.transmit(provisional.clone());
        } else {
            timers.set(Timer::Trying, now + config.trying_delay);
        }
        ServerInvite {
            config,
            reliable,
            state: ServerInviteState::Proceeding { provisional, sent },
            timers,
            out,
        }
    }

    /// The current state, with the data it carries.
    pub fn state(&self) -> &ServerInviteState {
        &self.state
    }

    /// True once the machine has reached Terminated: it sends nothing more
    /// and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// True until a final response has been sent: while Proceeding a
    /// CANCEL still matters (§9.2).
    pub fn is_proceeding(&self) -> bool {
        matches!(self.state, ServerInviteState::Proceeding { .. })
    }

    /// A request matched to this transaction (§17.2.3): a retransmitted
    /// INVITE or an ACK. Other methods are ignored.
    pub fn handle_request(&mut self, request: &Request, now: Instant) {
        match request.method {
            Method::Invite => self.on_invite_retransmission(),
            Method::Ack => self.on_ack(now),
            _ => {}
        }
    }

    fn on_invite_retransmission(&mut self) {
        match &mut self.state {
            ServerInviteState::Proceeding { provisional, sent } => {
                // RFC 3261 17.2.1: resend the most recent provisional; with
                // none sent yet, the peer is waiting: the 100 goes now.
                self.out.transmit(provisional.clone());
                *sent = true;
                self.timers.stop(Timer::Trying);
            }
            ServerInviteState::Completed { response, .. } => {
                // RFC 3261 17.2.1: resend the final response.
                let r = response.clone();
                self.out.transmit(r);
            }
            // RFC 6026 7.1: absorbed in Accepted; §17.2.1: in Confirmed.
            ServerInviteState::Confirmed { .. } | ServerInviteState::Accepted => {}
            ServerInviteState::Terminated => return,
        }
        self.out.event(TransactionEvent::RequestRetransmitted);
    }

    fn on_ack(&mut self, now: Instant) {
        match self.state {
            ServerInviteState::Completed { code, .. } => {
                // RFC 3261 17.2.1: Confirmed, G and H stop, Timer I starts.
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                self.state = ServerInviteState::Confirmed { code };
                let i = self.config.t4_or_zero(self.reliable);
                if i.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::I, now + i);
                }
            }
            // RFC 6026 7.1: an ACK in Accepted is passed to the TU.
            ServerInviteState::Accepted => self.out.event(TransactionEvent::AckFor2xx),
            // Absorbed in Confirmed; meaningless before a final response.
            ServerInviteState::Confirmed { .. }
            | ServerInviteState::Proceeding { .. }
            | ServerInviteState::Terminated => {}
        }
    }

    /// The TU's response. Provisional responses are allowed while
    /// Proceeding; a final one moves the machine on; in Accepted only 2xx
    /// (the TU's retransmissions, RFC 6026 §7.1) pass through.
    pub fn send_response(
        &mut self,
        response: &Response,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let code = response.code;
        if !(100..=699).contains(&code) {
            return Err(TransactionError::InvalidStatus(code));
        }
        match self.state {
            ServerInviteState::Proceeding { .. } => {
                let bytes = Bytes::from(response.to_bytes());
                self.timers.stop(Timer::Trying);
                self.out.transmit(bytes.clone());
                match code {
                    100..=199 => {
                        self.state = ServerInviteState::Proceeding {
                            provisional: bytes,
                            sent: true,
                        };
                    }
                    200..=299 => {
                        // RFC 6026 8.7: Accepted with Timer L = 64*T1.
                        self.timers.set(Timer::L, now + self.config.t1x64());
                        self.state = ServerInviteState::Accepted;
                    }
                    _ => {
                        // RFC 3261 17.2.1: Timer G (unreliable) and H.
                        if !self.reliable {
                            self.timers.set(Timer::G, now + self.config.t1);
                        }
                        self.timers.set(Timer::H, now + self.config.t1x64());
                        self.state = ServerInviteState::Completed {
                            code,
                            response: bytes,
                            interval: self.config.t1,
                        };
                    }
                }
                Ok(())
            }
            ServerInviteState::Accepted if (200..300).contains(&code) => {
                // RFC 6026 7.1: the TU's 2xx retransmissions pass through.
                self.out.transmit(Bytes::from(response.to_bytes()));
                Ok(())
            }
            ServerInviteState::Accepted
            | ServerInviteState::Completed { .. }
            | ServerInviteState::Confirmed { .. } => Err(TransactionError::FinalResponseSent),
            ServerInviteState::Terminated => Err(TransactionError::Terminated),
        }
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match (timer, &mut self.state) {
                (
                    Timer::Trying,
                    ServerInviteState::Proceeding {
                        provisional,
                        sent: sent @ false,
                    },
                ) => {
                    // RFC 3261 17.2.1: the TU was silent for 200 ms.
                    self.out.transmit(provisional.clone());
                    *sent = true;
                }
                (
                    Timer::G,
                    ServerInviteState::Completed {
                        response, interval, ..
                    },
                ) => {
                    // RFC 3261 17.2.1: G doubles, capped at T2.
                    *interval = self.config.double_capped(*interval);
                    self.out.transmit(response.clone());
                    self.timers.set(Timer::G, now + *interval);
                }
                (Timer::H, ServerInviteState::Completed { .. }) => {
                    // RFC 3261 17.2.1: the ACK never came.
                    self.out.event(TransactionEvent::Timeout(Timer::H));
                    self.terminate();
                }
                (Timer::I, ServerInviteState::Confirmed { .. })
                | (Timer::L, ServerInviteState::Accepted) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not send a response: the TU is told, the
    /// machine stays where it is (RFC 6026 §8.8).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if !self.is_terminated() {
            self.out.event(TransactionEvent::TransportError);
        }
    }

    /// The next message to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.poll_transmit()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.out.poll_event()
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn terminate(&mut self) {
        self.timers.clear();
        self.state = ServerInviteState::Terminated;
        self.out.event(TransactionEvent::Terminated);
    }
}

/// The 100 Trying for `invite` (RFC 3261 §8.2.6.1/§8.2.6.2: Via, From, To
/// without a new tag, Call-ID, CSeq and Timestamp copied), serialised in
/// one buffer the way [`Response::to_bytes`] would.
fn trying_for(invite: &Request) -> Bytes {
    const COPIED: [&str; 6] = ["Via", "From", "To", "Call-ID", "CSeq", "Timestamp"];
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"SIP/2.0 100 Trying\r\n");
    for (name, value) in invite.headers.iter() {
        if COPIED.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ack_of, invite, response_to, times_of, Clock};
    use super::*;

    fn new(reliable: bool) -> (ServerInvite, Clock) {
        let clock = Clock::new();
        let m = ServerInvite::new(&invite(), reliable, TimerConfig::default(), clock.now);
        (m, clock)
    }

    fn drive(m: &mut ServerInvite, clock: &mut Clock, limit: Duration) -> Vec<(u128, Bytes)> {
        let mut sent = Vec::new();
        while let Some(at) = m.poll_timeout() {
            if at - clock.start > limit {
                break;
            }
            clock.now = at;
            m.handle_timeout(at);
            while let Some(t) = m.poll_transmit() {
                sent.push((clock.elapsed_ms(), t.bytes));
            }
        }
        sent
    }

    fn sent(m: &mut ServerInvite) -> Vec<Bytes> {
        std::iter::from_fn(|| m.poll_transmit())
            .map(|t| t.bytes)
            .collect()
    }

    fn events(m: &mut ServerInvite) -> Vec<TransactionEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn trying_after_200ms_unless_the_tu_answers() {
        let (mut m, mut clock) = new(false);
        assert!(sent(&mut m).is_empty());
        assert_eq!(
            m.poll_timeout(),
            Some(clock.now + Duration::from_millis(200))
        );
        let out = drive(&mut m, &mut clock, Duration::from_millis(300));
        assert_eq!(times_of(&out), vec![200]);
        let trying = Response::to(&invite(), 100, "Trying").to_bytes();
        assert_eq!(&out[0].1[..], &trying[..], "same bytes as Response::to");
        // A retransmitted INVITE gets the 100 again.
        m.handle_request(&invite(), clock.now);
        assert_eq!(sent(&mut m), vec![out[0].1.clone()]);
        assert_eq!(events(&mut m), vec![TransactionEvent::RequestRetransmitted]);

        // A TU that rings within 200 ms: no 100 at all.
        let (mut m, mut clock) = new(false);
        clock.advance_ms(50);
        let ringing = response_to(&invite(), 180, Some("u"));
        assert_eq!(m.send_response(&ringing, clock.now), Ok(()));
        assert_eq!(sent(&mut m).len(), 1);
        assert_eq!(m.poll_timeout(), None);
        m.handle_request(&invite(), clock.now);
        assert_eq!(sent(&mut m), vec![Bytes::from(ringing.to_bytes())]);
    }

    #[test]
    fn early_retransmission_gets_trying_at_once() {
        let (mut m, clock) = new(false);
        m.handle_request(&invite(), clock.now);
        let out = sent(&mut m);
        assert!(out.len() == 1 && out[0].starts_with(b"SIP/2.0 100 Trying\r\n"));
        assert_eq!(m.poll_timeout(), None);
        let zero = TimerConfig {
            trying_delay: Duration::ZERO,
            ..TimerConfig::default()
        };
        let mut m = ServerInvite::new(&invite(), false, zero, clock.now);
        assert_eq!(sent(&mut m).len(), 1, "zero delay: 100 at creation");
    }

    #[test]
    fn non_2xx_timer_g_capped_at_t2_until_timer_h() {
        let (mut m, mut clock) = new(false);
        let busy = response_to(&invite(), 486, Some("u"));
        m.send_response(&busy, clock.now).unwrap();
        let first = sent(&mut m);
        assert_eq!(first.len(), 1);
        let out = drive(&mut m, &mut clock, Duration::from_secs(60));
        // 500 ms, 1 s, 2 s, then every 4 s until H at 32 s.
        assert_eq!(
            times_of(&out),
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert!(out.iter().all(|(_, b)| *b == first[0]));
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::Timeout(Timer::H),
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn completed_ack_confirmed_timer_i() {
        let (mut m, mut clock) = new(false);
        let busy = response_to(&invite(), 486, Some("u"));
        m.send_response(&busy, clock.now).unwrap();
        sent(&mut m);
        // A retransmitted INVITE gets the final response again.
        m.handle_request(&invite(), clock.now);
        assert_eq!(sent(&mut m), vec![Bytes::from(busy.to_bytes())]);
        assert_eq!(
            m.send_response(&response_to(&invite(), 200, Some("u")), clock.now),
            Err(TransactionError::FinalResponseSent)
        );
        clock.advance_ms(700);
        m.handle_timeout(clock.now);
        assert_eq!(sent(&mut m).len(), 1, "G at 500 ms");
        m.handle_request(&ack_of(&invite(), "u"), clock.now);
        assert_eq!(m.state(), &ServerInviteState::Confirmed { code: 486 });
        // ACK copies and INVITE copies are absorbed, G stops.
        m.handle_request(&ack_of(&invite(), "u"), clock.now);
        let out = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert!(out.is_empty());
        assert_eq!(clock.elapsed_ms(), 700 + 5000, "Timer I = T4");
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::RequestRetransmitted,
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn reliable_variant() {
        let (mut m, mut clock) = new(true);
        m.send_response(&response_to(&invite(), 404, Some("u")), clock.now)
            .unwrap();
        assert_eq!(sent(&mut m).len(), 1);
        // No Timer G, only H.
        assert_eq!(m.poll_timeout(), Some(clock.now + Duration::from_secs(32)));
        clock.advance_ms(10);
        m.handle_request(&ack_of(&invite(), "u"), clock.now);
        assert!(m.is_terminated(), "Timer I = 0");
        let (mut m, mut clock) = new(true);
        m.send_response(&response_to(&invite(), 404, Some("u")), clock.now)
            .unwrap();
        assert_eq!(sent(&mut m).len(), 1);
        let out = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert_eq!(times_of(&out), Vec::<u128>::new());
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::Timeout(Timer::H),
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn rfc6026_accepted() {
        let (mut m, mut clock) = new(false);
        let ok = response_to(&invite(), 200, Some("u"));
        m.send_response(&ok, clock.now).unwrap();
        assert_eq!(sent(&mut m).len(), 1);
        assert_eq!(m.state(), &ServerInviteState::Accepted);
        // INVITE retransmissions are absorbed, no response resent.
        m.handle_request(&invite(), clock.now);
        assert!(sent(&mut m).is_empty());
        // The TU's 2xx retransmissions pass through; non-2xx are refused.
        clock.advance_ms(500);
        m.send_response(&ok, clock.now).unwrap();
        assert_eq!(sent(&mut m), vec![Bytes::from(ok.to_bytes())]);
        assert_eq!(
            m.send_response(&response_to(&invite(), 180, Some("u")), clock.now),
            Err(TransactionError::FinalResponseSent)
        );
        // The ACK goes to the TU.
        m.handle_request(&ack_of(&invite(), "u"), clock.now);
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::RequestRetransmitted,
                TransactionEvent::AckFor2xx
            ]
        );
        assert_eq!(m.state(), &ServerInviteState::Accepted);
        let out = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert!(out.is_empty());
        assert_eq!(clock.elapsed_ms(), 32_000, "Timer L = 64*T1 from the 2xx");
        assert_eq!(events(&mut m), vec![TransactionEvent::Terminated]);
        assert_eq!(
            m.send_response(&ok, clock.now),
            Err(TransactionError::Terminated)
        );
    }

    #[test]
    fn transport_error_is_reported_not_fatal() {
        let (mut m, clock) = new(false);
        m.handle_transport_error(clock.now);
        assert_eq!(events(&mut m), vec![TransactionEvent::TransportError]);
        assert!(m.is_proceeding());
        assert_eq!(
            m.send_response(&response_to(&invite(), 99, None), clock.now),
            Err(TransactionError::InvalidStatus(99))
        );
    }
}
