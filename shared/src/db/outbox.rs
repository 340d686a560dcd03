//! The outbox: every message Leadflow sends through a channel (AI replies, operators'
//! messages), with the provider's id once sent and what the provider reported since
//! (`delivered`, `read`, `failed`). Every change of state is a row in
//! `outbox_status_events`, so the conversation API shows a message's history. It is also
//! how a `fromMe` webhook is classified: an id (or, before the send returned, the same
//! text moments ago) found here is our own echo; anything else was typed by a human on
//! the phone.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;
use crate::delivery::{self, DeliveryState, Reported};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outgoing {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub channel_id: Uuid,
    pub lead_id: Uuid,
    pub content: String,
    pub status: DeliveryState,
    pub attempts: i32,
    /// The conversation message it sends, when known.
    pub message_id: Option<Uuid>,
    /// Its tenant is disabled: the send is refused with that reason.
    pub tenant_disabled: bool,
}

/// The AI reply of `burst_id`, to send through `channel_id` (one per burst), as one
/// row per part: the first is due now, each next one once the one before is sent.
/// Returns the first part's id (None if the reply was already stored). Every part points
/// at `message_id`, the reply's conversation message (None when a re-run found the reply
/// stored: its parts are stored too, so nothing is inserted).
#[tracing::instrument(level = "debug", skip(conn, parts))]
pub async fn create_reply(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    channel_id: Uuid,
    lead_id: Uuid,
    burst_id: Uuid,
    message_id: Option<Uuid>,
    parts: &[String],
) -> Result<Option<Uuid>, DbError> {
    let ids: Vec<Uuid> = parts.iter().map(|_| Uuid::now_v7()).collect();
    let first = sqlx::query_scalar::<_, Option<Uuid>>(
        r#"INSERT INTO outbox (id, tenant_id, channel_id, lead_id, burst_id, part, content, status, next_attempt_at,
                               message_id)
           SELECT p.id, $2, $3, $4, $5, (p.n - 1)::int, p.content, 'pending', CASE WHEN p.n = 1 THEN now() END, $7
           FROM unnest($1::uuid[], $6::text[]) WITH ORDINALITY AS p(id, content, n)
           ON CONFLICT (burst_id, part) DO NOTHING
           RETURNING CASE WHEN part = 0 THEN id END"#,
    )
    .bind(&ids)
    .bind(tenant_id)
    .bind(channel_id)
    .bind(lead_id)
    .bind(burst_id)
    .bind(parts)
    .bind(message_id)
    .fetch_all(conn)
    .await?
    .into_iter()
    .flatten()
    .next();
    Ok(first)
}

/// After part `id` of a reply was sent: the next part, now due after `delay`.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn next_part(pool: &PgPool, id: Uuid, delay: std::time::Duration) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE outbox n SET next_attempt_at = now() + $2
           FROM outbox o
           WHERE o.id = $1 AND o.burst_id IS NOT NULL AND n.burst_id = o.burst_id AND n.part = o.part + 1
             AND n.status = 'pending' AND n.attempts = 0
           RETURNING n.id"#,
    )
    .bind(id)
    .bind(delay)
    .fetch_optional(pool)
    .await?)
}

/// After part `id` failed for good, the parts after it are not sent either (a reply with
/// a hole in it would read wrong).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn fail_later_parts(pool: &PgPool, id: Uuid) -> Result<(), DbError> {
    sqlx::query(
        r#"WITH failed AS (
               UPDATE outbox n SET status = 'failed', error = $2, status_at = now()
               FROM outbox o
               WHERE o.id = $1 AND o.burst_id IS NOT NULL AND n.burst_id = o.burst_id AND n.part > o.part
                 AND n.status = 'pending'
               RETURNING n.id)
           INSERT INTO outbox_status_events (outbox_id, source, status, error, applied)
           SELECT id, 'send', 'failed', $2, true FROM failed"#,
    )
    .bind("an earlier part of this reply could not be sent")
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A message an operator typed in Leadflow (conversation message `message_id`), to send
/// through `channel_id`.
#[tracing::instrument(level = "debug", skip(pool, content))]
pub async fn create_manual(
    pool: &PgPool,
    tenant_id: Uuid,
    channel_id: Uuid,
    lead_id: Uuid,
    operator_id: Uuid,
    message_id: Uuid,
    content: &str,
) -> Result<Uuid, DbError> {
    Ok(sqlx::query_scalar(
        r#"INSERT INTO outbox (id, tenant_id, channel_id, lead_id, operator_id, content, status, next_attempt_at,
                               message_id)
           VALUES ($1, $2, $3, $4, $5, $6, 'pending', now(), $7)
           RETURNING id"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(channel_id)
    .bind(lead_id)
    .bind(operator_id)
    .bind(content)
    .bind(message_id)
    .fetch_one(pool)
    .await?)
}

