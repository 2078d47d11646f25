//! A sans-IO registrar (RFC 3261 §10.3) with digest authentication
//! ([`super::digest`]), independent of the SIP message type and the
//! transport.
//!
//! The caller turns a REGISTER into a [`RegisterRequest`] (strings and
//! numbers taken from the To, Call-ID, CSeq, Contact, Expires and
//! Authorization headers, plus where the request came from) and feeds it to
//! [`Registrar::handle_register`] with the accounts and the tenant map. The
//! [`RegisterOutcome`] says what to answer: a 200 with the bindings to list
//! as `Contact: <uri>;expires=N`, a 401 with `WWW-Authenticate` values, or
//! an error status. Bindings remember the source address and transport of
//! the REGISTER, which is how a phone behind NAT is reached.
//!
//! Time is an input (`now`: whole seconds since the caller's epoch, the
//! same for every call). Bindings lapse on their own in [`Registrar::lookup`];
//! [`Registrar::expire`] frees their memory and [`Registrar::next_expiry`]
//! says when to call it.
//!
//! ```
//! use std::time::Duration;
//! use switchboard_media::sip::digest::{ha1, Algorithm, StoredCredential};
//! use switchboard_media::sip::registrar::{
//!     Account, AccountMap, ContactEntry, RegisterOutcome, RegisterRequest, Registrar,
//!     RegistrarConfig, TenantResolver,
//! };
//!
//! let config = RegistrarConfig::default();
//! let realm = config.realm.clone();
//! let mut registrar = Registrar::new(config, b"a secret of 16+ bytes".to_vec(), 1);
//! let mut accounts = AccountMap::new();
//! accounts.insert(Account {
//!     tenant: "acme".into(),
//!     username: "1001".into(),
//!     credential: StoredCredential::new("1001", &realm, "pw"),
//! });
//! let mut tenants = TenantResolver::new();
//! tenants.add_domain("acme.example", "acme");
//!
//! let mut req = RegisterRequest {
//!     domain: "acme.example".into(),
//!     to_user: "1001".into(),
//!     call_id: "c1".into(),
//!     cseq: 1,
//!     contacts: vec![ContactEntry {
//!         uri: "sip:1001@10.0.0.5:5060".into(),
//!         expires_param: None,
//!         q: None,
//!         raw: "<sip:1001@10.0.0.5:5060>".into(),
//!     }],
//!     star: false,
//!     expires_header: Some(600),
//!     authorization: None,
//!     source: "203.0.113.7:40000".parse().unwrap(),
//!     transport: "UDP".into(),
//!     now: 1_000,
//! };
//! let RegisterOutcome::Challenge { www_authenticate, .. } =
//!     registrar.handle_register(&req, &accounts, &tenants)
//! else {
//!     panic!("expected a challenge");
//! };
//! let nonce = www_authenticate[0].split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
//!
//! // The phone answers (RFC 2617 §3.2.2.1).
//! let md5 = |s: String| Algorithm::Md5.hash(s.as_bytes());
//! let ha2 = md5("REGISTER:sip:acme.example".into());
//! let response = md5(format!("{}:{nonce}:00000001:x:auth:{ha2}", ha1(Algorithm::Md5, "1001", &realm, "pw")));
//! req.cseq = 2;
//! req.authorization = Some(format!(
//!     "Digest username=\"1001\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"sip:acme.example\", \
//!      response=\"{response}\", qop=auth, nc=00000001, cnonce=\"x\""
//! ));
//! let RegisterOutcome::Ok { bindings } = registrar.handle_register(&req, &accounts, &tenants) else {
//!     panic!("expected 200");
//! };
//! assert_eq!(bindings[0].contact_header(), "<sip:1001@10.0.0.5:5060>;expires=600");
//! let live = registrar.lookup("acme", "1001", 1_100);
//! assert_eq!(live[0].source.to_string(), "203.0.113.7:40000");
//! assert_eq!(registrar.next_expiry(), Some(1_600));
//! ```

use super::digest::{
    challenge_headers, parse_credentials, verify, Algorithm, DigestError, NonceCheck, NonceManager,
    StoredCredential,
};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

/// A SIP account: who may register, with what credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The tenant the account belongs to; usernames are unique per tenant.
    pub tenant: String,
    /// The user part of the AOR and the digest username.
    pub username: String,
    /// HA1s computed with [`RegistrarConfig::realm`].
    pub credential: StoredCredential,
}

/// Where the registrar finds accounts; implemented by [`AccountMap`], and by
/// whatever cache a deployment keeps in front of its database.
pub trait AccountStore {
    /// The account `username` of `tenant`, if there is one.
    fn account(&self, tenant: &str, username: &str) -> Option<&Account>;
}

/// Accounts in memory, keyed by (tenant, username).
#[derive(Debug, Clone, Default)]
pub struct AccountMap {
    map: HashMap<(String, String), Account>,
}

impl AccountMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an account; returns the one replaced.
    pub fn insert(&mut self, account: Account) -> Option<Account> {
        self.map
            .insert((account.tenant.clone(), account.username.clone()), account)
    }

    /// Removes an account. Its bindings stay until they expire: the
    /// registrar keeps no reverse index from accounts to bindings.
    pub fn remove(&mut self, tenant: &str, username: &str) -> Option<Account> {
        self.map.remove(&(tenant.to_owned(), username.to_owned()))
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl AccountStore for AccountMap {
    fn account(&self, tenant: &str, username: &str) -> Option<&Account> {
        self.map.get(&(tenant.to_owned(), username.to_owned()))
    }
}

/// Maps the domain of an AOR (the host of the To URI) to a tenant.
///
/// With exactly one tenant every domain maps to it, so that a single-tenant
/// node works whatever name or address its phones were given.
#[derive(Debug, Clone, Default)]
pub struct TenantResolver {
    domains: HashMap<String, String>,
    tenants: BTreeSet<String>,
}

impl TenantResolver {
    /// No tenants yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a tenant, with or without domains of its own.
    pub fn add_tenant(&mut self, tenant: impl Into<String>) {
        self.tenants.insert(tenant.into());
    }

    /// Maps `domain` to `tenant` (and declares the tenant). Domains are
    /// compared case-insensitively (RFC 3261 §19.1.4) and without a
    /// trailing dot.
    pub fn add_domain(&mut self, domain: &str, tenant: impl Into<String>) {
        let tenant = tenant.into();
        self.tenants.insert(tenant.clone());
        self.domains.insert(normalize_domain(domain), tenant);
    }

    /// Replaces `tenant`'s domains with `domains` (and declares it).
    pub fn set_domains(&mut self, tenant: &str, domains: &[String]) {
        self.domains.retain(|_, t| t != tenant);
        self.tenants.insert(tenant.to_owned());
        for d in domains {
            self.domains.insert(normalize_domain(d), tenant.to_owned());
        }
    }

    /// The tenant that serves `domain`.
    pub fn resolve(&self, domain: &str) -> Option<&str> {
        if let Some(t) = self.domains.get(&normalize_domain(domain)) {
            return Some(t);
        }
        match self.tenants.len() {
            1 => self.tenants.first().map(String::as_str),
            _ => None,
        }
    }
}

fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// One Contact of a REGISTER, as the caller parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactEntry {
    /// The contact URI, without `<>`.
    pub uri: String,
    /// The `expires` Contact parameter, which overrides the Expires header
    /// (RFC 3261 §10.2.1.1).
    pub expires_param: Option<u64>,
    /// The `q` parameter, 0 to 1 (RFC 3261 §20.10).
    pub q: Option<f32>,
    /// The whole header value as received, kept with the binding (it holds
    /// parameters such as `+sip.instance` that the caller may echo).
    pub raw: String,
}

