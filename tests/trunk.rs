//! The tenant's trunk, with SIPp standing in for the carrier (it
//! challenges with 401 and checks the digest answer): an IVR transfer to
//! an outside number, an agent signed in with a mobile number, and
//! outbound calls from the phone bar (the agent's baresip phone rings
//! first, then the carrier).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::customer::{match_score, spoken, Customer};
use common::phone::Phone;
use common::phone::{loud_windows, tone_share};
use common::records::status_log;
use common::records::{seed_demo_then, wait_demo_calls};
use common::{assert_hung_up, assert_nothing_left_up, free_port, rand_u32, repo, require, Node};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchboard_storage::model::{
    Agent, ChangeReason, ContactPlan, ContactPlanStatus, Customer as Profile, Device, DialOutcome,
    Direction, HangupReason, HangupSide, LegKind, Node as IvrNode, RingOutcome, Status, Tenant,
    TenantId, Timestamp, Trunk, TrunkTransport,
};
use switchboard_storage::{Expect, Store};

/// SIPp as the carrier on a port of its own, for one call.
fn carrier() -> (Child, u16, std::path::PathBuf) {
    carrier_with("carrier.xml")
}

/// SIPp running `scenario` (of `tests/sipp/`) as the carrier.
fn carrier_with(scenario: &str) -> (Child, u16, std::path::PathBuf) {
    carrier_calls(scenario, 1)
}

/// SIPp running `scenario` as the carrier, for `calls` calls.
fn carrier_calls(scenario: &str, calls: u32) -> (Child, u16, std::path::PathBuf) {
    require("sipp", "sip-tester");
    let port = free_port();
    let dir =
        std::env::temp_dir().join(format!("sb-carrier-{}-{}", std::process::id(), rand_u32()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .args(["-sf"])
        .arg(repo(&format!("tests/sipp/{scenario}")))
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-mp", &(free_port() & !1).to_string()])
        .args(["-rtp_echo", "-m", &calls.to_string()])
        .args(["-nostdin", "-timeout", "35s", "-trace_err"])
        .arg("-error_file")
        .arg(dir.join("errors.log"))
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp");
    (child, port, dir)
}

fn carrier_done(mut child: Child, dir: &std::path::Path) -> (bool, String) {
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    (
        ok,
        std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default(),
    )
}

/// The demo tenant with a trunk to 127.0.0.1:`port` and outside transfers
/// allowed; `more` changes the rest.
fn seed_with_trunk(
    dir: &std::path::Path,
    port: u16,
    more: impl for<'a> FnOnce(
            &'a dyn Store,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>
        + 'static,
) {
    seed_demo_then(dir, move |store| {
        Box::pin(async move {
            let tenant = TenantId::from("demo");
            store
                .update::<Tenant, _>(&tenant, Tenant::ID, |t| {
                    t.allow_external_transfer = true;
                    Ok(true)
                })
                .await
                .unwrap();
            store
                .put(
                    &Trunk {
                        tenant: tenant.clone(),
                        id: Trunk::ID.into(),
                        gateway: format!("127.0.0.1:{port}"),
                        transport: TrunkTransport::Udp,
                        username: Some("trunk1".into()),
                        password: Some("s3cret".into()),
                        caller_id: "4000".into(),
                        enabled: true,
                    },
                    Expect::Any,
                )
                .await
                .unwrap();
            more(store).await;
        })
    });
}

/// `agent` dials 13800138000 from the phone bar (through the carrier);
/// back once agent and customer are bridged.
fn dial_out(node: &mut Node, token: &str, agent: &str) {
    let (code, v) = node.api(
        "POST",
        &format!("/api/v1/agents/{agent}/calls"),
        Some(token),
        Some(&json!({"number": "13800138000"})),
    );
    assert_eq!(code, 202, "{v}");
    assert!(node.wait_log("agent and customer bridged", Duration::from_secs(8)));
}

/// The customer says something and hears it back from the carrier's echo.
fn talk_through(c: &Customer) {
    let speech = spoken("one two three four five six seven", "en-us");
    let said = loud_windows(&speech);
    let from = c.elapsed();
    c.say(speech);
    std::thread::sleep(Duration::from_secs(4));
    let heard = loud_windows(&c.heard_since(from));
    assert!(said > 30, "test speech too quiet");
    assert!(
        heard * 10 >= said * 6,
        "heard {heard} loud windows of {said} said back through the trunk"
    );
}

#[test]
fn an_ivr_transfer_goes_out_through_the_trunk_with_digest_auth() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |store| {
        Box::pin(async move {
            // Key 3 of the demo menu: an outside number.
            let tenant = TenantId::from("demo");
            let mut flow = store
                .published_flow(&tenant, "demo")
                .await
                .unwrap()
                .unwrap()
                .definition;
            if let Some(IvrNode::Menu { options, .. }) = flow.nodes.get_mut("menu") {
                options.insert('3', "outside".into());
            }
            flow.nodes.insert(
                "outside".into(),
                IvrNode::TransferNumber {
                    number: "13900001111".into(),
                },
            );
            common::records::publish_flow(store, flow).await;
        })
    });
    let node = Node::start_in(dir, &[]);
    let mut c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('3');
    std::thread::sleep(Duration::from_secs(2));
    talk_through(&c);
    assert!(c.hang_up());
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    assert_eq!(r.hangup_reason, HangupReason::Transferred, "{r:?}");
    assert_eq!(r.ivr.keys, "3");
}

