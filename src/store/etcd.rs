//! The etcd store: every route's record under one key of an etcd cluster a fleet shares.
//!
//! Each route's record is the key `{prefix}/routes/{route}`, its [`Revision`] the key's
//! `mod_revision`. A save is one transaction per route that compares the revision the
//! writer last knew (`version == 0` for a route without a record) and puts or deletes,
//! and otherwise reads the record as it is now, so a conflict answers with it. A load is
//! one range read of `{prefix}/routes/`; a watch follows that range from the revision
//! after the last load and says [`Watched::Lost`] when etcd has compacted what it missed.
//! A record that cannot be read is moved to `{prefix}/aside/{route}` in one transaction.
//!
//! The client connects on the first call, and every call (the connection included) is
//! bounded by `state.etcd.timeout`: a cluster that is down answers with an error in that
//! time, and nothing waits longer. Only the controller calls a store; the request path
//! never does.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, TlsOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, OnceCell};

use super::seam::{
    check, Aside, LoadError, Loaded, Record, Revision, SaveError, Store, Unreadable, Watch,
    Watched, Write,
};
use crate::config::EtcdConfig;
use crate::telemetry::metrics;

/// How many changes a watch may fall behind before it loses its place.
const WATCH_BACKLOG: usize = 256;

/// How long a broken watch waits before it opens again.
const WATCH_RETRY: Duration = Duration::from_millis(500);

/// The rollout state in an etcd cluster (`state.store: etcd`).
pub struct EtcdStore {
    inner: Arc<Inner>,
}

/// What the store and its watches share.
struct Inner {
    endpoints: Vec<String>,
    /// `state.etcd.prefix` without its trailing `/`.
    prefix: String,
    timeout: Duration,
    client: OnceCell<Client>,
    /// The cluster's revision at the last load (0: none yet); a watch starts after it.
    loaded_at: AtomicI64,
}

impl EtcdStore {
    /// A store on the cluster `settings` names; it connects at its first call.
    pub fn new(settings: &EtcdConfig) -> EtcdStore {
        EtcdStore {
            inner: Arc::new(Inner {
                endpoints: settings.endpoints.clone(),
                prefix: settings.prefix.trim_end_matches('/').to_string(),
                timeout: settings.timeout.0,
                client: OnceCell::new(),
                loaded_at: AtomicI64::new(0),
            }),
        }
    }
}

// === impl Inner ===

impl Inner {
    /// The key under which every route's record lives.
    fn routes(&self) -> String {
        format!("{}/routes/", self.prefix)
    }

    /// The key of `route`'s record.
    fn key(&self, route: &str) -> String {
        format!("{}/routes/{route}", self.prefix)
    }

    /// Where `route`'s record goes when it cannot be read.
    fn aside(&self, route: &str) -> String {
        format!("{}/aside/{route}", self.prefix)
    }

    /// The route a key of [`Inner::routes`] names.
    fn route_of(&self, key: &[u8]) -> String {
        let key = String::from_utf8_lossy(key);
        key.strip_prefix(&self.routes()).unwrap_or(&key).to_string()
    }

    /// The client, connected at the first call (within the call's bound).
    async fn client(&self) -> Result<Client, String> {
        let connect = || async {
            let mut options = ConnectOptions::new()
                .with_connect_timeout(self.timeout)
                .with_timeout(self.timeout);
            if self.endpoints.iter().any(|e| e.starts_with("https://")) {
                options = options.with_tls(TlsOptions::new().with_native_roots());
            }
            Client::connect(&self.endpoints, Some(options))
                .await
                .map_err(|e| e.to_string())
        };
        self.client.get_or_try_init(connect).await.cloned()
    }

