//! The Slack Web API methods botgate calls (SLACK.md §5, [D]): JSON bodies,
//! `Authorization: Bearer xoxb-…`, always HTTP 200 with `{"ok": …}` except
//! rate limits (HTTP 429 with `Retry-After` seconds). Answers are read up to
//! a cap, and only Slack's short error codes are kept from them.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::channels::Sent;
use crate::domain::{now_millis, str_field};

/// The most of an answer read (Slack's answers to these calls are small).
const ANSWER_CAP: usize = 256 * 1024;

/// Slack's error code from an `ok:false` answer, if it is one of its short
/// snake_case codes; anything else is not repeated.
fn error_code(answer: &Value) -> String {
    str_field(answer, "error")
        .filter(|e| {
            !e.is_empty()
                && e.len() <= 64
                && e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        })
        .unwrap_or("unknown_error")
        .to_owned()
}

/// The wait Slack asks for with `Retry-After` (seconds), 1..=300; 1 s when
/// absent or unreadable ([D]: rate-limited calls carry it).
pub fn retry_after(response: &reqwest::Response) -> Duration {
    let seconds = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds.clamp(1, 300))
}

fn until(wait: Duration) -> i64 {
    now_millis() + i64::try_from(wait.as_millis()).unwrap_or(300_000)
}

/// What an `ok:false` error means for the message.
pub fn classify_error(code: &str, wait: Duration) -> Sent {
    match code {
        "ratelimited" => Sent::RateLimited {
            until: until(wait),
            error: "Slack: ratelimited".into(),
        },
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive"
        | "missing_scope" => {
            Sent::CredentialsRefused(format!("Slack refused the bot token: {code}"))
        }
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Sent::ServerError(format!("Slack: {code}"))
        }
        // channel_not_found, not_in_channel, is_archived, msg_too_long,
        // no_text, invalid_blocks, …: this message cannot be sent.
        _ => Sent::Rejected(format!("Slack: {code}")),
    }
}

/// An answer as a delivery outcome.
async fn outcome(response: Result<reqwest::Response, reqwest::Error>) -> (Sent, Option<Value>) {
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let what = format!("Slack {}", crate::outbound::no_answer(&e));
            return (Sent::Unreachable(what), None);
        }
    };
    let status = response.status().as_u16();
    let wait = retry_after(&response);
    if status == 429 {
        return (
            Sent::RateLimited {
                until: until(wait),
                error: "HTTP 429: rate limited".into(),
            },
            None,
        );
    }
    if crate::outbound::retryable_status(status) {
        return (
            Sent::ServerError(format!("Slack answered HTTP {status}")),
            None,
        );
    }
    let Ok(body) = crate::outbound::read_capped(response, ANSWER_CAP).await else {
        return (
            Sent::ServerError("Slack's answer could not be read".into()),
            None,
        );
    };
    if !(200..=299).contains(&status) {
        return (
            Sent::Rejected(format!("Slack answered HTTP {status}")),
            None,
        );
    }
    // A response_url answers `ok` as plain text (SLACK.md §3 [I]); the Web
    // API answers JSON.
    if body.trim_ascii() == b"ok" {
        return (Sent::Delivered, None);
    }
    let Ok(answer) = serde_json::from_slice::<Value>(&body) else {
        return (Sent::ServerError("Slack's answer is not JSON".into()), None);
    };
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        (Sent::Delivered, Some(answer))
    } else {
        (classify_error(&error_code(&answer), wait), Some(answer))
    }
}

/// A Web API method's arguments. (No `Debug`: they carry a message's text.)
#[derive(Clone, Copy)]
pub enum Args<'a> {
    Json(&'a Value),
    /// Form-encoded (the file methods take them so).
    Form(&'a [(&'a str, &'a str)]),
}

/// Calls one Web API method with the bot token.
pub async fn call(
    http: &reqwest::Client,
    base: &url::Url,
    method: &str,
    token: &SecretString,
    args: Args<'_>,
    timeout: Duration,
) -> (Sent, Option<Value>) {
    let url = format!("{}/{method}", base.as_str().trim_end_matches('/'));
    let (content_type, body) = match args {
        Args::Json(value) => ("application/json; charset=utf-8", value.to_string()),
        Args::Form(pairs) => (
            "application/x-www-form-urlencoded",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish(),
        ),
    };
    let response = http
        .post(url)
        .timeout(timeout)
        .bearer_auth(token.expose_secret())
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await;
    outcome(response).await
}

/// Posts to a command's `response_url` (no token: the URL is the credential).
pub async fn respond(http: &reqwest::Client, url: &str, body: &Value, timeout: Duration) -> Sent {
    let response = http
        .post(url)
        .timeout(timeout)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await;
    outcome(response).await.0
}

/// Who a bot token belongs to (`auth.test`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct Identity {
    pub team_id: String,
    pub team: String,
    pub bot_id: String,
    pub bot_user_id: String,
    pub url: String,
}

/// `auth.test`: the workspace and bot of a token, or why not.
pub async fn auth_test(
    http: &reqwest::Client,
    base: &url::Url,
    token: &SecretString,
    timeout: Duration,
) -> Result<Identity, Sent> {
    let empty = Value::Object(Map::new());
    let (sent, answer) = call(http, base, "auth.test", token, Args::Json(&empty), timeout).await;
    let (Sent::Delivered, Some(answer)) = (&sent, answer) else {
        return Err(sent);
    };
    let field = |name: &str, max: usize| {
        crate::channels::bounded_text(str_field(&answer, name).unwrap_or(""), max)
    };
    let identity = Identity {
        team_id: field("team_id", 64),
        team: field("team", 200),
        bot_id: field("bot_id", 64),
        bot_user_id: field("user_id", 64),
        url: field("url", 300),
    };
    if identity.team_id.is_empty() {
        return Err(Sent::ServerError("auth.test named no team".into()));
    }
    Ok(identity)
}
