//! Leads and the accept path of `/ai/process`: one transaction that records the message
//! and places it in its burst. The lead row is locked first (by the upsert), which
//! serialises every accept for one lead across all API processes, so "no message in two
//! bursts, none in none" holds without any in-process state.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;
use crate::domain::{Assistant, MessageType, Role};

/// A message as the API validated it.
#[derive(Debug)]
pub struct Incoming<'a> {
    pub tenant_id: Uuid,
    pub lead_external_id: &'a str,
    pub role: Role,
    pub content: &'a str,
    pub message_type: MessageType,
    pub url: Option<&'a str>,
    pub debounce: bool,
    pub postback_url: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub assistant: &'a Assistant,
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

#[tracing::instrument(skip_all, fields(tenant_id = %m.tenant_id, lead = m.lead_external_id))]
pub async fn accept(pool: &PgPool, m: &Incoming<'_>) -> Result<Accepted, DbError> {
    let mut tx = pool.begin().await?;
    let (lead_id, paused_until): (Uuid, Option<DateTime<Utc>>) = sqlx::query_as(
        r#"INSERT INTO leads (id, tenant_id, external_id) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, external_id) DO UPDATE SET external_id = EXCLUDED.external_id
           RETURNING id, CASE WHEN paused_until > now() THEN paused_until END"#,
    )
    .bind(Uuid::now_v7())
    .bind(m.tenant_id)
    .bind(m.lead_external_id)
    .fetch_one(&mut *tx)
    .await?;

    let message_id = Uuid::now_v7();
    if let Some(key) = m.idempotency_key {
        if let Some(existing) = claim_idempotency_key(&mut tx, m.tenant_id, key, message_id).await? {
            let burst_id: Option<Uuid> = sqlx::query_scalar(r#"SELECT burst_id FROM messages WHERE id = $1"#)
                .bind(existing)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
            tx.rollback().await?;
            return Ok(Accepted::Duplicate {
                message_id: existing,
                burst_id,
            });
        }
    }

    let outcome = match m.role {
        Role::Human => {
            let until: DateTime<Utc> = sqlx::query_scalar(
                r#"UPDATE leads SET paused_until = now() + make_interval(mins => $2) WHERE id = $1 RETURNING paused_until"#,
            )
            .bind(lead_id)
            .bind(m.assistant.human_pause_minutes)
            .fetch_one(&mut *tx)
            .await?;
            insert_message(&mut tx, message_id, lead_id, m, None, "recorded").await?;
            Accepted::Recorded {
                message_id,
                why: NotAnswered::Role,
                paused_until: Some(until),
            }
        }
        Role::Assistant | Role::System => {
            insert_message(&mut tx, message_id, lead_id, m, None, "recorded").await?;
            Accepted::Recorded {
                message_id,
                why: NotAnswered::Role,
                paused_until,
            }
        }
        Role::User if paused_until.is_some() => {
            insert_message(&mut tx, message_id, lead_id, m, None, "paused").await?;
            Accepted::Recorded {
                message_id,
                why: NotAnswered::HumanPause,
                paused_until,
            }
        }
        Role::User => {
            let (burst_id, new_burst, due_in_ms) = place_in_burst(&mut tx, lead_id, m).await?;
            insert_message(&mut tx, message_id, lead_id, m, Some(burst_id), "pending").await?;
            Accepted::Queued {
                message_id,
                burst_id,
                new_burst,
                due_in_ms,
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Claims `key` for `message_id`. Returns the earlier message when the key was used
/// within the last 24 h; an older use is forgotten and the key claimed anew.
async fn claim_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    key: &str,
    message_id: Uuid,
) -> Result<Option<Uuid>, DbError> {
    let claimed: Option<Uuid> = sqlx::query_scalar(
        r#"INSERT INTO idempotency_keys (tenant_id, key, message_id) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, key) DO UPDATE SET message_id = EXCLUDED.message_id, created_at = now()
               WHERE idempotency_keys.created_at < now() - interval '24 hours'
           RETURNING message_id"#,
    )
    .bind(tenant_id)
    .bind(key)
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_some() {
        return Ok(None);
    }
    Ok(Some(
        sqlx::query_scalar(r#"SELECT message_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2"#)
            .bind(tenant_id)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?,
    ))
}

/// Joins the lead's live debounce burst, or opens a new one. Sync messages always get a
/// burst of their own (their reply goes to the waiting HTTP caller, not a postback).
async fn place_in_burst(
    conn: &mut PgConnection,
    lead_id: Uuid,
    m: &Incoming<'_>,
) -> Result<(Uuid, bool, i64), DbError> {
    let a = m.assistant;
    if m.debounce {
        let joined: Option<(Uuid, i64)> = sqlx::query_as(
            r#"WITH live AS (
                   SELECT id FROM bursts
                   WHERE lead_id = $1 AND assistant_id = $2 AND mode = 'debounce'
                     AND status IN ('open', 'generating') AND deadline_at > now()
                   ORDER BY created_at DESC LIMIT 1
                   FOR UPDATE
               )
               UPDATE bursts b SET version = version + 1, last_at = now(), updated_at = now(),
                      due_at = LEAST(now() + make_interval(secs => $3), deadline_at),
                      postback_url = COALESCE($4, postback_url)
               FROM live WHERE b.id = live.id
               RETURNING b.id, (EXTRACT(EPOCH FROM (b.due_at - clock_timestamp())) * 1000)::bigint"#,
        )
        .bind(lead_id)
        .bind(a.id)
        .bind(a.debounce_seconds)
        .bind(m.postback_url)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((id, due_in_ms)) = joined {
            return Ok((id, false, due_in_ms));
        }
    }
    let (wait, cap, mode) = if m.debounce {
        (
            a.debounce_seconds,
            a.max_wait_seconds.max(a.debounce_seconds),
            "debounce",
        )
    } else {
        (0.0, 0.0, "sync")
    };
    let id = Uuid::now_v7();
    let due_in_ms: i64 = sqlx::query_scalar(
        r#"INSERT INTO bursts (id, tenant_id, lead_id, assistant_id, mode, postback_url, status,
                               first_at, last_at, due_at, deadline_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'open', now(), now(),
                   now() + make_interval(secs => $7), now() + make_interval(secs => $8))
           RETURNING (EXTRACT(EPOCH FROM (due_at - clock_timestamp())) * 1000)::bigint"#,
    )
    .bind(id)
    .bind(m.tenant_id)
    .bind(lead_id)
    .bind(a.id)
    .bind(mode)
    .bind(m.postback_url)
    .bind(wait)
    .bind(cap)
    .fetch_one(&mut *conn)
    .await?;
    Ok((id, true, due_in_ms))
}

async fn insert_message(
    conn: &mut PgConnection,
    id: Uuid,
    lead_id: Uuid,
    m: &Incoming<'_>,
    burst_id: Option<Uuid>,
    status: &str,
) -> Result<(), DbError> {
    sqlx::query(
        r#"INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, url, external_id, burst_id, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
    )
    .bind(id)
    .bind(m.tenant_id)
    .bind(lead_id)
    .bind(m.role.as_str())
    .bind(m.content)
    .bind(m.message_type.as_str())
    .bind(m.url)
    .bind(m.idempotency_key)
    .bind(burst_id)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip(pool))]
pub async fn find_id(pool: &PgPool, tenant_id: Uuid, external_id: &str) -> Result<Option<Uuid>, DbError> {
    Ok(
        sqlx::query_scalar(r#"SELECT id FROM leads WHERE tenant_id = $1 AND external_id = $2"#)
            .bind(tenant_id)
            .bind(external_id)
            .fetch_optional(pool)
            .await?,
    )
}
