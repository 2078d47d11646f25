//! SIP transactions (RFC 3261 §17, with RFC 6026's Accepted states), sans-IO.
//!
//! Four machines, one per §17 figure: [`ClientInvite`], [`ClientNonInvite`],
//! [`ServerInvite`], [`ServerNonInvite`]. Each is a plain struct created
//! with its request, fed with `handle_request`/`handle_response`,
//! `send_response` (the TU's answers), `handle_timeout(now)` and
//! `handle_transport_error(now)`, and drained with `poll_transmit()`
//! (the exact bytes to send, never re-serialised for a retransmission),
//! `poll_event()` (what the TU must know) and `poll_timeout()` (the earliest
//! armed timer of its [`timer::Timers`] table). None of them reads the
//! clock or draws a random number.
//!
//! [`TransactionLayer`] keeps every live transaction in maps keyed by the
//! §17.1.3/§17.2.3 matching rules ([`TransactionKey`]) and answers for the
//! layer-level rules of RFC 3261: CANCEL matching (§9.2), merged-request
//! and loop detection (§8.2.2.2), stray responses (§18.1.2) and stray ACKs.
//! It is driven like this:
//!
//! 1. Every message the transport delivers goes to
//!    [`TransactionLayer::handle_incoming`] with its source address and
//!    transport. The returned [`Incoming`] says what it was: a new request
//!    for the TU (with the [`TransactionId`] to answer it with), something
//!    the layer absorbed or answered itself, a response matched to a client
//!    transaction, an ACK for a 2xx (for the dialog layer), a CANCEL of a
//!    pending INVITE, or something dropped.
//! 2. The TU answers a request with [`TransactionLayer::respond`], and
//!    starts client transactions with [`TransactionLayer::send_request`]
//!    (the request complete, top Via with a fresh branch from
//!    [`new_branch`]). It sends the ACK of a 2xx itself with
//!    [`TransactionLayer::send_ack`] (§13.2.2.4).
//! 3. After every call the owner drains [`TransactionLayer::poll_transmit`]
//!    (an [`Outbound`]: destination, transport, bytes) into the transport
//!    and [`TransactionLayer::poll_event`] into the TU, then sleeps until
//!    [`TransactionLayer::poll_timeout`] and calls
//!    [`TransactionLayer::handle_timeout`].
//!
//! Responses of server transactions go back to the address the request
//! came from (symmetric response, RFC 3581); the transport stamps
//! `received`/`rport` into the top Via on arrival
//! (`sip::transport::stamp_via`). Terminated transactions are removed.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use switchboard_media::sip::message::{Message, Method};
//! use switchboard_media::sip::parse::{parse_datagram, Limits, Parsed};
//! use switchboard_media::sip::transaction::{
//!     Incoming, TimerConfig, TransactionEvent, TransactionLayer,
//! };
//! use switchboard_media::sip::transport::Transport;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut layer = TransactionLayer::new(TimerConfig::default());
//! let datagram = "OPTIONS sip:node@192.0.2.9 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
//!     Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1928301774\r\n\
//!     To: <sip:node@192.0.2.9>\r\nCall-ID: a84b4c76e66710\r\n\
//!     CSeq: 314159 OPTIONS\r\nContent-Length: 0\r\n\r\n";
//! let Parsed::Message(message) = parse_datagram(datagram.as_bytes(), &Limits::default())? else {
//!     return Ok(());
//! };
//! let source = "192.0.2.1:5060".parse()?;
//! let mut now = Instant::now();
//! if let Incoming::Request { id, request } =
//!     layer.handle_incoming(message, source, Transport::Udp, now)
//! {
//!     assert_eq!(request.method, Method::Options);
//!     let mut ok = switchboard_media::sip::message::Response::to(&request, 200, "OK");
//!     ok.headers.set("To", "<sip:node@192.0.2.9>;tag=n1");
//!     layer.respond(id, &ok, now)?;
//! }
//! let out = layer.poll_transmit().expect("the 200");
//! assert_eq!(out.dest, source);
//! assert!(out.bytes.starts_with(b"SIP/2.0 200 OK\r\n"));
//! // Timer J keeps the transaction for retransmissions, then it ends.
//! while let Some(at) = layer.poll_timeout() {
//!     now = at;
//!     layer.handle_timeout(now);
//! }
//! assert!(matches!(layer.poll_event(), Some((_, TransactionEvent::Terminated))));
//! assert!(layer.is_empty());
//! # Ok(())
//! # }
//! ```

pub mod client_invite;
pub mod client_non_invite;
pub mod server_invite;
pub mod server_non_invite;
pub mod timer;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timer::{Timer, TimerConfig};

use super::header::{CSeq, Via};
use super::message::{reason_phrase, Headers, Message, Method, Request, Response};
use super::transport::Transport;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::SocketAddr;
use std::time::Instant;
use thiserror::Error;

/// RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A message a machine asks to be sent: the exact bytes, so a
/// retransmission is the same message (§17.1.1.2, §17.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The serialised message; clones share the buffer.
    pub bytes: Bytes,
}

