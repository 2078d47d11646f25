//! One outbound call from an agent's phone bar (外呼), sans-IO.
//!
//! The agent's own device rings first (its SIP phone, or its mobile number
//! through the trunk); once the agent answers, the customer's number is
//! dialed through the tenant's trunk with the tenant's caller ID and the
//! agent hears ring-back meanwhile; when the customer answers the two are
//! bridged. Busy, no answer, rejected and unreachable end the call with
//! that [`DialOutcome`] in its record. Either side hanging up ends it.
//!
//! [`OutboundCall`] decides; its [`OutboundAction`]s tell the shell what
//! to do with the two legs and when the call is over (the agent is free,
//! the record is written). Time is an input: the agent's and the
//! customer's ring timeouts come out of [`OutboundCall::poll_timeout`].

use crate::{AgentId, CallId, TenantId, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;
pub use switchboard_storage::model::{
    CallRecord, Day, DialOutcome, Direction, HangupReason, HangupSide, IvrTrace, Leg, LegKind,
    NodeId, NumberLocation, RingAttempt, RingOutcome, Satisfaction,
};

/// How long the agent's own device may ring.
pub const AGENT_RING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the customer's phone may ring.
pub const CUSTOMER_RING_TIMEOUT: Duration = Duration::from_secs(60);

/// Who and what an outbound call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSetup {
    pub tenant: TenantId,
    pub node: NodeId,
    pub utc_offset_minutes: i32,
    pub call: CallId,
    pub agent: AgentId,
    /// The number the customer sees (the trunk's caller ID).
    pub caller_id: String,
    /// The customer's number.
    pub number: String,
    /// Its customer profile, if known (the call joins its timeline).
    pub customer: Option<String>,
    /// After-call work once the agent talked to the customer (外呼话后处理).
    pub wrap_up: Duration,
    /// `number` is an extension of the tenant (an internal call): the
    /// record says `internal`.
    pub internal: bool,
}

/// What the machine asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundAction {
    /// Ring the agent's device.
    DialAgent,
    /// Dial the customer through the trunk.
    DialCustomer,
    /// Play ring-back to the agent while the customer rings.
    Ringback,
    /// Connect the agent and the customer (and record the conversation).
    Bridge,
    /// End the agent's leg (CANCEL while it rings, BYE once answered).
    HangUpAgent,
    /// End the customer's leg (CANCEL while it rings, BYE once answered).
    HangUpCustomer,
    /// The agent is off the call; after a talk it wraps up this long.
    AgentFree { wrap_up: Duration },
    /// The call is over: its record.
    Record(Box<CallRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    RingingAgent,
    RingingCustomer,
    Talking,
    Done,
}

/// The decision half of an outbound call's actor. See the module docs.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    phase: Phase,
    setup: OutboundSetup,
    started: Timestamp,
    agent_answered: Option<Timestamp>,
    customer_rang: bool,
    answered: Option<Timestamp>,
    recording: Option<String>,
    deadline: Option<Timestamp>,
    holds: crate::call::Holds,
    actions: VecDeque<OutboundAction>,
}

impl OutboundCall {
    /// Starts the call: the agent's device rings.
    pub fn start(setup: OutboundSetup, now: Timestamp) -> OutboundCall {
        let mut c = OutboundCall {
            phase: Phase::RingingAgent,
            setup,
            started: now,
            agent_answered: None,
            customer_rang: false,
            answered: None,
            recording: None,
            deadline: Some(now.after(AGENT_RING_TIMEOUT)),
            holds: crate::call::Holds::default(),
            actions: VecDeque::new(),
        };
        c.actions.push_back(OutboundAction::DialAgent);
        c
    }

    pub fn call(&self) -> CallId {
        self.setup.call
    }

    pub fn agent(&self) -> &AgentId {
        &self.setup.agent
    }

    /// Whether the call is over.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn poll_action(&mut self) -> Option<OutboundAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// The customer went on hold (`on`) or came off it.
    pub fn held(&mut self, on: bool, now: Timestamp) {
        if !self.is_done() {
            self.holds.set(on, now);
        }
    }

