//! A lead's personal data as a whole: erased on request (`DELETE /backend/leads/{id}`,
//! LGPD's and GDPR's right to erasure) or exported (`GET …/export`, the right of access).
//!
//! Erasure is one transaction under the lead's row lock. Live bursts are dropped first,
//! under their own row locks, so a generation that finishes afterwards finds its burst
//! dropped and discards its reply; every other job that still points at an erased row
//! (a flush, a postback, a send, a media job, an inbound event) finds nothing and ends —
//! each handler already treats a missing row as done. What stays is an anonymous shell:
//! the lead row renamed `erased:<uuid>` (so the same phone or `lead_id` afterwards starts
//! a new lead), its bursts' statuses and times, and the counts of what was erased.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

/// What one erasure removed, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Erased {
    pub messages: u64,
    pub media: u64,
    pub attachments: u64,
    pub raw_payloads: u64,
    pub postbacks: u64,
    pub sends: u64,
    pub notifications: u64,
    pub identities: u64,
    pub lead_channels: u64,
    pub attendances: u64,
    /// Open or generating bursts dropped (their replies will not be sent).
    pub bursts_dropped: u64,
}

/// Erases lead `lead_id` of `tenant_id`; `None` when there is no such (unerased) lead.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn erase(pool: &PgPool, tenant_id: Uuid, lead_id: Uuid) -> Result<Option<Erased>, DbError> {
    let mut tx = pool.begin().await?;
    let external: Option<String> = sqlx::query_scalar(
        "SELECT external_id FROM leads WHERE id = $1 AND tenant_id = $2 AND erased_at IS NULL FOR UPDATE",
    )
    .bind(lead_id)
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(external) = external else {
        return Ok(None);
    };
    let mut e = Erased::default();
    // One statement with its binds; the rows it changed.
    macro_rules! run {
        ($sql:expr $(, $arg:expr)*) => {
            sqlx::query($sql)$(.bind($arg))*.execute(&mut *tx).await?.rows_affected()
        };
    }
    e.bursts_dropped = run!(
        "UPDATE bursts SET status = $2, reason = $3, updated_at = now()
         WHERE lead_id = $1 AND status IN ('open', 'generating')",
        lead_id,
        super::bursts::BurstStatus::Dropped,
        super::bursts::DropReason::Erased
    );
    run!(
        "UPDATE bursts SET postback_url = NULL WHERE lead_id = $1 AND postback_url IS NOT NULL",
        lead_id
    );
    // Raw provider events: the lead's channels, sent by one of its identities or carrying
    // one of its messages. A batched payload that also holds other leads' messages stays
    // until raw-payload retention takes it.
    let payloads: Vec<Option<Uuid>> = sqlx::query_scalar(
        "WITH chans AS (SELECT channel_id FROM lead_channels WHERE lead_id = $1
                        UNION SELECT channel_id FROM bursts WHERE lead_id = $1 AND channel_id IS NOT NULL)
         DELETE FROM inbound_events e
         WHERE e.tenant_id = $2 AND e.channel_id IN (SELECT channel_id FROM chans)
           AND (e.sender IN (SELECT value FROM lead_identities WHERE lead_id = $1)
                OR e.dedupe_key IN (SELECT external_id FROM messages WHERE lead_id = $1 AND external_id IS NOT NULL))
         RETURNING e.payload_id",
    )
    .bind(lead_id)
    .bind(tenant_id)
    .fetch_all(&mut *tx)
    .await?;
    e.raw_payloads = payloads.len() as u64;
    let payloads: Vec<Uuid> = payloads.into_iter().flatten().collect();
    run!(
        "DELETE FROM webhook_payloads p WHERE p.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM inbound_events e WHERE e.payload_id = p.id)",
        &payloads
    );
    e.attachments = run!(
        "DELETE FROM mail_attachments WHERE id IN (
             SELECT (media_handle->>'id')::uuid FROM messages
             WHERE lead_id = $1 AND media_handle->>'kind' = 'mail_attachment')",
        lead_id
    );
    e.media = run!(
        "DELETE FROM media WHERE message_id IN (SELECT id FROM messages WHERE lead_id = $1)",
        lead_id
    );
    run!(
        "DELETE FROM idempotency_keys WHERE message_id IN (SELECT id FROM messages WHERE lead_id = $1)",
        lead_id
    );
    run!(
        "DELETE FROM delivery_attempts WHERE delivery_id IN (
             SELECT d.id FROM deliveries d JOIN bursts b ON b.id = d.burst_id WHERE b.lead_id = $1)",
        lead_id
    );
    e.postbacks = run!(
        "DELETE FROM deliveries WHERE burst_id IN (SELECT id FROM bursts WHERE lead_id = $1)",
        lead_id
    );
    // Notifications about the lead (`message.failed`, `ai.failed`) name it.
    run!(
        "DELETE FROM delivery_attempts WHERE delivery_id IN (
             SELECT d.id FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE n.tenant_id = $1 AND n.payload::jsonb #>> '{data,lead_id}' = $2)",
        tenant_id,
        &external
    );
    run!(
        "DELETE FROM deliveries WHERE notification_id IN (
             SELECT id FROM notifications
             WHERE tenant_id = $1 AND payload::jsonb #>> '{data,lead_id}' = $2)",
        tenant_id,
        &external
    );
    e.notifications = run!(
        "DELETE FROM notifications
         WHERE tenant_id = $1 AND payload::jsonb #>> '{data,lead_id}' = $2",
        tenant_id,
        &external
    );
    run!(
        "DELETE FROM outbox_status_events WHERE outbox_id IN (SELECT id FROM outbox WHERE lead_id = $1)",
        lead_id
    );
    run!(
        "DELETE FROM outbox_attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE lead_id = $1)",
        lead_id
    );
    e.sends = run!("DELETE FROM outbox WHERE lead_id = $1", lead_id);
    e.messages = run!("DELETE FROM messages WHERE lead_id = $1", lead_id);
    e.identities = run!("DELETE FROM lead_identities WHERE lead_id = $1", lead_id);
    e.attendances = run!("DELETE FROM attendances WHERE lead_id = $1", lead_id);
    run!("DELETE FROM channel_pauses WHERE lead_id = $1", lead_id);
    e.lead_channels = run!("DELETE FROM lead_channels WHERE lead_id = $1", lead_id);
    let counts = serde_json::to_value(&e).map_err(|_| DbError::Malformed("erasure counts"))?;
    run!(
        "UPDATE leads SET external_id = 'erased:' || id::text, paused_until = NULL,
                          erased_at = now(), erased = $2
         WHERE id = $1",
        lead_id,
        counts
    );
    tx.commit().await?;
    Ok(Some(e))
}

