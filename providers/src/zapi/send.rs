//! Z-API: `POST {base}/instances/{id}/token/{token}/send-text` with the optional
//! account-wide `Client-Token` header; the answer's `messageId` comes back in the
//! `fromMe` echo, which is how the echo is recognised as ours.

use super::ZApi;
use serde_json::json;

use crate::http::{post_json, Recipient, SendError, Sent};

/// A request to the instance's `endpoint` (`send-text`, `status`), with the account's
/// `Client-Token` when the tenant gave one.
pub fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    creds: &ZApi,
    endpoint: &str,
) -> reqwest::RequestBuilder {
    let base = creds.base_url.as_deref().unwrap_or("https://api.z-api.io");
    let url = format!(
        "{}/instances/{}/token/{}/{endpoint}",
        base.trim_end_matches('/'),
        creds.instance_id,
        creds.instance_token
    );
    let mut req = http.request(method, url);
    if let Some(t) = &creds.client_token {
        req = req.header("Client-Token", t);
    }
    req
}

pub async fn send_text(http: &reqwest::Client, creds: &ZApi, to: &Recipient, text: &str) -> Result<Sent, SendError> {
    // Z-API takes digits only (country code first); a LID-only lead is addressed by its LID.
    let phone = match (&to.phone, &to.wa_lid) {
        (Some(p), _) => p.trim_start_matches('+').to_string(),
        (None, Some(lid)) => lid.clone(),
        (None, None) => return Err(SendError::Config("the lead has no WhatsApp number or LID".into())),
    };
    let req = request(http, reqwest::Method::POST, creds, "send-text");
    let (status, body) = post_json(req, &json!({"phone": phone, "message": text})).await?;
    Ok(Sent {
        status,
        provider_message_id: body
            .get("messageId")
            .or_else(|| body.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}
