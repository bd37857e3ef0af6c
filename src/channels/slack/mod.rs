//! The Slack adapter (SLACK.md): Events API messages and mentions, slash
//! commands and block actions as turns; replies as `chat.postMessage`
//! bodies (Block Kit for buttons and images) in the thread the user wrote
//! in, or at a command's `response_url` while it is valid (and a button's,
//! to replace or delete the message it was on); delivery with the
//! workspace's bot token, paced per channel.
//!
//! An outbox row of a Slack connection holds a delivery document, not only
//! the message: `{"message": {text, blocks?, …}, "channel", "thread_ts"?,
//! "response_url"?, "respond_until"?}` (`target_id` is the channel).

pub mod api;
pub mod inbound;
pub mod installs;
pub mod signature;

use serde_json::{json, Map, Value};

use super::{connection_secret, Outgoing, Refused, Reply, Sent, Turn};
use crate::domain::{now_millis, rfc3339, str_field, FieldError};
use crate::state::AppState;
use crate::store::queue::{NewOutbound, OutboundMessage};
use crate::store::{field, ConnectionRecord};

/// A `response_url` takes up to 5 messages within 30 minutes (SLACK.md §3).
pub const RESPONSE_URL_USES: usize = 5;
pub const RESPONSE_URL_LIFETIME_MS: i64 = 30 * 60 * 1000;
/// Slack truncates texts past 40,000 characters; botgate refuses them.
pub const TEXT_LIMIT: usize = 40_000;
pub const MAX_BLOCKS: usize = 50;
/// The default pacing: about one message per second per channel.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;

/// What botgate keeps about a Slack connection besides its secrets (the
/// connection's `details`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Details {
    /// Who the pasted bot token belongs to, from `auth.test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<api::Identity>,
    /// Answered at once to a slash command (ephemeral), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_ack_text: Option<String>,
    /// The app installs were made for (`oauth.v2.access`'s `app_id`, kept
    /// from the first): an install by another app is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

