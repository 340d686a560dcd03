//! `POST /ai/process`: Leavo's contract. Validates every field (422 naming it), checks
//! the key may act for `tenant_id`, records the message and its burst in one transaction
//! and enqueues the burst's flush. `debounce: true` answers 202 as soon as that commit is
//! done; `debounce: false` waits for the burst's outcome up to `LEADFLOW_SYNC_TIMEOUT`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadflow_shared::db::bursts::{self, BurstStatus, DropReason};
use leadflow_shared::db::leads::{self, Accepted, Incoming, NotAnswered};
use leadflow_shared::db::{assistants, messages};
use leadflow_shared::domain::{Assistant, MessageType, Role};
use leadflow_shared::queue::{delay_from_ms, FlushBurst, ProcessMedia};
use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::body::JsonObject;
use crate::error::ApiError;
use crate::rate_limit::Decision;
use crate::AppState;

const MAX_ID_LEN: usize = 256;
const MAX_CONTENT_LEN: usize = 64 * 1024;

pub async fn process(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let tenant_id = body
        .opt_uuid("tenant_id")?
        .ok_or_else(|| ApiError::invalid("tenant_id", "tenant_id is required"))?;
    let tenant = caller.act_for(&state, tenant_id).await?;
    let limit = tenant
        .rate_limit_per_sec
        .map(|v| v.max(0) as u32)
        .unwrap_or(state.cfg.tenant_rate_limit);
    if let Decision::Limited(after) = state.limiter.check("ai", tenant.id, limit).await {
        return Err(ApiError::RateLimited(after));
    }

    let lead_id = body.req_str("lead_id")?.trim();
    if lead_id.is_empty() || lead_id.len() > MAX_ID_LEN {
        return Err(ApiError::invalid(
            "lead_id",
            format!("lead_id must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    let role = Role::parse(body.req_str("role")?)
        .ok_or_else(|| ApiError::invalid("role", format!("role must be one of: {}", Role::ALL)))?;
    let message_type = MessageType::parse(body.req_str("message_type")?).ok_or_else(|| {
        ApiError::invalid(
            "message_type",
            format!("message_type must be one of: {}", MessageType::ALL),
        )
    })?;
    // The seed requires content; for media it is the optional caption.
    let content = match (body.opt_str("content")?, message_type) {
        (Some(c), _) => c,
        (None, MessageType::Text) => return Err(ApiError::invalid("content", "content is required")),
        (None, _) => "",
    };
    if content.len() > MAX_CONTENT_LEN {
        return Err(ApiError::invalid(
            "content",
            format!("content must be at most {MAX_CONTENT_LEN} bytes"),
        ));
    }
    if message_type == MessageType::Text && content.trim().is_empty() {
        return Err(ApiError::invalid(
            "content",
            "content must not be empty for a text message",
        ));
    }
    let url = body.opt_str("url")?;
    match (message_type, url) {
        (MessageType::Text, _) => {}
        (_, None) => {
            return Err(ApiError::invalid(
                "url",
                format!("url is required when message_type is {}", message_type.as_str()),
            ))
        }
        (_, Some(u)) => check_http_url("url", u, &state.ssrf)?,
    }
    let debounce = body.opt_bool("debounce")?.unwrap_or(false);
    let postback_url = body.opt_str("postback_url")?;
    match (debounce, postback_url) {
        (true, None) => {
            return Err(ApiError::invalid(
                "postback_url",
                "postback_url is required when debounce is true",
            ))
        }
        (_, Some(u)) => check_http_url("postback_url", u, &state.ssrf)?,
        _ => {}
    }
    let message_id = match (body.opt_str("message_id")?, idempotency_header(&headers)?) {
        (Some(m), _) => Some(m),
        (None, h) => h,
    };
    if let Some(m) = message_id {
        if m.is_empty() || m.len() > MAX_ID_LEN {
            return Err(ApiError::invalid(
                "message_id",
                format!("message_id must be 1 to {MAX_ID_LEN} characters"),
            ));
        }
    }
    let assistant = assistant(&state, tenant.id, body.opt_uuid("assistant_id")?).await?;

    let request_id = leadflow_shared::request_id::current();
    let incoming = Incoming {
        tenant_id: tenant.id,
        lead_external_id: lead_id,
        role,
        content,
        message_type,
        url,
        media_handle: None,
        debounce,
        postback_url,
        idempotency_key: message_id,
        assistant: &assistant,
        channel_id: None,
        request_id: request_id.as_deref(),
    };
    // A synchronous caller holds a slot while it waits; a tenant over its share is told
    // before anything is stored.
    let _slot = if debounce {
        None
    } else {
        Some(
            state
                .sync_waits
                .acquire(tenant.id, state.cfg.sync_max_waits_per_tenant)
                .ok_or_else(|| ApiError::Status {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "too_many_waiting".into(),
                    message: format!(
                        "{} synchronous requests of this tenant are already waiting for replies; retry, or use debounce with a postback_url",
                        state.cfg.sync_max_waits_per_tenant
                    ),
                    extra: json!({}),
                })?,
        )
    };
    let accepted = {
        let _share = state.ingest_share.enter(tenant.id).await;
        leads::accept(&state.pool, &incoming).await?
    };
    leadflow_shared::metrics::message_accepted("ai_process");
    let media = match (&accepted, message_type) {
        (_, MessageType::Text) => None,
        (Accepted::Queued { message_id, .. }, _) => Some(*message_id),
        _ => None,
    };
    // Concurrently with the flush enqueue: with Redis down, each waits out its budget.
    let (_, response) = tokio::join!(
        async {
            if let Some(id) = media {
                enqueue_media(&state, tenant.id, id).await
            }
        },
        respond(&state, tenant.id, debounce, accepted)
    );
    response
}

/// Media work starts now, in parallel with the debounce window; a lost job is found by
/// the sweeper (and the generation waits for media, bounded by `LEADFLOW_MEDIA_WAIT`).
async fn enqueue_media(state: &AppState, tenant: Uuid, message_id: Uuid) {
    let job = ProcessMedia::first(message_id);
    if let Err(e) = state.queues.enqueue_for(tenant, &job, Duration::ZERO).await {
        tracing::error!(%message_id, error = %e, "media job not enqueued; the sweeper will pick it up");
    }
}

/// The named assistant or the tenant's default, cached for a few seconds (hot path).
async fn assistant(state: &AppState, tenant: Uuid, id: Option<Uuid>) -> Result<Assistant, ApiError> {
    if let Some(a) = state.assistants.get(&(tenant, id)) {
        return Ok(a);
    }
    let found = match id {
        Some(id) => assistants::find(&state.pool, tenant, id)
            .await?
            .ok_or_else(|| ApiError::invalid("assistant_id", "no such assistant for this tenant"))?,
        None => assistants::find_default(&state.pool, tenant)
            .await?
            .ok_or_else(|| ApiError::invalid("assistant_id", "this tenant has no assistant; create one first"))?,
    };
    state.assistants.put((tenant, id), found.clone());
    Ok(found)
}

fn idempotency_header(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "Idempotency-Key must be visible ASCII"))
        })
        .transpose()
}

