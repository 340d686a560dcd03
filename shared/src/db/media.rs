//! What each medium a lead sent became (transcript, PDF text, image bytes) or why it
//! could not be understood. One row per message: a job *claims* the row with a lease
//! before working, so two deliveries of the same job (or the sweeper's copy) never
//! process one medium twice, and a finished row is never processed again.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::media_handle::MediaHandle;

/// A claimed medium: what the job needs to process it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claim {
    pub message_id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    /// An ordinary link (`/ai/process` `url`, a provider payload's media URL).
    pub url: Option<String>,
    /// A provider handle made by Leadflow's parser; resolved with `channel_id` only.
    pub media_handle: Option<sqlx::types::Json<MediaHandle>>,
    /// The channel of the message's burst: the only one whose credentials may resolve
    /// the handle.
    pub channel_id: Option<Uuid>,
    pub attempts: i32,
    /// The assistant of the message's burst (transcription settings).
    pub assistant_id: Option<Uuid>,
    /// Its tenant is disabled: the medium fails with that reason.
    pub tenant_disabled: bool,
}

/// What became of a medium (`media.status`): pending until understood or given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MediaStatus {
    Pending,
    Done,
    Failed,
}

/// A medium's result as the prompt and the API see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Media {
    pub message_id: Uuid,
    pub kind: String,
    pub status: MediaStatus,
    pub mime: Option<String>,
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub text: Option<String>,
    pub pages: Option<i32>,
    pub pages_read: Option<i32>,
    pub truncated: bool,
    pub no_text: bool,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub duration_ms: Option<i32>,
    #[serde(skip)]
    pub data: Option<Vec<u8>>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = r#"message_id, kind, status, mime, file_name, size_bytes, text, pages, pages_read, truncated,
    no_text, error_code, error, duration_ms, updated_at"#;

/// Takes the medium of `message_id` for `lease`, creating its row on first contact.
/// `None`: it is finished, or another job holds it (and `attempt` is not the retry that
/// was scheduled for it).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn claim(pool: &PgPool, message_id: Uuid, attempt: u32, lease: Duration) -> Result<Option<Claim>, DbError> {
    let sql = format!(
        r#"WITH c AS (
               INSERT INTO media (message_id, tenant_id, kind, status, attempts, locked_until)
               SELECT m.id, m.tenant_id, m.message_type, 'pending', 1, now() + $2
               FROM messages m WHERE m.id = $1 AND m.message_type <> 'text'
                 AND (m.url IS NOT NULL OR m.media_handle IS NOT NULL)
               ON CONFLICT (message_id) DO UPDATE
                   SET attempts = media.attempts + 1, locked_until = EXCLUDED.locked_until,
                       next_attempt = NULL, updated_at = now()
                   WHERE media.status = 'pending'
                     AND (media.locked_until IS NULL OR media.locked_until < now() OR media.next_attempt = $3)
               RETURNING message_id, tenant_id, kind, attempts
           )
           SELECT c.message_id, c.tenant_id, c.kind, m.url, m.media_handle, b.channel_id, c.attempts, b.assistant_id,
                  {}
           FROM c JOIN messages m ON m.id = c.message_id LEFT JOIN bursts b ON b.id = m.burst_id"#,
        super::tenants::disabled_column("c")
    );
    Ok(sqlx::query_as::<_, Claim>(&sql)
        .bind(message_id)
        .bind(lease)
        .bind(attempt as i32)
        .fetch_optional(pool)
        .await?)
}

/// What processing produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub mime: Option<String>,
    pub file_name: Option<String>,
    pub size_bytes: Option<i64>,
    pub text: Option<String>,
    pub pages: Option<i32>,
    pub pages_read: Option<i32>,
    pub truncated: bool,
    pub no_text: bool,
    pub data: Option<Vec<u8>>,
    pub duration_ms: i32,
}

#[tracing::instrument(level = "debug", skip(pool, o))]
pub async fn succeed(pool: &PgPool, message_id: Uuid, o: &Outcome) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE media SET status = 'done', mime = $2, file_name = $3, size_bytes = $4, text = $5, pages = $6,
               pages_read = $7, truncated = $8, no_text = $9, data = $10, duration_ms = $11,
               error_code = NULL, error = NULL, locked_until = NULL, updated_at = now()
           WHERE message_id = $1 AND status = 'pending'"#,
    )
    .bind(message_id)
    .bind(&o.mime)
    .bind(&o.file_name)
    .bind(o.size_bytes)
    .bind(&o.text)
    .bind(o.pages)
    .bind(o.pages_read)
    .bind(o.truncated)
    .bind(o.no_text)
    .bind(&o.data)
    .bind(o.duration_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives up on the medium: the prompt will carry a note instead.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn fail(pool: &PgPool, message_id: Uuid, code: &str, error: &str) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE media SET status = 'failed', error_code = $2, error = $3, locked_until = NULL, updated_at = now()
           WHERE message_id = $1 AND status = 'pending'"#,
    )
    .bind(message_id)
    .bind(code)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Keeps the row for the retry scheduled as `next_attempt` (after `delay`, plus a lease),
/// so the sweeper does not start a second copy meanwhile.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn hold_for_retry(
    pool: &PgPool,
    message_id: Uuid,
    next_attempt: u32,
    until: Duration,
    error: &str,
) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE media SET next_attempt = $2, locked_until = now() + $3, error = $4, updated_at = now()
           WHERE message_id = $1 AND status = 'pending'"#,
    )
    .bind(message_id)
    .bind(next_attempt as i32)
    .bind(until)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Lets go of a claim without a result (the job hit an infrastructure error).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn release(pool: &PgPool, message_id: Uuid) -> Result<(), DbError> {
    sqlx::query(r#"UPDATE media SET locked_until = NULL WHERE message_id = $1 AND status = 'pending'"#)
        .bind(message_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Results of these messages; `with_data` also loads the stored bytes (images, PDFs).
#[tracing::instrument(level = "debug", skip(pool, ids))]
pub async fn for_messages(pool: &PgPool, ids: &[Uuid], with_data: bool) -> Result<HashMap<Uuid, Media>, DbError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let data = if with_data { "data" } else { "NULL::bytea AS data" };
    let sql = format!(r#"SELECT {COLUMNS}, {data} FROM media WHERE message_id = ANY($1)"#);
    let rows = sqlx::query_as::<_, Media>(&sql).bind(ids).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|m| (m.message_id, m)).collect())
}

/// Media of live bursts whose job seems lost: no row after `grace_ms`, or a pending row
/// whose lease ran out. Returns (message id, the attempt number a new job should carry).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn orphaned(pool: &PgPool, grace_ms: i64, limit: i64) -> Result<Vec<(Uuid, i32)>, DbError> {
    Ok(sqlx::query_as(
        r#"SELECT m.id, COALESCE(x.attempts, 0) + 1
           FROM bursts b
           JOIN messages m ON m.burst_id = b.id
           LEFT JOIN media x ON x.message_id = m.id
           WHERE b.status IN ('open', 'generating')
             AND m.role = 'user' AND m.message_type <> 'text' AND (m.url IS NOT NULL OR m.media_handle IS NOT NULL)
             AND m.created_at < now() - make_interval(secs => $1::float8 / 1000)
             AND (x.message_id IS NULL OR (x.status = 'pending' AND (x.locked_until IS NULL OR x.locked_until < now())))
           LIMIT $2"#,
    )
    .bind(grace_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
