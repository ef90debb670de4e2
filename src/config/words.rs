//! User words for what the YAML reader says: serde's and libyaml's messages (`expected
//! f64`, `did not find expected key`) turned into what a config's author can act on.
//!
//! Only text: [`load`](crate::config::load) reads the document and hands over the message, the
//! field it is about and, when known, the value as written.

/// What went wrong reading one field, as serde put it, sorted by what can be done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Said {
    /// `unknown field `k`, expected …`: a key this mapping does not take.
    Unknown { field: String, known: Vec<String> },
    /// `missing field `k``: a key this mapping needs.
    Missing { field: String },
    /// `duplicate field `k``: a key given twice.
    Duplicate { field: String },
    /// Any other message, about the value at the path itself.
    Value(String),
}

impl Said {
    /// Sorts serde's message (without its path and line).
    pub(crate) fn of(message: &str) -> Said {
        if let Some(rest) = message.strip_prefix("unknown field ") {
            if let Some((field, after)) = ticked(rest) {
                return Said::Unknown {
                    field: field.to_string(),
                    known: names(after),
                };
            }
        }
        if let Some((field, "")) = message.strip_prefix("missing field ").and_then(ticked) {
            return Said::Missing {
                field: field.to_string(),
            };
        }
        if let Some((field, "")) = message.strip_prefix("duplicate field ").and_then(ticked) {
            return Said::Duplicate {
                field: field.to_string(),
            };
        }
        Said::Value(message.to_string())
    }

    /// The field the message is about, below the mapping serde names (for `Value`, none:
    /// the message is about the path itself).
    /// The known field an unknown one is likely a typo of.
    pub(crate) fn meant(&self) -> Option<&str> {
        match self {
            Said::Unknown { field, known } => nearest(field, known),
            _ => None,
        }
    }

    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            Said::Unknown { field, .. } | Said::Missing { field } | Said::Duplicate { field } => {
                Some(field)
            }
            Said::Value(_) => None,
        }
    }
}

/// The text between the first pair of backticks at the start of `s`, and what follows.
fn ticked(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('`')?;
    let end = inner.find('`')?;
    Some((&inner[..end], &inner[end + 1..]))
}

/// Every backticked name in `s` (serde's `expected one of `a`, `b``).
fn names(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Fields written as a percentage (0 to 100), not a fraction.
const PERCENT_FIELDS: [&str; 4] = ["weight", "mirror", "sample", "calibrate"];

/// The user's message for `said` about `field` (the last key of its path; empty for the
/// document itself), whose value was written as `got` (`1%`, `a list`; `None` when absent).
pub(crate) fn explain(said: &Said, field: &str, got: Option<&str>) -> String {
    match said {
        Said::Unknown { field, known } => unknown(field, known),
        Said::Missing { .. } => "missing: this setting is required".to_string(),
        Said::Duplicate { .. } => "given twice in the same mapping: keep one".to_string(),
        Said::Value(message) => value(message, field, got),
    }
}

fn unknown(field: &str, known: &[String]) -> String {
    let mut out = format!("unknown field `{field}`");
    if let Some(near) = nearest(field, known) {
        out.push_str(&format!(": did you mean `{near}`?"));
    }
    if !known.is_empty() {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        out.push_str(&format!(" (this mapping takes {})", list.join(", ")));
    } else {
        out.push_str(" (this mapping takes no fields)");
    }
    out
}

/// The known name closest to `typed` by edit distance, when close enough to be a typo.
fn nearest<'k>(typed: &str, known: &'k [String]) -> Option<&'k str> {
    // No field name is this long: a typo of one is not either (and the distance table
    // grows with the product of the lengths).
    if typed.len() > 64 {
        return None;
    }
    let most = (typed.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(typed, k), k))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A message about a value: serde's `invalid type: …, expected …` and its kin, or a
