//! The embedded backend: the shared suite, plus what only it promises:
//! several processes on one data directory, and acknowledged writes that
//! survive `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

use std::io::{BufRead, BufReader, Write};
use std::ops::Deref;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use suite::{at, call, day0, TempDir};
use switchboard_storage::model::{
    Agent, AgentPolicy, CallId, ChangeReason, Day, Device, NodeId, Status, StatusChange,
    StatusPeriod, TenantId,
};
use switchboard_storage::{EmbeddedStore, Expect, Store};

/// A store in a fresh directory, removed afterwards.
struct Fixture {
    store: EmbeddedStore,
    _dir: TempDir,
}

impl Deref for Fixture {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &self.store
    }
}

async fn open() -> Option<Fixture> {
    let dir = TempDir::new("sb-embedded");
    let store = EmbeddedStore::open(&dir.0).unwrap();
    Some(Fixture { store, _dir: dir })
}

suite_tests!(open);

#[test]
fn reopening_keeps_data_and_schema() {
    let dir = TempDir::new("sb-reopen");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TenantId::from("acme");
    {
        let s = EmbeddedStore::open(&dir.0).unwrap();
        let r = call(&t, 1, at(day0(), 9, 0, 0), Some("g"), Some("a"), "1");
        rt.block_on(s.put_calls(std::slice::from_ref(&r))).unwrap();
    }
    let s = EmbeddedStore::open(&dir.0).unwrap();
    assert!(rt.block_on(s.get_call(&t, CallId(1))).unwrap().is_some());
    let conn = rusqlite_user_version(s.path());
    assert_eq!(conn, i64::from(EmbeddedStore::schema_version()));
}

