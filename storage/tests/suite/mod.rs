//! The trait test suite: the same functions run against every backend.
//! Each test works in tenants of its own (fresh ids), so backends that
//! keep data between runs (a ScyllaDB keyspace) need no cleanup.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use anyhow::{ensure, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_storage::model::{
    Agent, AgentId, AgentPolicy, CallId, CallRecord, ChangeReason, ConfigKind, ContactPlan,
    ContactPlanStatus, Counters, Customer, Day, Device, Direction, FieldValue, Flow, HangupReason,
    HangupSide, Hotline, IvrFlow, IvrSettings, IvrTrace, Leg, LegKind, NodeId, Prompt,
    PromptSource, Review, ReviewStatus, RingAttempt, RingOutcome, Satisfaction, ScopeKind,
    ServiceSummary, StatsPartial, StatsScope, Status, StatusChange, StatusPeriod, Survey,
    SurveyLevel, Tenant, TenantId, Ticket, TicketStatus, TimelineKind, Timestamp,
};
use switchboard_storage::{
    CallFilter, ErrorKind, Expect, PageRequest, StatsFilter, Store, TicketFilter, TimeRange,
};

/// Generates one test per suite function for a backend: `$open` is an
/// async fn returning `Option<store>` (`None`: the backend is not
/// configured and the test says it was skipped).
#[macro_export]
macro_rules! suite_tests {
    ($open:path) => {
        $crate::suite_tests!($open;
            config_crud, config_update_retries, tenants_are_listed, hotlines_are_global,
            flows_are_versioned_and_published, prompts_are_reviewed, calls_by_day_page_and_filter,
            calls_by_agent_and_number, calls_rewritten_are_replaced, open_calls_until_their_record,
            tickets_listed_last_updated_first, customers_listed_last_updated_first,
            survey_outcomes_and_levels_are_kept, status_log_by_day,
            stats_partials_replace_and_sum, customers_and_numbers, customer_timeline,
            contact_plans_by_agent, leases_fence_with_epochs, demo_seed_is_idempotent,
            bad_requests_are_invalid,
        );
    };
    ($open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(store) = $open().await else { return };
                suite::$name(&*store).await.unwrap();
            }
        )*
    };
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// An id no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn tenant() -> TenantId {
    TenantId(unique("t"))
}

/// 2026-12-01, a day in China (UTC+8).
pub fn day0() -> Day {
    Day(20_788)
}

pub fn at(day: Day, hour: u64, minute: u64, sec: u64) -> Timestamp {
    let base = switchboard_storage::model::LocalHour { day, hour: 0 }.start(480);
    Timestamp(base.0 + ((hour * 60 + minute) * 60 + sec) * 1000)
}

fn agent(tenant: &TenantId, id: &str) -> Agent {
    Agent {
        tenant: tenant.clone(),
        id: id.into(),
        name: format!("Agent {id}"),
        seat: id.into(),
        user: None,
        device: Device::Mobile {
            number: "13800138000".into(),
        },
        policy: AgentPolicy {
            selectable_custom: vec!["meeting".into()],
            custom: vec!["meeting".into(), "training".into()],
            max_missed: 3,
            missed_status: Status::Custom {
                id: "training".into(),
            },
        },
        telesales: false,
        enabled: true,
    }
}

/// A call of `tenant` starting at `start`: answered by `agent` after a
/// queue wait of `wait` seconds in `group`, or abandoned in the queue.
pub fn call(
    tenant: &TenantId,
    id: u64,
    start: Timestamp,
    group: Option<&str>,
    agent: Option<&str>,
    number: &str,
) -> CallRecord {
    let enq = start.after(Duration::from_secs(10));
    let (answered, rings, reason, side) = match agent {
        Some(a) => {
            let ring_start = enq.after(Duration::from_secs(5));
            let ans = ring_start.after(Duration::from_secs(4));
            (
                Some(ans),
                vec![RingAttempt {
                    agent: a.into(),
                    start: ring_start,
                    end: ans,
                    outcome: RingOutcome::Answered,
                }],
                HangupReason::Normal,
                HangupSide::Customer,
            )
        }
        None => (
            None,
            Vec::new(),
            HangupReason::AbandonedInQueue,
            HangupSide::Customer,
        ),
    };
    let end = answered.map_or(enq.after(Duration::from_secs(30)), |a| {
        a.after(Duration::from_secs(60))
    });
    CallRecord {
        tenant: tenant.clone(),
        call: CallId(id),
        day: Day::of(start, 480),
        direction: Direction::Inbound,
        caller: number.into(),
        dialed: "4000".into(),
        customer_number: number.into(),
        customer: None,
        start,
        end,
        ivr: IvrTrace {
            path: vec!["welcome".into(), "menu".into()],
            keys: "1".into(),
            vars: BTreeMap::new(),
        },
        group: group.map(str::to_owned),
        enqueued: group.map(|_| enq),
        dequeued: group.map(|_| answered.unwrap_or(end)),
        rings,
        agent: agent.map(AgentId::from),
        answered,
        talk_end: answered.map(|_| end),
        overflow: None,
        hangup_side: side,
        hangup_reason: reason,
        voicemail: false,
        satisfaction: match agent {
            Some(_) => Satisfaction::Scored { score: 5, key: '1' },
            None => Satisfaction::NotOffered,
        },
        legs: vec![Leg {
            kind: LegKind::Customer,
            party: number.into(),
            start,
            answered: Some(start),
            end,
            sip_call_id: Some(format!("{id}@test")),
        }],
        location: Some(switchboard_storage::model::NumberLocation {
            place: "广东省深圳市".into(),
            carrier: Some("中国移动".into()),
        }),
        recording: agent.map(|_| format!("rec/{id}.wav")),
        node: NodeId::from("n1"),
        outcome: None,
        transfers: Vec::new(),
        holds: Vec::new(),
        callback: None,
    }
}

