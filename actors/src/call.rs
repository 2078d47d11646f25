//! One inbound call through the call center, sans-IO: IVR, queue, ringing
//! agents, the bridged conversation, the survey and the call record.
//!
//! [`InboundCall`] is the decision half of the Call actor. It owns the
//! call's [`IvrSession`] and tracks the agent legs; it never touches SIP
//! or RTP. Its outputs ([`CallAction`]) tell the shell what to do with the
//! customer's media (prompts, waiting audio, recording, bridge), which
//! agents' devices to ring or stop ringing, what to tell the skill group
//! and the agents, and finally the [`CallRecord`] of the call. The shell feeds back what happened: prompts ended, keys pressed,
//! agents answered or not, either side hung up.
//!
//! Hang-up sides: the customer, the agent, or the system (IVR hang-up,
//! overflow to hang-up, no route).

use crate::acd::{Overflow, OverflowReason};
use crate::ivr::{Flow, IvrAction, IvrOutcome, IvrSession, IvrTrace};
use crate::{AgentId, CallId, TenantId, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;
pub use switchboard_storage::model::{
    CallRecord, Callback, Day, DialOutcome, Direction, HangupReason, HangupSide, HoldPeriod, Leg,
    LegKind, NodeId, NumberLocation, QueueCallback, RingAttempt, RingOutcome, Satisfaction,
    Transfer, TransferKind, TransferTarget,
};

/// Who and what a call is, given when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSetup {
    pub tenant: TenantId,
    /// The node whose media carries the call.
    pub node: NodeId,
    /// The tenant's local time zone, minutes east of UTC: the record's day.
    pub utc_offset_minutes: i32,
    pub call: CallId,
    pub caller: String,
    pub dialed: String,
}

/// What the machine asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAction {
    /// Play a prompt to the customer.
    Play {
        prompt: String,
    },
    StopPrompt,
    /// Loop the waiting audio to the customer until `StopWaiting`.
    PlayWaiting,
    StopWaiting,
    /// Tell the waiting customer its place in the queue (1 is next) and
    /// the expected wait; the waiting audio goes on after it.
    Announce {
        position: usize,
        expected_wait: Option<Duration>,
    },
    /// Play a prompt once over the waiting audio (the callback offer).
    PlayOver {
        prompt: String,
    },
    /// The caller asked to be called back: end its leg (BYE) but keep the
    /// call, which keeps its place in the queue.
    AwaitCallback,
    /// An agent answered the offer of a call whose caller waits for a
    /// callback: dial the caller through the trunk (the agent hears
    /// ring-back meanwhile); the answer comes back through
    /// [`InboundCall::callback_answered`] or
    /// [`InboundCall::callback_failed`].
    DialBack {
        agent: AgentId,
    },
    /// Record what the customer says, at most `max_len`.
    RecordVoicemail {
        max_len: Duration,
    },
    /// Queue in a skill group.
    Enqueue {
        group: String,
        enqueued: Timestamp,
    },
    /// Leave the queue (the customer hung up).
    Abandon {
        group: String,
    },
    /// Ring this agent's device.
    Ring {
        agent: AgentId,
    },
    /// Stop ringing it (CANCEL).
    StopRinging {
        agent: AgentId,
    },
    /// Tell the group and the agent how the offer ended.
    OfferAnswered {
        group: String,
        agent: AgentId,
    },
    OfferFailed {
        group: String,
        agent: AgentId,
        missed: bool,
    },
    /// Connect the customer's and the agent's media and start recording.
    Bridge {
        agent: AgentId,
    },
    /// Tell the agent the call ended (wrap-up starts).
    AgentHungUp {
        agent: AgentId,
        wrap_up: Duration,
    },
    /// End the agent's leg (BYE).
    HangUpAgent {
        agent: AgentId,
    },
    /// End the customer's leg (BYE).
    HangUpCustomer,
    /// Hand the customer to an outside number (the trunk), or to an agent
    /// directly; the record of this call ends here.
    TransferOut {
        to: IvrOutcome,
    },
    /// Offer the call to this agent directly (a transfer to it); the
    /// answer comes back through [`InboundCall::direct_offer`].
    OfferDirect {
        agent: AgentId,
    },
    /// Tell the agent rung directly how its ring ended.
    DirectAnswered {
        agent: AgentId,
    },
    DirectFailed {
        agent: AgentId,
        missed: bool,
    },
    /// The call is over.
    Finished(Box<CallRecord>),
}

/// Why a transfer was refused; the call is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error("the call is not being talked on by an agent")]
    NotTalking,
    #[error("the agent cannot transfer a call to itself")]
    ToItself,
    #[error("transfers to outside numbers are not allowed for this tenant (or it has no trunk)")]
    ExternalNotAllowed,
    #[error("no agent {0}")]
    UnknownAgent(String),
    #[error("no skill group {0}")]
    UnknownGroup(String),
    #[error("an outbound call goes to a skill group's queue, not to its agents' phones")]
    NoQueue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Ivr,
    Queued {
        group: String,
    },
    Talking {
        group: String,
        agent: AgentId,
    },
    /// Transferred to `agent`: offered to it, then ringing; back to the
    /// queue of `fallback` if it cannot take it.
    Direct {
        agent: AgentId,
        fallback: String,
    },
    /// `agent` answered the call's offer; the caller, who asked to be
    /// called back, is being dialed.
    CallingBack {
        group: String,
        agent: AgentId,
    },
    /// The agent hung up; the customer takes the survey.
    Survey,
    Voicemail {
        until: Timestamp,
    },
    Done,
}

#[derive(Debug, Clone)]
struct Ringing {
    agent: AgentId,
    start: Timestamp,
    deadline: Timestamp,
}

/// Where a callback the caller may ask for stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallbackState {
    /// Not asked for (the caller waits on the line).
    None,
    /// Asked for: the confirmation plays, then the caller's leg ends.
    Confirming,
    /// The caller hung up; the call waits in the queue for an agent.
    Waiting,
}

/// The customer's times on hold, as told by the media side.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holds {
    done: Vec<HoldPeriod>,
    since: Option<Timestamp>,
}

impl Holds {
    /// On hold (`on`) or off it, from `now`.
    pub(crate) fn set(&mut self, on: bool, now: Timestamp) {
        match (on, self.since) {
            (true, None) => self.since = Some(now),
            (false, Some(start)) => {
                self.since = None;
                self.done.push(HoldPeriod { start, end: now });
            }
            _ => {}
        }
    }

    /// The periods so far, one still on ending `now`.
    pub(crate) fn periods(&self, now: Timestamp) -> Vec<HoldPeriod> {
        let mut v = self.done.clone();
        v.extend(self.since.map(|start| HoldPeriod { start, end: now }));
        v
    }
}

/// One inbound call. See the module docs.
#[derive(Debug)]
pub struct InboundCall {
    phase: Phase,
    ivr: IvrSession,
    /// The flow to run after the agent hangs up, if the tenant surveys.
    survey: Option<Flow>,
    ringing: Vec<Ringing>,
    wrap_up: Duration,
    /// Whether the customer may be transferred to an outside number.
    allow_external: bool,
    /// Each agent's talk with the customer: who, rung when, answered
    /// when, ended when (the call record's agent legs).
    talks: Vec<(AgentId, Timestamp, Timestamp, Option<Timestamp>)>,
    summary: CallRecord,
    holds: Holds,
    /// The callback offered to waiting callers, if any.
    callback_offer: Option<QueueCallback>,
    callback: CallbackState,
    /// The legs of an outbound call before it came to the queue (its
    /// customer's among them).
    earlier: Vec<Leg>,
    /// The hang-up about to be told is a phone that went quiet.
    media_lost: bool,
    actions: VecDeque<CallAction>,
}

impl InboundCall {
    /// A call from `setup.caller` to hotline `setup.dialed`, answered by
    /// the IVR with `flow` (`open`: working hours). `survey`: the survey
    /// flow played when the agent hangs up first.
    pub fn start(
        setup: CallSetup,
        flow: Flow,
        open: bool,
        allow_external: bool,
        survey: Option<Flow>,
        now: Timestamp,
    ) -> InboundCall {
        let location = crate::location::lookup(&setup.caller).map(|l| NumberLocation {
            place: l.place.to_owned(),
            carrier: l.carrier.map(str::to_owned),
        });
        let mut c = InboundCall {
            phase: Phase::Ivr,
            ivr: IvrSession::start(flow, open, allow_external, now),
            survey,
            ringing: Vec::new(),
            wrap_up: Duration::ZERO,
            allow_external,
            talks: Vec::new(),
            summary: CallRecord {
                tenant: setup.tenant,
                call: setup.call,
                day: Day::of(now, setup.utc_offset_minutes),
                direction: Direction::Inbound,
                customer_number: setup.caller.clone(),
                customer: None,
                caller: setup.caller,
                dialed: setup.dialed,
                start: now,
                end: now,
                ivr: IvrTrace::default(),
                group: None,
                enqueued: None,
                dequeued: None,
                rings: Vec::new(),
                agent: None,
                answered: None,
                talk_end: None,
                overflow: None,
                hangup_side: HangupSide::System,
                hangup_reason: HangupReason::IvrHangUp,
                voicemail: false,
                satisfaction: Satisfaction::NotOffered,
                legs: Vec::new(),
                location,
                recording: None,
                node: setup.node,
                outcome: None,
                transfers: Vec::new(),
                holds: Vec::new(),
                callback: None,
            },
            holds: Holds::default(),
            callback_offer: None,
            callback: CallbackState::None,
            earlier: Vec::new(),
            media_lost: false,
            actions: VecDeque::new(),
        };
        c.drain_ivr(now);
        c
    }

