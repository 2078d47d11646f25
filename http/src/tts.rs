//! Text to speech for TTS prompts, so that a prompt can be heard before
//! it is reviewed. [`EspeakNg`] runs espeak-ng as a process; the node may
//! plug in another engine through [`Speaker`].

use std::process::Command;
use switchboard_media::rtp::prompt::{decode_wav, Prompt};

/// Why speech could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TtsError {
    /// The engine refused the text or voice (the client can fix it).
    #[error("{0}")]
    Refused(String),
    /// The engine cannot be run (the server must be fixed).
    #[error("{0}")]
    Unavailable(String),
}

/// A TTS engine: text and voice in, 8 kHz mono audio out. Called off the
/// async runtime (it may block).
pub trait Speaker: Send + Sync + std::fmt::Debug {
    fn speak(&self, text: &str, voice: &str) -> Result<Prompt, TtsError>;
}

/// espeak-ng (`-v cmn`, `yue`, `en-us`…); its 22,050 Hz output is
/// resampled to 8 kHz.
#[derive(Debug, Clone, Default)]
pub struct EspeakNg;

impl Speaker for EspeakNg {
    fn speak(&self, text: &str, voice: &str) -> Result<Prompt, TtsError> {
        let out = Command::new("espeak-ng")
            .args(["-v", voice, "--stdout", "--", text])
            .output()
            .map_err(|e| {
                TtsError::Unavailable(format!(
                    "cannot run espeak-ng ({e}); install it (apt-get install espeak-ng)"
                ))
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || out.stdout.is_empty() {
            return Err(TtsError::Refused(format!(
                "espeak-ng cannot speak this with voice {voice:?}: {}",
                stderr.trim()
            )));
        }
        decode_wav(&out.stdout[..])
            .map_err(|e| TtsError::Unavailable(format!("espeak-ng output is not audio: {e}")))
    }
}
