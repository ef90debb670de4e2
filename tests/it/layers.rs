//! The module graph, drawn from the imports of `src/`, has the layers
//! `docs/architecture.md` shows: a module imports only from layers below its own, and no
//! two files import each other.
//!
//! Read as text, as a reviewer reads it: `crate::a::b` paths, `super::` and `self::`
//! paths, and a module's `child::…` paths, in code outside `#[cfg(test)]` items (comments
//! are no imports). Test code may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `docs/architecture.md`, top-level modules only: each imports only from
/// a lower number. `main.rs` is the binary, above them all.
const LAYERS: &[(&str, u32)] = &[
    ("demo", 8),
    ("app", 7),
    ("admin", 6),
    ("proxy", 6),
    ("rollout", 5),
    ("shadow", 5),
    ("snapshot", 4),
    ("observe", 3),
    ("monitor", 2),
    ("feedback", 2),
    ("capture", 2),
    ("store", 2),
    ("server", 2),
    ("upstream", 2),
    ("compare", 1),
    ("config", 1),
    ("wire", 0),
    ("telemetry", 0),
    ("error", 0),
];

#[test]
fn every_module_imports_only_from_layers_below_its_own() {
    let graph = Graph::read();
    let layer = |m: &str| LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l);
    let mut wrong = Vec::new();
    for (from, tos) in &graph.edges {
        let Some(top) = from.first() else { continue };
        let Some(own) = layer(top) else {
            wrong.push(format!(
                "src/{}: a module the layer table does not list",
                top
            ));
            continue;
        };
        for to in tos {
            let other = &to[0];
            if other == top {
                continue;
            }
            match layer(other) {
                Some(l) if l < own => {}
                _ => wrong.push(format!("{} imports {}", from.join("::"), to.join("::"))),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let graph = Graph::read();
    let mut both = Vec::new();
    for (from, tos) in &graph.edges {
        for to in tos {
            if from < to && graph.edges.get(to).is_some_and(|back| back.contains(from)) {
                both.push(format!("{} <-> {}", graph.file(from), graph.file(to)));
            }
        }
    }
    assert!(
        both.is_empty(),
        "files that import each other:\n{}",
        both.join("\n")
    );
}

#[test]
fn the_layer_table_is_the_one_the_architecture_page_shows() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    for (module, layer) in LAYERS {
        // A row: the layer, then the module as a folder (`wire/`) or a file (`error.rs`).
        let shown = page.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.len() > 1
                && words[0] == layer.to_string()
                && [format!("{module}/"), format!("{module}.rs")].contains(&words[1].to_owned())
        });
        assert!(
            shown,
            "docs/architecture.md shows no layer {layer} row for {module}"
        );
    }
}

/// Module paths (`["shadow", "tap"]`) and, for each, the modules it imports.
struct Graph {
    files: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

impl Graph {
    fn read() -> Graph {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = BTreeMap::new();
        collect(&src, &src, &mut files);
        let mut graph = Graph {
            files,
            edges: BTreeMap::new(),
        };
        let modules: Vec<_> = graph.files.keys().cloned().collect();
        for module in modules {
            let text = std::fs::read_to_string(&graph.files[&module]).unwrap();
            let mut tos = BTreeSet::new();
            for path in paths(&code(&text)) {
                if let Some(to) = graph.resolve(&module, &path) {
                    if to != module {
                        tos.insert(to);
                    }
                }
            }
            graph.edges.insert(module, tos);
        }
        graph
    }

    fn file(&self, module: &[String]) -> String {
        let path = &self.files[module];
        let src = Path::new(env!("CARGO_MANIFEST_DIR"));
        path.strip_prefix(src).unwrap_or(path).display().to_string()
    }

    /// The module file a path names, as written in `module`: the longest prefix that is a
    /// file of `src/` (`super::Item` names the parent module's own file).
    fn resolve(&self, module: &[String], path: &[String]) -> Option<Vec<String>> {
        let parent = module[..module.len().saturating_sub(1)].to_vec();
        let (mut base, rest) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("super") => (parent, &path[1..]),
            Some("self") => (module.to_vec(), &path[1..]),
            // A module's own children are in scope by name.
            Some(first)
                if self
                    .files
                    .contains_key(&[module, &[first.to_owned()]].concat()) =>
            {
                (module.to_vec(), path)
            }
            _ => return None,
        };
        let mut found = self.files.contains_key(&base).then(|| base.clone());
        for seg in rest {
            base.push(seg.clone());
            if self.files.contains_key(&base) {
                found = Some(base.clone());
            } else {
                break;
            }
        }
        found
    }
}

/// Every `.rs` file under `dir` by its module path, leaving test files out.
fn collect(src: &Path, dir: &Path, out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                collect(src, &path, out);
            }
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let rel = path.strip_prefix(src).unwrap().with_extension("");
        let mut module: Vec<String> = rel
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod")) {
            module.pop();
        }
        if matches!(module.as_slice(), [one] if one == "lib" || one == "main") {
            continue;
        }
        out.insert(module, path);
    }
}

/// The code of a file: no comments, and no item under `#[cfg(test)]` (a test module, a
/// constant for tests).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut depth = 0i64;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            skipping = true;
            continue;
        }
        let line = line.split(" //").next().unwrap_or(line);
        if skipping {
            depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            let ended =
                depth <= 0 && (line.trim_end().ends_with(';') || line.trim_end().ends_with('}'));
            if ended {
                skipping = false;
                depth = 0;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path of two segments or more the code names (`crate::a::b`, `super::x`,
/// `child::f`), with `{a, b::c}` groups opened; [`Graph::resolve`] keeps those that name
/// a file of `src/`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let at_word = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if at_word && bytes[i].is_alphabetic() {
            let (path, end) = read_path(&bytes, i, &[]);
            out.extend(path.into_iter().filter(|p| p.len() > 1));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads `a::b::{c, d::e}` from `at`: the paths it names, and where it ends.
fn read_path(s: &[char], mut at: usize, prefix: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut segs = prefix.to_vec();
    loop {
        let start = at;
        while at < s.len() && (s[at].is_alphanumeric() || s[at] == '_') {
            at += 1;
        }
        if at > start {
            segs.push(s[start..at].iter().collect());
        }
        if at + 1 < s.len() && s[at] == ':' && s[at + 1] == ':' {
            at += 2;
            if at < s.len() && s[at] == '{' {
                let mut all = Vec::new();
                at += 1;
                loop {
                    while at < s.len() && (s[at].is_whitespace() || s[at] == ',') {
                        at += 1;
                    }
                    if at >= s.len() || s[at] == '}' {
                        return (all, at + 1);
                    }
                    let (inner, end) = read_path(s, at, &segs);
                    all.extend(inner);
                    at = end;
                    // Skip an `as name`.
                    while at < s.len() && !matches!(s[at], ',' | '}') {
                        at += 1;
                    }
                }
            }
            continue;
        }
        return (vec![segs], at);
    }
}
