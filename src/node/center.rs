//! The call center a node runs: hotlines, prompts, and the Agent and
//! SkillGroup actors. `--demo` builds the demo tenant's: hotline `4000`
//! (welcome, "press 1 for support, 2 for sales"), groups `support` (agents
//! 1001 and 1002) and `sales` (1003), open all week, 60 s of queueing then
//! voicemail, agents signed in with their SIP accounts and ready.

use anyhow::Result;
use ractor::{Actor, ActorRef};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_actors::acd::{GroupConfig, Member, NoAgentRule, Overflow, Strategy};
use switchboard_actors::agent::{AgentEvent, AgentPolicy, Device, Status};
use switchboard_actors::call::CallSummary;
use switchboard_actors::ivr::{Flow, Node, Schedule};
use switchboard_actors::shell::{AgentActor, AgentMsg, Clock, GroupMsg, SkillGroupActor};
use switchboard_actors::AgentId;
use switchboard_media::rtp::prompt::Prompt;
use tokio::sync::mpsc;

/// A dialled number that reaches the IVR.
#[derive(Debug, Clone)]
pub struct Hotline {
    pub schedule: Schedule,
    pub flows: HashMap<String, Flow>,
    /// UTC offset of the tenant, minutes east (China: +480).
    pub utc_offset: i32,
    /// The survey played when the agent hangs up first.
    pub survey: Option<Flow>,
}

/// Prompt texts by id, spoken with espeak-ng once and kept.
#[derive(Debug, Clone)]
pub struct Prompts {
    texts: Arc<HashMap<String, String>>,
    voice: String,
    cache: Arc<Mutex<HashMap<String, Prompt>>>,
}

impl Prompts {
    /// The audio of prompt `id` (speech, or a short tone when espeak-ng
    /// is missing). Unknown ids are silence.
    pub fn get(&self, id: &str) -> Prompt {
        if let Ok(c) = self.cache.lock() {
            if let Some(s) = c.get(id) {
                return s.clone();
            }
        }
        let samples = match self.texts.get(id) {
            Some(text) => crate::tts::speak(text, &self.voice).unwrap_or_else(|e| {
                tracing::warn!(error = %e, prompt = id, "no speech for prompt, playing a tone");
                Prompt::tone(400.0, 6000, Duration::from_secs(1))
            }),
            None => Prompt::silence(Duration::from_secs(1)),
        };
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id.to_owned(), samples.clone());
        }
        samples
    }

    /// "You are number 2 in the queue…", in the prompts' language; spoken
    /// once per text and kept.
    pub fn announcement(&self, position: usize, expected_wait: Option<Duration>) -> Prompt {
        let chinese = self.voice.starts_with("cmn") || self.voice.starts_with("yue");
        let minutes = expected_wait.map(|w| w.as_secs().div_ceil(60).max(1));
        let text = match (chinese, minutes) {
            (false, m) => {
                let mut t = if position <= 1 {
                    "You are next in the queue.".to_owned()
                } else {
                    format!("You are number {position} in the queue.")
                };
                match m {
                    Some(1) => t.push_str(" Your expected wait is about one minute."),
                    Some(m) => t.push_str(&format!(" Your expected wait is about {m} minutes.")),
                    None => {}
                }
                t
            }
            (true, m) => {
                let mut t = if position <= 1 {
                    "您是下一位。".to_owned()
                } else {
                    format!("您前面还有{}位客户。", position - 1)
                };
                if let Some(m) = m {
                    t.push_str(&format!("预计等待{m}分钟。"));
                }
                t
            }
        };
        let key = format!("announce:{text}");
        if let Ok(c) = self.cache.lock() {
            if let Some(p) = c.get(&key) {
                return p.clone();
            }
        }
        let prompt = crate::tts::speak(&text, &self.voice).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no speech for the queue announcement");
            Prompt::silence(Duration::from_millis(20))
        });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, prompt.clone());
        }
        prompt
    }

    /// Speaks every prompt now, so calls never wait for espeak-ng.
    pub fn warm(&self) {
        for id in self.texts.keys() {
            self.get(id);
        }
    }
}

/// The running call center of a node.
#[derive(Debug)]
pub struct CallCenter {
    pub tenant: String,
    pub hotlines: HashMap<String, Hotline>,
    /// Agent actors, and the SIP account each is signed in with.
    pub agents: HashMap<AgentId, (ActorRef<AgentMsg>, String)>,
    pub groups: HashMap<String, ActorRef<GroupMsg>>,
    pub prompts: Prompts,
    pub clock: Clock,
    pub records: mpsc::UnboundedSender<CallSummary>,
}

