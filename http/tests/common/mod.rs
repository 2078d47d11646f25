//! A real server for the tests: the router on a loopback TCP port over an
//! embedded store in a fresh directory, seeded with the demo tenant, its
//! users, a few calls and statistics, and a second tenant `other` holding
//! one object of every kind; and a small JSON client.

#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_http::{seed_demo_users, AppState, ConfigHooks};
use switchboard_storage::model::{
    self as m, AgentId, CallId, CallRecord, ConfigKind, Counters, Day, Direction, HangupReason,
    HangupSide, IvrTrace, NodeId, StatsPartial, StatsScope, TenantId, Timestamp,
};
use switchboard_storage::{EmbeddedStore, Store};

/// The day the seeded calls and statistics are on.
pub const DAY: &str = "2026-11-30";
/// The demo tenant's seeded calls: this many, all agent 1001's.
pub const CALLS: usize = 7;
pub const CUSTOMER_NUMBER: &str = "13800138000";

/// What the hooks were told.
#[derive(Debug, Default)]
pub struct Recorded(pub Mutex<Vec<(TenantId, ConfigKind, String)>>);

impl ConfigHooks for Recorded {
    fn changed(&self, tenant: &TenantId, kind: ConfigKind, id: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push((tenant.clone(), kind, id.to_owned()));
        }
    }
}

impl Recorded {
    pub fn saw(&self, kind: ConfigKind, id: &str) -> bool {
        self.0
            .lock()
            .map(|v| v.iter().any(|(_, k, i)| *k == kind && i == id))
            .unwrap_or(false)
    }
}

