//! Sign-in and who is calling.
//!
//! A token is `v1.<claims>.<mac>`: the claims (tenant, user, roles, bound
//! agent, expiry) as hex-encoded JSON, and their HMAC-SHA256 under the
//! tenant's [`SigningKey`], hex. The key lives in the store, so a token
//! issued by one node is accepted by every node of the cluster, and no
//! node keeps sessions. Browsers get the same token in an HttpOnly,
//! SameSite=Strict cookie. A token cannot be revoked before it expires:
//! a disabled user or a changed role takes effect at the next sign-in, at
//! the latest [`TOKEN_TTL`] later; replacing the tenant's signing key
//! signs everyone out at once.
//!
//! Passwords are kept as argon2id PHC strings.

use crate::common::{check_len, check_text, now};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::mirror::Role;
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use switchboard_storage::model::{self as m, AgentId, SigningKey, TenantId, Timestamp, User};
use switchboard_storage::Store;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a token is good for.
pub const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "sb_session";

type HmacSha256 = Hmac<Sha256>;

/// Who is calling: from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: String,
    pub roles: Vec<Role>,
    /// The agent this user works as, if bound.
    pub agent: Option<AgentId>,
}

impl Caller {
    pub fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller has one of `roles`; `action` says what was
    /// asked, for the message.
    pub fn require(&self, roles: &[Role], action: &str) -> ApiResult<()> {
        if roles.iter().any(|r| self.is(*r)) {
            return Ok(());
        }
        let need: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        let have: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        Err(ApiError::forbidden(format!(
            "{action} needs the role {}; you have {}",
            need.join(" or "),
            if have.is_empty() {
                "no role".to_owned()
            } else {
                have.join(", ")
            }
        )))
    }

    /// Only an agent role and nothing that sees more: what it may see is
    /// limited to its own calls and plans.
    pub fn agent_only(&self) -> bool {
        self.is(Role::Agent)
            && !self.is(Role::TenantAdmin)
            && !self.is(Role::Supervisor)
            && !self.is(Role::QaInspector)
    }
}

/// What a token says, before the MAC.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Tenant.
    t: TenantId,
    /// User.
    u: String,
    /// Roles.
    r: Vec<Role>,
    /// Bound agent.
    a: Option<AgentId>,
    /// Expiry, ms since the epoch.
    x: u64,
    /// Issued, ms since the epoch (a token is void if its user signed
    /// out after).
    #[serde(default)]
    i: u64,
}

/// The tenants' signing keys, read from the store once per node.
#[derive(Default)]
pub struct TokenKeys {
    cache: Mutex<HashMap<TenantId, Arc<Vec<u8>>>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys { .. }")
    }
}

impl TokenKeys {
    fn cached(&self, tenant: &TenantId) -> Option<Arc<Vec<u8>>> {
        self.cache.lock().ok()?.get(tenant).cloned()
    }

    fn remember(&self, tenant: &TenantId, key: Arc<Vec<u8>>) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(tenant.clone(), key);
        }
    }

    /// The tenant's key; created (once, whichever node is first) if
    /// `create`.
    async fn key(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        create: bool,
    ) -> ApiResult<Option<Arc<Vec<u8>>>> {
        if let Some(k) = self.cached(tenant) {
            return Ok(Some(k));
        }
        let mut doc = store.get::<SigningKey>(tenant, SigningKey::ID).await?;
        if doc.is_none() && create {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            store
                .create_if_absent(&SigningKey {
                    tenant: tenant.clone(),
                    id: SigningKey::ID.into(),
                    key: hex::encode(key),
                    created: now(),
                })
                .await?;
            // Another node may have been first: use what the store kept.
            doc = store.get::<SigningKey>(tenant, SigningKey::ID).await?;
        }
        let Some(doc) = doc else { return Ok(None) };
        let key = hex::decode(&doc.record.key)
            .map_err(|e| ApiError::internal("the stored signing key is not hex", e))?;
        let key = Arc::new(key);
        self.remember(tenant, key.clone());
        Ok(Some(key))
    }

    /// Forgets cached keys (after a key was replaced).
    pub fn forget(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }
}

