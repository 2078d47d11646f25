//! The node's Prometheus metrics, in the default registry (served at
//! `/metrics` by the HTTP API). Names follow Prometheus conventions:
//! `switchboard_…_total` for counters, `_seconds` for durations.

use prometheus::{
    register_gauge_vec, register_histogram, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Encoder, GaugeVec,
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};
use std::sync::OnceLock;

/// Every metric of the node.
pub struct Metrics {
    pub sip_requests: IntCounterVec,
    pub sip_responses: IntCounterVec,
    pub calls_active: IntGauge,
    pub legs_active: IntGauge,
    pub media_timeouts: IntCounter,
    pub calls: IntCounterVec,
    pub ring_delay: Histogram,
    pub sip_queue_wait: Histogram,
    pub sip_core_busy: Histogram,
    pub sip_overload_rejected: IntCounter,
    pub agents: IntGaugeVec,
    pub queue_waiting: IntGaugeVec,
    pub queue_oldest: IntGaugeVec,
    pub rtp_received: IntCounterVec,
    pub rtp_lost: IntCounterVec,
    pub rtp_jitter: Histogram,
    pub store_write: Histogram,
    pub store_errors: IntCounterVec,
    pub store_ops: HistogramVec,
    pub store_op_errors: IntCounterVec,
    pub actors: IntGaugeVec,
    pub cluster_members: IntGaugeVec,
    pub cluster_heartbeat_rtt: GaugeVec,
    pub cluster_decode_errors: IntCounter,
    pub cluster_placement_moves: IntCounter,
    pub cluster_lease_losses: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Registering a fixed, well-formed metric cannot fail but by a
/// programming error (a duplicate name): that is a panic at start, caught
/// by every test that starts a node.
#[allow(clippy::expect_used)]
fn build() -> Metrics {
    Metrics {
        sip_requests: register_int_counter_vec!(
            "switchboard_sip_requests_total",
            "SIP requests received, by method",
            &["method"]
        )
        .expect("metric"),
        sip_responses: register_int_counter_vec!(
            "switchboard_sip_responses_total",
            "SIP responses sent, by class (1xx..6xx)",
            &["class"]
        )
        .expect("metric"),
        calls_active: register_int_gauge!(
            "switchboard_calls_active",
            "Hotline calls in progress on this node"
        )
        .expect("metric"),
        legs_active: register_int_gauge!(
            "switchboard_legs_active",
            "RTP legs (customers, agents, outside parties) in progress"
        )
        .expect("metric"),
        media_timeouts: register_int_counter!(
            "switchboard_media_timeouts_total",
            "Legs ended because their phone sent no media for the media timeout"
        )
        .expect("metric"),
        calls: register_int_counter_vec!(
            "switchboard_calls_total",
            "Finished hotline calls, by hang-up reason",
            &["reason"]
        )
        .expect("metric"),
        ring_delay: register_histogram!(
            "switchboard_ring_delay_seconds",
            "From a hotline call's INVITE read from the socket to the first INVITE sent to an agent",
            vec![
                0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
            ]
        )
        .expect("metric"),
        sip_core_busy: register_histogram!(
            "switchboard_sip_core_busy_seconds",
            "How long the SIP core took over one message from the network, with what it sent for it",
            vec![
                0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1
            ]
        )
        .expect("metric"),
        sip_queue_wait: register_histogram!(
            "switchboard_sip_queue_wait_seconds",
            "How long a SIP message read from the network waited for the SIP core",
            vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                10.0
            ]
        )
        .expect("metric"),
        sip_overload_rejected: register_int_counter!(
            "switchboard_sip_overload_rejected_total",
            "New calls answered 503 because the SIP core was behind"
        )
        .expect("metric"),
        agents: register_int_gauge_vec!(
            "switchboard_agents",
            "Agents by status",
            &["tenant", "status"]
        )
        .expect("metric"),
        queue_waiting: register_int_gauge_vec!(
            "switchboard_queue_waiting",
            "Calls waiting in a skill group's queue",
            &["tenant", "group"]
        )
        .expect("metric"),
        queue_oldest: register_int_gauge_vec!(
            "switchboard_queue_oldest_wait_seconds_at",
            "Unix time at which the call waiting longest entered the queue (0: none)",
            &["tenant", "group"]
        )
        .expect("metric"),
        rtp_received: register_int_counter_vec!(
            "switchboard_rtp_packets_received_total",
            "RTP packets received on ended legs",
            &["leg"]
        )
        .expect("metric"),
        rtp_lost: register_int_counter_vec!(
            "switchboard_rtp_packets_lost_total",
            "RTP packets lost (RFC 3550 A.3) on ended legs",
            &["leg"]
        )
        .expect("metric"),
        rtp_jitter: register_histogram!(
            "switchboard_rtp_jitter_seconds",
            "Interarrival jitter (RFC 3550 A.8) of ended legs",
            vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32]
        )
        .expect("metric"),
        store_write: register_histogram!(
            "switchboard_store_write_seconds",
            "Latency of the records writer's store writes",
            vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
        )
        .expect("metric"),
        store_errors: register_int_counter_vec!(
            "switchboard_store_write_errors_total",
            "Store writes that failed (and are retried), by kind of record",
            &["record"]
        )
        .expect("metric"),
        store_ops: register_histogram_vec!(
            "switchboard_store_op_seconds",
            "Latency of every store operation of this node, by operation",
            &["op"],
            vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
        )
        .expect("metric"),
        store_op_errors: register_int_counter_vec!(
            "switchboard_store_op_errors_total",
            "Store operations that failed, by operation",
            &["op"]
        )
        .expect("metric"),
        actors: register_int_gauge_vec!(
            "switchboard_actors",
            "Actors on this node, by kind (agents: those hosted here, awake or resting)",
            &["kind"]
        )
        .expect("metric"),
        cluster_members: register_int_gauge_vec!(
            "switchboard_cluster_members",
            "Cluster members as this node sees them (itself included), by health",
            &["health"]
        )
        .expect("metric"),
        cluster_heartbeat_rtt: register_gauge_vec!(
            "switchboard_cluster_heartbeat_rtt_seconds",
            "The last heartbeat round trip to each member",
            &["peer"]
        )
        .expect("metric"),
        cluster_decode_errors: register_int_counter!(
            "switchboard_cluster_decode_errors_total",
            "Messages from other nodes that could not be decoded (dropped)"
        )
        .expect("metric"),
        cluster_placement_moves: register_int_counter!(
            "switchboard_cluster_placement_moves_total",
            "Agents and skill groups whose home node changed with the members"
        )
        .expect("metric"),
        cluster_lease_losses: register_int_counter!(
            "switchboard_cluster_lease_losses_total",
            "Agents and skill groups this node stopped running because it lost their lease"
        )
        .expect("metric"),
    }
}

/// The node's metrics (registered on first use).
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        // The actors' own counter, exported at 0 from the start.
        let recoveries = switchboard_actors::shell::recoveries();
        for kind in ["agent", "skill_group"] {
            recoveries.with_label_values(&[kind]);
        }
        for kind in ["agent", "proxy"] {
            switchboard_actors::agent_ref::resting().with_label_values(&[kind]);
        }
        build()
    })
}

/// Every registered metric in the text exposition format.
pub fn render() -> String {
    let families = prometheus::gather();
    let mut out = Vec::new();
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
