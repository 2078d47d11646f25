//! SIP: framing, messages, transactions, dialogs, registrar, SDP, transport.
pub mod dialog;
pub mod digest;
pub mod header;
pub mod message;
pub mod parse;
pub mod registrar;
pub mod sdp;
pub mod transaction;
pub mod transport;
