//! The IVR (IVR语音导航), sans-IO: which flow runs today, and a session
//! that walks one flow for one call.
//!
//! [`Schedule::flow_at`] picks the flow for a moment in the tenant's local
//! time: a special date or date range (特殊时间, holidays such as 五一 or
//! 十一) overrides the regular flow (日常IVR); outside the working hours of
//! the day the closed flow runs. [`IvrSession`] then interprets the flow's
//! nodes (节点): it asks its shell to play prompts, listens to DTMF digits
//! and timeouts, and ends with a transfer, a voicemail or a hang-up. What
//! the caller did (nodes visited, keys pressed, digits collected) and how a
//! survey went ([`IvrSession::satisfaction`]) are kept for the call record.
//!
//! A survey node asks once more after a key that is no level's (its
//! invalid-key prompt first, if it has one), as menus do; a second wrong
//! key ends it as [`Satisfaction::InvalidKey`]. Silence is not asked
//! again: the customer has usually put the phone down, and the line is
//! not held for it. A valid answer plays the thanks prompt; the others
//! end the call without it.
//!
//! Prompts are named by id; the shell resolves an id to audio (TTS or an
//! approved WAV) and says when playback ended with
//! [`IvrSession::prompt_done`].

use crate::{AgentId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;
pub use switchboard_storage::model::{
    Date, Day, Flow, Hours, IvrTrace, Node, Satisfaction, Schedule, SpecialDates, Survey,
    SurveyLevel,
};
use thiserror::Error;

/// A moment in the tenant's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalTime {
    pub date: Date,
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// Minutes since local midnight.
    pub minute: u16,
}

impl LocalTime {
    /// `at` in a zone `offset_minutes` east of UTC (China: +480; no DST).
    pub fn at(at: Timestamp, offset_minutes: i32) -> LocalTime {
        let secs = (at.0 / 1000) as i64 + i64::from(offset_minutes) * 60;
        let days = secs.div_euclid(86_400);
        let minute = (secs.rem_euclid(86_400) / 60) as u16;
        // 1970-01-01 was a Thursday (weekday 3).
        let weekday = (days + 3).rem_euclid(7) as u8;
        LocalTime {
            date: Day(i32::try_from(days).unwrap_or(i32::MAX)).date(),
            weekday,
            minute,
        }
    }
}

/// Whether `minute` (since local midnight) falls in any of `hours`.
fn open_at(hours: &[Hours], minute: u16) -> bool {
    hours.iter().any(|h| h.start <= minute && minute < h.end)
}

/// The flow chosen and whether it is the closed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowChoice<'a> {
    pub flow: &'a str,
    pub open: bool,
    /// The special-date entry that applied, by name.
    pub special: Option<&'a str>,
}

/// Which flow runs at a moment: the schedule half of the IVR.
pub trait ScheduleExt {
    /// The flow for local time `t`.
    fn flow_at(&self, t: LocalTime) -> FlowChoice<'_>;
    /// Whether `t` is within the regular working hours.
    fn is_open(&self, t: LocalTime) -> bool;
}

impl ScheduleExt for Schedule {
    fn flow_at(&self, t: LocalTime) -> FlowChoice<'_> {
        if let Some(s) = self
            .special
            .iter()
            .find(|s| s.from <= t.date && t.date <= s.to)
        {
            let open = s.hours.as_ref().is_none_or(|h| open_at(h, t.minute));
            return FlowChoice {
                flow: if open { &s.flow } else { &self.closed },
                open,
                special: Some(&s.name),
            };
        }
        let open = self.is_open(t);
        FlowChoice {
            flow: if open { &self.regular } else { &self.closed },
            open,
            special: None,
        }
    }

    fn is_open(&self, t: LocalTime) -> bool {
        self.week
            .get(usize::from(t.weekday))
            .is_some_and(|day| open_at(day, t.minute))
    }
}

/// A flow that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FlowError {
    #[error("flow {flow}: start node {node:?} does not exist")]
    NoStart { flow: String, node: String },
    #[error("flow {flow}: node {from:?} leads to {to:?}, which does not exist")]
    Dangling {
        flow: String,
        from: String,
        to: String,
    },
    #[error("flow {flow}: node {node:?}: {reason}")]
    Invalid {
        flow: String,
        node: String,
        reason: String,
    },
    /// No path from the start node leads to this node.
    #[error("flow {flow}: node {node:?} cannot be reached from the start")]
    Unreachable { flow: String, node: String },
    /// A caller who gets into these nodes can never leave them: no path
    /// leads on to a transfer, voicemail, survey or hang-up.
    #[error("flow {flow}: nodes {nodes:?} loop with no way out to a transfer, voicemail, survey or hang-up")]
    NoExit { flow: String, nodes: Vec<String> },
}

/// Checking a flow before it is published.
pub trait FlowExt {
    /// Checks that every branch leads somewhere, the settings make sense,
    /// every node can be reached from the start, and from every node a
    /// caller can get out (no loop without an exit).
    fn validate(&self) -> Result<(), FlowError>;
    /// The prompt ids the flow plays, each once, sorted.
    fn prompts(&self) -> BTreeSet<&str>;
    /// The skill groups the flow transfers to, each once, sorted.
    fn groups(&self) -> BTreeSet<&str>;
}

/// The nodes a node can lead to; none for the nodes that end the IVR.
fn next_nodes(node: &Node) -> Vec<&str> {
    match node {
        Node::Play { next, .. } => vec![next],
        Node::Menu {
            options, on_fail, ..
        } => options
            .values()
            .chain(std::iter::once(on_fail))
            .map(String::as_str)
            .collect(),
        Node::Collect { next, on_fail, .. } => vec![next, on_fail],
        Node::TimeBranch { open, closed } => vec![open, closed],
        Node::TransferGroup { .. }
        | Node::TransferAgent { .. }
        | Node::TransferNumber { .. }
        | Node::Survey { .. }
        | Node::Voicemail { .. }
        | Node::HangUp { .. } => Vec::new(),
    }
}

