//! Hotlines, IVR flows (versioned) and schedules.

use super::{config_record, AgentId, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

/// Opening hours of one day, `[start, end)` in minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hours {
    pub start: u16,
    pub end: u16,
}

impl Hours {
    pub const ALL_DAY: Hours = Hours {
        start: 0,
        end: 1440,
    };
}

/// A special date or range (特殊时间, e.g. 五一, 十一) with a flow of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialDates {
    pub name: String,
    /// First and last day, both included.
    pub from: Date,
    pub to: Date,
    pub flow: String,
    /// Opening hours on these days; `None`: the flow runs all day.
    pub hours: Option<Vec<Hours>>,
}

/// Which flow runs when (日常/特殊时间IVR配置 and working hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The regular flow.
    pub regular: String,
    /// Working hours per weekday, Monday first; no hours: closed all day.
    pub week: [Vec<Hours>; 7],
    /// Overrides; the first match wins.
    pub special: Vec<SpecialDates>,
    /// What runs outside working hours.
    pub closed: String,
}

impl Schedule {
    /// Open every day, all day, with `flow`.
    pub fn always(flow: &str) -> Schedule {
        Schedule {
            regular: flow.into(),
            week: std::array::from_fn(|_| vec![Hours::ALL_DAY]),
            special: Vec::new(),
            closed: flow.into(),
        }
    }
}

/// A named schedule of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvrSchedule {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    pub schedule: Schedule,
}
config_record!(IvrSchedule, Schedule, id);

/// One step of a flow (节点).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Node {
    /// Play a prompt, then go on.
    Play { prompt: String, next: String },
    /// A menu: a prompt, then one key picks the branch.
    Menu {
        prompt: String,
        /// Key → next node.
        options: BTreeMap<char, String>,
        /// Wait for a key after the prompt.
        timeout: Duration,
        /// Played after a wrong key or no key.
        invalid_prompt: Option<String>,
        /// Tries after the first.
        retries: u8,
        /// A key that plays the menu again without using a try.
        repeat_key: Option<char>,
        /// Where to go when every try failed.
        on_fail: String,
    },
    /// Collect digits (an order number, an ID) into `var`.
    Collect {
        prompt: String,
        min: u8,
        max: u8,
        /// Ends the input early (usually `#`), not stored.
        terminator: Option<char>,
        /// Wait for each digit.
        timeout: Duration,
        var: String,
        next: String,
        on_fail: String,
    },
    /// Working hours: `open` during the regular hours, else `closed`.
    TimeBranch { open: String, closed: String },
    /// Queue in a skill group.
    TransferGroup { group: String },
    /// Ring one agent.
    TransferAgent { agent: AgentId },
    /// Out through the trunk; only if the tenant allows it.
    TransferNumber { number: String },
    /// Satisfaction survey (满意度): a key 1..=max is the score.
    Survey {
        prompt: String,
        max: u8,
        timeout: Duration,
        thanks: Option<String>,
    },
    /// Leave a message after the prompt.
    Voicemail { prompt: String, max_len: Duration },
    /// End the call, after an optional prompt.
    HangUp { prompt: Option<String> },
}

/// A flow definition: its nodes and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub id: String,
    pub start: String,
    pub nodes: BTreeMap<String, Node>,
}

/// An IVR flow (IVR语音导航): its name and which version runs. The
/// definitions are immutable [`FlowVersion`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvrFlow {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    /// The version calls run; `None` until one is published.
    pub published: Option<u32>,
}
config_record!(IvrFlow, IvrFlow, id);

/// One saved version of a flow. Versions count from 1 and never change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowVersion {
    pub tenant: TenantId,
    pub flow: String,
    pub version: u32,
    pub created: Timestamp,
    /// The user who saved it.
    pub author: Option<String>,
    pub definition: Flow,
}

/// The IVR's basic settings (基础设置) for a hotline.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IvrSettings {
    /// The prompt looped while a caller waits in a queue.
    pub waiting_prompt: Option<String>,
    /// Overrides the groups' max queue time for calls of this hotline.
    pub max_queue_time: Option<Duration>,
    /// Played when the max queue time is reached.
    pub queue_timeout_prompt: Option<String>,
}

/// A dialed number and the IVR it runs. The number is unique across
/// tenants: it tells which tenant an inbound call is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hotline {
    pub tenant: TenantId,
    /// The dialed number, as the trunk delivers it.
    pub number: String,
    pub name: String,
    /// The [`IvrSchedule`] that picks the flow.
    pub schedule: String,
    pub settings: IvrSettings,
    pub enabled: bool,
}
config_record!(Hotline, Hotline, number);
