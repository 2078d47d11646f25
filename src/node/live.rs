//! The node's side of the live API ([`switchboard_http::live::Live`]):
//! agent operations go to the Agent actors, the monitors ask the Agent and
//! SkillGroup actors, and every tenant has one broadcast channel of events
//! (status changes, ringing with the screen pop, answered and ended calls,
//! queue changes, contact-plan reminders) the WebSocket clients read.

use super::center::AgentHandle;
use super::core::CallNotice;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use switchboard_actors::agent::{AgentError, Device};
use switchboard_actors::shell::{AgentMsg, AgentSnapshot, GroupMsg};
use switchboard_actors::{AgentId, TenantId};
use switchboard_http::live::{
    AgentNow, By, DeviceDoc, Dialing, Event, GroupNow, Live, LiveError, LiveFuture,
    OutboundRequest, StatusDoc,
};
use switchboard_storage::model::{self as m, Status, Timestamp};
use switchboard_storage::Store;
use tokio::sync::{broadcast, mpsc};

/// Events a slow WebSocket client may fall behind by before it is cut.
const EVENTS: usize = 1024;

#[derive(Debug)]
struct TenantLive {
    agents: HashMap<AgentId, AgentHandle>,
    groups: HashMap<String, ractor::ActorRef<GroupMsg>>,
    events: broadcast::Sender<Event>,
}

