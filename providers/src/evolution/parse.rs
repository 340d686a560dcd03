//! Evolution API v2 webhooks (self-hosted Baileys). Every POST is the envelope
//! `{event, instance, data, destination, date_time, sender, server_url, apikey}`; `sender`
//! is the instance's own number, never the lead. Evolution retries slow deliveries up to
//! ten times, so duplicates are normal and `key.id` is the dedupe key.
//!
//! The `url` inside `imageMessage`/`audioMessage`/`documentMessage` points at WhatsApp's
//! encrypted CDN and cannot be downloaded as is: a `url` is reported only when Evolution
//! stored the file itself (`message.mediaUrl`, with S3/MinIO configured); otherwise the
//! message key id is the `file_ref` for `getBase64FromMediaMessage`.

use serde_json::Value;

use leadflow_shared::channel::Connection;
use leadflow_shared::delivery::Reported;
use leadflow_shared::inbound::{
    display_name, epoch_ms, flag, int, jid, shape, text, Content, Identity, Inbound, MediaKind, MediaParts, ParseError,
    Parsed, StatusUpdate,
};

const PROVIDER: &str = "evolution";

/// Containers WhatsApp puts around the real content (disappearing and view-once messages,
/// documents with a caption).
const WRAPPERS: &[&str] = &[
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
];

const UNSUPPORTED: &[(&str, &str)] = &[
    ("videoMessage", "video"),
    ("ptvMessage", "video note"),
    ("stickerMessage", "sticker"),
    ("locationMessage", "location"),
    ("liveLocationMessage", "location"),
    ("contactMessage", "contact"),
    ("contactsArrayMessage", "contact"),
    ("reactionMessage", "reaction"),
    ("pollCreationMessage", "poll"),
    ("pollCreationMessageV3", "poll"),
    ("pollUpdateMessage", "poll vote"),
    ("eventMessage", "event"),
];

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    let event = text(body, "event").ok_or_else(|| shape(PROVIDER, "no `event`"))?;
    // v1 and some setups send the config spelling (MESSAGES_UPSERT).
    let event = event.to_ascii_lowercase().replace('_', ".");
    let data = body
        .get("data")
        .filter(|d| !d.is_null())
        .ok_or_else(|| shape(PROVIDER, "no `data`"))?;
    let mut out = Parsed::default();
    match event.as_str() {
        "messages.upsert" => {
            for m in items(data) {
                upsert(m, &mut out)?;
            }
        }
        "messages.update" => {
            for u in items(data) {
                update(u, &mut out);
            }
        }
        "send.message" => {
            let id = data.pointer("/key/id").and_then(Value::as_str).unwrap_or("?");
            out.ignored.push(format!("evolution send.message {id} (our own send)"));
        }
        "connection.update" => connection(data, &mut out),
        "logout.instance" => out.connection = Some(Connection::Disconnected),
        other => out.ignored.push(format!("evolution {other}")),
    }
    Ok(out)
}

/// `data` is one object in v2, but some builds batch events in an array.
fn items(data: &Value) -> Vec<&Value> {
    match data {
        Value::Array(list) => list.iter().collect(),
        one => vec![one],
    }
}

