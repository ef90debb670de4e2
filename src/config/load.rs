//! Loading: the one file that touches YAML.
//!
//! Parsing goes through `serde_yaml` (the maintained `yaml_serde` crate). Syntax and type
//! errors carry the parser's line; problems found by validation are located afterwards
//! by walking the document to the offending field with a [`DeserializeSeed`] probe, so
//! every problem names its field path *and* its line.
//!
//! A document is measured before it is parsed, so that no file can take the process's
//! memory or time: files over [`MAX_CONFIG_BYTES`], collections nested deeper than
//! [`MAX_NESTING`], and aliases that expand to more than [`MAX_EXPANDED_BYTES`] of
//! values or [`MAX_EXPANDED_NODES`] nodes are refused with a message naming the limit.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::validate::{validate, FieldPath, Seg};
use super::Config;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Field path such as `rollout.steps[1].weight` (empty for the document itself).
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        match self.line {
            Some(line) => write!(f, "{path} (line {line}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every problem found in a config file; loading fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The largest config file read. A real config is a few KiB.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The deepest nesting of mappings and sequences accepted. A real config nests 5 deep.
pub const MAX_NESTING: usize = 32;
/// At most this many bytes of scalar values, aliases expanded.
pub const MAX_EXPANDED_BYTES: usize = 4 << 20;
/// At most this many nodes (scalars, mappings, sequences), aliases expanded.
pub const MAX_EXPANDED_NODES: usize = 100_000;

/// A problem with the whole document.
fn document_problem(message: String) -> Problems {
    Problems(vec![Problem {
        path: String::new(),
        line: None,
        message,
    }])
}

/// Reads, parses and validates a config file (at most [`MAX_CONFIG_BYTES`] of it).
///
/// It blocks: the running proxy calls it off its async runtime.
pub fn load_file(path: &Path) -> Result<Config, Problems> {
    let cannot =
        |e: std::io::Error| document_problem(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(too_large(path.display()));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| document_problem(format!("{} is not UTF-8 text: {e}", path.display())))?;
    parse(&text)
}

fn too_large(what: impl fmt::Display) -> Problems {
    document_problem(format!(
        "{what} is larger than {} KiB, the limit for a config file: refused",
        MAX_CONFIG_BYTES >> 10
    ))
}

/// Parses and validates a config document.
pub fn parse(text: &str) -> Result<Config, Problems> {
    measure(text)?;
    let config: Config =
        serde_yaml::from_str(text).map_err(|e| Problems(vec![from_yaml_error(&e)]))?;
    let found = validate(&config);
    if found.is_empty() {
        return Ok(config);
    }
    Err(Problems(
        found
            .into_iter()
            .map(|(path, message)| Problem {
                line: locate(text, &path),
                path: path.to_string(),
                message,
            })
            .collect(),
    ))
}

// === limits ===

/// Refuses a document over the size, nesting or expansion limits, before it is parsed
/// into anything.
fn measure(text: &str) -> Result<(), Problems> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large("the document"));
    }
    // Deep flow nesting (`[[[[…`) is refused by reading the text: the YAML parser would
    // spend long on it before any depth check of ours could run.
    if flow_depth(text) > MAX_NESTING {
        return Err(too_deep());
    }
    let mut tally = Tally::default();
    let walk = Measure {
        tally: &mut tally,
        depth: 0,
    };
    match walk.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Ok(()) => Ok(()),
        Err(_) if tally.refused.is_some() => Err(tally.refused.take().expect("checked")),
        // Syntax errors are reported, with their line, by the parse that follows.
        Err(_) => Ok(()),
    }
}

fn too_deep() -> Problems {
    document_problem(format!(
        "mappings and sequences nest deeper than {MAX_NESTING} levels, the limit for a config: refused"
    ))
}

/// The deepest nesting of `[` and `{` outside quoted scalars and comments.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            _ if comment => comment = c != '\n',
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    deepest
}

/// What a walk over the document has seen so far, aliases expanded.
#[derive(Default)]
struct Tally {
    bytes: usize,
    nodes: usize,
    refused: Option<Problems>,
}

