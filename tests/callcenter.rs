//! The demo call center end to end: a customer (SIPp) calls hotline 4000,
//! presses 1 in the IVR menu, and an agent's real soft phone (baresip,
//! auto-answer) rings, answers and talks through the bridge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::phone::{loud_windows, tone_share, Phone};
use common::records::{
    add_prompt, publish_flow, seed_demo_then, status_log, wait_demo_calls, wait_demo_counters,
};
use common::{assert_hung_up, assert_nothing_left_up, sipp, Node};
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_storage::model::{
    CallRecord, Flow, HangupReason, HangupSide, LegKind, Node as FlowNode, RingOutcome,
    Satisfaction, StatsScope, Status, Survey, SurveyLevel, TransferTarget,
};

#[test]
fn customer_presses_1_and_an_agent_phone_answers_with_audio_both_ways() {
    let mut node = Node::start();
    // 1001 is in `support`; baresip hangs up when its speech file ends
    // (about 4 s into the conversation).
    let agent = Phone::auto_answer(&node, "1001", "pass1001");
    let running = agent.spawn(16);
    assert!(
        node.wait_log("registered user=1001", Duration::from_secs(5)),
        "agent phone did not register"
    );
    // The customer echoes every RTP packet back (-rtp_echo): what the
    // agent hears of its own speech went through the bridge both ways.
    let out = echoing_customer_calls(&node, running);
    assert!(
        out.contains("from sip:13800138000@"),
        "the agent's phone did not show the caller: {out}"
    );
    let said = hears_itself_back(&agent);
    let r = first_call(&node, Duration::from_secs(20));
    assert_eq!(r.caller, "13800138000");
    assert_eq!(r.dialed, "4000");
    assert_eq!(r.group.as_deref(), Some("support"));
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(r.ivr.keys, "1");
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
    assert_eq!(r.hangup_reason, HangupReason::Normal, "{r:?}");
    assert_eq!(
        r.location.as_ref().map(|l| l.place.as_str()),
        Some("北京市")
    );
    assert!(r.talk_time() >= Duration::from_secs(3), "{r:?}");
    let legs: Vec<LegKind> = r.legs.iter().map(|l| l.kind).collect();
    assert_eq!(legs, vec![LegKind::Customer, LegKind::Agent]);
    // The recording: one stereo file, customer left, agent right, both
    // with speech (the customer's side is the agent's speech echoed back).
    let file = r
        .recording
        .clone()
        .unwrap_or_else(|| panic!("no recording: {r:?}"));
    assert!(node.wait_log("call recording written", Duration::from_secs(5)));
    let wav = node.data_dir.join(&file);
    let mut reader =
        hound::WavReader::open(&wav).unwrap_or_else(|e| panic!("{e}: {}", wav.display()));
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_rate, 8000);
    let samples: Vec<i16> = reader.samples::<i16>().map_while(Result::ok).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let (l, rr) = (loud_windows(&left), loud_windows(&right));
    assert!(
        rr * 10 >= said * 6,
        "agent channel has {rr} loud windows of {said} said"
    );
    assert!(
        l * 10 >= said * 5,
        "customer channel has {l} loud windows of {said}"
    );
    assert_eq!(
        r.rings.last().map(|x| x.outcome),
        Some(RingOutcome::Answered),
        "{r:?}"
    );
    // The hourly statistics count it for the tenant, the group and the
    // agent (written every 5 s).
    for scope in [
        StatsScope::Tenant,
        StatsScope::Group("support".into()),
        StatsScope::Agent("1001".into()),
    ] {
        let c = wait_demo_counters(&node.data_dir, scope.clone(), Duration::from_secs(8), |c| {
            c.answered >= 1
        });
        assert_eq!((c.offered, c.answered), (1, 1), "{scope:?}: {c:?}");
        assert!(c.talk_ms >= 3000, "{scope:?}: {c:?}");
        assert_eq!(c.answered_in_service_level, 1, "{scope:?}: {c:?}");
    }
    // Nothing of the call is left up on the node.
    assert_nothing_left_up(&node);
    // The agent's status log: ringing, talking, then wrap-up, in order.
    let log = status_log(&node.data_dir, "1001");
    let kinds: Vec<&Status> = log.iter().map(|c| &c.period.status).collect();
    let ringing = kinds
        .iter()
        .position(|s| matches!(s, Status::Ringing { .. }));
    let talking = kinds
        .iter()
        .position(|s| matches!(s, Status::Talking { .. }));
    assert!(
        ringing.is_some() && talking > ringing,
        "status log of 1001: {kinds:?}"
    );
}

/// The demo tenant's survey, reconfigured: key 1 is the best answer.
const RATE_US: &str =
    "Press 1 if you were very satisfied, 2 if you were satisfied, 3 if you were not.";

/// The demo's agents, once nothing was in flight for 10 s, rest without
/// an actor; a call still reaches one, whose phone rings and talks.
#[test]
fn an_agent_at_rest_takes_a_call() {
    let mut node = Node::start();
    let agent = Phone::auto_answer(&node, "1001", "pass1001");
    let running = agent.spawn(30);
    assert!(
        node.wait_log("registered user=1001", Duration::from_secs(5)),
        "agent phone did not register"
    );
    let resting = "switchboard_agents_resting{kind=\"agent\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    while node.metric(resting) != Some(3.0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        node.metric(resting),
        Some(3.0),
        "the three demo agents rest"
    );
    let _ = echoing_customer_calls(&node, running);
    let _ = hears_itself_back(&agent);
    let r = first_call(&node, Duration::from_secs(20));
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(r.hangup_reason, HangupReason::Normal, "{r:?}");
}

/// A customer calls 4000 and presses 1, echoing every RTP packet back
/// (`-rtp_echo`); the agent's phone (`running`) answered. Returns what
/// the phone printed.
fn echoing_customer_calls(node: &Node, running: std::process::Child) -> String {
    let (ok, errors) = sipp(
        node,
        "hotline_call",
        &["-s", "4000", "-rtp_echo", "-d", "10000"],
    );
    assert!(ok, "customer's call failed: {errors}");
    let out = Phone::output(running);
    assert!(
        out.contains("Call established"),
        "agent never answered: {out}"
    );
    out
}

