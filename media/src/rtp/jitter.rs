//! A jitter buffer: packets of one RTP source go in as they arrive, in any
//! order and with duplicates; they come out in sequence order, each at its
//! playout time, with the missing ones reported as lost.
//!
//! Packets are keyed by extended sequence number ([`SeqCounter`]). The
//! playout time of a packet is fixed by the first one: arrival of the
//! first + the configured delay + the RTP timestamp difference, so the
//! buffer absorbs arrival jitter up to that delay and keeps the sender's
//! timing (silence suppression included). A new SSRC, a confirmed sequence
//! restart or a packet far from its schedule (a timestamp jump, clock
//! drift) starts the schedule afresh. Time is an input: `insert(…, now)`
//! and `pop(now)`; `poll_timeout()` says when the next packet is due.

use super::stats::{SeqCounter, SeqUpdate};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How a packet was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Queued for playout.
    Queued,
    /// A copy of a queued or played packet: dropped.
    Duplicate,
    /// Its playout time has passed (or a later packet already played):
    /// dropped.
    Late,
    /// Unconfirmed large sequence jump: dropped.
    Ignored,
    /// A new source or schedule: what was queued was flushed first.
    Reset,
}

/// What the buffer plays next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<T> {
    /// The next packet in order.
    Packet {
        ext_seq: u64,
        timestamp: u32,
        payload: T,
    },
    /// These packets never came in time: conceal them.
    Lost { from: u64, count: u64 },
}

#[derive(Debug, Clone)]
struct Entry<T> {
    timestamp: u32,
    payload: T,
}

/// A jitter buffer for one stream of payloads `T`.
#[derive(Debug, Clone)]
pub struct JitterBuffer<T> {
    clock_rate: u32,
    delay: Duration,
    /// Beyond this many queued packets the oldest plays at once.
    capacity: usize,
    ssrc: Option<u32>,
    seq: Option<SeqCounter>,
    /// (timestamp, instant) the schedule is anchored to.
    anchor: Option<(u32, Instant)>,
    /// The extended sequence number expected next in playout.
    next: Option<u64>,
    queue: BTreeMap<u64, Entry<T>>,
    lost: u64,
    late: u64,
}

impl<T> JitterBuffer<T> {
    /// A buffer holding packets `delay` past their first arrival, for a
    /// stream clocked at `clock_rate` Hz.
    pub fn new(clock_rate: u32, delay: Duration) -> JitterBuffer<T> {
        JitterBuffer {
            clock_rate: clock_rate.max(1),
            delay,
            capacity: 256,
            ssrc: None,
            seq: None,
            anchor: None,
            next: None,
            queue: BTreeMap::new(),
            lost: 0,
            late: 0,
        }
    }

    /// Packets reported lost so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Packets dropped for arriving after their playout time.
    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When packet `ts` is due, on the current schedule.
    fn due(&self, ts: u32) -> Option<Instant> {
        let (ats, at) = self.anchor?;
        let units = i64::from(ts.wrapping_sub(ats) as i32);
        let offset = Duration::from_micros(
            (units.unsigned_abs().saturating_mul(1_000_000) / u64::from(self.clock_rate)).min(
                // Keep far-off timestamps representable.
                u64::from(u32::MAX),
            ),
        );
        let base = at + self.delay;
        Some(if units >= 0 {
            base + offset
        } else {
            base.checked_sub(offset).unwrap_or(at)
        })
    }

    fn restart(&mut self, ssrc: u32, seq: u16, ts: u32, now: Instant) -> u64 {
        self.queue.clear();
        self.ssrc = Some(ssrc);
        let counter = SeqCounter::new(seq);
        let ext = counter.highest();
        self.seq = Some(counter);
        self.anchor = Some((ts, now));
        self.next = Some(ext);
        ext
    }

