//! The non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!  Trying --1xx from TU--> Proceeding --200-699 from TU--> Completed --Timer J--> Terminated
//!    \_____________200-699 from TU_______________/^
//! ```
//!
//! Retransmitted requests are absorbed while Trying, answered with the last
//! provisional response while Proceeding and with the final response while
//! Completed. Timer J (64*T1 unreliable, 0 reliable) keeps the final
//! response around for the retransmissions.

use super::timer::{Timer, TimerConfig, Timers};
use super::{Outputs, TransactionError, TransactionEvent, Transmit};
use crate::sip::message::{Request, Response};
use bytes::Bytes;
use std::time::Instant;

/// Where a non-INVITE server transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// The request was passed up; nothing sent yet.
    Trying,
    /// A provisional response went out; it is resent per retransmission.
    Proceeding { provisional: Bytes },
    /// The final response went out; it is resent per retransmission until
    /// Timer J.
    Completed { code: u16, response: Bytes },
    /// Over; the machine sends nothing more.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    config: TimerConfig,
    reliable: bool,
    state: ServerNonInviteState,
    timers: Timers,
    out: Outputs,
}

impl ServerNonInvite {
    /// Starts the transaction for a received request (Trying). The request
    /// itself is not kept: the TU has it.
    pub fn new(_request: &Request, reliable: bool, config: TimerConfig, _now: Instant) -> Self {
        let config = config.sanitized();
        ServerNonInvite {
            config,
            reliable,
            state: ServerNonInviteState::Trying,
            timers: Timers::default(),
            out: Outputs::default(),
        }
    }

    /// The current state, with the data it carries.
    pub fn state(&self) -> &ServerNonInviteState {
        &self.state
    }

    /// True once the machine has reached Terminated: it sends nothing more
    /// and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// A retransmission of the request (§17.2.3 matched it here).
    pub fn handle_request(&mut self, _request: &Request, _now: Instant) {
        let resend = match &self.state {
            // RFC 3261 17.2.2: discarded while Trying.
            ServerNonInviteState::Trying => None,
            ServerNonInviteState::Proceeding { provisional } => Some(provisional.clone()),
            ServerNonInviteState::Completed { response, .. } => Some(response.clone()),
            ServerNonInviteState::Terminated => return,
        };
        if let Some(bytes) = resend {
            self.out.transmit(bytes);
        }
        self.out.event(TransactionEvent::RequestRetransmitted);
    }

    /// The TU's response: provisional ones while Trying or Proceeding, then
    /// exactly one final response.
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
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding { .. } => {
                let bytes = Bytes::from(response.to_bytes());
                self.out.transmit(bytes.clone());
                if code < 200 {
                    self.state = ServerNonInviteState::Proceeding { provisional: bytes };
                    return Ok(());
                }
                self.state = ServerNonInviteState::Completed {
                    code,
                    response: bytes,
                };
                // RFC 3261 17.2.2: Timer J = 64*T1 unreliable, 0 reliable.
                let j = self.config.timer_j(self.reliable);
                if j.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::J, now + j);
                }
                Ok(())
            }
            ServerNonInviteState::Completed { .. } => Err(TransactionError::FinalResponseSent),
            ServerNonInviteState::Terminated => Err(TransactionError::Terminated),
        }
    }

    /// Runs every timer that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            if timer == Timer::J && matches!(self.state, ServerNonInviteState::Completed { .. }) {
                self.terminate();
            }
        }
    }

    /// The transport could not send a response (§17.2.2: inform the TU,
    /// Terminated).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if !self.is_terminated() {
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
        self.state = ServerNonInviteState::Terminated;
        self.out.event(TransactionEvent::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{bye, response_to, Clock};
    use super::*;
    use std::time::Duration;

    fn new(reliable: bool) -> (ServerNonInvite, Clock) {
        let clock = Clock::new();
        let m = ServerNonInvite::new(&bye(), reliable, TimerConfig::default(), clock.now);
        (m, clock)
    }

    fn sent(m: &mut ServerNonInvite) -> Vec<Bytes> {
        std::iter::from_fn(|| m.poll_transmit())
            .map(|t| t.bytes)
            .collect()
    }

    fn events(m: &mut ServerNonInvite) -> Vec<TransactionEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn trying_proceeding_completed_terminated() {
        let (mut m, mut clock) = new(false);
        // Trying: retransmissions absorbed silently.
        m.handle_request(&bye(), clock.now);
        assert!(sent(&mut m).is_empty());
        let trying = response_to(&bye(), 100, None);
        m.send_response(&trying, clock.now).unwrap();
        assert!(matches!(m.state(), ServerNonInviteState::Proceeding { .. }));
        assert_eq!(sent(&mut m).len(), 1);
        // Proceeding: the provisional is resent.
        m.handle_request(&bye(), clock.now);
        assert_eq!(sent(&mut m), vec![Bytes::from(trying.to_bytes())]);
        let ok = response_to(&bye(), 200, Some("t"));
        clock.advance_ms(300);
        m.send_response(&ok, clock.now).unwrap();
        assert_eq!(sent(&mut m), vec![Bytes::from(ok.to_bytes())]);
        // Completed: the final is resent, and cannot change.
        m.handle_request(&bye(), clock.now);
        assert_eq!(sent(&mut m), vec![Bytes::from(ok.to_bytes())]);
        assert_eq!(
            m.send_response(&response_to(&bye(), 500, Some("t")), clock.now),
            Err(TransactionError::FinalResponseSent)
        );
        // Timer J = 64*T1 after the final response.
        assert_eq!(m.poll_timeout(), Some(clock.now + Duration::from_secs(32)));
        clock.advance_ms(31_999);
        m.handle_timeout(clock.now);
        assert!(!m.is_terminated());
        clock.advance_ms(1);
        m.handle_timeout(clock.now);
        assert!(m.is_terminated());
        assert_eq!(
            events(&mut m),
            vec![
                TransactionEvent::RequestRetransmitted,
                TransactionEvent::RequestRetransmitted,
                TransactionEvent::RequestRetransmitted,
                TransactionEvent::Terminated
            ]
        );
        m.handle_request(&bye(), clock.now);
        assert!(sent(&mut m).is_empty());
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let (mut m, clock) = new(true);
        m.send_response(&response_to(&bye(), 200, Some("t")), clock.now)
            .unwrap();
        assert_eq!(sent(&mut m).len(), 1);
        assert!(m.is_terminated(), "Timer J = 0");
        assert_eq!(m.poll_timeout(), None);
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
