//! `switchyard validate` as a user runs it: the real binary on real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The 1-based line of the only line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "`{needle}` should be on exactly one line");
    hits[0]
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

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
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
    let dir = manifest_dir().join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        seen += 1;
        let out = validate(&path);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ok\n",
            "{}:\n{}",
            path.display(),
            printed(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{}", path.display());
    }
    assert!(seen >= 5, "only {seen} examples in {}", dir.display());
}

#[test]
fn long_flag_and_default_path() {
    // `--config` works as well as `-c`.
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "valid.yaml", VALID);
    let out = switchyard(
        manifest_dir(),
        &["validate", "--config", file.to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{}",
        printed(&out)
    );
    assert_eq!(out.status.code(), Some(0));

    // Without a flag it reads config/switchyard.yaml, like `run`.
    let out = switchyard(manifest_dir(), &["validate"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{}",
        printed(&out)
    );
    assert_eq!(out.status.code(), Some(0));
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
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "broken.yaml", &text);
    let out = validate(&file);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    let weight = problem_line(
        &output,
        "rollout.steps[1].weight",
        line_of(&text, "weight: 150"),
    );
    assert!(weight.contains("150"), "{weight}");
    let candidate = problem_line(
        &output,
        "rollout.candidate",
        line_of(&text, "candidate: purple"),
    );
    assert!(candidate.contains("purple"), "{candidate}");
    problem_line(&output, "rollout.sticky", line_of(&text, "sticky:"));
    let calibrate = problem_line(&output, "shadow.calibrate", line_of(&text, "calibrate: 0"));
    assert!(calibrate.contains("above 0"), "{calibrate}");
    let idle = problem_line(
        &output,
        "limits.idle_timeout",
        line_of(&text, "idle_timeout"),
    );
    assert!(idle.contains("more than 0"), "{idle}");
    assert!(output.contains("5 problems"), "{output}");
}

#[test]
fn an_unknown_key_is_reported_with_its_line() {
    let text = VALID.replace("  steps:", "  stpes:");
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "typo.yaml", &text);
    let out = validate(&file);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    let report = problem_line(&output, "rollout", line_of(&text, "stpes:"));
    assert!(report.contains("stpes"), "{report}");
    assert!(report.contains("unknown field"), "{report}");
}

#[test]
fn a_bad_value_is_reported_with_its_line() {
    let text = VALID.replace("hold: 1m", "hold: one minute");
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "bad-duration.yaml", &text);
    let out = validate(&file);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("one minute"), "{output}");
    assert!(
        output.contains(&format!("line {}", line_of(&text, "one minute"))),
        "{output}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("nowhere.yaml");
    let out = validate(&file);
    let output = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("nowhere.yaml"), "{output}");
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
