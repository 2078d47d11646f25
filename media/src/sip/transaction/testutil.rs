//! Fixtures for the transaction tests: messages and a simulated clock.

use crate::sip::message::{reason_phrase, Message, Method, Request, Response};
use crate::sip::parse::{parse_datagram, Limits, Parsed};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Simulated time: tests move `now` by hand or to the next deadline.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    pub now: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let start = Instant::now();
        Clock { start, now: start }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    pub fn elapsed_ms(&self) -> u128 {
        (self.now - self.start).as_millis()
    }
}

pub fn parse(text: &str) -> Message {
    match parse_datagram(text.as_bytes(), &Limits::default()) {
        Ok(Parsed::Message(m)) => m,
        other => panic!("fixture does not parse: {other:?}"),
    }
}

pub fn parse_request(text: &str) -> Request {
    match parse(text) {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {r:?}"),
    }
}

pub fn parse_response(text: &str) -> Response {
    match parse(text) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {r:?}"),
    }
}

/// An INVITE with two Vias and a Route (for the ACK rules).
pub fn invite() -> Request {
    parse_request(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKfirst\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example.com;lr>\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Content-Length: 0\r\n\r\n",
    )
}

/// An in-dialog BYE.
pub fn bye() -> Request {
    parse_request(
        "BYE sip:bob@192.0.2.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: call-1\r\n\
CSeq: 8 BYE\r\n\
Content-Length: 0\r\n\r\n",
    )
}

/// A response to `req` (§8.2.6.2), with `tag` added to the To if given.
pub fn response_to(req: &Request, code: u16, tag: Option<&str>) -> Response {
    let mut r = Response::to(req, code, reason_phrase(code));
    if let (Some(tag), Some(to)) = (tag, req.headers.get("To")) {
        if super::tag_of(to).is_none() {
            r.headers.set("To", format!("{to};tag={tag}"));
        }
    }
    r
}

/// The ACK a UAC sends for a non-2xx final response to `invite` (same
/// branch, §17.1.1.3), with the response's To tag.
pub fn ack_of(invite: &Request, tag: &str) -> Request {
    let resp = response_to(invite, 400, Some(tag));
    let bytes = super::client_invite::AckTemplate::new(invite).render(&resp);
    parse_request(std::str::from_utf8(&bytes).unwrap_or_default())
}

/// `req` with another method and CSeq method.
pub fn with_method(req: &Request, method: Method) -> Request {
    let mut r = req.clone();
    let seq = req
        .headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or("1")
        .to_owned();
    r.headers.set("CSeq", format!("{seq} {method}"));
    r.method = method;
    r
}

/// The send times (ms since start) of recorded transmissions.
pub fn times_of(sent: &[(u128, Bytes)]) -> Vec<u128> {
    sent.iter().map(|(t, _)| *t).collect()
}
