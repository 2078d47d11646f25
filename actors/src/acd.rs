//! A skill group (技能组): the waiting queue and the distribution strategy
//! (呼叫策略), sans-IO.
//!
//! Calls wait in order of priority (higher first), then enqueue time, then
//! arrival. Whenever a call waits and a member agent is available, the
//! group offers the first call to the agent(s) its [`Strategy`] picks and
//! says so with [`AcdEvent::Offer`]; the Call actor rings them and reports
//! back with [`SkillGroup::answered`] or [`SkillGroup::offer_failed`]. A
//! call whose offer fails goes back to its place in the queue, and the
//! agents who did not answer it are tried last.
//!
//! Agents' availability comes from the Agent actors
//! ([`SkillGroup::update_agent`]): the group never changes an agent's status
//! itself, it only offers to agents that said they are ready and reserves
//! them until the offer ends, so no agent is offered two calls.
//!
//! A call that waits longer than the max queue time, or arrives when no
//! member is signed in (with [`NoAgentRule::Overflow`]), leaves with
//! [`AcdEvent::Overflow`] naming where it goes.

use crate::{AgentId, CallId, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
pub use switchboard_storage::model::{
    GroupConfig, Member, NoAgentRule, Overflow, OverflowReason, Strategy,
};
use thiserror::Error;

/// What an Agent actor reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Availability {
    pub signed_in: bool,
    /// Ready for a call.
    pub ready: bool,
    /// Ready since (for longest idle).
    pub idle_since: Timestamp,
    pub calls_today: u32,
    pub talk_time_today: Duration,
}

/// What the group tells its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdEvent {
    /// Ring these agents for this call (one agent, or every available
    /// member with ring-all).
    Offer {
        call: CallId,
        agents: Vec<AgentId>,
        ring_timeout: Duration,
    },
    /// Stop ringing these agents: someone else answered (ring-all), the
    /// caller left, or the call overflowed.
    CancelOffer { call: CallId, agents: Vec<AgentId> },
    /// The call leaves the queue for `to`.
    Overflow {
        call: CallId,
        to: Overflow,
        reason: OverflowReason,
        waited: Duration,
    },
    /// Tell the caller its place (1 is next) and, once the group has
    /// answered enough calls to know its pace, the expected wait.
    Position {
        call: CallId,
        position: usize,
        expected_wait: Option<Duration>,
    },
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AcdError {
    #[error("call {0} is already in this queue")]
    AlreadyQueued(CallId),
    #[error("call {0} is not in this queue")]
    NotQueued(CallId),
    #[error("agent {agent} was not offered call {call}")]
    NotOffered { call: CallId, agent: AgentId },
}

#[derive(Debug, Clone)]
struct Waiting {
    key: QueueKey,
    /// Agents ringing for it now; empty while it waits.
    offered: Vec<AgentId>,
    /// Agents it was offered to before, tried last.
    tried: Vec<AgentId>,
    /// When its next position announcement is due.
    announce_at: Option<Timestamp>,
}

/// Queue order: priority (higher first), enqueue time, arrival.
type QueueKey = (Reverse<u8>, Timestamp, u64);

/// After an offer fails (the phone refused, was busy or unreachable) the
/// agent is left alone this long, so a phone that refuses at once is not
/// offered calls in a tight loop.
pub const OFFER_HOLD: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
struct AgentInfo {
    level: u8,
    /// Its place in configuration order (`usize::MAX`: no longer a
    /// member, kept while it rings).
    rank: usize,
    availability: Option<Availability>,
    /// The call this agent is ringing for.
    offered: Option<CallId>,
    /// No offers before this (after a failed one).
    hold_until: Option<Timestamp>,
}

impl AgentInfo {
    fn can_take(&self, now: Timestamp) -> bool {
        self.offered.is_none()
            && self.hold_until.is_none_or(|h| h <= now)
            && self.availability.is_some_and(|a| a.signed_in && a.ready)
    }
}

/// One skill group's queue and distribution. See the module docs.
#[derive(Debug, Clone)]
pub struct SkillGroup {
    id: String,
    config: GroupConfig,
    /// Members in configuration order (round-robin follows it).
    order: Vec<AgentId>,
    agents: HashMap<AgentId, AgentInfo>,
    queue: BTreeMap<QueueKey, CallId>,
    calls: HashMap<CallId, Waiting>,
    arrivals: u64,
    /// Round-robin memory: the member offered last.
    last_offered: Option<AgentId>,
    rng: StdRng,
    events: VecDeque<AcdEvent>,
    /// When the last calls were answered: the group's pace, for the
    /// expected wait.
    answers: VecDeque<Timestamp>,
    /// Members signed in and ready, kept as availability changes (the
    /// monitor asks at every change of the queue).
    tally: Tally,
    /// Members with an offer hold (`hold_until`) set.
    held: HashSet<AgentId>,
}

/// Member counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    signed_in: usize,
    ready: usize,
}

impl Tally {
    fn of(a: Option<Availability>) -> Tally {
        let signed_in = a.is_some_and(|v| v.signed_in);
        Tally {
            signed_in: usize::from(signed_in),
            ready: usize::from(signed_in && a.is_some_and(|v| v.ready)),
        }
    }

    fn count<'a>(members: impl Iterator<Item = &'a AgentInfo>) -> Tally {
        members.fold(Tally::default(), |t, i| {
            let one = Tally::of(i.availability);
            Tally {
                signed_in: t.signed_in + one.signed_in,
                ready: t.ready + one.ready,
            }
        })
    }
}

/// Answers remembered for the pace.
const PACE_WINDOW: usize = 20;

