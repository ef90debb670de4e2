//! The persisted rollout state: survives restarts, consulted only for the same revision.
//!
//! One file holds every route's state, each consulted only for its own route and
//! revision. Written atomically (write a temporary file, fsync, rename) after every
//! transition.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Event, Phase, Rollout};

/// What is written to `state.path`: every route's state, in route order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub routes: Vec<Persisted>,
}

/// A state file as read: the one-route form written before routes, a single [`Persisted`]
/// object, is read too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Routes(StateFile),
    One(Persisted),
}

/// One route's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub route: String,
    /// The plan's revision, hex.
    pub revision: String,
    pub phase: Phase,
    pub step: usize,
    /// Wall-clock start of the current step (ms since the epoch), shifted by time paused.
    pub step_started_ms: u64,
    #[serde(default)]
    pub paused_at_ms: Option<u64>,
    #[serde(default)]
    pub promoted_at_ms: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time of a tokio instant (now ± the difference).
fn wall(at: Instant, now: Instant, wall_now: SystemTime) -> u64 {
    let w = if at <= now {
        wall_now - (now - at)
    } else {
        wall_now + (at - now)
    };
    unix_ms(w)
}

/// The tokio instant of a wall-clock time (never later than `now`).
fn instant(ms: u64, now: Instant, wall_now: SystemTime) -> Instant {
    let ago = unix_ms(wall_now).saturating_sub(ms);
    now.checked_sub(Duration::from_millis(ago)).unwrap_or(now)
}

pub fn revision_hex(revision: u64) -> String {
    format!("{revision:016x}")
}

impl Persisted {
    /// The state of `rollout` as of now.
    pub fn of(route: &str, r: &Rollout, now: Instant) -> Persisted {
        let wall_now = SystemTime::now();
        Persisted {
            route: route.to_string(),
            revision: revision_hex(r.plan.revision),
            phase: r.phase,
            step: r.step,
            step_started_ms: wall(r.step_started, now, wall_now),
            paused_at_ms: r.paused_at.map(|p| wall(p, now, wall_now)),
            promoted_at_ms: r.promoted_at.map(|p| wall(p, now, wall_now)),
            reason: r.reason.clone(),
            events: r.events.iter().cloned().collect(),
        }
    }

    /// Applies this state to a fresh rollout of the same route and revision; false (and
    /// nothing changed) otherwise.
    pub fn restore_into(&self, route: &str, r: &mut Rollout, now: Instant) -> bool {
        if self.route != route
            || self.revision != revision_hex(r.plan.revision)
            || self.step >= r.plan.steps.len().max(1)
        {
            return false;
        }
        if r.phase == Phase::Idle || self.phase == Phase::Idle {
            return false;
        }
        let wall_now = SystemTime::now();
        r.phase = self.phase;
        r.step = self.step;
        r.step_started = instant(self.step_started_ms, now, wall_now);
        r.paused_at = self.paused_at_ms.map(|p| instant(p, now, wall_now));
        r.promoted_at = self.promoted_at_ms.map(|p| instant(p, now, wall_now));
        r.reason = self.reason.clone();
        r.events = self.events.iter().cloned().collect();
        true
    }
}

/// Reads the state file; a missing or unreadable file is `None` (and logged when unreadable).
pub fn load(path: &Path) -> Option<StateFile> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read rollout state; starting fresh");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(Stored::Routes(file)) => Some(file),
        Ok(Stored::One(p)) => Some(StateFile { routes: vec![p] }),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "rollout state is corrupt; starting fresh");
            None
        }
    }
}

/// Writes the state atomically: a reader sees the old file or the new one, never half of one.
pub fn save(path: &Path, state: &StateFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
