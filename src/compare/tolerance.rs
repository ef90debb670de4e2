//! Numeric equality with absolute/relative tolerance, and the value-level equality rules built on it.

use crate::wire::json::num;
use serde_json::{Number, Value};

/// Tells whether two floats agree: `|a-b| <= abs` or `|a-b| <= rel * max(|a|,|b|)`.
///
/// NaN agrees only with NaN; infinities agree only with the same infinity.
#[inline]
pub(crate) fn close(a: f64, b: f64, abs: f64, rel: f64) -> bool {
    if a == b {
        return true; // also +inf == +inf, 0.0 == -0.0
    }
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    let d = (a - b).abs();
    if !d.is_finite() {
        return false; // an infinity against anything else
    }
    d <= abs || d <= rel * a.abs().max(b.abs())
}

/// Tells whether two JSON numbers are equal within tolerance (integers of the same value are equal without float conversion).
#[inline]
pub(crate) fn numbers_close(a: &Number, b: &Number, abs: f64, rel: f64) -> bool {
    if a == b {
        return true;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => close(x, y, abs, rel),
        _ => false,
    }
}

/// Tells whether two JSON numbers are numerically identical (`1` equals `1.0`).
#[inline]
pub(crate) fn numbers_exact(a: &Number, b: &Number) -> bool {
    a == b || ((a.is_f64() || b.is_f64()) && a.as_f64() == b.as_f64())
}

/// Exact equality for labels, integers and booleans: numbers compare numerically, everything else structurally.
#[inline]
pub(crate) fn exact_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_exact(x, y),
        _ => a == b,
    }
}

/// Equality with tolerance for scalars: numbers (and spelled-out non-finites) within tolerance, anything else exactly.
#[inline]
pub(crate) fn tolerant_eq(a: &Value, b: &Value, abs: f64, rel: f64) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_close(x, y, abs, rel),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => close(x, y, abs, rel),
            _ => a == b,
        },
    }
}