impl Details {
    pub fn of(connection: &ConnectionRecord) -> Self {
        serde_json::from_str(&connection.details).unwrap_or_default()
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// Adds the workspace's Enterprise Grid organization to a conversation,
/// when the request named one: an org-wide installation answers for it.
fn in_enterprise(conversation: &mut Value, enterprise: Option<&str>) {
    if let Some(e) = enterprise.filter(|e| team_id(e).is_some()) {
        conversation["enterprise_id"] = json!(e);
    }
}

/// The engine protocol's conversation for Slack.
fn conversation(
    user: Option<&str>,
    channel: Option<&str>,
    team: Option<&str>,
    thread: Option<&str>,
) -> Value {
    json!({"user_id": user, "channel_id": channel, "team_id": team, "thread_ts": thread})
}

/// A stored Slack request as the engines see it.
pub fn turn(event_type: &str, raw: &[u8], received_at: i64) -> Turn {
    let mut turn = Turn {
        channel: super::Channel::Slack,
        kind: event_type.to_owned(),
        conversation: Value::Null,
        content: Value::Null,
        postback: None,
        issued_time: json!(rfc3339(received_at)),
        received_at,
        raw: Value::Null,
        ignored: None,
    };
    match event_type {
        "command" => {
            let fields = inbound::form_fields(raw).unwrap_or_default();
            let f = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
            turn.conversation = conversation(
                f("user_id").as_deref(),
                f("channel_id").as_deref(),
                f("team_id").as_deref(),
                None,
            );
            in_enterprise(&mut turn.conversation, f("enterprise_id").as_deref());
            turn.content = json!({"type": "command", "command": f("command"), "text": f("text").unwrap_or_default()});
            turn.raw = Value::Object(fields);
        }
        "block_actions" => {
            let fields = inbound::form_fields(raw).unwrap_or_default();
            let doc: Value = str_field(&fields, "payload")
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Null);
            let action = doc
                .get("actions")
                .and_then(|a| a.get(0))
                .cloned()
                .unwrap_or(Value::Null);
            let (data, values) = action_data(&action);
            let thread = str_at(&doc, &["container", "thread_ts"])
                .or(str_at(&doc, &["message", "thread_ts"]));
            turn.kind = "postback".into();
            turn.conversation = conversation(
                str_at(&doc, &["user", "id"]),
                str_at(&doc, &["channel", "id"]),
                str_at(&doc, &["team", "id"]),
                thread,
            );
            in_enterprise(&mut turn.conversation, str_at(&doc, &["enterprise", "id"]));
            turn.content =
                json!({"type": "postback", "data": data, "action_id": action.get("action_id")});
            if let Some(values) = values {
                turn.content["values"] = json!(values);
            }
            turn.postback = Some(json!({ "data": data }));
            turn.raw = doc;
        }
        _ => event(
            &mut turn,
            serde_json::from_slice(raw).unwrap_or(Value::Null),
        ),
    }
    turn
}

/// A sample direct-message event (SLACK.md §2's event_callback shape).
pub fn sample_turn(text: &str, now: i64) -> Turn {
    let seconds = now / 1000;
    let delivery = json!({
        "type": "event_callback",
        "team_id": "T0ENGINETEST",
        "api_app_id": "A0ENGINETEST",
        "event_id": "Ev0ENGINETEST",
        "event_time": seconds,
        "event": {
            "type": "message", "channel": "D0ENGINETEST", "channel_type": "im",
            "user": "U0ENGINETEST", "text": text, "ts": format!("{seconds}.000100"),
        },
    });
    turn("message", delivery.to_string().as_bytes(), now)
}

/// What an element's action carries, as a postback's `data` (a string, as
/// engines get it from NAVER WORKS), and for a choice of several, each
/// value. SLACK.md §4 documents buttons; the other elements' fields are
/// from Slack's block_actions reference and Bolt's `block-action.ts`
/// types: a button's `value`; a select's, an overflow menu's or a radio
/// group's `selected_option.value`; a picked date, time, user, channel or
/// conversation; a multi-select's or checkboxes' values, joined by commas
/// (each also in `values`). A choice taken back (Slack sends null) gives
/// an empty string; an element with none of these gives its `action_id`.
fn action_data(action: &Value) -> (Value, Option<Vec<Value>>) {
    let option_value = |o: &Value| o.get("value").cloned().unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    const PICKED: [&str; 6] = [
        "selected_date",
        "selected_time",
        "selected_date_time",
        "selected_user",
        "selected_channel",
        "selected_conversation",
    ];
    const PICKED_MANY: [&str; 3] = [
        "selected_users",
        "selected_channels",
        "selected_conversations",
    ];
    let many = |values: Vec<Value>| {
        let joined = values.iter().map(text).collect::<Vec<_>>().join(",");
        (json!(joined), Some(values))
    };
    if let Some(value) = action.get("value") {
        return (json!(text(value)), None);
    }
    if let Some(option) = action.get("selected_option") {
        return (json!(text(&option_value(option))), None);
    }
    if let Some(options) = action.get("selected_options") {
        let values = options
            .as_array()
            .map(|o| o.iter().map(option_value).collect());
        return many(values.unwrap_or_default());
    }
    if let Some(picked) = PICKED.iter().find_map(|k| action.get(*k)) {
        // `selected_date_time` is a number of seconds.
        return match picked {
            Value::Number(n) => (json!(n.to_string()), None),
            other => (json!(text(other)), None),
        };
    }
    if let Some(picked) = PICKED_MANY.iter().find_map(|k| action.get(*k)) {
        return many(picked.as_array().cloned().unwrap_or_default());
    }
    (
        action.get("action_id").cloned().unwrap_or(Value::Null),
        None,
    )
}

/// An Events API event: messages and mentions are asked about; a bot's
/// messages (its own among them), edits and deletions, and other event
/// types are stored and ignored (a bot that answers bots loops).
fn event(turn: &mut Turn, doc: Value) {
    if let Some(seconds) = doc.get("event_time").and_then(Value::as_i64) {
        turn.issued_time = json!(rfc3339(seconds.saturating_mul(1000)));
    }
    let event = doc.get("event").cloned().unwrap_or(Value::Null);
    let text = str_field(&event, "text").unwrap_or("");
    // The bot's own user (authorizations, SLACK.md §2): a mention of it is
    // the app_mention's to answer, and is cut from the text engines see.
    let bot_user = doc
        .get("authorizations")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|a| a.get("is_bot").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|a| a.get("user_id"))
        .and_then(Value::as_str);
    let mention = bot_user.map(|u| format!("<@{u}>"));
    if let Some(kind) = membership(&turn.kind, &event, bot_user) {
        let member = str_field(&event, "user");
        // Who added or removed the bot, when Slack says; else the member.
        let who = match kind {
            "join" => str_field(&event, "inviter"),
            "leave" => str_field(&event, "actor_id"),
            _ => member,
        };
        turn.kind = kind.into();
        turn.conversation = conversation(
            who,
            str_field(&event, "channel"),
            str_field(&doc, "team_id"),
            None,
        );
        in_enterprise(&mut turn.conversation, str_field(&doc, "enterprise_id"));
        turn.content = match kind {
            "joined" | "left" => json!({"type": kind, "members": [member]}),
            _ => json!({ "type": kind }),
        };
        turn.raw = doc;
        return;
    }
    turn.ignored = match turn.kind.as_str() {
        "message" | "app_mention" if event.get("bot_id").is_some() => Some("a bot's message"),
        // A user's file is a message with the `file_share` subtype.
        "message" if file_share(&event) => None,
        "message" | "app_mention" if event.get("subtype").is_some() => {
            Some("not a user's message (it has a subtype)")
        }
        "message"
            if str_field(&event, "channel_type") != Some("im")
                && mention.as_deref().is_some_and(|m| text.contains(m)) =>
        {
            Some("a mention of the bot: answered as its app_mention")
        }
        "message" | "app_mention" => None,
        _ => Some("an event type no engine is asked about"),
    };
    let said = match &mention {
        Some(m) if turn.kind == "app_mention" => text.replace(m.as_str(), "").trim().to_owned(),
        _ => text.to_owned(),
    };
    turn.kind = if turn.kind == "app_mention" {
        "message".into()
    } else {
        turn.kind.clone()
    };
    turn.conversation = conversation(
        str_field(&event, "user"),
        str_field(&event, "channel"),
        str_field(&doc, "team_id"),
        str_field(&event, "thread_ts"),
    );
    in_enterprise(&mut turn.conversation, str_field(&doc, "enterprise_id"));
    turn.content = match event.pointer("/files/0") {
        // The first file (engines get a botgate link to it as content.url).
        Some(file) if file_share(&event) => {
            let mimetype = str_field(file, "mimetype").unwrap_or("");
            let major = mimetype.split('/').next().unwrap_or_default();
            let kind = if matches!(major, "image" | "audio" | "video") {
                major
            } else {
                "file"
            };
            let name = str_field(file, "name").unwrap_or("file");
            json!({"type": kind, "text": said, "name": super::bounded_text(name, 200),
                   "mimetype": super::bounded_text(mimetype, 100)})
        }
        _ => json!({"type": "text", "text": said}),
    };
    turn.raw = doc;
}

