use super::*;

fn data(route: &str, step: u64) -> Vec<u8> {
    format!(r#"{{"route": "{route}", "step": {step}}}"#).into_bytes()
}

fn write(route: &str, expected: Option<Revision>, data: Option<Vec<u8>>) -> Write {
    Write {
        route: route.into(),
        expected,
        data,
    }
}

/// Saves one write and answers it.
async fn save(store: &dyn Store, w: Write) -> Result<Revision, SaveError> {
    store.save(vec![w]).await.remove(0)
}

#[tokio::test]
async fn a_save_on_a_stale_revision_conflicts_with_the_record_someone_else_wrote() {
    let a = MemoryStore::new();
    let b = a.clone();
    let read = save(&a, write("iris", None, Some(data("iris", 0)))).await;
    let read = read.unwrap();
    // Both writers read revision `read`; b writes first.
    let theirs = save(&b, write("iris", Some(read), Some(data("iris", 1)))).await;
    let theirs = theirs.unwrap();
    let mine = save(&a, write("iris", Some(read), Some(data("iris", 2)))).await;
    let Err(SaveError::Conflict { current: Some(now) }) = mine else {
        panic!("{mine:?}")
    };
    assert_eq!((now.revision, now.data), (theirs, data("iris", 1)));
    assert_eq!(a.get("iris").unwrap().data, data("iris", 1));
    // Read again, the write goes through.
    let again = save(&a, write("iris", Some(theirs), Some(data("iris", 2)))).await;
    assert!(again.unwrap() > theirs);
    // A route removed by someone else: a conflict with no record.
    let gone = save(&b, write("iris", a.get("iris").map(|r| r.revision), None)).await;
    assert!(gone.is_ok());
    let stale = save(&a, write("iris", Some(theirs), Some(data("iris", 3)))).await;
    assert_eq!(stale, Err(SaveError::Conflict { current: None }));
}

#[tokio::test]
async fn a_watch_sees_another_writer_s_saves_and_removals() {
    let a = MemoryStore::new();
    let b = a.clone();
    let mut watch = a.watch();
    let revision = save(&b, write("iris", None, Some(data("iris", 1)))).await;
    let revision = revision.unwrap();
    let expected = Record {
        route: "iris".into(),
        revision,
        data: data("iris", 1),
    };
    assert_eq!(watch.next().await, Some(Watched::Changed(expected)));
    // A conflicting write changes nothing, so nothing is seen of it.
    let stale = save(&b, write("iris", None, Some(data("iris", 2)))).await;
    assert!(stale.is_err());
    let removed = save(&b, write("iris", Some(revision), None)).await.unwrap();
    let seen = watch.next().await;
    assert_eq!(
        seen,
        Some(Watched::Removed {
            route: "iris".into(),
            revision: removed
        })
    );
}

#[tokio::test]
async fn a_watch_that_falls_behind_is_told_it_lost_its_place() {
    let store = MemoryStore::new();
    let mut watch = store.watch();
    let mut revision = None;
    for step in 0..=WATCH_BACKLOG as u64 {
        let w = write("iris", revision, Some(data("iris", step)));
        revision = Some(save(&store, w).await.unwrap());
    }
    assert_eq!(watch.next().await, Some(Watched::Lost));
}

#[tokio::test]
async fn what_is_put_aside_leaves_the_store_and_the_next_load() {
    let store = MemoryStore::new();
    save(&store, write("iris", None, Some(data("iris", 1))))
        .await
        .unwrap();
    save(&store, write("chat", None, Some(data("chat", 1))))
        .await
        .unwrap();
    store.add_unreadable(Unreadable {
        route: Some("embed".into()),
        why: "not JSON".into(),
    });
    let loaded = store.load().await.unwrap();
    assert_eq!((loaded.records.len(), loaded.unreadable.len()), (2, 1));

    let aside = store.put_aside(vec!["iris".into(), "embed".into()]).await;
    assert_eq!(aside.failed, None);
    let loaded = store.load().await.unwrap();
    let routes: Vec<_> = loaded.records.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(routes, ["chat"]);
    assert!(loaded.unreadable.is_empty());
    let kept: Vec<_> = store.aside().into_iter().map(|r| r.data).collect();
    assert_eq!(kept, [data("iris", 1)]);
    // The route is free to be written anew.
    assert!(save(&store, write("iris", None, Some(data("iris", 0))))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_failing_store_fails_every_write_and_keeps_what_it_had() {
    let store = MemoryStore::new();
    store.fail_saves(Some("disk full"));
    let failed = save(&store, write("iris", None, Some(data("iris", 0)))).await;
    assert_eq!(failed, Err(SaveError::Failed("disk full".into())));
    assert_eq!(store.get("iris"), None);
    store.fail_saves(None);
    assert!(save(&store, write("iris", None, Some(data("iris", 0))))
        .await
        .is_ok());
}
