//! The SQL of the embedded store. Writers run inside the writer thread's
//! transaction; readers on a read connection.

use super::sql_error;
use crate::model::lease::{grant, still_held, LeaseRow};
use crate::model::{
    AgentId, CallId, CallRecord, ConfigDoc, ConfigKind, ContactPlan, Counters, Customer, Day,
    FlowVersion, Lease, NodeId, StatsPartial, StatsScope, StatusChange, TenantId, TimelineEvent,
    TimelineKind, Timestamp,
};
use crate::store::{CallFilter, Cursor, Expect, Page, PageRequest, StatsFilter, TimeRange};
use crate::{Result, StoreError};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn decode<T: DeserializeOwned>(what: &str, body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| StoreError::decode(what, e))
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::encode(what, e))
}

// --- configuration --------------------------------------------------------

fn doc_of(
    tenant: &TenantId,
    kind: ConfigKind,
    id: String,
    revision: i64,
    body: String,
) -> ConfigDoc {
    ConfigDoc {
        tenant: tenant.clone(),
        kind,
        id,
        revision: u64_of(revision),
        body,
    }
}

pub(super) fn get_config(
    c: &Connection,
    tenant: &TenantId,
    kind: ConfigKind,
    id: &str,
) -> Result<Option<ConfigDoc>> {
    c.prepare_cached(
        "SELECT revision, body FROM config WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![tenant.0, kind.as_str(), id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
    })
    .map_err(sql_error)
    .map(|o| o.map(|(rev, body)| doc_of(tenant, kind, id.to_owned(), rev, body)))
}

pub(super) fn list_config(
    c: &Connection,
    tenant: &TenantId,
    kind: ConfigKind,
) -> Result<Vec<ConfigDoc>> {
    let mut s = c
        .prepare_cached(
            "SELECT id, revision, body FROM config WHERE tenant = ?1 AND kind = ?2 ORDER BY id",
        )
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.0, kind.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql_error)?;
    rows.map(|r| {
        r.map_err(sql_error)
            .map(|(id, rev, body)| doc_of(tenant, kind, id, rev, body))
    })
    .collect()
}

fn current_revision(
    c: &Connection,
    tenant: &TenantId,
    kind: ConfigKind,
    id: &str,
) -> Result<Option<u64>> {
    c.prepare_cached("SELECT revision FROM config WHERE tenant = ?1 AND kind = ?2 AND id = ?3")
        .and_then(|mut s| {
            s.query_row(params![tenant.0, kind.as_str(), id], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map_err(sql_error)
        .map(|o| o.map(u64_of))
}

fn check_expect(expect: Expect, current: Option<u64>, what: &str) -> Result<()> {
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(r)) => Err(StoreError::conflict(format!(
            "{what} exists already (revision {r})"
        ))),
        (Expect::Revision(want), Some(have)) if want == have => Ok(()),
        (Expect::Revision(want), have) => Err(StoreError::conflict(format!(
            "{what}: expected revision {want}, found {}",
            have.map_or("none".to_owned(), |h| h.to_string())
        ))),
    }
}

pub(super) fn put_config(
    c: &Connection,
    tenant: &TenantId,
    kind: ConfigKind,
    id: &str,
    body: &str,
    expect: Expect,
) -> Result<u64> {
    let what = format!("{kind} {id:?} of tenant {tenant}");
    let current = current_revision(c, tenant, kind, id)?;
    check_expect(expect, current, &what)?;
    if kind.is_global() {
        if let Some(owner) = find_global(c, kind, id)? {
            if &owner != tenant {
                return Err(StoreError::conflict(format!(
                    "{kind} {id:?} belongs to another tenant"
                )));
            }
        }
        c.prepare_cached("INSERT OR IGNORE INTO global_ids (kind, id, tenant) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![kind.as_str(), id, tenant.0]))
            .map_err(sql_error)?;
    }
    let revision = current.unwrap_or(0) + 1;
    c.prepare_cached(
        "INSERT OR REPLACE INTO config (tenant, kind, id, revision, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![tenant.0, kind.as_str(), id, i64_of(revision), body]))
    .map_err(sql_error)?;
    Ok(revision)
}

pub(super) fn delete_config(
    c: &Connection,
    tenant: &TenantId,
    kind: ConfigKind,
    id: &str,
    expect: Expect,
) -> Result<()> {
    let what = format!("{kind} {id:?} of tenant {tenant}");
    let current = current_revision(c, tenant, kind, id)?;
    if let Expect::Absent = expect {
        return Err(StoreError::invalid(
            "a delete cannot expect the record to be absent",
        ));
    }
    check_expect(expect, current, &what)?;
    c.execute(
        "DELETE FROM config WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
        params![tenant.0, kind.as_str(), id],
    )
    .map_err(sql_error)?;
    if kind.is_global() {
        c.execute(
            "DELETE FROM global_ids WHERE kind = ?1 AND id = ?2 AND tenant = ?3",
            params![kind.as_str(), id, tenant.0],
        )
        .map_err(sql_error)?;
    }
    Ok(())
}

pub(super) fn list_tenants(c: &Connection) -> Result<Vec<TenantId>> {
    let mut s = c
        .prepare_cached("SELECT tenant FROM config WHERE kind = 'tenant' ORDER BY tenant")
        .map_err(sql_error)?;
    let rows = s
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_error)?;
    rows.map(|r| r.map(TenantId).map_err(sql_error)).collect()
}

pub(super) fn find_global(c: &Connection, kind: ConfigKind, id: &str) -> Result<Option<TenantId>> {
    c.prepare_cached("SELECT tenant FROM global_ids WHERE kind = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row(params![kind.as_str(), id], |r| r.get::<_, String>(0))
                .optional()
        })
        .map_err(sql_error)
        .map(|o| o.map(TenantId))
}

// --- flow versions ---------------------------------------------------------

pub(super) fn add_flow_version(c: &Connection, v: &mut FlowVersion) -> Result<u32> {
    if v.version == 0 {
        let last: i64 = c
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM flow_versions WHERE tenant = ?1 AND flow = ?2",
                params![v.tenant.0, v.flow],
                |r| r.get(0),
            )
            .map_err(sql_error)?;
        v.version = u32::try_from(last + 1)
            .map_err(|_| StoreError::invalid(format!("flow {:?} has too many versions", v.flow)))?;
    }
    let body = encode("flow version", v)?;
    let added = c
        .execute(
            "INSERT OR IGNORE INTO flow_versions (tenant, flow, version, body) VALUES (?1, ?2, ?3, ?4)",
            params![v.tenant.0, v.flow, v.version, body],
        )
        .map_err(sql_error)?;
    if added == 0 {
        return Err(StoreError::conflict(format!(
            "flow {:?} has a version {} already",
            v.flow, v.version
        )));
    }
    Ok(v.version)
}

