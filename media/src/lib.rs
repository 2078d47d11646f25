//! Switchboard's telephony edge: SIP framing and validation in front of
//! `rsip`-typed URIs, typed headers, dialogs, and the UDP/TCP transport.
pub mod sip;
