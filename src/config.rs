//! Node configuration: command-line flags over an optional TOML file over
//! defaults. Unknown keys in the file are rejected; `validate` explains
//! every rejection in words.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use switchboard_media::sip::digest::Algorithm;

/// The `[node]`-less flat file format: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub sip: Option<String>,
    pub http: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub rtp_ports: Option<String>,
    /// Digest algorithms challenged with, e.g. `["SHA-256", "MD5"]`.
    pub sip_digest: Option<Vec<String>>,
    /// SIP timer T1 in milliseconds (RFC 3261 §17).
    pub sip_t1_ms: Option<u64>,
    pub demo: Option<bool>,
    pub node_name: Option<String>,
    /// ScyllaDB contact points, e.g. `["10.0.0.1:9042", "10.0.0.2:9042"]`.
    pub scylla: Option<Vec<String>>,
    pub scylla_keyspace: Option<String>,
    /// This node's cluster address, e.g. `"10.0.0.1:7100"`.
    pub cluster: Option<String>,
    /// The host other nodes reach this node at (NAT, containers, a proxy),
    /// on the cluster port; default: the cluster address's host.
    pub cluster_advertise: Option<String>,
    /// Mutual TLS between the nodes: this node's certificate chain and
    /// key, and the cluster CA (PEM files; all three or none).
    pub cluster_tls_cert: Option<PathBuf>,
    pub cluster_tls_key: Option<PathBuf>,
    pub cluster_tls_ca: Option<PathBuf>,
    /// Members to join through, e.g. `["10.0.0.2:7100"]`.
    pub join: Option<Vec<String>>,
    /// The cluster's shared secret.
    pub cookie: Option<String>,
    /// Silence after which a member is down, in milliseconds.
    pub cluster_down_after_ms: Option<u64>,
    /// How long a draining node waits for its calls, in seconds.
    pub drain_timeout_secs: Option<u64>,
    /// Let an operator make actors panic on purpose (game days).
    pub fault_injection: Option<bool>,
    /// Seconds without media from a phone after which its leg ends (0:
    /// never).
    pub media_timeout_secs: Option<u64>,
}

/// Cluster settings, when the node joins one.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    /// (certificate chain, key, CA), PEM files.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub join: Vec<String>,
    /// `None`: the cookie file in the data directory (created on first
    /// use), shared by the nodes on one data directory.
    pub cookie: Option<String>,
    pub down_after: std::time::Duration,
}

/// The settings a node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// SIP over UDP and TCP on the same address.
    pub sip: SocketAddr,
    /// HTTP API address: parsed and checked now, served once the API lands.
    #[allow(dead_code)]
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// Inclusive RTP port range; RTP on even ports, RTCP on the next.
    pub rtp_ports: (u16, u16),
    /// Digest algorithms the registrar challenges with, in order.
    pub sip_digest: Vec<Algorithm>,
    /// SIP timer T1: every retransmission interval and transaction
    /// timeout is a multiple of it.
    pub sip_t1: std::time::Duration,
    /// Seed the demo tenant.
    pub demo: bool,
    /// How this node names itself in records, statistics partials and
    /// (later) the cluster; unique among the nodes sharing a store.
    pub node_name: String,
    /// ScyllaDB contact points; empty: the embedded store in `data_dir`.
    pub scylla: Vec<String>,
    pub scylla_keyspace: String,
    /// `None`: a node on its own.
    pub cluster: Option<ClusterSettings>,
    /// How long a draining node (SIGTERM) waits for its calls to end.
    pub drain_timeout: std::time::Duration,
    /// `POST /api/v1/cluster/fault` makes an agent's or a group's actor
    /// panic (with the cluster cookie), to see it recover.
    pub fault_injection: bool,
    /// A phone that sent media and then nothing for this long is taken for
    /// gone and its leg ended (`None`: never).
    pub media_timeout: Option<std::time::Duration>,
}

