//! Inbound webhooks from the messaging providers, parsed into one shape: the shape, and
//! the normalisation every provider's parser (`leadflow_providers::<provider>::parse`)
//! shares (phones, JIDs, media parts, field readers).
//!
//! Each provider's parser turns the JSON body of one webhook call into a [`Parsed`]: what
//! leads wrote ([`Inbound`]), delivery reports about what the business sent
//! ([`StatusUpdate`]), connection changes of the unofficial WhatsApp sessions, and a list
//! of things that were recognised but deliberately skipped (group chats, newsletters,
//! status broadcasts, our own outbound events…) so the webhook handler can log them
//! instead of losing them silently.
//!
//! Parsing is pure: no I/O, no clock, no tenant lookup. Authenticating the call (secret in
//! the URL, Meta's `X-Hub-Signature-256`, Telegram's secret-token header) happens before,
//! on the raw bytes; deduplication on `provider_message_id`, media download and the AI
//! pipeline happen after. Only a body that is not the provider's webhook at all is a
//! [`ParseError`]: a well-formed webhook of a kind we do not use is skipped, because an
//! error answer would make the provider retry it for hours or days.
//!
//! Identities are normalised the same way for every provider: phones in E.164 with `+`,
//! WhatsApp LIDs as the full `…@lid` JID (WhatsApp offers no way to turn one into a phone),
//! Telegram chats as the numeric chat id.

pub mod email;

use serde_json::Value;

/// What a lead (or the business itself) sent, whatever the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The provider's id for the message: the dedupe key (providers resend webhooks).
    pub provider_message_id: String,
    /// Sent from the business's own number/bot (WhatsApp `fromMe`): an echo of our own send or a human typing on the phone.
    pub from_me: bool,
    /// Z-API's `fromApi` (sent through the API, i.e. possibly by us); false when the provider does not say.
    pub from_api: bool,
    /// Who the conversation is with (the lead), in every form the payload gives.
    pub identity: Identity,
    /// Display name of the lead, when given.
    pub name: Option<String>,
    pub content: Content,
    /// Epoch milliseconds when the provider says the message was sent, if it does.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    /// E.164 with leading '+', e.g. "+5511987654321"; None when the payload carries no phone (e.g. only an @lid).
    pub phone: Option<String>,
    /// WhatsApp LID, e.g. "81896604192873@lid".
    pub wa_lid: Option<String>,
    /// Telegram chat id as a string.
    pub telegram_chat: Option<String>,
    /// E-mail address, lowercased, of a mail whose sender was authenticated (DMARC/DKIM).
    pub email: Option<String>,
    /// E-mail address of a mail whose sender could not be authenticated: anyone can write
    /// it in `From`, so it never reaches the conversation of the address's own lead.
    pub email_unverified: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    /// Media the pipeline can understand. `url` is a downloadable URL when the payload has one; `file_ref` is a provider handle that must be resolved first (Telegram `file_id`, Meta media id, Evolution message key) when there is no URL.
    Media {
        kind: MediaKind,
        url: Option<String>,
        file_ref: Option<String>,
        caption: String,
        mime: Option<String>,
        file_name: Option<String>,
    },
    /// Stickers, reactions, locations, contacts, calls, polls…: recorded and skipped.
    Unsupported {
        what: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Audio,
    Pdf,
}

/// A delivery/read/failure report about a message the business sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The id our send call got back, which is what the outbox keeps.
    pub provider_message_id: String,
    /// Another id the same message is known by, tried when the first matches nothing
    /// (Gupshup v3 reports carry its own `gs_id` and WhatsApp's wamid).
    pub also_id: Option<String>,
    pub status: crate::delivery::Reported,
    /// Provider error code for failures, e.g. "131047" (Meta) or "470" (Gupshup).
    pub error_code: Option<String>,
    pub error: Option<String>,
}

/// What one webhook call carried. A call may carry several messages (Meta batches).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub messages: Vec<Inbound>,
    pub statuses: Vec<StatusUpdate>,
    /// Connection events (Z-API Disconnected/Connected callbacks, Evolution connection.update).
    pub connection: Option<crate::channel::Connection>,
    /// Anything else recognised but ignored (group messages, newsletters, status broadcasts, our own outbound events…), for logging.
    pub ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a {provider} webhook: {reason}")]
    Shape { provider: &'static str, reason: String },
}

