//! The etcd store as two writers on one prefix see it.

use std::time::Duration;

use switchyard::config::{Dur, EtcdConfig};
use switchyard::store::{
    Aside, EtcdStore, Record, Revision, SaveError, Store, Unreadable, Watch, Watched, Write,
};

use crate::support::etcd::Etcd;
use crate::support::process::free_port;

/// The settings of a store on `endpoint` under `prefix`.
fn settings(endpoint: &str, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        prefix: prefix.to_string(),
        lease_ttl: Dur::from_secs(5),
        timeout: Dur::from_secs(2),
    }
}

/// A record of `route` as the controller writes one: a JSON object naming it.
fn data(route: &str, step: u32) -> Vec<u8> {
    format!(r#"{{"route":"{route}","step":{step}}}"#).into_bytes()
}

fn write(route: &str, expected: Option<Revision>, data: Option<Vec<u8>>) -> Write {
    Write {
        route: route.to_string(),
        expected,
        data,
    }
}

/// Saves one write and answers it.
async fn save(store: &EtcdStore, w: Write) -> Result<Revision, SaveError> {
    let mut answers = store.save(vec![w]).await;
    assert_eq!(answers.len(), 1);
    answers.remove(0)
}

/// The watch's next change, within 5 s.
async fn next(watch: &mut Watch) -> Watched {
    tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("a change within 5s")
        .expect("the watch goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_prefix_write_each_route_by_compare_and_swap() {
    let etcd = Etcd::start();
    let a = EtcdStore::new(&settings(&etcd.endpoint(), "/cas"));
    let b = EtcdStore::new(&settings(&etcd.endpoint(), "/cas"));

    let first = save(&a, write("iris", None, Some(data("iris", 1))))
        .await
        .unwrap();
    // b believes the route has no record: it is told what a wrote.
    let refused = save(&b, write("iris", None, Some(data("iris", 2)))).await;
    let current = Record {
        route: "iris".into(),
        revision: first,
        data: data("iris", 1),
    };
    assert_eq!(
        refused,
        Err(SaveError::Conflict {
            current: Some(current)
        })
    );
    // Knowing a's revision, b writes; a's stale revision is refused in turn.
    let second = save(&b, write("iris", Some(first), Some(data("iris", 2))))
        .await
        .unwrap();
    assert!(second > first, "{second:?} after {first:?}");
    let stale = save(&a, write("iris", Some(first), Some(data("iris", 3)))).await;
    let Err(SaveError::Conflict { current: Some(now) }) = stale else {
        panic!("{stale:?}");
    };
    assert_eq!((now.revision, now.data), (second, data("iris", 2)));

    // A removal compares too, and both stores then read nothing.
    let gone = save(&a, write("iris", Some(first), None)).await;
    assert!(matches!(gone, Err(SaveError::Conflict { .. })), "{gone:?}");
    save(&a, write("iris", Some(second), None)).await.unwrap();
    assert!(b.load().await.unwrap().records.is_empty());
    assert!(a.load().await.unwrap().records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_the_other_writers_save_and_removal() {
    let etcd = Etcd::start();
    let a = EtcdStore::new(&settings(&etcd.endpoint(), "/watch"));
    let b = EtcdStore::new(&settings(&etcd.endpoint(), "/watch"));
    assert_eq!(a.load().await.unwrap().records, vec![]);
    let mut watch = a.watch();

    let written = save(&b, write("iris", None, Some(data("iris", 1))))
        .await
        .unwrap();
    let expected = Record {
        route: "iris".into(),
        revision: written,
        data: data("iris", 1),
    };
    assert_eq!(next(&mut watch).await, Watched::Changed(expected));
    let removed = save(&b, write("iris", Some(written), None)).await.unwrap();
    assert_eq!(
        next(&mut watch).await,
        Watched::Removed {
            route: "iris".into(),
            revision: removed
        }
    );
    // Another prefix is another fleet: not seen.
    let other = EtcdStore::new(&settings(&etcd.endpoint(), "/elsewhere"));
    save(&other, write("iris", None, Some(data("iris", 9))))
        .await
        .unwrap();
    save(&b, write("fraud", None, Some(data("fraud", 1))))
        .await
        .unwrap();
    let Watched::Changed(r) = next(&mut watch).await else {
        panic!("a change of fraud");
    };
    assert_eq!(r.route, "fraud");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_changes_were_compacted_away_says_lost_and_a_new_load_watches_again() {
    let etcd = Etcd::start();
    let a = EtcdStore::new(&settings(&etcd.endpoint(), "/compact"));
    let b = EtcdStore::new(&settings(&etcd.endpoint(), "/compact"));
    a.load().await.unwrap();
    // b writes twice, and etcd forgets the history up to now before a watches.
    let one = save(&b, write("iris", None, Some(data("iris", 1))))
        .await
        .unwrap();
    let two = save(&b, write("iris", Some(one), Some(data("iris", 2))))
        .await
        .unwrap();
    let mut client = etcd.client().await;
    client.compact(two.0 as i64, None).await.unwrap();

    let mut watch = a.watch();
    assert_eq!(next(&mut watch).await, Watched::Lost);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), watch.next()).await,
        Ok(None)
    );

    // What was missed is read whole; the watch from there sees what follows.
    let loaded = a.load().await.unwrap();
    assert_eq!(loaded.records.len(), 1);
    assert_eq!(loaded.records[0].data, data("iris", 2));
    let mut watch = a.watch();
    let three = save(&b, write("iris", Some(two), Some(data("iris", 3))))
        .await
        .unwrap();
    let Watched::Changed(r) = next(&mut watch).await else {
        panic!("a change");
    };
    assert_eq!(r.revision, three);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_read_is_moved_aside_and_kept_as_found() {
    let etcd = Etcd::start();
    let store = EtcdStore::new(&settings(&etcd.endpoint(), "/aside"));
    let mut client = etcd.client().await;
    client
        .put("/aside/routes/iris", "{\"route\":\"ir", None)
        .await
        .unwrap();
    client
        .put("/aside/routes/fraud", data("fraud", 1), None)
        .await
        .unwrap();

    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.records.len(), 1);
    assert_eq!(loaded.records[0].route, "fraud");
    assert!(
        matches!(loaded.unreadable.as_slice(), [Unreadable { route: Some(r), .. }] if r == "iris"),
        "{:?}",
        loaded.unreadable
    );
    let aside = store.put_aside(vec!["iris".into()]).await;
    let expected = Aside {
        to: "/aside/aside/iris".into(),
        failed: None,
    };
    assert_eq!(aside, expected);

    let loaded = store.load().await.unwrap();
    assert!(loaded.unreadable.is_empty(), "{loaded:?}");
    assert_eq!(loaded.records.len(), 1);
    let kept = client.get("/aside/aside/iris", None).await.unwrap();
    assert_eq!(kept.kvs()[0].value(), b"{\"route\":\"ir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_nobody_answers_for_fails_each_call_within_its_timeout() {
    let mut s = settings(&format!("http://127.0.0.1:{}", free_port()), "/none");
    s.timeout = Dur::from_millis(300);
    let store = EtcdStore::new(&s);
    let e = store.load().await.unwrap_err();
    assert!(e.0.contains(&s.endpoints[0]), "{e}");
    let saved = store
        .save(vec![
            write("a", None, Some(data("a", 1))),
            write("b", None, None),
        ])
        .await;
    assert!(matches!(&saved[0], Err(SaveError::Failed(_))), "{saved:?}");
    let Err(SaveError::Failed(why)) = &saved[1] else {
        panic!("{saved:?}");
    };
    assert!(why.starts_with("not tried"), "{why}");
}
