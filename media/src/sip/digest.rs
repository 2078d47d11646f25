//! HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 2617), with
//! SHA-256 (RFC 8760, which applies RFC 7616 to SIP).
//!
//! The pieces, each independent of the SIP message type:
//!
//! - [`parse_credentials`] reads an `Authorization` or `Proxy-Authorization`
//!   header value into [`Credentials`]. A scheme other than `Digest` is a
//!   distinct error ([`DigestError::UnknownScheme`]) so that the caller
//!   challenges again (RFC 4475 §3.3.7).
//! - [`ha1`] and [`StoredCredential`]: accounts keep `H(user:realm:password)`
//!   per algorithm, never the password (RFC 2617 §4.13).
//! - [`verify`] checks a response against a stored HA1 for `qop=auth` and
//!   for the RFC 2069 form without `qop`, comparing in constant time.
//! - [`NonceManager`] issues nonces that carry their issue time under a
//!   keyed MAC, so that no per-nonce state is kept until a nonce is used;
//!   it tells fresh from stale from forged, and refuses a replayed `nc`.
//! - [`challenge_headers`] renders the `WWW-Authenticate` values.
//!
//! Time is an input: every `now` is whole seconds since an epoch the caller
//! chooses and keeps (the Unix epoch lets nodes that share a secret accept
//! each other's nonces; any monotonic origin works for a single node).
//!
//! ```
//! use std::time::Duration;
//! use switchboard_media::sip::digest::{
//!     challenge_headers, ha1, parse_credentials, verify, Algorithm, NonceCheck, NonceManager,
//!     StoredCredential,
//! };
//!
//! let stored = StoredCredential::new("1001", "switchboard", "secret");
//! let mut nonces = NonceManager::new(b"server key".to_vec(), Duration::from_secs(300), 7);
//! let now = 1_700_000_000;
//! let nonce = nonces.issue("switchboard", now);
//! let www = challenge_headers("switchboard", &nonce, &[Algorithm::Sha256, Algorithm::Md5], false);
//! assert!(www[0].starts_with("Digest realm=\"switchboard\""));
//!
//! // What the phone computes (RFC 2617 §3.2.2.1).
//! let h = |s: String| Algorithm::Sha256.hash(s.as_bytes());
//! let ha2 = h("REGISTER:sip:switchboard".into());
//! let response = h(format!(
//!     "{}:{nonce}:00000001:c0ffee:auth:{ha2}",
//!     ha1(Algorithm::Sha256, "1001", "switchboard", "secret")
//! ));
//! let header = format!(
//!     "Digest username=\"1001\", realm=\"switchboard\", nonce=\"{nonce}\", \
//!      uri=\"sip:switchboard\", response=\"{response}\", algorithm=SHA-256, \
//!      qop=auth, nc=00000001, cnonce=\"c0ffee\""
//! );
//! let creds = parse_credentials(&header).unwrap();
//! assert_eq!(nonces.check(&creds.nonce, "switchboard", now + 10), NonceCheck::Fresh);
//! assert!(verify(stored.ha1(creds.algorithm), "REGISTER", &creds));
//! assert!(nonces.register_use(&creds.nonce, creds.nc, now + 10).is_ok());
//! // The same nc again is a replay.
//! assert!(nonces.register_use(&creds.nonce, creds.nc, now + 11).is_err());
//! ```

use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// A digest algorithm this node verifies.
///
/// The `-sess` variants (RFC 7616 §3.4.2) are not supported: they exist so
/// that a third party can authenticate with a session key, which SIP
/// registrars do not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, the RFC 2617 default when `algorithm` is absent.
    Md5,
    /// `SHA-256` (RFC 8760, with RFC 7616's definitions).
    Sha256,
}

