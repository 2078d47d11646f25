//! SDP offer/answer for G.711 audio (RFC 3264 on RFC 4566), parsed with
//! `webrtc-sdp`.
//!
//! - [`parse_offer`] reads what a peer offers for audio: where to send,
//!   the formats in its order of preference, the telephone-event payload
//!   type it chose (RFC 4733), `ptime`, and the direction, hold included.
//! - [`LocalSession::answer`] answers it: one G.711 law, the offer's
//!   telephone-event type, the direction RFC 3264 §6.1 allows, and every
//!   other m-line of the offer rejected with port 0 (§6: an answer has as
//!   many m-lines as the offer).
//! - [`LocalSession::offer`] is for when we offer (new outbound calls,
//!   re-INVITEs for hold), and [`parse_answer`] reads the peer's answer.
//! - [`LocalSession`] owns the `o=` line: its version goes up by one each
//!   time what we send changes (RFC 3264 §8).
//!
//! `webrtc-sdp` was written for WebRTC and refuses some lines that RFC 4566
//! allows and SIP peers send. Before parsing, lines of the types it rejects
//! outright but that carry nothing needed here (`u=`, `e=`, `p=`, `z=`,
//! `r=`, `k=`) are dropped, and only the session part and the chosen audio
//! m-section are handed to it, so that a video, T.38 (`udptl`) or SRTP
//! section it cannot read does not fail the whole offer. The m-lines of
//! those sections are kept as text to reject them in the answer. SDP is
//! written here directly rather than through `webrtc-sdp`'s builders, which
//! cannot express those rejected non-RTP m-lines; tests parse every SDP
//! written here back with `webrtc-sdp`.
//!
//! ```
//! use switchboard_media::sip::sdp::{parse_offer, Direction, G711, LocalMedia, LocalSession};
//!
//! let offer = "v=0\r\no=user1 53655765 2353687637 IN IP4 192.0.2.5\r\ns=-\r\n\
//!     c=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 96\r\n\
//!     a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
//!     a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=sendonly\r\n";
//! let remote = parse_offer(offer).unwrap();
//! let local = LocalMedia::new("198.51.100.1".parse().unwrap(), 20000);
//! let mut session = LocalSession::new(42, 1);
//! let (answer, sdp) = session.answer(&remote, &local, Direction::SendRecv).unwrap();
//! assert_eq!((answer.codec, answer.pt, answer.dtmf_pt), (G711::Pcma, 8, Some(96)));
//! // They only send (they hold us): we only receive.
//! assert_eq!(answer.direction, Direction::RecvOnly);
//! assert_eq!(answer.remote.to_string(), "192.0.2.5:6000");
//! assert!(sdp.contains("m=audio 20000 RTP/AVP 8 96\r\n"));
//! assert!(sdp.contains("a=recvonly\r\n"));
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use thiserror::Error;
use webrtc_sdp::address::ExplicitlyTypedAddress;
use webrtc_sdp::attribute_type::{SdpAttribute, SdpAttributeType};
use webrtc_sdp::media_type::{SdpFormatList, SdpMedia};
use webrtc_sdp::SdpSession;

/// Payload type of telephone-event when we offer (a dynamic type, RFC 3551
/// §3; 101 is what most SIP equipment uses). When we answer we use
/// whatever the offer chose.
pub const OFFER_DTMF_PT: u8 = 101;
/// Events we say we receive (RFC 4733's DTMF events 0–15 and flash, 16).
const DTMF_EVENTS: &str = "0-16";
/// Packetization time when the peer names none (RFC 3551: 20 ms for
/// G.711 by default).
pub const DEFAULT_PTIME: u32 = 20;
/// The clock rate of G.711 and hence of its telephone-event (RFC 4733:
/// the event clock is the audio clock).
const G711_RATE: u32 = 8000;

/// Why an SDP body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not SDP, or SDP that `webrtc-sdp` cannot read.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No audio stream over RTP/AVP.
    #[error("no RTP/AVP audio stream")]
    NoAudio,
    /// Audio, but no format in common.
    #[error("no codec in common")]
    NoCommonCodec,
    /// A connection address given as a domain name, which this sans-IO
    /// code cannot resolve.
    #[error("connection address {0:?} is not an IP address")]
    UnresolvedAddress(String),
    /// The answer rejected our audio stream (port 0).
    #[error("audio stream rejected")]
    Rejected,
}

/// How the caller should react to an [`SdpError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpErrorKind {
    /// The body is broken: a 400 to a request.
    Malformed,
    /// The body is fine but we cannot take part: a 488 Not Acceptable Here
    /// (RFC 3261 §21.4.26), or ending the call when it was an answer.
    NotAcceptable,
}

impl SdpError {
    /// What kind of failure this is.
    pub fn kind(&self) -> SdpErrorKind {
        match self {
            SdpError::Malformed(_) => SdpErrorKind::Malformed,
            SdpError::NoAudio
            | SdpError::NoCommonCodec
            | SdpError::UnresolvedAddress(_)
            | SdpError::Rejected => SdpErrorKind::NotAcceptable,
        }
    }
}

/// A stream's direction from the point of view of the side that wrote the
/// SDP (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv`, the default.
    SendRecv,
    /// `a=sendonly`: holding the other side.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// From whether the side sends and receives.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the side sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end: sendonly there is
    /// recvonly here (RFC 3264 §6.1).
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// The attribute name.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, `PCMU`.
    Pcmu,
    /// A-law, `PCMA`.
    Pcma,
}

