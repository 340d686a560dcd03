//! The `send` queue: one job per attempt at sending an outbox message through its
//! channel's provider. Every attempt is a row; a retry (network, 408/429, 5xx) is a new
//! delayed job honouring the provider's `retry-after`, and the row's `next_attempt_at`
//! says when, so the sweeper can restart a retry whose job was lost; other failures are
//! final and recorded with the provider's answer.
//!
//! Providers limit how fast one number may send, so each channel has a send rate
//! (`LEADFLOW_CHANNEL_SEND_RATE` per second, a fixed window in Redis shared by every
//! worker): a message over it waits for the next window as a new delayed job. The parts
//! of a split reply go out in order, each `LEADFLOW_TYPING_DELAY` after the one before.
//! A disconnected WhatsApp channel's messages wait for it to come back, up to
//! `LEADFLOW_DISCONNECTED_SEND_WAIT`, then fail with that reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_providers::Credentials;
use leadflow_shared::channel::Provider;
use leadflow_shared::db::{channels, identities, lead_channels, outbox, tenants};
use leadflow_shared::delivery::DeliveryState;
use leadflow_shared::queue::{jittered_backoff, SendMessage};

use crate::Ctx;
use leadflow_providers::{send_template, send_text, Recipient, SendError, Sent};

/// Attempts per message before it is marked failed.
pub const MAX_ATTEMPTS: i32 = 6;
const MAX_DELAY: Duration = Duration::from_secs(300);

/// What one attempt came to.
struct Outcome {
    result: Result<Sent, SendError>,
    /// The template sent instead of the text (outside the 24-hour window).
    template: Option<String>,
    ms: i32,
}

impl Outcome {
    fn refused(why: String) -> Self {
        Self {
            result: Err(SendError::Config(why)),
            template: None,
            ms: 0,
        }
    }
}

