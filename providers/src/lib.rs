//! The messaging providers, one module each, holding everything Leadflow knows about that
//! provider: how its webhook calls are verified and bound to a channel, how its payloads
//! parse into lead messages ([`leadflow_shared::inbound::Parsed`]), how a message is sent
//! through it, how its connection is checked and how its media handles are resolved, and
//! the typed credentials a channel of it holds ([`credentials!`]); each module implements
//! [`Channel`] for its credentials type.
//!
//! A crate of its own because both the API (verification, parsing) and the worker
//! (parsing again, sending, checks, media) need a provider's knowledge, and neither should
//! hold the other's half of it; `shared` keeps what is provider-neutral (the normalised
//! inbound shape, the credentials' storage, the database).
//!
//! Adding a provider: its name as a `Provider` variant in `leadflow-shared` (the database
//! and the API's vocabulary), a module here declaring its credentials and implementing
//! [`Channel`], and its line in the `registry!` list below. Every dispatch (credentials,
//! webhooks, sends, checks, media) is generated from that list.
#![forbid(unsafe_code)]

pub mod credentials;
pub mod download;
pub mod email;
pub mod evolution;
pub mod gupshup;
mod http;
pub mod http_sms;
pub mod meta;
pub mod telegram;
#[cfg(test)]
mod testing;
pub mod twilio;
pub mod zapi;

use std::future::Future;

use leadflow_shared::channel::Provider;
use leadflow_shared::inbound::{ParseError, Parsed};
use leadflow_shared::media_handle::{MediaHandle, NOT_ALLOWED};
use serde_json::Value;

pub use download::{DownloadError, Downloaded};
pub use http::{error_chain, http_error, split_reply, Recipient, SendError, Sent};

/// One call to `/webhooks/{channel_id}` as the provider made it.
pub struct WebhookCall<'a> {
    pub headers: &'a reqwest::header::HeaderMap,
    /// `?token=`.
    pub query_token: Option<&'a str>,
    /// The URL the provider called, as it saw it (Twilio signs it).
    pub url: &'a str,
    pub body: &'a [u8],
    /// The channel's webhook secret (what URL- and header-token providers present); a
    /// channel without one verifies no token.
    pub webhook_secret: Option<&'a str>,
}

impl WebhookCall<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The webhook secret in `?token=` (providers that can only be given a URL).
    pub fn token_in_url(&self) -> bool {
        self.query_token.is_some_and(|t| self.secret_is(t))
    }

    /// Whether `given` is the channel's webhook secret.
    pub fn secret_is(&self, given: &str) -> bool {
        self.webhook_secret
            .is_some_and(|s| leadflow_shared::channel::secrets_match(given, s))
    }
}

/// How a provider expects its webhook call to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// `{"success": true, "stored": n, "duplicates": n}`.
    Json,
    /// An empty TwiML `<Response>` (Twilio reads the answer as instructions).
    TwiML,
}

/// What a connection check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Connected,
    Disconnected(String),
    /// Neither: Evolution still `connecting`, or an instance not loaded yet.
    Unsettled(String),
}

/// What sending needs besides the channel: the SSRF-guarded client and the policy (an
/// SMTP host is resolved and checked like a URL).
pub struct Outbound<'a> {
    pub http: &'a reqwest::Client,
    pub ssrf: &'a leadflow_shared::ssrf::Policy,
}

/// What resolving a media handle needs: the guarded client for provider API calls, the
/// redirect-following one for files, the policy, and the database (e-mail attachments
/// are stored with their message) with the message's tenant and channel.
pub struct MediaFetch<'a> {
    pub api: &'a reqwest::Client,
    pub files: &'a reqwest::Client,
    pub ssrf: &'a leadflow_shared::ssrf::Policy,
    pub pool: &'a sqlx::PgPool,
    pub tenant_id: uuid::Uuid,
    pub channel_id: uuid::Uuid,
}

/// Everything one provider does, implemented on its credentials type. The defaults are
/// what most providers do: a webhook secret in the URL, a JSON body, no binding, a JSON
/// acknowledgement, no 24-hour window, no template, no connection check, no handles.
pub trait Channel: Sized + Send + Sync {
    const PROVIDER: Provider;

    /// Official WhatsApp: free-form messages only within 24 h of the lead's last message;
    /// outside it, an approved template or nothing.
    const HAS_24H_WINDOW: bool = false;

