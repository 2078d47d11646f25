//! RTP media: G.711, RFC 4733 telephone events, jitter buffer, prompts, recording, bridging.
