//! The media of one call-center leg (the customer's or an agent's): an RTP
//! socket pair from the port range, symmetric RTP, prompts and waiting
//! audio played to the phone, RFC 4733 keys from it, a bridge to another
//! leg (payload types mapped, G.711 laws transcoded when the legs differ),
//! and a voicemail recording. One task per leg; the SIP core drives it with
//! [`LegCmd`]s and hears [`LegEvent`]s.

use super::media::MediaPorts;
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::rtp::dtmf::DtmfReceiver;
use switchboard_media::rtp::g711;
use switchboard_media::sip::sdp::{Answer, G711};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What a leg is told to do.
#[derive(Debug)]
pub enum LegCmd {
    /// Where to send and in which format (from the SDP negotiation).
    Remote(Answer),
    /// Play these 8 kHz samples, once or looped; replaces what plays.
    Play {
        samples: Arc<Vec<i16>>,
        looped: bool,
    },
    /// Stop playing.
    Stop,
    /// Relay what this leg receives to `peer`, and play what `peer` sends.
    Connect(mpsc::Sender<PeerPacket>),
    /// Record what the phone says into a WAV file, at most `max_len`.
    Record { path: PathBuf, max_len: Duration },
}

/// What a leg reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// A prompt played to its end.
    PromptDone,
    /// A key pressed on the phone (RFC 4733).
    Digit(char),
}

/// An RTP packet relayed from the bridged leg, with how that leg
/// negotiated its formats.
#[derive(Debug, Clone)]
pub struct PeerPacket {
    pub bytes: Bytes,
    pub codec: G711,
    pub dtmf_pt: Option<u8>,
}

/// One leg's media; dropping it stops the task and frees the ports.
#[derive(Debug)]
pub struct Leg {
    /// The address to put in SDP.
    pub local: SocketAddr,
    cmds: mpsc::UnboundedSender<LegCmd>,
    inbox: mpsc::Sender<PeerPacket>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Leg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Leg {
    /// Binds a port pair and starts the leg's task. `advertise` is the
    /// address to announce when the socket is bound to a wildcard.
    pub async fn start(
        ports: &MediaPorts,
        advertise: std::net::IpAddr,
        tag: u64,
        events: mpsc::UnboundedSender<(u64, LegEvent)>,
    ) -> std::io::Result<Leg> {
        let (rtp, rtcp) = ports.bind_pair().await?;
        let mut local = rtp.local_addr()?;
        if local.ip().is_unspecified() {
            local.set_ip(advertise);
        }
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (inbox, inbox_rx) = mpsc::channel(64);
        let task = tokio::spawn(run(rtp, rtcp, cmd_rx, inbox_rx, tag, events));
        Ok(Leg {
            local,
            cmds,
            inbox,
            task,
        })
    }

    pub fn send(&self, cmd: LegCmd) {
        let _ = self.cmds.send(cmd);
    }

    /// Where a bridged peer sends this leg's audio.
    pub fn inbox(&self) -> mpsc::Sender<PeerPacket> {
        self.inbox.clone()
    }
}

/// Our own RTP stream: SSRC, sequence numbers and timestamps of ours,
/// whatever the source (RFC 3550 §8: we are a new source).
struct Out {
    ssrc: u32,
    seq: u16,
    /// Timestamp of the next packet if it follows on.
    next_ts: u32,
    /// Offset from the relayed stream's timestamps to ours.
    offset: Option<(u32, u32)>,
    marker: bool,
}

impl Out {
    fn new() -> Out {
        Out {
            ssrc: rand::random(),
            seq: rand::random(),
            next_ts: rand::random(),
            offset: None,
            marker: true,
        }
    }

    fn header(&mut self, buf: &mut Vec<u8>, pt: u8, ts: u32, marker: bool) {
        self.seq = self.seq.wrapping_add(1);
        buf.clear();
        buf.push(0x80);
        buf.push(pt | if marker || self.marker { 0x80 } else { 0 });
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&ts.to_be_bytes());
        buf.extend_from_slice(&self.ssrc.to_be_bytes());
        self.marker = false;
    }

    /// A frame we generate: 160 samples.
    fn own(&mut self, buf: &mut Vec<u8>, pt: u8) -> u32 {
        let ts = self.next_ts;
        self.offset = None;
        self.header(buf, pt, ts, false);
        self.next_ts = ts.wrapping_add(160);
        ts
    }

    /// A relayed packet with the source's timestamp and SSRC.
    fn relayed(
        &mut self,
        buf: &mut Vec<u8>,
        pt: u8,
        ssrc: u32,
        ts: u32,
        marker: bool,
        samples: u32,
    ) {
        let offset = match self.offset {
            Some((s, o)) if s == ssrc => o,
            _ => {
                // A new source: continue our timeline from where it was.
                let o = self.next_ts.wrapping_sub(ts);
                self.offset = Some((ssrc, o));
                self.marker = true;
                o
            }
        };
        let out_ts = ts.wrapping_add(offset);
        self.header(buf, pt, out_ts, marker);
        self.next_ts = out_ts.wrapping_add(samples);
    }
}

struct Recording {
    writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    until: Instant,
}