fn upsert(m: &Value, out: &mut Parsed) -> Result<(), ParseError> {
    let key = m
        .get("key")
        .ok_or_else(|| shape(PROVIDER, "messages.upsert without `key`"))?;
    let id = text(key, "id").ok_or_else(|| shape(PROVIDER, "messages.upsert without `key.id`"))?;
    let from_me = flag(key, "fromMe");
    let chat = jid(text(key, "remoteJid").unwrap_or_default());
    if let Some(what) = chat.skip_reason() {
        out.ignored.push(format!("evolution {what} message {id}"));
        return Ok(());
    }
    let mut identity = Identity::default();
    identity.absorb(chat);
    // Baileys 7 gives the chat's other address (phone for an @lid chat, or the reverse) in
    // `remoteJidAlt`; older builds give the sender's in `senderPn`/`senderLid`, which is
    // our own number on messages we wrote.
    let mut alternates = vec!["remoteJidAlt"];
    if !from_me {
        alternates.extend(["senderPn", "senderLid"]);
    }
    for field in alternates {
        if let Some(raw) = text(key, field) {
            identity.absorb(jid(raw));
        }
    }
    if identity.is_empty() {
        out.ignored.push(format!("evolution message {id} without phone or lid"));
        return Ok(());
    }
    let content = match content(m, id) {
        Ok(content) => content,
        Err(why) => {
            out.ignored.push(format!("evolution message {id}: {why}"));
            return Ok(());
        }
    };
    out.messages.push(Inbound {
        provider_message_id: id.to_owned(),
        from_me,
        from_api: false,
        identity,
        // On our own messages pushName is the business.
        name: if from_me {
            None
        } else {
            display_name(text(m, "pushName"))
        },
        content,
        timestamp_ms: epoch_ms(int(m, "messageTimestamp")),
    });
    Ok(())
}

/// The message content, or why the event carries none worth recording.
fn content(m: &Value, id: &str) -> Result<Content, &'static str> {
    let outer = m
        .get("message")
        .filter(|v| v.is_object())
        .ok_or("no content (not decrypted?)")?;
    let msg = unwrap_content(outer);
    let said = |pointer: &str| msg.pointer(pointer).and_then(Value::as_str);
    if let Some(t) = said("/conversation").or_else(|| said("/extendedTextMessage/text")) {
        return Ok(Content::Text(t.to_owned()));
    }
    let stored = text(outer, "mediaUrl").or_else(|| text(m, "mediaUrl"));
    if let Some(p) = msg.get("imageMessage") {
        return Ok(parts(p, stored, id).media(MediaKind::Image));
    }
    if let Some(p) = msg.get("audioMessage") {
        return Ok(parts(p, stored, id).media(MediaKind::Audio));
    }
    if let Some(p) = msg.get("documentMessage") {
        return Ok(parts(p, stored, id).document());
    }
    // A tapped button or list row is the lead answering with that label.
    if let Some(t) = said("/buttonsResponseMessage/selectedDisplayText")
        .or_else(|| said("/templateButtonReplyMessage/selectedDisplayText"))
        .or_else(|| said("/listResponseMessage/title"))
    {
        return Ok(Content::Text(t.to_owned()));
    }
    if let Some((_, what)) = UNSUPPORTED.iter().find(|(key, _)| msg.get(*key).is_some()) {
        return Ok(Content::Unsupported {
            what: (*what).to_owned(),
        });
    }
    // Deletes, edits, ephemeral settings and group key exchanges: not something the lead said.
    if msg.get("protocolMessage").is_some() || msg.get("senderKeyDistributionMessage").is_some() {
        return Err("protocol message");
    }
    let what = text(m, "messageType").unwrap_or("unknown");
    Ok(Content::Unsupported { what: what.to_owned() })
}

fn unwrap_content(mut msg: &Value) -> &Value {
    // Wrappers can nest (an ephemeral view-once image); WhatsApp uses at most a few levels.
    for _ in 0..4 {
        match WRAPPERS.iter().find_map(move |w| msg.get(*w)?.get("message")) {
            Some(inner) => msg = inner,
            None => break,
        }
    }
    msg
}

fn parts<'a>(part: &'a Value, stored: Option<&'a str>, id: &'a str) -> MediaParts<'a> {
    MediaParts {
        url: stored,
        file_ref: Some(id),
        caption: text(part, "caption"),
        mime: text(part, "mimetype"),
        file_name: text(part, "fileName").or_else(|| text(part, "title")),
    }
}