impl SkillGroup {
    /// A group with no members; `seed` drives the random strategy.
    pub fn new(id: impl Into<String>, config: GroupConfig, seed: u64) -> SkillGroup {
        SkillGroup {
            id: id.into(),
            config,
            order: Vec::new(),
            agents: HashMap::new(),
            queue: BTreeMap::new(),
            calls: HashMap::new(),
            arrivals: 0,
            last_offered: None,
            rng: StdRng::seed_from_u64(seed),
            events: VecDeque::new(),
            answers: VecDeque::new(),
            tally: Tally::default(),
            held: HashSet::new(),
        }
    }

    /// The expected wait of the caller at `position`: the time the group
    /// took to answer that many calls lately. `None` until three calls
    /// were answered.
    pub fn expected_wait(&self, position: usize) -> Option<Duration> {
        let (first, last) = (self.answers.front()?, self.answers.back()?);
        let n = self.answers.len();
        if n < 3 {
            return None;
        }
        let per_call = last.since(*first) / (n as u32 - 1);
        Some(per_call * position as u32)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// New settings; they apply to the next decision.
    pub fn set_config(&mut self, config: GroupConfig, now: Timestamp) {
        self.config = config;
        self.dispatch(now);
    }

    /// Replaces the members. A removed member's offer stays until it ends.
    pub fn set_members(&mut self, members: Vec<Member>, now: Timestamp) {
        self.order = members.iter().map(|m| m.agent.clone()).collect();
        let mut agents = HashMap::new();
        for (rank, m) in members.into_iter().enumerate() {
            let old = self.agents.remove(&m.agent);
            // Listed twice: the first place counts.
            agents.entry(m.agent).or_insert(AgentInfo {
                level: m.level,
                rank,
                availability: old.as_ref().and_then(|o| o.availability),
                hold_until: old.as_ref().and_then(|o| o.hold_until),
                offered: old.and_then(|o| o.offered),
            });
        }
        // Keep removed members only while they ring for a call.
        for (id, info) in self.agents.drain() {
            if info.offered.is_some() {
                agents.insert(
                    id,
                    AgentInfo {
                        availability: None,
                        rank: usize::MAX,
                        ..info
                    },
                );
            }
        }
        self.agents = agents;
        self.tally = Tally::count(self.agents.values());
        self.held = self
            .agents
            .iter()
            .filter(|(_, i)| i.hold_until.is_some())
            .map(|(a, _)| a.clone())
            .collect();
        self.dispatch(now);
    }

    /// Changes one member's availability, the counts with it; false
    /// when `agent` is no member.
    fn change_availability(
        &mut self,
        agent: &AgentId,
        f: impl FnOnce(&mut Option<Availability>),
    ) -> bool {
        let Some(info) = self.agents.get_mut(agent) else {
            return false;
        };
        let before = Tally::of(info.availability);
        f(&mut info.availability);
        let after = Tally::of(info.availability);
        self.tally.signed_in = self.tally.signed_in - before.signed_in + after.signed_in;
        self.tally.ready = self.tally.ready - before.ready + after.ready;
        true
    }

    /// The group rebuilt after its shell caught a panic while `self`
    /// handled an input: `config` and `members` as the store has them
    /// now, the calls waiting in the same order and the offers that ring
    /// kept, whatever a change half done left inconsistent made
    /// consistent again (an offer counts only when both the call and the
    /// agent say so; no event pending). The next decisions follow.
    pub fn recover(&self, config: GroupConfig, members: Vec<Member>, now: Timestamp) -> SkillGroup {
        let mut g = SkillGroup {
            id: self.id.clone(),
            config,
            order: self.order.clone(),
            agents: self.agents.clone(),
            queue: BTreeMap::new(),
            calls: HashMap::new(),
            arrivals: self.arrivals,
            last_offered: self.last_offered.clone(),
            rng: self.rng.clone(),
            events: VecDeque::new(),
            answers: self.answers.clone(),
            tally: Tally::default(),
            held: HashSet::new(),
        };
        // The queue from the calls' own keys (each call once).
        for (call, w) in &self.calls {
            if g.queue.contains_key(&w.key) {
                continue;
            }
            g.queue.insert(w.key, *call);
            g.calls.insert(*call, w.clone());
        }
        let offered_by = |g: &SkillGroup, a: &AgentId, call: CallId| {
            g.agents.get(a).is_some_and(|i| i.offered == Some(call))
        };
        let calls: Vec<CallId> = g.calls.keys().copied().collect();
        for call in calls {
            let keep: Vec<AgentId> = g.calls[&call]
                .offered
                .iter()
                .filter(|a| offered_by(&g, a, call))
                .cloned()
                .collect();
            if let Some(w) = g.calls.get_mut(&call) {
                w.offered = keep;
            }
        }
        for (a, info) in g.agents.iter_mut() {
            if let Some(call) = info.offered {
                if !g.calls.get(&call).is_some_and(|w| w.offered.contains(a)) {
                    info.offered = None;
                }
            }
        }
        g.set_members(members, now);
        g
    }

    /// The members in configuration order, with their levels.
    pub fn members(&self) -> Vec<Member> {
        self.order
            .iter()
            .filter_map(|a| {
                Some(Member {
                    agent: a.clone(),
                    level: self.agents.get(a)?.level,
                })
            })
            .collect()
    }

    /// Calls waiting (offered ones included).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// 1-based place of `call` in the queue, for announcements.
    pub fn position(&self, call: CallId) -> Option<usize> {
        let key = self.calls.get(&call)?.key;
        Some(self.queue.range(..key).count() + 1)
    }

    /// The enqueue time of the call waiting longest.
    pub fn oldest(&self) -> Option<Timestamp> {
        // The first call of each priority is its oldest: one step per
        // priority present, not per call.
        let mut oldest: Option<Timestamp> = None;
        let mut next = self.queue.keys().next();
        while let Some(&(Reverse(priority), enqueued, _)) = next {
            oldest = Some(oldest.map_or(enqueued, |o| o.min(enqueued)));
            let Some(lower) = priority.checked_sub(1) else {
                break;
            };
            next = self
                .queue
                .range((Reverse(lower), Timestamp(0), 0)..)
                .next()
                .map(|(k, _)| k);
        }
        oldest
    }

    /// Members ready for a call now.
    pub fn ready(&self) -> usize {
        self.tally.ready
    }

    /// Members signed in now.
    pub fn signed_in(&self) -> usize {
        self.tally.signed_in
    }

    /// A call enters the queue. `priority`: higher is served first.
    pub fn enqueue(
        &mut self,
        call: CallId,
        priority: u8,
        enqueued: Timestamp,
        now: Timestamp,
    ) -> Result<(), AcdError> {
        if self.calls.contains_key(&call) {
            return Err(AcdError::AlreadyQueued(call));
        }
        if self.config.no_agent == NoAgentRule::Overflow && self.signed_in() == 0 {
            self.events.push_back(AcdEvent::Overflow {
                call,
                to: self.config.overflow.clone(),
                reason: OverflowReason::NoAgent,
                waited: now.since(enqueued),
            });
            return Ok(());
        }
        self.arrivals += 1;
        let key = (Reverse(priority), enqueued, self.arrivals);
        self.queue.insert(key, call);
        self.calls.insert(
            call,
            Waiting {
                key,
                offered: Vec::new(),
                tried: Vec::new(),
                // The first announcement as the caller enters the queue.
                announce_at: self.config.announce_every.map(|_| now),
            },
        );
        self.dispatch(now);
        self.announce(now);
        Ok(())
    }

    /// The caller hung up while waiting or ringing (abandoned).
    pub fn abandon(&mut self, call: CallId, now: Timestamp) -> Result<(), AcdError> {
        let w = self.remove(call).ok_or(AcdError::NotQueued(call))?;
        self.cancel_offers(call, w.offered);
        self.dispatch(now);
        Ok(())
    }

    /// `agent` answered `call`: it leaves the queue; with ring-all, the
    /// others stop ringing.
    pub fn answered(
        &mut self,
        call: CallId,
        agent: &AgentId,
        now: Timestamp,
    ) -> Result<(), AcdError> {
        let offered = self
            .calls
            .get(&call)
            .map(|w| w.offered.contains(agent))
            .ok_or(AcdError::NotQueued(call))?;
        if !offered {
            return Err(AcdError::NotOffered {
                call,
                agent: agent.clone(),
            });
        }
        let w = self.remove(call).ok_or(AcdError::NotQueued(call))?;
        if self.answers.len() == PACE_WINDOW {
            self.answers.pop_front();
        }
        self.answers.push_back(now);
        let others: Vec<AgentId> = w.offered.into_iter().filter(|a| a != agent).collect();
        self.cancel_offers(call, others);
        if let Some(info) = self.agents.get_mut(agent) {
            info.offered = None;
        }
        // Busy until its Agent actor says otherwise.
        self.change_availability(agent, |a| {
            if let Some(a) = a.as_mut() {
                a.ready = false;
            }
        });
        self.dispatch(now);
        Ok(())
    }

    /// The offer to `agent` ended unanswered (ring timeout, rejected, the
    /// device unreachable). When nobody rings for the call any more it
    /// waits again in its old place.
    pub fn offer_failed(
        &mut self,
        call: CallId,
        agent: &AgentId,
        now: Timestamp,
    ) -> Result<(), AcdError> {
        let w = self.calls.get_mut(&call).ok_or(AcdError::NotQueued(call))?;
        let Some(i) = w.offered.iter().position(|a| a == agent) else {
            return Err(AcdError::NotOffered {
                call,
                agent: agent.clone(),
            });
        };
        w.offered.remove(i);
        if !w.tried.contains(agent) {
            w.tried.push(agent.clone());
        }
        if let Some(info) = self.agents.get_mut(agent) {
            info.offered = None;
            info.hold_until = Some(now.after(OFFER_HOLD));
            self.held.insert(agent.clone());
        }
        self.change_availability(agent, |a| {
            if let Some(a) = a.as_mut() {
                a.ready = false;
            }
        });
        self.dispatch(now);
        Ok(())
    }

    /// An Agent actor's news: signed in or out, ready or not, counters.
    pub fn update_agent(&mut self, agent: &AgentId, availability: Availability, now: Timestamp) {
        if self.change_availability(agent, |a| *a = Some(availability)) {
            self.dispatch(now);
        }
    }

    /// The next deadline: the first call to reach the max queue time, or
    /// the next position announcement.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let overflow = self
            .oldest()
            .map(|enqueued| enqueued.after(self.config.max_queue_time));
        let announce = self.calls.values().filter_map(|w| w.announce_at).min();
        // A held agent becomes available again while calls wait.
        let hold = (!self.queue.is_empty())
            .then(|| {
                self.held
                    .iter()
                    .filter_map(|a| self.agents.get(a)?.hold_until)
                    .min()
            })
            .flatten();
        [overflow, announce, hold].into_iter().flatten().min()
    }

