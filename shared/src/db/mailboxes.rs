//! E-mail channels' mailboxes: the polling watermark (UIDVALIDITY + last UID seen), the
//! attachments of received mail, and the thread a reply answers.

use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::inbound::email::{StoredMail, Thread};

/// Active e-mail channels of enabled tenants, for the poller.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn channels(pool: &PgPool) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT c.id FROM channels c JOIN tenants t ON t.id = c.tenant_id
           WHERE c.provider = 'smtp-imap' AND c.status = 'active' AND c.deleted_at IS NULL AND t.disabled_at IS NULL"#,
    )
    .fetch_all(pool)
    .await?)
}

/// `(uid_validity, last_uid)` of the channel's mailbox; `None` before its first poll.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn watermark(pool: &PgPool, channel_id: Uuid) -> Result<Option<(i64, i64)>, DbError> {
    Ok(sqlx::query_as(
        r#"SELECT uid_validity, last_uid FROM mailboxes WHERE channel_id = $1 AND uid_validity IS NOT NULL"#,
    )
    .bind(channel_id)
    .fetch_optional(pool)
    .await?)
}

/// Moves the watermark forward (never back: two polls may overlap), or resets it when
/// the mailbox's UIDVALIDITY changed.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn advance(pool: &PgPool, channel_id: Uuid, uid_validity: i64, last_uid: i64) -> Result<(), DbError> {
    sqlx::query(
        r#"INSERT INTO mailboxes AS m (channel_id, uid_validity, last_uid) VALUES ($1, $2, $3)
           ON CONFLICT (channel_id) DO UPDATE
               SET last_uid = CASE WHEN m.uid_validity = $2 THEN GREATEST(m.last_uid, $3) ELSE $3 END,
                   uid_validity = $2, last_polled_at = now(), last_error = NULL"#,
    )
    .bind(channel_id)
    .bind(uid_validity)
    .bind(last_uid)
    .execute(pool)
    .await?;
    Ok(())
}

/// Keeps the last polling failure where operators can see it.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn record_error(pool: &PgPool, channel_id: Uuid, error: &str) -> Result<(), DbError> {
    sqlx::query(
        r#"INSERT INTO mailboxes (channel_id, last_error) VALUES ($1, $2)
           ON CONFLICT (channel_id) DO UPDATE SET last_error = $2, last_polled_at = now()"#,
    )
    .bind(channel_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(level = "debug", skip(pool, data))]
pub async fn store_attachment(
    pool: &PgPool,
    tenant_id: Uuid,
    channel_id: Uuid,
    file_name: Option<&str>,
    mime: Option<&str>,
    data: &[u8],
) -> Result<Uuid, DbError> {
    Ok(sqlx::query_scalar(
        r#"INSERT INTO mail_attachments (id, tenant_id, channel_id, file_name, mime, data)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(channel_id)
    .bind(file_name)
    .bind(mime)
    .bind(data)
    .fetch_one(pool)
    .await?)
}

/// A stored attachment, as the media pipeline reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredFile {
    pub size: i64,
    /// `None` when the file is over the limit asked for (it is not loaded then).
    pub data: Option<Vec<u8>>,
    pub file_name: Option<String>,
    pub mime: Option<String>,
}

/// An attachment, its bytes loaded only if at most `limit` bytes.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn attachment(
    pool: &PgPool,
    tenant_id: Uuid,
    channel_id: Uuid,
    id: Uuid,
    limit: u64,
) -> Result<Option<StoredFile>, DbError> {
    Ok(sqlx::query_as::<_, StoredFile>(
        r#"SELECT octet_length(data)::bigint AS size, CASE WHEN octet_length(data) <= $2 THEN data END AS data,
                  file_name, mime
           FROM mail_attachments WHERE id = $1 AND tenant_id = $3 AND channel_id = $4"#,
    )
    .bind(id)
    .bind(limit as i64)
    .bind(tenant_id)
    .bind(channel_id)
    .fetch_optional(pool)
    .await?)
}

/// What a reply to `address` on this channel answers: the lead's last e-mail there.
#[tracing::instrument(level = "debug", skip(pool, address))]
pub async fn last_thread(pool: &PgPool, channel_id: Uuid, address: &str) -> Result<Option<Thread>, DbError> {
    let payload: Option<serde_json::Value> = sqlx::query_scalar(
        r#"SELECT COALESCE(e.payload, p.payload) FROM inbound_events e
           LEFT JOIN webhook_payloads p ON p.id = e.payload_id
           WHERE e.channel_id = $1 AND e.sender = $2 AND e.dedupe_key LIKE 'msg:%'
           ORDER BY e.created_at DESC LIMIT 1"#,
    )
    .bind(channel_id)
    .bind(address)
    .fetch_optional(pool)
    .await?;
    Ok(payload
        .and_then(|p| serde_json::from_value::<StoredMail>(p).ok())
        .map(|m| Thread {
            subject: m.subject,
            in_reply_to: Some(m.message_id),
            references: m.references,
        }))
}
