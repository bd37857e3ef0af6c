//! A tenant's connections: the list, connecting a bot, a connection's page
//! (URLs, test, authorisation, events, messages, replay), rotation and
//! deletion.

use super::*;
use crate::console::test_message::{self, Shown};

pub async fn connections_page(ctx: Ctx) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let l = ctx.lang;
        let all = ctx.state.store.connections(&t.id).await?;
        let body = html! {
            @let rows = all.iter().map(|c| html! {
                tr {
                    td { a href={ "/console/connections/" (c.id.as_str()) } { (c.bot_id) } }
                    td { code { (c.client_id) } }
                    td { (when(c.created_at)) }
                }
            }).collect();
            (listing(Some("connections"), &[T::BotId.get(l), T::ClientId.get(l), T::Created.get(l)], rows, T::NoConnections.get(l)))
            p {
                a.button #connect href="/console/connections/new" { (T::ConnectNaverWorks.get(l)) }
                " "
                a.button #connect-slack href="/console/connections/new?channel=slack" { (T::ConnectSlack.get(l)) }
            }
        };
        ok(&ctx, layout(&ctx, T::Connections.get(l), body))
    }
    .await;
    finish(&ctx, page)
}

pub async fn deleted_page(ctx: Ctx) -> HttpResponse {
    let page = async {
        tenant(&ctx)?;
        let l = ctx.lang;
        let body = html! {
            (notice(T::Deleted.get(l)))
            p { a href="/console/connections" { (T::Connections.get(l)) } }
        };
        ok(&ctx, layout(&ctx, T::Connections.get(l), body))
    }
    .await;
    finish(&ctx, page)
}

/// The connect form of a channel, empty or with what was typed (never the
/// secrets), below a tile per channel.
fn connect_form(
    ctx: &Ctx,
    channel: Channel,
    user: bool,
    values: &HashMap<String, String>,
    errors: &[FieldError],
    problem: Option<&str>,
) -> Markup {
    let l = ctx.lang;
    let value = |name: &str| match values.get(name) {
        Some(v) => v.clone(),
        None if name == "scope" => "bot".to_owned(),
        None => String::new(),
    };
    let (title, intro) = match channel {
        Channel::NaverWorks => (T::ConnectNaverWorks, T::ConnectIntro),
        Channel::Slack => (T::ConnectSlack, T::SlackIntro),
    };
    let body = html! {
        nav.tiles aria-label=(T::ChooseChannel.get(l)) {
            @for (c, label) in [(Channel::NaverWorks, "NAVER WORKS"), (Channel::Slack, "Slack")] {
                a.tile.selected[c == channel] #{ "tile-" (c.name()) } href={ "/console/connections/new?channel=" (c.name()) }
                    aria-current=[(c == channel).then_some("page")] { (label) }
            }
        }
        @if channel == Channel::NaverWorks {
            // Two ways to connect NAVER WORKS: a service account's JWT, or
            // a member's sign-in (OAuth authorization code).
            nav.ways {
                a #way-service-account href="/console/connections/new?channel=naverworks" aria-current=[(!user).then_some("page")] { (T::ConnectWithServiceAccount.get(l)) }
                " · "
                a #way-sign-in href="/console/connections/new?channel=naverworks&auth=user" aria-current=[user.then_some("page")] { (T::ConnectWithSignIn.get(l)) }
            }
        }
        @if user {
            p { (T::UserModeIntro.get(l)) }
            (copyable("redirect-url", T::NwRedirectUrl.get(l), &oauth::naverworks_redirect_url(&ctx.state), l))
        } @else {
            p { (intro.get(l)) }
        }
        @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
        @if let Some(p) = problem { (alert(p)) }
        form.card #connect-form method="post" action="/console/connections" novalidate {
            (csrf(ctx))
            input type="hidden" name="channel" value=(channel.name());
            @if user { input type="hidden" name="auth_mode" value="user"; }
            (pages::connection_fields(l, pages::fields_of(channel), &value, errors, &|_| None, if user { pages::USER_SKIPS } else { &[] }))
            button #submit-connect type="submit" { (T::Connect.get(l)) }
        }
    };
    layout(ctx, title.get(l), body)
}

