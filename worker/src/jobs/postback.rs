//! Postback and notification delivery: one attempt per job. A postback or a webhook
//! notification is an HTTP POST signed with Standard Webhooks headers
//! (`webhook-id` stable across attempts, a fresh `webhook-timestamp` each time). Success
//! is a 2xx within the timeout; redirects are not followed; `410 Gone` stops; otherwise
//! the next attempt is a new delayed job per `LEADFLOW_POSTBACK_RETRY_SCHEDULE` (±20 %
//! jitter, at least the receiver's `Retry-After`, clamped). Every attempt is a row. An
//! e-mail or WhatsApp notification goes out as text through the tenant's channel, on the
//! same schedule. A postback that fails for good raises `postback.exhausted`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_providers::Credentials;
use leadflow_shared::channel::Provider;
use leadflow_shared::db::deliveries::{self, AttemptRecord, DeliveryStatus, Outcome};
use leadflow_shared::db::{channels, notifications, tenants};
use leadflow_shared::queue::DeliverPostback;
use leadflow_shared::signing;
use rand::Rng;

use crate::Ctx;
use leadflow_providers::{send_text, Recipient};
use AttemptError::{Refused, Transient};

/// How much of the receiver's response body an attempt row keeps.
const BODY_KEEP: usize = 20 * 1024;
/// Upper bound on a receiver's `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

pub async fn handle(ctx: Arc<Ctx>, job: DeliverPostback) -> anyhow::Result<()> {
    let Some(d) = deliveries::get(&ctx.pool, job.delivery_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(d.tenant_id);
    if d.status != DeliveryStatus::Pending {
        return Ok(());
    }
    if d.attempts >= job.attempt {
        // This attempt was already made (a re-run after a crash between recording it and
        // scheduling the next): just make sure the next one is scheduled.
        if let Some(at) = d.next_attempt_at {
            let delay = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            let next = DeliverPostback {
                attempt: d.attempts + 1,
                ..job
            };
            ctx.queues.enqueue(&next, delay).await?;
        }
        return Ok(());
    }

    if tenants::is_disabled(&ctx.pool, d.tenant_id).await? {
        deliveries::cancel(&ctx.pool, d.id, tenants::DISABLED).await?;
        tracing::info!(delivery = %d.id, "delivery dropped: the tenant is disabled");
        return Ok(());
    }
    if let Some(notification) = d.notification_id {
        if !notifications::may_send(&ctx.pool, notification).await? {
            let why = "not sent: a newer notification about the same subject, or nothing new since the last one";
            deliveries::cancel(&ctx.pool, d.id, why).await?;
            tracing::info!(delivery = %d.id, %notification, "held notification dropped");
            return Ok(());
        }
    }
    let started = Instant::now();
    let sent = send(&ctx, &d).await;
    let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let (status_code, error, body, retry_after, gone) = match &sent {
        Ok(r) => (
            Some(r.status as i32),
            (!(200..300).contains(&r.status)).then(|| format!("receiver answered {}", r.status)),
            Some(r.body.as_str()),
            r.retry_after,
            r.status == 410,
        ),
        Err(e) => (None, Some(e.to_string()), None, None, false),
    };
    let refused = matches!(&sent, Err(Refused(_)));
    let outcome = if error.is_none() {
        Outcome::Delivered
    } else if gone || refused || job.manual {
        Outcome::Failed
    } else {
        match ctx.cfg.postback_retry_schedule.get((job.attempt - 1) as usize) {
            Some(base) => Outcome::RetryInMs(next_delay(*base, retry_after).as_millis() as i64),
            None => Outcome::Failed,
        }
    };
    let rec = AttemptRecord {
        attempt: job.attempt,
        status_code,
        duration_ms,
        error: error.as_deref(),
        response_body: body,
    };
    if !deliveries::record_attempt(&ctx.pool, d.id, &rec, &outcome).await? {
        tracing::warn!(delivery = %d.id, attempt = job.attempt, "another run already moved this delivery on");
        return Ok(());
    }
    let took = Duration::from_millis(duration_ms.max(0) as u64);
    leadflow_shared::metrics::postback(
        match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "exhausted",
            Outcome::RetryInMs(_) => "retried",
        },
        took,
    );
    match outcome {
        Outcome::Delivered => tracing::info!(delivery = %d.id, attempt = job.attempt, "postback delivered"),
        Outcome::Failed => {
            tracing::warn!(delivery = %d.id, attempt = job.attempt, error = ?error, "postback failed for good");
            if d.target == "postback" && !job.manual {
                let data = serde_json::json!({
                    "delivery_id": d.id, "burst_id": d.burst_id, "url": d.url,
                    "attempts": job.attempt, "last_error": error,
                });
                crate::notify::raise(
                    &ctx,
                    d.tenant_id,
                    leadflow_shared::db::notifications::Event::PostbackExhausted,
                    &d.id.to_string(),
                    data,
                )
                .await;
            }
        }
        Outcome::RetryInMs(ms) => {
            tracing::info!(delivery = %d.id, attempt = job.attempt, retry_in_ms = ms, error = ?error, "postback will retry");
            let next = DeliverPostback {
                attempt: job.attempt + 1,
                ..DeliverPostback::first(d.id)
            };
            ctx.queues.enqueue(&next, Duration::from_millis(ms as u64)).await?;
        }
    }
    Ok(())
}