    /// An outbound call whose agent sent the customer to `group`'s queue:
    /// it goes on from `record`, the outbound call's record so far (its
    /// direction, rings, legs, holds and the transfer), queued from now;
    /// then as any queued call (offered, answered, transferred; abandoned
    /// if the customer hangs up waiting). No IVR, no survey.
    pub fn continue_outbound(
        record: CallRecord,
        group: String,
        allow_external: bool,
        wrap_up: Duration,
        now: Timestamp,
    ) -> InboundCall {
        let holds = Holds {
            done: record.holds.clone(),
            since: None,
        };
        let earlier = record.legs.clone();
        let mut c = InboundCall {
            phase: Phase::Ivr,
            ivr: IvrSession::none(allow_external),
            survey: None,
            ringing: Vec::new(),
            wrap_up,
            allow_external,
            talks: Vec::new(),
            summary: CallRecord {
                talk_end: None,
                enqueued: None,
                dequeued: None,
                hangup_side: HangupSide::System,
                hangup_reason: HangupReason::Normal,
                ..record
            },
            holds,
            callback_offer: None,
            callback: CallbackState::None,
            earlier,
            media_lost: false,
            actions: VecDeque::new(),
        };
        c.enqueue(group, now);
        c
    }

    /// Waiting callers are offered `offer`: a callback instead of the wait.
    pub fn with_callback(mut self, offer: Option<QueueCallback>) -> InboundCall {
        self.callback_offer = offer;
        self
    }

    /// The call's record so far (complete once finished).
    pub fn record(&self) -> &CallRecord {
        &self.summary
    }

    /// The call's record as it stands while it is up: its legs so far,
    /// the IVR's path so far, `now` as its end.
    pub fn progress(&self, now: Timestamp) -> CallRecord {
        let mut r = self.summary.clone();
        if self.phase == Phase::Ivr {
            r.ivr = self.ivr.trace().clone();
        }
        r.legs = self.legs(now);
        r.holds = self.holds.periods(now);
        r.end = now;
        r
    }

    /// The customer went on hold (`on`) or came off it.
    pub fn held(&mut self, on: bool, now: Timestamp) {
        if self.phase != Phase::Done {
            self.holds.set(on, now);
        }
    }

    /// The media side is recording the conversation into `file`.
    pub fn recording(&mut self, file: String) {
        self.summary.recording = Some(file);
    }

    pub fn poll_action(&mut self) -> Option<CallAction> {
        self.actions.pop_front()
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The earliest deadline: an agent's ring timeout, the IVR's key wait,
    /// the end of a voicemail.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let rings = self.ringing.iter().map(|r| r.deadline).min();
        let phase = match &self.phase {
            Phase::Ivr | Phase::Survey => self.ivr.poll_timeout(),
            Phase::Voicemail { until } => Some(*until),
            _ => None,
        };
        [rings, phase].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        let (due, live): (Vec<Ringing>, Vec<Ringing>) =
            self.ringing.drain(..).partition(|r| r.deadline <= now);
        self.ringing = live;
        for r in due {
            self.actions.push_back(CallAction::StopRinging {
                agent: r.agent.clone(),
            });
            self.ring_ended(r, RingOutcome::NoAnswer, now);
        }
        match self.phase {
            Phase::Ivr | Phase::Survey => {
                self.ivr.handle_timeout(now);
                self.drain_ivr(now);
            }
            Phase::Voicemail { until } if now >= until => {
                self.finish(HangupSide::System, HangupReason::Voicemail, now);
            }
            _ => {}
        }
    }

    /// A prompt to the customer ended.
    pub fn prompt_done(&mut self, now: Timestamp) {
        if matches!(self.phase, Phase::Ivr | Phase::Survey) {
            self.ivr.prompt_done(now);
            self.drain_ivr(now);
        } else if matches!(self.phase, Phase::Queued { .. })
            && self.callback == CallbackState::Confirming
        {
            // Confirmed: the caller's leg ends, its place stays.
            self.callback = CallbackState::Waiting;
            self.actions.push_back(CallAction::AwaitCallback);
        }
    }

    /// The customer pressed a key.
    pub fn digit(&mut self, key: char, now: Timestamp) {
        if matches!(self.phase, Phase::Ivr | Phase::Survey) {
            self.ivr.digit(key, now);
            self.drain_ivr(now);
            return;
        }
        // A waiting caller asks to be called back (not while an agent's
        // phone rings for it already).
        let asked = matches!(self.phase, Phase::Queued { .. })
            && self.callback == CallbackState::None
            && self.ringing.is_empty();
        if let Some(offer) = self
            .callback_offer
            .as_ref()
            .filter(|o| asked && o.key == key)
        {
            self.callback = CallbackState::Confirming;
            self.summary.callback = Some(Callback {
                requested: now,
                dialed: None,
                outcome: None,
            });
            self.actions.push_back(CallAction::Play {
                prompt: offer.confirm.clone(),
            });
        }
    }

    /// The group chose these agents: ring them.
    pub fn ring(
        &mut self,
        agents: &[AgentId],
        ring_timeout: Duration,
        wrap_up: Duration,
        now: Timestamp,
    ) {
        if !matches!(self.phase, Phase::Queued { .. }) {
            // Too late (the caller left): give the offers back.
            for a in agents {
                if let Some(group) = self.summary.group.clone() {
                    self.actions.push_back(CallAction::OfferFailed {
                        group,
                        agent: a.clone(),
                        missed: false,
                    });
                }
            }
            return;
        }
        self.wrap_up = wrap_up;
        for a in agents {
            self.ringing.push(Ringing {
                agent: a.clone(),
                start: now,
                deadline: now.after(ring_timeout),
            });
            self.actions
                .push_back(CallAction::Ring { agent: a.clone() });
        }
    }

    /// The group withdrew these agents' offers (ring-all: another agent
    /// answered; or the call overflowed).
    pub fn stop_ringing(&mut self, agents: &[AgentId], now: Timestamp) {
        for a in agents {
            if let Some(i) = self.ringing.iter().position(|r| &r.agent == a) {
                let r = self.ringing.remove(i);
                self.actions
                    .push_back(CallAction::StopRinging { agent: a.clone() });
                self.summary.rings.push(RingAttempt {
                    agent: r.agent,
                    start: r.start,
                    end: now,
                    outcome: RingOutcome::Cancelled,
                });
            }
        }
    }

    /// The group's news of the customer's place in the queue; told only
    /// while it waits with no agent ringing.
    pub fn queue_position(&mut self, position: usize, expected_wait: Option<Duration>) {
        if matches!(self.phase, Phase::Queued { .. }) && self.ringing.is_empty() {
            self.actions.push_back(CallAction::Announce {
                position,
                expected_wait,
            });
        }
    }

    /// The call left the queue unanswered.
    pub fn overflow(&mut self, to: Overflow, reason: OverflowReason, now: Timestamp) {
        let Phase::Queued { .. } = self.phase else {
            return;
        };
        let ringing: Vec<AgentId> = self.ringing.iter().map(|r| r.agent.clone()).collect();
        self.stop_ringing(&ringing, now);
        self.actions.push_back(CallAction::StopWaiting);
        self.summary.dequeued = Some(now);
        self.summary.overflow = Some((to.clone(), reason));
        if self.callback == CallbackState::Waiting {
            // Nobody is on the line for voicemail, a number or the IVR:
            // another group may still call back, the rest is given up.
            if let Overflow::Group(group) = to {
                return self.enqueue(group, now);
            }
            return self.finish(HangupSide::System, HangupReason::Overflow, now);
        }
        match to {
            Overflow::Voicemail => self.start_voicemail(Duration::from_secs(60), now),
            Overflow::HangUp => {
                self.actions.push_back(CallAction::HangUpCustomer);
                self.finish(HangupSide::System, HangupReason::Overflow, now);
            }
            Overflow::Group(group) => self.enqueue(group, now),
            Overflow::Number(number) => {
                self.transfer_out(IvrOutcome::TransferNumber { number }, now)
            }
            Overflow::IvrNode(node) => {
                // Back into the flow: a menu offering voicemail or a
                // callback, a goodbye prompt…
                self.phase = Phase::Ivr;
                self.ivr.resume_at(&node, now);
                self.drain_ivr(now);
            }
        }
    }

