//! Google Calendar push channels and what they sync. A channel row exists before Google
//! knows it (`pending`), so a push that arrives before the watch call returns is already
//! recognised; a renewal is a successor row (`replaces`), at most one in flight per
//! channel (a unique index), and the old channel is stopped only once its successor is
//! active. Pushes are deduplicated by Google's increasing message number.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

/// A push channel's state (`calendar_channels.status`): `pending` until Google has created
/// it, `active` while its pushes count, `stopping` once replaced or revoked until
/// `channels.stop` is through, then `stopped`; `failed` when Google refused it or it lapsed
/// before a renewal succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum CalendarStatus {
    Pending,
    Active,
    Stopping,
    Stopped,
    Failed,
}

impl CalendarStatus {
    /// Google may still push for it, and its pushes sync the calendar.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Active | Self::Stopping)
    }
}

/// `Debug` leaves out the push token.
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct CalendarChannel {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub integration_id: Uuid,
    pub calendar_id: String,
    /// The push token Google echoes (`X-Goog-Channel-Token`), sealed ([`Self::push_token`]).
    #[serde(skip)]
    pub token_enc: Option<Vec<u8>>,
    pub resource_id: Option<String>,
    pub expiration: Option<DateTime<Utc>>,
    pub status: CalendarStatus,
    pub replaced_by: Option<Uuid>,
    pub replaces: Option<Uuid>,
    pub renew_attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for CalendarChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarChannel")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("integration_id", &self.integration_id)
            .field("status", &self.status)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "id, tenant_id, integration_id, calendar_id, token_enc, resource_id, expiration, status, replaced_by,
    replaces, renew_attempts, next_attempt_at, last_error, created_at";

/// Where a push channel's token belongs.
pub fn token_place(id: Uuid) -> crate::crypto::Place<'static> {
    crate::crypto::Place {
        table: "calendar_channels",
        column: "token_enc",
        row: id,
    }
}

impl CalendarChannel {
    /// The channel's push token, opened.
    pub fn push_token(&self, key: &crate::crypto::MasterKey) -> Result<secrecy::SecretString, DbError> {
        let enc = self.token_enc.as_deref().ok_or(DbError::NotFound("push token"))?;
        Ok(key.open_string(enc, &token_place(self.id))?)
    }
}

