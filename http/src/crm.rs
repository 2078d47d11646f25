//! The CRM behind the screen pop: customers (客户信息) with the tenant's
//! fields, looked up by phone number; tickets (工单), opened from a call
//! and pre-filled from it; the service summary (服务小结) of a call;
//! contact plans (联系计划); the customer timeline (历史动态).
//!
//! Admins, supervisors and agents use it; an agent sees the summaries of
//! its own calls and its own contact plans only.

use crate::auth::Caller;
use crate::calls::{call_id, call_of};
use crate::common::{check_len, check_number, check_text, limit, now, Page};
use crate::config::{plain_fields, tenant_record, typed_fields, Form};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::mirror::{ContactPlanStatus, Role, TicketStatus, TimelineKind};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_storage::model::{
    self as m, AgentId, CallRecord, ContactPlan, Customer, Day, LocalHour, ServiceSummary, Ticket,
    Timestamp,
};
use switchboard_storage::ErrorKind;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Who uses the CRM.
const CRM: &[Role] = &[Role::TenantAdmin, Role::Supervisor, Role::Agent];

/// A new random record id.
fn new_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A customer profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerDoc {
    pub id: String,
    pub name: String,
    pub numbers: Vec<String>,
    /// The tenant's fields (see the `customer` form schema).
    pub fields: BTreeMap<String, Value>,
    pub created: u64,
    pub updated: u64,
}

/// A customer, created or changed.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: String,
    /// Phone numbers; each belongs to at most one customer of the tenant.
    pub numbers: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

fn customer_doc(c: Customer) -> CustomerDoc {
    CustomerDoc {
        fields: plain_fields(&c.fields),
        id: c.id,
        name: c.name,
        numbers: c.numbers,
        created: c.created.0,
        updated: c.updated.0,
    }
}

/// The number of a lookup.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Lookup {
    /// The phone number, as the call presents it.
    number: String,
}

async fn customer_input(
    state: &AppState,
    caller: &Caller,
    body: &CustomerInput,
) -> ApiResult<(Vec<String>, m::CustomFields)> {
    check_text("name", &body.name, 200)?;
    if body.numbers.len() > 20 {
        return Err(ApiError::field("numbers", "at most 20 numbers"));
    }
    let mut numbers: Vec<String> = Vec::new();
    for (i, n) in body.numbers.iter().enumerate() {
        check_number(&format!("numbers[{i}]"), n)?;
        if !numbers.contains(n) {
            numbers.push(n.clone());
        }
    }
    let fields = typed_fields(state, &caller.tenant, Form::Customer, &body.fields).await?;
    Ok((numbers, fields))
}

async fn put_customer(state: &AppState, c: &Customer) -> ApiResult<()> {
    state
        .store
        .put_customer(c)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => ApiError::conflict(format!(
                "another customer has one of these numbers: {}",
                e.message()
            )),
            ErrorKind::Invalid => ApiError::from(e).in_field("numbers"),
            _ => e.into(),
        })
}

