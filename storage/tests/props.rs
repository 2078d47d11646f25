//! Property tests on the embedded store: hourly partials summed at read
//! time equal counting the records one by one, whatever the split over
//! nodes and however often partials are rewritten; lease epochs only grow.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use suite::{at, call, day0, tenant, TempDir};
use switchboard_storage::model::{
    CallRecord, HangupReason, LocalHour, NodeId, StatsAggregator, StatsScope, Timestamp,
};
use switchboard_storage::{EmbeddedStore, ErrorKind, Store};

fn setup() -> (tokio::runtime::Runtime, EmbeddedStore, TempDir) {
    let dir = TempDir::new("sb-props");
    let store = EmbeddedStore::open(&dir.0).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (rt, store, dir)
}

/// (hour, minute, group, agent or abandoned, node, flushes)
type CallSpec = (u64, u64, u8, Option<u8>, u8);

fn build(t: &switchboard_storage::model::TenantId, specs: &[CallSpec]) -> Vec<(CallRecord, u8)> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (h, m, g, a, node))| {
            let agent = a.map(|a| format!("a{a}"));
            let r = call(
                t,
                i as u64,
                at(day0(), *h, *m, 0),
                Some(&format!("g{g}")),
                agent.as_deref(),
                "13800000000",
            );
            (r, *node)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn partials_sum_to_per_record_counts(
        specs in proptest::collection::vec(
            (0u64..24, 0u64..60, 0u8..3, proptest::option::of(0u8..4), 0u8..3),
            0..120,
        ),
        flush_every in 1usize..40,
    ) {
        let (rt, store, _dir) = setup();
        let s: &dyn Store = &store;
        let t = tenant();
        let calls = build(&t, &specs);
        let mut nodes: Vec<StatsAggregator> = (0..3)
            .map(|n| StatsAggregator::new(t.clone(), NodeId(format!("n{n}")), 480, Duration::from_secs(20)))
            .collect();
        rt.block_on(async {
            // Nodes flush their dirty partials every few calls, and once
            // more at the end; each flush replaces the node's partial.
            for (i, (r, node)) in calls.iter().enumerate() {
                nodes[*node as usize].add_call(r);
                if i % flush_every == 0 {
                    let p = nodes[*node as usize].take_dirty();
                    s.put_stats(&p).await.unwrap();
                }
            }
            for n in &mut nodes {
                s.put_stats(&n.partials()).await.unwrap();
            }
        });

        // Count the records directly.
        let mut want: BTreeMap<(StatsScope, u8), (u64, u64, u64, u64)> = BTreeMap::new();
        for (r, _) in &calls {
            let hour = LocalHour::of(r.start, 480).hour;
            let answered = u64::from(r.answered.is_some());
            let abandoned = u64::from(r.hangup_reason == HangupReason::AbandonedInQueue);
            let talk = r.talk_time().as_millis() as u64;
            for scope in [StatsScope::Tenant, StatsScope::Group(r.group.clone().unwrap())] {
                let e = want.entry((scope, hour)).or_default();
                e.0 += 1;
                e.1 += answered;
                e.2 += abandoned;
                e.3 += talk;
            }
        }
        let got = rt.block_on(async {
            let mut rows = s.hourly_stats(&t, day0(), &StatsScope::Tenant).await.unwrap();
            rows.extend(s.hourly_stats_of_kind(&t, day0(), switchboard_storage::model::ScopeKind::Group).await.unwrap());
            rows
        });
        let got: BTreeMap<(StatsScope, u8), (u64, u64, u64, u64)> = got
            .into_iter()
            .map(|r| ((r.scope, r.hour), (r.counters.offered, r.counters.answered, r.counters.abandoned_in_queue, r.counters.talk_ms)))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn lease_epochs_only_grow(ops in proptest::collection::vec((0u8..3, 0u8..4, 0u64..30), 1..60)) {
        let (rt, store, _dir) = setup();
        let s: &dyn Store = &store;
        let t = tenant();
        let ttl = Duration::from_secs(10);
        let mut now = Timestamp(1_000_000);
        let mut held: Vec<Option<switchboard_storage::model::Lease>> = vec![None, None, None];
        let mut last_epoch = 0u64;
        let mut last_holder: Option<NodeId> = None;
        rt.block_on(async {
            for (node, op, advance) in ops {
                now = now.after(Duration::from_secs(advance));
                let id = NodeId(format!("n{node}"));
                let mine = &mut held[node as usize];
                let result = match (op, mine.clone()) {
                    (0 | 1, _) | (_, None) => s.acquire_lease(&t, "k", &id, ttl, now).await,
                    (2, Some(l)) => s.renew_lease(&l, ttl, now).await,
                    (_, Some(l)) => s.release_lease(&l).await.map(|()| switchboard_storage::model::Lease { holder: NodeId(String::new()), ..l }),
                };
                match result {
                    Ok(l) if l.holder.0.is_empty() => *mine = None,
                    Ok(l) => {
                        // A new holder means a new, higher epoch; the same
                        // holder keeps its epoch.
                        if last_holder.as_ref() == Some(&l.holder) {
                            prop_assert!(l.epoch >= last_epoch);
                        } else {
                            prop_assert!(l.epoch > last_epoch, "epoch {} after {}", l.epoch, last_epoch);
                        }
                        last_epoch = l.epoch;
                        last_holder = Some(l.holder.clone());
                        *mine = Some(l);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::Conflict);
                        *mine = None;
                    }
                }
                // At most one node holds a live lease.
                let stored = s.get_lease(&t, "k").await.unwrap().unwrap();
                prop_assert!(stored.epoch >= last_epoch);
            }
            Ok(())
        })?;
    }
}
