//! How everyone reaches an agent: [`AgentRef`].
//!
//! An agent hosted on this node has an actor while anything is in flight
//! for it (a call offered, a call, after-call work, a message being
//! handled). An agent with nothing in flight for [`REST_AFTER`] rests:
//! its actor stops and its state machine is kept in the agent's home
//! here, about 1.7 KiB instead of the 11 KiB of an actor's mailboxes and
//! task. The next message that changes something wakes it: a new actor starts
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
//! An agent's proxy, on a node of a cluster that does not host the
//! agent, rests the same way while no call of its node rings the agent
//! or has it on, and then keeps nothing: it looks up where the agent is
//! when it wakes. An [`AgentRef`] may also stand for any actor taking
//! [`AgentMsg`]s (one started by hand); that one never rests.

use crate::agent::AgentEvent;
use crate::remote::{AgentProxy, Registry};
use crate::shell::{answer_read, AgentActor, AgentMsg, AgentState, Clock, Recovery};
use crate::{AgentId, TenantId, Timestamp};
use ractor::rpc::CallResult;
use ractor::{ActorRef, MessagingErr, RpcReplyPort};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
    kind: Kind,
    slot: Mutex<Slot>,
}

/// What wakes there: the agent itself, or its proxy for an agent homed
/// on another node.
enum Kind {
    Agent {
        clock: Clock,
        events: Option<mpsc::UnboundedSender<AgentEvent>>,
        recovery: Option<Arc<Recovery>>,
    },
    Proxy {
        tenant: TenantId,
        registry: Arc<Registry>,
    },
}

enum Slot {
    /// The actor runs; `sent` messages went to it through the home.
    Awake {
        actor: ActorRef<AgentMsg>,
        sent: u64,
    },
    Resting(Kept),
    /// Stopped for good (removed, or it panicked too often).
    Stopped,
}

