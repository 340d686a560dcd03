//! Telegram Bot API: `POST {base}/bot{token}/sendMessage` with `chat_id` and `text`;
//! errors arrive as `{"ok": false, "error_code", "parameters": {"retry_after"}}`.

use super::TelegramBot;
use serde_json::json;

use crate::http::{post_json, Recipient, SendError, Sent};

/// Telegram's limit per message.
const MAX_CHARS: usize = 4096;

pub async fn send_text(
    http: &reqwest::Client,
    creds: &TelegramBot,
    to: &Recipient,
    text: &str,
) -> Result<Sent, SendError> {
    let base = creds.base_url.as_deref().unwrap_or("https://api.telegram.org");
    let url = format!("{}/bot{}/sendMessage", base.trim_end_matches('/'), creds.bot_token);
    let chat = to
        .telegram_chat
        .as_deref()
        .ok_or_else(|| SendError::Config("the lead has no Telegram chat".into()))?;
    let chat_id: serde_json::Value = chat.parse::<i64>().map(Into::into).unwrap_or_else(|_| chat.into());
    let text: String = text.chars().take(MAX_CHARS).collect();
    let (status, body) = post_json(http.post(url), &json!({"chat_id": chat_id, "text": text})).await?;
    Ok(Sent {
        status,
        provider_message_id: body.pointer("/result/message_id").map(|v| v.to_string()),
    })
}
