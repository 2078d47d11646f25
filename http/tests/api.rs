//! The API over real HTTP on loopback, over a real embedded store.

mod common;

use anyhow::{Context, Result};
use common::{Api, Server, CALLS, CUSTOMER_NUMBER, DAY};
use reqwest::Method;
use serde_json::{json, Value};
use switchboard_storage::model::ConfigKind;

async fn server() -> Result<Server> {
    common::start().await
}

/// A user of the demo tenant with `roles`, created by the admin.
async fn user(s: &Server, admin: &Api, id: &str, roles: Value, agent: Value) -> Result<Api> {
    admin
        .post(
            "/users",
            json!({"id": id, "display_name": id, "roles": roles, "password": "password-1", "agent": agent}),
        )
        .await?
        .expect(201)?;
    Api::login(s, "demo", id, "password-1").await
}

#[tokio::test]
async fn sign_in_tokens_cookies_and_roles() -> Result<()> {
    let s = server().await?;
    let anon = Api::anonymous(&s);

    // No token, a bad token, a wrong password: 401 with a message.
    let a = anon.get("/agents").await?.expect(401)?;
    assert_eq!(a.body["code"], "unauthorized");
    assert!(a.headers.contains_key("www-authenticate"));
    let forged = Api {
        token: Some("v1.00.00".into()),
        ..anon.clone()
    };
    forged.get("/agents").await?.expect(401)?;
    let wrong = anon
        .post(
            "/auth/login",
            json!({"tenant": "demo", "user": "admin", "password": "nope"}),
        )
        .await?
        .expect(401)?;
    assert_eq!(wrong.body["message"], "wrong user name or password");
    anon.post(
        "/auth/login",
        json!({"tenant": "demo", "user": "ghost", "password": "whatever"}),
    )
    .await?
    .expect(401)?;
    // Two tenants on this server: the tenant must be said.
    let t = anon
        .post(
            "/auth/login",
            json!({"user": "admin", "password": "demo-admin"}),
        )
        .await?
        .expect(422)?;
    assert_eq!(t.fields(), ["tenant"]);

    // The admin's token, and the same token as a cookie.
    let login = anon
        .post(
            "/auth/login",
            json!({"tenant": "demo", "user": "admin", "password": "demo-admin"}),
        )
        .await?
        .expect(200)?;
    let cookie = login
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .context("a session cookie")?
        .to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.starts_with("sb_session="));
    let pair = cookie.split(';').next().context("cookie pair")?.to_owned();
    let me = anon
        .http
        .get(format!("{}/api/v1/auth/me", s.base))
        .header("cookie", pair)
        .send()
        .await?;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await?;
    assert_eq!(me["user"], "admin");
    assert_eq!(me["tenant"], "demo");

    // A tampered token (another tenant in the claims) is refused.
    let token = login.body["token"].as_str().context("token")?;
    let parts: Vec<&str> = token.split('.').collect();
    let claims = String::from_utf8(hex::decode(parts[1])?)?.replace("\"demo\"", "\"other\"");
    let tampered = Api {
        token: Some(format!("v1.{}.{}", hex::encode(claims), parts[2])),
        ..anon.clone()
    };
    tampered.get("/auth/me").await?.expect(401)?;

    let admin = Api::admin(&s).await?;
    // Agents: their own agent, calls and plans, no configuration.
    let agent = Api::login(&s, "demo", "1001", "pass1001").await?;
    let f = agent.get("/agents").await?.expect(403)?;
    assert_eq!(f.body["code"], "forbidden");
    assert!(f.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("tenant_admin"));
    agent.get("/agents/1001").await?.expect(200)?;
    agent.get("/agents/1002").await?.expect(403)?;
    let own = agent.get(&format!("/calls?day={DAY}")).await?.expect(200)?;
    assert_eq!(own.body["items"].as_array().map(Vec::len), Some(CALLS));
    agent
        .get(&format!("/calls?day={DAY}&agent=1002"))
        .await?
        .expect(403)?;
    agent.get("/calls/0000000000000200").await?.expect(404)?;
    agent.get("/agents/1002/calls").await?.expect(404)?;
    agent.get("/agents/1001/contact-plans").await?.expect(200)?;
    agent.get("/agents/1002/contact-plans").await?.expect(404)?;
    agent
        .get("/calls/0000000000000100/recording")
        .await?
        .expect(403)?;
    agent.get("/reports/hourly").await?.expect(403)?;

    // Supervisors read configuration, may not change it.
    let sup = user(&s, &admin, "sup", json!(["supervisor"]), Value::Null).await?;
    sup.get("/agents").await?.expect(200)?;
    sup.get("/flows").await?.expect(200)?;
    sup.get(&format!("/reports/hourly?day={DAY}"))
        .await?
        .expect(200)?;
    sup.get("/calls/0000000000000200/recording")
        .await?
        .expect(200)?;
    let f = sup
        .post("/custom-statuses", json!({"id": "x", "name": "X"}))
        .await?
        .expect(403)?;
    assert!(f.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("supervisor"));
    sup.get("/users").await?.expect(403)?;

    // QA inspectors: call records and recordings only.
    let qa = user(&s, &admin, "qa", json!(["qa_inspector"]), Value::Null).await?;
    qa.get(&format!("/calls?day={DAY}")).await?.expect(200)?;
    let rec = qa
        .get("/calls/0000000000000100/recording")
        .await?
        .expect(200)?;
    assert_eq!(
        rec.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/wav")
    );
    assert_eq!(&rec.bytes[..4], b"RIFF");
    qa.get(&format!("/customers/lookup?number={CUSTOMER_NUMBER}"))
        .await?
        .expect(403)?;
    qa.get("/agents").await?.expect(403)?;

    // Prompt review needs the reviewer role, which an admin lacks.
    let admin2 = user(&s, &admin, "admin2", json!(["tenant_admin"]), Value::Null).await?;
    admin2
        .post("/prompts/welcome/review", json!({"status": "approved"}))
        .await?
        .expect(403)?;
    let reviewer = user(&s, &admin, "rev", json!(["prompt_reviewer"]), Value::Null).await?;
    reviewer
        .get("/prompts?status=approved")
        .await?
        .expect(200)?;
    reviewer
        .put(
            "/prompts/x",
            json!({"name": "x", "text": "hi", "voice": "en-us"}),
        )
        .await?
        .expect(403)?;

    // A disabled user cannot sign in.
    let mut doc = admin.get("/users/qa").await?.expect(200)?.body;
    doc["enabled"] = json!(false);
    admin.put("/users/qa", doc).await?.expect(200)?;
    anon.post(
        "/auth/login",
        json!({"tenant": "demo", "user": "qa", "password": "password-1"}),
    )
    .await?
    .expect(401)?;
    Ok(())
}

