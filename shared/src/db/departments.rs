//! Departments: how a tenant groups its channels and operators (sales, support…).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::DbError;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Department {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// `None` when the tenant already has a live department of that name.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn insert(pool: &PgPool, tenant_id: Uuid, name: &str) -> Result<Option<Department>, DbError> {
    Ok(sqlx::query_as::<_, Department>(
        r#"INSERT INTO departments (id, tenant_id, name) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, lower(name)) WHERE deleted_at IS NULL DO NOTHING
           RETURNING id, tenant_id, name, created_at"#,
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(name)
    .fetch_optional(pool)
    .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Department>, DbError> {
    Ok(sqlx::query_as::<_, Department>(
        r#"SELECT id, tenant_id, name, created_at FROM departments
           WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY name"#,
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?)
}

/// Whether `id` is a live department of `tenant_id` (references must stay in-tenant).
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn exists(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    Ok(sqlx::query_scalar(
        r#"SELECT EXISTS (SELECT 1 FROM departments WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL)"#,
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_one(pool)
    .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        r#"UPDATE departments SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"#,
    )
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
