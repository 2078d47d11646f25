//! A node under test: the real binary, on loopback ports of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod cluster;
pub mod customer;
pub mod phone;
pub mod records;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A free port for both UDP and TCP on 127.0.0.1.
/// A port free for both UDP and TCP on loopback. Picked below the kernel's
/// ephemeral range (32768 and up on Linux), so a connection some other test
/// opens meanwhile cannot take it before the program we hand it to binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports free for both UDP and TCP (baresip
/// binds its TLS transport on the port after its SIP port).
pub fn free_ports(n: u16) -> u16 {
    loop {
        let first = 20_000 + (rand_u32() % 12_000) as u16;
        let free = (first..first + n).all(|port| {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return first;
        }
    }
}

pub struct Node {
    pub child: Child,
    pub sip: SocketAddr,
    /// The HTTP API, as the node reported it.
    pub http: SocketAddr,
    pub data_dir: std::path::PathBuf,
    pub log: mpsc::Receiver<String>,
    pub lines: Vec<String>,
}

impl Node {
    pub fn start() -> Node {
        Node::start_with(&[])
    }

    /// A data directory of its own for a node of this test.
    pub fn fresh_data_dir() -> std::path::PathBuf {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "sb-test-{}-{slot}-{}",
            std::process::id(),
            rand_u32()
        ));
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    /// A node with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Node {
        Node::start_in(Node::fresh_data_dir(), extra)
    }

    /// A node on `data` (a store a test may have filled), with extra flags.
    pub fn start_in(data: std::path::PathBuf, extra: &[&str]) -> Node {
        Node::start_at(data, free_port(), extra)
    }

    /// The same, with SIP on `port` (a node restarted where its callers
    /// know it).
    pub fn start_at(data: std::path::PathBuf, port: u16, extra: &[&str]) -> Node {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 50) as u16;
        let rtp_lo = 32000 + (slot % 60) * 500;
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--demo",
                "--sip",
                &format!("127.0.0.1:{port}"),
                "--http",
                "127.0.0.1:0",
                "--rtp-ports",
                &format!("{rtp_lo}-{}", rtp_lo + 400),
                "--data-dir",
                data.to_str().unwrap_or("/tmp/sb-test"),
            ])
            .args(extra)
            // SB_TEST_LOG=debug (or any filter) for more of the node's log.
            .env(
                "RUST_LOG",
                std::env::var("SB_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchboard");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        let mut node = Node {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], port)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data.clone(),
            log: rx,
            lines: Vec::new(),
        };
        assert!(
            node.wait_log("HTTP API listening", Duration::from_secs(20)),
            "node did not start: {:?}",
            node.lines
        );
        node.http = node
            .lines
            .iter()
            .find(|l| l.contains("HTTP API listening"))
            .and_then(|l| l.split("http=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("the HTTP address in the log");
        node
    }

    /// Waits until a log line contains `needle` (bounded).
    pub fn wait_log(&mut self, needle: &str, within: Duration) -> bool {
        if self.lines.iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.lines.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// One UDP request, its first answer's status code (None: no answer
    /// within 500 ms).
    pub fn udp_exchange(&self, bytes: &[u8]) -> Option<(u16, String)> {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.send_to(bytes, self.sip).ok()?;
        let mut buf = [0u8; 65536];
        loop {
            let (n, _) = s.recv_from(&mut buf).ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code: u16 = text.get(8..11)?.parse().ok()?;
            if code >= 200 {
                return Some((code, text));
            }
        }
    }

    /// The value of an unlabelled sample on the node's `/metrics` now.
    pub fn metric(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// One request to the node's HTTP API: the status and the JSON body
    /// (`null` when there is none).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).expect("connect to the HTTP API");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        // HTTP/1.0: the answer is not chunked and the connection closes.
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.http,
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Logs `user` of the demo tenant in: its API token.
    pub fn login(&self, user: &str, password: &str) -> String {
        let body = serde_json::json!({"tenant": "demo", "user": user, "password": password});
        let (status, v) = self.api("POST", "/api/v1/auth/login", None, Some(&body));
        assert_eq!(status, 200, "login of {user}: {v}");
        v["token"].as_str().expect("a token").to_owned()
    }

    /// `agent`'s status now (`ready`, `talking`, …), read with `token`.
    pub fn status_of(&self, token: &str, agent: &str) -> String {
        let (_, v) = self.api(
            "GET",
            &format!("/api/v1/agents/{agent}/status"),
            Some(token),
            None,
        );
        v["status"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (bounded, reading every 100 ms) until `agent`'s status is
    /// `status`; returns the last status read.
    pub fn wait_status(&self, token: &str, agent: &str, status: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let now = self.status_of(token, agent);
            if now == status || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets `agent`'s status with `token` (the API must take it).
    pub fn set_status(&self, token: &str, agent: &str, status: &str) {
        let (code, v) = self.api(
            "PUT",
            &format!("/api/v1/agents/{agent}/status"),
            Some(token),
            Some(&serde_json::json!({"status": status})),
        );
        assert_eq!(code, 200, "{agent} to {status}: {v}");
    }

    /// Waits (bounded) until the metric `name` reads `value`; its last
    /// reading.
    pub fn wait_metric(&self, name: &str, value: f64, within: Duration) -> Option<f64> {
        let deadline = Instant::now() + within;
        loop {
            let now = self.metric(name);
            if now == Some(value) || Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The number of log lines seen so far (and now) that contain `needle`.
    pub fn count_log(&mut self, needle: &str) -> usize {
        while let Ok(l) = self.log.try_recv() {
            self.lines.push(l);
        }
        self.lines.iter().filter(|l| l.contains(needle)).count()
    }

    pub fn options(&self) -> Option<u16> {
        let msg = format!(
            "OPTIONS sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{1}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{0}>\r\nCall-ID: probe-{1}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            self.sip,
            rand_u32()
        );
        self.udp_exchange(msg.as_bytes()).map(|(c, _)| c)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP peer that sends raw SIP and reads what comes back.
pub struct Peer {
    pub sock: UdpSocket,
    pub node: SocketAddr,
}

impl Peer {
    pub fn new(node: &Node) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Peer {
            sock,
            node: node.sip,
        }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    pub fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.node).unwrap();
    }

    /// Every message received within `within`.
    pub fn recv_all(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => break,
            }
        }
        out
    }

    /// The first message starting with `prefix` within `within`.
    pub fn recv_starting(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            let (n, _) = self.sock.recv_from(&mut buf).ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(prefix) {
                return Some(text);
            }
        }
        None
    }
}

/// The value of the first header `name` in a SIP message.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ (NEXT.fetch_add(1, Ordering::Relaxed) as u32).wrapping_mul(2654435761)
}

/// Fails with instructions when a peer program is missing.
pub fn require(program: &str, package: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{program} is not installed: run .ci/run or apt-get install {package}"
    );
}

pub fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A phone that loses its network mid-call (SIPp, `tests/sipp/quiet_agent.xml`,
/// at 127.0.0.1:`port`): it answers one INVITE, sends 7 s of audio, then
/// nothing, and ends once it gets a BYE (bounded: 60 s).
pub fn quiet_sipp_phone(port: u16) -> Child {
    require("sipp", "sip-tester");
    let media = free_ports(2);
    Command::new("timeout")
        .args(["60", "sipp", "-sf"])
        .arg(repo("tests/sipp/quiet_agent.xml"))
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-p", &port.to_string(), "-mp", &media.to_string()])
        .args(["-timeout", "50s", "-trace_err"])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp")
}

/// What a baresip phone printed says the node hung its call up.
pub fn assert_hung_up(out: &str) {
    assert!(
        out.contains("terminated") || out.contains("closed"),
        "the phone was not hung up: {out}"
    );
}

/// No call and no media leg is left up on the node (bounded wait).
pub fn assert_nothing_left_up(node: &Node) {
    for gauge in ["switchboard_calls_active", "switchboard_legs_active"] {
        let left = node.wait_metric(gauge, 0.0, Duration::from_secs(5));
        assert_eq!(left, Some(0.0), "{gauge} after the call");
    }
}

/// Runs SIPp against the node with a scenario from tests/sipp; true when
/// every call succeeded.
/// A SIPp run in the background against `target`, bounded by `timeout`
/// seconds; its directory holds its logs.
pub struct SippRun {
    pub child: std::process::Child,
    pub dir: std::path::PathBuf,
}

impl SippRun {
    pub fn start(target: SocketAddr, scenario: &str, extra: &[&str], timeout: u32) -> SippRun {
        require("sipp", "sip-tester");
        let dir =
            std::env::temp_dir().join(format!("sb-sipp-{}-{}", std::process::id(), rand_u32()));
        let _ = std::fs::create_dir_all(&dir);
        let child = Command::new("timeout")
            .args(["-k", "2", &timeout.to_string(), "sipp"])
            .arg(target.to_string())
            .arg("-sf")
            .arg(repo(&format!("tests/sipp/{scenario}.xml")))
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin"])
            .args(["-p", &free_port().to_string()])
            .args(["-trace_err", "-trace_logs", "-trace_stat", "-fd", "1"])
            .args(extra)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp");
        SippRun { child, dir }
    }

    /// Waits for SIPp to end: whether every call succeeded, and the text
    /// of its logs (`-trace_logs`) and errors (`-trace_err`).
    pub fn finish(mut self) -> (bool, String, String) {
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        let read = |suffix: &str| {
            std::fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<String>()
        };
        (ok, read("_logs.log"), read("_errors.log"))
    }
}

/// Registers SIP account `user` (digest with `password`) with its
/// contact at `127.0.0.1:contact_port`: a phone that is some other
/// program (a SIPp UAS) listening there. Panics if the node refuses.
pub fn register_at(node: &Node, user: &str, password: &str, contact_port: u16) {
    use switchboard_media::sip::digest::{authorization, parse_challenge};
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let me = sock.local_addr().expect("local address");
    let to = node.sip;
    let uri = format!("sip:{to}");
    let request = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{to}>;tag=r{user}\r\nTo: <sip:{user}@{to}>\r\nCall-ID: reg-{user}-{contact_port}@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{contact_port}>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
            rand_u32()
        )
    };
    let mut buf = [0u8; 4096];
    let mut ask = |msg: String| {
        sock.send_to(msg.as_bytes(), to).expect("send REGISTER");
        let (n, _) = sock.recv_from(&mut buf).expect("no answer to REGISTER");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let challenge = ask(request(1, ""));
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = header(&challenge, "WWW-Authenticate").expect("a challenge");
    let ch = parse_challenge(www).expect("a digest challenge");
    let auth = authorization(&ch, "REGISTER", &uri, user, password, "cn0", 1);
    let ok = ask(request(2, &format!("Authorization: {auth}\r\n")));
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
}

pub fn sipp(node: &Node, scenario: &str, extra: &[&str]) -> (bool, String) {
    require("sipp", "sip-tester");
    let dir = std::env::temp_dir().join(format!("sb-sipp-{}-{}", std::process::id(), rand_u32()));
    let _ = std::fs::create_dir_all(&dir);
    let err = dir.join("errors.log");
    let mut args: Vec<String> = vec![
        node.sip.to_string(),
        "-sf".into(),
        repo(&format!("tests/sipp/{scenario}.xml"))
            .display()
            .to_string(),
        "-i".into(),
        "127.0.0.1".into(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-m".into(),
        "1".into(),
        "-nostdin".into(),
        "-timeout".into(),
        "20s".into(),
        "-trace_err".into(),
        "-error_file".into(),
        err.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new("timeout")
        .arg("30")
        .arg("sipp")
        .args(&args)
        .current_dir(&dir)
        .output()
        .expect("run sipp");
    let errors = std::fs::read_to_string(&err).unwrap_or_default();
    (out.status.success(), errors)
}
