//! Call records (通话记录): one per call, written once at hang-up.

use super::{AgentId, CallId, Day, NodeId, Overflow, OverflowReason, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Who ended the call (挂机方).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupSide {
    Customer,
    Agent,
    System,
}

impl HangupSide {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupSide::Customer => "customer",
            HangupSide::Agent => "agent",
            HangupSide::System => "system",
        }
    }
}

/// Why it ended (挂机原因).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    Normal,
    LeftInIvr,
    /// 呼损 in the queue.
    AbandonedInQueue,
    AbandonedRinging,
    IvrHangUp,
    Overflow,
    Voicemail,
    Transferred,
    /// The node ended the call because the software handling it failed;
    /// the record holds what the media side knew.
    Failed,
    /// The node handling the call died with it; another node closed the
    /// record from what the call had last written of itself.
    NodeLost,
    /// The caller asked to be called back and could not be reached.
    CallbackFailed,
    /// The agent sent the customer of an outbound call on (blind) and the
    /// target did not answer: nobody was left to take the customer.
    TransferFailed,
    /// A phone sent no media for the node's media timeout (it lost power
    /// or network without hanging up); the hang-up side says whose.
    MediaTimeout,
}

impl HangupReason {
    /// Its name in the API, the events and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupReason::Normal => "normal",
            HangupReason::LeftInIvr => "left_in_ivr",
            HangupReason::AbandonedInQueue => "abandoned_in_queue",
            HangupReason::AbandonedRinging => "abandoned_ringing",
            HangupReason::IvrHangUp => "ivr_hang_up",
            HangupReason::Overflow => "overflow",
            HangupReason::Voicemail => "voicemail",
            HangupReason::Transferred => "transferred",
            HangupReason::Failed => "failed",
            HangupReason::NodeLost => "node_lost",
            HangupReason::CallbackFailed => "callback_failed",
            HangupReason::TransferFailed => "transfer_failed",
            HangupReason::MediaTimeout => "media_timeout",
        }
    }
}

/// Where an agent transferred the customer (转接).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferTarget {
    /// Rung directly.
    Agent(AgentId),
    /// Queued in the group, keeping the call's first enqueue time.
    Group(String),
    /// An outside number through the trunk.
    Number(String),
}

/// One transfer of the call: the customer went from the agent `by` to
/// `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub at: Timestamp,
    /// The agent who had the customer until then.
    pub by: AgentId,
    pub to: TransferTarget,
    /// How (records from before this field are blind transfers).
    #[serde(default)]
    pub how: TransferKind,
}

/// How a call changed hands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// The agent sent the customer on and left (盲转).
    #[default]
    Blind,
    /// The agent talked to the target first, the customer on hold (咨询转).
    Consulted,
    /// A supervisor on the call took it over and the agent was cut off
    /// (强拆): `to` is the supervisor's agent.
    TakenOver,
}

/// How an outbound call's dialing ended (外呼结果).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DialOutcome {
    /// The customer answered.
    Answered,
    /// The customer's line was busy (486, 600).
    Busy,
    /// It rang and nobody answered (480, 408 after ringing, our ring
    /// timeout).
    NoAnswer,
    /// The customer declined (603, 403).
    Rejected,
    /// The number could not be reached (404, 484, 5xx, no answer at all,
    /// no trunk).
    Unreachable,
    /// The agent gave up before the customer answered.
    Cancelled,
    /// The agent's own device did not answer, so the customer was never
    /// dialed.
    AgentNoAnswer,
}

impl DialOutcome {
    /// The outcome of a final response to the customer's INVITE;
    /// `rang`: a 180/183 came first.
    pub fn of_final(code: u16, rang: bool) -> DialOutcome {
        match code {
            200..=299 => DialOutcome::Answered,
            486 | 600 => DialOutcome::Busy,
            480 => DialOutcome::NoAnswer,
            408 if rang => DialOutcome::NoAnswer,
            603 | 403 => DialOutcome::Rejected,
            487 => DialOutcome::Cancelled,
            _ => DialOutcome::Unreachable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DialOutcome::Answered => "answered",
            DialOutcome::Busy => "busy",
            DialOutcome::NoAnswer => "no_answer",
            DialOutcome::Rejected => "rejected",
            DialOutcome::Unreachable => "unreachable",
            DialOutcome::Cancelled => "cancelled",
            DialOutcome::AgentNoAnswer => "agent_no_answer",
        }
    }
}

/// How one ring attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingOutcome {
    Answered,
    NoAnswer,
    Failed,
    Cancelled,
}

/// One agent's phone ringing for the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingAttempt {
    pub agent: AgentId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub outcome: RingOutcome,
}

/// What the caller did in the IVR.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IvrTrace {
    /// Node ids in the order visited.
    pub path: Vec<String>,
    /// Every key pressed, in order.
    pub keys: String,
    /// Collected digits by variable.
    pub vars: BTreeMap<String, String>,
}

