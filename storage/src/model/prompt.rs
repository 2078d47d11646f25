//! The prompt library (自定义语音库) and its review (审核).

use super::{config_record, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

/// Where a prompt's audio comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PromptSource {
    /// Text spoken by the TTS engine with `voice` (e.g. `cmn`).
    Tts { text: String, voice: String },
    /// An uploaded WAV file.
    Wav {
        /// Where the audio is kept (a path in the data directory or an
        /// object key).
        file: String,
        /// Its SHA-256, hex, to tell versions apart.
        sha256: String,
        duration_ms: u32,
    },
}

/// Where a prompt is in its review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Pending,
    Approved,
    Rejected,
}

/// The review of a prompt; only approved prompts may be used in a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub status: ReviewStatus,
    pub reviewer: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    pub at: Option<Timestamp>,
}

impl Review {
    pub fn pending() -> Review {
        Review {
            status: ReviewStatus::Pending,
            reviewer: None,
            reason: None,
            at: None,
        }
    }
}

/// A prompt of the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    pub source: PromptSource,
    pub review: Review,
    pub created: Timestamp,
}
config_record!(Prompt, Prompt, id);
