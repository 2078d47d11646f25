//! How everyone reaches an agent: [`AgentRef`].
//!
//! An agent hosted on this node has an actor while anything is in flight
//! for it (a call offered, a call, after-call work, a message being
//! handled). An agent with nothing in flight for [`REST_AFTER`] rests:
//! its actor stops and its state machine is kept in the agent's home
//! here, a few hundred bytes instead of an actor's mailboxes and task.
//! The next message that changes something wakes it: a new actor starts
//! from the kept state under the same [`AgentRef`], and takes the
//! message. Reads (the status, the live monitor's snapshot) are answered
//! from the kept state without waking it, and so is a registration's
//! refresh that leaves the phone as reachable as it was.
//!
//! Nothing is lost between the two: every message to such an agent goes
//! through its home under one lock, which counts them; the actor counts
//! those it handled, and rests only when the two counts agree (its
//! mailbox holds nothing from anyone), under that lock. Once it rests,
//! the next message finds the kept state, not the stopped actor.
//!
//! An [`AgentRef`] may also stand for any actor taking [`AgentMsg`]s
//! (an agent's proxy for an agent on another node, an actor started by
//! hand); those never rest.

use crate::agent::AgentEvent;
use crate::shell::{answer_read, AgentActor, AgentMsg, AgentState, Clock, Recovery};
use crate::AgentId;
use ractor::rpc::CallResult;
use ractor::{ActorRef, MessagingErr, RpcReplyPort};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long an agent with nothing in flight keeps its actor.
pub const REST_AFTER: Duration = Duration::from_secs(10);

/// An agent, awake or resting, or any actor taking [`AgentMsg`]s.
#[derive(Clone)]
pub struct AgentRef(Inner);

#[derive(Clone)]
enum Inner {
    Actor(ActorRef<AgentMsg>),
    Home(Arc<Home>),
}

impl std::fmt::Debug for AgentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Actor(a) => f.debug_tuple("AgentRef").field(&a.get_id()).finish(),
            Inner::Home(h) => f.debug_tuple("AgentRef").field(&h.id).finish(),
        }
    }
}

impl From<ActorRef<AgentMsg>> for AgentRef {
    fn from(a: ActorRef<AgentMsg>) -> AgentRef {
        AgentRef(Inner::Actor(a))
    }
}

/// What an [`AgentRef`] stands for, comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Actor(ractor::ActorId),
    /// An agent that may rest, by its home's address.
    Home(usize),
}

/// Where an agent that may rest lives on this node.
struct Home {
    id: AgentId,
    /// How long nothing is in flight before it rests ([`REST_AFTER`]).
    after: Duration,
    clock: Clock,
    events: Option<mpsc::UnboundedSender<AgentEvent>>,
    recovery: Option<Arc<Recovery>>,
    slot: Mutex<Slot>,
}

enum Slot {
    /// The actor runs; `sent` messages went to it through the home.
    Awake {
        actor: ActorRef<AgentMsg>,
        sent: u64,
    },
    Resting(Box<AgentState>),
    /// Stopped for good (removed, or it panicked too often).
    Stopped,
}

/// The agent's side of its home, held by its actor (weakly: the home
/// holds the actor).
#[derive(Clone)]
pub struct Rest(Weak<Home>);

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rest")
    }
}

/// Agents resting now, for the metrics.
pub fn resting() -> &'static prometheus::IntGauge {
    static G: std::sync::OnceLock<prometheus::IntGauge> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        let g = prometheus::IntGauge::new(
            "switchboard_agents_resting",
            "Agents hosted here with nothing in flight, kept without an actor",
        );
        match g {
            Ok(g) => {
                // Already registered only if another copy of this crate
                // did it: then this one is not exported.
                let _ = prometheus::register(Box::new(g.clone()));
                g
            }
            // A fixed, well-formed metric: unreachable.
            Err(e) => unreachable!("resting metric: {e}"),
        }
    })
}

fn lock(m: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AgentRef {
    /// An agent hosted here, signed out and resting until its first
    /// message.
    pub fn start(agent: AgentActor) -> AgentRef {
        AgentRef::start_resting_after(agent, REST_AFTER)
    }

    fn start_resting_after(agent: AgentActor, after: Duration) -> AgentRef {
        let state = AgentState::new(&agent);
        resting().inc();
        AgentRef(Inner::Home(Arc::new(Home {
            id: agent.id,
            after,
            clock: agent.clock,
            events: agent.events,
            recovery: agent.recovery,
            slot: Mutex::new(Slot::Resting(Box::new(state))),
        })))
    }

    /// Sends `msg` (waking a resting agent unless it is a read).
    pub fn cast(&self, msg: AgentMsg) -> Result<(), MessagingErr<AgentMsg>> {
        match &self.0 {
            Inner::Actor(a) => a.cast(msg),
            Inner::Home(h) => h.send(msg),
        }
    }

    /// Asks, as [`ActorRef::call`] does (so `ractor::call!` takes it).
    pub async fn call<R, F>(
        &self,
        msg: F,
        timeout: Option<Duration>,
    ) -> Result<CallResult<R>, MessagingErr<AgentMsg>>
    where
        F: FnOnce(RpcReplyPort<R>) -> AgentMsg,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let port: RpcReplyPort<R> = match timeout {
            Some(d) => (tx, d).into(),
            None => tx.into(),
        };
        self.cast(msg(port))?;
        Ok(match timeout {
            Some(d) => match tokio::time::timeout(d, rx).await {
                Ok(Ok(r)) => CallResult::Success(r),
                Ok(Err(_)) => CallResult::SenderError,
                Err(_) => CallResult::Timeout,
            },
            None => match rx.await {
                Ok(r) => CallResult::Success(r),
                Err(_) => CallResult::SenderError,
            },
        })
    }

    /// Stops the agent for good (its record was removed).
    pub fn stop(&self, reason: Option<String>) {
        match &self.0 {
            Inner::Actor(a) => a.stop(reason),
            Inner::Home(h) => {
                let mut slot = lock(&h.slot);
                match std::mem::replace(&mut *slot, Slot::Stopped) {
                    Slot::Awake { actor, .. } => actor.stop(reason),
                    Slot::Resting(_) => resting().dec(),
                    Slot::Stopped => {}
                }
            }
        }
    }

    /// Whether the agent rests now (no actor).
    pub fn is_resting(&self) -> bool {
        match &self.0 {
            Inner::Actor(_) => false,
            Inner::Home(h) => matches!(*lock(&h.slot), Slot::Resting(_)),
        }
    }

    /// Which agent (or actor) this stands for: the same whether the
    /// agent is awake or rests.
    pub fn identity(&self) -> Identity {
        match &self.0 {
            Inner::Actor(a) => Identity::Actor(a.get_id()),
            Inner::Home(h) => Identity::Home(Arc::as_ptr(h) as usize),
        }
    }
}

