//! Text to speech with espeak-ng, run as a process; its 22,050 Hz WAV is
//! made an 8 kHz prompt by media's WAV reader (rubato resampling).

use anyhow::{bail, Context, Result};
use std::process::Command;
use switchboard_media::rtp::prompt::{decode_wav, Prompt};

/// Speaks `text` with `voice` (`en-us`, `cmn`, `yue`…) into an 8 kHz
/// prompt.
pub fn speak(text: &str, voice: &str) -> Result<Prompt> {
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
    // On a pipe espeak-ng cannot seek back to fill in the data length, so
    // the header claims ~2 GiB: the reader takes samples until the end.
    decode_wav(&out.stdout[..]).context("espeak-ng output is not usable audio")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn espeak_ng_speech_arrives_whole_at_8_khz() {
        let p = speak("one two three four five", "en-us").unwrap_or_else(|e| {
            panic!("{e:#} (espeak-ng is needed: run .ci/run or apt-get install espeak-ng)")
        });
        let secs = p.duration().as_secs_f32();
        assert!((1.0..6.0).contains(&secs), "{secs} s of speech");
        let loud = p
            .samples()
            .iter()
            .filter(|x| x.unsigned_abs() > 2000)
            .count();
        assert!(loud > 800, "speech too quiet: {loud} loud samples");
    }

    #[test]
    fn mandarin_is_spoken_too() {
        let p = speak("欢迎致电", "cmn").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(p.duration() > std::time::Duration::from_millis(500));
    }
}