#[test]
fn an_agent_on_a_mobile_number_is_rung_through_the_trunk() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |store| {
        Box::pin(async move {
            store
                .update::<Agent, _>(&TenantId::from("demo"), "1003", |a| {
                    a.device = Device::Mobile {
                        number: "13700001111".into(),
                    };
                    Ok(true)
                })
                .await
                .unwrap();
        })
    });
    let node = Node::start_in(dir, &[]);
    let mut c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('2');
    std::thread::sleep(Duration::from_secs(2));
    talk_through(&c);
    assert!(c.hang_up());
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(
        r.rings.last().map(|x| x.outcome),
        Some(RingOutcome::Answered)
    );
}

#[test]
fn an_agent_consults_an_outside_number_and_hands_the_customer_to_it() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let running = agent.spawn(30);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    let mut c = Customer::to_support(&mut node, "13912345678");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult",
        Some(&token),
        Some(&json!({"number": "13900001111"})),
    );
    assert_eq!(code, 202, "{v}");
    assert!(
        node.wait_log("the consulted party answered", Duration::from_secs(5)),
        "the carrier did not answer the consultation"
    );
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult/transfer",
        Some(&token),
        None,
    );
    assert_eq!(code, 204, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    // The agent is off the call and wraps up.
    let (_, v) = node.api("GET", "/api/v1/agents/1001/status", Some(&token), None);
    assert_eq!(v["status"]["status"], "after_call_work", "{v}");
    // The customer now talks to the outside party (the carrier's echo).
    talk_through(&c);
    assert!(c.hang_up());
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let _ = Phone::stop(running);
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    assert_eq!(r.hangup_reason, HangupReason::Transferred, "{r:?}");
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    assert_eq!(
        r.transfers[0].to,
        switchboard_storage::model::TransferTarget::Number("13900001111".into())
    );
    assert_eq!(
        r.transfers[0].how,
        switchboard_storage::model::TransferKind::Consulted
    );
}

#[test]
fn a_waiting_caller_asks_for_a_callback_and_is_called_back_once_an_agent_answers() {
    // The carrier answers (and echoes) the call back to the caller.
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |store| {
        Box::pin(async move {
            // No survey: the agent's hang-up ends the call.
            store
                .update::<Tenant, _>(&TenantId::from("demo"), Tenant::ID, |t| {
                    t.survey_flow = None;
                    Ok(true)
                })
                .await
                .unwrap();
        })
    });
    let mut node = Node::start_in(dir, &[]);
    let admin = node.login("admin", "demo-admin");
    let status = |node: &Node, agent: &str, body: serde_json::Value| {
        let (code, v) = node.api(
            "PUT",
            &format!("/api/v1/agents/{agent}/status"),
            Some(&admin),
            Some(&body),
        );
        assert_eq!(code, 200, "{v}");
    };
    // Nobody in support is ready: the caller waits.
    for a in ["1001", "1002"] {
        status(&node, a, json!({"status": "break", "reason": "lunch"}));
    }
    let agent = Phone::auto_answer_saying(
        &node,
        "1001",
        "pass1001",
        "one two three four five six seven eight nine ten",
    );
    let running = agent.spawn(40);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('1');
    std::thread::sleep(Duration::from_secs(4));
    let asked = c.elapsed();
    c.press('9');
    // The caller hears the confirmation, then the node ends its leg.
    assert!(
        c.wait_bye(Duration::from_secs(15)),
        "the node did not end the caller's leg"
    );
    assert!(node.wait_log("the caller waits for a callback", Duration::from_secs(2)));
    let confirm = spoken(
        "Thank you. You keep your place in the queue, and we will call you back. Goodbye.",
        "en-us",
    );
    let score = match_score(&c.heard_since(asked), &confirm);
    assert!(score > 0.9, "the confirmation was not heard ({score:.2})");
    // 1001 is back: its phone rings, it answers, the caller is dialed.
    status(&node, "1001", json!({"status": "ready"}));
    assert!(node.wait_log("calling the caller back", Duration::from_secs(10)));
    assert!(node.wait_log("the caller took its callback", Duration::from_secs(10)));
    assert!(node.wait_log("customer and agent bridged", Duration::from_secs(5)));
    // 1001 says its piece (the carrier echoes it back), then hangs up.
    std::thread::sleep(Duration::from_secs(4));
    let out = Phone::stop(running);
    assert!(out.contains("Call established"), "{out}");
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let heard = loud_windows(&agent.heard());
    assert!(
        heard > 30,
        "the agent heard {heard} loud windows through the callback"
    );
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    assert_eq!(
        calls.len(),
        1,
        "one record for the call and its callback: {calls:?}"
    );
    let r = &calls[0];
    let cb = r.callback.expect("the callback in the record");
    assert!(cb.dialed.is_some_and(|d| d > cb.requested), "{r:?}");
    assert_eq!(cb.outcome, Some(DialOutcome::Answered), "{r:?}");
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert!(r.answered.is_some() && r.recording.is_some(), "{r:?}");
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
    let (_, doc) = node.api(
        "GET",
        &format!("/api/v1/calls/{}", r.call),
        Some(&admin),
        None,
    );
    assert_eq!(doc["callback"]["outcome"], "answered", "{doc}");
}

