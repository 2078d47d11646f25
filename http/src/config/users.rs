//! Users (who signs in), their roles and the agent they work as.

use super::{create, load, remove, replace, same_id, WRITE};
use crate::auth::{check_password, hash_password_async, Caller};
use crate::common::{check_id, check_text, paginate, Page};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::mirror::Role;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_storage::model::{self as m, AgentId, TenantId, User, Versioned};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A user, as read and written. The password is write-only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDoc {
    /// The login name, unique in the tenant.
    pub id: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// Required when creating; when changing, left out keeps the old one.
    #[serde(default, skip_serializing)]
    #[schema(write_only)]
    pub password: Option<String>,
    /// The agent this user works as (坐席绑定).
    pub agent: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The revision read; send it back to refuse a concurrent change.
    pub revision: Option<u64>,
}

fn yes() -> bool {
    true
}

fn doc_of(v: Versioned<User>) -> UserDoc {
    let u = v.record;
    UserDoc {
        id: u.id,
        display_name: u.display_name,
        roles: u.roles.into_iter().filter_map(Role::from_model).collect(),
        password: None,
        agent: u.agent.map(|a| a.0),
        enabled: u.enabled,
        revision: Some(v.revision),
    }
}

/// Filters of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// Only users with this role.
    role: Option<Role>,
    /// Only the user bound to this agent.
    agent: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Checks a user document and the agent it binds.
async fn check(state: &AppState, tenant: &TenantId, doc: &UserDoc) -> ApiResult<()> {
    check_id("id", &doc.id)?;
    check_text("display_name", &doc.display_name, 200)?;
    if let Some(p) = &doc.password {
        check_password("password", p)?;
    }
    if let Some(a) = &doc.agent {
        let agent = state
            .store
            .get::<m::Agent>(tenant, a)
            .await?
            .ok_or_else(|| ApiError::field("agent", format!("no agent {a:?}")))?;
        if let Some(other) = agent.record.user.as_ref().filter(|u| **u != doc.id) {
            // Bound elsewhere, unless that user no longer claims it.
            let claims = state
                .store
                .get::<User>(tenant, other)
                .await?
                .is_some_and(|u| u.record.agent.as_ref() == Some(&agent.record.id));
            if claims {
                return Err(ApiError::conflict(format!(
                    "agent {a:?} is bound to user {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Keeps the agent side of a binding in step: `agent` names `user`, and
/// `previous` (if another agent) no longer does.
async fn bind(
    state: &AppState,
    tenant: &TenantId,
    user: &str,
    agent: Option<&AgentId>,
    previous: Option<&AgentId>,
) -> ApiResult<()> {
    if let Some(p) = previous.filter(|p| Some(*p) != agent) {
        match state
            .store
            .update::<m::Agent, _>(tenant, &p.0, |a| {
                let bound = a.user.as_deref() == Some(user);
                if bound {
                    a.user = None;
                }
                Ok(bound)
            })
            .await
        {
            Ok(_) => state.changed(tenant, m::ConfigKind::Agent, &p.0),
            Err(e) if e.kind() == switchboard_storage::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(a) = agent {
        state
            .store
            .update::<m::Agent, _>(tenant, &a.0, |rec| {
                let changed = rec.user.as_deref() != Some(user);
                rec.user = Some(user.to_owned());
                Ok(changed)
            })
            .await?;
        state.changed(tenant, m::ConfigKind::Agent, &a.0);
    }
    Ok(())
}

/// The tenant's users.
#[utoipa::path(get, path = "/users", tag = "config", params(UserQuery),
    responses((status = 200, body = Page<UserDoc>),
        (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Json<Page<UserDoc>>> {
    caller.require(WRITE, "listing users")?;
    let users: Vec<UserDoc> = state
        .store
        .list::<User>(&caller.tenant)
        .await?
        .into_iter()
        .map(doc_of)
        .filter(|u| q.role.is_none_or(|r| u.roles.contains(&r)))
        .filter(|u| q.agent.as_ref().is_none_or(|a| u.agent.as_ref() == Some(a)))
        .collect();
    Ok(Json(paginate(
        users,
        |u| &u.id,
        q.cursor.as_deref(),
        q.limit,
    )?))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 200, body = UserDoc), (status = 404, body = crate::error::ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<UserDoc>> {
    if caller.user != id {
        caller.require(WRITE, "reading another user")?;
    }
    Ok(Json(doc_of(
        load::<User>(&state, &caller.tenant, &id, "user").await?,
    )))
}

/// Creates a user (a password is required).
#[utoipa::path(post, path = "/users", tag = "config", request_body = UserDoc,
    responses((status = 201, body = UserDoc),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(doc): ApiJson<UserDoc>,
) -> ApiResult<(StatusCode, Json<UserDoc>)> {
    caller.require(WRITE, "creating users")?;
    check(&state, &caller.tenant, &doc).await?;
    let Some(password) = doc.password.clone() else {
        return Err(ApiError::field("password", "a new user needs a password"));
    };
    let user = User {
        tenant: caller.tenant.clone(),
        id: doc.id.clone(),
        display_name: doc.display_name.clone(),
        roles: doc.roles.iter().map(|r| (*r).into()).collect(),
        password_hash: Some(hash_password_async(password).await?),
        agent: doc.agent.clone().map(AgentId),
        enabled: doc.enabled,
        tokens_after: None,
    };
    let rev = create(&state, &user, "user").await?;
    bind(&state, &caller.tenant, &user.id, user.agent.as_ref(), None).await?;
    Ok((
        StatusCode::CREATED,
        Json(doc_of(Versioned {
            revision: rev,
            record: user,
        })),
    ))
}

/// Changes a user.
#[utoipa::path(put, path = "/users/{id}", tag = "config", params(("id" = String, Path)),
    request_body = UserDoc,
    responses((status = 200, body = UserDoc),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(doc): ApiJson<UserDoc>,
) -> ApiResult<Json<UserDoc>> {
    caller.require(WRITE, "changing users")?;
    let old = load::<User>(&state, &caller.tenant, &id, "user").await?;
    same_id(&id, &doc.id)?;
    check(&state, &caller.tenant, &doc).await?;
    let mut user = old.record.clone();
    user.display_name = doc.display_name.clone();
    user.roles = doc.roles.iter().map(|r| (*r).into()).collect();
    user.agent = doc.agent.clone().map(AgentId);
    user.enabled = doc.enabled;
    if let Some(p) = doc.password.clone() {
        user.password_hash = Some(hash_password_async(p).await?);
        // A new password signs the user out everywhere.
        user.tokens_after = Some(crate::common::now().after(std::time::Duration::from_millis(1)));
    }
    let rev = replace(&state, &user, old.revision, doc.revision, "user").await?;
    state.users.forget(&caller.tenant, &user.id);
    bind(
        &state,
        &caller.tenant,
        &user.id,
        user.agent.as_ref(),
        old.record.agent.as_ref(),
    )
    .await?;
    Ok(Json(doc_of(Versioned {
        revision: rev,
        record: user,
    })))
}

/// Deletes a user (its tokens are void at once).
#[utoipa::path(delete, path = "/users/{id}", tag = "config", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.require(WRITE, "deleting users")?;
    if id == caller.user {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    let old = load::<User>(&state, &caller.tenant, &id, "user").await?;
    remove::<User>(&state, &caller.tenant, &id, "user").await?;
    state.users.forget(&caller.tenant, &id);
    bind(&state, &caller.tenant, &id, None, old.record.agent.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
}