/// What the registrar needs from a REGISTER.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    /// Host of the To URI: selects the tenant.
    pub domain: String,
    /// User of the To URI: the AOR whose bindings change.
    pub to_user: String,
    /// Call-ID, for the ordering rule of §10.3 steps 6 and 7.
    pub call_id: String,
    /// CSeq number, for the same rule.
    pub cseq: u32,
    /// Contact values other than `*`.
    pub contacts: Vec<ContactEntry>,
    /// `Contact: *` was present.
    pub star: bool,
    /// The Expires header.
    pub expires_header: Option<u64>,
    /// The Authorization header value for this registrar's realm.
    pub authorization: Option<String>,
    /// Where the request came from (after `rport`, RFC 3581): how to reach
    /// the phone behind its NAT.
    pub source: SocketAddr,
    /// The transport it came over (`UDP`, `TCP`, …).
    pub transport: String,
    /// Seconds since the caller's epoch.
    pub now: u64,
}

/// A live binding of an AOR to a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The contact URI.
    pub contact: String,
    /// The Contact header value the phone sent.
    pub raw: String,
    /// The source address of the REGISTER that created or refreshed it.
    pub source: SocketAddr,
    /// The transport of that REGISTER.
    pub transport: String,
    /// Its `q`, if given.
    pub q: Option<f32>,
    /// When it lapses (caller's epoch seconds).
    pub expires_at: u64,
    /// Seconds left when this snapshot was taken: the `expires` to echo.
    pub expires: u64,
    /// Call-ID of the REGISTER that last touched it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
}

impl Binding {
    /// Where requests for this binding go. Over UDP, a contact naming the
    /// very IP address its REGISTER came from is reachable as written (no
    /// NAT in between, though the phone may have sent from another port);
    /// any other contact (a private address behind a NAT, a host name)
    /// and every connection-oriented transport is reached at the source,
    /// where the phone's NAT binding or connection is.
    pub fn destination(&self) -> SocketAddr {
        if !self.transport.eq_ignore_ascii_case("UDP") {
            return self.source;
        }
        let Some(rest) = self.contact.strip_prefix("sip:") else {
            return self.source;
        };
        if rest.to_ascii_lowercase().contains(";transport=")
            && !rest.to_ascii_lowercase().contains(";transport=udp")
        {
            return self.source;
        }
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
        let Ok((host, port)) = crate::sip::header::parse_host_port(&rest[..end]) else {
            return self.source;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip == self.source.ip() => SocketAddr::new(ip, port.unwrap_or(5060)),
            _ => self.source,
        }
    }

    /// The value for a `Contact` header of the 200 (RFC 3261 §10.3 step 8).
    pub fn contact_header(&self) -> String {
        let mut v = format!("<{}>;expires={}", self.contact, self.expires);
        if let Some(q) = self.q {
            v.push_str(&format!(";q={q}"));
        }
        v
    }
}

/// What to answer a REGISTER.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RegisterOutcome {
    /// 200: the AOR's bindings after the request (empty after removing
    /// them all), each to be listed with its `expires`.
    Ok {
        /// Every live binding of the AOR.
        bindings: Vec<Binding>,
    },
    /// 401 with one `WWW-Authenticate` header per value.
    Challenge {
        /// The header values, in order of preference.
        www_authenticate: Vec<String>,
        /// Whether they say `stale=true`.
        stale: bool,
    },
    /// 400.
    BadRequest {
        /// Reason phrase.
        reason: &'static str,
    },
    /// 403.
    Forbidden {
        /// Reason phrase.
        reason: &'static str,
    },
    /// 404: no tenant serves the domain.
    NotFound,
    /// 423 with `Min-Expires`.
    IntervalTooBrief {
        /// The value of the Min-Expires header.
        min_expires: u64,
    },
    /// 500: a REGISTER older than one already applied (§10.3 steps 6, 7).
    OutOfOrder,
}

impl RegisterOutcome {
    /// Status code and reason phrase of the response.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RegisterOutcome::Ok { .. } => (200, "OK"),
            RegisterOutcome::Challenge { .. } => (401, "Unauthorized"),
            RegisterOutcome::BadRequest { reason } => (400, reason),
            RegisterOutcome::Forbidden { reason } => (403, reason),
            RegisterOutcome::NotFound => (404, "Not Found"),
            RegisterOutcome::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            RegisterOutcome::OutOfOrder => (500, "Out Of Order Request"),
        }
    }
}

/// A request to authenticate (see [`Registrar::authenticate`]).
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The request's method, part of the digest.
    pub method: &'a str,
    /// The domain that names the tenant (the To or Request-URI host).
    pub domain: &'a str,
    /// The account the request is for (a REGISTER's AOR) or from (the
    /// From of an INVITE).
    pub user: &'a str,
    /// The `Authorization` or `Proxy-Authorization` header's value.
    pub authorization: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

/// What authenticating a request came to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Authentication {
    /// The account of `tenant` proved it sent the request.
    Authenticated {
        /// The tenant the domain names.
        tenant: String,
    },
    /// Challenge it: one header value per algorithm (`WWW-Authenticate`
    /// with a 401, `Proxy-Authenticate` with a 407).
    Challenge {
        /// The header values, in order of preference.
        headers: Vec<String>,
        /// Whether they say `stale=true`.
        stale: bool,
    },
    /// 400.
    BadRequest {
        /// Reason phrase.
        reason: &'static str,
    },
    /// 403.
    Forbidden {
        /// Reason phrase.
        reason: &'static str,
    },
    /// 404: no tenant serves the domain.
    NotFound,
}

