//! The registrar (RFC 3261 §10.3) with digest authentication (RFC 3261
//! §22, RFC 8760 for SHA-256): server nonces that carry their issue time
//! and a keyed hash, expire after five minutes, and refuse a replayed `nc`.
//! Credentials are kept as HA1 hashes, never as passwords.

use crate::demo::DemoAccount;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_media::sip::header::{self, NameAddr};
use switchboard_media::sip::message::{Request, Response};
use switchboard_media::sip::transport::Transport;

const NONCE_LIFETIME: Duration = Duration::from_secs(300);
const MIN_EXPIRES: u64 = 30;
const MAX_EXPIRES: u64 = 3600;
const REALM: &str = "switchboard";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
}

struct Account {
    ha1_md5: String,
    ha1_sha256: String,
}

/// One registered contact. `source` and `transport` are how a phone
/// behind NAT is reached; calls to registered phones will use them.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Binding {
    pub contact: String,
    pub source: SocketAddr,
    pub transport: Transport,
    pub expires_at: Instant,
    call_id: String,
    cseq: u32,
}

pub struct Registrar {
    accounts: HashMap<String, Account>,
    bindings: HashMap<String, Vec<Binding>>,
    secret: Vec<u8>,
    epoch: Instant,
    /// Highest `nc` seen per nonce (replay protection), pruned on expiry.
    nonce_counts: HashMap<String, (u32, Instant)>,
    /// Algorithms challenged with, in order of preference (RFC 8760 §2.4).
    offer: Vec<Algorithm>,
}

fn ha1(alg: Algorithm, user: &str, password: &str) -> String {
    alg.hash(&format!("{user}:{REALM}:{password}"))
}

impl Registrar {
    pub fn new(accounts: Vec<DemoAccount>, secret: &[u8]) -> Self {
        let accounts = accounts
            .into_iter()
            .map(|a| {
                let acc = Account {
                    ha1_md5: ha1(Algorithm::Md5, &a.username, &a.password),
                    ha1_sha256: ha1(Algorithm::Sha256, &a.username, &a.password),
                };
                (a.username, acc)
            })
            .collect();
        Registrar {
            accounts,
            bindings: HashMap::new(),
            secret: secret.to_vec(),
            epoch: Instant::now(),
            nonce_counts: HashMap::new(),
            // Deployed phones (baresip 1.0's libre among them) refuse the
            // whole challenge when any WWW-Authenticate names an algorithm
            // they lack, so MD5 alone is offered unless asked otherwise;
            // SHA-256 answers are verified either way.
            offer: vec![Algorithm::Md5],
        }
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.accounts.contains_key(user)
    }

