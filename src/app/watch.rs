//! Watching the config file: a saved change, a rename-save or symlink swap, or SIGHUP is
//! read once its writes have settled, off the runtime, and offered to the controller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::check::load_file;
use super::error::StartError;
use crate::config::{self, Config};
use crate::rollout::Control;

/// How long a config file must go unchanged (no event, the same size and modification
/// time) before it is read: editors and `kubectl cp` write in several steps.
const SETTLE: Duration = Duration::from_millis(250);
/// A config file that never stops changing is read this long after it began to.
const SETTLE_AT_MOST: Duration = Duration::from_secs(5);

/// Watches the config file's directory (so rename-saves and symlink swaps are seen) and
/// SIGHUP; each change is read once its writes have settled ([`read_settled`]),
/// validated and offered to the controller. `applied` is told each config the
/// controller applies.
pub(super) fn watch_config(
    path: PathBuf,
    initial: Config,
    control: Control,
    mut shutdown: watch::Receiver<bool>,
    applied: impl Fn(&Config) + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    let (watcher, mut rx) = file_watcher(&path)?;
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last: Result<Config, config::Problems> = Ok(initial);
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<()>();
            let forced = tokio::select! {
                Some(()) = rx.recv() => false,
                _ = sighup => true,
                _ = shutdown.changed() => break,
            };
            let result = tokio::select! {
                result = read_settled(&path, &mut rx) => result,
                _ = shutdown.changed() => break,
            };
            // Saves that change nothing (touch, a second event for one save) are not reloads.
            if !forced && last == result {
                continue;
            }
            last = result.clone();
            match control.reload(result).await {
                Ok(generation) => {
                    if let Ok(config) = &last {
                        applied(config);
                    }
                    tracing::info!(target: "switchyard::config", generation, path = %path.display(), "config reloaded")
                }
                Err(problems) => {
                    tracing::warn!(target: "switchyard::config", path = %path.display(), "reload rejected: {problems}")
                }
            }
        }
    }))
}

/// Reads the config at `path` once its writes have settled: no change (no event on
/// `changes`, the same size and modification time) for [`SETTLE`], and none while it
/// was read. A file half written is not read while its writes keep coming; one that
/// never stops changing is read [`SETTLE_AT_MOST`] after this began.
async fn read_settled(
    path: &Path,
    changes: &mut tokio::sync::mpsc::Receiver<()>,
) -> Result<Config, config::Problems> {
    let give_up = Instant::now() + SETTLE_AT_MOST;
    let mut seen = stamp(path).await;
    loop {
        let quiet = (Instant::now() + SETTLE).min(give_up);
        let event = tokio::time::timeout_at(quiet, changes.recv()).await;
        if let Ok(None) = event {
            // The watcher is gone: settle by the clock and the file alone.
            tokio::time::sleep_until(quiet).await;
        }
        let now = stamp(path).await;
        let settled = !matches!(event, Ok(Some(()))) && now == seen;
        seen = now;
        if !settled && Instant::now() < give_up {
            continue;
        }
        let result = read_off_runtime(path).await;
        if stamp(path).await == seen || Instant::now() >= give_up {
            return result;
        }
    }
}

/// What tells one version of a file from the next without reading it: its size and
/// modification time (`None` while it cannot be found).
async fn stamp(path: &Path) -> Option<(u64, Option<std::time::SystemTime>)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// A watcher on the directory of `path`, and where it says that the file may have changed.
fn file_watcher(
    path: &Path,
) -> Result<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>), StartError> {
    use notify::{RecursiveMode, Watcher};
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    let file_name = path.file_name().map(|n| n.to_owned());
    let watched = path.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let ours = ev.paths.iter().any(|p| {
                p == &watched || p.file_name() == file_name.as_deref() || p.ends_with("..data")
            });
            if ours && !ev.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })
    .map_err(|source| StartError::Watch {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| StartError::Watch { path: dir, source })?;
    Ok((watcher, rx))
}

/// Reads and parses the config on a blocking thread: however large or slow the file,
/// the runtime that serves requests goes on.
async fn read_off_runtime(path: &Path) -> Result<Config, config::Problems> {
    let read = path.to_path_buf();
    match tokio::task::spawn_blocking(move || load_file(&read)).await {
        Ok(result) => result,
        Err(e) => Err(config::Problems(vec![config::Problem {
            path: String::new(),
            line: None,
            message: format!("loading the config failed: {e}"),
        }])),
    }
}