/// What a transaction tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionEvent {
    /// Client: a response for the TU: every provisional, the first final
    /// response, and in RFC 6026 Accepted every further 2xx.
    Response(Response),
    /// Server: a retransmission of the request was absorbed (the last
    /// response, if any, was queued again).
    RequestRetransmitted,
    /// Server INVITE in Accepted: an ACK matched the transaction; it is the
    /// TU's (RFC 6026 §7.1), not consumed.
    AckFor2xx,
    /// Timer B, F or H fired: the peer never answered (or never ACKed).
    Timeout(Timer),
    /// The transport reported a failure to send.
    TransportError,
    /// The transaction is over and sends nothing more.
    Terminated,
}

/// Why the layer or a machine refused an input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TransactionError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("bad {header} header: {reason}")]
    BadHeader {
        header: &'static str,
        reason: String,
    },
    /// §8.1.1.7: requests this node sends carry an RFC 3261 branch.
    #[error("top Via branch {0:?} lacks the RFC 3261 magic cookie z9hG4bK")]
    NoMagicCookie(String),
    #[error("status code {0} is not in 100-699")]
    InvalidStatus(u16),
    #[error("a final response was already sent")]
    FinalResponseSent,
    #[error("the transaction has terminated")]
    Terminated,
    #[error("no live transaction {0}")]
    UnknownTransaction(TransactionId),
    #[error("transaction {0} is not a server transaction")]
    NotServer(TransactionId),
    #[error("a transaction with the same key is live")]
    Duplicate,
    /// §17.1.1.3: the ACK of a non-2xx belongs to the INVITE transaction,
    /// the ACK of a 2xx to no transaction: use `send_ack`.
    #[error("ACK is not sent in a transaction of its own")]
    AckIsNotATransaction,
    #[error("expected an ACK, got {0}")]
    NotAck(Method),
}

/// A FIFO that holds its first two items inline: a machine rarely has
/// more than two outputs pending, so most never allocate a queue.
#[derive(Debug)]
struct Queue<T> {
    // Invariant: `second` is set only if `first` is, `more` used only if
    // `second` is set.
    first: Option<T>,
    second: Option<T>,
    more: VecDeque<T>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            first: None,
            second: None,
            more: VecDeque::new(),
        }
    }
}

impl<T> Queue<T> {
    fn push(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else if self.second.is_none() {
            self.second = Some(item);
        } else {
            self.more.push_back(item);
        }
    }

    fn pop(&mut self) -> Option<T> {
        let item = self.first.take()?;
        self.first = self.second.take();
        self.second = self.more.pop_front();
        Some(item)
    }
}

/// Output queues shared by the four machines.
#[derive(Debug, Default)]
struct Outputs {
    transmits: Queue<Bytes>,
    events: Queue<TransactionEvent>,
}

impl Outputs {
    fn transmit(&mut self, bytes: Bytes) {
        self.transmits.push(bytes);
    }

    fn event(&mut self, event: TransactionEvent) {
        self.events.push(event);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop().map(|bytes| Transmit { bytes })
    }

    fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop()
    }
}

// ---------------------------------------------------------------------------
// Reading the headers the matching rules need, without allocating.

/// Splits the first element off a comma-separated header value (commas
/// inside quoted strings do not count).
fn first_element(value: &str) -> &str {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return value[..i].trim(),
            _ => {}
        }
    }
    value.trim()
}

/// The top Via value: the first element of the first Via line.
pub fn top_via_value(headers: &Headers) -> Option<&str> {
    headers.get("Via").map(first_element)
}

/// The parameters part of a name-addr/addr-spec value (From, To): after
/// the `>` of `<URI>`, or from the first `;` of a bare URI.
fn name_addr_params(value: &str) -> &str {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => {
                return value[i..].find('>').map_or("", |gt| &value[i + gt + 1..]);
            }
            b';' if !quoted => return &value[i..],
            _ => {}
        }
    }
    ""
}

