//! Fuzz target: the config loader (`switchyard::config::parse`, the text path of
//! `load_file`) on arbitrary text and on mutations of the seed corpus (the examples in
//! `config/` and the broken and edge-case files in `tests/fuzz/corpus/config/`).
//!
//! Properties:
//! - parsing never panics, whatever the text;
//! - a refused text gets at least one problem, and every problem's line is in the text;
//! - an accepted config is usable as the program uses it: the snapshot of it builds
//!   (backends, upstream pools, mirror slots) without a panic, its compare rules build
//!   (the snapshot would silently fall back to no redaction otherwise), and each of its
//!   durations can be added to the current instant (the data plane does so per request).

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use switchyard::compare::Rules;
use switchyard::config::{parse, Config, Hold};
use switchyard::snapshot::{Backends, Builder, Routing};

/// The seed texts: every example under `config/` and every file of the config corpus.
fn seeds() -> &'static [(String, String)] {
    static SEEDS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut all = super::corpus("config", &["yaml"]);
        all.extend(super::corpus("tests/fuzz/corpus/config", &["yaml"]));
        let all: Vec<(String, String)> = all
            .into_iter()
            .map(|(name, bytes)| {
                (
                    name,
                    String::from_utf8(bytes).expect("a config seed is text"),
                )
            })
            .collect();
        assert!(all.len() >= 5, "the config corpus is missing");
        all
    })
}

/// Every line of every seed, for splicing one file's lines into another.
fn seed_lines() -> &'static [String] {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(|| {
        seeds()
            .iter()
            .flat_map(|(_, t)| t.lines().map(str::to_owned))
            .collect()
    })
}

/// Scalars and small structures that sit at the edges of what the loader accepts.
const VALUES: &[&str] = &[
    "",
    "~",
    "null",
    "0",
    "-1",
    "1",
    "100",
    "100.0001",
    "-0",
    "0.5",
    "1e309",
    "-1e309",
    ".nan",
    ".inf",
    "-.inf",
    "4294967296",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "0x10",
    "0o17",
    "true",
    "yes",
    "[]",
    "{}",
    "[1, 2]",
    "{ weight: 5 }",
    "manual",
    " manual ",
    "0s",
    "0ms",
    "1ns",
    "500ms",
    "10s",
    "2m",
    "1h",
    "1m30s",
    "30days",
    "31days",
    "100y",
    "300000000000y",
    "584942417355y",
    "99999999999999999999y",
    "1.5MiB",
    "0B",
    "1e30GiB",
    "-1KiB",
    "NaNMiB",
    "18446744073709551615B",
    "'http://127.0.0.1:18001'",
    "http://",
    "http://:80",
    "http://[::1]:1",
    "http://a?b",
    "http://a:99999",
    "https://x",
    "ftp://x",
    "http://127.0.0.1:18001/prefix/",
    "127.0.0.1:8080",
    "0.0.0.0:0",
    "[::]:9901",
    "127.0.0.1:9901",
    "256.0.0.1:1",
    "blue",
    "green",
    "purple",
    "canary",
    "blue-green",
    "x-user",
    "X-Bad Header",
    "\"bad\\u0000name\"",
    "/outputs/*/data",
    "/a~2",
    "/a~",
    "~0",
    "a/b",
    "*",
    "[\"/outputs/*/parameters\", \"/id\"]",
    "[\"/a~2\"]",
    "[\"/~\"]",
    "[\"\"]",
    "auto",
    "v2",
    "v1",
    "json",
    "bytes",
    "V2",
    "&anchor value",
    "*anchor",
    "!!binary aGk=",
    "!!str 5",
    "!!int x",
    "|\n  text",
    ">-\n  text",
    "\"\\u0000\"",
    "'quoted ''twice'''",
    "{ url: http://127.0.0.1:1 }",
    "{ url: http://127.0.0.1:1, timeout: 0s }",
    "[{ weight: 50 }, { weight: 10 }]",
    "{ header: x-user, cookie: uid }",
];

