//! `POST /oauth2/v2.0/token` (§1.2–1.6): the JWT-bearer grant with strict
//! verification of the assertion, the authorization_code grant (§2) with
//! single-use codes from `GET /oauth2/v2.0/authorize` (a consent page), and
//! the refresh_token grant.
//!
//! Errors: the only observed token-endpoint error body is
//! `{"returnCode":"99","returnMessage":"UnexpectedError"}` (status not
//! recorded). The emulator answers 400 with that shape, code "99", and a
//! `returnMessage` naming the failure ([I]: the real messages are unknown).

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::consent::{self, Consent};
use super::state::{AccessToken, AuthCode, Emulator, RefreshToken, State};
use crate::domain::str_field;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth2/v2.0/authorize", web::get().to(authorize))
        .route("/oauth2/v2.0/token", web::post().to(token))
        .route("/oauth2/v2.0/revoke", web::post().to(revoke));
}

fn token_error(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"returnCode": "99", "returnMessage": message}))
}

/// Form fields from the body and, as the real server reads them too, the
/// query string (§1.2). A double-encoded value (as the official Python sample
/// sends `grant_type`) is decoded once more.
fn fields(req: &HttpRequest, body: &[u8]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    let query = req.query_string().as_bytes();
    for source in [query, body] {
        for (k, v) in url::form_urlencoded::parse(source) {
            let v = if v.contains("%3A") || v.contains("%3a") {
                url::form_urlencoded::parse(format!("x={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| v.into_owned())
            } else {
                v.into_owned()
            };
            map.entry(k.into_owned()).or_insert(v);
        }
    }
    map
}

async fn token(req: HttpRequest, body: web::Bytes, emulator: web::Data<Emulator>) -> HttpResponse {
    let form = fields(&req, &body);
    let delay = emulator.lock().faults.token_latency_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let mut state = emulator.lock();
    if state.faults.token_endpoint_down {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"returnCode": "99", "returnMessage": "UnexpectedError"}));
    }
    let result = match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => jwt_grant(&mut state, &form),
        Some("refresh_token") => refresh_grant(&mut state, &form),
        Some("authorization_code") => code_grant(&mut state, &form),
        Some(_) => Err("UnsupportedGrantType".to_owned()),
        None => Err("MissingParameter: grant_type".to_owned()),
    };
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(message) => {
            if let Some(app) = form.get("client_id").and_then(|id| state.apps.get_mut(id)) {
                app.stats.token_errors += 1;
            }
            token_error(&message)
        }
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("MissingParameter: {name}"))
}

/// Checks client id and secret; returns the client id.
fn authenticate_client(state: &State, form: &HashMap<String, String>) -> Result<String, String> {
    let client_id = required(form, "client_id")?;
    let secret = required(form, "client_secret")?;
    let app = state
        .apps
        .get(client_id)
        .ok_or("InvalidClient: unknown client_id")?;
    if !bool::from(app.config.client_secret.as_bytes().ct_eq(secret.as_bytes())) {
        return Err("InvalidClient: client_secret does not match".to_owned());
    }
    Ok(client_id.to_owned())
}

fn jwt_grant(state: &mut State, form: &HashMap<String, String>) -> Result<Value, String> {
    let client_id = authenticate_client(state, form)?;
    let assertion = required(form, "assertion")?;
    let requested = required(form, "scope")?;
    let now = state.now();
    let app = state.apps.get(&client_id).ok_or("InvalidClient")?;
    verify_assertion(
        assertion,
        &app.public_key,
        &client_id,
        &app.config.service_account,
        now,
    )?;
    // Scopes are space-separated in requests; tolerate commas too.
    let requested: Vec<String> = requested
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = requested
        .iter()
        .filter(|s| !app.config.scopes.contains(s))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "InvalidScope: not granted to this app: {}",
            names.join(" ")
        ));
    }
    if let Some(app) = state.apps.get_mut(&client_id) {
        app.stats.tokens_issued += 1;
    }
    let refresh = new_refresh_token(state, &client_id, &requested, now);
    Ok(issue_access(state, &client_id, requested, Some(refresh)))
}

