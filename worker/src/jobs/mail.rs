//! The `mail` queue: one poll of an e-mail channel's IMAP mailbox. New messages become
//! inbound events exactly like a provider's webhook (one per `Message-ID`, so a re-fetch
//! is a duplicate), attachments are stored for the media pipeline, and the watermark moves
//! past each message once it is stored. The sweeper enqueues a poll per channel and poll
//! interval (`LEADFLOW_MAIL_POLL_INTERVAL`).
//!
//! Never answered: auto-replies and bounces (two autoresponders would write to each other
//! forever), mail from the channel's own address, and, on a channel's first poll, mail
//! dated before the channel existed (connecting an old mailbox must not answer its past).

use std::sync::Arc;
use std::time::Duration;

use leadflow_providers::email::parse_stored;
use leadflow_shared::db::inbound::WebhookChannel;
use leadflow_shared::db::{channels, inbound, mailboxes};
use leadflow_shared::inbound::email::{StoredAttachment, StoredMail};
use leadflow_shared::inbound::{kind_of_mime, EventKey, MediaKind};
use leadflow_shared::queue::{PollMailbox, ProcessInbound};

use crate::imap::{Attachment, FetchedMail, Server};
use crate::Ctx;

pub async fn handle(ctx: Arc<Ctx>, job: PollMailbox) -> anyhow::Result<()> {
    let Some(ch) = inbound::channel(&ctx.pool, job.channel_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(ch.tenant_id);
    if ch.status != "active" || ch.provider != "smtp-imap" || ch.tenant_disabled {
        return Ok(());
    }
    let stored = channels::credentials(&ctx.pool, &ctx.master_key, ch.id).await?;
    let creds = match leadflow_providers::email::SmtpImap::from_map(&stored) {
        Ok(c) => c,
        Err(e) => return failed(&ctx, &ch, &e.to_string()).await,
    };
    let server = match Server::from_credentials(&creds) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(()), // send-only
        Err(e) => return failed(&ctx, &ch, &e.to_string()).await,
    };
    // Resolved once, through the guard: the connection goes to this address.
    let addr = match ctx.ssrf.resolve_host(&server.host, server.port).await {
        Ok(addr) => addr,
        Err(e) => return failed(&ctx, &ch, &format!("credentials.imap_host refused: {e}")).await,
    };
    let after = mailboxes::watermark(&ctx.pool, ch.id).await?;
    let caps = &ctx.cfg.media;
    // The largest thing a mail may usefully carry, plus room for its text and headers.
    let max_bytes = caps.max_audio_bytes.max(caps.max_pdf_bytes).max(caps.max_image_bytes) + 1_000_000;
    let fetched = match server.fetch_new(addr, after, max_bytes).await {
        Ok(f) => f,
        Err(e) => return failed(&ctx, &ch, &e.to_string()).await,
    };
    let own = Some(address_of(&creds.from));
    // First poll: only what arrived after the channel was created (5 min of clock slack).
    let since_ms = match after {
        Some(_) => None,
        None => Some(created_ms(&ctx, &ch).await? - 300_000),
    };
    let count = fetched.messages.len();
    for fetched_mail in fetched.messages {
        let uid = fetched_mail.uid();
        let raw = match fetched_mail {
            FetchedMail::Mail(_, raw) => raw,
            FetchedMail::TooLarge(_, size) => {
                too_large(&ctx, &ch, fetched.uid_validity, uid, size, max_bytes).await?;
                mailboxes::advance(&ctx.pool, ch.id, fetched.uid_validity, uid).await?;
                continue;
            }
        };
        match crate::imap::parse(&raw, creds.imap_authserv_id.as_deref()) {
            Some((mail, _)) if own.as_deref() == Some(mail.from.as_str()) => {
                tracing::debug!(channel_id = %ch.id, uid, "our own e-mail; skipped")
            }
            Some((mail, _)) if since_ms.is_some_and(|s| mail.date_ms.is_some_and(|d| d < s)) => {
                tracing::info!(channel_id = %ch.id, uid, "e-mail older than the channel; skipped")
            }
            Some((mail, attachments)) => store(&ctx, &ch, mail, attachments).await?,
            None => tracing::warn!(channel_id = %ch.id, uid, "not a parsable e-mail with a sender; skipped"),
        }
        mailboxes::advance(&ctx.pool, ch.id, fetched.uid_validity, uid).await?;
    }
    if count == 0 {
        mailboxes::advance(&ctx.pool, ch.id, fetched.uid_validity, fetched.newest).await?;
    }
    if fetched.more {
        // More waiting: the next batch now, not at the next interval.
        let next = PollMailbox {
            channel_id: ch.id,
            slot: job.slot * 1000 + 1,
        };
        ctx.queues.enqueue(&next, Duration::ZERO).await?;
    }
    Ok(())
}

