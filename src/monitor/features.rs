//! The input features of a request: which values an exchange carries, under stable names.
//!
//! A [`Schema`] names features and hands out their indexes; [`Schema::extract`]
//! reads one parsed request into a [`Sample`] of `(feature, cell)` pairs.
//!
//! - With `features` configured, exactly those are read: `{ name, input,
//!   column }` is a V2 input tensor's column, `{ name, pointer }` a JSON
//!   pointer into the request in which `*` matches every element or member
//!   (`/instances/*/country`: one value per instance).
//! - Without, every V2 input tensor's columns (`input-0[2]`), every V1
//!   instance's keys (`country`) or columns (`instances[2]`), and V1
//!   columnar `inputs` members are features, named as they are first seen.
//! - OpenAI requests always give `prompt_chars` (the prompt's length in
//!   characters, chat messages' contents added up) and, for chat,
//!   `messages` (how many).
//!
//! At most `max_features` are named; values of any further feature are not
//! kept, only counted ([`Schema::untracked`]). Under `protocol: auto`, V1 and
//! V2 discovered features each take at most [`Schema::share`] of them, so one
//! protocol's wide request cannot take every slot from the other; a new
//! rollout forgets the discovered features ([`Schema::forget_discovered`]).
//!
//! # Limits
//!
//! A request gives at most [`MAX_CELLS`] values; further ones are counted as
//! untracked, not kept. Rows a feature lacks are counted, never materialized,
//! so a request's declared or actual row count sizes no allocation.
//!
//! # Redaction
//!
//! A feature whose values lie under a `redact` pointer (the capture's or the
//! comparison's) is marked [`Feature::redacted`] the first time one of its
//! values is read there: its values are counted (count, missing, invalid) but
//! neither its top values nor its quantiles are kept. A pointer that reaches
//! into a tensor's `data` (`/inputs/0/data/3`) hides the whole tensor.
//! Derived numbers (OpenAI `prompt_chars`, `messages`) are lengths and counts,
//! not the values, and stay shown.

use crate::config::{FeatureKind as Kind, FeatureSpec};
use crate::wire::pointer::{prefix_match, PSeg, Pattern, Seg};
use crate::wire::{Protocol, Rows};
use serde_json::Value;
use std::collections::HashMap;

/// Values one request gives the monitor at most (24 bytes each while the request is
/// read: 6 MiB); further values are counted in [`Schema::untracked`], not kept.
pub const MAX_CELLS: usize = 1 << 18;

/// Feature slots kept for the OpenAI built-ins (`prompt_chars`, `messages`) when the
/// discovered features of V1 and V2 share `max_features`.
const BUILTINS: usize = 2;

/// The discovered features one protocol (V1 or V2) may name under `protocol: auto`, of
/// `max_features`: half of what is left beside the OpenAI built-ins (127 of the default
/// 256), at least 1.
pub fn share(max_features: usize) -> usize {
    (max_features.saturating_sub(BUILTINS) / 2).max(1)
}

/// One value of one feature in one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    /// A value as the request holds it.
    Value(&'a Value),
    /// A value derived from the request (a length, a count).
    Number(f64),
    /// The row has no value for the feature.
    Absent,
}

/// What one request carries: its rows, and the value of each feature in each row.
#[derive(Debug, Default)]
pub(crate) struct Sample<'a> {
    /// The protocol the request was read under.
    pub(crate) protocol: Protocol,
    /// Rows (instances, batch size) in the request.
    pub(crate) rows: usize,
    /// `(feature index, value)`, in no particular order; at most [`MAX_CELLS`].
    pub(crate) cells: Vec<(u32, Cell<'a>)>,
    /// `(feature index, rows)`: a feature absent from that many rows (a configured
    /// tensor the request lacks), counted without a cell each.
    pub(crate) absent: Vec<(u32, usize)>,
    /// Values not kept: beyond [`MAX_CELLS`].
    pub(crate) over: u64,
}

impl<'a> Sample<'a> {
    /// Keeps one value while there is room ([`MAX_CELLS`]); counts it otherwise.
    fn push(&mut self, ix: u32, cell: Cell<'a>) {
        if self.cells.len() < MAX_CELLS {
            self.cells.push((ix, cell));
        } else {
            self.over += 1;
        }
    }

