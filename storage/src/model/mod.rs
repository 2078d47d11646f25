//! The persistent model: every record the call center keeps, each carrying
//! its tenant.
//!
//! Records are plain serde structs. Configuration (tenants, users, SIP
//! accounts, agents, custom statuses, skill groups, hotlines, IVR flows,
//! schedules, prompts, form schemas, the trunk) implements [`ConfigRecord`] and is kept
//! as a versioned JSON document per `(tenant, kind, id)`; the operational
//! records (call records, the agent status log, hourly statistics,
//! customers, tickets, service summaries, contact plans, leases) have
//! tables of their own, shaped by the queries the product runs.
//!
//! The shapes of the call center's decision types (agent status, skill-group
//! settings, IVR flows and schedules, the call summary) mirror those of
//! `switchboard-actors` field for field, so the actors can use these types
//! directly.
//!
//! Room is left for quality inspection (质检) and telesales (电销): their
//! records get tables of their own (telesales apart from the call-center
//! reports), and [`ConfigKind`] is non-exhaustive.

pub mod acd;
pub mod agent;
pub mod call;
pub mod customer;
pub mod ivr;
pub mod lease;
pub mod prompt;
pub mod stats;
pub mod tenant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use acd::{GroupConfig, Member, NoAgentRule, Overflow, OverflowReason, SkillGroup, Strategy};
pub use agent::{
    Actor, Agent, AgentPolicy, ChangeReason, CustomStatus, Device, Status, StatusChange,
    StatusKind, StatusPeriod,
};
pub use call::{
    CallRecord, Callback, DialOutcome, Direction, HangupReason, HangupSide, HoldPeriod, IvrTrace,
    Leg, LegKind, NumberLocation, RingAttempt, RingOutcome, Satisfaction, Transfer, TransferKind,
    TransferTarget,
};
pub use customer::{
    ContactPlan, ContactPlanStatus, Customer, ServiceSummary, Ticket, TicketStatus, TimelineEvent,
    TimelineKind,
};
pub use ivr::{
    Date, Flow, FlowVersion, Hotline, Hours, IvrFlow, IvrSchedule, IvrSettings, Node, Schedule,
    SpecialDates, Survey, SurveyLevel,
};
pub use lease::Lease;
pub use prompt::{Prompt, PromptSource, Review, ReviewStatus};
pub use stats::{Counters, HourlyStats, ScopeKind, StatsAggregator, StatsPartial, StatsScope};
pub use tenant::{
    FieldDef, FieldType, FormSchema, QueueCallback, Retention, Role, SigningKey, SipAccount,
    Tenant, Trunk, TrunkTransport, User,
};

/// A tenant (租户): one customer company. Every record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

impl From<&str> for TenantId {
    fn from(s: &str) -> Self {
        TenantId(s.to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent (坐席), unique within its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId(pub String);

impl From<&str> for AgentId {
    fn from(s: &str) -> Self {
        AgentId(s.to_owned())
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A call, unique within the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A cluster node, as it names itself. Partial aggregates and leases are
/// keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_owned())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch. The store never
/// reads the clock: times are given.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u128::from(u64::MAX)) as u64),
        )
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The store's column form (milliseconds, signed as databases keep them).
    pub(crate) fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    pub(crate) fn from_i64(v: i64) -> Timestamp {
        Timestamp(u64::try_from(v).unwrap_or(0))
    }
}

/// A calendar day in the tenant's local time, as days since 1970-01-01:
/// the partition of call records, the status log and hourly statistics.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Day(pub i32);

/// A local hour: its day and the hour of that day (0..24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalHour {
    pub day: Day,
    pub hour: u8,
}

impl LocalHour {
    /// The local hour of `at` in a zone `offset_minutes` east of UTC
    /// (China: +480).
    pub fn of(at: Timestamp, offset_minutes: i32) -> LocalHour {
        let secs = (at.0 / 1000) as i64 + i64::from(offset_minutes) * 60;
        let day = secs.div_euclid(86_400);
        LocalHour {
            day: Day(i32::try_from(day).unwrap_or(i32::MAX)),
            hour: (secs.rem_euclid(86_400) / 3600) as u8,
        }
    }

    /// The first millisecond of this hour, in the zone it was computed for.
    pub fn start(self, offset_minutes: i32) -> Timestamp {
        let secs = i64::from(self.day.0) * 86_400 + i64::from(self.hour) * 3600
            - i64::from(offset_minutes) * 60;
        Timestamp(u64::try_from(secs.max(0)).unwrap_or(0) * 1000)
    }
}

impl Day {
    /// The local day of `at` in a zone `offset_minutes` east of UTC.
    pub fn of(at: Timestamp, offset_minutes: i32) -> Day {
        LocalHour::of(at, offset_minutes).day
    }

    /// The day of a calendar date.
    pub fn from_date(d: Date) -> Day {
        // Howard Hinnant's days_from_civil.
        let (y, m, dd) = (
            i64::from(d.year) - i64::from(d.month <= 2),
            i64::from(d.month),
            i64::from(d.day),
        );
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + dd - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day(i32::try_from(era * 146_097 + doe - 719_468).unwrap_or(i32::MAX))
    }

    /// The calendar date of this day.
    pub fn date(self) -> Date {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.date();
        write!(f, "{:04}-{:02}-{:02}", d.year, d.month, d.day)
    }
}

/// A value of a tenant-defined field (自定义字段) on a customer, ticket or
/// service summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum FieldValue {
    Text(String),
    Number(f64),
    Bool(bool),
    Date(Date),
    /// One of the field's options.
    Choice(String),
    /// Several of the field's options.
    Choices(Vec<String>),
}

/// Tenant-defined fields by key; the keys and types are in the tenant's
/// [`FormSchema`].
pub type CustomFields = BTreeMap<String, FieldValue>;

/// The kinds of configuration document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConfigKind {
    Tenant,
    User,
    SipAccount,
    Agent,
    CustomStatus,
    SkillGroup,
    Hotline,
    IvrFlow,
    Schedule,
    Prompt,
    FormSchema,
    Trunk,
    /// The key that signs the tenant's API tokens.
    SigningKey,
}