/// The prompts a node plays.
fn node_prompts(node: &Node) -> Vec<&str> {
    match node {
        Node::Play { prompt, .. } | Node::Collect { prompt, .. } => vec![prompt],
        Node::Menu {
            prompt,
            invalid_prompt,
            ..
        } => std::iter::once(prompt)
            .chain(invalid_prompt)
            .map(String::as_str)
            .collect(),
        Node::Survey(Survey {
            prompt,
            invalid_prompt,
            thanks,
            ..
        }) => std::iter::once(prompt)
            .chain(invalid_prompt)
            .chain(thanks)
            .map(String::as_str)
            .collect(),
        Node::Voicemail { prompt, .. } => vec![prompt],
        Node::HangUp { prompt } => prompt.iter().map(String::as_str).collect(),
        Node::TimeBranch { .. }
        | Node::TransferGroup { .. }
        | Node::TransferAgent { .. }
        | Node::TransferNumber { .. } => Vec::new(),
    }
}

/// Every node reachable from the start (the flow has no dangling branch).
fn reachable(flow: &Flow) -> BTreeSet<&str> {
    let mut seen = BTreeSet::from([flow.start.as_str()]);
    let mut todo = vec![flow.start.as_str()];
    while let Some(id) = todo.pop() {
        for to in flow.nodes.get(id).map(next_nodes).unwrap_or_default() {
            if seen.insert(to) {
                todo.push(to);
            }
        }
    }
    seen
}

