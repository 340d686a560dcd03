//! PostgreSQL access. PostgreSQL holds every message, burst, reply and delivery; Redis
//! only holds jobs that point at these rows, so a lost job can always be re-derived
//! (see the scheduler's sweeper). Each submodule is one table family with small,
//! instrumented repository functions.

pub mod assistants;
pub mod bursts;
pub mod calendars;
pub mod channels;
pub mod connections;
pub mod deliveries;
pub mod departments;
pub mod failures;
pub mod functions;
pub mod housekeeping;
pub mod identities;
pub mod inbound;
pub mod integrations;
pub mod lead_channels;
pub mod lead_data;
pub mod leads;
pub mod mailboxes;
pub mod media;
pub mod messages;
pub mod notifications;
pub mod operators;
pub mod outbox;
pub mod pgpass;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

use crate::Config;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("secret could not be decrypted (wrong LEADFLOW_MASTER_KEY?)")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(
        "the database schema is at {}, this binary needs {want}: run `leadflow migrate`",
        have.map_or("no migration".to_owned(), |v| v.to_string())
    )]
    SchemaBehind { have: Option<i64>, want: i64 },
    /// A stored value does not parse as what the column holds (a bug or a hand edit).
    #[error("stored {0} is malformed")]
    Malformed(&'static str),
}

/// Rebinds every secret still in the unbound v1 format to its place (table, column, row:
/// see [`crate::crypto::Place`]), so a ciphertext copied into another row no longer opens
/// there. Idempotent and cheap once done (it only reads rows whose first byte is 0x01);
/// every role runs it at start, after the migrations. Returns how many it rebound.
pub async fn rebind_secrets(pool: &PgPool, key: &crate::crypto::MasterKey) -> Result<u64, DbError> {
    use crate::crypto::{MasterKey, Place};
    // (table, column, the column that owns the value)
    const COLUMNS: [(&str, &str, &str); 5] = [
        ("channels", "credentials_enc", "id"),
        ("tenants", "postback_secret_enc", "id"),
        ("tenants", "ai_api_key_enc", "id"),
        ("integration_tokens", "access_token_enc", "tenant_id"),
        ("integration_tokens", "refresh_token_enc", "tenant_id"),
    ];
    let mut rebound = 0;
    for (table, column, owner) in COLUMNS {
        let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT id, {owner}, {column} FROM {table} WHERE {column} IS NOT NULL AND get_byte({column}, 0) = 1"
        ))
        .fetch_all(pool)
        .await?;
        for (id, row, old) in rows {
            if !MasterKey::is_unbound(&old) {
                continue;
            }
            let new = key.rebind(&old, &Place { table, column, row })?;
            let done = sqlx::query(&format!(
                "UPDATE {table} SET {column} = $2 WHERE id = $1 AND {column} = $3"
            ))
            .bind(id)
            .bind(new)
            .bind(old)
            .execute(pool)
            .await?;
            rebound += done.rows_affected();
        }
    }
    // Tokens from before they were encrypted at all.
    rebound += seal_plain(pool, key, "channels", "webhook_secret", "webhook_secret_enc").await?;
    rebound += seal_plain(pool, key, "calendar_channels", "token", "token_enc").await?;
    if rebound > 0 {
        tracing::info!(rebound, "secrets at rest bound to their rows");
    }
    Ok(rebound)
}

/// Moves the plaintext secrets of `table.plain` into `table.sealed`, bound to their row.
async fn seal_plain(
    pool: &PgPool,
    key: &crate::crypto::MasterKey,
    table: &'static str,
    plain: &str,
    sealed: &'static str,
) -> Result<u64, DbError> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as(&format!("SELECT id, {plain} FROM {table} WHERE {plain} IS NOT NULL"))
            .fetch_all(pool)
            .await?;
    let mut done = 0;
    for (id, secret) in rows {
        let place = crate::crypto::Place {
            table,
            column: sealed,
            row: id,
        };
        done += sqlx::query(&format!(
            "UPDATE {table} SET {sealed} = $2, {plain} = NULL WHERE id = $1 AND {plain} = $3"
        ))
        .bind(id)
        .bind(key.seal_str(&secret, &place))
        .bind(secret)
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(done)
}

