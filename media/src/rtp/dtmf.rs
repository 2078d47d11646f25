//! RFC 4733 telephone-events (DTMF over RTP), sans-IO.
//!
//! An event is a run of packets with one RTP timestamp (the event's start):
//! the first has the marker bit, updates carry the growing duration, and
//! the end bit is set on the last packet, which is sent three times
//! (§2.5.1.4). [`DtmfReceiver`] turns such runs into one [`DtmfEvent`] per
//! key press however many packets repeat, get lost or arrive out of order;
//! an event whose end packets were all lost ends when the next event starts
//! or after a silence (`handle_timeout`). [`DtmfSender`] makes the packets'
//! payloads for a key press. The payload type is whatever the SDP
//! negotiated; nothing here assumes 101.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The 4-byte telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// 0-9, 10 = `*`, 11 = `#`, 12-15 = A-D, 16 = flash.
    pub event: u8,
    /// E bit: the event ended.
    pub end: bool,
    /// Power level, 0 to -63 dBm0, given as 0..=63.
    pub volume: u8,
    /// In RTP timestamp units since the event began.
    pub duration: u16,
}

/// A payload that is not a telephone-event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("telephone-event payload of {0} bytes (4 needed)")]
pub struct ShortPayload(pub usize);

impl EventPayload {
    pub fn parse(b: &[u8]) -> Result<EventPayload, ShortPayload> {
        if b.len() < 4 {
            return Err(ShortPayload(b.len()));
        }
        Ok(EventPayload {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// The key of a DTMF event code (RFC 4733 §3.2), `None` for other events.
pub fn event_key(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// The event code of a key.
pub fn key_event(key: char) -> Option<u8> {
    Some(match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => key as u8 - b'A' + 12,
        'a'..='d' => key as u8 - b'a' + 12,
        _ => return None,
    })
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    pub key: char,
    /// How long the key was held, from the last duration seen.
    pub duration: Duration,
    /// The RTP timestamp that identifies the event.
    pub timestamp: u32,
    /// Whether an end packet was seen (false: ended by timeout or by the
    /// next event).
    pub ended: bool,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    duration: u16,
    last_seen: Instant,
}

/// Turns telephone-event packets into key presses. See the module docs.
#[derive(Debug)]
pub struct DtmfReceiver {
    clock_rate: u32,
    /// Silence after which an event without end packet is over.
    timeout: Duration,
    current: Option<Current>,
    /// Timestamps of events already reported, newest last, to drop their
    /// late repeats.
    done: VecDeque<u32>,
    events: VecDeque<DtmfEvent>,
}

const REMEMBERED: usize = 8;

impl DtmfReceiver {
    /// For a stream with `clock_rate` (8000 for G.711).
    pub fn new(clock_rate: u32) -> DtmfReceiver {
        DtmfReceiver {
            clock_rate: clock_rate.max(1),
            timeout: Duration::from_millis(500),
            current: None,
            done: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// One telephone-event packet: its RTP timestamp and payload.
    pub fn handle_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ShortPayload> {
        let p = EventPayload::parse(payload)?;
        if self.done.contains(&timestamp) {
            return Ok(()); // a repeat of a reported event
        }
        match self.current {
            Some(c) if c.timestamp == timestamp => {
                let c = Current {
                    duration: c.duration.max(p.duration),
                    last_seen: now,
                    ..c
                };
                self.current = Some(c);
                if p.end {
                    self.report(c, true);
                }
            }
            Some(c) if is_older(timestamp, c.timestamp) => {
                // A late packet of an event before the current one: if it
                // was never reported it is lost now; ignore it.
            }
            other => {
                // A new event ends the one before (its end packets lost).
                if let Some(c) = other {
                    self.report(c, false);
                }
                let c = Current {
                    timestamp,
                    event: p.event,
                    duration: p.duration,
                    last_seen: now,
                };
                self.current = Some(c);
                if p.end {
                    self.report(c, true);
                }
            }
        }
        Ok(())
    }

    /// When an event without end packet times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|c| c.last_seen + self.timeout)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.current {
            if now >= c.last_seen + self.timeout {
                self.report(c, false);
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    fn report(&mut self, c: Current, ended: bool) {
        self.current = None;
        self.done.push_back(c.timestamp);
        if self.done.len() > REMEMBERED {
            self.done.pop_front();
        }
        // Events other than DTMF keys (flash, tones) are not keys.
        if let Some(key) = event_key(c.event) {
            self.events.push_back(DtmfEvent {
                key,
                duration: Duration::from_micros(
                    u64::from(c.duration) * 1_000_000 / u64::from(self.clock_rate),
                ),
                timestamp: c.timestamp,
                ended,
            });
        }
    }
}

/// RTP timestamps compare modulo 2^32 (RFC 3550 §5.1).
fn is_older(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// One packet to send for a key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// Set on the first packet of the event.
    pub marker: bool,
    /// The RTP timestamp: the event's start, the same for all its packets
    /// (a long event restarts it, §2.5.1.3).
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// Makes the packets of one key press (RFC 4733 §2.5.1).
#[derive(Debug)]
pub struct DtmfSender;

impl DtmfSender {
    /// The packets for `key` held for `duration`, starting at RTP
    /// timestamp `start`, one every `ptime`: the first with the marker,
    /// updates with the growing duration, then the final duration three
    /// times with the end bit. An event longer than the 16-bit duration
    /// field allows is split into segments with new timestamps
    /// (§2.5.1.3). `None` for a key that is not DTMF.
    pub fn packets(
        key: char,
        duration: Duration,
        start: u32,
        ptime: Duration,
        clock_rate: u32,
    ) -> Option<Vec<EventPacket>> {
        let event = key_event(key)?;
        let per_ms = u64::from(clock_rate) / 1000;
        let step = (ptime.as_millis() as u64 * per_ms).clamp(1, 0xFFFF);
        let total = (duration.as_millis() as u64 * per_ms).max(step);
        let mut out = Vec::new();
        let mut seg_start = u64::from(start);
        let mut left = total;
        let mut first = true;
        loop {
            let seg = left.min(0xFFFF);
            let ts = seg_start as u32;
            let mut d = step.min(seg);
            loop {
                let last = d >= seg;
                let p = EventPayload {
                    event,
                    end: last && seg == left,
                    volume: 10,
                    duration: d as u16,
                };
                let reps = if p.end { 3 } else { 1 };
                for _ in 0..reps {
                    out.push(EventPacket {
                        marker: first,
                        timestamp: ts,
                        payload: p.to_bytes(),
                    });
                    first = false;
                }
                if last {
                    break;
                }
                d = (d + step).min(seg);
            }
            left -= seg;
            if left == 0 {
                return Some(out);
            }
            seg_start += seg;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(rx: &mut DtmfReceiver, pkts: &[EventPacket], now: Instant) {
        for p in pkts {
            rx.handle_packet(p.timestamp, &p.payload, now).unwrap();
        }
    }

    fn keys(rx: &mut DtmfReceiver) -> String {
        std::iter::from_fn(|| rx.poll_event())
            .map(|e| e.key)
            .collect()
    }

    #[test]
    fn payload_round_trip_and_short_payload() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        assert_eq!(EventPayload::parse(&p.to_bytes()), Ok(p));
        assert_eq!(p.to_bytes(), [11, 0x8A, 0x06, 0x40]);
        assert_eq!(EventPayload::parse(&[1, 2]), Err(ShortPayload(2)));
        assert_eq!(event_key(10), Some('*'));
        assert_eq!(event_key(15), Some('D'));
        assert_eq!(event_key(16), None);
        assert_eq!(key_event('#'), Some(11));
        assert_eq!(key_event('x'), None);
    }

    #[test]
    fn sender_makes_marker_updates_and_three_ends() {
        let pkts = DtmfSender::packets(
            '5',
            Duration::from_millis(100),
            1000,
            Duration::from_millis(20),
            8000,
        )
        .unwrap();
        // 160, 320, 480, 640, then 800 three times with E.
        assert_eq!(pkts.len(), 7);
        assert!(pkts[0].marker && pkts[1..].iter().all(|p| !p.marker));
        assert!(pkts.iter().all(|p| p.timestamp == 1000));
        let parsed: Vec<EventPayload> = pkts
            .iter()
            .map(|p| EventPayload::parse(&p.payload).unwrap())
            .collect();
        assert_eq!(
            parsed.iter().map(|p| p.duration).collect::<Vec<_>>(),
            vec![160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(parsed.iter().filter(|p| p.end).count(), 3);
        let mut rx = DtmfReceiver::new(8000);
        feed(&mut rx, &pkts, Instant::now());
        let e = rx.poll_event().unwrap();
        assert_eq!(
            (e.key, e.duration, e.ended),
            ('5', Duration::from_millis(100), true)
        );
        assert!(rx.poll_event().is_none());
    }

    #[test]
    fn a_long_event_is_split_into_segments() {
        // 10 s at 8 kHz is 80,000 units: more than 16 bits hold.
        let pkts = DtmfSender::packets(
            '1',
            Duration::from_secs(10),
            0,
            Duration::from_millis(50),
            8000,
        )
        .unwrap();
        let stamps: std::collections::BTreeSet<u32> = pkts.iter().map(|p| p.timestamp).collect();
        assert_eq!(stamps.into_iter().collect::<Vec<_>>(), vec![0, 65535]);
        let ends = pkts
            .iter()
            .filter(|p| EventPayload::parse(&p.payload).unwrap().end)
            .count();
        assert_eq!(ends, 3, "only the last segment ends the event");
    }

    #[test]
    fn lost_end_packets_end_by_next_event_or_timeout() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(8000);
        let one = DtmfSender::packets(
            '1',
            Duration::from_millis(100),
            0,
            Duration::from_millis(20),
            8000,
        )
        .unwrap();
        let two = DtmfSender::packets(
            '2',
            Duration::from_millis(100),
            2000,
            Duration::from_millis(20),
            8000,
        )
        .unwrap();
        // '1' loses its three end packets; '2' arrives whole.
        feed(&mut rx, &one[..4], t0);
        assert_eq!(keys(&mut rx), "");
        feed(&mut rx, &two, t0);
        let evs: Vec<DtmfEvent> = std::iter::from_fn(|| rx.poll_event()).collect();
        assert_eq!(evs.iter().map(|e| e.key).collect::<String>(), "12");
        assert!(!evs[0].ended && evs[1].ended);
        // '3' loses its ends and nothing follows: the silence ends it.
        let three = DtmfSender::packets(
            '3',
            Duration::from_millis(60),
            4000,
            Duration::from_millis(20),
            8000,
        )
        .unwrap();
        feed(&mut rx, &three[..2], t0);
        assert_eq!(rx.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        rx.handle_timeout(t0 + Duration::from_millis(499));
        assert_eq!(keys(&mut rx), "");
        rx.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(keys(&mut rx), "3");
        // Late repeats of a reported event are dropped.
        feed(&mut rx, &two[4..], t0);
        assert_eq!(keys(&mut rx), "");
    }

    proptest! {
        /// However packets of a sequence of key presses are duplicated or
        /// reordered within an event, each press is reported exactly once,
        /// in order.
        #[test]
        fn each_press_once(
            presses in proptest::collection::vec((0u8..16, 40u64..400), 1..8),
            dup in proptest::collection::vec(0usize..3, 64),
            swap in proptest::collection::vec(any::<bool>(), 64),
        ) {
            let t0 = Instant::now();
            let mut rx = DtmfReceiver::new(8000);
            let mut ts = 0u32;
            let mut want = String::new();
            for (i, (ev, ms)) in presses.iter().enumerate() {
                let key = event_key(*ev).unwrap();
                want.push(key);
                let mut pkts = DtmfSender::packets(key, Duration::from_millis(*ms), ts, Duration::from_millis(20), 8000).unwrap();
                // Duplicate some packets, swap some neighbours.
                let mut noisy = Vec::new();
                for (j, p) in pkts.drain(..).enumerate() {
                    for _ in 0..=dup[(i * 7 + j) % dup.len()] {
                        noisy.push(p);
                    }
                }
                for j in 1..noisy.len() {
                    if swap[(i * 5 + j) % swap.len()] {
                        noisy.swap(j - 1, j);
                    }
                }
                feed(&mut rx, &noisy, t0);
                ts = ts.wrapping_add(8000);
            }
            rx.handle_timeout(t0 + Duration::from_secs(1));
            prop_assert_eq!(keys(&mut rx), want);
        }
    }
}
