//! The non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! ```text
//!  Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
//!    |  \___________200-699___________/^
//!    +--Timer F / transport error (also from Proceeding)--> Terminated
//! ```
//!
//! The request goes out when the machine is created; over unreliable
//! transports Timer E resends it, T1 doubling up to T2 while Trying and
//! every T2 once Proceeding. The first final response goes to the TU and
//! later copies are absorbed for Timer K.

use super::timer::{Timer, TimerConfig, Timers};
use super::{Outputs, TransactionEvent, Transmit};
use crate::sip::message::{Request, Response};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Where a non-INVITE client transaction is. `request` (the bytes resent
/// on Timer E) lives only in the states that resend it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// The request is out; `interval` is the current Timer E interval.
    Trying { interval: Duration, request: Bytes },
    /// A provisional response arrived; Timer E now fires every T2.
    Proceeding { request: Bytes },
    /// The final response with status `code` arrived; copies are absorbed
    /// until Timer K.
    Completed { code: u16 },
    /// Over; the machine sends nothing more.
    Terminated,
}

/// A non-INVITE client transaction (BYE, CANCEL, OPTIONS, REGISTER, …).
#[derive(Debug)]
pub struct ClientNonInvite {
    config: TimerConfig,
    reliable: bool,
    state: ClientNonInviteState,
    timers: Timers,
    out: Outputs,
}

impl ClientNonInvite {
    /// Starts the transaction: the request is queued for sending, Timer F
    /// armed, and Timer E armed at T1 over unreliable transports
    /// (§17.1.2.2). The machine keeps the request's bytes, not the request.
    pub fn new(request: &Request, reliable: bool, config: TimerConfig, now: Instant) -> Self {
        let config = config.sanitized();
        let bytes = Bytes::from(request.to_bytes());
        let mut timers = Timers::default();
        if !reliable {
            timers.set(Timer::E, now + config.t1);
        }
        timers.set(Timer::F, now + config.t1x64());
        let mut out = Outputs::default();
        out.transmit(bytes.clone());
        ClientNonInvite {
            config,
            reliable,
            state: ClientNonInviteState::Trying {
                interval: config.t1,
                request: bytes,
            },
            timers,
            out,
        }
    }

    /// The current state, with the data it carries.
    pub fn state(&self) -> &ClientNonInviteState {
        &self.state
    }

