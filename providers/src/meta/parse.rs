//! Meta WhatsApp Cloud API webhooks: `{object: "whatsapp_business_account", entry[]}`, where
//! each `entry[].changes[]` has a `field` and a `value`. `field: "messages"` carries inbound
//! `messages[]` (senders in `contacts[]`) and/or `statuses[]` about what we sent, and one
//! POST can batch several of each. Media come as ids that must be resolved with
//! `GET /{media-id}` (and an access token) before download, so they are `file_ref`s.

use serde_json::Value;

use leadflow_shared::delivery::Reported;
use leadflow_shared::inbound::{
    display_name, e164, epoch_ms, int, scalar, shape, text, Content, Identity, Inbound, MediaKind, MediaParts,
    ParseError, Parsed, StatusUpdate,
};

const PROVIDER: &str = "meta-cloud";

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    if let Some(object) = text(body, "object").filter(|o| *o != "whatsapp_business_account") {
        return Err(shape(PROVIDER, format!("object is {object:?}")));
    }
    let entries = body
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| shape(PROVIDER, "no `entry[]`"))?;
    let mut out = Parsed::default();
    for change in entries.iter().filter_map(|e| e.get("changes")?.as_array()).flatten() {
        let value = change.get("value").unwrap_or(&Value::Null);
        match text(change, "field").unwrap_or_default() {
            "messages" => messages(value, &mut out),
            // Coexistence numbers: what a human sent from the WhatsApp Business app.
            "smb_message_echoes" => echoes(value, &mut out),
            other => out.ignored.push(format!("meta field {other}")),
        }
    }
    Ok(out)
}