/// The reply of `burst_id` if it was stored but never attempted (a crash between the
/// commit and the enqueue).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn unstarted_for_burst(pool: &PgPool, burst_id: Uuid) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT id FROM outbox WHERE burst_id = $1 AND part = 0 AND status = 'pending' AND attempts = 0"#,
    )
    .bind(burst_id)
    .fetch_optional(pool)
    .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Outgoing>, DbError> {
    let sql = format!(
        r#"SELECT id, tenant_id, channel_id, lead_id, content, status, attempts, message_id, {}
           FROM outbox WHERE id = $1"#,
        super::tenants::disabled_column("outbox")
    );
    Ok(sqlx::query_as::<_, Outgoing>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// One send attempt and what came of it.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    /// `Sent` (with the provider's id), `Pending` (a retry is scheduled) or `Failed`.
    pub outcome: DeliveryState,
    pub provider_message_id: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The template sent instead of the text, if one was.
    pub template: Option<&'a str>,
    /// For `pending`: when the next attempt is due (its job is already delayed that long).
    pub retry_in: Option<std::time::Duration>,
}

/// Records one attempt as a row and moves the message to the attempt's outcome.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn record_attempt(pool: &PgPool, id: Uuid, a: &Attempt<'_>) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        r#"INSERT INTO outbox_attempts (outbox_id, attempt, status_code, duration_ms, error) VALUES ($1, $2, $3, $4, $5)"#,
    )
    .bind(id)
    .bind(a.attempt)
    .bind(a.status_code)
    .bind(a.duration_ms)
    .bind(a.error)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        r#"WITH moved AS (
               UPDATE outbox SET status = $2, attempts = GREATEST(attempts, $3),
                   provider_message_id = COALESCE($4, provider_message_id), error = $5,
                   template = COALESCE($6, template),
                   next_attempt_at = CASE WHEN $2 = 'pending' THEN now() + COALESCE($7, interval '0') END,
                   sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                   status_at = CASE WHEN $2 = 'pending' THEN status_at ELSE now() END
               WHERE id = $1 AND status = 'pending'
               RETURNING id)
           INSERT INTO outbox_status_events (outbox_id, source, status, error, applied)
           SELECT id, 'send', $2, $5, true FROM moved WHERE $2 <> 'pending'"#,
    )
    .bind(id)
    .bind(a.outcome)
    .bind(a.attempt)
    .bind(a.provider_message_id)
    .bind(a.error)
    .bind(a.template)
    .bind(a.retry_in)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether a `fromMe` message is Leadflow's own: its provider id is in the outbox, or the
/// same text went to this lead through this channel in the last two minutes (the echo can
/// arrive before the provider's answer to our send).
#[tracing::instrument(level = "debug", skip(pool, content))]
pub async fn is_own_echo(
    pool: &PgPool,
    channel_id: Uuid,
    provider_message_id: &str,
    lead_id: Option<Uuid>,
    content: &str,
) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM outbox WHERE channel_id = $1 AND provider_message_id = $2)
               OR EXISTS (SELECT 1 FROM outbox WHERE channel_id = $1 AND lead_id = $3 AND content = $4
                            AND created_at > now() - interval '2 minutes')"#,
    )
    .bind(channel_id)
    .bind(provider_message_id)
    .bind(lead_id)
    .bind(content)
    .fetch_one(pool)
    .await?)
}

/// Messages whose next attempt is `grace_ms` overdue (its job was lost: Redis refused the
/// enqueue or lost data), as (id, the attempt number a new job should carry).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn overdue_pending(pool: &PgPool, grace_ms: i64, limit: i64) -> Result<Vec<(Uuid, i32)>, DbError> {
    Ok(sqlx::query_as(
        r#"SELECT id, attempts + 1 FROM outbox
           WHERE status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1::float8 / 1000)
           ORDER BY next_attempt_at LIMIT $2"#,
    )
    .bind(grace_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A provider's report about a message we sent, as the webhook carried it.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The ids to match, preferred first (the send call's id, then e.g. the wamid).
    pub ids: &'a [&'a str],
    pub status: Reported,
    pub error_code: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// What [`apply_report`] found and did.
#[derive(Debug, Clone)]
pub struct ReportApplied {
    pub outbox_id: Uuid,
    pub tenant_id: Uuid,
    pub lead_id: Uuid,
    pub message_id: Option<Uuid>,
    pub before: DeliveryState,
    /// The new state, or None when the report was not news (kept as a row all the same).
    pub after: Option<DeliveryState>,
    /// Why, readable, when the report moved the message to `failed`.
    pub reason: Option<String>,
}

