//! NAVER WORKS credentials, parsed at connect time so that a mangled key or a
//! mistyped id is reported to the builder now, not at the first token request.
//!
//! Formats follow `shared/NAVERWORKS.md`: ids travel as strings (a JSON integer
//! is accepted and normalised, never as floating point), the private key is the
//! PKCS#8 PEM the Developer Console issues (PKCS#1 accepted too).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::FieldError;
use crate::secrets::{debug_fields, hex};

/// Outbound pacing when a connection does not say: the paid plans' limit.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 240;
/// Scope requested when a connection does not say.
pub const DEFAULT_SCOPE: &str = "bot";

/// How a NAVER WORKS connection gets its tokens (DESIGN.md "NAVER WORKS
/// user-account connections"): a service account's JWT (the default), or a
/// person's consent through the OAuth authorization-code flow
/// (NAVERWORKS.md §2), refreshed with its refresh token. Kept in the
/// connection's `details` JSON as `auth_mode`; a connection without one is a
/// service account's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    #[default]
    ServiceAccount,
    User,
}

impl AuthMode {
    pub fn parse(value: &Value) -> Result<Self, FieldError> {
        match value.as_str() {
            Some("service_account") => Ok(Self::ServiceAccount),
            Some("user") => Ok(Self::User),
            _ => Err(FieldError::new(
                "auth_mode",
                "must be \"service_account\" (JWT, the default) or \"user\" (a person signs in)",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ServiceAccount => "service_account",
            Self::User => "user",
        }
    }

    /// The mode a connection's `details` JSON names (a service account's
    /// when it names none or does not parse).
    pub fn of_details(details: &str) -> Self {
        if !details.contains("auth_mode") {
            return Self::ServiceAccount; // '{}': every service-account connection
        }
        serde_json::from_str::<Value>(details)
            .ok()
            .and_then(|v| v.get("auth_mode").map(Self::parse))
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    /// The `details` JSON of a new connection of this mode.
    pub fn details(self) -> String {
        match self {
            Self::ServiceAccount => "{}".to_owned(),
            Self::User => "{\"auth_mode\":\"user\"}".to_owned(),
        }
    }
}

/// A numeric NAVER WORKS id (bot id), kept as text: it can exceed 2^53.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotId(String);

impl BotId {
    pub fn parse(field: &str, value: &Value) -> Result<Self, FieldError> {
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) if n.is_u64() => n.to_string(),
            Value::Number(_) => {
                return Err(FieldError::new(
                    field,
                    "must be a whole number; send large ids as strings, e.g. \"2000001\"",
                ))
            }
            _ => {
                return Err(FieldError::new(
                    field,
                    "must be a string of digits, e.g. \"2000001\"",
                ))
            }
        };
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new(
                field,
                "must be 1 to 20 digits, e.g. \"2000001\"",
            ));
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of characters a text credential may hold.
#[derive(Clone, Copy)]
pub enum Charset {
    /// Letters, digits, `.`, `_`, `-` (client ids).
    Id,
    /// Any visible ASCII, no spaces (secrets, tokens, header values).
    Visible,
}

/// A required text field within a length range and charset. The message never
/// echoes the value, since many of these are secrets.
pub fn parse_text(
    field: &str,
    value: &Value,
    min: usize,
    max: usize,
    charset: Charset,
) -> Result<String, FieldError> {
    let Value::String(text) = value else {
        return Err(FieldError::new(field, "must be a string"));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    let len = text.chars().count();
    if len < min || len > max {
        return Err(FieldError::new(
            field,
            format!("must be {min} to {max} characters long (got {len})"),
        ));
    }
    let ok = match charset {
        Charset::Id => text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        Charset::Visible => text.bytes().all(|b| b.is_ascii_graphic()),
    };
    if !ok {
        let allowed = match charset {
            Charset::Id => "letters, digits, '.', '_' and '-'",
            Charset::Visible => "visible ASCII characters without spaces",
        };
        return Err(FieldError::new(
            field,
            format!("may contain only {allowed}"),
        ));
    }
    Ok(text.to_owned())
}

/// A secret text field, wrapped at once.
pub fn parse_secret(
    field: &str,
    value: &Value,
    min: usize,
    max: usize,
) -> Result<SecretString, FieldError> {
    parse_text(field, value, min, max, Charset::Visible).map(SecretString::from)
}

/// The app's service account, `{id}@{domain}` as the Developer Console shows it.
pub fn parse_service_account(value: &Value) -> Result<String, FieldError> {
    let text = parse_text("service_account", value, 3, 256, Charset::Visible)?;
    match text.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
            Ok(text)
        }
        _ => Err(FieldError::new(
            "service_account",
            "must look like 1wagx.serviceaccount@example.com (the Service Account shown in the Developer Console)",
        )),
    }
}

/// The requested OAuth scopes, space- or comma-separated; normalised to a
/// space-separated, de-duplicated list. botgate sends messages, so `bot` or
/// `bot.message` must be among them.
pub fn parse_scope(value: &Value) -> Result<String, FieldError> {
    let Value::String(text) = value else {
        return Err(FieldError::new(
            "scope",
            "must be a string such as \"bot bot.read\"",
        ));
    };
    let scopes = super::scope_names(text, b"._").map_err(|scope| {
        FieldError::new(
            "scope",
            format!("`{scope}` is not a NAVER WORKS scope name"),
        )
    })?;
    if scopes.len() > 32 {
        return Err(FieldError::new(
            "scope",
            "lists too many scopes (at most 32)",
        ));
    }
    if !scopes.iter().any(|s| matches!(*s, "bot" | "bot.message")) {
        return Err(FieldError::new(
            "scope",
            "must include `bot` or `bot.message`: botgate sends messages as the bot",
        ));
    }
    Ok(scopes.join(" "))
}

pub fn parse_rate_limit(value: &Value) -> Result<u32, FieldError> {
    value
        .as_u64()
        .filter(|n| (1..=6000).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            FieldError::new(
                "rate_limit_per_minute",
                "must be a whole number from 1 to 6000 (60 on the free plan, 240 on paid plans)",
            )
        })
}