/// Keeps only the changes addressed to `phone_number_id` (the channel's number) and
/// returns how many it dropped. One Meta app secret often serves many numbers, so a valid
/// signature alone does not say which channel a change is for: a change about another
/// number is acknowledged and ignored, never stored on this channel. Changes that name no
/// number are kept (they carry no messages).
pub fn retain_changes_for(body: &mut Value, phone_number_id: &str) -> usize {
    let mut dropped = 0;
    let Some(entries) = body.get_mut("entry").and_then(Value::as_array_mut) else {
        return 0;
    };
    for entry in entries {
        if let Some(changes) = entry.get_mut("changes").and_then(Value::as_array_mut) {
            changes.retain(|c| {
                let own = match c.pointer("/value/metadata/phone_number_id") {
                    None => true,
                    Some(Value::String(id)) => id.trim() == phone_number_id.trim(),
                    Some(Value::Number(id)) => id.to_string() == phone_number_id.trim(),
                    Some(_) => false,
                };
                dropped += usize::from(!own);
                own
            });
        }
    }
    dropped
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn messages(value: &Value, out: &mut Parsed) {
    let contacts = list(value, "contacts");
    for m in list(value, "messages") {
        inbound(m, contacts, out);
    }
    for s in list(value, "statuses") {
        status(s, out);
    }
    for e in list(value, "errors") {
        out.ignored
            .push(format!("meta error {}", scalar(e, "code").unwrap_or_default()));
    }
}

fn inbound(m: &Value, contacts: &[Value], out: &mut Parsed) {
    let Some(id) = text(m, "id") else {
        out.ignored.push("meta message without id".to_owned());
        return;
    };
    let from = text(m, "from");
    // A batch can hold several senders: use this one's entry. Its `wa_id` is the canonical
    // number (Brazilian numbers may differ from what was typed by the 9th digit).
    let contact = contacts
        .iter()
        .find(|c| from.is_some() && text(c, "wa_id") == from)
        .or(match contacts {
            [only] => Some(only),
            _ => None,
        });
    let Some(phone) = contact.and_then(|c| text(c, "wa_id")).or(from).and_then(e164) else {
        // Business-scoped user ids (usernames without a phone) have no Identity field yet.
        let user = contact.and_then(|c| text(c, "user_id")).unwrap_or("?");
        out.ignored
            .push(format!("meta message {id} without a phone (user id {user})"));
        return;
    };
    let Some(content) = content(m) else {
        out.ignored
            .push(format!("meta {} message {id}", text(m, "type").unwrap_or_default()));
        return;
    };
    out.messages.push(Inbound {
        provider_message_id: id.to_owned(),
        from_me: false,
        from_api: false,
        identity: Identity {
            phone: Some(phone),
            ..Default::default()
        },
        name: display_name(contact.and_then(|c| c.pointer("/profile/name")?.as_str())),
        content,
        timestamp_ms: epoch_ms(int(m, "timestamp")),
    });
}

/// The content of a message object, or None for system notices (number changes, first
/// contact without a message) that are not something the lead said.
fn content(m: &Value) -> Option<Content> {
    let said = |pointer: &str| m.pointer(pointer).and_then(Value::as_str);
    let parts = |key: &str| {
        let part = m.get(key).unwrap_or(&Value::Null);
        MediaParts {
            file_ref: text(part, "id"),
            caption: text(part, "caption"),
            mime: text(part, "mime_type"),
            file_name: text(part, "filename"),
            ..Default::default()
        }
    };
    let kind = text(m, "type").unwrap_or("unknown");
    Some(match kind {
        "text" => Content::Text(said("/text/body").unwrap_or_default().to_owned()),
        "image" => parts("image").media(MediaKind::Image),
        "audio" => parts("audio").media(MediaKind::Audio),
        "document" => parts("document").document(),
        // Quick-reply buttons on templates and interactive replies: the label the lead tapped.
        "button" | "interactive" => match said("/button/text")
            .or_else(|| said("/interactive/button_reply/title"))
            .or_else(|| said("/interactive/list_reply/title"))
        {
            Some(t) => Content::Text(t.to_owned()),
            None => Content::Unsupported { what: kind.to_owned() },
        },
        "system" | "request_welcome" => return None,
        other => Content::Unsupported { what: other.to_owned() },
    })
}

fn status(s: &Value, out: &mut Parsed) {
    let Some(id) = text(s, "id") else {
        out.ignored.push("meta status without id".to_owned());
        return;
    };
    let raw = text(s, "status").unwrap_or_default();
    let status = match raw {
        "sent" => Reported::Sent,
        "delivered" => Reported::Delivered,
        "read" => Reported::Read,
        "failed" => Reported::Failed,
        // Gupshup v3 adds `enqueued` (accepted by Gupshup, not yet by WhatsApp); `deleted`.
        _ => {
            out.ignored.push(format!("meta status {raw} for {id}"));
            return;
        }
    };
    let error = list(s, "errors").first();
    // Gupshup v3 relays Meta's statuses with its own `gs_id`: that is the id its send
    // call returned, so it comes first and the wamid is the fallback.
    let (id, also_id) = match text(s, "gs_id") {
        Some(gs_id) => (gs_id, Some(id.to_owned())),
        None => (id, None),
    };
    out.statuses.push(StatusUpdate {
        provider_message_id: id.to_owned(),
        also_id,
        status,
        error_code: error.and_then(|e| scalar(e, "code")),
        error: error.and_then(describe),
    });
}

fn describe(e: &Value) -> Option<String> {
    let title = text(e, "title").or_else(|| text(e, "message"));
    let details = e.pointer("/error_data/details").and_then(Value::as_str);
    match (title, details) {
        (Some(t), Some(d)) if t != d => Some(format!("{t}: {d}")),
        (Some(t), _) => Some(t.to_owned()),
        (None, d) => d.map(str::to_owned),
    }
}

/// `message_echoes[]` mirror `messages[]` with `from` = the business and `to` = the lead.
fn echoes(value: &Value, out: &mut Parsed) {
    for m in list(value, "message_echoes") {
        let (Some(id), Some(phone)) = (text(m, "id"), text(m, "to").and_then(e164)) else {
            out.ignored.push("meta echo without id or recipient".to_owned());
            continue;
        };
        let Some(content) = content(m) else { continue };
        out.messages.push(Inbound {
            provider_message_id: id.to_owned(),
            from_me: true,
            from_api: false,
            identity: Identity {
                phone: Some(phone),
                ..Default::default()
            },
            name: None,
            content,
            timestamp_ms: epoch_ms(int(m, "timestamp")),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use leadflow_shared::inbound::MediaKind::{Audio, Image, Pdf};
    use serde_json::json;

    const TEXT: &str = include_str!("../../../tests/fixtures/providers/meta-cloud/webhook-text.json");
    const IMAGE: &str = include_str!("../../../tests/fixtures/providers/meta-cloud/webhook-image.json");
    const MARIANA: &str = r#"{"profile": {"name": "Mariana Souza"}, "wa_id": "5511987654321"}"#;

    #[test]
    fn changes_for_another_number_are_dropped() {
        let mut body = fixture(TEXT);
        let other = body["entry"][0]["changes"][0].clone();
        let mut other = other;
        other["value"]["metadata"]["phone_number_id"] = json!("999999999999999");
        other["value"]["messages"][0]["id"] = json!("wamid.injected");
        body["entry"][0]["changes"].as_array_mut().unwrap().push(other);
        assert_eq!(parse(&body).unwrap().messages.len(), 2);
        assert_eq!(retain_changes_for(&mut body, "158072934066266"), 1);
        let kept = parse(&body).unwrap();
        assert_eq!(kept.messages.len(), 1);
        assert_ne!(kept.messages[0].provider_message_id, "wamid.injected");
        assert_eq!(retain_changes_for(&mut body, "999999999999999"), 1);
        assert!(parse(&body).unwrap().messages.is_empty());
    }

    fn change(field: &str, value: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "112535025189792", "changes": [{"field": field, "value": value}]}]})
    }

    fn lead() -> Identity {
        Identity {
            phone: Some(PHONE.into()),
            ..Default::default()
        }
    }

    #[test]
    fn text_message() {
        let expected = Inbound {
            provider_message_id: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBNTU0RTIwRUNBQkYzRDQ1QkIyAA==".into(),
            from_me: false,
            from_api: false,
            identity: lead(),
            name: Some("Mariana Souza".into()),
            content: said(FIRST_TEXT),
            timestamp_ms: Some(1_732_197_600_000),
        };
        assert_eq!(one(parse(&fixture(TEXT))), expected);
    }

    #[test]
    fn image_is_a_media_id() {
        let m = one(parse(&fixture(IMAGE)));
        assert_eq!(
            m.provider_message_id,
            "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBQzJEOTRFNzFCMEY4NUE2RTEzAA=="
        );
        assert_eq!((&m.identity, m.timestamp_ms), (&lead(), Some(1_732_197_630_000)));
        let expected = media(
            Image,
            None,
            Some("2129384756012345"),
            PHOTO_CAPTION,
            Some("image/jpeg"),
            None,
        );
        assert_eq!(m.content, expected);
    }

    #[test]
    fn failed_status_outside_the_24h_window() {
        let details = "Message failed to send because more than 24 hours have passed since the customer last replied to this number.";
        let error = json!({"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
            "error_data": {"details": details}, "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"});
        let statuses = json!([
            {"id": "wamid.OUT1", "status": "failed", "timestamp": "1732290000", "recipient_id": "5511987654321", "errors": [error]},
            {"id": "wamid.OUT2", "status": "read", "timestamp": "1732290001", "recipient_id": "5511987654321"}]);
        let p = parse(&change(
            "messages",
            json!({"messaging_product": "whatsapp", "statuses": statuses}),
        ))
        .unwrap();
        let failed = StatusUpdate {
            provider_message_id: "wamid.OUT1".into(),
            also_id: None,
            status: Reported::Failed,
            error_code: Some("131047".into()),
            error: Some(format!("Re-engagement message: {details}")),
        };
        let read = StatusUpdate {
            provider_message_id: "wamid.OUT2".into(),
            also_id: None,
            status: Reported::Read,
            error_code: None,
            error: None,
        };
        assert_eq!(p.statuses, [failed, read]);
    }

    #[test]
    fn batch_of_senders_voice_pdf_and_reaction() {
        let joao = json!({"profile": {"name": "João"}, "wa_id": "5521912345678"});
        let messages = json!([
            {"from": "5521912345678", "id": "wamid.A", "timestamp": "1732197700", "type": "audio",
             "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "x", "id": "1001", "voice": true}},
            {"from": "5511987654321", "id": "wamid.B", "timestamp": "1732197701", "type": "document",
             "document": {"caption": "RG", "filename": "rg.pdf", "mime_type": "application/pdf", "id": "1002"}},
            {"from": "5511987654321", "id": "wamid.C", "timestamp": "1732197702", "type": "reaction",
             "reaction": {"message_id": "wamid.OUT1", "emoji": "👍"}}]);
        let value = json!({"contacts": [fixture(MARIANA), joao], "messages": messages});
        let p = parse(&change("messages", value)).unwrap();
        let [a, b, c] = &p.messages[..] else { panic!("{p:?}") };
        assert_eq!(
            (a.identity.phone.as_deref(), a.name.as_deref()),
            (Some("+5521912345678"), Some("João"))
        );
        assert_eq!(
            a.content,
            media(Audio, None, Some("1001"), "", Some("audio/ogg; codecs=opus"), None)
        );
        assert_eq!((&b.identity, b.name.as_deref()), (&lead(), Some("Mariana Souza")));
        assert_eq!(
            b.content,
            media(Pdf, None, Some("1002"), "RG", Some("application/pdf"), Some("rg.pdf"))
        );
        assert_eq!(c.content, unsupported("reaction"));
    }

    #[test]
    fn buttons_echoes_and_other_fields() {
        let tap = json!({"from": "5511987654321", "id": "wamid.D", "timestamp": "1732197703", "type": "button",
            "button": {"payload": "QUERO_VISITAR_4821", "text": "Quero visitar"}});
        let button = change("messages", json!({"contacts": [fixture(MARIANA)], "messages": [tap]}));
        assert_eq!(one(parse(&button)).content, said("Quero visitar"));

        let typed = json!({"from": "5511912345678", "to": "5511987654321", "id": "wamid.E", "timestamp": "1732197704",
            "type": "text", "text": {"body": "Oi Mariana, aqui é o Carlos"}});
        let m = one(parse(&change("smb_message_echoes", json!({"message_echoes": [typed]}))));
        assert!(m.from_me);
        assert_eq!((m.identity, m.name), (lead(), None));

        let template = change("message_template_status_update", json!({"event": "APPROVED"}));
        assert_eq!(ignored(parse(&template)), ["meta field message_template_status_update"]);
        assert!(parse(&json!({"object": "page", "entry": []})).is_err());
        assert!(parse(&json!({"update_id": 1})).is_err());
    }
}
