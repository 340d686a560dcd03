//! Twilio Programmable Messaging: form-encoded `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`
//! with HTTP basic auth (account SID, auth token). `from` is a phone number, or a
//! Messaging Service SID (`MG…`), which Twilio takes as `MessagingServiceSid`. The answer's
//! `sid` is what Twilio's status callbacks carry; refusals come as `{code, message}`.

use super::Twilio;

use crate::http::{exchange, Recipient, SendError, Sent};

/// Twilio's limit for one message body.
const MAX_CHARS: usize = 1600;

pub async fn send_text(http: &reqwest::Client, creds: &Twilio, to: &Recipient, text: &str) -> Result<Sent, SendError> {
    let base = creds.base_url.as_deref().unwrap_or("https://api.twilio.com");
    let sid = &creds.account_sid;
    let url = format!("{}/2010-04-01/Accounts/{sid}/Messages.json", base.trim_end_matches('/'));
    let phone = to
        .phone
        .as_deref()
        .ok_or_else(|| SendError::Config("the lead has no phone number".into()))?;
    let from = creds.from.as_str();
    let from_field = if from.starts_with("MG") {
        "MessagingServiceSid"
    } else {
        "From"
    };
    let body: String = text.chars().take(MAX_CHARS).collect();
    let form = [("To", phone), (from_field, from), ("Body", body.as_str())];
    let req = http.post(url).basic_auth(sid, Some(&creds.auth_token)).form(&form);
    let (status, answer) = exchange(req).await?;
    Ok(Sent {
        status,
        provider_message_id: answer["sid"].as_str().map(str::to_string),
    })
}
