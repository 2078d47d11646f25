//! The media of one call-center leg (the customer's or an agent's): an RTP
//! socket pair from the port range, and a task that drives media's sans-IO
//! parts for it: symmetric RTP ([`Latch`]), our stream ([`RtpSender`]),
//! prompts and waiting audio ([`Player`]), RFC 4733 keys
//! ([`DtmfReceiver`]), the relay to a bridged leg ([`bridge::relay`]:
//! payload types mapped, laws transcoded, DTMF passed), RTCP reports
//! ([`Rtcp`]), a voicemail (mono WAV) and the call's stereo recording
//! (customer left, agent right, on the customer's leg), and whether the
//! phone is still there ([`Silence`]). The SIP core drives it with
//! [`LegCmd`]s and hears [`LegEvent`]s. Dropping the [`Leg`] ends the task
//! gracefully: recordings are closed and an RTCP BYE sent.

use super::core::MediaConfig;
use super::recording_io::{RecordingFile, WrittenNote};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use switchboard_media::rtp::bridge::{self, LegFormat};
use switchboard_media::rtp::dtmf::DtmfReceiver;
use switchboard_media::rtp::g711;
use switchboard_media::rtp::mixer::Mixer;
use switchboard_media::rtp::prompt::{Player, Prompt, FRAME};
use switchboard_media::rtp::recorder::{Channel, StereoRecorder};
use switchboard_media::rtp::rtcp::{Ntp, Rtcp};
use switchboard_media::rtp::stream::{Latch, RtpSender, Silence};
use switchboard_media::sip::sdp::Answer;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What a leg is told to do.
#[derive(Debug)]
pub enum LegCmd {
    /// Where to send and in which format (from the SDP negotiation).
    Remote(Answer),
    /// Play a prompt, once or looped; replaces what plays.
    Play { prompt: Prompt, looped: bool },
    /// Play a prompt once over what plays (the waiting audio), which
    /// goes on after it; no [`LegEvent::PromptDone`] for it.
    Announce(Prompt),
    /// Stop playing.
    Stop,
    /// Relay what this leg receives to `peer`, and play what `peer` sends.
    Connect(mpsc::Sender<PeerPacket>),
    /// Record what the phone says into a mono WAV file, at most `max_len`.
    Record { path: PathBuf, max_len: Duration },
    /// Record the conversation: this leg's phone on the left, the bridged
    /// peer on the right, into a stereo WAV file.
    RecordCall { path: PathBuf },
    /// Hold (with this music, looped) or take off hold (`None`): while
    /// held nothing is relayed either way between this leg's phone and
    /// the bridged peer; the recording goes on.
    Hold(Option<Prompt>),
    /// Also send what this leg's phone says to these legs (a supervisor
    /// listening); replaces the previous list.
    Listeners(Vec<mpsc::Sender<PeerPacket>>),
    /// Mix what the other legs send (more than one may: the customer and
    /// a whispering supervisor) instead of relaying one of them.
    Mix(bool),
    /// Report keys and prompt ends here from now (a leg we dialed that
    /// becomes a queued call's customer).
    Report(mpsc::UnboundedSender<(u64, LegEvent)>),
}

/// Where a leg reports, and what.
#[derive(Debug, Clone)]
pub struct Reports {
    pub to: mpsc::UnboundedSender<(u64, LegEvent)>,
    /// Keys and prompt ends too (the customer's leg), or only that the
    /// phone went quiet (a leg we dialed: keys come from the customer).
    pub keys: bool,
}

/// What a leg reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// A prompt played to its end.
    PromptDone,
    /// A key pressed on the phone (RFC 4733).
    Digit(char),
    /// The phone sent nothing for the media timeout: it is taken for
    /// gone. The leg with this local address.
    Silent(SocketAddr),
}

/// An RTP packet relayed from the bridged leg, with how that leg
/// negotiated its formats.
#[derive(Debug, Clone)]
pub struct PeerPacket {
    pub bytes: Bytes,
    pub format: LegFormat,
    /// The sending leg (its own random id), for the mixer.
    pub from: u64,
}