pub fn sorted_desc(mut v: Vec<CallRecord>) -> Vec<CallRecord> {
    v.sort_by_key(|r| std::cmp::Reverse((r.start, r.call.0.cast_signed())));
    v
}

pub async fn all_pages<F, Fut>(limit: u32, mut fetch: F) -> Result<Vec<CallRecord>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<
        Output = switchboard_storage::Result<switchboard_storage::Page<CallRecord>>,
    >,
{
    let mut out = Vec::new();
    let mut page = PageRequest::first(limit);
    for _ in 0..10_000 {
        let p = fetch(page.clone()).await?;
        ensure!(p.items.len() <= limit as usize, "page over its limit");
        out.extend(p.items);
        match p.next {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
    anyhow::bail!("paging did not end")
}

pub fn ids(v: &[CallRecord]) -> Vec<u64> {
    v.iter().map(|r| r.call.0).collect()
}

// --- configuration ----------------------------------------------------------

pub async fn config_crud(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let mut a = agent(&t, "1001");
    ensure!(s.get::<Agent>(&t, "1001").await?.is_none());
    let r1 = s.put(&a, Expect::Absent).await?;
    ensure!(r1 == 1, "first revision is 1, got {r1}");
    let e = s.put(&a, Expect::Absent).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict, "create twice: {e}");
    a.name = "Han Meimei".into();
    let r2 = s.put(&a, Expect::Revision(r1)).await?;
    ensure!(r2 == 2);
    let e = s.put(&a, Expect::Revision(r1)).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict, "stale revision: {e}");
    let got = s.get::<Agent>(&t, "1001").await?.unwrap();
    ensure!(got.revision == 2 && got.record == a);
    let r3 = s.put(&a, Expect::Any).await?;
    ensure!(r3 == 3);

    s.put(&agent(&t, "1002"), Expect::Absent).await?;
    s.put(&agent(&tenant(), "1003"), Expect::Absent).await?;
    let list = s.list::<Agent>(&t).await?;
    let names: Vec<&str> = list.iter().map(|v| v.record.id.0.as_str()).collect();
    ensure!(names == ["1001", "1002"], "listed {names:?}");
    ensure!(s.list_config(&t, ConfigKind::SkillGroup).await?.is_empty());

    let e = s
        .delete::<Agent>(&t, "1001", Expect::Revision(2))
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict);
    s.delete::<Agent>(&t, "1001", Expect::Revision(3)).await?;
    ensure!(s.get::<Agent>(&t, "1001").await?.is_none());
    s.delete::<Agent>(&t, "1001", Expect::Any).await?;
    // A deleted record starts over.
    ensure!(s.put(&a, Expect::Absent).await? == 1);
    Ok(())
}

pub async fn config_update_retries(s: &dyn Store) -> Result<()> {
    let t = tenant();
    s.put(&agent(&t, "7"), Expect::Absent).await?;
    // Concurrent read-modify-writes all land.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let tt = t.clone();
        tasks.push(async move {
            s.update::<Agent, _>(&tt, "7", |a| {
                a.policy.custom.push(format!("c{i}"));
                Ok(true)
            })
            .await
        });
    }
    for r in futures_join(tasks).await {
        r?;
    }
    let a = s.get::<Agent>(&t, "7").await?.unwrap();
    ensure!(
        a.record.policy.custom.len() == 2 + 8,
        "{:?}",
        a.record.policy.custom
    );
    ensure!(a.revision == 9);
    let e = s
        .update::<Agent, _>(&t, "nobody", |_| Ok(true))
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::NotFound);
    Ok(())
}

/// Runs futures concurrently on the current task.
async fn futures_join<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

pub async fn tenants_are_listed(s: &dyn Store) -> Result<()> {
    let t = tenant();
    s.put(
        &Tenant {
            tenant: t.clone(),
            name: "Acme".into(),
            utc_offset_minutes: 480,
            service_level: Duration::from_secs(20),
            allow_external_transfer: true,
            survey_flow: None,
            retention: Default::default(),
            enabled: true,
            queue_callback: None,
            outbound_wrap_up: Duration::ZERO,
            sip_domains: Vec::new(),
        },
        Expect::Absent,
    )
    .await?;
    let all = s.list_tenants().await?;
    ensure!(all.contains(&t), "tenant not listed");
    let back = s.get::<Tenant>(&t, Tenant::ID).await?.unwrap();
    ensure!(back.record.name == "Acme");
    Ok(())
}

fn hotline(t: &TenantId, number: &str) -> Hotline {
    Hotline {
        tenant: t.clone(),
        number: number.into(),
        name: "main".into(),
        schedule: "always".into(),
        settings: IvrSettings::default(),
        enabled: true,
    }
}

pub async fn hotlines_are_global(s: &dyn Store) -> Result<()> {
    let (a, b) = (tenant(), tenant());
    let number = unique("400");
    s.put(&hotline(&a, &number), Expect::Absent).await?;
    let e = s.put(&hotline(&b, &number), Expect::Any).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict, "taken number: {e}");
    let e = s.create_if_absent(&hotline(&b, &number)).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict);
    ensure!(!s.create_if_absent(&hotline(&a, &number)).await?);
    let h = s.hotline(&number).await?.unwrap();
    ensure!(h.tenant == a);
    ensure!(s.find_global(ConfigKind::Hotline, &number).await? == Some(a.clone()));
    s.delete::<Hotline>(&a, &number, Expect::Any).await?;
    ensure!(s.hotline(&number).await?.is_none());
    s.put(&hotline(&b, &number), Expect::Absent).await?;
    ensure!(s.hotline(&number).await?.unwrap().tenant == b);
    Ok(())
}

