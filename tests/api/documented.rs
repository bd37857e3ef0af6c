//! The OpenAPI document against the answers actually served: every JSON
//! answer the test helpers receive (`TestApp::get`, `send_json`, `delete`)
//! is checked against the schema the document gives its operation and
//! status, so a type changed without its document, or a document that
//! promises what no handler serves, fails whichever test meets it.
//!
//! The check covers what botgate's schemas use (utoipa's output): `$ref`,
//! `oneOf`/`anyOf`/`allOf`, `type` (one or a list, `null` included),
//! `properties` with `required`, `items`, and `additionalProperties`. An
//! object schema that lists properties takes no others. A status the
//! operation does not document, or documents without a JSON body, is not
//! checked here (the statuses are the handlers' own business), nor is a
//! path the document does not have.

use serde_json::Value;

/// Checks `body`, served with `status` for `method path`, against the
/// document. `Err` says where it differs.
pub fn check(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    // A path the document does not have (the console's, a test of an
    // unknown route) is the route test's business, not this check's.
    let Some((template, operation)) = operation(doc, &method.to_lowercase(), path) else {
        return Ok(());
    };
    let schema =
        &operation["responses"][status.to_string()]["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Ok(());
    }
    conforms(doc, schema, body, "$")
        .map_err(|e| format!("{method} {template} answered {status} with {body}: {e}"))
}

/// The document's operation for a concrete path: the template whose
/// literal segments all match, the one with the most literal segments when
/// several do.
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, ops) in doc["paths"].as_object()? {
        let Some(op) = ops.get(method) else { continue };
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literals = 0;
        let matches = parts.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') && t.ends_with('}') {
                !s.is_empty()
            } else {
                literals += 1;
                t == s
            }
        });
        if matches && best.is_none_or(|(n, ..)| literals > n) {
            best = Some((literals, template, op));
        }
    }
    best.map(|(_, template, op)| (template, op))
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> Result<&'a Value, String> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .ok_or_else(|| format!("unexpected $ref {r}"))?;
            let target = &doc["components"]["schemas"][name];
            if target.is_null() {
                return Err(format!("{r} is not in the document"));
            }
            resolve(doc, target)
        }
        None => Ok(schema),
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// An `allOf` (a `#[serde(flatten)]`) as one schema: its branches'
/// properties and required names together, so that each branch's
/// properties are allowed beside the others'.
fn merged(doc: &Value, schema: &Value) -> Result<Value, String> {
    let schema = resolve(doc, schema)?;
    let Some(all) = schema.get("allOf").and_then(Value::as_array) else {
        return Ok(schema.clone());
    };
    let mut out = serde_json::json!({"type": "object", "properties": {}, "required": []});
    for branch in all {
        let branch = merged(doc, branch)?;
        if let Some(properties) = branch.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                out["properties"][name] = property.clone();
            }
        }
        if let Some(required) = branch.get("required").and_then(Value::as_array) {
            out["required"]
                .as_array_mut()
                .unwrap()
                .extend(required.iter().cloned());
        }
    }
    Ok(out)
}

/// Whether `value` (at `at`, for messages) has the shape `schema` gives.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = &merged(doc, schema)?;
    for key in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let problems: Vec<String> = branches
                .iter()
                .filter_map(|b| conforms(doc, b, value, at).err())
                .collect();
            if problems.len() == branches.len() {
                return Err(format!(
                    "{at} matches no branch of {key}: {}",
                    problems.join("; ")
                ));
            }
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        return Err(format!("{at} is {value}, not of type {types:?}"));
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    return Err(format!("{at} lacks the required {name:?}"));
                }
            }
            let extra = schema.get("additionalProperties");
            for (key, item) in map {
                match (properties.and_then(|p| p.get(key)), extra) {
                    (Some(property), _) => conforms(doc, property, item, &format!("{at}.{key}"))?,
                    (None, Some(schema @ Value::Object(_))) => {
                        conforms(doc, schema, item, &format!("{at}.{key}"))?;
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if properties.is_some() => {
                        return Err(format!("{at}.{key} is served but not documented"));
                    }
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    conforms(doc, item_schema, item, &format!("{at}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn the_check_finds_what_differs() {
    let doc = serde_json::json!({
        "paths": {
            "/things/{id}": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}},
            "/things/new": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"type": "string"}}}}}}},
            "/owned/{id}": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/Owner"},
                {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}},
            ]}}}}}}},
        },
        "components": {"schemas": {"Thing": {
            "type": "object", "required": ["id"],
            "properties": {
                "id": {"type": "string"},
                "n": {"type": ["integer", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "owner": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Owner"}]},
            },
        }, "Owner": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}},
    });
    let ok = serde_json::json!({"id": "a", "n": null, "tags": ["x"], "owner": {"name": "b"}});
    assert_eq!(check(&doc, "GET", "/things/t1?x=1", 200, &ok), Ok(()));
    assert_eq!(
        check(&doc, "GET", "/things/new", 200, &serde_json::json!("s")),
        Ok(()),
        "the literal template wins"
    );
    assert_eq!(
        check(&doc, "GET", "/things/t1", 404, &serde_json::json!({})),
        Ok(()),
        "undocumented status"
    );
    for bad in [
        serde_json::json!({"n": 1}),
        serde_json::json!({"id": 1}),
        serde_json::json!({"id": "a", "extra": true}),
        serde_json::json!({"id": "a", "tags": [1]}),
        serde_json::json!({"id": "a", "owner": {"nom": "b"}}),
        serde_json::json!({"id": "a", "n": 1.5}),
    ] {
        assert!(
            check(&doc, "GET", "/things/t1", 200, &bad).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        check(&doc, "POST", "/things/t1", 200, &ok),
        Ok(()),
        "not an operation"
    );
    let flattened = serde_json::json!({"name": "b", "key": "k"});
    assert_eq!(
        check(&doc, "GET", "/owned/o1", 200, &flattened),
        Ok(()),
        "allOf's branches together"
    );
    assert!(check(
        &doc,
        "GET",
        "/owned/o1",
        200,
        &serde_json::json!({"name": "b"})
    )
    .is_err());
    assert!(check(
        &doc,
        "GET",
        "/owned/o1",
        200,
        &serde_json::json!({"name": "b", "key": "k", "x": 1})
    )
    .is_err());
}
