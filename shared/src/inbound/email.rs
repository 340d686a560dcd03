//! E-mail as the pipeline stores it: the worker polls the channel's IMAP mailbox and keeps
//! each new message as an inbound event in the shape below ([`StoredMail`]), with its
//! attachments in PostgreSQL referenced by id (a
//! [`crate::media_handle::MediaHandle::MailAttachment`]). The e-mail provider
//! (`leadflow_providers::email`) parses it into lead messages and threads replies with
//! [`Thread`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// The receiving server's `Authentication-Results` show DMARC or DKIM passing for
    /// the sender's domain (`leadflow_providers::email::sender_authenticated`). Only then is the mail linked to a
    /// conversation the address already has.
    #[serde(default)]
    pub authenticated: bool,
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
