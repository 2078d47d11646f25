//! A scripted caller: a SIP user agent on real UDP sockets that places a
//! call to the node, sends RTP (silence, speech, RFC 4733 key presses)
//! every 20 ms like a phone, and keeps everything it hears with its
//! arrival time, so a test can tell which prompt played and when.

use super::{free_port, rand_u32};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_media::rtp::g711;
use switchboard_media::rtp::prompt::Prompt;
use switchboard_media::sip::digest::{authorization, parse_challenge};
use switchboard_media::sip::sdp::G711;

/// Audio heard, with its arrival time since the answer.
type Heard = Arc<Mutex<Vec<(Duration, Vec<i16>)>>>;

/// What the phone sends next.
enum Outgoing {
    Key(char),
    Speech(Vec<i16>),
    /// Nothing more: the phone lost its network (SIP still answers).
    Quiet,
}

/// One call from a scripted customer.
pub struct Customer {
    sip: Arc<UdpSocket>,
    node: SocketAddr,
    call_id: String,
    from: String,
    to: String,
    contact: String,
    cseq: u32,
    /// Everything heard: (arrival since the call started, samples).
    heard: Heard,
    started: Instant,
    out: mpsc::Sender<Outgoing>,
    /// The node sent BYE (answered with 200 by the SIP thread).
    bye: Arc<AtomicBool>,
    /// The directions the node's re-INVITEs offered (`sendonly` is hold),
    /// in order; each was answered with 200 and the mirror direction.
    reinvites: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Messages the SIP thread did not handle itself.
    inbox: mpsc::Receiver<String>,
    /// Where this phone takes RTP.
    rtp_port: u16,
    pub answered: bool,
    /// The status of the final response to the INVITE.
    pub status: u16,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    super::header(msg, name)
}

impl Customer {
    /// `caller` calls the demo hotline 4000 on `node`, presses 1 (support)
    /// once the menu has been said, and is bridged to an agent.
    pub fn to_support(node: &mut super::Node, caller: &str) -> Customer {
        let c = Customer::call(node.sip, "4000", caller);
        assert!(c.answered, "the hotline did not answer");
        std::thread::sleep(Duration::from_secs(5));
        c.press('1');
        assert!(
            node.wait_log("customer and agent bridged", Duration::from_secs(10)),
            "no agent answered"
        );
        c
    }

    /// Calls `number` on the node from `caller` (a phone number) and waits
    /// up to 5 s for the answer.
    pub fn call(node: SocketAddr, number: &str, caller: &str) -> Customer {
        Customer::call_as(node, number, caller, None)
    }

    /// Calls extension `number` from the tenant's SIP account `user`,
    /// answering the node's 407 with `password` (RFC 3261 §22.3).
    pub fn call_extension(node: SocketAddr, number: &str, user: &str, password: &str) -> Customer {
        Customer::call_as(node, number, user, Some(password))
    }

