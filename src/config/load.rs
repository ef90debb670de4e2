//! Loading: the one file that touches YAML.
//!
//! Parsing goes through `serde_yaml` (the maintained `yaml_serde` crate). Every problem
//! names its field path and its line: the line is found by walking the document to the
//! field with a [`DeserializeSeed`] probe.
//!
//! A document that does not deserialize (a value of the wrong type, an unknown or missing
//! key) is read again and again: after each problem the offending value is taken out of a
//! copy of the document (or set to a stand-in of another type, or a missing key given
//! one) and the copy read anew, so that every such problem is listed at once, not only
//! the first; serde's words for them (`expected f64`) become the user's (see
//! [`words`](crate::config::words)). The values' own checks ([`validate`]) run once the document
//! reads: on a repaired copy they would report the stand-ins. A YAML syntax error stops
//! the reading where it is.
//!
//! A document is measured before it is parsed, so that no file can take the process's
//! memory or time: files over [`MAX_CONFIG_BYTES`], collections nested deeper than
//! [`MAX_NESTING`], and aliases that expand to more than [`MAX_EXPANDED_BYTES`] of
//! values or [`MAX_EXPANDED_NODES`] nodes are refused with a message naming the limit.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;

use super::path::{FieldPath, Seg};
use super::types::Config;
use super::validate::validate;
use super::words::{self, Said};

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

/// Why a config was refused: every problem found, and how far the checks got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub problems: Problems,
    pub reach: Reach,
}

/// How far the checks of a refused config got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Reading stopped at the last problem (a YAML syntax error, a limit, a problem no
    /// stand-in gets past): there may be more after it.
    Stopped,
    /// The whole document was read and every problem of reading it is listed; the values'
    /// own checks (backends named, weights in order, …) wait until they are fixed.
    Read,
    /// Read, and every value checked.
    Checked,
}

impl Reach {
    /// What a user should know about problems not listed, if anything.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Reach::Stopped => Some("reading stopped at the last problem: fix it to see any after it"),
            Reach::Read => Some("the values' own checks (backends named, weights in order, …) run once these are fixed"),
            Reach::Checked => None,
        }
    }
}

impl Refusal {
    fn stopped(problems: Problems) -> Self {
        Refusal {
            problems,
            reach: Reach::Stopped,
        }
    }
}

/// The most problems of reading listed at once.
const MAX_READING_PROBLEMS: usize = 50;
/// The most bytes of YAML read again, once a document is refused, to find further
/// problems of reading and the line of each problem: hundreds of readings of a real
/// config of a few KiB (50 problems take at most a few hundred), a handful of the largest
/// one accepted, so a refused file costs at most about a second of one core. Problems
/// past it are listed without their line.
const MAX_REREAD_BYTES: usize = 8 << 20;

/// The largest config file read. A real config is a few KiB.
pub(super) const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The deepest nesting of mappings and sequences accepted. A real config nests 5 deep.
pub(super) const MAX_NESTING: usize = 32;
/// At most this many bytes of scalar values, aliases expanded.
pub(super) const MAX_EXPANDED_BYTES: usize = 4 << 20;
/// At most this many nodes (scalars, mappings, sequences), aliases expanded.
pub(super) const MAX_EXPANDED_NODES: usize = 100_000;

/// A problem with the whole document.
fn document_problem(message: String) -> Problems {
    Problems(vec![Problem {
        path: String::new(),
        line: None,
        message,
    }])
}

/// What a config names outside itself, checked by the layer that reads it (a monitor's
/// reference file is read by the monitor): each problem with its field path. It runs with
/// the values' own checks, and its problems are listed with theirs.
pub type Outside = fn(&Config) -> Vec<(FieldPath, String)>;

/// No check of what a config names outside itself.
fn nothing_outside(_: &Config) -> Vec<(FieldPath, String)> {
    Vec::new()
}

/// Reads, parses and validates a config file (at most [`MAX_CONFIG_BYTES`] of it).
///
/// It blocks: the running proxy calls it off its async runtime.
pub fn load_file(path: &Path) -> Result<Config, Problems> {
    check_file(path).map_err(|r| r.problems)
}