    /// Overflows the calls that waited too long.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let due: Vec<(CallId, Timestamp)> = self
            .queue
            .iter()
            .filter(|((_, enqueued, _), _)| enqueued.after(self.config.max_queue_time) <= now)
            .map(|((_, enqueued, _), call)| (*call, *enqueued))
            .collect();
        for (call, enqueued) in due {
            if let Some(w) = self.remove(call) {
                self.cancel_offers(call, w.offered);
                self.events.push_back(AcdEvent::Overflow {
                    call,
                    to: self.config.overflow.clone(),
                    reason: OverflowReason::MaxQueueTime,
                    waited: now.since(enqueued),
                });
            }
        }
        self.announce(now);
        self.dispatch(now);
    }

    /// Position announcements that are due, in queue order. A call whose
    /// agent's phone is ringing is not interrupted; it is told later.
    fn announce(&mut self, now: Timestamp) {
        let Some(every) = self.config.announce_every else {
            for w in self.calls.values_mut() {
                w.announce_at = None;
            }
            return;
        };
        let order: Vec<CallId> = self.queue.values().copied().collect();
        for (i, call) in order.into_iter().enumerate() {
            let position = i + 1;
            let expected_wait = self.expected_wait(position);
            let Some(w) = self.calls.get_mut(&call) else {
                continue;
            };
            if w.announce_at.is_none_or(|at| at > now) {
                continue;
            }
            w.announce_at = Some(now.after(every));
            if w.offered.is_empty() {
                self.events.push_back(AcdEvent::Position {
                    call,
                    position,
                    expected_wait,
                });
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<AcdEvent> {
        self.events.pop_front()
    }

    fn remove(&mut self, call: CallId) -> Option<Waiting> {
        let w = self.calls.remove(&call)?;
        self.queue.remove(&w.key);
        Some(w)
    }

    fn cancel_offers(&mut self, call: CallId, agents: Vec<AgentId>) {
        for a in &agents {
            if let Some(info) = self.agents.get_mut(a) {
                info.offered = None;
            }
        }
        if !agents.is_empty() {
            self.events
                .push_back(AcdEvent::CancelOffer { call, agents });
        }
    }

    /// Offers waiting calls, in queue order, while agents can take them.
    fn dispatch(&mut self, now: Timestamp) {
        // Most agent updates find nobody waiting: nothing to walk then
        // (a lapsed hold only matters to `poll_timeout` while calls wait).
        if self.queue.is_empty() {
            return;
        }
        let agents = &mut self.agents;
        self.held.retain(|a| match agents.get_mut(a) {
            Some(info) if info.hold_until.is_some_and(|h| h > now) => true,
            Some(info) => {
                info.hold_until = None;
                false
            }
            None => false,
        });
        loop {
            let Some(call) = self
                .queue
                .values()
                .copied()
                .find(|c| self.calls.get(c).is_some_and(|w| w.offered.is_empty()))
            else {
                return;
            };
            let tried = self
                .calls
                .get(&call)
                .map(|w| w.tried.clone())
                .unwrap_or_default();
            let picked = self.pick(&tried, now);
            if picked.is_empty() {
                return;
            }
            for a in &picked {
                if let Some(info) = self.agents.get_mut(a) {
                    info.offered = Some(call);
                }
            }
            if let Some(last) = picked.last() {
                self.last_offered = Some(last.clone());
            }
            if let Some(w) = self.calls.get_mut(&call) {
                w.offered = picked.clone();
            }
            self.events.push_back(AcdEvent::Offer {
                call,
                agents: picked,
                ring_timeout: self.config.ring_timeout,
            });
        }
    }

    /// The agents to offer the next call to, by the strategy. Agents who
    /// already failed this call are used only when nobody else can take it.
    fn pick(&mut self, tried: &[AgentId], now: Timestamp) -> Vec<AgentId> {
        // One walk over the members (no lookup each): a group of
        // thousands is served at every offer. Configuration order breaks
        // ties (each member's rank is unique); only ring-all and random
        // need the candidates sorted by it.
        let free: Vec<(&AgentId, &AgentInfo)> = self
            .agents
            .iter()
            .filter(|(_, i)| i.can_take(now))
            .collect();
        let fresh: Vec<(&AgentId, &AgentInfo)> = free
            .iter()
            .copied()
            .filter(|(a, _)| !tried.contains(a))
            .collect();
        let mut candidates = if fresh.is_empty() { free } else { fresh };
        if candidates.is_empty() {
            return Vec::new();
        }
        let seen = |i: &AgentInfo| -> Availability {
            i.availability.unwrap_or(Availability {
                signed_in: false,
                ready: false,
                idle_since: Timestamp(0),
                calls_today: 0,
                talk_time_today: Duration::ZERO,
            })
        };
        // Ties go to the member listed first.
        let chosen = match self.config.strategy {
            Strategy::RingAll => {
                candidates.sort_unstable_by_key(|(_, i)| i.rank);
                return candidates.into_iter().map(|(a, _)| a.clone()).collect();
            }
            Strategy::LongestIdle => candidates
                .iter()
                .min_by_key(|(_, i)| (seen(i).idle_since, i.rank)),
            Strategy::FewestCalls => candidates.iter().min_by_key(|(_, i)| {
                let v = seen(i);
                (v.calls_today, v.idle_since, i.rank)
            }),
            Strategy::LeastTalkTime => candidates.iter().min_by_key(|(_, i)| {
                let v = seen(i);
                (v.talk_time_today, v.idle_since, i.rank)
            }),
            Strategy::SkillTiers => candidates
                .iter()
                .min_by_key(|(_, i)| (Reverse(i.level), seen(i).idle_since, i.rank)),
            Strategy::Random => {
                candidates.sort_unstable_by_key(|(_, i)| i.rank);
                let i = self.rng.random_range(0..candidates.len());
                candidates.get(i)
            }
            Strategy::RoundRobin => {
                // The first candidate after the member offered last, in
                // configuration order, round the end.
                let n = self.order.len().max(1);
                let start = self
                    .last_offered
                    .as_ref()
                    .and_then(|l| self.agents.get(l))
                    .map(|i| i.rank)
                    .filter(|r| *r < n)
                    .map_or(0, |r| (r + 1) % n);
                candidates
                    .iter()
                    .min_by_key(|(_, i)| (i.rank % n + n - start) % n)
            }
        }
        .unwrap_or(&candidates[0]);
        vec![chosen.0.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn ready(idle: u64, calls: u32, talk: u64) -> Availability {
        Availability {
            signed_in: true,
            ready: true,
            idle_since: t(idle),
            calls_today: calls,
            talk_time_today: Duration::from_secs(talk),
        }
    }

    fn group(strategy: Strategy, members: &[(&str, u8)]) -> SkillGroup {
        let mut g = SkillGroup::new(
            "support",
            GroupConfig {
                strategy,
                ..GroupConfig::default()
            },
            7,
        );
        g.set_members(
            members
                .iter()
                .map(|(a, l)| Member {
                    agent: (*a).into(),
                    level: *l,
                })
                .collect(),
            t(0),
        );
        g
    }

    fn events(g: &mut SkillGroup) -> Vec<AcdEvent> {
        std::iter::from_fn(|| g.poll_event()).collect()
    }

    fn offered(ev: &[AcdEvent]) -> Vec<(u64, Vec<String>)> {
        ev.iter()
            .filter_map(|e| match e {
                AcdEvent::Offer { call, agents, .. } => {
                    Some((call.0, agents.iter().map(|a| a.0.clone()).collect()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ties_go_to_the_member_listed_first() {
        for strategy in [
            Strategy::LongestIdle,
            Strategy::FewestCalls,
            Strategy::LeastTalkTime,
            Strategy::SkillTiers,
            Strategy::RoundRobin,
        ] {
            // Twelve equal members, listed in an order no map keeps.
            let names: Vec<String> = (0..12).map(|i| format!("m{}", (i * 7) % 12)).collect();
            let members: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), 1)).collect();
            let mut g = group(strategy, &members);
            for n in &names {
                g.update_agent(&n.as_str().into(), ready(1, 2, 3), t(2));
            }
            g.enqueue(CallId(1), 0, t(3), t(3)).unwrap();
            let ev = events(&mut g);
            assert_eq!(
                offered(&ev),
                vec![(1, vec![names[0].clone()])],
                "{strategy:?}"
            );
        }
        let names = ["m3", "m1", "m2"];
        let mut g = group(Strategy::RingAll, &[("m3", 1), ("m1", 1), ("m2", 1)]);
        for n in names {
            g.update_agent(&n.into(), ready(1, 2, 3), t(2));
        }
        g.enqueue(CallId(1), 0, t(3), t(3)).unwrap();
        let ev = events(&mut g);
        assert_eq!(
            offered(&ev),
            vec![(1, names.iter().map(|n| n.to_string()).collect())]
        );
    }

    #[test]
    fn a_recovered_group_keeps_its_queue_order_and_ringing_offers() {
        let mut g = group(Strategy::LongestIdle, &[("a", 1), ("b", 1)]);
        g.update_agent(&"a".into(), ready(1, 0, 0), t(2));
        // Call 1 rings a; 2 (priority) and 3 wait.
        g.enqueue(CallId(1), 0, t(3), t(3)).unwrap();
        g.enqueue(CallId(3), 0, t(5), t(5)).unwrap();
        g.enqueue(CallId(2), 5, t(6), t(6)).unwrap();
        events(&mut g);
        // A change half done: b thinks it rings for call 3, which does
        // not know it; an event is pending.
        let mut broken = g.clone();
        if let Some(i) = broken.agents.get_mut(&AgentId::from("b")) {
            i.offered = Some(CallId(3));
        }
        broken.events.push_back(AcdEvent::CancelOffer {
            call: CallId(9),
            agents: vec![],
        });
        let members = vec![
            Member {
                agent: "a".into(),
                level: 1,
            },
            Member {
                agent: "b".into(),
                level: 1,
            },
        ];
        let mut r = broken.recover(GroupConfig::default(), members, t(7));
        assert!(
            events(&mut r).is_empty(),
            "nothing pending, nobody to offer to"
        );
        assert_eq!(
            [CallId(2), CallId(1), CallId(3)].map(|c| r.position(c)),
            [Some(1), Some(2), Some(3)],
            "priority first, then enqueue time"
        );
        assert_eq!(r.oldest(), Some(t(3)));
        // a's answer still counts; b may be offered the next call.
        r.answered(CallId(1), &"a".into(), t(8))
            .expect("the ringing offer was kept");
        r.update_agent(&"b".into(), ready(2, 0, 0), t(9));
        assert_eq!(offered(&events(&mut r)), vec![(2, vec!["b".to_string()])]);
    }

    #[test]
    fn strategies_pick_the_right_agent() {
        // (agent, level), availability (idle since, calls, talk seconds)
        let setup = [
            ("a", 1, ready(30, 5, 100)),
            ("b", 3, ready(10, 7, 50)),
            ("c", 3, ready(20, 2, 300)),
        ];
        let cases = [
            (Strategy::LongestIdle, vec!["b"]),
            (Strategy::FewestCalls, vec!["c"]),
            (Strategy::LeastTalkTime, vec!["b"]),
            (Strategy::SkillTiers, vec!["b"]),
            (Strategy::RingAll, vec!["a", "b", "c"]),
            (Strategy::RoundRobin, vec!["a"]),
        ];
        for (strategy, want) in cases {
            let mut g = group(strategy, &[("a", 1), ("b", 3), ("c", 3)]);
            for (a, _, v) in &setup {
                g.update_agent(&(*a).into(), *v, t(40));
            }
            g.enqueue(CallId(1), 0, t(41), t(41)).unwrap();
            let got = offered(&events(&mut g));
            assert_eq!(
                got,
                vec![(1, want.iter().map(|s| s.to_string()).collect())],
                "{strategy:?}"
            );
        }
    }

    fn positions(ev: &[AcdEvent]) -> Vec<(u64, usize, Option<u64>)> {
        ev.iter()
            .filter_map(|e| match e {
                AcdEvent::Position {
                    call,
                    position,
                    expected_wait,
                } => Some((call.0, *position, expected_wait.map(|d| d.as_secs()))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn waiting_callers_hear_their_place_and_the_expected_wait() {
        let mut g = SkillGroup::new(
            "support",
            GroupConfig {
                announce_every: Some(Duration::from_secs(30)),
                max_queue_time: Duration::from_secs(600),
                ..GroupConfig::default()
            },
            7,
        );
        g.set_members(
            vec![Member {
                agent: "a".into(),
                level: 1,
            }],
            t(0),
        );
        g.update_agent(&"a".into(), ready(0, 0, 0), t(0));
        // The group answers a call every 40 s for a while: its pace.
        for n in 0..4u64 {
            g.enqueue(CallId(100 + n), 0, t(n * 40), t(n * 40)).unwrap();
            assert!(
                positions(&events(&mut g)).is_empty(),
                "a free agent: nothing to announce"
            );
            g.answered(CallId(100 + n), &"a".into(), t(n * 40)).unwrap();
            g.update_agent(&"a".into(), ready(n * 40 + 1, 0, 0), t(n * 40 + 1));
        }
        // Now the agent is busy and three callers queue.
        let mut busy = ready(0, 0, 0);
        busy.ready = false;
        g.update_agent(&"a".into(), busy, t(130));
        let mut told = Vec::new();
        for n in 0..3u64 {
            g.enqueue(CallId(n), 0, t(130 + n), t(130 + n)).unwrap();
            told.extend(positions(&events(&mut g)));
        }
        // Each on entering: its place, and 40 s per call ahead of it.
        assert_eq!(
            told,
            vec![(0, 1, Some(40)), (1, 2, Some(80)), (2, 3, Some(120))]
        );
        // 30 s later, again.
        assert_eq!(g.poll_timeout(), Some(t(160)));
        g.handle_timeout(t(160));
        assert_eq!(positions(&events(&mut g)), vec![(0, 1, Some(40))]);
        g.handle_timeout(t(162));
        assert_eq!(
            positions(&events(&mut g)),
            vec![(1, 2, Some(80)), (2, 3, Some(120))]
        );
        // The first caller leaves: the others move up.
        g.abandon(CallId(0), t(170)).unwrap();
        g.handle_timeout(t(192));
        assert_eq!(
            positions(&events(&mut g)),
            vec![(1, 1, Some(40)), (2, 2, Some(80))]
        );
    }

    #[test]
    fn no_announcements_unless_configured() {
        let mut g = group(Strategy::LongestIdle, &[("a", 1)]);
        let mut busy = ready(0, 0, 0);
        busy.ready = false;
        g.update_agent(&"a".into(), busy, t(0));
        g.enqueue(CallId(1), 0, t(0), t(0)).unwrap();
        assert!(positions(&events(&mut g)).is_empty());
        assert_eq!(g.poll_timeout(), Some(t(60)), "only the max queue time");
    }

    #[test]
    fn round_robin_remembers_where_it_stopped() {
        let mut g = group(Strategy::RoundRobin, &[("a", 1), ("b", 1), ("c", 1)]);
        let mut order = Vec::new();
        for n in 0..5u64 {
            for a in ["a", "b", "c"] {
                g.update_agent(&a.into(), ready(0, 0, 0), t(n * 10));
            }
            g.enqueue(CallId(n), 0, t(n * 10), t(n * 10)).unwrap();
            let o = offered(&events(&mut g));
            let agent = o[0].1[0].clone();
            g.answered(CallId(n), &AgentId(agent.clone()), t(n * 10 + 1))
                .unwrap();
            order.push(agent);
        }
        assert_eq!(order, vec!["a", "b", "c", "a", "b"]);
    }

    #[test]
    fn random_is_reproducible_from_the_seed() {
        let run = || {
            let mut g = group(Strategy::Random, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
            (0..8u64)
                .map(|n| {
                    for a in ["a", "b", "c", "d"] {
                        g.update_agent(&a.into(), ready(0, 0, 0), t(n));
                    }
                    g.enqueue(CallId(n), 0, t(n), t(n)).unwrap();
                    let agent = offered(&events(&mut g))[0].1[0].clone();
                    g.answered(CallId(n), &AgentId(agent.clone()), t(n))
                        .unwrap();
                    agent
                })
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(distinct.len() > 1, "{first:?}");
    }

    #[test]
    fn priority_then_enqueue_time() {
        let mut g = group(Strategy::LongestIdle, &[("a", 1)]);
        g.update_agent(&"a".into(), ready(0, 0, 0), t(0));
        // a is offered call 1 at once; the rest wait.
        g.enqueue(CallId(1), 0, t(1), t(1)).unwrap();
        g.enqueue(CallId(2), 0, t(2), t(2)).unwrap();
        g.enqueue(CallId(3), 5, t(3), t(3)).unwrap();
        // Re-enqueued after a failover with its original time: ahead of 2.
        g.enqueue(CallId(4), 0, t(0), t(4)).unwrap();
        assert_eq!(g.position(CallId(3)), Some(1));
        assert_eq!(g.position(CallId(1)), Some(3));
        assert_eq!(g.position(CallId(4)), Some(2));
        assert_eq!(g.position(CallId(2)), Some(4));
        let mut served = Vec::new();
        for _ in 0..4 {
            for e in events(&mut g) {
                if let AcdEvent::Offer { call, .. } = e {
                    served.push(call.0);
                    g.answered(call, &"a".into(), t(10)).unwrap();
                    g.update_agent(&"a".into(), ready(10, 1, 0), t(10));
                }
            }
        }
        assert_eq!(served, vec![1, 3, 4, 2]);
        assert!(g.is_empty());
    }

    #[test]
    fn a_phone_that_refuses_at_once_is_not_offered_in_a_tight_loop() {
        let mut g = group(Strategy::LongestIdle, &[("a", 1)]);
        g.update_agent(&"a".into(), ready(0, 0, 0), t(0));
        g.enqueue(CallId(1), 0, t(1), t(1)).unwrap();
        let mut offers = 0;
        let mut now = t(1);
        // The phone answers 486 Busy to every INVITE, 10 ms later.
        for _ in 0..1000 {
            offers += offered(&events(&mut g)).len();
            now = now.after(Duration::from_millis(10));
            if g.offer_failed(CallId(1), &"a".into(), now).is_ok() {
                g.update_agent(&"a".into(), ready(0, 0, 0), now);
            }
            if let Some(at) = g.poll_timeout().filter(|at| *at <= now) {
                g.handle_timeout(at);
            }
        }
        // Ten seconds of refusals: one offer per hold, not a thousand.
        assert!(offers <= 5, "{offers} offers in 10 s");
    }

    #[test]
    fn a_missed_offer_goes_to_the_next_agent_and_the_call_keeps_its_place() {
        let mut g = group(Strategy::LongestIdle, &[("a", 1), ("b", 1)]);
        g.update_agent(&"a".into(), ready(0, 0, 0), t(0));
        g.enqueue(CallId(1), 0, t(1), t(1)).unwrap();
        assert_eq!(offered(&events(&mut g)), vec![(1, vec!["a".into()])]);
        g.enqueue(CallId(2), 0, t(2), t(2)).unwrap();
        g.offer_failed(CallId(1), &"a".into(), t(21)).unwrap();
        assert_eq!(g.position(CallId(1)), Some(1));
        // a is ready again at once (one miss), b too: b gets call 1, since
        // a already failed it; a gets call 2 once its hold after the
        // failed offer has passed.
        g.update_agent(&"b".into(), ready(5, 0, 0), t(22));
        g.update_agent(&"a".into(), ready(21, 0, 0), t(22));
        assert_eq!(offered(&events(&mut g)), vec![(1, vec!["b".into()])]);
        assert_eq!(g.poll_timeout(), Some(t(21).after(OFFER_HOLD)));
        g.handle_timeout(t(24));
        assert_eq!(offered(&events(&mut g)), vec![(2, vec!["a".into()])]);
        assert_eq!(
            g.offer_failed(CallId(2), &"b".into(), t(23)),
            Err(AcdError::NotOffered {
                call: CallId(2),
                agent: "b".into()
            })
        );
    }

    #[test]
    fn ring_all_cancels_the_others_on_answer() {
        let mut g = group(Strategy::RingAll, &[("a", 1), ("b", 1), ("c", 1)]);
        for a in ["a", "b", "c"] {
            g.update_agent(&a.into(), ready(0, 0, 0), t(0));
        }
        g.enqueue(CallId(1), 0, t(1), t(1)).unwrap();
        events(&mut g);
        g.answered(CallId(1), &"b".into(), t(3)).unwrap();
        assert_eq!(
            events(&mut g),
            vec![AcdEvent::CancelOffer {
                call: CallId(1),
                agents: vec!["a".into(), "c".into()]
            }]
        );
        // a and c are still ready: the next call rings both.
        g.enqueue(CallId(2), 0, t(4), t(4)).unwrap();
        assert_eq!(
            offered(&events(&mut g)),
            vec![(2, vec!["a".into(), "c".into()])]
        );
    }

    #[test]
    fn max_queue_time_and_no_agent_overflow() {
        let mut g = group(Strategy::LongestIdle, &[("a", 1)]);
        // Nobody signed in: overflow at once.
        g.enqueue(CallId(1), 0, t(0), t(0)).unwrap();
        assert!(matches!(
            events(&mut g)[..],
            [AcdEvent::Overflow {
                reason: OverflowReason::NoAgent,
                to: Overflow::Voicemail,
                ..
            }]
        ));
        // Signed in but busy: the call waits 60 s, then overflows.
        g.update_agent(
            &"a".into(),
            Availability {
                ready: false,
                ..ready(0, 0, 0)
            },
            t(1),
        );
        g.enqueue(CallId(2), 0, t(2), t(2)).unwrap();
        assert_eq!(g.poll_timeout(), Some(t(62)));
        g.handle_timeout(t(61));
        assert!(events(&mut g).is_empty());
        g.handle_timeout(t(62));
        assert_eq!(
            events(&mut g),
            vec![AcdEvent::Overflow {
                call: CallId(2),
                to: Overflow::Voicemail,
                reason: OverflowReason::MaxQueueTime,
                waited: Duration::from_secs(60)
            }]
        );
        assert!(g.is_empty());
        // Abandon while ringing cancels the offer.
        g.update_agent(&"a".into(), ready(70, 0, 0), t(70));
        g.enqueue(CallId(3), 0, t(71), t(71)).unwrap();
        events(&mut g);
        g.abandon(CallId(3), t(72)).unwrap();
        assert_eq!(
            events(&mut g),
            vec![AcdEvent::CancelOffer {
                call: CallId(3),
                agents: vec!["a".into()]
            }]
        );
        assert_eq!(
            g.abandon(CallId(3), t(73)),
            Err(AcdError::NotQueued(CallId(3)))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue(u8, u8),
        Abandon(u8),
        Ready(u8),
        NotReady(u8),
        Answer(u8),
        Fail(u8),
        Tick(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, 0u8..3).prop_map(|(c, p)| Op::Enqueue(c, p)),
            (0u8..12).prop_map(Op::Abandon),
            (0u8..4).prop_map(Op::Ready),
            (0u8..4).prop_map(Op::NotReady),
            (0u8..4).prop_map(Op::Answer),
            (0u8..4).prop_map(Op::Fail),
            (1u8..40).prop_map(Op::Tick),
        ]
    }

    fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
        prop_oneof![
            Just(Strategy::RingAll),
            Just(Strategy::LongestIdle),
            Just(Strategy::RoundRobin),
            Just(Strategy::FewestCalls),
            Just(Strategy::LeastTalkTime),
            Just(Strategy::Random),
            Just(Strategy::SkillTiers),
        ]
    }

    proptest! {
        /// A call is in the queue at most once; an agent rings for at most
        /// one call; only ready members are offered calls; the call offered
        /// is the first waiting one in (priority, enqueue time) order.
        #[test]
        fn queue_invariants(strategy in strategy(), ops in proptest::collection::vec(op(), 1..120)) {
            let names = ["a", "b", "c", "d"];
            let mut g = group(strategy, &[("a", 1), ("b", 2), ("c", 2), ("d", 3)]);
            let config = GroupConfig { announce_every: Some(Duration::from_secs(15)), ..g.config().clone() };
            g.set_config(config, t(0));
            let mut now = t(0);
            // The model: which agents are ready, which call each rings for.
            let mut ready_now = [false; 4];
            let mut ringing: HashMap<String, CallId> = HashMap::new();
            for o in ops {
                now = now.after(Duration::from_millis(100));
                match o {
                    Op::Enqueue(c, p) => { let _ = g.enqueue(CallId(c.into()), p, now, now); }
                    Op::Abandon(c) => { let _ = g.abandon(CallId(c.into()), now); }
                    Op::Ready(a) => {
                        ready_now[a as usize] = true;
                        g.update_agent(&names[a as usize].into(), ready(now.0 / 1000, 0, 0), now);
                    }
                    Op::NotReady(a) => {
                        ready_now[a as usize] = false;
                        g.update_agent(&names[a as usize].into(), Availability { ready: false, ..ready(0, 0, 0) }, now);
                    }
                    Op::Answer(a) => {
                        if let Some(call) = ringing.get(names[a as usize]).copied() {
                            prop_assert!(g.answered(call, &names[a as usize].into(), now).is_ok());
                            ready_now[a as usize] = false;
                        }
                    }
                    Op::Fail(a) => {
                        if let Some(call) = ringing.get(names[a as usize]).copied() {
                            prop_assert!(g.offer_failed(call, &names[a as usize].into(), now).is_ok());
                            ready_now[a as usize] = false;
                        }
                    }
                    Op::Tick(s) => {
                        now = now.after(Duration::from_secs(s.into()));
                        g.handle_timeout(now);
                    }
                }
                // Offers made by this step, checked against the queue order.
                while let Some(e) = g.poll_event() {
                    match e {
                        AcdEvent::Offer { call, agents, .. } => {
                            prop_assert!(!agents.is_empty());
                            for a in &agents {
                                let i = names.iter().position(|n| *n == a.0).unwrap();
                                prop_assert!(ready_now[i], "offered to an agent not ready");
                                prop_assert!(!ringing.contains_key(&a.0), "agent offered two calls");
                                ringing.insert(a.0.clone(), call);
                            }
                            // No waiting, unoffered call is ahead of it.
                            let key = g.calls[&call].key;
                            for (k, c) in g.queue.range(..key) {
                                prop_assert!(!g.calls[c].offered.is_empty(), "call {c} at {k:?} skipped");
                            }
                        }
                        AcdEvent::CancelOffer { agents, .. } => {
                            for a in agents { ringing.remove(&a.0); }
                        }
                        AcdEvent::Overflow { .. } => {}
                        AcdEvent::Position { call, position, .. } => {
                            prop_assert_eq!(g.position(call), Some(position));
                        }
                    }
                }
                // Answer/fail end the offer on our side too.
                ringing.retain(|a, c| g.calls.get(c).is_some_and(|w| w.offered.iter().any(|x| &x.0 == a)));
                prop_assert_eq!(g.queue.len(), g.calls.len());
                let mut seen = std::collections::HashSet::new();
                for c in g.queue.values() { prop_assert!(seen.insert(*c), "call queued twice"); }
                // The kept counts agree with the members.
                prop_assert_eq!(g.tally, Tally::count(g.agents.values()));
                let held: std::collections::HashSet<AgentId> = g.agents.iter().filter(|(_, i)| i.hold_until.is_some()).map(|(a, _)| a.clone()).collect();
                prop_assert_eq!(&g.held, &held);
                let oldest = g.queue.keys().map(|(_, enqueued, _)| *enqueued).min();
                prop_assert_eq!(g.oldest(), oldest);
                let mut offered_agents = std::collections::HashSet::new();
                for w in g.calls.values() {
                    for a in &w.offered { prop_assert!(offered_agents.insert(a.clone()), "agent on two offers"); }
                }
            }
        }
    }
}
