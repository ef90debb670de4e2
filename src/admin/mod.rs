//! The admin API: status, history, controls, health, metrics and the dashboard.
//!
//! Every route's status and controls are under `/api/v1/routes/NAME/`; the unscoped paths
//! (`/api/v1/status`, `/api/v1/promote`, ...) address the route named `default` or the
//! only route, and answer 400 naming the routes otherwise.

pub mod api;
pub mod assets;
pub mod client;
pub mod guard;
pub mod history;
pub mod labels;
pub mod monitor;
pub mod window;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::rollout::controller::Published;
use crate::rollout::{Action, Control, ControlError, Status};
use crate::telemetry::diffs::DIFFS_KEPT;
use crate::telemetry::metrics;
use history::History;

/// The admin API's state.
#[derive(Clone)]
pub struct Admin {
    sources: Arc<Sources>,
    control: Control,
    token: Option<Arc<str>>,
    /// Feedback posts read and joined at once, at most [`labels::MAX_PARSING`].
    labels: labels::Turns,
}

/// What the admin API shows: the controller's snapshot (with each route's recent shadow
/// disagreements) and statuses, readiness, the metrics, and each route's history.
pub struct Sources {
    pub published: Published,
    /// True once a valid config is loaded and the data plane listens.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Each route's last hour, for `/api/v1/history`.
    pub history: Arc<History>,
}