/// The value of parameter `name` in `;a=b;c` text (quoted values may hold
/// semicolons).
fn param_value<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    let bytes = params.as_bytes();
    for i in 0..=bytes.len() {
        let b = bytes.get(i).copied();
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            Some(b'\\') if quoted => escaped = true,
            Some(b'"') => quoted = !quoted,
            Some(b';') | None if !quoted => {
                let part = &params[start..i];
                start = i + 1;
                if let Some((n, v)) = part.split_once('=') {
                    if n.trim().eq_ignore_ascii_case(name) {
                        return Some(v.trim().trim_matches('"'));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The `tag` of a From or To value.
pub fn tag_of(value: &str) -> Option<&str> {
    param_value(name_addr_params(value), "tag").filter(|t| !t.is_empty())
}

fn header<'a>(headers: &'a Headers, name: &'static str) -> Result<&'a str, TransactionError> {
    headers
        .get(name)
        .ok_or(TransactionError::MissingHeader(name))
}

fn cseq_of(headers: &Headers) -> Result<CSeq, TransactionError> {
    CSeq::parse(header(headers, "CSeq")?).map_err(|e| TransactionError::BadHeader {
        header: "CSeq",
        reason: e.0,
    })
}

/// What the matching rules read from the top Via.
#[derive(Debug, Clone, Copy)]
struct TopVia<'a> {
    branch: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
}

impl TopVia<'_> {
    /// §8.1.1.7: the magic cookie (case-sensitive) marks RFC 3261 branches.
    fn rfc3261_branch(&self) -> Option<&str> {
        self.branch.filter(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The sent-by, host lower-cased, `host[:port]`.
    fn sent_by(&self) -> String {
        let mut s = String::with_capacity(self.host.len() + 6);
        s.push_str(self.host);
        s.make_ascii_lowercase();
        if let Some(port) = self.port {
            use std::fmt::Write as _;
            let _ = write!(s, ":{port}");
        }
        s
    }
}

/// Reads the top Via of the common shape `SIP/2.0/T host[:port];params`
/// without allocating; `None` sends anything else (extra whitespace,
/// lower-case protocol, …) to [`Via::parse`].
fn scan_top_via(value: &str) -> Option<TopVia<'_>> {
    let rest = value.strip_prefix("SIP/2.0/")?;
    let sp = rest.find(' ')?;
    if !super::header::is_token(&rest[..sp]) {
        return None;
    }
    let rest = &rest[sp + 1..];
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if sent_by.is_empty() || sent_by.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let (host, port) = match sent_by.strip_prefix('[') {
        Some(v6) => {
            let end = v6.find(']')?;
            (&sent_by[..end + 2], &v6[end + 1..])
        }
        None => match sent_by.find(':') {
            Some(i) => (&sent_by[..i], &sent_by[i..]),
            None => (sent_by, ""),
        },
    };
    let port = match port.strip_prefix(':') {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None if port.is_empty() => None,
        None => return None,
    };
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
    {
        return None;
    }
    Some(TopVia {
        branch: param_value(params, "branch"),
        host,
        port,
    })
}

/// Runs `f` on the top Via: scanned in place when it has the common
/// shape, parsed by [`Via::parse`] otherwise.
fn with_top_via<R>(
    headers: &Headers,
    f: impl FnOnce(TopVia<'_>) -> R,
) -> Result<R, TransactionError> {
    let value = top_via_value(headers).ok_or(TransactionError::MissingHeader("Via"))?;
    if let Some(v) = scan_top_via(value) {
        return Ok(f(v));
    }
    let via = Via::parse(value).map_err(|e| TransactionError::BadHeader {
        header: "Via",
        reason: e.0,
    })?;
    Ok(f(TopVia {
        branch: via.branch(),
        host: &via.host,
        port: via.port,
    }))
}

// ---------------------------------------------------------------------------
// Keys.

/// What identifies a transaction: the matching rules of RFC 3261 §17.1.3
/// (client) and §17.2.3 (server).
///
/// Branches compare case-insensitively (RFC 3261 §7.3.1: parameter values
/// are case-insensitive unless stated otherwise), so keys hold them
/// lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionKey {
    /// §17.1.3: the top-Via branch of the request and its CSeq method.
    Client { branch: String, method: Method },
    /// §17.2.3 for requests whose branch has the magic cookie: branch,
    /// sent-by and method, with ACK counted as INVITE. A CANCEL is a
    /// transaction of its own with the INVITE's branch.
    Server {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// §17.2.3 for RFC 2543 requests (no magic cookie).
    Rfc2543(Box<Rfc2543Key>),
}

/// The RFC 2543 matching fields (§17.2.3): Request-URI, To tag, From tag,
/// Call-ID, CSeq and top Via. An ACK is looked up with the INVITE's method
/// and its To tag is checked against the tag of the response the
/// transaction sent (see [`TransactionLayer::handle_incoming`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rfc2543Key {
    /// The Request-URI as received.
    pub request_uri: String,
    /// The To tag of the request (none on an initial INVITE).
    pub to_tag: Option<String>,
    pub from_tag: Option<String>,
    pub call_id: String,
    /// The CSeq number; the method is `method`.
    pub cseq: u32,
    /// The request's method, INVITE for an ACK.
    pub method: Method,
    /// The top Via value as received.
    pub top_via: String,
}

impl TransactionKey {
    /// The key of a request this node sends (§17.1.3). The branch must
    /// carry the magic cookie (§8.1.1.7).
    pub fn for_client_request(request: &Request) -> Result<TransactionKey, TransactionError> {
        let branch = with_top_via(&request.headers, |v| match v.rfc3261_branch() {
            Some(b) => Ok(b.to_ascii_lowercase()),
            None => Err(TransactionError::NoMagicCookie(
                v.branch.unwrap_or("").to_owned(),
            )),
        })??;
        Ok(TransactionKey::Client {
            branch,
            method: request.method.clone(),
        })
    }

    /// The client transaction a response belongs to (§17.1.3): top-Via
    /// branch and CSeq method.
    pub fn for_response(response: &Response) -> Result<TransactionKey, TransactionError> {
        let branch = with_top_via(&response.headers, |v| match v.rfc3261_branch() {
            Some(b) => Ok(b.to_ascii_lowercase()),
            None => Err(TransactionError::NoMagicCookie(
                v.branch.unwrap_or("").to_owned(),
            )),
        })??;
        Ok(TransactionKey::Client {
            branch,
            method: cseq_of(&response.headers)?.method,
        })
    }

    /// The server transaction a received request belongs to (§17.2.3); an
    /// ACK maps to its INVITE.
    pub fn for_server_request(request: &Request) -> Result<TransactionKey, TransactionError> {
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Self::for_server_request_as(request, method)
    }

    /// As [`Self::for_server_request`] with `method` in place of the
    /// request's: §9.2 looks up the INVITE a CANCEL cancels this way.
    pub fn for_server_request_as(
        request: &Request,
        method: Method,
    ) -> Result<TransactionKey, TransactionError> {
        let h = &request.headers;
        let rfc3261 = with_top_via(h, |v| {
            v.rfc3261_branch()
                .map(|b| (b.to_ascii_lowercase(), v.sent_by()))
        })?;
        if let Some((branch, sent_by)) = rfc3261 {
            return Ok(TransactionKey::Server {
                branch,
                sent_by,
                method,
            });
        }
        Ok(TransactionKey::Rfc2543(Box::new(Rfc2543Key {
            request_uri: request.uri.clone(),
            to_tag: tag_of(header(h, "To")?).map(str::to_owned),
            from_tag: tag_of(header(h, "From")?).map(str::to_owned),
            call_id: header(h, "Call-ID")?.to_owned(),
            cseq: cseq_of(h)?.seq,
            method,
            top_via: top_via_value(h).unwrap_or("").to_owned(),
        })))
    }

    /// The same key for another method (CANCEL → the INVITE it cancels).
    pub fn with_method(&self, method: Method) -> TransactionKey {
        match self {
            TransactionKey::Client { branch, .. } => TransactionKey::Client {
                branch: branch.clone(),
                method,
            },
            TransactionKey::Server {
                branch, sent_by, ..
            } => TransactionKey::Server {
                branch: branch.clone(),
                sent_by: sent_by.clone(),
                method,
            },
            TransactionKey::Rfc2543(k) => TransactionKey::Rfc2543(Box::new(Rfc2543Key {
                method,
                ..(**k).clone()
            })),
        }
    }

    /// The method the key matches (INVITE for an ACK's key).
    pub fn method(&self) -> &Method {
        match self {
            TransactionKey::Client { method, .. } | TransactionKey::Server { method, .. } => method,
            TransactionKey::Rfc2543(k) => &k.method,
        }
    }
}

/// §8.2.2.2: what a request without To tag shares with a merged copy of
/// itself (From tag, Call-ID, CSeq number and method), hashed with the
/// layer's keyed hasher. The index holds only these hashes: two different
/// requests would have to collide on a keyed 64-bit hash to be mistaken
/// for a loop.
fn merge_hash(hasher: &RandomState, request: &Request) -> Option<u64> {
    let h = &request.headers;
    let cseq = CSeq::parse(h.get("CSeq")?).ok()?;
    let from_tag = tag_of(h.get("From")?).unwrap_or("");
    let call_id = h.get("Call-ID")?;
    Some(hasher.hash_one((from_tag, call_id, cseq.seq, cseq.method.as_str())))
}

// ---------------------------------------------------------------------------
// Helpers for the TU.

/// A branch id for a new client transaction (§8.1.1.7): the magic cookie
/// and `nonce` in hex. The caller supplies the nonce, a counter or a
/// random `u64`; two live transactions of this node must not share one.
pub fn new_branch(nonce: u64) -> String {
    format!("{MAGIC_COOKIE}{nonce:016x}")
}

/// The CANCEL of a pending INVITE (RFC 3261 §9.1): same Request-URI,
/// Call-ID, From, To, CSeq number and Route, and a single Via equal to the
/// INVITE's top Via, so its branch matches the INVITE's server transaction.
pub fn cancel_for(invite: &Request) -> Request {
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    if let Some(via) = top_via_value(&invite.headers) {
        cancel.headers.push("Via", via);
    }
    cancel.headers.push("Max-Forwards", "70");
    for route in invite.headers.get_all("Route") {
        cancel.headers.push("Route", route);
    }
    for name in ["From", "To", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            cancel.headers.push(name, v);
        }
    }
    let seq = invite
        .headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or("1");
    cancel.headers.push("CSeq", format!("{seq} CANCEL"));
    cancel
}

/// A response the layer sends on its own (200 to CANCEL, 481, 482). A
/// response above 100 carries a To tag (§8.2.6.2): `tag`, or one derived
/// from the request so that a retransmitted request would get the same.
fn layer_response(request: &Request, code: u16, tag: Option<&str>) -> Response {
    let mut response = Response::to(request, code, reason_phrase(code));
    if let Some(to) = request.headers.get("To") {
        if tag_of(to).is_none() {
            let tag = match tag {
                Some(t) => t.to_owned(),
                None => {
                    let mut h = std::hash::DefaultHasher::new();
                    request.headers.get("Call-ID").hash(&mut h);
                    request.headers.get("From").hash(&mut h);
                    top_via_value(&request.headers).hash(&mut h);
                    format!("{:016x}", h.finish())
                }
            };
            response.headers.set("To", format!("{to};tag={tag}"));
        }
    }
    response
}

// ---------------------------------------------------------------------------
// The layer.

/// Names a transaction of a [`TransactionLayer`]: a slab index and the
/// slot's generation, which changes when the slot is freed, so an old id
/// does not reach the slot's next transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId {
    index: u32,
    generation: u32,
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}.{}", self.index, self.generation)
    }
}

