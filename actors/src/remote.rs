//! Agents and skill groups on other nodes: what travels between nodes for
//! them, and the local stand-ins the rest of a node talks to.
//!
//! In a cluster each agent and skill group lives on its home node (the
//! placement decides). Every other node holds a proxy actor with the same
//! message type ([`AgentProxy`] for [`AgentMsg`], [`GroupProxy`] for
//! [`GroupMsg`]), so calls and the API use one kind of reference whatever
//! the home. A proxy sends to the real actor when it is hosted on this node
//! and otherwise turns the message into a [`Wire`] for the home node; what
//! cannot cross a node (reply ports, channels, actor references) becomes
//! request numbers, the sender's node, and entity names.
//!
//! A group's proxy keeps every call it enqueued until the call leaves the
//! queue (answered, abandoned, overflowed). When the group's home changes
//! (its node died, left or joined) the proxy enqueues those calls again at
//! the new home with their original enqueue time and priority, so no caller
//! loses their place. The [`Registry`] is the node's table of hosted actors
//! and proxies, and of requests waiting for a remote reply.

use crate::acd::{Availability, Overflow, OverflowReason};
use crate::agent::{Actor as By, AgentError, AgentPolicy, Device, Status};
use crate::agent_ref::{AgentRef, Identity, Kept, Quiet, Rest};
use crate::shell::{
    AgentMsg, AgentSnapshot, Clock, GroupMsg, GroupSnapshot, OfferReply, QueueNotice, QueueSink,
};
use crate::{AgentId, CallId, TenantId, Timestamp};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Kinds of entity with a home node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Agent,
    Group,
}

/// How this node reaches the others: the placement and the transport.
pub trait Link: Send + Sync + fmt::Debug + 'static {
    /// This node's name.
    fn me(&self) -> &str;
    /// The node `id` of `kind` lives on now.
    fn home(&self, tenant: &TenantId, kind: Entity, id: &str) -> String;
    /// Sends `wire` to `node`; false when it cannot go (no session).
    fn send(&self, node: &str, wire: &Wire) -> bool;
    /// Whether `node` is a member up now.
    fn is_up(&self, node: &str) -> bool;
}

/// What nodes tell each other about agents and groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Wire {
    Agent {
        tenant: TenantId,
        agent: AgentId,
        msg: ToAgent,
    },
    Group {
        tenant: TenantId,
        group: String,
        msg: ToGroup,
    },
    /// For the proxy of `group` on the node of a queued call.
    Caller {
        tenant: TenantId,
        group: String,
        notice: Notice,
    },
    Reply {
        req: u64,
        reply: Reply,
    },
}

/// [`AgentMsg`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToAgent {
    SignIn {
        #[serde(with = "json")]
        device: Device,
        #[serde(with = "json")]
        initial: Status,
        req: u64,
    },
    SignOut {
        by: By,
        req: u64,
    },
    Choose {
        #[serde(with = "json")]
        status: Status,
        by: By,
        req: u64,
    },
    Offer {
        call: CallId,
        req: u64,
    },
    Answered(CallId),
    Dial {
        call: CallId,
        req: u64,
    },
    Missed(CallId),
    Withdrawn(CallId),
    HungUp {
        call: CallId,
        wrap_up: Duration,
    },
    DeviceOnline(bool),
    /// The proxy of this group on the agent's home hears its availability.
    Watch {
        group: String,
    },
    Get {
        req: u64,
    },
    Snapshot {
        req: u64,
    },
    Policy(#[serde(with = "json")] AgentPolicy),
    Resume(CallId),
    Restore(#[serde(with = "json")] Status),
    ResumeRinging(CallId),
}

/// [`GroupMsg`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToGroup {
    /// Notices for the call go back to the sending node.
    Enqueue {
        call: CallId,
        priority: u8,
        enqueued: Timestamp,
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
    AgentUpdate {
        agent: AgentId,
        availability: Availability,
    },
    Position {
        call: CallId,
        req: u64,
    },
    Snapshot {
        req: u64,
    },
}

/// [`QueueNotice`] on the wire: agents by id (the receiving node has
/// their proxies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    Ring {
        call: CallId,
        agents: Vec<AgentId>,
        ring_timeout: Duration,
        wrap_up: Duration,
    },
    StopRinging {
        call: CallId,
        agents: Vec<AgentId>,
    },
    Overflow {
        call: CallId,
        #[serde(with = "json")]
        to: Overflow,
        reason: OverflowReason,
    },
    Position {
        call: CallId,
        position: u64,
        expected_wait: Option<Duration>,
    },
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Done(Result<(), AgentError>),
    Status(#[serde(with = "json")] Status, Timestamp),
    Agent(AgentSnapshot),
    Position(Option<u64>),
    Group(GroupSnapshot),
    /// The entity is not hosted on the node asked (it moved).
    Gone,
}

/// Fields whose serde form needs a self-describing format (internally
/// tagged enums) cross as JSON text.
pub(crate) mod json {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(v).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// A request waiting for its remote reply.
#[derive(Debug)]
enum Pending {
    Done(RpcReplyPort<Result<(), AgentError>>),
    Offer(OfferReply),
    Status(RpcReplyPort<(Status, Timestamp)>),
    Agent(RpcReplyPort<AgentSnapshot>),
    Position(RpcReplyPort<Option<usize>>),
    Group(RpcReplyPort<GroupSnapshot>),
}

/// Where a message for an entity goes now.
#[derive(Debug)]
enum Route<R> {
    Here(R),
    There(String),
    /// Its home is this node but it is not started yet (or it is gone).
    Nowhere,
}

/// A route, comparable: did the entity move?
#[derive(Debug, Clone, PartialEq, Eq)]
enum At {
    Here(Identity),
    There(String),
    Nowhere,
}

/// An entity's reference here that tells which one it is.
trait Here {
    fn identity(&self) -> Identity;
}

impl Here for AgentRef {
    fn identity(&self) -> Identity {
        AgentRef::identity(self)
    }
}

impl Here for ActorRef<GroupMsg> {
    fn identity(&self) -> Identity {
        Identity::Actor(self.get_id())
    }
}

impl<R: Here> Route<R> {
    fn at(&self) -> At {
        match self {
            Route::Here(r) => At::Here(r.identity()),
            Route::There(n) => At::There(n.clone()),
            Route::Nowhere => At::Nowhere,
        }
    }
}

type Key<T> = (TenantId, T);

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// How long a request to another node may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// The node's agents and groups: hosted here or proxied, and the requests
/// waiting for other nodes.
#[derive(Debug)]
pub struct Registry {
    link: Arc<dyn Link>,
    hosted_agents: RwLock<HashMap<Key<AgentId>, AgentRef>>,
    hosted_groups: RwLock<HashMap<Key<String>, ActorRef<GroupMsg>>>,
    agent_proxies: RwLock<HashMap<Key<AgentId>, AgentRef>>,
    group_proxies: RwLock<HashMap<Key<String>, ActorRef<GroupMsg>>>,
    pending: Mutex<HashMap<u64, (Instant, Pending)>>,
    next_req: AtomicU64,
    /// Messages for entities not started here (yet): a node that saw a
    /// member go down a moment before this one sends to the new home
    /// before it has started the entity. Kept for [`PARK_FOR`].
    parked: Mutex<Vec<(Instant, String, Wire)>>,
    /// The call each agent hosted here is on, and the node of that call,
    /// when it is another node: if that node goes, so did the call.
    engaged: Mutex<HashMap<Key<AgentId>, (CallId, String)>>,
    /// Until when this node may act for an entity (its lease, by this
    /// node's monotonic clock); past it the entity is as if not hosted
    /// here, even before the lease is found lost (a node that was paused
    /// must not act on a lease another node may hold by now).
    fences: Mutex<HashMap<(Entity, TenantId, String), Instant>>,
}

/// How long a message waits for its entity to start here.
pub const PARK_FOR: Duration = Duration::from_secs(5);
/// At most this many messages wait.
const PARK_MAX: usize = 10_000;

impl Registry {
    pub fn new(link: Arc<dyn Link>) -> Arc<Registry> {
        Arc::new(Registry {
            link,
            hosted_agents: RwLock::default(),
            hosted_groups: RwLock::default(),
            agent_proxies: RwLock::default(),
            group_proxies: RwLock::default(),
            pending: Mutex::default(),
            next_req: AtomicU64::new(1),
            parked: Mutex::default(),
            engaged: Mutex::default(),
            fences: Mutex::default(),
        })
    }

