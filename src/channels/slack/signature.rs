//! Slack's request signing (SLACK.md §1, [D]): `X-Slack-Signature: v0=<hex
//! HMAC-SHA256(signing secret, "v0:{timestamp}:{raw body}")>` with
//! `X-Slack-Request-Timestamp`, refused when more than five minutes from now
//! either way (a replay). The raw bytes are verified, never a re-encoding.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds.
pub const MAX_SKEW_SECONDS: i64 = 300;

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    Some(mac)
}

/// `v0=<hex>` for a body (the emulator signs with it).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    mac(secret, timestamp, body).map_or_else(String::new, |m| {
        format!("v0={}", crate::secrets::hex(&m.finalize().into_bytes()))
    })
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingTimestamp,
    BadTimestamp,
    Stale,
    MissingSignature,
    /// Not `v0=` followed by 64 hex digits.
    BadFormat,
    Mismatch,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingTimestamp => "the X-Slack-Request-Timestamp header is missing",
            Refusal::BadTimestamp => "X-Slack-Request-Timestamp is not a Unix time in seconds",
            Refusal::Stale => {
                "X-Slack-Request-Timestamp is more than five minutes from now (a replay?)"
            }
            Refusal::MissingSignature => "the X-Slack-Signature header is missing",
            Refusal::BadFormat => "X-Slack-Signature is not a v0= signature",
            Refusal::Mismatch => "X-Slack-Signature does not match the body and the signing secret",
        }
    }
}

/// Checks one request: the timestamp's age first (cheap), then the MAC in
/// constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_seconds: i64,
) -> Result<(), Refusal> {
    let timestamp = timestamp.ok_or(Refusal::MissingTimestamp)?;
    let seconds: i64 = timestamp
        .parse()
        .ok()
        .filter(|_| timestamp.len() <= 12 && timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(Refusal::BadTimestamp)?;
    if (now_seconds - seconds).abs() > MAX_SKEW_SECONDS {
        return Err(Refusal::Stale);
    }
    let signature = signature.ok_or(Refusal::MissingSignature)?;
    let hex = signature.strip_prefix("v0=").ok_or(Refusal::BadFormat)?;
    let presented = decode_hex(hex).ok_or(Refusal::BadFormat)?;
    let mac = mac(secret, timestamp, body).ok_or(Refusal::Mismatch)?;
    mac.verify_slice(&presented).map_err(|_| Refusal::Mismatch)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn slacks_documented_example_verifies() {
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(SECRET, "1531420618", BODY), expected);
        let now = 1_531_420_618;
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(expected), BODY, now),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(expected), BODY, now + 301),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(expected), BODY, now - 301),
            Err(Refusal::Stale),
            "a timestamp more than 300 s in the future"
        );
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(expected), BODY, now + 300),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(expected), b"other", now),
            Err(Refusal::Mismatch)
        );
        let v1 = expected.replace("v0=", "v1=");
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(&v1), BODY, now),
            Err(Refusal::BadFormat)
        );
    }
}
