//! The structural JSON diff: the `json` comparison, and what V1 and V2 fall back to.

use super::report::{Ctx, Shown};
use super::tolerance::{close, numbers_close};
use crate::wire::json::num;
use crate::wire::pointer::Seg;
use serde_json::Value;

/// Walks two JSON values and records every difference below the current path.
///
/// Objects are compared by key (missing / extra), arrays by index (a length
/// difference is one `length` difference; the common prefix is compared),
/// numbers with tolerance, strings, booleans and null exactly. `check` says
/// whether ignore rules can still match below the current path.
pub(crate) fn diff<'a>(ctx: &mut Ctx<'_, 'a>, a: &'a Value, b: &'a Value, check: bool) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let Some(sub) = ctx.enter(Seg::Key(k), check) else {
                    continue;
                };
                match y.get(k) {
                    Some(vb) => diff(ctx, va, vb, sub),
                    None => ctx.record("missing in shadow", Shown::Val(va), Shown::Absent),
                }
                ctx.leave();
            }
            for (k, vb) in y {
                if x.contains_key(k) {
                    continue;
                }
                if ctx.enter(Seg::Key(k), check).is_some() {
                    ctx.record("extra in shadow", Shown::Absent, Shown::Val(vb));
                    ctx.leave();
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if check {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    if let Some(sub) = ctx.enter(elem(i, va, vb), true) {
                        diff(ctx, va, vb, sub);
                        ctx.leave();
                    }
                }
            } else {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    // Scalars are the common case in big arrays: skip the path push for them.
                    if !scalar_differs(ctx, va, vb) {
                        continue;
                    }
                    ctx.path.push(elem(i, va, vb));
                    diff(ctx, va, vb, false);
                    ctx.leave();
                }
            }
            if x.len() != y.len() {
                ctx.record("length", Shown::Len(x.len()), Shown::Len(y.len()));
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            if !numbers_close(x, y, ctx.abs, ctx.rel) {
                ctx.record("value", Shown::Val(a), Shown::Val(b));
            }
        }
        (Value::String(x), Value::String(y)) => {
            if x != y && !specials_agree(ctx, a, b) {
                ctx.record("value", Shown::Val(a), Shown::Val(b));
            }
        }
        (Value::Bool(x), Value::Bool(y)) => {
            if x != y {
                ctx.record("value", Shown::Val(a), Shown::Val(b));
            }
        }
        (Value::Null, Value::Null) => {}
        _ => {
            if !specials_agree(ctx, a, b) {
                ctx.record("type", Shown::Val(a), Shown::Val(b));
            }
        }
    }
}

/// The path segment of array element `i`, known by index and by the elements' `name`.
fn elem<'a>(i: usize, a: &'a Value, b: &'a Value) -> Seg<'a> {
    let name = |v: &'a Value| v.get("name").and_then(Value::as_str);
    Seg::Elem {
        index: i,
        live: name(a),
        shadow: name(b),
    }
}

/// Tells whether a pair needs a full [`diff`] (containers, or scalars that differ).
#[inline]
fn scalar_differs(ctx: &Ctx<'_, '_>, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => !numbers_close(x, y, ctx.abs, ctx.rel),
        (Value::String(x), Value::String(y)) => x != y,
        (Value::Bool(x), Value::Bool(y)) => x != y,
        (Value::Null, Value::Null) => false,
        _ => true,
    }
}

/// Non-finite floats spelled as strings (`"NaN"`) agree with each other and with numbers by value.
fn specials_agree(ctx: &Ctx<'_, '_>, a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => close(x, y, ctx.abs, ctx.rel),
        _ => false,
    }
}