/// The channel a form or query names (NAVER WORKS when none).
fn channel_named(value: Option<&str>) -> Channel {
    value
        .and_then(Channel::parse)
        .unwrap_or(Channel::NaverWorks)
}

pub async fn new_connection(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let channel = channel_named(
        req.query_string()
            .split('&')
            .find_map(|p| p.strip_prefix("channel=")),
    );
    let user =
        channel == Channel::NaverWorks && req.query_string().split('&').any(|p| p == "auth=user");
    let page = async {
        tenant(&ctx)?;
        ok(
            &ctx,
            connect_form(&ctx, channel, user, &HashMap::new(), &[], None),
        )
    }
    .await;
    finish(&ctx, page)
}

/// A form value as the API body takes it: absent when empty.
fn json_value(name: &str, value: &str) -> Option<Value> {
    // A list, comma- or space-separated; empty for any address.
    if name == "auth_networks" {
        let networks = value.split([',', ' ']).filter(|n| !n.is_empty());
        return Some(Value::Array(networks.map(Value::from).collect()));
    }
    let value = if name == "private_key" {
        value
    } else {
        value.trim()
    };
    if value.trim().is_empty() {
        return None;
    }
    if name == "rate_limit_per_minute" {
        if let Ok(n) = value.parse::<u64>() {
            return Some(Value::from(n));
        }
    }
    Some(Value::String(value.to_owned()))
}

fn connection_body(
    form: &HashMap<String, String>,
    keep: impl Fn(&str, &str) -> bool,
) -> ConnectionBody {
    let get = |name: &str| {
        form.get(name)
            .filter(|v| keep(name, v.trim()))
            .and_then(|v| json_value(name, v))
    };
    ConnectionBody {
        channel: None,
        auth_mode: get("auth_mode"),
        signing_secret: get("signing_secret"),
        bot_token: get("bot_token"),
        scopes: get("scopes"),
        command_ack_text: get("command_ack_text"),
        bot_id: get("bot_id"),
        client_id: get("client_id"),
        client_secret: get("client_secret"),
        service_account: get("service_account"),
        private_key: get("private_key"),
        bot_secret: get("bot_secret"),
        auth_header: get("auth_header"),
        auth_networks: get("auth_networks"),
        scope: get("scope"),
        rate_limit_per_minute: get("rate_limit_per_minute"),
    }
}

