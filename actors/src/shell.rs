//! The actor shells (`ractor`) around the machines: [`AgentActor`] owns an
//! [`Agent`], [`SkillGroupActor`] a [`SkillGroup`], [`CallActor`] an
//! [`InboundCall`] (its legs' SIP and media are driven through
//! [`TelephonyCommand`]s by the node).
//!
//! The contract every shell keeps: on each message it feeds its machine
//! with the clock's `now`, drains every output (tell that actor, publish
//! that event), and re-arms its one timer at the machine's
//! `poll_timeout()`. The actor struct is configuration; the machine is
//! built in `pre_start`. Messages between actors are casts, except the
//! group asking an agent to take an offer, which is a call: the agent's
//! answer is the truth about its status, the group's view may be stale.

use crate::acd::{
    AcdEvent, Availability, GroupConfig, Member, Overflow, OverflowReason, SkillGroup,
};
use crate::agent::{Actor as By, Agent, AgentError, AgentEvent, AgentPolicy, Device, Status};
use crate::agent_ref::{AgentRef, Kept, Quiet, Rest};
use crate::call::{CallAction, CallRecord, InboundCall, TransferError, TransferTarget};
use crate::ivr::IvrOutcome;
use crate::outbound::{OutboundAction, OutboundCall};
use crate::{AgentId, CallId, Timestamp};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Wall-clock time for the machines, read only by shells. It follows
/// tokio's clock, so tests with paused time run the machines in simulated
/// time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Timestamp,
    started: tokio::time::Instant,
}

impl Clock {
    /// Now, from the system clock.
    pub fn system() -> Clock {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock::starting_at(Timestamp(ms))
    }

    /// A clock that reads `base` now and advances with tokio's time.
    pub fn starting_at(base: Timestamp) -> Clock {
        Clock {
            base,
            started: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.base.after(self.started.elapsed())
    }

    /// How long from now until `at` (zero if past).
    pub fn until(&self, at: Timestamp) -> Duration {
        at.since(self.now())
    }
}

/// Where an agent's answer to an offer goes: back to whoever asked, or,
/// for a skill group's offer, straight into the group's mailbox as
/// [`GroupMsg::Offered`] (no task waits for it in between). Dropped
/// unanswered (the agent's actor or its node gone), a group's offer is
/// answered no; an asker's sees its reply port closed.
#[derive(Debug)]
pub struct OfferReply(Option<ReplyTo>);

#[derive(Debug)]
enum ReplyTo {
    Port(RpcReplyPort<Result<(), AgentError>>),
    Group {
        group: ActorRef<GroupMsg>,
        call: CallId,
        agent: AgentId,
        by: AgentRef,
        ring_timeout: Duration,
    },
}

impl OfferReply {
    /// `agent`'s answer to `group`'s offer of `call` goes to the group;
    /// `by` reaches the agent, for the ring.
    pub fn to_group(
        group: ActorRef<GroupMsg>,
        call: CallId,
        agent: AgentId,
        by: AgentRef,
        ring_timeout: Duration,
    ) -> OfferReply {
        OfferReply(Some(ReplyTo::Group {
            group,
            call,
            agent,
            by,
            ring_timeout,
        }))
    }

    /// The agent's answer: `Ok` if it now rings for the call.
    pub fn send(mut self, answer: Result<(), AgentError>) {
        if let Some(to) = self.0.take() {
            to.answer(Some(answer));
        }
    }
}

impl ReplyTo {
    /// `None`: no answer came.
    fn answer(self, answer: Option<Result<(), AgentError>>) {
        match self {
            ReplyTo::Port(port) => {
                if let Some(a) = answer {
                    let _ = port.send(a);
                }
            }
            ReplyTo::Group {
                group,
                call,
                agent,
                by,
                ring_timeout,
            } => {
                let accepted = matches!(answer, Some(Ok(()))).then_some(by);
                let _ = group.cast(GroupMsg::Offered {
                    call,
                    agent,
                    accepted,
                    ring_timeout,
                });
            }
        }
    }
}

impl Drop for OfferReply {
    fn drop(&mut self) {
        if let Some(to) = self.0.take() {
            to.answer(None);
        }
    }
}

impl From<RpcReplyPort<Result<(), AgentError>>> for OfferReply {
    fn from(port: RpcReplyPort<Result<(), AgentError>>) -> OfferReply {
        OfferReply(Some(ReplyTo::Port(port)))
    }
}

/// Messages to an agent.
#[derive(Debug)]
pub enum AgentMsg {
    SignIn {
        device: Device,
        initial: Status,
        reply: RpcReplyPort<Result<(), AgentError>>,
    },
    SignOut {
        by: By,
        reply: RpcReplyPort<Result<(), AgentError>>,
    },
    Choose {
        status: Status,
        by: By,
        reply: RpcReplyPort<Result<(), AgentError>>,
    },
    /// A group offers a call; `Ok` means the agent now rings for it.
    Offer {
        call: CallId,
        reply: OfferReply,
    },
    Answered(CallId),
    /// The agent places an outbound call from the phone bar; `Ok` means
    /// the agent is now on it (busy for the ACD).
    Dial {
        call: CallId,
        reply: RpcReplyPort<Result<(), AgentError>>,
    },
    /// Not answered within the ring timeout.
    Missed(CallId),
    /// The offer ended without the agent's fault.
    Withdrawn(CallId),
    HungUp {
        call: CallId,
        wrap_up: Duration,
    },
    /// The agent's SIP phone registered (true), or its registration ended
    /// or it could not be reached (false).
    DeviceOnline(bool),
    /// This group wants to hear the agent's availability.
    Watch(ActorRef<GroupMsg>),
    /// The current status and since when.
    Get(RpcReplyPort<(Status, Timestamp)>),
    /// Everything the live monitor shows of the agent.
    Snapshot(RpcReplyPort<AgentSnapshot>),
    /// The tenant changed the agent's status rules.
    Policy(AgentPolicy),
    /// The wrap-up timer.
    Tick,
    /// The agent is on this call, still up on another node (its home
    /// moved during it).
    Resume(CallId),
    /// The status the agent had on its previous home.
    Restore(Status),
    /// The agent's phone rings for this call, still up on another node
    /// (its home moved during the ring).
    ResumeRinging(CallId),
    /// What a new home is to restore when the agent moves there
    /// ([`Agent::handover`](crate::agent::Agent::handover)); local only.
    Handover(RpcReplyPort<Status>),
    /// The call's node rings the agent's phone for this call: kept by the
    /// agent's proxy there, in case the agent's home moves during the
    /// ring; nothing to the agent itself (its offer made it ringing).
    Ringing(CallId),
    /// For an [`AgentProxy`](crate::remote::AgentProxy) only; the real
    /// agent ignores it.
    Proxy(crate::remote::ProxyInput),
    /// Fault injection (a node run with `--fault-injection`): the handler
    /// panics, as a bug in it would, and the agent recovers.
    Panic,
    /// The actor's own timer: see whether the agent may rest
    /// ([`agent_ref`](crate::agent_ref)).
    Rest,
}

impl AgentMsg {
    /// An offer of `call` whose answer goes to `reply`.
    pub fn offer(call: CallId, reply: RpcReplyPort<Result<(), AgentError>>) -> AgentMsg {
        AgentMsg::Offer {
            call,
            reply: reply.into(),
        }
    }
}

/// An agent now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentSnapshot {
    pub agent: AgentId,
    #[serde(with = "crate::remote::json")]
    pub status: Status,
    pub since: Timestamp,
    #[serde(with = "crate::remote::json")]
    pub device: Option<Device>,
    pub device_online: bool,
    pub calls_today: u32,
    pub talk_time_today: Duration,
}

/// An agent actor: configuration.
#[derive(Debug)]
pub struct AgentActor {
    pub id: AgentId,
    pub policy: AgentPolicy,
    pub clock: Clock,
    /// Where every status change goes (the status log, live monitors).
    pub events: Option<mpsc::UnboundedSender<AgentEvent>>,
    /// Where the agent's record is read again after a panic (one for the
    /// tenant's actors).
    pub recovery: Option<Arc<Recovery>>,
    /// The agent's home, for an actor that rests when nothing is in
    /// flight ([`AgentRef::start`](crate::agent_ref::AgentRef::start) sets
    /// it); `None`: the actor never rests.
    pub rest: Option<Rest>,
}

/// What a shell that caught a panic in its handler needs to rebuild its
/// state machine: the store holding the actor's record, and the tenant.
#[derive(Clone)]
pub struct Recovery {
    pub store: Arc<dyn switchboard_storage::Store>,
    pub tenant: crate::TenantId,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// At most this many recoveries of one actor within [`RECOVERY_WINDOW`];
/// one more and the actor stops (its state is likely what makes it
/// panic).
pub const MAX_RECOVERIES: usize = 3;
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(60);

/// Recoveries by kind of actor (`agent`, `skill_group`), for the metrics.
pub fn recoveries() -> &'static prometheus::IntCounterVec {
    static C: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "switchboard_actor_recoveries_total",
                "Actors whose handler panicked and which were rebuilt from the store, by kind",
            ),
            &["kind"],
        );
        exported(c, "recoveries")
    })
}

/// A metric of this crate's, registered with the default registry.
pub(crate) fn exported<C>(made: prometheus::Result<C>, what: &str) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    match made {
        Ok(c) => {
            // Already registered only if another copy of this crate did
            // it: then this one is not exported.
            let _ = prometheus::register(Box::new(c.clone()));
            c
        }
        // A fixed, well-formed metric: unreachable.
        Err(e) => unreachable!("{what} metric: {e}"),
    }
}

/// Whether one more recovery may be made now (and counts it): at most
/// [`MAX_RECOVERIES`] in [`RECOVERY_WINDOW`].
fn may_recover(done: &mut Vec<Timestamp>, now: Timestamp) -> bool {
    done.retain(|t| now.since(*t) < RECOVERY_WINDOW);
    if done.len() >= MAX_RECOVERIES {
        return false;
    }
    done.push(now);
    true
}

