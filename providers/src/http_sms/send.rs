//! A generic HTTP SMS gateway: `POST {send_url}` with `{"to", "text", "from"?}` as JSON and,
//! when the channel has an `api_key`, `Authorization: Bearer <api_key>`. The answer's `id`
//! (or `message_id`) is the id its delivery reports carry. `send_url` is user-given, so it
//! goes through the SSRF-guarded client like postbacks.

use super::HttpSms;
use serde_json::json;

use crate::http::{post_json, Recipient, SendError, Sent};

pub async fn send_text(http: &reqwest::Client, creds: &HttpSms, to: &Recipient, text: &str) -> Result<Sent, SendError> {
    let phone = to
        .phone
        .as_deref()
        .ok_or_else(|| SendError::Config("the lead has no phone number".into()))?;
    let mut req = http.post(&creds.send_url);
    if let Some(key) = &creds.api_key {
        req = req.bearer_auth(key);
    }
    let mut body = json!({"to": phone, "text": text});
    if let Some(from) = &creds.from {
        body["from"] = json!(from);
    }
    let (status, answer) = post_json(req, &body).await?;
    let id = answer.get("id").or_else(|| answer.get("message_id"));
    Ok(Sent {
        status,
        provider_message_id: id
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)),
    })
}
