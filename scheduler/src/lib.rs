//! The scheduler role decides *when*, never does the work: each tick of each periodic
//! task (sweep, connection checks, calendar renewals, housekeeping) it enqueues a [`Tick`]
//! for the workers. Ticks are numbered from the epoch, and
//! both the job id and a Redis lease carry the task and tick number, so several scheduler
//! replicas still produce one run per tick: the lease (`SET NX`) picks one enqueuer, and
//! should two get past it anyway (a lease expired under a paused process), BullMQ ignores
//! the second job with the same id.
#![forbid(unsafe_code)]

use std::time::Duration;

use leadflow_shared::config::Config;
use leadflow_shared::queue::{Queues, Task, Tick};
use leadflow_shared::redis_target::RedisConn;
use tokio::sync::watch;

/// Every periodic task with the interval the configuration gives it (a task turned off
/// is left out).
pub fn tasks(cfg: &Config) -> Vec<(Task, Duration)> {
    Task::ALL
        .into_iter()
        .filter_map(|t| match t {
            Task::Sweep => Some((t, cfg.sweep_interval)),
            Task::Connections => cfg.scheduler.health_check_interval.map(|i| (t, i)),
            Task::Calendars => Some((t, cfg.google.renew_interval)),
            Task::Housekeeping => Some((t, cfg.scheduler.housekeeping_interval)),
        })
        .collect()
}

pub struct Scheduler {
    pub queues: Queues,
    pub redis: RedisConn,
    pub prefix: String,
    /// Each periodic task with its interval.
    pub tasks: Vec<(Task, Duration)>,
}

impl Scheduler {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        tracing::info!(tasks = ?self.tasks, "scheduler started");
        let loops = self
            .tasks
            .iter()
            .map(|(task, every)| self.run_task(*task, *every, shutdown.clone()));
        futures::future::join_all(loops).await;
        tracing::info!("scheduler stopped");
    }

    async fn run_task(&self, task: Task, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let interval_ms = every.as_millis().max(100) as i64;
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let tick = now / interval_ms;
            let next_at = (tick + 1) * interval_ms;
            if let Err(e) = self.fire(task, tick, interval_ms).await {
                tracing::warn!(task = task.name(), tick, error = %e, "could not enqueue the tick; will try next tick");
            }
            let wait = Duration::from_millis((next_at - chrono::Utc::now().timestamp_millis()).max(1) as u64);
            let owner_gone = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                changed = shutdown.changed() => changed.is_err(),
            };
            if owner_gone || *shutdown.borrow() {
                return;
            }
        }
    }

    /// Enqueues tick `tick` of `task` unless another replica already did; `true` when
    /// this replica won it.
    pub async fn fire(&self, task: Task, tick: i64, interval_ms: i64) -> anyhow::Result<bool> {
        let lease = format!(
            "{}:tick:{}:{tick}",
            leadflow_shared::queue::state_prefix(&self.prefix),
            task.name()
        );
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
        self.queues.enqueue(&Tick { task, tick }, Duration::ZERO).await?;
        Ok(true)
    }
}

/// How often the queue gauges are refreshed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Keeps `leadflow_queue_jobs{queue,state}` current from BullMQ's keys and
/// `leadflow_channels{provider,connection}` from PostgreSQL, every [`SAMPLE_EVERY`], until
/// `shutdown`. Waiting counts the prioritized jobs too (BullMQ keeps
/// them apart; for an operator they wait all the same).
pub async fn sample_queues(
    mut redis: RedisConn,
    pool: sqlx::PgPool,
    keyspace: leadflow_shared::queue::Keyspace,
    mut shutdown: watch::Receiver<bool>,
) {
    use leadflow_shared::queue::QueueKind;
    // A provider and state seen before and now absent is set to 0, not left at its last value.
    let mut seen: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    loop {
        match leadflow_shared::db::channels::connection_counts(&pool).await {
            Ok(counts) => {
                let now: std::collections::HashSet<(String, String)> =
                    counts.iter().map(|(p, c, _)| (p.clone(), c.clone())).collect();
                for (provider, connection) in seen.difference(&now) {
                    leadflow_shared::metrics::channels(provider, connection, 0);
                }
                for (provider, connection, n) in &counts {
                    leadflow_shared::metrics::channels(provider, connection, *n);
                }
                seen.extend(now);
            }
            Err(e) => tracing::debug!(error = %e, "channel counts not sampled"),
        }
        for kind in QueueKind::ALL {
            match leadflow_shared::queue::counts(&mut redis, &keyspace, kind, None).await {
                Ok(c) => {
                    let q = kind.name();
                    leadflow_shared::metrics::queue_jobs(q, "waiting", c.wait + c.prioritized);
                    leadflow_shared::metrics::queue_jobs(q, "active", c.active);
                    leadflow_shared::metrics::queue_jobs(q, "delayed", c.delayed);
                    leadflow_shared::metrics::queue_jobs(q, "failed", c.failed);
                    leadflow_shared::metrics::queue_jobs(q, "completed", c.completed);
                }
                Err(e) => tracing::debug!(queue = kind.name(), error = %e, "queue counts not sampled"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