/// How the satisfaction survey (满意度) of a call went.
///
/// Records written before this type existed kept only a score: a number
/// reads as [`Satisfaction::Scored`] with the key of that digit, `null` as
/// [`Satisfaction::NotOffered`] (they did not tell a survey without an
/// answer from no survey).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Satisfaction {
    /// No survey ran: the customer hung up first, the tenant has no
    /// survey, or the call never reached an agent.
    #[default]
    NotOffered,
    /// The customer pressed the key of a level.
    Scored { score: u8, key: char },
    /// The customer pressed a key that is no level's and, asked once
    /// more, gave no valid answer either (another wrong key, silence or
    /// hanging up): the last wrong key.
    InvalidKey { key: char },
    /// No key came before the survey's timeout.
    Timeout,
    /// The customer hung up during the survey without pressing a key.
    HungUp,
}

impl Satisfaction {
    /// The score, if the customer gave one.
    pub fn score(self) -> Option<u8> {
        match self {
            Satisfaction::Scored { score, .. } => Some(score),
            _ => None,
        }
    }

    /// Whether a survey was played.
    pub fn offered(self) -> bool {
        self != Satisfaction::NotOffered
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Satisfaction::NotOffered => "not_offered",
            Satisfaction::Scored { .. } => "scored",
            Satisfaction::InvalidKey { .. } => "invalid_key",
            Satisfaction::Timeout => "timeout",
            Satisfaction::HungUp => "hung_up",
        }
    }

    /// Reads the current form and the older bare score (see the type's
    /// docs).
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Satisfaction, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Score(Option<u8>),
            Outcome(Satisfaction),
        }
        match Stored::deserialize(d)? {
            Stored::Outcome(s) => Ok(s),
            Stored::Score(None) => Ok(Satisfaction::NotOffered),
            Stored::Score(Some(score)) => char::from_digit(u32::from(score), 10)
                .map(|key| Satisfaction::Scored { score, key })
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("satisfaction score {score} is not a key"))
                }),
        }
    }
}

/// Which way the call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// 呼入: the customer called.
    Inbound,
    /// 外呼: an agent (phone bar, contact plan) called out.
    Outbound,
    /// 内部: agent to agent.
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        }
    }
}

/// Whose leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegKind {
    Customer,
    Agent,
    /// A consulted or conferenced party, or a transfer target.
    ThirdParty,
}

/// One leg of the call: a SIP dialog with one party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub kind: LegKind,
    /// The party's number, SIP account or agent id.
    pub party: String,
    pub start: Timestamp,
    pub answered: Option<Timestamp>,
    pub end: Timestamp,
    /// The dialog's Call-ID, to find it in SIP traces.
    pub sip_call_id: Option<String>,
}

/// Where a number is from (归属地).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberLocation {
    /// Province and city, e.g. `广东省深圳市`.
    pub place: String,
    /// The mobile carrier; `None` for landlines.
    pub carrier: Option<String>,
}

/// One call, complete: the facts of `CallSummary` plus what the record
/// needs around them. Written once, at hang-up; writing the same call
/// again replaces it (retries are safe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub tenant: TenantId,
    pub call: CallId,
    /// The tenant-local day of `start`: the partition of the day's list.
    pub day: Day,
    pub direction: Direction,
    pub caller: String,
    pub dialed: String,
    /// The customer's number (the caller inbound, the dialed number
    /// outbound): the key of the by-number list.
    pub customer_number: String,
    /// The customer profile matched to the number, if any: the call then
    /// shows in that customer's timeline.
    pub customer: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub ivr: IvrTrace,
    pub group: Option<String>,
    pub enqueued: Option<Timestamp>,
    pub dequeued: Option<Timestamp>,
    pub rings: Vec<RingAttempt>,
    /// The agent who talked to the customer (or placed the outbound call).
    pub agent: Option<AgentId>,
    pub answered: Option<Timestamp>,
    pub talk_end: Option<Timestamp>,
    pub overflow: Option<(Overflow, OverflowReason)>,
    pub hangup_side: HangupSide,
    pub hangup_reason: HangupReason,
    pub voicemail: bool,
    /// How the survey went (the score, if the customer gave one).
    #[serde(default, deserialize_with = "Satisfaction::read")]
    pub satisfaction: Satisfaction,
    pub legs: Vec<Leg>,
    pub location: Option<NumberLocation>,
    /// The recording's file or object key.
    pub recording: Option<String>,
    /// The node that handled the call.
    pub node: NodeId,
    /// Outbound calls: how dialing the customer ended.
    #[serde(default)]
    pub outcome: Option<DialOutcome>,
    /// The agents' transfers, in order.
    #[serde(default)]
    pub transfers: Vec<Transfer>,
    /// The times the customer was on hold (保持), consultations included.
    #[serde(default)]
    pub holds: Vec<HoldPeriod>,
    /// The caller asked to be called back from the queue (排队回拨).
    #[serde(default)]
    pub callback: Option<Callback>,
}

