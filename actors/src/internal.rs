//! One internal call (内部呼叫), sans-IO: an agent's phone dials another
//! agent's extension. The caller's INVITE waits while the callee's phone
//! rings; the callee answering answers the caller and bridges the two; the
//! callee refusing, not answering in time, or not being reachable refuses
//! the caller with the matching status; the caller giving up (CANCEL)
//! stops the ring. Either side hanging up ends the call.
//!
//! [`InternalCall`] decides; its [`InternalAction`]s tell the shell what to
//! do with the two legs and when the call is over (the record). Time is an
//! input: the ring timeout comes out of [`InternalCall::poll_timeout`].

use crate::{AgentId, CallId, TenantId, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;
use switchboard_storage::model::{
    CallRecord, Day, DialOutcome, Direction, HangupReason, HangupSide, IvrTrace, Leg, LegKind,
    NodeId, Satisfaction,
};

/// How long the callee's phone may ring.
pub const RING_TIMEOUT: Duration = Duration::from_secs(30);

/// Who calls whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalSetup {
    pub tenant: TenantId,
    pub node: NodeId,
    pub utc_offset_minutes: i32,
    pub call: CallId,
    /// The calling SIP account, and the agent signed in on it, if any.
    pub caller: String,
    pub caller_agent: Option<AgentId>,
    /// The extension dialed (the callee's SIP account), and its agent.
    pub callee: String,
    pub callee_agent: Option<AgentId>,
}

/// What the machine asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalAction {
    /// Answer the caller's INVITE (200 with our SDP) and connect the two
    /// legs (and record the conversation).
    AnswerAndBridge,
    /// Refuse the caller's INVITE with this status.
    RefuseCaller(u16),
    /// End the callee's leg (CANCEL while it rings, BYE once answered).
    HangUpCallee,
    /// End the caller's leg (BYE).
    HangUpCaller,
    /// The call is over: its record.
    Record(Box<CallRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Talking,
    Done,
}

/// The decision half of an internal call's actor. See the module docs.
#[derive(Debug, Clone)]
pub struct InternalCall {
    phase: Phase,
    setup: InternalSetup,
    started: Timestamp,
    answered: Option<Timestamp>,
    recording: Option<String>,
    deadline: Option<Timestamp>,
    actions: VecDeque<InternalAction>,
}

/// What the caller hears when the callee's INVITE ended with `code`: busy
/// and declined as they were, anything else as "not available now".
fn refusal(code: u16) -> u16 {
    match code {
        486 | 600 | 603 => code,
        _ => 480,
    }
}

impl InternalCall {
    /// The caller's INVITE arrived and the callee's phone is rung.
    pub fn start(setup: InternalSetup, now: Timestamp) -> InternalCall {
        InternalCall {
            phase: Phase::Ringing,
            setup,
            started: now,
            answered: None,
            recording: None,
            deadline: Some(now.after(RING_TIMEOUT)),
            actions: VecDeque::new(),
        }
    }

    pub fn call(&self) -> CallId {
        self.setup.call
    }

    /// Whether the call is over.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn poll_action(&mut self) -> Option<InternalAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// The media side records the conversation into `file`.
    pub fn recording(&mut self, file: String) {
        self.recording = Some(file);
    }

    /// The callee answered.
    pub fn callee_answered(&mut self, now: Timestamp) {
        if self.phase != Phase::Ringing {
            return;
        }
        self.phase = Phase::Talking;
        self.answered = Some(now);
        self.deadline = None;
        self.actions.push_back(InternalAction::AnswerAndBridge);
    }

    /// The callee's INVITE ended with `code` (a final response other than
    /// 2xx, 408 when nothing answered at all).
    pub fn callee_failed(&mut self, code: u16, now: Timestamp) {
        if self.phase != Phase::Ringing {
            return;
        }
        self.actions
            .push_back(InternalAction::RefuseCaller(refusal(code)));
        let outcome = DialOutcome::of_final(code, true);
        let side = match outcome {
            DialOutcome::Busy | DialOutcome::Rejected => HangupSide::Agent,
            _ => HangupSide::System,
        };
        self.finish(outcome, side, now);
    }

    /// The caller gave up while the callee rang (its CANCEL was answered
    /// with 487 already).
    pub fn caller_cancelled(&mut self, now: Timestamp) {
        if self.phase != Phase::Ringing {
            return;
        }
        self.actions.push_back(InternalAction::HangUpCallee);
        self.finish(DialOutcome::Cancelled, HangupSide::Customer, now);
    }

    /// The caller hung up (BYE) after the answer.
    pub fn caller_hung_up(&mut self, now: Timestamp) {
        if self.phase == Phase::Talking {
            self.actions.push_back(InternalAction::HangUpCallee);
            self.finish(DialOutcome::Answered, HangupSide::Customer, now);
        }
    }

    /// The callee hung up (BYE) after answering.
    pub fn callee_hung_up(&mut self, now: Timestamp) {
        if self.phase == Phase::Talking {
            self.actions.push_back(InternalAction::HangUpCaller);
            self.finish(DialOutcome::Answered, HangupSide::Agent, now);
        }
    }

