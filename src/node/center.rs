//! The call centers a node runs, loaded from the store at start: for each
//! tenant its hotlines (schedule and published flows), its prompts (TTS or
//! approved WAV), its Agent and SkillGroup actors, its trunk and SIP
//! accounts. `--demo` seeds the demo tenant into the store first (hotline
//! `4000`, groups `support` and `sales`, agents 1001–1003).
//!
//! Until agents sign in from the workbench (the HTTP API), every enabled
//! agent is signed in at start with its device and ready: a SIP agent is
//! offered calls once its phone registers, a mobile agent once the tenant
//! has a trunk.

use super::live::LiveHub;
use super::records::{Recorder, TenantClock};
use anyhow::{Context, Result};
use ractor::{Actor, ActorRef};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_actors::agent::{Device, Status};
use switchboard_actors::agent_ref::AgentRef;
use switchboard_actors::ivr::{Flow, FlowExt, Schedule};
use switchboard_actors::remote::Registry;
use switchboard_actors::shell::{AgentActor, AgentMsg, Clock, GroupMsg, SkillGroupActor};
use switchboard_actors::shell::{CallNote, GroupSnapshot, Recovery};
use switchboard_actors::{AgentId, TenantId};
use switchboard_http::live::{Event, StatusDoc};
use switchboard_media::rtp::prompt::{decode_wav, Prompt};
use switchboard_media::sip::digest::StoredCredential;
use switchboard_media::sip::registrar::Account;
use switchboard_storage::model::{
    self as m, IvrSchedule, PromptSource, ReviewStatus, SipAccount, Tenant, Trunk,
};
use switchboard_storage::Store;
use tokio::sync::mpsc;

/// A dialed number that reaches the IVR.
#[derive(Debug, Clone)]
pub struct Hotline {
    pub schedule: Schedule,
    /// The published flows of the tenant, by id.
    pub flows: Arc<HashMap<String, Flow>>,
    /// Looped while the caller waits in a queue.
    pub waiting_prompt: String,
    /// Played before a voicemail recording.
    pub voicemail_prompt: String,
}

/// Where a prompt's audio comes from.
#[derive(Debug, Clone)]
enum Source {
    Tts { text: String, voice: String },
    Wav(PathBuf),
}

/// A tenant's approved prompts by id, made into audio once and kept.
#[derive(Debug, Clone)]
pub struct Prompts {
    sources: Arc<HashMap<String, Source>>,
    /// The voice of generated announcements (the queue position).
    voice: String,
    cache: Arc<Mutex<HashMap<String, Prompt>>>,
}

impl Prompts {
    /// The audio of prompt `id`: speech, an approved WAV, or (when neither
    /// can be had) a short tone, so the caller hears that something plays.
    pub fn get(&self, id: &str) -> Prompt {
        if let Ok(c) = self.cache.lock() {
            if let Some(s) = c.get(id) {
                return s.clone();
            }
        }
        let made = match self.sources.get(id) {
            Some(Source::Tts { text, voice }) => crate::tts::speak(text, voice),
            Some(Source::Wav(path)) => std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))
                .and_then(|f| decode_wav(std::io::BufReader::new(f)).map_err(Into::into)),
            None => Err(anyhow::anyhow!("no approved prompt {id:?}")),
        };
        let prompt = made.unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), prompt = id, "prompt unavailable, playing a tone");
            Prompt::tone(400.0, 6000, Duration::from_secs(1))
        });
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id.to_owned(), prompt.clone());
        }
        prompt
    }

    /// "You are number 2 in the queue…", in the prompts' language; spoken
    /// once per text and kept.
    pub fn announcement(&self, position: usize, expected_wait: Option<Duration>) -> Prompt {
        let chinese = self.voice.starts_with("cmn") || self.voice.starts_with("yue");
        let minutes = expected_wait.map(|w| w.as_secs().div_ceil(60).max(1));
        let text = if chinese {
            let mut t = if position <= 1 {
                "您是下一位。".to_owned()
            } else {
                format!("您前面还有{}位客户。", position - 1)
            };
            if let Some(m) = minutes {
                t.push_str(&format!("预计等待{m}分钟。"));
            }
            t
        } else {
            let mut t = if position <= 1 {
                "You are next in the queue.".to_owned()
            } else {
                format!("You are number {position} in the queue.")
            };
            match minutes {
                Some(1) => t.push_str(" Your expected wait is about one minute."),
                Some(m) => t.push_str(&format!(" Your expected wait is about {m} minutes.")),
                None => {}
            }
            t
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

    /// Makes every prompt now, so calls never wait for espeak-ng.
    pub fn warm(&self) {
        for id in self.sources.keys() {
            self.get(id);
        }
    }
}

/// An agent's actor and the device it takes calls on.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    pub actor: AgentRef,
    pub device: Device,
}

