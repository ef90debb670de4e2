//! The admin API: status, controls, health, metrics and the dashboard.

pub mod api;
pub mod client;
pub mod guard;
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
use crate::rollout::{Action, Control, ControlError};
use crate::shadow::{Diffs, DIFFS_KEPT};

const DASHBOARD: &str = include_str!("dashboard.html");

/// The admin API's state.
#[derive(Clone)]
pub struct Admin {
    sources: Arc<Sources>,
    control: Control,
    token: Option<Arc<str>>,
}

/// What the admin API shows: the controller's snapshot and status, readiness, the
/// metrics and the recent shadow disagreements.
pub struct Sources {
    pub published: Published,
    /// True once a valid config is loaded and the data plane listens.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    pub diffs: Arc<Diffs>,
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
        let path = req.uri().path().trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        match (req.method(), path) {
            (&Method::GET, api::DASHBOARD) => html(DASHBOARD),
            (&Method::GET, api::HEALTHZ) => text(StatusCode::OK, "ok\n"),
            (&Method::GET, api::READYZ) => {
                if self.sources.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            (&Method::GET, api::METRICS) => {
                let mut r = text(StatusCode::OK, self.sources.metrics.render());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (&Method::GET, api::STATUS) => {
                let status = self.sources.published.status.load_full();
                let mut v = serde_json::to_value(&*status).unwrap_or_default();
                v["window"] = self.window_figures();
                json(StatusCode::OK, &v)
            }
            (&Method::GET, api::SHADOW_DIFFS) => {
                let limit = query_param(req.uri().query(), "limit")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(20)
                    .min(DIFFS_KEPT);
                let diffs = self.sources.diffs.recent(limit);
                json(StatusCode::OK, &serde_json::json!({ "diffs": diffs }))
            }
            (&Method::POST, p) if p.starts_with(api::V1) => {
                let Some(control) = api::CONTROLS.into_iter().find(|c| *c == p) else {
                    return error(StatusCode::NOT_FOUND, "no such endpoint");
                };
                let token = self.token.as_deref();
                if let Err(refusal) = guard::check(token, peer, req.headers()) {
                    let mut r = error(refusal.status(), refusal.message());
                    if refusal == guard::Refusal::MissingToken {
                        r.headers_mut()
                            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                    }
                    return r;
                }
                let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return error(StatusCode::BAD_REQUEST, "unreadable body"),
                };
                let action = match parse_action(control, &body) {
                    Ok(a) => a,
                    Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
                };
                match self.control.send(action).await {
                    Ok(status) => json(StatusCode::OK, &*status),
                    Err(e @ ControlError::NotAllowed(_)) => {
                        error(StatusCode::CONFLICT, &e.to_string())
                    }
                    Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
                }
            }
            (
                _,
                api::DASHBOARD
                | api::HEALTHZ
                | api::READYZ
                | api::METRICS
                | api::STATUS
                | api::SHADOW_DIFFS,
            ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    /// Live figures of the stable's and the candidate's sliding windows, as the analysis sees them.
    fn window_figures(&self) -> serde_json::Value {
        let snap = self.sources.published.snapshot.load_full();
        let figures = window::WindowFigures::of(&snap, tokio::time::Instant::now());
        serde_json::to_value(figures).unwrap_or_default()
    }
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
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn html(body: &'static str) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "text/html; charset=utf-8", body)
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
