//! The HTTP API of a running node, over real HTTP and a real WebSocket:
//! agents signing in and out and changing status from the phone bar, the
//! live monitors, the screen pop pushed when a real SIP phone rings, and
//! `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::customer::Customer;
use common::phone::Phone;
use common::Node;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(node: &Node) -> Api {
        Api {
            base: format!("http://{}", node.http),
            client: reqwest::Client::new(),
        }
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"tenant": "demo", "user": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login of {user}");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }
}

#[test]
fn agents_sign_in_out_and_change_status_from_the_phone_bar() {
    let node = Node::start();
    let api = Api::new(&node);
    rt().block_on(async {
        let me = api.login("1001", "pass1001").await;
        let (s, v) = api
            .call("GET", "/api/v1/agents/1001/status", &me, None)
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"]["status"], "ready");
        assert_eq!(v["device"]["account"], "1001");
        assert_eq!(v["device_online"], false, "no phone registered");
        // A break with its reason, then busy, then ready.
        let (s, v) = api
            .call(
                "PUT",
                "/api/v1/agents/1001/status",
                &me,
                Some(json!({"status": "break", "reason": "lunch"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], json!({"status": "break", "reason": "lunch"}));
        // A custom status the tenant lets agents pick, and one it does not.
        let (s, v) = api
            .call(
                "PUT",
                "/api/v1/agents/1001/status",
                &me,
                Some(json!({"status": "custom", "id": "meeting"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = api
            .call(
                "PUT",
                "/api/v1/agents/1001/status",
                &me,
                Some(json!({"status": "custom", "id": "training"})),
            )
            .await;
        assert_eq!(s, 422, "{v}");
        assert_eq!(v["details"][0]["field"], "id", "{v}");
        // Talking is not a status one chooses.
        let (s, _) = api
            .call(
                "PUT",
                "/api/v1/agents/1001/status",
                &me,
                Some(json!({"status": "talking", "call": "1"})),
            )
            .await;
        assert_eq!(s, 422);
        // Sign out, and the conflicts that follow.
        let (s, v) = api
            .call("POST", "/api/v1/agents/1001/sign-out", &me, None)
            .await;
        assert_eq!(
            (s, v["status"]["status"].clone()),
            (200, json!("offline")),
            "{v}"
        );
        let (s, v) = api
            .call("POST", "/api/v1/agents/1001/sign-out", &me, None)
            .await;
        assert_eq!(s, 409, "{v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains("signed out"),
            "{v}"
        );
        let (s, _) = api
            .call(
                "PUT",
                "/api/v1/agents/1001/status",
                &me,
                Some(json!({"status": "busy"})),
            )
            .await;
        assert_eq!(s, 409);
        // Sign in on a mobile number this time.
        let (s, v) = api
            .call(
                "POST",
                "/api/v1/agents/1001/sign-in",
                &me,
                Some(json!({"device": {"type": "mobile", "number": "13800138000"}})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["device"]["number"], "13800138000");
        let (s, v) = api
            .call("POST", "/api/v1/agents/1001/sign-in", &me, None)
            .await;
        assert_eq!(s, 409, "{v}");
        // An agent cannot act on another agent; a supervisor can.
        let (s, _) = api
            .call(
                "PUT",
                "/api/v1/agents/1002/status",
                &me,
                Some(json!({"status": "busy"})),
            )
            .await;
        assert_eq!(s, 404);
        let (s, _) = api.call("GET", "/api/v1/monitor/agents", &me, None).await;
        assert_eq!(s, 403);
        let admin = api.login("admin", "demo-admin").await;
        let (s, v) = api
            .call(
                "PUT",
                "/api/v1/agents/1002/status",
                &admin,
                Some(json!({"status": "busy"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = api
            .call("GET", "/api/v1/monitor/agents", &admin, None)
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["counts"]["busy"], 1, "{v}");
        assert_eq!(v["counts"]["ready"], 2, "{v}");
        let (s, v) = api
            .call("GET", "/api/v1/monitor/groups", &admin, None)
            .await;
        assert_eq!(s, 200, "{v}");
        let groups: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group"].as_str().unwrap())
            .collect();
        assert_eq!(groups, ["sales", "support"]);
        // Without a token: 401.
        let r = api
            .client
            .get(format!("{}/api/v1/monitor/agents", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    });
    // The status log has the periods, with who chose them (written
    // by the node's records task: waited for, bounded).
    let lunch = |log: &[switchboard_storage::model::StatusChange]| {
        log.iter().any(|c| matches!(&c.period.status, switchboard_storage::model::Status::Break { reason } if reason == "lunch"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut log = common::records::status_log(&node.data_dir, "1001");
    while !lunch(&log) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        log = common::records::status_log(&node.data_dir, "1001");
    }
    assert!(lunch(&log), "{log:?}");
}

#[test]
fn a_ringing_phone_pops_the_customer_on_the_agents_websocket() {
    let mut node = Node::start();
    let api = Api::new(&node);
    let agent = Phone::auto_answer(&node, "1001", "pass1001");
    let phone = agent.spawn(16);
    assert!(node.wait_log("registered user=1001", Duration::from_secs(5)));
    let events = rt().block_on(async {
        let admin = api.login("admin", "demo-admin").await;
        // The caller is a known customer.
        let (s, v) = api
            .call(
                "POST",
                "/api/v1/customers",
                &admin,
                Some(json!({"name": "王小明", "numbers": ["13912345678"]})),
            )
            .await;
        assert!(s == 200 || s == 201, "{s} {v}");
        let me = api.login("1001", "pass1001").await;
        let url = format!("ws://{}/api/v1/ws?token={me}", node.http);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let sip = node.sip;
        let caller = std::thread::spawn(move || {
            let mut c = Customer::call(sip, "4000", "13912345678");
            std::thread::sleep(Duration::from_secs(5));
            c.press('1');
            std::thread::sleep(Duration::from_secs(5));
            c.hang_up();
        });
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
            if let Ok(text) = msg.into_text() {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    let ended = v["type"] == "call.ended";
                    got.push(v);
                    if ended {
                        break;
                    }
                }
            }
        }
        let _ = caller.join();
        got
    });
    let _ = Phone::output(phone);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"hello"), "{types:?}");
    let pop = events
        .iter()
        .find(|e| e["type"] == "agent.ringing")
        .unwrap_or_else(|| panic!("no screen pop: {types:?}"));
    assert_eq!(pop["version"], 1);
    assert_eq!(pop["agent"], "1001");
    let p = &pop["pop"];
    assert_eq!(p["caller"], "13912345678");
    assert_eq!(p["dialed"], "4000");
    assert_eq!(p["location"]["place"], "江苏省常州市", "{p}");
    assert_eq!(p["ivr_keys"], "1");
    assert_eq!(p["group"], "support");
    assert_eq!(p["customer"]["name"], "王小明", "{p}");
    for t in ["call.answered", "call.ended"] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "agent.status")
        .filter_map(|e| e["status"]["status"].as_str())
        .collect();
    assert!(
        statuses.starts_with(&["ringing", "talking"]),
        "statuses {statuses:?}"
    );
    // The monitors count it: today's traffic and the group's day.
    rt().block_on(async {
        let admin = api.login("admin", "demo-admin").await;
        let mut traffic = Value::Null;
        for _ in 0..40 {
            let (s, v) = api
                .call("GET", "/api/v1/monitor/traffic", &admin, None)
                .await;
            assert_eq!(s, 200, "{v}");
            traffic = v;
            if traffic["today"]["answered"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(traffic["today"]["offered"], 1, "{traffic}");
        assert_eq!(traffic["today"]["answered"], 1, "{traffic}");
        assert_eq!(traffic["today"]["answer_rate"], 1.0, "{traffic}");
        assert_eq!(traffic["hours"].as_array().map(Vec::len), Some(24));
        let (s, v) = api
            .call("GET", "/api/v1/monitor/groups", &admin, None)
            .await;
        assert_eq!(s, 200, "{v}");
        let support = v
            .as_array()
            .and_then(|g| g.iter().find(|g| g["group"] == "support"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(support["today"]["answered"], 1, "{v}");
        assert_eq!(support["waiting"], 0, "{v}");
    });
    // The node's metrics saw the call.
    let text = rt().block_on(async {
        reqwest::get(format!("http://{}/metrics", node.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for name in [
        "switchboard_sip_requests_total{method=\"INVITE\"}",
        "switchboard_ring_delay_seconds_count 1",
        "switchboard_calls_total{reason=\"normal\"} 1",
        "switchboard_agents{status=\"talking\",tenant=\"demo\"}",
        "switchboard_http_requests_total{route=\"/api/v1/auth/login\",status=\"200\"}",
        "switchboard_queue_waiting{group=\"support\",tenant=\"demo\"} 0",
    ] {
        assert!(text.contains(name), "{name} not in /metrics:\n{text}");
    }
    // Every metric the Grafana dashboard plots is one the node serves
    // (a renamed metric would leave a panel empty). Error counters by
    // label appear only with their first error, so they are not checked.
    let dashboard: Value = serde_json::from_str(include_str!("../docs/grafana-dashboard.json"))
        .expect("the dashboard is JSON");
    let mut names: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("switchboard_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        // The name alone, up to its labels or value: `switchboard_agents`
        // is not served by `switchboard_agents_resting`.
        let served = text
            .lines()
            .any(|l| l.split(['{', ' ']).next() == Some(name.as_str()));
        let errors = name.ends_with("_errors_total");
        assert!(
            served || errors,
            "the dashboard plots {name}, not in /metrics"
        );
    }
}

#[test]
fn configuration_changes_reach_the_running_node() {
    let mut node = Node::start();
    let api = Api::new(&node);
    let r = rt();
    let admin = r.block_on(api.login("admin", "demo-admin"));
    let version = r.block_on(async {
        // A new agent in sales: its actor starts, signed in and ready.
        let (s, v) = api
            .call("POST", "/api/v1/sip-accounts", &admin, Some(json!({"id": "1004", "password": "pass1004"})))
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = api
            .call(
                "POST",
                "/api/v1/agents",
                &admin,
                Some(json!({"id": "1004", "name": "Agent 1004", "seat": "1004",
                            "device": {"type": "sip", "account": "1004"}, "groups": ["sales"]})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let mut ready = false;
        for _ in 0..40 {
            let (s, v) = api.call("GET", "/api/v1/agents/1004/status", &admin, None).await;
            if s == 200 && v["status"]["status"] == "ready" {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "the new agent did not come up");
        // Sales: 3 s in the queue, then the call ends.
        let (s, mut g) = api.call("GET", "/api/v1/skill-groups/sales", &admin, None).await;
        assert_eq!(s, 200, "{g}");
        g["max_queue_time_secs"] = json!(3);
        g["overflow"] = json!({"to": "hang_up"});
        let (s, v) = api.call("PUT", "/api/v1/skill-groups/sales", &admin, Some(g)).await;
        assert_eq!(s, 200, "{v}");
        // A new greeting: a TTS prompt, approved, in a new version of the
        // demo flow, published.
        let (s, v) = api
            .call(
                "PUT",
                "/api/v1/prompts/fresh",
                &admin,
                Some(json!({"name": "Fresh", "text": "This greeting was published a moment ago.", "voice": "en-us"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = api
            .call("POST", "/api/v1/prompts/fresh/review", &admin, Some(json!({"status": "approved"})))
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, flow) = api.call("GET", "/api/v1/flows/demo/versions/1", &admin, None).await;
        assert_eq!(s, 200, "{flow}");
        let mut d = flow["definition"].clone();
        d["nodes"]["welcome"]["prompt"] = json!("fresh");
        let (s, v) = api
            .call("POST", "/api/v1/flows/demo/versions", &admin, Some(json!({"definition": d})))
            .await;
        assert_eq!(s, 201, "{v}");
        v["version"].clone()
    });
    // Published: the next call takes the new flow once the node reloaded
    // it (bounded; a loaded machine may take more than a moment).
    let reloaded = format!("flows=demo@{version}");
    r.block_on(async {
        let (s, v) = api
            .call(
                "POST",
                "/api/v1/flows/demo/publish",
                &admin,
                Some(json!({"version": version})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    });
    let t0 = std::time::Instant::now();
    while node.count_log(&reloaded) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the published flow was not reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next caller hears the new greeting, presses 2 and, with nobody
    // to answer in sales, is let go after 3 s instead of 60.
    let c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    // The new greeting plays in full (bounded), then the caller picks 2.
    let greeting = common::customer::spoken("This greeting was published a moment ago.", "en-us");
    let t0 = std::time::Instant::now();
    while common::customer::match_score(&c.heard(), &greeting) <= 0.9 {
        if t0.elapsed() > Duration::from_secs(15) {
            node.count_log("");
            let log: Vec<&String> = node
                .lines
                .iter()
                .filter(|l| l.contains("reload") || l.contains("seq") || l.contains("flow"))
                .collect();
            let old = common::customer::spoken("Welcome to the Switchboard demo hotline.", "en-us");
            panic!(
                "the new greeting was not heard ({:.2}, old {:.2}, heard {} samples, greeting {}): {log:#?}",
                common::customer::match_score(&c.heard(), &greeting),
                common::customer::match_score(&c.heard(), &old),
                c.heard().len(),
                greeting.len()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    c.press('2');
    let pressed = c.elapsed();
    assert!(
        c.wait_bye(Duration::from_secs(15)),
        "the queue did not overflow"
    );
    let waited = c.elapsed() - pressed;
    assert!(
        waited < Duration::from_secs(10),
        "overflowed after {waited:?}"
    );
}

#[test]
fn every_store_operation_is_timed_and_its_failures_counted() {
    let node = Node::start();
    let token = node.login("admin", "demo-admin");
    let (code, _) = node.api("GET", "/api/v1/agents", Some(&token), None);
    assert_eq!(code, 200);
    // A cursor the store does not know: refused by the store, counted.
    let (code, v) = node.api("GET", "/api/v1/calls?cursor=zz", Some(&token), None);
    assert_eq!(code, 422, "{v}");
    let count = |op: &str| {
        node.metric(&format!(
            "switchboard_store_op_seconds_count{{op=\"{op}\"}}"
        ))
    };
    assert!(
        count("get_config").is_some_and(|n| n >= 1.0),
        "{:?}",
        count("get_config")
    );
    assert!(count("list_config").is_some_and(|n| n >= 1.0));
    assert!(count("calls_by_day").is_some_and(|n| n >= 1.0));
    assert_eq!(
        node.metric("switchboard_store_op_errors_total{op=\"calls_by_day\"}"),
        Some(1.0)
    );
}