/// One tenant's running call center.
#[derive(Debug)]
pub struct CallCenter {
    pub tenant: TenantId,
    /// Minutes east of UTC (China: +480).
    pub utc_offset: i32,
    pub allow_external: bool,
    pub hotlines: HashMap<String, Hotline>,
    /// Played when the agent hangs up first, if the tenant surveys.
    pub survey: Option<Flow>,
    /// The callback offered to waiting callers (with a trunk only).
    pub queue_callback: Option<m::QueueCallback>,
    /// After-call work after an answered outbound call.
    pub outbound_wrap_up: Duration,
    /// The SIP domains its phones register under.
    pub sip_domains: Vec<String>,
    pub agents: HashMap<AgentId, AgentHandle>,
    pub groups: HashMap<String, ActorRef<GroupMsg>>,
    pub prompts: Prompts,
    pub trunk: Option<Trunk>,
    pub clock: Clock,
    pub records: mpsc::UnboundedSender<CallNote>,
    /// Starts the actors that configuration changes add.
    pub spawner: Spawner,
    /// The SIP accounts' user names (to replace them on a change).
    pub accounts: Vec<String>,
    /// The groups' and agents' actors as every call sees them: shared, and
    /// rebuilt by [`CallCenter::refresh_call_refs`] when either changes.
    pub call_groups: Arc<HashMap<String, ActorRef<GroupMsg>>>,
    pub call_agents: Arc<HashMap<AgentId, AgentRef>>,
}

impl CallCenter {
    /// Rebuilds the maps new calls share after agents or groups changed.
    pub fn refresh_call_refs(&mut self) {
        self.call_groups = Arc::new(self.groups.clone());
        self.call_agents = Arc::new(
            self.agents
                .iter()
                .map(|(k, a)| (k.clone(), a.actor.clone()))
                .collect(),
        );
    }

    /// The agents whose device is SIP account `account`.
    pub fn agents_on_account<'a>(
        &'a self,
        account: &'a str,
    ) -> impl Iterator<Item = &'a AgentHandle> + 'a {
        self.agents
            .values()
            .filter(move |a| matches!(&a.device, Device::Sip { account: x } if x == account))
    }
}

/// Every tenant the node serves.
#[derive(Debug, Default)]
pub struct Centers {
    pub tenants: HashMap<TenantId, CallCenter>,
    /// Dialed number → tenant.
    pub hotlines: HashMap<String, TenantId>,
    /// What phones register with.
    pub accounts: Vec<Account>,
}

impl Centers {
    /// The call center a dialed number belongs to.
    pub fn for_hotline(&self, number: &str) -> Option<&CallCenter> {
        self.tenants.get(self.hotlines.get(number)?)
    }

    pub fn tenant(&self, t: &TenantId) -> Option<&CallCenter> {
        self.tenants.get(t)
    }

    /// Speaks every tenant's prompts (blocking: run it off the runtime).
    pub fn prompts(&self) -> Vec<Prompts> {
        self.tenants.values().map(|c| c.prompts.clone()).collect()
    }
}

/// What loading needs besides the store.
#[derive(Debug, Clone)]
pub struct Load {
    /// The registrar's digest realm; accounts hashed for another realm
    /// cannot register and are skipped.
    pub realm: String,
    /// Relative WAV prompt paths are under it.
    pub data_dir: PathBuf,
    pub clock: Clock,
    /// Where the actors read their records again after a panic.
    pub store: Arc<dyn Store>,
}

/// The tenants' settings the records writer needs, read before loading.
pub async fn tenant_clocks(store: &dyn Store) -> Result<HashMap<TenantId, TenantClock>> {
    let mut out = HashMap::new();
    for t in store.list_tenants().await? {
        if let Some(v) = store.get::<Tenant>(&t, Tenant::ID).await? {
            out.insert(
                t,
                TenantClock {
                    utc_offset_minutes: v.record.utc_offset_minutes,
                    service_level: v.record.service_level,
                },
            );
        }
    }
    Ok(out)
}

