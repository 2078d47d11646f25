//! The embedded backend: the shared suite, plus what only it promises:
//! several processes on one data directory, and acknowledged writes that
//! survive `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::ops::Deref;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use suite::{all_pages, at, call, day0, ids, sorted_desc, TempDir};
use switchboard_storage::model::{
    Agent, AgentId, AgentPolicy, CallId, CallRecord, ChangeReason, Day, Device, NodeId,
    Satisfaction, Status, StatusChange, StatusPeriod, TenantId, TimelineKind, Timestamp,
};
use switchboard_storage::{EmbeddedStore, Expect, Store, TimeRange};

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

// --- the calls' listings --------------------------------------------------------

/// Calls over three days and many hours: three numbers, two customers
/// (and calls of no known customer), two agents (and abandoned calls).
fn spread_calls(t: &TenantId) -> Vec<CallRecord> {
    (0..90u64)
        .map(|i| {
            let day = Day(day0().0 + (i / 30) as i32);
            let start = at(day, (i % 30) * 7 / 10, (i * 13) % 60, i % 7);
            let agent = match i % 5 {
                0 => None,
                1 | 3 => Some("a1"),
                _ => Some("a2"),
            };
            let number = format!("1380000{:04}", i % 3);
            let mut r = call(t, 100 + i, start, Some("g"), agent, &number);
            r.customer = (i % 3 != 2).then(|| format!("c{}", i % 3));
            r
        })
        .collect()
}

/// Every listing and timeline of `calls` as the store gives it, against
/// what the records say.
async fn check_listings(s: &dyn Store, t: &TenantId, calls: &[CallRecord]) {
    let numbers: BTreeSet<&str> = calls.iter().map(|c| c.customer_number.as_str()).collect();
    for n in numbers {
        let want = sorted_desc(
            calls
                .iter()
                .filter(|c| c.customer_number == n)
                .cloned()
                .collect(),
        );
        for limit in [1, 4, 1000] {
            let got = all_pages(limit, |p| async move {
                s.calls_by_number(t, n, TimeRange::default(), &p).await
            })
            .await
            .unwrap();
            assert_eq!(ids(&got), ids(&want), "number {n}, limit {limit}");
            assert!(got == want, "number {n}: the records differ");
        }
        let range = TimeRange {
            from: Some(at(day0(), 12, 0, 0)),
            to: Some(at(Day(day0().0 + 1), 15, 0, 0)),
        };
        let want: Vec<CallRecord> = want
            .into_iter()
            .filter(|c| range.contains(c.start))
            .collect();
        let got = all_pages(
            3,
            |p| async move { s.calls_by_number(t, n, range, &p).await },
        )
        .await
        .unwrap();
        assert_eq!(ids(&got), ids(&want), "number {n} in {range:?}");
    }
    for a in ["a1", "a2"] {
        let want = sorted_desc(
            calls
                .iter()
                .filter(|c| c.agent.as_ref().map(|x| x.0.as_str()) == Some(a))
                .cloned()
                .collect(),
        );
        let got = all_pages(7, |p| async move {
            s.calls_by_agent(t, &AgentId::from(a), TimeRange::default(), &p)
                .await
        })
        .await
        .unwrap();
        assert_eq!(ids(&got), ids(&want), "agent {a}");
    }
    let customers: BTreeSet<&str> = calls.iter().filter_map(|c| c.customer.as_deref()).collect();
    for cu in customers {
        let mut want: Vec<(Timestamp, String)> = calls
            .iter()
            .filter(|c| c.customer.as_deref() == Some(cu))
            .map(|c| (c.start, c.call.to_string()))
            .collect();
        want.sort_by(|a, b| (std::cmp::Reverse(a.0), &a.1).cmp(&(std::cmp::Reverse(b.0), &b.1)));
        for (limit, before) in [
            (50, None),
            (7, None),
            (1000, Some(at(Day(day0().0 + 1), 10, 0, 0))),
        ] {
            let got: Vec<(Timestamp, String)> = s
                .timeline(t, cu, before, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|e| {
                    assert_eq!(e.kind, TimelineKind::Call);
                    (e.at, e.id)
                })
                .collect();
            let want: Vec<(Timestamp, String)> = want
                .iter()
                .filter(|(at, _)| before.is_none_or(|b| *at < b))
                .take(limit as usize)
                .cloned()
                .collect();
            assert_eq!(
                got, want,
                "timeline of {cu}, limit {limit}, before {before:?}"
            );
        }
    }
    assert!(s.timeline(t, "c2", None, 50).await.unwrap().is_empty());
}