/// A membership event as the engine protocol's kinds, which are NAVER
/// WORKS' (NAVERWORKS.md §callbacks): the bot added to a channel `join`,
/// others joining `joined`, leaving `left`, the bot removed `leave`. The
/// event shapes are Slack's events reference's (`member_joined_channel`,
/// `member_left_channel` with `user`, `channel`, `inviter`?; `channel_left`
/// / `group_left` with `channel`, `actor_id`), not SLACK.md's; that the
/// bot's own joining arrives as `member_joined_channel` is [S].
fn membership(event_type: &str, event: &Value, bot_user: Option<&str>) -> Option<&'static str> {
    let member = str_field(event, "user");
    let bot = member.is_some() && member == bot_user;
    match event_type {
        "member_joined_channel" if bot => Some("join"),
        "member_joined_channel" => Some("joined"),
        "member_left_channel" if bot => Some("leave"),
        "member_left_channel" => Some("left"),
        "channel_left" | "group_left" => Some("leave"),
        _ => None,
    }
}

fn file_share(event: &Value) -> bool {
    str_field(event, "subtype") == Some("file_share")
        && event.get("bot_id").is_none()
        && event
            .get("files")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

fn https(url: &str) -> bool {
    url.len() <= 3000
        && url::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.host().is_some())
}

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text, "emoji": true})
}

