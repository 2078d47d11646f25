//! The demo tenant (`--demo`): what a newcomer needs to place a call.
//!
//! Seeding is idempotent and safe to run from several nodes sharing one
//! store at once: every record is created only if absent, so a record an
//! administrator changed later is left alone, and racing seeders each
//! succeed.

use crate::model::{
    Agent, AgentPolicy, CustomStatus, Device, Flow, FlowVersion, GroupConfig, Hotline, IvrFlow,
    IvrSchedule, IvrSettings, Member, NoAgentRule, Node, Overflow, Prompt, PromptSource,
    QueueCallback, Retention, Review, ReviewStatus, Schedule, SipAccount, SkillGroup, Strategy,
    Survey, SurveyLevel, Tenant, TenantId, Timestamp,
};
use crate::{ErrorKind, Result, Store};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::time::Duration;

/// The demo tenant's id.
pub const DEMO_TENANT: &str = "demo";
/// The demo hotline's number.
pub const DEMO_HOTLINE: &str = "4000";

/// What a seeding run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedReport {
    /// Records this run created.
    pub created: usize,
    /// Records that existed already.
    pub existing: usize,
}

impl SeedReport {
    fn count(&mut self, created: bool) {
        if created {
            self.created += 1;
        } else {
            self.existing += 1;
        }
    }
}

/// The digest HA1 of a SIP account (RFC 2617: MD5 of `user:realm:password`).
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    hex::encode(Md5::digest(format!("{user}:{realm}:{password}").as_bytes()))
}

/// The SHA-256 HA1 of a SIP account (RFC 8760).
pub fn ha1_sha256(user: &str, realm: &str, password: &str) -> String {
    use sha2::Sha256;
    hex::encode(Sha256::digest(
        format!("{user}:{realm}:{password}").as_bytes(),
    ))
}

fn demo_flow() -> Flow {
    let n = |s: &str| s.to_owned();
    let mut nodes = BTreeMap::new();
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
    Flow {
        id: n("demo"),
        start: n("welcome"),
        nodes,
    }
}

fn survey_flow() -> Flow {
    let mut nodes = BTreeMap::new();
    nodes.insert(
        "rate".to_owned(),
        Node::Survey(Survey {
            prompt: "survey".into(),
            levels: [
                ('1', 1, "very dissatisfied"),
                ('2', 2, "dissatisfied"),
                ('3', 3, "neither"),
                ('4', 4, "satisfied"),
                ('5', 5, "very satisfied"),
            ]
            .into_iter()
            .map(|(key, score, label)| SurveyLevel {
                key,
                score,
                label: label.into(),
            })
            .collect(),
            timeout: Duration::from_secs(8),
            invalid_prompt: Some("invalid".into()),
            thanks: Some("thanks".into()),
        }),
    );
    Flow {
        id: "survey".into(),
        start: "rate".into(),
        nodes,
    }
}

const PROMPTS: [(&str, &str); 10] = [
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
    (
        "callback_offer",
        "To be called back instead of waiting, press 9.",
    ),
    (
        "callback_confirm",
        "Thank you. You keep your place in the queue, and we will call you back. Goodbye.",
    ),
];

