//! Loading: the one file that touches YAML.
//!
//! Parsing goes through `serde_yaml` (the maintained `yaml_serde` crate). Syntax and type
//! errors carry the parser's line; problems found by validation are located afterwards
//! by walking the document to the offending field with a [`DeserializeSeed`] probe, so
//! every problem names its field path *and* its line.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::validate::{validate, FieldPath, Seg};
use super::Config;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Field path such as `rollout.steps[1].weight` (empty for the document itself).
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        match self.line {
            Some(line) => write!(f, "{path} (line {line}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every problem found in a config file; loading fails as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            path: String::new(),
            line: None,
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    parse(&text)
}

/// Parses and validates a config document.
pub fn parse(text: &str) -> Result<Config, Problems> {
    let config: Config =
        serde_yaml::from_str(text).map_err(|e| Problems(vec![from_yaml_error(&e)]))?;
    let found = validate(&config);
    if found.is_empty() {
        return Ok(config);
    }
    Err(Problems(
        found
            .into_iter()
            .map(|(path, message)| Problem {
                line: locate(text, &path),
                path: path.to_string(),
                message,
            })
            .collect(),
    ))
}

/// Turns a serde_yaml error into a problem; its message is "path: what at line L column C".
fn from_yaml_error(e: &serde_yaml::Error) -> Problem {
    let line = e.location().map(|l| l.line());
    let full = e.to_string();
    // Drop the " at line L column C" tail: the line is reported on its own.
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    let (path, message) = match msg.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
        _ => (String::new(), msg.to_string()),
    };
    Problem {
        path,
        line,
        message,
    }
}

/// Finds the line of `path` in the document, or of its nearest ancestor that is present.
fn locate(text: &str, path: &FieldPath) -> Option<usize> {
    let segs = path.segs();
    (0..=segs.len())
        .rev()
        .find_map(|n| locate_exact(text, &segs[..n]))
}

const FOUND: &str = "switchyard-locator-found";

fn locate_exact(text: &str, segs: &[Seg]) -> Option<usize> {
    let de = serde_yaml::Deserializer::from_str(text);
    match (Probe { segs }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

/// Walks a document along `segs`; at the end it fails on purpose so the parser marks the spot.
struct Probe<'a> {
    segs: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Probe<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.segs.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let (first, rest) = self.segs.split_first().expect("not empty");
        while let Some(key) = map.next_key::<KeyText>()? {
            if matches!(first, Seg::Key(k) if *k == key.0) {
                return map.next_value_seed(Probe { segs: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let (first, rest) = self.segs.split_first().expect("not empty");
        let mut i = 0;
        loop {
            if matches!(first, Seg::Index(n) if *n == i) {
                return seq.next_element_seed(Probe { segs: rest }).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
listen: 127.0.0.1:8080
backends:
  blue:
    url: http://127.0.0.1:18001
  green:
    url: http://127.0.0.1:18002
rollout:
  stable: blue
  candidate: green
  steps:
    - { weight: 0, mirror: 100, hold: 2m }
    - weight: 150
      hold: 1m
    - { weight: 100 }
";

    #[test]
    fn validation_problems_name_field_and_line() {
        let err = parse(BASE).unwrap_err();
        let p = err
            .0
            .iter()
            .find(|p| p.path == "rollout.steps[1].weight")
            .expect("weight problem");
        assert_eq!(p.line, Some(12), "{err}");
        assert!(p.message.contains("between 0 and 100"), "{}", p.message);
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let text = BASE.replace("  candidate: green", "  candidate: green\n  stpes: []");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.0.len(), 1);
        let p = &err.0[0];
        assert_eq!(p.line, Some(10), "{p}");
        assert!(p.message.contains("unknown field `stpes`"), "{p}");
        assert_eq!(p.path, "rollout");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = BASE
            .replace("candidate: green", "candidate: purple")
            .replace("url: http://127.0.0.1:18001", "url: ftp://x");
        let err = parse(&text).unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"rollout.candidate"), "{paths:?}");
        assert!(paths.contains(&"backends.blue.url"), "{paths:?}");
        assert!(paths.contains(&"rollout.steps[1].weight"), "{paths:?}");
        let cand = err
            .0
            .iter()
            .find(|p| p.path == "rollout.candidate")
            .unwrap();
        assert_eq!(cand.line, Some(9));
    }

    #[test]
    fn bad_duration_names_its_line() {
        let text = BASE.replace("hold: 1m", "hold: one minute");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.0[0].line, Some(13), "{err}");
        assert!(err.0[0].message.contains("not a duration"), "{err}");
    }
}
