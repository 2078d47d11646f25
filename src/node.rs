//! A running node: binds the SIP transport, runs the SIP core, stops on
//! SIGTERM or Ctrl-C.

use crate::config::NodeConfig;
use crate::demo;
use std::process::ExitCode;
use switchboard_media::sip::parse::Limits;
use switchboard_media::sip::transport::SipTransport;

mod center;
mod core;
mod leg;
mod media;

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
    let accounts = if cfg.demo {
        demo::accounts()
    } else {
        Vec::new()
    };
    let media = match core::MediaConfig::new(&cfg) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        sip = %transport.local_addr(),
        rtp = %format!("{}-{}", cfg.rtp_ports.0, cfg.rtp_ports.1),
        demo = cfg.demo,
        "switchboard node listening (SIP on UDP and TCP)"
    );
    if cfg.demo {
        tracing::info!("demo tenant: SIP accounts 1001, 1002, 1003 (passwords pass1001..pass1003); dial *43 for echo, *44 for a prompt");
    }
    let center = if cfg.demo {
        match start_demo_center().await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("switchboard: cannot start the demo call center: {e:#}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let core = core::SipCore::new(
        transport,
        core::CoreConfig {
            accounts,
            media,
            digest: cfg.sip_digest.clone(),
            center,
            data_dir: cfg.data_dir.clone(),
        },
    );
    let stop = shutdown_signal();
    tokio::select! {
        r = core.run(inbound) => {
            if let Err(e) = r {
                eprintln!("switchboard: {e:#}");
                return ExitCode::from(1);
            }
        }
        _ = stop => {
            tracing::info!("stopping: signal received");
        }
    }
    ExitCode::SUCCESS
}

/// The demo call center, with its call records and agent status changes
/// logged as JSON lines until storage keeps them.
async fn start_demo_center() -> anyhow::Result<center::CallCenter> {
    let (records_tx, mut records) = tokio::sync::mpsc::unbounded_channel();
    let (status_tx, mut statuses) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(r) = records.recv().await {
            let r: switchboard_actors::call::CallSummary = r;
            let json = serde_json::to_string(&r).unwrap_or_default();
            tracing::info!(
                call = %r.call,
                agent = r.agent.as_ref().map(|a| a.0.as_str()).unwrap_or("-"),
                hangup = ?r.hangup_reason,
                record = %json,
                "call record"
            );
        }
    });
    tokio::spawn(async move {
        while let Some(e) = statuses.recv().await {
            let switchboard_actors::agent::AgentEvent::Changed {
                agent, to, reason, ..
            } = e;
            tracing::info!(%agent, status = ?to, ?reason, "agent status");
        }
    });
    let center = center::CallCenter::demo(records_tx, status_tx).await?;
    // Speak the prompts before the first call needs them.
    let prompts = center.prompts.clone();
    tokio::task::spawn_blocking(move || prompts.warm());
    Ok(center)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