/// Music on hold: a slow C-major arpeggio of pure tones (C5 E5 G5 E5,
/// 300 ms each with 20 ms fades), quiet enough to sit under speech.
pub fn music_on_hold() -> Prompt {
    let mut samples = Vec::new();
    for hz in [523.25f32, 659.25, 783.99, 659.25] {
        let note = Prompt::tone(hz, 3000, Duration::from_millis(300));
        let n = note.samples().len();
        let fade = 160;
        samples.extend(note.samples().iter().enumerate().map(|(i, &x)| {
            let edge = i.min(n - 1 - i).min(fade);
            (i32::from(x) * edge as i32 / fade as i32) as i16
        }));
    }
    Prompt::new(samples)
}

/// One leg's media; dropping it ends the task and frees the ports.
#[derive(Debug)]
pub struct Leg {
    /// The address to put in SDP.
    pub local: SocketAddr,
    cmds: mpsc::UnboundedSender<LegCmd>,
    inbox: mpsc::Sender<PeerPacket>,
}

impl Leg {
    /// Binds a port pair and starts the leg's task. `advertise` is the
    /// address to announce when the socket is bound to a wildcard; `name`
    /// becomes the RTCP CNAME; events go out tagged with `tag`.
    pub async fn start(
        media: &MediaConfig,
        advertise: std::net::IpAddr,
        tag: u64,
        name: String,
        reports: Reports,
    ) -> std::io::Result<Leg> {
        let (rtp, rtcp) = media.ports.bind_pair().await?;
        let mut local = rtp.local_addr()?;
        if local.ip().is_unspecified() {
            local.set_ip(advertise);
        }
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (inbox, inbox_rx) = mpsc::channel(64);
        let silence = media.silence_limit.map(Silence::new);
        let state = State::new(tag, &name, reports, local, silence);
        super::metrics::get().legs_active.inc();
        tokio::spawn(run(rtp, rtcp, cmd_rx, inbox_rx, state));
        Ok(Leg { local, cmds, inbox })
    }

    pub fn send(&self, cmd: LegCmd) {
        let _ = self.cmds.send(cmd);
    }

    /// A handle to command the leg from elsewhere (a blocking task making
    /// a prompt).
    pub fn commands(&self) -> mpsc::UnboundedSender<LegCmd> {
        self.cmds.clone()
    }

    /// Where a bridged peer sends this leg's audio.
    pub fn inbox(&self) -> mpsc::Sender<PeerPacket> {
        self.inbox.clone()
    }
}

