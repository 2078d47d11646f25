//! What a node wrote to its store, read the way an operator's tools would:
//! the embedded store opened on the node's data directory (several
//! processes may share it).

use std::path::Path;
use std::time::{Duration, Instant};
use switchboard_storage::model::{CallRecord, Day, StatusChange, TenantId, Timestamp};
use switchboard_storage::{CallFilter, EmbeddedStore, PageRequest, Store};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn today(offset_minutes: i32) -> Day {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Day::of(Timestamp(ms), offset_minutes)
}

/// The demo tenant's call records of today (local time, UTC+8), newest
/// first.
pub fn demo_calls(data_dir: &Path) -> Vec<CallRecord> {
    let store = EmbeddedStore::open(data_dir).expect("open the node's store");
    let tenant = TenantId::from("demo");
    runtime().block_on(async {
        let store: &dyn Store = &store;
        let mut out = Vec::new();
        let mut page = PageRequest::first(500);
        loop {
            let p = store
                .calls_by_day(&tenant, today(480), &CallFilter::default(), &page)
                .await
                .expect("calls by day");
            out.extend(p.items);
            match p.next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        out
    })
}

/// Waits (bounded) until the demo tenant has `n` call records today.
pub fn wait_demo_calls(data_dir: &Path, n: usize, within: Duration) -> Vec<CallRecord> {
    let deadline = Instant::now() + within;
    loop {
        let calls = demo_calls(data_dir);
        if calls.len() >= n || Instant::now() > deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An agent's status log of today.
pub fn status_log(data_dir: &Path, agent: &str) -> Vec<StatusChange> {
    let store = EmbeddedStore::open(data_dir).expect("open the node's store");
    let tenant = TenantId::from("demo");
    runtime().block_on(async {
        let store: &dyn Store = &store;
        store
            .status_log(&tenant, &agent.into(), today(480))
            .await
            .expect("status log")
    })
}

/// Seeds the demo tenant into `data_dir` as `--demo` would, then lets the
/// test change it through the store before a node starts on it.
pub fn seed_demo_then<F>(data_dir: &Path, change: F)
where
    F: for<'a> FnOnce(
        &'a dyn Store,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>,
{
    let store = EmbeddedStore::open(data_dir).expect("open store");
    runtime().block_on(async {
        let store: &dyn Store = &store;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        switchboard_storage::seed::seed_demo(store, "switchboard", Timestamp(ms))
            .await
            .expect("seed");
        change(store).await;
    });
}

/// Changes the demo skill group `id` with `f`.
pub async fn change_group(
    store: &dyn Store,
    id: &str,
    f: impl Fn(&mut switchboard_storage::model::SkillGroup) + Sync,
) {
    store
        .update::<switchboard_storage::model::SkillGroup, _>(&TenantId::from("demo"), id, |g| {
            f(g);
            Ok(true)
        })
        .await
        .expect("update group");
}

/// Adds an approved TTS prompt to the demo tenant.
pub async fn add_prompt(store: &dyn Store, id: &str, text: &str) {
    use switchboard_storage::model::{Prompt, PromptSource, Review, ReviewStatus};
    store
        .put(
            &Prompt {
                tenant: TenantId::from("demo"),
                id: id.into(),
                name: id.into(),
                source: PromptSource::Tts {
                    text: text.into(),
                    voice: "en-us".into(),
                },
                review: Review {
                    status: ReviewStatus::Approved,
                    reviewer: Some("test".into()),
                    reason: None,
                    at: None,
                },
                created: Timestamp(0),
            },
            switchboard_storage::Expect::Any,
        )
        .await
        .expect("put prompt");
}

/// Saves `flow` as a new version and publishes it.
pub async fn publish_flow(store: &dyn Store, flow: switchboard_storage::model::Flow) {
    let tenant = TenantId::from("demo");
    let id = flow.id.clone();
    let v = store
        .save_flow(&tenant, &id, &id, &flow, Timestamp(0), Some("test"))
        .await
        .expect("save flow");
    store.publish_flow(&tenant, &id, v).await.expect("publish");
}

/// Replaces the demo hotline's schedule.
pub async fn set_schedule(store: &dyn Store, schedule: switchboard_storage::model::Schedule) {
    store
        .update::<switchboard_storage::model::IvrSchedule, _>(
            &TenantId::from("demo"),
            "always",
            |s| {
                s.schedule = schedule.clone();
                Ok(true)
            },
        )
        .await
        .expect("update schedule");
}

/// Today's counters of one scope of the demo tenant, summed over hours
/// and nodes; waits (bounded) until `ready` says they are complete.
pub fn wait_demo_counters(
    data_dir: &Path,
    scope: switchboard_storage::model::StatsScope,
    within: Duration,
    ready: impl Fn(&switchboard_storage::model::Counters) -> bool,
) -> switchboard_storage::model::Counters {
    let deadline = Instant::now() + within;
    let tenant = TenantId::from("demo");
    loop {
        let store = EmbeddedStore::open(data_dir).expect("open the node's store");
        let total = runtime().block_on(async {
            let store: &dyn Store = &store;
            let rows = store
                .hourly_stats(&tenant, today(480), &scope)
                .await
                .expect("hourly stats");
            let mut c = switchboard_storage::model::Counters::default();
            for r in rows {
                c.add(&r.counters);
            }
            c
        });
        if ready(&total) || Instant::now() > deadline {
            return total;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Takes the demo tenant's lease on `key` from whoever holds it, for
/// `holder`, for `ttl` (what a node on the other side of a partition
/// would do once the lease lapsed). The holder it had.
pub fn steal_demo_lease(data_dir: &Path, key: &str, holder: &str, ttl: Duration) -> String {
    use switchboard_storage::model::NodeId;
    let store = EmbeddedStore::open(data_dir).expect("open the node's store");
    let tenant = TenantId::from("demo");
    runtime().block_on(async {
        let store: &dyn Store = &store;
        let held = store
            .get_lease(&tenant, key)
            .await
            .expect("read the lease")
            .expect("a lease");
        store.release_lease(&held).await.expect("release it");
        let now = Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        );
        store
            .acquire_lease(&tenant, key, &NodeId(holder.to_string()), ttl, now)
            .await
            .expect("take it");
        held.holder.0
    })
}

/// The calls in progress `node` wrote to the store in `data_dir`.
pub fn open_calls(data_dir: &Path, node: &str) -> Vec<CallRecord> {
    use switchboard_storage::model::NodeId;
    let store = EmbeddedStore::open(data_dir).expect("open the node's store");
    runtime().block_on(async {
        let store: &dyn Store = &store;
        store
            .open_calls(&NodeId::from(node))
            .await
            .expect("open calls")
    })
}
