//! The `scheduled` queue: one [`Tick`] per periodic task per tick, enqueued by the
//! scheduler. Each run is a `scheduler_runs` row (when it ran, what it did), so ops can
//! see that the periodic work happens, and once per tick.

use std::sync::Arc;

use leadflow_shared::db::connections;
use leadflow_shared::queue::{Task, Tick};

use crate::jobs::{calendar, connections as checks, housekeeping, sweep};
use crate::Ctx;

pub async fn handle(ctx: Arc<Ctx>, job: Tick) -> anyhow::Result<()> {
    let run = connections::run_started(&ctx.pool, job.task.name(), job.tick).await?;
    let detail = match job.task {
        Task::Sweep => {
            sweep::handle(ctx.clone()).await?;
            String::new()
        }
        Task::Connections => {
            let (checked, changed) = checks::run(&ctx).await?;
            format!("{checked} checked, {changed} changed")
        }
        Task::Calendars => calendar::tick(&ctx).await?,
        Task::Housekeeping => housekeeping::run(&ctx).await?,
    };
    connections::run_finished(&ctx.pool, run, &detail).await?;
    Ok(())
}
