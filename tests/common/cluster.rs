//! A cluster of node processes under test: starting members, their view.

use super::{free_port, Node};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A node named `name` with its cluster port, joining through `join`.
pub fn start(
    data: &std::path::Path,
    name: &str,
    port: u16,
    join: Option<u16>,
    extra: &[&str],
) -> Node {
    start_sip(data, name, port, join, free_port(), extra)
}

/// The same with SIP on `sip` (a node restarted where callers know it).
pub fn start_sip(
    data: &std::path::Path,
    name: &str,
    port: u16,
    join: Option<u16>,
    sip: u16,
    extra: &[&str],
) -> Node {
    let cluster = format!("127.0.0.1:{port}");
    let mut args = vec!["--node-name", name, "--cluster", &cluster];
    let seed = join.map(|p| format!("127.0.0.1:{p}"));
    if let Some(s) = &seed {
        args.extend(["--join", s.as_str()]);
    }
    args.extend(extra);
    Node::start_at(data.to_path_buf(), sip, &args)
}

/// The members `node` sees, name → health.
pub fn members(node: &Node, token: &str) -> BTreeMap<String, String> {
    let (status, v) = node.api("GET", "/api/v1/cluster", Some(token), None);
    assert_eq!(status, 200, "{v}");
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            Some((
                m["name"].as_str()?.to_owned(),
                m["health"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Waits (bounded) until `node` sees exactly these members up; how long
/// it took.
pub fn wait_up(node: &Node, token: &str, want: &[&str], within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let m = members(node, token);
        let up: Vec<&str> = m
            .iter()
            .filter(|(_, h)| *h == "up")
            .map(|(n, _)| n.as_str())
            .collect();
        if up == want {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "still {m:?}, want up {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three node names (from a fixed list) with the demo's `support` group
/// homed on the second and agent 1001 on the third.
pub fn names_placing_support_then_1001() -> [String; 3] {
    use switchboard_cluster::placement::Kind;
    names_placing(&[(Kind::SkillGroup, "support", 1), (Kind::Agent, "1001", 2)])
}

/// Three node names (from a fixed list) on which each of the demo's
/// entities `(kind, id, i)` is homed on the `i`th.
pub fn names_placing(want: &[(switchboard_cluster::placement::Kind, &str, usize)]) -> [String; 3] {
    use switchboard_cluster::placement::{home, EntityKey};
    let pool: Vec<String> = (0..16).map(|i| format!("n{i}")).collect();
    for x in &pool {
        for y in &pool {
            for z in &pool {
                if x == y || y == z || x == z {
                    continue;
                }
                let live = [x.as_str(), y.as_str(), z.as_str()];
                let placed = want.iter().all(|(kind, id, i)| {
                    home(&EntityKey::new("demo", *kind, id), live) == Some(live[*i])
                });
                if placed {
                    return [x.clone(), y.clone(), z.clone()];
                }
            }
        }
    }
    panic!("no names place {want:?}");
}

/// Three members whose cluster links run through `links`: member `i`
/// listens on 127.0.0.(21+i) and advertises 127.0.1.(21+i), where a
/// front of `links` forwards to it, so any link between two of them can
/// be cut. The data directory, the nodes, each one's host, and a token.
pub fn three_behind(
    links: &switchboard_chaos::Links,
    names: &[String; 3],
) -> (std::path::PathBuf, [Node; 3], [std::net::IpAddr; 3], String) {
    let data = Node::fresh_data_dir();
    let hosts: [std::net::IpAddr; 3] = std::array::from_fn(|i| {
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 21 + i as u8))
    });
    let fronts: [std::net::IpAddr; 3] = std::array::from_fn(|i| {
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 21 + i as u8))
    });
    let ports = [free_port(), free_port(), free_port()];
    for i in 0..3 {
        links
            .front(
                std::net::SocketAddr::new(fronts[i], ports[i]),
                std::net::SocketAddr::new(hosts[i], ports[i]),
            )
            .expect("a proxy front");
    }
    let node = |i: usize, join: bool| {
        let cluster = format!("{}:{}", hosts[i], ports[i]);
        let advertise = fronts[i].to_string();
        let seed = format!("{}:{}", fronts[0], ports[0]);
        let mut args = vec![
            "--node-name",
            names[i].as_str(),
            "--cluster",
            cluster.as_str(),
            "--cluster-advertise",
            advertise.as_str(),
        ];
        if join {
            args.extend(["--join", seed.as_str()]);
        }
        Node::start_in(data.clone(), &args)
    };
    let nodes = [node(0, false), node(1, true), node(2, true)];
    let token = nodes[0].login("admin", "demo-admin");
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.sort();
    for n in &nodes {
        wait_up(n, &token, &all, Duration::from_secs(15));
    }
    (data, nodes, hosts, token)
}

/// The live events `token`'s WebSocket on `node` receives, collected in
/// the background until a `call.ended` arrives or `within` passes.
pub fn listen(
    node: &Node,
    token: &str,
    within: Duration,
) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    listen_until(node, token, within, |v| v["type"] == "call.ended")
}

/// The live events `token`'s WebSocket on `node` receives, collected in
/// the background until one for which `last` holds (it is the last one
/// kept) or `within` passes. Connected before this returns, so what
/// happens after it is heard.
pub fn listen_until(
    node: &Node,
    token: &str,
    within: Duration,
    last: impl Fn(&serde_json::Value) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    use futures_util::StreamExt;
    let url = format!("ws://{}/api/v1/ws?token={token}", node.http);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("websocket");
            let _ = ready_tx.send(());
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + within;
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
                let Ok(text) = msg.into_text() else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let done = last(&v);
                got.push(v);
                if done {
                    break;
                }
            }
            got
        })
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    handle
}

/// Three members on one fresh data directory, named (by
/// [`names_placing_support_then_1001`]) so that the demo's `support` lives
/// on the second and agent 1001 on the third, each seeing all three up;
/// `extra` flags for all. The data directory, the names, the nodes and an
/// admin token.
pub fn three_placed(extra: &[&str]) -> (std::path::PathBuf, [String; 3], [Node; 3], String) {
    let names = names_placing_support_then_1001();
    let data = Node::fresh_data_dir();
    let ports = [free_port(), free_port(), free_port()];
    let a = start(&data, &names[0], ports[0], None, extra);
    let b = start(&data, &names[1], ports[1], Some(ports[0]), extra);
    let c = start(&data, &names[2], ports[2], Some(ports[0]), extra);
    let token = a.login("admin", "demo-admin");
    let mut all = [names[0].as_str(), names[1].as_str(), names[2].as_str()];
    all.sort();
    for n in [&a, &b, &c] {
        wait_up(n, &token, &all, Duration::from_secs(15));
    }
    (data, names, [a, b, c], token)
}

/// A cluster CA in `dir` (openssl) and a node certificate it signs for
/// 127.0.0.1: the (certificate, key, CA) files as `--cluster-tls-*` flags.
pub fn tls_flags(dir: &std::path::Path) -> Vec<String> {
    super::require("openssl", "openssl");
    let _ = std::fs::create_dir_all(dir);
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=cluster-ca",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let path = |f: &str| dir.join(f).display().to_string();
    vec![
        "--cluster-tls-cert".into(),
        path("node.pem"),
        "--cluster-tls-key".into(),
        path("node.key"),
        "--cluster-tls-ca".into(),
        path("ca.pem"),
    ]
}
