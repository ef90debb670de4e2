//! The admin API's paths: one list, read by the admin router that serves them and by the
//! client that calls them, so the two cannot drift apart.
//!
//! ```
//! use switchyard::admin::api;
//! use switchyard::rollout::Action;
//!
//! assert_eq!(api::STATUS, "/api/v1/status");
//! assert_eq!(api::control_path(&Action::Promote { full: true }), api::PROMOTE);
//! assert!(api::CONTROLS.iter().all(|p| p.starts_with(api::V1)));
//! assert_eq!(api::route_path("iris", api::PROMOTE), "/api/v1/routes/iris/promote");
//! assert_eq!(api::route_path("iris", api::HISTORY), "/api/v1/routes/iris/history");
//! ```

use crate::rollout::Action;

/// The dashboard (HTML).
pub const DASHBOARD: &str = "/";
/// The dashboard's script, style and chart library (`GET /assets/NAME`).
pub const ASSETS: &str = "/assets/";
/// 200 while the process is up.
pub const HEALTHZ: &str = "/healthz";
/// 200 once a valid config is loaded and the data plane listens.
pub const READYZ: &str = "/readyz";
/// Prometheus text format.
pub const METRICS: &str = "/metrics";

/// The prefix every path of the versioned API starts with.
pub const V1: &str = "/api/v1/";
/// The rollout status (JSON).
pub const STATUS: &str = "/api/v1/status";
/// The most recent shadow disagreements; takes `?limit=N`.
pub const SHADOW_DIFFS: &str = "/api/v1/shadow/diffs";

/// Each route's last hour, one point a second, and its events; takes `?since=SECONDS`.
pub const HISTORY: &str = "/api/v1/history";

/// Every route's status, in config order: `{"routes": [STATUS, ...]}`. Under it,
/// `/api/v1/routes/NAME/...` addresses one route: see [`route_path`].
pub const ROUTES: &str = "/api/v1/routes";
/// Per backend: features, outputs, drift, accuracy (`GET`, per route too).
pub const MONITOR: &str = "/api/v1/monitor";
/// The drift reference in use, as `monitor.reference.file` reads it (`GET`, per route too).
pub const MONITOR_REFERENCE: &str = "/api/v1/monitor/reference";
/// Labels for earlier predictions (`POST`, a mutating call; per route too).
pub const FEEDBACK: &str = "/api/v1/feedback";

/// Passes the current gate or hold; body `{"full": bool}`.
pub const PROMOTE: &str = "/api/v1/promote";
/// Freezes the rollout; body `{"reason": "..."}`.
pub const PAUSE: &str = "/api/v1/pause";
/// Unfreezes the rollout.
pub const RESUME: &str = "/api/v1/resume";
/// All traffic to stable; body `{"reason": "..."}`.
pub const ROLLBACK: &str = "/api/v1/rollback";
/// The same rollout again from step 0.
const RETRY: &str = "/api/v1/retry";
/// Every control's path (each a POST).
pub const CONTROLS: [&str; 5] = [PROMOTE, PAUSE, RESUME, ROLLBACK, RETRY];

/// The route and the unscoped path a path addresses: `/api/v1/routes/NAME/TAIL` is
/// route `NAME` and `/api/v1/TAIL`; any other path is itself, for no route in particular.
///
/// ```
/// use switchyard::admin::api;
/// assert_eq!(api::scoped("/api/v1/routes/iris/shadow/diffs"), (Some("iris"), "/api/v1/shadow/diffs".into()));
/// assert_eq!(api::scoped("/api/v1/status"), (None, "/api/v1/status".into()));
/// ```
pub fn scoped(path: &str) -> (Option<&str>, std::borrow::Cow<'_, str>) {
    let scoped = path
        .strip_prefix(ROUTES)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.split_once('/'));
    match scoped {
        Some((name, tail)) if !name.is_empty() => (Some(name), format!("{V1}{tail}").into()),
        _ => (None, path.into()),
    }
}

/// The path that carries `action`.
pub fn control_path(action: &Action) -> &'static str {
    match action {
        Action::Promote { .. } => PROMOTE,
        Action::Pause { .. } => PAUSE,
        Action::Resume => RESUME,
        Action::Rollback { .. } => ROLLBACK,
        Action::Retry => RETRY,
    }
}

/// `path`, a path of the versioned API such as [`STATUS`], [`SHADOW_DIFFS`] or a control,
/// scoped to the route named `route`: the same call, for that route only. `path` may also
/// be just what follows [`V1`] (`"status"`). Bytes of `route` other than ASCII letters,
/// digits and `-` (the characters of a route name) are percent-encoded, so the name is
/// always one path segment, never `..`.
///
/// ```
/// use switchyard::admin::api::{route_path, SHADOW_DIFFS, STATUS};
///
/// assert_eq!(route_path("iris", STATUS), "/api/v1/routes/iris/status");
/// assert_eq!(route_path("iris", SHADOW_DIFFS), "/api/v1/routes/iris/shadow/diffs");
/// assert_eq!(route_path("iris", "status"), "/api/v1/routes/iris/status");
/// assert_eq!(route_path("a/b c", STATUS), "/api/v1/routes/a%2Fb%20c/status");
/// ```
pub fn route_path(route: &str, path: &str) -> String {
    let tail = path
        .strip_prefix(V1)
        .unwrap_or_else(|| path.trim_start_matches('/'));
    let mut scoped = format!("{ROUTES}/");
    for b in route.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            scoped.push(char::from(b));
        } else {
            scoped.push_str(&format!("%{b:02X}"));
        }
    }
    scoped.push('/');
    scoped.push_str(tail);
    scoped
}
