//! Hourly statistics (话务统计) as per-node partial aggregates.
//!
//! Each node counts the calls it handled into one [`Counters`] per
//! (tenant, local hour, scope) and writes its current totals as a
//! [`StatsPartial`] keyed by its node id. A write replaces that node's
//! partial for the hour, so writing the same totals twice (a retry, a
//! periodic flush) changes nothing; a report sums the partials of every
//! node at read time. No counter columns: they cannot be retried safely
//! and ScyllaDB's tablets do not support them.
//!
//! A node must not start again from zero under the same node id for an
//! hour it already wrote: either give each process run its own id, or
//! [`StatsAggregator::resume`] from the partials the store holds.

use super::{
    AgentId, CallRecord, Day, Direction, HangupReason, LocalHour, NodeId, RingOutcome, Status,
    StatusChange, TenantId,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What a row of statistics is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "snake_case")]
pub enum StatsScope {
    /// The whole tenant.
    Tenant,
    /// One skill group, by id.
    Group(String),
    /// One agent.
    Agent(AgentId),
}

/// The kind of a scope, to list e.g. every group's rows of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Tenant,
    Group,
    Agent,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Tenant => "tenant",
            ScopeKind::Group => "group",
            ScopeKind::Agent => "agent",
        }
    }
}

impl StatsScope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            StatsScope::Tenant => ScopeKind::Tenant,
            StatsScope::Group(_) => ScopeKind::Group,
            StatsScope::Agent(_) => ScopeKind::Agent,
        }
    }

    /// The id column (empty for the tenant).
    pub fn id(&self) -> &str {
        match self {
            StatsScope::Tenant => "",
            StatsScope::Group(g) => g,
            StatsScope::Agent(a) => &a.0,
        }
    }

    /// Back from the two columns.
    pub fn from_parts(kind: &str, id: &str) -> Option<StatsScope> {
        match kind {
            "tenant" => Some(StatsScope::Tenant),
            "group" => Some(StatsScope::Group(id.to_owned())),
            "agent" => Some(StatsScope::Agent(AgentId(id.to_owned()))),
            _ => None,
        }
    }
}

/// The counters of one hour of one scope. Times are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Every call record (inbound, outbound, internal).
    pub calls: u64,
    /// Inbound calls that reached a skill group (or rang this agent).
    pub offered: u64,
    /// Offered calls an agent answered.
    pub answered: u64,
    /// The caller hung up while waiting in the queue (呼损).
    pub abandoned_in_queue: u64,
    /// The caller hung up while an agent's phone rang.
    pub abandoned_ringing: u64,
    /// Left the queue unanswered for the overflow target (溢出).
    pub overflowed: u64,
    /// Answered within the tenant's service-level wait (服务水平).
    pub answered_in_service_level: u64,
    /// Outbound calls placed and those the customer answered (外呼接通).
    pub outbound: u64,
    pub outbound_answered: u64,
    pub talk_ms: u64,
    pub ring_ms: u64,
    pub queue_ms: u64,
    /// After-call work (话后处理), from the agents' status log.
    pub wrap_up_ms: u64,
}

impl Counters {
    /// The column names, in the order of [`Counters::to_array`].
    pub const COLUMNS: [&'static str; 13] = [
        "calls",
        "offered",
        "answered",
        "abandoned_in_queue",
        "abandoned_ringing",
        "overflowed",
        "answered_in_service_level",
        "outbound",
        "outbound_answered",
        "talk_ms",
        "ring_ms",
        "queue_ms",
        "wrap_up_ms",
    ];

    pub fn to_array(&self) -> [u64; 13] {
        [
            self.calls,
            self.offered,
            self.answered,
            self.abandoned_in_queue,
            self.abandoned_ringing,
            self.overflowed,
            self.answered_in_service_level,
            self.outbound,
            self.outbound_answered,
            self.talk_ms,
            self.ring_ms,
            self.queue_ms,
            self.wrap_up_ms,
        ]
    }

