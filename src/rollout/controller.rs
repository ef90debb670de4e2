//! The controller: the one task that owns every route's rollout and writes the snapshot.
//!
//! Config reloads and admin commands arrive here as [`Msg`]s, fast-fail trips as
//! [`Trip`]s from the data plane's tripwires, analysis ticks as timer deadlines. Each
//! route has its own rollout ([`RouteRollout`]): its state, analysis, tripwire and events;
//! a control, a trip or a tick moves one route and leaves the others where they are.
//! After each change the controller builds the next [`Snapshot`] (every route's routing),
//! publishes it with one `store`, publishes the statuses, and persists every route's state
//! through the [`Store`] the composition root chose (it knows no path).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

use super::analysis::{self, GateOutcome, Verdict};
use super::machine::{since, NotAllowed, Phase, Plan, Rollout, Trigger};
use super::persist::{self, Entry, Persisted, Restore};
use super::sequential;
use super::status::{self, AnalysisStatus, ConfigStatus, StateStatus, Status, Statuses};
use super::step::{Counters, StepKey, StepSums};
use crate::config::{AnalysisConfig, Config, Hold, Problems, RolloutConfig, Route};
use crate::observe::Observers;
use crate::snapshot::{Backend, Backends, Builder, Routing, Snapshot};
use crate::store::{self, LoadError, Loaded, Revision, SaveError, Store, Watch, Watched, Write};
use crate::telemetry::now_rfc3339;
use crate::telemetry::{metrics, Trip, Tripwire};

/// An operator's control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Promote { full: bool },
    Pause { reason: Option<String> },
    Resume,
    Rollback { reason: Option<String> },
    Retry,
}

/// A message to the controller.
pub enum Msg {
    Control {
        /// The route's name; `None` addresses the route the unscoped paths do
        /// ([`status::unscoped`]).
        route: Option<String>,
        action: Action,
        reply: oneshot::Sender<Result<Arc<Status>, ControlError>>,
    },
    /// A config file was read again: a valid config to apply, or why it was rejected.
    Reload {
        result: Result<Box<Config>, Problems>,
        reply: Option<oneshot::Sender<Result<u64, Problems>>>,
    },
}

/// Where the controller publishes: the routing snapshot the data plane reads, and the
/// routes' statuses the admin API shows. The controller is the only writer of both.
#[derive(Clone)]
pub struct Published {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub status: Arc<ArcSwap<Statuses>>,
}

/// Why a control did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("no route named {name} (routes: {})", .routes.join(", "))]
    UnknownRoute { name: String, routes: Vec<String> },
    #[error("several routes are configured ({}): name one, /api/v1/routes/NAME/...", .routes.join(", "))]
    RouteNeeded { routes: Vec<String> },
    #[error("the controller has stopped")]
    Stopped,
    /// The shared store cannot be written: only controls toward safety take effect.
    #[error("nothing changed: the rollout state store cannot be reached ({0}); only pause and rollback take effect until it is back")]
    StoreLost(String),
}

/// A handle to send controls and reloads to the controller.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Msg>,
}

impl Control {
    /// Applies `action` to the route the unscoped paths address (`default`, or the only
    /// route) and answers with its new status.
    pub async fn send(&self, action: Action) -> Result<Arc<Status>, ControlError> {
        self.send_to(None, action).await
    }

    /// Applies `action` to the route named `route` (`None`: as [`Control::send`]) and
    /// answers with its new status.
    pub async fn send_to(
        &self,
        route: Option<&str>,
        action: Action,
    ) -> Result<Arc<Status>, ControlError> {
        let (reply, rx) = oneshot::channel();
        let route = route.map(str::to_owned);
        self.tx
            .send(Msg::Control {
                route,
                action,
                reply,
            })
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    /// Offers a re-read config; answers with the new generation, or the problems.
    pub async fn reload(&self, result: Result<Config, Problems>) -> Result<u64, Problems> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reload {
            result: result.map(Box::new),
            reply: Some(reply),
        };
        let stopped = || {
            Problems(vec![crate::config::Problem {
                path: String::new(),
                line: None,
                message: "the controller has stopped".into(),
            }])
        };
        self.tx.send(msg).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The settings read once at start (listeners, admin token, client timeouts) that differ
/// between `old` and `new`, by their config path.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin.listen != new.admin.listen {
        changed.push("admin.listen");
    }
    if old.admin.token_env != new.admin.token_env {
        changed.push("admin.token_env");
    }
    if old.limits.header_timeout != new.limits.header_timeout {
        changed.push("limits.header_timeout");
    }
    if old.limits.idle_timeout != new.limits.idle_timeout {
        changed.push("limits.idle_timeout");
    }
    // The store is chosen once, by whoever starts the controller.
    if old.state.path != new.state.path {
        changed.push("state.path");
    }
    if old.state.store != new.state.store {
        changed.push("state.store");
    }
    if old.state.etcd != new.state.etcd {
        changed.push("state.etcd");
    }
    if old.fleet != new.fleet {
        changed.push("fleet");
    }
    changed
}

/// How long a promotion is watched when no `analysis.after_promotion` says.
const DEFAULT_AFTER_PROMOTION: std::time::Duration = std::time::Duration::from_secs(300);

/// Capacity of the controller's queue of controls and reloads.
const QUEUE: usize = 1024;

/// Capacity of the trips queue; tripwires on the request path only `try_send`, and one
/// trip per rollout is all that counts.
const TRIPS: usize = 16;

/// The rollout controller.
pub struct Controller {
    config: Config,
    config_path: Option<PathBuf>,
    generation: u64,
    last_error: Option<String>,
    /// Where every route's state is written; `None`: nowhere (`state.path: null`).
    store: Option<Arc<dyn Store>>,
    /// The store's revision of each route's record, as last read or written.
    revisions: HashMap<String, Revision>,
    /// Each route's state as last read or written: a route still in it is not written.
    known: HashMap<String, Persisted>,
    /// Why the store could not be read, while it cannot: nothing is written until it is.
    unread: Option<Unread>,
    /// What became of the last write of the state.
    state: StateStatus,
    /// Why the last write could not reach the store (not a conflict), while it cannot.
    unreachable: Option<String>,
    /// The other replicas' writes to a shared store; `None` for a local store (no one
    /// else writes it), or while the store is read again.
    watch: Option<Watch>,
    /// When to read the store again, after a watch lost its place and it could not be.
    rewatch_at: Option<Instant>,
    /// Every route's rollout, in route order.
    routes: Vec<RouteRollout>,
    /// The last rollout id given out: ids are unique across routes.
    last_id: u64,
    backends: Backends,
    /// What the current config fixes in every snapshot.
    builder: Builder,
    published: Published,
    rx: mpsc::Receiver<Msg>,
    /// Given to each tripwire; read by [`Controller::run`].
    trip_tx: mpsc::Sender<Trip>,
    trips: mpsc::Receiver<Trip>,
}

