//! The layering rules of `docs/ARCHITECTURE.md`, checked: every `crate::` path in a module must
//! name a module that module may import. Dependencies point down the data path, so a change that
//! imports upward fails here, naming the file and the import.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import (itself always).
const ALLOWED: &[(&str, &[&str])] = &[
    ("shared", &[]),
    ("metrics", &[]),
    ("modality", &["shared"]),
    ("model", &["modality", "shared"]),
    ("engine", &["model", "modality", "metrics", "shared"]),
    ("store", &["shared"]),
    ("service", &["engine", "store", "modality", "shared"]),
    ("api", &["service", "engine", "store", "modality", "metrics", "shared"]),
    ("server", &["api", "service", "engine", "store", "model", "modality", "metrics", "shared"]),
    ("client", &["engine", "model", "modality", "shared"]),
    ("cli", &["client", "server", "service", "engine", "model", "modality", "store", "metrics", "shared"]),
    ("fuzzing", &["server", "store", "model", "modality", "shared"]),
];

/// The top-level modules a source text names through `crate::` paths, grouped imports included.
fn imported_modules(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident =
        |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in source.match_indices("crate::") {
        // `$crate::` in macros and `bindery_crate::` style names are not paths of this crate.
        if at > 0
            && source[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || "_$".contains(c))
        {
            continue;
        }
        let rest = &source[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::x, b, c::{y, z}}`: the first segment of each top-level entry.
            let mut depth = 0;
            let mut entry_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => entry_start = true,
                    c if entry_start && !c.is_whitespace() => {
                        found.insert(ident(&group[i..]));
                        entry_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.remove("");
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_upward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative.iter().next().and_then(|c| c.to_str()).unwrap_or_default().trim_end_matches(".rs");
        // The crate root declares the modules; this file names paths in its own examples.
        if matches!(top, "lib" | "main" | "layering") {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == top) else {
            violations.push(format!("{}: module `{top}` has no layering rule", relative.display()));
            continue;
        };
        let source = std::fs::read_to_string(file).expect("readable source");
        for module in imported_modules(&source) {
            if module != top && !allowed.contains(&module.as_str()) {
                violations.push(format!("{}: `{top}` imports `crate::{module}`", relative.display()));
            }
        }
    }
    assert!(violations.is_empty(), "imports against docs/ARCHITECTURE.md:\n{}", violations.join("\n"));
}

#[test]
fn grouped_and_nested_imports_are_all_seen() {
    let source =
        "use crate::{engine::X, modality::{a, b}, shared};\nlet x = crate::store::y();\n$crate::not_this";
    let found: Vec<String> = imported_modules(source).into_iter().collect();
    assert_eq!(found, ["engine", "modality", "shared", "store"]);
}
