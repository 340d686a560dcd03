//! Twilio Programmable Messaging webhooks. Twilio posts
//! `application/x-www-form-urlencoded` forms; the webhook handler turns the form into a
//! flat JSON object of strings (what is stored and parsed here), after checking
//! `X-Twilio-Signature` (see [`signature`]).
//!
//! Two kinds arrive on the same URL: an incoming message (`MessageSid`, `From`, `Body`,
//! `NumMedia` and `MediaUrl{i}`/`MediaContentType{i}` for MMS), and a status callback for a
//! message we sent (`MessageStatus`: `queued|sent|delivered|undelivered|failed|read`, with
//! `ErrorCode` on failures).

use serde_json::Value;

use leadflow_shared::delivery::Reported;
use leadflow_shared::inbound::{e164, text, Content, Identity, Inbound, MediaParts, ParseError, Parsed, StatusUpdate};

const PROVIDER: &str = "twilio";

/// Twilio's own limit on media per message.
pub const MAX_MEDIA: usize = 10;

/// Whether a (signed) call is about the channel with this account and sender: its
/// `AccountSid` is the channel's, and an incoming message was sent `To` the channel's
/// number (or through its Messaging Service), a status callback is about a message sent
/// `From` it. One Twilio account often holds many numbers, so the signature alone does
/// not say which channel a call is for.
pub fn is_for(body: &Value, account_sid: &str, from: &str) -> bool {
    if text(body, "AccountSid") != Some(account_sid.trim()) {
        return false;
    }
    let from = from.trim();
    if from.starts_with("MG") && text(body, "MessagingServiceSid") == Some(from) {
        return true;
    }
    let incoming = match text(body, "MessageStatus").or_else(|| text(body, "SmsStatus")) {
        None => true,
        Some(status) => status == "received",
    };
    let ours = if incoming { text(body, "To") } else { text(body, "From") };
    match (ours.and_then(e164), e164(from)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

pub fn parse(body: &Value) -> Result<Parsed, ParseError> {
    let sid = text(body, "MessageSid")
        .or_else(|| text(body, "SmsSid"))
        .ok_or_else(|| leadflow_shared::inbound::shape(PROVIDER, "no `MessageSid`"))?;
    let mut out = Parsed::default();
    if let Some(status) = text(body, "MessageStatus").or_else(|| text(body, "SmsStatus")) {
        // An incoming message carries `SmsStatus=received`; everything else is about ours.
        if status != "received" {
            // queued, accepted, sending, scheduled, canceled: nothing the lead could see yet.
            let Some(reported) = (match status {
                "sent" => Some(Reported::Sent),
                "delivered" => Some(Reported::Delivered),
                "read" => Some(Reported::Read),
                "failed" | "undelivered" => Some(Reported::Failed),
                _ => None,
            }) else {
                out.ignored.push(format!("twilio status {status} for {sid}"));
                return Ok(out);
            };
            out.statuses.push(StatusUpdate {
                provider_message_id: sid.to_owned(),
                also_id: None,
                status: reported,
                error_code: text(body, "ErrorCode").map(str::to_owned),
                error: text(body, "ErrorMessage").map(str::to_owned),
            });
            return Ok(out);
        }
    }
    let Some(phone) = text(body, "From").and_then(e164) else {
        out.ignored.push(format!("twilio message {sid} without a phone sender"));
        return Ok(out);
    };
    // Twilio sends at most 10 media per message; a bigger count is a forged form.
    let media_count = text(body, "NumMedia")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_MEDIA);
    let caption = text(body, "Body").unwrap_or_default();
    let mut contents = Vec::new();
    for i in 0..media_count {
        let Some(url) = text(body, &format!("MediaUrl{i}")) else {
            continue; // a count larger than the fields that came with it
        };
        let mime = text(body, &format!("MediaContentType{i}"));
        let parts = MediaParts {
            url: Some(url),
            // The caption goes with the first attachment only.
            caption: (i == 0).then_some(caption),
            mime,
            ..Default::default()
        };
        contents.push(parts.by_mime());
    }
    if contents.is_empty() {
        contents.push(Content::Text(caption.to_owned()));
    }
    let n = contents.len();
    for (i, content) in contents.into_iter().enumerate() {
        out.messages.push(Inbound {
            // One message per attachment: each needs its own dedupe key.
            provider_message_id: if n == 1 { sid.to_owned() } else { format!("{sid}:{i}") },
            from_me: false,
            from_api: false,
            identity: Identity {
                phone: Some(phone.clone()),
                ..Default::default()
            },
            name: None,
            content,
            timestamp_ms: None,
        });
    }
    Ok(out)
}

/// Twilio's request signature: base64 of HMAC-SHA1, keyed with the account's auth token,
/// over the full URL Twilio called followed by every POST parameter as `name` + `value`,
/// sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{form, one};
    use leadflow_shared::inbound::MediaKind;

    const SMS: &str = include_str!("../../../tests/fixtures/providers/twilio/inbound-sms.form");
    const MMS: &str = include_str!("../../../tests/fixtures/providers/twilio/inbound-mms.form");
    const FAILED: &str = include_str!("../../../tests/fixtures/providers/twilio/status-undelivered.form");

    #[test]
    fn an_sms_is_a_text_from_an_e164_phone() {
        let m = one(parse(&form(SMS)));
        assert_eq!(m.provider_message_id, "SM1f0e8ae6ade43cb3c0ce4525424e404f");
        assert_eq!(m.identity.phone.as_deref(), Some("+5511987654321"));
        assert_eq!(
            m.content,
            Content::Text("Oi! Vi o anúncio do apartamento. Ainda está disponível?".into())
        );
    }

    #[test]
    fn an_mms_is_one_message_per_attachment_with_the_caption_on_the_first() {
        let p = parse(&form(MMS)).unwrap();
        assert_eq!(p.messages.len(), 2);
        let Content::Media { kind, url, caption, .. } = &p.messages[0].content else {
            panic!("{:?}", p.messages[0]);
        };
        assert_eq!(*kind, MediaKind::Image);
        assert!(url
            .as_deref()
            .unwrap()
            .ends_with("/Media/ME0b4e4a8e0e1c2a3b4c5d6e7f8a9b0c1d"));
        assert_eq!(caption, "Segue a foto da fachada");
        assert!(
            matches!(&p.messages[1].content, Content::Media { kind: MediaKind::Pdf, caption, .. } if caption.is_empty())
        );
        assert_ne!(p.messages[0].provider_message_id, p.messages[1].provider_message_id);
    }

    #[test]
    fn a_forged_media_count_is_clamped_to_twilios_maximum() {
        let mut v = form(MMS);
        v["NumMedia"] = "100000000".into();
        let p = parse(&v).unwrap();
        // The two attachments that came with it, no empty slots.
        assert_eq!(p.messages.len(), 2);
        for i in 0..20 {
            v[format!("MediaUrl{i}")] = format!("https://api.twilio.com/m/{i}").into();
        }
        assert_eq!(parse(&v).unwrap().messages.len(), MAX_MEDIA);
    }

    #[test]
    fn a_call_is_for_the_channel_of_its_account_and_number() {
        let sms = form(SMS);
        let account = text(&sms, "AccountSid").unwrap().to_owned();
        let to = text(&sms, "To").unwrap().to_owned();
        assert!(is_for(&sms, &account, &to));
        assert!(!is_for(&sms, "AC00000000000000000000000000000000", &to));
        assert!(!is_for(&sms, &account, "+15550000000"));
        let mut via_service = sms.clone();
        via_service["MessagingServiceSid"] = "MG0123".into();
        assert!(is_for(&via_service, &account, "MG0123"));
        let failed = form(FAILED);
        let account = text(&failed, "AccountSid").unwrap().to_owned();
        let ours = text(&failed, "From").unwrap().to_owned();
        assert!(is_for(&failed, &account, &ours));
        assert!(!is_for(&failed, &account, text(&failed, "To").unwrap()));
    }

    #[test]
    fn undelivered_is_a_failure_with_its_code() {
        let p = parse(&form(FAILED)).unwrap();
        assert!(p.messages.is_empty());
        assert_eq!(p.statuses[0].status, Reported::Failed);
        assert_eq!(p.statuses[0].error_code.as_deref(), Some("30007"));
        assert!(parse(&serde_json::json!({"Body": "x"})).is_err());
    }

    #[test]
    fn signatures_follow_twilios_documented_example() {
        // The worked example of Twilio's "Validating requests" docs (with these phones).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