impl Algorithm {
    /// Every algorithm in the order a server offers them: strongest first
    /// (RFC 8760: a UAS lists its challenges in order of preference).
    pub const PREFERENCE: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The token used in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` token, case-insensitively (RFC 7616:
    /// tokens are compared case-insensitively).
    pub fn from_name(name: &str) -> Result<Algorithm, DigestError> {
        if name.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnknownAlgorithm(name.to_owned()))
        }
    }

    /// `H(data)` as lower-case hex, the form every digest computation uses
    /// (RFC 2617 §3.2.1, RFC 7616 §3.4.1).
    pub fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The quality of protection a client applied.
///
/// Only `auth` is offered by this node; `auth-int` (which hashes the body)
/// is refused at parse time rather than verified against a body this
/// module never sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `qop=auth` (RFC 2617 §3.2.2).
    Auth,
}

/// Why a credentials header cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DigestError {
    /// A scheme other than `Digest`. The caller challenges again
    /// (RFC 4475 §3.3.7): the client may also know Digest.
    #[error("unknown authorization scheme {0:?}")]
    UnknownScheme(String),
    /// An `algorithm` this node does not verify; the caller challenges
    /// again with the algorithms it does.
    #[error("unsupported digest algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// A `qop` other than `auth`, which is the only one this node offers.
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
    /// A parameter the response computation needs is absent.
    #[error("missing digest parameter {0}")]
    MissingParameter(&'static str),
    /// The same parameter twice (RFC 7616: each directive at most once).
    #[error("duplicate digest parameter {0:?}")]
    DuplicateParameter(String),
    /// `nc` is not 8 hex digits (RFC 2617 §3.2.2: `nc-value = 8LHEX`).
    #[error("bad nonce count {0:?}")]
    BadNonceCount(String),
    /// The header does not follow the `auth-param` list grammar.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
}

/// A parsed `Authorization`/`Proxy-Authorization` value of the Digest
/// scheme (RFC 3261 §25.1 `digest-response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The scheme as the client spelled it (`Digest`, case-insensitive).
    pub scheme: String,
    /// Whose password computed the response; the registrar checks that it
    /// may register the AOR in `To`.
    pub username: String,
    /// The protection space the client answered; must be ours.
    pub realm: String,
    /// The server nonce the response was computed with.
    pub nonce: String,
    /// The `digest-uri` covered by HA2.
    pub uri: String,
    /// The request digest, hex.
    pub response: String,
    /// `MD5` when the parameter is absent (RFC 2617 §3.2.1).
    pub algorithm: Algorithm,
    /// `None` for the RFC 2069 form, which has no `nc`/`cnonce`.
    pub qop: Option<Qop>,
    /// The nonce count, present exactly when `qop` is; the replay counter.
    pub nc: Option<u32>,
    /// The client nonce, present exactly when `qop` is.
    pub cnonce: Option<String>,
    /// Echoed from the challenge; this node sends none and ignores it.
    pub opaque: Option<String>,
}

/// Parses a credentials header value: `Digest` followed by a comma
/// separated list of `name=value` where a value is a token or a quoted
/// string (RFC 3261 §25.1, RFC 7235 §2.1).
///
/// Linear whitespace around `=` and `,` is allowed, empty list elements are
/// skipped, quoted strings may contain `\`-escapes, and values are accepted
/// quoted or bare whatever the grammar prefers (clients differ). Unknown
/// parameters are ignored (RFC 2617 §3.2.2 `auth-param`).
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    let (scheme, mut params) = parse_digest_params(value)?;
    let mut take = |name: &'static str| params.remove(name);
    let required =
        |v: Option<String>, name: &'static str| v.ok_or(DigestError::MissingParameter(name));
    let username = required(take("username"), "username")?;
    let realm = required(take("realm"), "realm")?;
    let nonce = required(take("nonce"), "nonce")?;
    let uri = required(take("uri"), "uri")?;
    let response = required(take("response"), "response")?;
    let algorithm = match take("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a)?,
    };
    let qop = match take("qop") {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
        Some(q) => return Err(DigestError::UnsupportedQop(q)),
    };
    let nc_text = take("nc");
    let cnonce = take("cnonce");
    let opaque = take("opaque");
    // RFC 2617 §3.2.2: cnonce and nc MUST be sent with a qop, and MUST
    // NOT be sent without one.
    let (nc, cnonce) = match qop {
        Some(Qop::Auth) => {
            let text = required(nc_text, "nc")?;
            (Some(parse_nc(&text)?), Some(required(cnonce, "cnonce")?))
        }
        None => (None, None),
    };
    Ok(Credentials {
        scheme: scheme.to_owned(),
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        qop,
        nc,
        cnonce,
        opaque,
    })
}

/// The scheme and the `auth-param` list of a Digest header value, names
/// lowered; shared by credentials and challenges.
fn parse_digest_params(value: &str) -> Result<(&str, HashMap<String, String>), DigestError> {
    let mut cur = Cursor::new(value);
    cur.skip_lws();
    let scheme = cur.token();
    if scheme.is_empty() {
        return Err(DigestError::Malformed("no scheme"));
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::UnknownScheme(scheme.to_owned()));
    }
    if !cur.at_end() && !cur.skip_lws() {
        return Err(DigestError::Malformed("no space after the scheme"));
    }
    let mut params: HashMap<String, String> = HashMap::new();
    loop {
        cur.skip_lws();
        if cur.eat(',') {
            continue;
        }
        if cur.at_end() {
            break;
        }
        let name = cur.token();
        if name.is_empty() {
            return Err(DigestError::Malformed("expected a parameter name"));
        }
        cur.skip_lws();
        if !cur.eat('=') {
            return Err(DigestError::Malformed(
                "expected '=' after a parameter name",
            ));
        }
        cur.skip_lws();
        let value = if cur.peek() == Some('"') {
            cur.quoted()?
        } else {
            // Bare values should be tokens, but clients send unquoted URIs
            // and hex; anything up to the next separator is taken.
            let v = cur.until_separator();
            if v.is_empty() {
                return Err(DigestError::Malformed("empty parameter value"));
            }
            v.to_owned()
        };
        let key = name.to_ascii_lowercase();
        if params.contains_key(&key) {
            return Err(DigestError::DuplicateParameter(key));
        }
        params.insert(key, value);
        cur.skip_lws();
        if !cur.at_end() && !cur.eat(',') {
            return Err(DigestError::Malformed("expected ',' between parameters"));
        }
    }
    Ok((scheme, params))
}