impl CallCenter {
    /// The demo tenant's call center.
    pub async fn demo(
        records: mpsc::UnboundedSender<CallSummary>,
        status_log: mpsc::UnboundedSender<AgentEvent>,
    ) -> Result<CallCenter> {
        let clock = Clock::system();
        let texts: HashMap<String, String> = [
            ("welcome", "Welcome to the Switchboard demo hotline."),
            ("menu", "For support, press 1. For sales, press 2."),
            ("invalid", "Sorry, that is not a valid choice."),
            (
                "waiting",
                "All our agents are busy. Please hold, your call is important to us.",
            ),
            (
                "voicemail",
                "Nobody can take your call right now. Please leave a message after the tone.",
            ),
            ("goodbye", "Thank you for calling. Goodbye."),
            (
                "survey",
                "Please rate our service from 1 to 5, 5 being the best.",
            ),
            ("thanks", "Thank you for your feedback."),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let prompts = Prompts {
            texts: Arc::new(texts),
            voice: "en-us".into(),
            cache: Arc::new(Mutex::new(HashMap::new())),
        };
        let mut agents = HashMap::new();
        for n in 1001..=1003 {
            let id = AgentId(n.to_string());
            let (r, _) = Actor::spawn(
                Some(format!("agent/demo/{n}")),
                AgentActor {
                    id: id.clone(),
                    policy: AgentPolicy::default(),
                    clock,
                    events: Some(status_log.clone()),
                },
                (),
            )
            .await?;
            let signed = ractor::call!(r, |reply| AgentMsg::SignIn {
                device: Device::Sip {
                    account: n.to_string()
                },
                initial: Status::Ready,
                reply
            })?;
            if let Err(e) = signed {
                anyhow::bail!("demo agent {n} cannot sign in: {e}");
            }
            agents.insert(id, (r, n.to_string()));
        }
        let mut groups = HashMap::new();
        for (name, members) in [("support", &["1001", "1002"][..]), ("sales", &["1003"][..])] {
            let (g, _) = Actor::spawn(
                Some(format!("group/demo/{name}")),
                SkillGroupActor {
                    id: name.into(),
                    config: GroupConfig {
                        strategy: Strategy::LongestIdle,
                        ring_timeout: Duration::from_secs(20),
                        wrap_up: Duration::from_secs(10),
                        max_queue_time: Duration::from_secs(60),
                        overflow: Overflow::Voicemail,
                        no_agent: NoAgentRule::Queue,
                        announce_every: Some(Duration::from_secs(30)),
                    },
                    clock,
                    seed: rand::random(),
                },
                (),
            )
            .await?;
            let list = members
                .iter()
                .filter_map(|m| {
                    let (r, _) = agents.get(&AgentId((*m).into()))?;
                    Some((
                        Member {
                            agent: (*m).into(),
                            level: 1,
                        },
                        r.clone(),
                    ))
                })
                .collect();
            g.cast(GroupMsg::Members(list))?;
            groups.insert(name.to_owned(), g);
        }
        let mut hotlines = HashMap::new();
        hotlines.insert("4000".to_owned(), demo_hotline());
        Ok(CallCenter {
            tenant: "demo".into(),
            hotlines,
            agents,
            groups,
            prompts,
            clock,
            records,
        })
    }

    /// The agent whose device is SIP account `account`.
    pub fn agent_account(&self, agent: &AgentId) -> Option<&str> {
        self.agents.get(agent).map(|(_, a)| a.as_str())
    }
}

fn demo_hotline() -> Hotline {
    let mut nodes = BTreeMap::new();
    let n = |s: &str| s.to_owned();
    nodes.insert(
        n("welcome"),
        Node::Play {
            prompt: n("welcome"),
            next: n("menu"),
        },
    );
    nodes.insert(
        n("menu"),
        Node::Menu {
            prompt: n("menu"),
            options: [('1', n("support")), ('2', n("sales"))]
                .into_iter()
                .collect(),
            timeout: Duration::from_secs(6),
            invalid_prompt: Some(n("invalid")),
            retries: 2,
            repeat_key: Some('*'),
            on_fail: n("goodbye"),
        },
    );
    nodes.insert(
        n("support"),
        Node::TransferGroup {
            group: n("support"),
        },
    );
    nodes.insert(n("sales"), Node::TransferGroup { group: n("sales") });
    nodes.insert(
        n("goodbye"),
        Node::HangUp {
            prompt: Some(n("goodbye")),
        },
    );
    let flow = Flow {
        id: n("demo"),
        start: n("welcome"),
        nodes,
    };
    let mut survey_nodes = BTreeMap::new();
    survey_nodes.insert(
        n("rate"),
        Node::Survey {
            prompt: n("survey"),
            max: 5,
            timeout: Duration::from_secs(8),
            thanks: Some(n("thanks")),
        },
    );
    Hotline {
        schedule: Schedule::always("demo"),
        flows: [(n("demo"), flow)].into_iter().collect(),
        utc_offset: 480,
        survey: Some(Flow {
            id: n("survey"),
            start: n("rate"),
            nodes: survey_nodes,
        }),
    }
}
