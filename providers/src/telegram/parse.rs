//! Telegram Bot API webhooks: one `Update` per POST, `{update_id, <one optional field>}`.
//! Only `message` and `edited_message` in private chats are conversations with a lead;
//! callback queries, membership changes, channel posts and group chats are skipped. Media
//! come as `file_id`s for `getFile` (whose download URL embeds the bot token), reported as
//! `file_ref`.

use serde_json::Value;

use leadflow_shared::inbound::{
    display_name, e164, epoch_ms, flag, int, scalar, shape, text, Content, Identity, Inbound, MediaKind, MediaParts,
    ParseError, Parsed,
};

const PROVIDER: &str = "telegram";

const UNSUPPORTED: &[&str] = &[
    "sticker",
    "video",
    "video_note",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
    "game",
    "story",
    "paid_media",
];

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    let update_id = int(body, "update_id").ok_or_else(|| shape(PROVIDER, "no `update_id`"))?;
    let mut out = Parsed::default();
    if let Some(m) = body.get("message") {
        message(m, false, &mut out);
    } else if let Some(m) = body.get("edited_message") {
        message(m, true, &mut out);
    } else {
        let kind = body
            .as_object()
            .and_then(|o| o.keys().find(|k| k.as_str() != "update_id"))
            .map_or("empty", String::as_str);
        out.ignored.push(format!("telegram update {update_id}: {kind}"));
    }
    Ok(out)
}

fn message(m: &Value, edited: bool, out: &mut Parsed) {
    let chat = m.get("chat").unwrap_or(&Value::Null);
    let (Some(chat_id), Some(message_id)) = (scalar(chat, "id"), int(m, "message_id")) else {
        out.ignored
            .push("telegram message without chat or message id".to_owned());
        return;
    };
    let chat_type = text(chat, "type").unwrap_or("unknown");
    if chat_type != "private" {
        out.ignored
            .push(format!("telegram {chat_type} chat message {chat_id}:{message_id}"));
        return;
    }
    let from = m.get("from").unwrap_or(&Value::Null);
    if flag(from, "is_bot") {
        out.ignored
            .push(format!("telegram message {chat_id}:{message_id} from a bot"));
        return;
    }
    let Some(content) = content(m) else {
        out.ignored
            .push(format!("telegram service message {chat_id}:{message_id}"));
        return;
    };
    // message_id is only unique within a chat. An edit keeps the id, so each version is
    // keyed by its edit time to get past dedupe while resends of the same edit do not.
    let provider_message_id = if edited {
        format!(
            "{chat_id}:{message_id}:edit:{}",
            int(m, "edit_date").unwrap_or_default()
        )
    } else {
        format!("{chat_id}:{message_id}")
    };
    // A lead sharing their own contact card is the only way Telegram reveals a phone.
    let phone = m
        .get("contact")
        .filter(|c| c.get("user_id").is_some() && c.get("user_id") == from.get("id"))
        .and_then(|c| text(c, "phone_number"))
        .and_then(e164);
    out.messages.push(Inbound {
        provider_message_id,
        from_me: false,
        from_api: false,
        identity: Identity {
            phone,
            telegram_chat: Some(chat_id),
            ..Default::default()
        },
        name: full_name(from).or_else(|| full_name(chat)),
        content,
        timestamp_ms: epoch_ms(int(m, "date")),
    });
}

fn full_name(user: &Value) -> Option<String> {
    let parts: Vec<&str> = ["first_name", "last_name"]
        .iter()
        .filter_map(|k| text(user, k))
        .collect();
    display_name(Some(parts.join(" ").as_str()))
}

