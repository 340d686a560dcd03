//! `/backend/notification-configs`: which events (`channel.disconnected`,
//! `channel.reconnected`, `integration.needs_reauth`, `postback.exhausted`, `ai.failed`)
//! a tenant hears about, and where: a signed webhook (like a postback), an e-mail through
//! one of its e-mail channels, or a WhatsApp message through one of its WhatsApp channels.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::channels;
use leadflow_shared::db::notifications::{self, ConfigFields, Event, NotificationConfig};
use serde_json::{json, Value};

use super::ai_process::check_http_url;
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
    let items = notifications::list(&state.pool, tenant).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<NotificationConfig>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "notification config")?;
    notifications::find(&state.pool, tenant, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("notification config"))
}

fn events(body: &JsonObject) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "events",
            format!(
                "events must be a non-empty list of: {}",
                Event::ALL.map(Event::as_str).join(", ")
            ),
        )
    };
    let Some(Value::Array(items)) = body.0.get("events") else {
        return Err(bad());
    };
    let mut out = Vec::new();
    for item in items {
        let e = item.as_str().and_then(Event::parse).ok_or_else(bad)?.as_str();
        if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<(StatusCode, Json<NotificationConfig>), ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let events = events(&body)?;
    let target = body.req_str("target")?;
    let mut f = ConfigFields {
        events,
        target: target.to_string(),
        url: None,
        email: None,
        channel_id: None,
        phone: None,
    };
    match target {
        "webhook" => {
            let url = body.req_str("url")?;
            check_http_url("url", url, &state.ssrf)?;
            f.url = Some(url.to_string());
        }
        "email" | "whatsapp" => {
            let channel_id = body
                .opt_uuid("channel_id")?
                .ok_or_else(|| ApiError::invalid("channel_id", "channel_id is required for this target"))?;
            let ch = channels::find(&state.pool, tenant, channel_id)
                .await?
                .ok_or_else(|| ApiError::invalid("channel_id", "no such channel"))?;
            if ch.channel_type != target {
                return Err(ApiError::invalid(
                    "channel_id",
                    format!(
                        "a {target} notification needs a {target} channel; this one is {}",
                        ch.channel_type
                    ),
                ));
            }
            f.channel_id = Some(channel_id);
            if target == "email" {
                let email = body.req_str("email")?.trim();
                if !email.contains('@') || email.len() > 320 {
                    return Err(ApiError::invalid("email", "email must be an e-mail address"));
                }
                f.email = Some(email.to_string());
            } else {
                let phone = leadflow_shared::inbound::e164(body.req_str("phone")?)
                    .ok_or_else(|| ApiError::invalid("phone", "phone must be a phone number with country code"))?;
                f.phone = Some(phone);
            }
        }
        _ => return Err(ApiError::invalid("target", "target must be webhook, email or whatsapp")),
    }
    let c = notifications::create(&state.pool, tenant, &f).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "notification config")?;
    if !notifications::delete(&state.pool, tenant, id).await? {
        return Err(ApiError::NotFound("notification config"));
    }
    Ok(StatusCode::NO_CONTENT)
}
