//! The layer rule, checked on the source (ARCHITECTURE.md explains it):
//!
//! - every top-level module imports only the modules its row of [`ALLOWED`] names, so
//!   the module graph has no cycles (checked separately too, so a wrong table cannot
//!   hide one);
//! - the registry core (`registry`) and the leaf types (`types`) name no HTTP, SQL,
//!   object-store or cache type: no `actix`, `sqlx`, `object_store` or `redis` path;
//! - `types` imports nothing of the crate.
//!
//! Test code (`#[cfg(test)]` modules, `tests.rs`, `emulator_tests.rs`) and comments are
//! not checked: tests may reach across layers to set things up.

// A test crate: a panic is a failed test, so unwrapping is how it fails.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level modules each may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("types", &[]),
    ("clock", &[]),
    ("telemetry", &[]),
    ("lifecycle", &[]),
    ("config", &["types"]),
    ("metadata", &["types", "clock", "telemetry"]),
    ("blobs", &["types", "config", "telemetry"]),
    ("auth", &["types", "config", "telemetry"]),
    ("cache", &["types", "config", "metadata", "telemetry"]),
    ("redirect", &["types", "config", "blobs", "telemetry"]),
    (
        "registry",
        &[
            "types",
            "clock",
            "metadata",
            "blobs",
            "redirect",
            "telemetry",
        ],
    ),
    (
        "maintenance",
        &["types", "config", "registry", "telemetry", "lifecycle"],
    ),
    ("trust", &["types", "config", "registry", "telemetry"]),
    (
        "import",
        &[
            "types",
            "clock",
            "config",
            "metadata",
            "blobs",
            "registry",
            "telemetry",
        ],
    ),
    (
        "notify",
        &[
            "types",
            "clock",
            "config",
            "metadata",
            "telemetry",
            "lifecycle",
        ],
    ),
    (
        "proxy",
        &[
            "types",
            "clock",
            "config",
            "metadata",
            "blobs",
            "registry",
            "telemetry",
            "lifecycle",
        ],
    ),
    (
        "http",
        &[
            "types",
            "config",
            "auth",
            "registry",
            "metadata",
            "blobs",
            "trust",
            "telemetry",
        ],
    ),
    (
        "server",
        &[
            "types",
            "config",
            "metadata",
            "blobs",
            "cache",
            "redirect",
            "auth",
            "registry",
            "maintenance",
            "notify",
            "proxy",
            "http",
            "trust",
            "telemetry",
            "lifecycle",
        ],
    ),
];

/// Crates the core may not name.
const ENGINE_CRATES: &[&str] = &["actix_web", "actix_http", "sqlx", "object_store", "redis"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments and without its `#[cfg(test)]` part.
fn production_code(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "tests.rs" || name == "emulator_tests.rs" {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            // Good enough for this code base: no `//` inside string literals on import lines.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module → (its code, concatenated).
fn modules() -> BTreeMap<String, String> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&root).expect("under src");
        let first = rel.components().next().expect("component");
        let top = first
            .as_os_str()
            .to_str()
            .expect("utf-8 path")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        out.entry(top).or_default().push_str(&production_code(&f));
    }
    out
}

/// The crate's top-level modules `code` refers to as `crate::<module>`.
fn imports(code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` in macros is the same thing.
        if known.contains(&name) {
            found.insert(name);
        }
        rest = after;
    }
    found
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut broken = Vec::new();
    for (module, code) in &modules {
        let Some(may) = allowed.get(module.as_str()) else {
            broken.push(format!(
                "module `{module}` is not in the layer table (tests/layers.rs, ARCHITECTURE.md)"
            ));
            continue;
        };
        for import in imports(code, &known) {
            if import != *module && !may.contains(&import.as_str()) {
                broken.push(format!(
                    "`{module}` imports `{import}`, which its layer may not"
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rule broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_cycles_between_top_level_modules() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(m, code)| {
            let mut deps = imports(code, &known);
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect();
    // Depth-first search with colours; a grey node reached again closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node).copied().unwrap_or(0) {
            1 => {
                let start = path.iter().position(|p| p == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            2 => return None,
            _ => {}
        }
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut state, &mut path) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_core_and_the_types_name_no_engine() {
    let modules = modules();
    let mut found = Vec::new();
    for module in ["registry", "types"] {
        let code = &modules[module];
        for engine in ENGINE_CRATES {
            if code.contains(&format!("{engine}::")) {
                found.push(format!("`{module}` names `{engine}`"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_checks_see_a_violation() {
    // The scanner itself: an import is found, a comment is not, test code is not.
    let known: BTreeSet<String> = ["http", "registry"].iter().map(|s| s.to_string()).collect();
    let found = imports(
        "use crate::http::error::ApiError;\nlet x = crate::registry::X;",
        &known,
    );
    assert_eq!(
        found,
        ["http", "registry"].iter().map(|s| s.to_string()).collect()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.rs");
    std::fs::write(
        &file,
        "// crate::http in a comment\nfn a() {}\n#[cfg(test)]\nmod tests { use crate::http; }\n",
    )
    .expect("write");
    assert!(imports(&production_code(&file), &known).is_empty());
}
