//! Guards on the code's shape: no module imports from a layer above it, no two files
//! import each other, and no source file or function grows past what one can read in a
//! sitting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "layers/scan.rs"]
mod scan;

use scan::{
    ModuleFiles, code_only, cycles, file_imports, function_lengths, leading_identifier,
    without_test_items,
};

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
        "choices",
    ],
];

/// Longest source file allowed, in lines.
const MAX_LINES: usize = 600;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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
    let mut violations = Vec::new();
    for file in &rust_files(&src) {
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
    let mut files = rust_files(&src_dir());
    files.extend(rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
    ));
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

/// Longest function allowed in `src/`, in lines from its `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 80;

/// Files holding only tests, which the function limit leaves alone.
const TEST_FILES: [&str; 2] = ["tests.rs", "test_support.rs"];

/// The binary's modules beside `main.rs`; every other file is in the library.
const BINARY_MODULES: [&str; 1] = ["cli"];

#[test]
fn no_function_passes_the_length_limit() {
    let src = src_dir();
    let mut too_long = Vec::new();
    let is_test_file = |file: &PathBuf| TEST_FILES.iter().any(|name| file.ends_with(name));
    for file in rust_files(&src).iter().filter(|file| !is_test_file(file)) {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        let code = without_test_items(&code_only(&text));
        for (line, name, lines) in function_lengths(&code) {
            if lines > MAX_FUNCTION_LINES {
                let relative = file.strip_prefix(&src).unwrap_or(file);
                too_long.push(format!(
                    "src/{}:{line}: `{name}`, {lines} lines",
                    relative.display()
                ));
            }
        }
    }
    too_long.sort();
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        too_long.join("\n")
    );
}

/// Which crate a file under `src/` is in (true: the binary) and its module path.
fn module_of(relative: &Path) -> (bool, Vec<String>) {
    let mut module: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    let binary = module
        .first()
        .is_some_and(|top| top == "main" || BINARY_MODULES.contains(&top.as_str()));
    let crate_root = module.len() == 1 && (module[0] == "lib" || module[0] == "main");
    if crate_root || module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    (binary, module)
}

/// For each file under `src/` (relative path), the files it imports from.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    // The library's files, then the binary's.
    let mut crates: [ModuleFiles; 2] = Default::default();
    let mut files = Vec::new();
    for path in rust_files(&src) {
        let relative = path.strip_prefix(&src).unwrap_or(&path);
        let (binary, module) = module_of(relative);
        let name = relative.display().to_string();
        crates[usize::from(binary)].insert(module.clone(), name.clone());
        files.push((path, name, usize::from(binary), module));
    }
    files
        .into_iter()
        .map(|(path, name, crate_index, module)| {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
            let imports = file_imports(&crates[crate_index], &module, &code_only(&text));
            (name, imports)
        })
        .collect()
}

#[test]
fn no_two_files_import_each_other() {
    let cycles: Vec<String> = cycles(&import_graph())
        .iter()
        .map(|cycle| cycle.join(" → "))
        .collect();
    assert!(
        cycles.is_empty(),
        "files that import each other (through the files between):\n{}",
        cycles.join("\n")
    );
}