/// One of the four machines.
#[derive(Debug)]
pub enum Transaction {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Transaction {
    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Transaction::ClientInvite(m) => m.poll_transmit(),
            Transaction::ClientNonInvite(m) => m.poll_transmit(),
            Transaction::ServerInvite(m) => m.poll_transmit(),
            Transaction::ServerNonInvite(m) => m.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<TransactionEvent> {
        match self {
            Transaction::ClientInvite(m) => m.poll_event(),
            Transaction::ClientNonInvite(m) => m.poll_event(),
            Transaction::ServerInvite(m) => m.poll_event(),
            Transaction::ServerNonInvite(m) => m.poll_event(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Transaction::ClientInvite(m) => m.poll_timeout(),
            Transaction::ClientNonInvite(m) => m.poll_timeout(),
            Transaction::ServerInvite(m) => m.poll_timeout(),
            Transaction::ServerNonInvite(m) => m.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Transaction::ClientInvite(m) => m.handle_timeout(now),
            Transaction::ClientNonInvite(m) => m.handle_timeout(now),
            Transaction::ServerInvite(m) => m.handle_timeout(now),
            Transaction::ServerNonInvite(m) => m.handle_timeout(now),
        }
    }

    fn handle_transport_error(&mut self, now: Instant) {
        match self {
            Transaction::ClientInvite(m) => m.handle_transport_error(now),
            Transaction::ClientNonInvite(m) => m.handle_transport_error(now),
            Transaction::ServerInvite(m) => m.handle_transport_error(now),
            Transaction::ServerNonInvite(m) => m.handle_transport_error(now),
        }
    }

    /// Whether the machine has reached Terminated.
    pub fn is_terminated(&self) -> bool {
        match self {
            Transaction::ClientInvite(m) => m.is_terminated(),
            Transaction::ClientNonInvite(m) => m.is_terminated(),
            Transaction::ServerInvite(m) => m.is_terminated(),
            Transaction::ServerNonInvite(m) => m.is_terminated(),
        }
    }
}

/// A message the layer wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The peer: the request's source for server transactions, the
    /// caller's destination for client transactions.
    pub dest: SocketAddr,
    /// The transport the transaction uses (the request's, for a server
    /// transaction).
    pub transport: Transport,
    /// Shared with the machine that keeps it for retransmission.
    pub bytes: Bytes,
}

/// What an incoming message was, as [`TransactionLayer::handle_incoming`]
/// sees it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A new request. The layer created server transaction `id` (Trying or
    /// Proceeding); the TU answers with [`TransactionLayer::respond`].
    Request { id: TransactionId, request: Request },
    /// A retransmitted request or the ACK of a non-2xx final response,
    /// absorbed by transaction `id` (which may have queued its last
    /// response again).
    Absorbed { id: TransactionId },
    /// A response matched client transaction `id`; what the TU must see of
    /// it comes out of [`TransactionLayer::poll_event`].
    Response { id: TransactionId },
    /// A response that matches no client transaction: dropped (§18.1.2, as RFC
    /// 6026 updates it for user agents).
    StrayResponse { code: u16 },
    /// An ACK for a 2xx, for the dialog layer (§13.3.1.4). `invite` is the
    /// INVITE server transaction in RFC 6026 Accepted it matched by the
    /// §17.2.3 rules, when it reused the INVITE's branch (an ACK for a 2xx
    /// normally has a branch of its own and matches none).
    Ack {
        request: Request,
        invite: Option<TransactionId>,
    },
    /// An ACK without To tag that matches no transaction: no dialog can
    /// want it; dropped.
    StrayAck,
    /// A CANCEL of INVITE `invite`, still pending: the layer answered the
    /// CANCEL 200 on server transaction `cancel` (§9.2); the TU should now
    /// answer the INVITE 487 (Request Terminated).
    Cancel {
        invite: TransactionId,
        cancel: TransactionId,
        request: Request,
    },
    /// The layer answered the request itself on server transaction `id`:
    /// 200 to a CANCEL whose INVITE already has its final response, 481 to
    /// a CANCEL that matches no INVITE (§9.2), 482 to a merged or looped
    /// request (§8.2.2.2).
    Answered { id: TransactionId, code: u16 },
    /// A message whose transaction cannot be determined (no Via, a CSeq
    /// beyond 2^32-1): a request (not an ACK) was answered 400 without a
    /// transaction; anything else was dropped.
    Malformed { reason: TransactionError },
}

