//! What Slack sends, parsed after its signature is verified (SLACK.md §2–4):
//! each request becomes nothing to store (a `url_verification`, an outer
//! type botgate does not handle) or one event for the inbox, with its
//! conversation key and dedup key.
//!
//! Conversation key: `s:{team}:{channel}`, with `:{thread_ts}` inside a
//! thread, so that replies keep the order of what was said in each thread.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::str_field;

/// One event to store.
#[derive(Debug)]
pub struct Event {
    /// `message`, `app_mention`, `command`, `block_actions`, or another
    /// Events API type (stored, then ignored by the worker).
    pub event_type: String,
    pub conversation: String,
    /// The installation the event was sent to: its workspace (`team_id`),
    /// or for an org-wide installation its organization's id (what an
    /// uninstall removes).
    pub team: String,
    /// `app_uninstalled`, or `tokens_revoked` naming bot tokens: the
    /// workspace's installation is to be removed.
    pub uninstalls: bool,
    /// The dedup key's two parts: the Events API `event_id` (hashed), or
    /// the body's hash for commands and actions (which Slack does not retry).
    pub issued: String,
    pub key_hash: String,
    /// Events API `event_time` (Unix seconds), when sent: a retry carries
    /// the same, so its dedup entry can be kept from it.
    pub event_time: Option<i64>,
}

#[derive(Debug)]
pub enum Parsed {
    /// `url_verification`: answer with this challenge.
    Challenge(String),
    /// Accepted and not stored (an outer type or interaction botgate does
    /// not handle); the sentence says which.
    Skipped(&'static str),
    /// `app_rate_limited`: Slack is dropping this app's events for a
    /// workspace (over 30,000 an hour, SLACK.md §2) since the minute given.
    AppRateLimited {
        team: Option<String>,
        minute: Option<i64>,
    },
    Store(Event),
}

/// An id Slack gives (team, channel, user, ts): short, printable, no `:`
/// (the key's separator).
fn id(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| valid_id(s))
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn conversation(team: &str, channel: &str, thread: Option<&str>) -> String {
    match thread {
        Some(ts) => format!("s:{team}:{channel}:{ts}"),
        None => format!("s:{team}:{channel}"),
    }
}

fn hash(parts: &[&[u8]]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part);
    }
    crate::secrets::hex(&digest.finalize())
}

/// An Events API request body.
pub fn event_body(body: &[u8]) -> Result<Parsed, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let outer = str_field(&doc, "type").ok_or("the body has no type")?;
    match outer {
        "url_verification" => {
            let challenge = str_field(&doc, "challenge")
                .filter(|c| {
                    !c.is_empty() && c.len() <= 256 && c.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or("url_verification needs a short printable challenge")?;
            Ok(Parsed::Challenge(challenge.to_owned()))
        }
        "event_callback" => {
            let team = id(doc.get("team_id")).ok_or("event_callback needs team_id")?;
            let event_id = str_field(&doc, "event_id")
                .filter(|s| valid_id(s))
                .ok_or("event_callback needs event_id")?;
            let event = doc
                .get("event")
                .and_then(Value::as_object)
                .ok_or("event_callback needs an event object")?;
            let event_type = str_field(event, "type")
                .filter(|t| !t.is_empty() && t.len() <= 64)
                .ok_or("the event needs a type")?;
            let channel = id(event.get("channel"));
            if matches!(event_type, "message" | "app_mention") && channel.is_none() {
                return Err(format!("a {event_type} event needs a channel"));
            }
            // Events without a channel (app_uninstalled, tokens_revoked, …)
            // share one conversation per workspace.
            let thread = id(event.get("thread_ts"));
            let key = conversation(team, channel.unwrap_or("-"), thread);
            let revoked_bots = event
                .get("tokens")
                .and_then(|t| t.get("bot"))
                .and_then(Value::as_array)
                .is_some_and(|b| !b.is_empty());
            // The installation the event was sent to (`authorizations`): an
            // Enterprise Grid organization's is kept under its id.
            let org = doc
                .pointer("/authorizations/0")
                .filter(|a| a.get("is_enterprise_install").and_then(Value::as_bool) == Some(true))
                .and_then(|a| id(a.get("enterprise_id")));
            Ok(Parsed::Store(Event {
                event_type: event_type.to_owned(),
                conversation: key,
                team: org.unwrap_or(team).to_owned(),
                uninstalls: event_type == "app_uninstalled"
                    || (event_type == "tokens_revoked" && revoked_bots),
                // Slack's retries of an event carry its event_time: the same key.
                issued: doc
                    .get("event_time")
                    .and_then(Value::as_i64)
                    .map(|t| crate::store::queue::issued_key(t.saturating_mul(1000)))
                    .unwrap_or_default(),
                key_hash: hash(&[b"slack-event:", event_id.as_bytes()]),
                event_time: doc.get("event_time").and_then(Value::as_i64),
            }))
        }
        // The field names are Slack's event reference's
        // (api.slack.com/events/app_rate_limited); SLACK.md names the type.
        "app_rate_limited" => Ok(Parsed::AppRateLimited {
            team: id(doc.get("team_id")).map(str::to_owned),
            minute: doc.get("minute_rate_limited").and_then(Value::as_i64),
        }),
        // Types Slack may add: acknowledged, not stored.
        _ => Ok(Parsed::Skipped(
            "an outer event type botgate does not handle",
        )),
    }
}

/// The fields of a form-encoded body as a JSON object (repeated names: the
/// first), refusing bodies that are not form-encoded text.
pub fn form_fields(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_owned())?;
    let mut fields = serde_json::Map::new();
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        fields
            .entry(name.into_owned())
            .or_insert(Value::String(value.into_owned()));
    }
    Ok(fields)
}