/// The fields of an `application/x-www-form-urlencoded` body, in order.
pub fn form_fields(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// What a stored webhook event is about, as its dedupe key says (`inbound_events.dedupe_key`,
/// unique per channel: a payload delivered twice is one event). The key's text is written
/// and read only here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKey {
    /// A lead's message, by the provider's message id: `msg:<id>`.
    Message { provider_message_id: String },
    /// A delivery report, one per message and state: `status:<id>:<state>`.
    Status {
        provider_message_id: String,
        status: crate::delivery::Reported,
    },
    /// A connection callback: the same delivery twice is one event, two distinct
    /// deliveries of the same state are two (the second is simply no change):
    /// `conn:<state>:<digest of the raw body>`.
    Connection {
        state: crate::channel::Connection,
        digest: String,
    },
    /// A mailbox message too large to fetch, recorded once per UID: `imap-too-large:<validity>:<uid>`.
    MailTooLarge { uid_validity: i64, uid: i64 },
}

/// Which kind of event a stored key is (the worker dispatches on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Message,
    Status,
    Connection,
    MailTooLarge,
    /// A key this version does not know (written by a newer one): left alone.
    Unknown,
}

impl EventKey {
    pub fn connection(state: crate::channel::Connection, raw: &[u8]) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(raw);
        Self::Connection {
            state,
            digest: hex::encode(&digest[..12]),
        }
    }

    pub fn encode(&self) -> String {
        match self {
            Self::Message { provider_message_id } => format!("msg:{provider_message_id}"),
            Self::Status {
                provider_message_id,
                status,
            } => format!("status:{provider_message_id}:{}", status.as_str()),
            Self::Connection { state, digest } => format!("conn:{}:{digest}", state.as_str()),
            Self::MailTooLarge { uid_validity, uid } => format!("imap-too-large:{uid_validity}:{uid}"),
        }
    }

    pub fn kind_of(key: &str) -> EventKind {
        match key.split_once(':').map(|(kind, _)| kind) {
            Some("msg") => EventKind::Message,
            Some("status") => EventKind::Status,
            Some("conn") => EventKind::Connection,
            Some("imap-too-large") => EventKind::MailTooLarge,
            _ => EventKind::Unknown,
        }
    }
}

/// A form as a flat JSON object of strings (what is stored for form-posting providers);
/// a repeated field keeps its last value.
pub fn form_to_json(fields: &[(String, String)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Digits of a phone number to E.164 ("+" + digits), or None if it does not look like one (fewer than 8 or more than 15 digits).
///
/// Accepts the usual separators and WhatsApp phone JIDs (`5511987654321@s.whatsapp.net`,
/// with or without a `:device` suffix). Anything else with an `@` (LIDs, groups) or with
/// letters is not a phone, so a LID can never be mistaken for one.
pub fn e164(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let number = match raw.split_once('@') {
        Some((user, "s.whatsapp.net" | "c.us")) => user.split_once(':').map_or(user, |(n, _)| n),
        Some(_) => return None,
        None => raw,
    };
    let mut out = String::with_capacity(number.len() + 1);
    out.push('+');
    for c in number.chars() {
        match c {
            '0'..='9' => out.push(c),
            '+' | ' ' | '-' | '(' | ')' | '.' => {}
            _ => return None,
        }
    }
    // "+" plus 8 to 15 digits.
    (9..=16).contains(&out.len()).then_some(out)
}

/// Whether a document is a PDF, judged by its mime type or, failing that, its file name
/// (WhatsApp clients often send PDFs as `application/octet-stream`).
pub fn is_pdf(mime: Option<&str>, file_name: Option<&str>) -> bool {
    let mime_says = mime.is_some_and(|m| {
        let essence = m.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/pdf") || essence.eq_ignore_ascii_case("application/x-pdf")
    });
    mime_says || file_name.is_some_and(|n| n.trim().to_ascii_lowercase().ends_with(".pdf"))
}

/// `Image` or `Audio` for `image/*` and `audio/*` MIME types; PDFs are told apart by
/// [`is_pdf`], which also looks at the file name.
pub fn kind_of_mime(mime: &str) -> Option<MediaKind> {
    let m = mime.trim().to_ascii_lowercase();
    if m.starts_with("image/") {
        Some(MediaKind::Image)
    } else if m.starts_with("audio/") {
        Some(MediaKind::Audio)
    } else {
        None
    }
}

/// The pieces of a media attachment, as borrowed from the payload.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaParts<'a> {
    pub url: Option<&'a str>,
    pub file_ref: Option<&'a str>,
    pub caption: Option<&'a str>,
    pub mime: Option<&'a str>,
    pub file_name: Option<&'a str>,
}

impl MediaParts<'_> {
    pub fn media(self, kind: MediaKind) -> Content {
        Content::Media {
            kind,
            url: self.url.map(str::to_owned),
            file_ref: self.file_ref.map(str::to_owned),
            caption: self.caption.unwrap_or_default().to_owned(),
            mime: self.mime.map(str::to_owned),
            file_name: self.file_name.map(str::to_owned),
        }
    }

    /// Judged by the declared MIME type alone (SMS gateways and e-mail attachments say
    /// nothing else): an image, a voice note, or else a document.
    pub fn by_mime(self) -> Content {
        match self.mime.and_then(kind_of_mime) {
            Some(kind) => self.media(kind),
            None => self.document(),
        }
    }

    /// PDFs are read by the pipeline; other documents (spreadsheets, Word files…) are not.
    pub fn document(self) -> Content {
        if is_pdf(self.mime, self.file_name) {
            self.media(MediaKind::Pdf)
        } else {
            let kind = self.mime.or(self.file_name).unwrap_or("unknown type");
            Content::Unsupported {
                what: format!("document ({kind})"),
            }
        }
    }
}

