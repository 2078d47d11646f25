//! Custom statuses (自定义状态): not-ready reasons the tenant defines.

use super::{create, load, remove, replace, same_id, sync_agent_policies, Listing, READ, WRITE};
use crate::auth::Caller;
use crate::common::{check_id, check_text, paginate, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_storage::model::{self as m, CustomStatus, Versioned};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A custom status, as read and written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomStatusDoc {
    pub id: String,
    /// The label agents see (e.g. 培训).
    pub name: String,
    /// Whether agents may pick it themselves (else supervisors only).
    #[serde(default)]
    pub selectable: bool,
    pub revision: Option<u64>,
}

fn doc_of(v: Versioned<CustomStatus>) -> CustomStatusDoc {
    CustomStatusDoc {
        id: v.record.id,
        name: v.record.name,
        selectable: v.record.selectable,
        revision: Some(v.revision),
    }
}

fn status_of(tenant: &m::TenantId, doc: &CustomStatusDoc) -> ApiResult<CustomStatus> {
    check_id("id", &doc.id)?;
    check_text("name", &doc.name, 100)?;
    Ok(CustomStatus {
        tenant: tenant.clone(),
        id: doc.id.clone(),
        name: doc.name.clone(),
        selectable: doc.selectable,
    })
}

/// The tenant's custom statuses. Agents may read them (to pick one).
#[utoipa::path(get, path = "/custom-statuses", tag = "config", params(Listing),
    responses((status = 200, body = Page<CustomStatusDoc>)))]
async fn list_statuses(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Listing>,
) -> ApiResult<Json<Page<CustomStatusDoc>>> {
    if caller.agent.is_none() {
        caller.require(READ, "listing custom statuses")?;
    }
    let docs = state
        .store
        .list::<CustomStatus>(&caller.tenant)
        .await?
        .into_iter()
        .map(doc_of)
        .collect();
    Ok(Json(paginate(
        docs,
        |d: &CustomStatusDoc| &d.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One custom status.
#[utoipa::path(get, path = "/custom-statuses/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = CustomStatusDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CustomStatusDoc>> {
    if caller.agent.is_none() {
        caller.require(READ, "reading custom statuses")?;
    }
    Ok(Json(doc_of(
        load::<CustomStatus>(&state, &caller.tenant, &id, "custom status").await?,
    )))
}

/// Creates a custom status; every agent may then be put in it.
#[utoipa::path(post, path = "/custom-statuses", tag = "config", request_body = CustomStatusDoc,
    responses((status = 201, body = CustomStatusDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<CustomStatusDoc>,
) -> ApiResult<(StatusCode, Json<CustomStatusDoc>)> {
    caller.require(WRITE, "creating custom statuses")?;
    let s = status_of(&caller.tenant, &doc)?;
    let rev = create(&state, &s, "custom status").await?;
    sync_agent_policies(&state, &caller.tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(Versioned {
            revision: rev,
            record: s,
        })),
    ))
}

/// Changes a custom status.
#[utoipa::path(put, path = "/custom-statuses/{id}", tag = "config", params(("id" = String, Path)),
    request_body = CustomStatusDoc,
    responses((status = 200, body = CustomStatusDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(doc): ApiJson<CustomStatusDoc>,
) -> ApiResult<Json<CustomStatusDoc>> {
    caller.require(WRITE, "changing custom statuses")?;
    let old = load::<CustomStatus>(&state, &caller.tenant, &id, "custom status").await?;
    same_id(&id, &doc.id)?;
    let s = status_of(&caller.tenant, &doc)?;
    let rev = replace(&state, &s, old.revision, doc.revision, "custom status").await?;
    sync_agent_policies(&state, &caller.tenant).await?;
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: s,
    })))
}

/// Deletes a custom status no agent falls back to.
#[utoipa::path(delete, path = "/custom-statuses/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
async fn delete_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting custom statuses")?;
    load::<CustomStatus>(&state, &caller.tenant, &id, "custom status").await?;
    for a in state.store.list::<m::Agent>(&caller.tenant).await? {
        if a.record.policy.missed_status == (m::Status::Custom { id: id.clone() }) {
            return Err(ApiError::conflict(format!(
                "agent {:?} goes to {id:?} after missed calls",
                a.record.id.0
            )));
        }
    }
    remove::<CustomStatus>(&state, &caller.tenant, &id, "custom status").await?;
    sync_agent_policies(&state, &caller.tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_statuses, create_status))
        .routes(routes!(get_status, update_status, delete_status))
}