/// Walks a whole document without keeping anything, counting what aliases expand to,
/// and stops at the first limit passed.
struct Measure<'t> {
    tally: &'t mut Tally,
    depth: usize,
}

impl Measure<'_> {
    fn count<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        let t = &mut *self.tally;
        t.nodes += 1;
        t.bytes = t.bytes.saturating_add(bytes);
        if t.bytes > MAX_EXPANDED_BYTES || t.nodes > MAX_EXPANDED_NODES {
            t.refused = Some(document_problem(format!(
                "its values, aliases expanded, exceed {} MiB or {MAX_EXPANDED_NODES} nodes, the limit for a config: refused",
                MAX_EXPANDED_BYTES >> 20
            )));
            return Err(E::custom("expansion limit"));
        }
        Ok(())
    }

    fn nested(&mut self) -> Measure<'_> {
        Measure {
            tally: self.tally,
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Measure<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Measure<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.count(1)
    }
    fn visit_i64<E: de::Error>(mut self, _: i64) -> Result<(), E> {
        self.count(8)
    }
    fn visit_u64<E: de::Error>(mut self, _: u64) -> Result<(), E> {
        self.count(8)
    }
    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.count(8)
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.count(v.len())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.count(0)
    }
    fn visit_none<E: de::Error>(mut self) -> Result<(), E> {
        self.count(0)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while map.next_key_seed(self.nested())?.is_some() {
            map.next_value_seed(self.nested())?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(self.nested())?.is_some() {}
        Ok(())
    }
}

impl Measure<'_> {
    /// Counts a collection and refuses it past [`MAX_NESTING`].
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth >= MAX_NESTING {
            self.tally.refused = Some(too_deep());
            return Err(E::custom("nesting limit"));
        }
        self.count(0)
    }
}

/// Turns a serde_yaml error into a problem; its message is "path: what at line L column C".
fn from_yaml_error(e: &serde_yaml::Error) -> Problem {
    let line = e.location().map(|l| l.line());
    let full = e.to_string();
    // Drop the " at line L column C" tail: the line is reported on its own.
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    let (path, message) = match msg.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => (String::new(), msg.to_string()),
    };
    Problem {
        path,
        line,
        message,
    }
}

/// Finds the line of `path` in the document, or of its nearest ancestor that is present.
fn locate(text: &str, path: &FieldPath) -> Option<usize> {
    let segs = path.segs();
    (0..=segs.len())
        .rev()
        .find_map(|n| locate_exact(text, &segs[..n]))
}

const FOUND: &str = "switchyard-locator-found";

