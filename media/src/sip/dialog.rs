//! SIP dialogs (RFC 3261 §12), sans-IO.
//!
//! A [`Dialog`] holds what both ends agreed on: Call-ID, the two tags, the
//! remote target, the route set and the two CSeq spaces. On the UAS side
//! ([`Dialog::uas`]) it is made from the INVITE and builds the responses
//! that create it; on the UAC side [`OutgoingInvite`] builds the INVITE and
//! [`Dialog::uac`] makes the dialog from a response with a To tag. Either
//! way it builds the in-dialog requests the node sends (ACK, BYE,
//! re-INVITE, INFO) and checks the in-dialog requests it receives.
//! [`Retransmit2xx`] is the UAS's duty of §13.3.1.4: the transaction layer
//! hands a 2xx to the transport once, so the dialog layer resends it until
//! the ACK arrives.

use super::header::{self, NameAddr, Via};
use super::message::{Method, Request, Response};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Identifies a dialog from this node's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a request received by this node belongs to (§12.2.2: the
    /// To tag is ours, the From tag the peer's).
    pub fn of_incoming(req: &Request) -> Option<DialogId> {
        let call_id = req.headers.get("Call-ID")?.to_owned();
        let to = NameAddr::parse(req.headers.get("To")?).ok()?;
        let from = NameAddr::parse(req.headers.get("From")?).ok()?;
        Some(DialogId {
            call_id,
            local_tag: to.tag()?.to_owned(),
            remote_tag: from.tag().unwrap_or("").to_owned(),
        })
    }
}

impl DialogId {
    /// The dialog a response to one of our requests belongs to (the From
    /// tag is ours, the To tag the peer's); None before the peer tagged it.
    pub fn of_response(resp: &Response) -> Option<DialogId> {
        let call_id = resp.headers.get("Call-ID")?.to_owned();
        let to = NameAddr::parse(resp.headers.get("To")?).ok()?;
        let from = NameAddr::parse(resp.headers.get("From")?).ok()?;
        Some(DialogId {
            call_id,
            local_tag: from.tag()?.to_owned(),
            remote_tag: to.tag()?.to_owned(),
        })
    }
}

/// An INVITE this node sends to start a call (RFC 3261 §8.1.1).
#[derive(Debug, Clone)]
pub struct OutgoingInvite {
    /// Where the call goes: a registered contact or a trunk URI.
    pub request_uri: String,
    /// The From value without tag, e.g. `"Hotline" <sip:4001@demo>`.
    pub from: String,
    /// The To value, e.g. `<sip:1001@demo>`.
    pub to: String,
    pub call_id: String,
    /// Our tag; it becomes the local tag of every dialog the INVITE makes.
    pub local_tag: String,
    pub cseq: u32,
    /// Our Contact URI, without `<>`.
    pub contact: String,
}

impl OutgoingInvite {
    /// The INVITE with `via` (a fresh branch) as its only Via, `body` as
    /// SDP when not empty.
    pub fn request(&self, via: &str, sdp: &str) -> Request {
        let mut req = Request::new(Method::Invite, self.request_uri.clone());
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        req.headers
            .push("From", with_tag(&self.from, &self.local_tag));
        req.headers.push("To", self.to.clone());
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", format!("{} INVITE", self.cseq));
        req.headers.push("Contact", format!("<{}>", self.contact));
        if !sdp.is_empty() {
            req.headers.push("Content-Type", "application/sdp");
            req.body = sdp.as_bytes().to_vec().into();
        }
        req
    }
}

/// Why a challenged request cannot be sent again with credentials.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthRetryError {
    #[error("the {0} response carries no challenge we can answer")]
    NoChallenge(u16),
    #[error("the request to retry has no usable CSeq")]
    BadCSeq,
}

