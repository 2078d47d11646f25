//! RTP for the diagnostic calls: a socket pair per call from the port
//! range, symmetric RTP (we send to where the caller's packets come from,
//! which gets through NAT), the `*43` echo and the `*44` prompt.

use super::core::CallNotice;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_media::rtp::bridge;
use switchboard_media::rtp::dtmf::DtmfReceiver;
use switchboard_media::rtp::g711;
use switchboard_media::rtp::prompt::{Player, Prompt, FRAME};
use switchboard_media::rtp::stream::{Latch, RtpSender};
use switchboard_media::sip::dialog::DialogId;
use switchboard_media::sip::sdp::{
    parse_answer, Answer, Direction, LocalMedia, LocalSession, RemoteMedia, SdpError,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// Which diagnostic a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `*43`: every RTP packet is sent back to the caller.
    Echo,
    /// `*44`: a prompt is played, then the node hangs up.
    Prompt,
}

/// The RTP port range, handed out in even/odd pairs (RTP, RTCP).
#[derive(Debug, Clone)]
pub struct MediaPorts {
    ip: IpAddr,
    lo: u16,
    hi: u16,
    cursor: Arc<AtomicU32>,
    prompt: Arc<Mutex<Option<Prompt>>>,
}

impl MediaPorts {
    pub fn new(ip: IpAddr, lo: u16, hi: u16) -> Self {
        let lo = lo + lo % 2;
        MediaPorts {
            ip,
            lo,
            hi,
            cursor: Arc::new(AtomicU32::new(0)),
            prompt: Arc::new(Mutex::new(None)),
        }
    }

    /// Binds the next free pair; ports in use by anyone are skipped.
    pub(super) async fn bind_pair(&self) -> io::Result<(UdpSocket, UdpSocket)> {
        let span = u32::from(self.hi - self.lo) + 1;
        let pairs = span / 2;
        for _ in 0..pairs {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % pairs;
            let port = self.lo + (i as u16) * 2;
            // A port someone holds is skipped; any other failure (out of
            // file descriptors, say) is the answer for every port.
            let rtp = match UdpSocket::bind((self.ip, port)).await {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            };
            let rtcp = match UdpSocket::bind((self.ip, port + 1)).await {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            };
            return Ok((rtp, rtcp));
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "RTP port range exhausted",
        ))
    }

    /// The `*44` prompt, 8 kHz 16-bit mono, made once.
    fn prompt(&self) -> Prompt {
        let mut slot = match self.prompt.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        slot.get_or_insert_with(make_prompt).clone()
    }
}

/// The media of one call; dropping it stops the media task.
#[derive(Debug)]
pub struct CallMedia {
    local: LocalMedia,
    session: LocalSession,
    answer: Answer,
    /// The SDP we last sent: resent as is when nothing changed.
    sdp: String,
    /// Our offer in a 200 to a re-INVITE without SDP, awaiting the ACK's
    /// answer (RFC 3261 §14.2, RFC 3264 §5).
    pending_offer: Option<Direction>,
    updates: watch::Sender<Answer>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CallMedia {
    /// Binds a port pair, answers `offer` and starts the service. An offer
    /// with nothing we can take is an `SdpError` (a 488 for the caller).
    pub async fn start(
        ports: &MediaPorts,
        offer: &RemoteMedia,
        service: Service,
        id: DialogId,
        notices: mpsc::Sender<CallNotice>,
    ) -> Result<CallMedia, MediaError> {
        let (rtp, rtcp) = ports.bind_pair().await.map_err(MediaError::Ports)?;
        let mut addr = rtp.local_addr().map_err(MediaError::Ports)?;
        if addr.ip().is_unspecified() {
            let ip = if offer.addr.is_loopback() {
                offer.addr
            } else {
                super::outbound_ip(offer.remote()).unwrap_or(addr.ip())
            };
            addr.set_ip(ip);
        }
        let local = LocalMedia::new(addr.ip(), addr.port());
        let mut session = LocalSession::new(u64::from(rand::random::<u32>()), 1);
        let (answer, sdp) = session
            .answer(offer, &local, Direction::SendRecv)
            .map_err(MediaError::Sdp)?;
        let (tx, rx) = watch::channel(answer);
        let prompt = (service == Service::Prompt).then(|| ports.prompt());
        let task = tokio::spawn(async move {
            // RTCP from the peer is read and dropped so its socket never
            // fills; reports are not produced yet.
            let drain = tokio::spawn(async move {
                let mut b = [0u8; 1500];
                while rtcp.recv_from(&mut b).await.is_ok() {}
            });
            match prompt {
                None => echo(rtp, rx).await,
                Some(p) => {
                    play(rtp, rx, p).await;
                    let _ = notices.send(CallNotice::Hangup(id)).await;
                }
            }
            drain.abort();
        });
        Ok(CallMedia {
            local,
            session,
            answer,
            sdp,
            pending_offer: None,
            updates: tx,
            task,
        })
    }

    /// The SDP we last sent.
    pub fn sdp(&self) -> &str {
        &self.sdp
    }

    /// A re-INVITE's offer: new address, codec or direction (hold).
    /// Returns the answer to send; on error the call keeps its media.
    pub fn update(&mut self, offer: &RemoteMedia) -> Result<&str, SdpError> {
        let (answer, sdp) = self
            .session
            .answer(offer, &self.local, Direction::SendRecv)?;
        self.apply(answer, sdp);
        Ok(&self.sdp)
    }

    /// An offer for a 200 to a re-INVITE that came without SDP.
    pub fn reoffer(&mut self) -> &str {
        self.sdp = self.session.offer(&self.local, Direction::SendRecv);
        self.pending_offer = Some(Direction::SendRecv);
        &self.sdp
    }

    /// The answer to [`Self::reoffer`], from the ACK. An ACK without an
    /// answer leaves the media as it was.
    pub fn handle_answer(&mut self, sdp: &str) -> Result<(), SdpError> {
        let Some(offered) = self.pending_offer.take() else {
            return Ok(());
        };
        let answer = parse_answer(sdp, &self.local, offered)?;
        self.answer = answer;
        let _ = self.updates.send(answer);
        Ok(())
    }

    fn apply(&mut self, answer: Answer, sdp: String) {
        self.answer = answer;
        self.sdp = sdp;
        let _ = self.updates.send(answer);
    }

    /// A DTMF digit that came by SIP INFO.
    pub fn dtmf_info(&self, digit: char) {
        tracing::info!(digit = %digit, "dtmf by SIP INFO");
    }
}

/// Why a call got no media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no RTP port: {0}")]
    Ports(io::Error),
    #[error(transparent)]
    Sdp(SdpError),
}