#[derive(Debug)]
struct Entry {
    key: TransactionKey,
    machine: Transaction,
    peer: SocketAddr,
    transport: Transport,
    /// The deadline currently queued in the layer's wake-up heap.
    deadline: Option<Instant>,
    /// This transaction's entry in the merged-request index.
    merge: Option<u64>,
    /// Server INVITE: the To tag of its responses, for the CANCEL's 200
    /// (§9.2: the same tag) and RFC 2543 ACK matching (§17.2.3).
    to_tag: Option<String>,
}

/// A slab slot; `generation` tells a live id from a stale one.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

fn slot(entries: &[Slot], id: TransactionId) -> Option<&Entry> {
    entries
        .get(id.index as usize)
        .filter(|s| s.generation == id.generation)
        .and_then(|s| s.entry.as_ref())
}

fn slot_mut(entries: &mut [Slot], id: TransactionId) -> Option<&mut Entry> {
    entries
        .get_mut(id.index as usize)
        .filter(|s| s.generation == id.generation)
        .and_then(|s| s.entry.as_mut())
}

/// All transactions of a node, multiplexed: see the module documentation.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    /// Live transactions in a slab, indexed by [`TransactionId`].
    entries: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// Ordered maps rather than hash maps: a hash map grows by moving all
    /// its entries at once (with 62,000 transactions live, one call's
    /// messages waited up to 19 ms for it in `benches/sip_transactions`);
    /// a B-tree grows a node at a time.
    by_key: BTreeMap<TransactionKey, TransactionId>,
    /// §8.2.2.2: server transactions of requests without To tag, by
    /// [`merge_hash`].
    merged: BTreeMap<u64, TransactionId>,
    merge_hasher: RandomState,
    /// Deadlines by transaction; stale pairs are skipped when popped.
    wakeups: timer::Wakeups<TransactionId>,
    outbound: VecDeque<Outbound>,
    events: VecDeque<(TransactionId, TransactionEvent)>,
}

