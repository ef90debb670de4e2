//! `switchyard baseline` as a user runs it: the real binary on real files, and the written
//! reference read back as `monitor.reference.file` reads it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchyard::monitor::{Bins, Monitor, Reference, ReferenceSettings, Settings};
use switchyard::wire::Exchange;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Runs `switchyard baseline ARGS`.
fn baseline(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("baseline")
        .args(args)
        .output()
        .expect("run switchyard")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A fixed-seed linear congruential generator: the same values on every run and platform.
struct Lcg(u64);

impl Lcg {
    /// A uniform value in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A close-to-normal value: the sum of 12 uniforms, less 6 (mean 0, variance 1).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// The standard normal's deciles 10 % to 90 %.
const NORMAL_DECILES: [f64; 9] = [
    -1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816,
];

// === a CSV table ===

#[test]
fn a_csv_table_gives_its_columns_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let (table, out) = (dir.path().join("train.csv"), dir.path().join("ref.json"));
    let mut rng = Lcg(42);
    let mut xs = Vec::new();
    let mut colours = [0u32; 3];
    let mut text = String::from("x,colour,age\n");
    for i in 0..2000 {
        let x = 10.0 + 2.0 * rng.normal();
        let c = match rng.uniform() {
            u if u < 0.5 => 0,
            u if u < 0.8 => 1,
            _ => 2,
        };
        let age = if i % 10 == 0 {
            String::new()
        } else {
            (20 + i % 50).to_string()
        };
        text.push_str(&format!("{x},{},{age}\n", ["red", "green", "blue"][c]));
        xs.push(x);
        colours[c] += 1;
    }
    std::fs::write(&table, text).unwrap();

    let run = baseline(&["--from", path(&table), "--out", path(&out)]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        stdout(&run).trim_end(),
        format!(
            "wrote {}: 2000 requests, 3 features (2 numeric, 1 categorical), outputs: none; values 200 missing",
            out.display()
        )
    );

    let reference = Reference::load(&out).unwrap();
    assert_eq!(reference.requests, 2000);
    let Bins::Numeric { edges, shares } = &reference.features["x"] else {
        panic!("x is not numeric: {:?}", reference.features["x"]);
    };
    assert_eq!(edges.len(), 9);
    // The edges are the deciles of a uniform sample of 1 024 of the 2 000 values (the
    // builder's reservoir): the rank of each in the whole column is off by about 0.011
    // (one standard deviation), so 0.05 is over four.
    xs.sort_by(f64::total_cmp);
    for (i, edge) in edges.iter().enumerate() {
        let rank = xs.partition_point(|x| x <= edge) as f64 / xs.len() as f64;
        let want = (i + 1) as f64 / 10.0;
        assert!(
            (rank - want).abs() < 0.05,
            "edge {i} = {edge} at rank {rank}"
        );
        // And where the distribution puts it: N(10, 2²) (the sum of 12 uniforms is a
        // close approximation; its own sampling error at 2 000 values is ≈ 0.1 at the ends).
        let expected = 10.0 + 2.0 * NORMAL_DECILES[i];
        assert!(
            (edge - expected).abs() < 0.3,
            "edge {i} = {edge}, want ≈ {expected}"
        );
    }
    // Each bin's share is counted on that sample over its own deciles: a tenth each.
    assert!(shares.iter().all(|s| (s - 0.1).abs() < 0.01), "{shares:?}");

    let Bins::Categorical { shares, other } = &reference.features["colour"] else {
        panic!("colour is not categorical");
    };
    // Categories are counted exactly, every row.
    for (c, name) in ["red", "green", "blue"].iter().enumerate() {
        let want = f64::from(colours[c]) / 2000.0;
        assert!(
            (shares[*name] - want).abs() < 1e-9,
            "{name}: {}",
            shares[*name]
        );
    }
    assert_eq!(*other, 0.0);
    assert_eq!(reference.features["age"].kind().as_str(), "numeric");
}

// === a capture file ===

/// A capture line as the capture writes it.
fn record(route: &str, request: &str, response: &str) -> String {
    format!(
        r#"{{"at":"2025-06-01T12:00:00.000Z","route":"{route}","request_id":"r","backend":"blue","status":200,"latency_ms":3.2,"request":{request},"response":{response}}}"#
    )
}

/// A V2 request of one row of `k` columns.
fn v2_request(row: &[f64]) -> String {
    format!(
        r#"{{"inputs":[{{"name":"input-0","shape":[1,{}],"datatype":"FP64","data":{}}}]}}"#,
        row.len(),
        serde_json::to_string(row).unwrap()
    )
}

/// A V2 answer with one class id.
fn v2_answer(class: u32) -> String {
    format!(
        r#"{{"model_name":"iris","outputs":[{{"name":"predict","shape":[1,1],"datatype":"INT64","data":[{class}]}}]}}"#
    )
}

/// An iris-like row.
fn iris_row(rng: &mut Lcg) -> [f64; 4] {
    [
        5.8 + 0.8 * rng.normal(),
        3.0 + 0.4 * rng.normal(),
        3.8 + 1.7 * rng.normal(),
        1.2 + 0.7 * rng.normal(),
    ]
}

/// A capture of 60 iris records (classes 0, 1, 2 in turn), 5 of another route with six
/// columns, and one malformed line (line 34: after 30 iris records and 3 others).
fn capture_file(dir: &Path) -> std::path::PathBuf {
    let mut rng = Lcg(7);
    let mut lines = Vec::new();
    for i in 0..60 {
        if i == 30 {
            lines.push(r#"{"at":"2025-06-01T12:00:01.000Z","route":"iris","#.to_owned());
        }
        if i % 12 == 5 {
            lines.push(record("other", &v2_request(&[1.0; 6]), &v2_answer(9)));
        }
        let answer = v2_answer(i % 3);
        lines.push(record("iris", &v2_request(&iris_row(&mut rng)), &answer));
    }
    let file = dir.join("capture-20250601T120000Z-000001.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

/// `switchyard baseline` of route `iris` from the capture file written in `dir`: the
/// capture, the reference written, and the run.
fn iris_baseline(dir: &Path) -> (PathBuf, PathBuf, Output) {
    let (capture, out) = (capture_file(dir), dir.join("iris.json"));
    let run = baseline(&[
        "--from",
        path(&capture),
        "--out",
        path(&out),
        "--route",
        "iris",
    ]);
    (capture, out, run)
}

#[test]
fn a_capture_gives_the_routes_features_and_label_bins() {
    let dir = tempfile::tempdir().unwrap();
    let (capture, out, run) = iris_baseline(dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        stdout(&run).trim_end(),
        format!(
            "wrote {}: 60 requests, 4 features (4 numeric, 0 categorical), outputs: label; skipped 1 malformed, 5 of other routes",
            out.display()
        )
    );
    let malformed = format!("{}:34: skipped: not a capture record", capture.display());
    assert!(stderr(&run).contains(&malformed), "{}", stderr(&run));

    let reference = Reference::load(&out).unwrap();
    let names: Vec<&str> = reference.features.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["input-0[0]", "input-0[1]", "input-0[2]", "input-0[3]"]
    );
    let Some(Bins::Categorical { shares, other }) = &reference.outputs.label else {
        panic!("no label bins: {:?}", reference.outputs);
    };
    assert_eq!(shares.keys().collect::<Vec<_>>(), ["0", "1", "2"]);
    assert!(
        shares.values().all(|s| (s - 1.0 / 3.0).abs() < 1e-9),
        "{shares:?}"
    );
    assert_eq!(*other, 0.0);

    // Without --route the other route's six columns come in too.
    let all = dir.path().join("all.json");
    let run = baseline(&["--from", path(&capture), "--out", path(&all)]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("65 requests, 6 features"),
        "{}",
        stdout(&run)
    );
}

#[test]
fn a_monitor_reading_the_written_file_has_its_reference_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out, run) = iris_baseline(dir.path());
    assert!(run.status.success(), "{}", stderr(&run));

    let mut monitor = Monitor::new(Settings {
        reference: ReferenceSettings {
            file: Some(out.clone()),
            ..ReferenceSettings::default()
        },
        ..Settings::default()
    })
    .unwrap();
    let now = Instant::now();
    let report = monitor.report(now, None);
    assert!(report.reference.in_use);
    assert_eq!(report.reference.requests, 60);

    // The names the file holds are the names the monitor gives live V2 columns: a
    // second sample of the same distribution gets a drift figure for every column.
    let mut rng = Lcg(99);
    for i in 0..200 {
        let (request, answer) = (v2_request(&iris_row(&mut rng)), v2_answer(i % 3));
        let exchange = Exchange {
            route: "iris",
            backend: "blue",
            path: "/v2/models/iris/infer",
            status: 200,
            request: request.as_bytes(),
            request_truncated: false,
            answer: answer.as_bytes(),
            answer_truncated: false,
        };
        let payload = monitor.parse(&exchange);
        monitor.observe(&exchange, &payload, now);
    }
    let report = monitor.report(now, None);
    let features = &report.backends[0].features;
    assert_eq!(features.len(), 4);
    for f in features {
        let drift = f.drift.unwrap_or_else(|| panic!("no drift for {}", f.name));
        assert_eq!(drift.samples, 200, "{}", f.name);
    }
}

// === errors ===

#[test]
fn a_missing_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.jsonl");
    let out = dir.path().join("ref.json");
    let run = baseline(&["--from", path(&missing), "--out", path(&out)]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains(path(&missing)), "{}", stderr(&run));
    assert!(!out.exists());
}