/// One engine reply as a `chat.postMessage` body (without `channel`).
pub fn render(reply: &Value) -> Result<Value, String> {
    let reply = Reply::parse(reply)?;
    let message = match reply.kind {
        "text" => json!({ "text": reply.text("text")? }),
        // Bytes from the engine: uploaded at delivery (the external upload).
        kind @ ("image" | "file" | "audio" | "video")
            if reply.value.get("data_base64").is_some() =>
        {
            return super::files::upload_request(
                kind,
                reply.value.get("name"),
                &reply.value["data_base64"],
            );
        }
        kind @ ("image" | "file" | "audio" | "video")
            if !super::files::platform_reachable(reply.text("url")?) =>
        {
            return super::files::upload_from_url(kind, reply.text("url")?);
        }
        "file" | "audio" | "video" => json!({ "text": reply.text("url")? }),
        "image" => {
            let url = reply.text("url")?;
            if !https(url) {
                return Err("image reply needs an https url".into());
            }
            json!({"text": "image", "blocks": [{"type": "image", "image_url": url, "alt_text": "image"}]})
        }
        "buttons" => {
            let text = reply.text("text")?;
            let buttons = reply.buttons()?;
            if buttons.is_empty() || buttons.len() > 25 {
                return Err("buttons reply needs 1 to 25 buttons".into());
            }
            let elements = buttons
                .iter()
                .enumerate()
                .map(|(i, b)| button(i, b))
                .collect::<Result<Vec<_>, _>>()?;
            if text.chars().count() > 3000 {
                return Err("buttons reply text is longer than 3,000 characters".into());
            }
            json!({"text": text, "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "actions", "elements": elements}]})
        }
        "native" => reply.native()?,
        _ => return Err("unknown reply type".to_owned()),
    };
    check_message(&message).map_err(|e| format!("reply is not a valid Slack message: {e}"))?;
    Ok(message)
}

/// A button: `{label, postback}` → a button carrying the postback as its
/// value, `{label, url}` → a link button.
fn button(index: usize, b: &Value) -> Result<Value, String> {
    let label = str_field(b, "label")
        .filter(|l| !l.is_empty() && l.chars().count() <= 75)
        .ok_or("a button needs a label of 1 to 75 characters")?;
    let action_id = format!("botgate_{index}");
    if let Some(url) = str_field(b, "url") {
        if !https(url) {
            return Err("a button's url must be https".into());
        }
        return Ok(
            json!({"type": "button", "text": plain(label), "url": url, "action_id": action_id}),
        );
    }
    let value = str_field(b, "postback")
        .filter(|v| v.chars().count() <= 2000)
        .ok_or("a button needs postback (at most 2,000 characters) or url")?;
    Ok(json!({"type": "button", "text": plain(label), "value": value, "action_id": action_id}))
}

/// A Slack message body: an object with a text or blocks within Slack's
/// limits; `channel` is botgate's to set.
pub fn check_message(message: &Value) -> Result<(), String> {
    let object = message.as_object().ok_or("must be an object")?;
    let text = object.get("text");
    let blocks = object.get("blocks");
    match text {
        None => {}
        Some(Value::String(t)) if t.chars().count() <= TEXT_LIMIT => {}
        Some(Value::String(_)) => {
            return Err(format!("text: must be at most {TEXT_LIMIT} characters"))
        }
        Some(_) => return Err("text: must be a string".into()),
    }
    match blocks {
        None => {}
        Some(Value::Array(b)) if b.len() <= MAX_BLOCKS && b.iter().all(Value::is_object) => {}
        Some(_) => {
            return Err(format!(
                "blocks: must be a list of at most {MAX_BLOCKS} block objects"
            ))
        }
    }
    for flag in ORIGINAL_FLAGS {
        if object.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("{flag}: must be true or false"));
        }
    }
    let empty_text = text.and_then(Value::as_str).is_none_or(str::is_empty);
    if empty_text && blocks.is_none() && !acts_on_original(message, "delete_original") {
        return Err("text: a message needs a text or blocks".into());
    }
    if object.contains_key("channel") {
        return Err("channel: is set by botgate (give channel_id)".into());
    }
    if message.to_string().len() > 64 * 1024 {
        return Err("is larger than 64 KiB".into());
    }
    Ok(())
}

/// The fields of a `response_url` message that act on the message a button
/// was on, instead of posting a new one (SLACK.md §3).
const ORIGINAL_FLAGS: [&str; 2] = ["replace_original", "delete_original"];

/// Whether a message body sets `flag` (one of [`ORIGINAL_FLAGS`]) to true.
fn acts_on_original(message: &Value, flag: &str) -> bool {
    message.get(flag).and_then(Value::as_bool) == Some(true)
}

/// Whether a message body replaces or deletes the message a button was on.
fn on_original(message: &Value) -> bool {
    ORIGINAL_FLAGS
        .iter()
        .any(|flag| acts_on_original(message, flag))
}

/// Outbox rows for an event's rendered replies. A command's first five go
/// to its `response_url` (checked again when sent); so do a button's
/// replies that replace or delete the message it was on (a `native` reply
/// with `replace_original` or `delete_original`: only its `response_url`
/// can). The rest, and every other event's, go to `chat.postMessage` in
/// the thread the user wrote in.
pub fn replies(turn: &Turn, rendered: Vec<Value>) -> Vec<NewOutbound> {
    let Some(channel) = turn.channel_id().map(str::to_owned) else {
        return Vec::new();
    };
    let thread = str_field(&turn.conversation, "thread_ts");
    let team = str_field(&turn.conversation, "team_id");
    let enterprise = str_field(&turn.conversation, "enterprise_id");
    let response_url = matches!(turn.kind.as_str(), "command" | "postback")
        .then(|| str_field(&turn.raw, "response_url"))
        .flatten()
        .filter(|u| u.len() <= 1024);
    let mut uses = 0;
    rendered
        .into_iter()
        .map(|message| {
            let respond = turn.kind == "command" || on_original(&message);
            let mut doc = json!({"message": message, "channel": channel, "team": team});
            if let Some(ts) = thread {
                doc["thread_ts"] = json!(ts);
            }
            if let Some(e) = enterprise {
                doc["enterprise"] = json!(e);
            }
            if let (Some(url), true) = (response_url, respond && uses < RESPONSE_URL_USES) {
                uses += 1;
                doc["response_url"] = json!(url);
                doc["respond_until"] = json!(turn.received_at + RESPONSE_URL_LIFETIME_MS);
            }
            NewOutbound {
                id: crate::domain::ids::new_message_id(),
                target_kind: "channel",
                target_id: channel.clone(),
                content: doc.to_string(),
            }
        })
        .collect()
}

