//! Secrets at rest and in memory.
//!
//! - [`MasterKey`] / [`KeyRing`]: the AES-256-GCM master keys. The first key of
//!   the ring seals; every key of the ring opens. Each key has a stable id derived
//!   from the key itself, stored beside every sealed value, so the ring can hold
//!   an old and a new key while `botgate keys rotate` re-encrypts.
//! - [`Sealed`]: the storage form of a secret (key id, nonce, ciphertext). It is
//!   produced only by [`KeyRing::seal`] and read only by [`KeyRing::open`], with an
//!   [`Aad`] naming the tenant, connection and field the value belongs to: a
//!   ciphertext copied to another row or field does not decrypt.
//! - [`hashing`]: hash-only secrets (API keys, the admin token, auth headers).
//! - [`mask`]: the masked form shown in API responses.
#![deny(clippy::indexing_slicing)]

pub mod hashing;
pub mod keyfile;
pub mod mask;
pub mod vault;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// `Debug` for a type that holds a secret: the struct's name and only the
/// fields named, then `..`. A field is shown by naming it, so a secret
/// added later stays out until someone decides otherwise.
///
/// ```ignore
/// debug_fields!(MasterKey { id });  // MasterKey { id: "k1", .. }
/// ```
macro_rules! debug_fields {
    ($type:ident { $($field:ident),+ }) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($field), &self.$field))+
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_fields;

/// Length of an AES-GCM nonce: 96 bits.
pub const NONCE_LEN: usize = 12;

/// One 256-bit master key. Its `Debug` shows only the key id.
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyParseError {
    #[error("the master key is not valid base64")]
    NotBase64,
    #[error("the master key must be 32 bytes (base64 of 32 random bytes), got {0} bytes")]
    WrongLength(usize),
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self::from_bytes(key)
    }

    /// Parses the base64 form (standard alphabet, padding optional).
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            B64.decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .map_err(|_| KeyParseError::NotBase64)?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyParseError::WrongLength(bytes.len()))?;
        Ok(Self::from_bytes(Zeroizing::new(array)))
    }

    fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        // The id is a short hash of the key: stable, needs no extra state, and
        // reveals nothing useful about the key.
        let mut hasher = Sha256::new();
        hasher.update(b"botgate key id v1\0");
        hasher.update(key.as_ref());
        let digest = hasher.finalize();
        let id = format!("k{}", hex(digest.get(..6).unwrap_or_default()));
        Self { id, key }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The base64 form, for writing a key file or printing once.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(B64.encode(self.key.as_ref()))
    }
}

debug_fields!(MasterKey { id });

fn mac_with(key: &MasterKey, purpose: &str, message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac as _};
    let derive = |k: &[u8], data: &[u8]| {
        let mut mac =
            <Hmac<Sha256> as hmac::Mac>::new_from_slice(k).expect("HMAC takes any key length");
        mac.update(data);
        let out: [u8; 32] = mac.finalize().into_bytes().into();
        Zeroizing::new(out)
    };
    let subkey = derive(
        key.key.as_ref(),
        format!("botgate mac key v1\0{purpose}").as_bytes(),
    );
    *derive(subkey.as_ref(), message)
}

/// What a sealed value belongs to; bound into the ciphertext as associated data.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    pub tenant: &'a str,
    /// `None` for tenant-level secrets (the engine's HMAC secret).
    pub connection: Option<&'a str>,
    pub field: &'a str,
}

impl Aad<'_> {
    fn to_bytes(self) -> Vec<u8> {
        // Length-prefixed parts, so that no two different triples encode alike.
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"botgate/v1");
        for part in [self.tenant, self.connection.unwrap_or(""), self.field] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// The storage form of a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the value was sealed with key {0}, which is not in the key ring")]
    UnknownKey(String),
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the value does not decrypt (wrong key, or it was moved to another row or field)")]
    Rejected,
}

/// The master keys in use: the first seals, all open.
pub struct KeyRing {
    current: MasterKey,
    older: Vec<MasterKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.key_ids()).finish()
    }
}