fn mac(key: &[u8], payload: &[u8]) -> ApiResult<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key)
        .map_err(|e| ApiError::internal("cannot key the token MAC", e))?;
    m.update(payload);
    Ok(m)
}

/// Issues a token for `caller`, good until `expires`.
async fn issue(state: &AppState, caller: &Caller, expires: Timestamp) -> ApiResult<String> {
    let key = state
        .keys
        .key(&*state.store, &caller.tenant, true)
        .await?
        .ok_or_else(|| ApiError::internal("no signing key", "created but not found"))?;
    let claims = Claims {
        t: caller.tenant.clone(),
        u: caller.user.clone(),
        r: caller.roles.clone(),
        a: caller.agent.clone(),
        x: expires.0,
        i: now().0,
    };
    let payload =
        serde_json::to_vec(&claims).map_err(|e| ApiError::internal("cannot encode a token", e))?;
    let tag = mac(&key, &payload)?.finalize().into_bytes();
    Ok(format!("v1.{}.{}", hex::encode(&payload), hex::encode(tag)))
}

/// Checks a token: its MAC under its tenant's key, and its expiry.
pub async fn verify(state: &AppState, token: &str) -> ApiResult<Caller> {
    let bad = || ApiError::unauthorized("the token is not valid; sign in again");
    let mut parts = token.split('.');
    let (Some("v1"), Some(payload), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let payload = hex::decode(payload).map_err(|_| bad())?;
    let tag = hex::decode(tag).map_err(|_| bad())?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| bad())?;
    let key = state
        .keys
        .key(&*state.store, &claims.t, false)
        .await?
        .ok_or_else(bad)?;
    mac(&key, &payload)?.verify_slice(&tag).map_err(|_| bad())?;
    if claims.x <= now().0 {
        return Err(ApiError::unauthorized(
            "the token has expired; sign in again",
        ));
    }
    // The user as it is now: gone, disabled or signed out since the token
    // was issued voids it; its roles and agent are the current ones.
    let user = state
        .users
        .get(&*state.store, &claims.t, &claims.u)
        .await?
        .filter(|u| u.enabled)
        .ok_or_else(|| {
            ApiError::unauthorized("the user no longer exists or is disabled; sign in again")
        })?;
    if user.tokens_after.is_some_and(|after| claims.i < after.0) {
        return Err(ApiError::unauthorized(
            "this token was signed out; sign in again",
        ));
    }
    Ok(Caller {
        tenant: claims.t,
        user: claims.u,
        roles: user
            .roles
            .iter()
            .filter_map(|r| Role::from_model(*r))
            .collect(),
        agent: user.agent,
    })
}

/// Users as the token check last read them, kept for a moment: a
/// sign-out, a disabled user or a new password takes effect on this node
/// at once and on the others within [`UserCache::FRESH`].
#[derive(Debug, Default)]
pub struct UserCache {
    users: Mutex<HashMap<(TenantId, String), Read>>,
}

/// A user as read (`None`: not found), and when.
type Read = (Option<User>, std::time::Instant);

impl UserCache {
    pub const FRESH: Duration = Duration::from_secs(2);
    const SWEEP_AT: usize = 10_000;

    async fn get(&self, store: &dyn Store, tenant: &TenantId, id: &str) -> ApiResult<Option<User>> {
        let key = (tenant.clone(), id.to_owned());
        let now = std::time::Instant::now();
        if let Ok(users) = self.users.lock() {
            if let Some((u, at)) = users.get(&key) {
                if now.duration_since(*at) < Self::FRESH {
                    return Ok(u.clone());
                }
            }
        }
        let user = store.get::<User>(tenant, id).await?.map(|v| v.record);
        if let Ok(mut users) = self.users.lock() {
            if users.len() >= Self::SWEEP_AT {
                users.retain(|_, (_, at)| now.duration_since(*at) < Self::FRESH);
            }
            users.insert(key, (user.clone(), now));
        }
        Ok(user)
    }

    /// Forgets what was read of a user (it was just changed here).
    pub fn forget(&self, tenant: &TenantId, id: &str) {
        if let Ok(mut users) = self.users.lock() {
            users.remove(&(tenant.clone(), id.to_owned()));
        }
    }
}

