//! The console's markup. maud escapes every interpolated value; nothing here
//! builds HTML from strings. No inline script or style (the CSP forbids
//! them): behaviour lives in `assets/console.js`, looks in `assets/console.css`.

use maud::{html, Markup, DOCTYPE};

use super::i18n::{fill, Lang, T};
use super::session::Ctx;
use crate::channels::Channel;
use crate::domain::FieldError;
use crate::service::checks::Check;
use crate::store::console::Role;

/// Every page: header with navigation, language switch and sign-out.
pub fn layout(ctx: &Ctx, title: &str, body: Markup) -> Markup {
    let l = ctx.lang;
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · botgate" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console" { "botgate" }
                    @if let Some(session) = &ctx.session {
                        nav {
                            @if session.role == Role::Admin {
                                a href="/console/tenants" { (T::Tenants.get(l)) }
                            }
                            @if let Some(tenant) = &session.tenant {
                                span.tenant { (T::Viewing.get(l)) ": " strong #tenant-name { (tenant.name) } }
                                a href="/console/connections" { (T::Connections.get(l)) }
                                a href="/console/engine" { (T::Engine.get(l)) }
                                a href="/console/activity" { (T::Activity.get(l)) }
                            }
                        }
                    }
                    div.end {
                        span.lang {
                            a #lang-en href={ (ctx.path) "?lang=en" } lang="en" aria-current=[(l == Lang::En).then_some("true")] { "English" }
                            " · "
                            a #lang-ko href={ (ctx.path) "?lang=ko" } lang="ko" aria-current=[(l == Lang::Ko).then_some("true")] { "한국어" }
                        }
                        @if let Some(session) = &ctx.session {
                            form.inline method="post" action="/console/sign-out" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button.link #sign-out type="submit" { (T::SignOut.get(l)) }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

pub fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

pub fn alert(text: &str) -> Markup {
    html! { p.alert role="alert" { (text) } }
}

/// A list on a page: `empty` when there are no rows, else a table (with
/// `id`, if given) under these headings ("" for a column without one).
pub fn listing(id: Option<&str>, headings: &[&str], rows: Vec<Markup>, empty: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { (empty) }
        } @else {
            table id=[id] {
                thead { tr { @for heading in headings { th { (heading) } } } }
                tbody { @for row in rows { (row) } }
            }
        }
    }
}

pub fn csrf(ctx: &Ctx) -> Markup {
    html! {
        @if let Some(session) = &ctx.session {
            input type="hidden" name="csrf" value=(session.csrf);
        }
    }
}

/// A value with a copy button (the URLs, a new API key).
pub fn copyable(id: &str, label: &str, value: &str, lang: Lang) -> Markup {
    html! {
        div.copyable {
            span.label { (label) }
            code #(id) { (value) }
            button.copy type="button" data-copy=(id) data-copied=(T::Copied.get(lang)) { (T::Copy.get(lang)) }
        }
    }
}

pub fn sign_in(ctx: &Ctx, nonce: &str, failed: bool, message: Option<T>) -> Markup {
    let l = ctx.lang;
    let body = html! {
        @if let Some(m) = message { (notice(m.get(l))) }
        @if failed { (alert(T::SignInFailed.get(l))) }
        p { (T::SignInIntro.get(l)) }
        form.card method="post" action="/console/sign-in" {
            input type="hidden" name="nonce" value=(nonce);
            label for="key" { (T::KeyOrToken.get(l)) }
            input #key type="password" name="key" autocomplete="current-password" required autofocus;
            button #sign-in type="submit" { (T::SignIn.get(l)) }
        }
    };
    layout(ctx, T::SignIn.get(l), body)
}

/// The connect / rotate form's fields: name, label, hint, kind.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Secret,
    Key,
    Number,
}

pub const CONNECT_FIELDS: &[(&str, T, T, Kind)] = &[
    ("bot_id", T::BotId, T::BotIdHint, Kind::Text),
    ("client_id", T::ClientId, T::ClientIdHint, Kind::Text),
    (
        "client_secret",
        T::ClientSecret,
        T::ClientSecretHint,
        Kind::Secret,
    ),
    (
        "service_account",
        T::ServiceAccount,
        T::ServiceAccountHint,
        Kind::Text,
    ),
    ("private_key", T::PrivateKey, T::PrivateKeyHint, Kind::Key),
    ("bot_secret", T::BotSecret, T::BotSecretHint, Kind::Secret),
    (
        "auth_header",
        T::AuthHeader,
        T::AuthHeaderHint,
        Kind::Secret,
    ),
    (
        "auth_networks",
        T::AuthNetworks,
        T::AuthNetworksHint,
        Kind::Text,
    ),
    ("scope", T::Scopes, T::ScopesHint, Kind::Text),
    (
        "rate_limit_per_minute",
        T::RateLimit,
        T::RateLimitHint,
        Kind::Number,
    ),
];

/// A NAVER WORKS user-account connection's fields: the connect form's
/// without the service account and private key.
pub const USER_SKIPS: &[&str] = &["service_account", "private_key"];

/// The Slack connect / rotate form's fields.
pub const SLACK_FIELDS: &[(&str, T, T, Kind)] = &[
    (
        "signing_secret",
        T::SigningSecret,
        T::SigningSecretHint,
        Kind::Secret,
    ),
    ("bot_token", T::BotToken, T::BotTokenHint, Kind::Secret),
    ("client_id", T::ClientId, T::SlackClientIdHint, Kind::Text),
    (
        "client_secret",
        T::ClientSecret,
        T::SlackClientSecretHint,
        Kind::Secret,
    ),
    ("scopes", T::Scopes, T::SlackScopesHint, Kind::Text),
    (
        "command_ack_text",
        T::CommandAck,
        T::CommandAckHint,
        Kind::Text,
    ),
    (
        "auth_header",
        T::AuthHeader,
        T::SlackAuthHeaderHint,
        Kind::Secret,
    ),
    (
        "auth_networks",
        T::AuthNetworks,
        T::AuthNetworksHint,
        Kind::Text,
    ),
    (
        "rate_limit_per_minute",
        T::RateLimit,
        T::SlackRateLimitHint,
        Kind::Number,
    ),
];

/// The fields of a channel's connect form.
pub fn fields_of(channel: crate::channels::Channel) -> &'static [(&'static str, T, T, Kind)] {
    match channel {
        crate::channels::Channel::NaverWorks => CONNECT_FIELDS,
        crate::channels::Channel::Slack => SLACK_FIELDS,
    }
}