fn may_send(a: &Answer) -> bool {
    // The negotiated direction is ours: we send unless the caller holds.
    a.direction.sends()
}

async fn echo(sock: UdpSocket, answer: watch::Receiver<Answer>) {
    let mut buf = vec![0u8; 2048];
    let mut pkt = Vec::with_capacity(256);
    // RFC 3550 §8: the echo is a new source, with numbers of its own.
    let mut out = RtpSender::new(rand::random(), rand::random(), rand::random());
    let mut latch = Latch::new();
    let mut dtmf = DtmfReceiver::new(8000);
    loop {
        let wake = dtmf.poll_timeout();
        let got = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = sleep_until(wake) => {
                dtmf.handle_timeout(std::time::Instant::now());
                log_dtmf(&mut dtmf);
                continue;
            }
        };
        let Ok((n, src)) = got else {
            return;
        };
        let now = std::time::Instant::now();
        // Symmetric RTP: back to where the caller's packets come from.
        if !latch.accept(src, now) {
            continue;
        }
        let a = *answer.borrow();
        let Ok(h) = bridge::parse(&buf[..n]) else {
            continue;
        };
        let payload = &buf[h.payload_at..h.payload_end];
        // Telephone-events (RFC 4733) with the negotiated payload type.
        let samples = if Some(h.pt) == a.dtmf_pt {
            let _ = dtmf.handle_packet(h.ts, payload, now);
            log_dtmf(&mut dtmf);
            0
        } else {
            payload.len() as u32
        };
        if !may_send(&a) {
            continue;
        }
        out.relay(&mut pkt, h.pt, (h.ssrc, h.seq, h.ts), h.marker, samples);
        pkt.extend_from_slice(payload);
        let _ = sock.send_to(&pkt, src).await;
    }
}

fn log_dtmf(dtmf: &mut DtmfReceiver) {
    while let Some(e) = dtmf.poll_event() {
        tracing::info!(key = %e.key, duration_ms = e.duration.as_millis() as u64, "dtmf received");
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn play(sock: UdpSocket, answer: watch::Receiver<Answer>, prompt: Prompt) {
    let mut out = RtpSender::new(rand::random(), rand::random(), rand::random());
    let mut latch = Latch::new();
    latch.signalled(answer.borrow().remote);
    let mut player = Player::new(prompt, false);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = [0u8; 2048];
    let mut pkt = Vec::with_capacity(256);
    let mut frame = [0i16; FRAME];
    while player.next_frame(&mut frame) {
        tick.tick().await;
        let now = std::time::Instant::now();
        // Latch to the caller's real source once its RTP arrives.
        while let Ok((_, src)) = sock.try_recv_from(&mut buf) {
            latch.accept(src, now);
        }
        let a = *answer.borrow();
        out.own(&mut pkt, a.pt, FRAME as u32);
        if !may_send(&a) {
            continue;
        }
        g711::encode(a.codec, &frame, &mut pkt);
        if let Some(dest) = latch.dest() {
            let _ = sock.send_to(&pkt, dest).await;
        }
    }
}

/// The `*44` prompt: espeak-ng's voice when it is installed, else three
/// 1 kHz beeps.
fn make_prompt() -> Prompt {
    match crate::tts::speak(
        "Welcome to Switchboard. This is the test prompt. Goodbye.",
        "en-us",
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "espeak-ng unavailable, the *44 prompt is a tone");
            let beep = Prompt::tone(1000.0, 8000, Duration::from_millis(300))
                .then(&Prompt::silence(Duration::from_millis(200)));
            beep.then(&beep).then(&beep)
        }
    }
}
