//! Bursts: a lead's messages gathered for one reply. Every state change happens under
//! `SELECT … FOR UPDATE` on the burst row, so flush jobs, AI jobs and the accept path can
//! run in any number of processes (and re-run after a crash) without answering twice.
//!
//! open ──flush (due, no other generation for the lead)──▶ generating ──reply──▶ done
//!   ▲                                                         │   └─gave up──▶ failed
//!   └────────────── superseded draft (new messages, before the deadline) ◀─┘
//! open ──flush while a human has paused the AI──▶ dropped

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;

/// A burst's state (`bursts.status`; the diagram above is its state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum BurstStatus {
    Open,
    Generating,
    Done,
    Failed,
    Dropped,
}

impl BurstStatus {
    /// Still to be answered: open or generating.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Open | Self::Generating)
    }

    /// Answered or given up on: nothing more will come of it.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// Why a burst was dropped (`bursts.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A human spoke: the AI is paused for the lead.
    HumanTakeover,
    TenantDisabled,
    /// The lead was erased (`DELETE /backend/leads/{lead_id}`).
    Erased,
    /// A failed burst an operator retried: its messages moved to a new burst.
    Retried,
}

/// How a burst ends: the only states [`finish`] moves one to, so an ending can never
/// put a burst back to open or generating.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// Answered (its reply is stored).
    Done,
    /// Given up on, with the error the API and the postback report.
    Failed { code: &'a str, message: &'a str },
    /// Not answered, on purpose.
    Dropped(DropReason),
}

