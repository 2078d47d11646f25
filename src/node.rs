//! A running node: binds the SIP transport, runs the SIP core, stops on
//! SIGTERM or Ctrl-C.

use crate::config::NodeConfig;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::shell::Clock;
use switchboard_media::sip::parse::Limits;
use switchboard_media::sip::registrar::RegistrarConfig;
use switchboard_media::sip::transport::SipTransport;
use switchboard_storage::model::NodeId;
use switchboard_storage::{seed, EmbeddedStore, ScyllaOptions, ScyllaStore, Store};

mod center;
pub mod cluster;
mod core;
mod leg;
mod live;
mod media;
mod metered;
pub mod metrics;
mod recording_io;
mod records;
mod remote;

/// The local address the kernel would use to reach `peer` (no packet is
/// sent: connecting a UDP socket only picks the route).
fn outbound_ip(peer: std::net::SocketAddr) -> Option<std::net::IpAddr> {
    let any: std::net::SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(peer).ok()?;
    Some(s.local_addr().ok()?.ip())
}

pub async fn run(cfg: NodeConfig) -> ExitCode {
    let mut signals = Signals::listen();
    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir) {
        eprintln!(
            "switchboard: cannot create data directory {}: {e}",
            cfg.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let (transport, inbound) = match SipTransport::bind(cfg.sip, Limits::default()).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("switchboard: cannot listen for SIP on {}: {e}", cfg.sip);
            return ExitCode::from(2);
        }
    };
    let media = match core::MediaConfig::new(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            return ExitCode::from(2);
        }
    };
    let http = match tokio::net::TcpListener::bind(cfg.http).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("switchboard: cannot listen for HTTP on {}: {e}", cfg.http);
            return ExitCode::from(2);
        }
    };
    let store: Arc<dyn Store> = match open_store(&cfg).await {
        Ok(s) => Arc::new(metered::Metered::new(s)),
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            return ExitCode::from(2);
        }
    };
    let membership =
        match cluster::Membership::start(&cfg.node_name, cfg.cluster.as_ref(), &cfg.data_dir).await
        {
            Ok(m) => Arc::new(m),
            Err(e) => {
                eprintln!("switchboard: {e:#}");
                return ExitCode::from(2);
            }
        };
    let cluster_watch = membership
        .cluster()
        .map(|c| cluster::watch(c.clone(), store.clone()));
    let realm = RegistrarConfig::default().realm;
    let node = NodeId(cfg.node_name.clone());
    let now = Clock::system().now();
    if cfg.demo {
        match seed::seed_demo(&*store, &realm, now).await {
            Ok(r) => tracing::info!(
                created = r.created,
                existing = r.existing,
                "demo tenant seeded"
            ),
            Err(e) => {
                eprintln!("switchboard: cannot seed the demo tenant: {e}");
                return ExitCode::from(1);
            }
        }
        if let Err(e) = switchboard_http::seed_demo_users(&*store).await {
            eprintln!("switchboard: cannot seed the demo users: {e}");
            return ExitCode::from(1);
        }
        tracing::warn!(
            user = switchboard_http::DEMO_ADMIN,
            password = switchboard_http::DEMO_ADMIN_PASSWORD,
            "demo tenant: the admin user has a published password; do not expose this node"
        );
    }
    let clocks = match center::tenant_clocks(&*store).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: cannot read the tenants: {e:#}");
            return ExitCode::from(1);
        }
    };
    let recorder = records::spawn(store.clone(), node.clone(), clocks, now).await;
    let load = center::Load {
        realm,
        data_dir: cfg.data_dir.clone(),
        clock: Clock::system(),
        store: store.clone(),
    };
    let hub = live::LiveHub::new(store.clone());
    // In a cluster agents and groups live on their home node; the others
    // reach them through proxies.
    let link = membership
        .cluster()
        .map(|c| Arc::new(remote::ClusterLink { cluster: c.clone() }));
    let registry = link.as_ref().map(|l| {
        switchboard_actors::remote::Registry::new(
            l.clone() as Arc<dyn switchboard_actors::remote::Link>
        )
    });
    if let Some(c) = membership.cluster() {
        c.settle(Duration::from_secs(3)).await;
    }
    // Calls this node's previous run left open (it died with them) are
    // closed before new ones come; in a cluster once this node holds its
    // own lease again (a survivor may be closing them right now).
    let node_lease = match membership.cluster() {
        Some(c) => core::take_node_lease(&*store, &recorder, &node, c.settings().down_after).await,
        None => {
            records::close_lost(&*store, &recorder, &node, None).await;
            None
        }
    };
    let centers = match center::load(&*store, &load, &recorder, &hub, registry.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: cannot start the call centers: {e:#}");
            return ExitCode::from(1);
        }
    };
    // Speak the prompts before the first call needs them.
    let prompts = centers.prompts();
    tokio::task::spawn_blocking(move || prompts.iter().for_each(|p| p.warm()));
    tracing::info!(
        sip = %transport.local_addr(),
        rtp = %format!("{}-{}", cfg.rtp_ports.0, cfg.rtp_ports.1),
        store = store.backend(),
        node = %node,
        tenants = centers.tenants.len(),
        "switchboard node listening (SIP on UDP and TCP)"
    );
    if cfg.demo {
        tracing::info!("demo tenant: SIP accounts 1001, 1002, 1003 (passwords pass1001..pass1003); dial 4000 for the hotline, *43 for echo, *44 for a prompt");
    }
    let core = core::SipCore::new(
        transport,
        core::CoreConfig {
            media,
            digest: cfg.sip_digest.clone(),
            centers,
            store: store.clone(),
            hub: hub.clone(),
            load: load.clone(),
            node,
            data_dir: cfg.data_dir.clone(),
            t1: cfg.sip_t1,
            cluster: registry
                .clone()
                .zip(link.clone())
                .map(|(r, l)| core::Clustered::new(r, l, recorder.clone(), node_lease)),
        },
    );
    let cluster_tasks = match (membership.cluster(), &registry, &link) {
        (Some(c), Some(r), Some(l)) => {
            // The WebSocket clients of every node hear every node's events.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            hub.set_relay(tx);
            vec![
                remote::serve(c, r.clone(), core.notices(), hub.clone()),
                remote::watch_homes(c, core.notices()),
                remote::relay_events(l.clone(), rx),
            ]
        }
        _ => Vec::new(),
    };
    hub.set_core(core.notices());
    // The HTTP API, with the live half over this node's actors.
    let state = switchboard_http::AppState::new(store.clone(), cfg.data_dir.clone())
        .with_sip_realm(RegistrarConfig::default().realm)
        .with_live(hub.clone())
        .with_cluster(membership.clone())
        .with_hooks(Arc::new(core::reload::Reloads(core.notices())));
    let state = if cfg.fault_injection {
        tracing::warn!("fault injection is on: POST /api/v1/cluster/fault with the cluster cookie makes actors panic");
        state.with_faults(Arc::new(live::FaultInjector {
            hub: hub.clone(),
            registry: registry.clone(),
        }))
    } else {
        state
    };
    let (http_stop_tx, http_stop) = tokio::sync::oneshot::channel::<()>();
    let http_addr = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let api = tokio::spawn(async move {
        let stopped = async {
            let _ = http_stop.await;
        };
        if let Err(e) = switchboard_http::serve(http, state, stopped).await {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    });
    tracing::info!(http = %http_addr, "HTTP API listening (/api/v1, /api/v1/ws, /metrics)");
    // Contact plans that come due are pushed to their agents.
    let reminders = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(30));
            loop {
                every.tick().await;
                hub.remind().await;
            }
        })
    };
    membership.set_calls(core.active_calls());
    let notices = core.notices();
    // This future is the main thread's (`main` blocks on it), and the core
    // is polled here: its thread is this one.
    raise_priority();
    let core_run = core.run(inbound);
    tokio::pin!(core_run);
    let core_ended = |r: anyhow::Result<()>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            ExitCode::from(1)
        }
    };
    let code = tokio::select! {
        r = &mut core_run => core_ended(r),
        why = async {
            tokio::select! {
                _ = signals.next() => "signal received",
                _ = membership.drain_requested() => "drain asked for",
            }
        } => {
            // SIGTERM drains: new calls are refused, the others take
            // this node's entities, the calls up end on their own
            // (bounded); a second signal stops at once.
            tracing::info!(reason = why, "stopping: draining first");
            membership.request_drain();
            let _ = notices.send(core::CallNotice::Drain).await;
            tokio::select! {
                r = &mut core_run => core_ended(r),
                drained = membership.drain(cfg.drain_timeout) => {
                    if drained {
                        tracing::info!("drained: every call has ended");
                    } else {
                        tracing::warn!(timeout_s = cfg.drain_timeout.as_secs(), "drain timed out with calls still up");
                    }
                    ExitCode::SUCCESS
                }
                _ = signals.next() => {
                    tracing::warn!("second signal: stopping now");
                    ExitCode::SUCCESS
                }
            }
        }
    };
    reminders.abort();
    cluster_tasks.iter().for_each(|t| t.abort());
    if let Some(w) = cluster_watch {
        w.abort();
    }
    membership.stop();
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(3), api).await;
    // What finished calls left is written before the process ends.
    recorder.flush(Duration::from_secs(5)).await;
    code
}