fn flow(id: &str, prompt: &str) -> Flow {
    let mut nodes = BTreeMap::new();
    nodes.insert(
        "start".to_owned(),
        switchboard_storage::model::Node::Menu {
            prompt: prompt.into(),
            options: [('1', "bye".to_owned()), ('#', "bye".to_owned())]
                .into_iter()
                .collect(),
            timeout: Duration::from_millis(6500),
            invalid_prompt: None,
            retries: 1,
            repeat_key: Some('*'),
            on_fail: "bye".into(),
        },
    );
    nodes.insert(
        "bye".to_owned(),
        switchboard_storage::model::Node::HangUp { prompt: None },
    );
    Flow {
        id: id.into(),
        start: "start".into(),
        nodes,
    }
}

pub async fn flows_are_versioned_and_published(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let now = at(day0(), 9, 0, 0);
    ensure!(s.published_flow(&t, "main").await?.is_none());
    let v1 = s
        .save_flow(
            &t,
            "main",
            "Main menu",
            &flow("main", "p1"),
            now,
            Some("admin"),
        )
        .await?;
    let v2 = s
        .save_flow(&t, "main", "Main menu", &flow("main", "p2"), now, None)
        .await?;
    ensure!((v1, v2) == (1, 2), "versions {v1} {v2}");
    let head = s.get::<IvrFlow>(&t, "main").await?.unwrap().record;
    ensure!(head.published.is_none() && head.name == "Main menu");
    s.publish_flow(&t, "main", 1).await?;
    let p = s.published_flow(&t, "main").await?.unwrap();
    ensure!(
        p.version == 1
            && p.definition == flow("main", "p1")
            && p.author.as_deref() == Some("admin")
    );
    let e = s.publish_flow(&t, "main", 3).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::NotFound);
    s.publish_flow(&t, "main", 2).await?;
    ensure!(s.published_flow(&t, "main").await?.unwrap().definition == flow("main", "p2"));
    let all = s.flow_versions(&t, "main").await?;
    ensure!(all.iter().map(|v| v.version).collect::<Vec<_>>() == [1, 2]);
    ensure!(s.flow_version(&t, "main", 9).await?.is_none());
    let mut exact = all[0].clone();
    let e = s.add_flow_version(&exact).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict, "version 1 twice: {e}");
    exact.version = 7;
    ensure!(s.add_flow_version(&exact).await? == 7);
    exact.version = 0;
    ensure!(s.add_flow_version(&exact).await? == 8);
    let e = s
        .save_flow(&t, "main", "x", &flow("other", "p"), now, None)
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::Invalid);
    Ok(())
}

pub async fn prompts_are_reviewed(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let now = at(day0(), 10, 0, 0);
    let p = Prompt {
        tenant: t.clone(),
        id: "welcome".into(),
        name: "欢迎语".into(),
        source: PromptSource::Tts {
            text: "您好，欢迎致电".into(),
            voice: "cmn".into(),
        },
        review: Review::pending(),
        created: now,
    };
    s.put(&p, Expect::Absent).await?;
    let e = s
        .review_prompt(&t, "welcome", ReviewStatus::Rejected, "qa", None, now)
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::Invalid);
    let r = s
        .review_prompt(
            &t,
            "welcome",
            ReviewStatus::Rejected,
            "qa",
            Some("太长"),
            now,
        )
        .await?;
    ensure!(r.review.status == ReviewStatus::Rejected);
    let back = s.get::<Prompt>(&t, "welcome").await?.unwrap();
    ensure!(back.record.review.reason.as_deref() == Some("太长"));
    ensure!(back.record.review.reviewer.as_deref() == Some("qa"));
    s.review_prompt(&t, "welcome", ReviewStatus::Approved, "qa", None, now)
        .await?;
    ensure!(
        s.get::<Prompt>(&t, "welcome")
            .await?
            .unwrap()
            .record
            .review
            .status
            == ReviewStatus::Approved
    );
    let e = s
        .review_prompt(&t, "missing", ReviewStatus::Approved, "qa", None, now)
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::NotFound);
    Ok(())
}

// --- call records -------------------------------------------------------------

/// 60 calls on day0 and 5 on the next day; 3 agents, 2 groups, some
/// abandoned, a few with the same start time.
fn some_calls(t: &TenantId) -> Vec<CallRecord> {
    let mut v = Vec::new();
    for i in 0..60u64 {
        // Every fourth pair shares a start time: ties are ordered by id.
        let start = at(day0(), 8 + i / 8, (i % 8) / 2 * 10, 0);
        let agent = match i % 4 {
            0 => None,
            1 => Some("a1"),
            2 => Some("a2"),
            _ => Some("a3"),
        };
        let group = if i % 3 == 0 { "sales" } else { "support" };
        let number = format!("1380000{:04}", i % 7);
        let mut r = call(t, 1000 + i, start, Some(group), agent, &number);
        if i % 10 == 9 {
            r.direction = Direction::Outbound;
            r.hangup_side = HangupSide::Agent;
        }
        // Large ids sort as i64 bits in the backends; keep a few.
        if i == 13 {
            r.call = CallId(u64::MAX - 1);
        }
        v.push(r);
    }
    for i in 0..5u64 {
        let next = Day(day0().0 + 1);
        v.push(call(
            t,
            5000 + i,
            at(next, 0, i, 0),
            Some("sales"),
            Some("a1"),
            "13800000001",
        ));
    }
    v
}

