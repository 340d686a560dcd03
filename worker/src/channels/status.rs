//! Asking a WhatsApp provider whether the channel's session is connected: Z-API
//! `GET /instances/{id}/token/{token}/status` (`connected`; still HTTP 200 when down) and
//! Evolution `GET /instance/connectionState/{instance}` (`state`: `open`, `connecting`,
//! `close`). Gupshup and Meta Cloud are hosted by the provider and have no session to
//! lose, so they are not checked.

use leadflow_shared::credentials::{self, Credentials};

use super::SendError;

/// The providers [`check`] knows how to ask.
pub const CHECKED: [&str; 2] = ["z-api", "evolution-api"];

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Connected,
    Disconnected(String),
    /// Neither: Evolution still `connecting`, or an instance not loaded yet.
    Unsettled(String),
}

/// `Err` when the provider could not be asked (network, 5xx, a bad answer).
pub async fn check(http: &reqwest::Client, creds: &Credentials) -> Result<Observed, SendError> {
    match creds {
        Credentials::ZApi(c) => zapi(http, c).await,
        Credentials::Evolution(c) => evolution(http, c).await,
        _ => Ok(Observed::Unsettled("the provider has no status endpoint".into())),
    }
}

async fn get_json(req: reqwest::RequestBuilder) -> Result<(u16, serde_json::Value), SendError> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| SendError::Network(crate::ai::http_error(e)))?;
    let status = resp.status().as_u16();
    let text = super::read_answer(&mut resp).await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

async fn zapi(http: &reqwest::Client, creds: &credentials::ZApi) -> Result<Observed, SendError> {
    let req = super::zapi::request(http, reqwest::Method::GET, creds, "status");
    let (status, body) = get_json(req).await?;
    if status != 200 {
        return Err(SendError::Http {
            status,
            body: body.to_string(),
            retry_after: None,
        });
    }
    let error = body.get("error").and_then(|e| e.as_str()).unwrap_or("not connected");
    match body.get("connected").and_then(|c| c.as_bool()) {
        Some(true) => Ok(Observed::Connected),
        Some(false) => Ok(Observed::Disconnected(format!("Z-API: {error}"))),
        None => Err(SendError::Network(format!("Z-API status without `connected`: {body}"))),
    }
}

async fn evolution(http: &reqwest::Client, creds: &credentials::Evolution) -> Result<Observed, SendError> {
    let url = format!(
        "{}/instance/connectionState/{}",
        creds.base_url.trim_end_matches('/'),
        creds.instance
    );
    let (status, body) = get_json(http.get(url).header("apikey", &creds.api_key)).await?;
    if status == 404 {
        return Ok(Observed::Disconnected("Evolution: the instance does not exist".into()));
    }
    if status != 200 {
        return Err(SendError::Http {
            status,
            body: body.to_string(),
            retry_after: None,
        });
    }
    match body.pointer("/instance/state").and_then(|s| s.as_str()) {
        Some("open") => Ok(Observed::Connected),
        Some(s @ ("close" | "refused")) => Ok(Observed::Disconnected(format!("Evolution: state {s}"))),
        Some(s) => Ok(Observed::Unsettled(format!("Evolution: state {s}"))),
        None => Ok(Observed::Unsettled("Evolution: the instance is not loaded".into())),
    }
}
