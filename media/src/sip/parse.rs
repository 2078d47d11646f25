//! Framing and validation of SIP messages from the wire.
//!
//! This layer stands in front of everything else that reads SIP. It finds
//! the start line (skipping keep-alive CRLFs), unfolds continuation lines,
//! expands compact header names, frames the body by Content-Length (required
//! on streams, RFC 3261 §18.3), and validates the headers every element
//! relies on. A message it rejects comes back as a [`ParseError`] that says
//! why in words (the reason phrase of the `400`) and, when the start line was
//! a request with a Via, carries the request's headers so the transport can
//! still answer it. Nothing here panics on any input; the property tests and
//! the RFC 4475 corpus test say so.

use super::header::{self, CSeq, NameAddr, Via};
use super::message::{Headers, Message, Method, Request, Response};
use bytes::Bytes;
use std::borrow::Cow;
use thiserror::Error;

/// Bounds on what one message may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, headers and body together.
    pub max_message_bytes: usize,
    /// Most header lines (after unfolding) accepted in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_535,
            max_headers: 128,
        }
    }
}

/// A message that could not be accepted.
#[derive(Debug, Clone, Error)]
#[error("{code} {reason}")]
pub struct ParseError {
    /// 400, 505 (version) or 513 (too large).
    pub code: u16,
    /// Human-readable reason, used as the response's reason phrase.
    pub reason: String,
    /// The request as far as it could be read, when it can be answered.
    pub request: Option<Box<Request>>,
    /// On a stream the framing is lost: the connection must be closed.
    pub fatal: bool,
}

/// What one datagram or stream frame held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Message(Message),
    /// Only CRLFs: an RFC 5626 keep-alive.
    KeepAlive,
}

const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
    ("y", "Identity"),
    ("n", "Identity-Info"),
];

const CANONICAL: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Route",
    "Record-Route",
    "Require",
    "Proxy-Require",
    "Supported",
    "Allow",
    "Accept",
    "User-Agent",
    "Min-Expires",
];

fn canonical_name(name: &str) -> Cow<'static, str> {
    match canonical_static(name) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(name.to_owned()),
    }
}

/// The canonical spelling of a well-known header name or compact form.
pub(crate) fn canonical_static(name: &str) -> Option<&'static str> {
    if name.len() == 1 {
        if let Some((_, full)) = COMPACT.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
            return Some(full);
        }
    }
    CANONICAL
        .iter()
        .find(|c| c.eq_ignore_ascii_case(name))
        .copied()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the header section ends: (end of headers, start of body).
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    match (find(buf, b"\r\n\r\n"), find(buf, b"\n\n")) {
        (Some(a), Some(b)) if b + 1 < a => Some((b, b + 2)),
        (Some(a), _) => Some((a, a + 4)),
        (None, Some(b)) => Some((b, b + 2)),
        (None, None) => None,
    }
}

fn skip_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

fn bad(reason: impl Into<String>) -> ParseError {
    ParseError {
        code: 400,
        reason: reason.into(),
        request: None,
        fatal: false,
    }
}

/// Parses one UDP datagram. Bytes beyond Content-Length are ignored
/// (RFC 3261 §18.3).
pub fn parse_datagram(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    if buf.len() > limits.max_message_bytes {
        return Err(ParseError {
            code: 513,
            reason: "Message Too Large".into(),
            request: None,
            fatal: false,
        });
    }
    let start = skip_crlf(buf);
    let buf = &buf[start..];
    if buf.is_empty() {
        return Ok(Parsed::KeepAlive);
    }
    let Some((hdr_end, body_start)) = header_end(buf) else {
        return Err(bad("headers not terminated by an empty line"));
    };
    parse_frame(&buf[..hdr_end], &buf[body_start..], limits, false)
}

