//! `/backend/users`: the operators who answer leads by hand. `name` is required; `email`
//! is unique per tenant when given; `department_id` must be one of the tenant's.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::operators::{self, Operator, OperatorFields, Updated};
use serde_json::{json, Value};
use uuid::Uuid;

use super::refs::{self, Kind};
use super::TenantQuery;
use crate::auth::Caller;
use crate::body::{path_uuid, JsonObject};
use crate::error::ApiError;
use crate::AppState;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let items = operators::list(&state.pool, tenant).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

/// Applies the body onto `f`, validating each field.
async fn merge(
    state: &AppState,
    tenant: Uuid,
    mut f: OperatorFields,
    body: &JsonObject,
) -> Result<OperatorFields, ApiError> {
    if let Some(name) = body.opt_str("name")? {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ApiError::invalid("name", "name must be 1 to 200 characters"));
        }
        f.name = name.to_string();
    }
    if body.0.contains_key("email") {
        f.email = match body.opt_str("email")?.map(str::trim) {
            None | Some("") => None,
            Some(e) if e.len() <= 320 && e.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.')) => {
                Some(e.to_string())
            }
            Some(_) => return Err(ApiError::invalid("email", "email must be an e-mail address")),
        };
    }
    if let Some(d) = refs::optional(state, tenant, body, "department_id", Kind::Department).await? {
        f.department_id = d;
    }
    Ok(f)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Operator>), ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    if !body.has("name") {
        return Err(ApiError::invalid("name", "name is required"));
    }
    let empty = OperatorFields {
        name: String::new(),
        email: None,
        department_id: None,
    };
    let f = merge(&state, tenant, empty, &body).await?;
    let o = operators::insert(&state.pool, tenant, &f)
        .await?
        .ok_or_else(|| ApiError::invalid("email", "another user of this tenant has this email"))?;
    Ok((StatusCode::CREATED, Json(o)))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Operator>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "user")?;
    let o = operators::find(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(o))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<Json<Operator>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "user")?;
    let current = operators::find(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let f = OperatorFields {
        name: current.name,
        email: current.email,
        department_id: current.department_id,
    };
    let f = merge(&state, tenant, f, &body).await?;
    match operators::update(&state.pool, tenant, id, &f).await? {
        Updated::Done(o) => Ok(Json(o)),
        Updated::NotFound => Err(ApiError::NotFound("user")),
        Updated::EmailTaken => Err(ApiError::invalid("email", "another user of this tenant has this email")),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "user")?;
    if !operators::delete(&state.pool, tenant, id).await? {
        return Err(ApiError::NotFound("user"));
    }
    Ok(StatusCode::NO_CONTENT)
}