    pub fn me(&self) -> &str {
        self.link.me()
    }

    /// Whether `id` of `kind` belongs on this node now.
    pub fn is_home(&self, tenant: &TenantId, kind: Entity, id: &str) -> bool {
        self.link.home(tenant, kind, id) == self.link.me()
    }

    /// The agent's real actor runs here now.
    pub fn host_agent(self: &Arc<Self>, tenant: &TenantId, agent: &AgentId, actor: AgentRef) {
        tracing::info!(%tenant, %agent, "agent hosted here");
        write(&self.hosted_agents).insert((tenant.clone(), agent.clone()), actor);
        self.unpark(
            |w| matches!(w, Wire::Agent { tenant: t, agent: a, .. } if t == tenant && a == agent),
        );
    }

    /// The agent's real actor no longer runs here; it is returned.
    pub fn unhost_agent(&self, tenant: &TenantId, agent: &AgentId) -> Option<AgentRef> {
        let r = write(&self.hosted_agents).remove(&(tenant.clone(), agent.clone()));
        self.unfence(Entity::Agent, tenant, &agent.0);
        self.engaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(tenant.clone(), agent.clone()));
        if r.is_some() {
            tracing::info!(%tenant, %agent, "agent no longer hosted here");
        }
        r
    }

    pub fn host_group(self: &Arc<Self>, tenant: &TenantId, group: &str, actor: ActorRef<GroupMsg>) {
        tracing::info!(%tenant, %group, "skill group hosted here");
        write(&self.hosted_groups).insert((tenant.clone(), group.to_string()), actor);
        self.unpark(
            |w| matches!(w, Wire::Group { tenant: t, group: g, .. } if t == tenant && g == group),
        );
    }

    /// Holds `wire` until its entity starts here, or [`PARK_FOR`].
    fn park(&self, from: &str, wire: Wire) {
        let mut p = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        if p.len() >= PARK_MAX {
            p.remove(0);
        }
        p.push((Instant::now(), from.to_string(), wire));
    }

    /// Delivers, in their order, the parked messages `which` picks.
    fn unpark(self: &Arc<Self>, which: impl Fn(&Wire) -> bool) {
        let ready: Vec<(Instant, String, Wire)> = {
            let mut p = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
            let (now, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *p)
                .into_iter()
                .partition(|(_, _, w)| which(w));
            *p = keep;
            now
        };
        for (at, from, w) in ready {
            // A request whose asker may have given up is refused rather
            // than carried out late (an offer nobody rings for).
            match w.req() {
                Some(req) if at.elapsed() > REPLY_TIMEOUT / 3 => {
                    self.reply(&from, req, Reply::Gone)
                }
                _ => self.deliver(&from, w),
            }
        }
    }

    pub fn unhost_group(&self, tenant: &TenantId, group: &str) -> Option<ActorRef<GroupMsg>> {
        let r = write(&self.hosted_groups).remove(&(tenant.clone(), group.to_string()));
        self.unfence(Entity::Group, tenant, group);
        if r.is_some() {
            tracing::info!(%tenant, %group, "skill group no longer hosted here");
        }
        r
    }

    /// The agent's actor here, if it runs here and its lease holds.
    pub fn hosted_agent(&self, tenant: &TenantId, agent: &AgentId) -> Option<AgentRef> {
        if !self.fenced_in(Entity::Agent, tenant, &agent.0) {
            return None;
        }
        self.running_agent(tenant, agent)
    }

    /// The group's actor here, if it runs here and its lease holds.
    pub fn hosted_group(&self, tenant: &TenantId, group: &str) -> Option<ActorRef<GroupMsg>> {
        if !self.fenced_in(Entity::Group, tenant, group) {
            return None;
        }
        self.running_group(tenant, group)
    }

    /// The agent's actor here, lease or not.
    pub fn running_agent(&self, tenant: &TenantId, agent: &AgentId) -> Option<AgentRef> {
        read(&self.hosted_agents)
            .get(&(tenant.clone(), agent.clone()))
            .cloned()
    }

    /// The group's actor here, lease or not.
    pub fn running_group(&self, tenant: &TenantId, group: &str) -> Option<ActorRef<GroupMsg>> {
        read(&self.hosted_groups)
            .get(&(tenant.clone(), group.to_string()))
            .cloned()
    }

    /// This node may act for the entity until `until` (its lease).
    pub fn fence(&self, kind: Entity, tenant: &TenantId, id: &str, until: Instant) {
        self.fences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((kind, tenant.clone(), id.to_string()), until);
    }

    /// Whether the entity's lease (if it has one) still holds by this
    /// node's clock.
    fn fenced_in(&self, kind: Entity, tenant: &TenantId, id: &str) -> bool {
        let f = self.fences.lock().unwrap_or_else(PoisonError::into_inner);
        match f.get(&(kind, tenant.clone(), id.to_string())) {
            Some(until) => Instant::now() < *until,
            None => true,
        }
    }

