//! The persisted rollout state: survives restarts, consulted only for the same revision.
//!
//! One file holds every route's state, each consulted only for its own route and
//! revision. Written atomically (write a temporary file, fsync, rename) after every
//! transition. A file that cannot be read or makes no sense is never trusted nor
//! overwritten: it is [kept aside](keep_aside) as `PATH.corrupt` and the routes it
//! leaves in doubt start safe ([`Rollout::safe`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::{Event, Phase, Plan, Rollout};

/// What is written to `state.path`: every route's state, in route order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub routes: Vec<Persisted>,
}

/// The state file as read at start.
#[derive(Debug)]
pub enum Loaded {
    /// There is no file: a fresh start.
    Missing,
    /// Every route's entry, each read on its own.
    Entries(Vec<Entry>),
    /// The file cannot be read or is not a state file at all: why. No entry is trusted.
    Unusable(String),
}

/// One route's entry of the state file, read on its own: its state, or why it makes no
/// sense (an unknown phase, a field of the wrong type...).
#[derive(Debug)]
pub struct Entry {
    pub route: String,
    pub state: Result<Persisted, String>,
}

/// What became of a route's entry of the state file ([`Persisted::restore_into`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The rollout is where the entry says.
    Restored,
    /// The entry is for another revision (the config changed while stopped): the
    /// rollout starts at step 0, as a fresh one.
    OtherRevision,
    /// The entry is for this revision but makes no sense (why: a step beyond the plan, a
    /// phase the plan cannot be in); the rollout is left as it was.
    Nonsense(String),
}

/// One route's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub route: String,
    /// The plan's revision, hex.
    pub revision: String,
    /// The plan's stable and candidate ([`Plan::pair`]), hex: a finished rollout is
    /// restored under a plan of the same pair whatever its steps. Empty in files written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pair: String,
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
    /// Paused on the stable since a state file could not be used ([`Rollout::safe`]).
    #[serde(default)]
    pub safe: bool,
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
            pair: revision_hex(r.plan.pair),
            phase: r.phase,
            step: r.step,
            step_started_ms: wall(r.step_started, now, wall_now),
            paused_at_ms: r.paused_at.map(|p| wall(p, now, wall_now)),
            promoted_at_ms: r.promoted_at.map(|p| wall(p, now, wall_now)),
            reason: r.reason.clone(),
            events: r.events.iter().cloned().collect(),
            safe: r.safe,
        }
    }

    /// Applies this state to a fresh rollout of the same route and revision; nothing is
    /// changed unless the answer is [`Restore::Restored`].
    ///
    /// A promoted or rolled-back rollout is restored under a plan of another revision too,
    /// when its stable and candidate are the same ([`Plan::pair`]): its steps were edited
    /// while switchyard was down, which sends nobody back.
    pub fn restore_into(&self, route: &str, r: &mut Rollout, now: Instant) -> Restore {
        let same_revision = self.revision == revision_hex(r.plan.revision);
        let finished = matches!(self.phase, Phase::Promoted | Phase::RolledBack);
        let same_pair = !self.pair.is_empty() && self.pair == revision_hex(r.plan.pair);
        if self.route != route || !(same_revision || finished && same_pair) {
            return Restore::OtherRevision;
        }
        let steps = r.plan.steps.len();
        let step = match self.phase {
            _ if same_revision => self.step,
            Phase::Promoted => steps.saturating_sub(1),
            _ => self.step.min(steps.saturating_sub(1)),
        };
        let entry = Persisted {
            step,
            ..self.clone()
        };
        if let Err(why) = entry.check(&r.plan) {
            return Restore::Nonsense(why);
        }
        let wall_now = SystemTime::now();
        r.phase = self.phase;
        r.step = step;
        r.step_started = instant(self.step_started_ms, now, wall_now);
        r.paused_at = self.paused_at_ms.map(|p| instant(p, now, wall_now));
        r.promoted_at = self.promoted_at_ms.map(|p| instant(p, now, wall_now));
        r.reason = self.reason.clone();
        r.events = self.events.iter().cloned().collect();
        r.safe = self.safe;
        Restore::Restored
    }

    /// Whether a rollout of `plan` can be in this state: a route without a candidate is
    /// idle and only it; the step is one of the plan's; only a paused rollout is safe.
    fn check(&self, plan: &Plan) -> Result<(), String> {
        let idle = plan.candidate.is_none();
        if idle != (self.phase == Phase::Idle) {
            let which = if idle { "without" } else { "with" };
            return Err(format!(
                "phase {} for a rollout {which} a candidate",
                self.phase.as_str()
            ));
        }
        let steps = plan.steps.len();
        if self.step >= steps.max(1) {
            let s = if steps == 1 { "" } else { "s" };
            return Err(format!("step {} of a plan of {steps} step{s}", self.step));
        }
        if self.safe && self.phase != Phase::Paused {
            return Err(format!("safe while {}", self.phase.as_str()));
        }
        Ok(())
    }
}