    /// Runs `call` on the client within the store's timeout; counts and says why it failed.
    async fn bounded<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, String>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let run = async {
            let client = self.client().await?;
            call(client).await.map_err(|e| e.to_string())
        };
        let answer = match tokio::time::timeout(self.timeout, run).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        metrics::fleet_store_up(answer.is_ok());
        answer.map_err(|why| {
            metrics::fleet_store_error(op);
            format!("etcd {}: {why}", self.endpoints.join(","))
        })
    }

    /// Every route's record under [`Inner::routes`], and the keys that cannot be records.
    async fn load(&self) -> Result<Loaded, LoadError> {
        let range = self.routes();
        let options = GetOptions::new().with_prefix();
        let got = self
            .bounded(
                "load",
                |mut c| async move { c.get(range, Some(options)).await },
            )
            .await
            .map_err(LoadError)?;
        let at = got.header().map_or(0, |h| h.revision());
        self.loaded_at.store(at, Ordering::SeqCst);
        let mut loaded = Loaded::default();
        for kv in got.kvs() {
            let route = self.route_of(kv.key());
            match check(&route, kv.value()) {
                Ok(()) => loaded.records.push(record(route, kv)),
                Err(why) => loaded.unreadable.push(Unreadable {
                    route: Some(route),
                    why,
                }),
            }
        }
        Ok(loaded)
    }

    /// Writes each of `writes` by compare-and-swap, one transaction each; once etcd fails
    /// to answer, the writes after are not tried (they would wait as long for nothing).
    async fn save(&self, writes: Vec<Write>) -> Vec<Result<Revision, SaveError>> {
        let mut answers = Vec::with_capacity(writes.len());
        let mut down: Option<String> = None;
        for w in writes {
            let answer = match (&down, &w.data) {
                (Some(why), _) => Err(SaveError::Failed(format!("not tried: {why}"))),
                (None, Some(data)) => match check(&w.route, data) {
                    Ok(()) => self.swap(w).await,
                    Err(why) => Err(SaveError::Failed(why)),
                },
                (None, None) => self.swap(w).await,
            };
            if let Err(SaveError::Failed(why)) = &answer {
                down.get_or_insert_with(|| why.clone());
            }
            answers.push(answer);
        }
        answers
    }

    /// One route's compare-and-swap: put or delete if its revision is the expected one,
    /// else the record as it is now.
    async fn swap(&self, w: Write) -> Result<Revision, SaveError> {
        let key = self.key(&w.route);
        let compare = match w.expected {
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
            Some(Revision(r)) => Compare::mod_revision(key.clone(), CompareOp::Equal, signed(r)),
        };
        let write = match w.data {
            Some(data) => TxnOp::put(key.clone(), data, None),
            None => TxnOp::delete(key.clone(), None),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([write])
            .or_else([TxnOp::get(key, None)]);
        let done = self
            .bounded("save", |mut c| async move { c.txn(txn).await })
            .await
            .map_err(SaveError::Failed)?;
        if done.succeeded() {
            let at = done.header().map_or(0, |h| h.revision());
            return Ok(Revision(unsigned(at)));
        }
        let current = done.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(got) => got.kvs().first().map(|kv| record(w.route.clone(), kv)),
            _ => None,
        });
        Err(SaveError::Conflict { current })
    }

    /// Moves each route's record to [`Inner::aside`] in one transaction (if it is still
    /// the record read); says where, or what could not be moved.
    async fn put_aside(&self, routes: Vec<String>) -> Aside {
        let mut failed = Vec::new();
        for route in &routes {
            if let Err(why) = self.move_aside(route).await {
                failed.push(format!("route {route}: {why}"));
            }
        }
        let to = match routes.as_slice() {
            [one] => self.aside(one),
            _ => format!("{}/aside/{{{}}}", self.prefix, routes.join(",")),
        };
        Aside {
            to,
            failed: (!failed.is_empty()).then(|| failed.join("; ")),
        }
    }

    /// Moves `route`'s record aside, unless it changed since it was read here.
    async fn move_aside(&self, route: &str) -> Result<(), String> {
        let key = self.key(route);
        let read = key.clone();
        let got = self
            .bounded("put_aside", |mut c| async move { c.get(read, None).await })
            .await?;
        let Some(kv) = got.kvs().first() else {
            return Ok(());
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([
                TxnOp::put(self.aside(route), kv.value(), None),
                TxnOp::delete(key, None),
            ]);
        let moved = self
            .bounded("put_aside", |mut c| async move { c.txn(txn).await })
            .await?;
        match moved.succeeded() {
            true => Ok(()),
            false => Err("its record was written again meanwhile; it stays".to_string()),
        }
    }
}

/// A record of `route` as etcd holds it in `kv`.
fn record(route: String, kv: &KeyValue) -> Record {
    Record {
        route,
        revision: Revision(unsigned(kv.mod_revision())),
        data: kv.value().to_vec(),
    }
}