/// A `WWW-Authenticate` or `Proxy-Authenticate` challenge, as a client
/// (our trunk side) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    /// Whether `qop` lists `auth`; without it the RFC 2069 form is used.
    pub qop_auth: bool,
    pub opaque: Option<String>,
    /// The previous credentials were right, only the nonce was old.
    pub stale: bool,
}

/// Parses a challenge. An algorithm we cannot compute is
/// [`DigestError::UnknownAlgorithm`]: a server listing several challenges
/// is asked with the next one (RFC 8760 §2.4).
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let (_, mut params) = parse_digest_params(value)?;
    let realm = params
        .remove("realm")
        .ok_or(DigestError::MissingParameter("realm"))?;
    let nonce = params
        .remove("nonce")
        .ok_or(DigestError::MissingParameter("nonce"))?;
    let algorithm = match params.remove("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a)?,
    };
    let qop_auth = params
        .remove("qop")
        .is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")));
    Ok(Challenge {
        realm,
        nonce,
        algorithm,
        qop_auth,
        opaque: params.remove("opaque"),
        stale: params
            .remove("stale")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

/// The credentials header value a client sends in answer to `challenge`
/// (RFC 2617 §3.2.2) for a request `method` to `uri`. `cnonce` is the
/// client's nonce and `nc` its count of uses of this server nonce; both are
/// inputs.
pub fn authorization(
    challenge: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let alg = challenge.algorithm;
    let ha1 = ha1(alg, username, &challenge.realm, password);
    let ha2 = alg.hash(format!("{method}:{uri}").as_bytes());
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}",
        escape_quoted(username),
        escape_quoted(&challenge.realm),
        escape_quoted(&challenge.nonce),
        escape_quoted(uri),
        alg.name()
    );
    let response = if challenge.qop_auth {
        let r =
            alg.hash(format!("{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}", challenge.nonce).as_bytes());
        v.push_str(&format!(
            ", qop=auth, nc={nc:08x}, cnonce=\"{}\"",
            escape_quoted(cnonce)
        ));
        r
    } else {
        alg.hash(format!("{ha1}:{}:{ha2}", challenge.nonce).as_bytes())
    };
    v.push_str(&format!(", response=\"{response}\""));
    if let Some(o) = &challenge.opaque {
        v.push_str(&format!(", opaque=\"{}\"", escape_quoted(o)));
    }
    v
}

/// `nc-value = 8LHEX`. Upper-case digits are refused rather than accepted:
/// the response is computed over the text, and [`verify`] hashes the
/// canonical lower-case form, so accepting them would turn a client quirk
/// into an unexplained 403.
fn parse_nc(text: &str) -> Result<u32, DigestError> {
    let ok = text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(DigestError::BadNonceCount(text.to_owned()));
    }
    u32::from_str_radix(text, 16).map_err(|_| DigestError::BadNonceCount(text.to_owned()))
}

/// A byte cursor over a header value.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Skips linear whitespace (SP, HTAB and folded line ends, RFC 3261
    /// §25.1 `LWS`); true if any was skipped.
    fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        let n = self
            .rest()
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        self.pos += n;
        self.pos > start
    }

    /// RFC 3261 §25.1 `token`.
    fn token(&mut self) -> &'a str {
        let rest = self.rest();
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
            .count();
        self.pos += n;
        &rest[..n]
    }

    fn until_separator(&mut self) -> &'a str {
        let rest = self.rest();
        let n = rest
            .bytes()
            .take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n' | b'"'))
            .count();
        self.pos += n;
        &rest[..n]
    }

    /// A quoted string with `\`-escapes (RFC 3261 §25.1 `quoted-pair`),
    /// starting at the opening quote; returns the unescaped content.
    fn quoted(&mut self) -> Result<String, DigestError> {
        if !self.eat('"') {
            return Err(DigestError::Malformed("expected a quoted string"));
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(DigestError::Malformed("unterminated quoted string"))
    }
}

/// `HA1 = H(username ":" realm ":" password)` as hex (RFC 2617 §3.2.2.2).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash(format!("{username}:{realm}:{password}").as_bytes())
}

/// What an account keeps instead of its password: HA1 for each algorithm,
/// computed once when the password is set.
///
/// An HA1 is specific to one realm; changing the realm invalidates every
/// stored credential. It is password-equivalent for that realm, which is
/// why `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// `H(user:realm:password)` with MD5, hex.
    pub ha1_md5: String,
    /// `H(user:realm:password)` with SHA-256, hex.
    pub ha1_sha256: String,
}

