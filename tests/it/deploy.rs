//! The deploy/ folder against the running proxy: every metric the alert rules and the
//! Grafana dashboard use is one switchyard exports (so renaming a metric breaks this
//! test, not a production alert), and the Kubernetes ConfigMap holds a valid config.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::config::{step, Analysis, TestConfig};
use support::{eventually_within, ProxyHarness};

/// Files under deploy/`dir` whose names end with `suffix`.
fn deploy_files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{suffix} in {}", dir.display());
    files
}

/// Every query string in a rules file or a dashboard: the values of `expr` (rules,
/// panel targets, annotations), `query` and `definition` (template variables).
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if ["expr", "query", "definition"].contains(&k.as_str()) => {
                        out.push(s.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `switchyard_[a-z_]+` names in `text`.
fn metric_names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.match_indices("switchyard_").map(|(at, _)| {
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect()
    })
}

/// Metric name → the file that uses it, over the alert rules and the dashboards.
fn used_metrics() -> BTreeMap<String, String> {
    let mut used = BTreeMap::new();
    let rules = deploy_files("prometheus", ".rules.yaml");
    for file in rules.iter().chain(&deploy_files("grafana", ".json")) {
        let text = std::fs::read_to_string(file).unwrap();
        // YAML is a superset of JSON: one parser reads both.
        let doc: Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut found = Vec::new();
        queries(&doc, &mut found);
        assert!(!found.is_empty(), "no queries in {}", file.display());
        for name in found.iter().flat_map(|q| metric_names(q)) {
            let file = file.file_name().unwrap().to_string_lossy().into_owned();
            used.entry(name).or_insert(file);
        }
    }
    used
}

/// The sample names of a Prometheus text scrape (histograms as `_bucket`, `_sum`,
/// `_count`, which is how queries name them too).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// A V2 request with three features; values depend on `i`.
fn infer_body(i: usize) -> String {
    let x = (i % 17) as f64 / 10.0;
    format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,3],"datatype":"FP32","data":[{x},{},{}]}}]}}"#,
        x * 2.0,
        i % 5
    )
}

/// Twenty requests (half on the candidate, the rest mirrored to it), then labels for
/// them, so every observer has something to show.
async fn traffic(h: &ProxyHarness, round: usize) {
    let mut labels = Vec::new();
    for i in 0..20 {
        let id = format!("r{round}-{i}");
        let headers = [
            ("content-type", "application/json"),
            ("x-request-id", id.as_str()),
            ("x-user-id", id.as_str()),
        ];
        let a = h
            .send(Method::POST, "/v2/models/m/infer", &headers, &infer_body(i))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        labels.push(json!({ "request_id": id, "label": "wrong" }));
    }
    let body = json!({ "feedback": labels }).to_string();
    let posted = h.admin(Method::POST, "/api/v1/feedback", None, &body).await;
    assert_eq!(posted.status, StatusCode::OK, "{:?}", posted.body);
}

/// What of `used` a fresh scrape of `h` lacks, as "name (file)".
async fn missing(h: &ProxyHarness, used: &BTreeMap<String, String>) -> Vec<String> {
    let have = exported(&h.metrics_text().await);
    used.iter()
        .filter(|(name, _)| !have.contains(*name))
        .map(|(name, file)| format!("{name} (in {file})"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboards_use_only_metrics_switchyard_exports() {
    let used = used_metrics();
    let dir = tempfile::tempdir().unwrap();
    // A rollout mid-canary with mirroring, gates, monitoring, capture and feedback on:
    // every family of series the deploy files query.
    let config = TestConfig::new()
        .steps([step(50.0).mirror(100.0).manual(), step(100.0)])
        // Each request is its own user: judged, however many one address sends.
        .sticky_header("x-user-id")
        .compare_protocol("auto")
        .analysis(Analysis::new("1s", "10s", 1, 100))
        .gate_error_rate(0.5)
        .gate_shadow_agreement(0.0)
        .monitor(json!({ "sample": 100, "reference": { "from": "stable", "requests": 20 } }))
        .capture(json!({ "path": dir.path(), "sample": 100 }))
        .feedback(json!({ "retain": "1h" }));
    let h = ProxyHarness::start(&config).await;

    // Rollbacks and rejected reloads exist once one has happened: those come last,
    // since a rollback stops the candidate's traffic.
    let after_traffic = [
        "switchyard_rollbacks_total",
        "switchyard_config_reloads_total",
    ];
    let mut round = 0;
    eventually_within(
        "the traffic series",
        Duration::ZERO,
        Duration::from_secs(30),
        || {
            round += 1;
            let h = &h;
            let used = &used;
            async move {
                traffic(h, round).await;
                let lacking = missing(h, used).await;
                match lacking
                    .iter()
                    .all(|m| after_traffic.iter().any(|a| m.starts_with(a)))
                {
                    true => Ok(()),
                    false => Err(format!("missing from /metrics: {lacking:?}")),
                }
            }
        },
    )
    .await;

    let rolled_back = h.admin(Method::POST, "/api/v1/rollback", None, "{}").await;
    assert_eq!(rolled_back.status, StatusCode::OK, "{:?}", rolled_back.body);
    std::fs::write(&h.config_path, "listen: [not a config").unwrap();
    eventually_within(
        "every used metric",
        Duration::from_millis(50),
        Duration::from_secs(10),
        || async {
            match missing(&h, &used).await {
                lacking if lacking.is_empty() => Ok(()),
                lacking => Err(format!("missing from /metrics: {lacking:?}")),
            }
        },
    )
    .await;
}

#[test]
fn the_kubernetes_config_map_holds_a_valid_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml");
    let map: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let config = map["data"]["switchyard.yaml"]
        .as_str()
        .expect("data.switchyard.yaml");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.yaml");
    std::fs::write(&file, config).unwrap();
    // The admin listens beyond loopback there, which needs a token: the Secret's, in the pod.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "-c"])
        .arg(&file)
        .env("SWITCHYARD_ADMIN_TOKEN", "a-token-from-the-secret")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.trim(), "ok");
}

/// Under systemd or Kubernetes the log is a file or a journal, not a terminal: it carries
/// no colour codes.
#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0 }\n\
         backends: { blue: { url: 'http://127.0.0.1:9' } }\n\
         rollout: { stable: blue }\nstate: { path: null }\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let serving = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(30)).ok())
        .find(|l| l.contains("switchyard is serving"));
    let _ = child.kill();
    let _ = child.wait();
    let line = serving.expect("a line saying switchyard is serving");
    assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    assert!(line.contains("INFO"), "{line}");
}
