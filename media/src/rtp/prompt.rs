//! Prompts: audio played into calls, kept as 8 kHz 16-bit mono and played
//! in 20 ms frames.
//!
//! [`decode_wav`] takes any PCM or float WAV (8 to 32 bits, any rate, any
//! number of channels), mixes it down to mono and resamples it to 8 kHz
//! with `rubato`'s sinc resampler; an 8 kHz mono 16-bit file is taken as it
//! is. [`Player`] hands out frames, once or looped.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The sample rate of everything played into a call.
pub const RATE: u32 = 8000;
/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME: usize = 160;

/// Why a WAV file cannot be a prompt.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WavError {
    #[error("not a WAV file: {0}")]
    NotWav(#[source] hound::Error),
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
    #[error("the WAV file has no audio")]
    Empty,
    #[error("cannot resample: {0}")]
    Resample(String),
    #[error("cannot write WAV: {0}")]
    Write(#[source] hound::Error),
}

/// A prompt's samples: 8 kHz, 16-bit, mono; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(Arc<[i16]>);

impl Prompt {
    pub fn new(samples: Vec<i16>) -> Prompt {
        Prompt(samples.into())
    }

    pub fn samples(&self) -> &[i16] {
        &self.0
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.0.len() as u64 * 1_000_000 / u64::from(RATE))
    }

    /// A sine tone of `hz` at `amplitude` for `duration`.
    pub fn tone(hz: f32, amplitude: i16, duration: Duration) -> Prompt {
        let n = (duration.as_secs_f64() * f64::from(RATE)) as usize;
        let step = hz / RATE as f32 * std::f32::consts::TAU;
        Prompt::new(
            (0..n)
                .map(|i| ((i as f32 * step).sin() * f32::from(amplitude)) as i16)
                .collect(),
        )
    }

    /// Silence for `duration`.
    pub fn silence(duration: Duration) -> Prompt {
        Prompt::new(vec![0; (duration.as_secs_f64() * f64::from(RATE)) as usize])
    }

    /// This prompt followed by `other`.
    pub fn then(&self, other: &Prompt) -> Prompt {
        let mut v = self.0.to_vec();
        v.extend_from_slice(&other.0);
        Prompt::new(v)
    }
}

/// Reads a WAV file into a prompt (see the module docs for what is
/// accepted). A file cut short (a streamed WAV whose header could not be
/// finished) is read up to where its data ends.
pub fn decode_wav(reader: impl Read) -> Result<Prompt, WavError> {
    let mut wav = hound::WavReader::new(reader).map_err(WavError::NotWav)?;
    let spec = wav.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(WavError::Unsupported("zero channels".into()));
    }
    if spec.sample_rate < 4000 || spec.sample_rate > 192_000 {
        return Err(WavError::Unsupported(format!(
            "sample rate {} Hz (4000 to 192000 accepted)",
            spec.sample_rate
        )));
    }
    // Everything as f32 on the 16-bit scale.
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 8) => wav
            .samples::<i8>()
            .map_while(Result::ok)
            .map(|s| f32::from(s) * 256.0)
            .collect(),
        (hound::SampleFormat::Int, 16) => {
            let raw: Vec<i16> = wav.samples::<i16>().map_while(Result::ok).collect();
            if channels == 1 && spec.sample_rate == RATE {
                if raw.is_empty() {
                    return Err(WavError::Empty);
                }
                return Ok(Prompt::new(raw));
            }
            raw.into_iter().map(f32::from).collect()
        }
        (hound::SampleFormat::Int, bits @ (24 | 32)) => {
            let scale = 2f32.powi(i32::from(bits) - 16);
            wav.samples::<i32>()
                .map_while(Result::ok)
                .map(|s| s as f32 / scale)
                .collect()
        }
        (hound::SampleFormat::Float, 32) => wav
            .samples::<f32>()
            .map_while(Result::ok)
            .map(|s| s * 32767.0)
            .collect(),
        (format, bits) => {
            return Err(WavError::Unsupported(format!(
                "{bits}-bit {} samples",
                match format {
                    hound::SampleFormat::Int => "integer",
                    hound::SampleFormat::Float => "float",
                }
            )))
        }
    };
    let mono: Vec<f32> = samples
        .chunks_exact(channels)
        .map(|c| c.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(WavError::Empty);
    }
    let out = resample(&mono, spec.sample_rate, RATE)?;
    Ok(Prompt::new(
        out.into_iter()
            .map(|s| s.round().clamp(-32768.0, 32767.0) as i16)
            .collect(),
    ))
}

