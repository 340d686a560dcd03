//! Telegram (Bot API): credentials `bot_token` (and an optional `base_url` for a local Bot
//! API server). Webhooks carry the channel's secret in `X-Telegram-Bot-Api-Secret-Token`
//! (set when the webhook is registered); sends are `sendMessage`; media arrive as
//! `file_id`s resolved with `getFile` and downloaded from `{base}/file/bot<token>/…`.

pub mod parse;
mod send;

use leadflow_shared::channel::Provider;
use leadflow_shared::inbound::{ParseError, Parsed};
use leadflow_shared::media_handle::{MediaHandle, NOT_ALLOWED};
use serde_json::Value;

use crate::{
    download, Channel, DownloadError, Downloaded, MediaFetch, Outbound, Recipient, SendError, Sent, WebhookCall,
};

crate::credentials! {
    /// Telegram: the bot's token.
    TelegramBot {
        required: [bot_token],
        optional: [base_url],
    }
}

impl Channel for TelegramBot {
    const PROVIDER: Provider = Provider::TelegramBot;

    fn verify(_creds: Option<&Self>, call: &WebhookCall<'_>) -> bool {
        call.header("x-telegram-bot-api-secret-token")
            .is_some_and(|t| call.secret_is(t))
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

    fn media_handle(file_ref: &str) -> Option<MediaHandle> {
        Some(MediaHandle::TelegramFile {
            file_id: file_ref.to_owned(),
        })
    }

    async fn fetch_media(
        &self,
        media: &MediaFetch<'_>,
        handle: &MediaHandle,
        limit: u64,
    ) -> Result<Downloaded, DownloadError> {
        let MediaHandle::TelegramFile { file_id } = handle else {
            return Err(DownloadError::Refused(NOT_ALLOWED.into()));
        };
        let base = self.base_url.as_deref().unwrap_or("https://api.telegram.org");
        let base = base.trim_end_matches('/');
        let token = &self.bot_token;
        let req = media
            .api
            .get(format!("{base}/bot{token}/getFile"))
            .query(&[("file_id", file_id)]);
        let answer = crate::media_api(media, req, crate::API_ANSWER_CAP).await?;
        let path = answer
            .pointer("/result/file_path")
            .and_then(|v| v.as_str())
            .ok_or_else(|| DownloadError::Refused("Telegram getFile gave no file_path".into()))?;
        let mut file = download::fetch(
            media.files,
            media.ssrf,
            &format!("{base}/file/bot{token}/{path}"),
            limit,
        )
        .await?;
        file.file_name = path.rsplit('/').next().map(str::to_string);
        Ok(file)
    }
}
