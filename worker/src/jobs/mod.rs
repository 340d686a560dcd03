//! One module per job type. `start` registers the handlers of the chosen queues.

pub mod ai_reply;
pub mod calendar;
pub mod connections;
pub mod flush;
pub mod housekeeping;
pub mod inbound;
pub mod mail;
pub mod media;
pub mod postback;
pub mod send;
pub mod sweep;
pub mod tick;

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::queue::{
    CalendarJob, DeliverPostback, FlushBurst, GenerateReply, Noop, PollMailbox, ProcessInbound, ProcessMedia,
    QueueKind, SendMessage, Tick,
};

use crate::runtime::Pool;
use crate::Ctx;

/// Starts workers for `queues` with `concurrency` jobs in flight each.
pub async fn start(ctx: &Arc<Ctx>, queues: &[QueueKind], concurrency: usize) -> anyhow::Result<Pool> {
    let mut pool = Pool::new();
    // Bounds a handler that hangs despite its own timeouts (the AI call has its own).
    let ai_timeout = ctx.cfg.ai_timeout + Duration::from_secs(60);
    for kind in queues {
        match kind {
            QueueKind::Flush => {
                pool.spawn::<FlushBurst, _, _>(ctx, concurrency, Duration::from_secs(60), flush::handle)
                    .await?
            }
            QueueKind::Ai => {
                pool.spawn::<GenerateReply, _, _>(ctx, concurrency, ai_timeout, ai_reply::handle)
                    .await?
            }
            QueueKind::Media => {
                // Its own bound: each job may hold a whole file in memory.
                let n = ctx.cfg.media.concurrency;
                let timeout = media::lease(ctx);
                pool.spawn::<ProcessMedia, _, _>(ctx, n, timeout, media::handle).await?
            }
            QueueKind::Postback => {
                pool.spawn::<DeliverPostback, _, _>(ctx, concurrency, Duration::from_secs(120), postback::handle)
                    .await?
            }
            QueueKind::Inbound => {
                pool.spawn::<ProcessInbound, _, _>(ctx, concurrency, Duration::from_secs(60), inbound::handle)
                    .await?
            }
            QueueKind::Send => {
                pool.spawn::<SendMessage, _, _>(ctx, concurrency, Duration::from_secs(120), send::handle)
                    .await?
            }
            QueueKind::Scheduled => {
                // One run per task at a time is enough; two lets a long connection check
                // run beside the sweep.
                pool.spawn::<Tick, _, _>(ctx, 2, Duration::from_secs(300), tick::handle)
                    .await?
            }
            QueueKind::Mail => {
                // One poll per mailbox at a time is plenty; a bounded pool keeps many
                // slow IMAP servers from holding every connection.
                pool.spawn::<PollMailbox, _, _>(ctx, concurrency.min(16), Duration::from_secs(300), mail::handle)
                    .await?
            }
            QueueKind::Calendar => {
                pool.spawn::<CalendarJob, _, _>(ctx, concurrency.min(32), Duration::from_secs(300), calendar::handle)
                    .await?
            }
            QueueKind::Bench => {
                pool.spawn::<Noop, _, _>(ctx, concurrency, Duration::from_secs(10), |_, _| async { Ok(()) })
                    .await?
            }
        }
    }
    Ok(pool)
}

/// Now in epoch milliseconds (job ids of rescheduled checks).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