    fn unfence(&self, kind: Entity, tenant: &TenantId, id: &str) {
        self.fences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(kind, tenant.clone(), id.to_string()));
    }

    /// How many agents and groups run here.
    pub fn hosted(&self) -> (usize, usize) {
        (
            read(&self.hosted_agents).len(),
            read(&self.hosted_groups).len(),
        )
    }

    /// The agent's proxy on this node (it rests, without an actor, while
    /// nothing is in flight for it: see [`crate::agent_ref`]).
    pub fn agent_proxy(self: &Arc<Self>, tenant: &TenantId, agent: &AgentId) -> AgentRef {
        let proxy = AgentRef::proxy(tenant, agent, self);
        write(&self.agent_proxies).insert((tenant.clone(), agent.clone()), proxy.clone());
        proxy
    }

    /// Starts the group's proxy on this node.
    pub async fn group_proxy(
        self: &Arc<Self>,
        tenant: &TenantId,
        group: &str,
        clock: Clock,
    ) -> Result<ActorRef<GroupMsg>, ractor::SpawnErr> {
        let (actor, _) = Actor::spawn(
            None,
            GroupProxy {
                tenant: tenant.clone(),
                group: group.to_string(),
                clock,
                registry: self.clone(),
            },
            (),
        )
        .await?;
        write(&self.group_proxies).insert((tenant.clone(), group.to_string()), actor.clone());
        Ok(actor)
    }

    /// Forgets a removed agent's proxy (the caller stops it).
    pub fn drop_agent_proxy(&self, tenant: &TenantId, agent: &AgentId) {
        write(&self.agent_proxies).remove(&(tenant.clone(), agent.clone()));
    }

    pub fn drop_group_proxy(&self, tenant: &TenantId, group: &str) {
        write(&self.group_proxies).remove(&(tenant.clone(), group.to_string()));
    }

    /// Tells every group proxy that homes may have changed: each enqueues
    /// its waiting calls again where their group lives now.
    pub fn homes_changed(&self) {
        self.calls_gone();
        for p in read(&self.group_proxies).values() {
            let _ = p.cast(GroupMsg::Proxy(ProxyInput(Input::Moved)));
        }
        for p in read(&self.agent_proxies).values() {
            let _ = p.cast(AgentMsg::Proxy(ProxyInput(Input::Moved)));
        }
    }

    /// Tells the agent's new home the status it had here (its actor here
    /// is stopping: its home moved).
    pub fn restore_at_home(&self, tenant: &TenantId, agent: &AgentId, status: Status) {
        let home = self.link.home(tenant, Entity::Agent, &agent.0);
        if home == self.link.me() {
            return;
        }
        let wire = Wire::Agent {
            tenant: tenant.clone(),
            agent: agent.clone(),
            msg: ToAgent::Restore(status),
        };
        self.link.send(&home, &wire);
    }

    /// Agents hosted here that are on a call of a node that is no longer
    /// up: the call ended with its node, the agent is free again (no
    /// wrap-up: there is nothing to wrap up).
    fn calls_gone(&self) {
        let gone: Vec<(Key<AgentId>, CallId, String)> = {
            let mut e = self.engaged.lock().unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<_> = e
                .iter()
                .filter(|(_, (_, node))| !self.link.is_up(node))
                .map(|(k, (c, n))| (k.clone(), *c, n.clone()))
                .collect();
            for (k, _, _) in &gone {
                e.remove(k);
            }
            gone
        };
        for ((tenant, agent), call, node) in gone {
            tracing::warn!(%tenant, %agent, %call, %node, "the agent's call was on a node that is gone: the agent is free again");
            if let Some(real) = self.hosted_agent(&tenant, &agent) {
                // Ringing or talking: whichever it is ends (the other is
                // refused, as not the agent's state).
                let _ = real.cast(AgentMsg::Withdrawn(call));
                let _ = real.cast(AgentMsg::HungUp {
                    call,
                    wrap_up: Duration::ZERO,
                });
            }
        }
    }

    fn engage(&self, tenant: &TenantId, agent: &AgentId, call: CallId, node: &str) {
        self.engaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant.clone(), agent.clone()), (call, node.to_string()));
    }

    fn disengage(&self, tenant: &TenantId, agent: &AgentId, call: CallId) {
        let mut e = self.engaged.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (tenant.clone(), agent.clone());
        if e.get(&key).is_some_and(|(c, _)| *c == call) {
            e.remove(&key);
        }
    }

    fn agent_route(&self, tenant: &TenantId, agent: &AgentId) -> Route<AgentRef> {
        if let Some(r) = self.hosted_agent(tenant, agent) {
            return Route::Here(r);
        }
        let home = self.link.home(tenant, Entity::Agent, &agent.0);
        if home == self.link.me() {
            Route::Nowhere
        } else {
            Route::There(home)
        }
    }

    fn group_route(&self, tenant: &TenantId, group: &str) -> Route<ActorRef<GroupMsg>> {
        if let Some(r) = self.hosted_group(tenant, group) {
            return Route::Here(r);
        }
        let home = self.link.home(tenant, Entity::Group, group);
        if home == self.link.me() {
            Route::Nowhere
        } else {
            Route::There(home)
        }
    }

    /// The group of this node whose actor (real or proxy) is `id`.
    fn group_named(&self, id: ActorId) -> Option<String> {
        let by_id = |m: &HashMap<Key<String>, ActorRef<GroupMsg>>| {
            m.iter()
                .find(|(_, r)| r.get_id() == id)
                .map(|((_, g), _)| g.clone())
        };
        by_id(&read(&self.hosted_groups)).or_else(|| by_id(&read(&self.group_proxies)))
    }

    fn expect(&self, p: Pending) -> u64 {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(req, (Instant::now(), p));
        req
    }

    /// Drops the requests whose reply is overdue: their callers see the
    /// reply port closed (an error), as when an actor dies.
    pub fn expire(&self, now: Instant) -> usize {
        let late: Vec<(String, Wire)> = {
            let mut p = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
            let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *p)
                .into_iter()
                .partition(|(at, _, _)| now.duration_since(*at) >= PARK_FOR);
            *p = keep;
            late.into_iter().map(|(_, f, w)| (f, w)).collect()
        };
        // Requests for an entity that never started here: say so.
        for (from, w) in late {
            if let Some(req) = w.req() {
                self.reply(&from, req, Reply::Gone);
            }
        }
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let before = p.len();
        p.retain(|_, (at, _)| now.duration_since(*at) < REPLY_TIMEOUT);
        before - p.len()
    }

    fn complete(&self, req: u64, reply: Reply) {
        let Some((_, pending)) = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&req)
        else {
            return;
        };
        // A mismatched or `Gone` reply drops the port: the caller sees
        // an error.
        match (pending, reply) {
            (Pending::Done(p), Reply::Done(r)) => {
                let _ = p.send(r);
            }
            (Pending::Offer(p), Reply::Done(r)) => p.send(r),
            (Pending::Status(p), Reply::Status(s, t)) => {
                let _ = p.send((s, t));
            }
            (Pending::Agent(p), Reply::Agent(s)) => {
                let _ = p.send(s);
            }
            (Pending::Position(p), Reply::Position(n)) => {
                let _ = p.send(n.and_then(|n| usize::try_from(n).ok()));
            }
            (Pending::Group(p), Reply::Group(s)) => {
                let _ = p.send(s);
            }
            _ => {}
        }
    }

    fn reply(&self, to: &str, req: u64, reply: Reply) {
        self.link.send(to, &Wire::Reply { req, reply });
    }

    /// Handles what node `from` sent.
    pub fn deliver(self: &Arc<Self>, from: &str, wire: Wire) {
        tracing::debug!(%from, ?wire, "from another node");
        match wire {
            Wire::Reply { req, reply } => self.complete(req, reply),
            Wire::Agent { tenant, agent, msg } => self.to_agent(from, &tenant, &agent, msg),
            Wire::Group { tenant, group, msg } => self.to_group(from, tenant, group, msg),
            Wire::Caller {
                tenant,
                group,
                notice,
            } => {
                let proxy = read(&self.group_proxies).get(&(tenant, group)).cloned();
                if let Some(p) = proxy {
                    let _ = p.cast(GroupMsg::Proxy(ProxyInput(Input::Notice(notice))));
                }
            }
        }
    }

    fn to_agent(self: &Arc<Self>, from: &str, tenant: &TenantId, agent: &AgentId, msg: ToAgent) {
        let Some(real) = self.hosted_agent(tenant, agent) else {
            let wire = Wire::Agent {
                tenant: tenant.clone(),
                agent: agent.clone(),
                msg,
            };
            return self.park(from, wire);
        };
        match &msg {
            ToAgent::Answered(c) | ToAgent::Resume(c) | ToAgent::ResumeRinging(c) => {
                self.engage(tenant, agent, *c, from)
            }
            ToAgent::HungUp { call, .. } | ToAgent::Missed(call) | ToAgent::Withdrawn(call) => {
                self.disengage(tenant, agent, *call)
            }
            _ => {}
        }
        let from = from.to_string();
        let ask = |req: u64, call: AgentCall| {
            let me = self.clone();
            let real = real.clone();
            let (tenant, agent) = (tenant.clone(), agent.clone());
            tokio::spawn(async move {
                let dialed = match &call {
                    AgentCall::Dial(c) => Some(*c),
                    _ => None,
                };
                let reply = call.ask(&real).await;
                if let (Some(c), Reply::Done(Ok(()))) = (dialed, &reply) {
                    me.engage(&tenant, &agent, c, &from);
                }
                me.reply(&from, req, reply);
            });
        };
        let cast = match msg {
            ToAgent::SignIn {
                device,
                initial,
                req,
            } => return ask(req, AgentCall::SignIn(device, initial)),
            ToAgent::SignOut { by, req } => return ask(req, AgentCall::SignOut(by)),
            ToAgent::Choose { status, by, req } => return ask(req, AgentCall::Choose(status, by)),
            ToAgent::Offer { call, req } => return ask(req, AgentCall::Offer(call)),
            ToAgent::Dial { call, req } => return ask(req, AgentCall::Dial(call)),
            ToAgent::Get { req } => return ask(req, AgentCall::Get),
            ToAgent::Snapshot { req } => return ask(req, AgentCall::Snapshot),
            ToAgent::Answered(c) => AgentMsg::Answered(c),
            ToAgent::Missed(c) => AgentMsg::Missed(c),
            ToAgent::Withdrawn(c) => AgentMsg::Withdrawn(c),
            ToAgent::HungUp { call, wrap_up } => AgentMsg::HungUp { call, wrap_up },
            ToAgent::DeviceOnline(b) => AgentMsg::DeviceOnline(b),
            ToAgent::Policy(p) => AgentMsg::Policy(p),
            ToAgent::Resume(c) => AgentMsg::Resume(c),
            ToAgent::Restore(st) => AgentMsg::Restore(st),
            ToAgent::ResumeRinging(c) => AgentMsg::ResumeRinging(c),
            ToAgent::Watch { group } => {
                let proxy = read(&self.group_proxies)
                    .get(&(tenant.clone(), group))
                    .cloned();
                match proxy {
                    Some(p) => AgentMsg::Watch(p),
                    None => return,
                }
            }
        };
        let _ = real.cast(cast);
    }

    fn to_group(self: &Arc<Self>, from: &str, tenant: TenantId, group: String, msg: ToGroup) {
        let Some(real) = self.hosted_group(&tenant, &group) else {
            return self.park(from, Wire::Group { tenant, group, msg });
        };
        let cast = match msg {
            ToGroup::Enqueue {
                call,
                priority,
                enqueued,
            } => {
                // The group's notices for the call go back to its node.
                let (me, from) = (self.clone(), from.to_string());
                let tx = QueueSink::new(move |n| {
                    let wire = Wire::Caller {
                        tenant: tenant.clone(),
                        group: group.clone(),
                        notice: Notice::from(n),
                    };
                    me.link.send(&from, &wire)
                });
                GroupMsg::Enqueue {
                    call,
                    priority,
                    enqueued: Some(enqueued),
                    notify: tx,
                }
            }
            ToGroup::Abandon(c) => GroupMsg::Abandon(c),
            ToGroup::Answered { call, agent } => GroupMsg::Answered { call, agent },
            ToGroup::OfferFailed { call, agent } => GroupMsg::OfferFailed { call, agent },
            ToGroup::AgentUpdate {
                agent,
                availability,
            } => GroupMsg::AgentUpdate {
                agent,
                availability,
            },
            ToGroup::Position { call, req } => {
                let (me, from) = (self.clone(), from.to_string());
                tokio::spawn(async move {
                    let reply = match ractor::call!(real, |r| GroupMsg::Position(call, r)) {
                        Ok(n) => Reply::Position(n.map(|n| n as u64)),
                        Err(_) => Reply::Gone,
                    };
                    me.reply(&from, req, reply);
                });
                return;
            }
            ToGroup::Snapshot { req } => {
                let (me, from) = (self.clone(), from.to_string());
                tokio::spawn(async move {
                    let reply = match ractor::call!(real, GroupMsg::Snapshot) {
                        Ok(s) => Reply::Group(s),
                        Err(_) => Reply::Gone,
                    };
                    me.reply(&from, req, reply);
                });
                return;
            }
        };
        let _ = real.cast(cast);
    }

    /// The tenant's agent proxies on this node for `ids`.
    fn agent_refs(&self, tenant: &TenantId, ids: Vec<AgentId>) -> Vec<(AgentId, AgentRef)> {
        let proxies = read(&self.agent_proxies);
        ids.into_iter()
            .filter_map(|a| {
                let r = proxies.get(&(tenant.clone(), a.clone()))?.clone();
                Some((a, r))
            })
            .collect()
    }
}

