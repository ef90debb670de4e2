use proptest::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;
use crate::store::Store;

/// An entry whose keys are not in alphabetical order, as the rollout's are.
#[derive(Serialize)]
struct Entry {
    route: &'static str,
    phase: &'static str,
    step: usize,
    events: Vec<Value>,
}

fn entry(route: &'static str, step: usize) -> Vec<u8> {
    let e = Entry {
        route,
        phase: "progressing",
        step,
        events: vec![json!({"at": "now", "kind": "start"})],
    };
    serde_json::to_vec(&e).unwrap()
}

fn write(route: &str, expected: Option<Revision>, data: Option<Vec<u8>>) -> Write {
    Write {
        route: route.into(),
        expected,
        data,
    }
}

fn store() -> (tempfile::TempDir, PathBuf, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("rollout.json");
    let store = FileStore::new(path.clone());
    (dir, path, store)
}

#[tokio::test]
async fn the_file_is_written_as_before_pretty_with_each_entry_s_keys_in_their_order() {
    let (_dir, path, store) = store();
    assert_eq!(store.load().await.unwrap(), Loaded::default());
    let saved = store
        .save(vec![write("iris", None, Some(entry("iris", 2)))])
        .await;
    assert!(saved[0].is_ok(), "{saved:?}");
    let expected = json!({"routes": [serde_json::from_slice::<Value>(&entry("iris", 2)).unwrap()]});
    let written = std::fs::read_to_string(&path).unwrap();
    // The same text serde_json writes for the same document, `route` first as before.
    let iris = Entry {
        route: "iris",
        phase: "progressing",
        step: 2,
        events: vec![json!({"at": "now", "kind": "start"})],
    };
    #[derive(Serialize)]
    struct File {
        routes: Vec<Entry>,
    }
    let before = serde_json::to_string_pretty(&File { routes: vec![iris] }).unwrap();
    assert_eq!(written, before);
    assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), expected);
}

