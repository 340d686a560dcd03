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
}

/// Counts one message of `lead_id` on `channel_id`, creating the lead channel (with the
/// channel's assistant and department) on first contact.
#[tracing::instrument(skip(pool))]
pub async fn touch(pool: &PgPool, tenant_id: Uuid, lead_id: Uuid, channel_id: Uuid) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    // The lead row lock serialises "is there a primary yet?" for this lead.
    sqlx::query(r#"SELECT 1 FROM leads WHERE id = $1 FOR UPDATE"#)
        .bind(lead_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        r#"INSERT INTO lead_channels (id, tenant_id, lead_id, channel_id, assistant_id, department_id, is_primary,
                                      message_count, last_used_at)
           SELECT $1, $2, $3, c.id, c.assistant_id, c.department_id,
                  NOT EXISTS (SELECT 1 FROM lead_channels p WHERE p.lead_id = $3 AND p.is_primary), 1, now()
           FROM channels c WHERE c.id = $4
           ON CONFLICT (lead_id, channel_id) DO UPDATE
               SET message_count = lead_channels.message_count + 1, last_used_at = now()"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(lead_id)
    .bind(channel_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

#[tracing::instrument(skip(pool))]
pub async fn for_lead(pool: &PgPool, lead_id: Uuid) -> Result<Vec<LeadChannel>, DbError> {
    Ok(sqlx::query_as::<_, LeadChannel>(
        r#"SELECT lc.id, lc.lead_id, lc.channel_id, lc.assistant_id, c.name AS channel_name, c.type AS channel_type,
                  lc.department_id, lc.assigned_user_id, lc.is_primary, lc.message_count, lc.last_used_at
           FROM lead_channels lc JOIN channels c ON c.id = lc.channel_id
           WHERE lc.lead_id = $1 ORDER BY lc.created_at"#,
    )
    .bind(lead_id)
    .fetch_all(pool)
    .await?)
}
