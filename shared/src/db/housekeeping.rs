//! Deleting old rows in bounded batches (`DELETE … WHERE id IN (SELECT … LIMIT n)`), so a
//! large backlog never holds long locks: each batch is its own short statement.

use sqlx::PgPool;

use super::DbError;

/// The tables housekeeping trims: (table, key column, age column, extra condition).
pub const TABLES: [(&str, &str, &str, &str); 5] = [
    ("delivery_attempts", "id", "created_at", "TRUE"),
    ("outbox_attempts", "id", "created_at", "TRUE"),
    ("scheduler_runs", "id", "started_at", "TRUE"),
    ("notifications", "id", "created_at", "status = 'dropped'"),
    ("oauth_states", "state", "created_at", "TRUE"),
];

/// Deletes up to `limit` rows of `table` older than `age_secs` (consent states: a day);
/// returns how many.
#[tracing::instrument(level = "debug", skip(pool))]
pub async fn delete_old(
    pool: &PgPool,
    (table, key, at, cond): (&str, &str, &str, &str),
    age_secs: f64,
    limit: i64,
) -> Result<u64, DbError> {
    let age = if table == "oauth_states" { 86_400.0 } else { age_secs };
    // Names come from TABLES above, never from input.
    let sql = format!(
        r#"DELETE FROM {table} WHERE {key} IN (
               SELECT {key} FROM {table} WHERE {at} < now() - make_interval(secs => $1) AND {cond} LIMIT $2)"#
    );
    let done = sqlx::query(&sql).bind(age).bind(limit).execute(pool).await?;
    Ok(done.rows_affected())
}
