//! SIP against a running node: the RFC 4475 torture messages over the
//! wire, and SIPp as the peer for OPTIONS, REGISTER with digest and calls
//! to the echo test over UDP and TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{sipp, Node};

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
        | "TC_SCALAR02_V" | "TC_DBLREQ" => 401,
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
    for path in files {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_owned();
        let data = std::fs::read(&path).expect("read");
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
        if name.ends_with("_V") {
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
}

#[test]
fn unknown_number_is_404_and_registered_but_absent_is_480() {
    let node = Node::start();
    let invite = |user: &str| {
        format!(
            "INVITE sip:{user}@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{1}\r\nMax-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=p\r\nTo: <sip:{user}@{0}>\r\nCall-ID: c-{1}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n",
            node.sip,
            common::rand_u32()
        )
    };
    assert_eq!(
        node.udp_exchange(invite("5555").as_bytes()).map(|r| r.0),
        Some(404)
    );
    assert_eq!(
        node.udp_exchange(invite("1002").as_bytes()).map(|r| r.0),
        Some(480)
    );
}
