//! RTCP for one leg (RFC 3550 §6), sans-IO, with `rtcp-types` for the
//! wire format.
//!
//! A leg counts what it sends ([`Rtcp::on_sent`]) and receives
//! ([`Rtcp::on_received`]); every reporting interval it emits a compound
//! packet: a sender report when it sent media since the last one, else a
//! receiver report, with a report block on the source it hears, and the
//! SDES CNAME every compound packet must carry (§6.1). Reports from the
//! peer are read into [`PeerView`]: how our stream arrives there (loss,
//! jitter) and the round-trip time from LSR/DLSR (§6.4.1). Time comes in
//! twice: `Instant` for intervals and arrival, and the wall clock as an
//! [`Ntp`] timestamp for the report fields.

use super::stats::{ReceiverStats, SeqUpdate};
use rtcp_types::{
    Bye, Compound, CompoundBuilder, Packet, ReceiverReport, ReportBlock, RtcpPacketWriterExt,
    RtcpParseError, Sdes, SdesChunk, SdesItem, SenderReport,
};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// RFC 3550 §6.2: the minimum interval between reports.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// A wall-clock time in NTP format: seconds since 1900 in the high 32
/// bits, the fraction in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ntp(pub u64);

impl Ntp {
    /// Seconds from 1900 to 1970.
    const UNIX_OFFSET: u64 = 2_208_988_800;

    /// From time since the Unix epoch.
    pub fn from_unix(since_epoch: Duration) -> Ntp {
        let secs = since_epoch.as_secs() + Ntp::UNIX_OFFSET;
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        Ntp((secs << 32) | frac)
    }