fn refresh_grant(state: &mut State, form: &HashMap<String, String>) -> Result<Value, String> {
    let client_id = authenticate_client(state, form)?;
    let presented = required(form, "refresh_token")?;
    let now = state.now();
    let scopes = match state.refresh_tokens.get(presented) {
        Some(rt) if rt.client_id == client_id && rt.expires_at > now => rt.scopes.clone(),
        // The one observed refresh failure (a mangled token) looked like this (§1.5).
        _ => return Err("UnexpectedError".to_owned()),
    };
    if let Some(app) = state.apps.get_mut(&client_id) {
        app.stats.tokens_refreshed += 1;
    }
    let rotated = if state.config.refresh_token_rotation {
        state.refresh_tokens.remove(presented);
        Some(new_refresh_token(state, &client_id, &scopes, now))
    } else {
        None // rotation off: no refresh_token in the answer (§1.4)
    };
    Ok(issue_access(state, &client_id, scopes, rotated))
}

/// Issues a refresh token for the app and scopes, for the configured
/// lifetime from `now`.
fn new_refresh_token(state: &mut State, client_id: &str, scopes: &[String], now: i64) -> String {
    let lifetime =
        i64::try_from(state.config.refresh_token_lifetime_seconds).unwrap_or(i64::MAX / 4);
    let token = State::new_token();
    state.refresh_tokens.insert(
        token.clone(),
        RefreshToken {
            client_id: client_id.to_owned(),
            scopes: scopes.to_vec(),
            expires_at: now.saturating_add(lifetime),
        },
    );
    token
}

/// The authorization_code grant (§2): client id and secret, a code issued
/// for this app and not used yet (it is used up now, even when refused
/// later), unexpired, and the same `redirect_uri` it was issued for.
fn code_grant(state: &mut State, form: &HashMap<String, String>) -> Result<Value, String> {
    let client_id = authenticate_client(state, form)?;
    let code = required(form, "code")?;
    let redirect_uri = required(form, "redirect_uri")?;
    let now = state.now();
    let granted = match state.codes.remove(code) {
        Some(c) if c.client_id != client_id => {
            return Err("InvalidGrant: the code was issued to another app".to_owned())
        }
        Some(c) if c.expires_at < now => {
            return Err("InvalidGrant: the code has expired".to_owned())
        }
        Some(c) if c.redirect_uri != redirect_uri => {
            return Err(
                "InvalidGrant: redirect_uri differs from the authorize request's".to_owned(),
            )
        }
        Some(c) => c,
        None => return Err("InvalidGrant: unknown or already used code".to_owned()),
    };
    if let Some(app) = state.apps.get_mut(&client_id) {
        app.stats.codes_exchanged += 1;
    }
    let refresh = new_refresh_token(state, &client_id, &granted.scopes, now);
    Ok(issue_access(
        state,
        &client_id,
        granted.scopes,
        Some(refresh),
    ))
}

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    state: String,
}

/// The consent page a member sees after signing in (§2): "Allow"
/// redirects to the redirect URL with a single-use code (10 minutes) and
/// the state; "Deny" with `error=access_denied` and the state. The real
/// service also checks `redirect_uri` against the Developer Console's
/// Redirect URL; the emulator binds the code to it and checks it at the
/// exchange.
async fn authorize(
    emulator: web::Data<Emulator>,
    query: web::Query<AuthorizeQuery>,
) -> HttpResponse {
    let q = query.into_inner();
    let error = consent::error;
    if q.response_type != "code" {
        return error("unsupported_response_type");
    }
    let mut state = emulator.lock();
    let Some(app) = state.apps.get(&q.client_id) else {
        return error("invalid_client");
    };
    let scopes: Vec<String> = q
        .scope
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() || scopes.iter().any(|s| !app.config.scopes.contains(s)) {
        return error("invalid_scope");
    }
    let Ok(redirect) = url::Url::parse(&q.redirect_uri) else {
        return error("invalid_redirect_uri");
    };
    if !matches!(redirect.scheme(), "http" | "https") {
        return error("invalid_redirect_uri");
    }
    let code = URL_SAFE_NO_PAD.encode(crate::secrets::random_bytes(24));
    let expires_at = state.now() + 600;
    state.codes.insert(
        code.clone(),
        AuthCode {
            client_id: q.client_id.clone(),
            redirect_uri: q.redirect_uri.clone(),
            scopes: scopes.clone(),
            expires_at,
        },
    );
    let question = format!("Allow {} to access your NAVER WORKS account?", q.client_id);
    consent::page(
        &Consent {
            title: "NAVER WORKS · Allow access",
            question: &question,
            scopes: &scopes.join(" "),
            deny: "Deny",
        },
        &redirect,
        &code,
        &q.state,
    )
}

