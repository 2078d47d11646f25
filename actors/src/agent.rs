//! An agent's status (坐席状态), sans-IO.
//!
//! The statuses of the glossary: offline, ready (空闲), busy (忙碌), break
//! with a reason (小休), tenant-defined custom statuses (自定义状态),
//! ringing (振铃), talking (通话中) and after-call work (话后处理). Only
//! `Ready` may be offered a call. Calls move the agent through ringing and
//! talking by themselves; what the agent chooses is checked against the
//! tenant's [`AgentPolicy`].
//!
//! - A choice made during a call (say "busy after this call", 预置忙碌)
//!   is kept and applied when the call and its wrap-up are over.
//! - A call not answered within the ring timeout is a miss; after
//!   `max_missed` misses in a row the agent goes to `missed_status` (a
//!   not-ready status) so the queue stops offering to an absent person.
//! - After a call, after-call work lasts the group's wrap-up time, then the
//!   agent returns to the status chosen before the call, or to ready. The
//!   agent may end wrap-up early by choosing ready.
//!
//! Every change comes out of [`Agent::poll_event`] as an
//! [`AgentEvent::Changed`] carrying the finished [`StatusPeriod`] (status,
//! start, end and the reason it began): the row of the agent status log.
//! Time spent in each kind of status is summed for statistics.

use crate::{AgentId, CallId, Timestamp};
use std::collections::VecDeque;
use std::time::Duration;
pub use switchboard_storage::model::{
    Actor, AgentPolicy, ChangeReason, Device, Status, StatusKind, StatusPeriod,
};
use thiserror::Error;

/// A status an agent (or a supervisor) may pick: not one that calls
/// drive, and not offline (that is signing out).
fn is_choosable(s: &Status) -> bool {
    matches!(
        s,
        Status::Ready | Status::Busy | Status::Break { .. } | Status::Custom { .. }
    )
}

/// What the machine tells its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The status changed: `period` is the one that ended, `to` the new
    /// status and `reason` why it began.
    Changed {
        agent: AgentId,
        period: StatusPeriod,
        to: Status,
        reason: ChangeReason,
    },
    /// A status was chosen for after the call the agent is on (or
    /// wrapping up): the status it goes to then.
    Planned { agent: AgentId, next: Status },
}

/// Why an input was refused; the status is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum AgentError {
    #[error("the agent is signed out")]
    SignedOut,
    #[error("the agent is already signed in")]
    AlreadySignedIn,
    #[error("the agent is on a call")]
    OnCall,
    #[error("the agent is not ready (status {0:?})")]
    NotReady(StatusKind),
    #[error("{0:?} cannot be chosen")]
    NotChoosable(StatusKind),
    #[error("custom status {0:?} is not defined")]
    UnknownCustom(String),
    #[error("custom status {0:?} may only be set by a supervisor")]
    SupervisorOnly(String),
    #[error("call {0} is not this agent's current call")]
    WrongCall(CallId),
    #[error("the agent's phone is not reachable")]
    DeviceOffline,
}

/// One agent's status machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Agent {
    id: AgentId,
    policy: AgentPolicy,
    status: Status,
    since: Timestamp,
    reason: ChangeReason,
    device: Option<Device>,
    /// Whether the device can ring now: a SIP phone while it is registered;
    /// a mobile number always. Calls are offered only to a reachable device.
    device_online: bool,
    /// Misses in a row since the last answered call.
    missed: u32,
    /// End of after-call work.
    acw_until: Option<Timestamp>,
    /// The not-ready status to return to after the current call: the one
    /// before it, or one chosen during it.
    after_call: Option<Status>,
    /// Time spent in each [`StatusKind`], finished periods only.
    totals: [Duration; 8],
    calls_answered: u32,
    talk_time: Duration,
    /// When the agent last became ready (for longest-idle distribution).
    ready_since: Option<Timestamp>,
    events: VecDeque<AgentEvent>,
}

impl Agent {
    /// A signed-out agent.
    pub fn new(id: AgentId, policy: AgentPolicy, now: Timestamp) -> Agent {
        Agent {
            id,
            policy,
            status: Status::Offline,
            since: now,
            reason: ChangeReason::Created,
            device: None,
            device_online: false,
            missed: 0,
            acw_until: None,
            after_call: None,
            totals: [Duration::ZERO; 8],
            calls_answered: 0,
            talk_time: Duration::ZERO,
            ready_since: None,
            events: VecDeque::new(),
        }
    }