/// Registrar settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrarConfig {
    /// The digest realm; every [`StoredCredential`] is computed with it.
    pub realm: String,
    /// Algorithms challenged with, one `WWW-Authenticate` each, in order.
    /// Answers in any supported algorithm are verified regardless.
    pub challenge_algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh.
    pub nonce_lifetime: Duration,
    /// Shortest registration accepted (423 below it).
    pub min_expires: u64,
    /// Longest registration granted; longer requests are shortened, which
    /// §10.3 step 7 allows.
    pub max_expires: u64,
    /// Granted when neither the Contact nor the request says (§10.3 step 7:
    /// a locally configured default).
    pub default_expires: u64,
    /// Most bindings one AOR may hold, so that an authenticated phone
    /// cannot grow the table without bound.
    pub max_bindings_per_aor: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "switchboard".into(),
            // RFC 8760 would have SHA-256 offered first, then MD5. But
            // deployed phones refuse the whole challenge when any
            // WWW-Authenticate names an algorithm they lack (libre 1.1, under
            // baresip 1.0, stops at the first non-MD5 one), so MD5 alone is
            // offered unless configured otherwise; use
            // `Algorithm::PREFERENCE.to_vec()` for both.
            challenge_algorithms: vec![Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_bindings_per_aor: 10,
        }
    }
}

/// RFC 3261 §10.3 step 7: a 423 only for requests shorter than an hour.
const ONE_HOUR: u64 = 3600;

type Aor = (String, String);

#[derive(Debug, Clone)]
struct Entry {
    /// The contact URI normalised for comparison.
    key: String,
    contact: String,
    raw: String,
    source: SocketAddr,
    transport: String,
    q: Option<f32>,
    expires_at: u64,
    call_id: String,
    cseq: u32,
}

impl Entry {
    fn snapshot(&self, now: u64) -> Binding {
        Binding {
            contact: self.contact.clone(),
            raw: self.raw.clone(),
            source: self.source,
            transport: self.transport.clone(),
            q: self.q,
            expires_at: self.expires_at,
            expires: self.expires_at.saturating_sub(now),
            call_id: self.call_id.clone(),
            cseq: self.cseq,
        }
    }
}

/// The registrar: nonces and bindings. See the module docs.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    nonces: NonceManager,
    bindings: HashMap<Aor, Vec<Entry>>,
    /// Every binding by expiry time, for [`Registrar::expire`] and
    /// [`Registrar::next_expiry`]; exactly one element per entry.
    by_expiry: BTreeSet<(u64, Aor, String)>,
    /// The second nonces were last swept in: the sweep walks every used
    /// nonce, so it runs at most once a second however often timers fire.
    nonces_swept: u64,
}

