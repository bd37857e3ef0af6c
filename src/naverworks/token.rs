//! The token endpoint client (NAVERWORKS.md §1): the JWT-bearer grant and the
//! refresh_token grant, with properly URL-encoded forms (tokens hold `+`, `/`
//! and `=`), `expires_in` as string or number, and failures classified.
//!
//! The real token endpoint's error bodies are undocumented (§1.6; one observed
//! body: `{"returnCode":"99","returnMessage":"UnexpectedError"}`). botgate
//! treats any non-200 as a failure, logs the raw body, and classifies it by
//! keywords ([I]): this matches the emulator's messages and is the best guess
//! for the real service.

use std::time::Duration;

use rsa::RsaPrivateKey;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::jwt::{sign_assertion, MAX_LIFETIME_SECS};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What botgate needs to mint or refresh a token for one connection.
/// Never printed.
pub struct Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
    /// A service-account connection's; `None` for a user-account one, whose
    /// tokens come from a person's consent (§2) and are only refreshed.
    pub service_account: Option<ServiceAccount>,
    pub scope: String,
}

/// The app's service account and the private key its JWTs are signed with.
pub struct ServiceAccount {
    pub id: String,
    pub private_key: RsaPrivateKey,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field(
                "service_account",
                &self.service_account.as_ref().map(|sa| &sa.id),
            )
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A token as NAVER WORKS issued it.
pub struct IssuedToken {
    pub access_token: SecretString,
    /// Absent on a refresh without rotation (§1.4).
    pub refresh_token: Option<SecretString>,
    pub expires_in: i64,
    /// Granted scopes, space-separated (the real service may answer with commas).
    pub scope: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("NAVER WORKS refused the Client ID or Client Secret")]
    InvalidClient,
    #[error("NAVER WORKS refused the JWT: the private key does not match the app, or the Service Account is wrong")]
    InvalidAssertion,
    #[error("a requested scope is not granted to the app in the Developer Console ({0})")]
    ScopeNotGranted(String),
    #[error("NAVER WORKS refused the refresh token")]
    RefreshRejected,
    #[error("the NAVER WORKS token endpoint is unavailable ({0})")]
    Unavailable(String),
    #[error("NAVER WORKS refused the token request (HTTP {0})")]
    Rejected(u16),
    #[error("the token endpoint's answer could not be read ({0})")]
    InvalidResponse(String),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidClient => "naverworks_invalid_client",
            Self::InvalidAssertion => "naverworks_invalid_assertion",
            Self::ScopeNotGranted(_) => "naverworks_scope_not_granted",
            Self::RefreshRejected => "naverworks_refresh_rejected",
            Self::Unavailable(_) => "naverworks_unavailable",
            Self::Rejected(_) => "naverworks_token_rejected",
            Self::InvalidResponse(_) => "naverworks_invalid_response",
        }
    }

    /// Whether retrying soon could help (the endpoint, not the credentials).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    token_url: String,
}

impl TokenClient {
    /// `auth_url` is the auth base, e.g. `https://auth.worksmobile.com/oauth2/v2.0/`.
    pub fn new(http: reqwest::Client, auth_url: &Url) -> Self {
        let token_url = format!("{}/token", auth_url.as_str().trim_end_matches('/'));
        Self { http, token_url }
    }

    pub async fn jwt_grant(
        &self,
        creds: &Credentials,
        account: &ServiceAccount,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        let assertion = sign_assertion(
            &account.private_key,
            &creds.client_id,
            &account.id,
            now,
            MAX_LIFETIME_SECS,
        );
        let form = [
            ("assertion", assertion.as_str()),
            ("grant_type", JWT_BEARER),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("scope", creds.scope.as_str()),
        ];
        self.post(&form, false).await
    }

