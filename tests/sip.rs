//! SIP against a running node: the RFC 4475 torture messages over the
//! wire, and SIPp as the peer for OPTIONS, REGISTER with digest and calls
//! to the echo test over UDP and TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sipp, Node, Peer};
use std::time::Duration;
use switchboard_media::sip::message::Message;
use switchboard_media::sip::parse::{parse_datagram, Limits, Parsed};
use switchboard_media::sip::transaction::TransactionKey;

/// What the node must answer to each RFC 4475 message (None: no answer,
/// as for a response that matches no transaction).
fn expected(name: &str) -> Option<u16> {
    Some(match name {
        "TC_BADVERS_V" => 505,
        "TC_INTMETH" | "TC_ESC02_V" | "TC_MISMATCH02_V" => 501,
        "TC_UNKSCM_V" | "TC_NOVELSC_V" => 416,
        "TC_BEXT01_V" => 420,
        "TC_INVUT_V" => 415,
        "TC_MPART01" => 405,
        // REGISTERs are challenged first (RFC 4475 §3.3.7: an unknown
        // authorization scheme gets a fresh challenge).
        "TC_CPARAM01_V" | "TC_CPARAM02_V" | "TC_ESCNULL_V" | "TC_REGAUT01_V" | "TC_REGESCRT_V"
        | "TC_DBLREQ" => 401,
        // Named _V in the corpus, but RFC 4475 §3.1.2.4 puts it among the
        // invalid messages: "respond with a 400 Bad Request due to the CSeq
        // error" (2^65 does not fit CSeq's 32 bits).
        "TC_SCALAR02_V" => 400,
        // A registrar refuses to bind an address of an unknown scheme.
        "TC_UNKSM2_V" => 416,
        // OPTIONS to the node: 200, Max-Forwards 0 included (§3.3.11).
        "TC_BADBRANCH_V" | "TC_LWSDISP_V" | "TC_SEMIURI_V" | "TC_TRANSPORTS_V" | "TC_ZEROMF_V"
        | "TC_MISMATCH01_V" => 200,
        // INVITEs to users nobody registered.
        "TC_BADDATE_V" | "TC_ESC01_V" | "TC_ESCRURI_V" | "TC_LONGREQ_V" | "TC_LWSSTART_V"
        | "TC_SDP01_V" => 404,
        // WSINV carries a To tag: an in-dialog request for no dialog.
        "TC_WSINV" => 481,
        // Responses matching no transaction are dropped (§18.1.2).
        "TC_BCAST_V" | "TC_BIGCODE_V" | "TC_NOREASON_V" | "TC_UNREASON_V" | "TC_SCALARLG_V" => {
            return None
        }
        n if n.ends_with("_I") => 400,
        other => panic!("no expectation for {other}"),
    })
}