/// The fields of a connection form, with inline errors. Secrets are never
/// put back into the page; `current` shows what is stored (rotation).
pub fn connection_fields(
    lang: Lang,
    fields: &[(&str, T, T, Kind)],
    values: &dyn Fn(&str) -> String,
    errors: &[FieldError],
    current: &dyn Fn(&str) -> Option<String>,
    skip: &[&str],
) -> Markup {
    html! {
        @for (name, label, hint, kind) in fields {
            @if !skip.contains(name) {
                @let field_errors: Vec<&FieldError> = errors.iter().filter(|e| e.field == *name).collect();
                @let hint_id = format!("{name}-hint");
                @let error_id = format!("{name}-error");
                div.field.invalid[!field_errors.is_empty()] {
                    label for=(name) { (label.get(lang)) }
                    @if let Some(now) = current(name) {
                        span.current { (T::Current.get(lang)) ": " code { (now) } }
                    }
                    @match kind {
                        Kind::Text => input #(name) type="text" name=(name) value=(values(name)) spellcheck="false" autocomplete="off" aria-describedby=(hint_id) aria-invalid=[(!field_errors.is_empty()).then_some("true")];
                        Kind::Number => input #(name) type="text" inputmode="numeric" name=(name) value=(values(name)) autocomplete="off" aria-describedby=(hint_id);
                        Kind::Secret => input #(name) type="password" name=(name) value="" autocomplete="new-password" spellcheck="false" aria-describedby=(hint_id);
                        Kind::Key => {
                            textarea #(name) name=(name) rows="6" spellcheck="false" autocomplete="off" aria-describedby=(hint_id) placeholder="-----BEGIN PRIVATE KEY-----" {}
                            div.file {
                                label for="private_key_file" { (T::KeyFile.get(lang)) }
                                input #private_key_file type="file" accept=".key,.pem,.txt";
                            }
                        }
                    }
                    small.hint #(hint_id) { (hint.get(lang)) }
                    @for e in &field_errors {
                        p.error #(error_id) { (super::i18n::say(&e.message, lang)) }
                    }
                }
            }
        }
    }
}