impl Ending<'_> {
    fn status(self) -> BurstStatus {
        match self {
            Ending::Done => BurstStatus::Done,
            Ending::Failed { .. } => BurstStatus::Failed,
            Ending::Dropped(_) => BurstStatus::Dropped,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Burst {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub lead_id: Uuid,
    pub assistant_id: Uuid,
    pub mode: String,
    pub postback_url: Option<String>,
    pub status: BurstStatus,
    pub version: i32,
    pub generations: i32,
    pub first_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    /// Why it was dropped.
    pub reason: Option<DropReason>,
    /// Why it failed.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The channel the burst came through: its reply goes back through it.
    pub channel_id: Option<Uuid>,
    /// Milliseconds until `due_at` by the database clock (negative: overdue).
    pub due_in_ms: i64,
    /// Whether `max_wait_seconds` since the first message have passed.
    pub past_deadline: bool,
    /// Its tenant is disabled: the burst is dropped when it comes up.
    pub tenant_disabled: bool,
}

fn select() -> String {
    format!(
        r#"SELECT id, tenant_id, lead_id, assistant_id, mode, postback_url, status, version, generations,
       first_at, due_at, deadline_at, reason, error_code, error_message, channel_id,
       (EXTRACT(EPOCH FROM (due_at - clock_timestamp())) * 1000)::bigint AS due_in_ms,
       deadline_at <= clock_timestamp() AS past_deadline, {}
FROM bursts WHERE id = $1"#,
        super::tenants::disabled_column("bursts")
    )
}

#[tracing::instrument(level = "debug", skip(conn))]
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<Burst>, DbError> {
    let sql = format!("{} FOR UPDATE", select());
    Ok(sqlx::query_as::<_, Burst>(&sql).bind(id).fetch_optional(conn).await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Burst>, DbError> {
    Ok(sqlx::query_as::<_, Burst>(&select())
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn lead_of(pool: &PgPool, id: Uuid) -> Result<Option<(Uuid, Option<Uuid>)>, DbError> {
    Ok(
        sqlx::query_as(r#"SELECT lead_id, channel_id FROM bursts WHERE id = $1"#)
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Whether the lead's generation slot is taken for `burst`: another of its bursts is
/// generating (one generation per lead), or an earlier one still waits (answer bursts in
/// acceptance order).
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn lead_slot_taken(conn: &mut PgConnection, lead_id: Uuid, burst: Uuid) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM bursts
                          WHERE lead_id = $1 AND id <> $2
                            AND (status = 'generating' OR (status = 'open' AND id < $2)))"#,
    )
    .bind(lead_id)
    .bind(burst)
    .fetch_one(conn)
    .await?)
}

/// Marks the burst as generating and returns the new generation number.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn start_generation(conn: &mut PgConnection, id: Uuid) -> Result<i32, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE bursts SET status = 'generating', generations = generations + 1, updated_at = now(),
                  flushed_at = COALESCE(flushed_at, clock_timestamp())
           WHERE id = $1 RETURNING generations"#,
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Ends a burst without a reply (`dropped`, `failed`) or with one (`done`).
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn finish(conn: &mut PgConnection, id: Uuid, ending: Ending<'_>) -> Result<(), DbError> {
    let (reason, code, message) = match ending {
        Ending::Done => (None, None, None),
        Ending::Failed { code, message } => (None, Some(code), Some(message)),
        Ending::Dropped(why) => (Some(why), None, None),
    };
    sqlx::query(
        r#"UPDATE bursts SET status = $2, reason = $3, error_code = $4, error_message = $5, updated_at = now()
           WHERE id = $1"#,
    )
    .bind(id)
    .bind(ending.status())
    .bind(reason)
    .bind(code)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    let (message_status, outcome) = match ending {
        Ending::Done => ("answered", "done"),
        Ending::Dropped(_) => ("dropped", "dropped"),
        Ending::Failed { .. } => ("failed", "failed"),
    };
    crate::metrics::burst(outcome);
    sqlx::query(r#"UPDATE messages SET status = $2 WHERE burst_id = $1 AND role = 'user'"#)
        .bind(id)
        .bind(message_status)
        .execute(conn)
        .await?;
    Ok(())
}

/// A superseded draft: the burst goes back to `open` and is due again when the lead
/// has been quiet for the debounce window (the accept path already moved `due_at`).
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn reopen(conn: &mut PgConnection, id: Uuid) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE bursts SET status = 'open', updated_at = now() WHERE id = $1
           RETURNING (EXTRACT(EPOCH FROM (due_at - clock_timestamp())) * 1000)::bigint"#,
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Past the deadline, messages that arrived during the generation were not in its prompt:
/// they move to the lead's open burst, or to a new one, which is flushed after this reply.
#[tracing::instrument(level = "debug", skip(conn, b))]
pub async fn split_off_after(
    conn: &mut PgConnection,
    b: &Burst,
    included_max_seq: i64,
    debounce_seconds: f64,
    max_wait_seconds: f64,
) -> Result<Option<(Uuid, i64)>, DbError> {
    // The lead may already have an open burst (a message that came after the deadline):
    // the late messages join it — they are older, and prompts follow `seq` — so the lead's
    // messages are still answered in the order they were accepted.
    // Only a burst of the same conversation (leadflow_burst_joins: same lead, assistant and
    // channel): a late WhatsApp message must not be answered on the lead's Telegram.
    let joined: Option<(Uuid, i64)> = sqlx::query_as(
        r#"UPDATE bursts SET version = version + 1, updated_at = now()
           WHERE id = (SELECT x.id FROM bursts x
                       WHERE leadflow_burst_joins(x, $1, $2, $4) AND x.status = 'open' AND x.id <> $3
                       ORDER BY x.id LIMIT 1 FOR UPDATE)
           RETURNING id, (EXTRACT(EPOCH FROM (due_at - clock_timestamp())) * 1000)::bigint"#,
    )
    .bind(b.lead_id)
    .bind(b.assistant_id)
    .bind(b.id)
    .bind(b.channel_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((open_id, due_in_ms)) = joined {
        let moved = sqlx::query(r#"UPDATE messages SET burst_id = $1 WHERE burst_id = $2 AND seq > $3"#)
            .bind(open_id)
            .bind(b.id)
            .bind(included_max_seq)
            .execute(&mut *conn)
            .await?;
        return Ok((moved.rows_affected() > 0).then_some((open_id, due_in_ms)));
    }
    let new_id = Uuid::now_v7();
    let created: Option<i64> = sqlx::query_scalar(
        r#"WITH late AS (
               SELECT min(created_at) AS first_at, max(created_at) AS last_at
               FROM messages WHERE burst_id = $2 AND seq > $3 AND role = 'user'
           )
           INSERT INTO bursts (id, tenant_id, lead_id, assistant_id, mode, postback_url, status,
                               first_at, last_at, due_at, deadline_at, channel_id)
           SELECT $1, b.tenant_id, b.lead_id, b.assistant_id, b.mode, b.postback_url, 'open',
                  late.first_at, late.last_at,
                  LEAST(late.last_at + make_interval(secs => $4), late.first_at + make_interval(secs => $5)),
                  late.first_at + make_interval(secs => $5), b.channel_id
           FROM bursts b, late WHERE b.id = $2 AND late.first_at IS NOT NULL
           RETURNING (EXTRACT(EPOCH FROM (due_at - clock_timestamp())) * 1000)::bigint"#,
    )
    .bind(new_id)
    .bind(b.id)
    .bind(included_max_seq)
    .bind(debounce_seconds)
    .bind(max_wait_seconds.max(debounce_seconds))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(due_in_ms) = created else {
        return Ok(None);
    };
    sqlx::query(r#"UPDATE messages SET burst_id = $1 WHERE burst_id = $2 AND seq > $3"#)
        .bind(new_id)
        .bind(b.id)
        .bind(included_max_seq)
        .execute(conn)
        .await?;
    Ok(Some((new_id, due_in_ms)))
}

/// Open bursts of a lead that were waiting for the lead's generation slot.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn open_for_lead(pool: &PgPool, lead_id: Uuid) -> Result<Vec<(Uuid, i64)>, DbError> {
    Ok(sqlx::query_as(
        r#"SELECT id, (EXTRACT(EPOCH FROM (due_at - clock_timestamp())) * 1000)::bigint
           FROM bursts WHERE lead_id = $1 AND status = 'open' ORDER BY id"#,
    )
    .bind(lead_id)
    .fetch_all(pool)
    .await?)
}

/// Sweeper: open bursts overdue by more than `grace_ms` (their flush job was lost).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn overdue_open(pool: &PgPool, grace_ms: i64, limit: i64) -> Result<Vec<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT id FROM bursts WHERE status = 'open' AND due_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)
           ORDER BY due_at LIMIT $2"#,
    )
    .bind(grace_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Sweeper: generations with no progress for `stale_ms` (their AI job was lost) start
/// over as a new generation, with a fresh attempt budget; a late run of the old one is
/// then stale and finishes nothing. Returns the bursts and their new generation.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn restart_stale_generations(pool: &PgPool, stale_ms: i64, limit: i64) -> Result<Vec<(Uuid, i32)>, DbError> {
    Ok(sqlx::query_as(
        r#"UPDATE bursts SET generations = generations + 1, updated_at = now()
           WHERE id IN (SELECT id FROM bursts
                        WHERE status = 'generating'
                          AND updated_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)
                        ORDER BY updated_at LIMIT $2
                        FOR UPDATE SKIP LOCKED)
           RETURNING id, generations"#,
    )
    .bind(stale_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Records liveness of a generation (retries) so the sweeper leaves it alone.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn touch(pool: &PgPool, id: Uuid) -> Result<(), DbError> {
    sqlx::query(r#"UPDATE bursts SET updated_at = now() WHERE id = $1"#)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Flush lateness (time past `due_at` when the first generation started) in
/// milliseconds: p50, p99 and max over bursts flushed since `since`.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn lateness_ms(pool: &PgPool, since: DateTime<Utc>) -> Result<(f64, f64, f64, i64), DbError> {
    Ok(sqlx::query_as(
        r#"SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY l), 0),
                  COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY l), 0),
                  COALESCE(max(l), 0), count(*)
           FROM (SELECT (EXTRACT(EPOCH FROM (flushed_at - due_at)) * 1000)::float8 AS l
                 FROM bursts WHERE flushed_at IS NOT NULL AND flushed_at >= $1) x"#,
    )
    .bind(since)
    .fetch_one(pool)
    .await?)
}
