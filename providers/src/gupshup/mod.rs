//! Gupshup (official WhatsApp): credentials `api_key`, `app_name`, `source` (the sending
//! number), optional `template_id`. Webhooks carry the channel's secret in the URL and
//! come in Gupshup's "v2" format or Meta's envelope ("v3"). Free-form text only within
//! 24 h of the lead's last message, the template outside it. Media come as plain URLs.

pub mod parse;
mod send;

use leadflow_shared::channel::Provider;
use leadflow_shared::inbound::{ParseError, Parsed};
use serde_json::Value;

use crate::{Channel, Outbound, Recipient, SendError, Sent};

crate::credentials! {
    /// Gupshup: the app's API key and name, and the sending number (`source`).
    Gupshup {
        required: [api_key, app_name, source],
        optional: [base_url, template_id],
    }
}

impl Channel for Gupshup {
    const PROVIDER: Provider = Provider::Gupshup;
    const HAS_24H_WINDOW: bool = true;

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse::parse(payload)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        crate::base_url(&self.base_url)
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.http, self, to, text).await
    }

    async fn send_template(&self, out: &Outbound<'_>, to: &Recipient) -> Result<Option<(String, Sent)>, SendError> {
        match &self.template_id {
            Some(id) => Ok(Some((id.clone(), send::send_template(out.http, self, to, id).await?))),
            None => Ok(None),
        }
    }
}