    /// Live bindings of an account.
    #[allow(dead_code)]
    pub fn lookup(&self, user: &str, now: Instant) -> Vec<Binding> {
        self.bindings
            .get(user)
            .map(|b| b.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// `time.salt.mac`: the issue time, a salt so that every challenge is
    /// unique (its `nc` count starts afresh), and a keyed hash of both.
    fn nonce(&self, now: Instant) -> String {
        let t = now.saturating_duration_since(self.epoch).as_secs();
        let salt: u32 = rand::random();
        format!("{t:x}.{salt:x}.{}", self.nonce_mac(t, salt))
    }

    fn nonce_mac(&self, t: u64, salt: u32) -> String {
        let mac = Sha256::new()
            .chain_update(&self.secret)
            .chain_update(t.to_be_bytes())
            .chain_update(salt.to_be_bytes())
            .finalize();
        hex::encode(&mac[..12])
    }

    /// Ok(true) fresh, Ok(false) authentic but stale, Err forged.
    fn check_nonce(&self, nonce: &str, now: Instant) -> Result<bool, ()> {
        let mut parts = nonce.split('.');
        let (Some(t), Some(salt), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(());
        };
        let t = u64::from_str_radix(t, 16).map_err(|_| ())?;
        let salt = u32::from_str_radix(salt, 16).map_err(|_| ())?;
        if !constant_eq(self.nonce_mac(t, salt).as_bytes(), mac.as_bytes()) {
            return Err(());
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .saturating_sub(t);
        Ok(age <= NONCE_LIFETIME.as_secs())
    }

    fn challenge(&self, req: &Request, now: Instant, stale: bool) -> Response {
        let mut resp = Response::to(req, 401, "Unauthorized");
        add_to_tag(&mut resp);
        let nonce = self.nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        for &alg in &self.offer {
            resp.headers.push(
                "WWW-Authenticate",
                format!(
                    "Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    alg.name()
                ),
            );
        }
        resp
    }

    pub fn register(
        &mut self,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Response {
        self.nonce_counts
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < NONCE_LIFETIME * 2);
        let Some(to) = req.headers.get("To").and_then(|t| NameAddr::parse(t).ok()) else {
            return Response::to(req, 400, "Bad To header");
        };
        if !matches!(header::uri_scheme(&to.uri).as_deref(), Some("sip" | "sips")) {
            return Response::to(req, 416, "Unsupported URI Scheme");
        }
        let user = header::uri_user(&to.uri).unwrap_or_default();
        let Some(creds) = req.headers.get("Authorization").and_then(parse_digest) else {
            return self.challenge(req, now, false);
        };
        let alg = match creds.get("algorithm").map(|a| a.to_ascii_uppercase()) {
            None => Algorithm::Md5,
            Some(a) if a == "MD5" => Algorithm::Md5,
            Some(a) if a == "SHA-256" => Algorithm::Sha256,
            Some(_) => return self.challenge(req, now, false),
        };
        let field = |k: &str| creds.get(k).map(String::as_str).unwrap_or("");
        let nonce = field("nonce");
        match self.check_nonce(nonce, now) {
            Err(()) => return self.challenge(req, now, false),
            Ok(false) => return self.challenge(req, now, true),
            Ok(true) => {}
        }
        // §22.4: the credentials must be for the AOR being registered.
        let Some(account) = self.accounts.get(field("username")) else {
            return forbidden(req);
        };
        if field("username") != user || field("realm") != REALM {
            return forbidden(req);
        }
        let ha1 = match alg {
            Algorithm::Md5 => &account.ha1_md5,
            Algorithm::Sha256 => &account.ha1_sha256,
        };
        let ha2 = alg.hash(&format!("{}:{}", req.method, field("uri")));
        let expected = match creds.get("qop").map(String::as_str) {
            Some("auth") => {
                let Ok(nc) = u32::from_str_radix(field("nc"), 16) else {
                    return Response::to(req, 400, "Bad nc");
                };
                // A replayed nc is refused; the phone starts over with a
                // fresh challenge.
                if let Some((seen, _)) = self.nonce_counts.get(nonce) {
                    if nc <= *seen {
                        return self.challenge(req, now, false);
                    }
                }
                let resp = alg.hash(&format!(
                    "{ha1}:{nonce}:{}:{}:auth:{ha2}",
                    field("nc"),
                    field("cnonce")
                ));
                if constant_eq(resp.as_bytes(), field("response").as_bytes()) {
                    self.nonce_counts.insert(nonce.to_owned(), (nc, now));
                }
                resp
            }
            None => alg.hash(&format!("{ha1}:{nonce}:{ha2}")),
            Some(_) => return self.challenge(req, now, false),
        };
        if !constant_eq(expected.as_bytes(), field("response").as_bytes()) {
            // A wrong password with a valid nonce: 403 rather than another
            // 401, so a misconfigured phone does not retry forever.
            return forbidden(req);
        }
        self.apply(req, &user, source, transport, now)
    }

    fn apply(
        &mut self,
        req: &Request,
        user: &str,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Response {
        let call_id = req.headers.get("Call-ID").unwrap_or("").to_owned();
        let cseq = header::CSeq::parse(req.headers.get("CSeq").unwrap_or(""))
            .map(|c| c.seq)
            .unwrap_or(0);
        let header_expires = req
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse::<u64>().ok());
        let contacts: Vec<&str> = req.headers.values("Contact").collect();
        let list = self.bindings.entry(user.to_owned()).or_default();
        list.retain(|b| b.expires_at > now);
        // §10.3 step 7: an older request of the same Call-ID is refused.
        if list.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) && !contacts.is_empty() {
            return Response::to(req, 500, "Out Of Order Request");
        }
        if contacts == ["*"] {
            if header_expires != Some(0) {
                return Response::to(req, 400, "Contact * requires Expires 0");
            }
            list.clear();
        } else {
            for c in &contacts {
                if *c == "*" {
                    return Response::to(req, 400, "Contact * must stand alone");
                }
                let Ok(na) = NameAddr::parse(c) else {
                    return Response::to(req, 400, "Bad Contact");
                };
                let expires = header::param(&na.params, "expires")
                    .flatten()
                    .and_then(|e| e.parse::<u64>().ok())
                    .or(header_expires)
                    .unwrap_or(3600);
                if expires != 0 && expires < MIN_EXPIRES {
                    let mut r = Response::to(req, 423, "Interval Too Brief");
                    r.headers.push("Min-Expires", MIN_EXPIRES.to_string());
                    return r;
                }
                list.retain(|b| b.contact != na.uri);
                if expires > 0 {
                    list.push(Binding {
                        contact: na.uri.clone(),
                        source,
                        transport,
                        expires_at: now + Duration::from_secs(expires.min(MAX_EXPIRES)),
                        call_id: call_id.clone(),
                        cseq,
                    });
                }
            }
        }
        let mut resp = Response::to(req, 200, "OK");
        add_to_tag(&mut resp);
        for b in list.iter() {
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            resp.headers
                .push("Contact", format!("<{}>;expires={left}", b.contact));
        }
        tracing::info!(user, bindings = list.len(), "registered");
        resp
    }
}

fn forbidden(req: &Request) -> Response {
    let mut r = Response::to(req, 403, "Forbidden");
    add_to_tag(&mut r);
    r
}

fn add_to_tag(resp: &mut Response) {
    if let Some(to) = resp.headers.get("To").map(str::to_owned) {
        if NameAddr::parse(&to)
            .ok()
            .and_then(|n| n.tag().map(str::to_owned))
            .is_none()
        {
            resp.headers.set("To", format!("{to};tag=reg"));
        }
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parameters of a `Digest` credentials header; None for other schemes.
fn parse_digest(value: &str) -> Option<HashMap<String, String>> {
    let v = value.trim_start();
    let (scheme, rest) = v.split_once(|c: char| c.is_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut out = HashMap::new();
    for part in switchboard_media::sip::message::split_list(rest) {
        let (k, v) = part.split_once('=')?;
        let v = v.trim();
        let v = if v.starts_with('"') {
            header::parse_quoted(v).ok()?.0
        } else {
            v.to_owned()
        };
        out.insert(k.trim().to_ascii_lowercase(), v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_media::sip::message::Method;

    fn account() -> Vec<DemoAccount> {
        vec![DemoAccount {
            username: "1001".into(),
            password: "pass1001".into(),
        }]
    }

    fn register(auth: Option<String>, cseq: u32) -> Request {
        let mut r = Request::new(Method::Register, "sip:demo");
        r.headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1");
        r.headers.push("From", "<sip:1001@demo>;tag=f");
        r.headers.push("To", "<sip:1001@demo>");
        r.headers.push("Call-ID", "reg-1");
        r.headers.push("CSeq", format!("{cseq} REGISTER"));
        r.headers.push("Contact", "<sip:1001@127.0.0.1:5070>");
        if let Some(a) = auth {
            r.headers.push("Authorization", a);
        }
        r
    }

    fn answer(
        reg: &Registrar,
        challenge: &Response,
        alg: Algorithm,
        password: &str,
        nc: &str,
    ) -> String {
        let www = challenge
            .headers
            .get_all("WWW-Authenticate")
            .find(|w| w.contains(alg.name()))
            .unwrap()
            .to_owned();
        let params = parse_digest(&www).unwrap();
        let nonce = &params["nonce"];
        let ha1 = ha1(alg, "1001", password);
        let ha2 = alg.hash("REGISTER:sip:demo");
        let resp = alg.hash(&format!("{ha1}:{nonce}:{nc}:cn:auth:{ha2}"));
        let _ = reg;
        format!("Digest username=\"1001\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:demo\", response=\"{resp}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"cn\"", alg.name())
    }

    #[test]
    fn challenge_then_register_with_each_algorithm_and_refuse_replay() {
        let now = Instant::now();
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let mut reg = Registrar::new(account(), b"k");
            reg.offer = vec![Algorithm::Sha256, Algorithm::Md5];
            let ch = reg.register(&register(None, 1), src, Transport::Udp, now);
            assert_eq!(ch.code, 401);
            assert_eq!(ch.headers.get_all("WWW-Authenticate").count(), 2);
            let auth = answer(&reg, &ch, alg, "pass1001", "00000001");
            let ok = reg.register(&register(Some(auth.clone()), 2), src, Transport::Udp, now);
            assert_eq!(ok.code, 200, "{alg:?}");
            assert!(ok.headers.get("Contact").unwrap().contains("expires=3600"));
            assert_eq!(reg.lookup("1001", now).len(), 1);
            // The same nc again is a replay.
            let again = reg.register(&register(Some(auth), 3), src, Transport::Udp, now);
            assert_eq!(again.code, 401);
            let wrong = answer(&reg, &ch, alg, "nope", "00000002");
            assert_eq!(
                reg.register(&register(Some(wrong), 4), src, Transport::Udp, now)
                    .code,
                403
            );
        }
    }

    #[test]
    fn stale_and_forged_nonces_and_unknown_schemes_rechallenge() {
        let now = Instant::now();
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let mut reg = Registrar::new(account(), b"k");
        let ch = reg.register(&register(None, 1), src, Transport::Udp, now);
        let auth = answer(&reg, &ch, Algorithm::Md5, "pass1001", "00000001");
        let later = now + NONCE_LIFETIME + Duration::from_secs(5);
        let stale = reg.register(&register(Some(auth.clone()), 2), src, Transport::Udp, later);
        assert_eq!(stale.code, 401);
        assert!(stale
            .headers
            .get("WWW-Authenticate")
            .unwrap()
            .contains("stale=true"));
        let forged = auth.replacen(".", ".f", 2);
        assert_eq!(
            reg.register(&register(Some(forged), 3), src, Transport::Udp, now)
                .code,
            401
        );
        let odd = "NoOneKnowsThisScheme opaque-data=here".to_owned();
        assert_eq!(
            reg.register(&register(Some(odd), 4), src, Transport::Udp, now)
                .code,
            401
        );
    }

    #[test]
    fn unregister_and_expiry() {
        let now = Instant::now();
        let src: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let mut reg = Registrar::new(account(), b"k");
        let ch = reg.register(&register(None, 1), src, Transport::Udp, now);
        let mut r = register(
            Some(answer(&reg, &ch, Algorithm::Md5, "pass1001", "00000001")),
            2,
        );
        r.headers
            .set("Contact", "<sip:1001@127.0.0.1:5070>;expires=60");
        assert_eq!(reg.register(&r, src, Transport::Udp, now).code, 200);
        assert_eq!(reg.lookup("1001", now + Duration::from_secs(59)).len(), 1);
        assert!(reg.lookup("1001", now + Duration::from_secs(61)).is_empty());
        let mut r = register(
            Some(answer(&reg, &ch, Algorithm::Md5, "pass1001", "00000002")),
            3,
        );
        r.headers
            .set("Contact", "<sip:1001@127.0.0.1:5070>;expires=10");
        assert_eq!(reg.register(&r, src, Transport::Udp, now).code, 423);
        let mut r = register(
            Some(answer(&reg, &ch, Algorithm::Md5, "pass1001", "00000003")),
            4,
        );
        r.headers.set("Contact", "*");
        r.headers.push("Expires", "0");
        assert_eq!(reg.register(&r, src, Transport::Udp, now).code, 200);
        assert!(reg.lookup("1001", now).is_empty());
    }
}