/// A panic's message, for the log.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// An agent actor's state (kept in the agent's home while it rests).
#[derive(Debug)]
pub struct AgentState {
    pub(crate) agent: Agent,
    groups: Vec<ActorRef<GroupMsg>>,
    timer: Alarm<AgentMsg>,
    /// What resting needs.
    quiet: Quiet,
    /// When the agent recovered from a panic lately.
    recovered: Vec<Timestamp>,
}

impl AgentState {
    /// A signed-out agent's.
    pub(crate) fn new(a: &AgentActor) -> AgentState {
        let now = a.clock.now();
        AgentState {
            agent: Agent::new(a.id.clone(), a.policy.clone(), now),
            groups: Vec::new(),
            timer: Alarm::new(),
            quiet: Quiet::new(now),
            recovered: Vec::new(),
        }
    }

    /// What the agent's home keeps while it rests (this actor's timers
    /// stopped, its count started again for the next actor); `self` is
    /// left empty, for the actor about to stop.
    fn take_for_rest(&mut self) -> AgentState {
        self.timer.stop();
        let quiet = self.quiet.take();
        let id = self.agent.id().clone();
        let blank = Agent::new(id, AgentPolicy::default(), self.agent.since());
        AgentState {
            agent: std::mem::replace(&mut self.agent, blank),
            groups: std::mem::take(&mut self.groups),
            timer: Alarm::new(),
            quiet,
            recovered: std::mem::take(&mut self.recovered),
        }
    }
}

/// Whether an agent has nothing in flight: no call (offered, on, or
/// wrapping up) and no deadline.
fn may_rest(agent: &Agent) -> bool {
    agent.status().call().is_none() && agent.poll_timeout().is_none()
}

/// Answers `msg` from `agent` if it only reads (its status, its
/// snapshot); otherwise gives it back.
pub(crate) fn answer_read(id: &AgentId, a: &Agent, msg: AgentMsg) -> Option<AgentMsg> {
    // Replies to a caller that went away are of no interest.
    match msg {
        AgentMsg::Get(reply) => {
            let _ = reply.send((a.status().clone(), a.since()));
            None
        }
        AgentMsg::Snapshot(reply) => {
            let _ = reply.send(AgentSnapshot {
                agent: id.clone(),
                status: a.status().clone(),
                since: a.since(),
                device: a.device().cloned(),
                device_online: a.device_online(),
                calls_today: a.calls_answered(),
                talk_time_today: a.talk_time(),
            });
            None
        }
        other => Some(other),
    }
}

impl AgentActor {
    fn availability(&self, agent: &Agent) -> Availability {
        Availability {
            signed_in: *agent.status() != Status::Offline,
            ready: agent.can_be_offered(),
            idle_since: agent.ready_since().unwrap_or(agent.since()),
            calls_today: agent.calls_answered(),
            talk_time_today: agent.talk_time(),
        }
    }

    /// Drains the machine's events and re-arms the timer.
    fn settle(&self, myself: &ActorRef<AgentMsg>, state: &mut AgentState) {
        let mut changed = false;
        while let Some(e) = state.agent.poll_event() {
            changed |= matches!(e, AgentEvent::Changed { .. });
            if let Some(tx) = &self.events {
                let _ = tx.send(e);
            }
        }
        if changed {
            let availability = self.availability(&state.agent);
            for g in &state.groups {
                let _ = g.cast(GroupMsg::AgentUpdate {
                    agent: self.id.clone(),
                    availability,
                });
            }
        }
        let at = state.agent.poll_timeout();
        state.timer.set(myself, &self.clock, at, || AgentMsg::Tick);
        let idle = may_rest(&state.agent);
        state.quiet.settle(self.rest.as_ref(), myself, idle);
    }

    /// The rest timer: the agent rests if nothing was in flight for
    /// the rest time and its home holds no message for it; the actor then
    /// stops.
    fn try_rest(&self, myself: &ActorRef<AgentMsg>, state: &mut AgentState) {
        let idle = may_rest(&state.agent);
        let Some(rest) = state
            .quiet
            .due(self.rest.as_ref(), myself, idle, self.clock.now())
        else {
            return;
        };
        let handled = state.quiet.handled();
        if rest.rest(myself, handled, || {
            Kept::Agent(Box::new(state.take_for_rest()))
        }) {
            tracing::debug!(agent = %self.id, "agent rests");
            myself.stop(None);
        } else {
            state.quiet.retry(&rest, myself);
        }
    }
}

// Local only: these messages carry channels and actor references.
impl ractor::Message for AgentMsg {}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    /// The state kept while the agent rested, or `None` for a new agent.
    type Arguments = Option<Box<AgentState>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<AgentMsg>,
        kept: Option<Box<AgentState>>,
    ) -> Result<AgentState, ActorProcessingErr> {
        Ok(match kept {
            Some(kept) => *kept,
            None => AgentState::new(self),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        if !state.quiet.heard(&msg, self.clock.now()) {
            self.try_rest(&myself, state);
            return Ok(());
        }
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.step(&myself, msg, state)
        }));
        match step {
            Ok(()) => Ok(()),
            // (Boxed: every actor's task would hold room for it.)
            Err(p) => Box::pin(self.recover(&myself, state, &panic_text(&*p))).await,
        }
    }
}

impl AgentActor {
    /// After a panic in the handler: the machine is rebuilt from the
    /// agent's record in the store and the status it was in (see
    /// [`Agent::recover`]); its groups hear its availability again. The
    /// actor keeps its address, so the calls and groups holding it go on.
    async fn recover(
        &self,
        myself: &ActorRef<AgentMsg>,
        state: &mut AgentState,
        why: &str,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.clock.now();
        if !may_recover(&mut state.recovered, now) {
            tracing::error!(agent = %self.id, panic = why, "agent actor panicked again: stopping it");
            return Err(format!("agent {} panicked too often: {why}", self.id).into());
        }
        let policy = match &self.recovery {
            Some(r) => match r
                .store
                .get::<switchboard_storage::model::Agent>(&r.tenant, &self.id.0)
                .await
            {
                Ok(Some(v)) => v.record.policy,
                Ok(None) => state.agent.policy().clone(),
                Err(e) => {
                    tracing::warn!(agent = %self.id, error = %e, "agent record not read: its policy as it was");
                    state.agent.policy().clone()
                }
            },
            None => state.agent.policy().clone(),
        };
        state.agent = state.agent.recover(policy);
        recoveries().with_label_values(&["agent"]).inc();
        tracing::error!(agent = %self.id, panic = why, status = ?state.agent.status(), "agent actor panicked: rebuilt from the store, its status kept");
        for g in &state.groups {
            let _ = g.cast(GroupMsg::AgentUpdate {
                agent: self.id.clone(),
                availability: self.availability(&state.agent),
            });
        }
        self.settle(myself, state);
        Ok(())
    }

    /// One input (the handler's work; a panic in it is recovered from).
    fn step(&self, myself: &ActorRef<AgentMsg>, msg: AgentMsg, state: &mut AgentState) {
        let now = self.clock.now();
        let a = &mut state.agent;
        let Some(msg) = answer_read(&self.id, a, msg) else {
            return;
        };
        // Replies to a caller that went away are of no interest.
        match msg {
            AgentMsg::SignIn {
                device,
                initial,
                reply,
            } => {
                let _ = reply.send(a.sign_in(device, initial, now));
            }
            AgentMsg::SignOut { by, reply } => {
                let _ = reply.send(a.sign_out(by, now));
            }
            AgentMsg::Choose { status, by, reply } => {
                let _ = reply.send(a.choose(status, by, now));
            }
            AgentMsg::Offer { call, reply } => reply.send(a.offer(call, now)),
            AgentMsg::Answered(call) => log_refusal(&self.id, a.answered(call, now)),
            AgentMsg::Dial { call, reply } => {
                let _ = reply.send(a.dialed(call, now));
            }
            AgentMsg::Missed(call) => log_refusal(&self.id, a.missed(call, now)),
            AgentMsg::Withdrawn(call) => log_refusal(&self.id, a.offer_withdrawn(call, now)),
            AgentMsg::HungUp { call, wrap_up } => {
                log_refusal(&self.id, a.hung_up(call, wrap_up, now))
            }
            AgentMsg::DeviceOnline(online) => {
                if a.set_device_online(online) {
                    tracing::info!(agent = %self.id, online, "agent device");
                    let availability = self.availability(a);
                    for g in &state.groups {
                        let _ = g.cast(GroupMsg::AgentUpdate {
                            agent: self.id.clone(),
                            availability,
                        });
                    }
                }
            }
            AgentMsg::Watch(group) => {
                let _ = group.cast(GroupMsg::AgentUpdate {
                    agent: self.id.clone(),
                    availability: self.availability(a),
                });
                if !state.groups.iter().any(|g| g.get_id() == group.get_id()) {
                    state.groups.push(group);
                }
            }
            // Answered above.
            AgentMsg::Get(_) | AgentMsg::Snapshot(_) => {}
            AgentMsg::Policy(p) => a.set_policy(p),
            AgentMsg::Tick => {
                state.timer.fired();
                a.handle_timeout(now)
            }
            AgentMsg::Resume(call) => log_refusal(&self.id, a.resume_call(call, now)),
            AgentMsg::Restore(status) => log_refusal(&self.id, a.restore(status, now)),
            AgentMsg::ResumeRinging(call) => log_refusal(&self.id, a.resume_ringing(call, now)),
            AgentMsg::Ringing(_) => {}
            AgentMsg::Handover(reply) => {
                let _ = reply.send(a.handover());
            }
            AgentMsg::Proxy(_) | AgentMsg::Rest => {}
            AgentMsg::Panic => panic!("fault injection: agent {} panics on purpose", self.id),
        }
        self.settle(myself, state);
    }
}

fn log_refusal(agent: &AgentId, r: Result<(), AgentError>) {
    if let Err(e) = r {
        tracing::debug!(%agent, error = %e, "agent input refused");
    }
}