    /// True once the machine has reached Terminated: it sends nothing more
    /// and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// A response matching this transaction (§17.1.3).
    pub fn handle_response(&mut self, response: Response, now: Instant) {
        use ClientNonInviteState::{Completed, Proceeding, Terminated, Trying};
        let code = response.code;
        self.state = match (std::mem::replace(&mut self.state, Terminated), code) {
            (Trying { request, .. } | Proceeding { request }, 100..=199) => {
                // RFC 3261 17.1.2.2: Proceeding; Timer E keeps running and
                // is reset to T2 when it next fires.
                self.out.event(TransactionEvent::Response(response));
                Proceeding { request }
            }
            (Trying { .. } | Proceeding { .. }, 200..) => {
                self.timers.stop(Timer::E);
                self.timers.stop(Timer::F);
                self.out.event(TransactionEvent::Response(response));
                // RFC 3261 17.1.2.2: Timer K = T4 unreliable, 0 reliable.
                let k = self.config.t4_or_zero(self.reliable);
                if k.is_zero() {
                    self.terminate();
                    return;
                }
                self.timers.set(Timer::K, now + k);
                Completed { code }
            }
            // Retransmitted responses are absorbed (§17.1.2.2).
            (state, _) => state,
        };
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match (timer, &mut self.state) {
                (Timer::E, ClientNonInviteState::Trying { interval, request }) => {
                    // RFC 3261 17.1.2.2: E doubles, capped at T2.
                    *interval = self.config.double_capped(*interval);
                    self.out.transmit(request.clone());
                    self.timers.set(Timer::E, now + *interval);
                }
                (Timer::E, ClientNonInviteState::Proceeding { request }) => {
                    // RFC 3261 17.1.2.2: in Proceeding, E is reset to T2.
                    self.out.transmit(request.clone());
                    self.timers.set(Timer::E, now + self.config.t2);
                }
                (
                    Timer::F,
                    ClientNonInviteState::Trying { .. } | ClientNonInviteState::Proceeding { .. },
                ) => {
                    self.out.event(TransactionEvent::Timeout(Timer::F));
                    self.terminate();
                }
                (Timer::K, ClientNonInviteState::Completed { .. }) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not send the request (§17.1.2.2: inform the TU,
    /// Terminated).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ClientNonInviteState::Trying { .. } | ClientNonInviteState::Proceeding { .. }
        ) {
            self.out.event(TransactionEvent::TransportError);
            self.terminate();
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
        self.state = ClientNonInviteState::Terminated;
        self.out.event(TransactionEvent::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{bye, response_to, times_of, Clock};
    use super::*;

    fn new(reliable: bool) -> (ClientNonInvite, Clock) {
        let clock = Clock::new();
        let m = ClientNonInvite::new(&bye(), reliable, TimerConfig::default(), clock.now);
        (m, clock)
    }

    fn drive(m: &mut ClientNonInvite, clock: &mut Clock, limit: Duration) -> Vec<(u128, Bytes)> {
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

    fn events(m: &mut ClientNonInvite) -> Vec<TransactionEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn timer_e_doubles_to_t2_until_timer_f() {
        let (mut m, mut clock) = new(false);
        let first = m.poll_transmit().expect("request sent at once");
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        // 500 ms, 1 s, 2 s, then every 4 s (T2) until F at 32 s.
        assert_eq!(
            times_of(&sent),
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert!(sent.iter().all(|(_, b)| *b == first.bytes));
        assert_eq!(clock.elapsed_ms(), 32_000);
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::Timeout(Timer::F),
                TransactionEvent::Terminated
            ]
        );
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        clock.advance_ms(200);
        m.handle_response(response_to(&bye(), 100, None), clock.now);
        assert!(matches!(m.state(), ClientNonInviteState::Proceeding { .. }));
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        // E still fires at 500 ms (armed in Trying), then every T2.
        assert_eq!(
            times_of(&sent),
            vec![500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
        );
        let ev = events(&mut m);
        assert!(matches!(
            ev[..],
            [
                TransactionEvent::Response(_),
                TransactionEvent::Timeout(Timer::F),
                TransactionEvent::Terminated
            ]
        ));
    }

    #[test]
    fn final_response_completes_and_timer_k_ends() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        clock.advance_ms(600);
        m.handle_timeout(clock.now);
        m.poll_transmit();
        m.handle_response(response_to(&bye(), 200, Some("b")), clock.now);
        assert_eq!(m.state(), &ClientNonInviteState::Completed { code: 200 });
        // Retransmissions are absorbed.
        m.handle_response(response_to(&bye(), 200, Some("b")), clock.now);
        assert_eq!(events(&mut m).len(), 1);
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert!(sent.is_empty());
        assert_eq!(clock.elapsed_ms(), 600 + 5000, "Timer K = T4");
        assert_eq!(events(&mut m), vec![TransactionEvent::Terminated]);
    }

    #[test]
    fn proceeding_to_completed() {
        let (mut m, mut clock) = new(false);
        m.poll_transmit();
        m.handle_response(response_to(&bye(), 100, None), clock.now);
        m.handle_response(response_to(&bye(), 180, None), clock.now);
        clock.advance_ms(100);
        m.handle_response(response_to(&bye(), 486, Some("b")), clock.now);
        assert_eq!(m.state(), &ClientNonInviteState::Completed { code: 486 });
        assert_eq!(m.poll_timeout(), Some(clock.now + Duration::from_secs(5)));
        let codes: Vec<u16> = events(&mut m)
            .into_iter()
            .filter_map(|e| match e {
                TransactionEvent::Response(r) => Some(r.code),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![100, 180, 486]);
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert!(sent.is_empty(), "no Timer E once Completed");
        assert!(m.is_terminated());
    }

    #[test]
    fn reliable_variant() {
        let (mut m, mut clock) = new(true);
        m.poll_transmit();
        assert_eq!(m.poll_timeout(), Some(clock.now + Duration::from_secs(32)));
        m.handle_response(response_to(&bye(), 481, Some("b")), clock.now);
        assert!(m.is_terminated(), "Timer K = 0");
        let (mut m, _) = new(true);
        m.poll_transmit();
        let sent = drive(&mut m, &mut clock, Duration::from_secs(60));
        assert!(sent.is_empty());
        assert!(m.is_terminated());
    }

    #[test]
    fn transport_error_terminates() {
        let (mut m, clock) = new(false);
        m.handle_transport_error(clock.now);
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::TransportError,
                TransactionEvent::Terminated
            ]
        );
    }
}
