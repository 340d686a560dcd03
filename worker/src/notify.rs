//! Raising a tenant's notifications (`channel.disconnected`, `postback.exhausted`…): the
//! event is recorded and turned into one delivery per matching configuration, which the
//! postback queue delivers (signed webhook, e-mail or WhatsApp). Inside the quiet period
//! of an earlier one of the same event about the same subject it is held to the period's
//! end and then sent only if it is still the latest news and says something new (see
//! `notifications::may_send`). A delivery whose job is lost is
//! found by the sweeper, so raising never depends on Redis being up.

use leadflow_shared::db::notifications;
use leadflow_shared::queue::DeliverPostback;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::Ctx;

/// Raises `event` about `subject` with `data`; errors are logged, never fatal to the
/// caller (a notification must not fail the work that raised it).
pub async fn raise(ctx: &Ctx, tenant_id: Uuid, event: &str, subject: &str, data: Value) {
    let payload = json!({
        "type": event,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "tenant_id": tenant_id,
        "data": data,
    });
    let quiet = ctx.cfg.scheduler.notification_quiet_period;
    let raised = match notifications::raise(&ctx.pool, tenant_id, event, subject, &payload.to_string(), quiet).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%tenant_id, event, subject, error = %e, "notification not recorded");
            return;
        }
    };
    let delay = raised
        .held_until
        .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
        .unwrap_or_default();
    tracing::info!(%tenant_id, event, subject, deliveries = raised.deliveries.len(), held_for = ?delay, "notification raised");
    for delivery_id in raised.deliveries {
        let job = DeliverPostback {
            delivery_id,
            attempt: 1,
            manual: false,
            sweep: None,
        };
        if let Err(e) = ctx.queues.enqueue(&job, delay).await {
            tracing::warn!(%delivery_id, error = %e, "notification delivery not enqueued; the sweeper will");
        }
    }
}

/// The plain-text form of a notification, for e-mail and WhatsApp targets.
pub fn text(payload: &str) -> String {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let event = v["type"].as_str().unwrap_or("notification");
    let d = &v["data"];
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    match event {
        "channel.disconnected" => format!(
            "Leadflow: channel \"{}\" ({}) is disconnected. {}",
            s("channel_name"),
            s("provider"),
            s("reason")
        ),
        "channel.reconnected" => format!(
            "Leadflow: channel \"{}\" ({}) is connected again.",
            s("channel_name"),
            s("provider")
        ),
        "postback.exhausted" => format!(
            "Leadflow: a postback to {} failed after every attempt: {}",
            s("url"),
            s("last_error")
        ),
        "ai.failed" => format!("Leadflow: no AI reply for lead {}: {}", s("lead_id"), s("error")),
        _ => format!("Leadflow: {event}: {d}"),
    }
    .trim()
    .to_string()
}
