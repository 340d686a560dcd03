//! Secrets at rest, API keys and pseudonymous AI user ids.
//!
//! * **Master key → encrypted columns.** Tenant secrets that Leadflow must be able to read
//!   back (webhook signing secrets, third-party credentials) are stored in PostgreSQL only
//!   as `MasterKey::encrypt` output: `0x01 | 12-byte random nonce | ChaCha20-Poly1305
//!   ciphertext+tag`. A database dump alone therefore reveals nothing; decrypting with the
//!   wrong `LEADFLOW_MASTER_KEY` or a corrupted value is an error, never a panic or garbage.
//!   The leading version byte lets the format change later without guessing.
//! * **API keys → SHA-256 digests.** Tenants authenticate with `lf_<64 hex>` keys; the
//!   database stores only `hash_api_key(key)` and every request looks the digest up.
//! * **Leads → opaque AI user ids.** `hash_lead_for_ai` gives the AI provider a stable
//!   per-lead identifier (the OpenAI `user` field, for abuse monitoring) without sending
//!   the tenant's own lead id or anything personal.
//!
//! Key material only lives inside [`secrecy::SecretBox`], which zeroizes on drop and
//! prints `[REDACTED]` in `Debug`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};
use sha2::{Digest, Sha256};

/// Version byte of the first ciphertext format (bound to nothing; only read, to rebind).
const FORMAT_V1: u8 = 0x01;
/// Version byte of the current format: bound to its [`Place`].
const FORMAT_V2: u8 = 0x02;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Prefix of every API key, so leaked keys are recognisable (and greppable by scanners).
pub const API_KEY_PREFIX: &str = "lf_";
/// Length of the AI user id in hex characters (128 bits).
const AI_USER_HEX_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "master key must be 64 hex characters or the base64 encoding of 32 bytes \
         (got {0} characters); generate one with `openssl rand -hex 32`"
    )]
    InvalidKeyEncoding(usize),
    #[error(
        "master key must be 64 hex characters or the base64 encoding of 32 bytes \
         (input decodes as base64 to {0} bytes)"
    )]
    InvalidKeyLength(usize),
    #[error("encrypted value is too short ({0} bytes) to be valid")]
    Truncated(usize),
    #[error("encrypted value has unknown format version {0:#04x}")]
    UnsupportedVersion(u8),
    #[error("decryption failed: wrong master key or corrupted data")]
    Decrypt,
    #[error("decrypted value is not valid UTF-8")]
    NotUtf8,
}

/// Where a ciphertext belongs: its table, column and owning row. It is authenticated
/// with the ciphertext (AEAD associated data), so a value copied into another row — one
/// tenant's encrypted key pasted into another's by someone with database access — fails
/// to decrypt instead of working there.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: uuid::Uuid,
}

impl Place<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = vec![FORMAT_V2];
        aad.extend_from_slice(format!("{}.{}:{}", self.table, self.column, self.row).as_bytes());
        aad
    }
}

/// The 256-bit key that encrypts secrets at rest (`LEADFLOW_MASTER_KEY`).
#[derive(Debug)]
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl Clone for MasterKey {
    // `[u8; 32]` is not a `CloneableSecret` in secrecy 0.10, so copy the bytes straight
    // into a new box instead of through a stack temporary.
    fn clone(&self) -> Self {
        Self(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            k.copy_from_slice(self.0.expose_secret())
        }))
    }
}

