//! Raising a tenant's notifications (`channel.disconnected`, `postback.exhausted`…): the
//! event is recorded and turned into one delivery per matching configuration, which the
//! postback queue delivers (signed webhook, e-mail or WhatsApp). Inside the quiet period
//! of an earlier one of the same event about the same subject it is held to the period's
//! end and then sent only if it is still the latest news and says something new (see
//! `notifications::may_send`). A delivery whose job is lost is
//! found by the sweeper, so raising never depends on Redis being up.

use leadflow_shared::db::notifications::{self, Event};
use leadflow_shared::db::{channels, leads};
use leadflow_shared::queue::DeliverPostback;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::Ctx;

/// Raises `event` about `subject` with `data`; errors are logged, never fatal to the
/// caller (a notification must not fail the work that raised it).
pub async fn raise(ctx: &Ctx, tenant_id: Uuid, event: Event, subject: &str, data: Value) {
    let payload = json!({
        "type": event.as_str(),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "tenant_id": tenant_id,
        "data": data,
    });
    let quiet = ctx.cfg.scheduler.notification_quiet_period;
    let raised = match notifications::raise(&ctx.pool, tenant_id, event, subject, &payload.to_string(), quiet).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%tenant_id, event = event.as_str(), subject, error = %e, "notification not recorded");
            return;
        }
    };
    let delay = raised
        .held_until
        .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
        .unwrap_or_default();
    tracing::info!(%tenant_id, event = event.as_str(), subject, deliveries = raised.deliveries.len(), held_for = ?delay, "notification raised");
    for delivery_id in raised.deliveries {
        let job = DeliverPostback::first(delivery_id);
        if let Err(e) = ctx.queues.enqueue(&job, delay).await {
            tracing::warn!(%delivery_id, error = %e, "notification delivery not enqueued; the sweeper will");
        }
    }
}

/// A message we sent did not reach the lead.
pub struct Failed<'a> {
    pub tenant_id: Uuid,
    pub lead_id: Uuid,
    pub channel_id: Uuid,
    /// The conversation message, when known (else the outbox row is the subject).
    pub message_id: Option<Uuid>,
    pub outbox_id: Uuid,
    pub error_code: Option<&'a str>,
    pub reason: &'a str,
    /// `provider` (a report after the send) or `send` (the send call itself failed).
    pub source: &'a str,
}

/// Raises `message.failed`, once per message: a reply sent in parts, or a failure the
/// provider reports twice, is one notification.
pub async fn message_failed(ctx: &Ctx, f: &Failed<'_>) {
    let subject = f.message_id.unwrap_or(f.outbox_id).to_string();
    let known = async {
        let said = notifications::was_raised(&ctx.pool, f.tenant_id, Event::MessageFailed, &subject).await?;
        let lead = leads::external_id(&ctx.pool, f.lead_id).await?;
        let channel = channels::find(&ctx.pool, f.tenant_id, f.channel_id).await?;
        Ok::<_, leadflow_shared::db::DbError>((said, lead, channel))
    };
    let (said, lead, channel) = match known.await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(outbox_id = %f.outbox_id, error = %e, "message.failed not raised");
            return;
        }
    };
    if said {
        return;
    }
    let data = json!({
        "lead_id": lead,
        "message_id": f.message_id,
        "outbox_id": f.outbox_id,
        "channel_id": f.channel_id,
        "channel_name": channel.as_ref().map(|c| c.name.as_str()),
        "provider": channel.as_ref().map(|c| c.provider.as_str()),
        "error_code": f.error_code,
        "reason": f.reason,
        "source": f.source,
    });
    raise(ctx, f.tenant_id, Event::MessageFailed, &subject, data).await;
}

/// The plain-text form of a notification, for e-mail and WhatsApp targets.
pub fn text(payload: &str) -> String {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let kind = v["type"].as_str().unwrap_or("notification");
    let d = &v["data"];
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    match Event::parse(kind) {
        Some(Event::ChannelDisconnected) => format!(
            "Leadflow: channel \"{}\" ({}) is disconnected. {}",
            s("channel_name"),
            s("provider"),
            s("reason")
        ),
        Some(Event::ChannelReconnected) => format!(
            "Leadflow: channel \"{}\" ({}) is connected again.",
            s("channel_name"),
            s("provider")
        ),
        Some(Event::PostbackExhausted) => format!(
            "Leadflow: a postback to {} failed after every attempt: {}",
            s("url"),
            s("last_error")
        ),
        Some(Event::AiFailed) => format!("Leadflow: no AI reply for lead {}: {}", s("lead_id"), s("error")),
        Some(Event::MessageFailed) => format!(
            "Leadflow: a message to lead {} through \"{}\" was not delivered: {}",
            s("lead_id"),
            s("channel_name"),
            s("reason")
        ),
        Some(Event::IntegrationNeedsReauth | Event::CalendarRenewalFailed) | None => {
            format!("Leadflow: {kind}: {d}")
        }
    }
    .trim()
    .to_string()
}