/// Resamples mono audio from `from` Hz to `to` Hz (sinc interpolation,
/// anti-aliased below the lower Nyquist frequency).
pub fn resample(mono: &[f32], from: u32, to: u32) -> Result<Vec<f32>, WavError> {
    if from == to || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    let params = SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: Some(0.92),
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: 128,
        window: WindowFunction::BlackmanHarris2,
    };
    let ratio = f64::from(to) / f64::from(from);
    let mut r = Async::<f32>::new_sinc(ratio, 1.0, &params, 1024, 1, FixedAsync::Input)
        .map_err(|e| WavError::Resample(e.to_string()))?;
    let input = InterleavedSlice::new(mono, 1, mono.len())
        .map_err(|e| WavError::Resample(e.to_string()))?;
    let out = r
        .process_all(&input, mono.len(), None)
        .map_err(|e| WavError::Resample(e.to_string()))?;
    Ok(out.take_data())
}

/// Writes samples as an 8 kHz 16-bit mono WAV.
pub fn encode_wav(samples: &[i16]) -> Result<Vec<u8>, WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).map_err(WavError::Write)?;
    for &s in samples {
        w.write_sample(s).map_err(WavError::Write)?;
    }
    w.finalize().map_err(WavError::Write)?;
    Ok(cursor.into_inner())
}

/// Plays a prompt in 20 ms frames.
#[derive(Debug, Clone)]
pub struct Player {
    prompt: Prompt,
    pos: usize,
    looped: bool,
}

impl Player {
    pub fn new(prompt: Prompt, looped: bool) -> Player {
        Player {
            prompt,
            pos: 0,
            looped,
        }
    }

    /// Fills `frame` with the next 20 ms (silence after the end); false
    /// once a prompt played once has ended (nothing was written).
    pub fn next_frame(&mut self, frame: &mut [i16; FRAME]) -> bool {
        let s = self.prompt.samples();
        if s.is_empty() || (!self.looped && self.pos >= s.len()) {
            return false;
        }
        let mut filled = 0;
        while filled < FRAME {
            if self.pos >= s.len() {
                if !self.looped {
                    break;
                }
                self.pos = 0;
            }
            let n = (FRAME - filled).min(s.len() - self.pos);
            frame[filled..filled + n].copy_from_slice(&s[self.pos..self.pos + n]);
            filled += n;
            self.pos += n;
        }
        frame[filled..].fill(0);
        true
    }

