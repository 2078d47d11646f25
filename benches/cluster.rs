//! The cluster's failure detector, end to end: three node processes on
//! loopback (release binary, one shared data directory) form a cluster;
//! one is killed with SIGKILL and the time until both survivors report
//! it down (`GET /api/v1/cluster`, polled every 10 ms with the cluster
//! cookie) is measured; the node is restarted and the time until all
//! three see each other up again (re-dial with backoff) is measured too.
//!
//! Run: `cargo bench --bench cluster` (`SB_BENCH_ROUNDS`, default 5;
//! `SB_BENCH_DOWN_AFTER_MS`, default 2000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
        p
    } else {
        port()
    }
}

struct NodeProc {
    child: Child,
    http: u16,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Spec {
    name: &'static str,
    sip: u16,
    http: u16,
    cluster: u16,
    rtp: u16,
}

fn start(dir: &Path, s: &Spec, seed: u16, down_after: &str) -> NodeProc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--demo", "--node-name", s.name, "--data-dir"])
        .arg(dir)
        .args(["--sip", &format!("127.0.0.1:{}", s.sip)])
        .args(["--http", &format!("127.0.0.1:{}", s.http)])
        .args(["--rtp-ports", &format!("{}-{}", s.rtp, s.rtp + 99)])
        .args(["--cluster", &format!("127.0.0.1:{}", s.cluster)])
        .args(["--join", &format!("127.0.0.1:{seed}")])
        .args(["--down-after-ms", down_after])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard");
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", s.http)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} did not start",
            s.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    NodeProc {
        child,
        http: s.http,
    }
}

/// The healths `node` reports, by member name.
fn healths(http: u16, cookie: &str) -> Vec<(String, String)> {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", http)) else {
        return Vec::new();
    };
    let _ = write!(
        s,
        "GET /api/v1/cluster HTTP/1.0\r\nX-Switchboard-Cookie: {cookie}\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["name"].as_str()?.to_string(),
                m["health"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn wait(nodes: &[&NodeProc], cookie: &str, ok: impl Fn(&[(String, String)]) -> bool) -> Duration {
    let t0 = Instant::now();
    let mut done = vec![false; nodes.len()];
    while done.iter().any(|d| !d) {
        for (i, n) in nodes.iter().enumerate() {
            if !done[i] && ok(&healths(n.http, cookie)) {
                done[i] = true;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the cluster did not settle"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

fn all_up(h: &[(String, String)]) -> bool {
    h.len() == 3 && h.iter().all(|(_, x)| x == "up")
}

fn c_down(h: &[(String, String)]) -> bool {
    h.iter().any(|(n, x)| n == "c" && x == "down")
}

fn main() {
    let rounds: usize = std::env::var("SB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let down_after = std::env::var("SB_BENCH_DOWN_AFTER_MS").unwrap_or_else(|_| "2000".into());
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sb-bench-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let specs: Vec<Spec> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| Spec {
            name,
            sip: port(),
            http: port(),
            cluster: port(),
            rtp: 46000 + 200 * i as u16,
        })
        .collect();
    let seed = specs[0].cluster;
    let a = start(&dir, &specs[0], seed, &down_after);
    let b = start(&dir, &specs[1], seed, &down_after);
    let mut c = start(&dir, &specs[2], seed, &down_after);
    let cookie = std::fs::read_to_string(dir.join("cluster.cookie")).unwrap();
    let cookie = cookie.trim();
    let joined = wait(&[&a, &b, &c], cookie, all_up);
    println!(
        "three nodes up everywhere {:.0} ms after the last one's HTTP port opened",
        joined.as_secs_f64() * 1e3
    );
    println!("down after {down_after} ms of silence");
    let (mut detect, mut rejoin) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        c.child.kill().unwrap();
        c.child.wait().unwrap();
        let d = wait(&[&a, &b], cookie, c_down);
        drop(c);
        c = start(&dir, &specs[2], seed, &down_after);
        let r = wait(&[&a, &b, &c], cookie, all_up);
        println!(
            "round {round}: killed -> down on both survivors {:.0} ms; restarted (HTTP up) -> up on all three {:.0} ms",
            d.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3
        );
        detect.push(d);
        rejoin.push(r);
    }
    detect.sort();
    rejoin.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!(
        "detection: best {:.0} ms, median {:.0} ms, worst {:.0} ms; rejoin: best {:.0} ms, median {:.0} ms, worst {:.0} ms",
        ms(&detect[0]),
        ms(&detect[detect.len() / 2]),
        ms(&detect[detect.len() - 1]),
        ms(&rejoin[0]),
        ms(&rejoin[rejoin.len() / 2]),
        ms(&rejoin[rejoin.len() - 1]),
    );
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&dir);
}
