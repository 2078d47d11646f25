//! RTP relay through the bridge, on one core.
//!
//! 1. The bridge alone: 20 ms G.711 packets (172 bytes) are relayed from
//!    leg A to leg B, header parsed, payload type mapped, SSRC, sequence
//!    and timestamp rewritten; once with the same law on both legs, once
//!    transcoding μ-law to A-law.
//! 2. Through real UDP sockets on loopback, as a node relays: a sender
//!    thread sends packets to leg A's socket, the relay (a tokio
//!    current-thread runtime: one core) receives each, bridges it and sends
//!    it from leg B's socket to a receiver thread. The sender keeps at most
//!    256 packets in flight, so the kernel drops none; the rate is packets
//!    relayed per second of the relay's wall time.
//!
//! Run: `cargo bench -p switchboard-media --bench rtp_relay`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::rtp::bridge::{Bridge, LegFormat, Side};
use switchboard_media::rtp::stream::{write_header, RtpSender};
use switchboard_media::sip::sdp::G711;

fn packet(seq: u16, ts: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(172);
    write_header(&mut b, 0, false, seq, ts, 0x1234_5678);
    b.extend((0..160).map(|i| (i * 7) as u8));
    b
}

fn best_and_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() - 1], v[v.len() / 2])
}

/// Packets per second through `Bridge::relay`.
fn sans_io(to: G711) -> f64 {
    let a = LegFormat::new(G711::Pcmu, 0, Some(101));
    let b = LegFormat::new(to, if to == G711::Pcmu { 0 } else { 8 }, Some(96));
    let mut bridge = Bridge::new(a, b, RtpSender::new(1, 0, 0), RtpSender::new(2, 0, 0));
    // A second of distinct packets, reused.
    let input: Vec<Vec<u8>> = (0..50u16).map(|i| packet(i, u32::from(i) * 160)).collect();
    let n = 2_000_000usize;
    let mut out = Vec::with_capacity(256);
    let start = Instant::now();
    for i in 0..n {
        let p = &input[i % input.len()];
        if bridge.relay(Side::A, p, &mut out).is_err() {
            panic!("dropped");
        }
        std::hint::black_box(&out);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Packets per second relayed between two UDP sockets by a one-core
/// tokio runtime.
/// Returns (per second of wall time, per second of the relay thread's
/// CPU time).
fn sockets(count: u64) -> (f64, f64) {
    let leg_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let leg_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let phone_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let phone_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a_addr = leg_a.local_addr().unwrap();
    let b_phone_addr = phone_b.local_addr().unwrap();
    leg_a.set_nonblocking(true).unwrap();
    leg_b.set_nonblocking(true).unwrap();
    let received = Arc::new(AtomicU64::new(0));

    let rx_count = received.clone();
    let receiver = std::thread::spawn(move || {
        phone_b
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 1500];
        while rx_count.load(Ordering::Relaxed) < count {
            if phone_b.recv_from(&mut buf).is_err() {
                break;
            }
            rx_count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let tx_count = received.clone();
    let sender = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sent = 0u64;
        while sent < count && Instant::now() < deadline {
            if sent.saturating_sub(tx_count.load(Ordering::Relaxed)) >= 256 {
                // Leave the cores to the relay while the window is full.
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let p = packet(sent as u16, (sent as u32).wrapping_mul(160));
            if phone_a.send_to(&p, a_addr).is_ok() {
                sent += 1;
            }
        }
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    let (elapsed, cpu) = rt.block_on(async move {
        let leg_a = tokio::net::UdpSocket::from_std(leg_a).unwrap();
        let leg_b = tokio::net::UdpSocket::from_std(leg_b).unwrap();
        let fa = LegFormat::new(G711::Pcmu, 0, Some(101));
        let fb = LegFormat::new(G711::Pcmu, 0, Some(101));
        let mut bridge = Bridge::new(fa, fb, RtpSender::new(1, 0, 0), RtpSender::new(2, 0, 0));
        let mut buf = [0u8; 1500];
        let mut out = Vec::with_capacity(256);
        let mut relayed = 0u64;
        let mut start = None;
        let cpu0 = thread_cpu();
        while relayed < count {
            let got = tokio::time::timeout(Duration::from_secs(2), leg_a.recv_from(&mut buf)).await;
            let Ok(Ok((n, _))) = got else { break };
            start.get_or_insert_with(Instant::now);
            if bridge.relay(Side::A, &buf[..n], &mut out).is_ok() {
                let _ = leg_b.send_to(&out, b_phone_addr).await;
                relayed += 1;
            }
        }
        let cpu = thread_cpu().saturating_sub(cpu0);
        (start.map(|s| s.elapsed()).unwrap_or_default(), cpu)
    });
    sender.join().unwrap();
    receiver.join().unwrap();
    let got = received.load(Ordering::Relaxed);
    assert!(
        got >= count * 99 / 100,
        "only {got} of {count} packets arrived"
    );
    (
        got as f64 / elapsed.as_secs_f64(),
        got as f64 / cpu.as_secs_f64().max(1e-3),
    )
}

/// CPU time (user + system) of the calling thread, from
/// /proc/thread-self/stat (in clock ticks of 10 ms).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name in parentheses; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let (best, median) = best_and_median((0..5).map(|_| sans_io(G711::Pcmu)).collect());
    println!(
        "bridge relay, same law (PCMU->PCMU), one core: best {best:.0} packets/s, median {median:.0} packets/s over 5 runs"
    );
    let (best, median) = best_and_median((0..5).map(|_| sans_io(G711::Pcma)).collect());
    println!(
        "bridge relay, transcoding (PCMU->PCMA), one core: best {best:.0} packets/s, median {median:.0} packets/s over 5 runs"
    );
    let runs: Vec<(f64, f64)> = (0..5).map(|_| sockets(300_000)).collect();
    let (best, median) = best_and_median(runs.iter().map(|r| r.0).collect());
    println!(
        "UDP socket relay on loopback (recv, bridge, send; tokio current-thread), wall time: best {best:.0} packets/s, median {median:.0} packets/s over 5 runs"
    );
    let (best, median) = best_and_median(runs.iter().map(|r| r.1).collect());
    println!(
        "UDP socket relay on loopback, per second of the relay thread's CPU time: best {best:.0} packets/s, median {median:.0} packets/s"
    );
}
