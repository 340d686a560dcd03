//! Deleting old rows in bounded batches (`DELETE … WHERE id IN (SELECT … LIMIT n)`), so a
//! large backlog never holds long locks: each batch is its own short statement.

use sqlx::PgPool;

use super::DbError;

/// The tables housekeeping trims: (table, key column, age column, extra condition).
pub const TABLES: [(&str, &str, &str, &str); 5] = [
    ("delivery_attempts", "id", "created_at", "TRUE"),
    ("outbox_attempts", "id", "created_at", "TRUE"),
    ("scheduler_runs", "id", "started_at", "TRUE"),
    ("notifications", "id", "created_at", "status = 'dropped'"),
    ("oauth_states", "state", "created_at", "TRUE"),
];

/// Deletes up to `limit` rows of `table` older than `age_secs` (consent states: a day);
/// returns how many.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn delete_old(
    pool: &PgPool,
    (table, key, at, cond): (&str, &str, &str, &str),
    age_secs: f64,
    limit: i64,
) -> Result<u64, DbError> {
    let age = if table == "oauth_states" { 86_400.0 } else { age_secs };
    // Names come from TABLES above, never from input.
    let sql = format!(
        r#"DELETE FROM {table} WHERE {key} IN (
               SELECT {key} FROM {table} WHERE {at} < now() - make_interval(secs => $1) AND {cond} LIMIT $2)"#
    );
    let done = sqlx::query(&sql).bind(age).bind(limit).execute(pool).await?;
    Ok(done.rows_affected())
}

/// Personal data past its retention, one kind at a time, each a bounded batch
/// (`LEADFLOW_RETENTION_*`). Rows that live work still needs are never touched: a message
/// in an open or generating burst, a webhook event still pending, a postback or send not
/// finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    /// Messages with their media (and their stored e-mail attachments).
    Messages,
    /// Inline bytes of images and PDFs, and stored e-mail attachments.
    MediaBytes,
    /// Processed webhook events and the raw payloads no event refers to any more.
    RawPayloads,
    IdempotencyKeys,
    /// Bodies of delivered postbacks and finished channel sends.
    DeliveryBodies,
}

impl Expiring {
    pub const ALL: [Expiring; 5] = [
        Expiring::Messages,
        Expiring::MediaBytes,
        Expiring::RawPayloads,
        Expiring::IdempotencyKeys,
        Expiring::DeliveryBodies,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Expiring::Messages => "messages",
            Expiring::MediaBytes => "media_bytes",
            Expiring::RawPayloads => "raw_payloads",
            Expiring::IdempotencyKeys => "idempotency_keys",
            Expiring::DeliveryBodies => "delivery_bodies",
        }
    }

    /// The statements of one batch: each takes the age in seconds and the batch size.
    fn statements(self) -> &'static [&'static str] {
        match self {
            // Media and attachments go in the same statement as their messages (the
            // foreign key is checked at its end).
            Expiring::Messages => &[r#"
                WITH doomed AS (
                    SELECT m.id, m.media_handle FROM messages m
                    WHERE m.created_at < now() - make_interval(secs => $1)
                      AND NOT EXISTS (SELECT 1 FROM bursts b
                                      WHERE b.id = m.burst_id AND b.status IN ('open', 'generating'))
                    LIMIT $2 FOR UPDATE OF m SKIP LOCKED
                ), attachments AS (
                    DELETE FROM mail_attachments
                    WHERE id IN (SELECT (media_handle->>'id')::uuid FROM doomed
                                 WHERE media_handle->>'kind' = 'mail_attachment')
                ), media AS (
                    DELETE FROM media WHERE message_id IN (SELECT id FROM doomed)
                )
                DELETE FROM messages WHERE id IN (SELECT id FROM doomed)"#],
            Expiring::MediaBytes => &[
                r#"UPDATE media SET data = NULL WHERE message_id IN (
                       SELECT message_id FROM media
                       WHERE data IS NOT NULL AND status <> 'pending'
                         AND created_at < now() - make_interval(secs => $1)
                       LIMIT $2)"#,
                r#"DELETE FROM mail_attachments WHERE id IN (
                       SELECT id FROM mail_attachments WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)"#,
            ],
            Expiring::RawPayloads => &[
                r#"DELETE FROM inbound_events WHERE id IN (
                       SELECT id FROM inbound_events
                       WHERE status <> 'pending' AND created_at < now() - make_interval(secs => $1)
                       LIMIT $2)"#,
                r#"DELETE FROM webhook_payloads WHERE id IN (
                       SELECT p.id FROM webhook_payloads p
                       WHERE p.created_at < now() - make_interval(secs => $1)
                         AND NOT EXISTS (SELECT 1 FROM inbound_events e WHERE e.payload_id = p.id)
                       LIMIT $2)"#,
            ],
            Expiring::IdempotencyKeys => &[r#"
                DELETE FROM idempotency_keys WHERE ctid IN (
                    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)"#],
            // Failed postbacks keep their body: an operator may still retry them.
            Expiring::DeliveryBodies => &[
                r#"UPDATE deliveries SET payload = '' WHERE id IN (
                       SELECT id FROM deliveries
                       WHERE status = 'delivered' AND payload <> ''
                         AND created_at < now() - make_interval(secs => $1)
                       LIMIT $2)"#,
                r#"UPDATE outbox SET content = '' WHERE id IN (
                       SELECT id FROM outbox
                       WHERE status <> 'pending' AND content <> ''
                         AND created_at < now() - make_interval(secs => $1)
                       LIMIT $2)"#,
            ],
        }
    }
}

/// One batch of `what` older than `age_secs`: up to `limit` rows per statement; returns
/// the rows changed.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn expire(pool: &PgPool, what: Expiring, age_secs: f64, limit: i64) -> Result<u64, DbError> {
    let mut changed = 0;
    for sql in what.statements() {
        changed += sqlx::query(sql)
            .bind(age_secs)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(changed)
}