#[tokio::test]
async fn another_tenants_objects_are_not_found() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    // Every kind of object the other tenant has, by its id.
    for path in [
        "/users/boss",
        "/sip-accounts/o-sip",
        "/agents/o-agent",
        "/skill-groups/o-group",
        "/skill-groups/o-group/members",
        "/custom-statuses/o-status",
        "/hotlines/5000",
        "/hotlines/5000/ivr-settings",
        "/schedules/o-schedule",
        "/flows/o-flow",
        "/flows/o-flow/versions",
        "/flows/o-flow/versions/1",
        "/prompts/o-prompt",
        "/prompts/o-prompt/audio",
        "/customers/o-customer",
        "/customers/o-customer/timeline",
        "/tickets/o-ticket",
        "/calls/0000000000000abc",
        "/calls/0000000000000abc/summary",
        "/calls/0000000000000abc/recording",
        "/agents/o-agent/calls",
        "/agents/o-agent/contact-plans",
        "/customers/lookup?number=13900000000",
        // The demo tenant has no trunk; the other tenant's is not seen.
        "/trunk",
    ] {
        let a = admin.get(path).await?;
        assert_eq!(a.status, 404, "GET {path}: {}", a.body);
        assert_eq!(a.body["code"], "not_found", "GET {path}");
    }
    // Writes to them are 404 too, and change nothing.
    for (method, path, body) in [
        (
            Method::PUT,
            "/agents/o-agent",
            json!({"id": "o-agent", "name": "x", "seat": "1", "device": {"type": "mobile", "number": "1"}}),
        ),
        (Method::DELETE, "/agents/o-agent", Value::Null),
        (Method::DELETE, "/users/boss", Value::Null),
        (Method::DELETE, "/skill-groups/o-group", Value::Null),
        (Method::PUT, "/skill-groups/o-group/members", json!([])),
        (Method::DELETE, "/custom-statuses/o-status", Value::Null),
        (Method::DELETE, "/hotlines/5000", Value::Null),
        (Method::DELETE, "/schedules/o-schedule", Value::Null),
        (
            Method::POST,
            "/flows/o-flow/versions",
            json!({"definition": {"start": "a", "nodes": {"a": {"type": "hang_up"}}}}),
        ),
        (Method::POST, "/flows/o-flow/publish", json!({"version": 1})),
        (
            Method::POST,
            "/prompts/o-prompt/review",
            json!({"status": "approved"}),
        ),
        (Method::DELETE, "/prompts/o-prompt", Value::Null),
        (
            Method::PUT,
            "/customers/o-customer",
            json!({"name": "x", "numbers": []}),
        ),
        (Method::PUT, "/tickets/o-ticket", json!({"title": "x"})),
        (
            Method::PUT,
            "/calls/0000000000000abc/summary",
            json!({"notes": "x"}),
        ),
        (
            Method::POST,
            "/agents/o-agent/contact-plans/o-plan/done",
            Value::Null,
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let a = admin.send(method.clone(), path, body).await?;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
    }
    // Listings hold the caller's tenant only.
    let agents = admin.get("/agents").await?.expect(200)?;
    let ids: Vec<&str> = agents.body["items"]
        .as_array()
        .map(|v| v.iter().filter_map(|a| a["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["1001", "1002", "1003"]);
    let report = admin
        .get(&format!("/reports/hourly?day={DAY}"))
        .await?
        .expect(200)?;
    assert_eq!(report.body["series"][0]["hours"][9]["offered"], 20);
    let form = admin.get("/form-schemas/customer").await?.expect(200)?;
    assert_eq!(form.body["fields"], json!([]));
    // The other tenant's admin still has everything.
    let boss = Api::login(&s, "other", "boss", "other-pass").await?;
    boss.get("/agents/o-agent").await?.expect(200)?;
    boss.get("/trunk").await?.expect(200)?;
    boss.get("/agents/1001").await?.expect(404)?;
    Ok(())
}

#[tokio::test]
async fn malformed_requests_name_the_field() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    // Not JSON at all: 400.
    let a = admin
        .raw(
            Method::POST,
            "/custom-statuses",
            "application/json",
            b"{not json".to_vec(),
        )
        .await?
        .expect(400)?;
    assert_eq!(a.body["code"], "bad_request");
    // Not sent as JSON: 415.
    admin
        .raw(
            Method::POST,
            "/custom-statuses",
            "text/plain",
            b"{}".to_vec(),
        )
        .await?
        .expect(415)?;
    // A field missing, of the wrong type, unknown, or nested wrong.
    let a = admin
        .post("/custom-statuses", json!({"id": "x"}))
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["name"]);
    let a = admin
        .post("/custom-statuses", json!({"id": "x", "name": 5}))
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["name"]);
    let a = admin
        .post(
            "/custom-statuses",
            json!({"id": "x", "name": "X", "colour": "red"}),
        )
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["colour"]);
    let group = json!({
        "id": "vip", "name": "VIP", "strategy": "ring_all", "ring_timeout_secs": "twenty",
        "wrap_up_secs": 10, "max_queue_time_secs": 60, "overflow": {"to": "voicemail"},
        "no_agent": "queue", "announce_every_secs": null
    });
    let a = admin
        .post("/skill-groups", group.clone())
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["ring_timeout_secs"]);
    assert_eq!(a.body["code"], "validation");
    // Semantic checks name their field too.
    let mut g = group.clone();
    g["ring_timeout_secs"] = json!(1);
    let a = admin.post("/skill-groups", g.clone()).await?.expect(422)?;
    assert_eq!(a.fields(), ["ring_timeout_secs"]);
    g["ring_timeout_secs"] = json!(20);
    g["members"] = json!([{"agent": "1001"}, {"agent": "nobody"}]);
    let a = admin.post("/skill-groups", g.clone()).await?.expect(422)?;
    assert_eq!(a.fields(), ["members[1].agent"]);
    g["members"] = json!([{"agent": "1001", "level": 3}]);
    admin.post("/skill-groups", g.clone()).await?.expect(201)?;
    admin.post("/skill-groups", g).await?.expect(409)?;
    let a = admin
        .post("/agents", json!({"id": "../x", "name": "x", "seat": "1", "device": {"type": "mobile", "number": "1"}}))
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["id"]);
    let a = admin
        .post("/agents", json!({"id": "2001", "name": "x", "seat": "1", "device": {"type": "sip", "account": "nope"}}))
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["device.account"]);
    // Bad query parameters.
    let a = admin.get("/agents?limit=0").await?.expect(422)?;
    assert_eq!(a.fields(), ["limit"]);
    let a = admin.get("/agents?limit=many").await?.expect(422)?;
    assert_eq!(a.fields(), ["limit"]);
    let a = admin.get("/calls?day=2026-02-30").await?.expect(422)?;
    assert_eq!(a.fields(), ["day"]);
    let a = admin.get("/agents?cursor=zz").await?.expect(422)?;
    assert_eq!(a.fields(), ["cursor"]);
    // Unknown routes and methods answer in JSON.
    let a = admin.get("/nothing-here").await?.expect(404)?;
    assert_eq!(a.body["code"], "not_found");
    admin
        .send(Method::PATCH, "/agents", None)
        .await?
        .expect(405)?;
    Ok(())
}

