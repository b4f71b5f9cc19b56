//! Guards on the code's shape: no module imports from a layer above it, and no source
//! file grows past what one can read in a sitting.

use std::path::{Path, PathBuf};

/// The library's top-level modules from the top layer down; a module may import only
/// from its own layer or those after it. Leaves (`rng`, `device`, `files`, `error`, `allocator`)
/// are the bottom layer.
const LAYERS: [&[&str]; 8] = [
    &["app"],
    &["engine"],
    &["output"],
    &["pipeline"],
    &["weights"],
    &["models"],
    &["schedulers"],
    &[
        "rng",
        "device",
        "files",
        "error",
        "allocator",
        "version",
        "scratch",
    ],
];

/// Longest source file allowed, in lines.
const MAX_LINES: usize = 600;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The identifier at the start of `text`.
fn leading_identifier(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every module named after `crate::` in `text` (comments left out), with its line number;
/// `use crate::{a, b::c}` names several, over as many lines as rustfmt gives it.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.push((line, leading_identifier(rest)));
            continue;
        };
        let mut depth = 0usize;
        let mut part_start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.push((line, leading_identifier(&group[part_start..i])));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.push((line, leading_identifier(&group[part_start..i])));
                    part_start = i + 1;
                }
                _ => {}
            }
        }
    }
    found.retain(|(_, module)| !module.is_empty());
    found
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file);
        let top = relative
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        // The binary (`main.rs`, `cli/`) sits above everything.
        let Some(own_layer) = layer_of(&top) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        for (line, module) in crate_references(&text) {
            if let Some(layer) = layer_of(&module)
                && layer < own_layer
            {
                violations.push(format!(
                    "{}:{line}: `{top}` imports `crate::{module}` from a layer above",
                    relative.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut unknown = Vec::new();
    for entry in std::fs::read_dir(src_dir()).into_iter().flatten().flatten() {
        let name = entry
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !["lib", "main", "cli"].contains(&name.as_str()) && layer_of(&name).is_none() {
            unknown.push(name);
        }
    }
    assert!(unknown.is_empty(), "modules without a layer: {unknown:?}");
}

#[test]
fn no_source_file_passes_the_size_limit() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        &mut files,
    );
    let too_long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        too_long.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let text = "use crate::{\n    MinusError,\n    pipeline::{Request, Window},\n    weights,\n};\nlet x = crate::app::run(); // crate::engine";
    let found = crate_references(text);
    let modules: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(modules, ["MinusError", "pipeline", "weights", "app"]);
    assert_eq!(found.last().map(|(line, _)| *line), Some(6));
}
