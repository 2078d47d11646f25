//! The call-center side of the SIP core: a hotline's INVITE becomes a
//! Call actor with the customer's leg; what the actor asks (prompts,
//! waiting audio, ringing agents, bridging, hanging up) is done here on the
//! legs and dialogs; what happens on them goes back to the actor. Outgoing
//! legs (agents' phones) are our INVITEs, rung and cancelled here.

pub(super) mod consult;
pub(super) mod hold;
pub(super) mod internal;
pub(super) mod monitor;
pub(super) mod outbound;
pub(super) mod peer_offer;
pub(super) mod requeue;

use super::*;
use switchboard_actors::shell::RingContext;
use switchboard_http::live::{Event, ScreenPop};
use switchboard_storage::model::{ContactPlanStatus, NumberLocation, TicketStatus, TimelineKind};

/// What [`SipCore::answer_invite`] made for an incoming INVITE.
pub(super) struct Answering {
    pub(super) leg: Leg,
    /// Our side of the SDP, for later offers (hold).
    pub(super) session: LocalSession,
    pub(super) local: LocalMedia,
    /// Our answer, for the 2xx.
    pub(super) sdp: String,
    pub(super) dialog: Dialog,
}

/// The user part of the request's From URI.
pub(super) fn from_user(req: &Request) -> Option<String> {
    req.headers
        .get("From")
        .and_then(|f| NameAddr::parse(f).ok())
        .and_then(|f| header::uri_user(&f.uri))
}

/// Which side of a call-center call a leg is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Party {
    Customer,
    Agent(AgentId),
    /// The outside number of a transfer.
    External,
    /// A supervisor monitoring the call.
    Supervisor,
    /// The agent or number the talking agent consults.
    Consulted,
}

/// A call-center call: the customer's leg, the agents' legs, the actor.
pub(super) struct CcCall {
    pub(super) tenant: TenantId,
    /// The hotline's waiting and voicemail prompts.
    pub(super) waiting_prompt: String,
    pub(super) voicemail_prompt: String,
    pub(super) actor: ActorRef<CallMsg>,
    /// Who and what the call is, for a record written here if its actor
    /// fails before writing one.
    pub(super) setup: CallSetup,
    pub(super) started: Timestamp,
    /// The actor wrote the call record.
    pub(super) finished: bool,
    /// When the INVITE reached our socket, until the first agent is rung (the ring
    /// delay metric).
    pub(super) invited: Option<Instant>,
    /// The customer's number, shown on the agent's phone.
    pub(super) caller: String,
    pub(super) customer: Option<DialogId>,
    pub(super) customer_leg: Leg,
    /// Our side of the customer's SDP, for the re-INVITEs of hold.
    customer_sdp: (LocalSession, LocalMedia),
    /// The agent put the customer on hold.
    held: bool,
    /// The conversation is being recorded (from the first bridge).
    recording: bool,
    pub(super) agents: HashMap<AgentId, OutLeg>,
    /// The outside number the customer was transferred to, through the
    /// trunk (the call record ended with the transfer; the legs live on).
    pub(super) external: Option<OutLeg>,
    /// A supervisor listening, whispering or barged in.
    pub(super) monitor: Option<Box<monitor::Monitor>>,
    /// The talking agent consulting someone.
    pub(super) consult: Option<Box<consult::Consult>>,
    /// The caller, who asked for a callback, being dialed back; once it
    /// answers, its leg is the customer's.
    callback: Option<Box<OutLeg>>,
}

/// Whom one of our INVITEs is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Agent(AgentId),
    External,
    /// A supervisor's phone.
    Supervisor,
    /// Whom the talking agent consults (or sends an outbound call's
    /// customer to).
    Consulted,
    /// The caller of a call waiting for its callback.
    CalledBack,
}

/// Where an INVITE of ours goes: a registered phone, or a number through
/// the tenant's trunk.
pub(super) struct Dial {
    request_uri: String,
    from: String,
    to: String,
    dest: SocketAddr,
    transport: Transport,
    /// For the trunk's 401/407.
    credentials: Option<(String, String)>,
}

/// An INVITE of ours (to an agent's phone or through the trunk), and the
/// dialog it made.
pub(super) struct OutLeg {
    leg: Leg,
    local: LocalMedia,
    /// Our side of its SDP, for later offers (hold).
    session: LocalSession,
    invite: Request,
    dest: SocketAddr,
    transport: Transport,
    dialog: Option<DialogId>,
    ack: Option<Request>,
    credentials: Option<(String, String)>,
    /// Sent again with credentials once; a second challenge is a refusal.
    authenticated: bool,
    /// We stopped wanting it (CANCEL sent, or the call moved on).
    cancelled: bool,
}

