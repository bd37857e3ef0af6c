//! Tenants and their dialogue-engine settings.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::FieldError;

/// A tenant's display name: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = text.trim();
        let len = text.chars().count();
        if len == 0 {
            return Err(FieldError::new("name", "must not be empty"));
        }
        if len > 100 {
            return Err(FieldError::new("name", "must be at most 100 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a tenant's dialogue engine is: http or https, with a host, and no
/// credentials in the URL (they would be stored unencrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineUrl(Url);

impl EngineUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > 2048 {
            return Err("must be at most 2048 characters".to_owned());
        }
        let url = Url::parse(text.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http:// or https:// URL".to_owned());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "must not contain a user name or password; use `secret` for the HMAC key"
                    .to_owned(),
            );
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Which dialogue engine answers a tenant's users.
pub enum EngineConfig {
    /// The built-in echo engine, the default.
    Echo,
    /// botgate's signed JSON protocol (DESIGN.md).
    Http {
        url: EngineUrl,
        secret: SecretString,
    },
    /// Rasa's REST channel.
    Rasa { url: EngineUrl },
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Echo => f.write_str("Echo"),
            Self::Http { url, .. } => f
                .debug_struct("Http")
                .field("url", &url.as_str())
                .finish_non_exhaustive(),
            Self::Rasa { url } => f.debug_struct("Rasa").field("url", &url.as_str()).finish(),
        }
    }
}

impl EngineConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Http { .. } => "http",
            Self::Rasa { .. } => "rasa",
        }
    }

    pub fn url(&self) -> Option<&EngineUrl> {
        match self {
            Self::Echo => None,
            Self::Http { url, .. } | Self::Rasa { url } => Some(url),
        }
    }

    /// Parses `{"kind":"echo"}`, `{"kind":"http","url","secret"}` or
    /// `{"kind":"rasa","url"}`, reporting every problem at once.
    pub fn parse(
        kind: Option<&Value>,
        url: Option<&Value>,
        secret: Option<&Value>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let kind = match kind {
            Some(Value::String(k)) if matches!(k.as_str(), "echo" | "http" | "rasa") => k.as_str(),
            Some(_) => {
                return Err(vec![FieldError::new(
                    "kind",
                    "must be \"echo\", \"http\" or \"rasa\"",
                )])
            }
            None => return Err(vec![FieldError::new("kind", "is required")]),
        };
        let parsed_url = match (kind, url) {
            ("echo", Some(_)) => {
                errors.push(FieldError::new("url", "is not used by the echo engine"));
                None
            }
            ("echo", None) => None,
            (_, None) => {
                errors.push(FieldError::new("url", "is required"));
                None
            }
            (_, Some(Value::String(u))) => EngineUrl::parse(u)
                .map_err(|m| errors.push(FieldError::new("url", m)))
                .ok(),
            (_, Some(_)) => {
                errors.push(FieldError::new("url", "must be a string"));
                None
            }
        };
        let parsed_secret = match (kind, secret) {
            ("http", None) => {
                errors.push(FieldError::new(
                    "secret",
                    "is required: botgate signs engine requests with it",
                ));
                None
            }
            ("http", Some(value)) => signing_secret(value).map_err(|e| errors.push(e)).ok(),
            (_, Some(_)) => {
                errors.push(FieldError::new(
                    "secret",
                    format!("is not used by the {kind} engine"),
                ));
                None
            }
            (_, None) => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(match (kind, parsed_url, parsed_secret) {
            ("http", Some(url), Some(secret)) => Self::Http { url, secret },
            ("rasa", Some(url), _) => Self::Rasa { url },
            _ => Self::Echo,
        })
    }

    /// The secret to seal, if this engine has one.
    pub fn secret(&self) -> Option<&SecretString> {
        match self {
            Self::Http { secret, .. } => Some(secret),
            _ => None,
        }
    }

    pub fn secret_len(&self) -> usize {
        self.secret().map_or(0, |s| s.expose_secret().len())
    }
}

/// An HMAC key botgate signs its requests with (an engine's, a status
/// hook's): 16 to 512 characters.
fn signing_secret(value: &Value) -> Result<SecretString, FieldError> {
    match value {
        Value::String(s) if (16..=512).contains(&s.chars().count()) => {
            Ok(SecretString::from(s.clone()))
        }
        Value::String(_) => Err(FieldError::new("secret", "must be 16 to 512 characters")),
        _ => Err(FieldError::new("secret", "must be a string")),
    }
}

/// A tenant's status hook: where the final status of each of its messages
/// is posted, signed with `secret` as engine requests are.
pub struct StatusHook {
    pub url: EngineUrl,
    pub secret: SecretString,
}

impl std::fmt::Debug for StatusHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHook")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl StatusHook {
    /// Parses `{"url", "secret"}`, both required, reporting every problem
    /// at once.
    pub fn parse(url: Option<&Value>, secret: Option<&Value>) -> Result<Self, Vec<FieldError>> {
        let url = match url {
            None | Some(Value::Null) => Err(FieldError::new("url", "is required")),
            Some(Value::String(text)) => {
                EngineUrl::parse(text).map_err(|m| FieldError::new("url", m))
            }
            Some(_) => Err(FieldError::new("url", "must be a string")),
        };
        let secret = match secret {
            None | Some(Value::Null) => Err(FieldError::new(
                "secret",
                "is required: botgate signs each post with it",
            )),
            Some(value) => signing_secret(value),
        };
        match (url, secret) {
            (Ok(url), Ok(secret)) => Ok(Self { url, secret }),
            (url, secret) => Err([url.err(), secret.err()].into_iter().flatten().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_parse_cases() {
        let s = |v: &str| json!(v);
        assert!(matches!(
            EngineConfig::parse(Some(&s("echo")), None, None),
            Ok(EngineConfig::Echo)
        ));
        let http = EngineConfig::parse(
            Some(&s("http")),
            Some(&s("https://engine.example/hook")),
            Some(&s("0123456789abcdef")),
        )
        .unwrap();
        assert_eq!(http.kind(), "http");
        assert!(!format!("{http:?}").contains("0123456789abcdef"));
        let errs = EngineConfig::parse(Some(&s("http")), Some(&s("ftp://x")), None)
            .err()
            .unwrap();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(EngineConfig::parse(Some(&s("rasa")), Some(&s("http://u:p@x")), None).is_err());
        assert!(EngineConfig::parse(Some(&s("smtp")), None, None).is_err());
        assert!(EngineConfig::parse(None, None, None).is_err());
    }

    #[test]
    fn tenant_names() {
        assert_eq!(
            TenantName::parse("  Acme bot ").unwrap().as_str(),
            "Acme bot"
        );
        assert!(TenantName::parse("").is_err());
        assert!(TenantName::parse(&"x".repeat(101)).is_err());
        assert!(TenantName::parse("a\u{0}b").is_err());
    }
}