pub(super) fn flow_version(
    c: &Connection,
    tenant: &TenantId,
    flow: &str,
    version: u32,
) -> Result<Option<FlowVersion>> {
    let body: Option<String> = c
        .prepare_cached(
            "SELECT body FROM flow_versions WHERE tenant = ?1 AND flow = ?2 AND version = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![tenant.0, flow, version], |r| r.get(0))
                .optional()
        })
        .map_err(sql_error)?;
    body.map(|b| decode("flow version", &b)).transpose()
}

pub(super) fn flow_versions(
    c: &Connection,
    tenant: &TenantId,
    flow: &str,
) -> Result<Vec<FlowVersion>> {
    let mut s = c
        .prepare_cached(
            "SELECT body FROM flow_versions WHERE tenant = ?1 AND flow = ?2 ORDER BY version",
        )
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.0, flow], |r| r.get::<_, String>(0))
        .map_err(sql_error)?;
    rows.map(|r| {
        r.map_err(sql_error)
            .and_then(|b| decode("flow version", &b))
    })
    .collect()
}

// --- call records -------------------------------------------------------------

/// A call record ready for its row (encoded outside the writer thread).
pub(super) struct CallRow {
    tenant: String,
    call: i64,
    day: i32,
    start: i64,
    agent: Option<String>,
    group: Option<String>,
    number: String,
    customer: Option<String>,
    direction: &'static str,
    answered: bool,
    hangup_side: &'static str,
    node: String,
    body: String,
}

/// The column form of a call id: the u64's bits as SQLite's i64.
fn call_col(c: CallId) -> i64 {
    i64::from_ne_bytes(c.0.to_ne_bytes())
}

/// The listings kept as rows of `call_keys` (see the schema's migration 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// By the customer's number.
    Number,
    /// By the customer: the calls in the customer's timeline.
    Customer,
}