/// Loads every enabled tenant and starts its actors.
pub async fn load(
    store: &dyn Store,
    opts: &Load,
    recorder: &Recorder,
    hub: &Arc<LiveHub>,
    registry: Option<&Arc<Registry>>,
) -> Result<Centers> {
    let mut centers = Centers::default();
    for tenant in store.list_tenants().await.context("cannot list tenants")? {
        let Some(t) = store.get::<Tenant>(&tenant, Tenant::ID).await? else {
            continue;
        };
        if !t.record.enabled {
            continue;
        }
        let center = load_tenant(
            store,
            &t.record,
            opts,
            recorder,
            hub,
            registry,
            &mut centers.accounts,
        )
        .await
        .with_context(|| format!("tenant {tenant}"))?;
        hub.set_actors(&tenant, center.agents.clone(), center.groups.clone());
        for number in center.hotlines.keys() {
            centers.hotlines.insert(number.clone(), tenant.clone());
        }
        tracing::info!(
            %tenant,
            hotlines = center.hotlines.len(),
            agents = center.agents.len(),
            groups = center.groups.len(),
            trunk = center.trunk.is_some(),
            "tenant loaded"
        );
        centers.tenants.insert(tenant, center);
    }
    Ok(centers)
}

/// What of a tenant is plain data (no actors): rebuilt whole whenever
/// its hotlines, schedules, flows, prompts, trunk, accounts or settings
/// change.
#[derive(Debug)]
pub struct Statics {
    pub utc_offset: i32,
    pub allow_external: bool,
    pub hotlines: HashMap<String, Hotline>,
    pub survey: Option<Flow>,
    pub queue_callback: Option<m::QueueCallback>,
    pub outbound_wrap_up: Duration,
    pub sip_domains: Vec<String>,
    pub prompts: Prompts,
    pub trunk: Option<Trunk>,
    pub accounts: Vec<Account>,
    /// The published flows as `id@version`, sorted (for the log).
    pub published: Vec<String>,
}

/// Reads a tenant's plain data.
pub async fn load_statics(store: &dyn Store, t: &Tenant, opts: &Load) -> Result<Statics> {
    let tenant = t.tenant.clone();
    let mut accounts = Vec::new();
    for a in store.list::<SipAccount>(&tenant).await? {
        let a = a.record;
        if !a.enabled {
            continue;
        }
        if a.realm != opts.realm {
            tracing::warn!(%tenant, account = %a.id, realm = %a.realm, "SIP account hashed for another realm: it cannot register");
            continue;
        }
        accounts.push(Account {
            tenant: tenant.0.clone(),
            username: a.id.clone(),
            credential: StoredCredential {
                ha1_md5: a.ha1.clone(),
                ha1_sha256: a.ha1_sha256.clone().unwrap_or_default(),
            },
        });
    }

    let trunk = store
        .get::<Trunk>(&tenant, Trunk::ID)
        .await?
        .map(|v| v.record)
        .filter(|t| t.enabled);

    // Prompts: approved only.
    let mut sources = HashMap::new();
    let mut voice = None;
    for p in store.list::<m::Prompt>(&tenant).await? {
        let p = p.record;
        if p.review.status != ReviewStatus::Approved {
            continue;
        }
        let source = match p.source {
            PromptSource::Tts { text, voice: v } => {
                voice.get_or_insert_with(|| v.clone());
                Source::Tts { text, voice: v }
            }
            PromptSource::Wav { file, .. } => Source::Wav(resolve(&opts.data_dir, &file)),
        };
        sources.insert(p.id, source);
    }
    let prompts = Prompts {
        sources: Arc::new(sources),
        voice: voice.unwrap_or_else(|| "en-us".into()),
        cache: Arc::new(Mutex::new(HashMap::new())),
    };

    // Published flows, checked.
    let mut flows = HashMap::new();
    let mut published = Vec::new();
    for f in store.list::<m::IvrFlow>(&tenant).await? {
        let id = f.record.id;
        let Some(v) = store.published_flow(&tenant, &id).await? else {
            continue;
        };
        match v.definition.validate() {
            Ok(()) => {
                published.push(format!("{id}@{}", v.version));
                flows.insert(id, v.definition);
            }
            Err(e) => {
                tracing::warn!(%tenant, flow = %id, error = %e, "published flow is invalid: not used")
            }
        }
    }
    let flows = Arc::new(flows);
    let schedules: HashMap<String, Schedule> = store
        .list::<IvrSchedule>(&tenant)
        .await?
        .into_iter()
        .map(|s| (s.record.id, s.record.schedule))
        .collect();
    let mut hotlines = HashMap::new();
    for h in store.list::<m::Hotline>(&tenant).await? {
        let h = h.record;
        if !h.enabled {
            continue;
        }
        let Some(schedule) = schedules.get(&h.schedule) else {
            tracing::warn!(%tenant, hotline = %h.number, schedule = %h.schedule, "hotline's schedule missing: not served");
            continue;
        };
        hotlines.insert(
            h.number.clone(),
            Hotline {
                schedule: schedule.clone(),
                flows: flows.clone(),
                waiting_prompt: h
                    .settings
                    .waiting_prompt
                    .unwrap_or_else(|| "waiting".into()),
                voicemail_prompt: h
                    .settings
                    .queue_timeout_prompt
                    .unwrap_or_else(|| "voicemail".into()),
            },
        );
    }
    let survey = t.survey_flow.as_ref().and_then(|id| flows.get(id).cloned());
    Ok(Statics {
        utc_offset: t.utc_offset_minutes,
        allow_external: t.allow_external_transfer,
        hotlines,
        survey,
        queue_callback: t.queue_callback.clone(),
        outbound_wrap_up: t.outbound_wrap_up,
        sip_domains: t.sip_domains.clone(),
        prompts,
        trunk,
        accounts,
        published: {
            published.sort();
            published
        },
    })
}

