//! Several scheduler replicas: each tick of each periodic task is enqueued, and run,
//! exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use leadflow_scheduler::Scheduler;
use leadflow_shared::queue::{QueueKind, Queues, Task};

use leadflow_shared::redis_target::RedisTarget;

use crate::support::{clear_redis_prefix, redis_target, TestApp};

async fn replica(target: &RedisTarget, prefix: &str, tasks: Vec<(Task, Duration)>) -> Scheduler {
    Scheduler {
        queues: Queues::connect(target, prefix).await.unwrap(),
        redis: target.connect().await.unwrap(),
        prefix: prefix.to_string(),
        tasks,
    }
}

#[tokio::test]
async fn two_scheduler_replicas_enqueue_each_tick_once() {
    let prefix = format!("lfsch{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let every = vec![(Task::Sweep, Duration::from_millis(200))];
    let a = replica(&redis_target(), &prefix, every.clone()).await;
    let b = replica(&redis_target(), &prefix, every).await;

    // Racing on the same ticks directly: exactly one replica wins each, per task.
    for tick in 1..=10 {
        for task in Task::ALL {
            let (wa, wb) = tokio::join!(a.fire(task, tick, 200), b.fire(task, tick, 200));
            assert!(
                wa.unwrap() ^ wb.unwrap(),
                "{task:?} tick {tick}: exactly one replica fires"
            );
        }
    }
    let q = Queues::connect(&redis_target(), &prefix).await.unwrap();
    let raced = 10 * Task::ALL.len() as u64;
    assert_eq!(q.queue(QueueKind::Scheduled).get_waiting_count().await.unwrap(), raced);

    // Both running their loops for ~2 s (about 10 ticks): one job per tick.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ha = tokio::spawn(a.run(rx.clone()));
    let hb = tokio::spawn(b.run(rx));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tx.send(true).unwrap();
    ha.await.unwrap();
    hb.await.unwrap();
    let total = q.queue(QueueKind::Scheduled).get_waiting_count().await.unwrap();
    let new = total - raced;
    assert!(
        (9..=12).contains(&new),
        "{new} sweep jobs for ~11 ticks of 200 ms in 2.1 s: one per tick"
    );
    clear_redis_prefix(&prefix).await;
}

#[tokio::test]
async fn with_two_schedulers_running_each_periodic_job_runs_once_per_tick() {
    each_periodic_job_runs_once_per_tick(TestApp::builder()).await;
}

/// The app's scheduler and a second replica on the same Redis prefix for ~3 s: every
/// tick of every task runs once.
pub(crate) async fn each_periodic_job_runs_once_per_tick(app: crate::support::Builder) {
    let app = app
        .env("LEADFLOW_SWEEP_INTERVAL", "250ms")
        .env("LEADFLOW_HEALTH_CHECK_INTERVAL", "300ms")
        .start()
        .await;
    let cfg = app.config();
    let second = replica(&cfg.redis, &app.prefix, leadflow_scheduler::tasks(&cfg)).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(second.run(rx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    tx.send(true).unwrap();
    handle.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let runs: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT task, tick, count(*) FROM scheduler_runs GROUP BY task, tick ORDER BY task, tick")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let twice: Vec<_> = runs.iter().filter(|(_, _, n)| *n != 1).collect();
    assert!(twice.is_empty(), "ticks run more than once: {twice:?}");
    let mut ticks: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (task, tick, _) in runs {
        ticks.entry(task).or_default().push(tick);
    }
    // ~14 and ~11 ticks in ~3.5 s; a replica woken late on a loaded machine may let a
    // tick pass (a periodic job does not catch up), never run one twice.
    for (task, min) in [("sweep", 8), ("connections", 6)] {
        let t = &ticks[task];
        assert!(t.len() >= min, "{task}: {} runs in ~3.5 s: {t:?}", t.len());
    }
}
