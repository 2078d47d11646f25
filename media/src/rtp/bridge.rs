//! Bridging two legs: each RTP packet from one leg becomes a packet on the
//! other leg's stream, sans-IO.
//!
//! The payload type is mapped to what the receiving leg negotiated (SDP
//! numbers are per leg), μ-law and A-law are transcoded by table when the
//! legs differ, RFC 4733 telephone-events pass through with the receiving
//! leg's event type, and SSRC, sequence number and timestamp are rewritten
//! onto the receiving leg's [`RtpSender`]. Anything else (comfort noise,
//! codecs not negotiated, malformed packets) is dropped with a reason.

use super::g711;
use super::stream::{RtpSender, HEADER_LEN};
use crate::sip::sdp::G711;
use std::sync::OnceLock;
use thiserror::Error;

/// How a leg negotiated its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegFormat {
    pub codec: G711,
    /// The audio payload type, as this leg's SDP numbered it.
    pub pt: u8,
    /// The telephone-event payload type, if this leg has one.
    pub dtmf_pt: Option<u8>,
}

impl LegFormat {
    pub fn new(codec: G711, pt: u8, dtmf_pt: Option<u8>) -> LegFormat {
        LegFormat { codec, pt, dtmf_pt }
    }
}

/// A relayed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Audio; how many samples it carries.
    Audio { samples: usize },
    /// A telephone-event packet.
    Dtmf,
}

/// Why a packet was not relayed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Dropped {
    #[error("not an RTP packet")]
    NotRtp,
    #[error("payload type {0} was not negotiated")]
    UnknownPayloadType(u8),
    #[error("the other leg has no telephone-event")]
    NoDtmf,
}

/// μ-law → A-law and A-law → μ-law through linear, one table each.
fn tables() -> &'static ([u8; 256], [u8; 256]) {
    static T: OnceLock<([u8; 256], [u8; 256])> = OnceLock::new();
    T.get_or_init(|| {
        let mut u2a = [0u8; 256];
        let mut a2u = [0u8; 256];
        for c in 0..=255u8 {
            u2a[usize::from(c)] = g711::alaw_encode(g711::ulaw_decode(c));
            a2u[usize::from(c)] = g711::ulaw_encode(g711::alaw_decode(c));
        }
        (u2a, a2u)
    })
}

/// The parts of a received RTP header the relay needs.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    /// Where the payload starts (after CSRCs and extension).
    pub payload_at: usize,
    /// Where the payload ends (before padding).
    pub payload_end: usize,
}

/// Reads an RTP header with `rtp-rs`.
pub fn parse(packet: &[u8]) -> Result<Header, Dropped> {
    let r = rtp_rs::RtpReader::new(packet).map_err(|_| Dropped::NotRtp)?;
    let payload = r.payload();
    let payload_at = r.payload_offset();
    Ok(Header {
        pt: r.payload_type(),
        marker: r.mark(),
        seq: u16::from(r.sequence_number()),
        ts: r.timestamp(),
        ssrc: r.ssrc(),
        payload_at,
        payload_end: payload_at + payload.len(),
    })
}

/// Relays one packet received on a leg negotiated as `from` to a leg
/// negotiated as `to`, whose stream is `sender`; the packet to send is
/// written into `out`.
pub fn relay(
    packet: &[u8],
    from: &LegFormat,
    to: &LegFormat,
    sender: &mut RtpSender,
    out: &mut Vec<u8>,
) -> Result<Relayed, Dropped> {
    let h = parse(packet)?;
    let payload = &packet[h.payload_at..h.payload_end];
    let src = (h.ssrc, h.seq, h.ts);
    if h.pt == from.pt {
        sender.relay(out, to.pt, src, h.marker, payload.len() as u32);
        out.reserve(payload.len());
        if from.codec == to.codec {
            out.extend_from_slice(payload);
        } else {
            let (u2a, a2u) = tables();
            let t = if from.codec == G711::Pcmu { u2a } else { a2u };
            out.extend(payload.iter().map(|&c| t[usize::from(c)]));
        }
        Ok(Relayed::Audio {
            samples: payload.len(),
        })
    } else if Some(h.pt) == from.dtmf_pt {
        let pt = to.dtmf_pt.ok_or(Dropped::NoDtmf)?;
        sender.relay(out, pt, src, h.marker, 0);
        out.extend_from_slice(payload);
        Ok(Relayed::Dtmf)
    } else {
        Err(Dropped::UnknownPayloadType(h.pt))
    }
}

/// Which leg of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

/// Two legs relayed both ways, for a shell that owns both.
#[derive(Debug, Clone)]
pub struct Bridge {
    a: LegFormat,
    b: LegFormat,
    to_a: RtpSender,
    to_b: RtpSender,
    relayed: u64,
    dropped: u64,
}

impl Bridge {
    /// `to_a` and `to_b` are the streams each leg receives from us.
    pub fn new(a: LegFormat, b: LegFormat, to_a: RtpSender, to_b: RtpSender) -> Bridge {
        Bridge {
            a,
            b,
            to_a,
            to_b,
            relayed: 0,
            dropped: 0,
        }
    }

