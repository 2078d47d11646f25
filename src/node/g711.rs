//! G.711 encoders (ITU-T G.711 §2/§3), for the prompts this node sends.

/// Linear 16-bit to μ-law: bias 0x84 on the 14-bit magnitude, then the
/// segment (exponent) and 4 mantissa bits, all inverted.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let mag = (if s < 0 { -s } else { s }).min(CLIP) + BIAS;
    let exp = (7 - (mag >> 7).leading_zeros().saturating_sub(24).min(7)) as i32;
    let exp = exp.clamp(0, 7);
    let mant = (mag >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mant) as u8)
}

/// Linear 16-bit to A-law: 13-bit magnitude, segment and mantissa, even
/// bits inverted (XOR 0x55).
pub fn alaw_encode(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3;
    let (sign, mag) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let mag = mag.min(0x0FFF);
    let code = if mag < 32 {
        mag >> 1
    } else {
        let seg = 31 - (mag as u32).leading_zeros() as i32 - 4;
        (seg << 4) | ((mag >> seg) & 0x0F)
    };
    ((sign | code) ^ 0x55) as u8
}

/// μ-law to linear 16-bit (the tests' reference for the encoder).
#[cfg(test)]
pub fn ulaw_decode(code: u8) -> i16 {
    let c = !code;
    let exp = i32::from((c >> 4) & 0x07);
    let mant = i32::from(c & 0x0F);
    let mag = (((mant << 3) + 0x84) << exp) - 0x84;
    (if c & 0x80 != 0 { -mag } else { mag }) as i16
}

/// A-law to linear 16-bit (the tests' reference for the encoder).
#[cfg(test)]
pub fn alaw_decode(code: u8) -> i16 {
    let c = code ^ 0x55;
    let seg = i32::from((c >> 4) & 0x07);
    let mant = i32::from(c & 0x0F);
    let mag = if seg == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (seg - 1)
    };
    (if c & 0x80 != 0 { mag } else { -mag }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#x}");
            let u = ulaw_encode(ulaw_decode(c));
            // 0x7F and 0xFF are both zero (negative and positive).
            assert!(
                u == c || (ulaw_decode(c) == 0 && ulaw_decode(u) == 0),
                "ulaw {c:#x}"
            );
        }
    }

    #[test]
    fn encoding_error_is_bounded_by_the_segment_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let s32 = i32::from(s);
            let ua = i32::from(ulaw_decode(ulaw_encode(s)));
            let aa = i32::from(alaw_decode(alaw_encode(s)));
            // Largest step is 1024 (μ) / 1024 (A) at the top segment.
            assert!(
                (ua - s32.clamp(-32124, 32124)).abs() <= 1024,
                "ulaw {s} -> {ua}"
            );
            assert!((aa - s32).abs() <= 1024, "alaw {s} -> {aa}");
        }
    }
}
