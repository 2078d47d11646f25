//! `switchboard cluster status`: asks a running node's HTTP API about
//! its cluster, authenticated with the cluster cookie; `switchboard
//! drain` and `switchboard cluster fault` ask it to act.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// GET `path` from the node at `http`; the JSON body of a 200.
fn get(http: &str, path: &str, cookie: &str) -> Result<Value> {
    request(http, "GET", path, cookie, None)
}

/// `method` `path` (with `body`) at the node at `http`; the JSON body of
/// a 2xx.
fn request(
    http: &str,
    method: &str,
    path: &str,
    cookie: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let addr = http
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .with_context(|| format!("--http: {http:?} is not host:port"))?
        .next()
        .with_context(|| format!("--http: {http:?} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("cannot reach the node's HTTP API at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nX-Switchboard-Cookie: {cookie}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("no answer from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr} did not answer HTTP"))?;
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let msg = json["message"].as_str().unwrap_or(body.trim());
        bail!("{addr} answered {status}: {msg}");
    }
    Ok(json)
}

fn secs(ms: &Value) -> String {
    ms.as_u64()
        .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
}

fn cookie_of(cookie: Option<String>, data_dir: &Path) -> Result<String> {
    match cookie {
        Some(c) => Ok(c),
        None => {
            crate::node::cluster::read_cookie(&data_dir.join(crate::node::cluster::COOKIE_FILE))
                .context("give --cookie, or --data-dir of a node on this host")
        }
    }
}

/// `switchboard drain`: asks the node to drain and says how many calls
/// it waits for.
pub fn drain(http: &str, cookie: Option<String>, data_dir: &Path) -> Result<()> {
    let cookie = cookie_of(cookie, data_dir)?;
    let v = request(http, "POST", "/api/v1/cluster/drain", &cookie, None)?;
    println!(
        "node {} is draining: new calls are refused; it exits once its {} call(s) have ended",
        v["node"].as_str().unwrap_or("?"),
        v["calls"]
    );
    Ok(())
}

/// `KIND:ID` as the API names the kind.
fn entity(p: &str) -> Result<(&'static str, &str)> {
    let Some((kind, id)) = p.split_once(':') else {
        bail!("{p:?} is not KIND:ID (agent:1001, group:support)");
    };
    let kind = match kind {
        "group" | "skill_group" => "skill_group",
        "agent" => "agent",
        "telesales_task" | "task" => "telesales_task",
        _ => bail!("unknown kind {kind:?} (agent, group, telesales_task)"),
    };
    Ok((kind, id))
}

/// `switchboard cluster fault KIND:ID`: makes that actor on the node
/// panic (a node run with `--fault-injection`).
pub fn fault(
    http: &str,
    cookie: Option<String>,
    data_dir: &Path,
    target: &str,
    tenant: &str,
) -> Result<()> {
    let cookie = cookie_of(cookie, data_dir)?;
    let (kind, id) = entity(target)?;
    let body = serde_json::json!({"tenant": tenant, "kind": kind, "id": id});
    request(http, "POST", "/api/v1/cluster/fault", &cookie, Some(&body))?;
    println!("{kind} {id} of {tenant} was told to panic: watch the node's log for its recovery");
    Ok(())
}

pub fn status(
    http: &str,
    cookie: Option<String>,
    data_dir: &Path,
    placement: Option<&str>,
    tenant: &str,
) -> Result<()> {
    let cookie = cookie_of(cookie, data_dir)?;
    if let Some(p) = placement {
        let (kind, id) = entity(p).context("--placement")?;
        let v = get(
            http,
            &format!(
                "/api/v1/cluster/placement?kind={kind}&id={}&tenant={}",
                encode(id),
                encode(tenant)
            ),
            &cookie,
        )?;
        let members: Vec<&str> = v["members"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{kind} {id} of {tenant} lives on {} (members up: {})",
            v["node"].as_str().unwrap_or("?"),
            members.join(", ")
        );
        return Ok(());
    }
    let v = get(http, "/api/v1/cluster", &cookie)?;
    let node = v["node"].as_str().unwrap_or("?");
    if v["draining"].as_bool() == Some(true) {
        println!("node {node}: draining, {} call(s) up", v["calls"]);
    }
    if v["standalone"].as_bool() == Some(true) {
        println!("node {node}: on its own (started without --cluster)");
    } else {
        println!(
            "node {node}: a member is down after {} ms of silence",
            v["down_after_ms"]
        );
    }
    println!(
        "{:<16} {:<22} {:<8} {:>9} {:>11} {:>9}",
        "NAME", "ADDRESS", "HEALTH", "FOR", "LAST HEARD", "RTT"
    );
    for m in v["members"].as_array().into_iter().flatten() {
        let rtt = m["rtt_us"]
            .as_u64()
            .map_or("-".into(), |us| format!("{:.2}ms", us as f64 / 1000.0));
        println!(
            "{:<16} {:<22} {:<8} {:>9} {:>11} {:>9}{}",
            m["name"].as_str().unwrap_or("?"),
            m["addr"].as_str().unwrap_or(""),
            m["health"].as_str().unwrap_or("?"),
            secs(&m["for_ms"]),
            secs(&m["last_heard_ms"]),
            rtt,
            if m["me"].as_bool() == Some(true) {
                "  (this node)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