/// The agent heard its own speech back from the echoing customer: audio
/// went through the bridge both ways. Returns the loud windows it said.
fn hears_itself_back(agent: &Phone) -> usize {
    let (said, heard) = (loud_windows(&agent.said()), loud_windows(&agent.heard()));
    assert!(said > 50, "agent speech too quiet: {said}");
    assert!(
        heard * 10 >= said * 6,
        "agent heard {heard} loud windows of the {said} it said"
    );
    said
}

fn rate_us() -> Flow {
    let level = |key, score, label: &str| SurveyLevel {
        key,
        score,
        label: label.into(),
    };
    Flow {
        id: "survey".into(),
        start: "rate".into(),
        nodes: BTreeMap::from([(
            "rate".into(),
            FlowNode::Survey(Survey {
                prompt: "rate-us".into(),
                levels: vec![
                    level('1', 5, "very satisfied"),
                    level('2', 3, "satisfied"),
                    level('3', 1, "not satisfied"),
                ],
                timeout: Duration::from_secs(8),
                invalid_prompt: Some("invalid".into()),
                thanks: Some("thanks".into()),
            }),
        )]),
    }
}

/// Waits (bounded) until the customer has heard `prompt` since `from`.
fn hears(c: &common::customer::Customer, prompt: &[i16], from: Duration) -> bool {
    (0..80).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        common::customer::match_score(&c.heard_since(from), prompt) > 0.9
    })
}

/// A customer calls 4000 from `caller` and presses `menu_key`; the agent
/// talks, hangs up, and the customer hears the survey's question.
fn call_until_the_survey(
    node: &Node,
    caller: &str,
    menu_key: char,
    question: &[i16],
) -> common::customer::Customer {
    let c = common::customer::Customer::call(node.sip, "4000", caller);
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press(menu_key);
    assert!(
        hears(&c, question, Duration::ZERO),
        "{caller} never heard the survey"
    );
    c
}

#[test]
fn when_the_agent_hangs_up_first_the_customer_rates_the_call() {
    let dir = Node::fresh_data_dir();
    seed_demo_then(&dir, |store| {
        Box::pin(async move {
            add_prompt(store, "rate-us", RATE_US).await;
            publish_flow(store, rate_us()).await;
        })
    });
    let mut node = Node::start_in(dir, &[]);
    // 1003 (sales), then 1001 (support), answer and hang up when their
    // speech ends (~4 s).
    let sales = Phone::auto_answer(&node, "1003", "pass1003").spawn(25);
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let question = common::customer::spoken(RATE_US, "en-us");

    // The best answer is key 1: 5 points.
    let mut c = call_until_the_survey(&node, "13912345678", '2', &question);
    c.press('1');
    assert!(
        c.wait_bye(Duration::from_secs(10)),
        "the node did not end the call after the survey"
    );
    c.hang_up();
    let _ = Phone::output(sales);

    // A key that is no answer: "not a valid choice", the question again,
    // and another wrong key ends it.
    let support = Phone::auto_answer(&node, "1001", "pass1001").spawn(30);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let mut c = call_until_the_survey(&node, "13812345678", '1', &question);
    let pressed = c.elapsed();
    c.press('7');
    let sorry = common::customer::spoken("Sorry, that is not a valid choice.", "en-us");
    assert!(hears(&c, &sorry, pressed), "no invalid-key prompt");
    c.press('8');
    assert!(
        c.wait_bye(Duration::from_secs(10)),
        "the node did not end the call after two wrong keys"
    );
    c.hang_up();
    let _ = Phone::output(support);

    let calls = wait_demo_calls(&node.data_dir, 2, Duration::from_secs(5));
    let by = |caller: &str| {
        calls
            .iter()
            .find(|r| r.caller == caller)
            .unwrap_or_else(|| panic!("no record of {caller}: {calls:?}"))
    };
    let (rated, wrong) = (by("13912345678"), by("13812345678"));
    assert_eq!(
        rated.satisfaction,
        Satisfaction::Scored { score: 5, key: '1' },
        "{rated:?}"
    );
    assert_eq!(wrong.satisfaction, Satisfaction::InvalidKey { key: '8' });
    for (r, agent) in [(rated, "1003"), (wrong, "1001")] {
        assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
        assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some(agent));
    }

    // The API's call records say the same.
    let token = node.login("admin", "demo-admin");
    let (status, page) = node.api("GET", "/api/v1/calls", Some(&token), None);
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let doc = |caller: &str| {
        items
            .iter()
            .find(|c| c["caller"] == caller)
            .cloned()
            .unwrap_or_else(|| panic!("no call of {caller} in {page}"))
    };
    let rated = doc("13912345678");
    assert_eq!(rated["satisfaction"], 5);
    assert_eq!(
        rated["survey"],
        serde_json::json!({"outcome": "scored", "score": 5, "key": "1"})
    );
    let wrong = doc("13812345678");
    assert_eq!(wrong["satisfaction"], serde_json::Value::Null);
    assert_eq!(
        wrong["survey"],
        serde_json::json!({"outcome": "invalid_key", "score": null, "key": "8"})
    );
    assert_nothing_left_up(&node);
}

