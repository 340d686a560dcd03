//! Postback deliveries and their attempts. A delivery is created in the same transaction
//! as the reply (one per burst, unique), so a re-run never makes a second `webhook-id`.
//! Every HTTP attempt is a row.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;

/// A postback's or notification's state (`deliveries.status`): pending until delivered or
/// given up on; only a failed one can be retried by hand (which reopens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: String,
    pub tenant_id: Uuid,
    /// A postback's burst; `None` for a notification.
    pub burst_id: Option<Uuid>,
    pub notification_id: Option<Uuid>,
    /// `postback`, or a notification's `webhook`, `email` or `whatsapp`.
    pub target: String,
    /// Where a postback or a webhook notification goes.
    pub url: Option<String>,
    /// The channel an e-mail or WhatsApp notification goes out through, and to whom.
    pub channel_id: Option<Uuid>,
    pub recipient: Option<String>,
    #[serde(skip)]
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, webhook_id, tenant_id, burst_id, notification_id, target, url, channel_id, recipient, payload, status, attempts,
     next_attempt_at, last_error, created_at, updated_at";

/// Creates the burst's delivery; `None` when it already exists (a re-run).
#[tracing::instrument(level = "debug", skip(conn, url, payload))]
pub async fn create(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    burst_id: Uuid,
    url: &str,
    payload: &str,
) -> Result<Option<Uuid>, DbError> {
    let id = Uuid::now_v7();
    Ok(sqlx::query_scalar(
        r#"INSERT INTO deliveries (id, webhook_id, tenant_id, burst_id, url, payload, status, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'pending', now())
           ON CONFLICT (burst_id) DO NOTHING
           RETURNING id"#,
    )
    .bind(id)
    .bind(format!("msg_{}", id.simple()))
    .bind(tenant_id)
    .bind(burst_id)
    .bind(url)
    .bind(payload)
    .fetch_optional(conn)
    .await?)
}

/// Ends a pending delivery without an attempt (a held notification that was superseded).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn cancel(pool: &PgPool, id: Uuid, reason: &str) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE deliveries SET status = 'failed', last_error = $2, next_attempt_at = NULL, updated_at = now()
           WHERE id = $1 AND status = 'pending'"#,
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Delivery>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1");
    Ok(sqlx::query_as::<_, Delivery>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find_for_tenants(pool: &PgPool, tenants: &[Uuid], id: Uuid) -> Result<Option<Delivery>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1 AND tenant_id = ANY($2)");
    Ok(sqlx::query_as::<_, Delivery>(&sql)
        .bind(id)
        .bind(tenants)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(
    pool: &PgPool,
    tenants: &[Uuid],
    status: Option<DeliveryStatus>,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries WHERE tenant_id = ANY($1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC LIMIT $3"
    );
    Ok(sqlx::query_as::<_, Delivery>(&sql)
        .bind(tenants)
        .bind(status)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn attempts(pool: &PgPool, id: Uuid) -> Result<Vec<Attempt>, DbError> {
    Ok(sqlx::query_as::<_, Attempt>(
        r#"SELECT attempt, status_code, duration_ms, error, response_body, created_at
           FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id"#,
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

pub struct AttemptRecord<'a> {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<&'a str>,
    pub response_body: Option<&'a str>,
}

/// What happens to the delivery after an attempt.
pub enum Outcome {
    Delivered,
    Failed,
    RetryInMs(i64),
}

/// Records an attempt and moves the delivery on, in one transaction. Returns false when
/// the delivery had already moved on (a duplicate run of this attempt, e.g. after a lost
/// job lock): the attempt row is still kept, but its outcome is not applied.
#[tracing::instrument(level = "debug", skip(pool, rec, outcome))]
pub async fn record_attempt(
    pool: &PgPool,
    id: Uuid,
    rec: &AttemptRecord<'_>,
    outcome: &Outcome,
) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        r#"INSERT INTO delivery_attempts (delivery_id, attempt, status_code, duration_ms, error, response_body)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(id)
    .bind(rec.attempt)
    .bind(rec.status_code)
    .bind(rec.duration_ms)
    .bind(rec.error)
    .bind(rec.response_body)
    .execute(&mut *tx)
    .await?;
    let (status, next_ms) = match outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Failed => ("failed", None),
        Outcome::RetryInMs(ms) => ("pending", Some(*ms)),
    };
    let applied = sqlx::query(
        r#"UPDATE deliveries SET status = $2, attempts = $3, last_error = $4, updated_at = now(),
               next_attempt_at = CASE WHEN $5::bigint IS NULL THEN NULL
                                      ELSE now() + make_interval(secs => $5::float8 / 1000) END
           WHERE id = $1 AND status = 'pending' AND attempts < $3"#,
    )
    .bind(id)
    .bind(status)
    .bind(rec.attempt)
    .bind(rec.error)
    .bind(next_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    tx.commit().await?;
    Ok(applied)
}

/// The burst's delivery when no attempt has been made yet.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn unstarted_for_burst(pool: &PgPool, burst_id: Uuid) -> Result<Option<Uuid>, DbError> {
    Ok(
        sqlx::query_scalar(r#"SELECT id FROM deliveries WHERE burst_id = $1 AND status = 'pending' AND attempts = 0"#)
            .bind(burst_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Manual retry of a failed delivery: back to pending; returns the attempt number to use.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn reopen(pool: &PgPool, id: Uuid) -> Result<Option<i32>, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now()
           WHERE id = $1 AND status = 'failed' RETURNING attempts + 1"#,
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Sweeper: pending deliveries whose next attempt is overdue by `grace_ms` (job lost).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn overdue_pending(pool: &PgPool, grace_ms: i64, limit: i64) -> Result<Vec<(Uuid, i32)>, DbError> {
    Ok(sqlx::query_as(
        r#"SELECT id, attempts + 1 FROM deliveries
           WHERE status = 'pending' AND next_attempt_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)
           ORDER BY next_attempt_at LIMIT $2"#,
    )
    .bind(grace_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
