//! The controller on a [`MemoryStore`]: what it restores, puts aside and writes.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::{Action, Controller};
use crate::config::{parse, Config};
use crate::rollout::Status;
use crate::store::{MemoryStore, Record, Revision, Store, Unreadable, Write};

/// Routes `names`, each `blue` → `green` held at 25 % until a promote.
fn config(names: &[&str]) -> Config {
    let mut yaml = String::from(
        "listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0 }\n\
         backends: { blue: { url: 'http://127.0.0.1:1' }, green: { url: 'http://127.0.0.1:2' } }\n\
         routes:\n",
    );
    for name in names {
        yaml += &format!(
            "  - {{ name: {name}, match: {{ path_prefix: /{name}/ }}, rollout: {{ stable: blue, candidate: green, steps: [{{ weight: 25, hold: manual }}, {{ weight: 100 }}] }} }}\n"
        );
    }
    parse(&yaml).unwrap()
}

async fn start(names: &[&str], store: &MemoryStore) -> Controller {
    let store: Arc<dyn Store> = Arc::new(store.clone());
    Controller::start(config(names), None, Some(store)).await.0
}

async fn control(c: &mut Controller, route: &str, action: Action) -> Arc<Status> {
    c.control(Some(route), action, Instant::now())
        .await
        .unwrap()
}

fn status(c: &Controller, route: &str) -> Arc<Status> {
    let statuses = c.published.status.load();
    statuses
        .routes
        .iter()
        .find(|s| s.route == route)
        .unwrap()
        .clone()
}

/// The JSON of `route`'s record in `store`.
fn record(store: &MemoryStore, route: &str) -> Value {
    serde_json::from_slice(&store.get(route).expect("a record").data).unwrap()
}

#[tokio::test]
async fn each_route_s_state_is_written_to_the_store_and_restored_by_the_next_controller() {
    let store = MemoryStore::new();
    let mut c = start(&["iris", "chat"], &store).await;
    assert_eq!(status(&c, "iris").state.path.as_deref(), Some("memory"));
    control(
        &mut c,
        "iris",
        Action::Pause {
            reason: Some("lunch".into()),
        },
    )
    .await;
    assert_eq!(record(&store, "iris")["phase"], "paused");
    assert_eq!(record(&store, "chat")["phase"], "progressing");
    drop(c);

    let c = start(&["iris", "chat"], &store).await;
    let iris = status(&c, "iris");
    assert_eq!(
        (iris.phase.as_str(), iris.reason.as_deref()),
        ("paused", Some("lunch"))
    );
    let last = iris.events.last().unwrap();
    assert_eq!(last.kind, "restored");
    assert_eq!(last.message, "restored from memory: paused at step 0");
    assert!(status(&c, "iris").state.last_error.is_none());
}

#[tokio::test]
async fn a_record_that_makes_no_sense_is_put_aside_and_only_its_route_starts_safe() {
    let store = MemoryStore::new();
    let mut c = start(&["iris", "chat"], &store).await;
    control(&mut c, "chat", Action::Promote { full: true }).await;
    drop(c);
    let mut iris = record(&store, "iris");
    iris["phase"] = "dancing".into();
    let evidence = serde_json::to_vec(&iris).unwrap();
    let at = store.get("iris").map(|r| r.revision);
    let w = Write {
        route: "iris".into(),
        expected: at,
        data: Some(evidence.clone()),
    };
    assert!(store.save(vec![w]).await[0].is_ok());

    let c = start(&["iris", "chat"], &store).await;
    let iris = status(&c, "iris");
    assert_eq!((iris.phase.as_str(), iris.weight), ("paused", 0.0));
    let reason = iris.reason.as_deref().unwrap();
    assert!(
        reason.contains("the entry of route iris makes no sense"),
        "{reason}"
    );
    assert!(reason.contains("dancing"), "{reason}");
    assert!(reason.contains("kept aside as memory (aside)"), "{reason}");
    let aside: Vec<_> = store.aside().into_iter().map(|r| r.data).collect();
    assert_eq!(aside, [evidence]);
    // The safe start is written in its place; chat is restored where it was.
    assert_eq!(record(&store, "iris")["safe"], true);
    assert_eq!(status(&c, "chat").phase, "promoted");
    assert!(status(&c, "chat").state.last_error.is_none());
}

