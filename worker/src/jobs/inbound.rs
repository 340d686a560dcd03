//! The `inbound` queue: one stored webhook event (see `api/src/routes/webhooks.rs`)
//! becomes a lead's message in the same pipeline as `/ai/process` — debounce, media, AI —
//! with the channel's assistant, answered back through the channel.
//!
//! Who wrote it decides what it does: the lead (`user`); the business itself (`fromMe`):
//! Leadflow's own send echoing back (found in the outbox — ignored) or a human typing on
//! the phone or WhatsApp Web (`human` — pauses the AI for the lead and drops its pending
//! burst). Provider status reports (delivered, read, failed: Meta 131047, Gupshup 470…)
//! move the message we sent along (see `outbox::apply_report`); a failure raises the
//! tenant's `message.failed` notification.

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::channel::Provider;
use leadflow_shared::db::inbound::{EventStatus, Handled};
use leadflow_shared::db::leads::{self, Accepted, Incoming};
use leadflow_shared::db::{assistants, channels, identities, inbound, lead_channels, outbox, tenants};
use leadflow_shared::delivery::DeliveryState;
use leadflow_shared::domain::{MessageType, Role};
use leadflow_shared::inbound::{Content, EventKey, EventKind, Identity, MediaKind, StatusUpdate};
use leadflow_shared::media_handle::MediaHandle;
use leadflow_shared::queue::{delay_from_ms, FlushBurst, ProcessInbound, ProcessMedia};

use crate::Ctx;

/// `(kind, value)` identities of a payload, most stable first.
fn keys(id: &Identity) -> identities::Keys {
    let mut k = Vec::new();
    if let Some(p) = &id.phone {
        k.push(("phone", p.clone()));
    }
    if let Some(l) = &id.wa_lid {
        k.push(("wa_lid", l.clone()));
    }
    if let Some(t) = &id.telegram_chat {
        k.push(("telegram", t.clone()));
    }
    if let Some(e) = &id.email {
        k.push(("email", e.clone()));
    }
    if let Some(e) = &id.email_unverified {
        k.push(("email_unverified", e.clone()));
    }
    k
}

/// The `lead_id` a new lead gets (integrators see it in postbacks and the API).
fn new_external_id(id: &Identity) -> Option<String> {
    id.phone
        .clone()
        .or_else(|| id.wa_lid.clone())
        .or_else(|| id.telegram_chat.as_ref().map(|c| format!("tg:{c}")))
        .or_else(|| id.email.clone())
        .or_else(|| id.email_unverified.as_ref().map(|e| format!("unverified:{e}")))
}

fn media_type(kind: MediaKind) -> MessageType {
    match kind {
        MediaKind::Image => MessageType::Image,
        MediaKind::Audio => MessageType::Audio,
        MediaKind::Pdf => MessageType::Pdf,
    }
}

