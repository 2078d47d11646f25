//! One leg's RTP endpoints, sans-IO: the stream we send ([`RtpSender`]:
//! our SSRC, sequence numbers and timestamps, whatever the audio's source)
//! and where we send it ([`Latch`]: symmetric RTP).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Length of the fixed RTP header we write (no CSRCs, no extension).
pub const HEADER_LEN: usize = 12;

/// Writes a fixed RTP header (RFC 3550 §5.1) at the start of `buf`,
/// replacing what it held.
pub fn write_header(buf: &mut Vec<u8>, pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    buf.clear();
    buf.push(0x80);
    buf.push((pt & 0x7F) | if marker { 0x80 } else { 0 });
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
}

/// Where relayed packets of one source land in our numbering.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// The RTP stream a leg sends. RFC 3550 §8: towards a phone we are one
/// source, so prompts we generate and packets we relay from another leg
/// share our SSRC and continue one sequence and timestamp line. A relayed
/// source keeps its own gaps and order (its loss stays visible to the far
/// end's jitter buffer and RTCP); a new source, or our own frames in
/// between, continue from where the line was, with the marker bit set.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    /// The highest sequence number sent.
    seq: u16,
    /// The timestamp the next packet takes if it follows on.
    next_ts: u32,
    mapping: Option<Mapping>,
    marker: bool,
    sent: u64,
}

