//! The command line: clear errors with exit code 2, graceful stop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

fn serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .args(args)
        .output()
        .expect("run switchboard")
}

#[test]
fn bad_flags_and_files_exit_with_2_and_say_why() {
    let out = serve(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = serve(&["--rtp-ports", "9000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rtp-ports"));
    let out = serve(&["--config", "/nonexistent/switchboard.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn a_sip_port_in_use_exits_with_2() {
    let node = common::Node::start();
    let port = node.sip.to_string();
    let out = serve(&[
        "--sip",
        &port,
        "--rtp-ports",
        "45000-45100",
        "--data-dir",
        "/tmp/sb-cli-test",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen for SIP"));
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let mut node = common::Node::start();
    let pid = node.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(node.wait_log("stopping", Duration::from_secs(1)));
}

/// A SIGTERM while the node is still starting (here: right after its
/// first log line, the demo tenant seeded, before the SIP core runs)
/// drains it once it is up instead of killing the process.
#[test]
fn sigterm_while_starting_still_stops_the_node_cleanly() {
    use std::io::{BufRead, BufReader};
    let data = common::Node::fresh_data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--demo", "--http", "127.0.0.1:0"])
        .arg("--sip")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .args(["--rtp-ports", "46000-46100", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start switchboard");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("demo tenant seeded"), "first line: {first}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait for the node");
    assert_eq!(status.code(), Some(0), "log after the signal: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopping")), "{rest:?}");
}

#[test]
fn fault_injection_is_refused_unless_the_node_allows_it() {
    let node = common::Node::start();
    let fault = |cookie: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        c.args(["cluster", "fault", "agent:1001", "--http"])
            .arg(node.http.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir);
        if let Some(k) = cookie {
            c.args(["--cookie", k]);
        }
        c.output().expect("run switchboard cluster fault")
    };
    let out = fault(None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("fault injection is off"),
        "{err}"
    );
    let out = fault(Some("not-the-cookie"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    // A user's token is not enough either.
    let admin = node.login("admin", "demo-admin");
    let (code, v) = node.api(
        "POST",
        "/api/v1/cluster/fault",
        Some(&admin),
        Some(&serde_json::json!({"tenant": "demo", "kind": "agent", "id": "1001"})),
    );
    assert_eq!(code, 403, "{v}");
}

/// The nice value of thread `tid` of process `pid` (`/proc`), and its name.
fn nice_of(pid: u32, tid: &str) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // After the name: state is field 3, nice field 19.
    let nice = rest.split_whitespace().nth(16)?.parse().ok()?;
    Some((name, nice))
}

/// The SIP core's thread, which every message of every call waits for,
/// runs ten nice steps above the process when it may (root, or
/// CAP_SYS_NICE) and says so; any other thread, the ones started after
/// the core raised its own among them, keeps the process's priority.
#[test]
fn the_sip_core_alone_runs_at_a_raised_priority_when_it_may() {
    let mut node = common::Node::start();
    assert!(
        node.wait_log("SIP core thread", Duration::from_secs(5)),
        "{:?}",
        node.lines
    );
    let raised = node.count_log("SIP core thread priority raised") == 1;
    let pid = node.child.id();
    let base = nice_of(std::process::id(), &std::process::id().to_string())
        .expect("this test's own thread")
        .1;
    // Whether this test's user may raise a priority by ten (then so may the
    // node it started): this thread tries, and goes back.
    let may = rustix::process::setpriority_process(None, base - 10).is_ok();
    if may {
        let _ = rustix::process::setpriority_process(None, base);
    }
    assert_eq!(raised, may, "{:?}", node.lines);
    // Work the core hands to new blocking threads: a prompt approved
    // reloads the tenant, and the core has its prompts rendered off its
    // own thread.
    let admin = node.login("admin", "demo-admin");
    let before = node.count_log("prompts reloaded");
    let prompt = serde_json::json!({"name": "Nice", "text": "One moment.", "voice": "en-us"});
    let (s, v) = node.api("PUT", "/api/v1/prompts/nice", Some(&admin), Some(&prompt));
    assert_eq!(s, 201, "{v}");
    let review = serde_json::json!({"status": "approved"});
    let (s, v) = node.api(
        "POST",
        "/api/v1/prompts/nice/review",
        Some(&admin),
        Some(&review),
    );
    assert_eq!(s, 200, "{v}");
    let t0 = std::time::Instant::now();
    while node.count_log("prompts reloaded") == before {
        assert!(t0.elapsed() < Duration::from_secs(10), "no reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the node's threads");
    let mut seen = 0;
    for t in threads.flatten() {
        let tid = t.file_name().to_string_lossy().into_owned();
        let Some((name, nice)) = nice_of(pid, &tid) else {
            continue; // ended meanwhile
        };
        seen += 1;
        let want = if tid == pid.to_string() && raised {
            (base - 10).max(-20)
        } else if name == "recordings" {
            19
        } else {
            base
        };
        assert_eq!(nice, want, "thread {tid} ({name})");
    }
    assert!(seen > 3, "only {seen} threads");
}