pub struct Server {
    pub base: String,
    pub dir: PathBuf,
    pub store: Arc<dyn Store>,
    pub hooks: Arc<Recorded>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn day() -> Day {
    Day::from_date(m::Date {
        year: 2026,
        month: 11,
        day: 30,
    })
}

/// 09:00 local (UTC+8) on [`DAY`], plus `mins`.
pub fn at(mins: u64) -> Timestamp {
    m::LocalHour {
        day: day(),
        hour: 9,
    }
    .start(480)
    .after(Duration::from_secs(mins * 60))
}

pub fn call_record(
    tenant: &str,
    id: u64,
    start: Timestamp,
    agent: &str,
    number: &str,
) -> CallRecord {
    CallRecord {
        tenant: TenantId::from(tenant),
        call: CallId(id),
        day: Day::of(start, 480),
        direction: Direction::Inbound,
        caller: number.into(),
        dialed: "4000".into(),
        customer_number: number.into(),
        customer: None,
        start,
        end: start.after(Duration::from_secs(120)),
        ivr: IvrTrace::default(),
        group: Some("support".into()),
        enqueued: Some(start.after(Duration::from_secs(10))),
        dequeued: Some(start.after(Duration::from_secs(15))),
        rings: Vec::new(),
        agent: Some(AgentId::from(agent)),
        answered: Some(start.after(Duration::from_secs(15))),
        talk_end: Some(start.after(Duration::from_secs(120))),
        overflow: None,
        hangup_side: HangupSide::Customer,
        hangup_reason: HangupReason::Normal,
        voicemail: false,
        satisfaction: m::Satisfaction::NotOffered,
        legs: Vec::new(),
        location: None,
        recording: Some(format!("recordings/{}.wav", CallId(id))),
        node: NodeId::from("n1"),
        outcome: None,
        transfers: Vec::new(),
        holds: Vec::new(),
        callback: None,
    }
}

/// A stereo 8 kHz WAV of `secs` seconds.
pub fn stereo_wav(rate: u32, secs: f32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    if let Ok(mut w) = hound::WavWriter::new(&mut cur, spec) {
        let n = (rate as f32 * secs) as usize;
        for i in 0..n {
            let s =
                ((i as f32 * 440.0 / rate as f32 * std::f32::consts::TAU).sin() * 8000.0) as i16;
            let _ = w.write_sample(s);
            let _ = w.write_sample(s / 2);
        }
        let _ = w.finalize();
    }
    cur.into_inner()
}

async fn seed_other(store: &dyn Store, now: Timestamp) -> Result<()> {
    let t = TenantId::from("other");
    let mut tenant = store
        .get::<m::Tenant>(&TenantId::from("demo"), m::Tenant::ID)
        .await?
        .context("demo tenant")?
        .record;
    tenant.tenant = t.clone();
    tenant.name = "Other company".into();
    store.create_if_absent(&tenant).await?;
    store
        .create_if_absent(&m::User {
            tenant: t.clone(),
            id: "boss".into(),
            display_name: "Boss".into(),
            roles: vec![m::Role::TenantAdmin],
            password_hash: Some(switchboard_http::hash_password("other-pass")?),
            agent: Some(AgentId::from("o-agent")),
            enabled: true,
            tokens_after: None,
        })
        .await?;
    store
        .create_if_absent(&m::SipAccount {
            tenant: t.clone(),
            id: "o-sip".into(),
            ha1: "x".into(),
            realm: "r".into(),
            ha1_sha256: None,
            enabled: true,
        })
        .await?;
    store
        .create_if_absent(&m::Agent {
            tenant: t.clone(),
            id: AgentId::from("o-agent"),
            name: "Other agent".into(),
            seat: "9".into(),
            user: Some("boss".into()),
            device: m::Device::Sip {
                account: "o-sip".into(),
            },
            policy: m::AgentPolicy::default(),
            telesales: false,
            enabled: true,
        })
        .await?;
    store
        .create_if_absent(&m::SkillGroup {
            tenant: t.clone(),
            id: "o-group".into(),
            name: "Other group".into(),
            config: m::GroupConfig::default(),
            members: vec![m::Member {
                agent: AgentId::from("o-agent"),
                level: 1,
            }],
            telesales: false,
        })
        .await?;
    store
        .create_if_absent(&m::CustomStatus {
            tenant: t.clone(),
            id: "o-status".into(),
            name: "Lunch".into(),
            selectable: true,
        })
        .await?;
    store
        .create_if_absent(&m::Prompt {
            tenant: t.clone(),
            id: "o-prompt".into(),
            name: "o".into(),
            source: m::PromptSource::Tts {
                text: "hello".into(),
                voice: "en-us".into(),
            },
            review: m::Review::pending(),
            created: now,
        })
        .await?;
    let mut nodes = BTreeMap::new();
    nodes.insert("bye".to_owned(), m::Node::HangUp { prompt: None });
    let flow = m::Flow {
        id: "o-flow".into(),
        start: "bye".into(),
        nodes,
    };
    store
        .save_flow(&t, "o-flow", "Other flow", &flow, now, Some("boss"))
        .await?;
    store.publish_flow(&t, "o-flow", 1).await?;
    store
        .create_if_absent(&m::IvrSchedule {
            tenant: t.clone(),
            id: "o-schedule".into(),
            name: "o".into(),
            schedule: m::Schedule::always("o-flow"),
        })
        .await?;
    store
        .create_if_absent(&m::Hotline {
            tenant: t.clone(),
            number: "5000".into(),
            name: "Other hotline".into(),
            schedule: "o-schedule".into(),
            settings: m::IvrSettings::default(),
            enabled: true,
        })
        .await?;
    store
        .create_if_absent(&m::Trunk {
            tenant: t.clone(),
            id: m::Trunk::ID.into(),
            gateway: "gw.other.example:5060".into(),
            transport: m::TrunkTransport::Udp,
            username: None,
            password: Some("secret".into()),
            caller_id: "5000".into(),
            enabled: true,
        })
        .await?;
    store
        .create_if_absent(&m::FormSchema {
            tenant: t.clone(),
            id: "customer".into(),
            fields: vec![m::FieldDef {
                key: "secret_level".into(),
                label: "Level".into(),
                field_type: m::FieldType::Bool,
                required: false,
            }],
        })
        .await?;
    store
        .put_customer(&m::Customer {
            tenant: t.clone(),
            id: "o-customer".into(),
            name: "Other customer".into(),
            numbers: vec!["13900000000".into()],
            fields: Default::default(),
            created: now,
            updated: now,
        })
        .await?;
    store
        .put_ticket(&m::Ticket {
            tenant: t.clone(),
            id: "o-ticket".into(),
            customer: Some("o-customer".into()),
            call: None,
            title: "Other ticket".into(),
            description: String::new(),
            status: m::TicketStatus::Open,
            priority: 1,
            assignee: None,
            fields: Default::default(),
            created: now,
            updated: now,
        })
        .await?;
    let mut r = call_record("other", 0xabc, at(5), "o-agent", "13900000000");
    r.customer = Some("o-customer".into());
    store.put_calls(&[r]).await?;
    store
        .put_summary(&m::ServiceSummary {
            tenant: t.clone(),
            id: CallId(0xabc).to_string(),
            call: Some(CallId(0xabc)),
            customer: Some("o-customer".into()),
            agent: AgentId::from("o-agent"),
            category: vec!["x".into()],
            notes: "n".into(),
            fields: Default::default(),
            created: now,
        })
        .await?;
    store
        .put_contact_plan(&m::ContactPlan {
            tenant: t.clone(),
            id: "o-plan".into(),
            customer: "o-customer".into(),
            number: "13900000000".into(),
            agent: AgentId::from("o-agent"),
            due: now,
            note: "call back".into(),
            status: m::ContactPlanStatus::Pending,
            created: now,
            call: None,
            outcome: None,
        })
        .await?;
    store
        .put_stats(&[StatsPartial {
            tenant: t,
            day: day(),
            hour: 9,
            scope: StatsScope::Tenant,
            node: NodeId::from("n1"),
            counters: Counters {
                calls: 99,
                offered: 99,
                ..Counters::default()
            },
        }])
        .await?;
    Ok(())
}

/// Starts a server over a fresh, seeded store.
pub async fn start() -> Result<Server> {
    let dir =
        std::env::temp_dir().join(format!("sb-http-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir)?);
    let now = switchboard_storage::model::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64,
    );
    switchboard_storage::seed::seed_demo(&*store, "switchboard", now).await?;
    seed_demo_users(&*store).await?;
    seed_other(&*store, now).await?;

    // The demo's calls: CALLS answered by 1001, a minute apart, each
    // with a recording.
    let mut calls = Vec::new();
    for i in 0..CALLS as u64 {
        calls.push(call_record(
            "demo",
            0x100 + i,
            at(i),
            "1001",
            CUSTOMER_NUMBER,
        ));
    }
    calls.push(call_record("demo", 0x200, at(30), "1002", "13700000000"));
    // Key 1 is the best answer of the survey; 0x101's customer pressed
    // a key that is no level's, twice.
    calls[0].satisfaction = m::Satisfaction::Scored { score: 5, key: '1' };
    calls[1].satisfaction = m::Satisfaction::InvalidKey { key: '#' };
    store.put_calls(&calls).await?;
    std::fs::create_dir_all(dir.join("recordings"))?;
    for c in &calls {
        std::fs::write(
            dir.join(format!("recordings/{}.wav", c.call)),
            stereo_wav(8000, 0.5),
        )?;
    }
    let partial =
        |node: &str, hour: u8, scope: StatsScope, offered, answered, in_sl| StatsPartial {
            tenant: TenantId::from("demo"),
            day: day(),
            hour,
            scope,
            node: NodeId::from(node),
            counters: Counters {
                calls: offered,
                offered,
                answered,
                answered_in_service_level: in_sl,
                talk_ms: answered * 60_000,
                ..Counters::default()
            },
        };
    store
        .put_stats(&[
            partial("n1", 9, StatsScope::Tenant, 10, 8, 6),
            partial("n2", 9, StatsScope::Tenant, 10, 9, 9),
            partial("n1", 14, StatsScope::Tenant, 4, 4, 4),
            partial("n1", 9, StatsScope::Group("support".into()), 6, 5, 5),
            partial("n1", 9, StatsScope::Group("sales".into()), 4, 2, 1),
            partial("n1", 9, StatsScope::Agent(AgentId::from("1001")), 5, 5, 5),
        ])
        .await?;

    let hooks = Arc::new(Recorded::default());
    let state = AppState::new(store.clone(), dir.clone()).with_hooks(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(switchboard_http::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Ok(Server {
        base,
        dir,
        store,
        hooks,
    })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

/// A JSON client, signed in or not.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

/// A response: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The `details[].field` names of an error.
    pub fn fields(&self) -> Vec<String> {
        self.body["details"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|p| p["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn expect(self, status: u16) -> Result<Answer> {
        if self.status != status {
            bail!("expected {status}, got {}: {}", self.status, self.body);
        }
        Ok(self)
    }
}

impl Api {
    pub fn anonymous(server: &Server) -> Api {
        Api {
            base: server.base.clone(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// Signs in to tenant `tenant` as `user`.
    pub async fn login(server: &Server, tenant: &str, user: &str, password: &str) -> Result<Api> {
        let mut api = Api::anonymous(server);
        let a = api
            .send(
                reqwest::Method::POST,
                "/auth/login",
                Some(json!({"tenant": tenant, "user": user, "password": password})),
            )
            .await?
            .expect(200)?;
        api.token = a.body["token"].as_str().map(str::to_owned);
        Ok(api)
    }

    pub async fn admin(server: &Server) -> Result<Api> {
        Api::login(server, "demo", "admin", "demo-admin").await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await?).await
    }

    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    /// A GET with a `Range` header.
    pub async fn get_range(&self, path: &str, range: &str) -> Result<Answer> {
        let mut req = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .header(reqwest::header::RANGE, range);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    pub async fn get(&self, path: &str) -> Result<Answer> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Answer> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Answer> {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer> {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

pub async fn answer(res: reqwest::Response) -> Result<Answer> {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await?.to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        body,
        headers,
        bytes,
    })
}