    pub fn id(&self) -> &AgentId {
        &self.id
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// When the current status began.
    pub fn since(&self) -> Timestamp {
        self.since
    }

    pub fn device(&self) -> Option<&Device> {
        self.device.as_ref()
    }

    pub fn policy(&self) -> &AgentPolicy {
        &self.policy
    }

    /// Replaces the tenant's rules (they changed in the admin UI).
    pub fn set_policy(&mut self, policy: AgentPolicy) {
        self.policy = policy;
    }

    /// Whether a call may be offered now.
    pub fn is_available(&self) -> bool {
        self.status == Status::Ready
    }

    /// Ready, and the device can ring: the ACD may offer a call.
    pub fn can_be_offered(&self) -> bool {
        self.is_available() && self.device_online
    }

    pub fn device_online(&self) -> bool {
        self.device_online
    }

    /// The SIP phone registered (true) or its registration ended or it
    /// could not be reached (false). Mobile devices are always reachable.
    /// Returns whether anything changed.
    pub fn set_device_online(&mut self, online: bool) -> bool {
        let changed = self.device_would_change(online);
        self.device_online = online || self.is_mobile();
        changed
    }

    /// Whether [`Self::set_device_online`] would change anything.
    pub fn device_would_change(&self, online: bool) -> bool {
        (online || self.is_mobile()) != self.device_online
    }

    fn is_mobile(&self) -> bool {
        matches!(self.device, Some(Device::Mobile { .. }))
    }

    /// Since when the agent has been ready, if it is.
    pub fn ready_since(&self) -> Option<Timestamp> {
        self.ready_since.filter(|_| self.is_available())
    }

    /// Calls answered since the last [`Self::reset_counters`].
    pub fn calls_answered(&self) -> u32 {
        self.calls_answered
    }

    /// Talk time since the last [`Self::reset_counters`].
    pub fn talk_time(&self) -> Duration {
        self.talk_time
    }

    /// Time in `kind`, the current period included up to `now`.
    pub fn time_in(&self, kind: StatusKind, now: Timestamp) -> Duration {
        let mut t = self.totals[kind as usize];
        if self.status.kind() == kind {
            t += now.since(self.since);
        }
        t
    }

    /// Starts a new day's counters (calls, talk time, time in status).
    pub fn reset_counters(&mut self) {
        self.totals = [Duration::ZERO; 8];
        self.calls_answered = 0;
        self.talk_time = Duration::ZERO;
    }

    /// Signs in with `device`, into `initial` (ready, busy, a break or a
    /// custom status).
    pub fn sign_in(
        &mut self,
        device: Device,
        initial: Status,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        if self.status != Status::Offline {
            return Err(AgentError::AlreadySignedIn);
        }
        self.check_choosable(&initial, Actor::Agent)?;
        if matches!(device, Device::Mobile { .. }) {
            self.device_online = true;
        }
        self.device = Some(device);
        self.missed = 0;
        self.change(initial, ChangeReason::SignIn, now);
        Ok(())
    }

    /// Signs out; refused while a call is offered or connected.
    pub fn sign_out(&mut self, by: Actor, now: Timestamp) -> Result<(), AgentError> {
        match &self.status {
            Status::Offline => Err(AgentError::SignedOut),
            Status::Ringing { .. } | Status::Talking { .. } => Err(AgentError::OnCall),
            _ => {
                self.device = None;
                self.device_online = false;
                self.acw_until = None;
                self.after_call = None;
                self.change(Status::Offline, ChangeReason::SignOut { by }, now);
                Ok(())
            }
        }
    }

    /// The machine rebuilt after its shell caught a panic while `self`
    /// handled an input: the same status (and call), device and day's
    /// counters, with `policy` as the store has it now; what a change
    /// half done can leave inconsistent is made consistent again (a
    /// wrap-up deadline only in after-call work, and one there; a status
    /// to return to only around a call; no device when signed out); the
    /// misses in a row count anew and no event is pending.
    pub fn recover(&self, policy: AgentPolicy) -> Agent {
        let mut a = self.clone();
        a.policy = policy;
        a.events.clear();
        a.missed = 0;
        match &a.status {
            Status::AfterCallWork { .. } => {
                a.acw_until.get_or_insert(a.since);
            }
            _ => a.acw_until = None,
        }
        if !matches!(
            a.status,
            Status::Ringing { .. } | Status::Talking { .. } | Status::AfterCallWork { .. }
        ) {
            a.after_call = None;
        }
        match a.status {
            Status::Offline => {
                a.device = None;
                a.device_online = false;
            }
            Status::Ready => {
                a.ready_since.get_or_insert(a.since);
            }
            _ => {}
        }
        a
    }

    /// The status the agent had on the node that ran it until its home
    /// moved: a not-ready status or signed out is taken over as it was
    /// (logged as resumed); ready, and the statuses calls drive, are left
    /// to the calls.
    pub fn restore(&mut self, status: Status, now: Timestamp) -> Result<(), AgentError> {
        if matches!(self.status, Status::Ringing { .. } | Status::Talking { .. }) {
            // On a call here already (resumed): what it chose waits for
            // the call to end, as a choice made during the call does.
            return match status {
                Status::Busy | Status::Break { .. } | Status::Custom { .. } => {
                    self.plan(status);
                    Ok(())
                }
                _ => Err(AgentError::OnCall),
            };
        }
        match status {
            Status::Offline if self.status != Status::Offline => {
                self.device = None;
                self.device_online = false;
                self.acw_until = None;
                self.after_call = None;
                self.change(Status::Offline, ChangeReason::Resumed, now);
            }
            Status::Busy | Status::Break { .. } | Status::Custom { .. }
                if self.status != status =>
            {
                if self.status == Status::Offline {
                    return Err(AgentError::SignedOut);
                }
                self.acw_until = None;
                self.after_call = None;
                self.change(status, ChangeReason::Resumed, now);
            }
            _ => {}
        }
        Ok(())
    }

    /// What a new home is to restore when this agent moves there: the
    /// status chosen for after the call when on one, else the status
    /// itself (the new home takes over only what an agent chooses).
    pub fn handover(&self) -> Status {
        match (&self.status, &self.after_call) {
            (
                Status::Ringing { .. } | Status::Talking { .. } | Status::AfterCallWork { .. },
                Some(after),
            ) => after.clone(),
            (s, _) => s.clone(),
        }
    }

    /// The agent or a supervisor chooses a status. During a call the
    /// choice waits for the call and its wrap-up to end; choosing ready
    /// during wrap-up ends it.
    pub fn choose(&mut self, status: Status, by: Actor, now: Timestamp) -> Result<(), AgentError> {
        self.check_choosable(&status, by)?;
        match &self.status {
            Status::Offline => Err(AgentError::SignedOut),
            Status::Ringing { .. } | Status::Talking { .. } => {
                self.plan(status);
                Ok(())
            }
            Status::AfterCallWork { .. } if status != Status::Ready => {
                self.plan(status);
                Ok(())
            }
            _ => {
                self.acw_until = None;
                self.after_call = None;
                if status != self.status {
                    if status == Status::Ready {
                        self.missed = 0;
                    }
                    self.change(status, ChangeReason::Chosen { by }, now);
                }
                Ok(())
            }
        }
    }

    /// `next` is the status after the call (told, so that a new home
    /// knows it should this one die).
    fn plan(&mut self, next: Status) {
        self.after_call = Some(next.clone());
        self.events.push_back(AgentEvent::Planned {
            agent: self.id.clone(),
            next,
        });
    }

    /// A call is offered: ready → ringing.
    pub fn offer(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        match &self.status {
            Status::Ready if !self.device_online => Err(AgentError::DeviceOffline),
            Status::Ready => {
                self.after_call = None;
                self.change(Status::Ringing { call }, ChangeReason::Offered, now);
                Ok(())
            }
            Status::Offline => Err(AgentError::SignedOut),
            other => Err(AgentError::NotReady(other.kind())),
        }
    }

    /// The agent answered the offered call.
    pub fn answered(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        self.expect_status(&Status::Ringing { call }, call)?;
        self.missed = 0;
        self.calls_answered += 1;
        self.change(Status::Talking { call }, ChangeReason::Answered, now);
        Ok(())
    }

    /// The offer ended without a fault of the agent's: back to what was
    /// before (ready, or a status chosen while ringing).
    pub fn offer_withdrawn(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        self.expect_status(&Status::Ringing { call }, call)?;
        let next = self.after_call.take().unwrap_or(Status::Ready);
        self.change(next, ChangeReason::OfferWithdrawn, now);
        Ok(())
    }

    /// The offered call was not answered in time.
    pub fn missed(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        self.expect_status(&Status::Ringing { call }, call)?;
        self.missed += 1;
        if self.missed >= self.policy.max_missed.max(1) {
            let misses = self.missed;
            self.missed = 0;
            self.after_call = None;
            let to = self.policy.missed_status.clone();
            self.change(to, ChangeReason::MissedTooOften { misses }, now);
        } else {
            let next = self.after_call.take().unwrap_or(Status::Ready);
            self.change(next, ChangeReason::Missed, now);
        }
        Ok(())
    }

    /// The agent dials out from the phone bar: allowed from any status but
    /// offline and another call; afterwards the agent returns to it.
    pub fn dialed(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        self.on_call(call, ChangeReason::Dialed, now)
    }

    /// The agent is on `call`, which went on while its actor moved to
    /// another node (the call's node says so): as after dialing, but
    /// logged as resumed; nothing changes if it is on that call already.
    pub fn resume_call(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        if self.status == (Status::Talking { call }) {
            return Ok(());
        }
        self.on_call(call, ChangeReason::Resumed, now)
    }

    /// The agent's phone is ringing for `call` (its home moved during the
    /// ring): ringing here too, so it is not offered another call.
    pub fn resume_ringing(&mut self, call: CallId, now: Timestamp) -> Result<(), AgentError> {
        if self.status == (Status::Ringing { call }) {
            return Ok(());
        }
        self.take_call(Status::Ringing { call }, ChangeReason::Resumed, now)
    }

    fn on_call(
        &mut self,
        call: CallId,
        reason: ChangeReason,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        self.take_call(Status::Talking { call }, reason, now)
    }

    /// Into `to` (ringing or talking) from any status but offline or
    /// another call.
    fn take_call(
        &mut self,
        to: Status,
        reason: ChangeReason,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        match &self.status {
            Status::Offline => Err(AgentError::SignedOut),
            Status::Ringing { .. } | Status::Talking { .. } => Err(AgentError::OnCall),
            s => {
                // A not-ready status is returned to after the call; ready
                // and wrap-up lead back to ready.
                let not_ready = matches!(
                    s,
                    Status::Busy | Status::Break { .. } | Status::Custom { .. }
                );
                if self.after_call.is_none() && not_ready {
                    self.after_call = Some(s.clone());
                }
                self.acw_until = None;
                self.change(to, reason, now);
                Ok(())
            }
        }
    }

    /// The call ended. With a wrap-up time the agent goes to after-call
    /// work until then; without, straight to the status after the call.
    pub fn hung_up(
        &mut self,
        call: CallId,
        wrap_up: Duration,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        self.expect_status(&Status::Talking { call }, call)?;
        self.talk_time += now.since(self.since);
        if wrap_up.is_zero() {
            let next = self.after_call.take().unwrap_or(Status::Ready);
            self.change(next, ChangeReason::HungUp, now);
        } else {
            self.acw_until = Some(now.after(wrap_up));
            self.change(Status::AfterCallWork { call }, ChangeReason::HungUp, now);
        }
        Ok(())
    }

    /// When [`Self::handle_timeout`] is next due: the end of wrap-up.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.acw_until
    }

