//! Helpers and the fictional lead shared by the providers' tests: every provider's example
//! payloads describe the same conversation, so they must normalise to the same values.

use leadflow_shared::inbound::{Content, Inbound, MediaKind, ParseError, Parsed};
use serde_json::Value;

pub(crate) const PHONE: &str = "+5511987654321";
pub(crate) const FIRST_TEXT: &str = "Oi! Vi o anúncio do apartamento na Vila Mariana. Ainda está disponível?";
pub(crate) const PHOTO_CAPTION: &str = "Esse é o prédio que eu vi no site";
pub(crate) const OUR_REPLY: &str = "Olá, Mariana! Sim, o apartamento ainda está disponível. Posso te mandar as fotos?";

pub(crate) fn fixture(raw: &str) -> Value {
    serde_json::from_str(raw).expect("fixture is JSON")
}

/// `base` with the top-level keys of `extra` added or replaced.
pub(crate) fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// The single message a webhook carried.
pub(crate) fn one(parsed: Result<Parsed, ParseError>) -> Inbound {
    let parsed = parsed.expect("parses");
    assert_eq!(parsed.messages.len(), 1, "{parsed:?}");
    parsed.messages.into_iter().next().expect("one message")
}

/// What a webhook that carried nothing usable listed as ignored.
pub(crate) fn ignored(parsed: Result<Parsed, ParseError>) -> Vec<String> {
    let parsed = parsed.expect("parses");
    assert!(parsed.messages.is_empty() && parsed.statuses.is_empty(), "{parsed:?}");
    parsed.ignored
}

pub(crate) fn said(text: &str) -> Content {
    Content::Text(text.to_owned())
}

pub(crate) fn unsupported(what: &str) -> Content {
    Content::Unsupported { what: what.to_owned() }
}

pub(crate) fn media(
    kind: MediaKind,
    url: Option<&str>,
    file_ref: Option<&str>,
    caption: &str,
    mime: Option<&str>,
    file_name: Option<&str>,
) -> Content {
    Content::Media {
        kind,
        url: url.map(str::to_owned),
        file_ref: file_ref.map(str::to_owned),
        caption: caption.to_owned(),
        mime: mime.map(str::to_owned),
        file_name: file_name.map(str::to_owned),
    }
}

/// A form-encoded fixture (Twilio) as the webhook handler stores it.
pub(crate) fn form(raw: &str) -> Value {
    leadflow_shared::inbound::form_to_json(&leadflow_shared::inbound::form_fields(raw.trim().as_bytes()))
}