/// Field names, known and unknown, for replacing a key.
const KEYS: &[&str] = &[
    "listen",
    "admin",
    "token_env",
    "limits",
    "max_body",
    "header_timeout",
    "idle_timeout",
    "backends",
    "url",
    "timeout",
    "rollout",
    "stable",
    "candidate",
    "strategy",
    "sticky",
    "header",
    "cookie",
    "override_header",
    "steps",
    "weight",
    "mirror",
    "hold",
    "analysis",
    "interval",
    "window",
    "min_samples",
    "failure_limit",
    "gates",
    "error_rate",
    "max",
    "latency_p99",
    "max_ratio",
    "shadow_agreement",
    "min",
    "after_promotion",
    "fast_rollback",
    "consecutive_errors",
    "fallback_to_stable",
    "blue_green",
    "auto_promote_after",
    "shadow",
    "max_in_flight",
    "calibrate",
    "compare",
    "protocol",
    "ignore",
    "abs_tolerance",
    "rel_tolerance",
    "redact",
    "state",
    "path",
    "<<",
    "? complex",
    "stpes",
    "\"quoted\"",
    "- item",
];

/// Whole lines worth inserting anywhere.
const LINES: &[&str] = &[
    "---",
    "...",
    "%YAML 1.2",
    "# a comment",
    "\t",
    "",
    "key: value",
    "- item",
    "anchors: &a { url: http://127.0.0.1:1 }",
    "  other: *a",
    "  <<: *a",
    "    redact: [\"/a~2\"]",
    "  max_in_flight: 18446744073709551615",
    "    timeout: 300000000000y",
    "  header_timeout: 300000000000y",
    "  idle_timeout: 584942417355y",
    "  after_promotion: 99999999999y",
    "  blue_green: { auto_promote_after: 300000000000y }",
    "      latency_p99: { max: 300000000000y }",
    "? [a, b]",
    ": value",
    "{",
    "[",
    "'",
    "\"",
    "&",
    "!",
];

/// One edit of a text, positions taken modulo what is there.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    /// Replaces what follows the line's first `:` with the value.
    ReplaceValue(usize, String),
    /// Sets the value of a field by name: on one of the lines whose key it is, or in a
    /// flow mapping (`{ key: value }`) that holds it.
    SetField(&'static str, usize, String),
    /// Replaces what precedes the line's first `:` (after its indentation) with the key.
    ReplaceKey(usize, String),
    InsertLine(usize, String),
    /// Adds (positive) or removes (negative) leading spaces.
    Indent(usize, i8),
    /// Inserts text at a byte offset (moved back to a character boundary).
    InsertText(usize, String),
    Truncate(usize),
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_owned),
        1 => "[ -~]{0,12}",
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{0,10}",
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(LINES).prop_map(str::to_owned),
        2 => any::<prop::sample::Index>().prop_map(|i| i.get(seed_lines()).clone()),
        1 => (key(), value(), 0..8usize).prop_map(|(k, v, n)| format!("{}{k}: {v}", " ".repeat(n))),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        3 => at.prop_map(Mutation::DeleteLine),
        1 => at.prop_map(Mutation::DuplicateLine),
        1 => (at, any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        4 => (at, value()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        6 => (prop::sample::select(KEYS), at, value()).prop_map(|(k, i, v)| Mutation::SetField(k, i, v)),
        2 => (at, key()).prop_map(|(i, k)| Mutation::ReplaceKey(i, k)),
        3 => (at, line()).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        1 => (at, -4i8..=4).prop_map(|(i, d)| Mutation::Indent(i, d)),
        1 => (at, prop_oneof!["[ -~\t\n]{1,6}", any::<String>()])
            .prop_map(|(i, t)| Mutation::InsertText(i, t)),
        1 => at.prop_map(Mutation::Truncate),
    ]
}

