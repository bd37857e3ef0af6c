//! `GET /api/openapi.json` (the OpenAPI 3 document, kept beside the route
//! table; a test checks that the two agree) and `GET /api/docs`, a page
//! listing every operation.

use actix_web::HttpResponse;
use serde_json::Value;

pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn page() -> HttpResponse {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
    let mut rows = String::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let summary = op.get("summary").and_then(Value::as_str).unwrap_or("");
                rows.push_str(&format!(
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>\n",
                    escape(&method.to_uppercase()),
                    escape(path),
                    escape(summary)
                ));
            }
        }
    }
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>botgate API</title></head>\
         <body><h1>botgate API</h1><p>The machine-readable document: <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>\
         <table><thead><tr><th>Method</th><th>Path</th><th>What</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'",
        ))
        .body(html)
}