/// What was typed, minus the secrets, to show the form again.
fn typed(form: &HashMap<String, String>, channel: Channel) -> HashMap<String, String> {
    pages::fields_of(channel)
        .iter()
        .filter(|(_, _, _, kind)| matches!(kind, pages::Kind::Text | pages::Kind::Number))
        .filter_map(|(name, ..)| form.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect()
}

pub async fn create_connection(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let channel = channel_named(form.get("channel").map(String::as_str));
        let mut body = connection_body(&form, |_, _| true);
        body.channel = Some(Value::String(channel.name().to_owned()));
        let user = body.auth_mode.as_ref().and_then(Value::as_str) == Some("user");
        match connections::create(&ctx.state, t, &body, &ctx.actor()).await {
            Ok(record) => {
                Ok(ctx.redirect(&format!("/console/connections/{}?created=1", record.id)))
            }
            Err(ApiError::Validation(errors)) => Ok(html_page(
                &ctx,
                StatusCode::UNPROCESSABLE_ENTITY,
                connect_form(&ctx, channel, user, &typed(&form, channel), &errors, None),
            )),
            Err(ApiError::Conflict(message)) => Ok(html_page(
                &ctx,
                StatusCode::CONFLICT,
                connect_form(
                    &ctx,
                    channel,
                    user,
                    &typed(&form, channel),
                    &[],
                    Some(&conflict_text(&message, ctx.lang)),
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

fn conflict_text(message: &str, lang: Lang) -> String {
    match lang {
        Lang::En => format!("{message}."),
        Lang::Ko => "이 테넌트에는 이미 같은 Bot ID의 연결이 있습니다.".to_owned(),
    }
}

/// The connection page: URLs, credentials (masked), token, test results,
/// recent events and messages, replay, rotation and delete.
/// The connection's page with `test_message` as its "send a test message"
/// section (a refused form), answered 422.
pub async fn connection_view_with(ctx: &Ctx, c: &ConnectionRecord, test_message: Shown) -> Page {
    let mut page = connection_view(ctx, c, None, None, test_message).await?;
    *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(page)
}

async fn connection_view(
    ctx: &Ctx,
    c: &ConnectionRecord,
    checks: Option<&[Check]>,
    flash: Option<Markup>,
    test_message: Shown,
) -> Page {
    let l = ctx.lang;
    let state = &ctx.state;
    let view = connections::view(state, c).await?;
    let events = state.store.events(&c.tenant_id, &c.id, None, 20).await?;
    // Dead events and callbacks refused over a quota: the replayable ones.
    let mut dead = state
        .store
        .events(&c.tenant_id, &c.id, Some("dead"), 100)
        .await?;
    dead.extend(
        state
            .store
            .events(&c.tenant_id, &c.id, Some("refused"), 100)
            .await?,
    );
    let messages = state.store.recent_messages(&c.tenant_id, &c.id, 20).await?;
    let failed = state.store.count_messages(&c.id, "failed").await?;
    let queued = state.store.count_messages(&c.id, "pending").await?;
    // Read after the messages: a message is delivered only with a token
    // stored before it, so the page never shows a delivery beside "no token"
    // (read first, a token stored and a message delivered between the two
    // reads did; the browser test caught it under load).
    let token = state.store.token_meta(&c.id).await?;
    let now = now_millis();
    let id = c.id.as_str();
    let slack = Channel::of(c) == Channel::Slack;
    let installations = if slack {
        state.store.installations(&c.id).await?
    } else {
        Vec::new()
    };
    // Who read the bot's token: shown where there are auth URLs to read.
    let reads = match view.auth_url {
        Some(_) => Some(state.store.audit(&c.tenant_id, &c.id, 20).await?),
        None => None,
    };
    let playground = crate::console::playground::emulator_of(state, c).is_some();
    let body = html! {
        @if let Some(f) = flash { (f) }
        @if playground {
            p.actions { a.button #open-playground href={ "/console/connections/" (id) "/playground" } { (T::OpenPlayground.get(l)) } }
        }
        section #urls {
            h2 { (T::Urls.get(l)) }
            @let urls = [
                ("webhook-url", T::WebhookUrl, &view.webhook_url),
                ("auth-url", T::AuthUrl, &view.auth_url),
                ("auth-refresh-url", T::AuthRefreshUrl, &view.auth_refresh_url),
                ("events-url", T::EventsUrl, &view.events_url),
                ("commands-url", T::CommandsUrl, &view.commands_url),
                ("interactions-url", T::InteractionsUrl, &view.interactions_url),
                ("install-url", T::InstallUrl, &view.install_url),
                ("authorize-url", T::AuthorizeUrl, &view.authorize_url),
                ("oauth-redirect-url", if slack { T::OAuthRedirectUrl } else { T::NwRedirectUrl }, &view.oauth_redirect_url),
            ];
            @for (id, label, url) in urls {
                @if let Some(url) = url { (copyable(id, label.get(l), url, l)) }
            }
            @match Channel::of(c) {
                Channel::NaverWorks => small.hint { (T::UrlsHint.get(l)) },
                Channel::Slack => {
                    small.hint { (T::SlackUrlsHint.get(l)) }
                    @if view.auth_url.is_some() { " " small.hint #auth-urls-hint { (T::SlackAuthUrlsHint.get(l)) } }
                },
            }
        }
        section #test {
            h2 { (T::TestConnection.get(l)) }
            p { (if slack { T::SlackTestIntro } else { T::TestIntro }.get(l)) }
            @if let Some(checks) = checks {
                @let passed = checks.iter().all(|c| c.ok);
                div #test-result data-ok=(passed) {
                    @if passed { (notice(T::TestPassed.get(l))) } @else { (alert(T::TestFailed.get(l))) }
                    ul.checks {
                        @for check in checks {
                            li class=(if check.ok { "ok" } else { "failed" }) data-check=(check.name) {
                                strong { (pages::check_title(check.name).get(l)) ": " }
                                (pages::check_sentence(check, Channel::of(c), l))
                            }
                        }
                    }
                }
            }
            form.inline method="post" action={ "/console/connections/" (id) "/test" } {
                (csrf(ctx))
                button #test-connection type="submit" { (T::TestConnection.get(l)) }
            }
        }
        @if let Some(authorization) = view.authorization {
            section #authorization data-state=(authorization) {
                h2 { (T::Authorization.get(l)) }
                @match authorization {
                    "authorized" => p { (T::Authorized.get(l)) },
                    "needs_reauthorization" => (alert(T::NeedsReauthorization.get(l))),
                    _ => p { (T::NotAuthorized.get(l)) },
                }
                @if let Some(url) = &view.authorize_url {
                    p.actions {
                        a.button #authorize href=(url) {
                            (if authorization == "not_authorized" { T::Authorize } else { T::Reauthorize }.get(l))
                        }
                    }
                }
            }
        }
        @if !slack { section #token {
            h2 { (T::Token.get(l)) }
            @match token.as_ref().and_then(|t| t.expires_at.map(|e| (e, t.issued_at))) {
                None => p #token-state data-state="none" { (T::NoToken.get(l)) },
                Some((expires, issued)) => dl #token-state data-state=(if expires > now { "valid" } else { "expired" }) {
                    dt { (if expires > now { T::TokenValid.get(l) } else { T::TokenExpired.get(l) }) }
                    dd { (when(expires)) }
                    @if let Some(issued) = issued {
                        dt { (T::LastRefresh.get(l)) }
                        dd { (when(issued)) }
                    }
                }
            }
        } }
        @if slack && !c.client_id.is_empty() {
            section #installations {
                h2 { (T::Installations.get(l)) }
                @let rows = installations.iter().map(|i| html! {
                    tr data-team=(i.team_id) data-status=(i.status) {
                        td { (i.team_name) " " code { (i.team_id) } }
                        td {
                            @if i.status == "active" {
                                span.status { (T::StatusActive.get(l)) }
                            } @else {
                                span.status.failed { (T::NeedsReinstall.get(l)) }
                            }
                        }
                        td { code { (i.scopes) } }
                        td { (when(i.installed_at)) }
                        td {
                            // A second step without script: the confirmation opens in place.
                            details.remove-installation {
                                summary { (T::RemoveInstallation.get(l)) }
                                p { (T::RemoveInstallationConfirm.get(l)) }
                                form.inline method="post" action={ "/console/connections/" (id) "/installations/" (i.team_id) "/remove" } {
                                    (csrf(ctx))
                                    button.danger type="submit" { (T::RemoveInstallationYes.get(l)) }
                                }
                            }
                        }
                    }
                }).collect();
                (listing(None, &[T::Workspace.get(l), T::Status.get(l), T::Scopes.get(l), T::InstalledAt.get(l), ""], rows, T::NoInstallations.get(l)))
                small.hint { (T::InstallHint.get(l)) }
            }
        }
        @if let Some(reads) = &reads {
            section #token-reads {
                h2 { (T::TokenReads.get(l)) }
                @let rows = reads.iter().map(|e| html! {
                    tr.token-read data-outcome=(e.outcome) {
                        td { (when(e.at)) }
                        td { (if e.action == "refresh" { T::ActionRefresh } else { T::ActionRead }.get(l)) }
                        td {
                            @if e.outcome == "ok" {
                                span.status { (e.outcome) }
                            } @else {
                                span.status.failed { (e.outcome) }
                            }
                        }
                        td { code { (e.client_addr) } }
                    }
                }).collect();
                (listing(None, &[T::ReadAt.get(l), T::ReadAction.get(l), T::ReadOutcome.get(l), T::ReadAddress.get(l)], rows, T::NoTokenReads.get(l)))
                small.hint { (T::TokenReadsHint.get(l)) }
            }
        }
        section #events {
            h2 { (T::RecentEvents.get(l)) }
            @if !dead.is_empty() {
                form.inline method="post" action={ "/console/connections/" (id) "/replay" } {
                    (csrf(ctx))
                    button #replay-all type="submit" { (T::ReplayAll.get(l)) " (" (dead.len()) ")" }
                }
            }
            // The recent events, then the dead or refused ones older than those.
            @let listed = events.iter().chain(dead.iter().filter(|d| !events.iter().any(|e| e.id == d.id)));
            @let rows = listed.map(|e| html! {
                tr.event data-event=(e.id) {
                    td { (when(e.received_at)) }
                    td { (e.event_type) }
                    td { code { (e.conversation) } }
                    td { (status_badge(&e.status, l)) }
                    td { (e.attempts) }
                    td.error-text { (e.last_error.as_deref().unwrap_or("")) }
                    td {
                        @if e.status == "dead" || e.status == "refused" {
                            form.inline method="post" action={ "/console/connections/" (id) "/events/" (e.id) "/replay" } {
                                (csrf(ctx))
                                button.replay type="submit" { (T::Replay.get(l)) }
                            }
                        }
                    }
                }
            }).collect();
            (listing(None, &[T::Received.get(l), T::Type.get(l), T::Conversation.get(l), T::Status.get(l), T::Attempts.get(l), T::LastError.get(l), ""], rows, T::NoEvents.get(l)))
        }
        (test_message::section(ctx, c, &installations, &test_message))
        section #messages {
            h2 { (T::RecentMessages.get(l)) }
            @if failed > 0 {
                form.inline method="post" action={ "/console/connections/" (id) "/messages/retry" } {
                    (csrf(ctx))
                    button #resend-all type="submit" { (T::ResendAll.get(l)) " (" (failed) ")" }
                }
            }
            @if queued > 0 {
                form.inline method="post" action={ "/console/connections/" (id) "/messages/cancel" } {
                    (csrf(ctx))
                    button.danger #cancel-all type="submit" { (T::CancelAll.get(l)) " (" (queued) ")" }
                }
            }
            @let rows = messages.iter().map(|m| html! {
                tr.message data-message=(m.id) {
                    td { (when(m.created_at)) }
                    td { code { (m.target_kind) ":" (m.target_id) } }
                    td { (status_badge(&m.status, l)) }
                    td { (m.attempts) }
                    td.error-text { (m.last_error.as_deref().unwrap_or("")) }
                    td {
                        @if m.status == "failed" {
                            form.inline method="post" action={ "/console/connections/" (id) "/messages/" (m.id) "/retry" } {
                                (csrf(ctx))
                                button.resend type="submit" { (T::Resend.get(l)) }
                            }
                        }
                        @if m.status == "pending" {
                            form.inline method="post" action={ "/console/connections/" (id) "/messages/" (m.id) "/cancel" } {
                                (csrf(ctx))
                                button.cancel type="submit" { (T::Cancel.get(l)) }
                            }
                        }
                    }
                }
            }).collect();
            (listing(None, &[T::Created.get(l), T::Target.get(l), T::Status.get(l), T::Attempts.get(l), T::LastError.get(l), ""], rows, T::NoMessages.get(l)))
        }
        section #credentials {
            h2 { (T::Details.get(l)) }
            dl {
                @let masked = |v: &Option<Option<String>>| v.clone().flatten().unwrap_or_default();
                @if slack {
                    @if let Some(w) = &view.workspace {
                        dt { (T::Workspace.get(l)) } dd { (w.team) " " code { (w.team_id) } }
                    }
                    dt { (T::SigningSecret.get(l)) } dd { code { (masked(&view.signing_secret)) } }
                    @if view.bot_token.is_some() { dt { (T::BotToken.get(l)) } dd { code { (masked(&view.bot_token)) } } }
                    @if !c.client_id.is_empty() {
                        dt { (T::ClientId.get(l)) } dd { code { (c.client_id) } }
                        dt { (T::ClientSecret.get(l)) } dd { code { (masked(&view.client_secret)) } }
                    }
                    @if let Some(ack) = &view.command_ack_text { dt { (T::CommandAck.get(l)) } dd { (ack) } }
                } @else {
                    dt { (T::ClientId.get(l)) } dd { code { (c.client_id) } }
                    dt { (T::ClientSecret.get(l)) } dd { code { (masked(&view.client_secret)) } }
                    @if view.authorization.is_some() {
                        dt { (T::AuthMode.get(l)) } dd { (T::UserAccount.get(l)) }
                    } @else {
                        dt { (T::ServiceAccount.get(l)) } dd { code { (c.service_account) } }
                        dt { (T::PrivateKey.get(l)) } dd { code { (c.private_key_info) } }
                    }
                    dt { (T::BotSecret.get(l)) } dd { code { (masked(&view.bot_secret)) } }
                }
                @if let Some(h) = view.auth_header { dt { (T::AuthHeader.get(l)) } dd { code { (h) } } }
                @if !c.auth_networks.is_empty() { dt { (T::AuthNetworks.get(l)) } dd #auth-networks { code { (networks_text(c)) } } }
                dt { (T::Scopes.get(l)) } dd { code { (c.scope) } }
                dt { (T::RateLimit.get(l)) } dd { (c.rate_limit_per_minute) }
            }
            p.actions {
                a.button #rotate href={ "/console/connections/" (id) "/rotate" } { (T::Rotate.get(l)) }
                a.button #connection-activity href={ "/console/activity?connection=" (id) } { (T::Activity.get(l)) }
                a.button.danger #delete href={ "/console/connections/" (id) "/delete" } { (T::Delete.get(l)) }
            }
        }
    };
    ok(
        ctx,
        layout(ctx, &format!("{} {}", T::BotId.get(l), c.bot_id), body),
    )
}