/// What spawning a tenant's actors needs, kept for the actors a change
/// adds later.
#[derive(Debug, Clone)]
pub struct Spawner {
    pub tenant: TenantId,
    pub clock: Clock,
    /// Agents' status changes (the status log, the monitors, metrics).
    pub status: mpsc::UnboundedSender<switchboard_actors::agent::AgentEvent>,
    /// Groups' queue changes (the monitors, metrics).
    pub queues: mpsc::UnboundedSender<GroupSnapshot>,
    /// In a cluster: agents and groups live on their home node, and every
    /// node talks to them through proxies.
    pub registry: Option<Arc<Registry>>,
    /// Where a panicking agent or group reads its record again (one for
    /// the tenant's actors).
    pub recovery: Arc<Recovery>,
}

impl Spawner {
    /// The agent's actor as the node uses it: the agent itself on a node
    /// alone; in a cluster its proxy (the agent itself starts on its home
    /// node, see the core's hosting).
    pub async fn agent(&self, a: &m::Agent, has_trunk: bool) -> Result<AgentHandle> {
        let actor = match &self.registry {
            None => self.real_agent(a, has_trunk).await?,
            // The core starts the agent itself once it holds its lease.
            Some(reg) => reg.agent_proxy(&self.tenant, &a.id),
        };
        Ok(AgentHandle {
            actor,
            device: a.device.clone(),
        })
    }

    /// An agent's actor, signed in with its device and ready (a mobile
    /// agent only when the tenant has a trunk).
    pub async fn real_agent(&self, a: &m::Agent, has_trunk: bool) -> Result<AgentRef> {
        // It rests (no actor) whenever nothing is in flight for it.
        let actor = AgentRef::start(AgentActor {
            id: a.id.clone(),
            policy: a.policy.clone(),
            clock: self.clock,
            events: Some(self.status.clone()),
            recovery: Some(self.recovery.clone()),
            rest: None,
        });
        let reachable = match &a.device {
            Device::Sip { .. } => true,
            Device::Mobile { .. } => has_trunk,
        };
        if reachable {
            let signed = ractor::call!(actor, |reply| AgentMsg::SignIn {
                device: a.device.clone(),
                initial: Status::Ready,
                reply
            })?;
            if let Err(e) = signed {
                tracing::warn!(tenant = %self.tenant, agent = %a.id, error = %e, "agent not signed in");
            }
        }
        super::metrics::get()
            .actors
            .with_label_values(&["agent"])
            .inc();
        Ok(actor)
    }