    pub fn from_array(a: [u64; 13]) -> Counters {
        let [calls, offered, answered, abandoned_in_queue, abandoned_ringing, overflowed, answered_in_service_level, outbound, outbound_answered, talk_ms, ring_ms, queue_ms, wrap_up_ms] =
            a;
        Counters {
            calls,
            offered,
            answered,
            abandoned_in_queue,
            abandoned_ringing,
            overflowed,
            answered_in_service_level,
            outbound,
            outbound_answered,
            talk_ms,
            ring_ms,
            queue_ms,
            wrap_up_ms,
        }
    }

    /// Adds `other` into `self` (saturating).
    pub fn add(&mut self, other: &Counters) {
        let mut a = self.to_array();
        for (x, y) in a.iter_mut().zip(other.to_array()) {
            *x = x.saturating_add(y);
        }
        *self = Counters::from_array(a);
    }

    pub fn is_zero(&self) -> bool {
        self.to_array().iter().all(|v| *v == 0)
    }
}

/// One node's totals for one hour of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsPartial {
    pub tenant: TenantId,
    pub day: Day,
    /// Hour of the tenant-local day, 0..24.
    pub hour: u8,
    pub scope: StatsScope,
    pub node: NodeId,
    pub counters: Counters,
}

/// The sum of every node's partial for one hour of one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourlyStats {
    pub scope: StatsScope,
    pub hour: u8,
    pub counters: Counters,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A node's running totals for one tenant. Sans-IO: feed it records,
/// drain the partials that changed, write those to the store.
#[derive(Debug, Clone)]
pub struct StatsAggregator {
    tenant: TenantId,
    node: NodeId,
    offset_minutes: i32,
    service_level: Duration,
    totals: BTreeMap<(LocalHour, StatsScope), Counters>,
    dirty: BTreeSet<(LocalHour, StatsScope)>,
}