/// message of switchyard's own (already in user words) passed on.
fn value(message: &str, field: &str, got: Option<&str>) -> String {
    let got_words = |unexpected: &str| match got {
        Some(g) => g.to_string(),
        None => unexpected_words(unexpected),
    };
    for (prefix, out_of_range) in [("invalid type: ", false), ("invalid value: ", true)] {
        if let Some((unexpected, expected)) = message
            .strip_prefix(prefix)
            .and_then(|r| r.split_once(", expected "))
        {
            let got = got_words(unexpected);
            let want = expected_words(expected, field, out_of_range);
            return format!("expected {want}, got {got}{}", hint(field, &got));
        }
    }
    if let Some((variant, expected)) = message
        .strip_prefix("unknown variant ")
        .and_then(ticked)
        .and_then(|(v, rest)| Some((v, rest.strip_prefix(", expected ")?)))
    {
        return format!("expected {expected}, got `{variant}`");
    }
    if message == "invalid socket address syntax" {
        let got = got.map(|g| format!(", got {g}")).unwrap_or_default();
        return format!("expected an address such as 127.0.0.1:8080{got}");
    }
    message.to_string()
}

/// serde's `Unexpected` as written in its message (`string "1%"`, `integer `5``,
/// `sequence`), in user words.
fn unexpected_words(u: &str) -> String {
    if let Some(s) = u.strip_prefix("string ") {
        let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
        return format!("`{}`", inner.unwrap_or(s));
    }
    for prefix in ["integer ", "floating point ", "boolean ", "character "] {
        if let Some(v) = u.strip_prefix(prefix) {
            return v.to_string();
        }
    }
    match u {
        "unit value" => "nothing".to_string(),
        "sequence" => "a list".to_string(),
        "map" => "a mapping".to_string(),
        other => other.to_string(),
    }
}

/// serde's `expected …` (a Rust type such as `f64`, or a visitor's own words) in user words.
fn expected_words(expected: &str, field: &str, out_of_range: bool) -> String {
    let whole = |max: &str| match out_of_range {
        true => format!("a whole number from 0 to {max}"),
        false => "a whole number such as 10".to_string(),
    };
    match expected {
        "f64" | "f32" if PERCENT_FIELDS.contains(&field) => {
            "a number such as 25 (a percentage, 0 to 100)".to_string()
        }
        "f64" | "f32" => "a number such as 0.01".to_string(),
        "u8" => whole("255"),
        "u16" => whole("65535"),
        "u32" => whole(&u32::MAX.to_string()),
        "u64" | "usize" | "u128" => whole(&u64::MAX.to_string()),
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number such as 10".to_string(),
        "a boolean" => "`true` or `false`".to_string(),
        "a string" | "string" => "text".to_string(),
        "a character" => "a single character".to_string(),
        "a sequence" => "a list (`- item` lines, or `[a, b]`)".to_string(),
        "path string" => "a path such as state/rollout.json".to_string(),
        "socket address" => "an address such as 127.0.0.1:8080".to_string(),
        "field identifier" => "a field name".to_string(),
        "struct ConfigFile" | "struct Config" => {
            "a mapping of settings (`backends:`, `rollout:` …)".to_string()
        }
        "a map" | "map" => "a mapping (`key: value` lines)".to_string(),
        s if s.starts_with("struct ") => "a mapping (`key: value` lines)".to_string(),
        s if s.starts_with("unit struct ") || s == "unit" => "nothing (`{}`)".to_string(),
        other => other.to_string(),
    }
}

/// A hint for a value written with `%`: a percentage field takes the bare number, any
/// other number field a fraction.
fn hint(field: &str, got: &str) -> String {
    let Some(number) = got
        .trim_matches('`')
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
    else {
        return String::new();
    };
    if PERCENT_FIELDS.contains(&field) {
        format!(" (write the percentage without `%`: {number})")
    } else {
        format!(" (a fraction: {number}% is {})", number / 100.0)
    }
}