impl StoredCredential {
    /// Hashes a password for `username` in `realm`; the password is not kept.
    pub fn new(username: &str, realm: &str, password: &str) -> Self {
        StoredCredential {
            ha1_md5: ha1(Algorithm::Md5, username, realm, password),
            ha1_sha256: ha1(Algorithm::Sha256, username, realm, password),
        }
    }

    /// The HA1 to verify a response computed with `algorithm`.
    pub fn ha1(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredCredential { .. }")
    }
}

/// Checks `creds.response` against the one computed from a stored HA1
/// (RFC 2617 §3.2.2.1):
///
/// - `HA2 = H(method ":" digest-uri)`
/// - `qop=auth`: `H(HA1 ":" nonce ":" nc ":" cnonce ":" "auth" ":" HA2)`
/// - no qop: `H(HA1 ":" nonce ":" HA2)`
///
/// `stored_ha1` must be the HA1 for `creds.algorithm`. The comparison does
/// not stop at the first differing byte. Whether the nonce is ours, fresh
/// and not replayed is [`NonceManager`]'s part.
pub fn verify(stored_ha1: &str, method: &str, creds: &Credentials) -> bool {
    let h = |s: String| creds.algorithm.hash(s.as_bytes());
    let ha2 = h(format!("{method}:{}", creds.uri));
    let expected = match creds.qop {
        Some(Qop::Auth) => {
            let (Some(nc), Some(cnonce)) = (creds.nc, creds.cnonce.as_deref()) else {
                return false;
            };
            h(format!(
                "{stored_ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
                creds.nonce
            ))
        }
        None => h(format!("{stored_ha1}:{}:{ha2}", creds.nonce)),
    };
    // Hex case carries no meaning (RFC 2617 §3.2.2: LHEX, yet some clients
    // send upper case); lowering the client's text leaks nothing secret.
    constant_time_eq(
        expected.as_bytes(),
        creds.response.to_ascii_lowercase().as_bytes(),
    )
}

/// Equality whose running time depends on the lengths only, so that a
/// response cannot be guessed byte by byte from timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `WWW-Authenticate` (or `Proxy-Authenticate`) values: one per algorithm,
/// in the order given, all with the same nonce (RFC 8760: the server
/// lists its challenges in order of preference, SHA-256 before MD5, see
/// [`Algorithm::PREFERENCE`]). `qop="auth"` is always offered (RFC 2617
/// §3.2.1 says it SHOULD be): it brings the `nc` that replay protection
/// needs. `stale=true` tells the client its credentials were right but the
/// nonce was stale, so it retries without asking the user (RFC 2617
/// §3.2.1).
pub fn challenge_headers(
    realm: &str,
    nonce: &str,
    algorithms: &[Algorithm],
    stale: bool,
) -> Vec<String> {
    algorithms
        .iter()
        .map(|alg| {
            let mut v = format!(
                "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
                escape_quoted(realm),
                escape_quoted(nonce),
                alg.name()
            );
            if stale {
                v.push_str(", stale=true");
            }
            v
        })
        .collect()
}

fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What [`NonceManager::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this realm, and within its lifetime.
    Fresh,
    /// Ours but past its lifetime: challenge again with `stale=true`.
    Stale,
    /// Not a nonce this server issued for this realm (forged, altered,
    /// another secret, or garbage): challenge again without `stale`.
    Invalid,
}

/// A nonce count that is not above the highest already accepted for its
/// nonce, or a second use of a nonce without `qop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("nonce count replayed")]
pub struct Replayed;

/// Length of the MAC in a nonce, bytes: 128 bits, beyond online guessing.
const MAC_LEN: usize = 16;
/// Hex characters of a nonce: issue time, salt, MAC.
const NONCE_HEX_LEN: usize = 16 + 16 + 2 * MAC_LEN;
/// Default bound on the nonces whose `nc` is remembered.
const DEFAULT_MAX_TRACKED: usize = 65_536;

/// Issues and checks server nonces (RFC 2617 §3.2.1 and §4.3), and
/// refuses replays (RFC 2617 §3.2.2 `nc`).
///
/// A nonce is `hex(issued) hex(salt) hex(MAC)`, where `MAC` is
/// HMAC-SHA-256 (RFC 2104) under the server secret over the issue time,
/// the salt and the realm, truncated to 128 bits. Checking one needs no
/// state: the MAC proves it is ours and for this realm, the time says
/// whether it is stale. The salt is a counter started at a seed the caller
/// draws, so that two challenges issued in the same second differ (two
/// phones must never share a nonce, or their `nc` counts would collide).
///
/// Replay state exists only for nonces that authenticated a request: the
/// highest `nc` accepted for each, forgotten once the nonce is stale
/// (a stale nonce authenticates nothing, so it cannot be replayed). The
/// table is also bounded; when full, the oldest entries are dropped and
/// every nonce issued up to then is treated as stale unless remembered,
/// so eviction costs a client one more challenge and never opens a replay.
#[derive(Debug)]
pub struct NonceManager {
    secret: Vec<u8>,
    lifetime: u64,
    next_salt: u64,
    /// Highest `nc` accepted per nonce (`u32::MAX` after a use without
    /// `qop`, which consumes the nonce), with the nonce's issue time.
    used: HashMap<String, Used>,
    max_tracked: usize,
    /// Nonces issued at or before this time whose record may have been
    /// evicted; see the type's docs.
    evicted_up_to: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Used {
    issued: u64,
    highest_nc: u32,
}

impl NonceManager {
    /// A manager keyed with `secret` (at least 16 random bytes, shared by
    /// the nodes that must accept each other's nonces), whose nonces are
    /// fresh for `lifetime`, and whose salts start at `seed` (draw it at
    /// random once at start-up).
    pub fn new(secret: Vec<u8>, lifetime: Duration, seed: u64) -> Self {
        NonceManager {
            secret,
            lifetime: lifetime.as_secs(),
            next_salt: seed,
            used: HashMap::new(),
            max_tracked: DEFAULT_MAX_TRACKED,
            evicted_up_to: None,
        }
    }