/// [`load_file`], saying how far the checks got when the file is refused.
pub fn check_file(path: &Path) -> Result<Config, Refusal> {
    check_file_with(path, nothing_outside)
}

/// [`check_file`], with `outside` checking what the config names outside itself.
pub fn check_file_with(path: &Path, outside: Outside) -> Result<Config, Refusal> {
    let cannot = |e: std::io::Error| {
        Refusal::stopped(document_problem(format!(
            "cannot read {}: {e}",
            path.display()
        )))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(Refusal::stopped(too_large(path.display())));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Refusal::stopped(document_problem(format!(
            "{} is not UTF-8 text: {e}",
            path.display()
        )))
    })?;
    check_with(&text, outside)
}

fn too_large(what: impl fmt::Display) -> Problems {
    document_problem(format!(
        "{what} is larger than {} KiB, the limit for a config file: refused",
        MAX_CONFIG_BYTES >> 10
    ))
}

/// Parses and validates a config document.
pub fn parse(text: &str) -> Result<Config, Problems> {
    check(text).map_err(|r| r.problems)
}

/// [`parse`], saying how far the checks got when the document is refused.
pub fn check(text: &str) -> Result<Config, Refusal> {
    check_with(text, nothing_outside)
}

/// [`check`], with `outside` checking what the config names outside itself.
pub fn check_with(text: &str, outside: Outside) -> Result<Config, Refusal> {
    measure(text).map_err(Refusal::stopped)?;
    let config: Config = match serde_yaml::from_str(text) {
        Ok(config) => config,
        Err(e) => return Err(unreadable(text, &e)),
    };
    let mut found = validate(&config);
    found.extend(outside(&config));
    if found.is_empty() {
        return Ok(config);
    }
    let mut budget = MAX_REREAD_BYTES;
    let problems = found
        .into_iter()
        .map(|(path, message)| Problem {
            line: locate_within(text, path.segs(), &mut budget),
            path: path.to_string(),
            message,
        })
        .collect();
    Err(Refusal {
        problems: Problems(problems),
        reach: Reach::Checked,
    })
}

// === problems of reading ===

/// One problem serde met reading the document: where (serde_yaml's path of the mapping
/// or value, `rollout.steps[1]`) and what.
struct Reading {
    path: String,
    said: Said,
    /// The parser's line, when the text it read is the original.
    line: Option<usize>,
}

impl Reading {
    fn of(e: &serde_yaml::Error) -> Self {
        let (path, message) = split_yaml_error(e);
        Reading {
            path,
            said: Said::of(&message),
            line: e.location().map(|l| l.line()),
        }
    }

    /// The path of the field the problem is about (a missing or unknown key's own).
    fn spot(&self) -> String {
        match (self.said.field(), self.path.is_empty()) {
            (Some(field), true) => field.to_string(),
            (Some(field), false) => format!("{}.{field}", self.path),
            (None, _) => self.path.clone(),
        }
    }
}

/// serde_yaml's message split into its path (empty for the document) and what it says,
/// without the " at line L column C" it ends with.
fn split_yaml_error(e: &serde_yaml::Error) -> (String, String) {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    match msg.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => (String::new(), msg.to_string()),
    }
}

