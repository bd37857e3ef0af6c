//! An operator's tenant list (create, open), and a tenant's dialogue
//! engine.

use super::*;

pub async fn tenants_page(ctx: Ctx) -> HttpResponse {
    let page = tenants_inner(&ctx, None, &[], "").await;
    finish(&ctx, page)
}

async fn tenants_inner(
    ctx: &Ctx,
    created: Option<(&TenantRecord, &str)>,
    errors: &[FieldError],
    name: &str,
) -> Page {
    admin(ctx)?;
    let l = ctx.lang;
    let all = ctx.state.store.tenants().await?;
    let body = html! {
        @if let Some((tenant, key)) = created {
            (notice(T::TenantCreated.get(l)))
            (copyable("new-api-key", &format!("{} ({})", T::ApiKey.get(l), tenant.name), key, l))
        }
        p { (T::TenantsIntro.get(l)) }
        @let rows = all.iter().map(|t| html! {
            tr {
                td { (t.name) }
                td { code { (t.id.as_str()) } }
                td { (when(t.created_at)) }
                td {
                    form.inline method="post" action={ "/console/tenants/" (t.id.as_str()) "/open" } {
                        (csrf(ctx))
                        button type="submit" { (T::Open.get(l)) }
                    }
                }
            }
        }).collect();
        (listing(Some("tenants"), &[T::TenantName.get(l), "ID", T::Created.get(l), ""], rows, T::NoTenants.get(l)))
        h2 { (T::NewTenant.get(l)) }
        form.card method="post" action="/console/tenants" {
            (csrf(ctx))
            div.field.invalid[!errors.is_empty()] {
                label for="name" { (T::TenantName.get(l)) }
                input #name type="text" name="name" value=(name) required;
                @for e in errors {
                    p.error { (crate::console::i18n::say(&e.message, l)) }
                }
            }
            button #create-tenant type="submit" { (T::CreateTenant.get(l)) }
        }
    };
    form_page(ctx, T::Tenants, errors, body)
}

pub async fn create_tenant(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        admin(&ctx)?;
        let name = text(&form, "name");
        match TenantName::parse(&name) {
            Err(e) => tenants_inner(&ctx, None, &[e], &name).await,
            Ok(valid) => {
                let (tenant, key) = tenants::create(&ctx.state.store, &valid, &ctx.actor()).await?;
                tracing::info!(tenant_id = %tenant.id, "tenant created in the console");
                tenants_inner(&ctx, Some((&tenant, key.expose_secret())), &[], "").await
            }
        }
    }
    .await;
    finish(&ctx, page)
}

pub async fn open_tenant(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let s = genuine(&ctx, &form)?;
        admin(&ctx)?;
        const NOT_FOUND: ApiError = ApiError::NotFound("no such tenant");
        let id = TenantId::parse(&path).ok_or(NOT_FOUND)?;
        let t = ctx.state.store.tenant(&id).await?.ok_or(NOT_FOUND)?;
        ctx.state
            .store
            .set_session_tenant(&s.token_hash, &t.id)
            .await?;
        Ok(ctx.redirect("/console/connections"))
    }
    .await;
    finish(&ctx, page)
}

/// A replaced API key, shown once on the settings page: the key, and
/// until when the old one works.
struct Replaced {
    key: secrecy::SecretString,
    old_until: Option<i64>,
}

