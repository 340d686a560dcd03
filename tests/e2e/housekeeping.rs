//! Housekeeping and the sweeper: old finished work is trimmed on schedule, and work that
//! Redis lost is found again from PostgreSQL.

use std::time::Duration;

use leadflow_shared::queue::QueueKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{eventually, redis_url, TestApp};

#[tokio::test]
async fn a_burst_whose_flush_job_was_deleted_by_hand_is_still_answered_once() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 1.5})).await;
    let (status, out) = app
        .process(&app.msg("lead-lost-job", "Oi, ainda tem o apartamento?", true))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let queues = app.queues().await;
    let flush = queues.queue(QueueKind::Flush);
    let delayed = flush.get_delayed(0, -1).await.unwrap();
    assert_eq!(delayed.len(), 1, "one flush job waits for the debounce window");
    let id = delayed[0].id().to_string();
    assert!(flush.remove(&id).await.unwrap(), "the job is gone from Redis");
    assert_eq!(flush.get_delayed_count().await.unwrap(), 0);

    let got = app.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].json["success"], true);
    app.settle().await;
    assert_eq!(app.receiver.deliveries().len(), 1, "answered once");
    assert_eq!(app.ai.requests().len(), 1, "one generation");
}

#[tokio::test]
async fn old_attempt_rows_and_finished_jobs_are_removed_on_schedule() {
    let app = TestApp::builder()
        .env("LEADFLOW_HOUSEKEEPING_INTERVAL", "300ms")
        .env("LEADFLOW_RETENTION_ATTEMPTS", "1h")
        .env("LEADFLOW_RETENTION_JOBS", "2s")
        .start()
        .await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.process(&app.msg("lead-old", "olá", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(20)).await;
    let count = |sql: &'static str| {
        let pool = app.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    eventually(Duration::from_secs(10), "the attempt row", || async {
        (count("SELECT count(*) FROM delivery_attempts").await == 1).then_some(())
    })
    .await;
    // One attempt from two hours ago, one from now.
    sqlx::query("UPDATE delivery_attempts SET created_at = now() - interval '2 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, status_code, duration_ms)
         SELECT id, 2, 200, 5 FROM deliveries",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the old attempt to go", || async {
        (count("SELECT count(*) FROM delivery_attempts").await == 1).then_some(())
    })
    .await;
    let kept: i32 = sqlx::query_scalar("SELECT attempt FROM delivery_attempts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, 2, "the recent one stays");

    let queues = app.queues().await;
    let postback = queues.queue(QueueKind::Postback);
    assert!(postback.get_completed_count().await.unwrap() >= 1);
    eventually(
        Duration::from_secs(15),
        "finished jobs older than 2 s to go",
        || async { (postback.get_completed_count().await.unwrap() == 0).then_some(()) },
    )
    .await;
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM scheduler_runs WHERE task = 'housekeeping' AND detail NOT LIKE '0 finished jobs and 0 old%'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(!details.is_empty(), "a run reports what it removed");
}

/// Queue browsers (bull-board and the like) find queues by their keys: under the queue
/// prefix there are only queues; rate windows, scheduler leases and locks live beside it.
#[tokio::test]
async fn only_queues_live_under_the_queue_prefix() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.process(&app.msg("lead-keys", "oi", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(20)).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let own = leadflow_shared::queue::state_prefix(&app.prefix);
    let shared = &app;
    let own_keys: Vec<String> = eventually(Duration::from_secs(10), "Leadflow's own keys", || {
        let mut conn = conn.clone();
        let pattern = format!("{own}:*");
        async move {
            // A backend call opens a rate window; the scheduler holds a lease per tick.
            let _ = shared.get("/backend/deliveries").await;
            let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap();
            (!keys.is_empty()).then_some(keys)
        }
    })
    .await;
    assert!(
        own_keys.iter().any(|k| k.contains(":rl:")) || own_keys.iter().any(|k| k.contains(":tick:")),
        "{own_keys:?}"
    );
    let queue_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!queue_keys.is_empty());
    for key in &queue_keys {
        let queue = key.split(':').nth(1).unwrap_or_default();
        assert!(
            QueueKind::ALL.iter().any(|k| k.name() == queue),
            "{key} is not a queue's key"
        );
    }
    app.stop().await;
}
