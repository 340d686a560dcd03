//! Meta WhatsApp Cloud API (official): credentials `access_token`, `phone_number_id`,
//! `app_secret` and `verify_token`. Webhooks are signed (`X-Hub-Signature-256`, HMAC-SHA256
//! of the raw body with the app secret) and subscribed with a `hub.challenge` handshake
//! answered with the verify token; one app secret may serve several numbers, so a batch
//! keeps only the changes for the channel's number. Free-form text only within 24 h of
//! the lead's last message, a template (`template_name`) outside it. Media arrive as ids
//! resolved through Graph `GET /{version}/{media_id}` and downloaded with the same token.

pub mod parse;
mod send;

use leadflow_shared::channel::{secrets_match, Provider};
use leadflow_shared::inbound::{ParseError, Parsed};
use leadflow_shared::media_handle::{MediaHandle, NOT_ALLOWED};
use serde_json::Value;

use crate::{
    download, Channel, DownloadError, Downloaded, MediaFetch, Outbound, Recipient, SendError, Sent, WebhookCall,
};

pub use parse::retain_changes_for;

/// Meta's `X-Hub-Signature-256` value: `sha256=<hex HMAC-SHA256 of the raw body with the app secret>`.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is Meta's signature of `body` (the hex digits in either case).
pub fn signature_ok(app_secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let expected = signature(app_secret, body);
    secrets_match(&given.to_ascii_lowercase(), &expected["sha256=".len()..])
}

crate::credentials! {
    /// Meta Cloud API: a system user's token, the number's id, the app secret (webhook
    /// signatures) and the verify token (the webhook's subscription handshake).
    MetaCloud {
        required: [access_token, phone_number_id, app_secret, verify_token],
        optional: [base_url, api_version, template_name, template_language],
    }
}

impl Channel for MetaCloud {
    const PROVIDER: Provider = Provider::MetaCloud;
    const HAS_24H_WINDOW: bool = true;
    const SIGNED: bool = true;

    fn verify(creds: Option<&Self>, call: &WebhookCall<'_>) -> bool {
        creds.is_some_and(|c| signature_ok(&c.app_secret, call.body, call.header("x-hub-signature-256")))
    }

    fn subscribe(&self, mode: Option<&str>, verify_token: Option<&str>, challenge: Option<&str>) -> Option<String> {
        match (mode, verify_token, challenge) {
            (Some("subscribe"), Some(given), Some(challenge)) if secrets_match(given, &self.verify_token) => {
                Some(challenge.to_string())
            }
            _ => None,
        }
    }

    fn bind(&self, payload: &mut Value) -> bool {
        let dropped = retain_changes_for(payload, &self.phone_number_id);
        if dropped > 0 {
            tracing::warn!(dropped, "Meta changes for another number ignored");
        }
        true
    }

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse::parse(payload)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        crate::base_url(&self.base_url)
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.http, self, to, text).await
    }

    async fn send_template(&self, out: &Outbound<'_>, to: &Recipient) -> Result<Option<(String, Sent)>, SendError> {
        match &self.template_name {
            Some(name) => Ok(Some((
                name.clone(),
                send::send_template(out.http, self, to, name).await?,
            ))),
            None => Ok(None),
        }
    }

    fn media_handle(file_ref: &str) -> Option<MediaHandle> {
        Some(MediaHandle::MetaMedia {
            media_id: file_ref.to_owned(),
        })
    }

    async fn fetch_media(
        &self,
        media: &MediaFetch<'_>,
        handle: &MediaHandle,
        limit: u64,
    ) -> Result<Downloaded, DownloadError> {
        let MediaHandle::MetaMedia { media_id } = handle else {
            return Err(DownloadError::Refused(NOT_ALLOWED.into()));
        };
        let base = self.base_url.as_deref().unwrap_or("https://graph.facebook.com");
        let version = self.api_version.as_deref().unwrap_or("v23.0");
        let token = self.access_token.as_str();
        let req = media
            .api
            .get(format!("{}/{version}/{media_id}", base.trim_end_matches('/')))
            .bearer_auth(token);
        let answer = crate::media_api(media, req, crate::API_ANSWER_CAP).await?;
        if answer["file_size"].as_u64().is_some_and(|n| n > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let media_url = answer["url"]
            .as_str()
            .ok_or_else(|| DownloadError::Refused("Meta gave no media url".into()))?;
        let mut file = download::fetch_with(media.files, media.ssrf, media_url, limit, Some(token)).await?;
        file.content_type = file
            .content_type
            .or_else(|| answer["mime_type"].as_str().map(str::to_string));
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let sig = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"app-secret").unwrap();
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        assert!(signature_ok("app-secret", body, Some(&sig)));
        assert!(!signature_ok("other", body, Some(&sig)));
        assert!(!signature_ok("app-secret", b"{}", Some(&sig)));
        assert!(!signature_ok("app-secret", body, None));
    }
}