/// The content of a message, or None for service messages (pins, payments…) that carry none.
fn content(m: &Value) -> Option<Content> {
    if let Some(t) = m.get("text").and_then(Value::as_str) {
        return Some(Content::Text(t.to_owned()));
    }
    let caption = text(m, "caption");
    // Sizes come smallest first; take the largest (the last one on a tie).
    if let Some(best) = m.get("photo").and_then(Value::as_array).and_then(|sizes| {
        sizes.iter().max_by_key(|s| {
            int(s, "width")
                .unwrap_or(0)
                .saturating_mul(int(s, "height").unwrap_or(0))
        })
    }) {
        let parts = MediaParts {
            file_ref: text(best, "file_id"),
            caption,
            ..Default::default()
        };
        return Some(parts.media(MediaKind::Image));
    }
    if let Some(a) = m.get("voice").or_else(|| m.get("audio")) {
        let parts = MediaParts {
            file_ref: text(a, "file_id"),
            caption,
            mime: text(a, "mime_type"),
            file_name: text(a, "file_name"),
            ..Default::default()
        };
        return Some(parts.media(MediaKind::Audio));
    }
    // Animations also fill `document` for old clients; they are GIFs/videos.
    if m.get("animation").is_some() {
        return Some(Content::Unsupported {
            what: "animation".to_owned(),
        });
    }
    if let Some(d) = m.get("document") {
        let parts = MediaParts {
            file_ref: text(d, "file_id"),
            caption,
            mime: text(d, "mime_type"),
            file_name: text(d, "file_name"),
            ..Default::default()
        };
        return Some(parts.document());
    }
    UNSUPPORTED
        .iter()
        .find(|k| m.get(**k).is_some())
        .map(|k| Content::Unsupported { what: (*k).to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use leadflow_shared::inbound::MediaKind::{Audio, Image, Pdf};
    use serde_json::json;

    const TEXT: &str = include_str!("../../../tests/fixtures/providers/telegram/update-text.json");
    const VOICE: &str = include_str!("../../../tests/fixtures/providers/telegram/update-voice.json");
    const VOICE_FILE: &str = "AwACAgEAAxkBAAIEoWdA2k1c7xYdq3m0Zr6J8sT3q2KpAAJxBQACg4oIRm2Yk1tW3v0fNgQ";

    /// An update whose message (or edited message) is Mariana's private message plus `extra`.
    fn update(field: &str, extra: Value) -> Value {
        let from = json!({"id": 6120483377_i64, "is_bot": false, "first_name": "Mariana", "last_name": "Souza"});
        let chat = json!({"id": 6120483377_i64, "first_name": "Mariana", "type": "private"});
        let message = with(
            json!({"message_id": 1186, "date": 1732197700, "from": from, "chat": chat}),
            extra,
        );
        json!({"update_id": 845123909, field: message})
    }

    #[test]
    fn text_update() {
        let expected = Inbound {
            provider_message_id: "6120483377:1184".into(),
            from_me: false,
            from_api: false,
            identity: Identity {
                telegram_chat: Some("6120483377".into()),
                ..Default::default()
            },
            name: Some("Mariana Souza".into()),
            content: said(FIRST_TEXT),
            timestamp_ms: Some(1_732_197_600_000),
        };
        assert_eq!(one(parse(&fixture(TEXT))), expected);
    }

    #[test]
    fn voice_update() {
        let m = one(parse(&fixture(VOICE)));
        assert_eq!(
            (m.provider_message_id.as_str(), m.timestamp_ms),
            ("6120483377:1185", Some(1_732_197_612_000))
        );
        assert_eq!(
            m.content,
            media(Audio, None, Some(VOICE_FILE), "", Some("audio/ogg"), None)
        );
    }

    #[test]
    fn photo_takes_the_largest_size_and_caption() {
        let sizes = json!([
            {"file_id": "small", "file_unique_id": "a", "width": 90, "height": 67, "file_size": 1200},
            {"file_id": "large", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 98000},
            {"file_id": "medium", "file_unique_id": "c", "width": 320, "height": 240, "file_size": 14000}]);
        let m = one(parse(&update(
            "message",
            json!({"caption": PHOTO_CAPTION, "photo": sizes}),
        )));
        assert_eq!(m.content, media(Image, None, Some("large"), PHOTO_CAPTION, None, None));
    }

    #[test]
    fn documents_edits_and_shared_contact() {
        let doc = json!({"file_id": "DOC", "file_unique_id": "d", "file_name": "proposta.pdf", "mime_type": "application/pdf"});
        let pdf = one(parse(&update("message", json!({"document": doc}))));
        assert_eq!(
            pdf.content,
            media(
                Pdf,
                None,
                Some("DOC"),
                "",
                Some("application/pdf"),
                Some("proposta.pdf")
            )
        );
        let gif = json!({"animation": {"file_id": "A"}, "document": {"file_id": "A", "mime_type": "video/mp4"}});
        assert_eq!(one(parse(&update("message", gif))).content, unsupported("animation"));

        let edited = one(parse(&update(
            "edited_message",
            json!({"edit_date": 1732197760, "text": "corrigido"}),
        )));
        assert_eq!(
            (edited.provider_message_id.as_str(), edited.content),
            ("6120483377:1186:edit:1732197760", said("corrigido"))
        );

        let card = json!({"phone_number": "5511987654321", "first_name": "Mariana", "user_id": 6120483377_i64});
        let shared = one(parse(&update("message", json!({"contact": card}))));
        assert_eq!(
            (shared.identity.phone.as_deref(), shared.content),
            (Some(PHONE), unsupported("contact"))
        );
    }

    #[test]
    fn groups_bots_and_other_updates_are_ignored() {
        let group = json!({"update_id": 1, "message": {"message_id": 5, "date": 1, "from": {"id": 7, "is_bot": false, "first_name": "A"},
            "chat": {"id": -1001234567890_i64, "title": "Grupo", "type": "supergroup"}, "text": "oi"}});
        let bot = json!({"update_id": 2, "message": {"message_id": 6, "date": 1, "from": {"id": 8, "is_bot": true, "first_name": "B"},
            "chat": {"id": 8, "type": "private"}, "text": "oi"}});
        let callback = json!({"update_id": 3, "callback_query": {"id": "1", "from": {"id": 7}, "data": "x"}});
        assert_eq!(
            ignored(parse(&group)),
            ["telegram supergroup chat message -1001234567890:5"]
        );
        assert_eq!(ignored(parse(&bot)), ["telegram message 8:6 from a bot"]);
        assert_eq!(ignored(parse(&callback)), ["telegram update 3: callback_query"]);
        assert!(parse(&json!({"message": {"text": "oi"}})).is_err());
    }
}