impl SipCore {
    /// An INVITE to a hotline: the IVR answers, a Call actor takes over.
    pub(super) async fn handle_hotline(
        &mut self,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        arrived: Instant,
        now: Instant,
    ) {
        let dialed = header::uri_user(&req.uri).unwrap_or_default();
        let Some(hotline) = self
            .centers
            .for_hotline(&dialed)
            .and_then(|c| c.hotlines.get(&dialed))
            .cloned()
        else {
            return self.respond_code(id, &req, 404, now);
        };
        let call = CallId(rand::random());
        let name = format!("customer-{call}@switchboard");
        let Answering {
            leg,
            session,
            local,
            sdp,
            dialog,
        } = match self
            .answer_invite(&req, call, name, &dialed, source, transport)
            .await
        {
            Ok(a) => a,
            Err(resp) => return self.respond(id, resp, now),
        };
        let caller = from_user(&req).unwrap_or_default();
        let Some(center) = self.centers.for_hotline(&dialed) else {
            return self.respond_code(id, &req, 404, now);
        };
        let local_time = LocalTime::at(center.clock.now(), center.utc_offset);
        let choice = hotline.schedule.flow_at(local_time);
        let (flow_id, open) = (choice.flow.to_owned(), choice.open);
        if let Some(special) = choice.special {
            tracing::info!(%call, special, flow = %flow_id, "special-date flow");
        }
        let Some(flow) = hotline.flows.get(&flow_id).cloned() else {
            tracing::warn!(flow = %flow_id, "hotline flow is not published");
            return self.respond_code(id, &req, 500, now);
        };
        let setup = CallSetup {
            tenant: center.tenant.clone(),
            node: self.node.clone(),
            utc_offset_minutes: center.utc_offset,
            call,
            caller: caller.clone(),
            dialed: dialed.clone(),
        };
        let started = center.clock.now();
        let machine = InboundCall::start(
            setup.clone(),
            flow,
            open,
            center.allow_external && center.trunk.is_some(),
            center.survey.clone(),
            started,
        )
        .with_callback(
            center
                .queue_callback
                .clone()
                .filter(|_| center.trunk.is_some()),
        );
        let actor = self.call_shell(center, call);
        let tenant = center.tenant.clone();
        let location = switchboard_actors::location::lookup(&caller);
        let actor = match Actor::spawn(None, actor, machine).await {
            Ok((a, handle)) => {
                self.watch_call_actor(call, &a, handle);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, "call actor did not start");
                return self.respond_code(id, &req, 500, now);
            }
        };
        let mut ok = dialog.response(&req, 200, "OK");
        ok.headers.push("Allow", ALLOW);
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = sdp.into_bytes().into();
        let dialog_id = dialog.id.clone();
        tracing::info!(
            %call,
            call_id = %dialog_id.call_id,
            hotline = %dialed,
            location = location.map(|l| l.place).unwrap_or("-"),
            "hotline call answered"
        );
        let retransmit = (!transport.is_reliable())
            .then(|| Retransmit2xx::new(now, self.timers.t1, self.timers.t2));
        let last_2xx = ok.to_bytes();
        self.respond(id, ok, now);
        self.invites.insert(id, dialog_id.clone());
        self.unacked.insert(dialog_id.clone());
        self.calls.insert(
            dialog_id.clone(),
            Call {
                dialog,
                invite: None,
                source,
                transport,
                last_2xx,
                retransmit,
                media: None,
                cc: Some((call, Party::Customer)),
                pending_offer: None,
            },
        );
        let m = super::super::metrics::get();
        m.calls_active.inc();
        m.actors.with_label_values(&["call"]).inc();
        self.cc.insert(
            call,
            CcCall {
                tenant,
                waiting_prompt: hotline.waiting_prompt.clone(),
                voicemail_prompt: hotline.voicemail_prompt.clone(),
                actor,
                setup,
                started,
                finished: false,
                invited: Some(arrived),
                caller,
                customer: Some(dialog_id),
                customer_leg: leg,
                customer_sdp: (session, local),
                held: false,
                recording: false,
                agents: HashMap::new(),
                external: None,
                monitor: None,
                consult: None,
                callback: None,
            },
        );
    }

    /// The shell of a call-center call of `center`'s.
    pub(super) fn call_shell(
        &self,
        center: &crate::node::center::CallCenter,
        call: CallId,
    ) -> CallActor {
        CallActor {
            call,
            clock: center.clock,
            telephony: self.telephony_tx.clone(),
            groups: center.call_groups.clone(),
            agents: center.call_agents.clone(),
            records: center.records.clone(),
        }
    }

    /// Media for an incoming INVITE's offer and the dialog it makes (the
    /// INVITE is answered later, with `sdp`): `user` is the one our
    /// Contact names. The response refusing it otherwise.
    pub(super) async fn answer_invite(
        &mut self,
        req: &Request,
        call: CallId,
        name: String,
        user: &str,
        source: SocketAddr,
        transport: Transport,
    ) -> Result<Answering, Response> {
        let offer = offer_in(req).map_err(|e| offer_refusal(req, &e))?;
        let advertise = self.media_ip_for(source);
        let reports = Reports {
            to: self.leg_tx.clone(),
            keys: true,
        };
        let leg = Leg::start(&self.media, advertise, call.0, name, reports)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "no media for call");
                Response::to(req, 503, reason_phrase(503))
            })?;
        let local = LocalMedia::new(leg.local.ip(), leg.local.port());
        let mut session = LocalSession::new(u64::from(rand::random::<u32>()), 1);
        let (answer, sdp) = session
            .answer(&offer, &local, Direction::SendRecv)
            .map_err(|e| offer_refusal(req, &e))?;
        leg.send(LegCmd::Remote(answer));
        let local_tag = self.fresh("sb");
        let mut contact = format!("sip:{user}@{}", self.contact_host_for(source));
        if transport == Transport::Tcp {
            contact.push_str(";transport=tcp");
        }
        let dialog = Dialog::uas(req, &local_tag, &contact)
            .map_err(|e| Response::to(req, e.status(), &e.to_string()))?;
        Ok(Answering {
            leg,
            session,
            local,
            sdp,
            dialog,
        })
    }

    /// The address our RTP is announced on, toward `peer`.
    pub(super) fn media_ip_for(&self, peer: SocketAddr) -> std::net::IpAddr {
        let local = self.transport.local_addr().ip();
        if !local.is_unspecified() {
            return local;
        }
        if peer.ip().is_loopback() {
            peer.ip()
        } else {
            crate::node::outbound_ip(peer).unwrap_or(local)
        }
    }

    /// What a Call actor asks of its legs.
    pub(super) async fn handle_telephony(
        &mut self,
        call: CallId,
        cmd: TelephonyCommand,
        now: Instant,
    ) {
        let Some(prompts) = self
            .cc
            .get(&call)
            .and_then(|c| self.centers.tenant(&c.tenant))
            .map(|c| c.prompts.clone())
        else {
            return;
        };
        match cmd {
            TelephonyCommand::Play { prompt } => {
                if let Some(c) = self.cc.get(&call) {
                    c.customer_leg.send(LegCmd::Play {
                        prompt: prompts.get(&prompt),
                        looped: false,
                    });
                }
            }
            TelephonyCommand::PlayWaiting => {
                if let Some(c) = self.cc.get(&call) {
                    c.customer_leg.send(LegCmd::Play {
                        prompt: prompts.get(&c.waiting_prompt),
                        looped: true,
                    });
                }
            }
            TelephonyCommand::Announce {
                position,
                expected_wait,
            } => {
                if let Some(c) = self.cc.get(&call) {
                    // Speech takes a few tens of milliseconds: not on the
                    // SIP core's task.
                    let leg = c.customer_leg.commands();
                    tokio::task::spawn_blocking(move || {
                        let prompt = prompts.announcement(position, expected_wait);
                        let _ = leg.send(LegCmd::Announce(prompt));
                    });
                }
            }
            TelephonyCommand::PlayOver { prompt } => {
                if let Some(c) = self.cc.get(&call) {
                    c.customer_leg.send(LegCmd::Announce(prompts.get(&prompt)));
                }
            }
            TelephonyCommand::AwaitCallback => {
                let customer = self.cc.get_mut(&call).and_then(|c| c.customer.take());
                if let Some(d) = customer {
                    self.hang_up(&d, now);
                }
                tracing::info!(%call, "the caller waits for a callback");
            }
            TelephonyCommand::DialBack { agent } => self.dial_back(call, &agent, now).await,
            TelephonyCommand::StopPrompt | TelephonyCommand::StopWaiting => {
                if let Some(c) = self.cc.get(&call) {
                    c.customer_leg.send(LegCmd::Stop);
                }
            }
            TelephonyCommand::RecordVoicemail { max_len } => {
                if let Some(c) = self.cc.get(&call) {
                    c.customer_leg.send(LegCmd::Play {
                        prompt: prompts.get(&c.voicemail_prompt),
                        looped: false,
                    });
                    let path = self.data_dir.join("voicemail").join(format!("{call}.wav"));
                    tracing::info!(%call, path = %path.display(), "recording voicemail");
                    c.customer_leg.send(LegCmd::Record { path, max_len });
                }
            }
            TelephonyCommand::Ring { agent, context } => {
                self.ring_agent(call, agent.clone(), now).await;
                self.screen_pop(call, agent, *context);
            }
            TelephonyCommand::StopRinging { agent } | TelephonyCommand::HangUpAgent { agent } => {
                self.end_agent_leg(call, &agent, now)
            }
            TelephonyCommand::Bridge { agent } => {
                if let Some(c) = self.cc.get_mut(&call) {
                    if let Some(a) = c.agents.get(&agent) {
                        c.customer_leg.send(LegCmd::Connect(a.leg.inbox()));
                        a.leg.send(LegCmd::Connect(c.customer_leg.inbox()));
                        // One stereo file per call, from the first bridge
                        // on (a transferred call goes on in it): the
                        // customer's leg hears both sides.
                        if !c.recording {
                            let file = format!("recordings/{call}.wav");
                            c.customer_leg.send(LegCmd::RecordCall {
                                path: self.data_dir.join(&file),
                            });
                            let _ = c.actor.cast(CallMsg::Recording(file));
                        }
                        c.recording = true;
                        tracing::info!(%call, %agent, "customer and agent bridged");
                    }
                }
            }
            TelephonyCommand::HangUpCustomer => {
                let customer = self.cc.get_mut(&call).and_then(|c| c.customer.take());
                if let Some(d) = customer {
                    self.hang_up(&d, now);
                }
                self.end_callback_leg(call, now);
                self.check_monitor(call, now);
                self.forget_if_done(call);
            }
            TelephonyCommand::TransferOut { to } => self.transfer_out(call, to, now).await,
            TelephonyCommand::Finished => {
                if let Some(c) = self.cc.get_mut(&call) {
                    c.finished = true;
                }
                self.forget_if_done(call);
            }
        }
    }

    pub(super) fn handle_leg_event(&mut self, call: CallId, event: LegEvent, now: Instant) {
        let msg = match event {
            LegEvent::PromptDone => CallMsg::PromptDone,
            LegEvent::Digit(k) => CallMsg::Digit(k),
            LegEvent::Silent(local) => return self.leg_silent(call, local, now),
        };
        if let Some(c) = self.cc.get(&call) {
            let _ = c.actor.cast(msg);
        }
    }

    /// The phone of one of `call`'s legs (the one at `local`) has sent
    /// nothing for the media timeout: it is taken for gone, as if it had
    /// hung up. It gets a BYE all the same, in case only its media is
    /// lost, and the call goes on as after that party's hang-up.
    fn leg_silent(&mut self, call: CallId, local: SocketAddr, now: Instant) {
        let parties: Vec<(DialogId, Party)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| match &c.cc {
                Some((of, party)) if *of == call => Some((id.clone(), party.clone())),
                _ => None,
            })
            .collect();
        let Some((dialog, party)) = parties
            .into_iter()
            .find(|(_, party)| self.leg_local(call, party) == Some(local))
        else {
            return;
        };
        tracing::warn!(
            %call,
            call_id = %dialog.call_id,
            ?party,
            secs = self.media.silence_limit.map_or(0, |d| d.as_secs()),
            "no media from the phone: taken for gone, its leg ends"
        );
        super::super::metrics::get().media_timeouts.inc();
        if let (Party::Customer | Party::Agent(_), Some(c)) = (&party, self.cc.get(&call)) {
            // Before the hang-up: the record tells why the call ended.
            let _ = c.actor.cast(CallMsg::MediaTimeout);
        }
        self.hang_up(&dialog, now);
        self.leg_hung_up(call, party, now);
    }

    /// Rings `agent`'s device: its registered SIP phone, or its mobile
    /// number through the tenant's trunk.
    pub(super) async fn ring_agent(&mut self, call: CallId, agent: AgentId, now: Instant) {
        let unix = self.unix(now);
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let actor = c.actor.clone();
        let center = self.centers.tenant(&c.tenant);
        let handle = center.and_then(|center| center.agents.get(&agent)).cloned();
        let trunk = center.and_then(|center| center.trunk.clone());
        let caller = Some(c.caller.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "switchboard".into());
        let dial = match handle.as_ref().map(|h| &h.device) {
            Some(Device::Sip { account }) => {
                let Some(dial) = self.phone_dial(&c.tenant, account, &caller, unix) else {
                    tracing::info!(%call, %agent, "agent phone not registered");
                    if let Some(h) = &handle {
                        let _ = h.actor.cast(AgentMsg::DeviceOnline(false));
                    }
                    let _ = actor.cast(CallMsg::AgentFailed(agent));
                    return;
                };
                Some(dial)
            }
            Some(Device::Mobile { number }) => match trunk {
                Some(t) => self.trunk_dial(&t, number).await,
                None => None,
            },
            None => None,
        };
        let Some(dial) = dial else {
            tracing::info!(%call, %agent, "agent's device cannot be reached");
            let _ = actor.cast(CallMsg::AgentFailed(agent));
            return;
        };
        if !self
            .dial(call, Target::Agent(agent.clone()), dial, now)
            .await
        {
            let _ = actor.cast(CallMsg::AgentFailed(agent));
            return;
        }
        if let Some(at) = self.cc.get_mut(&call).and_then(|c| c.invited.take()) {
            super::super::metrics::get()
                .ring_delay
                .observe(now.saturating_duration_since(at).as_secs_f64());
        }
    }

    /// The agent's workbench is told of the ringing call: what the IVR and
    /// the queue saw, and the customer the number belongs to with the
    /// latest of its timeline, open tickets and contact plans (read from
    /// the store off the core's task).
    pub(super) fn screen_pop(&self, call: CallId, agent: AgentId, context: RingContext) {
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let (tenant, setup) = (c.tenant.clone(), c.setup.clone());
        let (store, hub) = (self.store.clone(), self.hub.clone());
        let now = self
            .centers
            .tenant(&tenant)
            .map_or(Timestamp(0), |center| center.clock.now());
        tokio::spawn(async move {
            let location =
                switchboard_actors::location::lookup(&setup.caller).map(|l| NumberLocation {
                    place: l.place.to_owned(),
                    carrier: l.carrier.map(str::to_owned),
                });
            let customer = store
                .customer_by_number(&tenant, &setup.caller)
                .await
                .ok()
                .flatten();
            let mut timeline = Vec::new();
            let mut open_tickets = Vec::new();
            let mut contact_plans = Vec::new();
            if let Some(cu) = &customer {
                timeline = store
                    .timeline(&tenant, &cu.id, None, 10)
                    .await
                    .unwrap_or_default();
                for t in timeline.iter().filter(|t| t.kind == TimelineKind::Ticket) {
                    if let Ok(Some(ticket)) = store.get_ticket(&tenant, &t.id).await {
                        if matches!(ticket.status, TicketStatus::Open | TicketStatus::InProgress) {
                            open_tickets.push(ticket);
                        }
                    }
                }
                contact_plans = store
                    .contact_plans(&tenant, &agent)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p.customer == cu.id && p.status == ContactPlanStatus::Pending)
                    .collect();
            }
            let pop = ScreenPop {
                call: call.to_string(),
                caller: setup.caller,
                dialed: setup.dialed,
                location,
                call_type: "inbound".into(),
                ivr_keys: context.ivr_keys,
                ivr_vars: context.ivr_vars,
                group: context.group,
                queue_wait_seconds: context.enqueued.map_or(0, |e| now.since(e).as_secs()),
                customer,
                timeline,
                open_tickets,
                contact_plans,
            };
            hub.publish(
                &tenant,
                Event::Ringing {
                    version: 1,
                    agent: agent.0,
                    pop: Box::new(pop),
                },
            );
        });
    }

    /// An INVITE to SIP account `account`'s registered phone, showing
    /// `caller`; `None` while it is not registered.
    pub(super) fn phone_dial(
        &self,
        tenant: &TenantId,
        account: &str,
        caller: &str,
        unix: u64,
    ) -> Option<Dial> {
        let binding = self.bindings(tenant, account, unix).into_iter().next()?;
        let transport = if binding.transport.eq_ignore_ascii_case("TCP") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let host = self.contact_host_for(binding.source);
        Some(Dial {
            request_uri: binding.contact.clone(),
            from: format!("\"{caller}\" <sip:{caller}@{host}>"),
            to: format!("<sip:{account}@{host}>"),
            dest: binding.destination(),
            transport,
            credentials: None,
        })
    }

    /// Where to ring an agent's `device`: its registered SIP phone
    /// (showing `shown`), or its mobile number through `trunk`; `None`
    /// when it cannot be reached (not registered, no trunk).
    pub(super) async fn device_dial(
        &self,
        tenant: &TenantId,
        device: &Device,
        shown: &str,
        trunk: Option<&Trunk>,
        now: Instant,
    ) -> Option<Dial> {
        match device {
            Device::Sip { account } => self.phone_dial(tenant, account, shown, self.unix(now)),
            Device::Mobile { number } => self.trunk_dial(trunk?, number).await,
        }
    }

    /// An INVITE to `number` through `trunk`: From is the trunk's caller
    /// ID, the gateway's name is looked up now.
    pub(super) async fn trunk_dial(&self, trunk: &Trunk, number: &str) -> Option<Dial> {
        let gateway = if trunk.gateway.contains(':') {
            trunk.gateway.clone()
        } else {
            format!("{}:5060", trunk.gateway)
        };
        let dest = match tokio::net::lookup_host(&gateway).await {
            Ok(mut addrs) => addrs.next()?,
            Err(e) => {
                tracing::warn!(gateway = %gateway, error = %e, "trunk gateway not found");
                return None;
            }
        };
        let transport = match trunk.transport {
            TrunkTransport::Udp => Transport::Udp,
            TrunkTransport::Tcp => Transport::Tcp,
        };
        let mut request_uri = format!("sip:{number}@{gateway}");
        if transport == Transport::Tcp {
            request_uri.push_str(";transport=tcp");
        }
        let host = self.contact_host_for(dest);
        let id = &trunk.caller_id;
        Some(Dial {
            request_uri,
            from: format!("<sip:{id}@{host}>"),
            to: format!("<sip:{number}@{gateway}>"),
            dest,
            transport,
            credentials: trunk.username.clone().zip(trunk.password.clone()),
        })
    }

    /// Sends our INVITE with an offer for a new leg of `call`; false if it
    /// could not go out.
    async fn dial(&mut self, call: CallId, target: Target, dial: Dial, now: Instant) -> bool {
        let name = match &target {
            Target::Agent(a) => format!("agent-{a}-{call}@switchboard"),
            Target::External => format!("external-{call}@switchboard"),
            Target::Supervisor => format!("supervisor-{call}@switchboard"),
            Target::Consulted => format!("consulted-{call}@switchboard"),
            Target::CalledBack => format!("callback-{call}@switchboard"),
        };
        let Some(leg) = self.send_invite(call, &target, name, dial, now).await else {
            return false;
        };
        if let Some(c) = self.cc.get_mut(&call) {
            match target {
                Target::Agent(a) => {
                    c.agents.insert(a, leg);
                }
                Target::External => c.external = Some(leg),
                Target::CalledBack => c.callback = Some(Box::new(leg)),
                // Rung by `monitor` and `consult`, which keep the leg.
                Target::Supervisor | Target::Consulted => {}
            }
        }
        true
    }

    /// A new media leg and our INVITE with its offer, for `target` of
    /// `call` (its responses come to [`Self::handle_out_response`]);
    /// `None` if it could not go out.
    pub(super) async fn send_invite(
        &mut self,
        call: CallId,
        target: &Target,
        name: String,
        dial: Dial,
        now: Instant,
    ) -> Option<OutLeg> {
        let advertise = self.media_ip_for(dial.dest);
        // Keys come from the customer: an outgoing leg only tells that its
        // phone went quiet.
        let reports = Reports {
            to: self.leg_tx.clone(),
            keys: false,
        };
        let leg = match Leg::start(&self.media, advertise, call.0, name, reports).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "no media for an outgoing leg");
                return None;
            }
        };
        let local = LocalMedia::new(leg.local.ip(), leg.local.port());
        let mut session = LocalSession::new(u64::from(rand::random::<u32>()), 1);
        let sdp = session.offer(&local, Direction::SendRecv);
        let host = self.contact_host_for(dial.dest);
        let out = OutgoingInvite {
            request_uri: dial.request_uri.clone(),
            from: dial.from.clone(),
            to: dial.to.clone(),
            call_id: format!("{}@switchboard", self.fresh("cc")),
            local_tag: self.fresh("sb"),
            cseq: 1,
            contact: format!("sip:switchboard@{host}"),
        };
        let via = make_via(dial.transport.as_str(), &host, &new_branch(rand::random()));
        let invite = out.request(&via, &sdp);
        let tx = match self
            .layer
            .send_request(&invite, dial.dest, dial.transport, now)
        {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!(error = %e, "INVITE not sent");
                return None;
            }
        };
        tracing::info!(%call, target = ?target, uri = %dial.request_uri, "dialing");
        self.outgoing.insert(tx, (call, target.clone()));
        Some(OutLeg {
            leg,
            local,
            session,
            invite,
            dest: dial.dest,
            transport: dial.transport,
            dialog: None,
            ack: None,
            credentials: dial.credentials,
            authenticated: false,
            cancelled: false,
        })
    }

    /// A response to one of our INVITEs (`None`: no answer at all).
    pub(super) fn handle_out_response(
        &mut self,
        tx: TransactionId,
        resp: Option<Response>,
        now: Instant,
    ) {
        let Some((call, target)) = self.outgoing.get(&tx).cloned() else {
            return;
        };
        if matches!(target, Target::Supervisor | Target::Consulted) {
            return self.side_leg_response(tx, call, target, resp, now);
        }
        if self.is_outbound(call) {
            return self.handle_ob_response(tx, call, target, resp, now);
        }
        if self.is_internal(call) {
            return self.handle_ic_response(tx, call, target, resp, now);
        }
        let code = resp.as_ref().map_or(408, |r| r.code);
        if code < 200 {
            if code == 180 || code == 183 {
                tracing::info!(%call, ?target, "ringing");
            }
            return;
        }
        let Some(outcome) = self.final_outcome(tx, call, &target, resp.as_ref(), now) else {
            return;
        };
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        let actor = c.actor.clone();
        let answered = match outcome {
            Outcome::Refused { code, cancelled } => {
                tracing::info!(%call, ?target, code, "the call was not taken");
                match target {
                    Target::Agent(agent) => {
                        c.agents.remove(&agent);
                        // A leg we cancelled ends with 487: the call knows.
                        if !cancelled {
                            let _ = actor.cast(CallMsg::AgentFailed(agent));
                        }
                    }
                    Target::Supervisor | Target::Consulted => return,
                    Target::CalledBack => {
                        c.callback = None;
                        if !cancelled {
                            tracing::info!(%call, code, "the caller did not take its callback");
                            let _ = actor.cast(CallMsg::CallbackFailed(code));
                        }
                    }
                    Target::External => {
                        c.external = None;
                        // The transfer failed: the customer is told goodbye.
                        let customer = c.customer.take();
                        if let Some(d) = customer {
                            self.hang_up(&d, now);
                        }
                    }
                }
                self.forget_if_done(call);
                return;
            }
            Outcome::Answered(a) => *a,
        };
        let party = match &target {
            Target::Agent(a) => Party::Agent(a.clone()),
            Target::External => Party::External,
            Target::Supervisor | Target::Consulted => return,
            Target::CalledBack => return self.callback_answered(call, answered.dialog, now),
        };
        let cancelled = self.keep_answered(answered, (call, party));
        match target {
            Target::Agent(agent) if cancelled => {
                // Answered as we gave up on it: end it at once.
                self.end_agent_leg(call, &agent, now);
            }
            Target::Agent(agent) => {
                tracing::info!(%call, %agent, "agent answered");
                if let Some(c) = self.cc.get(&call) {
                    self.hub.publish(
                        &c.tenant,
                        Event::CallAnswered {
                            version: 1,
                            agent: agent.0.clone(),
                            call: call.to_string(),
                        },
                    );
                }
                let _ = actor.cast(CallMsg::AgentAnswered(agent));
            }
            Target::Supervisor | Target::Consulted | Target::CalledBack => {}
            Target::External => {
                if let Some(c) = self.cc.get(&call) {
                    if let Some(x) = &c.external {
                        c.customer_leg.send(LegCmd::Connect(x.leg.inbox()));
                        x.leg.send(LegCmd::Connect(c.customer_leg.inbox()));
                        tracing::info!(%call, "customer bridged to the outside number");
                    }
                }
            }
        }
    }

    /// The final response (or none) to one of our INVITEs, for any leg
    /// of any call: a challenge is answered once (then nothing more
    /// yet), a refusal forgets the transaction, a 2xx is ACKed (each
    /// copy; only the first counts) and its SDP applied to the leg.
    /// `None`: nothing for the caller to do (a provisional response, a
    /// retry, a copy, or a leg no longer kept).
    pub(super) fn final_outcome(
        &mut self,
        tx: TransactionId,
        call: CallId,
        target: &Target,
        resp: Option<&Response>,
        now: Instant,
    ) -> Option<Outcome> {
        let code = resp.map_or(408, |r| r.code);
        if code < 200 {
            return None;
        }
        let dest = out_leg(&mut self.cc, &mut self.ob, &mut self.ic, call, target)?.dest;
        let host = self.contact_host_for(dest);
        // (Field by field: the transaction layer is borrowed alongside.)
        let out = out_leg(&mut self.cc, &mut self.ob, &mut self.ic, call, target)?;
        if let Some(new_tx) = resp.and_then(|r| auth_retry(&mut self.layer, out, r, &host, now)) {
            tracing::info!(%call, ?target, code, "sending the INVITE again with credentials");
            self.outgoing.remove(&tx);
            self.outgoing.insert(new_tx, (call, target.clone()));
            return None;
        }
        if code >= 300 {
            let cancelled = out.cancelled;
            self.outgoing.remove(&tx);
            return Some(Outcome::Refused { code, cancelled });
        }
        let dialog = accept_2xx(&mut self.layer, out, resp?, &host)?;
        Some(Outcome::Answered(Box::new(Answered {
            dialog,
            dest: out.dest,
            transport: out.transport,
            cancelled: out.cancelled,
        })))
    }

    /// A response to the INVITE of a leg kept beside a call, inbound or
    /// outbound: the supervisor's or the consulted party's (`None`: no
    /// answer at all). The end, answered or not, goes to the supervision
    /// or the consultation.
    fn side_leg_response(
        &mut self,
        tx: TransactionId,
        call: CallId,
        target: Target,
        resp: Option<Response>,
        now: Instant,
    ) {
        let dialog = match self.final_outcome(tx, call, &target, resp.as_ref(), now) {
            None => return,
            Some(Outcome::Refused { code, .. }) => {
                tracing::info!(%call, ?target, code, "the call was not taken");
                None
            }
            Some(Outcome::Answered(a)) => Some(a.dialog),
        };
        match target {
            Target::Supervisor => self.monitor_answered(call, dialog, now),
            _ => self.consult_answered(call, dialog, now),
        }
    }

    /// An agent answered the offer of a call whose caller waits for a
    /// callback: the caller's number is dialed through the trunk, the
    /// agent hears ring-back.
    async fn dial_back(&mut self, call: CallId, agent: &AgentId, now: Instant) {
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let (actor, number) = (c.actor.clone(), c.caller.clone());
        if let Some(a) = c.agents.get(agent) {
            a.leg.send(LegCmd::Play {
                prompt: outbound::ringback(),
                looped: true,
            });
        }
        let trunk = self.centers.tenant(&c.tenant).and_then(|t| t.trunk.clone());
        let dial = match &trunk {
            Some(t) => self.trunk_dial(t, &number).await,
            None => None,
        };
        let dialed = match dial {
            Some(d) => self.dial(call, Target::CalledBack, d, now).await,
            None => false,
        };
        if dialed {
            tracing::info!(%call, %agent, "calling the caller back");
        } else {
            tracing::warn!(%call, "the caller cannot be called back (no trunk, or its gateway is unreachable)");
            let _ = actor.cast(CallMsg::CallbackFailed(503));
        }
    }

    /// The caller answered its callback: its leg is the customer's now.
    fn callback_answered(&mut self, call: CallId, dialog: Dialog, now: Instant) {
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        let Some(out) = c.callback.take().map(|b| *b) else {
            return;
        };
        let id = dialog.id.clone();
        self.add_out_dialog(dialog, out.dest, out.transport, (call, Party::Customer));
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        if out.cancelled {
            self.hang_up(&id, now);
            self.forget_if_done(call);
            return;
        }
        c.customer = Some(id);
        c.customer_sdp = (out.session, out.local);
        // The first leg (long gone) gives way to this one.
        c.customer_leg = out.leg;
        tracing::info!(%call, "the caller took its callback");
        let _ = c.actor.cast(CallMsg::CallbackAnswered);
    }

    /// Stops dialing the caller back (CANCEL; the leg goes with the 487).
    fn end_callback_leg(&mut self, call: CallId, now: Instant) {
        let Some(x) = self.cc.get_mut(&call).and_then(|c| c.callback.as_mut()) else {
            return;
        };
        x.cancelled = true;
        let cancel = cancel_for(&x.invite);
        let (dest, transport) = (x.dest, x.transport);
        let _ = self.layer.send_request(&cancel, dest, transport, now);
    }

    /// Keeps the dialog one of our INVITEs made, for the requests in it.
    pub(super) fn add_out_dialog(
        &mut self,
        dialog: Dialog,
        dest: SocketAddr,
        transport: Transport,
        leg_of: (CallId, Party),
    ) {
        self.calls.insert(
            dialog.id.clone(),
            Call {
                dialog,
                invite: None,
                source: dest,
                transport,
                last_2xx: Vec::new(),
                retransmit: None,
                media: None,
                cc: Some(leg_of),
                pending_offer: None,
            },
        );
    }

    /// Hands the customer to an outside number through the trunk (an IVR
    /// transfer node, or a queue's overflow to a number). Not allowed, or
    /// no trunk: the call ends.
    pub(super) async fn transfer_out(&mut self, call: CallId, to: IvrOutcome, now: Instant) {
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let center = self.centers.tenant(&c.tenant);
        let trunk = center
            .filter(|center| center.allow_external)
            .and_then(|center| center.trunk.clone());
        let dial = match (&to, trunk) {
            (IvrOutcome::TransferNumber { number }, Some(t)) => self.trunk_dial(&t, number).await,
            _ => None,
        };
        let dialed = match dial {
            Some(d) => self.dial(call, Target::External, d, now).await,
            None => false,
        };
        if !dialed {
            tracing::warn!(%call, ?to, "transfer out not possible (no trunk, not allowed, or the gateway is unreachable): the call ends");
            let customer = self.cc.get_mut(&call).and_then(|c| c.customer.take());
            if let Some(d) = customer {
                self.hang_up(&d, now);
            }
            self.forget_if_done(call);
        }
    }

    /// Stops ringing an agent (CANCEL) or ends its answered leg (BYE).
    pub(super) fn end_agent_leg(&mut self, call: CallId, agent: &AgentId, now: Instant) {
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        let Some(a) = c.agents.get_mut(agent) else {
            return;
        };
        a.cancelled = true;
        if let Some(d) = a.dialog.clone() {
            c.agents.remove(agent);
            self.hang_up(&d, now);
            self.check_monitor(call, now);
        } else {
            // §9.1: CANCEL only for an INVITE that has no final response;
            // a 2xx crossing it is answered with ACK and BYE above.
            let cancel = cancel_for(&a.invite);
            let (dest, transport) = (a.dest, a.transport);
            if let Err(e) = self.layer.send_request(&cancel, dest, transport, now) {
                tracing::debug!(error = %e, "CANCEL not sent");
            }
        }
        self.forget_if_done(call);
    }

    /// A leg's peer sent BYE.
    pub(super) fn leg_hung_up(&mut self, call: CallId, party: Party, now: Instant) {
        // The legs kept beside a call, whatever its kind.
        if matches!(party, Party::Supervisor | Party::Consulted) {
            if party == Party::Supervisor {
                self.monitor_hung_up(call);
            } else {
                self.consult_hung_up(call, now);
            }
            self.check_monitor(call, now);
            self.forget_if_done(call);
            self.forget_ob_if_done(call);
            return;
        }
        if self.is_outbound(call) {
            return self.ob_leg_hung_up(call, party, now);
        }
        if self.is_internal(call) {
            return self.ic_leg_hung_up(call, party);
        }
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        let msg = match party {
            Party::Customer => {
                c.customer = None;
                c.customer_leg.send(LegCmd::Stop);
                // A transferred customer takes the outside party along.
                let external = c.external.take();
                if let Some(d) = external.and_then(|x| x.dialog) {
                    self.hang_up(&d, now);
                }
                Some(CallMsg::CustomerHungUp)
            }
            Party::Agent(a) => {
                c.agents.remove(&a);
                Some(CallMsg::AgentHungUp(a))
            }
            Party::External => {
                c.external = None;
                let customer = c.customer.take();
                if let Some(d) = customer {
                    self.hang_up(&d, now);
                }
                None
            }
            // Handled above.
            Party::Supervisor | Party::Consulted => None,
        };
        if let Some(msg) = msg {
            if let Some(c) = self.cc.get(&call) {
                let _ = c.actor.cast(msg);
            }
        }
        self.check_monitor(call, now);
        self.forget_if_done(call);
    }

    /// Tells the core when `actor`, `call`'s, stops, however it stops.
    pub(super) fn watch_call_actor<M: ractor::Message>(
        &self,
        call: CallId,
        actor: &ActorRef<M>,
        done: tokio::task::JoinHandle<()>,
    ) {
        let (notices, id) = (self.notices_tx.clone(), actor.get_id());
        tokio::spawn(async move {
            let _ = done.await;
            let _ = notices.send(CallNotice::ActorEnded(call, id)).await;
        });
    }

    /// A Call actor stopped. After its record it has nothing more to do;
    /// before it (it failed), the node ends every leg, frees the agents
    /// and writes the record itself with what the media side knows. An
    /// actor the call has left (an outbound call gone on to a queue) is
    /// of no concern.
    pub(super) fn call_actor_ended(&mut self, call: CallId, actor: ractor::ActorId, now: Instant) {
        let current = match (self.cc.get(&call), self.ob.get(&call)) {
            (Some(c), _) => Some(c.actor.get_id()),
            (None, Some(c)) => Some(c.actor.get_id()),
            (None, None) => self.ic_actor(call),
        };
        if current.is_some_and(|id| id != actor) {
            return;
        }
        if self.is_outbound(call) {
            return self.ob_actor_ended(call, now);
        }
        if self.is_internal(call) {
            return self.ic_actor_ended(call, now);
        }
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        if c.finished {
            return;
        }
        tracing::error!(%call, "the call's actor failed: the node ends the call");
        let mut dialogs = Vec::new();
        let mut cancels = Vec::new();
        let mut talked = Vec::new();
        for (agent, leg) in c.agents.drain() {
            match leg.dialog {
                Some(d) => {
                    dialogs.push(d);
                    talked.push(agent);
                }
                None => cancels.push((cancel_for(&leg.invite), leg.dest, leg.transport)),
            }
        }
        if let Some(x) = c.external.take() {
            match x.dialog {
                Some(d) => dialogs.push(d),
                None => cancels.push((cancel_for(&x.invite), x.dest, x.transport)),
            }
        }
        dialogs.extend(c.customer.take());
        let monitor = c.monitor.take();
        if let Some(m) = &monitor {
            match &m.leg.dialog {
                Some(d) => dialogs.push(d.clone()),
                None => cancels.push((cancel_for(&m.leg.invite), m.leg.dest, m.leg.transport)),
            }
        }
        if let Some(x) = c.callback.take() {
            cancels.push((cancel_for(&x.invite), x.dest, x.transport));
        }
        c.finished = true;
        if let Some(k) = c.consult.take() {
            match &k.leg.dialog {
                Some(d) => dialogs.push(d.clone()),
                None => cancels.push((cancel_for(&k.leg.invite), k.leg.dest, k.leg.transport)),
            }
            if let switchboard_storage::model::TransferTarget::Agent(a) = &k.to {
                talked.push(a.clone());
            }
        }
        let (tenant, setup, started) = (c.tenant.clone(), c.setup.clone(), c.started);
        if let Some(m) = &monitor {
            self.released(&tenant, m, call);
        }
        for d in dialogs {
            self.hang_up(&d, now);
        }
        for (cancel, dest, transport) in cancels {
            let _ = self.layer.send_request(&cancel, dest, transport, now);
        }
        if let Some(center) = self.centers.tenant(&tenant) {
            for agent in &talked {
                if let Some(a) = center.agents.get(agent) {
                    let _ = a.actor.cast(AgentMsg::HungUp {
                        call,
                        wrap_up: std::time::Duration::ZERO,
                    });
                }
            }
            let end = center.clock.now();
            let record = failed_record(setup, started, end, &talked);
            let _ = center
                .records
                .send(switchboard_actors::shell::CallNote::Finished(Box::new(
                    record,
                )));
        }
        self.forget_if_done(call);
    }

    /// Drops a call-center call once its record is written and no leg is
    /// left.
    pub(super) fn forget_if_done(&mut self, call: CallId) {
        if self.cc.get(&call).is_some_and(|c| {
            c.customer.is_none()
                    && c.agents.is_empty()
                    && c.external.is_none()
                    && c.callback.is_none()
                    // A call waiting for its callback has no leg up.
                    && c.finished
        }) {
            self.cc.remove(&call);
            let m = super::super::metrics::get();
            m.calls_active.dec();
            m.actors.with_label_values(&["call"]).dec();
        }
    }
}