#[tokio::test]
async fn configuration_writes_reach_the_hooks() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    admin
        .post(
            "/sip-accounts",
            json!({"id": "1004", "password": "pass1004"}),
        )
        .await?
        .expect(201)?;
    let a = admin
        .post(
            "/agents",
            json!({"id": "1004", "name": "Agent 1004", "seat": "1004",
                   "device": {"type": "sip", "account": "1004"}, "groups": ["support"]}),
        )
        .await?
        .expect(201)?;
    assert_eq!(a.body["groups"], json!(["support"]));
    assert!(s.hooks.saw(ConfigKind::Agent, "1004"));
    assert!(s.hooks.saw(ConfigKind::SkillGroup, "support"));
    let members = admin
        .get("/skill-groups/support/members")
        .await?
        .expect(200)?;
    assert_eq!(members.body.as_array().map(Vec::len), Some(3));
    // A mobile agent, moved to sales; a stale revision is a conflict.
    let mut doc = a.body.clone();
    doc["device"] = json!({"type": "mobile", "number": "13811112222"});
    doc["groups"] = json!(["sales"]);
    let changed = admin.put("/agents/1004", doc.clone()).await?.expect(200)?;
    assert_eq!(changed.body["groups"], json!(["sales"]));
    admin.put("/agents/1004", doc).await?.expect(409)?;
    let sales = admin.get("/agents?group=sales").await?.expect(200)?;
    assert_eq!(sales.body["items"].as_array().map(Vec::len), Some(2));
    // A custom status reaches every agent's policy.
    admin
        .post(
            "/custom-statuses",
            json!({"id": "lunch", "name": "午饭", "selectable": true}),
        )
        .await?
        .expect(201)?;
    let v = s
        .store
        .get::<switchboard_storage::model::Agent>(&"demo".into(), "1001")
        .await?
        .context("agent")?;
    assert!(v
        .record
        .policy
        .selectable_custom
        .contains(&"lunch".to_owned()));
    // Hotline, trunk, schedule, tenant, users.
    admin
        .post(
            "/schedules",
            json!({"id": "office", "name": "Office", "regular": "demo", "closed": "demo",
                   "week": [[{"start": "09:00", "end": "18:00"}], [], [], [], [], [], []],
                   "special": [{"name": "国庆节", "from": "2026-10-01", "to": "2026-10-07", "flow": "demo", "hours": null}]}),
        )
        .await?
        .expect(201)?;
    let bad = admin
        .post(
            "/schedules",
            json!({"id": "bad", "name": "x", "regular": "demo", "closed": "demo",
                   "week": [[{"start": "18:00", "end": "09:00"}], [], [], [], [], [], []]}),
        )
        .await?
        .expect(422)?;
    assert_eq!(bad.fields(), ["week[0][0]"]);
    admin
        .post(
            "/hotlines",
            json!({"number": "4001", "name": "Sales line", "schedule": "office"}),
        )
        .await?
        .expect(201)?;
    // A number another tenant holds is taken.
    admin
        .post(
            "/hotlines",
            json!({"number": "5000", "name": "x", "schedule": "office"}),
        )
        .await?
        .expect(409)?;
    admin
        .put(
            "/hotlines/4001/ivr-settings",
            json!({"waiting_prompt": "waiting", "max_queue_time_secs": 90}),
        )
        .await?
        .expect(200)?;
    assert!(s.hooks.saw(ConfigKind::Hotline, "4001"));
    let t = admin
        .put("/trunk", json!({"gateway": "gw.example.com:5060", "transport": "udp", "username": "u", "password": "p", "caller_id": "4000"}))
        .await?
        .expect(200)?;
    assert_eq!(t.body["password_set"], true);
    assert!(t.body.get("password").is_none());
    let mut tenant = admin.get("/tenant").await?.expect(200)?.body;
    tenant["service_level_secs"] = json!(30);
    // The queue callback's key is one key, its prompts exist.
    for (cb, field) in [
        (
            json!({"key": "12", "offer": "welcome", "confirm": "goodbye"}),
            "queue_callback.key",
        ),
        (
            json!({"key": "9", "offer": "nope", "confirm": "goodbye"}),
            "queue_callback.offer",
        ),
    ] {
        let mut bad = tenant.clone();
        bad["queue_callback"] = cb;
        let r = admin.put("/tenant", bad).await?.expect(422)?;
        assert_eq!(r.body["details"][0]["field"], field, "{}", r.body);
    }
    let mut bad = tenant.clone();
    bad["sip_domains"] = json!(["call center.example"]);
    let r = admin.put("/tenant", bad).await?.expect(422)?;
    assert_eq!(r.body["details"][0]["field"], "sip_domains", "{}", r.body);
    tenant["queue_callback"] = json!({"key": "#", "offer": "welcome", "confirm": "goodbye"});
    tenant["sip_domains"] = json!(["Demo.Example.", "demo.example", "sip.demo.example"]);
    let t = admin.put("/tenant", tenant).await?.expect(200)?;
    assert_eq!(t.body["queue_callback"]["key"], "#");
    assert_eq!(
        t.body["sip_domains"],
        json!(["demo.example", "sip.demo.example"])
    );
    // Binding a user binds the agent.
    admin
        .post("/users", json!({"id": "li", "display_name": "Li", "roles": ["agent"], "password": "password-2", "agent": "1004"}))
        .await?
        .expect(201)?;
    let a = admin.get("/agents/1004").await?.expect(200)?;
    assert_eq!(a.body["user"], "li");
    admin
        .post("/users", json!({"id": "wang", "display_name": "Wang", "roles": ["agent"], "password": "password-2", "agent": "1004"}))
        .await?
        .expect(409)?;
    // References stop deletions.
    admin.delete("/schedules/office").await?.expect(409)?;
    admin.delete("/skill-groups/support").await?.expect(409)?;
    admin.delete("/hotlines/4001").await?.expect(204)?;
    admin.delete("/schedules/office").await?.expect(204)?;
    admin.delete("/agents/1004").await?.expect(204)?;
    let li = admin.get("/users/li").await?.expect(200)?;
    assert_eq!(li.body["agent"], Value::Null);
    Ok(())
}