fn issue_access(
    state: &mut State,
    client_id: &str,
    scopes: Vec<String>,
    refresh: Option<String>,
) -> Value {
    let lifetime = state.config.token_lifetime_seconds;
    let effective = state
        .faults
        .token_expire_after_seconds
        .map_or(lifetime, |s| s.min(lifetime));
    let access = State::new_token();
    let scope = scopes.join(" ");
    let expires_at = state.now() + i64::try_from(effective).unwrap_or(i64::MAX / 2);
    state.access_tokens.insert(
        access.clone(),
        AccessToken {
            client_id: client_id.to_owned(),
            scopes,
            expires_at,
        },
    );
    let expires_in = if state.config.expires_in_as_number {
        json!(lifetime)
    } else {
        json!(lifetime.to_string())
    };
    let mut body = json!({
        "access_token": access,
        "scope": scope,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    body
}

/// Strict RS256 check (§1.1, §8): alg RS256 only, signature by the app's key,
/// iss = client id, sub = service account, exp in the future and at most 60
/// minutes after iat. iat/exp may be floats (the official Python sample).
pub fn verify_assertion(
    jwt: &str,
    key: &rsa::RsaPublicKey,
    client_id: &str,
    service_account: &str,
    now: i64,
) -> Result<(), String> {
    let mut parts = jwt.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("InvalidAssertion: not a JWT (three dot-separated parts)".to_owned());
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| format!("InvalidAssertion: {what} is not base64url"))
    };
    let header: Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|_| "InvalidAssertion: header is not JSON".to_owned())?;
    if str_field(&header, "alg") != Some("RS256") {
        return Err("InvalidAssertion: alg must be RS256".to_owned());
    }
    let signature = Signature::try_from(decode(s, "signature")?.as_slice())
        .map_err(|_| "InvalidAssertion: bad signature encoding".to_owned())?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| {
            "InvalidAssertion: signature does not verify with the app's public key".to_owned()
        })?;
    let claims: Value = serde_json::from_slice(&decode(c, "claims")?)
        .map_err(|_| "InvalidAssertion: claims are not JSON".to_owned())?;
    if str_field(&claims, "iss") != Some(client_id) {
        return Err("InvalidAssertion: iss must be the Client ID".to_owned());
    }
    if str_field(&claims, "sub") != Some(service_account) {
        return Err("InvalidAssertion: sub must be the app's Service Account".to_owned());
    }
    let number = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_f64)
            .ok_or(format!("InvalidAssertion: {name} missing"))
    };
    let (iat, exp) = (number("iat")?, number("exp")?);
    #[allow(clippy::cast_precision_loss)] // Unix seconds fit an f64 exactly
    let now = now as f64;
    if exp <= now {
        return Err("InvalidAssertion: expired (exp is in the past)".to_owned());
    }
    if exp - iat > 3600.0 {
        return Err("InvalidAssertion: exp is more than 60 minutes after iat".to_owned());
    }
    if exp < iat {
        return Err("InvalidAssertion: exp is before iat".to_owned());
    }
    Ok(())
}

/// `POST /oauth2/v2.0/revoke` (§0, [3P]): forgets the token.
async fn revoke(req: HttpRequest, body: web::Bytes, emulator: web::Data<Emulator>) -> HttpResponse {
    let form = fields(&req, &body);
    let mut state = emulator.lock();
    if let Err(message) = authenticate_client(&state, &form) {
        return token_error(&message);
    }
    if let Some(token) = form.get("token") {
        state.access_tokens.remove(token);
        state.refresh_tokens.remove(token);
    }
    HttpResponse::Ok().finish()
}
