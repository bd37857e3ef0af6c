//! Validation of send-message bodies against the limits of §4.2 (content
//! types), §4.3 (action objects) and the quick reply. Each rule violated is
//! reported with the path of the field, e.g. `content.actions[2].label: must
//! be at most 20 characters`. Unknown extra fields are tolerated, as a real
//! API usually does ([I]).

use serde_json::{Map, Value};

use crate::domain::str_field;

type Obj = Map<String, Value>;
type Check = Result<(), String>;

const LANGUAGES: &[&str] = &["ko_KR", "ja_JP", "zh_CN", "zh_TW", "en_US"];

/// A text content's limit, in characters (§4.2).
pub const TEXT_LIMIT: usize = 2000;

/// A text over the limit, cut into parts of at most `TEXT_LIMIT` characters
/// (at a line break or space near the end of each part when there is one).
pub fn split_text(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + TEXT_LIMIT).min(chars.len());
        if end < chars.len() {
            let window = &chars[start..end];
            if let Some(cut) = window
                .iter()
                .rposition(|c| *c == '\n' || *c == ' ')
                .filter(|&i| i > TEXT_LIMIT / 2)
            {
                end = start + cut + 1;
            }
        }
        parts.push(chars[start..end].iter().collect::<String>());
        start = end;
    }
    parts
}

/// Validates a whole request body `{"content": {...}}`.
pub fn validate_message(body: &Value) -> Check {
    let content = body
        .get("content")
        .and_then(Value::as_object)
        .ok_or("content: is required and must be an object")?;
    validate_content(content, "content")
}

fn err<T>(path: &str, message: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("{path}: {message}"))
}

/// An optional string of at most `max` characters; `Ok(None)` when absent.
fn opt_str<'a>(o: &'a Obj, path: &str, field: &str, max: usize) -> Result<Option<&'a str>, String> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => err(
            &format!("{path}.{field}"),
            format!("must be at most {max} characters"),
        ),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => err(&format!("{path}.{field}"), "must be a string"),
    }
}

fn req_str<'a>(o: &'a Obj, path: &str, field: &str, max: usize) -> Result<&'a str, String> {
    match opt_str(o, path, field, max)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => err(&format!("{path}.{field}"), "is required"),
    }
}

fn https_url(o: &Obj, path: &str, field: &str, required: bool) -> Result<Option<String>, String> {
    let value = if required {
        Some(req_str(o, path, field, 1000)?)
    } else {
        opt_str(o, path, field, 1000)?
    };
    match value {
        Some(url) if !url.starts_with("https://") => {
            err(&format!("{path}.{field}"), "must be an https:// URL")
        }
        Some(url) => Ok(Some(url.to_owned())),
        None => Ok(None),
    }
}

fn number(o: &Obj, path: &str, field: &str) -> Result<f64, String> {
    o.get(field).and_then(Value::as_f64).map_or_else(
        || {
            err(
                &format!("{path}.{field}"),
                "is required and must be a number",
            )
        },
        Ok,
    )
}