/// What a group tells the Call actor of a queued call.
#[derive(Debug)]
pub enum QueueNotice {
    /// These agents ring for the call now (they accepted the offer).
    Ring {
        call: CallId,
        agents: Vec<(AgentId, AgentRef)>,
        ring_timeout: Duration,
        wrap_up: Duration,
    },
    /// Stop ringing these agents.
    StopRinging { call: CallId, agents: Vec<AgentId> },
    /// The call leaves the queue unanswered, for `to`.
    Overflow {
        call: CallId,
        to: Overflow,
        reason: OverflowReason,
    },
    /// The caller's place in the queue (1 is next) and the expected wait.
    Position {
        call: CallId,
        position: usize,
        expected_wait: Option<Duration>,
    },
}

/// Where a group tells a queued call what becomes of it: the Call
/// actor's mailbox, or the link to the node the call is on. False once
/// nobody listens there.
#[derive(Clone)]
pub struct QueueSink(Arc<dyn Fn(QueueNotice) -> bool + Send + Sync>);

impl QueueSink {
    pub fn new(tell: impl Fn(QueueNotice) -> bool + Send + Sync + 'static) -> QueueSink {
        QueueSink(Arc::new(tell))
    }

    pub fn send(&self, notice: QueueNotice) -> bool {
        (self.0)(notice)
    }
}

impl From<mpsc::UnboundedSender<QueueNotice>> for QueueSink {
    fn from(tx: mpsc::UnboundedSender<QueueNotice>) -> QueueSink {
        QueueSink::new(move |n| tx.send(n).is_ok())
    }
}

impl std::fmt::Debug for QueueSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueSink")
    }
}

/// Messages to a skill group.
#[derive(Debug)]
pub enum GroupMsg {
    Enqueue {
        call: CallId,
        priority: u8,
        /// The original enqueue time (kept across a re-enqueue after a
        /// failover, so nobody loses their place).
        enqueued: Option<Timestamp>,
        notify: QueueSink,
    },
    Abandon(CallId),
    Answered {
        call: CallId,
        agent: AgentId,
    },
    OfferFailed {
        call: CallId,
        agent: AgentId,
    },
    /// An agent's answer to the group's offer: it rings (`accepted`), or
    /// it was not ready after all (its update is on its way).
    Offered {
        call: CallId,
        agent: AgentId,
        accepted: Option<AgentRef>,
        ring_timeout: Duration,
    },
    AgentUpdate {
        agent: AgentId,
        availability: Availability,
    },
    Members(Vec<(Member, AgentRef)>),
    /// New settings (strategy, timeouts, overflow…); they apply to the
    /// next decision.
    Config(GroupConfig),
    Position(CallId, RpcReplyPort<Option<usize>>),
    /// The queue now, for the live monitor.
    Snapshot(RpcReplyPort<GroupSnapshot>),
    Tick,
    /// For a [`GroupProxy`](crate::remote::GroupProxy) only; the real
    /// group ignores it.
    Proxy(crate::remote::ProxyInput),
    /// Fault injection (a node run with `--fault-injection`): the handler
    /// panics, as a bug in it would, and the group recovers.
    Panic,
}

/// A skill group's queue now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    pub group: String,
    /// Calls waiting (those ringing an agent included).
    pub waiting: usize,
    /// The enqueue time of the call waiting longest.
    pub oldest: Option<Timestamp>,
    pub signed_in: usize,
    pub ready: usize,
}

/// A skill-group actor: configuration.
#[derive(Debug)]
pub struct SkillGroupActor {
    pub id: String,
    pub config: GroupConfig,
    pub clock: Clock,
    pub seed: u64,
    /// Told when the queue's length or its oldest call changes (the live
    /// monitors).
    pub events: Option<mpsc::UnboundedSender<GroupSnapshot>>,
    /// Where the group's record is read again after a panic.
    pub recovery: Option<Arc<Recovery>>,
}

/// A skill-group actor's state.
#[derive(Debug)]
pub struct GroupState {
    group: SkillGroup,
    agents: HashMap<AgentId, AgentRef>,
    callers: HashMap<CallId, QueueSink>,
    timer: Alarm<GroupMsg>,
    /// What was last told to `events` (length, oldest).
    published: Option<(usize, Option<Timestamp>)>,
    /// When the group recovered from a panic lately.
    recovered: Vec<Timestamp>,
}

impl SkillGroupActor {
    /// Drains the group's events until none is left (an agent refusing an
    /// offer makes new ones), then re-arms the timer.
    async fn settle(&self, myself: &ActorRef<GroupMsg>, state: &mut GroupState) {
        let mut gone = Vec::new();
        while let Some(e) = state.group.poll_event() {
            let now = self.clock.now();
            match e {
                AcdEvent::Offer {
                    call,
                    agents,
                    ring_timeout,
                } => {
                    // The offers go out from here, so each reaches its agent
                    // before anything else the group tells it (a
                    // withdrawal); the answers come back as messages, so
                    // the group goes on while its agents answer.
                    for agent in agents {
                        let Some(r) = state.agents.get(&agent).cloned() else {
                            let _ = state.group.offer_failed(call, &agent, now);
                            continue;
                        };
                        let reply = OfferReply::to_group(
                            myself.clone(),
                            call,
                            agent.clone(),
                            r.clone(),
                            ring_timeout,
                        );
                        // An offer not delivered drops its reply, which
                        // answers no: the group hears it as any refusal.
                        let _ = r.cast(AgentMsg::Offer { call, reply });
                    }
                }
                AcdEvent::CancelOffer { call, agents } => {
                    for a in &agents {
                        if let Some(r) = state.agents.get(a) {
                            let _ = r.cast(AgentMsg::Withdrawn(call));
                        }
                    }
                    if !notify(state, call, QueueNotice::StopRinging { call, agents }) {
                        gone.push(call);
                    }
                }
                AcdEvent::Overflow {
                    call, to, reason, ..
                } => {
                    notify(state, call, QueueNotice::Overflow { call, to, reason });
                    state.callers.remove(&call);
                }
                AcdEvent::Position {
                    call,
                    position,
                    expected_wait,
                } => {
                    let told = notify(
                        state,
                        call,
                        QueueNotice::Position {
                            call,
                            position,
                            expected_wait,
                        },
                    );
                    if !told {
                        gone.push(call);
                    }
                }
            }
            for call in gone.drain(..) {
                self.forget(state, call, now);
            }
        }
        let at = state.group.poll_timeout();
        state.timer.set(myself, &self.clock, at, || GroupMsg::Tick);
        if let Some(tx) = &self.events {
            let now = (state.group.len(), state.group.oldest());
            if state.published != Some(now) {
                state.published = Some(now);
                let _ = tx.send(self.snapshot(state));
            }
        }
    }

    /// A queued call whose actor is gone (it crashed, or ended without
    /// leaving the queue) is served no more.
    fn forget(&self, state: &mut GroupState, call: CallId, now: Timestamp) {
        if state.callers.remove(&call).is_some() {
            tracing::warn!(%call, group = %self.id, "queued call's actor is gone: taken out of the queue");
            let _ = state.group.abandon(call, now);
        }
    }

    fn snapshot(&self, state: &GroupState) -> GroupSnapshot {
        GroupSnapshot {
            group: self.id.clone(),
            waiting: state.group.len(),
            oldest: state.group.oldest(),
            signed_in: state.group.signed_in(),
            ready: state.group.ready(),
        }
    }
}

/// Tells a queued call; false when its Call actor is gone (it crashed or
/// ended without leaving the queue), so the group stops serving it.
fn notify(state: &GroupState, call: CallId, notice: QueueNotice) -> bool {
    match state.callers.get(&call) {
        Some(sink) => sink.send(notice),
        None => true,
    }
}

// Local only: these messages carry channels and actor references.
impl ractor::Message for GroupMsg {}