impl Registrar {
    /// A registrar whose nonces are keyed with `secret` (see
    /// [`NonceManager::new`]) and salted from `seed` (random, drawn once).
    pub fn new(config: RegistrarConfig, secret: Vec<u8>, seed: u64) -> Self {
        let nonces = NonceManager::new(secret, config.nonce_lifetime, seed);
        Registrar {
            config,
            nonces,
            bindings: HashMap::new(),
            by_expiry: BTreeSet::new(),
            nonces_swept: 0,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Processes a REGISTER (RFC 3261 §10.3 steps 1–8; step 2, `Require`,
    /// is the caller's).
    pub fn handle_register(
        &mut self,
        req: &RegisterRequest,
        accounts: &impl AccountStore,
        tenants: &TenantResolver,
    ) -> RegisterOutcome {
        let outcome = self.authenticate_and_apply(req, accounts, tenants);
        tracing::debug!(
            status = outcome.status().0,
            domain = %req.domain,
            "register"
        );
        outcome
    }

    fn authenticate_and_apply(
        &mut self,
        req: &RegisterRequest,
        accounts: &impl AccountStore,
        tenants: &TenantResolver,
    ) -> RegisterOutcome {
        // Step 1: a domain no tenant serves. This node does not proxy
        // REGISTERs onwards; step 5 names 404 for an AOR not valid here.
        // Step 3: authenticate (§22.1); an account may register its own
        // AOR only.
        let asked = Asked {
            method: "REGISTER",
            domain: &req.domain,
            user: &req.to_user,
            authorization: req.authorization.as_deref(),
            now: req.now,
        };
        match self.authenticate(&asked, accounts, tenants) {
            Authentication::Authenticated { tenant } => self.apply(&tenant, req),
            Authentication::Challenge { headers, stale } => RegisterOutcome::Challenge {
                www_authenticate: headers,
                stale,
            },
            Authentication::BadRequest { reason } => RegisterOutcome::BadRequest { reason },
            Authentication::Forbidden { reason } => RegisterOutcome::Forbidden { reason },
            Authentication::NotFound => RegisterOutcome::NotFound,
        }
    }

    /// Authenticates a request of account `asked.user` (a REGISTER for
    /// its AOR, an INVITE it sends) by digest (RFC 3261 §22): the
    /// credentials must be this realm's, on a fresh nonce, of that
    /// account, and right for `asked.method`.
    pub fn authenticate(
        &mut self,
        asked: &Asked<'_>,
        accounts: &impl AccountStore,
        tenants: &TenantResolver,
    ) -> Authentication {
        let now = asked.now;
        let Some(tenant) = tenants.resolve(asked.domain) else {
            return Authentication::NotFound;
        };
        let Some(authorization) = asked.authorization else {
            return self.challenge(now, false);
        };
        let creds = match parse_credentials(authorization) {
            Ok(c) => c,
            // The client may know Digest or an algorithm we offer: give it
            // the chance (RFC 4475 §3.3.7).
            Err(DigestError::UnknownScheme(_) | DigestError::UnknownAlgorithm(_)) => {
                return self.challenge(now, false)
            }
            Err(_) => {
                return Authentication::BadRequest {
                    reason: "Malformed Authorization",
                }
            }
        };
        if creds.realm != self.config.realm {
            // Credentials for another protection space (a proxy's, say) say
            // nothing about this one (RFC 3261 §22.1: realms are protection
            // spaces).
            return self.challenge(now, false);
        }
        match self.nonces.check(&creds.nonce, &self.config.realm, now) {
            NonceCheck::Invalid => return self.challenge(now, false),
            NonceCheck::Stale => return self.challenge(now, true),
            NonceCheck::Fresh => {}
        }
        let Some(account) = accounts.account(tenant, &creds.username) else {
            return Authentication::Forbidden {
                reason: "Forbidden",
            };
        };
        // §22.1: the authenticated user must be entitled to what it asks;
        // here an account acts for itself only. The user part is
        // case-sensitive (§19.1.4).
        if creds.username != asked.user {
            return Authentication::Forbidden {
                reason: "Credentials Do Not Match The AOR",
            };
        }
        if !verify(
            account.credential.ha1(creds.algorithm),
            asked.method,
            &creds,
        ) {
            // A wrong response to one of our fresh nonces means the wrong
            // password. RFC 3261 §22 allows another 401, but a phone configured
            // with a bad password would then retry forever (each 401 brings
            // a fresh nonce); a 403 stops it and tells its user.
            return Authentication::Forbidden {
                reason: "Forbidden",
            };
        }
        if self
            .nonces
            .register_use(&creds.nonce, creds.nc, now)
            .is_err()
        {
            // The response was right but its nc was used: a replay, or a
            // client that lost count. Only a fresh nonce helps either way;
            // stale=true lets a genuine client retry without its user.
            return self.challenge(now, true);
        }
        Authentication::Authenticated {
            tenant: tenant.to_owned(),
        }
    }

    fn challenge(&mut self, now: u64, stale: bool) -> Authentication {
        let nonce = self.nonces.issue(&self.config.realm, now);
        Authentication::Challenge {
            headers: challenge_headers(
                &self.config.realm,
                &nonce,
                &self.config.challenge_algorithms,
                stale,
            ),
            stale,
        }
    }

    /// Steps 6–8 for an authenticated request. All changes are computed on
    /// a copy and committed only if every contact succeeds (step 7: the
    /// updates are made visible if and only if all of them succeed).
    fn apply(&mut self, tenant: &str, req: &RegisterRequest) -> RegisterOutcome {
        let now = req.now;
        let aor: Aor = (tenant.to_owned(), req.to_user.clone());
        self.drop_lapsed(&aor, now);
        let current: Vec<Entry> = self.bindings.get(&aor).cloned().unwrap_or_default();
        let out_of_order = |e: &Entry| e.call_id == req.call_id && req.cseq <= e.cseq;

        if req.star {
            // Step 6: `*` only alone and with Expires: 0.
            if !req.contacts.is_empty() {
                return RegisterOutcome::BadRequest {
                    reason: "Contact * Must Stand Alone",
                };
            }
            if req.expires_header != Some(0) {
                return RegisterOutcome::BadRequest {
                    reason: "Contact * Requires Expires: 0",
                };
            }
            if current.iter().any(out_of_order) {
                return RegisterOutcome::OutOfOrder;
            }
            self.commit(&aor, Vec::new());
            return RegisterOutcome::Ok {
                bindings: Vec::new(),
            };
        }

        // Step 7, for each contact.
        let mut updated = current;
        for c in &req.contacts {
            if let Some(q) = c.q {
                if !(0.0..=1.0).contains(&q) {
                    return RegisterOutcome::BadRequest {
                        reason: "Bad q Value",
                    };
                }
            }
            let requested = c
                .expires_param
                .or(req.expires_header)
                .unwrap_or(self.config.default_expires);
            if requested > 0 && requested < ONE_HOUR && requested < self.config.min_expires {
                return RegisterOutcome::IntervalTooBrief {
                    min_expires: self.config.min_expires,
                };
            }
            let expires = requested.min(self.config.max_expires);
            let key = contact_key(&c.uri);
            let existing = updated.iter().position(|e| e.key == key);
            if let Some(i) = existing {
                if out_of_order(&updated[i]) {
                    return RegisterOutcome::OutOfOrder;
                }
                updated.remove(i);
            }
            if expires > 0 {
                let entry = Entry {
                    key,
                    contact: c.uri.clone(),
                    raw: c.raw.clone(),
                    source: req.source,
                    transport: req.transport.clone(),
                    q: c.q,
                    expires_at: now.saturating_add(expires),
                    call_id: req.call_id.clone(),
                    cseq: req.cseq,
                };
                // A refreshed binding keeps its place in the list.
                match existing {
                    Some(i) => updated.insert(i, entry),
                    None => updated.push(entry),
                }
            }
        }
        if updated.len() > self.config.max_bindings_per_aor {
            return RegisterOutcome::Forbidden {
                reason: "Too Many Registered Contacts",
            };
        }
        let bindings = updated.iter().map(|e| e.snapshot(now)).collect();
        self.commit(&aor, updated);
        // Step 8: every current binding, the request's or not.
        RegisterOutcome::Ok { bindings }
    }

    fn commit(&mut self, aor: &Aor, entries: Vec<Entry>) {
        if let Some(old) = self.bindings.remove(aor) {
            for e in old {
                self.by_expiry.remove(&(e.expires_at, aor.clone(), e.key));
            }
        }
        if entries.is_empty() {
            return;
        }
        for e in &entries {
            self.by_expiry
                .insert((e.expires_at, aor.clone(), e.key.clone()));
        }
        self.bindings.insert(aor.clone(), entries);
    }

    fn drop_lapsed(&mut self, aor: &Aor, now: u64) {
        let Some(list) = self.bindings.get(aor) else {
            return;
        };
        if list.iter().all(|e| e.expires_at > now) {
            return;
        }
        let live = list
            .iter()
            .filter(|e| e.expires_at > now)
            .cloned()
            .collect();
        self.commit(aor, live);
    }

    /// The live bindings of `user` in `tenant`, highest `q` first (no `q`
    /// counts as 1.0), registration order among equals.
    pub fn lookup(&self, tenant: &str, user: &str, now: u64) -> Vec<Binding> {
        let Some(list) = self.bindings.get(&(tenant.to_owned(), user.to_owned())) else {
            return Vec::new();
        };
        let mut live: Vec<Binding> = list
            .iter()
            .filter(|e| e.expires_at > now)
            .map(|e| e.snapshot(now))
            .collect();
        live.sort_by(|a, b| b.q.unwrap_or(1.0).total_cmp(&a.q.unwrap_or(1.0)));
        live
    }

    /// Drops the bindings that lapsed by `now`, and the replay records of
    /// nonces that are stale.
    pub fn expire(&mut self, now: u64) {
        while let Some((at, aor, key)) = self.by_expiry.first().cloned() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some(list) = self.bindings.get_mut(&aor) {
                list.retain(|e| e.key != key);
                if list.is_empty() {
                    self.bindings.remove(&aor);
                }
            }
        }
        if now > self.nonces_swept {
            self.nonces_swept = now;
            self.nonces.expire(now);
        }
    }

    /// When the next binding lapses: the time to call [`Registrar::expire`].
    pub fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|(at, _, _)| *at)
    }

    /// Number of bindings held, lapsed ones not yet expired included.
    pub fn binding_count(&self) -> usize {
        self.by_expiry.len()
    }
}