/// The embedded store in the data directory, or ScyllaDB when contact
/// points are given.
async fn open_store(cfg: &NodeConfig) -> anyhow::Result<Arc<dyn Store>> {
    if cfg.scylla.is_empty() {
        let dir = cfg.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
            .await
            .map_err(|e| anyhow::anyhow!("store task failed: {e}"))?
            .map_err(|e| {
                anyhow::anyhow!("cannot open the store in {}: {e}", cfg.data_dir.display())
            })?;
        return Ok(Arc::new(store));
    }
    let mut opts = ScyllaOptions::new(&cfg.scylla.join(","));
    opts.keyspace = cfg.scylla_keyspace.clone();
    let store = ScyllaStore::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot use ScyllaDB at {}: {e}", cfg.scylla.join(",")))?;
    Ok(Arc::new(store))
}

/// SIGTERM and Ctrl-C (SIGINT), listened for from the node's first
/// step: a signal that arrives while the node is still starting is kept
/// and drains it as soon as it is up, instead of killing the process.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let open = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, signal = name, "cannot listen for the signal");
                    None
                }
            };
            Signals {
                term: open(SignalKind::terminate(), "SIGTERM"),
                int: open(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// The next SIGTERM or Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => {}
                _ = recv(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How much higher than the process the SIP core's thread runs (a nice
/// value). Every message of every call waits for this one thread, so when
/// the CPUs are busy it goes before the actors' workers and the store's
/// threads, whose work is spread over many. Raising a priority needs
/// `CAP_SYS_NICE` (or `LimitNICE=` in a systemd unit); without it the core
/// runs at the process's priority and says so. Threads the runtime starts
/// later (some from this one) are set back to the process's priority.
const CORE_PRIORITY_RAISE: i32 = 10;

fn raise_priority() {
    let base = rustix::process::getpriority_process(None).unwrap_or(0);
    let want = base - CORE_PRIORITY_RAISE;
    match rustix::process::setpriority_process(None, want) {
        Ok(()) => tracing::info!(nice = want, "SIP core thread priority raised"),
        Err(e) => tracing::info!(
            nice = base,
            error = %e,
            "SIP core thread at the process's priority: raising it needs CAP_SYS_NICE or RLIMIT_NICE"
        ),
    }
}