/// A YAML syntax error from the parser (`did not find expected key`), in user words.
pub(crate) fn syntax(problem: &str) -> String {
    let why = if problem.contains("tab") {
        "a tab where YAML needs spaces: indent with spaces only"
    } else if problem.starts_with("did not find expected key") {
        "this line is not indented like the keys around it (or a `- item` sits among `key: value` lines)"
    } else if problem.starts_with("mapping values are not allowed") {
        "a `: ` inside a value: quote the value, or start the nested mapping on a line of its own"
    } else if problem.starts_with("block sequence entries are not allowed") {
        "a `- item` where it cannot start: put the list on the lines below its key, indented"
    } else if problem.starts_with("did not find expected ',' or ']'") {
        "a `[` list is not closed by `]`, or its items are not separated by `,`"
    } else if problem.starts_with("did not find expected ',' or '}'") {
        "a `{` mapping is not closed by `}`, or its entries are not separated by `,`"
    } else if problem.starts_with("found unexpected end of stream") {
        "the file ends inside a quoted value, or an open `[` or `{`"
    } else if problem.starts_with("could not find expected ':'") {
        "a key without its `:`"
    } else if problem.starts_with("found character that cannot start any token") {
        "a value starts with a character YAML reserves (such as `@`, `` ` `` or `%`): quote the value"
    } else if problem.starts_with("unknown anchor") {
        "`*name` refers to no `&name` anchor written before it"
    } else if problem.starts_with("found unknown escape character") {
        "an unknown `\\` escape inside double quotes: use single quotes, or write `\\\\`"
    } else if let Some(key) = problem.strip_prefix("duplicate entry with key ") {
        return format!(
            "the key {} is given twice in the same mapping: keep one",
            key.trim_matches('"')
        );
    } else {
        return format!("the YAML cannot be read: {problem}");
    };
    format!("the YAML cannot be read: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(message: &str, field: &str, got: Option<&str>) -> String {
        explain(&Said::of(message), field, got)
    }

    #[test]
    fn rust_types_become_examples() {
        assert_eq!(
            say("invalid type: string \"1%\", expected f64", "max", None),
            "expected a number such as 0.01, got `1%` (a fraction: 1% is 0.01)"
        );
        assert_eq!(
            say(
                "invalid type: string \"lots\", expected usize",
                "keep",
                None
            ),
            "expected a whole number such as 10, got `lots`"
        );
        assert_eq!(
            say("invalid value: integer `-3`, expected usize", "keep", None),
            format!("expected a whole number from 0 to {}, got `-3`", u64::MAX)
        );
        assert_eq!(
            say("invalid type: string \"5%\", expected f64", "weight", Some("`5%`")),
            "expected a number such as 25 (a percentage, 0 to 100), got `5%` (write the percentage without `%`: 5)"
        );
        assert_eq!(
            say(
                "invalid type: sequence, expected a boolean",
                "x",
                Some("a list")
            ),
            "expected `true` or `false`, got a list"
        );
        assert_eq!(
            say(
                "unknown variant `blue`, expected `canary` or `blue-green`",
                "strategy",
                None
            ),
            "expected `canary` or `blue-green`, got `blue`"
        );
    }

    #[test]
    fn an_unknown_field_suggests_the_near_one() {
        let said = Said::of("unknown field `stpes`, expected one of `stable`, `steps`");
        assert_eq!(said.field(), Some("stpes"));
        assert_eq!(
            explain(&said, "stpes", None),
            "unknown field `stpes`: did you mean `steps`? (this mapping takes `stable`, `steps`)"
        );
        let far = Said::of("unknown field `colour`, expected `stable`");
        assert!(!explain(&far, "colour", None).contains("did you mean"));
    }

    #[test]
    fn own_messages_pass_unchanged() {
        let m = "expected a duration such as 500ms, 10s, 2m or 1h, got `forever`";
        assert_eq!(say(m, "hold", Some("`forever`")), m);
    }
}