impl RtpSender {
    /// A stream with SSRC `ssrc` whose first packet is `first_seq` at
    /// `first_ts` (RFC 3550: both should be random; they are inputs here).
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32) -> RtpSender {
        RtpSender {
            ssrc,
            seq: first_seq.wrapping_sub(1),
            next_ts: first_ts,
            mapping: None,
            marker: true,
            sent: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets written so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The next packet starts a talkspurt (a new prompt, after silence).
    pub fn mark(&mut self) {
        self.marker = true;
    }

    /// The header of a frame of ours, `samples` long, written into `buf`.
    /// Returns its timestamp.
    pub fn own(&mut self, buf: &mut Vec<u8>, pt: u8, samples: u32) -> u32 {
        self.mapping = None;
        self.seq = self.seq.wrapping_add(1);
        let ts = self.next_ts;
        write_header(buf, pt, self.marker, self.seq, ts, self.ssrc);
        self.marker = false;
        self.next_ts = ts.wrapping_add(samples);
        self.sent += 1;
        ts
    }

    /// The header of a packet relayed from another stream (`ssrc`, `seq`,
    /// `ts`, its marker bit), covering `samples`, written into `buf`.
    /// Returns the (sequence number, timestamp) it got.
    pub fn relay(
        &mut self,
        buf: &mut Vec<u8>,
        pt: u8,
        src: (u32, u16, u32),
        marker: bool,
        samples: u32,
    ) -> (u16, u32) {
        let (ssrc, seq, ts) = src;
        let m = match self.mapping {
            Some(m) if m.ssrc == ssrc => m,
            _ => {
                let m = Mapping {
                    ssrc,
                    seq_offset: self.seq.wrapping_add(1).wrapping_sub(seq),
                    ts_offset: self.next_ts.wrapping_sub(ts),
                };
                self.mapping = Some(m);
                self.marker = true;
                m
            }
        };
        let out_seq = seq.wrapping_add(m.seq_offset);
        let out_ts = ts.wrapping_add(m.ts_offset);
        write_header(buf, pt, marker || self.marker, out_seq, out_ts, self.ssrc);
        self.marker = false;
        // Only packets ahead move the line on; a late one keeps its place.
        if (out_seq.wrapping_sub(self.seq) as i16) > 0 {
            self.seq = out_seq;
        }
        let end = out_ts.wrapping_add(samples);
        if (end.wrapping_sub(self.next_ts) as i32) > 0 {
            self.next_ts = end;
        }
        self.sent += 1;
        (out_seq, out_ts)
    }
}

/// After this much silence from the latched address, another source may
/// take its place (the phone moved, or its NAT binding changed).
pub const RELATCH_AFTER: Duration = Duration::from_secs(2);

/// Symmetric RTP (RFC 4961): send to where the peer's packets come from,
/// which is how a phone behind NAT is reached. Until a packet arrives the
/// address from SDP is used; the first packet latches. Packets from other
/// addresses are refused while the latched one is active, so a third party
/// cannot take over the stream by spraying packets at our port.
#[derive(Debug, Clone, Default)]
pub struct Latch {
    signalled: Option<SocketAddr>,
    latched: Option<(SocketAddr, Instant)>,
}

impl Latch {
    pub fn new() -> Latch {
        Latch::default()
    }

    /// The address the peer's SDP gave.
    pub fn signalled(&mut self, addr: SocketAddr) {
        self.signalled = Some(addr);
    }

    /// A packet from `src`: true when it is the peer's media.
    pub fn accept(&mut self, src: SocketAddr, now: Instant) -> bool {
        match self.latched {
            Some((addr, _)) if addr == src => {
                self.latched = Some((src, now));
                true
            }
            Some((_, last)) if now.saturating_duration_since(last) < RELATCH_AFTER => false,
            _ => {
                self.latched = Some((src, now));
                true
            }
        }
    }

    /// Where to send.
    pub fn dest(&self) -> Option<SocketAddr> {
        self.latched.map(|(a, _)| a).or(self.signalled)
    }

    pub fn is_latched(&self) -> bool {
        self.latched.is_some()
    }
}

/// Whether a phone is still there, from its media: a phone that has sent
/// RTP or RTCP and then goes quiet for `limit` is taken for gone (it lost
/// power or network without a BYE), so its call can be ended instead of
/// holding an agent forever. A phone that never sent anything is not
/// judged (early media that never came, one-way audio through a NAT): it
/// still has its BYE and the call's other side. Nor is one that is not
/// meant to send: while the negotiated direction says it only listens or
/// is inactive (the phone's own hold), or until the first packet after
/// the SDP changed.
#[derive(Debug, Clone)]
pub struct Silence {
    limit: Duration,
    /// The last packet from the phone, once there was one.
    heard: Option<Instant>,
    /// Whether the phone is meant to send to us.
    expected: bool,
    /// Reported already: once per silence.
    told: bool,
}

impl Silence {
    pub fn new(limit: Duration) -> Silence {
        Silence {
            limit,
            heard: None,
            expected: true,
            told: false,
        }
    }

    /// A packet from the phone.
    pub fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
        self.told = false;
    }

    /// The SDP changed: whether the phone is meant to send now. The watch
    /// starts again from the next packet.
    pub fn renegotiated(&mut self, phone_sends: bool) {
        self.expected = phone_sends;
        self.heard = None;
        self.told = false;
    }

    /// When the phone will have been quiet too long, if it stays quiet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.expected || self.told {
            return None;
        }
        self.heard.map(|h| h + self.limit)
    }

    /// True once, when the phone has been quiet for the limit by `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(at) if at <= now => {
                self.told = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_quiet_for_the_limit_is_gone_once() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(30);
        let mut s = Silence::new(limit);
        // Nothing heard yet: nothing to judge, however long.
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.handle_timeout(t0 + limit * 10));
        s.heard(t0);
        s.heard(t0 + Duration::from_millis(20));
        let due = t0 + Duration::from_millis(20) + limit;
        assert_eq!(s.poll_timeout(), Some(due));
        assert!(!s.handle_timeout(due - Duration::from_millis(1)));
        assert!(s.handle_timeout(due));
        // Told once.
        assert!(!s.handle_timeout(due + limit));
        assert_eq!(s.poll_timeout(), None);
        // It speaks again: watched again.
        s.heard(due + limit);
        assert_eq!(s.poll_timeout(), Some(due + limit * 2));
    }

    #[test]
    fn a_phone_not_meant_to_send_is_not_judged_until_it_sends_again() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(30);
        let mut s = Silence::new(limit);
        s.heard(t0);
        // It puts us on hold (a=sendonly from it, recvonly here).
        s.renegotiated(false);
        s.heard(t0 + Duration::from_secs(1));
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.handle_timeout(t0 + limit * 3));
        // Off hold: judged again from its first packet.
        s.renegotiated(true);
        assert_eq!(s.poll_timeout(), None);
        let back = t0 + limit * 4;
        s.heard(back);
        assert_eq!(s.poll_timeout(), Some(back + limit));
    }

    fn header(b: &[u8]) -> (bool, u8, u16, u32, u32) {
        (
            b[1] & 0x80 != 0,
            b[1] & 0x7F,
            u16::from_be_bytes([b[2], b[3]]),
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        )
    }

    #[test]
    fn own_frames_count_on_from_random_starts() {
        let mut s = RtpSender::new(0xABCD, 65_535, u32::MAX - 159);
        let mut b = Vec::new();
        s.own(&mut b, 0, 160);
        assert_eq!(header(&b), (true, 0, 65_535, u32::MAX - 159, 0xABCD));
        s.own(&mut b, 0, 160);
        assert_eq!(header(&b), (false, 0, 0, 0, 0xABCD));
    }

    #[test]
    fn a_relayed_source_keeps_its_gaps_and_order_on_our_line() {
        let mut s = RtpSender::new(1, 100, 1000);
        let mut b = Vec::new();
        s.own(&mut b, 8, 160); // seq 100, ts 1000
                               // A source starting at seq 5000, ts 777.
        assert_eq!(s.relay(&mut b, 8, (9, 5000, 777), false, 160), (101, 1160));
        assert!(header(&b).0, "a new source starts with the marker");
        // 5001 lost, 5003 before 5002.
        assert_eq!(
            s.relay(&mut b, 8, (9, 5003, 777 + 480), false, 160),
            (104, 1640)
        );
        assert!(!header(&b).0);
        assert_eq!(
            s.relay(&mut b, 8, (9, 5002, 777 + 320), false, 160),
            (103, 1480)
        );
        // Our own prompt after it continues past the highest.
        s.own(&mut b, 8, 160);
        assert_eq!(header(&b).2, 105);
        assert_eq!(header(&b).3, 1800);
        // Back to relaying: a fresh mapping, marker again.
        assert_eq!(
            s.relay(&mut b, 8, (9, 5004, 777 + 640), false, 160),
            (106, 1960)
        );
        assert!(header(&b).0);
    }

    #[test]
    fn telephone_events_keep_their_shared_timestamp() {
        let mut s = RtpSender::new(1, 0, 0);
        let mut b = Vec::new();
        s.relay(&mut b, 0, (5, 10, 8000), false, 160);
        // Three packets of one event: same timestamp, no advance.
        for seq in 11..14 {
            let (_, ts) = s.relay(&mut b, 101, (5, seq, 8160), seq == 11, 0);
            assert_eq!(ts, 160);
        }
    }

    #[test]
    fn the_latch_follows_the_first_source_and_refuses_others_while_it_talks() {
        let t0 = Instant::now();
        let sdp: SocketAddr = "192.0.2.1:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        let nat: SocketAddr = "198.51.100.7:61000"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let rogue: SocketAddr = "203.0.113.9:5000".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut l = Latch::new();
        assert_eq!(l.dest(), None);
        l.signalled(sdp);
        assert_eq!(l.dest(), Some(sdp));
        assert!(l.accept(nat, t0));
        assert_eq!(l.dest(), Some(nat));
        assert!(!l.accept(rogue, t0 + Duration::from_millis(500)));
        assert!(l.accept(nat, t0 + Duration::from_secs(1)));
        assert!(!l.accept(rogue, t0 + Duration::from_millis(2900)));
        // Silent for 2 s: the new address takes over.
        assert!(l.accept(rogue, t0 + Duration::from_millis(3100)));
        assert_eq!(l.dest(), Some(rogue));
    }
}
