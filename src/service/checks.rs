//! `POST …/connections/{id}/test`: the connection's credentials tried
//! against its platform now, each check in a sentence. NAVER WORKS: it
//! mints a token of its own; the shared token is not touched. Slack: see
//! `service::slack::checks`.

use secrecy::ExposeSecret;

use crate::domain::now_millis;
use crate::state::AppState;
use crate::store::ConnectionRecord;

/// One check of `POST …/test`: what was checked, whether it passed, a code
/// for failures and a sentence a builder can act on.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    pub message: String,
    /// The variable part of the sentence (bot id, scopes, HTTP status), so
    /// the console can say it in another language.
    #[serde(skip)]
    #[schema(ignore)]
    pub detail: Option<String>,
}

pub(super) fn check(
    name: &'static str,
    ok: bool,
    code: Option<&'static str>,
    message: impl Into<String>,
) -> Check {
    Check {
        name,
        ok,
        code,
        message: message.into(),
        detail: None,
    }
}

impl Check {
    /// The variable part of the sentence, for the console's other language.
    pub(super) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The checks of the test endpoint, in order; stops at the first check the
/// others depend on.
pub async fn run_checks(state: &AppState, record: &ConnectionRecord) -> Vec<Check> {
    if crate::channels::Channel::of(record) == crate::channels::Channel::Slack {
        return super::slack::checks(state, record).await;
    }
    let mut checks = Vec::new();
    let creds = match state.tokens.credentials(record).await {
        Ok((creds, _)) => creds,
        Err(e) => {
            tracing::error!(connection_id = %record.id, error.message = %e, "stored credentials unusable");
            checks.push(check(
                "credentials",
                false,
                Some("credentials_unreadable"),
                "The stored credentials cannot be read; enter them again with PATCH.",
            ));
            return checks;
        }
    };
    checks.push(check(
        "credentials",
        true,
        None,
        if creds.service_account.is_some() {
            "The stored credentials decrypt and the private key parses."
        } else {
            "The stored credentials decrypt."
        },
    ));
    let issued = match &creds.service_account {
        Some(account) => state
            .tokens
            .client()
            .jwt_grant(&creds, account, now_millis() / 1000)
            .await
            .map(|t| (t.access_token, t.scope))
            .map_err(TokenProblem::Token),
        // A user-account connection: the shared token a person authorised
        // (refreshed if due); botgate cannot mint one of its own.
        None => user_token(state, record).await,
    };
    let issued = match issued {
        Ok(issued) => issued,
        Err(TokenProblem::Failure(e)) => {
            use crate::token_cache::TokenFailure as F;
            let code = match e {
                F::NotAuthorized => "not_authorized",
                F::NeedsReauthorization => "needs_reauthorization",
                _ => "token_failed",
            };
            checks.push(check("token", false, Some(code), e.to_string()));
            return checks;
        }
        Err(TokenProblem::Token(e)) => {
            use crate::naverworks::token::TokenError as T;
            let advice = match &e {
                T::InvalidClient => "Check the Client ID and Client Secret in the Developer Console.",
                T::InvalidAssertion => "Check that the private key is the one issued for this app, and the Service Account.",
                T::ScopeNotGranted(_) => "Grant the scope to the app in the Developer Console (OAuth Scopes), or remove it from this connection's scope.",
                T::Unavailable(_) => "Try again in a moment.",
                _ => "Check the app's settings in the Developer Console.",
            };
            checks.push(
                check("token", false, Some(e.code()), format!("{e}. {advice}")).detail(match &e {
                    T::ScopeNotGranted(scopes) => scopes.clone(),
                    T::Rejected(status) => status.to_string(),
                    other => other.to_string(),
                }),
            );
            return checks;
        }
    };
    let (access_token, scope) = issued;
    checks.push(check(
        "token",
        true,
        None,
        "NAVER WORKS issued a token for these credentials.",
    ));
    let granted: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    let missing: Vec<&str> = record
        .scope
        .split(' ')
        .filter(|s| !granted.contains(s))
        .collect();
    let can_send = granted.iter().any(|s| matches!(*s, "bot" | "bot.message"));
    if !missing.is_empty() || !can_send {
        let message = if can_send {
            format!(
                "These requested scopes were not granted: {}.",
                missing.join(", ")
            )
        } else {
            "The token cannot send messages: grant `bot` or `bot.message` to the app.".to_owned()
        };
        checks.push(
            check("scopes", false, Some("scope_not_granted"), message).detail(if can_send {
                missing.join(", ")
            } else {
                String::new()
            }),
        );
    } else {
        checks.push(
            check(
                "scopes",
                true,
                None,
                format!("Granted scopes: {}.", granted.join(" ")),
            )
            .detail(granted.join(" ")),
        );
    }
    let url = format!(
        "{}/bots/{}",
        state
            .settings
            .naverworks_api_url
            .as_str()
            .trim_end_matches('/'),
        record.bot_id
    );
    let bot = state
        .http
        .get(&url)
        .bearer_auth(access_token.expose_secret())
        .send()
        .await;
    checks.push(match bot.map(|r| r.status().as_u16()) {
        Ok(200) => check(
            "bot",
            true,
            None,
            format!("Bot {} exists and belongs to this app.", record.bot_id),
        )
        .detail(&record.bot_id),
        Ok(404) => check(
            "bot",
            false,
            Some("bot_not_found"),
            format!(
                "Bot {} does not exist or does not belong to this app (is the Bot ID right?).",
                record.bot_id
            ),
        )
        .detail(&record.bot_id),
        Ok(401 | 403) => check(
            "bot",
            false,
            Some("bot_not_readable"),
            "The token may not read the bot: grant `bot` or `bot.read` to the app.",
        ),
        Ok(status) => check(
            "bot",
            false,
            Some("bot_check_failed"),
            format!("The Bot API answered HTTP {status}."),
        )
        .detail(status.to_string()),
        Err(_) => check(
            "bot",
            false,
            Some("bot_check_failed"),
            "The Bot API did not answer.",
        ),
    });
    checks
}

enum TokenProblem {
    Token(crate::naverworks::token::TokenError),
    Failure(crate::token_cache::TokenFailure),
}

/// A user-account connection's shared token, for the checks.
async fn user_token(
    state: &AppState,
    record: &ConnectionRecord,
) -> Result<(secrecy::SecretString, String), TokenProblem> {
    let meta = state
        .store
        .token_meta(&record.id)
        .await
        .map_err(|e| TokenProblem::Failure(e.into()))?;
    match state.tokens.token(record, meta, false).await {
        Ok(t) => Ok((t.access_token, t.scope)),
        Err(crate::token_cache::TokenFailure::Token(e)) => Err(TokenProblem::Token(e)),
        Err(e) => Err(TokenProblem::Failure(e)),
    }
}
