//! Z-API (unofficial WhatsApp, developer.z-api.io): credentials `instance_id`,
//! `instance_token` and the account's optional `client_token`; webhooks verified by the
//! channel's secret in the URL; sends through `send-text`; the session's connection read
//! from `GET …/status` (`connected`; still HTTP 200 when down). Media come as plain URLs.

pub mod parse;
mod send;

use leadflow_shared::channel::Provider;
use leadflow_shared::inbound::{ParseError, Parsed};
use serde_json::Value;

pub use send::request;

use crate::http::get_json;
use crate::{Channel, Observed, Outbound, Recipient, SendError, Sent};

crate::credentials! {
    /// Z-API: the instance's id and token; `client_token` is the account's security token
    /// (sent as `Client-Token`).
    ZApi {
        required: [instance_id, instance_token],
        optional: [client_token, base_url],
    }
}

impl Channel for ZApi {
    const PROVIDER: Provider = Provider::ZApi;
    const CHECKED: bool = true;

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse::parse(payload)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        crate::base_url(&self.base_url)
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.http, self, to, text).await
    }

    async fn check(&self, http: &reqwest::Client) -> Result<Observed, SendError> {
        let (status, body) = get_json(request(http, reqwest::Method::GET, self, "status")).await?;
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
}
