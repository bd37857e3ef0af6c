//! Health, replicas, and the command line against a real database.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    health_and_readiness,
    replicas_share_one_database,
    cli_tenant_create
);

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.get("/healthz", "").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, body) = app.get("/readyz", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["checks"],
        json!({"database": "ok", "schema": "current", "workers": "running"})
    );
    // With the database gone, not ready (and still alive).
    app.state.store.close().await;
    let (status, body) = app.get("/readyz", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    assert_eq!(app.get("/healthz", "").await.0, StatusCode::OK);
}

async fn replicas_share_one_database(backend: Backend) {
    let first = spawn_app(backend).await;
    // Two more start at once on the same database: migrations must not race.
    let (second, third) = tokio::join!(spawn_replica(&first), spawn_replica(&first));
    let tenant = first.create_tenant("Shared").await;
    let created = second
        .create_connection(&tenant, &connection_body("9900001"))
        .await;
    let path = format!(
        "/api/v1/tenants/{}/connections/{}",
        tenant.id,
        created["id"].as_str().unwrap()
    );
    for app in [&first, &third] {
        let (status, body) = app.get(&path, &tenant.api_key).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, created);
    }
}

async fn cli_tenant_create(backend: Backend) {
    let app = spawn_app(backend).await;
    let run = |args: &[&str]| app.cli(args);
    let out = run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["tenant", "create", "--name", "From the CLI", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let tenant = Tenant {
        id: printed["id"].as_str().unwrap().to_owned(),
        api_key: printed["api_key"].as_str().unwrap().to_owned(),
    };
    // The printed key works against the running server.
    let (status, body) = app
        .get(&format!("/api/v1/tenants/{}", tenant.id), &tenant.api_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "From the CLI");

    let out = run(&["tenant", "create", "--name", ""]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name"));

    // A new key from the host: the printed one works, the old one stops.
    let out = run(&["tenant", "rotate-key", "--tenant", &tenant.id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let read = format!("/api/v1/tenants/{}", tenant.id);
    let new_key = printed["api_key"].as_str().unwrap();
    assert_eq!(app.get(&read, new_key).await.0, StatusCode::OK);
    assert_eq!(
        app.get(&read, &tenant.api_key).await.0,
        StatusCode::UNAUTHORIZED
    );
    for args in [
        &["tenant", "rotate-key", "--tenant", "ten_nope"][..],
        &[
            "tenant",
            "rotate-key",
            "--tenant",
            &tenant.id,
            "--previous-valid-seconds",
            "999999",
        ],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
    }
    assert_eq!(app.get(&read, new_key).await.0, StatusCode::OK);

    let out = run(&["keys", "generate"]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    botgate::secrets::MasterKey::parse(key.trim()).expect("a usable master key");
}

/// docker-compose.yml parses and validates (`docker-compose config`; no
/// engine needed) with the `.env` the README's one command makes, and not
/// without its two secrets. `.ci/run` installs the command; CI fails
/// without it.
#[test]
fn docker_compose_file_validates() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args(["keys", "generate", "--env"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let env_text = String::from_utf8(out.stdout).unwrap();
    let value = |name: &str| {
        env_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {env_text}"))
            .to_owned()
    };
    botgate::secrets::MasterKey::parse(&value("BOTGATE_MASTER_KEY")).expect("a usable master key");
    assert!(value("BOTGATE_ADMIN_TOKEN").starts_with("bga_"));
    assert!(value("BOTGATE_ADMIN_TOKEN").len() >= 40);
    let env_file = dir.path().join(".env");
    std::fs::write(&env_file, &env_text).unwrap();
    let empty = dir.path().join("empty.env");
    std::fs::write(&empty, "").unwrap();
    let run = |program: &str, args: &[&str], env: &std::path::Path| {
        let mut full = vec!["--env-file", env.to_str().unwrap()];
        if program == "docker" {
            full.insert(0, "compose");
        }
        full.extend_from_slice(args);
        Command::new(program)
            .args(&full)
            .env_remove("BOTGATE_MASTER_KEY")
            .env_remove("BOTGATE_ADMIN_TOKEN")
            .output()
            .ok()
    };
    let validate = |env: &std::path::Path| {
        run("docker-compose", &["-f", file, "config", "-q"], env)
            .filter(|o| o.status.code() != Some(127))
            .or_else(|| {
                run("docker", &["-f", file, "config", "-q"], env).filter(|o| {
                    o.status.success() || !String::from_utf8_lossy(&o.stderr).contains("unknown")
                })
            })
    };
    match validate(&env_file) {
        Some(out) => {
            assert!(
                out.status.success(),
                "docker-compose.yml is invalid: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let without = validate(&empty).unwrap();
            assert!(!without.status.success(), "the secrets are required");
            assert!(String::from_utf8_lossy(&without.stderr).contains("keys generate --env"));
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("docker-compose is required under CI (.ci/run installs it)")
        }
        None => eprintln!("docker-compose not installed; docker-compose.yml not validated"),
    }
}

/// (METHOD, path) of every operation the router registers: the table
/// `routes::configure` itself reads, not its source text.
fn routes_in_code() -> std::collections::BTreeSet<(String, String)> {
    botgate::routes::routes()
        .into_iter()
        .map(|(method, path)| (method, path.to_owned()))
        .collect()
}

/// Every `$ref` in `value`.
fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

both_backends!(openapi_document_matches_the_routes);

async fn openapi_document_matches_the_routes(backend: Backend) {
    // Each unauthenticated request below comes from an address of its own
    // (X-Forwarded-For), so that the failures are not slowed down.
    let options = Options {
        extra: "trusted_proxies = \"127.0.0.1/32\"".into(),
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let (status, doc) = app.get("/api/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    // Every schema the operations name is in the document.
    let mut named = Vec::new();
    refs(&doc["paths"], &mut named);
    assert!(
        named.iter().any(|r| r == "#/components/schemas/Error"),
        "{named:?}"
    );
    for r in &named {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is missing"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["ConnectionView"]["properties"]["bot_id"]["type"], "string",
        "the connection's schema comes from its type"
    );
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its answers"
            );
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let code = routes_in_code();
    assert!(code.len() >= 25, "{code:?}");
    assert_eq!(documented, code, "the document lists exactly the routes");
    // Every documented operation is served (not an unknown route or method).
    for (n, (method, path)) in documented.iter().enumerate() {
        let concrete = path
            .replace("{tenant}", "ten_00000000000000000000000000000000")
            .replace("{connection}", "con_00000000000000000000000000000000")
            .replace("{event}", "evt_0")
            .replace("{id}", "msg_0");
        let res = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .header("X-Forwarded-For", format!("10.0.0.{n}"))
            .send()
            .await
            .unwrap();
        assert_ne!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(
            !text.contains("no route matches this path"),
            "{method} {path} is not routed"
        );
        // The security the document gives it (its own, else the
        // document's) is what it asks of a caller who sends nothing.
        let op = &doc["paths"][path.as_str()][method.to_lowercase()];
        let security = op.get("security").unwrap_or(&doc["security"]);
        let asks_bearer = text.contains("Authorization: Bearer");
        if *security == json!([{"bearer": []}]) {
            assert!(
                status == StatusCode::UNAUTHORIZED && asks_bearer,
                "{method} {path} is documented as needing the bearer token: {status} {text}"
            );
        } else {
            assert!(
                !asks_bearer,
                "{method} {path} is documented as {security} but asks for the bearer token"
            );
        }
    }
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    let page = app.get_text("/api/docs").await;
    assert!(page.contains("/api/v1/connections/{connection}/messages"));
}

/// PostgreSQL only: an embedded SQLite file cannot "go away" and come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get("/readyz", "").await.0, StatusCode::OK);
    let name = app.db.pg_name.clone().unwrap();
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("BOTGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    let away = [
        format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"),
        format!(
            "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = '{name}'"
        ),
    ];
    for sql in &away {
        sqlx::query(sql).fetch_all(&mut admin).await.unwrap();
    }
    let started = std::time::Instant::now();
    let (status, body) = app.get("/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["checks"]["database"], "unreachable");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(
        app.get("/healthz", "").await.0,
        StatusCode::OK,
        "still alive"
    );
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let (status, body) = app.get("/readyz", "").await;
    assert_eq!(status, StatusCode::OK, "ready again: {body}");
}

/// The README's benchmark command runs (briefly, on SQLite, at a small load):
/// every figure line is printed and no request failed. Not timed: it proves
/// the tool works on a clean checkout, not how fast anything is.
#[test]
fn bench_runs_and_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_botgate"))
        .args([
            "bench",
            "--duration",
            "1",
            "--concurrency",
            "4",
            "--peak-concurrency",
            "16",
            "--only",
            "b1,b3",
        ])
        .env_remove("BOTGATE_DATABASE_URL")
        .output()
        .expect("run botgate bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ceiling (HMAC check + 200), 4 in flight:",
        "ceiling (HMAC check + 200), 16 in flight:",
        "B1 ingest (SQLite), 4 in flight:",
        "B1 ingest (SQLite), 16 in flight:",
        "B1 ingest (SQLite), max:",
        "B1 ingest (SQLite), at half of max",
        "B3 auth URL (SQLite), cached token:",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    let runs = stdout
        .lines()
        .filter(|l| l.contains(" req/s, p50 "))
        .count();
    assert_eq!(runs, 6, "{stdout}");
    assert_eq!(
        stdout.matches(", 0 errors").count(),
        runs,
        "a request failed:\n{stdout}"
    );
}

/// `/metrics` is not for anyone: without `metrics_token`, only unproxied
/// requests from this machine; with one, only its bearer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_to_the_operator_only() {
    let open = spawn_app(Backend::Sqlite).await;
    let res = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "this machine, no proxy");
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let res = open
            .client
            .get(open.url("/metrics"))
            .header(header, "for=203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::FORBIDDEN,
            "{header}: a proxied request"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }

    let guarded = spawn_app_with(
        Backend::Sqlite,
        Options {
            extra: "metrics_token = \"metrics-scraper-token-0123456789\"".to_owned(),
            ..Options::default()
        },
    )
    .await;
    let scrape = |token: Option<&'static str>| {
        let mut req = guarded
            .client
            .get(guarded.url("/metrics"))
            .header("X-Forwarded-For", "203.0.113.9");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    assert_eq!(
        scrape(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        scrape(Some("metrics-scraper-token-wrong"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let res = scrape(Some("metrics-scraper-token-0123456789"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("# TYPE"));
}
