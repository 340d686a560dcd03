//! `GET /backend/leads/{lead_id}/messages`: the conversation as stored, oldest first,
//! each medium with what it became (`media`: status, transcript or PDF text, error), and
//! each message sent through a channel with what became of it (`delivery`: the provider's
//! id, its state — `pending`, `sent`, `delivered`, `read` or `failed` with the provider's
//! code and a readable reason — each part's state and history). Such a message's `status`
//! is its delivery state. An unknown lead and another tenant's lead look the same: 404.
//!
//! `DELETE /backend/leads/{lead_id}` erases the lead's personal data and
//! `GET /backend/leads/{lead_id}/export` returns all of it (see `db::lead_data`).

use axum::extract::{Path, Query, State};
use axum::Json;
use leadflow_shared::db::{identities, lead_channels, lead_data, leads, media, messages, outbox};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// `?tenant_id=` (an agency acting for its client) and, for the conversation, `?limit=`.
#[derive(Deserialize)]
pub struct LeadQuery {
    tenant_id: Option<Uuid>,
    limit: Option<i64>,
}

pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<LeadQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let lead = find(&state, tenant, &lead_id).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let items = conversation(&state, lead, limit).await?;
    Ok(Json(
        serde_json::json!({"success": true, "lead_id": lead_id, "tenant_id": tenant, "data": items}),
    ))
}

/// An unknown lead, another tenant's and an erased one all look the same: 404.
async fn find(state: &AppState, tenant: Uuid, lead_id: &str) -> Result<Uuid, ApiError> {
    leads::find_id(&state.pool, tenant, lead_id)
        .await?
        .ok_or(ApiError::NotFound("lead"))
}

/// The lead's messages, oldest first, each with its media and delivery state.
async fn conversation(state: &AppState, lead: Uuid, limit: i64) -> Result<Vec<serde_json::Value>, ApiError> {
    let items = messages::for_lead(&state.pool, lead, limit).await?;
    let media_ids: Vec<Uuid> = items
        .iter()
        .filter(|m| m.message_type != "text")
        .map(|m| m.id)
        .collect();
    let mut understood = media::for_messages(&state.pool, &media_ids, false).await?;
    let sent_ids: Vec<Uuid> = items.iter().filter(|m| m.role != "user").map(|m| m.id).collect();
    let mut deliveries = outbox::deliveries_of(&state.pool, &sent_ids).await?;
    Ok(items
        .into_iter()
        .map(|m| {
            let extra = understood.remove(&m.id);
            let mut v = serde_json::to_value(&m).unwrap_or_default();
            if let Some(x) = extra {
                v["media"] = serde_json::to_value(&x).unwrap_or_default();
            }
            if let Some(d) = deliveries.remove(&m.id) {
                v["status"] = serde_json::to_value(d.status).unwrap_or_default();
                v["delivery"] = serde_json::to_value(&d).unwrap_or_default();
            }
            v
        })
        .collect())
}

/// `DELETE /backend/leads/{lead_id}`: erases the lead's personal data (see
/// [`lead_data::erase`]); says what was erased. A repeat is a 404.
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<LeadQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let lead = find(&state, tenant, &lead_id).await?;
    let erased = lead_data::erase(&state.pool, tenant, lead)
        .await?
        .ok_or(ApiError::NotFound("lead"))?;
    tracing::info!(%tenant, lead = %lead, "lead erased");
    Ok(Json(serde_json::json!({
        "success": true,
        "lead_id": lead_id,
        "tenant_id": tenant,
        "erased": erased,
        "kept": "an anonymous record: the number of conversations (bursts) with their statuses and times, and these counts",
    })))
}

/// `GET /backend/leads/{lead_id}/export`: everything stored about the lead, as JSON.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<LeadQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let lead = find(&state, tenant, &lead_id).await?;
    let row = lead_data::lead(&state.pool, lead)
        .await?
        .ok_or(ApiError::NotFound("lead"))?;
    let identities: Vec<serde_json::Value> = identities::for_lead(&state.pool, lead)
        .await?
        .into_iter()
        .map(|(kind, value)| serde_json::json!({"kind": kind, "value": value}))
        .collect();
    let channels = lead_channels::for_lead(&state.pool, lead).await?;
    let attendants = lead_channels::attendants(&state.pool, lead).await?;
    let messages = conversation(&state, lead, i64::MAX).await?;
    let postbacks = lead_data::postbacks(&state.pool, lead).await?;
    Ok(Json(serde_json::json!({
        "success": true,
        "tenant_id": tenant,
        "exported_at": chrono::Utc::now(),
        "lead": row,
        "identities": identities,
        "channels": channels,
        "attendants": attendants,
        "messages": messages,
        "postbacks": postbacks,
    })))
}