impl StatsAggregator {
    /// Totals of `tenant` on `node`; hours are local to `offset_minutes`
    /// east of UTC, and calls answered within `service_level` of entering
    /// the queue count toward the service level.
    pub fn new(
        tenant: TenantId,
        node: NodeId,
        offset_minutes: i32,
        service_level: Duration,
    ) -> StatsAggregator {
        StatsAggregator {
            tenant,
            node,
            offset_minutes,
            service_level,
            totals: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Takes back this node's partials (as read from the store after a
    /// restart) so the next writes continue from them.
    pub fn resume(&mut self, partials: &[StatsPartial]) {
        for p in partials
            .iter()
            .filter(|p| p.node == self.node && p.tenant == self.tenant)
        {
            let key = (
                LocalHour {
                    day: p.day,
                    hour: p.hour,
                },
                p.scope.clone(),
            );
            self.totals.entry(key).or_default().add(&p.counters);
        }
    }

    fn bump(&mut self, hour: LocalHour, scope: StatsScope, c: &Counters) {
        let key = (hour, scope);
        self.totals.entry(key.clone()).or_default().add(c);
        self.dirty.insert(key);
    }

    /// Counts a finished call in the hour it started.
    pub fn add_call(&mut self, r: &CallRecord) {
        if r.tenant != self.tenant {
            return;
        }
        let hour = LocalHour::of(r.start, self.offset_minutes);
        let mut c = Counters {
            calls: 1,
            talk_ms: ms(r.talk_time()),
            ring_ms: ms(r.ring_time()),
            queue_ms: ms(r.queue_time()),
            ..Counters::default()
        };
        let answered = r.answered.is_some() && r.agent.is_some();
        match r.direction {
            Direction::Inbound if r.group.is_some() || r.enqueued.is_some() => {
                c.offered = 1;
                if answered {
                    c.answered = 1;
                    if r.wait_to_answer().is_some_and(|w| w <= self.service_level) {
                        c.answered_in_service_level = 1;
                    }
                } else {
                    match r.hangup_reason {
                        HangupReason::AbandonedInQueue => c.abandoned_in_queue = 1,
                        HangupReason::AbandonedRinging => c.abandoned_ringing = 1,
                        _ => {}
                    }
                }
                if r.overflow.is_some() {
                    c.overflowed = 1;
                }
            }
            Direction::Outbound => {
                c.outbound = 1;
                c.outbound_answered = u64::from(r.answered.is_some());
            }
            Direction::Inbound | Direction::Internal => {}
        }
        self.bump(hour, StatsScope::Tenant, &c);
        if let Some(g) = &r.group {
            self.bump(hour, StatsScope::Group(g.clone()), &c);
        }

        // Agents: each ring is an offer to that agent; the answering (or
        // dialing) agent gets the call and its talk time.
        let mut per_agent: BTreeMap<&AgentId, Counters> = BTreeMap::new();
        for ring in &r.rings {
            let a = per_agent.entry(&ring.agent).or_default();
            a.offered += 1;
            a.ring_ms += ms(ring.end.since(ring.start));
            if ring.outcome == RingOutcome::Cancelled
                && r.hangup_reason == HangupReason::AbandonedRinging
            {
                a.abandoned_ringing += 1;
            }
        }
        if let Some(agent) = &r.agent {
            let a = per_agent.entry(agent).or_default();
            a.calls = 1;
            a.talk_ms = c.talk_ms;
            a.answered = c.answered;
            a.answered_in_service_level = c.answered_in_service_level;
            a.outbound = c.outbound;
            a.outbound_answered = c.outbound_answered;
        }
        let per_agent: Vec<(AgentId, Counters)> =
            per_agent.into_iter().map(|(a, c)| (a.clone(), c)).collect();
        for (agent, c) in per_agent {
            self.bump(hour, StatsScope::Agent(agent), &c);
        }
    }

    /// Counts an agent's finished status period: after-call work adds to
    /// the wrap-up time of the hour the period started.
    pub fn add_status(&mut self, s: &StatusChange) {
        if s.tenant != self.tenant {
            return;
        }
        if let Status::AfterCallWork { .. } = s.period.status {
            let hour = LocalHour::of(s.period.start, self.offset_minutes);
            let c = Counters {
                wrap_up_ms: ms(s.period.end.since(s.period.start)),
                ..Counters::default()
            };
            self.bump(hour, StatsScope::Tenant, &c);
            self.bump(hour, StatsScope::Agent(s.agent.clone()), &c);
        }
    }

    /// The partials that changed since the last call, with their full
    /// current totals: write them, and a retry of that write is harmless.
    pub fn take_dirty(&mut self) -> Vec<StatsPartial> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|key| {
                let c = self.totals.get(&key)?;
                Some(self.partial(&key, c))
            })
            .collect()
    }

    /// A partial from [`Self::take_dirty`] whose write failed: it is
    /// taken again by the next call.
    pub fn mark_dirty(&mut self, p: &StatsPartial) {
        self.dirty.insert((
            LocalHour {
                day: p.day,
                hour: p.hour,
            },
            p.scope.clone(),
        ));
    }

    /// Every partial this aggregator holds.
    pub fn partials(&self) -> Vec<StatsPartial> {
        self.totals
            .iter()
            .map(|(k, c)| self.partial(k, c))
            .collect()
    }

    /// Forgets days before `day` (their partials are written and final).
    pub fn forget_before(&mut self, day: Day) {
        self.totals.retain(|(h, _), _| h.day >= day);
        self.dirty.retain(|(h, _)| h.day >= day);
    }

    fn partial(&self, (hour, scope): &(LocalHour, StatsScope), c: &Counters) -> StatsPartial {
        StatsPartial {
            tenant: self.tenant.clone(),
            day: hour.day,
            hour: hour.hour,
            scope: scope.clone(),
            node: self.node.clone(),
            counters: *c,
        }
    }
}

/// Sums partials into hourly rows, ordered by scope then hour.
pub fn sum_partials(partials: impl IntoIterator<Item = StatsPartial>) -> Vec<HourlyStats> {
    let mut sums: BTreeMap<(StatsScope, u8), Counters> = BTreeMap::new();
    for p in partials {
        sums.entry((p.scope, p.hour)).or_default().add(&p.counters);
    }
    sums.into_iter()
        .map(|((scope, hour), counters)| HourlyStats {
            scope,
            hour,
            counters,
        })
        .collect()
}
