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
