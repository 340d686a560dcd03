//! Notification configurations (which events go where) and the notifications raised.
//! Raising one is a transaction: under an advisory lock per (tenant, event, subject) it
//! decides whether the quiet period suppresses it, records it either way, and creates
//! one delivery per matching configuration, which then goes out on the postback queue
//! (same signing, retries and attempt rows as a postback).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

/// Every event a configuration may subscribe to; [`Event::as_str`] is its wire name (in
/// configurations, payloads' `type` and the `notifications.event` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum Event {
    #[serde(rename = "channel.disconnected")]
    #[sqlx(rename = "channel.disconnected")]
    ChannelDisconnected,
    #[serde(rename = "channel.reconnected")]
    #[sqlx(rename = "channel.reconnected")]
    ChannelReconnected,
    #[serde(rename = "integration.needs_reauth")]
    #[sqlx(rename = "integration.needs_reauth")]
    IntegrationNeedsReauth,
    #[serde(rename = "calendar.renewal_failed")]
    #[sqlx(rename = "calendar.renewal_failed")]
    CalendarRenewalFailed,
    #[serde(rename = "postback.exhausted")]
    #[sqlx(rename = "postback.exhausted")]
    PostbackExhausted,
    #[serde(rename = "ai.failed")]
    #[sqlx(rename = "ai.failed")]
    AiFailed,
    #[serde(rename = "message.failed")]
    #[sqlx(rename = "message.failed")]
    MessageFailed,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Self::ChannelDisconnected,
        Self::ChannelReconnected,
        Self::IntegrationNeedsReauth,
        Self::CalendarRenewalFailed,
        Self::PostbackExhausted,
        Self::AiFailed,
        Self::MessageFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChannelDisconnected => "channel.disconnected",
            Self::ChannelReconnected => "channel.reconnected",
            Self::IntegrationNeedsReauth => "integration.needs_reauth",
            Self::CalendarRenewalFailed => "calendar.renewal_failed",
            Self::PostbackExhausted => "postback.exhausted",
            Self::AiFailed => "ai.failed",
            Self::MessageFailed => "message.failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NotificationConfig {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub events: Vec<String>,
    pub target: String,
    pub url: Option<String>,
    pub email: Option<String>,
    pub channel_id: Option<Uuid>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A configuration's fields; the route checks that the target has what it needs.