/// One check of Test connection of a `channel` connection, as a sentence
/// in `lang`.
pub fn check_sentence(check: &Check, channel: Channel, lang: Lang) -> String {
    if lang == Lang::En {
        return check.message.clone();
    }
    let d = check.detail.as_deref().unwrap_or_default();
    if channel == Channel::Slack {
        return fill(slack_check_ko(check), &[d]);
    }
    let ko = match (check.name, check.ok, check.code) {
        ("credentials", true, _) => "저장된 자격 증명을 복호화했고 개인 키를 읽었습니다.",
        ("credentials", false, _) => "저장된 자격 증명을 읽을 수 없습니다. 자격 증명 교체에서 다시 입력하세요.",
        ("token", true, _) => "NAVER WORKS가 이 자격 증명으로 토큰을 발급했습니다.",
        ("token", false, Some("naverworks_invalid_client")) => "NAVER WORKS가 Client ID 또는 Client Secret을 거부했습니다. Developer Console의 값을 확인하세요.",
        ("token", false, Some("naverworks_invalid_assertion")) => "NAVER WORKS가 JWT를 거부했습니다. 개인 키가 이 앱에서 발급된 것인지, Service Account가 맞는지 확인하세요.",
        ("token", false, Some("naverworks_scope_not_granted")) => "요청한 Scope가 앱에 부여되지 않았습니다({}). Developer Console의 OAuth Scopes에서 부여하거나 이 연결의 Scope에서 빼세요.",
        ("token", false, Some("naverworks_unavailable")) => "NAVER WORKS 토큰 엔드포인트에 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
        ("token", false, _) => "NAVER WORKS가 토큰 요청을 거부했습니다({}). Developer Console의 앱 설정을 확인하세요.",
        ("scopes", true, _) => "부여된 Scope: {}.",
        ("scopes", false, _) if !d.is_empty() => "요청한 Scope 중 부여되지 않은 것: {}.",
        ("scopes", false, _) => "이 토큰으로는 메시지를 보낼 수 없습니다. 앱에 `bot` 또는 `bot.message`를 부여하세요.",
        ("bot", true, _) => "봇 {}이(가) 있으며 이 앱에 속합니다.",
        ("bot", false, Some("bot_not_found")) => "봇 {}이(가) 없거나 이 앱에 속하지 않습니다(Bot ID가 맞나요?).",
        ("bot", false, Some("bot_not_readable")) => "이 토큰으로 봇을 읽을 수 없습니다. 앱에 `bot` 또는 `bot.read`를 부여하세요.",
        ("bot", false, _) => "Bot API가 응답하지 않았거나 오류로 응답했습니다({}).",
        _ => return check.message.clone(),
    };
    fill(ko, &[d])
}

