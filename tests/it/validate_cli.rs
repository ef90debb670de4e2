//! `switchyard validate` as a user runs it: the real binary on real files.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

use support::config::{examples, line_of};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `switchyard ARGS` in `dir`, with no admin token in the environment.
fn switchyard(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .expect("run switchyard")
}

fn validate(file: &Path) -> Output {
    switchyard(manifest_dir(), &["validate", "-c", file.to_str().unwrap()])
}

/// Everything the command printed, stdout then stderr.
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `output` reports `path` at the line of `text` that contains `on_line`, in
/// a report that says each of `says`.
fn assert_reported(output: &str, text: &str, path: &str, on_line: &str, says: &[&str]) {
    let report = problem_line(output, path, line_of(text, on_line));
    for s in says {
        assert!(
            report.contains(s),
            "`{path}` report does not say `{s}`: {report}"
        );
    }
}

/// The printed line that reports `path`, which must also name `line N`.
fn problem_line<'a>(output: &'a str, path: &str, line: usize) -> &'a str {
    let report = output
        .lines()
        .find(|l| l.trim_start().starts_with(path))
        .unwrap_or_else(|| panic!("no problem reported for `{path}`:\n{output}"));
    assert!(
        report.contains(&format!("line {line}")),
        "`{path}` should be reported at line {line}:\n{output}"
    );
    report
}

/// Validates `text`, written to a file called `name`.
fn validate_text(name: &str, text: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, text).unwrap();
    validate(&path)
}

/// Asserts that a validation passed: `ok` and exit code 0; `what` names the file.
fn assert_ok(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "ok\n", "{what}:\n{}", printed(out));
    assert_eq!(out.status.code(), Some(0), "{what}");
}

