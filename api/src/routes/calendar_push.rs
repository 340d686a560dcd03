//! `POST /webhooks/google/calendar`: Google's push notifications. They carry no event data,
//! only headers: the channel (`X-Goog-Channel-ID`), our per-channel secret
//! (`X-Goog-Channel-Token`), the watched resource (`X-Goog-Resource-ID`), what happened
//! (`X-Goog-Resource-State`: `sync` when the channel is created, `exists`/`not_exists` on
//! changes) and an increasing `X-Goog-Message-Number`. A known channel with the wrong token
//! or resource is a 401; a push not newer than the last one seen is acknowledged and
//! dropped; a change enqueues a sync of the calendar. Unknown or stopped channels are
//! acknowledged and ignored, as Google advises (anything but 2xx is retried).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use leadflow_shared::channel::secrets_match;
use leadflow_shared::db::calendars;
use leadflow_shared::queue::{CalendarJob, CalendarStep};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

pub async fn receive(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let ignored = |why: &str| Ok(Json(json!({"success": true, "ignored": why})));
    let Some(id) = header("x-goog-channel-id").and_then(|v| uuid::Uuid::parse_str(v).ok()) else {
        return ignored("unknown channel");
    };
    let Some(ch) = calendars::get(&state.pool, id).await? else {
        return ignored("unknown channel");
    };
    let expected = ch.push_token(state.master_key()?)?;
    use secrecy::ExposeSecret;
    let token_ok = header("x-goog-channel-token").is_some_and(|t| secrets_match(t, expected.expose_secret()));
    let resource_ok = match (&ch.resource_id, header("x-goog-resource-id")) {
        (Some(stored), Some(given)) => secrets_match(given, stored),
        // The first `sync` may arrive before the watch call returned the resource id.
        (None, _) => true,
        (Some(_), None) => false,
    };
    if !(token_ok && resource_ok) {
        return Err(ApiError::Unauthorized);
    }
    if !ch.status.is_live() {
        return ignored("the channel is stopped");
    }
    let number = header("x-goog-message-number")
        .and_then(|n| n.trim().parse::<i64>().ok())
        .ok_or_else(|| ApiError::invalid("X-Goog-Message-Number", "X-Goog-Message-Number must be a number"))?;
    if !calendars::push_seen(&state.pool, ch.id, number).await? {
        return ignored("duplicate or stale message number");
    }
    let resource_state = header("x-goog-resource-state").unwrap_or_default();
    let wants_sync = match resource_state {
        // The channel's first message: sync only if the calendar never was (to get a token).
        "sync" => calendars::sync_token(&state.pool, ch.integration_id, &ch.calendar_id)
            .await?
            .is_none(),
        "exists" | "not_exists" => true,
        _ => false,
    };
    if wants_sync {
        let job = CalendarJob {
            step: CalendarStep::Sync,
            channel_id: ch.id,
            n: number,
            resumed: None,
        };
        if let Err(e) = state.queues.enqueue(&job, std::time::Duration::ZERO).await {
            // Forget the number so Google's retry of this push is not taken for a duplicate.
            calendars::push_forgotten(&state.pool, ch.id, number).await?;
            return Err(e.into());
        }
    }
    Ok(Json(json!({"success": true, "sync": wants_sync})))
}