    /// A skill group's actor with its members, as the node uses it (see
    /// [`Spawner::agent`]).
    pub async fn group(
        &self,
        g: &m::SkillGroup,
        agents: &HashMap<AgentId, AgentHandle>,
    ) -> Result<ActorRef<GroupMsg>> {
        let Some(reg) = &self.registry else {
            let actor = self.real_group(g).await?;
            actor.cast(GroupMsg::Members(members(g, agents)))?;
            return Ok(actor);
        };
        Ok(reg.group_proxy(&self.tenant, &g.id, self.clock).await?)
    }

    /// A skill group's actor, without members yet.
    pub async fn real_group(&self, g: &m::SkillGroup) -> Result<ActorRef<GroupMsg>> {
        let (actor, _) = Actor::spawn(
            None,
            SkillGroupActor {
                id: g.id.clone(),
                config: g.config.clone(),
                clock: self.clock,
                seed: rand::random(),
                events: Some(self.queues.clone()),
                recovery: Some(self.recovery.clone()),
            },
            (),
        )
        .await?;
        super::metrics::get()
            .actors
            .with_label_values(&["skill_group"])
            .inc();
        Ok(actor)
    }
}

/// Has each of `agents` hosted here report to its groups' proxies (the
/// groups may live on another node; proxies find them).
pub fn watch_groups(
    reg: &Registry,
    tenant: &TenantId,
    records: &[m::SkillGroup],
    proxies: &HashMap<String, ActorRef<GroupMsg>>,
    agents: &[AgentId],
) {
    for a in agents {
        let Some(real) = reg.hosted_agent(tenant, a) else {
            continue;
        };
        for g in records
            .iter()
            .filter(|g| g.members.iter().any(|m| m.agent == *a))
        {
            if let Some(proxy) = proxies.get(&g.id) {
                let _ = real.cast(AgentMsg::Watch(proxy.clone()));
            }
        }
    }
}

/// A group's members with their actors (members without one are left
/// out: disabled or unknown agents).
pub fn members(
    g: &m::SkillGroup,
    agents: &HashMap<AgentId, AgentHandle>,
) -> Vec<(m::Member, AgentRef)> {
    g.members
        .iter()
        .filter_map(|m| Some((m.clone(), agents.get(&m.agent)?.actor.clone())))
        .collect()
}