/// `http(s)` URL with a host, and no literal private address (`ssrf::check_without_dns`):
/// refused here, before anything is stored or sent; names are checked again when resolved.
pub(crate) fn check_http_url(field: &str, raw: &str, policy: &leadflow_shared::ssrf::Policy) -> Result<(), ApiError> {
    policy
        .check_without_dns(raw)
        .map(drop)
        .map_err(|e| ApiError::invalid(field, format!("{field}: {e}")))
}

async fn respond(state: &AppState, tenant: Uuid, debounce: bool, accepted: Accepted) -> Result<Response, ApiError> {
    match accepted {
        Accepted::Queued {
            message_id,
            burst_id,
            new_burst,
            due_in_ms,
        } => {
            // Register before enqueueing so the wake-up cannot be missed.
            let waiter = (!debounce).then(|| state.waiters.register(burst_id));
            if new_burst {
                enqueue_flush(state, tenant, burst_id, due_in_ms).await;
            }
            match waiter {
                None => Ok(queued(message_id, false)),
                Some(rx) => wait_for_reply(state, message_id, burst_id, rx).await,
            }
        }
        Accepted::Duplicate { message_id, burst_id } => match (debounce, burst_id) {
            (false, Some(burst_id)) => {
                let rx = state.waiters.register(burst_id);
                wait_for_reply(state, message_id, burst_id, rx).await
            }
            _ => Ok(queued(message_id, true)),
        },
        Accepted::Recorded {
            message_id,
            why,
            paused_until,
        } => {
            let reason = match why {
                NotAnswered::Role => "recorded: only user messages are answered",
                NotAnswered::HumanPause => "human_takeover: the AI is paused for this lead",
            };
            let mut out =
                json!({"success": true, "message_id": message_id, "reason": reason, "paused_until": paused_until});
            if debounce {
                out["queued"] = json!(false);
                Ok((StatusCode::ACCEPTED, Json(out)).into_response())
            } else {
                out["response"] = serde_json::Value::Null;
                Ok((StatusCode::OK, Json(out)).into_response())
            }
        }
    }
}