/// Keeps a note of a message too large to download, as an ignored event of the channel.
async fn too_large(ctx: &Ctx, ch: &WebhookChannel, validity: i64, uid: i64, size: u64, max: u64) -> anyhow::Result<()> {
    tracing::warn!(channel_id = %ch.id, uid, size, max, "e-mail over the size limit; not downloaded");
    let note = format!("e-mail of {size} bytes is over the {max}-byte limit; not downloaded");
    let event = inbound::NewEvent {
        dedupe_key: EventKey::MailTooLarge {
            uid_validity: validity,
            uid,
        }
        .encode(),
        item: 0,
        sender: None,
    };
    let payload = serde_json::json!({"imap_uid": uid, "uid_validity": validity, "size": size});
    inbound::insert_all(&ctx.pool, ch, &[event], &payload, Some(&note)).await?;
    Ok(())
}

async fn failed(ctx: &Ctx, ch: &WebhookChannel, why: &str) -> anyhow::Result<()> {
    // The next interval tries again; the error is kept where operators can see it.
    tracing::warn!(channel_id = %ch.id, error = why, "mailbox poll failed");
    mailboxes::record_error(&ctx.pool, ch.id, why).await?;
    Ok(())
}

async fn created_ms(ctx: &Ctx, ch: &WebhookChannel) -> anyhow::Result<i64> {
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(r#"SELECT created_at FROM channels WHERE id = $1"#)
        .bind(ch.id)
        .fetch_one(&ctx.pool)
        .await?;
    Ok(at.timestamp_millis())
}

/// `vendas@imob.example` out of `Imobiliária <Vendas@imob.example>`.
fn address_of(mailbox: &str) -> String {
    let inner = match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(a), Some(b)) if a < b => &mailbox[a + 1..b],
        _ => mailbox,
    };
    inner.trim().to_ascii_lowercase()
}

/// Stores the attachments the media pipeline may read (within its size caps), then one
/// inbound event per message the e-mail becomes.
async fn store(
    ctx: &Ctx,
    ch: &WebhookChannel,
    mut mail: StoredMail,
    attachments: Vec<Attachment>,
) -> anyhow::Result<()> {
    if !mail.automatic {
        let caps = &ctx.cfg.media;
        for mut a in attachments {
            // An e-mail cannot be refused usefully: NULs go, the mail stays.
            for field in [&mut a.file_name, &mut a.mime].into_iter().flatten() {
                leadflow_shared::text::strip_nul_str(field);
            }
            // What is neither image nor audio can only be read as a PDF.
            let kind = a.mime.as_deref().and_then(kind_of_mime).unwrap_or(MediaKind::Pdf);
            let cap = caps.max_bytes(kind);
            if a.data.len() as u64 > cap {
                tracing::info!(channel_id = %ch.id, file = ?a.file_name, size = a.data.len(), "attachment over its cap; not kept");
                continue;
            }
            let id = mailboxes::store_attachment(
                &ctx.pool,
                ch.tenant_id,
                ch.id,
                a.file_name.as_deref(),
                a.mime.as_deref(),
                &a.data,
            )
            .await?;
            mail.attachments.push(StoredAttachment {
                id,
                file_name: a.file_name,
                mime: a.mime,
            });
        }
    }
    let mut payload = serde_json::to_value(&mail)?;
    leadflow_shared::text::strip_nul(&mut payload);
    let parsed = parse_stored(&payload)?;
    if parsed.messages.is_empty() {
        tracing::info!(channel_id = %ch.id, ignored = ?parsed.ignored, "e-mail not answered");
        return Ok(());
    }
    for (i, m) in parsed.messages.iter().enumerate() {
        let key = EventKey::Message {
            provider_message_id: m.provider_message_id.clone(),
        }
        .encode();
        let sender = mail.from.replace('\0', "");
        if let Some(event_id) = inbound::insert(&ctx.pool, ch, &key, i as i32, Some(&sender), &payload).await? {
            // Stored is what matters: the sweeper enqueues events whose job was lost.
            if let Err(e) = ctx
                .queues
                .enqueue(&ProcessInbound { event_id, wait: 0 }, Duration::ZERO)
                .await
            {
                tracing::error!(%event_id, error = %e, "inbound job not enqueued; the sweeper will pick it up");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_out_of_mailboxes() {
        assert_eq!(
            super::address_of("Imobiliária <Vendas@Imob.example>"),
            "vendas@imob.example"
        );
        assert_eq!(super::address_of(" vendas@imob.example "), "vendas@imob.example");
    }
}