#[test]
fn the_agent_hears_the_carriers_early_media_instead_of_our_ring_back() {
    require("sipp", "sip-tester");
    let (sipp, port, sipp_dir) = carrier_with("carrier_early.xml");
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 25);
    let running = agent.spawn(25);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/calls",
        Some(&token),
        Some(&json!({"number": "13800138000"})),
    );
    assert_eq!(code, 202, "{v}");
    assert!(
        node.wait_log("early media from the carrier", Duration::from_secs(10)),
        "no early media"
    );
    assert!(node.wait_log("agent and customer bridged", Duration::from_secs(8)));
    std::thread::sleep(Duration::from_millis(500));
    let _ = Phone::stop(running);
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    // What the agent heard while the customer's phone "rang": the
    // carrier's audio, not the 450 Hz of our ring-back.
    let heard = agent.heard();
    let loud: Vec<&[i16]> = heard.chunks(160).filter(|w| loud_windows(w) > 0).collect();
    let ringback = loud.iter().filter(|w| tone_share(w, 450.0) > 0.5).count();
    assert!(
        loud.len() > 50,
        "the agent heard {} loud windows",
        loud.len()
    );
    assert!(
        ringback * 4 < loud.len(),
        "the agent heard our ring-back ({ringback} of {} loud windows)",
        loud.len()
    );
}