/// Once a call is over no call and no media leg stays up.
/// The one call record, once written (within `within`).
fn first_call(node: &Node, within: Duration) -> CallRecord {
    wait_demo_calls(&node.data_dir, 1, within)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no call record: {:#?}", node.lines))
}

/// How much of `w` is one of the notes of the node's music on hold
/// (Goertzel power at the note over the window's energy: 1.0 is a pure
/// tone of that note, speech stays far below).
fn music_share(w: &[i16]) -> f64 {
    [523.25f64, 659.25, 783.99]
        .iter()
        .map(|hz| tone_share(w, *hz))
        .fold(0.0, f64::max)
}

/// The share of the loud 20 ms windows of `s` that are music on hold.
fn music_windows(s: &[i16]) -> (usize, usize) {
    let loud: Vec<&[i16]> = s.chunks(160).filter(|w| loud_windows(w) > 0).collect();
    let music = loud.iter().filter(|w| music_share(w) > 0.5).count();
    (music, loud.len())
}

#[test]
fn the_agent_puts_the_customer_on_hold_with_music_and_takes_it_back() {
    let mut node = Node::start();
    // 1001 talks for about ten seconds once it answers.
    let agent = Phone::auto_answer_saying(
        &node,
        "1001",
        "pass1001",
        "one two three four five six seven eight nine ten eleven twelve thirteen \
         fourteen fifteen sixteen seventeen eighteen nineteen twenty",
    );
    let running = agent.spawn(25);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    // Not on a call yet: nothing to hold.
    let (status, v) = node.api("POST", "/api/v1/agents/1001/hold", Some(&token), None);
    assert_eq!(status, 409, "{v}");
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    std::thread::sleep(Duration::from_secs(1));
    let before = c.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let (music, loud) = music_windows(&c.heard_since(before));
    assert!(loud > 20, "the customer did not hear the agent: {loud}");
    assert!(
        music * 10 < loud,
        "music before the hold: {music} of {loud}"
    );

    let (status, v) = node.api("POST", "/api/v1/agents/1001/hold", Some(&token), None);
    assert_eq!(status, 204, "{v}");
    let held = c.elapsed();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        c.reinvites(),
        vec!["sendonly"],
        "hold is a sendonly re-INVITE"
    );
    let (music, loud) = music_windows(&c.heard_since(held + Duration::from_millis(300)));
    assert!(loud > 50, "the held customer heard nothing: {loud}");
    assert!(
        music * 10 >= loud * 8,
        "the held customer heard {music} windows of music in {loud}: the agent came through"
    );
    let (status, v) = node.api("POST", "/api/v1/agents/1001/hold", Some(&token), None);
    assert_eq!(status, 409, "{v}");

    let (status, v) = node.api("POST", "/api/v1/agents/1001/unhold", Some(&token), None);
    assert_eq!(status, 204, "{v}");
    let back = c.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(c.reinvites(), vec!["sendonly", "sendrecv"]);
    let (music, loud) = music_windows(&c.heard_since(back + Duration::from_millis(300)));
    assert!(
        loud > 20,
        "the customer does not hear the agent again: {loud}"
    );
    assert!(music * 10 < loud, "music after the hold: {music} of {loud}");
    let (status, v) = node.api("POST", "/api/v1/agents/1001/unhold", Some(&token), None);
    assert_eq!(status, 409, "{v}");

    assert!(c.hang_up());
    let _ = Phone::output(running);
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    let r = calls.first().expect("call record");
    assert_eq!(r.hangup_side, HangupSide::Customer, "{r:?}");
    // On hold once, from the hold to the unhold (about 2.5 s).
    assert_eq!(r.holds.len(), 1, "{r:?}");
    let held = r.hold_time();
    assert!(
        held >= Duration::from_millis(2000) && held <= Duration::from_millis(4500),
        "{held:?}"
    );
    assert_nothing_left_up(&node);
}

/// The words an agent's phone says: about ten seconds of speech.
const LONG_SPEECH: &str = "one two three four five six seven eight nine ten eleven twelve \
     thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";

