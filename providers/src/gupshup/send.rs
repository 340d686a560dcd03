//! Gupshup self-serve API: form-encoded `POST {base}/wa/api/v1/msg` (and `/template/msg`)
//! with the `apikey` header; `message` / `template` are JSON strings inside the form. The
//! answer's `messageId` is Gupshup's id, which its `message-event` callbacks carry.

use super::Gupshup;
use serde_json::json;

use crate::http::{Recipient, SendError, Sent};

async fn post(
    http: &reqwest::Client,
    creds: &Gupshup,
    path: &str,
    field: (&str, String),
    to: &Recipient,
) -> Result<Sent, SendError> {
    let base = creds.base_url.as_deref().unwrap_or("https://api.gupshup.io");
    let destination = to
        .phone
        .as_deref()
        .map(|p| p.trim_start_matches('+').to_string())
        .ok_or_else(|| SendError::Config("the lead has no WhatsApp number".into()))?;
    let form = [
        ("channel", "whatsapp".to_string()),
        ("source", creds.source.trim_start_matches('+').to_string()),
        ("destination", destination),
        ("src.name", creds.app_name.clone()),
        (field.0, field.1),
    ];
    let mut resp = http
        .post(format!("{}{path}", base.trim_end_matches('/')))
        .header("apikey", &creds.api_key)
        .form(&form)
        .send()
        .await
        .map_err(|e| SendError::Network(crate::http::http_error(e)))?;
    let status = resp.status().as_u16();
    let text = crate::http::read_answer(&mut resp).await?;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    // Gupshup answers some refusals with a 2xx and `"status": "error"`.
    if !(200..300).contains(&status) || answer["status"] == json!("error") {
        return Err(SendError::Http {
            status: if (200..300).contains(&status) { 400 } else { status },
            body: text.chars().take(500).collect(),
            retry_after: None,
        });
    }
    Ok(Sent {
        status,
        provider_message_id: answer["messageId"].as_str().map(str::to_string),
    })
}

pub async fn send_text(http: &reqwest::Client, creds: &Gupshup, to: &Recipient, text: &str) -> Result<Sent, SendError> {
    let message = json!({"type": "text", "text": text}).to_string();
    post(http, creds, "/wa/api/v1/msg", ("message", message), to).await
}

/// The channel's approved template (`template_id`, Gupshup's template UUID).
pub async fn send_template(
    http: &reqwest::Client,
    creds: &Gupshup,
    to: &Recipient,
    id: &str,
) -> Result<Sent, SendError> {
    let template = json!({"id": id, "params": []}).to_string();
    post(http, creds, "/wa/api/v1/template/msg", ("template", template), to).await
}