/// An RSA private key, checked at connect time and kept as canonical PKCS#8 PEM.
pub struct PrivateKeyPem {
    pem: SecretString,
    bits: usize,
    fingerprint: String,
}

debug_fields!(PrivateKeyPem { bits, fingerprint });

const RSA_OID: &str = "1.2.840.113549.1.1.1";

impl PrivateKeyPem {
    /// Accepts the key as pasted: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`), with real or literal `\n` line breaks, Windows
    /// line ends, or line breaks collapsed into spaces by a web form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text
            .replace("\\r\\n", "\n")
            .replace("\\n", "\n")
            .replace('\r', "");
        let text = text.trim().trim_matches('"').trim();
        let (label, body) = split_pem(text)?;
        let der = zeroize::Zeroizing::new(B64.decode(body.as_bytes()).map_err(|_| {
            "the key's base64 body is damaged (was it cut short or edited?)".to_owned()
        })?);
        let key = match label {
            "PRIVATE KEY" => {
                let info = rsa::pkcs8::PrivateKeyInfo::try_from(der.as_slice())
                    .map_err(|_| "the PKCS#8 key structure is damaged (was it cut short?)".to_owned())?;
                if info.algorithm.oid.to_string() != RSA_OID {
                    return Err("is not an RSA key; NAVER WORKS issues RSA private keys (RS256)".to_owned());
                }
                RsaPrivateKey::from_pkcs8_der(&der).map_err(|_| "the RSA key inside the PKCS#8 wrapper is damaged".to_owned())?
            }
            "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|_| "the PKCS#1 RSA key structure is damaged (was it cut short?)".to_owned())?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err("is encrypted with a passphrase; paste the unencrypted key file the Developer Console issued (BEGIN PRIVATE KEY)".to_owned())
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                return Err("is a public key; paste the private key file (BEGIN PRIVATE KEY)".to_owned())
            }
            "EC PRIVATE KEY" | "OPENSSH PRIVATE KEY" | "DSA PRIVATE KEY" => {
                return Err("is not an RSA key; NAVER WORKS issues RSA private keys (RS256)".to_owned())
            }
            other => return Err(format!("is a PEM \"{other}\", not a private key (expected BEGIN PRIVATE KEY)")),
        };
        let bits = key.size() * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(format!(
                "is a {bits}-bit RSA key; keys of 2048 to 8192 bits are accepted"
            ));
        }
        key.validate()
            .map_err(|_| "is not a consistent RSA key (its numbers do not match)".to_owned())?;
        let public = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| "could not derive the public key".to_owned())?;
        let fingerprint = hex(Sha256::digest(public.as_bytes())
            .get(..8)
            .unwrap_or_default());
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| "could not re-encode the key".to_owned())?;
        Ok(Self {
            pem: SecretString::from(pem.as_str().to_owned()),
            bits,
            fingerprint,
        })
    }

    /// Canonical PKCS#8 PEM.
    pub fn pem(&self) -> &SecretString {
        &self.pem
    }

    /// The key itself, for signing.
    pub fn rsa_key(&self) -> Result<RsaPrivateKey, String> {
        use secrecy::ExposeSecret as _;
        RsaPrivateKey::from_pkcs8_pem(self.pem.expose_secret())
            .map_err(|_| "the stored key does not parse".to_owned())
    }

    /// How the key is shown in API responses: size and public-key fingerprint.
    pub fn description(&self) -> String {
        describe_key(self.bits, &self.fingerprint)
    }
}

pub fn describe_key(bits: usize, fingerprint: &str) -> String {
    format!("RSA-{bits} SHA256:{fingerprint}")
}

