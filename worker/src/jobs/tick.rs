//! The `scheduled` queue: one [`Tick`] per periodic task per tick, enqueued by the
//! scheduler. Each run is a `scheduler_runs` row (when it ran, what it did), so ops can
//! see that the periodic work happens, and once per tick. Runs of one task never overlap:
//! a tick that finds the previous run still going (a slow connection check) is recorded
//! as skipped, since the running one covers it.

use std::sync::Arc;

use leadflow_shared::db::connections;
use leadflow_shared::metrics;
use leadflow_shared::queue::{Task, Tick};

use crate::jobs::{calendar, connections as checks, housekeeping, sweep};
use crate::Ctx;

pub async fn handle(ctx: Arc<Ctx>, job: Tick) -> anyhow::Result<()> {
    let run = connections::run_started(&ctx.pool, job.task.name(), job.tick).await?;
    let Some(held) = connections::hold_task(&ctx.pool, job.task.name()).await? else {
        connections::run_finished(&ctx.pool, run, "skipped: the previous run is still going").await?;
        metrics::scheduler_run(job.task.name(), "skipped");
        return Ok(());
    };
    let result = work(&ctx, job.task).await;
    metrics::scheduler_run(job.task.name(), if result.is_ok() { "ok" } else { "failed" });
    held.rollback().await?;
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
