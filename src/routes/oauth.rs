//! What the two browser OAuth flows share ("Add to Slack", NAVER WORKS
//! user sign-in): a `state` that is random, single-use, bound to one
//! connection and to one browser (a cookie of the flow's own), expiring in
//! 10 minutes, at most 1,000 in flight per connection (the start URL is
//! public); and the small pages both answer with (no scripts, nothing
//! embedded, never framed, never cached).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};

use crate::channels::Channel;
use crate::domain::ids::ConnectionId;
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::service::activity::Actor;
use crate::service::oauth::Outcome;
use crate::state::limiter::client;
use crate::state::AppState;
use crate::store::ConnectionRecord;

const STATE_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// Flows of one connection that may be in progress at once.
const MAX_STATES_IN_FLIGHT: i64 = 1000;

/// One browser flow's names.
pub struct Flow {
    /// The browser cookie that binds a state to the browser.
    pub cookie: &'static str,
    /// The cookie's path (the flow's routes).
    pub path: &'static str,
    /// The refused page's title.
    pub refused_title: &'static str,
    /// The refused page's last line: what did not happen, how to restart.
    pub restart: &'static str,
    /// The platform's name, as the refused pages say it.
    pub platform: &'static str,
    /// The page when the person cancelled at the platform: title and text.
    pub cancelled: (&'static str, &'static str),
    /// The connections the flow is for.
    pub channel: Channel,
    /// What the person does, for the refused pages ("sign-in", "install").
    pub what: &'static str,
    /// The page's text when the platform could not be reached.
    pub unreachable: &'static str,
    /// Who completes the flow, as the activity log names them.
    pub actor: &'static str,
}

fn hash(text: &str) -> String {
    crate::secrets::hex(&Sha256::digest(text.as_bytes()))
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(crate::secrets::random_bytes(32))
}

/// A small page (no scripts, nothing embedded, never framed).
pub fn page(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width"; title { (title) " · botgate" } }
            body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; line-height: 1.5" {
                h1 { (title) }
                (body)
            }
        }
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'none'; frame-ancestors 'none'"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html.into_string())
}

/// The page of a refused callback: `message` says why (never a value from
/// the request).
pub fn refused(flow: &Flow, message: &str) -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        flow.refused_title,
        html! { p #problem { (message) } p { (flow.restart) } },
    )
}

/// A flow's callback: [`finish`], then `exchange` (the service's) with
/// the connection and the code, then the page for what it came to
/// ([`concluded`]).
pub async fn callback<T>(
    req: &HttpRequest,
    state: &AppState,
    flow: &Flow,
    exchange: impl AsyncFnOnce(
        &AppState,
        &ConnectionRecord,
        &str,
        &Actor,
    ) -> Result<Outcome<T>, ApiError>,
    done: impl FnOnce(T) -> HttpResponse,
) -> Result<HttpResponse, ApiError> {
    let addr = client(
        req.peer_addr().map(|a| a.ip()),
        req.headers(),
        &state.settings.trusted_proxies,
    );
    let actor = Actor::new(flow.actor, "oauth", addr);
    Ok(match finish(req, state, flow).await? {
        Ok(r) => concluded(
            flow,
            exchange(state, &r.connection, &r.code, &actor).await?,
            done,
        ),
        Err(page) => page,
    })
}

/// The page for what the service made of the callback's code: `done`
/// draws the success page.
fn concluded<T>(
    flow: &Flow,
    outcome: Outcome<T>,
    done: impl FnOnce(T) -> HttpResponse,
) -> HttpResponse {
    match outcome {
        Outcome::Done(value) => done(value),
        Outcome::Refused(message) => refused(flow, &message),
        Outcome::Unreachable => page(
            StatusCode::BAD_GATEWAY,
            &format!("{} could not be reached", flow.platform),
            html! { p #problem { (flow.unreachable) } },
        ),
    }
}

/// A redirect that is neither cached nor tells the target where it came from.
pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .finish()
}

/// A started flow: the `state` to send to the platform, and the cookie
/// that binds it to this browser (add it to the answer with [`answer`]).
pub struct Started {
    pub state: String,
    cookie: Cookie<'static>,
}

