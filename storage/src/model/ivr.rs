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
    /// Satisfaction survey (满意度): the customer presses the key of one
    /// of the survey's levels.
    Survey(Survey),
    /// Leave a message after the prompt.
    Voicemail { prompt: String, max_len: Duration },
    /// End the call, after an optional prompt.
    HangUp { prompt: Option<String> },
}

/// A satisfaction survey (满意度), played after the agent hangs up first.
///
/// The customer presses the key of one of [`Survey::levels`]; its score
/// goes into the call record. Stored flows from before levels existed
/// have `max` instead: keys 1 to `max`, each scoring its own digit; they
/// are read as those levels (labels are the digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SurveyRepr")]
pub struct Survey {
    pub prompt: String,
    /// The answers the customer can give, each on a key of its own.
    pub levels: Vec<SurveyLevel>,
    /// Wait for a key after the prompt.
    pub timeout: Duration,
    /// Played after a key that is no level's, before the survey is asked
    /// once more; `None`: it is asked again at once.
    pub invalid_prompt: Option<String>,
    /// Played after a valid answer.
    pub thanks: Option<String>,
}

impl Survey {
    /// The levels of the stored form from before levels existed: keys 1
    /// to `max` (at most 9), each scoring its digit, labelled with it.
    pub fn levels_up_to(max: u8) -> Vec<SurveyLevel> {
        (1..=max.min(9))
            .filter_map(|score| {
                let key = char::from_digit(u32::from(score), 10)?;
                Some(SurveyLevel {
                    key,
                    score,
                    label: score.to_string(),
                })
            })
            .collect()
    }

    /// The level of `key`, if one has it.
    pub fn level(&self, key: char) -> Option<&SurveyLevel> {
        self.levels.iter().find(|l| l.key == key)
    }
}

/// One answer of a survey: e.g. key `1`, score 5, "very satisfied".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyLevel {
    /// The phone key: `0`-`9`, `*` or `#`.
    pub key: char,
    /// What the call record keeps and reports average.
    pub score: u8,
    /// What the level means, for people reading the flow.
    pub label: String,
}

/// What a stored survey node may look like: `levels`, or the older `max`.
#[derive(Deserialize)]
struct SurveyRepr {
    prompt: String,
    #[serde(default)]
    levels: Vec<SurveyLevel>,
    #[serde(default)]
    max: Option<u8>,
    timeout: Duration,
    #[serde(default)]
    invalid_prompt: Option<String>,
    #[serde(default)]
    thanks: Option<String>,
}

impl From<SurveyRepr> for Survey {
    fn from(r: SurveyRepr) -> Survey {
        let levels = match (r.levels.is_empty(), r.max) {
            (true, Some(max)) => Survey::levels_up_to(max),
            _ => r.levels,
        };
        Survey {
            prompt: r.prompt,
            levels,
            timeout: r.timeout,
            invalid_prompt: r.invalid_prompt,
            thanks: r.thanks,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_survey_stored_with_max_reads_as_levels() {
        let old = r#"{"type": "survey", "prompt": "rate", "max": 3,
            "timeout": {"secs": 8, "nanos": 0}, "thanks": "thanks"}"#;
        let node: Node = serde_json::from_str(old).unwrap();
        let Node::Survey(s) = node else {
            panic!("not a survey: {node:?}");
        };
        let levels: Vec<(char, u8, &str)> = s
            .levels
            .iter()
            .map(|l| (l.key, l.score, l.label.as_str()))
            .collect();
        assert_eq!(levels, [('1', 1, "1"), ('2', 2, "2"), ('3', 3, "3")]);
        assert_eq!(s.invalid_prompt, None);
        assert_eq!(s.thanks.as_deref(), Some("thanks"));
        assert_eq!(s.timeout, Duration::from_secs(8));
        // Keys are digits, so at most nine levels come from `max`.
        assert_eq!(Survey::levels_up_to(12).len(), 9);
        assert!(Survey::levels_up_to(0).is_empty());
    }

    #[test]
    fn a_survey_with_levels_round_trips() {
        let node = Node::Survey(Survey {
            prompt: "rate".into(),
            levels: vec![
                SurveyLevel {
                    key: '1',
                    score: 5,
                    label: "very satisfied".into(),
                },
                SurveyLevel {
                    key: '#',
                    score: 1,
                    label: "not satisfied".into(),
                },
            ],
            timeout: Duration::from_secs(5),
            invalid_prompt: Some("invalid".into()),
            thanks: None,
        });
        let json = serde_json::to_value(&node).unwrap();
        assert_eq!(json["type"], "survey");
        assert_eq!(json["levels"][1]["key"], "#");
        assert_eq!(json.get("max"), None);
        let back: Option<Node> = serde_json::from_value(json).ok();
        assert_eq!(back, Some(node));
    }
}
