//! The controller on a [`MemoryStore`]: what it restores, puts aside and writes.

use std::sync::Arc;

use futures_util::FutureExt;
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

/// Takes in what `c`'s watch has seen so far, as its run loop does.
async fn catch_up(c: &mut Controller) {
    loop {
        let watch = c.watch.as_mut().expect("a shared store is watched");
        let Some(w) = watch.next().now_or_never() else {
            return;
        };
        c.follow(w).await;
    }
}

/// Writes `change` into `route`'s record in `store` behind the controllers' backs.
async fn overwrite(store: &MemoryStore, route: &str, change: impl Fn(&mut Value)) -> Revision {
    let mut data = record(store, route);
    change(&mut data);
    let w = Write {
        route: route.into(),
        expected: store.get(route).map(|r| r.revision),
        data: Some(serde_json::to_vec(&data).unwrap()),
    };
    store.save(vec![w]).await.remove(0).unwrap()
}

#[tokio::test]
async fn a_control_on_one_replica_is_in_force_on_another_from_the_watch() {
    let store = MemoryStore::new();
    let mut a = start(&["iris", "chat"], &store).await;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    // Its run loop ends once every handle is gone: `_b` is kept.
    let (b, _b) = Controller::start(config(&["iris", "chat"]), None, Some(shared)).await;
    let published = b.published();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(b.run(shutdown));
    catch_up(&mut a).await;

    let s = control(&mut a, "iris", Action::Promote { full: false }).await;
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 1));
    let written = store.get("iris").unwrap().revision;
    let mut followed = None;
    for _ in 0..10_000 {
        let iris = published.status.load().routes[0].clone();
        if iris.step == 1 {
            followed = Some(iris);
            break;
        }
        tokio::task::yield_now().await;
    }
    let iris = followed.expect("replica B follows A's promote");
    assert_eq!((iris.phase.as_str(), iris.weight), ("progressing", 100.0));
    assert_eq!(published.status.load().routes[1].step, 0);
    // Taken in, not written back.
    assert_eq!(store.get("iris").unwrap().revision, written);
    stop.send(true).unwrap();
    running.await.unwrap();
}

#[tokio::test]
async fn a_replica_that_starts_writes_nothing_it_has_just_read() {
    let store = MemoryStore::new();
    let mut a = start(&["iris", "chat"], &store).await;
    control(&mut a, "iris", Action::Promote { full: false }).await;
    let revisions = || ["iris", "chat"].map(|r| store.get(r).unwrap().revision);
    let stored = revisions();
    let b = start(&["iris", "chat"], &store).await;
    assert_eq!(status(&b, "iris").step, 1);
    assert_eq!(revisions(), stored, "B wrote what it had just read");
    // So A's next control, made before it has seen B start, meets no write of B's.
    let s = control(&mut a, "iris", Action::Pause { reason: None }).await;
    assert_eq!((s.phase.as_str(), s.step), ("paused", 1));
    assert_eq!(record(&store, "iris")["phase"], "paused");
}

#[tokio::test]
async fn a_write_another_replica_made_first_is_in_force_and_this_one_s_is_dropped() {
    let store = MemoryStore::new();
    let mut a = start(&["iris"], &store).await;
    let mut b = start(&["iris"], &store).await;
    catch_up(&mut a).await;
    let reason = Some("lunch".to_string());
    control(&mut a, "iris", Action::Pause { reason }).await;
    let theirs = store.get("iris").unwrap();

    // B has not seen A's pause yet: its promote meets A's write.
    let s = control(&mut b, "iris", Action::Promote { full: true }).await;
    assert_eq!(
        (s.phase.as_str(), s.step, s.reason.as_deref()),
        ("paused", 0, Some("lunch"))
    );
    assert_eq!(s.state.last_error, None);
    let said = &s.events.last().unwrap().message;
    assert!(
        said.starts_with("another replica changed this route first"),
        "{said}"
    );
    assert_eq!(store.get("iris").unwrap(), theirs);
    assert_eq!(status(&b, "iris").weight, status(&a, "iris").weight);
}

#[tokio::test]
async fn a_rollback_that_meets_another_replica_s_write_is_made_again_on_top_of_it() {
    let store = MemoryStore::new();
    let mut a = start(&["iris"], &store).await;
    let mut b = start(&["iris"], &store).await;
    catch_up(&mut a).await;
    control(&mut a, "iris", Action::Promote { full: false }).await;

    let reason = Some("errors in the candidate".to_string());
    let s = control(&mut b, "iris", Action::Rollback { reason }).await;
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert!(
        s.events
            .iter()
            .any(|e| e.message.contains("the rollback is made again")),
        "{:?}",
        s.events
    );
    assert_eq!(record(&store, "iris")["phase"], "rolled_back");
    assert_eq!(record(&store, "iris")["reason"], "errors in the candidate");

    // A takes it in from the watch.
    catch_up(&mut a).await;
    let s = status(&a, "iris");
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
}

#[tokio::test]
async fn a_rollback_the_store_did_not_take_is_kept_over_another_replica_s_write() {
    let store = MemoryStore::new();
    let mut a = start(&["iris"], &store).await;
    let mut b = start(&["iris"], &store).await;
    catch_up(&mut a).await;
    store.fail_saves(Some("etcd 127.0.0.1:2379: no answer within 2s"));
    let reason = Some("errors in the candidate".to_string());
    control(&mut b, "iris", Action::Rollback { reason }).await;
    store.fail_saves(None);
    // A, which never saw the rollback, moves the route on before B writes it again.
    control(&mut a, "iris", Action::Promote { full: false }).await;
    assert_eq!(record(&store, "iris")["step"], 1);

    catch_up(&mut b).await;
    let s = status(&b, "iris");
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(record(&store, "iris")["phase"], "rolled_back");
    catch_up(&mut a).await;
    assert_eq!(status(&a, "iris").phase, "rolled_back");
}

#[tokio::test]
async fn a_watch_that_lost_its_place_reads_the_store_again() {
    let store = MemoryStore::new();
    let mut b = start(&["iris"], &store).await;
    // More changes than a watch keeps: B's falls behind.
    for i in 0..=crate::store::memory::WATCH_BACKLOG {
        overwrite(&store, "iris", |r| {
            r["phase"] = "paused".into();
            r["reason"] = format!("change {i}").into();
        })
        .await;
    }
    catch_up(&mut b).await;
    let s = status(&b, "iris");
    let last = format!("change {}", crate::store::memory::WATCH_BACKLOG);
    assert_eq!(
        (s.phase.as_str(), s.reason.as_deref()),
        ("paused", Some(last.as_str()))
    );
    // Watched again: the next change is taken in too.
    overwrite(&store, "iris", |r| r["reason"] = "after".into()).await;
    catch_up(&mut b).await;
    assert_eq!(status(&b, "iris").reason.as_deref(), Some("after"));
}

#[tokio::test]
async fn another_replica_s_state_for_another_revision_is_left_alone_and_said() {
    let store = MemoryStore::new();
    let mut b = start(&["iris"], &store).await;
    overwrite(&store, "iris", |r| {
        r["revision"] = "00000000000000ff".into();
        r["phase"] = "paused".into();
    })
    .await;
    catch_up(&mut b).await;
    let s = status(&b, "iris");
    assert_eq!(s.phase, "progressing");
    let said = &s.events.last().unwrap().message;
    assert!(
        said.starts_with(
            "another replica stored this route for another revision (00000000000000ff"
        ),
        "{said}"
    );
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