/// Live state shared by the SIP core, the call centers and the HTTP API.
#[derive(Debug)]
pub struct LiveHub {
    tenants: RwLock<HashMap<TenantId, TenantLive>>,
    store: Arc<dyn Store>,
    /// The SIP core, told to look at an agent's registration after a
    /// sign-in (set once the core exists).
    core: OnceLock<mpsc::Sender<CallNotice>>,
    /// Contact plans already announced.
    reminded: std::sync::Mutex<HashSet<(TenantId, String)>>,
    /// In a cluster: where this node's events go to be told to the other
    /// nodes' WebSocket clients.
    relay: OnceLock<mpsc::UnboundedSender<(TenantId, Event)>>,
    /// The status each agent last chose (see [`LiveHub::last_chosen`]).
    chosen: std::sync::Mutex<HashMap<(TenantId, AgentId), Status>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LiveHub {
    pub fn new(store: Arc<dyn Store>) -> Arc<LiveHub> {
        Arc::new(LiveHub {
            tenants: RwLock::new(HashMap::new()),
            store,
            core: OnceLock::new(),
            reminded: std::sync::Mutex::new(HashSet::new()),
            relay: OnceLock::new(),
            chosen: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Events published here also go to `relay` (for the other nodes).
    pub fn set_relay(&self, relay: mpsc::UnboundedSender<(TenantId, Event)>) {
        let _ = self.relay.set(relay);
    }

    /// An event for this node's WebSocket clients only (one another node
    /// published, or one every node publishes for its own clients).
    pub fn publish_local(&self, tenant: &TenantId, event: Event) {
        match &event {
            Event::AgentStatus { agent, status, .. } | Event::AgentNext { agent, status, .. } => {
                self.note_status(tenant, agent, status)
            }
            _ => {}
        }
        let _ = self.sender(tenant).send(event);
    }

    /// Keeps the status each agent last chose, wherever it runs, or chose
    /// for after its call (statuses calls drive leave it as it was).
    fn note_status(&self, tenant: &TenantId, agent: &str, status: &StatusDoc) {
        let chosen = match status {
            StatusDoc::Offline => Status::Offline,
            StatusDoc::Ready => Status::Ready,
            StatusDoc::Busy => Status::Busy,
            StatusDoc::Break { reason } => Status::Break {
                reason: reason.clone(),
            },
            StatusDoc::Custom { id } => Status::Custom { id: id.clone() },
            _ => return,
        };
        let mut c = self
            .chosen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.insert((tenant.clone(), AgentId(agent.to_string())), chosen);
    }

    /// The status `agent` last chose, as this node heard (in a cluster,
    /// from every node): what its new home restores when its node died.
    pub fn last_chosen(&self, tenant: &TenantId, agent: &AgentId) -> Option<Status> {
        let c = self
            .chosen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.get(&(tenant.clone(), agent.clone())).cloned()
    }

    /// Sends the SIP core the notice `make` builds around a reply
    /// channel; the channel's receiving end, for its answer.
    async fn ask_core<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> CallNotice,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, LiveError> {
        let stopped = || LiveError::Unavailable("the SIP core is not running".into());
        let core = self.core.get().ok_or_else(stopped)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        core.send(make(reply)).await.map_err(|_| stopped())?;
        Ok(answer)
    }

    pub fn set_core(&self, core: mpsc::Sender<CallNotice>) {
        let _ = self.core.set(core);
    }

    /// The tenant's event channel, created on first use.
    pub fn sender(&self, tenant: &TenantId) -> broadcast::Sender<Event> {
        if let Ok(t) = self.tenants.read() {
            if let Some(t) = t.get(tenant) {
                return t.events.clone();
            }
        }
        let mut w = match self.tenants.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        w.entry(tenant.clone())
            .or_insert_with(|| TenantLive {
                agents: HashMap::new(),
                groups: HashMap::new(),
                events: broadcast::channel(EVENTS).0,
            })
            .events
            .clone()
    }

    /// Sends an event to the tenant's WebSocket clients (none: dropped).
    pub fn publish(&self, tenant: &TenantId, event: Event) {
        if let Some(r) = self.relay.get() {
            let _ = r.send((tenant.clone(), event.clone()));
        }
        self.publish_local(tenant, event);
    }

    /// The actors of a tenant, as loaded (or reloaded).
    pub fn set_actors(
        &self,
        tenant: &TenantId,
        agents: HashMap<AgentId, AgentHandle>,
        groups: HashMap<String, ractor::ActorRef<GroupMsg>>,
    ) {
        let events = self.sender(tenant);
        let mut w = match self.tenants.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        w.insert(
            tenant.clone(),
            TenantLive {
                agents,
                groups,
                events,
            },
        );
    }

    fn agent_handle(&self, tenant: &TenantId, agent: &AgentId) -> Result<AgentHandle, LiveError> {
        self.tenants
            .read()
            .ok()
            .and_then(|t| t.get(tenant)?.agents.get(agent).cloned())
            .ok_or_else(|| LiveError::NotFound(format!("no agent {}", agent.0)))
    }

    async fn snapshot(&self, h: &AgentHandle) -> Result<AgentNow, LiveError> {
        let s = ractor::call!(h.actor, AgentMsg::Snapshot).map_err(|e| {
            LiveError::Unavailable(format!("the agent's actor did not answer: {e}"))
        })?;
        Ok(now_of(s))
    }

    /// Asks the core to look at the agent's SIP registration.
    fn check_device(&self, tenant: &TenantId, agent: &AgentId) {
        if let Some(core) = self.core.get() {
            let _ = core.try_send(CallNotice::CheckDevice {
                tenant: tenant.clone(),
                agent: agent.clone(),
            });
        }
    }

    /// Announces the contact plans that came due to their agents' clients.
    pub async fn remind(&self) {
        let tenants: Vec<(TenantId, Vec<AgentId>)> = match self.tenants.read() {
            Ok(t) => t
                .iter()
                .map(|(k, v)| (k.clone(), v.agents.keys().cloned().collect()))
                .collect(),
            Err(_) => return,
        };
        let now = Timestamp(now_ms());
        for (tenant, agents) in tenants {
            for agent in agents {
                let Ok(plans) = self.store.contact_plans(&tenant, &agent).await else {
                    continue;
                };
                for plan in plans
                    .into_iter()
                    .filter(|p| p.status == m::ContactPlanStatus::Pending && p.due <= now)
                {
                    let fresh = self
                        .reminded
                        .lock()
                        .map(|mut r| r.insert((tenant.clone(), plan.id.clone())))
                        .unwrap_or(false);
                    // Every node reads the plans and tells its own
                    // clients.
                    if fresh {
                        self.publish_local(
                            &tenant,
                            Event::ContactPlanDue {
                                version: 1,
                                agent: agent.0.clone(),
                                plan,
                            },
                        );
                    }
                }
            }
        }
    }
}

fn device_doc(d: &Device) -> DeviceDoc {
    match d {
        Device::Sip { account } => DeviceDoc::Sip {
            account: account.clone(),
        },
        Device::Mobile { number } => DeviceDoc::Mobile {
            number: number.clone(),
        },
    }
}

fn now_of(s: AgentSnapshot) -> AgentNow {
    AgentNow {
        agent: s.agent.0,
        status: StatusDoc::from(&s.status),
        since: s.since.0,
        device: s.device.as_ref().map(device_doc),
        device_online: s.device_online,
        calls_today: s.calls_today,
        talk_seconds_today: s.talk_time_today.as_secs(),
    }
}

fn refused(e: AgentError) -> LiveError {
    match e {
        AgentError::UnknownCustom(id) => LiveError::Invalid {
            field: "id".into(),
            message: format!("custom status {id:?} is not defined"),
        },
        AgentError::SupervisorOnly(id) => LiveError::Invalid {
            field: "id".into(),
            message: format!("custom status {id:?} may only be set by a supervisor"),
        },
        AgentError::NotChoosable(k) => LiveError::Invalid {
            field: "status".into(),
            message: format!("{k:?} cannot be chosen"),
        },
        other => LiveError::Conflict(other.to_string()),
    }
}

fn shell_by(by: By) -> m::Actor {
    by.into()
}

impl Live for LiveHub {
    fn transfer<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        to: m::TransferTarget,
    ) -> LiveFuture<'a, ()> {
        Box::pin(async move {
            self.agent_handle(tenant, agent)?;
            let done = self
                .ask_core(|reply| CallNotice::Transfer {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    to,
                    reply,
                })
                .await?;
            done.await
                .map_err(|_| LiveError::Unavailable("the SIP core did not answer".into()))?
        })
    }

    fn monitor<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        with: Option<(&'a AgentId, switchboard_http::live::MonitorMode)>,
    ) -> LiveFuture<'a, ()> {
        Box::pin(async move {
            self.agent_handle(tenant, agent)?;
            if let Some((supervisor, _)) = with {
                self.agent_handle(tenant, supervisor)?;
            }
            let done = self
                .ask_core(|reply| CallNotice::Monitor {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    with: with.map(|(s, mode)| (s.clone(), mode)),
                    reply,
                })
                .await?;
            done.await
                .map_err(|_| LiveError::Unavailable("the SIP core did not answer".into()))?
        })
    }

    fn consult<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        op: switchboard_http::live::ConsultOp,
    ) -> LiveFuture<'a, ()> {
        Box::pin(async move {
            self.agent_handle(tenant, agent)?;
            if let switchboard_http::live::ConsultOp::Start(m::TransferTarget::Agent(a)) = &op {
                self.agent_handle(tenant, a)?;
            }
            let done = self
                .ask_core(|reply| CallNotice::Consult {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    op,
                    reply,
                })
                .await?;
            done.await
                .map_err(|_| LiveError::Unavailable("the SIP core did not answer".into()))?
        })
    }

    fn hold<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        on: bool,
    ) -> LiveFuture<'a, ()> {
        Box::pin(async move {
            self.agent_handle(tenant, agent)?;
            let done = self
                .ask_core(|reply| CallNotice::Hold {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    on,
                    reply,
                })
                .await?;
            done.await
                .map_err(|_| LiveError::Unavailable("the SIP core did not answer".into()))?
        })
    }

    fn dial<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        request: OutboundRequest,
    ) -> LiveFuture<'a, Dialing> {
        Box::pin(async move {
            let placed = self
                .ask_core(|reply| CallNotice::Dial {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    request,
                    reply,
                })
                .await?;
            let call = placed
                .await
                .map_err(|_| LiveError::Unavailable("the SIP core did not answer".into()))??;
            Ok(Dialing {
                call: call.to_string(),
            })
        })
    }

    fn sign_in<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        device: Option<m::Device>,
    ) -> LiveFuture<'a, AgentNow> {
        Box::pin(async move {
            let h = self.agent_handle(tenant, agent)?;
            let device = device.unwrap_or_else(|| h.device.clone());
            let r = ractor::call!(h.actor, |reply| AgentMsg::SignIn {
                device,
                initial: m::Status::Ready,
                reply
            })
            .map_err(|e| LiveError::Unavailable(e.to_string()))?;
            r.map_err(refused)?;
            self.check_device(tenant, agent);
            // The registration check is a message away: the snapshot may
            // still show the device offline.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.snapshot(&h).await
        })
    }

    fn sign_out<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        by: By,
    ) -> LiveFuture<'a, AgentNow> {
        Box::pin(async move {
            let h = self.agent_handle(tenant, agent)?;
            let r = ractor::call!(h.actor, |reply| AgentMsg::SignOut {
                by: shell_by(by),
                reply
            })
            .map_err(|e| LiveError::Unavailable(e.to_string()))?;
            r.map_err(refused)?;
            self.snapshot(&h).await
        })
    }

    fn set_status<'a>(
        &'a self,
        tenant: &'a TenantId,
        agent: &'a AgentId,
        status: m::Status,
        by: By,
    ) -> LiveFuture<'a, AgentNow> {
        Box::pin(async move {
            let h = self.agent_handle(tenant, agent)?;
            let r = ractor::call!(h.actor, |reply| AgentMsg::Choose {
                status,
                by: shell_by(by),
                reply
            })
            .map_err(|e| LiveError::Unavailable(e.to_string()))?;
            r.map_err(refused)?;
            self.snapshot(&h).await
        })
    }

    fn agent<'a>(&'a self, tenant: &'a TenantId, agent: &'a AgentId) -> LiveFuture<'a, AgentNow> {
        Box::pin(async move {
            let h = self.agent_handle(tenant, agent)?;
            self.snapshot(&h).await
        })
    }

    fn agents<'a>(&'a self, tenant: &'a TenantId) -> LiveFuture<'a, Vec<AgentNow>> {
        Box::pin(async move {
            let handles: BTreeMap<AgentId, AgentHandle> = self
                .tenants
                .read()
                .ok()
                .and_then(|t| {
                    t.get(tenant)
                        .map(|t| t.agents.clone().into_iter().collect())
                })
                .unwrap_or_default();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles.values() {
                out.push(self.snapshot(h).await?);
            }
            Ok(out)
        })
    }

    fn groups<'a>(&'a self, tenant: &'a TenantId) -> LiveFuture<'a, Vec<GroupNow>> {
        Box::pin(async move {
            let groups: BTreeMap<String, ractor::ActorRef<GroupMsg>> = self
                .tenants
                .read()
                .ok()
                .and_then(|t| {
                    t.get(tenant)
                        .map(|t| t.groups.clone().into_iter().collect())
                })
                .unwrap_or_default();
            let now = now_ms();
            let mut out = Vec::with_capacity(groups.len());
            for g in groups.values() {
                let s = ractor::call!(g, GroupMsg::Snapshot).map_err(|e| {
                    LiveError::Unavailable(format!("the group's actor did not answer: {e}"))
                })?;
                out.push(GroupNow {
                    group: s.group,
                    waiting: s.waiting as u32,
                    longest_wait_seconds: s.oldest.map_or(0, |o| now.saturating_sub(o.0) / 1000),
                    agents_signed_in: s.signed_in as u32,
                    agents_ready: s.ready as u32,
                });
            }
            Ok(out)
        })
    }

    fn events(&self, tenant: &TenantId) -> Option<broadcast::Receiver<Event>> {
        Some(self.sender(tenant).subscribe())
    }

    fn metrics(&self) -> String {
        super::metrics::render()
    }
}

