//! The README's promise: on a fresh directory, the gateway binary starts with
//! no set-up, prints an admin token, and the quick-start commands work as
//! written (only the port and the pasted token are filled in).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quickstart_script() -> String {
    let readme = include_str!("../../README.md");
    let block = readme
        .split("<!-- quickstart:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- quickstart:end -->").next())
        .expect("README quick-start markers");
    block
        .trim()
        .trim_start_matches("```sh")
        .trim_end_matches("```")
        .to_owned()
}

#[test]
fn readme_quickstart_works_on_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_botgate"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BOTGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("BOTGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
        ))
        .spawn()
        .expect("start botgate");
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let token = lines
        .find_map(|line| {
            line.trim()
                .starts_with("bga_")
                .then(|| line.trim().to_owned())
        })
        .expect("an admin token printed at first start");
    // Keep reading, as a terminal would.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(dir.path().join("data/master.key").exists());
    assert!(dir.path().join("data/botgate.db").exists());

    let script = quickstart_script()
        .replace("http://127.0.0.1:8080", &format!("http://127.0.0.1:{port}"))
        .replace("paste-the-admin-token-printed-at-first-start", &token);
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .expect("run the quick start");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quick start failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "\"webhook_url\":\"http://127.0.0.1:{port}/webhooks/naverworks/"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("\"auth_url\":"), "{stdout}");
    assert!(stdout.contains("\"auth_refresh_url\":"), "{stdout}");
    assert!(
        stdout.contains("\"client_secret\":\"****\""),
        "short secrets are fully masked: {stdout}"
    );
    assert!(!stdout.contains("oRm3M_nBg6"), "{stdout}");

    // A user's message reaches the webhook (the reply cannot leave this
    // machine; that is fine here).
    let connection = std::fs::read_to_string(dir.path().join("connection.json")).unwrap();
    let connection: serde_json::Value = serde_json::from_str(&connection).unwrap();
    let webhook = connection["webhook_url"].as_str().unwrap();
    let callback = format!(
        r#"{{"type":"message","source":{{"userId":"u1","domainId":1}},"issuedTime":"{}","content":{{"type":"text","text":"my confidential message text"}}}}"#,
        botgate::domain::rfc3339(botgate::domain::now_millis())
    );
    let callback = callback.as_bytes();
    let signature =
        botgate::naverworks::signature::sign(b"my-bot-secret-from-the-console", callback);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            webhook,
            "-H",
            "X-WORKS-BotId: 2000001",
            "-H",
            &format!("X-WORKS-Signature: {signature}"),
            "--data-binary",
        ])
        .arg(std::str::from_utf8(callback).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"status":"accepted"}"#
    );
    std::thread::sleep(std::time::Duration::from_millis(500)); // let the worker try

    // Nothing secret, and no message text, reached the logs, even at debug
    // level; every request line carries its request id.
    drop(guard);
    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        logs.contains("connection created"),
        "the log was captured: {logs}"
    );
    let api_key = std::fs::read_to_string(dir.path().join("tenant.json")).unwrap();
    let api_key = api_key
        .split("\"api_key\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let key_body: String = std::fs::read_to_string(dir.path().join("private_key.pem"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(logs.contains("request_id="), "request ids in the logs");
    // Request lines name the route template, never the path (it carries
    // the connection's public id).
    assert!(
        logs.contains("route=/webhooks/naverworks/{connection}"),
        "the webhook's request line names its route: {logs}"
    );
    let webhook_path = &webhook[webhook.find("/webhooks/").unwrap()..];
    assert!(
        !logs.contains(&format!("route={webhook_path}")),
        "a raw path in the logs"
    );
    assert!(
        !logs.contains("my confidential message text"),
        "message text in the logs"
    );
    for secret in [
        "oRm3M_nBg6",
        "my-bot-secret-from-the-console",
        "a-long-secret-for-internal-services",
        &token,
        &api_key,
        &key_body,
    ] {
        assert!(
            !logs.contains(secret),
            "a secret is in the logs: {}…",
            &secret[..6]
        );
    }

    // A second start prints no token: it was shown once.
    let mut again = Command::new(env!("CARGO_BIN_EXE_botgate"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BOTGATE_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start botgate again");
    let stderr = again.stderr.take().unwrap();
    let stdout = again.stdout.take().unwrap();
    let second = Kill(again);
    let serving = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("botgate is serving"));
    assert!(serving, "second start serves");
    drop(second);
    let printed = std::io::read_to_string(stdout).unwrap();
    assert!(
        !printed.contains("bga_"),
        "the token is printed only at first start: {printed}"
    );
}
