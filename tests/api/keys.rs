//! Master-key rotation beside a running server.

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use botgate::config::Settings;
use botgate::secrets::keyfile::read_key_file;
use botgate::secrets::MasterKey;

use crate::both_backends;
use crate::helpers::*;

both_backends!(rotate_with_key_file_while_serving, rotate_with_key_setting);

async fn key_ids_in_use(app: &TestApp) -> Vec<String> {
    app.state
        .store
        .secret_counts_by_key()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

async fn rotate_with_key_file_while_serving(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            key_file: true,
            ..Options::default()
        },
    )
    .await;
    let key_path = app.settings.data_dir.join("master.key");
    let old_id = read_key_file(&key_path).unwrap().current().id().to_owned();
    let tenant = app.create_tenant("Rotate").await;
    let one = app
        .create_connection(&tenant, &connection_body("9000001"))
        .await;
    app.create_connection(&tenant, &connection_body("9000002"))
        .await;
    let engine =
        json!({"kind": "http", "url": "https://e.example/", "secret": "engine-secret-rotate-1234"});
    let engine_path = format!("/api/v1/tenants/{}/engine", tenant.id);
    assert_eq!(
        app.send_json(Method::PUT, &engine_path, &tenant.api_key, &engine)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(key_ids_in_use(&app).await, [old_id.as_str()]);
    // A message, its content sealed under the old key.
    let one_id = one["id"].as_str().unwrap();
    let (status, sent) = app
        .send_json(
            Method::POST,
            &format!("/api/v1/connections/{one_id}/messages"),
            &tenant.api_key,
            &json!({"user_id": "u1", "content": {"type": "text", "text": "sealed before rotation"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let message_path = format!(
        "/api/v1/connections/{one_id}/messages/{}",
        sent["id"].as_str().unwrap()
    );
    let body_key = || async {
        let mut conn = app.db.connect().await;
        let content: String = sqlx::Row::get(
            &sqlx::query("SELECT content FROM outbound_messages")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            0,
        );
        content.split(':').nth(1).unwrap().to_owned()
    };
    assert_eq!(body_key().await, old_id);

    botgate::commands::rotate(&app.settings, false, false)
        .await
        .unwrap();

    let ring = read_key_file(&key_path).unwrap();
    let new_id = ring.current().id().to_owned();
    assert_ne!(new_id, old_id);
    assert_eq!(
        ring.key_ids().collect::<Vec<_>>(),
        [new_id.as_str(), old_id.as_str()],
        "old key kept, second"
    );
    assert_eq!(
        key_ids_in_use(&app).await,
        [new_id.as_str()],
        "nothing left under the old key"
    );
    assert_eq!(body_key().await, new_id, "the message body re-sealed");

    // The running server still reads everything (it reloads the file)...
    let path = format!(
        "/api/v1/tenants/{}/connections/{}",
        tenant.id,
        one["id"].as_str().unwrap()
    );
    let (status, body) = app.get(&path, &tenant.api_key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, one, "same masked values, no unreadable secrets");
    let (_, t) = app
        .get(&format!("/api/v1/tenants/{}", tenant.id), &tenant.api_key)
        .await;
    assert_eq!(t["engine"]["secret"], "****1234");
    // ...and seals new values under the new key.
    let (status, _) = app
        .send_json(
            Method::PATCH,
            &path,
            &tenant.api_key,
            &json!({"bot_secret": "after-rotation-5555"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key_ids_in_use(&app).await, [new_id.as_str()]);

    // Retiring removes the old key from the file; everything still opens.
    botgate::commands::rotate(&app.settings, true, true)
        .await
        .unwrap();
    assert_eq!(
        read_key_file(&key_path)
            .unwrap()
            .key_ids()
            .collect::<Vec<_>>(),
        [new_id.as_str()]
    );
    let (_, body) = app.get(&path, &tenant.api_key).await;
    assert_eq!(body["bot_secret"], "****5555");
    let (status, message) = app.get(&message_path, &tenant.api_key).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["content"]["text"], "sealed before rotation");
    assert!(body.get("unreadable_secrets").is_none());
}

async fn rotate_with_key_setting(backend: Backend) {
    let old = MasterKey::generate();
    let old_b64 = old.to_base64();
    let extra = format!("master_key = \"{}\"", old_b64.expose_secret());
    let app = spawn_app_with(
        backend,
        Options {
            extra,
            key_file: true,
            ..Options::default()
        },
    )
    .await;
    let tenant = app.create_tenant("Env keys").await;
    app.create_connection(&tenant, &connection_body("9100001"))
        .await;
    assert_eq!(key_ids_in_use(&app).await, [old.id().to_owned()]);

    // Without a file botgate cannot add a key itself, and says what to do.
    let err = botgate::commands::rotate(&app.settings, false, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("BOTGATE_MASTER_KEY"), "{err}");

    let new = MasterKey::generate();
    let mut settings: Settings = app.settings.clone();
    settings.master_key = Some(
        format!(
            "{},{}",
            new.to_base64().expose_secret(),
            old_b64.expose_secret()
        )
        .into(),
    );
    botgate::commands::rotate(&settings, true, false)
        .await
        .unwrap();
    assert_eq!(key_ids_in_use(&app).await, [new.id().to_owned()]);

    // Every value opens with the new key alone.
    let ring = botgate::secrets::KeyRing::new(new, []);
    let conn_id = app
        .state
        .store
        .connections(&botgate::domain::ids::TenantId::parse(&tenant.id).unwrap())
        .await
        .unwrap()[0]
        .id
        .clone();
    let records = app.state.store.secrets(conn_id.as_str()).await.unwrap();
    assert_eq!(records.len(), 3);
    for r in &records {
        ring.open(&r.sealed, r.aad()).unwrap();
    }
}
