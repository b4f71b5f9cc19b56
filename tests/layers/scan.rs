//! Reading Rust source for `tests/layers.rs` without a parser: comments and literals
//! blanked, then functions measured by matching braces and `use`/`crate::`/`super::`
//! paths resolved to the files they lead to.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The identifier at the start of `text`.
pub fn leading_identifier(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A newline as itself, any other character as a space.
fn blank(c: char) -> char {
    if c == '\n' { '\n' } else { ' ' }
}

/// How many `#` open the raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `at`, if one does.
fn raw_string_hashes(chars: &[char], at: usize) -> Option<usize> {
    let starts_word = |i: usize| i == 0 || !is_identifier_char(chars[i - 1]);
    let prefix_ok = starts_word(at) || (at > 0 && chars[at - 1] == 'b' && starts_word(at - 1));
    let hashes = chars[at + 1..].iter().take_while(|&&c| c == '#').count();
    (chars[at] == 'r' && prefix_ok && chars.get(at + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// `text` with comments, string and character literals blanked (newlines kept, so line
/// numbers hold), so that the scans below count braces and paths in code only.
pub fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    // Where `wanted` next starts at or after `start` (the end of the text if nowhere).
    let find = |start: usize, wanted: &str| -> usize {
        let wanted: Vec<char> = wanted.chars().collect();
        (start..chars.len())
            .find(|&i| chars[i..].starts_with(&wanted))
            .unwrap_or(chars.len())
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let next = chars.get(i + 1).copied();
        let end = match chars[i] {
            '/' if next == Some('/') => find(i, "\n"),
            '/' if next == Some('*') => find(i + 2, "*/") + 2,
            '"' => {
                let mut end = i + 1;
                while end < chars.len() && chars[end] != '"' {
                    end += if chars[end] == '\\' { 2 } else { 1 };
                }
                end + 1
            }
            '\'' if next == Some('\\') => find(i + 3, "'") + 1,
            '\'' if chars.get(i + 2) == Some(&'\'') => i + 3,
            'r' if let Some(hashes) = raw_string_hashes(&chars, i) => {
                find(i + 2 + hashes, &format!("\"{}", "#".repeat(hashes))) + 1 + hashes
            }
            c => {
                out.push(c);
                i += 1;
                continue;
            }
        }
        .min(chars.len());
        out.extend(chars[i..end].iter().copied().map(blank));
        i = end;
    }
    out
}

/// Byte offsets where `word` stands alone (not inside a longer identifier) in `code`.
fn word_positions<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            let before = code[..at].chars().next_back();
            let after = code[at + word.len()..].chars().next();
            !before.is_some_and(is_identifier_char) && !after.is_some_and(is_identifier_char)
        })
}

/// Where the item starting at `from` opens its body (`{`), or `None` where it ends first
/// (`;`); brackets and parentheses are stepped over, so `[u8; 4]` does not end it.
fn body_start(code: &str, from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, b) in code.bytes().enumerate().skip(from) {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' if depth == 0 => return Some(i),
            b';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// Where the brace opening at `open` closes.
fn closing_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in code.bytes().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `code` with the items marked `#[cfg(test)]` (test modules, test helpers) blanked.
pub fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut code = code.to_string();
    while let Some(at) = code.find(MARK) {
        let end = body_start(&code, at + MARK.len())
            .map_or(Some(at + MARK.len()), |open| {
                closing_brace(&code, open).map(|c| c + 1)
            })
            .unwrap_or(code.len());
        let blanked: String = code[at..end].chars().map(blank).collect();
        code.replace_range(at..end, &blanked);
    }
    code
}

/// Each function with a body in `code` (from `code_only`): the line of its `fn`, its name
/// and its length in lines from that line to its closing brace's, both counted.
pub fn function_lengths(code: &str) -> Vec<(usize, String, usize)> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    word_positions(code, "fn")
        .filter_map(|at| {
            // `fn(u8)` is a pointer type, not a function.
            let name = leading_identifier(&code[at + 2..]);
            let close = closing_brace(code, body_start(code, at)?)?;
            (!name.is_empty()).then(|| (line_of(at), name, line_of(close) - line_of(at) + 1))
        })
        .collect()
}

