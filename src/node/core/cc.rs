//! The call-center side of the SIP core: a hotline's INVITE becomes a
//! Call actor with the customer's leg; what the actor asks (prompts,
//! waiting audio, ringing agents, bridging, hanging up) is done here on the
//! legs and dialogs; what happens on them goes back to the actor. Outgoing
//! legs (agents' phones) are our INVITEs, rung and cancelled here.

use super::*;

/// Which side of a call-center call a leg is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Party {
    Customer,
    Agent(AgentId),
}

/// A call-center call: the customer's leg, the agents' legs, the actor.
pub(super) struct CcCall {
    tenant: TenantId,
    /// The hotline's waiting and voicemail prompts.
    waiting_prompt: String,
    voicemail_prompt: String,
    actor: ActorRef<CallMsg>,
    /// The customer's number, shown on the agent's phone.
    caller: String,
    customer: Option<DialogId>,
    customer_leg: Leg,
    agents: HashMap<AgentId, AgentLeg>,
}

/// An INVITE of ours to an agent's phone, and the dialog it made.
pub(super) struct AgentLeg {
    leg: Leg,
    local: LocalMedia,
    invite: Request,
    dest: SocketAddr,
    transport: Transport,
    dialog: Option<DialogId>,
    ack: Option<Request>,
    /// We stopped wanting it (CANCEL sent, or the call moved on).
    cancelled: bool,
}