    /// A packet that arrived on leg `from`; `out` is what to send on the
    /// other leg.
    pub fn relay(
        &mut self,
        from: Side,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Relayed, Dropped> {
        let r = match from {
            Side::A => relay(packet, &self.a, &self.b, &mut self.to_b, out),
            Side::B => relay(packet, &self.b, &self.a, &mut self.to_a, out),
        };
        match r {
            Ok(_) => self.relayed += 1,
            Err(_) => self.dropped += 1,
        }
        r
    }

    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The stream towards `side`, to play our own audio on it.
    pub fn sender(&mut self, side: Side) -> &mut RtpSender {
        match side {
            Side::A => &mut self.to_a,
            Side::B => &mut self.to_b,
        }
    }
}

/// The fixed header length, re-exported for shells sizing buffers.
pub const RTP_HEADER_LEN: usize = HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::stream::write_header;
    use proptest::prelude::*;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        write_header(&mut b, pt, false, seq, ts, ssrc);
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn same_law_is_copied_with_the_receiving_legs_numbers() {
        let a = LegFormat::new(G711::Pcma, 8, Some(101));
        let b = LegFormat::new(G711::Pcma, 8, Some(96));
        let mut br = Bridge::new(
            a,
            b,
            RtpSender::new(0xA, 0, 0),
            RtpSender::new(0xB, 500, 9000),
        );
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let r = br.relay(Side::A, &packet(8, 7, 1234, 0x77, &payload), &mut out);
        assert_eq!(r, Ok(Relayed::Audio { samples: 160 }));
        let h = parse(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.pt, h.seq, h.ts, h.ssrc), (8, 500, 9000, 0xB));
        assert_eq!(&out[h.payload_at..], &payload[..]);
        // DTMF takes leg B's event type.
        let ev = [1u8, 0x0A, 0, 160];
        assert_eq!(
            br.relay(Side::A, &packet(101, 8, 1394, 0x77, &ev), &mut out),
            Ok(Relayed::Dtmf)
        );
        let h = parse(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((h.pt, h.seq), (96, 501));
        assert_eq!(&out[h.payload_at..], &ev);
    }

    #[test]
    fn different_laws_are_transcoded() {
        let a = LegFormat::new(G711::Pcmu, 0, None);
        let b = LegFormat::new(G711::Pcma, 8, None);
        let mut br = Bridge::new(a, b, RtpSender::new(1, 0, 0), RtpSender::new(2, 0, 0));
        let speech: Vec<i16> = (0..160)
            .map(|i| ((i as f32 * 0.3).sin() * 9000.0) as i16)
            .collect();
        let mut mu = Vec::new();
        g711::encode(G711::Pcmu, &speech, &mut mu);
        let mut out = Vec::new();
        br.relay(Side::A, &packet(0, 1, 0, 9, &mu), &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        let h = parse(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.pt, 8);
        let mut back = Vec::new();
        g711::decode(G711::Pcma, &out[h.payload_at..], &mut back);
        for (x, y) in speech.iter().zip(&back) {
            // Two companding steps: within a few percent of the level.
            assert!(
                (i32::from(*x) - i32::from(*y)).abs() <= i32::from(x.unsigned_abs() / 16) + 16,
                "{x} {y}"
            );
        }
        // And back the other way, A to μ.
        let mut out2 = Vec::new();
        br.relay(
            Side::B,
            &packet(8, 1, 0, 3, &out[h.payload_at..]),
            &mut out2,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&out2).map(|h| h.pt), Ok(0));
    }

    #[test]
    fn what_was_not_negotiated_is_dropped_with_a_reason() {
        let a = LegFormat::new(G711::Pcmu, 0, Some(101));
        let b = LegFormat::new(G711::Pcmu, 0, None);
        let mut br = Bridge::new(a, b, RtpSender::new(1, 0, 0), RtpSender::new(2, 0, 0));
        let mut out = Vec::new();
        assert_eq!(
            br.relay(Side::A, &packet(13, 1, 0, 9, &[0]), &mut out),
            Err(Dropped::UnknownPayloadType(13))
        );
        assert_eq!(
            br.relay(Side::A, &packet(101, 2, 0, 9, &[1, 0, 0, 0]), &mut out),
            Err(Dropped::NoDtmf)
        );
        assert_eq!(
            br.relay(Side::A, &[0x80, 0], &mut out),
            Err(Dropped::NotRtp)
        );
        assert_eq!(br.dropped(), 3);
        assert_eq!(br.relayed(), 0);
    }

    proptest! {
        /// Nothing on the wire makes the bridge panic, and whatever it
        /// relays is a well-formed packet on the receiving leg's stream.
        #[test]
        fn any_bytes_are_relayed_or_dropped(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let a = LegFormat::new(G711::Pcmu, 0, Some(101));
            let b = LegFormat::new(G711::Pcma, 8, Some(100));
            let mut br = Bridge::new(a, b, RtpSender::new(1, 0, 0), RtpSender::new(2, 0, 0));
            let mut out = Vec::new();
            if br.relay(Side::A, &bytes, &mut out).is_ok() {
                let h = parse(&out);
                prop_assert!(h.is_ok());
                if let Ok(h) = h {
                    prop_assert_eq!(h.ssrc, 2);
                    prop_assert!(h.pt == 8 || h.pt == 100);
                }
            }
        }
    }
}