/// RFC 3261 §22.2: the request sent again after a 401 or 407 with the
/// credentials its challenge asks for. Same Call-ID, From tag, To and
/// body; CSeq one higher; `via` (a new branch) as the only Via; the
/// answer in `Authorization` (401) or `Proxy-Authorization` (407). Of
/// several challenges the first whose algorithm we compute is answered
/// (servers list their preference first, RFC 8760 §2.4). `cnonce` is an
/// input.
pub fn authenticated_retry(
    request: &Request,
    challenged: &Response,
    username: &str,
    password: &str,
    via: &str,
    cnonce: &str,
) -> Result<Request, AuthRetryError> {
    use super::digest::{authorization, parse_challenge};
    let (ask, answer) = match challenged.code {
        401 => ("WWW-Authenticate", "Authorization"),
        407 => ("Proxy-Authenticate", "Proxy-Authorization"),
        code => return Err(AuthRetryError::NoChallenge(code)),
    };
    let challenge = challenged
        .headers
        .get_all(ask)
        .find_map(|v| parse_challenge(v).ok())
        .ok_or(AuthRetryError::NoChallenge(challenged.code))?;
    let cseq = request
        .headers
        .get("CSeq")
        .and_then(|v| header::CSeq::parse(v).ok())
        .ok_or(AuthRetryError::BadCSeq)?;
    let mut retry = request.clone();
    retry.headers.remove("Via");
    retry.headers.push_front("Via", via);
    retry.headers.set(
        "CSeq",
        format!("{} {}", cseq.seq.wrapping_add(1), request.method.as_str()),
    );
    retry.headers.remove("Authorization");
    retry.headers.remove("Proxy-Authorization");
    let value = authorization(
        &challenge,
        request.method.as_str(),
        &request.uri,
        username,
        password,
        cnonce,
        1,
    );
    retry.headers.push(answer, value);
    Ok(retry)
}

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uas,
    Uac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

/// Why an in-dialog request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    /// §12.2.2: a CSeq lower than the last one is answered 500.
    #[error("CSeq out of order")]
    OutOfOrder,
    #[error("malformed dialog header: {0}")]
    Malformed(String),
}

impl DialogError {
    pub fn status(&self) -> u16 {
        match self {
            DialogError::OutOfOrder => 500,
            DialogError::Malformed(_) => 400,
        }
    }
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub role: Role,
    pub state: DialogState,
    /// The local URI with our tag, as the From of requests we send.
    local: String,
    /// The remote URI with their tag, as the To of requests we send.
    remote: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// Our Contact, put into every dialog-creating or target-refreshing
    /// message.
    pub local_contact: String,
}

fn with_tag(header_value: &str, tag: &str) -> String {
    format!("{header_value};tag={tag}")
}

