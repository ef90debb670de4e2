//! A config file is read only once its writes have settled: written in two parts, it is
//! applied once, whole, and the half is never rejected.
//!
//! A test binary of its own: the proof that the half was never rejected is
//! `switchyard_config_reloads_total{result="rejected"}` staying put, a series with no
//! route label that every test of the process having a reload rejected moves (several in
//! tests/it do, on purpose).

#[path = "it/support/mod.rs"]
mod support;

use std::time::Duration;

use support::config::TestConfig;
use support::ProxyHarness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_written_in_two_parts_is_applied_once_whole() {
    let h = ProxyHarness::start(&TestConfig::canary(0.0)).await;
    let rejected = r#"switchyard_config_reloads_total{result="rejected"}"#;
    let before = h.metric(rejected).await;
    let text = h.render(&TestConfig::canary(100.0));
    let (half, rest) = text.split_at(text.len() / 2);
    assert!(
        switchyard::config::parse(half).is_err(),
        "half of it is a config: {half}"
    );
    // Written in place, with a pause in the middle, as a slow editor or a copy would.
    let mut file = std::fs::File::create(&h.config_path).unwrap();
    std::io::Write::write_all(&mut file, half.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    std::io::Write::write_all(&mut file, rest.as_bytes()).unwrap();
    drop(file);
    let s = h
        .wait_status("the whole file applied", |s| s["weight"] == 100.0)
        .await;
    assert_eq!(s["config"]["generation"], 2, "applied more than once");
    assert!(s["config"]["last_error"].is_null(), "{}", s["config"]);
    // Nothing more comes of it: no second reload, and the half was never rejected.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.status().await["config"]["generation"], 2);
    assert_eq!(
        h.metric(rejected).await,
        before,
        "the half-written file was rejected"
    );
}
