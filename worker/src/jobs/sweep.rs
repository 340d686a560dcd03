//! The sweeper: finds work that PostgreSQL says should exist and Redis does not have
//! (a burst overdue with no flush job, a generation with no progress, a delivery whose
//! next attempt never came) and enqueues it again. Job ids are deterministic and every
//! handler re-checks state under a row lock, so a live job is never duplicated into a
//! second reply or delivery: a Redis that lost data converges.

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::db::{bursts, deliveries, inbound, mailboxes, media, outbox};
use leadflow_shared::queue::{DeliverPostback, GenerateReply, PollMailbox, ProcessInbound, ProcessMedia, SendMessage};

use crate::jobs::{ai_reply, flush};
use crate::Ctx;

const BATCH: i64 = 500;

pub async fn handle(ctx: Arc<Ctx>) -> anyhow::Result<()> {
    // Grace periods comfortably above normal scheduling jitter.
    let overdue = bursts::overdue_open(&ctx.pool, 5_000, BATCH).await?;
    for id in &overdue {
        flush::schedule(&ctx, *id, Duration::ZERO).await?;
    }
    // Longer than any live generation can go without touching its burst: one AI call
    // plus the longest wait between two attempts, with margin.
    let stale_ms = (ctx.cfg.ai_timeout + ai_reply::MAX_RETRY_DELAY).as_millis() as i64 * 2 + 60_000;
    let stale = bursts::restart_stale_generations(&ctx.pool, stale_ms, BATCH).await?;
    for (id, generation) in &stale {
        let job = GenerateReply::first(*id, *generation);
        ctx.queues.enqueue(&job, Duration::ZERO).await?;
    }
    let pending = deliveries::overdue_pending(&ctx.pool, 10_000, BATCH).await?;
    for (id, attempt) in &pending {
        let job = DeliverPostback {
            delivery_id: *id,
            attempt: *attempt,
            manual: false,
            sweep: Some(chrono::Utc::now().timestamp_millis()),
        };
        ctx.queues.enqueue(&job, Duration::ZERO).await?;
    }
    let orphaned = media::orphaned(&ctx.pool, 10_000, BATCH).await?;
    for (id, attempt) in &orphaned {
        let job = ProcessMedia {
            message_id: *id,
            attempt: *attempt as u32,
            sweep: Some(chrono::Utc::now().timestamp_millis()),
        };
        ctx.queues.enqueue(&job, Duration::ZERO).await?;
    }
    let events = inbound::overdue(&ctx.pool, 10_000, BATCH).await?;
    for event_id in &events {
        ctx.queues
            .enqueue(
                &ProcessInbound {
                    event_id: *event_id,
                    wait: 0,
                },
                Duration::ZERO,
            )
            .await?;
    }
    let sends = outbox::overdue_pending(&ctx.pool, 10_000, BATCH).await?;
    for (outbox_id, attempt) in &sends {
        let job = SendMessage {
            outbox_id: *outbox_id,
            attempt: *attempt,
            wait: 0,
        };
        ctx.queues.enqueue(&job, Duration::ZERO).await?;
    }
    // Mailboxes are polled on the sweep's clock: one poll per channel per interval (the
    // job id carries the interval's number). Only the first sweep of an interval lists the
    // channels, so a short sweep interval does not re-enqueue the same polls every tick
    // (a sweep running a whole interval late costs one interval's delay, never mail).
    let interval_ms = ctx.cfg.channels.mail_poll_interval.as_millis().max(1) as i64;
    let sweep_ms = ctx.cfg.sweep_interval.as_millis() as i64;
    let now = chrono::Utc::now().timestamp_millis();
    let slot = now / interval_ms;
    if (now - sweep_ms) / interval_ms != slot {
        for channel_id in mailboxes::channels(&ctx.pool).await? {
            ctx.queues
                .enqueue(&PollMailbox { channel_id, slot }, Duration::ZERO)
                .await?;
        }
    }
    let quiet = overdue.is_empty() && stale.is_empty() && pending.is_empty();
    if !(quiet && orphaned.is_empty() && events.is_empty() && sends.is_empty()) {
        tracing::warn!(
            bursts = overdue.len(),
            media = orphaned.len(),
            inbound = events.len(),
            sends = sends.len(),
            generations = stale.len(),
            deliveries = pending.len(),
            "sweeper re-enqueued lost work"
        );
    }
    Ok(())
}
