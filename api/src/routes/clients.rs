//! `/backend/clients`: an agency creates, lists, disables and re-enables its client
//! tenants. Only agency keys may; a client key gets 403. A new client gets its API key
//! and postback secret once, in the creation response, and a default assistant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::tenants::{self, TenantKind};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::body::{path_uuid, JsonObject};
use crate::error::ApiError;
use crate::AppState;

fn agency(caller: &Caller) -> Result<uuid::Uuid, ApiError> {
    if caller.0.kind != "agency" {
        return Err(ApiError::Status {
            status: StatusCode::FORBIDDEN,
            code: "forbidden".into(),
            message: "only agency keys manage clients".into(),
            extra: Value::Null,
        });
    }
    Ok(caller.id())
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let agency = agency(&caller)?;
    let items = tenants::clients(&state.pool, agency).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let agency = agency(&caller)?;
    let name = body.req_str("name")?.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::invalid("name", "name must be 1 to 200 characters"));
    }
    let t = tenants::create(&state.pool, state.master_key()?, name, TenantKind::Client, Some(agency)).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"success": true, "tenant_id": t.tenant_id, "name": name, "api_key": t.api_key,
                    "postback_secret": t.postback_secret, "assistant_id": t.assistant_id}),
        ),
    ))
}

async fn set_disabled(state: &AppState, caller: &Caller, id: &str, disabled: bool) -> Result<Json<Value>, ApiError> {
    let agency = agency(caller)?;
    let id = path_uuid(id, "client")?;
    if !tenants::set_client_disabled(&state.pool, agency, id, disabled).await? {
        return Err(ApiError::NotFound("client"));
    }
    state.auth.clear();
    Ok(Json(json!({"success": true, "tenant_id": id, "disabled": disabled})))
}

pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, &caller, &id, true).await
}

pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, &caller, &id, false).await
}