/// An etcd revision (never negative) as a [`Revision`]'s number.
fn unsigned(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

/// A [`Revision`]'s number as etcd's (a revision etcd gave never exceeds `i64::MAX`).
fn signed(r: u64) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

// === the watch ===

/// How one watch stream ended.
enum Ended {
    /// etcd forgot changes the watch had not seen (compaction).
    Lost,
    /// Every receiver is gone.
    Dropped,
    /// The stream broke or could not be opened: why.
    Broke(String),
}

/// Follows the records under [`Inner::routes`] from revision `next` (from now when 0),
/// sending each change on `tx`, until the watch is dropped or loses its place; a broken
/// stream is opened again from where it stopped.
async fn follow(inner: Arc<Inner>, tx: broadcast::Sender<Watched>, mut next: i64) {
    loop {
        match watch_once(&inner, &tx, &mut next).await {
            Ended::Dropped => return,
            Ended::Lost => {
                let _ = tx.send(Watched::Lost);
                return;
            }
            Ended::Broke(why) => {
                metrics::fleet_store_up(false);
                metrics::fleet_store_error("watch");
                tracing::warn!(store = %inner.routes(), "the watch on the rollout state broke ({why}); opening it again");
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_RETRY) => {}
                    _ = tx.closed() => return,
                }
            }
        }
    }
}

/// Opens one watch stream from `next` and sends what it sees until it ends; `next` is
/// kept at the revision after the last one seen.
async fn watch_once(inner: &Inner, tx: &broadcast::Sender<Watched>, next: &mut i64) -> Ended {
    let mut options = WatchOptions::new().with_prefix();
    if *next > 0 {
        options = options.with_start_revision(*next);
    }
    let range = inner.routes();
    let opened = inner
        .bounded("watch", |mut c| async move {
            c.watch(range, Some(options)).await
        })
        .await;
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(why) => return Ended::Broke(why),
    };
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = tx.closed() => return Ended::Dropped,
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::Broke("the stream ended".into()),
            Err(e) => return Ended::Broke(e.to_string()),
        };
        if let Some(ended) = take(inner, tx, next, &response) {
            return ended;
        }
    }
}

/// Sends the changes of one watch response; how the watch ended, if it did.
fn take(
    inner: &Inner,
    tx: &broadcast::Sender<Watched>,
    next: &mut i64,
    response: &WatchResponse,
) -> Option<Ended> {
    if response.canceled() {
        return Some(match response.compact_revision() {
            0 => Ended::Broke(format!("cancelled: {}", response.cancel_reason())),
            _ => Ended::Lost,
        });
    }
    if *next == 0 {
        // From now: what comes after the revision the watch was created at.
        *next = response.header().map_or(0, |h| h.revision()) + 1;
    }
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        let route = inner.route_of(kv.key());
        let change = match event.event_type() {
            EventType::Put => Watched::Changed(record(route, kv)),
            EventType::Delete => Watched::Removed {
                route,
                revision: Revision(unsigned(kv.mod_revision())),
            },
        };
        *next = (*next).max(kv.mod_revision() + 1);
        if tx.send(change).is_err() {
            return Some(Ended::Dropped);
        }
    }
    None
}

// === impl EtcdStore ===

impl Store for EtcdStore {
    fn shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "etcd {} {}",
            self.inner.endpoints.join(","),
            self.inner.routes()
        )
    }

    fn load(&self) -> BoxFuture<'_, Result<Loaded, LoadError>> {
        Box::pin(self.inner.load())
    }

    fn save(&self, writes: Vec<Write>) -> BoxFuture<'_, Vec<Result<Revision, SaveError>>> {
        Box::pin(self.inner.save(writes))
    }

    /// Follows the records from the revision after the last load (from now before any),
    /// on a task of the current runtime that ends when the watch is dropped.
    fn watch(&self) -> Watch {
        let (tx, rx) = broadcast::channel(WATCH_BACKLOG);
        let after = self.inner.loaded_at.load(Ordering::SeqCst);
        let next = if after > 0 { after + 1 } else { 0 };
        tokio::spawn(follow(self.inner.clone(), tx, next));
        Watch::new(rx)
    }

    fn put_aside(&self, routes: Vec<String>) -> BoxFuture<'_, Aside> {
        Box::pin(self.inner.put_aside(routes))
    }
}
