//! What every provider's HTTP calls share: who a message goes to, what a send gave back,
//! and how a provider's answer is read and its errors sorted the same way for all:
//! network trouble, 408/429 and 5xx are worth another try (with the provider's
//! `retry-after` when it gives one), other 4xx are final.

use std::time::Duration;

/// Who a message goes to, by the identities the lead has.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// E.164 with '+'.
    pub phone: Option<String>,
    pub wa_lid: Option<String>,
    pub telegram_chat: Option<String>,
    pub email: Option<String>,
    /// For e-mail: the conversation a reply belongs to.
    pub thread: Option<leadflow_shared::inbound::email::Thread>,
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
pub(crate) async fn post_json(
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
        .map_err(|e| SendError::Network(error_chain(&e)))
}

/// Sends a prepared request and returns the status and parsed answer, or a sorted error.
pub(crate) async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, serde_json::Value), SendError> {
    let mut resp = req.send().await.map_err(|e| SendError::Network(http_error(e)))?;
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

/// A failed HTTP call as text, without its URL: provider URLs carry credentials (Z-API's
/// instance token, Telegram's bot token) and this text is stored and shown to tenants.
pub fn http_error(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// An error and its sources, `a: b: c`, for messages that must say why.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// A GET-style call whose answer is read whatever its status (the caller sorts it).
pub(crate) async fn get_json(req: reqwest::RequestBuilder) -> Result<(u16, serde_json::Value), SendError> {
    let mut resp = req.send().await.map_err(|e| SendError::Network(http_error(e)))?;
    let status = resp.status().as_u16();
    let text = read_answer(&mut resp).await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Ok((status, body))
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
