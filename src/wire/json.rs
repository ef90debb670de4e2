//! JSON as inference servers write it: lenient parsing (the bare `NaN`/`Infinity` tokens
//! Python emits), a V2 answer's `outputs` read alone, and numbers spelled as strings.

use serde_json::Value;

/// Parses a body as JSON, accepting the bare `NaN`/`Infinity`/`-Infinity` tokens Python's `json` module emits.
pub(crate) fn parse(body: &[u8]) -> Option<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Some(v),
        Err(_) => {
            let fixed = quote_non_finite(body)?;
            serde_json::from_slice(&fixed).ok()
        }
    }
}

/// One output tensor of a V2 response: the members a V2 comparison reads, built without
/// the map and key strings a [`Value`] object costs. A member that is present (even
/// `null`) is `Some`; others in the object are skipped unbuilt.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct V2Output {
    pub(crate) name: String,
    #[serde(default, deserialize_with = "present")]
    pub(crate) datatype: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) shape: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) parameters: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) data: Option<Value>,
}

impl V2Output {
    /// The output as the JSON object it was (its members that a comparison reads), for
    /// reporting an output present on one side only.
    pub(crate) fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("name".to_owned(), Value::String(self.name.clone()));
        for (k, v) in [
            ("datatype", &self.datatype),
            ("shape", &self.shape),
            ("parameters", &self.parameters),
            ("data", &self.data),
        ] {
            if let Some(v) = v {
                m.insert(k.to_owned(), v.clone());
            }
        }
        Value::Object(m)
    }
}

/// A member that is present, `null` included (a plain `Option` would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Parses only the `outputs` member of a JSON object, the one member a V2 comparison
/// reads, into [`V2Output`]s: the other members (`model_name`, `model_version`, `id`,
/// `parameters`) are checked as JSON and skipped without being built. `None` when the
/// body is not such an object (not JSON, not an object, no `outputs` array of objects
/// with a string `name`, `NaN` tokens, a repeated key): the caller then parses it whole
/// with [`parse`], so such bodies are reported exactly as before.
pub(crate) fn parse_outputs(body: &[u8]) -> Option<Vec<V2Output>> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        outputs: Option<Vec<Object<V2Output>>>,
    }
    let outputs = serde_json::from_slice::<Object<Envelope>>(body)
        .ok()?
        .0
        .outputs?;
    Some(outputs.into_iter().map(|o| o.0).collect())
}

/// A `T` read from a JSON object only: a derived struct also reads an array of its
/// members in declaration order (`["y", "FP32"]` as an output named `y`), which a body
/// never means, and which pointers into it would not address.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Object<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens outside strings as JSON strings; `None` if there are none.
fn quote_non_finite(body: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"NaN", b"Infinity", b"-Infinity"];
    // Most unparseable bodies are not JSON at all: do not copy them.
    let has = |t: &[u8]| body.windows(t.len()).any(|w| w == t);
    if !has(b"NaN") && !has(b"Infinity") {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let (mut in_str, mut esc, mut changed) = (false, false, false);
    let mut i = 0;
    'bytes: while i < body.len() {
        let c = body[i];
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        } else if matches!(c, b'N' | b'I' | b'-') {
            for t in TOKENS {
                if body[i..].starts_with(t) {
                    out.push(b'"');
                    out.extend_from_slice(t);
                    out.push(b'"');
                    i += t.len();
                    changed = true;
                    continue 'bytes;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

/// Reads a value as a float: a JSON number, or a non-finite spelled as a string (`"NaN"`, `"Infinity"`, `"-inf"`, ...).
#[inline]
pub(crate) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => special_float(s),
        _ => None,
    }
}

/// Parses the usual spellings of NaN and the infinities; finite numbers in strings are not numbers.
pub(crate) fn special_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        f64::INFINITY
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}
