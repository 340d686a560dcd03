//! Z-API webhooks (developer.z-api.io). Every callback is one flat JSON object whose `type`
//! names it: `ReceivedCallback` (a message in either direction once "notify sent by me" is
//! on), `MessageStatusCallback`, `DeliveryCallback` (our send left Z-API), and the
//! `ConnectedCallback` / `DisconnectedCallback` pair. Media arrive as plain HTTPS URLs on
//! Z-API's storage (kept 30 days), so no `file_ref` is needed.

use serde_json::Value;

use leadflow_shared::channel::Connection;
use leadflow_shared::delivery::Reported;
use leadflow_shared::inbound::{
    display_name, epoch_ms, flag, int, jid, shape, text, Content, Identity, Inbound, MediaKind, MediaParts, ParseError,
    Parsed, StatusUpdate,
};

const PROVIDER: &str = "z-api";

/// Message keys Z-API documents that the pipeline cannot use.
const UNSUPPORTED: &[&str] = &[
    "video",
    "sticker",
    "location",
    "reaction",
    "contact",
    "poll",
    "pollVote",
    "product",
    "order",
    "requestPayment",
    "sendPayment",
    "reviewAndPay",
    "reviewOrder",
    "pinMessage",
];

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    let kind = text(body, "type").ok_or_else(|| shape(PROVIDER, "no `type`"))?;
    let mut out = Parsed::default();
    match kind {
        // The docs spell it both ways.
        "ReceivedCallback" | "ReceivedCallBack" => received(body, &mut out)?,
        "MessageStatusCallback" => statuses(body, &mut out),
        "DeliveryCallback" => delivery(body, &mut out)?,
        "ConnectedCallback" => out.connection = Some(Connection::Connected),
        "DisconnectedCallback" => out.connection = Some(Connection::Disconnected),
        other => out.ignored.push(format!("z-api {other}")),
    }
    Ok(out)
}

fn received(body: &Value, out: &mut Parsed) -> Result<(), ParseError> {
    let id = text(body, "messageId").ok_or_else(|| shape(PROVIDER, "ReceivedCallback without `messageId`"))?;
    let chat = jid(text(body, "phone").unwrap_or_default());
    let skip = if flag(body, "isGroup") {
        Some("group")
    } else if flag(body, "isNewsletter") {
        Some("newsletter")
    } else {
        // Status posts come from `status@broadcast`. The `broadcast` flag alone is not
        // enough: a lead's broadcast-list message lands in their private chat with it set.
        chat.skip_reason()
    };
    if let Some(what) = skip {
        out.ignored.push(format!("z-api {what} message {id}"));
        return Ok(());
    }
    // Notifications are WhatsApp system lines (encryption notice, deleted message…); only
    // missed calls are something the lead did.
    if let Some(n) = text(body, "notification").filter(|n| !n.starts_with("CALL_")) {
        out.ignored.push(format!("z-api notification {n} ({id})"));
        return Ok(());
    }

    let from_me = flag(body, "fromMe");
    // `phone` may itself be a LID when WhatsApp hides the number; `chatLid` is the stable id.
    let mut identity = Identity::default();
    identity.absorb(chat);
    if let Some(lid) = text(body, "chatLid") {
        identity.absorb(jid(lid));
    }
    // `senderLid` is the author: the lead in a private chat, unless we wrote it.
    if let Some(lid) = text(body, "senderLid").filter(|_| !from_me) {
        identity.absorb(jid(lid));
    }
    if identity.is_empty() {
        out.ignored.push(format!("z-api message {id} without phone or lid"));
        return Ok(());
    }

    let content = content(body);
    // "Waiting for this message": WhatsApp has not delivered the decrypted content yet.
    if flag(body, "waitingMessage") && matches!(content, Content::Unsupported { .. }) {
        out.ignored
            .push(format!("z-api message {id} still waiting for its content"));
        return Ok(());
    }
    // On our own messages `senderName` is the business; `chatName` is still the lead.
    let name = if from_me {
        display_name(text(body, "chatName"))
    } else {
        display_name(text(body, "senderName")).or_else(|| display_name(text(body, "chatName")))
    };
    // The poll examples spell it `moment`.
    let timestamp_ms = epoch_ms(int(body, "momment").or_else(|| int(body, "moment")));
    // An edit reuses the original id; give each version its own key so dedupe keeps it.
    let provider_message_id = match (flag(body, "isEdit"), timestamp_ms) {
        (true, Some(t)) => format!("{id}:edit:{t}"),
        (true, None) => format!("{id}:edit"),
        (false, _) => id.to_owned(),
    };
    out.messages.push(Inbound {
        provider_message_id,
        from_me,
        from_api: flag(body, "fromApi"),
        identity,
        name,
        content,
        timestamp_ms,
    });
    Ok(())
}