/// The label and whitespace-free base64 body of one PEM block. Without armour,
/// a bare base64 body is taken as PKCS#8.
fn split_pem(text: &str) -> Result<(&str, String), String> {
    let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let Some(begin) = text.find("-----BEGIN ") else {
        let body = strip(text);
        // A bare body long enough to be a key (a 2048-bit key is ~1,600 chars).
        if body.len() >= 256
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Ok(("PRIVATE KEY", body));
        }
        return Err(
            "is not a PEM private key: expected the file starting with -----BEGIN PRIVATE KEY-----"
                .to_owned(),
        );
    };
    let after = text.get(begin + 11..).unwrap_or_default();
    let Some(label_end) = after.find("-----") else {
        return Err("has a damaged -----BEGIN line".to_owned());
    };
    let label = after.get(..label_end).unwrap_or_default();
    let rest = after.get(label_end + 5..).unwrap_or_default();
    let end_marker = format!("-----END {label}-----");
    let Some(end) = rest.find(&end_marker) else {
        return Err(format!(
            "is missing its -----END {label}----- line (was it cut short?)"
        ));
    };
    Ok((label, strip(rest.get(..end).unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PKCS8: &str = include_str!("../../tests/fixtures/keys/app1_pkcs8.pem");
    const PKCS1: &str = include_str!("../../tests/fixtures/keys/app1_pkcs1.pem");

    #[test]
    fn private_key_forms_accepted_and_equal() {
        let a = PrivateKeyPem::parse(PKCS8).unwrap();
        let b = PrivateKeyPem::parse(PKCS1).unwrap();
        let c = PrivateKeyPem::parse(&PKCS8.replace('\n', "\\n")).unwrap();
        let d = PrivateKeyPem::parse(&PKCS8.replace('\n', "\r\n")).unwrap();
        let e = PrivateKeyPem::parse(&PKCS8.replace('\n', " ")).unwrap();
        for k in [&b, &c, &d, &e] {
            assert_eq!(k.description(), a.description());
        }
        assert!(a.description().starts_with("RSA-2048 SHA256:"));
        assert!(!format!("{a:?}").contains("MII"));
    }

    #[test]
    fn private_key_rejections_say_why() {
        let cases = [
            ("", "not a PEM"),
            ("hello world", "not a PEM"),
            (
                include_str!("../../tests/fixtures/keys/app1_public.pem"),
                "public key",
            ),
            (
                include_str!("../../tests/fixtures/keys/app1_encrypted.pem"),
                "passphrase",
            ),
            (
                include_str!("../../tests/fixtures/keys/ec_pkcs8.pem"),
                "not an RSA key",
            ),
            (
                include_str!("../../tests/fixtures/keys/weak1024_pkcs8.pem"),
                "1024-bit",
            ),
            (&PKCS8[..PKCS8.len() - 30], "missing its -----END"),
            (&PKCS8.replacen("MII", "MIJ", 1), "damaged"),
        ];
        for (input, expected) in cases {
            let err = PrivateKeyPem::parse(input).err().unwrap_or_default();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn ids_and_text_fields() {
        assert_eq!(
            BotId::parse("bot_id", &json!("2000001")).unwrap().as_str(),
            "2000001"
        );
        assert_eq!(
            BotId::parse("bot_id", &json!(2000001)).unwrap().as_str(),
            "2000001"
        );
        assert_eq!(
            BotId::parse("bot_id", &json!("4020000001470191001"))
                .unwrap()
                .as_str(),
            "4020000001470191001"
        );
        for bad in [
            json!("12a"),
            json!(""),
            json!(1.5),
            json!(-3),
            json!(null),
            json!("1".repeat(21)),
        ] {
            assert!(BotId::parse("bot_id", &bad).is_err(), "{bad}");
        }
        assert!(parse_text(
            "client_id",
            &json!("ZbsOq6zjt0IhtZZnrc"),
            1,
            128,
            Charset::Id
        )
        .is_ok());
        assert!(parse_text("client_id", &json!("a b"), 1, 128, Charset::Id).is_err());
        let err = parse_secret("client_secret", &json!("secret value!"), 1, 256)
            .err()
            .unwrap();
        assert!(!err.message.contains("secret value"));
        assert!(parse_service_account(&json!("1wagx.serviceaccount@example.com")).is_ok());
        assert!(parse_service_account(&json!("nobody")).is_err());
        assert_eq!(
            parse_scope(&json!("bot,bot.read bot")).unwrap(),
            "bot bot.read"
        );
        assert!(parse_scope(&json!("user.read")).is_err());
        assert!(parse_scope(&json!("bot DROP")).is_err());
        assert_eq!(parse_rate_limit(&json!(60)).unwrap(), 60);
        assert!(parse_rate_limit(&json!(0)).is_err());
        assert!(parse_rate_limit(&json!("60")).is_err());
    }
}
