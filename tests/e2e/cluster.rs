//! Leadflow on a Redis Cluster (`LEADFLOW_REDIS_CLUSTER_NODES`): each test starts a
//! cluster of its own (three masters, with replicas where it kills one), and the core
//! flows run on it as they do on one Redis: a sync reply, a burst answered once, a worker
//! killed with generations in flight, the scheduler once per tick, and a master's
//! failover with nothing accepted lost.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use leadflow_shared::queue::QueueKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::redis_cluster::RedisCluster;
use crate::support::{eventually, TestApp};

const ADMIN: &str = "cluster-admin-token";

#[tokio::test]
async fn on_a_redis_cluster_sync_calls_and_bursts_are_answered_once_and_the_queues_spread() {
    let cluster = RedisCluster::start(3, 0).await;
    let app = TestApp::builder()
        .redis_cluster(&cluster)
        .env("LEADFLOW_ADMIN_TOKEN", ADMIN)
        .start()
        .await;

    // The reply wake-up is published through the cluster and heard on any node: listen on
    // the last one (the app's subscriber holds the first).
    let last = cluster.nodes().last().cloned().expect("a node");
    let mut listener = redis::Client::open(format!("redis://{last}"))
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    listener
        .subscribe(leadflow_shared::reply_wake::channel(&app.prefix))
        .await
        .unwrap();
    let (status, body) = app.process(&app.msg("lead-sync", "are you open?", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], json!("reply to: are you open?"));
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.on_message().next())
        .await
        .expect("the burst's wake-up reaches another node")
        .expect("a message");
    let burst: String = sqlx::query_scalar("SELECT id::text FROM bursts LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(woken.get_payload::<String>().unwrap(), burst);

    app.set_assistant(json!({"debounce_seconds": 0.5, "max_wait_seconds": 20}))
        .await;
    for i in 1..=3 {
        let (status, body) = app.process(&app.msg("lead-burst", &format!("part {i}"), true)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let got = app.receiver.wait_for(1, Duration::from_secs(20)).await;
    app.settle().await;
    assert_eq!(app.receiver.deliveries().len(), 1, "one postback for the burst");
    assert_eq!(got[0].json["messages_processed"], json!(3));
    assert_eq!(
        app.ai.request_count(),
        2,
        "one generation for the sync call, one for the burst"
    );

    // Each queue is in one slot of its own hash tag; together they use several masters.
    let (_, keyspace) = app.redis().await;
    let mut masters = BTreeSet::new();
    for kind in QueueKind::ALL {
        masters.insert(cluster.master_of(&keyspace.key(kind, "wait")).await);
    }
    eprintln!(
        "the {} queues live on {} of 3 masters",
        QueueKind::ALL.len(),
        masters.len()
    );
    assert!(masters.len() >= 2, "the queues spread over the masters: {masters:?}");
    let mut suite = redis::Client::open(crate::support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stray: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", app.prefix))
        .query_async(&mut suite)
        .await
        .unwrap();
    assert!(stray.is_empty(), "nothing on the suite's own Redis: {stray:?}");

    // Readiness checks the cluster; the console reads every queue's counts from it.
    let ops = app.ops.clone().expect("ops listener");
    let ready: Value = app
        .http
        .get(format!("{ops}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], json!("ok"), "{ready}");
    let resp = app
        .http
        .get(format!("{}/admin/api/queues", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let queues: Value = resp.json().await.unwrap();
    let rows = queues["data"].as_array().expect("queue rows");
    assert_eq!(rows.len(), QueueKind::ALL.len(), "{queues}");
    let ai = rows.iter().find(|r| r["queue"] == json!("ai")).expect("the ai queue");
    assert!(ai["completed"].as_u64().unwrap_or(0) >= 2, "{ai}");
    assert!(ai["workers"].as_u64().unwrap_or(0) >= 1, "{ai}");
    app.stop().await;
}

#[tokio::test]
async fn on_a_redis_cluster_kill_9_during_generations_loses_nothing() {
    let cluster = RedisCluster::start(3, 0).await;
    let app = TestApp::builder()
        .redis_cluster(&cluster)
        .without_workers()
        .start()
        .await;
    crate::resilience::kill_9_during_generations(app).await;
}

#[tokio::test]
async fn on_a_redis_cluster_each_periodic_job_runs_once_per_tick() {
    let cluster = RedisCluster::start(3, 0).await;
    crate::scheduler::each_periodic_job_runs_once_per_tick(TestApp::builder().redis_cluster(&cluster)).await;
}

/// Sends one message for each of `leads` (debounced) and returns the leads whose
/// message was accepted.
async fn send_all(app: &TestApp, leads: impl Iterator<Item = String>) -> Vec<String> {
    let sends = leads.map(|lead| async move {
        let (status, body) = app.process(&app.msg(&lead, "hello", true)).await;
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::SERVICE_UNAVAILABLE,
            "{lead}: {status} {body}"
        );
        (status == StatusCode::ACCEPTED).then_some(lead)
    });
    futures::future::join_all(sends).await.into_iter().flatten().collect()
}

#[tokio::test]
async fn a_killed_master_fails_over_and_every_accepted_message_is_answered_once() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let app = TestApp::builder().redis_cluster(&cluster).start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "max_wait_seconds": 20}))
        .await;
    let mut accepted = send_all(&app, (0..10).map(|i| format!("lead-before-{i}"))).await;
    app.receiver.wait_for(accepted.len(), Duration::from_secs(30)).await;

    // The master holding the flush queue (every message passes through it) dies.
    let (_, keyspace) = app.redis().await;
    let victim = cluster.master_of(&keyspace.key(QueueKind::Flush, "wait")).await;
    cluster.kill(victim);
    let killed_at = Instant::now();
    accepted.extend(send_all(&app, (0..10).map(|i| format!("lead-during-{i}"))).await);
    cluster.wait_healthy(3, 0).await;
    let failed_over = killed_at.elapsed();
    let promoted = cluster.master_of(&keyspace.key(QueueKind::Flush, "wait")).await;
    assert_ne!(promoted, victim, "a replica took over the slot");
    accepted.extend(send_all(&app, (0..10).map(|i| format!("lead-after-{i}"))).await);
    let after: Vec<&String> = accepted.iter().filter(|l| l.starts_with("lead-after")).collect();
    assert_eq!(after.len(), 10, "after the failover every message is accepted");

    let expected: HashSet<String> = accepted.iter().cloned().collect();
    let by_lead = eventually(
        Duration::from_secs(60),
        "every accepted message to be answered",
        || async {
            let mut by_lead: HashMap<String, HashSet<String>> = HashMap::new();
            for d in app.receiver.successful() {
                by_lead
                    .entry(d.json["lead_id"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .insert(d.headers["webhook-id"].to_str().unwrap_or_default().to_string());
            }
            let answered: HashSet<String> = by_lead.keys().cloned().collect();
            expected.is_subset(&answered).then_some(by_lead)
        },
    )
    .await;
    let answered_in = killed_at.elapsed();
    for (lead, ids) in &by_lead {
        assert_eq!(ids.len(), 1, "{lead} answered {ids:?}: one webhook-id per burst");
    }
    eprintln!(
        "failover: {} of 30 messages accepted; cluster healthy again {failed_over:?} after the kill, \
         every accepted message answered {answered_in:?} after it",
        accepted.len()
    );
    app.settle().await;
    app.stop().await;
}