fn ntp_now() -> Ntp {
    Ntp::from_unix(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

struct Voicemail {
    /// Written by the recordings thread, as a call's recording is.
    writer: hound::WavWriter<RecordingFile>,
    path: PathBuf,
    note: WrittenNote,
    started: Instant,
    until: Instant,
}

type CallRecording = StereoRecorder<RecordingFile>;

/// A call's recording, its file's path, and what logs it once its file
/// is written.
type Recording = (CallRecording, PathBuf, WrittenNote);

/// Everything a leg's task knows.
struct State {
    tag: u64,
    events: Reports,
    /// The address in our SDP: the leg's name towards the core.
    local: SocketAddr,
    answer: Option<Answer>,
    rtp_to: Latch,
    rtcp_to: Latch,
    out: RtpSender,
    rtcp: Rtcp,
    player: Option<Player>,
    /// What an announcement interrupted, resumed after it.
    paused: Option<Player>,
    peer: Option<mpsc::Sender<PeerPacket>>,
    /// Other legs that hear this leg's phone too.
    listeners: Vec<mpsc::Sender<PeerPacket>>,
    /// This leg's id in the packets it relays.
    source: u64,
    /// Mixing what the other legs send (instead of relaying).
    mixer: Option<Mixer>,
    /// On hold: the phone hears music, not the peer, and the peer hears
    /// nothing of it.
    held: bool,
    voicemail: Option<Voicemail>,
    recording: Option<Recording>,
    /// Whether the phone is still there (`None`: not watched).
    silence: Option<Silence>,
    dtmf: DtmfReceiver,
    pkt: Vec<u8>,
    pcm: Vec<i16>,
}

impl State {
    fn new(
        tag: u64,
        name: &str,
        events: Reports,
        local: SocketAddr,
        silence: Option<Silence>,
    ) -> State {
        let ssrc = rand::random();
        State {
            tag,
            events,
            local,
            answer: None,
            rtp_to: Latch::new(),
            rtcp_to: Latch::new(),
            out: RtpSender::new(ssrc, rand::random(), rand::random()),
            rtcp: Rtcp::new(ssrc, name, 8000, rand::random()),
            player: None,
            paused: None,
            peer: None,
            listeners: Vec::new(),
            source: rand::random(),
            mixer: None,
            held: false,
            voicemail: None,
            recording: None,
            silence,
            dtmf: DtmfReceiver::new(8000),
            pkt: Vec::with_capacity(256),
            pcm: Vec::with_capacity(FRAME * 2),
        }
    }

    fn format(&self) -> Option<LegFormat> {
        self.answer
            .map(|a| LegFormat::new(a.codec, a.pt, a.dtmf_pt))
    }

    fn command(&mut self, cmd: LegCmd) {
        match cmd {
            LegCmd::Remote(a) => {
                self.rtp_to.signalled(a.remote);
                let mut rtcp = a.remote;
                rtcp.set_port(a.remote.port().saturating_add(1));
                self.rtcp_to.signalled(rtcp);
                if let Some(s) = self.silence.as_mut() {
                    // Our direction receives: the phone's sends.
                    s.renegotiated(a.direction.receives());
                }
                self.answer = Some(a);
            }
            LegCmd::Play { prompt, looped } => {
                self.player = Some(Player::new(prompt, looped));
                self.paused = None;
                self.out.mark();
            }
            LegCmd::Announce(prompt) => {
                if self.paused.is_none() {
                    self.paused = self.player.take();
                }
                self.player = Some(Player::new(prompt, false));
                self.out.mark();
            }
            LegCmd::Stop => {
                self.player = None;
                self.paused = None;
            }
            LegCmd::Connect(p) => {
                self.player = None;
                self.paused = None;
                self.held = false;
                self.peer = Some(p);
            }
            LegCmd::Listeners(l) => self.listeners = l,
            LegCmd::Report(to) => self.events = Reports { to, keys: true },
            LegCmd::Mix(on) => {
                if on != self.mixer.is_some() {
                    self.mixer = on.then(Mixer::new);
                    self.out.mark();
                }
            }
            LegCmd::Hold(music) => {
                self.held = music.is_some();
                self.paused = None;
                self.player = music.map(|m| Player::new(m, true));
                self.out.mark();
            }
            LegCmd::Record { path, max_len } => {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: 8000,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                // The file is made and written by the recordings thread.
                let file = RecordingFile::create(path.clone())
                    .map_err(hound::Error::IoError)
                    .and_then(|f| {
                        let note = f.written_note();
                        hound::WavWriter::new(f, spec).map(|w| (w, note))
                    });
                match file {
                    Ok((writer, note)) => {
                        let now = Instant::now();
                        self.voicemail = Some(Voicemail {
                            writer,
                            path,
                            note,
                            started: now,
                            until: now + max_len,
                        })
                    }
                    Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot record"),
                }
            }
            LegCmd::RecordCall { path } => {
                // The file is made and written by the recordings thread.
                let file = RecordingFile::create(path.clone())
                    .map_err(hound::Error::IoError)
                    .and_then(|f| {
                        let note = f.written_note();
                        StereoRecorder::new(f, Instant::now()).map(|r| (r, note))
                    });
                match file {
                    Ok((r, note)) => self.recording = Some((r, path, note)),
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "cannot record the call")
                    }
                }
            }
        }
    }

    /// A packet on the RTP socket.
    fn rtp_in(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        // Symmetric RTP: answer to where the phone's packets come from;
        // packets from elsewhere while it talks are not the phone's.
        if !self.rtp_to.accept(src, now) {
            return;
        }
        self.heard(now);
        let (Some(a), Ok(h)) = (self.answer, bridge::parse(data)) else {
            return;
        };
        self.rtcp.on_received(h.ssrc, h.seq, h.ts, now);
        let payload = &data[h.payload_at..h.payload_end];
        if Some(h.pt) == a.dtmf_pt {
            let _ = self.dtmf.handle_packet(h.ts, payload, now);
            self.keys();
        } else if h.pt == a.pt && (self.voicemail.is_some() || self.recording.is_some()) {
            self.pcm.clear();
            g711::decode(a.codec, payload, &mut self.pcm);
            if let Some(vm) = self.voicemail.as_mut() {
                for s in &self.pcm {
                    let _ = vm.writer.write_sample(*s);
                }
                if now >= vm.until {
                    finish_voicemail(self.voicemail.take(), now);
                }
            }
            if self.recording.is_some() {
                self.record(Channel::Left, (h.ssrc, h.seq, h.ts), self.pcm.clone(), now);
            }
        }
        let Some(format) = self.format() else {
            return;
        };
        let packet = PeerPacket {
            bytes: Bytes::copy_from_slice(data),
            format,
            from: self.source,
        };
        for l in &self.listeners {
            let _ = l.try_send(packet.clone());
        }
        if self.held {
            return;
        }
        if let Some(p) = &self.peer {
            let _ = p.try_send(packet);
        }
    }

    /// A key or a prompt's end, to whoever takes them.
    fn report(&self, event: LegEvent) {
        if self.events.keys {
            let _ = self.events.to.send((self.tag, event));
        }
    }

    /// A packet from the phone: it is there.
    fn heard(&mut self, now: Instant) {
        if let Some(s) = self.silence.as_mut() {
            s.heard(now);
        }
    }

    /// The phone has been quiet for the media timeout: the core hears it.
    fn check_silence(&mut self, now: Instant) {
        if self.silence.as_mut().is_some_and(|s| s.handle_timeout(now)) {
            let _ = self
                .events
                .to
                .send((self.tag, LegEvent::Silent(self.local)));
        }
    }

    fn keys(&mut self) {
        while let Some(e) = self.dtmf.poll_event() {
            tracing::info!(key = %e.key, "dtmf received");
            self.report(LegEvent::Digit(e.key));
        }
    }

    /// A packet from the bridged leg: relayed to our phone.
    fn peer_in(&mut self, p: PeerPacket, now: Instant) -> Option<SocketAddr> {
        let a = self.answer?;
        let to = self.format()?;
        if let Some(mixer) = self.mixer.as_mut() {
            // Audio joins the mix (sent on the tick); keys of the others
            // are theirs.
            if let Ok(h) = bridge::parse(&p.bytes) {
                if h.pt == p.format.pt {
                    self.pcm.clear();
                    g711::decode(
                        p.format.codec,
                        &p.bytes[h.payload_at..h.payload_end],
                        &mut self.pcm,
                    );
                    mixer.push(p.from, &self.pcm);
                }
            }
            return None;
        }
        if self.recording.is_some() {
            if let Ok(h) = bridge::parse(&p.bytes) {
                if h.pt == p.format.pt {
                    let mut pcm = Vec::with_capacity(h.payload_end - h.payload_at);
                    g711::decode(
                        p.format.codec,
                        &p.bytes[h.payload_at..h.payload_end],
                        &mut pcm,
                    );
                    self.record(Channel::Right, (h.ssrc, h.seq, h.ts), pcm, now);
                }
            }
        }
        if !a.direction.sends() || self.held {
            return None;
        }
        match bridge::relay(&p.bytes, &p.format, &to, &mut self.out, &mut self.pkt) {
            Ok(bridge::Relayed::Audio { samples }) => {
                if let Ok(h) = bridge::parse(&self.pkt) {
                    self.rtcp.on_sent(h.ts, samples, now);
                }
                self.rtp_to.dest()
            }
            Ok(bridge::Relayed::Dtmf) => self.rtp_to.dest(),
            Err(e) => {
                tracing::trace!(error = %e, "not relayed");
                None
            }
        }
    }

    /// The 20 ms tick: the next prompt frame (if any) into `pkt`.
    fn tick(&mut self, now: Instant) -> Option<SocketAddr> {
        self.advance_recording(now);
        let a = self.answer?;
        if self.player.is_none() && !self.held {
            return self.tick_mix(a, now);
        }
        let player = self.player.as_mut()?;
        let mut frame = [0i16; FRAME];
        if !player.next_frame(&mut frame) {
            self.prompt_ended();
            return None;
        }
        let ts = self.out.own(&mut self.pkt, a.pt, FRAME as u32);
        g711::encode(a.codec, &frame, &mut self.pkt);
        self.rtcp.on_sent(ts, FRAME, now);
        if player.finished() {
            self.prompt_ended();
        }
        if a.direction.sends() {
            self.rtp_to.dest()
        } else {
            None
        }
    }

    /// The mixed frame of the other legs, when mixing: sent, and recorded
    /// as what this leg's phone hears.
    fn tick_mix(&mut self, a: Answer, now: Instant) -> Option<SocketAddr> {
        let mixer = self.mixer.as_mut()?;
        let mut frame = [0i16; FRAME];
        if !mixer.mix(&mut frame) {
            return None;
        }
        let ts = self.out.own(&mut self.pkt, a.pt, FRAME as u32);
        g711::encode(a.codec, &frame, &mut self.pkt);
        self.rtcp.on_sent(ts, FRAME, now);
        if let (Some((rec, _, _)), Ok(h)) = (self.recording.as_mut(), bridge::parse(&self.pkt)) {
            rec.push(Channel::Right, (h.ssrc, h.seq, h.ts), frame.to_vec(), now);
        }
        if a.direction.sends() {
            self.rtp_to.dest()
        } else {
            None
        }
    }

    /// A prompt played to its end: an announcement gives way to what it
    /// interrupted; anything else is reported.
    fn prompt_ended(&mut self) {
        self.player = None;
        if let Some(p) = self.paused.take() {
            self.player = Some(p);
            self.out.mark();
        } else {
            self.report(LegEvent::PromptDone);
        }
    }

    /// Whether the 20 ms tick runs: something is played or mixed. A
    /// recording alone needs no tick (see [`Self::recording_due`]).
    fn ticking(&self) -> bool {
        self.player.is_some() || self.mixer.is_some()
    }

    /// The recording writes what was due before each packet it gets, and
    /// otherwise wakes the leg once a second (silence still makes a
    /// playable file); on the tick when there is one.
    fn recording_due(&self) -> Option<Instant> {
        if self.ticking() {
            return None;
        }
        self.recording.as_ref().map(|(rec, _, _)| rec.flush_due())
    }

    /// Writes the recording up to `now`.
    fn advance_recording(&mut self, now: Instant) {
        self.on_recording(|rec| rec.advance(now));
    }

    /// One packet's audio into the recording.
    fn record(&mut self, channel: Channel, rtp: (u32, u16, u32), pcm: Vec<i16>, now: Instant) {
        self.on_recording(|rec| rec.record(channel, rtp, pcm, now));
    }

    /// A write to the recording; one that fails stops it.
    fn on_recording(&mut self, f: impl FnOnce(&mut CallRecording) -> Result<(), hound::Error>) {
        if let Some((rec, path, _)) = self.recording.as_mut() {
            if let Err(e) = f(rec) {
                tracing::warn!(error = %e, path = %path.display(), "call recording stopped");
                self.recording = None;
            }
        }
    }

    /// The leg ends: recordings closed, what RTCP learned logged.
    fn finish(&mut self, now: Instant) -> Option<(Vec<u8>, SocketAddr)> {
        finish_voicemail(self.voicemail.take(), now);
        if let Some((rec, path, note)) = self.recording.take() {
            match rec.finish(now) {
                // Logged by the recordings thread once the file is closed.
                Ok(r) => note.send(path, r),
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "call recording not finished")
                }
            }
        }
        if let Some(r) = self.rtcp.remote() {
            let m = super::metrics::get();
            let kind = if self.recording.is_some() || self.peer.is_some() {
                "bridged"
            } else {
                "ivr"
            };
            m.rtp_received
                .with_label_values(&[kind])
                .inc_by(r.received());
            m.rtp_lost
                .with_label_values(&[kind])
                .inc_by(u64::try_from(r.lost()).unwrap_or(0));
            m.rtp_jitter.observe(f64::from(r.jitter()) / 8000.0);
            tracing::info!(
                tag = %format!("{:016x}", self.tag),
                received = r.received(),
                lost = r.lost(),
                jitter_ms = r.jitter() / 8,
                rtt_ms = self.rtcp.peer_view().and_then(|v| v.rtt).map(|d| d.as_millis()),
                "leg media"
            );
        }
        let dest = self.rtcp_to.dest()?;
        self.rtcp.remote()?;
        Some((self.rtcp.bye(now, ntp_now(), "call ended"), dest))
    }
}