    fn call_as(node: SocketAddr, number: &str, caller: &str, password: Option<&str>) -> Customer {
        let sip = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("sip socket"));
        let rtp_port = free_port() & !1;
        let rtp = Arc::new(
            UdpSocket::bind(("127.0.0.1", rtp_port))
                .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
                .expect("rtp socket"),
        );
        let rtp_port = rtp.local_addr().expect("addr").port();
        let sip_port = sip.local_addr().expect("addr").port();
        let tag = format!("c{}", rand_u32());
        let call_id = format!("customer-{}@127.0.0.1", rand_u32());
        let from = format!("<sip:{caller}@127.0.0.1:{sip_port}>;tag={tag}");
        let contact = format!("<sip:{caller}@127.0.0.1:{sip_port}>");
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
        );
        let uri = format!("sip:{number}@{node}");
        let invite_for = |cseq: u32, auth: &str| {
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {contact}\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                rand_u32(),
                sdp.len()
            )
        };
        let mut cseq = 1;
        let mut invite = invite_for(cseq, "");
        sip.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        let mut buf = [0u8; 65536];
        let (status, ok) = loop {
            if Instant::now() > deadline {
                break (0, None);
            }
            if last_sent.elapsed() >= Duration::from_millis(500) {
                sip.send_to(invite.as_bytes(), node).expect("send INVITE");
                last_sent = Instant::now();
            }
            let Ok((n, _)) = sip.recv_from(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let code: u16 = msg.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            let this_invite = msg.contains(&format!("CSeq: {cseq} INVITE"));
            if !msg.starts_with("SIP/2.0") || code < 200 || !this_invite {
                continue;
            }
            let challenge = header(&msg, "Proxy-Authenticate").map(str::to_owned);
            match (code, password, challenge) {
                (407, Some(password), Some(challenge)) if cseq == 1 => {
                    // ACK the 407 (same branch, §17.1.1.3), then ask again
                    // with the credentials.
                    let via = header(&msg, "Via").unwrap_or("");
                    let to = header(&msg, "To").unwrap_or("");
                    let ack = format!(
                        "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = sip.send_to(ack.as_bytes(), node);
                    let challenge = parse_challenge(&challenge).expect("a digest challenge");
                    let auth =
                        authorization(&challenge, "INVITE", &uri, caller, password, "cn0", 1);
                    cseq = 2;
                    invite = invite_for(cseq, &format!("Proxy-Authorization: {auth}\r\n"));
                    sip.send_to(invite.as_bytes(), node).expect("send INVITE");
                    last_sent = Instant::now();
                }
                _ => break (code, Some(msg)),
            }
        };
        let started = Instant::now();
        let to = ok
            .as_deref()
            .and_then(|m| header(m, "To"))
            .unwrap_or("")
            .to_owned();
        let remote_rtp = ok.as_deref().and_then(|m| {
            let body = m.split("\r\n\r\n").nth(1)?;
            let port: u16 = body
                .lines()
                .find(|l| l.starts_with("m=audio"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let ip = body
                .lines()
                .find(|l| l.starts_with("c=IN IP4"))?
                .split_whitespace()
                .nth(2)?
                .to_owned();
            format!("{ip}:{port}").parse::<SocketAddr>().ok()
        });
        let (out_tx, out_rx) = mpsc::channel();
        let (inbox_tx, inbox) = mpsc::channel();
        let c = Customer {
            sip: sip.clone(),
            node,
            call_id,
            from,
            to,
            contact,
            cseq,
            heard: Arc::new(Mutex::new(Vec::new())),
            started,
            out: out_tx,
            bye: Arc::new(AtomicBool::new(false)),
            reinvites: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            inbox,
            rtp_port,
            answered: status == 200,
            status,
        };
        if status != 200 {
            return c;
        }
        let ack = c.request("ACK", cseq);
        let _ = sip.send_to(ack.as_bytes(), node);
        let answered_cseq = format!("CSeq: {cseq} INVITE");
        // SIP: re-ACK retransmitted 200s, answer the node's BYE.
        {
            let (sip, ack, bye, stop) = (sip.clone(), ack.clone(), c.bye.clone(), c.stop.clone());
            let (reinvites, contact) = (c.reinvites.clone(), c.contact.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, src)) = sip.recv_from(&mut buf) else {
                        continue;
                    };
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if msg.starts_with("SIP/2.0 200") && msg.contains(&answered_cseq) {
                        let _ = sip.send_to(ack.as_bytes(), src);
                    } else if msg.starts_with("BYE ") {
                        let _ = sip.send_to(ok_for(&msg).as_bytes(), src);
                        bye.store(true, Ordering::Relaxed);
                    } else if msg.starts_with("INVITE ") {
                        // A re-INVITE: answered with the mirror direction.
                        let offered = ["sendonly", "recvonly", "inactive"]
                            .into_iter()
                            .find(|d| msg.contains(&format!("a={d}")))
                            .unwrap_or("sendrecv");
                        let mine = match offered {
                            "sendonly" => "recvonly",
                            "recvonly" => "sendonly",
                            other => other,
                        };
                        if let Ok(mut r) = reinvites.lock() {
                            r.push(offered.to_owned());
                        }
                        let sdp = format!(
                            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={mine}\r\n"
                        );
                        let ok = ok_for(&msg).replace(
                            "Content-Length: 0\r\n\r\n",
                            &format!(
                                "Contact: {contact}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                                sdp.len()
                            ),
                        );
                        let _ = sip.send_to(ok.as_bytes(), src);
                    } else if msg.starts_with("ACK ") {
                    } else if !msg.starts_with("SIP/2.0 1") {
                        let _ = inbox_tx.send(msg);
                    }
                }
            });
        }
        // RTP in: decoded with its arrival time.
        {
            let (rtp, heard, stop) = (rtp.clone(), c.heard.clone(), c.stop.clone());
            rtp.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = rtp.recv_from(&mut buf) else {
                        continue;
                    };
                    if n < 12 || buf[1] & 0x7F != 0 {
                        continue;
                    }
                    let mut pcm = Vec::new();
                    g711::decode(G711::Pcmu, &buf[12..n], &mut pcm);
                    if let Ok(mut h) = heard.lock() {
                        h.push((started.elapsed(), pcm));
                    }
                }
            });
        }
        // RTP out: a frame every 20 ms, silence unless told otherwise.
        if let Some(dest) = remote_rtp {
            let stop = c.stop.clone();
            std::thread::spawn(move || send_rtp(&rtp, dest, out_rx, &stop));
        }
        c
    }

    fn request(&self, method: &str, cseq: u32) -> String {
        let port = self.sip.local_addr().map(|a| a.port()).unwrap_or(0);
        format!(
            "{method} sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n",
            node = self.node,
            b = rand_u32(),
            from = self.from,
            to = self.to,
            cid = self.call_id,
            contact = self.contact,
        )
    }

    /// The directions the node's re-INVITEs offered so far.
    pub fn reinvites(&self) -> Vec<String> {
        self.reinvites.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Presses `key` (RFC 4733: 100 ms, end packet sent three times).
    pub fn press(&self, key: char) {
        let _ = self.out.send(Outgoing::Key(key));
    }

    /// Stops sending media for good, as a phone that lost its network
    /// would, without hanging up (a BYE from the node is still answered).
    pub fn go_quiet(&self) {
        let _ = self.out.send(Outgoing::Quiet);
    }

    /// Says `samples` (8 kHz) into the call.
    pub fn say(&self, samples: Vec<i16>) {
        let _ = self.out.send(Outgoing::Speech(samples));
    }

    /// Time since the call was answered.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// What was heard, concatenated in arrival order.
    pub fn heard(&self) -> Vec<i16> {
        self.heard
            .lock()
            .map(|h| h.iter().flat_map(|(_, s)| s.iter().copied()).collect())
            .unwrap_or_default()
    }

    /// What was heard from `from` on (since the answer).
    pub fn heard_since(&self, from: Duration) -> Vec<i16> {
        self.heard
            .lock()
            .map(|h| {
                h.iter()
                    .filter(|(t, _)| *t >= from)
                    .flat_map(|(_, s)| s.iter().copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (bounded) until the node hangs up.
    pub fn wait_bye(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.bye.load(Ordering::Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.bye.load(Ordering::Relaxed)
    }

    pub fn node_hung_up(&self) -> bool {
        self.bye.load(Ordering::Relaxed)
    }

    /// Sends a re-INVITE offering `direction` (`sendonly`: this phone
    /// holds the call; `sendrecv`: it takes it back), ACKs the 200 and
    /// returns it.
    pub fn reinvite(&mut self, direction: &str) -> Result<String, Vec<String>> {
        self.cseq += 1;
        let sdp = format!(
            "v=0\r\no=- 1 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n",
            v = self.cseq,
            port = self.rtp_port
        );
        let invite = self.request("INVITE", self.cseq).replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
        );
        let cseq = format!("CSeq: {} INVITE", self.cseq);
        let _ = self.sip.send_to(invite.as_bytes(), self.node);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut other = Vec::new();
        while Instant::now() < deadline {
            if let Ok(m) = self.inbox.recv_timeout(Duration::from_millis(100)) {
                if m.starts_with("SIP/2.0 200") && m.contains(&cseq) {
                    let ack = self.request("ACK", self.cseq);
                    let _ = self.sip.send_to(ack.as_bytes(), self.node);
                    return Ok(m);
                }
                other.push(m);
            }
        }
        Err(other)
    }

    /// This phone holds the call (re-INVITE `sendonly`) and takes it back
    /// (`sendrecv`), asserting what a user would notice: the node answers
    /// `recvonly` then `sendrecv`, sends nothing while held, and the far
    /// end is heard before and after.
    pub fn hold_and_take_back(&mut self) {
        let heard_for = |c: &Customer, d: Duration| {
            let t = c.elapsed();
            std::thread::sleep(d);
            c.heard_since(t).len()
        };
        let before = heard_for(self, Duration::from_secs(1));
        assert!(before > 4000, "heard {before} samples of the far end");
        let ok = self
            .reinvite("sendonly")
            .unwrap_or_else(|got| panic!("no 200 to the hold: {got:#?}"));
        assert!(ok.contains("a=recvonly"), "{ok}");
        std::thread::sleep(Duration::from_millis(300));
        let held = heard_for(self, Duration::from_millis(1500));
        assert!(held < 400, "sent {held} samples to a phone that holds");
        let ok = self
            .reinvite("sendrecv")
            .unwrap_or_else(|got| panic!("no 200 to the resume: {got:#?}"));
        assert!(ok.contains("a=sendrecv"), "{ok}");
        std::thread::sleep(Duration::from_millis(300));
        let after = heard_for(self, Duration::from_secs(1));
        assert!(
            after > 4000,
            "after the hold this phone heard {after} samples"
        );
    }

    /// Sends a re-INVITE without an offer (a session refresh) and returns
    /// the node's 200, which this phone never ACKs: the node retransmits
    /// it (each copy lands in the inbox) until it gives up.
    /// `Err`: what came instead, within 2 s.
    pub fn reinvite_without_ack(&mut self) -> Result<String, Vec<String>> {
        self.cseq += 1;
        let invite = self.request("INVITE", self.cseq);
        let cseq = format!("CSeq: {} INVITE", self.cseq);
        let _ = self.sip.send_to(invite.as_bytes(), self.node);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut other = Vec::new();
        while Instant::now() < deadline {
            if let Ok(m) = self.inbox.recv_timeout(Duration::from_millis(100)) {
                if m.starts_with("SIP/2.0 200") && m.contains(&cseq) {
                    return Ok(m);
                }
                other.push(m);
            }
        }
        Err(other)
    }

    /// The 200s to the re-INVITE of [`Customer::reinvite_without_ack`]
    /// received since (retransmissions), without waiting.
    pub fn unacked_200s(&self) -> usize {
        let cseq = format!("CSeq: {} INVITE", self.cseq);
        self.inbox
            .try_iter()
            .filter(|m| m.starts_with("SIP/2.0 200") && m.contains(&cseq))
            .count()
    }

    /// Hangs up (BYE) and waits for the 200.
    pub fn hang_up(&mut self) -> bool {
        if self.node_hung_up() || !self.answered {
            return false;
        }
        self.cseq += 1;
        let bye = self.request("BYE", self.cseq);
        for _ in 0..4 {
            let _ = self.sip.send_to(bye.as_bytes(), self.node);
            if let Ok(m) = self.inbox.recv_timeout(Duration::from_millis(500)) {
                if m.starts_with("SIP/2.0 200") && m.contains("BYE") {
                    return true;
                }
            }
        }
        false
    }
}

impl Drop for Customer {
    fn drop(&mut self) {
        let _ = self.hang_up();
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ok_for(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for line in req.lines() {
            if let Some((n, _)) = line.split_once(':') {
                if n.trim().eq_ignore_ascii_case(name) {
                    out.push_str(line.trim_end());
                    out.push_str("\r\n");
                }
            }
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn send_rtp(sock: &UdpSocket, dest: SocketAddr, rx: mpsc::Receiver<Outgoing>, stop: &AtomicBool) {
    let ssrc = rand_u32();
    let mut seq: u16 = rand_u32() as u16;
    let mut ts: u32 = rand_u32();
    let mut speech: std::collections::VecDeque<i16> = Default::default();
    let start = Instant::now();
    let mut n: u32 = 0;
    let packet = |seq: u16, ts: u32, pt: u8, marker: bool, payload: &[u8]| {
        let mut b = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend_from_slice(payload);
        b
    };
    while !stop.load(Ordering::Relaxed) {
        // Pace on the call's clock, not on sleep's drift.
        n += 1;
        let due = start + Duration::from_millis(20) * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match rx.try_recv() {
            Ok(Outgoing::Key(k)) => {
                let Some(event) = switchboard_media::rtp::dtmf::key_event(k) else {
                    continue;
                };
                // Five updates of 20 ms, then the end packet three times,
                // all with the event's start timestamp.
                for i in 1..=8u16 {
                    let end = i >= 6;
                    let dur = 160 * i.min(5);
                    let payload = [
                        event,
                        if end { 0x80 | 10 } else { 10 },
                        (dur >> 8) as u8,
                        dur as u8,
                    ];
                    seq = seq.wrapping_add(1);
                    let _ = sock.send_to(&packet(seq, ts, 101, i == 1, &payload), dest);
                    if i <= 5 {
                        n += 1;
                        let due = start + Duration::from_millis(20) * n;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
                ts = ts.wrapping_add(800);
                continue;
            }
            Ok(Outgoing::Speech(s)) => speech.extend(s),
            Ok(Outgoing::Quiet) => return,
            Err(_) => {}
        }
        let frame: Vec<i16> = (0..160).map(|_| speech.pop_front().unwrap_or(0)).collect();
        let mut payload = Vec::with_capacity(160);
        g711::encode(G711::Pcmu, &frame, &mut payload);
        seq = seq.wrapping_add(1);
        let _ = sock.send_to(&packet(seq, ts, 0, false, &payload), dest);
        ts = ts.wrapping_add(160);
    }
}

/// `text` as the node speaks it: espeak-ng through media's WAV reader.
pub fn spoken(text: &str, voice: &str) -> Vec<i16> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "--stdout", text])
        .output()
        .expect("espeak-ng (apt-get install espeak-ng)");
    switchboard_media::rtp::prompt::decode_wav(&out.stdout[..])
        .map(|p: Prompt| p.samples().to_vec())
        .expect("espeak-ng WAV")
}

/// Loudness of 20 ms windows.
fn envelope(s: &[i16]) -> Vec<f64> {
    s.chunks(160)
        .map(|w| (w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / w.len() as f64).sqrt())
        .collect()
}

/// How well `prompt` matches somewhere in `heard`: the best Pearson
/// correlation of their loudness envelopes over every alignment (1.0 is a
/// perfect match; a different sentence stays well below 0.8).
pub fn match_score(heard: &[i16], prompt: &[i16]) -> f64 {
    let (h, p) = (envelope(heard), envelope(prompt));
    if p.len() < 5 || h.len() < p.len() {
        return 0.0;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let pm = mean(&p);
    let pd: Vec<f64> = p.iter().map(|x| x - pm).collect();
    let pn = pd.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = 0.0f64;
    for off in 0..=(h.len() - p.len()) {
        let w = &h[off..off + p.len()];
        let wm = mean(w);
        let mut num = 0.0;
        let mut wn = 0.0;
        for (a, b) in w.iter().zip(&pd) {
            num += (a - wm) * b;
            wn += (a - wm) * (a - wm);
        }
        if wn > 0.0 && pn > 0.0 {
            best = best.max(num / (wn.sqrt() * pn));
        }
    }
    best
}
