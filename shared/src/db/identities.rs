//! How a lead is recognised on channels: phone (E.164), WhatsApp LID, Telegram chat,
//! e-mail. A lead may have several; a payload carrying any known one finds the lead, and
//! the others it carries are attached to it.

use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

/// `(kind, value)` pairs, most stable first.
pub type Keys = Vec<(&'static str, String)>;

/// The `external_id` of the lead that already owns one of `keys`, if any.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find_lead(pool: &PgPool, tenant_id: Uuid, keys: &Keys) -> Result<Option<String>, DbError> {
    let kinds: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let values: Vec<&str> = keys.iter().map(|(_, v)| v.as_str()).collect();
    Ok(sqlx::query_scalar(
        r#"SELECT l.external_id
           FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS k(kind, value, n)
           JOIN lead_identities i ON i.tenant_id = $1 AND i.kind = k.kind AND i.value = k.value
           JOIN leads l ON l.id = i.lead_id
           ORDER BY k.n LIMIT 1"#,
    )
    .bind(tenant_id)
    .bind(&kinds)
    .bind(&values)
    .fetch_optional(pool)
    .await?)
}

/// Attaches `keys` to `lead_id`; keys another lead already owns stay with it.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn attach(pool: &PgPool, tenant_id: Uuid, lead_id: Uuid, keys: &Keys) -> Result<(), DbError> {
    let kinds: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let values: Vec<&str> = keys.iter().map(|(_, v)| v.as_str()).collect();
    sqlx::query(
        r#"INSERT INTO lead_identities (tenant_id, kind, value, lead_id)
           SELECT $1, k.kind, k.value, $4 FROM unnest($2::text[], $3::text[]) AS k(kind, value)
           ON CONFLICT (tenant_id, kind, value) DO NOTHING"#,
    )
    .bind(tenant_id)
    .bind(&kinds)
    .bind(&values)
    .bind(lead_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every identity of a lead, as `(kind, value)`.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn for_lead(pool: &PgPool, lead_id: Uuid) -> Result<Vec<(String, String)>, DbError> {
    Ok(
        sqlx::query_as(r#"SELECT kind, value FROM lead_identities WHERE lead_id = $1 ORDER BY created_at"#)
            .bind(lead_id)
            .fetch_all(pool)
            .await?,
    )
}