async fn customer(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Customer> {
    state
        .store
        .get_customer(&caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no customer {id:?}")))
}

/// The customer with a phone number (the screen pop's lookup).
#[utoipa::path(get, path = "/customers/lookup", tag = "crm", params(Lookup),
    responses((status = 200, body = CustomerDoc),
        (status = 404, description = "no customer has this number", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Lookup>,
) -> ApiResult<Json<CustomerDoc>> {
    caller.require(CRM, "looking up customers")?;
    check_number("number", &q.number)?;
    let c = state
        .store
        .customer_by_number(&caller.tenant, &q.number)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no customer has number {:?}", q.number)))?;
    Ok(Json(customer_doc(c)))
}

/// A part of the name and a page of the customer list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CustomerQuery {
    /// A part of the name, any case.
    name: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// The tenant's customers, the last updated first; with `name`, those
/// whose name contains it.
#[utoipa::path(get, path = "/customers", tag = "crm", params(CustomerQuery),
    responses((status = 200, body = Page<CustomerDoc>), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CustomerQuery>,
) -> ApiResult<Json<Page<CustomerDoc>>> {
    caller.require(CRM, "listing customers")?;
    let name = q.name.filter(|n| !n.trim().is_empty());
    if let Some(n) = &name {
        check_text("name", n, 100)?;
    }
    let page = crate::common::page_request(q.cursor, q.limit)?;
    let p = state
        .store
        .customers(&caller.tenant, name.as_deref().map(str::trim), &page)
        .await
        .map_err(|e| ApiError::from(e).in_field("cursor"))?;
    Ok(Json(Page {
        items: p.items.into_iter().map(customer_doc).collect(),
        next: p.next.map(|c| c.0),
    }))
}

/// Creates a customer.
#[utoipa::path(post, path = "/customers", tag = "crm", request_body = CustomerInput,
    responses((status = 201, body = CustomerDoc), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn create_customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CustomerInput>,
) -> ApiResult<(StatusCode, Json<CustomerDoc>)> {
    caller.require(CRM, "creating customers")?;
    let (numbers, fields) = customer_input(&state, &caller, &body).await?;
    let t = now();
    let c = Customer {
        tenant: caller.tenant.clone(),
        id: new_id(),
        name: body.name,
        numbers,
        fields,
        created: t,
        updated: t,
    };
    put_customer(&state, &c).await?;
    Ok((StatusCode::CREATED, Json(customer_doc(c))))
}

/// One customer.
#[utoipa::path(get, path = "/customers/{id}", tag = "crm", params(("id" = String, Path)),
    responses((status = 200, body = CustomerDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CustomerDoc>> {
    caller.require(CRM, "reading customers")?;
    Ok(Json(customer_doc(customer(&state, &caller, &id).await?)))
}

/// Changes a customer (name, numbers, fields: all replaced).
#[utoipa::path(put, path = "/customers/{id}", tag = "crm", params(("id" = String, Path)),
    request_body = CustomerInput,
    responses((status = 200, body = CustomerDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_customer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CustomerInput>,
) -> ApiResult<Json<CustomerDoc>> {
    caller.require(CRM, "changing customers")?;
    let old = customer(&state, &caller, &id).await?;
    let (numbers, fields) = customer_input(&state, &caller, &body).await?;
    let c = Customer {
        name: body.name,
        numbers,
        fields,
        updated: now(),
        ..old
    };
    put_customer(&state, &c).await?;
    Ok(Json(customer_doc(c)))
}

/// A timeline entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// ms since the Unix epoch.
    pub at: u64,
    pub kind: TimelineKind,
    /// The record's id (a call's id in hex).
    pub id: String,
    pub title: String,
}

/// Cursor and limit of the timeline.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A timeline position: entries older than `at`, after skipping `skip`
/// entries at `at` itself (several records may share a millisecond).
fn timeline_cursor(c: &str) -> ApiResult<(u64, u32)> {
    let bad = || ApiError::field("cursor", "not a cursor this API handed out");
    let raw = hex::decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, skip) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        skip.parse().map_err(|_| bad())?,
    ))
}

/// A customer's calls, tickets, summaries and contact plans, newest
/// first.
#[utoipa::path(get, path = "/customers/{id}/timeline", tag = "crm",
    params(("id" = String, Path), TimelineQuery),
    responses((status = 200, body = Page<TimelineEntry>), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> ApiResult<Json<Page<TimelineEntry>>> {
    caller.require(CRM, "reading timelines")?;
    customer(&state, &caller, &id).await?;
    let limit = limit(q.limit)?;
    let (before, skip) = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            let (at, skip) = timeline_cursor(c)?;
            (Some(Timestamp(at.saturating_add(1))), skip)
        }
        None => (None, 0),
    };
    let cursor_at = before.map(|b| b.0 - 1);
    let want = limit.saturating_add(skip);
    let events = state
        .store
        .timeline(&caller.tenant, &id, before, want)
        .await?;
    let more = events.len() as u64 >= u64::from(want);
    let mut skipped = 0;
    let page: Vec<m::TimelineEvent> = events
        .into_iter()
        .filter(|e| {
            if Some(e.at.0) == cursor_at && skipped < skip {
                skipped += 1;
                false
            } else {
                true
            }
        })
        .take(limit as usize)
        .collect();
    let next = match (more, page.last()) {
        (true, Some(last)) => {
            let mut same = page.iter().filter(|e| e.at == last.at).count() as u32;
            if Some(last.at.0) == cursor_at {
                same += skip;
            }
            Some(hex::encode(format!("{}:{same}", last.at.0)))
        }
        _ => None,
    };
    Ok(Json(Page {
        items: page
            .into_iter()
            .map(|e| TimelineEntry {
                at: e.at.0,
                kind: e.kind.into(),
                id: e.id,
                title: e.title,
            })
            .collect(),
        next,
    }))
}

/// A ticket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketDoc {
    pub id: String,
    pub customer: Option<String>,
    /// The call it was opened from (hex id).
    pub call: Option<String>,
    pub title: String,
    pub description: String,
    pub status: TicketStatus,
    /// 0 (low) to 3 (urgent).
    pub priority: u8,
    pub assignee: Option<String>,
    pub fields: BTreeMap<String, Value>,
    pub created: u64,
    pub updated: u64,
}