#[test]
fn blind_transfers_to_an_agent_and_to_a_group_keep_one_call_record() {
    let mut node = Node::start();
    // 1001 (support) takes the call; 1003 (sales) waits for the group
    // transfer; 1002's phone comes up later (so the queue offers to 1001).
    let first = Phone::auto_answer_saying(&node, "1001", "pass1001", LONG_SPEECH);
    let sales = Phone::auto_answer_saying(&node, "1003", "pass1003", LONG_SPEECH);
    let (first_run, sales_run) = (first.spawn(25), sales.spawn(25));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let t1001 = node.login("1001", "pass1001");
    let body = |v: serde_json::Value| Some(v);
    let (status, v) = node.api(
        "POST",
        "/api/v1/agents/1001/transfer",
        Some(&t1001),
        body(serde_json::json!({"group": "sales"})).as_ref(),
    );
    assert_eq!(status, 409, "not on a call: {v}");

    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    let second = Phone::auto_answer_saying(&node, "1002", "pass1002", LONG_SPEECH);
    let second_run = second.spawn(20);
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    let hears_an_agent = |c: &common::customer::Customer, what: &str| {
        let from = c.elapsed();
        std::thread::sleep(Duration::from_millis(1500));
        let loud = loud_windows(&c.heard_since(from));
        assert!(loud > 20, "the customer does not hear {what}: {loud}");
    };
    hears_an_agent(&c, "1001");

    // To an agent directly; a group that does not exist is refused.
    let (status, v) = node.api(
        "POST",
        "/api/v1/agents/1001/transfer",
        Some(&t1001),
        body(serde_json::json!({"group": "nobody"})).as_ref(),
    );
    assert_eq!(status, 422, "{v}");
    let (status, v) = node.api(
        "POST",
        "/api/v1/agents/1001/transfer",
        Some(&t1001),
        body(serde_json::json!({"agent": "1002"})).as_ref(),
    );
    assert_eq!(status, 204, "{v}");
    let bridged = |node: &mut Node, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while node.count_log("customer and agent bridged") < n {
            assert!(
                std::time::Instant::now() < deadline,
                "bridge {n} never came"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    bridged(&mut node, 2);
    hears_an_agent(&c, "1002");

    // 1002 sends it on to the sales queue, where 1003 answers.
    let t1002 = node.login("1002", "pass1002");
    let (status, v) = node.api(
        "POST",
        "/api/v1/agents/1002/transfer",
        Some(&t1002),
        body(serde_json::json!({"group": "sales"})).as_ref(),
    );
    assert_eq!(status, 204, "{v}");
    bridged(&mut node, 3);
    hears_an_agent(&c, "1003");
    assert!(c.hang_up());
    for run in [first_run, second_run, sales_run] {
        let _ = Phone::output(run);
    }

    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "one record for the whole call: {calls:?}");
    let r = &calls[0];
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(r.group.as_deref(), Some("sales"));
    assert_eq!(r.hangup_side, HangupSide::Customer);
    let transfers: Vec<(&str, &TransferTarget)> = r
        .transfers
        .iter()
        .map(|t| (t.by.0.as_str(), &t.to))
        .collect();
    assert_eq!(
        transfers,
        vec![
            ("1001", &TransferTarget::Agent("1002".into())),
            ("1002", &TransferTarget::Group("sales".into())),
        ]
    );
    let legs: Vec<(LegKind, &str)> = r.legs.iter().map(|l| (l.kind, l.party.as_str())).collect();
    assert_eq!(
        legs,
        vec![
            (LegKind::Customer, "13800138000"),
            (LegKind::Agent, "1001"),
            (LegKind::Agent, "1002"),
            (LegKind::Agent, "1003"),
        ]
    );
    assert!(r.recording.is_some(), "{r:?}");
    let admin = node.login("admin", "demo-admin");
    let (_, doc) = node.api(
        "GET",
        &format!("/api/v1/calls/{}", r.call),
        Some(&admin),
        None,
    );
    assert_eq!(doc["transfers"][1]["to"], "group", "{doc}");
    assert_eq!(doc["transfers"][1]["how"], "blind", "{doc}");
    assert_nothing_left_up(&node);
}

/// Loud 20 ms windows of `s`: (those that are the 1 kHz tone, the others).
fn tone_and_other(s: &[i16]) -> (usize, usize) {
    let loud: Vec<&[i16]> = s.chunks(160).filter(|w| loud_windows(w) > 0).collect();
    let tone = loud.iter().filter(|w| tone_share(w, 1000.0) > 0.5).count();
    (tone, loud.len() - tone)
}

#[test]
fn a_supervisor_listens_whispers_and_barges_in_on_a_call() {
    let mut node = Node::start();
    // The agent (1001) says nothing; the supervisor (1003's phone) talks
    // all along: whoever hears speech hears the supervisor.
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 45);
    let supervisor = Phone::auto_answer_saying(
        &node,
        "1003",
        "pass1003",
        &format!("{LONG_SPEECH} {LONG_SPEECH} {LONG_SPEECH}"),
    );
    let (agent_run, sup_run) = (agent.spawn(45), supervisor.spawn(45));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    let listen = serde_json::json!({"mode": "listen", "supervisor": "1003"});
    let (status, v) = node.api(
        "POST",
        "/api/v1/monitor/agents/1001",
        Some(&admin),
        Some(&listen),
    );
    assert_eq!(status, 409, "not on a call: {v}");
    let (status, v) = node.api(
        "POST",
        "/api/v1/monitor/agents/1001",
        Some(&admin),
        Some(&serde_json::json!({"mode": "listen"})),
    );
    assert_eq!(status, 422, "the admin has no phone of its own: {v}");
    let agent_token = node.login("1001", "pass1001");
    let (status, _) = node.api(
        "POST",
        "/api/v1/monitor/agents/1002",
        Some(&agent_token),
        Some(&listen),
    );
    assert_eq!(status, 403, "agents do not monitor");

    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");

    // Listen: the supervisor hears the customer's tone; the customer
    // hears nobody (the agent is quiet, the supervisor muted).
    let (status, v) = node.api(
        "POST",
        "/api/v1/monitor/agents/1001",
        Some(&admin),
        Some(&listen),
    );
    assert_eq!(status, 202, "{v}");
    assert!(node.wait_log("the supervisor is on the call", Duration::from_secs(5)));
    let t = c.elapsed();
    let tone: Vec<i16> = (0..3 * 8000)
        .map(|i| (8000.0 * (std::f64::consts::TAU * 1000.0 * f64::from(i) / 8000.0).sin()) as i16)
        .collect();
    c.say(tone);
    std::thread::sleep(Duration::from_millis(3300));
    let (_, heard) = tone_and_other(&c.heard_since(t + Duration::from_millis(300)));
    assert!(
        heard < 5,
        "the customer heard the supervisor while listened to: {heard} windows"
    );

    // Whisper: the agent hears the supervisor; the customer still not.
    // Barge: now the customer hears the supervisor too.
    let mode = |mode: &str| {
        let body = serde_json::json!({"mode": mode, "supervisor": "1003"});
        let (status, v) = node.api(
            "POST",
            "/api/v1/monitor/agents/1001",
            Some(&admin),
            Some(&body),
        );
        assert_eq!(status, 202, "{v}");
        let t = c.elapsed();
        std::thread::sleep(Duration::from_millis(3000));
        tone_and_other(&c.heard_since(t + Duration::from_millis(300))).1
    };
    // The supervisor's agent is on the call: no queue offers it another.
    let (_, v) = node.api("GET", "/api/v1/agents/1003/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "talking", "{v}");
    let heard = mode("whisper");
    assert!(heard < 5, "the customer heard the whisper: {heard} windows");
    let heard = mode("barge");
    assert!(
        heard > 40,
        "the customer did not hear the barged-in supervisor: {heard} windows"
    );

    // Another supervisor cannot take the call over; the supervisor leaves.
    let other = serde_json::json!({"mode": "listen", "supervisor": "1002"});
    let (status, v) = node.api(
        "POST",
        "/api/v1/monitor/agents/1001",
        Some(&admin),
        Some(&other),
    );
    assert_eq!(status, 409, "{v}");
    let (status, v) = node.api("DELETE", "/api/v1/monitor/agents/1001", Some(&admin), None);
    assert_eq!(status, 204, "{v}");
    let t = c.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, heard) = tone_and_other(&c.heard_since(t + Duration::from_millis(300)));
    assert!(
        heard < 5,
        "the supervisor's voice outlived the supervision: {heard}"
    );
    let (status, _) = node.api("DELETE", "/api/v1/monitor/agents/1001", Some(&admin), None);
    assert_eq!(status, 409);
    let (_, v) = node.api("GET", "/api/v1/agents/1003/status", Some(&admin), None);
    assert_eq!(
        v["status"]["status"], "ready",
        "the supervisor is free again: {v}"
    );

    assert!(c.hang_up());
    let _ = (Phone::output(agent_run), Phone::output(sup_run));
    let (tone, _) = tone_and_other(&supervisor.heard());
    assert!(
        tone > 50,
        "the supervisor did not hear the customer: {tone} tone windows"
    );
    let (_, speech) = tone_and_other(&agent.heard());
    assert!(
        speech > 50,
        "the agent did not hear the supervisor: {speech} windows"
    );
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "one call record: {calls:?}");
    assert_nothing_left_up(&node);
}