impl Wire {
    /// The request number, when the sender waits for a reply.
    fn req(&self) -> Option<u64> {
        match self {
            Wire::Agent { msg, .. } => msg.req(),
            Wire::Group {
                msg: ToGroup::Position { req, .. } | ToGroup::Snapshot { req },
                ..
            } => Some(*req),
            _ => None,
        }
    }
}

impl ToAgent {
    fn req(&self) -> Option<u64> {
        match self {
            ToAgent::SignIn { req, .. }
            | ToAgent::SignOut { req, .. }
            | ToAgent::Choose { req, .. }
            | ToAgent::Offer { req, .. }
            | ToAgent::Dial { req, .. }
            | ToAgent::Get { req }
            | ToAgent::Snapshot { req } => Some(*req),
            _ => None,
        }
    }
}

/// A request to a hosted agent on behalf of another node.
enum AgentCall {
    SignIn(Device, Status),
    SignOut(By),
    Choose(Status, By),
    Offer(CallId),
    Dial(CallId),
    Get,
    Snapshot,
}

impl AgentCall {
    async fn ask(self, a: &AgentRef) -> Reply {
        let done = |r: Result<Result<(), AgentError>, _>| r.map_or(Reply::Gone, Reply::Done);
        match self {
            AgentCall::SignIn(device, initial) => done(ractor::call!(a, |reply| {
                AgentMsg::SignIn {
                    device,
                    initial,
                    reply,
                }
            })),
            AgentCall::SignOut(by) => {
                done(ractor::call!(a, |reply| AgentMsg::SignOut { by, reply }))
            }
            AgentCall::Choose(status, by) => done(ractor::call!(a, |reply| AgentMsg::Choose {
                status,
                by,
                reply
            })),
            AgentCall::Offer(call) => done(ractor::call!(a, |reply| AgentMsg::offer(call, reply))),
            AgentCall::Dial(call) => done(ractor::call!(a, |reply| AgentMsg::Dial { call, reply })),
            AgentCall::Get => {
                ractor::call!(a, AgentMsg::Get).map_or(Reply::Gone, |(s, t)| Reply::Status(s, t))
            }
            AgentCall::Snapshot => {
                ractor::call!(a, AgentMsg::Snapshot).map_or(Reply::Gone, Reply::Agent)
            }
        }
    }
}

impl From<QueueNotice> for Notice {
    fn from(n: QueueNotice) -> Notice {
        match n {
            QueueNotice::Ring {
                call,
                agents,
                ring_timeout,
                wrap_up,
            } => Notice::Ring {
                call,
                agents: agents.into_iter().map(|(a, _)| a).collect(),
                ring_timeout,
                wrap_up,
            },
            QueueNotice::StopRinging { call, agents } => Notice::StopRinging { call, agents },
            QueueNotice::Overflow { call, to, reason } => Notice::Overflow { call, to, reason },
            QueueNotice::Position {
                call,
                position,
                expected_wait,
            } => Notice::Position {
                call,
                position: position as u64,
                expected_wait,
            },
        }
    }
}

/// What a group proxy hears besides [`GroupMsg`]s: opaque to everyone
/// else (a real group actor ignores it).
#[derive(Debug)]
pub struct ProxyInput(Input);

impl ProxyInput {
    /// Homes may have changed: nothing for a proxy with nothing in flight.
    pub(crate) fn is_moved(&self) -> bool {
        matches!(self.0, Input::Moved)
    }
}