async fn run(
    rtp: UdpSocket,
    rtcp: UdpSocket,
    mut cmds: mpsc::UnboundedReceiver<LegCmd>,
    mut inbox: mpsc::Receiver<PeerPacket>,
    tag: u64,
    events: mpsc::UnboundedSender<(u64, LegEvent)>,
) {
    // RTCP from the phone is read and dropped so its socket never fills.
    let drain = tokio::spawn(async move {
        let mut b = [0u8; 1500];
        while rtcp.recv_from(&mut b).await.is_ok() {}
    });
    let mut answer: Option<Answer> = None;
    let mut dest: Option<SocketAddr> = None;
    let mut latched = false;
    let mut playing: Option<(Arc<Vec<i16>>, usize, bool)> = None;
    let mut peer: Option<mpsc::Sender<PeerPacket>> = None;
    let mut recording: Option<Recording> = None;
    let mut dtmf = DtmfReceiver::new(8000);
    let mut out = Out::new();
    let mut buf = vec![0u8; 2048];
    let mut pkt = Vec::with_capacity(256);
    let mut pcm = Vec::with_capacity(320);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let dtmf_wake = dtmf.poll_timeout();
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(LegCmd::Remote(a)) => {
                    if !latched {
                        dest = Some(a.remote);
                    }
                    answer = Some(a);
                }
                Some(LegCmd::Play { samples, looped }) => {
                    playing = Some((samples, 0, looped));
                    out.marker = true;
                }
                Some(LegCmd::Stop) => playing = None,
                Some(LegCmd::Connect(p)) => {
                    playing = None;
                    peer = Some(p);
                }
                Some(LegCmd::Record { path, max_len }) => {
                    let spec = hound::WavSpec {
                        channels: 1,
                        sample_rate: 8000,
                        bits_per_sample: 16,
                        sample_format: hound::SampleFormat::Int,
                    };
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    match hound::WavWriter::create(&path, spec) {
                        Ok(writer) => recording = Some(Recording { writer, until: Instant::now() + max_len }),
                        Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot record"),
                    }
                }
            },
            r = rtp.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { break };
                // Symmetric RTP: answer to where the phone's packets come
                // from, which is how a phone behind NAT is reached.
                if dest != Some(src) {
                    dest = Some(src);
                }
                latched = true;
                let Some(a) = answer else { continue };
                let Ok(r) = rtp_rs::RtpReader::new(&buf[..n]) else { continue };
                let is_dtmf = Some(r.payload_type()) == a.dtmf_pt;
                if is_dtmf {
                    let _ = dtmf.handle_packet(r.timestamp(), r.payload(), Instant::now());
                    while let Some(e) = dtmf.poll_event() {
                        tracing::info!(key = %e.key, "dtmf received");
                        let _ = events.send((tag, LegEvent::Digit(e.key)));
                    }
                } else if r.payload_type() == a.pt {
                    if let Some(rec) = recording.as_mut() {
                        pcm.clear();
                        g711::decode(a.codec, r.payload(), &mut pcm);
                        for s in &pcm {
                            let _ = rec.writer.write_sample(*s);
                        }
                        if Instant::now() >= rec.until {
                            finish(recording.take());
                        }
                    }
                }
                if let Some(p) = &peer {
                    let _ = p.try_send(PeerPacket {
                        bytes: Bytes::copy_from_slice(&buf[..n]),
                        codec: a.codec,
                        dtmf_pt: a.dtmf_pt,
                    });
                }
            }
            Some(p) = inbox.recv() => {
                let (Some(a), Some(to)) = (answer, dest) else { continue };
                if !a.direction.sends() {
                    continue;
                }
                let Ok(r) = rtp_rs::RtpReader::new(&p.bytes) else { continue };
                let payload = r.payload();
                if Some(r.payload_type()) == p.dtmf_pt {
                    // Keys pass through with our negotiated type.
                    let Some(pt) = a.dtmf_pt else { continue };
                    out.relayed(&mut pkt, pt, r.ssrc(), r.timestamp(), r.mark(), 0);
                    pkt.extend_from_slice(payload);
                } else {
                    out.relayed(&mut pkt, a.pt, r.ssrc(), r.timestamp(), r.mark(), payload.len() as u32);
                    if p.codec == a.codec {
                        pkt.extend_from_slice(payload);
                    } else {
                        pcm.clear();
                        g711::decode(p.codec, payload, &mut pcm);
                        g711::encode(a.codec, &pcm, &mut pkt);
                    }
                }
                let _ = rtp.send_to(&pkt, to).await;
            }
            _ = tick.tick(), if playing.is_some() => {
                let (Some(a), Some(to)) = (answer, dest) else { continue };
                let Some((samples, pos, looped)) = playing.as_mut() else { continue };
                let end = (*pos + 160).min(samples.len());
                let frame = &samples[*pos..end];
                out.own(&mut pkt, a.pt);
                g711::encode(a.codec, frame, &mut pkt);
                pkt.resize(12 + 160, g711::silence(a.codec));
                if a.direction.sends() {
                    let _ = rtp.send_to(&pkt, to).await;
                }
                *pos = end;
                if *pos >= samples.len() {
                    if *looped {
                        *pos = 0;
                    } else {
                        playing = None;
                        let _ = events.send((tag, LegEvent::PromptDone));
                    }
                }
            }
            _ = sleep_until(dtmf_wake) => {
                dtmf.handle_timeout(Instant::now());
                while let Some(e) = dtmf.poll_event() {
                    let _ = events.send((tag, LegEvent::Digit(e.key)));
                }
            }
        }
    }
    finish(recording.take());
    drain.abort();
}

fn finish(rec: Option<Recording>) {
    if let Some(r) = rec {
        if let Err(e) = r.writer.finalize() {
            tracing::warn!(error = %e, "recording not finalised");
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
