//! E-mail in: an IMAP session that fetches what arrived since the last poll, and the
//! parsing of a raw RFC 5322 message into the [`StoredMail`] the pipeline reads.
//!
//! Credentials: `imap_host`, `imap_port` (993 with TLS, 143 without), `imap_security`
//! (`tls` by default, `none` for a private server), `imap_mailbox` (`INBOX`), and the
//! channel's `username`/`password` (or `imap_username`/`imap_password` when the IMAP
//! login differs from the SMTP one). Messages are fetched with `BODY.PEEK[]`, so the
//! mailbox's read flags stay as the humans sharing it left them.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use leadflow_providers::email::strip_quoted;
use leadflow_providers::email::SmtpImap;
use leadflow_shared::inbound::email::StoredMail;
use mail_parser::{MessageParser, MimeHeaders};
use tokio::net::TcpStream;

/// Messages fetched per poll; the rest wait for the next one.
pub const BATCH: usize = 50;
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{0}")]
    Config(String),
    #[error("IMAP server {server}: {message}")]
    Imap { server: String, message: String },
}

/// Where the poll starts: the mailbox's UIDVALIDITY and last UID seen, or, on the first
/// poll, nothing (only mail dated after the channel was created is taken then).
pub struct Fetched {
    pub uid_validity: i64,
    /// In UID order, UIDs above the watermark only.
    pub messages: Vec<FetchedMail>,
    /// More new mail is waiting than this poll took.
    pub more: bool,
    /// The highest UID in the mailbox when nothing new was found (first poll of an empty
    /// or old mailbox): where the watermark starts.
    pub newest: i64,
}

pub enum FetchedMail {
    /// `(uid, raw message)`.
    Mail(i64, Vec<u8>),
    /// A message over the size limit (`RFC822.SIZE` bytes): never downloaded.
    TooLarge(i64, u64),
}

impl FetchedMail {
    pub fn uid(&self) -> i64 {
        match self {
            Self::Mail(uid, _) | Self::TooLarge(uid, _) => *uid,
        }
    }
}

pub struct Server {
    pub host: String,
    pub port: u16,
    tls: bool,
    user: String,
    password: String,
    mailbox: String,
}

impl Server {
    pub fn from_credentials(creds: &SmtpImap) -> Result<Option<Self>, MailError> {
        let Some(host) = &creds.imap_host else {
            return Ok(None); // send-only channel
        };
        let tls = match creds.imap_security.as_deref().unwrap_or("tls") {
            "tls" => true,
            "none" => false,
            other => {
                return Err(MailError::Config(format!(
                    "credentials.imap_security must be tls or none, not {other:?}"
                )))
            }
        };
        let port = match &creds.imap_port {
            Some(p) => p
                .parse()
                .map_err(|_| MailError::Config("credentials.imap_port must be a port number".into()))?,
            None if tls => 993,
            None => 143,
        };
        // The IMAP login defaults to SMTP's.
        Ok(Some(Self {
            host: host.clone(),
            port,
            tls,
            user: creds.imap_username.clone().unwrap_or_else(|| creds.username.clone()),
            password: creds.imap_password.clone().unwrap_or_else(|| creds.password.clone()),
            mailbox: creds.imap_mailbox.clone().unwrap_or_else(|| "INBOX".into()),
        }))
    }

    fn fail(&self, message: impl std::fmt::Display) -> MailError {
        MailError::Imap {
            server: format!("{}:{}", self.host, self.port),
            message: message.to_string(),
        }
    }

