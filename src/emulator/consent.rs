//! The consent page both emulated platforms show (NAVERWORKS.md §2,
//! SLACK.md OAuth v2): "Allow" goes back to the redirect URL with the code
//! and the state, the other link with `error=access_denied` and the state.

use actix_web::HttpResponse;

/// What one platform's page says.
pub struct Consent<'a> {
    pub title: &'a str,
    pub question: &'a str,
    pub scopes: &'a str,
    /// The refusing link's label ("Deny", "Cancel").
    pub deny: &'a str,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}

/// The page, its links made from `redirect` (already checked to parse).
pub fn page(consent: &Consent<'_>, redirect: &url::Url, code: &str, state: &str) -> HttpResponse {
    let mut allow = redirect.clone();
    let mut deny = redirect.clone();
    allow
        .query_pairs_mut()
        .append_pair("code", code)
        .append_pair("state", state);
    deny.query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("state", state);
    let page = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body>\
         <h1>{question}</h1><p id=scopes>{scopes}</p>\
         <p><a id=allow href=\"{allow}\">Allow</a> <a id=deny href=\"{deny}\">{deny_label}</a></p></body></html>",
        title = escape(consent.title),
        question = escape(consent.question),
        scopes = escape(consent.scopes),
        allow = escape(allow.as_str()),
        deny = escape(deny.as_str()),
        deny_label = escape(consent.deny),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page)
}

/// The page for a request the platform refuses: the error's code.
pub fn error(code: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(format!("<p id=error>{}</p>", escape(code)))
}