impl KeyKind {
    fn col(self) -> &'static str {
        match self {
            KeyKind::Number => "n",
            KeyKind::Customer => "c",
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// The hour (since 1970-01-01 UTC) of a start time: the part of
/// `call_keys` its key rows go to. Starts are never negative, so this is
/// also what SQLite's `start / 3600000` gives.
fn hour_of(start: i64) -> i64 {
    start.div_euclid(HOUR_MS)
}

/// The day of `call_key_days` an hour belongs to.
fn day_of_hour(hour: i64) -> i64 {
    hour.div_euclid(24)
}

impl CallRow {
    fn keys(&self) -> impl Iterator<Item = (KeyKind, &str)> {
        std::iter::once((KeyKind::Number, self.number.as_str()))
            .chain(self.customer.as_deref().map(|c| (KeyKind::Customer, c)))
    }
}

/// Which key rows to read: one key's, with `from <= start <= to`, and
/// below a position when paging.
struct KeyScan<'a> {
    tenant: &'a str,
    kind: KeyKind,
    key: &'a str,
    from: i64,
    to: i64,
    /// Only rows with (start, call) below this.
    below: Option<(i64, i64)>,
    /// Among equal starts, calls in ascending order (the timeline's order)
    /// rather than descending (the listings').
    ties_ascending: bool,
}

// No `LIMIT ?`: SQLite plans with a bound limit's value and prepares the
// statement again whenever it changes. The rows are read lazily instead.
const KEY_ROWS: &str = "SELECT start, call FROM call_keys \
    WHERE tenant = ?1 AND kind = ?2 AND hour = ?3 AND key = ?4 AND start BETWEEN ?5 AND ?6 \
    AND (?7 IS NULL OR (start, call) < (?7, ?8)) ORDER BY start DESC, call DESC";
const KEY_ROWS_TIES_ASCENDING: &str = "SELECT start, call FROM call_keys \
    WHERE tenant = ?1 AND kind = ?2 AND hour = ?3 AND key = ?4 AND start BETWEEN ?5 AND ?6 \
    AND (?7 IS NULL OR (start, call) < (?7, ?8)) ORDER BY start DESC, call ASC";

/// The (start, call) of up to `want` key rows, newest first. Visits the
/// key's days from `call_key_days`, newest first, and each day's hours,
/// newest first; hours hold disjoint start ranges, so their rows follow
/// one another in order.
fn key_rows(c: &Connection, q: &KeyScan, want: usize) -> Result<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    if want == 0 || q.from > q.to {
        return Ok(out);
    }
    let (first_hour, last_hour) = (hour_of(q.from), hour_of(q.to));
    let mut days = c
        .prepare_cached(
            "SELECT day FROM call_key_days WHERE tenant = ?1 AND kind = ?2 AND key = ?3 \
             AND day BETWEEN ?4 AND ?5 ORDER BY day DESC",
        )
        .map_err(sql_error)?;
    let mut days = days
        .query(params![
            q.tenant,
            q.kind.col(),
            q.key,
            day_of_hour(first_hour),
            day_of_hour(last_hour)
        ])
        .map_err(sql_error)?;
    let sql = if q.ties_ascending {
        KEY_ROWS_TIES_ASCENDING
    } else {
        KEY_ROWS
    };
    let mut s = c.prepare_cached(sql).map_err(sql_error)?;
    let (below_start, below_call) = q.below.unzip();
    while let Some(day) = days.next().map_err(sql_error)? {
        let day: i64 = day.get(0).map_err(sql_error)?;
        let top = day.saturating_mul(24).saturating_add(23).min(last_hour);
        let bottom = day.saturating_mul(24).max(first_hour);
        for hour in (bottom..=top).rev() {
            let mut rows = s
                .query(params![
                    q.tenant,
                    q.kind.col(),
                    hour,
                    q.key,
                    q.from,
                    q.to,
                    below_start,
                    below_call
                ])
                .map_err(sql_error)?;
            while out.len() < want {
                match rows.next().map_err(sql_error)? {
                    Some(r) => {
                        out.push((r.get(0).map_err(sql_error)?, r.get(1).map_err(sql_error)?))
                    }
                    None => break,
                }
            }
            if out.len() >= want {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

pub(super) fn encode_calls(records: &[CallRecord]) -> Result<Vec<CallRow>> {
    records
        .iter()
        .map(|r| {
            Ok(CallRow {
                tenant: r.tenant.0.clone(),
                call: call_col(r.call),
                day: r.day.0,
                start: r.start.as_i64(),
                agent: r.agent.as_ref().map(|a| a.0.clone()),
                group: r.group.clone(),
                number: r.customer_number.clone(),
                customer: r.customer.clone(),
                direction: r.direction.as_str(),
                answered: r.answered.is_some(),
                hangup_side: r.hangup_side.as_str(),
                node: r.node.0.clone(),
                body: encode("call record", r)?,
            })
        })
        .collect()
}

/// Calls in progress, each replacing what its node wrote of it before.
pub(super) fn put_open_calls(c: &Connection, rows: &[CallRow]) -> Result<()> {
    let mut put = c
        .prepare_cached(
            "INSERT INTO open_calls (tenant, call, node, body) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant, call) DO UPDATE SET node = excluded.node, body = excluded.body",
        )
        .map_err(sql_error)?;
    for r in rows {
        put.execute(params![r.tenant, r.call, r.node, r.body])
            .map_err(sql_error)?;
    }
    Ok(())
}

/// The calls in progress `node` wrote, oldest first.
pub(super) fn open_calls(c: &Connection, node: &str) -> Result<Vec<CallRecord>> {
    let mut q = c
        .prepare_cached("SELECT body FROM open_calls WHERE node = ?1")
        .map_err(sql_error)?;
    let bodies = q
        .query_map(params![node], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(sql_error)?;
    let mut calls = bodies
        .iter()
        .map(|b| decode::<CallRecord>("open call", b))
        .collect::<Result<Vec<_>>>()?;
    calls.sort_by_key(|r| (r.start, r.call));
    Ok(calls)
}

pub(super) fn put_calls(c: &Connection, rows: &[CallRow]) -> Result<()> {
    let mut insert = c
        .prepare_cached(
            "INSERT INTO calls \
             (tenant, call, day, start, agent, grp, number, customer, direction, answered, hangup_side, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (tenant, call) DO NOTHING",
        )
        .map_err(sql_error)?;
    let mut key = c
        .prepare_cached(
            "INSERT OR IGNORE INTO call_keys (tenant, kind, hour, key, start, call) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql_error)?;
    let mut key_day = c
        .prepare_cached(
            "INSERT OR IGNORE INTO call_key_days (tenant, kind, key, day) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql_error)?;
    let mut closed = c
        .prepare_cached("DELETE FROM open_calls WHERE tenant = ?1 AND call = ?2")
        .map_err(sql_error)?;
    for r in rows {
        closed
            .execute(params![r.tenant, r.call])
            .map_err(sql_error)?;
        let added = insert
            .execute(params![
                r.tenant,
                r.call,
                r.day,
                r.start,
                r.agent,
                r.group,
                r.number,
                r.customer,
                r.direction,
                r.answered,
                r.hangup_side,
                r.body
            ])
            .map_err(sql_error)?;
        if added == 0 {
            replace_call(c, r)?;
        }
        let hour = hour_of(r.start);
        for (kind, k) in r.keys() {
            key.execute(params![r.tenant, kind.col(), hour, k, r.start, r.call])
                .map_err(sql_error)?;
            key_day
                .execute(params![r.tenant, kind.col(), k, day_of_hour(hour)])
                .map_err(sql_error)?;
        }
    }
    Ok(())
}

/// A call written again: its old key rows go, its row takes the new
/// values. (A key's day stays listed in `call_key_days`; an empty day
/// costs a listing a few lookups, nothing more.)
fn replace_call(c: &Connection, r: &CallRow) -> Result<()> {
    let old = c
        .prepare_cached("SELECT start, number, customer FROM calls WHERE tenant = ?1 AND call = ?2")
        .and_then(|mut s| {
            s.query_row(params![r.tenant, r.call], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql_error)?;
    if let Some((start, number, customer)) = old {
        let mut delete = c
            .prepare_cached(
                "DELETE FROM call_keys WHERE tenant = ?1 AND kind = ?2 AND hour = ?3 \
                 AND key = ?4 AND start = ?5 AND call = ?6",
            )
            .map_err(sql_error)?;
        let old_keys = [
            (KeyKind::Number, Some(number)),
            (KeyKind::Customer, customer),
        ];
        for (kind, k) in old_keys {
            if let Some(k) = k {
                delete
                    .execute(params![
                        r.tenant,
                        kind.col(),
                        hour_of(start),
                        k,
                        start,
                        r.call
                    ])
                    .map_err(sql_error)?;
            }
        }
    }
    c.prepare_cached(
        "UPDATE calls SET day = ?3, start = ?4, agent = ?5, grp = ?6, number = ?7, customer = ?8, \
         direction = ?9, answered = ?10, hangup_side = ?11, body = ?12 WHERE tenant = ?1 AND call = ?2",
    )
    .and_then(|mut s| {
        s.execute(params![
            r.tenant,
            r.call,
            r.day,
            r.start,
            r.agent,
            r.group,
            r.number,
            r.customer,
            r.direction,
            r.answered,
            r.hangup_side,
            r.body
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

pub(super) fn get_call(
    c: &Connection,
    tenant: &TenantId,
    call: CallId,
) -> Result<Option<CallRecord>> {
    let body: Option<String> = c
        .prepare_cached("SELECT body FROM calls WHERE tenant = ?1 AND call = ?2")
        .and_then(|mut s| {
            s.query_row(params![tenant.0, call_col(call)], |r| r.get(0))
                .optional()
        })
        .map_err(sql_error)?;
    body.map(|b| decode("call record", &b)).transpose()
}

enum CallKey {
    Day(i32, CallFilter),
    Agent(String, TimeRange),
    Number(String, TimeRange),
}

/// One of the three call listings.
pub(super) struct CallQuery {
    tenant: String,
    key: CallKey,
}

impl CallQuery {
    pub(super) fn day(tenant: &TenantId, day: Day, filter: &CallFilter) -> CallQuery {
        CallQuery {
            tenant: tenant.0.clone(),
            key: CallKey::Day(day.0, filter.clone()),
        }
    }

    pub(super) fn agent(tenant: &TenantId, agent: &AgentId, range: TimeRange) -> CallQuery {
        CallQuery {
            tenant: tenant.0.clone(),
            key: CallKey::Agent(agent.0.clone(), range),
        }
    }

    pub(super) fn number(tenant: &TenantId, number: &str, range: TimeRange) -> CallQuery {
        CallQuery {
            tenant: tenant.0.clone(),
            key: CallKey::Number(number.to_owned(), range),
        }
    }
}

/// Cursors of the embedded store: the (start, call) of the last row given,
/// hex-encoded.
fn encode_cursor(start: i64, call: i64) -> Cursor {
    Cursor(hex::encode(format!("e1:{start}:{call}")))
}

fn decode_cursor(c: &Cursor) -> Result<(i64, i64)> {
    let bad = || StoreError::invalid(format!("cursor {:?} is not one of this store's", c.0));
    let raw = hex::decode(&c.0).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("e1"), Some(s), Some(k), None) => {
            Ok((s.parse().map_err(|_| bad())?, k.parse().map_err(|_| bad())?))
        }
        _ => Err(bad()),
    }
}

fn push_range(sql: &mut String, args: &mut Vec<Value>, range: &TimeRange) {
    if let Some(f) = range.from {
        args.push(Value::Integer(f.as_i64()));
        sql.push_str(&format!(" AND start >= ?{}", args.len()));
    }
    if let Some(t) = range.to {
        args.push(Value::Integer(t.as_i64()));
        sql.push_str(&format!(" AND start < ?{}", args.len()));
    }
}

pub(super) fn list_calls(
    c: &Connection,
    q: &CallQuery,
    page: &PageRequest,
) -> Result<Page<CallRecord>> {
    let limit = page.checked_limit()?;
    let mut args = vec![Value::Text(q.tenant.clone())];
    let mut sql = String::from("SELECT start, call, body FROM calls WHERE tenant = ?1");
    match &q.key {
        CallKey::Day(day, f) => {
            args.push(Value::Integer(i64::from(*day)));
            sql.push_str(" AND day = ?2");
            push_range(&mut sql, &mut args, &f.range);
            let mut eq = |col: &str, v: Value| {
                args.push(v);
                sql.push_str(&format!(" AND {col} = ?{}", args.len()));
            };
            if let Some(a) = &f.agent {
                eq("agent", Value::Text(a.0.clone()));
            }
            if let Some(g) = &f.group {
                eq("grp", Value::Text(g.clone()));
            }
            if let Some(d) = f.direction {
                eq("direction", Value::Text(d.as_str().to_owned()));
            }
            if let Some(a) = f.answered {
                eq("answered", Value::Integer(i64::from(a)));
            }
            if let Some(s) = f.hangup_side {
                eq("hangup_side", Value::Text(s.as_str().to_owned()));
            }
        }
        CallKey::Agent(agent, range) => {
            args.push(Value::Text(agent.clone()));
            sql.push_str(" AND agent = ?2");
            push_range(&mut sql, &mut args, range);
        }
        CallKey::Number(number, range) => {
            let scan = KeyScan {
                tenant: &q.tenant,
                kind: KeyKind::Number,
                key: number,
                from: i64::MIN,
                to: i64::MAX,
                below: None,
                ties_ascending: false,
            };
            return list_keyed(c, scan, range, page, limit);
        }
    }
    if let Some(cur) = &page.cursor {
        let (start, call) = decode_cursor(cur)?;
        args.push(Value::Integer(start));
        args.push(Value::Integer(call));
        sql.push_str(&format!(
            " AND (start, call) < (?{}, ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    args.push(Value::Integer(i64::from(limit) + 1));
    sql.push_str(&format!(
        " ORDER BY start DESC, call DESC LIMIT ?{}",
        args.len()
    ));

    let mut s = c.prepare_cached(&sql).map_err(sql_error)?;
    let rows = s
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql_error)?;
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for row in rows {
        let (start, call, body) = row.map_err(sql_error)?;
        if items.len() == limit as usize {
            more = true;
            break;
        }
        items.push(decode::<CallRecord>("call record", &body)?);
        last = Some((start, call));
    }
    let next = match (more, last) {
        (true, Some((s, k))) => Some(encode_cursor(s, k)),
        _ => None,
    };
    Ok(Page { items, next })
}

/// A key row naming a call that is not there: the two are written in one
/// transaction and read in one, so the file is damaged.
fn not_stored(call: i64) -> StoreError {
    StoreError::invalid(format!(
        "a call listing names call {}, which is not stored",
        CallId(u64::from_ne_bytes(call.to_ne_bytes()))
    ))
}

/// A listing served from `call_keys`: the page's (start, call) first,
/// then the records, in one read transaction.
fn list_keyed(
    c: &Connection,
    mut scan: KeyScan,
    range: &TimeRange,
    page: &PageRequest,
    limit: u32,
) -> Result<Page<CallRecord>> {
    if let Some(f) = range.from {
        scan.from = f.as_i64();
    }
    if let Some(t) = range.to {
        scan.to = t.as_i64().saturating_sub(1);
    }
    if let Some(cur) = &page.cursor {
        let below = decode_cursor(cur)?;
        scan.to = scan.to.min(below.0);
        scan.below = Some(below);
    }
    let tx = c.unchecked_transaction().map_err(sql_error)?;
    let keys = key_rows(&tx, &scan, limit as usize + 1)?;
    let more = keys.len() > limit as usize;
    let mut s = tx
        .prepare_cached("SELECT body FROM calls WHERE tenant = ?1 AND call = ?2")
        .map_err(sql_error)?;
    let mut items = Vec::with_capacity(keys.len().min(limit as usize));
    for &(_, call) in keys.iter().take(limit as usize) {
        let body: String = s
            .query_row(params![scan.tenant, call], |r| r.get(0))
            .optional()
            .map_err(sql_error)?
            .ok_or_else(|| not_stored(call))?;
        items.push(decode::<CallRecord>("call record", &body)?);
    }
    drop(s);
    tx.commit().map_err(sql_error)?;
    let next = match (more, keys.get(limit as usize - 1)) {
        (true, Some(&(start, call))) => Some(encode_cursor(start, call)),
        _ => None,
    };
    Ok(Page { items, next })
}

// --- status log ------------------------------------------------------------------

pub(super) struct StatusRow {
    tenant: String,
    agent: String,
    day: i32,
    start: i64,
    body: String,
}

pub(super) fn encode_status(changes: &[StatusChange]) -> Result<Vec<StatusRow>> {
    changes
        .iter()
        .map(|s| {
            Ok(StatusRow {
                tenant: s.tenant.0.clone(),
                agent: s.agent.0.clone(),
                day: s.day.0,
                start: s.period.start.as_i64(),
                body: encode("status change", s)?,
            })
        })
        .collect()
}

pub(super) fn put_status(c: &Connection, rows: &[StatusRow]) -> Result<()> {
    let mut s = c
        .prepare_cached(
            "INSERT OR REPLACE INTO status_log (tenant, agent, day, start, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql_error)?;
    for r in rows {
        s.execute(params![r.tenant, r.agent, r.day, r.start, r.body])
            .map_err(sql_error)?;
    }
    Ok(())
}

pub(super) fn status_log(
    c: &Connection,
    tenant: &TenantId,
    agent: &AgentId,
    day: Day,
) -> Result<Vec<StatusChange>> {
    let mut s = c
        .prepare_cached(
            "SELECT body FROM status_log WHERE tenant = ?1 AND agent = ?2 AND day = ?3 ORDER BY start",
        )
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.0, agent.0, day.0], |r| r.get::<_, String>(0))
        .map_err(sql_error)?;
    rows.map(|r| {
        r.map_err(sql_error)
            .and_then(|b| decode("status change", &b))
    })
    .collect()
}

// --- statistics --------------------------------------------------------------------

pub(super) fn put_stats(c: &Connection, partials: &[StatsPartial]) -> Result<()> {
    let cols = Counters::COLUMNS.join(", ");
    let marks: Vec<String> = (7..7 + Counters::COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect();
    let sql = format!(
        "INSERT OR REPLACE INTO stats (tenant, day, scope_kind, scope_id, hour, node, {cols}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, {})",
        marks.join(", ")
    );
    let mut s = c.prepare_cached(&sql).map_err(sql_error)?;
    for p in partials {
        if p.hour >= 24 {
            return Err(StoreError::invalid(format!(
                "hour {} is not within 0..24",
                p.hour
            )));
        }
        let mut args = vec![
            Value::Text(p.tenant.0.clone()),
            Value::Integer(i64::from(p.day.0)),
            Value::Text(p.scope.kind().as_str().to_owned()),
            Value::Text(p.scope.id().to_owned()),
            Value::Integer(i64::from(p.hour)),
            Value::Text(p.node.0.clone()),
        ];
        args.extend(
            p.counters
                .to_array()
                .iter()
                .map(|v| Value::Integer(i64_of(*v))),
        );
        s.execute(params_from_iter(args)).map_err(sql_error)?;
    }
    Ok(())
}

pub(super) fn stats_partials(
    c: &Connection,
    tenant: &TenantId,
    day: Day,
    filter: &StatsFilter,
) -> Result<Vec<StatsPartial>> {
    let cols = Counters::COLUMNS.join(", ");
    let mut sql = format!(
        "SELECT scope_kind, scope_id, hour, node, {cols} FROM stats WHERE tenant = ?1 AND day = ?2"
    );
    let mut args = vec![
        Value::Text(tenant.0.clone()),
        Value::Integer(i64::from(day.0)),
    ];
    match filter {
        StatsFilter::All => {}
        StatsFilter::Kind(k) => {
            sql.push_str(" AND scope_kind = ?3");
            args.push(Value::Text(k.as_str().to_owned()));
        }
        StatsFilter::Scope(s) => {
            sql.push_str(" AND scope_kind = ?3 AND scope_id = ?4");
            args.push(Value::Text(s.kind().as_str().to_owned()));
            args.push(Value::Text(s.id().to_owned()));
        }
    }
    sql.push_str(" ORDER BY scope_kind, scope_id, hour, node");
    let mut s = c.prepare_cached(&sql).map_err(sql_error)?;
    let rows = s
        .query_map(params_from_iter(args), |r| {
            let mut counters = [0u64; 13];
            for (i, v) in counters.iter_mut().enumerate() {
                *v = u64_of(r.get::<_, i64>(4 + i)?);
            }
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                counters,
            ))
        })
        .map_err(sql_error)?;
    rows.map(|row| {
        let (kind, id, hour, node, counters) = row.map_err(sql_error)?;
        let scope = StatsScope::from_parts(&kind, &id)
            .ok_or_else(|| StoreError::invalid(format!("stored scope kind {kind:?} is unknown")))?;
        Ok(StatsPartial {
            tenant: tenant.clone(),
            day,
            hour: u8::try_from(hour).unwrap_or(u8::MAX),
            scope,
            node: NodeId(node),
            counters: Counters::from_array(counters),
        })
    })
    .collect()
}

// --- customers and their records ----------------------------------------------------------

pub(super) fn put_customer(c: &Connection, customer: &Customer, body: &str) -> Result<()> {
    let t = &customer.tenant.0;
    for n in &customer.numbers {
        let owner: Option<String> = c
            .prepare_cached(
                "SELECT customer FROM customer_numbers WHERE tenant = ?1 AND number = ?2",
            )
            .and_then(|mut s| s.query_row(params![t, n], |r| r.get(0)).optional())
            .map_err(sql_error)?;
        if let Some(o) = owner.filter(|o| *o != customer.id) {
            return Err(StoreError::conflict(format!(
                "number belongs to customer {o:?} already"
            )));
        }
    }
    c.execute(
        "DELETE FROM customer_numbers WHERE tenant = ?1 AND customer = ?2",
        params![t, customer.id],
    )
    .map_err(sql_error)?;
    for n in &customer.numbers {
        c.execute(
            "INSERT OR IGNORE INTO customer_numbers (tenant, number, customer) VALUES (?1, ?2, ?3)",
            params![t, n, customer.id],
        )
        .map_err(sql_error)?;
    }
    c.execute(
        "INSERT OR REPLACE INTO customers (tenant, id, body) VALUES (?1, ?2, ?3)",
        params![t, customer.id, body],
    )
    .map_err(sql_error)?;
    Ok(())
}

pub(super) fn customer_by_number(
    c: &Connection,
    tenant: &TenantId,
    number: &str,
) -> Result<Option<Customer>> {
    let body: Option<String> = c
        .prepare_cached(
            "SELECT c.body FROM customer_numbers n JOIN customers c \
             ON c.tenant = n.tenant AND c.id = n.customer WHERE n.tenant = ?1 AND n.number = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![tenant.0, number], |r| r.get(0))
                .optional()
        })
        .map_err(sql_error)?;
    body.map(|b| decode("customer", &b)).transpose()
}

/// A record kept as a JSON body under (tenant, id).
pub(super) struct BodyRow {
    table: &'static str,
    tenant: String,
    id: String,
    body: String,
}

impl BodyRow {
    pub(super) fn new<T: Serialize>(
        table: &'static str,
        tenant: &TenantId,
        id: &str,
        record: &T,
    ) -> Result<BodyRow> {
        Ok(BodyRow {
            table,
            tenant: tenant.0.clone(),
            id: id.to_owned(),
            body: encode(table, record)?,
        })
    }
}

pub(super) fn put_body(c: &Connection, row: &BodyRow, event: Option<&TimelineEvent>) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {} (tenant, id, body) VALUES (?1, ?2, ?3)",
        row.table
    ))
    .and_then(|mut s| s.execute(params![row.tenant, row.id, row.body]))
    .map_err(sql_error)?;
    if let Some(e) = event {
        put_timeline(c, e)?;
    }
    Ok(())
}

pub(super) fn get_body<T: DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    what: &str,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<T>> {
    let body: Option<String> = c
        .prepare_cached(&format!(
            "SELECT body FROM {table} WHERE tenant = ?1 AND id = ?2"
        ))
        .and_then(|mut s| s.query_row(params![tenant.0, id], |r| r.get(0)).optional())
        .map_err(sql_error)?;
    body.map(|b| decode(what, &b)).transpose()
}

pub(super) fn put_contact_plan(c: &Connection, plan: &ContactPlan, body: &str) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO contact_plans (tenant, id, agent, due, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![plan.tenant.0, plan.id, plan.agent.0, plan.due.as_i64(), body])
    })
    .map_err(sql_error)?;
    put_timeline(c, &TimelineEvent::of_contact_plan(plan))
}

pub(super) fn contact_plans(
    c: &Connection,
    tenant: &TenantId,
    agent: &AgentId,
) -> Result<Vec<ContactPlan>> {
    let mut s = c
        .prepare_cached(
            "SELECT body FROM contact_plans WHERE tenant = ?1 AND agent = ?2 ORDER BY due, id",
        )
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.0, agent.0], |r| r.get::<_, String>(0))
        .map_err(sql_error)?;
    rows.map(|r| {
        r.map_err(sql_error)
            .and_then(|b| decode("contact plan", &b))
    })
    .collect()
}

fn put_timeline(c: &Connection, e: &TimelineEvent) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO timeline (tenant, customer, kind, id, at, title) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.tenant.0,
            e.customer,
            e.kind.as_str(),
            e.id,
            e.at.as_i64(),
            e.title
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

pub(super) fn timeline(
    c: &Connection,
    tenant: &TenantId,
    customer: &str,
    before: Option<Timestamp>,
    limit: u32,
) -> Result<Vec<TimelineEvent>> {
    let before = before.map_or(i64::MAX, Timestamp::as_i64);
    let mut events = Vec::new();
    // The customer's calls, newest first, from their key rows; one read
    // transaction for the rows and the calls they name.
    let tx = c.unchecked_transaction().map_err(sql_error)?;
    let scan = KeyScan {
        tenant: &tenant.0,
        kind: KeyKind::Customer,
        key: customer,
        from: i64::MIN,
        to: before.saturating_sub(1),
        below: None,
        ties_ascending: true,
    };
    let keys = key_rows(&tx, &scan, limit as usize)?;
    let mut s = tx
        .prepare_cached("SELECT direction, answered FROM calls WHERE tenant = ?1 AND call = ?2")
        .map_err(sql_error)?;
    for (start, call) in keys {
        let (direction, answered) = s
            .query_row(params![tenant.0, call], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
            })
            .optional()
            .map_err(sql_error)?
            .ok_or_else(|| not_stored(call))?;
        events.push(TimelineEvent {
            tenant: tenant.clone(),
            customer: customer.to_owned(),
            at: Timestamp::from_i64(start),
            kind: TimelineKind::Call,
            id: CallId(u64::from_ne_bytes(call.to_ne_bytes())).to_string(),
            title: crate::model::customer::call_title(&direction, answered),
        });
    }
    drop(s);
    tx.commit().map_err(sql_error)?;
    // Tickets, summaries and contact plans.
    let mut s = c
        .prepare_cached(
            "SELECT kind, id, at, title FROM timeline WHERE tenant = ?1 AND customer = ?2 AND at < ?3 \
             ORDER BY at DESC, kind, id LIMIT ?4",
        )
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.0, customer, before, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(sql_error)?;
    for row in rows {
        let (kind, id, at, title) = row.map_err(sql_error)?;
        events.push(TimelineEvent {
            tenant: tenant.clone(),
            customer: customer.to_owned(),
            at: Timestamp::from_i64(at),
            kind: TimelineKind::parse(&kind)
                .ok_or_else(|| StoreError::invalid(format!("stored timeline kind {kind:?}")))?,
            id,
            title,
        });
    }
    crate::model::customer::sort_timeline(&mut events);
    events.truncate(limit as usize);
    Ok(events)
}

// --- leases ----------------------------------------------------------------------------------

fn lease_row(c: &Connection, tenant: &TenantId, key: &str) -> Result<Option<LeaseRow>> {
    c.prepare_cached("SELECT holder, epoch, expires FROM leases WHERE tenant = ?1 AND key = ?2")
        .and_then(|mut s| {
            s.query_row(params![tenant.0, key], |r| {
                Ok(LeaseRow {
                    holder: r.get(0)?,
                    epoch: u64_of(r.get(1)?),
                    expires: Timestamp::from_i64(r.get(2)?),
                })
            })
            .optional()
        })
        .map_err(sql_error)
}

fn write_lease(c: &Connection, tenant: &TenantId, key: &str, row: &LeaseRow) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO leases (tenant, key, holder, epoch, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            tenant.0,
            key,
            row.holder,
            i64_of(row.epoch),
            row.expires.as_i64()
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}

pub(super) fn acquire_lease(
    c: &Connection,
    tenant: &TenantId,
    key: &str,
    node: &NodeId,
    expires: Timestamp,
    now: Timestamp,
) -> Result<Lease> {
    let current = lease_row(c, tenant, key)?;
    let lease = grant(tenant, key, current.as_ref(), node, expires, now)?;
    write_lease(
        c,
        tenant,
        key,
        &LeaseRow {
            holder: lease.holder.0.clone(),
            epoch: lease.epoch,
            expires,
        },
    )?;
    Ok(lease)
}

pub(super) fn renew_lease(c: &Connection, lease: &Lease, expires: Timestamp) -> Result<Lease> {
    let current = lease_row(c, &lease.tenant, &lease.key)?;
    still_held(lease, current.as_ref())?;
    write_lease(
        c,
        &lease.tenant,
        &lease.key,
        &LeaseRow {
            holder: lease.holder.0.clone(),
            epoch: lease.epoch,
            expires,
        },
    )?;
    Ok(Lease {
        expires,
        ..lease.clone()
    })
}

pub(super) fn release_lease(c: &Connection, lease: &Lease) -> Result<()> {
    let current = lease_row(c, &lease.tenant, &lease.key)?;
    if current
        .as_ref()
        .is_some_and(|c| c.holder.is_empty() && c.epoch == lease.epoch)
    {
        return Ok(()); // released already (a retry)
    }
    still_held(lease, current.as_ref())?;
    write_lease(
        c,
        &lease.tenant,
        &lease.key,
        &LeaseRow {
            holder: String::new(),
            epoch: lease.epoch,
            expires: Timestamp(0),
        },
    )
}

pub(super) fn get_lease(c: &Connection, tenant: &TenantId, key: &str) -> Result<Option<Lease>> {
    Ok(lease_row(c, tenant, key)?.map(|r| Lease {
        tenant: tenant.clone(),
        key: key.to_owned(),
        holder: NodeId(r.holder),
        epoch: r.epoch,
        expires: r.expires,
    }))
}

/// A page of the tenant's tickets, the last updated first.
pub(super) fn list_tickets(
    c: &Connection,
    tenant: &TenantId,
    filter: &crate::store::TicketFilter,
    page: &PageRequest,
) -> Result<Page<crate::model::Ticket>> {
    let mut equal = Vec::new();
    if let Some(st) = filter.status {
        equal.push(("status", ticket_status_col(st)));
    }
    if let Some(a) = &filter.assignee {
        equal.push(("assignee", a.0.clone()));
    }
    if let Some(cu) = &filter.customer {
        equal.push(("customer", cu.clone()));
    }
    list_by_updated(c, "tickets", "ticket", tenant, &equal, None, page)
}

/// A page of the tenant's customers, the last updated first; `name`: a
/// part of the name, any case.
pub(super) fn list_customers(
    c: &Connection,
    tenant: &TenantId,
    name: Option<&str>,
    page: &PageRequest,
) -> Result<Page<crate::model::Customer>> {
    list_by_updated(c, "customers", "customer", tenant, &[], name, page)
}

/// A page of `table`'s bodies of a tenant, the last updated first, with
/// columns equal to values and the name containing `name`; the cursor is
/// the (updated, id) of the last one given.
fn list_by_updated<T: DeserializeOwned>(
    c: &Connection,
    table: &str,
    what: &str,
    tenant: &TenantId,
    equal: &[(&str, String)],
    name: Option<&str>,
    page: &PageRequest,
) -> Result<Page<T>> {
    let limit = page.checked_limit()?;
    let mut sql = format!("SELECT body, updated, id FROM {table} WHERE tenant = ?1");
    let mut args: Vec<Value> = vec![Value::Text(tenant.0.clone())];
    for (col, v) in equal {
        args.push(Value::Text(v.clone()));
        sql.push_str(&format!(" AND {col} = ?{}", args.len()));
    }
    if let Some(n) = name {
        // instr, not LIKE: what the user typed is taken literally.
        args.push(Value::Text(n.to_lowercase()));
        sql.push_str(&format!(" AND instr(lower(name), ?{}) > 0", args.len()));
    }
    if let Some(cur) = &page.cursor {
        let (updated, id) = decode_ticket_cursor(cur)?;
        args.push(Value::Integer(updated));
        let u = args.len();
        args.push(Value::Text(id));
        sql.push_str(&format!(
            " AND (updated < ?{u} OR (updated = ?{u} AND id < ?{}))",
            args.len()
        ));
    }
    args.push(Value::Integer(i64::from(limit) + 1));
    sql.push_str(&format!(
        " ORDER BY updated DESC, id DESC LIMIT ?{}",
        args.len()
    ));
    let mut q = c.prepare_cached(&sql).map_err(sql_error)?;
    let rows = q
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(sql_error)?;
    let more = rows.len() > limit as usize;
    let mut items = Vec::new();
    let mut last = None;
    for (body, updated, id) in rows.into_iter().take(limit as usize) {
        items.push(decode::<T>(what, &body)?);
        last = Some((updated, id));
    }
    let next = match (more, last) {
        (true, Some((u, id))) => Some(Cursor(hex::encode(format!("t1:{u}:{id}")))),
        _ => None,
    };
    Ok(Page { items, next })
}

/// A status as its body stores it (its serde name), for the generated
/// `status` column.
fn ticket_status_col(s: crate::model::TicketStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn decode_ticket_cursor(c: &Cursor) -> Result<(i64, String)> {
    let bad = || StoreError::invalid(format!("cursor {:?} is not one of this store's", c.0));
    let raw = hex::decode(&c.0).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = text.strip_prefix("t1:").ok_or_else(bad)?;
    let (u, id) = rest.split_once(':').ok_or_else(bad)?;
    Ok((u.parse().map_err(|_| bad())?, id.to_owned()))
}
