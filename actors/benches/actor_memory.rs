//! Resident memory per actor: a bare `ractor` actor (the framework's own
//! floor: its cell, two unbounded mailboxes and the task), an Agent
//! actor signed in and ready, the same agent once it rests (no actor:
//! its state kept in its home, as a node keeps an idle agent), and an
//! agent's proxy, as every node of a cluster holds one per agent, resting
//! and awake.
//!
//! Run: `cargo bench -p switchboard-actors --bench actor_memory`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::agent_ref::{AgentRef, REST_AFTER};
use switchboard_actors::remote::{Entity, Link, Registry, Wire};
use switchboard_actors::shell::{AgentActor, AgentMsg, Clock};
use switchboard_actors::TenantId;
use switchboard_storage::model::{AgentPolicy, Device, Status};

const ACTORS: usize = 20_000;

struct Bare;

impl Actor for Bare {
    type Msg = u32;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<u32>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// A cluster where every agent lives on another node, which never answers.
#[derive(Debug)]
struct Elsewhere;

impl Link for Elsewhere {
    fn me(&self) -> &str {
        "a"
    }
    fn home(&self, _: &TenantId, _: Entity, _: &str) -> String {
        "b".into()
    }
    fn send(&self, _: &str, _: &Wire) -> bool {
        true
    }
    fn is_up(&self, _: &str) -> bool {
        true
    }
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn report(what: &str, before: u64) {
    let per = rss().saturating_sub(before) as f64 / ACTORS as f64 / 1024.0;
    println!("{what}: {per:.2} KiB per actor ({ACTORS} actors)");
}

/// Agents rest in waves this big.
const WAVE: usize = 200;

/// Agents as a node holds them once idle: each signs in (its actor
/// starts), then rests once nothing was in flight for `REST_AFTER` (its
/// actor stops). In waves of [`WAVE`], in paused time, so one wave's
/// actors are freed before the next wave's start: the resident set grows
/// by the resting agents and at most one wave's actors (the allocator
/// keeps what they freed for the next).
fn resting_agents() -> Vec<AgentRef> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let clock = Clock::system();
        let mut all = Vec::with_capacity(ACTORS);
        for wave in 0..ACTORS / WAVE {
            for j in 0..WAVE {
                let id = format!("r{:05}", wave * WAVE + j);
                let agent = AgentRef::start(AgentActor {
                    id: id.as_str().into(),
                    policy: AgentPolicy::default(),
                    clock,
                    events: None,
                    recovery: None,
                    rest: None,
                });
                let signed = ractor::call!(agent, |reply| AgentMsg::SignIn {
                    device: Device::Sip { account: id },
                    initial: Status::Ready,
                    reply
                })
                .unwrap();
                signed.unwrap();
                agent.cast(AgentMsg::DeviceOnline(true)).unwrap();
                all.push(agent);
            }
            // Every message handled, then the quiet time passes.
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            tokio::time::advance(REST_AFTER + Duration::from_secs(1)).await;
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        }
        let rested = all.iter().filter(|a| a.is_resting()).count();
        assert_eq!(rested, ACTORS, "every agent rests");
        all
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let before = rss();
    let mut bare = Vec::with_capacity(ACTORS);
    for _ in 0..ACTORS {
        bare.push(Actor::spawn(None, Bare, ()).await.unwrap().0);
    }
    report("bare ractor actor", before);

    let before = rss();
    let clock = Clock::system();
    let mut agents = Vec::with_capacity(ACTORS);
    for i in 0..ACTORS {
        let (actor, _) = Actor::spawn(
            None,
            AgentActor {
                id: format!("a{i:05}").as_str().into(),
                policy: AgentPolicy::default(),
                clock,
                events: None,
                recovery: None,
                rest: None,
            },
            None,
        )
        .await
        .unwrap();
        let signed = ractor::call!(actor, |reply| AgentMsg::SignIn {
            device: Device::Sip {
                account: format!("a{i:05}"),
            },
            initial: Status::Ready,
            reply
        })
        .unwrap();
        signed.unwrap();
        agents.push(actor);
    }
    report("Agent actor, signed in and ready", before);

    let before = rss();
    let resting = std::thread::spawn(resting_agents).join().unwrap();
    report(
        "agent signed in, ready and resting (at most one wave's actors still in the heap)",
        before,
    );
    // Kept to the end, as the others.
    assert_eq!(resting.len(), ACTORS);

    let before = rss();
    let registry = Registry::new(Arc::new(Elsewhere));
    let tenant = TenantId::from("t");
    let mut proxies = Vec::with_capacity(ACTORS);
    for i in 0..ACTORS {
        let id = format!("p{i:05}").as_str().into();
        proxies.push(registry.agent_proxy(&tenant, &id));
    }
    report("agent proxy (the agent on another node), resting", before);
    // A message wakes each: its actor starts (and would rest again
    // after REST_AFTER).
    let before = rss();
    for p in &proxies {
        p.cast(AgentMsg::Withdrawn(switchboard_actors::CallId(1)))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proxies.iter().all(|p| !p.is_resting()));
    report("agent proxy, awake (its actor on top)", before);
}