/// Every problem of reading `text`, whose first reading failed with `first`.
///
/// Each problem is repaired in a copy of the document ([`repair`]) and the copy read
/// again, until it reads, no repair gets past a problem, or the limits
/// ([`MAX_READING_PROBLEMS`], [`MAX_REREAD_BYTES`]) are reached.
fn unreadable(text: &str, first: &serde_yaml::Error) -> Refusal {
    let mut reading = Reading::of(first);
    let mut doc = match serde_yaml::from_str::<Value>(text) {
        Ok(doc) => doc,
        // Not YAML (or a key given twice): nothing to read on from. A problem of reading
        // met before the YAML breaks off is reported too.
        Err(broken) => {
            let before = first.to_string() != broken.to_string();
            let mut problems = Vec::new();
            if before {
                problems.push(describe(text, None, &reading, &mut 0));
            }
            if !matches!(reading.said, Said::Duplicate { .. }) || !before {
                problems.push(syntax_problem(&broken));
            }
            return Refusal::stopped(Problems(problems));
        }
    };
    if doc.is_null() {
        return Refusal {
            problems: document_problem(
                "the document is empty: a config needs at least `backends:` and `rollout:`"
                    .to_string(),
            ),
            reach: Reach::Read,
        };
    }
    let mut problems = Vec::new();
    let mut budget = MAX_REREAD_BYTES;
    // Fields taken out of the copy because their value was wrong, and fields an unknown
    // key was likely a typo of: that they are then missing is the same problem again.
    let mut reported = Vec::new();
    loop {
        let again =
            matches!(reading.said, Said::Missing { .. }) && reported.contains(&reading.spot());
        if !again {
            problems.push(describe(text, Some(&doc), &reading, &mut budget));
        }
        if let Some(meant) = reading.said.meant() {
            reported.push(match reading.path.is_empty() {
                true => meant.to_string(),
                false => format!("{}.{meant}", reading.path),
            });
        }
        if problems.len() >= MAX_READING_PROBLEMS {
            return Refusal::stopped(Problems(problems));
        }
        let Some(repaired) = repair(&doc, &reading, &mut budget) else {
            return Refusal::stopped(Problems(problems));
        };
        if repaired.removed {
            reported.push(reading.spot());
        }
        match repaired.next {
            None => break,
            Some(next) => (doc, reading) = (repaired.doc, next),
        }
    }
    Refusal {
        problems: Problems(problems),
        reach: Reach::Read,
    }
}

/// A YAML syntax error in user words, at its line.
fn syntax_problem(e: &serde_yaml::Error) -> Problem {
    let full = e.to_string();
    let what = full.split(" at line ").next().unwrap_or(&full);
    Problem {
        path: String::new(),
        line: e.location().map(|l| l.line()),
        message: words::syntax(what),
    }
}

/// The problem `reading` found in `doc` (the document as last read, when it reads as
/// YAML), with its line in the original `text` (while the re-reading `budget` lasts) and
/// its value as written.
fn describe(text: &str, doc: Option<&Value>, reading: &Reading, budget: &mut usize) -> Problem {
    let segs = doc.and_then(|d| resolve(d, &reading.path)).map(|mut segs| {
        if let Some(field) = reading.said.field() {
            segs.push(Seg::Key(field.to_string()));
        }
        segs
    });
    let line = segs
        .as_deref()
        .and_then(|s| locate_within(text, s, budget))
        .or(reading.line);
    let got = (doc.zip(segs.as_deref()))
        .and_then(|(d, s)| get(d, s))
        .map(as_written);
    let spot = reading.spot();
    let field = match segs.as_deref().and_then(<[Seg]>::last) {
        Some(Seg::Key(k)) => k.clone(),
        Some(Seg::Index(_)) => String::new(),
        None => spot.rsplit('.').next().unwrap_or_default().to_string(),
    };
    Problem {
        message: words::explain(&reading.said, &field, got.as_deref()),
        path: spot,
        line,
    }
}

/// A value as the user wrote it: a scalar in backticks, a collection by its kind.
fn as_written(v: &Value) -> String {
    fn ticked(s: &str) -> String {
        const MOST: usize = 60;
        match s.char_indices().nth(MOST) {
            Some((cut, _)) => format!("`{}…`", &s[..cut]),
            None => format!("`{s}`"),
        }
    }
    match v {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => ticked(s),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged `{}`", t.tag),
    }
}

/// What a repair may do to the value at a path.
enum Edit {
    /// Take the key out (a field with a default reads without it).
    Remove,
    /// Set (or add) the value.
    Set(Value),
}

/// Stand-ins tried, in turn, for a value of the wrong type or a missing one.
fn stand_ins() -> [Value; 5] {
    [
        Value::from(0),
        Value::from("1s"),
        Value::from(false),
        Value::Mapping(Default::default()),
        Value::Sequence(Vec::new()),
    ]
}