/// The token of a request: `Authorization: Bearer …`, else the cookie.
fn token_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The caller of a request whose token may also come as a query
/// parameter (a browser's WebSocket cannot set headers).
pub async fn caller_of(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> ApiResult<Caller> {
    let token = token_of(headers).or(query_token).ok_or_else(|| {
        ApiError::unauthorized(
            "sign in first: send the token as 'Authorization: Bearer …' or ?token=",
        )
    })?;
    verify(state, token).await
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let token = token_of(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "sign in first: POST /api/v1/auth/login, then send the token as 'Authorization: Bearer …'",
            )
        })?;
        verify(state, token).await
    }
}

/// An argon2id PHC string of `password` (CPU-heavy: call it off the
/// async runtime, see [`hash_password_async`]).
pub fn hash_password(password: &str) -> Result<String, crate::SeedError> {
    let fail = |e: argon2::password_hash::Error| crate::SeedError::Hash(e.to_string());
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(fail)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(fail)?
        .to_string())
}

pub async fn hash_password_async(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal("password hashing stopped", e))?
        .map_err(|e| ApiError::internal("cannot hash the password", e))
}

/// Whether `password` matches the PHC string `hash`.
fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash no password matches in practice, checked against when the user
/// does not exist so that the answer takes as long as for a wrong
/// password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut pw = [0u8; 24];
        rand::rng().fill_bytes(&mut pw);
        hash_password(&hex::encode(pw)).unwrap_or_default()
    })
}

/// Passwords: 8 to 128 characters.
pub fn check_password(field: &str, password: &str) -> ApiResult<()> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(ApiError::field(field, "a password has 8 to 128 characters"));
    }
    Ok(())
}

/// Signing in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant; may be left out when the server has exactly one.
    pub tenant: Option<String>,
    /// The login name.
    pub user: String,
    pub password: String,
}

/// The signed-in user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    pub tenant: String,
    pub user: String,
    pub roles: Vec<Role>,
    pub agent: Option<String>,
}

impl From<&Caller> for Me {
    fn from(c: &Caller) -> Me {
        Me {
            tenant: c.tenant.0.clone(),
            user: c.user.clone(),
            roles: c.roles.clone(),
            agent: c.agent.as_ref().map(|a| a.0.clone()),
        }
    }
}

/// A token and who it is for.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; browsers also get it as
    /// the `sb_session` cookie.
    pub token: String,
    pub token_type: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: u64,
    pub user: Me,
}

fn cookie(token: &str, max_age: u64) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .map_err(|e| ApiError::internal("cannot set the session cookie", e))
}

/// Signs in and returns a bearer token (also set as a cookie).
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "wrong user name or password", body = crate::error::ErrorBody),
        (status = 429, description = "too many wrong passwords for this user lately: try again after `Retry-After` seconds", body = crate::error::ErrorBody),
        (status = 422, description = "a field is missing or malformed", body = crate::error::ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    check_text("user", &req.user, 64)?;
    check_len("password", &req.password, 128)?;
    let tenant = match req.tenant.filter(|t| !t.is_empty()) {
        Some(t) => {
            check_len("tenant", &t, 64)?;
            TenantId(t)
        }
        None => {
            let mut all = state.store.list_tenants().await?;
            if all.len() != 1 {
                return Err(ApiError::field(
                    "tenant",
                    "this server has several tenants: say which one",
                ));
            }
            all.remove(0)
        }
    };
    let held = state
        .sign_ins
        .lock()
        .map_err(|_| ApiError::internal("sign-in limits", "poisoned"))?
        .check(&tenant, &req.user, std::time::Instant::now());
    if let Err(wait) = held {
        return Err(ApiError::too_many(
            format!(
                "too many wrong passwords for {:?}: try again in {} s",
                req.user,
                wait.as_secs().max(1)
            ),
            wait,
        ));
    }
    let user = state.store.get::<User>(&tenant, &req.user).await?;
    let hash = user
        .as_ref()
        .filter(|u| u.record.enabled)
        .and_then(|u| u.record.password_hash.clone());
    let password = req.password;
    let candidate = hash.clone().unwrap_or_else(|| decoy_hash().to_owned());
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &candidate))
        .await
        .map_err(|e| ApiError::internal("password check stopped", e))?;
    let (Some(user), true, true) = (user, hash.is_some(), matches) else {
        if let Ok(mut l) = state.sign_ins.lock() {
            l.failed(&tenant, &req.user, std::time::Instant::now());
        }
        return Err(ApiError::unauthorized("wrong user name or password"));
    };
    if let Ok(mut l) = state.sign_ins.lock() {
        l.succeeded(&tenant, &req.user);
    }
    let caller = Caller {
        tenant,
        user: user.record.id.clone(),
        roles: user
            .record
            .roles
            .iter()
            .filter_map(|r| Role::from_model(*r))
            .collect(),
        agent: user.record.agent.clone(),
    };
    let expires = now().after(TOKEN_TTL);
    let token = issue(&state, &caller, expires).await?;
    let mut res = axum::Json(LoginResponse {
        token: token.clone(),
        token_type: "Bearer".into(),
        expires_at: expires.0,
        user: Me::from(&caller),
    })
    .into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie(&token, TOKEN_TTL.as_secs())?);
    Ok(res)
}

