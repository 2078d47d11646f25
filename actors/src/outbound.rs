//! One outbound call from an agent's phone bar (外呼), sans-IO.
//!
//! The agent's own device rings first (its SIP phone, or its mobile number
//! through the trunk); once the agent answers, the customer's number is
//! dialed through the tenant's trunk with the tenant's caller ID and the
//! agent hears ring-back meanwhile; when the customer answers the two are
//! bridged. Busy, no answer, rejected and unreachable end the call with
//! that [`DialOutcome`] in its record. Either side hanging up ends it.
//!
//! Once they talk, the agent may send the customer on: blind
//! ([`OutboundCall::transfer`]: the agent leaves at once, the shell rings
//! the target while the customer hears music; if nobody answers the
//! customer's leg ends, `transfer_failed`), after consulting
//! ([`OutboundCall::hand_over`], [`OutboundCall::handed_out`]), or a
//! supervisor takes the call over. An agent who takes the customer is the
//! call's agent from then on; a number takes the call out of the center
//! (the record ends, `transferred`). Sent to a skill group
//! ([`OutboundCall::to_queue`]), the call goes on as a queued call of the
//! center from the record so far, and this machine is done.
//!
//! [`OutboundCall`] decides; its [`OutboundAction`]s tell the shell what
//! to do with the legs and when the call is over (the agent is free, the
//! record is written). Time is an input: the agent's and the customer's
//! ring timeouts come out of [`OutboundCall::poll_timeout`].

