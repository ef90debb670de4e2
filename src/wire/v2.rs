//! The Open Inference Protocol (KServe V2 / MLServer / Triton) in JSON: what an answer
//! looks like, its outputs as one view over either parsed form, and what a datatype holds.

use super::json::V2Output;
use serde_json::{Map, Value};
use std::borrow::Cow;

type Obj = Map<String, Value>;

/// Tells whether `v` looks like a V2 response: an object whose `outputs` is an array of objects with a string `name` (and `data`, when `need_data`).
pub(crate) fn looks_like(v: &Value, need_data: bool) -> bool {
    let Some(Value::Array(outs)) = v.get("outputs") else {
        return false;
    };
    outs.iter().all(|o| {
        o.get("name").is_some_and(Value::is_string) && (!need_data || o.get("data").is_some())
    })
}

/// One output as the comparison reads it, borrowed from either form of a parsed body.
pub(crate) struct Output<'a> {
    pub(crate) name: &'a str,
    pub(crate) datatype: Option<&'a Value>,
    pub(crate) shape: Option<&'a Value>,
    pub(crate) parameters: Option<&'a Value>,
    pub(crate) data: Option<&'a Value>,
    whole: Whole<'a>,
}

/// Where an [`Output`] came from, to show it whole.
enum Whole<'a> {
    Value(&'a Value),
    Typed(&'a V2Output),
}

impl<'a> Output<'a> {
    /// The named outputs of a whole document already checked by [`looks_like`].
    pub(crate) fn of_value(v: &'a Value) -> Vec<Output<'a>> {
        let Some(Value::Array(outs)) = v.get("outputs") else {
            return Vec::new();
        };
        outs.iter()
            .filter_map(|o| {
                let m: &Obj = o.as_object()?;
                Some(Output {
                    name: m.get("name")?.as_str()?,
                    datatype: m.get("datatype"),
                    shape: m.get("shape"),
                    parameters: m.get("parameters"),
                    data: m.get("data"),
                    whole: Whole::Value(o),
                })
            })
            .collect()
    }

    /// The outputs parsed on their own ([`json::parse_outputs`]).
    pub(crate) fn of_parsed(outs: &'a [V2Output]) -> Vec<Output<'a>> {
        outs.iter()
            .map(|o| Output {
                name: &o.name,
                datatype: o.datatype.as_ref(),
                shape: o.shape.as_ref(),
                parameters: o.parameters.as_ref(),
                data: o.data.as_ref(),
                whole: Whole::Typed(o),
            })
            .collect()
    }

    /// The output as its JSON object, to show it whole.
    pub(crate) fn whole(&self) -> Cow<'a, Value> {
        match self.whole {
            Whole::Value(v) => Cow::Borrowed(v),
            Whole::Typed(o) => Cow::Owned(o.to_value()),
        }
    }
}

/// What a V2 datatype implies for comparison and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Float,
    Int,
    Bool,
    Bytes,
    Unknown,
}

pub(crate) fn kind(dt: Option<&str>) -> Kind {
    match dt {
        Some(s) if s.starts_with("FP") || s == "BF16" => Kind::Float,
        Some(s) if s.starts_with("INT") || s.starts_with("UINT") => Kind::Int,
        Some("BOOL") => Kind::Bool,
        Some("BYTES") => Kind::Bytes,
        _ => Kind::Unknown,
    }
}
