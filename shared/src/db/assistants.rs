//! Assistants: one tenant may have several; exactly one is its default.

use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::QueryAs;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::DbError;
use crate::domain::{Assistant, AssistantSettings};

const COLUMNS: &str = r#"id, tenant_id, name, model, system_prompt, temperature, max_tokens, debounce_seconds,
    max_wait_seconds, history_limit, human_pause_minutes, is_default, transcription_model, transcription_language,
    transcription_prompt, image_detail, image_inline, pdf_as_file, split_replies, created_at, updated_at"#;

type AssistantQuery<'q> = QueryAs<'q, Postgres, Assistant, PgArguments>;

/// Binds the settings as the next seventeen parameters, in column order.
fn bind_settings<'q>(q: AssistantQuery<'q>, s: &'q AssistantSettings) -> AssistantQuery<'q> {
    q.bind(&s.name)
        .bind(&s.model)
        .bind(&s.system_prompt)
        .bind(s.temperature)
        .bind(s.max_tokens)
        .bind(s.debounce_seconds)
        .bind(s.max_wait_seconds)
        .bind(s.history_limit)
        .bind(s.human_pause_minutes)
        .bind(s.is_default)
        .bind(&s.transcription_model)
        .bind(&s.transcription_language)
        .bind(&s.transcription_prompt)
        .bind(&s.image_detail)
        .bind(s.image_inline)
        .bind(s.pdf_as_file)
        .bind(s.split_replies)
}

#[tracing::instrument(level = "debug", skip(conn, s))]
pub async fn insert(conn: &mut PgConnection, tenant_id: Uuid, s: &AssistantSettings) -> Result<Assistant, DbError> {
    if s.is_default {
        clear_default(conn, tenant_id).await?;
    }
    let sql = format!(
        r#"INSERT INTO assistants (id, tenant_id, name, model, system_prompt, temperature, max_tokens,
               debounce_seconds, max_wait_seconds, history_limit, human_pause_minutes, is_default,
               transcription_model, transcription_language, transcription_prompt, image_detail, image_inline,
               pdf_as_file, split_replies)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
           RETURNING {COLUMNS}"#
    );
    let q = sqlx::query_as::<_, Assistant>(&sql)
        .bind(Uuid::now_v7())
        .bind(tenant_id);
    Ok(bind_settings(q, s).fetch_one(conn).await?)
}

async fn clear_default(conn: &mut PgConnection, tenant_id: Uuid) -> Result<(), DbError> {
    sqlx::query(r#"UPDATE assistants SET is_default = false, updated_at = now() WHERE tenant_id = $1 AND is_default"#)
        .bind(tenant_id)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Assistant>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM assistants WHERE tenant_id = $1 ORDER BY created_at"#);
    Ok(sqlx::query_as::<_, Assistant>(&sql)
        .bind(tenant_id)
        .fetch_all(pool)
        .await?)
}

/// An assistant by id, only within the given tenant.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Assistant>, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM assistants WHERE tenant_id = $1 AND id = $2"#);
    Ok(sqlx::query_as::<_, Assistant>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Assistant, DbError> {
    let sql = format!(r#"SELECT {COLUMNS} FROM assistants WHERE id = $1"#);
    sqlx::query_as::<_, Assistant>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DbError::NotFound("assistant"))
}

#[tracing::instrument(level = "debug", skip(pool))]
pub async fn find_default(pool: &PgPool, tenant_id: Uuid) -> Result<Option<Assistant>, DbError> {
    let sql = format!(
        r#"SELECT {COLUMNS} FROM assistants WHERE tenant_id = $1 ORDER BY is_default DESC, created_at LIMIT 1"#
    );
    Ok(sqlx::query_as::<_, Assistant>(&sql)
        .bind(tenant_id)
        .fetch_optional(pool)
        .await?)
}

/// Replaces an assistant's settings (the route merges a PATCH onto the current row).
#[tracing::instrument(level = "debug", skip(pool, s))]
pub async fn update(pool: &PgPool, tenant_id: Uuid, id: Uuid, s: &AssistantSettings) -> Result<Assistant, DbError> {
    let mut tx = pool.begin().await?;
    if s.is_default {
        clear_default(&mut tx, tenant_id).await?;
    }
    let sql = format!(
        r#"UPDATE assistants SET name = $3, model = $4, system_prompt = $5, temperature = $6, max_tokens = $7,
               debounce_seconds = $8, max_wait_seconds = $9, history_limit = $10, human_pause_minutes = $11,
               is_default = $12, transcription_model = $13, transcription_language = $14,
               transcription_prompt = $15, image_detail = $16, image_inline = $17, pdf_as_file = $18,
               split_replies = $19, updated_at = now()
           WHERE tenant_id = $1 AND id = $2
           RETURNING {COLUMNS}"#
    );
    let q = sqlx::query_as::<_, Assistant>(&sql).bind(tenant_id).bind(id);
    let row = bind_settings(q, s)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DbError::NotFound("assistant"))?;
    tx.commit().await?;
    Ok(row)
}