impl KeyRing {
    /// A ring whose first key is the current one. Duplicates are dropped.
    pub fn new(current: MasterKey, older: impl IntoIterator<Item = MasterKey>) -> Self {
        let mut ring = Self {
            current,
            older: Vec::new(),
        };
        for key in older {
            if ring.keys().all(|k| k.id != key.id) {
                ring.older.push(key);
            }
        }
        ring
    }

    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.current).chain(&self.older)
    }

    /// Every key, the current one first.
    pub fn all_keys(&self) -> impl Iterator<Item = &MasterKey> {
        self.keys()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys().map(MasterKey::id)
    }

    pub fn contains(&self, key_id: &str) -> bool {
        self.keys().any(|k| k.id == key_id)
    }

    /// An HMAC-SHA256 of `message` under a key derived from the current
    /// master key for `purpose` (e.g. signed file links): the master key
    /// itself is never a MAC key.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        mac_with(&self.current, purpose, message)
    }

    /// Whether `tag` is `message`'s MAC for `purpose` under any key of the
    /// ring (links made before a rotation keep working), in constant time.
    pub fn verify_mac(&self, purpose: &str, message: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        self.keys().any(|k| {
            let expected = mac_with(k, purpose, message);
            tag.len() == expected.len() && bool::from(expected.ct_eq(tag))
        })
    }

    pub fn seal(&self, plaintext: &[u8], aad: Aad<'_>) -> Sealed {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(key.key.as_ref().into());
        let aad = aad.to_bytes();
        // Encryption with a valid key and nonce length cannot fail.
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        Sealed {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn seal_str(&self, plaintext: &SecretString, aad: Aad<'_>) -> Sealed {
        self.seal(plaintext.expose_secret().as_bytes(), aad)
    }

    pub fn open(&self, sealed: &Sealed, aad: Aad<'_>) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let key = self
            .keys()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != NONCE_LEN || sealed.ciphertext.len() < 16 {
            return Err(OpenError::Malformed);
        }
        let cipher = Aes256Gcm::new(key.key.as_ref().into());
        let aad = aad.to_bytes();
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Rejected)
    }

    pub fn open_str(&self, sealed: &Sealed, aad: Aad<'_>) -> Result<SecretString, OpenError> {
        let bytes = self.open(sealed, aad)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| OpenError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    // Digit by digit, not `write!("{b:02x}")`: each callback hexes its body's hash
    // and its event id, and the formatter's machinery was ~6% of the HTTP
    // workers' time in B1 (`perf`, BENCHMARKS.md session 8).
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

/// `n` random bytes from the OS generator.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0x10, 0xab, 0xff]), "000f10abff");
    }

    fn aad<'a>(connection: &'a str, field: &'a str) -> Aad<'a> {
        Aad {
            tenant: "ten_1",
            connection: Some(connection),
            field,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let ring = KeyRing::new(MasterKey::generate(), []);
        let sealed = ring.seal(b"s3cret", aad("con_1", "bot_secret"));
        assert_ne!(sealed.ciphertext, b"s3cret");
        assert_eq!(
            ring.open(&sealed, aad("con_1", "bot_secret"))
                .unwrap()
                .as_slice(),
            b"s3cret"
        );
    }

    #[test]
    fn nonces_are_fresh() {
        let ring = KeyRing::new(MasterKey::generate(), []);
        let a = ring.seal(b"x", aad("con_1", "f"));
        let b = ring.seal(b"x", aad("con_1", "f"));
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn moved_ciphertext_fails() {
        let ring = KeyRing::new(MasterKey::generate(), []);
        let sealed = ring.seal(b"s3cret", aad("con_1", "bot_secret"));
        assert_eq!(
            ring.open(&sealed, aad("con_2", "bot_secret")),
            Err(OpenError::Rejected)
        );
        assert_eq!(
            ring.open(&sealed, aad("con_1", "client_secret")),
            Err(OpenError::Rejected)
        );
        let other_tenant = Aad {
            tenant: "ten_2",
            connection: Some("con_1"),
            field: "bot_secret",
        };
        assert_eq!(ring.open(&sealed, other_tenant), Err(OpenError::Rejected));
    }

    #[test]
    fn old_keys_open_new_key_seals() {
        let old = MasterKey::generate();
        let old_id = old.id().to_owned();
        let old_ring = KeyRing::new(
            MasterKey::parse(old.to_base64().expose_secret()).unwrap(),
            [],
        );
        let sealed = old_ring.seal(b"v", aad("c", "f"));
        let ring = KeyRing::new(MasterKey::generate(), [old]);
        assert_eq!(ring.open(&sealed, aad("c", "f")).unwrap().as_slice(), b"v");
        assert_ne!(ring.seal(b"v", aad("c", "f")).key_id, old_id);
        let unknown = KeyRing::new(MasterKey::generate(), []);
        assert!(matches!(
            unknown.open(&sealed, aad("c", "f")),
            Err(OpenError::UnknownKey(_))
        ));
    }

    #[test]
    fn malformed_values_do_not_panic() {
        let ring = KeyRing::new(MasterKey::generate(), []);
        let mut sealed = ring.seal(b"v", aad("c", "f"));
        sealed.nonce.truncate(3);
        assert_eq!(ring.open(&sealed, aad("c", "f")), Err(OpenError::Malformed));
        let mut sealed = ring.seal(b"v", aad("c", "f"));
        sealed.ciphertext.truncate(2);
        assert_eq!(ring.open(&sealed, aad("c", "f")), Err(OpenError::Malformed));
    }

    #[test]
    fn debug_fields_shows_only_the_named_fields() {
        struct Login {
            user: String,
            password: String,
        }
        debug_fields!(Login { user });
        let login = Login {
            user: "alice".into(),
            password: "hunter2".into(),
        };
        assert_eq!(format!("{login:?}"), r#"Login { user: "alice", .. }"#);
        assert_eq!(login.password.len(), 7);
    }

    #[test]
    fn key_parse_and_debug() {
        let key = MasterKey::generate();
        let b64 = key.to_base64();
        let parsed = MasterKey::parse(b64.expose_secret()).unwrap();
        assert_eq!(parsed.id(), key.id());
        let debug = format!("{key:?} {:?}", KeyRing::new(parsed, []));
        assert!(!debug.contains(b64.expose_secret()), "{debug}");
        assert!(debug.contains(key.id()));
        assert!(matches!(
            MasterKey::parse("not base64!"),
            Err(KeyParseError::NotBase64)
        ));
        assert!(matches!(
            MasterKey::parse("AAAA"),
            Err(KeyParseError::WrongLength(3))
        ));
    }
}
