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
//! kept, only counted ([`Schema::untracked`]).

use super::payload::{Protocol, Rows};
use crate::compare::pointer::{PSeg, Pattern};
use serde_json::Value;
use std::collections::HashMap;

/// Whether a feature's values are numbers (quantiles, PSI) or categories (top values, JS distance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Numbers: a quantile sketch, PSI on the reference's quantile bins.
    Numeric,
    /// Categories: the most frequent values, Jensen-Shannon distance on the reference's shares.
    Categorical,
}

impl Kind {
    /// Returns the lowercase name used in configuration and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Numeric => "numeric",
            Kind::Categorical => "categorical",
        }
    }
}

/// One configured feature: a V2 input tensor's column, or a pointer into the request.
///
/// Without `kind`, a feature is numeric when its first value is a number and
/// categorical otherwise.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// The name reports and the reference use.
    pub name: String,
    /// A V2 input tensor, by name (with `column`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The tensor's column (0 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// A JSON pointer into the request (`*` matches every element or member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Numeric or categorical; inferred from the first value when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
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
    /// `(feature index, value)`, in no particular order.
    pub(crate) cells: Vec<(u32, Cell<'a>)>,
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
        };
        let mut errors = Vec::new();
        if specs.len() > max {
            errors.push(format!(
                "features: {} configured, more than max_features ({max})",
                specs.len()
            ));
        }
        for (i, spec) in specs.iter().enumerate() {
            if let Err(e) = schema.configure(spec) {
                errors.push(format!("features[{i}] ({}): {e}", spec.name));
            }
        }
        if errors.is_empty() {
            Ok(schema)
        } else {
            Err(errors.join("; "))
        }
    }

    fn configure(&mut self, spec: &FeatureSpec) -> Result<(), String> {
        if spec.name.is_empty() {
            return Err("name must not be empty".into());
        }
        if self.features.iter().any(|f| *f.name == *spec.name) {
            return Err("name given twice".into());
        }
        let ix = self.features.len() as u32;
        match (&spec.input, &spec.pointer) {
            (Some(input), None) => self
                .tensors
                .entry(input.clone())
                .or_default()
                .push((spec.column.unwrap_or(0), ix)),
            (None, Some(p)) => {
                if spec.column.is_some() {
                    return Err("column goes with input, not pointer".into());
                }
                self.pointers.push((Pattern::parse(p)?, ix));
            }
            _ => return Err("give either input (and column) or pointer".into()),
        }
        self.features.push(Feature {
            name: spec.name.as_str().into(),
            kind: spec.kind,
            discovered: None,
        });
        Ok(())
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
        s
    }

    /// Names a feature (when there is room) and returns its index.
    fn register(&mut self, name: Box<str>, discovered: bool) -> Option<u32> {
        if self.features.len() >= self.max {
            return None;
        }
        self.features.push(Feature {
            name,
            kind: None,
            discovered: discovered.then_some(self.reading),
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
        for input in inputs {
            let Some(name) = input.get("name").and_then(Value::as_str) else {
                continue;
            };
            let Some(rows) = Rows::of(input) else {
                continue;
            };
            s.rows = s.rows.max(rows.count());
            seen.push(name);
            if let Some(specs) = self.tensors.get(name) {
                for row in rows.iter() {
                    for &(col, ix) in specs {
                        s.cells
                            .push((ix, row.get(col).map_or(Cell::Absent, |v| Cell::Value(v))));
                    }
                }
            }
            if self.discover {
                self.discovered_columns(name, &rows, s);
            }
        }
        for (tensor, specs) in &self.tensors {
            if !seen.contains(&tensor.as_str()) {
                for &(_, ix) in specs {
                    s.cells
                        .extend(std::iter::repeat_n((ix, Cell::Absent), s.rows));
                }
            }
        }
    }

    /// Reads every column of a tensor as a discovered feature (those beyond the cap counted).
    fn discovered_columns<'a>(&mut self, tensor: &str, rows: &Rows<'a>, s: &mut Sample<'a>) {
        s.cells.reserve(rows.cols * rows.count());
        let known = self.columns.get(tensor).map_or(&[][..], Vec::as_slice);
        let named = known.len().min(rows.cols);
        for (col, &ix) in known[..named].iter().enumerate() {
            s.cells
                .extend(rows.iter().map(|row| (ix, Cell::Value(row[col]))));
        }
        for col in named..rows.cols {
            let Some(ix) = self.column(tensor, col) else {
                self.untracked += ((rows.cols - col) * rows.count()) as u64;
                return;
            };
            s.cells
                .extend(rows.iter().map(|row| (ix, Cell::Value(row[col]))));
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
                for row in rows {
                    self.v1_row(member, row, s);
                }
            }
            Value::Object(columns) => {
                for (k, col) in columns {
                    let values = col
                        .as_array()
                        .map_or(std::slice::from_ref(col), Vec::as_slice);
                    s.rows = s.rows.max(values.len());
                    match self.key(k) {
                        Some(ix) => s.cells.extend(values.iter().map(|v| (ix, Cell::Value(v)))),
                        None => self.untracked += values.len() as u64,
                    }
                }
            }
            other => {
                s.rows = 1;
                self.v1_row(member, other, s);
            }
        }
    }

    /// One V1 instance: an array (a feature per column), an object (per key) or a scalar (column 0).
    fn v1_row<'a>(&mut self, member: &str, row: &'a Value, s: &mut Sample<'a>) {
        match row {
            Value::Array(cols) => {
                for (c, v) in cols.iter().enumerate() {
                    match self.column(member, c) {
                        Some(ix) => s.cells.push((ix, Cell::Value(v))),
                        None => {
                            self.untracked += (cols.len() - c) as u64;
                            break;
                        }
                    }
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    match self.key(k) {
                        Some(ix) => s.cells.push((ix, Cell::Value(v))),
                        None => self.untracked += 1,
                    }
                }
            }
            v => match self.column(member, 0) {
                Some(ix) => s.cells.push((ix, Cell::Value(v))),
                None => self.untracked += 1,
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
                s.cells.push((ix, Cell::Number(messages.len() as f64)));
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
            s.cells
                .extend(lengths.into_iter().map(|n| (ix, Cell::Number(n as f64))));
        }
    }

    fn read_pointers<'a>(&self, request: &'a Value, s: &mut Sample<'a>) {
        let mut found = Vec::new();
        for (pattern, ix) in &self.pointers {
            found.clear();
            select(request, &pattern.segs, &mut found);
            s.rows = s.rows.max(found.len());
            s.cells.extend(
                found
                    .iter()
                    .map(|v| (*ix, v.map_or(Cell::Absent, Cell::Value))),
            );
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

/// Collects what `segs` selects below `v`: one entry per match, `None` where the path
/// stops short (a missing member or index: an absent value). `*` over an empty array or
/// object selects nothing. In arrays a literal segment selects the element at that index
/// or any element whose `name` member equals it, as in the comparison's pointers.
fn select<'a>(v: &'a Value, segs: &[PSeg], out: &mut Vec<Option<&'a Value>>) {
    let Some((first, rest)) = segs.split_first() else {
        out.push(Some(v));
        return;
    };
    match (v, first) {
        (Value::Object(m), PSeg::Any) => m.values().for_each(|x| select(x, rest, out)),
        (Value::Object(m), PSeg::Lit { key, .. }) => match m.get(key.as_str()) {
            Some(x) => select(x, rest, out),
            None => out.push(None),
        },
        (Value::Array(a), seg) => {
            let before = out.len();
            for (i, x) in a.iter().enumerate() {
                if seg.matches_element(i, x) {
                    select(x, rest, out);
                }
            }
            if out.len() == before && matches!(seg, PSeg::Lit { .. }) {
                out.push(None);
            }
        }
        _ => out.push(None),
    }
}