/// A new channel to create at Google (or the successor already in flight for `replaces`),
/// with a fresh random push token (stored sealed).
#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn create_pending(
    pool: &PgPool,
    key: &crate::crypto::MasterKey,
    tenant_id: Uuid,
    integration_id: Uuid,
    calendar_id: &str,
    replaces: Option<Uuid>,
) -> Result<CalendarChannel, DbError> {
    let id = Uuid::new_v4();
    let token = key.seal_str(&crate::crypto::random_token(), &token_place(id));
    let sql = format!(
        r#"WITH ins AS (
               INSERT INTO calendar_channels (id, tenant_id, integration_id, calendar_id, token_enc, status, replaces)
               VALUES ($1, $2, $3, $4, $5, 'pending', $6)
               ON CONFLICT (replaces) WHERE replaces IS NOT NULL AND status IN ('pending', 'active') DO NOTHING
               RETURNING {COLUMNS})
           SELECT * FROM ins
           UNION ALL
           SELECT {COLUMNS} FROM calendar_channels
           WHERE replaces = $6 AND status IN ('pending', 'active') AND NOT EXISTS (SELECT 1 FROM ins)"#
    );
    Ok(sqlx::query_as::<_, CalendarChannel>(&sql)
        .bind(id)
        .bind(tenant_id)
        .bind(integration_id)
        .bind(calendar_id)
        .bind(token)
        .bind(replaces)
        .fetch_one(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<CalendarChannel>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM calendar_channels WHERE id = $1"#);
    Ok(sqlx::query_as::<_, CalendarChannel>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<CalendarChannel>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM calendar_channels WHERE tenant_id = $1 ORDER BY created_at"#);
    Ok(sqlx::query_as::<_, CalendarChannel>(&sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

/// Google created the channel: it is active, and the one it replaces is to be stopped.
/// Returns the replaced channel, if any.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn activated(
    pool: &PgPool,
    id: Uuid,
    resource_id: &str,
    expiration: Option<DateTime<Utc>>,
) -> Result<Option<Uuid>, DbError> {
    let mut tx = pool.begin().await?;
    let replaces: Option<Option<Uuid>> = sqlx::query_scalar(
        r#"UPDATE calendar_channels SET status = 'active', resource_id = $2, expiration = $3, last_error = NULL,
               updated_at = now()
           WHERE id = $1 AND status = 'pending' RETURNING replaces"#,
    )
    .bind(id)
    .bind(resource_id)
    .bind(expiration)
    .fetch_optional(&mut *tx)
    .await?;
    let old = replaces.flatten();
    if let Some(old) = old {
        sqlx::query(
            r#"UPDATE calendar_channels SET replaced_by = $2, status = 'stopping', next_attempt_at = NULL,
                   updated_at = now()
               WHERE id = $1 AND status = 'active'"#,
        )
        .bind(old)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(old)
}

/// A watch call that failed for good for this row (Google refused it).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn set_status(pool: &PgPool, id: Uuid, status: CalendarStatus, error: Option<&str>) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE calendar_channels SET status = $2, last_error = coalesce($3, last_error), updated_at = now()
           WHERE id = $1"#,
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// A renewal of `id` failed; the next one is due at `next`. Returns the attempts so far.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn renewal_failed(pool: &PgPool, id: Uuid, error: &str, next: DateTime<Utc>) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE calendar_channels SET renew_attempts = renew_attempts + 1, last_error = $2, next_attempt_at = $3,
               updated_at = now()
           WHERE id = $1 RETURNING renew_attempts"#,
    )
    .bind(id)
    .bind(error)
    .bind(next)
    .fetch_one(pool)
    .await?)
}

/// Active channels that expire within `margin_secs` and have no successor, whose next
/// renewal attempt is due: (id, attempt number to make).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn due_for_renewal(pool: &PgPool, margin_secs: f64, limit: i64) -> Result<Vec<(Uuid, i32)>, DbError> {
    Ok(sqlx::query_as(
        r#"SELECT id, renew_attempts + 1 FROM calendar_channels
           WHERE status = 'active' AND replaced_by IS NULL
             AND expiration < now() + make_interval(secs => $1)
             AND (next_attempt_at IS NULL OR next_attempt_at <= now())
           ORDER BY expiration LIMIT $2"#,
    )
    .bind(margin_secs)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// A step on `id` failed and is retried at `at` (so the tick does not resume it meanwhile).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn retry_at(pool: &PgPool, id: Uuid, error: &str, at: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE calendar_channels SET last_error = $2, next_attempt_at = $3, updated_at = now() WHERE id = $1"#,
    )
    .bind(id)
    .bind(error)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Channels left `stopping` (their stop job lost, not waiting for a retry): (id).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn stopping(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT id FROM calendar_channels
           WHERE status = 'stopping' AND updated_at < now() - interval '30 seconds'
             AND (next_attempt_at IS NULL OR next_attempt_at < now() - interval '30 seconds')
           LIMIT $1"#,
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// New channels still `pending`, never attempted, a while after they were asked for
/// (their watch job was lost).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn stale_pending(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT id FROM calendar_channels
           WHERE status = 'pending' AND replaces IS NULL AND last_error IS NULL
             AND updated_at < now() - interval '60 seconds'
           LIMIT $1"#,
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Every live channel of an integration moves to `status` (`stopping` when revoked,
/// `stopped` when Google can no longer be called).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn end_for_integration(
    pool: &PgPool,
    integration_id: Uuid,
    status: CalendarStatus,
) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE calendar_channels SET status = $2, updated_at = now()
           WHERE integration_id = $1 AND status IN ('pending', 'active', 'stopping') RETURNING id"#,
    )
    .bind(integration_id)
    .bind(status)
    .fetch_all(pool)
    .await?)
}

