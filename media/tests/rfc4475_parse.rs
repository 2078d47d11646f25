//! The RFC 4475 torture messages through the framing and validation layer.
//! The node-level test (`tests/rfc4475.rs` in the root package) sends the
//! same files to a running node and checks its answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use switchboard_media::sip::message::Message;
use switchboard_media::sip::parse::{parse_datagram, Limits, Parsed};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect()
}

#[test]
fn valid_messages_are_never_rejected_as_bad_requests() {
    let mut checked = 0;
    for (name, data) in corpus().into_iter().filter(|(n, _)| n.ends_with("_V")) {
        checked += 1;
        match parse_datagram(&data, &Limits::default()) {
            Ok(Parsed::Message(_)) => {}
            Ok(Parsed::KeepAlive) => panic!("{name}: taken for a keep-alive"),
            // A status code out of range is a response nobody answers;
            // an unknown SIP version is answered 505, not 400.
            Err(e) if name == "TC_BIGCODE_V" => assert_eq!(e.code, 400, "{name}"),
            Err(e) if name == "TC_BADVERS_V" => assert_eq!(e.code, 505, "{name}: {e}"),
            Err(e) => panic!("{name}: rejected: {e}"),
        }
    }
    assert!(checked >= 30, "only {checked} valid messages found");
}

#[test]
fn invalid_messages_are_rejected_with_a_reason() {
    let mut checked = 0;
    for (name, data) in corpus().into_iter().filter(|(n, _)| n.ends_with("_I")) {
        checked += 1;
        match parse_datagram(&data, &Limits::default()) {
            Err(e) => {
                assert_eq!(e.code, 400, "{name}");
                assert!(!e.reason.is_empty(), "{name}");
            }
            Ok(m) => panic!("{name}: accepted: {m:?}"),
        }
    }
    assert!(checked >= 15, "only {checked} invalid messages found");
}

#[test]
fn application_cases_parse() {
    let by_name = |n: &str| corpus().into_iter().find(|(x, _)| x == n).map(|(_, d)| d);
    // Two requests in one datagram: the first is read, the rest ignored.
    let dbl = by_name("TC_DBLREQ").expect("file");
    match parse_datagram(&dbl, &Limits::default()) {
        Ok(Parsed::Message(Message::Request(r))) => {
            assert_eq!(r.method.as_str(), "REGISTER");
            assert!(r.body.is_empty());
        }
        other => panic!("TC_DBLREQ: {other:?}"),
    }
    for n in ["TC_INTMETH", "TC_MPART01", "TC_WSINV"] {
        let d = by_name(n).expect("file");
        assert!(
            matches!(
                parse_datagram(&d, &Limits::default()),
                Ok(Parsed::Message(_))
            ),
            "{n}"
        );
    }
}
