//! Evolution API v2: `POST {base_url}/message/sendText/{instance}` with the `apikey`
//! header; the answer's `key.id` is the message id its `fromMe` events carry.

use super::Evolution;
use serde_json::json;

use crate::http::{post_json, Recipient, SendError, Sent};

pub async fn send_text(
    http: &reqwest::Client,
    creds: &Evolution,
    to: &Recipient,
    text: &str,
) -> Result<Sent, SendError> {
    let url = format!(
        "{}/message/sendText/{}",
        creds.base_url.trim_end_matches('/'),
        creds.instance
    );
    let number = match (&to.phone, &to.wa_lid) {
        (Some(p), _) => p.trim_start_matches('+').to_string(),
        (None, Some(lid)) => lid.clone(),
        (None, None) => return Err(SendError::Config("the lead has no WhatsApp number or LID".into())),
    };
    let req = http.post(url).header("apikey", &creds.api_key);
    let (status, body) = post_json(req, &json!({"number": number, "text": text})).await?;
    Ok(Sent {
        status,
        provider_message_id: body.pointer("/key/id").and_then(|v| v.as_str()).map(str::to_string),
    })
}
