//! The import rules of the source tree, read from its `use` lines and paths: no import circle
//! between modules, model code apart from commands, io below stages and model, the library
//! below the CLI. A module here is a top-level module of `src/`, and for `stages/` and
//! `torch/` the module one level down (`stages/report`, `torch/model`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module a source file belongs to.
fn module_of(relative: &Path) -> String {
    let parts: Vec<String> =
        relative.iter().map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    match parts.first().map(String::as_str) {
        Some("stages" | "torch") if parts.len() > 1 && parts[1] != "mod" => format!("{}/{}", parts[0], parts[1]),
        Some("main" | "bin") => "bin".to_owned(),
        Some(first) => first.to_owned(),
        None => String::new(),
    }
}

/// The module a path like `stages::train::plan` or `torch::model::router` names.
fn module_of_path(path: &str) -> String {
    let parts: Vec<&str> = path.split("::").collect();
    match parts.as_slice() {
        [first @ ("stages" | "torch"), second, ..] if second.chars().next().is_some_and(char::is_lowercase) => {
            format!("{first}/{second}")
        }
        [first, ..] => (*first).to_owned(),
        [] => String::new(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Module → the modules its code names (`crate::x::…`, `routerdc::x::…`, and in the torch
/// code `crate::torch::x`), comments and test modules excluded.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let pattern = regex::Regex::new(r"\b(?:crate|routerdc)::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)?)").unwrap();
    // `use crate::{a, b::c}` groups.
    let group = regex::Regex::new(r"\b(?:crate|routerdc)::\{([^}]*)\}").unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().to_path_buf();
        let from = module_of(&relative);
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach anywhere; only the code itself is checked.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let edges = graph.entry(from.clone()).or_default();
        for line in code.lines().map(str::trim).filter(|line| !line.starts_with("//")) {
            for captures in pattern.captures_iter(line) {
                edges.insert(module_of_path(&captures[1]));
            }
            for captures in group.captures_iter(line) {
                for item in captures[1].split(',') {
                    let item = item.trim();
                    if !item.is_empty() {
                        edges.insert(module_of_path(item));
                    }
                }
            }
        }
        edges.remove(&from);
        // The binaries' `#[path]` module: `crate::torch::…` there is the torch code.
        edges.retain(|to| !to.is_empty() && to != "torch");
    }
    graph
}

fn assert_imports_only(graph: &BTreeMap<String, BTreeSet<String>>, module: &str, allowed: &[&str]) {
    let Some(edges) = graph.get(module) else { panic!("no module `{module}` in src/") };
    let extra: Vec<&String> = edges.iter().filter(|to| !allowed.contains(&to.as_str())).collect();
    assert!(extra.is_empty(), "`{module}` may import only {allowed:?} but imports {extra:?}");
}

#[test]
fn model_code_imports_only_the_routing_core_and_model_files() {
    let graph = imports();
    assert_imports_only(&graph, "torch/model", &["routing", "hf", "error"]);
    assert_imports_only(&graph, "routing", &["table", "error"]);
}

#[test]
fn io_imports_neither_stages_nor_model() {
    let graph = imports();
    assert_imports_only(&graph, "io", &["error", "table"]);
    assert_imports_only(&graph, "hf", &["error", "io"]);
    assert_imports_only(&graph, "table", &["error"]);
}

#[test]
fn the_library_never_imports_the_cli() {
    let graph = imports();
    for (module, edges) in &graph {
        // The command line itself, and the binaries' code (`src/torch/` is compiled into
        // `routerdc-torch` only).
        if ["cli", "commands", "bin", "lib"].contains(&module.as_str()) || module.starts_with("torch/") {
            continue;
        }
        assert!(
            !edges.contains("cli") && !edges.contains("commands"),
            "`{module}` imports the command line: {edges:?}"
        );
    }
    // Stages and the pipeline never reach the libtorch side.
    for (module, edges) in &graph {
        if module.starts_with("stages/") || module == "pipeline" {
            assert!(!edges.iter().any(|to| to.starts_with("torch/")), "`{module}` imports libtorch code: {edges:?}");
        }
    }
}

#[test]
fn no_import_circle() {
    let graph = imports();
    // Depth-first search for a back edge, naming the circle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn no_source_file_over_700_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 700, "{} has {lines} lines", file.display());
    }
}

#[test]
fn the_rules_see_real_imports() {
    // The checks above would pass on an empty graph; make sure the parse finds known edges.
    let graph = imports();
    assert!(graph["stages/report"].contains("routing"), "{graph:?}");
    assert!(graph["torch/commands"].contains("torch/model"), "{graph:?}");
    assert!(graph["torch/model"].contains("routing"), "{graph:?}");
    assert!(graph["commands"].contains("cli"), "{graph:?}");
}