fn created_steps(l: Lang, c: &ConnectionRecord) -> Markup {
    let user = AuthMode::of_details(&c.details) == AuthMode::User;
    let (intro, steps): (T, &[T]) = match Channel::of(c) {
        Channel::NaverWorks if user => (
            T::Connected,
            &[T::StepAuthorize, T::StepCallback, T::StepEvents, T::StepAdd],
        ),
        Channel::NaverWorks => (T::Connected, &[T::StepCallback, T::StepEvents, T::StepAdd]),
        Channel::Slack => (
            T::SlackConnected,
            &[
                T::SlackStepEvents,
                T::SlackStepCommands,
                T::SlackStepInteractivity,
            ],
        ),
    };
    html! {
        div.notice #next-steps role="status" {
            p { strong { (intro.get(l)) } }
            ol {
                @for step in steps { li { (step.get(l)) } }
            }
        }
    }
}

pub async fn connection_page(ctx: Ctx, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let c = connection(&ctx, &path).await?;
        let query = req.query_string();
        let flash = if query.contains("created=1") {
            Some(created_steps(ctx.lang, &c))
        } else if query.contains("saved=1") {
            Some(notice(T::Saved.get(ctx.lang)))
        } else if let Some(team) = query
            .split('&')
            .find_map(|p| crate::channels::slack::team_id(p.strip_prefix("removed=")?))
        {
            Some(notice(&format!(
                "{} {team}",
                T::InstallationRemoved.get(ctx.lang)
            )))
        } else {
            // How many a repair changed (`?replayed=2`).
            [Repair::Replay, Repair::Retry, Repair::Cancel]
                .into_iter()
                .find_map(|r| {
                    let n = query
                        .split('&')
                        .find_map(|p| p.strip_prefix(r.param())?.strip_prefix('='))?;
                    let n: u64 = n.parse().unwrap_or(0);
                    Some(notice(&format!("{} {n}", r.notice().get(ctx.lang))))
                })
        };
        let sent = match query.split('&').find_map(|p| p.strip_prefix("sent=")) {
            Some(id) => ctx.state.store.message(&c.id, id).await?,
            None => None,
        };
        let test_message = sent.map_or(Shown::Form, |m| Shown::Sent(Box::new(m)));
        connection_view(&ctx, &c, None, flash, test_message).await
    }
    .await;
    finish(&ctx, page)
}