impl Actor for SkillGroupActor {
    type Msg = GroupMsg;
    type State = GroupState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<GroupMsg>,
        _args: (),
    ) -> Result<GroupState, ActorProcessingErr> {
        Ok(GroupState {
            group: SkillGroup::new(self.id.clone(), self.config.clone(), self.seed),
            agents: HashMap::new(),
            callers: HashMap::new(),
            timer: Alarm::new(),
            published: None,
            recovered: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GroupMsg>,
        msg: GroupMsg,
        state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        use futures_util::FutureExt;
        let step = std::panic::AssertUnwindSafe(self.step(&myself, msg, state))
            .catch_unwind()
            .await;
        match step {
            Ok(()) => Ok(()),
            // (Boxed: every actor's task would hold room for it.)
            Err(p) => Box::pin(self.recover(&myself, state, &panic_text(&*p))).await,
        }
    }
}

impl SkillGroupActor {
    /// After a panic in the handler: the machine is rebuilt with the
    /// group's settings and members as the store has them, the waiting
    /// calls kept in order and the ringing offers kept (see
    /// [`SkillGroup::recover`]); the members tell their availability
    /// again. The actor keeps its address, so the calls queued in it and
    /// the agents reporting to it go on.
    async fn recover(
        &self,
        myself: &ActorRef<GroupMsg>,
        state: &mut GroupState,
        why: &str,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.clock.now();
        if !may_recover(&mut state.recovered, now) {
            tracing::error!(group = %self.id, panic = why, "skill group actor panicked again: stopping it");
            return Err(format!("skill group {} panicked too often: {why}", self.id).into());
        }
        let record = match &self.recovery {
            Some(r) => match r
                .store
                .get::<switchboard_storage::model::SkillGroup>(&r.tenant, &self.id)
                .await
            {
                Ok(v) => v.map(|v| v.record),
                Err(e) => {
                    tracing::warn!(group = %self.id, error = %e, "skill group record not read: its settings as they were");
                    None
                }
            },
            None => None,
        };
        let (config, members) = match record {
            Some(g) => (g.config, g.members),
            None => (state.group.config().clone(), state.group.members()),
        };
        // Members this node has no actor for yet come with the next
        // member list.
        let members: Vec<Member> = members
            .into_iter()
            .filter(|m| state.agents.contains_key(&m.agent))
            .collect();
        state
            .agents
            .retain(|a, _| members.iter().any(|m| &m.agent == a));
        state.group = state.group.recover(config, members, now);
        recoveries().with_label_values(&["skill_group"]).inc();
        tracing::error!(group = %self.id, panic = why, waiting = state.group.len(), "skill group actor panicked: rebuilt from the store, its queue kept");
        for r in state.agents.values() {
            let _ = r.cast(AgentMsg::Watch(myself.clone()));
        }
        self.settle(myself, state).await;
        Ok(())
    }

    /// One input (the handler's work; a panic in it is recovered from).
    async fn step(&self, myself: &ActorRef<GroupMsg>, msg: GroupMsg, state: &mut GroupState) {
        let myself = myself.clone();
        let now = self.clock.now();
        match msg {
            GroupMsg::Enqueue {
                call,
                priority,
                enqueued,
                notify,
            } => {
                state.callers.insert(call, notify);
                if state
                    .group
                    .enqueue(call, priority, enqueued.unwrap_or(now), now)
                    .is_err()
                {
                    tracing::debug!(%call, "already queued");
                }
            }
            GroupMsg::Abandon(call) => {
                let _ = state.group.abandon(call, now);
                state.callers.remove(&call);
            }
            GroupMsg::Answered { call, agent } => {
                if state.group.answered(call, &agent, now).is_ok() {
                    // Cancellations of the other ringing agents go out
                    // before the caller is forgotten.
                    self.settle(&myself, state).await;
                    state.callers.remove(&call);
                }
            }
            GroupMsg::OfferFailed { call, agent } => {
                let _ = state.group.offer_failed(call, &agent, now);
            }
            GroupMsg::Offered {
                call,
                agent,
                accepted: Some(r),
                ring_timeout,
            } => {
                let ring = QueueNotice::Ring {
                    call,
                    agents: vec![(agent, r)],
                    ring_timeout,
                    wrap_up: state.group.config().wrap_up,
                };
                if !notify(state, call, ring) {
                    self.forget(state, call, now);
                }
            }
            GroupMsg::Offered {
                call,
                agent,
                accepted: None,
                ..
            } => {
                let _ = state.group.offer_failed(call, &agent, now);
            }
            GroupMsg::AgentUpdate {
                agent,
                availability,
            } => state.group.update_agent(&agent, availability, now),
            GroupMsg::Members(members) => {
                state.agents = members
                    .iter()
                    .map(|(m, r)| (m.agent.clone(), r.clone()))
                    .collect();
                state
                    .group
                    .set_members(members.iter().map(|(m, _)| m.clone()).collect(), now);
                for r in state.agents.values() {
                    let _ = r.cast(AgentMsg::Watch(myself.clone()));
                }
            }
            GroupMsg::Config(config) => state.group.set_config(config, now),
            GroupMsg::Position(call, reply) => {
                let _ = reply.send(state.group.position(call));
            }
            GroupMsg::Snapshot(reply) => {
                let _ = reply.send(self.snapshot(state));
            }
            GroupMsg::Tick => {
                state.timer.fired();
                state.group.handle_timeout(now);
            }
            GroupMsg::Proxy(_) => {}
            GroupMsg::Panic => panic!("fault injection: skill group {} panics on purpose", self.id),
        }
        self.settle(&myself, state).await;
    }
}

/// What a Call actor asks the telephony side (SIP legs and their media)
/// to do: the machine's [`CallAction`]s that are not for other actors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelephonyCommand {
    Play {
        prompt: String,
    },
    StopPrompt,
    PlayWaiting,
    StopWaiting,
    /// Tell the waiting caller its place and the expected wait, then go on
    /// with the waiting audio.
    Announce {
        position: usize,
        expected_wait: Option<Duration>,
    },
    /// Play a prompt once over the waiting audio.
    PlayOver {
        prompt: String,
    },
    /// End the caller's leg but keep the call (it waits for a callback).
    AwaitCallback,
    /// Dial the caller through the trunk; `agent` hears ring-back.
    DialBack {
        agent: AgentId,
    },
    RecordVoicemail {
        max_len: Duration,
    },
    Ring {
        agent: AgentId,
        /// What the call went through so far, for the agent's screen pop.
        context: Box<RingContext>,
    },
    StopRinging {
        agent: AgentId,
    },
    Bridge {
        agent: AgentId,
    },
    HangUpAgent {
        agent: AgentId,
    },
    HangUpCustomer,
    TransferOut {
        to: IvrOutcome,
    },
    /// The call record is written: the legs still up are the shell's to
    /// end (or, after a transfer, to keep bridged).
    Finished,
}

/// What a call went through before an agent's phone rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingContext {
    pub ivr_keys: String,
    pub ivr_vars: std::collections::BTreeMap<String, String>,
    pub group: Option<String>,
    pub enqueued: Option<Timestamp>,
}

/// Messages to a Call actor: what happened on its legs, and the queue's
/// news.
#[derive(Debug)]
pub enum CallMsg {
    PromptDone,
    Digit(char),
    CustomerHungUp,
    AgentAnswered(AgentId),
    AgentFailed(AgentId),
    AgentHungUp(AgentId),
    /// The hang-up that follows is a phone that went quiet (no media for
    /// the node's media timeout), not a BYE.
    MediaTimeout,
    /// The conversation is being recorded into this file.
    Recording(String),
    /// The customer went on hold (`true`) or came off it.
    Held(bool),
    /// The caller answered its callback.
    CallbackAnswered,
    /// Dialing the caller back ended with this final status (408: no
    /// answer at all, 503: not dialed).
    CallbackFailed(u16),
    Queue(QueueNotice),
    /// The talking agent transfers the customer.
    Transfer {
        to: TransferTarget,
        reply: RpcReplyPort<Result<(), TransferError>>,
    },
    /// Another agent on the phone with the call's node takes the
    /// customer (a supervisor taking over, a consulted agent).
    HandOver {
        to: AgentId,
        how: crate::call::TransferKind,
        reply: RpcReplyPort<Result<(), TransferError>>,
    },
    /// The outside number the agent consulted takes the customer.
    HandedOut {
        number: String,
        reply: RpcReplyPort<Result<(), TransferError>>,
    },
    /// The agent a transfer went to took the offer, or not.
    DirectOffered {
        agent: AgentId,
        ok: bool,
    },
    Tick,
}

/// How long an agent a call was transferred to may ring.
pub const DIRECT_RING_TIMEOUT: Duration = Duration::from_secs(20);

/// What a call tells of its record.
#[derive(Debug, Clone, PartialEq)]
pub enum CallNote {
    /// Where the call stands (it is still up): at its start and at each
    /// step that changes its record's outline (queued, answered,
    /// transferred). Kept in the store so that, if this node dies, a
    /// survivor closes the call's record.
    Progress(Box<CallRecord>),
    /// The finished call's record.
    Finished(Box<CallRecord>),
}

/// What of a record a [`CallNote::Progress`] is sent again for.
type Outline = (
    Option<String>,
    bool,
    Option<AgentId>,
    bool,
    usize,
    Option<String>,
);

fn outline(r: &CallRecord) -> Outline {
    (
        r.group.clone(),
        r.enqueued.is_some(),
        r.agent.clone(),
        r.answered.is_some(),
        r.transfers.len(),
        r.recording.clone(),
    )
}

/// A Call actor: configuration. The machine itself is handed over as the
/// spawn argument.
#[derive(Debug)]
pub struct CallActor {
    pub call: CallId,
    pub clock: Clock,
    /// Commands for this call's legs, tagged with the call.
    pub telephony: mpsc::UnboundedSender<(CallId, TelephonyCommand)>,
    /// The tenant's groups and agents, shared by all its calls.
    pub groups: Arc<HashMap<String, ActorRef<GroupMsg>>>,
    pub agents: Arc<HashMap<AgentId, AgentRef>>,
    /// Where the call's record goes: its progress, then the finished one.
    pub records: mpsc::UnboundedSender<CallNote>,
}

/// A Call actor's state.
#[derive(Debug)]
pub struct CallState {
    machine: InboundCall,
    timer: Alarm<CallMsg>,
    /// The outline last told as progress.
    told: Option<Outline>,
}

impl CallActor {
    fn tell(&self, cmd: TelephonyCommand) {
        let _ = self.telephony.send((self.call, cmd));
    }

    fn agent(&self, agent: &AgentId, msg: AgentMsg) {
        if let Some(r) = self.agents.get(agent) {
            let _ = r.cast(msg);
        }
    }

    fn group(&self, group: &str, msg: GroupMsg) {
        if let Some(r) = self.groups.get(group) {
            let _ = r.cast(msg);
        }
    }