pub async fn handle(ctx: Arc<Ctx>, job: SendMessage) -> anyhow::Result<()> {
    let Some(o) = outbox::get(&ctx.pool, job.outbox_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(o.tenant_id);
    if o.status != DeliveryState::Pending || o.attempts >= job.attempt {
        return Ok(()); // sent, failed, or this attempt already ran
    }
    let ch = channels::find(&ctx.pool, o.tenant_id, o.channel_id).await?;
    let gate = if o.tenant_disabled {
        Gate::Closed(tenants::DISABLED.to_string())
    } else {
        match ch.as_ref().map_or(Ok(Gate::Open), |ch| disconnected(&ctx, ch))? {
            Gate::Open => throttle(&ctx, o.channel_id).await.map(Gate::Wait).unwrap_or(Gate::Open),
            other => other,
        }
    };
    let outcome = match gate {
        Gate::Wait(delay) => {
            let later = SendMessage {
                wait: job.wait + 1,
                ..job
            };
            ctx.queues.enqueue(&later, delay).await?;
            return Ok(());
        }
        Gate::Closed(why) => Outcome::refused(why),
        Gate::Open => attempt(&ctx, &o, ch.as_ref()).await?,
    };
    let (state, retry_in) = match &outcome.result {
        Ok(_) => (DeliveryState::Sent, None),
        Err(e) if e.retryable() && job.attempt < MAX_ATTEMPTS => {
            let delay = e
                .retry_after()
                .unwrap_or_else(|| jittered_backoff(job.attempt as u32, Duration::from_secs(1), MAX_DELAY))
                .min(MAX_DELAY);
            tracing::warn!(outbox_id = %o.id, attempt = job.attempt, ?delay, error = %e, "send failed; retrying");
            (DeliveryState::Pending, Some(delay))
        }
        Err(e) => {
            tracing::warn!(outbox_id = %o.id, attempt = job.attempt, error = %e, "send failed for good");
            (DeliveryState::Failed, None)
        }
    };
    let (sent, err) = match &outcome.result {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let error = err.map(|e| e.to_string());
    let a = outbox::Attempt {
        attempt: job.attempt,
        status_code: sent
            .map(|s| s.status)
            .or_else(|| err.and_then(SendError::status))
            .map(i32::from),
        duration_ms: outcome.ms,
        outcome: state,
        provider_message_id: sent.and_then(|s| s.provider_message_id.as_deref()),
        error: error.as_deref(),
        template: outcome.template.as_deref(),
        retry_in,
    };
    outbox::record_attempt(&ctx.pool, o.id, &a).await?;
    let provider = ch.as_ref().map_or("unknown", |c| c.provider.as_str());
    leadflow_shared::metrics::send(
        provider,
        match state {
            DeliveryState::Pending => "retried",
            DeliveryState::Failed => "failed",
            _ => "sent",
        },
    );
    if let Some(delay) = retry_in {
        let next = SendMessage {
            outbox_id: o.id,
            attempt: job.attempt + 1,
            wait: 0,
        };
        ctx.queues.enqueue(&next, delay).await?;
    }
    match state {
        DeliveryState::Sent => {
            let typing = ctx.cfg.channels.typing_delay;
            if let Some(next) = outbox::next_part(&ctx.pool, o.id, typing).await? {
                let job = SendMessage::first(next);
                ctx.queues.enqueue(&job, typing).await?;
            }
        }
        DeliveryState::Failed => {
            outbox::fail_later_parts(&ctx.pool, o.id).await?;
            let failed = crate::notify::Failed {
                tenant_id: o.tenant_id,
                lead_id: o.lead_id,
                channel_id: o.channel_id,
                message_id: o.message_id,
                outbox_id: o.id,
                error_code: None,
                reason: error.as_deref().unwrap_or("the message could not be sent"),
                source: "send",
            };
            crate::notify::message_failed(&ctx, &failed).await;
        }
        _ => {}
    }
    Ok(())
}

enum Gate {
    Open,
    Wait(Duration),
    Closed(String),
}

const RECHECK_DISCONNECTED: Duration = Duration::from_secs(3);

/// A disconnected channel's messages wait for it (looking again every few seconds) up to
/// `LEADFLOW_DISCONNECTED_SEND_WAIT` after it went down, then fail.
fn disconnected(ctx: &Ctx, ch: &channels::Channel) -> anyhow::Result<Gate> {
    if ch.connection != leadflow_shared::channel::Connection::Disconnected {
        return Ok(Gate::Open);
    }
    let since = ch.connection_changed_at.unwrap_or_else(chrono::Utc::now);
    let wait = ctx.cfg.scheduler.disconnected_send_wait;
    let left = (since + chrono::Duration::from_std(wait)?) - chrono::Utc::now();
    Ok(match left.to_std() {
        // Looked at again every few seconds, so a reconnection releases it promptly.
        Ok(left) if !left.is_zero() => Gate::Wait(left.min(RECHECK_DISCONNECTED)),
        _ => Gate::Closed(format!(
            "the channel has been disconnected since {} (waited LEADFLOW_DISCONNECTED_SEND_WAIT = {wait:?} for it)",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
    })
}

/// Counts this send against the channel's rate; `Some(wait)` when the current window is
/// full. Redis trouble lets the send through: the provider's own 429 is the backstop.
async fn throttle(ctx: &Ctx, channel_id: uuid::Uuid) -> Option<Duration> {
    let rate = ctx.cfg.channels.send_rate;
    let (window_ms, limit) = if rate >= 1.0 {
        (1000, rate.floor() as i64)
    } else {
        ((1000.0 / rate) as i64, 1)
    };
    let now = chrono::Utc::now().timestamp_millis();
    let window = now / window_ms;
    let key = format!(
        "{}:rate:{}:{window}",
        leadflow_shared::queue::state_prefix(&ctx.cfg.queue_prefix),
        channel_id.simple()
    );
    let mut conn = ctx.redis.clone();
    let counted: redis::RedisResult<(i64,)> = redis::pipe()
        .incr(&key, 1)
        .pexpire(&key, window_ms * 2)
        .ignore()
        .query_async(&mut conn)
        .await;
    match counted {
        Ok((n,)) if n > limit => {
            // Spread the waiting sends over the next window instead of waking them at once.
            let spread = (n - limit - 1).max(0) * window_ms / limit.max(1);
            Some(Duration::from_millis(((window + 1) * window_ms - now + spread) as u64))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(%channel_id, error = %e, "send rate not checked");
            None
        }
    }
}

/// Every address a tenant gave is checked like a postback URL; `Some(why)` when one is
/// refused.
pub async fn refused_address(ctx: &Ctx, creds: &Credentials) -> Option<String> {
    leadflow_providers::refused(creds, &ctx.ssrf).await
}

/// Resolves channel, credentials and recipient, and sends: free-form text, or the
/// channel's template outside official WhatsApp's 24-hour window.
async fn attempt(ctx: &Ctx, o: &outbox::Outgoing, ch: Option<&channels::Channel>) -> anyhow::Result<Outcome> {
    let Some(ch) = ch else {
        return Ok(Outcome::refused("the channel was deleted".into()));
    };
    let Some(provider) = Provider::parse(&ch.provider) else {
        return Ok(Outcome::refused(format!("unknown provider {}", ch.provider)));
    };
    let stored = channels::credentials(&ctx.pool, &ctx.master_key, ch.id).await?;
    let creds = match Credentials::parse(provider, &stored) {
        Ok(c) => c,
        Err(e) => return Ok(Outcome::refused(e.to_string())),
    };
    if let Some(why) = refused_address(ctx, &creds).await {
        return Ok(Outcome::refused(why));
    }
    let mut to = Recipient::default();
    for (kind, value) in identities::for_lead(&ctx.pool, o.lead_id).await? {
        match kind.as_str() {
            "phone" => to.phone = to.phone.or(Some(value)),
            "wa_lid" => to.wa_lid = to.wa_lid.or(Some(value)),
            "telegram" => to.telegram_chat = to.telegram_chat.or(Some(value)),
            "email" | "email_unverified" => to.email = to.email.or(Some(value)),
            _ => {}
        }
    }
    leadflow_providers::address(&creds, &ctx.pool, ch.id, &mut to).await?;
    let in_window = !leadflow_providers::has_24h_window(provider)
        || lead_channels::last_inbound(&ctx.pool, o.lead_id, ch.id)
            .await?
            .is_some_and(|t| chrono::Utc::now() < t + chrono::Duration::hours(24));
    let started = Instant::now();
    let (result, template) = if in_window {
        (send_text(&ctx.outbound(), &creds, &to, &o.content).await, None)
    } else {
        // Official WhatsApp refuses free-form text 24 h after the lead's last message.
        match send_template(&ctx.outbound(), &creds, &to).await {
            Ok(Some((name, sent))) => (Ok(sent), Some(name)),
            Ok(None) => (
                Err(SendError::Config(
                    "outside WhatsApp's 24-hour window, and the channel has no approved template configured \
                     (credentials.template_name for Meta Cloud, credentials.template_id for Gupshup)"
                        .into(),
                )),
                None,
            ),
            Err(e) => (Err(e), None),
        }
    };
    Ok(Outcome {
        result,
        template,
        ms: started.elapsed().as_millis().min(i32::MAX as u128) as i32,
    })
}
