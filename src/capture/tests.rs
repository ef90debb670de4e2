use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::files::is_log_file;
use super::*;

fn record(id: &str, request: &str, response: &str) -> Record {
    Record {
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_013_300_123),
        request_id: id.into(),
        backend: "blue".into(),
        status: 200,
        latency: Duration::from_micros(12_345),
        request: Body::bytes(request.to_owned()),
        response: Body::bytes(response.to_owned()),
        shadow: None,
    }
}

/// The log's file names in `dir`, oldest first.
fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| is_log_file(n))
        .collect();
    names.sort();
    names
}

/// Every line of every log file in `dir`, oldest first, parsed.
fn lines(dir: &Path) -> Vec<Value> {
    log_files(dir)
        .iter()
        .flat_map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Every byte the log files in `dir` hold.
fn all_bytes(dir: &Path) -> Vec<u8> {
    log_files(dir)
        .iter()
        .flat_map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

fn start(settings: Settings) -> (Capture, RouteCapture, Arc<Counts>) {
    let capture = Capture::start(settings).unwrap();
    let counts = Arc::new(Counts::default());
    let route = capture.route("iris", counts.clone());
    (capture, route, counts)
}

#[test]
fn records_are_written_one_json_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let (capture, iris, counts) = start(Settings::new(dir.path()));
    let mut mirrored = record("r1", r#"{"inputs":[1,2]}"#, r#"{"outputs":[3]}"#);
    mirrored.shadow = Some(Shadow {
        backend: "green".into(),
        status: Some(200),
        response: Body::bytes(r#"{"outputs":[4]}"#),
    });
    assert!(iris.try_send(mirrored));
    assert!(iris.try_send(record("r2", "", "not json at all")));
    let mut failed = record("r3", "[NaN]", "{}");
    failed.shadow = Some(Shadow {
        backend: "green".into(),
        status: None,
        response: Body::default(),
    });
    assert!(iris.try_send(failed));
    capture.flush();

    assert_eq!(
        counts.snapshot(),
        CountsSnapshot {
            written: 3,
            ..CountsSnapshot::default()
        }
    );
    let lines = lines(dir.path());
    assert_eq!(
        lines[0],
        json!({
            "at": "2026-11-30T04:35:00.123Z", "route": "iris", "request_id": "r1",
            "backend": "blue", "status": 200, "latency_ms": 12.345,
            "request": {"inputs": [1, 2]}, "response": {"outputs": [3]},
            "shadow": {"backend": "green", "status": 200, "response": {"outputs": [4]}},
        })
    );
    assert_eq!(lines[1]["request"], Value::Null);
    assert_eq!(
        lines[1]["response"],
        json!("(15 bytes, not JSON: not recorded)")
    );
    assert!(lines[1].get("shadow").is_none(), "not mirrored: no shadow");
    assert_eq!(
        lines[2]["request"],
        json!(["NaN"]),
        "Python's NaN token read"
    );
    assert_eq!(
        lines[2]["shadow"],
        json!({"backend": "green", "status": null, "response": null})
    );
}

#[test]
fn redact_pointers_are_applied_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path());
    settings.redact = vec![
        "/inputs/*/data".into(),
        "/instances/*/card/number".into(),
        "/outputs/embedding".into(),
    ];
    let (capture, iris, counts) = start(settings);
    let request = json!({
        "inputs": [
            {"name": "a", "shape": [2], "data": ["SECRET-A1", "SECRET-A2"]},
            {"name": "b", "data": [[1, "SECRET-B"]]},
        ],
        "instances": [
            {"card": {"number": "SECRET-CARD-1", "country": "NL"}},
            {"card": {"number": "SECRET-CARD-2"}},
        ],
    });
    let shared = Arc::new(request.clone());
    let mut r = record(
        "r1",
        "",
        r#"{"outputs":[{"name":"embedding","data":["SECRET-E"]}]}"#,
    );
    r.request = Body::parsed(request.to_string(), shared.clone());
    r.shadow = Some(Shadow {
        backend: "green".into(),
        status: Some(200),
        response: Body::bytes(r#"{"outputs":[{"name":"embedding","data":["SECRET-S"]}]}"#),
    });
    assert!(iris.try_send(r));
    // Not JSON: redaction cannot reach inside, so none of it is written.
    assert!(iris.try_send(record("r2", "SECRET-RAW,1,2", "{}")));
    capture.flush();

    assert_eq!(counts.snapshot().written, 2);
    let bytes = all_bytes(dir.path());
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains("SECRET"),
        "a redacted value reached the file: {text}"
    );
    let lines = lines(dir.path());
    assert_eq!(
        lines[0]["request"]["inputs"][0]["data"],
        json!("[redacted]")
    );
    assert_eq!(
        lines[0]["request"]["inputs"][1]["data"],
        json!("[redacted]")
    );
    assert_eq!(lines[0]["request"]["inputs"][0]["shape"], json!([2]));
    assert_eq!(
        lines[0]["request"]["instances"][0]["card"],
        json!({"number": "[redacted]", "country": "NL"})
    );
    assert_eq!(
        lines[0]["response"]["outputs"][0],
        json!("[redacted]"),
        "a V2 output named by the pointer is redacted whole"
    );
    assert_eq!(
        lines[0]["shadow"]["response"]["outputs"][0],
        json!("[redacted]")
    );
    assert_eq!(*shared, request, "the shared parsed form is left as it was");
}

#[test]
fn files_rotate_by_size_and_the_oldest_beyond_keep_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "kept").unwrap();
    std::fs::write(dir.path().join("capture-old.jsonl"), "kept").unwrap();
    let mut settings = Settings::new(dir.path());
    settings.max_file = 600;
    settings.keep = 3;
    let (capture, iris, counts) = start(settings);
    for i in 0..40 {
        assert!(iris.try_send(record(&format!("r{i:02}"), "{}", "{}")));
    }
    capture.flush();

    assert_eq!(counts.snapshot().written, 40);
    let names = log_files(dir.path());
    assert_eq!(names.len(), 3, "{names:?}");
    let mut last: Option<i32> = None;
    for name in &names {
        let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(len <= 600, "{name} has {len} bytes");
        // Sorted by name is sorted by age: the ids go up across the files.
        for line in std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
        {
            let v: Value = serde_json::from_str(line).unwrap();
            let id: i32 = v["request_id"].as_str().unwrap()[1..].parse().unwrap();
            assert!(last.is_none_or(|l| id == l + 1), "{id} after {last:?}");
            last = Some(id);
        }
    }
    assert_eq!(last, Some(39), "the newest record is in the newest file");
    assert_ne!(
        lines(dir.path())[0]["request_id"],
        "r00",
        "the oldest are gone"
    );
    // Files that are not the log's are never deleted.
    assert!(dir.path().join("notes.txt").exists());
    assert!(dir.path().join("capture-old.jsonl").exists());
}

