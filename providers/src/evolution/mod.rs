//! Evolution API (self-hosted Baileys, unofficial WhatsApp): credentials `base_url`,
//! `api_key` and `instance`. Webhooks carry the channel's secret in the URL; sends are
//! `message/sendText`; the session's state is `GET /instance/connectionState/{instance}`
//! (`open`, `connecting`, `close`); media URLs point at WhatsApp's encrypted CDN, so a
//! medium is fetched by its message key through `getBase64FromMediaMessage`.

pub mod parse;
mod send;

use leadflow_shared::channel::Provider;
use leadflow_shared::inbound::{ParseError, Parsed};
use leadflow_shared::media_handle::{MediaHandle, NOT_ALLOWED};
use serde_json::Value;

use crate::http::get_json;
use crate::{Channel, DownloadError, Downloaded, MediaFetch, Observed, Outbound, Recipient, SendError, Sent};

crate::credentials! {
    /// Evolution API: the server, its API key and the instance's name.
    Evolution {
        required: [base_url, api_key, instance],
        optional: [],
    }
}

impl Channel for Evolution {
    const PROVIDER: Provider = Provider::Evolution;
    const CHECKED: bool = true;

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse::parse(payload)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        vec![("base_url", self.base_url.as_str())]
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.http, self, to, text).await
    }

    async fn check(&self, http: &reqwest::Client) -> Result<Observed, SendError> {
        let url = format!(
            "{}/instance/connectionState/{}",
            self.base_url.trim_end_matches('/'),
            self.instance
        );
        let (status, body) = get_json(http.get(url).header("apikey", &self.api_key)).await?;
        if status == 404 {
            return Ok(Observed::Disconnected("Evolution: the instance does not exist".into()));
        }
        if status != 200 {
            return Err(SendError::Http {
                status,
                body: body.to_string(),
                retry_after: None,
            });
        }
        match body.pointer("/instance/state").and_then(|s| s.as_str()) {
            Some("open") => Ok(Observed::Connected),
            Some(s @ ("close" | "refused")) => Ok(Observed::Disconnected(format!("Evolution: state {s}"))),
            Some(s) => Ok(Observed::Unsettled(format!("Evolution: state {s}"))),
            None => Ok(Observed::Unsettled("Evolution: the instance is not loaded".into())),
        }
    }

    fn media_handle(file_ref: &str) -> Option<MediaHandle> {
        Some(MediaHandle::EvolutionMessage {
            key_id: file_ref.to_owned(),
        })
    }

    async fn fetch_media(
        &self,
        media: &MediaFetch<'_>,
        handle: &MediaHandle,
        limit: u64,
    ) -> Result<Downloaded, DownloadError> {
        let MediaHandle::EvolutionMessage { key_id } = handle else {
            return Err(DownloadError::Refused(NOT_ALLOWED.into()));
        };
        let base = self.base_url.trim_end_matches('/');
        let instance = &self.instance;
        let req = media
            .api
            .post(format!("{base}/chat/getBase64FromMediaMessage/{instance}"))
            .header("apikey", &self.api_key)
            .json(&serde_json::json!({"message": {"key": {"id": key_id}}, "convertToMp4": false}));
        // The file comes inside the JSON as base64: 4/3 of the cap, plus the envelope.
        let answer = crate::media_api(media, req, limit / 3 * 4 + 4 + crate::API_ANSWER_CAP).await?;
        let encoded = answer["base64"]
            .as_str()
            .ok_or_else(|| DownloadError::Refused("Evolution returned no base64".into()))?;
        // Base64 is 4/3 of the bytes: refuse before decoding what could not fit.
        if (encoded.len() as u64) / 4 * 3 > limit + 3 {
            return Err(DownloadError::TooLarge { limit });
        }
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| DownloadError::Refused("Evolution's base64 is invalid".into()))?;
        Ok(Downloaded {
            bytes,
            content_type: answer["mimetype"].as_str().map(str::to_string),
            file_name: answer["fileName"].as_str().map(str::to_string),
        })
    }
}
