//! The outbox: every message Leadflow sends through a channel (AI replies, operators'
//! messages), with the provider's id once sent. It is also how a `fromMe` webhook is
//! classified: an id (or, before the send returned, the same text moments ago) found here
//! is our own echo; anything else was typed by a human on the phone.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outgoing {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub channel_id: Uuid,
    pub lead_id: Uuid,
    pub content: String,
    pub status: String,
    pub attempts: i32,
    /// Its tenant is disabled: the send is refused with that reason.
    pub tenant_disabled: bool,
}

/// The AI reply of `burst_id`, to send through `channel_id` (one per burst), as one
/// row per part: the first is due now, each next one once the one before is sent.
/// Returns the first part's id (None if the reply was already stored).
#[tracing::instrument(level = "debug", skip(conn, parts))]
pub async fn create_reply(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    channel_id: Uuid,
    lead_id: Uuid,
    burst_id: Uuid,
    parts: &[String],
) -> Result<Option<Uuid>, DbError> {
    let ids: Vec<Uuid> = parts.iter().map(|_| Uuid::now_v7()).collect();
    let first = sqlx::query_scalar::<_, Option<Uuid>>(
        r#"INSERT INTO outbox (id, tenant_id, channel_id, lead_id, burst_id, part, content, status, next_attempt_at)
           SELECT p.id, $2, $3, $4, $5, (p.n - 1)::int, p.content, 'pending', CASE WHEN p.n = 1 THEN now() END
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
        r#"UPDATE outbox n SET status = 'failed', error = 'an earlier part of this reply could not be sent'
           FROM outbox o
           WHERE o.id = $1 AND o.burst_id IS NOT NULL AND n.burst_id = o.burst_id AND n.part > o.part
             AND n.status = 'pending'"#,
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A message an operator typed in Leadflow, to send through `channel_id`.
#[tracing::instrument(level = "debug", skip(pool, content))]
pub async fn create_manual(
    pool: &PgPool,
    tenant_id: Uuid,
    channel_id: Uuid,
    lead_id: Uuid,
    operator_id: Uuid,
    content: &str,
) -> Result<Uuid, DbError> {
    Ok(sqlx::query_scalar(
        r#"INSERT INTO outbox (id, tenant_id, channel_id, lead_id, operator_id, content, status, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'pending', now())
           RETURNING id"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(channel_id)
    .bind(lead_id)
    .bind(operator_id)
    .bind(content)
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
        r#"SELECT id, tenant_id, channel_id, lead_id, content, status, attempts, {} FROM outbox WHERE id = $1"#,
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
    /// `sent` (with the provider's id), `pending` (a retry is scheduled) or `failed`.
    pub outcome: &'a str,
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
        r#"UPDATE outbox SET status = $2, attempts = GREATEST(attempts, $3),
               provider_message_id = COALESCE($4, provider_message_id), error = $5,
               template = COALESCE($6, template),
               next_attempt_at = CASE WHEN $2 = 'pending' THEN now() + COALESCE($7, interval '0') END,
               sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
           WHERE id = $1 AND status = 'pending'"#,
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

/// A provider's asynchronous failure report for a message we sent.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn mark_failed_by_provider_id(
    pool: &PgPool,
    channel_id: Uuid,
    provider_message_id: &str,
    error: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE outbox SET status = 'failed', error = $3 WHERE channel_id = $1 AND provider_message_id = $2"#,
    )
    .bind(channel_id)
    .bind(provider_message_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