fn simple_flow(prompt: &str) -> Value {
    json!({
        "start": "hello",
        "nodes": {
            "hello": {"type": "play", "prompt": prompt, "next": "menu"},
            "menu": {"type": "menu", "prompt": "menu", "options": {"1": "support", "2": "hello"},
                     "timeout_secs": 5, "invalid_prompt": "invalid", "retries": 2,
                     "repeat_key": "*", "on_fail": "bye"},
            "support": {"type": "transfer_group", "group": "support"},
            "bye": {"type": "hang_up", "prompt": "goodbye"}
        }
    })
}

#[tokio::test]
async fn flows_are_drafted_checked_published_and_rolled_back() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let v1 = admin
        .post(
            "/flows",
            json!({"id": "main", "name": "Main", "definition": simple_flow("welcome")}),
        )
        .await?
        .expect(201)?;
    assert_eq!(v1.body["version"], 1);
    let f = admin.get("/flows/main").await?.expect(200)?;
    assert_eq!(f.body["published"], Value::Null);
    admin
        .post("/flows/main/publish", json!({"version": 1}))
        .await?
        .expect(200)?;
    assert!(s.hooks.saw(ConfigKind::IvrFlow, "main"));

    // An unreachable node, a dangling branch, a loop without exit.
    let mut d = simple_flow("welcome");
    d["nodes"]["orphan"] = json!({"type": "hang_up"});
    let v2 = admin
        .post("/flows/main/versions", json!({"definition": d}))
        .await?
        .expect(201)?;
    assert_eq!(v2.body["version"], 2);
    let r = admin
        .post("/flows/main/versions/2/validate", json!({}))
        .await?
        .expect(200)?;
    assert_eq!(r.body["valid"], false);
    assert_eq!(r.body["problems"][0]["code"], "unreachable");
    assert_eq!(r.body["problems"][0]["node"], "orphan");
    let p = admin
        .post("/flows/main/publish", json!({"version": 2}))
        .await?
        .expect(422)?;
    assert_eq!(p.fields(), ["definition.nodes.orphan"]);
    let mut d = simple_flow("welcome");
    d["nodes"]["menu"]["on_fail"] = json!("hello");
    d["nodes"]["menu"]["options"] = json!({"2": "hello"});
    d["nodes"].as_object_mut().map(|n| {
        n.remove("support");
        n.remove("bye")
    });
    admin
        .post("/flows/main/versions", json!({"definition": d}))
        .await?
        .expect(201)?;
    let p = admin
        .post("/flows/main/publish", json!({"version": 3}))
        .await?
        .expect(422)?;
    assert!(
        p.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("no way out"),
        "{}",
        p.body
    );
    // Malformed definitions are refused when saved.
    let mut d = simple_flow("welcome");
    d["nodes"]["menu"]["options"] = json!({"12": "hello"});
    let a = admin
        .post("/flows/main/versions", json!({"definition": d}))
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["definition.nodes.menu.options.12"]);

    // A prompt not yet approved keeps the version from being published.
    admin
        .put(
            "/prompts/greeting",
            json!({"name": "Greeting", "text": "Hello and welcome", "voice": "en-us"}),
        )
        .await?
        .expect(201)?;
    admin
        .post(
            "/flows/main/versions",
            json!({"definition": simple_flow("greeting")}),
        )
        .await?
        .expect(201)?;
    let p = admin
        .post("/flows/main/publish", json!({"version": 4}))
        .await?
        .expect(422)?;
    assert!(p.body["details"][0]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("unapproved_prompt"));
    let missing = admin
        .post(
            "/flows/main/versions",
            json!({"definition": simple_flow("nonesuch")}),
        )
        .await?
        .expect(201)?;
    let n = missing.body["version"].as_u64().context("version")?;
    let r = admin
        .post(&format!("/flows/main/versions/{n}/validate"), json!({}))
        .await?
        .expect(200)?;
    assert_eq!(r.body["problems"][0]["code"], "missing_prompt");
    // Rejected needs a reason; approved, it publishes.
    let a = admin
        .post("/prompts/greeting/review", json!({"status": "rejected"}))
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["reason"]);
    let a = admin
        .post("/prompts/greeting/review", json!({"status": "approved"}))
        .await?
        .expect(200)?;
    assert_eq!(a.body["review"]["status"], "approved");
    assert_eq!(a.body["review"]["reviewer"], "admin");
    let f = admin
        .post("/flows/main/publish", json!({"version": 4}))
        .await?
        .expect(200)?;
    assert_eq!(f.body["published"], 4);
    // A live prompt cannot be changed or deleted.
    admin
        .put(
            "/prompts/greeting",
            json!({"name": "Greeting", "text": "Other words", "voice": "en-us"}),
        )
        .await?
        .expect(409)?;
    admin.delete("/prompts/greeting").await?.expect(409)?;
    // Roll back: to the newest older version that still checks out.
    let bad = admin
        .post("/flows/main/rollback", json!({}))
        .await?
        .expect(422)?;
    assert!(bad.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("version 3"));
    let f = admin
        .post("/flows/main/rollback", json!({"version": 1}))
        .await?
        .expect(200)?;
    assert_eq!(f.body["published"], 1);
    assert_eq!(f.body["latest"], n);
    let versions = admin.get("/flows/main/versions").await?.expect(200)?;
    assert_eq!(versions.body.as_array().map(Vec::len), Some(n as usize));
    Ok(())
}

fn survey_flow(levels: Value) -> Value {
    json!({
        "start": "rate",
        "nodes": {
            "rate": {"type": "survey", "prompt": "survey", "levels": levels,
                     "timeout_secs": 8, "invalid_prompt": "invalid", "thanks": "thanks"}
        }
    })
}