    /// The authorization-code grant (§2): the code NAVER WORKS gave the
    /// redirect URL, exchanged form-encoded with the same `redirect_uri`.
    /// No scope: it carries over from the authorize request [O].
    pub async fn code_grant(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        code: &str,
        redirect_uri: &str,
    ) -> Result<IssuedToken, TokenError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("redirect_uri", redirect_uri),
        ];
        self.post(&form, false).await
    }

    pub async fn refresh_grant(
        &self,
        creds: &Credentials,
        refresh_token: &SecretString,
    ) -> Result<IssuedToken, TokenError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
        ];
        self.post(&form, true).await
    }

    async fn post(&self, form: &[(&str, &str)], refresh: bool) -> Result<IssuedToken, TokenError> {
        // `form` URL-encodes every value (tokens hold '+', '/' and '=', §1.5).
        let response = self
            .http
            .post(&self.token_url)
            .timeout(Duration::from_secs(15))
            .form(form)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(crate::outbound::no_answer(&e).into()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|_| TokenError::Unavailable("answer cut short".into()))?;
        if !status.is_success() {
            let error = classify(status.as_u16(), &body, refresh);
            let shown: String = body.chars().take(500).collect();
            tracing::warn!(status = status.as_u16(), body = %shown, error.code = error.code(), "token request failed");
            return Err(error);
        }
        parse_token(&body)
    }
}

fn classify(status: u16, body: &str, refresh: bool) -> TokenError {
    if status == 429 || crate::outbound::retryable_status(status) {
        return TokenError::Unavailable(format!("HTTP {status}"));
    }
    let text = body.to_ascii_lowercase();
    if text.contains("scope") {
        // The message's last clause names the scopes, if the body has one.
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                [
                    "returnMessage",
                    "error_description",
                    "description",
                    "message",
                ]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
            })
            .unwrap_or_default();
        let detail = message
            .rsplit(':')
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(100)
            .collect();
        TokenError::ScopeNotGranted(detail)
    } else if text.contains("client_secret")
        || text.contains("invalidclient")
        || text.contains("invalid_client")
    {
        TokenError::InvalidClient
    } else if text.contains("assertion") || text.contains("signature") || text.contains("jwt") {
        TokenError::InvalidAssertion
    } else if refresh {
        TokenError::RefreshRejected
    } else {
        TokenError::Rejected(status)
    }
}

/// Parses a 200 answer: `expires_in` as a string (documented, observed) or a
/// number (one doc example); scope with spaces or commas (observed).
pub fn parse_token(body: &str) -> Result<IssuedToken, TokenError> {
    let value: Value =
        serde_json::from_str(body).map_err(|_| TokenError::InvalidResponse("not JSON".into()))?;
    let text = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let access = text("access_token")
        .ok_or_else(|| TokenError::InvalidResponse("no access_token".into()))?;
    let expires_in = match value.get("expires_in") {
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
    .filter(|n| *n > 0)
    .ok_or_else(|| TokenError::InvalidResponse("no usable expires_in".into()))?;
    let scope = text("scope")
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(IssuedToken {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: text("refresh_token").map(|s| SecretString::from(s.to_owned())),
        expires_in,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_documented_token_shapes() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/naverworks/"
        );
        let doc = std::fs::read_to_string(format!("{dir}token_response_doc_example.json")).unwrap();
        let observed = std::fs::read_to_string(format!(
            "{dir}token_response_observed_string_expires_in.json"
        ))
        .unwrap();
        let a = parse_token(&doc).unwrap();
        let b = parse_token(&observed).unwrap();
        assert_eq!((a.expires_in, b.expires_in), (86400, 86400));
        assert!(a.refresh_token.is_some());
        assert!(!b.scope.contains(','), "commas normalised: {}", b.scope);
        assert!(parse_token("{\"access_token\":\"x\"}").is_err());
        assert!(parse_token("<html>").is_err());
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            classify(
                400,
                r#"{"returnCode":"99","returnMessage":"InvalidClient: client_secret does not match"}"#,
                false
            ),
            TokenError::InvalidClient
        );
        assert_eq!(
            classify(
                400,
                r#"{"returnMessage":"InvalidAssertion: signature does not verify"}"#,
                false
            ),
            TokenError::InvalidAssertion
        );
        assert!(
            matches!(classify(400, r#"{"returnMessage":"InvalidScope: not granted to this app: mail"}"#, false), TokenError::ScopeNotGranted(s) if s == "mail")
        );
        assert_eq!(
            classify(
                400,
                r#"{"returnCode":"99","returnMessage":"UnexpectedError"}"#,
                true
            ),
            TokenError::RefreshRejected
        );
        assert_eq!(
            classify(
                400,
                r#"{"returnCode":"99","returnMessage":"UnexpectedError"}"#,
                false
            ),
            TokenError::Rejected(400)
        );
        assert!(classify(503, "", false).is_transient());
        assert!(classify(429, "", false).is_transient());
        // Not read in time: nothing was done, so not a refused refresh.
        assert!(classify(408, "", true).is_transient());
    }
}
