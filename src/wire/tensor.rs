//! Tensors as JSON nests them: flattened row-major, with the shape the nesting implies.

use super::json::num;
use serde_json::Value;
use std::borrow::Borrow;

/// The leaves of a tensor in row-major order, borrowed from the parsed body.
pub(crate) enum Leaves<'a> {
    /// Flat data: the array itself, no copy.
    Flat(&'a [Value]),
    /// Nested data (or a scalar), flattened into references.
    Nested(Vec<&'a Value>),
}

impl Leaves<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Leaves::Flat(s) => s.len(),
            Leaves::Nested(v) => v.len(),
        }
    }
}

/// A flattened tensor with the shape its nesting implies.
pub(crate) struct Tensor<'a> {
    pub(crate) leaves: Leaves<'a>,
    /// Shape implied by the nesting (`[]` for a scalar); meaningful only when `regular`.
    pub(crate) dims: Vec<usize>,
    /// Every sub-list at a given depth has the same length and leaves all sit at the same depth.
    pub(crate) regular: bool,
    /// Some leaf is an object (e.g. TF-Serving row format with named outputs).
    pub(crate) has_objects: bool,
}

/// Flattens nested lists row-major; a flat array is borrowed as is.
pub(crate) fn flatten(v: &Value) -> Tensor<'_> {
    if let Value::Array(items) = v {
        if items.first().is_none_or(|x| !x.is_array()) {
            let mut regular = true;
            let mut has_objects = false;
            for x in items {
                match x {
                    Value::Array(_) => regular = false,
                    Value::Object(_) => has_objects = true,
                    _ => {}
                }
            }
            if regular {
                return Tensor {
                    leaves: Leaves::Flat(items),
                    dims: vec![items.len()],
                    regular,
                    has_objects,
                };
            }
        }
    }
    let mut w = Walk {
        dims: Vec::new(),
        leaf_depth: None,
        out: Vec::new(),
        regular: true,
        has_objects: false,
    };
    w.walk(v, 0);
    if w.leaf_depth.is_some_and(|d| d != w.dims.len()) {
        w.regular = false;
    }
    Tensor {
        leaves: Leaves::Nested(w.out),
        dims: w.dims,
        regular: w.regular,
        has_objects: w.has_objects,
    }
}

struct Walk<'a> {
    dims: Vec<usize>,
    leaf_depth: Option<usize>,
    out: Vec<&'a Value>,
    regular: bool,
    has_objects: bool,
}

impl<'a> Walk<'a> {
    fn walk(&mut self, v: &'a Value, depth: usize) {
        match v {
            Value::Array(items) => {
                if depth == self.dims.len() {
                    if self.leaf_depth.is_some() {
                        self.regular = false;
                    }
                    self.dims.push(items.len());
                } else if self.dims[depth] != items.len() {
                    self.regular = false;
                }
                for x in items {
                    self.walk(x, depth + 1);
                }
            }
            _ => {
                if v.is_object() {
                    self.has_objects = true;
                }
                match self.leaf_depth {
                    None => self.leaf_depth = Some(depth),
                    Some(d) if d != depth => self.regular = false,
                    Some(_) => {}
                }
                self.out.push(v);
            }
        }
    }
}

/// Index of the largest number in a row (first one on ties, NaN and non-numbers skipped).
pub(crate) fn argmax<A: Borrow<Value>>(row: &[A]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in row.iter().enumerate() {
        let Some(f) = num(v.borrow()) else { continue };
        if f.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| f > b) {
            best = Some((i, f));
        }
    }
    best.map(|(i, _)| i)
}
