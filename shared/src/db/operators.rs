//! Operators: the business's people who answer leads by hand (`/backend/users`). An
//! operator who sends a message becomes an attendant of that lead on that channel.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Operator {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub department_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct OperatorFields {
    pub name: String,
    pub email: Option<String>,
    pub department_id: Option<Uuid>,
}

const COLUMNS: &str = "id, tenant_id, name, email, department_id, created_at, updated_at";

/// `None` when another live operator of the tenant has that e-mail.
#[tracing::instrument(level = "debug", skip(pool, f))]
pub async fn insert(pool: &PgPool, tenant_id: Uuid, f: &OperatorFields) -> Result<Option<Operator>, DbError> {
    let sql = format!(
        r#"INSERT INTO operators (id, tenant_id, name, email, department_id) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, lower(email)) WHERE deleted_at IS NULL DO NOTHING
           RETURNING {COLUMNS}"#
    );
    Ok(sqlx::query_as::<_, Operator>(&sql)
        .bind(Uuid::now_v7())
        .bind(tenant_id)
        .bind(&f.name)
        .bind(&f.email)
        .bind(f.department_id)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Operator>, DbError> {
    let sql =
        format!(r#"SELECT {COLUMNS} FROM operators WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at"#);
    Ok(sqlx::query_as::<_, Operator>(&sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Operator>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM operators WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#);
    Ok(sqlx::query_as::<_, Operator>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

pub enum Updated {
    Done(Operator),
    NotFound,
    EmailTaken,
}

#[tracing::instrument(level = "debug", skip(pool, f))]
pub async fn update(pool: &PgPool, tenant_id: Uuid, id: Uuid, f: &OperatorFields) -> Result<Updated, DbError> {
    let sql = format!(
        r#"UPDATE operators SET name = $3, email = $4, department_id = $5, updated_at = now()
           WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
           RETURNING {COLUMNS}"#
    );
    match sqlx::query_as::<_, Operator>(&sql)
        .bind(tenant_id)
        .bind(id)
        .bind(&f.name)
        .bind(&f.email)
        .bind(f.department_id)
        .fetch_optional(pool)
        .await
    {
        Ok(Some(o)) => Ok(Updated::Done(o)),
        Ok(None) => Ok(Updated::NotFound),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Updated::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE operators SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#,
    )
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