fn levels(keys: &[&str]) -> Value {
    keys.iter()
        .zip(1..)
        .map(|(k, score)| json!({"key": k, "score": score, "label": format!("level {score}")}))
        .collect()
}

/// A draft version of the flow `rate` with `definition`: its number, or
/// the refusal.
async fn draft(admin: &Api, definition: Value, status: u16) -> Result<common::Answer> {
    admin
        .post("/flows/rate/versions", json!({ "definition": definition }))
        .await?
        .expect(status)
}

async fn refused_at_publish(admin: &Api, definition: Value, says: &str) -> Result<()> {
    let v = draft(admin, definition, 201).await?;
    let n = v.body["version"].as_u64().context("version")?;
    let p = admin
        .post("/flows/rate/publish", json!({ "version": n }))
        .await?
        .expect(422)?;
    assert_eq!(p.fields(), ["definition.nodes.rate"], "{}", p.body);
    let message = p.body["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "{message:?} should say {says:?}");
    let r = admin
        .post(&format!("/flows/rate/versions/{n}/validate"), json!({}))
        .await?
        .expect(200)?;
    assert_eq!(r.body["problems"][0]["code"], "invalid_node");
    Ok(())
}

#[tokio::test]
async fn survey_levels_are_checked() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    // Key 1 is the best answer: 5 points.
    let good = json!([
        {"key": "1", "score": 5, "label": "very satisfied"},
        {"key": "2", "score": 3, "label": "satisfied"},
        {"key": "#", "score": 1, "label": "not satisfied"},
    ]);
    let v = admin
        .post(
            "/flows",
            json!({"id": "rate", "name": "Rate us", "definition": survey_flow(good.clone())}),
        )
        .await?
        .expect(201)?;
    assert_eq!(v.body["definition"]["nodes"]["rate"]["levels"], good);
    admin
        .post("/flows/rate/publish", json!({"version": 1}))
        .await?
        .expect(200)?;

    // How many levels, which keys, which scores: refused at publishing.
    refused_at_publish(
        &admin,
        survey_flow(levels(&["1"])),
        "2 to 5 levels; this one has 1",
    )
    .await?;
    refused_at_publish(
        &admin,
        survey_flow(levels(&["1", "2", "3", "4", "5", "6"])),
        "2 to 5 levels; this one has 6",
    )
    .await?;
    refused_at_publish(
        &admin,
        survey_flow(levels(&["1", "2", "1"])),
        r#"levels "level 1" and "level 3" both use key '1'"#,
    )
    .await?;
    refused_at_publish(
        &admin,
        survey_flow(levels(&["1", "D"])),
        r#"level "level 2": 'D' is not a phone key (0-9, * or #)"#,
    )
    .await?;
    let mut same = levels(&["1", "2"]);
    same[1]["score"] = json!(1);
    refused_at_publish(&admin, survey_flow(same), "both score 1").await?;

    // What is not one key, or not a label, is refused when saved.
    let a = draft(&admin, survey_flow(levels(&["1", "12"])), 422).await?;
    assert_eq!(a.fields(), ["definition.nodes.rate.levels.1.key"]);
    let mut blank = levels(&["1", "2"]);
    blank[0]["label"] = json!(" ");
    let a = draft(&admin, survey_flow(blank), 422).await?;
    assert_eq!(a.fields(), ["definition.nodes.rate.levels.0.label"]);

    // `max`, the form before levels: keys 1 to max scoring their digit.
    let mut d = survey_flow(json!([]));
    d["nodes"]["rate"]
        .as_object_mut()
        .context("node")?
        .remove("levels");
    d["nodes"]["rate"]["max"] = json!(4);
    let v = draft(&admin, d.clone(), 201).await?;
    let node = &v.body["definition"]["nodes"]["rate"];
    assert_eq!(
        node["levels"][3],
        json!({"key": "4", "score": 4, "label": "4"})
    );
    assert_eq!(node.get("max"), None, "{node}");
    d["nodes"]["rate"]["levels"] = good;
    let a = draft(&admin, d, 422).await?;
    assert_eq!(a.fields(), ["definition.nodes.rate.max"]);
    Ok(())
}

#[tokio::test]
async fn wav_uploads_are_checked_and_converted() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    // 44.1 kHz stereo in, 8 kHz 16-bit mono out.
    let wav = common::stereo_wav(44_100, 1.5);
    let a = admin
        .raw(
            Method::PUT,
            "/prompts/hold/wav?name=Hold%20music",
            "audio/wav",
            wav,
        )
        .await?
        .expect(201)?;
    assert_eq!(a.body["review"]["status"], "pending");
    assert_eq!(a.body["name"], "Hold music");
    let ms = a.body["source"]["duration_ms"]
        .as_u64()
        .context("duration")?;
    assert!((1400..=1600).contains(&ms), "{ms} ms");
    let audio = admin.get("/prompts/hold/audio").await?.expect(200)?;
    let r = hound::WavReader::new(&audio.bytes[..])?;
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    let n = r.len();
    assert!((11_000..=13_000).contains(&n), "{n} samples");
    // Over 3 MiB: 413.
    let big = common::stereo_wav(44_100, 20.0);
    assert!(big.len() > 3 * 1024 * 1024);
    let a = admin
        .raw(Method::PUT, "/prompts/big/wav", "audio/wav", big)
        .await?
        .expect(413)?;
    assert_eq!(a.body["code"], "payload_too_large");
    // Not a WAV file, or not PCM: 422 on the body.
    let a = admin
        .raw(
            Method::PUT,
            "/prompts/junk/wav",
            "audio/wav",
            b"ID3 this is an mp3".to_vec(),
        )
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["body"]);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec)?;
        for i in 0..800 {
            w.write_sample((i as f32 / 100.0).sin())?;
        }
        w.finalize()?;
    }
    let a = admin
        .raw(
            Method::PUT,
            "/prompts/float/wav",
            "audio/wav",
            cur.into_inner(),
        )
        .await?
        .expect(422)?;
    assert!(a.body["message"].as_str().unwrap_or("").contains("PCM"));
    admin
        .raw(
            Method::PUT,
            "/prompts/typed/wav",
            "text/plain",
            b"x".to_vec(),
        )
        .await?
        .expect(415)?;
    // TTS prompts are spoken at once and can be heard.
    let t = admin
        .put(
            "/prompts/hi",
            json!({"name": "Hi", "text": "Hello there", "voice": "en-us"}),
        )
        .await?
        .expect(201)?;
    assert_eq!(t.body["source"]["type"], "tts");
    let audio = admin.get("/prompts/hi/audio").await?.expect(200)?;
    let r = hound::WavReader::new(&audio.bytes[..])?;
    assert_eq!(r.spec().sample_rate, 8000);
    assert!(r.len() > 4000);
    let a = admin
        .put(
            "/prompts/hi2",
            json!({"name": "Hi", "text": "Hello", "voice": "zz9"}),
        )
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["voice"]);
    // Pending prompts are what reviewers list.
    let pending = admin.get("/prompts?status=pending").await?.expect(200)?;
    let ids: Vec<&str> = pending.body["items"]
        .as_array()
        .map(|v| v.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["hi", "hold"]);
    Ok(())
}