    /// Keeps values of feature `ix` while there is room; counts the rest.
    fn extend(&mut self, ix: u32, cells: impl Iterator<Item = Cell<'a>>) {
        for cell in cells {
            if self.cells.len() >= MAX_CELLS {
                self.over += 1;
                continue;
            }
            self.cells.push((ix, cell));
        }
    }
}

/// A named feature.
#[derive(Debug, Clone)]
pub(crate) struct Feature {
    pub(crate) name: Box<str>,
    /// Fixed by configuration or by the first value.
    pub(crate) kind: Option<Kind>,
    /// Found in the requests (a V2 column, a V1 key or column), and under which protocol:
    /// a row of a request of that protocol without it counts as absent (a V2 request
    /// lacks no V1 key).
    pub(crate) discovered: Option<Protocol>,
    /// Some value of it was under a `redact` pointer: its values are counted, not shown.
    pub(crate) redacted: bool,
}

/// Feature names and indexes for one route, and how to read them from a request.
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) features: Vec<Feature>,
    max: usize,
    /// Configured tensor columns: tensor name → (column, feature).
    tensors: HashMap<String, Vec<(usize, u32)>>,
    /// Configured pointers, with their feature.
    pointers: Vec<(Pattern, u32)>,
    /// No feature configured: name them as they come.
    discover: bool,
    /// Discovered columns: tensor (or V1 member) name → the features of columns 0, 1, ...
    columns: HashMap<Box<str>, Vec<u32>>,
    /// Discovered V1 instance keys.
    keys: HashMap<Box<str>, u32>,
    /// Values of features beyond `max`, not kept.
    pub(crate) untracked: u64,
    /// The protocol of the request being read: what a feature found in it is found under.
    reading: Protocol,
    /// Features named by configuration (the first ones); the others are found in requests.
    configured: usize,
    /// The most discovered features one protocol (V1 or V2) may name; `None`: no share,
    /// `max` is all there is (a route of one declared protocol).
    share: Option<usize>,
    /// Discovered features named so far, by protocol: V1, V2.
    by_protocol: [usize; 2],
    /// The `redact` pointers: values under them are counted, not shown.
    redact: Vec<Pattern>,
}

impl Schema {
    /// Builds a schema from the configured features, checking names and pointers.
    pub(crate) fn new(specs: &[FeatureSpec], max: usize) -> Result<Schema, String> {
        let mut schema = Schema {
            features: Vec::new(),
            max,
            tensors: HashMap::new(),
            pointers: Vec::new(),
            discover: specs.is_empty(),
            columns: HashMap::new(),
            keys: HashMap::new(),
            untracked: 0,
            reading: Protocol::Auto,
            configured: 0,
            share: None,
            by_protocol: [0; 2],
            redact: Vec::new(),
        };
        let errors = crate::config::check_features(specs, max);
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        for spec in specs {
            schema.configure(spec);
        }
        schema.configured = schema.features.len();
        Ok(schema)
    }

    /// Shares the slots between protocols when the route reads `protocol: auto`: V1 and
    /// V2 discovered features each name at most [`Schema::share`] of `max_features`.
    pub(crate) fn shared(mut self, protocol: Protocol) -> Schema {
        if protocol == Protocol::Auto {
            self.share = Some(Schema::share(self.max));
        }
        self
    }

    /// The discovered features one protocol may name under `protocol: auto` ([`share`]).
    pub(crate) fn share(max: usize) -> usize {
        share(max)
    }

    /// Hides the values under these `redact` pointers (see the module docs); pointers
    /// that do not parse are left out (the config check refuses them).
    pub(crate) fn redacting(mut self, pointers: &[String]) -> Schema {
        self.redact = crate::wire::pointer::compile(pointers);
        self
    }

    /// Forgets the features found in requests (configured ones stay), so that a new
    /// rollout's requests name their own: slots taken before it are free again.
    pub(crate) fn forget_discovered(&mut self) {
        self.features.truncate(self.configured);
        self.columns.clear();
        self.keys.clear();
        self.by_protocol = [0; 2];
    }

    /// How many features configuration names (they keep their index across
    /// [`Schema::forget_discovered`]).
    pub(crate) fn configured(&self) -> usize {
        self.configured
    }

