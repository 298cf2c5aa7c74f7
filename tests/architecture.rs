//! The tree's shape, checked: imports only look down the layers `src/lib.rs`
//! lists, and no two files import each other, directly or round a loop.
//!
//! The test reads the sources (not the compiled crate): every `crate::`,
//! `super::` and `pmem_stack::` path outside comments and outside the
//! `#[cfg(test)]` module at the end of a file is an edge from the file that
//! names it to the file that defines the module it names. One kind of edge
//! is left out on purpose: a `mod.rs` naming its own children (it declares
//! them and re-exports what they offer — a module's front door, not an
//! import); a child using its parent's types counts like any other edge.
//!
//! The layers are the numbered list in `src/lib.rs`'s module doc: under each
//! number, one `- [`name`]: …` line per module. Every top-level module must be in
//! exactly one layer, and an edge must never run from a lower layer to a
//! higher one. The CLI (`src/main.rs`, `src/cli/`) is the top layer; among
//! its own files the same no-cycle rule holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its trailing test module.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths like `crate::a::b::C` in `code`, as (root, segments).
fn paths(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for root in ["crate", "super", "pmem_stack"] {
        let needle = format!("{root}::");
        let mut rest = code;
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + needle.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut segments = Vec::new();
            let mut tail = rest;
            loop {
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                segments.push(tail[..end].to_string());
                if let Some(next) = tail[end..].strip_prefix("::") {
                    tail = next;
                } else {
                    break;
                }
            }
            // `use super::{a, b}`: each name in the braces.
            if let Some(group) = tail.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for name in inner.split(',') {
                    let name = name.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        let mut s = segments.clone();
                        s.push(name.to_string());
                        out.push((root.to_string(), s));
                    }
                }
            }
            if !segments.is_empty() {
                out.push((root.to_string(), segments));
            }
        }
    }
    out
}

struct Tree {
    /// Module path → file.
    files: BTreeMap<String, PathBuf>,
    /// Module path → the modules it imports.
    edges: BTreeMap<String, BTreeSet<String>>,
}