fn content(body: &Value) -> Content {
    let part = |key: &str| body.get(key).filter(|v| v.is_object());
    let said = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    if let Some(t) = said("/text/message") {
        return Content::Text(t.to_owned());
    }
    if let Some(p) = part("image") {
        let parts = MediaParts {
            url: text(p, "imageUrl"),
            caption: text(p, "caption"),
            mime: text(p, "mimeType"),
            ..Default::default()
        };
        return parts.media(MediaKind::Image);
    }
    if let Some(p) = part("audio") {
        let parts = MediaParts {
            url: text(p, "audioUrl"),
            mime: text(p, "mimeType"),
            ..Default::default()
        };
        return parts.media(MediaKind::Audio);
    }
    if let Some(p) = part("document") {
        let parts = MediaParts {
            url: text(p, "documentUrl"),
            caption: text(p, "caption"),
            mime: text(p, "mimeType"),
            file_name: text(p, "fileName").or_else(|| text(p, "title")),
            ..Default::default()
        };
        return parts.document();
    }
    // A tapped button or list row is the lead answering with that label.
    if let Some(t) = said("/buttonsResponseMessage/message")
        .or_else(|| said("/listResponseMessage/message"))
        .or_else(|| said("/listResponseMessage/title"))
    {
        return Content::Text(t.to_owned());
    }
    if let Some(n) = text(body, "notification") {
        return Content::Unsupported {
            what: format!("call ({n})"),
        };
    }
    let what = UNSUPPORTED
        .iter()
        .copied()
        .find(|&k| part(k).is_some())
        .unwrap_or("unknown");
    Content::Unsupported { what: what.to_owned() }
}

fn statuses(body: &Value, out: &mut Parsed) {
    let raw = text(body, "status").unwrap_or_default();
    let status = match raw {
        "SENT" => Reported::Sent,
        "RECEIVED" | "DELIVERED" => Reported::Delivered,
        "READ" | "PLAYED" => Reported::Read,
        // READ_BY_ME / READ-SELF are our own read receipts on the lead's messages.
        _ => {
            out.ignored.push(format!("z-api status {raw}"));
            return;
        }
    };
    let ids: Vec<&str> = match body.get("ids") {
        Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).collect(),
        _ => text(body, "id").into_iter().collect(),
    };
    if ids.is_empty() {
        out.ignored.push(format!("z-api status {raw} without ids"));
    }
    out.statuses.extend(ids.into_iter().map(|id| StatusUpdate {
        provider_message_id: id.to_owned(),
        also_id: None,
        status,
        error_code: None,
        error: None,
    }));
}

