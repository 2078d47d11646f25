//! The INVITE client transaction (RFC 3261 §17.1.1, as updated by RFC 6026
//! §7.2 and §8.4 with the Accepted state).
//!
//! ```text
//!  Calling --1xx--> Proceeding --300-699 (ACK sent)--> Completed --Timer D--> Terminated
//!     |                 |
//!     +-------2xx-------+--> Accepted --Timer M--> Terminated
//!  Calling --Timer B / transport error--> Terminated
//! ```
//!
//! The machine sends the INVITE when created, retransmits it on Timer A
//! over unreliable transports, builds and sends the ACK for a non-2xx final
//! response itself (§17.1.1.3) and resends that same ACK for every
//! retransmission of the final response. A 2xx is the TU's business: it is
//! passed up, and so is every further 2xx while Accepted (retransmissions
//! and forked answers); the TU sends the ACK for a 2xx itself (§13.2.2.4).

use super::timer::{Timer, TimerConfig, Timers};
use super::{Outputs, TransactionEvent, Transmit};
use crate::sip::message::{Request, Response};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Where an INVITE client transaction is. Each state holds what it still
/// needs, so buffers are freed as soon as the RFC stops needing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientInviteState {
    /// The INVITE is out and nothing came back. `request` is resent
    /// unchanged on Timer A (unreliable transports only), whose current
    /// interval is `interval`.
    Calling {
        interval: Duration,
        request: Bytes,
        ack: AckTemplate,
    },
    /// A provisional response arrived: no more retransmissions (§17.1.1.2).
    Proceeding { ack: AckTemplate },
    /// A 300-699 arrived and was ACKed; `ack` is resent for every
    /// retransmission of that response until Timer D.
    Completed { code: u16, ack: Bytes },
    /// RFC 6026 §7.2, §8.4: a 2xx arrived; further 2xx go to the TU until
    /// Timer M.
    Accepted,
    /// Over; the machine sends nothing more.
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    config: TimerConfig,
    reliable: bool,
    state: ClientInviteState,
    timers: Timers,
    /// RFC 3261 §9.1: when the TU sent a CANCEL, the final response is
    /// awaited until this deadline (64*T1 after the CANCEL).
    cancel_deadline: Option<Instant>,
    out: Outputs,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE is queued for sending, Timer B
    /// armed, and Timer A armed over unreliable transports (§17.1.1.2).
    /// `request` is the complete INVITE, top Via with a fresh branch; the
    /// machine keeps its bytes and what the ACK needs, not the request.
    pub fn new(request: &Request, reliable: bool, config: TimerConfig, now: Instant) -> Self {
        let config = config.sanitized();
        let bytes = Bytes::from(request.to_bytes());
        let mut timers = Timers::default();
        // RFC 3261 17.1.1.2: Timer A only over unreliable transports.
        if !reliable {
            timers.set(Timer::A, now + config.t1);
        }
        timers.set(Timer::B, now + config.t1x64());
        let mut out = Outputs::default();
        out.transmit(bytes.clone());
        ClientInvite {
            config,
            reliable,
            state: ClientInviteState::Calling {
                interval: config.t1,
                request: bytes,
                ack: AckTemplate::new(request),
            },
            timers,
            cancel_deadline: None,
            out,
        }
    }

    /// The current state, with the data it carries.
    pub fn state(&self) -> &ClientInviteState {
        &self.state
    }

    /// True once the machine has reached Terminated: it sends nothing more
    /// and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// A response whose top-Via branch and CSeq method match this
    /// transaction (§17.1.3; the layer does the matching).
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        use ClientInviteState::{Accepted, Calling, Completed, Proceeding, Terminated};
        let code = response.code;
        self.state = match (std::mem::replace(&mut self.state, Terminated), code) {
            (Calling { ack, .. } | Proceeding { ack }, 100..=199) => {
                // RFC 3261 17.1.1.2: a provisional response stops the
                // retransmissions; Timer B only guards Calling, unless a
                // CANCEL already bounds the wait (§9.1).
                self.timers.stop(Timer::A);
                match self.cancel_deadline {
                    Some(at) => self.timers.set(Timer::B, at),
                    None => self.timers.stop(Timer::B),
                }
                self.out.event(TransactionEvent::Response(response));
                Proceeding { ack }
            }
            (Calling { .. } | Proceeding { .. }, 200..=299) => {
                // RFC 6026 8.4: Accepted, Timer M = 64*T1.
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.timers.set(Timer::M, now + self.config.t1x64());
                self.out.event(TransactionEvent::Response(response));
                Accepted
            }
            (Calling { ack, .. } | Proceeding { ack }, 300..) => {
                // RFC 3261 17.1.1.2: ACK, pass up, Completed with Timer D.
                let ack = ack.render(&response);
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.out.transmit(ack.clone());
                self.out.event(TransactionEvent::Response(response));
                let d = self.config.timer_d(self.reliable);
                if d.is_zero() {
                    self.terminate();
                    return;
                }
                self.timers.set(Timer::D, now + d);
                Completed { code, ack }
            }
            (Completed { code, ack }, 300..) => {
                // RFC 3261 17.1.1.2: each retransmission of the final
                // response gets the same ACK; nothing goes to the TU.
                self.out.transmit(ack.clone());
                Completed { code, ack }
            }
            (Accepted, 200..=299) => {
                // RFC 6026 8.4: 2xx retransmissions and forked 2xx go to the
                // TU, which ACKs them; anything else is absorbed.
                self.out.event(TransactionEvent::Response(response));
                Accepted
            }
            (state, _) => state,
        };
    }

    /// The TU sent a CANCEL for this INVITE. RFC 3261 §9.1: if no final
    /// response arrives within 64*T1 of the CANCEL, the transaction is
    /// destroyed. Timer B is re-armed for that deadline in Proceeding (and
    /// kept for it if the CANCEL went out while Calling); without this a
    /// peer that rang and vanished would hold the transaction for ever.
    pub fn cancel_sent(&mut self, now: Instant) {
        let deadline = now + self.config.t1x64();
        match self.state {
            ClientInviteState::Calling { .. } => self.cancel_deadline = Some(deadline),
            ClientInviteState::Proceeding { .. } => {
                self.cancel_deadline = Some(deadline);
                self.timers.set(Timer::B, deadline);
            }
            _ => {}
        }
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match (timer, &mut self.state) {
                (
                    Timer::A,
                    ClientInviteState::Calling {
                        interval, request, ..
                    },
                ) => {
                    // RFC 3261 17.1.1.2: Timer A doubles (bounded by B only).
                    *interval = interval.saturating_mul(2);
                    self.out.transmit(request.clone());
                    self.timers.set(Timer::A, now + *interval);
                }
                (
                    Timer::B,
                    ClientInviteState::Calling { .. } | ClientInviteState::Proceeding { .. },
                ) => {
                    // RFC 3261 17.1.1.2: no response within 64*T1; or §9.1:
                    // no final response within 64*T1 of a CANCEL.
                    self.out.event(TransactionEvent::Timeout(Timer::B));
                    self.terminate();
                }
                (Timer::D, ClientInviteState::Completed { .. })
                | (Timer::M, ClientInviteState::Accepted) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not send the INVITE or the ACK (§17.1.1.2: the
    /// TU is told and the transaction ends). In Accepted the TU sends the
    /// ACKs itself, so a failure there is not this machine's.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        match self.state {
            ClientInviteState::Calling { .. }
            | ClientInviteState::Proceeding { .. }
            | ClientInviteState::Completed { .. } => {
                self.out.event(TransactionEvent::TransportError);
                self.terminate();
            }
            ClientInviteState::Accepted | ClientInviteState::Terminated => {}
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
        self.state = ClientInviteState::Terminated;
        self.out.event(TransactionEvent::Terminated);
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3), prepared
/// when the INVITE is sent: Request-URI, Call-ID, From and Route of the
/// INVITE, only its top Via, and its CSeq number with method ACK. The To
/// comes from the response when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTemplate {
    /// The start line and every header but To, serialised.
    head: String,
    /// The INVITE's To, used if a response lacks one.
    to: String,
}

impl AckTemplate {
    /// Prepares the ACK of `invite`.
    pub fn new(invite: &Request) -> AckTemplate {
        let mut head = String::with_capacity(256);
        head.push_str("ACK ");
        head.push_str(&invite.uri);
        head.push_str(" SIP/2.0\r\n");
        let mut line = |name: &str, value: &str| {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        };
        if let Some(via) = super::top_via_value(&invite.headers) {
            line("Via", via);
        }
        line("Max-Forwards", "70");
        for route in invite.headers.get_all("Route") {
            line("Route", route);
        }
        for name in ["From", "Call-ID"] {
            if let Some(v) = invite.headers.get(name) {
                line(name, v);
            }
        }
        let seq = invite
            .headers
            .get("CSeq")
            .and_then(|c| c.split_whitespace().next())
            .unwrap_or("1");
        head.push_str("CSeq: ");
        head.push_str(seq);
        head.push_str(" ACK\r\n");
        AckTemplate {
            head,
            to: invite.headers.get("To").unwrap_or("").to_owned(),
        }
    }

    /// The ACK for `response`, serialised.
    pub fn render(&self, response: &Response) -> Bytes {
        let to = response.headers.get("To").unwrap_or(&self.to);
        let mut out = Vec::with_capacity(self.head.len() + to.len() + 32);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{invite, response_to, times_of, Clock};
    use super::*;

    fn new(reliable: bool) -> (ClientInvite, Clock) {
        let clock = Clock::new();
        let m = ClientInvite::new(&invite(), reliable, TimerConfig::default(), clock.now);
        (m, clock)
    }

    fn drive(m: &mut ClientInvite, clock: &mut Clock, limit: Duration) -> Vec<(u128, Bytes)> {
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

    fn events(m: &mut ClientInvite) -> Vec<TransactionEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn timer_a_doubles_until_timer_b() {
        let (mut m, mut clock) = new(false);
        let first = m.poll_transmit().expect("INVITE sent at once");
        assert!(first.bytes.starts_with(b"INVITE "));
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        // RFC 3261 17.1.1.2: 500 ms, 1 s, 2 s, 4 s, 8 s, 16 s after each other.
        assert_eq!(times_of(&sent), vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert!(sent.iter().all(|(_, b)| *b == first.bytes));
        assert_eq!(clock.elapsed_ms(), 32_000);
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::Timeout(Timer::B),
                TransactionEvent::Terminated
            ]
        );
        assert!(m.is_terminated());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn reliable_has_no_timer_a() {
        let (mut m, mut clock) = new(true);
        assert!(m.poll_transmit().is_some());
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert!(sent.is_empty());
        assert_eq!(clock.elapsed_ms(), 32_000);
        assert!(m.is_terminated());
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        clock.advance_ms(100);
        m.handle_response(response_to(&invite(), 180, Some("t1")), clock.now);
        assert!(matches!(m.state(), ClientInviteState::Proceeding { .. }));
        assert!(matches!(&events(&mut m)[..], [TransactionEvent::Response(r)] if r.code == 180));
        assert_eq!(m.poll_timeout(), None);
        // A retransmitted 1xx is passed up again.
        m.handle_response(response_to(&invite(), 180, Some("t1")), clock.now);
        assert_eq!(events(&mut m).len(), 1);
        assert!(m.poll_transmit().is_none());
    }

    #[test]
    fn non_2xx_is_acked_and_ack_resent_per_retransmission() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        clock.advance_ms(700);
        m.handle_timeout(clock.now);
        assert!(m.poll_transmit().is_some(), "A fired at 500 ms");
        let busy = response_to(&invite(), 486, Some("callee"));
        m.handle_response(busy.clone(), clock.now);
        let ack = m.poll_transmit().expect("ACK");
        let text = std::str::from_utf8(&ack.bytes).unwrap_or_default();
        assert!(
            text.starts_with("ACK sip:bob@example.com SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n"));
        assert_eq!(text.matches("Via:").count(), 1, "top Via only");
        assert!(text.contains("To: <sip:bob@example.com>;tag=callee\r\n"));
        assert!(text.contains("From: <sip:alice@example.com>;tag=a1\r\n"));
        assert!(text.contains("Call-ID: call-1\r\n"));
        assert!(text.contains("CSeq: 7 ACK\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert!(text.contains("Route: <sip:proxy.example.com;lr>\r\n"));
        assert!(matches!(&events(&mut m)[..], [TransactionEvent::Response(r)] if r.code == 486));
        assert!(matches!(
            m.state(),
            ClientInviteState::Completed { code: 486, .. }
        ));
        // Retransmitted 486: same ACK, nothing to the TU.
        m.handle_response(busy, clock.now);
        assert_eq!(m.poll_transmit().map(|t| t.bytes), Some(ack.bytes.clone()));
        assert!(events(&mut m).is_empty());
        // Timer D: 32 s, no more INVITE retransmissions.
        let sent = drive(&mut m, &mut clock, Duration::from_secs(100));
        assert!(sent.is_empty());
        assert_eq!(clock.elapsed_ms(), 700 + 32_000);
        assert_eq!(events(&mut m), vec![TransactionEvent::Terminated]);
    }

    #[test]
    fn reliable_non_2xx_terminates_at_once() {
        let (mut m, clock) = new(true);
        m.poll_transmit();
        m.handle_response(response_to(&invite(), 603, Some("x")), clock.now);
        assert!(m.poll_transmit().is_some(), "ACK still sent");
        assert!(m.is_terminated());
        let ev = events(&mut m);
        assert!(matches!(
            ev[..],
            [TransactionEvent::Response(_), TransactionEvent::Terminated]
        ));
    }

    #[test]
    fn rfc6026_accepted_passes_every_2xx_until_timer_m() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        m.handle_response(response_to(&invite(), 183, Some("a")), clock.now);
        clock.advance_ms(1000);
        m.handle_response(response_to(&invite(), 200, Some("a")), clock.now);
        assert_eq!(m.state(), &ClientInviteState::Accepted);
        assert!(m.poll_transmit().is_none(), "the TU ACKs a 2xx");
        // A retransmission and a forked 2xx both reach the TU.
        m.handle_response(response_to(&invite(), 200, Some("a")), clock.now);
        m.handle_response(response_to(&invite(), 200, Some("b")), clock.now);
        // A late non-2xx is absorbed.
        m.handle_response(response_to(&invite(), 500, Some("c")), clock.now);
        let codes: Vec<u16> = events(&mut m)
            .into_iter()
            .filter_map(|e| match e {
                TransactionEvent::Response(r) => Some(r.code),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![183, 200, 200, 200]);
        let sent = drive(&mut m, &mut clock, Duration::from_secs(100));
        assert!(sent.is_empty());
        assert_eq!(clock.elapsed_ms(), 1000 + 32_000, "Timer M = 64*T1");
        assert_eq!(events(&mut m), vec![TransactionEvent::Terminated]);
    }

    #[test]
    fn cancel_bounds_proceeding() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        m.handle_response(response_to(&invite(), 180, Some("t")), clock.now);
        assert_eq!(m.poll_timeout(), None, "Proceeding waits for the final");
        clock.advance_ms(10_000);
        m.cancel_sent(clock.now);
        let sent = drive(&mut m, &mut clock, Duration::from_secs(100));
        assert!(sent.is_empty());
        assert_eq!(
            clock.elapsed_ms(),
            10_000 + 32_000,
            "§9.1: 64*T1 after the CANCEL"
        );
        let ev = events(&mut m);
        assert_eq!(
            ev[1..],
            [
                TransactionEvent::Timeout(Timer::B),
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn proceeding_to_completed_and_calling_to_accepted() {
        let (mut m, clock) = new(false);
        m.poll_transmit();
        m.handle_response(response_to(&invite(), 180, Some("t")), clock.now);
        m.handle_response(response_to(&invite(), 404, Some("t")), clock.now);
        assert!(matches!(
            m.state(),
            ClientInviteState::Completed { code: 404, .. }
        ));
        assert!(m
            .poll_transmit()
            .is_some_and(|t| t.bytes.starts_with(b"ACK ")));
        // Late provisional and 2xx after a non-2xx are absorbed.
        m.handle_response(response_to(&invite(), 180, Some("t")), clock.now);
        m.handle_response(response_to(&invite(), 200, Some("t")), clock.now);
        assert!(m.poll_transmit().is_none());
        assert_eq!(events(&mut m).len(), 2, "the 180 and the 404 only");

        let (mut m, clock) = new(false);
        m.poll_transmit();
        m.handle_response(response_to(&invite(), 200, Some("t")), clock.now);
        assert_eq!(m.state(), &ClientInviteState::Accepted);
        assert_eq!(m.poll_timeout(), Some(clock.now + Duration::from_secs(32)));
        assert!(m.poll_transmit().is_none());
    }

    #[test]
    fn transport_error_terminates() {
        let (mut m, clock) = new(false);
        m.poll_transmit();
        m.handle_transport_error(clock.now);
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::TransportError,
                TransactionEvent::Terminated
            ]
        );
        assert_eq!(m.poll_timeout(), None);
    }
}
