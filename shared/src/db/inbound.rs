//! Inbound webhook events: stored once per (channel, provider message id) by the thin
//! webhook handler, then turned into lead messages by the `inbound` worker. The unique key
//! is the dedupe: providers retry and resend, and a resend is a no-op insert.

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

/// The channel a webhook names, with what verifying it takes.
/// `Debug` leaves out the secret and the credentials.
#[derive(Clone, sqlx::FromRow)]
pub struct WebhookChannel {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub provider: String,
    /// The webhook token, sealed (see [`super::channels::webhook_secret`]).
    pub webhook_secret_enc: Option<Vec<u8>>,
    pub status: String,
    /// Read in the same query: Meta and Twilio verify with a credential, and a second
    /// round trip per webhook would cost a third of the ingest rate.
    pub credentials_enc: Vec<u8>,
    /// The tenant is disabled: calls are acknowledged and stored as ignored events.
    pub tenant_disabled: bool,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChannel")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("provider", &self.provider)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn channel(pool: &PgPool, id: Uuid) -> Result<Option<WebhookChannel>, DbError> {
    Ok(sqlx::query_as::<_, WebhookChannel>(
        r#"SELECT c.id, c.tenant_id, c.provider, c.webhook_secret_enc, c.status, c.credentials_enc,
                  t.disabled_at IS NOT NULL AS tenant_disabled
           FROM channels c JOIN tenants t ON t.id = c.tenant_id
           WHERE c.id = $1 AND c.deleted_at IS NULL"#,
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// One event a webhook call carries: its dedupe key, which item of the payload it is,
/// and who wrote it (for per-sender ordering).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub dedupe_key: String,
    pub item: i32,
    pub sender: Option<String>,
}

/// Stores a call's events in one statement, the payload once for all of them. Returns
/// the ids of the events that are new (a key already stored is a duplicate delivery and
/// is skipped); when none is new the payload is not stored either. With `ignored`, the
/// events are stored already finished as `ignored` with that note (kept, not processed).
#[tracing::instrument(level = "debug", skip_all, fields(channel_id = %ch.id, events = events.len()))]
pub async fn insert_all(
    pool: &PgPool,
    ch: &WebhookChannel,
    events: &[NewEvent],
    payload: &Value,
    ignored: Option<&str>,
) -> Result<Vec<Uuid>, DbError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.dedupe_key.as_str()).collect();
    let items: Vec<i32> = events.iter().map(|e| e.item).collect();
    let senders: Vec<Option<&str>> = events.iter().map(|e| e.sender.as_deref()).collect();
    Ok(sqlx::query_scalar(
        r#"WITH k AS (
               SELECT * FROM unnest($5::uuid[], $6::text[], $7::int[], $8::text[]) AS k(id, key, item, sender)
           ), fresh AS (
               SELECT k.* FROM k
               WHERE NOT EXISTS (SELECT 1 FROM inbound_events e WHERE e.channel_id = $3 AND e.dedupe_key = k.key)
           ), p AS (
               INSERT INTO webhook_payloads (id, tenant_id, channel_id, payload)
               SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM fresh)
               RETURNING id
           )
           INSERT INTO inbound_events (id, tenant_id, channel_id, dedupe_key, item, sender, payload_id,
                                       status, note, processed_at)
           SELECT fresh.id, $2, $3, fresh.key, fresh.item, fresh.sender, p.id,
                  CASE WHEN $9::text IS NULL THEN 'pending' ELSE 'ignored' END, $9,
                  CASE WHEN $9::text IS NULL THEN NULL ELSE now() END
           FROM fresh, p
           ON CONFLICT (channel_id, dedupe_key) DO NOTHING
           RETURNING id"#,
    )
    .bind(Uuid::now_v7())
    .bind(ch.tenant_id)
    .bind(ch.id)
    .bind(payload)
    .bind(&ids)
    .bind(&keys)
    .bind(&items)
    .bind(&senders)
    .bind(ignored)
    .fetch_all(pool)
    .await?)
}

/// Stores one event; `None` when this key was already stored (a duplicate delivery).
pub async fn insert(
    pool: &PgPool,
    ch: &WebhookChannel,
    dedupe_key: &str,
    item: i32,
    sender: Option<&str>,
    payload: &Value,
) -> Result<Option<Uuid>, DbError> {
    let event = NewEvent {
        dedupe_key: dedupe_key.to_owned(),
        item,
        sender: sender.map(str::to_owned),
    };
    Ok(insert_all(pool, ch, &[event], payload, None).await?.into_iter().next())
}

/// A stored webhook event's state (`inbound_events.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Pending,
    Processed,
    Ignored,
    Failed,
}

/// How an event ends: the only states [`finish`] moves one to (never back to pending).
#[derive(Debug, Clone, Copy)]
pub enum Handled<'a> {
    Processed,
    /// Not for the pipeline (a disabled tenant, an echo, an unsupported type): why.
    Ignored(&'a str),
    /// Could not be processed: why.
    Failed(&'a str),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    pub sender: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub tenant_id: Uuid,
    pub channel_id: Uuid,
    pub dedupe_key: String,
    pub item: i32,
    pub payload: Value,
    pub status: EventStatus,
    /// Its tenant is disabled: the event is kept as ignored, not processed.
    pub tenant_disabled: bool,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Event>, DbError> {
    let sql = format!(
        r#"SELECT e.id, e.sender, e.created_at, e.tenant_id, e.channel_id, e.dedupe_key, e.item,
                  COALESCE(e.payload, p.payload) AS payload, e.status, {}
           FROM inbound_events e LEFT JOIN webhook_payloads p ON p.id = e.payload_id
           WHERE e.id = $1"#,
        super::tenants::disabled_column("e")
    );
    Ok(sqlx::query_as::<_, Event>(&sql).bind(id).fetch_optional(pool).await?)
}

/// Whether an earlier message of the same sender on the same channel still waits: it goes
/// first, so a lead's messages enter the pipeline in the order they arrived. Events stuck
/// for over a minute stop holding later ones back.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn earlier_pending(pool: &PgPool, e: &Event) -> Result<bool, DbError> {
    let Some(sender) = &e.sender else { return Ok(false) };
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM inbound_events
                          WHERE channel_id = $1 AND sender = $2 AND status = 'pending'
                            AND (created_at, id) < ($3, $4) AND created_at > now() - interval '1 minute')"#,
    )
    .bind(e.channel_id)
    .bind(sender)
    .bind(e.created_at)
    .bind(e.id)
    .fetch_one(pool)
    .await?)
}

/// Marks an event handled (`processed`, `ignored` with why, or `failed`).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn finish(pool: &PgPool, id: Uuid, how: Handled<'_>) -> Result<(), DbError> {
    let (status, note) = match how {
        Handled::Processed => (EventStatus::Processed, None),
        Handled::Ignored(why) => (EventStatus::Ignored, Some(why)),
        Handled::Failed(why) => (EventStatus::Failed, Some(why)),
    };
    sqlx::query(
        r#"UPDATE inbound_events SET status = $2, note = $3, processed_at = now() WHERE id = $1 AND status = 'pending'"#,
    )
    .bind(id)
    .bind(status)
    .bind(note)
    .execute(pool)
    .await?;
    Ok(())
}

/// Pending events older than `grace_ms` (their job was lost).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn overdue(pool: &PgPool, grace_ms: i64, limit: i64) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT id FROM inbound_events WHERE status = 'pending'
             AND created_at < now() - make_interval(secs => $1::float8 / 1000)
           ORDER BY created_at LIMIT $2"#,
    )
    .bind(grace_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
