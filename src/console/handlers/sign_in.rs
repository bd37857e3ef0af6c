//! Signing in and out: the token form, one-time links, sessions.

use super::*;

pub async fn index(ctx: Ctx) -> HttpResponse {
    let to = match &ctx.session {
        None => "/console/sign-in",
        Some(s) if s.tenant.is_some() => "/console/connections",
        Some(_) => "/console/tenants",
    };
    ctx.redirect(to)
}

pub async fn sign_in_page(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let message = if req.query_string().contains("out=1") {
        Some(T::SignedOut)
    } else {
        None
    };
    sign_in_form(&ctx, StatusCode::OK, false, message)
}

/// The sign-in form with a fresh double-submit nonce in a cookie.
fn sign_in_form(ctx: &Ctx, status: StatusCode, failed: bool, message: Option<T>) -> HttpResponse {
    let nonce = generate_token("");
    let nonce = nonce.expose_secret();
    let markup = pages::sign_in(ctx, &csrf_of(nonce), failed, message);
    ctx.builder(status)
        .cookie(ctx.cookie(SIGN_IN_COOKIE, nonce.to_owned()))
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

pub async fn sign_in(ctx: Ctx, req: HttpRequest, form: Form) -> HttpResponse {
    let page = sign_in_inner(&ctx, &req, &form).await;
    finish(&ctx, page)
}

async fn sign_in_inner(ctx: &Ctx, req: &HttpRequest, form: &HashMap<String, String>) -> Page {
    let genuine = match (&ctx.sign_in_nonce, form.get("nonce")) {
        (Some(cookie), Some(sent)) => same(&csrf_of(cookie), sent),
        _ => false,
    };
    if !genuine {
        return Ok(form_expired(ctx));
    }
    // Guessing keys here is counted per client, as on the auth URLs.
    let ip = crate::state::limiter::client(
        req.peer_addr().map(|a| a.ip()),
        req.headers(),
        &ctx.state.settings.trusted_proxies,
    );
    let attempt =
        crate::state::limiter::Attempt::new(ip, crate::state::limiter::Family::Console, None);
    if ctx.state.limiter.blocked(&attempt).is_some() {
        return Ok(sign_in_form(ctx, StatusCode::TOO_MANY_REQUESTS, true, None));
    }
    let key = text(form, "key");
    let caller = if key.is_empty() {
        None
    } else {
        Caller::of_token(&ctx.state, &key).await?
    };
    // A replaced key still in its grace serves the API, not the console.
    let Some(caller) = caller.filter(|c| !c.holds_replaced_key(&key)) else {
        tokio::time::sleep(ctx.state.limiter.failure(&attempt)).await;
        return Ok(sign_in_form(ctx, StatusCode::UNAUTHORIZED, true, None));
    };
    let (role, tenant_id) = match caller {
        Caller::Admin => (Role::Admin, None),
        Caller::Tenant(t) => (Role::Tenant, Some(t.id)),
    };
    start_session(ctx, role, tenant_id, "/console").await
}

/// `GET /console/link/{token}`: a one-time sign-in link (`botgate demo`
/// prints one). Used up by this request whatever follows; an unknown, used
/// or expired one gets the sign-in form saying so.
pub async fn sign_in_link(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let token = path.into_inner();
        let taken = if token.len() <= 128 {
            ctx.state
                .store
                .take_console_link(&hash_token(&token), now_millis())
                .await?
        } else {
            None
        };
        let Some((tenant, target)) = taken else {
            return Ok(sign_in_form(
                &ctx,
                StatusCode::GONE,
                false,
                Some(T::LinkUsed),
            ));
        };
        let target = if target.starts_with("/console/") {
            target
        } else {
            "/console".to_owned()
        };
        start_session(&ctx, Role::Tenant, Some(tenant), &target).await
    }
    .await;
    finish(&ctx, page)
}

/// A new session for this browser (its old one ended), and a redirect to `to`.
async fn start_session(ctx: &Ctx, role: Role, tenant_id: Option<TenantId>, to: &str) -> Page {
    if let Some(old) = &ctx.session {
        ctx.state.store.delete_session(&old.token_hash).await?;
    }
    let token = generate_token("");
    let now = now_millis();
    ctx.state
        .store
        .create_session(&ConsoleSession {
            token_hash: hash_token(token.expose_secret()),
            role,
            tenant_id,
            created_at: now,
            expires_at: now
                + millis(
                    ctx.state
                        .settings
                        .console_idle
                        .min(ctx.state.settings.console_max),
                ),
        })
        .await?;
    tracing::info!(role = ?role, "console sign-in");
    let mut response = ctx.redirect(to);
    response
        .add_cookie(&ctx.cookie(SESSION_COOKIE, token.expose_secret().to_owned()))
        .map_err(|e| ApiError::Internal(e.into()))?;
    response
        .add_removal_cookie(&ctx.cookie(SIGN_IN_COOKIE, String::new()))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(response)
}

pub async fn sign_out(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        let s = genuine(&ctx, &form)?;
        ctx.state.store.delete_session(&s.token_hash).await?;
        let mut response = ctx.redirect("/console/sign-in?out=1");
        response
            .add_removal_cookie(&ctx.cookie(SESSION_COOKIE, String::new()))
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(response)
    }
    .await;
    finish(&ctx, page)
}