/// The import graph of the library (`lib`) or of the binary (`bin`: main.rs
/// and cli/, whose `crate::` is the binary's and whose `pmem_stack::` is
/// the library's).
fn graph(bin: bool) -> Tree {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    sources(&src, &mut all);
    let in_bin = |m: &str| m == "cli" || m.starts_with("cli::");
    let mut files = BTreeMap::new();
    for file in &all {
        let m = module_of(&src, file);
        let is_main = file.ends_with("main.rs");
        if bin == (in_bin(&m) || is_main) {
            files.insert(if is_main { "main".to_string() } else { m }, file.clone());
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (me, file) in &files {
        let text = fs::read_to_string(file).expect("read source");
        let is_dir_module = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        for (root, segments) in paths(&code(&text)) {
            let base: Vec<String> = match root.as_str() {
                "crate" => Vec::new(),
                "super" => {
                    // `super` of `a::b` (a.rs's child b, or a/b/mod.rs) is `a`.
                    let mut own: Vec<String> = me
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    own.pop();
                    own
                }
                _ => continue, // pmem_stack:: from the binary: the library, below it all
            };
            if root == "pmem_stack" {
                continue;
            }
            let mut full = base.clone();
            full.extend(segments);
            let target = (1..=full.len())
                .rev()
                .map(|k| full[..k].join("::"))
                .find(|c| files.contains_key(c));
            let Some(target) = target else { continue };
            let child_of_me =
                !me.is_empty() && target.starts_with(&format!("{me}::")) && is_dir_module;
            let lib_root_child = me.is_empty();
            if target != *me && !child_of_me && !lib_root_child && target != "main" {
                edges.entry(me.clone()).or_default().insert(target);
            }
        }
    }
    Tree { files, edges }
}

/// Strongly connected components with more than one module: the cycles.
fn cycles(tree: &Tree) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = tree.files.keys().collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for next in tree.edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        let mut comp: Vec<String> = nodes
            .iter()
            .filter(|m| reachable[*n].contains(**m) && reachable[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        comp.sort();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

/// The edges inside a cycle, `a → b (names)`, for the failure message.
fn explain(tree: &Tree, comp: &[String]) -> String {
    let mut lines = Vec::new();
    for a in comp {
        for b in tree.edges.get(a).into_iter().flatten() {
            if comp.contains(b) {
                lines.push(format!(
                    "  {} → {}",
                    tree.files[a].display(),
                    tree.files[b].display()
                ));
            }
        }
    }
    lines.join("\n")
}

/// `src/lib.rs`'s layers: top-level module → its layer number.
fn layers() -> BTreeMap<String, u32> {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read lib.rs");
    let mut out = BTreeMap::new();
    let mut layer = None;
    for line in lib.lines().take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!").trim_start();
        if let Some((n, _)) = text.split_once(". ")
            && let Ok(n) = n.parse::<u32>()
        {
            layer = Some(n);
        }
        let Some(n) = layer else { continue };
        // `- [`name`]: …`: a module of the layer above it.
        let Some(item) = text.strip_prefix("- [`") else {
            continue;
        };
        let name = &item[..item.find('`').unwrap_or(0)];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "src/lib.rs: a layer item that names no module: {line}"
        );
        let previous = out.insert(name.to_string(), n);
        assert!(
            previous.is_none(),
            "src/lib.rs names `{name}` in layers {previous:?} and {n}"
        );
    }
    out
}

#[test]
fn the_library_has_no_import_cycle() {
    let tree = graph(false);
    assert!(tree.files.len() > 30, "the sources were read");
    let found = cycles(&tree);
    let text: Vec<String> = found.iter().map(|c| explain(&tree, c)).collect();
    assert!(
        found.is_empty(),
        "import cycles in the library:\n{}",
        text.join("\n\n")
    );
}

#[test]
fn the_cli_has_no_import_cycle() {
    let tree = graph(true);
    assert!(tree.files.len() > 5, "the CLI's sources were read");
    let found = cycles(&tree);
    let text: Vec<String> = found.iter().map(|c| explain(&tree, c)).collect();
    assert!(
        found.is_empty(),
        "import cycles in the CLI:\n{}",
        text.join("\n\n")
    );
}

#[test]
fn every_module_has_a_layer_and_imports_only_look_down() {
    let layers = layers();
    let tree = graph(false);
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let declared: BTreeSet<String> = tree
        .files
        .keys()
        .map(|m| top(m))
        .filter(|m| !m.is_empty())
        .collect();
    let missing: Vec<&String> = declared
        .iter()
        .filter(|m| !layers.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "src/lib.rs's layer list does not name {missing:?}"
    );
    let stale: Vec<&String> = layers.keys().filter(|m| !declared.contains(*m)).collect();
    assert!(
        stale.is_empty(),
        "src/lib.rs's layer list names modules that do not exist: {stale:?}"
    );
    let mut upward = Vec::new();
    for (from, targets) in &tree.edges {
        for to in targets {
            let (a, b) = (top(from), top(to));
            if a != b && layers[&a] < layers[&b] {
                upward.push(format!(
                    "{} (layer {}) imports {} (layer {})",
                    tree.files[from].display(),
                    layers[&a],
                    tree.files[to].display(),
                    layers[&b]
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that look up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    // The parser on a made-up pair, so a silent parser cannot pass the
    // tests above by finding no edges at all.
    let found = paths("use crate::metadata::{self, Metadata};\nlet x = super::queue::decode(1);");
    assert!(found.contains(&("crate".to_string(), vec!["metadata".into(), "self".into()])));
    assert!(found.contains(&("super".to_string(), vec!["queue".into(), "decode".into()])));
    let tree = graph(false);
    let edges: usize = tree.edges.values().map(BTreeSet::len).sum();
    assert!(edges > 40, "only {edges} edges were found in the library");
}