/// The lead row itself, for an export.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LeadRow {
    pub id: Uuid,
    /// The `lead_id` integrators know it by.
    pub lead_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn lead(pool: &PgPool, lead_id: Uuid) -> Result<Option<LeadRow>, DbError> {
    Ok(sqlx::query_as::<_, LeadRow>(
        "SELECT id, external_id AS lead_id, created_at, paused_until FROM leads WHERE id = $1 AND erased_at IS NULL",
    )
    .bind(lead_id)
    .fetch_optional(pool)
    .await?)
}

/// One postback about the lead, with the body sent (parsed where it is JSON).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Postback {
    pub id: Uuid,
    pub webhook_id: String,
    pub burst_id: Option<Uuid>,
    pub url: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub payload: sqlx::types::Json<serde_json::Value>,
}

/// Every postback of the lead's bursts, oldest first.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn postbacks(pool: &PgPool, lead_id: Uuid) -> Result<Vec<Postback>, DbError> {
    Ok(sqlx::query_as::<_, Postback>(
        r#"SELECT d.id, d.webhook_id, d.burst_id, d.url, d.status, d.attempts, d.created_at,
                  CASE WHEN d.payload = '' THEN 'null'::jsonb ELSE d.payload::jsonb END AS payload
           FROM deliveries d JOIN bursts b ON b.id = d.burst_id
           WHERE b.lead_id = $1 ORDER BY d.created_at"#,
    )
    .bind(lead_id)
    .fetch_all(pool)
    .await?)
}
