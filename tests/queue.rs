//! Waiting in a skill group's queue, heard by a scripted caller: the
//! announcements of its place, the waiting audio, and what the call record
//! says when the caller gives up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::customer::{match_score, spoken, Customer};
use common::records::wait_demo_calls;
use common::Node;
use std::time::Duration;
use switchboard_storage::model::{HangupReason, HangupSide};

/// Presses 2 (sales, agent 1003 only) once the menu plays.
fn call_sales(node: &Node) -> Customer {
    let c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered, "the hotline answered {}", c.status);
    std::thread::sleep(Duration::from_secs(5));
    c.press('2');
    c
}

#[test]
fn with_no_phone_registered_the_caller_hears_its_place_and_the_waiting_audio() {
    let mut node = Node::start();
    let c = call_sales(&node);
    std::thread::sleep(Duration::from_secs(8));
    let heard = c.heard_since(Duration::from_secs(5));
    let next = match_score(&heard, &spoken("You are next in the queue.", "en-us"));
    let waiting = match_score(
        &heard,
        &spoken(
            "All our agents are busy. Please hold, your call is important to us.",
            "en-us",
        ),
    );
    let voicemail = match_score(
        &heard,
        &spoken(
            "Nobody can take your call right now. Please leave a message after the tone.",
            "en-us",
        ),
    );
    assert!(next > 0.9, "position announcement not heard ({next:.2})");
    assert!(waiting > 0.9, "waiting audio not heard ({waiting:.2})");
    assert!(
        voicemail < 0.8,
        "a prompt that did not play matched ({voicemail:.2})"
    );
    // 1003's phone never registered: it was never rung (no offer loop).
    assert_eq!(node.count_log("reason=Offered"), 0, "{:#?}", node.lines);
}

#[test]
fn a_caller_who_hangs_up_in_the_queue_is_abandoned_in_queue() {
    let node = Node::start();
    let mut c = call_sales(&node);
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.hang_up());
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls
        .first()
        .unwrap_or_else(|| panic!("no call record: {:#?}", node.lines));
    assert_eq!(r.group.as_deref(), Some("sales"), "{r:?}");
    assert_eq!(r.hangup_side, HangupSide::Customer, "{r:?}");
    assert_eq!(r.hangup_reason, HangupReason::AbandonedInQueue, "{r:?}");
    assert!(r.enqueued.is_some() && r.agent.is_none(), "{r:?}");
}
