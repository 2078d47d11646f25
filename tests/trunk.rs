//! The tenant's trunk, with SIPp standing in for the carrier (it
//! challenges with 401 and checks the digest answer): an IVR transfer to
//! an outside number, and an agent signed in with a mobile number.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::customer::{spoken, Customer};
use common::phone::loud_windows;
use common::records::{seed_demo_then, wait_demo_calls};
use common::{free_port, rand_u32, repo, require, Node};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchboard_storage::model::{
    Agent, Device, HangupReason, Node as IvrNode, RingOutcome, Tenant, TenantId, Trunk,
    TrunkTransport,
};
use switchboard_storage::{Expect, Store};

/// SIPp as the carrier on a port of its own, for one call.
fn carrier() -> (Child, u16, std::path::PathBuf) {
    require("sipp", "sip-tester");
    let port = free_port();
    let dir =
        std::env::temp_dir().join(format!("sb-carrier-{}-{}", std::process::id(), rand_u32()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("timeout")
        .arg("40")
        .arg("sipp")
        .args(["-sf"])
        .arg(repo("tests/sipp/carrier.xml"))
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-mp", &(free_port() & !1).to_string()])
        .args([
            "-rtp_echo",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "35s",
            "-trace_err",
        ])
        .arg("-error_file")
        .arg(dir.join("errors.log"))
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp");
    (child, port, dir)
}

fn carrier_done(mut child: Child, dir: &std::path::Path) -> (bool, String) {
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    (
        ok,
        std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default(),
    )
}

/// The demo tenant with a trunk to 127.0.0.1:`port` and outside transfers
/// allowed; `more` changes the rest.
fn seed_with_trunk(
    dir: &std::path::Path,
    port: u16,
    more: impl for<'a> FnOnce(
            &'a dyn Store,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>
        + 'static,
) {
    seed_demo_then(dir, move |store| {
        Box::pin(async move {
            let tenant = TenantId::from("demo");
            store
                .update::<Tenant, _>(&tenant, Tenant::ID, |t| {
                    t.allow_external_transfer = true;
                    Ok(true)
                })
                .await
                .unwrap();
            store
                .put(
                    &Trunk {
                        tenant: tenant.clone(),
                        id: Trunk::ID.into(),
                        gateway: format!("127.0.0.1:{port}"),
                        transport: TrunkTransport::Udp,
                        username: Some("trunk1".into()),
                        password: Some("s3cret".into()),
                        caller_id: "4000".into(),
                        enabled: true,
                    },
                    Expect::Any,
                )
                .await
                .unwrap();
            more(store).await;
        })
    });
}

/// The customer says something and hears it back from the carrier's echo.
fn talk_through(c: &Customer) {
    let speech = spoken("one two three four five six seven", "en-us");
    let said = loud_windows(&speech);
    let from = c.elapsed();
    c.say(speech);
    std::thread::sleep(Duration::from_secs(4));
    let heard = loud_windows(&c.heard_since(from));
    assert!(said > 30, "test speech too quiet");
    assert!(
        heard * 10 >= said * 6,
        "heard {heard} loud windows of {said} said back through the trunk"
    );
}

#[test]
fn an_ivr_transfer_goes_out_through_the_trunk_with_digest_auth() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |store| {
        Box::pin(async move {
            // Key 3 of the demo menu: an outside number.
            let tenant = TenantId::from("demo");
            let mut flow = store
                .published_flow(&tenant, "demo")
                .await
                .unwrap()
                .unwrap()
                .definition;
            if let Some(IvrNode::Menu { options, .. }) = flow.nodes.get_mut("menu") {
                options.insert('3', "outside".into());
            }
            flow.nodes.insert(
                "outside".into(),
                IvrNode::TransferNumber {
                    number: "13900001111".into(),
                },
            );
            common::records::publish_flow(store, flow).await;
        })
    });
    let node = Node::start_in(dir, &[]);
    let mut c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('3');
    std::thread::sleep(Duration::from_secs(2));
    talk_through(&c);
    assert!(c.hang_up());
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(5));
    let r = calls.first().expect("call record");
    assert_eq!(r.hangup_reason, HangupReason::Transferred, "{r:?}");
    assert_eq!(r.ivr.keys, "3");
}

#[test]
fn an_agent_on_a_mobile_number_is_rung_through_the_trunk() {
    let (sipp, port, sipp_dir) = carrier();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |store| {
        Box::pin(async move {
            store
                .update::<Agent, _>(&TenantId::from("demo"), "1003", |a| {
                    a.device = Device::Mobile {
                        number: "13700001111".into(),
                    };
                    Ok(true)
                })
                .await
                .unwrap();
        })
    });
    let node = Node::start_in(dir, &[]);
    let mut c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered);
    std::thread::sleep(Duration::from_secs(5));
    c.press('2');
    std::thread::sleep(Duration::from_secs(2));
    talk_through(&c);
    assert!(c.hang_up());
    let (ok, errors) = carrier_done(sipp, &sipp_dir);
    assert!(ok, "the carrier's side failed: {errors}");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(5));
    let r = calls.first().expect("call record");
    assert_eq!(
        r.agent.as_ref().map(|a| a.0.as_str()),
        Some("1003"),
        "{r:?}"
    );
    assert_eq!(
        r.rings.last().map(|x| x.outcome),
        Some(RingOutcome::Answered)
    );
}

#[test]
fn a_caller_from_outside_never_reaches_the_trunk() {
    // The "carrier" is a socket that must hear nothing.
    let gateway = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = gateway.local_addr().unwrap().port();
    let dir = Node::fresh_data_dir();
    seed_with_trunk(&dir, port, |_| Box::pin(async {}));
    let node = Node::start_in(dir, &[]);
    let peer = common::Peer::new(&node);
    for number in ["13900001111", "013900001111", "+8613900001111", "9"] {
        let invite = format!(
            "INVITE sip:{number}@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{1};branch=z9hG4bK{2}\r\nMax-Forwards: 70\r\nFrom: <sip:intruder@203.0.113.9>;tag=x\r\nTo: <sip:{number}@{0}>\r\nCall-ID: fraud-{2}\r\nCSeq: 1 INVITE\r\nContact: <sip:intruder@127.0.0.1:{1}>\r\nContent-Length: 0\r\n\r\n",
            node.sip,
            peer.port(),
            rand_u32()
        );
        peer.send(&invite);
        let answer = peer
            .recv_all(Duration::from_millis(500))
            .into_iter()
            .find(|m| m.starts_with("SIP/2.0 4"))
            .unwrap_or_default();
        assert!(answer.starts_with("SIP/2.0 404"), "{number}: {answer}");
    }
    gateway
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        gateway.recv_from(&mut buf).is_err(),
        "something reached the trunk"
    );
}