/// Every item of a listing, page by page; also how many pages.
async fn all_pages(api: &Api, path: &str) -> Result<(Vec<Value>, usize)> {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let a = api.get(&url).await?.expect(200)?;
        pages += 1;
        items.extend(a.body["items"].as_array().cloned().unwrap_or_default());
        match a.body["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok((items, pages)),
        }
        anyhow::ensure!(pages < 100, "endless paging");
    }
}

#[tokio::test]
async fn listings_page_with_cursors() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let (agents, pages) = all_pages(&admin, "/agents?limit=2").await?;
    assert_eq!(agents.len(), 3);
    assert_eq!(pages, 2);
    let (calls, pages) = all_pages(&admin, &format!("/calls?day={DAY}&limit=3")).await?;
    assert_eq!(calls.len(), CALLS + 1);
    assert!(pages >= 3);
    let starts: Vec<u64> = calls.iter().filter_map(|c| c["start"].as_u64()).collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let (mine, _) = all_pages(&admin, &format!("/calls?day={DAY}&agent=1002")).await?;
    assert_eq!(mine.len(), 1);
    let (by_agent, _) = all_pages(&admin, "/agents/1001/calls?limit=2").await?;
    assert_eq!(by_agent.len(), CALLS);
    let (by_number, _) =
        all_pages(&admin, &format!("/numbers/{CUSTOMER_NUMBER}/calls?limit=4")).await?;
    assert_eq!(by_number.len(), CALLS);
    let one = admin.get("/calls/0000000000000100").await?.expect(200)?;
    assert_eq!(one.body["talk_ms"], 105_000);
    assert_eq!(one.body["recorded"], true);
    assert_eq!(one.body["satisfaction"], 5);
    assert_eq!(
        one.body["survey"],
        json!({"outcome": "scored", "score": 5, "key": "1"})
    );
    let wrong = admin.get("/calls/0000000000000101").await?.expect(200)?;
    assert_eq!(wrong.body["satisfaction"], Value::Null);
    assert_eq!(
        wrong.body["survey"],
        json!({"outcome": "invalid_key", "score": null, "key": "#"})
    );
    let none = admin.get("/calls/0000000000000200").await?.expect(200)?;
    assert_eq!(none.body["survey"]["outcome"], "not_offered");
    let a = admin
        .get(&format!("/calls?day={DAY}&cursor=garbage"))
        .await?;
    assert!(a.status == 422 || a.status == 400, "{}", a.body);
    Ok(())
}

#[tokio::test]
async fn the_24_hour_report() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let r = admin
        .get(&format!("/reports/hourly?day={DAY}"))
        .await?
        .expect(200)?;
    assert_eq!(r.body["day"], DAY);
    let series = &r.body["series"][0];
    assert_eq!(series["scope"], "tenant");
    let hours = series["hours"].as_array().context("hours")?;
    assert_eq!(hours.len(), 24);
    // Two nodes' partials summed: 20 offered, 17 answered, 15 in time.
    assert_eq!(hours[9]["offered"], 20);
    assert_eq!(hours[9]["answered"], 17);
    assert_eq!(hours[9]["answer_rate"], 0.85);
    assert_eq!(hours[9]["service_level"], 0.75);
    assert_eq!(hours[14]["answer_rate"], 1.0);
    assert_eq!(hours[3]["answer_rate"], Value::Null);
    assert_eq!(series["total"]["offered"], 24);
    assert_eq!(series["total"]["answered"], 21);
    let g = admin
        .get(&format!("/reports/hourly?day={DAY}&scope=group"))
        .await?
        .expect(200)?;
    let ids: Vec<&str> = g.body["series"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["sales", "support"]);
    assert_eq!(g.body["series"][0]["hours"][9]["answer_rate"], 0.5);
    let a = admin
        .get(&format!("/reports/hourly?day={DAY}&scope=agent&id=1001"))
        .await?
        .expect(200)?;
    assert_eq!(a.body["series"][0]["hours"][9]["answered"], 5);
    let bad = admin.get("/reports/hourly?scope=team").await?.expect(422)?;
    assert_eq!(bad.fields(), ["scope"]);
    Ok(())
}