/// Frames messages on a stream transport (TCP): feed bytes with
/// [`StreamFramer::push`], take whole messages with [`StreamFramer::next_message`].
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: Vec::new(),
            limits,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `None` when more bytes are needed. A
    /// `fatal` error means the stream cannot be re-synchronised.
    pub fn next_message(&mut self) -> Option<Result<Parsed, ParseError>> {
        let skip = skip_crlf(&self.buf);
        if skip > 0 {
            // A CRLF pair alone is a keep-alive ping (RFC 5626 §4.4.1).
            let ping = skip >= 4 || self.buf.len() > skip;
            self.buf.drain(..skip);
            if ping && skip >= 4 {
                return Some(Ok(Parsed::KeepAlive));
            }
        }
        if self.buf.is_empty() {
            return None;
        }
        let Some((hdr_end, body_start)) = header_end(&self.buf) else {
            if self.buf.len() > self.limits.max_message_bytes {
                self.buf.clear();
                let mut e = bad("header section too large");
                e.fatal = true;
                return Some(Err(e));
            }
            return None;
        };
        let length = match content_length_on_stream(&self.buf[..hdr_end]) {
            Ok(n) => n,
            Err(mut e) => {
                e.fatal = true;
                self.buf.clear();
                return Some(Err(e));
            }
        };
        if body_start + length > self.limits.max_message_bytes {
            self.buf.clear();
            let mut e = bad("message too large");
            e.fatal = true;
            return Some(Err(e));
        }
        if self.buf.len() < body_start + length {
            return None;
        }
        let frame: Vec<u8> = self.buf.drain(..body_start + length).collect();
        Some(parse_frame(
            &frame[..hdr_end],
            &frame[body_start..],
            &self.limits,
            true,
        ))
    }
}

fn content_length_on_stream(headers: &[u8]) -> Result<usize, ParseError> {
    let text = String::from_utf8_lossy(headers);
    let mut found = None;
    for line in text.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            if found.is_some() {
                return Err(bad("multiple Content-Length headers"));
            }
            found = Some(parse_content_length(value.trim())?);
        }
    }
    found.ok_or_else(|| bad("Content-Length is required on stream transports"))
}

fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("bad Content-Length {v:?}")));
    }
    v.parse::<usize>()
        .map_err(|_| bad("Content-Length out of range"))
}

enum Start {
    Request {
        method: String,
        uri: String,
        version: String,
    },
    Response {
        code: u16,
        reason: String,
    },
}

fn parse_start_line(line: &str) -> Result<Start, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if version != "2.0" {
            return Err(bad("unsupported SIP version in status line"));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = match code.parse::<u16>() {
            Ok(c) if code.len() == 3 && (100..=699).contains(&c) => c,
            _ => return Err(bad(format!("bad status code {code:?}"))),
        };
        return Ok(Start::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    if line.starts_with([' ', '\t']) {
        return Err(bad("whitespace before the request line"));
    }
    if line.ends_with([' ', '\t']) {
        return Err(bad("whitespace after the SIP version"));
    }
    let parts: Vec<&str> = line.split(' ').filter(|p| !p.is_empty()).collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(bad("request line is not METHOD URI SIP/2.0"));
    };
    if !header::is_token(method) {
        return Err(bad("method is not a token"));
    }
    Ok(Start::Request {
        method: (*method).to_owned(),
        uri: (*uri).to_owned(),
        version: (*version).to_owned(),
    })
}

