//! What a receiver knows of one RTP source: the extended highest sequence
//! number, packets expected and lost, and the interarrival jitter, kept as
//! RFC 3550 appendix A.1, A.3 and A.8 describe. Arrival times are inputs,
//! given in the source's RTP clock units, so nothing here reads a clock.

/// RFC 3550 A.1: a jump of more than this many sequence numbers ahead is
/// not a loss but a restart (or garbage) until confirmed.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: packets this far behind are late or duplicates.
const MAX_MISORDER: u16 = 100;
/// The sequence number space, for the cycle count.
const SEQ_MOD: u64 = 1 << 16;

/// How a packet's sequence number relates to the stream so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqUpdate {
    /// In order or a small jump ahead; its extended number.
    InOrder(u64),
    /// Behind the highest seen (reordered or duplicated); its extended
    /// number in the current or the previous cycle.
    Late(u64),
    /// A large jump: the stream restarted here (the second packet in a row
    /// after such a jump confirms it); its extended number after the reset.
    Restarted(u64),
    /// A large jump not (yet) confirmed: dropped.
    Ignored,
}

/// The extended sequence number of a stream (RFC 3550 A.1), without the
/// probation of a new source: the first packet starts the stream.
#[derive(Debug, Clone)]
pub struct SeqCounter {
    max_seq: u16,
    /// Wraps of the 16-bit number, times 2^16.
    cycles: u64,
    base_seq: u16,
    /// The sequence number after a large jump, awaiting confirmation.
    bad_seq: Option<u16>,
}

impl SeqCounter {
    pub fn new(first: u16) -> SeqCounter {
        SeqCounter {
            max_seq: first,
            cycles: 0,
            base_seq: first,
            bad_seq: None,
        }
    }

    /// The extended highest sequence number received.
    pub fn highest(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// The first extended sequence number of the stream (since a restart).
    pub fn base(&self) -> u64 {
        u64::from(self.base_seq)
    }

    pub fn update(&mut self, seq: u16) -> SeqUpdate {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with permissible gap.
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
            self.bad_seq = None;
            SeqUpdate::InOrder(self.highest())
        } else if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: accept it only if the next packet follows
            // on (the sender restarted without changing SSRC).
            if self.bad_seq == Some(seq) {
                *self = SeqCounter::new(seq);
                SeqUpdate::Restarted(self.highest())
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                SeqUpdate::Ignored
            }
        } else {
            // Duplicate or reordered: it belongs to this cycle unless it is
            // numerically above the highest, then to the previous one.
            let ext = if seq > self.max_seq {
                (self.cycles + u64::from(seq)).saturating_sub(SEQ_MOD)
            } else {
                self.cycles + u64::from(seq)
            };
            SeqUpdate::Late(ext)
        }
    }
}

/// A receiver report's view of one source (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionReport {
    pub ssrc: u32,
    /// Lost since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Lost since the start, clamped to the field's 24 signed bits.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
}

/// Everything a receiver counts about one source (RFC 3550 A.3, A.8).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    seq: SeqCounter,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// RFC 3550 A.8: jitter scaled by 16, in timestamp units.
    jitter_q4: i64,
    transit: Option<i64>,
}