    /// Whether [`check`](Self::check) asks the provider (a session that can be lost).
    const CHECKED: bool = false;

    /// Whether webhook calls are verified with the credentials (a signature) rather than
    /// with the channel's webhook secret: the handler then opens the credentials, and
    /// [`bind`](Self::bind) runs, instead of opening the secret.
    const SIGNED: bool = false;

    /// Whether `call` comes from the provider. `creds` is `None` when the channel's
    /// stored credentials lack a required key (then nothing verifies against them), and
    /// always for a provider that is not [`SIGNED`](Self::SIGNED).
    fn verify(creds: Option<&Self>, call: &WebhookCall<'_>) -> bool {
        let _ = creds;
        call.token_in_url()
    }

    /// The body as the JSON that is stored and parsed.
    fn payload(body: &[u8]) -> Result<Value, String> {
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))
    }

    /// Keeps only what a verified call says about this channel; `false`: none of it is
    /// (acknowledged, not stored). One Meta app secret or Twilio account often serves
    /// several tenants' numbers: without this, any holder of it could write into another
    /// tenant's channel.
    fn bind(&self, payload: &mut Value) -> bool {
        let _ = payload;
        true
    }

    /// A subscription handshake (`GET` on the webhook URL): the text to answer, when the
    /// call proves it knows the channel's verify token.
    fn subscribe(&self, mode: Option<&str>, verify_token: Option<&str>, challenge: Option<&str>) -> Option<String> {
        let _ = (mode, verify_token, challenge);
        None
    }

    fn parse(payload: &Value) -> Result<Parsed, ParseError>;

    fn ack() -> Ack {
        Ack::Json
    }

    /// URLs the tenant gave, by credential key, checked against the SSRF policy before
    /// any call to them.
    fn urls(&self) -> Vec<(&'static str, &str)>;

    /// Why sending through this channel is refused before any attempt (an address the
    /// SSRF policy refuses), if it is.
    fn refused(&self, ssrf: &leadflow_shared::ssrf::Policy) -> impl Future<Output = Option<String>> + Send {
        async move {
            for (key, url) in self.urls() {
                if let Err(e) = ssrf.check_url(url).await {
                    return Some(format!("credentials.{key} refused: {e}"));
                }
            }
            None
        }
    }

    /// Fills in what only this provider needs to address `to` on `channel_id` (e-mail: the
    /// conversation a reply answers).
    fn address(
        &self,
        pool: &sqlx::PgPool,
        channel_id: uuid::Uuid,
        to: &mut Recipient,
    ) -> impl Future<Output = Result<(), leadflow_shared::db::DbError>> + Send {
        let _ = (pool, channel_id, to);
        async { Ok(()) }
    }

    fn send_text(
        &self,
        out: &Outbound<'_>,
        to: &Recipient,
        text: &str,
    ) -> impl Future<Output = Result<Sent, SendError>> + Send;

    /// The channel's approved template (outside the 24-hour window): `Some(name)` once
    /// sent, `None` when the channel has none configured.
    fn send_template(
        &self,
        out: &Outbound<'_>,
        to: &Recipient,
    ) -> impl Future<Output = Result<Option<(String, Sent)>, SendError>> + Send {
        let _ = (out, to);
        async { Ok(None) }
    }

    /// `Err` when the provider could not be asked (network, 5xx, a bad answer).
    fn check(&self, http: &reqwest::Client) -> impl Future<Output = Result<Observed, SendError>> + Send {
        let _ = http;
        async { Ok(Observed::Unsettled("the provider has no status endpoint".into())) }
    }

    /// The handle a parser's `file_ref` means on this provider's channel; `None` where the
    /// provider has no handles (its media come as URLs) or the reference is malformed.
    /// `file_ref` is trimmed and not empty.
    fn media_handle(file_ref: &str) -> Option<MediaHandle> {
        let _ = file_ref;
        None
    }

    /// The bytes behind one of this provider's media handles.
    fn fetch_media(
        &self,
        media: &MediaFetch<'_>,
        handle: &MediaHandle,
        limit: u64,
    ) -> impl Future<Output = Result<Downloaded, DownloadError>> + Send {
        let _ = (media, handle, limit);
        async { Err(DownloadError::Refused(NOT_ALLOWED.into())) }
    }
}

