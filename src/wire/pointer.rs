//! JSON pointer patterns (RFC 6901 plus a `*` wildcard segment) for the ignore and redact rules.
//!
//! Patterns are matched against a stack of [`Seg`]ments that the comparators
//! push while they walk the two documents, so no pointer string is built
//! unless a difference is actually reported.

use serde_json::Value;
use std::fmt::Write as _;

/// One segment of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PSeg {
    /// `*`: any object key or array index.
    Any,
    /// A literal key; `index` is set when the key is also a valid array index.
    Lit { key: String, index: Option<usize> },
}

/// A compiled JSON pointer pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) segs: Vec<PSeg>,
}

impl Pattern {
    /// Parses a pointer: empty (the whole document) or `/`-separated segments with `~0`/`~1` escapes.
    pub(crate) fn parse(src: &str) -> Result<Pattern, String> {
        if src.is_empty() {
            return Ok(Pattern { segs: Vec::new() });
        }
        let Some(rest) = src.strip_prefix('/') else {
            return Err(format!(
                "{src:?} is not a JSON pointer: it must start with '/' (or be empty for the whole document)"
            ));
        };
        let mut segs = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segs.push(PSeg::Any);
                continue;
            }
            let key = unescape(raw).ok_or_else(|| {
                format!("{src:?} is not a JSON pointer: '~' must be followed by '0' or '1'")
            })?;
            let index = parse_index(&key);
            segs.push(PSeg::Lit { key, index });
        }
        Ok(Pattern { segs })
    }
}

/// Checks a list of pointers, appending one message per bad entry (`what[i]: ...`) to `errors`.
pub(crate) fn check(what: &str, list: &[String], errors: &mut Vec<String>) {
    for (i, src) in list.iter().enumerate() {
        if let Err(e) = Pattern::parse(src) {
            errors.push(format!("{what}[{i}]: {e}"));
        }
    }
}

/// Compiles the pointers leniently: entries that do not parse (only possible when `compare::Rules::new` was bypassed) are dropped.
pub(crate) fn compile(list: &[String]) -> Vec<Pattern> {
    list.iter().filter_map(|s| Pattern::parse(s).ok()).collect()
}

fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// RFC 6901 array index: `0` or a decimal number without leading zeros.
fn parse_index(key: &str) -> Option<usize> {
    let b = key.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    key.parse().ok()
}

/// One step of the location the comparators are currently looking at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    /// An object member.
    Key(&'a str),
    /// An array element.
    Index(usize),
    /// An array element of a structural diff, with the `name` member of the live and the
    /// shadow element when they have one (a pointer segment may name it, as for V2 outputs).
    Elem {
        index: usize,
        live: Option<&'a str>,
        shadow: Option<&'a str>,
    },
    /// A V2 output, known by name and by its position in the live and/or shadow `outputs` array.
    Named {
        name: &'a str,
        live: Option<usize>,
        shadow: Option<usize>,
    },
}

impl PSeg {
    /// Tells whether this pattern segment selects the path segment `s`.
    pub(crate) fn matches(&self, s: &Seg<'_>) -> bool {
        match (self, s) {
            (PSeg::Any, _) => true,
            (PSeg::Lit { key, .. }, Seg::Key(k)) => key == k,
            (PSeg::Lit { index, .. }, Seg::Index(i)) => *index == Some(*i),
            (
                PSeg::Lit { key, index },
                Seg::Elem {
                    index: i,
                    live,
                    shadow,
                },
            ) => *index == Some(*i) || *live == Some(key.as_str()) || *shadow == Some(key.as_str()),
            (PSeg::Lit { key, index }, Seg::Named { name, live, shadow }) => {
                key == name || (index.is_some() && (*index == *live || *index == *shadow))
            }
        }
    }

    /// Tells whether this pattern segment selects array element `i` (by index, or by its `name` member).
    pub(crate) fn matches_element(&self, i: usize, v: &Value) -> bool {
        match self {
            PSeg::Any => true,
            PSeg::Lit { key, index } => {
                *index == Some(i) || v.get("name").and_then(Value::as_str) == Some(key.as_str())
            }
        }
    }
}

/// Tells whether every segment of `pat` selects the corresponding segment of `path` (zip, shortest wins).
pub(crate) fn prefix_match(pat: &[PSeg], path: &[Seg<'_>]) -> bool {
    pat.iter().zip(path).all(|(p, s)| p.matches(s))
}

/// What the ignore rules say about the current path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IgnoreState {
    /// A pattern selects exactly this path (or an ancestor): leave it out.
    pub(crate) exact: bool,
    /// Some pattern goes deeper below this path: keep checking children.
    pub(crate) deeper: bool,
}

/// Evaluates the ignore patterns against `path`.
pub(crate) fn ignore_state(pats: &[Pattern], path: &[Seg<'_>]) -> IgnoreState {
    let d = path.len();
    let mut st = IgnoreState::default();
    for p in pats {
        let n = p.segs.len();
        if n < d {
            // Ancestors were checked on the way down; a shorter pattern cannot match here.
            continue;
        }
        if prefix_match(&p.segs[..d], path) {
            if n == d {
                st.exact = true;
                return st;
            }
            st.deeper = true;
        }
    }
    st
}

/// Renders `path` as an RFC 6901 pointer (V2 outputs by name).
pub(crate) fn render(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        match seg {
            Seg::Key(k) | Seg::Named { name: k, .. } => escape_into(&mut out, k),
            Seg::Index(i) | Seg::Elem { index: i, .. } => {
                let _ = write!(out, "{i}");
            }
        }
    }
    out
}

fn escape_into(out: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// The marker that replaces redacted values.
pub(crate) const REDACTED: &str = "[redacted]";

/// Replaces every value selected by `segs` below `v` with [`REDACTED`].
///
/// In arrays a literal segment selects the element at that index and also
/// any element whose `name` member equals it, so `/outputs/predict/data`
/// reaches a V2 output by name.
pub(crate) fn redact_in(v: &mut Value, segs: &[PSeg]) {
    let Some((first, rest)) = segs.split_first() else {
        *v = Value::String(REDACTED.to_owned());
        return;
    };
    match v {
        Value::Object(m) => match first {
            PSeg::Any => m.values_mut().for_each(|x| redact_in(x, rest)),
            PSeg::Lit { key, .. } => {
                if let Some(x) = m.get_mut(key.as_str()) {
                    redact_in(x, rest);
                }
            }
        },
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                if first.matches_element(i, x) {
                    redact_in(x, rest);
                }
            }
        }
        _ => {}
    }
}
