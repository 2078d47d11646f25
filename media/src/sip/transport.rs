//! SIP over UDP and TCP (RFC 3261 §18) on one address.
//!
//! The transport owns the sockets and nothing else: it frames and parses
//! what arrives, answers what cannot be parsed (a `400` naming the problem,
//! or `505`) straight away, stamps the top Via of requests with `received`
//! and `rport` (RFC 3581 §4) so responses find their way back through NAT,
//! and hands every good message to the node on a channel. Responses and
//! requests go out through [`SipTransport::send`]: over UDP to an address,
//! over TCP on the connection the peer opened when there is one (that is
//! the only way to reach a phone behind NAT), else on a new connection.

use super::header::{self, Via};
use super::message::{Message, Request, Response};
use super::parse::{parse_datagram, Limits, ParseError, Parsed, StreamFramer};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Transport protocol of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Unreliable transports retransmit (RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// One message from the network.
#[derive(Debug)]
pub struct Inbound {
    pub message: Message,
    pub source: SocketAddr,
    pub transport: Transport,
    /// When the transport read it: the time it then waits for the core
    /// is the node's backlog.
    pub received: std::time::Instant,
}

/// Counters the node exports as metrics.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub received: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
    pub sent: std::sync::atomic::AtomicU64,
}

type Conns = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;

/// The bound SIP sockets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SipTransport {
    /// Blocking: read by a thread of its own, written from any task
    /// (a datagram send does not wait on the network).
    udp: Arc<std::net::UdpSocket>,
    conns: Conns,
    local: SocketAddr,
    limits: Limits,
    inbound: mpsc::Sender<Inbound>,
    pub stats: Arc<TransportStats>,
}

