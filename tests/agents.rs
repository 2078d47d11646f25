//! Agents who do not answer, and callers nobody answers: the skill group's
//! ring timeout, the missed-call rule and the overflow after the max queue
//! time, with real soft phones and a scripted caller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::customer::{match_score, spoken, Customer};
use common::phone::{loud_windows, read_wav, Phone};
use common::records::{change_group, seed_demo_then, status_log, wait_demo_calls};
use common::Node;
use std::time::Duration;
use switchboard_storage::model::{
    Agent, ChangeReason, HangupReason, Overflow, OverflowReason, RingOutcome, Status, Strategy,
    TenantId,
};

#[test]
fn an_agent_who_does_not_answer_is_skipped_and_made_not_ready() {
    let dir = Node::fresh_data_dir();
    seed_demo_then(&dir, |store| {
        Box::pin(async move {
            // 1001 first (round robin from the top), 4 s of ringing.
            change_group(store, "support", |g| {
                g.config.strategy = Strategy::RoundRobin;
                g.config.ring_timeout = Duration::from_secs(4);
            })
            .await;
            // One miss is enough to make 1001 busy.
            store
                .update::<Agent, _>(&TenantId::from("demo"), "1001", |a| {
                    a.policy.max_missed = 1;
                    Ok(true)
                })
                .await
                .unwrap();
        })
    });
    let mut node = Node::start_in(dir, &[]);
    let absent = Phone::new(&node, "1001", "pass1001");
    let present = Phone::auto_answer(&node, "1002", "pass1002");
    let (a, b) = (absent.spawn(22), present.spawn(22));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    let mut c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('1');
    // 4 s of 1001 ringing, then 1002 answers; talk a little.
    std::thread::sleep(Duration::from_secs(8));
    c.hang_up();
    let (a_out, b_out) = (Phone::output(a), Phone::output(b));
    assert!(a_out.contains("Incoming call"), "1001 never rang: {a_out}");
    assert!(
        b_out.contains("Call established"),
        "1002 never answered: {b_out}"
    );
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    let rings: Vec<(&str, RingOutcome)> = r
        .rings
        .iter()
        .map(|x| (x.agent.0.as_str(), x.outcome))
        .collect();
    assert_eq!(
        rings,
        vec![
            ("1001", RingOutcome::NoAnswer),
            ("1002", RingOutcome::Answered)
        ],
        "{r:?}"
    );
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1002"));
    let first_ring = &r.rings[0];
    let rang = first_ring.end.since(first_ring.start);
    assert!(
        rang >= Duration::from_millis(3900) && rang < Duration::from_secs(6),
        "1001 rang {rang:?}"
    );
    // 1001 went busy for missing the call, and stays so.
    assert!(
        node.wait_log(
            "agent=1001 status=Busy reason=MissedTooOften",
            Duration::from_secs(2)
        ),
        "{:#?}",
        node.lines
    );
    // Its log holds the ringing period that ended with the miss.
    let log = status_log(&node.data_dir, "1001");
    let rang = log
        .iter()
        .find(|c| matches!(c.period.status, Status::Ringing { .. }));
    let rang = rang.unwrap_or_else(|| panic!("no ringing period: {log:?}"));
    assert_eq!(rang.period.reason, ChangeReason::Offered);
    assert!(rang.period.end.since(rang.period.start) >= Duration::from_millis(3900));
}

#[test]
fn after_the_max_queue_time_the_caller_leaves_a_voicemail() {
    let dir = Node::fresh_data_dir();
    seed_demo_then(&dir, |store| {
        Box::pin(async move {
            change_group(store, "sales", |g| {
                g.config.max_queue_time = Duration::from_secs(3);
                g.config.overflow = Overflow::Voicemail;
            })
            .await;
        })
    });
    let mut node = Node::start_in(dir, &[]);
    let mut c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('2');
    // 3 s in the queue, the voicemail prompt (~4 s), then a message.
    std::thread::sleep(Duration::from_secs(8));
    let message = spoken("Please call me back about my order.", "en-us");
    let said = loud_windows(&message);
    c.say(message);
    std::thread::sleep(Duration::from_secs(4));
    let heard = c.heard_since(Duration::from_secs(5));
    c.hang_up();
    let vm = match_score(
        &heard,
        &spoken(
            "Nobody can take your call right now. Please leave a message after the tone.",
            "en-us",
        ),
    );
    assert!(vm > 0.9, "voicemail prompt not heard ({vm:.2})");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    assert_eq!(
        r.overflow,
        Some((Overflow::Voicemail, OverflowReason::MaxQueueTime)),
        "{r:?}"
    );
    assert!(r.voicemail, "{r:?}");
    let waited = r.queue_time();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
    // The recordings thread writes the file and says so once it is closed.
    assert!(node.wait_log("voicemail written", Duration::from_secs(5)));
    let file = node
        .data_dir
        .join("voicemail")
        .join(format!("{}.wav", r.call));
    let recorded = read_wav(&file);
    let got = loud_windows(&recorded);
    assert!(
        got * 10 >= said * 6,
        "voicemail has {got} loud windows of {said} said"
    );
    assert_ne!(r.hangup_reason, HangupReason::AbandonedInQueue);
}