/// What a write of the state came to, beyond what [`StateStatus`] keeps.
#[derive(Debug, Default)]
struct Wrote {
    /// Another replica's state of a route was taken in place of this one's.
    adopted: bool,
    /// A rollback was made again on top of another replica's write: write it again.
    rewrite: bool,
}

/// How many writes of the state one change makes at most: a rollback that met another
/// replica's write is made again on top of it and written again.
const WRITE_ATTEMPTS: usize = 3;

/// The next change `watch` sees; never, without a watch.
async fn watched(watch: &mut Option<Watch>) -> Option<Watched> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// What was read of the store: each route's revision and state (when it could be read).
type Read = (HashMap<String, Revision>, HashMap<String, Persisted>);

/// A store that could not be read: why, and when to try again.
struct Unread {
    why: String,
    retry_at: Instant,
}

/// How long after a failed read of the store it is read again.
const LOAD_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// One route's rollout as the controller drives it.
struct RouteRollout {
    route: Route,
    rollout: Rollout,
    /// Changes with every new rollout and every retry, so a stale trip is ignored.
    id: u64,
    tripwire: Option<Arc<Tripwire>>,
    next_eval: Option<Instant>,
    /// The candidate's and the stable's samples since the step began.
    since_step: StepSums,
    /// A resume asks the served counts be taken anew at the next publish.
    recount_served: bool,
    /// Its step is held while the shared store is out of reach (said once in an event).
    held_for_store: bool,
}

impl Controller {
    /// Builds the controller on the store `config.state` names ([`store::open`]: the state
    /// file, or none), as [`Controller::start`] does; for a controller driven on its own.
    /// Only for a local store: with `state.store: etcd` it panics (use `start`).
    pub fn new(config: Config, config_path: Option<PathBuf>) -> (Controller, Control) {
        let store = store::open(&config.state);
        // The local stores do their work when asked: nothing here waits.
        Controller::start(config, config_path, store)
            .now_or_never()
            .expect("a local store answers at once")
    }