/// Every node from which some path ends the IVR.
fn can_exit(flow: &Flow) -> BTreeSet<&str> {
    let mut out: BTreeSet<&str> = flow
        .nodes
        .iter()
        .filter(|(_, n)| next_nodes(n).is_empty())
        .map(|(id, _)| id.as_str())
        .collect();
    loop {
        let more: Vec<&str> = flow
            .nodes
            .iter()
            .filter(|(id, n)| {
                !out.contains(id.as_str()) && next_nodes(n).iter().any(|t| out.contains(t))
            })
            .map(|(id, _)| id.as_str())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

impl FlowExt for Flow {
    fn validate(&self) -> Result<(), FlowError> {
        if !self.nodes.contains_key(&self.start) {
            return Err(FlowError::NoStart {
                flow: self.id.clone(),
                node: self.start.clone(),
            });
        }
        for (id, node) in &self.nodes {
            let invalid = |reason: &str| FlowError::Invalid {
                flow: self.id.clone(),
                node: id.clone(),
                reason: reason.into(),
            };
            let targets: Vec<&String> = match node {
                Node::Play { next, .. } => vec![next],
                Node::Menu {
                    options,
                    on_fail,
                    repeat_key,
                    ..
                } => {
                    if options.is_empty() {
                        return Err(invalid("a menu needs at least one key"));
                    }
                    if let Some(k) = repeat_key {
                        if options.contains_key(k) {
                            return Err(invalid("the repeat key is also an option"));
                        }
                    }
                    if let Some(k) = options.keys().find(|k| !is_dtmf(**k)) {
                        return Err(invalid(&format!("{k:?} is not a phone key")));
                    }
                    options.values().chain(std::iter::once(on_fail)).collect()
                }
                Node::Collect {
                    min,
                    max,
                    next,
                    on_fail,
                    ..
                } => {
                    if *max == 0 || min > max {
                        return Err(invalid("digits: need 0 < max and min <= max"));
                    }
                    vec![next, on_fail]
                }
                Node::TimeBranch { open, closed } => vec![open, closed],
                Node::Survey(survey) => {
                    if let Some(problem) = survey_problem(survey) {
                        return Err(invalid(&problem));
                    }
                    Vec::new()
                }
                _ => Vec::new(),
            };
            if let Some(to) = targets.into_iter().find(|t| !self.nodes.contains_key(*t)) {
                return Err(FlowError::Dangling {
                    flow: self.id.clone(),
                    from: id.clone(),
                    to: to.clone(),
                });
            }
        }
        let reachable = reachable(self);
        if let Some(id) = self
            .nodes
            .keys()
            .find(|id| !reachable.contains(id.as_str()))
        {
            return Err(FlowError::Unreachable {
                flow: self.id.clone(),
                node: id.clone(),
            });
        }
        let can_exit = can_exit(self);
        let stuck: Vec<String> = self
            .nodes
            .keys()
            .filter(|id| !can_exit.contains(id.as_str()))
            .cloned()
            .collect();
        if !stuck.is_empty() {
            return Err(FlowError::NoExit {
                flow: self.id.clone(),
                nodes: stuck,
            });
        }
        Ok(())
    }

    fn prompts(&self) -> BTreeSet<&str> {
        self.nodes.values().flat_map(node_prompts).collect()
    }

    fn groups(&self) -> BTreeSet<&str> {
        self.nodes
            .values()
            .filter_map(|n| match n {
                Node::TransferGroup { group } => Some(group.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

/// The fewest and the most levels a survey has.
pub const SURVEY_LEVELS: std::ops::RangeInclusive<usize> = 2..=5;
/// The highest score a level may give.
pub const SURVEY_MAX_SCORE: u8 = 10;
/// How many times a survey asks again after a wrong key.
const SURVEY_RETRIES: u8 = 1;

/// What is wrong with a survey's levels, in words for the person who
/// configured them.
fn survey_problem(s: &Survey) -> Option<String> {
    let n = s.levels.len();
    if !SURVEY_LEVELS.contains(&n) {
        return Some(format!(
            "a survey has {} to {} levels; this one has {n}",
            SURVEY_LEVELS.start(),
            SURVEY_LEVELS.end()
        ));
    }
    for (i, l) in s.levels.iter().enumerate() {
        // A-D are DTMF too, but phones have no such keys.
        if !(l.key.is_ascii_digit() || matches!(l.key, '*' | '#')) {
            return Some(format!(
                "level {:?}: {:?} is not a phone key (0-9, * or #)",
                l.label, l.key
            ));
        }
        if l.label.trim().is_empty() {
            return Some(format!("the level of key {:?} has no label", l.key));
        }
        if l.score > SURVEY_MAX_SCORE {
            return Some(format!(
                "level {:?}: score {} is above {SURVEY_MAX_SCORE}",
                l.label, l.score
            ));
        }
        if let Some(o) = s.levels[..i].iter().find(|o| o.key == l.key) {
            return Some(format!(
                "levels {:?} and {:?} both use key {:?}",
                o.label, l.label, l.key
            ));
        }
        if let Some(o) = s.levels[..i].iter().find(|o| o.score == l.score) {
            return Some(format!(
                "levels {:?} and {:?} both score {}: the score should tell the answers apart",
                o.label, l.label, l.score
            ));
        }
    }
    None
}

/// What the session asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrAction {
    /// Play a prompt; keys pressed during it interrupt it (barge-in).
    Play { prompt: String },
    /// Stop the prompt playing (a key was pressed).
    StopPrompt,
    /// The IVR is over: what happens to the call now.
    Done(IvrOutcome),
}

/// How the IVR ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IvrOutcome {
    TransferGroup {
        group: String,
    },
    TransferAgent {
        agent: AgentId,
    },
    TransferNumber {
        number: String,
    },
    /// Record a message of at most `max_len` (the prompt was played).
    Voicemail {
        max_len: Duration,
    },
    HangUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    /// A prompt plays; `then` says what follows it.
    Prompt {
        then: AfterPrompt,
    },
    /// Waiting for a key until the deadline.
    Keys {
        deadline: Timestamp,
    },
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterPrompt {
    Goto(String),
    /// Listen for keys (menu, collect, survey).
    Listen,
    /// A menu's invalid-key prompt ended: play the menu again.
    Replay,
    Finish(IvrOutcome),
}

/// Hops through nodes without waiting (a loop of time branches) are cut
/// off here, so a bad flow cannot spin.
const MAX_HOPS: usize = 64;

/// One call's walk through a flow. See the module docs.
#[derive(Debug)]
pub struct IvrSession {
    flow: Flow,
    /// Whether the tenant lets calls out through the trunk.
    allow_external: bool,
    /// Working hours, for time branches.
    schedule_open: bool,
    node: String,
    wait: Wait,
    tries: u8,
    digits: String,
    trace: IvrTrace,
    /// How a survey node went; `HungUp` from its start until a key or
    /// the timeout decides.
    survey: Option<Satisfaction>,
    actions: VecDeque<IvrAction>,
}

impl IvrSession {
    /// Starts `flow` (validated) at its start node. `open` says whether it
    /// is working hours now (for time branches); `allow_external` whether
    /// transfers to outside numbers are allowed.
    pub fn start(flow: Flow, open: bool, allow_external: bool, now: Timestamp) -> IvrSession {
        let start = flow.start.clone();
        let mut s = IvrSession {
            flow,
            schedule_open: open,
            ..IvrSession::none(allow_external)
        };
        s.enter(start, now);
        s
    }

    /// A session that runs no flow: the call entered the center another
    /// way (an outbound call sent to a queue). An overflow to an IVR node
    /// finds none and hangs up.
    pub fn none(allow_external: bool) -> IvrSession {
        IvrSession {
            flow: Flow {
                id: String::new(),
                start: String::new(),
                nodes: Default::default(),
            },
            allow_external,
            schedule_open: true,
            node: String::new(),
            wait: Wait::Finished,
            tries: 0,
            digits: String::new(),
            trace: IvrTrace::default(),
            survey: None,
            actions: VecDeque::new(),
        }
    }

    pub fn trace(&self) -> &IvrTrace {
        &self.trace
    }

    /// How the survey went, if the flow reached a survey node. Until the
    /// customer answers or the timeout passes it is
    /// [`Satisfaction::HungUp`]: what the record says if the call ends
    /// now.
    pub fn satisfaction(&self) -> Option<Satisfaction> {
        self.survey
    }

    /// Goes back into the flow at `node` (a queue overflowing to an IVR
    /// node); the trace goes on. A node the flow lacks ends the session
    /// with a hang-up.
    pub fn resume_at(&mut self, node: &str, now: Timestamp) {
        if !self.flow.nodes.contains_key(node) {
            return self.finish(IvrOutcome::HangUp);
        }
        self.enter(node.to_owned(), now);
    }

    pub fn is_finished(&self) -> bool {
        self.wait == Wait::Finished
    }

    pub fn poll_action(&mut self) -> Option<IvrAction> {
        self.actions.pop_front()
    }

    /// When the session wants [`Self::handle_timeout`]: a key deadline.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self.wait {
            Wait::Keys { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The prompt the shell was asked to play has ended. Said when no
    /// prompt plays (a late report of one a key stopped), it changes
    /// nothing.
    pub fn prompt_done(&mut self, now: Timestamp) {
        if !matches!(self.wait, Wait::Prompt { .. }) {
            return;
        }
        let Wait::Prompt { then } = std::mem::replace(&mut self.wait, Wait::Finished) else {
            return;
        };
        match then {
            AfterPrompt::Goto(next) => self.enter(next, now),
            AfterPrompt::Listen => self.listen(now),
            AfterPrompt::Replay => {
                let node = self.node.clone();
                self.present(&node, now);
            }
            AfterPrompt::Finish(outcome) => self.finish(outcome),
        }
    }

    /// A DTMF digit (RFC 4733 or SIP INFO).
    pub fn digit(&mut self, key: char, now: Timestamp) {
        if self.wait == Wait::Finished {
            return;
        }
        self.trace.keys.push(key);
        let Some(node) = self.flow.nodes.get(&self.node).cloned() else {
            return;
        };
        // Barge-in: a key during the node's prompt stops it.
        let in_prompt = matches!(
            self.wait,
            Wait::Prompt {
                then: AfterPrompt::Listen | AfterPrompt::Replay
            }
        );
        if !in_prompt && !matches!(self.wait, Wait::Keys { .. }) {
            return;
        }
        if in_prompt {
            self.actions.push_back(IvrAction::StopPrompt);
        }
        match node {
            Node::Menu {
                options,
                repeat_key,
                ..
            } => {
                if Some(key) == repeat_key {
                    let id = self.node.clone();
                    self.present(&id, now);
                } else if let Some(next) = options.get(&key) {
                    self.enter(next.clone(), now);
                } else {
                    self.menu_failed(now);
                }
            }
            Node::Collect {
                max,
                terminator,
                timeout,
                ..
            } => {
                if Some(key) == terminator {
                    self.collect_done(now);
                } else {
                    self.digits.push(key);
                    if self.digits.len() >= usize::from(max) {
                        self.collect_done(now);
                    } else {
                        self.wait = Wait::Keys {
                            deadline: now.after(timeout),
                        };
                    }
                }
            }
            Node::Survey(survey) => self.survey_key(survey, key, now),
            _ => {}
        }
    }

    /// Runs an expired key deadline.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let Wait::Keys { deadline } = self.wait else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.flow.nodes.get(&self.node) {
            Some(Node::Menu { .. }) => self.menu_failed(now),
            Some(Node::Collect { .. }) => self.collect_done(now),
            Some(Node::Survey(_)) => {
                // A wrong key before the silence says more than the silence.
                if !matches!(self.survey, Some(Satisfaction::InvalidKey { .. })) {
                    self.survey = Some(Satisfaction::Timeout);
                }
                self.finish(IvrOutcome::HangUp)
            }
            _ => {}
        }
    }

    fn enter(&mut self, id: String, now: Timestamp) {
        self.tries = 0;
        self.digits.clear();
        let mut id = id;
        for _ in 0..MAX_HOPS {
            self.trace.path.push(id.clone());
            self.node = id.clone();
            // Time branches are decided without waiting.
            if let Some(Node::TimeBranch { open, closed }) = self.flow.nodes.get(&id) {
                id = if self.schedule_open {
                    open.clone()
                } else {
                    closed.clone()
                };
                continue;
            }
            self.present(&id, now);
            return;
        }
        self.finish(IvrOutcome::HangUp);
    }

    /// Runs node `id` from its beginning (prompt first).
    fn present(&mut self, id: &str, now: Timestamp) {
        let Some(node) = self.flow.nodes.get(id).cloned() else {
            return self.finish(IvrOutcome::HangUp);
        };
        match node {
            Node::Play { prompt, next } => self.play(prompt, AfterPrompt::Goto(next)),
            Node::Menu { prompt, .. } | Node::Collect { prompt, .. } => {
                self.play(prompt, AfterPrompt::Listen)
            }
            Node::Survey(Survey { prompt, .. }) => {
                self.survey.get_or_insert(Satisfaction::HungUp);
                self.play(prompt, AfterPrompt::Listen)
            }
            Node::TimeBranch { .. } => self.enter(id.to_owned(), now),
            Node::TransferGroup { group } => self.finish(IvrOutcome::TransferGroup { group }),
            Node::TransferAgent { agent } => self.finish(IvrOutcome::TransferAgent { agent }),
            Node::TransferNumber { number } => {
                // Toll fraud protection: no way out unless allowed.
                let outcome = if self.allow_external {
                    IvrOutcome::TransferNumber { number }
                } else {
                    IvrOutcome::HangUp
                };
                self.finish(outcome)
            }
            Node::Voicemail { prompt, max_len } => self.play(
                prompt,
                AfterPrompt::Finish(IvrOutcome::Voicemail { max_len }),
            ),
            Node::HangUp { prompt: Some(p) } => {
                self.play(p, AfterPrompt::Finish(IvrOutcome::HangUp))
            }
            Node::HangUp { prompt: None } => self.finish(IvrOutcome::HangUp),
        }
    }

    fn play(&mut self, prompt: String, then: AfterPrompt) {
        self.actions.push_back(IvrAction::Play { prompt });
        self.wait = Wait::Prompt { then };
    }

    fn listen(&mut self, now: Timestamp) {
        let timeout = match self.flow.nodes.get(&self.node) {
            Some(Node::Menu { timeout, .. })
            | Some(Node::Collect { timeout, .. })
            | Some(Node::Survey(Survey { timeout, .. })) => *timeout,
            _ => Duration::from_secs(5),
        };
        self.wait = Wait::Keys {
            deadline: now.after(timeout),
        };
    }

    fn menu_failed(&mut self, now: Timestamp) {
        let Some(Node::Menu {
            retries,
            invalid_prompt,
            on_fail,
            ..
        }) = self.flow.nodes.get(&self.node).cloned()
        else {
            return;
        };
        if self.tries >= retries {
            return self.enter(on_fail, now);
        }
        self.tries += 1;
        match invalid_prompt {
            Some(p) => self.play(p, AfterPrompt::Replay),
            None => {
                let id = self.node.clone();
                self.present(&id, now);
            }
        }
    }

    /// A key at a survey: a level's key scores; another key asks once
    /// more (see the module docs), then ends it as invalid.
    fn survey_key(&mut self, survey: Survey, key: char, now: Timestamp) {
        if let Some(level) = survey.level(key) {
            self.survey = Some(Satisfaction::Scored {
                score: level.score,
                key,
            });
            return match survey.thanks {
                Some(p) => self.play(p, AfterPrompt::Finish(IvrOutcome::HangUp)),
                None => self.finish(IvrOutcome::HangUp),
            };
        }
        self.survey = Some(Satisfaction::InvalidKey { key });
        if self.tries >= SURVEY_RETRIES {
            return self.finish(IvrOutcome::HangUp);
        }
        self.tries += 1;
        match survey.invalid_prompt {
            Some(p) => self.play(p, AfterPrompt::Replay),
            None => {
                let id = self.node.clone();
                self.present(&id, now);
            }
        }
    }

    fn collect_done(&mut self, now: Timestamp) {
        let Some(Node::Collect {
            min,
            var,
            next,
            on_fail,
            ..
        }) = self.flow.nodes.get(&self.node).cloned()
        else {
            return;
        };
        let digits = std::mem::take(&mut self.digits);
        if digits.len() >= usize::from(min) && !digits.is_empty() {
            self.trace.vars.insert(var, digits);
            self.enter(next, now);
        } else {
            self.enter(on_fail, now);
        }
    }

    fn finish(&mut self, outcome: IvrOutcome) {
        self.wait = Wait::Finished;
        self.actions.push_back(IvrAction::Done(outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn t(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    fn d(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    /// The demo hotline: welcome, "1 support, 2 sales", three tries.
    fn demo_flow() -> Flow {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "hours".into(),
            Node::TimeBranch {
                open: "welcome".into(),
                closed: "closed".into(),
            },
        );
        nodes.insert(
            "welcome".into(),
            Node::Play {
                prompt: "welcome".into(),
                next: "menu".into(),
            },
        );
        nodes.insert(
            "menu".into(),
            Node::Menu {
                prompt: "menu".into(),
                options: [
                    ('1', "support".into()),
                    ('2', "sales".into()),
                    ('3', "order".into()),
                ]
                .into_iter()
                .collect(),
                timeout: Duration::from_secs(5),
                invalid_prompt: Some("invalid".into()),
                retries: 2,
                repeat_key: Some('*'),
                on_fail: "bye".into(),
            },
        );
        nodes.insert(
            "support".into(),
            Node::TransferGroup {
                group: "support".into(),
            },
        );
        nodes.insert(
            "sales".into(),
            Node::TransferGroup {
                group: "sales".into(),
            },
        );
        nodes.insert(
            "order".into(),
            Node::Collect {
                prompt: "enter-order".into(),
                min: 4,
                max: 8,
                terminator: Some('#'),
                timeout: Duration::from_secs(4),
                var: "order".into(),
                next: "support".into(),
                on_fail: "menu".into(),
            },
        );
        nodes.insert(
            "closed".into(),
            Node::Voicemail {
                prompt: "closed".into(),
                max_len: Duration::from_secs(60),
            },
        );
        nodes.insert(
            "bye".into(),
            Node::HangUp {
                prompt: Some("goodbye".into()),
            },
        );
        Flow {
            id: "demo".into(),
            start: "hours".into(),
            nodes,
        }
    }

    fn actions(s: &mut IvrSession) -> Vec<IvrAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn play(p: &str) -> IvrAction {
        IvrAction::Play { prompt: p.into() }
    }

    #[test]
    fn local_time_and_calendar() {
        // 2026-05-01 10:30 in Beijing is 02:30 UTC; a Friday.
        let at = Timestamp(1_777_602_600_000);
        let lt = LocalTime::at(at, 480);
        assert_eq!(lt.date, d(2026, 5, 1));
        assert_eq!(lt.weekday, 4);
        assert_eq!(lt.minute, 10 * 60 + 30);
        assert_eq!(LocalTime::at(Timestamp(0), 0).date, d(1970, 1, 1));
        assert_eq!(
            LocalTime::at(Timestamp(951_782_400_000), 0).date,
            d(2000, 2, 29)
        );
    }

    #[test]
    fn special_dates_override_and_hours_close() {
        let mut week: [Vec<Hours>; 7] = std::array::from_fn(|_| {
            vec![Hours {
                start: 9 * 60,
                end: 18 * 60,
            }]
        });
        week[6] = Vec::new(); // closed on Sundays
        let sched = Schedule {
            regular: "regular".into(),
            week,
            special: vec![SpecialDates {
                name: "五一".into(),
                from: d(2026, 5, 1),
                to: d(2026, 5, 5),
                flow: "holiday".into(),
                hours: Some(vec![Hours {
                    start: 10 * 60,
                    end: 16 * 60,
                }]),
            }],
            closed: "closed".into(),
        };
        let at = |date, weekday, h: u16| LocalTime {
            date,
            weekday,
            minute: h * 60,
        };
        assert_eq!(sched.flow_at(at(d(2026, 4, 30), 3, 10)).flow, "regular");
        assert_eq!(sched.flow_at(at(d(2026, 4, 30), 3, 20)).flow, "closed");
        assert_eq!(sched.flow_at(at(d(2026, 5, 3), 6, 0)).flow, "closed");
        let holiday = sched.flow_at(at(d(2026, 5, 3), 6, 11));
        assert_eq!((holiday.flow, holiday.special), ("holiday", Some("五一")));
        assert_eq!(sched.flow_at(at(d(2026, 5, 6), 2, 11)).flow, "regular");
        assert_eq!(sched.flow_at(at(d(2026, 5, 10), 6, 11)).flow, "closed");
        assert!(Schedule::always("x").flow_at(at(d(2026, 1, 1), 3, 3)).open);
    }

    #[test]
    fn press_one_for_support() {
        let flow = demo_flow();
        flow.validate().unwrap();
        let mut s = IvrSession::start(flow, true, false, t(0));
        assert_eq!(actions(&mut s), vec![play("welcome")]);
        s.prompt_done(t(3000));
        assert_eq!(actions(&mut s), vec![play("menu")]);
        // Barge-in during the menu prompt.
        s.digit('1', t(4000));
        assert_eq!(
            actions(&mut s),
            vec![
                IvrAction::StopPrompt,
                IvrAction::Done(IvrOutcome::TransferGroup {
                    group: "support".into()
                })
            ]
        );
        assert!(s.is_finished());
        assert_eq!(s.trace().path, vec!["hours", "welcome", "menu", "support"]);
        assert_eq!(s.trace().keys, "1");
    }

    #[test]
    fn wrong_keys_and_silence_use_up_the_tries() {
        let mut s = IvrSession::start(demo_flow(), true, false, t(0));
        s.prompt_done(t(1000));
        s.prompt_done(t(2000)); // menu prompt over: listening
        assert_eq!(s.poll_timeout(), Some(t(7000)));
        s.digit('9', t(3000));
        actions(&mut s);
        s.prompt_done(t(4000)); // invalid prompt → menu again
        assert_eq!(actions(&mut s), vec![play("menu")]);
        s.digit('*', t(4500)); // repeat: no try used
        assert_eq!(actions(&mut s), vec![IvrAction::StopPrompt, play("menu")]);
        s.prompt_done(t(5000));
        s.handle_timeout(t(9999));
        assert!(actions(&mut s).is_empty());
        s.handle_timeout(t(10_000)); // silence: second try
        assert_eq!(actions(&mut s), vec![play("invalid")]);
        s.prompt_done(t(11_000));
        assert_eq!(actions(&mut s), vec![play("menu")]);
        s.prompt_done(t(12_000));
        s.digit('7', t(13_000)); // third failure: out
        assert_eq!(actions(&mut s), vec![play("goodbye")]);
        s.prompt_done(t(14_000));
        assert_eq!(actions(&mut s), vec![IvrAction::Done(IvrOutcome::HangUp)]);
        assert_eq!(s.trace().keys, "9*7");
    }

    #[test]
    fn a_prompt_end_while_waiting_for_a_key_changes_nothing() {
        let mut s = IvrSession::start(demo_flow(), true, false, t(0));
        s.prompt_done(t(1000));
        s.prompt_done(t(2000)); // menu prompt over: listening
        assert_eq!(s.poll_timeout(), Some(t(7000)));
        s.prompt_done(t(2500));
        assert!(!s.is_finished());
        assert_eq!(s.poll_timeout(), Some(t(7000)));
        s.digit('2', t(3000));
        assert_eq!(
            actions(&mut s).last(),
            Some(&IvrAction::Done(IvrOutcome::TransferGroup {
                group: "sales".into()
            }))
        );
    }

    #[test]
    fn collect_digits_with_terminator_and_minimum() {
        let mut s = IvrSession::start(demo_flow(), true, false, t(0));
        s.prompt_done(t(1));
        s.prompt_done(t(2));
        s.digit('3', t(3));
        assert_eq!(actions(&mut s).last(), Some(&play("enter-order")));
        s.prompt_done(t(4));
        for (i, k) in "12#".chars().enumerate() {
            s.digit(k, t(10 + i as u64));
        }
        // Too short: back to the menu.
        assert_eq!(actions(&mut s), vec![play("menu")]);
        s.digit('3', t(20));
        actions(&mut s);
        s.prompt_done(t(21));
        for (i, k) in "123456".chars().enumerate() {
            s.digit(k, t(30 + i as u64));
        }
        // No terminator: the digit timeout ends the input.
        s.handle_timeout(t(35 + 4000));
        assert_eq!(
            actions(&mut s),
            vec![IvrAction::Done(IvrOutcome::TransferGroup {
                group: "support".into()
            })]
        );
        assert_eq!(
            s.trace().vars.get("order").map(String::as_str),
            Some("123456")
        );
    }

    #[test]
    fn closed_hours_lead_to_voicemail_and_external_transfer_needs_permission() {
        let mut s = IvrSession::start(demo_flow(), false, false, t(0));
        assert_eq!(actions(&mut s), vec![play("closed")]);
        s.prompt_done(t(1));
        assert_eq!(
            actions(&mut s),
            vec![IvrAction::Done(IvrOutcome::Voicemail {
                max_len: Duration::from_secs(60)
            })]
        );
        let mut flow = demo_flow();
        flow.nodes.insert(
            "support".into(),
            Node::TransferNumber {
                number: "0085212345678".into(),
            },
        );
        for (allowed, want) in [
            (
                true,
                IvrOutcome::TransferNumber {
                    number: "0085212345678".into(),
                },
            ),
            (false, IvrOutcome::HangUp),
        ] {
            let mut s = IvrSession::start(flow.clone(), true, allowed, t(0));
            s.prompt_done(t(1));
            s.prompt_done(t(2));
            s.digit('1', t(3));
            assert_eq!(actions(&mut s).last(), Some(&IvrAction::Done(want)));
        }
    }

    fn level(key: char, score: u8, label: &str) -> SurveyLevel {
        SurveyLevel {
            key,
            score,
            label: label.into(),
        }
    }

    /// Key 1 is the best answer (5), key 3 the worst (1).
    fn survey(invalid_prompt: Option<&str>) -> Flow {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "s".into(),
            Node::Survey(Survey {
                prompt: "rate".into(),
                levels: vec![
                    level('1', 5, "very satisfied"),
                    level('2', 3, "satisfied"),
                    level('3', 1, "not satisfied"),
                ],
                timeout: Duration::from_secs(5),
                invalid_prompt: invalid_prompt.map(str::to_owned),
                thanks: Some("thanks".into()),
            }),
        );
        Flow {
            id: "survey".into(),
            start: "s".into(),
            nodes,
        }
    }

    fn hang_up() -> IvrAction {
        IvrAction::Done(IvrOutcome::HangUp)
    }

    #[test]
    fn a_level_key_records_its_score_and_thanks() {
        let flow = survey(Some("sorry"));
        flow.validate().unwrap();
        let mut s = IvrSession::start(flow.clone(), true, false, t(0));
        assert_eq!(actions(&mut s), vec![play("rate")]);
        // Until it is answered, leaving means hanging up on the survey.
        assert_eq!(s.satisfaction(), Some(Satisfaction::HungUp));
        s.prompt_done(t(1000));
        s.digit('1', t(2000));
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::Scored { score: 5, key: '1' })
        );
        assert_eq!(actions(&mut s), vec![play("thanks")]);
        // Keys during the thanks change nothing.
        s.digit('3', t(2500));
        s.prompt_done(t(3000));
        assert_eq!(actions(&mut s), vec![hang_up()]);
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::Scored { score: 5, key: '1' })
        );
        // Barge-in: a key during the question answers it.
        let mut s = IvrSession::start(flow, true, false, t(0));
        actions(&mut s);
        s.digit('3', t(500));
        assert_eq!(actions(&mut s), vec![IvrAction::StopPrompt, play("thanks")]);
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::Scored { score: 1, key: '3' })
        );
    }

    #[test]
    fn a_wrong_key_asks_once_more() {
        // With an invalid-key prompt: it plays, then the question again.
        let mut s = IvrSession::start(survey(Some("sorry")), true, false, t(0));
        actions(&mut s);
        s.prompt_done(t(1000));
        s.digit('9', t(2000));
        assert_eq!(actions(&mut s), vec![play("sorry")]);
        assert_eq!(s.poll_timeout(), None, "no wait during the prompt");
        s.prompt_done(t(3000));
        assert_eq!(actions(&mut s), vec![play("rate")]);
        s.prompt_done(t(4000));
        assert_eq!(s.poll_timeout(), Some(t(9000)));
        s.digit('2', t(5000));
        assert_eq!(actions(&mut s), vec![play("thanks")]);
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::Scored { score: 3, key: '2' })
        );
        // Without one: the question again at once; a second wrong key
        // ends the survey, without thanks.
        let mut s = IvrSession::start(survey(None), true, false, t(0));
        actions(&mut s);
        s.prompt_done(t(1000));
        s.digit('#', t(2000));
        assert_eq!(actions(&mut s), vec![play("rate")]);
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::InvalidKey { key: '#' })
        );
        s.digit('7', t(2500));
        assert_eq!(actions(&mut s), vec![IvrAction::StopPrompt, hang_up()]);
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::InvalidKey { key: '7' })
        );
        assert!(s.is_finished());
    }

    #[test]
    fn silence_ends_the_survey_as_a_timeout() {
        let mut s = IvrSession::start(survey(Some("sorry")), true, false, t(0));
        actions(&mut s);
        s.prompt_done(t(1000));
        assert_eq!(s.poll_timeout(), Some(t(6000)));
        s.handle_timeout(t(5999));
        assert!(actions(&mut s).is_empty());
        s.handle_timeout(t(6000));
        assert_eq!(actions(&mut s), vec![hang_up()]);
        assert_eq!(s.satisfaction(), Some(Satisfaction::Timeout));
        // Silence after a wrong key: the wrong key is what is recorded.
        let mut s = IvrSession::start(survey(None), true, false, t(0));
        actions(&mut s);
        s.prompt_done(t(1000));
        s.digit('0', t(2000));
        s.prompt_done(t(3000));
        let deadline = s.poll_timeout().unwrap();
        s.handle_timeout(deadline);
        assert_eq!(actions(&mut s).last(), Some(&hang_up()));
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::InvalidKey { key: '0' })
        );
    }

    #[test]
    fn a_flow_without_a_survey_has_no_outcome() {
        let mut s = IvrSession::start(demo_flow(), true, false, t(0));
        s.prompt_done(t(1));
        s.prompt_done(t(2));
        s.digit('1', t(3));
        assert!(s.is_finished());
        assert_eq!(s.satisfaction(), None);
    }

    fn survey_error(levels: Vec<SurveyLevel>) -> String {
        let mut flow = survey(None);
        if let Some(Node::Survey(s)) = flow.nodes.get_mut("s") {
            s.levels = levels;
        }
        match flow.validate() {
            Err(e @ FlowError::Invalid { .. }) => e.to_string(),
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn survey_levels_are_checked() {
        let five: Vec<SurveyLevel> = (1..=5)
            .map(|i| level(char::from(b'0' + i), i, "ok"))
            .collect();
        let mut six = five.clone();
        six.push(level('6', 6, "more"));
        for (levels, says) in [
            (
                vec![level('1', 1, "only")],
                "a survey has 2 to 5 levels; this one has 1",
            ),
            (six, "a survey has 2 to 5 levels; this one has 6"),
            (
                vec![level('1', 5, "good"), level('1', 1, "bad")],
                r#"levels "good" and "bad" both use key '1'"#,
            ),
            (
                vec![level('1', 5, "good"), level('A', 1, "bad")],
                r#"level "bad": 'A' is not a phone key (0-9, * or #)"#,
            ),
            (
                vec![level('1', 5, "good"), level('x', 1, "bad")],
                "'x' is not a phone key",
            ),
            (
                vec![level('1', 5, "good"), level('2', 5, "also good")],
                "both score 5",
            ),
            (
                vec![level('1', 11, "good"), level('2', 1, "bad")],
                "score 11 is above 10",
            ),
            (
                vec![level('1', 5, "good"), level('2', 1, " ")],
                "the level of key '2' has no label",
            ),
        ] {
            let e = survey_error(levels);
            assert!(e.contains(says), "{e:?} should say {says:?}");
            assert!(e.starts_with("flow survey: node \"s\": "), "{e}");
        }
        assert_eq!(
            survey_error(Vec::new()),
            "flow survey: node \"s\": a survey has 2 to 5 levels; this one has 0"
        );
        let mut flow = survey(None);
        if let Some(Node::Survey(s)) = flow.nodes.get_mut("s") {
            s.levels = five;
            s.levels[4].key = '#';
        }
        assert_eq!(flow.validate(), Ok(()));
    }

    /// Flows stored before levels existed have `max`; storage reads them
    /// as these levels.
    #[test]
    fn levels_from_an_old_max_run_as_keys_1_to_max() {
        let mut flow = survey(None);
        if let Some(Node::Survey(s)) = flow.nodes.get_mut("s") {
            s.levels = Survey::levels_up_to(5);
        }
        assert_eq!(flow.validate(), Ok(()));
        let mut s = IvrSession::start(flow.clone(), true, false, t(0));
        s.prompt_done(t(1));
        s.digit('4', t(2));
        assert_eq!(
            s.satisfaction(),
            Some(Satisfaction::Scored { score: 4, key: '4' })
        );
        // Those that scored up to 9 are refused now, with the reason.
        if let Some(Node::Survey(s)) = flow.nodes.get_mut("s") {
            s.levels = Survey::levels_up_to(9);
        }
        assert!(flow
            .validate()
            .is_err_and(|e| e.to_string().contains("this one has 9")));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut flow = demo_flow();
        flow.nodes.insert(
            "welcome".into(),
            Node::Play {
                prompt: "w".into(),
                next: "nowhere".into(),
            },
        );
        assert_eq!(
            flow.validate(),
            Err(FlowError::Dangling {
                flow: "demo".into(),
                from: "welcome".into(),
                to: "nowhere".into()
            })
        );
        let mut flow = demo_flow();
        flow.start = "x".into();
        assert!(matches!(flow.validate(), Err(FlowError::NoStart { .. })));
        // A loop of time branches ends the call instead of spinning.
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "a".into(),
            Node::TimeBranch {
                open: "a".into(),
                closed: "a".into(),
            },
        );
        let flow = Flow {
            id: "loop".into(),
            start: "a".into(),
            nodes,
        };
        assert_eq!(
            flow.validate(),
            Err(FlowError::NoExit {
                flow: "loop".into(),
                nodes: vec!["a".into()]
            })
        );
        let mut s = IvrSession::start(flow, true, false, t(0));
        assert_eq!(actions(&mut s), vec![IvrAction::Done(IvrOutcome::HangUp)]);
    }

    #[test]
    fn unreachable_nodes_and_loops_without_exit_are_errors() {
        let mut flow = demo_flow();
        flow.nodes
            .insert("orphan".into(), Node::HangUp { prompt: None });
        assert_eq!(
            flow.validate(),
            Err(FlowError::Unreachable {
                flow: "demo".into(),
                node: "orphan".into()
            })
        );
        // welcome -> menu, whose keys and failure all lead back to welcome.
        let mut flow = demo_flow();
        flow.nodes.insert(
            "menu".into(),
            Node::Menu {
                prompt: "menu".into(),
                options: [('1', "welcome".into())].into_iter().collect(),
                timeout: Duration::from_secs(5),
                invalid_prompt: None,
                retries: 1,
                repeat_key: None,
                on_fail: "welcome".into(),
            },
        );
        for gone in ["support", "sales", "order", "bye"] {
            flow.nodes.remove(gone);
        }
        assert_eq!(
            flow.validate(),
            Err(FlowError::NoExit {
                flow: "demo".into(),
                nodes: vec!["menu".into(), "welcome".into()]
            })
        );
        // A loop with a way out is fine: the menu's failure hangs up.
        let mut flow = demo_flow();
        if let Some(Node::Collect { next, .. }) = flow.nodes.get_mut("order") {
            *next = "menu".into();
        }
        assert_eq!(flow.validate(), Ok(()));
    }

    #[test]
    fn prompts_and_groups_of_a_flow() {
        let flow = demo_flow();
        assert_eq!(
            flow.prompts().into_iter().collect::<Vec<_>>(),
            [
                "closed",
                "enter-order",
                "goodbye",
                "invalid",
                "menu",
                "welcome"
            ]
        );
        assert_eq!(
            flow.groups().into_iter().collect::<Vec<_>>(),
            ["sales", "support"]
        );
    }

    /// What the customer does at a survey.
    #[derive(Debug, Clone)]
    enum Input {
        Key(char),
        /// The prompt playing ends.
        PromptDone,
        /// Time passes to the key deadline, if one is set.
        Silence,
    }

    fn input() -> impl proptest::strategy::Strategy<Value = Input> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::sample::select("0123456789*#ABCD".chars().collect::<Vec<_>>())
                .prop_map(Input::Key),
            Just(Input::PromptDone),
            Just(Input::Silence),
        ]
    }

    /// 2 to 5 levels on distinct keys with distinct scores.
    fn levels() -> impl proptest::strategy::Strategy<Value = Vec<SurveyLevel>> {
        use proptest::prelude::*;
        let keys: Vec<char> = "0123456789*#".chars().collect();
        (2usize..=5)
            .prop_flat_map(move |n| {
                (
                    proptest::sample::subsequence(keys.clone(), n).prop_shuffle(),
                    proptest::sample::subsequence((0..=SURVEY_MAX_SCORE).collect::<Vec<_>>(), n)
                        .prop_shuffle(),
                )
            })
            .prop_map(|(keys, scores)| {
                keys.into_iter()
                    .zip(scores)
                    .map(|(key, score)| level(key, score, "some label"))
                    .collect()
            })
    }

    proptest::proptest! {
        /// Whatever the customer presses and whenever it stays silent, the
        /// outcome follows the rule: the first level key before a second
        /// wrong key scores that level; a second wrong key, or silence
        /// after a wrong key, records the last wrong key; silence alone is
        /// a timeout; leaving before any of that is hanging up. The
        /// session ends as soon as the outcome is decided.
        #[test]
        fn survey_outcomes_follow_the_keys(
            levels in levels(),
            with_invalid_prompt in proptest::bool::ANY,
            inputs in proptest::collection::vec(input(), 0..12),
        ) {
            let flow = Flow {
                id: "p".into(),
                start: "s".into(),
                nodes: BTreeMap::from([(
                    "s".into(),
                    Node::Survey(Survey {
                        prompt: "rate".into(),
                        levels: levels.clone(),
                        timeout: Duration::from_secs(5),
                        invalid_prompt: with_invalid_prompt.then(|| "sorry".into()),
                        thanks: None,
                    }),
                )]),
            };
            proptest::prop_assert_eq!(flow.validate(), Ok(()));
            let mut s = IvrSession::start(flow, true, false, t(0));
            let mut now = t(0);
            // The rule, over the inputs that reach the survey.
            let mut wrong: Option<char> = None;
            let mut decided: Option<Satisfaction> = None;
            for i in inputs {
                now = now.after(Duration::from_millis(10));
                match i {
                    Input::Key(k) => {
                        s.digit(k, now);
                        if decided.is_none() {
                            decided = match (levels.iter().find(|l| l.key == k), wrong) {
                                (Some(l), _) => Some(Satisfaction::Scored { score: l.score, key: k }),
                                (None, Some(_)) => Some(Satisfaction::InvalidKey { key: k }),
                                (None, None) => {
                                    wrong = Some(k);
                                    None
                                }
                            };
                        }
                    }
                    Input::PromptDone => s.prompt_done(now),
                    Input::Silence => {
                        if let Some(deadline) = s.poll_timeout() {
                            proptest::prop_assert!(decided.is_none(), "a deadline after the end");
                            now = deadline;
                            s.handle_timeout(now);
                            decided = Some(match wrong {
                                Some(key) => Satisfaction::InvalidKey { key },
                                None => Satisfaction::Timeout,
                            });
                        }
                    }
                }
                proptest::prop_assert_eq!(s.is_finished(), decided.is_some());
            }
            let want = decided.or(wrong.map(|key| Satisfaction::InvalidKey { key }))
                .unwrap_or(Satisfaction::HungUp);
            proptest::prop_assert_eq!(s.satisfaction(), Some(want));
            let done: Vec<IvrAction> = actions(&mut s)
                .into_iter()
                .filter(|a| matches!(a, IvrAction::Done(_)))
                .collect();
            proptest::prop_assert_eq!(done.len(), usize::from(decided.is_some()));
        }
    }
}