/// What a resting agent keeps: the agent's state; a proxy with nothing
/// in flight keeps nothing.
pub(crate) enum Kept {
    Agent(Box<AgentState>),
    Proxy,
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

/// Agents resting now, for the metrics: `agent` for agents hosted here,
/// `proxy` for proxies of agents homed elsewhere.
pub fn resting() -> &'static prometheus::IntGaugeVec {
    static G: std::sync::OnceLock<prometheus::IntGaugeVec> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        let g = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "switchboard_agents_resting",
                "Agents (and agents' proxies) with nothing in flight, kept without an actor, by kind",
            ),
            &["kind"],
        );
        crate::shell::exported(g, "resting")
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
        AgentRef::home(
            agent.id,
            after,
            Kind::Agent {
                clock: agent.clock,
                events: agent.events,
                recovery: agent.recovery,
            },
            Kept::Agent(Box::new(state)),
        )
    }

    /// The proxy of an agent homed on another node, resting until its
    /// first message.
    pub fn proxy(tenant: &TenantId, agent: &AgentId, registry: &Arc<Registry>) -> AgentRef {
        AgentRef::home(
            agent.clone(),
            REST_AFTER,
            Kind::Proxy {
                tenant: tenant.clone(),
                registry: registry.clone(),
            },
            Kept::Proxy,
        )
    }

    fn home(id: AgentId, after: Duration, kind: Kind, kept: Kept) -> AgentRef {
        resting().with_label_values(&[kept.label()]).inc();
        AgentRef(Inner::Home(Arc::new(Home {
            id,
            after,
            kind,
            slot: Mutex::new(Slot::Resting(kept)),
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
                    Slot::Resting(kept) => resting().with_label_values(&[kept.label()]).dec(),
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
                // As the actor counts: not its own timers' messages.
                if !matches!(msg, AgentMsg::Tick | AgentMsg::Rest) {
                    *sent += 1;
                }
                actor.cast(msg)
            }
            Slot::Stopped => Err(MessagingErr::SendErr(msg)),
            Slot::Resting(kept) => {
                let msg = match kept {
                    Kept::Agent(state) => match absorbed(&self.id, &state.agent, msg) {
                        Some(msg) => msg,
                        None => return Ok(()),
                    },
                    // Homes changed: a proxy with nothing in flight has
                    // nothing to carry over (it looks where the agent is
                    // when it wakes).
                    Kept::Proxy => match msg {
                        AgentMsg::Proxy(p) if p.is_moved() => return Ok(()),
                        AgentMsg::Tick | AgentMsg::Rest => return Ok(()),
                        msg => msg,
                    },
                };
                let Slot::Resting(kept) = std::mem::replace(&mut *slot, Slot::Stopped) else {
                    unreachable!("matched as resting above");
                };
                resting().with_label_values(&[kept.label()]).dec();
                let rest = Some(Rest(Arc::downgrade(self)));
                let woken = match (kept, &self.kind) {
                    (
                        Kept::Agent(state),
                        Kind::Agent {
                            clock,
                            events,
                            recovery,
                        },
                    ) => {
                        let agent = AgentActor {
                            id: self.id.clone(),
                            policy: state.agent.policy().clone(),
                            clock: *clock,
                            events: events.clone(),
                            recovery: recovery.clone(),
                            rest,
                        };
                        ractor::ActorRuntime::spawn_instant(None, agent, Some(state))
                            .map(|(a, _)| a)
                    }
                    (_, Kind::Proxy { tenant, registry }) => {
                        let proxy = AgentProxy {
                            tenant: tenant.clone(),
                            agent: self.id.clone(),
                            registry: registry.clone(),
                            rest,
                        };
                        ractor::ActorRuntime::spawn_instant(None, proxy, ()).map(|(a, _)| a)
                    }
                    (Kept::Proxy, Kind::Agent { .. }) => {
                        unreachable!("an agent's home keeps an agent")
                    }
                };
                match woken {
                    Ok(actor) => {
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

impl Kept {
    fn label(&self) -> &'static str {
        match self {
            Kept::Agent(_) => "agent",
            Kept::Proxy => "proxy",
        }
    }
}

/// Answers `msg` from a resting agent's state if it changes nothing
/// (reads, a registration refresh); otherwise gives it back.
fn absorbed(id: &AgentId, agent: &crate::agent::Agent, msg: AgentMsg) -> Option<AgentMsg> {
    let msg = answer_read(id, agent, msg)?;
    // A phone's registration refreshed: nothing changes.
    match msg {
        AgentMsg::DeviceOnline(on) if !agent.device_would_change(on) => None,
        // A timer of an actor that is gone.
        AgentMsg::Tick | AgentMsg::Rest => None,
        msg => Some(msg),
    }
}

/// The actor's side of resting, the same for an agent and a proxy: the
/// messages it handled, when the last was, and its rest timer.
#[derive(Debug, Default)]
pub(crate) struct Quiet {
    /// Every message but the actor's own timers', which is every one
    /// sent through the home.
    handled: u64,
    /// When the last of them was handled.
    active: Timestamp,
    timer: Option<JoinHandle<Result<(), MessagingErr<AgentMsg>>>>,
}

impl Quiet {
    pub(crate) fn new(now: Timestamp) -> Quiet {
        Quiet {
            handled: 0,
            active: now,
            timer: None,
        }
    }

    /// A message is about to be handled. Returns false for the rest
    /// timer's, which [`Quiet::due`] takes instead.
    pub(crate) fn heard(&mut self, msg: &AgentMsg, now: Timestamp) -> bool {
        match msg {
            AgentMsg::Rest => return false,
            AgentMsg::Tick => {}
            _ => {
                self.handled += 1;
                self.active = now;
            }
        }
        true
    }

    /// After a message: the rest timer runs while nothing is in flight.
    pub(crate) fn settle(&mut self, rest: Option<&Rest>, me: &ActorRef<AgentMsg>, idle: bool) {
        let Some(rest) = rest else {
            return;
        };
        if !idle {
            if let Some(t) = self.timer.take() {
                t.abort();
            }
        } else if self.timer.is_none() {
            self.timer = Some(me.send_after(rest.after(), || AgentMsg::Rest));
        }
    }

    /// The rest timer fired: whether the actor is to try resting now
    /// (nothing in flight for the rest time; see [`Rest::rest`]). If not
    /// yet, the timer is armed for the rest of the time.
    pub(crate) fn due(
        &mut self,
        rest: Option<&Rest>,
        me: &ActorRef<AgentMsg>,
        idle: bool,
        now: Timestamp,
    ) -> Option<Rest> {
        self.timer = None;
        // Not idle: armed again when it is.
        let rest = rest.filter(|_| idle)?;
        let (quiet_for, after) = (now.since(self.active), rest.after());
        if quiet_for < after {
            self.timer = Some(me.send_after(after - quiet_for, || AgentMsg::Rest));
            return None;
        }
        Some(rest.clone())
    }

    /// The home held a message for the actor: it tries again later.
    pub(crate) fn retry(&mut self, rest: &Rest, me: &ActorRef<AgentMsg>) {
        self.timer = Some(me.send_after(rest.after(), || AgentMsg::Rest));
    }

    pub(crate) fn handled(&self) -> u64 {
        self.handled
    }

    /// Stops the rest timer and starts counting again (the state goes to
    /// the home, for the next actor).
    pub(crate) fn take(&mut self) -> Quiet {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        Quiet::new(self.active)
    }
}

impl Rest {
    /// How long nothing is in flight before the agent rests.
    pub(crate) fn after(&self) -> Duration {
        self.0.upgrade().map_or(REST_AFTER, |h| h.after)
    }

    /// The agent's reference, for an actor's own later messages to
    /// itself: they go through the home and count like any other.
    pub(crate) fn agent_ref(&self) -> Option<AgentRef> {
        self.0.upgrade().map(|home| AgentRef(Inner::Home(home)))
    }

    /// Rests the agent if its actor handled every message sent to it
    /// (`handled` of them): what `kept` gives goes to the home, and the
    /// actor is to stop. Returns whether it rests.
    pub(crate) fn rest(
        &self,
        me: &ActorRef<AgentMsg>,
        handled: u64,
        kept: impl FnOnce() -> Kept,
    ) -> bool {
        let Some(home) = self.0.upgrade() else {
            return false;
        };
        let mut slot = lock(&home.slot);
        match &*slot {
            Slot::Awake { actor, sent } if actor.get_id() == me.get_id() && *sent == handled => {
                let kept = kept();
                resting().with_label_values(&[kept.label()]).inc();
                *slot = Slot::Resting(kept);
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