impl MasterKey {
    /// Parses 64 hex characters, or base64 (standard or URL-safe, padded or not) of
    /// exactly 32 bytes. Surrounding whitespace is ignored.
    pub fn from_encoded(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        if s.len() == 2 * KEY_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode_to_slice(s, key.expose_secret_mut()).map_err(|_| CryptoError::InvalidKeyEncoding(s.len()))?;
            return Ok(Self(key));
        }
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(s).ok())
            .map(Zeroizing::new)
            .ok_or(CryptoError::InvalidKeyEncoding(s.len()))?;
        if decoded.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength(decoded.len()));
        }
        key.expose_secret_mut().copy_from_slice(&decoded);
        Ok(Self(key))
    }

    /// A fresh random key from the OS RNG.
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| OsRng.fill_bytes(k)))
    }

    /// The key as 64 lowercase hex characters (what [`MasterKey::from_encoded`] reads).
    /// Handle the result as a secret.
    pub fn to_encoded(&self) -> String {
        hex::encode(self.0.expose_secret())
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        <ChaCha20Poly1305 as KeyInit>::new(Key::from_slice(self.0.expose_secret()))
    }

    /// Encrypts with a fresh random nonce: `0x01 | nonce (12) | ciphertext + tag (16)`.
    /// The version byte is also authenticated (as associated data).
    ///
    /// # Panics
    /// Only if `plaintext` is 256 GiB or larger (the ChaCha20 block-counter limit), which
    /// no secret or request body can reach.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        self.seal_as(FORMAT_V1, &[FORMAT_V1], plaintext)
    }

    /// `version | nonce | ciphertext + tag`, with `aad` authenticated alongside.
    fn seal_as(&self, version: u8, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            // ChaCha20-Poly1305 encryption only fails past 2^32 64-byte blocks (see above).
            .expect("plaintext below the ChaCha20-Poly1305 size limit");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(version);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Reverses [`MasterKey::seal_as`] for values of `version` only.
    fn open_as(&self, version: u8, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&found, rest) = data.split_first().ok_or(CryptoError::Truncated(0))?;
        if found != version {
            return Err(CryptoError::UnsupportedVersion(found));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Truncated(data.len()));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Reverses [`MasterKey::encrypt`]. A wrong key, a flipped bit or a truncated value
    /// all yield an error.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_as(FORMAT_V1, &[FORMAT_V1], data)
    }

    /// Encrypts `plaintext` for `place`: `0x02 | nonce (12) | ciphertext + tag (16)`, the
    /// version byte and the place authenticated as associated data.
    pub fn seal(&self, plaintext: &[u8], place: &Place<'_>) -> Vec<u8> {
        self.seal_as(FORMAT_V2, &place.aad(), plaintext)
    }

    /// Reverses [`MasterKey::seal`] for the same `place`; anything else (another place, a
    /// wrong key, an unbound v1 value) is an error.
    pub fn open(&self, data: &[u8], place: &Place<'_>) -> Result<Vec<u8>, CryptoError> {
        self.open_as(FORMAT_V2, &place.aad(), data)
    }

    /// Whether `data` is in the unbound v1 format (to be rebound at start).
    pub fn is_unbound(data: &[u8]) -> bool {
        data.first() == Some(&FORMAT_V1)
    }

    /// A v1 value rebound to `place` (the one-time migration at start).
    pub fn rebind(&self, data: &[u8], place: &Place<'_>) -> Result<Vec<u8>, CryptoError> {
        let plain = Zeroizing::new(self.decrypt(data)?);
        Ok(self.seal(&plain, place))
    }

    /// [`MasterKey::seal`] of a UTF-8 secret (e.g. a `whsec_...` string).
    pub fn seal_str(&self, plaintext: &str, place: &Place<'_>) -> Vec<u8> {
        self.seal(plaintext.as_bytes(), place)
    }

    /// [`MasterKey::open`] into a [`SecretString`], so callers keep holding it as a secret
    /// (redacted `Debug`, zeroized on drop).
    pub fn open_string(&self, data: &[u8], place: &Place<'_>) -> Result<SecretString, CryptoError> {
        let bytes = self.open(data, place)?;
        match String::from_utf8(bytes) {
            Ok(s) => Ok(SecretString::from(s)),
            Err(e) => {
                // Wipe the rejected plaintext before dropping it.
                drop(Zeroizing::new(e.into_bytes()));
                Err(CryptoError::NotUtf8)
            }
        }
    }
}

/// A new API key: `lf_` followed by 32 random bytes as lowercase hex (67 characters).
pub fn generate_api_key() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *bytes);
    format!("{API_KEY_PREFIX}{}", hex::encode(*bytes))
}

