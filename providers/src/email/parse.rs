//! Reading stored e-mail ([`StoredMail`]) as lead messages: its text, then one message per
//! attachment the pipeline can read; and the two judgements made while polling: whether
//! the sender is authenticated, and what of a reply is quoted.

use leadflow_shared::inbound::email::StoredMail;
use leadflow_shared::inbound::{Content, Identity, Inbound, MediaParts, ParseError, Parsed};
use serde_json::Value;

/// Whether `results` (the `Authentication-Results` header values, topmost first, as the
/// mail arrived in the mailbox) show that mail from `address` really came from its
/// domain: `dmarc=pass` for `header.from` = the domain, or `dkim=pass` for a signing
/// domain (`header.d`, or the domain of `header.i`) equal to the sender's domain or a
/// parent of it (relaxed alignment). Only the receiving server's header counts: the one
/// whose authserv-id is `authserv_id` when the channel names it, else the topmost (a
/// sender can put forged ones below it, never above).
pub fn sender_authenticated(results: &[String], address: &str, authserv_id: Option<&str>) -> bool {
    let Some(domain) = address.rsplit_once('@').map(|(_, d)| d.trim().to_ascii_lowercase()) else {
        return false;
    };
    let header = match authserv_id {
        Some(id) => results.iter().find(|r| {
            r.split(';')
                .next()
                .and_then(|first| first.split_whitespace().next())
                .is_some_and(|serv| serv.eq_ignore_ascii_case(id.trim()))
        }),
        None => results.first(),
    };
    let Some(header) = header else { return false };
    let aligned = |d: &str| {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        !d.is_empty() && (domain == d || domain.ends_with(&format!(".{d}")))
    };
    // The first `;`-separated part is the authserv-id; each other part is one method's result.
    header.split(';').skip(1).any(|part| {
        let mut words = part.split_whitespace();
        let Some(method) = words.next().map(str::to_ascii_lowercase) else {
            return false;
        };
        let props: Vec<(String, String)> = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_string()))
            .collect();
        let prop = |k: &str| props.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
        match method.as_str() {
            "dmarc=pass" => prop("header.from").is_some_and(|d| d.eq_ignore_ascii_case(&domain)),
            "dkim=pass" => prop("header.d")
                .or_else(|| prop("header.i").and_then(|i| i.rsplit_once('@').map(|(_, d)| d)))
                .is_some_and(aligned),
            _ => false,
        }
    })
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
    let identity = if mail.authenticated {
        Identity {
            email: Some(mail.from.clone()),
            ..Default::default()
        }
    } else {
        Identity {
            email_unverified: Some(mail.from.clone()),
            ..Default::default()
        }
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
    use leadflow_shared::inbound::email::StoredAttachment;
    use leadflow_shared::inbound::MediaKind;
    use uuid::Uuid;

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
            authenticated: true,
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
    fn only_the_receiving_servers_pass_for_the_senders_domain_authenticates() {
        let gmail = |r: &str| vec![r.to_string()];
        let ok = "mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=abc; \
                  spf=pass smtp.mailfrom=mariana@example.com; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.com";
        assert!(sender_authenticated(&gmail(ok), "mariana@example.com", None));
        assert!(
            sender_authenticated(&gmail(ok), "mariana@mail.example.com", None),
            "relaxed DKIM alignment"
        );
        assert!(!sender_authenticated(&gmail(ok), "mariana@evil.example.net", None));
        let spf_only =
            "mx.google.com; spf=pass smtp.mailfrom=example.com; dkim=none; dmarc=fail header.from=example.com";
        assert!(!sender_authenticated(&gmail(spf_only), "mariana@example.com", None));
        let dmarc = "mx.example.net; dmarc=pass header.from=example.com";
        assert!(sender_authenticated(&gmail(dmarc), "a@example.com", None));
        assert!(
            !sender_authenticated(&gmail(dmarc), "a@sub.example.com", None),
            "DMARC names the exact domain"
        );
        // A forged header below the server's own does not count.
        let forged = vec![spf_only.to_string(), ok.to_string()];
        assert!(!sender_authenticated(&forged, "mariana@example.com", None));
        // Naming the server picks its header wherever it is; others are ignored.
        let named = vec![ok.replace("mx.google.com", "attacker.example"), spf_only.to_string()];
        assert!(!sender_authenticated(
            &named,
            "mariana@example.com",
            Some("mx.google.com")
        ));
        assert!(sender_authenticated(
            &gmail(ok),
            "mariana@example.com",
            Some("MX.google.com")
        ));
        assert!(!sender_authenticated(&[], "mariana@example.com", None));
        assert!(!sender_authenticated(&gmail(ok), "no-at-sign", None));
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