impl TransactionLayer {
    /// An empty layer whose machines use `config` (see
    /// [`TimerConfig::sanitized`]).
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config: config.sanitized(),
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_key: BTreeMap::new(),
            merged: BTreeMap::new(),
            merge_hasher: RandomState::new(),
            wakeups: timer::Wakeups::default(),
            outbound: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The timer values every machine of this layer uses.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// A live transaction's machine, for inspection.
    pub fn get(&self, id: TransactionId) -> Option<&Transaction> {
        slot(&self.entries, id).map(|e| &e.machine)
    }

    /// A live transaction's matching key.
    pub fn key(&self, id: TransactionId) -> Option<&TransactionKey> {
        slot(&self.entries, id).map(|e| &e.key)
    }

    /// The live transaction with this key.
    pub fn find(&self, key: &TransactionKey) -> Option<TransactionId> {
        self.by_key.get(key).copied()
    }

    /// Where a live transaction's messages go.
    pub fn peer(&self, id: TransactionId) -> Option<(SocketAddr, Transport)> {
        slot(&self.entries, id).map(|e| (e.peer, e.transport))
    }

    /// Feeds one message from the transport.
    pub fn handle_incoming(
        &mut self,
        message: Message,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Incoming {
        match message {
            Message::Response(r) => self.incoming_response(r, now),
            Message::Request(r) => self.incoming_request(r, source, transport, now),
        }
    }

    fn incoming_response(&mut self, response: Response, now: Instant) -> Incoming {
        let code = response.code;
        let Some(id) = TransactionKey::for_response(&response)
            .ok()
            .and_then(|k| self.by_key.get(&k).copied())
        else {
            // RFC 3261 18.1.2 as updated by RFC 6026: a UA drops a response
            // that matches no transaction.
            return Incoming::StrayResponse { code };
        };
        match slot_mut(&mut self.entries, id).map(|e| &mut e.machine) {
            Some(Transaction::ClientInvite(m)) => m.handle_response(response, now),
            Some(Transaction::ClientNonInvite(m)) => m.handle_response(response, now),
            _ => return Incoming::StrayResponse { code },
        }
        self.drain(id, now);
        Incoming::Response { id }
    }

    fn incoming_request(
        &mut self,
        request: Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Incoming {
        let key = match TransactionKey::for_server_request(&request) {
            Ok(k) => k,
            Err(reason) => {
                if request.method != Method::Ack && request.headers.get("Via").is_some() {
                    let resp = Response::to(&request, 400, reason_phrase(400));
                    self.outbound.push_back(Outbound {
                        dest: source,
                        transport,
                        bytes: Bytes::from(resp.to_bytes()),
                    });
                }
                return Incoming::Malformed { reason };
            }
        };
        match request.method {
            Method::Ack => self.incoming_ack(request, key, now),
            Method::Cancel => self.incoming_cancel(request, key, source, transport, now),
            _ => {
                if let Some(&id) = self.by_key.get(&key) {
                    self.with_server(id, |m| m.handle_request(&request, now));
                    self.drain(id, now);
                    return Incoming::Absorbed { id };
                }
                let merge = match request.headers.get("To").and_then(tag_of) {
                    Some(_) => None,
                    None => merge_hash(&self.merge_hasher, &request),
                };
                // RFC 3261 8.2.2.2: same From tag, Call-ID and CSeq as a live
                // transaction, yet another transaction: merged or looped.
                if merge.is_some_and(|m| self.merged.contains_key(&m)) {
                    let id = self.create_server(&request, key, source, transport, None, now);
                    self.answer(id, &layer_response(&request, 482, None), now);
                    return Incoming::Answered { id, code: 482 };
                }
                let id = self.create_server(&request, key, source, transport, merge, now);
                Incoming::Request { id, request }
            }
        }
    }

    fn incoming_ack(&mut self, request: Request, key: TransactionKey, now: Instant) -> Incoming {
        let ack_tag = request.headers.get("To").and_then(tag_of);
        let mut found = self.by_key.get(&key).copied();
        if found.is_none() {
            // RFC 3261 17.2.3 (RFC 2543 peers): the INVITE had no To tag,
            // the ACK carries the tag of the response it acknowledges.
            if let TransactionKey::Rfc2543(k) = &key {
                if k.to_tag.is_some() {
                    let invite_key = TransactionKey::Rfc2543(Box::new(Rfc2543Key {
                        to_tag: None,
                        ..(**k).clone()
                    }));
                    found = self.by_key.get(&invite_key).copied().filter(|id| {
                        slot(&self.entries, *id).and_then(|e| e.to_tag.as_deref()) == ack_tag
                    });
                }
            }
        }
        if let Some(id) = found {
            // Which state the ACK met: Accepted passes it on (RFC 6026 §7.1),
            // Completed and Confirmed absorb it (§17.2.1).
            let (accepted, absorbed) = match slot_mut(&mut self.entries, id).map(|e| &mut e.machine)
            {
                Some(Transaction::ServerInvite(m)) => {
                    let met = (
                        matches!(m.state(), ServerInviteState::Accepted),
                        matches!(
                            m.state(),
                            ServerInviteState::Completed { .. }
                                | ServerInviteState::Confirmed { .. }
                        ),
                    );
                    m.handle_request(&request, now);
                    met
                }
                _ => (false, false),
            };
            self.drain(id, now);
            if accepted {
                return Incoming::Ack {
                    request,
                    invite: Some(id),
                };
            }
            if absorbed {
                return Incoming::Absorbed { id };
            }
        }
        if ack_tag.is_some() {
            Incoming::Ack {
                request,
                invite: None,
            }
        } else {
            Incoming::StrayAck
        }
    }

    fn incoming_cancel(
        &mut self,
        request: Request,
        key: TransactionKey,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Incoming {
        if let Some(&id) = self.by_key.get(&key) {
            self.with_server(id, |m| m.handle_request(&request, now));
            self.drain(id, now);
            return Incoming::Absorbed { id };
        }
        // RFC 3261 9.2: the INVITE is found by the CANCEL's own matching
        // fields with the method taken as INVITE.
        let invite = self
            .by_key
            .get(&key.with_method(Method::Invite))
            .copied()
            .and_then(|id| match slot(&self.entries, id) {
                Some(Entry {
                    machine: Transaction::ServerInvite(m),
                    to_tag,
                    ..
                }) => Some((id, m.is_proceeding(), to_tag.clone())),
                _ => None,
            });
        let cancel = self.create_server(&request, key, source, transport, None, now);
        match invite {
            None => {
                self.answer(cancel, &layer_response(&request, 481, None), now);
                Incoming::Answered {
                    id: cancel,
                    code: 481,
                }
            }
            Some((invite, pending, tag)) => {
                // §9.2: the CANCEL's 200 carries the INVITE responses' tag.
                let ok = layer_response(&request, 200, tag.as_deref());
                self.answer(cancel, &ok, now);
                if pending {
                    Incoming::Cancel {
                        invite,
                        cancel,
                        request,
                    }
                } else {
                    Incoming::Answered {
                        id: cancel,
                        code: 200,
                    }
                }
            }
        }
    }

    /// Sends the TU's response on server transaction `id`.
    pub fn respond(
        &mut self,
        id: TransactionId,
        response: &Response,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let entry =
            slot_mut(&mut self.entries, id).ok_or(TransactionError::UnknownTransaction(id))?;
        match &mut entry.machine {
            Transaction::ServerInvite(m) => {
                m.send_response(response, now)?;
                if response.code > 100 {
                    if let Some(tag) = response.headers.get("To").and_then(tag_of) {
                        if entry.to_tag.as_deref() != Some(tag) {
                            entry.to_tag = Some(tag.to_owned());
                        }
                    }
                }
            }
            Transaction::ServerNonInvite(m) => m.send_response(response, now)?,
            _ => return Err(TransactionError::NotServer(id)),
        }
        self.drain(id, now);
        Ok(())
    }

    /// Starts a client transaction for `request` (complete, top Via with a
    /// fresh branch, see [`new_branch`]), sent to `dest` over `transport`.
    /// INVITE gets a [`ClientInvite`], any other method but ACK a
    /// [`ClientNonInvite`].
    pub fn send_request(
        &mut self,
        request: &Request,
        dest: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Result<TransactionId, TransactionError> {
        if request.method == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let key = TransactionKey::for_client_request(request)?;
        if self.by_key.contains_key(&key) {
            return Err(TransactionError::Duplicate);
        }
        if request.method == Method::Cancel {
            // RFC 3261 9.1: the INVITE this cancels ends within 64*T1.
            if let Some(&invite) = self.by_key.get(&key.with_method(Method::Invite)) {
                if let Some(Transaction::ClientInvite(m)) =
                    slot_mut(&mut self.entries, invite).map(|e| &mut e.machine)
                {
                    m.cancel_sent(now);
                }
                self.drain(invite, now);
            }
        }
        let reliable = transport.is_reliable();
        let machine = if request.method == Method::Invite {
            Transaction::ClientInvite(ClientInvite::new(request, reliable, self.config, now))
        } else {
            Transaction::ClientNonInvite(ClientNonInvite::new(request, reliable, self.config, now))
        };
        let id = self.insert(key, machine, dest, transport, None);
        self.drain(id, now);
        Ok(id)
    }

    /// Sends the ACK of a 2xx, which is no transaction's (§13.2.2.4,
    /// §17.1.1.3); the TU resends it for each 2xx retransmission it sees.
    pub fn send_ack(
        &mut self,
        ack: &Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<(), TransactionError> {
        if ack.method != Method::Ack {
            return Err(TransactionError::NotAck(ack.method.clone()));
        }
        self.outbound.push_back(Outbound {
            dest,
            transport,
            bytes: Bytes::from(ack.to_bytes()),
        });
        Ok(())
    }

    /// The transport failed to send a message of transaction `id`.
    pub fn handle_transport_error(
        &mut self,
        id: TransactionId,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let entry =
            slot_mut(&mut self.entries, id).ok_or(TransactionError::UnknownTransaction(id))?;
        entry.machine.handle_transport_error(now);
        self.drain(id, now);
        Ok(())
    }

    /// Runs the timers of every transaction that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            let Some(entry) = slot_mut(&mut self.entries, id) else {
                continue;
            };
            if entry.deadline != Some(at) {
                continue; // superseded
            }
            entry.deadline = None;
            entry.machine.handle_timeout(now);
            self.drain(id, now);
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Outbound> {
        self.outbound.pop_front()
    }

    /// The next event for the TU: client responses, timeouts, transport
    /// errors and terminations. (Absorbed retransmissions and ACKs are
    /// reported by [`Self::handle_incoming`]'s return value instead.)
    pub fn poll_event(&mut self) -> Option<(TransactionId, TransactionEvent)> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some((at, id)) = self.wakeups.peek() {
            if slot(&self.entries, id).is_some_and(|e| e.deadline == Some(at)) {
                return Some(at);
            }
            self.wakeups.pop();
        }
        None
    }

    fn insert(
        &mut self,
        key: TransactionKey,
        machine: Transaction,
        peer: SocketAddr,
        transport: Transport,
        merge: Option<u64>,
    ) -> TransactionId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push(Slot::default());
            (self.entries.len() - 1) as u32
        });
        let slot = &mut self.entries[index as usize];
        let id = TransactionId {
            index,
            generation: slot.generation,
        };
        if let Some(m) = merge {
            self.merged.insert(m, id);
        }
        self.by_key.insert(key.clone(), id);
        slot.entry = Some(Entry {
            key,
            machine,
            peer,
            transport,
            deadline: None,
            merge,
            to_tag: None,
        });
        self.live += 1;
        id
    }