/// A copy of the document past one problem.
struct Repaired {
    doc: Value,
    /// The next problem reading the copy meets; `None` when it reads.
    next: Option<Reading>,
    /// The field was taken out (rather than given a stand-in).
    removed: bool,
}

/// A copy of `doc` past `reading`'s problem; `None` when no edit gets past the problem
/// (or the re-reading `budget` is spent).
///
/// An edit gets past when the copy's next problem is about another field, and not one
/// inside the field edited (a stand-in mapping missing its keys is not progress).
fn repair(doc: &Value, reading: &Reading, budget: &mut usize) -> Option<Repaired> {
    let mut segs = resolve(doc, &reading.path)?;
    let edits: Vec<Edit> = match &reading.said {
        Said::Unknown { field, .. } => {
            segs.push(Seg::Key(field.clone()));
            vec![Edit::Remove]
        }
        Said::Missing { field } => {
            segs.push(Seg::Key(field.clone()));
            stand_ins().into_iter().map(Edit::Set).collect()
        }
        Said::Duplicate { .. } => return None,
        Said::Value(_) => {
            // A list item is not removed: the items after it would change their index.
            let removable = matches!(segs.last()?, Seg::Key(_));
            let remove = removable.then_some(Edit::Remove);
            remove
                .into_iter()
                .chain(stand_ins().into_iter().map(Edit::Set))
                .collect()
        }
    };
    let spot = reading.spot();
    for edit in edits {
        let removed = matches!(edit, Edit::Remove);
        let mut copy = doc.clone();
        if !apply(&mut copy, &segs, edit) {
            continue;
        }
        let yaml = serde_yaml::to_string(&copy).ok()?;
        *budget = budget.checked_sub(yaml.len())?;
        let next = match serde_yaml::from_str::<Config>(&yaml) {
            Ok(_) => None,
            // Its line is in the copy: the original's is looked up when it is described.
            Err(e) => Some(Reading {
                line: None,
                ..Reading::of(&e)
            }),
        };
        if next.as_ref().is_some_and(|n| within(&n.spot(), &spot)) {
            continue;
        }
        return Some(Repaired {
            doc: copy,
            next,
            removed,
        });
    }
    None
}

/// Whether the field at path `inner` is the one at `outer` or inside it.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The segments of serde_yaml's path string (`backends.a.b.url`) in `doc`, matching keys
/// whole, so that a key with a dot in it is found; `None` when the path is not in `doc`.
fn resolve(doc: &Value, path: &str) -> Option<Vec<Seg>> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    match doc {
        Value::Tagged(t) => resolve(&t.value, path),
        Value::Mapping(map) => map.iter().find_map(|(k, v)| {
            let key = key_text(k)?;
            let rest = path.strip_prefix(key.as_str())?;
            let rest = match rest.strip_prefix('.') {
                Some(after) => after,
                None if rest.is_empty() || rest.starts_with('[') => rest,
                None => return None,
            };
            let mut segs = resolve(v, rest)?;
            segs.insert(0, Seg::Key(key));
            Some(segs)
        }),
        Value::Sequence(items) => {
            let (index, rest) = path.strip_prefix('[')?.split_once(']')?;
            let i: usize = index.parse().ok()?;
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            let mut segs = resolve(items.get(i)?, rest)?;
            segs.insert(0, Seg::Index(i));
            Some(segs)
        }
        _ => None,
    }
}

/// A mapping key as serde_yaml's path writes it.
fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The value at `segs` in `doc`.
fn get<'v>(doc: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(doc);
    };
    let child = match (doc, first) {
        (Value::Tagged(t), _) => return get(&t.value, segs),
        (Value::Mapping(m), Seg::Key(k)) => m.get(k.as_str())?,
        (Value::Sequence(s), Seg::Index(i)) => s.get(*i)?,
        _ => return None,
    };
    get(child, rest)
}

