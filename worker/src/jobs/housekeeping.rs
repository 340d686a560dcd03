//! Housekeeping: finished work is forgotten after a while, in small batches so neither
//! Redis nor a big table is ever held for long. Redis: completed and failed jobs older than
//! `LEADFLOW_RETENTION_JOBS` (BullMQ's own trimming keeps them bounded between runs).
//! PostgreSQL: delivery and send attempt rows, scheduler runs and dropped notifications
//! older than `LEADFLOW_RETENTION_ATTEMPTS`, and consent states older than a day.
//! Personal data past its `LEADFLOW_RETENTION_*` (messages, media bytes, raw payloads,
//! idempotency keys, delivery bodies; see [`housekeeping::Expiring`]), the same way: short
//! statements that each take at most a batch and skip rows live work holds, so the hot
//! path never waits behind a purge.

use leadflow_shared::db::housekeeping::{self, Expiring};
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
    let r = &ctx.cfg.scheduler.retention;
    let mut expired = Vec::new();
    for what in Expiring::ALL {
        let keep = match what {
            Expiring::Messages => r.messages,
            Expiring::MediaBytes => r.media_bytes,
            Expiring::RawPayloads => r.raw_payloads,
            Expiring::IdempotencyKeys => Some(r.idempotency_keys),
            Expiring::DeliveryBodies => r.delivery_bodies,
        };
        let Some(keep) = keep else { continue };
        let mut n = 0u64;
        for _ in 0..MAX_BATCHES {
            let changed = housekeeping::expire(&ctx.pool, what, keep.as_secs_f64(), BATCH).await?;
            n += changed;
            if changed < BATCH as u64 {
                break;
            }
        }
        if n > 0 {
            expired.push(format!("{n} {}", what.name()));
        }
    }
    let expired = if expired.is_empty() {
        String::new()
    } else {
        format!("; expired: {}", expired.join(", "))
    };
    Ok(format!(
        "{removed_jobs} finished jobs and {removed_rows} old rows removed{expired}"
    ))
}
