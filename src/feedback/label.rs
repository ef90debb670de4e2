//! Labels as they arrive (`POST /api/v1/feedback` bodies), read as a stream, and how one
//! is judged against its prediction.
//!
//! # Memory
//!
//! A body is read in place ([`read_labels`]): no tree of JSON values is built. Labels are
//! handed on in chunks of at most [`CHUNK`], each a request id and a [`LabelValue`] that
//! borrow from the body (a string with escapes is copied, never longer than its escaped
//! form); a label that is an array or an object is skipped over, not kept (it is matched
//! but never scored). So reading a body of `n` bytes holds at most the chunk's
//! `CHUNK × 64` bytes of labels plus `n` bytes of unescaped strings, on top of the body
//! itself: at most `2n + 64 KiB`. The body's own structure is at most a few levels
//! deep, and a label value's nesting is read through as serde_json reads JSON (numbers in
//! range, at most its 128 levels of recursion), so the stack is bounded too.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::pending::Guess;
use super::score::Verdict;

/// Labels handed on at a time by [`read_labels`] (and joined per hold of the store's lock).
pub const CHUNK: usize = 1024;

/// One label: the ground truth for the request with this id.
#[derive(Debug, Clone, PartialEq)]
pub struct Label<'a> {
    /// The `x-request-id` of the request it labels.
    pub request_id: Cow<'a, str>,
    /// The true class (a string, an integer or a boolean) or the true value (a number).
    pub label: LabelValue<'a>,
}

/// A label's value, bounded whatever the body says: an array or an object is not kept.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue<'a> {
    Text(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Null,
    /// An array or an object: never a class or a value, so only counted (unscored).
    Nested,
}

impl<'a> Label<'a> {
    /// A label for `request_id` whose value is read from a JSON value.
    pub fn new(request_id: impl Into<Cow<'a, str>>, label: &'a Value) -> Label<'a> {
        Label {
            request_id: request_id.into(),
            label: LabelValue::of(label),
        }
    }
}

impl LabelValue<'_> {
    /// The same value, owning its string.
    pub fn into_owned(self) -> LabelValue<'static> {
        match self {
            LabelValue::Text(s) => LabelValue::Text(Cow::Owned(s.into_owned())),
            LabelValue::Bool(b) => LabelValue::Bool(b),
            LabelValue::Int(i) => LabelValue::Int(i),
            LabelValue::UInt(u) => LabelValue::UInt(u),
            LabelValue::Float(f) => LabelValue::Float(f),
            LabelValue::Null => LabelValue::Null,
            LabelValue::Nested => LabelValue::Nested,
        }
    }
}

impl<'a> LabelValue<'a> {
    /// The label value a JSON value stands for (borrowing its string).
    pub fn of(v: &'a Value) -> LabelValue<'a> {
        match v {
            Value::String(s) => LabelValue::Text(Cow::Borrowed(s)),
            Value::Bool(b) => LabelValue::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => LabelValue::Int(i),
                (_, Some(u), _) => LabelValue::UInt(u),
                (_, _, Some(f)) => LabelValue::Float(f),
                _ => LabelValue::Null,
            },
            Value::Null => LabelValue::Null,
            Value::Array(_) | Value::Object(_) => LabelValue::Nested,
        }
    }
}

/// Reads a feedback body: one label `{"request_id": "...", "label": ...}` or a batch
/// `{"feedback": [{...}, ...]}`, handing the labels to `each` in order, in chunks of at
/// most [`CHUNK`], as they are read; answers how many there were. A body that is neither
/// is refused with a message for the client (the answer's 400); the labels handed on
/// before the fault was found are then to be dropped by the caller (the store reads a
/// body twice: once to check it, once to join it, so nothing of a refused body is joined).
pub fn read_labels<'a>(body: &'a [u8], mut each: impl FnMut(&[Label<'a>])) -> Result<u64, String> {
    // JSON is UTF-8 (RFC 8259 §8.1). Checked whole first: the values the reader skips
    // (a label that is an array or an object) are not read as text, so a stray byte in
    // them would otherwise pass.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(format!("not JSON: not UTF-8 at byte {}", e.valid_up_to()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut read = Reader {
        each: &mut each,
        chunk: Vec::new(),
        count: 0,
    };
    let shape = de
        .deserialize_map(BodyVisitor { read: &mut read })
        .and_then(|()| de.end());
    match shape {
        Ok(()) => {
            read.flush();
            Ok(read.count)
        }
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data => format!(
                "a label is {{\"request_id\": \"...\", \"label\": ...}}, a batch \
                 {{\"feedback\": [{{\"request_id\": \"...\", \"label\": ...}}, ...]}}: {e}"
            ),
            _ => format!("not JSON: {e}"),
        }),
    }
}