/// Fault injection over this node's agents and skill groups (a node
/// started with `--fault-injection`): the actor running here is told to
/// panic in its handler.
pub struct FaultInjector {
    pub hub: Arc<LiveHub>,
    /// In a cluster, only the actors hosted here (not their proxies).
    pub registry: Option<Arc<switchboard_actors::remote::Registry>>,
}

impl std::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultInjector")
    }
}

impl switchboard_http::cluster::Faults for FaultInjector {
    fn panic(
        &self,
        tenant: &str,
        kind: switchboard_http::cluster::EntityKind,
        id: &str,
    ) -> Result<(), String> {
        use switchboard_http::cluster::EntityKind;
        let t = TenantId::from(tenant);
        let gone = |what: &str| format!("{what} {id} of tenant {tenant} does not run on this node");
        match kind {
            EntityKind::Agent => {
                let agent = AgentId::from(id);
                let actor = match &self.registry {
                    Some(r) => r.hosted_agent(&t, &agent),
                    None => self.hub.agent_handle(&t, &agent).ok().map(|h| h.actor),
                };
                let actor = actor.ok_or_else(|| gone("agent"))?;
                actor.cast(AgentMsg::Panic).map_err(|_| gone("agent"))
            }
            EntityKind::SkillGroup => {
                let actor = match &self.registry {
                    Some(r) => r.hosted_group(&t, id),
                    None => self
                        .hub
                        .tenants
                        .read()
                        .ok()
                        .and_then(|w| w.get(&t)?.groups.get(id).cloned()),
                };
                let actor = actor.ok_or_else(|| gone("skill group"))?;
                actor.cast(GroupMsg::Panic).map_err(|_| gone("skill group"))
            }
            EntityKind::TelesalesTask => Err("only agents and skill groups".into()),
        }
    }
}
