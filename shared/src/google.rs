//! The Google calls Leadflow makes, on the wire as Google documents them: the OAuth token
//! endpoint (authorization code and refresh token grants, form-encoded, errors per
//! RFC 6749 §5.2), Calendar `events.watch`, `channels.stop` and `events.list` with sync
//! tokens. Endpoints come from [`GoogleConfig`], so tests point them at a local fake.
//! Callers decide what an error means for them: `invalid_grant` needs the user to consent
//! again, 410 on a sync token means a full sync, 5xx/429/network are worth a retry.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::GoogleConfig;

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("the Google integration is not configured (LEADFLOW_GOOGLE_CLIENT_ID / LEADFLOW_GOOGLE_CLIENT_SECRET)")]
    NotConfigured,
    /// The grant was revoked or expired: only a new consent helps.
    #[error("Google refused the grant: {0}")]
    InvalidGrant(String),
    /// The sync token is no longer valid: sync everything again.
    #[error("Google answered 410 Gone (the sync token expired)")]
    Gone,
    #[error("Google answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the request to Google failed: {0}")]
    Network(String),
}

impl GoogleError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::Network(_) => true,
            // Google's quota errors are 403 with a rate-limit reason.
            Self::Http { status: 403, body } => body.contains("rateLimitExceeded"),
            Self::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// What the token endpoint gave. `Debug` shows no token.
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    /// Only on the first consent (and with `prompt=consent`); keep the stored one otherwise.
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    #[serde(default)]
    pub scope: String,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A push channel as Google created it.
#[derive(Debug, Clone)]
pub struct Watched {
    pub resource_id: String,
    pub expiration: Option<DateTime<Utc>>,
}

/// One page of `events.list`.
#[derive(Debug, Clone, Default)]
pub struct EventsPage {
    pub items: Vec<Value>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
}

/// Percent-encodes a path segment (calendar ids are e-mail addresses).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The consent page URL for `state`.
pub fn consent_url(cfg: &GoogleConfig, redirect_uri: &str, state: &str) -> Result<String, GoogleError> {
    let client_id = cfg.client_id.as_deref().ok_or(GoogleError::NotConfigured)?;
    let mut url = url::Url::parse(&cfg.auth_url).map_err(|e| GoogleError::Network(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &cfg.scopes)
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("include_granted_scopes", "true")
        .append_pair("state", state);
    Ok(url.to_string())
}

async fn token_request(
    http: &reqwest::Client,
    cfg: &GoogleConfig,
    grant: &[(&str, &str)],
) -> Result<TokenSet, GoogleError> {
    let (Some(id), Some(secret)) = (&cfg.client_id, &cfg.client_secret) else {
        return Err(GoogleError::NotConfigured);
    };
    let mut form: Vec<(&str, &str)> = vec![("client_id", id), ("client_secret", secret.expose_secret())];
    form.extend_from_slice(grant);
    let mut resp = http
        .post(&cfg.token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| GoogleError::Network(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = read_text(&mut resp).await?;
    if status == 200 {
        return serde_json::from_str(&body).map_err(|e| GoogleError::Http {
            status,
            body: format!("unreadable token response: {e}"),
        });
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if v["error"] == "invalid_grant" {
        let why = v["error_description"].as_str().unwrap_or("invalid_grant").to_string();
        return Err(GoogleError::InvalidGrant(why));
    }
    Err(GoogleError::Http { status, body })
}

pub async fn exchange_code(
    http: &reqwest::Client,
    cfg: &GoogleConfig,
    code: &str,
    redirect_uri: &str,
) -> Result<TokenSet, GoogleError> {
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    token_request(http, cfg, &grant).await
}

pub async fn refresh(http: &reqwest::Client, cfg: &GoogleConfig, refresh_token: &str) -> Result<TokenSet, GoogleError> {
    let grant = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    token_request(http, cfg, &grant).await
}

/// Google's answers (a token, a page of events) are small; a calendar page is at most
/// 2,500 events, so 16 MB is far beyond any real one.
const ANSWER_CAP: u64 = 16 * 1024 * 1024;

async fn read_text(resp: &mut reqwest::Response) -> Result<String, GoogleError> {
    crate::http_body::read_capped_text(resp, ANSWER_CAP)
        .await
        .map_err(|e| GoogleError::Network(e.to_string()))
}

async fn call(req: reqwest::RequestBuilder) -> Result<(u16, Value), GoogleError> {
    let mut resp = req.send().await.map_err(|e| GoogleError::Network(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = read_text(&mut resp).await?;
    if !(200..300).contains(&status) {
        return Err(match status {
            410 => GoogleError::Gone,
            _ => GoogleError::Http { status, body: text },
        });
    }
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// `events.watch`: a new push channel `channel_id` on `calendar_id` posting to `address`.
#[allow(clippy::too_many_arguments)]
pub async fn watch(
    http: &reqwest::Client,
    cfg: &GoogleConfig,
    access_token: &str,
    calendar_id: &str,
    channel_id: &str,
    address: &str,
    token: &str,
) -> Result<Watched, GoogleError> {
    let url = format!("{}/calendars/{}/events/watch", cfg.calendar_api, segment(calendar_id));
    let body = json!({
        "id": channel_id,
        "type": "web_hook",
        "address": address,
        "token": token,
        "params": {"ttl": cfg.watch_ttl.as_secs().to_string()},
    });
    let (_, v) = call(http.post(url).bearer_auth(access_token).json(&body)).await?;
    let resource_id = v["resourceId"]
        .as_str()
        .ok_or_else(|| GoogleError::Http {
            status: 200,
            body: format!("events.watch answer without resourceId: {v}"),
        })?
        .to_string();
    // Google sends the expiration as epoch milliseconds in a string.
    let expiration = match &v["expiration"] {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .and_then(DateTime::from_timestamp_millis);
    Ok(Watched {
        resource_id,
        expiration,
    })
}

/// `channels.stop`; an unknown (already expired) channel counts as stopped.
pub async fn stop(
    http: &reqwest::Client,
    cfg: &GoogleConfig,
    access_token: &str,
    channel_id: &str,
    resource_id: &str,
) -> Result<(), GoogleError> {
    let url = format!("{}/channels/stop", cfg.calendar_api);
    let body = json!({"id": channel_id, "resourceId": resource_id});
    match call(http.post(url).bearer_auth(access_token).json(&body)).await {
        Ok(_) | Err(GoogleError::Http { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One page of `events.list`: changes since `sync_token`, or everything without one.
pub async fn list_events(
    http: &reqwest::Client,
    cfg: &GoogleConfig,
    access_token: &str,
    calendar_id: &str,
    sync_token: Option<&str>,
    page_token: Option<&str>,
) -> Result<EventsPage, GoogleError> {
    let url = format!("{}/calendars/{}/events", cfg.calendar_api, segment(calendar_id));
    let mut query: Vec<(&str, &str)> = vec![("maxResults", "250"), ("showDeleted", "true")];
    if let Some(t) = sync_token {
        query.push(("syncToken", t));
    }
    if let Some(p) = page_token {
        query.push(("pageToken", p));
    }
    let (_, v) = call(http.get(url).bearer_auth(access_token).query(&query)).await?;
    let text = |k: &str| v[k].as_str().map(str::to_string);
    Ok(EventsPage {
        items: v["items"].as_array().cloned().unwrap_or_default(),
        next_page_token: text("nextPageToken"),
        next_sync_token: text("nextSyncToken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_ids_are_encoded_as_path_segments() {
        assert_eq!(
            segment("agenda.corretor@acmeimoveis.com.br"),
            "agenda.corretor%40acmeimoveis.com.br"
        );
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
