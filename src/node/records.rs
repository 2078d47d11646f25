//! What the node keeps of its calls: call records, the agent status log
//! and the hourly statistics, written to the store by one task.
//!
//! Call records and status periods are written in batches (at most 200 ms
//! after they happen, or at 500 items); each tenant's statistics are
//! counted by a [`StatsAggregator`] and its changed hours written every
//! 5 s, as this node's partials, and on shutdown. A write that fails is
//! kept and tried again (a store that is down for a while loses nothing
//! up to [`MAX_PENDING`] items; beyond that the oldest are dropped and
//! logged). On start the aggregator takes back the partials this node
//! wrote today, so a restart under the same node name continues the
//! counts instead of overwriting them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_actors::agent::AgentEvent;
use switchboard_storage::model::{
    CallId, CallRecord, Day, NodeId, StatsAggregator, StatusChange, TenantId, Timestamp,
};
use switchboard_storage::{StatsFilter, Store};
use tokio::sync::{mpsc, oneshot};

const FLUSH_EVERY: Duration = Duration::from_millis(200);
const STATS_EVERY: Duration = Duration::from_secs(5);
const BATCH: usize = 500;
/// Records held while the store refuses writes.
pub const MAX_PENDING: usize = 100_000;

/// Something to keep.
#[derive(Debug)]
pub enum Record {
    Call(Box<CallRecord>),
    /// A call in progress, as it stands now.
    Open(Box<CallRecord>),
    Status {
        tenant: TenantId,
        event: AgentEvent,
    },
    /// Write everything now and answer (shutdown).
    Flush(oneshot::Sender<()>),
}

/// Closes the calls `node` left open (it died with them): each record
/// ends at `at`, or where the call last wrote itself when `at` is `None`
/// (the moment the node died is not known), and goes to `recorder`,
/// whose write removes the open call. How many.
pub async fn close_lost(
    store: &dyn Store,
    recorder: &Recorder,
    node: &NodeId,
    at: Option<Timestamp>,
) -> usize {
    let open = match store.open_calls(node).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(node = %node.0, error = %e, "open calls of a lost node not read");
            return 0;
        }
    };
    let n = open.len();
    for r in open {
        let end = at.unwrap_or(r.end);
        tracing::info!(tenant = %r.tenant, call = %r.call, node = %node.0, "call record closed: its node died with it");
        recorder.call(r.lost(end));
    }
    n
}

/// A tenant's settings the statistics need.
#[derive(Debug, Clone, Copy)]
pub struct TenantClock {
    pub utc_offset_minutes: i32,
    pub service_level: Duration,
}

/// The sending side, cloned into every producer.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Record>,
}

impl Recorder {
    pub fn call(&self, r: CallRecord) {
        let _ = self.tx.send(Record::Call(Box::new(r)));
    }

    /// A call in progress: kept in the store (the latest of each call)
    /// until its record is written.
    pub fn open(&self, r: CallRecord) {
        let _ = self.tx.send(Record::Open(Box::new(r)));
    }

    pub fn status(&self, tenant: TenantId, event: AgentEvent) {
        let _ = self.tx.send(Record::Status { tenant, event });
    }