/// Flags as given on the command line (all optional).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub sip: Option<String>,
    pub http: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub rtp_ports: Option<String>,
    /// Comma-separated, e.g. `SHA-256,MD5`.
    pub sip_digest: Option<String>,
    pub sip_t1_ms: Option<u64>,
    pub demo: bool,
    pub node_name: Option<String>,
    /// Comma-separated `host:port` list.
    pub scylla: Option<String>,
    pub scylla_keyspace: Option<String>,
    pub cluster: Option<String>,
    pub cluster_advertise: Option<String>,
    pub cluster_tls_cert: Option<PathBuf>,
    pub cluster_tls_key: Option<PathBuf>,
    pub cluster_tls_ca: Option<PathBuf>,
    /// Comma-separated `host:port` list.
    pub join: Option<String>,
    pub cookie: Option<String>,
    pub down_after_ms: Option<u64>,
    pub drain_timeout_secs: Option<u64>,
    pub fault_injection: bool,
    pub media_timeout_secs: Option<u64>,
}

/// The machine's host name, the default node name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

pub fn load(flags: &Flags) -> Result<NodeConfig> {
    let file = match &flags.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let cluster_file = ClusterFile {
        listen: file.cluster.clone(),
        advertise: file.cluster_advertise.clone(),
        tls: [
            file.cluster_tls_cert.clone(),
            file.cluster_tls_key.clone(),
            file.cluster_tls_ca.clone(),
        ],
        join: file.join.clone(),
        cookie: file.cookie.clone(),
        down_after_ms: file.cluster_down_after_ms,
    };
    let sip = flags
        .sip
        .clone()
        .or(file.sip)
        .unwrap_or_else(|| "0.0.0.0:5060".into());
    let http = flags
        .http
        .clone()
        .or(file.http)
        .unwrap_or_else(|| "0.0.0.0:8080".into());
    let rtp = flags
        .rtp_ports
        .clone()
        .or(file.rtp_ports)
        .unwrap_or_else(|| "20000-30000".into());
    let config = NodeConfig {
        sip: parse_addr("sip", &sip)?,
        http: parse_addr("http", &http)?,
        data_dir: flags
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./switchboard-data")),
        rtp_ports: parse_port_range(&rtp)?,
        sip_digest: match (&flags.sip_digest, file.sip_digest) {
            (Some(list), _) => parse_digest(list.split(','))?,
            (None, Some(list)) => parse_digest(list.iter().map(String::as_str))?,
            (None, None) => vec![Algorithm::Md5],
        },
        sip_t1: std::time::Duration::from_millis(flags.sip_t1_ms.or(file.sip_t1_ms).unwrap_or(500)),
        demo: flags.demo || file.demo.unwrap_or(false),
        node_name: flags
            .node_name
            .clone()
            .or(file.node_name)
            .unwrap_or_else(hostname),
        scylla: list(flags.scylla.as_deref(), file.scylla),
        scylla_keyspace: flags
            .scylla_keyspace
            .clone()
            .or(file.scylla_keyspace)
            .unwrap_or_else(|| "switchboard".into()),
        cluster: None,
        drain_timeout: std::time::Duration::from_secs(
            flags
                .drain_timeout_secs
                .or(file.drain_timeout_secs)
                .unwrap_or(300),
        ),
        fault_injection: flags.fault_injection || file.fault_injection.unwrap_or(false),
        media_timeout: match flags
            .media_timeout_secs
            .or(file.media_timeout_secs)
            .unwrap_or(60)
        {
            0 => None,
            s => Some(std::time::Duration::from_secs(s)),
        },
    };
    let config = NodeConfig {
        cluster: cluster_settings(flags, cluster_file)?,
        ..config
    };
    config.validate()?;
    Ok(config)
}

/// The cluster part of the config file.
struct ClusterFile {
    listen: Option<String>,
    advertise: Option<String>,
    tls: [Option<PathBuf>; 3],
    join: Option<Vec<String>>,
    cookie: Option<String>,
    down_after_ms: Option<u64>,
}