#[derive(Debug)]
enum Input {
    /// From the group's home, for a call queued through this proxy.
    Notice(Notice),
    /// A call left the queue at a group hosted here (overflow).
    Left(CallId),
    /// Homes may have changed.
    Moved,
    /// The agent took this call (its dial was accepted).
    OnCall(CallId),
}

/// An agent's stand-in on a node that does not host it.
#[derive(Debug)]
pub struct AgentProxy {
    pub tenant: TenantId,
    pub agent: AgentId,
    pub registry: Arc<Registry>,
    /// Its home here, when it rests while nothing is in flight.
    pub rest: Option<Rest>,
}

impl AgentProxy {
    fn send(&self, node: &str, msg: ToAgent) {
        let wire = Wire::Agent {
            tenant: self.tenant.clone(),
            agent: self.agent.clone(),
            msg,
        };
        if !self.registry.link.send(node, &wire) {
            tracing::debug!(agent = %self.agent, %node, "agent's home unreachable");
        }
    }
}

/// What an agent's proxy knows: the calls of this node the agent is on
/// or rung for, and where the agent was when last asked.
#[derive(Debug)]
pub struct AgentProxyState {
    calls: std::collections::BTreeSet<CallId>,
    ringing: std::collections::BTreeSet<CallId>,
    at: At,
    clock: Clock,
    quiet: Quiet,
}

impl AgentProxyState {
    /// Nothing in flight: no call of this node the agent is on or rung
    /// for.
    fn idle(&self) -> bool {
        self.calls.is_empty() && self.ringing.is_empty()
    }
}

impl Actor for AgentProxy {
    type Msg = AgentMsg;
    type State = AgentProxyState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<AgentMsg>,
        _: (),
    ) -> Result<AgentProxyState, ActorProcessingErr> {
        let clock = Clock::system();
        Ok(AgentProxyState {
            calls: std::collections::BTreeSet::new(),
            ringing: std::collections::BTreeSet::new(),
            at: self.registry.agent_route(&self.tenant, &self.agent).at(),
            clock,
            quiet: Quiet::new(clock.now()),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        st: &mut AgentProxyState,
    ) -> Result<(), ActorProcessingErr> {
        let now = st.clock.now();
        if !st.quiet.heard(&msg, now) {
            let rest = st.quiet.due(self.rest.as_ref(), &myself, st.idle(), now);
            if let Some(rest) = rest {
                if rest.rest(&myself, st.quiet.handled(), || Kept::Proxy) {
                    myself.stop(None);
                } else {
                    st.quiet.retry(&rest, &myself);
                }
            }
            return Ok(());
        }
        self.take(&myself, msg, st);
        let idle = st.idle();
        st.quiet.settle(self.rest.as_ref(), &myself, idle);
        Ok(())
    }
}

impl AgentProxy {
    /// One message: kept track of, and carried to the agent.
    fn take(&self, myself: &ActorRef<AgentMsg>, msg: AgentMsg, st: &mut AgentProxyState) {
        // The calls of this node the agent is on, so that a new home
        // learns of them (and does not offer the agent another).
        let msg = match msg {
            AgentMsg::Proxy(ProxyInput(Input::OnCall(c))) => {
                st.calls.insert(c);
                return;
            }
            AgentMsg::Proxy(ProxyInput(Input::Moved)) => {
                let route = self.registry.agent_route(&self.tenant, &self.agent);
                let at = route.at();
                if at != st.at {
                    st.at = at;
                    for c in &st.calls {
                        tracing::info!(agent = %self.agent, call = %c, "agent's home moved during a call: resuming it there");
                        self.route(route.clone(), AgentMsg::Resume(*c));
                    }
                    for c in &st.ringing {
                        tracing::info!(agent = %self.agent, call = %c, "agent's home moved while its phone rang: ringing there");
                        self.route(route.clone(), AgentMsg::ResumeRinging(*c));
                    }
                }
                return;
            }
            AgentMsg::Proxy(_) | AgentMsg::Tick | AgentMsg::Rest => return,
            AgentMsg::Answered(c) => {
                st.ringing.remove(&c);
                st.calls.insert(c);
                AgentMsg::Answered(c)
            }
            AgentMsg::Missed(c) => {
                st.ringing.remove(&c);
                AgentMsg::Missed(c)
            }
            AgentMsg::Withdrawn(c) => {
                st.ringing.remove(&c);
                AgentMsg::Withdrawn(c)
            }
            AgentMsg::Ringing(c) => {
                // Its home learns which node the ring is on (its offer came
                // through the group's node, which may be another).
                st.ringing.insert(c);
                AgentMsg::ResumeRinging(c)
            }
            AgentMsg::HungUp { call, wrap_up } => {
                st.calls.remove(&call);
                AgentMsg::HungUp { call, wrap_up }
            }
            AgentMsg::Dial { call, reply } => {
                // The answer decides whether the agent is on the call.
                let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), AgentError>>();
                // Through its home, as every message to it.
                let me = match self.rest.as_ref().and_then(Rest::agent_ref) {
                    Some(home) => home,
                    None => AgentRef::from(myself.clone()),
                };
                tokio::spawn(async move {
                    if let Ok(r) = rx.await {
                        if r.is_ok() {
                            let _ = me.cast(AgentMsg::Proxy(ProxyInput(Input::OnCall(call))));
                        }
                        let _ = reply.send(r);
                    }
                });
                AgentMsg::Dial {
                    call,
                    reply: tx.into(),
                }
            }
            m => m,
        };
        // `at` moves only with a move: a home change is noticed once.
        let route = self.registry.agent_route(&self.tenant, &self.agent);
        self.route(route, msg);
    }
}

// By hand: an actor reference clones whatever its message type.
impl<R: Clone> Clone for Route<R> {
    fn clone(&self) -> Self {
        match self {
            Route::Here(a) => Route::Here(a.clone()),
            Route::There(n) => Route::There(n.clone()),
            Route::Nowhere => Route::Nowhere,
        }
    }
}

impl AgentProxy {
    fn route(&self, route: Route<AgentRef>, msg: AgentMsg) {
        let node = match route {
            Route::Here(real) => {
                let _ = real.cast(msg);
                return;
            }
            // Its home is starting it: requests fail (their ports drop),
            // news is lost as if it came a moment earlier.
            Route::Nowhere => return,
            Route::There(node) => node,
        };
        let r = &self.registry;
        let wire = match msg {
            AgentMsg::SignIn {
                device,
                initial,
                reply,
            } => ToAgent::SignIn {
                device,
                initial,
                req: r.expect(Pending::Done(reply)),
            },
            AgentMsg::SignOut { by, reply } => ToAgent::SignOut {
                by,
                req: r.expect(Pending::Done(reply)),
            },
            AgentMsg::Choose { status, by, reply } => ToAgent::Choose {
                status,
                by,
                req: r.expect(Pending::Done(reply)),
            },
            AgentMsg::Offer { call, reply } => ToAgent::Offer {
                call,
                req: r.expect(Pending::Offer(reply)),
            },
            AgentMsg::Dial { call, reply } => ToAgent::Dial {
                call,
                req: r.expect(Pending::Done(reply)),
            },
            AgentMsg::Get(reply) => ToAgent::Get {
                req: r.expect(Pending::Status(reply)),
            },
            AgentMsg::Snapshot(reply) => ToAgent::Snapshot {
                req: r.expect(Pending::Agent(reply)),
            },
            AgentMsg::Answered(c) => ToAgent::Answered(c),
            AgentMsg::Missed(c) => ToAgent::Missed(c),
            AgentMsg::Withdrawn(c) => ToAgent::Withdrawn(c),
            AgentMsg::HungUp { call, wrap_up } => ToAgent::HungUp { call, wrap_up },
            AgentMsg::DeviceOnline(b) => ToAgent::DeviceOnline(b),
            AgentMsg::Policy(p) => ToAgent::Policy(p),
            AgentMsg::Resume(c) => ToAgent::Resume(c),
            AgentMsg::Restore(st) => ToAgent::Restore(st),
            AgentMsg::ResumeRinging(c) => ToAgent::ResumeRinging(c),
            AgentMsg::Ringing(_) | AgentMsg::Handover(_) => return,
            AgentMsg::Watch(g) => match r.group_named(g.get_id()) {
                Some(group) => ToAgent::Watch { group },
                None => return,
            },
            // Fault injection is for the actor on the node asked.
            AgentMsg::Tick | AgentMsg::Proxy(_) | AgentMsg::Panic | AgentMsg::Rest => return,
        };
        self.send(&node, wire);
    }
}

