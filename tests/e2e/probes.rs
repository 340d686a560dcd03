//! Liveness and readiness on the API port and on the ops listener of a process running
//! workers or the scheduler: `/healthz` touches nothing; `/readyz` names each check and
//! fails on its own when Redis is down, PostgreSQL is unreachable or the schema is behind
//! the binary. `leadflow healthcheck` exits on it.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::resilience::OwnRedis;
use crate::support::{eventually, TestApp};

async fn probe(app: &TestApp, base: &str, path: &str) -> (StatusCode, Value) {
    let resp = app.http.get(format!("{base}{path}")).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until `/readyz` on both listeners answers `status`, and returns the API's body.
async fn readiness_becomes(app: &TestApp, status: StatusCode) -> Value {
    let ops = app.ops.clone().expect("the app runs workers");
    eventually(
        Duration::from_secs(15),
        &format!("/readyz to answer {status}"),
        || async {
            let (a, body) = probe(app, &app.base, "/readyz").await;
            let (o, ops_body) = probe(app, &ops, "/readyz").await;
            (a == status && o == status && body["checks"] == ops_body["checks"]).then_some(body)
        },
    )
    .await
}

/// `leadflow healthcheck --url`, off the test's runtime thread (which serves the app).
async fn healthcheck(url: &str) -> bool {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_leadflow"))
            .args(["healthcheck", "--url", &url])
            .env("LEADFLOW_LOG", "error")
            .status()
            .expect("the leadflow binary runs")
            .success()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn ready_when_everything_answers_and_live_on_both_listeners() {
    let app = TestApp::start().await;
    let ops = app.ops.clone().unwrap();
    for base in [&app.base, &ops] {
        assert_eq!(
            probe(&app, base, "/healthz").await,
            (StatusCode::OK, json!({"status": "ok"}))
        );
        let (status, body) = probe(&app, base, "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"status": "ok", "checks": {"postgres": "ok", "redis": "ok", "migrations": "ok"}})
        );
    }
    assert!(healthcheck(&format!("{}/readyz", app.base)).await);
    assert!(healthcheck(&format!("{ops}/readyz")).await);
    app.stop().await;
}

#[tokio::test]
async fn redis_down_is_not_ready_and_named() {
    let mut redis = OwnRedis::new().await;
    let app = TestApp::builder().env("LEADFLOW_REDIS_URL", &redis.url()).start().await;
    redis.crash();
    let body = readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["status"], json!("unavailable"));
    assert_eq!(body["checks"]["postgres"], json!("ok"));
    assert_eq!(body["checks"]["migrations"], json!("ok"));
    assert!(
        body["checks"]["redis"].as_str().unwrap().starts_with("unreachable"),
        "{body}"
    );
    // Live all the same: restarting the process would not bring Redis back.
    assert_eq!(probe(&app, &app.base, "/healthz").await.0, StatusCode::OK);
    assert!(!healthcheck(&format!("{}/readyz", app.base)).await);
    redis.restart().await;
    readiness_becomes(&app, StatusCode::OK).await;
    app.stop().await;
}

#[tokio::test]
async fn postgres_unreachable_is_not_ready_and_named() {
    let (proxy, app) = crate::support::proxy::app_behind_proxy().await;
    proxy.cut();
    let body = readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["redis"], json!("ok"));
    assert_ne!(body["checks"]["postgres"], json!("ok"), "{body}");
    assert_eq!(probe(&app, &app.base, "/healthz").await.0, StatusCode::OK);
    proxy.restore();
    readiness_becomes(&app, StatusCode::OK).await;
    app.stop().await;
}

#[tokio::test]
async fn a_schema_behind_the_binary_is_not_ready_and_says_what_to_run() {
    let app = TestApp::start().await;
    let latest = leadflow_shared::db::latest_migration();
    sqlx::query("UPDATE _sqlx_migrations SET version = -version WHERE version = $1")
        .bind(latest)
        .execute(&app.pool)
        .await
        .unwrap();
    let body = readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let m = body["checks"]["migrations"].as_str().unwrap();
    assert!(
        m.starts_with("behind") && m.contains(&latest.to_string()) && m.contains("leadflow migrate"),
        "{m}"
    );
    assert_eq!(body["checks"]["postgres"], json!("ok"));
    assert_eq!(body["checks"]["redis"], json!("ok"));
    sqlx::query("UPDATE _sqlx_migrations SET version = -version WHERE version = $1")
        .bind(-latest)
        .execute(&app.pool)
        .await
        .unwrap();
    readiness_becomes(&app, StatusCode::OK).await;
    app.stop().await;
}

/// With `LEADFLOW_MIGRATE_ON_START=false` a role never migrates: on a schema behind it
/// (here: no database yet) it refuses to start, saying what to run; after `leadflow
/// migrate` it starts.
#[tokio::test]
async fn without_migrate_on_start_a_role_refuses_a_schema_behind_it_until_leadflow_migrate() {
    let app = TestApp::start().await;
    let db = format!("{}_m", app.db_name);
    let url = format!("{}/{db}", crate::support::pg_server());
    let leadflow = |args: &[&str]| {
        app.leadflow_command()
            .args(args)
            .env("LEADFLOW_DATABASE_URL", &url)
            .env("LEADFLOW_MIGRATE_ON_START", "false")
            .env("LEADFLOW_LOG", "error")
            .output()
            .expect("the leadflow binary runs")
    };
    let refused = leadflow(&["tenant", "create", "--name", "Acme"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(said.contains("run `leadflow migrate`"), "{said}");
    assert!(leadflow(&["migrate"]).status.success(), "leadflow migrate migrates");
    let created = leadflow(&["tenant", "create", "--name", "Acme"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let out: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert!(out["tenant_id"].is_string());
    crate::support::drop_database(&db).await;
    app.stop().await;
}
