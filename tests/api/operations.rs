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
    let bin = env!("CARGO_BIN_EXE_botgate");
    let run = |args: &[&str]| {
        Command::new(bin)
            .args(args)
            .current_dir(app.settings.data_dir.parent().unwrap())
            .env("BOTGATE_DATABASE_URL", &app.db.url)
            .env("BOTGATE_DATA_DIR", &app.settings.data_dir)
            .env("BOTGATE_LOG", "warn")
            .output()
            .expect("run botgate")
    };
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

    let out = run(&["keys", "generate"]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    botgate::secrets::MasterKey::parse(key.trim()).expect("a usable master key");
}
