//! The console: a real headless Chromium signs in, connects a bot with
//! emulator-generated credentials, tests it, sees events and echo replies,
//! replays a dead event and signs out; and plain HTTP checks that nothing
//! changes without a session or without the form's CSRF token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use botgate::emulator::EmulatorConfig;

use crate::both_backends;
use crate::emulator::{spawn_emulator, Emu};
use crate::helpers::*;
use crate::webdriver::{Browser, Driver};

/// Where the test run leaves its screenshots (linked from the README).
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
}

async fn console_app(backend: Backend, emu: &Emu, public_url: &str) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            extra: format!(
                "naverworks_auth_url = \"{0}/oauth2/v2.0\"\nnaverworks_api_url = \"{0}/v1.0\"\n\
                 slack_api_url = \"{0}/slack/api\"\nslack_authorize_url = \"{0}/slack/oauth/v2/authorize\"\nretry_base_ms = 50\nengine_max_attempts = 2\nengine_timeout_seconds = 2",
                emu.url
            ),
            public_url: Some(public_url.to_owned()),
            ..Options::default()
        },
    )
    .await
}

/// Waits until `check` holds for the page at `url`, reloading it.
async fn wait_for_page(browser: &Browser, url: &str, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(url).await;
        let source = browser.source().await;
        if check(&source) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never showed on {url}:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_for_reply(emu: &Emu, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let messages = emu.messages().await;
        if messages
            .iter()
            .any(|m| m["content"]["text"].as_str() == Some(text))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no echo of {text:?}: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn callback(emu: &Emu, bot_id: &str, webhook: &str, user: &str, text: &str) {
    let res: Value = emu
        .client
        .post(format!("{}/emulator/callbacks", emu.url))
        .json(&json!({"bot_id": bot_id, "webhook_url": webhook, "type": "message", "user_id": user, "text": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["status"], 200, "botgate answered the callback: {res}");
}

/// Fills the connect form; `key` goes in the text area unless a file is given.
async fn fill_connect_form(
    browser: &Browser,
    creds: &Value,
    key: Option<&str>,
    key_file: Option<&Path>,
) {
    let s = |k: &str| creds[k].as_str().unwrap().to_owned();
    browser.fill("#bot_id", &s("bot_id")).await;
    browser.fill("#client_id", &s("client_id")).await;
    browser.fill("#client_secret", &s("client_secret")).await;
    browser
        .fill("#service_account", &s("service_account"))
        .await;
    if let Some(key) = key {
        // Typing 1.7 kB key by key is slow; set it like a paste would.
        let area = browser.find("#private_key").await;
        browser
            .execute(
                "arguments[0].value = arguments[1];",
                json!([{"element-6066-11e4-a52e-4f735466cecf": area_id(&area)}, key]),
            )
            .await;
    }
    if let Some(file) = key_file {
        browser
            .type_into("#private_key_file", &file.display().to_string())
            .await;
        // The page's script reads the file into the text area.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !browser
            .value("#private_key")
            .await
            .contains("BEGIN PRIVATE KEY")
        {
            assert!(
                Instant::now() < deadline,
                "the key file was not read into the form"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    browser.fill("#bot_secret", &s("bot_secret")).await;
    browser
        .fill("#auth_header", "internal-services-secret-value")
        .await;
    browser.fill("#scope", "bot bot.read").await;
    browser.fill("#rate_limit_per_minute", "6000").await;
}

/// A new app at the emulator: the values its Developer Console would show.
async fn generated_app(emu: &Emu) -> Value {
    emu.client
        .post(format!("{}/emulator/apps/generate", emu.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn area_id(e: &crate::webdriver::Element) -> String {
    e.id().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_connects_a_bot_in_a_real_browser() {
    let emu = spawn_emulator(EmulatorConfig {
        rate_limit_per_minute: 1_000_000,
        ..EmulatorConfig::default()
    })
    .await;
    // A public URL other than the listener, as behind a proxy: the page shows
    // it, and the test maps it back to the listener.
    let public = "http://botgate.example.com/base";
    let app = console_app(Backend::Sqlite, &emu, public).await;
    let tenant = app.create_tenant("Browser test").await;
    let creds = generated_app(&emu).await;
    let bot_id = creds["bot_id"].as_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let key_file = work.path().join("private_20261123.key");
    std::fs::write(&key_file, creds["private_key"].as_str().unwrap()).unwrap();

    let driver = Driver::start().await;
    let browser = driver.browser("en-US", work.path()).await;
    let console = app.url("/console");

    // Not signed in: the console sends the browser to sign in.
    browser.goto(&console).await;
    assert!(browser.url().await.ends_with("/console/sign-in"));
    browser.fill("#key", "bgk_not-a-real-key").await;
    browser.click("#sign-in").await;
    assert!(browser.text(".alert").await.contains("not valid"));
    browser.fill("#key", &tenant.api_key).await;
    browser.click("#sign-in").await;
    browser.find("#connect").await;
    assert!(browser.url().await.ends_with("/console/connections"));
    let session = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "botgate_session")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");

    // A mangled private key: the inline error, what was typed kept, the
    // secrets not sent back.
    browser.click("#connect").await;
    let key = creds["private_key"].as_str().unwrap();
    let mangled = format!("{}{}", &key[..400], &key[900..]);
    fill_connect_form(&browser, &creds, Some(&mangled), None).await;
    browser.click("#submit-connect").await;
    let error = browser.text("#private_key-error").await;
    assert!(error.contains("damaged"), "{error}");
    assert_eq!(
        browser.value("#client_id").await,
        creds["client_id"].as_str().unwrap()
    );
    assert_eq!(browser.value("#bot_id").await, bot_id);
    assert_eq!(browser.value("#client_secret").await, "");
    assert_eq!(browser.value("#private_key").await, "");
    assert!(!browser
        .source()
        .await
        .contains(creds["client_secret"].as_str().unwrap()));
    assert_eq!(connections_of(&app, &tenant).await, Vec::<Value>::new());

    // Again with the key file chosen in the form.
    browser.goto(&app.url("/console/connections/new")).await;
    fill_connect_form(&browser, &creds, None, Some(&key_file)).await;
    browser
        .screenshot(&screenshots().join("connect-en.png"))
        .await;
    browser.click("#submit-connect").await;
    assert!(browser.text("#next-steps").await.contains("Callback URL"));
    let webhook = browser.text("#webhook-url").await;
    assert!(
        webhook.starts_with(&format!("{public}/webhooks/naverworks/")),
        "{webhook}"
    );
    assert!(browser
        .text("#auth-refresh-url")
        .await
        .ends_with("/refresh"));
    browser.click("button[data-copy=webhook-url]").await;
    // The label changes once the clipboard call settles (a promise), and
    // goes back after 1.5 s: look for it while it shows.
    let mut label = String::new();
    for _ in 0..25 {
        label = browser.text("button[data-copy=webhook-url]").await;
        if label == "Copied" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(label, "Copied");
    let connection_url = browser.url().await.split('?').next().unwrap().to_owned();

    // Test connection, against the emulator.
    browser.click("#test-connection").await;
    let result = browser.find("#test-result").await;
    assert_eq!(
        browser.attribute(&result, "data-ok").await.as_deref(),
        Some("true"),
        "{}",
        browser.text("#test-result").await
    );
    assert_eq!(browser.find_all("#test-result li.ok").await.len(), 4);
    assert!(browser.text("#test-result").await.contains(&bot_id));

    // Send a test message: refused without text, then delivered, the
    // status updated on the page without a reload.
    browser.fill("#test-target", "user-9").await;
    browser.click("#send-test-message").await;
    assert!(browser.text("#test-text-error").await.contains("required"));
    assert_eq!(browser.value("#test-target").await, "user-9");
    browser.fill("#test-text", "hello from the console").await;
    browser.click("#send-test-message").await;
    let status = browser.find("#test-message-status").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.attribute(&status, "data-status").await.as_deref() != Some("delivered") {
        assert!(
            Instant::now() < deadline,
            "{}",
            browser.text("#test-message-status").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(browser
        .text("#test-message-status .badge")
        .await
        .contains("delivered"));
    wait_for_reply(&emu, "hello from the console").await;
    let sent = emu.messages().await;
    let sent = sent
        .iter()
        .find(|m| m["content"]["text"] == "hello from the console")
        .unwrap();
    assert_eq!(sent["user_id"], "user-9", "{sent}");

    // Test messages to a user NAVER WORKS does not know fail; once it
    // does, "Send again" sends one, "Send every failed message again" the
    // other.
    emu.faults(json!({"unknown_users": ["ghost"]})).await;
    for text in ["to a ghost", "to a ghost again"] {
        browser.goto(&connection_url).await;
        browser.fill("#test-target", "ghost").await;
        browser.fill("#test-text", text).await;
        browser.click("#send-test-message").await;
        browser.find("#test-message-status").await;
    }
    wait_for_page(&browser, &connection_url, "two failed messages", |s| {
        s.matches("data-status=\"failed\"").count() == 2
    })
    .await;
    assert!(browser.text("#resend-all").await.ends_with("(2)"));
    emu.faults(json!({})).await;
    browser.click("button.resend").await;
    assert!(browser.text(".notice").await.ends_with(" 1"));
    browser.goto(&connection_url).await;
    assert!(browser.text("#resend-all").await.ends_with("(1)"));
    browser.click("#resend-all").await;
    assert!(browser.text(".notice").await.ends_with(" 1"));
    wait_for_reply(&emu, "to a ghost").await;
    wait_for_reply(&emu, "to a ghost again").await;
    wait_for_page(&browser, &connection_url, "the messages sent again", |s| {
        !s.contains("data-status=\"failed\"") && !s.contains("id=\"resend-all\"")
    })
    .await;
    // The tenant's activity names what the console did, and who.
    browser.goto(&app.url("/console/activity")).await;
    let activity = browser.text("#activity").await;
    for what in ["messages.retried", "connection.created", "tenant · console"] {
        assert!(activity.contains(what), "{what} missing: {activity}");
    }
    assert_eq!(
        browser
            .find_all("tr.activity[data-action='messages.retried']")
            .await
            .len(),
        2
    );
    assert!(activity.contains("tenant.created"), "{activity}");
    // From the connection's page: its entries alone.
    browser.goto(&connection_url).await;
    browser.click("#connection-activity").await;
    let mine = browser.text("#activity").await;
    assert!(
        mine.contains("messages.retried") && !mine.contains("tenant.created"),
        "{mine}"
    );

    // A user writes to the bot: the event on the page, the echo at NAVER WORKS.
    let webhook_here = webhook.replace(public, &app.address);
    callback(
        &emu,
        &bot_id,
        &webhook_here,
        "user-1",
        "hello from the browser",
    )
    .await;
    wait_for_page(&browser, &connection_url, "the done event", |s| {
        s.contains("data-status=\"done\"") && s.contains("data-status=\"delivered\"")
    })
    .await;
    wait_for_reply(&emu, "hello from the browser").await;
    assert_eq!(
        browser
            .attribute(&browser.find("#token-state").await, "data-state")
            .await
            .as_deref(),
        Some("valid")
    );

    // An engine that is down: the event dies; back to echo and replay it.
    browser.goto(&app.url("/console/engine")).await;
    browser.click("#kind-http").await;
    browser.fill("#url", "http://127.0.0.1:9/engine").await;
    browser.fill("#secret", "short").await;
    browser.click("#save-engine").await;
    assert!(browser.text("#secret-error").await.contains("16 to 512"));
    browser.fill("#secret", "an-engine-signing-secret").await;
    browser.click("#save-engine").await;
    browser.find(".notice").await;
    callback(
        &emu,
        &bot_id,
        &webhook_here,
        "user-2",
        "this one dies first",
    )
    .await;
    callback(&emu, &bot_id, &webhook_here, "user-3", "this one dies too").await;
    wait_for_page(&browser, &connection_url, "two dead events", |s| {
        s.matches("data-status=\"dead\"").count() == 2
    })
    .await;
    browser.goto(&app.url("/console/engine")).await;
    browser.click("#kind-echo").await;
    browser.click("#save-engine").await;
    browser.find(".notice").await;
    // The status hook on the same page: its own errors, set, removed.
    browser
        .fill("#status_url", "http://127.0.0.1:9/status")
        .await;
    browser.fill("#status_secret", "short").await;
    browser.click("#save-status-hook").await;
    assert!(browser
        .text("#status_secret-error")
        .await
        .contains("16 to 512"));
    assert!(
        browser.find_all("#secret-error").await.is_empty(),
        "not the engine's"
    );
    browser.fill("#status_secret", "a-status-hook-secret").await;
    browser.click("#save-status-hook").await;
    browser.find("#status-hook .notice").await;
    assert!(browser.text("#status-hook").await.contains("****cret"));
    browser.click("#test-status-hook").await;
    let tested = browser.find("#status-hook-test-result").await;
    assert_eq!(
        browser.attribute(&tested, "data-ok").await.as_deref(),
        Some("false")
    );
    assert!(browser
        .text("#status-hook-test-result")
        .await
        .contains("unreachable"));
    browser.click("#remove-status-hook").await;
    browser.find("#status-hook .notice").await;
    assert!(browser.find_all("#remove-status-hook").await.is_empty());
    // One by its own button, then the rest with "Replay all".
    browser.goto(&connection_url).await;
    browser.click("button.replay").await;
    assert!(browser.text(".notice").await.ends_with(" 1"));
    wait_for_page(&browser, &connection_url, "one dead event left", |s| {
        s.matches("data-status=\"dead\"").count() == 1
    })
    .await;
    browser.click("#replay-all").await;
    assert!(browser.text(".notice").await.ends_with(" 1"));
    wait_for_reply(&emu, "this one dies first").await;
    wait_for_reply(&emu, "this one dies too").await;
    wait_for_page(&browser, &connection_url, "the replayed events done", |s| {
        !s.contains("data-status=\"dead\"") && s.matches("data-status=\"done\"").count() == 3
    })
    .await;
    // An internal service reads the token: the page lists the read.
    let auth_url = browser
        .text("#auth-url")
        .await
        .replace(public, &app.address);
    let res = app
        .client
        .get(&auth_url)
        .header("DANBEE-NAVERWORKS-AUTH", "internal-services-secret-value")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    wait_for_page(&browser, &connection_url, "the token read", |s| {
        s.contains("class=\"token-read\" data-outcome=\"ok\"")
    })
    .await;
    browser.click("#test-connection").await;
    browser.find("#test-result").await;
    browser
        .screenshot(&screenshots().join("connection-en.png"))
        .await;

    // The same pages in Korean, by the switch.
    browser.click("#lang-ko").await;
    assert!(browser.text("h1").await.contains("Bot ID"));
    assert!(browser.text("#urls h2").await.contains("URL"));
    assert!(browser.text("#events h2").await.contains("최근 이벤트"));
    browser.click("#test-connection").await;
    let result = browser.text("#test-result").await;
    assert!(
        result.contains("모든 확인을 통과했습니다") && result.contains("토큰을 발급했습니다"),
        "{result}"
    );
    browser
        .screenshot(&screenshots().join("connection-ko.png"))
        .await;
    // The activity in Korean: actions, actors and ways in translated.
    browser.goto(&app.url("/console/activity")).await;
    let activity = browser.text("#activity").await;
    for said in [
        "메시지 다시 보냄",
        "연결 생성",
        "테넌트 · 콘솔",
        "관리자 · API",
    ] {
        assert!(activity.contains(said), "{said} missing: {activity}");
    }
    browser.goto(&app.url("/console/connections/new")).await;
    assert!(browser
        .text("#connect-form")
        .await
        .contains("Developer Console → Bot"));
    assert!(browser.text("h1").await.contains("NAVER WORKS 연결"));
    browser.fill("#bot_id", "12ab").await;
    browser.click("#submit-connect").await;
    let error = browser.text("#bot_id-error").await;
    assert!(error.contains("숫자"), "{error}");
    browser.goto(&app.url("/console/connections/new")).await;
    fill_connect_form(&browser, &creds, None, Some(&key_file)).await;
    browser
        .screenshot(&screenshots().join("connect-ko.png"))
        .await;
    browser.click("#lang-en").await;

    // Sign out: the session is gone and pages ask to sign in again.
    browser.goto(&connection_url).await;
    browser.click("#sign-out").await;
    assert!(browser.text(".notice").await.contains("signed out"));
    browser.goto(&connection_url).await;
    assert!(browser.url().await.ends_with("/console/sign-in"));
    browser.quit().await;
}

/// The Slack tile in a real browser: the fields with their hints, a wrong
/// token refused inline, the three Request URLs with copy buttons, Test
/// connection (auth.test), an event and its echo on the page, Korean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_connects_a_slack_app_in_a_real_browser() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let public = "http://botgate.example.com/base";
    let app = console_app(Backend::Sqlite, &emu, public).await;
    let tenant = app.create_tenant("Slack browser test").await;
    let slack = crate::slack::new_slack_app(&emu).await;
    let work = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let browser = driver.browser("en-US", work.path()).await;
    browser.goto(&app.url("/console")).await;
    browser.fill("#key", &tenant.api_key).await;
    browser.click("#sign-in").await;
    browser.click("#connect-slack").await;
    assert!(browser.text("h1").await.contains("Connect Slack"));
    let tile = browser.find("#tile-slack").await;
    assert_eq!(
        browser.attribute(&tile, "aria-current").await.as_deref(),
        Some("page")
    );
    assert!(browser
        .text("#connect-form")
        .await
        .contains("Basic Information → App Credentials"));
    // A token Slack refuses: the inline error, nothing stored.
    browser
        .fill("#signing_secret", slack["signing_secret"].as_str().unwrap())
        .await;
    browser
        .fill("#bot_token", "xoxb-0000-not-this-workspace")
        .await;
    browser.click("#submit-connect").await;
    assert!(browser.text("#bot_token-error").await.contains("auth.test"));
    assert_eq!(connections_of(&app, &tenant).await, Vec::<Value>::new());
    browser
        .fill("#signing_secret", slack["signing_secret"].as_str().unwrap())
        .await;
    browser
        .fill("#bot_token", slack["bot_token"].as_str().unwrap())
        .await;
    browser.fill("#command_ack_text", "Drawing…").await;
    browser.click("#submit-connect").await;
    assert!(browser
        .text("#next-steps")
        .await
        .contains("Event Subscriptions"));
    let events_url = browser.text("#events-url").await;
    assert!(
        events_url.starts_with(&format!("{public}/webhooks/slack/"))
            && events_url.ends_with("/events"),
        "{events_url}"
    );
    assert!(browser.text("#commands-url").await.ends_with("/commands"));
    assert!(browser
        .text("#interactions-url")
        .await
        .ends_with("/interactions"));
    assert!(browser.find_all("button[data-copy=events-url]").await.len() == 1);
    assert!(
        browser.find_all("#auth-url").await.is_empty(),
        "no auth header, no token URL"
    );
    assert!(!browser
        .source()
        .await
        .contains(slack["bot_token"].as_str().unwrap()));
    let connection_url = browser.url().await.split('?').next().unwrap().to_owned();
    browser.click("#test-connection").await;
    let result = browser.find("#test-result").await;
    assert_eq!(
        browser.attribute(&result, "data-ok").await.as_deref(),
        Some("true"),
        "{}",
        browser.text("#test-result").await
    );
    assert!(browser
        .text("#test-result")
        .await
        .contains(slack["team_id"].as_str().unwrap()));
    assert!(
        browser.find_all("#token-state").await.is_empty(),
        "no NAVER WORKS token section"
    );
    assert!(browser
        .text("#credentials")
        .await
        .contains("Signing Secret"));
    // A user writes in Slack: the event and the echo on the page.
    let res = emu
        .client
        .post(format!("{}/slack/emulator/deliver", emu.url))
        .json(&json!({"app_id": slack["app_id"], "url": events_url.replace(public, &app.address), "kind": "message", "channel": "C1", "text": "hello from Slack"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    wait_for_page(&browser, &connection_url, "the done event", |s| {
        s.contains("data-status=\"done\"") && s.contains("data-status=\"delivered\"")
    })
    .await;
    browser
        .screenshot(&screenshots().join("slack-connection-en.png"))
        .await;

    // An app for many workspaces: "Add to Slack" through the consent page.
    browser
        .goto(&app.url("/console/connections/new?channel=slack"))
        .await;
    browser
        .fill("#signing_secret", slack["signing_secret"].as_str().unwrap())
        .await;
    browser
        .fill("#client_id", slack["client_id"].as_str().unwrap())
        .await;
    browser
        .fill("#client_secret", slack["client_secret"].as_str().unwrap())
        .await;
    browser
        .fill("#auth_header", "internal-services-slack-0123")
        .await;
    browser.click("#submit-connect").await;
    let install_url = browser.text("#install-url").await;
    // With an auth header: the token URLs, and how to call them.
    let auth_url = browser.text("#auth-url").await;
    assert!(
        auth_url.starts_with(&format!("{public}/auth/slack/")),
        "{auth_url}"
    );
    assert_eq!(
        browser.text("#auth-refresh-url").await,
        format!("{auth_url}/refresh")
    );
    assert!(browser.text("#auth-urls-hint").await.contains("?team="));
    assert!(browser
        .text("#oauth-redirect-url")
        .await
        .ends_with("/oauth/slack/callback"));
    assert!(browser
        .text("#installations")
        .await
        .contains("No workspace"));
    let apps_page = browser.url().await.split('?').next().unwrap().to_owned();
    browser
        .goto(&install_url.replace(public, &app.address))
        .await;
    browser.click("#add-to-slack").await;
    let allow = browser.find("#allow").await;
    let back = browser.attribute(&allow, "href").await.unwrap();
    browser.goto(&back.replace(public, &app.address)).await;
    let installed = browser.text("#installed").await;
    assert!(installed.contains("installed in"), "{installed}");
    browser.goto(&apps_page).await;
    assert_eq!(
        browser
            .find_all("#installations tr[data-status=active]")
            .await
            .len(),
        1
    );
    // Removed from the page: Remove opens the confirmation, which removes it.
    browser
        .click("#installations details.remove-installation summary")
        .await;
    assert!(browser
        .text("#installations details.remove-installation")
        .await
        .contains("until its admin adds the app again"));
    browser
        .click("#installations details.remove-installation button")
        .await;
    assert!(browser
        .text(".notice")
        .await
        .contains("Installation removed"));
    assert!(browser
        .text("#installations")
        .await
        .contains("No workspace"));
    // Korean.
    browser.click("#lang-ko").await;
    assert!(browser.text("#urls").await.contains("api.slack.com/apps"));
    browser
        .goto(&app.url("/console/connections/new?channel=slack"))
        .await;
    assert!(browser.text("h1").await.contains("Slack 연결"));
    assert!(browser.text("#connect-form").await.contains("워크스페이스"));
    browser.click("#lang-en").await;
    browser.quit().await;
}

/// NAVER WORKS sign-in (issue 24) in a real browser: the second way on the
/// connect screen with its Redirect URL to copy, Authorise through the
/// emulator's consent page, the authorised state, an echo sent with the
/// member's token, and the Korean texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_authorises_a_bot_in_a_real_browser() {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let public = "http://botgate.example.com/base";
    let app = console_app(Backend::Sqlite, &emu, public).await;
    let tenant = app.create_tenant("Sign-in browser test").await;
    let creds = generated_app(&emu).await;
    let s = |k: &str| creds[k].as_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let browser = driver.browser("en-US", work.path()).await;
    browser.goto(&app.url("/console")).await;
    browser.fill("#key", &tenant.api_key).await;
    browser.click("#sign-in").await;
    browser.click("#connect").await;
    browser.click("#way-sign-in").await;
    assert_eq!(
        browser
            .attribute(&browser.find("#way-sign-in").await, "aria-current")
            .await
            .as_deref(),
        Some("page")
    );
    let redirect = browser.text("#redirect-url").await;
    assert_eq!(redirect, format!("{public}/oauth/naverworks/callback"));
    assert_eq!(
        browser
            .find_all("button[data-copy=redirect-url]")
            .await
            .len(),
        1
    );
    assert!(browser.find_all("#service_account").await.is_empty());
    assert!(browser.find_all("#private_key").await.is_empty());
    browser.fill("#bot_id", &s("bot_id")).await;
    browser.fill("#client_id", &s("client_id")).await;
    browser.fill("#client_secret", &s("client_secret")).await;
    browser.fill("#bot_secret", &s("bot_secret")).await;
    // A field missing: the inline error, and the form stays the sign-in way.
    browser.click("#submit-connect").await;
    assert!(browser
        .text("#auth_header-error")
        .await
        .contains("required"));
    assert_eq!(browser.text("#redirect-url").await, redirect);
    assert!(browser.find_all("#private_key").await.is_empty());
    assert_eq!(connections_of(&app, &tenant).await, Vec::<Value>::new());
    browser.fill("#client_secret", &s("client_secret")).await;
    browser.fill("#bot_secret", &s("bot_secret")).await;
    browser
        .fill("#auth_header", "internal-services-secret-value")
        .await;
    browser.click("#submit-connect").await;
    assert!(browser.text("#next-steps").await.contains("Authorise"));
    let connection_url = browser.url().await.split('?').next().unwrap().to_owned();
    assert_eq!(
        browser
            .attribute(&browser.find("#authorization").await, "data-state")
            .await
            .as_deref(),
        Some("not_authorized")
    );
    assert!(browser.text("#credentials").await.contains("OAuth"));
    assert_eq!(
        browser.text("#oauth-redirect-url").await,
        redirect,
        "the same Redirect URL on the connection page"
    );
    // Authorise: botgate → the consent page → back to botgate.
    let authorize = browser.find("#authorize").await;
    assert_eq!(browser.text("#authorize").await, "Authorise");
    let href = browser.attribute(&authorize, "href").await.unwrap();
    assert_eq!(href, browser.text("#authorize-url").await);
    browser.goto(&href.replace(public, &app.address)).await;
    let allow = browser.find("#allow").await;
    let back = browser.attribute(&allow, "href").await.unwrap();
    assert!(back.starts_with(&redirect), "{back}");
    browser.goto(&back.replace(public, &app.address)).await;
    let page = browser.source().await;
    assert!(page.contains("authorised"), "{page}");
    browser.goto(&connection_url).await;
    assert_eq!(
        browser
            .attribute(&browser.find("#authorization").await, "data-state")
            .await
            .as_deref(),
        Some("authorized")
    );
    assert_eq!(browser.text("#authorize").await, "Re-authorise");
    // A user writes: the echo goes out with the member's token.
    let webhook = browser.text("#webhook-url").await;
    callback(
        &emu,
        &s("bot_id"),
        &webhook.replace(public, &app.address),
        "user-1",
        "hello with a member's token",
    )
    .await;
    wait_for_reply(&emu, "hello with a member's token").await;
    let stats = &emu.stats().await["apps"][s("client_id")];
    assert_eq!(stats["codes_exchanged"], 1, "{stats}");
    assert_eq!(
        stats["tokens_issued"], 0,
        "no service-account grant: {stats}"
    );
    // Korean.
    browser.click("#lang-ko").await;
    assert!(browser
        .text("#authorization")
        .await
        .contains("권한을 부여했습니다"));
    assert_eq!(browser.text("#authorize").await, "다시 권한 부여하기");
    browser
        .goto(&app.url("/console/connections/new?channel=naverworks&auth=user"))
        .await;
    assert!(browser
        .text("#way-sign-in")
        .await
        .contains("NAVER WORKS 로그인으로 연결"));
    assert!(browser.source().await.contains("Redirect URL을"));
    browser.click("#lang-en").await;
    browser.quit().await;
}

// ---------------------------------------------------------------- over plain HTTP

/// A browser's cookie jar for one console, kept by hand so the test sees
/// every Set-Cookie.
pub struct Visitor<'a> {
    app: &'a TestApp,
    cookies: Vec<(String, String)>,
    last_set_cookies: Vec<String>,
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: Vec::new(),
            last_set_cookies: Vec::new(),
        }
    }

    fn remember(&mut self, headers: &HeaderMap) {
        self.last_set_cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for raw in &self.last_set_cookies {
            let pair = raw.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() && !raw.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let res = self
            .app
            .client
            .get(self.app.url(path))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        self.remember(&headers);
        (status, headers, res.text().await.unwrap())
    }

    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let res = self
            .app
            .client
            .post(self.app.url(path))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        self.remember(&headers);
        (status, headers, res.text().await.unwrap())
    }

    pub async fn sign_in(&mut self, key: &str) {
        let (_, _, page) = self.get("/console/sign-in").await;
        let nonce = hidden(&page, "nonce");
        let (status, headers, _) = self
            .post("/console/sign-in", &[("key", key), ("nonce", &nonce)])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/console");
    }
}

/// The value of a hidden form field in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The tenant's connections, through the API.
async fn connections_of(app: &TestApp, tenant: &Tenant) -> Vec<Value> {
    let path = format!("/api/v1/tenants/{}/connections", tenant.id);
    let (_, body) = app.get(&path, &tenant.api_key).await;
    body["connections"].as_array().unwrap().clone()
}

async fn sessions(app: &TestApp) -> i64 {
    let mut conn = app.db.connect().await;
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

fn connection_form<'f>(creds: &'f [(&'f str, &'f str)]) -> Vec<(&'f str, &'f str)> {
    creds.to_vec()
}

both_backends!(
    nothing_changes_without_a_session_or_csrf_token,
    sessions_end_and_stay_within_their_tenant,
    rotation_and_engine_forms_follow_the_api_rules,
);

async fn nothing_changes_without_a_session_or_csrf_token(backend: Backend) {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let app = console_app(backend, &emu, "https://botgate.example.com/base").await;
    let tenant = app.create_tenant("Forms").await;
    let app1 = crate::emulator::app_config();
    let fields: Vec<(&str, &str)> = vec![
        ("bot_id", &app1.bots[0].bot_id),
        ("client_id", &app1.client_id),
        ("client_secret", &app1.client_secret),
        ("service_account", &app1.service_account),
        ("private_key", PKCS8),
        ("bot_secret", "the-bot-secret"),
        ("auth_header", "internal-services-secret-value"),
        ("scope", "bot"),
    ];
    let before = app.db.snapshot().await;

    // No session: pages and forms send the browser to sign in.
    let mut stranger = Visitor::new(&app);
    for path in [
        "/console/connections",
        "/console/connections/new",
        "/console/engine",
        "/console/tenants",
    ] {
        let (status, headers, _) = stranger.get(path).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(headers[LOCATION], "/console/sign-in", "{path}");
    }
    let (status, headers, _) = stranger
        .post("/console/connections", &connection_form(&fields))
        .await;
    assert_eq!(
        (status, &headers[LOCATION]),
        (StatusCode::SEE_OTHER, &"/console/sign-in".parse().unwrap())
    );
    let (status, _, _) = stranger
        .post("/console/engine", &[("kind", "rasa"), ("url", "http://x")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Signing in needs the sign-in form's own token too (login CSRF).
    let (status, _, _) = stranger
        .post("/console/sign-in", &[("key", &tenant.api_key)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(sessions(&app).await, 0);
    assert_eq!(app.db.snapshot().await, before);

    // Signed in: the session cookie is HttpOnly, SameSite, Secure (https
    // public URL) and scoped to the console.
    let mut builder = Visitor::new(&app);
    builder.sign_in(&tenant.api_key).await;
    let set = builder
        .last_set_cookies
        .iter()
        .find(|c| c.starts_with("botgate_session="))
        .unwrap()
        .clone();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/console"] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    assert_eq!(sessions(&app).await, 1);
    let (status, headers, page) = builder.get("/console/connections/new").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = hidden(&page, "csrf");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // Forms without the token, or with another one, change nothing.
    for token in [
        None,
        Some("0".repeat(64)),
        Some(csrf.replace(|c: char| c != 'a', "a")),
    ] {
        let mut form = connection_form(&fields);
        if let Some(t) = &token {
            form.push(("csrf", t));
        }
        let (status, _, page) = builder.post("/console/connections", &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(page.contains("expired"), "{page}");
        let (status, _, _) = builder
            .post("/console/engine", &[("kind", "rasa"), ("url", "http://x")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = builder.post("/console/sign-out", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.db.snapshot().await, before);
    assert_eq!(sessions(&app).await, 1);

    // With it, the same form connects the bot (so the refusals above were
    // about the token, not the form).
    let mut form = connection_form(&fields);
    form.push(("csrf", &csrf));
    let (status, headers, _) = builder.post("/console/connections", &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[LOCATION].to_str().unwrap().to_owned();
    assert!(location.ends_with("?created=1"), "{location}");
    let listed = connections_of(&app, &tenant).await;
    assert_eq!(listed.len(), 1);
    let connection_id = listed[0]["id"].as_str().unwrap().to_owned();

    // Delete without the token: still there.
    let delete = format!("/console/connections/{connection_id}/delete");
    let (status, _, _) = builder.post(&delete, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, page) = builder.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&app1.bots[0].bot_id));
    // The page never holds a stored secret.
    for secret in [
        app1.client_secret.as_str(),
        "the-bot-secret",
        "internal-services-secret-value",
        "MII",
    ] {
        assert!(!page.contains(secret), "{secret} rendered");
    }
    let (status, _, _) = builder.post(&delete, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = builder.get(&location).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Signed out: the old cookie opens nothing, and its token posts nothing.
    let old = builder.cookie_header();
    let (status, _, _) = builder.post("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(sessions(&app).await, 0);
    let res = app
        .client
        .post(app.url("/console/connections"))
        .header(COOKIE, old)
        .form(&{
            let mut form = connection_form(&fields);
            form.push(("csrf", &csrf));
            form
        })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/sign-in");
    assert_eq!(connections_of(&app, &tenant).await, Vec::<Value>::new());
}

async fn sessions_end_and_stay_within_their_tenant(backend: Backend) {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let app = console_app(backend, &emu, "https://botgate.example.com/base").await;
    let a = app.create_tenant("Tenant A").await;
    let b = app.create_tenant("Tenant B").await;
    let conn = app.create_connection(&a, &connection_body("2000001")).await;
    let conn_page = format!("/console/connections/{}", conn["id"].as_str().unwrap());

    let mut alice = Visitor::new(&app);
    alice.sign_in(&a.api_key).await;
    let (status, _, page) = alice.get(&conn_page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("webhooks/naverworks/"));

    // Another tenant's session: as if the connection did not exist.
    let mut bob = Visitor::new(&app);
    bob.sign_in(&b.api_key).await;
    let (status, _, page) = bob.get(&conn_page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("webhooks/naverworks/"));
    let (status, _, _) = bob.get("/console/tenants").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "tenants see no tenant list");

    // An operator sees every tenant, creates one (its key shown once) and
    // opens another tenant's connections.
    let mut operator = Visitor::new(&app);
    operator.sign_in(&app.admin_token).await;
    let (status, _, page) = operator.get("/console/tenants").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Tenant A") && page.contains("Tenant B"));
    let csrf = hidden(&page, "csrf");
    let (status, _, page) = operator
        .post("/console/tenants", &[("csrf", &csrf), ("name", "Tenant C")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let key_at = page.find("bgk_").expect("the new API key is shown");
    let key: String = page[key_at..].chars().take_while(|c| *c != '<').collect();
    let (status, _, page) = operator
        .post("/console/tenants", &[("csrf", &csrf), ("name", "")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("must not be empty"));
    let mut carol = Visitor::new(&app);
    carol.sign_in(&key).await;
    let (status, _, _) = carol.get("/console/connections").await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, _) = operator
        .post(
            &format!("/console/tenants/{}/open", a.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(
        (status, headers[LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/connections")
    );
    let (status, _, page) = operator.get(&conn_page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Tenant A"));

    // A session past its expiry is over, and a Korean browser is answered
    // in Korean.
    {
        let mut conn = app.db.connect().await;
        sqlx::query("UPDATE console_sessions SET expires_at = 1")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (status, headers, _) = alice.get(&conn_page).await;
    assert_eq!(
        (status, headers[LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    let res = app
        .client
        .get(app.url("/console/sign-in"))
        .header("Accept-Language", "ko-KR,ko;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let page = res.text().await.unwrap();
    assert!(
        page.contains("<html lang=\"ko\">") && page.contains("로그인"),
        "{page}"
    );
}

async fn rotation_and_engine_forms_follow_the_api_rules(backend: Backend) {
    let emu = spawn_emulator(EmulatorConfig::default()).await;
    let app = console_app(backend, &emu, "https://botgate.example.com/base").await;
    let tenant = app.create_tenant("Rotation").await;
    let conn = app
        .create_connection(&tenant, &connection_body("2000001"))
        .await;
    let api_path = format!(
        "/api/v1/tenants/{}/connections/{}",
        tenant.id,
        conn["id"].as_str().unwrap()
    );
    let rotate = format!(
        "/console/connections/{}/rotate",
        conn["id"].as_str().unwrap()
    );
    let mut builder = Visitor::new(&app);
    builder.sign_in(&tenant.api_key).await;
    let (status, _, page) = builder.get(&rotate).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = hidden(&page, "csrf");
    let client_id = conn["client_id"].as_str().unwrap();
    let service_account = conn["service_account"].as_str().unwrap();
    // The form as shown holds the plain values; they are not secrets.
    assert!(page.contains(client_id) && page.contains(service_account));

    // A bad value: the inline error, nothing changed.
    let before = app.db.snapshot().await;
    let (status, _, page) = builder
        .post(
            &rotate,
            &[
                ("csrf", &csrf),
                ("client_id", client_id),
                ("service_account", "no-at-sign"),
                ("bot_secret", "a-new-bot-secret"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("must look like"), "{page}");
    assert!(!page.contains("a-new-bot-secret"));
    assert_eq!(app.db.snapshot().await, before);

    // Only the bot secret: saved, the rest as it was.
    let rate = conn["rate_limit_per_minute"].to_string();
    let (status, headers, _) = builder
        .post(
            &rotate,
            &[
                ("csrf", &csrf),
                ("client_id", client_id),
                ("client_secret", ""),
                ("service_account", service_account),
                ("private_key", ""),
                ("bot_secret", "a-new-bot-secret"),
                ("scope", conn["scope"].as_str().unwrap()),
                ("rate_limit_per_minute", &rate),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[LOCATION].to_str().unwrap().ends_with("?saved=1"));
    let after = app.get(&api_path, &tenant.api_key).await.1;
    assert_eq!(after["bot_secret"], "****cret");
    for same in [
        "client_id",
        "client_secret",
        "service_account",
        "private_key",
        "scope",
        "rate_limit_per_minute",
    ] {
        assert_eq!(after[same], conn[same], "{same}");
    }

    // The engine form: the API's rules, then saved.
    let hook = "http://engine.example.com/hook";
    let (status, _, page) = builder
        .post(
            "/console/engine",
            &[
                ("csrf", &csrf),
                ("kind", "http"),
                ("url", hook),
                ("secret", ""),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("is required: botgate signs engine requests with it"),
        "{page}"
    );
    let (status, _, page) = builder
        .post(
            "/console/engine",
            &[("csrf", &csrf), ("kind", "rasa"), ("url", "ftp://rasa")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("must be an http:// or https:// URL"),
        "{page}"
    );
    let tenant_path = format!("/api/v1/tenants/{}", tenant.id);
    let engine = app.get(&tenant_path, &tenant.api_key).await.1["engine"].clone();
    assert_eq!(engine, json!({"kind": "echo"}));
    let (status, _, _) = builder
        .post(
            "/console/engine",
            &[
                ("csrf", &csrf),
                ("kind", "http"),
                ("url", hook),
                ("secret", "an-engine-signing-secret"),
                ("fallback_text", "Back soon"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let engine = app.get(&tenant_path, &tenant.api_key).await.1["engine"].clone();
    assert_eq!(
        engine,
        json!({"kind": "http", "url": hook, "secret": "****cret", "fallback_text": "Back soon"})
    );
    let (_, _, page) = builder.get("/console/engine").await;
    assert!(page.contains("****cret") && !page.contains("an-engine-signing-secret"));

    // The status hook's form: the API's rules, each error under its own
    // field (not the engine's), nothing changed; then set, then removed.
    let before = app.db.snapshot().await;
    let (status, _, page) = builder
        .post(
            "/console/status-hook",
            &[
                ("csrf", &csrf),
                ("status_url", "ftp://hooks.example.com"),
                ("status_secret", "short"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["status_url-error", "status_secret-error"] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}: {page}");
    }
    assert!(page.contains("must be an http:// or https:// URL"));
    assert!(!page.contains("id=\"url-error\"") && !page.contains("id=\"secret-error\""));
    assert!(
        page.contains("value=\"ftp://hooks.example.com\"") && !page.contains("value=\"short\"")
    );
    assert_eq!(app.db.snapshot().await, before);
    let url = "http://jobs.example.com/status";
    let (status, headers, _) = builder
        .post(
            "/console/status-hook",
            &[
                ("csrf", &csrf),
                ("status_url", url),
                ("status_secret", "a-status-hook-secret"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[LOCATION].to_str().unwrap().to_owned();
    assert!(location.ends_with("?hook=saved"), "{location}");
    let hook = app.get(&tenant_path, &tenant.api_key).await.1["status_hook"].clone();
    assert_eq!(hook, json!({"url": url, "secret": "****cret"}));
    let (_, _, page) = builder.get("/console/engine?hook=saved").await;
    assert!(page.contains(&format!("value=\"{url}\"")), "{page}");
    assert!(page.contains("remove-status-hook") && !page.contains("a-status-hook-secret"));
    // Its test post: this host's name does not resolve here, and the page
    // says so under the hook.
    let (status, _, page) = builder
        .post("/console/status-hook/test", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("id=\"status-hook-test-result\" data-ok=\"false\""),
        "{page}"
    );
    let (status, headers, _) = builder
        .post("/console/status-hook/remove", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[LOCATION]
        .to_str()
        .unwrap()
        .ends_with("?hook=removed"));
    let tenant_now = app.get(&tenant_path, &tenant.api_key).await.1;
    assert!(tenant_now.get("status_hook").is_none(), "{tenant_now}");
    let (_, _, page) = builder.get("/console/engine?hook=removed").await;
    assert!(!page.contains("remove-status-hook"));
}

both_backends!(sign_in_links_work_once_and_expired_ones_are_forgotten);

/// The single-use tokens' table (`store::one_time`, shared with the OAuth
/// states): a link is taken once, an expired one gives nothing, and each new
/// link first forgets the expired ones never used.
async fn sign_in_links_work_once_and_expired_ones_are_forgotten(backend: Backend) {
    use botgate::domain::ids::TenantId;
    let app = spawn_app(backend).await;
    let tenant = TenantId::parse(&app.create_tenant("links").await.id).unwrap();
    let store = &app.state.store;
    let now = botgate::domain::now_millis();
    let page = "/console/connections";
    for hash in ["h-old-1", "h-old-2"] {
        store
            .put_console_link(hash, &tenant, page, now - 1, now - 60_000)
            .await
            .unwrap();
    }
    assert_eq!(
        store.take_console_link("h-old-1", now).await.unwrap(),
        None,
        "expired"
    );
    store
        .put_console_link("h-new", &tenant, page, now + 60_000, now)
        .await
        .unwrap();
    let mut conn = app.db.connect().await;
    let left: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM console_links")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, ["h-new"], "the unused expired link is forgotten");
    assert_eq!(
        store.take_console_link("h-new", now).await.unwrap(),
        Some((tenant, page.to_owned()))
    );
    assert_eq!(
        store.take_console_link("h-new", now).await.unwrap(),
        None,
        "used once"
    );
}