fn parse_frame(
    head: &[u8],
    body: &[u8],
    limits: &Limits,
    stream: bool,
) -> Result<Parsed, ParseError> {
    let Ok(text) = std::str::from_utf8(head) else {
        return Err(bad("headers are not UTF-8"));
    };
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = parse_start_line(lines.next().unwrap_or(""))?;

    let mut headers = Headers::with_capacity(16);
    let mut pending: Option<(Cow<'static, str>, String)> = None;
    let mut malformed: Option<String> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // RFC 3261 §7.3.1: a continuation line is part of the header
            // above, its leading whitespace one SP.
            match pending.as_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => malformed = Some("continuation line before the first header".into()),
            }
            continue;
        }
        if let Some((n, v)) = pending.take() {
            headers.push(n, v);
        }
        match line.split_once(':') {
            Some((name, value)) if header::is_token(name.trim_end()) => {
                pending = Some((canonical_name(name.trim_end()), value.trim().to_owned()));
            }
            _ => {
                if malformed.is_none() {
                    malformed = Some(format!("malformed header line {:?}", clip(line)));
                }
            }
        }
        if headers.len() >= limits.max_headers {
            return Err(bad("too many headers"));
        }
    }
    if let Some((n, v)) = pending.take() {
        headers.push(n, v);
    }

    let content_length = match headers.count("Content-Length") {
        0 => None,
        1 => Some(parse_content_length(
            headers.get("Content-Length").unwrap_or(""),
        )),
        _ => Some(Err(bad("multiple Content-Length headers"))),
    };

    let (start_req, version) = match start {
        Start::Request {
            method,
            uri,
            version,
        } => (Some((method, uri)), Some(version)),
        Start::Response { code, reason } => {
            let body = frame_body(body, content_length, stream)?;
            if let Some(m) = malformed {
                return Err(bad(m));
            }
            validate_common(&headers, false)?;
            return Ok(Parsed::Message(Message::Response(Response {
                code,
                reason,
                headers,
                body,
            })));
        }
    };
    let (method, uri) = start_req.unwrap_or_default();
    let mut request = Request {
        method: Method::from_token(&method),
        uri,
        headers,
        body: Bytes::new(),
    };
    // From here on, errors carry the request so it can be answered.
    let answerable = |e: ParseError, request: &Request| -> ParseError {
        ParseError {
            request: request
                .headers
                .get("Via")
                .map(|_| Box::new(request.clone())),
            ..e
        }
    };
    let body = match frame_body(body, content_length, stream) {
        Ok(b) => b,
        Err(e) => return Err(answerable(e, &request)),
    };
    request.body = body;
    let version = version.unwrap_or_default();
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let e = if version.len() > 4 && version[..4].eq_ignore_ascii_case("SIP/") {
            ParseError {
                code: 505,
                reason: "Version Not Supported".into(),
                request: None,
                fatal: false,
            }
        } else {
            bad("request line does not end in SIP/2.0")
        };
        return Err(answerable(e, &request));
    }
    if let Some(m) = malformed {
        return Err(answerable(bad(m), &request));
    }
    if let Err(e) = validate_request(&request) {
        return Err(answerable(e, &request));
    }
    Ok(Parsed::Message(Message::Request(request)))
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn frame_body(
    body: &[u8],
    content_length: Option<Result<usize, ParseError>>,
    stream: bool,
) -> Result<Bytes, ParseError> {
    match content_length.transpose()? {
        Some(n) if n > body.len() => Err(bad("Content-Length larger than the message")),
        Some(n) => Ok(Bytes::copy_from_slice(&body[..n])),
        // RFC 3261 §18.3: without Content-Length a datagram's body runs to
        // its end; streams were framed before this point.
        None if stream => Ok(Bytes::new()),
        None => Ok(Bytes::copy_from_slice(body)),
    }
}

const SINGLETONS: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
];

fn validate_common(h: &Headers, request: bool) -> Result<(), ParseError> {
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if h.get(name).is_none() {
            return Err(bad(format!("missing {name} header")));
        }
    }
    if request && h.get("Max-Forwards").is_none() {
        return Err(bad("missing Max-Forwards header"));
    }
    for name in SINGLETONS {
        if h.count(name) > 1 {
            return Err(bad(format!("multiple {name} headers")));
        }
    }
    let mut vias = h.values("Via").peekable();
    if vias.peek().is_none() {
        return Err(bad("empty Via header"));
    }
    // A Via without branch is legal: RFC 2543 peers send it, and the
    // transaction layer matches their requests the RFC 2543 way (§17.2.3).
    for v in vias {
        Via::parse(v).map_err(|e| bad(format!("bad Via: {e}")))?;
    }
    for name in ["From", "To"] {
        NameAddr::parse(h.get(name).unwrap_or(""))
            .map_err(|e| bad(format!("bad {name} header: {e}")))?;
    }
    if h.get("Call-ID").is_some_and(|c| c.trim().is_empty()) {
        return Err(bad("empty Call-ID"));
    }
    CSeq::check_shape(h.get("CSeq").unwrap_or("")).map_err(|e| bad(format!("bad CSeq: {e}")))?;
    for contact in h.values("Contact") {
        if contact != "*" {
            NameAddr::parse(contact).map_err(|e| bad(format!("bad Contact header: {e}")))?;
        }
    }
    Ok(())
}