/// The schema version as SQLite keeps it (read with the sqlite3 format's
/// header: offset 60, big-endian).
fn rusqlite_user_version(path: &std::path::Path) -> i64 {
    let bytes = std::fs::read(path).unwrap();
    i64::from(u32::from_be_bytes(bytes[60..64].try_into().unwrap()))
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new("sb-newer");
    drop(EmbeddedStore::open(&dir.0).unwrap());
    // Pretend a newer build migrated the file: bump user_version.
    let path = dir.0.join(EmbeddedStore::FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    let _ = std::fs::remove_file(dir.0.join("switchboard.db-wal"));
    let e = EmbeddedStore::open(&dir.0).unwrap_err();
    assert_eq!(e.kind(), switchboard_storage::ErrorKind::Invalid, "{e}");
}

// --- child processes ---------------------------------------------------------

const CHILD_DIR: &str = "SB_STORAGE_CHILD_DIR";
const CHILD_NAME: &str = "SB_STORAGE_CHILD_NAME";
const CHILD_COUNT: &str = "SB_STORAGE_CHILD_COUNT";

fn tenant() -> TenantId {
    TenantId::from("shared")
}

fn status(agent: &str, i: u64) -> StatusChange {
    let start = at(day0(), 8, 0, 0).after(Duration::from_secs(i));
    StatusChange {
        tenant: tenant(),
        agent: agent.into(),
        day: Day::of(start, 480),
        period: StatusPeriod {
            status: Status::Ready,
            start,
            end: start.after(Duration::from_millis(500)),
            reason: ChangeReason::SignIn,
        },
        node: NodeId::from(agent),
    }
}

/// The child's work, run when the test binary is re-executed by a parent
/// test below (ignored otherwise): eight tasks write call records and
/// status changes one at a time, printing each acknowledged one, and bump
/// a shared counter document with compare-and-set.
#[test]
#[ignore = "run as a child process by the tests below"]
fn child_writer() {
    let (Ok(dir), Ok(name), Ok(count)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_NAME),
        std::env::var(CHILD_COUNT),
    ) else {
        panic!("child_writer runs only as a child process");
    };
    let count: u64 = count.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir).unwrap());
    let base: u64 = if name == "b" { 1 << 40 } else { 0 };
    rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..8u64 {
            let store = store.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = task;
                while i < count {
                    let id = base + i;
                    let r = call(
                        &tenant(),
                        id,
                        at(day0(), 9, 0, 0),
                        Some("g"),
                        Some(&name),
                        "1",
                    );
                    store.put_calls(std::slice::from_ref(&r)).await.unwrap();
                    say(&format!("call {id}"));
                    store.put_status_changes(&[status(&name, i)]).await.unwrap();
                    say(&format!("status {i}"));
                    if i % 8 == 0 {
                        store
                            .update::<Agent, _>(&tenant(), "counter", |a| {
                                a.policy.max_missed += 1;
                                Ok(true)
                            })
                            .await
                            .unwrap();
                        say(&format!("bump {i}"));
                    }
                    i += 8;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    say("done");
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn spawn_child(dir: &std::path::Path, name: &str, count: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_NAME, name)
        .env(CHILD_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn counter(tenant: &TenantId) -> Agent {
    Agent {
        tenant: tenant.clone(),
        id: "counter".into(),
        name: "counter".into(),
        seat: String::new(),
        user: None,
        device: Device::Sip {
            account: "x".into(),
        },
        policy: AgentPolicy {
            max_missed: 0,
            ..AgentPolicy::default()
        },
        telesales: false,
        enabled: true,
    }
}

#[test]
fn two_processes_write_one_directory_at_once() {
    let dir = TempDir::new("sb-two");
    let rt = tokio::runtime::Runtime::new().unwrap();
    {
        let s = EmbeddedStore::open(&dir.0).unwrap();
        let s: &dyn Store = &s;
        rt.block_on(s.put(&counter(&tenant()), Expect::Absent))
            .unwrap();
    }
    let count = 400;
    let mut a = spawn_child(&dir.0, "a", count);
    let mut b = spawn_child(&dir.0, "b", count);
    // Both run concurrently: wait for both to end, bounded.
    let deadline = Instant::now() + Duration::from_secs(120);
    for child in [&mut a, &mut b] {
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "a child failed: {st}");
                break;
            }
            assert!(Instant::now() < deadline, "children did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out_a = std::io::read_to_string(a.stdout.take().unwrap()).unwrap();
    let out_b = std::io::read_to_string(b.stdout.take().unwrap()).unwrap();
    assert!(out_a.lines().any(|l| l == "done") && out_b.lines().any(|l| l == "done"));

    let s = EmbeddedStore::open(&dir.0).unwrap();
    let s: &dyn Store = &s;
    for (base, agent) in [(0u64, "a"), (1u64 << 40, "b")] {
        for i in 0..count {
            assert!(
                rt.block_on(s.get_call(&tenant(), CallId(base + i)))
                    .unwrap()
                    .is_some(),
                "call {i} of {agent} missing"
            );
        }
        let log = rt
            .block_on(s.status_log(&tenant(), &agent.into(), day0()))
            .unwrap();
        assert_eq!(log.len() as u64, count);
    }
    // Every compare-and-set of both processes landed exactly once.
    let c = rt
        .block_on(s.get::<Agent>(&tenant(), "counter"))
        .unwrap()
        .unwrap();
    assert_eq!(u64::from(c.record.policy.max_missed), 2 * count / 8);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = TempDir::new("sb-kill");
    {
        let s = EmbeddedStore::open(&dir.0).unwrap();
        let s: &dyn Store = &s;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(s.put(&counter(&tenant()), Expect::Absent))
            .unwrap();
    }
    // Far more than it gets to write before the kill: bounded anyway.
    let mut child = spawn_child(&dir.0, "a", 1_000_000);
    let out = child.stdout.take().unwrap();
    let mut calls = Vec::new();
    let mut statuses = Vec::new();
    let mut bumps = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("call ") {
            calls.push(id.parse::<u64>().unwrap());
        } else if let Some(i) = line.strip_prefix("status ") {
            statuses.push(i.parse::<u64>().unwrap());
        } else if line.starts_with("bump ") {
            bumps += 1;
        }
        if calls.len() >= 1500 || Instant::now() > deadline {
            break;
        }
    }
    // SIGKILL, mid-stream: the child has writes in flight.
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(
        calls.len() >= 1500,
        "the child acknowledged only {}",
        calls.len()
    );

    let s = EmbeddedStore::open(&dir.0).unwrap();
    let s: &dyn Store = &s;
    let rt = tokio::runtime::Runtime::new().unwrap();
    for id in &calls {
        assert!(
            rt.block_on(s.get_call(&tenant(), CallId(*id)))
                .unwrap()
                .is_some(),
            "acknowledged call {id} lost"
        );
    }
    let log = rt
        .block_on(s.status_log(&tenant(), &"a".into(), day0()))
        .unwrap();
    let starts: std::collections::HashSet<u64> = log.iter().map(|c| c.period.start.0).collect();
    for i in &statuses {
        assert!(
            starts.contains(&status("a", *i).period.start.0),
            "acknowledged status change {i} lost"
        );
    }
    let c = rt
        .block_on(s.get::<Agent>(&tenant(), "counter"))
        .unwrap()
        .unwrap();
    assert!(
        c.record.policy.max_missed >= bumps,
        "acknowledged bumps lost"
    );
}
