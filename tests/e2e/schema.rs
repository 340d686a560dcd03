//! The database functions are defined once, in `migrations/functions/`: the database runs
//! exactly those texts, the burst rule stays inlinable (its indexes apply), and a database
//! migrated before the functions moved out of the migrations still starts.

use leadflow_shared::db::functions::{self, FUNCTIONS, REWRITTEN};
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn the_database_runs_exactly_the_function_files() {
    let app = TestApp::start().await;
    for (name, sql) in FUNCTIONS {
        let stored: Vec<String> = sqlx::query_scalar("SELECT prosrc FROM pg_proc WHERE proname = $1")
            .bind(name)
            .fetch_all(&app.pool)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "one {name}, no stale overload");
        assert_eq!(
            Some(stored[0].as_str()),
            functions::body(sql),
            "{name} differs from its file"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_burst_rule_is_inlined_so_the_lead_index_applies() {
    let app = TestApp::start().await;
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT x.id FROM bursts x
         WHERE leadflow_burst_joins(x, gen_random_uuid(), gen_random_uuid(), NULL) AND x.status = 'open'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("Index"), "{plan}");
    assert!(!plan.contains("leadflow_burst_joins"), "not inlined: {plan}");
    sqlx::query("RESET enable_seqscan").execute(&mut *conn).await.unwrap();
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn a_database_migrated_before_the_functions_moved_still_starts() {
    let app = TestApp::start().await;
    // As such a database recorded them: the checksums of the migrations' old text.
    for (version, old) in REWRITTEN {
        sqlx::query("UPDATE _sqlx_migrations SET checksum = decode($2, 'hex') WHERE version = $1")
            .bind(version)
            .bind(old)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    leadflow_shared::db::migrate(&app.pool).await.unwrap();
    let migrator = sqlx::migrate!("./migrations");
    for (version, _) in REWRITTEN {
        let now: Vec<u8> = sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = $1")
            .bind(version)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let want = migrator.iter().find(|m| m.version == version).unwrap();
        assert_eq!(now, want.checksum.as_ref(), "{version}");
    }
    // A checksum that is neither the old nor the new text's is still refused.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = $1")
        .bind(REWRITTEN[0].0)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(leadflow_shared::db::migrate(&app.pool).await.is_err());
    // And the app still answers.
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let (status, body) = app.process(&app.msg("lead-schema", "oi", false)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    app.stop().await;
}