fn validate_request(req: &Request) -> Result<(), ParseError> {
    if req.uri.starts_with('<') || !req.uri.contains(':') {
        return Err(bad("Request-URI is not a URI"));
    }
    validate_common(&req.headers, true)?;
    let mf = req.headers.get("Max-Forwards").unwrap_or("");
    if mf.is_empty() || !mf.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("Max-Forwards is not a number"));
    }
    Ok(())
}

/// The Max-Forwards value; values above 255 count as 255 (RFC 4475
/// §3.1.2.4 allows treating an overlarge value as absent or capped).
pub fn max_forwards(req: &Request) -> u8 {
    req.headers
        .get("Max-Forwards")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(70, |n| n.min(255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:1001@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
t: <sip:1001@example.com>\r\n\
i: abc@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n  onto two lines\r\n\
c: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\nEXTRA";

    fn req(text: &str) -> Request {
        match parse_datagram(text.as_bytes(), &Limits::default()) {
            Ok(Parsed::Message(Message::Request(r))) => r,
            other => panic!("expected request, got {other:?}"),
        }
    }

    #[test]
    fn compact_forms_folding_and_body_framing() {
        let r = req(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.headers.get("Call-ID"), Some("abc@127.0.0.1"));
        assert_eq!(r.headers.get("subject"), Some("folded onto two lines"));
        assert_eq!(&r.body[..], b"v=0\r");
        assert_eq!(max_forwards(&r), 70);
    }

    #[test]
    fn keepalive_and_leading_crlf() {
        assert_eq!(
            parse_datagram(b"\r\n\r\n", &Limits::default()).ok(),
            Some(Parsed::KeepAlive)
        );
        let r = req(&format!("\r\n{INVITE}"));
        assert_eq!(r.uri, "sip:1001@example.com");
    }

    #[test]
    fn errors_carry_the_request_for_a_reply() {
        let text = INVITE.replace("l: 4", "l: 400");
        let e = parse_datagram(text.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.reason, "Content-Length larger than the message");
        let r = e.request.expect("answerable");
        let resp = Response::to(&r, e.code, &e.reason);
        assert_eq!(resp.headers.get("Call-ID"), Some("abc@127.0.0.1"));
    }

    #[test]
    fn version_505() {
        let text = INVITE.replace("SIP/2.0\r\nv:", "SIP/3.0\r\nv:");
        let e = parse_datagram(text.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(e.code, 505);
        assert!(e.request.is_some());
    }

    #[test]
    fn stream_framing_splits_and_joins() {
        let mut f = StreamFramer::new(Limits::default());
        let text = INVITE.replace("EXTRA", "");
        let two = format!("{text}{text}");
        let (a, b) = two.as_bytes().split_at(100);
        f.push(a);
        assert!(f.next_message().is_none());
        f.push(b);
        assert!(matches!(f.next_message(), Some(Ok(Parsed::Message(_)))));
        assert!(matches!(f.next_message(), Some(Ok(Parsed::Message(_)))));
        assert!(f.next_message().is_none());
        f.push(b"\r\n\r\n");
        assert!(matches!(f.next_message(), Some(Ok(Parsed::KeepAlive))));
    }

    #[test]
    fn stream_requires_content_length() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(INVITE.replace("l: 4\r\n", "").as_bytes());
        let e = f.next_message().and_then(|r| r.err()).expect("error");
        assert!(e.fatal);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_datagram(&data, &Limits::default());
            let mut f = StreamFramer::new(Limits::default());
            f.push(&data);
            for _ in 0..4 { let _ = f.next_message(); }
        }

        #[test]
        fn never_panics_on_mutated_invite(pos in 0usize..400, byte in proptest::num::u8::ANY, cut in 0usize..450) {
            let mut data = INVITE.as_bytes().to_vec();
            let p = pos % data.len();
            data[p] = byte;
            data.truncate(cut.min(data.len()));
            let _ = parse_datagram(&data, &Limits::default());
        }
    }
}