    /// Bounds the number of used nonces remembered (default 65 536).
    pub fn with_max_tracked(mut self, max: usize) -> Self {
        self.max_tracked = max.max(1);
        self
    }

    /// How long a nonce stays fresh.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.lifetime)
    }

    /// A new nonce for `realm`, issued at `now`.
    pub fn issue(&mut self, realm: &str, now: u64) -> String {
        let salt = self.next_salt;
        self.next_salt = self.next_salt.wrapping_add(1);
        format!(
            "{now:016x}{salt:016x}{}",
            hex::encode(self.mac(now, salt, realm))
        )
    }

    fn mac(&self, issued: u64, salt: u64, realm: &str) -> [u8; MAC_LEN] {
        // Issue time and salt are fixed width, so the realm that follows
        // cannot be confused with them.
        let mut msg = Vec::with_capacity(16 + realm.len());
        msg.extend_from_slice(&issued.to_be_bytes());
        msg.extend_from_slice(&salt.to_be_bytes());
        msg.extend_from_slice(realm.as_bytes());
        let full = hmac_sha256(&self.secret, &msg);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The issue time of a nonce whose MAC verifies for `realm`.
    fn authentic_issue_time(&self, nonce: &str, realm: &str) -> Option<u64> {
        if nonce.len() != NONCE_HEX_LEN || !nonce.is_ascii() {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let salt = u64::from_str_radix(&nonce[16..32], 16).ok()?;
        let mac = hex::decode(&nonce[32..]).ok()?;
        constant_time_eq(&self.mac(issued, salt, realm), &mac).then_some(issued)
    }

    /// Whether `nonce` is one of ours for `realm`, and fresh at `now`.
    pub fn check(&self, nonce: &str, realm: &str, now: u64) -> NonceCheck {
        match self.authentic_issue_time(nonce, realm) {
            None => NonceCheck::Invalid,
            Some(issued) if self.is_stale(issued, now) => NonceCheck::Stale,
            Some(issued) => {
                let forgotten = self.evicted_up_to.is_some_and(|t| issued <= t)
                    && !self.used.contains_key(nonce);
                if forgotten {
                    NonceCheck::Stale
                } else {
                    NonceCheck::Fresh
                }
            }
        }
    }

    fn is_stale(&self, issued: u64, now: u64) -> bool {
        // A nonce from the future (a peer node's clock ahead of ours) is
        // authentic; its age counts as zero.
        now.saturating_sub(issued) > self.lifetime
    }

    /// Records that `nonce` authenticated a request with nonce count `nc`
    /// (`None`: no `qop`). Call it after [`verify`] succeeded, so that
    /// unauthenticated requests never touch this state. Refuses an `nc` not
    /// above the highest accepted for this nonce, and any second use of a
    /// nonce used without `qop` (which has no counter to protect it).
    pub fn register_use(&mut self, nonce: &str, nc: Option<u32>, now: u64) -> Result<(), Replayed> {
        if let Some(entry) = self.used.get_mut(nonce) {
            return match nc {
                Some(n) if n > entry.highest_nc => {
                    entry.highest_nc = n;
                    Ok(())
                }
                _ => Err(Replayed),
            };
        }
        // Only nonces that passed `check` get here; the issue time is read
        // again rather than taken from the caller.
        let issued = nonce
            .get(..16)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .ok_or(Replayed)?;
        if self.evicted_up_to.is_some_and(|t| issued <= t) {
            return Err(Replayed);
        }
        if self.used.len() >= self.max_tracked {
            self.expire(now);
        }
        while self.used.len() >= self.max_tracked {
            self.evict_oldest();
        }
        self.used.insert(
            nonce.to_owned(),
            Used {
                issued,
                highest_nc: nc.unwrap_or(u32::MAX),
            },
        );
        Ok(())
    }

    fn evict_oldest(&mut self) {
        let Some((key, issued)) = self
            .used
            .iter()
            .min_by_key(|(_, u)| u.issued)
            .map(|(k, u)| (k.clone(), u.issued))
        else {
            return;
        };
        self.used.remove(&key);
        self.evicted_up_to = Some(self.evicted_up_to.map_or(issued, |t| t.max(issued)));
    }

    /// Forgets the replay state of nonces that are stale at `now`.
    pub fn expire(&mut self, now: u64) {
        let lifetime = self.lifetime;
        self.used
            .retain(|_, u| now.saturating_sub(u.issued) <= lifetime);
    }

    /// How many used nonces are remembered.
    pub fn tracked(&self) -> usize {
        self.used.len()
    }
}

/// HMAC-SHA-256 (RFC 2104 §2 with SHA-256's 64-byte block).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for i in 0..BLOCK {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617_HEADER: &str = "Digest username=\"Mufasa\",\r\n \
        realm=\"testrealm@host.com\",\r\n \
        nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n \
        uri=\"/dir/index.html\",\r\n \
        qop=auth,\r\n \
        nc=00000001,\r\n \
        cnonce=\"0a4f113b\",\r\n \
        response=\"6629fae49393a05397450978507c4ef1\",\r\n \
        opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    #[test]
    fn rfc2617_section_3_5_md5_vector() {
        let c = parse_credentials(RFC2617_HEADER).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.realm, "testrealm@host.com");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let stored = StoredCredential::new("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert!(verify(stored.ha1(Algorithm::Md5), "GET", &c));
        assert!(!verify(stored.ha1(Algorithm::Md5), "POST", &c));
        let wrong = StoredCredential::new("Mufasa", "testrealm@host.com", "circle of life");
        assert!(!verify(wrong.ha1(Algorithm::Md5), "GET", &c));
    }

    #[test]
    fn rfc7616_section_3_9_1_sha256_vector() {
        let header = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
            uri=\"/dir/index.html\", algorithm=SHA-256, \
            nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
            cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
            response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
            opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let c = parse_credentials(header).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let stored = StoredCredential::new("Mufasa", "http-auth@example.org", "Circle of Life");
        assert!(verify(stored.ha1(Algorithm::Sha256), "GET", &c));
        // The MD5 HA1 of the same password does not verify a SHA-256 answer.
        assert!(!verify(stored.ha1(Algorithm::Md5), "GET", &c));
    }

    #[test]
    fn response_without_qop_rfc2069_form() {
        let stored = StoredCredential::new("bob", "biloxi.com", "zanzibar");
        let ha2 = Algorithm::Md5.hash(b"REGISTER:sip:biloxi.com");
        let resp = Algorithm::Md5.hash(format!("{}:abc:{ha2}", stored.ha1_md5).as_bytes());
        let c = parse_credentials(&format!(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"abc\", \
             uri=\"sip:biloxi.com\", response=\"{}\"",
            resp.to_uppercase()
        ))
        .unwrap();
        assert_eq!((c.qop, c.nc, c.cnonce.as_deref()), (None, None, None));
        assert!(verify(&stored.ha1_md5, "REGISTER", &c));
    }

    #[test]
    fn parser_tolerates_odd_spacing_quoting_and_escapes() {
        let c = parse_credentials(
            "  digest   username = \"a\\\"b\\\\c\" ,realm=\"r\",, nonce =n1 ,\t uri= sip:x@y;transport=tcp ,\
             response=\"00\", ALGORITHM=\"sha-256\", qop=\"auth\", nc = 0000000a, cnonce=\"c\",  \
             userhash=false  ,",
        )
        .unwrap();
        assert_eq!(c.scheme, "digest");
        assert_eq!(c.username, "a\"b\\c");
        assert_eq!(c.nonce, "n1");
        assert_eq!(c.uri, "sip:x@y;transport=tcp");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nc, Some(10));
    }

