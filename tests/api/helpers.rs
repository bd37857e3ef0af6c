//! Test harness: the real server on a random port, with its own fresh
//! database (a SQLite file in a temp dir, or a new PostgreSQL database), driven
//! over real HTTP.
//!
//! PostgreSQL: `BOTGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). A missing server fails the
//! test loudly; it is never skipped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use botgate::config::Settings;
use botgate::secrets::MasterKey;
use botgate::startup::Application;
use botgate::state::AppState;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::Row as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `#[tokio::test] fn sqlite()` and `fn postgres()` running
/// `async fn $name(backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

pub const PKCS8: &str = include_str!("../fixtures/keys/app1_pkcs8.pem");
pub const PKCS1: &str = include_str!("../fixtures/keys/app1_pkcs1.pem");
pub const PKCS8_OTHER: &str = include_str!("../fixtures/keys/app2_pkcs8.pem");

fn postgres_admin_url() -> String {
    std::env::var("BOTGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// One test's database; a PostgreSQL database is dropped when this is.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub pg_name: Option<String>,
    pub sqlite_path: Option<PathBuf>,
}

impl TestDb {
    pub async fn new(backend: Backend, dir: &std::path::Path) -> Self {
        match backend {
            Backend::Sqlite => {
                let path = dir.join("botgate.db");
                Self {
                    backend,
                    url: format!("sqlite://{}", path.display()),
                    pg_name: None,
                    sqlite_path: Some(path),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!(
                    "botgate_test_{}",
                    botgate::secrets::hex(&botgate::secrets::random_bytes(8))
                );
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "PostgreSQL is required for the tests and is not reachable at {admin}: {e}. \
                             Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                             or set BOTGATE_TEST_POSTGRES_URL."
                        )
                    });
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let url = match admin.rfind('/') {
                    Some(i) => format!("{}/{name}", &admin[..i]),
                    None => panic!("BOTGATE_TEST_POSTGRES_URL must end with /DATABASE"),
                };
                Self {
                    backend,
                    url,
                    pg_name: Some(name),
                    sqlite_path: None,
                }
            }
        }
    }

    pub async fn connect(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        <sqlx::AnyConnection as sqlx::Connection>::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Every row of every table, as text: to check that a request changed nothing.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut conn = self.connect().await;
        let mut out = Vec::new();
        for (table, sql) in [
            ("tenants", "SELECT id, name, api_key_hash, engine_kind, COALESCE(engine_url, ''), updated_at FROM tenants ORDER BY id"),
            ("connections", "SELECT id, client_id, service_account, scope, rate_limit_per_minute, private_key_info, auth_header_hash, updated_at FROM connections ORDER BY id"),
            ("secrets", "SELECT owner_id, field, key_id, nonce, ciphertext, updated_at FROM secrets ORDER BY owner_id, field"),
        ] {
            for row in sqlx::query(sql).fetch_all(&mut conn).await.expect(table) {
                let mut line = format!("{table}:");
                for i in 0..sqlx::Row::len(&row) {
                    let text = row
                        .try_get::<String, _>(i)
                        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string()))
                        .or_else(|_| row.try_get::<Vec<u8>, _>(i).map(|b| botgate::secrets::hex(&b)))
                        .expect("column as text, integer or bytes");
                    line.push_str(&text);
                    line.push('|');
                }
                out.push(line);
            }
        }
        out
    }

    /// The raw bytes botgate keeps: the SQLite files, or a `pg_dump`.
    pub async fn raw_contents(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_ref().expect("sqlite path");
                let mut bytes = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    if let Ok(b) = std::fs::read(&file) {
                        bytes.extend(b);
                    }
                }
                bytes
            }
            Backend::Postgres => {
                let out = std::process::Command::new("pg_dump")
                    .arg("--dbname")
                    .arg(&self.url)
                    .output()
                    .expect("run pg_dump");
                assert!(
                    out.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // A runtime of its own: this may run inside (or after) the test's.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub state: web::Data<AppState>,
    pub settings: Settings,
    pub db: TestDb,
    /// Holds the data directory (and SQLite file) for the test's life.
    pub _dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct Options {
    /// TOML lines added to the test settings.
    pub extra: String,
    /// Use a master key file (as a generated one would be) instead of a setting.
    pub key_file: bool,
    /// Instead of `https://botgate.example.com/base`.
    pub public_url: Option<String>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::new(backend, dir.path()).await;
    let admin_token = format!(
        "test-admin-{}",
        botgate::secrets::hex(&botgate::secrets::random_bytes(16))
    );
    let key_line = if options.key_file {
        String::new() // generated into data_dir/master.key on first start
    } else {
        format!(
            "master_key = \"{}\"",
            MasterKey::generate().to_base64().expose_secret()
        )
    };
    // The test engines listen on this machine, which the outbound policy
    // refuses unless allowed (a test of the policy sets its own).
    let engines = if options.extra.contains("engine_allowed_networks") {
        ""
    } else {
        "engine_allowed_networks = \"127.0.0.0/8,::1/128\"\n"
    };
    let toml = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"{}\"\n\
         database_url = \"{}\"\ndata_dir = \"{}\"\nadmin_token = \"{admin_token}\"\n{key_line}\n{engines}{}",
        options
            .public_url
            .as_deref()
            .unwrap_or("https://botgate.example.com/base"),
        db.url,
        dir.path().join("data").display(),
        options.extra
    );
    let settings = Settings::with_overrides(&toml).expect("test settings");
    start(settings, db, dir, admin_token).await
}

/// A second server on the same database and keys, as another replica.
pub async fn spawn_replica(of: &TestApp) -> TestApp {
    spawn_replica_with(of, |_| {}).await
}

/// A replica whose settings `edit` changes first.
pub async fn spawn_replica_with(of: &TestApp, edit: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = of.settings.clone();
    edit(&mut settings);
    let db = TestDb {
        backend: of.db.backend,
        url: of.db.url.clone(),
        pg_name: None, // dropped with the first
        sqlite_path: of.db.sqlite_path.clone(),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    start(settings, db, dir, of.admin_token.clone()).await
}

/// The same server (settings, keys, admin token) on another database, as
/// after `botgate db copy` and a restart.
pub async fn spawn_on(of: &TestApp, db: TestDb) -> TestApp {
    let mut settings = of.settings.clone();
    settings.database_url = botgate::config::DatabaseUrl::parse(&db.url).expect("database url");
    let dir = tempfile::tempdir().expect("temp dir");
    start(settings, db, dir, of.admin_token.clone()).await
}

async fn start(
    settings: Settings,
    db: TestDb,
    dir: tempfile::TempDir,
    admin_token: String,
) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("build the app");
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client,
        admin_token,
        state,
        settings,
        db,
        _dir: dir,
    }
}