/// Generates every dispatch from the list of providers: by [`Provider`] where no
/// credentials are at hand (parsing), by [`Credentials`] otherwise.
macro_rules! registry {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        /// A channel's credentials, typed by its provider.
        #[derive(Debug, Clone)]
        pub enum Credentials {
            $($variant($ty),)*
        }

        impl Credentials {
            /// The stored map as `provider`'s credentials.
            pub fn parse(provider: Provider, map: &credentials::Map) -> Result<Self, credentials::Missing> {
                Ok(match provider {
                    $(Provider::$variant => Self::$variant(<$ty>::from_map(map)?),)*
                })
            }
        }

        /// Keys a channel of `provider` must have.
        pub fn required(provider: Provider) -> &'static [&'static str] {
            match provider {
                $(Provider::$variant => <$ty>::REQUIRED,)*
            }
        }

        /// Keys it may also have.
        pub fn optional(provider: Provider) -> &'static [&'static str] {
            match provider {
                $(Provider::$variant => <$ty>::OPTIONAL,)*
            }
        }

        /// Parses a webhook body (as stored) in `provider`'s own format.
        pub fn parse(provider: Provider, payload: &Value) -> Result<Parsed, ParseError> {
            match provider {
                $(Provider::$variant => <$ty as Channel>::parse(payload),)*
            }
        }

        /// See [`Channel::media_handle`].
        pub fn media_handle(provider: Provider, file_ref: &str) -> Option<MediaHandle> {
            let file_ref = file_ref.trim();
            if file_ref.is_empty() {
                return None;
            }
            match provider {
                $(Provider::$variant => <$ty as Channel>::media_handle(file_ref),)*
            }
        }

        /// Whether `call` comes from `provider` (see [`Channel::verify`]).
        pub fn verify(provider: Provider, creds: Option<&Credentials>, call: &WebhookCall<'_>) -> bool {
            match (provider, creds) {
                $(
                    (Provider::$variant, Some(Credentials::$variant(c))) => <$ty>::verify(Some(c), call),
                    (Provider::$variant, _) => <$ty>::verify(None, call),
                )*
            }
        }

        /// The call's body as JSON (see [`Channel::payload`]).
        pub fn payload(provider: Provider, body: &[u8]) -> Result<Value, String> {
            match provider {
                $(Provider::$variant => <$ty as Channel>::payload(body),)*
            }
        }

        /// See [`Channel::SIGNED`].
        pub fn signed(provider: Provider) -> bool {
            match provider {
                $(Provider::$variant => <$ty as Channel>::SIGNED,)*
            }
        }

        pub fn ack(provider: Provider) -> Ack {
            match provider {
                $(Provider::$variant => <$ty as Channel>::ack(),)*
            }
        }

        pub fn has_24h_window(provider: Provider) -> bool {
            match provider {
                $(Provider::$variant => <$ty as Channel>::HAS_24H_WINDOW,)*
            }
        }

        /// The providers whose connection [`check`] asks about.
        pub fn checked() -> Vec<Provider> {
            let mut out = Vec::new();
            $(
                if <$ty as Channel>::CHECKED {
                    out.push(Provider::$variant);
                }
            )*
            out
        }

        /// See [`Channel::subscribe`].
        pub fn subscribe(
            creds: &Credentials,
            mode: Option<&str>,
            verify_token: Option<&str>,
            challenge: Option<&str>,
        ) -> Option<String> {
            match creds {
                $(Credentials::$variant(c) => c.subscribe(mode, verify_token, challenge),)*
            }
        }

        /// See [`Channel::bind`].
        pub fn bind(creds: &Credentials, payload: &mut Value) -> bool {
            match creds {
                $(Credentials::$variant(c) => c.bind(payload),)*
            }
        }

        /// See [`Channel::refused`].
        pub async fn refused(creds: &Credentials, ssrf: &leadflow_shared::ssrf::Policy) -> Option<String> {
            match creds {
                $(Credentials::$variant(c) => c.refused(ssrf).await,)*
            }
        }

        /// See [`Channel::address`].
        pub async fn address(
            creds: &Credentials,
            pool: &sqlx::PgPool,
            channel_id: uuid::Uuid,
            to: &mut Recipient,
        ) -> Result<(), leadflow_shared::db::DbError> {
            match creds {
                $(Credentials::$variant(c) => c.address(pool, channel_id, to).await,)*
            }
        }

        /// Sends `text` to `to` through the channel's provider.
        pub async fn send_text(out: &Outbound<'_>, creds: &Credentials, to: &Recipient, text: &str) -> Result<Sent, SendError> {
            match creds {
                $(Credentials::$variant(c) => c.send_text(out, to, text).await,)*
            }
        }

        /// See [`Channel::send_template`].
        pub async fn send_template(
            out: &Outbound<'_>,
            creds: &Credentials,
            to: &Recipient,
        ) -> Result<Option<(String, Sent)>, SendError> {
            match creds {
                $(Credentials::$variant(c) => c.send_template(out, to).await,)*
            }
        }

        /// See [`Channel::check`].
        pub async fn check(http: &reqwest::Client, creds: &Credentials) -> Result<Observed, SendError> {
            match creds {
                $(Credentials::$variant(c) => c.check(http).await,)*
            }
        }

        /// See [`Channel::fetch_media`]; `creds` are the channel's the handle came through.
        pub async fn fetch_media(
            media: &MediaFetch<'_>,
            creds: &Credentials,
            handle: &MediaHandle,
            limit: u64,
        ) -> Result<Downloaded, DownloadError> {
            match creds {
                $(Credentials::$variant(c) => c.fetch_media(media, handle, limit).await,)*
            }
        }
    };
}