impl G711 {
    /// The encoding name (RFC 3551 §4.5.14).
    pub fn name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    /// Its static payload type (RFC 3551 Table 4), used when we offer.
    pub fn static_payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }
}

/// An `a=rtpmap`, or the static assignment it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Encoding name as written (compare case-insensitively).
    pub encoding: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channels, when given.
    pub channels: Option<u32>,
}

/// One format of an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The payload type.
    pub pt: u8,
    /// Its `a=rtpmap`, else the RFC 3551 static assignment, else `None`
    /// (a dynamic type without rtpmap, or a static one not known here).
    pub rtpmap: Option<RtpMap>,
}

impl Format {
    /// The G.711 law this format carries, if it is one: PCMU or PCMA at
    /// 8000 Hz, mono.
    pub fn g711(&self) -> Option<G711> {
        let map = self.rtpmap.as_ref()?;
        if map.clock_rate != G711_RATE || map.channels.is_some_and(|c| c != 1) {
            return None;
        }
        if map.encoding.eq_ignore_ascii_case("PCMU") {
            Some(G711::Pcmu)
        } else if map.encoding.eq_ignore_ascii_case("PCMA") {
            Some(G711::Pcma)
        } else {
            None
        }
    }

    fn is_telephone_event_8000(&self) -> bool {
        self.rtpmap.as_ref().is_some_and(|m| {
            m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == G711_RATE
        })
    }
}

/// RFC 3551 Table 4, the audio assignments a peer may use without rtpmap.
fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (encoding, clock_rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        // G.722's RTP clock is 8000 although it samples at 16000 (§4.5.2).
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(RtpMap {
        encoding: encoding.into(),
        clock_rate,
        channels: None,
    })
}

/// An m-line kept as text, to be rejected in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MLine {
    media: String,
    port: u16,
    proto: String,
    formats: String,
}

/// The audio stream of a peer's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where to send RTP: the media-level `c=`, else the session-level one.
    pub addr: IpAddr,
    /// RTP port; 0 when the stream is disabled (RFC 3264 §8.2).
    pub port: u16,
    /// The formats in the m-line's order, the sender's preference.
    pub formats: Vec<Format>,
    /// The first telephone-event/8000 payload type, if any.
    pub dtmf_pt: Option<u8>,
    /// `a=ptime`, when given and sensible (1–200 ms).
    pub ptime: Option<u32>,
    /// Their direction: the media-level attribute, else the session-level
    /// one, else sendrecv; `inactive` when the port is 0; never receiving
    /// when the address is 0.0.0.0 (the RFC 2543 hold that RFC 3264 §8.4
    /// still asks agents to understand: send nothing there).
    pub direction: Direction,
    /// The `o=` session id, to recognise the same session later.
    pub origin_session_id: u64,
    /// The `o=` version: unchanged means the SDP is unchanged (RFC 3264 §8).
    pub origin_version: u64,
    m_lines: Vec<MLine>,
    audio_index: usize,
}

impl RemoteMedia {
    /// Where to send RTP.
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// Whether the peer does not want our media (sendonly, inactive, or a
    /// disabled stream): they hold us.
    pub fn is_hold(&self) -> bool {
        !self.direction.receives()
    }
}

/// Our side of the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address we receive RTP on (and put in `c=` and `o=`).
    pub addr: IpAddr,
    /// The RTP port.
    pub port: u16,
    /// The laws we support, in the order we offer them. Empty means both.
    pub codecs: Vec<G711>,
    /// The packetization we ask for in what we receive.
    pub ptime: u32,
}

impl LocalMedia {
    /// PCMU then PCMA, 20 ms.
    pub fn new(addr: IpAddr, port: u16) -> Self {
        LocalMedia {
            addr,
            port,
            codecs: vec![G711::Pcmu, G711::Pcma],
            ptime: DEFAULT_PTIME,
        }
    }

    /// `codecs` without duplicates, or both laws when it is empty.
    fn supported(&self) -> Vec<G711> {
        let mut out: Vec<G711> = Vec::new();
        for c in &self.codecs {
            if !out.contains(c) {
                out.push(*c);
            }
        }
        if out.is_empty() {
            out = vec![G711::Pcmu, G711::Pcma];
        }
        out
    }
}

/// The result of a negotiation, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The law to send and expect.
    pub codec: G711,
    /// Its payload type, as the peer's SDP numbered it.
    pub pt: u8,
    /// The telephone-event payload type, when both sides have one.
    pub dtmf_pt: Option<u8>,
    /// The packetization to send with: what the peer asked for, else 20.
    pub ptime: u32,
    /// What we may do: `SendOnly` means send and do not expect media.
    pub direction: Direction,
    /// Where to send RTP.
    pub remote: SocketAddr,
}

/// Our SDP session: the `o=` line and its version.
#[derive(Debug, Clone)]
pub struct LocalSession {
    username: String,
    id: u64,
    version: u64,
    /// Everything but the `o=` line of the last SDP we wrote.
    last_body: Option<String>,
}

