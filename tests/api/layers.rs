//! The layer rule of the README's "Code map": every `crate::…` path in
//! `src/` names a module its own module may import, every module of `src/`
//! is in the table, and the queue engine's files import one way. The rule is
//! read from the README itself, so the two cannot drift.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The rows of the README table that follows `heading_text` (up to the
/// first line that is not a table row): name → the names it may import.
fn table_after(readme: &str, heading_text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let start = readme
        .find(heading_text)
        .unwrap_or_else(|| panic!("README.md has no {heading_text:?}"));
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in readme[start..].lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [name, _owns, imports] = cells[..] else {
            panic!("a Code map row has three cells: {line}");
        };
        let Some(name) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
            continue; // the header and the rule below it
        };
        let allowed = imports
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        rows.insert(name.to_owned(), allowed);
    }
    assert!(!rows.is_empty(), "no table after {heading_text:?}");
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments (line comments and doc comments; the
/// code has no block comments), as one string.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) keeps the line: only a line
            // that starts with a comment, or code followed by one, is cut.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The names that follow `prefix` (`crate::`, `super::`) in `code`: `a` in
/// `crate::a::b`, and `a`, `b` in `crate::{a::x, b}`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // `foo_crate::`, or `super::super::` counted from its first
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        names.insert(ident_at(&group[i..]).to_owned());
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident_at(rest).to_owned());
        }
    }
    names.retain(|n| !n.is_empty() && n != "self" && n != "super");
    names
}

#[test]
fn every_module_imports_only_what_the_code_map_allows() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let table = table_after(&readme, "## Code map");
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "bin" {
            continue; // the crate root declares the modules; the executable may use any
        }
        modules.insert(module.clone());
        let Some(allowed) = table.get(&module) else {
            continue; // reported below, once per module
        };
        for name in names_after(&code_of(file), "crate::") {
            if name != module && !allowed.contains(&name) {
                violations.push(format!(
                    "{} imports crate::{name}, which `{module}` may not",
                    relative.display()
                ));
            }
        }
    }
    let unlisted: Vec<_> = modules.iter().filter(|m| !table.contains_key(*m)).collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from the README's Code map: {unlisted:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the README's Code map:\n{}",
        violations.join("\n")
    );
    // The rule is a real one: the edges the issue named are refused.
    assert!(!table["routes"].contains("console"));
    assert!(!table["store"].contains("metrics"));
    assert!(!table["state"].contains("routes") && !table["state"].contains("worker"));
}

#[test]
fn the_queue_engine_imports_one_way() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let table = table_after(&readme, "Inside the queue engine");
    let dir = Path::new(ROOT).join("src/store/queue");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert_eq!(files.len(), table.len(), "{files:?} against {table:?}");
    let mut violations = Vec::new();
    for file in &files {
        let name = file.file_stem().unwrap().to_str().unwrap();
        let allowed = &table[name];
        let code = code_of(file);
        let mut used = names_after(&code, "super::");
        // `crate::store::queue::x` is the same as `super::x`.
        used.extend(names_after(&code, "crate::store::queue::"));
        for sibling in used {
            let is_sibling = table.contains_key(&sibling);
            if name != "mod" && is_sibling && !allowed.contains(&sibling) {
                violations.push(format!("queue/{name}.rs imports {sibling}"));
            }
            if name != "mod" && !is_sibling && code.contains(&format!("super::{sibling}")) {
                // `super::` from a child is the queue's own mod.rs.
                violations.push(format!("queue/{name}.rs imports super::{sibling} (mod.rs)"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the queue's files import against the README:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_scanner_finds_grouped_and_nested_paths() {
    let code = "use crate::{store::Store, routes, console::{a, b}};\nlet x = crate::metrics::M;";
    let names = names_after(code, "crate::");
    let expected: BTreeSet<String> = ["console", "metrics", "routes", "store"]
        .map(str::to_owned)
        .into();
    assert_eq!(names, expected);
    assert!(names_after("my_crate::x", "crate::").is_empty());
    assert_eq!(
        code_of_text("// crate::console\nuse crate::store; // crate::x"),
        "\nuse crate::store; "
    );
}

fn code_of_text(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.rs");
    std::fs::write(&path, text).unwrap();
    code_of(&path)
}
