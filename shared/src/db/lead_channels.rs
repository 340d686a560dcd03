//! Lead channels: one per (lead, channel), created on first contact, in Leavo's shape.
//! The counters are updated in the same statement that creates the row, so concurrent
//! messages never lose a count; the first channel of a lead becomes its primary one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LeadChannel {
    pub id: Uuid,
    pub lead_id: Uuid,
    pub channel_id: Uuid,
    pub assistant_id: Option<Uuid>,
    pub channel_name: String,
    pub channel_type: String,
    pub department_id: Option<Uuid>,
    pub assigned_user_id: Option<Uuid>,
    pub is_primary: bool,
    pub message_count: i32,
    pub last_used_at: Option<DateTime<Utc>>,
    /// A human took over on this channel: the AI stays quiet until then.
    pub paused_until: Option<DateTime<Utc>>,
}

/// Counts one message of `lead_id` on `channel_id`, creating the lead channel (with the
/// channel's assistant — the tenant's default when it names none — and department) on
/// first contact.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn touch(
    pool: &PgPool,
    tenant_id: Uuid,
    lead_id: Uuid,
    channel_id: Uuid,
    from_lead: bool,
) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    // The lead row lock serialises "is there a primary yet?" for this lead.
    sqlx::query(r#"SELECT 1 FROM leads WHERE id = $1 FOR UPDATE"#)
        .bind(lead_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        r#"INSERT INTO lead_channels (id, tenant_id, lead_id, channel_id, assistant_id, department_id, is_primary,
                                      message_count, last_used_at, last_inbound_at)
           SELECT $1, $2, $3, c.id,
                  COALESCE(c.assistant_id,
                           (SELECT a.id FROM assistants a WHERE a.tenant_id = c.tenant_id AND a.is_default)),
                  c.department_id,
                  NOT EXISTS (SELECT 1 FROM lead_channels p WHERE p.lead_id = $3 AND p.is_primary), 1, now(),
                  CASE WHEN $5 THEN now() END
           FROM channels c WHERE c.id = $4
           ON CONFLICT (lead_id, channel_id) DO UPDATE
               SET message_count = lead_channels.message_count + 1, last_used_at = now(),
                   last_inbound_at = CASE WHEN $5 THEN now() ELSE lead_channels.last_inbound_at END"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(lead_id)
    .bind(channel_id)
    .bind(from_lead)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// When the lead last wrote on this channel.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn last_inbound(pool: &PgPool, lead_id: Uuid, channel_id: Uuid) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(
        sqlx::query_scalar(r#"SELECT last_inbound_at FROM lead_channels WHERE lead_id = $1 AND channel_id = $2"#)
            .bind(lead_id)
            .bind(channel_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn for_lead(pool: &PgPool, lead_id: Uuid) -> Result<Vec<LeadChannel>, DbError> {
    Ok(sqlx::query_as::<_, LeadChannel>(
        r#"SELECT lc.id, lc.lead_id, lc.channel_id, lc.assistant_id, c.name AS channel_name, c.type AS channel_type,
                  lc.department_id, lc.assigned_user_id, lc.is_primary, lc.message_count, lc.last_used_at,
                  (SELECT GREATEST(l.paused_until, cp.paused_until) FROM leads l
                   LEFT JOIN channel_pauses cp ON cp.lead_id = l.id AND cp.channel_id = lc.channel_id
                   WHERE l.id = lc.lead_id AND GREATEST(l.paused_until, cp.paused_until) > now()) AS paused_until
           FROM lead_channels lc JOIN channels c ON c.id = lc.channel_id
           WHERE lc.lead_id = $1 ORDER BY lc.created_at"#,
    )
    .bind(lead_id)
    .fetch_all(pool)
    .await?)
}

/// What a PATCH may change on a lead channel.
#[derive(Debug, Clone)]
pub struct LeadChannelFields {
    pub assistant_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub assigned_user_id: Option<Uuid>,
    pub is_primary: bool,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find(pool: &PgPool, lead_id: Uuid, id: Uuid) -> Result<Option<LeadChannel>, DbError> {
    Ok(for_lead(pool, lead_id).await?.into_iter().find(|lc| lc.id == id))
}

/// Applies `f`; making one channel primary makes the lead's others not.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn update(pool: &PgPool, lead_id: Uuid, id: Uuid, f: &LeadChannelFields) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query(r#"SELECT 1 FROM leads WHERE id = $1 FOR UPDATE"#)
        .bind(lead_id)
        .execute(&mut *tx)
        .await?;
    if f.is_primary {
        sqlx::query(r#"UPDATE lead_channels SET is_primary = false WHERE lead_id = $1 AND id <> $2 AND is_primary"#)
            .bind(lead_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        r#"UPDATE lead_channels SET assistant_id = $3, department_id = $4, assigned_user_id = $5, is_primary = $6
           WHERE lead_id = $1 AND id = $2"#,
    )
    .bind(lead_id)
    .bind(id)
    .bind(f.assistant_id)
    .bind(f.department_id)
    .bind(f.assigned_user_id)
    .bind(f.is_primary)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A human who has written to the lead, per channel (Leavo's attendants): an operator
/// through Leadflow, or someone on the business's phone (`source: "phone"`; the user is
/// the lead channel's assigned user, if any, since the phone does not say who held it).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Attendant {
    pub user_id: Option<Uuid>,
    pub user_name: Option<String>,
    pub channel_id: Uuid,
    pub channel_name: String,
    pub channel_type: String,
    pub assistant_name: Option<String>,
    pub department_name: Option<String>,
    pub source: String,
    pub last_message_at: DateTime<Utc>,
    pub message_count: i32,
}

/// Counts one human message on the lead channel: `user_id` for an operator's message,
/// `None` for a reply typed on the phone (credited to the lead channel's assigned user).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn attend(pool: &PgPool, lead_id: Uuid, channel_id: Uuid, user_id: Option<Uuid>) -> Result<(), DbError> {
    sqlx::query(
        r#"INSERT INTO attendances AS a (lead_id, channel_id, user_id, source, message_count, last_message_at)
           SELECT $1, $2, COALESCE($3, (SELECT lc.assigned_user_id FROM lead_channels lc
                                         WHERE lc.lead_id = $1 AND lc.channel_id = $2)),
                  CASE WHEN $3 IS NULL THEN 'phone' ELSE 'leadflow' END, 1, now()
           ON CONFLICT (lead_id, channel_id, COALESCE(user_id, '00000000-0000-0000-0000-000000000000'::uuid), source)
           DO UPDATE SET message_count = a.message_count + 1, last_message_at = now()"#,
    )
    .bind(lead_id)
    .bind(channel_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(())
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn attendants(pool: &PgPool, lead_id: Uuid) -> Result<Vec<Attendant>, DbError> {
    Ok(sqlx::query_as::<_, Attendant>(
        r#"SELECT at.user_id, op.name AS user_name, c.id AS channel_id, c.name AS channel_name, c.type AS channel_type,
                  a.name AS assistant_name, d.name AS department_name, at.source,
                  at.last_message_at, at.message_count
           FROM attendances at
           LEFT JOIN operators op ON op.id = at.user_id
           JOIN channels c ON c.id = at.channel_id
           LEFT JOIN lead_channels lc ON lc.lead_id = at.lead_id AND lc.channel_id = at.channel_id
           LEFT JOIN assistants a ON a.id = COALESCE(lc.assistant_id, c.assistant_id,
               (SELECT x.id FROM assistants x WHERE x.tenant_id = c.tenant_id AND x.is_default))
           LEFT JOIN departments d ON d.id = COALESCE(lc.department_id, c.department_id)
           WHERE at.lead_id = $1
           ORDER BY at.last_message_at DESC"#,
    )
    .bind(lead_id)
    .fetch_all(pool)
    .await?)
}

/// The assistant a lead channel names (a PATCH may have changed it from the channel's).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn assistant_for(
    pool: &PgPool,
    tenant_id: Uuid,
    lead_external_id: &str,
    channel_id: Uuid,
) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT lc.assistant_id FROM lead_channels lc JOIN leads l ON l.id = lc.lead_id
           WHERE l.tenant_id = $1 AND l.external_id = $2 AND lc.channel_id = $3"#,
    )
    .bind(tenant_id)
    .bind(lead_external_id)
    .bind(channel_id)
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// Leads that first wrote through `channel_id` within the last hour.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn new_in_last_hour(pool: &PgPool, channel_id: Uuid) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT count(*) FROM lead_channels WHERE channel_id = $1 AND created_at > now() - interval '1 hour'"#,
    )
    .bind(channel_id)
    .fetch_one(pool)
    .await?)
}