    fn settle(&self, myself: &ActorRef<CallMsg>, state: &mut CallState) {
        let call = self.call;
        let mut finished = false;
        while let Some(a) = state.machine.poll_action() {
            match a {
                CallAction::Play { prompt } => self.tell(TelephonyCommand::Play { prompt }),
                CallAction::StopPrompt => self.tell(TelephonyCommand::StopPrompt),
                CallAction::PlayWaiting => self.tell(TelephonyCommand::PlayWaiting),
                CallAction::Announce {
                    position,
                    expected_wait,
                } => self.tell(TelephonyCommand::Announce {
                    position,
                    expected_wait,
                }),
                CallAction::StopWaiting => self.tell(TelephonyCommand::StopWaiting),
                CallAction::PlayOver { prompt } => self.tell(TelephonyCommand::PlayOver { prompt }),
                CallAction::AwaitCallback => self.tell(TelephonyCommand::AwaitCallback),
                CallAction::DialBack { agent } => self.tell(TelephonyCommand::DialBack { agent }),
                CallAction::RecordVoicemail { max_len } => {
                    self.tell(TelephonyCommand::RecordVoicemail { max_len })
                }
                CallAction::Ring { agent } => {
                    let r = state.machine.record();
                    let context = Box::new(RingContext {
                        ivr_keys: r.ivr.keys.clone(),
                        ivr_vars: r.ivr.vars.clone(),
                        group: r.group.clone(),
                        enqueued: r.enqueued,
                    });
                    self.agent(&agent, AgentMsg::Ringing(call));
                    self.tell(TelephonyCommand::Ring { agent, context })
                }
                CallAction::StopRinging { agent } => {
                    self.tell(TelephonyCommand::StopRinging { agent })
                }
                CallAction::Bridge { agent } => self.tell(TelephonyCommand::Bridge { agent }),
                CallAction::HangUpAgent { agent } => {
                    self.tell(TelephonyCommand::HangUpAgent { agent })
                }
                CallAction::HangUpCustomer => self.tell(TelephonyCommand::HangUpCustomer),
                CallAction::TransferOut { to } => self.tell(TelephonyCommand::TransferOut { to }),
                CallAction::Enqueue { group, enqueued } => {
                    // The group's notices go straight into this mailbox.
                    let me = myself.clone();
                    let tx = QueueSink::new(move |n| me.cast(CallMsg::Queue(n)).is_ok());
                    self.group(
                        &group,
                        GroupMsg::Enqueue {
                            call,
                            priority: 0,
                            enqueued: Some(enqueued),
                            notify: tx,
                        },
                    );
                }
                CallAction::Abandon { group } => self.group(&group, GroupMsg::Abandon(call)),
                CallAction::OfferAnswered { group, agent } => {
                    self.agent(&agent, AgentMsg::Answered(call));
                    self.group(&group, GroupMsg::Answered { call, agent });
                }
                CallAction::OfferFailed {
                    group,
                    agent,
                    missed,
                } => {
                    let msg = if missed {
                        AgentMsg::Missed(call)
                    } else {
                        AgentMsg::Withdrawn(call)
                    };
                    self.agent(&agent, msg);
                    self.group(&group, GroupMsg::OfferFailed { call, agent });
                }
                CallAction::AgentHungUp { agent, wrap_up } => {
                    self.agent(&agent, AgentMsg::HungUp { call, wrap_up })
                }
                CallAction::OfferDirect { agent } => {
                    let (me, to) = (myself.clone(), self.agents.get(&agent).cloned());
                    tokio::spawn(async move {
                        let ok = match to {
                            Some(r) => matches!(
                                ractor::call!(r, |reply| AgentMsg::offer(call, reply)),
                                Ok(Ok(()))
                            ),
                            None => false,
                        };
                        let _ = me.cast(CallMsg::DirectOffered { agent, ok });
                    });
                }
                CallAction::DirectAnswered { agent } => {
                    self.agent(&agent, AgentMsg::Answered(call))
                }
                CallAction::DirectFailed { agent, missed } => {
                    let msg = if missed {
                        AgentMsg::Missed(call)
                    } else {
                        AgentMsg::Withdrawn(call)
                    };
                    self.agent(&agent, msg);
                }
                CallAction::Finished(summary) => {
                    let _ = self.records.send(CallNote::Finished(summary));
                    self.tell(TelephonyCommand::Finished);
                    finished = true;
                    myself.stop(None);
                }
            }
        }
        let now = outline(state.machine.record());
        if !finished && state.told.as_ref() != Some(&now) {
            state.told = Some(now);
            let r = Box::new(state.machine.progress(self.clock.now()));
            let _ = self.records.send(CallNote::Progress(r));
        }
        let at = state.machine.poll_timeout();
        state.timer.set(myself, &self.clock, at, || CallMsg::Tick);
    }
}

// Local only: these messages carry channels and actor references.
impl ractor::Message for CallMsg {}

impl Actor for CallActor {
    type Msg = CallMsg;
    type State = CallState;
    type Arguments = InboundCall;