#[tokio::test]
async fn the_crm_behind_the_screen_pop() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let agent = Api::login(&s, "demo", "1001", "pass1001").await?;
    admin
        .put(
            "/form-schemas/customer",
            json!({"fields": [
                {"key": "level", "label": "客户等级", "field_type": {"type": "choice", "options": ["gold", "silver"]}, "required": true},
                {"key": "since", "label": "Since", "field_type": {"type": "date"}}
            ]}),
        )
        .await?
        .expect(200)?;
    let a = agent
        .post("/customers", json!({"name": "Zhang San", "numbers": [CUSTOMER_NUMBER], "fields": {"level": "bronze", "age": 3}}))
        .await?
        .expect(422)?;
    let mut f = a.fields();
    f.sort();
    assert_eq!(f, ["fields.age", "fields.level"]);
    let a = agent
        .post(
            "/customers",
            json!({"name": "Zhang San", "numbers": [CUSTOMER_NUMBER], "fields": {}}),
        )
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["fields.level"]);
    let c = agent
        .post("/customers", json!({"name": "Zhang San", "numbers": [CUSTOMER_NUMBER], "fields": {"level": "gold", "since": "2020-05-01"}}))
        .await?
        .expect(201)?;
    let id = c.body["id"].as_str().context("id")?.to_owned();
    admin
        .post(
            "/customers",
            json!({"name": "Dup", "numbers": [CUSTOMER_NUMBER], "fields": {"level": "gold"}}),
        )
        .await?
        .expect(409)?;
    let found = agent
        .get(&format!("/customers/lookup?number={CUSTOMER_NUMBER}"))
        .await?
        .expect(200)?;
    assert_eq!(found.body["id"], id.as_str());
    assert_eq!(found.body["fields"]["since"], "2020-05-01");
    agent
        .get("/customers/lookup?number=10086")
        .await?
        .expect(404)?;

    // A ticket from the pop: the customer comes from the call's number.
    let t = agent
        .post(
            "/tickets",
            json!({"call": "0000000000000100", "title": "Bill is wrong", "priority": 2}),
        )
        .await?
        .expect(201)?;
    assert_eq!(t.body["customer"], id.as_str());
    assert_eq!(t.body["call"], "0000000000000100");
    assert_eq!(t.body["assignee"], "1001");
    // Not its call: an agent cannot link it.
    let a = agent
        .post(
            "/tickets",
            json!({"call": "0000000000000200", "title": "x"}),
        )
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["call"]);
    // The summary of its call.
    let sm = agent
        .put(
            "/calls/0000000000000100/summary",
            json!({"category": ["咨询", "账单"], "notes": "explained the bill"}),
        )
        .await?
        .expect(200)?;
    assert_eq!(sm.body["customer"], id.as_str());
    agent
        .get("/calls/0000000000000200/summary")
        .await?
        .expect(404)?;
    // Contact plans: one overdue, one tomorrow.
    let now = common::at(0).0.max(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64,
    );
    agent
        .post(
            "/agents/1001/contact-plans",
            json!({"number": CUSTOMER_NUMBER, "due": now - 60_000, "note": "call back"}),
        )
        .await?
        .expect(201)?;
    let later = agent
        .post(
            "/agents/1001/contact-plans",
            json!({"number": CUSTOMER_NUMBER, "due": now + 2 * 86_400_000, "note": "follow up"}),
        )
        .await?
        .expect(201)?;
    let a = agent
        .post(
            "/agents/1001/contact-plans",
            json!({"number": "10086", "due": now}),
        )
        .await?
        .expect(422)?;
    assert_eq!(a.fields(), ["number"]);
    let overdue = agent
        .get("/agents/1001/contact-plans?filter=overdue")
        .await?
        .expect(200)?;
    assert_eq!(overdue.body.as_array().map(Vec::len), Some(1));
    assert_eq!(overdue.body[0]["overdue"], true);
    let due = agent
        .get("/agents/1001/contact-plans?filter=due")
        .await?
        .expect(200)?;
    assert_eq!(due.body.as_array().map(Vec::len), Some(1));
    let pid = later.body["id"].as_str().context("plan id")?;
    let done = agent
        .send(
            Method::POST,
            &format!("/agents/1001/contact-plans/{pid}/done"),
            None,
        )
        .await?
        .expect(200)?;
    assert_eq!(done.body["status"], "done");
    let all = admin.get("/agents/1001/contact-plans").await?.expect(200)?;
    assert_eq!(all.body.as_array().map(Vec::len), Some(2));
    // The timeline: ticket, summary and plans, newest first, paged.
    let (events, pages) = all_pages(&agent, &format!("/customers/{id}/timeline?limit=1")).await?;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"ticket") && kinds.contains(&"summary") && kinds.contains(&"contact_plan"),
        "{kinds:?}"
    );
    assert_eq!(pages, events.len() + 1);
    let ats: Vec<u64> = events.iter().filter_map(|e| e["at"].as_u64()).collect();
    assert!(ats.windows(2).all(|w| w[0] >= w[1]));
    let (whole, _) = all_pages(&agent, &format!("/customers/{id}/timeline")).await?;
    assert_eq!(whole.len(), events.len());
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_covers_the_routes() -> Result<()> {
    let s = server().await?;
    let doc = Api::anonymous(&s)
        .get("/openapi.json")
        .await?
        .expect(200)?
        .body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().context("paths")?;
    for p in [
        "/api/v1/auth/login",
        "/api/v1/agents/{id}",
        "/api/v1/skill-groups/{id}/members",
        "/api/v1/hotlines/{number}/ivr-settings",
        "/api/v1/flows/{id}/publish",
        "/api/v1/flows/{id}/rollback",
        "/api/v1/prompts/{id}/wav",
        "/api/v1/prompts/{id}/review",
        "/api/v1/customers/lookup",
        "/api/v1/calls/{call}/recording",
        "/api/v1/reports/hourly",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(paths.len() >= 35, "{} paths", paths.len());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["AgentDoc"].is_object());
    Ok(())
}

#[tokio::test]
async fn wrong_passwords_in_a_row_hold_the_user_off_for_a_while() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    user(&s, &admin, "guessed", json!(["agent"]), Value::Null).await?;
    user(&s, &admin, "bystander", json!(["agent"]), Value::Null).await?;
    let anon = Api::anonymous(&s);
    let attempt = |password: &str| {
        anon.post(
            "/auth/login",
            json!({"tenant": "demo", "user": "guessed", "password": password}),
        )
    };
    for _ in 0..5 {
        attempt("not-it").await?.expect(401)?;
    }
    // The sixth try is refused before the password is even looked at,
    // the right one too, with how long to wait.
    for password in ["not-it", "password-1"] {
        let held = attempt(password).await?.expect(429)?;
        assert_eq!(held.body["code"], "too_many_requests");
        assert!(
            held.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("too many wrong passwords")),
            "{}",
            held.body
        );
        let wait: u64 = held
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .context("a Retry-After header")?;
        assert!((1..=300).contains(&wait), "{wait}");
    }
    // Someone else signs in as usual.
    Api::login(&s, "demo", "bystander", "password-1").await?;
    Ok(())
}

