//! SIP accounts phones register with (SIP话机). Only digest hashes are
//! kept, for the node's realm.

use super::{create, load, remove, replace, same_id, Listing, READ, WRITE};
use crate::auth::{check_password, Caller};
use crate::common::{check_id, paginate, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_storage::model::{self as m, SipAccount, Versioned};
use switchboard_storage::seed::{ha1, ha1_sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A SIP account. The password is write-only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SipAccountDoc {
    /// The SIP user name.
    pub id: String,
    /// Required when creating; left out keeps the old one.
    #[serde(default, skip_serializing)]
    #[schema(write_only)]
    pub password: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The digest realm the password is hashed for (read-only).
    #[serde(default)]
    pub realm: Option<String>,
    pub revision: Option<u64>,
}

fn yes() -> bool {
    true
}

fn doc_of(v: Versioned<SipAccount>) -> SipAccountDoc {
    SipAccountDoc {
        id: v.record.id,
        password: None,
        enabled: v.record.enabled,
        realm: Some(v.record.realm),
        revision: Some(v.revision),
    }
}

/// The tenant's SIP accounts.
#[utoipa::path(get, path = "/sip-accounts", tag = "config", params(Listing),
    responses((status = 200, body = Page<SipAccountDoc>), (status = 403, body = crate::error::ErrorBody)))]
async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<Listing>,
) -> ApiResult<Json<Page<SipAccountDoc>>> {
    caller.require(READ, "listing SIP accounts")?;
    let all = state.store.list::<SipAccount>(&caller.tenant).await?;
    let docs = all.into_iter().map(doc_of).collect();
    Ok(Json(paginate(
        docs,
        |d: &SipAccountDoc| &d.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One SIP account.
#[utoipa::path(get, path = "/sip-accounts/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = SipAccountDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SipAccountDoc>> {
    caller.require(READ, "reading SIP accounts")?;
    Ok(Json(doc_of(
        load::<SipAccount>(&state, &caller.tenant, &id, "SIP account").await?,
    )))
}

fn account(
    state: &AppState,
    tenant: &m::TenantId,
    id: &str,
    password: &str,
    enabled: bool,
) -> SipAccount {
    SipAccount {
        tenant: tenant.clone(),
        id: id.to_owned(),
        ha1: ha1(id, &state.sip_realm, password),
        realm: state.sip_realm.clone(),
        ha1_sha256: Some(ha1_sha256(id, &state.sip_realm, password)),
        enabled,
    }
}

/// Creates a SIP account.
#[utoipa::path(post, path = "/sip-accounts", tag = "config", request_body = SipAccountDoc,
    responses((status = 201, body = SipAccountDoc), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<SipAccountDoc>,
) -> ApiResult<(StatusCode, Json<SipAccountDoc>)> {
    caller.require(WRITE, "creating SIP accounts")?;
    check_id("id", &doc.id)?;
    let Some(password) = &doc.password else {
        return Err(ApiError::field(
            "password",
            "a new SIP account needs a password",
        ));
    };
    check_password("password", password)?;
    let a = account(&state, &caller.tenant, &doc.id, password, doc.enabled);
    let rev = create(&state, &a, "SIP account").await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(Versioned {
            revision: rev,
            record: a,
        })),
    ))
}

/// Changes a SIP account's password or enables/disables it.
#[utoipa::path(put, path = "/sip-accounts/{id}", tag = "config", params(("id" = String, Path)),
    request_body = SipAccountDoc,
    responses((status = 200, body = SipAccountDoc), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
async fn update_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(doc): ApiJson<SipAccountDoc>,
) -> ApiResult<Json<SipAccountDoc>> {
    caller.require(WRITE, "changing SIP accounts")?;
    let old = load::<SipAccount>(&state, &caller.tenant, &id, "SIP account").await?;
    same_id(&id, &doc.id)?;
    let a = match &doc.password {
        Some(p) => {
            check_password("password", p)?;
            account(&state, &caller.tenant, &id, p, doc.enabled)
        }
        None => SipAccount {
            enabled: doc.enabled,
            ..old.record.clone()
        },
    };
    let rev = replace(&state, &a, old.revision, doc.revision, "SIP account").await?;
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: a,
    })))
}

/// Deletes a SIP account no agent uses.
#[utoipa::path(delete, path = "/sip-accounts/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
async fn delete_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting SIP accounts")?;
    load::<SipAccount>(&state, &caller.tenant, &id, "SIP account").await?;
    for a in state.store.list::<m::Agent>(&caller.tenant).await? {
        if matches!(&a.record.device, m::Device::Sip { account } if *account == id) {
            return Err(ApiError::conflict(format!(
                "agent {:?} takes calls on SIP account {id:?}: change its device first",
                a.record.id.0
            )));
        }
    }
    remove::<SipAccount>(&state, &caller.tenant, &id, "SIP account").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, update_account, delete_account))
}
