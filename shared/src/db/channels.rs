//! Channels of a tenant. Credentials are a JSON object of strings, encrypted as a whole
//! with the master key; reads return them only through [`credentials`], for the
//! workers that talk to the provider. Deleting a channel hides it (`deleted_at`): its
//! conversations and lead channels keep pointing at it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::crypto::MasterKey;

/// `Debug` leaves out the webhook secret (spans and slow-query warnings print it).
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct Channel {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub channel_type: String,
    pub provider: String,
    /// The inbound webhook token, sealed ([`webhook_secret`] opens it).
    #[serde(skip)]
    pub webhook_secret_enc: Option<Vec<u8>>,
    pub assistant_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub status: String,
    /// WhatsApp connection (see `connections`).
    pub connection: crate::channel::Connection,
    pub connection_changed_at: Option<DateTime<Utc>>,
    pub connection_checked_at: Option<DateTime<Utc>>,
    pub connection_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("provider", &self.provider)
            .field("status", &self.status)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

pub type Credentials = BTreeMap<String, String>;

/// Everything about a channel but its id, tenant and timestamps.
#[derive(Debug, Clone)]
pub struct ChannelFields {
    pub name: String,
    pub channel_type: String,
    pub provider: String,
    pub credentials: Credentials,
    pub assistant_id: Option<Uuid>,
    pub department_id: Option<Uuid>,
    pub status: String,
}

const COLUMNS: &str = r#"id, tenant_id, name, type, provider, webhook_secret_enc, assistant_id, department_id, status,
    connection, connection_changed_at, connection_checked_at, connection_error, created_at, updated_at"#;

/// Where a channel's credentials belong (bound to its row: see [`crate::crypto::Place`]).
pub fn credentials_place(id: Uuid) -> crate::crypto::Place<'static> {
    crate::crypto::Place {
        table: "channels",
        column: "credentials_enc",
        row: id,
    }
}

/// Where a channel's webhook token belongs.
pub fn webhook_secret_place(id: Uuid) -> crate::crypto::Place<'static> {
    crate::crypto::Place {
        table: "channels",
        column: "webhook_secret_enc",
        row: id,
    }
}

/// The channel's inbound webhook token (what `?token=` and Telegram's secret header carry).
pub fn webhook_secret(key: &MasterKey, id: Uuid, enc: Option<&[u8]>) -> Result<SecretString, DbError> {
    let enc = enc.ok_or(DbError::NotFound("webhook secret"))?;
    Ok(key.open_string(enc, &webhook_secret_place(id))?)
}

fn seal(key: &MasterKey, id: Uuid, c: &Credentials) -> Vec<u8> {
    key.seal_str(
        &serde_json::to_string(c).expect("a map of strings serialises"),
        &credentials_place(id),
    )
}

#[tracing::instrument(level = "debug", skip(pool, key, f))]
pub async fn insert(pool: &PgPool, key: &MasterKey, tenant_id: Uuid, f: &ChannelFields) -> Result<Channel, DbError> {
    let sql = format!(
        r#"INSERT INTO channels (id, tenant_id, name, type, provider, credentials_enc, webhook_secret_enc, assistant_id,
                                 department_id, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           RETURNING {COLUMNS}"#
    );
    let id = Uuid::now_v7();
    Ok(sqlx::query_as::<_, Channel>(&sql)
        .bind(id)
        .bind(tenant_id)
        .bind(&f.name)
        .bind(&f.channel_type)
        .bind(&f.provider)
        .bind(seal(key, id, &f.credentials))
        .bind(key.seal_str(&crate::crypto::random_token(), &webhook_secret_place(id)))
        .bind(f.assistant_id)
        .bind(f.department_id)
        .bind(&f.status)
        .fetch_one(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Channel>, DbError> {
    let sql =
        format!(r#"SELECT {COLUMNS} FROM channels WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at"#);
    Ok(sqlx::query_as::<_, Channel>(&sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

/// A live channel, only within `tenant_id`.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Channel>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM channels WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#);
    Ok(sqlx::query_as::<_, Channel>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The decrypted credentials of a channel.
#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn credentials(pool: &PgPool, key: &MasterKey, id: Uuid) -> Result<Credentials, DbError> {
    let enc: Vec<u8> = sqlx::query_scalar(r#"SELECT credentials_enc FROM channels WHERE id = $1"#)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DbError::NotFound("channel"))?;
    open(key, id, &enc)
}

/// Decrypts credentials read with channel `id` (see [`seal`]).
pub fn open(key: &MasterKey, id: Uuid, enc: &[u8]) -> Result<Credentials, DbError> {
    let text = key.open_string(enc, &credentials_place(id))?;
    use secrecy::ExposeSecret;
    Ok(serde_json::from_str(text.expose_secret()).unwrap_or_default())
}

/// Replaces a channel's fields (the route merges a PATCH onto the current ones).
#[tracing::instrument(level = "debug", skip(pool, key, f))]
pub async fn update(
    pool: &PgPool,
    key: &MasterKey,
    tenant_id: Uuid,
    id: Uuid,
    f: &ChannelFields,
) -> Result<Option<Channel>, DbError> {
    let sql = format!(
        r#"UPDATE channels SET name = $3, credentials_enc = $4, assistant_id = $5, department_id = $6, status = $7,
               updated_at = now()
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
           RETURNING {COLUMNS}"#
    );
    Ok(sqlx::query_as::<_, Channel>(&sql)
        .bind(tenant_id)
        .bind(id)
        .bind(&f.name)
        .bind(seal(key, id, &f.credentials))
        .bind(f.assistant_id)
        .bind(f.department_id)
        .bind(&f.status)
        .fetch_optional(pool)
        .await?)
}

/// Hides a channel; `false` if there was none.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE channels SET deleted_at = now(), status = 'inactive', updated_at = now()
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#,
    )
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Active channels counted by provider and connection state (the `leadflow_channels` gauge).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn connection_counts(pool: &PgPool) -> Result<Vec<(String, String, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT provider, connection, count(*) FROM channels WHERE status = 'active' GROUP BY provider, connection",
    )
    .fetch_all(pool)
    .await?)
}