#[test]
fn a_supervisor_listens_to_an_outbound_call_then_takes_it_over() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    // 1001 talks (the carrier echoes it); 1003, the supervisor, listens,
    // then takes the call over and talks on.
    let agent = Phone::auto_answer_saying(
        &node,
        "1001",
        "pass1001",
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty",
    );
    let supervisor = Phone::auto_answer_saying(
        &node,
        "1003",
        "pass1003",
        "this is the supervisor speaking to the customer now, one two three four five six seven",
    );
    let (agent_run, sup_run) = (agent.spawn(25), supervisor.spawn(25));
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    assert!(node.wait_log("registered user=1003", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    let admin = node.login("admin", "demo-admin");
    dial_out(&mut node, &token, "1001");
    let monitor = |node: &Node, mode: &str| {
        node.api(
            "POST",
            "/api/v1/monitor/agents/1001",
            Some(&admin),
            Some(&json!({"mode": mode, "supervisor": "1003"})),
        )
    };
    let (code, v) = monitor(&node, "listen");
    assert_eq!(code, 202, "{v}");
    assert!(node.wait_log("the supervisor is on the call", Duration::from_secs(5)));
    let (_, v) = node.api("GET", "/api/v1/agents/1003/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "talking", "{v}");
    std::thread::sleep(Duration::from_secs(2));
    let (code, v) = monitor(&node, "take_over");
    assert_eq!(code, 202, "{v}");
    assert!(node.wait_log("the supervisor took the call over", Duration::from_secs(5)));
    // The agent's phone got a BYE; it wraps up.
    let out = Phone::stop(agent_run);
    assert!(out.contains("Call established"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = node.api("GET", "/api/v1/agents/1001/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "after_call_work", "{v}");
    // The supervisor talks to the customer: in the last seconds of its
    // call (the agent long gone) it hears its own speech back from the
    // carrier's echo.
    let out = Phone::output(sup_run);
    assert!(out.contains("Call established"), "{out}");
    let tail = |w: Vec<i16>| loud_windows(&w[w.len().saturating_sub(3 * 8000)..]);
    let (said, heard) = (tail(supervisor.said()), tail(supervisor.heard()));
    assert!(said > 20, "supervisor speech too quiet: {said}");
    assert!(
        heard * 10 >= said * 5,
        "the supervisor heard {heard} loud windows of the {said} it said last"
    );
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = &calls[0];
    assert_eq!(r.outcome, Some(DialOutcome::Answered), "{r:?}");
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    assert_eq!(r.transfers[0].by.0, "1001");
    assert_eq!(
        r.transfers[0].how,
        switchboard_storage::model::TransferKind::TakenOver
    );
}

#[test]
fn an_outbound_call_goes_to_a_consulted_agent_then_on_to_another_blind() {
    // The customer goes on hold while its agents consult: re-INVITEs.
    let (sipp, port, sipp_dir) = carrier_with("carrier_reinvite.xml");
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    // 1001 places the call and consults 1002, who takes the customer and
    // sends it on to 1003; 1003 talks (the carrier echoes it) and hangs
    // up when it has said its piece.
    let first = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let second = Phone::auto_answer_quiet(&node, "1002", "pass1002", 30);
    let third = Phone::auto_answer_saying(
        &node,
        "1003",
        "pass1003",
        "one two three four five six seven eight nine ten eleven twelve",
    );
    let runs = [first.spawn(30), second.spawn(30), third.spawn(30)];
    for u in ["1001", "1002", "1003"] {
        assert!(node.wait_log(&format!("registered user={u}"), Duration::from_secs(5)));
    }
    let admin = node.login("admin", "demo-admin");
    dial_out(&mut node, &admin, "1001");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult",
        Some(&admin),
        Some(&json!({"agent": "1002"})),
    );
    assert_eq!(code, 202, "{v}");
    assert!(node.wait_log("the consulted party answered", Duration::from_secs(5)));
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult/transfer",
        Some(&admin),
        None,
    );
    assert_eq!(code, 204, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.status_of(&admin, "1001"), "after_call_work");
    assert_eq!(node.status_of(&admin, "1002"), "talking");
    let transfer = |node: &Node, to: serde_json::Value| {
        node.api(
            "POST",
            "/api/v1/agents/1002/transfer",
            Some(&admin),
            Some(&to),
        )
    };
    let (code, v) = transfer(&node, json!({"agent": "1002"}));
    assert_eq!(code, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("itself"),
        "{v}"
    );
    let (code, v) = transfer(&node, json!({"agent": "1003"}));
    assert_eq!(code, 204, "{v}");
    assert!(node.wait_log("the customer was sent on", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.status_of(&admin, "1002"), "after_call_work");
    let [a, b, c] = runs;
    // 1003 hears its own speech from the customer's side (the echo).
    let out = Phone::output(c);
    assert!(out.contains("Call established"), "{out}");
    let (said, heard) = (loud_windows(&third.said()), loud_windows(&third.heard()));
    assert!(said > 40, "speech too quiet: {said}");
    assert!(
        heard * 10 >= said * 6,
        "1003 heard {heard} loud windows of the {said} it said"
    );
    let _ = (Phone::stop(a), Phone::stop(b));
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    assert_eq!(calls.len(), 1, "one record for the call: {calls:?}");
    let r = &calls[0];
    assert_eq!(r.direction, Direction::Outbound);
    assert_eq!(r.outcome, Some(DialOutcome::Answered), "{r:?}");
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
    assert_eq!(r.hangup_reason, HangupReason::Normal, "{r:?}");
    let hops: Vec<_> = r
        .transfers
        .iter()
        .map(|t| (t.by.0.as_str(), t.to.clone(), t.how))
        .collect();
    use switchboard_storage::model::{TransferKind, TransferTarget};
    assert_eq!(
        hops,
        vec![
            (
                "1001",
                TransferTarget::Agent("1002".into()),
                TransferKind::Consulted
            ),
            (
                "1002",
                TransferTarget::Agent("1003".into()),
                TransferKind::Blind
            ),
        ]
    );
    let agents: Vec<_> = r
        .legs
        .iter()
        .filter(|l| l.kind == LegKind::Agent)
        .map(|l| l.party.as_str())
        .collect();
    assert_eq!(agents, ["1001", "1002", "1003"], "{r:?}");
}

#[test]
fn an_outbound_call_sent_to_a_skill_group_waits_in_its_queue_and_is_answered_there() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    // 1001 places the call and sends the customer to support, where 1002
    // (busy at first) answers and talks (the carrier echoes it).
    let first = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let second = Phone::auto_answer_saying(
        &node,
        "1002",
        "pass1002",
        "one two three four five six seven eight nine ten eleven twelve",
    );
    let runs = [first.spawn(30), second.spawn(30)];
    for u in ["1001", "1002"] {
        assert!(node.wait_log(&format!("registered user={u}"), Duration::from_secs(5)));
    }
    let admin = node.login("admin", "demo-admin");
    node.set_status(&admin, "1002", "busy");
    dial_out(&mut node, &admin, "1001");
    let transfer = |node: &Node, to: serde_json::Value| {
        node.api(
            "POST",
            "/api/v1/agents/1001/transfer",
            Some(&admin),
            Some(&to),
        )
    };
    let (code, v) = transfer(&node, json!({"group": "nowhere"}));
    assert_eq!(code, 422, "{v}");
    let (code, v) = transfer(&node, json!({"group": "support"}));
    assert_eq!(code, 204, "{v}");
    assert!(node.wait_log("the customer was sent to the queue", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(800));
    let (_, v) = node.api("GET", "/api/v1/monitor/groups", Some(&admin), None);
    let waiting = v
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["group"] == "support"))
        .map(|g| g["waiting"].clone());
    assert_eq!(waiting, Some(json!(1)), "{v}");
    let (_, v) = node.api("GET", "/api/v1/agents/1001/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "after_call_work", "{v}");
    // 1002 becomes ready: the queue offers it the customer.
    node.set_status(&admin, "1002", "ready");
    assert!(node.wait_log("customer and agent bridged", Duration::from_secs(8)));
    let [a, b] = runs;
    let out = Phone::output(b);
    assert!(out.contains("Call established"), "{out}");
    let (said, heard) = (loud_windows(&second.said()), loud_windows(&second.heard()));
    assert!(said > 40, "speech too quiet: {said}");
    assert!(
        heard * 10 >= said * 6,
        "1002 heard {heard} loud windows of the {said} it said"
    );
    let _ = Phone::stop(a);
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    assert_eq!(calls.len(), 1, "one record for the call: {calls:?}");
    let r = &calls[0];
    assert_eq!(r.direction, Direction::Outbound);
    assert_eq!(r.outcome, Some(DialOutcome::Answered), "{r:?}");
    assert_eq!(r.group.as_deref(), Some("support"), "{r:?}");
    assert!(r.enqueued.is_some(), "{r:?}");
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1002"),
        "{r:?}"
    );
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    assert_eq!(
        r.transfers[0].to,
        switchboard_storage::model::TransferTarget::Group("support".into())
    );
    let agents: Vec<_> = r
        .legs
        .iter()
        .filter(|l| l.kind == LegKind::Agent)
        .map(|l| l.party.as_str())
        .collect();
    assert_eq!(agents, ["1001", "1002"], "{r:?}");
    assert!(r.recording.is_some(), "{r:?}");
}

#[test]
fn an_outbound_call_is_sent_on_blind_to_an_outside_number() {
    // Two calls at the carrier: the customer, then the number it is sent
    // to; re-INVITEs for the music meanwhile.
    let (mut sipp, port, _sipp_dir) = carrier_calls("carrier_reinvite.xml", 2);
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let running = agent.spawn(30);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let admin = node.login("admin", "demo-admin");
    dial_out(&mut node, &admin, "1001");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/transfer",
        Some(&admin),
        Some(&json!({"number": "13900001111"})),
    );
    assert_eq!(code, 204, "{v}");
    assert!(
        node.wait_log("the customer was sent on", Duration::from_secs(8)),
        "the number never answered"
    );
    let (_, v) = node.api("GET", "/api/v1/agents/1001/status", Some(&admin), None);
    assert_eq!(v["status"]["status"], "after_call_work", "{v}");
    // The record ends with the hand-over; the two parties talk on.
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    let r = &calls[0];
    assert_eq!(r.direction, Direction::Outbound);
    assert_eq!(r.hangup_reason, HangupReason::Transferred, "{r:?}");
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    assert_eq!(
        (&r.transfers[0].to, r.transfers[0].how),
        (
            &switchboard_storage::model::TransferTarget::Number("13900001111".into()),
            switchboard_storage::model::TransferKind::Blind
        )
    );
    assert!(
        r.legs
            .iter()
            .any(|l| l.kind == LegKind::ThirdParty && l.party == "13900001111"),
        "{r:?}"
    );
    assert_eq!(r.holds.len(), 1, "the music while the number rang: {r:?}");
    let _ = sipp.kill();
    let _ = sipp.wait();
    let _ = Phone::stop(running);
}

#[test]
fn an_outbound_call_becomes_a_three_way_call_with_a_consulted_agent() {
    let (sipp, port, sipp_dir) = carrier_with("carrier_reinvite.xml");
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    // 1001 places the call and says nothing; 1002, consulted, talks
    // throughout: in the three-way call it hears itself back through the
    // customer (the carrier echoes the mix it gets).
    let first = Phone::auto_answer_quiet(&node, "1001", "pass1001", 30);
    let second = Phone::auto_answer_saying(
        &node,
        "1002",
        "pass1002",
        "one two three four five six seven eight nine ten eleven twelve thirteen \
         fourteen fifteen sixteen seventeen eighteen nineteen twenty",
    );
    let runs = [first.spawn(30), second.spawn(30)];
    for u in ["1001", "1002"] {
        assert!(node.wait_log(&format!("registered user={u}"), Duration::from_secs(5)));
    }
    let admin = node.login("admin", "demo-admin");
    dial_out(&mut node, &admin, "1001");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult",
        Some(&admin),
        Some(&json!({"agent": "1002"})),
    );
    assert_eq!(code, 202, "{v}");
    assert!(node.wait_log("the consulted party answered", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_secs(1));
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/consult/conference",
        Some(&admin),
        None,
    );
    assert_eq!(code, 204, "{v}");
    assert!(node.wait_log("three-way call", Duration::from_secs(2)));
    std::thread::sleep(Duration::from_secs(3));
    // 1002 leaves the three-way call; agent and customer go on.
    let (code, v) = node.api("DELETE", "/api/v1/agents/1001/consult", Some(&admin), None);
    assert_eq!(code, 204, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.status_of(&admin, "1001"), "talking");
    let [a, b] = runs;
    let out = Phone::stop(b);
    assert!(out.contains("Call established"), "{out}");
    let heard = loud_windows(&second.heard());
    assert!(
        heard > 60,
        "1002 heard {heard} loud windows: not itself through the customer"
    );
    let _ = Phone::stop(a);
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = &calls[0];
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1001"),
        "{r:?}"
    );
    assert!(r.transfers.is_empty(), "{r:?}");
    assert_eq!(
        r.holds.len(),
        1,
        "on hold from the consultation to the three-way call: {r:?}"
    );
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
}