pub async fn handle(ctx: Arc<Ctx>, job: ProcessInbound) -> anyhow::Result<()> {
    let Some(ev) = inbound::get(&ctx.pool, job.event_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(ev.tenant_id);
    if ev.status != EventStatus::Pending {
        return Ok(());
    }
    if ev.tenant_disabled {
        inbound::finish(&ctx.pool, ev.id, Handled::Ignored(tenants::DISABLED)).await?;
        return Ok(());
    }
    if inbound::earlier_pending(&ctx.pool, &ev).await? {
        // Its earlier message is being processed right now: look again in a moment.
        let again = ProcessInbound {
            wait: job.wait + 1,
            ..job
        };
        let delay = Duration::from_millis(20u64 << job.wait.min(4));
        ctx.queues.enqueue(&again, delay).await?;
        return Ok(());
    }
    let Some(ch) = channels::find(&ctx.pool, ev.tenant_id, ev.channel_id).await? else {
        inbound::finish(&ctx.pool, ev.id, Handled::Ignored("the channel was deleted")).await?;
        return Ok(());
    };
    let Some(provider) = Provider::parse(&ch.provider) else {
        inbound::finish(&ctx.pool, ev.id, Handled::Failed("unknown provider")).await?;
        return Ok(());
    };
    let parsed = match leadflow_providers::parse(provider, &ev.payload) {
        Ok(p) => p,
        Err(e) => {
            inbound::finish(&ctx.pool, ev.id, Handled::Failed(&e.to_string())).await?;
            return Ok(());
        }
    };
    let item = ev.item as usize;
    let kind = EventKey::kind_of(&ev.dedupe_key);
    if kind == EventKind::Connection {
        // The provider's own connection callback (Z-API Connected/Disconnected, Evolution
        // connection.update): the same transition as the periodic check would record.
        if let Some(state) = parsed.connection {
            let seen = leadflow_shared::db::connections::Observation {
                status: state,
                source: "webhook",
                reason: None,
                at: ev.created_at,
            };
            crate::jobs::connections::apply(&ctx, ch.id, &ch.provider, seen).await?;
        }
        inbound::finish(&ctx.pool, ev.id, Handled::Processed).await?;
        return Ok(());
    }
    if kind == EventKind::Status {
        let Some(s) = parsed.statuses.get(item) else {
            inbound::finish(
                &ctx.pool,
                ev.id,
                Handled::Failed("the stored payload has no such status"),
            )
            .await?;
            return Ok(());
        };
        return status_report(&ctx, &job, &ev, ch.id, s).await;
    }
    let Some(m) = parsed.messages.get(item) else {
        inbound::finish(
            &ctx.pool,
            ev.id,
            Handled::Failed("the stored payload has no such message"),
        )
        .await?;
        return Ok(());
    };
    if ch.status != "active" {
        inbound::finish(&ctx.pool, ev.id, Handled::Ignored("the channel is inactive")).await?;
        return Ok(());
    }
    let ids = keys(&m.identity);
    let Some(fresh_id) = new_external_id(&m.identity) else {
        inbound::finish(&ctx.pool, ev.id, Handled::Ignored("no identity in the payload")).await?;
        return Ok(());
    };
    let existing = identities::find_lead(&ctx.pool, ch.tenant_id, &ids).await?;
    let limit = ctx.cfg.channels.mail_new_leads_per_hour;
    if provider == Provider::SmtpImap
        && existing.is_none()
        && limit > 0
        && lead_channels::new_in_last_hour(&ctx.pool, ch.id).await? >= i64::from(limit)
    {
        let why = format!("over LEADFLOW_MAIL_NEW_LEADS_PER_HOUR ({limit} new e-mail leads in the last hour)");
        inbound::finish(&ctx.pool, ev.id, Handled::Ignored(&why)).await?;
        return Ok(());
    }
    let external = existing.unwrap_or(fresh_id);

    let (message_type, url, handle, content): (MessageType, Option<&str>, Option<MediaHandle>, String) =
        match &m.content {
            Content::Text(t) => (MessageType::Text, None, None, t.clone()),
            Content::Media {
                kind,
                url: Some(url),
                caption,
                ..
            } => (media_type(*kind), Some(url.as_str()), None, caption.clone()),
            Content::Media {
                kind,
                caption,
                file_ref,
                ..
            } => match file_ref
                .as_deref()
                .and_then(|r| leadflow_providers::media_handle(provider, r))
            {
                // A provider handle (Telegram file_id, Meta media id, an e-mail attachment):
                // the media job resolves it with this channel's credentials.
                Some(handle) => (media_type(*kind), None, Some(handle), caption.clone()),
                None => {
                    let note = format!("[{kind:?} received without a downloadable link] {caption}");
                    (MessageType::Text, None, None, note.trim().to_string())
                }
            },
            Content::Unsupported { what } => {
                // Not answered, but what it tells about the lead is kept: a Telegram lead
                // sharing their own contact card links the chat to their WhatsApp lead.
                if let Some(lead) = leads::find_id(&ctx.pool, ch.tenant_id, &external).await? {
                    identities::attach(&ctx.pool, ch.tenant_id, lead, &ids).await?;
                }
                tracing::info!(channel_id = %ch.id, what = %what, "unsupported inbound message; recorded and skipped");
                inbound::finish(&ctx.pool, ev.id, Handled::Ignored(&format!("unsupported: {what}"))).await?;
                return Ok(());
            }
        };
    let role = if m.from_me {
        let lead = leads::find_id(&ctx.pool, ch.tenant_id, &external).await?;
        if outbox::is_own_echo(&ctx.pool, ch.id, &m.provider_message_id, lead, &content).await? {
            inbound::finish(&ctx.pool, ev.id, Handled::Ignored("echo of our own send")).await?;
            return Ok(());
        }
        Role::Human
    } else {
        Role::User
    };
    let chosen = lead_channels::assistant_for(&ctx.pool, ch.tenant_id, &external, ch.id)
        .await?
        .or(ch.assistant_id);
    let assistant = match chosen {
        Some(a) => assistants::get(&ctx.pool, a).await?,
        None => match assistants::find_default(&ctx.pool, ch.tenant_id).await? {
            Some(a) => a,
            None => {
                inbound::finish(&ctx.pool, ev.id, Handled::Failed("the tenant has no assistant")).await?;
                return Ok(());
            }
        },
    };
    let key = format!("{}:{}", ch.id, m.provider_message_id);
    let request_id = leadflow_shared::request_id::current();
    let incoming = Incoming {
        tenant_id: ch.tenant_id,
        lead_external_id: &external,
        role,
        content: &content,
        message_type,
        url,
        media_handle: handle.as_ref(),
        debounce: true,
        postback_url: None,
        idempotency_key: Some(&key),
        assistant: &assistant,
        channel_id: Some(ch.id),
        request_id: request_id.as_deref(),
    };
    let accepted = leads::accept(&ctx.pool, &incoming).await?;
    leadflow_shared::metrics::message_accepted(provider.as_str());
    let message_id = accepted.message_id();
    let lead_id: uuid::Uuid = sqlx::query_scalar(r#"SELECT lead_id FROM messages WHERE id = $1"#)
        .bind(message_id)
        .fetch_one(&ctx.pool)
        .await?;
    identities::attach(&ctx.pool, ch.tenant_id, lead_id, &ids).await?;
    if !matches!(accepted, Accepted::Duplicate { .. }) {
        lead_channels::touch(&ctx.pool, ch.tenant_id, lead_id, ch.id, role == Role::User).await?;
        if role == Role::Human {
            lead_channels::attend(&ctx.pool, lead_id, ch.id, None).await?;
        }
    }
    if let Accepted::Queued {
        burst_id,
        new_burst,
        due_in_ms,
        ..
    } = accepted
    {
        if message_type != MessageType::Text {
            let media = ProcessMedia::first(message_id);
            ctx.queues.enqueue_for(ch.tenant_id, &media, Duration::ZERO).await?;
        }
        if new_burst {
            let delay = delay_from_ms(due_in_ms);
            let flush = FlushBurst {
                burst_id,
                at_ms: chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64,
            };
            ctx.queues.enqueue_for(ch.tenant_id, &flush, delay).await?;
        }
    }
    inbound::finish(&ctx.pool, ev.id, Handled::Processed).await?;
    Ok(())
}

/// How long a report may wait for the message it is about: a provider can report on a
/// message before our send call has its answer (and so the id) recorded.
const UNMATCHED_WAIT: Duration = Duration::from_secs(60);

async fn status_report(
    ctx: &Ctx,
    job: &ProcessInbound,
    ev: &inbound::Event,
    channel_id: uuid::Uuid,
    s: &StatusUpdate,
) -> anyhow::Result<()> {
    let mut ids = vec![s.provider_message_id.as_str()];
    ids.extend(s.also_id.as_deref());
    let report = outbox::Report {
        ids: &ids,
        status: s.status,
        error_code: s.error_code.as_deref(),
        error: s.error.as_deref(),
    };
    let Some(applied) = outbox::apply_report(&ctx.pool, channel_id, &report).await? else {
        let age = (chrono::Utc::now() - ev.created_at).to_std().unwrap_or_default();
        if age < UNMATCHED_WAIT {
            let again = ProcessInbound {
                wait: job.wait + 1,
                ..*job
            };
            ctx.queues
                .enqueue(&again, Duration::from_millis(500u64 << job.wait.min(5)))
                .await?;
            return Ok(());
        }
        // Kept, visibly: a report about a message this channel never sent (or whose id we
        // did not get back) is something an operator may want to look at.
        let why = format!(
            "status report {} matches no message sent through this channel (provider id {})",
            s.status.as_str(),
            ids.join(" or ")
        );
        inbound::finish(&ctx.pool, ev.id, Handled::Ignored(&why)).await?;
        return Ok(());
    };
    if let (Some(DeliveryState::Failed), Some(reason)) = (applied.after, &applied.reason) {
        let failed = crate::notify::Failed {
            tenant_id: applied.tenant_id,
            lead_id: applied.lead_id,
            channel_id,
            message_id: applied.message_id,
            outbox_id: applied.outbox_id,
            error_code: s.error_code.as_deref(),
            reason,
            source: "provider",
        };
        crate::notify::message_failed(ctx, &failed).await;
    }
    inbound::finish(&ctx.pool, ev.id, Handled::Processed).await?;
    Ok(())
}