pub async fn test_connection(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, &path).await?;
        let checks = run_checks(&ctx.state, &c).await;
        connection_view(&ctx, &c, Some(&checks), None, Shown::Form).await
    }
    .await;
    finish(&ctx, page)
}

/// Removes a Slack workspace's installation and its tokens (the API's
/// `DELETE …/installations/{team}`), then shows the page with a notice.
pub async fn remove_installation(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    form: Form,
) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, &path.0).await?;
        let team = path.1.as_str();
        slack::remove_installation(&ctx.state, &c, team, &ctx.actor()).await?;
        Ok(ctx.redirect(&format!("/console/connections/{}?removed={team}", c.id)))
    }
    .await;
    finish(&ctx, page)
}

/// A repair a connection page's buttons make to its events or messages;
/// each the same as its API route.
#[derive(Clone, Copy)]
enum Repair {
    /// Dead and refused events back in the queue (`POST …/events/replay`).
    Replay,
    /// Failed messages sent again (`POST …/messages/retry`).
    Retry,
    /// Queued messages cancelled (`POST …/messages/cancel`).
    Cancel,
}

impl Repair {
    /// The page's query parameter that shows how many were repaired.
    fn param(self) -> &'static str {
        match self {
            Repair::Replay => "replayed",
            Repair::Retry => "resent",
            Repair::Cancel => "cancelled",
        }
    }

    fn notice(self) -> T {
        match self {
            Repair::Replay => T::Replayed,
            Repair::Retry => T::Resent,
            Repair::Cancel => T::CancelledCount,
        }
    }
}

