//! The scheduler role decides *when*, never does the work: each tick it enqueues a job
//! for the workers. Ticks are numbered from the epoch, and both the job id and a Redis
//! lease carry the tick number, so several scheduler replicas still produce one run per
//! tick.
#![forbid(unsafe_code)]

use std::time::Duration;

use leadflow_shared::queue::{Queues, Sweep};
use redis::aio::ConnectionManager;
use tokio::sync::watch;

pub struct Scheduler {
    pub queues: Queues,
    pub redis: ConnectionManager,
    pub prefix: String,
    pub sweep_interval: Duration,
}

impl Scheduler {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval_ms = self.sweep_interval.as_millis().max(100) as i64;
        tracing::info!(?self.sweep_interval, "scheduler started");
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let tick = now / interval_ms;
            let next_at = (tick + 1) * interval_ms;
            if let Err(e) = self.fire(tick, interval_ms).await {
                tracing::warn!(tick, error = %e, "could not enqueue the sweep tick; will try next tick");
            }
            let wait = Duration::from_millis((next_at - chrono::Utc::now().timestamp_millis()).max(1) as u64);
            let owner_gone = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                changed = shutdown.changed() => changed.is_err(),
            };
            if owner_gone || *shutdown.borrow() {
                tracing::info!("scheduler stopped");
                return;
            }
        }
    }

    /// Enqueues tick `tick` unless another replica already did.
    pub async fn fire(&self, tick: i64, interval_ms: i64) -> anyhow::Result<bool> {
        let lease = format!("{}:tick:sweep:{tick}", self.prefix);
        let mut conn = self.redis.clone();
        let won: Option<String> = redis::cmd("SET")
            .arg(&lease)
            .arg(std::process::id())
            .arg("NX")
            .arg("PX")
            .arg(interval_ms * 10)
            .query_async(&mut conn)
            .await?;
        if won.is_none() {
            return Ok(false);
        }
        self.queues.enqueue(&Sweep { tick }, Duration::ZERO).await?;
        Ok(true)
    }
}