/// Reads the state file at `path`: missing, every route's entry, or why it cannot be used.
pub fn load(path: &Path) -> Loaded {
    match std::fs::read(path) {
        Ok(bytes) => match parse(&bytes) {
            Ok(entries) => Loaded::Entries(entries),
            Err(why) => Loaded::Unusable(why),
        },
        // A path through something other than a directory names no file either.
        Err(e) if e.kind() == io::ErrorKind::NotFound || !parent_is_dir(path) => Loaded::Missing,
        Err(e) => Loaded::Unusable(format!("cannot be read: {e}")),
    }
}

/// Whether the directory `path` would be in is one (the working directory for a bare name).
fn parent_is_dir(path: &Path) -> bool {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .is_none_or(Path::is_dir)
}

/// The entries of a state file's bytes: `{"routes": [...]}`, or the one-route form
/// written before routes (a single entry object). Each entry is read on its own, so one
/// that makes no sense leaves the others usable; an entry that names no route, or bytes
/// of another shape, make the whole file unusable (why).
///
/// ```
/// use switchyard::rollout::persist::parse;
///
/// let entries = parse(br#"{"routes": [{"route": "iris", "phase": "dancing"}]}"#).unwrap();
/// assert_eq!(entries[0].route, "iris");
/// assert!(entries[0].state.as_ref().unwrap_err().contains("dancing"));
/// assert!(parse(br#"{"routes": [{"rou"#).unwrap_err().starts_with("not JSON"));
/// assert!(parse(b"[1, 2]").is_err());
/// ```
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let not_state = || "not a rollout state file (no `routes` list)".to_string();
    let Value::Object(mut file) = value else {
        return Err(not_state());
    };
    let items = match file.remove("routes") {
        Some(Value::Array(items)) => items,
        None if file.contains_key("route") => vec![Value::Object(file)],
        _ => return Err(not_state()),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(route) = item.get("route").and_then(Value::as_str) else {
                return Err(format!("entry {i} names no route"));
            };
            let route = route.to_string();
            let state = serde_json::from_value(item).map_err(|e| e.to_string());
            Ok(Entry { route, state })
        })
        .collect()
}

/// Where a state file at `path` that cannot be used is kept: `PATH.corrupt`.
pub fn aside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".corrupt");
    PathBuf::from(name)
}

/// Moves the state file at `path` to [`aside`]`(path)` (replacing one kept there before),
/// so that the next write cannot overwrite the evidence of what went wrong.
pub fn keep_aside(path: &Path) -> io::Result<PathBuf> {
    let to = aside(path);
    std::fs::rename(path, &to)?;
    Ok(to)
}

/// Writes the state atomically: a reader sees the old file or the new one, never half of
/// one. The error says which step failed, on which path.
pub fn save(path: &Path, state: &StateFile) -> io::Result<()> {
    let failed = |what: &str, on: &Path| {
        let what = format!("cannot {what} {}", on.display());
        move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed("create", dir))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&json)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed("write", &tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed("replace", path)(e)
    })
}
