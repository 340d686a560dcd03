//! Generation: one AI call per burst generation, then — in one transaction under the
//! burst's row lock — either the reply (stored once, with its delivery), or a superseded
//! draft (new messages arrived: the burst reopens and is generated again with them), or
//! a definitive failure (error postback, so no integrator waits forever).
//!
//! Retries of the AI call are new delayed jobs (attempt + 1), honouring the provider's
//! `retry-after`; the burst stays `generating` meanwhile, so it is never answered twice.

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::crypto;
use leadflow_shared::db::bursts::{BurstStatus, DropReason, Ending};
use leadflow_shared::db::media::MediaStatus;
use leadflow_shared::db::{assistants, bursts, deliveries, leads, media, messages, outbox, tenants};
use leadflow_shared::queue::{jittered_backoff, DeliverPostback, GenerateReply, ProcessMedia, SendMessage};
use serde_json::json;

use crate::ai::{prompt, AiError, AiReply, AiRoute};
use crate::jobs::{flush, postback};
use crate::Ctx;

/// Longest wait between two AI attempts, whatever the provider asks.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(120);

pub async fn handle(ctx: Arc<Ctx>, job: GenerateReply) -> anyhow::Result<()> {
    // Version first, messages second: a message joining in between makes the version
    // stale at the end, which regenerates — never a reply that missed a message.
    let Some(b) = bursts::get(&ctx.pool, job.burst_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(b.tenant_id);
    if b.status != BurstStatus::Generating || b.generations != job.generation {
        // Finished, superseded or re-generated meanwhile. A re-run of the finishing job
        // (it crashed, or Redis refused, after the commit) still owes the postback job.
        if b.status.is_settled() {
            if let Some(delivery_id) = deliveries::unstarted_for_burst(&ctx.pool, b.id).await? {
                let first = DeliverPostback::first(delivery_id);
                ctx.queues.enqueue(&first, Duration::ZERO).await?;
            }
            if let Some(outbox_id) = outbox::unstarted_for_burst(&ctx.pool, b.id).await? {
                ctx.queues
                    .enqueue(&SendMessage::first(outbox_id), Duration::ZERO)
                    .await?;
            }
        }
        return Ok(());
    }
    if b.tenant_disabled {
        let mut tx = ctx.pool.begin().await?;
        bursts::finish(&mut tx, b.id, Ending::Dropped(DropReason::TenantDisabled)).await?;
        tx.commit().await?;
        tracing::info!(burst_id = %b.id, "generation dropped: the tenant is disabled");
        ctx.publish_outcome(b.id).await;
        return Ok(());
    }
    let burst_msgs = messages::in_burst(&ctx.pool, b.id).await?;
    let Some(max_seq) = burst_msgs.iter().map(|m| m.seq).max() else {
        tracing::warn!(burst_id = %b.id, "burst without messages");
        return Ok(());
    };
    let media_ids: Vec<uuid::Uuid> = burst_msgs
        .iter()
        .filter(|m| m.message_type != "text")
        .map(|m| m.id)
        .collect();
    let mut media_map = media::for_messages(&ctx.pool, &media_ids, true).await?;
    if wait_for_media(&ctx, &b, &job, &media_ids, &media_map).await? {
        return Ok(());
    }
    let assistant = assistants::get(&ctx.pool, b.assistant_id).await?;
    let history = messages::history(
        &ctx.pool,
        b.lead_id,
        b.id,
        max_seq,
        assistant.settings.history_limit as i64,
    )
    .await?;
    let history_media: Vec<uuid::Uuid> = history
        .iter()
        .filter(|m| m.message_type != "text")
        .map(|m| m.id)
        .collect();
    media_map.extend(media::for_messages(&ctx.pool, &history_media, false).await?);
    let lead_external = leads::external_id(&ctx.pool, b.lead_id).await?;
    let mut request = prompt::build(
        &assistant,
        &history,
        &burst_msgs,
        &media_map,
        crypto::hash_lead_for_ai(&b.tenant_id, &lead_external),
    );
    drop(media_map); // inline images can be large: not kept across the AI call
    let tenant_ai = tenants::ai_settings(&ctx.pool, &ctx.master_key, b.tenant_id).await?;
    let started = std::time::Instant::now();
    let result =
        match AiRoute::for_tenant(&ctx.cfg, &tenant_ai).and_then(|r| r.limit(&ctx.cfg, &mut request).map(|()| r)) {
            Ok(route) => ctx.ai.chat(route.base_url, route.key, &request).await,
            Err(e) => Err(e),
        };
    tracing::debug!(burst_id = %b.id, elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "AI call");

    let outcome = match result {
        Ok(reply) => Ok(reply),
        Err(e @ AiError::Retryable { .. }) if may_retry(&ctx, &b, job.attempt) => {
            let delay = retry_delay(&e, job.attempt);
            tracing::warn!(burst_id = %b.id, attempt = job.attempt, ?delay, error = %e, "AI call failed; retrying");
            bursts::touch(&ctx.pool, b.id).await?;
            let next = GenerateReply {
                attempt: job.attempt + 1,
                wait: 0,
                ..job
            };
            ctx.queues.enqueue(&next, delay).await?;
            return Ok(());
        }
        Err(e) => Err(e),
    };
    finish(&ctx, &b, &assistant, &lead_external, max_seq, outcome).await
}

/// Media still being processed when the burst is due: look again shortly, as a new
/// delayed job, until `LEADFLOW_MEDIA_WAIT` has passed since the burst was due; then the
/// reply goes out with a note for what is missing. `true`: this run is over.
async fn wait_for_media(
    ctx: &Ctx,
    b: &bursts::Burst,
    job: &GenerateReply,
    ids: &[uuid::Uuid],
    done: &prompt::MediaMap,
) -> anyhow::Result<bool> {
    let unfinished: Vec<uuid::Uuid> = ids
        .iter()
        .filter(|id| done.get(id).is_none_or(|x| x.status == MediaStatus::Pending))
        .copied()
        .collect();
    let waited = (chrono::Utc::now() - b.due_at).to_std().unwrap_or_default();
    if unfinished.is_empty() || waited >= ctx.cfg.media.wait {
        if !unfinished.is_empty() {
            tracing::warn!(burst_id = %b.id, media = unfinished.len(), ?waited, "answering without media that is not ready");
        }
        return Ok(false);
    }
    for id in unfinished.iter().filter(|id| !done.contains_key(id)) {
        // Never started (its job was lost): the same id is a no-op if it exists.
        let first = ProcessMedia::first(*id);
        ctx.queues.enqueue(&first, Duration::ZERO).await?;
    }
    if job.wait % 20 == 19 {
        bursts::touch(&ctx.pool, b.id).await?;
    }
    let poll = Duration::from_millis(50u64 << job.wait.min(4)).min(Duration::from_millis(500));
    let next = GenerateReply {
        wait: job.wait + 1,
        ..job.clone()
    };
    ctx.queues.enqueue(&next, poll).await?;
    Ok(true)
}

fn may_retry(ctx: &Ctx, b: &bursts::Burst, attempt: u32) -> bool {
    let elapsed = chrono::Utc::now() - b.due_at;
    attempt < ctx.cfg.ai_max_attempts && elapsed.to_std().unwrap_or_default() < ctx.cfg.ai_max_retry_time
}

fn retry_delay(e: &AiError, attempt: u32) -> Duration {
    let backoff = jittered_backoff(attempt, Duration::from_millis(500), MAX_RETRY_DELAY);
    match e {
        AiError::Retryable {
            retry_after: Some(hint),
            ..
        } => {
            // Honour the hint, plus a little jitter so a fleet does not retry in lockstep.
            let jitter = Duration::from_millis(rand::random::<u64>() % 250);
            (*hint + jitter).min(MAX_RETRY_DELAY)
        }
        _ => backoff,
    }
}

async fn finish(
    ctx: &Ctx,
    seen: &bursts::Burst,
    assistant: &leadflow_shared::domain::Assistant,
    lead_external: &str,
    max_seq: i64,
    outcome: Result<AiReply, AiError>,
) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await?;
    // Lead, then burst: the accept path's lock order (no deadlock), and a human message
    // cannot slip in between the pause check below and this commit.
    let paused = leads::lock(&mut tx, seen.lead_id, seen.channel_id).await?;
    let Some(b) = bursts::lock(&mut tx, seen.id).await? else {
        return Ok(());
    };
    if b.status != BurstStatus::Generating || b.generations != seen.generations {
        return Ok(()); // another run of this generation already finished it
    }
    if outcome.is_ok() && paused {
        // A human took the lead over while we generated: never talk over them.
        bursts::finish(&mut tx, b.id, Ending::Dropped(DropReason::HumanTakeover)).await?;
        tx.commit().await?;
        tracing::info!(burst_id = %b.id, "draft dropped: a human took over during the generation");
        ctx.publish_outcome(b.id).await;
        return Ok(());
    }
    let mut split = None;
    if b.version != seen.version {
        if outcome.is_ok() && !b.past_deadline {
            // Superseded: the lead wrote again while we generated. Drop the draft and
            // generate again once the lead is quiet, with every message included.
            let due_in_ms = bursts::reopen(&mut tx, b.id).await?;
            tx.commit().await?;
            tracing::info!(burst_id = %b.id, "draft superseded by newer messages; regenerating");
            flush::schedule(ctx, b.id, leadflow_shared::queue::delay_from_ms(due_in_ms)).await?;
            return Ok(());
        }
        // Past max_wait this reply goes out; and when the AI failed for good, the newer
        // messages were never tried. Either way they form the next burst.
        split = bursts::split_off_after(
            &mut tx,
            &b,
            max_seq,
            assistant.settings.debounce_seconds,
            assistant.settings.max_wait_seconds,
        )
        .await?;
    }

    let message_ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        r#"SELECT id FROM messages WHERE burst_id = $1 AND role = 'user' AND seq <= $2 ORDER BY seq"#,
    )
    .bind(b.id)
    .bind(max_seq)
    .fetch_all(&mut *tx)
    .await?;
    let mut payload = postback::Payload {
        lead_id: lead_external,
        tenant_id: b.tenant_id,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        messages_processed: message_ids.len(),
        message_ids: &message_ids,
        success: false,
        response: None,
        error: None,
    };
    let mut reply_id = None;
    match &outcome {
        Ok(reply) => {
            reply_id = messages::insert_reply(
                &mut tx,
                &messages::Reply {
                    tenant_id: b.tenant_id,
                    lead_id: b.lead_id,
                    burst_id: b.id,
                    content: &reply.content,
                    model: &reply.model,
                    prompt_tokens: reply.prompt_tokens,
                    completion_tokens: reply.completion_tokens,
                },
            )
            .await?;
            bursts::finish(&mut tx, b.id, Ending::Done).await?;
            payload.success = true;
            payload.response = Some(&reply.content);
        }
        Err(e) => {
            let error = postback::PayloadError {
                code: e.code(),
                message: e.to_string(),
            };
            let ending = Ending::Failed {
                code: &error.code,
                message: &error.message,
            };
            bursts::finish(&mut tx, b.id, ending).await?;
            tracing::warn!(burst_id = %b.id, error = %e, "giving up on this burst's reply");
            payload.error = Some(error);
        }
    }
    let delivery = match (b.mode.as_str(), b.postback_url.as_deref()) {
        ("debounce", Some(url)) => deliveries::create(&mut tx, b.tenant_id, b.id, url, &payload.to_json()).await?,
        _ => None,
    };
    // A burst that came through a channel is answered through it.
    let send = match (&outcome, b.channel_id) {
        (Ok(reply), Some(channel)) if !reply.content.trim().is_empty() => {
            let parts = if assistant.settings.split_replies {
                leadflow_providers::split_reply(&reply.content)
            } else {
                vec![reply.content.clone()]
            };
            outbox::create_reply(&mut tx, b.tenant_id, channel, b.lead_id, b.id, reply_id, &parts).await?
        }
        _ => None,
    };
    tx.commit().await?;
    if let Some(outbox_id) = send {
        let job = SendMessage::first(outbox_id);
        ctx.queues.enqueue_for(b.tenant_id, &job, Duration::ZERO).await?;
    }

    if let Some(delivery_id) = delivery {
        let job = DeliverPostback::first(delivery_id);
        ctx.queues.enqueue_for(b.tenant_id, &job, Duration::ZERO).await?;
    }
    ctx.publish_outcome(b.id).await;
    if let Err(e) = &outcome {
        // One notice per assistant per quiet period: an AI outage fails many bursts.
        let data = json!({"burst_id": b.id, "lead_id": b.lead_id, "assistant_id": b.assistant_id,
                          "error": e.to_string(), "code": e.code()});
        crate::notify::raise(
            ctx,
            b.tenant_id,
            leadflow_shared::db::notifications::Event::AiFailed,
            &b.assistant_id.to_string(),
            data,
        )
        .await;
    }
    if let Some((new_burst, due_in_ms)) = split {
        flush::schedule(ctx, new_burst, leadflow_shared::queue::delay_from_ms(due_in_ms)).await?;
    }
    // Bursts of this lead that waited for the generation slot can go now.
    for (waiting, due_in_ms) in bursts::open_for_lead(&ctx.pool, b.lead_id).await? {
        flush::schedule(ctx, waiting, leadflow_shared::queue::delay_from_ms(due_in_ms)).await?;
    }
    Ok(())
}
