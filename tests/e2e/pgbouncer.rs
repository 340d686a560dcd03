//! Leadflow behind a real PgBouncer in transaction pooling mode (see
//! `support::pgbouncer`): migrations run once, directly (`LEADFLOW_MIGRATE_ON_START=false`
//! for the roles), and then every role's queries go through the pooler, where no session
//! state survives a transaction: synchronous replies, debounced bursts answered once
//! while many leads write at the same time, the scheduler's ticks.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::pgbouncer::PgBouncer;
use crate::support::{eventually, TestApp};

/// `SHOW STATS` of the admin console as one map per database.
fn stats(pgb: &PgBouncer) -> HashMap<String, HashMap<String, String>> {
    let text = pgb.admin("SHOW STATS");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
    lines
        .map(|l| {
            let row: HashMap<String, String> = header
                .iter()
                .zip(l.split('|'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (row.get("database").cloned().unwrap_or_default(), row)
        })
        .collect()
}

#[tokio::test]
async fn the_core_flows_work_through_pgbouncer_in_transaction_mode() {
    let pgb = PgBouncer::start().await;
    let app = TestApp::builder()
        .pg_via(&pgb.server())
        .migrated_directly()
        .env("LEADFLOW_DB_MAX_CONNECTIONS", "10")
        .start()
        .await;
    app.set_assistant(json!({"debounce_seconds": 0.5, "max_wait_seconds": 10}))
        .await;

    // A synchronous reply.
    let (status, body) = app.process(&app.msg("lead-sync", "olá", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!("reply to: olá"));

    // Forty leads writing bursts of three at once (each lead's parts one after another):
    // each burst answered once, in order.
    let app_ref = &app;
    let results = futures::future::join_all((0..40).map(|lead| async move {
        let mut out = Vec::new();
        for part in 1..=3 {
            let msg = app_ref.msg(&format!("lead-{lead}"), &format!("part {part}"), true);
            out.push(app_ref.process(&msg).await);
        }
        out
    }))
    .await;
    for (status, body) in results.iter().flatten() {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
    }
    let got = app.receiver.wait_for(40, Duration::from_secs(30)).await;
    app.settle().await;
    assert_eq!(app.receiver.deliveries().len(), 40, "one postback per burst");
    let mut leads: Vec<&str> = got.iter().map(|d| d.json["lead_id"].as_str().unwrap()).collect();
    leads.sort_unstable();
    leads.dedup();
    assert_eq!(leads.len(), 40, "every lead answered, none twice");
    for d in &got {
        let processed = d.json["messages_processed"].as_u64().unwrap();
        let text = d.json["response"].as_str().unwrap();
        // Messages that arrived after a lead's flush form a second burst, answered in its
        // own postback; within each, the parts keep their order.
        assert!((1..=3).contains(&processed), "{}", d.json);
        let parts: Vec<u32> = text
            .trim_start_matches("reply to: ")
            .lines()
            .map(|l| l.trim_start_matches("part ").parse().unwrap())
            .collect();
        assert!(parts.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
    let answered: u64 = got.iter().map(|d| d.json["messages_processed"].as_u64().unwrap()).sum();
    assert_eq!(answered, 120, "every message answered exactly once");

    // The scheduler's ticks run and are logged (its leases are Redis's; its run log is
    // PostgreSQL's, through the pooler).
    eventually(Duration::from_secs(10), "a logged sweep", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM scheduler_runs WHERE task = 'sweep' AND finished_at IS NOT NULL")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (n > 0).then_some(())
    })
    .await;

    // And all of it went through PgBouncer: transactions counted on this test's database.
    let ours = stats(&pgb)
        .remove(&app.db_name)
        .expect("PgBouncer served this database");
    let xacts: u64 = ours["total_xact_count"].parse().unwrap();
    assert!(xacts > 100, "{ours:?}");
    let pools: Value = json!(pgb.admin("SHOW POOLS"));
    assert!(pools.as_str().unwrap().contains("transaction"), "{pools}");
    app.stop().await;
}
