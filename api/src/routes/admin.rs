//! The operator's console API, `/admin/api/*`: every queue's backlog (and pausing one),
//! everything that failed for good across tenants and kinds (retry, discard, bulk retry),
//! tenants with their counts (disable, enable), and channels by connection state.
//!
//! An operator is not a tenant: `Authorization: Bearer $LEADFLOW_ADMIN_TOKEN`, compared
//! in constant time. Without `LEADFLOW_ADMIN_TOKEN` the whole surface is off and answers
//! 404 like any unknown route.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use leadflow_shared::channel::Connection;
use leadflow_shared::db::failures::{self, FailureKind, Filter, Reopened};
use leadflow_shared::queue::QueueKind;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::body::path_uuid;
use crate::error::ApiError;
use crate::AppState;

/// An authenticated operator.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = &state.cfg.admin_token else {
            return Err(ApiError::NotFound("route"));
        };
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if leadflow_shared::channel::secrets_match(given, token.expose_secret()) {
            Ok(Operator)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// `GET /admin`, `/admin/console.js`, `/admin/console.css`: the console's page, a small
/// script over this API. Every asset is served from the binary (it works on an offline
/// network); the page carries no token, it asks for one.
pub async fn page(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    asset(&state, "text/html; charset=utf-8", include_str!("console/index.html"))
}

pub async fn script(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    asset(
        &state,
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    )
}

pub async fn style(State(state): State<AppState>) -> Result<axum::response::Response, ApiError> {
    asset(&state, "text/css; charset=utf-8", include_str!("console/console.css"))
}

fn asset(
    state: &AppState,
    content_type: &'static str,
    body: &'static str,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    if state.cfg.admin_token.is_none() {
        return Err(ApiError::NotFound("route"));
    }
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            // Only this origin's own script and style; never framed.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

fn queue_kind(name: &str) -> Result<QueueKind, ApiError> {
    QueueKind::parse(name).ok_or(ApiError::NotFound("queue"))
}

/// `GET /admin/api/queues`: per queue its counts, whether it is paused, how long its
/// oldest waiting job has waited, and how many workers consume it.
pub async fn queues(State(state): State<AppState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let data = leadflow_shared::queue::summaries(&state.queues).await?;
    Ok(Json(json!({"success": true, "data": data})))
}

/// `POST /admin/api/queues/{queue}/pause`: workers stop taking its jobs (they stay queued).
pub async fn pause(state: State<AppState>, op: Operator, queue: Path<String>) -> Result<Json<Value>, ApiError> {
    set_paused(state, op, queue, true).await
}

/// `POST /admin/api/queues/{queue}/resume`.
pub async fn resume(state: State<AppState>, op: Operator, queue: Path<String>) -> Result<Json<Value>, ApiError> {
    set_paused(state, op, queue, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    _: Operator,
    Path(queue): Path<String>,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    let kind = queue_kind(&queue)?;
    let q = state.queues.queue(kind);
    if paused { q.pause().await } else { q.resume().await }.map_err(anyhow::Error::from)?;
    tracing::warn!(queue = kind.name(), paused, "queue switched by an operator");
    Ok(Json(json!({"success": true, "queue": kind.name(), "paused": paused})))
}

#[derive(Deserialize, Default)]
pub struct FailureQuery {
    kind: Option<String>,
    tenant_id: Option<String>,
    since: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

impl FailureQuery {
    fn filter(&self, default_limit: i64, max: i64) -> Result<Filter, ApiError> {
        let kind =
            match self.kind.as_deref() {
                None => None,
                Some(k) => Some(FailureKind::parse(k).ok_or_else(|| {
                    ApiError::invalid("kind", format!("kind must be one of: {}", FailureKind::names()))
                })?),
            };
        let tenant_id = match self.tenant_id.as_deref() {
            None => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|_| ApiError::invalid("tenant_id", "tenant_id must be a UUID"))?,
            ),
        };
        let since = match self.since.as_deref() {
            None => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| ApiError::invalid("since", "since must be an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ),
        };
        let before = match self.cursor.as_deref() {
            None => None,
            Some(c) => {
                Some(decode_cursor(c).ok_or_else(|| ApiError::invalid("cursor", "cursor is not one this API gave"))?)
            }
        };
        Ok(Filter {
            kind,
            tenant_id,
            since,
            q: self.q.clone().filter(|q| !q.trim().is_empty()),
            before,
            limit: self.limit.unwrap_or(default_limit).clamp(1, max),
        })
    }
}

/// A page's end: `<epoch microseconds>.<id>` of its last item.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{}", at.timestamp_micros(), id.simple())
}

fn decode_cursor(c: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = c.split_once('.')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, id.parse().ok()?))
}

