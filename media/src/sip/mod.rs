//! SIP: framing, messages, transactions, dialogs, registrar, SDP, transport.