    pub fn insert(&mut self, ssrc: u32, seq: u16, ts: u32, payload: T, now: Instant) -> Inserted {
        let fresh = self.ssrc != Some(ssrc) || self.seq.is_none();
        let (ext, mut outcome) = if fresh {
            (self.restart(ssrc, seq, ts, now), Inserted::Reset)
        } else {
            let Some(counter) = self.seq.as_mut() else {
                return Inserted::Ignored;
            };
            match counter.update(seq) {
                SeqUpdate::InOrder(e) | SeqUpdate::Late(e) => (e, Inserted::Queued),
                SeqUpdate::Ignored => return Inserted::Ignored,
                SeqUpdate::Restarted(_) => (self.restart(ssrc, seq, ts, now), Inserted::Reset),
            }
        };
        // Far off its schedule (a timestamp jump, or drift): re-anchor.
        if outcome == Inserted::Queued {
            if let Some(due) = self.due(ts) {
                let early = due.saturating_duration_since(now);
                let behind = now.saturating_duration_since(due);
                if early > self.delay + Duration::from_secs(1) || behind > Duration::from_secs(1) {
                    // What is queued plays at once; this one after it.
                    self.anchor = Some((ts, now));
                    outcome = Inserted::Reset;
                }
            }
        }
        if self.next.is_some_and(|n| ext < n) {
            self.late += 1;
            return Inserted::Late;
        }
        if self.queue.contains_key(&ext) {
            return Inserted::Duplicate;
        }
        self.queue.insert(
            ext,
            Entry {
                timestamp: ts,
                payload,
            },
        );
        outcome
    }

