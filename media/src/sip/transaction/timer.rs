//! The transaction timers of RFC 3261 §17 (Table 4), RFC 6026's L and M,
//! and the 200 ms rule of §17.2.1, as one named table.
//!
//! Each machine owns a [`Timers`]: one `Option<Instant>` per [`Timer`].
//! Arming a timer writes its deadline, stopping it clears the slot, and the
//! machine's `handle_timeout(now)` pops the expired ones in deadline order
//! with [`Timers::pop_expired`]. Nothing here reads the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A timer of RFC 3261 Table 4, RFC 6026, or §17.2.1's 100 Trying delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Client INVITE, unreliable transport: retransmit the INVITE; starts
    /// at T1 and doubles (§17.1.1.2).
    A,
    /// Client INVITE: give up waiting for any response, 64*T1 (§17.1.1.2).
    B,
    /// Client INVITE Completed: absorb final-response retransmissions,
    /// 32 s unreliable, 0 reliable (§17.1.1.2).
    D,
    /// Client non-INVITE, unreliable: retransmit the request; T1 doubling
    /// up to T2, T2 once Proceeding (§17.1.2.2).
    E,
    /// Client non-INVITE: give up, 64*T1 (§17.1.2.2).
    F,
    /// Server INVITE Completed, unreliable: retransmit the final response;
    /// T1 doubling up to T2 (§17.2.1).
    G,
    /// Server INVITE Completed: give up waiting for the ACK, 64*T1 (§17.2.1).
    H,
    /// Server INVITE Confirmed: absorb ACK retransmissions, T4 unreliable,
    /// 0 reliable (§17.2.1).
    I,
    /// Server non-INVITE Completed: absorb request retransmissions, 64*T1
    /// unreliable, 0 reliable (§17.2.2).
    J,
    /// Client non-INVITE Completed: absorb response retransmissions, T4
    /// unreliable, 0 reliable (§17.1.2.2).
    K,
    /// RFC 6026 §8.7: server INVITE Accepted, absorb INVITE retransmissions
    /// and pass 2xx retransmissions and ACKs, 64*T1.
    L,
    /// RFC 6026 §8.4: client INVITE Accepted, pass 2xx retransmissions
    /// (forked answers) to the TU, 64*T1.
    M,
    /// RFC 3261 §17.2.1: the server INVITE machine sends 100 Trying itself
    /// when the TU has sent no provisional response within 200 ms.
    Trying,
}

/// Number of timers in the table.
const COUNT: usize = 13;

impl Timer {
    /// Every timer, in slot order.
    pub const ALL: [Timer; COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
        Timer::Trying,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// The RFC 3261 §17.1.1.1 base values. Every other duration derives from
/// these (Table 4), so a test or a deployment on a slow link changes three
/// numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses; 4 s by default.
    pub t2: Duration,
    /// Maximum time a message stays in the network; 5 s by default.
    pub t4: Duration,
    /// How long the server INVITE machine waits for a provisional response
    /// from the TU before it sends 100 Trying itself (§17.2.1: 200 ms).
    pub trying_delay: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
        }
    }
}

impl TimerConfig {
    /// The values the machines run with: T1, T2 and T4 of at least 1 ms
    /// and T2 no shorter than T1. A zero T1 would make Timers A, E and G
    /// fire for ever at the same instant.
    pub fn sanitized(self) -> TimerConfig {
        let min = Duration::from_millis(1);
        let t1 = self.t1.max(min);
        TimerConfig {
            t1,
            t2: self.t2.max(t1),
            t4: self.t4.max(min),
            trying_delay: self.trying_delay,
        }
    }

    /// 64*T1: timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer D: "> 32 s" over unreliable transports, 0 over reliable ones.
    /// With a T1 above 500 ms it grows with 64*T1, so the client keeps
    /// absorbing retransmissions as long as the server may send them.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64())
        }
    }

    /// Timers I and K: T4 unreliable, 0 reliable.
    pub fn t4_or_zero(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64*T1 unreliable, 0 reliable.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// The next retransmission interval: doubled, capped at T2
    /// (§17.1.2.2 for E, §17.2.1 for G).
    pub fn double_capped(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2).min(self.t2)
    }
}

/// A deadline per [`Timer`]; `None` is a stopped timer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    at: [Option<Instant>; COUNT],
}

impl Timers {
    /// Arms `timer` to fire at `at` (replacing an earlier deadline).
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.slot()] = Some(at);
    }

    /// Stops `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.at[timer.slot()] = None;
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.slot()]
    }

    /// Stops every timer (the machine terminated).
    pub fn clear(&mut self) {
        self.at = [None; COUNT];
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Stops and returns the expired timer with the earliest deadline (the
    /// first in table order on a tie), or `None` when none has expired.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let mut best: Option<(usize, Instant)> = None;
        for (i, at) in self.at.iter().enumerate() {
            if let Some(at) = *at {
                if at <= now && best.is_none_or(|(_, b)| at < b) {
                    best = Some((i, at));
                }
            }
        }
        let (i, _) = best?;
        self.at[i] = None;
        Some(Timer::ALL[i])
    }
}