#[test]
fn the_checker_measures_functions() {
    let text = "fn short() -> [u8; 2] {\n    [b'{', 0]\n}\n// fn commented() {\n\
        struct S {\n    f: fn(u8),\n}\nimpl S {\n    pub fn long(&self) {\n        \
        let s = \"}}\";\n        let r = r#\"{\"#;\n    }\n}\n#[cfg(test)]\nmod tests {\n    \
        fn skipped() {}\n}\n";
    let found = function_lengths(&without_test_items(&code_only(text)));
    assert_eq!(
        found,
        [(1, "short".to_string(), 3), (9, "long".to_string(), 4)]
    );
}

/// One crate's files by module path (`["pipeline", "generate"]` → `pipeline/generate.rs`).
pub type ModuleFiles = BTreeMap<Vec<String>, String>;

/// Skips the whitespace at `at`.
fn skip_spaces(code: &str, at: usize) -> usize {
    code.len() - code[at..].trim_start().len()
}

/// Reads the use tree (or path in code) at `at` onto `prefix`, pushing each path it names
/// as its segments (`a::{b, c::{self, D as E}}` names `a::b`, `a::c` and `a::c::D`);
/// returns where it ends.
fn read_tree(
    code: &str,
    mut at: usize,
    mut prefix: Vec<String>,
    paths: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        at = skip_spaces(code, at);
        let rest = &code[at..];
        if rest.starts_with('{') {
            at += 1;
            loop {
                at = skip_spaces(code, at);
                match code[at..].chars().next() {
                    None => return at,
                    Some('}') => return at + 1,
                    Some(',') => at += 1,
                    // Anything odd in the group is stepped over.
                    Some(c) => {
                        at = read_tree(code, at, prefix.clone(), paths).max(at + c.len_utf8())
                    }
                }
            }
        }
        if rest.starts_with('*') {
            paths.push(prefix);
            return at + 1;
        }
        let segment = leading_identifier(rest);
        if segment.is_empty() {
            break;
        }
        at += segment.len();
        // `self` in a group names the path before it.
        if segment != "self" || prefix.is_empty() {
            prefix.push(segment);
        }
        let after = skip_spaces(code, at);
        if !code[after..].starts_with("::") {
            break;
        }
        at = after + 2;
    }
    if !prefix.is_empty() {
        paths.push(prefix);
    }
    let after = skip_spaces(code, at);
    if leading_identifier(&code[after..]) == "as" {
        let renamed = skip_spaces(code, after + 2);
        return renamed + leading_identifier(&code[renamed..]).len();
    }
    at
}

/// The inline modules (`mod tests { … }`) in `code`: each one's name and byte range.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    word_positions(code, "mod")
        .filter_map(|at| {
            let name = leading_identifier(&code[at + 3..]);
            let open = body_start(code, at)?;
            let close = closing_brace(code, open)?;
            (code[at + 3..open].trim() == name).then_some((name, open..close))
        })
        .collect()
}

/// Every path `code` (from `code_only`) names, after `use` and at each `crate::`, `super::`
/// and `self::`, with the module it is written in: `module`, and the inline modules
/// around it.
fn named_paths(code: &str, module: &[String]) -> Vec<(Vec<String>, Vec<String>)> {
    let inline = inline_modules(code);
    let mut found = Vec::new();
    for word in ["use", "crate", "super", "self"] {
        for at in word_positions(code, word) {
            let before = code[..at].trim_end();
            let is_path = code[at + word.len()..].trim_start().starts_with("::");
            // Not the middle of a path (`super::super`), nor `$crate`, `pub(crate)`, `&self`.
            if before.ends_with("::") || before.ends_with('$') || (word != "use" && !is_path) {
                continue;
            }
            let mut written_in = module.to_vec();
            written_in.extend(
                inline
                    .iter()
                    .filter(|(_, range)| range.contains(&at))
                    .map(|(name, _)| name.clone()),
            );
            let start = if word == "use" { at + word.len() } else { at };
            let mut paths = Vec::new();
            read_tree(code, start, Vec::new(), &mut paths);
            found.extend(paths.into_iter().map(|path| (written_in.clone(), path)));
        }
    }
    found
}