    /// Tells whether a value at `path` (or inside it) is under a `redact` pointer; a
    /// pointer that goes deeper than `path` hides it too (the value holds what it hides).
    fn hidden(&self, path: &[Seg<'_>]) -> bool {
        self.redact.iter().any(|p| prefix_match(&p.segs, path))
    }

    /// Marks feature `ix` redacted when a value at `path` is hidden.
    fn check_hidden(&mut self, ix: u32, path: &[Seg<'_>]) {
        if self.redact.is_empty() {
            return;
        }
        let hidden = self.hidden(path);
        if let Some(f) = self.features.get_mut(ix as usize) {
            f.redacted |= hidden;
        }
    }

    /// Adds a configured feature (checked by [`crate::config::check_features`]).
    fn configure(&mut self, spec: &FeatureSpec) {
        let ix = self.features.len() as u32;
        if let Some(input) = &spec.input {
            let column = spec.column.unwrap_or(0);
            self.tensors
                .entry(input.clone())
                .or_default()
                .push((column, ix));
        } else if let Some(p) = spec.pointer.as_deref().and_then(|p| Pattern::parse(p).ok()) {
            self.pointers.push((p, ix));
        }
        self.features.push(Feature {
            name: spec.name.as_str().into(),
            kind: spec.kind,
            discovered: None,
            redacted: false,
        });
    }

    /// Reads a parsed request under `protocol` (already resolved).
    pub(crate) fn extract<'a>(&mut self, protocol: Protocol, request: &'a Value) -> Sample<'a> {
        let mut s = Sample {
            protocol,
            ..Sample::default()
        };
        self.reading = protocol;
        match protocol {
            Protocol::V2 => self.v2(request, &mut s),
            Protocol::V1 if self.discover => self.v1(request, &mut s),
            Protocol::OpenAi => self.openai(request, &mut s),
            _ => {}
        }
        self.read_pointers(request, &mut s);
        self.untracked = self.untracked.saturating_add(s.over);
        s
    }

    /// Names a feature (when there is room, and within its protocol's share when it was
    /// discovered) and returns its index.
    fn register(&mut self, name: Box<str>, discovered: bool) -> Option<u32> {
        if self.features.len() >= self.max {
            return None;
        }
        let slot = match self.reading {
            Protocol::V1 => Some(0),
            Protocol::V2 => Some(1),
            _ => None,
        };
        let counted = slot.filter(|_| discovered);
        if let (Some(i), Some(share)) = (counted, self.share) {
            if self.by_protocol[i] >= share {
                return None;
            }
        }
        if let Some(i) = counted {
            self.by_protocol[i] += 1;
        }
        self.features.push(Feature {
            name,
            kind: None,
            discovered: discovered.then_some(self.reading),
            redacted: false,
        });
        Some(self.features.len() as u32 - 1)
    }

    /// The feature of a built-in name (`prompt_chars`, `messages`), named on first use.
    fn builtin(&mut self, name: &str) -> Option<u32> {
        match self.features.iter().position(|f| *f.name == *name) {
            Some(i) => Some(i as u32),
            None => self.register(name.into(), false),
        }
    }

    /// The feature of column `col` of a discovered tensor or member, named on first sight.
    fn column(&mut self, tensor: &str, col: usize) -> Option<u32> {
        if let Some(&ix) = self.columns.get(tensor).and_then(|c| c.get(col)) {
            return Some(ix);
        }
        let known = self.columns.get(tensor).map_or(0, Vec::len);
        if col != known {
            return None; // columns are named in order; an earlier one found no room
        }
        let ix = self.register(format!("{tensor}[{col}]").into(), true)?;
        self.columns.entry(tensor.into()).or_default().push(ix);
        Some(ix)
    }

    /// The feature of a discovered V1 instance key, named on first sight.
    fn key(&mut self, key: &str) -> Option<u32> {
        if let Some(&ix) = self.keys.get(key) {
            return Some(ix);
        }
        let ix = self.register(key.into(), true)?;
        self.keys.insert(key.into(), ix);
        Some(ix)
    }