    fn remove(&mut self, id: TransactionId) {
        let Some(slot) = self
            .entries
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
        else {
            return;
        };
        let Some(entry) = slot.entry.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        self.by_key.remove(&entry.key);
        if let Some(m) = entry.merge {
            if self.merged.get(&m) == Some(&id) {
                self.merged.remove(&m);
            }
        }
    }

    fn create_server(
        &mut self,
        request: &Request,
        key: TransactionKey,
        source: SocketAddr,
        transport: Transport,
        merge: Option<u64>,
        now: Instant,
    ) -> TransactionId {
        let reliable = transport.is_reliable();
        let machine = if request.method == Method::Invite {
            Transaction::ServerInvite(ServerInvite::new(request, reliable, self.config, now))
        } else {
            Transaction::ServerNonInvite(ServerNonInvite::new(request, reliable, self.config, now))
        };
        let id = self.insert(key, machine, source, transport, merge);
        self.drain(id, now);
        id
    }

    /// A response the layer itself sends on a fresh server transaction.
    fn answer(&mut self, id: TransactionId, response: &Response, now: Instant) {
        if let Err(e) = self.respond(id, response, now) {
            tracing::debug!(error = %e, transaction = %id, "layer response not sent");
        }
    }

    fn with_server(&mut self, id: TransactionId, f: impl FnOnce(&mut dyn ServerMachine)) {
        match slot_mut(&mut self.entries, id).map(|e| &mut e.machine) {
            Some(Transaction::ServerInvite(m)) => f(m),
            Some(Transaction::ServerNonInvite(m)) => f(m),
            _ => {}
        }
    }