/// Applies `edit` to the value at `segs` (not empty) in `doc`; false when it cannot be.
fn apply(doc: &mut Value, segs: &[Seg], edit: Edit) -> bool {
    let Some((last, parent)) = segs.split_last() else {
        return false;
    };
    let mut at = doc;
    for seg in parent {
        if let Value::Tagged(t) = at {
            at = &mut t.value;
        }
        let next = match (at, seg) {
            (Value::Mapping(m), Seg::Key(k)) => m.get_mut(k.as_str()),
            (Value::Sequence(s), Seg::Index(i)) => s.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else {
            return false;
        };
        at = next;
    }
    if let Value::Tagged(t) = at {
        at = &mut t.value;
    }
    match (at, last, edit) {
        (Value::Mapping(m), Seg::Key(k), Edit::Remove) => m.shift_remove(k.as_str()).is_some(),
        (Value::Mapping(m), Seg::Key(k), Edit::Set(v)) => {
            m.insert(Value::from(k.as_str()), v);
            true
        }
        (Value::Sequence(s), Seg::Index(i), Edit::Set(v)) => match s.get_mut(*i) {
            Some(item) => {
                *item = v;
                true
            }
            None => false,
        },
        _ => false,
    }
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

/// Finds the line of `segs` in the document, or of its nearest ancestor that is present,
/// each reading of `text` paid for from `budget`; `None` once it is spent.
fn locate_within(text: &str, segs: &[Seg], budget: &mut usize) -> Option<usize> {
    (0..=segs.len()).rev().find_map(|n| {
        *budget = budget.checked_sub(text.len())?;
        locate_exact(text, &segs[..n])
    })
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
        assert!(p.message.contains("did you mean `steps`?"), "{p}");
        assert_eq!(p.path, "rollout.stpes");
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
        assert_eq!(
            err.0[0].message,
            "expected a duration such as 500ms, 10s, 2m or 1h, or `manual`, got `one minute`",
            "{err}"
        );
    }

    // === problems of reading ===

    fn refusal(text: &str) -> Refusal {
        check(text).expect_err("a problem")
    }

    #[test]
    fn every_type_problem_is_listed_with_its_line_in_user_words() {
        let text = BASE
            .replace("weight: 150", "weight: 1%")
            .replace("hold: 1m", "hold: forever")
            .replace(
                "url: http://127.0.0.1:18002",
                "url: http://127.0.0.1:18002\n    max_connections: many",
            )
            + "shadow:\n  calibrate: [5]\n";
        let r = refusal(&text);
        assert_eq!(r.reach, Reach::Read, "{}", r.problems);
        let listed: Vec<_> = r
            .problems
            .0
            .iter()
            .map(|p| (p.path.as_str(), p.line, p.message.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "backends.green.max_connections",
                    Some(7),
                    "expected a whole number such as 10, got `many`"
                ),
                (
                    "rollout.steps[1].weight",
                    Some(13),
                    "expected a number such as 25 (a percentage, 0 to 100), got `1%` (write the percentage without `%`: 1)"
                ),
                (
                    "rollout.steps[1].hold",
                    Some(14),
                    "expected a duration such as 500ms, 10s, 2m or 1h, or `manual`, got `forever`"
                ),
                (
                    "shadow.calibrate",
                    Some(17),
                    "expected a number such as 25 (a percentage, 0 to 100), got a list"
                ),
            ]
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_listed_with_the_rest() {
        let text = BASE
            .replace(
                "  candidate: green",
                "  candidate: green\n  stpes: []\n  strategy: slow",
            )
            .replace("- { weight: 100 }", "- { hold: 1m }");
        let r = refusal(&text);
        let paths: Vec<_> = r
            .problems
            .0
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert_eq!(
            paths,
            [
                ("rollout.stpes", Some(10)),
                ("rollout.strategy", Some(11)),
                ("rollout.steps[2].weight", Some(16)),
            ],
            "{}",
            r.problems
        );
        assert!(
            r.problems.0[2].message.contains("required"),
            "{}",
            r.problems
        );
    }

    #[test]
    fn a_required_field_of_the_wrong_type_is_one_problem_not_two() {
        let text = BASE.replace("  stable: blue", "  stable: [blue]");
        let r = refusal(&text);
        assert_eq!(r.problems.0.len(), 1, "{}", r.problems);
        assert_eq!(r.problems.0[0].path, "rollout.stable");
        assert_eq!(r.problems.0[0].message, "expected text, got a list");
    }

    #[test]
    fn a_key_with_a_dot_in_it_is_found() {
        let text = BASE
            .replace("  blue:", "  blue.v1:")
            .replace("stable: blue", "stable: blue.v1")
            + "limits:\n  max_body: lots\n";
        let text = text.replace(
            "url: http://127.0.0.1:18001",
            "url: http://127.0.0.1:18001\n    timeout: 5",
        );
        let r = refusal(&text);
        let first = &r.problems.0[0];
        assert_eq!(first.path, "backends.blue.v1.timeout");
        assert_eq!(first.line, Some(5), "{first}");
        assert!(
            first
                .message
                .contains("got `5` (a number needs its unit: `5s`)"),
            "{first}"
        );
        assert_eq!(r.problems.0[1].path, "limits.max_body", "{}", r.problems);
    }

    #[test]
    fn a_syntax_error_stops_the_reading_in_user_words() {
        let text = BASE.replace("  steps:", "\tsteps:");
        let r = refusal(&text);
        assert_eq!(r.reach, Reach::Stopped);
        assert_eq!(r.problems.0.len(), 1, "{}", r.problems);
        let p = &r.problems.0[0];
        assert_eq!((p.path.as_str(), p.line), ("", Some(10)), "{p}");
        assert!(p.message.contains("indent with spaces"), "{p}");

        // A problem of reading before the YAML breaks off is listed first.
        let text = BASE.replace("stable: blue", "stable: [blue]") + "shadow: {mirror: 5\n";
        let r = refusal(&text);
        let paths: Vec<_> = r.problems.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["rollout.stable", ""], "{}", r.problems);
        assert_eq!(r.reach, Reach::Stopped);
    }

    #[test]
    fn an_empty_document_says_what_a_config_needs() {
        let r = refusal("# nothing yet\n");
        assert_eq!(r.problems.0.len(), 1);
        assert!(r.problems.0[0]
            .message
            .contains("`backends:` and `rollout:`"));
    }

    #[test]
    fn the_reading_stops_after_the_most_problems_listed() {
        let backends: String = (0..200)
            .map(|i| format!("  b{i}: {{ url: 'http://127.0.0.1:1', timeout: {i} }}\n"))
            .collect();
        let text = format!("backends:\n{backends}rollout: {{ stable: b0 }}\n");
        let r = refusal(&text);
        assert_eq!(r.problems.0.len(), MAX_READING_PROBLEMS);
        assert_eq!(r.reach, Reach::Stopped);
    }

    #[test]
    fn lines_are_looked_up_within_a_bound_and_every_problem_is_still_listed() {
        // Each line is found by reading the document again: 600 problems in 30 KiB would
        // be 18 MiB of YAML read. Past the bound the problems come without their line.
        let backends: String = (0..600)
            .map(|i| format!("  b{i:03}: {{ url: 'ftp://127.0.0.1:1' }}\n"))
            .collect();
        let text = format!("backends:\n{backends}rollout: {{ stable: b000 }}\n");
        let r = refusal(&text);
        assert_eq!(r.problems.0.len(), 600);
        assert!(r.problems.0.iter().all(|p| p.message.contains("http://")));
        assert_eq!(r.problems.0[0].line, Some(2));
        assert_eq!(r.problems.0[599].line, None, "{}", r.problems.0[599]);
        let located = r.problems.0.iter().filter(|p| p.line.is_some()).count();
        assert!(
            located * text.len() <= MAX_REREAD_BYTES,
            "{located} located"
        );
    }

    #[test]
    fn semantic_problems_say_the_values_were_checked() {
        assert_eq!(refusal(BASE).reach, Reach::Checked);
    }

    // === limits ===

    /// The one problem a file over a limit gets (that it is refused by the limit, not after
    /// expanding, is what each message says: the count or depth at which it stopped).
    fn refused(text: &str) -> String {
        let err = parse(text).expect_err("over a limit");
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