/// Reads a whole feedback body into a list (see [`read_labels`]); for tests and small
/// bodies: the store joins a body chunk by chunk instead.
pub fn parse_labels(body: &[u8]) -> Result<Vec<Label<'_>>, String> {
    let mut all = Vec::new();
    read_labels(body, |chunk| all.extend_from_slice(chunk))?;
    Ok(all)
}

/// The labels read so far of one body, handed on a chunk at a time.
struct Reader<'f, 'a, F> {
    each: &'f mut F,
    chunk: Vec<Label<'a>>,
    count: u64,
}

impl<'a, F: FnMut(&[Label<'a>])> Reader<'_, 'a, F> {
    fn push(&mut self, label: Label<'a>) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(CHUNK);
        }
        self.chunk.push(label);
        self.count = self.count.saturating_add(1);
        if self.chunk.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.chunk.is_empty() {
            (self.each)(&self.chunk);
            self.chunk.clear();
        }
    }
}

/// The members a body's object may have.
enum Field {
    RequestId,
    Label,
    Feedback,
}

const FIELDS: &[&str] = &["request_id", "label", "feedback"];

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`request_id`, `label` or `feedback`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                match s {
                    "request_id" => Ok(Field::RequestId),
                    "label" => Ok(Field::Label),
                    "feedback" => Ok(Field::Feedback),
                    other => Err(E::unknown_field(other, FIELDS)),
                }
            }
        }
        d.deserialize_identifier(V)
    }
}

/// The body's object: one label's members, or `feedback` and its array.
struct BodyVisitor<'r, 'f, 'a, F> {
    read: &'r mut Reader<'f, 'a, F>,
}

impl<'de, F: FnMut(&[Label<'de>])> Visitor<'de> for BodyVisitor<'_, '_, 'de, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut id: Option<Cow<'de, str>> = None;
        let mut label: Option<LabelValue<'de>> = None;
        let mut batch = false;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::RequestId if id.is_some() => {
                    return Err(de::Error::duplicate_field("request_id"))
                }
                Field::Label if label.is_some() => return Err(de::Error::duplicate_field("label")),
                Field::Feedback if batch => return Err(de::Error::duplicate_field("feedback")),
                Field::RequestId => id = Some(map.next_value::<Id<'de>>()?.0),
                Field::Label => label = Some(map.next_value()?),
                Field::Feedback => {
                    batch = true;
                    map.next_value_seed(Batch {
                        read: &mut *self.read,
                    })?;
                }
            }
        }
        match (batch, id, label) {
            (true, None, None) => Ok(()),
            (true, _, _) => Err(de::Error::custom(
                "a batch has only `feedback`: its labels go in its array",
            )),
            (false, Some(request_id), Some(label)) => {
                self.read.push(Label { request_id, label });
                Ok(())
            }
            (false, None, _) => Err(de::Error::missing_field("request_id")),
            (false, _, None) => Err(de::Error::missing_field("label")),
        }
    }
}

/// The `feedback` array, each label handed on as it is read.
struct Batch<'r, 'f, 'a, F> {
    read: &'r mut Reader<'f, 'a, F>,
}

impl<'de, F: FnMut(&[Label<'de>])> DeserializeSeed<'de> for Batch<'_, '_, 'de, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&[Label<'de>])> Visitor<'de> for Batch<'_, '_, 'de, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of labels")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(label) = seq.next_element::<OneLabel<'de>>()? {
            self.read.push(label.0);
        }
        Ok(())
    }
}

/// One label of a batch: exactly `request_id` and `label`.
struct OneLabel<'a>(Label<'a>);

