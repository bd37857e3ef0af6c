//! `botgate demo` (issue 26) as a real process: the printed one-time link
//! opens the playground in headless Chromium, "hello" comes back as the echo,
//! a button of a button-template reply is pressed and its postback answered,
//! each message's pipeline status is one click away; the link works once and
//! expires; a second run reuses the demo data, in Korean; a taken emulator
//! port stops the demo with a clear message.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::webdriver::{Browser, Driver};

struct Demo {
    child: Child,
    link: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn demo_command(dir: &Path, port: u16, emulator_port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botgate"));
    cmd.arg("demo")
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--emulator-listen")
        .arg(format!("127.0.0.1:{emulator_port}"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // The demo ignores the environment's platform URLs.
        .env("BOTGATE_NAVERWORKS_API_URL", "https://www.worksapis.com/v1.0");
    cmd
}

/// Starts the demo and reads its one line.
fn start(dir: &Path, port: u16, emulator_port: u16) -> Demo {
    start_with(demo_command(dir, port, emulator_port))
}

fn start_with(mut command: Command) -> Demo {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start botgate demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the demo printed its line");
    let link = line
        .strip_prefix("botgate demo: open ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    assert!(link.contains("/console/link/"), "{link}");
    // With --engine-url, one more line says where the signing secret is.
    if let Ok(more) = rx.recv_timeout(Duration::from_millis(500)) {
        assert!(more.starts_with("engine requests are signed"), "{more}");
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "nothing else"
        );
    }
    Demo { child, link }
}

/// The texts of the elements `css` matches, read at once (the page redraws
/// the chat when the feed changes, so element references go stale).
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let found = browser
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);",
            serde_json::json!([css]),
        )
        .await;
    found
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Clicks the first element `css` matches, in the page.
async fn click(browser: &Browser, css: &str) {
    let clicked = browser
        .execute(
            "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;",
            serde_json::json!([css]),
        )
        .await;
    assert_eq!(clicked, true, "no {css}");
}

/// How many chat bubbles of `side` hold `text`.
async fn bubbles(browser: &Browser, side: &str, text: &str) -> usize {
    texts(browser, &format!("#chat li[data-side={side}]"))
        .await
        .iter()
        .filter(|t| t.contains(text))
        .count()
}

/// Waits up to `seconds` for a chat bubble of `side` holding `text`.
async fn wait_for_bubble(browser: &Browser, side: &str, text: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let css = format!("#chat li[data-side={side}]");
        if texts(browser, &css).await.iter().any(|t| t.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {side} message {text:?} within {seconds} s:\n{:?}",
            texts(browser, "#chat li").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn say(browser: &Browser, text: &str) {
    browser.fill("#say-text", text).await;
    browser.click("#send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_in_the_playground() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let (port, emulator_port) = (free_port(), free_port());
    let demo = start(&data, port, emulator_port);
    let work = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let browser = driver.browser("en-US", work.path()).await;

    // The link signs in and opens the playground.
    browser.goto(&demo.link).await;
    assert!(
        browser.url().await.ends_with("/playground"),
        "{}",
        browser.url().await
    );
    assert!(browser.text("h1").await.contains("Playground"));
    say(&browser, "hello").await;
    wait_for_bubble(&browser, "user", "hello", 5).await;
    wait_for_bubble(&browser, "bot", "hello", 5).await;
    // A button template: press a button, see the postback's answer.
    say(&browser, "menu").await;
    wait_for_bubble(&browser, "bot", "Pick one", 5).await;
    assert_eq!(
        texts(&browser, "#chat li[data-side=bot] button.action").await,
        ["Yes", "No"]
    );
    click(&browser, "#chat li[data-side=bot] button.action").await;
    wait_for_bubble(&browser, "bot", "You chose: yes", 5).await;
    // The pipeline, one click away.
    let deadline = Instant::now() + Duration::from_secs(5);
    while texts(&browser, "#chat li[data-side=bot][data-status=delivered]")
        .await
        .len()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            texts(&browser, "#chat li").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    click(&browser, "#chat li[data-side=bot] details.pipeline summary").await;
    let steps = texts(&browser, "#chat li[data-side=bot] details[open] .steps").await;
    assert!(
        steps.len() == 1
            && steps[0].contains("sent: delivered")
            && steps[0].contains("Attempts: 1"),
        "{steps:?}"
    );
    // The built-in picture, as a user's image file.
    browser.click("#send-image").await;
    wait_for_bubble(&browser, "bot", "I received your image", 5).await;
    // A sticker, in a room.
    browser.click("#where-room").await;
    browser.click("#send-sticker-0").await;
    wait_for_bubble(&browser, "bot", "Sticker 1/1", 5).await;
    browser.click("#where-user").await;
    wait_for_bubble(&browser, "bot", "You chose: yes", 5).await;
    browser
        .screenshot(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots/playground-en.png"),
        )
        .await;

    // The console's rules hold: the page's policy, no post without the
    // session's CSRF token, no feed without a session.
    let playground = browser.url().await;
    let session = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "botgate_session")
        .expect("a session cookie");
    let cookie = format!("botgate_session={}", session["value"].as_str().unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(&playground)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self';")
            && policy.contains("connect-src 'self'")
            && policy.contains("frame-ancestors 'none'")
            && !policy.contains("unsafe"),
        "{policy}"
    );
    let feed = |cookie: Option<&str>| {
        let mut req = http.get(format!("{playground}/feed"));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send()
    };
    let before: serde_json::Value = feed(Some(&cookie)).await.unwrap().json().await.unwrap();
    let forged = http
        .post(format!("{playground}/say"))
        .header("Cookie", &cookie)
        .header("X-Botgate-Fetch", "1")
        .form(&[("csrf", "0".repeat(64).as_str()), ("text", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
    let anonymous = feed(None).await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::SEE_OTHER);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: serde_json::Value = feed(Some(&cookie)).await.unwrap().json().await.unwrap();
    assert_eq!(before, after, "nothing was sent");

    // The Slack connection's playground: a message, a slash command, a button.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo.json")).unwrap()).unwrap();
    let slack = saved["slack_connection_id"].as_str().unwrap();
    browser
        .goto(&format!(
            "http://127.0.0.1:{port}/console/connections/{slack}/playground"
        ))
        .await;
    assert!(browser.find_all("#send-sticker-0").await.is_empty());
    say(&browser, "hello from Slack").await;
    wait_for_bubble(&browser, "bot", "hello from Slack", 5).await;
    say(&browser, "/weather Seoul").await;
    wait_for_bubble(&browser, "user", "/weather Seoul", 5).await;
    wait_for_bubble(&browser, "bot", "You ran /weather Seoul", 5).await;
    say(&browser, "menu").await;
    wait_for_bubble(&browser, "bot", "Pick one", 5).await;
    click(&browser, "#chat li[data-side=bot] button.action").await;
    wait_for_bubble(&browser, "user", "yes", 5).await;
    wait_for_bubble(&browser, "bot", "You chose: yes", 5).await;

    // The link works once.
    let work_used = tempfile::tempdir().unwrap();
    let used = driver.browser("en-US", work_used.path()).await;
    used.goto(&demo.link).await;
    assert!(used.text(".notice").await.contains("already used"));
    used.quit().await;

    // Ctrl-C stops everything; the ports are free again.
    let pid = demo.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut demo = demo;
    let deadline = Instant::now() + Duration::from_secs(20);
    while demo.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::net::TcpListener::bind(("127.0.0.1", emulator_port)).expect("the emulator's port free");
    drop(demo);

    // A second run: the same data, a new link; an expired one is refused.
    let again = start(&data, port, emulator_port);
    let db = format!("sqlite://{}", data.join("botgate.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE console_links SET expires_at = 0")
        .execute(&pool)
        .await
        .unwrap();
    let work_expired = tempfile::tempdir().unwrap();
    let expired = driver.browser("en-US", work_expired.path()).await;
    expired.goto(&again.link).await;
    assert!(expired.text(".notice").await.contains("expired"));
    expired.quit().await;
    drop(again);
    let third = start(&data, port, emulator_port);
    let work_korean = tempfile::tempdir().unwrap();
    let korean = driver.browser("ko-KR", work_korean.path()).await;
    korean.goto(&third.link).await;
    assert!(korean.text("h1").await.contains("플레이그라운드"));
    // The first run's conversation is still there.
    wait_for_bubble(&korean, "bot", "You chose: yes", 5).await;
    say(&korean, "안녕하세요").await;
    wait_for_bubble(&korean, "bot", "안녕하세요", 5).await;
    // The first run's menu is still in the history: wait for a new one.
    let before = bubbles(&korean, "bot", "Pick one").await;
    say(&korean, "menu").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while bubbles(&korean, "bot", "Pick one").await == before {
        assert!(Instant::now() < deadline, "no new menu");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pressed = texts(&korean, "#chat li[data-side=user]").await.len();
    // "No" of the newest menu.
    let clicked = korean
        .execute(
            "const menus = [...document.querySelectorAll('#chat li[data-side=bot]')]\
               .filter(li => li.querySelector('button.action'));\
             const buttons = menus[menus.length - 1].querySelectorAll('button.action');\
             buttons[buttons.length - 1].click(); return buttons[buttons.length - 1].textContent;",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(clicked, "No");
    wait_for_bubble(&korean, "bot", "You chose: no", 5).await;
    assert!(texts(&korean, "#chat li[data-side=user]").await.len() > pressed);
    assert_eq!(texts(&korean, "#send").await, ["보내기"]);
    assert!(texts(&korean, "#chat .who").await.iter().any(|w| w == "봇"));
    korean.quit().await;
    browser.quit().await;
}

#[test]
fn the_demo_refuses_a_taken_emulator_port() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let emulator_port = taken.local_addr().unwrap().port();
    let out = demo_command(&dir.path().join("demo"), free_port(), emulator_port)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the demo's emulator cannot listen on 127.0.0.1:{emulator_port}"
        )) && stderr.contains("--emulator-listen"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no link printed");
}

/// `--engine-url`: the builder's own http engine answers in the playground
/// (driven over plain HTTP with the session the link gives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_talks_to_the_builders_engine() {
    let engine = crate::helpers::spawn_engine(
        serde_json::json!({"replies": [{"type": "text", "text": "my engine heard: {{text}}"}]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (port, emulator_port) = (free_port(), free_port());
    let mut command = demo_command(&dir.path().join("demo"), port, emulator_port);
    command.arg("--engine-url").arg(&engine.url);
    let demo = start_with(command);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http.get(&demo.link).send().await.unwrap();
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    let playground = format!(
        "http://127.0.0.1:{port}{}",
        signed_in.headers()["location"].to_str().unwrap()
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(&playground)
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[at..at + page[at..].find('"').unwrap()];
    let said = http
        .post(format!("{playground}/say"))
        .header("Cookie", &cookie)
        .header("X-Botgate-Fetch", "1")
        .form(&[("csrf", csrf), ("kind", "text"), ("text", "hi there")])
        .send()
        .await
        .unwrap();
    assert_eq!(said.status(), reqwest::StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let feed: serde_json::Value = http
            .get(format!("{playground}/feed"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let answered = feed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["side"] == "bot" && i["content"]["text"] == "my engine heard: hi there");
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "{feed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The engine got the signed protocol.
    let received = engine.received.lock().unwrap().clone();
    assert!(received[0].0.contains_key("x-botgate-signature"));
}