    /// Builds the controller from a validated config, restoring each route's persisted
    /// state of the same revision from `store`, and publishes the first snapshot and
    /// statuses. State that cannot be used does not stop the start: it is put aside and
    /// the routes it leaves in doubt start safe ([`Rollout::safe`]).
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
        store: Option<Arc<dyn Store>>,
    ) -> (Controller, Control) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (trip_tx, trips) = mpsc::channel(TRIPS);
        let now = Instant::now();
        let mut backends = Backends::default();
        backends.sync(&config);
        let builder = Builder::new(&config, &backends, None);
        let mut last_id = 0;
        let mut routes = config
            .routes()
            .into_iter()
            .map(|route| {
                last_id += 1;
                RouteRollout::new(route, &config, last_id, now)
            })
            .collect::<Vec<_>>();
        let restored = match &store {
            Some(store) => restore(&mut routes, store.as_ref(), now).await,
            None => Ok(Read::default()),
        };
        // Watched from what was just read: the other replicas' writes from now on.
        let watch = store.as_ref().filter(|s| s.shared()).map(|s| s.watch());
        let ((revisions, known), unread) = match restored {
            Ok(read) => (read, None),
            Err(why) => {
                let retry_at = now + LOAD_RETRY;
                (Read::default(), Some(Unread { why, retry_at }))
            }
        };
        for r in &mut routes {
            r.arm(now, &trip_tx);
        }
        let generation = 1;
        let first = builder.build(generation, routes.iter().map(RouteRollout::routing));
        let mut c = Controller {
            config,
            config_path,
            generation,
            last_error: None,
            store,
            revisions,
            known,
            unread,
            state: StateStatus::default(),
            unreachable: None,
            watch,
            rewatch_at: None,
            routes,
            last_id,
            backends,
            builder,
            published: Published {
                snapshot: Arc::new(ArcSwap::from_pointee(first)),
                status: Arc::new(ArcSwap::from_pointee(Statuses::default())),
            },
            rx,
            trip_tx,
            trips,
        };
        c.begin_steps();
        c.report(now, true).await;
        (c, Control { tx })
    }

    /// Where this controller publishes its snapshots and statuses.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// Runs until `shutdown` flips to true (or every sender is gone).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Some(trip) = self.trips.recv() => self.trip(trip).await,
                w = watched(&mut self.watch) => self.follow(w).await,
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.tick(Instant::now()).await;
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    async fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Control {
                route,
                action,
                reply,
            } => {
                let _ = reply.send(self.control(route.as_deref(), action, now).await);
            }
            Msg::Reload { result, reply } => {
                let answer = match result {
                    Ok(config) => {
                        self.apply(*config, now).await;
                        Ok(self.generation)
                    }
                    Err(problems) => {
                        tracing::error!(target: "switchyard::config", "config rejected, the previous one keeps serving:\n{problems}");
                        metrics::config_reload("rejected");
                        self.last_error = Some(problems.to_string());
                        self.publish(false).await;
                        Err(problems)
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// A tripwire saw too many consecutive candidate failures: roll its route back at
    /// once, unless the trip belongs to a rollout that has since been replaced.
    async fn trip(&mut self, Trip { rollout, failures }: Trip) {
        let Some(r) = self.routes.iter_mut().find(|r| r.id == rollout) else {
            return;
        };
        let reason =
            format!("{failures} consecutive candidate failures (fast_rollback.consecutive_errors)");
        if r.rollout.rollback(reason, Trigger::Fast).is_ok() {
            metrics::rollback(&r.route.name, Trigger::Fast.as_str());
            self.publish(true).await;
        }
    }

    /// The index of the route a control addresses.
    fn addressed(&self, route: Option<&str>) -> Result<usize, ControlError> {
        let names: Vec<&str> = self.routes.iter().map(|r| r.route.name.as_str()).collect();
        let found = match route {
            Some(name) => names.iter().position(|n| *n == name),
            None => status::unscoped(&names),
        };
        let routes = || names.iter().map(|n| n.to_string()).collect();
        found.ok_or_else(|| match route {
            Some(name) => ControlError::UnknownRoute {
                name: name.to_string(),
                routes: routes(),
            },
            None => ControlError::RouteNeeded { routes: routes() },
        })
    }

    async fn control(
        &mut self,
        route: Option<&str>,
        action: Action,
        now: Instant,
    ) -> Result<Arc<Status>, ControlError> {
        let i = self.addressed(route)?;
        if let Some(why) = self.store_lost() {
            if !matches!(action, Action::Pause { .. } | Action::Rollback { .. }) {
                return Err(ControlError::StoreLost(why));
            }
        }
        let retry = action == Action::Retry;
        let id = self.last_id + 1;
        self.routes[i].control(action, id, now)?;
        if retry {
            self.last_id = id;
        }
        self.publish(true).await;
        Ok(self.published.status.load().routes[i].clone())
    }

    /// Applies a valid config: a route whose revision changed starts a new rollout; the
    /// others go on where they are; an added route starts, a removed one goes.
    async fn apply(&mut self, config: Config, now: Instant) {
        for what in restart_only_changes(&self.config, &config) {
            tracing::warn!(target: "switchyard::config", "{what} changed in the config file; it takes effect only at the next start (the running value stays)");
        }
        self.backends.sync(&config);
        self.builder = Builder::new(&config, &self.backends, Some(&self.builder));
        self.generation += 1;
        self.last_error = None;
        metrics::config_reload("applied");
        let mut before: HashMap<String, RouteRollout> = self
            .routes
            .drain(..)
            .map(|r| (r.route.name.clone(), r))
            .collect();
        let mut routes = Vec::new();
        for route in config.routes() {
            let plan = Plan::of(&route, &config);
            let r = match before.remove(&route.name) {
                Some(mut r) if plan.revision == r.rollout.plan.revision => {
                    r.route = route;
                    if r.next_eval.is_none() {
                        r.schedule_eval(now);
                    }
                    r
                }
                // A finished rollout of the same stable and candidate stays finished:
                // editing its steps, holds or gates sends nobody back.
                Some(mut r) if r.rollout.is_finished() && plan.pair == r.rollout.plan.pair => {
                    r.keep_finished(route, plan, self.generation, now);
                    r
                }
                Some(mut r) => {
                    self.last_id += 1;
                    r.restart(route, plan, self.generation, self.last_id, now);
                    r
                }
                None => {
                    self.last_id += 1;
                    let mut r = RouteRollout::new(route, &config, self.last_id, now);
                    let msg = format!("config generation {} added this route", self.generation);
                    r.rollout.event("reload", msg);
                    r
                }
            };
            routes.push(r);
        }
        for name in before.keys() {
            tracing::info!(target: "switchyard::config", route = %name, "route removed by config generation {}", self.generation);
        }
        tracing::info!(target: "switchyard::config", generation = self.generation, "config applied");
        self.routes = routes;
        self.config = config;
        self.publish(true).await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let retry = match &self.unread {
            Some(u) => Some(u.retry_at),
            // A shared store whose last write failed is written again soon.
            None => self.store_is_lost().then(|| now + LOAD_RETRY),
        };
        self.routes
            .iter()
            .filter_map(|r| r.next_deadline(now))
            .chain(retry)
            .chain(self.rewatch_at)
            .min()
    }

    /// Runs what is due at `now` on every route: evaluations, steps whose hold has ended,
    /// and a read of the store that could not be read before.
    pub async fn tick(&mut self, now: Instant) {
        if self.rewatch_at.is_some_and(|t| t <= now) && self.relist(now).await {
            // The other replicas' state is published here, not written back.
            self.publish(false).await;
        }
        let mut changed = self.read_again(now).await;
        let lost = self.store_lost();
        for r in &mut self.routes {
            let observers = self.builder.observers(&r.route.name);
            changed |= r.tick(now, &self.backends, observers, lost.as_deref());
        }
        // A shared store out of reach is written again at each tick: the first write
        // that succeeds ends the hold.
        self.publish(changed || lost.is_some()).await;
    }

    /// Why the shared store cannot be relied on, while it cannot: it could not be read, or
    /// the last write failed. `None` for a local store, which holds nothing back.
    fn store_lost(&self) -> Option<String> {
        if !self.store_is_lost() {
            return None;
        }
        let store = self.store.as_ref()?;
        let why = match &self.unread {
            Some(unread) => Some(unread.why.clone()),
            None => self.unreachable.clone(),
        }?;
        Some(format!("{}: {why}", store.describe()))
    }

    /// Whether [`store_lost`](Controller::store_lost) has a reason, without writing it:
    /// the run loop asks at every turn.
    fn store_is_lost(&self) -> bool {
        self.store.as_ref().is_some_and(|s| s.shared())
            && (self.unread.is_some() || self.unreachable.is_some())
    }

    /// Builds and stores the next snapshot, then the statuses; persists the state when asked.
    async fn publish(&mut self, persist: bool) {
        let now = Instant::now();
        self.swap_snapshot(now);
        self.report(now, persist).await;
    }

    /// Builds and stores the next snapshot, and starts the sums of the steps it begins.
    fn swap_snapshot(&mut self, now: Instant) {
        for r in &mut self.routes {
            r.arm(now, &self.trip_tx);
        }
        let routing = self.routes.iter().map(RouteRollout::routing);
        let next = self.builder.build(self.generation, routing);
        self.published.snapshot.store(Arc::new(next));
        self.begin_steps();
    }

    /// Starts the running sums of each route's step that has just begun.
    fn begin_steps(&mut self) {
        for r in &mut self.routes {
            let observers = self.builder.observers(&r.route.name);
            r.begin_step(&self.backends, observers);
        }
    }

    /// Persists the state when asked, then publishes the statuses (with what became of
    /// that write) and the rollout metrics.
    async fn report(&mut self, now: Instant, persist: bool) {
        let mut attempts = 0;
        while persist && attempts < WRITE_ATTEMPTS {
            attempts += 1;
            let wrote = self.persist(now).await;
            if wrote.adopted {
                // Another replica's state of a route is in force here now.
                self.swap_snapshot(now);
            }
            if !wrote.rewrite {
                break;
            }
        }
        let config = ConfigStatus {
            generation: self.generation,
            last_error: self.last_error.clone(),
            path: self.config_path.as_ref().map(|p| p.display().to_string()),
        };
        let state = StateStatus {
            path: self.store.as_ref().map(|s| s.describe()),
            ..self.state.clone()
        };
        let routes = self
            .routes
            .iter()
            .map(|r| Arc::new(r.status(now, config.clone(), state.clone())))
            .collect();
        self.published.status.store(Arc::new(Statuses { routes }));
        metrics::generation(self.generation);
        for r in &self.routes {
            r.gauges();
        }
    }

    /// Reads the store again when it could not be read yet and it is time to; once it
    /// can be, each route still as the failed read left it (paused on its stable, or
    /// idle) is restored from it as at a start, and the others keep what an operator made
    /// of them. Whether a route changed.
    async fn read_again(&mut self, now: Instant) -> bool {
        let (Some(unread), Some(store)) = (&mut self.unread, self.store.clone()) else {
            return false;
        };
        if unread.retry_at > now {
            return false;
        }
        let loaded = match store.load().await {
            Ok(loaded) => loaded,
            Err(e) => {
                unread.why = unreachable(&store.describe(), &e);
                unread.retry_at = now + LOAD_RETRY;
                return false;
            }
        };
        tracing::info!(store = %store.describe(), "the rollout state store can be read again; routes paused for want of it are restored from it");
        self.unread = None;
        let (mut untouched, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.routes)
            .into_iter()
            .partition(|r| r.rollout.safe || r.rollout.phase == Phase::Idle);
        for r in &mut untouched {
            self.last_id += 1;
            *r = RouteRollout::new(r.route.clone(), &self.config, self.last_id, now);
        }
        (self.revisions, self.known) =
            restore_loaded(&mut untouched, loaded, store.as_ref(), now).await;
        let order = self.config.routes();
        let mut all: Vec<RouteRollout> = untouched.into_iter().chain(kept).collect();
        all.sort_by_key(|r| order.iter().position(|o| o.name == r.route.name));
        // The routes an operator moved meanwhile replace, at the next write, what the
        // store holds of them: their revisions are the store's now.
        self.routes = all;
        true
    }

    /// Writes each route's state that is not the one last read or written of it
    /// ([`Controller::writes`]), by compare-and-swap on that revision, and removes the records of routes no longer configured. A
    /// failed write is counted, logged once for each new error and kept for the statuses
    /// (`state.last_error`) until a write succeeds: the change is in force all the same.
    /// Nothing is written to a store that could not be read: what it holds is not known.
    /// A route another replica wrote first takes that replica's state ([`Controller::beaten`]).
    async fn persist(&mut self, now: Instant) -> Wrote {
        let mut wrote = Wrote::default();
        let Some(store) = self.store.clone() else {
            self.state = StateStatus::default();
            return wrote;
        };
        if let Some(unread) = &self.unread {
            self.state.last_error = Some(format!("not written: {}", unread.why));
            return wrote;
        }
        let (writes, states): (Vec<Write>, Vec<Option<Persisted>>) =
            self.writes(now).into_iter().unzip();
        if writes.is_empty() {
            // What is in force is what the store holds: nothing is left unwritten.
            self.unreachable = None;
            self.state.last_error = None;
            return wrote;
        }
        let routes: Vec<String> = writes.iter().map(|w| w.route.clone()).collect();
        let answers = store.save(writes).await;
        self.unreachable = answers.iter().find_map(|a| match a {
            Err(SaveError::Failed(why)) => Some(why.clone()),
            _ => None,
        });
        let mut failed = None;
        for ((route, state), answer) in routes.into_iter().zip(states).zip(answers) {
            match (answer, state) {
                (Ok(revision), Some(state)) => {
                    self.revisions.insert(route.clone(), revision);
                    self.known.insert(route, state);
                }
                (Ok(_), None) => {
                    self.revisions.remove(&route);
                    self.known.remove(&route);
                }
                (Err(SaveError::Conflict { current: Some(c) }), _) => {
                    wrote.adopted = true;
                    wrote.rewrite |= self.beaten(&route, &c, now);
                }
                (Err(e), _) => {
                    let e = self.write_failed(&route, e, store.as_ref());
                    failed.get_or_insert(e);
                }
            }
        }
        self.written(failed, store.as_ref());
        wrote
    }

    /// The writes of the state as of `now`, each with the state it stores (`None`: a
    /// removal): every route whose state is not the one last read or written of it, and
    /// the removal of each route no longer configured.
    fn writes(&self, now: Instant) -> Vec<(Write, Option<Persisted>)> {
        let mut writes: Vec<(Write, Option<Persisted>)> = self
            .routes
            .iter()
            .map(|r| (r, Persisted::of(&r.route.name, &r.rollout, now)))
            .filter(|(r, state)| {
                let known = self.known.get(&r.route.name);
                !(known.is_some_and(|k| k.same_as(state))
                    && self.revisions.contains_key(&r.route.name))
            })
            .map(|(r, state)| {
                let write = Write {
                    route: r.route.name.clone(),
                    expected: self.revisions.get(&r.route.name).copied(),
                    data: Some(state.record()),
                };
                (write, Some(state))
            })
            .collect();
        let gone = self
            .revisions
            .iter()
            .filter(|(name, _)| !self.routes.iter().any(|r| r.route.name == **name));
        writes.extend(gone.map(|(name, revision)| {
            let write = Write {
                route: name.clone(),
                expected: Some(*revision),
                data: None,
            };
            (write, None)
        }));
        writes
    }

    /// Takes in what a write of `route`'s record failed on, and says why for the status.
    ///
    /// A conflict with a record someone else removed is answered by writing the route
    /// anew at the next write (one they wrote is taken in by [`Controller::beaten`]).
    fn write_failed(&mut self, route: &str, e: SaveError, store: &dyn Store) -> String {
        match e {
            SaveError::Failed(why) => why,
            SaveError::Conflict { current } => {
                let why = format!(
                    "route {route}: {}",
                    SaveError::Conflict {
                        current: current.clone()
                    }
                );
                tracing::warn!(store = %store.describe(), "rollout state not written, {why}: the next write replaces it");
                self.known.remove(route);
                match current {
                    Some(c) => self.revisions.insert(route.to_string(), c.revision),
                    None => self.revisions.remove(route),
                };
                why
            }
        }
    }

    /// Keeps what became of a write of the state: when it was written, or why not.
    fn written(&mut self, failed: Option<String>, store: &dyn Store) {
        let place = store.describe();
        match failed {
            None => {
                if let Some(e) = self.state.last_error.take() {
                    tracing::info!(path = %place, "rollout state written again (the last write failed: {e})");
                }
                self.state.last_written = Some(now_rfc3339());
            }
            Some(e) => {
                metrics::state_write_error();
                if self.state.last_error.as_ref() != Some(&e) {
                    tracing::error!(path = %place, error = %e, "cannot persist the rollout state: changes are in force, but a restart would not find them");
                }
                self.state.last_error = Some(e);
            }
        }
    }
}

/// Restores every route of `routes` from the records of `store` ([`restore_loaded`]), and
/// answers the store's revision of each route's record. A store that cannot be reached
/// (an etcd cluster down) starts every route safe ([`Rollout::safe`]), the reason naming
/// the store, and answers why: nothing of it is put aside or overwritten.
async fn restore(
    routes: &mut [RouteRollout],
    store: &dyn Store,
    now: Instant,
) -> Result<Read, String> {
    match store.load().await {
        Ok(loaded) => Ok(restore_loaded(routes, loaded, store, now).await),
        Err(e) => {
            let why = unreachable(&store.describe(), &e);
            tracing::error!(store = %store.describe(), error = %e, "the rollout state store cannot be read; every route starts paused on its stable until it can");
            for r in routes.iter_mut() {
                let plan = r.rollout.plan.clone();
                r.rollout = Rollout::safe(plan, why.clone(), now);
            }
            Err(why)
        }
    }
}

/// Why the state cannot be restored from the store at `place`, which could not be read.
fn unreachable(place: &str, e: &LoadError) -> String {
    format!("rollout state store {place} cannot be read ({e}); read again every {LOAD_RETRY:?}")
}

/// Restores every route of `routes` from `loaded`, read from `store`, and answers the
/// store's revision of each route's record; an empty store is a fresh start. A store
/// whose whole content cannot be read leaves every route in doubt; a record that makes no
/// sense (an unknown phase, a step beyond the plan...) leaves its own route in doubt, the
/// others are restored. When any route is in doubt its state is put aside (`PATH.corrupt`)
/// before anything new is written, and the routes in doubt start safe
/// ([`Rollout::safe`]): paused, all traffic to their stable, the reason and a `state`
/// event naming the file and its copy.
async fn restore_loaded(
    routes: &mut [RouteRollout],
    loaded: Loaded,
    store: &dyn Store,
    now: Instant,
) -> Read {
    let place = store.describe();
    let mut revisions: HashMap<String, Revision> = loaded
        .records
        .iter()
        .map(|r| (r.route.clone(), r.revision))
        .collect();
    let entries: Vec<Entry> = loaded.records.iter().map(Entry::of).collect();
    let mut known = entries
        .iter()
        .filter_map(|e| Some((e.route.clone(), e.state.as_ref().ok()?.clone())))
        .collect();
    let doubts: Vec<Option<String>> = routes
        .iter_mut()
        .map(|r| {
            let unreadable = loaded.unreadable.iter().find(|u| match &u.route {
                None => true,
                Some(name) => *name == r.route.name,
            });
            match unreadable {
                Some(u) if u.route.is_none() => {
                    Some(format!("state file {place} cannot be used ({})", u.why))
                }
                Some(u) => Some(nonsense(&place, &r.route.name, &u.why)),
                None => r.restore(&entries, &place, now).err(),
            }
        })
        .collect();
    restored_as_stored(routes, &mut known, now);
    if doubts.iter().all(Option::is_none) {
        return (revisions, known);
    }
    let in_doubt: Vec<String> = routes
        .iter()
        .zip(&doubts)
        .filter(|(_, d)| d.is_some())
        .map(|(r, _)| r.route.name.clone())
        .collect();
    let aside = store.put_aside(in_doubt.clone()).await;
    let kept = match &aside.failed {
        None => {
            revisions.retain(|name, _| !in_doubt.contains(name));
            format!("kept aside as {}", aside.to)
        }
        Some(e) => format!("could not be kept aside as {} ({e})", aside.to),
    };
    tracing::error!(path = %place, "the rollout state file cannot be trusted, {kept}; the routes it leaves in doubt start paused on their stable");
    for (r, doubt) in routes.iter_mut().zip(doubts) {
        if let Some(why) = doubt {
            let plan = r.rollout.plan.clone();
            r.rollout = Rollout::safe(plan, format!("{why}; {kept}"), now);
        }
    }
    (revisions, known)
}

/// Takes each route of `routes` restored as `known` holds it (but for the event saying
/// so) for stored: a replica that starts writes only what its start changed, and never
/// beats another replica's change with what it has just read.
fn restored_as_stored(
    routes: &[RouteRollout],
    known: &mut HashMap<String, Persisted>,
    now: Instant,
) {
    for r in routes {
        let name = &r.route.name;
        let Some(stored) = known.get(name) else {
            continue;
        };
        let ours = Persisted::of(name, &r.rollout, now);
        let mut restored = ours.clone();
        restored.events.clone_from(&stored.events);
        if stored.same_as(&restored) {
            known.insert(name.clone(), ours);
        }
    }
}

/// Why the state of route `name` in the store at `place` cannot be used.
fn nonsense(place: &str, name: &str, why: &str) -> String {
    format!("state file {place}: the entry of route {name} makes no sense ({why})")
}

// === impl RouteRollout ===

impl RouteRollout {
    /// A new rollout of `route` at step 0 (idle without a candidate).
    fn new(route: Route, config: &Config, id: u64, now: Instant) -> RouteRollout {
        let rollout = Rollout::new(Plan::of(&route, config), now);
        let mut r = RouteRollout {
            route,
            rollout,
            id,
            tripwire: None,
            next_eval: None,
            since_step: StepSums::default(),
            recount_served: false,
            held_for_store: false,
        };
        r.schedule_eval(now);
        r
    }

    /// Restores this route's entry of `entries` (read from the store at `place`) when it
    /// is of the same revision, and says in an event what became of it; why, when the
    /// entry makes no sense (nothing is changed then).
    fn restore(&mut self, entries: &[Entry], place: &str, now: Instant) -> Result<(), String> {
        let name = &self.route.name;
        let Some(entry) = entries.iter().find(|e| e.route == *name) else {
            return Ok(());
        };
        let state = entry
            .state
            .as_ref()
            .map_err(|why| nonsense(place, name, why))?;
        let rollout = &mut self.rollout;
        let msg = match state.restore_into(name, rollout, now) {
            Restore::Restored => format!(
                "restored from {place}: {} at step {}",
                rollout.phase.as_str(),
                rollout.step
            ),
            Restore::OtherRevision => {
                format!("state in {place} is for another revision; starting at step 0")
            }
            Restore::Nonsense(why) => return Err(nonsense(place, name, &why)),
        };
        rollout.event("restored", msg);
        Ok(())
    }

    /// A reload changed the steps (or strategy) of this route's finished rollout but not
    /// its stable and candidate: it stays promoted or rolled back under the new plan.
    fn keep_finished(&mut self, route: Route, plan: Plan, generation: u64, now: Instant) {
        let r = &mut self.rollout;
        r.adopt(plan);
        let msg = format!(
            "config generation {generation} changed the steps of this {} rollout; it stays {} (no users move){}",
            r.phase.as_str(),
            r.phase.as_str(),
            finish_hint(&r.plan, r.phase),
        );
        r.event("reload", msg);
        self.route = route;
        if self.next_eval.is_none() {
            self.schedule_eval(now);
        }
    }

    /// A reload changed this route's revision: a new rollout at step 0, its events kept.
    fn restart(&mut self, route: Route, plan: Plan, generation: u64, id: u64, now: Instant) {
        let old = self.rollout.plan.revision;
        let mut events = std::mem::take(&mut self.rollout.events);
        self.rollout = Rollout::new(plan, now);
        events.extend(self.rollout.events.drain(..));
        self.rollout.events = events;
        let msg = format!(
            "config generation {generation} changed the rollout (revision {} → {}): a new rollout starts at step 0",
            persist::revision_hex(old),
            persist::revision_hex(self.rollout.plan.revision)
        );
        self.rollout.event("reload", msg);
        self.route = route;
        self.id = id;
        self.schedule_eval(now);
    }

    fn rollout_config(&self) -> &RolloutConfig {
        &self.route.rollout
    }

    /// Applies an operator's control; `retry_id` is the id a retry gives the new rollout.
    fn control(&mut self, action: Action, retry_id: u64, now: Instant) -> Result<(), NotAllowed> {
        let r = &mut self.rollout;
        match action {
            Action::Promote { full } => r.promote(full, now)?,
            Action::Pause { reason } => r.pause(reason, now)?,
            Action::Resume => {
                r.resume(now)?;
                self.recount_served = true;
            }
            Action::Rollback { reason } => {
                let reason = reason.unwrap_or_else(|| "manual rollback".to_string());
                r.rollback(reason, Trigger::Manual)?;
                metrics::rollback(&self.route.name, Trigger::Manual.as_str());
            }
            Action::Retry => {
                r.retry(now)?;
                self.id = retry_id;
                self.schedule_eval(now);
            }
        }
        Ok(())
    }

    fn schedule_eval(&mut self, now: Instant) {
        self.next_eval = self
            .rollout_config()
            .analysis
            .as_ref()
            .map(|a| now + a.interval.0);
    }

    /// Whether analysis runs in the current phase.
    fn analysing(&self, now: Instant) -> bool {
        self.rollout_config().analysis.is_some() && self.protecting(now)
    }

    fn protecting(&self, now: Instant) -> bool {
        protecting(self.rollout_config(), &self.rollout, now)
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let eval = self.next_eval.filter(|_| self.analysing(now));
        if self.rollout.phase == Phase::Promoted && self.tripwire.is_some() {
            // Wake when the post-promotion watch ends, to disarm the tripwire.
            let end = self
                .rollout
                .promoted_at
                .map(|p| p + after_promotion(self.rollout_config()));
            return earliest(eval, end);
        }
        // A hold that has ended while the step still waits for a passing evaluation is
        // not a deadline (it would wake the task in a busy loop): the next evaluation is.
        let waits_for_pass = self.rollout_config().analysis.is_some()
            && self.rollout.step_verdict != Some(Verdict::Pass);
        let hold = self
            .rollout
            .hold_deadline()
            .filter(|&h| h > now || !waits_for_pass);
        earliest(eval, hold)
    }

    /// Runs what is due at `now`: an evaluation, a step whose hold has ended; true when
    /// something changed.
    fn tick(
        &mut self,
        now: Instant,
        backends: &Backends,
        observers: Option<&Observers>,
        store_lost: Option<&str>,
    ) -> bool {
        let mut changed = false;
        if self.analysing(now) && self.next_eval.is_some_and(|t| t <= now) {
            changed |= self.evaluate(now, backends, observers);
            self.schedule_eval(now);
        }
        changed |= self.hold_for_store(store_lost);
        if self.rollout.phase == Phase::Progressing
            && self.rollout.hold_elapsed(now)
            && store_lost.is_none()
        {
            let analysed = self.rollout_config().analysis.is_some();
            if !analysed {
                self.rollout.advance(now, "hold elapsed");
                changed = true;
            } else if self.rollout.step_verdict == Some(Verdict::Pass) {
                self.rollout.advance(now, "hold elapsed, analysis passed");
                changed = true;
            }
        }
        if self.rollout.phase == Phase::Promoted
            && !self.protecting(now)
            && (self.next_eval.is_some() || self.tripwire.is_some())
        {
            self.next_eval = None;
            self.rollout.event(
                "analysis",
                "post-promotion watch finished: the promotion stands".into(),
            );
            changed = true;
        }
        changed
    }

    /// Says once, in an event, that the route holds its step while the shared store is out
    /// of reach (`store_lost`), and once that it goes on when the store is back; true when
    /// it said something.
    fn hold_for_store(&mut self, store_lost: Option<&str>) -> bool {
        let progressing = self.rollout.phase == Phase::Progressing;
        match (store_lost, self.held_for_store) {
            (Some(why), false) if progressing => {
                let msg = format!("holding at step {}: the rollout state store cannot be reached ({why}); no step is taken until it is back (a rollback still is)", self.rollout.step);
                self.rollout.event("state", msg);
                self.held_for_store = true;
                true
            }
            (None, true) => {
                self.held_for_store = false;
                self.rollout.event(
                    "state",
                    "the rollout state store is back: the rollout goes on".into(),
                );
                true
            }
            _ => false,
        }
    }

    /// One evaluation of the gates on this route's windows (and what its observers say of
    /// the same span); true when it rolled back or paused.
    fn evaluate(
        &mut self,
        now: Instant,
        backends: &Backends,
        observers: Option<&Observers>,
    ) -> bool {
        let Some(a) = self.rollout_config().analysis.clone() else {
            return false;
        };
        match self.judge(&a, now, backends, observers) {
            Some(result) => self.act_on(result, &a, now),
            None => false,
        }
    }

    /// Judges the gates on the candidate's and the stable's figures (over the window and
    /// since the step began) and records the gates' metrics; `None` when a backend of the
    /// plan is not configured.
    fn judge(
        &mut self,
        a: &AnalysisConfig,
        now: Instant,
        backends: &Backends,
        observers: Option<&Observers>,
    ) -> Option<analysis::Analysis> {
        let name = self.route.name.as_str();
        let plan = &self.rollout.plan;
        let (Some(candidate), Some(stable)) = (
            plan.candidate.as_ref().and_then(|c| backends.get(name, c)),
            backends.get(name, &plan.stable),
        ) else {
            return None;
        };
        let span = a.window.0.min(since(now, self.rollout.started));
        let c = candidate.window.summary(now, span);
        let s = stable.window.summary(now, span);
        let model = observers.map_or_else(Default::default, |o| analysis::Model {
            output_drift: o.output_drift(&stable.name, &candidate.name, now),
            output_drift_wait: o.output_drift_wait(&stable.name, &candidate.name, now),
            candidate_labels: o.accuracy(&candidate.name, now, span),
            stable_labels: o.accuracy(&stable.name, now, span),
        });
        let r = &self.rollout;
        let key = self.step_key();
        let windows = (&candidate.window, &stable.window);
        let counters = counters(candidate, stable, observers);
        let so_far = self
            .since_step
            .read(key, r.step_started, windows, counters, now);
        let step = analysis::Step {
            candidate: so_far.candidate.clone(),
            stable: so_far.stable.clone(),
            candidate_labels: so_far.counted.labels.0,
            stable_labels: so_far.counted.labels.1,
            pairs: observers.map(|_| so_far.counted.pairs),
            served: so_far.counted.served,
            weight: r.weight(),
        };
        let (weight, mirror) = (r.weight(), r.mirror());
        let result = analysis::judge(
            &a.gates,
            &analysis::Inputs {
                min_samples: a.min_samples,
                settings: sequential::Settings {
                    confidence: a.confidence,
                    ..Default::default()
                },
                scope: analysis::Scope {
                    mirroring: mirror > 0.0,
                    calibrating: self.route.shadow.calibrate.is_some(),
                    absolute_only: r.phase == Phase::Promoted,
                    unanswered: weight == 0.0 && mirror == 0.0,
                    shadow_only: weight == 0.0 && mirror > 0.0,
                },
                candidate: &c,
                stable: &s,
                model: &model,
                step: &step,
            },
        );
        for g in &result.gates {
            metrics::gate(name, g.gate.as_str(), g.value, g.threshold);
        }
        metrics::evaluation(name, result.verdict.as_str());
        Some(result)
    }

    /// Takes in an evaluation: counts a failure, keeps the verdict for the step, pauses on
    /// a skewed split, and rolls back after `failure_limit` failures in a row; true when it
    /// paused or rolled back.
    fn act_on(&mut self, result: analysis::Analysis, a: &AnalysisConfig, now: Instant) -> bool {
        let name = self.route.name.as_str();
        let r = &mut self.rollout;
        let verdict = result.verdict;
        match verdict {
            Verdict::Fail => r.failures += 1,
            Verdict::Pass => r.failures = 0,
            Verdict::Inconclusive => {}
        }
        let failing = result.failing();
        let skewed = result
            .gates
            .iter()
            .find(|g| g.gate == analysis::Gate::SampleRatio && g.outcome == GateOutcome::Fail)
            .map(|g| g.detail.clone());
        r.step_verdict = Some(verdict);
        r.last_analysis = Some(result);
        // A skewed split is not the candidate's fault: pause (protection goes on) with the
        // reason, for an operator to look at the sticky keys and resume.
        if let Some(why) = skewed {
            if r.pause(Some(format!("sample_ratio: {why}")), now).is_ok() {
                return true;
            }
        }
        if verdict == Verdict::Fail && r.failures >= a.failure_limit {
            let reason = format!(
                "analysis failed {} time{} in a row: {failing}",
                r.failures,
                if r.failures == 1 { "" } else { "s" }
            );
            if r.rollback(reason, Trigger::Auto).is_ok() {
                metrics::rollback(name, Trigger::Auto.as_str());
                return true;
            }
        }
        false
    }

    /// What the step's running sums belong to: a new step, retry or promotion starts them anew.
    fn step_key(&self) -> StepKey {
        let r = &self.rollout;
        (self.id, r.step, r.phase == Phase::Promoted)
    }

    /// Starts the running sums of the current step, if they are not of it already: called
    /// as soon as its routing is published, so its counters count from its first request.
    fn begin_step(&mut self, backends: &Backends, observers: Option<&Observers>) {
        let plan = &self.rollout.plan;
        let name = self.route.name.as_str();
        let (Some(candidate), Some(stable)) = (
            plan.candidate.as_ref().and_then(|c| backends.get(name, c)),
            backends.get(name, &plan.stable),
        ) else {
            return;
        };
        let counters = counters(candidate, stable, observers);
        self.since_step.begin(self.step_key(), counters);
        if std::mem::take(&mut self.recount_served) {
            self.since_step.recount_served(counters.served);
        }
    }

    /// Arms (or keeps, or disarms) the fast-rollback tripwire for the rollout as it is now:
    /// none when off or no longer protecting; the current one while it still fits (same
    /// rollout, same threshold), so its count of consecutive failures goes on.
    fn arm(&mut self, now: Instant, trips: &mpsc::Sender<Trip>) {
        let threshold = self
            .rollout_config()
            .fast_rollback
            .as_ref()
            .map(|f| f.consecutive_errors);
        let current = self.tripwire.take();
        self.tripwire = match threshold {
            Some(n) if self.protecting(now) => match current {
                Some(t) if t.rollout() == self.id && t.threshold() == n => Some(t),
                _ => Some(Arc::new(Tripwire::new(n, self.id, trips.clone()))),
            },
            _ => None,
        };
    }

    /// What this rollout decides of the next snapshot.
    fn routing(&self) -> Routing {
        Routing {
            weight: self.rollout.weight(),
            mirror: self.rollout.mirror(),
            tripwire: self.tripwire.clone(),
            rollout: self.id,
            step: self.rollout.step as u64 + u64::from(self.rollout.phase == Phase::Promoted),
        }
    }

    /// Publishes this route's rollout gauges.
    fn gauges(&self) {
        let r = &self.rollout;
        metrics::rollout(metrics::RolloutGauges {
            route: &self.route.name,
            phase: r.phase.as_str(),
            all_phases: &Phase::ALL,
            step: r.step,
            weight: r.weight(),
            mirror: r.mirror(),
        });
    }

    fn status(&self, now: Instant, config: ConfigStatus, state: StateStatus) -> Status {
        let r = &self.rollout;
        let hold = r.current().and_then(|s| s.hold);
        let in_step = matches!(r.phase, Phase::Progressing | Phase::Paused);
        let hold_remaining_s = match hold {
            Some(Hold::For(d)) if in_step => {
                let at = r.paused_at.unwrap_or(now);
                Some(d.0.saturating_sub(since(at, r.step_started)).as_secs_f64())
            }
            _ => None,
        };
        let analysis = self.rollout_config().analysis.as_ref();
        Status {
            phase: r.phase.as_str().into(),
            strategy: r.plan.strategy.as_str().into(),
            route: self.route.name.clone(),
            stable: r.plan.stable.clone(),
            candidate: r.plan.candidate.clone(),
            step: r.step,
            steps: r.plan.steps.len(),
            weight: r.weight(),
            mirror: r.mirror(),
            reason: r.reason.clone(),
            hold_remaining_s,
            manual_hold: in_step && hold == Some(Hold::Manual),
            revision: persist::revision_hex(r.plan.revision),
            config,
            state,
            analysis: AnalysisStatus {
                enabled: analysis.is_some(),
                last: r.last_analysis.clone(),
                failures: r.failures,
                failure_limit: analysis.map_or(0, |a| a.failure_limit),
            },
            events: r.events.iter().cloned().collect(),
        }
    }
}

/// How an operator finishes a rollout in `phase`, for an event or a status line: name the
/// promoted model `stable` and drop `candidate`; nothing for other phases.
fn finish_hint(plan: &Plan, phase: Phase) -> String {
    match (phase, &plan.candidate) {
        (Phase::Promoted, Some(c)) => format!(
            "; to finish, set `stable: {c}` and remove `candidate` (the route goes idle on {c})"
        ),
        _ => String::new(),
    }
}

/// The counters the step's sums count from: user requests the split sent each side,
/// and the labelled pairs of their answers.
fn counters(candidate: &Backend, stable: &Backend, observers: Option<&Observers>) -> Counters {
    Counters {
        served: (candidate.served(), stable.served()),
        pairs: observers.map_or_else(Default::default, |o| {
            o.pairs_total(&stable.name, &candidate.name)
        }),
        labels: observers.map_or_else(Default::default, |o| {
            (
                o.accuracy_total(&candidate.name),
                o.accuracy_total(&stable.name),
            )
        }),
    }
}

/// How long after promotion the candidate stays watched (analysis and fast rollback).
fn after_promotion(r: &RolloutConfig) -> std::time::Duration {
    r.analysis
        .as_ref()
        .map_or(DEFAULT_AFTER_PROMOTION, |a| a.after_promotion.0)
}

/// Whether a failing candidate is still rolled back: before promotion, and for
/// `after_promotion` after it (then the promotion stands and the old stable may go).
fn protecting(config: &RolloutConfig, rollout: &Rollout, now: Instant) -> bool {
    match rollout.phase {
        Phase::Progressing | Phase::Paused => true,
        Phase::Promoted => rollout
            .promoted_at
            .is_some_and(|p| since(now, p) < after_promotion(config)),
        Phase::Idle | Phase::RolledBack => false,
    }
}

mod follow;

#[cfg(test)]
mod store_tests;

#[cfg(test)]
mod tests {
    use super::restart_only_changes;
    use crate::config::parse;

    #[test]
    fn settings_read_only_at_start_are_named_when_a_reload_changes_them() {
        let base = "listen: 127.0.0.1:8080\nadmin: { listen: 127.0.0.1:9901 }\nlimits: { header_timeout: 10s }\nbackends: { blue: { url: 'http://127.0.0.1:1' } }\nrollout: { stable: blue }\n";
        let old = parse(base).unwrap();
        let same_but_limits =
            parse(&base.replace("header_timeout: 10s", "header_timeout: 10s, max_body: 1MiB"))
                .unwrap();
        assert!(restart_only_changes(&old, &same_but_limits).is_empty());
        let moved = parse(&base.replace("127.0.0.1:8080", "127.0.0.1:8081").replace(
            "header_timeout: 10s",
            "header_timeout: 1m, idle_timeout: 2m",
        ))
        .unwrap();
        assert_eq!(
            restart_only_changes(&old, &moved),
            ["listen", "limits.header_timeout", "limits.idle_timeout"]
        );
        // The store is chosen at start: another state file waits for the next one.
        let elsewhere = parse(&format!("{base}state: {{ path: elsewhere.json }}\n")).unwrap();
        assert_eq!(restart_only_changes(&old, &elsewhere), ["state.path"]);
    }
}