/// What every role calls at start: [`connect_and_migrate`], or with
/// `LEADFLOW_MIGRATE_ON_START=false` only a connection to a schema that must already be at
/// this binary's version (else [`DbError::SchemaBehind`]).
pub async fn connect_for_role(cfg: &Config) -> Result<PgPool, DbError> {
    if cfg.migrate_on_start {
        return connect_and_migrate(cfg).await;
    }
    let want = latest_migration();
    let pool = match connect(cfg).await {
        Ok(p) => p,
        // 3D000: the database does not exist yet; `leadflow migrate` creates it.
        Err(DbError::Sqlx(sqlx::Error::Database(e))) if e.code().as_deref() == Some("3D000") => {
            return Err(DbError::SchemaBehind { have: None, want });
        }
        Err(e) => return Err(e),
    };
    schema_is_current(&pool).await?;
    Ok(pool)
}

/// Whether the schema is at this binary's migration version ([`DbError::SchemaBehind`]
/// when not): the one check behind a role's refusal to start and `/readyz`.
pub async fn schema_is_current(pool: &PgPool) -> Result<(), DbError> {
    let want = latest_migration();
    let have: Option<i64> = match sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
    {
        Ok(v) => v,
        // 42P01: no migrations table at all.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => None,
        Err(e) => return Err(e.into()),
    };
    match have {
        Some(v) if v >= want => Ok(()),
        have => Err(DbError::SchemaBehind { have, want }),
    }
}

/// A pool to the database as it is (no creation, no migration).
pub async fn connect(cfg: &Config) -> Result<PgPool, DbError> {
    let opts = connect_options(cfg)?;
    pool_with(cfg, opts).await
}

fn connect_options(cfg: &Config) -> Result<PgConnectOptions, DbError> {
    let url = cfg.database_url.expose_secret();
    let mut opts = PgConnectOptions::from_str(url)?;
    if let Some(password) = pgpass::lookup(&cfg.data_dir.join("pgpass"), url, &opts) {
        opts = opts.password(&password);
    }
    Ok(opts)
}

async fn pool_with(cfg: &Config, opts: PgConnectOptions) -> Result<PgPool, DbError> {
    Ok(PgPoolOptions::new()
        .max_connections(cfg.db_max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await?)
}

/// Connects, creating the database when it does not exist yet, and runs migrations.
/// `leadflow migrate` calls this, and every role at start unless
/// `LEADFLOW_MIGRATE_ON_START=false`; migrations are idempotent.
pub async fn connect_and_migrate(cfg: &Config) -> Result<PgPool, DbError> {
    let opts = connect_options(cfg)?;
    create_database_if_missing(&opts).await?;
    let pool = pool_with(cfg, opts).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// The version of the newest migration this binary carries (what `/readyz` expects).
pub fn latest_migration() -> i64 {
    sqlx::migrate!("../migrations")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// The migrations, then the database functions (see [`functions`]).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let migrator = sqlx::migrate!("../migrations");
    functions::rebase_checksums(pool, &migrator).await?;
    migrator.run(pool).await?;
    functions::apply(pool).await?;
    Ok(())
}

async fn create_database_if_missing(opts: &PgConnectOptions) -> Result<(), DbError> {
    let Some(name) = opts.get_database().map(str::to_string) else {
        return Ok(());
    };
    // Try the target first: it usually exists, and a role without CREATEDB is fine then.
    if opts.connect().await.is_ok() {
        return Ok(());
    }
    let mut admin = opts.clone().database("postgres").connect().await?;
    let exists: bool = sqlx::query_scalar(r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)"#)
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match sqlx::query(&format!(r#"CREATE DATABASE "{quoted}""#))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another role raced us to it: fine.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.close().await?;
    Ok(())
}