/// The record of a call whose actor failed: who called, when, which
/// agents were on it; the node ended it.
fn failed_record(
    setup: CallSetup,
    start: Timestamp,
    end: Timestamp,
    agents: &[AgentId],
) -> switchboard_storage::model::CallRecord {
    use switchboard_storage::model::{
        CallRecord, Day, Direction, HangupReason, HangupSide, IvrTrace, Leg as RecordLeg, LegKind,
        NumberLocation, Satisfaction,
    };
    let location = switchboard_actors::location::lookup(&setup.caller).map(|l| NumberLocation {
        place: l.place.to_owned(),
        carrier: l.carrier.map(str::to_owned),
    });
    let mut legs = vec![RecordLeg {
        kind: LegKind::Customer,
        party: setup.caller.clone(),
        start,
        answered: Some(start),
        end,
        sip_call_id: None,
    }];
    legs.extend(agents.iter().map(|a| RecordLeg {
        kind: LegKind::Agent,
        party: a.0.clone(),
        start,
        answered: None,
        end,
        sip_call_id: None,
    }));
    CallRecord {
        tenant: setup.tenant,
        call: setup.call,
        day: Day::of(start, setup.utc_offset_minutes),
        direction: Direction::Inbound,
        customer_number: setup.caller.clone(),
        customer: None,
        caller: setup.caller,
        dialed: setup.dialed,
        start,
        end,
        ivr: IvrTrace::default(),
        group: None,
        enqueued: None,
        dequeued: None,
        rings: Vec::new(),
        agent: agents.first().cloned(),
        answered: None,
        talk_end: None,
        overflow: None,
        hangup_side: HangupSide::System,
        hangup_reason: HangupReason::Failed,
        voicemail: false,
        satisfaction: Satisfaction::NotOffered,
        legs,
        location,
        recording: None,
        node: setup.node,
        outcome: None,
        transfers: Vec::new(),
        holds: Vec::new(),
        callback: None,
    }
}

