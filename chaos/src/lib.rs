//! Faults on the links between cluster nodes, for tests.
//!
//! [`Links`] runs one TCP proxy in front of each node (its *front*
//! address, the one the node advertises) that forwards to the node's real
//! cluster address (its *back*). A connection is known by the host it
//! comes from (the source address: Switchboard nodes dial from their
//! cluster address) and the host it goes to (the back). [`Links::cut`]
//! partitions two hosts: what either sends the other is held, not dropped
//! and not refused, the way a partitioned network behaves (no reset, no
//! error: silence, which only a failure detector notices), and new
//! connections between them are accepted but carry nothing. [`Links::heal`]
//! lets the held bytes through again, in order, as TCP does once a
//! partition heals.
//!
//! Everything is plain threads and blocking sockets, so a test that runs
//! node processes needs no runtime to use it.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// How long a held direction waits between looks at the cut set, at most.
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Shared {
    /// Unordered pairs of hosts whose traffic is held.
    cut: Mutex<BTreeSet<(IpAddr, IpAddr)>>,
    changed: Condvar,
    stopping: AtomicBool,
    /// Bytes forwarded, all directions.
    bytes: AtomicU64,
    /// Connections accepted, all fronts.
    accepted: AtomicU64,
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Shared {
    fn is_cut(&self, a: IpAddr, b: IpAddr) -> bool {
        self.cut
            .lock()
            .map(|c| c.contains(&pair(a, b)))
            .unwrap_or(false)
    }

    /// Blocks while `a`–`b` is cut; false once the proxy stops.
    fn wait_open(&self, a: IpAddr, b: IpAddr) -> bool {
        let Ok(mut cut) = self.cut.lock() else {
            return false;
        };
        while cut.contains(&pair(a, b)) {
            if self.stopping.load(Ordering::Relaxed) {
                return false;
            }
            cut = match self.changed.wait_timeout(cut, RECHECK) {
                Ok((c, _)) => c,
                Err(_) => return false,
            };
        }
        !self.stopping.load(Ordering::Relaxed)
    }
}

/// Proxies in front of cluster nodes, with links that can be cut.
#[derive(Debug, Default)]
pub struct Links {
    shared: Arc<Shared>,
    fronts: Mutex<Vec<SocketAddr>>,
}

/// Counters of what went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub bytes: u64,
    pub connections: u64,
}

impl Links {
    pub fn new() -> Links {
        Links::default()
    }

    /// Listens on `front` and forwards every connection to `back`.
    pub fn front(&self, front: SocketAddr, back: SocketAddr) -> io::Result<()> {
        let listener = TcpListener::bind(front)?;
        // Accepting must notice `stop`: poll instead of blocking forever.
        listener.set_nonblocking(true)?;
        let shared = self.shared.clone();
        thread::Builder::new()
            .name(format!("chaos-front-{front}"))
            .spawn(move || accept_loop(listener, back, shared))?;
        if let Ok(mut f) = self.fronts.lock() {
            f.push(front);
        }
        Ok(())
    }

    /// Partitions hosts `a` and `b` (both directions) until [`Links::heal`].
    pub fn cut(&self, a: IpAddr, b: IpAddr) {
        if let Ok(mut c) = self.shared.cut.lock() {
            c.insert(pair(a, b));
        }
        self.shared.changed.notify_all();
    }

    /// Cuts `host` off from every one of `others`.
    pub fn isolate(&self, host: IpAddr, others: &[IpAddr]) {
        for o in others {
            self.cut(host, *o);
        }
    }

    /// Lets `a` and `b` talk again; what was held goes through.
    pub fn heal(&self, a: IpAddr, b: IpAddr) {
        if let Ok(mut c) = self.shared.cut.lock() {
            c.remove(&pair(a, b));
        }
        self.shared.changed.notify_all();
    }

    /// Heals every cut link.
    pub fn heal_all(&self) {
        if let Ok(mut c) = self.shared.cut.lock() {
            c.clear();
        }
        self.shared.changed.notify_all();
    }

    pub fn is_cut(&self, a: IpAddr, b: IpAddr) -> bool {
        self.shared.is_cut(a, b)
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            connections: self.shared.accepted.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
    }
}

fn accept_loop(listener: TcpListener, back: SocketAddr, shared: Arc<Shared>) {
    while !shared.stopping.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, from)) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                let _ = thread::Builder::new()
                    .name(format!("chaos-conn-{from}"))
                    .spawn(move || connection(client, from, back, shared));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(RECHECK / 5),
            Err(_) => thread::sleep(RECHECK),
        }
    }
}

