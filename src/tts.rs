//! Text to speech with espeak-ng (run as a process), resampled to 8 kHz.

use anyhow::{bail, Context, Result};
use std::io::Cursor;
use std::process::Command;

/// Speaks `text` with `voice` (`en-us`, `cmn`, `yue`…) into 8 kHz 16-bit
/// mono samples.
pub fn speak(text: &str, voice: &str) -> Result<Vec<i16>> {
    let out = Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .output()
        .context("cannot run espeak-ng")?;
    if !out.status.success() {
        bail!(
            "espeak-ng failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut reader =
        hound::WavReader::new(Cursor::new(out.stdout)).context("espeak-ng output is not WAV")?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        bail!("espeak-ng output is not 16-bit PCM");
    }
    let ch = usize::from(spec.channels.max(1));
    // On stdout espeak-ng cannot seek back to fill in the data length, so
    // the header claims ~2 GiB: read samples until the stream ends.
    let raw: Vec<i16> = reader.samples::<i16>().map_while(Result::ok).collect();
    if raw.is_empty() {
        bail!("espeak-ng produced no audio");
    }
    let mono: Vec<f32> = raw
        .chunks(ch)
        .map(|c| c.iter().map(|&s| f32::from(s)).sum::<f32>() / ch as f32)
        .collect();
    Ok(resample(&mono, spec.sample_rate, 8000))
}

/// Windowed-sinc resampling (Hann window, cut-off below the lower Nyquist
/// frequency), enough for speech prompts.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<i16> {
    if from == to {
        return input
            .iter()
            .map(|&s| s.clamp(-32768.0, 32767.0) as i16)
            .collect();
    }
    let ratio = f64::from(to) / f64::from(from);
    let cutoff = ratio.min(1.0) * 0.9;
    let half = 16i64;
    let n_out = (input.len() as f64 * ratio) as usize;
    (0..n_out)
        .map(|i| {
            let center = i as f64 / ratio;
            let c = center.floor() as i64;
            let mut acc = 0.0;
            for k in (c - half)..=(c + half) {
                if k < 0 || k as usize >= input.len() {
                    continue;
                }
                let x = center - k as f64;
                let sinc = if x.abs() < 1e-9 {
                    1.0
                } else {
                    (std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
                };
                let w = 0.5 + 0.5 * (std::f64::consts::PI * x / (half as f64 + 1.0)).cos();
                acc += f64::from(input[k as usize]) * sinc * w;
            }
            (acc.clamp(-32768.0, 32767.0)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn espeak_ng_speech_arrives_whole_at_8_khz() {
        // espeak-ng's streamed WAV header claims a bogus length; the
        // samples must still all be read.
        let s = speak("one two three four five", "en-us").unwrap_or_else(|e| {
            panic!("{e:#} (espeak-ng is needed: run .ci/run or apt-get install espeak-ng)")
        });
        let secs = s.len() as f32 / 8000.0;
        assert!((1.0..6.0).contains(&secs), "{secs} s of speech");
        let loud = s.iter().filter(|x| x.unsigned_abs() > 2000).count();
        assert!(loud > 800, "speech too quiet: {loud} loud samples");
    }

    #[test]
    fn resampling_keeps_frequency_and_duration() {
        let from = 22_050;
        let tone: Vec<f32> = (0..from)
            .map(|i| ((i as f32 / from as f32) * 440.0 * std::f32::consts::TAU).sin() * 10_000.0)
            .collect();
        let out = resample(&tone, from, 8000);
        assert!((out.len() as i64 - 8000).abs() <= 1);
        let crossings = out.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((878..=882).contains(&crossings), "{crossings}");
    }
}