#[tokio::test]
async fn a_store_that_cannot_be_read_starts_every_route_safe() {
    let store = MemoryStore::new();
    store.add_unreadable(Unreadable {
        route: None,
        why: "not JSON".into(),
    });
    let c = start(&["iris", "chat"], &store).await;
    for route in ["iris", "chat"] {
        let s = status(&c, route);
        assert_eq!(s.phase, "paused");
        let reason = s.reason.as_deref().unwrap();
        assert!(
            reason.starts_with("state file memory cannot be used (not JSON)"),
            "{reason}"
        );
    }
    assert!(store.load().await.unwrap().unreadable.is_empty());
}

#[tokio::test]
async fn a_write_someone_else_beat_is_a_write_error_and_the_next_write_replaces_theirs() {
    let store = MemoryStore::new();
    let mut c = start(&["iris"], &store).await;
    // Another writer writes iris first.
    let theirs = store.get("iris").unwrap();
    let other = store.clone();
    let w = Write {
        route: "iris".into(),
        expected: Some(theirs.revision),
        data: Some(theirs.data),
    };
    let Ok(their_revision) = other.save(vec![w]).await.remove(0) else {
        panic!()
    };

    let s = control(&mut c, "iris", Action::Pause { reason: None }).await;
    let error = s
        .state
        .last_error
        .as_deref()
        .expect("the conflict is a failed write");
    assert!(
        error.starts_with("route iris: the route's record changed since it was read"),
        "{error}"
    );
    assert_eq!(store.get("iris").unwrap().revision, their_revision);
    assert_eq!(record(&store, "iris")["phase"], "progressing");

    // The store was read again: the next write goes through.
    let s = control(&mut c, "iris", Action::Resume).await;
    assert_eq!(s.state.last_error, None);
    assert!(s.state.last_written.is_some());
    assert!(store.get("iris").unwrap().revision > their_revision);
    assert_eq!(record(&store, "iris")["phase"], "progressing");
    let events = record(&store, "iris")["events"].as_array().unwrap().len();
    assert!(events >= 3, "the pause and resume were written: {events}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_shows_in_status_until_one_succeeds() {
    let store = MemoryStore::new();
    let mut c = start(&["iris"], &store).await;
    store.fail_saves(Some("disk full"));
    let s = control(&mut c, "iris", Action::Pause { reason: None }).await;
    assert_eq!(s.phase, "paused");
    assert_eq!(s.state.last_error.as_deref(), Some("disk full"));
    store.fail_saves(None);
    // The shared store is written again at the next tick, which clears the error.
    tokio::time::advance(super::LOAD_RETRY).await;
    c.tick(Instant::now()).await;
    let s = control(&mut c, "iris", Action::Resume).await;
    assert_eq!(s.state.last_error, None);
}

/// Route `iris`, `blue` → `green` in three steps of a minute each, without analysis.
fn stepping() -> Config {
    parse(
        "listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0 }\n\
         backends: { blue: { url: 'http://127.0.0.1:1' }, green: { url: 'http://127.0.0.1:2' } }\n\
         routes:\n  - { name: iris, match: { path_prefix: /iris/ }, rollout: { stable: blue, candidate: green, \
         steps: [{ weight: 25, hold: 1m }, { weight: 50, hold: 1m }, { weight: 100 }] } }\n",
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_shared_store_out_of_reach_holds_the_step_and_refuses_controls_toward_the_candidate() {
    let store = MemoryStore::new();
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let (mut c, _control) = Controller::start(stepping(), None, Some(shared)).await;
    store.fail_saves(Some("etcd 127.0.0.1:2379: no answer within 2s"));

    // The step that found the store gone is in force here; its write failed.
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    c.tick(Instant::now()).await;
    let s = status(&c, "iris");
    assert_eq!((s.step, s.weight), (1, 50.0));
    assert!(s.state.last_error.is_some());

    // Held: however long the store stays away, no further step toward the candidate.
    for _ in 0..5 {
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        c.tick(Instant::now()).await;
    }
    let s = status(&c, "iris");
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 50.0)
    );
    let said = s
        .events
        .iter()
        .filter(|e| e.message.starts_with("holding at step 1"))
        .count();
    assert_eq!(said, 1, "{:?}", s.events);
    let refused = c
        .control(Some("iris"), Action::Promote { full: true }, Instant::now())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, super::ControlError::StoreLost(_)),
        "{refused}"
    );
    assert_eq!(status(&c, "iris").weight, 50.0);

    // Back: the next write succeeds, the hold ends, and the rollout goes on.
    store.fail_saves(None);
    tokio::time::advance(super::LOAD_RETRY).await;
    c.tick(Instant::now()).await;
    assert_eq!(status(&c, "iris").state.last_error, None);
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    c.tick(Instant::now()).await;
    let s = status(&c, "iris");
    assert!(s.events.iter().any(|e| e.message.contains("store is back")));
    assert_eq!(s.weight, 100.0);
}

