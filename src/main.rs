//! `switchboard`: one node of the Switchboard call center.

mod cluster_cli;
mod config;
mod log;
mod node;
mod tts;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A distributed cloud call center node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of `Serve` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: SIP on UDP and TCP, RTP media, the diagnostic numbers.
    Serve {
        /// TOML file with the same settings as the flags (flags win).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// SIP address, UDP and TCP [default: 0.0.0.0:5060]
        #[arg(long, value_name = "ADDR")]
        sip: Option<String>,
        /// HTTP API address [default: 0.0.0.0:8080]
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Data directory [default: ./switchboard-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// RTP port range LO-HI [default: 20000-30000]
        #[arg(long, value_name = "LO-HI")]
        rtp_ports: Option<String>,
        /// Digest algorithms to challenge SIP phones with, in order of
        /// preference [default: MD5]; e.g. SHA-256,MD5 (RFC 8760). Some
        /// phones refuse a challenge that names an algorithm they lack.
        #[arg(long, value_name = "ALGS")]
        sip_digest: Option<String>,
        /// SIP timer T1, the round-trip estimate every retransmission and
        /// timeout derives from (RFC 3261 §17), in ms [default: 500];
        /// raise it on high-latency links, lower it only on a LAN
        #[arg(long, value_name = "MS")]
        sip_t1_ms: Option<u64>,
        /// Create the demo tenant (SIP accounts 1001-1003, passwords pass1001-pass1003).
        #[arg(long)]
        demo: bool,
        /// This node's name in records and statistics [default: the host name]
        #[arg(long, value_name = "NAME")]
        node_name: Option<String>,
        /// ScyllaDB contact points host:port,... [default: the embedded store in the data directory]
        #[arg(long, value_name = "HOSTS")]
        scylla: Option<String>,
        /// ScyllaDB keyspace [default: switchboard]
        #[arg(long, value_name = "NAME")]
        scylla_keyspace: Option<String>,
        /// Join a cluster: the address other nodes reach this node at
        /// (TCP), e.g. 10.0.0.1:7100 [default: a node on its own]
        #[arg(long, value_name = "ADDR")]
        cluster: Option<String>,
        /// The host other nodes reach this node at, on the --cluster port
        /// (behind NAT, in a container, through a proxy); then --cluster
        /// may listen on 0.0.0.0 [default: the --cluster host]
        #[arg(long, value_name = "HOST")]
        cluster_advertise: Option<String>,
        /// Mutual TLS between the nodes: this node's certificate chain
        /// (PEM), signed by the cluster CA, naming the host others dial
        #[arg(long, value_name = "FILE")]
        cluster_tls_cert: Option<std::path::PathBuf>,
        /// This node's private key (PEM)
        #[arg(long, value_name = "FILE")]
        cluster_tls_key: Option<std::path::PathBuf>,
        /// The cluster CA (PEM): only nodes with a certificate it signed
        /// are accepted
        #[arg(long, value_name = "FILE")]
        cluster_tls_ca: Option<std::path::PathBuf>,
        /// Members to join through: host:port,...
        #[arg(long, value_name = "ADDRS")]
        join: Option<String>,
        /// The cluster's shared secret [default: the file cluster.cookie in
        /// the data directory, created on first use]
        #[arg(
            long,
            value_name = "SECRET",
            env = "SWITCHBOARD_COOKIE",
            hide_env_values = true
        )]
        cookie: Option<String>,
        /// Silence after which a member is down, in ms [default: 2000]
        #[arg(long, value_name = "MS")]
        down_after_ms: Option<u64>,
        /// On SIGTERM (or `switchboard drain`) refuse new calls and wait
        /// this long for the calls up to end [default: 300]
        #[arg(long, value_name = "SECS")]
        drain_timeout_secs: Option<u64>,
        /// Let an operator holding the cluster cookie make an agent's or a
        /// skill group's actor panic on purpose (POST
        /// /api/v1/cluster/fault), to watch it recover; off by default
        #[arg(long)]
        fault_injection: bool,
        /// A phone that has sent media and then sends nothing (no RTP, no
        /// RTCP) for this long is taken for gone: its leg ends with a BYE,
        /// as if it had hung up; 0: never [default: 60]
        #[arg(long, value_name = "SECS")]
        media_timeout_secs: Option<u64>,
    },
    /// Drain a running node: it refuses new calls, leaves the cluster (the
    /// others stop placing entities on it) and exits once its calls have
    /// ended.
    Drain {
        #[command(flatten)]
        node: NodeApi,
    },
    /// Ask a running node about its cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