    /// Everything above `after` (`(uid_validity, last_uid)`), at most [`BATCH`] messages.
    /// Connects to `addr` (the checked address of `host`); the name is used for TLS only.
    /// Sizes are asked first: a message over `max_bytes` is never downloaded, the others
    /// are fetched one at a time, and a poll stops taking messages once it holds about
    /// twice `max_bytes` (the rest waits for the next poll, `more`).
    pub async fn fetch_new(
        &self,
        addr: std::net::SocketAddr,
        after: Option<(i64, i64)>,
        max_bytes: u64,
    ) -> Result<Fetched, MailError> {
        let work = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| self.fail(e))?;
            if !self.tls {
                return self.session(tcp, after, max_bytes).await;
            }
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| self.fail(e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| self.fail(e))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| self.fail(e))?;
            self.session(stream, after, max_bytes).await
        };
        tokio::time::timeout(IO_TIMEOUT, work)
            .await
            .map_err(|_| self.fail(format!("no answer within {IO_TIMEOUT:?}")))?
    }

    async fn session<T>(&self, stream: T, after: Option<(i64, i64)>, max_bytes: u64) -> Result<Fetched, MailError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|e| self.fail(e))?
            .ok_or_else(|| self.fail("closed the connection before greeting"))?;
        let mut session = client
            .login(&self.user, &self.password)
            .await
            .map_err(|(e, _)| self.fail(format!("login refused: {e}")))?;
        let mailbox = session.select(&self.mailbox).await.map_err(|e| self.fail(e))?;
        let validity = i64::from(mailbox.uid_validity.unwrap_or(0));
        // A changed UIDVALIDITY renumbers the mailbox: start over (Message-ID dedupe
        // keeps mail already answered from being answered again).
        let last = after.filter(|(v, _)| *v == validity).map_or(0, |(_, uid)| uid);
        // `n:*` always matches the newest message, even below n: filter on our side.
        let mut uids: Vec<i64> = session
            .uid_search(format!("UID {}:*", last + 1))
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(i64::from)
            .filter(|u| *u > last)
            .collect();
        uids.sort_unstable();
        let newest = uids.last().copied().unwrap_or(last);
        let mut more = uids.len() > BATCH;
        uids.truncate(BATCH);
        let mut messages = Vec::with_capacity(uids.len());
        if !uids.is_empty() {
            let set: Vec<String> = uids.iter().map(i64::to_string).collect();
            let sizes: Vec<_> = session
                .uid_fetch(set.join(","), "(UID RFC822.SIZE)")
                .await
                .map_err(|e| self.fail(e))?
                .try_collect()
                .await
                .map_err(|e| self.fail(e))?;
            let size_of = |uid: i64| {
                sizes
                    .iter()
                    .find(|f| f.uid.map(i64::from) == Some(uid))
                    .and_then(|f| f.size)
                    .map(u64::from)
            };
            let mut held = 0u64;
            for uid in uids {
                if held > max_bytes.saturating_mul(2) {
                    more = true;
                    break;
                }
                match size_of(uid) {
                    Some(size) if size > max_bytes => {
                        messages.push(FetchedMail::TooLarge(uid, size));
                        continue;
                    }
                    Some(size) => held += size,
                    None => {}
                }
                let fetched: Vec<_> = session
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                    .await
                    .map_err(|e| self.fail(e))?
                    .try_collect()
                    .await
                    .map_err(|e| self.fail(e))?;
                if let Some(body) = fetched
                    .iter()
                    .find(|f| f.uid.map(i64::from) == Some(uid))
                    .and_then(|f| f.body())
                {
                    // A server that gave no size (or a wrong one) still cannot hand over more.
                    if body.len() as u64 > max_bytes {
                        messages.push(FetchedMail::TooLarge(uid, body.len() as u64));
                    } else {
                        messages.push(FetchedMail::Mail(uid, body.to_vec()));
                    }
                }
            }
        }
        let _ = session.logout().await;
        Ok(Fetched {
            uid_validity: validity,
            messages,
            more,
            newest,
        })
    }
}

/// An attachment as parsed, before it is stored.
pub struct Attachment {
    pub file_name: Option<String>,
    pub mime: Option<String>,
    pub data: Vec<u8>,
}