/// RFC 3261 §22.2: a 401/407 (from the trunk) to `out`'s INVITE is
/// answered once, with its credentials; the new transaction, or `None`
/// when there is nothing to answer with (no credentials, answered once
/// already, given up) or the retry could not go out.
pub(super) fn auth_retry(
    layer: &mut TransactionLayer,
    out: &mut OutLeg,
    r: &Response,
    host: &str,
    now: Instant,
) -> Option<TransactionId> {
    if !matches!(r.code, 401 | 407) || out.authenticated || out.cancelled {
        return None;
    }
    let (user, pass) = out.credentials.clone()?;
    let via = make_via(out.transport.as_str(), host, &new_branch(rand::random()));
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let retry = match authenticated_retry(&out.invite, r, &user, &pass, &via, &cnonce) {
        Ok(retry) => retry,
        Err(e) => {
            tracing::warn!(error = %e, "cannot answer the trunk's challenge");
            return None;
        }
    };
    match layer.send_request(&retry, out.dest, out.transport, now) {
        Ok(tx) => {
            out.invite = retry;
            out.authenticated = true;
            Some(tx)
        }
        Err(e) => {
            tracing::warn!(error = %e, "authenticated INVITE not sent");
            None
        }
    }
}

/// A 2xx to `out`'s INVITE: the ACK goes out for every copy
/// (§13.2.2.4); the first makes the dialog (returned) and gives the leg
/// its remote media.
pub(super) fn accept_2xx(
    layer: &mut TransactionLayer,
    out: &mut OutLeg,
    resp: &Response,
    host: &str,
) -> Option<Dialog> {
    if let Some(ack) = &out.ack {
        let _ = layer.send_ack(ack, out.dest, out.transport);
        return None;
    }
    let mut dialog = match Dialog::uac(&out.invite, resp) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "unusable 2xx");
            return None;
        }
    };
    let via = make_via(out.transport.as_str(), host, &new_branch(rand::random()));
    let ack = dialog.request(Method::Ack, &via);
    let _ = layer.send_ack(&ack, out.dest, out.transport);
    out.ack = Some(ack);
    let answer = std::str::from_utf8(&resp.body)
        .map_err(|_| SdpError::NoAudio)
        .and_then(|sdp| parse_answer(sdp, &out.local, Direction::SendRecv));
    match answer {
        Ok(answer) => out.leg.send(LegCmd::Remote(answer)),
        Err(e) => tracing::warn!(error = %e, "the SDP answer is unusable"),
    }
    out.dialog = Some(dialog.id.clone());
    Some(dialog)
}