/// `GET /admin/api/failures`: newest first, `next_cursor` while there are more.
pub async fn failures(
    State(state): State<AppState>,
    _: Operator,
    Query(q): Query<FailureQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter(50, 500)?;
    let items = failures::list(&state.pool, &filter).await?;
    let next = (items.len() as i64 == filter.limit)
        .then(|| items.last().map(|f| encode_cursor(f.at, f.id)))
        .flatten();
    Ok(Json(json!({"success": true, "data": items, "next_cursor": next})))
}

fn failure_kind(kind: &str) -> Result<FailureKind, ApiError> {
    FailureKind::parse(kind).ok_or(ApiError::NotFound("failure kind"))
}

fn reopened_json(r: Reopened) -> Value {
    match r {
        Reopened::Burst { burst_id } => json!({"burst_id": burst_id}),
        Reopened::Delivery { attempt, .. } | Reopened::Send { attempt, .. } => json!({"attempt": attempt}),
        Reopened::Media { attempt, .. } => json!({"attempt": attempt}),
        Reopened::Calendar { channel_id } => json!({"channel_id": channel_id}),
    }
}

/// `POST /admin/api/failures/{kind}/{id}/retry`: one more try (a burst: as a new burst).
pub async fn retry(
    State(state): State<AppState>,
    _: Operator,
    Path((kind, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let kind = failure_kind(&kind)?;
    let id = path_uuid(&id, "failure")?;
    let reopened = failures::retry(&state.pool, state.master_key()?, kind, id)
        .await?
        .ok_or(ApiError::NotFound("failure"))?;
    reopened.enqueue(&state.queues).await?;
    tracing::info!(kind = kind.as_str(), %id, "failure retried by an operator");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"success": true, "kind": kind, "id": id, "retried": reopened_json(reopened)})),
    ))
}

/// `POST /admin/api/failures/{kind}/{id}/discard`: off the list, kept in its table.
pub async fn discard(
    State(state): State<AppState>,
    _: Operator,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = failure_kind(&kind)?;
    let id = path_uuid(&id, "failure")?;
    if !failures::discard(&state.pool, kind, id).await? {
        return Err(ApiError::NotFound("failure"));
    }
    tracing::info!(kind = kind.as_str(), %id, "failure discarded by an operator");
    Ok(Json(
        json!({"success": true, "kind": kind, "id": id, "discarded": true}),
    ))
}

/// `POST /admin/api/failures/retry?kind=…&tenant_id=…&since=…&q=…&limit=…`: retries the
/// failures the filters select, at most `limit` (default 100, at most 1,000) per call.
pub async fn retry_many(
    State(state): State<AppState>,
    _: Operator,
    Query(q): Query<FailureQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.cursor.is_some() {
        return Err(ApiError::invalid("cursor", "a bulk retry takes filters, not a cursor"));
    }
    let filter = q.filter(100, 1000)?;
    let selected = failures::list(&state.pool, &filter).await?;
    let key = state.master_key()?;
    let mut retried = 0;
    for f in &selected {
        // Another operator (or an earlier call) may have retried it meanwhile: skipped.
        if let Some(reopened) = failures::retry(&state.pool, key, f.kind, f.id).await? {
            reopened.enqueue(&state.queues).await?;
            retried += 1;
        }
    }
    tracing::info!(
        selected = selected.len(),
        retried,
        "failures retried in bulk by an operator"
    );
    Ok(Json(
        json!({"success": true, "selected": selected.len(), "retried": retried}),
    ))
}

/// `GET /admin/api/tenants`.
pub async fn tenants(State(state): State<AppState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let items = failures::tenants(&state.pool).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

async fn set_disabled(state: &AppState, id: &str, disabled: bool) -> Result<Json<Value>, ApiError> {
    let id = path_uuid(id, "tenant")?;
    if !failures::set_tenant_disabled(&state.pool, id, disabled).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    state.auth.clear();
    tracing::warn!(tenant = %id, disabled, "tenant switched by an operator");
    Ok(Json(json!({"success": true, "tenant_id": id, "disabled": disabled})))
}

pub async fn disable_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, &id, true).await
}

pub async fn enable_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, &id, false).await
}

#[derive(Deserialize)]
pub struct ChannelQuery {
    connection: Option<String>,
}

/// `GET /admin/api/channels?connection=disconnected`.
pub async fn channels(
    State(state): State<AppState>,
    _: Operator,
    Query(q): Query<ChannelQuery>,
) -> Result<Json<Value>, ApiError> {
    let connection = match q.connection.as_deref() {
        None => None,
        Some(c) => Some(Connection::parse(c).ok_or_else(|| {
            ApiError::invalid(
                "connection",
                "connection must be one of: connected, disconnected, unknown",
            )
        })?),
    };
    let items = failures::channels(&state.pool, connection).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back() {
        let at = DateTime::from_timestamp_micros(1_764_600_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(at, id)), Some((at, id)));
        assert_eq!(decode_cursor("nonsense"), None);
    }
}