#[test]
fn an_outbound_call_sent_to_an_agent_who_never_answers_ends_transfer_failed() {
    let (sipp, port, sipp_dir) = carrier_with("carrier_reinvite.xml");
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    // 1002's phone rings but nobody picks it up.
    let first = Phone::auto_answer_quiet(&node, "1001", "pass1001", 40);
    let second = Phone::new(&node, "1002", "pass1002");
    let runs = [first.spawn(40), second.spawn(40)];
    for u in ["1001", "1002"] {
        assert!(node.wait_log(&format!("registered user={u}"), Duration::from_secs(5)));
    }
    let admin = node.login("admin", "demo-admin");
    dial_out(&mut node, &admin, "1001");
    let (code, v) = node.api(
        "POST",
        "/api/v1/agents/1001/transfer",
        Some(&admin),
        Some(&json!({"agent": "1002"})),
    );
    assert_eq!(code, 204, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.status_of(&admin, "1001"), "after_call_work");
    // After its 20 s of ringing nobody is left for the customer.
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(30));
    let r = &calls[0];
    assert_eq!(r.hangup_reason, HangupReason::TransferFailed, "{r:?}");
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1001"),
        "{r:?}"
    );
    assert_eq!(r.transfers.len(), 1, "{r:?}");
    let rang = r.end.since(r.transfers[0].at);
    assert!(
        rang >= Duration::from_secs(19) && rang <= Duration::from_secs(25),
        "gave up after {rang:?}"
    );
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(
        ok,
        "the carrier's side failed (its customer gets a BYE): {errors}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        node.status_of(&admin, "1002"),
        "ready",
        "1002 is free again"
    );
    for r in runs {
        let _ = Phone::stop(r);
    }
}