    /// Moves a machine's outputs into the layer's queues, re-queues its
    /// deadline, and forgets it once Terminated.
    fn drain(&mut self, id: TransactionId, now: Instant) {
        let Some(entry) = slot_mut(&mut self.entries, id) else {
            return;
        };
        while let Some(t) = entry.machine.poll_transmit() {
            self.outbound.push_back(Outbound {
                dest: entry.peer,
                transport: entry.transport,
                bytes: t.bytes,
            });
        }
        while let Some(event) = entry.machine.poll_event() {
            match event {
                TransactionEvent::RequestRetransmitted | TransactionEvent::AckFor2xx => {}
                event => self.events.push_back((id, event)),
            }
        }
        if entry.machine.is_terminated() {
            self.remove(id);
            return;
        }
        let next = entry.machine.poll_timeout();
        if next != entry.deadline {
            entry.deadline = next;
            if let Some(at) = next {
                self.wakeups.push(now, at, id);
            }
        }
    }
}

/// What the layer asks of both server machines.
trait ServerMachine {
    fn handle_request(&mut self, request: &Request, now: Instant);
}

impl ServerMachine for ServerInvite {
    fn handle_request(&mut self, request: &Request, now: Instant) {
        ServerInvite::handle_request(self, request, now);
    }
}

impl ServerMachine for ServerNonInvite {
    fn handle_request(&mut self, request: &Request, now: Instant) {
        ServerNonInvite::handle_request(self, request, now);
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