/// A contact URI in a form where equal URIs compare equal: the user part is
/// case-sensitive and everything else is not (RFC 3261 §19.1.4). Parameter
/// order and escaping are not normalised; phones resend their Contact
/// verbatim, and a mismatch only costs a duplicate binding until it lapses.
fn contact_key(uri: &str) -> String {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_ascii_lowercase();
    };
    let scheme = scheme.to_ascii_lowercase();
    match rest.split_once('@') {
        Some((user, host)) => format!("{scheme}:{user}@{}", host.to_ascii_lowercase()),
        None => format!("{scheme}:{}", rest.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::ha1;

    const REALM: &str = "switchboard";
    const T0: u64 = 1_000_000;

    struct World {
        reg: Registrar,
        accounts: AccountMap,
        tenants: TenantResolver,
    }

    fn account(tenant: &str, user: &str, password: &str) -> Account {
        Account {
            tenant: tenant.into(),
            username: user.into(),
            credential: StoredCredential::new(user, REALM, password),
        }
    }

    fn world(config: RegistrarConfig) -> World {
        let mut accounts = AccountMap::new();
        accounts.insert(account("acme", "1001", "pw1001"));
        accounts.insert(account("acme", "1002", "pw1002"));
        let mut tenants = TenantResolver::new();
        tenants.add_domain("acme.example", "acme");
        World {
            reg: Registrar::new(config, b"0123456789abcdef".to_vec(), 99),
            accounts,
            tenants,
        }
    }

    fn contact(uri: &str) -> ContactEntry {
        ContactEntry {
            uri: uri.into(),
            expires_param: None,
            q: None,
            raw: format!("<{uri}>"),
        }
    }

    fn request(user: &str, cseq: u32, contacts: Vec<ContactEntry>, now: u64) -> RegisterRequest {
        RegisterRequest {
            domain: "acme.example".into(),
            to_user: user.into(),
            call_id: "call-1".into(),
            cseq,
            contacts,
            star: false,
            expires_header: None,
            authorization: None,
            source: "198.51.100.7:5062".parse().unwrap(),
            transport: "UDP".into(),
            now,
        }
    }

    fn nonce_of(outcome: &RegisterOutcome) -> String {
        let RegisterOutcome::Challenge {
            www_authenticate, ..
        } = outcome
        else {
            panic!("not a challenge: {outcome:?}");
        };
        let v = &www_authenticate[0];
        let start = v.find("nonce=\"").unwrap() + 7;
        v[start..start + v[start..].find('"').unwrap()].to_owned()
    }

    /// What a phone sends back: `qop=auth` with the given nc.
    fn authorization(alg: Algorithm, user: &str, password: &str, nonce: &str, nc: u32) -> String {
        signed("REGISTER", alg, user, password, nonce, nc)
    }

    /// The same for a request of `method`.
    fn signed(
        method: &str,
        alg: Algorithm,
        user: &str,
        password: &str,
        nonce: &str,
        nc: u32,
    ) -> String {
        let h = |s: String| alg.hash(s.as_bytes());
        let ha2 = h(format!("{method}:sip:acme.example"));
        let response = h(format!(
            "{}:{nonce}:{nc:08x}:cn:auth:{ha2}",
            ha1(alg, user, REALM, password)
        ));
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"sip:acme.example\", response=\"{response}\", algorithm={alg}, \
             qop=auth, nc={nc:08x}, cnonce=\"cn\""
        )
    }

    impl World {
        fn send(&mut self, req: &RegisterRequest) -> RegisterOutcome {
            self.reg.handle_register(req, &self.accounts, &self.tenants)
        }

        /// Challenges, then sends `req` with credentials for its To user.
        fn register(&mut self, mut req: RegisterRequest) -> RegisterOutcome {
            let challenge = self.send(&request(&req.to_user, 0, vec![], req.now));
            let nonce = nonce_of(&challenge);
            let password = format!("pw{}", req.to_user);
            req.authorization = Some(authorization(
                Algorithm::Md5,
                &req.to_user,
                &password,
                &nonce,
                1,
            ));
            self.send(&req)
        }
    }

    fn bindings(outcome: RegisterOutcome) -> Vec<Binding> {
        match outcome {
            RegisterOutcome::Ok { bindings } => bindings,
            other => panic!("not a 200: {other:?}"),
        }
    }

    #[test]
    fn no_credentials_get_a_challenge_in_the_configured_algorithms() {
        let mut w = world(RegistrarConfig::default());
        let out = w.send(&request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0));
        let RegisterOutcome::Challenge {
            www_authenticate,
            stale,
        } = &out
        else {
            panic!("{out:?}")
        };
        assert!(!stale);
        assert_eq!(www_authenticate.len(), 1);
        assert!(www_authenticate[0].contains("algorithm=MD5"));
        assert_eq!(out.status(), (401, "Unauthorized"));

        let mut w = world(RegistrarConfig {
            challenge_algorithms: Algorithm::PREFERENCE.to_vec(),
            ..RegistrarConfig::default()
        });
        let out = w.send(&request("1001", 1, vec![], T0));
        let RegisterOutcome::Challenge {
            www_authenticate, ..
        } = &out
        else {
            panic!("{out:?}")
        };
        assert_eq!(www_authenticate.len(), 2);
        assert!(www_authenticate[0].contains("algorithm=SHA-256"));
        assert!(www_authenticate[1].contains("algorithm=MD5"));
        assert!(www_authenticate.iter().all(|v| v.contains("qop=\"auth\"")));
    }

    #[test]
    fn both_algorithms_register_and_bindings_remember_the_source() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let mut w = world(RegistrarConfig::default());
            let nonce = nonce_of(&w.send(&request("1001", 1, vec![], T0)));
            let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1:5062")], T0 + 1);
            req.authorization = Some(authorization(alg, "1001", "pw1001", &nonce, 1));
            let b = bindings(w.send(&req));
            assert_eq!(b.len(), 1, "{alg}");
            assert_eq!(b[0].expires, 3600);
            assert_eq!(
                b[0].contact_header(),
                "<sip:1001@10.0.0.1:5062>;expires=3600"
            );
            let live = w.reg.lookup("acme", "1001", T0 + 2);
            assert_eq!(live.len(), 1);
            assert_eq!(live[0].source, "198.51.100.7:5062".parse().unwrap());
            assert_eq!(live[0].transport, "UDP");
            assert_eq!(live[0].raw, "<sip:1001@10.0.0.1:5062>");
            assert_eq!(live[0].expires, 3599);
        }
    }

    #[test]
    fn requests_go_to_the_contact_on_the_same_host_and_to_the_source_behind_a_nat() {
        let binding = |contact: &str, transport: &str| Binding {
            contact: contact.into(),
            raw: format!("<{contact}>"),
            source: "198.51.100.7:40000".parse().unwrap(),
            transport: transport.into(),
            q: None,
            expires_at: T0,
            expires: 60,
            call_id: "c".into(),
            cseq: 1,
        };
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Same IP, another port: the phone listens where its contact says.
        let same = binding("sip:1001@198.51.100.7:5062;ob", "UDP");
        assert_eq!(same.destination(), at("198.51.100.7:5062"));
        assert_eq!(
            binding("sip:1001@198.51.100.7", "UDP").destination(),
            at("198.51.100.7:5060")
        );
        // Behind a NAT, over TCP, or asking for TCP: the source.
        for (contact, transport) in [
            ("sip:1001@10.0.0.1:5062", "UDP"),
            ("sip:1001@phone.example.com:5062", "UDP"),
            ("sip:1001@198.51.100.7:5062", "TCP"),
            ("sip:1001@198.51.100.7:5062;transport=tcp", "UDP"),
            ("tel:+15551234", "UDP"),
        ] {
            let b = binding(contact, transport);
            assert_eq!(b.destination(), at("198.51.100.7:40000"), "{contact}");
        }
    }

    #[test]
    fn the_rfc4475_unknown_scheme_and_unknown_algorithms_are_challenged() {
        let mut w = world(RegistrarConfig::default());
        // RFC 4475 §3.3.7, TC_REGAUT01_V.
        let mut req = request("1001", 9338, vec![], T0);
        req.authorization = Some("NoOneKnowsThisScheme opaque-data=here".into());
        assert!(matches!(
            w.send(&req),
            RegisterOutcome::Challenge { stale: false, .. }
        ));
        let nonce = nonce_of(&w.send(&request("1001", 1, vec![], T0)));
        let a = authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 1)
            .replace("algorithm=MD5", "algorithm=SHA-512-256");
        req.authorization = Some(a);
        assert!(matches!(
            w.send(&req),
            RegisterOutcome::Challenge { stale: false, .. }
        ));
        req.authorization = Some("Digest username=\"1001\", realm=".into());
        assert_eq!(w.send(&req).status().0, 400);
        // A realm not ours.
        let a = authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 1)
            .replace("realm=\"switchboard\"", "realm=\"proxy.example\"");
        req.authorization = Some(a);
        assert!(matches!(
            w.send(&req),
            RegisterOutcome::Challenge { stale: false, .. }
        ));
    }

    #[test]
    fn stale_and_forged_nonces() {
        let mut w = world(RegistrarConfig::default());
        let nonce = nonce_of(&w.send(&request("1001", 1, vec![], T0)));
        let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0 + 301);
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 1));
        let out = w.send(&req);
        let RegisterOutcome::Challenge {
            www_authenticate,
            stale: true,
        } = &out
        else {
            panic!("{out:?}")
        };
        assert!(www_authenticate[0].ends_with(", stale=true"));
        // The new nonce works.
        let fresh = nonce_of(&out);
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "pw1001", &fresh, 1));
        assert_eq!(w.send(&req).status().0, 200);

        let forged = format!("{:016x}{}", T0 + 301, &nonce[16..]);
        req.cseq = 3;
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "pw1001", &forged, 1));
        assert!(matches!(
            w.send(&req),
            RegisterOutcome::Challenge { stale: false, .. }
        ));
    }

    #[test]
    fn wrong_password_unknown_user_and_someone_elses_aor_are_forbidden() {
        let mut w = world(RegistrarConfig::default());
        let nonce = nonce_of(&w.send(&request("1001", 1, vec![], T0)));
        let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0);
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "wrong", &nonce, 1));
        assert_eq!(w.send(&req).status(), (403, "Forbidden"));

        let mut req = request("9999", 2, vec![contact("sip:9999@10.0.0.1")], T0);
        req.authorization = Some(authorization(Algorithm::Md5, "9999", "pw9999", &nonce, 2));
        assert_eq!(w.send(&req).status(), (403, "Forbidden"));

        // 1002's own good credentials do not register 1001.
        let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0);
        req.authorization = Some(authorization(Algorithm::Md5, "1002", "pw1002", &nonce, 3));
        assert_eq!(
            w.send(&req).status(),
            (403, "Credentials Do Not Match The AOR")
        );
        assert!(w.reg.lookup("acme", "1001", T0).is_empty());
        // A failed attempt consumed no nonce count: the right password
        // with nc=1 still works.
        let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0);
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 1));
        assert_eq!(w.send(&req).status().0, 200);
    }

    #[test]
    fn an_invite_is_authenticated_for_its_from_account_and_its_method() {
        let mut w = world(RegistrarConfig::default());
        fn asked(authorization: Option<&str>) -> Asked<'_> {
            Asked {
                method: "INVITE",
                domain: "acme.example",
                user: "1001",
                authorization,
                now: T0,
            }
        }
        let World {
            reg,
            accounts,
            tenants,
        } = &mut w;
        let Authentication::Challenge { headers, stale } =
            reg.authenticate(&asked(None), accounts, tenants)
        else {
            panic!("no challenge");
        };
        assert!(!stale);
        let nonce = nonce_of(&RegisterOutcome::Challenge {
            www_authenticate: headers,
            stale,
        });
        // A response computed for REGISTER does not do for an INVITE.
        let register = authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 1);
        assert_eq!(
            reg.authenticate(&asked(Some(&register)), accounts, tenants),
            Authentication::Forbidden {
                reason: "Forbidden"
            }
        );
        // 1002's good credentials do not call as 1001.
        let other = signed("INVITE", Algorithm::Md5, "1002", "pw1002", &nonce, 1);
        assert_eq!(
            reg.authenticate(&asked(Some(&other)), accounts, tenants),
            Authentication::Forbidden {
                reason: "Credentials Do Not Match The AOR"
            }
        );
        let own = signed("INVITE", Algorithm::Md5, "1001", "pw1001", &nonce, 1);
        assert_eq!(
            reg.authenticate(&asked(Some(&own)), accounts, tenants),
            Authentication::Authenticated {
                tenant: "acme".into()
            }
        );
    }

    #[test]
    fn a_replayed_nonce_count_is_challenged_and_a_higher_one_accepted() {
        let mut w = world(RegistrarConfig::default());
        let nonce = nonce_of(&w.send(&request("1001", 1, vec![], T0)));
        let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0);
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 1));
        assert_eq!(w.send(&req).status().0, 200);
        // The same request again, byte for byte (with a higher CSeq an
        // attacker cannot sign: the CSeq is not covered by the digest).
        req.cseq = 3;
        assert!(matches!(
            w.send(&req),
            RegisterOutcome::Challenge { stale: true, .. }
        ));
        req.authorization = Some(authorization(Algorithm::Md5, "1001", "pw1001", &nonce, 2));
        assert_eq!(w.send(&req).status().0, 200);
    }

    #[test]
    fn several_contacts_refresh_and_removal() {
        let mut w = world(RegistrarConfig::default());
        let mut req = request(
            "1001",
            1,
            vec![
                contact("sip:1001@10.0.0.1"),
                ContactEntry {
                    expires_param: Some(120),
                    q: Some(0.5),
                    ..contact("sip:1001@10.0.0.2")
                },
            ],
            T0,
        );
        req.expires_header = Some(600);
        let b = bindings(w.register(req));
        assert_eq!(
            b.iter().map(|b| (b.expires, b.q)).collect::<Vec<_>>(),
            vec![(600, None), (120, Some(0.5))]
        );
        assert_eq!(
            b[1].contact_header(),
            "<sip:1001@10.0.0.2>;expires=120;q=0.5"
        );
        // Another phone of the same account, another Call-ID; the 200
        // lists all three (step 8).
        let mut req = request("1001", 1, vec![contact("sip:1001@10.0.0.3")], T0 + 10);
        req.call_id = "call-2".into();
        let b = bindings(w.register(req));
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].expires, 590);
        assert_eq!(b[2].expires, 3600);
        // Refresh of the first, URI in another case outside the user part.
        let mut req = request("1001", 2, vec![contact("SIP:1001@10.0.0.1")], T0 + 20);
        req.expires_header = Some(900);
        let b = bindings(w.register(req));
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[0].contact.as_str(), b[0].expires),
            ("SIP:1001@10.0.0.1", 900)
        );
        // A user part in another case is another contact.
        assert_ne!(contact_key("sip:ab@h"), contact_key("sip:AB@h"));
        // expires=0 removes one.
        let req = request(
            "1001",
            3,
            vec![ContactEntry {
                expires_param: Some(0),
                ..contact("sip:1001@10.0.0.2")
            }],
            T0 + 30,
        );
        let b = bindings(w.register(req));
        assert_eq!(
            b.iter().map(|b| b.contact.as_str()).collect::<Vec<_>>(),
            vec!["SIP:1001@10.0.0.1", "sip:1001@10.0.0.3"]
        );
        // Removing a contact that is not bound is fine.
        let mut req = request("1001", 4, vec![contact("sip:1001@10.9.9.9")], T0 + 30);
        req.expires_header = Some(0);
        assert_eq!(bindings(w.register(req)).len(), 2);
        assert_eq!(w.reg.binding_count(), 2);
    }

    #[test]
    fn lookup_orders_by_q() {
        let mut w = world(RegistrarConfig::default());
        let req = request(
            "1001",
            1,
            vec![
                ContactEntry {
                    q: Some(0.1),
                    ..contact("sip:a@h")
                },
                contact("sip:b@h"),
                ContactEntry {
                    q: Some(0.7),
                    ..contact("sip:c@h")
                },
            ],
            T0,
        );
        w.register(req);
        let order: Vec<String> = w
            .reg
            .lookup("acme", "1001", T0)
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(order, vec!["sip:b@h", "sip:c@h", "sip:a@h"]);
    }

    #[test]
    fn expires_bounds() {
        let mut w = world(RegistrarConfig::default());
        let mut req = request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0);
        req.expires_header = Some(30);
        assert_eq!(
            w.register(req.clone()),
            RegisterOutcome::IntervalTooBrief { min_expires: 60 }
        );
        assert_eq!(
            RegisterOutcome::IntervalTooBrief { min_expires: 60 }.status(),
            (423, "Interval Too Brief")
        );
        // The contact parameter wins over the header.
        req.contacts[0].expires_param = Some(60);
        req.cseq = 2;
        assert_eq!(bindings(w.register(req.clone()))[0].expires, 60);
        // Longer than allowed is shortened.
        req.contacts[0].expires_param = Some(86_400);
        req.cseq = 3;
        assert_eq!(bindings(w.register(req))[0].expires, 3600);
        // Step 7: no 423 at one hour or more, whatever the minimum.
        let mut w = world(RegistrarConfig {
            min_expires: 7200,
            max_expires: 7200,
            ..RegistrarConfig::default()
        });
        let mut req = request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0);
        req.expires_header = Some(3600);
        assert_eq!(bindings(w.register(req.clone()))[0].expires, 3600);
        req.expires_header = Some(3599);
        req.cseq = 2;
        assert_eq!(
            w.register(req),
            RegisterOutcome::IntervalTooBrief { min_expires: 7200 }
        );
    }

    #[test]
    fn a_failing_contact_aborts_the_whole_request() {
        let mut w = world(RegistrarConfig::default());
        w.register(request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0));
        let req = request(
            "1001",
            2,
            vec![
                ContactEntry {
                    expires_param: Some(0),
                    ..contact("sip:1001@10.0.0.1")
                },
                contact("sip:1001@10.0.0.2"),
                ContactEntry {
                    expires_param: Some(5),
                    ..contact("sip:1001@10.0.0.3")
                },
            ],
            T0,
        );
        assert_eq!(w.register(req).status().0, 423);
        let live = w.reg.lookup("acme", "1001", T0);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].contact, "sip:1001@10.0.0.1");
        let bad_q = request(
            "1001",
            3,
            vec![ContactEntry {
                q: Some(1.5),
                ..contact("sip:1001@10.0.0.2")
            }],
            T0,
        );
        assert_eq!(w.register(bad_q).status(), (400, "Bad q Value"));
    }

    #[test]
    fn call_id_and_cseq_ordering() {
        let mut w = world(RegistrarConfig::default());
        w.register(request("1001", 10, vec![contact("sip:1001@10.0.0.1")], T0));
        // Same Call-ID, same or lower CSeq: 500, binding untouched.
        for cseq in [10, 9] {
            let mut req = request("1001", cseq, vec![contact("sip:1001@10.0.0.1")], T0 + 1);
            req.expires_header = Some(0);
            assert_eq!(w.register(req), RegisterOutcome::OutOfOrder);
            assert_eq!(RegisterOutcome::OutOfOrder.status().0, 500);
        }
        assert_eq!(w.reg.lookup("acme", "1001", T0 + 1).len(), 1);
        // Another Call-ID (the phone rebooted) may have any CSeq.
        let mut req = request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0 + 2);
        req.call_id = "after-reboot".into();
        let b = bindings(w.register(req));
        assert_eq!((b[0].call_id.as_str(), b[0].cseq), ("after-reboot", 1));
        // A query (no Contact) changes nothing and needs no ordering.
        let b = bindings(w.register(request("1001", 1, vec![], T0 + 3)));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].expires, 3599);
    }

    #[test]
    fn contact_star() {
        let mut w = world(RegistrarConfig::default());
        w.register(request(
            "1001",
            5,
            vec![contact("sip:1001@10.0.0.1"), contact("sip:1001@10.0.0.2")],
            T0,
        ));
        let mut star = request("1001", 6, vec![], T0 + 1);
        star.star = true;
        star.expires_header = Some(60);
        assert_eq!(
            w.register(star.clone()).status(),
            (400, "Contact * Requires Expires: 0")
        );
        star.expires_header = None;
        assert_eq!(w.register(star.clone()).status().0, 400);
        let mut mixed = star.clone();
        mixed.expires_header = Some(0);
        mixed.contacts = vec![contact("sip:1001@10.0.0.1")];
        assert_eq!(
            w.register(mixed).status(),
            (400, "Contact * Must Stand Alone")
        );
        // Step 6: an older request of the same Call-ID fails.
        star.expires_header = Some(0);
        star.cseq = 5;
        assert_eq!(w.register(star.clone()), RegisterOutcome::OutOfOrder);
        assert_eq!(w.reg.lookup("acme", "1001", T0 + 1).len(), 2);
        star.cseq = 6;
        assert!(bindings(w.register(star)).is_empty());
        assert!(w.reg.lookup("acme", "1001", T0 + 1).is_empty());
        assert_eq!(w.reg.next_expiry(), None);
        assert_eq!(w.reg.binding_count(), 0);
    }

    #[test]
    fn too_many_contacts() {
        let mut w = world(RegistrarConfig {
            max_bindings_per_aor: 2,
            ..RegistrarConfig::default()
        });
        let many = (0..3)
            .map(|i| contact(&format!("sip:1001@10.0.0.{i}")))
            .collect();
        assert_eq!(
            w.register(request("1001", 1, many, T0)).status(),
            (403, "Too Many Registered Contacts")
        );
        assert!(w.reg.lookup("acme", "1001", T0).is_empty());
    }

    #[test]
    fn bindings_lapse_in_simulated_time() {
        let mut w = world(RegistrarConfig::default());
        let mut a = request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0);
        a.expires_header = Some(60);
        w.register(a);
        let mut b = request("1002", 1, vec![contact("sip:1002@10.0.0.2")], T0 + 5);
        b.expires_header = Some(120);
        w.register(b);
        assert_eq!(w.reg.next_expiry(), Some(T0 + 60));
        assert_eq!(w.reg.lookup("acme", "1001", T0 + 59)[0].expires, 1);
        // Lapsed bindings are not returned even before `expire` runs.
        assert!(w.reg.lookup("acme", "1001", T0 + 60).is_empty());
        assert_eq!(w.reg.binding_count(), 2);
        // Drive the timer to each deadline.
        let mut fired = Vec::new();
        while let Some(at) = w.reg.next_expiry() {
            w.reg.expire(at);
            fired.push((at, w.reg.binding_count()));
        }
        assert_eq!(fired, vec![(T0 + 60, 1), (T0 + 125, 0)]);
        // A refresh moves the deadline.
        let mut a = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0 + 200);
        a.expires_header = Some(60);
        w.register(a);
        let mut a = request("1001", 3, vec![contact("sip:1001@10.0.0.1")], T0 + 230);
        a.expires_header = Some(600);
        w.register(a);
        assert_eq!(w.reg.next_expiry(), Some(T0 + 830));
        w.reg.expire(T0 + 260);
        assert_eq!(w.reg.binding_count(), 1);
        // A REGISTER for an AOR whose bindings lapsed starts afresh, even
        // with the Call-ID and an old CSeq of the lapsed one.
        let mut a = request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0 + 900);
        a.expires_header = Some(60);
        assert_eq!(bindings(w.register(a)).len(), 1);
        assert_eq!(w.reg.binding_count(), 1);
        assert_eq!(w.reg.next_expiry(), Some(T0 + 960));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register {
            user: u8,
            contact: u8,
            expires: u64,
            call: u8,
        },
        Star {
            user: u8,
            call: u8,
        },
        Advance(u64),
        Expire,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..3, 0u8..4, prop_oneof![Just(0u64), 60u64..200], 0u8..2).prop_map(
                |(user, contact, expires, call)| Op::Register {
                    user,
                    contact,
                    expires,
                    call
                }
            ),
            (0u8..3, 0u8..2).prop_map(|(user, call)| Op::Star { user, call }),
            (0u64..150).prop_map(Op::Advance),
            Just(Op::Expire),
        ]
    }

    proptest::proptest! {
        /// Whatever the sequence, the expiry index matches the bindings,
        /// lookups return only live bindings, and `next_expiry` is exact.
        #[test]
        fn binding_index_stays_consistent(ops in proptest::collection::vec(op(), 1..60)) {
            let mut reg = Registrar::new(RegistrarConfig::default(), b"k".to_vec(), 0);
            let mut now = T0;
            let mut cseq = 0;
            for op in ops {
                cseq += 1;
                match op {
                    Op::Register { user, contact, expires, call } => {
                        let mut req = request(
                            &user.to_string(),
                            cseq,
                            vec![contact_n(contact)],
                            now,
                        );
                        req.call_id = format!("c{call}");
                        req.expires_header = Some(expires);
                        let _ = reg.apply("t", &req);
                    }
                    Op::Star { user, call } => {
                        let mut req = request(&user.to_string(), cseq, vec![], now);
                        req.call_id = format!("c{call}");
                        req.star = true;
                        req.expires_header = Some(0);
                        let _ = reg.apply("t", &req);
                    }
                    Op::Advance(s) => now += s,
                    Op::Expire => reg.expire(now),
                }
                let total: usize = reg.bindings.values().map(Vec::len).sum();
                proptest::prop_assert_eq!(total, reg.by_expiry.len());
                proptest::prop_assert!(reg.bindings.values().all(|l| !l.is_empty()));
                for ((t, u), list) in &reg.bindings {
                    for e in list {
                        let key = (e.expires_at, (t.clone(), u.clone()), e.key.clone());
                        proptest::prop_assert!(reg.by_expiry.contains(&key));
                    }
                }
                let earliest = reg.bindings.values().flatten().map(|e| e.expires_at).min();
                proptest::prop_assert_eq!(reg.next_expiry(), earliest);
                for user in 0..3u8 {
                    for b in reg.lookup("t", &user.to_string(), now) {
                        proptest::prop_assert!(b.expires_at > now && b.expires > 0);
                    }
                }
            }
        }
    }

    fn contact_n(n: u8) -> ContactEntry {
        contact(&format!("sip:u@10.0.0.{n}"))
    }

    #[test]
    fn tenants_by_domain() {
        let mut w = world(RegistrarConfig::default());
        // One tenant: any domain is it.
        let mut req = request("1001", 1, vec![contact("sip:1001@10.0.0.1")], T0);
        req.domain = "192.0.2.10".into();
        assert_eq!(w.register(req).status().0, 200);
        // Two tenants: only their domains, in any case.
        w.tenants.add_domain("globex.example.", "globex");
        w.accounts.insert(account("globex", "1001", "pw1001"));
        let mut req = request("1001", 2, vec![contact("sip:1001@10.0.0.1")], T0);
        req.domain = "192.0.2.10".into();
        assert_eq!(w.send(&req), RegisterOutcome::NotFound);
        assert_eq!(RegisterOutcome::NotFound.status().0, 404);
        let mut req = request("1001", 1, vec![contact("sip:1001@10.8.8.8")], T0);
        req.domain = "GLOBEX.example".into();
        req.call_id = "globex-call".into();
        assert_eq!(w.register(req).status().0, 200);
        // Same username, separate AORs.
        assert_eq!(
            w.reg.lookup("acme", "1001", T0)[0].contact,
            "sip:1001@10.0.0.1"
        );
        assert_eq!(
            w.reg.lookup("globex", "1001", T0)[0].contact,
            "sip:1001@10.8.8.8"
        );

        let mut r = TenantResolver::new();
        assert_eq!(r.resolve("any"), None);
        r.add_tenant("solo");
        assert_eq!(r.resolve("any"), Some("solo"));
        // A tenant's domains replaced: the old ones are nobody's.
        r.set_domains("solo", &["a.example".into()]);
        r.set_domains("duo", &["b.example".into()]);
        assert_eq!(r.resolve("A.example"), Some("solo"));
        r.set_domains("solo", &["c.example".into()]);
        assert_eq!(r.resolve("a.example"), None);
        assert_eq!(r.resolve("c.example"), Some("solo"));
        assert_eq!(r.resolve("b.example"), Some("duo"));
    }
}