impl Dialog {
    /// The UAS side of a dialog created by an INVITE (§12.1.1).
    pub fn uas(
        invite: &Request,
        local_tag: &str,
        local_contact: &str,
    ) -> Result<Dialog, DialogError> {
        let malformed = |what: &str| DialogError::Malformed(what.to_owned());
        let call_id = invite
            .headers
            .get("Call-ID")
            .ok_or_else(|| malformed("Call-ID"))?;
        let from_raw = invite
            .headers
            .get("From")
            .ok_or_else(|| malformed("From"))?;
        let to_raw = invite.headers.get("To").ok_or_else(|| malformed("To"))?;
        let from = NameAddr::parse(from_raw).map_err(|e| malformed(&e.0))?;
        let cseq = header::CSeq::parse(invite.headers.get("CSeq").unwrap_or(""))
            .map_err(|e| malformed(&e.0))?;
        let remote_target = invite
            .headers
            .values("Contact")
            .next()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri)
            .ok_or_else(|| malformed("Contact"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: from.tag().unwrap_or("").to_owned(),
            },
            role: Role::Uas,
            state: DialogState::Early,
            local: with_tag(to_raw, local_tag),
            remote: from_raw.to_owned(),
            remote_target,
            // §12.1.1: the UAS keeps Record-Route in order.
            route_set: invite
                .headers
                .values("Record-Route")
                .map(str::to_owned)
                .collect(),
            local_seq: 0,
            remote_seq: Some(cseq.seq),
            local_contact: local_contact.to_owned(),
        })
    }

    /// The UAC side of a dialog created by a response with a To tag to our
    /// `invite` (§12.1.2): early for a 1xx, confirmed for a 2xx. The route
    /// set is the response's Record-Route in reverse order.
    pub fn uac(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let malformed = |what: &str| DialogError::Malformed(what.to_owned());
        let id = DialogId::of_response(response).ok_or_else(|| malformed("To tag"))?;
        let from_raw = invite
            .headers
            .get("From")
            .ok_or_else(|| malformed("From"))?;
        let to_raw = response.headers.get("To").ok_or_else(|| malformed("To"))?;
        let cseq = header::CSeq::parse(invite.headers.get("CSeq").unwrap_or(""))
            .map_err(|e| malformed(&e.0))?;
        // §12.1.2: a dialog without a Contact in the response has no
        // target; the Request-URI is the best there is.
        let remote_target = response
            .headers
            .values("Contact")
            .next()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri)
            .unwrap_or_else(|| invite.uri.clone());
        let mut route_set: Vec<String> = response
            .headers
            .values("Record-Route")
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        let local_contact = invite
            .headers
            .values("Contact")
            .next()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|c| c.uri)
            .unwrap_or_default();
        Ok(Dialog {
            id,
            role: Role::Uac,
            state: if response.code >= 200 {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local: from_raw.to_owned(),
            remote: to_raw.to_owned(),
            remote_target,
            route_set,
            local_seq: cseq.seq,
            remote_seq: None,
            local_contact,
        })
    }

    /// A 2xx to our (re-)INVITE in this dialog: confirms an early dialog
    /// and refreshes the remote target (§12.2.1.2). For a 2xx that ends an
    /// early dialog the route set is taken from it (§13.2.2.4).
    pub fn handle_2xx(&mut self, response: &Response) {
        if let Some(c) = response
            .headers
            .values("Contact")
            .next()
            .and_then(|c| NameAddr::parse(c).ok())
        {
            self.remote_target = c.uri;
        }
        if self.role == Role::Uac && self.state == DialogState::Early {
            let mut routes: Vec<String> = response
                .headers
                .values("Record-Route")
                .map(str::to_owned)
                .collect();
            routes.reverse();
            self.route_set = routes;
        }
        self.confirm();
    }

    /// A response to a request of this dialog: the To gets our tag, and
    /// responses that establish or refresh the dialog carry our Contact and
    /// the Record-Route (§12.1.1).
    pub fn response(&self, req: &Request, code: u16, reason: &str) -> Response {
        let mut resp = Response::to(req, code, reason);
        if let Some(to) = req.headers.get("To") {
            let has_tag = NameAddr::parse(to)
                .ok()
                .and_then(|n| n.tag().map(str::to_owned));
            if has_tag.is_none() && code > 100 {
                resp.headers.set("To", with_tag(to, &self.id.local_tag));
            }
        }
        if req.method == Method::Invite && (101..300).contains(&code) {
            for rr in req.headers.get_all("Record-Route") {
                resp.headers.push("Record-Route", rr);
            }
            resp.headers
                .push("Contact", format!("<{}>", self.local_contact));
        }
        resp
    }

    /// Checks an in-dialog request and records its CSeq (§12.2.2).
    pub fn handle_request(&mut self, req: &Request) -> Result<(), DialogError> {
        let cseq = header::CSeq::parse(req.headers.get("CSeq").unwrap_or(""))
            .map_err(|e| DialogError::Malformed(e.0))?;
        // ACK and CANCEL reuse the INVITE's number.
        if !matches!(req.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                if cseq.seq < last || (cseq.seq == last && req.method != Method::Invite) {
                    return Err(DialogError::OutOfOrder);
                }
            }
            self.remote_seq = Some(cseq.seq);
        }
        // A target refresh (re-INVITE, UPDATE) may move the peer.
        if matches!(req.method, Method::Invite | Method::Update) {
            if let Some(c) = req
                .headers
                .values("Contact")
                .next()
                .and_then(|c| NameAddr::parse(c).ok())
            {
                self.remote_target = c.uri;
            }
        }
        match req.method {
            Method::Ack if self.state == DialogState::Early => self.state = DialogState::Confirmed,
            Method::Bye => self.state = DialogState::Terminated,
            _ => {}
        }
        Ok(())
    }

    /// Marks the dialog confirmed (our 2xx went out, or theirs came in).
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// A new in-dialog request (§12.2.1.1). `via` is the transport's top Via
    /// with a fresh branch; the caller adds body and extra headers.
    pub fn request(&mut self, method: Method, via: &str) -> Request {
        // ACK and CANCEL reuse the INVITE's number (§13.2.2.4, §9.1).
        if method != Method::Ack && method != Method::Cancel {
            self.local_seq = self.local_seq.wrapping_add(1);
        }
        let seq = self.local_seq;
        // Loose routing (§12.2.1.1): with an `lr` first route the target
        // stays the Request-URI; strict routes are not supported.
        let mut req = Request::new(method.clone(), self.remote_target.clone());
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        for r in &self.route_set {
            req.headers.push("Route", r.clone());
        }
        req.headers.push("From", self.local.clone());
        req.headers.push("To", self.remote.clone());
        req.headers.push("Call-ID", self.id.call_id.clone());
        req.headers.push("CSeq", format!("{seq} {method}"));
        if matches!(method, Method::Invite | Method::Update) {
            req.headers
                .push("Contact", format!("<{}>", self.local_contact));
        }
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        req
    }
}

