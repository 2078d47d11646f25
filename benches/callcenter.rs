//! The inbound call center under load, end to end with real SIP peers.
//!
//! A node (the release binary, embedded store) serves a bench tenant:
//! hotline 5000 runs an IVR flow that queues the caller in skill group
//! `all`, whose agents are all "phones" of one SIPp instance that answers
//! every INVITE at once. Agents register first (SIPp with digest, one
//! account per call from an injection file). Then SIPp customers call at
//! rising rates, each holding 1 s after the answer and hanging up; each
//! call goes IVR → queue → offer → our INVITE to the agent → bridge →
//! call record. A rate passes when fewer than 0.1 % of its calls fail and
//! every call has its record in the store.
//!
//! Also measured: the node's resident memory with the agents registered
//! and idle, against a node with none (memory per idle agent), and under
//! load against idle (memory per bridged call, with the number of live
//! calls taken as rate × call length by Little's law).
//!
//! Run: `cargo bench --bench callcenter` (needs `sipp`; `SB_BENCH_AGENTS`
//! agents, default 2000; `SB_BENCH_RATES`, default `50,100,200,400,800`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_storage::model::{
    Agent, AgentPolicy, Day, Device, Flow, GroupConfig, Hotline, IvrSchedule, IvrSettings,
    Member, NoAgentRule, Node, Overflow, Retention, Schedule, SipAccount, SkillGroup, Strategy,
    Tenant, TenantId, Timestamp,
};
use switchboard_storage::{CallFilter, EmbeddedStore, PageRequest, Store};

const HOLD_MS: u64 = 1000;
const SECONDS_PER_RATE: u64 = 10;

fn port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
        p
    } else {
        port()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The bench tenant: `agents` agents in group `all`, hotline 5000.
fn seed(dir: &Path, agents: usize) {
    let store = EmbeddedStore::open(dir).unwrap();
    rt().block_on(async {
        let store: &dyn Store = &store;
        let t = TenantId::from("bench");
        store
            .create_if_absent(&Tenant {
                tenant: t.clone(),
                name: "bench".into(),
                utc_offset_minutes: 480,
                service_level: Duration::from_secs(20),
                allow_external_transfer: false,
                survey_flow: None,
                retention: Retention::default(),
                enabled: true,
            })
            .await
            .unwrap();
        let mut members = Vec::new();
        for i in 0..agents {
            let id = format!("a{i:05}");
            store
                .create_if_absent(&SipAccount {
                    tenant: t.clone(),
                    id: id.clone(),
                    ha1: switchboard_storage::seed::ha1(&id, "switchboard", "pw"),
                    realm: "switchboard".into(),
                    ha1_sha256: None,
                    enabled: true,
                })
                .await
                .unwrap();
            store
                .create_if_absent(&Agent {
                    tenant: t.clone(),
                    id: id.as_str().into(),
                    name: id.clone(),
                    seat: id.clone(),
                    user: None,
                    device: Device::Sip {
                        account: id.clone(),
                    },
                    policy: AgentPolicy {
                        max_missed: 1000,
                        ..AgentPolicy::default()
                    },
                    telesales: false,
                    enabled: true,
                })
                .await
                .unwrap();
            members.push(Member {
                agent: id.as_str().into(),
                level: 1,
            });
        }
        store
            .create_if_absent(&SkillGroup {
                tenant: t.clone(),
                id: "all".into(),
                name: "all".into(),
                config: GroupConfig {
                    strategy: Strategy::LongestIdle,
                    ring_timeout: Duration::from_secs(10),
                    wrap_up: Duration::ZERO,
                    max_queue_time: Duration::from_secs(30),
                    overflow: Overflow::HangUp,
                    no_agent: NoAgentRule::Queue,
                    announce_every: None,
                },
                members,
                telesales: false,
            })
            .await
            .unwrap();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "queue".to_owned(),
            Node::TransferGroup {
                group: "all".into(),
            },
        );
        let flow = Flow {
            id: "direct".into(),
            start: "queue".into(),
            nodes,
        };
        let v = store
            .save_flow(&t, "direct", "direct", &flow, Timestamp(now_ms()), None)
            .await
            .unwrap();
        store.publish_flow(&t, "direct", v).await.unwrap();
        store
            .create_if_absent(&IvrSchedule {
                tenant: t.clone(),
                id: "always".into(),
                name: "always".into(),
                schedule: Schedule::always("direct"),
            })
            .await
            .unwrap();
        store
            .create_if_absent(&Hotline {
                tenant: t.clone(),
                number: "5000".into(),
                name: "bench".into(),
                schedule: "always".into(),
                settings: IvrSettings::default(),
                enabled: true,
            })
            .await
            .unwrap();
    });
}

fn calls_today(dir: &Path) -> usize {
    let store = EmbeddedStore::open(dir).unwrap();
    rt().block_on(async {
        let store: &dyn Store = &store;
        let t = TenantId::from("bench");
        let day = Day::of(Timestamp(now_ms()), 480);
        let mut n = 0;
        let mut page = PageRequest::first(1000);
        loop {
            let p = store
                .calls_by_day(&t, day, &CallFilter::default(), &page)
                .await
                .unwrap();
            n += p.items.len();
            match p.next {
                Some(c) => page.cursor = Some(c),
                None => return n,
            }
        }
    })
}