pub async fn calls_by_day_page_and_filter(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let other = tenant();
    let calls = some_calls(&t);
    s.put_calls(&calls[..30]).await?;
    s.put_calls(&calls[30..]).await?;
    s.put_calls(&some_calls(&other)).await?;

    let day: Vec<CallRecord> = calls.iter().filter(|c| c.day == day0()).cloned().collect();
    ensure!(day.len() == 60);
    for limit in [1, 7, 60, 1000] {
        let got = all_pages(limit, |p| {
            let t = t.clone();
            async move {
                let f = CallFilter::default();
                s.calls_by_day(&t, day0(), &f, &p).await
            }
        })
        .await?;
        ensure!(
            ids(&got) == ids(&sorted_desc(day.clone())),
            "limit {limit}: {:?}",
            ids(&got)
        );
        ensure!(
            got == sorted_desc(day.clone()),
            "records differ after the round trip"
        );
    }

    let filters = [
        CallFilter {
            agent: Some("a2".into()),
            ..Default::default()
        },
        CallFilter {
            group: Some("sales".into()),
            answered: Some(true),
            ..Default::default()
        },
        CallFilter {
            answered: Some(false),
            ..Default::default()
        },
        CallFilter {
            direction: Some(Direction::Outbound),
            ..Default::default()
        },
        CallFilter {
            hangup_side: Some(HangupSide::Agent),
            agent: Some("a1".into()),
            ..Default::default()
        },
        CallFilter {
            range: TimeRange {
                from: Some(at(day0(), 10, 0, 0)),
                to: Some(at(day0(), 12, 30, 0)),
            },
            group: Some("support".into()),
            ..Default::default()
        },
    ];
    for f in filters {
        let want = sorted_desc(day.iter().filter(|c| f.matches(c)).cloned().collect());
        ensure!(
            !want.is_empty(),
            "filter {f:?} selects nothing: a useless case"
        );
        let got = all_pages(4, |p| {
            let (t, f) = (t.clone(), f.clone());
            async move { s.calls_by_day(&t, day0(), &f, &p).await }
        })
        .await?;
        ensure!(
            ids(&got) == ids(&want),
            "filter {f:?}: {:?} != {:?}",
            ids(&got),
            ids(&want)
        );
    }

    let one = &calls[13];
    ensure!(s.get_call(&t, one.call).await?.as_ref() == Some(one));
    ensure!(s.get_call(&other, CallId(424_242)).await?.is_none());
    let empty = s
        .calls_by_day(
            &t,
            Day(day0().0 + 5),
            &CallFilter::default(),
            &PageRequest::first(10),
        )
        .await?;
    ensure!(empty.items.is_empty() && empty.next.is_none());
    Ok(())
}

pub async fn calls_by_agent_and_number(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let calls = some_calls(&t);
    s.put_calls(&calls).await?;
    for a in ["a1", "a2", "a3"] {
        let want = sorted_desc(
            calls
                .iter()
                .filter(|c| c.agent.as_ref().map(|x| x.0.as_str()) == Some(a))
                .cloned()
                .collect(),
        );
        let got = all_pages(5, |p| {
            let t = t.clone();
            async move {
                s.calls_by_agent(&t, &AgentId::from(a), TimeRange::default(), &p)
                    .await
            }
        })
        .await?;
        ensure!(ids(&got) == ids(&want), "agent {a}");
    }
    let range = TimeRange {
        from: Some(at(day0(), 9, 0, 0)),
        to: Some(at(Day(day0().0 + 1), 0, 2, 0)),
    };
    let want = sorted_desc(
        calls
            .iter()
            .filter(|c| c.customer_number == "13800000001" && range.contains(c.start))
            .cloned()
            .collect(),
    );
    ensure!(want.len() > 3);
    let got = all_pages(3, |p| {
        let t = t.clone();
        async move { s.calls_by_number(&t, "13800000001", range, &p).await }
    })
    .await?;
    ensure!(ids(&got) == ids(&want), "by number");
    let none = s
        .calls_by_number(
            &tenant(),
            "13800000001",
            TimeRange::default(),
            &PageRequest::first(5),
        )
        .await?;
    ensure!(none.items.is_empty());
    Ok(())
}

pub async fn calls_rewritten_are_replaced(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let mut c = call(
        &t,
        77,
        at(day0(), 9, 0, 0),
        Some("sales"),
        Some("a1"),
        "13900000000",
    );
    s.put_calls(std::slice::from_ref(&c)).await?;
    // A retry of the same write, then a corrected one: one record.
    s.put_calls(std::slice::from_ref(&c)).await?;
    c.satisfaction = Satisfaction::Scored { score: 2, key: '4' };
    s.put_calls(std::slice::from_ref(&c)).await?;
    let page = s
        .calls_by_day(&t, day0(), &CallFilter::default(), &PageRequest::first(10))
        .await?;
    ensure!(page.items == vec![c.clone()], "{:?}", page.items);
    let by_agent = s
        .calls_by_agent(
            &t,
            &"a1".into(),
            TimeRange::default(),
            &PageRequest::first(10),
        )
        .await?;
    ensure!(by_agent.items.len() == 1);
    Ok(())
}

/// A tenant's customers, the last updated first, paged, found by a part
/// of the name in any case; an update moves one to the top, once.
pub async fn customers_listed_last_updated_first(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let customer = |id: &str, name: &str, mins: u64| Customer {
        tenant: t.clone(),
        id: id.into(),
        name: name.into(),
        numbers: vec![format!("139{}", 10_000_000 + mins)],
        fields: Default::default(),
        created: at(day0(), 8, 0, 0),
        updated: at(day0(), 8, mins, 0),
    };
    let all = [
        customer("k1", "张三", 1),
        customer("k2", "Li Lei", 2),
        customer("k3", "li ming", 3),
    ];
    for c in &all {
        s.put_customer(c).await?;
    }
    let ids = |p: &[Customer]| p.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let first = s.customers(&t, None, &PageRequest::first(2)).await?;
    ensure!(ids(&first.items) == ["k3", "k2"], "{:?}", ids(&first.items));
    let cursor = first
        .next
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no next page"))?;
    let second = s
        .customers(
            &t,
            None,
            &PageRequest {
                cursor: Some(cursor),
                ..PageRequest::first(2)
            },
        )
        .await?;
    ensure!(ids(&second.items) == ["k1"], "{:?}", ids(&second.items));
    ensure!(second.next.is_none());
    let li = s.customers(&t, Some("LI"), &PageRequest::first(10)).await?;
    ensure!(ids(&li.items) == ["k3", "k2"], "{:?}", ids(&li.items));
    let zhang = s.customers(&t, Some("张"), &PageRequest::first(10)).await?;
    ensure!(ids(&zhang.items) == ["k1"], "{:?}", ids(&zhang.items));
    // A literal match: `%` is no wildcard.
    ensure!(s
        .customers(&t, Some("%"), &PageRequest::first(10))
        .await?
        .items
        .is_empty());
    let mut k1 = all[0].clone();
    k1.name = "张三丰".into();
    k1.updated = at(day0(), 9, 0, 0);
    s.put_customer(&k1).await?;
    let now = s.customers(&t, None, &PageRequest::first(10)).await?;
    ensure!(
        ids(&now.items) == ["k1", "k3", "k2"],
        "{:?}",
        ids(&now.items)
    );
    ensure!(now.items[0].name == "张三丰");
    Ok(())
}