/// The file that `path`, written in `module`, leads to: the longest start of its full
/// module path that names a file (an item leads to the file it is in). `None` for a path
/// into another crate.
fn resolve(files: &ModuleFiles, module: &[String], path: &[String]) -> Option<String> {
    let mut full = module.to_vec();
    let mut rest = path;
    match path.first()?.as_str() {
        "crate" => {
            full.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|segment| segment == "super") {
                full.pop()?;
                rest = &rest[1..];
            }
        }
        // A child module named without `self::`; anything else is another crate.
        child => {
            if !files.contains_key(&[module, &[child.to_string()]].concat()) {
                return None;
            }
        }
    }
    full.extend(rest.iter().cloned());
    (0..=full.len())
        .rev()
        .find_map(|len| files.get(&full[..len]).cloned())
}

/// The files that `code`, the file of `module`, imports from: where every path it names
/// leads, less the file itself and its own submodules' files. A parent that declares and
/// re-exports its children (`pub use child::Item`) while they use what it defines
/// (`use super::Trait`) is how Rust lays out a module, not a cycle to untangle; every other
/// pair of files importing each other, directly or through others, is one.
pub fn file_imports(files: &ModuleFiles, module: &[String], code: &str) -> BTreeSet<String> {
    let own_tree: BTreeSet<&String> = files
        .iter()
        .filter(|(submodule, _)| submodule.starts_with(module))
        .map(|(_, file)| file)
        .collect();
    named_paths(code, module)
        .iter()
        .filter_map(|(written_in, path)| resolve(files, written_in, path))
        .filter(|file| !own_tree.contains(file))
        .collect()
}

/// The cycles in `graph`, each once: the shortest back to each file that has one, as the
/// files in order with the first again at the end.
pub fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    for start in graph.keys() {
        // Breadth first, so the first way back to `start` is a shortest one.
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        while let Some(file) = queue.pop_front() {
            if graph.get(file).is_some_and(|next| next.contains(start)) {
                last = Some(file);
                break;
            }
            for next in graph.get(file).into_iter().flatten() {
                if next != start && !came_from.contains_key(next) {
                    came_from.insert(next, file);
                    queue.push_back(next);
                }
            }
        }
        let Some(mut file) = last else {
            continue;
        };
        let mut cycle = vec![start.clone()];
        while file != start {
            cycle.push(file.clone());
            file = came_from[file];
        }
        cycle.push(start.clone());
        cycle.reverse();
        let members: BTreeSet<String> = cycle.iter().cloned().collect();
        if seen.insert(members) {
            found.push(cycle);
        }
    }
    found
}

#[test]
fn the_checker_follows_paths_to_files() {
    let files: ModuleFiles = [
        (&[][..], "lib.rs"),
        (&["p"][..], "p/mod.rs"),
        (&["p", "g"][..], "p/g.rs"),
        (&["p", "v"][..], "p/v.rs"),
        (&["q"][..], "q.rs"),
    ]
    .into_iter()
    .map(|(module, file)| {
        (
            module.iter().map(|s| s.to_string()).collect(),
            file.to_string(),
        )
    })
    .collect();
    let imports = |module: &[&str], text: &str| -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        file_imports(&files, &module, &code_only(text))
            .into_iter()
            .collect()
    };
    // `super` in the test module is p/g.rs itself, not p/mod.rs.
    let child = "use super::v::{self, Kind as K};\nuse std::fmt; // crate::q\n\
        fn f() -> u8 { crate::p::g::helper::<u8>(\"crate::q\") }\n\
        #[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    assert_eq!(imports(&["p", "g"], child), ["p/v.rs"]);
    // A parent's re-export of its child is left out.
    let parent = "pub use g::{Flow, generate};\nuse crate::{\n    q::Q,\n    MinusError,\n};\n";
    assert_eq!(imports(&["p"], parent), ["lib.rs", "q.rs"]);
}

#[test]
fn the_checker_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a", "d"]),
        ("d", &[]),
        ("e", &["a"]),
    ]
    .into_iter()
    .map(|(file, targets)| {
        (
            file.to_string(),
            targets.iter().map(|t| t.to_string()).collect(),
        )
    })
    .collect();
    assert_eq!(cycles(&graph), [["a", "b", "c", "a"]]);
}