/// A send-API message for a Slack connection: `channel_id` (or a
/// `user_id`, which Slack takes as the channel of the app's direct
/// messages), an optional `thread_ts`, and Slack message bodies.
pub async fn outgoing(
    state: &AppState,
    connection: &ConnectionRecord,
    request: &Outgoing<'_>,
) -> Result<(String, Vec<NewOutbound>), Refused> {
    if request.target_id.contains(':') {
        return Err(vec![FieldError::new("channel_id", "is not a Slack id")].into());
    }
    let thread = match &request.thread_ts {
        Some(ts) if ts.len() <= 32 && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            Some(ts.as_str())
        }
        Some(_) => {
            return Err(vec![FieldError::new(
                "thread_ts",
                "must be a Slack ts such as 1700000000.000100",
            )]
            .into())
        }
        None => None,
    };
    // The NAVER WORKS text form (`botgate send` sends it) is taken as a
    // Slack text.
    // (`split_long_text` is NAVER WORKS': a Slack text may be 40,000
    // characters, and one over that is refused.)
    let c = request.content;
    let content = match (str_field(c, "type"), c.get("text")) {
        (Some("text"), Some(text)) if c.as_object().is_some_and(|o| o.len() == 2) => {
            json!({ "text": text })
        }
        _ => c.clone(),
    };
    if let Err(message) = check_message(&content) {
        let (field, reason) = message.split_once(": ").unwrap_or(("", message.as_str()));
        let path = if field.is_empty() {
            "content".to_owned()
        } else {
            format!("content.{field}")
        };
        return Err(vec![FieldError::new(path, reason)].into());
    }
    let team = send_team(state, connection, request.team_id.as_deref())
        .await?
        .map_err(|e| vec![e])?;
    let channel = &request.target_id;
    let conversation = match thread {
        Some(ts) => format!("s:{team}:{channel}:{ts}"),
        None => format!("s:{team}:{channel}"),
    };
    let mut doc = json!({"message": content, "channel": channel, "team": team});
    if let Some(ts) = thread {
        doc["thread_ts"] = json!(ts);
    }
    let message = NewOutbound {
        id: crate::domain::ids::new_message_id(),
        target_kind: "channel",
        target_id: channel.clone(),
        content: doc.to_string(),
    };
    Ok((conversation, vec![message]))
}

/// The workspace a send-API message goes to: the one named, if the
/// connection can send there (its pasted token's workspace, or an active
/// installation); with none named, the pasted token's. A connection that
/// only has installations needs the workspace named even when it has one
/// installation, so that a job written against it does not start failing
/// the day a second workspace installs the app. Refused here, a message
/// that could not be delivered is never queued.
async fn send_team(
    state: &AppState,
    connection: &ConnectionRecord,
    asked: Option<&str>,
) -> Result<Result<String, FieldError>, crate::store::StoreError> {
    let refused = |message: &str| Ok(Err(FieldError::new("team_id", message)));
    let [required, invalid, reinstall, not_installed] = TEAM_REFUSALS;
    let pasted = Details::of(connection).identity.map(|i| i.team_id);
    let Some(asked) = asked else {
        return match pasted {
            Some(team) => Ok(Ok(team)),
            None => refused(required),
        };
    };
    let Some(team) = team_id(asked) else {
        return refused(invalid);
    };
    if pasted.as_deref() == Some(team) {
        return Ok(Ok(team.to_owned()));
    }
    match state.store.installation(&connection.id, team).await? {
        Some(i) if i.status == "active" => Ok(Ok(i.team_id)),
        Some(_) => refused(reinstall),
        None => refused(not_installed),
    }
}

/// Why [`send_team`] refuses a `team_id`: none named where one must be, not
/// a team id, a workspace that must install again, one not installed (the
/// console says them in Korean too).
pub const TEAM_REFUSALS: [&str; 4] = [
    "is required: this connection sends through its workspaces' installations \
     (GET …/installations lists them)",
    "is not a Slack team id",
    "the app must be installed in this workspace again (Slack refused its refresh token)",
    "the app is not installed in this workspace",
];

/// The workspaces a connection can send through, as (team id, name): its
/// pasted token's, then each active installation's; the order
/// [`send_team`] prefers them in.
pub fn sending_workspaces(
    connection: &ConnectionRecord,
    installations: &[crate::store::Installation],
) -> Vec<(String, String)> {
    let mut teams: Vec<_> = Details::of(connection)
        .identity
        .map(|i| (i.team_id, i.team))
        .into_iter()
        .collect();
    for i in installations.iter().filter(|i| i.status == "active") {
        if teams.iter().all(|(team, _)| *team != i.team_id) {
            teams.push((i.team_id.clone(), i.team_name.clone()));
        }
    }
    teams
}

