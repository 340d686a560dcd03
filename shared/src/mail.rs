//! E-mail as a channel. The worker polls the channel's IMAP mailbox, parses each new
//! message and stores it as an inbound event in the shape below ([`StoredMail`]); from
//! there it flows like any provider's webhook (`inbound` queue, dedupe on `Message-ID`,
//! lead by e-mail address). Attachments are kept in PostgreSQL and referenced by their id
//! (a [`crate::media_handle::MediaHandle::MailAttachment`]) that the media pipeline reads,
//! within the channel's tenant, instead of downloading.
//!
//! Replies thread: they carry `In-Reply-To`/`References` of the lead's last message and
//! its subject with `Re:` (see the worker's SMTP sender).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::inbound::{Content, Identity, Inbound, MediaParts, ParseError, Parsed};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMail {
    /// `Message-ID` without angle brackets (one is made up from the content when missing).
    pub message_id: String,
    /// Sender address, lowercased.
    pub from: String,
    pub from_name: Option<String>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    /// What the lead wrote, without the quoted earlier conversation.
    pub text: String,
    pub date_ms: Option<i64>,
    #[serde(default)]
    pub attachments: Vec<StoredAttachment>,
    /// An auto-reply, bounce or list mail (`Auto-Submitted`, `Precedence`, mailer-daemon):
    /// never answered, or two autoresponders would write to each other forever.
    #[serde(default)]
    pub automatic: bool,
}

/// What a reply answers: the lead's last e-mail on the channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thread {
    pub subject: Option<String>,
    /// `Message-ID` of the lead's last e-mail, without angle brackets.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAttachment {
    pub id: Uuid,
    pub file_name: Option<String>,
    pub mime: Option<String>,
}

/// One stored e-mail as the pipeline's messages: its text, then one message per
/// attachment the pipeline can read (images, audio, PDFs).
pub fn parse_stored(body: &Value) -> Result<Parsed, ParseError> {
    let mail: StoredMail = serde_json::from_value(body.clone()).map_err(|e| ParseError::Shape {
        provider: "smtp-imap",
        reason: e.to_string(),
    })?;
    let mut out = Parsed::default();
    if mail.automatic {
        out.ignored
            .push(format!("automatic e-mail {} from {}", mail.message_id, mail.from));
        return Ok(out);
    }
    let identity = Identity {
        email: Some(mail.from.clone()),
        ..Default::default()
    };
    let message = |id: String, content: Content| Inbound {
        provider_message_id: id,
        from_me: false,
        from_api: false,
        identity: identity.clone(),
        name: mail.from_name.clone(),
        content,
        timestamp_ms: mail.date_ms,
    };
    if !mail.text.trim().is_empty() || mail.attachments.is_empty() {
        out.messages.push(message(
            mail.message_id.clone(),
            Content::Text(mail.text.trim().to_owned()),
        ));
    }
    for (i, a) in mail.attachments.iter().enumerate() {
        let id = a.id.to_string();
        let parts = MediaParts {
            file_ref: Some(&id),
            mime: a.mime.as_deref(),
            file_name: a.file_name.as_deref(),
            ..Default::default()
        };
        out.messages
            .push(message(format!("{}#{i}", mail.message_id), parts.by_mime()));
    }
    Ok(out)
}

/// The text a lead wrote in a reply, without what it quotes: everything from the first
/// quoted line (`>`), or from the "On … wrote:" / "Em … escreveu:" line that introduces
/// it, or from an Outlook "-----Original Message-----" block, is dropped.
pub fn strip_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let intro = (t.ends_with("wrote:") || t.ends_with("escreveu:") || t.ends_with("escribió:"))
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with('>'));
        if t.starts_with('>') || intro || t.starts_with("-----Original Message-----") {
            end = i;
            break;
        }
    }
    lines[..end].join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::MediaKind;

    fn stored(text: &str, attachments: Vec<StoredAttachment>) -> Value {
        serde_json::to_value(StoredMail {
            message_id: "CAB=1@mail.gmail.com".into(),
            from: "mariana@example.com".into(),
            from_name: Some("Mariana Souza".into()),
            subject: Some("Apartamento".into()),
            in_reply_to: None,
            references: vec![],
            text: text.into(),
            date_ms: Some(1_732_197_600_000),
            attachments,
            automatic: false,
        })
        .unwrap()
    }

    #[test]
    fn text_and_readable_attachments_become_messages() {
        let pdf = StoredAttachment {
            id: Uuid::nil(),
            file_name: Some("renda.pdf".into()),
            mime: Some("application/pdf".into()),
        };
        let sheet = StoredAttachment {
            id: Uuid::nil(),
            file_name: Some("x.xlsx".into()),
            mime: Some("application/vnd.ms-excel".into()),
        };
        let p = parse_stored(&stored("Segue o comprovante", vec![pdf, sheet])).unwrap();
        assert_eq!(p.messages.len(), 3);
        assert_eq!(p.messages[0].identity.email.as_deref(), Some("mariana@example.com"));
        assert_eq!(p.messages[0].content, Content::Text("Segue o comprovante".into()));
        assert!(matches!(&p.messages[1].content,
            Content::Media { kind: MediaKind::Pdf, url: None, file_ref: Some(r), .. } if r == &Uuid::nil().to_string()));
        assert!(matches!(&p.messages[2].content, Content::Unsupported { .. }));
        assert_eq!(p.messages[1].provider_message_id, "CAB=1@mail.gmail.com#0");
    }

    #[test]
    fn automatic_mail_is_never_answered() {
        let mut v = stored("Estou fora do escritório", vec![]);
        v["automatic"] = true.into();
        let p = parse_stored(&v).unwrap();
        assert!(p.messages.is_empty() && p.ignored.len() == 1);
    }

    #[test]
    fn quoted_replies_are_cut() {
        let reply = "Sim, pode ligar amanhã.\n\nEm sex., 21 de nov. de 2026 às 10:02, Imobiliária <vendas@imob.example> escreveu:\n\n> Olá Mariana!\n> Podemos ligar?";
        assert_eq!(strip_quoted(reply), "Sim, pode ligar amanhã.");
        assert_eq!(strip_quoted("Oi\n> citado"), "Oi");
        assert_eq!(strip_quoted("Oi\n-----Original Message-----\nFrom: x"), "Oi");
        assert_eq!(
            strip_quoted("Só texto,\nsem citação: wrote: nada"),
            "Só texto,\nsem citação: wrote: nada"
        );
    }
}
