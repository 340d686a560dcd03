//! Leads and the accept path of `/ai/process`: one transaction that records the message
//! and places it in its burst. The lead row is locked first (by the upsert), which
//! serialises every accept for one lead across all API processes, so "no message in two
//! bursts, none in none" holds without any in-process state. The transaction is a single
//! SQL function call, so an accept costs one round trip to PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::domain::{Assistant, MessageType, Role};
use crate::media_handle::MediaHandle;

/// A message as the API validated it.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub tenant_id: Uuid,
    pub lead_external_id: &'a str,
    pub role: Role,
    pub content: &'a str,
    pub message_type: MessageType,
    pub url: Option<&'a str>,
    /// A provider's media handle, made by Leadflow's own parser (never from a URL).
    pub media_handle: Option<&'a MediaHandle>,
    pub debounce: bool,
    pub postback_url: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub assistant: &'a Assistant,
    /// The channel it came through (`None`: `/ai/process`); the reply goes back through it.
    pub channel_id: Option<Uuid>,
    /// The `x-request-id` of the request that brought it (see `crate::request_id`).
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnswered {
    /// `assistant`, `human` and `system` messages are recorded, never answered.
    Role,
    /// A human spoke recently: the AI stays quiet until `paused_until`.
    HumanPause,
}

#[derive(Debug)]
pub enum Accepted {
    /// A repeat of an earlier `message_id` within 24 h: nothing new was written.
    Duplicate { message_id: Uuid, burst_id: Option<Uuid> },
    /// Recorded into the conversation, not answered.
    Recorded {
        message_id: Uuid,
        why: NotAnswered,
        paused_until: Option<DateTime<Utc>>,
    },
    /// Part of a burst that will get one reply.
    Queued {
        message_id: Uuid,
        burst_id: Uuid,
        /// A new burst needs its flush job; a joined one already has one (or a generation).
        new_burst: bool,
        /// Milliseconds until the burst is due, by the database's clock.
        due_in_ms: i64,
    },
}

impl Accepted {
    /// The message this accept is about (the earlier one for a duplicate).
    pub fn message_id(&self) -> Uuid {
        match self {
            Self::Duplicate { message_id, .. }
            | Self::Recorded { message_id, .. }
            | Self::Queued { message_id, .. } => *message_id,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AcceptRow {
    outcome: String,
    message_id: Uuid,
    burst_id: Option<Uuid>,
    new_burst: bool,
    due_in_ms: i64,
    paused_until: Option<DateTime<Utc>>,
}

/// Records the message and places it, in one round trip: the steps run inside the
/// `leadflow_accept` SQL function (`migrations/functions/leadflow_accept.sql`), in this order —
/// lock the lead row by upserting it; claim the idempotency key (a use within 24 h makes
/// this a duplicate; an older one is forgotten); a `human` message pauses the lead; a
/// non-`user` or paused message is only recorded; a `user` message joins the lead's live
/// debounce burst (bumping its version and moving `due_at`) or opens a new burst (sync
/// messages always get their own).
#[tracing::instrument(level = "debug", skip_all, fields(tenant_id = %m.tenant_id))]
pub async fn accept(pool: &PgPool, m: &Incoming<'_>) -> Result<Accepted, DbError> {
    let Some(handle) = m.media_handle else {
        return accept_in(pool, m).await;
    };
    // The handle is written in the accept's transaction: a media job never sees the
    // message without it.
    let mut tx = pool.begin().await?;
    let accepted = accept_in(&mut *tx, m).await?;
    sqlx::query(r#"UPDATE messages SET media_handle = $2 WHERE id = $1 AND media_handle IS NULL"#)
        .bind(accepted.message_id())
        .bind(sqlx::types::Json(handle))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(accepted)
}

async fn accept_in<'e>(db: impl sqlx::PgExecutor<'e>, m: &Incoming<'_>) -> Result<Accepted, DbError> {
    let a = m.assistant;
    let row = sqlx::query_as::<_, AcceptRow>(
        r#"SELECT outcome, message_id, burst_id, new_burst, due_in_ms, paused_until
           FROM leadflow_accept($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"#,
    )
    .bind(m.tenant_id)
    .bind(m.lead_external_id)
    .bind(m.role.as_str())
    .bind(m.content)
    .bind(m.message_type.as_str())
    .bind(m.url)
    .bind(m.debounce)
    .bind(m.postback_url)
    .bind(m.idempotency_key)
    .bind(a.id)
    .bind(a.settings.debounce_seconds)
    .bind(a.settings.max_wait_seconds)
    .bind(a.settings.human_pause_minutes)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(m.channel_id)
    .bind(m.request_id)
    .fetch_one(db)
    .await?;
    Ok(match (row.outcome.as_str(), row.burst_id) {
        ("duplicate", burst_id) => Accepted::Duplicate {
            message_id: row.message_id,
            burst_id,
        },
        ("queued", Some(burst_id)) => Accepted::Queued {
            message_id: row.message_id,
            burst_id,
            new_burst: row.new_burst,
            due_in_ms: row.due_in_ms,
        },
        ("paused", _) => Accepted::Recorded {
            message_id: row.message_id,
            why: NotAnswered::HumanPause,
            paused_until: row.paused_until,
        },
        _ => Accepted::Recorded {
            message_id: row.message_id,
            why: NotAnswered::Role,
            paused_until: row.paused_until,
        },
    })
}

/// Locks the lead row for the transaction (serialises decisions about one lead) and
/// says whether a human has paused the AI for it: on the lead as a whole, or on the
/// channel the burst came through.
#[tracing::instrument(level = "debug", skip(conn))]
pub async fn lock(conn: &mut sqlx::PgConnection, lead_id: Uuid, channel_id: Option<Uuid>) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT COALESCE(l.paused_until > now(), false)
                  OR EXISTS (SELECT 1 FROM channel_pauses cp
                             WHERE cp.lead_id = l.id AND cp.channel_id = $2 AND cp.paused_until > now())
           FROM leads l WHERE l.id = $1 FOR UPDATE"#,
    )
    .bind(lead_id)
    .bind(channel_id)
    .fetch_one(conn)
    .await?)
}

/// The integrator's id of a lead.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn external_id(pool: &PgPool, lead_id: Uuid) -> Result<String, DbError> {
    Ok(sqlx::query_scalar(r#"SELECT external_id FROM leads WHERE id = $1"#)
        .bind(lead_id)
        .fetch_one(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find_id(pool: &PgPool, tenant_id: Uuid, external_id: &str) -> Result<Option<Uuid>, DbError> {
    Ok(
        sqlx::query_scalar(r#"SELECT id FROM leads WHERE tenant_id = $1 AND external_id = $2 AND erased_at IS NULL"#)
            .bind(tenant_id)
            .bind(external_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Ends a human takeover now: the AI answers the lead's next messages again, on
/// `channel_id` only, or everywhere when it is `None`.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn release(pool: &PgPool, lead_id: Uuid, channel_id: Option<Uuid>) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    if channel_id.is_none() {
        sqlx::query(r#"UPDATE leads SET paused_until = NULL WHERE id = $1"#)
            .bind(lead_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(r#"DELETE FROM channel_pauses WHERE lead_id = $1 AND ($2::uuid IS NULL OR channel_id = $2)"#)
        .bind(lead_id)
        .bind(channel_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
