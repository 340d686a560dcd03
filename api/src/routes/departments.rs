//! `/backend/departments`: a tenant's departments (sales, support…), which channels and
//! operators belong to.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::departments::{self, Department};
use serde_json::{json, Value};

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
    let items = departments::list(&state.pool, tenant).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Department>), ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let name = body.req_str("name")?.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "name must be 1 to 200 characters"));
    }
    let d = departments::insert(&state.pool, tenant, name)
        .await?
        .ok_or_else(|| ApiError::invalid("name", "a department with this name already exists"))?;
    Ok((StatusCode::CREATED, Json(d)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "department")?;
    if !departments::delete(&state.pool, tenant, id).await? {
        return Err(ApiError::NotFound("department"));
    }
    Ok(StatusCode::NO_CONTENT)
}