#[test]
fn a_caller_from_outside_never_reaches_the_trunk() {
    // The "carrier" is a socket that must hear nothing.
    let gateway = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = gateway.local_addr().unwrap().port();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let node = Node::start_in(dir, &[]);
    let peer = common::Peer::new(&node);
    for number in ["13900001111", "013900001111", "+8613900001111", "9"] {
        let invite = format!(
            "INVITE sip:{number}@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch=z9hG4bK{2}\r\nMax-Forwards: 70\r\nFrom: <sip:intruder@203.0.113.9>;tag=x\r\nTo: <sip:{number}@{0}>\r\nCall-ID: fraud-{2}\r\nCSeq: 1 INVITE\r\nContact: <sip:intruder@127.0.0.1:{1}>\r\nContent-Length: 0\r\n\r\n",
            node.sip,
            peer.port(),
            rand_u32()
        );
        peer.send(&invite);
        let answer = peer
            .recv_all(Duration::from_millis(500))
            .into_iter()
            .find(|m| m.starts_with("SIP/2.0 4"))
            .unwrap_or_default();
        assert!(answer.starts_with("SIP/2.0 404"), "{number}: {answer}");
    }
    gateway
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        gateway.recv_from(&mut buf).is_err(),
        "something reached the trunk"
    );
}

