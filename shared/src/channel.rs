//! Channels: the ways leads reach a business (WhatsApp through Z-API, Evolution API,
//! Gupshup or Meta Cloud; Telegram; e-mail; SMS): their types, providers and connection
//! states as the database and the API name them. What each provider needs and does
//! (its credentials, webhooks, sending) is its module's in `leadflow-providers`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Whatsapp,
    Telegram,
    Email,
    Sms,
}

impl ChannelType {
    pub const ALL: &'static str = "whatsapp, telegram, email, sms";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "whatsapp" => Self::Whatsapp,
            "telegram" => Self::Telegram,
            "email" => Self::Email,
            "sms" => Self::Sms,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Telegram => "telegram",
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
}

/// A WhatsApp channel's connection (`channels.connection`), as the periodic check or the
/// provider's own connection webhook last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// Not looked at yet (or not a provider with a status endpoint).
    Unknown,
    Connected,
    Disconnected,
}

impl Connection {
    pub const ALL: [Connection; 3] = [Self::Unknown, Self::Connected, Self::Disconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    ZApi,
    Evolution,
    Gupshup,
    MetaCloud,
    TelegramBot,
    SmtpImap,
    Twilio,
    /// A generic HTTP SMS gateway: one POST per message.
    HttpSms,
}

impl Provider {
    pub const ALL: &'static str =
        "z-api, evolution-api, gupshup, meta-cloud, telegram-bot, smtp-imap, twilio, http-sms";
    pub const EVERY: [Provider; 8] = [
        Self::ZApi,
        Self::Evolution,
        Self::Gupshup,
        Self::MetaCloud,
        Self::TelegramBot,
        Self::SmtpImap,
        Self::Twilio,
        Self::HttpSms,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::EVERY.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZApi => "z-api",
            Self::Evolution => "evolution-api",
            Self::Gupshup => "gupshup",
            Self::MetaCloud => "meta-cloud",
            Self::TelegramBot => "telegram-bot",
            Self::SmtpImap => "smtp-imap",
            Self::Twilio => "twilio",
            Self::HttpSms => "http-sms",
        }
    }

    /// The only channel type this provider serves.
    pub fn channel_type(self) -> ChannelType {
        match self {
            Self::ZApi | Self::Evolution | Self::Gupshup | Self::MetaCloud => ChannelType::Whatsapp,
            Self::TelegramBot => ChannelType::Telegram,
            Self::SmtpImap => ChannelType::Email,
            Self::Twilio | Self::HttpSms => ChannelType::Sms,
        }
    }
}

/// Compares two secrets (webhook tokens, the operator token) in time independent of
/// where, and of how long, they differ.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    // Both sides hashed first: the comparison then takes the same time whatever either
    // holds, its length included.
    use sha2::Digest;
    let (a, b) = (
        sha2::Sha256::digest(given.as_bytes()),
        sha2::Sha256::digest(expected.as_bytes()),
    );
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A credential as shown back to the tenant: enough to recognise it, never enough to use
/// it (`sk-t…7f3a`; short values are fully hidden).
pub fn mask(name: &str, value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    // A password is shown as nothing at all; any other secret by at most its last four
    // characters, and only when it is long enough that they do not give it away.
    if name.contains("password") || chars.len() < 12 {
        return "••••".into();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_round_trip_and_imply_their_type() {
        for p in Provider::EVERY {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
            assert!(Provider::ALL.contains(p.as_str()));
        }
        assert_eq!(Provider::parse("z-api").unwrap().channel_type(), ChannelType::Whatsapp);
        assert_eq!(Provider::parse("twilio").unwrap().channel_type(), ChannelType::Sms);
        assert_eq!(Provider::parse("whatsapp-web"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secrets_match("abc", "abc") && !secrets_match("abc", "abd") && !secrets_match("ab", "abc"));
    }

    #[test]
    fn masks_never_reveal_a_usable_secret() {
        assert_eq!(mask("token", "short"), "••••");
        assert_eq!(mask("bot_token", "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"), "…ew11");
        assert_eq!(mask("password", "a-very-long-mailbox-password"), "••••");
    }
}
