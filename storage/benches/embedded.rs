//! The embedded store's numbers: batched call-record writes per second,
//! the 24-hour per-hour report of a tenant with 1,000,000 call records,
//! one customer's timeline (last 50 events), and the first pages of the
//! call listings by number, by agent and by day.
//!
//! `cargo bench -p switchboard-storage --bench embedded`
//!
//! The data directory is a fresh one under the system temp dir (on disk,
//! not tmpfs, on the project's machines), removed at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use switchboard_storage::model::{
    AgentId, CallId, CallRecord, Day, Direction, HangupReason, HangupSide, IvrTrace, Leg, LegKind,
    LocalHour, NodeId, NumberLocation, RingAttempt, RingOutcome, Satisfaction, ScopeKind,
    StatsAggregator, StatsScope, TenantId, Ticket, TicketStatus, Timestamp,
};
use switchboard_storage::{CallFilter, EmbeddedStore, PageRequest, Store, TimeRange};

const RECORDS: u64 = 1_000_000;
const RUNS: u64 = 5;
const BATCH: usize = 1_000;
/// Batches in flight at once (as several Call actors' writes would be).
const IN_FLIGHT: usize = 4;
const CUSTOMERS: u64 = 20_000;
const NODES: u64 = 3;
const QUERIES: usize = 1_000;

fn day() -> Day {
    Day(20_788) // 2026-12-01
}

/// A realistic inbound call: IVR, queue, one or two rings, talk; one in
/// ten abandoned.
fn record(tenant: &TenantId, i: u64) -> CallRecord {
    let start = LocalHour {
        day: day(),
        hour: 0,
    }
    .start(480)
    .after(Duration::from_millis(i * 86_400_000 / RECORDS));
    let number = format!("138{:08}", i % CUSTOMERS);
    let agent = format!("{}", 1000 + i % 200);
    let enq = start.after(Duration::from_secs(12));
    let abandoned = i.is_multiple_of(10);
    let ring = enq.after(Duration::from_secs(3 + i % 20));
    let answered = (!abandoned).then(|| ring.after(Duration::from_secs(5)));
    let end = answered.map_or(ring.after(Duration::from_secs(9)), |a| {
        a.after(Duration::from_secs(30 + i % 300))
    });
    CallRecord {
        tenant: tenant.clone(),
        call: CallId(i),
        day: day(),
        direction: Direction::Inbound,
        caller: number.clone(),
        dialed: "4008001234".into(),
        customer_number: number.clone(),
        customer: Some(format!("c{}", i % CUSTOMERS)),
        start,
        end,
        ivr: IvrTrace {
            path: vec!["welcome".into(), "menu".into(), "support".into()],
            keys: "1".into(),
            vars: BTreeMap::new(),
        },
        group: Some(format!("g{}", i % 10)),
        enqueued: Some(enq),
        dequeued: Some(answered.unwrap_or(end)),
        rings: vec![RingAttempt {
            agent: agent.as_str().into(),
            start: ring,
            end: answered.unwrap_or(end),
            outcome: if abandoned {
                RingOutcome::Cancelled
            } else {
                RingOutcome::Answered
            },
        }],
        agent: (!abandoned).then(|| agent.as_str().into()),
        answered,
        talk_end: answered.map(|_| end),
        overflow: None,
        hangup_side: HangupSide::Customer,
        hangup_reason: if abandoned {
            HangupReason::AbandonedRinging
        } else {
            HangupReason::Normal
        },
        voicemail: false,
        satisfaction: match (abandoned, (i % 5) as u8 + 1) {
            (true, _) => Satisfaction::NotOffered,
            (false, score) => Satisfaction::Scored {
                score,
                key: char::from(b'0' + score),
            },
        },
        legs: vec![
            Leg {
                kind: LegKind::Customer,
                party: number,
                start,
                answered: Some(start),
                end,
                sip_call_id: Some(format!("{i:016x}@trunk")),
            },
            Leg {
                kind: LegKind::Agent,
                party: agent,
                start: ring,
                answered,
                end,
                sip_call_id: Some(format!("{i:016x}-a@node")),
            },
        ],
        location: Some(NumberLocation {
            place: "广东省深圳市".into(),
            carrier: Some("中国移动".into()),
        }),
        recording: (!abandoned).then(|| format!("recordings/2026-12-01/{i:016x}.wav")),
        node: NodeId(format!("n{}", i % NODES)),
        outcome: None,
        transfers: Vec::new(),
        holds: Vec::new(),
        callback: None,
    }
}

