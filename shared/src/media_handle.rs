//! Media a provider gives as a handle, not as a URL: a Telegram `file_id`, a Meta media
//! id, an Evolution message key, an e-mail attachment Leadflow stored itself. Resolving
//! one spends the channel's credentials (a bot token, a Graph access token, an API key),
//! so a handle is never taken from text a sender controls: only Leadflow's own parsers
//! make one (each provider's `Channel::media_handle` in `leadflow-providers`), it is stored in its own column (`messages.media_handle`), apart from the
//! user-visible `url`, and it carries no channel: the worker resolves it with the channel
//! of the message's own burst, within the message's tenant. A `url` is always an
//! ordinary `http`/`https` link that goes through the SSRF guard.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Provider;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaHandle {
    /// Bot API `getFile`, then `{base}/file/bot<token>/<file_path>`.
    TelegramFile { file_id: String },
    /// Graph `GET /{version}/{media_id}` for a short-lived URL, downloaded with the bearer token.
    MetaMedia { media_id: String },
    /// Evolution's `getBase64FromMediaMessage` for the message with this key id.
    EvolutionMessage { key_id: String },
    /// An attachment stored with its e-mail (`mail_attachments`).
    MailAttachment { id: Uuid },
}

impl MediaHandle {
    /// The only provider whose channel may resolve this handle.
    pub fn provider(&self) -> Provider {
        match self {
            Self::TelegramFile { .. } => Provider::TelegramBot,
            Self::MetaMedia { .. } => Provider::MetaCloud,
            Self::EvolutionMessage { .. } => Provider::Evolution,
            Self::MailAttachment { .. } => Provider::SmtpImap,
        }
    }
}

/// Whether `url` may be downloaded at all: an absolute `http`/`https` URL. Anything
/// else (another scheme, something that looks like an internal handle) is recorded
/// with [`NOT_ALLOWED`] and never fetched.
pub fn is_fetchable_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The note a medium gets when its link is not a downloadable `http`/`https` URL.
pub const NOT_ALLOWED: &str = "the media link is not allowed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_stored_tagged() {
        let h = MediaHandle::MetaMedia {
            media_id: "2129384756012345".into(),
        };
        assert_eq!(h.provider(), Provider::MetaCloud);
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            serde_json::json!({"kind": "meta_media", "media_id": "2129384756012345"})
        );
    }

    #[test]
    fn only_http_urls_are_fetchable() {
        assert!(is_fetchable_url("https://cdn.example.com/a.jpg"));
        assert!(is_fetchable_url("http://127.0.0.1:9/a.jpg"));
        for bad in [
            "meta-media:0b0c5a3f9b6c4d0e8f1a2b3c4d5e6f70:123",
            "telegram-file:0b0c5a3f9b6c4d0e8f1a2b3c4d5e6f70:AwAC",
            "evolution-media:0b0c5a3f9b6c4d0e8f1a2b3c4d5e6f70:3A8F",
            "leadflow-attachment:0b0c5a3f-9b6c-4d0e-8f1a-2b3c4d5e6f70",
            "file:///etc/passwd",
            "ftp://example.com/a",
            "/relative/path",
            "",
        ] {
            assert!(!is_fetchable_url(bad), "{bad}");
        }
    }
}