    /// Waits (bounded) until everything sent so far is written.
    pub async fn flush(&self, within: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Record::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(within, rx).await;
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    node: NodeId,
    tenants: HashMap<TenantId, TenantClock>,
    stats: HashMap<TenantId, StatsAggregator>,
    calls: Vec<CallRecord>,
    /// Calls in progress not written yet, the latest of each.
    open: HashMap<(TenantId, CallId), CallRecord>,
    changes: Vec<StatusChange>,
}

/// Starts the writer for `tenants`.
pub async fn spawn(
    store: Arc<dyn Store>,
    node: NodeId,
    tenants: HashMap<TenantId, TenantClock>,
    now: Timestamp,
) -> Recorder {
    let mut stats = HashMap::new();
    for (tenant, clock) in &tenants {
        let mut agg = StatsAggregator::new(
            tenant.clone(),
            node.clone(),
            clock.utc_offset_minutes,
            clock.service_level,
        );
        let day = Day::of(now, clock.utc_offset_minutes);
        match store.stats_partials(tenant, day, &StatsFilter::All).await {
            Ok(p) => agg.resume(&p),
            Err(e) => tracing::warn!(%tenant, error = %e, "statistics of today not read back"),
        }
        stats.insert(tenant.clone(), agg);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let w = Writer {
        store,
        node,
        tenants,
        stats,
        calls: Vec::new(),
        open: HashMap::new(),
        changes: Vec::new(),
    };
    tokio::spawn(w.run(rx));
    Recorder { tx }
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Record>) {
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        let mut next_stats = Instant::now() + STATS_EVERY;
        loop {
            let wake = next_flush.min(next_stats);
            tokio::select! {
                r = rx.recv() => match r {
                    None => {
                        self.flush().await;
                        self.write_stats().await;
                        return;
                    }
                    Some(Record::Flush(done)) => {
                        self.flush().await;
                        self.write_stats().await;
                        let _ = done.send(());
                    }
                    Some(r) => {
                        self.take(r);
                        if self.calls.len() + self.changes.len() >= BATCH {
                            self.flush().await;
                        }
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            if now >= next_flush {
                self.flush().await;
                next_flush = now + FLUSH_EVERY;
            }
            if now >= next_stats {
                self.write_stats().await;
                next_stats = now + STATS_EVERY;
            }
        }
    }

    fn take(&mut self, r: Record) {
        match r {
            Record::Open(c) => {
                self.open.insert((c.tenant.clone(), c.call), *c);
            }
            Record::Call(c) => {
                // Its last progress need not be written: the record is.
                self.open.remove(&(c.tenant.clone(), c.call));
                if let Some(agg) = self.stats.get_mut(&c.tenant) {
                    agg.add_call(&c);
                }
                self.calls.push(*c);
            }
            Record::Status { tenant, event } => {
                // The status log holds what was, not what is planned.
                let AgentEvent::Changed { agent, period, .. } = event else {
                    return;
                };
                let offset = self
                    .tenants
                    .get(&tenant)
                    .map_or(0, |c| c.utc_offset_minutes);
                let change = StatusChange {
                    tenant: tenant.clone(),
                    agent,
                    day: Day::of(period.start, offset),
                    period,
                    node: self.node.clone(),
                };
                if let Some(agg) = self.stats.get_mut(&tenant) {
                    agg.add_status(&change);
                }
                self.changes.push(change);
            }
            Record::Flush(_) => {}
        }
        let held = self.calls.len() + self.changes.len();
        if held > MAX_PENDING {
            let drop_calls = self.calls.len().min(held - MAX_PENDING);
            self.calls.drain(..drop_calls);
            let rest = (held - MAX_PENDING).saturating_sub(drop_calls);
            self.changes.drain(..rest.min(self.changes.len()));
            tracing::error!(
                dropped = held - MAX_PENDING,
                "store unavailable too long: records dropped"
            );
        }
    }

    async fn flush(&mut self) {
        // Progress first: a call whose record is in this flush has none
        // left here, so no progress is written after its record.
        if !self.open.is_empty() {
            let open: Vec<CallRecord> = self.open.values().cloned().collect();
            match self.store.put_open_calls(&open).await {
                Ok(()) => self.open.clear(),
                Err(e) => {
                    super::metrics::get()
                        .store_errors
                        .with_label_values(&["open_call"])
                        .inc();
                    tracing::warn!(error = %e, pending = open.len(), "calls in progress not written yet");
                }
            }
        }
        while !self.calls.is_empty() {
            let n = self.calls.len().min(BATCH);
            // A call shows in its customer's timeline: the number's
            // customer profile, if there is one, is linked now.
            for r in self.calls[..n].iter_mut().filter(|r| r.customer.is_none()) {
                if let Ok(Some(c)) = self
                    .store
                    .customer_by_number(&r.tenant, &r.customer_number)
                    .await
                {
                    r.customer = Some(c.id);
                }
            }
            let timer = super::metrics::get().store_write.start_timer();
            let r = self.store.put_calls(&self.calls[..n]).await;
            timer.observe_duration();
            match r {
                Ok(()) => {
                    self.calls.drain(..n);
                }
                Err(e) => {
                    super::metrics::get()
                        .store_errors
                        .with_label_values(&["call"])
                        .inc();
                    tracing::warn!(error = %e, pending = self.calls.len(), "call records not written yet");
                    break;
                }
            }
        }
        while !self.changes.is_empty() {
            let n = self.changes.len().min(BATCH);
            let timer = super::metrics::get().store_write.start_timer();
            let r = self.store.put_status_changes(&self.changes[..n]).await;
            timer.observe_duration();
            match r {
                Ok(()) => {
                    self.changes.drain(..n);
                }
                Err(e) => {
                    super::metrics::get()
                        .store_errors
                        .with_label_values(&["status"])
                        .inc();
                    tracing::warn!(error = %e, pending = self.changes.len(), "status log not written yet");
                    break;
                }
            }
        }
    }

    async fn write_stats(&mut self) {
        for agg in self.stats.values_mut() {
            let dirty = agg.take_dirty();
            if dirty.is_empty() {
                continue;
            }
            let timer = super::metrics::get().store_write.start_timer();
            let r = self.store.put_stats(&dirty).await;
            timer.observe_duration();
            if let Err(e) = r {
                super::metrics::get()
                    .store_errors
                    .with_label_values(&["stats"])
                    .inc();
                // The totals stay in the aggregator: the next write of
                // these hours carries them.
                tracing::warn!(error = %e, "statistics not written yet");
                for p in &dirty {
                    agg.mark_dirty(p);
                }
            }
        }
    }
}
