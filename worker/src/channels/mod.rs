//! Sending through a channel's provider. Each provider module builds its own request
//! (path, auth, body) from the channel's credentials and reads the provider's message id
//! from the answer; errors are sorted the same way for all: network trouble, 408/429 and
//! 5xx are worth another try (with the provider's `retry-after` when it gives one),
//! other 4xx are final.

pub mod email;
pub mod evolution;
pub mod gupshup;
pub mod http_sms;
pub mod meta;
pub mod status;
pub mod telegram;
pub mod twilio;
pub mod zapi;

use std::time::Duration;

use leadflow_shared::credentials::Credentials;

/// Who a message goes to, by the identities the lead has.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// E.164 with '+'.
    pub phone: Option<String>,
    pub wa_lid: Option<String>,
    pub telegram_chat: Option<String>,
    pub email: Option<String>,
    /// For e-mail: the conversation a reply belongs to.
    pub thread: Option<email::Thread>,
}

#[derive(Debug)]
pub struct Sent {
    pub status: u16,
    pub provider_message_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Config(String),
    #[error("the provider answered HTTP {status}: {body}")]
    Http {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("request failed: {0}")]
    Network(String),
    /// A final refusal outside HTTP (an SMTP 5yz reply).
    #[error("{0}")]
    Refused(String),
}

impl SendError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::Config(_) | Self::Refused(_) => false,
            Self::Network(_) => true,
            Self::Http { status, .. } => *status >= 500 || matches!(status, 408 | 425 | 429),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Posts `body` as JSON and returns the status and parsed answer, or a sorted error.
async fn post_json(
    req: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), SendError> {
    exchange(req.json(body)).await
}

/// A provider's answer as text, at most [`PROVIDER_ANSWER_CAP`] bytes of it: a bigger
/// one is a network-level failure of this attempt (retried), never held in memory.
pub(crate) async fn read_answer(resp: &mut reqwest::Response) -> Result<String, SendError> {
    use leadflow_shared::http_body::{read_capped_text, PROVIDER_ANSWER_CAP};
    read_capped_text(resp, PROVIDER_ANSWER_CAP)
        .await
        .map_err(|e| SendError::Network(crate::ai::error_chain(&e)))
}

/// Sends a prepared request and returns the status and parsed answer, or a sorted error.
async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, serde_json::Value), SendError> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| SendError::Network(crate::ai::http_error(e)))?;
    let status = resp.status().as_u16();
    let retry_after = leadflow_shared::retry_after::from_headers(resp.headers());
    let text = read_answer(&mut resp).await?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        // Telegram puts the hint in the body.
        let retry_after = retry_after.or_else(|| {
            json.pointer("/parameters/retry_after")
                .and_then(|v| v.as_u64())
                .map(Duration::from_secs)
        });
        let body: String = text.chars().take(500).collect();
        return Err(SendError::Http {
            status,
            body,
            retry_after,
        });
    }
    Ok((status, json))
}

/// Most parts a reply is split into; the rest stays in the last part.
const MAX_PARTS: usize = 6;

/// A reply as messages, one per paragraph (blank-line separated), like a person typing.
pub fn split_reply(content: &str) -> Vec<String> {
    let normalized = content.replace("\r\n", "\n");
    let mut parts: Vec<String> = normalized
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if parts.len() > MAX_PARTS {
        let rest = parts.split_off(MAX_PARTS - 1).join("\n\n");
        parts.push(rest);
    }
    if parts.is_empty() {
        parts.push(content.trim().to_string());
    }
    parts
}

/// Sends `text` to `to` through the channel's provider.
pub async fn send_text(
    http: &reqwest::Client,
    policy: &leadflow_shared::ssrf::Policy,
    creds: &Credentials,
    to: &Recipient,
    text: &str,
) -> Result<Sent, SendError> {
    match creds {
        Credentials::ZApi(c) => zapi::send_text(http, c, to, text).await,
        Credentials::Evolution(c) => evolution::send_text(http, c, to, text).await,
        Credentials::TelegramBot(c) => telegram::send_text(http, c, to, text).await,
        Credentials::MetaCloud(c) => meta::send_text(http, c, to, text).await,
        Credentials::Gupshup(c) => gupshup::send_text(http, c, to, text).await,
        Credentials::Twilio(c) => twilio::send_text(http, c, to, text).await,
        Credentials::HttpSms(c) => http_sms::send_text(http, c, to, text).await,
        Credentials::SmtpImap(c) => email::send_text(policy, c, to, text).await,
    }
}

/// The channel's approved template, for official WhatsApp outside the 24-hour window:
/// `Some(name)` once sent, `None` when the channel has none configured.
pub async fn send_template(
    http: &reqwest::Client,
    creds: &Credentials,
    to: &Recipient,
) -> Result<Option<(String, Sent)>, SendError> {
    Ok(match creds {
        Credentials::MetaCloud(c) => match &c.template_name {
            Some(name) => Some((name.clone(), meta::send_template(http, c, to, name).await?)),
            None => None,
        },
        Credentials::Gupshup(c) => match &c.template_id {
            Some(id) => Some((id.clone(), gupshup::send_template(http, c, to, id).await?)),
            None => None,
        },
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::split_reply;

    #[test]
    fn replies_split_on_blank_lines_with_a_cap() {
        assert_eq!(
            split_reply("Olá!\r\n\r\nTemos sim.\n\n\n\nQuer visitar?"),
            ["Olá!", "Temos sim.", "Quer visitar?"]
        );
        assert_eq!(split_reply("Uma linha\nsó"), ["Uma linha\nsó"]);
        let many = (1..=8).map(|i| i.to_string()).collect::<Vec<_>>().join("\n\n");
        let parts = split_reply(&many);
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[5], "6\n\n7\n\n8");
    }
}
