//! Gupshup WhatsApp webhooks in the self-serve "v2" callback format:
//! `{app, timestamp, version, type, payload}`, where `type` is `message` (the lead wrote),
//! `message-event` (a report on something we sent) or `user-event`/`billing-event`/…,
//! which are skipped. Apps on the partner "v3" format receive Meta's own envelope
//! instead; that is handed to [`crate::meta`].
//!
//! Gupshup is an official API: there are no groups, and our own sends never come back as
//! messages, only as `message-event`s keyed by the `messageId` the send call returned.

use serde_json::Value;

use leadflow_shared::delivery::Reported;
use leadflow_shared::inbound::{
    display_name, e164, epoch_ms, int, scalar, shape, text, Content, Identity, Inbound, MediaKind, MediaParts,
    ParseError, Parsed, StatusUpdate,
};

const PROVIDER: &str = "gupshup";

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    if body.get("entry").is_some() {
        return crate::meta::parse::parse(body);
    }
    let kind = text(body, "type").ok_or_else(|| shape(PROVIDER, "no `type`"))?;
    let payload = body
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| shape(PROVIDER, "no `payload` object"))?;
    let mut out = Parsed::default();
    match kind {
        "message" => message(body, payload, &mut out)?,
        "message-event" => event(payload, &mut out),
        other => out.ignored.push(format!("gupshup {other}")),
    }
    Ok(out)
}

fn message(body: &Value, p: &Value, out: &mut Parsed) -> Result<(), ParseError> {
    let id = text(p, "id").ok_or_else(|| shape(PROVIDER, "message without `payload.id`"))?;
    let sender = p.get("sender").unwrap_or(&Value::Null);
    let Some(phone) = text(sender, "phone").or_else(|| text(p, "source")).and_then(e164) else {
        out.ignored.push(format!("gupshup message {id} without a phone"));
        return Ok(());
    };
    let inner = p.get("payload").unwrap_or(&Value::Null);
    let said = |key: &str| inner.get(key).and_then(Value::as_str);
    let media = MediaParts {
        url: text(inner, "url"),
        caption: text(inner, "caption"),
        mime: text(inner, "contentType"),
        file_name: text(inner, "name"),
        ..Default::default()
    };
    let content = match text(p, "type").unwrap_or("unknown") {
        "text" => said("text").map_or_else(|| not_understood("empty text"), |t| Content::Text(t.to_owned())),
        "image" => media.media(MediaKind::Image),
        "audio" => media.media(MediaKind::Audio),
        "file" => media.document(),
        // Taps on buttons and list rows carry the label the lead chose.
        "button_reply" | "list_reply" => {
            said("title").map_or_else(|| not_understood("reply"), |t| Content::Text(t.to_owned()))
        }
        "quick_reply" => said("text").map_or_else(|| not_understood("reply"), |t| Content::Text(t.to_owned())),
        other => not_understood(other),
    };
    out.messages.push(Inbound {
        provider_message_id: id.to_owned(),
        from_me: false,
        from_api: false,
        identity: Identity {
            phone: Some(phone),
            ..Default::default()
        },
        name: display_name(text(sender, "name")),
        content,
        timestamp_ms: epoch_ms(int(body, "timestamp")),
    });
    Ok(())
}

fn not_understood(what: &str) -> Content {
    Content::Unsupported { what: what.to_owned() }
}