#[tokio::test(start_paused = true)]
async fn a_shared_store_out_of_reach_still_takes_a_rollback_and_writes_it_when_back() {
    let store = MemoryStore::new();
    let mut c = start(&["iris"], &store).await;
    store.fail_saves(Some("etcd 127.0.0.1:2379: no answer within 2s"));
    let s = control(&mut c, "iris", Action::Rollback { reason: None }).await;
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_ne!(record(&store, "iris")["phase"], "rolled_back");
    store.fail_saves(None);
    tokio::time::advance(super::LOAD_RETRY).await;
    c.tick(Instant::now()).await;
    assert_eq!(record(&store, "iris")["phase"], "rolled_back");
}

#[tokio::test]
async fn a_route_a_reload_removes_loses_its_record_and_one_no_config_names_too() {
    let store = MemoryStore::new();
    let stray = br#"{"route": "old", "phase": "paused"}"#.to_vec();
    let w = Write {
        route: "old".into(),
        expected: None,
        data: Some(stray),
    };
    assert!(store.save(vec![w]).await[0].is_ok());
    let mut c = start(&["iris", "chat"], &store).await;
    assert_eq!(store.get("old"), None);
    assert!(store.get("chat").is_some());
    c.apply(config(&["iris"]), Instant::now()).await;
    assert_eq!(store.get("chat"), None);
    let Some(Record { revision, .. }) = store.get("iris") else {
        panic!()
    };
    assert!(revision > Revision(0));
}

#[tokio::test]
async fn without_a_store_nothing_is_written_and_the_status_names_no_path() {
    let (c, _control) = Controller::start(config(&["iris"]), None, None).await;
    let s = status(&c, "iris");
    assert_eq!(
        (s.state.path.as_ref(), s.state.last_written.as_ref()),
        (None, None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_be_read_starts_every_route_on_its_stable_and_is_read_again() {
    let store = MemoryStore::new();
    let mut c = start(&["iris", "chat"], &store).await;
    control(&mut c, "iris", Action::Promote { full: false }).await;
    control(&mut c, "chat", Action::Promote { full: false }).await;
    drop(c);
    store.fail_loads(Some("etcd 127.0.0.1:2379: no answer within 2s"));

    let mut c = start(&["iris", "chat"], &store).await;
    for route in ["iris", "chat"] {
        let s = status(&c, route);
        assert_eq!((s.phase.as_str(), s.weight, s.mirror), ("paused", 0.0, 0.0));
        let reason = s.reason.as_deref().unwrap_or("");
        assert!(
            reason.contains("memory cannot be read (etcd 127.0.0.1:2379"),
            "{reason}"
        );
    }
    // Nothing is written over what could not be read, and the status says so.
    let written = store.get("iris").unwrap().revision;
    control(&mut c, "chat", Action::Rollback { reason: None }).await;
    assert_eq!(store.get("iris").unwrap().revision, written);
    let error = status(&c, "chat")
        .state
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        error.starts_with("not written: rollout state store memory"),
        "{error}"
    );

    // Still out of reach at the next try: nothing changes.
    tokio::time::advance(super::LOAD_RETRY).await;
    c.tick(Instant::now()).await;
    assert_eq!(status(&c, "iris").phase.as_str(), "paused");

    // Back: the route left as the failed read left it is restored; the one an
    // operator rolled back meanwhile stays rolled back, and that is written.
    store.fail_loads(None);
    tokio::time::advance(super::LOAD_RETRY).await;
    c.tick(Instant::now()).await;
    let iris = status(&c, "iris");
    assert_eq!(
        (iris.phase.as_str(), iris.step),
        ("promoted", 1),
        "{:?}",
        iris.reason
    );
    assert!(iris.state.last_error.is_none(), "{:?}", iris.state);
    assert_eq!(status(&c, "chat").phase.as_str(), "rolled_back");
    assert_eq!(record(&store, "chat")["phase"], "rolled_back");
    assert_eq!(record(&store, "iris")["step"], 1);
}
