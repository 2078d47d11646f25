//! Switchboard's telephony edge.
pub mod rtp;
pub mod sip;
