//! E-mail out over SMTP (`lettre`). Credentials: `smtp_host`, `smtp_port` (default 587),
//! `smtp_security` (`starttls` by default, `tls` for implicit TLS on 465, `none` for
//! plain text, only sensible on a private relay), `username`, `password`, `from`.
//!
//! A reply threads: it answers the lead's last e-mail on this channel with `Re:` and its
//! subject, `In-Reply-To` its `Message-ID` and `References` its chain, so mail clients
//! show one conversation. Our own `Message-ID` is the provider id in the outbox.

use std::time::Duration;

use super::SmtpImap;
use leadflow_shared::ssrf::Policy;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials as Login;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::net::SocketAddr;

use crate::http::{Recipient, SendError, Sent};

use leadflow_shared::inbound::email::Thread;

/// `(host, port)` of the channel's SMTP server.
pub fn smtp_server(creds: &SmtpImap) -> Result<(String, u16), SendError> {
    let host = creds.smtp_host.clone();
    let port = match &creds.smtp_port {
        Some(p) => p
            .parse()
            .map_err(|_| SendError::Config("credentials.smtp_port must be a port number".into()))?,
        None if creds.smtp_security.as_deref() == Some("tls") => 465,
        None => 587,
    };
    Ok((host, port))
}

/// A transport that connects to `addr` (checked once by the SSRF guard) and uses the
/// host name only for TLS: SNI and the certificate check.
fn transport(creds: &SmtpImap, addr: SocketAddr) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let (host, port) = smtp_server(creds)?;
    let tls = || TlsParameters::new(host.clone()).map_err(|e| SendError::Config(format!("SMTP server {host}: {e}")));
    let tls = match creds.smtp_security.as_deref().unwrap_or("starttls") {
        "starttls" => Tls::Required(tls()?),
        "tls" => Tls::Wrapper(tls()?),
        "none" => Tls::None,
        other => {
            return Err(SendError::Config(format!(
                "credentials.smtp_security must be starttls, tls or none, not {other:?}"
            )))
        }
    };
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .tls(tls)
            .port(port)
            .credentials(Login::new(creds.username.clone(), creds.password.clone()))
            .timeout(Some(Duration::from_secs(30)))
            .build(),
    )
}

fn reply_subject(thread: Option<&Thread>, fallback: &str) -> String {
    match thread.and_then(|t| t.subject.as_deref()).map(str::trim) {
        Some(s) if s.to_ascii_lowercase().starts_with("re:") => s.to_string(),
        Some(s) if !s.is_empty() => format!("Re: {s}"),
        _ => fallback.to_string(),
    }
}

pub async fn send_text(policy: &Policy, creds: &SmtpImap, to: &Recipient, text: &str) -> Result<Sent, SendError> {
    let address = to
        .email
        .as_deref()
        .ok_or_else(|| SendError::Config("the lead has no e-mail address".into()))?;
    let from: Mailbox = creds
        .from
        .parse()
        .map_err(|e| SendError::Config(format!("credentials.from is not an address: {e}")))?;
    let lead: Mailbox = address
        .parse()
        .map_err(|e| SendError::Config(format!("the lead's address {address:?} is invalid: {e}")))?;
    let id = format!("{}@{}", uuid::Uuid::now_v7().simple(), from.email.domain());
    let thread = to.thread.as_ref();
    let fallback = creds.subject.as_deref().unwrap_or("Re: your message");
    let mut message = Message::builder()
        .from(from)
        .to(lead)
        .subject(reply_subject(thread, fallback))
        .message_id(Some(format!("<{id}>")))
        .header(ContentType::TEXT_PLAIN);
    if let Some(t) = thread {
        if let Some(parent) = &t.in_reply_to {
            message = message.in_reply_to(format!("<{parent}>"));
            let chain: Vec<String> = t
                .references
                .iter()
                .chain(std::iter::once(parent))
                .map(|r| format!("<{r}>"))
                .collect();
            message = message.references(chain.join(" "));
        }
    }
    let message = message
        .body(text.to_string())
        .map_err(|e| SendError::Config(format!("the e-mail could not be built: {e}")))?;
    let (host, port) = smtp_server(creds)?;
    let addr = policy
        .resolve_host(&host, port)
        .await
        .map_err(|e| SendError::Config(format!("credentials.smtp_host refused: {e}")))?;
    match transport(creds, addr)?.send(message).await {
        Ok(resp) => Ok(Sent {
            status: u16::from(resp.code()),
            provider_message_id: Some(id),
        }),
        // 4yz replies and lost connections are worth another try; 5yz are final.
        Err(e) if e.is_permanent() => Err(SendError::Refused(format!("the SMTP server refused the message: {e}"))),
        Err(e) => Err(SendError::Network(format!("SMTP: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_one_re() {
        let t = |s: &str| Thread {
            subject: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(reply_subject(Some(&t("Apartamento")), "x"), "Re: Apartamento");
        assert_eq!(reply_subject(Some(&t("RE: Apartamento")), "x"), "RE: Apartamento");
        assert_eq!(reply_subject(None, "Olá"), "Olá");
    }
}