/// Runs `what` on the path's connection, for every item it applies to or
/// for `item` alone, then shows the page saying how many.
async fn repair(
    ctx: Ctx,
    connection: &str,
    item: Option<&str>,
    form: Form,
    what: Repair,
) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, connection).await?;
        let (state, actor) = (&ctx.state, ctx.actor());
        let n = match what {
            Repair::Replay => events::replay(state, &c, item, &actor).await?,
            Repair::Retry => messages::retry(state, &c, item, &actor)
                .await?
                .messages
                .len() as u64,
            Repair::Cancel => messages::cancel(state, &c, item, &actor).await?.0,
        };
        Ok(ctx.redirect(&format!(
            "/console/connections/{}?{}={n}",
            c.id,
            what.param()
        )))
    }
    .await;
    finish(&ctx, page)
}

pub async fn replay_all(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    repair(ctx, &path, None, form, Repair::Replay).await
}

pub async fn replay_one(ctx: Ctx, path: web::Path<(String, String)>, form: Form) -> HttpResponse {
    repair(ctx, &path.0, Some(&path.1), form, Repair::Replay).await
}

pub async fn retry_all(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    repair(ctx, &path, None, form, Repair::Retry).await
}

pub async fn retry_one(ctx: Ctx, path: web::Path<(String, String)>, form: Form) -> HttpResponse {
    repair(ctx, &path.0, Some(&path.1), form, Repair::Retry).await
}

