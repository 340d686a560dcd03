//! Several scheduler replicas: each tick is enqueued exactly once.

use std::time::Duration;

use leadflow_scheduler::Scheduler;
use leadflow_shared::queue::{QueueKind, Queues};

use crate::support::{clear_redis_prefix, redis_url};

async fn replica(prefix: &str, interval: Duration) -> Scheduler {
    let redis = redis::Client::open(redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    Scheduler {
        queues: Queues::connect(&redis_url(), prefix).await.unwrap(),
        redis,
        prefix: prefix.to_string(),
        sweep_interval: interval,
    }
}

#[tokio::test]
async fn two_scheduler_replicas_enqueue_each_tick_once() {
    let prefix = format!("lfsch{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let a = replica(&prefix, Duration::from_millis(200)).await;
    let b = replica(&prefix, Duration::from_millis(200)).await;

    // Racing on the same ticks directly: exactly one replica wins each.
    for tick in 1..=20 {
        let (wa, wb) = tokio::join!(a.fire(tick, 200), b.fire(tick, 200));
        assert!(wa.unwrap() ^ wb.unwrap(), "tick {tick}: exactly one replica fires");
    }
    let q = Queues::connect(&redis_url(), &prefix).await.unwrap();
    assert_eq!(q.queue(QueueKind::Scheduled).get_waiting_count().await.unwrap(), 20);

    // Both running their loops for ~2 s (about 10 ticks): one job per tick.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ha = tokio::spawn(a.run(rx.clone()));
    let hb = tokio::spawn(b.run(rx));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tx.send(true).unwrap();
    ha.await.unwrap();
    hb.await.unwrap();
    let total = q.queue(QueueKind::Scheduled).get_waiting_count().await.unwrap();
    let new = total - 20;
    assert!(
        (9..=12).contains(&new),
        "{new} sweep jobs for ~11 ticks of 200 ms in 2.1 s: one per tick"
    );
    clear_redis_prefix(&prefix).await;
}