#[tokio::test]
async fn signing_out_a_new_password_or_a_disabled_user_voids_the_tokens() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let first = user(&s, &admin, "leaver", json!(["supervisor"]), Value::Null).await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = Api::login(&s, "demo", "leaver", "password-1").await?;
    first.get("/auth/me").await?.expect(200)?;
    second.get("/skill-groups").await?.expect(200)?;

    // Signing out with one token voids every token of the user.
    first
        .send(Method::POST, "/auth/logout", None)
        .await?
        .expect(204)?;
    for t in [&first, &second] {
        let a = t.get("/auth/me").await?.expect(401)?;
        assert_eq!(
            a.body["message"],
            "this token was signed out; sign in again"
        );
    }
    let third = Api::login(&s, "demo", "leaver", "password-1").await?;
    third.get("/auth/me").await?.expect(200)?;

    // A role taken away counts at once, not when the token expires.
    let mut doc = admin.get("/users/leaver").await?.expect(200)?.body;
    doc["roles"] = json!(["agent"]);
    admin.put("/users/leaver", doc).await?.expect(200)?;
    third.get("/skill-groups").await?.expect(403)?;
    third.get("/auth/me").await?.expect(200)?;

    // A new password signs the user out everywhere.
    let mut doc = admin.get("/users/leaver").await?.expect(200)?.body;
    doc["password"] = json!("password-2");
    admin.put("/users/leaver", doc).await?.expect(200)?;
    third.get("/auth/me").await?.expect(401)?;
    let fourth = Api::login(&s, "demo", "leaver", "password-2").await?;

    // Disabled, or deleted: its tokens stop working.
    let mut doc = admin.get("/users/leaver").await?.expect(200)?.body;
    doc["enabled"] = json!(false);
    admin.put("/users/leaver", doc).await?.expect(200)?;
    let a = fourth.get("/auth/me").await?.expect(401)?;
    assert_eq!(
        a.body["message"],
        "the user no longer exists or is disabled; sign in again"
    );
    // Signing out without a token only clears the cookie.
    Api::anonymous(&s)
        .send(Method::POST, "/auth/logout", None)
        .await?
        .expect(204)?;
    Ok(())
}

#[tokio::test]
async fn a_recording_is_streamed_and_seekable_by_byte_ranges() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let path = "/calls/0000000000000200/recording";
    let whole = admin.get(path).await?.expect(200)?;
    let header = |a: &common::Answer, name: &str| {
        a.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(&whole, "accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(header(&whole, "content-type").as_deref(), Some("audio/wav"));
    let len = whole.bytes.len();
    assert!(len > 1000, "{len}");
    assert_eq!(&whole.bytes[..4], b"RIFF");
    assert_eq!(header(&whole, "content-length"), Some(len.to_string()));
    // The WAV header alone, the last 100 bytes, and from an offset on.
    let head = admin.get_range(path, "bytes=0-43").await?.expect(206)?;
    assert_eq!(head.bytes, whole.bytes[..44]);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes 0-43/{len}"))
    );
    let tail = admin.get_range(path, "bytes=-100").await?.expect(206)?;
    assert_eq!(tail.bytes, whole.bytes[len - 100..]);
    let from = admin.get_range(path, "bytes=1000-").await?.expect(206)?;
    assert_eq!(from.bytes, whole.bytes[1000..]);
    // Past the end: 416, saying how long it is.
    let past = admin
        .get_range(path, &format!("bytes={len}-"))
        .await?
        .expect(416)?;
    assert_eq!(
        header(&past, "content-range"),
        Some(format!("bytes */{len}"))
    );
    assert_eq!(past.body["code"], "range_not_satisfiable");
    // Several ranges: the whole recording.
    let many = admin.get_range(path, "bytes=0-1,5-9").await?.expect(200)?;
    assert_eq!(many.bytes.len(), len);
    Ok(())
}

#[tokio::test]
async fn tickets_are_listed_last_updated_first_with_filters() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    let mut ids = Vec::new();
    for (title, status, assignee) in [
        ("first", "open", "1001"),
        ("second", "closed", "1001"),
        ("third", "open", "1002"),
    ] {
        let t = admin
            .post(
                "/tickets",
                json!({"title": title, "status": status, "assignee": assignee}),
            )
            .await?
            .expect(201)?;
        ids.push(t.body["id"].as_str().context("an id")?.to_owned());
        // Distinct update times.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let titles = |a: &common::Answer| {
        a.body["items"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|t| t["title"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let all = admin.get("/tickets").await?.expect(200)?;
    assert_eq!(titles(&all), ["third", "second", "first"]);
    // Two at a time: the cursor leads on.
    let p1 = admin.get("/tickets?limit=2").await?.expect(200)?;
    assert_eq!(titles(&p1), ["third", "second"]);
    let next = p1.body["next"].as_str().context("a next cursor")?;
    let p2 = admin
        .get(&format!("/tickets?limit=2&cursor={next}"))
        .await?
        .expect(200)?;
    assert_eq!(titles(&p2), ["first"]);
    assert!(p2.body["next"].is_null());
    let open = admin
        .get("/tickets?status=open&assignee=1001")
        .await?
        .expect(200)?;
    assert_eq!(titles(&open), ["first"]);
    // The first one is worked on: it comes first now.
    admin
        .put(
            &format!("/tickets/{}", ids[0]),
            json!({"title": "first", "status": "in_progress", "assignee": "1001"}),
        )
        .await?
        .expect(200)?;
    let all = admin.get("/tickets").await?.expect(200)?;
    assert_eq!(titles(&all), ["first", "third", "second"]);
    // A wrong status or cursor names the field.
    let bad = admin.get("/tickets?status=lost").await?.expect(422)?;
    assert_eq!(bad.fields(), ["status"]);
    let bad = admin.get("/tickets?cursor=zz").await?.expect(422)?;
    assert_eq!(bad.fields(), ["cursor"]);
    Ok(())
}

#[tokio::test]
async fn customers_are_listed_last_updated_first_and_found_by_name() -> Result<()> {
    let s = server().await?;
    let admin = Api::admin(&s).await?;
    for (name, number) in [
        ("Zhang San", "13900000001"),
        ("Li Lei", "13900000002"),
        ("li ming", "13900000003"),
    ] {
        admin
            .post("/customers", json!({"name": name, "numbers": [number]}))
            .await?
            .expect(201)?;
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let names = |a: &common::Answer| {
        a.body["items"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let all = admin.get("/customers").await?.expect(200)?;
    assert_eq!(names(&all), ["li ming", "Li Lei", "Zhang San"]);
    let p1 = admin.get("/customers?limit=2").await?.expect(200)?;
    assert_eq!(names(&p1), ["li ming", "Li Lei"]);
    let next = p1.body["next"].as_str().context("a next cursor")?;
    let p2 = admin
        .get(&format!("/customers?limit=2&cursor={next}"))
        .await?
        .expect(200)?;
    assert_eq!(names(&p2), ["Zhang San"]);
    let li = admin.get("/customers?name=LI").await?.expect(200)?;
    assert_eq!(names(&li), ["li ming", "Li Lei"]);
    let bad = admin.get("/customers?limit=0").await?.expect(422)?;
    assert_eq!(bad.fields(), ["limit"]);
    Ok(())
}