/// A callback the caller asked for while waiting in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// When the caller pressed the key.
    pub requested: Timestamp,
    /// When the caller's number was dialed (an agent had answered the
    /// call's offer); `None`: never (an agent took the call while the
    /// caller was still on the line, or it left the queue first).
    pub dialed: Option<Timestamp>,
    /// How dialing the caller ended.
    pub outcome: Option<DialOutcome>,
}

/// A time the customer spent on hold, hearing music.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPeriod {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl CallRecord {
    /// The record of a call whose node died at `at`, from what the call
    /// had written of itself while up: it ends then, whatever was up
    /// (the talk, the queue wait, a ring, a leg) ends with it. It was up
    /// at least until it last wrote itself (its `end` then): never earlier.
    pub fn lost(mut self, at: Timestamp) -> CallRecord {
        let at = at.max(self.start).max(self.end);
        self.end = at;
        self.hangup_side = HangupSide::System;
        self.hangup_reason = HangupReason::NodeLost;
        if self.enqueued.is_some() && self.dequeued.is_none() {
            self.dequeued = Some(at);
        }
        if self.answered.is_some() && self.talk_end.is_none() {
            self.talk_end = Some(at);
        }
        for leg in &mut self.legs {
            leg.end = leg.end.max(at);
        }
        self
    }

    /// Time the customer spent on hold.
    pub fn hold_time(&self) -> Duration {
        self.holds.iter().map(|h| h.end.since(h.start)).sum()
    }

    /// Time waiting in the queue.
    pub fn queue_time(&self) -> Duration {
        match (self.enqueued, self.dequeued) {
            (Some(a), Some(b)) => b.since(a),
            _ => Duration::ZERO,
        }
    }

    /// Time from the first ring to the answer (or to the last ring's end).
    pub fn ring_time(&self) -> Duration {
        let Some(first) = self.rings.iter().map(|r| r.start).min() else {
            return Duration::ZERO;
        };
        let last = self
            .answered
            .or_else(|| self.rings.iter().map(|r| r.end).max())
            .unwrap_or(first);
        last.since(first)
    }

    pub fn talk_time(&self) -> Duration {
        match (self.answered, self.talk_end) {
            (Some(a), Some(b)) => b.since(a),
            _ => Duration::ZERO,
        }
    }

    /// Time from entering the queue to the answer: the service-level wait.
    pub fn wait_to_answer(&self) -> Option<Duration> {
        Some(self.answered?.since(self.enqueued?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Holder {
        #[serde(default, deserialize_with = "Satisfaction::read")]
        satisfaction: Satisfaction,
    }

    fn read(json: &str) -> Result<Satisfaction, serde_json::Error> {
        serde_json::from_str::<Holder>(json).map(|h| h.satisfaction)
    }

    #[test]
    fn hangup_reason_names_are_their_json_names() {
        use HangupReason::*;
        for r in [
            Normal,
            LeftInIvr,
            AbandonedInQueue,
            AbandonedRinging,
            IvrHangUp,
            Overflow,
            Voicemail,
            Transferred,
            Failed,
            NodeLost,
            CallbackFailed,
            TransferFailed,
        ] {
            assert_eq!(
                serde_json::to_value(r).ok(),
                Some(serde_json::Value::String(r.as_str().into()))
            );
        }
    }

    #[test]
    fn every_outcome_round_trips_through_json() {
        for s in [
            Satisfaction::NotOffered,
            Satisfaction::Scored { score: 5, key: '1' },
            Satisfaction::InvalidKey { key: '#' },
            Satisfaction::Timeout,
            Satisfaction::HungUp,
        ] {
            let json = serde_json::to_string(&Holder { satisfaction: s }).unwrap();
            assert!(json.contains(s.as_str()), "{json}");
            assert_eq!(read(&json).ok(), Some(s), "{json}");
        }
        assert_eq!(
            serde_json::to_value(Satisfaction::Scored { score: 4, key: '*' }).ok(),
            Some(serde_json::json!({"outcome": "scored", "score": 4, "key": "*"}))
        );
    }

    #[test]
    fn older_records_with_a_bare_score_still_read() {
        assert_eq!(
            read(r#"{"satisfaction": 4}"#).ok(),
            Some(Satisfaction::Scored { score: 4, key: '4' })
        );
        assert_eq!(
            read(r#"{"satisfaction": null}"#).ok(),
            Some(Satisfaction::NotOffered)
        );
        assert_eq!(read("{}").ok(), Some(Satisfaction::NotOffered));
        // No build ever wrote these.
        assert!(read(r#"{"satisfaction": 12}"#).is_err());
        assert!(read(r#"{"satisfaction": {"outcome": "maybe"}}"#).is_err());
    }

    #[test]
    fn only_a_scored_answer_has_a_score() {
        assert_eq!(Satisfaction::Scored { score: 2, key: '9' }.score(), Some(2));
        for s in [
            Satisfaction::NotOffered,
            Satisfaction::InvalidKey { key: '7' },
            Satisfaction::Timeout,
            Satisfaction::HungUp,
        ] {
            assert_eq!(s.score(), None);
            assert_eq!(s.offered(), s != Satisfaction::NotOffered);
        }
    }
}
