//! Labels as they arrive (`POST /api/v1/feedback` bodies), and how one is judged
//! against its prediction.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::pending::Guess;
use super::score::Verdict;
use super::Predicted;

/// One label: the ground truth for the request with this id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The `x-request-id` of the request it labels.
    pub request_id: String,
    /// The true class (a string, an integer or a boolean) or the true value (a number).
    pub label: Value,
}

/// A batch: `{"feedback": [LABEL, ...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    feedback: Vec<Label>,
}

/// Reads a feedback body: one label `{"request_id": "...", "label": ...}` or a batch
/// `{"feedback": [{...}, ...]}`. A body that is neither is refused whole, with a message
/// for the client (the answer's 400), and nothing of it is joined.
pub fn parse_labels(body: &[u8]) -> Result<Vec<Label>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("feedback").is_some() {
        serde_json::from_value::<Batch>(v)
            .map(|b| b.feedback)
            .map_err(|e| format!("a batch is {{\"feedback\": [{{\"request_id\": \"...\", \"label\": ...}}, ...]}}: {e}"))
    } else {
        serde_json::from_value::<Label>(v)
            .map(|l| vec![l])
            .map_err(|e| format!("a label is {{\"request_id\": \"...\", \"label\": ...}}: {e}"))
    }
}

/// A class's name as labels and predictions are compared: a string as it is, `true` or
/// `false`, an integer in decimal (`2`, `2.0` and `2e0` are all `"2"`); anything else
/// (null, arrays, objects, fractions) is no class.
pub(super) fn class_name(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                return Some(Cow::Owned(n.to_string()));
            }
            let f = n.as_f64()?;
            // Integral and exactly representable: the integer it is.
            (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
                .then(|| Cow::Owned(format!("{}", f as i64)))
        }
        _ => None,
    }
}

/// A label's number: a JSON number, or a string that reads as one; finite only.
fn number(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// Judges a label against the prediction it matched; `hash` is how class names were
/// hashed when the prediction was remembered.
pub(super) fn judge(guess: Guess, label: &Value, hash: impl Fn(&str) -> u64) -> Verdict {
    match guess {
        Guess::Class(h) => match class_name(label) {
            Some(name) if hash(&name) == h => Verdict::Correct,
            Some(_) => Verdict::Wrong,
            None => Verdict::Unscored,
        },
        Guess::Value(p) => match number(label) {
            Some(y) if p.is_finite() => Verdict::Off((y - p).abs()),
            _ => Verdict::Unscored,
        },
    }
}

impl Predicted {
    /// A prediction read from one JSON value of an answer: a string, boolean or integer is
    /// a class, a number with a fraction or an exponent is a value; anything else is none.
    ///
    /// Where the answer says more (a V2 output's `datatype`: `INT*`/`BYTES`/`BOOL` a
    /// class, `FP*` a value), building [`Predicted`] from that is more exact.
    pub fn from_json(v: &Value) -> Option<Predicted> {
        match v {
            Value::Number(n) if n.is_f64() => n.as_f64().map(Predicted::Value),
            other => class_name(other).map(|c| Predicted::Class(c.into_owned())),
        }
    }
}
