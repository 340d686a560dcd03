//! The `send` queue: one job per attempt at sending an outbox message through its
//! channel's provider. Every attempt is a row; a retry (network, 408/429, 5xx) is a new
//! delayed job honouring the provider's `retry-after`; other failures are final and
//! recorded with the provider's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_shared::channel::Provider;
use leadflow_shared::db::{channels, identities, lead_channels, outbox};
use leadflow_shared::queue::{jittered_backoff, SendMessage};

use crate::channels::{send_template, send_text, Recipient, SendError, Sent};
use crate::Ctx;

/// Attempts per message before it is marked failed.
pub const MAX_ATTEMPTS: i32 = 6;
const MAX_DELAY: Duration = Duration::from_secs(300);

pub async fn handle(ctx: Arc<Ctx>, job: SendMessage) -> anyhow::Result<()> {
    let Some(o) = outbox::get(&ctx.pool, job.outbox_id).await? else {
        return Ok(());
    };
    if o.status != "pending" || o.attempts >= job.attempt {
        return Ok(()); // sent, failed, or this attempt already ran
    }
    let template_used = std::sync::Mutex::new(None::<String>);
    let record = |outcome: &'static str, code: Option<u16>, ms: i32, id: Option<String>, err: Option<String>| {
        let pool = ctx.pool.clone();
        let template = template_used.lock().unwrap_or_else(|e| e.into_inner()).clone();
        async move {
            let a = outbox::Attempt {
                attempt: job.attempt,
                status_code: code.map(i32::from),
                duration_ms: ms,
                outcome,
                provider_message_id: id.as_deref(),
                error: err.as_deref(),
                template: template.as_deref(),
            };
            outbox::record_attempt(&pool, job.outbox_id, &a).await
        }
    };
    let Some(ch) = channels::find(&ctx.pool, o.tenant_id, o.channel_id).await? else {
        record("failed", None, 0, None, Some("the channel was deleted".into())).await?;
        return Ok(());
    };
    let Some(provider) = Provider::parse(&ch.provider) else {
        record(
            "failed",
            None,
            0,
            None,
            Some(format!("unknown provider {}", ch.provider)),
        )
        .await?;
        return Ok(());
    };
    let creds = channels::credentials(&ctx.pool, &ctx.master_key, ch.id).await?;
    if let Some(base) = creds.get("base_url") {
        if let Err(e) = ctx.ssrf.check_url(base).await {
            record(
                "failed",
                None,
                0,
                None,
                Some(format!("credentials.base_url refused: {e}")),
            )
            .await?;
            return Ok(());
        }
    }
    let mut to = Recipient::default();
    for (kind, value) in identities::for_lead(&ctx.pool, o.lead_id).await? {
        match kind.as_str() {
            "phone" => to.phone = to.phone.or(Some(value)),
            "wa_lid" => to.wa_lid = to.wa_lid.or(Some(value)),
            "telegram" => to.telegram_chat = to.telegram_chat.or(Some(value)),
            _ => {}
        }
    }
    let started = Instant::now();
    let in_window = !provider.has_24h_window()
        || lead_channels::last_inbound(&ctx.pool, o.lead_id, ch.id)
            .await?
            .is_some_and(|t| chrono::Utc::now() < t + chrono::Duration::hours(24));
    let result: Result<Sent, SendError> = if in_window {
        send_text(&ctx.guarded, provider, &creds, &to, &o.content).await
    } else {
        // Official WhatsApp refuses free-form text 24 h after the lead's last message.
        match send_template(&ctx.guarded, provider, &creds, &to).await {
            Ok(Some((name, sent))) => {
                *template_used.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
                Ok(sent)
            }
            Ok(None) => Err(SendError::Config(
                "outside WhatsApp's 24-hour window, and the channel has no approved template configured \
                 (credentials.template_name for Meta Cloud, credentials.template_id for Gupshup)"
                    .into(),
            )),
            Err(e) => Err(e),
        }
    };
    let ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    match result {
        Ok(sent) => {
            record("sent", Some(sent.status), ms, sent.provider_message_id, None).await?;
        }
        Err(e) if e.retryable() && job.attempt < MAX_ATTEMPTS => {
            let delay = e
                .retry_after()
                .unwrap_or_else(|| jittered_backoff(job.attempt as u32, Duration::from_secs(1), MAX_DELAY))
                .min(MAX_DELAY);
            tracing::warn!(outbox_id = %o.id, attempt = job.attempt, ?delay, error = %e, "send failed; retrying");
            record("pending", e.status(), ms, None, Some(e.to_string())).await?;
            let next = SendMessage {
                outbox_id: o.id,
                attempt: job.attempt + 1,
            };
            ctx.queues.enqueue(&next, delay).await?;
        }
        Err(e) => {
            tracing::warn!(outbox_id = %o.id, attempt = job.attempt, error = %e, "send failed for good");
            record("failed", e.status(), ms, None, Some(e.to_string())).await?;
        }
    }
    Ok(())
}