    /// An agent's device answered.
    pub fn agent_answered(&mut self, agent: &AgentId, now: Timestamp) {
        let Some(i) = self.ringing.iter().position(|r| &r.agent == agent) else {
            // Answered after we stopped ringing it: end that leg.
            self.actions.push_back(CallAction::HangUpAgent {
                agent: agent.clone(),
            });
            return;
        };
        let (group, direct) = match self.phase.clone() {
            Phase::Queued { group } => (group, false),
            Phase::Direct { fallback, .. } => (fallback, true),
            _ => return,
        };
        if self.callback == CallbackState::Waiting && !direct {
            return self.call_back(i, group, now);
        }
        // An agent answered while the confirmation played: the caller is
        // still there and talks to it.
        self.callback = CallbackState::None;
        self.ring_answered(i, now);
        self.actions.push_back(CallAction::StopWaiting);
        self.actions.push_back(if direct {
            CallAction::DirectAnswered {
                agent: agent.clone(),
            }
        } else {
            CallAction::OfferAnswered {
                group: group.clone(),
                agent: agent.clone(),
            }
        });
        self.actions.push_back(CallAction::Bridge {
            agent: agent.clone(),
        });
        if !direct {
            self.summary.dequeued = Some(now);
        }
        self.summary.agent = Some(agent.clone());
        // The service level counts the first answer.
        self.summary.answered.get_or_insert(now);
        self.phase = Phase::Talking {
            group,
            agent: agent.clone(),
        };
    }

    /// The agent rung `i`-th answered the call of a caller who waits for a
    /// callback: it leaves the queue and the caller is dialed.
    fn call_back(&mut self, i: usize, group: String, now: Timestamp) {
        let agent = self.ring_answered(i, now);
        self.actions.push_back(CallAction::OfferAnswered {
            group: group.clone(),
            agent: agent.clone(),
        });
        self.actions.push_back(CallAction::DialBack {
            agent: agent.clone(),
        });
        self.summary.dequeued = Some(now);
        self.summary.agent = Some(agent.clone());
        if let Some(c) = self.summary.callback.as_mut() {
            c.dialed = Some(now);
        }
        self.callback = CallbackState::None;
        self.phase = Phase::CallingBack { group, agent };
    }

    /// The `i`-th ring was answered: its agent's talk begins, the other
    /// rings stop. Its agent.
    fn ring_answered(&mut self, i: usize, now: Timestamp) -> AgentId {
        let r = self.ringing.remove(i);
        let agent = r.agent.clone();
        self.talks.push((agent.clone(), r.start, now, None));
        self.summary.rings.push(RingAttempt {
            agent: r.agent,
            start: r.start,
            end: now,
            outcome: RingOutcome::Answered,
        });
        let others: Vec<AgentId> = self.ringing.iter().map(|r| r.agent.clone()).collect();
        self.stop_ringing(&others, now);
        agent
    }

    /// The caller answered its callback: it talks to the agent. The
    /// service level counts this answer against the call's first enqueue.
    pub fn callback_answered(&mut self, now: Timestamp) {
        let Phase::CallingBack { group, agent } = self.phase.clone() else {
            return;
        };
        if let Some(c) = self.summary.callback.as_mut() {
            c.outcome = Some(DialOutcome::Answered);
        }
        self.actions.push_back(CallAction::Bridge {
            agent: agent.clone(),
        });
        self.summary.answered.get_or_insert(now);
        self.phase = Phase::Talking { group, agent };
    }

    /// Dialing the caller back ended with `code` (a final response other
    /// than 2xx; 408 when nothing answered; 503 when it could not be
    /// dialed): the agent is free again, the call is over.
    pub fn callback_failed(&mut self, code: u16, now: Timestamp) {
        let Phase::CallingBack { agent, .. } = self.phase.clone() else {
            return;
        };
        if let Some(c) = self.summary.callback.as_mut() {
            c.outcome = Some(DialOutcome::of_final(code, true));
        }
        self.end_talk(now);
        self.actions.push_back(CallAction::HangUpAgent {
            agent: agent.clone(),
        });
        self.actions.push_back(CallAction::AgentHungUp {
            agent,
            wrap_up: Duration::ZERO,
        });
        self.finish(HangupSide::System, HangupReason::CallbackFailed, now);
    }

    /// An agent's device refused or could not be reached.
    pub fn agent_failed(&mut self, agent: &AgentId, now: Timestamp) {
        if let Some(i) = self.ringing.iter().position(|r| &r.agent == agent) {
            let r = self.ringing.remove(i);
            self.ring_ended(r, RingOutcome::Failed, now);
        }
    }

    /// The agent hung up: the customer takes the survey if there is one.
    pub fn agent_hung_up(&mut self, now: Timestamp) {
        let reason = self.talk_ended();
        if let Phase::CallingBack { agent, .. } = self.phase.clone() {
            // Before the caller answered its callback: that dial ends.
            if let Some(c) = self.summary.callback.as_mut() {
                c.outcome = Some(DialOutcome::Cancelled);
            }
            self.end_talk(now);
            self.actions.push_back(CallAction::HangUpCustomer);
            self.actions.push_back(CallAction::AgentHungUp {
                agent,
                wrap_up: Duration::ZERO,
            });
            return self.finish(HangupSide::Agent, HangupReason::CallbackFailed, now);
        }
        let Phase::Talking { agent, .. } = self.phase.clone() else {
            return;
        };
        self.summary.talk_end = Some(now);
        self.end_talk(now);
        self.actions.push_back(CallAction::AgentHungUp {
            agent,
            wrap_up: self.wrap_up,
        });
        match self.survey.take() {
            Some(flow) => {
                self.phase = Phase::Survey;
                self.ivr = IvrSession::start(flow, true, false, now);
                self.summary.hangup_side = HangupSide::Agent;
                self.summary.hangup_reason = reason;
                self.drain_ivr(now);
            }
            None => {
                self.actions.push_back(CallAction::HangUpCustomer);
                self.finish(HangupSide::Agent, reason, now);
            }
        }
    }

    /// The next hang-up (the customer's or the agent's) is a phone that
    /// sent no media for the node's media timeout, not a BYE: a talk it
    /// ends ends `MediaTimeout`. Ends elsewhere keep their reasons (a
    /// caller gone quiet in the queue abandoned it all the same).
    pub fn media_timeout(&mut self) {
        self.media_lost = true;
    }

    /// How a talk's hang-up ends the call: normally, or the phone was lost.
    fn talk_ended(&mut self) -> HangupReason {
        if std::mem::take(&mut self.media_lost) {
            HangupReason::MediaTimeout
        } else {
            HangupReason::Normal
        }
    }

    /// The customer hung up.
    pub fn customer_hung_up(&mut self, now: Timestamp) {
        let reason = self.talk_ended();
        match self.phase.clone() {
            Phase::Ivr => self.finish(HangupSide::Customer, HangupReason::LeftInIvr, now),
            Phase::Queued { .. } if self.callback != CallbackState::None => {
                // Gone before (or as) the confirmation ended: it waits for
                // its callback all the same.
                self.callback = CallbackState::Waiting;
            }
            Phase::Queued { group } => {
                let ringing: Vec<AgentId> = self.ringing.iter().map(|r| r.agent.clone()).collect();
                let reason = if ringing.is_empty() {
                    HangupReason::AbandonedInQueue
                } else {
                    HangupReason::AbandonedRinging
                };
                self.stop_ringing(&ringing, now);
                // The group hears of it once: Abandon also ends its offers.
                self.actions.push_back(CallAction::Abandon { group });
                self.summary.dequeued = Some(now);
                self.finish(HangupSide::Customer, reason, now);
            }
            Phase::Direct { .. } => {
                let ringing: Vec<AgentId> = self.ringing.iter().map(|r| r.agent.clone()).collect();
                self.stop_ringing(&ringing, now);
                // No group ends this offer: the agent hears it here.
                for agent in ringing {
                    self.actions.push_back(CallAction::DirectFailed {
                        agent,
                        missed: false,
                    });
                }
                self.finish(HangupSide::Customer, HangupReason::AbandonedRinging, now);
            }
            Phase::Talking { agent, .. } => {
                self.summary.talk_end = Some(now);
                self.end_talk(now);
                self.actions.push_back(CallAction::HangUpAgent {
                    agent: agent.clone(),
                });
                self.actions.push_back(CallAction::AgentHungUp {
                    agent,
                    wrap_up: self.wrap_up,
                });
                self.finish(HangupSide::Customer, reason, now);
            }
            Phase::Survey => {
                // Hung up during the survey (the record says so): the
                // agent ended the talk.
                let (side, reason) = (self.summary.hangup_side, self.summary.hangup_reason);
                self.finish(side, reason, now);
            }
            Phase::Voicemail { .. } => {
                self.finish(HangupSide::Customer, HangupReason::Voicemail, now)
            }
            // No caller's leg is up while it is dialed.
            Phase::CallingBack { .. } | Phase::Done => {}
        }
    }

