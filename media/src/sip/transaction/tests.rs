//! Tests of the keys, the layer, and property tests of the four machines.

use super::testutil::{
    ack_of, bye, invite, parse, parse_response, response_to, with_method, Clock,
};
use super::*;
use crate::sip::header::NameAddr;
use proptest::prelude::*;
use std::time::Duration;

const PEER: &str = "192.0.2.1:5060";

fn peer() -> SocketAddr {
    PEER.parse().unwrap_or_else(|_| unreachable!())
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default())
}

fn incoming(l: &mut TransactionLayer, m: impl Into<MessageLike>, now: Instant) -> Incoming {
    l.handle_incoming(m.into().0, peer(), Transport::Udp, now)
}

/// Lets tests pass a request or a response where a message is expected.
struct MessageLike(Message);

impl From<Request> for MessageLike {
    fn from(r: Request) -> Self {
        MessageLike(Message::Request(r))
    }
}

impl From<Response> for MessageLike {
    fn from(r: Response) -> Self {
        MessageLike(Message::Response(r))
    }
}

fn sent(l: &mut TransactionLayer) -> Vec<Outbound> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut TransactionLayer) -> Vec<(TransactionId, TransactionEvent)> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn status_of(o: &Outbound) -> Option<u16> {
    let text = std::str::from_utf8(&o.bytes).ok()?;
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Runs the layer's timers until nothing is armed (or `limit` passes).
fn run_timers(l: &mut TransactionLayer, clock: &mut Clock, limit: Duration) {
    while let Some(at) = l.poll_timeout() {
        if at - clock.start > limit {
            break;
        }
        clock.now = at;
        l.handle_timeout(at);
    }
}

fn tagged(req: &Request, tag: &str) -> Request {
    let mut r = req.clone();
    let to = req.headers.get("To").unwrap_or_default().to_owned();
    r.headers.set("To", format!("{to};tag={tag}"));
    r
}

fn with_branch(req: &Request, branch: &str) -> Request {
    let mut r = req.clone();
    r.headers
        .set_first("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"));
    r
}

// ---------------------------------------------------------------------------
// Keys and header helpers.

#[test]
fn keys_follow_17_2_3() {
    let inv = invite();
    let k = TransactionKey::for_server_request(&inv).unwrap();
    assert_eq!(
        k,
        TransactionKey::Server {
            branch: "z9hg4bkinv1".into(),
            sent_by: "192.0.2.1:5060".into(),
            method: Method::Invite
        }
    );
    // ACK matches its INVITE; CANCEL is its own transaction.
    let ack = ack_of(&inv, "x");
    assert_eq!(TransactionKey::for_server_request(&ack).unwrap(), k);
    let cancel = cancel_for(&inv);
    let ck = TransactionKey::for_server_request(&cancel).unwrap();
    assert_ne!(ck, k);
    assert_eq!(ck.with_method(Method::Invite), k);
    // The sent-by is part of the key; branch case is not.
    let mut other = inv.clone();
    other
        .headers
        .set_first("Via", "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKinv1");
    assert_ne!(TransactionKey::for_server_request(&other).unwrap(), k);
    // (The cookie itself is case-sensitive, §8.1.1.7.)
    let upper = with_branch(&inv, "z9hG4bKINV1");
    assert_eq!(TransactionKey::for_server_request(&upper).unwrap(), k);
    // Client side: branch and CSeq method of the response.
    let resp = response_to(&inv, 180, Some("t"));
    assert_eq!(
        TransactionKey::for_response(&resp).unwrap(),
        TransactionKey::for_client_request(&inv).unwrap()
    );
    let no_cookie = with_branch(&inv, "abc");
    assert_eq!(
        TransactionKey::for_client_request(&no_cookie),
        Err(TransactionError::NoMagicCookie("abc".into()))
    );
    assert!(matches!(
        TransactionKey::for_server_request(&no_cookie),
        Ok(TransactionKey::Rfc2543(_))
    ));
}

#[test]
fn tag_of_agrees_with_name_addr() {
    for v in [
        "<sip:a@b>;tag=1",
        "\"A <;tag=no>\" <sip:a@b;tag=no>;tag=yes",
        "sip:x@y ;  tag   = 7",
        "sip:x@y;foo=\"a;tag=q\";tag=r",
        "<sip:a@b>",
        "sip:a@b;transport=udp",
        "Bob <sip:b@c>;x=1;TAG=abc",
    ] {
        let expected = NameAddr::parse(v).unwrap();
        assert_eq!(tag_of(v), expected.tag(), "{v}");
    }
    assert_eq!(
        top_via_value(&invite().headers),
        Some("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1")
    );
    let mut h = Headers::new();
    h.push(
        "Via",
        "SIP/2.0/UDP a;branch=z9hG4bK1;x=\"p,q\", SIP/2.0/UDP b",
    );
    assert_eq!(
        top_via_value(&h),
        Some("SIP/2.0/UDP a;branch=z9hG4bK1;x=\"p,q\"")
    );
}

#[test]
fn via_scan_agrees_with_via_parse() {
    let common = [
        "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1;rport",
        "SIP/2.0/TCP [2001:db8::1]:5070;rport=1;branch=z9hG4bKx;received=192.0.2.1",
        "SIP/2.0/UDP host.example.com;branch=z9hG4bKabc",
        "SIP/2.0/WSS a.invalid;branch = z9hG4bKq",
    ];
    let odd = [
        "SIP  /   2.0  /UDP     192.0.2.2;branch=390skdjuw",
        "sip/2.0/udp host:5060;branch=z9hG4bK7",
        "SIP/2.0/UDP\thost;branch=z9hG4bK8",
    ];
    for v in common.iter().chain(odd.iter()) {
        let parsed = crate::sip::header::Via::parse(v).unwrap();
        let expected = (parsed.branch(), parsed.host.as_str(), parsed.port);
        match scan_top_via(v) {
            Some(t) => assert_eq!((t.branch, t.host, t.port), expected, "{v}"),
            None => assert!(odd.contains(v), "{v} should take the fast path"),
        }
        let mut h = Headers::new();
        h.push("Via", *v);
        let got = with_top_via(&h, |t| {
            (t.branch.map(str::to_owned), t.host.to_owned(), t.port)
        });
        assert_eq!(
            got.unwrap(),
            (
                expected.0.map(str::to_owned),
                expected.1.to_owned(),
                expected.2
            )
        );
    }
    assert!(scan_top_via("SIP/2.0/UDP ;branch=z9hG4bK1").is_none());
    assert!(scan_top_via("SIP/2.0/UDP h:99999;branch=z9hG4bK1").is_none());
}