#[test]
fn a_file_without_a_usable_row_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref.json");
    let cases = [
        ("header.csv", "a,b\n", "no usable rows"),
        ("empty.csv", "\n\n", "empty"),
        (
            "broken.jsonl",
            "{\"route\":\n[1,2\n",
            "no usable records (2 malformed); line 1:",
        ),
        (
            "hello.jsonl",
            &record("iris", r#"{"hello":"world"}"#, "null"),
            "no feature value and no prediction in 1 requests",
        ),
    ];
    for (name, text, says) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let run = baseline(&["--from", path(&file), "--out", path(&out)]);
        assert_eq!(run.status.code(), Some(1), "{name}");
        let err = stderr(&run);
        assert!(
            err.contains(&format!("{}: ", file.display())),
            "{name}: {err}"
        );
        assert!(err.contains(says), "{name}: {err}");
        assert!(!out.exists(), "{name}");
    }
    // Every record of another route: nothing of the route asked for.
    let capture = capture_file(dir.path());
    let run = baseline(&[
        "--from",
        path(&capture),
        "--out",
        path(&out),
        "--route",
        "nope",
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("no usable records of route nope"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_capture_whose_inputs_were_all_redacted_fails_saying_so() {
    // As `capture: { redact: [/inputs/*/data] }` writes them: every tensor's data hidden,
    // the answers kept.
    let dir = tempfile::tempdir().unwrap();
    let (capture, out) = (
        dir.path().join("redacted.jsonl"),
        dir.path().join("ref.json"),
    );
    let redacted =
        r#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":"[redacted]"}]}"#;
    let lines: Vec<String> = (0..30)
        .map(|i| record("iris", redacted, &v2_answer(i % 3)))
        .collect();
    std::fs::write(&capture, lines.join("\n") + "\n").unwrap();
    let run = baseline(&["--from", path(&capture), "--out", path(&out)]);
    assert_eq!(run.status.code(), Some(1), "{}", stdout(&run));
    let err = stderr(&run);
    for says in [
        "no feature value in 30 requests",
        "30 values were redacted by the capture",
        "/inputs/*/data",
    ] {
        assert!(err.contains(says), "{err}");
    }
    assert!(!out.exists(), "no reference of 0 features is written");
}

#[test]
fn an_unwritable_out_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    std::fs::write(&table, "a\n1\n2\n").unwrap();
    let out = dir.path().join("missing-dir").join("ref.json");
    let run = baseline(&["--from", path(&table), "--out", path(&out)]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains(path(&out)), "{}", stderr(&run));
}