    fn ring_ended(&mut self, r: Ringing, outcome: RingOutcome, now: Timestamp) {
        self.summary.rings.push(RingAttempt {
            agent: r.agent.clone(),
            start: r.start,
            end: now,
            outcome,
        });
        match self.phase.clone() {
            Phase::Queued { group } => {
                self.actions.push_back(CallAction::OfferFailed {
                    group,
                    agent: r.agent,
                    missed: outcome == RingOutcome::NoAnswer,
                });
            }
            Phase::Direct { agent, fallback } if agent == r.agent => {
                self.actions.push_back(CallAction::DirectFailed {
                    agent,
                    missed: outcome == RingOutcome::NoAnswer,
                });
                self.enqueue(fallback, now);
            }
            _ => {}
        }
    }

    /// The current agent's talk ends now.
    fn end_talk(&mut self, now: Timestamp) {
        if let Some(t) = self.talks.last_mut() {
            t.3.get_or_insert(now);
        }
    }

    /// The talking agent transfers the customer (blind): its leg ends and
    /// it goes to wrap-up; the customer is rung at another agent (back to
    /// the current group's queue if that agent cannot take it), queued in
    /// a group (keeping its first enqueue time, so its wait counts from
    /// then), or handed to an outside number (the record ends there).
    pub fn transfer(&mut self, to: TransferTarget, now: Timestamp) -> Result<(), TransferError> {
        let Phase::Talking { group, agent } = self.phase.clone() else {
            return Err(TransferError::NotTalking);
        };
        match &to {
            TransferTarget::Agent(a) if *a == agent => return Err(TransferError::ToItself),
            TransferTarget::Number(_) if !self.allow_external => {
                return Err(TransferError::ExternalNotAllowed)
            }
            _ => {}
        }
        self.leave(agent, to.clone(), TransferKind::Blind, now);
        match to {
            TransferTarget::Group(g) => self.enqueue(g, now),
            TransferTarget::Agent(a) => {
                self.actions.push_back(CallAction::PlayWaiting);
                self.actions
                    .push_back(CallAction::OfferDirect { agent: a.clone() });
                self.phase = Phase::Direct {
                    agent: a,
                    fallback: group,
                };
            }
            TransferTarget::Number(number) => {
                self.summary.talk_end = Some(now);
                self.transfer_out(IvrOutcome::TransferNumber { number }, now);
            }
        }
        Ok(())
    }

    /// Another agent, already on the phone with the call's node, takes
    /// the customer: a supervisor taking the call over (强拆), or the agent
    /// the talking one consulted (咨询转). The talking agent is off the call
    /// and goes to wrap-up; `to` talks to the customer from now on (its
    /// leg is connected already: no bridge is asked for).
    pub fn hand_over(
        &mut self,
        to: &AgentId,
        how: TransferKind,
        now: Timestamp,
    ) -> Result<(), TransferError> {
        let Phase::Talking { group, agent } = self.phase.clone() else {
            return Err(TransferError::NotTalking);
        };
        if *to == agent {
            return Err(TransferError::ToItself);
        }
        self.leave(agent, TransferTarget::Agent(to.clone()), how, now);
        self.talks.push((to.clone(), now, now, None));
        self.summary.agent = Some(to.clone());
        self.phase = Phase::Talking {
            group,
            agent: to.clone(),
        };
        Ok(())
    }

    /// The outside number the talking agent consulted takes the customer
    /// (its leg is up already): the agent goes to wrap-up and the record
    /// ends here, as with a blind transfer to a number.
    pub fn handed_out(&mut self, number: &str, now: Timestamp) -> Result<(), TransferError> {
        let Phase::Talking { agent, .. } = self.phase.clone() else {
            return Err(TransferError::NotTalking);
        };
        if !self.allow_external {
            return Err(TransferError::ExternalNotAllowed);
        }
        let to = TransferTarget::Number(number.to_owned());
        self.leave(agent, to, TransferKind::Consulted, now);
        self.summary.talk_end = Some(now);
        self.finish(HangupSide::System, HangupReason::Transferred, now);
        Ok(())
    }

    /// The talking `agent`'s part ends with a transfer to `to`.
    fn leave(&mut self, agent: AgentId, to: TransferTarget, how: TransferKind, now: Timestamp) {
        self.end_talk(now);
        self.summary.transfers.push(Transfer {
            at: now,
            by: agent.clone(),
            to,
            how,
        });
        self.actions.push_back(CallAction::HangUpAgent {
            agent: agent.clone(),
        });
        self.actions.push_back(CallAction::AgentHungUp {
            agent,
            wrap_up: self.wrap_up,
        });
    }

    /// The agent a transfer went to took the offer (`ok`: it rings now,
    /// for `ring_timeout`) or could not (not ready, offline): back to the
    /// queue.
    pub fn direct_offer(
        &mut self,
        agent: &AgentId,
        ok: bool,
        ring_timeout: Duration,
        now: Timestamp,
    ) {
        let Phase::Direct {
            agent: target,
            fallback,
        } = self.phase.clone()
        else {
            if ok {
                // The customer left meanwhile: give the offer back.
                self.actions.push_back(CallAction::DirectFailed {
                    agent: agent.clone(),
                    missed: false,
                });
            }
            return;
        };
        if target != *agent {
            return;
        }
        if ok {
            self.ringing.push(Ringing {
                agent: target.clone(),
                start: now,
                deadline: now.after(ring_timeout),
            });
            self.actions.push_back(CallAction::Ring { agent: target });
        } else {
            self.enqueue(fallback, now);
        }
    }

    fn enqueue(&mut self, group: String, now: Timestamp) {
        self.summary.group = Some(group.clone());
        let enqueued = *self.summary.enqueued.get_or_insert(now);
        self.summary.dequeued = None;
        self.actions.push_back(CallAction::PlayWaiting);
        self.actions.push_back(CallAction::Enqueue {
            group: group.clone(),
            enqueued,
        });
        if let Some(offer) = &self.callback_offer {
            if self.callback == CallbackState::None {
                self.actions.push_back(CallAction::PlayOver {
                    prompt: offer.offer.clone(),
                });
            }
        }
        self.phase = Phase::Queued { group };
    }

    fn start_voicemail(&mut self, max_len: Duration, now: Timestamp) {
        self.summary.voicemail = true;
        self.actions
            .push_back(CallAction::RecordVoicemail { max_len });
        self.phase = Phase::Voicemail {
            until: now.after(max_len),
        };
    }

    fn transfer_out(&mut self, to: IvrOutcome, now: Timestamp) {
        self.actions.push_back(CallAction::TransferOut { to });
        self.finish(HangupSide::System, HangupReason::Transferred, now);
    }

    fn drain_ivr(&mut self, now: Timestamp) {
        while let Some(a) = self.ivr.poll_action() {
            match a {
                IvrAction::Play { prompt } => self.actions.push_back(CallAction::Play { prompt }),
                IvrAction::StopPrompt => self.actions.push_back(CallAction::StopPrompt),
                IvrAction::Done(outcome) => self.ivr_done(outcome, now),
            }
        }
    }

    fn ivr_done(&mut self, outcome: IvrOutcome, now: Timestamp) {
        if self.phase == Phase::Survey {
            self.actions.push_back(CallAction::HangUpCustomer);
            let (side, reason) = (self.summary.hangup_side, self.summary.hangup_reason);
            return self.finish(side, reason, now);
        }
        self.summary.ivr = self.ivr.trace().clone();
        match outcome {
            IvrOutcome::TransferGroup { group } => self.enqueue(group, now),
            IvrOutcome::Voicemail { max_len } => self.start_voicemail(max_len, now),
            IvrOutcome::HangUp => {
                self.actions.push_back(CallAction::HangUpCustomer);
                self.finish(HangupSide::System, HangupReason::IvrHangUp, now);
            }
            other => self.transfer_out(other, now),
        }
    }

    /// The customer's leg (answered by the IVR at once) and the leg of
    /// each agent who answered.
    fn legs(&self, now: Timestamp) -> Vec<Leg> {
        let s = &self.summary;
        if !self.earlier.is_empty() {
            // An outbound call's: its legs then (the customer's still up),
            // the agents' since.
            let mut legs = self.earlier.clone();
            for l in legs.iter_mut().filter(|l| l.kind == LegKind::Customer) {
                l.end = now;
            }
            legs.extend(self.talk_legs(now));
            return legs;
        }
        let mut legs = vec![Leg {
            kind: LegKind::Customer,
            party: s.caller.clone(),
            start: s.start,
            answered: Some(s.start),
            end: now,
            sip_call_id: None,
        }];
        legs.extend(self.talk_legs(now));
        legs
    }

