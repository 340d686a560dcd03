//! Twilio Programmable Messaging (SMS): credentials `account_sid`, `auth_token` (also the
//! key of the webhook signature) and `from` (a number or a Messaging Service `MG…`).
//! Webhooks are forms signed with `X-Twilio-Signature` over the URL Twilio called and its
//! fields; a call is bound to the channel by its account and number; the answer is an
//! empty TwiML `<Response>`. Media come as plain URLs (`MediaUrl{i}`).

pub mod parse;
mod send;

use leadflow_shared::channel::{secrets_match, Provider};
use leadflow_shared::inbound::{form_fields, form_to_json, ParseError, Parsed};
use serde_json::Value;

pub use parse::{is_for, signature, MAX_MEDIA};

use crate::{Ack, Channel, Outbound, Recipient, SendError, Sent, WebhookCall};

crate::credentials! {
    /// Twilio: the account and its auth token (also the webhook signature's key), and the
    /// sending number.
    Twilio {
        required: [account_sid, auth_token, from],
        optional: [base_url],
    }
}

impl Channel for Twilio {
    const PROVIDER: Provider = Provider::Twilio;
    const SIGNED: bool = true;

    fn verify(creds: Option<&Self>, call: &WebhookCall<'_>) -> bool {
        let Some(c) = creds else { return false };
        let expected = signature(&c.auth_token, call.url, &form_fields(call.body));
        call.header("x-twilio-signature")
            .is_some_and(|given| secrets_match(given, &expected))
    }

    /// Twilio posts forms; they are stored as a flat JSON object of strings.
    fn payload(body: &[u8]) -> Result<Value, String> {
        Ok(form_to_json(&form_fields(body)))
    }

    fn bind(&self, payload: &mut Value) -> bool {
        is_for(payload, &self.account_sid, &self.from)
    }

    fn parse(payload: &Value) -> Result<Parsed, ParseError> {
        parse::parse(payload)
    }

    fn ack() -> Ack {
        Ack::TwiML
    }

    fn urls(&self) -> Vec<(&'static str, &str)> {
        crate::base_url(&self.base_url)
    }

    async fn send_text(&self, out: &Outbound<'_>, to: &Recipient, text: &str) -> Result<Sent, SendError> {
        send::send_text(out.http, self, to, text).await
    }
}