pub async fn cancel_all(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    repair(ctx, &path, None, form, Repair::Cancel).await
}

pub async fn cancel_one(ctx: Ctx, path: web::Path<(String, String)>, form: Form) -> HttpResponse {
    repair(ctx, &path.0, Some(&path.1), form, Repair::Cancel).await
}

/// A connection's auth networks as the pages show them (stored
/// comma-separated).
fn networks_text(c: &ConnectionRecord) -> String {
    c.auth_networks.replace(',', ", ")
}

fn rotate_form(
    ctx: &Ctx,
    c: &ConnectionRecord,
    view: &ConnectionView,
    values: &HashMap<String, String>,
    errors: &[FieldError],
) -> Markup {
    let l = ctx.lang;
    let value = |name: &str| match values.get(name) {
        Some(v) => v.clone(),
        None => match name {
            "client_id" => c.client_id.clone(),
            "service_account" => c.service_account.clone(),
            "scope" | "scopes" => c.scope.clone(),
            "command_ack_text" => view.command_ack_text.clone().unwrap_or_default(),
            "rate_limit_per_minute" => c.rate_limit_per_minute.to_string(),
            "auth_networks" => networks_text(c),
            _ => String::new(),
        },
    };
    let current = |name: &str| match name {
        "client_secret" => view.client_secret.clone().flatten(),
        "bot_secret" => view.bot_secret.clone().flatten(),
        "signing_secret" => view.signing_secret.clone().flatten(),
        "bot_token" => view.bot_token.clone().flatten(),
        "private_key" => Some(c.private_key_info.clone()),
        "auth_header" => view.auth_header.map(str::to_owned),
        _ => None,
    };
    let body = html! {
        p { (T::RotateIntro.get(l)) }
        @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
        form.card #rotate-form method="post" action={ "/console/connections/" (c.id.as_str()) "/rotate" } novalidate {
            (csrf(ctx))
            @let skip: &[&str] = if AuthMode::of_details(&c.details) == AuthMode::User { &["bot_id", "service_account", "private_key"] } else { &["bot_id"] };
            (pages::connection_fields(l, pages::fields_of(Channel::of(c)), &value, errors, &current, skip))
            button #submit-rotate type="submit" { (T::Save.get(l)) }
            " "
            a href={ "/console/connections/" (c.id.as_str()) } { (T::Cancel.get(l)) }
        }
    };
    layout(
        ctx,
        &format!("{} · {} {}", T::Rotate.get(l), T::BotId.get(l), c.bot_id),
        body,
    )
}

