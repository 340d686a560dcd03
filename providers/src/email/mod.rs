//! E-mail (SMTP out, IMAP in): credentials `smtp_host`, `username`, `password`, `from`
//! and the optional SMTP and IMAP settings. Mail does not arrive by webhook: the worker
//! polls the mailbox (`leadflow_worker::imap`) and stores each message as a
//! [`StoredMail`](leadflow_shared::inbound::email::StoredMail) event, which [`parse`]
//! reads (a stored mail posted to the webhook URL is verified by the channel's secret in
//! the URL, like any other). Replies thread over SMTP; attachments are stored with their
//! message and read from PostgreSQL within the channel's tenant.

pub mod parse;
mod send;

use leadflow_shared::channel::Provider;
use leadflow_shared::db::mailboxes;
use leadflow_shared::inbound::{ParseError, Parsed};
use leadflow_shared::media_handle::{MediaHandle, NOT_ALLOWED};
use serde_json::Value;

pub use parse::{parse_stored, sender_authenticated, strip_quoted};
pub use send::smtp_server;

use crate::{Channel, DownloadError, Downloaded, MediaFetch, Outbound, Recipient, SendError, Sent};

crate::credentials! {
    /// E-mail: SMTP out (and IMAP in, when `imap_host` is given; its login defaults to
    /// SMTP's).
    SmtpImap {
        required: [smtp_host, username, password, from],
        optional: [
            smtp_port,
            smtp_security,
            subject,
            imap_host,
            imap_port,
            imap_security,
            imap_mailbox,
            imap_username,
            imap_password,
            imap_authserv_id,
        ],
    }
}

impl Channel for SmtpImap {
    const PROVIDER: Provider = Provider::SmtpImap;

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse_stored(payload)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    /// The SMTP server is checked like a URL: its host must resolve to an allowed address.
    async fn refused(&self, ssrf: &leadflow_shared::ssrf::Policy) -> Option<String> {
        let (host, port) = match smtp_server(self) {
            Ok(server) => server,
            Err(e) => return Some(e.to_string()),
        };
        match ssrf.resolve_host(&host, port).await {
            Ok(_) => None,
            Err(e) => Some(format!("credentials.smtp_host refused: {e}")),
        }
    }

    /// A reply answers the lead's last e-mail on the channel.
    async fn address(
        &self,
        pool: &sqlx::PgPool,
        channel_id: uuid::Uuid,
        to: &mut Recipient,
    ) -> Result<(), leadflow_shared::db::DbError> {
        if let Some(address) = &to.email {
            to.thread = mailboxes::last_thread(pool, channel_id, address).await?;
        }
        Ok(())
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.ssrf, self, to, text).await
    }

    /// An attachment is referenced by the id it was stored under.
    fn media_handle(file_ref: &str) -> Option<MediaHandle> {
        Some(MediaHandle::MailAttachment {
            id: file_ref.parse().ok()?,
        })
    }

    async fn fetch_media(
        &self,
        media: &MediaFetch<'_>,
        handle: &MediaHandle,
        limit: u64,
    ) -> Result<Downloaded, DownloadError> {
        let MediaHandle::MailAttachment { id } = handle else {
            return Err(DownloadError::Refused(NOT_ALLOWED.into()));
        };
        let file = mailboxes::attachment(media.pool, media.tenant_id, media.channel_id, *id, limit)
            .await
            .map_err(|e| DownloadError::Network(format!("database: {e}")))?
            .ok_or(DownloadError::Status { status: 404 })?;
        let bytes = file.data.ok_or(DownloadError::TooLarge { limit })?;
        Ok(Downloaded {
            bytes,
            content_type: file.mime,
            file_name: file.file_name,
        })
    }
}