#[test]
fn a_supervisor_on_the_call_takes_it_over_and_the_agent_is_cut_off() {
    let mut node = Node::start();
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 40);
    let supervisor = Phone::auto_answer_saying(
        &node,
        "1003",
        "pass1003",
        &format!("{LONG_SPEECH} {LONG_SPEECH} {LONG_SPEECH}"),
    );
    let (agent_run, sup_run) = (agent.spawn(40), supervisor.spawn(40));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    let monitor = |node: &Node, mode: &str| {
        let body = serde_json::json!({"mode": mode, "supervisor": "1003"});
        node.api(
            "POST",
            "/api/v1/monitor/agents/1001",
            Some(&admin),
            Some(&body),
        )
    };
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    // Only a supervisor already on the call takes it over.
    let (status, v) = monitor(&node, "take_over");
    assert_eq!(status, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("listen"),
        "{v}"
    );
    let (status, v) = monitor(&node, "listen");
    assert_eq!(status, 202, "{v}");
    assert!(node.wait_log("the supervisor is on the call", Duration::from_secs(5)));
    let (status, v) = monitor(&node, "take_over");
    assert_eq!(status, 202, "{v}");
    assert!(node.wait_log("the supervisor took the call over", Duration::from_secs(2)));
    // The agent is cut off and wraps up; the supervisor has the call.
    let status = node.wait_status(&admin, "1001", "after_call_work", Duration::from_secs(3));
    assert_eq!(status, "after_call_work");
    let (_, v) = node.api("GET", "/api/v1/agents/1003/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "talking", "{v}");
    // No monitor is left to end, and another cannot join a call whose
    // agent is gone.
    let (status, _) = node.api("DELETE", "/api/v1/monitor/agents/1001", Some(&admin), None);
    assert_eq!(status, 409);
    // The customer and the supervisor hear each other.
    let t = c.elapsed();
    let tone: Vec<i16> = (0..3 * 8000)
        .map(|i| (8000.0 * (std::f64::consts::TAU * 1000.0 * f64::from(i) / 8000.0).sin()) as i16)
        .collect();
    c.say(tone);
    std::thread::sleep(Duration::from_millis(3300));
    let (_, heard) = tone_and_other(&c.heard_since(t + Duration::from_millis(300)));
    assert!(
        heard > 40,
        "the customer did not hear the supervisor: {heard} windows"
    );
    assert!(c.hang_up());
    assert_nothing_left_up(&node);
    let _ = (Phone::stop(agent_run), Phone::stop(sup_run));
    let (tone, _) = tone_and_other(&supervisor.heard());
    assert!(
        tone > 50,
        "the supervisor did not hear the customer: {tone} tone windows"
    );
    // One record: answered by 1001, taken over by 1003, who ended it.
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "one call record: {calls:?}");
    let r = &calls[0];
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    let taken = &r.transfers[0];
    assert_eq!(taken.by.0, "1001");
    assert_eq!(
        taken.to,
        switchboard_storage::model::TransferTarget::Agent("1003".into())
    );
    assert_eq!(
        taken.how,
        switchboard_storage::model::TransferKind::TakenOver
    );
    let agents: Vec<&str> = r
        .legs
        .iter()
        .filter(|l| l.kind == switchboard_storage::model::LegKind::Agent)
        .map(|l| l.party.as_str())
        .collect();
    assert_eq!(agents, ["1001", "1003"], "{r:?}");
    let (_, doc) = node.api(
        "GET",
        &format!("/api/v1/calls/{}", r.call),
        Some(&admin),
        None,
    );
    assert_eq!(doc["transfers"][0]["how"], "taken_over", "{doc}");
    assert_eq!(doc["transfers"][0]["target"], "1003", "{doc}");
    let (_, v) = node.api("GET", "/api/v1/agents/1003/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "after_call_work", "{v}");
}