impl<'de> Deserialize<'de> for OneLabel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OneLabel<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneLabel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label {\"request_id\": \"...\", \"label\": ...}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OneLabel<'de>, A::Error> {
                let mut id: Option<Cow<'de, str>> = None;
                let mut label: Option<LabelValue<'de>> = None;
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::RequestId if id.is_some() => {
                            return Err(de::Error::duplicate_field("request_id"))
                        }
                        Field::Label if label.is_some() => {
                            return Err(de::Error::duplicate_field("label"))
                        }
                        Field::RequestId => id = Some(map.next_value::<Id<'de>>()?.0),
                        Field::Label => label = Some(map.next_value()?),
                        Field::Feedback => {
                            return Err(de::Error::unknown_field("feedback", &FIELDS[..2]))
                        }
                    }
                }
                let request_id = id.ok_or_else(|| de::Error::missing_field("request_id"))?;
                let label = label.ok_or_else(|| de::Error::missing_field("label"))?;
                Ok(OneLabel(Label { request_id, label }))
            }
        }
        d.deserialize_map(V)
    }
}

/// A request id: a string, borrowed from the body unless it has escapes.
struct Id<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Id<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a request id (a string)")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for LabelValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelValue<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label (a class or a value)")
            }
            fn visit_bool<E>(self, b: bool) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<LabelValue<'de>, E> {
                Ok(i64::try_from(u).map_or(LabelValue::UInt(u), LabelValue::Int))
            }
            fn visit_f64<E>(self, f: f64) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Float(f))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Null)
            }
            fn visit_none<E>(self) -> Result<LabelValue<'de>, E> {
                Ok(LabelValue::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LabelValue<'de>, A::Error> {
                Checked.visit_seq(seq).map(|()| LabelValue::Nested)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LabelValue<'de>, A::Error> {
                Checked.visit_map(map).map(|()| LabelValue::Nested)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a nested label through and keeps nothing of it, checking it as serde_json reads
/// JSON: numbers within range, nesting within serde_json's recursion limit (128 levels,
/// so the stack is bounded). A skip that only scanned for brackets would accept what
/// every other JSON reader refuses (`1e4001`).
#[derive(Clone, Copy)]
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Checked)?.is_some() {
            map.next_value_seed(Checked)?;
        }
        Ok(())
    }
}

/// A class's name as labels and predictions are compared: a string as it is, `true` or
/// `false`, an integer in decimal (`2`, `2.0` and `2e0` are all `"2"`); anything else
/// (null, arrays, objects, fractions) is no class.
pub(super) fn class_name<'v>(v: &'v LabelValue<'_>) -> Option<Cow<'v, str>> {
    match v {
        LabelValue::Text(s) => Some(Cow::Borrowed(s)),
        LabelValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        LabelValue::Int(i) => Some(Cow::Owned(i.to_string())),
        LabelValue::UInt(u) => Some(Cow::Owned(u.to_string())),
        // Integral and exactly representable: the integer it is.
        LabelValue::Float(f) => (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
            .then(|| Cow::Owned(format!("{}", *f as i64))),
        LabelValue::Null | LabelValue::Nested => None,
    }
}

/// A label's number: a JSON number, or a string that reads as one; finite only.
fn number(v: &LabelValue<'_>) -> Option<f64> {
    let f = match v {
        LabelValue::Int(i) => *i as f64,
        LabelValue::UInt(u) => *u as f64,
        LabelValue::Float(f) => *f,
        LabelValue::Text(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// A label as the store compares it with a prediction, in 24 bytes: the hash of its
/// class name and its number, where it has them. Labels that wait for their prediction
/// are kept in this form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Truth {
    class: Option<u64>,
    value: Option<f64>,
}

impl Truth {
    /// The truth `label` tells, with class names hashed by `hash` (as predictions' are).
    pub(super) fn of(label: &LabelValue<'_>, hash: impl Fn(&str) -> u64) -> Truth {
        Truth {
            class: class_name(label).map(|name| hash(&name)),
            value: number(label),
        }
    }

    /// Judges this label against the prediction it matched.
    pub(super) fn judge(&self, guess: Guess) -> Verdict {
        match guess {
            Guess::Class(h) => match self.class {
                Some(c) if c == h => Verdict::Correct,
                Some(_) => Verdict::Wrong,
                None => Verdict::Unscored,
            },
            Guess::Value(p) => match self.value {
                Some(y) if p.is_finite() => Verdict::Off((y - p).abs()),
                _ => Verdict::Unscored,
            },
        }
    }
}

/// What a backend predicted, as the wiring reads it from the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicted {
    /// A class (its name or id as text): scored by accuracy.
    Class(String),
    /// A number: scored by absolute error.
    Value(f64),
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
            other => class_name(&LabelValue::of(other)).map(|c| Predicted::Class(c.into_owned())),
        }
    }
}