/// Makes a top Via for a request this node sends.
pub fn make_via(transport: &str, sent_by: &str, branch: &str) -> String {
    format!("SIP/2.0/{transport} {sent_by};branch={branch};rport")
}

/// True when the top Via of `req` carries an RFC 3261 branch.
pub fn top_via(req: &Request) -> Option<Via> {
    req.headers
        .values("Via")
        .next()
        .and_then(|v| Via::parse(v).ok())
}

/// The UAS's retransmission of a 2xx to INVITE until the ACK (§13.3.1.4):
/// T1, doubling up to T2; after 64*T1 without ACK the dialog is to be ended
/// with a BYE.
#[derive(Debug, Clone)]
pub struct Retransmit2xx {
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
    t2: Duration,
    acked: bool,
}

/// What [`Retransmit2xx::handle_timeout`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retransmit2xxAction {
    Nothing,
    /// Send the same 2xx again.
    Resend,
    /// No ACK within 64*T1: confirm and immediately end the dialog.
    GiveUp,
}

impl Retransmit2xx {
    pub fn new(now: Instant, t1: Duration, t2: Duration) -> Self {
        Retransmit2xx {
            next: Some(now + t1),
            interval: t1,
            give_up: now + t1 * 64,
            t2,
            acked: false,
        }
    }

    pub fn ack(&mut self) {
        self.acked = true;
        self.next = None;
    }

