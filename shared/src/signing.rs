//! Standard Webhooks signing (<https://www.standardwebhooks.com/>) for outbound postbacks.
//!
//! Every delivery Leadflow POSTs to a tenant's endpoint carries three headers:
//! `webhook-id` (the delivery's stable id, identical across retries so the receiver can
//! deduplicate), `webhook-timestamp` (Unix seconds of this attempt, so the receiver can
//! reject replays) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`). Using the published scheme instead of a
//! home-grown one means receivers can verify with any off-the-shelf Standard Webhooks or
//! Svix library.
//!
//! The per-tenant secret is shown to the tenant once as `whsec_<base64>`; at rest it is
//! encrypted with the master key (see [`crate::crypto`]) and in memory it only lives
//! inside a [`secrecy::SecretBox`], which zeroizes on drop and redacts itself in `Debug`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// Prefix of an encoded secret, as used by Standard Webhooks and Svix.
pub const SECRET_PREFIX: &str = "whsec_";
/// Size of freshly generated secrets: 24 bytes (192 bits), like Svix.
pub const GENERATED_SECRET_BYTES: usize = 24;
/// The spec recommends secrets of 24 to 64 bytes; anything outside is rejected.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("webhook secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("webhook secret is not valid base64 after \"whsec_\"")]
    InvalidBase64,
    #[error("webhook secret must decode to 24..=64 bytes, got {0}")]
    InvalidLength(usize),
}

/// The raw HMAC key bytes of a tenant's webhook secret. `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct WebhookSecret(SecretBox<[u8]>);

impl WebhookSecret {
    /// A fresh random secret of [`GENERATED_SECRET_BYTES`] bytes from the OS RNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(SecretBox::from(bytes))
    }

    /// Parses `whsec_<base64>` (standard alphabet, padded or not).
    pub fn parse(s: &str) -> Result<Self, SigningError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).ok_or(SigningError::MissingPrefix)?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
                .map_err(|_| SigningError::InvalidBase64)?,
        );
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SigningError::InvalidLength(bytes.len()));
        }
        Ok(Self(SecretBox::from(bytes.to_vec())))
    }

    /// The secret in its shareable form, `whsec_<base64>`. Handle the result as a secret.
    pub fn expose_encoded(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(self.0.expose_secret()))
    }

    fn key(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// The `webhook-signature` header value, `v1,<base64 HMAC-SHA256>` over
/// `{msg_id}.{timestamp}.{body}`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length (long keys are hashed, short ones padded), so
    // `new_from_slice` cannot fail for `Hmac<Sha256>`.
    let mut mac = HmacSha256::new_from_slice(secret.key()).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let signature = mac.finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(signature))
}

/// The three Standard Webhooks headers for one delivery attempt, in the order
/// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
pub fn headers(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        (HEADER_ID, msg_id.to_string()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, sign(secret, msg_id, timestamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn spec_test_vector() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(&secret, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD), SPEC_SIGNATURE);
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let h = headers(&secret, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD);
        assert_eq!(h[0], ("webhook-id", SPEC_MSG_ID.to_string()));
        assert_eq!(h[1], ("webhook-timestamp", "1614265330".to_string()));
        assert_eq!(h[2], ("webhook-signature", SPEC_SIGNATURE.to_string()));
    }

    #[test]
    fn signature_depends_on_every_part() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let base = sign(&secret, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD);
        assert_ne!(sign(&secret, "msg_other", SPEC_TIMESTAMP, SPEC_PAYLOAD), base);
        assert_ne!(sign(&secret, SPEC_MSG_ID, SPEC_TIMESTAMP + 1, SPEC_PAYLOAD), base);
        assert_ne!(sign(&secret, SPEC_MSG_ID, SPEC_TIMESTAMP, b"{}"), base);
        let other = WebhookSecret::generate();
        assert_ne!(sign(&other, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD), base);
    }

    #[test]
    fn generate_parse_round_trip() {
        let secret = WebhookSecret::generate();
        let encoded = secret.expose_encoded();
        assert!(encoded.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&encoded[6..]).unwrap().len(), GENERATED_SECRET_BYTES);
        let parsed = WebhookSecret::parse(&encoded).unwrap();
        assert_eq!(parsed.expose_encoded(), encoded);
        assert_eq!(sign(&parsed, "m", 1, b"x"), sign(&secret, "m", 1, b"x"));
        assert_ne!(WebhookSecret::generate().expose_encoded(), encoded);
    }

    #[test]
    fn spec_secret_round_trips() {
        assert_eq!(WebhookSecret::parse(SPEC_SECRET).unwrap().expose_encoded(), SPEC_SECRET);
    }

    #[test]
    fn bad_secrets_are_rejected() {
        assert!(matches!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SigningError::MissingPrefix)
        ));
        assert!(matches!(
            WebhookSecret::parse("whsec_not base64!!"),
            Err(SigningError::InvalidBase64)
        ));
        assert!(matches!(
            WebhookSecret::parse("whsec_"),
            Err(SigningError::InvalidLength(0))
        ));
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        assert!(matches!(
            WebhookSecret::parse(&short),
            Err(SigningError::InvalidLength(16))
        ));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert!(matches!(
            WebhookSecret::parse(&long),
            Err(SigningError::InvalidLength(65))
        ));
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let debug = format!("{secret:?}");
        assert!(debug.contains("REDACTED"));
        assert!(!debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    }
}