#[test]
fn branch_and_cancel_helpers() {
    assert_eq!(new_branch(0x2a), "z9hG4bK000000000000002a");
    let c = cancel_for(&invite());
    assert_eq!(c.method, Method::Cancel);
    assert_eq!(c.uri, "sip:bob@example.com");
    assert_eq!(c.headers.get_all("Via").count(), 1);
    assert_eq!(c.headers.get("CSeq"), Some("7 CANCEL"));
    assert_eq!(c.headers.get("To"), Some("<sip:bob@example.com>"));
    assert_eq!(c.headers.get("Route"), Some("<sip:proxy.example.com;lr>"));
}

// ---------------------------------------------------------------------------
// The layer as UAS.

#[test]
fn uas_invite_flow_with_rfc6026_accepted() {
    let mut l = layer();
    let mut clock = Clock::new();
    let Incoming::Request { id, request } = incoming(&mut l, invite(), clock.now) else {
        panic!("new INVITE")
    };
    assert_eq!(request.method, Method::Invite);
    assert!(sent(&mut l).is_empty(), "100 waits 200 ms");
    // A retransmission before 200 ms: absorbed, 100 Trying at once.
    clock.advance_ms(100);
    assert!(
        matches!(incoming(&mut l, invite(), clock.now), Incoming::Absorbed { id: a } if a == id)
    );
    let out = sent(&mut l);
    assert_eq!(
        out.iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(100)]
    );
    assert_eq!(out[0].dest, peer(), "symmetric response");
    let ringing = response_to(&request, 180, Some("u1"));
    l.respond(id, &ringing, clock.now).unwrap();
    incoming(&mut l, invite(), clock.now);
    assert_eq!(
        sent(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(180), Some(180)]
    );
    let ok = response_to(&request, 200, Some("u1"));
    l.respond(id, &ok, clock.now).unwrap();
    assert_eq!(sent(&mut l).len(), 1);
    // INVITE retransmissions are now absorbed without a response.
    assert!(matches!(
        incoming(&mut l, invite(), clock.now),
        Incoming::Absorbed { .. }
    ));
    assert!(sent(&mut l).is_empty());
    // The TU's 2xx retransmission passes through.
    l.respond(id, &ok, clock.now).unwrap();
    assert_eq!(sent(&mut l).len(), 1);
    // The ACK for the 2xx has its own branch: for the dialog layer.
    let ack = with_branch(&ack_of(&request, "u1"), "z9hG4bKack2");
    match incoming(&mut l, ack.clone(), clock.now) {
        Incoming::Ack { request, invite } => {
            assert_eq!(request, ack);
            assert_eq!(invite, None);
        }
        other => panic!("{other:?}"),
    }
    // An ACK reusing the INVITE's branch matches the Accepted transaction.
    match incoming(&mut l, ack_of(&request, "u1"), clock.now) {
        Incoming::Ack { invite, .. } => assert_eq!(invite, Some(id)),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.len(), 1);
    run_timers(&mut l, &mut clock, Duration::from_secs(100));
    assert_eq!(clock.elapsed_ms(), 100 + 32_000, "Timer L");
    assert_eq!(events(&mut l), vec![(id, TransactionEvent::Terminated)]);
    assert!(l.is_empty());
    assert_eq!(
        l.respond(id, &ok, clock.now),
        Err(TransactionError::UnknownTransaction(id))
    );
}

#[test]
fn uas_invite_non_2xx_ack_absorbed() {
    let mut l = layer();
    let mut clock = Clock::new();
    let Incoming::Request { id, request } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    l.respond(id, &response_to(&request, 486, Some("u")), clock.now)
        .unwrap();
    sent(&mut l);
    clock.advance_ms(600);
    l.handle_timeout(clock.now);
    assert_eq!(
        sent(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(486)],
        "Timer G"
    );
    assert!(matches!(
        incoming(&mut l, ack_of(&request, "u"), clock.now),
        Incoming::Absorbed { id: a } if a == id
    ));
    assert!(matches!(
        l.get(id),
        Some(Transaction::ServerInvite(m)) if matches!(m.state(), ServerInviteState::Confirmed { code: 486 })
    ));
    assert!(matches!(
        incoming(&mut l, ack_of(&request, "u"), clock.now),
        Incoming::Absorbed { .. }
    ));
    run_timers(&mut l, &mut clock, Duration::from_secs(100));
    assert_eq!(clock.elapsed_ms(), 600 + 5000, "Timer I");
    assert!(l.is_empty());
    assert!(sent(&mut l).is_empty());
}

#[test]
fn timer_h_reports_timeout() {
    let mut l = layer();
    let mut clock = Clock::new();
    let Incoming::Request { id, request } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    l.respond(id, &response_to(&request, 603, Some("u")), clock.now)
        .unwrap();
    run_timers(&mut l, &mut clock, Duration::from_secs(100));
    assert_eq!(
        events(&mut l),
        vec![
            (id, TransactionEvent::Timeout(Timer::H)),
            (id, TransactionEvent::Terminated)
        ]
    );
    // First send + G at 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s.
    assert_eq!(sent(&mut l).len(), 11);
}