#[tokio::test]
async fn a_save_on_a_stale_revision_conflicts_and_the_file_keeps_what_it_had() {
    let (_dir, path, store) = store();
    let first = store.save(vec![write("iris", None, Some(entry("iris", 0)))]);
    let Ok(r1) = first.await.remove(0) else {
        panic!("first save")
    };
    let r2 = store
        .save(vec![write("iris", Some(r1), Some(entry("iris", 1)))])
        .await
        .remove(0)
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let stale = store
        .save(vec![write("iris", Some(r1), Some(entry("iris", 2)))])
        .await;
    let Err(SaveError::Conflict { current: Some(now) }) = &stale[0] else {
        panic!("{stale:?}")
    };
    assert_eq!((now.revision, now.data.clone()), (r2, entry("iris", 1)));
    // Creating what exists conflicts too.
    let create = store.save(vec![write("iris", None, Some(entry("iris", 3)))]);
    assert!(matches!(create.await[0], Err(SaveError::Conflict { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn each_write_of_a_save_is_answered_on_its_own_and_a_removed_route_leaves_the_file() {
    let (_dir, path, store) = store();
    let saved = store
        .save(vec![
            write("iris", None, Some(entry("iris", 0))),
            write("chat", None, Some(entry("chat", 0))),
        ])
        .await;
    let chat = *saved[1].as_ref().unwrap();
    let answers = store
        .save(vec![
            write("iris", Some(Revision(999)), Some(entry("iris", 1))),
            write("chat", Some(chat), None),
        ])
        .await;
    assert!(matches!(answers[0], Err(SaveError::Conflict { .. })));
    assert!(answers[1].is_ok());
    let loaded = FileStore::new(path).load().await.unwrap();
    let routes: Vec<_> = loaded.records.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(routes, ["iris"]);
    assert_eq!(loaded.records[0].data, entry("iris", 0));
}

#[tokio::test]
async fn a_file_that_cannot_be_written_changes_nothing_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, "not a directory").unwrap();
    let store = FileStore::new(blocker.join("rollout.json"));
    let failed = store
        .save(vec![write("iris", None, Some(entry("iris", 0)))])
        .await;
    let Err(SaveError::Failed(why)) = &failed[0] else {
        panic!("{failed:?}")
    };
    assert!(why.contains(&blocker.display().to_string()), "{why}");
    // Nothing was taken in: once the directory can be made, the same write succeeds.
    std::fs::remove_file(&blocker).unwrap();
    let again = store
        .save(vec![write("iris", None, Some(entry("iris", 0)))])
        .await;
    assert!(again[0].is_ok(), "{again:?}");
}

#[tokio::test]
async fn a_record_that_is_not_an_entry_naming_its_route_is_refused() {
    let (_dir, path, store) = store();
    for data in [b"{\"rou".to_vec(), entry("chat", 0), b"[1]".to_vec()] {
        let answer = store.save(vec![write("iris", None, Some(data))]).await;
        assert!(matches!(answer[0], Err(SaveError::Failed(_))), "{answer:?}");
    }
    assert!(!path.exists());
}

#[tokio::test]
async fn an_unusable_file_is_put_aside_as_path_corrupt_and_the_next_save_starts_a_new_one() {
    let (_dir, path, store) = store();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"routes\": [").unwrap();
    let loaded = store.load().await.unwrap();
    assert!(loaded.records.is_empty());
    let [Unreadable { route: None, why }] = &loaded.unreadable[..] else {
        panic!("{loaded:?}")
    };
    assert!(why.starts_with("not JSON"), "{why}");
    let aside = store.put_aside(vec!["iris".into()]).await;
    assert_eq!(aside.failed, None);
    assert_eq!(aside.to, format!("{}.corrupt", path.display()));
    assert_eq!(std::fs::read(&aside.to).unwrap(), b"{\"routes\": [");
    assert!(!path.exists());
    let saved = store
        .save(vec![write("iris", None, Some(entry("iris", 0)))])
        .await;
    assert!(saved[0].is_ok());
    assert_eq!(std::fs::read(&aside.to).unwrap(), b"{\"routes\": [");
}

#[tokio::test]
async fn putting_one_route_aside_keeps_the_others_for_the_next_save() {
    let (_dir, path, store) = store();
    let first = FileStore::new(path.clone());
    first
        .save(vec![
            write("iris", None, Some(entry("iris", 1))),
            write("chat", None, Some(entry("chat", 1))),
        ])
        .await;
    let loaded = store.load().await.unwrap();
    let chat = loaded.records.iter().find(|r| r.route == "chat").unwrap();
    assert!(store.put_aside(vec!["iris".into()]).await.failed.is_none());
    // iris is gone from the store: writing it anew is no conflict; chat is as read.
    let answers = store
        .save(vec![
            write("iris", None, Some(entry("iris", 0))),
            write("chat", Some(chat.revision), Some(entry("chat", 2))),
        ])
        .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

#[tokio::test]
async fn the_one_route_form_written_before_routes_is_read() {
    let (_dir, path, store) = store();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, r#"{"route": "default", "step": 1}"#).unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.records.len(), 1);
    assert_eq!(loaded.records[0].route, "default");
    let missing = FileStore::new(path.join("under-a-file.json"))
        .load()
        .await
        .unwrap();
    assert_eq!(missing, Loaded::default());
}

#[tokio::test(start_paused = true)]
async fn nobody_else_writes_the_file_so_its_watch_sees_nothing() {
    let (_dir, _path, store) = store();
    let mut watch = store.watch();
    store
        .save(vec![write("iris", None, Some(entry("iris", 0)))])
        .await;
    let seen = tokio::time::timeout(std::time::Duration::from_millis(10), watch.next()).await;
    assert!(seen.is_err(), "{seen:?}");
}

/// Any JSON document, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn layout_writes_any_json_as_serde_json_writes_it(v in json_value()) {
        let (compact, pretty) = (serde_json::to_vec(&v).unwrap(), serde_json::to_vec_pretty(&v).unwrap());
        prop_assert_eq!(&layout(&compact, true), &pretty);
        prop_assert_eq!(&layout(&pretty, false), &compact);
        // Already laid out, it comes out the same.
        prop_assert_eq!(&layout(&pretty, true), &pretty);
        prop_assert_eq!(&layout(&compact, false), &compact);
    }
}

#[test]
fn parse_names_each_route_and_refuses_what_is_no_state_file() {
    let entries = parse(br#"{"routes": [{"route": "iris", "phase": "dancing"}]}"#).unwrap();
    assert_eq!(entries[0].0, "iris");
    assert!(parse(br#"{"routes": [{"rou"#)
        .unwrap_err()
        .starts_with("not JSON"));
    assert!(parse(b"[1, 2]").is_err());
}