    /// The callee's phone rang too long.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.phase != Phase::Ringing || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.actions.push_back(InternalAction::HangUpCallee);
        self.actions.push_back(InternalAction::RefuseCaller(480));
        self.finish(DialOutcome::NoAnswer, HangupSide::System, now);
    }

    /// The call's record as it stands while it is up.
    pub fn progress(&self, now: Timestamp) -> CallRecord {
        let mut r = self.record(DialOutcome::Answered, HangupSide::System, now);
        if self.answered.is_none() {
            r.outcome = None;
        }
        r
    }

    fn finish(&mut self, outcome: DialOutcome, side: HangupSide, now: Timestamp) {
        self.phase = Phase::Done;
        self.deadline = None;
        let record = self.record(outcome, side, now);
        self.actions
            .push_back(InternalAction::Record(Box::new(record)));
    }

    fn record(&self, outcome: DialOutcome, side: HangupSide, now: Timestamp) -> CallRecord {
        let s = &self.setup;
        let party = |account: &str, agent: &Option<AgentId>| {
            agent
                .as_ref()
                .map_or_else(|| account.to_owned(), |a| a.0.clone())
        };
        let legs = vec![
            Leg {
                kind: LegKind::Agent,
                party: party(&s.caller, &s.caller_agent),
                start: self.started,
                answered: Some(self.started),
                end: now,
                sip_call_id: None,
            },
            Leg {
                kind: LegKind::Agent,
                party: party(&s.callee, &s.callee_agent),
                start: self.started,
                answered: self.answered,
                end: now,
                sip_call_id: None,
            },
        ];
        CallRecord {
            tenant: s.tenant.clone(),
            call: s.call,
            day: Day::of(self.started, s.utc_offset_minutes),
            direction: Direction::Internal,
            caller: s.caller.clone(),
            dialed: s.callee.clone(),
            customer_number: s.callee.clone(),
            customer: None,
            start: self.started,
            end: now,
            ivr: IvrTrace::default(),
            group: None,
            enqueued: None,
            dequeued: None,
            rings: Vec::new(),
            agent: s.caller_agent.clone(),
            answered: self.answered,
            talk_end: self.answered.map(|_| now),
            overflow: None,
            hangup_side: side,
            hangup_reason: HangupReason::Normal,
            voicemail: false,
            satisfaction: Satisfaction::NotOffered,
            legs,
            location: None,
            recording: self.recording.clone(),
            node: s.node.clone(),
            outcome: Some(outcome),
            transfers: Vec::new(),
            holds: Vec::new(),
            callback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn call() -> InternalCall {
        InternalCall::start(
            InternalSetup {
                tenant: TenantId::from("t"),
                node: NodeId("n".into()),
                utc_offset_minutes: 480,
                call: CallId(9),
                caller: "1001".into(),
                caller_agent: Some("1001".into()),
                callee: "1002".into(),
                callee_agent: Some("1002".into()),
            },
            t(0),
        )
    }

    fn actions(c: &mut InternalCall) -> Vec<InternalAction> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn record(a: &[InternalAction]) -> CallRecord {
        a.iter()
            .find_map(|a| match a {
                InternalAction::Record(r) => Some((**r).clone()),
                _ => None,
            })
            .expect("a record")
    }

    #[test]
    fn an_answered_internal_call_is_bridged_and_recorded_as_internal() {
        let mut c = call();
        assert_eq!(c.poll_timeout(), Some(t(30)));
        c.callee_answered(t(4));
        assert_eq!(actions(&mut c), vec![InternalAction::AnswerAndBridge]);
        assert_eq!(c.poll_timeout(), None);
        c.callee_hung_up(t(64));
        let a = actions(&mut c);
        assert_eq!(a[0], InternalAction::HangUpCaller);
        let r = record(&a);
        assert_eq!(r.direction, Direction::Internal);
        assert_eq!((r.caller.as_str(), r.dialed.as_str()), ("1001", "1002"));
        assert_eq!(r.agent, Some("1001".into()));
        assert_eq!(r.outcome, Some(DialOutcome::Answered));
        assert_eq!(r.hangup_side, HangupSide::Agent);
        assert_eq!(r.talk_time(), Duration::from_secs(60));
        assert_eq!(r.legs.len(), 2);
        assert!(c.is_done());
    }

    #[test]
    fn busy_declined_and_unreachable_callees_refuse_the_caller_as_such() {
        for (code, refused, outcome) in [
            (486, 486, DialOutcome::Busy),
            (603, 603, DialOutcome::Rejected),
            (404, 480, DialOutcome::Unreachable),
            (408, 480, DialOutcome::NoAnswer),
        ] {
            let mut c = call();
            c.callee_failed(code, t(3));
            let a = actions(&mut c);
            assert_eq!(a[0], InternalAction::RefuseCaller(refused), "{code}");
            assert_eq!(record(&a).outcome, Some(outcome), "{code}");
            assert_eq!(record(&a).answered, None);
        }
    }

    #[test]
    fn a_cancel_or_the_ring_timeout_stops_the_ring() {
        let mut c = call();
        c.caller_cancelled(t(5));
        let a = actions(&mut c);
        assert_eq!(a[0], InternalAction::HangUpCallee);
        assert_eq!(record(&a).outcome, Some(DialOutcome::Cancelled));
        // Nothing more happens to a finished call.
        c.callee_answered(t(6));
        assert!(actions(&mut c).is_empty());

        let mut c = call();
        c.handle_timeout(t(29));
        assert!(actions(&mut c).is_empty());
        c.handle_timeout(t(30));
        let a = actions(&mut c);
        assert_eq!(
            a[..2],
            [
                InternalAction::HangUpCallee,
                InternalAction::RefuseCaller(480)
            ]
        );
        assert_eq!(record(&a).outcome, Some(DialOutcome::NoAnswer));
    }
}