/// What the engine page shows beside its forms: what was just done.
enum Outcome<'a> {
    Nothing,
    Saved,
    /// The status hook set, or removed.
    HookSaved,
    HookRemoved,
    HookTested(&'a StatusHookTest),
    Replaced(&'a Replaced),
    Tested(&'a EngineTest),
}

async fn engine_form(
    ctx: &Ctx,
    t: &TenantRecord,
    values: Option<&HashMap<String, String>>,
    errors: &[FieldError],
    outcome: Outcome<'_>,
) -> Page {
    let l = ctx.lang;
    let view = tenants::engine_view(&ctx.state, t).await?;
    let hook = status_hook::view(&ctx.state, t).await?;
    let get = |name: &str| -> String {
        match values {
            Some(v) => v.get(name).cloned().unwrap_or_default(),
            None => match name {
                "kind" => view.kind.clone(),
                "url" => view.url.clone().unwrap_or_default(),
                "fallback_text" => view.fallback_text.clone().unwrap_or_default(),
                _ => String::new(),
            },
        }
    };
    let kind = get("kind");
    let field_errors = |name: &str| -> Vec<String> {
        errors
            .iter()
            .filter(|e| e.field == name)
            .map(|e| crate::console::i18n::say(&e.message, l))
            .collect()
    };
    let secret_now = view.secret.clone();
    let body = html! {
        @if matches!(outcome, Outcome::Saved) { (notice(T::Saved.get(l))) }
        @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
        p { (T::EngineIntro.get(l)) }
        form.card #engine-form method="post" action="/console/engine" novalidate {
            (csrf(ctx))
            fieldset.field.invalid[!field_errors("kind").is_empty()] {
                legend { (T::EngineKind.get(l)) }
                @for (value, label) in [("echo", T::EngineEcho), ("http", T::EngineHttp), ("rasa", T::EngineRasa)] {
                    label.radio {
                        input type="radio" name="kind" value=(value) id={ "kind-" (value) } checked[kind == value];
                        " " (label.get(l))
                    }
                }
                @for m in field_errors("kind") { p.error { (m) } }
            }
            div.field.invalid[!field_errors("url").is_empty()] {
                label for="url" { (T::EngineUrl.get(l)) }
                input #url type="text" name="url" value=(get("url")) spellcheck="false" autocomplete="off";
                small.hint { (T::EngineUrlHint.get(l)) }
                @for m in field_errors("url") { p.error #url-error { (m) } }
            }
            div.field.invalid[!field_errors("secret").is_empty()] {
                label for="secret" { (T::EngineSecret.get(l)) }
                @if let Some(now) = &secret_now { span.current { (T::Current.get(l)) ": " code { (now) } } }
                input #secret type="password" name="secret" value="" autocomplete="new-password";
                small.hint { (T::EngineSecretHint.get(l)) }
                @for m in field_errors("secret") { p.error #secret-error { (m) } }
            }
            div.field.invalid[!field_errors("fallback_text").is_empty()] {
                label for="fallback_text" { (T::FallbackText.get(l)) }
                input #fallback_text type="text" name="fallback_text" value=(get("fallback_text"));
                small.hint { (T::FallbackTextHint.get(l)) }
                @for m in field_errors("fallback_text") { p.error { (m) } }
            }
            button #save-engine type="submit" { (T::Save.get(l)) }
        }
        section #engine-test {
            h2 { (T::EngineTest.get(l)) }
            p { (T::EngineTestIntro.get(l)) }
            form.card #engine-test-form method="post" action="/console/engine/test" {
                (csrf(ctx))
                div.field.invalid[!field_errors("text").is_empty()] {
                    label for="test-text" { (T::MessageText.get(l)) }
                    input #test-text type="text" name="text" value=(values.and_then(|v| v.get("text")).map_or("", String::as_str));
                    @for m in field_errors("text") { p.error #test-text-error { (m) } }
                }
                button #test-engine type="submit" { (T::EngineTestRun.get(l)) }
            }
            @if let Outcome::Tested(tested) = &outcome {
                div #engine-test-result data-ok=(tested.ok) {
                    @if tested.ok {
                        p.ok { (T::EngineAnswered.get(l)) " " (tested.reply_count) " · " (tested.elapsed_ms) " ms" }
                        @for reply in &tested.replies {
                            pre.reply { (serde_json::to_string_pretty(reply).unwrap_or_default()) }
                        }
                    } @else {
                        p.error { (T::EngineDidNotAnswer.get(l)) " " (tested.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        section #status-hook {
            h2 { (T::StatusHook.get(l)) }
            @match outcome {
                Outcome::HookSaved => (notice(T::Saved.get(l))),
                Outcome::HookRemoved => (notice(T::StatusHookRemoved.get(l))),
                _ => {}
            }
            p { (T::StatusHookIntro.get(l)) }
            form.card #status-hook-form method="post" action="/console/status-hook" novalidate {
                (csrf(ctx))
                div.field.invalid[!field_errors("status_url").is_empty()] {
                    label for="status_url" { (T::StatusHookUrl.get(l)) }
                    input #status_url type="text" name="status_url" spellcheck="false" autocomplete="off"
                        value=(values.and_then(|v| v.get("status_url")).cloned().or_else(|| hook.as_ref().map(|h| h.url.clone())).unwrap_or_default());
                    @for m in field_errors("status_url") { p.error #status_url-error { (m) } }
                }
                div.field.invalid[!field_errors("status_secret").is_empty()] {
                    label for="status_secret" { (T::EngineSecret.get(l)) }
                    @if let Some(h) = &hook { span.current { (T::Current.get(l)) ": " code { (h.secret) } } }
                    input #status_secret type="password" name="status_secret" value="" autocomplete="new-password";
                    small.hint { (T::StatusHookSecretHint.get(l)) }
                    @for m in field_errors("status_secret") { p.error #status_secret-error { (m) } }
                }
                button #save-status-hook type="submit" { (T::Save.get(l)) }
            }
            @if hook.is_some() {
                form.inline method="post" action="/console/status-hook/test" {
                    (csrf(ctx))
                    button #test-status-hook type="submit" { (T::StatusHookTest.get(l)) }
                }
                @if let Outcome::HookTested(tested) = &outcome {
                    div #status-hook-test-result data-ok=(tested.ok) {
                        @if tested.ok {
                            p.ok { (T::StatusHookAnswered.get(l)) " HTTP " (tested.status.unwrap_or_default()) " · " (tested.elapsed_ms) " ms" }
                        } @else {
                            p.error { (T::StatusHookFailed.get(l)) " " (tested.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
                form.inline method="post" action="/console/status-hook/remove" {
                    (csrf(ctx))
                    button.danger #remove-status-hook type="submit" { (T::StatusHookRemove.get(l)) }
                }
            }
        }
        section #api-key {
            h2 { (T::ApiKey.get(l)) }
            @if let Outcome::Replaced(r) = &outcome {
                (notice(T::ApiKeyReplaced.get(l)))
                (copyable("new-api-key", T::ApiKey.get(l), r.key.expose_secret(), l))
                @match r.old_until {
                    Some(until) => p #old-key-until { (T::OldKeyUntil.get(l)) " " (when(until)) },
                    None => p #old-key-until { (T::OldKeyStopped.get(l)) },
                }
            }
            p { (T::ApiKeyIntro.get(l)) }
            form.card #api-key-form method="post" action="/console/api-key" {
                (csrf(ctx))
                div.field {
                    label for="grace" { (T::OldKeyStops.get(l)) }
                    select #grace name="grace" {
                        @for (seconds, label) in [("0", T::GraceNow), ("3600", T::GraceHour), ("86400", T::GraceDay)] {
                            option value=(seconds) { (label.get(l)) }
                        }
                    }
                }
                // A second step without script: the confirmation opens in place.
                details.replace-api-key {
                    summary { (T::ReplaceApiKey.get(l)) }
                    p { (T::ReplaceApiKeyConfirm.get(l)) }
                    button.danger #replace-api-key type="submit" { (T::ReplaceApiKeyYes.get(l)) }
                }
            }
        }
    };
    form_page(ctx, T::Engine, errors, body)
}

pub async fn engine_page(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let query = req.query_string();
        let outcome = if query.contains("saved=1") {
            Outcome::Saved
        } else if query.contains("hook=saved") {
            Outcome::HookSaved
        } else if query.contains("hook=removed") {
            Outcome::HookRemoved
        } else {
            Outcome::Nothing
        };
        engine_form(&ctx, t, None, &[], outcome).await
    }
    .await;
    finish(&ctx, page)
}

pub async fn save_engine(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let kind = text(&form, "kind");
        let field = |name: &str| {
            let v = text(&form, name);
            (!v.is_empty()).then_some(Value::String(v))
        };
        let body = EngineBody {
            kind: (!kind.is_empty()).then(|| Value::String(kind.clone())),
            // The form always has the fields; the echo engine takes none.
            url: if kind == "echo" { None } else { field("url") },
            secret: if kind == "http" {
                field("secret")
            } else {
                None
            },
            fallback_text: field("fallback_text"),
        };
        match tenants::set_engine(&ctx.state, t, &body, &ctx.actor()).await {
            Ok(_) => Ok(ctx.redirect("/console/engine?saved=1")),
            Err(ApiError::Validation(errors)) => {
                let mut values = (*form).clone();
                values.remove("secret");
                engine_form(&ctx, t, Some(&values), &errors, Outcome::Nothing).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

/// `POST /console/status-hook`: sets the tenant's status hook (the API's
/// `PUT …/status-hook`); its field errors shown under its own fields.
pub async fn save_status_hook(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let field = |name: &str| {
            let v = text(&form, name);
            (!v.is_empty()).then_some(Value::String(v))
        };
        let body = StatusHookBody {
            url: field("status_url"),
            secret: field("status_secret"),
        };
        match status_hook::set(&ctx.state, t, &body, &ctx.actor()).await {
            Ok(_) => Ok(ctx.redirect("/console/engine?hook=saved")),
            Err(ApiError::Validation(errors)) => {
                let errors: Vec<FieldError> = errors
                    .into_iter()
                    .map(|e| FieldError::new(format!("status_{}", e.field), e.message))
                    .collect();
                let mut values = (*form).clone();
                values.remove("status_secret");
                engine_form(&ctx, t, Some(&values), &errors, Outcome::Nothing).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

/// `POST /console/status-hook/test`: a sample post (the API's `POST
/// …/status-hook/test`), its outcome shown under the hook.
pub async fn test_status_hook(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let tested = status_hook::test(&ctx.state, t).await?;
        engine_form(&ctx, t, None, &[], Outcome::HookTested(&tested)).await
    }
    .await;
    finish(&ctx, page)
}

/// `POST /console/status-hook/remove`: no more posts.
pub async fn remove_status_hook(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        status_hook::remove(&ctx.state, t, &ctx.actor()).await?;
        Ok(ctx.redirect("/console/engine?hook=removed"))
    }
    .await;
    finish(&ctx, page)
}

/// `POST /console/api-key`: a new API key for the tenant, shown once on the
/// settings page; this session stays signed in.
pub async fn replace_api_key(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        let s = genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        // The form's choices are numbers; anything else is refused (422).
        let grace = text(&form, "grace");
        let asked = tenants::ApiKeyBody {
            previous_key_valid_seconds: Some(
                grace
                    .parse::<i64>()
                    .map_or(Value::String(grace), Value::from),
            ),
        };
        let grace = asked.grace_seconds()?;
        let (key, old_until) = tenants::replace_api_key(
            &ctx.state.store,
            &t.id,
            grace,
            Some(&s.token_hash),
            &ctx.actor(),
        )
        .await?
        .ok_or(ApiError::NotFound("no such tenant"))?;
        let replaced = Replaced { key, old_until };
        engine_form(&ctx, t, None, &[], Outcome::Replaced(&replaced)).await
    }
    .await;
    finish(&ctx, page)
}

/// The tenant's activity log, newest first (the API's
/// `GET …/activity`).
pub async fn activity_page(ctx: Ctx, req: HttpRequest) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let l = ctx.lang;
        // `?connection=con_…`: that connection's entries alone.
        let connection = req
            .query_string()
            .split('&')
            .find_map(|p| p.strip_prefix("connection="))
            .and_then(ConnectionId::parse);
        let entries = ctx
            .state
            .store
            .activity(&t.id, connection.as_ref(), None, 100)
            .await?;
        let said = |code: &str| pages::activity_text(code).map_or(code.to_owned(), |t| t.get(l).to_owned());
        let body = html! {
            p.hint { (T::ActivityHint.get(l)) }
            @let rows = entries.iter().map(|e| html! {
                tr.activity data-action=(e.action) data-actor=(e.actor) data-via=(e.via) {
                    td { (when(e.at)) }
                    td { (said(&e.action)) " " small { code { (e.action) } } }
                    td.actor { (said(&e.actor)) " · " (said(&e.via)) }
                    td { (e.client_addr) }
                    td {
                        @if let Some(c) = &e.connection_id {
                            a href={ "/console/connections/" (c) } { code { (c) } }
                            " "
                        }
                        (e.detail)
                    }
                }
            }).collect();
            (listing(Some("activity"), &[T::ReadAt.get(l), T::ActivityWhat.get(l), T::ActivityWho.get(l), T::ReadAddress.get(l), T::ActivityDetail.get(l)], rows, T::NoActivity.get(l)))
        };
        ok(&ctx, layout(&ctx, T::Activity.get(l), body))
    }
    .await;
    finish(&ctx, page)
}

/// Tries the engine with a sample message (the API's `POST …/engine/test`)
/// and shows what it answered under the engine's settings.
pub async fn test_engine(ctx: Ctx, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let text = text(&form, "text");
        let body = EngineTestBody {
            text: (!text.trim().is_empty()).then(|| Value::String(text.clone())),
            channel: None,
        };
        let values = HashMap::from([("text".to_owned(), text)]);
        match engine::test(&ctx.state, t, &body).await {
            Ok(tested) => engine_form(&ctx, t, None, &[], Outcome::Tested(&tested)).await,
            Err(ApiError::Validation(errors)) => {
                engine_form(&ctx, t, Some(&values), &errors, Outcome::Nothing).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}