fn cluster_settings(flags: &Flags, file: ClusterFile) -> Result<Option<ClusterSettings>> {
    let ClusterFile {
        listen,
        advertise,
        tls,
        join,
        cookie,
        down_after_ms,
    } = file;
    let join = list(flags.join.as_deref(), join);
    let advertise = flags.cluster_advertise.clone().or(advertise);
    let [cert, key, ca] = tls;
    let tls = match (
        flags.cluster_tls_cert.clone().or(cert),
        flags.cluster_tls_key.clone().or(key),
        flags.cluster_tls_ca.clone().or(ca),
    ) {
        (Some(c), Some(k), Some(a)) => Some((c, k, a)),
        (None, None, None) => None,
        _ => bail!("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together: give all three or none"),
    };
    let Some(listen) = flags.cluster.clone().or(listen) else {
        if !join.is_empty() {
            bail!("--join needs --cluster: the address this node takes cluster connections on");
        }
        return Ok(None);
    };
    let listen = parse_addr("cluster", &listen)?;
    if listen.port() == 0 || (listen.ip().is_unspecified() && advertise.is_none()) {
        bail!("--cluster: {listen} must be the address and port other nodes reach this node at (not port 0; 0.0.0.0 only with --cluster-advertise)");
    }
    if let Some(a) = &advertise {
        if a.is_empty()
            || a.parse::<SocketAddr>().is_ok()
            || (a.contains(':') && a.parse::<std::net::Ipv6Addr>().is_err())
        {
            bail!("--cluster-advertise: {a:?} must be a host or address without a port (the --cluster port is used)");
        }
    }
    for j in &join {
        if !j.contains(':') {
            bail!("--join: {j:?} is not host:port (e.g. 10.0.0.2:7100)");
        }
    }
    let down_after_ms = flags.down_after_ms.or(down_after_ms).unwrap_or(2000);
    if !(300..=60_000).contains(&down_after_ms) {
        bail!("--down-after-ms: {down_after_ms} must be 300 to 60000");
    }
    let cookie = flags.cookie.clone().or(cookie);
    if cookie.as_deref().is_some_and(|c| c.len() < 8) {
        bail!("--cookie: use at least 8 characters");
    }
    Ok(Some(ClusterSettings {
        listen,
        advertise,
        tls,
        join,
        cookie,
        down_after: std::time::Duration::from_millis(down_after_ms),
    }))
}