/// Whether an event's workspace may be answered: it has an installation,
/// or it is the pasted token's (an event of another workspace is never
/// answered with that token).
pub async fn admit(
    state: &AppState,
    connection: &ConnectionRecord,
    turn: &Turn,
) -> Result<Option<&'static str>, crate::store::StoreError> {
    let Some(team) = str_field(&turn.conversation, "team_id") else {
        return Ok(None);
    };
    let enterprise = str_field(&turn.conversation, "enterprise_id");
    if installs::installation_for(state, connection, team, enterprise)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let pasted = Details::of(connection).identity.map(|i| i.team_id);
    let has_token = connection_secret(state, connection, field::BOT_TOKEN)
        .await
        .ok()
        .flatten()
        .is_some();
    Ok(match pasted {
        Some(t) if t == team => None,
        None if has_token => None,
        _ => Some("no installation for this workspace: not answered"),
    })
}

/// Whether botgate may post to a `response_url`: Slack's own host over
/// HTTPS, or the origin of the configured API (the emulator). It came in a
/// signed request, but it is still a URL botgate did not choose.
fn response_url_allowed(state: &AppState, url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let slack = url.scheme() == "https" && url.host_str() == Some("hooks.slack.com");
    let api = &state.settings.slack_api_url;
    let configured = url.scheme() == api.scheme()
        && url.host_str() == api.host_str()
        && url.port_or_known_default() == api.port_or_known_default();
    slack || configured
}