    /// The media side records the conversation into `file`.
    pub fn recording(&mut self, file: String) {
        self.recording = Some(file);
    }

    /// The agent answered its device: the customer is dialed.
    pub fn agent_answered(&mut self, now: Timestamp) {
        if self.phase != Phase::RingingAgent {
            return;
        }
        self.phase = Phase::RingingCustomer;
        self.agent_answered = Some(now);
        self.deadline = Some(now.after(CUSTOMER_RING_TIMEOUT));
        self.actions.push_back(OutboundAction::Ringback);
        self.actions.push_back(OutboundAction::DialCustomer);
    }

    /// The agent's device could not be rung or refused.
    pub fn agent_failed(&mut self, now: Timestamp) {
        if self.phase == Phase::RingingAgent {
            self.finish(DialOutcome::AgentNoAnswer, HangupSide::System, now);
        }
    }

    /// The customer's phone rings (180/183).
    pub fn customer_ringing(&mut self) {
        if self.phase == Phase::RingingCustomer {
            self.customer_rang = true;
        }
    }

    /// The customer answered: agent and customer are bridged.
    pub fn customer_answered(&mut self, now: Timestamp) {
        if self.phase != Phase::RingingCustomer {
            return;
        }
        self.phase = Phase::Talking;
        self.answered = Some(now);
        self.deadline = None;
        self.actions.push_back(OutboundAction::Bridge);
    }

    /// The customer's INVITE ended with `code` (a final response other
    /// than 2xx, 408 when nothing answered at all).
    pub fn customer_failed(&mut self, code: u16, now: Timestamp) {
        if self.phase != Phase::RingingCustomer {
            return;
        }
        let outcome = DialOutcome::of_final(code, self.customer_rang);
        let side = match outcome {
            DialOutcome::Busy | DialOutcome::Rejected => HangupSide::Customer,
            _ => HangupSide::System,
        };
        self.actions.push_back(OutboundAction::HangUpAgent);
        self.finish(outcome, side, now);
    }

    /// The agent hung up its device (BYE), or asked from the phone bar.
    pub fn agent_hung_up(&mut self, now: Timestamp) {
        match self.phase {
            Phase::RingingAgent => {
                self.actions.push_back(OutboundAction::HangUpAgent);
                self.finish(DialOutcome::Cancelled, HangupSide::Agent, now);
            }
            Phase::RingingCustomer => {
                self.actions.push_back(OutboundAction::HangUpCustomer);
                self.finish(DialOutcome::Cancelled, HangupSide::Agent, now);
            }
            Phase::Talking => {
                self.actions.push_back(OutboundAction::HangUpCustomer);
                self.finish(DialOutcome::Answered, HangupSide::Agent, now);
            }
            Phase::Done => {}
        }
    }

    /// The customer hung up (BYE) after answering.
    pub fn customer_hung_up(&mut self, now: Timestamp) {
        if self.phase == Phase::Talking {
            self.actions.push_back(OutboundAction::HangUpAgent);
            self.finish(DialOutcome::Answered, HangupSide::Customer, now);
        }
    }

