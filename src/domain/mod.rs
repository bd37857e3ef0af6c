//! Domain types: every external string becomes one of these through a parse
//! constructor, so code past the route edge never sees unchecked input.

pub mod ids;
pub mod naverworks;
pub mod tenant;

/// One field that failed validation, with a sentence a person can act on.
/// Messages never contain the submitted value of a secret field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Current time as Unix milliseconds, the timestamp form in the database.
/// A platform's scope list: names separated by spaces or commas, kept
/// once each in order. `Err` is the first that is not a scope name (at most
/// 64 bytes of lowercase letters, digits and the bytes of `extra`).
pub fn scope_names<'a>(text: &'a str, extra: &[u8]) -> Result<Vec<&'a str>, &'a str> {
    let mut names = Vec::new();
    for name in text.split([' ', ',']).filter(|s| !s.is_empty()) {
        let ok = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b));
        if !ok {
            return Err(name);
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

pub fn now_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// RFC 3339 text of a Unix-milliseconds timestamp, for API responses.
pub fn rfc3339(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A JSON object, or a value that may be one.
pub trait JsonObject {
    fn field(&self, key: &str) -> Option<&serde_json::Value>;
}

impl JsonObject for serde_json::Value {
    fn field(&self, key: &str) -> Option<&serde_json::Value> {
        self.get(key)
    }
}

impl JsonObject for serde_json::Map<String, serde_json::Value> {
    fn field(&self, key: &str) -> Option<&serde_json::Value> {
        self.get(key)
    }
}

/// `value[key]` when it is a string: the one read of a platform's or an
/// engine's JSON that every parser starts with.
pub fn str_field<'a>(value: &'a impl JsonObject, key: &str) -> Option<&'a str> {
    value.field(key).and_then(serde_json::Value::as_str)
}