/// A tenant's tickets, the last updated first, paged and filtered; an
/// update moves a ticket to the top, once.
pub async fn tickets_listed_last_updated_first(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let ticket = |id: &str, mins: u64, status: TicketStatus, agent: &str, customer: &str| Ticket {
        tenant: t.clone(),
        id: id.into(),
        customer: Some(customer.into()),
        call: None,
        title: format!("ticket {id}"),
        description: String::new(),
        status,
        priority: 1,
        assignee: Some(agent.into()),
        fields: Default::default(),
        created: at(day0(), 9, 0, 0),
        updated: at(day0(), 9, mins, 0),
    };
    use TicketStatus::{Closed, InProgress, Open};
    let all = [
        ticket("t1", 1, Open, "a1", "c1"),
        ticket("t2", 2, Closed, "a1", "c2"),
        ticket("t3", 3, Open, "a2", "c1"),
        ticket("t4", 4, InProgress, "a1", "c1"),
        ticket("t5", 5, Open, "a1", "c3"),
    ];
    for k in &all {
        s.put_ticket(k).await?;
    }
    let ids = |p: &[Ticket]| p.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = s.tickets(&t, &TicketFilter::default(), &page).await?;
        ensure!(got.items.len() <= 2);
        seen.extend(ids(&got.items));
        match got.next {
            Some(c) => {
                page = PageRequest {
                    cursor: Some(c),
                    ..PageRequest::first(2)
                }
            }
            None => break,
        }
    }
    ensure!(seen == ["t5", "t4", "t3", "t2", "t1"], "{seen:?}");
    let open = TicketFilter {
        status: Some(Open),
        ..TicketFilter::default()
    };
    let got = s.tickets(&t, &open, &PageRequest::first(10)).await?;
    ensure!(
        ids(&got.items) == ["t5", "t3", "t1"],
        "{:?}",
        ids(&got.items)
    );
    let mine = TicketFilter {
        status: Some(Open),
        assignee: Some("a1".into()),
        customer: Some("c1".into()),
    };
    let got = s.tickets(&t, &mine, &PageRequest::first(10)).await?;
    ensure!(ids(&got.items) == ["t1"], "{:?}", ids(&got.items));
    // t1 is worked on: now it is the last updated.
    let mut t1 = all[0].clone();
    t1.status = InProgress;
    t1.updated = at(day0(), 10, 0, 0);
    s.put_ticket(&t1).await?;
    let got = s
        .tickets(&t, &TicketFilter::default(), &PageRequest::first(10))
        .await?;
    ensure!(
        ids(&got.items) == ["t1", "t5", "t4", "t3", "t2"],
        "{:?}",
        ids(&got.items)
    );
    ensure!(got.items[0].status == InProgress);
    Ok(())
}

/// A node's calls in progress are listed, the latest write of each, until
/// their record is written; another node's are not.
pub async fn open_calls_until_their_record(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let (node, other) = (
        NodeId::from(unique("n").as_str()),
        NodeId::from(unique("m").as_str()),
    );
    let on = |mut c: CallRecord, n: &NodeId| {
        c.node = n.clone();
        c
    };
    let first = on(
        call(
            &t,
            81,
            at(day0(), 9, 0, 0),
            Some("sales"),
            None,
            "13900000001",
        ),
        &node,
    );
    let second = on(
        call(
            &t,
            82,
            at(day0(), 9, 5, 0),
            Some("sales"),
            None,
            "13900000002",
        ),
        &node,
    );
    let elsewhere = on(
        call(&t, 83, at(day0(), 9, 1, 0), None, None, "13900000003"),
        &other,
    );
    s.put_open_calls(&[second.clone(), first.clone(), elsewhere.clone()])
        .await?;
    // The agent answered the first: what is open is its latest state.
    let mut answered = first.clone();
    answered.agent = Some(AgentId::from("a1"));
    answered.answered = Some(at(day0(), 9, 0, 40));
    s.put_open_calls(std::slice::from_ref(&answered)).await?;
    let open = s.open_calls(&node).await?;
    ensure!(open == vec![answered.clone(), second.clone()], "{open:?}");
    s.put_calls(std::slice::from_ref(&answered)).await?;
    let open = s.open_calls(&node).await?;
    ensure!(open == vec![second.clone()], "{open:?}");
    ensure!(s.open_calls(&other).await? == vec![elsewhere]);
    ensure!(s
        .open_calls(&NodeId::from(unique("x").as_str()))
        .await?
        .is_empty());
    Ok(())
}