/// What a WhatsApp JID (or Z-API `phone`) designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jid {
    Phone(String),
    Lid(String),
    Group,
    Newsletter,
    Broadcast,
    Other,
}

pub fn jid(raw: &str) -> Jid {
    let raw = raw.trim();
    // `-group` is Z-API's spelling of a group id.
    if raw.ends_with("@g.us") || raw.ends_with("-group") {
        Jid::Group
    } else if raw.ends_with("@newsletter") {
        Jid::Newsletter
    } else if raw.ends_with("@broadcast") {
        Jid::Broadcast
    } else if raw.ends_with("@lid") && raw.len() > 4 {
        Jid::Lid(raw.to_owned())
    } else {
        e164(raw).map_or(Jid::Other, Jid::Phone)
    }
}

impl Jid {
    /// The rule for WhatsApp: only one-to-one chats are conversations with a lead. Group
    /// messages, newsletters (channels) and status broadcasts are never answered.
    pub fn skip_reason(&self) -> Option<&'static str> {
        match self {
            Jid::Group => Some("group"),
            Jid::Newsletter => Some("newsletter"),
            Jid::Broadcast => Some("status/broadcast"),
            _ => None,
        }
    }
}

impl Identity {
    /// Keeps the first phone and the first LID seen: callers pass the most reliable source first.
    pub fn absorb(&mut self, jid: Jid) {
        match jid {
            Jid::Phone(p) if self.phone.is_none() => self.phone = Some(p),
            Jid::Lid(l) if self.wa_lid.is_none() => self.wa_lid = Some(l),
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.phone.is_none() && self.wa_lid.is_none() && self.telegram_chat.is_none() && self.email.is_none()
    }
}

pub fn shape(provider: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::Shape {
        provider,
        reason: reason.into(),
    }
}

/// A string field that is present and not blank.
pub fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

pub fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// An integer sent as a number, a numeric string, or (Baileys) a protobuf `Long` object.
pub fn int(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(long) => long.get("low").and_then(Value::as_i64),
        _ => None,
    }
}

