//! TF-Serving / KServe V1 in JSON: `{"predictions": ...}`, or `{"outputs": ...}` as one
//! tensor or as named columns.

use serde_json::Value;

/// Tells whether `v` looks like a V1 response: an object with `predictions` or `outputs`.
pub(crate) fn looks_like(v: &Value) -> bool {
    v.get("predictions").is_some() || v.get("outputs").is_some()
}

/// One compared tensor: its report name, whether it sits under `/outputs/`, and its value.
pub(crate) struct Entry<'a> {
    pub(crate) name: &'a str,
    pub(crate) columnar: bool,
    pub(crate) value: &'a Value,
}

/// The tensors of a V1 answer: `predictions`, else `outputs` whole or column by column.
pub(crate) fn entries(v: &Value) -> Vec<Entry<'_>> {
    if let Some(p) = v.get("predictions") {
        return vec![Entry {
            name: "predictions",
            columnar: false,
            value: p,
        }];
    }
    match v.get("outputs") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, value)| Entry {
                name: k,
                columnar: true,
                value,
            })
            .collect(),
        Some(value) => vec![Entry {
            name: "outputs",
            columnar: false,
            value,
        }],
        None => Vec::new(),
    }
}