/// The deadlines of many machines (the layer's wake-up list).
///
/// A binary heap over hundreds of thousands of transactions misses the
/// cache at every level of every pop. Here deadlines are kept in one
/// sorted FIFO per timer duration instead: transactions arm the same few
/// durations (200 ms, T1·2ⁿ, T2, T4, 64*T1) at non-decreasing `now`, so
/// each push is an append and the earliest deadline is the smallest of a
/// dozen queue fronts. A push out of order (a caller's `now` went
/// backwards) is inserted in place, so every queue stays sorted.
#[derive(Debug)]
pub(super) struct Wakeups<T> {
    queues: Vec<(Duration, VecDeque<(Instant, T)>)>,
}

/// Past this many distinct durations, new ones share the last queue.
const MAX_QUEUES: usize = 32;

impl<T> Default for Wakeups<T> {
    fn default() -> Self {
        Wakeups { queues: Vec::new() }
    }
}

impl<T: Copy> Wakeups<T> {
    /// Queues `item` to wake at `at`, armed at `now`.
    pub(super) fn push(&mut self, now: Instant, at: Instant, item: T) {
        let d = at.saturating_duration_since(now);
        let i = match self.queues.iter().position(|(qd, _)| *qd == d) {
            Some(i) => i,
            None if self.queues.len() < MAX_QUEUES => {
                self.queues.push((d, VecDeque::new()));
                self.queues.len() - 1
            }
            None => self.queues.len() - 1,
        };
        let q = &mut self.queues[i].1;
        if q.back().is_none_or(|(b, _)| *b <= at) {
            q.push_back((at, item));
        } else {
            let pos = q.partition_point(|(t, _)| *t <= at);
            q.insert(pos, (at, item));
        }
    }

    fn earliest(&self) -> Option<usize> {
        let mut best: Option<(usize, Instant)> = None;
        for (i, (_, q)) in self.queues.iter().enumerate() {
            if let Some((at, _)) = q.front() {
                if best.is_none_or(|(_, b)| *at < b) {
                    best = Some((i, *at));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    /// The earliest queued wake-up.
    pub(super) fn peek(&self) -> Option<(Instant, T)> {
        let i = self.earliest()?;
        self.queues[i].1.front().copied()
    }

    /// Removes and returns the earliest queued wake-up.
    pub(super) fn pop(&mut self) -> Option<(Instant, T)> {
        let i = self.earliest()?;
        self.queues[i].1.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeups_come_out_in_order() {
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        let mut w = Wakeups::default();
        w.push(t0, t0 + ms(500), 1);
        w.push(t0, t0 + ms(200), 2);
        w.push(t0 + ms(100), t0 + ms(600), 3);
        w.push(t0 + ms(50), t0 + ms(250), 4);
        // `now` went backwards: inserted in place.
        w.push(t0, t0 + ms(450), 5);
        let order: Vec<i32> = std::iter::from_fn(|| w.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, vec![2, 4, 5, 1, 3]);
        assert_eq!(w.peek(), None);
    }

    #[test]
    fn slots_match_all() {
        for (i, t) in Timer::ALL.iter().enumerate() {
            assert_eq!(t.slot(), i);
        }
    }

    #[test]
    fn pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(Timer::B, t0 + Duration::from_secs(2));
        t.set(Timer::A, t0 + Duration::from_secs(3));
        t.set(Timer::K, t0 + Duration::from_secs(1));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_expired(t0), None);
        let now = t0 + Duration::from_secs(5);
        assert_eq!(t.pop_expired(now), Some(Timer::K));
        assert_eq!(t.pop_expired(now), Some(Timer::B));
        assert_eq!(t.pop_expired(now), Some(Timer::A));
        assert_eq!(t.pop_expired(now), None);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn zero_timers_are_raised() {
        let c = TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
            trying_delay: Duration::ZERO,
        }
        .sanitized();
        assert_eq!(c.t1, Duration::from_millis(1));
        assert_eq!(c.t2, Duration::from_millis(1));
        assert_eq!(c.t4, Duration::from_millis(1));
        assert_eq!(TimerConfig::default().sanitized(), TimerConfig::default());
    }

    #[test]
    fn table_4_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t1x64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(false), Duration::from_secs(32));
        assert_eq!(c.timer_d(true), Duration::ZERO);
        assert_eq!(c.t4_or_zero(false), Duration::from_secs(5));
        assert_eq!(c.timer_j(true), Duration::ZERO);
        assert_eq!(
            c.double_capped(Duration::from_secs(2)),
            Duration::from_secs(4)
        );
        assert_eq!(
            c.double_capped(Duration::from_secs(4)),
            Duration::from_secs(4)
        );
    }
}