    /// Whether a prompt played once has no frame left.
    pub fn finished(&self) -> bool {
        !self.looped && self.pos >= self.prompt.samples().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(
        spec: hound::WavSpec,
        write: impl Fn(&mut hound::WavWriter<&mut std::io::Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut c = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut c, spec).unwrap_or_else(|e| panic!("{e}"));
            write(&mut w);
            w.finalize().unwrap_or_else(|e| panic!("{e}"));
        }
        c.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    /// Zero crossings per second of a signal at 8 kHz: 2 × its frequency.
    fn crossings(s: &[i16]) -> usize {
        s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn an_8khz_mono_file_is_taken_as_it_is() {
        let bytes = wav(spec(1, 8000, 16, hound::SampleFormat::Int), |w| {
            for i in 0..800i16 {
                let _ = w.write_sample(i * 7);
            }
        });
        let p = decode_wav(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.samples().len(), 800);
        assert_eq!(p.samples()[799], 799 * 7);
        assert_eq!(p.duration(), Duration::from_millis(100));
    }

    #[test]
    fn stereo_44k1_is_mixed_down_and_resampled_keeping_pitch_and_length() {
        let rate = 44_100u32;
        let bytes = wav(spec(2, rate, 16, hound::SampleFormat::Int), |w| {
            for i in 0..rate {
                let s = ((i as f32 / rate as f32) * 440.0 * std::f32::consts::TAU).sin() * 8000.0;
                let _ = w.write_sample(s as i16);
                let _ = w.write_sample(s as i16);
            }
        });
        let p = decode_wav(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            (p.samples().len() as i64 - 8000).abs() <= 2,
            "{}",
            p.samples().len()
        );
        let c = crossings(&p.samples()[400..7600]);
        // 440 Hz over 0.9 s: 792 crossings.
        assert!((788..=796).contains(&c), "{c}");
        let peak = p
            .samples()
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((7500..=8500).contains(&peak), "{peak}");
    }

    #[test]
    fn float_and_24_bit_files_are_read() {
        let f = wav(spec(1, 16_000, 32, hound::SampleFormat::Float), |w| {
            for i in 0..16_000 {
                let _ = w.write_sample(
                    ((i as f32 / 16_000.0) * 1000.0 * std::f32::consts::TAU).sin() * 0.5,
                );
            }
        });
        let p = decode_wav(&f[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!((p.samples().len() as i64 - 8000).abs() <= 2);
        let c = crossings(&p.samples()[400..7600]);
        assert!((1795..=1805).contains(&c), "{c}");
        let i24 = wav(spec(1, 8000, 24, hound::SampleFormat::Int), |w| {
            for _ in 0..10 {
                let _ = w.write_sample(1i32 << 20);
            }
        });
        let p = decode_wav(&i24[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.samples(), [4096; 10]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(matches!(
            decode_wav(&b"RIFF1234WAVEjunk"[..]),
            Err(WavError::NotWav(_))
        ));
        assert!(matches!(
            decode_wav(&b"hello"[..]),
            Err(WavError::NotWav(_))
        ));
        let empty = wav(spec(1, 8000, 16, hound::SampleFormat::Int), |_| {});
        assert!(matches!(decode_wav(&empty[..]), Err(WavError::Empty)));
        let low = wav(spec(1, 2000, 16, hound::SampleFormat::Int), |w| {
            let _ = w.write_sample(1i16);
        });
        let e = decode_wav(&low[..])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("2000 Hz"), "{e}");
    }

    #[test]
    fn a_streamed_wav_with_a_bogus_length_is_read_to_its_end() {
        let mut bytes = wav(spec(1, 8000, 16, hound::SampleFormat::Int), |w| {
            for _ in 0..320 {
                let _ = w.write_sample(100i16);
            }
        });
        // What espeak-ng writes to a pipe: RIFF and data lengths unknown.
        bytes[4..8].copy_from_slice(&0x7FFF_F000u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0x7FFF_F000u32.to_le_bytes());
        let p = decode_wav(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.samples().len(), 320);
    }

    #[test]
    fn encode_then_decode_is_lossless() {
        let s: Vec<i16> = (0..500)
            .map(|i| (i * 131 % 65_536 - 32_768) as i16)
            .collect();
        let bytes = encode_wav(&s).unwrap_or_else(|e| panic!("{e}"));
        let p = decode_wav(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.samples(), &s[..]);
    }

    #[test]
    fn the_player_frames_once_or_in_a_loop() {
        let p = Prompt::new((1..=400).collect());
        let mut once = Player::new(p.clone(), false);
        let mut f = [0i16; FRAME];
        assert!(once.next_frame(&mut f));
        assert_eq!(f[0], 1);
        assert!(once.next_frame(&mut f));
        assert!(once.next_frame(&mut f));
        assert_eq!(f[79], 400);
        assert_eq!(f[80], 0, "the last frame is padded with silence");
        assert!(once.finished());
        assert!(!once.next_frame(&mut f));
        let mut looped = Player::new(p, true);
        for _ in 0..2 {
            looped.next_frame(&mut f);
        }
        looped.next_frame(&mut f);
        // 320..400 then wraps to 1..
        assert_eq!(f[79], 400);
        assert_eq!(f[80], 1);
        assert!(!looped.finished());
    }

    #[test]
    fn tones_and_silence() {
        let t = Prompt::tone(400.0, 6000, Duration::from_millis(500));
        assert_eq!(t.samples().len(), 4000);
        assert!((398..=402).contains(&crossings(t.samples())));
        let s = Prompt::silence(Duration::from_millis(20));
        assert_eq!(t.then(&s).samples().len(), 4160);
    }
}
