//! A lead's channels and the people attending it:
//! - `GET /backend/leads/{lead_id}/channels` and `PATCH …/channels/{id}` (assistant,
//!   department, assigned user, primary) in Leavo's shape;
//! - `POST /backend/leads/{lead_id}/messages`: an operator writes to the lead through a
//!   channel. The message is recorded as a `human` turn (the AI steps back for the
//!   assistant's `human_pause_minutes` and a pending burst is dropped), goes out through the
//!   provider via the outbox, and the operator becomes an attendant;
//! - `GET /backend/leads/{lead_id}/attendants`;
//! - `POST /backend/leads/{lead_id}/release` (optional `channel_id`): the AI answers again now.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::lead_channels::{self, LeadChannelFields};
use leadflow_shared::db::leads::{self, Accepted, Incoming};
use leadflow_shared::db::{assistants, channels, identities, operators, outbox};
use leadflow_shared::domain::{MessageType, Role};
use leadflow_shared::queue::SendMessage;
use serde_json::{json, Value};
use uuid::Uuid;

use super::refs::{self, Kind};
use super::TenantQuery;
use crate::auth::Caller;
use crate::body::{path_uuid, JsonObject, OptionalJsonObject};
use crate::error::ApiError;
use crate::AppState;

async fn lead(state: &AppState, caller: &Caller, q: &TenantQuery, lead_id: &str) -> Result<(Uuid, Uuid), ApiError> {
    let tenant = caller.tenant_for(state, q.tenant_id).await?;
    let lead = leads::find_id(&state.pool, tenant, lead_id)
        .await?
        .ok_or(ApiError::NotFound("lead"))?;
    Ok((tenant, lead))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, lead) = lead(&state, &caller, &q, &lead_id).await?;
    let items = lead_channels::for_lead(&state.pool, lead).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((lead_id, id)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let (tenant, lead) = lead(&state, &caller, &q, &lead_id).await?;
    let id = path_uuid(&id, "lead channel")?;
    let current = lead_channels::find(&state.pool, lead, id)
        .await?
        .ok_or(ApiError::NotFound("lead channel"))?;
    let mut f = LeadChannelFields {
        assistant_id: current.assistant_id,
        department_id: current.department_id,
        assigned_user_id: current.assigned_user_id,
        is_primary: current.is_primary,
    };
    if let Some(a) = refs::optional(&state, tenant, &body, "assistant_id", Kind::Assistant).await? {
        f.assistant_id = a;
    }
    if let Some(d) = refs::optional(&state, tenant, &body, "department_id", Kind::Department).await? {
        f.department_id = d;
    }
    if let Some(u) = refs::optional(&state, tenant, &body, "assigned_user_id", Kind::User).await? {
        f.assigned_user_id = u;
    }
    if let Some(p) = body.opt_bool("is_primary")? {
        if !p && current.is_primary {
            return Err(ApiError::invalid(
                "is_primary",
                "make another channel primary instead; a lead always has one",
            ));
        }
        f.is_primary = p;
    }
    lead_channels::update(&state.pool, lead, id, &f).await?;
    let updated = lead_channels::find(&state.pool, lead, id)
        .await?
        .ok_or(ApiError::NotFound("lead channel"))?;
    Ok(Json(serde_json::to_value(updated).unwrap_or_default()))
}

pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (tenant, lead) = lead(&state, &caller, &q, &lead_id).await?;
    let channel_id = body
        .opt_uuid("channel_id")?
        .ok_or_else(|| ApiError::invalid("channel_id", "channel_id is required"))?;
    let user_id = body
        .opt_uuid("user_id")?
        .ok_or_else(|| ApiError::invalid("user_id", "user_id is required"))?;
    let content = body.req_str("content")?.trim();
    if content.is_empty() || content.len() > 4096 {
        return Err(ApiError::invalid("content", "content must be 1 to 4096 characters"));
    }
    let ch = channels::find(&state.pool, tenant, channel_id)
        .await?
        .ok_or_else(|| ApiError::invalid("channel_id", "no such channel for this tenant"))?;
    if ch.status != "active" {
        return Err(ApiError::invalid("channel_id", "the channel is inactive"));
    }
    if operators::find(&state.pool, tenant, user_id).await?.is_none() {
        return Err(ApiError::invalid("user_id", "no such user for this tenant"));
    }
    let reachable =
        identities::for_lead(&state.pool, lead)
            .await?
            .iter()
            .any(|(kind, _)| match ch.channel_type.as_str() {
                "whatsapp" | "sms" => matches!(kind.as_str(), "phone" | "wa_lid"),
                "telegram" => kind == "telegram",
                "email" => kind == "email",
                _ => false,
            });
    if !reachable {
        return Err(ApiError::invalid(
            "channel_id",
            format!("the lead has no {} identity to write to", ch.channel_type),
        ));
    }
    let assistant = match ch.assistant_id {
        Some(a) => assistants::get(&state.pool, a).await?,
        None => assistants::find_default(&state.pool, tenant)
            .await?
            .ok_or_else(|| ApiError::invalid("channel_id", "the tenant has no assistant"))?,
    };
    // Recorded as the business speaking: pauses the AI and drops a pending burst.
    let request_id = leadflow_shared::request_id::current();
    let incoming = Incoming {
        tenant_id: tenant,
        lead_external_id: &lead_id,
        role: Role::Human,
        content,
        message_type: MessageType::Text,
        url: None,
        media_handle: None,
        debounce: true,
        postback_url: None,
        idempotency_key: None,
        assistant: &assistant,
        channel_id: Some(ch.id),
        request_id: request_id.as_deref(),
    };
    let (message_id, paused_until) = match leads::accept(&state.pool, &incoming).await? {
        Accepted::Recorded {
            message_id,
            paused_until,
            ..
        } => (message_id, paused_until),
        other => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a human message was not recorded: {other:?}"
            )))
        }
    };
    let outbox_id = outbox::create_manual(&state.pool, tenant, ch.id, lead, user_id, message_id, content).await?;
    lead_channels::touch(&state.pool, tenant, lead, ch.id, false).await?;
    lead_channels::attend(&state.pool, lead, ch.id, Some(user_id)).await?;
    // The outbox row is durable; a lost job is found by the sweeper.
    if let Err(e) = state
        .queues
        .enqueue(&SendMessage::first(outbox_id), Duration::ZERO)
        .await
    {
        tracing::error!(%outbox_id, error = %e, "send job not enqueued");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"success": true, "message_id": message_id, "outbox_id": outbox_id, "paused_until": paused_until})),
    ))
}

pub async fn attendants(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let (_, lead) = lead(&state, &caller, &q, &lead_id).await?;
    let items = lead_channels::attendants(&state.pool, lead).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

/// Body (optional): `channel_id` to release one lead channel; without it, every pause
/// on the lead ends.
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<TenantQuery>,
    body: OptionalJsonObject,
) -> Result<Json<Value>, ApiError> {
    let (tenant, lead) = lead(&state, &caller, &q, &lead_id).await?;
    let channel = body.0.opt_uuid("channel_id")?;
    if let Some(c) = channel {
        channels::find(&state.pool, tenant, c)
            .await?
            .ok_or_else(|| ApiError::invalid("channel_id", "no such channel for this tenant"))?;
    }
    leads::release(&state.pool, lead, channel).await?;
    Ok(Json(
        json!({"success": true, "channel_id": channel, "paused_until": null}),
    ))
}