    /// The middle 32 bits, as LSR and DLSR use them (units of 1/65536 s).
    pub fn middle(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// An RTCP packet we could not read.
#[derive(Debug, PartialEq, Eq, Error)]
#[error("bad RTCP packet: {0}")]
pub struct RtcpError(#[from] pub RtcpParseError);

/// What the peer reports about our stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    /// Of our packets, lost in its last interval, out of 256.
    pub fraction_lost: u8,
    pub cumulative_lost: u32,
    /// In RTP timestamp units.
    pub jitter: u32,
    pub rtt: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    packets: u32,
    octets: u32,
    /// The RTP timestamp of the last packet and when it went out, to
    /// derive the timestamp that corresponds to a report's NTP time.
    last_ts: u32,
    last_at: Instant,
    since_report: bool,
}

/// RTCP state of one leg.
#[derive(Debug)]
pub struct Rtcp {
    ssrc: u32,
    cname: String,
    clock_rate: u32,
    sent: Option<Sent>,
    remote: Option<ReceiverStats>,
    /// Origin of arrival times in timestamp units.
    origin: Option<Instant>,
    /// The middle of the peer's last SR NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    next_report: Option<Instant>,
    peer: Option<PeerView>,
    /// A seeded generator for the interval's randomisation (§6.3.1).
    rng: u64,
    transmit: VecDeque<Vec<u8>>,
    bad_packets: u64,
}

impl Rtcp {
    /// RTCP for our stream `ssrc`, named `cname`, clocked at `clock_rate`;
    /// `seed` randomises the report times.
    pub fn new(ssrc: u32, cname: &str, clock_rate: u32, seed: u64) -> Rtcp {
        Rtcp {
            ssrc,
            cname: cname.to_owned(),
            clock_rate: clock_rate.max(1),
            sent: None,
            remote: None,
            origin: None,
            last_sr: None,
            next_report: None,
            peer: None,
            rng: seed | 1,
            transmit: VecDeque::new(),
            bad_packets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// What we know of the source we receive.
    pub fn remote(&self) -> Option<&ReceiverStats> {
        self.remote.as_ref()
    }

    /// What the peer last reported about our stream.
    pub fn peer_view(&self) -> Option<PeerView> {
        self.peer
    }

    /// RTCP packets we could not parse.
    pub fn bad_packets(&self) -> u64 {
        self.bad_packets
    }

    /// Uniform in [0.5, 1.5) × the minimum interval (§6.3.1).
    fn interval(&mut self) -> Duration {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let unit = r as f64 / (1u64 << 53) as f64;
        MIN_INTERVAL.mul_f64(0.5 + unit)
    }

    fn schedule(&mut self, now: Instant) {
        if self.next_report.is_none() {
            // §6.2: the first report after half the minimum interval.
            let first = self.interval() / 2;
            self.next_report = Some(now + first);
        }
    }

    /// An RTP packet we received.
    pub fn on_received(&mut self, ssrc: u32, seq: u16, ts: u32, now: Instant) -> SeqUpdate {
        self.schedule(now);
        let origin = *self.origin.get_or_insert(now);
        let arrival =
            now.duration_since(origin).as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000;
        match &mut self.remote {
            Some(r) if r.ssrc() == ssrc => r.packet(seq, ts, arrival),
            _ => {
                let mut r = ReceiverStats::new(ssrc, seq);
                let u = r.packet(seq, ts, arrival);
                self.remote = Some(r);
                u
            }
        }
    }

    /// An RTP packet we sent, with `payload_len` bytes of payload.
    pub fn on_sent(&mut self, ts: u32, payload_len: usize, now: Instant) {
        self.schedule(now);
        let s = self.sent.get_or_insert(Sent {
            packets: 0,
            octets: 0,
            last_ts: ts,
            last_at: now,
            since_report: false,
        });
        s.packets = s.packets.wrapping_add(1);
        s.octets = s.octets.wrapping_add(payload_len as u32);
        s.last_ts = ts;
        s.last_at = now;
        s.since_report = true;
    }

    /// A compound RTCP packet from the peer.
    pub fn handle_rtcp(&mut self, data: &[u8], now: Instant, ntp: Ntp) -> Result<(), RtcpError> {
        let compound = Compound::parse(data).inspect_err(|_| self.bad_packets += 1)?;
        for packet in compound {
            let packet = packet.inspect_err(|_| self.bad_packets += 1)?;
            match packet {
                Packet::Sr(sr) => {
                    self.last_sr = Some(((sr.ntp_timestamp() >> 16) as u32, now));
                    for b in sr.report_blocks() {
                        self.peer_block(&b, ntp);
                    }
                }
                Packet::Rr(rr) => {
                    for b in rr.report_blocks() {
                        self.peer_block(&b, ntp);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn peer_block(&mut self, b: &ReportBlock<'_>, ntp: Ntp) {
        if b.ssrc() != self.ssrc {
            return;
        }
        let (lsr, dlsr) = (
            b.last_sender_report_timestamp(),
            b.delay_since_last_sender_report_timestamp(),
        );
        // §6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
        let rtt = (lsr != 0).then(|| {
            let units = ntp.middle().wrapping_sub(lsr).wrapping_sub(dlsr);
            // A negative result (clock trouble) wraps to a huge value.
            (units < 0x8000_0000)
                .then(|| Duration::from_micros(u64::from(units) * 1_000_000 / 65_536))
        });
        self.peer = Some(PeerView {
            fraction_lost: b.fraction_lost(),
            cumulative_lost: b.cumulative_lost(),
            jitter: b.interarrival_jitter(),
            rtt: rtt.flatten(),
        });
    }

    /// When the next report is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }

    pub fn handle_timeout(&mut self, now: Instant, ntp: Ntp) {
        let Some(at) = self.next_report else { return };
        if at > now {
            return;
        }
        let report = self.report(now, ntp, None);
        self.transmit.push_back(report);
        let next = self.interval();
        self.next_report = Some(now + next);
    }

    /// The next RTCP packet to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The last report, with a BYE (§6.6): when the leg ends.
    pub fn bye(&mut self, now: Instant, ntp: Ntp, reason: &str) -> Vec<u8> {
        self.next_report = None;
        self.report(now, ntp, Some(reason))
    }

    /// A compound packet: SR or RR, SDES CNAME, and a BYE if `bye`.
    fn report(&mut self, now: Instant, ntp: Ntp, bye: Option<&str>) -> Vec<u8> {
        let block = self.remote.as_mut().map(|r| {
            let rep = r.report();
            let (lsr, dlsr) = match self.last_sr {
                Some((middle, at)) => {
                    let since = now.saturating_duration_since(at);
                    let units = since.as_micros() as u64 * 65_536 / 1_000_000;
                    (middle, units.min(u64::from(u32::MAX)) as u32)
                }
                None => (0, 0),
            };
            ReportBlock::builder(rep.ssrc)
                .fraction_lost(rep.fraction_lost)
                .cumulative_lost((rep.cumulative_lost as u32) & 0x00FF_FFFF)
                .extended_sequence_number(rep.highest_seq)
                .interarrival_jitter(rep.jitter)
                .last_sender_report_timestamp(lsr)
                .delay_since_last_sender_report_timestamp(dlsr)
        });
        let sender = self.sent.filter(|s| s.since_report);
        let mut compound = CompoundBuilder::default();
        if let Some(s) = sender {
            // The RTP timestamp of this instant, from the last one sent.
            let elapsed = now.saturating_duration_since(s.last_at);
            let ts = s.last_ts.wrapping_add(
                (elapsed.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000) as u32,
            );
            let mut sr = SenderReport::builder(self.ssrc)
                .ntp_timestamp(ntp.0)
                .rtp_timestamp(ts)
                .packet_count(s.packets)
                .octet_count(s.octets);
            if let Some(b) = block {
                sr = sr.add_report_block(b);
            }
            compound = compound.add_packet(sr);
        } else {
            let mut rr = ReceiverReport::builder(self.ssrc);
            if let Some(b) = block {
                rr = rr.add_report_block(b);
            }
            compound = compound.add_packet(rr);
        }
        if let Some(s) = self.sent.as_mut() {
            s.since_report = false;
        }
        let sdes = Sdes::builder().add_chunk(
            SdesChunk::builder(self.ssrc).add_item(SdesItem::builder(SdesItem::CNAME, &self.cname)),
        );
        compound = compound.add_packet(sdes);
        if let Some(reason) = bye {
            compound = compound.add_packet(Bye::builder().add_source(self.ssrc).reason(reason));
        }
        let mut buf = vec![0u8; 1500];
        match compound.write_into(&mut buf) {
            Ok(n) => buf.truncate(n),
            // Only an over-long CNAME or reason can fail: send the report
            // alone rather than nothing.
            Err(_) => buf.clear(),
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntp_at(t0: Instant, now: Instant) -> Ntp {
        Ntp::from_unix(Duration::from_secs(1_800_000_000) + now.duration_since(t0))
    }

    #[test]
    fn ntp_from_unix_time() {
        let n = Ntp::from_unix(Duration::from_millis(1_500));
        assert_eq!(n.0 >> 32, 2_208_988_801);
        assert_eq!(n.0 & 0xFFFF_FFFF, 1 << 31);
        assert_eq!(n.middle(), ((2_208_988_801u64 << 16) as u32) | 0x8000);
    }

    #[test]
    fn first_report_after_half_an_interval_then_every_five_seconds_or_so() {
        let t0 = Instant::now();
        let mut r = Rtcp::new(1, "leg@switchboard", 8000, 42);
        assert_eq!(r.poll_timeout(), None);
        r.on_sent(0, 160, t0);
        let first = r.poll_timeout().unwrap_or(t0);
        let d = first - t0;
        assert!(
            d >= Duration::from_millis(1250) && d < Duration::from_millis(3750),
            "{d:?}"
        );
        let mut now = first;
        for _ in 0..20 {
            r.handle_timeout(now, ntp_at(t0, now));
            assert!(r.poll_transmit().is_some());
            let next = r.poll_timeout().unwrap_or(now);
            let gap = next - now;
            assert!(gap >= Duration::from_millis(2500) && gap < Duration::from_millis(7500));
            now = next;
        }
    }

    /// Two legs talking to each other: each learns the other's loss, and
    /// round-trip time comes out of LSR/DLSR.
    #[test]
    fn two_ends_exchange_reports_and_measure_loss_and_rtt() {
        let t0 = Instant::now();
        let mut a = Rtcp::new(0xA, "a@sb", 8000, 1);
        let mut b = Rtcp::new(0xB, "b@sb", 8000, 2);
        let one_way = Duration::from_millis(30);
        // A sends 100 packets to B, 5 of which are lost; B sends 100 back.
        for i in 0u16..100 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            a.on_sent(u32::from(i) * 160, 160, now);
            if i % 20 != 7 {
                b.on_received(0xA, i, u32::from(i) * 160, now + one_way);
            }
            b.on_sent(u32::from(i) * 160, 160, now);
            a.on_received(0xB, i, u32::from(i) * 160, now + one_way);
        }
        // A's SR reaches B; B answers with its report 200 ms later.
        let t1 = t0 + Duration::from_secs(2);
        let sr = a.report(t1, ntp_at(t0, t1), None);
        let arrive = t1 + one_way;
        b.handle_rtcp(&sr, arrive, ntp_at(t0, arrive)).unwrap();
        let t2 = arrive + Duration::from_millis(200);
        let rr = b.report(t2, ntp_at(t0, t2), None);
        let back = t2 + one_way;
        a.handle_rtcp(&rr, back, ntp_at(t0, back)).unwrap();
        let view = a.peer_view().unwrap();
        assert_eq!(view.cumulative_lost, 5);
        assert_eq!(view.fraction_lost, (5 * 256 / 100) as u8);
        let rtt = view.rtt.unwrap();
        let ms = rtt.as_millis();
        assert!((59..=61).contains(&ms), "rtt {rtt:?}");
        // B's own stream arrived whole at A.
        let a_sees = a.remote().unwrap();
        assert_eq!(a_sees.lost(), 0);
        assert_eq!(a_sees.received(), 100);
    }

    #[test]
    fn reports_carry_cname_and_bye_ends_the_stream() {
        let t0 = Instant::now();
        let mut r = Rtcp::new(77, "agent-leg@node-1", 8000, 3);
        r.on_sent(0, 160, t0);
        let bytes = r.bye(t0, ntp_at(t0, t0), "call ended");
        let kinds: Vec<&str> = Compound::parse(&bytes)
            .unwrap()
            .map(|p| match p.unwrap() {
                Packet::Sr(_) => "sr",
                Packet::Rr(_) => "rr",
                Packet::Sdes(s) => {
                    let chunk = s.chunks().next().unwrap();
                    let item = chunk.items().next().unwrap();
                    assert_eq!(item.value(), b"agent-leg@node-1");
                    "sdes"
                }
                Packet::Bye(b) => {
                    assert_eq!(b.ssrcs().collect::<Vec<_>>(), [77]);
                    "bye"
                }
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["sr", "sdes", "bye"]);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = Rtcp::new(1, "x", 8000, 1);
        let now = Instant::now();
        for junk in [&[][..], &[0x80], &[0x80, 200, 0, 40, 1, 2], &[0x40; 64]] {
            assert!(r.handle_rtcp(junk, now, Ntp(0)).is_err());
        }
        assert_eq!(r.bad_packets(), 4);
    }
}