struct NodeProc {
    child: Child,
    sip: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &Path, demo: bool) -> NodeProc {
    let sip = format!("127.0.0.1:{}", port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["serve", "--sip", &sip, "--http", "127.0.0.1:0"])
        .args(["--rtp-ports", "20000-32000", "--node-name", "bench"])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn,switchboard=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if demo {
        cmd.arg("--demo");
    }
    let mut child = cmd.spawn().expect("start switchboard");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if l.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the node did not start");
    NodeProc { child, sip }
}

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn sipp(dir: &Path, args: &[String]) -> Command {
    let mut c = Command::new("timeout");
    c.arg("300")
        .arg("sipp")
        .args(args)
        .args(["-nostdin", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/sipp")
        .join(name)
        .display()
        .to_string()
}

/// The last line's successful and failed call counts of a SIPp stat file.
fn stat_counts(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let cols: Vec<&str> = header.split(';').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(ok), Some(fail)) = (idx("SuccessfulCall(C)"), idx("FailedCall(C)")) else {
        return (0, 0);
    };
    let last: Vec<&str> = text.lines().last().unwrap_or("").split(';').collect();
    let get = |i: usize| last.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (get(ok), get(fail))
}

fn main() {
    let agents: usize = std::env::var("SB_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rates: Vec<u64> = std::env::var("SB_BENCH_RATES")
        .unwrap_or_else(|_| "50,100,200,400,800".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let base = std::env::temp_dir().join(format!("sb-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();

    // Memory of a node with no bench agents (the demo tenant only).
    let empty_dir = base.join("empty");
    let empty = start_node(&empty_dir, true);
    std::thread::sleep(Duration::from_secs(3));
    let rss_empty = rss(empty.child.id());
    drop(empty);

    let dir: PathBuf = base.join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    seed(&dir, agents);
    println!("seeded {agents} agents in {:.1} s", t0.elapsed().as_secs_f64());
    let node = start_node(&dir, true);
    let pid = node.child.id();

    // The agents' phones: one SIPp answering every INVITE.
    let agent_port = port();
    let phones = sipp(
        &base,
        &[
            "-sf".into(),
            scenario("agent.xml"),
            "-p".into(),
            agent_port.to_string(),
            "-mp".into(),
            "40000".into(),
        ],
    )
    .spawn()
    .unwrap();
    let csv = base.join("agents.csv");
    let mut rows = String::from("SEQUENTIAL\n");
    for i in 0..agents {
        rows.push_str(&format!("a{i:05};pw;127.0.0.1:{agent_port}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let t0 = Instant::now();
    let reg = sipp(
        &base,
        &[
            node.sip.clone(),
            "-sf".into(),
            scenario("register.xml"),
            "-inf".into(),
            csv.display().to_string(),
            "-m".into(),
            agents.to_string(),
            "-r".into(),
            "500".into(),
            "-p".into(),
            port().to_string(),
        ],
    )
    .status()
    .unwrap();
    assert!(reg.success(), "agents did not all register");
    println!("registered {agents} agents in {:.1} s", t0.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(3));
    let rss_idle = rss(pid);
    println!(
        "memory: node with the demo only {:.1} MiB; with {agents} registered idle agents {:.1} MiB: {:.1} KiB per idle agent",
        rss_empty as f64 / 1048576.0,
        rss_idle as f64 / 1048576.0,
        (rss_idle.saturating_sub(rss_empty)) as f64 / agents as f64 / 1024.0
    );

    let mut total_ok = 0u64;
    let mut best = None;
    println!("| rate (calls/s) | calls | failed | records | peak RSS above idle | per live call |");
    for rate in rates {
        let n = rate * SECONDS_PER_RATE;
        let stat = base.join(format!("stat-{rate}.csv"));
        let mut customers = sipp(
            &base,
            &[
                node.sip.clone(),
                "-sf".into(),
                scenario("customer.xml"),
                "-s".into(),
                "5000".into(),
                "-r".into(),
                rate.to_string(),
                "-m".into(),
                n.to_string(),
                "-d".into(),
                HOLD_MS.to_string(),
                "-l".into(),
                (rate * 20).to_string(),
                "-p".into(),
                port().to_string(),
                "-mp".into(),
                "50000".into(),
                "-trace_stat".into(),
                "-stf".into(),
                stat.display().to_string(),
                "-fd".into(),
                "1".into(),
            ],
        )
        .spawn()
        .unwrap();
        let mut peak = 0u64;
        let deadline = Instant::now() + Duration::from_secs(SECONDS_PER_RATE * 6 + 30);
        loop {
            if let Ok(Some(_)) = customers.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = customers.kill();
                break;
            }
            peak = peak.max(rss(pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = customers.wait();
        let (ok, failed) = stat_counts(&stat);
        total_ok += ok;
        // Records are written within a second of the hang-up.
        std::thread::sleep(Duration::from_millis(1500));
        let records = calls_today(&dir);
        let live = rate as f64 * (HOLD_MS as f64 / 1000.0);
        let above = peak.saturating_sub(rss_idle);
        println!(
            "| {rate} | {n} | {failed} | {records} of {total_ok} answered so far | {:.1} MiB | {:.1} KiB |",
            above as f64 / 1048576.0,
            above as f64 / live / 1024.0
        );
        let passed = ok + failed >= n && (failed as f64) < (n as f64) * 0.001;
        if passed && records as u64 >= total_ok {
            best = Some(rate);
        } else {
            break;
        }
    }
    match best {
        Some(r) => println!("highest rate with < 0.1% failed calls: {r} calls/s"),
        None => println!("no rate passed"),
    }
    drop(node);
    let mut phones = phones;
    let _ = phones.kill();
    let _ = phones.wait();
}