    /// Ends wrap-up when its time has come.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(until) = self.acw_until {
            if now >= until {
                self.acw_until = None;
                let next = self.after_call.take().unwrap_or(Status::Ready);
                self.change(next, ChangeReason::WrapUpDone, now);
            }
        }
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    fn expect_status(&self, want: &Status, call: CallId) -> Result<(), AgentError> {
        if &self.status == want {
            Ok(())
        } else {
            Err(AgentError::WrongCall(call))
        }
    }

    fn check_choosable(&self, status: &Status, by: Actor) -> Result<(), AgentError> {
        if !is_choosable(status) {
            return Err(AgentError::NotChoosable(status.kind()));
        }
        if let Status::Custom { id } = status {
            if !self.policy.custom.contains(id) {
                return Err(AgentError::UnknownCustom(id.clone()));
            }
            if by == Actor::Agent && !self.policy.selectable_custom.contains(id) {
                return Err(AgentError::SupervisorOnly(id.clone()));
            }
        }
        Ok(())
    }

    fn change(&mut self, to: Status, reason: ChangeReason, now: Timestamp) {
        // Every period lasts at least a millisecond, so the periods' starts
        // strictly increase: the status log is keyed by its start, and two
        // changes in one millisecond would otherwise write one row.
        let now = Timestamp(now.0.max(self.since.0 + 1));
        let from = std::mem::replace(&mut self.status, to.clone());
        let start = std::mem::replace(&mut self.since, now);
        let began = std::mem::replace(&mut self.reason, reason.clone());
        self.totals[from.kind() as usize] += now.since(start);
        if to == Status::Ready {
            self.ready_since = Some(now);
        }
        self.events.push_back(AgentEvent::Changed {
            agent: self.id.clone(),
            period: StatusPeriod {
                status: from,
                start,
                end: now,
                reason: began,
            },
            to,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: u64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn ready_agent() -> Agent {
        let mut a = Agent::new("1001".into(), AgentPolicy::default(), t(0));
        a.sign_in(
            Device::Sip {
                account: "1001".into(),
            },
            Status::Ready,
            t(10),
        )
        .unwrap();
        a.set_device_online(true);
        a
    }

    fn drain(a: &mut Agent) -> Vec<AgentEvent> {
        std::iter::from_fn(|| a.poll_event()).collect()
    }

    #[test]
    fn a_recovered_agent_goes_on_with_its_call_and_its_wrap_up() {
        let mut a = ready_agent();
        a.offer(CallId(4), t(20)).unwrap();
        a.answered(CallId(4), t(25)).unwrap();
        a.choose(Status::Busy, Actor::Agent, t(30)).unwrap();
        drain(&mut a);
        // Half-way through a change: a wrap-up deadline while talking.
        let mut broken = a.clone();
        broken.acw_until = Some(t(31));
        broken.missed = 2;
        let mut r = broken.recover(AgentPolicy::default());
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.status(), &Status::Talking { call: CallId(4) });
        assert_eq!(r.poll_timeout(), None, "no wrap-up while talking");
        assert!(r.offer(CallId(5), t(32)).is_err(), "still on its call");
        // The call ends: wrap-up, then the status chosen during the call.
        r.hung_up(CallId(4), Duration::from_secs(10), t(40))
            .unwrap();
        assert_eq!(r.status(), &Status::AfterCallWork { call: CallId(4) });
        r.handle_timeout(t(50));
        assert_eq!(r.status(), &Status::Busy);
        // Broken in wrap-up without a deadline: it ends at the next tick.
        let mut w = ready_agent();
        w.offer(CallId(6), t(20)).unwrap();
        w.answered(CallId(6), t(21)).unwrap();
        w.hung_up(CallId(6), Duration::from_secs(60), t(22))
            .unwrap();
        let mut broken = w.clone();
        broken.acw_until = None;
        let mut r = broken.recover(AgentPolicy::default());
        assert!(r.poll_timeout().is_some());
        r.handle_timeout(t(23));
        assert_eq!(r.status(), &Status::Ready);
    }

    #[test]
    fn changes_in_one_millisecond_keep_distinct_periods() {
        let mut a = ready_agent();
        drain(&mut a);
        let at = t(10);
        a.choose(
            Status::Break {
                reason: "lunch".into(),
            },
            Actor::Agent,
            at,
        )
        .unwrap();
        a.choose(Status::Busy, Actor::Agent, at).unwrap();
        a.choose(Status::Ready, Actor::Agent, at).unwrap();
        let starts: Vec<Timestamp> = drain(&mut a)
            .into_iter()
            .filter_map(|e| match e {
                AgentEvent::Changed { period, .. } => Some(period.start),
                AgentEvent::Planned { .. } => None,
            })
            .collect();
        assert_eq!(starts.len(), 3);
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    }

    #[test]
    fn calls_are_offered_only_to_a_reachable_device() {
        let mut a = Agent::new("1001".into(), AgentPolicy::default(), t(0));
        a.sign_in(
            Device::Sip {
                account: "1001".into(),
            },
            Status::Ready,
            t(1),
        )
        .unwrap();
        assert!(a.is_available());
        assert!(!a.can_be_offered(), "the phone has not registered");
        assert_eq!(a.offer(CallId(1), t(2)), Err(AgentError::DeviceOffline));
        assert!(a.set_device_online(true));
        assert!(!a.set_device_online(true), "no change");
        assert!(a.offer(CallId(1), t(3)).is_ok());
        // A mobile number needs no registration.
        let mut m = Agent::new("2001".into(), AgentPolicy::default(), t(0));
        m.sign_in(
            Device::Mobile {
                number: "13800138000".into(),
            },
            Status::Ready,
            t(1),
        )
        .unwrap();
        assert!(m.can_be_offered());
        assert!(!m.set_device_online(false), "a mobile stays reachable");
    }

    #[test]
    fn a_call_from_offer_to_wrap_up_and_back() {
        let mut a = ready_agent();
        drain(&mut a);
        a.offer(CallId(1), t(20)).unwrap();
        assert_eq!(
            a.offer(CallId(2), t(21)),
            Err(AgentError::NotReady(StatusKind::Ringing))
        );
        a.answered(CallId(1), t(25)).unwrap();
        a.hung_up(CallId(1), Duration::from_secs(30), t(85))
            .unwrap();
        assert_eq!(a.status(), &Status::AfterCallWork { call: CallId(1) });
        assert_eq!(a.poll_timeout(), Some(t(115)));
        a.handle_timeout(t(100));
        assert!(matches!(a.status(), Status::AfterCallWork { .. }));
        a.handle_timeout(t(115));
        assert_eq!(a.status(), &Status::Ready);
        assert_eq!(a.calls_answered(), 1);
        assert_eq!(a.talk_time(), Duration::from_secs(60));
        assert_eq!(
            a.time_in(StatusKind::Ringing, t(200)),
            Duration::from_secs(5)
        );
        assert_eq!(
            a.time_in(StatusKind::AfterCallWork, t(200)),
            Duration::from_secs(30)
        );
        assert_eq!(
            a.time_in(StatusKind::Ready, t(200)),
            Duration::from_secs(10 + 85)
        );
        let periods: Vec<(StatusKind, u64, u64)> = drain(&mut a)
            .into_iter()
            .filter_map(|e| match e {
                AgentEvent::Changed { period, .. } => Some((
                    period.status.kind(),
                    period.start.0 / 1000,
                    period.end.0 / 1000,
                )),
                AgentEvent::Planned { .. } => None,
            })
            .collect();
        assert_eq!(
            periods,
            vec![
                (StatusKind::Ready, 10, 20),
                (StatusKind::Ringing, 20, 25),
                (StatusKind::Talking, 25, 85),
                (StatusKind::AfterCallWork, 85, 115),
            ]
        );
    }

    #[test]
    fn misses_in_a_row_make_the_agent_not_ready() {
        let mut a = ready_agent();
        a.offer(CallId(1), t(20)).unwrap();
        a.missed(CallId(1), t(35)).unwrap();
        assert_eq!(a.status(), &Status::Ready);
        a.offer(CallId(2), t(40)).unwrap();
        a.missed(CallId(2), t(55)).unwrap();
        assert_eq!(a.status(), &Status::Busy);
        let last = drain(&mut a).pop().unwrap();
        assert!(matches!(
            last,
            AgentEvent::Changed {
                reason: ChangeReason::MissedTooOften { misses: 2 },
                ..
            }
        ));
        // An answered call in between resets the count.
        let mut a = ready_agent();
        a.offer(CallId(1), t(20)).unwrap();
        a.missed(CallId(1), t(35)).unwrap();
        a.offer(CallId(2), t(40)).unwrap();
        a.answered(CallId(2), t(41)).unwrap();
        a.hung_up(CallId(2), Duration::ZERO, t(50)).unwrap();
        a.offer(CallId(3), t(60)).unwrap();
        a.missed(CallId(3), t(75)).unwrap();
        assert_eq!(a.status(), &Status::Ready);
    }

    #[test]
    fn a_status_chosen_during_a_call_applies_after_it() {
        let mut a = ready_agent();
        a.offer(CallId(1), t(20)).unwrap();
        a.answered(CallId(1), t(21)).unwrap();
        a.choose(
            Status::Break {
                reason: "lunch".into(),
            },
            Actor::Agent,
            t(30),
        )
        .unwrap();
        assert!(matches!(a.status(), Status::Talking { .. }));
        a.hung_up(CallId(1), Duration::from_secs(5), t(40)).unwrap();
        a.handle_timeout(t(45));
        assert_eq!(
            a.status(),
            &Status::Break {
                reason: "lunch".into()
            }
        );
        // Ready during wrap-up ends it at once.
        a.choose(Status::Ready, Actor::Agent, t(50)).unwrap();
        a.offer(CallId(2), t(60)).unwrap();
        a.answered(CallId(2), t(61)).unwrap();
        a.hung_up(CallId(2), Duration::from_secs(60), t(70))
            .unwrap();
        a.choose(Status::Ready, Actor::Agent, t(72)).unwrap();
        assert_eq!(a.status(), &Status::Ready);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn custom_statuses_follow_the_policy() {
        let policy = AgentPolicy {
            custom: vec!["training".into(), "meeting".into()],
            selectable_custom: vec!["meeting".into()],
            ..AgentPolicy::default()
        };
        let mut a = Agent::new("1002".into(), policy, t(0));
        let custom = |id: &str| Status::Custom { id: id.into() };
        a.sign_in(
            Device::Mobile {
                number: "13800138000".into(),
            },
            Status::Busy,
            t(1),
        )
        .unwrap();
        assert_eq!(
            a.choose(custom("training"), Actor::Agent, t(2)),
            Err(AgentError::SupervisorOnly("training".into()))
        );
        a.choose(custom("training"), Actor::Supervisor, t(3))
            .unwrap();
        a.choose(custom("meeting"), Actor::Agent, t(4)).unwrap();
        assert_eq!(
            a.choose(custom("nap"), Actor::Supervisor, t(5)),
            Err(AgentError::UnknownCustom("nap".into()))
        );
        assert_eq!(
            a.choose(Status::Talking { call: CallId(1) }, Actor::Agent, t(5)),
            Err(AgentError::NotChoosable(StatusKind::Talking))
        );
        assert_eq!(
            a.offer(CallId(1), t(6)),
            Err(AgentError::NotReady(StatusKind::Custom))
        );
        assert_eq!(a.time_in(StatusKind::Custom, t(10)), Duration::from_secs(7));
    }

    #[test]
    fn sign_out_is_refused_on_a_call_and_dialing_returns_to_the_status_before() {
        let mut a = ready_agent();
        a.choose(Status::Busy, Actor::Agent, t(11)).unwrap();
        a.dialed(CallId(9), t(12)).unwrap();
        assert_eq!(a.sign_out(Actor::Agent, t(13)), Err(AgentError::OnCall));
        a.hung_up(CallId(9), Duration::ZERO, t(20)).unwrap();
        assert_eq!(a.status(), &Status::Busy);
        a.sign_out(Actor::Supervisor, t(21)).unwrap();
        assert_eq!(a.status(), &Status::Offline);
        assert_eq!(a.device(), None);
        assert_eq!(a.offer(CallId(1), t(22)), Err(AgentError::SignedOut));
        assert_eq!(
            a.answered(CallId(1), t(22)),
            Err(AgentError::WrongCall(CallId(1)))
        );
    }

    /// Any input the phone bar, the queue or the clock can produce.
    #[derive(Debug, Clone)]
    enum Input {
        SignIn,
        SignOut,
        Choose(u8),
        Offer(u8),
        Answer(u8),
        Withdraw(u8),
        Miss(u8),
        Dial(u8),
        HangUp(u8, u8),
        Tick(u8),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            Just(Input::SignIn),
            Just(Input::SignOut),
            (0u8..4).prop_map(Input::Choose),
            (0u8..3).prop_map(Input::Offer),
            (0u8..3).prop_map(Input::Answer),
            (0u8..3).prop_map(Input::Withdraw),
            (0u8..3).prop_map(Input::Miss),
            (0u8..3).prop_map(Input::Dial),
            (0u8..3, 0u8..3).prop_map(|(c, w)| Input::HangUp(c, w)),
            (1u8..120).prop_map(Input::Tick),
        ]
    }

    proptest! {
        /// Whatever happens: the agent has at most one call, only a ready
        /// agent takes an offer, the status log is a gapless sequence of
        /// periods, and time in status adds up to the time elapsed.
        #[test]
        fn status_log_is_gapless_and_one_call_at_most(inputs in proptest::collection::vec(input(), 1..80)) {
            let mut a = Agent::new("p".into(), AgentPolicy::default(), Timestamp(0));
            let mut now = Timestamp(0);
            let mut log: Vec<StatusPeriod> = Vec::new();
            for i in inputs {
                now = now.after(Duration::from_millis(500));
                let before = a.status().clone();
                let r = match i {
                    Input::SignIn => a.sign_in(Device::Sip { account: "p".into() }, Status::Ready, now).inspect(|_| {
                        a.set_device_online(true);
                    }),
                    Input::SignOut => a.sign_out(Actor::Agent, now),
                    Input::Choose(k) => a.choose(
                        [Status::Ready, Status::Busy, Status::Break { reason: "x".into() }, Status::Offline][k as usize].clone(),
                        Actor::Agent,
                        now,
                    ),
                    Input::Offer(c) => a.offer(CallId(c.into()), now),
                    Input::Answer(c) => a.answered(CallId(c.into()), now),
                    Input::Withdraw(c) => a.offer_withdrawn(CallId(c.into()), now),
                    Input::Miss(c) => a.missed(CallId(c.into()), now),
                    Input::Dial(c) => a.dialed(CallId(c.into()), now),
                    Input::HangUp(c, w) => a.hung_up(CallId(c.into()), Duration::from_secs(u64::from(w) * 10), now),
                    Input::Tick(s) => {
                        now = now.after(Duration::from_secs(s.into()));
                        a.handle_timeout(now);
                        Ok(())
                    }
                };
                if let Input::Offer(_) = i {
                    prop_assert_eq!(r.is_ok(), before == Status::Ready);
                }
                if r.is_err() {
                    prop_assert_eq!(a.status(), &before, "a refused input changed the status");
                }
                while let Some(e) = a.poll_event() {
                    let AgentEvent::Changed { period, to, .. } = e else {
                        continue;
                    };
                    if let Some(last) = log.last() {
                        prop_assert_eq!(last.end, period.start);
                    }
                    prop_assert!(period.start < period.end, "an empty period: {:?}", period);
                    prop_assert_ne!(&period.status, &to);
                    log.push(period);
                }
                if let Some(call) = a.status().call() {
                    let one_call = [Status::Ringing { call }, Status::Talking { call }, Status::AfterCallWork { call }]
                        .contains(a.status());
                    prop_assert!(one_call);
                }
            }
            let total: Duration = StatusKind::ALL.iter().map(|k| a.time_in(*k, now)).sum();
            // Changes within one millisecond move the agent's clock a
            // millisecond ahead each.
            let end = Timestamp(now.0.max(a.since().0));
            prop_assert_eq!(total, end.since(Timestamp(0)));
        }
    }

    #[test]
    fn an_agent_moved_while_ringing_rings_at_its_new_home() {
        let call = CallId(9);
        let mut a = ready_agent();
        a.resume_ringing(call, t(20)).unwrap();
        assert_eq!(a.status(), &Status::Ringing { call });
        // Told twice (a second move): nothing changes.
        a.resume_ringing(call, t(21)).unwrap();
        assert_eq!(
            a.offer(CallId(10), t(22)),
            Err(AgentError::NotReady(StatusKind::Ringing))
        );
        assert_eq!(a.resume_ringing(CallId(10), t(22)), Err(AgentError::OnCall));
        a.answered(call, t(25)).unwrap();
        assert_eq!(a.status(), &Status::Talking { call });
        // Restored to a break first (the status chosen while ringing), the
        // ring ends without an answer: back to the break.
        let mut b = ready_agent();
        let lunch = Status::Break {
            reason: "lunch".into(),
        };
        b.restore(lunch.clone(), t(20)).unwrap();
        b.resume_ringing(call, t(21)).unwrap();
        b.offer_withdrawn(call, t(30)).unwrap();
        assert_eq!(b.status(), &lunch);
        let mut off = Agent::new("1002".into(), AgentPolicy::default(), t(0));
        assert_eq!(off.resume_ringing(call, t(1)), Err(AgentError::SignedOut));
    }

    #[test]
    fn a_status_chosen_for_after_the_call_moves_with_the_agent() {
        let call = CallId(3);
        let lunch = Status::Break {
            reason: "lunch".into(),
        };
        let mut old = ready_agent();
        old.offer(call, t(20)).unwrap();
        old.answered(call, t(22)).unwrap();
        drain(&mut old);
        old.choose(lunch.clone(), Actor::Agent, t(30)).unwrap();
        assert_eq!(old.status(), &Status::Talking { call });
        assert_eq!(old.handover(), lunch);
        // Told, so that a new home knows it should this one die.
        assert_eq!(
            drain(&mut old),
            vec![AgentEvent::Planned {
                agent: AgentId::from("1001"),
                next: lunch.clone()
            }]
        );
        // The new home: resumed on the call, then told what was chosen.
        let mut new = ready_agent();
        new.resume_call(call, t(31)).unwrap();
        new.restore(old.handover(), t(31)).unwrap();
        assert_eq!(new.status(), &Status::Talking { call });
        new.hung_up(call, Duration::ZERO, t(40)).unwrap();
        assert_eq!(new.status(), &lunch);
        // Told in the other order, the same.
        let mut other = ready_agent();
        other.restore(lunch.clone(), t(31)).unwrap();
        other.resume_call(call, t(31)).unwrap();
        other.hung_up(call, Duration::ZERO, t(40)).unwrap();
        assert_eq!(other.status(), &lunch);
        // Nothing chosen: the status itself.
        assert_eq!(ready_agent().handover(), Status::Ready);
    }

    #[test]
    fn a_moved_agent_takes_over_the_status_it_had() {
        let mut a = Agent::new(AgentId::from("1001"), AgentPolicy::default(), Timestamp(0));
        let dev = Device::Sip {
            account: "1001".into(),
        };
        a.sign_in(dev, Status::Ready, Timestamp(1)).unwrap();
        let lunch = Status::Break {
            reason: "lunch".into(),
        };
        a.restore(lunch.clone(), Timestamp(2)).unwrap();
        assert_eq!(a.status(), &lunch);
        let mut reasons = Vec::new();
        while let Some(e) = a.poll_event() {
            if let AgentEvent::Changed { reason, .. } = e {
                reasons.push(reason);
            }
        }
        assert_eq!(reasons.last(), Some(&ChangeReason::Resumed));
        // Ready, and what calls drive, are not taken over.
        a.restore(Status::Ready, Timestamp(3)).unwrap();
        assert_eq!(a.status(), &lunch);
        a.restore(Status::Offline, Timestamp(4)).unwrap();
        assert_eq!(a.status(), &Status::Offline);
        assert_eq!(
            a.restore(Status::Busy, Timestamp(5)),
            Err(AgentError::SignedOut)
        );
    }
}