/// Every survey outcome comes back as written, and so does a survey
/// node's key mapping.
pub async fn survey_outcomes_and_levels_are_kept(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let outcomes = [
        Satisfaction::NotOffered,
        Satisfaction::Scored { score: 5, key: '1' },
        Satisfaction::Scored { score: 1, key: '#' },
        Satisfaction::InvalidKey { key: '*' },
        Satisfaction::Timeout,
        Satisfaction::HungUp,
    ];
    let calls: Vec<CallRecord> = outcomes
        .iter()
        .zip(0u64..)
        .map(|(o, i)| {
            let mut c = call(
                &t,
                300 + i,
                at(day0(), 10, i, 0),
                Some("sales"),
                Some("a1"),
                "13900000000",
            );
            c.satisfaction = *o;
            c
        })
        .collect();
    s.put_calls(&calls).await?;
    for c in &calls {
        let back = s.get_call(&t, c.call).await?;
        ensure!(back.as_ref() == Some(c), "{:?}: {back:?}", c.satisfaction);
    }
    let day = all_pages(10, |p| {
        let t = t.clone();
        async move { s.calls_by_day(&t, day0(), &CallFilter::default(), &p).await }
    })
    .await?;
    let mut read: Vec<Satisfaction> = day.iter().map(|c| c.satisfaction).collect();
    read.reverse();
    ensure!(read == outcomes, "{read:?}");

    let survey = Flow {
        id: "survey".into(),
        start: "rate".into(),
        nodes: BTreeMap::from([(
            "rate".into(),
            switchboard_storage::model::Node::Survey(Survey {
                prompt: "rate".into(),
                levels: vec![
                    SurveyLevel {
                        key: '1',
                        score: 5,
                        label: "very satisfied".into(),
                    },
                    SurveyLevel {
                        key: '#',
                        score: 1,
                        label: "very dissatisfied".into(),
                    },
                ],
                timeout: Duration::from_secs(7),
                invalid_prompt: Some("sorry".into()),
                thanks: None,
            }),
        )]),
    };
    let v = s
        .save_flow(&t, "survey", "Survey", &survey, at(day0(), 9, 0, 0), None)
        .await?;
    let back = s.flow_version(&t, "survey", v).await?;
    ensure!(back.map(|b| b.definition) == Some(survey));
    Ok(())
}

// --- status log ------------------------------------------------------------------

fn change(t: &TenantId, agent: &str, start: Timestamp, secs: u64, status: Status) -> StatusChange {
    StatusChange {
        tenant: t.clone(),
        agent: agent.into(),
        day: Day::of(start, 480),
        period: StatusPeriod {
            status,
            start,
            end: start.after(Duration::from_secs(secs)),
            reason: ChangeReason::Chosen {
                by: switchboard_storage::model::Actor::Agent,
            },
        },
        node: NodeId::from("n1"),
    }
}

pub async fn status_log_by_day(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let d1 = Day(day0().0 + 1);
    let changes = vec![
        change(&t, "a1", at(day0(), 9, 0, 0), 60, Status::Ready),
        change(
            &t,
            "a1",
            at(day0(), 9, 1, 0),
            30,
            Status::Ringing { call: CallId(5) },
        ),
        change(&t, "a1", at(day0(), 8, 0, 0), 3600, Status::Busy),
        change(
            &t,
            "a1",
            at(d1, 1, 0, 0),
            5,
            Status::Break {
                reason: "lunch".into(),
            },
        ),
        change(
            &t,
            "a2",
            at(day0(), 9, 0, 0),
            60,
            Status::Custom {
                id: "meeting".into(),
            },
        ),
    ];
    s.put_status_changes(&changes).await?;
    s.put_status_changes(&changes[..2]).await?; // a retry
    let log = s.status_log(&t, &"a1".into(), day0()).await?;
    ensure!(
        log == vec![changes[2].clone(), changes[0].clone(), changes[1].clone()],
        "{log:?}"
    );
    ensure!(s.status_log(&t, &"a1".into(), d1).await? == vec![changes[3].clone()]);
    ensure!(s.status_log(&t, &"a2".into(), day0()).await? == vec![changes[4].clone()]);
    ensure!(s.status_log(&t, &"a3".into(), day0()).await?.is_empty());
    Ok(())
}

// --- statistics ------------------------------------------------------------------

fn partial(
    t: &TenantId,
    hour: u8,
    scope: StatsScope,
    node: &str,
    offered: u64,
    talk: u64,
) -> StatsPartial {
    StatsPartial {
        tenant: t.clone(),
        day: day0(),
        hour,
        scope,
        node: NodeId::from(node),
        counters: Counters {
            calls: offered,
            offered,
            answered: offered / 2,
            talk_ms: talk,
            ..Counters::default()
        },
    }
}

pub async fn stats_partials_replace_and_sum(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let g = StatsScope::Group("sales".into());
    s.put_stats(&[
        partial(&t, 9, StatsScope::Tenant, "n1", 10, 1000),
        partial(&t, 9, StatsScope::Tenant, "n2", 4, 500),
        partial(&t, 10, StatsScope::Tenant, "n1", 1, 1),
        partial(&t, 9, g.clone(), "n1", 3, 300),
        partial(&t, 9, StatsScope::Agent("a1".into()), "n2", 2, 200),
    ])
    .await?;
    // n1 flushes its hour-9 totals again, grown: the partial is replaced.
    s.put_stats(&[partial(&t, 9, StatsScope::Tenant, "n1", 12, 1200)])
        .await?;
    s.put_stats(&[partial(&t, 9, StatsScope::Tenant, "n1", 12, 1200)])
        .await?;
    let rows = s.hourly_stats(&t, day0(), &StatsScope::Tenant).await?;
    ensure!(rows.len() == 2, "{rows:?}");
    ensure!(
        rows[0].hour == 9 && rows[0].counters.offered == 16 && rows[0].counters.talk_ms == 1700
    );
    ensure!(rows[0].counters.answered == 6 + 2);
    ensure!(rows[1].hour == 10 && rows[1].counters.offered == 1);
    let groups = s.hourly_stats_of_kind(&t, day0(), ScopeKind::Group).await?;
    ensure!(groups.len() == 1 && groups[0].scope == g && groups[0].counters.offered == 3);
    let agents = s.hourly_stats_of_kind(&t, day0(), ScopeKind::Agent).await?;
    ensure!(agents.len() == 1 && agents[0].counters.talk_ms == 200);
    let all = s.stats_partials(&t, day0(), &StatsFilter::All).await?;
    ensure!(all.len() == 5, "{} partials", all.len());
    ensure!(s
        .hourly_stats(&t, Day(day0().0 + 1), &StatsScope::Tenant)
        .await?
        .is_empty());
    ensure!(s
        .hourly_stats(&tenant(), day0(), &StatsScope::Tenant)
        .await?
        .is_empty());
    Ok(())
}