/// One attempt: the `response_url` while it is valid (falling back to
/// `chat.postMessage` once Slack says it is used up or expired), else
/// `chat.postMessage` with the bot token.
pub async fn deliver(
    state: &AppState,
    connection: &ConnectionRecord,
    message: &OutboundMessage,
) -> Result<Sent, String> {
    let Ok(doc) = serde_json::from_str::<Value>(&message.content) else {
        return Ok(Sent::Rejected("the stored message is unreadable".into()));
    };
    let body = doc.get("message").cloned().unwrap_or(Value::Null);
    if let Some(upload) = super::files::upload_of(&body.to_string()) {
        return upload_file(state, connection, message, &doc, &upload).await;
    }
    let started = std::time::Instant::now();
    let response_url = str_field(&doc, "response_url")
        .filter(|_| {
            doc.get("respond_until")
                .and_then(Value::as_i64)
                .is_some_and(|t| now_millis() < t)
        })
        .filter(|u| response_url_allowed(state, u));
    let edits_original = on_original(&body);
    if let Some(url) = response_url {
        let mut answer = body.clone();
        if answer.get("response_type").is_none() && !edits_original {
            // Seen by the channel, as a bot's answer to a command usually is.
            answer["response_type"] = json!("in_channel");
        }
        let sent = api::respond(&state.http, url, &answer, state.settings.send_timeout).await;
        count(state, "response_url", started, &sent);
        // Used up (5 uses) or expired: Slack answers 404 [I]; post instead,
        // unless the message was to act on the original, which only its
        // response_url can.
        let gone = matches!(&sent, Sent::Rejected(e) if e.contains("HTTP 404") || e.contains("HTTP 410") || e.contains("expired"));
        if !gone || edits_original {
            return Ok(sent);
        }
    } else if edits_original {
        return Ok(Sent::Rejected(
            "replace_original and delete_original need the response_url of a button's \
             action, valid for 30 minutes and 5 uses"
                .into(),
        ));
    }
    let token = match send_token(state, connection, &doc).await? {
        Ok(token) => token,
        Err(refused) => return Ok(refused),
    };
    let mut post = match body {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    post.insert("channel".into(), json!(message.target_id));
    // An org-wide token acts on many workspaces: Slack asks some methods
    // for the workspace's `team_id`, and ignores it with a workspace's
    // token (api.slack.com/enterprise/apps/changes-apis) [S].
    if let (Some(team), Some(_)) = (str_field(&doc, "team"), str_field(&doc, "enterprise")) {
        post.entry("team_id").or_insert_with(|| json!(team));
    }
    if let Some(ts) = doc
        .get("thread_ts")
        .filter(|_| !post.contains_key("thread_ts"))
    {
        post.insert("thread_ts".into(), ts.clone());
    }
    let post = Value::Object(post);
    let (sent, _) = web_api(state, "chat.postMessage", &token, api::Args::Json(&post)).await;
    Ok(sent)
}

/// The bot token of the stored message's workspace; `Ok(Err)` when the
/// workspace has no (valid) installation, so the message cannot be sent.
async fn send_token(
    state: &AppState,
    connection: &ConnectionRecord,
    doc: &Value,
) -> Result<Result<secrecy::SecretString, Sent>, String> {
    let team = str_field(doc, "team").filter(|t| *t != "-");
    let enterprise = str_field(doc, "enterprise");
    match installs::bot_token(state, connection, team, enterprise, false).await {
        Ok(token) => Ok(Ok(token.token)),
        // Until the workspace installs (again), this message cannot be sent.
        Err(
            e @ (installs::TokenProblem::NoInstallation(_)
            | installs::TokenProblem::NeedsReinstall(_)),
        ) => Ok(Err(Sent::Rejected(e.to_string()))),
        Err(e) => Err(e.to_string()),
    }
}

/// A file the engine gave as bytes: Slack's external upload
/// (`files.getUploadURLExternal` → the bytes to its `upload_url` →
/// `files.completeUploadExternal` into the channel and thread).
async fn upload_file(
    state: &AppState,
    connection: &ConnectionRecord,
    message: &OutboundMessage,
    doc: &Value,
    upload: &super::files::Upload,
) -> Result<Sent, String> {
    let name = match super::files::file_name(&upload.kind, &upload.name) {
        Ok(name) => name,
        Err(e) => return Ok(Sent::Rejected(e)),
    };
    let data = match upload.bytes(state).await {
        Ok(data) => data,
        Err(refused) => return Ok(refused),
    };
    if data.len() > state.settings.file_max_bytes {
        return Ok(Sent::Rejected(
            "the file is larger than file_max_bytes".into(),
        ));
    }
    let token = match send_token(state, connection, doc).await? {
        Ok(token) => token,
        Err(refused) => return Ok(refused),
    };
    let length = data.len().to_string();
    let args = api::Args::Form(&[("filename", name.as_str()), ("length", &length)]);
    let (sent, answer) = web_api(state, "files.getUploadURLExternal", &token, args).await;
    let answer = match (sent, answer) {
        (Sent::Delivered, Some(answer)) => answer,
        (Sent::Delivered, None) => return Ok(Sent::ServerError("Slack's answer is empty".into())),
        (other, _) => return Ok(other),
    };
    let (Some(file_id), Some(upload_url)) = (
        str_field(&answer, "file_id"),
        str_field(&answer, "upload_url").and_then(|u| url::Url::parse(u).ok()),
    ) else {
        return Ok(Sent::ServerError(
            "Slack gave no file_id or upload_url".into(),
        ));
    };
    if !super::files::trusted_host(state, &upload_url) {
        return Ok(Sent::Rejected(
            "Slack's upload_url is on a host botgate does not send files to (file_hosts)".into(),
        ));
    }
    let posted = state
        .http
        .post(upload_url)
        .timeout(state.settings.send_timeout)
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token))
        .header("Content-Type", "application/octet-stream")
        .body(data.into_owned())
        .send()
        .await;
    match posted {
        Ok(r) if r.status().is_success() => {}
        Ok(r) if crate::outbound::retryable_status(r.status().as_u16()) => {
            return Ok(Sent::ServerError(format!(
                "the upload answered HTTP {}",
                r.status().as_u16()
            )))
        }
        Ok(r) => {
            return Ok(Sent::Rejected(format!(
                "the upload answered HTTP {}",
                r.status().as_u16()
            )))
        }
        Err(_) => return Ok(Sent::Unreachable("Slack's upload_url unreachable".into())),
    }
    let mut complete =
        json!({"files": [{"id": file_id, "title": name}], "channel_id": message.target_id});
    if let Some(ts) = doc.get("thread_ts") {
        complete["thread_ts"] = ts.clone();
    }
    let args = api::Args::Json(&complete);
    let (sent, _) = web_api(state, "files.completeUploadExternal", &token, args).await;
    Ok(sent)
}

/// A Web API call with a workspace's bot token, timed and counted.
async fn web_api(
    state: &AppState,
    method: &'static str,
    token: &secrecy::SecretString,
    args: api::Args<'_>,
) -> (Sent, Option<Value>) {
    let started = std::time::Instant::now();
    let (sent, answer) = api::call(
        &state.http,
        &state.settings.slack_api_url,
        method,
        token,
        args,
        state.settings.send_timeout,
    )
    .await;
    count(state, method, started, &sent);
    (sent, answer)
}

fn count(state: &AppState, endpoint: &'static str, started: std::time::Instant, sent: &Sent) {
    state.metrics.slack_sends.inc(endpoint);
    state.metrics.send_latency.observe(started.elapsed());
    state.metrics.sends.inc(sent.label());
}

