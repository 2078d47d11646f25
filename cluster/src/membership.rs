//! Who is in the cluster, as this node sees it: a sans-IO machine fed
//! with heartbeats, session events and the time.
//!
//! Health comes from heartbeats alone, never from the TCP session: a peer
//! is up once it is heard and down after [`Settings::down_after`] of
//! silence, even if its connection still looks open (a half-open link, a
//! frozen process). A peer that goes down has its session torn down and
//! is re-dialed with exponential backoff, as is every known address
//! without a session: the seeds, and the members other nodes tell of.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Timings of the failure detector and the dialer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How often a heartbeat goes to every connected member.
    pub heartbeat: Duration,
    /// Silence after which a member is down.
    pub down_after: Duration,
    /// The first re-dial delay; it doubles up to `redial_max`.
    pub redial_min: Duration,
    pub redial_max: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            heartbeat: Duration::from_millis(250),
            down_after: Duration::from_secs(2),
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_secs(2),
        }
    }
}

/// What one node tells the others, several times a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub name: String,
    /// Where it accepts cluster connections (`host:port`).
    pub addr: String,
    /// When the node process started (ms since the Unix epoch): a new
    /// value means the node restarted.
    pub incarnation: u64,
    pub seq: u64,
    /// The sender's clock, echoed in the [`Ack`], for the round trip.
    pub sent: u64,
    /// The addresses of the members the sender sees up, so a node learns
    /// of members it was not told to join.
    pub members: Vec<String>,
}

/// The answer to a [`Heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub name: String,
    pub addr: String,
    pub seq: u64,
    pub sent: u64,
}

/// A member's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Known (a seed, or told of) but never heard.
    Joining,
    Up,
    /// Not heard for `down_after`.
    Down,
    /// Said it is leaving (draining before it stops).
    Left,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Joining => "joining",
            Health::Up => "up",
            Health::Down => "down",
            Health::Left => "left",
        }
    }
}

/// What the shell is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat to every connected member.
    Heartbeat(Heartbeat),
    /// Open a cluster connection to this address.
    Dial(String),
    /// Tear down the sessions with this address: it went silent.
    Disconnect(String),
    /// Tell every connected member this node is leaving.
    Leave,
    /// The set of members up changed: recompute placement.
    MembersChanged,
}

#[derive(Debug, Clone)]
struct Peer {
    name: Option<String>,
    health: Health,
    since: Instant,
    last_heard: Option<Instant>,
    incarnation: u64,
    rtt: Option<Duration>,
    connected: bool,
    next_dial: Instant,
    backoff: Duration,
    seed: bool,
}

/// One member as shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: Option<String>,
    pub addr: String,
    pub health: Health,
    /// How long it has been in this health.
    pub for_: Duration,
    /// How long since it was last heard.
    pub last_heard: Option<Duration>,
    /// The last heartbeat round trip.
    pub rtt: Option<Duration>,
    pub incarnation: u64,
    pub connected: bool,
    /// This node.
    pub me: bool,
}

/// The cluster as this node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub me: String,
    /// This node first, then the others by address.
    pub members: Vec<Member>,
}

impl View {
    /// The names of the members up, this node included: what placement
    /// hashes over.
    pub fn live(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|m| m.health == Health::Up)
            .filter_map(|m| m.name.as_deref())
            .collect()
    }
}

/// The membership machine.
#[derive(Debug)]
pub struct Membership {
    name: String,
    addr: String,
    incarnation: u64,
    settings: Settings,
    started: Instant,
    peers: BTreeMap<String, Peer>,
    seq: u64,
    next_heartbeat: Instant,
    leaving: bool,
}