/// Loads a tenant and starts its actors.
pub async fn load_tenant(
    store: &dyn Store,
    t: &Tenant,
    opts: &Load,
    recorder: &Recorder,
    hub: &Arc<LiveHub>,
    registry: Option<&Arc<Registry>>,
    accounts: &mut Vec<Account>,
) -> Result<CallCenter> {
    let tenant = t.tenant.clone();
    let clock = opts.clock;
    let statics = load_statics(store, t, opts).await?;
    accounts.extend(statics.accounts.iter().cloned());
    let trunk_present = statics.trunk.is_some();

    // Status changes: the log line, the metrics, the monitors, the store.
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    {
        let (recorder, tenant, hub) = (recorder.clone(), tenant.clone(), hub.clone());
        tokio::spawn(async move {
            let gauge = &super::metrics::get().agents;
            while let Some(e) = status_rx.recv().await {
                use switchboard_actors::agent::AgentEvent;
                let AgentEvent::Changed {
                    ref agent,
                    ref to,
                    ref reason,
                    ref period,
                } = e
                else {
                    if let AgentEvent::Planned { agent, next } = e {
                        tracing::info!(%agent, status = ?next, "agent status after the call");
                        hub.publish(
                            &tenant,
                            Event::AgentNext {
                                version: 1,
                                agent: agent.0,
                                status: StatusDoc::from(&next),
                            },
                        );
                    }
                    continue;
                };
                tracing::info!(%agent, status = ?to, ?reason, "agent status");
                let kind = |s: &Status| format!("{:?}", s.kind()).to_lowercase();
                if period.reason != switchboard_actors::agent::ChangeReason::Created {
                    gauge
                        .with_label_values(&[&tenant.0, &kind(&period.status)])
                        .dec();
                }
                gauge.with_label_values(&[&tenant.0, &kind(to)]).inc();
                hub.publish(
                    &tenant,
                    Event::AgentStatus {
                        version: 1,
                        agent: agent.0.clone(),
                        status: StatusDoc::from(to),
                        since: period.end.0,
                        reason: format!("{reason:?}"),
                    },
                );
                recorder.status(tenant.clone(), e);
            }
        });
    }
    // Queue changes go to the monitors and the metrics.
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<GroupSnapshot>();
    {
        let (tenant, hub) = (tenant.clone(), hub.clone());
        tokio::spawn(async move {
            let metrics = super::metrics::get();
            while let Some(q) = queue_rx.recv().await {
                let labels = [tenant.0.as_str(), q.group.as_str()];
                metrics
                    .queue_waiting
                    .with_label_values(&labels)
                    .set(q.waiting as i64);
                metrics
                    .queue_oldest
                    .with_label_values(&labels)
                    .set(q.oldest.map_or(0, |o| (o.0 / 1000) as i64));
                let now = clock.now();
                hub.publish(
                    &tenant,
                    Event::GroupQueue {
                        version: 1,
                        group: q.group,
                        waiting: q.waiting as u32,
                        longest_wait_seconds: q.oldest.map_or(0, |o| now.since(o).as_secs()),
                    },
                );
            }
        });
    }
    let spawner = Spawner {
        tenant: tenant.clone(),
        clock,
        status: status_tx,
        queues: queue_tx,
        registry: registry.cloned(),
        recovery: Arc::new(Recovery {
            store: opts.store.clone(),
            tenant: tenant.clone(),
        }),
    };
    let mut agents = HashMap::new();
    for a in store.list::<m::Agent>(&tenant).await? {
        let a = a.record;
        if !a.enabled || a.telesales {
            continue;
        }
        let handle = spawner.agent(&a, trunk_present).await?;
        agents.insert(a.id.clone(), handle);
    }
    let mut groups = HashMap::new();
    for g in store.list::<m::SkillGroup>(&tenant).await? {
        let g = g.record;
        if g.telesales {
            continue;
        }
        let actor = spawner.group(&g, &agents).await?;
        groups.insert(g.id, actor);
    }

    // Call records go to the writer; a forwarding task keeps the actors'
    // channel type simple.
    let (records_tx, mut records_rx) = mpsc::unbounded_channel::<CallNote>();
    {
        let (recorder, hub, tenant) = (recorder.clone(), hub.clone(), tenant.clone());
        tokio::spawn(async move {
            while let Some(note) = records_rx.recv().await {
                let r = match note {
                    CallNote::Progress(r) => {
                        recorder.open(*r);
                        continue;
                    }
                    CallNote::Finished(r) => *r,
                };
                let reason = r.hangup_reason.as_str().to_owned();
                super::metrics::get()
                    .calls
                    .with_label_values(&[&reason])
                    .inc();
                hub.publish(
                    &tenant,
                    Event::CallEnded {
                        version: 1,
                        agent: r.agent.as_ref().map(|a| a.0.clone()),
                        call: r.call.to_string(),
                        group: r.group.clone(),
                        hangup_reason: reason,
                        outcome: r.outcome.map(|o| o.as_str().to_owned()),
                    },
                );
                tracing::info!(
                    call = %r.call,
                    agent = r.agent.as_ref().map(|a| a.0.as_str()).unwrap_or("-"),
                    group = r.group.as_deref().unwrap_or("-"),
                    hangup = ?r.hangup_reason,
                    outcome = r.outcome.map(|o| o.as_str()).unwrap_or("-"),
                    secs = r.end.since(r.start).as_secs(),
                    "call finished"
                );
                recorder.call(r);
            }
        });
    }

    let mut center = CallCenter {
        tenant,
        utc_offset: statics.utc_offset,
        allow_external: statics.allow_external,
        hotlines: statics.hotlines,
        survey: statics.survey,
        queue_callback: statics.queue_callback,
        outbound_wrap_up: statics.outbound_wrap_up,
        sip_domains: statics.sip_domains,
        agents,
        groups,
        prompts: statics.prompts,
        trunk: statics.trunk,
        clock,
        records: records_tx,
        spawner,
        accounts: statics
            .accounts
            .iter()
            .map(|a| a.username.clone())
            .collect(),
        call_groups: Arc::default(),
        call_agents: Arc::default(),
    };
    center.refresh_call_refs();
    Ok(center)
}

fn resolve(data_dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_dir.join(p)
    }
}
