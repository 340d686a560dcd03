//! Conversation messages: what leads said, what the AI answered, what humans typed.
//! `seq` is the acceptance order, the order every prompt uses.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    #[serde(skip)]
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub message_type: String,
    pub url: Option<String>,
    #[serde(rename = "message_id")]
    pub external_id: Option<String>,
    pub status: String,
    /// The `x-request-id` of the request that brought it in (absent on replies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, seq, role, content, message_type, url, external_id, status, request_id, created_at";

/// The burst's messages in acceptance order.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn in_burst(pool: &PgPool, burst_id: Uuid) -> Result<Vec<Message>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM messages WHERE burst_id = $1 AND role = 'user' ORDER BY seq"#);
    Ok(sqlx::query_as::<_, Message>(&sql)
        .bind(burst_id)
        .fetch_all(pool)
        .await?)
}

/// The lead's last `limit` messages before `before_seq` that are not part of `burst_id`
/// (plus the replies to earlier bursts), oldest first.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn history(
    pool: &PgPool,
    lead_id: Uuid,
    burst_id: Uuid,
    before_seq: i64,
    limit: i64,
) -> Result<Vec<Message>, DbError> {
    let sql = format!(
        r#"SELECT * FROM (
               SELECT {COLUMNS} FROM messages
               WHERE lead_id = $1 AND burst_id IS DISTINCT FROM $2
                 -- replies to earlier bursts may have been stored after this burst's
                 -- messages were accepted: they are still history
                 AND (seq < $3 OR reply_to_burst IS NOT NULL)
               ORDER BY seq DESC LIMIT $4
           ) h ORDER BY seq"#
    );
    Ok(sqlx::query_as::<_, Message>(&sql)
        .bind(lead_id)
        .bind(burst_id)
        .bind(before_seq)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// The conversation as stored, oldest first.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn for_lead(pool: &PgPool, lead_id: Uuid, limit: i64) -> Result<Vec<Message>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM messages WHERE lead_id = $1 ORDER BY seq LIMIT $2"#);
    Ok(sqlx::query_as::<_, Message>(&sql)
        .bind(lead_id)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

pub struct Reply<'a> {
    pub tenant_id: Uuid,
    pub lead_id: Uuid,
    pub burst_id: Uuid,
    pub content: &'a str,
    pub model: &'a str,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
}

/// Stores the AI's reply to a burst. At most one per burst (unique `reply_to_burst`):
/// returns `None` when a re-run already stored one.
#[tracing::instrument(level = "debug", skip(conn, r), fields(burst_id = %r.burst_id))]
pub async fn insert_reply(conn: &mut PgConnection, r: &Reply<'_>) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, reply_to_burst, status,
                                 model, prompt_tokens, completion_tokens)
           VALUES ($1, $2, $3, 'assistant', $4, 'text', $5, 'sent', $6, $7, $8)
           ON CONFLICT (reply_to_burst) DO NOTHING
           RETURNING id"#,
    )
    .bind(Uuid::now_v7())
    .bind(r.tenant_id)
    .bind(r.lead_id)
    .bind(r.content)
    .bind(r.burst_id)
    .bind(r.model)
    .bind(r.prompt_tokens)
    .bind(r.completion_tokens)
    .fetch_optional(conn)
    .await?)
}

/// The reply stored for a burst, if any.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn reply_of(pool: &PgPool, burst_id: Uuid) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar(r#"SELECT content FROM messages WHERE reply_to_burst = $1"#)
            .bind(burst_id)
            .fetch_optional(pool)
            .await?,
    )
}
