//! The comparison context: current path, ignore/redact rules and the capped list of differences.

use super::outcome::Difference;
use crate::wire::pointer::{self, IgnoreState, Pattern, Seg};
use serde_json::Value;
use std::cell::OnceCell;
use std::io;

/// How many differences are kept in a [`Comparison`](crate::compare::Comparison); the rest are only counted.
pub const MAX_DIFFERENCES: usize = 32;

/// How many bytes of a value are shown in a [`Difference`].
const MAX_SHOWN: usize = 256;

/// One side of a difference, rendered to text only if the difference is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shown<'v> {
    Val(&'v Value),
    Absent,
    Len(usize),
    Dims(&'v [usize]),
    /// A body, shown from `at` (the first differing byte).
    Bytes {
        body: &'v [u8],
        at: usize,
    },
    /// A value hidden by a redact rule.
    Redacted,
}

/// State shared by the comparators while they walk one live/shadow pair.
pub(crate) struct Ctx<'r, 'a> {
    pub(crate) abs: f64,
    pub(crate) rel: f64,
    ignore: &'r [Pattern],
    /// Redact pointers as configured, compiled on first use (only when something is reported).
    redact_src: &'r [String],
    redact: OnceCell<Vec<Pattern>>,
    pub(crate) path: Vec<Seg<'a>>,
    pub(crate) list: Vec<Difference>,
    pub(crate) total: usize,
}

impl<'r, 'a> Ctx<'r, 'a> {
    pub(crate) fn new(abs: f64, rel: f64, ignore: &'r [Pattern], redact_src: &'r [String]) -> Self {
        Ctx {
            abs,
            rel,
            ignore,
            redact_src,
            redact: OnceCell::new(),
            path: Vec::with_capacity(8),
            list: Vec::new(),
            total: 0,
        }
    }

    /// Tells whether any ignore rule is configured (the whole-document check is done by the caller).
    pub(crate) fn has_ignores(&self) -> bool {
        !self.ignore.is_empty()
    }

    /// Evaluates the ignore rules at the current path.
    pub(crate) fn ignore_state(&self) -> IgnoreState {
        if self.ignore.is_empty() {
            return IgnoreState::default();
        }
        pointer::ignore_state(self.ignore, &self.path)
    }

    /// Pushes `seg` and evaluates the ignore rules there when `check` is set.
    ///
    /// Returns `None` (and pops again) when the child is ignored, otherwise
    /// whether its own children still need checking.
    pub(crate) fn enter(&mut self, seg: Seg<'a>, check: bool) -> Option<bool> {
        self.path.push(seg);
        if !check {
            return Some(false);
        }
        let st = self.ignore_state();
        if st.exact {
            self.path.pop();
            None
        } else {
            Some(st.deeper)
        }
    }

    /// Pops the segment pushed by [`Ctx::enter`].
    #[inline]
    pub(crate) fn leave(&mut self) {
        self.path.pop();
    }

    /// Tells whether the kept list is full (further differences are only counted).
    #[inline]
    pub(crate) fn full(&self) -> bool {
        self.list.len() >= MAX_DIFFERENCES
    }

    /// Records a difference at the current path.
    pub(crate) fn record(&mut self, what: &str, live: Shown<'_>, shadow: Shown<'_>) {
        self.total += 1;
        if self.full() {
            return;
        }
        let d = Difference {
            path: pointer::render(&self.path),
            live: self.show(live),
            shadow: self.show(shadow),
            what: what.to_owned(),
        };
        self.list.push(d);
    }

    /// Records a difference at tensor element `flat` (row-major), rendered as nested indexes when `dims` has more than one dimension.
    ///
    /// Unless `located` (both tensors regular with the same shape), the rendered path
    /// need not be where either value sits, so a redact rule cannot be matched against
    /// it: then both values are hidden whenever a redact rule reaches inside the tensor.
    pub(crate) fn record_elem(
        &mut self,
        flat: usize,
        dims: &[usize],
        located: bool,
        what: &str,
        live: Shown<'_>,
        shadow: Shown<'_>,
    ) {
        if self.full() {
            self.total += 1;
            return;
        }
        let (live, shadow) = if !located && self.redacts_below() {
            (Shown::Redacted, Shown::Redacted)
        } else {
            (live, shadow)
        };
        let depth = self.path.len();
        if dims.len() > 1 && dims.iter().all(|&d| d > 0) {
            let at = self.path.len();
            let mut rest = flat;
            for &d in dims.iter().rev() {
                self.path.push(Seg::Index(rest % d));
                rest /= d;
            }
            self.path[at..].reverse();
        } else {
            self.path.push(Seg::Index(flat));
        }
        self.record(what, live, shadow);
        self.path.truncate(depth);
    }

    fn show(&self, s: Shown<'_>) -> String {
        match s {
            Shown::Absent => "(absent)".to_owned(),
            Shown::Len(n) => n.to_string(),
            Shown::Dims(d) => {
                let mut out = String::from("[");
                for (i, n) in d.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&n.to_string());
                }
                out.push(']');
                out
            }
            Shown::Bytes { body, at } => show_bytes(body, at),
            Shown::Redacted => pointer::REDACTED.to_owned(),
            Shown::Val(v) => self.show_value(v),
        }
    }

    /// Tells whether a redact rule selects something strictly below the current path.
    fn redacts_below(&self) -> bool {
        let d = self.path.len();
        let redact = self
            .redact
            .get_or_init(|| pointer::compile(self.redact_src));
        redact
            .iter()
            .any(|p| p.segs.len() > d && pointer::prefix_match(&p.segs[..d], &self.path))
    }

    /// Renders a value at the current path, honouring the redact rules.
    fn show_value(&self, v: &Value) -> String {
        let d = self.path.len();
        let mut deeper = Vec::new();
        let redact = self
            .redact
            .get_or_init(|| pointer::compile(self.redact_src));
        for p in redact {
            let n = p.segs.len();
            if n <= d {
                if pointer::prefix_match(&p.segs, &self.path) {
                    return pointer::REDACTED.to_owned();
                }
            } else if pointer::prefix_match(&p.segs[..d], &self.path) {
                deeper.push(&p.segs[d..]);
            }
        }
        if deeper.is_empty() {
            return to_string_capped(v, MAX_SHOWN);
        }
        let mut copy = v.clone();
        for segs in deeper {
            pointer::redact_in(&mut copy, segs);
        }
        to_string_capped(&copy, MAX_SHOWN)
    }
}