    /// A ring timeout: the agent's device or the customer's phone rang
    /// too long.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.phase {
            Phase::RingingAgent => {
                self.actions.push_back(OutboundAction::HangUpAgent);
                self.finish(DialOutcome::AgentNoAnswer, HangupSide::System, now);
            }
            Phase::RingingCustomer => {
                self.actions.push_back(OutboundAction::HangUpCustomer);
                self.actions.push_back(OutboundAction::HangUpAgent);
                self.finish(DialOutcome::NoAnswer, HangupSide::System, now);
            }
            Phase::Talking | Phase::Done => self.deadline = None,
        }
    }

    fn finish(&mut self, outcome: DialOutcome, side: HangupSide, now: Timestamp) {
        self.phase = Phase::Done;
        self.deadline = None;
        let wrap_up = if self.answered.is_some() {
            self.setup.wrap_up
        } else {
            Duration::ZERO
        };
        self.actions
            .push_back(OutboundAction::AgentFree { wrap_up });
        let record = self.record(outcome, side, now);
        self.actions
            .push_back(OutboundAction::Record(Box::new(record)));
    }

    /// The call's record as it stands while it is up (no outcome until
    /// the customer answered).
    pub fn progress(&self, now: Timestamp) -> CallRecord {
        let mut r = self.record(DialOutcome::Answered, HangupSide::System, now);
        if self.answered.is_none() {
            r.outcome = None;
        }
        r
    }

    fn record(&self, outcome: DialOutcome, side: HangupSide, now: Timestamp) -> CallRecord {
        let s = &self.setup;
        let ring = RingAttempt {
            agent: s.agent.clone(),
            start: self.started,
            end: self.agent_answered.unwrap_or(now),
            outcome: match (self.agent_answered, outcome) {
                (Some(_), _) => RingOutcome::Answered,
                (None, DialOutcome::Cancelled) => RingOutcome::Cancelled,
                (None, _) => RingOutcome::NoAnswer,
            },
        };
        let mut legs = vec![Leg {
            kind: LegKind::Agent,
            party: s.agent.0.clone(),
            start: self.started,
            answered: self.agent_answered,
            end: now,
            sip_call_id: None,
        }];
        if let Some(dialed) = self.agent_answered {
            legs.push(Leg {
                kind: LegKind::Customer,
                party: s.number.clone(),
                start: dialed,
                answered: self.answered,
                end: now,
                sip_call_id: None,
            });
        }
        CallRecord {
            tenant: s.tenant.clone(),
            call: s.call,
            day: Day::of(self.started, s.utc_offset_minutes),
            direction: if s.internal {
                Direction::Internal
            } else {
                Direction::Outbound
            },
            caller: s.caller_id.clone(),
            dialed: s.number.clone(),
            customer_number: s.number.clone(),
            customer: s.customer.clone(),
            start: self.started,
            end: now,
            ivr: IvrTrace::default(),
            group: None,
            enqueued: None,
            dequeued: None,
            rings: vec![ring],
            agent: Some(s.agent.clone()),
            answered: self.answered,
            talk_end: self.answered.map(|_| now),
            overflow: None,
            hangup_side: side,
            hangup_reason: HangupReason::Normal,
            voicemail: false,
            satisfaction: Satisfaction::NotOffered,
            legs,
            location: crate::location::lookup(&s.number).map(|l| NumberLocation {
                place: l.place.to_owned(),
                carrier: l.carrier.map(str::to_owned),
            }),
            recording: self.recording.clone(),
            node: s.node.clone(),
            outcome: Some(outcome),
            transfers: Vec::new(),
            holds: self.holds.periods(now),
            callback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp(1_764_547_200_000);

    fn setup() -> OutboundSetup {
        OutboundSetup {
            tenant: TenantId::from("demo"),
            node: NodeId::from("n1"),
            utc_offset_minutes: 480,
            call: CallId(7),
            agent: AgentId::from("1001"),
            caller_id: "02110000".into(),
            number: "13800138000".into(),
            customer: Some("c1".into()),
            wrap_up: Duration::from_secs(15),
            internal: false,
        }
    }

    fn drain(c: &mut OutboundCall) -> Vec<OutboundAction> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn record_of(actions: &[OutboundAction]) -> CallRecord {
        actions
            .iter()
            .find_map(|a| match a {
                OutboundAction::Record(r) => Some((**r).clone()),
                _ => None,
            })
            .expect("a record")
    }

    fn at(secs: u64) -> Timestamp {
        T0.after(Duration::from_secs(secs))
    }

    #[test]
    fn agent_first_then_the_customer_then_the_bridge_and_the_record() {
        let mut c = OutboundCall::start(setup(), T0);
        assert_eq!(drain(&mut c), vec![OutboundAction::DialAgent]);
        c.agent_answered(at(3));
        assert_eq!(
            drain(&mut c),
            vec![OutboundAction::Ringback, OutboundAction::DialCustomer]
        );
        c.customer_ringing();
        c.customer_answered(at(10));
        assert_eq!(drain(&mut c), vec![OutboundAction::Bridge]);
        assert_eq!(c.poll_timeout(), None, "no timer while talking");
        c.recording("recordings/7.wav".into());
        c.customer_hung_up(at(70));
        let a = drain(&mut c);
        // A talk is followed by the wrap-up.
        assert_eq!(
            a[..2],
            [
                OutboundAction::HangUpAgent,
                OutboundAction::AgentFree {
                    wrap_up: Duration::from_secs(15)
                }
            ]
        );
        let r = record_of(&a);
        assert_eq!(r.direction, Direction::Outbound);
        assert_eq!(r.outcome, Some(DialOutcome::Answered));
        assert_eq!(
            (r.caller.as_str(), r.dialed.as_str()),
            ("02110000", "13800138000")
        );
        assert_eq!(r.customer_number, "13800138000");
        assert_eq!(
            r.customer.as_deref(),
            Some("c1"),
            "in the customer's timeline"
        );
        assert_eq!(r.hangup_side, HangupSide::Customer);
        assert_eq!(r.talk_time(), Duration::from_secs(60));
        assert_eq!(r.ring_time(), Duration::from_secs(10));
        assert_eq!(r.recording.as_deref(), Some("recordings/7.wav"));
        let legs: Vec<_> = r
            .legs
            .iter()
            .map(|l| (l.kind, l.start, l.answered))
            .collect();
        assert_eq!(
            legs,
            vec![
                (LegKind::Agent, T0, Some(at(3))),
                (LegKind::Customer, at(3), Some(at(10)))
            ]
        );
        assert_eq!(
            r.location.map(|l| l.place),
            Some("北京市".to_owned()),
            "the customer's number's location"
        );
        assert!(c.is_done());
    }

    #[test]
    fn final_responses_become_outcomes() {
        for (code, rang, outcome, side) in [
            (486, true, DialOutcome::Busy, HangupSide::Customer),
            (600, false, DialOutcome::Busy, HangupSide::Customer),
            (480, true, DialOutcome::NoAnswer, HangupSide::System),
            (408, true, DialOutcome::NoAnswer, HangupSide::System),
            (408, false, DialOutcome::Unreachable, HangupSide::System),
            (603, true, DialOutcome::Rejected, HangupSide::Customer),
            (404, false, DialOutcome::Unreachable, HangupSide::System),
            (503, false, DialOutcome::Unreachable, HangupSide::System),
        ] {
            let mut c = OutboundCall::start(setup(), T0);
            c.agent_answered(at(2));
            if rang {
                c.customer_ringing();
            }
            drain(&mut c);
            c.customer_failed(code, at(9));
            let a = drain(&mut c);
            assert_eq!(a[0], OutboundAction::HangUpAgent, "{code}");
            let r = record_of(&a);
            assert_eq!(r.outcome, Some(outcome), "{code}");
            assert_eq!(r.hangup_side, side, "{code}");
            assert_eq!(r.answered, None);
            assert_eq!(r.talk_time(), Duration::ZERO);
        }
    }

    #[test]
    fn ring_timeouts_end_the_call_in_simulated_time() {
        // The agent's device rings out: the customer is never dialed.
        let mut c = OutboundCall::start(setup(), T0);
        drain(&mut c);
        assert_eq!(c.poll_timeout(), Some(T0.after(AGENT_RING_TIMEOUT)));
        c.handle_timeout(at(29));
        assert!(drain(&mut c).is_empty());
        c.handle_timeout(at(30));
        let a = drain(&mut c);
        assert_eq!(a[0], OutboundAction::HangUpAgent);
        let r = record_of(&a);
        assert_eq!(r.outcome, Some(DialOutcome::AgentNoAnswer));
        assert_eq!(r.legs.len(), 1, "no customer leg: {r:?}");
        assert_eq!(r.rings[0].outcome, RingOutcome::NoAnswer);

        // The customer's phone rings out.
        let mut c = OutboundCall::start(setup(), T0);
        c.agent_answered(at(1));
        c.customer_ringing();
        drain(&mut c);
        let due = c.poll_timeout().expect("the customer's ring timeout");
        assert_eq!(due, at(1).after(CUSTOMER_RING_TIMEOUT));
        c.handle_timeout(due);
        let a = drain(&mut c);
        assert_eq!(
            a[..3],
            [
                OutboundAction::HangUpCustomer,
                OutboundAction::HangUpAgent,
                OutboundAction::AgentFree {
                    wrap_up: Duration::ZERO
                }
            ]
        );
        assert_eq!(record_of(&a).outcome, Some(DialOutcome::NoAnswer));
    }

    #[test]
    fn the_agent_giving_up_cancels_the_customer() {
        let mut c = OutboundCall::start(setup(), T0);
        c.agent_answered(at(1));
        drain(&mut c);
        c.agent_hung_up(at(5));
        let a = drain(&mut c);
        assert_eq!(a[0], OutboundAction::HangUpCustomer);
        let r = record_of(&a);
        assert_eq!(r.outcome, Some(DialOutcome::Cancelled));
        assert_eq!(r.hangup_side, HangupSide::Agent);
        // A late 487 for the cancelled INVITE changes nothing.
        c.customer_failed(487, at(6));
        assert!(drain(&mut c).is_empty());
    }

    #[derive(Debug, Clone)]
    enum Input {
        AgentAnswered,
        AgentFailed,
        CustomerRinging,
        CustomerAnswered,
        CustomerFailed(u16),
        AgentHungUp,
        CustomerHungUp,
        Timeout(u64),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::AgentAnswered),
            Just(Input::AgentFailed),
            Just(Input::CustomerRinging),
            Just(Input::CustomerAnswered),
            prop::sample::select(vec![404u16, 408, 480, 486, 487, 503, 603])
                .prop_map(Input::CustomerFailed),
            Just(Input::AgentHungUp),
            Just(Input::CustomerHungUp),
            (0u64..120).prop_map(Input::Timeout),
        ]
    }

    proptest! {
        /// Whatever happens, in any order: exactly one record and one
        /// "agent free", once; the customer is dialed at most once and
        /// only after the agent answered; nothing after the record.
        #[test]
        fn one_record_one_release_whatever_happens(inputs in prop::collection::vec(input(), 0..24)) {
            let mut c = OutboundCall::start(setup(), T0);
            let mut all = drain(&mut c);
            let mut clock = 0u64;
            for i in inputs {
                clock += 1;
                let now = at(clock);
                match i {
                    Input::AgentAnswered => c.agent_answered(now),
                    Input::AgentFailed => c.agent_failed(now),
                    Input::CustomerRinging => c.customer_ringing(),
                    Input::CustomerAnswered => c.customer_answered(now),
                    Input::CustomerFailed(code) => c.customer_failed(code, now),
                    Input::AgentHungUp => c.agent_hung_up(now),
                    Input::CustomerHungUp => c.customer_hung_up(now),
                    Input::Timeout(s) => {
                        clock += s;
                        c.handle_timeout(at(clock));
                    }
                }
                all.extend(drain(&mut c));
            }
            let records = all.iter().filter(|a| matches!(a, OutboundAction::Record(_))).count();
            let frees = all
                .iter()
                .filter(|a| matches!(a, OutboundAction::AgentFree { .. }))
                .count();
            prop_assert_eq!(records, usize::from(c.is_done()));
            prop_assert_eq!(frees, records);
            if let Some(last) = all.last() {
                if c.is_done() {
                    prop_assert!(matches!(last, OutboundAction::Record(_)));
                }
            }
            let dials = all.iter().filter(|a| **a == OutboundAction::DialCustomer).count();
            prop_assert!(dials <= 1);
            let bridges = all.iter().filter(|a| **a == OutboundAction::Bridge).count();
            prop_assert!(bridges <= dials);
        }
    }
}