/// Asserts that a validation failed: exit code 1 and no `ok`; everything it printed.
fn assert_rejected(out: &Output) -> String {
    let output = printed(out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    output
}

const VALID: &str = "\
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
    - { weight: 25, hold: 1m }
    - { weight: 100 }
";

#[test]
fn every_example_is_ok() {
    let files = examples();
    assert!(files.len() >= 5, "only {} examples: {files:?}", files.len());
    for path in files {
        assert_ok(&validate(&path), &path.display().to_string());
    }
}

#[test]
fn long_flag_and_default_path() {
    // `--config` works as well as `-c`.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("valid.yaml");
    std::fs::write(&file, VALID).unwrap();
    let out = switchyard(
        manifest_dir(),
        &["validate", "--config", file.to_str().unwrap()],
    );
    assert_ok(&out, "--config valid.yaml");

    // Without a flag it reads config/switchyard.yaml, like `run`.
    assert_ok(
        &switchyard(manifest_dir(), &["validate"]),
        "config/switchyard.yaml",
    );
}

#[test]
fn every_semantic_problem_is_reported_with_its_path_and_line() {
    let text = VALID
        .replace("candidate: green", "candidate: purple")
        .replace("- { weight: 25, hold: 1m }", "- { weight: 150, hold: 1m }")
        .replace(
            "  stable: blue\n",
            "  stable: blue\n  sticky: { header: x-user-id, cookie: sid }\n",
        )
        + "shadow:\n  calibrate: 0\nlimits:\n  idle_timeout: 0s\n";
    let output = assert_rejected(&validate_text("broken.yaml", &text));

    // (the problem's path, the text on its line, what its report says)
    let expected = [
        ("rollout.steps[1].weight", "weight: 150", &["150"][..]),
        ("rollout.candidate", "candidate: purple", &["purple"]),
        ("rollout.sticky", "sticky:", &[]),
        ("shadow.calibrate", "calibrate: 0", &["above 0"]),
        ("limits.idle_timeout", "idle_timeout", &["more than 0"]),
    ];
    for (path, on_line, says) in expected {
        assert_reported(&output, &text, path, on_line, says);
    }
    assert!(output.contains("5 problems"), "{output}");
}

#[test]
fn the_etcd_store_and_fleet_settings_are_checked_with_their_field_and_line() {
    let text = VALID.to_string()
        + "state:\n  store: etcd\n  etcd:\n    endpoints: [127.0.0.1:2379, http://etcd-0:2379]\n    prefix: switchyard/prod\n    lease_ttl: 500ms\n    timeout: 0s\nfleet:\n  replica: ''\n  advertise: ftp://10.0.0.7:9901\n";
    let output = assert_rejected(&validate_text("fleet.yaml", &text));

    // (the problem's path, the text on its line, what its report says)
    let expected = [
        ("state.etcd.endpoints[0]", "endpoints:", &["http://"][..]),
        ("state.etcd.prefix", "prefix:", &["start with `/`"]),
        ("state.etcd.lease_ttl", "lease_ttl", &["at least 1s"]),
        ("state.etcd.timeout", "timeout: 0s", &["more than 0"]),
        ("fleet.replica", "replica:", &["host name"]),
        ("fleet.advertise", "advertise:", &["http://"]),
    ];
    for (path, on_line, says) in expected {
        assert_reported(&output, &text, path, on_line, says);
    }
    assert!(output.contains("6 problems"), "{output}");

    // etcd without its settings says what it needs.
    let text = VALID.to_string() + "state: { store: etcd }\n";
    let output = assert_rejected(&validate_text("no-etcd.yaml", &text));
    assert!(
        output.contains("state.etcd") && output.contains("endpoints"),
        "{output}"
    );
}

#[test]
fn a_routes_problem_names_the_route_its_field_and_line() {
    let example = std::fs::read_to_string(manifest_dir().join("config/multi-model.yaml")).unwrap();
    let text = example
        .replace("candidate: iris-v2", "candidate: iris-v3")
        .replace("path_prefix: /v2", "path_prefix: v2")
        .replace("name: rest", "name: Rest")
        .replace("    match: { model: iris }\n", "")
        + "rollout: { stable: iris-v1 }\n";
    let output = assert_rejected(&validate_text("routes.yaml", &text));

    // (the problem's path, the text on its line, what its report says)
    let expected = [
        (
            "routes[0].rollout.candidate",
            "iris-v3",
            &["iris-v3", "not a backend"][..],
        ),
        ("routes[0].match", "name: iris", &["only the last route"]),
        (
            "routes[1].match.path_prefix",
            "path_prefix",
            &["start with `/`"],
        ),
        ("routes[3].name", "Rest", &["not a route name"]),
    ];
    for (path, on_line, says) in expected {
        assert_reported(&output, &text, path, on_line, says);
    }
    // `routes` itself (the trailing space tells it from its entries), at its key.
    let routes_key = 1 + text.lines().position(|l| l.starts_with("routes:")).unwrap();
    let both = problem_line(&output, "routes ", routes_key);
    for says in ["`rollout:`", "`routes:`", "never both"] {
        assert!(both.contains(says), "{both}");
    }
    assert!(output.contains("5 problems"), "{output}");
}

#[test]
fn an_unknown_key_is_reported_with_its_line() {
    let text = VALID.replace("  steps:", "  stpes:");
    let output = assert_rejected(&validate_text("typo.yaml", &text));
    assert_reported(
        &output,
        &text,
        "rollout",
        "stpes:",
        &["stpes", "unknown field"],
    );
}

#[test]
fn a_bad_value_is_reported_with_its_line() {
    let text = VALID.replace("hold: 1m", "hold: one minute");
    let output = assert_rejected(&validate_text("bad-duration.yaml", &text));
    assert!(output.contains("one minute"), "{output}");
    assert!(
        output.contains(&format!("line {}", line_of(&text, "one minute"))),
        "{output}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let output = assert_rejected(&validate(&tmp.path().join("nowhere.yaml")));
    assert!(output.contains("nowhere.yaml"), "{output}");
}

#[test]
fn a_gate_without_what_it_reads_is_reported_at_the_gate() {
    let text = VALID.to_string()
        + "  analysis:\n    gates:\n      accuracy: { min: 0.9 }\n      output_drift: { max: 0.2 }\nmonitor:\n  sample: 0\n";
    let output = assert_rejected(&validate_text("gates.yaml", &text));
    assert_reported(
        &output,
        &text,
        "rollout.analysis.gates.accuracy",
        "accuracy:",
        &["`feedback:`", "labels"],
    );
    assert_reported(
        &output,
        &text,
        "rollout.analysis.gates.output_drift",
        "output_drift:",
        &["monitor.sample"],
    );

    // With labels and monitoring, the same gates are fine.
    let text = text.replace("sample: 0", "sample: 10") + "feedback: { retain: 1h }\n";
    assert_ok(&validate_text("gates.yaml", &text), "gates with feedback");
}

#[test]
fn a_client_share_outside_zero_to_one_is_reported_at_its_line() {
    for share in ["0", "1.5"] {
        let text = VALID.to_string() + &format!("  analysis:\n    max_client_share: {share}\n");
        let output = assert_rejected(&validate_text("share.yaml", &text));
        assert_reported(
            &output,
            &text,
            "rollout.analysis.max_client_share",
            "max_client_share",
            &["at most 1", share],
        );
    }
    let text = VALID.to_string() + "  analysis:\n    max_client_share: 1\n";
    assert_ok(
        &validate_text("share.yaml", &text),
        "a share of 1: no bound",
    );
}

#[test]
fn every_type_problem_is_reported_at_once_in_user_words() {
    let text = VALID
        .replace(
            "url: http://127.0.0.1:18002",
            "url: http://127.0.0.1:18002\n    max_connections: lots",
        )
        .replace("- { weight: 25, hold: 1m }", "- { weight: 25, hold: forever }")
        .replace("  steps:", "  stpes: []\n  steps:")
        + "  analysis:\n    gates:\n      error_rate:\n        max: 1%\ncapture:\n  path: captured\n  max_file: huge\n";
    let output = assert_rejected(&validate_text("types.yaml", &text));

    // (the problem's path, the text on its line, what its report says)
    let expected = [
        (
            "backends.green.max_connections",
            "lots",
            &["expected a whole number such as 10, got `lots`"][..],
        ),
        (
            "rollout.stpes",
            "stpes",
            &["unknown field `stpes`", "did you mean `steps`?"],
        ),
        (
            "rollout.steps[1].hold",
            "forever",
            &["expected a duration such as 500ms, 10s, 2m or 1h, or `manual`, got `forever`"],
        ),
        (
            "rollout.analysis.gates.error_rate.max",
            "1%",
            &["expected a number such as 0.01, got `1%`"],
        ),
        (
            "capture.max_file",
            "huge",
            &["expected a size such as 512KiB, 4MiB or a number of bytes, got `huge`"],
        ),
    ];
    for (path, on_line, says) in expected {
        assert_reported(&output, &text, path, on_line, says);
    }
    assert!(output.contains("5 problems"), "{output}");
    // Not Rust's words: no type names, no parser offsets.
    for rust in ["f64", "usize", "u64", "invalid type", "expected number at"] {
        assert!(!output.contains(rust), "says `{rust}`:\n{output}");
    }
    assert!(
        output.contains("the values' own checks") && output.contains("run once these are fixed"),
        "{output}"
    );
}

#[test]
fn a_yaml_syntax_error_is_explained_at_its_line() {
    let text = VALID.replace("  steps:", "\tsteps:");
    let output = assert_rejected(&validate_text("tab.yaml", &text));
    let line = line_of(&text, "\tsteps:");
    assert!(
        output.contains(&format!(
            "(line {line}): the YAML cannot be read: a tab where YAML needs spaces"
        )),
        "{output}"
    );
    assert!(
        output.contains("reading stopped at the last problem: fix it to see any after it"),
        "{output}"
    );
}

#[test]
fn a_reference_file_that_can_measure_no_drift_is_a_warning_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    // A reference built from a capture whose inputs were all redacted: no features.
    let empty = tmp.path().join("empty.json");
    std::fs::write(&empty, r#"{"version": 1, "requests": 50}"#).unwrap();
    // A reference built from a capture: V2 column names, none of the configured ones.
    let captured = tmp.path().join("captured.json");
    std::fs::write(
        &captured,
        r#"{"version": 1, "features": {"input-0[0]": {"kind": "numeric", "edges": [1.0], "shares": [0.5, 0.5]}}}"#,
    )
    .unwrap();
    let cases = [
        (format!("monitor: {{ reference: {{ file: '{}' }} }}\n", empty.display()), "has no input features"),
        (
            format!(
                "monitor:\n  features: [{{ name: sepal_length, input: input-0, column: 0 }}]\n  reference: {{ file: '{}' }}\n",
                captured.display()
            ),
            "shares no feature name with monitor.features",
        ),
    ];
    for (monitor, says) in cases {
        let out = validate_text("warned.yaml", &format!("{VALID}{monitor}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ok(&out, &monitor);
        let warning = stderr
            .lines()
            .find(|l| l.starts_with("warning: monitor.reference.file"))
            .unwrap_or_else(|| panic!("no warning for {monitor}:\n{}", printed(&out)));
        assert!(warning.contains(says), "{warning}");
    }
    // A reference that names a configured feature: no warning.
    let named = tmp.path().join("named.json");
    std::fs::write(
        &named,
        r#"{"version": 1, "features": {"sepal_length": {"kind": "numeric", "edges": [1.0], "shares": [0.5, 0.5]}}}"#,
    )
    .unwrap();
    let monitor = format!(
        "monitor:\n  features: [{{ name: sepal_length, input: input-0, column: 0 }}]\n  reference: {{ file: '{}' }}\n",
        named.display()
    );
    let out = validate_text("named.yaml", &format!("{VALID}{monitor}"));
    assert_ok(&out, "a named feature");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no warning");
}

#[test]
fn a_reference_file_that_does_not_read_is_a_problem_at_its_line_beside_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let unreadable = tmp.path().join("reference.json");
    std::fs::write(&unreadable, "not a reference").unwrap();
    let text = format!(
        "{VALID}monitor:\n  protocol: bytes\n  reference: {{ file: '{}' }}\n",
        unreadable.display()
    );
    let output = assert_rejected(&validate_text("reference.yaml", &text));
    assert!(output.contains("2 problems"), "{output}");
    assert_reported(
        &output,
        &text,
        "monitor (",
        "monitor:",
        &["protocol: bytes is for comparing answers"],
    );
    assert_reported(
        &output,
        &text,
        "monitor.reference.file",
        "reference:",
        &["reference.json"],
    );
}
