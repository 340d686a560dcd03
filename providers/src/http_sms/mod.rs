//! A generic HTTP SMS gateway: credentials `send_url` (where each message is POSTed, a
//! tenant's URL under the SSRF policy), optional `api_key` and `from`. Webhooks in
//! Leadflow's own documented format, with the channel's secret in the URL.

pub mod parse;
mod send;

use leadflow_shared::channel::Provider;
use leadflow_shared::inbound::{ParseError, Parsed};
use serde_json::Value;

use crate::{Channel, Outbound, Recipient, SendError, Sent};

crate::credentials! {
    /// A generic HTTP SMS gateway: where to POST, with an optional bearer key and sender.
    HttpSms {
        required: [send_url],
        optional: [api_key, from],
    }
}

impl Channel for HttpSms {
    const PROVIDER: Provider = Provider::HttpSms;

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse::parse(payload)
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        vec![("send_url", self.send_url.as_str())]
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.http, self, to, text).await
    }
}
