//! The node's cluster membership: joined (`--cluster`) or on its own,
//! shown at `/api/v1/cluster`, counted in the metrics, and watched for
//! placement moves.

use crate::config::ClusterSettings;
use anyhow::Context;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_cluster::{Cluster, ClusterConfig, EntityKey, Health, Kind, Settings, View};
use switchboard_http::cluster::{ClusterInfo, ClusterNow, EntityKind, MemberNow};
use switchboard_storage::model::ConfigKind;
use switchboard_storage::Store;

/// The cookie file in the data directory: the nodes sharing a data
/// directory share it.
pub const COOKIE_FILE: &str = "cluster.cookie";

/// The cookie given, or the data directory's (created on first use).
pub fn cookie(given: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(c) = given {
        return Ok(c.to_string());
    }
    let path = data_dir.join(COOKIE_FILE);
    let fresh: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect()
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(fresh.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(fresh)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_cookie(&path),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The cookie in `path`, for `switchboard cluster status`.
pub fn read_cookie(path: &Path) -> anyhow::Result<String> {
    // Another node may be writing it this instant: a short wait for the
    // 32 characters.
    for _ in 0..20 {
        let c = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the cluster cookie {}", path.display()))?;
        let c = c.trim().to_string();
        if c.len() >= 8 {
            return Ok(c);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("the cluster cookie {} is too short", path.display())
}

/// This node's membership.
#[derive(Debug)]
pub struct Membership {
    kind: Joined,
    /// Set once a drain is asked for (by the API or a signal).
    drain: tokio::sync::watch::Sender<bool>,
    /// Calls up on this node, once the core runs.
    calls: std::sync::OnceLock<tokio::sync::watch::Receiver<usize>>,
}

#[derive(Debug)]
enum Joined {
    Alone {
        name: String,
        started: Instant,
        started_at_ms: u64,
        cookie: String,
    },
    Joined {
        cluster: Arc<Cluster>,
        cookie: String,
    },
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn kind(k: EntityKind) -> Kind {
    match k {
        EntityKind::Agent => Kind::Agent,
        EntityKind::SkillGroup => Kind::SkillGroup,
        EntityKind::TelesalesTask => Kind::TelesalesTask,
    }
}

impl Membership {
    /// Joins the cluster `settings` describe, or stays alone.
    pub async fn start(
        name: &str,
        settings: Option<&ClusterSettings>,
        data_dir: &Path,
    ) -> anyhow::Result<Membership> {
        let new = |kind| Membership {
            kind,
            drain: tokio::sync::watch::channel(false).0,
            calls: std::sync::OnceLock::new(),
        };
        let Some(s) = settings else {
            return Ok(new(Joined::Alone {
                name: name.to_string(),
                started: Instant::now(),
                started_at_ms: epoch_ms(),
                cookie: cookie(None, data_dir)?,
            }));
        };
        let cookie = cookie(s.cookie.as_deref(), data_dir)?;
        let tls = match &s.tls {
            None => None,
            Some((cert, key, ca)) => {
                let read = |p: &std::path::PathBuf| {
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
                };
                Some(switchboard_cluster::ClusterTls::from_pem(
                    &read(cert)?,
                    &read(key)?,
                    &read(ca)?,
                )?)
            }
        };
        let cluster = Cluster::start(ClusterConfig {
            name: name.to_string(),
            listen: s.listen,
            advertise: s.advertise.clone(),
            tls,
            seeds: s.join.clone(),
            cookie: cookie.clone(),
            settings: Settings {
                down_after: s.down_after,
                ..Settings::default()
            },
        })
        .await?;
        Ok(new(Joined::Joined {
            cluster: Arc::new(cluster),
            cookie,
        }))
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.kind {
            Joined::Joined { cluster, .. } => Some(cluster),
            Joined::Alone { .. } => None,
        }
    }

    /// Where the core tells how many calls are up.
    pub fn set_calls(&self, calls: tokio::sync::watch::Receiver<usize>) {
        let _ = self.calls.set(calls);
    }

    /// Asks for a drain (again: nothing more).
    pub fn request_drain(&self) {
        self.drain.send_if_modified(|d| !std::mem::replace(d, true));
    }

    /// Resolves once a drain is asked for.
    pub async fn drain_requested(&self) {
        let mut rx = self.drain.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// The drain: others stop placing entities here; the node keeps its
    /// calls until they end or `timeout`. Whether every call ended.
    pub async fn drain(&self, timeout: Duration) -> bool {
        if let Some(c) = self.cluster() {
            c.leave();
        }
        let Some(mut calls) = self.calls.get().cloned() else {
            return true;
        };
        tracing::info!(
            calls = *calls.borrow(),
            timeout_s = timeout.as_secs(),
            "draining: waiting for the calls to end"
        );
        tokio::time::timeout(timeout, calls.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Leaves the cluster (a node on its own has nothing to do).
    pub fn stop(&self) {
        if let Some(c) = self.cluster() {
            c.stop();
        }
    }

    fn calls_now(&self) -> u64 {
        self.calls
            .get()
            .map_or(0, |c| u64::try_from(*c.borrow()).unwrap_or(u64::MAX))
    }
}

fn member(m: &switchboard_cluster::Member) -> MemberNow {
    MemberNow {
        name: m.name.clone(),
        addr: m.addr.clone(),
        health: m.health.as_str().to_string(),
        for_ms: ms(m.for_),
        last_heard_ms: m.last_heard.map(ms),
        rtt_us: m
            .rtt
            .map(|r| u64::try_from(r.as_micros()).unwrap_or(u64::MAX)),
        started_at_ms: m.incarnation,
        connected: m.connected,
        me: m.me,
    }
}

impl ClusterInfo for Membership {
    fn status(&self) -> ClusterNow {
        let draining = *self.drain.borrow();
        let calls = self.calls_now();
        match &self.kind {
            Joined::Alone {
                name,
                started,
                started_at_ms,
                ..
            } => ClusterNow {
                node: name.clone(),
                standalone: true,
                draining,
                calls,
                down_after_ms: ms(Settings::default().down_after),
                members: vec![MemberNow {
                    name: Some(name.clone()),
                    addr: String::new(),
                    health: if draining { Health::Left } else { Health::Up }
                        .as_str()
                        .to_string(),
                    for_ms: ms(started.elapsed()),
                    last_heard_ms: None,
                    rtt_us: None,
                    started_at_ms: *started_at_ms,
                    connected: true,
                    me: true,
                }],
            },
            Joined::Joined { cluster, .. } => {
                let view = cluster.view();
                ClusterNow {
                    node: view.me.clone(),
                    standalone: false,
                    draining,
                    calls,
                    down_after_ms: ms(cluster.settings().down_after),
                    members: view.members.iter().map(member).collect(),
                }
            }
        }
    }

    fn home(&self, tenant: &str, k: EntityKind, id: &str) -> String {
        match &self.kind {
            Joined::Alone { name, .. } => name.clone(),
            Joined::Joined { cluster, .. } => cluster.home(&EntityKey::new(tenant, kind(k), id)),
        }
    }

    fn drain(&self) -> ClusterNow {
        self.request_drain();
        self.status()
    }

    fn cookie_ok(&self, given: &str) -> bool {
        let mine = match &self.kind {
            Joined::Alone { cookie, .. } | Joined::Joined { cookie, .. } => cookie,
        };
        // Constant time in the cookie's content.
        given.len() == mine.len()
            && given
                .bytes()
                .zip(mine.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The placed entities of every tenant: `(tenant, kind, id)`.
async fn entities(store: &dyn Store) -> Vec<(String, Kind, String)> {
    let mut out = Vec::new();
    let Ok(tenants) = store.list_tenants().await else {
        return out;
    };
    for t in tenants {
        for (ck, k) in [
            (ConfigKind::Agent, Kind::Agent),
            (ConfigKind::SkillGroup, Kind::SkillGroup),
        ] {
            if let Ok(docs) = store.list_config(&t, ck).await {
                out.extend(docs.into_iter().map(|d| (t.0.clone(), k, d.id)));
            }
        }
    }
    out
}

/// Keeps the cluster metrics and counts placement moves until the node
/// stops.
pub fn watch(cluster: Arc<Cluster>, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let m = crate::node::metrics::get();
        let mut rx = cluster.watch();
        let mut live: Vec<String> = Vec::new();
        let mut decode_errors = 0;
        let mut every = tokio::time::interval(Duration::from_millis(500));
        loop {
            every.tick().await;
            let view: View = rx.borrow_and_update().clone();
            for h in [Health::Up, Health::Down, Health::Joining, Health::Left] {
                let n = view.members.iter().filter(|x| x.health == h).count();
                m.cluster_members
                    .with_label_values(&[h.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            for x in view.members.iter().filter(|x| !x.me) {
                let Some(name) = &x.name else { continue };
                match x.rtt {
                    Some(rtt) if x.health == Health::Up => m
                        .cluster_heartbeat_rtt
                        .with_label_values(&[name.as_str()])
                        .set(rtt.as_secs_f64()),
                    // A member down has no round trip to show.
                    _ => {
                        let _ = m
                            .cluster_heartbeat_rtt
                            .remove_label_values(&[name.as_str()]);
                    }
                }
            }
            let errors = cluster.stats().decode_errors.load(Ordering::Relaxed);
            m.cluster_decode_errors
                .inc_by(errors.saturating_sub(decode_errors));
            decode_errors = errors;
            let mut now: Vec<String> = view.live().into_iter().map(str::to_string).collect();
            now.sort();
            if now != live {
                if !live.is_empty() {
                    let moved = entities(&*store)
                        .await
                        .iter()
                        .filter(|(t, k, id)| {
                            let key = EntityKey::new(t, *k, id);
                            switchboard_cluster::placement::home(
                                &key,
                                live.iter().map(String::as_str),
                            ) != switchboard_cluster::placement::home(
                                &key,
                                now.iter().map(String::as_str),
                            )
                        })
                        .count();
                    m.cluster_placement_moves
                        .inc_by(u64::try_from(moved).unwrap_or(u64::MAX));
                    tracing::info!(members = ?now, moved, "placement recomputed");
                }
                live = now;
            }
        }
    })
}