/// An admin answer in the making, boxed: connections are served by futures that must be
/// `Unpin`.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl Admin {
    pub fn new(sources: Sources, control: Control, token: Option<String>) -> Self {
        Admin {
            sources: Arc::new(sources),
            control,
            token: token.map(Into::into),
            labels: labels::Turns::default(),
        }
    }

    /// The admin API as a hyper service for one connection from `peer`.
    pub fn service(
        &self,
        peer: IpAddr,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = Answer,
    > + Send
           + 'static {
        let admin = self.clone();
        hyper::service::service_fn(move |req| {
            let admin = admin.clone();
            Box::pin(async move { Ok::<_, Infallible>(admin.handle(req, peer).await) }) as Answer
        })
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
        let uri = req.uri().clone();
        let path = uri.path().trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        let (route, path) = api::scoped(path);
        let path = &*path;
        match (req.method(), route, path) {
            (&Method::GET, None, api::DASHBOARD) => assets::index(),
            (&Method::GET, None, p) if p.starts_with(api::ASSETS) => {
                assets::serve(&p[api::ASSETS.len()..], req.headers())
                    .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such asset"))
            }
            (&Method::GET, None, api::HEALTHZ) => text(StatusCode::OK, "ok\n"),
            (&Method::GET, None, api::READYZ) => {
                if !self.sources.ready.load(Ordering::Acquire) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                } else if let Err(why) = crate::shadow::observed::health() {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    )
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            (&Method::GET, None, api::METRICS) => {
                let mut r = text(StatusCode::OK, self.metrics_text());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (&Method::GET, None, api::ROUTES) => {
                let statuses = self.sources.published.status.load_full();
                let routes: Vec<_> = statuses.routes.iter().map(|s| self.shown(s)).collect();
                json(StatusCode::OK, &serde_json::json!({ "routes": routes }))
            }
            (&Method::GET, _, api::STATUS) => match self.addressed(route) {
                Ok(status) => json(StatusCode::OK, &self.shown(&status)),
                Err(e) => control_error(&e),
            },
            (&Method::GET, _, api::SHADOW_DIFFS) => match self.addressed(route) {
                Ok(status) => self.diffs(&status.route, uri.query()),
                Err(e) => control_error(&e),
            },
            (&Method::GET, _, api::MONITOR) => match self.addressed(route) {
                Ok(status) => self.monitor(&status.route),
                Err(e) => control_error(&e),
            },
            (&Method::GET, _, api::MONITOR_REFERENCE) => match self.addressed(route) {
                Ok(status) => self.reference(&status.route),
                Err(e) => control_error(&e),
            },
            (&Method::GET, _, api::HISTORY) => match self.addressed(route) {
                Ok(status) => self.history(&status, uri.query()),
                Err(e) => control_error(&e),
            },
            (&Method::POST, _, api::FEEDBACK) => self.feedback(req, peer, route).await,
            (&Method::POST, _, p) if api::CONTROLS.contains(&p) => {
                self.control(req, peer, route, p).await
            }
            (
                _,
                _,
                api::STATUS
                | api::SHADOW_DIFFS
                | api::MONITOR
                | api::MONITOR_REFERENCE
                | api::FEEDBACK
                | api::HISTORY,
            )
            | (_, None, api::ROUTES) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            (_, None, api::DASHBOARD | api::HEALTHZ | api::READYZ | api::METRICS) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            (_, None, p) if p.starts_with(api::ASSETS) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            (_, _, p) if api::CONTROLS.contains(&p) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    /// The status of the route a path addresses (by name, or the unscoped route), or why
    /// there is none: an unknown name, or several routes and none named `default`.
    fn addressed(&self, route: Option<&str>) -> Result<Arc<Status>, ControlError> {
        let statuses = self.sources.published.status.load_full();
        let found = match route {
            Some(name) => statuses.route(name),
            None => statuses.unscoped(),
        };
        found.cloned().ok_or_else(|| {
            let routes = statuses.names();
            match route {
                Some(name) => ControlError::UnknownRoute {
                    name: name.to_string(),
                    routes,
                },
                None => ControlError::RouteNeeded { routes },
            }
        })
    }

    /// `/metrics`: every series, but those of routes and backends no longer configured
    /// (the route `""` of labels that matched no prediction is everyone's).
    fn metrics_text(&self) -> String {
        let snap = self.sources.published.snapshot.load_full();
        monitor::export(&snap, tokio::time::Instant::now());
        metrics::without_removed(&self.sources.metrics.render(), |route, backend| {
            route.is_empty()
                || snap
                    .route(route)
                    .is_some_and(|r| backend.is_none_or(|b| r.backend(b.as_bytes()).is_some()))
        })
    }

    /// `GET /api/v1/monitor` of one route.
    fn monitor(&self, route: &str) -> Response<Full<Bytes>> {
        let snap = self.sources.published.snapshot.load_full();
        match snap.route(route) {
            Some(r) => json(
                StatusCode::OK,
                &monitor::report(r, tokio::time::Instant::now()),
            ),
            None => error(StatusCode::NOT_FOUND, "no such route"),
        }
    }

    /// `GET /api/v1/monitor/reference` of one route: the drift reference in use, in the
    /// format `monitor.reference.file` reads; 404 saying why when there is none yet.
    fn reference(&self, route: &str) -> Response<Full<Bytes>> {
        let snap = self.sources.published.snapshot.load_full();
        let Some(r) = snap.route(route) else {
            return error(StatusCode::NOT_FOUND, "no such route");
        };
        match monitor::reference(r) {
            Ok(reference) => respond(StatusCode::OK, "application/json", reference.to_json()),
            Err(why) => error(StatusCode::NOT_FOUND, &why),
        }
    }

    /// `POST /api/v1/feedback`: labels joined to remembered predictions, under the token
    /// rules of every mutating call; a scoped path must name a route. 409 when no route
    /// remembers predictions (nothing could match), 413 for a body over
    /// `feedback.max_body`; the body is parsed and joined off the runtime ([`labels`]).
    async fn feedback(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        route: Option<&str>,
    ) -> Response<Full<Bytes>> {
        if let Err(refusal) = guard::check(self.token.as_deref(), peer, req.headers()) {
            return refused(refusal);
        }
        if let Some(name) = route {
            if let Err(e) = self.addressed(Some(name)) {
                return control_error(&e);
            }
        }
        let snap = self.sources.published.snapshot.load_full();
        let store = match monitor::feedback_store(&snap, route) {
            Ok(store) => store,
            Err(msg) => return error(StatusCode::CONFLICT, &msg),
        };
        drop(snap);
        let max = store.max_body();
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return labels_refused(labels::Refused::TooLarge(max));
        }
        let joined = async {
            let turn = self.labels.admit().await?;
            let body = labels::read(req.into_body(), max).await?;
            labels::join(store, body, tokio::time::Instant::now(), turn).await
        };
        match joined.await {
            Ok(joined) => {
                monitor::feedback_counted(route, &joined);
                json(StatusCode::OK, &joined)
            }
            Err(e) => labels_refused(e),
        }
    }

    /// A route's status as the API shows it: with its live window figures.
    fn shown(&self, status: &Status) -> serde_json::Value {
        let mut v = serde_json::to_value(status).unwrap_or_default();
        let snap = self.sources.published.snapshot.load_full();
        if let Some(route) = snap.route(&status.route) {
            let now = tokio::time::Instant::now();
            let figures = window::WindowFigures::of(route, now);
            v["window"] = serde_json::to_value(figures).unwrap_or_default();
            v["monitoring"] =
                serde_json::to_value(monitor::summary(route, now)).unwrap_or_default();
        }
        v
    }

    /// The most recent disagreements of `route`; `?limit=N` (20 by default).
    fn diffs(&self, route: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        let limit = query_param(query, "limit")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(20)
            .min(DIFFS_KEPT);
        let snap = self.sources.published.snapshot.load_full();
        let diffs = snap
            .route(route)
            .map(|r| r.diffs.recent(limit))
            .unwrap_or_default();
        json(StatusCode::OK, &serde_json::json!({ "diffs": diffs }))
    }

    /// The last `?since=SECONDS` (300 by default, at most 3600) of `status`'s route, one
    /// point a second, and its events; 400 for a `since` that is not a whole number of
    /// seconds from 1.
    fn history(&self, status: &Status, query: Option<&str>) -> Response<Full<Bytes>> {
        let since = match history::since(query_param(query, "since")) {
            Ok(s) => s,
            Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
        };
        let now = tokio::time::Instant::now();
        let timeline = self.sources.history.timeline(&status.route, since, now);
        let answer = history::Answer {
            route: &status.route,
            stable: &status.stable,
            candidate: status.candidate.as_deref(),
            since,
            points: &timeline,
            events: &status.events,
        };
        // Compact: an hour of points is a few thousand objects.
        match serde_json::to_vec(&answer) {
            Ok(v) => respond(StatusCode::OK, "application/json", v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    /// A control (`path` is its unscoped path) for `route`, once the caller may send it.
    async fn control(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        route: Option<&str>,
        path: &str,
    ) -> Response<Full<Bytes>> {
        if let Err(refusal) = guard::check(self.token.as_deref(), peer, req.headers()) {
            return refused(refusal);
        }
        let read = Limited::new(req.into_body(), CONTROL_MAX_BODY).collect();
        let body = match tokio::time::timeout(CONTROL_BODY_TIMEOUT, read).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => return error(StatusCode::BAD_REQUEST, "unreadable body"),
            Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "body not received in time"),
        };
        let action = match parse_action(path, &body) {
            Ok(a) => a,
            Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
        };
        match self.control.send_to(route, action).await {
            Ok(status) => json(StatusCode::OK, &controlled(&status)),
            Err(e) => control_error(&e),
        }
    }
}

/// The answer to a control that happened: the route's new status and, when the state file
/// could not be written, `"persisted": false` and a `warning` saying why (the change is in
/// force, but a restart would not find it).
fn controlled(status: &Status) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(e) = &status.state.last_error {
        v["persisted"] = serde_json::Value::Bool(false);
        v["warning"] = format!("in force but not persisted: {e}").into();
    }
    v
}

/// The largest control body read: `{"reason": "..."}` and the like.
const CONTROL_MAX_BODY: usize = 64 * 1024;

/// How long a control's body may take to arrive after its head: it is a few bytes, and
/// the connection serving it cannot be evicted meanwhile.
const CONTROL_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The answer to a feedback post that was not joined.
fn labels_refused(e: labels::Refused) -> Response<Full<Bytes>> {
    use labels::Refused;
    match e {
        Refused::Busy => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy with other label posts: retry shortly",
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Refused::TooLarge(max) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "feedback body over feedback.max_body ({}): send labels in smaller batches",
                crate::config::ByteSize(max as u64)
            ),
        ),
        Refused::Slow => error(StatusCode::REQUEST_TIMEOUT, "feedback body too slow"),
        Refused::Unreadable(e) => error(
            StatusCode::BAD_REQUEST,
            &format!("feedback body unreadable: {e}"),
        ),
        Refused::Invalid(msg) => error(StatusCode::BAD_REQUEST, &msg),
        Refused::Failed(msg) => error(StatusCode::SERVICE_UNAVAILABLE, &msg),
    }
}