/// A writer that keeps at most `limit` bytes and then fails, to stop serialization early.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    hit: bool,
}

impl io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.buf.len();
        if b.len() > room {
            self.buf.extend_from_slice(&b[..room]);
            self.hit = true;
            return Err(io::Error::other("capped"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Serializes `v` as compact JSON, cut at `limit` bytes (on a char boundary, with `…` appended).
pub(crate) fn to_string_capped(v: &Value, limit: usize) -> String {
    let mut w = Capped {
        buf: Vec::new(),
        limit,
        hit: false,
    };
    let _ = serde_json::to_writer(&mut w, v);
    let mut s = utf8_prefix(w.buf);
    if w.hit {
        s.push('…');
    }
    s
}

/// Keeps the longest valid UTF-8 prefix of `buf`.
fn utf8_prefix(mut buf: Vec<u8>) -> String {
    match std::str::from_utf8(&buf) {
        Ok(_) => {}
        Err(e) => buf.truncate(e.valid_up_to()),
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Describes a body for a bytes difference: its length and a lossy excerpt from the first differing byte.
/// A body that is not JSON, as reported: its size and where it first differs, never its
/// bytes (redaction cannot reach inside it, so nothing of it is shown).
fn show_bytes(body: &[u8], at: usize) -> String {
    format!(
        "{} bytes, compared as bytes (not shown); first difference at byte {}",
        body.len(),
        at.min(body.len())
    )
}
