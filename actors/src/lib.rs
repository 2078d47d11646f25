//! Switchboard's call center: the decisions, as sans-IO state machines.
//!
//! - [`agent::Agent`]: an agent's status (坐席状态): offline, ready, busy,
//!   break with a reason, tenant-defined custom statuses, ringing, talking,
//!   after-call work; missed-call handling; time in each status.
//! - [`ivr`]: which flow runs today (regular, special dates, closed hours)
//!   and the session that walks a flow: prompts, menus, digits, survey,
//!   transfers, voicemail.
//! - [`call::InboundCall`]: one inbound call through IVR, queue, ringing
//!   agents, the conversation and the survey, ending in its call summary.
//! - [`location`]: number location (归属地) of Chinese numbers, from
//!   libphonenumber's data shipped in `data/`.
//! - [`acd::SkillGroup`]: a skill group's waiting queue (priority, then
//!   enqueue time) and the distribution strategy that picks agents; max
//!   queue time and overflow; the no-agent rule.
//!
//! Every machine here follows one contract, the one the actor shells rely
//! on: inputs are method calls that take `now` (a [`Timestamp`]) and never
//! read a clock; outputs are drained with `poll_event()`; the next deadline
//! is `poll_timeout()`, and `handle_timeout(now)` runs what is due. Random
//! choices take a seeded generator given at construction. An actor owns
//! one machine, feeds it each message, drains every output, and re-arms a
//! single timer.
//!
//! ```
//! use switchboard_actors::agent::{Agent, AgentPolicy, Device, Status};
//! use switchboard_actors::{AgentId, CallId, Timestamp};
//!
//! let mut a = Agent::new(AgentId::from("1001"), AgentPolicy::default(), Timestamp(0));
//! a.sign_in(Device::Sip { account: "1001".into() }, Status::Ready, Timestamp(1_000)).unwrap();
//! // Offered calls only while the phone is registered.
//! a.set_device_online(true);
//! a.offer(CallId(7), Timestamp(2_000)).unwrap();
//! a.answered(CallId(7), Timestamp(5_000)).unwrap();
//! a.hung_up(CallId(7), std::time::Duration::from_secs(10), Timestamp(65_000)).unwrap();
//! assert!(matches!(a.status(), Status::AfterCallWork { .. }));
//! // Wrap-up ends by itself: the machine asks to be woken at its end.
//! let at = a.poll_timeout().unwrap();
//! a.handle_timeout(at);
//! assert_eq!(a.status(), &Status::Ready);
//! ```

pub mod acd;
pub mod agent;
pub mod agent_ref;
pub mod call;
pub mod internal;
pub mod ivr;
pub mod location;
pub mod outbound;
pub mod remote;
pub mod shell;

/// Identifiers and wall-clock time, shared with the store's records.
pub use switchboard_storage::model::{AgentId, CallId, TenantId, Timestamp};