/// Ends a voicemail: its header is written and its file closed, then
/// the recordings thread logs it.
fn finish_voicemail(vm: Option<Voicemail>, now: Instant) {
    if let Some(v) = vm {
        match v.writer.finalize() {
            Ok(()) => v
                .note
                .voicemail(v.path, now.saturating_duration_since(v.started)),
            Err(e) => tracing::warn!(error = %e, "voicemail not finalised"),
        }
    }
}

async fn run(
    rtp: UdpSocket,
    rtcp: UdpSocket,
    mut cmds: mpsc::UnboundedReceiver<LegCmd>,
    mut inbox: mpsc::Receiver<PeerPacket>,
    mut st: State,
) {
    // An Ethernet MTU's worth: G.711 packets are 172 bytes.
    let mut buf = vec![0u8; 1500];
    let mut rtcp_buf = vec![0u8; 1500];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let dtmf_wake = st.dtmf.poll_timeout();
        let rtcp_wake = st.rtcp.poll_timeout();
        let recording_wake = st.recording_due();
        let silence_wake = st.silence.as_ref().and_then(Silence::poll_timeout);
        let ticking = st.ticking();
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(c) => st.command(c),
            },
            r = rtp.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { break };
                st.rtp_in(&buf[..n], src, Instant::now());
            }
            r = rtcp.recv_from(&mut rtcp_buf) => {
                let Ok((n, src)) = r else { break };
                let now = Instant::now();
                if st.rtcp_to.accept(src, now) {
                    st.heard(now);
                    if let Err(e) = st.rtcp.handle_rtcp(&rtcp_buf[..n], now, ntp_now()) {
                        tracing::debug!(error = %e, "rtcp dropped");
                    }
                }
            }
            Some(p) = inbox.recv() => {
                if let Some(to) = st.peer_in(p, Instant::now()) {
                    let _ = rtp.send_to(&st.pkt, to).await;
                }
            }
            _ = tick.tick(), if ticking => {
                if let Some(to) = st.tick(Instant::now()) {
                    let _ = rtp.send_to(&st.pkt, to).await;
                }
            }
            _ = sleep_until(recording_wake) => st.advance_recording(Instant::now()),
            _ = sleep_until(silence_wake) => st.check_silence(Instant::now()),
            _ = sleep_until(dtmf_wake) => {
                st.dtmf.handle_timeout(Instant::now());
                st.keys();
            }
            _ = sleep_until(rtcp_wake) => {
                let now = Instant::now();
                st.rtcp.handle_timeout(now, ntp_now());
                while let Some(report) = st.rtcp.poll_transmit() {
                    if let Some(to) = st.rtcp_to.dest() {
                        let _ = rtcp.send_to(&report, to).await;
                    }
                }
            }
        }
    }
    if let Some((bye, to)) = st.finish(Instant::now()) {
        let _ = rtcp.send_to(&bye, to).await;
    }
    super::metrics::get().legs_active.dec();
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
