//! Fuzz target: the reader of `switchyard baseline` (`monitor::baseline::from_capture`
//! and `from_csv`, through their `_limited` forms so that a line over the cap costs a
//! few hundred bytes, not 4 MiB).
//!
//! Inputs are capture files whose lines are records holding the payload target's
//! hostile requests and answers (overflowing shapes, huge choice indexes, ragged
//! tensors), records of other routes or with a redacted request, lines that are not
//! records, blank and CRLF lines, and lines longer than the cap; CSV tables with quoted
//! cells spanning lines, ragged rows and rows longer than the cap; and arbitrary bytes.
//! Each is read through a `BufReader` of 1 to 64 bytes, so lines cross its buffer.
//!
//! Properties:
//! - nothing panics;
//! - a capture line longer than the cap is skipped and counted: `too_long` is exactly
//!   the number of such lines, and every line is counted once at most (read, of another
//!   route, redacted, without a request, malformed or too long);
//! - a CSV row longer than the cap (without quotes: a line) is skipped and counted
//!   exactly, and a header that long is refused;
//! - a reference holds at most `max_features` (256) features.

use std::io::BufReader;

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard::monitor::baseline::{from_capture_limited, from_csv_limited, Summary};
use switchyard::monitor::Reference;

/// One line of a capture file.
fn capture_line() -> BoxedStrategy<String> {
    let record = |route: &str, request: String, response: String| {
        format!(
            r#"{{"at":"2025-01-01T00:00:00.000Z","route":"{route}","request_id":"r","backend":"blue","status":200,"latency_ms":1.0,"request":{request},"response":{response}}}"#
        )
    };
    let json_or_string = |b: Vec<u8>| match serde_json::from_slice::<Value>(&b) {
        Ok(v) => v.to_string(),
        Err(_) => json!(String::from_utf8_lossy(&b)).to_string(),
    };
    prop_oneof![
        6 => (super::payload::exchange(), prop::sample::select(vec!["iris", "other"]))
            .prop_map(move |((_, q, a), route)| record(route, json_or_string(q), json_or_string(a))),
        1 => Just(record("iris", r#""[redacted]""#.into(), "null".into())),
        1 => Just(String::new()),
        1 => "[ -~]{0,40}",
        1 => (1usize..600).prop_map(move |n| record("iris", format!(r#"{{"instances":[{}1]}}"#, "1,".repeat(n)), "null".into())),
        1 => (1usize..600).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// A capture file: its lines, joined by `\n` or `\r\n`, with or without a last newline.
fn capture_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(capture_line(), 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, last)| {
            let mut text = lines.join(if crlf { "\r\n" } else { "\n" });
            if last {
                text.push('\n');
            }
            text.into_bytes()
        })
}

/// Lines of `bytes` (split at `\n`; a last empty piece is no line).
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut all: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if all.last().is_some_and(|l| l.is_empty()) {
        all.pop();
    }
    all
}

/// Every line is counted once at most, whatever became of it.
fn accounted(s: &Summary, lines: usize) -> Result<(), TestCaseError> {
    let counted =
        s.requests + s.other_route + s.redacted + s.unparseable + s.malformed + s.too_long;
    prop_assert!(
        counted <= lines as u64,
        "{counted} counted of {lines} lines: {s:?}"
    );
    prop_assert!(s.problems.len() <= 5);
    Ok(())
}

fn small(reference: &Reference) -> Result<(), TestCaseError> {
    prop_assert!(reference.features.len() <= 256);
    Ok(())
}

/// A CSV table of simple cells (no quotes): header, rows, some long.
fn csv_table() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        3 => "[0-9]{1,3}(\\.[0-9])?",
        2 => "[a-z]{0,5}",
        1 => (1usize..400).prop_map(|n| "9".repeat(n)),
    ];
    let row = prop::collection::vec(cell, 1..4).prop_map(|c| c.join(","));
    (prop::collection::vec(row, 1..10), any::<bool>()).prop_map(|(rows, last)| {
        let mut text = format!("a,b,c\n{}", rows.join("\n"));
        if last {
            text.push('\n');
        }
        text.into_bytes()
    })
}

/// A CSV table with quoted cells, which may span lines and hold quotes.
fn quoted_table() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        2 => "[a-z0-9]{0,6}",
        1 => "[a-z\n\",]{0,12}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        1 => "[\"a\n,]{0,8}",
    ];
    let row = prop::collection::vec(cell, 1..4).prop_map(|c| c.join(","));
    prop::collection::vec(row, 0..10)
        .prop_map(|rows| format!("h1,h2\n{}\n", rows.join("\n")).into_bytes())
}

proptest! {
    #![proptest_config(super::config(
        512,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/baseline.txt"),
    ))]

    /// A capture file of anything is read without panic; long lines are skipped and counted.
    #[test]
    fn capture_files_read_within_the_line_cap(
        file in prop_oneof![4 => capture_file(), 1 => prop::collection::vec(any::<u8>(), 0..256)],
        cap in 16usize..1024,
        chunk in 1usize..64,
        route in prop::option::of(Just("iris")),
    ) {
        let lines = lines(&file);
        let long = lines.iter().filter(|l| l.len() > cap).count() as u64;
        match from_capture_limited(BufReader::with_capacity(chunk, &file[..]), route, cap) {
            Ok((reference, s)) => {
                prop_assert_eq!(s.too_long, long);
                accounted(&s, lines.len())?;
                small(&reference)?;
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                // Nothing usable: the reasons say the long lines were skipped.
                if long > 0 && e.starts_with("no usable") {
                    prop_assert!(e.contains(&format!("{long} too long")), "{e}");
                }
            }
        }
    }

    /// A CSV table is read without panic; rows over the cap are skipped and counted.
    #[test]
    fn csv_tables_read_within_the_row_cap(
        table in csv_table(),
        cap in 8usize..512,
        chunk in 1usize..64,
    ) {
        let lines = lines(&table);
        let header_long = lines[0].len() > cap;
        let long = lines[1..].iter().filter(|l| l.len() > cap).count() as u64;
        match from_csv_limited(BufReader::with_capacity(chunk, &table[..]), cap) {
            Ok((reference, s)) => {
                prop_assert!(!header_long);
                prop_assert_eq!(s.too_long, long);
                accounted(&s, lines.len() - 1)?;
                small(&reference)?;
            }
            Err(e) if header_long => prop_assert!(e.contains("header row is longer"), "{e}"),
            Err(e) => prop_assert!(e.contains("no usable rows") || e.contains("no feature value"), "{e}"),
        }
    }

    /// Quoted cells, stray quotes and arbitrary bytes never make the CSV reader panic.
    #[test]
    fn any_csv_reads_without_panic(
        table in prop_oneof![2 => quoted_table(), 1 => prop::collection::vec(any::<u8>(), 0..256)],
        cap in 4usize..256,
        chunk in 1usize..64,
    ) {
        if let Ok((reference, s)) = from_csv_limited(BufReader::with_capacity(chunk, &table[..]), cap) {
            small(&reference)?;
            prop_assert!(s.too_long <= lines(&table).len() as u64);
        }
    }
}