#[test]
fn rfc4475_messages_get_the_right_answer_and_the_node_keeps_serving() {
    let node = Node::start();
    let dir = common::repo("tests/data/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    assert!(files.len() >= 45, "corpus has {} files", files.len());
    let mut wrong = Vec::new();
    // The corpus reuses Via branches (CPARAM01/02 and REGESCRT, NOVELSC and
    // UNKSCM): by RFC 3261 §17.2.3 such a message is a retransmission of the
    // earlier one while its transaction lives, so it goes to a fresh node.
    let mut seen = std::collections::HashSet::new();
    let mut fresh: Option<Node> = None;
    for path in files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_owned();
        let data = std::fs::read(&path).expect("read");
        let key = match parse_datagram(&data, &Limits::default()) {
            Ok(Parsed::Message(Message::Request(r))) => TransactionKey::for_server_request(&r).ok(),
            _ => None,
        };
        let reused = key.is_some_and(|k| !seen.insert(k));
        let node = if reused {
            fresh.insert(Node::start())
        } else {
            &node
        };
        let got = node.udp_exchange(&data).map(|(c, _)| c);
        let want = expected(&name);
        let ok = match (want, got) {
            // An invalid message may also be dropped when it cannot be answered.
            (Some(400), None) => true,
            (w, g) => w == g,
        };
        if !ok {
            wrong.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        if name.ends_with("_V") && name != "TC_SCALAR02_V" {
            assert_ne!(got, Some(400), "{name}: a valid message was refused as bad");
        }
        assert_eq!(
            node.options(),
            Some(200),
            "node stopped serving after {name}"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn sipp_options() {
    let node = Node::start();
    let (ok, errors) = sipp(&node, "options", &["-s", "switchboard"]);
    assert!(ok, "{errors}");
}

#[test]
fn sipp_register_with_digest_udp_and_tcp() {
    let node = Node::start();
    let (ok, errors) = sipp(
        &node,
        "register",
        &["-s", "1001", "-au", "1001", "-ap", "pass1001"],
    );
    assert!(ok, "udp: {errors}");
    let (ok, errors) = sipp(
        &node,
        "register",
        &["-t", "t1", "-s", "1002", "-au", "1002", "-ap", "pass1002"],
    );
    assert!(ok, "tcp: {errors}");
    // A wrong password is refused.
    let (ok, errors) = sipp(
        &node,
        "register",
        &["-s", "1003", "-au", "1003", "-ap", "wrong"],
    );
    assert!(!ok);
    assert!(errors.contains("403"), "{errors}");
}

#[test]
fn sipp_calls_the_echo_test_over_udp_and_tcp() {
    let mut node = Node::start();
    let (ok, errors) = sipp(&node, "echo_call", &["-s", "*43"]);
    assert!(ok, "udp: {errors}");
    let (ok, errors) = sipp(&node, "echo_call", &["-t", "t1", "-s", "*43"]);
    assert!(ok, "tcp: {errors}");
    assert!(node.wait_log("call ended by caller", std::time::Duration::from_secs(2)));
    // dtmf_2833_1.pcap holds one press of `1` (payload type 101, end
    // packet sent three times): reported once per call.
    assert_eq!(node.count_log("dtmf received key=1"), 2, "{:?}", node.lines);
}

#[test]
fn unknown_number_is_404_registered_but_absent_is_480_and_an_extension_asks_for_credentials() {
    let node = Node::start();
    let invite = |from: &str, user: &str| {
        format!(
            "INVITE sip:{user}@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{1}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=p\r\nTo: <sip:{user}@{0}>\r\nCall-ID: c-{1}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n",
            node.sip,
            common::rand_u32()
        )
    };
    assert_eq!(
        node.udp_exchange(invite("x", "5555").as_bytes())
            .map(|r| r.0),
        Some(404)
    );
    assert_eq!(
        node.udp_exchange(invite("x", "1002").as_bytes())
            .map(|r| r.0),
        Some(480)
    );
    // From one extension to another: only with the caller's password.
    let (code, resp) = node
        .udp_exchange(invite("1001", "1002").as_bytes())
        .expect("an answer");
    assert_eq!(code, 407, "{resp}");
    let challenge = common::header(&resp, "Proxy-Authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Digest realm="), "{resp}");
}

fn invite_to_echo(node: &Node, peer: &Peer, branch: &str, call_id: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        peer.port() + 2
    );
    format!(
        "INVITE sip:*43@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: <sip:*43@{0}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:{1}>\r\nContent-Type: application/sdp\r\nContent-Length: {2}\r\n\r\n{sdp}",
        node.sip,
        peer.port(),
        sdp.len()
    )
}

#[test]
fn invite_retransmission_is_one_call_and_a_late_cancel_changes_nothing() {
    let mut node = Node::start();
    let peer = Peer::new(&node);
    let branch = format!("z9hG4bK{}", common::rand_u32());
    let call_id = format!("rtx-{}", common::rand_u32());
    let invite = invite_to_echo(&node, &peer, &branch, &call_id);
    peer.send(&invite);
    let ok = peer
        .recv_starting("SIP/2.0 200", Duration::from_secs(2))
        .expect("200 to the INVITE");
    let to = common::header(&ok, "To").unwrap().to_owned();
    // The same INVITE again: absorbed by the transaction, not a new call;
    // the 200 keeps coming until the ACK (RFC 3261 §13.3.1.4).
    peer.send(&invite);
    assert!(peer
        .recv_starting("SIP/2.0 200", Duration::from_secs(2))
        .is_some());
    // CANCEL after the 200: 200 for the CANCEL, and no 487 (§9.2).
    peer.send(&format!(
        "CANCEL sip:*43@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: <sip:*43@{0}>\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        node.sip,
        peer.port()
    ));
    let got = peer.recv_all(Duration::from_millis(1500));
    assert!(
        got.iter()
            .any(|m| m.starts_with("SIP/2.0 200") && m.contains("CANCEL")),
        "{got:?}"
    );
    assert!(!got.iter().any(|m| m.starts_with("SIP/2.0 487")), "{got:?}");
    let ack_bye = |method: &str, cseq: u32| {
        format!(
            "{method} sip:*43@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch=z9hG4bK{2}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            node.sip,
            peer.port(),
            common::rand_u32()
        )
    };
    peer.send(&ack_bye("ACK", 1));
    peer.send(&ack_bye("BYE", 2));
    assert!(peer
        .recv_starting("SIP/2.0 200", Duration::from_secs(2))
        .is_some_and(|m| m.contains("BYE")));
    assert!(node.wait_log("call ended by caller", Duration::from_secs(2)));
    assert_eq!(node.count_log("call answered"), 1);
}

#[test]
fn sha256_digest_is_offered_when_configured_and_accepted() {
    use sha2::Digest;
    let node = Node::start_with(&["--sip-digest", "SHA-256,MD5"]);
    let peer = Peer::new(&node);
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch=z9hG4bK{2}\r\nMax-Forwards: 70\r\nFrom: <sip:1002@{0}>;tag=r1\r\nTo: <sip:1002@{0}>\r\nCall-ID: sha-reg\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1002@127.0.0.1:{1}>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
            node.sip,
            peer.port(),
            common::rand_u32()
        )
    };
    peer.send(&register(1, ""));
    let challenge = peer
        .recv_starting("SIP/2.0 401", Duration::from_secs(2))
        .expect("401");
    let offers: Vec<&str> = challenge
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect();
    assert_eq!(offers.len(), 2, "{challenge}");
    assert!(offers[0].contains("algorithm=SHA-256"), "{challenge}");
    assert!(offers[1].contains("algorithm=MD5"), "{challenge}");
    let nonce = offers[0]
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let realm = offers[0]
        .split("realm=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let h = |s: String| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    let uri = format!("sip:{}", node.sip);
    let ha1 = h(format!("1002:{realm}:pass1002"));
    let ha2 = h(format!("REGISTER:{uri}"));
    let response = h(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"1002\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    );
    peer.send(&register(2, &auth));
    let ok = peer
        .recv_starting("SIP/2.0 200", Duration::from_secs(2))
        .expect("200 to the SHA-256 answer");
    assert!(ok.contains(";expires=300"), "{ok}");
    // The same nc again is a replay: challenged afresh.
    peer.send(&register(3, &auth));
    assert!(peer
        .recv_starting("SIP/2.0 401", Duration::from_secs(2))
        .is_some());
}

#[test]
fn two_tenants_register_their_phones_under_their_own_sip_domains() {
    use switchboard_media::sip::digest::{ha1, Algorithm};
    use switchboard_storage::model::{SipAccount, Tenant, TenantId};
    use switchboard_storage::Expect;
    let dir = Node::fresh_data_dir();
    common::records::seed_demo_then(&dir, |store| {
        Box::pin(async move {
            let demo = TenantId::from("demo");
            let mut t = store
                .get::<Tenant>(&demo, Tenant::ID)
                .await
                .unwrap()
                .unwrap()
                .record;
            t.sip_domains = vec!["demo.example".into()];
            store.put(&t, Expect::Any).await.unwrap();
            // A second tenant whose account 2001 has a password of its own.
            let acme = TenantId::from("acme");
            t.tenant = acme.clone();
            t.name = "Acme".into();
            t.sip_domains = vec!["acme.example".into()];
            store.put(&t, Expect::Any).await.unwrap();
            let account = SipAccount {
                tenant: acme,
                id: "2001".into(),
                ha1: ha1(Algorithm::Md5, "2001", "switchboard", "pass2001"),
                realm: "switchboard".into(),
                ha1_sha256: None,
                enabled: true,
            };
            store.put(&account, Expect::Any).await.unwrap();
        })
    });
    let node = Node::start_in(dir, &[]);
    let register = |domain: &str, user: &str, password: &str| {
        sipp(
            &node,
            "register_domain",
            &[
                "-key", "domain", domain, "-s", user, "-au", user, "-ap", password,
            ],
        )
    };
    let (ok, errors) = register("acme.example", "2001", "pass2001");
    assert!(ok, "acme's phone: {errors}");
    let (ok, errors) = register("demo.example", "1001", "pass1001");
    assert!(ok, "demo's phone: {errors}");
    // An account is its tenant's only; an address names no tenant now.
    let (ok, errors) = register("demo.example", "2001", "pass2001");
    assert!(!ok && errors.contains("403"), "{errors}");
    let (ok, errors) = register("127.0.0.1", "1001", "pass1001");
    assert!(!ok && errors.contains("404"), "{errors}");
}

/// A flood of new calls faster than the node can take them: once an
/// INVITE has waited 4*T1 for the SIP core (here T1 is 10 ms), new calls
/// are refused at once with 503 and a Retry-After, and the node is
/// serving again right after.
#[test]
fn a_flood_of_invites_is_refused_with_503_once_the_node_is_behind() {
    let node = Node::start_with(&["--sip-t1-ms", "10"]);
    let peer = Peer::new(&node);
    const FLOOD: usize = 1500;
    for i in 0..FLOOD {
        let branch = format!("z9hG4bKflood{i}");
        peer.send(&invite_to_echo(
            &node,
            &peer,
            &branch,
            &format!("flood-{i}"),
        ));
    }
    let got = peer.recv_all(Duration::from_secs(4));
    let overload: Vec<&String> = got
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 503") && m.contains("Retry-After: 5"))
        .collect();
    assert!(
        !overload.is_empty(),
        "no 503 for the overload among {} messages",
        got.len()
    );
    let refused = node
        .metric("switchboard_sip_overload_rejected_total")
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "overload refusals counted: {refused}");
    // Calls are taken again once the backlog is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let call_id = format!("after-{}", common::rand_u32());
        let branch = format!("z9hG4bK{}", common::rand_u32());
        let answer = node.udp_exchange(invite_to_echo(&node, &peer, &branch, &call_id).as_bytes());
        if answer.as_ref().is_some_and(|(code, _)| *code == 200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node does not take calls after the flood: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