/// A ticket, created or changed. Opened from a call, the customer is
/// taken from the call when left out, and the assignee is the agent
/// opening it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    pub customer: Option<String>,
    /// The call (hex id) it is opened from.
    pub call: Option<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "open")]
    pub status: TicketStatus,
    #[serde(default = "one")]
    pub priority: u8,
    pub assignee: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

fn open() -> TicketStatus {
    TicketStatus::Open
}
fn one() -> u8 {
    1
}

fn ticket_doc(t: Ticket) -> TicketDoc {
    TicketDoc {
        fields: plain_fields(&t.fields),
        id: t.id,
        customer: t.customer,
        call: t.call.map(|c| c.to_string()),
        title: t.title,
        description: t.description,
        status: t.status.into(),
        priority: t.priority,
        assignee: t.assignee.map(|a| a.0),
        created: t.created.0,
        updated: t.updated.0,
    }
}

/// The customer a call is about: its linked profile, else the profile
/// of its customer number.
async fn customer_of_call(state: &AppState, r: &CallRecord) -> ApiResult<Option<String>> {
    if let Some(c) = &r.customer {
        return Ok(Some(c.clone()));
    }
    Ok(state
        .store
        .customer_by_number(&r.tenant, &r.customer_number)
        .await?
        .map(|c| c.id))
}

/// A call named in a CRM body: it must exist and, for an agent, be its
/// own (422 otherwise, naming the field).
async fn linked_call(state: &AppState, caller: &Caller, hex: &str) -> ApiResult<CallRecord> {
    let r = match call_id(hex) {
        Some(id) => state.store.get_call(&caller.tenant, id).await?,
        None => None,
    };
    r.filter(|r| !caller.agent_only() || r.agent.is_some() && r.agent == caller.agent)
        .ok_or_else(|| ApiError::field("call", format!("no call {hex:?}")))
}

async fn ticket_of(
    state: &AppState,
    caller: &Caller,
    body: TicketInput,
    old: Option<Ticket>,
) -> ApiResult<Ticket> {
    check_text("title", &body.title, 200)?;
    check_len("description", &body.description, 10_000)?;
    if body.priority > 3 {
        return Err(ApiError::field("priority", "0 (low) to 3 (urgent)"));
    }
    let call = match &body.call {
        Some(hex) => Some(linked_call(state, caller, hex).await?),
        None => None,
    };
    let customer = match (&body.customer, &call) {
        (Some(c), _) => {
            customer(state, caller, c)
                .await
                .map_err(|_| ApiError::field("customer", format!("no customer {c:?}")))?;
            Some(c.clone())
        }
        (None, Some(r)) => customer_of_call(state, r).await?,
        (None, None) => None,
    };
    let assignee = match &body.assignee {
        Some(a) => {
            if state
                .store
                .get::<m::Agent>(&caller.tenant, a)
                .await?
                .is_none()
            {
                return Err(ApiError::field("assignee", format!("no agent {a:?}")));
            }
            Some(AgentId(a.clone()))
        }
        None => old
            .as_ref()
            .map_or_else(|| caller.agent.clone(), |o| o.assignee.clone()),
    };
    let fields = typed_fields(state, &caller.tenant, Form::Ticket, &body.fields).await?;
    let t = now();
    Ok(Ticket {
        tenant: caller.tenant.clone(),
        id: old.as_ref().map_or_else(new_id, |o| o.id.clone()),
        customer,
        call: call.map(|r| r.call),
        title: body.title,
        description: body.description,
        status: body.status.into(),
        priority: body.priority,
        assignee,
        fields,
        created: old.as_ref().map_or(t, |o| o.created),
        updated: t,
    })
}

