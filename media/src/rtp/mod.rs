//! RTP media: codecs, telephone-events, jitter buffering, RTCP statistics,
//! prompts, recording and bridging. Every part is sans-IO except the socket
//! shell, which owns the UDP pair of one leg.
pub mod bridge;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod prompt;
pub mod recorder;
pub mod rtcp;
pub mod stats;
pub mod stream;
