//! Callback signatures (NAVERWORKS.md §3.1): `X-WORKS-Signature` is
//! base64(HMAC-SHA256(key = Bot Secret, message = the raw request body)).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signature NAVER WORKS sends for `body`.
pub fn sign(bot_secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never takes the else branch.
    let Ok(mut mac) = HmacSha256::new_from_slice(bot_secret) else {
        return String::new();
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Constant-time check of a presented signature over the raw body.
pub fn verify(bot_secret: &[u8], body: &[u8], presented: &str) -> bool {
    let Ok(presented) = STANDARD.decode(presented.trim()) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(bot_secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two vectors in shared/fixtures/naverworks/SOURCES.md.
    #[test]
    fn documented_vectors() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/naverworks/"
        );
        for (file, expected) in [
            (
                "callback_message_text.json",
                "/LIIL+R164z2zjSw8i/JI57QGFKnTufxY6p83aToENU=",
            ),
            (
                "callback_postback.json",
                "3YCD5Er4w8dkrouNDuiAtLklYIw0ePH6IRWRw6qKP1o=",
            ),
        ] {
            let body = std::fs::read(format!("{dir}{file}")).expect(file);
            assert_eq!(sign(b"test-bot-secret", &body), expected, "{file}");
            assert!(verify(b"test-bot-secret", &body, expected));
            assert!(!verify(b"other-secret", &body, expected));
            assert!(!verify(b"test-bot-secret", &body[1..], expected));
            assert!(!verify(b"test-bot-secret", &body, "not base64!"));
        }
    }
}