/// Seeds the demo tenant: SIP accounts and agents 1001-1003 (passwords
/// pass1001-pass1003, HA1 for `realm`; each agent bound to the user of
/// its name, whom the HTTP API creates), skill groups `support` (1001,
/// 1002) and `sales` (1003), approved TTS prompts, the published flows
/// `demo` and `survey`, a schedule open all day and hotline 4000.
pub async fn seed_demo(store: &dyn Store, realm: &str, now: Timestamp) -> Result<SeedReport> {
    let tenant = TenantId::from(DEMO_TENANT);
    let mut report = SeedReport::default();
    let created = store
        .create_if_absent(&Tenant {
            tenant: tenant.clone(),
            name: "Switchboard demo".into(),
            utc_offset_minutes: 480,
            service_level: Duration::from_secs(20),
            allow_external_transfer: false,
            survey_flow: Some("survey".into()),
            retention: Retention::default(),
            enabled: true,
            // Offered once the tenant has a trunk to call back through.
            queue_callback: Some(QueueCallback {
                key: '9',
                offer: "callback_offer".into(),
                confirm: "callback_confirm".into(),
            }),
            outbound_wrap_up: Duration::from_secs(10),
            sip_domains: Vec::new(),
        })
        .await?;
    report.count(created);

    for (id, name, selectable) in [("training", "培训", false), ("meeting", "会议", true)] {
        let created = store
            .create_if_absent(&CustomStatus {
                tenant: tenant.clone(),
                id: id.into(),
                name: name.into(),
                selectable,
            })
            .await?;
        report.count(created);
    }
    let policy = AgentPolicy {
        selectable_custom: vec!["meeting".into()],
        custom: vec!["training".into(), "meeting".into()],
        ..AgentPolicy::default()
    };

    for n in 1001..=1003 {
        let user = n.to_string();
        let created = store
            .create_if_absent(&SipAccount {
                tenant: tenant.clone(),
                id: user.clone(),
                ha1: ha1(&user, realm, &format!("pass{n}")),
                realm: realm.to_owned(),
                ha1_sha256: Some(ha1_sha256(&user, realm, &format!("pass{n}"))),
                enabled: true,
            })
            .await?;
        report.count(created);
        let created = store
            .create_if_absent(&Agent {
                tenant: tenant.clone(),
                id: user.as_str().into(),
                name: format!("Agent {n}"),
                seat: user.clone(),
                // The user of the same name works as this agent.
                user: Some(user.clone()),
                device: Device::Sip {
                    account: user.clone(),
                },
                policy: policy.clone(),
                telesales: false,
                enabled: true,
            })
            .await?;
        report.count(created);
    }

    for (id, name, members) in [
        ("support", "技术支持", &["1001", "1002"][..]),
        ("sales", "销售", &["1003"][..]),
    ] {
        let created = store
            .create_if_absent(&SkillGroup {
                tenant: tenant.clone(),
                id: id.into(),
                name: name.into(),
                config: GroupConfig {
                    strategy: Strategy::LongestIdle,
                    ring_timeout: Duration::from_secs(20),
                    wrap_up: Duration::from_secs(10),
                    max_queue_time: Duration::from_secs(60),
                    overflow: Overflow::Voicemail,
                    no_agent: NoAgentRule::Queue,
                    announce_every: Some(Duration::from_secs(30)),
                },
                members: members
                    .iter()
                    .map(|m| Member {
                        agent: (*m).into(),
                        level: 1,
                    })
                    .collect(),
                telesales: false,
            })
            .await?;
        report.count(created);
    }

    for (id, text) in PROMPTS {
        let created = store
            .create_if_absent(&Prompt {
                tenant: tenant.clone(),
                id: id.into(),
                name: id.into(),
                source: PromptSource::Tts {
                    text: text.into(),
                    voice: "en-us".into(),
                },
                review: Review {
                    status: ReviewStatus::Approved,
                    reviewer: Some("seed".into()),
                    reason: None,
                    at: Some(now),
                },
                created: now,
            })
            .await?;
        report.count(created);
    }

    for (flow, name) in [(demo_flow(), "Demo menu"), (survey_flow(), "Survey")] {
        let created = seed_flow(store, &tenant, flow, name, now).await?;
        report.count(created);
    }

    let created = store
        .create_if_absent(&IvrSchedule {
            tenant: tenant.clone(),
            id: "always".into(),
            name: "Always open".into(),
            schedule: Schedule::always("demo"),
        })
        .await?;
    report.count(created);
    let created = store
        .create_if_absent(&Hotline {
            tenant: tenant.clone(),
            number: DEMO_HOTLINE.into(),
            name: "Demo hotline".into(),
            schedule: "always".into(),
            settings: IvrSettings {
                waiting_prompt: Some("waiting".into()),
                max_queue_time: None,
                queue_timeout_prompt: Some("voicemail".into()),
            },
            enabled: true,
        })
        .await?;
    report.count(created);
    Ok(report)
}

/// A flow published at version 1. Version 1 is created exactly (not "the
/// next"), so racing seeders cannot add two, and a run after a crash
/// between the two writes completes the flow.
async fn seed_flow(
    store: &dyn Store,
    tenant: &TenantId,
    flow: Flow,
    name: &str,
    now: Timestamp,
) -> Result<bool> {
    let created = store
        .create_if_absent(&IvrFlow {
            tenant: tenant.clone(),
            id: flow.id.clone(),
            name: name.into(),
            published: Some(1),
        })
        .await?;
    if store.flow_version(tenant, &flow.id, 1).await?.is_none() {
        let v = FlowVersion {
            tenant: tenant.clone(),
            flow: flow.id.clone(),
            version: 1,
            created: now,
            author: Some("seed".into()),
            definition: flow,
        };
        match store.add_flow_version(&v).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}