/// A slash command (form-encoded).
pub fn command_body(body: &[u8]) -> Result<Parsed, String> {
    let fields = form_fields(body)?;
    let field = |name: &str| fields.get(name);
    field("command")
        .and_then(Value::as_str)
        .filter(|c| c.starts_with('/') && c.len() <= 64 && valid_id(c))
        .ok_or("a slash command needs command (\"/name\")")?;
    let team = id(field("team_id")).ok_or("a slash command needs team_id")?;
    let channel = id(field("channel_id")).ok_or("a slash command needs channel_id")?;
    id(field("user_id")).ok_or("a slash command needs user_id")?;
    if field("text")
        .and_then(Value::as_str)
        .is_some_and(|t| t.chars().count() > 4000)
    {
        return Err("the command's text is longer than 4,000 characters".into());
    }
    Ok(Parsed::Store(Event {
        event_type: "command".into(),
        conversation: conversation(team, channel, None),
        team: team.to_owned(),
        uninstalls: false,
        issued: String::new(),
        key_hash: hash(&[b"slack-command:", body]),
        event_time: None,
    }))
}

/// An interaction (`payload=` JSON, form-encoded): block actions are stored.
pub fn interaction_body(body: &[u8]) -> Result<Parsed, String> {
    let fields = form_fields(body)?;
    let payload = str_field(&fields, "payload").ok_or("an interaction needs a payload field")?;
    let doc: Value =
        serde_json::from_str(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let kind = str_field(&doc, "type").ok_or("the payload has no type")?;
    if kind != "block_actions" {
        return Ok(Parsed::Skipped(
            "an interaction type botgate does not handle",
        ));
    }
    let team =
        id(doc.get("team").and_then(|t| t.get("id"))).ok_or("block_actions needs team.id")?;
    let channel =
        id(doc.get("channel").and_then(|c| c.get("id"))).ok_or("block_actions needs channel.id")?;
    id(doc.get("user").and_then(|u| u.get("id"))).ok_or("block_actions needs user.id")?;
    let actions = doc
        .get("actions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("block_actions needs actions")?;
    if actions.len() > 25 {
        return Err("block_actions has more than 25 actions".into());
    }
    let thread = id(doc.get("container").and_then(|c| c.get("thread_ts")))
        .or_else(|| id(doc.get("message").and_then(|m| m.get("thread_ts"))));
    Ok(Parsed::Store(Event {
        event_type: "block_actions".into(),
        conversation: conversation(team, channel, thread),
        team: team.to_owned(),
        uninstalls: false,
        issued: String::new(),
        key_hash: hash(&[b"slack-action:", body]),
        event_time: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_keyed_by_team_channel_and_thread() {
        let body = br#"{"type":"event_callback","team_id":"T1","event_id":"Ev1","event_time":1700000000,
            "event":{"type":"message","channel":"C1","user":"U1","text":"hi","ts":"1.2","thread_ts":"1.1"}}"#;
        let Parsed::Store(event) = event_body(body).unwrap() else {
            panic!()
        };
        assert_eq!(event.conversation, "s:T1:C1:1.1");
        assert_eq!(event.event_time, Some(1_700_000_000));
        assert!(event_body(br#"{"type":"event_callback","team_id":"T1","event_id":"Ev1","event":{"type":"message"}}"#).is_err());
        assert!(matches!(
            event_body(br#"{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820}"#).unwrap(),
            Parsed::AppRateLimited { team: Some(t), minute: Some(1_518_467_820) } if t == "T1"
        ));
        assert!(matches!(
            event_body(br#"{"type":"team_rename_preview"}"#).unwrap(),
            Parsed::Skipped(_)
        ));
    }

    #[test]
    fn commands_need_their_fields() {
        let ok = b"command=%2Fluckydraw&team_id=T1&channel_id=C1&user_id=U1&text=3";
        let Parsed::Store(event) = command_body(ok).unwrap() else {
            panic!()
        };
        assert_eq!(
            (event.event_type.as_str(), event.conversation.as_str()),
            ("command", "s:T1:C1")
        );
        assert!(command_body(b"command=luckydraw&team_id=T1&channel_id=C1&user_id=U1").is_err());
        assert!(command_body(b"command=%2Fx&team_id=T%3A1&channel_id=C1&user_id=U1").is_err());
    }
}