impl ConfigKind {
    pub const ALL: [ConfigKind; 13] = [
        ConfigKind::Tenant,
        ConfigKind::User,
        ConfigKind::SipAccount,
        ConfigKind::Agent,
        ConfigKind::CustomStatus,
        ConfigKind::SkillGroup,
        ConfigKind::Hotline,
        ConfigKind::IvrFlow,
        ConfigKind::Schedule,
        ConfigKind::Prompt,
        ConfigKind::FormSchema,
        ConfigKind::Trunk,
        ConfigKind::SigningKey,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Tenant => "tenant",
            ConfigKind::User => "user",
            ConfigKind::SipAccount => "sip_account",
            ConfigKind::Agent => "agent",
            ConfigKind::CustomStatus => "custom_status",
            ConfigKind::SkillGroup => "skill_group",
            ConfigKind::Hotline => "hotline",
            ConfigKind::IvrFlow => "ivr_flow",
            ConfigKind::Schedule => "schedule",
            ConfigKind::Prompt => "prompt",
            ConfigKind::FormSchema => "form_schema",
            ConfigKind::Trunk => "trunk",
            ConfigKind::SigningKey => "signing_key",
        }
    }

    pub fn parse(s: &str) -> Option<ConfigKind> {
        ConfigKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether ids of this kind are unique across tenants: a hotline's id
    /// is its dialed number, which picks the tenant of an inbound call.
    pub fn is_global(self) -> bool {
        matches!(self, ConfigKind::Hotline)
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration record: stored as a JSON document under
/// `(tenant, KIND, id)`, with a revision for optimistic concurrency.
pub trait ConfigRecord: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: ConfigKind;
    fn tenant(&self) -> &TenantId;
    fn id(&self) -> &str;
}

/// A configuration document as the backends keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDoc {
    pub tenant: TenantId,
    pub kind: ConfigKind,
    pub id: String,
    /// 1 for the first write, +1 for each write after it.
    pub revision: u64,
    /// The record, as JSON.
    pub body: String,
}

/// A decoded record with its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub revision: u64,
    pub record: T,
}

impl<T: ConfigRecord> Versioned<T> {
    pub(crate) fn decode(doc: &ConfigDoc) -> crate::Result<Versioned<T>> {
        let record = serde_json::from_str(&doc.body)
            .map_err(|e| crate::StoreError::decode(doc.kind.as_str(), e))?;
        Ok(Versioned {
            revision: doc.revision,
            record,
        })
    }
}

macro_rules! config_record {
    ($t:ty, $kind:ident, $id:ident) => {
        impl $crate::model::ConfigRecord for $t {
            const KIND: $crate::model::ConfigKind = $crate::model::ConfigKind::$kind;
            fn tenant(&self) -> &$crate::model::TenantId {
                &self.tenant
            }
            fn id(&self) -> &str {
                &self.$id
            }
        }
    };
}
pub(crate) use config_record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        for d in [-800_000, -1, 0, 1, 59, 60, 365, 11_016, 20_000, 2_000_000] {
            assert_eq!(Day::from_date(Day(d).date()), Day(d));
        }
        assert_eq!(
            Day(0).date(),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            Day::from_date(Date {
                year: 2026,
                month: 12,
                day: 1
            })
            .to_string(),
            "2026-12-01"
        );
    }

    #[test]
    fn local_hours_follow_the_offset() {
        // 2026-12-01 00:30 in China is 2026-11-30 16:30 UTC.
        let day = Day::from_date(Date {
            year: 2026,
            month: 12,
            day: 1,
        });
        let at = LocalHour { day, hour: 0 }
            .start(480)
            .after(Duration::from_secs(1800));
        assert_eq!(LocalHour::of(at, 480), LocalHour { day, hour: 0 });
        assert_eq!(
            LocalHour::of(at, 0),
            LocalHour {
                day: Day(day.0 - 1),
                hour: 16
            }
        );
    }

    #[test]
    fn config_kinds_parse_back() {
        for k in ConfigKind::ALL {
            assert_eq!(ConfigKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ConfigKind::parse("nope"), None);
    }
}
