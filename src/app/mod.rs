//! The composition root: starts a switchyard from a config (the controller, the data
//! plane and the admin API on their listeners, the config watcher) and stops it. The
//! controller publishes; the data plane and the admin API read what it publishes.

mod check;
mod error;
mod watch;

pub use check::{check_file, load_file};
pub use error::StartError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

use crate::admin;
use crate::config::Config;
use crate::proxy::{DataPlane, Proxy};
use crate::rollout::controller::Controller;
use crate::rollout::{Control, Statuses};
use crate::server::{serve_connections, Bounds, Serving};
use crate::snapshot::Snapshot;
use crate::store;
use crate::telemetry::metrics;

/// What the parts of a running switchyard share, as the server composed them.
pub struct Shared {
    /// The routing snapshot in force (the controller stores, the data plane loads).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Every route's rollout status as last published by the controller.
    pub status: Arc<ArcSwap<Statuses>>,
    /// True once a valid config is loaded and the data plane listens.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// A running switchyard.
pub struct Running {
    /// Where the data plane listens (the real port when the config said 0).
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub control: Control,
    shutdown: signal::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the proxy, the admin API and the controller; watches `config_path` for changes when given.
pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Running, StartError> {
    let data = bind(config.listen).await?;
    let admin_listener = bind(config.admin.listen).await?;
    let data_addr = data.local_addr().expect("bound");
    let admin_addr = admin_listener.local_addr().expect("bound");
    let header_timeout = config.limits.header_timeout.0;
    let idle_timeout = config.limits.idle_timeout.0;
    let data_bounds = Bounds::data(&config.limits);
    let admin_bounds = Bounds::admin(&config.limits);
    let token = config.admin.token();
    let initial = config.clone();

    let metrics = metrics::install();
    let store = store::open(&config.state);
    let (controller, control) = Controller::start(config, config_path.clone(), store).await;
    let published = controller.published();
    let shared = Arc::new(Shared {
        snapshot: published.snapshot.clone(),
        status: published.status.clone(),
        ready: Arc::new(AtomicBool::new(false)),
        metrics: metrics.clone(),
    });
    let (shutdown, rx) = signal::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(controller.run(rx.clone())));
    let plane = Arc::new(DataPlane {
        snapshot: shared.snapshot.clone(),
    });
    tasks.push(tokio::spawn(serve_connections(
        "data",
        data,
        Serving::new(header_timeout, idle_timeout, data_bounds.clone()),
        rx.clone(),
        move |peer| TowerToHyperService::new(Proxy::new(plane.clone(), Some(peer.ip()))),
    )));
    let history = Arc::new(admin::history::History::new());
    tasks.push(tokio::spawn(
        history.clone().run(published.clone(), rx.clone()),
    ));
    let sources = admin::Sources {
        published,
        ready: shared.ready.clone(),
        metrics,
        history,
    };
    let admin = admin::Admin::new(sources, control.clone(), token);
    tasks.push(tokio::spawn(serve_connections(
        "admin",
        admin_listener,
        Serving::admin(header_timeout, idle_timeout, admin_bounds.clone()),
        rx.clone(),
        move |peer| admin.service(peer.ip()),
    )));
    if let Some(path) = config_path {
        let applied = move |config: &Config| {
            data_bounds.reload(&config.limits);
            admin_bounds.reload(&config.limits);
        };
        let watch = watch::watch_config(path, initial, control.clone(), rx.clone(), applied)?;
        tasks.push(watch);
    }
    shared.ready.store(true, Ordering::Release);
    tracing::info!(%data_addr, %admin_addr, "switchyard is serving");
    Ok(Running {
        data_addr,
        admin_addr,
        shared,
        control,
        shutdown,
        tasks,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (at most `limits.drain_timeout`),
    /// closes the connections still open, stops the tasks.
    pub async fn shutdown(self) {
        self.shared.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