/// A skill group's stand-in on every node: calls enqueue through it, and
/// it enqueues them again when the group moves.
#[derive(Debug)]
pub struct GroupProxy {
    pub tenant: TenantId,
    pub group: String,
    pub clock: Clock,
    pub registry: Arc<Registry>,
}

/// A call queued through a proxy, until it leaves the queue.
#[derive(Debug)]
struct Waiting {
    priority: u8,
    enqueued: Timestamp,
    notify: QueueSink,
    at: At,
}

#[derive(Debug, Default)]
pub struct GroupProxyState {
    waiting: HashMap<CallId, Waiting>,
}

impl GroupProxy {
    fn send(&self, node: &str, msg: ToGroup) {
        let wire = Wire::Group {
            tenant: self.tenant.clone(),
            group: self.group.clone(),
            msg,
        };
        if !self.registry.link.send(node, &wire) {
            tracing::debug!(group = %self.group, %node, "group's home unreachable");
        }
    }

    /// Enqueues `call` where the group lives now; where that is.
    fn enqueue(&self, myself: &ActorRef<GroupMsg>, call: CallId, w: &Waiting) -> At {
        let route = self.registry.group_route(&self.tenant, &self.group);
        tracing::debug!(group = %self.group, %call, at = ?route.at(), "enqueue through the proxy");
        match &route {
            Route::Here(real) => {
                // Notices go straight to the call; an overflow also tells
                // this proxy the call left.
                let (notify, me) = (w.notify.clone(), myself.clone());
                let tx = QueueSink::new(move |n| {
                    if let QueueNotice::Overflow { call, .. } = &n {
                        let _ = me.cast(GroupMsg::Proxy(ProxyInput(Input::Left(*call))));
                    }
                    notify.send(n)
                });
                let _ = real.cast(GroupMsg::Enqueue {
                    call,
                    priority: w.priority,
                    enqueued: Some(w.enqueued),
                    notify: tx,
                });
            }
            Route::There(node) => self.send(
                node,
                ToGroup::Enqueue {
                    call,
                    priority: w.priority,
                    enqueued: w.enqueued,
                },
            ),
            Route::Nowhere => {}
        }
        route.at()
    }

    fn forward(&self, route: Route<ActorRef<GroupMsg>>, msg: GroupMsg) {
        let r = &self.registry;
        let wire = match (route, msg) {
            (Route::Here(real), msg) => {
                let _ = real.send_message(msg);
                return;
            }
            (Route::Nowhere, _) => return,
            (Route::There(node), msg) => {
                let w = match msg {
                    GroupMsg::Abandon(c) => ToGroup::Abandon(c),
                    GroupMsg::Answered { call, agent } => ToGroup::Answered { call, agent },
                    GroupMsg::OfferFailed { call, agent } => ToGroup::OfferFailed { call, agent },
                    GroupMsg::AgentUpdate {
                        agent,
                        availability,
                    } => ToGroup::AgentUpdate {
                        agent,
                        availability,
                    },
                    GroupMsg::Position(call, reply) => ToGroup::Position {
                        call,
                        req: r.expect(Pending::Position(reply)),
                    },
                    GroupMsg::Snapshot(reply) => ToGroup::Snapshot {
                        req: r.expect(Pending::Group(reply)),
                    },
                    // Members and settings are the home's to load; the
                    // rest never crosses.
                    _ => return,
                };
                (node, w)
            }
        };
        self.send(&wire.0, wire.1);
    }
}