use crate::call::TransferError;
use crate::{AgentId, CallId, TenantId, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;
pub use switchboard_storage::model::{
    CallRecord, Day, DialOutcome, Direction, HangupReason, HangupSide, IvrTrace, Leg, LegKind,
    NodeId, NumberLocation, RingAttempt, RingOutcome, Satisfaction, Transfer, TransferKind,
    TransferTarget,
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
    /// `agent` is off the call; after a talk it wraps up this long.
    AgentFree { agent: AgentId, wrap_up: Duration },
    /// The call is over: its record.
    Record(Box<CallRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    RingingAgent,
    RingingCustomer,
    Talking,
    /// Sent on blind: the target rings, no agent is on the call.
    Transferring,
    Done,
}

/// One agent's part in the call: the first rang from the start; later
/// ones took the customer, their legs up already.
#[derive(Debug, Clone)]
struct Part {
    agent: AgentId,
    start: Timestamp,
    answered: Option<Timestamp>,
    end: Option<Timestamp>,
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
    /// The agents on the call in turn; the last is the call's agent.
    parts: Vec<Part>,
    transfers: Vec<Transfer>,
    /// Where a blind transfer goes, while its target rings.
    sending: Option<TransferTarget>,
    /// The number that took the call out, from when.
    handed_to: Option<(String, Timestamp)>,
    reason: HangupReason,
    actions: VecDeque<OutboundAction>,
}

impl OutboundCall {
    /// Starts the call: the agent's device rings.
    pub fn start(setup: OutboundSetup, now: Timestamp) -> OutboundCall {
        let first = Part {
            agent: setup.agent.clone(),
            start: now,
            answered: None,
            end: None,
        };
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
            parts: vec![first],
            transfers: Vec::new(),
            sending: None,
            handed_to: None,
            reason: HangupReason::Normal,
            actions: VecDeque::new(),
        };
        c.actions.push_back(OutboundAction::DialAgent);
        c
    }

    pub fn call(&self) -> CallId {
        self.setup.call
    }

    /// The call's agent: the one who placed it, or the last who took the
    /// customer.
    pub fn agent(&self) -> &AgentId {
        self.parts.last().map_or(&self.setup.agent, |p| &p.agent)
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
        if let Some(p) = self.parts.first_mut() {
            p.answered = Some(now);
        }
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
            // The agent who sent the customer on is off the call already.
            Phase::Transferring | Phase::Done => {}
        }
    }

    /// The customer hung up (BYE) after answering.
    pub fn customer_hung_up(&mut self, now: Timestamp) {
        match self.phase {
            Phase::Talking => {
                self.actions.push_back(OutboundAction::HangUpAgent);
                self.finish(DialOutcome::Answered, HangupSide::Customer, now);
            }
            // The shell stops ringing the target once the customer is gone.
            Phase::Transferring => self.finish(DialOutcome::Answered, HangupSide::Customer, now),
            _ => {}
        }
    }

    /// The talking agent sends the customer on, blind, to an agent or a
    /// number (the shell rings it, and ends the agent's leg): the agent
    /// wraps up; the customer waits for the target.
    pub fn transfer(&mut self, to: TransferTarget, now: Timestamp) -> Result<(), TransferError> {
        if self.phase != Phase::Talking {
            return Err(TransferError::NotTalking);
        }
        match &to {
            TransferTarget::Group(_) => return Err(TransferError::NoQueue),
            TransferTarget::Agent(a) if a == self.agent() => return Err(TransferError::ToItself),
            _ => {}
        }
        self.leave(to.clone(), TransferKind::Blind, now);
        self.sending = Some(to);
        self.phase = Phase::Transferring;
        Ok(())
    }

    /// The talking agent sends the customer to a skill group's queue: the
    /// agent wraps up and this machine is done without a record; the
    /// call goes on as a queued call from the record so far (returned),
    /// which already has the transfer.
    pub fn to_queue(&mut self, group: &str, now: Timestamp) -> Result<CallRecord, TransferError> {
        if self.phase != Phase::Talking {
            return Err(TransferError::NotTalking);
        }
        self.leave(
            TransferTarget::Group(group.to_owned()),
            TransferKind::Blind,
            now,
        );
        self.phase = Phase::Done;
        self.deadline = None;
        Ok(self.record(DialOutcome::Answered, HangupSide::System, now))
    }

    /// The target of a blind transfer answered: an agent talks to the
    /// customer from now on; a number takes the call out (the record ends).
    pub fn transfer_answered(&mut self, now: Timestamp) {
        if self.phase != Phase::Transferring {
            return;
        }
        match self.sending.take() {
            Some(TransferTarget::Agent(a)) => {
                self.take(a, now);
                self.phase = Phase::Talking;
            }
            Some(TransferTarget::Number(n)) => {
                self.handed_to = Some((n, now));
                self.reason = HangupReason::Transferred;
                self.finish(DialOutcome::Answered, HangupSide::System, now);
            }
            Some(TransferTarget::Group(_)) | None => {}
        }
    }

    /// The target of a blind transfer did not answer, or could not be
    /// rung: nobody is left for the customer, whose leg ends.
    pub fn transfer_failed(&mut self, now: Timestamp) {
        if self.phase != Phase::Transferring {
            return;
        }
        self.sending = None;
        self.actions.push_back(OutboundAction::HangUpCustomer);
        self.reason = HangupReason::TransferFailed;
        self.finish(DialOutcome::Answered, HangupSide::System, now);
    }

    /// Another agent, its leg to the customer up already, takes the call:
    /// the one the talking agent consulted (咨询转), or a supervisor taking
    /// it over (强拆). The talking agent is off the call (the shell ended
    /// its leg) and wraps up.
    pub fn hand_over(
        &mut self,
        to: &AgentId,
        how: TransferKind,
        now: Timestamp,
    ) -> Result<(), TransferError> {
        if self.phase != Phase::Talking {
            return Err(TransferError::NotTalking);
        }
        if to == self.agent() {
            return Err(TransferError::ToItself);
        }
        self.leave(TransferTarget::Agent(to.clone()), how, now);
        self.take(to.clone(), now);
        Ok(())
    }

    /// The outside number the talking agent consulted takes the customer
    /// (its leg is up): the agent wraps up and the record ends here.
    pub fn handed_out(&mut self, number: &str, now: Timestamp) -> Result<(), TransferError> {
        if self.phase != Phase::Talking {
            return Err(TransferError::NotTalking);
        }
        self.leave(
            TransferTarget::Number(number.to_owned()),
            TransferKind::Consulted,
            now,
        );
        self.handed_to = Some((number.to_owned(), now));
        self.reason = HangupReason::Transferred;
        self.finish(DialOutcome::Answered, HangupSide::System, now);
        Ok(())
    }

    /// The call's agent leaves it for `to`: its part ends, it wraps up.
    fn leave(&mut self, to: TransferTarget, how: TransferKind, now: Timestamp) {
        let by = self.agent().clone();
        if let Some(p) = self.parts.last_mut() {
            p.end = Some(now);
        }
        self.transfers.push(Transfer {
            at: now,
            by: by.clone(),
            to,
            how,
        });
        self.actions.push_back(OutboundAction::AgentFree {
            agent: by,
            wrap_up: self.setup.wrap_up,
        });
    }

    /// `agent` talks to the customer from now.
    fn take(&mut self, agent: AgentId, now: Timestamp) {
        self.parts.push(Part {
            agent,
            start: now,
            answered: Some(now),
            end: None,
        });
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
            Phase::Talking | Phase::Transferring | Phase::Done => self.deadline = None,
        }
    }

    fn finish(&mut self, outcome: DialOutcome, side: HangupSide, now: Timestamp) {
        // An agent still on the call is freed (one who left was already).
        let on_call = self
            .parts
            .last()
            .filter(|p| p.end.is_none())
            .map(|p| p.agent.clone());
        self.phase = Phase::Done;
        self.deadline = None;
        let wrap_up = if self.answered.is_some() {
            self.setup.wrap_up
        } else {
            Duration::ZERO
        };
        if let Some(agent) = on_call {
            self.actions
                .push_back(OutboundAction::AgentFree { agent, wrap_up });
        }
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
        let agent_leg = |p: &Part| Leg {
            kind: LegKind::Agent,
            party: p.agent.0.clone(),
            start: p.start,
            answered: p.answered,
            end: p.end.unwrap_or(now),
            sip_call_id: None,
        };
        let mut legs: Vec<Leg> = self.parts.first().map(agent_leg).into_iter().collect();
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
        legs.extend(self.parts.iter().skip(1).map(agent_leg));
        if let Some((number, from)) = &self.handed_to {
            legs.push(Leg {
                kind: LegKind::ThirdParty,
                party: number.clone(),
                start: *from,
                answered: Some(*from),
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
            agent: Some(self.agent().clone()),
            answered: self.answered,
            talk_end: self.answered.map(|_| now),
            overflow: None,
            hangup_side: side,
            hangup_reason: self.reason,
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
            transfers: self.transfers.clone(),
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
                    agent: AgentId::from("1001"),
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
                    agent: AgentId::from("1001"),
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

    /// Agent 1001 and the customer talking since `at(10)`.
    fn talking() -> OutboundCall {
        let mut c = OutboundCall::start(setup(), T0);
        c.agent_answered(at(3));
        c.customer_answered(at(10));
        drain(&mut c);
        c
    }

    fn free(agent: &str) -> OutboundAction {
        OutboundAction::AgentFree {
            agent: AgentId::from(agent),
            wrap_up: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_blind_transfer_to_an_agent_hands_the_customer_on() {
        let mut c = talking();
        assert_eq!(
            c.transfer(TransferTarget::Group("support".into()), at(20)),
            Err(TransferError::NoQueue)
        );
        assert_eq!(
            c.transfer(TransferTarget::Agent("1001".into()), at(20)),
            Err(TransferError::ToItself)
        );
        c.transfer(TransferTarget::Agent("1002".into()), at(20))
            .expect("transferred");
        assert_eq!(
            drain(&mut c),
            vec![free("1001")],
            "its leg ended by the shell"
        );
        // The old agent's phone hanging up changes nothing now.
        c.agent_hung_up(at(21));
        assert!(drain(&mut c).is_empty());
        c.transfer_answered(at(25));
        assert_eq!(c.agent(), &AgentId::from("1002"));
        assert!(drain(&mut c).is_empty(), "the shell bridged the target");
        c.customer_hung_up(at(85));
        let a = drain(&mut c);
        assert_eq!(a[..2], [OutboundAction::HangUpAgent, free("1002")]);
        let r = record_of(&a);
        assert_eq!(r.agent, Some(AgentId::from("1002")));
        assert_eq!(r.hangup_reason, HangupReason::Normal);
        assert_eq!(r.hangup_side, HangupSide::Customer);
        assert_eq!(r.transfers.len(), 1);
        let t = &r.transfers[0];
        assert_eq!(
            (&t.by, &t.to, t.how, t.at),
            (
                &AgentId::from("1001"),
                &TransferTarget::Agent("1002".into()),
                TransferKind::Blind,
                at(20)
            )
        );
        let legs: Vec<_> = r
            .legs
            .iter()
            .map(|l| (l.kind, l.party.as_str(), l.start, l.end))
            .collect();
        assert_eq!(
            legs,
            vec![
                (LegKind::Agent, "1001", T0, at(20)),
                (LegKind::Customer, "13800138000", at(3), at(85)),
                (LegKind::Agent, "1002", at(25), at(85)),
            ]
        );
        assert_eq!(r.talk_time(), Duration::from_secs(75));
    }

    #[test]
    fn a_customer_sent_to_a_queue_leaves_a_record_to_go_on_from() {
        let mut c = talking();
        c.held(true, at(12));
        c.held(false, at(14));
        let r = c.to_queue("support", at(20)).expect("sent to the queue");
        let a = drain(&mut c);
        assert_eq!(
            a,
            vec![free("1001")],
            "no record: the queued call writes it"
        );
        assert!(c.is_done());
        assert_eq!(r.direction, Direction::Outbound);
        assert_eq!(r.answered, Some(at(10)));
        assert_eq!(r.holds.len(), 1);
        assert_eq!(r.transfers[0].to, TransferTarget::Group("support".into()));
        assert_eq!(
            c.to_queue("support", at(21)),
            Err(TransferError::NotTalking)
        );
    }

    #[test]
    fn a_blind_transfer_nobody_answers_ends_the_customers_leg() {
        let mut c = talking();
        c.transfer(TransferTarget::Number("02188888888".into()), at(20))
            .expect("transferred");
        drain(&mut c);
        c.transfer_failed(at(40));
        let a = drain(&mut c);
        assert_eq!(a[0], OutboundAction::HangUpCustomer);
        assert_eq!(
            a.iter()
                .filter(|x| matches!(x, OutboundAction::AgentFree { .. }))
                .count(),
            0,
            "the agent was freed when it left"
        );
        let r = record_of(&a);
        assert_eq!(r.hangup_reason, HangupReason::TransferFailed);
        assert_eq!(r.agent, Some(AgentId::from("1001")));
        assert!(c.is_done());
    }

    #[test]
    fn a_number_taking_the_customer_ends_the_record() {
        let mut c = talking();
        c.transfer(TransferTarget::Number("02188888888".into()), at(20))
            .expect("transferred");
        drain(&mut c);
        c.transfer_answered(at(30));
        let r = record_of(&drain(&mut c));
        assert_eq!(r.hangup_reason, HangupReason::Transferred);
        assert_eq!(
            r.legs.last().map(|l| (l.kind, l.party.as_str(), l.start)),
            Some((LegKind::ThirdParty, "02188888888", at(30)))
        );

        // The same after consulting the number.
        let mut c = talking();
        c.handed_out("02188888888", at(50)).expect("handed out");
        let a = drain(&mut c);
        assert_eq!(a[0], free("1001"));
        let r = record_of(&a);
        assert_eq!(r.hangup_reason, HangupReason::Transferred);
        assert_eq!(r.transfers[0].how, TransferKind::Consulted);
        assert_eq!(r.talk_end, Some(at(50)));
    }

    #[test]
    fn a_hand_over_makes_the_taker_the_calls_agent() {
        let mut c = talking();
        c.hand_over(&AgentId::from("9001"), TransferKind::TakenOver, at(30))
            .expect("taken over");
        assert_eq!(
            drain(&mut c),
            vec![free("1001")],
            "its leg ended by the shell"
        );
        assert_eq!(
            c.hand_over(&AgentId::from("9001"), TransferKind::Consulted, at(31)),
            Err(TransferError::ToItself)
        );
        c.agent_hung_up(at(60));
        let a = drain(&mut c);
        assert_eq!(a[..2], [OutboundAction::HangUpCustomer, free("9001")]);
        let r = record_of(&a);
        assert_eq!(r.agent, Some(AgentId::from("9001")));
        assert_eq!(r.hangup_side, HangupSide::Agent);
        assert_eq!(r.transfers[0].how, TransferKind::TakenOver);
        // Not before the customer answered.
        let mut c = OutboundCall::start(setup(), T0);
        assert_eq!(
            c.hand_over(&AgentId::from("9001"), TransferKind::Consulted, at(1)),
            Err(TransferError::NotTalking)
        );
        assert_eq!(
            c.transfer(TransferTarget::Agent("1002".into()), at(1)),
            Err(TransferError::NotTalking)
        );
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
        Transfer(bool),
        TransferAnswered,
        TransferFailed,
        HandOver,
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
            any::<bool>().prop_map(Input::Transfer),
            Just(Input::TransferAnswered),
            Just(Input::TransferFailed),
            Just(Input::HandOver),
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
                    Input::Transfer(to_agent) => {
                        let to = if to_agent {
                            TransferTarget::Agent(AgentId(format!("t{clock}")))
                        } else {
                            TransferTarget::Number("02188888888".into())
                        };
                        let _ = c.transfer(to, now);
                    }
                    Input::TransferAnswered => c.transfer_answered(now),
                    Input::TransferFailed => c.transfer_failed(now),
                    Input::HandOver => {
                        let _ = c.hand_over(&AgentId(format!("h{clock}")), TransferKind::Consulted, now);
                    }
                    Input::Timeout(s) => {
                        clock += s;
                        c.handle_timeout(at(clock));
                    }
                }
                all.extend(drain(&mut c));
            }
            let records = all.iter().filter(|a| matches!(a, OutboundAction::Record(_))).count();
            // Every agent who was on the call is freed once, when it
            // leaves or with the record; none is left on a finished call.
            let mut freed: Vec<&AgentId> = all
                .iter()
                .filter_map(|a| match a {
                    OutboundAction::AgentFree { agent, .. } => Some(agent),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(records, usize::from(c.is_done()));
            let n = freed.len();
            freed.sort();
            freed.dedup();
            prop_assert_eq!(freed.len(), n, "an agent freed twice");
            if c.is_done() {
                prop_assert_eq!(n, c.parts.len());
            } else {
                prop_assert_eq!(n, c.parts.len() - usize::from(c.parts.last().is_some_and(|p| p.end.is_none())));
            }
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
