//! Switchboard's telephony edge: SIP framing and validation in front of
//! `rsip`-typed URIs, transactions, dialogs, registrar, SDP and the UDP/TCP
//! transport; RTP media with G.711, RFC 4733, prompts, recording and bridging.
pub mod rtp;
pub mod sip;