fn update(u: &Value, out: &mut Parsed) {
    // v2 sends the WhatsApp id as `keyId` (its `messageId` is Evolution's database id);
    // v1 spreads the key, so `id`.
    let Some(id) = text(u, "keyId").or_else(|| text(u, "id")) else {
        out.ignored.push("evolution messages.update without key id".to_owned());
        return;
    };
    let raw = text(u, "status").unwrap_or_default();
    if !flag(u, "fromMe") {
        out.ignored
            .push(format!("evolution receipt {raw} on the lead's message {id}"));
        return;
    }
    let status = match raw {
        "SERVER_ACK" => Reported::Sent,
        "DELIVERY_ACK" => Reported::Delivered,
        "READ" | "PLAYED" => Reported::Read,
        "ERROR" => Reported::Failed,
        // PENDING (not sent yet), DELETED.
        _ => {
            out.ignored.push(format!("evolution status {raw} for {id}"));
            return;
        }
    };
    out.statuses.push(StatusUpdate {
        provider_message_id: id.to_owned(),
        also_id: None,
        status,
        error_code: None,
        error: None,
    });
}

fn connection(data: &Value, out: &mut Parsed) {
    match text(data, "state") {
        Some("open") => out.connection = Some(Connection::Connected),
        // `refused`: the QR code limit was reached without a scan.
        Some("close" | "refused") => out.connection = Some(Connection::Disconnected),
        other => out.ignored.push(format!(
            "evolution connection.update {}",
            other.unwrap_or("without state")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use leadflow_shared::inbound::MediaKind::{Audio, Image, Pdf};
    use serde_json::json;

    const TEXT: &str =
        include_str!("../../../tests/fixtures/providers/evolution/webhook-messages-upsert-conversation.json");
    const IMAGE: &str = include_str!("../../../tests/fixtures/providers/evolution/webhook-messages-upsert-image.json");
    const AUDIO: &str = include_str!("../../../tests/fixtures/providers/evolution/webhook-messages-upsert-audio.json");
    const SENT: &str = include_str!("../../../tests/fixtures/providers/evolution/webhook-send-message.json");
    const CLOSED: &str =
        include_str!("../../../tests/fixtures/providers/evolution/webhook-connection-update-close.json");

    fn lead() -> Identity {
        Identity {
            phone: Some(PHONE.into()),
            ..Default::default()
        }
    }

    fn upserted(key: Value, message: Value) -> Value {
        json!({"event": "messages.upsert", "instance": "acme-vendas", "sender": "5511912345678@s.whatsapp.net",
            "data": {"key": key, "pushName": "Mariana Souza", "message": message, "messageTimestamp": 1732197700}})
    }

    fn key(id: &str, from_me: bool) -> Value {
        json!({"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": from_me, "id": id})
    }

    #[test]
    fn conversation() {
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
    fn image_and_audio_are_referenced_by_key() {
        let m = one(parse(&fixture(IMAGE)));
        assert_eq!((&m.identity, m.timestamp_ms), (&lead(), Some(1_732_197_630_000)));
        let id = Some("3AC2D94E71B0F85A6E13");
        assert_eq!(
            m.content,
            media(Image, None, id, PHOTO_CAPTION, Some("image/jpeg"), None)
        );

        let m = one(parse(&fixture(AUDIO)));
        let id = Some("3A8F1C0D2B7E94A61C55");
        assert_eq!(
            m.content,
            media(Audio, None, id, "", Some("audio/ogg; codecs=opus"), None)
        );
    }

    #[test]
    fn our_send_and_connection_events() {
        assert_eq!(
            ignored(parse(&fixture(SENT))),
            ["evolution send.message 3EB0EE5C811ACA0277C307 (our own send)"]
        );
        assert_eq!(
            parse(&fixture(CLOSED)).unwrap().connection,
            Some(Connection::Disconnected)
        );
        let open = json!({"event": "connection.update", "instance": "acme-vendas", "data": {"state": "open", "statusReason": 200}});
        assert_eq!(parse(&open).unwrap().connection, Some(Connection::Connected));
    }

    #[test]
    fn lid_chat_with_phone_alternate_and_extended_text() {
        let lid_key = json!({"remoteJid": "81896604192873@lid", "remoteJidAlt": "5511987654321@s.whatsapp.net",
            "fromMe": false, "id": "L1", "addressingMode": "lid"});
        let m = one(parse(&upserted(
            lid_key,
            json!({"extendedTextMessage": {"text": "Tem vaga de garagem?"}}),
        )));
        let identity = Identity {
            wa_lid: Some("81896604192873@lid".into()),
            ..lead()
        };
        assert_eq!((m.identity, m.content), (identity, said("Tem vaga de garagem?")));
        assert_eq!(m.timestamp_ms, Some(1_732_197_700_000));
    }

    #[test]
    fn typed_on_the_phone_is_from_me_without_a_name() {
        // senderPn is our own number on our own messages.
        let key = with(key("H1", true), json!({"senderPn": "5511912345678@s.whatsapp.net"}));
        let m = one(parse(&upserted(
            key,
            json!({"conversation": "Oi Mariana, aqui é o Carlos"}),
        )));
        assert!(m.from_me && !m.from_api);
        assert_eq!((m.identity, m.name), (lead(), None));
    }

    #[test]
    fn wrapped_pdf_with_stored_url_and_unsupported_kinds() {
        let doc = json!({"url": "https://mmg.whatsapp.net/x.enc", "mimetype": "application/pdf", "fileName": "rg.pdf", "caption": "RG"});
        let message = json!({"documentWithCaptionMessage": {"message": {"documentMessage": doc}}, "mediaUrl": "https://s3/P1.pdf"});
        let m = one(parse(&upserted(key("P1", false), message)));
        assert_eq!(
            m.content,
            media(
                Pdf,
                Some("https://s3/P1.pdf"),
                Some("P1"),
                "RG",
                Some("application/pdf"),
                Some("rg.pdf")
            )
        );

        let sticker = json!({"stickerMessage": {"mimetype": "image/webp"}});
        assert_eq!(
            one(parse(&upserted(key("S1", false), sticker))).content,
            unsupported("sticker")
        );
        let revoke = json!({"protocolMessage": {"type": "REVOKE"}});
        assert_eq!(
            ignored(parse(&upserted(key("S2", false), revoke))),
            ["evolution message S2: protocol message"]
        );
    }

    #[test]
    fn groups_newsletters_and_status_are_ignored() {
        for chat in [
            "120363019502650977@g.us",
            "120363025246125244@newsletter",
            "status@broadcast",
        ] {
            let key =
                json!({"remoteJid": chat, "fromMe": false, "id": "G1", "participant": "5511987654321@s.whatsapp.net"});
            assert_eq!(
                ignored(parse(&upserted(key, json!({"conversation": "oi"})))).len(),
                1,
                "{chat}"
            );
        }
    }

    #[test]
    fn message_updates_become_statuses() {
        let jid = "5511987654321@s.whatsapp.net";
        let body = json!({"event": "messages.update", "instance": "acme-vendas", "data": [
            {"messageId": "cm3x", "keyId": "3EB0EE5C811ACA0277C307", "remoteJid": jid, "fromMe": true, "status": "READ"},
            {"keyId": "3EB0FF", "remoteJid": jid, "fromMe": true, "status": "ERROR"},
            {"keyId": "3A55", "remoteJid": jid, "fromMe": false, "status": "READ"}]});
        let p = parse(&body).unwrap();
        let got: Vec<_> = p
            .statuses
            .iter()
            .map(|s| format!("{}={}", s.provider_message_id, s.status.as_str()))
            .collect();
        assert_eq!(got, ["3EB0EE5C811ACA0277C307=read", "3EB0FF=failed"]);
        assert_eq!(p.ignored.len(), 1);
    }

    #[test]
    fn not_evolution() {
        assert!(parse(&json!({"type": "ReceivedCallback"})).is_err());
        assert!(parse(&json!({"event": "messages.upsert", "data": {"message": {}}})).is_err());
    }
}
