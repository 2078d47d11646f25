//! SIP: framing, messages, transactions, dialogs, registrar, SDP, transport.
pub mod dialog;
pub mod header;
pub mod message;
pub mod parse;
pub mod transport;