impl SipCore {
    /// An INVITE to a hotline: the IVR answers, a Call actor takes over.
    pub(super) async fn handle_hotline(
        &mut self,
        id: TransactionId,
        req: Request,
        dialed: String,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Some(hotline) = self
            .centers
            .for_hotline(&dialed)
            .and_then(|c| c.hotlines.get(&dialed))
            .cloned()
        else {
            return self.respond_code(id, &req, 404, now);
        };
        let offer = match std::str::from_utf8(&req.body) {
            Ok(body) if !req.body.is_empty() => parse_offer(body),
            _ => Err(SdpError::NoAudio),
        };
        let offer = match offer {
            Ok(o) => o,
            Err(e) => return self.refuse_offer(id, &req, &e, now),
        };
        let call = CallId(rand::random());
        let advertise = self.media_ip_for(source);
        let leg = match Leg::start(
            &self.media.ports,
            advertise,
            call.0,
            format!("customer-{call}@switchboard"),
            self.leg_tx.clone(),
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "no media for call");
                return self.respond_code(id, &req, 503, now);
            }
        };
        let local = LocalMedia::new(leg.local.ip(), leg.local.port());
        let mut session = LocalSession::new(u64::from(rand::random::<u32>()), 1);
        let (answer, sdp) = match session.answer(&offer, &local, Direction::SendRecv) {
            Ok(x) => x,
            Err(e) => return self.refuse_offer(id, &req, &e, now),
        };
        leg.send(LegCmd::Remote(answer));
        let local_tag = self.fresh("sb");
        let mut contact = format!("sip:{dialed}@{}", self.contact_host_for(source));
        if transport == Transport::Tcp {
            contact.push_str(";transport=tcp");
        }
        let dialog = match Dialog::uas(&req, &local_tag, &contact) {
            Ok(d) => d,
            Err(e) => {
                let resp = Response::to(&req, e.status(), &e.to_string());
                return self.respond(id, resp, now);
            }
        };
        let caller = req
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| header::uri_user(&f.uri))
            .unwrap_or_default();
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
        let machine = InboundCall::start(
            CallSetup {
                tenant: center.tenant.clone(),
                node: self.node.clone(),
                utc_offset_minutes: center.utc_offset,
                call,
                caller: caller.clone(),
                dialed: dialed.clone(),
            },
            flow,
            open,
            center.allow_external && center.trunk.is_some(),
            center.survey.clone(),
            center.clock.now(),
        );
        let actor = CallActor {
            call,
            clock: center.clock,
            telephony: self.telephony_tx.clone(),
            groups: center.groups.clone(),
            agents: center
                .agents
                .iter()
                .map(|(k, a)| (k.clone(), a.actor.clone()))
                .collect(),
            records: center.records.clone(),
        };
        let tenant = center.tenant.clone();
        let location = switchboard_actors::location::lookup(&caller);
        let actor = match Actor::spawn(None, actor, machine).await {
            Ok((a, _)) => a,
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
            hotline = %dialed,
            location = location.map(|l| l.place).unwrap_or("-"),
            "hotline call answered"
        );
        let retransmit = (!transport.is_reliable())
            .then(|| Retransmit2xx::new(now, self.timers.t1, self.timers.t2));
        let last_2xx = ok.to_bytes();
        self.respond(id, ok, now);
        self.invites.insert(id, dialog_id.clone());
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
            },
        );
        self.cc.insert(
            call,
            CcCall {
                tenant,
                waiting_prompt: hotline.waiting_prompt.clone(),
                voicemail_prompt: hotline.voicemail_prompt.clone(),
                actor,
                caller,
                customer: Some(dialog_id),
                customer_leg: leg,
                agents: HashMap::new(),
            },
        );
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
            TelephonyCommand::Ring { agent } => self.ring_agent(call, agent, now).await,
            TelephonyCommand::StopRinging { agent } | TelephonyCommand::HangUpAgent { agent } => {
                self.end_agent_leg(call, &agent, now)
            }
            TelephonyCommand::Bridge { agent } => {
                if let Some(c) = self.cc.get(&call) {
                    if let Some(a) = c.agents.get(&agent) {
                        c.customer_leg.send(LegCmd::Connect(a.leg.inbox()));
                        a.leg.send(LegCmd::Connect(c.customer_leg.inbox()));
                        // One stereo file per call: the customer's leg
                        // hears both sides.
                        let file = format!("recordings/{call}.wav");
                        c.customer_leg.send(LegCmd::RecordCall {
                            path: self.data_dir.join(&file),
                        });
                        let _ = c.actor.cast(CallMsg::Recording(file));
                        tracing::info!(%call, %agent, "customer and agent bridged");
                    }
                }
            }
            TelephonyCommand::HangUpCustomer => {
                let customer = self.cc.get_mut(&call).and_then(|c| c.customer.take());
                if let Some(d) = customer {
                    self.hang_up(&d, now);
                }
                self.forget_if_done(call);
            }
            TelephonyCommand::TransferOut { to } => {
                // No trunk yet: the call ends here.
                tracing::warn!(%call, ?to, "transfer out of the call center is not available");
                let customer = self.cc.get_mut(&call).and_then(|c| c.customer.take());
                if let Some(d) = customer {
                    self.hang_up(&d, now);
                }
                self.forget_if_done(call);
            }
        }
    }

    pub(super) fn handle_leg_event(&mut self, call: CallId, event: LegEvent) {
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let msg = match event {
            LegEvent::PromptDone => CallMsg::PromptDone,
            LegEvent::Digit(k) => CallMsg::Digit(k),
        };
        let _ = c.actor.cast(msg);
    }

    /// Rings `agent`'s registered phone: an INVITE of ours with an offer.
    pub(super) async fn ring_agent(&mut self, call: CallId, agent: AgentId, now: Instant) {
        let unix = self.unix(now);
        let Some(c) = self.cc.get(&call) else {
            return;
        };
        let actor = c.actor.clone();
        let handle = self
            .centers
            .tenant(&c.tenant)
            .and_then(|center| center.agents.get(&agent))
            .cloned();
        let account = match handle.as_ref().map(|h| &h.device) {
            Some(Device::Sip { account }) => account.clone(),
            other => {
                tracing::info!(%call, %agent, device = ?other, "agent cannot be rung");
                let _ = actor.cast(CallMsg::AgentFailed(agent));
                return;
            }
        };
        let binding = self
            .registrar
            .lookup(&c.tenant.0, &account, unix)
            .into_iter()
            .next();
        let Some(binding) = binding else {
            tracing::info!(%call, %agent, "agent phone not registered");
            if let Some(h) = &handle {
                let _ = h.actor.cast(AgentMsg::DeviceOnline(false));
            }
            let _ = actor.cast(CallMsg::AgentFailed(agent));
            return;
        };
        let transport = if binding.transport.eq_ignore_ascii_case("TCP") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let dest = binding.source;
        let advertise = self.media_ip_for(dest);
        // Agent legs report nothing the call needs: keys come from the
        // customer.
        let (quiet, _) = mpsc::unbounded_channel();
        let name = format!("agent-{agent}-{call}@switchboard");
        let leg = match Leg::start(&self.media.ports, advertise, call.0, name, quiet).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "no media for agent leg");
                let _ = actor.cast(CallMsg::AgentFailed(agent));
                return;
            }
        };
        let local = LocalMedia::new(leg.local.ip(), leg.local.port());
        let sdp = LocalSession::new(u64::from(rand::random::<u32>()), 1)
            .offer(&local, Direction::SendRecv);
        let host = self.contact_host_for(dest);
        let caller = self
            .cc
            .get(&call)
            .map(|c| c.caller.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "switchboard".into());
        let out = OutgoingInvite {
            request_uri: binding.contact.clone(),
            from: format!("\"{caller}\" <sip:{caller}@{host}>"),
            to: format!("<sip:{account}@{host}>"),
            call_id: format!("{}@switchboard", self.fresh("cc")),
            local_tag: self.fresh("sb"),
            cseq: 1,
            contact: format!("sip:switchboard@{host}"),
        };
        let via = make_via(transport.as_str(), &host, &new_branch(rand::random()));
        let invite = out.request(&via, &sdp);
        let tx = match self.layer.send_request(&invite, dest, transport, now) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::warn!(error = %e, "INVITE to agent not sent");
                let _ = actor.cast(CallMsg::AgentFailed(agent));
                return;
            }
        };
        tracing::info!(%call, %agent, contact = %binding.contact, "ringing agent");
        self.outgoing.insert(tx, (call, agent.clone()));
        if let Some(c) = self.cc.get_mut(&call) {
            c.agents.insert(
                agent,
                AgentLeg {
                    leg,
                    local,
                    invite,
                    dest,
                    transport,
                    dialog: None,
                    ack: None,
                    cancelled: false,
                },
            );
        }
    }

    /// A response to our INVITE to an agent (`None`: no answer at all).
    pub(super) fn handle_agent_response(
        &mut self,
        tx: TransactionId,
        resp: Option<Response>,
        now: Instant,
    ) {
        let Some((call, agent)) = self.outgoing.get(&tx).cloned() else {
            return;
        };
        let code = resp.as_ref().map_or(408, |r| r.code);
        if code < 200 {
            if code == 180 || code == 183 {
                tracing::info!(%call, %agent, "agent phone ringing");
            }
            return;
        }
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        let actor = c.actor.clone();
        let Some(a) = c.agents.get_mut(&agent) else {
            return;
        };
        if code >= 300 {
            tracing::info!(%call, %agent, code, "agent phone did not take the call");
            let cancelled = a.cancelled;
            c.agents.remove(&agent);
            self.outgoing.remove(&tx);
            // A leg we cancelled ends with 487: the call knows already.
            if !cancelled {
                let _ = actor.cast(CallMsg::AgentFailed(agent));
            }
            self.forget_if_done(call);
            return;
        }
        let Some(resp) = resp else {
            return;
        };
        // A 2xx: the ACK goes out for every copy (§13.2.2.4).
        if let Some(ack) = &a.ack {
            let _ = self.layer.send_ack(ack, a.dest, a.transport);
            return;
        }
        let mut dialog = match Dialog::uac(&a.invite, &resp) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "unusable 2xx from agent phone");
                return;
            }
        };
        let host = self.transport.local_addr().to_string();
        let via = make_via(a.transport.as_str(), &host, &new_branch(rand::random()));
        let ack = dialog.request(Method::Ack, &via);
        let _ = self.layer.send_ack(&ack, a.dest, a.transport);
        a.ack = Some(ack);
        let answer = std::str::from_utf8(&resp.body)
            .map_err(|_| SdpError::NoAudio)
            .and_then(|sdp| parse_answer(sdp, &a.local, Direction::SendRecv));
        let dialog_id = dialog.id.clone();
        a.dialog = Some(dialog_id.clone());
        let (dest, transport, cancelled) = (a.dest, a.transport, a.cancelled);
        match answer {
            Ok(answer) => a.leg.send(LegCmd::Remote(answer)),
            Err(e) => tracing::warn!(error = %e, "agent phone's SDP answer is unusable"),
        }
        self.calls.insert(
            dialog_id.clone(),
            Call {
                dialog,
                invite: None,
                source: dest,
                transport,
                last_2xx: Vec::new(),
                retransmit: None,
                media: None,
                cc: Some((call, Party::Agent(agent.clone()))),
            },
        );
        if cancelled {
            // Answered as we gave up on it: end it at once.
            self.end_agent_leg(call, &agent, now);
        } else {
            tracing::info!(%call, %agent, "agent answered");
            let _ = actor.cast(CallMsg::AgentAnswered(agent));
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
    pub(super) fn leg_hung_up(&mut self, call: CallId, party: Party) {
        let Some(c) = self.cc.get_mut(&call) else {
            return;
        };
        let msg = match party {
            Party::Customer => {
                c.customer = None;
                c.customer_leg.send(LegCmd::Stop);
                CallMsg::CustomerHungUp
            }
            Party::Agent(a) => {
                c.agents.remove(&a);
                CallMsg::AgentHungUp(a)
            }
        };
        let _ = c.actor.cast(msg);
        self.forget_if_done(call);
    }

    /// Drops a call-center call once no leg is left.
    pub(super) fn forget_if_done(&mut self, call: CallId) {
        if self
            .cc
            .get(&call)
            .is_some_and(|c| c.customer.is_none() && c.agents.is_empty())
        {
            self.cc.remove(&call);
        }
    }
}