impl ReceiverStats {
    /// Starts counting at the first packet of `ssrc`.
    pub fn new(ssrc: u32, first_seq: u16) -> ReceiverStats {
        ReceiverStats {
            ssrc,
            seq: SeqCounter::new(first_seq),
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            transit: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Counts a packet. `arrival` is its arrival time in the source's
    /// timestamp units (any origin; only differences matter). Returns how
    /// its sequence number fits.
    pub fn packet(&mut self, seq: u16, rtp_ts: u32, arrival: u64) -> SeqUpdate {
        let update = self.seq.update(seq);
        match update {
            SeqUpdate::Ignored => return update,
            SeqUpdate::Restarted(_) => {
                self.received = 0;
                self.expected_prior = 0;
                self.received_prior = 0;
                self.transit = None;
            }
            SeqUpdate::InOrder(_) | SeqUpdate::Late(_) => {}
        }
        self.received += 1;
        // RFC 3550 A.8: J += (|D| - J) / 16, with D the change in transit
        // time; computed in the 32-bit timestamp space, so wraps cancel.
        let transit = i64::from((arrival as u32).wrapping_sub(rtp_ts) as i32);
        if let Some(prev) = self.transit {
            // RFC 3550 A.8's integer form, with J kept scaled by 16.
            let d = (transit - prev).abs();
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
        update
    }

    /// Packets expected since the start (RFC 3550 A.3).
    pub fn expected(&self) -> u64 {
        self.seq.highest() - self.seq.base() + 1
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Lost since the start (negative when duplicates outnumber losses).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// The report block for this source; starts a new reporting interval.
    pub fn report(&mut self) -> ReceptionReport {
        let expected = self.expected();
        let interval_expected = expected.saturating_sub(self.expected_prior);
        let interval_received = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let interval_lost = interval_expected.saturating_sub(interval_received);
        let fraction_lost = (interval_lost << 8)
            .checked_div(interval_expected)
            .map_or(0, |f| f.min(255) as u8);
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.seq.highest() as u32,
            jitter: self.jitter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        let mut s = SeqCounter::new(65_534);
        assert_eq!(s.update(65_535), SeqUpdate::InOrder(65_535));
        assert_eq!(s.update(0), SeqUpdate::InOrder(65_536));
        assert_eq!(s.update(1), SeqUpdate::InOrder(65_537));
        // A straggler from before the wrap is late, in the old cycle.
        assert_eq!(s.update(65_535), SeqUpdate::Late(65_535));
        assert_eq!(s.highest(), 65_537);
    }

    #[test]
    fn a_large_jump_is_a_restart_only_when_confirmed() {
        let mut s = SeqCounter::new(100);
        assert_eq!(s.update(101), SeqUpdate::InOrder(101));
        assert_eq!(s.update(40_000), SeqUpdate::Ignored);
        assert_eq!(s.update(102), SeqUpdate::InOrder(102));
        assert_eq!(s.update(40_000), SeqUpdate::Ignored);
        assert_eq!(s.update(40_001), SeqUpdate::Restarted(40_001));
        assert_eq!(s.update(40_002), SeqUpdate::InOrder(40_002));
    }

    #[test]
    fn loss_and_fraction_lost_per_interval() {
        let mut r = ReceiverStats::new(7, 0);
        // 0..100 with every tenth missing.
        for seq in (0u16..100).filter(|s| s % 10 != 5) {
            r.packet(seq, u32::from(seq) * 160, u64::from(seq) * 160);
        }
        assert_eq!(r.expected(), 100);
        assert_eq!(r.lost(), 10);
        let rep = r.report();
        assert_eq!(rep.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(rep.cumulative_lost, 10);
        assert_eq!(rep.highest_seq, 99);
        // Nothing lost in the next interval.
        for seq in 100u16..200 {
            r.packet(seq, u32::from(seq) * 160, u64::from(seq) * 160);
        }
        let rep = r.report();
        assert_eq!(rep.fraction_lost, 0);
        assert_eq!(rep.cumulative_lost, 10);
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_variation() {
        let mut r = ReceiverStats::new(1, 0);
        for seq in 0u16..50 {
            r.packet(seq, u32::from(seq) * 160, 1_000 + u64::from(seq) * 160);
        }
        assert_eq!(r.jitter(), 0);
        // Arrivals alternately 80 units early and late: |D| = 160 each
        // time, so J converges towards 160.
        for seq in 50u16..400 {
            let wobble: i64 = if seq % 2 == 0 { 80 } else { -80 };
            let arrival = (1_000 + i64::from(seq) * 160 + wobble) as u64;
            r.packet(seq, u32::from(seq) * 160, arrival);
        }
        assert!((150..=160).contains(&r.jitter()), "{}", r.jitter());
    }

    proptest! {
        /// Whatever the order and duplication, in-order packets extend the
        /// highest number monotonically and late ones land below it.
        #[test]
        fn extended_numbers_are_consistent(start in any::<u16>(), steps in proptest::collection::vec(0u16..200, 1..300)) {
            let mut s = SeqCounter::new(start);
            let mut real = u64::from(start);
            let mut highest = s.highest();
            for step in steps {
                // Walk forward by step-100: a mix of reordering and gaps.
                let next = (real as i64 + i64::from(step) - 100).max(0) as u64;
                real = real.max(next);
                match s.update(next as u16) {
                    SeqUpdate::InOrder(e) => {
                        prop_assert!(e >= highest);
                        prop_assert_eq!(e % SEQ_MOD, next % SEQ_MOD);
                        highest = e;
                    }
                    SeqUpdate::Late(e) => {
                        prop_assert!(e <= highest);
                        prop_assert_eq!(e % SEQ_MOD, next % SEQ_MOD);
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }
}
