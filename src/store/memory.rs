//! A store kept in memory: real compare-and-swap and watch, shared by every clone.
//!
//! What the controller's tests run on, and a stand-in for a store several writers share:
//! each clone is another writer on the same records, and every save is seen by every
//! watch. Nothing survives the process.

use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::seam::{
    apply, Aside, LoadError, Loaded, Record, Revision, SaveError, Store, Unreadable, Watch,
    Watched, Write,
};

/// How many changes a watch may fall behind before it loses its place.
pub(crate) const WATCH_BACKLOG: usize = 256;

/// Rollout state in memory, shared by its clones.
#[derive(Clone)]
pub(crate) struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    held: Mutex<Held>,
    changes: broadcast::Sender<Watched>,
}

#[derive(Default)]
struct Held {
    records: Vec<Record>,
    /// What [`Store::load`] reports as unreadable, until it is put aside.
    unreadable: Vec<Unreadable>,
    /// The records put aside, oldest first.
    aside: Vec<Record>,
    /// Why every save fails, when one should.
    failing: Option<String>,
    /// Why every load fails (the store out of reach), when one should.
    unreachable: Option<String>,
    last: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub(crate) fn new() -> MemoryStore {
        MemoryStore {
            shared: Arc::new(Shared {
                held: Mutex::new(Held::default()),
                changes: broadcast::channel(WATCH_BACKLOG).0,
            }),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.shared.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `route`, as the store holds it now.
    pub(crate) fn get(&self, route: &str) -> Option<Record> {
        self.held()
            .records
            .iter()
            .find(|r| r.route == route)
            .cloned()
    }

    /// The records put aside so far, oldest first.
    pub(crate) fn aside(&self) -> Vec<Record> {
        self.held().aside.clone()
    }

    /// Makes [`Store::load`] report `unreadable` (until it is put aside).
    pub(crate) fn add_unreadable(&self, unreadable: Unreadable) {
        self.held().unreadable.push(unreadable);
    }

    /// Makes every save fail with `why` from now on (`None`: saves succeed again).
    pub(crate) fn fail_saves(&self, why: Option<&str>) {
        self.held().failing = why.map(str::to_owned);
    }

    /// Makes every load fail with `why` from now on (`None`: loads answer again).
    pub(crate) fn fail_loads(&self, why: Option<&str>) {
        self.held().unreachable = why.map(str::to_owned);
    }

    fn write(&self, writes: Vec<Write>) -> Vec<Result<Revision, SaveError>> {
        let mut held = self.held();
        if let Some(why) = &held.failing {
            let failed = SaveError::Failed(why.clone());
            return writes.iter().map(|_| Err(failed.clone())).collect();
        }
        let Held { records, last, .. } = &mut *held;
        let answers: Vec<_> = writes.iter().map(|w| apply(records, last, w)).collect();
        for (w, answer) in writes.into_iter().zip(&answers) {
            let Ok(revision) = *answer else { continue };
            let change = match w.data {
                Some(data) => Watched::Changed(Record {
                    route: w.route,
                    revision,
                    data,
                }),
                None => Watched::Removed {
                    route: w.route,
                    revision,
                },
            };
            // No watch at all is no error.
            let _ = self.shared.changes.send(change);
        }
        answers
    }

    fn keep_aside(&self, routes: &[String]) -> Aside {
        let mut held = self.held();
        let (gone, kept) = std::mem::take(&mut held.records)
            .into_iter()
            .partition(|r| routes.contains(&r.route));
        held.records = kept;
        held.unreadable
            .retain(|u| u.route.as_ref().is_some_and(|r| !routes.contains(r)));
        for r in &gone {
            held.last += 1;
            let removed = Watched::Removed {
                route: r.route.clone(),
                revision: Revision(held.last),
            };
            let _ = self.shared.changes.send(removed);
        }
        held.aside.extend::<Vec<Record>>(gone);
        Aside {
            to: "memory (aside)".into(),
            failed: None,
        }
    }
}

impl Store for MemoryStore {
    fn shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "memory".into()
    }

    fn load(&self) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        let held = self.held();
        let loaded = match &held.unreachable {
            Some(why) => Err(LoadError(why.clone())),
            None => Ok(Loaded {
                records: held.records.clone(),
                unreadable: held.unreadable.clone(),
            }),
        };
        Box::pin(std::future::ready(loaded))
    }

    fn save(&self, writes: Vec<Write>) -> BoxFuture<'_, Vec<Result<Revision, SaveError>>> {
        Box::pin(std::future::ready(self.write(writes)))
    }

    fn watch(&self) -> Watch {
        Watch::new(self.shared.changes.subscribe())
    }

    fn put_aside(&self, routes: Vec<String>) -> BoxFuture<'_, Aside> {
        Box::pin(std::future::ready(self.keep_aside(&routes)))
    }
}

#[cfg(test)]
mod tests;
