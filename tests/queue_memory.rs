//! The BullMQ port pushes every worker event into an unbounded channel; Leadflow drains
//! it in a task per worker. This test runs 100k jobs through the typed job layer in its
//! own process and checks that resident memory stays flat.

use std::time::{Duration, Instant};

use futures::StreamExt;
use leadflow_shared::queue::{Noop, QueueKind, Queues};
use leadflow_shared::Config;

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn completed(queues: &Queues) -> u64 {
    let q = queues.queue(QueueKind::Bench);
    // Completed jobs are trimmed to the retention count, so count what is left to do.
    let left = q.get_waiting_count().await.unwrap() + q.get_active_count().await.unwrap();
    100_000u64.saturating_sub(left)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_100k_jobs() {
    let prefix = format!("lfmem{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let redis = std::env::var("LEADFLOW_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let env: Vec<(String, String)> = vec![
        ("LEADFLOW_REDIS_URL".into(), redis.clone()),
        ("LEADFLOW_QUEUE_PREFIX".into(), prefix.clone()),
        (
            "LEADFLOW_MASTER_KEY".into(),
            leadflow_shared::crypto::MasterKey::generate().to_encoded(),
        ),
    ];
    let cfg = Config::from_sources(&env).unwrap();
    let queues = Queues::connect_with_bench(&cfg.redis, &cfg.queue_prefix).await.unwrap();
    let run = uuid::Uuid::new_v4();
    futures::stream::iter(0..100_000u64)
        .map(|n| {
            let q = queues.clone();
            async move { q.enqueue(&Noop { n, run }, Duration::ZERO).await.unwrap() }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;

    // The pool is never touched by no-op jobs: a lazy one never connects.
    let pool = sqlx::PgPool::connect_lazy("postgres://127.0.0.1/leadflow_unused").unwrap();
    let key = cfg.master_key.clone().unwrap();
    let ctx = leadflow_worker::Ctx::new(cfg, pool, queues.clone(), key).await.unwrap();
    let started = Instant::now();
    let workers = leadflow_worker::jobs::start(&ctx, &[QueueKind::Bench], 16)
        .await
        .unwrap();

    let mut baseline = None;
    loop {
        let done = completed(&queues).await;
        if baseline.is_none() && done >= 20_000 {
            baseline = Some(rss_kb());
        }
        if done >= 100_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "only {done} jobs done in 240 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rate = 100_000.0 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = rss_kb();
    let base = baseline.unwrap();
    eprintln!("100k no-op jobs at {rate:.0}/s; RSS {base} kB after 20k, {end} kB after 100k");
    assert!(
        end < base + 32 * 1024,
        "RSS grew from {base} kB to {end} kB over 80k jobs: events are piling up"
    );
    workers.close(Duration::from_secs(5)).await;
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}
