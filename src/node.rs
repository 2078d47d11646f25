//! A running node: binds the SIP transport, runs the SIP core, stops on
//! SIGTERM or Ctrl-C.

use crate::config::NodeConfig;
use crate::demo;
use std::process::ExitCode;
use switchboard_media::sip::parse::Limits;
use switchboard_media::sip::transport::SipTransport;

mod core;
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
    let core = core::SipCore::new(
        transport,
        core::CoreConfig {
            accounts,
            media,
            digest: cfg.sip_digest.clone(),
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
