//! Skill groups (技能组): members, distribution strategy and queue rules.

use super::{config_record, AgentId, TenantId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the group picks the agent for the next call (呼叫策略).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every available member rings at once; the first to answer gets it.
    RingAll,
    /// The member ready for the longest time.
    LongestIdle,
    /// Members in turn, continuing after the last one offered.
    RoundRobin,
    /// The member who answered the fewest calls today.
    FewestCalls,
    /// The member with the least talk time today.
    LeastTalkTime,
    /// Any available member, at random.
    Random,
    /// The highest skill level with an available member first; longest
    /// idle within the level.
    SkillTiers,
}

/// Where a call goes when it leaves the queue unanswered (溢出).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "to", content = "target", rename_all = "snake_case")]
pub enum Overflow {
    /// Another skill group, by id.
    Group(String),
    /// A node of the tenant's IVR flow, by id.
    IvrNode(String),
    /// An external number, through the trunk.
    Number(String),
    Voicemail,
    /// A prompt, then the call ends.
    HangUp,
}

/// Why a call left the queue unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowReason {
    MaxQueueTime,
    NoAgent,
}

/// What happens to a call when no member is signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAgentRule {
    /// Wait anyway, up to the max queue time.
    Queue,
    /// Overflow at once.
    Overflow,
}

/// A skill group's distribution settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub strategy: Strategy,
    /// How long an offered agent's device rings before it counts as missed.
    pub ring_timeout: Duration,
    /// After-call work for calls answered in this group.
    pub wrap_up: Duration,
    /// Longest wait in the queue before overflow.
    pub max_queue_time: Duration,
    pub overflow: Overflow,
    pub no_agent: NoAgentRule,
    /// Tell waiting callers their place in the queue and the expected
    /// wait on entering it and then this often; `None`: never.
    #[serde(default)]
    pub announce_every: Option<Duration>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            strategy: Strategy::LongestIdle,
            ring_timeout: Duration::from_secs(20),
            wrap_up: Duration::from_secs(15),
            max_queue_time: Duration::from_secs(60),
            overflow: Overflow::Voicemail,
            no_agent: NoAgentRule::Overflow,
            announce_every: None,
        }
    }
}

/// A member agent and its skill level (higher is more skilled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub agent: AgentId,
    pub level: u8,
}

/// A skill group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkillGroup {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    pub config: GroupConfig,
    /// Members in configuration order (round-robin follows it).
    pub members: Vec<Member>,
    /// A telesales group (外呼技能组), kept out of call-center reports.
    pub telesales: bool,
}
config_record!(SkillGroup, SkillGroup, id);