/// Starts a flow for `connection`: a new state stored (hashed) with this
/// browser's nonce, reusing the browser's cookie while it lasts. `Err` is
/// the page to answer when too many flows are in progress.
pub async fn start(
    req: &HttpRequest,
    state: &AppState,
    flow: &Flow,
    connection: &ConnectionId,
) -> Result<Result<Started, HttpResponse>, ApiError> {
    let browser = req
        .cookie(flow.cookie)
        .map(|c| c.value().to_owned())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_else(random_token);
    let oauth_state = random_token();
    let now = now_millis();
    if state.store.oauth_states_in_flight(connection, now).await? >= MAX_STATES_IN_FLIGHT {
        return Ok(Err(page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ins in progress",
            html! { p #problem { "Too many of these were started for this connection in the last ten minutes. Try again later." } },
        )));
    }
    state
        .store
        .put_oauth_state(
            &hash(&oauth_state),
            connection,
            &hash(&browser),
            now + STATE_LIFETIME_MS,
            now,
        )
        .await?;
    let cookie = Cookie::build(flow.cookie, browser)
        .path(flow.path)
        .http_only(true)
        .secure(state.settings.public_url.scheme() == "https")
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::minutes(10))
        .finish();
    Ok(Ok(Started {
        state: oauth_state,
        cookie,
    }))
}

/// `response` with the started flow's cookie.
pub fn answer(started: &Started, mut response: HttpResponse) -> Result<HttpResponse, ApiError> {
    response
        .add_cookie(&started.cookie)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cookie: {e}")))?;
    Ok(response)
}

/// The callback's query, bounded (16 pairs).
fn query(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .take(16)
        .collect()
}

/// One query parameter, bounded.
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty() && v.len() <= 512)
}

/// A callback that passed [`finish`]: the connection its state was issued
/// for, and the code to exchange.
struct Returned {
    connection: ConnectionRecord,
    code: String,
}

/// Checks the callback: its `state` present, issued here and not used yet
/// (it is used up now, whatever follows), unexpired, and this browser's;
/// then the platform's `error` (the cancelled page) or its `code`. `Err` is
/// the page to answer.
async fn finish(
    req: &HttpRequest,
    state: &AppState,
    flow: &Flow,
) -> Result<Result<Returned, HttpResponse>, ApiError> {
    let query = query(req);
    let connection_id = match check_state(req, state, flow, &query).await? {
        Ok(connection_id) => connection_id,
        Err(refused) => return Ok(Err(refused)),
    };
    if param(&query, "error").is_some() {
        let (title, text) = flow.cancelled;
        return Ok(Err(page(
            StatusCode::OK,
            title,
            html! { p #cancelled { (text) } },
        )));
    }
    let Some(code) = param(&query, "code") else {
        return Ok(Err(refused(
            flow,
            &format!("{} sent no code.", flow.platform),
        )));
    };
    let Some(connection) = state
        .store
        .connection_by_id(&connection_id)
        .await?
        .filter(|c| Channel::of(c) == flow.channel)
    else {
        return Ok(Err(refused(
            flow,
            &format!(
                "The connection this {} was for no longer exists.",
                flow.what
            ),
        )));
    };
    Ok(Ok(Returned {
        connection,
        code: code.to_owned(),
    }))
}

async fn check_state(
    req: &HttpRequest,
    state: &AppState,
    flow: &Flow,
    query: &[(String, String)],
) -> Result<Result<ConnectionId, HttpResponse>, ApiError> {
    let Some(oauth_state) = param(query, "state") else {
        return Ok(Err(refused(
            flow,
            "The link has no state: it was not started here.",
        )));
    };
    let Some((connection_id, browser_hash, expires_at)) =
        state.store.take_oauth_state(&hash(oauth_state)).await?
    else {
        return Ok(Err(refused(
            flow,
            "This link is not valid: it was already used, or it was not made here.",
        )));
    };
    if expires_at < now_millis() {
        return Ok(Err(refused(
            flow,
            "This link has expired (after ten minutes).",
        )));
    }
    let same_browser = req
        .cookie(flow.cookie)
        .is_some_and(|c| hash(c.value()) == browser_hash);
    if !same_browser {
        return Ok(Err(refused(
            flow,
            "This was started in another browser. Start it again here.",
        )));
    }
    Ok(Ok(connection_id))
}