impl Membership {
    /// This node (`name`, accepting at `addr`), joining through `seeds`.
    pub fn new(
        name: impl Into<String>,
        addr: impl Into<String>,
        incarnation: u64,
        seeds: &[String],
        settings: Settings,
        now: Instant,
    ) -> Membership {
        let mut m = Membership {
            name: name.into(),
            addr: addr.into(),
            incarnation,
            settings,
            started: now,
            peers: BTreeMap::new(),
            seq: 0,
            next_heartbeat: now,
            leaving: false,
        };
        for s in seeds {
            m.learn(s, now);
            if let Some(p) = m.peers.get_mut(s) {
                p.seed = true;
            }
        }
        m
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    fn learn(&mut self, addr: &str, now: Instant) {
        if addr == self.addr || self.peers.contains_key(addr) {
            return;
        }
        self.peers.insert(
            addr.to_string(),
            Peer {
                name: None,
                health: Health::Joining,
                since: now,
                last_heard: None,
                incarnation: 0,
                rtt: None,
                connected: false,
                next_dial: now,
                backoff: self.settings.redial_min,
                seed: false,
            },
        );
    }

    /// This node leaves: it stops heartbeating and answering, and is no
    /// longer among the members up, so its entities go to the others.
    pub fn leave(&mut self) -> Vec<Action> {
        if std::mem::replace(&mut self.leaving, true) {
            return Vec::new();
        }
        vec![Action::Leave, Action::MembersChanged]
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// The member at `addr` said it is leaving.
    pub fn left(&mut self, addr: &str, now: Instant) -> Vec<Action> {
        match self.peers.get_mut(addr) {
            Some(p) if p.health != Health::Left => {
                p.health = Health::Left;
                p.since = now;
                p.rtt = None;
                vec![Action::MembersChanged]
            }
            _ => Vec::new(),
        }
    }

    /// A heartbeat arrived; returns the [`Ack`] to send back (none while
    /// this node leaves: an answer would make it look up).
    pub fn heard(&mut self, hb: &Heartbeat, now: Instant) -> (Option<Ack>, Vec<Action>) {
        let mut actions = Vec::new();
        let ack = (!self.leaving).then(|| Ack {
            name: self.name.clone(),
            addr: self.addr.clone(),
            seq: hb.seq,
            sent: hb.sent,
        });
        if hb.addr == self.addr {
            return (ack, actions);
        }
        self.learn(&hb.addr, now);
        for a in &hb.members {
            self.learn(a, now);
        }
        if let Some(p) = self.peers.get_mut(&hb.addr) {
            let renamed = p.name.as_deref() != Some(hb.name.as_str());
            p.name = Some(hb.name.clone());
            p.last_heard = Some(now);
            p.incarnation = hb.incarnation;
            if p.health != Health::Up {
                p.health = Health::Up;
                p.since = now;
                actions.push(Action::MembersChanged);
            } else if renamed {
                actions.push(Action::MembersChanged);
            }
        }
        (ack, actions)
    }

    /// A heartbeat's answer came back after `rtt`.
    pub fn acked(&mut self, ack: &Ack, rtt: Duration, now: Instant) -> Vec<Action> {
        if let Some(p) = self.peers.get_mut(&ack.addr) {
            p.rtt = Some(rtt);
        }
        // An answer is as good a sign of life as a heartbeat.
        let hb = Heartbeat {
            name: ack.name.clone(),
            addr: ack.addr.clone(),
            incarnation: self.peers.get(&ack.addr).map_or(0, |p| p.incarnation),
            seq: ack.seq,
            sent: ack.sent,
            members: Vec::new(),
        };
        self.heard(&hb, now).1
    }

    /// A cluster session with `addr` is ready.
    pub fn connected(&mut self, addr: &str, now: Instant) {
        self.learn(addr, now);
        if let Some(p) = self.peers.get_mut(addr) {
            p.connected = true;
            p.backoff = self.settings.redial_min;
        }
    }

    /// The session with `addr` ended: dial again soon.
    pub fn disconnected(&mut self, addr: &str, now: Instant) {
        if let Some(p) = self.peers.get_mut(addr) {
            p.connected = false;
            p.next_dial = p.next_dial.max(now + self.settings.redial_min);
        }
    }

    /// When [`Membership::tick`] next has something to do.
    pub fn next_deadline(&self) -> Instant {
        let mut at = self.next_heartbeat;
        for p in self.peers.values() {
            if !p.connected {
                at = at.min(p.next_dial);
            }
            if let (Health::Up, Some(h)) = (p.health, p.last_heard) {
                at = at.min(h + self.settings.down_after);
            }
        }
        at
    }

    /// Everything due by `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let down_after = self.settings.down_after;
        for (addr, p) in &mut self.peers {
            let silent = p
                .last_heard
                .is_none_or(|h| now.duration_since(h) >= down_after);
            if p.health == Health::Up && silent {
                p.health = Health::Down;
                p.since = now;
                p.rtt = None;
                actions.push(Action::MembersChanged);
                if p.connected {
                    actions.push(Action::Disconnect(addr.clone()));
                    p.connected = false;
                    p.next_dial = now + self.settings.redial_min;
                }
            }
            if !p.connected && now >= p.next_dial {
                actions.push(Action::Dial(addr.clone()));
                p.next_dial = now + p.backoff;
                p.backoff = (p.backoff * 2).min(self.settings.redial_max);
            }
        }
        if now >= self.next_heartbeat && !self.leaving {
            self.seq += 1;
            actions.push(Action::Heartbeat(Heartbeat {
                name: self.name.clone(),
                addr: self.addr.clone(),
                incarnation: self.incarnation,
                seq: self.seq,
                sent: 0,
                members: self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.health == Health::Up)
                    .map(|(a, _)| a.clone())
                    .collect(),
            }));
            self.next_heartbeat = now + self.settings.heartbeat;
        }
        // A change is reported once, however many members changed.
        let mut seen = false;
        actions.retain(|a| {
            !matches!(a, Action::MembersChanged) || !std::mem::replace(&mut seen, true)
        });
        actions
    }