/// Signs out: every token of the caller's user is void from now on (on
/// every node within a couple of seconds), and the session cookie is
/// cleared. Without a valid token it only clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(()),
    responses((status = 204, description = "signed out; the session cookie is cleared")))]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(caller) = match token_of(&headers) {
        Some(t) => verify(&state, t).await.ok(),
        None => None,
    } {
        let cutoff = now().after(Duration::from_millis(1));
        state
            .store
            .update::<User, _>(&caller.tenant, &caller.user, |u| {
                u.tokens_after = Some(cutoff);
                Ok(true)
            })
            .await?;
        state.users.forget(&caller.tenant, &caller.user);
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie("", 0)?);
    Ok(res)
}

/// Who the token is for.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses(
        (status = 200, body = Me),
        (status = 401, body = crate::error::ErrorBody),
    ))]
async fn me(caller: Caller) -> axum::Json<Me> {
    axum::Json(Me::from(&caller))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// The demo's admin user.
pub const DEMO_ADMIN: &str = "admin";
/// The demo admin's password: print it with a warning at start.
pub const DEMO_ADMIN_PASSWORD: &str = "demo-admin";

/// Creates the demo tenant's users (after
/// [`seed_demo`](switchboard_storage::seed::seed_demo)): `admin`
/// (password [`DEMO_ADMIN_PASSWORD`]; tenant admin and prompt reviewer,
/// so one person can try the whole workflow) and agents `1001`–`1003`
/// with the passwords of their SIP accounts (`pass1001`…). Users that
/// exist are left alone. Returns how many were created.
pub async fn seed_demo_users(store: &dyn Store) -> Result<usize, crate::SeedError> {
    let tenant = TenantId::from(switchboard_storage::seed::DEMO_TENANT);
    let mut users = vec![(
        DEMO_ADMIN.to_owned(),
        "Demo admin".to_owned(),
        DEMO_ADMIN_PASSWORD.to_owned(),
        vec![m::Role::TenantAdmin, m::Role::PromptReviewer],
        None,
    )];
    for n in 1001..=1003 {
        users.push((
            n.to_string(),
            format!("Agent {n}"),
            format!("pass{n}"),
            vec![m::Role::Agent],
            Some(AgentId(n.to_string())),
        ));
    }
    let mut created = 0;
    for (id, name, password, roles, agent) in users {
        if store.get::<User>(&tenant, &id).await?.is_some() {
            continue;
        }
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| crate::SeedError::Hash(e.to_string()))??;
        let made = store
            .create_if_absent(&User {
                tenant: tenant.clone(),
                id,
                display_name: name,
                roles,
                password_hash: Some(hash),
                agent,
                enabled: true,
                tokens_after: None,
            })
            .await?;
        created += usize::from(made);
    }
    Ok(created)
}