// --- customers ------------------------------------------------------------------

fn customer(t: &TenantId, id: &str, numbers: &[&str]) -> Customer {
    Customer {
        tenant: t.clone(),
        id: id.into(),
        name: format!("客户 {id}"),
        numbers: numbers.iter().map(|n| (*n).to_owned()).collect(),
        fields: [
            ("level".to_owned(), FieldValue::Choice("VIP".into())),
            ("orders".to_owned(), FieldValue::Number(3.0)),
        ]
        .into_iter()
        .collect(),
        created: at(day0(), 8, 0, 0),
        updated: at(day0(), 8, 0, 0),
    }
}

pub async fn customers_and_numbers(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let mut c1 = customer(&t, "c1", &["13800000001", "075512345678"]);
    s.put_customer(&c1).await?;
    ensure!(s.get_customer(&t, "c1").await?.as_ref() == Some(&c1));
    ensure!(s.customer_by_number(&t, "075512345678").await?.as_ref() == Some(&c1));
    ensure!(s
        .customer_by_number(&tenant(), "075512345678")
        .await?
        .is_none());
    let e = s
        .put_customer(&customer(&t, "c2", &["13800000001"]))
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict, "{e}");
    ensure!(
        s.get_customer(&t, "c2").await?.is_none(),
        "a refused write left a customer"
    );
    // c1 drops a number; c2 may take it.
    c1.numbers = vec!["075512345678".into()];
    s.put_customer(&c1).await?;
    ensure!(s.customer_by_number(&t, "13800000001").await?.is_none());
    let c2 = customer(&t, "c2", &["13800000001"]);
    s.put_customer(&c2).await?;
    ensure!(s.customer_by_number(&t, "13800000001").await?.unwrap().id == "c2");
    Ok(())
}

pub async fn customer_timeline(s: &dyn Store) -> Result<()> {
    let t = tenant();
    s.put_customer(&customer(&t, "c1", &["13800000001"]))
        .await?;
    let mut calls = Vec::new();
    for i in 0..30u64 {
        let mut c = call(
            &t,
            100 + i,
            at(day0(), 9, i, 0),
            Some("sales"),
            Some("a1"),
            "13800000001",
        );
        c.customer = Some("c1".into());
        calls.push(c);
    }
    // A call of an unknown number stays out of the timeline.
    calls.push(call(
        &t,
        999,
        at(day0(), 9, 59, 0),
        None,
        None,
        "13999999999",
    ));
    s.put_calls(&calls).await?;
    let ticket = Ticket {
        tenant: t.clone(),
        id: "tk1".into(),
        customer: Some("c1".into()),
        call: Some(CallId(105)),
        title: "退款".into(),
        description: "要求退款".into(),
        status: TicketStatus::Open,
        priority: 2,
        assignee: Some("a1".into()),
        fields: Default::default(),
        created: at(day0(), 9, 5, 30),
        updated: at(day0(), 9, 5, 30),
    };
    s.put_ticket(&ticket).await?;
    let mut closed = ticket.clone();
    closed.status = TicketStatus::Closed;
    s.put_ticket(&closed).await?;
    ensure!(s.get_ticket(&t, "tk1").await?.unwrap().status == TicketStatus::Closed);
    let summary = ServiceSummary {
        tenant: t.clone(),
        id: "s1".into(),
        call: Some(CallId(129)),
        customer: Some("c1".into()),
        agent: "a1".into(),
        category: vec!["咨询".into(), "账单".into()],
        notes: "问账单".into(),
        fields: Default::default(),
        created: at(day0(), 10, 0, 0),
    };
    s.put_summary(&summary).await?;
    ensure!(s.get_summary(&t, "s1").await?.as_ref() == Some(&summary));
    let plan = ContactPlan {
        tenant: t.clone(),
        id: "p1".into(),
        customer: "c1".into(),
        number: "13800000001".into(),
        agent: "a1".into(),
        due: at(Day(day0().0 + 1), 10, 0, 0),
        note: "回访".into(),
        status: ContactPlanStatus::Pending,
        created: at(day0(), 10, 1, 0),
        call: None,
        outcome: None,
    };
    s.put_contact_plan(&plan).await?;

    let tl = s.timeline(&t, "c1", None, 50).await?;
    ensure!(tl.len() == 33, "{} entries", tl.len());
    ensure!(tl[0].kind == TimelineKind::ContactPlan && tl[1].kind == TimelineKind::Summary);
    ensure!(
        tl.windows(2).all(|w| w[0].at >= w[1].at),
        "not newest first"
    );
    ensure!(tl.iter().filter(|e| e.kind == TimelineKind::Ticket).count() == 1);
    ensure!(tl.iter().all(|e| e.tenant == t && e.customer == "c1"));
    let first10 = s.timeline(&t, "c1", None, 10).await?;
    ensure!(first10 == tl[..10]);
    let before = s.timeline(&t, "c1", Some(at(day0(), 9, 6, 0)), 50).await?;
    // Calls at 9:00..9:05 and the ticket at 9:05:30.
    ensure!(before.len() == 7, "{before:?}");
    ensure!(before[0].kind == TimelineKind::Ticket && before[0].title == "退款");
    ensure!(s.timeline(&t, "nobody", None, 50).await?.is_empty());
    Ok(())
}

