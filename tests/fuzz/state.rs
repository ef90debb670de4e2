//! Fuzz target: the rollout state a controller restores at start (`state.path`, read
//! through `switchyard::store` and decoded by `switchyard::rollout::persist`): the same
//! decoding takes another replica's records from etcd.
//!
//! Inputs are arbitrary bytes and byte-level mutations of state files as switchyard
//! writes them (one route at each phase, the one-route form written before routes).
//!
//! Properties:
//! - nothing panics: a controller starts on any file;
//! - every route it publishes stands where its plan allows: a known phase, a step within
//!   the plan, weight and mirror between 0 and 100, and a candidate's weight only while
//!   the rollout runs or has promoted it.

use std::sync::OnceLock;

use proptest::prelude::*;
use switchyard::config::{parse, Config};
use switchyard::rollout::controller::{Action, Controller};

/// One route `iris`, `blue` → `green` in three steps, its state in `path`.
fn config(path: &std::path::Path) -> Config {
    parse(&format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         backends: {{ blue: {{ url: 'http://127.0.0.1:1' }}, green: {{ url: 'http://127.0.0.1:2' }} }}\n\
         state: {{ path: '{}' }}\n\
         rollout: {{ stable: blue, candidate: green, \
         steps: [{{ weight: 10, hold: manual }}, {{ weight: 50, hold: 1m }}, {{ weight: 100 }}] }}\n",
        path.display()
    ))
    .expect("a valid config")
}

/// State files as switchyard writes them, one per phase a route can be in.
fn seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let runtime = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut seeds = Vec::new();
        let all: [&[Action]; 5] = [
            &[],
            &[Action::Promote { full: false }],
            &[Action::Pause {
                reason: Some("checking".into()),
            }],
            &[Action::Rollback { reason: None }],
            &[Action::Promote { full: true }],
        ];
        for (i, actions) in all.into_iter().enumerate() {
            let _ = std::fs::remove_file(&path);
            runtime.block_on(async {
                let store = switchyard::store::open(&config(&path).state);
                let (c, control) = Controller::start(config(&path), None, store).await;
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let run = tokio::spawn(c.run(stopped));
                for action in actions {
                    control
                        .send(action.clone())
                        .await
                        .expect("a control in force");
                }
                let _ = stop.send(true);
                let _ = run.await;
            });
            seeds.push((format!("seed-{i}"), std::fs::read(&path).unwrap()));
        }
        seeds.push((
            "one-route".into(),
            br#"{"route":"default","phase":"paused","step":1}"#.to_vec(),
        ));
        seeds
    })
}

/// Tokens spliced into state files by the byte-level mutations.
const TOKENS: &[&str] = &[
    "\"phase\"",
    "\"step\"",
    "\"progressing\"",
    "\"promoted\"",
    "\"rolled_back\"",
    "\"paused\"",
    "\"safe\"",
    "\"revision\"",
    "\"routes\"",
    "\"route\"",
    "18446744073709551615",
    "-1",
    "1e400",
    "null",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a controller on `bytes` as its state file and checks every route it publishes.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, bytes).unwrap();
    let statuses = runtime().block_on(async {
        let store = switchyard::store::open(&config(&path).state);
        let (c, _control) = Controller::start(config(&path), None, store).await;
        c.published().status.load_full()
    });
    for s in &statuses.routes {
        let known = ["progressing", "paused", "promoted", "rolled_back", "idle"];
        prop_assert!(known.contains(&s.phase.as_str()), "phase {}", s.phase);
        prop_assert!(s.step < s.steps.max(1), "step {} of {}", s.step, s.steps);
        prop_assert!((0.0..=100.0).contains(&s.weight), "weight {}", s.weight);
        prop_assert!((0.0..=100.0).contains(&s.mirror), "mirror {}", s.mirror);
        if s.phase == "rolled_back" {
            prop_assert_eq!(s.weight, 0.0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(super::config(
        256,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/state.txt"),
    ))]

    #[test]
    fn any_bytes_start_a_controller_whose_routes_stand_within_their_plan(
        bytes in prop::collection::vec(any::<u8>(), 0..512)
    ) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_state_files_start_a_controller_whose_routes_stand_within_their_plan(
        bytes in super::mutate::mutated(seeds(), TOKENS)
    ) {
        check(&bytes)?;
    }
}

#[test]
fn the_seeds_restore_what_was_written() {
    let phases: Vec<String> = seeds()
        .iter()
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    assert!(
        phases[1].contains("\"progressing\"") && phases[2].contains("\"paused\""),
        "{phases:?}"
    );
    assert!(
        phases[3].contains("\"rolled_back\"") && phases[4].contains("\"promoted\""),
        "{phases:?}"
    );
}
