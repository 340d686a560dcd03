//! Tenants and their credentials. API keys are stored as SHA-256 hashes (they are 256-bit
//! random, so a fast hash is safe and keeps auth off the hot path's CPU); postback
//! secrets and AI keys are encrypted with the master key.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::crypto::{self, MasterKey};
use crate::domain::AssistantSettings;
use crate::signing::WebhookSecret;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub rate_limit_per_sec: Option<i32>,
    /// Disabled by its agency: its key stops working, its agency may read but not act.
    pub disabled: bool,
}

/// Where a tenant's secret belongs (bound to its row: see [`crypto::Place`]).
pub fn place(id: Uuid, column: &'static str) -> crypto::Place<'static> {
    crypto::Place {
        table: "tenants",
        column,
        row: id,
    }
}

/// Why work of a disabled tenant is not done: recorded on whatever it dropped.
pub const DISABLED: &str = "the tenant is disabled";

/// The SQL column `tenant_disabled` for a row aliased `alias` that has a `tenant_id`:
/// the one rule behind [`is_disabled`], read along with the row a job loads anyway, so
/// the hot paths (inbound, flush, generation, media, send) pay no extra round trip.
pub fn disabled_column(alias: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM tenants dt WHERE dt.id = {alias}.tenant_id AND dt.disabled_at IS NOT NULL) AS tenant_disabled"
    )
}

/// Whether the tenant is disabled (an agency disabled its client). A disabled tenant's
/// webhooks are acknowledged and kept as ignored events; its queued work is dropped with
/// [`DISABLED`] when it comes up; nothing is processed, sent, polled or posted. Enabling
/// it again resumes new work only.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn is_disabled<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<bool, DbError> {
    Ok(
        sqlx::query_scalar::<_, bool>(r#"SELECT disabled_at IS NOT NULL FROM tenants WHERE id = $1"#)
            .bind(id)
            .fetch_optional(db)
            .await?
            .unwrap_or(true),
    )
}

/// What `leadflow tenant create` prints: the only time the API key is ever shown.
/// `Debug` shows neither secret.
#[derive(serde::Serialize)]
pub struct CreatedTenant {
    pub tenant_id: Uuid,
    pub api_key: String,
    pub postback_secret: String,
    pub assistant_id: Uuid,
}

impl std::fmt::Debug for CreatedTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedTenant")
            .field("tenant_id", &self.tenant_id)
            .field("assistant_id", &self.assistant_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantKind {
    Agency,
    Client,
}

impl TenantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agency => "agency",
            Self::Client => "client",
        }
    }
}

#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn create(
    pool: &PgPool,
    key: &MasterKey,
    name: &str,
    kind: TenantKind,
    parent: Option<Uuid>,
) -> Result<CreatedTenant, DbError> {
    let mut tx = pool.begin().await?;
    if let Some(parent) = parent {
        let parent_kind: Option<String> = sqlx::query_scalar(r#"SELECT kind FROM tenants WHERE id = $1"#)
            .bind(parent)
            .fetch_optional(&mut *tx)
            .await?;
        if parent_kind.as_deref() != Some("agency") {
            return Err(DbError::NotFound("parent agency tenant"));
        }
    }
    let id = Uuid::now_v7();
    let api_key = crypto::generate_api_key();
    let secret = WebhookSecret::generate();
    let postback_secret = secret.expose_encoded();
    sqlx::query(
        r#"INSERT INTO tenants (id, name, kind, parent_id, api_key_hash, postback_secret_enc)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(id)
    .bind(name)
    .bind(kind.as_str())
    .bind(parent)
    .bind(crypto::hash_api_key(&api_key))
    .bind(key.seal_str(&postback_secret, &place(id, "postback_secret_enc")))
    .execute(&mut *tx)
    .await?;
    let assistant = super::assistants::insert(&mut tx, id, &AssistantSettings::default()).await?;
    tx.commit().await?;
    Ok(CreatedTenant {
        tenant_id: id,
        api_key,
        postback_secret,
        assistant_id: assistant.id,
    })
}

#[tracing::instrument(level = "debug", skip_all)]
pub async fn find_by_api_key(pool: &PgPool, api_key: &str) -> Result<Option<Tenant>, DbError> {
    Ok(sqlx::query_as::<_, Tenant>(
        r#"SELECT id, name, kind, parent_id, rate_limit_per_sec, false AS disabled FROM tenants
           WHERE api_key_hash = $1 AND disabled_at IS NULL"#,
    )
    .bind(crypto::hash_api_key(api_key))
    .fetch_optional(pool)
    .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Tenant>, DbError> {
    Ok(sqlx::query_as::<_, Tenant>(
        r#"SELECT id, name, kind, parent_id, rate_limit_per_sec, disabled_at IS NOT NULL AS disabled
           FROM tenants WHERE id = $1"#,
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The tenant's postback signing secret, decrypted.
#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn postback_secret(pool: &PgPool, key: &MasterKey, id: Uuid) -> Result<WebhookSecret, DbError> {
    let enc: Vec<u8> = sqlx::query_scalar(r#"SELECT postback_secret_enc FROM tenants WHERE id = $1"#)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DbError::NotFound("tenant"))?;
    let text = key.open_string(&enc, &place(id, "postback_secret_enc"))?;
    WebhookSecret::parse(text.expose_secret()).map_err(|_| DbError::Malformed("postback secret"))
}

/// The tenant's own AI credentials, when it brought any (they win over the default).
#[derive(Debug, Clone, Default)]
pub struct TenantAi {
    pub api_key: Option<SecretString>,
    pub base_url: Option<String>,
}

#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn ai_settings(pool: &PgPool, key: &MasterKey, id: Uuid) -> Result<TenantAi, DbError> {
    let row: Option<(Option<Vec<u8>>, Option<String>)> =
        sqlx::query_as(r#"SELECT ai_api_key_enc, ai_base_url FROM tenants WHERE id = $1"#)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let (enc, base_url) = row.ok_or(DbError::NotFound("tenant"))?;
    let api_key = enc
        .map(|enc| key.open_string(&enc, &place(id, "ai_api_key_enc")))
        .transpose()?;
    Ok(TenantAi { api_key, base_url })
}

#[tracing::instrument(level = "debug", skip(pool, key, api_key))]
pub async fn set_ai_settings(
    pool: &PgPool,
    key: &MasterKey,
    id: Uuid,
    api_key: Option<&str>,
    base_url: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(r#"UPDATE tenants SET ai_api_key_enc = $2, ai_base_url = $3 WHERE id = $1"#)
        .bind(id)
        .bind(api_key.map(|k| key.seal_str(k, &place(id, "ai_api_key_enc"))))
        .bind(base_url)
        .execute(pool)
        .await?;
    Ok(())
}

/// A client of an agency, as the agency sees it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Client {
    pub id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn clients(pool: &PgPool, agency: Uuid) -> Result<Vec<Client>, DbError> {
    Ok(sqlx::query_as::<_, Client>(
        r#"SELECT id, name, created_at, disabled_at FROM tenants WHERE parent_id = $1 ORDER BY created_at"#,
    )
    .bind(agency)
    .fetch_all(pool)
    .await?)
}

/// Disables (or re-enables) one of `agency`'s clients; `false` if it is not its client.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn set_client_disabled(pool: &PgPool, agency: Uuid, client: Uuid, disabled: bool) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE tenants SET disabled_at = CASE WHEN $3 THEN COALESCE(disabled_at, now()) END
           WHERE id = $2 AND parent_id = $1"#,
    )
    .bind(agency)
    .bind(client)
    .bind(disabled)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
