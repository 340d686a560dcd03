//! The `scheduled` queue: one [`Tick`] per periodic task per tick, enqueued by the
//! scheduler. Each run is a `scheduler_runs` row (when it ran, what it did), so ops can
//! see that the periodic work happens, and once per tick. Runs of one task never overlap:
//! a tick that finds the previous run still going (a slow connection check) is recorded
//! as skipped, since the running one covers it.

use std::sync::Arc;

use leadflow_shared::db::connections;
use leadflow_shared::queue::{Task, Tick};

use crate::jobs::{calendar, connections as checks, housekeeping, sweep};
use crate::Ctx;

/// Longest a run may hold its task (the queue's own timeout is the same).
const LEASE_MS: u64 = 300_000;

pub async fn handle(ctx: Arc<Ctx>, job: Tick) -> anyhow::Result<()> {
    let run = connections::run_started(&ctx.pool, job.task.name(), job.tick).await?;
    let lease = format!("{}:running:{}", ctx.cfg.queue_prefix, job.task.name());
    let mut redis = ctx.redis.clone();
    let held: Option<String> = redis::cmd("SET")
        .arg(&lease)
        .arg(job.tick)
        .arg("NX")
        .arg("PX")
        .arg(LEASE_MS)
        .query_async(&mut redis)
        .await?;
    if held.is_none() {
        connections::run_finished(&ctx.pool, run, "skipped: the previous run is still going").await?;
        return Ok(());
    }
    let result = work(&ctx, job.task).await;
    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&lease).query_async(&mut redis).await;
    connections::run_finished(&ctx.pool, run, &result?).await?;
    Ok(())
}

async fn work(ctx: &Arc<Ctx>, task: Task) -> anyhow::Result<String> {
    Ok(match task {
        Task::Sweep => {
            sweep::handle(ctx.clone()).await?;
            String::new()
        }
        Task::Connections => {
            let (checked, changed) = checks::run(ctx).await?;
            format!("{checked} checked, {changed} changed")
        }
        Task::Calendars => calendar::tick(ctx).await?,
        Task::Housekeeping => housekeeping::run(ctx).await?,
    })
}
