//! Meta WhatsApp Cloud API: `POST {base}/{version}/{phone_number_id}/messages` with the
//! bearer access token. A 200 only means accepted: window and delivery failures arrive
//! later as `statuses[]` webhooks, correlated on the returned `wamid`.

use super::MetaCloud;
use serde_json::{json, Value};

use crate::http::{post_json, Recipient, SendError, Sent};

fn to(r: &Recipient) -> Result<String, SendError> {
    r.phone
        .as_deref()
        .map(|p| p.trim_start_matches('+').to_string())
        .ok_or_else(|| SendError::Config("the lead has no WhatsApp number".into()))
}

async fn post(http: &reqwest::Client, creds: &MetaCloud, body: Value) -> Result<Sent, SendError> {
    let base = creds.base_url.as_deref().unwrap_or("https://graph.facebook.com");
    let version = creds.api_version.as_deref().unwrap_or("v23.0");
    let url = format!(
        "{}/{version}/{}/messages",
        base.trim_end_matches('/'),
        creds.phone_number_id
    );
    let req = http.post(url).bearer_auth(&creds.access_token);
    let (status, answer) = post_json(req, &body).await?;
    Ok(Sent {
        status,
        provider_message_id: answer
            .pointer("/messages/0/id")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

pub async fn send_text(
    http: &reqwest::Client,
    creds: &MetaCloud,
    r: &Recipient,
    text: &str,
) -> Result<Sent, SendError> {
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to(r)?,
                      "type": "text", "text": {"preview_url": false, "body": text}});
    post(http, creds, body).await
}

/// The channel's approved template (`template_name`, `template_language`, default `pt_BR`).
pub async fn send_template(
    http: &reqwest::Client,
    creds: &MetaCloud,
    r: &Recipient,
    name: &str,
) -> Result<Sent, SendError> {
    let language = creds.template_language.as_deref().unwrap_or("pt_BR");
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to(r)?,
                      "type": "template", "template": {"name": name, "language": {"code": language}}});
    post(http, creds, body).await
}