fn locate_exact(text: &str, segs: &[Seg]) -> Option<usize> {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Probe { segs }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

/// Walks a document along `segs`; at the end it fails on purpose so the parser marks the spot.
struct Probe<'a> {
    segs: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Probe<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.segs.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let (first, rest) = self.segs.split_first().expect("not empty");
        let key = Key {
            wanted: first,
            last: rest.is_empty(),
        };
        // Ends with FOUND on the last segment's key, so the line is the key's own even
        // when its value is a block that starts on the next line.
        while let Some(wanted) = map.next_key_seed(key)? {
            if wanted {
                return map.next_value_seed(Probe { segs: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let (first, rest) = self.segs.split_first().expect("not empty");
        let mut i = 0;
        loop {
            if matches!(first, Seg::Index(n) if *n == i) {
                return seq.next_element_seed(Probe { segs: rest }).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// Reads a mapping key of any scalar type and tells whether it is the `wanted` one; the
/// wanted key of the `last` segment fails with FOUND, at the key.
#[derive(Clone, Copy)]
struct Key<'a> {
    wanted: &'a Seg,
    last: bool,
}

impl Key<'_> {
    fn is<E: de::Error>(self, key: &str) -> Result<bool, E> {
        let wanted = matches!(self.wanted, Seg::Key(k) if k == key);
        if wanted && self.last {
            return Err(E::custom(FOUND));
        }
        Ok(wanted)
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.is(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.is(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.is(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.is(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
listen: 127.0.0.1:8080
backends:
  blue:
    url: http://127.0.0.1:18001
  green:
    url: http://127.0.0.1:18002
rollout:
  stable: blue
  candidate: green
  steps:
    - { weight: 0, mirror: 100, hold: 2m }
    - weight: 150
      hold: 1m
    - { weight: 100 }
";

    #[test]
    fn validation_problems_name_field_and_line() {
        let err = parse(BASE).unwrap_err();
        let p = err
            .0
            .iter()
            .find(|p| p.path == "rollout.steps[1].weight")
            .expect("weight problem");
        assert_eq!(p.line, Some(12), "{err}");
        assert!(p.message.contains("between 0 and 100"), "{}", p.message);
    }

    #[test]
    fn a_key_whose_value_is_a_block_is_located_at_the_key() {
        let text = BASE.replace(
            "  candidate: green",
            "  candidate: green\n  strategy: blue-green",
        );
        let err = parse(&text).unwrap_err();
        let p = err
            .0
            .iter()
            .find(|p| p.path == "rollout.steps")
            .expect("steps");
        assert_eq!(p.line, Some(11), "`  steps:`, not its first item: {err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let text = BASE.replace("  candidate: green", "  candidate: green\n  stpes: []");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.0.len(), 1);
        let p = &err.0[0];
        assert_eq!(p.line, Some(10), "{p}");
        assert!(p.message.contains("unknown field `stpes`"), "{p}");
        assert_eq!(p.path, "rollout");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = BASE
            .replace("candidate: green", "candidate: purple")
            .replace("url: http://127.0.0.1:18001", "url: ftp://x");
        let err = parse(&text).unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"rollout.candidate"), "{paths:?}");
        assert!(paths.contains(&"backends.blue.url"), "{paths:?}");
        assert!(paths.contains(&"rollout.steps[1].weight"), "{paths:?}");
        let cand = err
            .0
            .iter()
            .find(|p| p.path == "rollout.candidate")
            .unwrap();
        assert_eq!(cand.line, Some(9));
    }

    #[test]
    fn bad_duration_names_its_line() {
        let text = BASE.replace("hold: 1m", "hold: one minute");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.0[0].line, Some(13), "{err}");
        assert!(err.0[0].message.contains("not a duration"), "{err}");
    }

    // === limits ===

    fn refused(text: &str) -> String {
        let started = std::time::Instant::now();
        let err = parse(text).expect_err("over a limit");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(err.0.len(), 1, "{err}");
        err.0[0].message.clone()
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_expands() {
        // 100 KiB aliased 2 000 times: 200 MB expanded.
        let big = "x".repeat(100 << 10);
        let aliases = vec!["*a"; 2000].join(", ");
        let text = format!("{BASE}shadow:\n  compare:\n    ignore: [&a \"{big}\", {aliases}]\n");
        let message = refused(&text);
        assert!(
            message.contains("aliases expanded") && message.contains("4 MiB"),
            "{message}"
        );
    }

    #[test]
    fn nested_aliases_are_refused_by_their_node_count() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let message = refused(&text);
        assert!(message.contains("100000 nodes"), "{message}");
    }

    #[test]
    fn deep_nesting_is_refused_flow_or_block() {
        let flow = format!("x: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert!(refused(&flow).contains("deeper than 32"));
        let block: String = (0..40).map(|i| format!("{}a:\n", "  ".repeat(i))).collect();
        assert!(refused(&block).contains("deeper than 32"));
    }

    #[test]
    fn brackets_in_quotes_and_comments_are_not_nesting() {
        assert_eq!(flow_depth("a: \"[[[[\" # {{{{\nb: '[[' \nc: [1, [2]]"), 2);
        assert_eq!(flow_depth("a: \"\\\"[[\""), 0);
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        let padding = "#".repeat(MAX_CONFIG_BYTES);
        std::fs::write(&path, format!("{BASE}{padding}\n")).unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(err.to_string().contains("larger than 1024 KiB"), "{err}");
    }
}