/// Applies the mutations in order.
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for m in mutations {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
            Mutation::ReplaceValue(i, v) => {
                let l = &mut lines[i % n];
                if let Some(c) = l.find(':') {
                    l.truncate(c + 1);
                    l.push(' ');
                    l.push_str(v);
                }
            }
            Mutation::SetField(key, i, v) => {
                let block = format!("{key}:");
                let flow = format!(" {key}: ");
                let found: Vec<usize> = (0..n)
                    .filter(|&j| {
                        lines[j].trim_start().starts_with(&block) || lines[j].contains(&flow)
                    })
                    .collect();
                if !found.is_empty() {
                    let l = &mut lines[found[i % found.len()]];
                    if l.trim_start().starts_with(&block) {
                        let c = l.find(':').unwrap();
                        l.truncate(c + 1);
                        l.push(' ');
                        l.push_str(v);
                    } else {
                        // In a flow mapping: up to the next `,` or `}`.
                        let start = l.find(&flow).unwrap() + flow.len();
                        let end = l[start..].find([',', '}']).map_or(l.len(), |e| start + e);
                        l.replace_range(start..end, v);
                    }
                }
            }
            Mutation::ReplaceKey(i, k) => {
                let l = &mut lines[i % n];
                if let Some(c) = l.find(':') {
                    let indent = l.len() - l.trim_start().len();
                    if indent <= c {
                        l.replace_range(indent..c, k);
                    }
                }
            }
            Mutation::InsertLine(i, new) => lines.insert(i % (n + 1), new.clone()),
            Mutation::Indent(i, d) => {
                let l = &mut lines[i % n];
                if *d >= 0 {
                    l.insert_str(0, &" ".repeat(*d as usize));
                } else {
                    let spaces = l.len() - l.trim_start_matches(' ').len();
                    l.drain(..spaces.min(d.unsigned_abs() as usize));
                }
            }
            Mutation::InsertText(at, t) => {
                let mut whole = lines.join("\n");
                let mut at = at % (whole.len() + 1);
                while !whole.is_char_boundary(at) {
                    at -= 1;
                }
                whole.insert_str(at, t);
                lines = whole.split('\n').map(str::to_owned).collect();
            }
            Mutation::Truncate(at) => {
                let mut whole = lines.join("\n");
                let mut at = at % (whole.len() + 1);
                while !whole.is_char_boundary(at) {
                    at -= 1;
                }
                whole.truncate(at);
                lines = whole.split('\n').map(str::to_owned).collect();
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// A seed text and the mutations applied to it.
fn mutated_seed() -> impl Strategy<Value = String> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation(), 0..5),
    )
        .prop_map(|(i, ms)| mutate(&i.get(seeds()).1, &ms))
}

/// Every duration of a config, with its field.
fn durations(c: &Config) -> Vec<(String, Duration)> {
    let mut out = vec![
        (
            "limits.header_timeout".to_owned(),
            c.limits.header_timeout.0,
        ),
        ("limits.idle_timeout".to_owned(), c.limits.idle_timeout.0),
    ];
    for (name, b) in &c.backends {
        out.push((format!("backends.{name}.timeout"), b.timeout.0));
    }
    let r = &c.rollout;
    for (i, s) in r.steps.iter().enumerate() {
        if let Some(Hold::For(d)) = s.hold {
            out.push((format!("rollout.steps[{i}].hold"), d.0));
        }
    }
    if let Some(a) = &r.analysis {
        out.push(("rollout.analysis.interval".to_owned(), a.interval.0));
        out.push(("rollout.analysis.window".to_owned(), a.window.0));
        out.push((
            "rollout.analysis.after_promotion".to_owned(),
            a.after_promotion.0,
        ));
        if let Some(m) = a.gates.latency_p99.as_ref().and_then(|l| l.max) {
            out.push(("rollout.analysis.gates.latency_p99.max".to_owned(), m.0));
        }
    }
    if let Some(d) = r.blue_green.as_ref().and_then(|b| b.auto_promote_after) {
        out.push(("rollout.blue_green.auto_promote_after".to_owned(), d.0));
    }
    out
}