#[test]
fn an_agent_calls_a_customer_from_the_phone_bar_through_the_trunk() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    // A customer 1001 planned to call back (回访).
    seed_with_trunk(&dir, port, |store| {
        Box::pin(async move {
            let tenant = TenantId::from("demo");
            let now = Timestamp(1_796_000_000_000);
            store
                .put_customer(&Profile {
                    tenant: tenant.clone(),
                    id: "c-wang".into(),
                    name: "王先生".into(),
                    numbers: vec!["13800138000".into()],
                    fields: Default::default(),
                    created: now,
                    updated: now,
                })
                .await
                .unwrap();
            store
                .put_contact_plan(&ContactPlan {
                    tenant,
                    id: "plan-1".into(),
                    customer: "c-wang".into(),
                    number: "13800138000".into(),
                    agent: "1001".into(),
                    due: now,
                    note: "call back about the refund".into(),
                    status: ContactPlanStatus::Pending,
                    created: now,
                    call: None,
                    outcome: None,
                })
                .await
                .unwrap();
        })
    });
    let mut node = Node::start_in(dir, &[]);
    // 1001 answers its own phone at once and talks until its speech
    // ends (about 4 s), then hangs up.
    let agent = Phone::auto_answer(&node, "1001", "pass1001");
    let running = agent.spawn(15);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    // The phone bar dials the plan.
    let (status, v) = node.api(
        "POST",
        "/api/v1/agents/1001/calls",
        Some(&token),
        Some(&json!({"plan": "plan-1"})),
    );
    assert_eq!(status, 202, "{v}");
    let call = v["call"].as_str().expect("the call's id").to_owned();
    // Busy for the ACD while on it: a second dial is refused.
    std::thread::sleep(Duration::from_millis(300));
    let (again, why) = node.api(
        "POST",
        "/api/v1/agents/1001/calls",
        Some(&token),
        Some(&json!({"number": "13800138001"})),
    );
    assert_eq!(again, 409, "{why}");
    let out = Phone::output(running);
    assert!(
        out.contains("Call established"),
        "the agent's phone never answered: {out}"
    );
    assert!(
        out.contains("13800138000"),
        "the agent's phone did not show the number dialed: {out}"
    );
    // The carrier echoes what it gets: the agent hearing its own speech
    // went agent → trunk → agent through the bridge.
    let (said, heard) = (loud_windows(&agent.said()), loud_windows(&agent.heard()));
    assert!(said > 50, "agent speech too quiet: {said}");
    assert!(
        heard * 10 >= said * 5,
        "the agent heard {heard} loud windows of the {said} it said"
    );
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    assert_eq!(r.call.to_string(), call);
    assert_eq!(r.direction, Direction::Outbound, "{r:?}");
    assert_eq!(r.outcome, Some(DialOutcome::Answered), "{r:?}");
    assert_eq!(r.caller, "4000", "the trunk's caller ID");
    assert_eq!(r.dialed, "13800138000");
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert_eq!(r.hangup_side, HangupSide::Agent, "{r:?}");
    assert!(r.talk_time() >= Duration::from_secs(2), "{r:?}");
    let legs: Vec<LegKind> = r.legs.iter().map(|l| l.kind).collect();
    assert_eq!(legs, vec![LegKind::Agent, LegKind::Customer]);
    assert!(r.recording.is_some(), "{r:?}");
    // The API shows the outcome; the agent was talking from the dial on
    // and wraps up after it.
    let (status, doc) = node.api("GET", &format!("/api/v1/calls/{call}"), Some(&token), None);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["outcome"], "answered", "{doc}");
    let log = status_log(&node.data_dir, "1001");
    assert!(
        log.iter()
            .any(|c| matches!(c.period.status, Status::Talking { .. })
                && c.period.reason == ChangeReason::Dialed),
        "no talking period begun by the dial: {log:?}"
    );
    // After the talk the agent wraps up (the demo's 10 s of outbound
    // wrap-up), in it now or through it already.
    let (_, now) = node.api("GET", "/api/v1/agents/1001/status", Some(&token), None);
    let wrapped = now["status"]["status"] == "after_call_work"
        || status_log(&node.data_dir, "1001")
            .iter()
            .any(|c| matches!(c.period.status, Status::AfterCallWork { .. }));
    assert!(wrapped, "no wrap-up after the outbound call: {now}");
    // The call is in the customer's timeline, and the plan is done with
    // the call and its outcome.
    assert_eq!(r.customer.as_deref(), Some("c-wang"), "{r:?}");
    let mut plans = serde_json::Value::Null;
    for _ in 0..50 {
        plans = node
            .api(
                "GET",
                "/api/v1/agents/1001/contact-plans",
                Some(&token),
                None,
            )
            .1;
        if plans[0]["status"] == "done" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let plan = &plans[0];
    assert_eq!(plan["status"], "done", "{plans}");
    assert_eq!(plan["outcome"], "answered", "{plans}");
    assert_eq!(plan["call"], call.as_str(), "{plans}");
    // A done plan is not dialed again.
    let (again, why) = node.api(
        "POST",
        "/api/v1/agents/1001/calls",
        Some(&token),
        Some(&json!({"plan": "plan-1"})),
    );
    assert_eq!(again, 409, "{why}");
}