impl SipTransport {
    /// Binds UDP and TCP on `addr` and starts receiving. Messages arrive on
    /// the returned channel.
    ///
    /// UDP is read by a thread of its own, so a datagram is read and
    /// handed on as soon as it arrives, however busy the runtime's
    /// workers are (a task waits for the I/O driver, which a loaded worker
    /// polls only between tasks). The thread ends once the channel's
    /// receiver is gone.
    pub async fn bind(
        addr: SocketAddr,
        limits: Limits,
    ) -> io::Result<(SipTransport, mpsc::Receiver<Inbound>)> {
        let udp = std::net::UdpSocket::bind(addr)?;
        // How often the reading thread looks whether it is still wanted.
        udp.set_read_timeout(Some(Duration::from_millis(200)))?;
        let udp = Arc::new(udp);
        let local = udp.local_addr()?;
        // TCP on the same port as UDP (the port UDP really got, if 0).
        let listener = TcpListener::bind(local).await?;
        let (tx, rx) = mpsc::channel(4096);
        let t = SipTransport {
            udp,
            conns: Arc::new(Mutex::new(HashMap::new())),
            local,
            limits,
            inbound: tx,
            stats: Arc::new(TransportStats::default()),
        };
        let reader = t.clone();
        std::thread::Builder::new()
            .name("sip-udp".into())
            .spawn(move || reader.udp_loop())?;
        tokio::spawn(t.clone().accept_loop(listener));
        Ok((t, rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends bytes to `dest` over `transport`.
    pub async fn send(
        &self,
        dest: SocketAddr,
        transport: Transport,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        self.stats
            .sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match transport {
            Transport::Udp => self.udp.send_to(&bytes, dest).map(|_| ()),
            Transport::Tcp => {
                let existing = self.conns.lock().ok().and_then(|c| c.get(&dest).cloned());
                let conn = match existing {
                    Some(c) if !c.is_closed() => c,
                    _ => {
                        let stream = TcpStream::connect(dest).await?;
                        self.clone().spawn_conn(stream, dest)
                    }
                };
                conn.send(bytes)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
            }
        }
    }

    fn udp_loop(self) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = match self.udp.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.inbound.is_closed() {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems.
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            };
            let received = std::time::Instant::now();
            let delivered = match parse_datagram(&buf[..n], &self.limits) {
                // A keep-alive over UDP needs no answer.
                Ok(Parsed::KeepAlive) => true,
                Ok(Parsed::Message(message)) => self
                    .inbound
                    .blocking_send(self.inbound_of(message, src, Transport::Udp, received))
                    .is_ok(),
                Err(e) => {
                    if let Some(bytes) = self.refusal(e, Transport::Udp) {
                        let _ = self.udp.send_to(&bytes, src);
                    }
                    true
                }
            };
            if !delivered {
                return;
            }
        }
    }

    /// Accepts connections until the node stops listening (the channel's
    /// receiver is gone), then lets go of the sockets.
    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = self.inbound.closed() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.clone().spawn_conn(stream, peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn spawn_conn(self, stream: TcpStream, peer: SocketAddr) -> mpsc::Sender<Vec<u8>> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(peer, tx.clone());
        }
        let (mut reader, mut writer) = stream.into_split();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let t = self;
        tokio::spawn(async move {
            let mut framer = StreamFramer::new(t.limits);
            let mut buf = vec![0u8; 16_384];
            'read: loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                while let Some(parsed) = framer.next_message() {
                    let fatal = matches!(&parsed, Err(e) if e.fatal);
                    if !t.deliver(parsed, peer, Transport::Tcp).await || fatal {
                        break 'read;
                    }
                }
            }
            if let Ok(mut conns) = t.conns.lock() {
                conns.remove(&peer);
            }
        });
        tx
    }

    /// Hands a parsed message on, or answers a bad one. False when the
    /// node has stopped listening.
    async fn deliver(
        &self,
        parsed: Result<Parsed, ParseError>,
        src: SocketAddr,
        transport: Transport,
    ) -> bool {
        match parsed {
            Ok(Parsed::KeepAlive) => {
                // RFC 5626 §4.4.1: a double-CRLF ping gets a CRLF pong.
                if transport == Transport::Tcp {
                    let _ = self.send(src, transport, b"\r\n".to_vec()).await;
                }
                true
            }
            Ok(Parsed::Message(message)) => self
                .inbound
                .send(self.inbound_of(message, src, transport, std::time::Instant::now()))
                .await
                .is_ok(),
            Err(e) => {
                if let Some(bytes) = self.refusal(e, transport) {
                    let _ = self.send(src, transport, bytes).await;
                }
                true
            }
        }
    }

    /// A good message as the node gets it: counted, and a request's top
    /// Via stamped with where it came from. `received`: when it was read.
    fn inbound_of(
        &self,
        mut message: Message,
        src: SocketAddr,
        transport: Transport,
        received: std::time::Instant,
    ) -> Inbound {
        self.stats
            .received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Message::Request(req) = &mut message {
            stamp_via(req, src);
        }
        Inbound {
            message,
            source: src,
            transport,
            received,
        }
    }

    /// What answers a message that could not be parsed: counted and
    /// logged; the response, unless it was an ACK (never answered, RFC
    /// 3261 §17.1.1.3) or too broken to answer.
    fn refusal(&self, e: ParseError, transport: Transport) -> Option<Vec<u8>> {
        self.stats
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(code = e.code, reason = %e.reason, transport = transport.as_str(), "rejected sip message");
        let req = e.request?;
        (req.method != super::message::Method::Ack)
            .then(|| Response::to(&req, e.code, &sanitize_reason(&e.reason)).to_bytes())
    }
}

/// A reason phrase is text on one line (RFC 3261 §25.1).
fn sanitize_reason(s: &str) -> String {
    let r: String = s.chars().filter(|c| !c.is_control()).collect();
    if r.is_empty() {
        "Bad Request".into()
    } else {
        r
    }
}

