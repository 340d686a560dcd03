//! Everything that failed for good, across tenants and kinds — the operator console's
//! dead letters. PostgreSQL holds them (a failed burst, postback, notification, channel
//! send, medium or Google Calendar push channel is a row in its table with its error), not Redis: BullMQ's failed set
//! only ever holds infrastructure failures the sweeper re-derives.
//!
//! A retry follows the normal rules: a burst is retried as a new burst holding the same
//! messages (the failed one becomes `dropped`, reason `retried`), so it gets its own
//! generation, reply and postback, and a second retry of the same failure finds nothing
//! to retry; a postback, notification, send or medium is reopened for one more attempt;
//! a calendar channel is replaced by a new one watching the same calendar.
//! A discard marks the row (`discarded_at`) and takes it off the list.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::bursts::DropReason;
use super::DbError;

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// A burst whose AI reply failed for good.
    Burst,
    Postback,
    Notification,
    /// A message sent through a channel (an AI reply's part or an operator's message).
    Send,
    Media,
    /// A Google Calendar push channel that failed for good: its watch was refused, or it
    /// expired before a renewal succeeded (the calendar's changes no longer arrive).
    Calendar,
}

impl FailureKind {
    pub const ALL: [FailureKind; 6] = [
        Self::Burst,
        Self::Postback,
        Self::Notification,
        Self::Send,
        Self::Media,
        Self::Calendar,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Burst => "burst",
            Self::Postback => "postback",
            Self::Notification => "notification",
            Self::Send => "send",
            Self::Media => "media",
            Self::Calendar => "calendar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `burst, postback, …`: the kinds, for an error that names them.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Failure {
    pub kind: FailureKind,
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The lead's `lead_id`, where the failure is about one.
    pub lead_id: Option<String>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub attempts: i32,
    /// When it failed.
    pub at: DateTime<Utc>,
}

/// Which failures, newest first; `before` is the cursor (the last item's `at` and `id`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<FailureKind>,
    pub tenant_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    /// Matched against the error code, the message and the lead id.
    pub q: Option<String>,
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

const UNION: &str = r#"
    SELECT 'burst'::text AS kind, b.id, b.tenant_id, l.external_id AS lead_id, b.error_code,
           b.error_message AS message, b.generations AS attempts, b.updated_at AS at
    FROM bursts b JOIN leads l ON l.id = b.lead_id
    WHERE b.status = 'failed' AND b.discarded_at IS NULL
    UNION ALL
    SELECT CASE WHEN d.notification_id IS NULL THEN 'postback' ELSE 'notification' END, d.id, d.tenant_id,
           l.external_id, NULL, d.last_error, d.attempts, d.updated_at
    FROM deliveries d LEFT JOIN bursts b ON b.id = d.burst_id LEFT JOIN leads l ON l.id = b.lead_id
    WHERE d.status = 'failed' AND d.discarded_at IS NULL
    UNION ALL
    SELECT 'send', o.id, o.tenant_id, l.external_id, o.error_code, o.error, o.attempts,
           coalesce(o.status_at, o.created_at)
    FROM outbox o JOIN leads l ON l.id = o.lead_id
    WHERE o.status = 'failed' AND o.discarded_at IS NULL
    UNION ALL
    SELECT 'media', x.message_id, x.tenant_id, l.external_id, x.error_code, x.error, x.attempts, x.updated_at
    FROM media x JOIN messages m ON m.id = x.message_id JOIN leads l ON l.id = m.lead_id
    WHERE x.status = 'failed' AND x.discarded_at IS NULL
    UNION ALL
    -- A failed successor that never reached Google (resource_id NULL, replaces set) is one
    -- renewal attempt, not a failure: the channel it was to replace is still retried.
    SELECT 'calendar', c.id, c.tenant_id, NULL,
           CASE WHEN c.resource_id IS NULL THEN 'watch_failed' ELSE 'expired' END, c.last_error,
           c.renew_attempts, c.updated_at
    FROM calendar_channels c
    WHERE c.status = 'failed' AND c.discarded_at IS NULL AND (c.replaces IS NULL OR c.resource_id IS NOT NULL)"#;

/// The calendar channels [`UNION`] lists, for a retry or discard to pick the same ones.
const CALENDAR_FAILED: &str =
    "status = 'failed' AND discarded_at IS NULL AND (replaces IS NULL OR resource_id IS NOT NULL)";

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, f: &Filter) -> Result<Vec<Failure>, DbError> {
    let sql = format!(
        r#"SELECT kind, id, tenant_id, lead_id, error_code, message, attempts, at FROM ({UNION}) f
           WHERE ($1::text IS NULL OR f.kind = $1)
             AND ($2::uuid IS NULL OR f.tenant_id = $2)
             AND ($3::timestamptz IS NULL OR f.at >= $3)
             AND ($4::text IS NULL OR f.message ILIKE '%' || $4 || '%' OR f.error_code ILIKE '%' || $4 || '%'
                  OR f.lead_id ILIKE '%' || $4 || '%')
             AND ($5::timestamptz IS NULL OR (f.at, f.id) < ($5, $6))
           ORDER BY f.at DESC, f.id DESC LIMIT $7"#
    );
    let (before_at, before_id) = f.before.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as::<_, Failure>(&sql)
        .bind(f.kind)
        .bind(f.tenant_id)
        .bind(f.since)
        .bind(f.q.as_deref())
        .bind(before_at)
        .bind(before_id)
        .bind(f.limit)
        .fetch_all(pool)
        .await?)
}

