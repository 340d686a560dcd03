//! Each provider's credentials as a type: which keys a channel of that provider must have
//! and which it may have are declared once, here, and everything else follows from that
//! declaration: the API's validation of a channel (`credentials.<key>` missing or unknown),
//! the README's table, and the typed values each provider's module in
//! `leadflow-providers` (sending, connection check, media, webhook verification) reads (`creds.instance_token`, never a lookup by
//! string). Stored, they stay one encrypted JSON object of strings per channel; they are
//! parsed into their type where they are opened.

use crate::channel::Provider;

/// What a channel's stored credentials are, as the API merged and validated them.
pub type Map = std::collections::BTreeMap<String, String>;

/// A required key the stored credentials lack (a channel written before the key was
/// required, or edited in the database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the channel has no credentials.{0}")]
pub struct Missing(pub &'static str);

macro_rules! credentials {
    ($(
        $(#[$doc:meta])*
        $name:ident for $provider:ident {
            required: [$($req:ident),* $(,)?],
            optional: [$($opt:ident),* $(,)?] $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone)]
            pub struct $name {
                $(pub $req: String,)*
                $(pub $opt: Option<String>,)*
            }

            impl $name {
                pub const REQUIRED: &'static [&'static str] = &[$(stringify!($req)),*];
                pub const OPTIONAL: &'static [&'static str] = &[$(stringify!($opt)),*];

                pub fn from_map(map: &Map) -> Result<Self, Missing> {
                    Ok(Self {
                        $($req: map.get(stringify!($req)).cloned().ok_or(Missing(stringify!($req)))?,)*
                        $($opt: map.get(stringify!($opt)).cloned(),)*
                    })
                }
            }

            /// Names the type only: every field may be a secret.
            impl std::fmt::Debug for $name {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($name)).finish_non_exhaustive()
                }
            }
        )*

        /// A channel's credentials, typed by its provider.
        #[derive(Debug, Clone)]
        pub enum Credentials {
            $($provider($name),)*
        }

        impl Credentials {
            /// The stored map as `provider`'s credentials.
            pub fn parse(provider: Provider, map: &Map) -> Result<Self, Missing> {
                Ok(match provider {
                    $(Provider::$provider => Self::$provider($name::from_map(map)?),)*
                })
            }
        }

        /// Keys a channel of `provider` must have.
        pub fn required(provider: Provider) -> &'static [&'static str] {
            match provider {
                $(Provider::$provider => $name::REQUIRED,)*
            }
        }

        /// Keys it may also have.
        pub fn optional(provider: Provider) -> &'static [&'static str] {
            match provider {
                $(Provider::$provider => $name::OPTIONAL,)*
            }
        }
    };
}

credentials! {
    /// Z-API: the instance's id and token; `client_token` is the account's security token
    /// (sent as `Client-Token`).
    ZApi for ZApi {
        required: [instance_id, instance_token],
        optional: [client_token, base_url],
    }
    /// Evolution API: the server, its API key and the instance's name.
    Evolution for Evolution {
        required: [base_url, api_key, instance],
        optional: [],
    }
    /// Gupshup: the app's API key and name, and the sending number (`source`).
    Gupshup for Gupshup {
        required: [api_key, app_name, source],
        optional: [base_url, template_id],
    }
    /// Meta Cloud API: a system user's token, the number's id, the app secret (webhook
    /// signatures) and the verify token (the webhook's subscription handshake).
    MetaCloud for MetaCloud {
        required: [access_token, phone_number_id, app_secret, verify_token],
        optional: [base_url, api_version, template_name, template_language],
    }
    /// Telegram: the bot's token.
    TelegramBot for TelegramBot {
        required: [bot_token],
        optional: [base_url],
    }
    /// E-mail: SMTP out (and IMAP in, when `imap_host` is given; its login defaults to
    /// SMTP's).
    SmtpImap for SmtpImap {
        required: [smtp_host, username, password, from],
        optional: [
            smtp_port,
            smtp_security,
            subject,
            imap_host,
            imap_port,
            imap_security,
            imap_mailbox,
            imap_username,
            imap_password,
            imap_authserv_id,
        ],
    }
    /// Twilio: the account and its auth token (also the webhook signature's key), and the
    /// sending number.
    Twilio for Twilio {
        required: [account_sid, auth_token, from],
        optional: [base_url],
    }
    /// A generic HTTP SMS gateway: where to POST, with an optional bearer key and sender.
    HttpSms for HttpSms {
        required: [send_url],
        optional: [api_key, from],
    }
}

/// Keys that hold a URL the tenant chose (checked against the SSRF policy when a channel
/// is saved; each provider's `Channel::urls` in `leadflow-providers` names them again
/// before every call).
pub const URL_KEYS: [&str; 2] = ["base_url", "send_url"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_with_the_required_keys_parses_and_a_missing_one_is_named() {
        for p in Provider::EVERY {
            let mut map: Map = required(p).iter().map(|k| (k.to_string(), format!("v-{k}"))).collect();
            assert!(Credentials::parse(p, &map).is_ok(), "{}", p.as_str());
            let first = required(p)[0];
            map.remove(first);
            assert_eq!(Credentials::parse(p, &map).unwrap_err(), Missing(first));
        }
        let map: Map = [
            ("instance_id", "3C0"),
            ("instance_token", "tok"),
            ("client_token", "ct"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match Credentials::parse(Provider::ZApi, &map).unwrap() {
            Credentials::ZApi(c) => {
                assert_eq!((c.instance_id.as_str(), c.client_token.as_deref()), ("3C0", Some("ct")));
                assert_eq!(c.base_url, None);
                assert!(!format!("{c:?}").contains("tok"), "Debug shows no secret");
            }
            other => panic!("{other:?}"),
        }
    }
}