/// A Slack team id as botgate takes one from outside (a query, a path, a
/// send request): 1 to 64 ASCII letters and digits (`T…`, `E…`), or none.
pub fn team_id(text: &str) -> Option<&str> {
    let ok =
        !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_render_as_block_kit() {
        assert_eq!(
            render(&json!({"type": "text", "text": "hi"})).unwrap(),
            json!({"text": "hi"})
        );
        let b = render(&json!({"type": "buttons", "text": "Pick", "buttons": [
            {"label": "Yes", "postback": "yes"}, {"label": "Docs", "url": "https://e.example"}]}))
        .unwrap();
        assert_eq!(b["blocks"][1]["elements"][0]["value"], "yes");
        assert_eq!(b["blocks"][1]["elements"][1]["url"], "https://e.example");
        // Not one Slack can fetch: botgate fetches it at delivery, if allowed.
        assert_eq!(
            render(&json!({"type": "image", "url": "http://e.example/a.png"})).unwrap()
                ["botgate_upload"]["url"],
            "http://e.example/a.png"
        );
        assert!(render(&json!({"type": "image", "url": "ftp://e.example/a.png"})).is_err());
        assert!(
            render(&json!({"type": "native", "content": {"text": "x", "channel": "C9"}})).is_err()
        );
        assert!(render(&json!({"type": "text", "text": "x".repeat(TEXT_LIMIT + 1)})).is_err());
    }

    #[test]
    fn a_bots_message_and_a_doubled_mention_are_ignored() {
        let raw = |event: Value| {
            json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
            "authorizations": [{"user_id": "UBOT", "is_bot": true}], "event": event})
            .to_string()
        };
        let t = turn("message", raw(json!({"type": "message", "channel": "C1", "user": "U1", "text": "hi", "bot_id": "B1"})).as_bytes(), 0);
        assert!(t.ignored.is_some());
        let t = turn("message", raw(json!({"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1", "text": "<@UBOT> hi"})).as_bytes(), 0);
        assert!(t.ignored.is_some());
        let t = turn(
            "app_mention",
            raw(
                json!({"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UBOT> hi"}),
            )
            .as_bytes(),
            0,
        );
        assert_eq!(
            (t.ignored, t.text(), t.kind.as_str()),
            (None, Some("hi"), "message")
        );
    }

    #[test]
    fn each_kind_of_element_gives_its_choice_as_the_postback() {
        let postback = |action: Value| {
            let payload = json!({"type": "block_actions", "team": {"id": "T1"},
                "user": {"id": "U1"}, "channel": {"id": "C1"}, "actions": [action]});
            let body = format!(
                "payload={}",
                url::form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                    .collect::<String>()
            );
            let t = turn("block_actions", body.as_bytes(), 0);
            (
                t.postback_data().map(str::to_owned),
                t.content["values"].clone(),
            )
        };
        let one = |data: &str| (Some(data.to_owned()), Value::Null);
        let cases = [
            (
                json!({"type": "button", "action_id": "a", "value": "yes"}),
                one("yes"),
            ),
            (
                json!({"type": "static_select", "action_id": "a",
                       "selected_option": {"text": {"type": "plain_text", "text": "Glinda"}, "value": "glinda"}}),
                one("glinda"),
            ),
            (
                json!({"type": "static_select", "action_id": "a", "selected_option": null}),
                one(""),
            ),
            (
                json!({"type": "datepicker", "action_id": "a", "selected_date": "2026-12-07"}),
                one("2026-12-07"),
            ),
            (
                json!({"type": "datetimepicker", "action_id": "a", "selected_date_time": 1_765_000_000}),
                one("1765000000"),
            ),
            (
                json!({"type": "users_select", "action_id": "a", "selected_user": "U2"}),
                one("U2"),
            ),
            (
                json!({"type": "checkboxes", "action_id": "a",
                       "selected_options": [{"value": "x"}, {"value": "y"}]}),
                (Some("x,y".to_owned()), json!(["x", "y"])),
            ),
            (
                json!({"type": "multi_users_select", "action_id": "a", "selected_users": ["U2", "U3"]}),
                (Some("U2,U3".to_owned()), json!(["U2", "U3"])),
            ),
            (
                json!({"type": "something_new", "action_id": "pick"}),
                one("pick"),
            ),
        ];
        for (action, expected) in cases {
            assert_eq!(postback(action.clone()), expected, "{action}");
        }
    }

    #[test]
    fn a_team_id_is_letters_and_digits_up_to_64() {
        assert_eq!(team_id("T0123ABC"), Some("T0123ABC"));
        assert_eq!(team_id(&"T".repeat(64)).map(str::len), Some(64));
        for bad in ["", "T<b>", "T 1", "T-1", "Tü", &"T".repeat(65)] {
            assert_eq!(team_id(bad), None, "{bad:?}");
        }
    }
}