fn delivery(body: &Value, out: &mut Parsed) -> Result<(), ParseError> {
    let id = text(body, "messageId")
        .or_else(|| text(body, "zaapId"))
        .ok_or_else(|| shape(PROVIDER, "DeliveryCallback without `messageId`"))?;
    let error = text(body, "error").map(str::to_owned);
    out.statuses.push(StatusUpdate {
        provider_message_id: id.to_owned(),
        also_id: None,
        status: if error.is_some() {
            Reported::Failed
        } else {
            Reported::Sent
        },
        error_code: None,
        error,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use leadflow_shared::inbound::MediaKind::{Audio, Image, Pdf};
    use serde_json::json;

    const TEXT: &str = include_str!("../../../tests/fixtures/providers/zapi/webhook-received-text.json");
    const IMAGE: &str = include_str!("../../../tests/fixtures/providers/zapi/webhook-received-image.json");
    const AUDIO: &str = include_str!("../../../tests/fixtures/providers/zapi/webhook-received-audio.json");
    const FROM_API: &str = include_str!("../../../tests/fixtures/providers/zapi/webhook-received-fromme-api.json");
    const DISCONNECTED: &str = include_str!("../../../tests/fixtures/providers/zapi/webhook-disconnected.json");
    const FILES: &str =
        "https://f004.backblazeb2.com/file/temp-file-download/instances/3E4F7360B552F0C2DBCB9E6774402775";
    const LID: &str = "81896604192873@lid";

    fn lead() -> Identity {
        Identity {
            phone: Some(PHONE.into()),
            wa_lid: Some(LID.into()),
            ..Default::default()
        }
    }

    fn received(extra: Value) -> Value {
        with(
            json!({"type": "ReceivedCallback", "messageId": "M1", "phone": "5511987654321", "fromMe": false}),
            extra,
        )
    }

    #[test]
    fn received_text() {
        let expected = Inbound {
            provider_message_id: "3A554E20ECABF3D45BB2".into(),
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
    fn received_image_and_audio_urls() {
        let m = one(parse(&fixture(IMAGE)));
        assert_eq!(
            (m.provider_message_id.as_str(), &m.identity),
            ("3AC2D94E71B0F85A6E13", &lead())
        );
        let url = format!("{FILES}/3AC2D94E71B0F85A6E13/bQ7uLw9sPzRk.jpeg");
        assert_eq!(
            m.content,
            media(Image, Some(&url), None, PHOTO_CAPTION, Some("image/jpeg"), None)
        );

        let m = one(parse(&fixture(AUDIO)));
        assert_eq!(
            (m.provider_message_id.as_str(), m.timestamp_ms),
            ("3A8F1C0D2B7E94A61C55", Some(1_732_197_612_000))
        );
        let url = format!("{FILES}/3A8F1C0D2B7E94A61C55/Xk9rT2pQe1vY.ogg");
        assert_eq!(
            m.content,
            media(Audio, Some(&url), None, "", Some("audio/ogg; codecs=opus"), None)
        );
    }

    #[test]
    fn our_api_send_comes_back_from_me() {
        let m = one(parse(&fixture(FROM_API)));
        assert_eq!(m.provider_message_id, "3EB0EE5C811ACA0277C307");
        assert!(m.from_me && m.from_api);
        assert_eq!((&m.identity, m.content), (&lead(), said(OUR_REPLY)));
        // senderName is the business here; the chat is still the lead.
        assert_eq!(m.name.as_deref(), Some("Mariana Souza"));
    }

    #[test]
    fn connection_callbacks() {
        let p = parse(&fixture(DISCONNECTED)).unwrap();
        assert_eq!((p.connection, p.messages.len()), (Some(Connection::Disconnected), 0));
        let connected = json!({"type": "ConnectedCallback", "connected": true, "momment": 1732201300000_i64, "phone": "5511912345678"});
        assert_eq!(parse(&connected).unwrap().connection, Some(Connection::Connected));
    }

    #[test]
    fn lid_only_pdf_and_other_message_kinds() {
        let pdf =
            json!({"documentUrl": "https://z/p.pdf", "mimeType": "application/pdf", "title": "p", "fileName": "p.pdf"});
        let m = one(parse(&received(
            json!({"phone": LID, "chatLid": null, "senderName": "5511987654321", "chatName": "Mari", "document": pdf}),
        )));
        assert_eq!((m.identity.phone, m.identity.wa_lid.as_deref()), (None, Some(LID)));
        // A "name" that is only the number is no name.
        assert_eq!(m.name.as_deref(), Some("Mari"));
        let expected = media(
            Pdf,
            Some("https://z/p.pdf"),
            None,
            "",
            Some("application/pdf"),
            Some("p.pdf"),
        );
        assert_eq!(m.content, expected);

        let xls = json!({"document": {"documentUrl": "https://z/t.xls", "mimeType": "application/vnd.ms-excel", "fileName": "t.xls"}});
        assert_eq!(
            one(parse(&received(xls))).content,
            unsupported("document (application/vnd.ms-excel)")
        );
        let reaction = json!({"reaction": {"value": "❤️", "referencedMessage": {"messageId": "3EB0", "fromMe": true}}});
        assert_eq!(one(parse(&received(reaction))).content, unsupported("reaction"));
        let button = json!({"buttonsResponseMessage": {"buttonId": "1", "message": "Quero visitar"}});
        assert_eq!(one(parse(&received(button))).content, said("Quero visitar"));
        let call = json!({"notification": "CALL_MISSED_VOICE"});
        assert_eq!(
            one(parse(&received(call))).content,
            unsupported("call (CALL_MISSED_VOICE)")
        );
        let edit = json!({"isEdit": true, "momment": 1732197800000_i64, "text": {"message": "corrigido"}});
        assert_eq!(one(parse(&received(edit))).provider_message_id, "M1:edit:1732197800000");
    }

    #[test]
    fn groups_newsletters_broadcasts_and_notices_are_ignored() {
        for extra in [
            json!({"phone": "120363019502650977-group", "isGroup": true, "text": {"message": "oi"}}),
            json!({"phone": "120363025246125244@newsletter", "isNewsletter": true}),
            json!({"phone": "status@broadcast", "text": {"message": "story"}}),
            json!({"notification": "REVOKE"}),
        ] {
            assert_eq!(ignored(parse(&received(extra))).len(), 1);
        }
        let presence = json!({"type": "PresenceChatCallback", "status": "COMPOSING"});
        assert_eq!(ignored(parse(&presence)), ["z-api PresenceChatCallback"]);
    }

    #[test]
    fn statuses_and_delivery() {
        let read = json!({"type": "MessageStatusCallback", "status": "READ", "ids": ["3EB0EE5C811ACA0277C307", "3EB0AA"],
            "momment": 1632234645000_i64, "phoneDevice": 0, "phone": "5511987654321", "isGroup": false});
        let got: Vec<_> = parse(&read)
            .unwrap()
            .statuses
            .iter()
            .map(|s| format!("{}={}", s.provider_message_id, s.status.as_str()))
            .collect();
        assert_eq!(got, ["3EB0EE5C811ACA0277C307=read", "3EB0AA=read"]);
        // Our own read receipt on the lead's message.
        let by_me = json!({"type": "MessageStatusCallback", "status": "READ_BY_ME", "ids": ["A"]});
        assert_eq!(ignored(parse(&by_me)).len(), 1);

        let failed = json!({"type": "DeliveryCallback", "phone": "5511987654321", "zaapId": "Z", "messageId": "M", "error": "Number does not exist"});
        let expected = StatusUpdate {
            provider_message_id: "M".into(),
            also_id: None,
            status: Reported::Failed,
            error_code: None,
            error: Some("Number does not exist".into()),
        };
        assert_eq!(parse(&failed).unwrap().statuses, [expected]);
    }

    #[test]
    fn not_zapi() {
        assert!(parse(&json!({"event": "messages.upsert"})).is_err());
        assert!(parse(&json!({"type": "ReceivedCallback", "phone": "5511987654321"})).is_err());
    }
}
