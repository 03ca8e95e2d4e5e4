//! The folder tree is the layering: each top-level module of `server/src` imports only the
//! layers below it, and the domain imports no transport, storage or wire types.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The layers, lowest first: a module may use only the layers before it.
const LAYERS: [&str; 6] = ["domain", "store", "identity", "app", "grpc", "runtime"];

/// What the domain must not name.
const NOT_IN_DOMAIN: [&str; 4] = ["tonic", "sqlx", "pb::", "admission_contract::pb"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn files_of(layer: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&src().join(layer), &mut files);
    assert!(!files.is_empty(), "server/src/{layer} has no source files");
    files
}

/// Each `(file, line number, line)` of the layer's sources. Test code may reach across layers
/// (a unit test of the role bindings checks the status they become), so it is left out: files
/// named `tests.rs` and everything from a file's `#[cfg(test)]` on.
fn lines_of(layer: &str) -> Vec<(String, usize, String)> {
    let mut lines = Vec::new();
    for file in files_of(layer) {
        if file.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let name = file
            .strip_prefix(src().parent().unwrap())
            .unwrap()
            .display()
            .to_string();
        for (index, line) in text.lines().enumerate() {
            if line.trim() == "#[cfg(test)]" {
                break;
            }
            lines.push((name.clone(), index + 1, line.to_owned()));
        }
    }
    lines
}

#[test]
fn domain_names_no_transport_storage_or_wire_type() {
    let offences: Vec<String> = lines_of("domain")
        .into_iter()
        .filter_map(|(file, number, line)| {
            let word = NOT_IN_DOMAIN.iter().find(|word| line.contains(*word))?;
            Some(format!("{file}:{number}: names {word:?}: {}", line.trim()))
        })
        .collect();
    assert!(
        offences.is_empty(),
        "the domain must stay pure:\n{}",
        offences.join("\n")
    );
}

#[test]
fn layers_import_only_the_layers_below() {
    let mut offences = Vec::new();
    for (rank, layer) in LAYERS.iter().enumerate() {
        let above = &LAYERS[rank + 1..];
        for (file, number, line) in lines_of(layer) {
            for upper in above {
                let path = format!("crate::{upper}::");
                let grouped = line.trim_start().starts_with(&format!("{upper}::"))
                    && line.starts_with("    ");
                if line.contains(&path) || (grouped && imports_from_crate(&file, number)) {
                    offences.push(format!(
                        "{file}:{number}: {layer} uses {upper}: {}",
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "an import points up the layers:\n{}",
        offences.join("\n")
    );
}

/// Whether line `number` of `file` sits inside a `use crate::{ ... };` group.
fn imports_from_crate(file: &str, number: usize) -> bool {
    let path = src().parent().unwrap().join(file);
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for line in lines[..number - 1].iter().rev() {
        if line.starts_with("use crate::{") {
            return true;
        }
        if !line.starts_with("    ") {
            return false;
        }
    }
    false
}

/// The longest a source file may be, tests aside.
const MAX_FILE_LINES: usize = 400;

/// The longest a function may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 60;

/// Each non-test source file of `server/src`, with its lines up to its `#[cfg(test)]`.
fn non_test_sources() -> Vec<(String, Vec<String>)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .filter(|file| file.file_name().is_some_and(|name| name != "tests.rs"))
        .map(|file| {
            let text = fs::read_to_string(&file).unwrap();
            let name = file
                .strip_prefix(src().parent().unwrap())
                .unwrap()
                .display()
                .to_string();
            let lines = text
                .lines()
                .take_while(|line| line.trim() != "#[cfg(test)]")
                .map(str::to_owned)
                .collect();
            (name, lines)
        })
        .collect()
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let offences: Vec<String> = non_test_sources()
        .into_iter()
        .filter(|(_, lines)| lines.len() > MAX_FILE_LINES)
        .map(|(file, lines)| format!("{file}: {} lines", lines.len()))
        .collect();
    assert!(
        offences.is_empty(),
        "source files over {MAX_FILE_LINES} lines (tests aside):\n{}",
        offences.join("\n")
    );
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut offences = Vec::new();
    for (file, lines) in non_test_sources() {
        for (start, line) in lines.iter().enumerate() {
            let Some(name) = fn_name(line) else {
                continue;
            };
            if let Some(length) = fn_length(&lines, start) {
                if length > MAX_FN_LINES {
                    offences.push(format!("{file}:{}: {name} has {length} lines", start + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        offences.join("\n")
    );
}

/// The name of the function `line` starts, if it starts one (any visibility, `const`, `async`).
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(scoped) => scoped.split_once(')')?.1,
            None => after,
        }
        .trim_start();
    }
    for keyword in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(keyword).unwrap_or(rest).trim_start();
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

/// Lines from the `fn` line at `start` to its closing brace at the same indent (1 for a body
/// closed on its own line); `None` for a declaration without a body.
fn fn_length(lines: &[String], start: usize) -> Option<usize> {
    let indent = indent_of(&lines[start]);
    let mut depth = 0_i64;
    for (offset, line) in lines[start..].iter().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let opens = code.matches('{').count() as i64;
        if depth == 0 && opens == 0 {
            if code.trim_end().ends_with(';') {
                return None;
            }
            continue;
        }
        let was_open = depth > 0;
        depth += opens - code.matches('}').count() as i64;
        if !was_open && depth <= 0 {
            return Some(1);
        }
        if offset > 0 && indent_of(line) == indent && line.trim_start().starts_with('}') {
            return Some(offset + 1);
        }
    }
    None
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[test]
fn the_length_checks_see_functions_and_their_ends() {
    assert_eq!(
        fn_name("    pub(in crate::store) async fn run("),
        Some("run")
    );
    assert_eq!(fn_name("pub const fn limit() -> usize {"), Some("limit"));
    assert_eq!(fn_name("    let f = |x| x;"), None);
    let body: Vec<String> = ["    fn a() {", "        x();", "    }", "    fn b();"]
        .map(str::to_owned)
        .to_vec();
    assert_eq!(fn_length(&body, 0), Some(3));
    assert_eq!(fn_length(&body, 3), None);
    let one_line: Vec<String> = vec!["fn c() { 1 }".to_owned()];
    assert_eq!(fn_length(&one_line, 0), Some(1));
}