/// A comma-separated flag, else the file's list, else nothing.
fn list(flag: Option<&str>, file: Option<Vec<String>>) -> Vec<String> {
    match (flag, file) {
        (Some(l), _) => l
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        (None, Some(l)) => l,
        (None, None) => Vec::new(),
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn parse_addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.parse()
        .with_context(|| format!("--{what}: {s:?} is not an address like 0.0.0.0:5060"))
}

/// Digest algorithm names, without repeats; at least one.
fn parse_digest<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<Algorithm>> {
    let mut out = Vec::new();
    for name in names.map(str::trim).filter(|n| !n.is_empty()) {
        let alg = Algorithm::from_name(name).map_err(|_| {
            anyhow::anyhow!("--sip-digest: unknown algorithm {name:?} (use MD5 and/or SHA-256)")
        })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        bail!("--sip-digest: name at least one algorithm (MD5, SHA-256)");
    }
    Ok(out)
}

/// `LO-HI`, both inclusive.
pub fn parse_port_range(s: &str) -> Result<(u16, u16)> {
    let Some((lo, hi)) = s.split_once('-') else {
        bail!("--rtp-ports: {s:?} is not a range like 20000-30000");
    };
    let lo: u16 = lo
        .trim()
        .parse()
        .with_context(|| format!("--rtp-ports: bad low port {lo:?}"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .with_context(|| format!("--rtp-ports: bad high port {hi:?}"))?;
    Ok((lo, hi))
}

impl NodeConfig {
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = self.rtp_ports;
        if lo < 1024 {
            bail!("--rtp-ports: the range must start at 1024 or above (got {lo})");
        }
        if hi < lo.saturating_add(3) {
            bail!("--rtp-ports: {lo}-{hi} holds fewer than two RTP/RTCP pairs");
        }
        let t1 = self.sip_t1.as_millis();
        if !(10..=10_000).contains(&t1) {
            bail!("--sip-t1-ms: {t1} must be 10 to 10000 (500 is the standard value)");
        }
        if let Some(t) = self.media_timeout {
            if !(5..=86_400).contains(&t.as_secs()) {
                bail!(
                    "--media-timeout-secs: {} must be 5 to 86400, or 0 for never (the default is 60)",
                    t.as_secs()
                );
            }
        }
        if self.sip.port() == 0 {
            bail!("--sip: a fixed port is needed so phones can reach the node");
        }
        let name_ok = !self.node_name.is_empty()
            && self.node_name.len() <= 64
            && self
                .node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            bail!(
                "--node-name: {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.node_name
            );
        }
        for n in &self.scylla {
            if !n.contains(':') {
                bail!("--scylla: {n:?} is not host:port (e.g. 10.0.0.1:9042)");
            }
        }
        let ks_ok = !self.scylla_keyspace.is_empty()
            && self.scylla_keyspace.len() <= 48
            && self
                .scylla_keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ks_ok {
            bail!(
                "--scylla-keyspace: {:?} must be 1 to 48 letters, digits or '_'",
                self.scylla_keyspace
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = load(&Flags::default()).unwrap();
        assert_eq!(c.sip.to_string(), "0.0.0.0:5060");
        assert_eq!(c.rtp_ports, (20000, 30000));
        assert_eq!(c.sip_digest, vec![Algorithm::Md5]);
        assert_eq!(c.sip_t1.as_millis(), 500);
        assert!(!c.demo);
    }

    #[test]
    fn flags_override_file_and_unknown_keys_fail() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            "sip = \"127.0.0.1:5070\"\nrtp_ports = \"40000-40100\"\ndemo = true\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path.clone()),
            sip: Some("127.0.0.1:5080".into()),
            ..Flags::default()
        };
        let c = load(&flags).unwrap();
        assert_eq!(c.sip.port(), 5080);
        assert_eq!(c.rtp_ports, (40000, 40100));
        assert!(c.demo);
        std::fs::write(&path, "sipp = \"x\"\n").unwrap();
        let e = load(&flags).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = load(&Flags {
            rtp_ports: Some("30000-20000".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("fewer than two"));
        let e = load(&Flags {
            sip: Some("nope".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--sip"));
        let e = load(&Flags {
            config: Some("/nonexistent/x.toml".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("cannot read config file"));
        let e = load(&Flags {
            sip_digest: Some("SHA-512".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("unknown algorithm"), "{e}");
        let c = load(&Flags {
            sip_digest: Some("sha-256, MD5".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.sip_digest, vec![Algorithm::Sha256, Algorithm::Md5]);
        let e = load(&Flags {
            sip_t1_ms: Some(5),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--sip-t1-ms"), "{e}");
        let c = load(&Flags {
            sip_t1_ms: Some(2000),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.sip_t1.as_millis(), 2000);
        let e = load(&Flags {
            node_name: Some("node one".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--node-name"), "{e}");
        let e = load(&Flags {
            scylla: Some("10.0.0.1".into()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("host:port"), "{e}");
        let c = load(&Flags {
            scylla: Some("10.0.0.1:9042, 10.0.0.2:9042".into()),
            node_name: Some("sb-1".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.scylla.len(), 2);
        assert_eq!(c.node_name, "sb-1");
    }

    #[test]
    fn cluster_settings() {
        assert!(load(&Flags::default()).unwrap().cluster.is_none());
        let c = load(&Flags {
            cluster: Some("127.0.0.1:7100".into()),
            join: Some("127.0.0.2:7100, 127.0.0.3:7100".into()),
            ..Flags::default()
        })
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(c.join.len(), 2);
        assert_eq!(c.down_after.as_millis(), 2000);
        assert_eq!(c.advertise, None);
        let c = load(&Flags {
            cluster: Some("0.0.0.0:7100".into()),
            cluster_advertise: Some("sb-1.example.net".into()),
            ..Flags::default()
        })
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(c.advertise.as_deref(), Some("sb-1.example.net"));
        for (flags, want) in [
            (
                Flags {
                    join: Some("127.0.0.2:7100".into()),
                    ..Flags::default()
                },
                "needs --cluster",
            ),
            (
                Flags {
                    cluster: Some("0.0.0.0:7100".into()),
                    ..Flags::default()
                },
                "other nodes reach",
            ),
            (
                Flags {
                    cluster: Some("0.0.0.0:7100".into()),
                    cluster_advertise: Some("10.0.0.1:7100".into()),
                    ..Flags::default()
                },
                "without a port",
            ),
            (
                Flags {
                    cluster: Some("127.0.0.1:7100".into()),
                    cluster_tls_cert: Some("node.pem".into()),
                    ..Flags::default()
                },
                "all three or none",
            ),
            (
                Flags {
                    cluster: Some("127.0.0.1:7100".into()),
                    down_after_ms: Some(10),
                    ..Flags::default()
                },
                "300 to 60000",
            ),
            (
                Flags {
                    cluster: Some("127.0.0.1:7100".into()),
                    cookie: Some("short".into()),
                    ..Flags::default()
                },
                "8 characters",
            ),
        ] {
            let e = load(&flags).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