impl Actor for GroupProxy {
    type Msg = GroupMsg;
    type State = GroupProxyState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<GroupMsg>,
        _: (),
    ) -> Result<GroupProxyState, ActorProcessingErr> {
        Ok(GroupProxyState::default())
    }

    async fn handle(
        &self,
        myself: ActorRef<GroupMsg>,
        msg: GroupMsg,
        st: &mut GroupProxyState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GroupMsg::Enqueue {
                call,
                priority,
                enqueued,
                notify,
            } => {
                let mut w = Waiting {
                    priority,
                    enqueued: enqueued.unwrap_or_else(|| self.clock.now()),
                    notify,
                    at: At::Nowhere,
                };
                w.at = self.enqueue(&myself, call, &w);
                st.waiting.insert(call, w);
            }
            GroupMsg::Proxy(ProxyInput(Input::Moved)) => {
                let now = self.registry.group_route(&self.tenant, &self.group).at();
                let mut moved: Vec<_> = st
                    .waiting
                    .iter()
                    .filter(|(_, w)| w.at != now)
                    .map(|(c, _)| *c)
                    .collect();
                // The longest waiting first, as they were.
                moved.sort_by_key(|c| st.waiting.get(c).map(|w| w.enqueued));
                for call in moved {
                    if let Some(w) = st.waiting.get(&call) {
                        let at = self.enqueue(&myself, call, w);
                        tracing::info!(group = %self.group, %call, ?at, "queued call enqueued again where its group lives now");
                        if let Some(w) = st.waiting.get_mut(&call) {
                            w.at = at;
                        }
                    }
                }
            }
            GroupMsg::Proxy(ProxyInput(Input::Left(call))) => {
                st.waiting.remove(&call);
            }
            GroupMsg::Proxy(ProxyInput(Input::Notice(n))) => {
                let (call, notice) = match n {
                    Notice::Ring {
                        call,
                        agents,
                        ring_timeout,
                        wrap_up,
                    } => (
                        call,
                        QueueNotice::Ring {
                            call,
                            agents: self.registry.agent_refs(&self.tenant, agents),
                            ring_timeout,
                            wrap_up,
                        },
                    ),
                    Notice::StopRinging { call, agents } => {
                        (call, QueueNotice::StopRinging { call, agents })
                    }
                    Notice::Overflow { call, to, reason } => {
                        (call, QueueNotice::Overflow { call, to, reason })
                    }
                    Notice::Position {
                        call,
                        position,
                        expected_wait,
                    } => (
                        call,
                        QueueNotice::Position {
                            call,
                            position: usize::try_from(position).unwrap_or(usize::MAX),
                            expected_wait,
                        },
                    ),
                };
                let left = matches!(notice, QueueNotice::Overflow { .. });
                let gone = match st.waiting.get(&call) {
                    Some(w) => !w.notify.send(notice),
                    None => false,
                };
                if gone {
                    // The call's actor is gone: out of the queue.
                    let route = self.registry.group_route(&self.tenant, &self.group);
                    self.forward(route, GroupMsg::Abandon(call));
                }
                if left || gone {
                    st.waiting.remove(&call);
                }
            }
            GroupMsg::Tick => {}
            msg => {
                match &msg {
                    GroupMsg::Abandon(c) | GroupMsg::Answered { call: c, .. } => {
                        st.waiting.remove(c);
                    }
                    _ => {}
                }
                let route = self.registry.group_route(&self.tenant, &self.group);
                self.forward(route, msg);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_wire_message_survives_bincode() {
        let cfg = bincode::config::standard();
        let samples = vec![
            Wire::Agent {
                tenant: TenantId::from("t"),
                agent: AgentId::from("1001"),
                msg: ToAgent::Choose {
                    status: Status::Break {
                        reason: "lunch".into(),
                    },
                    by: By::Agent,
                    req: 7,
                },
            },
            Wire::Agent {
                tenant: TenantId::from("t"),
                agent: AgentId::from("1001"),
                msg: ToAgent::SignIn {
                    device: Device::Sip {
                        account: "1001".into(),
                    },
                    initial: Status::Ready,
                    req: 1,
                },
            },
            Wire::Caller {
                tenant: TenantId::from("t"),
                group: "support".into(),
                notice: Notice::Overflow {
                    call: CallId(9),
                    to: Overflow::Voicemail,
                    reason: OverflowReason::MaxQueueTime,
                },
            },
            Wire::Reply {
                req: 3,
                reply: Reply::Done(Err(AgentError::NotReady(crate::agent::StatusKind::Busy))),
            },
            Wire::Reply {
                req: 4,
                reply: Reply::Status(Status::Ready, Timestamp(5)),
            },
        ];
        for w in samples {
            let bytes = bincode::serde::encode_to_vec(&w, cfg).unwrap();
            let (back, _): (Wire, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
            assert_eq!(back, w);
        }
    }

    /// Nodes in one process: a letter is delivered at once.
    #[derive(Debug, Default)]
    struct Loopback {
        me: String,
        home: Arc<Mutex<String>>,
        peers: Arc<Mutex<HashMap<String, Arc<Registry>>>>,
    }

    impl Link for Loopback {
        fn me(&self) -> &str {
            &self.me
        }

        fn home(&self, _: &TenantId, _: Entity, _: &str) -> String {
            self.home.lock().unwrap().clone()
        }

        fn send(&self, node: &str, wire: &Wire) -> bool {
            let peer = self.peers.lock().unwrap().get(node).cloned();
            match peer {
                Some(r) => {
                    r.deliver(&self.me, wire.clone());
                    true
                }
                None => false,
            }
        }

        fn is_up(&self, node: &str) -> bool {
            self.peers.lock().unwrap().contains_key(node)
        }
    }

    type Peers = Arc<Mutex<HashMap<String, Arc<Registry>>>>;

    /// Registries of nodes `names` in one process, every entity homed on
    /// `home` (the test moves it): the home, the peers, the registries.
    fn nodes<const N: usize>(
        names: [&str; N],
        home: &str,
    ) -> (Arc<Mutex<String>>, Peers, [Arc<Registry>; N]) {
        let home = Arc::new(Mutex::new(home.to_string()));
        let peers: Peers = Arc::default();
        let regs = names.map(|me| {
            let r = Registry::new(Arc::new(Loopback {
                me: me.into(),
                home: home.clone(),
                peers: peers.clone(),
            }));
            peers.lock().unwrap().insert(me.into(), r.clone());
            r
        });
        (home, peers, regs)
    }

    async fn group_on(reg: &Arc<Registry>, t: &TenantId) -> ActorRef<GroupMsg> {
        use crate::acd::{GroupConfig, NoAgentRule};
        use crate::shell::SkillGroupActor;
        let (g, _) = Actor::spawn(
            None,
            SkillGroupActor {
                id: "support".into(),
                config: GroupConfig {
                    no_agent: NoAgentRule::Queue,
                    max_queue_time: Duration::from_secs(600),
                    ..GroupConfig::default()
                },
                clock: Clock::system(),
                seed: 1,
                events: None,
                recovery: None,
            },
            (),
        )
        .await
        .unwrap();
        reg.host_group(t, "support", g.clone());
        g
    }

    async fn positions(g: &ActorRef<GroupMsg>, calls: &[CallId]) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        for c in calls {
            out.push(ractor::call!(g, |r| GroupMsg::Position(*c, r)).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_groups_proxy_enqueues_its_waiting_calls_again_at_the_new_home_in_their_order() {
        let (home, peers, [a, b, c]) = nodes(["a", "b", "c"], "b");
        let t = TenantId::from("t");
        let on_b = group_on(&b, &t).await;
        let proxy = a.group_proxy(&t, "support", Clock::system()).await.unwrap();
        // Three callers on a, the second the longest waiting; the third
        // gives up before the move.
        let calls = [CallId(1), CallId(2), CallId(3)];
        let base = Clock::system().now().0 - 10_000;
        let mut rxs = Vec::new();
        for (call, at) in calls.iter().zip([base + 2_000, base + 1_000, base + 3_000]) {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            rxs.push(rx);
            proxy
                .cast(GroupMsg::Enqueue {
                    call: *call,
                    priority: 0,
                    enqueued: Some(Timestamp(at)),
                    notify: tx.into(),
                })
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(positions(&on_b, &calls).await, [Some(2), Some(1), Some(3)]);
        proxy.cast(GroupMsg::Abandon(CallId(3))).unwrap();

        // b dies: the group's new home is c.
        b.unhost_group(&t, "support").unwrap().stop(None);
        peers.lock().unwrap().remove("b");
        *home.lock().unwrap() = "c".into();
        let on_c = group_on(&c, &t).await;
        a.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(positions(&on_c, &calls).await, [Some(2), Some(1), None]);
        let snap = ractor::call!(on_c, GroupMsg::Snapshot).unwrap();
        assert_eq!(
            (snap.waiting, snap.oldest),
            (2, Some(Timestamp(base + 1_000)))
        );
        // Asked through the proxy on a, the answer comes from c.
        let p = ractor::call!(proxy, |r| GroupMsg::Position(CallId(2), r)).unwrap();
        assert_eq!(p, Some(1));
        // A move that changes nothing enqueues nothing twice.
        a.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let snap = ractor::call!(on_c, GroupMsg::Snapshot).unwrap();
        assert_eq!(snap.waiting, 2);
    }

    #[tokio::test]
    async fn a_message_for_an_entity_not_started_yet_waits_for_it() {
        let (_, _, [a, b]) = nodes(["a", "b"], "b");
        let t = TenantId::from("t");
        let proxy = a.group_proxy(&t, "support", Clock::system()).await.unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        proxy
            .cast(GroupMsg::Enqueue {
                call: CallId(7),
                priority: 0,
                enqueued: None,
                notify: tx.into(),
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // b starts the group a moment later: the enqueue was kept for it.
        let on_b = group_on(&b, &t).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(positions(&on_b, &[CallId(7)]).await, [Some(1)]);
    }

    async fn agent_on(reg: &Arc<Registry>, t: &TenantId, id: &AgentId) -> AgentRef {
        use crate::shell::AgentActor;
        let a = AgentRef::start(AgentActor {
            id: id.clone(),
            policy: AgentPolicy::default(),
            clock: Clock::system(),
            events: None,
            recovery: None,
            rest: None,
        });
        let device = Device::Sip {
            account: id.0.clone(),
        };
        ractor::call!(a, |reply| AgentMsg::SignIn {
            device,
            initial: Status::Ready,
            reply
        })
        .unwrap()
        .unwrap();
        a.cast(AgentMsg::DeviceOnline(true)).unwrap();
        reg.host_agent(t, id, a.clone());
        a
    }

    /// `b`, the agent's home, dies: `c` starts the agent afresh (signed
    /// in, ready) and `a`, where its call is, notices; the agent on `c`.
    async fn die_and_move(
        home: &Mutex<String>,
        peers: &Peers,
        [a, b, c]: [&Arc<Registry>; 3],
        t: &TenantId,
        id: &AgentId,
    ) -> AgentRef {
        b.unhost_agent(t, id).unwrap().stop(None);
        peers.lock().unwrap().remove("b");
        *home.lock().unwrap() = "c".into();
        let on_c = agent_on(c, t, id).await;
        a.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        on_c
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_rests_while_no_call_of_its_node_has_the_agent() {
        use crate::agent_ref::REST_AFTER;
        let settle = || async {
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        };
        let (_home, _peers, [a, b, _c]) = nodes(["a", "b", "c"], "b");
        let (t, id) = (TenantId::from("t"), AgentId::from("1001"));
        let _on_b = agent_on(&b, &t, &id).await;
        let proxy = a.agent_proxy(&t, &id);
        assert!(proxy.is_resting(), "nothing sent to it yet");
        a.homes_changed();
        assert!(
            proxy.is_resting(),
            "a change of homes finds nothing to carry over"
        );

        let call = CallId(42);
        let offered = ractor::call!(proxy, |reply| AgentMsg::offer(call, reply)).unwrap();
        assert_eq!(offered, Ok(()));
        proxy.cast(AgentMsg::Ringing(call)).unwrap();
        proxy.cast(AgentMsg::Answered(call)).unwrap();
        settle().await;
        tokio::time::advance(REST_AFTER * 3).await;
        settle().await;
        assert!(!proxy.is_resting(), "a call of its node has the agent");
        proxy
            .cast(AgentMsg::HungUp {
                call,
                wrap_up: Duration::ZERO,
            })
            .unwrap();
        settle().await;
        tokio::time::advance(REST_AFTER + Duration::from_secs(1)).await;
        settle().await;
        assert!(proxy.is_resting(), "nothing in flight");
        // Woken, it still reaches the agent on its home.
        let (s, _) = ractor::call!(proxy, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ready);
    }

    #[tokio::test]
    async fn an_agents_new_home_learns_the_call_it_is_on_and_does_not_offer_it_another() {
        let (home, peers, [a, b, c]) = nodes(["a", "b", "c"], "b");
        let (t, id) = (TenantId::from("t"), AgentId::from("1001"));
        let on_b = agent_on(&b, &t, &id).await;
        // A call on a is offered to the agent (homed on b) and answered.
        let proxy = a.agent_proxy(&t, &id);
        let call = CallId(42);
        let offered = ractor::call!(proxy, |reply| AgentMsg::offer(call, reply)).unwrap();
        assert_eq!(offered, Ok(()));
        proxy.cast(AgentMsg::Answered(call)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_b, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Talking { call });

        // b dies; c starts the agent afresh (signed in, ready).
        let on_c = die_and_move(&home, &peers, [&a, &b, &c], &t, &id).await;
        let (s, _) = ractor::call!(on_c, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Talking { call }, "the new home knows the call");
        let other = ractor::call!(on_c, |reply| AgentMsg::offer(CallId(43), reply)).unwrap();
        assert_eq!(
            other,
            Err(AgentError::NotReady(crate::agent::StatusKind::Talking))
        );
        // The call ends on a: the agent wraps up at its new home.
        proxy
            .cast(AgentMsg::HungUp {
                call,
                wrap_up: Duration::from_secs(5),
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_c, AgentMsg::Get).unwrap();
        assert!(matches!(s, Status::AfterCallWork { .. }), "{s:?}");
        // Another move after the call resumes nothing.
        *home.lock().unwrap() = "a".into();
        let on_a = agent_on(&a, &t, &id).await;
        a.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_a, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ready);
    }

    #[tokio::test]
    async fn an_agent_whose_home_moves_while_its_phone_rings_rings_at_the_new_home() {
        let (home, peers, [a, b, c]) = nodes(["a", "b", "c"], "b");
        let (t, id) = (TenantId::from("t"), AgentId::from("1001"));
        let _on_b = agent_on(&b, &t, &id).await;
        let proxy = a.agent_proxy(&t, &id);
        let call = CallId(51);
        let offered = ractor::call!(proxy, |reply| AgentMsg::offer(call, reply)).unwrap();
        assert_eq!(offered, Ok(()));
        // The call (on a) rings the phone.
        proxy.cast(AgentMsg::Ringing(call)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // b dies while the phone rings; c starts the agent (ready).
        let on_c = die_and_move(&home, &peers, [&a, &b, &c], &t, &id).await;
        let (s, _) = ractor::call!(on_c, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ringing { call }, "the new home knows the ring");
        let other = ractor::call!(on_c, |reply| AgentMsg::offer(CallId(52), reply)).unwrap();
        assert!(other.is_err(), "{other:?}");
        // The agent answers on the call's node: talking at its new home.
        proxy.cast(AgentMsg::Answered(call)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_c, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Talking { call });
    }

    #[tokio::test]
    async fn an_agent_rung_for_a_call_of_a_node_that_died_is_free_again() {
        let (_, peers, [a, b]) = nodes(["a", "b"], "b");
        let (t, id) = (TenantId::from("t"), AgentId::from("1001"));
        let on_b = agent_on(&b, &t, &id).await;
        let proxy = a.agent_proxy(&t, &id);
        let call = CallId(8);
        let offered = ractor::call!(proxy, |reply| AgentMsg::offer(call, reply)).unwrap();
        assert_eq!(offered, Ok(()));
        proxy.cast(AgentMsg::Ringing(call)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_b, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ringing { call });
        peers.lock().unwrap().remove("a");
        b.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_b, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ready);
    }

    #[tokio::test]
    async fn an_agent_on_a_call_of_a_node_that_died_is_free_again() {
        let (_, peers, [a, b]) = nodes(["a", "b"], "b");
        let (t, id) = (TenantId::from("t"), AgentId::from("1001"));
        let on_b = agent_on(&b, &t, &id).await;
        let proxy = a.agent_proxy(&t, &id);
        let call = CallId(7);
        let offered = ractor::call!(proxy, |reply| AgentMsg::offer(call, reply)).unwrap();
        assert_eq!(offered, Ok(()));
        proxy.cast(AgentMsg::Answered(call)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A change of members that keeps a up frees nobody.
        b.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_b, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Talking { call });
        // a, where the call was, dies.
        peers.lock().unwrap().remove("a");
        b.homes_changed();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, _) = ractor::call!(on_b, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ready);
    }

    #[tokio::test]
    async fn past_its_lease_an_entity_is_not_acted_for_here() {
        let home = Arc::new(Mutex::new("a".to_string()));
        let r = Registry::new(Arc::new(Loopback {
            me: "a".into(),
            home,
            peers: Arc::default(),
        }));
        let (t, id) = (TenantId::from("t"), AgentId::from("1001"));
        let real = agent_on(&r, &t, &id).await;
        r.fence(
            Entity::Agent,
            &t,
            &id.0,
            Instant::now() + Duration::from_secs(60),
        );
        assert!(r.hosted_agent(&t, &id).is_some());
        // The lease ran out (say the process was paused): offers through
        // the proxy do not reach the agent, though it still runs.
        r.fence(Entity::Agent, &t, &id.0, Instant::now());
        assert!(r.hosted_agent(&t, &id).is_none());
        assert!(r.running_agent(&t, &id).is_some());
        let proxy = r.agent_proxy(&t, &id);
        let offer = ractor::call!(proxy, |reply| AgentMsg::offer(CallId(1), reply));
        assert!(offer.is_err(), "{offer:?}");
        let (s, _) = ractor::call!(real, AgentMsg::Get).unwrap();
        assert_eq!(s, Status::Ready);
    }
}
