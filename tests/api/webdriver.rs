//! Just enough of the W3C WebDriver protocol to drive the system's headless
//! Chromium through chromedriver, over reqwest (no client crate).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's packages
//! `chromium chromium-driver`; `.ci/run` installs them). Missing, the test
//! fails with that instruction; it is never skipped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

/// chromedriver on a free port, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
    client: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start() -> Self {
        let driver = std::env::var("CHROMEDRIVER")
            .ok()
            .or_else(|| which(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]));
        let Some(driver) = driver else {
            panic!(
                "chromedriver is not installed: the console's browser test needs \
                 `apt-get install chromium chromium-driver` (or CHROMEDRIVER=/path)"
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url, client }
    }

    /// A new headless browser window.
    pub async fn browser(&self, accept_language: &str, downloads: &std::path::Path) -> Browser {
        let binary = std::env::var("CHROMIUM")
            .ok()
            .or_else(|| which(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]))
            .expect("chromium is not installed: `apt-get install chromium chromium-driver`");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--lang={accept_language}"),
                    format!("--user-data-dir={}", downloads.join("profile").display()),
                ],
                "prefs": {"intl.accept_languages": accept_language},
            },
        }}});
        let res: Value = self
            .client
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {res}"))
            .to_owned();
        Browser {
            base: format!("{}/session/{id}", self.url),
            client: self.client.clone(),
        }
    }
}

pub struct Browser {
    base: String,
    client: reqwest::Client,
}

#[derive(Clone)]
pub struct Element(String);

impl Element {
    pub fn id(&self) -> &str {
        &self.0
    }
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(error) = res["value"]["error"].as_str() {
            panic!("webdriver {path}: {error}: {}", res["value"]["message"]);
        }
        res["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_owned()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Element(e[ELEMENT].as_str().unwrap().to_owned()))
            .collect()
    }

    /// The element, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}:\n{}",
                self.url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.text_of(&e).await
    }

    pub async fn text_of(&self, e: &Element) -> String {
        self.get(&format!("/element/{}/text", e.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn value(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{}/property/value", e.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.get(&format!("/element/{}/attribute/{name}", e.0))
            .await
            .as_str()
            .map(str::to_owned)
    }

    pub async fn clear(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }))
            .await;
    }

    /// Replaces a field's content with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        self.clear(css).await;
        self.type_into(css, text).await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.click_on(&e).await;
    }

    pub async fn click_on(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the whole page (the window is stretched to its height).
    pub async fn screenshot(&self, path: &std::path::Path) {
        let height = self
            .execute("return document.documentElement.scrollHeight;", json!([]))
            .await
            .as_u64()
            .unwrap_or(1000);
        self.post(
            "/window/rect",
            json!({"width": 1280, "height": height.clamp(600, 4000) + 140}),
        )
        .await;
        let png = self.get("/screenshot").await;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self.post("/window/rect", json!({"width": 1280, "height": 1000}))
            .await;
    }

    pub async fn quit(self) {
        let _ = self.client.delete(&self.base).send().await;
    }
}
