//! Switchboard's REST API: the store-backed half.
//!
//! JSON under `/api/v1`, described by an OpenAPI 3.1 document generated
//! from the handlers and served at `/api/v1/openapi.json`:
//!
//! - `auth`: `POST /auth/login` (`{tenant, user, password}`) returns a
//!   bearer token, also set as an HttpOnly cookie for browsers; tokens are
//!   stateless HMAC-SHA256-signed claims under a per-tenant key kept in the
//!   store, so every node of a cluster accepts them.
//! - configuration (tenant admins write, supervisors read): tenant
//!   settings, users, SIP accounts, agents (device, groups), skill groups
//!   and members, custom statuses, hotlines and their IVR basic settings,
//!   the trunk, schedules, form schemas.
//! - `flows`: IVR flows saved as draft versions, validated (unreachable
//!   nodes, dangling branches, loops without exit, missing or unapproved
//!   prompts, unknown groups), published and rolled back.
//! - `prompts`: TTS and WAV prompts (WAV checked: PCM, at most 3 MB,
//!   converted to 8 kHz 16-bit mono), their audio, and the review
//!   (pending → approved / rejected with a reason, by a prompt reviewer).
//! - `crm`: customers with tenant-defined fields, looked up by number;
//!   tickets; the service summary of a call; contact plans; the timeline.
//! - `calls`: call records by day (with filters), by agent, by customer
//!   number, with opaque cursors; a call's recording.
//! - `reports`: the 24-hour per-hour report (tenant, group, agent) with
//!   answer rate and service level.
//!
//! Every request is scoped to the caller's tenant: another tenant's
//! object is a 404. Errors are `{code, message, details}` with the right
//! 4xx; validation errors name the field in `details`. After every
//! configuration write the node is told through [`ConfigHooks`], so it
//! can reload the actors concerned.
//!
//! The live half (agent sign-in and status, WebSocket events, screen
//! pop, live monitors, `/metrics`) is not here: it plugs in with
//! [`router_with`], its routes using [`Caller`] for authentication and
//! [`ApiError`] for answers, and appearing in the same OpenAPI document.
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchboard_http::{serve, AppState};
//! use switchboard_storage::EmbeddedStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::path::PathBuf::from("/var/lib/switchboard");
//! let store = Arc::new(EmbeddedStore::open(&dir)?);
//! let state = AppState::new(store, dir);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod calls;
pub mod cluster;
mod common;
mod config;
mod crm;
mod error;
mod extract;
mod flows;
mod limit;
pub mod live;
mod metrics;
mod mirror;
mod prompts;
mod reports;
mod tts;

use axum::Router;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_storage::model::{ConfigKind, TenantId};
use switchboard_storage::{Store, StoreError};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{
    hash_password, seed_demo_users, verify as verify_token, Caller, TokenKeys, COOKIE, DEMO_ADMIN,
    DEMO_ADMIN_PASSWORD, TOKEN_TTL,
};
pub use common::Page;
pub use error::{ApiError, ApiResult, ErrorBody, FieldProblem};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use mirror::Role;
pub use tts::{EspeakNg, Speaker, TtsError};

/// Told after every successful configuration write, so the node can
/// reload what changed (an agent's actor, a group, a tenant's flows and
/// prompts) without a restart. Called on the request's task: return
/// quickly (send a message, do not reload inline).
pub trait ConfigHooks: Send + Sync {
    fn changed(&self, tenant: &TenantId, kind: ConfigKind, id: &str);
}