fn event(p: &Value, out: &mut Parsed) {
    // Delivery reports carry WhatsApp's id in `id` and Gupshup's (the one the send call
    // returned) in `gsId`; `enqueued` and `failed` only have Gupshup's, in `id`.
    let Some(id) = text(p, "gsId").or_else(|| text(p, "id")) else {
        out.ignored.push("gupshup message-event without id".to_owned());
        return;
    };
    let inner = p.get("payload").unwrap_or(&Value::Null);
    let kind = text(p, "type").unwrap_or_default();
    let (status, error_code, error) = match kind {
        "sent" => (Reported::Sent, None, None),
        "delivered" => (Reported::Delivered, None, None),
        "read" => (Reported::Read, None, None),
        "failed" => (
            Reported::Failed,
            scalar(inner, "code"),
            text(inner, "reason").map(str::to_owned),
        ),
        // `enqueued`: accepted by Gupshup, not yet by WhatsApp; `deleted`: the lead deleted it.
        _ => {
            out.ignored.push(format!("gupshup message-event {kind} for {id}"));
            return;
        }
    };
    // Delivery reports name both ids: the wamid is a fallback when Gupshup's matches nothing.
    let also_id = text(p, "gsId")
        .and(text(p, "id"))
        .filter(|w| *w != id)
        .map(str::to_owned);
    out.statuses.push(StatusUpdate {
        provider_message_id: id.to_owned(),
        also_id,
        status,
        error_code,
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use leadflow_shared::inbound::MediaKind::{Audio, Image, Pdf};
    use serde_json::json;

    const TEXT: &str = include_str!("../../../tests/fixtures/providers/gupshup/v2-inbound-text.json");
    const IMAGE: &str = include_str!("../../../tests/fixtures/providers/gupshup/v2-inbound-image.json");
    const GS_ID: &str = "ee4a68a0-1203-4c85-8dc3-49d0b3226a35";
    const WINDOW_CLOSED: &str =
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number";

    fn inbound(kind: &str, payload: Value) -> Value {
        let sender = json!({"phone": "5511987654321", "name": "Mariana Souza", "country_code": "55", "dial_code": "11987654321"});
        json!({"app": "AcmeImoveis", "timestamp": 1732197700000_i64, "version": 2, "type": "message",
            "payload": {"id": "ABEG1", "source": "5511987654321", "type": kind, "payload": payload, "sender": sender}})
    }

    fn event(kind: &str, id: &str, gs_id: Option<&str>, payload: Value) -> Value {
        json!({"app": "AcmeImoveis", "timestamp": 1732197800000_i64, "version": 2, "type": "message-event",
            "payload": {"id": id, "gsId": gs_id, "type": kind, "destination": "5511987654321", "payload": payload}})
    }

    #[test]
    fn inbound_text() {
        let expected = Inbound {
            provider_message_id: "ABEGVRGYdlQhAhDfrO_Jq2Nr4KZ-_Fo1UFBh".into(),
            from_me: false,
            from_api: false,
            identity: Identity {
                phone: Some(PHONE.into()),
                ..Default::default()
            },
            name: Some("Mariana Souza".into()),
            content: said(FIRST_TEXT),
            timestamp_ms: Some(1_732_197_600_512),
        };
        assert_eq!(one(parse(&fixture(TEXT))), expected);
    }

    #[test]
    fn inbound_image() {
        let m = one(parse(&fixture(IMAGE)));
        assert_eq!(m.provider_message_id, "ABEGVRGYdlQhAhBLQeU3Bq6yXcrN1f5ZbWsR");
        assert_eq!(
            (m.identity.phone.as_deref(), m.timestamp_ms),
            (Some(PHONE), Some(1_732_197_630_211))
        );
        let url = "https://filemanager.gupshup.io/wa/7f2c1e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b/wa/media/5b1f9c2e-7d3a-4e8b-9c0f-1a2b3c4d5e6f?download=false";
        assert_eq!(
            m.content,
            media(Image, Some(url), None, PHOTO_CAPTION, Some("image/jpeg"), None)
        );
    }

    #[test]
    fn audio_file_and_other_types() {
        let audio =
            json!({"url": "https://gs/a.ogg", "contentType": "audio/ogg; codecs=opus", "urlExpiry": 1732802430211_i64});
        let expected = media(
            Audio,
            Some("https://gs/a.ogg"),
            None,
            "",
            Some("audio/ogg; codecs=opus"),
            None,
        );
        assert_eq!(one(parse(&inbound("audio", audio))).content, expected);
        let pdf =
            json!({"url": "https://gs/p", "name": "proposta.pdf", "contentType": "application/pdf", "caption": ""});
        let expected = media(
            Pdf,
            Some("https://gs/p"),
            None,
            "",
            Some("application/pdf"),
            Some("proposta.pdf"),
        );
        assert_eq!(one(parse(&inbound("file", pdf))).content, expected);
        let docx = json!({"url": "https://gs/d", "name": "contrato.docx", "contentType": "application/msword"});
        assert_eq!(
            one(parse(&inbound("file", docx))).content,
            unsupported("document (application/msword)")
        );
        let location = json!({"longitude": -46.63, "latitude": -23.58});
        assert_eq!(
            one(parse(&inbound("location", location))).content,
            unsupported("location")
        );
        let button = json!({"title": "Quero visitar", "id": "1", "reply": "Quero visitar 1"});
        assert_eq!(
            one(parse(&inbound("button_reply", button))).content,
            said("Quero visitar")
        );
    }

    #[test]
    fn message_events() {
        let failed = event("failed", GS_ID, None, json!({"code": 470, "reason": WINDOW_CLOSED}));
        let expected = StatusUpdate {
            provider_message_id: GS_ID.into(),
            also_id: None,
            status: Reported::Failed,
            error_code: Some("470".into()),
            error: Some(WINDOW_CLOSED.into()),
        };
        assert_eq!(parse(&failed).unwrap().statuses, [expected]);
        // Delivery reports are matched on Gupshup's id, not WhatsApp's.
        let delivered = event(
            "delivered",
            "gBEGVRGYdlQhAgkD7bRi9syGnBk",
            Some(GS_ID),
            json!({"ts": 1732197801}),
        );
        let p = parse(&delivered).unwrap();
        assert_eq!(
            (
                p.statuses[0].provider_message_id.as_str(),
                p.statuses[0].also_id.as_deref(),
                p.statuses[0].status
            ),
            (GS_ID, Some("gBEGVRGYdlQhAgkD7bRi9syGnBk"), Reported::Delivered)
        );
        let enqueued = event(
            "enqueued",
            GS_ID,
            None,
            json!({"whatsappMessageId": "gBEG", "type": "session"}),
        );
        assert_eq!(ignored(parse(&enqueued)).len(), 1);
        let opted_in = json!({"app": "AcmeImoveis", "timestamp": 1, "version": 2, "type": "user-event", "payload": {"type": "opted-in"}});
        assert_eq!(ignored(parse(&opted_in)), ["gupshup user-event"]);
    }

    #[test]
    fn v3_callbacks_are_meta_format() {
        let message = json!({"from": "5511987654321", "id": "wamid.X", "timestamp": "1732197600", "type": "text", "text": {"body": "Oi"}});
        let value =
            json!({"messaging_product": "whatsapp", "contacts": [{"wa_id": "5511987654321"}], "messages": [message]});
        let body = json!({"gs_app_id": "7f2c", "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]});
        let m = one(parse(&body));
        assert_eq!((m.provider_message_id.as_str(), m.content), ("wamid.X", said("Oi")));
    }

    #[test]
    fn not_gupshup() {
        assert!(parse(&json!({"update_id": 1})).is_err());
        assert!(parse(&json!({"type": "message", "payload": {"type": "text"}})).is_err());
    }
}
