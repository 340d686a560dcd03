//! The database functions Leadflow calls, each written out once, in
//! `migrations/functions/`, and applied (`CREATE OR REPLACE`) after the migrations at every
//! start. A function that lived in migrations was written out again in full by every
//! migration that changed it, and the copy a reader found first was a stale one; here the
//! file is the live definition, and a test checks that the database runs exactly it.
//!
//! Three early migrations used to carry `leadflow_accept` in full. Their text changed when
//! it moved here, so databases migrated before record other checksums for them: those are
//! rewritten (only from the exact old checksum) before the migrator checks them.

use sqlx::PgPool;

use super::DbError;

/// `(name, definition)`, in the order they are applied.
pub const FUNCTIONS: [(&str, &str); 2] = [
    (
        "leadflow_burst_joins",
        include_str!("../../../migrations/functions/leadflow_burst_joins.sql"),
    ),
    (
        "leadflow_accept",
        include_str!("../../../migrations/functions/leadflow_accept.sql"),
    ),
];

/// Migrations whose text changed when their function moved to `migrations/functions/`,
/// with the SHA-384 checksum databases recorded for the old text.
pub const REWRITTEN: [(i64, &str); 3] = [
    (
        20261121000002,
        "cfcab43b4163c46193e162ddf9793634ace3dd9a288c8a7d4988c699b9fb49f7b214f479acb07a00adf4bbc7e26fb378",
    ),
    (
        20261121000005,
        "a460bb19936c3c4d424c1154bcf7478911f114f1b9962b1236ab852f4fcf02a6b9d0da29170a7471051323b4934558bc",
    ),
    (
        20261121000006,
        "702ee519caed7eb24235cc1d201255b3213b926f6fea8e31c4188009317a8f2be220ccf31b2a0a0fbaefab56ae8fe136",
    ),
];

/// Before migrating: the recorded checksums of the rewritten migrations move from their
/// old text's to the new one's (`migrator` holds the new ones).
pub async fn rebase_checksums(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> Result<(), DbError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if table.is_none() {
        return Ok(());
    }
    for (version, old) in REWRITTEN {
        let Some(m) = migrator.iter().find(|m| m.version == version) else {
            continue;
        };
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $3 WHERE version = $1 AND encode(checksum, 'hex') = $2")
            .bind(version)
            .bind(old)
            .bind(m.checksum.as_ref())
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// After migrating: every function, in one transaction, one process at a time (roles
/// starting together would otherwise race `CREATE OR REPLACE` on the same catalog row).
pub async fn apply(pool: &PgPool) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('leadflow:functions', 0))")
        .execute(&mut *tx)
        .await?;
    for (_, sql) in FUNCTIONS {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The body between the `$$` quotes of a definition, as PostgreSQL stores it (`prosrc`).
pub fn body(definition: &str) -> Option<&str> {
    let start = definition.find("$$")? + 2;
    let end = start + definition[start..].find("$$")?;
    Some(&definition[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No migration defines one of these functions again: a change is made in its file.
    #[test]
    fn no_migration_writes_out_a_function_again() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let sql = std::fs::read_to_string(&path).unwrap().to_lowercase();
            for (name, _) in FUNCTIONS {
                assert!(
                    !sql.contains(&format!("function {name}("))
                        || sql.contains(&format!("drop function if exists {name}(")),
                    "{} defines {name}: change migrations/functions/{name}.sql instead",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn every_function_has_a_body() {
        for (name, sql) in FUNCTIONS {
            assert!(
                body(sql).is_some_and(|b| b.contains("SELECT") || b.contains("BEGIN")),
                "{name}"
            );
            assert!(sql.contains(&format!("CREATE OR REPLACE FUNCTION {name}(")), "{name}");
        }
    }
}