#[test]
fn an_agent_consults_a_colleague_then_makes_it_three_way_then_hands_the_customer_over() {
    let mut node = Node::start();
    // 1001 (support) answers the customer and says nothing; 1003 (sales,
    // never offered a support call) is consulted and talks all along.
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 60);
    let colleague = Phone::auto_answer_saying(
        &node,
        "1003",
        "pass1003",
        &format!("{LONG_SPEECH} {LONG_SPEECH} {LONG_SPEECH}"),
    );
    let (agent_run, colleague_run) = (agent.spawn(60), colleague.spawn(60));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    let admin = node.login("admin", "demo-admin");
    let consult = |node: &Node, body: Option<serde_json::Value>, path: &str, method: &str| {
        node.api(
            method,
            &format!("/api/v1/agents/1001/consult{path}"),
            Some(&token),
            body.as_ref(),
        )
    };
    let with = |a: &str| Some(serde_json::json!({ "agent": a }));
    let status_of = |node: &Node, a: &str| {
        let (_, v) = node.api(
            "GET",
            &format!("/api/v1/agents/{a}/status"),
            Some(&admin),
            None,
        );
        v["status"]["status"].as_str().unwrap_or("").to_owned()
    };
    let (code, v) = consult(&node, with("1003"), "", "POST");
    assert_eq!(code, 409, "not on a call: {v}");
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    let (code, v) = consult(&node, with("1001"), "", "POST");
    assert_eq!(code, 409, "{v}");
    let (code, v) = consult(&node, with("nobody"), "", "POST");
    assert!(code == 404 || code == 422, "{code} {v}");
    let (code, v) = consult(&node, None, "/conference", "POST");
    assert_eq!(code, 409, "no consultation yet: {v}");

    // Consult: the customer hears music, not the colleague.
    let (code, v) = consult(&node, with("1003"), "", "POST");
    assert_eq!(code, 202, "{v}");
    assert!(node.wait_log("the consulted party answered", Duration::from_secs(5)));
    assert_eq!(status_of(&node, "1003"), "talking");
    let (code, v) = consult(&node, with("1003"), "", "POST");
    assert_eq!(code, 409, "consulting already: {v}");
    let t = c.elapsed();
    std::thread::sleep(Duration::from_millis(2500));
    let (music, loud) = music_windows(&c.heard_since(t + Duration::from_millis(300)));
    assert!(loud > 50, "the held customer heard nothing: {loud}");
    assert!(
        music * 10 >= loud * 8,
        "the held customer heard the consultation: {music} music windows in {loud}"
    );
    // Back to the customer: the colleague is free again.
    let (code, v) = consult(&node, None, "", "DELETE");
    assert_eq!(code, 204, "{v}");
    let t0 = std::time::Instant::now();
    while status_of(&node, "1003") != "ready" {
        assert!(t0.elapsed() < Duration::from_secs(3), "1003 not released");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.reinvites(), vec!["sendonly", "sendrecv"]);

    // Again, then three-way: the customer hears the colleague.
    let (code, v) = consult(&node, with("1003"), "", "POST");
    assert_eq!(code, 202, "{v}");
    let t0 = std::time::Instant::now();
    while node.count_log("the consulted party answered") < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5), "not answered again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, v) = consult(&node, None, "/conference", "POST");
    assert_eq!(code, 204, "{v}");
    let t = c.elapsed();
    std::thread::sleep(Duration::from_millis(3000));
    let (music, loud) = music_windows(&c.heard_since(t + Duration::from_millis(300)));
    assert!(
        loud > 40 && music * 10 < loud,
        "the customer did not hear the colleague in the three-way call: {music} music in {loud}"
    );
    let (code, v) = consult(&node, None, "/conference", "POST");
    assert_eq!(code, 409, "three-way already: {v}");

    // Hand the customer over: the agent is off the call and wraps up.
    let (code, v) = consult(&node, None, "/transfer", "POST");
    assert_eq!(code, 204, "{v}");
    let status = node.wait_status(&admin, "1001", "after_call_work", Duration::from_secs(3));
    assert_eq!(status, "after_call_work", "1001 still on the call");
    assert_eq!(status_of(&node, "1003"), "talking");
    let t = c.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    let (music, loud) = music_windows(&c.heard_since(t + Duration::from_millis(300)));
    assert!(
        loud > 30 && music * 10 < loud,
        "the customer does not hear the colleague after the transfer: {music} music in {loud}"
    );
    assert!(c.hang_up());
    assert_nothing_left_up(&node);
    let _ = (Phone::stop(agent_run), Phone::stop(colleague_run));
    let (_, speech) = tone_and_other(&agent.heard());
    assert!(
        speech > 50,
        "the agent did not hear the colleague it consulted: {speech} windows"
    );
    // One record: 1001 answered, consulted 1003 and handed the call over.
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{calls:?}");
    let r = &calls[0];
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    assert_eq!(r.transfers[0].by.0, "1001");
    assert_eq!(
        r.transfers[0].how,
        switchboard_storage::model::TransferKind::Consulted
    );
    let agents: Vec<&str> = r
        .legs
        .iter()
        .filter(|l| l.kind == switchboard_storage::model::LegKind::Agent)
        .map(|l| l.party.as_str())
        .collect();
    assert_eq!(agents, ["1001", "1003"], "{r:?}");
    // The customer waited on hold through both consultations.
    assert_eq!(r.holds.len(), 2, "{r:?}");
    assert_eq!(status_of(&node, "1003"), "after_call_work");
}

#[test]
fn a_consulted_colleague_who_does_not_answer_is_given_up_after_its_ring_time() {
    let mut node = Node::start();
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 45);
    // 1003's phone rings and nobody picks it up.
    let colleague = Phone::new(&node, "1003", "pass1003");
    let (agent_run, colleague_run) = (agent.spawn(45), colleague.spawn(45));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    let admin = node.login("admin", "demo-admin");
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult",
        Some(&token),
        Some(&serde_json::json!({"agent": "1003"})),
    );
    assert_eq!(code, 202, "{v}");
    let asked = std::time::Instant::now();
    assert!(node.wait_log(
        "the consulted party did not answer in time",
        Duration::from_secs(25)
    ));
    assert!(
        asked.elapsed() >= Duration::from_secs(19),
        "{:?}",
        asked.elapsed()
    );
    // The customer is taken off hold; the colleague is free again.
    let t0 = std::time::Instant::now();
    while c.reinvites() != ["sendonly", "sendrecv"] {
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", c.reinvites());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, v) = node.api("GET", "/api/v1/agents/1003/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "ready", "{v}");
    let (code, v) = node.api("DELETE", "/api/v1/agents/1001/consult", Some(&token), None);
    assert_eq!(code, 409, "nothing left to end: {v}");
    assert!(c.hang_up());
    let _ = (Phone::stop(agent_run), Phone::stop(colleague_run));
    assert_nothing_left_up(&node);
}