/// The version-1 schema kept the listings in indexes on `calls`; version
/// 2 moved them to key rows. A directory written by a version-1 build
/// opens, its calls are listed as before, and new writes land in both.
#[test]
fn a_version_1_directory_is_migrated() {
    let dir = TempDir::new("sb-v1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TenantId::from("old");
    let mut calls = spread_calls(&t);
    let path = EmbeddedStore::create_at_schema_version(&dir.0, 1).unwrap();
    {
        // What the version-1 build wrote for each call.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for r in &calls {
            conn.execute(
                "INSERT OR REPLACE INTO calls (tenant, call, day, start, agent, grp, number, \
                 customer, direction, answered, hangup_side, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                rusqlite::params![
                    r.tenant.0,
                    i64::from_ne_bytes(r.call.0.to_ne_bytes()),
                    r.day.0,
                    i64::try_from(r.start.0).unwrap(),
                    r.agent.as_ref().map(|a| a.0.clone()),
                    r.group,
                    r.customer_number,
                    r.customer,
                    r.direction.as_str(),
                    r.answered.is_some(),
                    r.hangup_side.as_str(),
                    serde_json::to_string(r).unwrap(),
                ],
            )
            .unwrap();
        }
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }

    let store = EmbeddedStore::open(&dir.0).unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, i64::from(EmbeddedStore::schema_version()));
        let old_indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('calls_by_number', 'calls_by_customer')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_indexes, 0);
    }
    let s: &dyn Store = &store;
    rt.block_on(check_listings(s, &t, &calls));

    // New calls, and an old one written again with other keys.
    let mut more: Vec<CallRecord> = spread_calls(&t)
        .into_iter()
        .map(|mut c| {
            c.call = CallId(c.call.0 + 1000);
            c.start = c.start.after(Duration::from_secs(1800));
            c
        })
        .collect();
    let moved = &mut calls[4];
    moved.customer_number = "13900000009".into();
    moved.customer = Some("c9".into());
    moved.agent = Some("a2".into());
    moved.start = at(Day(day0().0 + 3), 1, 0, 0);
    more.push(moved.clone());
    rt.block_on(s.put_calls(&more)).unwrap();
    calls.retain(|c| c.call != more[more.len() - 1].call);
    calls.extend(more);
    rt.block_on(check_listings(s, &t, &calls));
}

/// Call records written before survey outcomes existed kept a bare score
/// (and another, unused, in the IVR trace): they read as scored, or as no
/// survey when the score was null.
#[test]
fn calls_written_with_a_bare_score_still_read() {
    let dir = TempDir::new("sb-score");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = EmbeddedStore::open(&dir.0).unwrap();
    let t = TenantId::from("old");
    let calls: Vec<CallRecord> = (1..=2)
        .map(|i| call(&t, i, at(day0(), 9, i, 0), Some("g"), Some("a"), "1"))
        .collect();
    rt.block_on(store.put_calls(&calls)).unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    for (r, score) in calls
        .iter()
        .zip([serde_json::json!(4), serde_json::Value::Null])
    {
        let mut old = serde_json::to_value(r).unwrap();
        old["satisfaction"] = score.clone();
        old["ivr"]["satisfaction"] = score;
        conn.execute(
            "UPDATE calls SET body = ?1 WHERE tenant = ?2 AND call = ?3",
            rusqlite::params![
                old.to_string(),
                r.tenant.0,
                i64::from_ne_bytes(r.call.0.to_ne_bytes())
            ],
        )
        .unwrap();
    }
    let s: &dyn Store = &store;
    let read = |id| {
        rt.block_on(s.get_call(&t, CallId(id)))
            .unwrap()
            .map(|r| r.satisfaction)
    };
    assert_eq!(read(1), Some(Satisfaction::Scored { score: 4, key: '4' }));
    assert_eq!(read(2), Some(Satisfaction::NotOffered));
}

/// Writing a call again with another number, customer, agent and start
/// takes it out of its old listings and timeline.
#[test]
fn a_rewritten_call_leaves_its_old_listings() {
    let dir = TempDir::new("sb-rewrite");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = EmbeddedStore::open(&dir.0).unwrap();
    let s: &dyn Store = &store;
    let t = TenantId::from("acme");
    let mut calls = spread_calls(&t);
    rt.block_on(s.put_calls(&calls)).unwrap();
    rt.block_on(check_listings(s, &t, &calls));
    for (k, i) in [3usize, 40, 77].into_iter().enumerate() {
        let c = &mut calls[i];
        c.customer_number = format!("1380000{:04}", (i + 1) % 3);
        c.customer = (k != 1).then(|| format!("c{}", k % 2));
        c.agent = (k != 2).then(|| AgentId::from(["a2", "a1"][k % 2]));
        c.start = at(Day(day0().0 + 2), 20 + k as u64, 59, 59);
        c.day = Day::of(c.start, 480);
    }
    // In one batch with a duplicate, and again on its own.
    let batch = vec![
        calls[3].clone(),
        calls[40].clone(),
        calls[3].clone(),
        calls[77].clone(),
    ];
    rt.block_on(s.put_calls(&batch)).unwrap();
    rt.block_on(check_listings(s, &t, &calls));
    rt.block_on(s.put_calls(&calls[40..41])).unwrap();
    rt.block_on(check_listings(s, &t, &calls));
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
