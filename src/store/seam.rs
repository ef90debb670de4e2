//! The [`Store`] seam and the records it deals in: a route's name, JSON bytes and the
//! store's revision of them; the compare-and-swap both local stores share.
//!
//! The trait's methods return boxed futures, not `async fn`: a trait with `async fn` is
//! not dyn-compatible, and the controller holds its store as `Arc<dyn Store>`.

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::broadcast;

/// The store's revision of one record: it changes with every write of that record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

/// One route's record as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub route: String,
    /// The store's revision of this record: what a save compares against.
    pub revision: Revision,
    /// The record's JSON, opaque to the store.
    pub data: Vec<u8>,
}

/// Everything a store holds, as read at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Every route's record that could be read.
    pub records: Vec<Record>,
    /// What could not be read, each with why.
    pub unreadable: Vec<Unreadable>,
}

/// Something a store holds that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The route whose record it is; `None` when it is the whole store (a file that is not
    /// a state file at all), which leaves every route in doubt.
    pub route: Option<String>,
    pub why: String,
}

/// A write of one route's record, by compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub route: String,
    /// The revision the writer last knew; `None`: the route had no record.
    pub expected: Option<Revision>,
    /// The new record's JSON; `None` removes the route's record.
    pub data: Option<Vec<u8>>,
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    /// Someone else wrote the route first: its record as it is now (`None`: removed).
    #[error("the route's record changed since it was read (now at {})", describe_current(.current))]
    Conflict { current: Option<Record> },
    /// The store could not be written: why.
    #[error("{0}")]
    Failed(String),
}

fn describe_current(current: &Option<Record>) -> String {
    match current {
        Some(r) => format!("revision {}", r.revision.0),
        None => "no record".to_string(),
    }
}

/// Why a store could not be read at all (unreachable, timed out): nothing is known of
/// what it holds, so nothing is put aside and nothing is overwritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// What a watch sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// A route's record was written (by anyone, this writer included).
    Changed(Record),
    /// A route's record was removed.
    Removed { route: String, revision: Revision },
    /// The watch lost its place (it fell behind, or the store forgot old changes): what
    /// was missed is only known by loading again.
    Lost,
}

/// A stream of changes to a store's records.
pub struct Watch(broadcast::Receiver<Watched>);

impl Watch {
    /// A watch on the changes sent to `rx`.
    pub fn new(rx: broadcast::Receiver<Watched>) -> Watch {
        Watch(rx)
    }

    /// The next change; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Watched> {
        match self.0.recv().await {
            Ok(w) => Some(w),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Watched::Lost),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Where unreadable records went, or why they could not be put there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aside {
    /// Where they are kept (`PATH.corrupt` for a file).
    pub to: String,
    /// Why they could not be kept there; `None` when they were.
    pub failed: Option<String>,
}

/// Where rollout state lives: load, save by compare-and-swap, watch, put aside.
pub trait Store: Send + Sync {
    /// Where the state lives, as the status shows it (`state.path`) and events name it.
    fn describe(&self) -> String;

    /// Whether other replicas share the store: while it cannot be written, a replica
    /// holds its rollouts where they are (it never moves traffic toward a candidate on
    /// its own), and only controls toward safety take effect. A local file is no one
    /// else's: its rollouts go on, and a restart finds the last state written.
    fn shared(&self) -> bool {
        false
    }

    /// Every route's record with its revision, and what could not be read; an error when
    /// the store itself cannot be reached (a local store always answers).
    fn load(&self) -> BoxFuture<'_, Result<Loaded, LoadError>>;

    /// Writes each of `writes` if its route's record is still at its expected revision;
    /// each is answered on its own, in order: the new revision, or why not.
    fn save(&self, writes: Vec<Write>) -> BoxFuture<'_, Vec<Result<Revision, SaveError>>>;

    /// The changes to the store's records since the last [`Store::load`] (from now on
    /// before any), for as long as the watch is kept (a store only one replica writes may
    /// never yield one).
    fn watch(&self) -> Watch;

    /// Moves the records of `routes` (which cannot be read or make no sense) where they
    /// cannot be overwritten, so what went wrong can be seen; the store no longer holds
    /// them once they are kept there.
    fn put_aside(&self, routes: Vec<String>) -> BoxFuture<'_, Aside>;
}

/// Applies one write to `records` if its expected revision is the record's, giving the
/// record the next revision after `last`: the compare-and-swap both local stores share.
pub(super) fn apply(
    records: &mut Vec<Record>,
    last: &mut u64,
    w: &Write,
) -> Result<Revision, SaveError> {
    let at = records.iter().position(|r| r.route == w.route);
    if at.map(|i| records[i].revision) != w.expected {
        let current = at.map(|i| records[i].clone());
        return Err(SaveError::Conflict { current });
    }
    *last += 1;
    let revision = Revision(*last);
    match (&w.data, at) {
        (None, Some(i)) => {
            records.remove(i);
        }
        (None, None) => {}
        (Some(data), at) => {
            let record = Record {
                route: w.route.clone(),
                revision,
                data: data.clone(),
            };
            match at {
                Some(i) => records[i] = record,
                None => records.push(record),
            }
        }
    }
    Ok(revision)
}

/// Whether `data` can be the record of `route`: a JSON object naming it in `route`.
pub(super) fn check(route: &str, data: &[u8]) -> Result<(), String> {
    let value: Value =
        serde_json::from_slice(data).map_err(|e| format!("a record that is not JSON: {e}"))?;
    match value.get("route").and_then(Value::as_str) {
        Some(r) if r == route => Ok(()),
        _ => Err(format!(
            "the record of route {route} is not a JSON object naming it in `route`"
        )),
    }
}