/// Applies a provider's report to the message of `channel_id` it is about, in one
/// transaction: the report becomes a row, and the message moves on when the report is
/// further along ([`DeliveryState::after`]). None when no message of this channel has
/// any of the report's ids.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn apply_report(pool: &PgPool, channel_id: Uuid, r: &Report<'_>) -> Result<Option<ReportApplied>, DbError> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = r.ids.to_vec();
    let found: Option<(Uuid, Uuid, Uuid, Option<Uuid>, DeliveryState)> = sqlx::query_as(
        r#"SELECT id, tenant_id, lead_id, message_id, status FROM outbox
           WHERE channel_id = $1 AND provider_message_id = ANY ($2)
           ORDER BY array_position($2, provider_message_id) LIMIT 1
           FOR UPDATE"#,
    )
    .bind(channel_id)
    .bind(&ids)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((outbox_id, tenant_id, lead_id, message_id, before)) = found else {
        return Ok(None);
    };
    let after = before.after(r.status);
    sqlx::query(
        r#"INSERT INTO outbox_status_events (outbox_id, source, status, error_code, error, applied)
           VALUES ($1, 'provider', $2, $3, $4, $5)"#,
    )
    .bind(outbox_id)
    .bind(r.status.as_str())
    .bind(r.error_code)
    .bind(r.error)
    .bind(after.is_some())
    .execute(&mut *tx)
    .await?;
    // A failure says why; a later proof of delivery clears it (the history keeps it).
    let reason = (after == Some(DeliveryState::Failed)).then(|| delivery::reason(r.error_code, r.error));
    if let Some(state) = after {
        let code = reason.as_ref().and(r.error_code);
        sqlx::query(r#"UPDATE outbox SET status = $2, status_at = now(), error_code = $3, error = $4 WHERE id = $1"#)
            .bind(outbox_id)
            .bind(state)
            .bind(code)
            .bind(&reason)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some(ReportApplied {
        outbox_id,
        tenant_id,
        lead_id,
        message_id,
        before,
        after,
        reason,
    }))
}

/// One change in a sent message's history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StatusEvent {
    #[serde(skip)]
    pub outbox_id: Uuid,
    pub status: String,
    /// `send` (Leadflow's own send call) or `provider` (a report the provider sent).
    pub source: String,
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// False for a report that was not news (a late `sent` after `delivered`).
    pub applied: bool,
    pub at: DateTime<Utc>,
}

/// One outbox row (a reply is sent in one or more parts).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PartDelivery {
    #[serde(skip)]
    pub message_id: Uuid,
    pub part: i32,
    pub outbox_id: Uuid,
    pub status: DeliveryState,
    pub provider_message_id: Option<String>,
    pub error_code: Option<String>,
    /// Why it failed, readable.
    #[serde(rename = "reason")]
    pub error: Option<String>,
    pub template: Option<String>,
    #[sqlx(skip)]
    pub history: Vec<StatusEvent>,
}

/// What became of a conversation message sent through a channel.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The message's state: its least advanced part, or `failed` if any part failed.
    pub status: DeliveryState,
    pub error_code: Option<String>,
    pub reason: Option<String>,
    /// The first part's id at the provider.
    pub provider_message_id: Option<String>,
    pub parts: Vec<PartDelivery>,
}

/// The deliveries of the given conversation messages (those sent through a channel).
#[tracing::instrument(level = "debug", skip(pool, message_ids))]
pub async fn deliveries_of(pool: &PgPool, message_ids: &[Uuid]) -> Result<HashMap<Uuid, Delivery>, DbError> {
    if message_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let parts: Vec<PartDelivery> = sqlx::query_as(
        r#"SELECT message_id, part, id AS outbox_id, status, provider_message_id, error_code, error, template
           FROM outbox WHERE message_id = ANY ($1) ORDER BY message_id, part"#,
    )
    .bind(message_ids)
    .fetch_all(pool)
    .await?;
    let outbox_ids: Vec<Uuid> = parts.iter().map(|p| p.outbox_id).collect();
    let events: Vec<StatusEvent> = sqlx::query_as(
        r#"SELECT outbox_id, status, source, error_code, error, applied, created_at AS at
           FROM outbox_status_events WHERE outbox_id = ANY ($1) ORDER BY id"#,
    )
    .bind(&outbox_ids)
    .fetch_all(pool)
    .await?;
    let mut history: HashMap<Uuid, Vec<StatusEvent>> = HashMap::new();
    for e in events {
        history.entry(e.outbox_id).or_default().push(e);
    }
    let mut by_message: HashMap<Uuid, Vec<PartDelivery>> = HashMap::new();
    for mut p in parts {
        p.history = history.remove(&p.outbox_id).unwrap_or_default();
        by_message.entry(p.message_id).or_default().push(p);
    }
    Ok(by_message
        .into_iter()
        .filter_map(|(id, parts)| {
            let status = DeliveryState::of_parts(parts.iter().map(|p| p.status))?;
            let failed = parts.iter().find(|p| p.status == DeliveryState::Failed);
            Some((
                id,
                Delivery {
                    status,
                    error_code: failed.and_then(|p| p.error_code.clone()),
                    reason: failed.and_then(|p| p.error.clone()),
                    provider_message_id: parts.first().and_then(|p| p.provider_message_id.clone()),
                    parts,
                },
            ))
        })
        .collect())
}
