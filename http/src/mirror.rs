//! The store's small enums as the API shows them: the same snake_case
//! names, with an OpenAPI schema (the store's types carry none).

macro_rules! mirror_enum {
    (@def $(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
    };
    ($(#[$m:meta])* $name:ident => $md:ident :: $t:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        mirror_enum!(@def $(#[$m])* $name { $($(#[$vm])* $v),+ });
        impl From<$name> for $md::$t {
            fn from(x: $name) -> $md::$t {
                match x { $($name::$v => $md::$t::$v),+ }
            }
        }
        impl From<$md::$t> for $name {
            fn from(x: $md::$t) -> $name {
                match x { $($md::$t::$v => $name::$v),+ }
            }
        }
    };
    // The store's enum is non-exhaustive: a variant this API does not know
    // yet has no mirror.
    ($(#[$m:meta])* $name:ident => $md:ident :: $t:ident, non_exhaustive { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        mirror_enum!(@def $(#[$m])* $name { $($(#[$vm])* $v),+ });
        impl From<$name> for $md::$t {
            fn from(x: $name) -> $md::$t {
                match x { $($name::$v => $md::$t::$v),+ }
            }
        }
        impl $name {
            pub fn from_model(x: $md::$t) -> Option<$name> {
                match x {
                    $($md::$t::$v => Some($name::$v),)+
                    _ => None,
                }
            }
        }
    };
}

use switchboard_storage::model as m;

mirror_enum!(
    /// What a user may do.
    Role => m::Role, non_exhaustive {
        /// All configuration and everything else of the tenant.
        TenantAdmin,
        /// Reads configuration, reports, call records, recordings, CRM.
        Supervisor,
        /// 质检员: call records and recordings.
        QaInspector,
        /// CRM for its calls, its own contact plans and call records.
        Agent,
        /// Approves or rejects prompts (审核).
        PromptReviewer,
        TelesalesSuperAdmin,
        TelesalesAdmin,
        TelesalesMember,
    }
);

mirror_enum!(
    /// How a skill group picks the agent for the next call (呼叫策略).
    Strategy => m::Strategy {
        RingAll, LongestIdle, RoundRobin, FewestCalls, LeastTalkTime, Random, SkillTiers,
    }
);

mirror_enum!(
    /// What happens to a call when no member is signed in.
    NoAgentRule => m::NoAgentRule { Queue, Overflow }
);

mirror_enum!(TrunkTransport => m::TrunkTransport { Udp, Tcp });

mirror_enum!(
    /// Which way a call went.
    Direction => m::Direction { Inbound, Outbound, Internal }
);

mirror_enum!(
    /// Who ended the call (挂机方).
    HangupSide => m::HangupSide { Customer, Agent, System }
);

mirror_enum!(
    /// Why the call ended (挂机原因).
    HangupReason => m::HangupReason {
        Normal, LeftInIvr, AbandonedInQueue, AbandonedRinging, IvrHangUp, Overflow, Voicemail,
        Transferred, Failed, NodeLost, CallbackFailed, TransferFailed, MediaTimeout,
    }
);

mirror_enum!(RingOutcome => m::RingOutcome { Answered, NoAnswer, Failed, Cancelled });

mirror_enum!(LegKind => m::LegKind { Customer, Agent, ThirdParty });

mirror_enum!(
    /// How an outbound call's dialing ended (外呼结果).
    DialOutcome => m::DialOutcome {
        Answered, Busy, NoAnswer, Rejected, Unreachable, Cancelled, AgentNoAnswer
    }
);

mirror_enum!(OverflowReason => m::OverflowReason { MaxQueueTime, NoAgent });

mirror_enum!(
    /// Where a prompt is in its review (审核).
    ReviewStatus => m::ReviewStatus { Pending, Approved, Rejected }
);

mirror_enum!(TicketStatus => m::TicketStatus { Open, InProgress, Resolved, Closed });

mirror_enum!(ContactPlanStatus => m::ContactPlanStatus { Pending, Done, Cancelled });

mirror_enum!(TimelineKind => m::TimelineKind { Call, Ticket, Summary, ContactPlan });

mirror_enum!(ScopeKind => m::ScopeKind { Tenant, Group, Agent });

impl Role {
    /// The role's name as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::TenantAdmin => "tenant_admin",
            Role::Supervisor => "supervisor",
            Role::QaInspector => "qa_inspector",
            Role::Agent => "agent",
            Role::PromptReviewer => "prompt_reviewer",
            Role::TelesalesSuperAdmin => "telesales_super_admin",
            Role::TelesalesAdmin => "telesales_admin",
            Role::TelesalesMember => "telesales_member",
        }
    }
}