/// Whether an integration still has channels being stopped.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn any_stopping(pool: &PgPool, integration_id: Uuid) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM calendar_channels WHERE integration_id = $1 AND status = 'stopping')"#,
    )
    .bind(integration_id)
    .fetch_one(pool)
    .await?)
}

/// Records push `number` on a channel; `false` when it is not newer than the last one
/// seen (a redelivery or a stale push).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn push_seen(pool: &PgPool, id: Uuid, number: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE calendar_channels SET last_message_number = $2
           WHERE id = $1 AND (last_message_number IS NULL OR last_message_number < $2)"#,
    )
    .bind(id)
    .bind(number)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Undoes [`push_seen`] for `number` (its sync could not be enqueued).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn push_forgotten(pool: &PgPool, id: Uuid, number: i64) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE calendar_channels SET last_message_number = NULL WHERE id = $1 AND last_message_number = $2"#,
    )
    .bind(id)
    .bind(number)
    .execute(pool)
    .await?;
    Ok(())
}

/// The stored sync token of a calendar (`None`: never synced, or reset).
#[tracing::instrument(level = "debug", skip_all, fields(%integration_id))]
pub async fn sync_token(pool: &PgPool, integration_id: Uuid, calendar_id: &str) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        r#"SELECT sync_token FROM calendar_syncs WHERE integration_id = $1 AND calendar_id = $2"#,
    )
    .bind(integration_id)
    .bind(calendar_id)
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// Stores a sync's events and its new token in one transaction. `full` counts full syncs
/// and, when complete (a token), replaces the calendar's events.
#[tracing::instrument(level = "debug", skip(pool, events, token))]
pub async fn store_sync(
    pool: &PgPool,
    integration_id: Uuid,
    calendar_id: &str,
    events: &[Value],
    token: Option<&str>,
    full: bool,
) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    if full && token.is_some() {
        // A complete full sync is the whole calendar: what it does not list is gone
        // (Google asks to clear the store before a full sync after 410).
        sqlx::query(r#"DELETE FROM calendar_events WHERE integration_id = $1 AND calendar_id = $2"#)
            .bind(integration_id)
            .bind(calendar_id)
            .execute(&mut *tx)
            .await?;
    }
    for e in events {
        let Some(event_id) = e["id"].as_str() else { continue };
        let time = |k: &str| e[k]["dateTime"].as_str().or(e[k]["date"].as_str()).map(str::to_string);
        sqlx::query(
            r#"INSERT INTO calendar_events (integration_id, calendar_id, event_id, status, summary, starts_at, ends_at,
                                            updated, raw)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (integration_id, calendar_id, event_id) DO UPDATE
                 SET status = EXCLUDED.status, summary = EXCLUDED.summary, starts_at = EXCLUDED.starts_at,
                     ends_at = EXCLUDED.ends_at, updated = EXCLUDED.updated, raw = EXCLUDED.raw, synced_at = now()"#,
        )
        .bind(integration_id)
        .bind(calendar_id)
        .bind(event_id)
        .bind(e["status"].as_str().unwrap_or("confirmed"))
        .bind(e["summary"].as_str())
        .bind(time("start"))
        .bind(time("end"))
        .bind(e["updated"].as_str())
        .bind(e)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        r#"INSERT INTO calendar_syncs (integration_id, calendar_id, sync_token, full_syncs, synced_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (integration_id, calendar_id) DO UPDATE
             SET sync_token = EXCLUDED.sync_token, full_syncs = calendar_syncs.full_syncs + $4, synced_at = now()"#,
    )
    .bind(integration_id)
    .bind(calendar_id)
    .bind(token)
    .bind(i32::from(full))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