impl Home {
    fn send(self: &Arc<Self>, msg: AgentMsg) -> Result<(), MessagingErr<AgentMsg>> {
        let mut slot = lock(&self.slot);
        match &mut *slot {
            Slot::Awake { actor, sent } => {
                *sent += 1;
                actor.cast(msg)
            }
            Slot::Stopped => Err(MessagingErr::SendErr(msg)),
            Slot::Resting(state) => {
                let Some(msg) = answer_read(&self.id, &state.agent, msg) else {
                    return Ok(());
                };
                // A phone's registration refreshed: nothing changes.
                if let AgentMsg::DeviceOnline(on) = msg {
                    if !state.agent.device_would_change(on) {
                        return Ok(());
                    }
                }
                let Slot::Resting(state) = std::mem::replace(&mut *slot, Slot::Stopped) else {
                    unreachable!("matched as resting above");
                };
                resting().dec();
                let agent = AgentActor {
                    id: self.id.clone(),
                    policy: state.agent.policy().clone(),
                    clock: self.clock,
                    events: self.events.clone(),
                    recovery: self.recovery.clone(),
                    rest: Some(Rest(Arc::downgrade(self))),
                };
                match ractor::ActorRuntime::spawn_instant(None, agent, Some(state)) {
                    Ok((actor, _)) => {
                        let sent = actor.cast(msg);
                        *slot = Slot::Awake { actor, sent: 1 };
                        sent
                    }
                    // Only a taken actor name fails a spawn; none is given.
                    Err(e) => {
                        tracing::error!(agent = %self.id, error = %e, "agent could not wake: stopped");
                        Err(MessagingErr::SendErr(msg))
                    }
                }
            }
        }
    }
}

impl Rest {
    /// How long nothing is in flight before the agent rests.
    pub(crate) fn after(&self) -> Duration {
        self.0.upgrade().map_or(REST_AFTER, |h| h.after)
    }

    /// Rests the agent if its actor handled every message sent to it
    /// (`handled` of them): `state` is kept in the home, and the actor is
    /// to stop. Returns whether it rests.
    pub(crate) fn rest(&self, me: &ActorRef<AgentMsg>, state: &mut AgentState) -> bool {
        let Some(home) = self.0.upgrade() else {
            return false;
        };
        let mut slot = lock(&home.slot);
        match &*slot {
            Slot::Awake { actor, sent }
                if actor.get_id() == me.get_id() && *sent == state.handled() =>
            {
                *slot = Slot::Resting(Box::new(state.take_for_rest()));
                resting().inc();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Actor as By, Device, Status};
    use crate::shell::Clock;
    use crate::Timestamp;

    fn choose(status: Status) -> AgentMsg {
        AgentMsg::Choose {
            status,
            by: By::Agent,
            reply: tokio::sync::oneshot::channel().0.into(),
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// The race resting must not lose to: the actor looks whether it may
    /// rest while a message for it is already in its mailbox.
    #[tokio::test(start_paused = true)]
    async fn a_message_behind_the_rest_check_keeps_the_actor_awake() {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let a = AgentRef::start_resting_after(
            AgentActor {
                id: "1001".into(),
                policy: crate::agent::AgentPolicy::default(),
                clock,
                events: None,
                recovery: None,
                rest: None,
            },
            Duration::ZERO,
        );
        a.cast(AgentMsg::SignIn {
            device: Device::Sip {
                account: "1001".into(),
            },
            initial: Status::Ready,
            reply: tokio::sync::oneshot::channel().0.into(),
        })
        .unwrap();
        settle().await;
        assert!(a.is_resting(), "rests at once with nothing in flight");

        let lunch = Status::Break {
            reason: "lunch".into(),
        };
        // Woken; then, before it runs, the rest check and a choice queue
        // up behind the waking message.
        a.cast(choose(Status::Busy)).unwrap();
        let Inner::Home(h) = &a.0 else {
            unreachable!("started with a home")
        };
        let actor = match &*lock(&h.slot) {
            Slot::Awake { actor, .. } => actor.clone(),
            _ => unreachable!("just woken"),
        };
        actor.cast(AgentMsg::Rest).unwrap();
        a.cast(choose(lunch.clone())).unwrap();
        settle().await;
        let (status, _) = ractor::call!(a, AgentMsg::Get).unwrap();
        assert_eq!(status, lunch, "the choice behind the rest check was taken");
        assert!(a.is_resting(), "and then it rested");
    }
}
