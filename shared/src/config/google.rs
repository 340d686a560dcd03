//! Google integration settings: the OAuth client Leadflow signs users in with, Google's
//! endpoints (configurable so tests and proxies can stand in), where pushes are sent, and
//! how far ahead Calendar push channels are renewed. Without a client id the Google
//! endpoints answer that the integration is not configured.

use std::time::Duration;

use secrecy::SecretString;

use super::{invalid, ConfigError, Layers};

#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// The consent page (`https://accounts.google.com/o/oauth2/v2/auth`).
    pub auth_url: String,
    /// The token endpoint (`https://oauth2.googleapis.com/token`).
    pub token_url: String,
    /// The Calendar API root (`https://www.googleapis.com/calendar/v3`).
    pub calendar_api: String,
    /// Scopes asked for at consent.
    pub scopes: String,
    /// A channel expiring within this margin is replaced.
    pub renew_margin: Duration,
    /// How often the scheduler looks for channels to renew.
    pub renew_interval: Duration,
    /// The lifetime asked for a new push channel (Google may give less).
    pub watch_ttl: Duration,
}

fn url(l: &Layers, var: &'static str) -> Result<String, ConfigError> {
    let raw = l.req(var)?;
    let parsed = url::Url::parse(raw).map_err(|e| invalid(var, e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(var, "must be an http(s) URL"));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

impl GoogleConfig {
    pub(super) fn parse(l: &Layers) -> Result<Self, ConfigError> {
        let client_id = l.get("LEADFLOW_GOOGLE_CLIENT_ID").map(str::to_string);
        let client_secret = l
            .get("LEADFLOW_GOOGLE_CLIENT_SECRET")
            .map(|s| SecretString::from(s.to_string()));
        if client_id.is_some() != client_secret.is_some() {
            return Err(invalid(
                "LEADFLOW_GOOGLE_CLIENT_SECRET",
                "LEADFLOW_GOOGLE_CLIENT_ID and LEADFLOW_GOOGLE_CLIENT_SECRET go together",
            ));
        }
        Ok(Self {
            client_id,
            client_secret,
            auth_url: url(l, "LEADFLOW_GOOGLE_AUTH_URL")?,
            token_url: url(l, "LEADFLOW_GOOGLE_TOKEN_URL")?,
            calendar_api: url(l, "LEADFLOW_GOOGLE_CALENDAR_API")?,
            scopes: l.req("LEADFLOW_GOOGLE_SCOPES")?.to_string(),
            renew_margin: l.duration("LEADFLOW_CALENDAR_RENEW_MARGIN")?,
            renew_interval: l.duration("LEADFLOW_CALENDAR_RENEW_INTERVAL")?,
            watch_ttl: l.duration("LEADFLOW_CALENDAR_WATCH_TTL")?,
        })
    }
}