/// Opens a ticket (from the screen pop: give the call).
#[utoipa::path(post, path = "/tickets", tag = "crm", request_body = TicketInput,
    responses((status = 201, body = TicketDoc), (status = 422, body = crate::error::ErrorBody)))]
async fn create_ticket(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TicketInput>,
) -> ApiResult<(StatusCode, Json<TicketDoc>)> {
    caller.require(CRM, "opening tickets")?;
    let t = ticket_of(&state, &caller, body, None).await?;
    state.store.put_ticket(&t).await?;
    Ok((StatusCode::CREATED, Json(ticket_doc(t))))
}

/// Filters and page of the ticket list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TicketQuery {
    status: Option<TicketStatus>,
    /// The agent it is assigned to.
    assignee: Option<String>,
    /// The customer's id.
    customer: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// The tenant's tickets, the last updated first: all of them, or those
/// with a status, an assignee, a customer.
#[utoipa::path(get, path = "/tickets", tag = "crm", params(TicketQuery),
    responses((status = 200, body = Page<TicketDoc>), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn list_tickets(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TicketQuery>,
) -> ApiResult<Json<Page<TicketDoc>>> {
    caller.require(CRM, "listing tickets")?;
    if let Some(a) = &q.assignee {
        check_len("assignee", a, 64)?;
    }
    if let Some(c) = &q.customer {
        check_len("customer", c, 64)?;
    }
    let filter = switchboard_storage::TicketFilter {
        status: q.status.map(Into::into),
        assignee: q.assignee.map(AgentId),
        customer: q.customer,
    };
    let page = crate::common::page_request(q.cursor, q.limit)?;
    let p = state
        .store
        .tickets(&caller.tenant, &filter, &page)
        .await
        .map_err(|e| ApiError::from(e).in_field("cursor"))?;
    Ok(Json(Page {
        items: p.items.into_iter().map(ticket_doc).collect(),
        next: p.next.map(|c| c.0),
    }))
}

/// One ticket.
#[utoipa::path(get, path = "/tickets/{id}", tag = "crm", params(("id" = String, Path)),
    responses((status = 200, body = TicketDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_ticket(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TicketDoc>> {
    caller.require(CRM, "reading tickets")?;
    let t = state
        .store
        .get_ticket(&caller.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no ticket {id:?}")))?;
    Ok(Json(ticket_doc(t)))
}

/// Changes a ticket.
#[utoipa::path(put, path = "/tickets/{id}", tag = "crm", params(("id" = String, Path)),
    request_body = TicketInput,
    responses((status = 200, body = TicketDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn update_ticket(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TicketInput>,
) -> ApiResult<Json<TicketDoc>> {
    caller.require(CRM, "changing tickets")?;
    let old = state
        .store
        .get_ticket(&caller.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no ticket {id:?}")))?;
    let t = ticket_of(&state, &caller, body, Some(old)).await?;
    state.store.put_ticket(&t).await?;
    Ok(Json(ticket_doc(t)))
}

/// The service summary of a call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SummaryDoc {
    pub call: String,
    pub customer: Option<String>,
    pub agent: String,
    /// Category path, e.g. `["咨询", "账单"]`.
    pub category: Vec<String>,
    pub notes: String,
    pub fields: BTreeMap<String, Value>,
    pub created: u64,
}

/// A call's summary, written by the agent after the call.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryInput {
    #[serde(default)]
    pub category: Vec<String>,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
}

fn summary_doc(s: ServiceSummary) -> SummaryDoc {
    SummaryDoc {
        call: s.call.map(|c| c.to_string()).unwrap_or(s.id),
        customer: s.customer,
        agent: s.agent.0,
        category: s.category,
        notes: s.notes,
        fields: plain_fields(&s.fields),
        created: s.created.0,
    }
}

/// The summary of a call.
#[utoipa::path(get, path = "/calls/{call}/summary", tag = "crm", params(("call" = String, Path)),
    responses((status = 200, body = SummaryDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(call): ApiPath<String>,
) -> ApiResult<Json<SummaryDoc>> {
    caller.require(CRM, "reading service summaries")?;
    let r = call_of(&state, &caller, &call).await?;
    let s = state
        .store
        .get_summary(&caller.tenant, &r.call.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("call {call:?} has no summary")))?;
    Ok(Json(summary_doc(s)))
}

/// Writes (or rewrites) the summary of a call.
#[utoipa::path(put, path = "/calls/{call}/summary", tag = "crm", params(("call" = String, Path)),
    request_body = SummaryInput,
    responses((status = 200, body = SummaryDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn put_summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(call): ApiPath<String>,
    ApiJson(body): ApiJson<SummaryInput>,
) -> ApiResult<Json<SummaryDoc>> {
    caller.require(CRM, "writing service summaries")?;
    let r = call_of(&state, &caller, &call).await?;
    if body.category.len() > 10 {
        return Err(ApiError::field("category", "at most 10 levels"));
    }
    for (i, c) in body.category.iter().enumerate() {
        check_text(&format!("category[{i}]"), c, 100)?;
    }
    check_len("notes", &body.notes, 10_000)?;
    let fields = typed_fields(&state, &caller.tenant, Form::ServiceSummary, &body.fields).await?;
    let Some(agent) = r.agent.clone().or_else(|| caller.agent.clone()) else {
        return Err(ApiError::conflict(format!(
            "call {call:?} reached no agent and you are not one: a summary belongs to an agent"
        )));
    };
    let id = r.call.to_string();
    let old = state.store.get_summary(&caller.tenant, &id).await?;
    let s = ServiceSummary {
        tenant: caller.tenant.clone(),
        id,
        call: Some(r.call),
        customer: customer_of_call(&state, &r).await?,
        agent,
        category: body.category,
        notes: body.notes,
        fields,
        created: old.map_or_else(now, |o| o.created),
    };
    state.store.put_summary(&s).await?;
    Ok(Json(summary_doc(s)))
}

/// A contact plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactPlanDoc {
    pub id: String,
    pub customer: String,
    pub number: String,
    pub agent: String,
    /// When to call, ms since the Unix epoch.
    pub due: u64,
    pub note: String,
    pub status: ContactPlanStatus,
    /// Pending and past its time.
    pub overdue: bool,
    pub created: u64,
    /// The outbound call that carried it out (dialed from the phone bar
    /// with this plan), and how its dialing ended.
    pub call: Option<String>,
    pub outcome: Option<crate::mirror::DialOutcome>,
}

/// A new contact plan for a number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPlanInput {
    /// The number to call back.
    pub number: String,
    /// When, ms since the Unix epoch.
    pub due: u64,
    #[serde(default)]
    pub note: String,
    /// The customer; left out, the customer with this number.
    pub customer: Option<String>,
}

/// Which plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanFilter {
    All,
    Pending,
    /// Pending and due by the end of today (overdue ones included).
    Due,
    /// Pending and past their time.
    Overdue,
    Done,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PlanQuery {
    /// Default `all`.
    filter: Option<PlanFilter>,
}

fn plan_doc(p: ContactPlan, now: Timestamp) -> ContactPlanDoc {
    ContactPlanDoc {
        overdue: p.status == m::ContactPlanStatus::Pending && p.due < now,
        id: p.id,
        customer: p.customer,
        number: p.number,
        agent: p.agent.0,
        due: p.due.0,
        note: p.note,
        status: p.status.into(),
        created: p.created.0,
        call: p.call.map(|c| c.to_string()),
        outcome: p.outcome.map(Into::into),
    }
}

/// The agent of a contact-plan path: an agent may only use its own; for
/// others it must exist.
async fn plan_agent(state: &AppState, caller: &Caller, agent: &str) -> ApiResult<AgentId> {
    caller.require(CRM, "using contact plans")?;
    let own = caller.agent.as_ref().is_some_and(|a| a.0 == agent);
    let sees_all = caller.is(Role::TenantAdmin) || caller.is(Role::Supervisor);
    if !own && !sees_all {
        return Err(ApiError::not_found(format!("no agent {agent:?}")));
    }
    if !own
        && state
            .store
            .get::<m::Agent>(&caller.tenant, agent)
            .await?
            .is_none()
    {
        return Err(ApiError::not_found(format!("no agent {agent:?}")));
    }
    Ok(AgentId(agent.to_owned()))
}

/// An agent's contact plans, earliest due first.
#[utoipa::path(get, path = "/agents/{agent}/contact-plans", tag = "crm",
    params(("agent" = String, Path), PlanQuery),
    responses((status = 200, body = Vec<ContactPlanDoc>), (status = 404, body = crate::error::ErrorBody)))]
async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(agent): ApiPath<String>,
    ApiQuery(q): ApiQuery<PlanQuery>,
) -> ApiResult<Json<Vec<ContactPlanDoc>>> {
    let agent = plan_agent(&state, &caller, &agent).await?;
    let t = now();
    let offset = tenant_record(&state, &caller.tenant)
        .await?
        .utc_offset_minutes;
    let today = Day::of(t, offset);
    let end_of_today = LocalHour {
        day: Day(today.0.saturating_add(1)),
        hour: 0,
    }
    .start(offset);
    let filter = q.filter.unwrap_or(PlanFilter::All);
    let pending = |p: &ContactPlan| p.status == m::ContactPlanStatus::Pending;
    let plans = state
        .store
        .contact_plans(&caller.tenant, &agent)
        .await?
        .into_iter()
        .filter(|p| match filter {
            PlanFilter::All => true,
            PlanFilter::Pending => pending(p),
            PlanFilter::Due => pending(p) && p.due < end_of_today,
            PlanFilter::Overdue => pending(p) && p.due < t,
            PlanFilter::Done => p.status == m::ContactPlanStatus::Done,
        })
        .map(|p| plan_doc(p, t))
        .collect();
    Ok(Json(plans))
}

/// Plans a call back to a number.
#[utoipa::path(post, path = "/agents/{agent}/contact-plans", tag = "crm",
    params(("agent" = String, Path)), request_body = ContactPlanInput,
    responses((status = 201, body = ContactPlanDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(agent): ApiPath<String>,
    ApiJson(body): ApiJson<ContactPlanInput>,
) -> ApiResult<(StatusCode, Json<ContactPlanDoc>)> {
    let agent = plan_agent(&state, &caller, &agent).await?;
    check_number("number", &body.number)?;
    check_len("note", &body.note, 2000)?;
    if body.due > 32_503_680_000_000 {
        return Err(ApiError::field("due", "is after the year 3000"));
    }
    let customer = match &body.customer {
        Some(c) => {
            customer(&state, &caller, c)
                .await
                .map_err(|_| ApiError::field("customer", format!("no customer {c:?}")))?;
            c.clone()
        }
        None => state
            .store
            .customer_by_number(&caller.tenant, &body.number)
            .await?
            .map(|c| c.id)
            .ok_or_else(|| {
                ApiError::field(
                    "number",
                    format!(
                        "no customer has number {:?}: create the customer first, or name one",
                        body.number
                    ),
                )
            })?,
    };
    let p = ContactPlan {
        tenant: caller.tenant.clone(),
        id: new_id(),
        customer,
        number: body.number,
        agent,
        due: Timestamp(body.due),
        note: body.note,
        status: m::ContactPlanStatus::Pending,
        created: now(),
        call: None,
        outcome: None,
    };
    state.store.put_contact_plan(&p).await?;
    Ok((StatusCode::CREATED, Json(plan_doc(p, now()))))
}

/// Marks a contact plan done.
#[utoipa::path(post, path = "/agents/{agent}/contact-plans/{id}/done", tag = "crm",
    params(("agent" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ContactPlanDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn plan_done(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((agent, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<ContactPlanDoc>> {
    let agent = plan_agent(&state, &caller, &agent).await?;
    let mut p = state
        .store
        .contact_plans(&caller.tenant, &agent)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no contact plan {id:?}")))?;
    p.status = m::ContactPlanStatus::Done;
    state.store.put_contact_plan(&p).await?;
    Ok(Json(plan_doc(p, now())))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lookup))
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, update_customer))
        .routes(routes!(timeline))
        .routes(routes!(list_tickets, create_ticket))
        .routes(routes!(get_ticket, update_ticket))
        .routes(routes!(get_summary, put_summary))
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(plan_done))
}