pub async fn contact_plans_by_agent(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let mk = |id: &str, agent: &str, hour: u64| ContactPlan {
        tenant: t.clone(),
        id: id.into(),
        customer: "c1".into(),
        number: "13800000001".into(),
        agent: agent.into(),
        due: at(day0(), hour, 0, 0),
        note: String::new(),
        status: ContactPlanStatus::Pending,
        created: at(day0(), 1, 0, 0),
        call: None,
        outcome: None,
    };
    for p in [mk("p1", "a1", 15), mk("p2", "a1", 11), mk("p3", "a2", 9)] {
        s.put_contact_plan(&p).await?;
    }
    let mut done = mk("p2", "a1", 11);
    done.status = ContactPlanStatus::Done;
    s.put_contact_plan(&done).await?;
    let plans = s.contact_plans(&t, &"a1".into()).await?;
    ensure!(plans.iter().map(|p| p.id.as_str()).collect::<Vec<_>>() == ["p2", "p1"]);
    ensure!(plans[0].status == ContactPlanStatus::Done);
    Ok(())
}

// --- leases ------------------------------------------------------------------------

pub async fn leases_fence_with_epochs(s: &dyn Store) -> Result<()> {
    let t = tenant();
    let (a, b) = (NodeId::from("node-a"), NodeId::from("node-b"));
    let ttl = Duration::from_secs(10);
    let t0 = Timestamp(1_000_000);
    ensure!(s.get_lease(&t, "agent/1001").await?.is_none());
    let la = s.acquire_lease(&t, "agent/1001", &a, ttl, t0).await?;
    ensure!(la.epoch == 1 && la.holder == a && la.expires == t0.after(ttl));
    let e = s
        .acquire_lease(&t, "agent/1001", &b, ttl, t0.after(Duration::from_secs(5)))
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict, "{e}");
    // Asking again (a retry) keeps the epoch.
    let again = s
        .acquire_lease(&t, "agent/1001", &a, ttl, t0.after(Duration::from_secs(1)))
        .await?;
    ensure!(again.epoch == 1);
    let renewed = s
        .renew_lease(&again, ttl, t0.after(Duration::from_secs(8)))
        .await?;
    ensure!(renewed.expires == t0.after(Duration::from_secs(18)));
    // a goes quiet; after expiry b takes over with a higher epoch.
    let lb = s
        .acquire_lease(&t, "agent/1001", &b, ttl, t0.after(Duration::from_secs(19)))
        .await?;
    ensure!(lb.epoch == 2 && lb.holder == b);
    let e = s
        .renew_lease(&renewed, ttl, t0.after(Duration::from_secs(20)))
        .await
        .unwrap_err();
    ensure!(
        e.kind() == ErrorKind::Conflict,
        "a stale holder renewed: {e}"
    );
    let e = s.release_lease(&renewed).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Conflict);
    s.release_lease(&lb).await?;
    s.release_lease(&lb).await?; // a retry
    let stored = s.get_lease(&t, "agent/1001").await?.unwrap();
    ensure!(stored.epoch == 2 && stored.holder.0.is_empty());
    let la2 = s
        .acquire_lease(&t, "agent/1001", &a, ttl, t0.after(Duration::from_secs(21)))
        .await?;
    ensure!(la2.epoch == 3, "epoch after release: {}", la2.epoch);
    // Other keys and tenants are independent.
    ensure!(s.acquire_lease(&t, "agent/1002", &b, ttl, t0).await?.epoch == 1);
    ensure!(
        s.acquire_lease(&tenant(), "agent/1001", &b, ttl, t0)
            .await?
            .epoch
            == 1
    );
    Ok(())
}

// --- seeding -----------------------------------------------------------------------

pub async fn demo_seed_is_idempotent(s: &dyn Store) -> Result<()> {
    use switchboard_storage::seed::{seed_demo, DEMO_HOTLINE, DEMO_TENANT};
    let now = at(day0(), 0, 0, 0);
    let (r1, r2) = {
        let a = seed_demo(s, "switchboard", now);
        let b = seed_demo(s, "switchboard", now);
        let mut both = futures_join(vec![Box::pin(a), Box::pin(b)]).await;
        let r2 = both.pop().unwrap()?;
        (both.pop().unwrap()?, r2)
    };
    ensure!(r1.created + r1.existing == r2.created + r2.existing);
    let third = seed_demo(s, "switchboard", now).await?;
    ensure!(third.created == 0, "third run created {}", third.created);
    let t = TenantId::from(DEMO_TENANT);
    let h = s.hotline(DEMO_HOTLINE).await?.unwrap();
    ensure!(h.tenant == t);
    let f = s.published_flow(&t, "demo").await?.unwrap();
    ensure!(f.version == 1 && f.definition.start == "welcome");
    ensure!(
        s.flow_versions(&t, "demo").await?.len() == 1,
        "racing seeders added two versions"
    );
    ensure!(s.list::<Agent>(&t).await?.len() == 3);
    let sip = s
        .get::<switchboard_storage::model::SipAccount>(&t, "1001")
        .await?
        .unwrap();
    ensure!(sip.record.ha1 == switchboard_storage::seed::ha1("1001", "switchboard", "pass1001"));
    Ok(())
}

pub async fn bad_requests_are_invalid(s: &dyn Store) -> Result<()> {
    let t = tenant();
    for limit in [0, 1001] {
        let e = s
            .calls_by_day(
                &t,
                day0(),
                &CallFilter::default(),
                &PageRequest::first(limit),
            )
            .await
            .unwrap_err();
        ensure!(e.kind() == ErrorKind::Invalid, "limit {limit}: {e}");
    }
    let bogus = PageRequest {
        limit: 10,
        cursor: Some(switchboard_storage::Cursor("zz-not-a-cursor".into())),
    };
    let e = s
        .calls_by_day(&t, day0(), &CallFilter::default(), &bogus)
        .await
        .unwrap_err();
    ensure!(e.kind() == ErrorKind::Invalid, "bogus cursor: {e}");
    let mut p = partial(&t, 24, StatsScope::Tenant, "n1", 1, 1);
    let e = s.put_stats(std::slice::from_ref(&p)).await.unwrap_err();
    ensure!(e.kind() == ErrorKind::Invalid, "hour 24: {e}");
    p.hour = 23;
    s.put_stats(&[p]).await?;
    Ok(())
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