/// Joins a client to the back, one thread per direction.
fn connection(client: TcpStream, from: SocketAddr, back: SocketAddr, shared: Arc<Shared>) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let Ok(server) = TcpStream::connect(back) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = server.set_nodelay(true);
    let (a, b) = (from.ip(), back.ip());
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = {
        let shared = shared.clone();
        thread::spawn(move || pump(client, server, a, b, &shared))
    };
    pump(server2, client2, a, b, &shared);
    let _ = up.join();
}

/// Copies `src` to `dst`, holding each chunk while the hosts are cut.
fn pump(mut src: TcpStream, mut dst: TcpStream, a: IpAddr, b: IpAddr, shared: &Shared) {
    // A read wakes up now and then so a stopped proxy lets go.
    let _ = src.set_read_timeout(Some(RECHECK * 4));
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shared.stopping.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        if !shared.wait_open(a, b) {
            break;
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = dst.shutdown(Shutdown::Write);
    let _ = src.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Instant;

    /// An echo server on a loopback address of its own; its address.
    fn echo(ip: &str) -> SocketAddr {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let _ = io::copy(&mut r, &mut s);
                });
            }
        });
        addr
    }

    fn free(ip: &str) -> SocketAddr {
        TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
    }

    fn read_within(s: &mut TcpStream, n: usize, within: Duration) -> Vec<u8> {
        s.set_read_timeout(Some(within)).unwrap();
        let mut got = vec![0u8; n];
        let mut have = 0;
        let t0 = Instant::now();
        while have < n && t0.elapsed() < within {
            match s.read(&mut got[have..]) {
                Ok(0) => break,
                Ok(k) => have += k,
                Err(_) => break,
            }
        }
        got.truncate(have);
        got
    }

    #[test]
    fn forwards_both_ways() {
        let links = Links::new();
        let back = echo("127.0.0.1");
        let front = free("127.0.0.1");
        links.front(front, back).unwrap();
        let mut s = TcpStream::connect(front).unwrap();
        s.write_all(b"hello").unwrap();
        assert_eq!(read_within(&mut s, 5, Duration::from_secs(2)), b"hello");
        assert!(links.traffic().bytes >= 10);
        assert_eq!(links.traffic().connections, 1);
    }

    #[test]
    fn a_cut_holds_the_bytes_and_a_heal_delivers_them_in_order() {
        let links = Links::new();
        let back = echo("127.0.0.1");
        let front = free("127.0.0.1");
        links.front(front, back).unwrap();
        let mut s = TcpStream::connect(front).unwrap();
        s.write_all(b"one").unwrap();
        assert_eq!(read_within(&mut s, 3, Duration::from_secs(2)), b"one");
        let (a, b) = (s.local_addr().unwrap().ip(), back.ip());
        links.cut(a, b);
        assert!(links.is_cut(b, a));
        s.write_all(b"two").unwrap();
        // Silence while cut: nothing comes back, and no error either.
        assert!(read_within(&mut s, 3, Duration::from_millis(400)).is_empty());
        links.heal(a, b);
        assert_eq!(read_within(&mut s, 3, Duration::from_secs(2)), b"two");
    }

    #[test]
    fn a_cut_between_other_hosts_leaves_this_link_alone() {
        let links = Links::new();
        let back = echo("127.0.0.1");
        let front = free("127.0.0.1");
        links.front(front, back).unwrap();
        links.cut("127.0.0.9".parse().unwrap(), back.ip());
        let mut s = TcpStream::connect(front).unwrap();
        s.write_all(b"free").unwrap();
        assert_eq!(read_within(&mut s, 4, Duration::from_secs(2)), b"free");
        links.heal_all();
        assert!(!links.is_cut("127.0.0.9".parse().unwrap(), back.ip()));
    }

    #[test]
    fn a_connection_made_during_a_cut_carries_nothing_until_the_heal() {
        let links = Links::new();
        let back = echo("127.0.0.1");
        let front = free("127.0.0.1");
        links.front(front, back).unwrap();
        links.isolate(back.ip(), &[back.ip()]);
        let mut s = TcpStream::connect(front).unwrap();
        s.write_all(b"late").unwrap();
        assert!(read_within(&mut s, 4, Duration::from_millis(400)).is_empty());
        links.heal_all();
        assert_eq!(read_within(&mut s, 4, Duration::from_secs(2)), b"late");
    }
}
