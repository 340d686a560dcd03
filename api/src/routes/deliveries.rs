//! `/backend/deliveries`: postbacks and their attempts; a failed one can be sent again
//! by hand (same `webhook-id`, one attempt).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::deliveries::{self, DeliveryStatus};
use leadflow_shared::queue::DeliverPostback;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::body::path_uuid;
use crate::error::ApiError;
use crate::AppState;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "status must be one of: pending, delivered, failed"))?,
        ),
    };
    let tenants = caller.visible_tenants(&state).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = deliveries::list(&state.pool, &tenants, status, limit).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = path_uuid(&id, "delivery")?;
    let tenants = caller.visible_tenants(&state).await?;
    let d = deliveries::find_for_tenants(&state.pool, &tenants, id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let attempts = deliveries::attempts(&state.pool, id).await?;
    let payload: Value = serde_json::from_str(&d.payload).unwrap_or(Value::Null);
    Ok(Json(
        json!({"success": true, "data": d, "payload": payload, "attempts": attempts}),
    ))
}

pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = path_uuid(&id, "delivery")?;
    let tenants = caller.visible_tenants(&state).await?;
    let d = deliveries::find_for_tenants(&state.pool, &tenants, id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let Some(attempt) = deliveries::reopen(&state.pool, d.id).await? else {
        return Err(ApiError::Status {
            status: StatusCode::CONFLICT,
            code: "not_failed".into(),
            message: format!(
                "only failed deliveries can be retried; this one is {}",
                d.status.as_str()
            ),
            extra: Value::Null,
        });
    };
    let job = DeliverPostback {
        delivery_id: d.id,
        attempt,
        manual: true,
        sweep: None,
    };
    state.queues.enqueue(&job, Duration::ZERO).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"success": true, "delivery_id": d.id, "attempt": attempt, "webhook_id": d.webhook_id})),
    ))
}