/// Parses `text` and checks every property; the error says which one failed.
fn check(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(config) => {
            let c = &config.shadow.compare;
            let rules = Rules::new(
                c.protocol,
                c.ignore.clone(),
                c.abs_tolerance,
                c.rel_tolerance,
                c.redact.clone(),
            );
            prop_assert!(
                rules.is_ok(),
                "accepted compare settings that the comparator refuses (the snapshot would drop every redact pointer): {:?}",
                rules.err()
            );
            let now = std::time::Instant::now();
            for (field, d) in durations(&config) {
                prop_assert!(
                    now.checked_add(d).is_some(),
                    "accepted {field} = {d:?}, which overflows an instant"
                );
            }
            let mut backends = Backends::default();
            backends.sync(&config);
            let builder = Builder::new(&config, &backends, None);
            let routes = config.routes();
            let snap = builder.build(
                1,
                routes.iter().map(|_| Routing {
                    weight: 0.0,
                    mirror: 0.0,
                    tripwire: None,
                    rollout: 0,
                    step: 0,
                }),
            );
            prop_assert_eq!(snap.routes.len(), routes.len());
            for (built, route) in snap.routes.iter().zip(&routes) {
                prop_assert_eq!(&*built.name, route.name.as_str());
                prop_assert!(built.backend(route.rollout.stable.as_bytes()).is_some());
            }
        }
        Err(problems) => {
            prop_assert!(!problems.0.is_empty(), "refused without a problem");
            // YAML also breaks lines at \r, U+0085, U+2028 and U+2029; an error at the
            // end of the document may sit on the line after the last.
            let lines = text
                .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                .count()
                + 1;
            for p in &problems.0 {
                let _ = p.to_string();
                if let Some(l) = p.line {
                    prop_assert!(
                        (1..=lines).contains(&l),
                        "problem at line {l} of {lines}: {p}"
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(super::config(
        512,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/config.txt"),
    ))]

    /// Mutations of the seeds: near-valid documents reach validation and the snapshot.
    #[test]
    fn mutated_seeds_load_or_are_refused_cleanly(text in mutated_seed()) {
        check(&text)?;
    }

    /// Arbitrary text, and arbitrary text spliced into a seed.
    #[test]
    fn arbitrary_text_loads_or_is_refused_cleanly(
        text in prop_oneof![
            any::<String>(),
            "[ -~\t\n]{0,200}",
            (any::<prop::sample::Index>(), any::<usize>(), any::<String>()).prop_map(|(i, at, t)| {
                mutate(&i.get(seeds()).1, &[Mutation::InsertText(at, t)])
            }),
        ]
    ) {
        check(&text)?;
    }
}

#[test]
fn every_seed_is_checked_as_it_is() {
    for (name, text) in seeds() {
        check(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

// === regressions: each failure the target found, as it was found ===

const MINIMAL: &str =
    "backends: { blue: { url: 'http://127.0.0.1:18001' } }\nrollout: { stable: blue }\n";

/// A redact pointer with a bad `~` escape passed validation; the comparator refused
/// it, and the snapshot then fell back to rules without any redaction.
#[test]
fn a_pointer_with_a_bad_escape_is_refused() {
    for field in ["redact", "ignore"] {
        let text = format!("{MINIMAL}shadow: {{ compare: {{ {field}: [/secret, \"/a~2\"] }} }}\n");
        let err = parse(&text).expect_err(field);
        assert_eq!(err.0[0].path, format!("shadow.compare.{field}[1]"), "{err}");
        assert_eq!(err.0[0].line, Some(3), "{err}");
    }
    let text = format!("{MINIMAL}shadow: {{ compare: {{ redact: [\"/a~0b~1c\"] }} }}\n");
    check(&text).unwrap();
}

/// `shadow.max_in_flight` above what a semaphore can count panicked when the snapshot
/// was built.
#[test]
fn a_huge_mirror_bound_builds() {
    let text = format!("{MINIMAL}shadow: {{ max_in_flight: 18446744073709551615 }}\n");
    assert!(parse(&text).is_ok());
    check(&text).unwrap();
}

/// A duration too long for an instant was accepted; the data plane adds the backend
/// and header timeouts to the current instant, which panicked.
#[test]
fn a_duration_beyond_any_instant_is_refused() {
    for (field, text) in [
        ("backends.blue.timeout", "backends: { blue: { url: 'http://127.0.0.1:18001', timeout: 300000000000y } }\nrollout: { stable: blue }\n".to_owned()),
        ("limits.header_timeout", format!("{MINIMAL}limits: {{ header_timeout: 300000000000y }}\n")),
        ("rollout.analysis.after_promotion", "backends: { blue: { url: 'http://127.0.0.1:18001' } }\nrollout: { stable: blue, analysis: { after_promotion: 300000000000y } }\n".to_owned()),
    ] {
        let err = parse(&text).expect_err(field);
        assert!(err.0[0].message.contains("at most 100 years"), "{err}");
        assert_eq!(err.0[0].path, field, "{err}");
    }
    check(&format!("{MINIMAL}limits: {{ idle_timeout: 99years }}\n")).unwrap();
}
