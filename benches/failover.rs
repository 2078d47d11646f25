//! Failover of a skill group, end to end: three node processes on
//! loopback (release binary, one shared data directory) with the demo's
//! `support` group homed on the second and agent 1001 on the third. The
//! agent's phone (baresip, registered with the third node) is ready but
//! on a break while two callers (on the first node) wait in `support`;
//! the group's node is killed with SIGKILL and the agent made ready at
//! once. Measured: from the kill to the agent's phone being offered the
//! first waiting caller (the `status=Ringing` line of the agent's home,
//! by its timestamp), and whether the callers were answered in order.
//!
//! Run: `cargo bench --bench failover` (`SB_BENCH_ROUNDS`, default 3;
//! `SB_BENCH_DOWN_AFTER_MS`, default 2000; needs baresip and espeak-ng, as
//! the tests do).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::cluster::three_placed;
use common::customer::Customer;
use common::phone::Phone;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since midnight UTC, now.
fn day_secs_now() -> f64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_micros()) / 1e6
}

/// Seconds since midnight UTC of a log line (`2026-12-01T15:10:30.543324Z …`).
fn day_secs_of(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.strip_suffix('Z')?;
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// One round: the time from the kill to the first offer, and the order
/// the callers were answered in.
fn round(down_after: &str) -> (Duration, bool) {
    let extra = ["--down-after-ms", down_after];
    let (data, _, [mut a, mut b, mut c], token) = three_placed(&extra);
    assert!(b.wait_log(
        "skill group hosted here tenant=demo group=support",
        Duration::from_secs(5)
    ));
    let status = |s: serde_json::Value| {
        let (code, v) = a.api("PUT", "/api/v1/agents/1001/status", Some(&token), Some(&s));
        assert_eq!(code, 200, "{v}");
    };
    status(serde_json::json!({"status": "break", "reason": "bench"}));
    let agent = Phone::auto_answer(&c, "1001", "pass1001");
    let running = agent.spawn(45);
    assert!(c.wait_log("registered user=1001", Duration::from_secs(5)));
    let mut callers = Vec::new();
    for caller in ["13800138001", "13800138002"] {
        let cu = Customer::call(a.sip, "4000", caller);
        std::thread::sleep(Duration::from_secs(5));
        cu.press('1');
        std::thread::sleep(Duration::from_secs(1));
        callers.push(cu);
    }
    let killed_at = day_secs_now();
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    status(serde_json::json!({"status": "ready"}));
    assert!(
        c.wait_log("agent=1001 status=Ringing", Duration::from_secs(10)),
        "no offer after the failover"
    );
    let ringing = c
        .lines
        .iter()
        .find(|l| l.contains("agent=1001 status=Ringing"))
        .and_then(|l| day_secs_of(l))
        .unwrap();
    let took = Duration::from_secs_f64((ringing - killed_at).rem_euclid(86_400.0));
    let bridged = a.wait_log("customer and agent bridged", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    for mut cu in callers {
        let _ = cu.hang_up();
    }
    let _ = Phone::output(running);
    let mut answered: Vec<_> = common::records::wait_demo_calls(&data, 2, Duration::from_secs(10))
        .into_iter()
        .filter(|r| r.answered.is_some())
        .collect();
    answered.sort_by_key(|r| r.answered);
    let in_order = bridged && answered.first().map(|r| r.caller.as_str()) == Some("13800138001");
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&data);
    (took, in_order)
}

fn main() {
    let rounds: usize = std::env::var("SB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let down_after = std::env::var("SB_BENCH_DOWN_AFTER_MS").unwrap_or_else(|_| "2000".into());
    let mut took = Vec::new();
    for i in 1..=rounds {
        let (t, ordered) = round(&down_after);
        println!(
            "round {i}: group's node killed -> first waiting caller offered {:.0} ms; first caller answered first: {ordered}",
            t.as_secs_f64() * 1e3
        );
        took.push(t);
    }
    took.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!(
        "failover: best {:.0} ms, median {:.0} ms, worst {:.0} ms (down after {down_after} ms of silence)",
        ms(&took[0]),
        ms(&took[took.len() / 2]),
        ms(&took[took.len() - 1]),
    );
}