    fn v2<'a>(&mut self, request: &'a Value, s: &mut Sample<'a>) {
        let Some(Value::Array(inputs)) = request.get("inputs") else {
            return;
        };
        let mut seen: Vec<&str> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let Some(name) = input.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(rows) = Rows::of(input) else {
                continue;
            };
            s.rows = s.rows.max(rows.count());
            seen.push(name);
            let path = [
                Seg::Key("inputs"),
                Seg::Elem {
                    index: i,
                    live: Some(name),
                    shadow: None,
                },
                Seg::Key("data"),
            ];
            if let Some(specs) = self.tensors.get(name).cloned() {
                for &(_, ix) in &specs {
                    self.check_hidden(ix, &path);
                }
                for row in rows.iter() {
                    for &(col, ix) in &specs {
                        s.push(ix, row.get(col).map_or(Cell::Absent, |v| Cell::Value(v)));
                    }
                }
            }
            if self.discover {
                self.discovered_columns(name, &rows, &path, s);
            }
        }
        for (tensor, specs) in &self.tensors {
            if !seen.contains(&tensor.as_str()) {
                for &(_, ix) in specs {
                    s.absent.push((ix, s.rows));
                }
            }
        }
    }

    /// Reads every column of a tensor as a discovered feature (those beyond the cap counted).
    fn discovered_columns<'a>(
        &mut self,
        tensor: &str,
        rows: &Rows<'a>,
        path: &[Seg<'_>],
        s: &mut Sample<'a>,
    ) {
        let count = rows.count();
        if count == 0 {
            return; // no values: nothing to name
        }
        let hidden = !self.redact.is_empty() && self.hidden(path);
        for col in 0..rows.cols {
            let Some(ix) = self.column(tensor, col) else {
                let left = (rows.cols - col).saturating_mul(count);
                self.untracked = self.untracked.saturating_add(left as u64);
                return;
            };
            if hidden {
                self.features[ix as usize].redacted = true;
            }
            s.extend(
                ix,
                rows.iter()
                    .map(|row| row.get(col).map_or(Cell::Absent, |v| Cell::Value(v))),
            );
        }
    }

    fn v1<'a>(&mut self, request: &'a Value, s: &mut Sample<'a>) {
        let (member, rows) = match (request.get("instances"), request.get("inputs")) {
            (Some(r), _) => ("instances", r),
            (None, Some(r)) => ("inputs", r),
            (None, None) => return,
        };
        match rows {
            Value::Array(rows) => {
                s.rows = rows.len();
                for (r, row) in rows.iter().enumerate() {
                    let at = [
                        Seg::Key(member),
                        Seg::Elem {
                            index: r,
                            live: row.get("name").and_then(Value::as_str),
                            shadow: None,
                        },
                    ];
                    self.v1_row(member, &at, row, s);
                }
            }
            Value::Object(columns) => {
                for (k, col) in columns {
                    let values = col
                        .as_array()
                        .map_or(std::slice::from_ref(col), Vec::as_slice);
                    s.rows = s.rows.max(values.len());
                    match self.key(k) {
                        Some(ix) => {
                            self.check_hidden(ix, &[Seg::Key(member), Seg::Key(k)]);
                            s.extend(ix, values.iter().map(Cell::Value));
                        }
                        None => self.untracked = self.untracked.saturating_add(values.len() as u64),
                    }
                }
            }
            other => {
                s.rows = 1;
                self.v1_row(member, &[Seg::Key(member)], other, s);
            }
        }
    }

    /// One V1 instance at `at`: an array (a feature per column), an object (per key) or a
    /// scalar (column 0).
    fn v1_row<'a>(&mut self, member: &str, at: &[Seg<'_>], row: &'a Value, s: &mut Sample<'a>) {
        let mut path = at.to_vec();
        match row {
            Value::Array(cols) => {
                for (c, v) in cols.iter().enumerate() {
                    match self.column(member, c) {
                        Some(ix) => {
                            path.truncate(at.len());
                            path.push(Seg::Index(c));
                            self.check_hidden(ix, &path);
                            s.push(ix, Cell::Value(v));
                        }
                        None => {
                            self.untracked = self.untracked.saturating_add((cols.len() - c) as u64);
                            break;
                        }
                    }
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    match self.key(k) {
                        Some(ix) => {
                            path.truncate(at.len());
                            path.push(Seg::Key(k));
                            self.check_hidden(ix, &path);
                            s.push(ix, Cell::Value(v));
                        }
                        None => self.untracked = self.untracked.saturating_add(1),
                    }
                }
            }
            v => match self.column(member, 0) {
                Some(ix) => {
                    self.check_hidden(ix, at);
                    s.push(ix, Cell::Value(v));
                }
                None => self.untracked = self.untracked.saturating_add(1),
            },
        }
    }

    fn openai(&mut self, request: &Value, s: &mut Sample<'_>) {
        let mut lengths = Vec::new();
        if let Some(Value::Array(messages)) = request.get("messages") {
            let chars = messages
                .iter()
                .map(|m| content_chars(m.get("content")))
                .sum();
            lengths.push(chars);
            if let Some(ix) = self.builtin("messages") {
                s.push(ix, Cell::Number(messages.len() as f64));
            }
        } else {
            match request.get("prompt") {
                Some(Value::Array(prompts)) => {
                    lengths.extend(prompts.iter().map(|p| content_chars(Some(p))));
                }
                Some(p) => lengths.push(content_chars(Some(p))),
                None => {}
            }
        }
        s.rows = lengths.len();
        if let Some(ix) = self.builtin("prompt_chars") {
            s.extend(ix, lengths.into_iter().map(|n| Cell::Number(n as f64)));
        }
    }

    fn read_pointers<'a>(&mut self, request: &'a Value, s: &mut Sample<'a>) {
        let mut found = Vec::new();
        let mut path = Vec::new();
        for (pattern, ix) in &self.pointers {
            found.clear();
            let mut hidden = false;
            let mut at = Select {
                out: &mut found,
                path: &mut path,
                redact: &self.redact,
                hidden: &mut hidden,
            };
            at.select(request, &pattern.segs);
            s.rows = s.rows.max(found.len());
            s.extend(
                *ix,
                found.iter().map(|v| v.map_or(Cell::Absent, Cell::Value)),
            );
            if hidden {
                if let Some(f) = self.features.get_mut(*ix as usize) {
                    f.redacted = true;
                }
            }
        }
    }
}