/// A raw message as the pipeline's [`StoredMail`] (attachments still to be stored and
/// their ids filled in), or `None` when it is not a parsable e-mail with a sender.
/// `authserv_id`: the channel's receiving server, whose `Authentication-Results` count.
pub fn parse(raw: &[u8], authserv_id: Option<&str>) -> Option<(StoredMail, Vec<Attachment>)> {
    let msg = MessageParser::default().parse(raw)?;
    let from = msg.from()?.first()?;
    let address = from.address()?.trim().to_ascii_lowercase();
    let results: Vec<String> = msg
        .headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case("Authentication-Results"))
        .filter_map(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .map(|v| {
            String::from_utf8_lossy(v)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let authenticated = leadflow_providers::email::sender_authenticated(&results, &address, authserv_id);
    let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    let automatic = header("Auto-Submitted").is_some_and(|v| v != "no")
        || header("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply"))
        || header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || msg.header_raw("List-Id").is_some()
        || address.starts_with("mailer-daemon@")
        || address.starts_with("postmaster@")
        || msg.content_type().is_some_and(|c| c.subtype() == Some("report"));
    let message_id = msg.message_id().map(str::to_string).unwrap_or_else(|| {
        // No Message-ID: a stable one from the content, so a re-fetch is still a duplicate.
        use sha2::Digest;
        format!("{}@leadflow.invalid", hex_digest(&sha2::Sha256::digest(raw)))
    });
    let ids = |v: &mail_parser::HeaderValue| -> Vec<String> {
        match (v.as_text_list(), v.as_text()) {
            (Some(list), _) => list.iter().map(|s| s.to_string()).collect(),
            (None, Some(one)) => vec![one.to_string()],
            _ => vec![],
        }
    };
    let text = msg.body_text(0).map(|t| strip_quoted(&t)).unwrap_or_default();
    let attachments = msg
        .attachments()
        .filter(|p| !p.is_message())
        .map(|p| Attachment {
            file_name: p.attachment_name().map(str::to_string),
            mime: p.content_type().map(|c| match c.subtype() {
                Some(sub) => format!("{}/{sub}", c.ctype()).to_ascii_lowercase(),
                None => c.ctype().to_ascii_lowercase(),
            }),
            data: p.contents().to_vec(),
        })
        .collect();
    let mail = StoredMail {
        message_id,
        from: address,
        from_name: from.name().map(str::to_string).filter(|n| !n.trim().is_empty()),
        subject: msg.subject().map(str::to_string),
        in_reply_to: ids(msg.in_reply_to()).into_iter().next(),
        references: ids(msg.references()),
        text,
        date_ms: msg.date().map(|d| d.to_timestamp() * 1000),
        attachments: vec![],
        automatic,
        authenticated,
    };
    Some((mail, attachments))
}

fn hex_digest(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "From: Mariana Souza <Mariana@Example.com>\r\nTo: vendas@imob.example\r\n\
        Subject: Re: Apartamento na Vila Mariana\r\nMessage-ID: <CAB1@mail.gmail.com>\r\n\
        In-Reply-To: <0192@imob.example>\r\nReferences: <0191@imob.example> <0192@imob.example>\r\n\
        Date: Sat, 21 Nov 2026 14:02:11 -0300\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
        Segue o comprovante. Posso visitar s=C3=A1bado?\r\n\r\nEm sex., 20 de nov., vendas escreveu:\r\n> Ol=C3=A1!\r\n--b1\r\n\
        Content-Type: application/pdf; name=\"renda.pdf\"\r\nContent-Disposition: attachment; filename=\"renda.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";

    #[test]
    fn a_reply_with_a_pdf() {
        let (m, atts) = parse(REPLY.as_bytes(), None).unwrap();
        assert_eq!(m.from, "mariana@example.com");
        assert_eq!(m.from_name.as_deref(), Some("Mariana Souza"));
        assert_eq!(m.message_id, "CAB1@mail.gmail.com");
        assert_eq!(m.in_reply_to.as_deref(), Some("0192@imob.example"));
        assert_eq!(m.references, ["0191@imob.example", "0192@imob.example"]);
        assert_eq!(m.text, "Segue o comprovante. Posso visitar sábado?");
        assert!(!m.automatic);
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0].file_name.as_deref(), Some("renda.pdf"));
        assert_eq!(atts[0].mime.as_deref(), Some("application/pdf"));
        assert_eq!(atts[0].data, b"%PDF-1.4\n");
    }

    #[test]
    fn auto_replies_are_marked() {
        let ooo = "From: a@b.example\r\nAuto-Submitted: auto-replied\r\nSubject: Fora\r\n\r\nFora do escritório\r\n";
        assert!(parse(ooo.as_bytes(), None).unwrap().0.automatic);
        let bounce = "From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered\r\n\r\nx\r\n";
        assert!(parse(bounce.as_bytes(), None).unwrap().0.automatic);
        assert!(parse(b"not an e-mail at all", None).is_none());
    }
}