    /// The leg of each agent who answered.
    fn talk_legs(&self, now: Timestamp) -> impl Iterator<Item = Leg> + '_ {
        let talk_end = self.summary.talk_end;
        self.talks
            .iter()
            .map(move |(agent, start, answered, end)| Leg {
                kind: LegKind::Agent,
                party: agent.0.clone(),
                start: *start,
                answered: Some(*answered),
                end: end.or(talk_end).unwrap_or(now),
                sip_call_id: None,
            })
    }

    fn finish(&mut self, side: HangupSide, reason: HangupReason, now: Timestamp) {
        if self.phase == Phase::Done {
            return;
        }
        if self.phase == Phase::Ivr {
            self.summary.ivr = self.ivr.trace().clone();
        }
        // The survey after the agent, or one in the flow itself; hanging
        // up during it is its outcome.
        if let Some(s) = self.ivr.satisfaction() {
            self.summary.satisfaction = s;
        }
        self.phase = Phase::Done;
        self.ringing.clear();
        self.summary.end = now;
        self.summary.hangup_side = side;
        self.summary.hangup_reason = reason;
        self.summary.legs = self.legs(now);
        self.summary.holds = self.holds.periods(now);
        self.actions
            .push_back(CallAction::Finished(Box::new(self.summary.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::{Node, Survey, SurveyLevel};
    use std::collections::BTreeMap;

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn setup(call: u64, caller: &str) -> CallSetup {
        CallSetup {
            tenant: "demo".into(),
            node: "n1".into(),
            utc_offset_minutes: 480,
            call: CallId(call),
            caller: caller.into(),
            dialed: "4000".into(),
        }
    }

    fn flow() -> Flow {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "menu".into(),
            Node::Menu {
                prompt: "menu".into(),
                options: [('1', "support".into())].into_iter().collect(),
                timeout: Duration::from_secs(5),
                invalid_prompt: None,
                retries: 1,
                repeat_key: None,
                on_fail: "bye".into(),
            },
        );
        nodes.insert(
            "support".into(),
            Node::TransferGroup {
                group: "support".into(),
            },
        );
        nodes.insert("bye".into(), Node::HangUp { prompt: None });
        Flow {
            id: "f".into(),
            start: "menu".into(),
            nodes,
        }
    }

    /// Key 9 is the best (5), key 1 the worst (1).
    fn survey() -> Flow {
        let level = |key, score, label: &str| SurveyLevel {
            key,
            score,
            label: label.into(),
        };
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "s".into(),
            Node::Survey(Survey {
                prompt: "rate".into(),
                levels: vec![
                    level('9', 5, "very satisfied"),
                    level('5', 3, "satisfied"),
                    level('1', 1, "not satisfied"),
                ],
                timeout: Duration::from_secs(5),
                invalid_prompt: Some("sorry".into()),
                thanks: None,
            }),
        );
        Flow {
            id: "survey".into(),
            start: "s".into(),
            nodes,
        }
    }

    fn actions(c: &mut InboundCall) -> Vec<CallAction> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn finished(a: &[CallAction]) -> Option<CallRecord> {
        a.iter().find_map(|a| match a {
            CallAction::Finished(s) => Some((**s).clone()),
            _ => None,
        })
    }

    /// IVR → queue, pressing 1.
    fn queued(survey_flow: Option<Flow>) -> InboundCall {
        let mut c = InboundCall::start(
            setup(1, "13800138000"),
            flow(),
            true,
            false,
            survey_flow,
            t(0),
        );
        assert_eq!(
            actions(&mut c),
            vec![CallAction::Play {
                prompt: "menu".into()
            }]
        );
        c.prompt_done(t(3));
        c.digit('1', t(4));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::PlayWaiting,
                CallAction::Enqueue {
                    group: "support".into(),
                    enqueued: t(4)
                }
            ]
        );
        c
    }

    /// A queued call answered by 1001 at t(10).
    fn talking() -> InboundCall {
        talking_with(None)
    }

    /// The same, with a survey after the agent if `survey_flow` is one.
    fn talking_with(survey_flow: Option<Flow>) -> InboundCall {
        let mut c = queued(survey_flow);
        let a: AgentId = "1001".into();
        c.ring(
            std::slice::from_ref(&a),
            Duration::from_secs(15),
            Duration::from_secs(5),
            t(6),
        );
        c.agent_answered(&a, t(10));
        actions(&mut c);
        c
    }

    #[test]
    fn a_phone_gone_quiet_ends_the_talk_media_timeout_on_its_side() {
        // The customer's phone.
        let mut c = talking();
        c.media_timeout();
        c.customer_hung_up(t(40));
        let r = finished(&actions(&mut c)).unwrap_or_else(|| panic!("no record"));
        assert_eq!(
            (r.hangup_side, r.hangup_reason),
            (HangupSide::Customer, HangupReason::MediaTimeout)
        );
        assert_eq!(r.talk_end, Some(t(40)));
        // The agent's, with a survey after: the customer still takes it,
        // and the record says why the talk ended.
        let mut c = talking_with(Some(survey()));
        c.media_timeout();
        c.agent_hung_up(t(40));
        actions(&mut c);
        c.customer_hung_up(t(45));
        let r = finished(&actions(&mut c)).unwrap_or_else(|| panic!("no record"));
        assert_eq!(
            (r.hangup_side, r.hangup_reason),
            (HangupSide::Agent, HangupReason::MediaTimeout)
        );
        // A caller gone quiet in the queue abandoned it all the same.
        let mut c = queued(None);
        c.media_timeout();
        c.customer_hung_up(t(9));
        let r = finished(&actions(&mut c)).unwrap_or_else(|| panic!("no record"));
        assert_eq!(r.hangup_reason, HangupReason::AbandonedInQueue);
        // An ordinary hang-up after all that is normal.
        let mut c = talking();
        c.customer_hung_up(t(40));
        let r = finished(&actions(&mut c)).unwrap_or_else(|| panic!("no record"));
        assert_eq!(r.hangup_reason, HangupReason::Normal);
    }

    #[test]
    fn a_call_lost_with_its_node_is_closed_from_its_progress() {
        let c = talking();
        let p = c.progress(t(30));
        assert_eq!(p.end, t(30));
        assert_eq!(p.answered, Some(t(10)));
        assert_eq!(p.talk_end, None);
        assert_eq!(p.legs.len(), 2, "{:?}", p.legs);
        // Found dead later: it ends when last heard, the talk with it.
        let r = p.clone().lost(t(45));
        assert_eq!(r.hangup_reason, HangupReason::NodeLost);
        assert_eq!(r.hangup_side, HangupSide::System);
        assert_eq!((r.end, r.talk_end), (t(45), Some(t(45))));
        assert_eq!(r.talk_time(), Duration::from_secs(35));
        assert!(r.legs.iter().all(|l| l.end == t(45)));
        // Never before what it wrote of itself.
        let r = p.lost(t(20));
        assert_eq!(r.end, t(30));
        assert_eq!(r.talk_time(), Duration::from_secs(20));
        // A call still waiting: its queue wait ends with it.
        let q = queued(None).progress(t(8)).lost(t(9));
        assert_eq!(q.dequeued, Some(t(9)));
        assert_eq!(q.answered, None);
    }

    #[test]
    fn a_supervisor_takes_the_call_over_and_the_agent_is_cut_off() {
        let mut c = talking();
        let (a, sup): (AgentId, AgentId) = ("1001".into(), "1003".into());
        let over = TransferKind::TakenOver;
        assert_eq!(c.hand_over(&a, over, t(20)), Err(TransferError::ToItself));
        c.hand_over(&sup, over, t(20)).unwrap();
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::HangUpAgent { agent: a.clone() },
                CallAction::AgentHungUp {
                    agent: a.clone(),
                    wrap_up: Duration::from_secs(5)
                },
            ]
        );
        // The supervisor is the call's agent now: it hangs up with the
        // customer and goes to wrap-up itself.
        c.customer_hung_up(t(50));
        let acts = actions(&mut c);
        assert!(acts.contains(&CallAction::HangUpAgent { agent: sup.clone() }));
        assert!(acts.contains(&CallAction::AgentHungUp {
            agent: sup.clone(),
            wrap_up: Duration::from_secs(5)
        }));
        let r = finished(&acts).unwrap();
        assert_eq!(r.agent, Some(sup.clone()));
        assert_eq!(
            r.transfers,
            vec![Transfer {
                at: t(20),
                by: a.clone(),
                to: TransferTarget::Agent(sup.clone()),
                how: TransferKind::TakenOver,
            }]
        );
        let agents: Vec<(&str, Timestamp, Timestamp)> = r
            .legs
            .iter()
            .filter(|l| l.kind == LegKind::Agent)
            .map(|l| (l.party.as_str(), l.answered.unwrap_or(l.start), l.end))
            .collect();
        assert_eq!(agents, vec![("1001", t(10), t(20)), ("1003", t(20), t(50))]);
        // Nothing to take over once the call is over.
        assert_eq!(
            c.hand_over(&sup, over, t(60)),
            Err(TransferError::NotTalking)
        );
    }

    /// A call with the callback offer, queued in support at t(4).
    fn queued_with_callback() -> InboundCall {
        let offer = QueueCallback {
            key: '9',
            offer: "cb_offer".into(),
            confirm: "cb_confirm".into(),
        };
        let mut c = InboundCall::start(setup(1, "13800138000"), flow(), true, false, None, t(0))
            .with_callback(Some(offer));
        actions(&mut c);
        c.prompt_done(t(3));
        c.digit('1', t(4));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::PlayWaiting,
                CallAction::Enqueue {
                    group: "support".into(),
                    enqueued: t(4)
                },
                CallAction::PlayOver {
                    prompt: "cb_offer".into()
                },
            ]
        );
        // Another key does nothing; the callback key asks for it.
        c.digit('5', t(10));
        assert!(actions(&mut c).is_empty());
        c.digit('9', t(10));
        assert_eq!(
            actions(&mut c),
            vec![CallAction::Play {
                prompt: "cb_confirm".into()
            }]
        );
        c.prompt_done(t(14));
        assert_eq!(actions(&mut c), vec![CallAction::AwaitCallback]);
        // Its leg ends: it is not abandoned, it keeps its place.
        c.customer_hung_up(t(14));
        assert!(actions(&mut c).is_empty());
        assert!(!c.is_finished());
        c
    }

    #[test]
    fn a_caller_called_back_once_an_agent_answers_talks_to_it_on_one_record() {
        let mut c = queued_with_callback();
        let a: AgentId = "1001".into();
        c.ring(
            std::slice::from_ref(&a),
            Duration::from_secs(15),
            Duration::from_secs(5),
            t(40),
        );
        assert_eq!(actions(&mut c), vec![CallAction::Ring { agent: a.clone() }]);
        c.agent_answered(&a, t(42));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::OfferAnswered {
                    group: "support".into(),
                    agent: a.clone()
                },
                CallAction::DialBack { agent: a.clone() },
            ]
        );
        // No survey or transfer meanwhile: nobody to talk to yet.
        assert_eq!(
            c.transfer(TransferTarget::Group("sales".into()), t(43)),
            Err(TransferError::NotTalking)
        );
        c.callback_answered(t(50));
        assert_eq!(
            actions(&mut c),
            vec![CallAction::Bridge { agent: a.clone() }]
        );
        c.customer_hung_up(t(80));
        let r = finished(&actions(&mut c)).unwrap();
        assert_eq!(
            r.callback,
            Some(Callback {
                requested: t(10),
                dialed: Some(t(42)),
                outcome: Some(DialOutcome::Answered),
            })
        );
        assert_eq!((r.enqueued, r.dequeued), (Some(t(4)), Some(t(42))));
        // Answered when the caller was reached: against the first enqueue.
        assert_eq!(r.answered, Some(t(50)));
        assert_eq!(r.agent, Some(a));
        assert_eq!(r.hangup_reason, HangupReason::Normal);
    }

    #[test]
    fn a_callback_nobody_takes_frees_the_agent_and_ends_the_call() {
        let mut c = queued_with_callback();
        let a: AgentId = "1001".into();
        c.ring(
            std::slice::from_ref(&a),
            Duration::from_secs(15),
            Duration::from_secs(5),
            t(40),
        );
        c.agent_answered(&a, t(42));
        actions(&mut c);
        c.callback_failed(486, t(50));
        let acts = actions(&mut c);
        assert_eq!(
            acts[..2],
            [
                CallAction::HangUpAgent { agent: a.clone() },
                CallAction::AgentHungUp {
                    agent: a,
                    wrap_up: Duration::ZERO
                },
            ]
        );
        let r = finished(&acts).unwrap();
        assert_eq!(r.hangup_reason, HangupReason::CallbackFailed);
        assert_eq!(r.callback.and_then(|c| c.outcome), Some(DialOutcome::Busy));
        assert_eq!(r.answered, None);
    }

    #[test]
    fn a_callback_still_waiting_at_the_overflow_is_given_up_unless_another_group_takes_it() {
        let mut c = queued_with_callback();
        c.overflow(
            Overflow::Group("sales".into()),
            OverflowReason::MaxQueueTime,
            t(64),
        );
        let acts = actions(&mut c);
        assert!(acts.contains(&CallAction::Enqueue {
            group: "sales".into(),
            enqueued: t(4)
        }));
        // No offer to a caller who is not there.
        assert!(!acts
            .iter()
            .any(|a| matches!(a, CallAction::PlayOver { .. })));
        c.overflow(Overflow::Voicemail, OverflowReason::MaxQueueTime, t(124));
        let r = finished(&actions(&mut c)).unwrap();
        assert_eq!(r.hangup_reason, HangupReason::Overflow);
        assert_eq!(r.callback.and_then(|c| c.dialed), None);
    }

    #[test]
    fn times_on_hold_are_in_the_record_one_still_on_ending_with_the_call() {
        let mut c = talking();
        c.held(true, t(20));
        c.held(true, t(21));
        c.held(false, t(25));
        c.held(false, t(26));
        c.held(true, t(30));
        assert_eq!(
            c.progress(t(32)).holds,
            vec![
                HoldPeriod {
                    start: t(20),
                    end: t(25)
                },
                HoldPeriod {
                    start: t(30),
                    end: t(32)
                },
            ]
        );
        c.customer_hung_up(t(40));
        let r = finished(&actions(&mut c)).unwrap();
        assert_eq!(r.hold_time(), Duration::from_secs(5 + 10));
        assert_eq!(r.holds.len(), 2);
    }

    #[test]
    fn a_consulted_number_takes_the_customer_and_the_record_ends_transferred() {
        let mut c = talking();
        let a: AgentId = "1001".into();
        assert_eq!(
            c.handed_out("13900001111", t(20)),
            Err(TransferError::ExternalNotAllowed)
        );
        c.allow_external = true;
        c.handed_out("13900001111", t(20)).unwrap();
        let acts = actions(&mut c);
        assert_eq!(
            acts[..2],
            [
                CallAction::HangUpAgent { agent: a.clone() },
                CallAction::AgentHungUp {
                    agent: a.clone(),
                    wrap_up: Duration::from_secs(5)
                },
            ]
        );
        // Its leg is up already: nothing is dialed.
        assert!(!acts
            .iter()
            .any(|x| matches!(x, CallAction::TransferOut { .. })));
        let r = finished(&acts).unwrap();
        assert_eq!(r.hangup_reason, HangupReason::Transferred);
        assert_eq!(r.talk_end, Some(t(20)));
        assert_eq!(
            r.transfers,
            vec![Transfer {
                at: t(20),
                by: a,
                to: TransferTarget::Number("13900001111".into()),
                how: TransferKind::Consulted,
            }]
        );
        assert!(c.is_finished());
    }

    #[test]
    fn an_outbound_call_sent_to_a_queue_goes_on_in_one_record() {
        use crate::outbound::{OutboundCall, OutboundSetup};
        let mut o = OutboundCall::start(
            OutboundSetup {
                tenant: TenantId::from("demo"),
                node: NodeId::from("n1"),
                utc_offset_minutes: 480,
                call: CallId(7),
                agent: AgentId::from("1001"),
                caller_id: "4000".into(),
                number: "13800138000".into(),
                customer: None,
                wrap_up: Duration::from_secs(10),
                internal: false,
            },
            t(0),
        );
        o.agent_answered(t(2));
        o.customer_answered(t(5));
        let record = o.to_queue("support", t(20)).unwrap();
        let mut c = InboundCall::continue_outbound(
            record,
            "support".into(),
            false,
            Duration::from_secs(5),
            t(20),
        );
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::PlayWaiting,
                CallAction::Enqueue {
                    group: "support".into(),
                    enqueued: t(20)
                }
            ]
        );
        let b = AgentId::from("1002");
        c.ring(
            std::slice::from_ref(&b),
            Duration::from_secs(15),
            Duration::from_secs(5),
            t(21),
        );
        c.agent_answered(&b, t(24));
        actions(&mut c);
        c.customer_hung_up(t(60));
        let r = finished(&actions(&mut c)).unwrap();
        assert_eq!(r.direction, Direction::Outbound);
        assert_eq!(r.agent, Some(b.clone()));
        assert_eq!(r.group.as_deref(), Some("support"));
        assert_eq!(r.enqueued, Some(t(20)));
        assert_eq!(
            r.answered,
            Some(t(5)),
            "the customer answered the outbound call"
        );
        assert_eq!(r.hangup_side, HangupSide::Customer);
        assert_eq!(r.outcome, Some(DialOutcome::Answered));
        assert_eq!(r.transfers.len(), 1);
        let legs: Vec<(LegKind, &str, Timestamp)> = r
            .legs
            .iter()
            .map(|l| (l.kind, l.party.as_str(), l.end))
            .collect();
        assert_eq!(
            legs,
            vec![
                (LegKind::Agent, "1001", t(20)),
                (LegKind::Customer, "13800138000", t(60)),
                (LegKind::Agent, "1002", t(60)),
            ]
        );
        assert_eq!(r.rings.len(), 2, "the outbound agent's ring, then 1002's");
    }

    #[test]
    fn blind_transfers_to_an_agent_then_to_a_group_make_one_record() {
        let mut c = talking();
        let (a, b, d): (AgentId, AgentId, AgentId) = ("1001".into(), "1002".into(), "1003".into());
        assert_eq!(
            c.transfer(TransferTarget::Agent(a.clone()), t(20)),
            Err(TransferError::ToItself)
        );
        assert_eq!(
            c.transfer(TransferTarget::Number("13900001111".into()), t(20)),
            Err(TransferError::ExternalNotAllowed)
        );
        c.transfer(TransferTarget::Agent(b.clone()), t(20)).unwrap();
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::HangUpAgent { agent: a.clone() },
                CallAction::AgentHungUp {
                    agent: a.clone(),
                    wrap_up: Duration::from_secs(5)
                },
                CallAction::PlayWaiting,
                CallAction::OfferDirect { agent: b.clone() },
            ]
        );
        // Only the talking agent transfers.
        assert_eq!(
            c.transfer(TransferTarget::Group("sales".into()), t(21)),
            Err(TransferError::NotTalking)
        );
        c.direct_offer(&b, true, Duration::from_secs(20), t(21));
        assert_eq!(actions(&mut c), vec![CallAction::Ring { agent: b.clone() }]);
        c.agent_answered(&b, t(23));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::StopWaiting,
                CallAction::DirectAnswered { agent: b.clone() },
                CallAction::Bridge { agent: b.clone() }
            ]
        );
        c.transfer(TransferTarget::Group("sales".into()), t(40))
            .unwrap();
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::HangUpAgent { agent: b.clone() },
                CallAction::AgentHungUp {
                    agent: b.clone(),
                    wrap_up: Duration::from_secs(5)
                },
                CallAction::PlayWaiting,
                // The first enqueue time is kept.
                CallAction::Enqueue {
                    group: "sales".into(),
                    enqueued: t(4)
                },
            ]
        );
        c.ring(
            std::slice::from_ref(&d),
            Duration::from_secs(15),
            Duration::from_secs(5),
            t(41),
        );
        c.agent_answered(&d, t(43));
        actions(&mut c);
        c.customer_hung_up(t(100));
        let r = finished(&actions(&mut c)).unwrap();
        assert_eq!(r.agent, Some(d.clone()), "the last agent");
        assert_eq!(r.group.as_deref(), Some("sales"));
        assert_eq!(r.answered, Some(t(10)), "the first answer counts");
        assert_eq!(
            r.transfers,
            vec![
                Transfer {
                    at: t(20),
                    by: a.clone(),
                    to: TransferTarget::Agent(b.clone()),
                    how: TransferKind::Blind,
                },
                Transfer {
                    at: t(40),
                    by: b.clone(),
                    to: TransferTarget::Group("sales".into()),
                    how: TransferKind::Blind,
                },
            ]
        );
        let legs: Vec<(LegKind, &str, Timestamp, Timestamp)> = r
            .legs
            .iter()
            .map(|l| {
                (
                    l.kind,
                    l.party.as_str(),
                    l.answered.unwrap_or(l.start),
                    l.end,
                )
            })
            .collect();
        assert_eq!(
            legs,
            vec![
                (LegKind::Customer, "13800138000", t(0), t(100)),
                (LegKind::Agent, "1001", t(10), t(20)),
                (LegKind::Agent, "1002", t(23), t(40)),
                (LegKind::Agent, "1003", t(43), t(100)),
            ]
        );
    }

    #[test]
    fn a_transfer_to_an_agent_who_cannot_take_it_goes_back_to_the_queue() {
        // Not ready: refused at once.
        let mut c = talking();
        let b: AgentId = "1002".into();
        c.transfer(TransferTarget::Agent(b.clone()), t(20)).unwrap();
        actions(&mut c);
        c.direct_offer(&b, false, Duration::from_secs(20), t(20));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::PlayWaiting,
                CallAction::Enqueue {
                    group: "support".into(),
                    enqueued: t(4)
                }
            ]
        );
        // Rings out: missed, and back to the queue.
        let mut c = talking();
        c.transfer(TransferTarget::Agent(b.clone()), t(20)).unwrap();
        c.direct_offer(&b, true, Duration::from_secs(20), t(20));
        actions(&mut c);
        assert_eq!(c.poll_timeout(), Some(t(40)));
        c.handle_timeout(t(40));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::StopRinging { agent: b.clone() },
                CallAction::DirectFailed {
                    agent: b.clone(),
                    missed: true
                },
                CallAction::PlayWaiting,
                CallAction::Enqueue {
                    group: "support".into(),
                    enqueued: t(4)
                }
            ]
        );
        // The customer leaves while it rings.
        let mut c = talking();
        c.transfer(TransferTarget::Agent(b.clone()), t(20)).unwrap();
        c.direct_offer(&b, true, Duration::from_secs(20), t(20));
        actions(&mut c);
        c.customer_hung_up(t(25));
        let a = actions(&mut c);
        assert!(
            a.contains(&CallAction::StopRinging { agent: b.clone() }),
            "{a:?}"
        );
        assert!(
            a.contains(&CallAction::DirectFailed {
                agent: b.clone(),
                missed: false
            }),
            "the agent is freed: {a:?}"
        );
        let r = finished(&a).unwrap();
        assert_eq!(r.hangup_reason, HangupReason::AbandonedRinging);
    }

    #[test]
    fn answered_after_a_miss_then_survey() {
        let mut c = queued(Some(survey()));
        let (a, b): (AgentId, AgentId) = ("1001".into(), "1002".into());
        c.ring(
            std::slice::from_ref(&a),
            Duration::from_secs(15),
            Duration::from_secs(30),
            t(6),
        );
        assert_eq!(actions(&mut c), vec![CallAction::Ring { agent: a.clone() }]);
        assert_eq!(c.poll_timeout(), Some(t(21)));
        c.handle_timeout(t(21));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::StopRinging { agent: a.clone() },
                CallAction::OfferFailed {
                    group: "support".into(),
                    agent: a.clone(),
                    missed: true
                }
            ]
        );
        c.ring(
            std::slice::from_ref(&b),
            Duration::from_secs(15),
            Duration::from_secs(30),
            t(22),
        );
        c.agent_answered(&b, t(25));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::Ring { agent: b.clone() },
                CallAction::StopWaiting,
                CallAction::OfferAnswered {
                    group: "support".into(),
                    agent: b.clone()
                },
                CallAction::Bridge { agent: b.clone() }
            ]
        );
        c.agent_hung_up(t(125));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::AgentHungUp {
                    agent: b.clone(),
                    wrap_up: Duration::from_secs(30)
                },
                CallAction::Play {
                    prompt: "rate".into()
                }
            ]
        );
        c.prompt_done(t(127));
        c.digit('9', t(128));
        let a = actions(&mut c);
        assert!(a.contains(&CallAction::HangUpCustomer));
        let s = finished(&a).unwrap();
        assert_eq!(s.satisfaction, Satisfaction::Scored { score: 5, key: '9' });
        assert_eq!(s.satisfaction.score(), Some(5));
        assert_eq!(
            (s.hangup_side, s.hangup_reason),
            (HangupSide::Agent, HangupReason::Normal)
        );
        assert_eq!(s.agent, Some(b));
        assert_eq!(s.queue_time(), Duration::from_secs(21));
        assert_eq!(s.ring_time(), Duration::from_secs(19));
        assert_eq!(s.talk_time(), Duration::from_secs(100));
        assert_eq!(s.rings.len(), 2);
        assert_eq!(s.rings[0].outcome, RingOutcome::NoAnswer);
        assert_eq!(s.ivr.keys, "1");
        // The record around the facts: tenant, local day, number
        // location, the customer's leg and the answering agent's.
        assert_eq!(s.tenant, "demo".into());
        assert_eq!(s.direction, Direction::Inbound);
        assert_eq!(s.day, Day::of(t(0), 480));
        assert_eq!(
            s.location.as_ref().map(|l| l.place.as_str()),
            Some("北京市")
        );
        assert_eq!(s.customer_number, "13800138000");
        let legs: Vec<(LegKind, &str)> =
            s.legs.iter().map(|l| (l.kind, l.party.as_str())).collect();
        assert_eq!(
            legs,
            vec![(LegKind::Customer, "13800138000"), (LegKind::Agent, "1002")]
        );
        assert_eq!(s.legs[1].answered, Some(t(25)));
        assert_eq!(s.legs[1].end, t(125));
        assert_eq!(s.legs[0].end, t(128));
        assert!(c.is_finished());
    }

    /// The agent hangs up at t(60) and the survey asks; the record once
    /// `then` has done its part.
    fn surveyed(then: impl FnOnce(&mut InboundCall)) -> CallRecord {
        let mut c = talking_with(Some(survey()));
        c.agent_hung_up(t(60));
        assert_eq!(
            actions(&mut c).last(),
            Some(&CallAction::Play {
                prompt: "rate".into()
            })
        );
        then(&mut c);
        let a = actions(&mut c);
        let r = finished(&a).unwrap_or_else(|| panic!("not finished: {a:?}"));
        assert!(c.is_finished());
        assert_eq!(
            (r.hangup_side, r.hangup_reason),
            (HangupSide::Agent, HangupReason::Normal)
        );
        assert_eq!(r.talk_end, Some(t(60)));
        r
    }

    #[test]
    fn every_survey_outcome_lands_in_the_record() {
        // A wrong key: asked once more; a level's key then scores.
        let r = surveyed(|c| {
            c.prompt_done(t(62));
            c.digit('7', t(63));
            assert_eq!(
                actions(c),
                vec![CallAction::Play {
                    prompt: "sorry".into()
                }]
            );
            c.prompt_done(t(65));
            c.prompt_done(t(67));
            c.digit('1', t(68));
        });
        assert_eq!(r.satisfaction, Satisfaction::Scored { score: 1, key: '1' });
        // Two wrong keys.
        let r = surveyed(|c| {
            c.prompt_done(t(62));
            c.digit('7', t(63));
            c.digit('#', t(64));
        });
        assert_eq!(r.satisfaction, Satisfaction::InvalidKey { key: '#' });
        assert_eq!(r.end, t(64));
        // No key: the survey's timeout, in simulated time.
        let r = surveyed(|c| {
            c.prompt_done(t(62));
            assert_eq!(c.poll_timeout(), Some(t(67)));
            c.handle_timeout(t(67));
        });
        assert_eq!(r.satisfaction, Satisfaction::Timeout);
        assert_eq!(r.end, t(67));
        // The customer hangs up during the question.
        let r = surveyed(|c| c.customer_hung_up(t(61)));
        assert_eq!(r.satisfaction, Satisfaction::HungUp);
        assert_eq!(r.end, t(61));
    }

    #[test]
    fn no_survey_is_offered_when_the_customer_hangs_up_first() {
        let mut c = talking_with(Some(survey()));
        c.customer_hung_up(t(60));
        let r = finished(&actions(&mut c)).unwrap();
        assert_eq!(r.hangup_side, HangupSide::Customer);
        assert_eq!(r.satisfaction, Satisfaction::NotOffered);
        // Nor without a survey flow.
        let mut c = talking();
        c.agent_hung_up(t(60));
        let a = actions(&mut c);
        assert!(a.contains(&CallAction::HangUpCustomer));
        assert_eq!(finished(&a).unwrap().satisfaction, Satisfaction::NotOffered);
    }

    #[test]
    fn customer_hangs_up_while_ringing_or_waiting() {
        let mut c = queued(None);
        c.ring(
            &["1001".into(), "1002".into()],
            Duration::from_secs(15),
            Duration::ZERO,
            t(5),
        );
        actions(&mut c);
        c.customer_hung_up(t(8));
        let a = actions(&mut c);
        assert_eq!(
            &a[..3],
            &[
                CallAction::StopRinging {
                    agent: "1001".into()
                },
                CallAction::StopRinging {
                    agent: "1002".into()
                },
                CallAction::Abandon {
                    group: "support".into()
                }
            ]
        );
        let s = finished(&a).unwrap();
        assert_eq!(s.hangup_reason, HangupReason::AbandonedRinging);
        assert!(s.rings.iter().all(|r| r.outcome == RingOutcome::Cancelled));
        // A late offer for a finished call is given back.
        c.ring(
            &["1003".into()],
            Duration::from_secs(15),
            Duration::ZERO,
            t(9),
        );
        assert_eq!(
            actions(&mut c),
            vec![CallAction::OfferFailed {
                group: "support".into(),
                agent: "1003".into(),
                missed: false
            }]
        );

        let mut c = queued(None);
        c.customer_hung_up(t(30));
        let s = finished(&actions(&mut c)).unwrap();
        assert_eq!(
            (s.hangup_side, s.hangup_reason),
            (HangupSide::Customer, HangupReason::AbandonedInQueue)
        );
        assert_eq!(s.queue_time(), Duration::from_secs(26));
    }

    #[test]
    fn overflow_to_voicemail_and_customer_hangs_up_in_talk() {
        let mut c = queued(None);
        c.overflow(Overflow::Voicemail, OverflowReason::MaxQueueTime, t(64));
        assert_eq!(
            actions(&mut c),
            vec![
                CallAction::StopWaiting,
                CallAction::RecordVoicemail {
                    max_len: Duration::from_secs(60)
                }
            ]
        );
        c.handle_timeout(t(124));
        let s = finished(&actions(&mut c)).unwrap();
        assert!(s.voicemail);
        assert_eq!(s.hangup_reason, HangupReason::Voicemail);
        assert_eq!(
            s.overflow,
            Some((Overflow::Voicemail, OverflowReason::MaxQueueTime))
        );

        let mut c = queued(None);
        c.ring(
            &["1001".into()],
            Duration::from_secs(15),
            Duration::from_secs(10),
            t(5),
        );
        c.agent_answered(&"1001".into(), t(7));
        actions(&mut c);
        c.customer_hung_up(t(67));
        let a = actions(&mut c);
        assert_eq!(
            &a[..2],
            &[
                CallAction::HangUpAgent {
                    agent: "1001".into()
                },
                CallAction::AgentHungUp {
                    agent: "1001".into(),
                    wrap_up: Duration::from_secs(10)
                }
            ]
        );
        let s = finished(&a).unwrap();
        assert_eq!(
            (s.hangup_side, s.talk_time()),
            (HangupSide::Customer, Duration::from_secs(60))
        );
    }

    #[test]
    fn ivr_hang_up_and_leaving_in_ivr() {
        let mut c = InboundCall::start(setup(2, "x"), flow(), true, false, None, t(0));
        c.prompt_done(t(1));
        c.digit('9', t(2));
        c.prompt_done(t(3));
        c.digit('9', t(4));
        let s = finished(&actions(&mut c)).unwrap();
        assert_eq!(
            (s.hangup_side, s.hangup_reason),
            (HangupSide::System, HangupReason::IvrHangUp)
        );
        assert_eq!(s.ivr.keys, "99");

        let mut c = InboundCall::start(setup(3, "x"), flow(), true, false, None, t(0));
        c.customer_hung_up(t(2));
        let s = finished(&actions(&mut c)).unwrap();
        assert_eq!(s.hangup_reason, HangupReason::LeftInIvr);
        assert_eq!(s.ivr.path, vec!["menu"]);
    }

    #[test]
    fn position_is_announced_while_waiting_but_not_while_an_agent_rings() {
        let mut c = queued(None);
        actions(&mut c);
        c.queue_position(2, Some(Duration::from_secs(80)));
        assert_eq!(
            actions(&mut c),
            vec![CallAction::Announce {
                position: 2,
                expected_wait: Some(Duration::from_secs(80))
            }]
        );
        c.ring(
            &["1001".into()],
            Duration::from_secs(20),
            Duration::from_secs(5),
            t(10),
        );
        actions(&mut c);
        c.queue_position(1, None);
        assert!(actions(&mut c).is_empty());
    }

    #[test]
    fn overflow_to_an_ivr_node_goes_back_into_the_flow() {
        let mut c = queued(None);
        actions(&mut c);
        c.overflow(
            Overflow::IvrNode("menu".into()),
            OverflowReason::MaxQueueTime,
            t(70),
        );
        let a = actions(&mut c);
        assert!(a.contains(&CallAction::StopWaiting), "{a:?}");
        assert!(
            a.contains(&CallAction::Play {
                prompt: "menu".into()
            }),
            "{a:?}"
        );
        // The menu works again: 1 queues the caller once more.
        c.prompt_done(t(72));
        c.digit('1', t(73));
        let a = actions(&mut c);
        assert!(
            a.iter()
                .any(|x| matches!(x, CallAction::Enqueue { group, .. } if group == "support")),
            "{a:?}"
        );
        // An overflow to a node the flow lacks hangs up.
        let mut d = queued(None);
        actions(&mut d);
        d.overflow(
            Overflow::IvrNode("nowhere".into()),
            OverflowReason::MaxQueueTime,
            t(70),
        );
        let s = finished(&actions(&mut d)).expect("finished");
        assert_eq!(s.hangup_reason, HangupReason::IvrHangUp);
        assert_eq!(
            s.overflow,
            Some((
                Overflow::IvrNode("nowhere".into()),
                OverflowReason::MaxQueueTime
            ))
        );
    }
}
