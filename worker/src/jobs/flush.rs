//! Flush: decides whether a burst is due and, when it is, starts its generation.
//! A check that comes early (the lead wrote again) schedules a new check at the new due
//! time instead of sleeping. One generation per lead: a burst waits while another burst
//! of the same lead is generating or an earlier one is still waiting; the finishing
//! generation kicks the waiting burst.

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::db::bursts::{self, BurstStatus, DropReason, Ending};
use leadflow_shared::db::leads;
use leadflow_shared::queue::{delay_from_ms, FlushBurst, GenerateReply};
use uuid::Uuid;

use super::now_ms;
use crate::Ctx;

/// How long a burst waits before re-checking the lead's generation slot. The finishing
/// generation also kicks it directly, so this is only the fallback.
const SLOT_RECHECK: Duration = Duration::from_millis(1000);

enum Next {
    Nothing,
    CheckAgainIn(Duration),
    Generate(i32),
    Dropped,
}

pub async fn handle(ctx: Arc<Ctx>, job: FlushBurst) -> anyhow::Result<()> {
    let Some((lead_id, channel_id)) = bursts::lead_of(&ctx.pool, job.burst_id).await? else {
        return Ok(());
    };
    let mut tx = ctx.pool.begin().await?;
    // Lead first, then burst — the accept path's order, so the two never deadlock — so
    // every flush decision for one lead is serialised ("one generation per lead").
    let paused = leads::lock(&mut tx, lead_id, channel_id).await?;
    let Some(b) = bursts::lock(&mut tx, job.burst_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(b.tenant_id);
    let live = b.status.is_live();
    if live && b.tenant_disabled {
        bursts::finish(&mut tx, b.id, Ending::Dropped(DropReason::TenantDisabled)).await?;
        tx.commit().await?;
        tracing::info!(burst_id = %b.id, "burst dropped: the tenant is disabled");
        ctx.publish_outcome(b.id).await;
        return Ok(());
    }
    let next = match b.status {
        // A re-run after the generation started: make sure its job exists.
        BurstStatus::Generating => Next::Generate(b.generations),
        BurstStatus::Open if b.due_in_ms > 0 => Next::CheckAgainIn(delay_from_ms(b.due_in_ms)),
        BurstStatus::Open if paused => {
            bursts::finish(&mut tx, b.id, Ending::Dropped(DropReason::HumanTakeover)).await?;
            Next::Dropped
        }
        BurstStatus::Open if bursts::lead_slot_taken(&mut tx, b.lead_id, b.id).await? => {
            Next::CheckAgainIn(SLOT_RECHECK)
        }
        BurstStatus::Open => {
            if b.generations == 0 {
                let late = Duration::from_millis(b.due_in_ms.min(0).unsigned_abs());
                leadflow_shared::metrics::flush_lateness(late);
            }
            Next::Generate(bursts::start_generation(&mut tx, b.id).await?)
        }
        BurstStatus::Done | BurstStatus::Failed | BurstStatus::Dropped => Next::Nothing,
    };
    tx.commit().await?;

    match next {
        Next::Nothing => {}
        Next::CheckAgainIn(delay) => schedule(&ctx, b.id, delay).await?,
        Next::Generate(generation) => {
            let job = GenerateReply::first(b.id, generation);
            ctx.queues.enqueue_for(b.tenant_id, &job, Duration::ZERO).await?;
        }
        Next::Dropped => {
            tracing::info!(burst_id = %b.id, "burst dropped: a human has taken over the lead");
            ctx.publish_outcome(b.id).await;
        }
    }
    Ok(())
}

/// Schedules a check of `burst_id` after `delay` (a distinct job per target time).
pub async fn schedule(ctx: &Ctx, burst_id: Uuid, delay: Duration) -> anyhow::Result<()> {
    let job = FlushBurst {
        burst_id,
        at_ms: now_ms() + delay.as_millis() as i64,
    };
    ctx.queues.enqueue(&job, delay).await?;
    Ok(())
}