/// A Slack check's sentence in Korean (`{}`: its detail).
fn slack_check_ko(check: &Check) -> &'static str {
    match (check.name, check.ok, check.code) {
        ("credentials", true, _) => "저장된 시크릿을 복호화했습니다.",
        ("credentials", false, _) => "저장된 자격 증명을 읽을 수 없습니다. 자격 증명 교체에서 다시 입력하세요.",
        ("token", true, _) => "Slack의 auth.test가 봇 토큰을 받아들였습니다. 워크스페이스 {}.",
        ("token", false, Some("no_bot_token")) => "저장된 봇 토큰이 없습니다. 토큰을 붙여 넣거나 워크스페이스에 앱을 설치하세요.",
        ("token", false, Some("slack_token_refused")) => "Slack이 봇 토큰을 거부했습니다({}). 앱을 다시 설치하거나 새 봇 토큰을 붙여 넣으세요.",
        ("token", false, _) => "Slack의 auth.test에 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
        ("installation", true, _) => "워크스페이스 {}: Slack의 auth.test가 봇 토큰을 받아들였습니다.",
        ("installation", false, Some("slack_token_refused")) => "워크스페이스 {}: Slack이 봇 토큰을 거부했습니다. 그 워크스페이스에 앱을 다시 설치하세요.",
        ("installation", false, Some("needs_reinstall")) => "워크스페이스 {}: Slack이 리프레시 토큰을 거부했습니다. 그 워크스페이스에 앱을 다시 설치하세요.",
        ("installation", false, _) => "워크스페이스 {}: Slack에 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
        ("installations", true, _) => "설치된 워크스페이스 {}개는 여기서 확인하지 않았습니다.",
        ("installations", false, Some("not_installed")) => "아직 어떤 워크스페이스에도 앱이 설치되지 않았습니다. 설치 URL을 워크스페이스 관리자에게 공유하세요.",
        _ => "설치 목록을 읽을 수 없습니다. 잠시 후 다시 시도하세요.",
    }
}

pub fn check_title(name: &str) -> T {
    match name {
        "credentials" => T::CheckCredentials,
        "token" => T::CheckToken,
        "scopes" => T::CheckScopes,
        "installation" | "installations" => T::Workspace,
        _ => T::CheckBot,
    }
}

pub fn status_text(status: &str) -> Option<T> {
    Some(match status {
        "pending" => T::StatusPending,
        "processing" => T::StatusProcessing,
        "done" => T::StatusDone,
        "ignored" => T::StatusIgnored,
        "dead" => T::StatusDead,
        "refused" => T::StatusRefused,
        "queued" => T::StatusQueued,
        "sending" => T::StatusSending,
        "delivered" => T::StatusDelivered,
        "cancelled" => T::StatusCancelled,
        "failed" => T::StatusFailed,
        _ => return None,
    })
}

/// An activity entry's action, actor or way in, as the page names it
/// (the code itself where there is no text for it).
pub fn activity_text(code: &str) -> Option<T> {
    Some(match code {
        "tenant.created" => T::ActTenantCreated,
        "tenant.api_key_replaced" => T::ActApiKeyReplaced,
        "tenant.engine_set" => T::ActEngineSet,
        "tenant.quotas_set" => T::ActQuotasSet,
        "tenant.status_hook_set" => T::ActStatusHookSet,
        "tenant.status_hook_removed" => T::ActStatusHookRemoved,
        "connection.created" => T::ActConnectionCreated,
        "connection.updated" => T::ActConnectionUpdated,
        "connection.deleted" => T::ActConnectionDeleted,
        "connection.authorized" => T::ActConnectionAuthorized,
        "installation.added" => T::ActInstallationAdded,
        "installation.removed" => T::ActInstallationRemoved,
        "events.replayed" => T::ActEventsReplayed,
        "messages.retried" => T::ActMessagesRetried,
        "messages.cancelled" => T::ActMessagesCancelled,
        "admin" => T::WhoAdmin,
        "tenant" => T::WhoTenant,
        "operator" => T::WhoOperator,
        "workspace admin" => T::WhoWorkspaceAdmin,
        "member" => T::WhoMember,
        "api" => T::ViaApi,
        "console" => T::ViaConsole,
        "cli" => T::ViaCli,
        "oauth" => T::ViaOauth,
        "events" => T::ViaEvents,
        _ => return None,
    })
}

pub fn status_badge(status: &str, lang: Lang) -> Markup {
    let text = status_text(status).map_or(status, |t| t.get(lang));
    html! { span class={ "badge " (status) } data-status=(status) { (text) } }
}

/// Unix milliseconds as `2026-11-23 14:05:09 UTC`.
pub fn when(millis: i64) -> String {
    let text = crate::domain::rfc3339(millis);
    match text.split_once('T') {
        Some((date, time)) => {
            let time = time.trim_end_matches('Z');
            let time = time.split('.').next().unwrap_or(time);
            format!("{date} {time} UTC")
        }
        None => text,
    }
}