pub async fn rotate_page(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let c = connection(&ctx, &path).await?;
        let view = connections::view(&ctx.state, &c).await?;
        ok(&ctx, rotate_form(&ctx, &c, &view, &HashMap::new(), &[]))
    }
    .await;
    finish(&ctx, page)
}

pub async fn rotate(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, &path).await?;
        // Unchanged plain fields are left out, so that saving the form as
        // shown does not drop the token for nothing.
        let rate = c.rate_limit_per_minute.to_string();
        let ack = crate::channels::slack::Details::of(&c)
            .command_ack_text
            .unwrap_or_default();
        let networks = networks_text(&c);
        let body = connection_body(&form, |name, value| match name {
            "bot_id" => false,
            "client_id" => value != c.client_id,
            "service_account" => value != c.service_account,
            "scope" | "scopes" => value != c.scope,
            "command_ack_text" => value != ack,
            "rate_limit_per_minute" => value != rate,
            // Shown filled in: sent when changed, emptied to allow any address.
            "auth_networks" => value != networks,
            _ => true,
        });
        match connections::update(&ctx.state, &c, &body, &ctx.actor()).await {
            Ok(_) => Ok(ctx.redirect(&format!("/console/connections/{}?saved=1", c.id))),
            Err(ApiError::Validation(errors)) => {
                let view = connections::view(&ctx.state, &c).await?;
                Ok(html_page(
                    &ctx,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    rotate_form(&ctx, &c, &view, &typed(&form, Channel::of(&c)), &errors),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

pub async fn delete_page(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let c = connection(&ctx, &path).await?;
        let l = ctx.lang;
        let body = html! {
            (alert(T::DeleteConfirm.get(l)))
            form.inline method="post" action={ "/console/connections/" (c.id.as_str()) "/delete" } {
                (csrf(&ctx))
                button.danger #confirm-delete type="submit" { (T::DeleteYes.get(l)) }
            }
            " "
            a href={ "/console/connections/" (c.id.as_str()) } { (T::Cancel.get(l)) }
        };
        ok(
            &ctx,
            layout(
                &ctx,
                &format!("{} · {} {}", T::Delete.get(l), T::BotId.get(l), c.bot_id),
                body,
            ),
        )
    }
    .await;
    finish(&ctx, page)
}

pub async fn delete(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, &path).await?;
        connections::delete(&ctx.state, &c, &ctx.actor()).await?;
        Ok(ctx.redirect("/console/connections/deleted"))
    }
    .await;
    finish(&ctx, page)
}
