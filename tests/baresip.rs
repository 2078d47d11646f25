//! baresip, a real soft phone, registers with its password and calls the
//! diagnostic numbers; what it heard is read back from the WAV files its
//! `sndfile` module writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::phone::{loud_windows, read_wav, Phone};
use common::records::wait_demo_calls;
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

#[test]
fn one_extension_calls_another_they_talk_and_the_record_says_internal() {
    let mut node = Node::start();
    let callee = Phone::auto_answer_saying(
        &node,
        "1002",
        "pass1002",
        "one two three four five six seven eight nine ten eleven twelve",
    );
    let running = callee.spawn(20);
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    // A wrong password calls nobody.
    let intruder = Phone::new(&node, "1003", "not-the-password");
    let out = intruder.run(Some(&format!("sip:1002@{}", node.sip)), 3);
    assert!(!out.contains("Call established"), "{out}");
    assert!(
        node.wait_log(
            "internal call refused: bad credentials",
            Duration::from_secs(2)
        ),
        "{out}"
    );
    let caller = Phone::new(&node, "1001", "pass1001");
    let target = format!("sip:1002@{}", node.sip);
    let talk = {
        let (dir, target) = (caller.dir.clone(), target.clone());
        std::thread::spawn(move || Phone { dir }.run(Some(&target), 8))
    };
    assert!(node.wait_log("internal call answered", Duration::from_secs(5)));
    // Meanwhile 1002 is busy for another extension.
    let other = Phone::new(&node, "1003", "pass1003");
    let out = other.run(Some(&target), 3);
    assert!(!out.contains("Call established"), "{out}");
    assert!(node.wait_log("the callee is busy", Duration::from_secs(2)));
    let out = talk.join().unwrap();
    assert!(out.contains("Call established"), "{out}");
    // Both agents were on the call: no queue offered them another.
    assert!(node.wait_log("agent=1002 status=Talking", Duration::from_secs(2)));
    assert!(node.wait_log("agent=1001 status=Talking", Duration::from_secs(2)));
    let callee_out = Phone::stop(running);
    assert_eq!(
        callee_out.matches("Call established").count(),
        1,
        "{callee_out}"
    );
    // The two heard each other.
    let heard = loud_windows(&caller.heard());
    assert!(
        heard > 30,
        "the caller heard {heard} loud windows of the callee"
    );
    let heard = loud_windows(&callee.heard());
    assert!(
        heard > 30,
        "the callee heard {heard} loud windows of the caller"
    );
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    assert_eq!(
        calls.len(),
        1,
        "one record, for the call that was put through: {calls:?}"
    );
    let r = &calls[0];
    use switchboard_storage::model::{DialOutcome, Direction};
    assert_eq!(r.direction, Direction::Internal, "{r:?}");
    assert_eq!((r.caller.as_str(), r.dialed.as_str()), ("1001", "1002"));
    assert_eq!(r.outcome, Some(DialOutcome::Answered));
    assert!(r.answered.is_some() && r.recording.is_some(), "{r:?}");
    assert_eq!(r.legs.len(), 2);
    // Both are free again.
    assert!(node.wait_log("agent=1002 status=Ready", Duration::from_secs(2)));
}

#[test]
fn the_phone_bar_calls_another_extension() {
    let mut node = Node::start();
    let callee = Phone::auto_answer_saying(
        &node,
        "1002",
        "pass1002",
        "one two three four five six seven eight nine ten eleven twelve",
    );
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 15);
    let (callee_run, agent_run) = (callee.spawn(15), agent.spawn(15));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    let dial = |extension: &str| {
        node.api(
            "POST",
            "/api/v1/agents/1001/calls",
            Some(&token),
            Some(&serde_json::json!({ "extension": extension })),
        )
    };
    let (code, v) = dial("9999");
    assert_eq!(code, 422, "{v}");
    let (code, v) = dial("1002");
    assert_eq!(code, 202, "{v}");
    // 1001's own phone rings first, then 1002's; no trunk is involved.
    assert!(node.wait_log("agent and customer bridged", Duration::from_secs(10)));
    assert!(node.wait_log("agent=1002 status=Talking", Duration::from_secs(2)));
    std::thread::sleep(Duration::from_secs(3));
    let _ = Phone::stop(agent_run);
    let _ = Phone::stop(callee_run);
    let heard = loud_windows(&agent.heard());
    assert!(
        heard > 30,
        "the agent heard {heard} loud windows of the extension"
    );
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    let r = &calls[0];
    use switchboard_storage::model::{DialOutcome, Direction};
    assert_eq!(r.direction, Direction::Internal, "{r:?}");
    assert_eq!((r.caller.as_str(), r.dialed.as_str()), ("1001", "1002"));
    assert_eq!(r.outcome, Some(DialOutcome::Answered), "{r:?}");
    // The extension's agent is free again.
    let admin = node.login("admin", "demo-admin");
    let t0 = std::time::Instant::now();
    loop {
        let (_, v) = node.api("GET", "/api/v1/agents/1002/status", Some(&admin), None);
        if v["status"]["status"] == "ready" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