registry!(
    ZApi => zapi::ZApi,
    Evolution => evolution::Evolution,
    Gupshup => gupshup::Gupshup,
    MetaCloud => meta::MetaCloud,
    TelegramBot => telegram::TelegramBot,
    SmtpImap => email::SmtpImap,
    Twilio => twilio::Twilio,
    HttpSms => http_sms::HttpSms,
);

/// The `base_url` key, when the tenant gave one.
fn base_url(u: &Option<String>) -> Vec<(&'static str, &str)> {
    u.as_deref().map(|u| ("base_url", u)).into_iter().collect()
}

/// A provider API call answering JSON, sorted like a download (5xx/429 retried); an
/// answer longer than `cap` bytes is refused as it streams in.
async fn media_api(media: &MediaFetch<'_>, req: reqwest::RequestBuilder, cap: u64) -> Result<Value, DownloadError> {
    let built = req.build().map_err(|e| DownloadError::Refused(http_error(e)))?;
    media
        .ssrf
        .check_url(built.url().as_str())
        .await
        .map_err(|e| DownloadError::Refused(e.to_string()))?;
    let mut resp = media
        .api
        .execute(built)
        .await
        .map_err(|e| DownloadError::Network(http_error(e)))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(DownloadError::Status { status });
    }
    let body = download::read_capped(&mut resp, cap).await?;
    serde_json::from_slice(&body).map_err(|_| DownloadError::Refused("the provider's answer is not JSON".into()))
}

/// The largest JSON answer a provider's media API call may give (a file path or URL).
const API_ANSWER_CAP: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_registered_once() {
        let map = |p: Provider| -> credentials::Map {
            required(p).iter().map(|k| (k.to_string(), format!("v-{k}"))).collect()
        };
        for p in Provider::EVERY {
            assert!(Credentials::parse(p, &map(p)).is_ok(), "{}", p.as_str());
            assert_eq!(has_24h_window(p), matches!(p, Provider::Gupshup | Provider::MetaCloud));
            assert_eq!(ack(p) == Ack::TwiML, p == Provider::Twilio, "{}", p.as_str());
            assert_eq!(
                signed(p),
                matches!(p, Provider::MetaCloud | Provider::Twilio),
                "{}",
                p.as_str()
            );
        }
        assert_eq!(checked(), vec![Provider::ZApi, Provider::Evolution]);
    }

    #[test]
    fn handles_belong_to_their_provider() {
        let h = media_handle(Provider::MetaCloud, "2129384756012345").unwrap();
        assert_eq!(h.provider(), Provider::MetaCloud);
        for p in Provider::EVERY {
            let Some(h) = media_handle(p, &uuid::Uuid::nil().to_string()) else {
                continue;
            };
            assert_eq!(h.provider(), p, "a handle is resolved by the provider that made it");
        }
        assert_eq!(media_handle(Provider::HttpSms, "x"), None);
        assert_eq!(media_handle(Provider::SmtpImap, "not-a-uuid"), None);
        assert_eq!(media_handle(Provider::TelegramBot, " "), None);
    }
}
