//! Tenants, their users and roles, SIP accounts and form schemas.

use super::{config_record, AgentId, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A tenant (租户) and its call-center-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// The tenant's own id (a tenant record's tenant is itself).
    pub tenant: TenantId,
    pub name: String,
    /// Minutes east of UTC of the tenant's local time (China: 480); days
    /// and hours of records and reports are local.
    pub utc_offset_minutes: i32,
    /// Answered within this wait counts toward the service level (服务水平).
    pub service_level: Duration,
    /// Whether IVR and overflow may transfer to outside numbers.
    pub allow_external_transfer: bool,
    /// The survey flow played after the agent hangs up, if the tenant
    /// surveys (满意度).
    pub survey_flow: Option<String>,
    pub retention: Retention,
    /// A disabled tenant's calls are refused.
    pub enabled: bool,
    /// Callers waiting in a queue may ask to be called back (排队回拨);
    /// offered only while the tenant has a trunk to call back through.
    #[serde(default)]
    pub queue_callback: Option<QueueCallback>,
    /// After-call work following an outbound call the customer answered
    /// (inbound calls take their skill group's).
    #[serde(default)]
    pub outbound_wrap_up: Duration,
    /// The SIP domains the tenant's phones register under (the host of
    /// their AOR, e.g. `acme.example`). A node serving one tenant takes
    /// any domain for it; with several, each needs its own.
    #[serde(default)]
    pub sip_domains: Vec<String>,
}

/// How waiting callers are offered a callback: told `offer` on entering
/// the queue, they press `key`, hear `confirm` and may hang up; the call
/// keeps its place and, once an agent answers its offer, the caller's
/// number is dialed through the trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCallback {
    pub key: char,
    /// Prompt ids.
    pub offer: String,
    pub confirm: String,
}

impl Tenant {
    /// The record id of a tenant record.
    pub const ID: &'static str = "tenant";
}

impl super::ConfigRecord for Tenant {
    const KIND: super::ConfigKind = super::ConfigKind::Tenant;
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn id(&self) -> &str {
        Tenant::ID
    }
}

/// How long operational records are kept, in days. On ScyllaDB these are
/// the writes' TTLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub call_records_days: u32,
    pub status_log_days: u32,
    pub stats_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            call_records_days: 730,
            status_log_days: 400,
            stats_days: 1100,
        }
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    TenantAdmin,
    Supervisor,
    /// 质检员.
    QaInspector,
    Agent,
    /// Reviews prompts (语音审核) before they may be used in a flow.
    PromptReviewer,
    /// Telesales (电销) roles.
    TelesalesSuperAdmin,
    TelesalesAdmin,
    TelesalesMember,
}

/// A person who signs in to the web UI or the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub tenant: TenantId,
    /// The login name, unique within the tenant.
    pub id: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// A password hash in PHC string form; never the password.
    pub password_hash: Option<String>,
    /// The agent this user works as, if any (坐席绑定).
    pub agent: Option<AgentId>,
    pub enabled: bool,
    /// Tokens issued before this are void: the user signed out, or its
    /// password changed.
    #[serde(default)]
    pub tokens_after: Option<Timestamp>,
}
config_record!(User, User, id);

/// A SIP account a phone registers with (SIP话机).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccount {
    pub tenant: TenantId,
    /// The SIP user name.
    pub id: String,
    /// The digest HA1 (MD5 of `user:realm:password`), never the password.
    pub ha1: String,
    /// The digest realm the HA1 was made for.
    pub realm: String,
    /// SHA-256 HA1 for RFC 8760 digest, when set.
    pub ha1_sha256: Option<String>,
    pub enabled: bool,
}
config_record!(SipAccount, SipAccount, id);

/// The kind of a tenant-defined field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldType {
    Text { max_len: u32 },
    Number,
    Bool,
    Date,
    Choice { options: Vec<String> },
    Choices { options: Vec<String> },
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    pub key: String,
    /// The label shown to users (e.g. 客户等级).
    pub label: String,
    pub field_type: FieldType,
    pub required: bool,
}

/// The fields a tenant defined for one form: `customer`, `ticket` or
/// `service_summary` (the record's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormSchema {
    pub tenant: TenantId,
    pub id: String,
    pub fields: Vec<FieldDef>,
}
config_record!(FormSchema, FormSchema, id);

/// How the node reaches the trunk's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrunkTransport {
    Udp,
    Tcp,
}

/// The tenant's way out to the telephone network (中继): a SIP gateway or
/// carrier. Calls to outside numbers (IVR transfers, overflow to a number,
/// agents on their mobiles, outbound calls) go through it; calls from
/// unauthenticated sources never do (toll fraud). One per tenant, id
/// [`Trunk::ID`]. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trunk {
    pub tenant: TenantId,
    pub id: String,
    /// The gateway, `host:port` (port 5060 when left out).
    pub gateway: String,
    pub transport: TrunkTransport,
    /// Digest credentials for the gateway's 401/407 challenges. A client
    /// must compute the response, so the password is kept as given: the
    /// store's access control protects it.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The number presented to the called party (主叫号码).
    pub caller_id: String,
    pub enabled: bool,
}

impl std::fmt::Debug for Trunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trunk")
            .field("tenant", &self.tenant)
            .field("gateway", &self.gateway)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("caller_id", &self.caller_id)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl Trunk {
    /// The id of a tenant's trunk record.
    pub const ID: &'static str = "trunk";
}
config_record!(Trunk, Trunk, id);

/// The key that signs a tenant's API tokens (HMAC-SHA256), kept in the
/// store so every node of a cluster accepts the tokens any node issued.
/// One per tenant, id [`SigningKey::ID`]; replacing it signs everyone
/// out. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    pub tenant: TenantId,
    pub id: String,
    /// The key, hex (32 random bytes).
    pub key: String,
    pub created: super::Timestamp,
}

impl SigningKey {
    /// The id of a tenant's token-signing key.
    pub const ID: &'static str = "api";
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("key", &"…")
            .field("created", &self.created)
            .finish()
    }
}
config_record!(SigningKey, SigningKey, id);
