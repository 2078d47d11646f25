//! The 24-hour report (话务统计): a day's hourly statistics of the tenant,
//! of skill groups or of agents, summed over nodes, with the answer rate
//! (接通率: answered ÷ offered) and the service level (服务水平: answered
//! within the tenant's service-level wait ÷ offered).

use crate::auth::Caller;
use crate::common::{day_or_today, format_date};
use crate::config::tenant_record;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::mirror::{Role, ScopeKind};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchboard_storage::model::{AgentId, Counters, HourlyStats, StatsScope};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const REPORTS: &[Role] = &[Role::TenantAdmin, Role::Supervisor];

/// One hour (or the day's total) of one scope.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct HourRow {
    /// 0..=23; absent in a total.
    pub hour: Option<u8>,
    pub calls: u64,
    pub offered: u64,
    pub answered: u64,
    pub abandoned_in_queue: u64,
    pub abandoned_ringing: u64,
    pub overflowed: u64,
    pub answered_in_service_level: u64,
    pub outbound: u64,
    pub outbound_answered: u64,
    pub talk_ms: u64,
    pub ring_ms: u64,
    pub queue_ms: u64,
    pub wrap_up_ms: u64,
    /// answered ÷ offered; absent with nothing offered.
    pub answer_rate: Option<f64>,
    /// answered within the service-level wait ÷ offered.
    pub service_level: Option<f64>,
    /// outbound answered ÷ outbound.
    pub outbound_answer_rate: Option<f64>,
    /// talk time ÷ answered.
    pub average_talk_ms: Option<u64>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

pub(crate) fn row(hour: Option<u8>, c: &Counters) -> HourRow {
    HourRow {
        hour,
        calls: c.calls,
        offered: c.offered,
        answered: c.answered,
        abandoned_in_queue: c.abandoned_in_queue,
        abandoned_ringing: c.abandoned_ringing,
        overflowed: c.overflowed,
        answered_in_service_level: c.answered_in_service_level,
        outbound: c.outbound,
        outbound_answered: c.outbound_answered,
        talk_ms: c.talk_ms,
        ring_ms: c.ring_ms,
        queue_ms: c.queue_ms,
        wrap_up_ms: c.wrap_up_ms,
        answer_rate: ratio(c.answered, c.offered),
        service_level: ratio(c.answered_in_service_level, c.offered),
        outbound_answer_rate: ratio(c.outbound_answered, c.outbound),
        average_talk_ms: (c.answered > 0).then(|| c.talk_ms / c.answered),
    }
}

/// The 24 hours of one scope.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Series {
    pub scope: ScopeKind,
    /// The group's or agent's id; absent for the tenant.
    pub id: Option<String>,
    /// Hours 0 to 23, every one present.
    pub hours: Vec<HourRow>,
    pub total: HourRow,
}

/// A day's hourly report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HourlyReport {
    /// `YYYY-MM-DD`, the tenant's local day.
    pub day: String,
    /// Seconds within which an answer counts toward the service level.
    pub service_level_secs: u64,
    pub series: Vec<Series>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// `YYYY-MM-DD` (default today, in the tenant's zone).
    day: Option<String>,
    /// `tenant` (default), `group` or `agent`.
    scope: Option<ScopeKind>,
    /// One group or agent; absent: every one with statistics that day.
    id: Option<String>,
}

pub(crate) fn series(scope: &StatsScope, rows: &[HourlyStats]) -> Series {
    let mut total = Counters::default();
    let hours = (0..24u8)
        .map(|h| {
            let c = rows
                .iter()
                .find(|r| r.hour == h && r.scope == *scope)
                .map(|r| r.counters)
                .unwrap_or_default();
            total.add(&c);
            row(Some(h), &c)
        })
        .collect();
    Series {
        scope: scope.kind().into(),
        id: match scope {
            StatsScope::Tenant => None,
            s => Some(s.id().to_owned()),
        },
        hours,
        total: row(None, &total),
    }
}

/// A day's statistics by hour.
#[utoipa::path(get, path = "/reports/hourly", tag = "reports", params(ReportQuery),
    responses((status = 200, body = HourlyReport), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn hourly(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<HourlyReport>> {
    caller.require(REPORTS, "reading reports")?;
    let tenant = tenant_record(&state, &caller.tenant).await?;
    let day = day_or_today("day", q.day.as_deref(), tenant.utc_offset_minutes)?;
    let kind = q.scope.unwrap_or(ScopeKind::Tenant);
    let scopes_rows: Vec<(StatsScope, Vec<HourlyStats>)> = match (kind, q.id) {
        (ScopeKind::Tenant, _) => {
            let rows = state
                .store
                .hourly_stats(&caller.tenant, day, &StatsScope::Tenant)
                .await?;
            vec![(StatsScope::Tenant, rows)]
        }
        (k, Some(id)) => {
            let scope = match k {
                ScopeKind::Group => StatsScope::Group(id),
                _ => StatsScope::Agent(AgentId(id)),
            };
            let rows = state
                .store
                .hourly_stats(&caller.tenant, day, &scope)
                .await?;
            vec![(scope, rows)]
        }
        (k, None) => {
            let rows = state
                .store
                .hourly_stats_of_kind(&caller.tenant, day, k.into())
                .await?;
            let mut by: BTreeMap<StatsScope, Vec<HourlyStats>> = BTreeMap::new();
            for r in rows {
                by.entry(r.scope.clone()).or_default().push(r);
            }
            by.into_iter().collect()
        }
    };
    Ok(Json(HourlyReport {
        day: format_date(day.date()),
        service_level_secs: tenant.service_level.as_secs(),
        series: scopes_rows.iter().map(|(s, r)| series(s, r)).collect(),
    }))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(hourly))
}