#[test]
fn a_call_cut_by_a_crash_is_closed_when_the_node_restarts() {
    use common::records::open_calls;
    let data = Node::fresh_data_dir();
    let mut node = Node::start_in(data.clone(), &["--node-name", "solo"]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 20);
    let running = agent.spawn(20);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let customer = common::customer::Customer::call(node.sip, "4000", "13800138000");
    std::thread::sleep(Duration::from_secs(5));
    customer.press('1');
    assert!(node.wait_log("customer and agent bridged", Duration::from_secs(10)));
    // What the call wrote of itself while up: answered by 1001.
    let t0 = std::time::Instant::now();
    let open = loop {
        let open = open_calls(&data, "solo");
        if open.iter().any(|r| r.answered.is_some()) || t0.elapsed() > Duration::from_secs(3) {
            break open;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        open[0].agent.as_ref().map(|a| a.0.as_str()),
        Some("1001"),
        "{open:?}"
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    assert!(wait_demo_calls(&data, 1, Duration::from_millis(500)).is_empty());
    // The same node again: before taking calls it closes the one its
    // previous run died with.
    let mut again = Node::start_in(data.clone(), &["--node-name", "solo"]);
    assert!(again.wait_log(
        "call record closed: its node died with it",
        Duration::from_secs(5)
    ));
    let calls = wait_demo_calls(&data, 1, Duration::from_secs(5));
    assert_eq!(calls.len(), 1, "{calls:?}");
    let r = &calls[0];
    assert_eq!(
        r.hangup_reason,
        switchboard_storage::model::HangupReason::NodeLost
    );
    assert_eq!(r.group.as_deref(), Some("support"));
    assert!(r.answered.is_some() && r.talk_end.is_some(), "{r:?}");
    assert!(open_calls(&data, "solo").is_empty());
    drop(customer);
    // The phone's node is gone: it would wait out its un-REGISTER.
    let mut running = running;
    let _ = running.kill();
    let _ = running.wait();
}

/// `switchboard cluster fault KIND:ID` against `node`: its exit status
/// and what it printed.
fn fault(node: &Node, target: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["cluster", "fault", target, "--http"])
        .arg(node.http.to_string())
        .arg("--data-dir")
        .arg(&node.data_dir)
        .output()
        .expect("run switchboard cluster fault");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn an_agent_and_a_group_whose_actors_panic_recover_and_the_calls_go_on() {
    let mut node = Node::start_with(&["--fault-injection"]);
    // 1001 talks for about ten seconds once it answers; 1002 answers
    // the second call (it is busy until then).
    let first = Phone::auto_answer_saying(
        &node,
        "1001",
        "pass1001",
        "one two three four five six seven eight nine ten eleven twelve thirteen \
         fourteen fifteen sixteen seventeen eighteen nineteen twenty",
    );
    let second = Phone::auto_answer(&node, "1002", "pass1002");
    let runs = [first.spawn(40), second.spawn(40)];
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    node.set_status(&admin, "1002", "busy");
    // Something that does not run here is refused, by name.
    let (ok, out) = fault(&node, "agent:nobody");
    assert!(!ok && out.contains("does not run on this node"), "{out}");

    let mut a = common::customer::Customer::to_support(&mut node, "13800138000");
    // The agent's actor panics mid-call: it is rebuilt, still talking,
    // and the customer goes on hearing the agent.
    let (ok, out) = fault(&node, "agent:1001");
    assert!(ok, "{out}");
    assert!(node.wait_log(
        "agent actor panicked: rebuilt from the store",
        Duration::from_secs(5)
    ));
    assert_eq!(node.status_of(&admin, "1001"), "talking");
    let after = a.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let heard = loud_windows(&a.heard_since(after));
    assert!(
        heard > 30,
        "the customer stopped hearing the agent: {heard}"
    );

    // A second customer waits in support's queue (1001 talks, 1002 is
    // busy); the group's actor panics: the caller keeps its place.
    let mut b = common::customer::Customer::call(node.sip, "4000", "13900139000");
    assert!(b.answered);
    std::thread::sleep(Duration::from_secs(5));
    b.press('1');
    std::thread::sleep(Duration::from_millis(800));
    let waiting = |node: &Node| {
        let (_, v) = node.api("GET", "/api/v1/monitor/groups", Some(&admin), None);
        v.as_array()
            .and_then(|gs| gs.iter().find(|g| g["group"] == "support"))
            .map(|g| g["waiting"].as_u64().unwrap_or(0))
    };
    assert_eq!(waiting(&node), Some(1));
    let (ok, out) = fault(&node, "group:support");
    assert!(ok, "{out}");
    assert!(node.wait_log(
        "skill group actor panicked: rebuilt from the store, its queue kept",
        Duration::from_secs(5)
    ));
    assert_eq!(waiting(&node), Some(1), "the caller lost its place");
    // 1002 is ready: the group offers it the waiting call.
    node.set_status(&admin, "1002", "ready");
    assert!(node.wait_log("agent=1002 status=Talking", Duration::from_secs(8)));
    let after = b.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        loud_windows(&b.heard_since(after)) > 20,
        "the second caller hears nobody"
    );
    assert!(b.hang_up());
    assert!(a.hang_up());
    for r in runs {
        let _ = Phone::stop(r);
    }
    let calls = wait_demo_calls(&node.data_dir, 2, Duration::from_secs(20));
    let by_caller = |n: &str| {
        calls
            .iter()
            .find(|c| c.caller == n)
            .unwrap_or_else(|| panic!("no record for {n}: {calls:?}"))
    };
    assert_eq!(
        by_caller("13800138000")
            .agent
            .as_ref()
            .map(|a| a.0.as_str()),
        Some("1001")
    );
    let second = by_caller("13900139000");
    assert_eq!(second.agent.as_ref().map(|a| a.0.as_str()), Some("1002"));
    assert_eq!(second.hangup_reason, HangupReason::Normal, "{second:?}");
    for kind in ["agent", "skill_group"] {
        assert_eq!(
            node.metric(&format!(
                "switchboard_actor_recoveries_total{{kind=\"{kind}\"}}"
            )),
            Some(1.0),
            "{kind}"
        );
    }
}

/// RFC 3261 §13.3.1.4: a 2xx never ACKed ends its dialog after 64*T1.
/// When that dialog is the customer's, the whole call ends: the agent's
/// phone gets its BYE and wraps up, and the call has its record (here
/// with T1 at 50 ms, so the node gives up after 3.2 s).
#[test]
fn a_customer_who_never_acks_a_reinvite_is_hung_up_and_the_agent_freed() {
    let mut node = Node::start_with(&["--sip-t1-ms", "50"]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let agent_run = agent.spawn(30);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    let ok = c
        .reinvite_without_ack()
        .unwrap_or_else(|got| panic!("no 200 to the customer's re-INVITE: {got:#?}"));
    assert!(ok.contains("application/sdp"), "{ok}");
    // Retransmitted (T1, 2*T1, ... capped at T2) until 64*T1, then BYE.
    assert!(
        c.wait_bye(Duration::from_secs(6)),
        "the node never hung up the customer"
    );
    assert!(c.unacked_200s() >= 3, "the 200 was not retransmitted");
    assert!(node.wait_log("no ACK for our 2xx", Duration::from_secs(1)));
    let status = node.wait_status(&admin, "1001", "after_call_work", Duration::from_secs(3));
    assert_eq!(status, "after_call_work", "the agent is still on the call");
    let r = first_call(&node, Duration::from_secs(3));
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(r.hangup_side, HangupSide::Customer, "{r:?}");
    assert!(r.talk_time() > Duration::ZERO, "{r:?}");
    assert_nothing_left_up(&node);
    assert_hung_up(&Phone::stop(agent_run));
}

/// `c`'s phone falls silent: with `--media-timeout-secs 5`, it gets the
/// node's BYE after the timeout and not before, and the node counts it.
fn goes_quiet_and_is_hung_up(node: &mut Node, c: &common::customer::Customer) {
    c.go_quiet();
    assert!(
        !c.wait_bye(Duration::from_secs(4)),
        "hung up before the media timeout"
    );
    assert!(
        c.wait_bye(Duration::from_secs(4)),
        "the node never hung up the quiet phone"
    );
    assert!(node.wait_log("no media from the phone", Duration::from_secs(1)));
    assert_eq!(node.metric("switchboard_media_timeouts_total"), Some(1.0));
}

/// A talking customer's phone that goes quiet (no RTP, no RTCP, no BYE: it
/// lost its network) is taken for gone after the media timeout (5 s
/// here): the node hangs up both phones, the agent wraps up, and the
/// record says why the call ended.
#[test]
fn a_customer_phone_gone_quiet_is_hung_up_after_the_media_timeout() {
    let mut node = Node::start_with(&["--media-timeout-secs", "5"]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 40);
    let agent_run = agent.spawn(40);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    let c = common::customer::Customer::to_support(&mut node, "13800138000");
    // Talking for a while, then the customer's phone falls silent.
    std::thread::sleep(Duration::from_secs(2));
    goes_quiet_and_is_hung_up(&mut node, &c);
    let status = node.wait_status(&admin, "1001", "after_call_work", Duration::from_secs(3));
    assert_eq!(status, "after_call_work", "the agent is still on the call");
    let r = first_call(&node, Duration::from_secs(3));
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(
        (r.hangup_side, r.hangup_reason),
        (HangupSide::Customer, HangupReason::MediaTimeout),
        "{r:?}"
    );
    // The talk lasted until the timeout: about 2 s, then 5 s of silence.
    assert!(r.talk_time() >= Duration::from_secs(6), "{r:?}");
    assert_nothing_left_up(&node);
    assert_hung_up(&Phone::stop(agent_run));
}

/// The same on the agent's side: the agent's phone (SIPp, registered as
/// 1001) talks for 7 s and then sends nothing; after the media timeout it
/// gets a BYE, so does the customer, and the record says the agent's
/// phone was lost.
#[test]
fn an_agent_phone_gone_quiet_is_hung_up_after_the_media_timeout() {
    let mut node = Node::start_with(&["--media-timeout-secs", "5"]);
    let port = common::free_port();
    let phone = common::quiet_sipp_phone(port);
    common::register_at(&node, "1001", "pass1001", port);
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    let bridged = std::time::Instant::now();
    // 7 s of the agent's audio, then 5 s of nothing: the phone's BYE
    // ends its scenario.
    let mut phone = phone;
    let ended = loop {
        if let Some(status) = phone.try_wait().expect("sipp") {
            break status;
        }
        assert!(
            bridged.elapsed() < Duration::from_secs(25),
            "the agent's phone got no BYE"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ended.success(), "the agent's phone failed: {ended}");
    assert!(
        bridged.elapsed() >= Duration::from_secs(11),
        "hung up {:?} after the answer, before the media timeout",
        bridged.elapsed()
    );
    // The customer is still there and takes the survey; it hangs up in it.
    assert!(
        !c.node_hung_up(),
        "the customer was hung up before the survey"
    );
    assert!(c.hang_up());
    assert_eq!(node.metric("switchboard_media_timeouts_total"), Some(1.0));
    let r = first_call(&node, Duration::from_secs(3));
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(
        (r.hangup_side, r.hangup_reason),
        (HangupSide::Agent, HangupReason::MediaTimeout),
        "{r:?}"
    );
    assert_nothing_left_up(&node);
}

/// The customer's own phone holds the call (a re-INVITE offering
/// `sendonly`, RFC 3264 §8.4) and takes it back: the node answers from the
/// customer's leg (`recvonly`, then `sendrecv`), sends it nothing while it
/// holds, and the agent is heard again after.
#[test]
fn the_customers_phone_holds_the_call_and_takes_it_back() {
    let mut node = Node::start();
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let agent_run = agent.spawn(30);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let mut c = common::customer::Customer::to_support(&mut node, "13800138000");
    std::thread::sleep(Duration::from_millis(500));
    c.hold_and_take_back();
    assert!(c.hang_up());
    assert_nothing_left_up(&node);
    let _ = Phone::stop(agent_run);
}

/// The same on an internal call (内部呼叫): extension 1001's phone holds
/// its call to 1002 and takes it back; the node answers from the caller's
/// leg instead of refusing the re-INVITE with 488.
#[test]
fn an_extensions_phone_holds_an_internal_call_and_takes_it_back() {
    let mut node = Node::start();
    let callee = Phone::auto_answer_quiet(&node, "1002", "pass1002", 30);
    let callee_run = callee.spawn(30);
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    let mut c = common::customer::Customer::call_extension(node.sip, "1002", "1001", "pass1001");
    assert!(c.answered, "the extension did not answer: {}", c.status);
    assert!(node.wait_log("internal call answered", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    c.hold_and_take_back();
    assert!(c.hang_up());
    assert_nothing_left_up(&node);
    assert!(node.wait_log("agent=1002 status=Ready", Duration::from_secs(2)));
    let _ = Phone::stop(callee_run);
}

/// An internal call (内部呼叫) whose caller's phone goes quiet is ended
/// after the media timeout too: the quiet phone and the callee's phone
/// get a BYE, and the callee is ready for the next call.
#[test]
fn an_extensions_phone_gone_quiet_ends_its_internal_call_after_the_media_timeout() {
    let mut node = Node::start_with(&["--media-timeout-secs", "5"]);
    let callee = Phone::auto_answer_quiet(&node, "1002", "pass1002", 30);
    let callee_run = callee.spawn(30);
    assert!(node.wait_log("registered user=1002", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    let c = common::customer::Customer::call_extension(node.sip, "1002", "1001", "pass1001");
    assert!(c.answered, "the extension did not answer: {}", c.status);
    assert!(node.wait_log("internal call answered", Duration::from_secs(5)));
    let status = node.wait_status(&admin, "1002", "talking", Duration::from_secs(2));
    assert_eq!(status, "talking", "the callee is not on the call");
    std::thread::sleep(Duration::from_secs(2));
    goes_quiet_and_is_hung_up(&mut node, &c);
    let status = node.wait_status(&admin, "1002", "ready", Duration::from_secs(3));
    assert_eq!(status, "ready", "the callee is still on the call");
    assert_nothing_left_up(&node);
    assert_hung_up(&Phone::stop(callee_run));
}