impl LocalSession {
    /// A session with `id` (unique per call; RFC 4566 §5.2 suggests an NTP
    /// timestamp) whose first SDP carries `version`.
    pub fn new(id: u64, version: u64) -> Self {
        LocalSession {
            username: "switchboard".into(),
            id,
            version,
            last_body: None,
        }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The version of the last SDP written (or of the first, before any).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Answers `offer` (RFC 3264 §6). `want` is the direction we would
    /// like (sendrecv normally; sendonly while we hold the peer); the
    /// answer's direction is what both allow.
    ///
    /// The codec is the first G.711 format of the offer that `local`
    /// supports: the offerer's order is its preference (§5.1) and either
    /// law costs us the same. Its payload type is the offer's (§6.1). The
    /// answer lists that one codec, so the peer cannot switch laws mid-call,
    /// plus telephone-event when offered at 8000 Hz.
    pub fn answer(
        &mut self,
        offer: &RemoteMedia,
        local: &LocalMedia,
        want: Direction,
    ) -> Result<(Answer, String), SdpError> {
        let supported = local.supported();
        let (codec, pt) = offer
            .formats
            .iter()
            .find_map(|f| {
                f.g711()
                    .filter(|law| supported.contains(law))
                    .map(|law| (law, f.pt))
            })
            .ok_or(SdpError::NoCommonCodec)?;
        let disabled = offer.port == 0;
        // §6.1: we send only if they receive, and receive only if they send.
        let direction = if disabled {
            Direction::Inactive
        } else {
            Direction::from_flags(
                want.sends() && offer.direction.receives(),
                want.receives() && offer.direction.sends(),
            )
        };
        let answer = Answer {
            codec,
            pt,
            dtmf_pt: offer.dtmf_pt,
            ptime: offer.ptime.unwrap_or(DEFAULT_PTIME),
            direction,
            remote: offer.remote(),
        };
        let mut media = String::new();
        for (i, m) in offer.m_lines.iter().enumerate() {
            if i == offer.audio_index {
                // A stream offered with port 0 stays at port 0 (§6, §8.2).
                let port = if disabled { 0 } else { local.port };
                audio_section(
                    &mut media,
                    port,
                    &[(codec, pt)],
                    offer.dtmf_pt,
                    local.ptime,
                    direction,
                );
            } else {
                // §6: a stream we do not take is rejected with port 0, its
                // media and formats as offered.
                let _ = write!(media, "m={} 0 {} {}\r\n", m.media, m.proto, m.formats);
            }
        }
        Ok((answer, self.render(local.addr, &media)))
    }

    /// An offer of one audio stream: the laws of `local` with their static
    /// payload types, telephone-event as [`OFFER_DTMF_PT`], `local.ptime`
    /// and `direction` (sendonly to hold the peer, RFC 3264 §8.4).
    pub fn offer(&mut self, local: &LocalMedia, direction: Direction) -> String {
        let codecs: Vec<(G711, u8)> = local
            .supported()
            .into_iter()
            .map(|c| (c, c.static_payload_type()))
            .collect();
        let mut media = String::new();
        audio_section(
            &mut media,
            local.port,
            &codecs,
            Some(OFFER_DTMF_PT),
            local.ptime,
            direction,
        );
        self.render(local.addr, &media)
    }

    /// The SDP text around `media`, with the version bumped if anything
    /// differs from the last SDP (RFC 3264 §8: an unchanged SDP keeps its
    /// version, a changed one increments it by one).
    fn render(&mut self, addr: IpAddr, media: &str) -> String {
        let family = if addr.is_ipv6() { "IP6" } else { "IP4" };
        let body = format!("s=switchboard\r\nc=IN {family} {addr}\r\nt=0 0\r\n{media}");
        match &self.last_body {
            Some(last) if *last != body => self.version = self.version.wrapping_add(1),
            _ => {}
        }
        let sdp = format!(
            "v=0\r\no={} {} {} IN {family} {addr}\r\n{body}",
            self.username, self.id, self.version
        );
        self.last_body = Some(body);
        sdp
    }
}

fn audio_section(
    out: &mut String,
    port: u16,
    codecs: &[(G711, u8)],
    dtmf_pt: Option<u8>,
    ptime: u32,
    direction: Direction,
) {
    let mut pts: Vec<String> = codecs.iter().map(|(_, pt)| pt.to_string()).collect();
    pts.extend(dtmf_pt.map(|pt| pt.to_string()));
    let _ = write!(out, "m=audio {port} RTP/AVP {}\r\n", pts.join(" "));
    for (law, pt) in codecs {
        let _ = write!(out, "a=rtpmap:{pt} {}/{G711_RATE}\r\n", law.name());
    }
    if let Some(pt) = dtmf_pt {
        let _ = write!(
            out,
            "a=rtpmap:{pt} telephone-event/{G711_RATE}\r\na=fmtp:{pt} {DTMF_EVENTS}\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{ptime}\r\na={}\r\n", direction.attribute());
}

/// Reads the audio stream of an offer: the first `m=audio` over RTP/AVP
/// with a non-zero port, else the first such with port 0 (a disabled
/// stream, which the answer must also disable).
pub fn parse_offer(sdp: &str) -> Result<RemoteMedia, SdpError> {
    let doc = Document::split(sdp)?;
    let candidates = || {
        doc.sections
            .iter()
            .enumerate()
            .filter(|(_, s)| is_plain_audio(&s.m_line))
    };
    let audio_index = candidates()
        .find(|(_, s)| s.m_line.port != 0)
        .or_else(|| candidates().next())
        .map(|(i, _)| i)
        .ok_or(SdpError::NoAudio)?;
    doc.describe(audio_index)
}

/// Reads the peer's answer to an offer from [`LocalSession::offer`] made
/// with `local` and `offered` (RFC 3264 §6: the answer's first m-line
/// answers our only one).
///
/// The codec is the first G.711 format of the answer that we offered; its
/// payload type is the answer's, which is how the peer wants to receive it.
pub fn parse_answer(sdp: &str, local: &LocalMedia, offered: Direction) -> Result<Answer, SdpError> {
    let doc = Document::split(sdp)?;
    let first = doc
        .sections
        .first()
        .ok_or(SdpError::Malformed("the answer has no m-line".into()))?;
    if first.m_line.port == 0 {
        return Err(SdpError::Rejected);
    }
    if !is_plain_audio(&first.m_line) {
        return Err(SdpError::Malformed(
            "the answer's first m-line is not RTP/AVP audio".into(),
        ));
    }
    let theirs = doc.describe(0)?;
    let supported = local.supported();
    let (codec, pt) = theirs
        .formats
        .iter()
        .find_map(|f| {
            f.g711()
                .filter(|law| supported.contains(law))
                .map(|law| (law, f.pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    Ok(Answer {
        codec,
        pt,
        dtmf_pt: theirs.dtmf_pt,
        ptime: theirs.ptime.unwrap_or(DEFAULT_PTIME),
        direction: Direction::from_flags(
            offered.sends() && theirs.direction.receives(),
            offered.receives() && theirs.direction.sends(),
        ),
        remote: theirs.remote(),
    })
}

fn is_plain_audio(m: &MLine) -> bool {
    m.media.eq_ignore_ascii_case("audio") && m.proto.eq_ignore_ascii_case("RTP/AVP")
}

/// An SDP body cut into its session part and m-sections.
struct Document<'a> {
    session: Vec<&'a str>,
    sections: Vec<Section<'a>>,
}

struct Section<'a> {
    m_line: MLine,
    lines: Vec<&'a str>,
}

impl<'a> Document<'a> {
    fn split(sdp: &'a str) -> Result<Self, SdpError> {
        let mut session = Vec::new();
        let mut sections: Vec<Section<'a>> = Vec::new();
        let mut lines = sdp.lines().map(str::trim).filter(|l| !l.is_empty());
        // RFC 4566 §5: the first line is the version.
        match lines.next() {
            Some(v) if v.starts_with("v=") => session.push(v),
            _ => return Err(SdpError::Malformed("not SDP: no v= line first".into())),
        }
        for line in lines {
            // RFC 4566 fields `webrtc-sdp` rejects as errors and that say
            // nothing about where and how to send audio.
            if matches!(
                line.as_bytes(),
                [b'u' | b'e' | b'p' | b'z' | b'r' | b'k', b'=', ..]
            ) {
                continue;
            }
            if let Some(value) = line.strip_prefix("m=") {
                sections.push(Section {
                    m_line: parse_m_line(value)?,
                    lines: vec![line],
                });
            } else if let Some(s) = sections.last_mut() {
                s.lines.push(line);
            } else {
                session.push(line);
            }
        }
        Ok(Document { session, sections })
    }

    /// Parses the session part and section `index` with `webrtc-sdp`.
    fn describe(&self, index: usize) -> Result<RemoteMedia, SdpError> {
        let section = self
            .sections
            .get(index)
            .ok_or(SdpError::Malformed("no such m-line".into()))?;
        let mut text = String::new();
        for line in self.session.iter().chain(&section.lines) {
            text.push_str(line);
            text.push_str("\r\n");
        }
        let session =
            webrtc_sdp::parse_sdp(&text, false).map_err(|e| SdpError::Malformed(e.to_string()))?;
        let media = session
            .media
            .first()
            .ok_or(SdpError::Malformed("no media section".into()))?;
        let mut remote = describe_audio(&session, media)?;
        remote.m_lines = self.sections.iter().map(|s| s.m_line.clone()).collect();
        remote.audio_index = index;
        Ok(remote)
    }
}

/// `media port[/count] proto fmt…` (RFC 4566 §5.14), as text.
fn parse_m_line(value: &str) -> Result<MLine, SdpError> {
    let mut tokens = value.split_whitespace();
    let (Some(media), Some(port), Some(proto)) = (tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(SdpError::Malformed(format!("short m-line {value:?}")));
    };
    let formats: Vec<&str> = tokens.collect();
    if formats.is_empty() {
        return Err(SdpError::Malformed(format!(
            "m-line without formats {value:?}"
        )));
    }
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| SdpError::Malformed(format!("bad port in m-line {value:?}")))?;
    Ok(MLine {
        media: media.to_owned(),
        port,
        proto: proto.to_owned(),
        formats: formats.join(" "),
    })
}

fn direction_of(attrs: &[SdpAttribute]) -> Option<Direction> {
    attrs.iter().find_map(|a| match a {
        SdpAttribute::Sendrecv => Some(Direction::SendRecv),
        SdpAttribute::Sendonly => Some(Direction::SendOnly),
        SdpAttribute::Recvonly => Some(Direction::RecvOnly),
        SdpAttribute::Inactive => Some(Direction::Inactive),
        _ => None,
    })
}

fn describe_audio(session: &SdpSession, media: &SdpMedia) -> Result<RemoteMedia, SdpError> {
    let connection = media
        .get_connection()
        .as_ref()
        .or(session.connection.as_ref())
        .ok_or(SdpError::Malformed("no connection address".into()))?;
    let addr = match &connection.address {
        ExplicitlyTypedAddress::Ip(ip) => *ip,
        ExplicitlyTypedAddress::Fqdn { domain, .. } => {
            return Err(SdpError::UnresolvedAddress(domain.clone()))
        }
    };
    let port = u16::try_from(media.get_port())
        .map_err(|_| SdpError::Malformed("port out of range".into()))?;
    let SdpFormatList::Integers(pts) = media.get_formats() else {
        return Err(SdpError::Malformed("audio formats are not numbers".into()));
    };
    let rtpmaps: Vec<_> = media
        .get_attributes_of_type(SdpAttributeType::Rtpmap)
        .into_iter()
        .filter_map(|a| match a {
            SdpAttribute::Rtpmap(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut formats = Vec::with_capacity(pts.len());
    for &pt in pts {
        let pt = u8::try_from(pt)
            .ok()
            .filter(|pt| *pt <= 127)
            .ok_or_else(|| SdpError::Malformed(format!("payload type {pt} out of range")))?;
        let rtpmap = rtpmaps
            .iter()
            .find(|r| r.payload_type == pt)
            .map(|r| RtpMap {
                encoding: r.codec_name.clone(),
                clock_rate: r.frequency,
                channels: r.channels,
            })
            .or_else(|| static_rtpmap(pt));
        formats.push(Format { pt, rtpmap });
    }
    let dtmf_pt = formats
        .iter()
        .find(|f| f.is_telephone_event_8000())
        .map(|f| f.pt);
    let ptime = media.get_attributes().iter().find_map(|a| match a {
        SdpAttribute::Ptime(p) => u32::try_from(*p).ok().filter(|p| (1..=200).contains(p)),
        _ => None,
    });
    let mut direction = direction_of(media.get_attributes())
        .or_else(|| direction_of(&session.attribute))
        .unwrap_or(Direction::SendRecv);
    if addr.is_unspecified() {
        // RFC 3264 §8.4: neither RTP nor RTCP is sent to 0.0.0.0.
        direction = Direction::from_flags(direction.sends(), false);
    }
    if port == 0 {
        direction = Direction::Inactive;
    }
    Ok(RemoteMedia {
        addr,
        port,
        formats,
        dtmf_pt,
        ptime,
        direction,
        origin_session_id: session.origin.session_id,
        origin_version: session.origin.session_version,
        m_lines: Vec::new(),
        audio_index: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn crlf(s: &str) -> String {
        s.lines().map(|l| format!("{}\r\n", l.trim())).collect()
    }

    fn local() -> LocalMedia {
        LocalMedia::new("198.51.100.1".parse().unwrap(), 30000)
    }

    /// Parses with `webrtc-sdp` on its own, as a peer would.
    fn reparse(sdp: &str) -> SdpSession {
        webrtc_sdp::parse_sdp(sdp, false).unwrap_or_else(|e| panic!("{e}\n{sdp}"))
    }

    fn baresip() -> String {
        crlf(
            "v=0
            o=- 1462281264 2316014393 IN IP4 192.168.1.50
            s=-
            c=IN IP4 192.168.1.50
            t=0 0
            a=tool:baresip 1.0.0
            m=audio 10090 RTP/AVP 96 9 0 8 101
            b=AS:117
            a=rtpmap:96 opus/48000/2
            a=fmtp:96 stereo=1;sprop-stereo=1
            a=rtpmap:9 G722/8000
            a=rtpmap:0 PCMU/8000
            a=rtpmap:8 PCMA/8000
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-15
            a=ptime:20
            a=sendrecv
            a=rtcp-rsize
            m=video 10092 RTP/AVP 100
            b=AS:1000
            a=rtpmap:100 H264/90000
            a=fmtp:100 packetization-mode=0;profile-level-id=42e01f
            a=sendrecv",
        )
    }

    #[test]
    fn baresip_offer_with_video() {
        let offer = parse_offer(&baresip()).unwrap();
        assert_eq!(offer.remote(), "192.168.1.50:10090".parse().unwrap());
        assert_eq!(
            offer.formats.iter().map(|f| f.pt).collect::<Vec<_>>(),
            vec![96, 9, 0, 8, 101]
        );
        assert_eq!(
            offer.formats[0].rtpmap,
            Some(RtpMap {
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: Some(2)
            })
        );
        assert_eq!(offer.formats[0].g711(), None);
        assert_eq!((offer.dtmf_pt, offer.ptime), (Some(101), Some(20)));
        assert_eq!(offer.direction, Direction::SendRecv);
        assert_eq!(
            (offer.origin_session_id, offer.origin_version),
            (1462281264, 2316014393)
        );

        let mut session = LocalSession::new(7, 1);
        let (answer, sdp) = session
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert_eq!(
            answer,
            Answer {
                codec: G711::Pcmu,
                pt: 0,
                dtmf_pt: Some(101),
                ptime: 20,
                direction: Direction::SendRecv,
                remote: "192.168.1.50:10090".parse().unwrap(),
            }
        );
        assert_eq!(
            sdp,
            crlf(
                "v=0
                o=switchboard 7 1 IN IP4 198.51.100.1
                s=switchboard
                c=IN IP4 198.51.100.1
                t=0 0
                m=audio 30000 RTP/AVP 0 101
                a=rtpmap:0 PCMU/8000
                a=rtpmap:101 telephone-event/8000
                a=fmtp:101 0-16
                a=ptime:20
                a=sendrecv
                m=video 0 RTP/AVP 100"
            )
        );
        let parsed = reparse(&sdp);
        assert_eq!(parsed.media.len(), 2);
        assert_eq!(parsed.media[1].get_port(), 0);
    }

    #[test]
    fn sipp_default_uac_offer() {
        // SIPp's built-in uac scenario, its [fields] filled in.
        let sdp = crlf(
            "v=0
            o=user1 53655765 2353687637 IN IP4 127.0.0.1
            s=-
            c=IN IP4 127.0.0.1
            t=0 0
            m=audio 6000 RTP/AVP 0
            a=rtpmap:0 PCMU/8000",
        );
        let offer = parse_offer(&sdp).unwrap();
        assert_eq!(offer.dtmf_pt, None);
        assert_eq!(offer.ptime, None);
        let (answer, text) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert_eq!(
            (answer.codec, answer.pt, answer.dtmf_pt),
            (G711::Pcmu, 0, None)
        );
        assert_eq!(answer.ptime, 20);
        assert!(text.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(!text.contains("telephone-event"));
        reparse(&text);
        // The offer of this repository's tests/sipp/echo_call.xml.
        let echo = crlf(
            "v=0
            o=user1 53655765 2353687637 IN IP4 127.0.0.1
            s=-
            c=IN IP4 127.0.0.1
            t=0 0
            m=audio 6000 RTP/AVP 8 101
            a=rtpmap:8 PCMA/8000
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-11,16",
        );
        let offer = parse_offer(&echo).unwrap();
        let (answer, text) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert_eq!(
            (answer.codec, answer.pt, answer.dtmf_pt),
            (G711::Pcma, 8, Some(101))
        );
        assert!(text.contains("m=audio 30000 RTP/AVP 8 101\r\n"));
    }

    #[test]
    fn polycom_like_offer_with_telephone_event_at_96() {
        let sdp = crlf(
            "v=0
            o=- 1700000000 1700000000 IN IP4 10.20.30.40
            s=Polycom IP Phone
            c=IN IP4 10.20.30.40
            t=0 0
            a=sendrecv
            m=audio 2238 RTP/AVP 9 102 8 0 18 96
            a=rtpmap:9 G722/8000
            a=rtpmap:102 G7221/16000
            a=fmtp:102 bitrate=32000
            a=rtpmap:8 PCMA/8000
            a=rtpmap:0 PCMU/8000
            a=rtpmap:18 G729/8000
            a=fmtp:18 annexb=no
            a=rtpmap:96 telephone-event/8000",
        );
        let offer = parse_offer(&sdp).unwrap();
        assert_eq!(offer.dtmf_pt, Some(96));
        let (answer, text) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        // The offerer's order: PCMA before PCMU.
        assert_eq!(
            (answer.codec, answer.pt, answer.dtmf_pt),
            (G711::Pcma, 8, Some(96))
        );
        assert!(text.contains("m=audio 30000 RTP/AVP 8 96\r\n"));
        assert!(text.contains("a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n"));
        let media = &reparse(&text).media[0];
        assert_eq!(
            media.get_attributes_of_type(SdpAttributeType::Rtpmap).len(),
            2
        );
    }

    #[test]
    fn yealink_like_offer_with_wideband_and_narrowband_telephone_events() {
        let sdp = crlf(
            "v=0
            o=- 20027 20027 IN IP4 172.16.5.21
            s=SDP data
            c=IN IP4 172.16.5.21
            t=0 0
            m=audio 11780 RTP/AVP 9 0 8 18 100 101
            a=rtpmap:9 G722/8000
            a=rtpmap:0 PCMU/8000
            a=rtpmap:8 PCMA/8000
            a=rtpmap:18 G729/8000
            a=fmtp:18 annexb=no
            a=rtpmap:100 telephone-event/16000
            a=fmtp:100 0-15
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-15
            a=ptime:30
            a=sendrecv",
        );
        let offer = parse_offer(&sdp).unwrap();
        // RFC 4733: the event clock is the audio clock.
        assert_eq!(offer.dtmf_pt, Some(101));
        let (answer, _) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert_eq!(
            (answer.codec, answer.dtmf_pt, answer.ptime),
            (G711::Pcmu, Some(101), 30)
        );
        // Our local preference limits what we accept.
        let pcma_only = LocalMedia {
            codecs: vec![G711::Pcma],
            ..local()
        };
        let (answer, _) = LocalSession::new(1, 1)
            .answer(&offer, &pcma_only, Direction::SendRecv)
            .unwrap();
        assert_eq!((answer.codec, answer.pt), (G711::Pcma, 8));
    }

    #[test]
    fn hold_offers() {
        let base = "v=0
            o=- 5 6 IN IP4 192.0.2.7
            s=-
            c=IN IP4 192.0.2.7
            t=0 0
            m=audio 4000 RTP/AVP 0 8 101
            a=rtpmap:101 telephone-event/8000";
        let answer_to = |extra: &str, want: Direction| {
            let offer = parse_offer(&crlf(&format!("{base}\n{extra}"))).unwrap();
            let (answer, text) = LocalSession::new(1, 1)
                .answer(&offer, &local(), want)
                .unwrap();
            reparse(&text);
            (offer, answer, text)
        };
        let (offer, answer, text) = answer_to("a=sendonly", Direction::SendRecv);
        assert!(offer.is_hold());
        assert_eq!(answer.direction, Direction::RecvOnly);
        assert!(text.contains("a=recvonly\r\n"));
        let (_, answer, _) = answer_to("a=recvonly", Direction::SendRecv);
        assert_eq!(answer.direction, Direction::SendOnly);
        let (_, answer, text) = answer_to("a=inactive", Direction::SendRecv);
        assert_eq!(answer.direction, Direction::Inactive);
        assert!(text.contains("a=inactive\r\n"));
        // While we hold them, a sendrecv offer is answered sendonly.
        let (_, answer, _) = answer_to("a=sendrecv", Direction::SendOnly);
        assert_eq!(answer.direction, Direction::SendOnly);
        // Session-level direction applies when the media has none.
        let offer = parse_offer(&crlf(&base.replace("t=0 0", "t=0 0\na=sendonly"))).unwrap();
        assert_eq!(offer.direction, Direction::SendOnly);
        // RFC 2543 hold: nothing may be sent to 0.0.0.0.
        let offer = parse_offer(&crlf(
            &base.replace("c=IN IP4 192.0.2.7", "c=IN IP4 0.0.0.0"),
        ))
        .unwrap();
        assert_eq!(offer.direction, Direction::SendOnly);
        let (answer, _) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert_eq!(answer.direction, Direction::RecvOnly);
    }

    #[test]
    fn a_disabled_stream_stays_disabled() {
        let sdp = crlf(
            "v=0
            o=- 5 7 IN IP4 192.0.2.7
            s=-
            c=IN IP4 192.0.2.7
            t=0 0
            m=audio 0 RTP/AVP 0",
        );
        let offer = parse_offer(&sdp).unwrap();
        assert_eq!((offer.port, offer.direction), (0, Direction::Inactive));
        let (answer, text) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert_eq!(answer.direction, Direction::Inactive);
        assert!(text.contains("m=audio 0 RTP/AVP 0\r\n"), "{text}");
    }

    #[test]
    fn only_g729_is_not_acceptable() {
        let sdp = crlf(
            "v=0
            o=- 1 1 IN IP4 192.0.2.9
            s=-
            c=IN IP4 192.0.2.9
            t=0 0
            m=audio 5004 RTP/AVP 18 101
            a=rtpmap:18 G729/8000
            a=rtpmap:101 telephone-event/8000",
        );
        let offer = parse_offer(&sdp).unwrap();
        let err = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec);
        assert_eq!(err.kind(), SdpErrorKind::NotAcceptable);
        // PCMU at another rate or in stereo is not G.711.
        for map in ["PCMU/16000", "PCMU/8000/2"] {
            let odd = sdp
                .replace("18 101", "97")
                .replace("G729/8000", map)
                .replace(":18", ":97");
            let offer = parse_offer(&odd).unwrap();
            assert_eq!(offer.formats[0].g711(), None, "{map}");
        }
    }

    #[test]
    fn choosing_the_audio_stream_and_rejecting_the_rest() {
        // SRTP audio we cannot do, then plain audio, then T.38, which
        // webrtc-sdp cannot parse at all.
        let sdp = crlf(
            "v=0
            o=- 1 1 IN IP4 192.0.2.9
            s=-
            c=IN IP4 192.0.2.9
            t=0 0
            m=audio 5008 RTP/SAVP 0
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
            m=audio 5004 RTP/AVP 8
            a=rtpmap:8 PCMA/8000
            m=image 5006 udptl t38
            a=T38FaxVersion:0",
        );
        let offer = parse_offer(&sdp).unwrap();
        assert_eq!(offer.port, 5004);
        let (_, text) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        let m_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            vec![
                "m=audio 0 RTP/SAVP 0",
                "m=audio 30000 RTP/AVP 8",
                "m=image 0 udptl t38"
            ]
        );
        let video_only = crlf(
            "v=0
            o=- 1 1 IN IP4 192.0.2.9
            s=-
            c=IN IP4 192.0.2.9
            t=0 0
            m=video 5004 RTP/AVP 96
            a=rtpmap:96 H264/90000",
        );
        assert_eq!(parse_offer(&video_only).unwrap_err(), SdpError::NoAudio);
        assert_eq!(SdpError::NoAudio.kind(), SdpErrorKind::NotAcceptable);
    }

    #[test]
    fn media_level_connection_ipv6_and_tolerated_lines() {
        let sdp = crlf(
            "v=0
            o=alice 2890844526 2890844526 IN IP6 2001:db8::10
            s=Call
            u=http://www.example.com/seminars/sdp.pdf
            e=alice@example.com
            p=+1 617 555-6011
            c=IN IP6 2001:db8::10
            t=2873397496 2873404696
            r=7d 1h 0 25h
            m=audio 49170 RTP/AVP 0
            c=IN IP6 2001:db8::99
            a=ptime:400",
        );
        let offer = parse_offer(&sdp).unwrap();
        assert_eq!(offer.remote(), "[2001:db8::99]:49170".parse().unwrap());
        // Out-of-range ptime is ignored.
        assert_eq!(offer.ptime, None);
        let v6 = LocalMedia::new("2001:db8::1".parse().unwrap(), 30000);
        let (_, text) = LocalSession::new(1, 1)
            .answer(&offer, &v6, Direction::SendRecv)
            .unwrap();
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"));
        reparse(&text);
    }

    #[test]
    fn malformed_and_unresolvable() {
        for bad in [
            "",
            "hello",
            "v=0\r\nm=audio\r\n",
            "v=0\r\nm=audio x RTP/AVP 0\r\n",
        ] {
            let err = parse_offer(bad).unwrap_err();
            assert_eq!(err.kind(), SdpErrorKind::Malformed, "{bad:?}: {err}");
        }
        // webrtc-sdp's own checks: no t= line.
        let no_timing = crlf(
            "v=0
            o=- 1 1 IN IP4 192.0.2.9
            s=-
            c=IN IP4 192.0.2.9
            m=audio 5004 RTP/AVP 0",
        );
        assert!(matches!(
            parse_offer(&no_timing),
            Err(SdpError::Malformed(_))
        ));
        let fqdn = crlf(
            "v=0
            o=- 1 1 IN IP4 192.0.2.9
            s=-
            c=IN IP4 media.example.com
            t=0 0
            m=audio 5004 RTP/AVP 0",
        );
        assert_eq!(
            parse_offer(&fqdn).unwrap_err(),
            SdpError::UnresolvedAddress("media.example.com".into())
        );
    }

    #[test]
    fn our_offer_round_trips_and_versions_follow_changes() {
        let mut session = LocalSession::new(555, 10);
        let first = session.offer(&local(), Direction::SendRecv);
        assert_eq!(
            first,
            crlf(
                "v=0
                o=switchboard 555 10 IN IP4 198.51.100.1
                s=switchboard
                c=IN IP4 198.51.100.1
                t=0 0
                m=audio 30000 RTP/AVP 0 8 101
                a=rtpmap:0 PCMU/8000
                a=rtpmap:8 PCMA/8000
                a=rtpmap:101 telephone-event/8000
                a=fmtp:101 0-16
                a=ptime:20
                a=sendrecv"
            )
        );
        let parsed = reparse(&first);
        assert_eq!(parsed.origin.session_version, 10);
        // Through our own parser, as a peer's offer.
        let as_offer = parse_offer(&first).unwrap();
        assert_eq!(as_offer.dtmf_pt, Some(OFFER_DTMF_PT));
        assert_eq!(
            as_offer
                .formats
                .iter()
                .filter_map(Format::g711)
                .collect::<Vec<_>>(),
            vec![G711::Pcmu, G711::Pcma]
        );
        // Unchanged: same version (RFC 3264 §8). Hold: one more.
        assert_eq!(session.offer(&local(), Direction::SendRecv), first);
        let hold = session.offer(&local(), Direction::SendOnly);
        assert!(hold.contains("o=switchboard 555 11 IN IP4"));
        assert!(hold.contains("a=sendonly\r\n"));
        assert_eq!(session.version(), 11);
        let resume = session.offer(&local(), Direction::SendRecv);
        assert!(resume.contains("o=switchboard 555 12 "));
        assert_eq!(session.id(), 555);
        // Answers share the counter.
        let offer = parse_offer(&baresip()).unwrap();
        let (_, answer) = session
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        assert!(answer.contains("o=switchboard 555 13 "));
    }

    #[test]
    fn parsing_answers_to_our_offers() {
        let answer = crlf(
            "v=0
            o=pbx 99 100 IN IP4 203.0.113.5
            s=-
            c=IN IP4 203.0.113.5
            t=0 0
            m=audio 16384 RTP/AVP 8 100
            a=rtpmap:8 PCMA/8000
            a=rtpmap:100 telephone-event/8000
            a=fmtp:100 0-15
            a=ptime:20
            a=sendrecv",
        );
        let a = parse_answer(&answer, &local(), Direction::SendRecv).unwrap();
        assert_eq!(
            a,
            Answer {
                codec: G711::Pcma,
                pt: 8,
                dtmf_pt: Some(100),
                ptime: 20,
                direction: Direction::SendRecv,
                remote: "203.0.113.5:16384".parse().unwrap(),
            }
        );
        // We offered sendonly (hold); they answer recvonly.
        let held = answer.replace("a=sendrecv", "a=recvonly");
        let a = parse_answer(&held, &local(), Direction::SendOnly).unwrap();
        assert_eq!(a.direction, Direction::SendOnly);
        // An answer without telephone-event.
        let no_dtmf = answer.replace(" 8 100", " 8").replace(
            "a=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-15\r\n",
            "",
        );
        assert_eq!(
            parse_answer(&no_dtmf, &local(), Direction::SendRecv)
                .unwrap()
                .dtmf_pt,
            None
        );
        let rejected = answer.replace("m=audio 16384", "m=audio 0");
        assert_eq!(
            parse_answer(&rejected, &local(), Direction::SendRecv),
            Err(SdpError::Rejected)
        );
        // A law we did not offer.
        let pcmu_only = LocalMedia {
            codecs: vec![G711::Pcmu],
            ..local()
        };
        assert_eq!(
            parse_answer(&answer, &pcmu_only, Direction::SendRecv),
            Err(SdpError::NoCommonCodec)
        );
        // Our own answer reads back.
        let offer = parse_offer(&baresip()).unwrap();
        let (ours, text) = LocalSession::new(1, 1)
            .answer(&offer, &local(), Direction::SendRecv)
            .unwrap();
        let back = parse_answer(&text, &local(), Direction::SendRecv).unwrap();
        assert_eq!(
            (back.codec, back.pt, back.dtmf_pt),
            (ours.codec, ours.pt, ours.dtmf_pt)
        );
        assert_eq!(back.remote, "198.51.100.1:30000".parse().unwrap());
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = parse_offer(&s);
            let _ = parse_answer(&s, &local(), Direction::SendRecv);
        }

        #[test]
        fn mangled_offers_never_panic(
            cut in 0usize..800,
            junk in "[ -~]{0,20}",
            at in 0usize..800,
        ) {
            let mut sdp = baresip();
            let cut = cut.min(sdp.len());
            sdp.truncate(cut);
            let at = at.min(sdp.len());
            sdp.insert_str(at, &junk);
            if let Ok(offer) = parse_offer(&sdp) {
                let answer = LocalSession::new(1, 1).answer(&offer, &local(), Direction::SendRecv);
                if let Ok((_, text)) = answer {
                    // What we wrote ourselves parses; the rejected m-lines
                    // are the offer's text echoed.
                    let ours = Document::split(&text).and_then(|d| d.describe(offer.audio_index));
                    prop_assert!(ours.is_ok(), "{}", text);
                }
            }
        }
    }
}