    async fn pre_start(
        &self,
        _myself: ActorRef<CallMsg>,
        machine: InboundCall,
    ) -> Result<CallState, ActorProcessingErr> {
        Ok(CallState {
            machine,
            timer: Alarm::new(),
            told: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CallMsg>,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        // The machine's first actions (the IVR's first prompt).
        self.settle(&myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        msg: CallMsg,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.clock.now();
        let m = &mut state.machine;
        match msg {
            CallMsg::PromptDone => m.prompt_done(now),
            CallMsg::Digit(k) => m.digit(k, now),
            CallMsg::CustomerHungUp => m.customer_hung_up(now),
            CallMsg::AgentAnswered(a) => m.agent_answered(&a, now),
            CallMsg::AgentFailed(a) => m.agent_failed(&a, now),
            CallMsg::AgentHungUp(_) => m.agent_hung_up(now),
            CallMsg::MediaTimeout => m.media_timeout(),
            CallMsg::Recording(file) => m.recording(file),
            CallMsg::Held(on) => m.held(on, now),
            CallMsg::CallbackAnswered => m.callback_answered(now),
            CallMsg::CallbackFailed(code) => m.callback_failed(code, now),
            CallMsg::Queue(QueueNotice::Ring {
                agents,
                ring_timeout,
                wrap_up,
                ..
            }) => {
                let ids: Vec<AgentId> = agents.into_iter().map(|(a, _)| a).collect();
                m.ring(&ids, ring_timeout, wrap_up, now);
            }
            CallMsg::Queue(QueueNotice::StopRinging { agents, .. }) => m.stop_ringing(&agents, now),
            CallMsg::Queue(QueueNotice::Overflow { to, reason, .. }) => m.overflow(to, reason, now),
            CallMsg::Queue(QueueNotice::Position {
                position,
                expected_wait,
                ..
            }) => m.queue_position(position, expected_wait),
            CallMsg::Transfer { to, reply } => {
                let known = match &to {
                    TransferTarget::Agent(a) if !self.agents.contains_key(a) => {
                        Err(TransferError::UnknownAgent(a.0.clone()))
                    }
                    TransferTarget::Group(g) if !self.groups.contains_key(g) => {
                        Err(TransferError::UnknownGroup(g.clone()))
                    }
                    _ => Ok(()),
                };
                let _ = reply.send(known.and_then(|()| m.transfer(to, now)));
            }
            CallMsg::HandOver { to, how, reply } => {
                let _ = reply.send(m.hand_over(&to, how, now));
            }
            CallMsg::HandedOut { number, reply } => {
                let _ = reply.send(m.handed_out(&number, now));
            }
            CallMsg::DirectOffered { agent, ok } => {
                m.direct_offer(&agent, ok, DIRECT_RING_TIMEOUT, now)
            }
            CallMsg::Tick => {
                state.timer.fired();
                m.handle_timeout(now)
            }
        }
        self.settle(&myself, state);
        Ok(())
    }
}

/// What an outbound call's actor asks of its legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundCommand {
    DialAgent,
    DialCustomer,
    Ringback,
    Bridge,
    HangUpAgent,
    HangUpCustomer,
    /// The record is written, with this outcome; whatever leg is still
    /// up is the shell's to end.
    Finished {
        outcome: Option<crate::outbound::DialOutcome>,
    },
}

/// Messages to an outbound call's actor: what happened on its legs.
#[derive(Debug)]
pub enum OutboundMsg {
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    CustomerRinging,
    CustomerAnswered,
    /// A final non-2xx response to the customer's INVITE (408: none).
    CustomerFailed(u16),
    CustomerHungUp,
    /// The conversation is being recorded into this file.
    Recording(String),
    /// The customer went on hold (`true`) or came off it.
    Held(bool),
    /// The talking agent sends the customer on, blind, to an agent (its
    /// actor given) or a number; the node rings the target.
    Transfer {
        to: TransferTarget,
        agent: Option<AgentRef>,
        reply: RpcReplyPort<Result<(), TransferError>>,
    },
    /// The blind transfer's target answered (and is bridged), or not.
    TransferAnswered,
    TransferFailed,
    /// Another agent on the phone with the customer already takes the
    /// call (a consulted agent, a supervisor taking over).
    HandOver {
        to: AgentId,
        agent: AgentRef,
        how: crate::call::TransferKind,
        reply: RpcReplyPort<Result<(), TransferError>>,
    },
    /// The outside number the agent consulted takes the customer.
    HandedOut {
        number: String,
        reply: RpcReplyPort<Result<(), TransferError>>,
    },
    /// The agent sends the customer to a skill group's queue: the answer
    /// is the record so far, to go on from in a queued call; the actor
    /// then stops without writing it.
    ToQueue {
        group: String,
        reply: RpcReplyPort<Result<Box<CallRecord>, TransferError>>,
    },
    Tick,
}

/// An outbound call's actor: configuration. The machine is the spawn
/// argument.
#[derive(Debug)]
pub struct OutboundActor {
    pub call: CallId,
    pub clock: Clock,
    pub telephony: mpsc::UnboundedSender<(CallId, OutboundCommand)>,
    pub agent: AgentRef,
    pub records: mpsc::UnboundedSender<CallNote>,
}

/// An outbound call's actor state.
#[derive(Debug)]
pub struct OutboundState {
    machine: OutboundCall,
    /// The actors of the agents on the call, to free them.
    agents: HashMap<AgentId, AgentRef>,
    timer: Alarm<OutboundMsg>,
    told: Option<Outline>,
}

impl OutboundActor {
    fn settle(&self, myself: &ActorRef<OutboundMsg>, state: &mut OutboundState) {
        let call = self.call;
        let mut finished = false;
        let tell = |cmd| {
            let _ = self.telephony.send((call, cmd));
        };
        while let Some(a) = state.machine.poll_action() {
            match a {
                OutboundAction::DialAgent => tell(OutboundCommand::DialAgent),
                OutboundAction::DialCustomer => tell(OutboundCommand::DialCustomer),
                OutboundAction::Ringback => tell(OutboundCommand::Ringback),
                OutboundAction::Bridge => tell(OutboundCommand::Bridge),
                OutboundAction::HangUpAgent => tell(OutboundCommand::HangUpAgent),
                OutboundAction::HangUpCustomer => tell(OutboundCommand::HangUpCustomer),
                OutboundAction::AgentFree { agent, wrap_up } => {
                    if let Some(a) = state.agents.get(&agent) {
                        let _ = a.cast(AgentMsg::HungUp { call, wrap_up });
                    }
                }
                OutboundAction::Record(record) => {
                    let outcome = record.outcome;
                    let _ = self.records.send(CallNote::Finished(record));
                    tell(OutboundCommand::Finished { outcome });
                    finished = true;
                    myself.stop(None);
                }
            }
        }
        // (A call gone on to a queue is the queued call's to tell.)
        if !finished && !state.machine.is_done() {
            let progress = state.machine.progress(self.clock.now());
            tell_progress(&self.records, &mut state.told, progress);
        }
        let at = state.machine.poll_timeout();
        state
            .timer
            .set(myself, &self.clock, at, || OutboundMsg::Tick);
    }
}

/// A call still up tells its record so far when its outline changed.
fn tell_progress(
    records: &mpsc::UnboundedSender<CallNote>,
    told: &mut Option<Outline>,
    progress: CallRecord,
) {
    let now = outline(&progress);
    if told.as_ref() != Some(&now) {
        *told = Some(now);
        let _ = records.send(CallNote::Progress(Box::new(progress)));
    }
}

/// A shell's one timer, for its machine's `poll_timeout()`: armed again
/// only when the deadline changes (a busy actor handles thousands of
/// messages a second, most of which leave it as it was).
#[derive(Debug)]
pub(crate) struct Alarm<M: ractor::Message> {
    handle: Option<JoinHandle<Result<(), ractor::MessagingErr<M>>>>,
    at: Option<Timestamp>,
}

impl<M: ractor::Message> Alarm<M> {
    pub(crate) fn new() -> Alarm<M> {
        Alarm {
            handle: None,
            at: None,
        }
    }

    /// The machine's deadline now.
    pub(crate) fn set(
        &mut self,
        myself: &ActorRef<M>,
        clock: &Clock,
        at: Option<Timestamp>,
        tick: fn() -> M,
    ) {
        if at == self.at {
            return;
        }
        self.stop();
        if let Some(at) = at {
            self.handle = Some(myself.send_after(clock.until(at), tick));
        }
        self.at = at;
    }

    /// Its tick arrived (or a replaced timer's late one): the next
    /// [`Alarm::set`] arms it again.
    pub(crate) fn fired(&mut self) {
        self.stop();
    }

    pub(crate) fn stop(&mut self) {
        if let Some(t) = self.handle.take() {
            t.abort();
        }
        self.at = None;
    }
}

// Local only: these messages carry channels and actor references.
impl ractor::Message for OutboundMsg {}

impl Actor for OutboundActor {
    type Msg = OutboundMsg;
    type State = OutboundState;
    type Arguments = OutboundCall;

    async fn pre_start(
        &self,
        _myself: ActorRef<OutboundMsg>,
        machine: OutboundCall,
    ) -> Result<OutboundState, ActorProcessingErr> {
        let agents = HashMap::from([(machine.agent().clone(), self.agent.clone())]);
        Ok(OutboundState {
            machine,
            agents,
            timer: Alarm::new(),
            told: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<OutboundMsg>,
        state: &mut OutboundState,
    ) -> Result<(), ActorProcessingErr> {
        self.settle(&myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<OutboundMsg>,
        msg: OutboundMsg,
        state: &mut OutboundState,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.clock.now();
        let m = &mut state.machine;
        match msg {
            OutboundMsg::AgentAnswered => m.agent_answered(now),
            OutboundMsg::AgentFailed => m.agent_failed(now),
            OutboundMsg::AgentHungUp => m.agent_hung_up(now),
            OutboundMsg::CustomerRinging => m.customer_ringing(),
            OutboundMsg::CustomerAnswered => m.customer_answered(now),
            OutboundMsg::CustomerFailed(code) => m.customer_failed(code, now),
            OutboundMsg::CustomerHungUp => m.customer_hung_up(now),
            OutboundMsg::Recording(file) => m.recording(file),
            OutboundMsg::Held(on) => m.held(on, now),
            OutboundMsg::Transfer { to, agent, reply } => {
                let target = match &to {
                    TransferTarget::Agent(a) => Some(a.clone()),
                    _ => None,
                };
                let done = m.transfer(to, now);
                if let (Ok(()), Some(id), Some(actor)) = (&done, target, agent) {
                    state.agents.insert(id, actor);
                }
                let _ = reply.send(done);
            }
            OutboundMsg::TransferAnswered => m.transfer_answered(now),
            OutboundMsg::TransferFailed => m.transfer_failed(now),
            OutboundMsg::HandOver {
                to,
                agent,
                how,
                reply,
            } => {
                let done = m.hand_over(&to, how, now);
                if done.is_ok() {
                    state.agents.insert(to, agent);
                }
                let _ = reply.send(done);
            }
            OutboundMsg::HandedOut { number, reply } => {
                let _ = reply.send(m.handed_out(&number, now));
            }
            OutboundMsg::ToQueue { group, reply } => {
                let queued = m.to_queue(&group, now).map(Box::new);
                let done = queued.is_ok();
                let _ = reply.send(queued);
                if done {
                    // The agent is freed; the queued call takes over.
                    self.settle(&myself, state);
                    myself.stop(None);
                    return Ok(());
                }
            }
            OutboundMsg::Tick => {
                state.timer.fired();
                m.handle_timeout(now)
            }
        }
        self.settle(&myself, state);
        Ok(())
    }
}

/// What an internal call's actor asks of its legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalCommand {
    AnswerAndBridge,
    RefuseCaller(u16),
    HangUpCallee,
    HangUpCaller,
    /// The record is written; whatever leg is still up is the shell's to
    /// end.
    Finished,
}

/// Messages to an internal call's actor: what happened on its legs.
#[derive(Debug)]
pub enum InternalMsg {
    CalleeAnswered,
    /// A final non-2xx response to the callee's INVITE (408: none).
    CalleeFailed(u16),
    CallerCancelled,
    CallerHungUp,
    CalleeHungUp,
    /// The conversation is being recorded into this file.
    Recording(String),
    Tick,
}

// Local only: these messages carry channels.
impl ractor::Message for InternalMsg {}

/// An internal call's actor: configuration. The machine is the spawn
/// argument.
#[derive(Debug)]
pub struct InternalActor {
    pub call: CallId,
    pub clock: Clock,
    pub telephony: mpsc::UnboundedSender<(CallId, InternalCommand)>,
    /// The agents put on this call (so no queue offers them another),
    /// freed when it ends.
    pub agents: Vec<AgentRef>,
    pub records: mpsc::UnboundedSender<CallNote>,
}

/// An internal call's actor state.
#[derive(Debug)]
pub struct InternalState {
    machine: crate::internal::InternalCall,
    timer: Alarm<InternalMsg>,
    told: Option<Outline>,
}

impl InternalActor {
    fn settle(&self, myself: &ActorRef<InternalMsg>, state: &mut InternalState) {
        use crate::internal::InternalAction;
        let call = self.call;
        let tell = |cmd| {
            let _ = self.telephony.send((call, cmd));
        };
        while let Some(a) = state.machine.poll_action() {
            match a {
                InternalAction::AnswerAndBridge => tell(InternalCommand::AnswerAndBridge),
                InternalAction::RefuseCaller(code) => tell(InternalCommand::RefuseCaller(code)),
                InternalAction::HangUpCallee => tell(InternalCommand::HangUpCallee),
                InternalAction::HangUpCaller => tell(InternalCommand::HangUpCaller),
                InternalAction::Record(record) => {
                    for a in &self.agents {
                        let _ = a.cast(AgentMsg::HungUp {
                            call,
                            wrap_up: Duration::ZERO,
                        });
                    }
                    let _ = self.records.send(CallNote::Finished(record));
                    tell(InternalCommand::Finished);
                    myself.stop(None);
                }
            }
        }
        if !state.machine.is_done() {
            let progress = state.machine.progress(self.clock.now());
            tell_progress(&self.records, &mut state.told, progress);
        }
        let at = state.machine.poll_timeout();
        state
            .timer
            .set(myself, &self.clock, at, || InternalMsg::Tick);
    }
}

impl Actor for InternalActor {
    type Msg = InternalMsg;
    type State = InternalState;
    type Arguments = crate::internal::InternalCall;

    async fn pre_start(
        &self,
        _myself: ActorRef<InternalMsg>,
        machine: crate::internal::InternalCall,
    ) -> Result<InternalState, ActorProcessingErr> {
        Ok(InternalState {
            machine,
            timer: Alarm::new(),
            told: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<InternalMsg>,
        state: &mut InternalState,
    ) -> Result<(), ActorProcessingErr> {
        self.settle(&myself, state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<InternalMsg>,
        msg: InternalMsg,
        state: &mut InternalState,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.clock.now();
        let m = &mut state.machine;
        match msg {
            InternalMsg::CalleeAnswered => m.callee_answered(now),
            InternalMsg::CalleeFailed(code) => m.callee_failed(code, now),
            InternalMsg::CallerCancelled => m.caller_cancelled(now),
            InternalMsg::CallerHungUp => m.caller_hung_up(now),
            InternalMsg::CalleeHungUp => m.callee_hung_up(now),
            InternalMsg::Recording(file) => m.recording(file),
            InternalMsg::Tick => {
                state.timer.fired();
                m.handle_timeout(now)
            }
        }
        self.settle(&myself, state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::Strategy;
    use crate::agent::{ChangeReason, StatusKind};
    use crate::agent_ref::REST_AFTER;

    async fn agent(id: &str, clock: Clock) -> (AgentRef, mpsc::UnboundedReceiver<AgentEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        // Resting when nothing is in flight, as a node's agents do.
        let r = AgentRef::start(AgentActor {
            id: id.into(),
            policy: AgentPolicy::default(),
            clock,
            events: Some(tx),
            recovery: None,
            rest: None,
        });
        let ok = ractor::call!(r, |reply| AgentMsg::SignIn {
            device: Device::Sip { account: id.into() },
            initial: Status::Ready,
            reply
        })
        .unwrap();
        assert_eq!(ok, Ok(()));
        r.cast(AgentMsg::DeviceOnline(true)).unwrap();
        (r, rx)
    }

    async fn status(r: &AgentRef) -> Status {
        ractor::call!(r, AgentMsg::Get).unwrap().0
    }

    /// Lets every actor run until nothing is left to do (paused time only
    /// moves when all tasks wait).
    /// A skill group with these members (level 1 each), their
    /// updates taken in.
    async fn group(
        id: &str,
        config: GroupConfig,
        clock: Clock,
        members: &[(&str, &AgentRef)],
    ) -> ActorRef<GroupMsg> {
        let (g, _) = Actor::spawn(
            None,
            SkillGroupActor {
                id: id.into(),
                config,
                clock,
                seed: 1,
                events: None,
                recovery: None,
            },
            (),
        )
        .await
        .unwrap();
        let members = members
            .iter()
            .map(|(agent, r)| {
                let m = Member {
                    agent: (*agent).into(),
                    level: 1,
                };
                (m, (*r).clone())
            })
            .collect();
        g.cast(GroupMsg::Members(members)).unwrap();
        settle().await;
        g
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    async fn choose(a: &AgentRef, status: Status) -> Result<(), AgentError> {
        ractor::call!(a, |reply| AgentMsg::Choose {
            status,
            by: By::Agent,
            reply
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_agent_rests_and_wakes_with_its_state() {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let (a, mut events) = agent("1001", clock).await;
        let later = REST_AFTER + Duration::from_secs(1);
        settle().await;
        assert!(!a.is_resting(), "just signed in");
        tokio::time::advance(later).await;
        settle().await;
        assert!(a.is_resting(), "nothing in flight for REST_AFTER");
        // A read is answered at rest, and a registration's refresh
        // changes nothing.
        assert_eq!(status(&a).await, Status::Ready);
        a.cast(AgentMsg::DeviceOnline(true)).unwrap();
        assert!(a.is_resting());

        // A choice wakes it.
        assert_eq!(choose(&a, Status::Busy).await, Ok(()));
        assert!(!a.is_resting());
        tokio::time::advance(later).await;
        settle().await;
        assert!(a.is_resting());
        assert_eq!(status(&a).await, Status::Busy);
        assert_eq!(choose(&a, Status::Ready).await, Ok(()));

        // Offered a call: ringing, talking and wrap-up keep the actor.
        let call = CallId(7);
        let offered = ractor::call!(a, |reply| AgentMsg::offer(call, reply)).unwrap();
        assert_eq!(offered, Ok(()));
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert!(!a.is_resting(), "ringing");
        a.cast(AgentMsg::Answered(call)).unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
        assert!(!a.is_resting(), "talking");
        assert_eq!(status(&a).await, Status::Talking { call });
        a.cast(AgentMsg::HungUp {
            call,
            wrap_up: Duration::from_secs(15),
        })
        .unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(12)).await;
        settle().await;
        assert!(!a.is_resting(), "wrapping up");
        assert_eq!(status(&a).await, Status::AfterCallWork { call });
        tokio::time::advance(Duration::from_secs(4)).await;
        settle().await;
        assert_eq!(status(&a).await, Status::Ready, "wrap-up ended on time");
        tokio::time::advance(later).await;
        settle().await;
        assert!(a.is_resting());
        let snap = ractor::call!(a, AgentMsg::Snapshot).unwrap();
        assert_eq!(snap.calls_today, 1, "counters kept at rest");
        assert_eq!(snap.talk_time_today, Duration::from_secs(60));
        assert!(snap.device_online);

        // The status log heard every change, across the rests.
        let mut to = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let AgentEvent::Changed { to: s, .. } = e {
                to.push(s.kind());
            }
        }
        use StatusKind as K;
        assert_eq!(
            to,
            [
                K::Ready,
                K::Busy,
                K::Ready,
                K::Ringing,
                K::Talking,
                K::AfterCallWork,
                K::Ready
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_message_is_lost_while_an_agent_goes_to_rest() {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let (a, _) = agent("1001", clock).await;
        let lunch = Status::Break {
            reason: "lunch".into(),
        };
        settle().await;
        let mut rested = 0;
        // The actor sees whether it may rest exactly REST_AFTER after its
        // last message; a choice arrives then, before or after the actor
        // has looked, with the rest timer's message in its mailbox or not.
        for turns in 0..8 {
            tokio::time::advance(REST_AFTER + Duration::from_secs(1)).await;
            settle().await;
            rested += usize::from(a.is_resting());
            a.cast(AgentMsg::Choose {
                status: Status::Ready,
                by: By::Agent,
                reply: tokio::sync::oneshot::channel().0.into(),
            })
            .unwrap();
            settle().await;
            tokio::time::advance(REST_AFTER).await;
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
            a.cast(AgentMsg::Choose {
                status: lunch.clone(),
                by: By::Agent,
                reply: tokio::sync::oneshot::channel().0.into(),
            })
            .unwrap();
            settle().await;
            assert_eq!(
                status(&a).await,
                lunch,
                "the choice after {turns} turns was taken"
            );
        }
        assert_eq!(rested, 8, "it rested every time in between");
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_recovers_three_panics_a_minute_and_stops_at_the_fourth() {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let (a, _) = agent("1001", clock).await;
        a.cast(AgentMsg::Choose {
            status: Status::Busy,
            by: By::Agent,
            reply: tokio::sync::oneshot::channel().0.into(),
        })
        .unwrap();
        for _ in 0..3 {
            a.cast(AgentMsg::Panic).unwrap();
            settle().await;
            assert_eq!(status(&a).await, Status::Busy, "recovered, its status kept");
        }
        // A minute later it may recover again.
        tokio::time::advance(RECOVERY_WINDOW).await;
        a.cast(AgentMsg::Panic).unwrap();
        settle().await;
        assert_eq!(status(&a).await, Status::Busy);
        // Two more are recovered; the fourth in the window stops it.
        a.cast(AgentMsg::Panic).unwrap();
        a.cast(AgentMsg::Panic).unwrap();
        a.cast(AgentMsg::Panic).unwrap();
        settle().await;
        assert!(
            ractor::call!(a, AgentMsg::Get).is_err(),
            "a fourth panic within the window stops the actor"
        );
    }

    /// An agent (a hand-made one) that is ready, idle longest, and
    /// takes its time over every offer: it accepts `delay` later.
    struct SlowAgent {
        id: AgentId,
        idle_since: Timestamp,
        delay: Duration,
        /// `false`: an offer is dropped unanswered (its actor died with
        /// it in the mailbox, its node was lost).
        answers: bool,
    }

    impl Actor for SlowAgent {
        type Msg = AgentMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<AgentMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<AgentMsg>,
            msg: AgentMsg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                AgentMsg::Watch(group) => {
                    let availability = crate::acd::Availability {
                        signed_in: true,
                        ready: true,
                        idle_since: self.idle_since,
                        calls_today: 0,
                        talk_time_today: Duration::ZERO,
                    };
                    let _ = group.cast(GroupMsg::AgentUpdate {
                        agent: self.id.clone(),
                        availability,
                    });
                }
                AgentMsg::Offer { reply, .. } if !self.answers => drop(reply),
                AgentMsg::Offer { reply, .. } => {
                    let delay = self.delay;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        reply.send(Ok(()));
                    });
                }
                _ => {}
            }
            Ok(())
        }
    }

    /// A longest-idle group of `made` (idle longest, so offered first) and
    /// a real 1002.
    async fn group_led_by(made: SlowAgent) -> ActorRef<GroupMsg> {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let id = made.id.clone();
        let (lead, _) = Actor::spawn(None, made, ()).await.unwrap();
        let (b, _) = agent("1002", clock).await;
        group(
            "support",
            GroupConfig {
                strategy: Strategy::LongestIdle,
                ring_timeout: Duration::from_secs(60),
                ..GroupConfig::default()
            },
            clock,
            &[(id.0.as_str(), &AgentRef::from(lead)), ("1002", &b)],
        )
        .await
    }

    /// Queues `call` in `g`; what the group tells the call comes out.
    fn enqueue(g: &ActorRef<GroupMsg>, call: CallId) -> mpsc::UnboundedReceiver<QueueNotice> {
        let (tx, rx) = mpsc::unbounded_channel();
        g.cast(GroupMsg::Enqueue {
            call,
            priority: 0,
            enqueued: None,
            notify: tx.into(),
        })
        .unwrap();
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn an_offer_lost_unanswered_is_a_no_and_the_call_rings_the_next_agent() {
        let g = group_led_by(SlowAgent {
            id: "lost".into(),
            idle_since: Timestamp(1),
            delay: Duration::ZERO,
            answers: false,
        })
        .await;
        let mut rx = enqueue(&g, CallId(1));
        let rang = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        let Ok(Some(QueueNotice::Ring { agents, .. })) = rang else {
            panic!("the call waited on the lost offer: {rang:?}");
        };
        assert_eq!(agents[0].0, AgentId::from("1002"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_slow_to_answer_an_offer_does_not_hold_up_the_next_call() {
        // The slow agent has been idle longest: the first call is its.
        let g = group_led_by(SlowAgent {
            id: "slow".into(),
            idle_since: Timestamp(1),
            delay: Duration::from_secs(30),
            answers: true,
        })
        .await;
        let mut first = enqueue(&g, CallId(1));
        let mut second = enqueue(&g, CallId(2));
        // The second call rings 1002 while the slow agent still thinks.
        let rang = tokio::time::timeout(Duration::from_secs(5), second.recv()).await;
        let Ok(Some(QueueNotice::Ring { agents, .. })) = rang else {
            panic!("the second call waited for the slow agent's answer: {rang:?}");
        };
        assert_eq!(agents[0].0, AgentId::from("1002"));
        assert!(
            first.try_recv().is_err(),
            "the slow agent has not answered yet"
        );
        // Its answer comes, and the first call rings it.
        let Some(QueueNotice::Ring { agents, .. }) = first.recv().await else {
            panic!("the first call did not ring the slow agent");
        };
        assert_eq!(agents[0].0, AgentId::from("slow"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_whose_actor_is_gone_leaves_the_queue_and_frees_its_agent() {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let (a, _) = agent("1001", clock).await;
        let g = group("support", GroupConfig::default(), clock, &[("1001", &a)]).await;
        // A Call actor that died: nobody reads its notices.
        let (tx, rx) = mpsc::unbounded_channel();
        drop(rx);
        g.cast(GroupMsg::Enqueue {
            call: CallId(9),
            priority: 0,
            enqueued: None,
            notify: tx.into(),
        })
        .unwrap();
        settle().await;
        // The offer rang 1001 for a moment; the group took the call out
        // and 1001 is ready again, free for the next caller.
        assert_eq!(status(&a).await, Status::Ready);
        let (tx, mut rx) = mpsc::unbounded_channel();
        g.cast(GroupMsg::Enqueue {
            call: CallId(10),
            priority: 0,
            enqueued: None,
            notify: tx.into(),
        })
        .unwrap();
        let Some(QueueNotice::Ring { agents, .. }) = rx.recv().await else {
            panic!("the next call was not offered");
        };
        assert_eq!(agents[0].0, AgentId::from("1001"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_rings_the_longest_idle_agent_then_the_next_after_a_miss() {
        let clock = Clock::starting_at(Timestamp(1_000_000));
        let (a, mut a_log) = agent("1001", clock).await;
        tokio::time::advance(Duration::from_secs(5)).await;
        let (b, _) = agent("1002", clock).await;
        let g = group(
            "support",
            GroupConfig {
                strategy: Strategy::LongestIdle,
                wrap_up: Duration::from_secs(10),
                ..GroupConfig::default()
            },
            clock,
            &[("1001", &a), ("1002", &b)],
        )
        .await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        g.cast(GroupMsg::Enqueue {
            call: CallId(1),
            priority: 0,
            enqueued: None,
            notify: tx.into(),
        })
        .unwrap();
        let Some(QueueNotice::Ring {
            agents,
            ring_timeout,
            ..
        }) = rx.recv().await
        else {
            panic!("no ring");
        };
        assert_eq!(agents.len(), 1);
        assert_eq!(
            agents[0].0,
            AgentId::from("1001"),
            "1001 has been ready longest"
        );
        assert_eq!(status(&a).await, Status::Ringing { call: CallId(1) });
        // 1001 does not answer: the Call reports the miss to both.
        tokio::time::advance(ring_timeout).await;
        a.cast(AgentMsg::Missed(CallId(1))).unwrap();
        g.cast(GroupMsg::OfferFailed {
            call: CallId(1),
            agent: "1001".into(),
        })
        .unwrap();
        let Some(QueueNotice::Ring { agents, .. }) = rx.recv().await else {
            panic!("no second ring");
        };
        assert_eq!(agents[0].0, AgentId::from("1002"));
        b.cast(AgentMsg::Answered(CallId(1))).unwrap();
        g.cast(GroupMsg::Answered {
            call: CallId(1),
            agent: "1002".into(),
        })
        .unwrap();
        settle().await;
        assert_eq!(status(&b).await, Status::Talking { call: CallId(1) });
        // Hang-up: wrap-up, then ready again by the actor's own timer.
        tokio::time::advance(Duration::from_secs(60)).await;
        b.cast(AgentMsg::HungUp {
            call: CallId(1),
            wrap_up: Duration::from_secs(10),
        })
        .unwrap();
        settle().await;
        assert_eq!(status(&b).await, Status::AfterCallWork { call: CallId(1) });
        tokio::time::advance(Duration::from_secs(10)).await;
        settle().await;
        assert_eq!(status(&b).await, Status::Ready);
        // 1001's log: ready, ringing, then back to ready after one miss.
        let mut reasons = Vec::new();
        while let Ok(e) = a_log.try_recv() {
            if let AgentEvent::Changed { period, reason, .. } = e {
                reasons.push((period.status.kind(), reason));
            }
        }
        assert_eq!(
            reasons,
            vec![
                (StatusKind::Offline, ChangeReason::SignIn),
                (StatusKind::Ready, ChangeReason::Offered),
                (StatusKind::Ringing, ChangeReason::Missed),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_queue_time_overflows_by_the_timer() {
        let clock = Clock::starting_at(Timestamp(0));
        let (a, _) = agent("1003", clock).await;
        let _ = ractor::call!(a, |reply| AgentMsg::Choose {
            status: Status::Busy,
            by: By::Agent,
            reply
        })
        .unwrap();
        let g = group("sales", GroupConfig::default(), clock, &[("1003", &a)]).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        g.cast(GroupMsg::Enqueue {
            call: CallId(9),
            priority: 0,
            enqueued: None,
            notify: tx.into(),
        })
        .unwrap();
        settle().await;
        assert_eq!(
            ractor::call!(g, |r| GroupMsg::Position(CallId(9), r)).unwrap(),
            Some(1)
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        settle().await;
        assert!(rx.try_recv().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        match rx.recv().await {
            Some(QueueNotice::Overflow { call, to, reason }) => {
                assert_eq!(
                    (call, to, reason),
                    (CallId(9), Overflow::Voicemail, OverflowReason::MaxQueueTime)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_through_ivr_queue_and_agent_writes_its_record() {
        use crate::ivr::{Flow, Node};
        use std::collections::BTreeMap;
        let clock = Clock::starting_at(Timestamp(0));
        let (a, _) = agent("1001", clock).await;
        let g = group(
            "support",
            GroupConfig {
                wrap_up: Duration::from_secs(5),
                ..GroupConfig::default()
            },
            clock,
            &[("1001", &a)],
        )
        .await;
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "menu".to_string(),
            Node::Menu {
                prompt: "menu".into(),
                options: [('1', "q".to_string())].into_iter().collect(),
                timeout: Duration::from_secs(5),
                invalid_prompt: None,
                retries: 0,
                repeat_key: None,
                on_fail: "q".into(),
            },
        );
        nodes.insert(
            "q".to_string(),
            Node::TransferGroup {
                group: "support".into(),
            },
        );
        let flow = Flow {
            id: "f".into(),
            start: "menu".into(),
            nodes,
        };
        let machine = InboundCall::start(
            crate::call::CallSetup {
                tenant: "demo".into(),
                node: "n1".into(),
                utc_offset_minutes: 480,
                call: CallId(5),
                caller: "13800138000".into(),
                dialed: "4000".into(),
            },
            flow,
            true,
            false,
            None,
            clock.now(),
        );
        let (tel_tx, mut tel) = mpsc::unbounded_channel();
        let (rec_tx, mut records) = mpsc::unbounded_channel();
        let (c, _) = Actor::spawn(
            None,
            CallActor {
                call: CallId(5),
                clock,
                telephony: tel_tx,
                groups: Arc::new([("support".to_string(), g.clone())].into_iter().collect()),
                agents: Arc::new([(AgentId::from("1001"), a.clone())].into_iter().collect()),
                records: rec_tx,
            },
            machine,
        )
        .await
        .unwrap();
        assert_eq!(
            tel.recv().await,
            Some((
                CallId(5),
                TelephonyCommand::Play {
                    prompt: "menu".into()
                }
            ))
        );
        c.cast(CallMsg::PromptDone).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        c.cast(CallMsg::Digit('1')).unwrap();
        assert_eq!(
            tel.recv().await.map(|x| x.1),
            Some(TelephonyCommand::PlayWaiting)
        );
        match tel.recv().await.map(|x| x.1) {
            Some(TelephonyCommand::Ring { agent, context }) => {
                assert_eq!(agent, AgentId::from("1001"));
                // The screen pop's facts: the key pressed and the queue.
                assert_eq!(context.ivr_keys, "1");
                assert_eq!(context.group.as_deref(), Some("support"));
                assert!(context.enqueued.is_some());
            }
            other => panic!("expected a ring, got {other:?}"),
        }
        assert_eq!(status(&a).await, Status::Ringing { call: CallId(5) });
        tokio::time::advance(Duration::from_secs(3)).await;
        c.cast(CallMsg::AgentAnswered("1001".into())).unwrap();
        assert_eq!(
            tel.recv().await.map(|x| x.1),
            Some(TelephonyCommand::StopWaiting)
        );
        assert_eq!(
            tel.recv().await.map(|x| x.1),
            Some(TelephonyCommand::Bridge {
                agent: "1001".into()
            })
        );
        settle().await;
        assert_eq!(status(&a).await, Status::Talking { call: CallId(5) });
        tokio::time::advance(Duration::from_secs(30)).await;
        c.cast(CallMsg::CustomerHungUp).unwrap();
        assert_eq!(
            tel.recv().await.map(|x| x.1),
            Some(TelephonyCommand::HangUpAgent {
                agent: "1001".into()
            })
        );
        let mut progress = Vec::new();
        let record = loop {
            match records.recv().await.unwrap() {
                CallNote::Progress(p) => progress.push(p),
                CallNote::Finished(r) => break r,
            }
        };
        // What it wrote of itself while up: first unanswered, then queued,
        // then answered by 1001.
        assert!(progress[0].answered.is_none() && progress[0].group.is_none());
        assert!(progress
            .iter()
            .any(|p| p.enqueued.is_some() && p.answered.is_none()));
        let last = progress.last().unwrap();
        assert_eq!(last.agent, Some("1001".into()));
        assert!(last.answered.is_some() && last.talk_end.is_none());
        assert_eq!(record.agent, Some("1001".into()));
        assert_eq!(record.talk_time(), Duration::from_secs(30));
        assert_eq!(record.ring_time(), Duration::from_secs(3));
        assert_eq!(record.ivr.keys, "1");
        settle().await;
        assert_eq!(status(&a).await, Status::AfterCallWork { call: CallId(5) });
        tokio::time::advance(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(status(&a).await, Status::Ready);
    }
}