    /// When the head of the queue is due (None: nothing queued).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.queue.len() > self.capacity {
            return self.anchor.map(|(_, at)| at);
        }
        let (_, e) = self.queue.first_key_value()?;
        self.due(e.timestamp)
    }

    /// The next playout event due at `now`, if any.
    pub fn pop(&mut self, now: Instant) -> Option<Playout<T>> {
        let (&head, entry) = self.queue.first_key_value()?;
        let overfull = self.queue.len() > self.capacity;
        if !overfull && self.due(entry.timestamp).is_some_and(|d| d > now) {
            return None;
        }
        let next = self.next.unwrap_or(head);
        if head > next {
            // The packets between never arrived in time.
            let count = head - next;
            self.lost += count;
            self.next = Some(head);
            return Some(Playout::Lost { from: next, count });
        }
        let (ext_seq, e) = self.queue.pop_first()?;
        self.next = Some(ext_seq + 1);
        Some(Playout::Packet {
            ext_seq,
            timestamp: e.timestamp,
            payload: e.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS20: Duration = Duration::from_millis(20);

    fn drain(jb: &mut JitterBuffer<u16>, now: Instant) -> Vec<Playout<u16>> {
        let mut out = Vec::new();
        while let Some(p) = jb.pop(now) {
            out.push(p);
        }
        out
    }

    #[test]
    fn reordered_packets_come_out_in_order_at_their_time() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, Duration::from_millis(60));
        // 0, 2, 1 arrive 0, 20, 30 ms.
        jb.insert(9, 0, 0, 0u16, t0);
        jb.insert(9, 2, 320, 2, t0 + MS20);
        jb.insert(9, 1, 160, 1, t0 + Duration::from_millis(30));
        assert_eq!(jb.pop(t0 + Duration::from_millis(59)), None);
        assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(60)));
        let out = drain(&mut jb, t0 + Duration::from_millis(100));
        let seqs: Vec<u64> = out
            .iter()
            .filter_map(|p| match p {
                Playout::Packet { ext_seq, .. } => Some(*ext_seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn a_missing_packet_is_reported_lost_when_the_next_is_due() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, Duration::from_millis(40));
        jb.insert(1, 10, 1600, 10u16, t0);
        jb.insert(1, 12, 1920, 12, t0 + 2 * MS20);
        let out = drain(&mut jb, t0 + Duration::from_millis(200));
        assert_eq!(
            out,
            [
                Playout::Packet {
                    ext_seq: 10,
                    timestamp: 1600,
                    payload: 10
                },
                Playout::Lost { from: 11, count: 1 },
                Playout::Packet {
                    ext_seq: 12,
                    timestamp: 1920,
                    payload: 12
                },
            ]
        );
        // The straggler is late now.
        assert_eq!(
            jb.insert(1, 11, 1760, 11, t0 + Duration::from_millis(210)),
            Inserted::Late
        );
        assert_eq!(jb.lost(), 1);
        assert_eq!(jb.late(), 1);
    }

    #[test]
    fn duplicates_are_dropped_and_a_new_ssrc_resets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, Duration::ZERO);
        assert_eq!(jb.insert(1, 5, 0, 5u16, t0), Inserted::Reset);
        assert_eq!(jb.insert(1, 5, 0, 5, t0), Inserted::Duplicate);
        assert_eq!(jb.insert(2, 900, 7, 900, t0), Inserted::Reset);
        let out = drain(&mut jb, t0);
        assert_eq!(
            out,
            [Playout::Packet {
                ext_seq: 900,
                timestamp: 7,
                payload: 900
            }]
        );
    }

    #[test]
    fn a_timestamp_jump_re_anchors_instead_of_stalling() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000, Duration::from_millis(40));
        jb.insert(1, 0, 0, 0u16, t0);
        assert_eq!(drain(&mut jb, t0 + MS20 * 3).len(), 1);
        // The sender's clock leaps an hour ahead.
        let jump = 8000 * 3600;
        assert_eq!(jb.insert(1, 1, jump, 1, t0 + MS20 * 4), Inserted::Reset);
        let out = drain(&mut jb, t0 + MS20 * 4 + Duration::from_millis(40));
        assert_eq!(out.len(), 1, "{out:?}");
    }

    proptest! {
        /// Arrival jitter below the delay, any reordering it causes and
        /// any duplicates: everything comes out once, in order, nothing
        /// lost.
        #[test]
        fn jitter_below_the_delay_loses_nothing(
            n in 1usize..200,
            start in any::<u16>(),
            ts0 in any::<u32>(),
            jitter in proptest::collection::vec(0u64..59, 200),
            dups in proptest::collection::vec(any::<bool>(), 200),
        ) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(8000, Duration::from_millis(60));
            let mut arrivals: Vec<(Instant, u16, u32)> = Vec::new();
            for i in 0..n {
                let at = t0 + MS20 * i as u32 + Duration::from_millis(if i == 0 { 0 } else { jitter[i] });
                let seq = start.wrapping_add(i as u16);
                let ts = ts0.wrapping_add(160 * i as u32);
                arrivals.push((at, seq, ts));
                if dups[i] {
                    arrivals.push((at + Duration::from_millis(1), seq, ts));
                }
            }
            arrivals.sort_by_key(|a| a.0);
            let mut out = Vec::new();
            for (at, seq, ts) in arrivals {
                out.extend(drain(&mut jb, at));
                let r = jb.insert(1, seq, ts, seq, at);
                prop_assert!(r != Inserted::Late && r != Inserted::Ignored, "{:?}", r);
            }
            out.extend(drain(&mut jb, t0 + Duration::from_secs(10)));
            let got: Vec<u16> = out.iter().map(|p| match p {
                Playout::Packet { payload, .. } => *payload,
                Playout::Lost { .. } => u16::MAX,
            }).collect();
            let want: Vec<u16> = (0..n).map(|i| start.wrapping_add(i as u16)).collect();
            prop_assert_eq!(got, want);
        }

        /// With losses and any arrival order (reordering under RFC 3550's
        /// 100-packet misorder limit), playout is strictly increasing and
        /// accounts for every number in the span once.
        #[test]
        fn playout_covers_the_span_once(
            order in proptest::collection::vec((0u64..400, 0u16..99), 1..300),
        ) {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(8000, Duration::from_millis(60));
            let mut last: Option<u64> = None;
            let mut covered = 0u64;
            let mut events = order;
            events.sort();
            for (ms, seq) in events {
                let now = t0 + Duration::from_millis(ms);
                while let Some(p) = jb.pop(now) {
                    let (first, count) = match p {
                        Playout::Packet { ext_seq, .. } => (ext_seq, 1),
                        Playout::Lost { from, count } => (from, count),
                    };
                    if let Some(l) = last {
                        prop_assert_eq!(first, l + 1);
                    }
                    last = Some(first + count - 1);
                    covered += count;
                }
                jb.insert(1, seq, u32::from(seq) * 160, seq, now);
            }
            if let Some(l) = last {
                prop_assert!(covered <= l + 1);
            }
        }
    }
}
