//! Which flow a caller gets: a special date (holiday) flow, and the closed
//! flow outside working hours, configured in the store before the node
//! starts and heard by a scripted caller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::customer::{match_score, spoken, Customer};
use common::records::{add_prompt, publish_flow, seed_demo_then, set_schedule, wait_demo_calls};
use common::Node;
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_storage::model::{
    Day, Flow, HangupReason, HangupSide, Hours, Node as IvrNode, Schedule, SpecialDates, Timestamp,
};

const HOLIDAY: &str = "Happy National Day. Our office is closed for the holiday.";
const CLOSED: &str = "Our office is closed now. Please call again during working hours.";
const WELCOME: &str = "Welcome to the Switchboard demo hotline.";

/// A flow that plays `prompt` and hangs up.
fn announce_and_hang_up(id: &str, prompt: &str) -> Flow {
    let mut nodes = BTreeMap::new();
    nodes.insert(
        "say".to_owned(),
        IvrNode::Play {
            prompt: prompt.into(),
            next: "bye".into(),
        },
    );
    nodes.insert("bye".to_owned(), IvrNode::HangUp { prompt: None });
    Flow {
        id: id.into(),
        start: "say".into(),
        nodes,
    }
}

fn today_in_china() -> switchboard_storage::model::Date {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Day::of(Timestamp(ms), 480).date()
}

/// Calls 4000, waits for the node to hang up, returns what was heard.
fn call_and_listen(node: &Node) -> Vec<i16> {
    let c = Customer::call(node.sip, "4000", "13912345678");
    assert!(c.answered, "status {}", c.status);
    assert!(
        c.wait_bye(Duration::from_secs(15)),
        "the node did not hang up"
    );
    c.heard()
}

#[test]
fn on_a_special_date_the_holiday_flow_runs() {
    let dir = Node::fresh_data_dir();
    let today = today_in_china();
    seed_demo_then(&dir, |store| {
        Box::pin(async move {
            add_prompt(store, "holiday", HOLIDAY).await;
            publish_flow(store, announce_and_hang_up("holiday", "holiday")).await;
            let mut s = Schedule::always("demo");
            s.special.push(SpecialDates {
                name: "国庆节".into(),
                from: today,
                to: today,
                flow: "holiday".into(),
                hours: None,
            });
            set_schedule(store, s).await;
        })
    });
    let node = Node::start_in(dir, &[]);
    let heard = call_and_listen(&node);
    let holiday = match_score(&heard, &spoken(HOLIDAY, "en-us"));
    let welcome = match_score(&heard, &spoken(WELCOME, "en-us"));
    assert!(holiday > 0.9, "holiday prompt not heard ({holiday:.2})");
    assert!(welcome < 0.8, "the regular flow played ({welcome:.2})");
    let calls = wait_demo_calls(&node.data_dir, 1, Duration::from_secs(20));
    let r = calls.first().expect("a call record");
    assert_eq!(r.ivr.path, vec!["say", "bye"]);
    assert_eq!(
        (r.hangup_side, r.hangup_reason),
        (HangupSide::System, HangupReason::IvrHangUp)
    );
}

#[test]
fn outside_working_hours_the_closed_flow_runs() {
    let dir = Node::fresh_data_dir();
    seed_demo_then(&dir, |store| {
        Box::pin(async move {
            add_prompt(store, "closed", CLOSED).await;
            publish_flow(store, announce_and_hang_up("closed", "closed")).await;
            // Open no day of the week: now is always outside the hours.
            let s = Schedule {
                regular: "demo".into(),
                week: std::array::from_fn(|_| Vec::<Hours>::new()),
                special: Vec::new(),
                closed: "closed".into(),
            };
            set_schedule(store, s).await;
        })
    });
    let node = Node::start_in(dir, &[]);
    let heard = call_and_listen(&node);
    let closed = match_score(&heard, &spoken(CLOSED, "en-us"));
    let welcome = match_score(&heard, &spoken(WELCOME, "en-us"));
    assert!(closed > 0.9, "closed prompt not heard ({closed:.2})");
    assert!(welcome < 0.8, "the regular flow played ({welcome:.2})");
}

#[test]
fn an_approved_wav_prompt_plays_and_a_pending_one_does_not() {
    use switchboard_storage::model::{Prompt, PromptSource, Review, ReviewStatus, TenantId};
    use switchboard_storage::Expect;
    let dir = Node::fresh_data_dir();
    // A 22,050 Hz WAV as an admin would upload it.
    let wav = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.join("prompts")).unwrap();
        let path = dir.join("prompts").join(name);
        let ok = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us", "-w"])
            .arg(&path)
            .arg(text)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "espeak-ng failed");
        path
    };
    let approved = wav("approved.wav", "This recording was reviewed and approved.");
    let pending = wav("pending.wav", "This recording has not been reviewed yet.");
    seed_demo_then(&dir, |store| {
        Box::pin(async move {
            for (id, file, status) in [
                ("ok", "prompts/approved.wav", ReviewStatus::Approved),
                ("draft", "prompts/pending.wav", ReviewStatus::Pending),
            ] {
                store
                    .put(
                        &Prompt {
                            tenant: TenantId::from("demo"),
                            id: id.into(),
                            name: id.into(),
                            source: PromptSource::Wav {
                                file: file.into(),
                                sha256: String::new(),
                                duration_ms: 0,
                            },
                            review: Review {
                                status,
                                reviewer: None,
                                reason: None,
                                at: None,
                            },
                            created: Timestamp(0),
                        },
                        Expect::Any,
                    )
                    .await
                    .unwrap();
            }
            let mut nodes = BTreeMap::new();
            nodes.insert(
                "a".to_owned(),
                IvrNode::Play {
                    prompt: "ok".into(),
                    next: "b".into(),
                },
            );
            nodes.insert(
                "b".to_owned(),
                IvrNode::Play {
                    prompt: "draft".into(),
                    next: "bye".into(),
                },
            );
            nodes.insert("bye".to_owned(), IvrNode::HangUp { prompt: None });
            publish_flow(
                store,
                Flow {
                    id: "recorded".into(),
                    start: "a".into(),
                    nodes,
                },
            )
            .await;
            set_schedule(store, Schedule::always("recorded")).await;
        })
    });
    let node = Node::start_in(dir, &[]);
    let heard = call_and_listen(&node);
    let read = |p: &std::path::Path| {
        switchboard_media::rtp::prompt::decode_wav(std::fs::File::open(p).unwrap())
            .unwrap()
            .samples()
            .to_vec()
    };
    let ok = match_score(&heard, &read(&approved));
    let draft = match_score(&heard, &read(&pending));
    assert!(ok > 0.9, "the approved WAV was not heard ({ok:.2})");
    assert!(draft < 0.8, "a prompt pending review played ({draft:.2})");
}
