//! baresip, a real soft phone, registers with its password and calls the
//! diagnostic numbers; what it heard is read back from the WAV files its
//! `sndfile` module writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::phone::{loud_windows, read_wav, Phone};
use common::Node;
use std::time::Duration;

#[test]
fn baresip_registers_with_its_password() {
    let mut node = Node::start();
    let phone = Phone::new(&node, "1001", "pass1001");
    let out = phone.run(None, 2);
    assert!(out.contains("200 OK"), "{out}");
    assert!(node.wait_log("registered", Duration::from_secs(2)));
    let bad = Phone::new(&node, "1002", "not-the-password");
    let out = bad.run(None, 2);
    assert!(out.contains("403"), "{out}");
}

#[test]
fn baresip_hears_its_own_speech_from_the_echo_test() {
    let node = Node::start();
    let phone = Phone::new(&node, "1001", "pass1001");
    let out = phone.run(Some(&format!("sip:*43@{}", node.sip)), 6);
    assert!(out.contains("Call established"), "{out}");
    let heard = phone.heard();
    let sent = read_wav(&phone.dir.join("in.wav"));
    // The echo returns the speech: most of the spoken windows come back.
    let (h, s) = (loud_windows(&heard), loud_windows(&sent));
    assert!(s > 50, "test speech too quiet: {s}");
    assert!(h * 10 >= s * 6, "heard {h} loud windows of {s} sent");
}

#[test]
fn baresip_hears_the_prompt_and_the_node_hangs_up() {
    let node = Node::start();
    let phone = Phone::new(&node, "1001", "pass1001");
    let out = phone.run(Some(&format!("sip:*44@{}", node.sip)), 9);
    assert!(out.contains("Call established"), "{out}");
    // The node ended the call (a BYE from the far end) well before
    // baresip's own 9 s limit.
    let secs: u32 = out
        .split("terminated (duration: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(99);
    assert!(secs < 8, "call lasted {secs} s: {out}");
    assert!(
        loud_windows(&phone.heard()) > 25,
        "the prompt was not heard"
    );
}
