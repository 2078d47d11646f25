//! Several node processes on loopback forming one cluster over one
//! shared data directory: joining, the failure detector, placement, and
//! re-joining after a `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{members, start, three_placed, wait_up};
use common::{free_port, Node};
use serde_json::Value;
use std::time::{Duration, Instant};

fn home(node: &Node, token: &str, kind: &str, id: &str) -> String {
    let (status, v) = node.api(
        "GET",
        &format!("/api/v1/cluster/placement?kind={kind}&id={id}"),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{v}");
    v["node"].as_str().unwrap().to_owned()
}

/// `switchboard ARGS…`, run to its end.
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .output()
        .unwrap()
}

const ENTITIES: [(&str, &str); 5] = [
    ("agent", "1001"),
    ("agent", "1002"),
    ("agent", "1003"),
    ("skill_group", "support"),
    ("skill_group", "sales"),
];

/// Where each demo entity lives, as `node` says.
fn homes(node: &Node, token: &str) -> Vec<String> {
    ENTITIES
        .iter()
        .map(|(k, id)| home(node, token, k, id))
        .collect()
}

#[test]
fn three_nodes_join_agree_on_placement_and_survive_a_kill() {
    let data = Node::fresh_data_dir();
    let ports = [free_port(), free_port(), free_port()];
    let a = start(&data, "a", ports[0], None, &[]);
    let b = start(&data, "b", ports[1], Some(ports[0]), &[]);
    let mut c = start(&data, "c", ports[2], Some(ports[0]), &[]);
    // One store: a token from one node is good on all.
    let token = a.login("admin", "demo-admin");
    for n in [&a, &b, &c] {
        wait_up(n, &token, &["a", "b", "c"], Duration::from_secs(15));
    }
    // c learned of b through a's heartbeats, and b of c.
    let placed = homes(&a, &token);
    assert_eq!(placed, homes(&b, &token));
    assert_eq!(placed, homes(&c, &token));
    assert!(placed.iter().all(|n| ["a", "b", "c"].contains(&n.as_str())));
    let (status, v) = a.api(
        "GET",
        "/api/v1/cluster/placement?kind=planet&id=x",
        Some(&token),
        None,
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["details"][0]["field"], "kind", "{v}");
    assert_eq!(
        // The gauges follow the view every half second.
        a.wait_metric(
            "switchboard_cluster_members{health=\"up\"}",
            3.0,
            Duration::from_secs(3)
        ),
        Some(3.0)
    );

    // An agent homed on c is on a break (said through a).
    let on_c = ENTITIES[..3]
        .iter()
        .zip(&placed)
        .find(|(_, n)| *n == "c")
        .map(|((_, id), _)| *id)
        .expect("an agent homed on c");
    assert!(c.wait_log(
        &format!("agent hosted here tenant=demo agent={on_c}"),
        Duration::from_secs(5)
    ));
    let path = format!("/api/v1/agents/{on_c}/status");
    // a and b hear of the break (relayed from c) before c dies.
    let on_break = |agent: String| {
        move |v: &Value| {
            v["type"] == "agent.status"
                && v["agent"] == agent.as_str()
                && v["status"]["status"] == "break"
        }
    };
    let heard: Vec<_> = [&a, &b]
        .iter()
        .map(|n| {
            common::cluster::listen_until(
                n,
                &token,
                Duration::from_secs(10),
                on_break(on_c.to_owned()),
            )
        })
        .collect();
    let brk = serde_json::json!({"status": "break", "reason": "training"});
    let (code, v) = a.api("PUT", &path, Some(&token), Some(&brk));
    assert_eq!(code, 200, "{v}");
    for h in heard {
        let events = h.join().unwrap();
        assert!(
            events.last().is_some_and(on_break(on_c.to_owned())),
            "the break was not relayed: {events:?}"
        );
    }

    // kill -9: a and b notice by the silence (the default 2 s), with
    // placement moving off c and nowhere else.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let killed = Instant::now();
    wait_up(&a, &token, &["a", "b"], Duration::from_secs(6));
    wait_up(&b, &token, &["a", "b"], Duration::from_secs(6));
    let detected = killed.elapsed();
    assert!(
        detected >= Duration::from_millis(1500),
        "down after {detected:?}: too early for a 2 s silence"
    );
    assert_eq!(members(&a, &token)["c"], "down");
    let after = homes(&a, &token);
    assert_eq!(after, homes(&b, &token));
    for (was, now) in placed.iter().zip(&after) {
        if was == "c" {
            assert_ne!(now, "c");
        } else {
            assert_eq!(was, now, "an entity moved off a node that is still up");
        }
    }
    // Its new home started it on the break it had (the others heard of
    // it through the live events).
    let t0 = Instant::now();
    loop {
        let (code, v) = b.api("GET", &path, Some(&token), None);
        if code == 200 && v["status"]["status"] == "break" {
            assert_eq!(v["status"]["reason"], "training", "{v}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{code} {v}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // c comes back on the same address: re-dialed, up everywhere again,
    // and placement as before.
    c = start(&data, "c", ports[2], Some(ports[0]), &[]);
    for n in [&a, &b, &c] {
        wait_up(n, &token, &["a", "b", "c"], Duration::from_secs(15));
    }
    assert_eq!(homes(&b, &token), placed);

    // The operator's view from the command line, with the data
    // directory's cookie.
    let out = cli(&[
        "cluster",
        "status",
        "--http",
        &b.http.to_string(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" up ")).count(),
        3,
        "{text}"
    );
    assert!(text.contains("(this node)"), "{text}");
    let out = cli(&[
        "cluster",
        "status",
        "--http",
        &a.http.to_string(),
        "--placement",
        "group:support",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("lives on {}", placed[3])), "{text}");
    drop(c);
}

#[test]
fn a_node_with_another_cookie_never_joins() {
    let (pa, pd) = (free_port(), free_port());
    let a = start(
        &Node::fresh_data_dir(),
        "a",
        pa,
        None,
        &["--cookie", "the-right-secret"],
    );
    let d = start(
        &Node::fresh_data_dir(),
        "d",
        pd,
        Some(pa),
        &["--cookie", "a-wrong-secret"],
    );
    let ta = a.login("admin", "demo-admin");
    let td = d.login("admin", "demo-admin");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        members(&a, &ta)
            .into_iter()
            .filter(|(_, h)| h == "up")
            .count(),
        1
    );
    let seen = members(&d, &td);
    assert_eq!(seen.len(), 1, "d heard nobody: {seen:?}");
    let (_, v) = d.api("GET", "/api/v1/cluster", Some(&td), None);
    let seed: &Value = &v["members"][1];
    assert_eq!(seed["health"], "joining", "{v}");
    assert_eq!(seed["addr"], format!("127.0.0.1:{pa}"));
    // The status command refuses a wrong cookie.
    let out = cli(&[
        "cluster",
        "status",
        "--http",
        &a.http.to_string(),
        "--cookie",
        "a-wrong-secret",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

fn wait_exit(node: &mut Node, within: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let Some(s) = node.child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// An INVITE with no dialog to the node; the status of its answer.
fn invite_status(node: &Node) -> Option<u16> {
    let peer = common::Peer::new(node);
    let n = common::rand_u32();
    peer.send(&format!(
        "INVITE sip:4000@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch=z9hG4bK{n}\r\nMax-Forwards: 70\r\nFrom: <sip:13800138000@127.0.0.1>;tag=d{n}\r\nTo: <sip:4000@{0}>\r\nCall-ID: drain-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:13800138000@127.0.0.1:{1}>\r\nContent-Length: 0\r\n\r\n",
        node.sip,
        peer.port()
    ));
    let answers = peer.recv_all(Duration::from_secs(2));
    answers
        .iter()
        .filter_map(|m| m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok())
        .find(|c: &u16| *c >= 200)
}

#[test]
fn sigterm_drains_the_call_up_then_exits_and_the_others_see_it_leave() {
    let data = Node::fresh_data_dir();
    let (pa, pb) = (free_port(), free_port());
    let mut a = start(&data, "a", pa, None, &[]);
    let mut b = start(&data, "b", pb, Some(pa), &["--drain-timeout-secs", "60"]);
    let token = a.login("admin", "demo-admin");
    wait_up(&a, &token, &["a", "b"], Duration::from_secs(15));

    // An agent homed on b is on a break: it stays on its break at a.
    let on_b = ["1001", "1002", "1003"]
        .into_iter()
        .find(|id| home(&a, &token, "agent", id) == "b")
        .expect("an agent homed on b");
    let hosted = format!("agent hosted here tenant=demo agent={on_b}");
    assert!(b.wait_log(&hosted, Duration::from_secs(5)), "{:?}", b.lines);
    let path = format!("/api/v1/agents/{on_b}/status");
    let brk = serde_json::json!({"status": "break", "reason": "lunch"});
    let (code, v) = a.api("PUT", &path, Some(&token), Some(&brk));
    assert_eq!(code, 200, "{v}");
    // A caller is in b's IVR when b is told to stop.
    let mut caller = common::customer::Customer::call(b.sip, "4000", "13800138000");
    assert!(caller.answered, "the hotline answered");
    let pid = b.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(
        b.wait_log("draining: new calls are refused", Duration::from_secs(5)),
        "{:?}",
        b.lines
    );
    // a takes b's entities at once: b said it leaves, a does not wait
    // for 2 s of silence.
    let t0 = Instant::now();
    wait_up(&a, &token, &["a"], Duration::from_secs(2));
    assert!(t0.elapsed() < Duration::from_millis(1500));
    assert_eq!(members(&a, &token)["b"], "left");
    assert!(homes(&a, &token).iter().all(|n| n == "a"));
    assert!(a.wait_log(&hosted, Duration::from_secs(5)), "{:?}", a.lines);
    let t0 = Instant::now();
    loop {
        let (code, v) = a.api("GET", &path, Some(&token), None);
        if code == 200 && v["status"]["status"] == "break" {
            assert_eq!(v["status"]["reason"], "lunch", "{v}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{code} {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // b refuses a new call and keeps the one up.
    assert_eq!(invite_status(&b), Some(503));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "b left with a call up"
    );
    assert!(!caller.node_hung_up(), "the caller was cut off");
    let (status, v) = b.api("GET", "/api/v1/cluster", Some(&token), None);
    assert_eq!((status, &v["draining"]), (200, &Value::Bool(true)), "{v}");
    // The call ends: b exits, cleanly.
    assert!(caller.hang_up());
    let code = wait_exit(&mut b, Duration::from_secs(10)).expect("b exits once its call ended");
    assert!(code.success(), "{code:?}");

    // `switchboard drain` does the same through the API, with the cookie.
    let out = cli(&[
        "drain",
        "--http",
        &a.http.to_string(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is draining"));
    let code = wait_exit(&mut a, Duration::from_secs(10)).expect("a exits: it had no calls");
    assert!(code.success(), "{code:?}");
}

#[test]
fn a_call_on_one_node_queues_in_a_group_on_another_and_an_agent_on_a_third_answers() {
    use common::phone::{loud_windows, Phone};
    let (data, [na, nb, nc], [mut a, mut b, mut c], token) = three_placed(&[]);
    assert_eq!(home(&a, &token, "skill_group", "support"), nb);
    assert_eq!(home(&a, &token, "agent", "1001"), nc);
    // Each node starts what it became home of.
    assert!(
        b.wait_log(
            "skill group hosted here tenant=demo group=support",
            Duration::from_secs(5)
        ),
        "{:?}",
        b.lines
    );
    assert!(
        c.wait_log(
            "agent hosted here tenant=demo agent=1001",
            Duration::from_secs(5)
        ),
        "{:?}",
        c.lines
    );
    // 1001's phone registers with b; the call comes in on a.
    let agent = Phone::auto_answer(&b, "1001", "pass1001");
    let running = agent.spawn(25);
    assert!(
        b.wait_log("registered user=1001", Duration::from_secs(5)),
        "agent phone did not register"
    );
    // The agent's browser is connected to b: it hears the screen pop (on
    // a, the call's node) and its statuses (on c, its home).
    let agent_token = b.login("1001", "pass1001");
    let events = common::cluster::listen(&b, &agent_token, Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));
    let mut customer = common::customer::Customer::to_support(&mut a, "13800138000");
    let out = Phone::output(running);
    for n in [&mut a, &mut b, &mut c] {
        n.count_log("");
    }
    assert!(
        out.contains("Call established"),
        "agent never answered: {out}\na: {:#?}\nb: {:#?}\nc: {:#?}",
        a.lines,
        b.lines,
        c.lines
    );
    assert!(
        out.contains("from sip:13800138000@"),
        "the agent's phone did not show the caller: {out}"
    );
    let said = loud_windows(&agent.said());
    assert!(said > 50, "agent speech too quiet: {said}");
    let calls = common::records::wait_demo_calls(&data, 1, Duration::from_secs(20));
    let r = calls
        .first()
        .unwrap_or_else(|| panic!("no call record: {:?}", a.lines));
    assert_eq!(r.group.as_deref(), Some("support"), "{r:?}");
    assert_eq!(
        r.agent.as_ref().map(|x| x.0.as_str()),
        Some("1001"),
        "{r:?}"
    );
    assert_eq!(r.node.0, na, "{r:?}");
    assert!(r.talk_time() >= Duration::from_secs(3), "{r:?}");
    // The agent's statuses changed on its home only.
    assert!(c.wait_log("agent=1001 status=Talking", Duration::from_secs(2)));
    assert_eq!(a.count_log("agent=1001 status=Talking"), 0);
    assert_eq!(b.count_log("agent=1001 status=Talking"), 0);
    let _ = customer.hang_up();
    let events = events.join().unwrap();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let pop = events
        .iter()
        .find(|e| e["type"] == "agent.ringing")
        .unwrap_or_else(|| panic!("no screen pop on b: {types:?}"));
    assert_eq!(pop["pop"]["caller"], "13800138000", "{pop}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "agent.status" && e["status"]["status"] == "talking"),
        "{types:?}"
    );
    assert!(types.contains(&"call.ended"), "{types:?}");
}

#[test]
fn callers_waiting_in_a_killed_nodes_group_are_answered_afterwards_in_their_order() {
    use common::phone::Phone;
    let (data, _, [mut a, mut b, mut c], token) = three_placed(&[]);
    assert!(b.wait_log(
        "skill group hosted here tenant=demo group=support",
        Duration::from_secs(5)
    ));
    assert!(c.wait_log(
        "agent hosted here tenant=demo agent=1001",
        Duration::from_secs(5)
    ));
    // 1001 is on a break: the callers wait in `support`, homed on b.
    let status = |s: Value| a.api("PUT", "/api/v1/agents/1001/status", Some(&token), Some(&s));
    let (code, v) = status(serde_json::json!({"status": "break", "reason": "lunch"}));
    assert_eq!(code, 200, "{v}");
    let agent = Phone::auto_answer(&c, "1001", "pass1001");
    let running = agent.spawn(60);
    assert!(c.wait_log("registered user=1001", Duration::from_secs(5)));
    let mut first = common::customer::Customer::call(a.sip, "4000", "13800138001");
    std::thread::sleep(Duration::from_secs(5));
    first.press('1');
    std::thread::sleep(Duration::from_secs(1));
    let mut second = common::customer::Customer::call(a.sip, "4000", "13800138002");
    std::thread::sleep(Duration::from_secs(5));
    second.press('1');
    std::thread::sleep(Duration::from_secs(1));
    assert!(first.answered && second.answered);

    // The group's home dies; the agent comes back from its break.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let killed = Instant::now();
    let (code, v) = status(serde_json::json!({"status": "ready"}));
    assert_eq!(code, 200, "{v}");
    assert!(
        c.wait_log("agent=1001 status=Ringing", Duration::from_secs(10)),
        "no caller was offered after the failover: {:?}",
        a.lines
    );
    let failover = killed.elapsed();
    eprintln!("group home killed → first waiting caller offered: {failover:?}");
    assert!(
        a.wait_log("customer and agent bridged", Duration::from_secs(10)),
        "{:?}",
        a.lines
    );
    // The agent hangs up when its speech ends, wraps up, takes the next.
    let bridged = |n: &mut Node| n.count_log("customer and agent bridged");
    let t0 = Instant::now();
    while bridged(&mut a) < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the second caller was never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = second.hang_up();
    let _ = first.hang_up();
    let _ = Phone::output(running);
    let mut calls = common::records::wait_demo_calls(&data, 2, Duration::from_secs(20));
    calls.sort_by_key(|r| r.answered);
    let order: Vec<&str> = calls.iter().map(|r| r.caller.as_str()).collect();
    assert_eq!(order, ["13800138001", "13800138002"], "{calls:#?}");
    for r in &calls {
        assert_eq!(r.group.as_deref(), Some("support"), "{r:?}");
        assert_eq!(
            r.agent.as_ref().map(|x| x.0.as_str()),
            Some("1001"),
            "{r:?}"
        );
        assert!(r.answered.is_some(), "{r:?}");
    }
    // Each kept the enqueue time it had before the failover.
    assert!(calls[0].enqueued < calls[1].enqueued, "{calls:#?}");
    let waited = calls[1].answered.unwrap().since(calls[1].enqueued.unwrap());
    assert!(waited >= Duration::from_secs(3), "{calls:#?}");
}

#[test]
fn a_node_that_loses_an_agents_lease_stops_running_it_until_it_holds_it_again() {
    let data = Node::fresh_data_dir();
    let (pa, pb) = (free_port(), free_port());
    let mut a = start(&data, "a", pa, None, &[]);
    let mut b = start(&data, "b", pb, Some(pa), &[]);
    let token = a.login("admin", "demo-admin");
    wait_up(&a, &token, &["a", "b"], Duration::from_secs(15));
    wait_up(&b, &token, &["a", "b"], Duration::from_secs(15));
    let at = home(&a, &token, "agent", "1001");
    let node = if at == "a" { &mut a } else { &mut b };
    let hosted = "agent hosted here tenant=demo agent=1001";
    assert!(
        node.wait_log(hosted, Duration::from_secs(5)),
        "{:?}",
        node.lines
    );
    let before = node.count_log(hosted);
    // Another holder takes the lease (with a new epoch) for 3 s: the
    // home's next renewal fails and it stops the agent at once.
    let was =
        common::records::steal_demo_lease(&data, "agent:1001", "intruder", Duration::from_secs(3));
    assert_eq!(was, at);
    assert!(
        node.wait_log("lease lost: stopping it here", Duration::from_secs(2)),
        "{:?}",
        node.lines
    );
    assert_eq!(
        node.wait_metric(
            "switchboard_cluster_lease_losses_total",
            1.0,
            Duration::from_secs(2)
        ),
        Some(1.0)
    );
    // Not before the intruder's lease lapses does it run the agent again.
    let lost = Instant::now();
    let t0 = Instant::now();
    while node.count_log(hosted) == before {
        assert!(t0.elapsed() < Duration::from_secs(8), "never started again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lost.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        lost.elapsed()
    );
}

#[test]
fn an_agent_talking_on_a_call_of_a_node_that_dies_is_ready_again_and_its_record_is_closed() {
    use common::phone::Phone;
    let (data, names, [mut a, mut b, mut c], token) = three_placed(&[]);
    assert!(c.wait_log(
        "agent hosted here tenant=demo agent=1001",
        Duration::from_secs(5)
    ));
    let agent = Phone::auto_answer_quiet(&c, "1001", "pass1001", 40);
    let running = agent.spawn(40);
    assert!(c.wait_log("registered user=1001", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    let customer = common::customer::Customer::call(a.sip, "4000", "13800138000");
    std::thread::sleep(Duration::from_secs(5));
    customer.press('1');
    assert!(
        a.wait_log("customer and agent bridged", Duration::from_secs(10)),
        "the agent never answered"
    );
    assert!(c.wait_log("agent=1001 status=Talking", Duration::from_secs(2)));
    let t0 = Instant::now();
    while !common::records::open_calls(&data, &names[0])
        .iter()
        .any(|r| r.answered.is_some())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{:?}",
            common::records::open_calls(&data, &names[0])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The node with the call dies: the agent's home frees the agent.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(
        c.wait_log(
            "the agent's call was on a node that is gone",
            Duration::from_secs(6)
        ),
        "{:?}",
        c.lines
    );
    let (code, v) = b.api("GET", "/api/v1/agents/1001/status", Some(&token), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"]["status"], "ready", "{v}");
    // A survivor closes the record of the call that died with its node:
    // who answered it, and that its node was lost.
    let calls = common::records::wait_demo_calls(&data, 1, Duration::from_secs(10));
    assert_eq!(calls.len(), 1, "{calls:?}");
    let r = &calls[0];
    assert_eq!(r.node.0, names[0]);
    assert_eq!(r.caller, "13800138000");
    assert_eq!(r.group.as_deref(), Some("support"), "{r:?}");
    assert_eq!(r.agent.as_ref().map(|a| a.0.as_str()), Some("1001"));
    assert!(r.answered.is_some() && r.talk_end.is_some(), "{r:?}");
    assert_eq!(
        r.hangup_reason,
        switchboard_storage::model::HangupReason::NodeLost
    );
    assert!(r.end >= r.answered.unwrap(), "{r:?}");
    assert!(
        b.count_log("closed the calls a dead member left open")
            + c.count_log("closed the calls a dead member left open")
            == 1,
        "{:?}\n{:?}",
        b.lines,
        c.lines
    );
    drop(customer);
    let mut running = running;
    let _ = running.kill();
    let _ = running.wait();
}

#[test]
fn a_status_chosen_during_a_call_survives_the_agents_home_dying() {
    use common::phone::Phone;
    // The call is on a, the agent's home is c.
    let (_, _, [mut a, mut b, mut c], token) = three_placed(&[]);
    assert!(c.wait_log(
        "agent hosted here tenant=demo agent=1001",
        Duration::from_secs(5)
    ));
    let agent = Phone::auto_answer_quiet(&a, "1001", "pass1001", 50);
    let running = agent.spawn(50);
    assert!(a.wait_log("registered user=1001", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    let customer = common::customer::Customer::call(a.sip, "4000", "13800138000");
    std::thread::sleep(Duration::from_secs(5));
    customer.press('1');
    assert!(
        a.wait_log("customer and agent bridged", Duration::from_secs(10)),
        "the agent never answered"
    );
    assert!(c.wait_log("agent=1001 status=Talking", Duration::from_secs(2)));
    // During the call the agent chooses lunch for after it; a and b hear
    // of it (relayed from c) before c dies.
    let planned = |v: &Value| {
        v["type"] == "agent.next_status" && v["agent"] == "1001" && v["status"]["status"] == "break"
    };
    let heard: Vec<_> = [&a, &b]
        .iter()
        .map(|n| common::cluster::listen_until(n, &token, Duration::from_secs(10), planned))
        .collect();
    let lunch = serde_json::json!({"status": "break", "reason": "lunch"});
    let (code, v) = a.api(
        "PUT",
        "/api/v1/agents/1001/status",
        Some(&token),
        Some(&lunch),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"]["status"], "talking", "{v}");
    for h in heard {
        let events = h.join().unwrap();
        assert!(
            events.last().is_some_and(planned),
            "the choice was not relayed: {events:?}"
        );
    }
    // c dies; the agent's new home resumes it on the call still up on a.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let hosted = "agent hosted here tenant=demo agent=1001";
    let t0 = Instant::now();
    while a.count_log(hosted) + b.count_log(hosted) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "no survivor took the agent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // (503 while a node has not yet seen the move, or the new home is
    // still starting the agent.)
    let status = |n: &Node| {
        let (code, v) = n.api("GET", "/api/v1/agents/1001/status", Some(&token), None);
        assert!(code == 200 || code == 503, "{code} {v}");
        v
    };
    let t0 = Instant::now();
    while status(&a)["status"]["status"] != "talking" {
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", status(&a));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The customer hangs up: after the wrap-up, lunch, as chosen.
    drop(customer);
    let t0 = Instant::now();
    loop {
        let v = status(&a);
        if v["status"]["status"] == "break" {
            assert_eq!(v["status"]["reason"], "lunch", "{v}");
            break;
        }
        assert!(
            ["talking", "after_call_work"].contains(&v["status"]["status"].as_str().unwrap_or("")),
            "not resumed on the call, or lunch forgotten: {v}"
        );
        assert!(t0.elapsed() < Duration::from_secs(20), "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut running = running;
    let _ = running.kill();
    let _ = running.wait();
}

#[test]
fn a_paused_node_loses_its_agents_lease_and_never_offers_it_a_second_call() {
    use common::phone::Phone;
    let (_, _, [mut a, mut b, mut c], _) = three_placed(&[]);
    assert!(c.wait_log(
        "agent hosted here tenant=demo agent=1001",
        Duration::from_secs(5)
    ));
    let agent = Phone::auto_answer_quiet(&a, "1001", "pass1001", 50);
    let running = agent.spawn(50);
    assert!(a.wait_log("registered user=1001", Duration::from_secs(5)));
    // c, the agent's home, stops (as in a long pause) for 4 s: the others
    // take the agent once its lease lapsed.
    let pid = c.child.id().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let hosted = "agent hosted here tenant=demo agent=1001";
    let t0 = Instant::now();
    let taken = loop {
        if a.count_log(hosted) + b.count_log(hosted) > 0 {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(8) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(taken, "no survivor took the agent");
    // A caller reaches the agent at its new home while c is stopped.
    let customer = common::customer::Customer::call(a.sip, "4000", "13800138000");
    std::thread::sleep(Duration::from_secs(5));
    customer.press('1');
    assert!(
        a.wait_log("customer and agent bridged", Duration::from_secs(10)),
        "{:?}",
        a.lines
    );
    // c wakes up holding an agent it no longer has the lease of: it
    // stops it without acting for it, and once it is home again it
    // resumes the agent on the call that is still up.
    signal("-CONT");
    assert!(
        c.wait_log("lease lost: stopping it here", Duration::from_secs(5))
            || c.wait_log(
                "agent no longer hosted here tenant=demo agent=1001",
                Duration::from_secs(1)
            ),
        "{:?}",
        c.lines
    );
    assert!(
        c.wait_log("agent=1001 status=Talking", Duration::from_secs(10)),
        "{:?}",
        c.lines
    );
    assert!(
        c.lines
            .iter()
            .any(|l| l.contains("agent=1001 status=Talking") && l.contains("reason=Resumed")),
        "{:?}",
        c.lines
    );
    drop(customer);
    let out = Phone::output(running);
    // It rang once, for the one call.
    assert_eq!(out.matches("answering call").count(), 1, "{out}");
    assert_eq!(out.matches("Call established").count(), 1, "{out}");
}

/// How many of `nodes`' log lines contain `needle`.
fn count_all(nodes: &mut [Node], needle: &str) -> usize {
    nodes.iter_mut().map(|n| n.count_log(needle)).sum()
}

#[test]
fn a_partition_never_gives_an_agent_two_calls_and_heals() {
    use common::cluster::{names_placing, three_behind};
    use common::phone::Phone;
    use switchboard_cluster::placement::Kind;
    // support on the second node; agent 1001 and sales on the third, which
    // the partition cuts off from the other two.
    let names = names_placing(&[
        (Kind::SkillGroup, "support", 1),
        (Kind::Agent, "1001", 2),
        (Kind::SkillGroup, "sales", 2),
    ]);
    let links = switchboard_chaos::Links::new();
    let (_, mut nodes, hosts, token) = three_behind(&links, &names);
    // 1001 takes sales calls too, so a caller on either side of the cut
    // has a group that would offer it.
    let (code, v) = nodes[0].api(
        "PUT",
        "/api/v1/skill-groups/sales/members",
        Some(&token),
        Some(&serde_json::json!([{"agent": "1001"}, {"agent": "1003"}])),
    );
    assert_eq!(code, 200, "{v}");
    assert!(nodes[2].wait_log(
        "skill group reloaded tenant=demo group=sales",
        Duration::from_secs(5)
    ));
    let agent = Phone::auto_answer_quiet(&nodes[0], "1001", "pass1001", 45);
    let running = agent.spawn(45);
    assert!(nodes[0].wait_log("registered user=1001", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));

    let hosted = "agent hosted here tenant=demo agent=1001";
    let hosted_before = count_all(&mut nodes[..2], hosted);
    // The cut: each side sees the other down; the store is still shared,
    // so 1001's lease stays with the third node, which keeps renewing it.
    links.isolate(hosts[2], &hosts[..2]);
    let mut majority = [names[0].as_str(), names[1].as_str()];
    majority.sort();
    wait_up(&nodes[0], &token, &majority, Duration::from_secs(6));
    wait_up(
        &nodes[2],
        &token,
        &[names[2].as_str()],
        Duration::from_secs(6),
    );

    // A caller on each side, both for groups 1001 is in.
    let minority_caller = common::customer::Customer::call(nodes[2].sip, "4000", "13800138001");
    let majority_caller = common::customer::Customer::call(nodes[0].sip, "4000", "13800138002");
    std::thread::sleep(Duration::from_secs(5));
    minority_caller.press('2');
    majority_caller.press('1');
    assert!(
        nodes[2].wait_log("customer and agent bridged", Duration::from_secs(10)),
        "{:?}",
        nodes[2].lines
    );
    // The majority's node that 1001 now hashes to never gets its lease,
    // so it never runs a second 1001 that could be offered the other call.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count_all(&mut nodes[..2], hosted), hosted_before);
    assert_eq!(count_all(&mut nodes, "agent=1001 status=Ringing"), 1);
    assert_eq!(nodes[0].count_log("customer and agent bridged"), 0);

    // Heal: the three see each other again, 1001 is still hosted once,
    // and once its call and wrap-up are over the caller who waited on the
    // majority side through the partition gets it.
    drop(minority_caller);
    links.heal_all();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.sort();
    for n in &nodes {
        wait_up(n, &token, &all, Duration::from_secs(10));
    }
    assert!(
        nodes[0].wait_log("customer and agent bridged", Duration::from_secs(30)),
        "{:?}\n{:?}",
        nodes[1].lines,
        nodes[2].lines
    );
    assert_eq!(count_all(&mut nodes[..2], hosted), hosted_before);
    drop(majority_caller);
    let out = Phone::output(running);
    // Two calls, one after the other.
    assert_eq!(out.matches("answering call").count(), 2, "{out}");
}

#[test]
fn a_rolling_restart_under_steady_sipp_load_drops_no_call() {
    use common::cluster::start_sip;
    use common::SippRun;
    let data = Node::fresh_data_dir();
    let names = ["r0", "r1", "r2"];
    let ports = [free_port(), free_port(), free_port()];
    let sips = [free_port(), free_port(), free_port()];
    let drain = ["--drain-timeout-secs", "20"];
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let join = (i > 0).then_some(ports[0]);
            start_sip(&data, names[i], ports[i], join, sips[i], &drain)
        })
        .collect();
    let token = nodes[0].login("admin", "demo-admin");
    for n in &nodes {
        wait_up(n, &token, &names, Duration::from_secs(15));
    }
    // A steady load on every node: 2 calls a second each, 3 s long.
    let load: Vec<SippRun> = nodes
        .iter()
        .map(|n| {
            SippRun::start(
                n.sip,
                "steady_call",
                &["-r", "2", "-m", "70", "-timeout", "60s"],
                70,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    // One node after the other: SIGTERM (it drains: refuses new calls,
    // finishes those up, leaves), then the same node again, same ports.
    for i in 0..3 {
        let pid = nodes[i].child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let code = wait_exit(&mut nodes[i], Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{} did not finish draining", names[i]));
        assert!(code.success(), "{code:?}");
        let via = ports[(i + 1) % 3];
        nodes[i] = start_sip(&data, names[i], ports[i], Some(via), sips[i], &drain);
        let token = nodes[(i + 1) % 3].login("admin", "demo-admin");
        for n in &nodes {
            wait_up(n, &token, &names, Duration::from_secs(15));
        }
    }
    let mut talked = 0;
    for (i, run) in load.into_iter().enumerate() {
        let (ok, logs, errors) = run.finish();
        // Every call either talked its 3 s and hung up cleanly, or was
        // refused before it was answered: none was cut off.
        assert!(ok, "calls to {} failed: {errors}\n{logs}", names[i]);
        let (t, r) = (
            logs.matches("talked ").count(),
            logs.matches("refused ").count(),
        );
        assert_eq!(t + r, 70, "{}: {t} talked, {r} refused", names[i]);
        assert!(t >= 40, "{}: only {t} of 70 calls talked", names[i]);
        talked += t;
    }
    assert!(talked >= 150, "{talked}");
}

#[test]
fn nodes_with_cluster_tls_join_and_a_node_of_another_ca_or_without_tls_never_does() {
    use common::cluster::tls_flags;
    let data = Node::fresh_data_dir();
    let ours = tls_flags(&data.join("tls-ours"));
    let theirs = tls_flags(&data.join("tls-theirs"));
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
    let a = start(&data, "a", pa, None, &ours);
    let b = start(&data, "b", pb, Some(pa), &ours);
    let token = a.login("admin", "demo-admin");
    wait_up(&a, &token, &["a", "b"], Duration::from_secs(15));
    wait_up(&b, &token, &["a", "b"], Duration::from_secs(5));
    // A certificate of another CA, and no TLS at all: neither gets in.
    let mut c = start(&data, "c", pc, Some(pa), &theirs);
    let d = start(&data, "d", pd, Some(pa), &[]);
    std::thread::sleep(Duration::from_secs(4));
    wait_up(&a, &token, &["a", "b"], Duration::from_secs(1));
    wait_up(&c, &token, &["c"], Duration::from_secs(1));
    wait_up(&d, &token, &["d"], Duration::from_secs(1));
    // c does not trust a's certificate (nor a c's): its dial fails in
    // the handshake, and says so.
    assert!(
        c.count_log("cluster TLS handshake failed") > 0,
        "{:?}",
        c.lines
    );
    // The cluster works over TLS: a placement question answered alike.
    assert_eq!(
        home(&a, &token, "agent", "1001"),
        home(&b, &token, "agent", "1001")
    );
}

#[test]
fn an_agent_and_a_group_that_panic_on_their_homes_recover_and_take_the_next_call() {
    use common::phone::Phone;
    let (data, [_, nb, nc], [mut a, mut b, mut c], token) = three_placed(&["--fault-injection"]);
    assert_eq!(home(&a, &token, "skill_group", "support"), nb);
    assert_eq!(home(&a, &token, "agent", "1001"), nc);
    assert!(c.wait_log(
        "agent hosted here tenant=demo agent=1001",
        Duration::from_secs(5)
    ));
    assert!(b.wait_log(
        "skill group hosted here tenant=demo group=support",
        Duration::from_secs(5)
    ));
    let fault = |node: &Node, target: &str| {
        let http = node.http.to_string();
        let dir = data.display().to_string();
        cli(&[
            "cluster",
            "fault",
            target,
            "--http",
            &http,
            "--data-dir",
            &dir,
        ])
    };
    // Only the node running the actor can make it panic.
    let out = fault(&a, "agent:1001");
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not run on this node"));
    assert!(fault(&c, "agent:1001").status.success());
    assert!(c.wait_log(
        "agent actor panicked: rebuilt from the store",
        Duration::from_secs(5)
    ));
    assert!(fault(&b, "group:support").status.success());
    assert!(b.wait_log(
        "skill group actor panicked: rebuilt from the store",
        Duration::from_secs(5)
    ));
    // A call on a still queues in the group on b and reaches 1001, homed
    // on c, whose phone is registered with b.
    let agent = Phone::auto_answer(&b, "1001", "pass1001");
    let running = agent.spawn(20);
    assert!(b.wait_log("registered user=1001", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    let mut customer = common::customer::Customer::call(a.sip, "4000", "13800138000");
    assert!(customer.answered);
    std::thread::sleep(Duration::from_secs(5));
    customer.press('1');
    assert!(
        a.wait_log("customer and agent bridged", Duration::from_secs(10)),
        "the agent never answered: {:?}",
        a.lines
    );
    let _ = customer.hang_up();
    let _ = Phone::stop(running);
    let calls = common::records::wait_demo_calls(&data, 1, Duration::from_secs(20));
    assert_eq!(
        calls[0].agent.as_ref().map(|x| x.0.as_str()),
        Some("1001"),
        "{:?}",
        calls[0]
    );
    assert_eq!(c.count_log("agent=1001 status=Talking"), 1);
}
