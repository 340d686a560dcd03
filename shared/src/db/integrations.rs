//! Integration tokens (LeadSmart's IntegrationToken): per tenant and service, the OAuth
//! access and refresh tokens encrypted with the master key, their expiry and scopes, and
//! the integration's status (`active`, `needs_reauth`, `revoked`). Reads for the API never
//! include the tokens; the worker decrypts them through [`secrets`]. Consent `state`s are
//! single-use and short-lived.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;
use crate::crypto::MasterKey;

/// An integration's state (`integration_tokens.status`): `active`; `needs_reauth` once
/// Google refused its refresh token (consent again makes it active); `revoked` by the
/// tenant, for good (its tokens are wiped once its channels are stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    Active,
    NeedsReauth,
    Revoked,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Integration {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub service: String,
    pub status: IntegrationStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: String,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, service, status, expires_at, scopes, last_error, created_at, updated_at";

/// How long a consent `state` stays valid.
pub const STATE_TTL_SECS: f64 = 600.0;

#[tracing::instrument(level = "debug", skip(pool, state))]
pub async fn new_state(pool: &PgPool, tenant_id: Uuid, service: &str, state: &str) -> Result<(), DbError> {
    sqlx::query(r#"INSERT INTO oauth_states (state, tenant_id, service) VALUES ($1, $2, $3)"#)
        .bind(state)
        .bind(tenant_id)
        .bind(service)
        .execute(pool)
        .await?;
    Ok(())
}

/// Uses a `state` once: its tenant, or `None` when unknown, used or expired.
#[tracing::instrument(level = "debug", skip(pool, state))]
pub async fn take_state(pool: &PgPool, state: &str, service: &str) -> Result<Option<Uuid>, DbError> {
    Ok(sqlx::query_scalar(
        r#"UPDATE oauth_states SET used_at = now()
           WHERE state = $1 AND service = $2 AND used_at IS NULL
             AND created_at > now() - make_interval(secs => $3)
           RETURNING tenant_id"#,
    )
    .bind(state)
    .bind(service)
    .bind(STATE_TTL_SECS)
    .fetch_optional(pool)
    .await?)
}

/// Stores a fresh consent's tokens as the tenant's live integration (replacing the tokens
/// of one that needed re-authorisation, keeping its id so its calendars carry on).
#[tracing::instrument(level = "debug", skip(pool, key, access, refresh))]
#[allow(clippy::too_many_arguments)]
pub async fn store_consent(
    pool: &PgPool,
    key: &MasterKey,
    tenant_id: Uuid,
    service: &str,
    access: &str,
    refresh: Option<&str>,
    expires_at: DateTime<Utc>,
    scopes: &str,
) -> Result<Integration, DbError> {
    let sql = format!(
        r#"INSERT INTO integration_tokens (id, tenant_id, service, status, access_token_enc, refresh_token_enc,
                                           expires_at, scopes)
           VALUES ($1, $2, $3, 'active', $4, $5, $6, $7)
           ON CONFLICT (tenant_id, service) WHERE status <> 'revoked' DO UPDATE
             SET status = 'active', access_token_enc = EXCLUDED.access_token_enc,
                 refresh_token_enc = coalesce(EXCLUDED.refresh_token_enc, integration_tokens.refresh_token_enc),
                 expires_at = EXCLUDED.expires_at, scopes = EXCLUDED.scopes, last_error = NULL, updated_at = now()
           RETURNING {COLUMNS}"#
    );
    Ok(sqlx::query_as::<_, Integration>(&sql)
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(service)
        .bind(key.seal_str(access, &token_place(tenant_id, "access_token_enc")))
        .bind(refresh.map(|r| key.seal_str(r, &token_place(tenant_id, "refresh_token_enc"))))
        .bind(expires_at)
        .bind(scopes)
        .fetch_one(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Integration>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM integration_tokens WHERE tenant_id = $1 ORDER BY created_at"#);
    Ok(sqlx::query_as::<_, Integration>(&sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Integration>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM integration_tokens WHERE id = $1"#);
    Ok(sqlx::query_as::<_, Integration>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The tenant's live integration with `service`.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn live(pool: &PgPool, tenant_id: Uuid, service: &str) -> Result<Option<Integration>, DbError> {
    let sql = format!(
        r#"SELECT {COLUMNS} FROM integration_tokens WHERE tenant_id = $1 AND service = $2 AND status <> 'revoked'"#
    );
    Ok(sqlx::query_as::<_, Integration>(&sql)
        .bind(tenant_id)
        .bind(service)
        .fetch_optional(pool)
        .await?)
}

/// The decrypted tokens: (access, refresh).
pub struct Secrets {
    pub access: Option<SecretString>,
    pub refresh: Option<SecretString>,
}

/// Where an integration's token belongs: bound to its tenant (one integration per tenant
/// and service; an upsert keeps the row's id, so the tenant is the stable owner).
pub fn token_place(tenant_id: Uuid, column: &'static str) -> crate::crypto::Place<'static> {
    crate::crypto::Place {
        table: "integration_tokens",
        column,
        row: tenant_id,
    }
}

#[tracing::instrument(level = "debug", skip(pool, key))]
pub async fn secrets(pool: &PgPool, key: &MasterKey, id: Uuid) -> Result<Secrets, DbError> {
    let (tenant_id, access, refresh): (Uuid, Option<Vec<u8>>, Option<Vec<u8>>) = sqlx::query_as(
        r#"SELECT tenant_id, access_token_enc, refresh_token_enc FROM integration_tokens WHERE id = $1"#,
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(DbError::NotFound("integration"))?;
    let open = |v: Option<Vec<u8>>, column| {
        v.map(|b| key.open_string(&b, &token_place(tenant_id, column)))
            .transpose()
    };
    Ok(Secrets {
        access: open(access, "access_token_enc")?,
        refresh: open(refresh, "refresh_token_enc")?,
    })
}

/// A refreshed access token.
#[tracing::instrument(level = "debug", skip(pool, key, access))]
pub async fn refreshed(
    pool: &PgPool,
    key: &MasterKey,
    id: Uuid,
    access: &SecretString,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let tenant_id: Uuid = sqlx::query_scalar(r#"SELECT tenant_id FROM integration_tokens WHERE id = $1"#)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DbError::NotFound("integration"))?;
    sqlx::query(
        r#"UPDATE integration_tokens SET access_token_enc = $2, expires_at = $3, last_error = NULL, updated_at = now()
           WHERE id = $1"#,
    )
    .bind(id)
    .bind(key.seal_str(access.expose_secret(), &token_place(tenant_id, "access_token_enc")))
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves an integration to `status` (`needs_reauth`, `revoked`); `true` when it changed.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn set_status(
    pool: &PgPool,
    id: Uuid,
    status: IntegrationStatus,
    error: Option<&str>,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE integration_tokens SET status = $2, last_error = coalesce($3, last_error), updated_at = now()
           WHERE id = $1 AND status <> $2 AND status <> 'revoked'"#,
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets a revoked integration's tokens once its channels are stopped.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn wipe(pool: &PgPool, id: Uuid) -> Result<(), DbError> {
    sqlx::query(
        r#"UPDATE integration_tokens SET access_token_enc = NULL, refresh_token_enc = NULL, updated_at = now()
           WHERE id = $1 AND status = 'revoked'"#,
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