/// What a postback tells the integrator about one burst: the lead, the messages answered
/// and the reply (or why there is none). The body of a postback, signed as it is.
#[derive(Debug, serde::Serialize)]
pub struct Payload<'a> {
    pub lead_id: &'a str,
    pub tenant_id: uuid::Uuid,
    /// RFC 3339, milliseconds, UTC.
    pub timestamp: String,
    pub messages_processed: usize,
    pub message_ids: &'a [uuid::Uuid],
    pub success: bool,
    /// The reply; null when there is none.
    pub response: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PayloadError>,
}

/// Why a burst got no reply (the AI error's code and message).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PayloadError {
    pub code: String,
    pub message: String,
}

impl Payload<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

struct Sent {
    status: u16,
    body: String,
    retry_after: Option<Duration>,
}

/// Why an attempt got no answer worth reading. Its text is what the attempt row keeps.
#[derive(Debug, Clone, thiserror::Error)]
enum AttemptError {
    /// Worth another try: the network, a timeout, an unavailable database or provider.
    #[error("{0}")]
    Transient(String),
    /// Never worth another try: a URL the SSRF guard refuses, a deleted channel.
    #[error("refused: {0}")]
    Refused(String),
}

fn transient(e: impl std::fmt::Display) -> AttemptError {
    Transient(e.to_string())
}

/// One attempt.
async fn send(ctx: &Ctx, d: &deliveries::Delivery) -> Result<Sent, AttemptError> {
    if matches!(d.target.as_str(), "email" | "whatsapp") {
        return send_through_channel(ctx, d).await;
    }
    let url = d
        .url
        .as_deref()
        .ok_or_else(|| Refused("the delivery has no URL".into()))?;
    let url = ctx.ssrf.check_url(url).await.map_err(|e| Refused(e.to_string()))?;
    let secret = tenants::postback_secret(&ctx.pool, &ctx.master_key, d.tenant_id)
        .await
        .map_err(|e| Transient(format!("signing secret unavailable: {e}")))?;
    let ts = chrono::Utc::now().timestamp();
    let mut req = ctx
        .guarded
        .post(url)
        .header("content-type", "application/json")
        .body(d.payload.clone());
    for (name, value) in signing::headers(&secret, &d.webhook_id, ts, d.payload.as_bytes()) {
        req = req.header(name, value);
    }
    let resp = req.send().await.map_err(|e| Transient(describe(&e)))?;
    let status = resp.status().as_u16();
    let retry_after = leadflow_shared::retry_after::from_headers(resp.headers());
    let body = read_capped(resp).await;
    Ok(Sent {
        status,
        body,
        retry_after,
    })
}

/// A notification as text through one of the tenant's channels.
async fn send_through_channel(ctx: &Ctx, d: &deliveries::Delivery) -> Result<Sent, AttemptError> {
    let (Some(channel_id), Some(to)) = (d.channel_id, d.recipient.clone()) else {
        return Err(Refused("the delivery has no channel or recipient".into()));
    };
    let ch = channels::find(&ctx.pool, d.tenant_id, channel_id)
        .await
        .map_err(transient)?
        .ok_or_else(|| Refused("the channel was deleted".into()))?;
    let provider = Provider::parse(&ch.provider).ok_or_else(|| Refused("unknown provider".into()))?;
    let stored = channels::credentials(&ctx.pool, &ctx.master_key, ch.id)
        .await
        .map_err(transient)?;
    let creds = Credentials::parse(provider, &stored).map_err(|e| Refused(e.to_string()))?;
    if let Some(why) = crate::jobs::send::refused_address(ctx, &creds).await {
        return Err(Refused(why));
    }
    let recipient = if d.target == "email" {
        Recipient {
            email: Some(to),
            ..Recipient::default()
        }
    } else {
        Recipient {
            phone: Some(to),
            ..Recipient::default()
        }
    };
    match send_text(&ctx.outbound(), &creds, &recipient, &crate::notify::text(&d.payload)).await {
        Ok(sent) => Ok(Sent {
            status: sent.status,
            body: sent.provider_message_id.unwrap_or_default(),
            retry_after: None,
        }),
        Err(e) if e.retryable() => Err(transient(e)),
        Err(e) => Err(Refused(e.to_string())),
    }
}

async fn read_capped(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = BODY_KEEP - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= BODY_KEEP {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The scheduled delay ±20 %, but never shorter than the receiver's `Retry-After`.
fn next_delay(base: Duration, retry_after: Option<Duration>) -> Duration {
    let factor = rand::thread_rng().gen_range(0.8..=1.2);
    let jittered = base.mul_f64(factor);
    match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..100 {
            let d = next_delay(Duration::from_secs(100), None);
            assert!(d >= Duration::from_secs(80) && d <= Duration::from_secs(120), "{d:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let d = next_delay(Duration::from_secs(5), Some(Duration::from_secs(60)));
        assert_eq!(d, Duration::from_secs(60));
        let d = next_delay(Duration::from_secs(5), Some(Duration::from_secs(10_000_000)));
        assert_eq!(d, MAX_RETRY_AFTER);
    }
}
