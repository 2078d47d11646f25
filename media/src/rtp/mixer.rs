//! A mixer of several 8 kHz audio sources into one 20 ms frame at a time:
//! what a leg sends when it hears more than one other party (a
//! supervisor listening to both sides, an agent hearing the customer and
//! a whispering supervisor, a barge-in or a three-way call).
//!
//! Each source has its own queue. A source is mixed in once it has
//! [`CUSHION`] buffered (so packet jitter does not chop it), and goes back
//! to buffering when it runs dry; a queue never holds more than
//! [`MAX_DELAY`] (the oldest audio is dropped), so a source that sends
//! faster than we mix cannot build up delay. Samples add with
//! saturation.

use std::collections::BTreeMap;
use std::collections::VecDeque;

/// Samples in one frame (20 ms at 8 kHz).
pub const FRAME: usize = 160;
/// Buffered before a source is mixed in: two frames.
pub const CUSHION: usize = 2 * FRAME;
/// The most a source's queue holds: six frames (120 ms).
pub const MAX_DELAY: usize = 6 * FRAME;

#[derive(Debug, Default)]
struct Source {
    queue: VecDeque<i16>,
    playing: bool,
}

/// The mixer; sources are named by any `u64` the caller picks.
#[derive(Debug, Default)]
pub struct Mixer {
    sources: BTreeMap<u64, Source>,
}

impl Mixer {
    pub fn new() -> Mixer {
        Mixer::default()
    }

    /// Audio from `source`.
    pub fn push(&mut self, source: u64, pcm: &[i16]) {
        let s = self.sources.entry(source).or_default();
        s.queue.extend(pcm.iter().copied());
        let over = s.queue.len().saturating_sub(MAX_DELAY);
        s.queue.drain(..over);
    }

    /// Forgets `source` and what it had queued.
    pub fn remove(&mut self, source: u64) {
        self.sources.remove(&source);
    }

    pub fn clear(&mut self) {
        self.sources.clear();
    }

    /// The sources known.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The next frame: every source ready, summed. Whether any source
    /// was in it (false: `out` is silence).
    pub fn mix(&mut self, out: &mut [i16; FRAME]) -> bool {
        let mut acc = [0i32; FRAME];
        let mut any = false;
        for s in self.sources.values_mut() {
            if !s.playing && s.queue.len() >= CUSHION {
                s.playing = true;
            }
            if !s.playing {
                continue;
            }
            if s.queue.is_empty() {
                s.playing = false;
                continue;
            }
            any = true;
            for (a, x) in acc
                .iter_mut()
                .zip(s.queue.drain(..FRAME.min(s.queue.len())))
            {
                *a += i32::from(x);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(x: i16) -> Vec<i16> {
        vec![x; FRAME]
    }

    #[test]
    fn sums_sources_once_each_has_its_cushion() {
        let mut m = Mixer::new();
        let mut out = [0i16; FRAME];
        m.push(1, &frame(100));
        assert!(!m.mix(&mut out), "one frame is not yet a cushion");
        m.push(1, &frame(100));
        m.push(2, &frame(-30));
        m.push(2, &frame(-30));
        assert!(m.mix(&mut out));
        assert_eq!(out, [70; FRAME]);
        assert!(m.mix(&mut out));
        assert_eq!(out, [70; FRAME]);
        // Both ran dry: silence, and buffering again.
        assert!(!m.mix(&mut out));
        assert_eq!(out, [0; FRAME]);
        m.push(1, &frame(5));
        assert!(!m.mix(&mut out));
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let mut m = Mixer::new();
        let mut out = [0i16; FRAME];
        for s in [1, 2] {
            m.push(s, &vec![30_000; CUSHION]);
        }
        m.mix(&mut out);
        assert_eq!(out[0], i16::MAX);
        for s in [3, 4] {
            m.push(s, &vec![-30_000; CUSHION]);
        }
        m.remove(1);
        m.remove(2);
        m.mix(&mut out);
        assert_eq!(out[0], i16::MIN);
    }

    #[test]
    fn a_fast_source_cannot_build_up_delay() {
        let mut m = Mixer::new();
        for i in 0..20 {
            m.push(7, &frame(i));
        }
        let mut out = [0i16; FRAME];
        m.mix(&mut out);
        // The newest six frames were kept: 14..=19.
        assert_eq!(out[0], 14);
    }

    proptest! {
        /// Whatever arrives, nothing is mixed twice and the delay stays
        /// bounded: mixing one source gives back its samples in order
        /// (bar what the bound dropped).
        #[test]
        fn one_source_comes_out_in_order(chunks in proptest::collection::vec(1usize..400, 1..40)) {
            let mut m = Mixer::new();
            let mut next = 0i16;
            let mut got = Vec::new();
            let mut out = [0i16; FRAME];
            for n in chunks {
                let pcm: Vec<i16> = (0..n).map(|_| { next = next.wrapping_add(1) % 30_000; next }).collect();
                m.push(1, &pcm);
                prop_assert!(m.sources[&1].queue.len() <= MAX_DELAY);
                if m.mix(&mut out) {
                    got.extend(out.iter().copied().filter(|&x| x != 0));
                }
            }
            prop_assert!(got.windows(2).all(|w| w[0] < w[1] || w[1] < 100), "out of order: {:?}", got);
        }
    }
}
