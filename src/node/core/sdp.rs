//! The audio part of an SDP offer (RFC 4566, RFC 3264) as the diagnostic
//! calls need it: where to send, which G.711 law, the telephone-event
//! payload type the offer chose, and the direction.

use std::net::{IpAddr, SocketAddr};

/// G.711 law of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Pcmu,
    Pcma,
}

impl Law {
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// RFC 3264 §6.1: the answer mirrors the offer's direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// What the caller offered for audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub remote: SocketAddr,
    pub law: Law,
    pub dtmf_pt: Option<u8>,
    pub ptime: u32,
    pub direction: Direction,
}

impl Offer {
    /// The first audio stream with a G.711 format; Err when there is none.
    pub fn parse(sdp: &str) -> Result<Offer, &'static str> {
        let mut session_ip: Option<IpAddr> = None;
        let mut media_ip: Option<IpAddr> = None;
        let mut session_dir = Direction::SendRecv;
        let mut media_dir: Option<Direction> = None;
        let mut port: Option<u16> = None;
        let mut formats: Vec<u8> = Vec::new();
        let mut rtpmap: Vec<(u8, String)> = Vec::new();
        let mut ptime = 20;
        let mut in_audio = false;
        let mut seen_audio = false;
        for line in sdp.lines() {
            let line = line.trim_end();
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "m" => {
                    if seen_audio {
                        in_audio = false;
                        continue;
                    }
                    let mut parts = v.split_whitespace();
                    in_audio = parts.next() == Some("audio");
                    if in_audio {
                        seen_audio = true;
                        port = parts.next().and_then(|p| p.parse().ok());
                        let _proto = parts.next();
                        formats = parts.filter_map(|f| f.parse().ok()).collect();
                    }
                }
                "c" => {
                    let ip = v
                        .split_whitespace()
                        .nth(2)
                        .and_then(|a| a.split('/').next()?.parse().ok());
                    if in_audio {
                        media_ip = ip;
                    } else if !seen_audio {
                        session_ip = ip;
                    }
                }
                "a" => {
                    let dir = match v {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    if let Some(d) = dir {
                        if in_audio {
                            media_dir = Some(d);
                        } else if !seen_audio {
                            session_dir = d;
                        }
                    } else if in_audio {
                        if let Some(map) = v.strip_prefix("rtpmap:") {
                            if let Some((pt, enc)) = map.split_once(' ') {
                                if let Ok(pt) = pt.parse() {
                                    rtpmap.push((pt, enc.to_ascii_lowercase()));
                                }
                            }
                        } else if let Some(p) = v.strip_prefix("ptime:") {
                            ptime = p.trim().parse().unwrap_or(20);
                        }
                    }
                }
                _ => {}
            }
        }
        let port = port.ok_or("no audio stream")?;
        let ip = media_ip.or(session_ip).ok_or("no connection address")?;
        let name_of = |pt: u8| {
            rtpmap
                .iter()
                .find(|(p, _)| *p == pt)
                .map(|(_, e)| e.as_str())
        };
        // The offerer's order is its preference (RFC 3264 §5.1).
        let law = formats
            .iter()
            .find_map(|&pt| match (pt, name_of(pt)) {
                (0, _) => Some(Law::Pcmu),
                (8, _) => Some(Law::Pcma),
                (_, Some(e)) if e.starts_with("pcmu/8000") => Some(Law::Pcmu),
                (_, Some(e)) if e.starts_with("pcma/8000") => Some(Law::Pcma),
                _ => None,
            })
            .ok_or("no G.711 format offered")?;
        let dtmf_pt = formats
            .iter()
            .copied()
            .find(|&pt| name_of(pt).is_some_and(|e| e.starts_with("telephone-event/8000")));
        let mut direction = media_dir.unwrap_or(session_dir);
        if port == 0 || ip.is_unspecified() {
            direction = Direction::Inactive;
        }
        Ok(Offer {
            remote: SocketAddr::new(ip, port),
            law,
            dtmf_pt,
            ptime,
            direction,
        })
    }

    /// Our answer: the chosen law, the offer's telephone-event type.
    pub fn answer(&self, local: SocketAddr, session_id: u64, version: u64) -> String {
        let ip = local.ip();
        let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
        let pt = self.law.payload_type();
        let mut fmts = pt.to_string();
        let mut attrs = format!("a=rtpmap:{pt} {}/8000\r\n", self.law.name());
        if let Some(d) = self.dtmf_pt {
            fmts.push_str(&format!(" {d}"));
            attrs.push_str(&format!(
                "a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\n"
            ));
        }
        format!(
            "v=0\r\no=switchboard {session_id} {version} IN {fam} {ip}\r\ns=switchboard\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {fmts}\r\n{attrs}a=ptime:{}\r\na={}\r\n",
            local.port(),
            self.ptime,
            self.direction.answer().attr()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_and_baresip_offers() {
        let sipp = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";
        let o = Offer::parse(sipp).unwrap();
        assert_eq!(
            (o.law, o.dtmf_pt, o.remote.port()),
            (Law::Pcma, Some(101), 6000)
        );
        let phone = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=sendonly\r\na=ptime:30\r\n";
        let o = Offer::parse(phone).unwrap();
        assert_eq!(
            (o.law, o.dtmf_pt, o.ptime, o.direction),
            (Law::Pcmu, Some(96), 30, Direction::SendOnly)
        );
        let a = o.answer("127.0.0.1:20000".parse().unwrap(), 1, 1);
        assert!(a.contains("m=audio 20000 RTP/AVP 0 96\r\n"), "{a}");
        assert!(a.contains("a=recvonly"));
        assert!(Offer::parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 18\r\n").is_err());
        let held = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(Offer::parse(held).unwrap().direction, Direction::Inactive);
    }
}