/// The answer to a mutating call the guard refused.
fn refused(refusal: guard::Refusal) -> Response<Full<Bytes>> {
    let mut r = error(refusal.status(), refusal.message());
    if refusal == guard::Refusal::MissingToken {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r
}

/// The answer to a control that did not happen.
fn control_error(e: &ControlError) -> Response<Full<Bytes>> {
    let status = match e {
        ControlError::NotAllowed(_) => StatusCode::CONFLICT,
        ControlError::UnknownRoute { .. } => StatusCode::NOT_FOUND,
        ControlError::RouteNeeded { .. } => StatusCode::BAD_REQUEST,
        ControlError::Stopped | ControlError::StoreLost(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut body = serde_json::json!({ "error": e.to_string() });
    if let ControlError::UnknownRoute { routes, .. } | ControlError::RouteNeeded { routes } = e {
        body["routes"] = serde_json::json!(routes);
    }
    json(status, &body)
}

fn parse_action(path: &str, body: &[u8]) -> Result<Action, String> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        full: bool,
        #[serde(default)]
        reason: Option<String>,
    }
    let b: Body = if body.iter().all(u8::is_ascii_whitespace) {
        Body::default()
    } else {
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?
    };
    Ok(match path {
        api::PROMOTE => Action::Promote { full: b.full },
        api::PAUSE => Action::Pause { reason: b.reason },
        api::RESUME => Action::Resume,
        api::ROLLBACK => Action::Rollback { reason: b.reason },
        _ => Action::Retry,
    })
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(v) => respond(status, "application/json", v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    respond(status, "application/json", body)
}