/// The length in characters of a prompt or a message's content: a string, or an array of
/// parts whose `text` members are added up.
fn content_chars(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.chars().count(),
                p => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, |t| t.chars().count()),
            })
            .sum(),
        _ => 0,
    }
}

/// A pointer's walk through a request: what it selects, and whether any of it is under a
/// `redact` pointer.
struct Select<'w, 'a> {
    /// One entry per match, `None` where the path stops short (an absent value).
    out: &'w mut Vec<Option<&'a Value>>,
    /// Where the walk is.
    path: &'w mut Vec<Seg<'a>>,
    redact: &'w [Pattern],
    /// Some selected value is under a `redact` pointer.
    hidden: &'w mut bool,
}

impl<'a> Select<'_, 'a> {
    /// Collects what `segs` selects below `v`: one entry per match, `None` where the path
    /// stops short (a missing member or index: an absent value). `*` over an empty array or
    /// object selects nothing. In arrays a literal segment selects the element at that index
    /// or any element whose `name` member equals it, as in the comparison's pointers.
    fn select(&mut self, v: &'a Value, segs: &[PSeg]) {
        let Some((first, rest)) = segs.split_first() else {
            self.found(Some(v));
            return;
        };
        match (v, first) {
            (Value::Object(m), PSeg::Any) => {
                for (k, x) in m {
                    self.below(Seg::Key(k), x, rest);
                }
            }
            (Value::Object(m), PSeg::Lit { key, .. }) => match m.get_key_value(key.as_str()) {
                Some((k, x)) => self.below(Seg::Key(k), x, rest),
                None => self.found(None),
            },
            (Value::Array(a), seg) => {
                let before = self.out.len();
                for (i, x) in a.iter().enumerate() {
                    if seg.matches_element(i, x) {
                        let at = Seg::Elem {
                            index: i,
                            live: x.get("name").and_then(Value::as_str),
                            shadow: None,
                        };
                        self.below(at, x, rest);
                    }
                }
                if self.out.len() == before && matches!(seg, PSeg::Lit { .. }) {
                    self.found(None);
                }
            }
            _ => self.found(None),
        }
    }

    /// Walks on below `v`, reached by `seg`.
    fn below(&mut self, seg: Seg<'a>, v: &'a Value, rest: &[PSeg]) {
        self.path.push(seg);
        self.select(v, rest);
        self.path.pop();
    }

    /// Keeps one match (or an absent one) at the current path.
    fn found(&mut self, v: Option<&'a Value>) {
        if !*self.hidden && self.redact.iter().any(|p| prefix_match(&p.segs, self.path)) {
            *self.hidden = true;
        }
        self.out.push(v);
    }
}