    #[test]
    fn parser_errors() {
        assert_eq!(
            parse_credentials("NoOneKnowsThisScheme opaque-data=here"),
            Err(DigestError::UnknownScheme("NoOneKnowsThisScheme".into()))
        );
        assert!(matches!(
            parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Err(DigestError::UnknownScheme(_))
        ));
        let base = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"0\"";
        assert!(parse_credentials(base).is_ok());
        assert_eq!(
            parse_credentials(&format!("{base}, algorithm=SHA-512-256")),
            Err(DigestError::UnknownAlgorithm("SHA-512-256".into()))
        );
        assert_eq!(
            parse_credentials(&format!("{base}, algorithm=MD5-sess")),
            Err(DigestError::UnknownAlgorithm("MD5-sess".into()))
        );
        assert_eq!(
            parse_credentials(&format!("{base}, qop=auth-int, nc=00000001, cnonce=x")),
            Err(DigestError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            parse_credentials(&format!("{base}, qop=auth, cnonce=x")),
            Err(DigestError::MissingParameter("nc"))
        );
        assert_eq!(
            parse_credentials(&format!("{base}, qop=auth, nc=00000001")),
            Err(DigestError::MissingParameter("cnonce"))
        );
        for nc in ["1", "0000000G", "0000000A", "000000001"] {
            assert_eq!(
                parse_credentials(&format!("{base}, qop=auth, cnonce=x, nc={nc}")),
                Err(DigestError::BadNonceCount(nc.into()))
            );
        }
        assert_eq!(
            parse_credentials(&format!("{base}, realm=\"again\"")),
            Err(DigestError::DuplicateParameter("realm".into()))
        );
        assert_eq!(
            parse_credentials("Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\""),
            Err(DigestError::MissingParameter("username"))
        );
        for bad in [
            "",
            "Digest username=\"unterminated",
            "Digest username",
            "Digest username=",
            "Digest =x",
            "Digest username=\"a\" realm=\"b\"",
            "Digest, username=\"a\"",
        ] {
            assert!(
                matches!(parse_credentials(bad), Err(DigestError::Malformed(_))),
                "{bad:?}: {:?}",
                parse_credentials(bad)
            );
        }
    }

    #[test]
    fn challenge_headers_offer_in_the_given_order() {
        let v = challenge_headers("a\"b", "n", &Algorithm::PREFERENCE, true);
        assert_eq!(
            v,
            vec![
                "Digest realm=\"a\\\"b\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\", stale=true",
                "Digest realm=\"a\\\"b\", nonce=\"n\", algorithm=MD5, qop=\"auth\", stale=true",
            ]
        );
        let md5_only = challenge_headers("r", "n", &[Algorithm::Md5], false);
        assert_eq!(
            md5_only,
            vec!["Digest realm=\"r\", nonce=\"n\", algorithm=MD5, qop=\"auth\""]
        );
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231 case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,300}") {
            let _ = parse_credentials(&s);
            let _ = parse_credentials(&format!("Digest {s}"));
        }