#[test]
fn uas_non_invite_over_udp_and_tcp() {
    let mut l = layer();
    let mut clock = Clock::new();
    let Incoming::Request { id, request } = incoming(&mut l, bye(), clock.now) else {
        panic!()
    };
    l.respond(id, &response_to(&request, 200, None), clock.now)
        .unwrap();
    assert_eq!(sent(&mut l).len(), 1);
    assert!(matches!(
        incoming(&mut l, bye(), clock.now),
        Incoming::Absorbed { .. }
    ));
    assert_eq!(
        sent(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(200)],
        "final resent"
    );
    assert_eq!(
        l.respond(id, &response_to(&request, 500, None), clock.now),
        Err(TransactionError::FinalResponseSent)
    );
    run_timers(&mut l, &mut clock, Duration::from_secs(100));
    assert_eq!(clock.elapsed_ms(), 32_000, "Timer J");
    assert!(l.is_empty());

    // Over TCP Timer J is zero: the transaction ends with its response.
    let mut l = layer();
    let Incoming::Request { id, request } =
        l.handle_incoming(Message::Request(bye()), peer(), Transport::Tcp, clock.now)
    else {
        panic!()
    };
    l.respond(id, &response_to(&request, 200, None), clock.now)
        .unwrap();
    let out = sent(&mut l);
    assert_eq!(out[0].transport, Transport::Tcp);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn tcp_invite_has_no_retransmission_timers() {
    let mut l = layer();
    let mut clock = Clock::new();
    let Incoming::Request { id, request } = l.handle_incoming(
        Message::Request(invite()),
        peer(),
        Transport::Tcp,
        clock.now,
    ) else {
        panic!()
    };
    l.respond(id, &response_to(&request, 486, Some("u")), clock.now)
        .unwrap();
    sent(&mut l);
    run_timers(&mut l, &mut clock, Duration::from_secs(10));
    assert!(sent(&mut l).is_empty(), "no Timer G over TCP");
    let ack = ack_of(&request, "u");
    l.handle_incoming(Message::Request(ack), peer(), Transport::Tcp, clock.now);
    assert!(l.is_empty(), "Timer I = 0 over TCP");
}

// ---------------------------------------------------------------------------
// CANCEL, 481, 482, RFC 2543, strays.

#[test]
fn cancel_of_pending_invite() {
    let mut l = layer();
    let clock = Clock::new();
    let Incoming::Request { id: inv, request } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    l.respond(inv, &response_to(&request, 180, Some("u9")), clock.now)
        .unwrap();
    sent(&mut l);
    let cancel = cancel_for(&request);
    let Incoming::Cancel {
        invite: target,
        cancel: cid,
        ..
    } = incoming(&mut l, cancel.clone(), clock.now)
    else {
        panic!("CANCEL matched")
    };
    assert_eq!(target, inv);
    let out = sent(&mut l);
    assert_eq!(out.len(), 1);
    let ok = parse_response(std::str::from_utf8(&out[0].bytes).unwrap());
    assert_eq!(ok.code, 200);
    assert_eq!(ok.headers.get("CSeq"), Some("7 CANCEL"));
    assert_eq!(
        ok.headers.get("To").and_then(tag_of),
        Some("u9"),
        "same tag as the INVITE's responses"
    );
    // A retransmitted CANCEL gets the same 200 again.
    assert!(matches!(
        incoming(&mut l, cancel, clock.now),
        Incoming::Absorbed { id } if id == cid
    ));
    assert_eq!(sent(&mut l)[0].bytes, out[0].bytes);
    // The TU answers the INVITE 487, the peer ACKs it.
    l.respond(inv, &response_to(&request, 487, Some("u9")), clock.now)
        .unwrap();
    assert_eq!(sent(&mut l).iter().map(status_of).next(), Some(Some(487)));
    assert!(matches!(
        incoming(&mut l, ack_of(&request, "u9"), clock.now),
        Incoming::Absorbed { id } if id == inv
    ));
}

#[test]
fn cancel_after_final_and_unmatched_cancel() {
    let mut l = layer();
    let clock = Clock::new();
    let Incoming::Request { id, request } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    l.respond(id, &response_to(&request, 200, Some("u")), clock.now)
        .unwrap();
    sent(&mut l);
    assert!(matches!(
        incoming(&mut l, cancel_for(&request), clock.now),
        Incoming::Answered { code: 200, .. }
    ));
    assert_eq!(sent(&mut l).iter().map(status_of).next(), Some(Some(200)));

    let stray = cancel_for(&with_branch(&invite(), "z9hG4bKnothing"));
    assert!(matches!(
        incoming(&mut l, stray.clone(), clock.now),
        Incoming::Answered { code: 481, .. }
    ));
    let out = sent(&mut l);
    assert_eq!(out.iter().map(status_of).next(), Some(Some(481)));
    let resp = parse_response(std::str::from_utf8(&out[0].bytes).unwrap());
    assert!(
        resp.headers.get("To").and_then(tag_of).is_some(),
        "481 carries a To tag"
    );
    // Its retransmission is absorbed by the 481's transaction.
    assert!(matches!(
        incoming(&mut l, stray, clock.now),
        Incoming::Absorbed { .. }
    ));
    assert_eq!(sent(&mut l)[0].bytes, out[0].bytes);
}

#[test]
fn merged_request_gets_482() {
    let mut l = layer();
    let clock = Clock::new();
    let Incoming::Request { id, .. } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    // The same INVITE forked back to us along another path: new branch.
    let looped = with_branch(&invite(), "z9hG4bKother");
    let Incoming::Answered { id: lid, code: 482 } = incoming(&mut l, looped.clone(), clock.now)
    else {
        panic!("482")
    };
    assert_ne!(lid, id);
    let out = sent(&mut l);
    assert_eq!(
        out.iter().map(status_of).collect::<Vec<_>>(),
        vec![Some(482)]
    );
    // The looped copy's retransmission gets the 482 again, the original
    // still gets its own transaction's treatment.
    assert!(matches!(incoming(&mut l, looped, clock.now), Incoming::Absorbed { id } if id == lid));
    assert!(
        matches!(incoming(&mut l, invite(), clock.now), Incoming::Absorbed { id: a } if a == id)
    );
    // A request with a To tag is never a merge candidate.
    let mut in_dialog = tagged(&with_branch(&invite(), "z9hG4bKre"), "u");
    in_dialog.headers.set("CSeq", "7 INVITE");
    assert!(matches!(
        incoming(&mut l, in_dialog, clock.now),
        Incoming::Request { .. }
    ));
}

#[test]
fn rfc2543_matching() {
    let mut l = layer();
    let clock = Clock::new();
    let old = with_branch(&invite(), "1");
    let Incoming::Request { id, request } = incoming(&mut l, old.clone(), clock.now) else {
        panic!()
    };
    assert!(matches!(l.key(id), Some(TransactionKey::Rfc2543(_))));
    assert!(
        matches!(incoming(&mut l, old.clone(), clock.now), Incoming::Absorbed { id: a } if a == id)
    );
    // Another Request-URI is another transaction.
    let mut other = old.clone();
    other.uri = "sip:carol@example.com".into();
    other.headers.set("Call-ID", "call-2");
    assert!(matches!(
        incoming(&mut l, other, clock.now),
        Incoming::Request { .. }
    ));
    l.respond(id, &response_to(&request, 404, Some("nf")), clock.now)
        .unwrap();
    sent(&mut l);
    // An ACK with the response's To tag matches; another tag does not.
    let wrong = ack_of(&request, "zz");
    assert!(matches!(
        incoming(&mut l, wrong, clock.now),
        Incoming::Ack { invite: None, .. }
    ));
    assert!(matches!(
        incoming(&mut l, ack_of(&request, "nf"), clock.now),
        Incoming::Absorbed { id: a } if a == id
    ));
    // A CANCEL of an RFC 2543 INVITE matches by the same fields.
    let old2 = {
        let mut r = with_branch(&invite(), "2");
        r.headers.set("Call-ID", "call-3");
        r
    };
    let Incoming::Request { id: inv2, .. } = incoming(&mut l, old2.clone(), clock.now) else {
        panic!()
    };
    assert!(matches!(
        incoming(&mut l, cancel_for(&old2), clock.now),
        Incoming::Cancel { invite, .. } if invite == inv2
    ));
}

#[test]
fn strays_are_dropped() {
    let mut l = layer();
    let clock = Clock::new();
    let resp = response_to(&invite(), 200, Some("x"));
    assert!(matches!(
        incoming(&mut l, resp, clock.now),
        Incoming::StrayResponse { code: 200 }
    ));
    let mut ack = with_method(&invite(), Method::Ack);
    ack.headers
        .set("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKlost");
    assert!(matches!(
        incoming(&mut l, ack, clock.now),
        Incoming::StrayAck
    ));
    assert!(sent(&mut l).is_empty());
    assert!(l.is_empty());
}

#[test]
fn malformed_cseq_is_answered_400() {
    let mut l = layer();
    let clock = Clock::new();
    let mut r = bye();
    r.headers.set("CSeq", "99999999999 BYE");
    let mut l2 = layer();
    assert!(matches!(
        incoming(&mut l2, r.clone(), clock.now),
        Incoming::Request { .. }
    ));
    // Only RFC 2543 keys read the CSeq number of a request.
    let r = with_branch(&r, "old");
    assert!(matches!(
        incoming(&mut l, r, clock.now),
        Incoming::Malformed { .. }
    ));
    assert_eq!(sent(&mut l).iter().map(status_of).next(), Some(Some(400)));
}

// ---------------------------------------------------------------------------
// The layer as UAC.

#[test]
fn uac_invite_flow() {
    let mut l = layer();
    let mut clock = Clock::new();
    let dest: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let id = l
        .send_request(&invite(), dest, Transport::Udp, clock.now)
        .unwrap();
    let out = sent(&mut l);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, dest);
    assert_eq!(
        l.send_request(&invite(), dest, Transport::Udp, clock.now),
        Err(TransactionError::Duplicate)
    );
    clock.advance_ms(500);
    l.handle_timeout(clock.now);
    assert_eq!(sent(&mut l)[0].bytes, out[0].bytes, "Timer A");
    let ringing = response_to(&invite(), 180, Some("b"));
    assert!(matches!(
        incoming(&mut l, ringing, clock.now),
        Incoming::Response { id: r } if r == id
    ));
    let ok = response_to(&invite(), 200, Some("b"));
    incoming(&mut l, ok.clone(), clock.now);
    incoming(&mut l, ok, clock.now);
    let codes: Vec<u16> = events(&mut l)
        .into_iter()
        .filter_map(|(_, e)| match e {
            TransactionEvent::Response(r) => Some(r.code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![180, 200, 200]);
    // The TU ACKs the 2xx itself.
    let mut ack = with_branch(&with_method(&invite(), Method::Ack), "z9hG4bKack");
    ack.headers.set("To", "<sip:bob@example.com>;tag=b");
    assert_eq!(
        l.send_request(&ack, dest, Transport::Udp, clock.now),
        Err(TransactionError::AckIsNotATransaction)
    );
    l.send_ack(&ack, dest, Transport::Udp).unwrap();
    assert!(sent(&mut l)[0].bytes.starts_with(b"ACK "));
    assert_eq!(
        l.send_ack(&invite(), dest, Transport::Udp),
        Err(TransactionError::NotAck(Method::Invite))
    );
    run_timers(&mut l, &mut clock, Duration::from_secs(100));
    assert_eq!(clock.elapsed_ms(), 500 + 32_000, "Timer M");
    assert!(l.is_empty());
}

#[test]
fn uac_non_invite_timeout_f() {
    let mut l = layer();
    let mut clock = Clock::new();
    let dest: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let id = l
        .send_request(&bye(), dest, Transport::Udp, clock.now)
        .unwrap();
    run_timers(&mut l, &mut clock, Duration::from_secs(100));
    assert_eq!(sent(&mut l).len(), 11, "first send and 10 Timer E");
    assert_eq!(
        events(&mut l),
        vec![
            (id, TransactionEvent::Timeout(Timer::F)),
            (id, TransactionEvent::Terminated)
        ]
    );
    assert!(l.is_empty());
    // The response now finds nothing.
    assert!(matches!(
        incoming(&mut l, response_to(&bye(), 200, None), clock.now),
        Incoming::StrayResponse { .. }
    ));
}

#[test]
fn uac_cancel_is_its_own_transaction() {
    let mut l = layer();
    let clock = Clock::new();
    let dest: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let inv = l
        .send_request(&invite(), dest, Transport::Tcp, clock.now)
        .unwrap();
    let can = l
        .send_request(&cancel_for(&invite()), dest, Transport::Tcp, clock.now)
        .unwrap();
    assert_ne!(inv, can);
    let cancel_ok = response_to(&cancel_for(&invite()), 200, Some("b"));
    assert!(
        matches!(incoming(&mut l, cancel_ok, clock.now), Incoming::Response { id } if id == can)
    );
    assert!(l.get(can).is_none(), "Timer K = 0 over TCP");
    let terminated = response_to(&invite(), 487, Some("b"));
    assert!(
        matches!(incoming(&mut l, terminated, clock.now), Incoming::Response { id } if id == inv)
    );
    let out = sent(&mut l);
    assert!(out.last().is_some_and(|o| o.bytes.starts_with(b"ACK ")));
    assert!(l.is_empty(), "Timer D = 0 over TCP");
}

#[test]
fn transport_error_through_the_layer() {
    let mut l = layer();
    let clock = Clock::new();
    let dest: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let id = l
        .send_request(&bye(), dest, Transport::Tcp, clock.now)
        .unwrap();
    l.handle_transport_error(id, clock.now).unwrap();
    assert_eq!(
        events(&mut l),
        vec![
            (id, TransactionEvent::TransportError),
            (id, TransactionEvent::Terminated)
        ]
    );
    assert!(l.is_empty());
    assert_eq!(
        l.handle_transport_error(id, clock.now),
        Err(TransactionError::UnknownTransaction(id))
    );
    let Incoming::Request { id, .. } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    let cid = l
        .send_request(&bye(), dest, Transport::Udp, clock.now)
        .unwrap();
    assert_eq!(
        l.respond(cid, &response_to(&bye(), 200, None), clock.now),
        Err(TransactionError::NotServer(cid))
    );
    l.handle_transport_error(id, clock.now).unwrap();
    assert!(l.get(id).is_some(), "RFC 6026: server INVITE survives");
}

#[test]
fn stale_wakeups_are_skipped() {
    let mut l = layer();
    let mut clock = Clock::new();
    let Incoming::Request { id, request } = incoming(&mut l, invite(), clock.now) else {
        panic!()
    };
    // Trying timer at 200 ms, replaced by Timer L at 32 s.
    l.respond(id, &response_to(&request, 200, Some("u")), clock.now)
        .unwrap();
    assert_eq!(l.poll_timeout(), Some(clock.now + Duration::from_secs(32)));
    clock.advance_ms(200);
    l.handle_timeout(clock.now);
    assert_eq!(sent(&mut l).len(), 1, "only the 200; no 100 Trying");
}

#[test]
fn a_whole_call_through_two_layers() {
    // UAC layer and UAS layer wired back to back over "UDP".
    let mut uac = layer();
    let mut uas = layer();
    let mut clock = Clock::new();
    let uac_addr = peer();
    let uas_addr: SocketAddr = "192.0.2.2:5060".parse().unwrap();
    let carry = |from: &mut TransactionLayer,
                 to: &mut TransactionLayer,
                 src: SocketAddr,
                 now: Instant|
     -> Vec<Incoming> {
        let mut seen = Vec::new();
        while let Some(o) = from.poll_transmit() {
            let m = parse(std::str::from_utf8(&o.bytes).unwrap_or_default());
            seen.push(to.handle_incoming(m, src, o.transport, now));
        }
        seen
    };
    let inv_id = uac
        .send_request(&invite(), uas_addr, Transport::Udp, clock.now)
        .unwrap();
    let mut got = carry(&mut uac, &mut uas, uac_addr, clock.now);
    let Some(Incoming::Request { id: sid, request }) = got.pop() else {
        panic!()
    };
    uas.respond(sid, &response_to(&request, 180, Some("s")), clock.now)
        .unwrap();
    uas.respond(sid, &response_to(&request, 200, Some("s")), clock.now)
        .unwrap();
    let got = carry(&mut uas, &mut uac, uas_addr, clock.now);
    assert_eq!(got.len(), 2);
    let ev = events(&mut uac);
    assert!(ev.iter().all(|(id, _)| *id == inv_id));
    let mut ack = with_branch(&with_method(&invite(), Method::Ack), "z9hG4bKack");
    ack.headers.set("To", "<sip:bob@example.com>;tag=s");
    uac.send_ack(&ack, uas_addr, Transport::Udp).unwrap();
    let got = carry(&mut uac, &mut uas, uac_addr, clock.now);
    assert!(matches!(got[..], [Incoming::Ack { invite: None, .. }]));
    let bye_id = uac
        .send_request(&bye(), uas_addr, Transport::Udp, clock.now)
        .unwrap();
    let mut got = carry(&mut uac, &mut uas, uac_addr, clock.now);
    let Some(Incoming::Request { id: bid, request }) = got.pop() else {
        panic!()
    };
    uas.respond(bid, &response_to(&request, 200, None), clock.now)
        .unwrap();
    carry(&mut uas, &mut uac, uas_addr, clock.now);
    assert!(events(&mut uac).iter().any(
        |(id, e)| *id == bye_id && matches!(e, TransactionEvent::Response(r) if r.code == 200)
    ));
    for l in [&mut uac, &mut uas] {
        run_timers(l, &mut clock, Duration::from_secs(1000));
        assert!(l.is_empty());
    }
}

/// Parse + transaction handling throughput of an INVITE/100/200/ACK/BYE/200
/// exchange, measured for each end as one node on one core: the UAS parses
/// and handles INVITE, ACK and BYE and sends 100, 200 and 200 through its
/// layer; the UAC sends INVITE, ACK and BYE and parses and handles the
/// three responses. Both include the timer work that retires each call's
/// transactions (simulated time runs at 1000 calls/s, so about 32 000
/// calls' transactions are live). Building the TU's messages is not
/// counted. Run:
/// `cargo test --release -p switchboard-media --lib sip::transaction::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement; run in release"]
fn throughput() {
    use crate::sip::parse::{parse_datagram, Limits, Parsed};
    const INVITE: &str = "INVITE sip:*43@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=BRANCH;rport\r\nFrom: <sip:1001@127.0.0.1:5070>;tag=abc\r\nTo: <sip:*43@127.0.0.1:5060>\r\nCall-ID: CALLID\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n";
    const ACK: &str = "ACK sip:%2A43@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=BRANCH;rport\r\nFrom: <sip:1001@127.0.0.1:5070>;tag=abc\r\nTo: <sip:*43@127.0.0.1:5060>;tag=xyz\r\nCall-ID: CALLID\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    const BYE: &str = "BYE sip:%2A43@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=BRANCH;rport\r\nFrom: <sip:1001@127.0.0.1:5070>;tag=abc\r\nTo: <sip:*43@127.0.0.1:5060>;tag=xyz\r\nCall-ID: CALLID\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let limits = Limits::default();
    let parse = |b: &[u8]| match parse_datagram(b, &limits) {
        Ok(Parsed::Message(m)) => m,
        other => panic!("{other:?}"),
    };
    let fill = |t: &str, n: u64, k: u64| {
        t.replace("BRANCH", &new_branch(3 * n + k))
            .replace("CALLID", &format!("{n}@127.0.0.1"))
    };
    let calls = 200_000u64;
    let (uac_addr, uas_addr) = (peer(), "192.0.2.2:5060".parse().unwrap());
    let (mut uas, mut uac) = (layer(), layer());
    let (mut uas_time, mut uac_time, mut parse_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut now = Instant::now();
    for n in 0..calls {
        // Inputs, prepared outside the measurement.
        let wire = [fill(INVITE, n, 0), fill(ACK, n, 1), fill(BYE, n, 2)];
        let Message::Request(invite) = parse(wire[0].as_bytes()) else {
            panic!()
        };
        let Message::Request(ack) = parse(wire[1].as_bytes()) else {
            panic!()
        };
        let Message::Request(bye) = parse(wire[2].as_bytes()) else {
            panic!()
        };
        let trying = Response::to(&invite, 100, "Trying");
        let mut ok = Response::to(&invite, 200, "OK");
        ok.headers.set("To", "<sip:*43@127.0.0.1:5060>;tag=xyz");
        let bye_ok = Response::to(&bye, 200, "OK");
        let responses = [trying.to_bytes(), ok.to_bytes(), bye_ok.to_bytes()];
        let tick = n % 100 == 99;
        if tick {
            now += Duration::from_millis(100);
        }

        let started = std::time::Instant::now();
        for w in &wire {
            std::hint::black_box(parse(w.as_bytes()));
        }
        parse_time += started.elapsed();

        // The UAS node.
        let started = std::time::Instant::now();
        let Incoming::Request { id, .. } =
            uas.handle_incoming(parse(wire[0].as_bytes()), uac_addr, Transport::Udp, now)
        else {
            panic!()
        };
        uas.respond(id, &trying, now).unwrap();
        uas.respond(id, &ok, now).unwrap();
        uas.handle_incoming(parse(wire[1].as_bytes()), uac_addr, Transport::Udp, now);
        let Incoming::Request { id, .. } =
            uas.handle_incoming(parse(wire[2].as_bytes()), uac_addr, Transport::Udp, now)
        else {
            panic!()
        };
        uas.respond(id, &bye_ok, now).unwrap();
        if tick {
            uas.handle_timeout(now);
        }
        while uas.poll_transmit().is_some() {}
        while uas.poll_event().is_some() {}
        uas_time += started.elapsed();

        // The UAC node.
        let started = std::time::Instant::now();
        uac.send_request(&invite, uas_addr, Transport::Udp, now)
            .unwrap();
        uac.handle_incoming(parse(&responses[0]), uas_addr, Transport::Udp, now);
        uac.handle_incoming(parse(&responses[1]), uas_addr, Transport::Udp, now);
        uac.send_ack(&ack, uas_addr, Transport::Udp).unwrap();
        uac.send_request(&bye, uas_addr, Transport::Udp, now)
            .unwrap();
        uac.handle_incoming(parse(&responses[2]), uas_addr, Transport::Udp, now);
        if tick {
            uac.handle_timeout(now);
        }
        while uac.poll_transmit().is_some() {}
        while uac.poll_event().is_some() {}
        uac_time += started.elapsed();
    }
    let rate = |t: Duration| (calls * 6) as f64 / t.as_secs_f64();
    println!(
        "UAS parse only: {:.2} us per call",
        parse_time.as_secs_f64() * 1e6 / calls as f64
    );
    println!(
        "UAS node: {:.2} us per call",
        uas_time.as_secs_f64() * 1e6 / calls as f64
    );
    println!(
        "UAS node: {:.0} messages/s; UAC node: {:.0} messages/s; both ends on one core: {:.0} messages/s (live: uas {}, uac {})",
        rate(uas_time),
        rate(uac_time),
        rate(uas_time + uac_time),
        uas.len(),
        uac.len()
    );
}

// ---------------------------------------------------------------------------
// Property tests: random inputs to each machine.

#[derive(Debug, Clone)]
enum Op {
    /// The peer retransmits the request (server machines).
    Retransmit,
    /// The peer ACKs (server INVITE).
    Ack,
    /// The TU sends a response (server) or the peer does (client).
    Respond(u16),
    /// Time passes.
    Advance(u64),
    /// Time jumps to the next deadline.
    NextTimer,
    TransportError,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Retransmit),
        1 => Just(Op::Ack),
        3 => prop::sample::select(vec![100u16, 180, 183, 200, 202, 302, 404, 486, 503, 603]).prop_map(Op::Respond),
        2 => (0u64..40_000).prop_map(Op::Advance),
        3 => Just(Op::NextTimer),
        1 => Just(Op::TransportError),
    ]
}

/// The common checks after every step: nothing sent once Terminated, no
/// deadline in the past after a timeout run, exactly one Terminated event.
#[derive(Default)]
struct Watch {
    terminated_events: usize,
    was_terminated: bool,
}

impl Watch {
    fn step(
        &mut self,
        terminated: bool,
        transmits: &[Bytes],
        events: &[TransactionEvent],
        timeout: Option<Instant>,
        now: Instant,
        ran_timers: bool,
    ) -> Result<(), TestCaseError> {
        if self.was_terminated {
            prop_assert!(transmits.is_empty(), "sent after Terminated");
            prop_assert!(terminated);
        }
        self.terminated_events += events
            .iter()
            .filter(|e| **e == TransactionEvent::Terminated)
            .count();
        prop_assert!(self.terminated_events <= 1);
        prop_assert_eq!(terminated, self.terminated_events == 1);
        if terminated {
            prop_assert_eq!(timeout, None);
        }
        if ran_timers {
            prop_assert!(timeout.is_none_or(|t| t > now), "expired timer left armed");
        }
        self.was_terminated = terminated;
        Ok(())
    }
}

fn advance(clock: &mut Clock, op: &Op, next: Option<Instant>) -> bool {
    match op {
        Op::Advance(ms) => {
            clock.advance_ms(*ms);
            true
        }
        Op::NextTimer => {
            if let Some(at) = next {
                clock.now = clock.now.max(at);
            }
            true
        }
        _ => false,
    }
}

fn is_2xx(b: &[u8]) -> bool {
    b.starts_with(b"SIP/2.0 2")
}

proptest! {
    #[test]
    fn server_invite_invariants(reliable in any::<bool>(), ops in prop::collection::vec(op(), 0..40)) {
        let mut clock = Clock::new();
        let inv = invite();
        let mut m = ServerInvite::new(&inv, reliable, TimerConfig::default(), clock.now);
        let mut watch = Watch::default();
        let mut final_sent: Option<Bytes> = None;
        for op in &ops {
            let mut ran = false;
            match op {
                Op::Retransmit => m.handle_request(&inv, clock.now),
                Op::Ack => m.handle_request(&ack_of(&inv, "u"), clock.now),
                Op::Respond(code) => {
                    let resp = response_to(&inv, *code, Some("u"));
                    let r = m.send_response(&resp, clock.now);
                    match (&final_sent, r) {
                        (None, r) => {
                            prop_assert!(r.is_ok() || m.is_terminated());
                            if r.is_ok() && *code >= 200 {
                                final_sent = Some(Bytes::from(resp.to_bytes()));
                            }
                        }
                        (Some(f), Ok(())) => prop_assert!(is_2xx(f) && (200..300).contains(code)),
                        (Some(_), Err(_)) => {}
                    }
                }
                Op::TransportError => m.handle_transport_error(clock.now),
                _ => {
                    ran = advance(&mut clock, op, m.poll_timeout());
                    m.handle_timeout(clock.now);
                }
            }
            let tx: Vec<Bytes> = std::iter::from_fn(|| m.poll_transmit()).map(|t| t.bytes).collect();
            let ev: Vec<TransactionEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            if let Some(f) = &final_sent {
                for b in &tx {
                    if is_2xx(f) {
                        prop_assert!(is_2xx(b), "non-2xx after a 2xx");
                    } else {
                        prop_assert_eq!(b, f, "final response changed");
                    }
                }
            }
            if reliable {
                prop_assert!(tx.len() <= 1, "a reliable transport gets no timer retransmissions");
            }
            watch.step(m.is_terminated(), &tx, &ev, m.poll_timeout(), clock.now, ran)?;
        }
    }

    #[test]
    fn server_non_invite_invariants(reliable in any::<bool>(), ops in prop::collection::vec(op(), 0..40)) {
        let mut clock = Clock::new();
        let req = bye();
        let mut m = ServerNonInvite::new(&req, reliable, TimerConfig::default(), clock.now);
        let mut watch = Watch::default();
        let mut final_sent: Option<Bytes> = None;
        for op in &ops {
            let mut ran = false;
            match op {
                Op::Retransmit | Op::Ack => m.handle_request(&req, clock.now),
                Op::Respond(code) => {
                    let resp = response_to(&req, *code, None);
                    let r = m.send_response(&resp, clock.now);
                    if final_sent.is_some() {
                        prop_assert!(r.is_err());
                    } else if r.is_ok() && *code >= 200 {
                        final_sent = Some(Bytes::from(resp.to_bytes()));
                    }
                }
                Op::TransportError => m.handle_transport_error(clock.now),
                _ => {
                    ran = advance(&mut clock, op, m.poll_timeout());
                    m.handle_timeout(clock.now);
                }
            }
            let tx: Vec<Bytes> = std::iter::from_fn(|| m.poll_transmit()).map(|t| t.bytes).collect();
            let ev: Vec<TransactionEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            if let (Some(f), Op::Retransmit | Op::Ack | Op::Advance(_) | Op::NextTimer) = (&final_sent, op) {
                for b in &tx {
                    prop_assert_eq!(b, f, "final response changed");
                }
            }
            watch.step(m.is_terminated(), &tx, &ev, m.poll_timeout(), clock.now, ran)?;
        }
    }

    #[test]
    fn client_invite_invariants(reliable in any::<bool>(), ops in prop::collection::vec(op(), 0..40)) {
        let mut clock = Clock::new();
        let mut m = ClientInvite::new(&invite(), reliable, TimerConfig::default(), clock.now);
        let first = m.poll_transmit().map(|t| t.bytes);
        prop_assert!(first.is_some());
        let mut watch = Watch::default();
        let mut ack: Option<Bytes> = None;
        let mut finals = 0;
        let mut accepted = false;
        for op in &ops {
            let mut ran = false;
            match op {
                Op::Respond(code) => m.handle_response(response_to(&invite(), *code, Some("u")), clock.now),
                Op::TransportError => m.handle_transport_error(clock.now),
                Op::Retransmit | Op::Ack => {}
                _ => {
                    ran = advance(&mut clock, op, m.poll_timeout());
                    m.handle_timeout(clock.now);
                }
            }
            let tx: Vec<Bytes> = std::iter::from_fn(|| m.poll_transmit()).map(|t| t.bytes).collect();
            let ev: Vec<TransactionEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            for b in &tx {
                if b.starts_with(b"ACK ") {
                    prop_assert!(!accepted, "the machine never ACKs a 2xx");
                    match &ack {
                        None => ack = Some(b.clone()),
                        Some(a) => prop_assert_eq!(a, b, "ACK changed"),
                    }
                } else {
                    prop_assert_eq!(Some(b), first.as_ref());
                    prop_assert!(!reliable, "INVITE retransmitted over a reliable transport");
                    prop_assert!(ack.is_none() && !accepted, "INVITE resent after a final response");
                }
            }
            for e in &ev {
                if let TransactionEvent::Response(r) = e {
                    if r.code >= 300 {
                        finals += 1;
                        prop_assert!(!accepted);
                    }
                    if (200..300).contains(&r.code) {
                        accepted = true;
                    }
                }
            }
            prop_assert!(finals <= 1, "a non-2xx final reached the TU twice");
            watch.step(m.is_terminated(), &tx, &ev, m.poll_timeout(), clock.now, ran)?;
        }
    }

    #[test]
    fn client_non_invite_invariants(reliable in any::<bool>(), ops in prop::collection::vec(op(), 0..40)) {
        let mut clock = Clock::new();
        let mut m = ClientNonInvite::new(&bye(), reliable, TimerConfig::default(), clock.now);
        let first = m.poll_transmit().map(|t| t.bytes);
        let mut watch = Watch::default();
        let mut finals = 0;
        for op in &ops {
            let mut ran = false;
            match op {
                Op::Respond(code) => m.handle_response(response_to(&bye(), *code, Some("u")), clock.now),
                Op::TransportError => m.handle_transport_error(clock.now),
                Op::Retransmit | Op::Ack => {}
                _ => {
                    ran = advance(&mut clock, op, m.poll_timeout());
                    m.handle_timeout(clock.now);
                }
            }
            let tx: Vec<Bytes> = std::iter::from_fn(|| m.poll_transmit()).map(|t| t.bytes).collect();
            let ev: Vec<TransactionEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            for b in &tx {
                prop_assert_eq!(Some(b), first.as_ref());
                prop_assert!(!reliable && finals == 0);
            }
            finals += ev.iter().filter(|e| matches!(e, TransactionEvent::Response(r) if r.code >= 200)).count();
            prop_assert!(finals <= 1);
            watch.step(m.is_terminated(), &tx, &ev, m.poll_timeout(), clock.now, ran)?;
        }
    }

    /// Random traffic through the layer: no panics, every response goes back
    /// to its source, and once time runs out every transaction is gone.
    #[test]
    fn layer_never_leaks(steps in prop::collection::vec((0u8..10, 0u8..3, 0u64..5_000), 0..60)) {
        let mut l = layer();
        let mut clock = Clock::new();
        let mut pending: Vec<(TransactionId, Request)> = Vec::new();
        let dest: SocketAddr = "198.51.100.7:5060".parse().unwrap_or_else(|_| unreachable!());
        for (kind, which, ms) in steps {
            let call = |r: &Request| {
                let mut r = with_branch(r, &format!("z9hG4bKc{which}"));
                r.headers.set("Call-ID", format!("call-{which}"));
                r
            };
            let result = match kind {
                0 => Some(incoming(&mut l, call(&invite()), clock.now)),
                1 => Some(incoming(&mut l, call(&bye()), clock.now)),
                2 => Some(incoming(&mut l, ack_of(&call(&invite()), "u"), clock.now)),
                3 => Some(incoming(&mut l, cancel_for(&call(&invite())), clock.now)),
                4 => Some(incoming(&mut l, response_to(&call(&invite()), 180 + u16::from(which) * 100, Some("u")), clock.now)),
                5 => {
                    if let Some((id, req)) = pending.pop() {
                        let code = [180, 200, 487][usize::from(which)];
                        let _ = l.respond(id, &response_to(&req, code, Some("u")), clock.now);
                        if code == 180 {
                            pending.push((id, req));
                        }
                    }
                    None
                }
                6 => {
                    let _ = l.send_request(&call(&invite()), dest, Transport::Udp, clock.now);
                    None
                }
                7 if which == 0 => {
                    let _ = l.send_request(&cancel_for(&call(&invite())), dest, Transport::Udp, clock.now);
                    None
                }
                7 => {
                    let _ = l.send_request(&call(&bye()), dest, Transport::Tcp, clock.now);
                    None
                }
                _ => {
                    clock.advance_ms(ms);
                    l.handle_timeout(clock.now);
                    None
                }
            };
            if let Some(Incoming::Request { id, request }) = result {
                pending.push((id, request));
            }
            while let Some(o) = l.poll_transmit() {
                if o.bytes.starts_with(b"SIP/2.0 ") {
                    prop_assert_eq!(o.dest, peer());
                } else {
                    prop_assert_eq!(o.dest, dest);
                }
            }
            while l.poll_event().is_some() {}
        }
        // Every TU answer still owed: give a final response; every INVITE
        // of ours still ringing: CANCEL it (§9.1). Then let time run.
        for (id, req) in pending {
            let _ = l.respond(id, &response_to(&req, 500, Some("u")), clock.now);
        }
        run_timers(&mut l, &mut clock, Duration::from_secs(3600));
        for which in 0..3u8 {
            let mut inv = with_branch(&invite(), &format!("z9hG4bKc{which}"));
            inv.headers.set("Call-ID", format!("call-{which}"));
            if let Some(id) = l.find(&TransactionKey::for_client_request(&inv).unwrap_or_else(|_| unreachable!())) {
                if matches!(l.get(id), Some(Transaction::ClientInvite(m)) if matches!(m.state(), ClientInviteState::Proceeding { .. })) {
                    prop_assert!(l.send_request(&cancel_for(&inv), dest, Transport::Udp, clock.now).is_ok());
                }
            }
        }
        run_timers(&mut l, &mut clock, Duration::from_secs(7200));
        prop_assert!(l.is_empty(), "{} transactions left", l.len());
        prop_assert_eq!(l.poll_timeout(), None);
    }
}
