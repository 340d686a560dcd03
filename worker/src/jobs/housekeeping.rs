//! Housekeeping: finished work is forgotten after a while, in small batches so neither
//! Redis nor a big table is ever held for long. Redis: completed and failed jobs older than
//! `LEADFLOW_RETENTION_JOBS` (BullMQ's own trimming keeps them bounded between runs).
//! PostgreSQL: delivery and send attempt rows, scheduler runs and dropped notifications
//! older than `LEADFLOW_RETENTION_ATTEMPTS`, and consent states older than a day.

use leadflow_shared::db::housekeeping;
use leadflow_shared::queue::QueueKind;

use crate::Ctx;

/// Rows or jobs per statement or call.
const BATCH: i64 = 1000;
/// Batches per table (or queue and state) per run: a big backlog is worked off over
/// several runs instead of one long one.
const MAX_BATCHES: usize = 20;

pub async fn run(ctx: &Ctx) -> anyhow::Result<String> {
    let mut removed_jobs = 0usize;
    let grace_ms = ctx.cfg.scheduler.retention_jobs.as_millis() as u64;
    for kind in QueueKind::ALL {
        let q = ctx.queues.queue(kind);
        for state in ["completed", "failed"] {
            for _ in 0..MAX_BATCHES {
                let gone = q.clean(grace_ms, BATCH as u32, state).await?;
                removed_jobs += gone.len();
                if gone.len() < BATCH as usize {
                    break;
                }
            }
        }
    }
    let age = ctx.cfg.scheduler.retention_attempts.as_secs_f64();
    let mut removed_rows = 0u64;
    for table in housekeeping::TABLES {
        for _ in 0..MAX_BATCHES {
            let n = housekeeping::delete_old(&ctx.pool, table, age, BATCH).await?;
            removed_rows += n;
            if n < BATCH as u64 {
                break;
            }
        }
    }
    Ok(format!(
        "{removed_jobs} finished jobs and {removed_rows} old rows removed"
    ))
}
