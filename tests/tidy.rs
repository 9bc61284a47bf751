//! Style as a test (issue 13): no function of production code grows past
//! `FUNCTION_LINES_MAX` lines, and the functions that were longer when the rule came in
//! may only shrink.
//!
//! How: every `.rs` file under the workspace's production source folders is parsed with
//! `syn` (a parser, not a line count of braces, so strings, comments and macros cannot
//! fool it), and every function and method body outside `#[cfg(test)]` items and
//! `#[test]` functions is measured from its signature's first line to its closing brace.
//! A function over the limit fails the test unless [`EXCEPTIONS`] lists it, and a listed
//! one fails when it grew past its recorded length, or when it no longer needs its entry
//! (so the list only shrinks; remove the entry when you shorten one).
//!
//! Modelled on TigerBeetle's `tidy.zig`. Tests, benches, fuzz targets and the compat
//! crate are not measured: long scenario functions read better whole.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

/// The longest a function may be, in lines, signature and closing brace included.
const FUNCTION_LINES_MAX: usize = 100;

/// Source folders of production code, relative to the workspace root.
const SOURCE_DIRS: &[&str] = &["src", "net/src", "storage/src", "raft/src", "tools/bench/src"];

/// Functions that were longer than the limit when it came in: `path::function` (methods
/// as `path::Type::method`) and the length they may not exceed.
const EXCEPTIONS: &[(&str, usize)] = &[
    ("raft/src/replica.rs::Replica::open_with", 138),
    ("src/config.rs::BrokerConfig::resolve", 161),
    ("src/namesrv/mod.rs::NameServer::answer", 156),
    ("tools/bench/src/args.rs::Args::validate", 111),
    ("tools/bench/src/consume.rs::pull_loop", 105),
    ("tools/bench/src/run.rs::executor_main", 112),
    ("tools/bench/src/run.rs::run", 200),
];

/// One measured function.
struct Function {
    name: String,
    lines: usize,
}

/// Collects the functions of one file, skipping test code.
struct Collector<'a> {
    file: &'a str,
    scope: Vec<String>,
    found: Vec<Function>,
}

fn is_test_code(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let path = a.path();
        if path.is_ident("test") {
            return true;
        }
        if path.is_ident("cfg") {
            let tokens = a.meta.require_list().map(|l| l.tokens.to_string()).unwrap_or_default();
            return tokens.split(|c: char| !c.is_alphanumeric() && c != '_').any(|t| t == "test");
        }
        false
    })
}

impl Collector<'_> {
    fn record(&mut self, name: &syn::Ident, span: proc_macro2::Span) {
        let lines = span.end().line - span.start().line + 1;
        let mut path = vec![self.file.to_string()];
        path.extend(self.scope.iter().cloned());
        path.push(name.to_string());
        self.found.push(Function { name: path.join("::"), lines });
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_test_code(&m.attrs) {
            return;
        }
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_test_code(&f.attrs) {
            return;
        }
        self.record(&f.sig.ident, f.span());
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if is_test_code(&i.attrs) {
            return;
        }
        let name = match &*i.self_ty {
            syn::Type::Path(p) => p.path.segments.last().map_or_else(|| "?".into(), |s| s.ident.to_string()),
            _ => "?".into(),
        };
        self.scope.push(name);
        syn::visit::visit_item_impl(self, i);
        self.scope.pop();
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test_code(&f.attrs) {
            return;
        }
        self.record(&f.sig.ident, f.span());
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        if is_test_code(&t.attrs) {
            return;
        }
        self.scope.push(t.ident.to_string());
        syn::visit::visit_item_trait(self, t);
        self.scope.pop();
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if f.default.is_some() && !is_test_code(&f.attrs) {
            self.record(&f.sig.ident, f.span());
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every production function of the workspace, by name, with its length.
fn measure() -> BTreeMap<String, usize> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files: is SOURCE_DIRS right?", files.len());
    let mut all = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let mut c = Collector { file: &rel, scope: Vec::new(), found: Vec::new() };
        c.visit_file(&ast);
        for f in c.found {
            // Two functions of one name in one scope (cfg variants): keep the longer.
            let e = all.entry(f.name).or_insert(0);
            *e = (*e).max(f.lines);
        }
    }
    all
}

#[test]
fn no_production_function_grows_past_the_limit() {
    let all = measure();
    let exceptions: BTreeMap<&str, usize> = EXCEPTIONS.iter().copied().collect();
    let mut problems = Vec::new();
    for (name, &lines) in &all {
        match exceptions.get(name.as_str()) {
            None if lines > FUNCTION_LINES_MAX => {
                problems.push(format!("{name}: {lines} lines (limit {FUNCTION_LINES_MAX}); split it"))
            }
            Some(&allowed) if lines > allowed => {
                problems.push(format!("{name}: {lines} lines, grew past its recorded {allowed}; split it"))
            }
            Some(_) if lines <= FUNCTION_LINES_MAX => {
                problems.push(format!("{name}: {lines} lines, within the limit now: remove it from EXCEPTIONS"))
            }
            _ => {}
        }
    }
    for name in exceptions.keys() {
        if !all.contains_key(*name) {
            problems.push(format!("{name}: listed in EXCEPTIONS but no longer exists: remove it"));
        }
    }
    assert!(problems.is_empty(), "function length rule:\n{}", problems.join("\n"));
}

#[test]
fn the_measure_sees_functions_methods_and_skips_tests() {
    let all = measure();
    assert!(all.keys().any(|k| k.starts_with("src/main.rs::main")), "free functions are measured");
    assert!(all.keys().any(|k| k.contains("::Store::") || k.contains("::Shard::")), "methods are measured");
    assert!(!all.keys().any(|k| k.contains("::tests::")), "test modules are skipped");
}