#[derive(Debug, Clone)]
pub struct ConfigFields {
    pub events: Vec<String>,
    pub target: String,
    pub url: Option<String>,
    pub email: Option<String>,
    pub channel_id: Option<Uuid>,
    pub phone: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, events, target, url, email, channel_id, phone, created_at";

#[tracing::instrument(level = "debug", skip(pool, f))]
pub async fn create(pool: &PgPool, tenant_id: Uuid, f: &ConfigFields) -> Result<NotificationConfig, DbError> {
    let sql = format!(
        r#"INSERT INTO notification_configs (id, tenant_id, events, target, url, email, channel_id, phone)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"#
    );
    Ok(sqlx::query_as::<_, NotificationConfig>(&sql)
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(&f.events)
        .bind(&f.target)
        .bind(&f.url)
        .bind(&f.email)
        .bind(f.channel_id)
        .bind(&f.phone)
        .fetch_one(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<NotificationConfig>, DbError> {
    let sql = format!(
        r#"SELECT {COLUMNS} FROM notification_configs WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at"#
    );
    Ok(sqlx::query_as::<_, NotificationConfig>(&sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<NotificationConfig>, DbError> {
    let sql = format!(
        r#"SELECT {COLUMNS} FROM notification_configs WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#
    );
    Ok(sqlx::query_as::<_, NotificationConfig>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Stops a configuration (its earlier deliveries keep pointing at it); `false` if none.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE notification_configs SET deleted_at = now()
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#,
    )
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `event` was ever raised about `subject` (for events said once per subject).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn was_raised(pool: &PgPool, tenant_id: Uuid, event: Event, subject: &str) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM notifications WHERE tenant_id = $1 AND event = $2 AND subject = $3)"#,
    )
    .bind(tenant_id)
    .bind(event)
    .bind(subject)
    .fetch_one(pool)
    .await?)
}

/// What [`raise`] did.
#[derive(Debug, Clone, Default)]
pub struct Raised {
    pub notification_id: Option<Uuid>,
    /// Held to the end of the quiet period of an earlier one (its deliveries are due then).
    pub held_until: Option<DateTime<Utc>>,
    /// Deliveries to enqueue (attempt 1), due now or at `held_until`.
    pub deliveries: Vec<Uuid>,
}

/// Raises `event` about `subject` (a channel id, a delivery id…) for a tenant.
#[tracing::instrument(level = "debug", skip(pool, payload))]
pub async fn raise(
    pool: &PgPool,
    tenant_id: Uuid,
    event: Event,
    subject: &str,
    payload: &str,
    quiet: Duration,
) -> Result<Raised, DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(r#"SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"#)
        .bind(format!("notify:{tenant_id}:{subject}"))
        .execute(&mut *tx)
        .await?;
    // The end of the quiet period of the last one of this event that went out.
    let held_until: Option<DateTime<Utc>> = sqlx::query_scalar(
        r#"SELECT max(created_at) + make_interval(secs => $4) FROM notifications
           WHERE tenant_id = $1 AND subject = $2 AND event = $3 AND status IN ('sent', 'released')
             AND created_at > now() - make_interval(secs => $4)"#,
    )
    .bind(tenant_id)
    .bind(subject)
    .bind(event)
    .bind(quiet.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    let id = Uuid::now_v7();
    sqlx::query(
        r#"INSERT INTO notifications (id, tenant_id, event, subject, payload, status)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(id)
    .bind(tenant_id)
    .bind(event)
    .bind(subject)
    .bind(payload)
    .bind(if held_until.is_some() { "held" } else { "sent" })
    .execute(&mut *tx)
    .await?;
    // The webhook id is stable per (notification, config): receivers dedupe on it.
    let deliveries = sqlx::query_scalar(
        r#"INSERT INTO deliveries (id, webhook_id, tenant_id, notification_id, config_id, target, url, channel_id,
                                   recipient, payload, status, next_attempt_at)
           SELECT d.id, 'msg_' || replace(d.id::text, '-', ''), $1, $2, c.id, c.target, c.url, c.channel_id,
                  coalesce(c.email, c.phone), $4, 'pending', coalesce($5, now())
           FROM notification_configs c, LATERAL (SELECT gen_random_uuid() AS id) d
           WHERE c.tenant_id = $1 AND c.deleted_at IS NULL AND $3 = ANY (c.events)
           RETURNING id"#,
    )
    .bind(tenant_id)
    .bind(id)
    .bind(event)
    .bind(payload)
    .bind(held_until)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Raised {
        notification_id: Some(id),
        held_until,
        deliveries,
    })
}

/// Whether a notification's deliveries may go out now. A held one is released only if it
/// is still the latest about its subject and differs from the last one that went out;
/// otherwise it is dropped (superseded, or nothing new to say).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn may_send(pool: &PgPool, id: Uuid) -> Result<bool, DbError> {
    let mut tx = pool.begin().await?;
    let Some((tenant_id, subject, event, status)): Option<(Uuid, String, String, String)> =
        sqlx::query_as(r#"SELECT tenant_id, subject, event, status FROM notifications WHERE id = $1"#)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(false);
    };
    if status != "held" {
        return Ok(matches!(status.as_str(), "sent" | "released"));
    }
    sqlx::query(r#"SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"#)
        .bind(format!("notify:{tenant_id}:{subject}"))
        .execute(&mut *tx)
        .await?;
    let latest: Option<Uuid> = sqlx::query_scalar(
        r#"SELECT id FROM notifications WHERE tenant_id = $1 AND subject = $2 ORDER BY created_at DESC, id DESC LIMIT 1"#,
    )
    .bind(tenant_id)
    .bind(&subject)
    .fetch_optional(&mut *tx)
    .await?;
    let last_sent: Option<String> = sqlx::query_scalar(
        r#"SELECT event FROM notifications WHERE tenant_id = $1 AND subject = $2 AND status IN ('sent', 'released')
           ORDER BY created_at DESC, id DESC LIMIT 1"#,
    )
    .bind(tenant_id)
    .bind(&subject)
    .fetch_optional(&mut *tx)
    .await?;
    let release = latest == Some(id) && last_sent.as_deref() != Some(event.as_str());
    sqlx::query(r#"UPDATE notifications SET status = $2 WHERE id = $1"#)
        .bind(id)
        .bind(if release { "released" } else { "dropped" })
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::Event;

    /// One wire name per event, whichever way it is written (serde, the column, a config).
    #[test]
    fn every_event_has_one_wire_name() {
        for e in Event::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), serde_json::json!(e.as_str()));
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        assert_eq!(Event::parse("channel.exploded"), None);
    }
}
