//! G.711 μ-law and A-law (ITU-T G.711), written here.
//!
//! The encoders follow the ITU-T Software Tool Library's reference
//! (`g711.c`): the magnitude of a negative sample is its ones' complement
//! (so -1 encodes like 0, as negative zero), μ-law works on 14 bits with a
//! bias of 33, A-law on 13 bits with the even bits inverted. They are
//! checked against a plain transcription of that reference on all 65,536
//! inputs, and the decoders on all 256 codes. Decoding is a table lookup.

use crate::sip::sdp::G711;

/// The byte of silence (linear 0) in each law.
pub fn silence(law: G711) -> u8 {
    match law {
        G711::Pcmu => 0xFF,
        G711::Pcma => 0xD5,
    }
}

/// Linear 16-bit to μ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let positive = sample >= 0;
    let mag = if positive { sample } else { !sample };
    // 14-bit magnitude plus the bias of 33, clipped to 13 bits.
    let absno = ((mag >> 2) as u16 + 33).min(0x1FFF);
    // Segment 1..=8: one more than the bit length of absno >> 6.
    let segno = 16 - (absno >> 6).leading_zeros() as u16 + 1;
    let high = 8 - segno;
    let low = 0x0F - ((absno >> segno) & 0x0F);
    let code = ((high << 4) | low) as u8;
    if positive {
        code | 0x80
    } else {
        code
    }
}

/// Linear 16-bit to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let positive = sample >= 0;
    let mag = if positive { sample } else { !sample };
    let ix = (mag >> 4) as u16;
    let code = if ix > 15 {
        // Segment 1..=7 by bit length; the mantissa is the 4 bits below
        // the leading one.
        let iexp = 16 - ix.leading_zeros() as u16 - 4;
        ((ix >> (iexp - 1)) - 16) + (iexp << 4)
    } else {
        ix
    } as u8;
    let code = if positive { code | 0x80 } else { code };
    code ^ 0x55
}

const fn ulaw_expand(code: u8) -> i16 {
    let positive = code >= 0x80;
    let m = !code;
    let exponent = ((m >> 4) & 0x07) as i32;
    let mantissa = (m & 0x0F) as i32;
    let mag = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if positive { mag } else { -mag }) as i16
}

const fn alaw_expand(code: u8) -> i16 {
    let ix = (code ^ 0x55) & 0x7F;
    let iexp = (ix >> 4) as i32;
    let mut mant = (ix & 0x0F) as i32;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 8;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    (if code > 127 { mant } else { -mant }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_expand(i as u8)
        } else {
            ulaw_expand(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW: [i16; 256] = table(false);
static ALAW: [i16; 256] = table(true);

/// μ-law to linear 16-bit.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW[usize::from(code)]
}

/// A-law to linear 16-bit.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW[usize::from(code)]
}

/// Encodes `samples` in `law`, appending to `out`.
pub fn encode(law: G711, samples: &[i16], out: &mut Vec<u8>) {
    match law {
        G711::Pcmu => out.extend(samples.iter().map(|s| ulaw_encode(*s))),
        G711::Pcma => out.extend(samples.iter().map(|s| alaw_encode(*s))),
    }
}

/// Decodes `codes` in `law`, appending to `out`.
pub fn decode(law: G711, codes: &[u8], out: &mut Vec<i16>) {
    let t = match law {
        G711::Pcmu => &ULAW,
        G711::Pcma => &ALAW,
    };
    out.extend(codes.iter().map(|c| t[usize::from(*c)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ITU-T STL `ulaw_compress`, transcribed loop for loop.
    fn ref_ulaw_compress(lin: i16) -> u8 {
        let lin = i32::from(lin);
        let mut absno = if lin < 0 {
            ((!lin) >> 2) + 33
        } else {
            (lin >> 2) + 33
        };
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high_nibble = 0x0008 - segno;
        let low_nibble = 0x000F - ((absno >> segno) & 0x000F);
        let mut out = (high_nibble << 4) | low_nibble;
        if lin >= 0 {
            out |= 0x0080;
        }
        out as u8
    }

    /// ITU-T STL `alaw_compress`.
    fn ref_alaw_compress(lin: i16) -> u8 {
        let lin = i32::from(lin);
        let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
        if ix > 15 {
            let mut iexp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            ix -= 16;
            ix += iexp << 4;
        }
        if lin >= 0 {
            ix |= 0x0080;
        }
        (ix ^ 0x0055) as u8
    }

    /// ITU-T STL `ulaw_expand`.
    fn ref_ulaw_expand(code: u8) -> i16 {
        let code = i32::from(code);
        let sign = if code < 0x80 { -1 } else { 1 };
        let mantissa = !code;
        let exponent = (mantissa >> 4) & 0x07;
        let segment = exponent + 1;
        let mantissa = mantissa & 0x0F;
        let step = 4 << segment;
        (sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
    }

    /// ITU-T STL `alaw_expand`.
    fn ref_alaw_expand(code: u8) -> i16 {
        let code = i32::from(code);
        let ix = (code ^ 0x0055) & 0x007F;
        let iexp = ix >> 4;
        let mut mant = ix & 0x000F;
        if iexp > 0 {
            mant += 16;
        }
        mant = (mant << 4) + 0x0008;
        if iexp > 1 {
            mant <<= iexp - 1;
        }
        (if code > 127 { mant } else { -mant }) as i16
    }

    #[test]
    fn encoders_match_the_reference_on_every_input() {
        let mut wrong_u = 0;
        let mut wrong_a = 0;
        for s in i16::MIN..=i16::MAX {
            wrong_u += usize::from(ulaw_encode(s) != ref_ulaw_compress(s));
            wrong_a += usize::from(alaw_encode(s) != ref_alaw_compress(s));
        }
        assert_eq!((wrong_u, wrong_a), (0, 0));
    }

    #[test]
    fn decoders_match_the_reference_on_every_code() {
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode(c), ref_ulaw_expand(c), "ulaw {c:#04x}");
            assert_eq!(alaw_decode(c), ref_alaw_expand(c), "alaw {c:#04x}");
        }
    }

    #[test]
    fn known_points() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(silence(G711::Pcmu), ulaw_encode(0));
        assert_eq!(silence(G711::Pcma), alaw_encode(0));
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips_and_error_stays_within_the_step() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#04x}");
            let u = ulaw_encode(ulaw_decode(c));
            // 0x7F and 0xFF both decode to zero.
            assert!(u == c || ulaw_decode(c) == 0, "ulaw {c:#04x}");
        }
        for s in i16::MIN..=i16::MAX {
            let x = i32::from(s);
            let u = i32::from(ulaw_decode(ulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            assert!((u - x.clamp(-32124, 32124)).abs() <= 512, "ulaw {s} -> {u}");
            assert!((a - x).abs() <= 512, "alaw {s} -> {a}");
        }
        let mut out = Vec::new();
        encode(G711::Pcma, &[0, 1000, -1000], &mut out);
        let mut back = Vec::new();
        decode(G711::Pcma, &out, &mut back);
        assert_eq!(back.len(), 3);
        assert!((i32::from(back[1]) - 1000).abs() <= 32);
    }
}