/// Hooks that do nothing (tests, or a node that reloads on its own).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl ConfigHooks for NoHooks {
    fn changed(&self, _: &TenantId, _: ConfigKind, _: &str) {}
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Recordings (`recordings/…`, as the node names them in call
    /// records) and uploaded or generated prompts (`prompts/<tenant>/…`)
    /// are under it; every node of a cluster must see the same directory.
    pub data_dir: PathBuf,
    /// The tenants' token-signing keys (the secret; kept in the store,
    /// cached here).
    pub keys: Arc<TokenKeys>,
    pub hooks: Arc<dyn ConfigHooks>,
    /// Speaks TTS prompts so they can be heard in review.
    pub speaker: Arc<dyn Speaker>,
    /// The registrar's digest realm: SIP account passwords are hashed
    /// for it.
    pub sip_realm: String,
    /// The node's actors, for the live endpoints (503 without).
    pub live: Option<Arc<dyn live::Live>>,
    /// The node's cluster membership, for `/cluster` (503 without).
    pub cluster: Option<Arc<dyn cluster::ClusterInfo>>,
    /// Fault injection, when the node allows it (`/cluster/fault`).
    pub faults: Option<Arc<dyn cluster::Faults>>,
    /// Failed sign-ins per user, on this node.
    pub sign_ins: Arc<std::sync::Mutex<limit::SignInLimits>>,
    /// Users as tokens were last checked against them.
    pub users: Arc<auth::UserCache>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("data_dir", &self.data_dir)
            .field("speaker", &self.speaker)
            .field("sip_realm", &self.sip_realm)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `store` and `data_dir`, with no hooks, espeak-ng for
    /// TTS and the registrar's default realm.
    pub fn new(store: Arc<dyn Store>, data_dir: PathBuf) -> AppState {
        AppState {
            store,
            data_dir,
            keys: Arc::new(TokenKeys::default()),
            hooks: Arc::new(NoHooks),
            speaker: Arc::new(EspeakNg),
            sip_realm: switchboard_media::sip::registrar::RegistrarConfig::default().realm,
            live: None,
            cluster: None,
            faults: None,
            sign_ins: Arc::default(),
            users: Arc::default(),
        }
    }

    /// The node's live operations (agent status, monitors, events).
    pub fn with_live(mut self, live: Arc<dyn live::Live>) -> AppState {
        self.live = Some(live);
        self
    }

    /// The node's cluster membership.
    pub fn with_cluster(mut self, cluster: Arc<dyn cluster::ClusterInfo>) -> AppState {
        self.cluster = Some(cluster);
        self
    }

    /// Lets an operator make actors panic on purpose.
    pub fn with_faults(mut self, faults: Arc<dyn cluster::Faults>) -> AppState {
        self.faults = Some(faults);
        self
    }

    pub fn with_hooks(mut self, hooks: Arc<dyn ConfigHooks>) -> AppState {
        self.hooks = hooks;
        self
    }

    pub fn with_speaker(mut self, speaker: Arc<dyn Speaker>) -> AppState {
        self.speaker = speaker;
        self
    }

    pub fn with_sip_realm(mut self, realm: impl Into<String>) -> AppState {
        self.sip_realm = realm.into();
        self
    }

    pub(crate) fn changed(&self, tenant: &TenantId, kind: ConfigKind, id: &str) {
        self.hooks.changed(tenant, kind, id);
    }
}

/// Why seeding the demo users (or hashing a password) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot hash a password: {0}")]
    Hash(String),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "Configuration, IVR flows, prompts, CRM, call records and reports of a Switchboard call center. Every request but sign-in needs a bearer token (or the session cookie); every object belongs to the caller's tenant.",
    ),
    modifiers(&Security),
    components(schemas(config::Form)),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth"), (name = "config"), (name = "flows"), (name = "prompts"),
        (name = "crm"), (name = "calls"), (name = "reports"), (name = "live"), (name = "cluster"),
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityScheme;
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(COOKIE))),
        );
    }
}

/// The store-backed routes, under `/api/v1`.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::routes())
        .merge(config::routes())
        .merge(flows::routes())
        .merge(prompts::routes())
        .merge(crm::routes())
        .merge(calls::routes())
        .merge(reports::routes())
        .merge(cluster::routes())
}

/// The API's OpenAPI document (the store-backed half).
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api_routes())
        .merge(live::routes())
        .into_openapi()
}

/// The whole API: the store-backed routes and the live ones (which
/// answer 503 while `state.live` is `None`).
pub fn router(state: AppState) -> Router {
    router_with(state, live::routes())
}

/// The API plus `extra` routes (the live half: agent operations,
/// WebSocket, `/metrics`…). `extra`'s paths are absolute (give
/// `/api/v1/…` yourself) and join the OpenAPI document; its handlers may
/// take [`Caller`] to authenticate and `State<AppState>`.
pub fn router_with(state: AppState, extra: OpenApiRouter<AppState>) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api_routes())
        .merge(extra)
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .route_layer(axum::middleware::from_fn(metrics::track))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then
/// finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves any router built with [`router_with`].
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
