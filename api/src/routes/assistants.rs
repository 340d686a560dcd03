//! `/backend/assistants`: the prompt, model and timing that answer a tenant's leads.
//! Every field is validated with a 422 naming it; a PATCH is merged onto the stored row
//! and validated whole (so `max_wait_seconds` can never drop below `debounce_seconds`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::assistants;
use leadflow_shared::domain::{Assistant, AssistantSettings};

use super::TenantQuery;
use crate::auth::Caller;
use crate::body::{path_uuid, JsonObject};
use crate::error::ApiError;
use crate::AppState;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let items = assistants::list(&state.pool, tenant).await?;
    Ok(Json(serde_json::json!({"success": true, "data": items})))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Assistant>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "assistant")?;
    let a = assistants::find(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("assistant"))?;
    Ok(Json(a))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Assistant>), ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    if !body.has("name") {
        return Err(ApiError::invalid("name", "name is required"));
    }
    let base = AssistantSettings {
        is_default: false,
        ..AssistantSettings::default()
    };
    let settings = merge(base, &body)?;
    let mut conn = state.pool.acquire().await?;
    let a = assistants::insert(&mut conn, tenant, &settings).await?;
    state.assistants.clear();
    Ok((StatusCode::CREATED, Json(a)))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<Json<Assistant>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "assistant")?;
    let current = assistants::find(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("assistant"))?;
    let settings = merge(current.settings, &body)?;
    let updated = assistants::update(&state.pool, tenant, id, &settings).await?;
    state.assistants.clear();
    Ok(Json(updated))
}

fn text(body: &JsonObject, field: &str, max: usize, allow_empty: bool) -> Result<Option<String>, ApiError> {
    let Some(v) = body.opt_str(field)? else { return Ok(None) };
    if (!allow_empty && v.trim().is_empty()) || v.len() > max {
        let min = if allow_empty { 0 } else { 1 };
        return Err(ApiError::invalid(
            field,
            format!("{field} must be {min} to {max} characters"),
        ));
    }
    Ok(Some(v.to_string()))
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    v: Option<T>,
    lo: T,
    hi: T,
) -> Result<Option<T>, ApiError> {
    match v {
        Some(x) if x < lo || x > hi => Err(ApiError::invalid(
            field,
            format!("{field} must be between {lo} and {hi}"),
        )),
        other => Ok(other),
    }
}

/// Applies the body's fields onto `s`, validating each.
fn merge(mut s: AssistantSettings, body: &JsonObject) -> Result<AssistantSettings, ApiError> {
    if let Some(v) = text(body, "name", 200, false)? {
        s.name = v;
    }
    if let Some(v) = text(body, "model", 200, false)? {
        s.model = v;
    }
    if let Some(v) = text(body, "system_prompt", 100_000, true)? {
        s.system_prompt = v;
    }
    if let Some(v) = in_range("temperature", body.opt_f64("temperature")?, 0.0, 2.0)? {
        s.temperature = v;
    }
    if let Some(v) = in_range("max_tokens", body.opt_i32("max_tokens")?, 1, 128_000)? {
        s.max_tokens = v;
    }
    if let Some(v) = in_range("debounce_seconds", body.opt_f64("debounce_seconds")?, 0.0, 3600.0)? {
        s.debounce_seconds = v;
    }
    if let Some(v) = in_range("max_wait_seconds", body.opt_f64("max_wait_seconds")?, 0.0, 86_400.0)? {
        s.max_wait_seconds = v;
    }
    if let Some(v) = in_range("history_limit", body.opt_i32("history_limit")?, 0, 1000)? {
        s.history_limit = v;
    }
    if let Some(v) = in_range("human_pause_minutes", body.opt_i32("human_pause_minutes")?, 0, 525_600)? {
        s.human_pause_minutes = v;
    }
    if let Some(v) = body.opt_bool("is_default")? {
        s.is_default = v;
    }
    if let Some(v) = text(body, "transcription_model", 200, false)? {
        s.transcription_model = v;
    }
    if let Some(v) = text(body, "transcription_language", 8, true)? {
        let iso_639_1 = v.len() == 2 && v.chars().all(|c| c.is_ascii_lowercase());
        if !(v.is_empty() || iso_639_1) {
            return Err(ApiError::invalid(
                "transcription_language",
                "transcription_language must be an ISO-639-1 code such as \"pt\", or empty",
            ));
        }
        s.transcription_language = v;
    }
    if let Some(v) = text(body, "transcription_prompt", 2000, true)? {
        s.transcription_prompt = v;
    }
    if let Some(v) = body.opt_str("image_detail")? {
        if !matches!(v, "auto" | "low" | "high") {
            return Err(ApiError::invalid(
                "image_detail",
                "image_detail must be one of: auto, low, high",
            ));
        }
        s.image_detail = v.to_string();
    }
    if let Some(v) = body.opt_bool("image_inline")? {
        s.image_inline = v;
    }
    if let Some(v) = body.opt_bool("pdf_as_file")? {
        s.pdf_as_file = v;
    }
    if let Some(v) = body.opt_bool("split_replies")? {
        s.split_replies = v;
    }
    if s.max_wait_seconds < s.debounce_seconds {
        return Err(ApiError::invalid(
            "max_wait_seconds",
            "max_wait_seconds must be at least debounce_seconds",
        ));
    }
    Ok(s)
}