/// A random URL-safe token (128 bits), e.g. a channel's webhook secret.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The lookup digest stored for an API key: SHA-256 of the full key string.
///
/// Why a plain fast hash and not argon2/bcrypt: password hashes are slow on purpose
/// because passwords have little entropy and can be guessed. API keys carry 256 random
/// bits, so brute-forcing a leaked SHA-256 digest is infeasible however fast the hash is,
/// and no salt is needed because no two keys collide in practice. A fast, unsalted digest
/// also allows an indexed equality lookup on every request, which a per-row salted
/// slow hash would turn into a CPU-bound scan.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A stable, opaque id for a lead, for the AI provider's `user` field: the first 32 hex
/// characters (128 bits) of SHA-256 over `"{tenant_id}:{lead_id}"` (hyphenated UUID).
/// Including the tenant keeps equal lead ids of different tenants apart; hashing keeps
/// the tenant's own identifiers (often phone numbers or e-mails) away from the provider.
pub fn hash_lead_for_ai(tenant_id: &uuid::Uuid, lead_id: &str) -> String {
    let digest = <Sha256 as Digest>::new()
        .chain_update(tenant_id.to_string().as_bytes())
        .chain_update(b":")
        .chain_update(lead_id.as_bytes())
        .finalize();
    let mut id = hex::encode(digest);
    id.truncate(AI_USER_HEX_LEN);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key_bytes() -> Vec<u8> {
        (0u8..32).collect()
    }

    #[test]
    fn master_key_from_hex() {
        let key = MasterKey::from_encoded(HEX_KEY).unwrap();
        assert_eq!(key.to_encoded(), HEX_KEY);
        let upper = MasterKey::from_encoded(&format!("  {}\n", HEX_KEY.to_uppercase())).unwrap();
        assert_eq!(upper.to_encoded(), HEX_KEY);
    }

    #[test]
    fn master_key_from_base64_variants() {
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let encoded = engine.encode(key_bytes());
            assert_eq!(MasterKey::from_encoded(&encoded).unwrap().to_encoded(), HEX_KEY);
        }
    }

    #[test]
    fn master_key_bad_encodings_error() {
        assert!(matches!(
            MasterKey::from_encoded(""),
            Err(CryptoError::InvalidKeyLength(0))
        ));
        assert!(matches!(
            MasterKey::from_encoded("not a key!"),
            Err(CryptoError::InvalidKeyEncoding(10))
        ));
        // 63 hex chars is not hex of 32 bytes, and not base64 of 32 bytes either.
        let err = MasterKey::from_encoded(&HEX_KEY[..63]).unwrap_err().to_string();
        assert!(err.contains("64 hex characters"), "{err}");
        // Valid base64 of the wrong length.
        let short = STANDARD.encode([1u8; 16]);
        assert!(matches!(
            MasterKey::from_encoded(&short),
            Err(CryptoError::InvalidKeyLength(16))
        ));
        let err = MasterKey::from_encoded("nope!").unwrap_err().to_string();
        assert!(err.contains("64 hex characters"), "{err}");
    }

    #[test]
    fn master_key_generate_and_clone() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.to_encoded(), b.to_encoded());
        assert_eq!(a.to_encoded().len(), 64);
        let round = MasterKey::from_encoded(&a.to_encoded()).unwrap();
        assert_eq!(round.to_encoded(), a.to_encoded());
        assert_eq!(a.clone().to_encoded(), a.to_encoded());
        assert!(format!("{a:?}").contains("REDACTED"));
    }

    #[test]
    fn encrypt_decrypt_round_trip() {
        let key = MasterKey::generate();
        let big = [0u8; 1000];
        let cases: [&[u8]; 4] = [b"", b"x", b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &big];
        for plaintext in cases {
            let sealed = key.encrypt(plaintext);
            assert_eq!(sealed.len(), 1 + NONCE_LEN + plaintext.len() + TAG_LEN);
            assert_eq!(sealed[0], FORMAT_V1);
            assert_eq!(key.decrypt(&sealed).unwrap(), plaintext);
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let key = MasterKey::generate();
        assert_ne!(key.encrypt(b"same"), key.encrypt(b"same"));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = MasterKey::generate().encrypt(b"secret");
        assert!(matches!(
            MasterKey::generate().decrypt(&sealed),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn corruption_fails() {
        let key = MasterKey::generate();
        let sealed = key.encrypt(b"secret");
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(matches!(key.decrypt(&bad), Err(CryptoError::Decrypt)), "byte {i}");
        }
        let mut bad_version = sealed.clone();
        bad_version[0] = 0x02;
        assert!(matches!(
            key.decrypt(&bad_version),
            Err(CryptoError::UnsupportedVersion(2))
        ));
        assert!(matches!(key.decrypt(&[]), Err(CryptoError::Truncated(0))));
        assert!(matches!(key.decrypt(&sealed[..20]), Err(CryptoError::Truncated(20))));
        assert!(matches!(
            key.decrypt(&sealed[..sealed.len() - 1]),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn string_helpers() {
        let key = MasterKey::generate();
        let here = Place {
            table: "tenants",
            column: "postback_secret_enc",
            row: uuid::Uuid::new_v4(),
        };
        let sealed = key.seal_str("whsec_abc", &here);
        assert_eq!(key.open_string(&sealed, &here).unwrap().expose_secret(), "whsec_abc");
        let not_utf8 = key.seal(&[0xff, 0xfe], &here);
        assert!(matches!(key.open_string(&not_utf8, &here), Err(CryptoError::NotUtf8)));
    }

    #[test]
    fn a_ciphertext_opens_only_where_it_was_sealed() {
        let key = MasterKey::generate();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let place = |table, column, row| Place { table, column, row };
        let sealed = key.seal(b"sk-tenant-a", &place("tenants", "ai_api_key_enc", a));
        assert_eq!(
            key.open(&sealed, &place("tenants", "ai_api_key_enc", a)).unwrap(),
            b"sk-tenant-a"
        );
        for wrong in [
            place("tenants", "ai_api_key_enc", b),
            place("tenants", "postback_secret_enc", a),
            place("channels", "ai_api_key_enc", a),
        ] {
            assert!(
                matches!(key.open(&sealed, &wrong), Err(CryptoError::Decrypt)),
                "{wrong:?}"
            );
        }
        // An old unbound value is refused until it is rebound, then opens in its place only.
        let legacy = key.encrypt(b"sk-old");
        assert!(MasterKey::is_unbound(&legacy));
        assert!(matches!(
            key.open(&legacy, &place("tenants", "ai_api_key_enc", a)),
            Err(CryptoError::UnsupportedVersion(1))
        ));
        let rebound = key.rebind(&legacy, &place("tenants", "ai_api_key_enc", a)).unwrap();
        assert_eq!(
            key.open(&rebound, &place("tenants", "ai_api_key_enc", a)).unwrap(),
            b"sk-old"
        );
        assert!(key.open(&rebound, &place("tenants", "ai_api_key_enc", b)).is_err());
    }

    #[test]
    fn api_keys() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert!(a.starts_with("lf_"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn api_key_hash() {
        let h = hash_api_key("lf_test");
        assert_eq!(h.len(), 32);
        assert_eq!(
            hex::encode(&h),
            "33735eed2d4bb451b0b5da96fe786cdfbb80d4ab475fccd5bb2ff26bc2fd5317"
        );
        assert_eq!(hash_api_key("lf_test"), h);
        assert_ne!(hash_api_key("lf_tesu"), h);
    }

    #[test]
    fn lead_hash_for_ai() {
        let tenant = uuid::Uuid::from_u128(1);
        let id = hash_lead_for_ai(&tenant, "lead-42");
        assert_eq!(id, "370495ba8c7a80d234c81eb51b4db8d9");
        assert_eq!(hash_lead_for_ai(&tenant, "lead-42"), id);
        assert_ne!(hash_lead_for_ai(&uuid::Uuid::from_u128(2), "lead-42"), id);
        assert_ne!(hash_lead_for_ai(&tenant, "lead-43"), id);
        assert!(!id.contains("lead"));
    }
}