    pub fn is_acked(&self) -> bool {
        self.acked
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Retransmit2xxAction {
        match self.next {
            Some(at) if now >= at => {
                if now >= self.give_up {
                    self.next = None;
                    return Retransmit2xxAction::GiveUp;
                }
                self.interval = (self.interval * 2).min(self.t2);
                self.next = Some((now + self.interval).min(self.give_up));
                Retransmit2xxAction::Resend
            }
            _ => Retransmit2xxAction::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;
    use crate::sip::parse::{parse_datagram, Limits, Parsed};

    fn invite() -> Request {
        let text = "INVITE sip:*43@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@demo>;tag=abc\r\n\
To: <sip:*43@demo>\r\n\
Call-ID: call-1\r\n\
CSeq: 7 INVITE\r\n\
Record-Route: <sip:proxy.example;lr>\r\n\
Contact: <sip:1001@127.0.0.1:5070>\r\n\
Content-Length: 0\r\n\r\n";
        match parse_datagram(text.as_bytes(), &Limits::default()) {
            Ok(Parsed::Message(Message::Request(r))) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uas_dialog_builds_responses_and_requests() {
        let inv = invite();
        let mut d = Dialog::uas(&inv, "xyz", "sip:node@127.0.0.1:5060").unwrap();
        let ok = d.response(&inv, 200, "OK");
        assert_eq!(ok.headers.get("To"), Some("<sip:*43@demo>;tag=xyz"));
        assert_eq!(ok.headers.get("Contact"), Some("<sip:node@127.0.0.1:5060>"));
        assert_eq!(
            ok.headers.get("Record-Route"),
            Some("<sip:proxy.example;lr>")
        );
        let trying = d.response(&inv, 100, "Trying");
        assert_eq!(trying.headers.get("To"), Some("<sip:*43@demo>"));

        let bye = d.request(Method::Bye, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb");
        assert_eq!(bye.uri, "sip:1001@127.0.0.1:5070");
        assert_eq!(bye.headers.get("From"), Some("<sip:*43@demo>;tag=xyz"));
        assert_eq!(bye.headers.get("To"), Some("<sip:1001@demo>;tag=abc"));
        assert_eq!(bye.headers.get("Route"), Some("<sip:proxy.example;lr>"));
        assert_eq!(bye.headers.get("CSeq"), Some("1 BYE"));
        assert_eq!(d.state, DialogState::Terminated);
        let again = d.request(Method::Info, "v");
        assert_eq!(again.headers.get("CSeq"), Some("2 INFO"));
    }

    #[test]
    fn in_dialog_cseq_order() {
        let inv = invite();
        let mut d = Dialog::uas(&inv, "xyz", "sip:n@h").unwrap();
        let mut ack = inv.clone();
        ack.method = Method::Ack;
        ack.headers.set("CSeq", "7 ACK");
        assert!(d.handle_request(&ack).is_ok());
        assert_eq!(d.state, DialogState::Confirmed);
        let mut reinv = inv.clone();
        reinv.headers.set("CSeq", "8 INVITE");
        reinv.headers.set("Contact", "<sip:1001@10.0.0.9:5070>");
        assert!(d.handle_request(&reinv).is_ok());
        assert_eq!(d.remote_target, "sip:1001@10.0.0.9:5070");
        let mut old = inv.clone();
        old.method = Method::Bye;
        old.headers.set("CSeq", "3 BYE");
        assert_eq!(d.handle_request(&old), Err(DialogError::OutOfOrder));
        assert_eq!(DialogError::OutOfOrder.status(), 500);
    }

    #[test]
    fn dialog_id_of_incoming() {
        let mut r = invite();
        assert!(DialogId::of_incoming(&r).is_none());
        r.headers.set("To", "<sip:*43@demo>;tag=xyz");
        let id = DialogId::of_incoming(&r).unwrap();
        assert_eq!(
            (id.local_tag.as_str(), id.remote_tag.as_str()),
            ("xyz", "abc")
        );
    }

    fn response_to(req: &Request, code: u16, extra: &[(&'static str, &'static str)]) -> Response {
        let mut r = Response::to(req, code, "x");
        for (n, v) in extra {
            if n.eq_ignore_ascii_case("To") {
                r.headers.set("To", *v);
            } else {
                r.headers.push(*n, *v);
            }
        }
        r
    }

    #[test]
    fn uac_dialog_talks_to_a_uas_dialog() {
        let out = OutgoingInvite {
            request_uri: "sip:1002@127.0.0.1:5072".into(),
            from: "\"Hotline\" <sip:4001@demo>".into(),
            to: "<sip:1002@demo>".into(),
            call_id: "out-1".into(),
            local_tag: "ours".into(),
            cseq: 10,
            contact: "sip:4001@127.0.0.1:5060".into(),
        };
        let inv = out.request("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKo1", "v=0\r\n");
        assert_eq!(
            inv.headers.get("From"),
            Some("\"Hotline\" <sip:4001@demo>;tag=ours")
        );
        assert_eq!(inv.headers.get("Content-Type"), Some("application/sdp"));
        // The far end, as a proxy chain would deliver it.
        let mut at_uas = inv.clone();
        at_uas
            .headers
            .push("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>");
        let mut uas = Dialog::uas(&at_uas, "theirs", "sip:1002@10.0.0.7:5072").unwrap();
        let ringing = uas.response(&at_uas, 180, "Ringing");
        let ok = uas.response(&at_uas, 200, "OK");

        let mut uac = Dialog::uac(&inv, &ringing).unwrap();
        assert_eq!(uac.state, DialogState::Early);
        uac.handle_2xx(&ok);
        assert_eq!(uac.state, DialogState::Confirmed);
        assert_eq!(uac.role, Role::Uac);
        assert_eq!(uac.remote_target, "sip:1002@10.0.0.7:5072");
        // §12.1.2: the UAC's route set is the Record-Route reversed.
        assert_eq!(
            uac.route_set,
            vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
        );
        assert_eq!(DialogId::of_response(&ok), Some(uac.id.clone()));

        // §13.2.2.4: the ACK has the INVITE's CSeq number.
        let ack = uac.request(Method::Ack, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa");
        assert_eq!(ack.headers.get("CSeq"), Some("10 ACK"));
        assert_eq!(ack.headers.get("To"), Some("<sip:1002@demo>;tag=theirs"));
        assert!(uas.handle_request(&ack).is_ok());
        assert_eq!(uas.state, DialogState::Confirmed);
        assert_eq!(DialogId::of_incoming(&ack), Some(uas.id.clone()));

        // Either side may hang up; each finds the dialog from the request.
        let bye = uac.request(Method::Bye, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb");
        assert_eq!(bye.headers.get("CSeq"), Some("11 BYE"));
        assert_eq!(bye.uri, "sip:1002@10.0.0.7:5072");
        assert_eq!(bye.headers.get_all("Route").collect::<Vec<_>>().len(), 2);
        assert!(uas.handle_request(&bye).is_ok());
        let their_bye = uas.request(Method::Bye, "SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKc");
        assert_eq!(DialogId::of_incoming(&their_bye), Some(uac.id.clone()));
        assert!(uac.handle_request(&their_bye).is_ok());
        assert_eq!(uac.state, DialogState::Terminated);
    }

    #[test]
    fn uac_dialog_needs_a_to_tag() {
        let out = OutgoingInvite {
            request_uri: "sip:1002@h".into(),
            from: "<sip:a@d>".into(),
            to: "<sip:1002@d>".into(),
            call_id: "c".into(),
            local_tag: "t".into(),
            cseq: 1,
            contact: "sip:a@h".into(),
        };
        let inv = out.request("SIP/2.0/UDP h;branch=z9hG4bKx", "");
        assert!(inv.headers.get("Content-Type").is_none());
        let trying = response_to(&inv, 100, &[]);
        assert!(matches!(
            Dialog::uac(&inv, &trying),
            Err(DialogError::Malformed(_))
        ));
        let ok = response_to(&inv, 200, &[("To", "<sip:1002@d>;tag=z")]);
        let d = Dialog::uac(&inv, &ok).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        // No Contact: the Request-URI stands in.
        assert_eq!(d.remote_target, "sip:1002@h");
    }

    #[test]
    fn retransmits_2xx_until_ack_or_gives_up() {
        let t0 = Instant::now();
        let (t1, t2) = (Duration::from_millis(500), Duration::from_secs(4));
        let mut r = Retransmit2xx::new(t0, t1, t2);
        let mut sends = Vec::new();
        let mut now = t0;
        while let Some(at) = r.poll_timeout() {
            now = at;
            match r.handle_timeout(now) {
                Retransmit2xxAction::Resend => sends.push((now - t0).as_millis()),
                Retransmit2xxAction::GiveUp => break,
                Retransmit2xxAction::Nothing => panic!("woken for nothing"),
            }
        }
        assert_eq!(&sends[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!((now - t0).as_millis(), 32_000);
        let mut r = Retransmit2xx::new(t0, t1, t2);
        assert_eq!(r.handle_timeout(t0 + t1), Retransmit2xxAction::Resend);
        r.ack();
        assert!(r.poll_timeout().is_none());
        assert!(r.is_acked());
    }

    #[test]
    fn a_407_is_answered_with_proxy_authorization_on_the_next_cseq() {
        use crate::sip::digest::{parse_credentials, verify, StoredCredential};
        let inv = invite();
        let mut challenge = Response::to(&inv, 407, "Proxy Authentication Required");
        challenge.headers.push(
            "Proxy-Authenticate",
            r#"Digest realm="carrier", nonce="n0nce", algorithm=SHA-512-256, qop="auth""#,
        );
        challenge.headers.push(
            "Proxy-Authenticate",
            r#"Digest realm="carrier", nonce="n0nce", algorithm=MD5, qop="auth""#,
        );
        let retry = authenticated_retry(
            &inv,
            &challenge,
            "trunk1",
            "secret",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2",
            "cn",
        )
        .unwrap();
        assert_eq!(retry.headers.get("CSeq"), Some("8 INVITE"));
        assert_eq!(retry.headers.count("Via"), 1);
        assert!(retry
            .headers
            .get("Via")
            .is_some_and(|v| v.contains("z9hG4bK-2")));
        assert_eq!(retry.headers.get("Call-ID"), Some("call-1"));
        assert_eq!(retry.headers.get("From"), inv.headers.get("From"));
        assert!(retry.headers.get("Authorization").is_none());
        // The carrier's side: the SHA-512-256 challenge was skipped, MD5
        // answered, and it verifies.
        let creds = parse_credentials(retry.headers.get("Proxy-Authorization").unwrap()).unwrap();
        assert_eq!(creds.uri, inv.uri);
        let stored = StoredCredential::new("trunk1", "carrier", "secret");
        assert!(verify(stored.ha1(creds.algorithm), "INVITE", &creds));
        // A 401 gets Authorization; anything else is not a challenge.
        let mut www = Response::to(&inv, 401, "Unauthorized");
        www.headers
            .push("WWW-Authenticate", r#"Digest realm="r", nonce="x""#);
        let r = authenticated_retry(&inv, &www, "u", "p", "SIP/2.0/UDP h;branch=z9hG4bK3", "c")
            .unwrap();
        assert!(r.headers.get("Authorization").is_some());
        let busy = Response::to(&inv, 486, "Busy Here");
        assert_eq!(
            authenticated_retry(&inv, &busy, "u", "p", "v", "c").err(),
            Some(AuthRetryError::NoChallenge(486))
        );
        let bare = Response::to(&inv, 407, "Proxy Authentication Required");
        assert_eq!(
            authenticated_retry(&inv, &bare, "u", "p", "v", "c").err(),
            Some(AuthRetryError::NoChallenge(407))
        );
    }
}
