//! Hash-only secrets: tenant API keys, the admin token and connection auth
//! headers are never stored in plaintext, and are compared in constant time.
//!
//! API keys and generated admin tokens carry 256 random bits, so a plain
//! SHA-256 is a safe lookup key for them. Auth headers are chosen by people;
//! they get a per-value random salt and a minimum length (see
//! `domain::naverworks::AuthHeader`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{hex, random_bytes};

/// Prefix of tenant API keys, so that a leaked key is recognisable.
pub const API_KEY_PREFIX: &str = "bgk_";
/// Prefix of generated admin tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "bga_";

/// A new random token with the given prefix (256 bits, URL-safe).
pub fn generate_token(prefix: &str) -> SecretString {
    SecretString::from(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes(32))
    ))
}

/// The stored form of a high-entropy token: `sha256:<hex>`.
pub fn hash_token(token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"botgate token v1\0");
    hasher.update(token.as_bytes());
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// Constant-time check of a presented token against a stored `hash_token`.
pub fn verify_token(presented: &str, stored_hash: &str) -> bool {
    hash_token(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// The stored form of a person-chosen secret: `s256$<salt hex>$<hash hex>`.
pub fn hash_salted(secret: &SecretString) -> String {
    let salt = random_bytes(16);
    format!(
        "s256${}${}",
        hex(&salt),
        hex(&salted_digest(&salt, secret.expose_secret()))
    )
}

/// Constant-time check of a presented secret against a stored `hash_salted`.
/// A malformed stored value never verifies.
pub fn verify_salted(presented: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("s256"), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(salt) = unhex(salt) else {
        return false;
    };
    let computed = hex(&salted_digest(&salt, presented));
    computed.as_bytes().ct_eq(hash.as_bytes()).into()
}

fn salted_digest(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"botgate salted v1\0");
    hasher.update(salt);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_verifies_only_the_token() {
        let token = generate_token(API_KEY_PREFIX);
        assert!(token.expose_secret().starts_with("bgk_"));
        let stored = hash_token(token.expose_secret());
        assert!(!stored.contains(token.expose_secret()));
        assert!(verify_token(token.expose_secret(), &stored));
        assert!(!verify_token("bgk_other", &stored));
        assert!(!verify_token(token.expose_secret(), "sha256:00"));
    }

    #[test]
    fn salted_hash_verifies_and_differs_per_value() {
        let secret = SecretString::from("correct horse battery staple");
        let a = hash_salted(&secret);
        let b = hash_salted(&secret);
        assert_ne!(a, b, "salts must differ");
        assert!(verify_salted("correct horse battery staple", &a));
        assert!(verify_salted("correct horse battery staple", &b));
        assert!(!verify_salted("correct horse battery stapl", &a));
        for broken in ["", "s256$", "s256$zz$00", "md5$00$00", "s256$00$00$00"] {
            assert!(!verify_salted("x", broken), "{broken}");
        }
    }
}
