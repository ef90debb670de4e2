//! Tensor comparison shared by the V2 and V1 comparators: element-wise, top-1 and label agreement.

use super::report::{Ctx, Shown};
use super::tolerance::{close, exact_eq, numbers_close, numbers_exact, tolerant_eq};
use crate::wire::json::num;
use crate::wire::pointer::Seg;
use crate::wire::tensor::{argmax, Leaves};
use serde_json::Value;
use std::borrow::Borrow;

/// How elements are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Numbers within tolerance (FP tensors, V1, unknown datatypes).
    Tolerant,
    /// Numbers numerically equal, everything else structurally (INT/UINT/BOOL/BYTES).
    Exact,
}

/// What an element-wise comparison found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    /// The larger of the two element counts.
    pub(crate) elements: usize,
    /// Elements that differ, counting the surplus of the longer side.
    pub(crate) mismatched: usize,
    /// Largest finite |live - shadow| over numeric pairs; `None` if no pair was numeric.
    pub(crate) max_abs_diff: Option<f64>,
    /// Every compared pair was numeric on both sides.
    pub(crate) all_numeric: bool,
}

/// Compares two tensors element by element, recording differences at `<current path>/<index>`.
///
/// `dims` (the implied shape) turns flat indexes back into nested ones for
/// the reported paths; `located` says that path is where the element sits on both
/// sides (see [`Ctx::record_elem`]); `skip` marks elements left out by ignore rules.
pub(crate) fn compare_leaves(
    ctx: &mut Ctx<'_, '_>,
    a: &Leaves<'_>,
    b: &Leaves<'_>,
    mode: Mode,
    dims: &[usize],
    located: bool,
    skip: Option<&[bool]>,
) -> Stats {
    let at = (dims, located);
    match (a, b) {
        (Leaves::Flat(x), Leaves::Flat(y)) => run(ctx, x, y, mode, at, skip),
        (Leaves::Flat(x), Leaves::Nested(y)) => run(ctx, x, y, mode, at, skip),
        (Leaves::Nested(x), Leaves::Flat(y)) => run(ctx, x, y, mode, at, skip),
        (Leaves::Nested(x), Leaves::Nested(y)) => run(ctx, x, y, mode, at, skip),
    }
}

fn run<A: Borrow<Value>, B: Borrow<Value>>(
    ctx: &mut Ctx<'_, '_>,
    x: &[A],
    y: &[B],
    mode: Mode,
    (dims, located): (&[usize], bool),
    skip: Option<&[bool]>,
) -> Stats {
    let n = x.len().min(y.len());
    let (abs, rel) = (ctx.abs, ctx.rel);
    let mut mismatched = 0usize;
    let mut max_abs = 0.0f64;
    let mut any_numeric = false;
    let mut all_numeric = true;
    for i in 0..n {
        if skip.is_some_and(|s| s.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let (p, q) = (x[i].borrow(), y[i].borrow());
        let same = if let (Value::Number(u), Value::Number(v)) = (p, q) {
            any_numeric = true;
            match (u.as_f64(), v.as_f64()) {
                (Some(fu), Some(fv)) => {
                    let d = (fu - fv).abs();
                    if d.is_finite() && d > max_abs {
                        max_abs = d;
                    }
                    match mode {
                        Mode::Tolerant => close(fu, fv, abs, rel),
                        Mode::Exact => numbers_exact(u, v),
                    }
                }
                _ => match mode {
                    Mode::Tolerant => numbers_close(u, v, abs, rel),
                    Mode::Exact => numbers_exact(u, v),
                },
            }
        } else {
            if num(p).is_some() && num(q).is_some() {
                any_numeric = true;
            } else {
                all_numeric = false;
            }
            match mode {
                Mode::Tolerant => tolerant_eq(p, q, abs, rel),
                Mode::Exact => exact_eq(p, q),
            }
        };
        if !same {
            mismatched += 1;
            ctx.record_elem(i, dims, located, "value", Shown::Val(p), Shown::Val(q));
        }
    }
    let elements = x.len().max(y.len());
    Stats {
        elements,
        mismatched: mismatched + (elements - n),
        max_abs_diff: any_numeric.then_some(max_abs),
        all_numeric: all_numeric && any_numeric,
    }
}

/// Per-row argmax agreement of two `[rows, k]` tensors: `(rows that agree, rows)`.
pub(crate) fn top1(
    a: &Leaves<'_>,
    b: &Leaves<'_>,
    rows: usize,
    k: usize,
) -> Option<(usize, usize)> {
    if rows == 0 || k == 0 || a.len() != rows * k || b.len() != rows * k {
        return None;
    }
    let agree = match (a, b) {
        (Leaves::Flat(x), Leaves::Flat(y)) => top1_rows(x, y, k),
        (Leaves::Flat(x), Leaves::Nested(y)) => top1_rows(x, y, k),
        (Leaves::Nested(x), Leaves::Flat(y)) => top1_rows(x, y, k),
        (Leaves::Nested(x), Leaves::Nested(y)) => top1_rows(x, y, k),
    };
    Some((agree, rows))
}

fn top1_rows<A: Borrow<Value>, B: Borrow<Value>>(x: &[A], y: &[B], k: usize) -> usize {
    x.chunks_exact(k)
        .zip(y.chunks_exact(k))
        .filter(|(r, s)| argmax(r) == argmax(s))
        .count()
}

/// Tells whether every leaf looks like a class label: a string, a boolean or an integer.
pub(crate) fn labelish(l: &Leaves<'_>) -> bool {
    fn is_label(v: &Value) -> bool {
        match v {
            Value::String(_) | Value::Bool(_) => true,
            Value::Number(n) => n.is_i64() || n.is_u64(),
            _ => false,
        }
    }
    match l {
        Leaves::Flat(s) => !s.is_empty() && s.iter().all(is_label),
        Leaves::Nested(v) => !v.is_empty() && v.iter().all(|x| is_label(x)),
    }
}

/// Share of matching elements, for label agreement; `None` for an empty tensor.
pub(crate) fn share(stats: &Stats) -> Option<f64> {
    (stats.elements > 0).then(|| (stats.elements - stats.mismatched) as f64 / stats.elements as f64)
}

/// Marks the flat (row-major) positions of `data` that an ignore rule selects; the current path must be the tensor's.
pub(crate) fn ignore_mask<'a>(ctx: &mut Ctx<'_, 'a>, data: &'a Value, len: usize) -> Vec<bool> {
    let mut mask = vec![false; len];
    let mut next = 0usize;
    mark(ctx, data, &mut mask, &mut next);
    mask
}

fn mark<'a>(ctx: &mut Ctx<'_, 'a>, v: &'a Value, mask: &mut [bool], next: &mut usize) {
    let Value::Array(items) = v else {
        *next += 1;
        return;
    };
    for (i, x) in items.iter().enumerate() {
        match ctx.enter(Seg::Index(i), true) {
            None => {
                let n = count_leaves(x);
                let end = (*next + n).min(mask.len());
                let start = (*next).min(end);
                mask[start..end].iter_mut().for_each(|m| *m = true);
                *next += n;
            }
            Some(true) => {
                mark(ctx, x, mask, next);
                ctx.leave();
            }
            Some(false) => {
                *next += count_leaves(x);
                ctx.leave();
            }
        }
    }
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(count_leaves).sum(),
        _ => 1,
    }
}