/// RFC 3581 §4 and RFC 3261 §18.2.1: records where a request really came
/// from in its top Via, so the response goes back there.
pub fn stamp_via(req: &mut Request, src: SocketAddr) {
    let Some(top) = req.headers.get("Via").map(str::to_owned) else {
        return;
    };
    // The first value of the first Via line.
    let first = super::message::split_list(&top)
        .next()
        .unwrap_or("")
        .to_owned();
    let Ok(via) = Via::parse(&first) else {
        return;
    };
    let mut stamped = first.clone();
    let src_ip = src.ip().to_string();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    if header::param(&via.params, "received").is_none() && host != src_ip {
        stamped.push_str(&format!(";received={src_ip}"));
    }
    if header::param(&via.params, "rport") == Some(None) {
        stamped = stamped.replacen(";rport", &format!(";rport={}", src.port()), 1);
        if !stamped.contains(&format!("rport={}", src.port())) {
            stamped.push_str(&format!(";rport={}", src.port()));
        }
        if !stamped.contains(";received=") {
            stamped.push_str(&format!(";received={src_ip}"));
        }
    }
    if stamped != first {
        let rest = top[first.len().min(top.len())..].to_owned();
        let new_top = if top.starts_with(&first) {
            format!("{stamped}{rest}")
        } else {
            stamped
        };
        req.headers.set_first("Via", new_top);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Method;

    fn req(via: &str) -> Request {
        let mut r = Request::new(Method::Options, "sip:x@y");
        r.headers.push("Via", via);
        r.headers.push("Via", "SIP/2.0/UDP second;branch=z9hG4bK2");
        r
    }

    #[test]
    fn rport_and_received() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut r = req("SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK1");
        stamp_via(&mut r, src);
        assert_eq!(
            r.headers.get("Via"),
            Some("SIP/2.0/UDP 10.0.0.2:5060;rport=40000;branch=z9hG4bK1;received=192.0.2.7")
        );
        assert_eq!(r.headers.get_all("Via").count(), 2);
        let mut r = req("SIP/2.0/UDP 192.0.2.7:40000;branch=z9hG4bK1");
        stamp_via(&mut r, src);
        assert_eq!(
            r.headers.get("Via"),
            Some("SIP/2.0/UDP 192.0.2.7:40000;branch=z9hG4bK1")
        );
        let mut r = req("SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK0");
        stamp_via(&mut r, src);
        assert_eq!(
            r.headers.get("Via"),
            Some("SIP/2.0/UDP a.example;branch=z9hG4bK1;received=192.0.2.7, SIP/2.0/UDP b;branch=z9hG4bK0")
        );
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[tokio::test]
    async fn a_datagram_is_handed_on_and_a_broken_one_answered_400() {
        let (t, mut rx) = SipTransport::bind("127.0.0.1:0".parse().unwrap(), limits())
            .await
            .unwrap();
        let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        phone
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let options = "OPTIONS sip:node@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKa1;rport\r\n\
            From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:node@127.0.0.1>\r\n\
            Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
            Content-Length: 0\r\n\r\n";
        phone.send_to(options.as_bytes(), t.local_addr()).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.source, phone.local_addr().unwrap());
        assert_eq!(got.transport, Transport::Udp);
        let Message::Request(r) = got.message else {
            panic!("not a request");
        };
        let rport = format!("rport={}", phone.local_addr().unwrap().port());
        assert!(r.headers.get("Via").unwrap_or("").contains(&rport));
        // No Call-ID: answered 400 straight from the transport, and the
        // node sees nothing of it.
        let broken = "OPTIONS sip:node@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKa2\r\n\
            From: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:node@127.0.0.1>\r\n\
            CSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        phone.send_to(broken.as_bytes(), t.local_addr()).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = phone.recv_from(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
        assert!(rx.try_recv().is_err());
        assert_eq!(
            t.stats.rejected.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn the_ports_are_let_go_once_nobody_listens() {
        let (t, rx) = SipTransport::bind("127.0.0.1:0".parse().unwrap(), limits())
            .await
            .unwrap();
        let addr = t.local_addr();
        drop((t, rx));
        // The reading thread looks every 200 ms whether it is wanted.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match std::net::UdpSocket::bind(addr).and_then(|_| std::net::TcpListener::bind(addr)) {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("the port is still held: {e}")
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }
}