#[test]
fn a_busy_number_is_a_busy_outcome_and_wrong_requests_are_refused() {
    let (sipp, port, sipp_dir) = carrier_with("carrier_busy.xml");
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &[]);
    let token = node.login("1001", "pass1001");
    let dial = |node: &Node, token: &str, agent: &str, number: &str| {
        node.api(
            "POST",
            &format!("/api/v1/agents/{agent}/calls"),
            Some(token),
            Some(&json!({ "number": number })),
        )
    };
    // Its phone is not registered yet: 409, with the reason.
    let (status, v) = dial(&node, &token, "1001", "13800138000");
    assert_eq!(status, 409, "{v}");
    assert!(v.to_string().contains("not registered"), "{v}");
    // Not a number: 422 naming the field.
    let (status, v) = dial(&node, &token, "1001", "call me");
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("number"), "{v}");
    // Another agent's phone bar is not 1001's.
    let (status, v) = dial(&node, &token, "1002", "13800138000");
    assert_eq!(status, 404, "{v}");
    let agent = Phone::auto_answer(&node, "1001", "pass1001");
    let running = agent.spawn(8);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let (status, v) = dial(&node, &token, "1001", "13800138000");
    assert_eq!(status, 202, "{v}");
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("call record");
    assert_eq!(r.outcome, Some(DialOutcome::Busy), "{r:?}");
    assert_eq!(r.answered, None, "{r:?}");
    assert_eq!(r.hangup_side, HangupSide::Customer, "{r:?}");
    // The node hung up on the agent's phone.
    let out = Phone::output(running);
    assert!(out.contains("Call established"), "{out}");
    assert!(
        out.contains("terminated") || out.contains("closed"),
        "the agent's call was not ended: {out}"
    );
    assert_nothing_left_up(&node);
}

/// An outbound call whose customer's side goes quiet (the carrier sends
/// 7 s of audio, then nothing and no BYE: its network is gone) is hung up
/// after the media timeout: the carrier and the agent's phone both get a
/// BYE, and the record says the customer's side ended it.
#[test]
fn an_outbound_call_whose_carrier_goes_quiet_is_hung_up_after_the_media_timeout() {
    // Not `carrier`: SIPp's echo would answer our audio with its own.
    let port = free_port();
    let mut sipp = common::quiet_sipp_phone(port);
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let mut node = Node::start_in(dir, &["--media-timeout-secs", "5"]);
    let agent = Phone::auto_answer_quiet(&node, "1001", "pass1001", 40);
    let running = agent.spawn(40);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let token = node.login("1001", "pass1001");
    dial_out(&mut node, &token, "1001");
    let bridged = std::time::Instant::now();
    let ended = sipp.wait().map(|s| s.success()).unwrap_or(false);
    assert!(ended, "the carrier got no BYE");
    assert!(
        bridged.elapsed() >= Duration::from_secs(11),
        "hung up {:?} after the bridge, before the media timeout",
        bridged.elapsed()
    );
    assert!(node.wait_log("no media from the phone", Duration::from_secs(1)));
    assert_eq!(node.metric("switchboard_media_timeouts_total"), Some(1.0));
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(10));
    let r = calls.first().expect("call record");
    assert_eq!(r.direction, Direction::Outbound, "{r:?}");
    assert_eq!(r.outcome, Some(DialOutcome::Answered), "{r:?}");
    assert_eq!(r.hangup_side, HangupSide::Customer, "{r:?}");
    assert!(r.talk_time() >= Duration::from_secs(11), "{r:?}");
    assert_nothing_left_up(&node);
    assert_hung_up(&Phone::stop(running));
}