/// What a retry reopened: the job to enqueue for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopened {
    /// A new burst holding the failed one's messages, due now.
    Burst {
        burst_id: Uuid,
    },
    /// One more attempt of a postback or notification delivery.
    Delivery {
        delivery_id: Uuid,
        attempt: i32,
    },
    Send {
        outbox_id: Uuid,
        attempt: i32,
    },
    Media {
        message_id: Uuid,
        attempt: u32,
    },
    /// A new push channel for the failed one's calendar, to watch.
    Calendar {
        channel_id: Uuid,
    },
}

impl Reopened {
    /// Enqueues the job the reopened row needs. Should Redis be down, the sweeper finds
    /// the row (an open burst due now, a pending delivery, send or medium) anyway.
    pub async fn enqueue(self, queues: &crate::queue::Queues) -> Result<(), crate::queue::QueueError> {
        use crate::queue::{CalendarJob, CalendarStep, DeliverPostback, FlushBurst, ProcessMedia, SendMessage};
        let now_ms = Utc::now().timestamp_millis();
        let now = std::time::Duration::ZERO;
        match self {
            Reopened::Burst { burst_id } => {
                queues
                    .enqueue(
                        &FlushBurst {
                            burst_id,
                            at_ms: now_ms,
                        },
                        now,
                    )
                    .await
            }
            Reopened::Delivery { delivery_id, attempt } => {
                let job = DeliverPostback {
                    delivery_id,
                    attempt,
                    manual: true,
                    sweep: None,
                };
                queues.enqueue(&job, now).await
            }
            Reopened::Send { outbox_id, attempt } => {
                let job = SendMessage {
                    outbox_id,
                    attempt,
                    wait: 0,
                };
                queues.enqueue(&job, now).await
            }
            Reopened::Media { message_id, attempt } => {
                let job = ProcessMedia {
                    message_id,
                    attempt,
                    sweep: Some(now_ms),
                };
                queues.enqueue(&job, now).await
            }
            Reopened::Calendar { channel_id } => {
                let job = CalendarJob {
                    step: CalendarStep::Watch,
                    channel_id,
                    n: 1,
                    resumed: None,
                };
                queues.enqueue(&job, now).await
            }
        }
    }
}