/// An id or code that some providers send as a number and others as a string.
pub fn scalar(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Providers mix epoch seconds and milliseconds (Z-API even within one payload family);
/// anything below 10^11 is taken as seconds (10^11 ms is 1973, 10^11 s is year 5138).
pub fn epoch_ms(raw: Option<i64>) -> Option<i64> {
    raw.filter(|t| *t > 0)
        .map(|t| if t < 100_000_000_000 { t.saturating_mul(1000) } else { t })
}

/// A display name worth keeping: not blank and not just the phone number again (which is
/// what WhatsApp shows for contacts without a profile name).
pub fn display_name(raw: Option<&str>) -> Option<String> {
    let name = raw?.trim();
    (!name.is_empty() && e164(name).is_none()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_normalises_phones_and_rejects_the_rest() {
        for raw in [
            "5511987654321",
            "+55 (11) 98765-4321",
            "5511987654321@s.whatsapp.net",
            "5511987654321:12@s.whatsapp.net",
        ] {
            assert_eq!(e164(raw).as_deref(), Some("+5511987654321"), "{raw}");
        }
        for raw in [
            "81896604192873@lid",
            "120363019502650977@g.us",
            "120363019502650977-group",
            "1234567",
            "1234567890123456",
            "",
        ] {
            assert_eq!(e164(raw), None, "{raw}");
        }
    }

    #[test]
    fn pdf_by_mime_or_name() {
        assert!(is_pdf(Some("application/pdf"), None));
        assert!(is_pdf(Some("Application/PDF; charset=binary"), None));
        assert!(is_pdf(Some("application/octet-stream"), Some("Proposta.PDF")));
        assert!(!is_pdf(Some("application/vnd.ms-excel"), Some("tabela.xls")));
        assert!(!is_pdf(None, None));
        let csv = MediaParts {
            mime: Some("text/csv"),
            ..Default::default()
        };
        assert_eq!(
            csv.document(),
            Content::Unsupported {
                what: "document (text/csv)".into()
            }
        );
    }

    #[test]
    fn jids_are_classified() {
        assert_eq!(jid("5511987654321@s.whatsapp.net"), Jid::Phone("+5511987654321".into()));
        assert_eq!(jid("81896604192873@lid"), Jid::Lid("81896604192873@lid".into()));
        assert_eq!(jid("120363019502650977@g.us"), Jid::Group);
        assert_eq!(jid("120363025246125244@newsletter"), Jid::Newsletter);
        assert_eq!(jid("status@broadcast"), Jid::Broadcast);
        assert_eq!(jid("not a jid"), Jid::Other);
    }

    #[test]
    fn timestamps_in_seconds_or_millis() {
        assert_eq!(epoch_ms(Some(1_732_197_600)), Some(1_732_197_600_000));
        assert_eq!(epoch_ms(Some(1_732_197_600_000)), Some(1_732_197_600_000));
        assert_eq!(epoch_ms(Some(0)), None);
        let v: Value = serde_json::json!({"a": "1732197600", "b": {"low": 1732197600, "high": 0}});
        assert_eq!(int(&v, "a"), Some(1_732_197_600));
        assert_eq!(int(&v, "b"), Some(1_732_197_600));
    }
}

#[cfg(test)]
mod event_key_tests {
    use super::{EventKey, EventKind};
    use crate::delivery::Reported;

    #[test]
    fn every_key_reads_back_as_its_kind_and_keeps_its_wire_form() {
        let keys = [
            (
                EventKey::Message {
                    provider_message_id: "wamid.A1:b".into(),
                },
                "msg:wamid.A1:b",
                EventKind::Message,
            ),
            (
                EventKey::Status {
                    provider_message_id: "3EB0".into(),
                    status: Reported::Read,
                },
                "status:3EB0:read",
                EventKind::Status,
            ),
            (
                EventKey::MailTooLarge {
                    uid_validity: 7,
                    uid: 42,
                },
                "imap-too-large:7:42",
                EventKind::MailTooLarge,
            ),
        ];
        for (key, wire, kind) in keys {
            assert_eq!(key.encode(), wire, "stored keys keep their form across versions");
            assert_eq!(EventKey::kind_of(wire), kind);
        }
        let conn = EventKey::connection(crate::channel::Connection::Connected, b"{}").encode();
        assert!(
            conn.starts_with("conn:connected:") && conn.len() == "conn:connected:".len() + 24,
            "{conn}"
        );
        assert_eq!(EventKey::kind_of(&conn), EventKind::Connection);
        assert_eq!(EventKey::kind_of("something-new:1"), EventKind::Unknown);
    }
}
