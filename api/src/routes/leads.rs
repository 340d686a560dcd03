//! `GET /backend/leads/{lead_id}/messages`: the conversation as stored, oldest first,
//! each medium with what it became (`media`: status, transcript or PDF text, error), and
//! each message sent through a channel with what became of it (`delivery`: the provider's
//! id, its state — `pending`, `sent`, `delivered`, `read` or `failed` with the provider's
//! code and a readable reason — each part's state and history). Such a message's `status`
//! is its delivery state. An unknown lead and another tenant's lead look the same: 404.

use axum::extract::{Path, Query, State};
use axum::Json;
use leadflow_shared::db::{leads, media, messages, outbox};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

#[derive(Deserialize)]
pub struct MessagesQuery {
    tenant_id: Option<Uuid>,
    limit: Option<i64>,
}

pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(lead_id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let lead = leads::find_id(&state.pool, tenant, &lead_id)
        .await?
        .ok_or(ApiError::NotFound("lead"))?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let items = messages::for_lead(&state.pool, lead, limit).await?;
    let media_ids: Vec<Uuid> = items
        .iter()
        .filter(|m| m.message_type != "text")
        .map(|m| m.id)
        .collect();
    let mut understood = media::for_messages(&state.pool, &media_ids, false).await?;
    let sent_ids: Vec<Uuid> = items.iter().filter(|m| m.role != "user").map(|m| m.id).collect();
    let mut deliveries = outbox::deliveries_of(&state.pool, &sent_ids).await?;
    let items: Vec<serde_json::Value> = items
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
        .collect();
    Ok(Json(
        serde_json::json!({"success": true, "lead_id": lead_id, "tenant_id": tenant, "data": items}),
    ))
}