/// A tenant created through the API.
pub struct Tenant {
    pub id: String,
    pub api_key: String,
}

/// Valid connection credentials, unique per call where it matters.
pub fn connection_body(bot_id: &str) -> Value {
    json!({
        "channel": "naverworks",
        "bot_id": bot_id,
        "client_id": "ZbsOq6zjt0IhtZZnrc",
        "client_secret": format!("client-secret-{bot_id}-Qw3rty"),
        "service_account": "1wagx.serviceaccount@example.com",
        "private_key": PKCS8,
        "bot_secret": format!("bot-secret-{bot_id}-AsdfGh"),
        "auth_header": format!("auth-header-{bot_id}-ZxcvBnmLkj"),
    })
}

/// The OpenAPI document, read from the first app that answers (every app
/// serves the same one).
static DOCUMENT: tokio::sync::OnceCell<Value> = tokio::sync::OnceCell::const_new();

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The body of a plain GET, as text.
    pub async fn get_text(&self, path: &str) -> String {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        res.text().await.unwrap()
    }

    /// A request with a bearer token (none when `token` is empty).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        let req = self.client.request(method, self.url(path));
        if token.is_empty() {
            req
        } else {
            req.bearer_auth(token)
        }
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let req = self.request(method.clone(), path, token).json(body);
        self.documented(method, path, req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let req = self.request(reqwest::Method::GET, path, token);
        self.documented(reqwest::Method::GET, path, req).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let req = self.request(reqwest::Method::DELETE, path, token);
        self.documented(reqwest::Method::DELETE, path, req).await
    }

    /// Sends `req` and decodes its answer, which must have the shape the
    /// OpenAPI document gives it ([`crate::documented`]).
    pub async fn documented(
        &self,
        method: reqwest::Method,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        let (status, body) = decode(req.send().await.expect("request")).await;
        let doc = DOCUMENT
            .get_or_init(|| async {
                let res = self.client.get(self.url("/api/openapi.json")).send().await;
                res.expect("the document").json().await.expect("JSON")
            })
            .await;
        if let Err(problem) =
            crate::documented::check(doc, method.as_str(), path, status.as_u16(), &body)
        {
            panic!("the answer is not as documented: {problem}");
        }
        (status, body)
    }

    /// Runs the `botgate` command line on this server's database and data
    /// directory, as the operator on its host would.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_botgate"))
            .args(args)
            .current_dir(self.settings.data_dir.parent().unwrap())
            .env("BOTGATE_DATABASE_URL", &self.db.url)
            .env("BOTGATE_DATA_DIR", &self.settings.data_dir)
            .env("BOTGATE_LOG", "warn")
            .output()
            .expect("run botgate")
    }

    /// The tenant's activity log, newest first (with its own key).
    pub async fn activity(&self, tenant: &Tenant) -> Vec<Value> {
        let path = format!("/api/v1/tenants/{}/activity", tenant.id);
        let (status, body) = self.get(&path, &tenant.api_key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["activity"].as_array().unwrap().clone()
    }

    pub async fn create_tenant(&self, name: &str) -> Tenant {
        let (status, body) = self
            .send_json(
                reqwest::Method::POST,
                "/api/v1/tenants",
                &self.admin_token,
                &json!({"name": name}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Tenant {
            id: body["id"].as_str().expect("id").to_owned(),
            api_key: body["api_key"].as_str().expect("api_key").to_owned(),
        }
    }

    pub async fn create_connection(&self, tenant: &Tenant, body: &Value) -> Value {
        let (status, body) = self
            .send_json(
                reqwest::Method::POST,
                &format!("/api/v1/tenants/{}/connections", tenant.id),
                &tenant.api_key,
                body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Sets the tenant's engine (`PUT …/engine`), which must be accepted.
    pub async fn set_engine(&self, tenant: &Tenant, engine: &Value) {
        let (status, body) = self
            .send_json(
                reqwest::Method::PUT,
                &format!("/api/v1/tenants/{}/engine", tenant.id),
                &tenant.api_key,
                engine,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Status and JSON body; a non-JSON body fails the test (every answer is JSON).
pub async fn decode(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.expect("body");
    if text.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"));
    (status, body)
}

/// Asserts the error envelope and returns its code.
/// A sent message's status (as the send API shows it) after at least three
/// attempts the platform answered HTTP 408: not failed, still to be tried.
pub fn assert_retrying_after_408(status: &Value) {
    assert_ne!(status["status"], "failed", "{status}");
    assert!(status["attempts"].as_u64().unwrap() >= 3, "{status}");
    assert!(
        status["last_error"].as_str().unwrap().contains("HTTP 408"),
        "{status}"
    );
}

/// A status that has seen at least three attempts.
pub fn three_attempts(status: &Value) -> bool {
    status["attempts"].as_u64().unwrap_or(0) >= 3
}

pub fn error_code(body: &Value) -> &str {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error envelope: {body}"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    code
}

/// One request a test server received: its headers (lowercase names) and body.
pub type Recorded = (HashMap<String, String>, Vec<u8>);

/// A server on a real port standing for a dialogue engine or a webhook:
/// records every request and answers per its mode.
#[derive(Clone)]
pub struct TestEngine {
    pub url: String,
    pub received: Arc<Mutex<Vec<Recorded>>>,
    /// "ok" (200 with the answer), "fail" (500), "status:<code>" (empty
    /// body) or "hang:<ms>" (then the answer).
    pub mode: Arc<Mutex<String>>,
}

pub async fn spawn_engine(answer: Value) -> TestEngine {
    let received: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let mode = Arc::new(Mutex::new("ok".to_owned()));
    let (r, m) = (received.clone(), mode.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (r, m, answer) = (r.clone(), m.clone(), answer.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (r, m, answer) = (r.clone(), m.clone(), answer.clone());
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                r.lock().unwrap().push((headers, body.to_vec()));
                let mode = m.lock().unwrap().clone();
                if let Some(ms) = mode.strip_prefix("hang:") {
                    tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                } else if mode == "fail" {
                    return HttpResponse::InternalServerError().finish();
                } else if let Some(code) = mode.strip_prefix("status:") {
                    let code =
                        actix_web::http::StatusCode::from_u16(code.parse().unwrap()).unwrap();
                    return HttpResponse::build(code).finish();
                }
                // `{{text}}` in the answer is replaced with the text received.
                let said = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    v.pointer("/content/text")
                        .or(v.pointer("/message"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                let text = answer
                    .to_string()
                    .replace("{{text}}", &said.unwrap_or_default());
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(text)
            }
        }))
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    TestEngine {
        url: format!("http://127.0.0.1:{port}/engine"),
        received,
        mode,
    }
}

/// Polls `check` every 50 ms until it is true or `limit` passes: for what
/// a background writer (the audit, a worker) does after an answer.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Runs the futures concurrently and returns their outputs in order (a
/// `join_all` without another dependency).
pub async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}
