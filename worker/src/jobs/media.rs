//! The `media` queue: one job per medium, enqueued at accept. Claims the medium's row
//! (a lease, so a duplicate delivery or the sweeper's copy does not process it again),
//! processes it, and stores the result — or schedules the next attempt as a new delayed
//! job, or records the failure that becomes a note in the prompt.

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::db::{assistants, media, tenants};
use leadflow_shared::domain::AssistantSettings;
use leadflow_shared::metrics;
use leadflow_shared::queue::{jittered_backoff, ProcessMedia};

use crate::media::process;
use crate::Ctx;

/// Longest wait between two attempts at one medium.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How long a claim holds the row: longer than a download plus a transcription.
pub fn lease(ctx: &Ctx) -> Duration {
    ctx.cfg.media.download_timeout + ctx.cfg.ai_timeout + Duration::from_secs(30)
}

pub async fn handle(ctx: Arc<Ctx>, job: ProcessMedia) -> anyhow::Result<()> {
    let Some(claim) = media::claim(&ctx.pool, job.message_id, job.attempt, lease(&ctx)).await? else {
        return Ok(()); // done, failed, or being processed by another job
    };
    leadflow_shared::metrics::tenant(claim.tenant_id);
    let result = run(&ctx, &claim).await;
    if result.is_err() {
        // Infrastructure trouble (PostgreSQL, Redis): let BullMQ's re-run claim it again
        // at once instead of waiting out the lease.
        let _ = media::release(&ctx.pool, claim.message_id).await;
    }
    result
}

async fn run(ctx: &Ctx, claim: &media::Claim) -> anyhow::Result<()> {
    if claim.tenant_disabled {
        media::fail(&ctx.pool, claim.message_id, "tenant_disabled", tenants::DISABLED).await?;
        metrics::media(&claim.kind, "failed");
        return Ok(());
    }
    let settings = match claim.assistant_id {
        Some(id) => assistants::get(&ctx.pool, id).await?.settings,
        None => AssistantSettings::default(),
    };
    match process(ctx, claim, &settings).await {
        Ok(outcome) => {
            media::succeed(&ctx.pool, claim.message_id, &outcome).await?;
            metrics::media(&claim.kind, "done");
            tracing::info!(message_id = %claim.message_id, kind = %claim.kind, ms = outcome.duration_ms, "medium understood");
        }
        Err(e) if e.retryable && (claim.attempts as u32) < ctx.cfg.media.max_attempts => {
            let delay = e.retry_after.map(|d| d.min(MAX_RETRY_DELAY)).unwrap_or_else(|| {
                jittered_backoff(claim.attempts as u32, Duration::from_millis(500), MAX_RETRY_DELAY)
            });
            let next = claim.attempts as u32 + 1;
            tracing::warn!(message_id = %claim.message_id, attempt = claim.attempts, ?delay, error = %e, "medium failed; retrying");
            media::hold_for_retry(&ctx.pool, claim.message_id, next, delay + lease(ctx), &e.message).await?;
            let retry = ProcessMedia {
                message_id: claim.message_id,
                attempt: next,
                sweep: None,
            };
            ctx.queues.enqueue(&retry, delay).await?;
            metrics::media(&claim.kind, "retried");
        }
        Err(e) => {
            tracing::warn!(message_id = %claim.message_id, kind = %claim.kind, code = %e.code, error = %e, "giving up on this medium");
            media::fail(&ctx.pool, claim.message_id, &e.code, &e.message).await?;
            metrics::media(&claim.kind, "failed");
        }
    }
    Ok(())
}