fn array<'a>(
    o: &'a Obj,
    path: &str,
    field: &str,
    max: usize,
    required: bool,
) -> Result<&'a [Value], String> {
    match o.get(field) {
        None | Some(Value::Null) if !required => Ok(&[]),
        None | Some(Value::Null) => err(&format!("{path}.{field}"), "is required"),
        Some(Value::Array(items)) if items.len() > max => err(
            &format!("{path}.{field}"),
            format!("must have at most {max} items"),
        ),
        Some(Value::Array(items)) if required && items.is_empty() => {
            err(&format!("{path}.{field}"), "must not be empty")
        }
        Some(Value::Array(items)) => Ok(items),
        Some(_) => err(&format!("{path}.{field}"), "must be an array"),
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, String> {
    v.as_object()
        .map_or_else(|| err(path, "must be an object"), Ok)
}

/// `i18n…` arrays: `[{language, <field> ≤ max}]` with a known language.
fn i18n(o: &Obj, path: &str, array_field: &str, text_field: &str, max: usize) -> Check {
    for (i, item) in array(o, path, array_field, LANGUAGES.len(), false)?
        .iter()
        .enumerate()
    {
        let p = format!("{path}.{array_field}[{i}]");
        let item = object(item, &p)?;
        let language = req_str(item, &p, "language", 10)?;
        if !LANGUAGES.contains(&language) {
            return err(
                &format!("{p}.language"),
                format!("must be one of {}", LANGUAGES.join(", ")),
            );
        }
        req_str(item, &p, text_field, max)?;
    }
    Ok(())
}

/// Image/file source: a URL or a fileId, exactly one.
fn url_or_file_id(o: &Obj, path: &str, url_field: &str) -> Check {
    let url = https_url(o, path, url_field, false)?;
    let file = opt_str(o, path, "fileId", 1000)?;
    match (url, file) {
        (Some(_), Some(_)) => err(path, format!("give {url_field} or fileId, not both")),
        (None, None) => err(path, format!("{url_field} or fileId is required")),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ActionPlace {
    Button,
    Carousel,
    ImageCarousel,
    QuickReply,
    Other,
}

fn validate_action(v: &Value, path: &str, place: ActionPlace) -> Check {
    let a = object(v, path)?;
    let kind = req_str(a, path, "type", 20)?;
    let label_max = if place == ActionPlace::ImageCarousel {
        12
    } else {
        20
    };
    let label = opt_str(a, path, "label", label_max)?;
    i18n(a, path, "i18nLabels", "label", label_max)?;
    let needs_label =
        place != ActionPlace::QuickReply || !matches!(kind, "camera" | "cameraRoll" | "location");
    match kind {
        "postback" => {
            if !matches!(
                place,
                ActionPlace::Carousel | ActionPlace::ImageCarousel | ActionPlace::QuickReply
            ) {
                return err(
                    &format!("{path}.type"),
                    "postback actions are allowed only in carousel, image carousel and quick reply",
                );
            }
            req_str(a, path, "data", 300)?;
            let display = opt_str(a, path, "displayText", 300)?;
            if place == ActionPlace::QuickReply && display.is_none() {
                return err(
                    &format!("{path}.displayText"),
                    "is required in a quick reply",
                );
            }
        }
        "message" => {
            let text = opt_str(a, path, "text", 300)?;
            opt_str(a, path, "postback", 1000)?;
            if text.is_none() && label.is_none() {
                return err(path, "a message action needs text or label");
            }
        }
        "uri" => {
            req_str(a, path, "uri", 1000)?;
        }
        "copy" => {
            req_str(a, path, "copyText", 1000)?;
        }
        "camera" | "cameraRoll" | "location" => {
            if place != ActionPlace::QuickReply {
                return err(
                    &format!("{path}.type"),
                    format!("{kind} actions are allowed only in a quick reply"),
                );
            }
        }
        other => {
            return err(
                &format!("{path}.type"),
                format!("unknown action type {other:?}"),
            )
        }
    }
    if needs_label && label.is_none() && kind != "message" {
        return err(&format!("{path}.label"), "is required");
    }
    Ok(())
}

fn validate_quick_reply(content: &Obj, path: &str) -> Check {
    let Some(qr) = content.get("quickReply") else {
        return Ok(());
    };
    let p = format!("{path}.quickReply");
    let qr = object(qr, &p)?;
    for (i, item) in array(qr, &p, "items", 13, true)?.iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        let item = object(item, &ip)?;
        https_url(item, &ip, "imageUrl", false)?;
        let action = item
            .get("action")
            .map_or_else(|| err(&format!("{ip}.action"), "is required"), Ok)?;
        validate_action(action, &format!("{ip}.action"), ActionPlace::QuickReply)?;
    }
    Ok(())
}

fn validate_content(c: &Obj, path: &str) -> Check {
    let kind = req_str(c, path, "type", 30)?;
    match kind {
        "text" => {
            req_str(c, path, "text", TEXT_LIMIT)?;
            i18n(c, path, "i18nTexts", "text", TEXT_LIMIT)?;
        }
        "sticker" => {
            req_str(c, path, "packageId", 100)?;
            req_str(c, path, "stickerId", 100)?;
        }
        "image" => {
            if c.contains_key("fileId") {
                url_or_file_id(c, path, "originalContentUrl")?;
            } else {
                https_url(c, path, "previewImageUrl", true)?;
                https_url(c, path, "originalContentUrl", true)?;
            }
        }
        "file" | "audio" | "video" => {
            url_or_file_id(c, path, "originalContentUrl")?;
            if kind == "file" {
                if let Some(url) = opt_str(c, path, "originalContentUrl", 1000)? {
                    let ext = url
                        .rsplit('/')
                        .next()
                        .and_then(|n| n.rsplit_once('.'))
                        .map(|(_, e)| e.to_ascii_lowercase());
                    let blocked = [
                        "bat", "cmd", "com", "cpl", "exe", "scr", "js", "vbs", "wsf", "hta",
                    ];
                    if ext.as_deref().is_some_and(|e| blocked.contains(&e)) {
                        return err(
                            &format!("{path}.originalContentUrl"),
                            "this file extension is blocked by default",
                        );
                    }
                }
            }
        }
        "link" => {
            req_str(c, path, "contentText", 1000)?;
            req_str(c, path, "linkText", 1000)?;
            req_str(c, path, "link", 1000)?;
            i18n(c, path, "i18nContentTexts", "contentText", 1000)?;
            i18n(c, path, "i18nLinkTexts", "linkText", 1000)?;
        }
        "location" => {
            req_str(c, path, "title", 100)?;
            req_str(c, path, "address", 100)?;
            let lat = number(c, path, "latitude")?;
            let lon = number(c, path, "longitude")?;
            if !(-90.0..=90.0).contains(&lat) {
                return err(&format!("{path}.latitude"), "must be between -90 and 90");
            }
            if !(-180.0..=180.0).contains(&lon) {
                return err(&format!("{path}.longitude"), "must be between -180 and 180");
            }
        }
        "button_template" => {
            req_str(c, path, "contentText", 1000)?;
            i18n(c, path, "i18nContentTexts", "contentText", 1000)?;
            for (i, a) in array(c, path, "actions", 10, true)?.iter().enumerate() {
                validate_action(a, &format!("{path}.actions[{i}]"), ActionPlace::Button)?;
            }
        }
        "list_template" => validate_list(c, path)?,
        "carousel" => validate_carousel(c, path)?,
        "image_carousel" => {
            for (i, col) in array(c, path, "columns", 10, true)?.iter().enumerate() {
                let p = format!("{path}.columns[{i}]");
                let col = object(col, &p)?;
                url_or_file_id(col, &p, "originalContentUrl")?;
                if let Some(action) = col.get("action") {
                    validate_action(action, &format!("{p}.action"), ActionPlace::ImageCarousel)?;
                }
            }
        }
        "flex" => {
            req_str(c, path, "altText", 400)?;
            i18n(c, path, "i18nAltTexts", "altText", 400)?;
            let contents = c
                .get("contents")
                .map_or_else(|| err(&format!("{path}.contents"), "is required"), Ok)?;
            let contents = object(contents, &format!("{path}.contents"))?;
            match str_field(contents, "type") {
                Some("bubble" | "carousel") => {}
                _ => {
                    return err(
                        &format!("{path}.contents.type"),
                        "must be \"bubble\" or \"carousel\"",
                    )
                }
            }
            if Value::Object(contents.clone()).to_string().len() > 30 * 1024 {
                return err(&format!("{path}.contents"), "must be at most 30 KB of JSON");
            }
        }
        other => {
            return err(
                &format!("{path}.type"),
                format!("unknown content type {other:?}"),
            )
        }
    }
    validate_quick_reply(c, path)
}

fn validate_list(c: &Obj, path: &str) -> Check {
    if let Some(cover) = c.get("coverData") {
        let p = format!("{path}.coverData");
        let cover = object(cover, &p)?;
        https_url(cover, &p, "backgroundImageUrl", false)?;
        for f in ["backgroundFileId", "title", "subtitle"] {
            opt_str(cover, &p, f, 1000)?;
        }
    }
    for (i, el) in array(c, path, "elements", 4, true)?.iter().enumerate() {
        let p = format!("{path}.elements[{i}]");
        let el = object(el, &p)?;
        req_str(el, &p, "title", 1000)?;
        opt_str(el, &p, "subtitle", 1000)?;
        https_url(el, &p, "originalContentUrl", false)?;
        if let Some(action) = el.get("action") {
            validate_action(action, &format!("{p}.action"), ActionPlace::Other)?;
        }
    }
    let rows = array(c, path, "actions", 2, false)?;
    for (r, row) in rows.iter().enumerate() {
        let p = format!("{path}.actions[{r}]");
        let row = row
            .as_array()
            .map_or_else(|| err(&p, "must be an array of actions"), Ok)?;
        if row.len() > 2 {
            return err(
                &p,
                "must have at most 2 actions (the bottom buttons are at most 2×2)",
            );
        }
        for (i, a) in row.iter().enumerate() {
            validate_action(a, &format!("{p}[{i}]"), ActionPlace::Other)?;
        }
    }
    Ok(())
}

fn validate_carousel(c: &Obj, path: &str) -> Check {
    if let Some(ratio) = opt_str(c, path, "imageAspectRatio", 20)? {
        if !matches!(ratio, "rectangle" | "square") {
            return err(
                &format!("{path}.imageAspectRatio"),
                "must be \"rectangle\" or \"square\"",
            );
        }
    }
    if let Some(size) = opt_str(c, path, "imageSize", 20)? {
        if !matches!(size, "cover" | "contain") {
            return err(
                &format!("{path}.imageSize"),
                "must be \"cover\" or \"contain\"",
            );
        }
    }
    let columns = array(c, path, "columns", 10, true)?;
    let mut shape: Option<(usize, bool, bool)> = None;
    for (i, col) in columns.iter().enumerate() {
        let p = format!("{path}.columns[{i}]");
        let col = object(col, &p)?;
        let image = https_url(col, &p, "originalContentUrl", false)?.is_some()
            || col.contains_key("fileId");
        let title = opt_str(col, &p, "title", 40)?.is_some();
        let max_text = if image || title { 60 } else { 120 };
        req_str(col, &p, "text", max_text)?;
        if let Some(action) = col.get("defaultAction") {
            validate_action(action, &format!("{p}.defaultAction"), ActionPlace::Carousel)?;
        }
        let actions = array(col, &p, "actions", 3, false)?;
        for (j, a) in actions.iter().enumerate() {
            validate_action(a, &format!("{p}.actions[{j}]"), ActionPlace::Carousel)?;
        }
        let this = (actions.len(), image, title);
        match shape {
            None => shape = Some(this),
            Some(first) if first.0 != this.0 => {
                return err(&p, "every column must have the same number of actions")
            }
            Some(first) if first.1 != this.1 || first.2 != this.2 => {
                return err(&p, "every column must use an image and a title alike")
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_texts_split_within_the_limit() {
        let text = format!("{} {}", "a".repeat(1500), "b".repeat(1500));
        let parts = split_text(&text);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.chars().count() <= TEXT_LIMIT));
        assert_eq!(parts.concat(), text);
        assert_eq!(split_text(&"x".repeat(4001)).len(), 3);
        assert_eq!(split_text("short"), ["short"]);
    }

    use super::*;

    /// Every send fixture in shared/ is accepted.
    #[test]
    fn documented_examples_are_valid() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/naverworks");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("shared fixtures") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.starts_with("send_") {
                let body: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                        .expect("json");
                assert_eq!(validate_message(&body), Ok(()), "{name}");
                seen += 1;
            }
        }
        assert!(seen >= 12);
    }
}
