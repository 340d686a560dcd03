//! WhatsApp connection state of channels: what the periodic check and the providers'
//! connection webhooks observe. The state lives on the channel row; a change is made under
//! the row's lock and also written as a `channel_connection_events` row, so two observers
//! racing (a check and a webhook) record one transition, not two.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::channel::Connection;

/// A channel the connection check looks at. `Debug` leaves out the credentials.
#[derive(Clone, sqlx::FromRow)]
pub struct Checked {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub provider: String,
    pub credentials_enc: Vec<u8>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// A change of a channel's connection state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub channel_id: Uuid,
    pub tenant_id: Uuid,
    pub channel_name: String,
    pub previous: Connection,
    pub status: Connection,
    pub at: DateTime<Utc>,
}

/// Active WhatsApp channels whose provider has a status endpoint, of enabled tenants.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn to_check(pool: &PgPool, providers: &[crate::channel::Provider]) -> Result<Vec<Checked>, DbError> {
    let providers: Vec<String> = providers.iter().map(|p| p.as_str().to_string()).collect();
    Ok(sqlx::query_as::<_, Checked>(
        r#"SELECT c.id, c.tenant_id, c.name, c.provider, c.credentials_enc
           FROM channels c JOIN tenants t ON t.id = c.tenant_id
           WHERE c.deleted_at IS NULL AND c.status = 'active' AND c.type = 'whatsapp'
             AND c.provider = ANY($1) AND t.disabled_at IS NULL
           ORDER BY c.id"#,
    )
    .bind(providers)
    .fetch_all(pool)
    .await?)
}

/// What was seen about a channel's connection, and when.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub status: Connection,
    /// `check` or `webhook`.
    pub source: &'a str,
    pub reason: Option<&'a str>,
    /// When it was true: a check's start, a webhook's arrival. An observation older than
    /// the channel's last change is stale (a slow check racing a webhook) and ignored.
    pub at: DateTime<Utc>,
}

/// Records an observed state; `Some` when it changed the channel's state.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn observe(pool: &PgPool, channel_id: Uuid, o: Observation<'_>) -> Result<Option<Transition>, DbError> {
    let Observation {
        status,
        source,
        reason,
        at: seen_at,
    } = o;
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, String, Connection, Option<DateTime<Utc>>)> = sqlx::query_as(
        r#"SELECT tenant_id, name, connection, connection_changed_at FROM channels WHERE id = $1 FOR UPDATE"#,
    )
    .bind(channel_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((tenant_id, channel_name, previous, changed_at)) = row else {
        return Ok(None);
    };
    if changed_at.is_some_and(|c| c > seen_at) {
        return Ok(None);
    }
    let changed = previous != status;
    // The change is dated when it was observed, so later observations compare with that.
    sqlx::query(
        r#"UPDATE channels SET connection = $2, connection_checked_at = now(), connection_error = $3,
               check_failures = 0,
               connection_changed_at = CASE WHEN $4 THEN $5 ELSE connection_changed_at END
           WHERE id = $1"#,
    )
    .bind(channel_id)
    .bind(status)
    .bind(reason)
    .bind(changed)
    .bind(seen_at)
    .execute(&mut *tx)
    .await?;
    let at = seen_at;
    if changed {
        sqlx::query(
            r#"INSERT INTO channel_connection_events (channel_id, tenant_id, previous, status, source, reason)
               VALUES ($1, $2, $3, $4, $5, $6)"#,
        )
        .bind(channel_id)
        .bind(tenant_id)
        .bind(previous)
        .bind(status)
        .bind(source)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(changed.then_some(Transition {
        channel_id,
        tenant_id,
        channel_name,
        previous,
        status,
        at,
    }))
}

/// A check that could not reach the provider; returns how many in a row there now are.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn check_failed(pool: &PgPool, channel_id: Uuid, error: &str) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE channels SET check_failures = check_failures + 1, connection_checked_at = now(),
               connection_error = $2
           WHERE id = $1 RETURNING check_failures"#,
    )
    .bind(channel_id)
    .bind(error)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0))
}

/// Holds periodic task `task` for one run: `Some` (an open transaction holding a
/// transaction-level advisory lock) when no other run of it is going. The lock goes with
/// the transaction, so a worker that dies mid-run (or a run whose future is dropped)
/// releases it at once, unlike a lease that must expire.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn hold_task(
    pool: &PgPool,
    task: &str,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, DbError> {
    let mut tx = pool.begin().await?;
    let held: bool = sqlx::query_scalar(r#"SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))"#)
        .bind(format!("leadflow-task:{task}"))
        .fetch_one(&mut *tx)
        .await?;
    Ok(held.then_some(tx))
}

/// Marks a run of a periodic task; returns its row id for [`run_finished`].
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn run_started(pool: &PgPool, task: &str, tick: i64) -> Result<i64, DbError> {
    Ok(
        sqlx::query_scalar(r#"INSERT INTO scheduler_runs (task, tick) VALUES ($1, $2) RETURNING id"#)
            .bind(task)
            .bind(tick)
            .fetch_one(pool)
            .await?,
    )
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn run_finished(pool: &PgPool, id: i64, detail: &str) -> Result<(), DbError> {
    sqlx::query(r#"UPDATE scheduler_runs SET finished_at = now(), detail = $2 WHERE id = $1"#)
        .bind(id)
        .bind(detail)
        .execute(pool)
        .await?;
    Ok(())
}