fn queued(message_id: Uuid, duplicate: bool) -> Response {
    let mut out = json!({"success": true, "queued": true, "message_id": message_id});
    if duplicate {
        out["duplicate"] = json!(true);
    }
    (StatusCode::ACCEPTED, Json(out)).into_response()
}

/// The message is already durable in PostgreSQL; if Redis refuses the job, the
/// scheduler's sweeper enqueues it once Redis is back, so the caller still gets success.
async fn enqueue_flush(state: &AppState, tenant: Uuid, burst_id: Uuid, due_in_ms: i64) {
    let delay = delay_from_ms(due_in_ms);
    let job = FlushBurst {
        burst_id,
        at_ms: chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64,
    };
    if let Err(e) = state.queues.enqueue_for(tenant, &job, delay).await {
        tracing::error!(%burst_id, error = %e, "flush job not enqueued; the sweeper will pick the burst up");
    }
}

/// How often a synchronous caller re-reads its burst without a notification.
const SAFETY_POLL: Duration = Duration::from_secs(5);

async fn wait_for_reply(
    state: &AppState,
    message_id: Uuid,
    burst_id: Uuid,
    mut rx: tokio::sync::oneshot::Receiver<()>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + state.cfg.sync_timeout;
    let result = loop {
        if let Some(b) = bursts::get(&state.pool, burst_id).await? {
            match b.status {
                BurstStatus::Done => {
                    let reply = messages::reply_of(&state.pool, burst_id).await?;
                    break Ok((
                        StatusCode::OK,
                        Json(json!({"success": true, "response": reply, "message_id": message_id})),
                    )
                        .into_response());
                }
                BurstStatus::Failed => {
                    let error = json!({
                        "code": b.error_code.as_deref().unwrap_or("ai_failed"),
                        "message": b.error_message.as_deref().unwrap_or("the AI reply failed"),
                    });
                    break Ok((
                        StatusCode::BAD_GATEWAY,
                        Json(json!({"success": false, "response": null, "message_id": message_id, "error": error})),
                    )
                        .into_response());
                }
                BurstStatus::Dropped => {
                    let reason = match b.reason {
                        Some(DropReason::TenantDisabled) => "tenant_disabled: the tenant is disabled",
                        Some(DropReason::Erased) => "erased: the lead was erased",
                        Some(DropReason::Retried) => "retried: an operator retried it as a new burst",
                        Some(DropReason::HumanTakeover) | None => "human_takeover: the AI is paused for this lead",
                    };
                    break Ok((
                        StatusCode::OK,
                        Json(json!({"success": true, "response": null, "message_id": message_id, "reason": reason})),
                    )
                        .into_response());
                }
                BurstStatus::Open | BurstStatus::Generating => {}
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break Err(ApiError::Status {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "timeout".into(),
                message: format!(
                    "no reply within {:?}; it is still being produced and will be stored (see job_id)",
                    state.cfg.sync_timeout
                ),
                extra: json!({"job_id": burst_id, "message_id": message_id}),
            });
        }
        // Woken by the worker's notification (Redis pub/sub); the slow re-read only covers
        // a notification lost to a Redis blip.
        let poll = (deadline - now).min(SAFETY_POLL);
        tokio::select! {
            _ = &mut rx => { rx = state.waiters.register(burst_id); }
            _ = tokio::time::sleep(poll) => {}
        }
    };
    state.waiters.forget(burst_id);
    result
}