/// Reopens failure `id` of `kind` (still failed, not discarded); `None` when there is no
/// such failure (never was, retried already, discarded). `key` seals a new calendar
/// channel's push token.
#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn retry(
    pool: &PgPool,
    key: &crate::crypto::MasterKey,
    kind: FailureKind,
    id: Uuid,
) -> Result<Option<Reopened>, DbError> {
    Ok(match kind {
        FailureKind::Burst => {
            let mut tx = pool.begin().await?;
            let taken: Option<Uuid> = sqlx::query_scalar(
                r#"UPDATE bursts SET status = 'dropped', reason = $2, updated_at = now()
                   WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL RETURNING id"#,
            )
            .bind(id)
            .bind(DropReason::Retried)
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_none() {
                return Ok(None);
            }
            let new_id = Uuid::now_v7();
            sqlx::query(
                r#"INSERT INTO bursts (id, tenant_id, lead_id, assistant_id, mode, postback_url, status,
                                       first_at, last_at, due_at, deadline_at, channel_id)
                   SELECT $2, tenant_id, lead_id, assistant_id, mode, postback_url, 'open',
                          first_at, last_at, now(), now(), channel_id
                   FROM bursts WHERE id = $1"#,
            )
            .bind(id)
            .bind(new_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(r#"UPDATE messages SET burst_id = $2, status = 'pending' WHERE burst_id = $1"#)
                .bind(id)
                .bind(new_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Some(Reopened::Burst { burst_id: new_id })
        }
        FailureKind::Postback | FailureKind::Notification => {
            let attempt: Option<i32> = sqlx::query_scalar(
                r#"UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now()
                   WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL
                     AND (notification_id IS NULL) = $2
                   RETURNING attempts + 1"#,
            )
            .bind(id)
            .bind(kind == FailureKind::Postback)
            .fetch_optional(pool)
            .await?;
            attempt.map(|attempt| Reopened::Delivery {
                delivery_id: id,
                attempt,
            })
        }
        FailureKind::Send => {
            let attempt: Option<i32> = sqlx::query_scalar(
                r#"UPDATE outbox SET status = 'pending', next_attempt_at = now(), error = NULL, error_code = NULL,
                                     status_at = now()
                   WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL RETURNING attempts + 1"#,
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            attempt.map(|attempt| Reopened::Send { outbox_id: id, attempt })
        }
        FailureKind::Media => {
            let attempt: Option<i32> = sqlx::query_scalar(
                r#"UPDATE media SET status = 'pending', error = NULL, error_code = NULL, locked_until = NULL,
                                    next_attempt = NULL, updated_at = now()
                   WHERE message_id = $1 AND status = 'failed' AND discarded_at IS NULL RETURNING attempts + 1"#,
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            attempt.map(|attempt| Reopened::Media {
                message_id: id,
                attempt: attempt.max(1) as u32,
            })
        }
        // Google's channel ids are not reused: the failed row is set aside (as a discard
        // would) and a new one watches the same calendar. Should that watch fail too, it
        // is listed again, as its own failure.
        FailureKind::Calendar => {
            let taken: Option<(Uuid, Uuid, String)> = sqlx::query_as(&format!(
                "UPDATE calendar_channels SET discarded_at = now(), updated_at = now()
                 WHERE id = $1 AND {CALENDAR_FAILED} RETURNING tenant_id, integration_id, calendar_id"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match taken {
                None => None,
                Some((tenant_id, integration_id, calendar_id)) => {
                    let new =
                        super::calendars::create_pending(pool, key, tenant_id, integration_id, &calendar_id, None)
                            .await?;
                    Some(Reopened::Calendar { channel_id: new.id })
                }
            }
        }
    })
}

/// Takes failure `id` of `kind` off the list; `false` when there is no such failure.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn discard(pool: &PgPool, kind: FailureKind, id: Uuid) -> Result<bool, DbError> {
    let calendar = format!("UPDATE calendar_channels SET discarded_at = now() WHERE id = $1 AND {CALENDAR_FAILED}");
    let sql = match kind {
        FailureKind::Burst => "UPDATE bursts SET discarded_at = now() WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL",
        FailureKind::Postback => {
            "UPDATE deliveries SET discarded_at = now() WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL AND notification_id IS NULL"
        }
        FailureKind::Notification => {
            "UPDATE deliveries SET discarded_at = now() WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL AND notification_id IS NOT NULL"
        }
        FailureKind::Send => "UPDATE outbox SET discarded_at = now() WHERE id = $1 AND status = 'failed' AND discarded_at IS NULL",
        FailureKind::Media => {
            "UPDATE media SET discarded_at = now() WHERE message_id = $1 AND status = 'failed' AND discarded_at IS NULL"
        }
        FailureKind::Calendar => &calendar,
    };
    Ok(sqlx::query(sql).bind(id).execute(pool).await?.rows_affected() == 1)
}

/// A tenant as the console lists it, with what it has and how it is doing.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TenantSummary {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub disabled: bool,
    pub leads: i64,
    pub channels: i64,
    pub messages_24h: i64,
    pub failures_24h: i64,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn tenants(pool: &PgPool) -> Result<Vec<TenantSummary>, DbError> {
    let sql = format!(
        r#"SELECT t.id, t.name, t.kind, t.parent_id, t.disabled_at IS NOT NULL AS disabled,
                  (SELECT count(*) FROM leads l WHERE l.tenant_id = t.id AND l.erased_at IS NULL) AS leads,
                  (SELECT count(*) FROM channels c WHERE c.tenant_id = t.id AND c.deleted_at IS NULL) AS channels,
                  (SELECT count(*) FROM messages m WHERE m.tenant_id = t.id AND m.created_at > now() - interval '24 hours')
                      AS messages_24h,
                  coalesce(f.n, 0) AS failures_24h
           FROM tenants t
           -- The failures of the last day, counted once for all tenants.
           LEFT JOIN (SELECT tenant_id, count(*) AS n FROM ({UNION}) u
                      WHERE u.at > now() - interval '24 hours' GROUP BY tenant_id) f ON f.tenant_id = t.id
           ORDER BY t.created_at"#
    );
    Ok(sqlx::query_as::<_, TenantSummary>(&sql).fetch_all(pool).await?)
}

/// Disables or enables any tenant (the operator's own switch; an agency has its own for
/// its clients). `false` when there is no such tenant.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn set_tenant_disabled(pool: &PgPool, id: Uuid, disabled: bool) -> Result<bool, DbError> {
    Ok(sqlx::query(
        r#"UPDATE tenants SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END WHERE id = $1"#,
    )
    .bind(id)
    .bind(disabled)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// A channel as the console lists it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChannelSummary {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub provider: String,
    pub status: String,
    pub connection: crate::channel::Connection,
    pub connection_changed_at: Option<DateTime<Utc>>,
    pub connection_error: Option<String>,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn channels(
    pool: &PgPool,
    connection: Option<crate::channel::Connection>,
) -> Result<Vec<ChannelSummary>, DbError> {
    Ok(sqlx::query_as::<_, ChannelSummary>(
        r#"SELECT id, tenant_id, name, provider, status, connection, connection_changed_at, connection_error
           FROM channels WHERE deleted_at IS NULL AND ($1::text IS NULL OR connection = $1)
           ORDER BY tenant_id, created_at"#,
    )
    .bind(connection)
    .fetch_all(pool)
    .await?)
}
