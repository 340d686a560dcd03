//! A generic HTTP SMS gateway, for the many local providers without a Twilio-compatible
//! API. Leadflow defines the format (documented in the README), authenticated by the
//! channel's `?token=`:
//!
//! - a message: `{"id": "gw-123", "from": "+5511987654321", "text": "Oi",
//!   "media_url"?: "https://…", "media_type"?: "image/jpeg"}` (`message_id`, `body` and
//!   `message` are accepted as aliases, since gateways differ);
//! - a delivery report about a message we sent: `{"id": "<our send's id>", "status":
//!   "delivered" | "failed", "error"?: "…", "error_code"?: "…"}`.

use serde_json::Value;

use leadflow_shared::delivery::Reported;
use leadflow_shared::inbound::{
    e164, scalar, text, Content, Identity, Inbound, MediaParts, ParseError, Parsed, StatusUpdate,
};

const PROVIDER: &str = "http-sms";

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    if !body.is_object() {
        return Err(leadflow_shared::inbound::shape(
            PROVIDER,
            "the body must be a JSON object",
        ));
    }
    let id = scalar(body, "id")
        .or_else(|| scalar(body, "message_id"))
        .ok_or_else(|| leadflow_shared::inbound::shape(PROVIDER, "no `id`"))?;
    let mut out = Parsed::default();
    if let Some(status) = text(body, "status") {
        let Some(reported) = (match status.to_ascii_lowercase().as_str() {
            "sent" => Some(Reported::Sent),
            "delivered" => Some(Reported::Delivered),
            "read" => Some(Reported::Read),
            "failed" | "undelivered" | "rejected" => Some(Reported::Failed),
            _ => None,
        }) else {
            out.ignored.push(format!("http-sms status {status} for {id}"));
            return Ok(out);
        };
        out.statuses.push(StatusUpdate {
            provider_message_id: id,
            also_id: None,
            status: reported,
            error_code: scalar(body, "error_code"),
            error: text(body, "error").map(str::to_owned),
        });
        return Ok(out);
    }
    let Some(phone) = text(body, "from").and_then(e164) else {
        return Err(leadflow_shared::inbound::shape(
            PROVIDER,
            "`from` must be a phone number",
        ));
    };
    let said = text(body, "text")
        .or_else(|| text(body, "body"))
        .or_else(|| text(body, "message"))
        .unwrap_or_default();
    let content = match text(body, "media_url") {
        Some(url) => {
            let parts = MediaParts {
                url: Some(url),
                caption: Some(said),
                mime: text(body, "media_type"),
                ..Default::default()
            };
            parts.by_mime()
        }
        None if said.is_empty() => Content::Unsupported {
            what: "empty message".into(),
        },
        None => Content::Text(said.to_owned()),
    };
    out.messages.push(Inbound {
        provider_message_id: id,
        from_me: false,
        from_api: false,
        identity: Identity {
            phone: Some(phone),
            ..Default::default()
        },
        name: text(body, "name").map(str::to_owned),
        content,
        timestamp_ms: None,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixture, one, said, FIRST_TEXT, PHONE};

    const TEXT: &str = include_str!("../../../tests/fixtures/providers/http-sms/inbound-text.json");

    #[test]
    fn a_gateway_message_and_a_report() {
        let m = one(parse(&fixture(TEXT)));
        assert_eq!(
            (m.provider_message_id.as_str(), m.identity.phone.as_deref()),
            ("gw-88412", Some(PHONE))
        );
        assert_eq!(m.content, said(FIRST_TEXT));
        let alias = serde_json::json!({"message_id": 7, "from": "5511987654321", "body": "Oi"});
        assert_eq!(one(parse(&alias)).provider_message_id, "7");
        let report = parse(&serde_json::json!({"id": "out-1", "status": "FAILED", "error": "blocked"})).unwrap();
        assert_eq!(report.statuses[0].status, Reported::Failed);
        assert!(parse(&serde_json::json!({"id": "x", "from": "nobody", "text": "hi"})).is_err());
    }
}