#[test]
fn a_record_larger_than_max_file_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path());
    settings.max_file = 100;
    let (capture, iris, counts) = start(settings);
    let big = format!("[{}]", vec!["1"; 200].join(","));
    assert!(iris.try_send(record("big", &big, "{}")));
    assert!(iris.try_send(record("small", "{}", "{}")));
    capture.flush();
    assert_eq!(counts.snapshot().written, 2);
    assert_eq!(log_files(dir.path()).len(), 2);
}

#[test]
fn an_unwritable_directory_counts_errors_and_never_blocks_or_panics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    // A directory below a regular file cannot be made, whoever runs the test.
    let (capture, iris, counts) = start(Settings::new(file.join("capture")));
    for i in 0..100 {
        assert!(iris.try_send(record(&format!("r{i}"), "{}", "{}")));
    }
    capture.flush();
    assert_eq!(
        counts.snapshot(),
        CountsSnapshot {
            written: 0,
            dropped: 0,
            error: 100,
        }
    );
}

#[test]
fn a_full_queue_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path());
    settings.queue = 2;
    // The writer is not running yet: nothing leaves the queue.
    let (capture, writer) = Capture::unstarted(settings).unwrap();
    let counts = Arc::new(Counts::default());
    let iris = capture.route("iris", counts.clone());
    assert!(iris.try_send(record("r1", "{}", "{}")));
    assert!(iris.try_send(record("r2", "{}", "{}")));
    assert!(!iris.try_send(record("r3", "{}", "{}")));
    assert_eq!(counts.snapshot().dropped, 1);

    writer::spawn(writer);
    capture.flush();
    assert_eq!(
        counts.snapshot(),
        CountsSnapshot {
            written: 2,
            dropped: 1,
            error: 0,
        }
    );
}

#[test]
fn the_byte_budget_drops_what_would_overflow_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path());
    settings.queue_bytes = 2 * RECORD_OVERHEAD + 100;
    let (capture, writer) = Capture::unstarted(settings).unwrap();
    let counts = Arc::new(Counts::default());
    let iris = capture.route("iris", counts.clone());
    let body = "x".repeat(60);
    assert!(iris.try_send(record("r1", &body, "")));
    assert!(
        !iris.try_send(record("r2", &body, "")),
        "over the byte budget"
    );
    assert!(
        iris.try_send(record("r3", "", "")),
        "a small one still fits"
    );
    writer::spawn(writer);
    capture.flush();
    assert_eq!(counts.snapshot().written, 2);
    assert_eq!(counts.snapshot().dropped, 1);
    // Taken off the queue: the budget is free again.
    assert!(iris.try_send(record("r4", &body, "")));
}

#[test]
fn records_after_the_writer_is_gone_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (capture, writer) = Capture::unstarted(Settings::new(dir.path())).unwrap();
    drop(writer);
    let counts = Arc::new(Counts::default());
    let iris = capture.route("iris", counts.clone());
    assert!(!iris.try_send(record("r1", "{}", "{}")));
    capture.flush();
    assert_eq!(counts.snapshot().dropped, 1);
}

#[test]
fn bad_redact_pointers_keep_the_log_from_starting() {
    let mut settings = Settings::new("unused");
    settings.redact = vec!["/ok".into(), "no-slash".into()];
    let err = Capture::start(settings).err().unwrap();
    assert_eq!(err.0.len(), 1);
    assert!(err.0[0].starts_with("redact[1]: "), "{err}");
}

#[test]
fn file_names_sort_by_time() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_013_300);
    assert_eq!(files::stamp(t), "20261130T043500Z");
    let a = format!("capture-{}-000009.jsonl", files::stamp(t));
    let b = format!(
        "capture-{}-000001.jsonl",
        files::stamp(t + Duration::from_secs(1))
    );
    assert!(is_log_file(&a) && is_log_file(&b));
    assert!(a < b);
    for other in [
        "capture-old.jsonl",
        "capture-20261130T043500Z-.jsonl",
        "x.jsonl",
    ] {
        assert!(!is_log_file(other), "{other}");
    }
}