/// How a command reaches a running node's API.
#[derive(Debug, clap::Args)]
struct NodeApi {
    /// The node's HTTP API
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: String,
    /// The cluster cookie [default: read from the data directory]
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_COOKIE",
        hide_env_values = true
    )]
    cookie: Option<String>,
    /// The node's data directory, for its cookie file
    #[arg(long, value_name = "DIR", default_value = "./switchboard-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The members as a node sees them (GET /api/v1/cluster).
    Status {
        #[command(flatten)]
        node: NodeApi,
        /// Where this entity lives instead: KIND:ID (agent:1001, group:support)
        #[arg(long, value_name = "KIND:ID")]
        placement: Option<String>,
        /// The tenant of --placement
        #[arg(long, value_name = "TENANT", default_value = "demo")]
        tenant: String,
    },
    /// Make an agent's or a skill group's actor on the node panic, to see
    /// it recover (the node must run with --fault-injection).
    Fault {
        #[command(flatten)]
        node: NodeApi,
        /// The actor: KIND:ID (agent:1001, group:support)
        #[arg(value_name = "KIND:ID")]
        target: String,
        /// The actor's tenant
        #[arg(long, value_name = "TENANT", default_value = "demo")]
        tenant: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (lines, _flush_at_exit) = match log::start(std::io::stdout()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("switchboard: cannot start the log thread: {e}");
            return ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(lines)
        .init();
    match cli.command {
        Command::Serve {
            config,
            sip,
            http,
            data_dir,
            rtp_ports,
            sip_digest,
            sip_t1_ms,
            demo,
            node_name,
            scylla,
            scylla_keyspace,
            cluster,
            cluster_advertise,
            cluster_tls_cert,
            cluster_tls_key,
            cluster_tls_ca,
            join,
            cookie,
            down_after_ms,
            drain_timeout_secs,
            fault_injection,
            media_timeout_secs,
        } => {
            let flags = config::Flags {
                config,
                sip,
                http,
                data_dir,
                rtp_ports,
                sip_digest,
                sip_t1_ms,
                demo,
                node_name,
                scylla,
                scylla_keyspace,
                cluster,
                cluster_advertise,
                cluster_tls_cert,
                cluster_tls_key,
                cluster_tls_ca,
                join,
                cookie,
                down_after_ms,
                drain_timeout_secs,
                fault_injection,
                media_timeout_secs,
            };
            let cfg = match config::load(&flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("switchboard: {e:#}");
                    return ExitCode::from(2);
                }
            };
            // The SIP core's thread, this one, gets a raised priority (see
            // `node::run`); a thread the runtime starts keeps the one
            // the process began with, even when the core starts it.
            let nice = rustix::process::getpriority_process(None).unwrap_or(0);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_start(move || {
                    let _ = rustix::process::setpriority_process(None, nice);
                })
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("switchboard: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            runtime.block_on(node::run(cfg))
        }
        Command::Drain { node } => {
            match cluster_cli::drain(&node.http, node.cookie, &node.data_dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchboard: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Cluster {
            command:
                ClusterCommand::Status {
                    node,
                    placement,
                    tenant,
                },
        } => match cluster_cli::status(
            &node.http,
            node.cookie,
            &node.data_dir,
            placement.as_deref(),
            &tenant,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Cluster {
            command:
                ClusterCommand::Fault {
                    node,
                    target,
                    tenant,
                },
        } => match cluster_cli::fault(&node.http, node.cookie, &node.data_dir, &target, &tenant) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