/// What a final response to one of our INVITEs came to (see
/// [`SipCore::final_outcome`]).
pub(super) enum Outcome {
    /// Refused with `code` (408: no answer at all); `cancelled`: we had
    /// given up on it.
    Refused { code: u16, cancelled: bool },
    /// Answered.
    Answered(Box<Answered>),
}

/// An INVITE of ours that was answered: its dialog, where the peer is,
/// whether we had given up on it.
pub(super) struct Answered {
    pub(super) dialog: Dialog,
    pub(super) dest: SocketAddr,
    pub(super) transport: Transport,
    pub(super) cancelled: bool,
}

impl SipCore {
    /// Keeps an answered leg's dialog as `leg_of`'s; whether we had
    /// given up on it (then it is to be ended at once).
    pub(super) fn keep_answered(&mut self, a: Answered, leg_of: (CallId, Party)) -> bool {
        self.add_out_dialog(a.dialog, a.dest, a.transport, leg_of);
        a.cancelled
    }
}

/// The leg of `call` that `target` names, whatever kind of call it is.
fn out_leg<'a>(
    cc: &'a mut BTreeMap<CallId, CcCall>,
    ob: &'a mut BTreeMap<CallId, outbound::ObCall>,
    ic: &'a mut BTreeMap<CallId, internal::IcCall>,
    call: CallId,
    target: &Target,
) -> Option<&'a mut OutLeg> {
    if let Some(c) = cc.get_mut(&call) {
        return match target {
            Target::Agent(a) => c.agents.get_mut(a),
            Target::External => c.external.as_mut(),
            Target::Supervisor => c.monitor.as_mut().map(|m| &mut m.leg),
            Target::Consulted => c.consult.as_mut().map(|k| &mut k.leg),
            Target::CalledBack => c.callback.as_deref_mut(),
        };
    }
    if let Some(c) = ob.get_mut(&call) {
        return match target {
            Target::Supervisor => c.monitor.as_mut().map(|m| &mut m.leg),
            Target::Consulted => c.consult.as_mut().map(|k| &mut k.leg),
            t => outbound::slot(c, t).as_mut(),
        };
    }
    ic.get_mut(&call)?.callee_mut()
}