/// The CPU time this process used so far, in seconds (Linux: user and
/// system time from /proc/self/stat, in clock ticks of 1/100 s).
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Best, median and worst; `higher_is_better` for rates.
fn summary(name: &str, mut samples: Vec<f64>, unit: &str, higher_is_better: bool) {
    samples.sort_by(f64::total_cmp);
    if higher_is_better {
        samples.reverse();
    }
    let best = samples[0];
    let median = samples[samples.len() / 2];
    let worst = samples[samples.len() - 1];
    println!("{name}: best {best:.3} {unit}, median {median:.3} {unit}, worst {worst:.3} {unit}");
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("sb-bench-{}", std::process::id()));
    let result = run(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(dir: &std::path::Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = EmbeddedStore::open(dir)?;
    let s: &dyn Store = &store;
    let tenant = TenantId::from("bench");
    let mut aggregators: Vec<StatsAggregator> = (0..NODES)
        .map(|n| {
            StatsAggregator::new(
                tenant.clone(),
                NodeId(format!("n{n}")),
                480,
                Duration::from_secs(20),
            )
        })
        .collect();

    // 1. Batched writes: RUNS runs of RECORDS / RUNS records each; together
    //    they are the tenant's day of 1,000,000 calls.
    let per_run = RECORDS / RUNS;
    let mut rates = Vec::new();
    for run in 0..RUNS {
        let records: Vec<CallRecord> = (run * per_run..(run + 1) * per_run)
            .map(|i| record(&tenant, i))
            .collect();
        for r in &records {
            aggregators[(r.call.0 % NODES) as usize].add_call(r);
        }
        let t0 = Instant::now();
        let cpu0 = process_cpu();
        rt.block_on(async {
            let mut chunks = records.chunks(BATCH);
            loop {
                let mut writes = Vec::new();
                for _ in 0..IN_FLIGHT {
                    if let Some(c) = chunks.next() {
                        writes.push(tokio::spawn({
                            let store = store.clone();
                            let c = c.to_vec();
                            async move { store.put_calls(&c).await }
                        }));
                    }
                }
                if writes.is_empty() {
                    break;
                }
                for w in writes {
                    w.await??;
                }
            }
            anyhow::Ok(())
        })?;
        let rate = per_run as f64 / t0.elapsed().as_secs_f64();
        let cpu = process_cpu()
            .zip(cpu0)
            .map(|(b, a)| (b - a) / per_run as f64 * 1e6);
        match cpu {
            Some(us) => {
                println!("write run {run}: {rate:.0} call records/s, {us:.1} µs of CPU per record")
            }
            None => println!("write run {run}: {rate:.0} call records/s"),
        }
        rates.push(rate);
    }
    summary("batched call-record writes", rates, "records/s", true);

    // Each node writes its partials (what its periodic flush does).
    rt.block_on(async {
        for a in &mut aggregators {
            s.put_stats(&a.take_dirty()).await?;
        }
        anyhow::Ok(())
    })?;

    // 2. The 24-hour per-hour report: the tenant's rows, and the groups'.
    let mut tenant_ms = Vec::new();
    let mut groups_ms = Vec::new();
    rt.block_on(async {
        let rows = s.hourly_stats(&tenant, day(), &StatsScope::Tenant).await?;
        let offered: u64 = rows.iter().map(|r| r.counters.offered).sum();
        assert_eq!(rows.len(), 24);
        assert_eq!(offered, RECORDS, "the report does not add up");
        for _ in 0..QUERIES {
            let t0 = Instant::now();
            let rows = s.hourly_stats(&tenant, day(), &StatsScope::Tenant).await?;
            tenant_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(rows.len(), 24);
            let t0 = Instant::now();
            let rows = s
                .hourly_stats_of_kind(&tenant, day(), ScopeKind::Group)
                .await?;
            groups_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(rows.len(), 24 * 10);
        }
        anyhow::Ok(())
    })?;
    summary(
        "24-hour report, tenant (24 rows from 72 partials)",
        tenant_ms,
        "ms",
        false,
    );
    summary(
        "24-hour report, 10 groups (240 rows from 720 partials)",
        groups_ms,
        "ms",
        false,
    );

    // 3. One customer's timeline: 50 calls, plus tickets.
    let customer = "c4242";
    rt.block_on(async {
        for k in 0..20u64 {
            let at = Timestamp(
                LocalHour {
                    day: day(),
                    hour: 12,
                }
                .start(480)
                .0 + k * 60_000,
            );
            s.put_ticket(&Ticket {
                tenant: tenant.clone(),
                id: format!("tk{k}"),
                customer: Some(customer.into()),
                call: None,
                title: "退款".into(),
                description: String::new(),
                status: TicketStatus::Open,
                priority: 1,
                assignee: None,
                fields: Default::default(),
                created: at,
                updated: at,
            })
            .await?;
        }
        anyhow::Ok(())
    })?;
    let mut timeline_ms = Vec::new();
    rt.block_on(async {
        for _ in 0..QUERIES {
            let t0 = Instant::now();
            let events = s.timeline(&tenant, customer, None, 50).await?;
            timeline_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(events.len(), 50);
        }
        anyhow::Ok(())
    })?;
    summary(
        "customer timeline, last 50 of 70 events",
        timeline_ms,
        "ms",
        false,
    );
    // 4. The call listings' first pages: one customer number's 50 calls,
    //    one agent's latest 50 (of 4,500), the day's latest 50.
    let number = format!("138{:08}", 4242);
    let agent = AgentId::from("1042");
    let mut number_ms = Vec::new();
    let mut agent_ms = Vec::new();
    let mut day_ms = Vec::new();
    rt.block_on(async {
        let first = PageRequest::first(50);
        for _ in 0..QUERIES {
            let t0 = Instant::now();
            let page = s
                .calls_by_number(&tenant, &number, TimeRange::default(), &first)
                .await?;
            number_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(page.items.len(), 50);
            let t0 = Instant::now();
            let page = s
                .calls_by_agent(&tenant, &agent, TimeRange::default(), &first)
                .await?;
            agent_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(page.items.len(), 50);
            let t0 = Instant::now();
            let page = s
                .calls_by_day(&tenant, day(), &CallFilter::default(), &first)
                .await?;
            day_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(page.items.len(), 50);
        }
        anyhow::Ok(())
    })?;
    summary(
        "calls by number, first page (50 of 50)",
        number_ms,
        "ms",
        false,
    );
    summary(
        "calls by agent, first page (50 of 4,500)",
        agent_ms,
        "ms",
        false,
    );
    summary(
        "calls by day, first page (50 of 1,000,000)",
        day_ms,
        "ms",
        false,
    );

    let size = std::fs::metadata(store.path())?.len();
    let wal =
        std::fs::metadata(dir.join(format!("{}-wal", EmbeddedStore::FILE))).map_or(0, |m| m.len());
    println!(
        "database: {} MB, WAL file: {} MB",
        size / 1_000_000,
        wal / 1_000_000
    );
    Ok(())
}