        #[test]
        fn nonce_check_never_panics(s in ".{0,80}") {
            let m = manager();
            let _ = m.check(&s, "r", 0);
        }
    }

    fn manager() -> NonceManager {
        NonceManager::new(b"0123456789abcdef".to_vec(), Duration::from_secs(300), 42)
    }

    #[test]
    fn nonces_are_unique_authentic_and_expire() {
        let mut m = manager();
        let t0 = 1_000_000;
        let a = m.issue("r", t0);
        let b = m.issue("r", t0);
        assert_ne!(a, b, "two challenges in the same second differ");
        assert_eq!(a.len(), NONCE_HEX_LEN);
        assert_eq!(m.check(&a, "r", t0), NonceCheck::Fresh);
        assert_eq!(m.check(&a, "r", t0 + 300), NonceCheck::Fresh);
        assert_eq!(m.check(&a, "r", t0 + 301), NonceCheck::Stale);
        // From a peer whose clock is ahead: authentic, not stale.
        assert_eq!(m.check(&a, "r", t0 - 5), NonceCheck::Fresh);
        // Bound to the realm and the secret.
        assert_eq!(m.check(&a, "other", t0), NonceCheck::Invalid);
        let other = NonceManager::new(b"another secret!!".to_vec(), Duration::from_secs(300), 42);
        assert_eq!(other.check(&a, "r", t0), NonceCheck::Invalid);
    }

    #[test]
    fn tampered_nonces_are_invalid() {
        let mut m = manager();
        let t0 = 5_000;
        let n = m.issue("r", t0);
        // Moving the issue time forward to make an old nonce look fresh.
        let later = format!("{:016x}{}", t0 + 1_000, &n[16..]);
        assert_eq!(m.check(&later, "r", t0 + 1_000), NonceCheck::Invalid);
        // Any single flipped character.
        for i in 0..n.len() {
            let mut bytes = n.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(bytes).unwrap();
            assert_eq!(m.check(&t, "r", t0), NonceCheck::Invalid, "at {i}");
        }
        for junk in ["", "abc", &n[..n.len() - 1], &format!("{n}0"), "é"] {
            assert_eq!(m.check(junk, "r", t0), NonceCheck::Invalid);
        }
        let non_ascii = format!("{}é", &n[..n.len() - 2]);
        assert_eq!(m.check(&non_ascii, "r", t0), NonceCheck::Invalid);
    }

    #[test]
    fn replayed_nonce_counts_are_refused() {
        let mut m = manager();
        let t0 = 10;
        let n = m.issue("r", t0);
        assert_eq!(m.register_use(&n, Some(1), t0), Ok(()));
        assert_eq!(m.register_use(&n, Some(1), t0 + 1), Err(Replayed));
        assert_eq!(m.register_use(&n, Some(3), t0 + 1), Ok(()));
        assert_eq!(m.register_use(&n, Some(2), t0 + 1), Err(Replayed));
        assert_eq!(m.register_use(&n, None, t0 + 1), Err(Replayed));
        // Without qop a nonce is good for one request.
        let single = m.issue("r", t0);
        assert_eq!(m.register_use(&single, None, t0), Ok(()));
        assert_eq!(m.register_use(&single, None, t0), Err(Replayed));
        assert_eq!(m.register_use(&single, Some(9), t0), Err(Replayed));
        assert_eq!(m.tracked(), 2);
    }

    #[test]
    fn replay_state_is_forgotten_with_stale_nonces() {
        let mut m = manager();
        let old = m.issue("r", 0);
        m.register_use(&old, Some(1), 0).unwrap();
        let young = m.issue("r", 200);
        m.register_use(&young, Some(1), 200).unwrap();
        m.expire(301);
        assert_eq!(m.tracked(), 1);
        // Forgetting is safe: the forgotten nonce is stale.
        assert_eq!(m.check(&old, "r", 301), NonceCheck::Stale);
        assert_eq!(m.register_use(&young, Some(1), 301), Err(Replayed));
    }

    #[test]
    fn bounded_table_evicts_oldest_and_treats_its_era_as_stale() {
        let mut m = manager().with_max_tracked(2);
        let a = m.issue("r", 100);
        let b = m.issue("r", 101);
        let c = m.issue("r", 102);
        let unused = m.issue("r", 100);
        m.register_use(&a, Some(1), 102).unwrap();
        m.register_use(&b, Some(1), 102).unwrap();
        m.register_use(&c, Some(1), 102).unwrap();
        assert_eq!(m.tracked(), 2);
        // `a` was evicted: replaying it must not succeed, nor may any
        // unremembered nonce of its era be used.
        assert_eq!(m.check(&a, "r", 102), NonceCheck::Stale);
        assert_eq!(m.register_use(&a, Some(1), 102), Err(Replayed));
        assert_eq!(m.check(&unused, "r", 102), NonceCheck::Stale);
        // Remembered ones carry on.
        assert_eq!(m.check(&b, "r", 102), NonceCheck::Fresh);
        assert_eq!(m.register_use(&b, Some(2), 102), Ok(()));
        let fresh = m.issue("r", 103);
        assert_eq!(m.check(&fresh, "r", 103), NonceCheck::Fresh);
    }

    #[test]
    fn carrier_challenges_are_read() {
        let asterisk =
            parse_challenge(r#"Digest algorithm=MD5, realm="asterisk", nonce="1a2b3c4d""#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(asterisk.realm, "asterisk");
        assert_eq!(asterisk.algorithm, Algorithm::Md5);
        assert!(!asterisk.qop_auth);
        let kamailio = parse_challenge(
            r#"Digest realm="sip.example.com", nonce="ZXhhbXBsZQ", qop="auth,auth-int", opaque="xyz", stale=TRUE"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(kamailio.qop_auth);
        assert!(kamailio.stale);
        assert_eq!(kamailio.opaque.as_deref(), Some("xyz"));
        assert!(matches!(
            parse_challenge(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#),
            Err(DigestError::UnknownAlgorithm(_))
        ));
        assert!(matches!(
            parse_challenge(r#"Digest nonce="n""#),
            Err(DigestError::MissingParameter("realm"))
        ));
        assert!(matches!(
            parse_challenge("Basic realm=\"x\""),
            Err(DigestError::UnknownScheme(_))
        ));
    }

    #[test]
    fn our_authorization_verifies_at_a_server_with_and_without_qop() {
        for (qop, alg) in [
            (true, Algorithm::Md5),
            (false, Algorithm::Md5),
            (true, Algorithm::Sha256),
        ] {
            let ch = Challenge {
                realm: "carrier".into(),
                nonce: "abc\"def".into(),
                algorithm: alg,
                qop_auth: qop,
                opaque: Some("op".into()),
                stale: false,
            };
            let v = authorization(
                &ch,
                "INVITE",
                "sip:13800138000@gw.example",
                "trunk1",
                "s3cret",
                "c0ffee",
                1,
            );
            let creds = parse_credentials(&v).unwrap_or_else(|e| panic!("{e}: {v}"));
            assert_eq!(creds.nonce, "abc\"def");
            assert_eq!(creds.uri, "sip:13800138000@gw.example");
            assert_eq!(creds.opaque.as_deref(), Some("op"));
            assert_eq!(creds.qop.is_some(), qop);
            let stored = StoredCredential::new("trunk1", "carrier", "s3cret");
            assert!(verify(stored.ha1(alg), "INVITE", &creds), "{v}");
            let wrong = StoredCredential::new("trunk1", "carrier", "other");
            assert!(!verify(wrong.ha1(alg), "INVITE", &creds));
        }
    }

    #[test]
    fn rfc2617_client_response() {
        // RFC 2617 §3.5 (the request there is GET; the computation is the
        // same for any method).
        let ch = Challenge {
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            algorithm: Algorithm::Md5,
            qop_auth: true,
            opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            stale: false,
        };
        let v = authorization(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
            1,
        );
        assert!(
            v.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{v}"
        );
    }
}