    /// The members now.
    pub fn view(&self, now: Instant) -> View {
        let mut members = vec![Member {
            name: Some(self.name.clone()),
            addr: self.addr.clone(),
            health: if self.leaving {
                Health::Left
            } else {
                Health::Up
            },
            for_: now.duration_since(self.started),
            last_heard: None,
            rtt: None,
            incarnation: self.incarnation,
            connected: true,
            me: true,
        }];
        members.extend(self.peers.iter().map(|(addr, p)| Member {
            name: p.name.clone(),
            addr: addr.clone(),
            health: p.health,
            for_: now.duration_since(p.since),
            last_heard: p.last_heard.map(|h| now.duration_since(h)),
            rtt: p.rtt,
            incarnation: p.incarnation,
            connected: p.connected,
            me: false,
        }));
        View {
            me: self.name.clone(),
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn hb(name: &str, addr: &str) -> Heartbeat {
        Heartbeat {
            name: name.into(),
            addr: addr.into(),
            incarnation: 1,
            seq: 1,
            sent: 0,
            members: vec![],
        }
    }

    fn node(now: Instant) -> Membership {
        Membership::new(
            "a",
            "10.0.0.1:7100",
            1,
            &["10.0.0.2:7100".into()],
            Settings::default(),
            now,
        )
    }

    fn dials(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dial(x) => Some(x.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dials_seeds_and_heartbeats_at_once() {
        let t0 = Instant::now();
        let mut m = node(t0);
        let a = m.tick(t0);
        assert_eq!(dials(&a), ["10.0.0.2:7100"]);
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Heartbeat(h) if h.seq == 1)));
        assert_eq!(m.view(t0).live(), ["a"]);
    }

    #[test]
    fn redials_with_doubling_backoff_until_connected() {
        let t0 = Instant::now();
        let mut m = node(t0);
        let mut at = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(5) {
            if !dials(&m.tick(t)).is_empty() {
                at.push(t.duration_since(t0).as_millis());
            }
            t += 10 * MS;
        }
        // 100 ms doubling, capped at 2 s: the next one is at 5100.
        assert_eq!(at, [0, 100, 300, 700, 1500, 3100]);
        m.connected("10.0.0.2:7100", t);
        assert!(dials(&m.tick(t + Duration::from_secs(10))).is_empty());
    }

    #[test]
    fn up_when_heard_down_after_silence_then_redialed() {
        let t0 = Instant::now();
        let mut m = node(t0);
        m.tick(t0);
        m.connected("10.0.0.2:7100", t0 + 5 * MS);
        let (ack, a) = m.heard(&hb("b", "10.0.0.2:7100"), t0 + 10 * MS);
        assert_eq!(ack.unwrap().name, "a");
        assert_eq!(a, [Action::MembersChanged]);
        assert_eq!(m.view(t0).live(), ["a", "b"]);
        // Heard every 250 ms: stays up.
        for i in 1..20 {
            let t = t0 + 10 * MS + i * 250 * MS;
            m.heard(&hb("b", "10.0.0.2:7100"), t);
            assert!(!m.tick(t).contains(&Action::MembersChanged));
        }
        let last = t0 + 10 * MS + 19 * 250 * MS;
        // Silent, the session still open (half-open): down at 2 s.
        assert!(!m.tick(last + 1999 * MS).contains(&Action::MembersChanged));
        let a = m.tick(last + 2000 * MS);
        assert!(a.contains(&Action::MembersChanged));
        assert!(a.contains(&Action::Disconnect("10.0.0.2:7100".into())));
        assert_eq!(m.view(last).live(), ["a"]);
        assert_eq!(dials(&m.tick(last + 2100 * MS)), ["10.0.0.2:7100"]);
        // Back: up again.
        let (_, a) = m.heard(&hb("b", "10.0.0.2:7100"), last + 3 * Duration::from_secs(1));
        assert_eq!(a, [Action::MembersChanged]);
    }

    #[test]
    fn learns_members_from_gossip() {
        let t0 = Instant::now();
        let mut m = node(t0);
        let mut h = hb("b", "10.0.0.2:7100");
        h.members = vec!["10.0.0.3:7100".into(), "10.0.0.1:7100".into()];
        m.heard(&h, t0);
        let addrs: Vec<_> = m.view(t0).members.iter().map(|x| x.addr.clone()).collect();
        assert_eq!(addrs, ["10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"]);
        assert_eq!(dials(&m.tick(t0)), ["10.0.0.2:7100", "10.0.0.3:7100"]);
        // Told of, never heard: not live.
        assert_eq!(m.view(t0).live(), ["a", "b"]);
    }

    #[test]
    fn acks_count_as_life_and_carry_the_round_trip() {
        let t0 = Instant::now();
        let mut m = node(t0);
        let ack = Ack {
            name: "b".into(),
            addr: "10.0.0.2:7100".into(),
            seq: 1,
            sent: 0,
        };
        assert_eq!(m.acked(&ack, 3 * MS, t0), [Action::MembersChanged]);
        let b = &m.view(t0).members[1];
        assert_eq!((b.health, b.rtt), (Health::Up, Some(3 * MS)));
    }

    #[test]
    fn leaving_stops_heartbeats_and_answers_and_leaves_placement() {
        let t0 = Instant::now();
        let mut m = node(t0);
        m.heard(&hb("b", "10.0.0.2:7100"), t0);
        assert_eq!(m.leave(), [Action::Leave, Action::MembersChanged]);
        assert!(m.leave().is_empty());
        assert_eq!(m.view(t0).live(), ["b"]);
        let (ack, _) = m.heard(&hb("b", "10.0.0.2:7100"), t0 + 10 * MS);
        assert!(ack.is_none());
        let later = m.tick(t0 + Duration::from_secs(1));
        assert!(!later.iter().any(|a| matches!(a, Action::Heartbeat(_))));
    }

    #[test]
    fn a_member_that_left_is_not_live_until_heard_again() {
        let t0 = Instant::now();
        let mut m = node(t0);
        m.heard(&hb("b", "10.0.0.2:7100"), t0);
        assert_eq!(m.left("10.0.0.2:7100", t0), [Action::MembersChanged]);
        assert!(m.left("10.0.0.2:7100", t0).is_empty());
        assert_eq!(m.view(t0).live(), ["a"]);
        assert_eq!(m.view(t0).members[1].health, Health::Left);
        // Its silence is no news.
        assert!(!m
            .tick(t0 + Duration::from_secs(5))
            .contains(&Action::MembersChanged));
        // Restarted: heard, up.
        let (_, a) = m.heard(&hb("b", "10.0.0.2:7100"), t0 + Duration::from_secs(6));
        assert_eq!(a, [Action::MembersChanged]);
    }

    proptest! {
        /// Whatever arrives when, a member is up exactly when it was heard
        /// within `down_after` (checked at each tick).
        #[test]
        fn up_iff_heard_recently(events in proptest::collection::vec((0u64..600, any::<bool>()), 1..80)) {
            let t0 = Instant::now();
            let mut m = node(t0);
            let mut t = t0;
            let mut last: Option<Instant> = None;
            for (gap, hear) in events {
                t += Duration::from_millis(gap * 10);
                if hear {
                    m.heard(&hb("b", "10.0.0.2:7100"), t);
                    last = Some(t);
                }
                m.tick(t);
                let up = m.view(t).live().contains(&"b");
                let recent = last.is_some_and(|h| t.duration_since(h) < Duration::from_secs(2));
                prop_assert_eq!(up, recent);
            }
        }
    }
}
