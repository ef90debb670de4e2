//! The admin API's client, for the command line: `status`, `routes`, `promote`, `pause`,
//! `resume`, `rollback` and `retry` call it and print its answers for a person.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api;
use super::monitor;
use super::window::{BackendFigures, WindowFigures};
use crate::config::DEFAULT_ROUTE;
use crate::rollout::analysis::Analysis;
use crate::rollout::status::{AnalysisStatus, ConfigStatus, StateStatus};
use crate::rollout::{Action, Event, Status};

/// Where the admin API is, how to authorize, and which route the calls address.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub base: String,
    pub token: Option<String>,
    /// The route that `status` and the controls address, under `/api/v1/routes/NAME/`.
    /// `None`: the unscoped paths, which address the route named `default` or the only
    /// route.
    pub route: Option<String>,
}

/// A call to the admin API that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("invalid answer from the admin API: {0}")]
    Invalid(String),
}

/// A route's status as the admin API answers it: the rollout's [`Status`] and, from
/// `GET /api/v1/status` (and each entry of `GET /api/v1/routes`), the live window figures.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub rollout: Status,
    /// Only a status query adds them; a control's answer has none.
    #[serde(default)]
    pub window: Option<WindowFigures>,
    /// Only a status query adds it, for a route something observes.
    #[serde(default)]
    pub monitoring: Option<monitor::Summary>,
    /// Only in a control's answer, when the change is in force but the state file could
    /// not be written: why.
    #[serde(default)]
    pub warning: Option<String>,
}

/// `GET /api/v1/routes`: every route's status, in config order.
#[derive(Debug, Clone, Deserialize)]
pub struct RoutesReport {
    pub routes: Vec<StatusReport>,
}

impl AdminClient {
    /// What `switchyard status` prints. With a route: its full status. Without: the only
    /// route's full status or, with several, one line for each and how to name one.
    /// `json`: the admin API's JSON instead (with several routes and none named, the list).
    pub async fn show_status(&self, json: bool) -> Result<String, ClientError> {
        if self.route.is_some() {
            return self.show_route(json).await;
        }
        let bytes = match self.answer(Method::GET, api::ROUTES, None).await {
            Ok(bytes) => bytes,
            // An admin API that predates routes: its status is its one route's.
            Err(ClientError::Refused {
                status: StatusCode::NOT_FOUND,
                ..
            }) => return self.show_route(json).await,
            Err(e) => return Err(e),
        };
        let list: RoutesReport = serde_json::from_slice(&bytes).map_err(invalid)?;
        match (&list.routes[..], json) {
            ([only], true) => self.for_route(&only.rollout.route).show_route(true).await,
            ([only], false) => Ok(render_status(only)),
            (_, true) => json_text(bytes),
            (routes, false) => Ok(render_overview(routes)),
        }
    }

    /// What `switchyard routes` prints: one line for each route, or the admin API's JSON.
    pub async fn show_routes(&self, json: bool) -> Result<String, ClientError> {
        let bytes = self.answer(Method::GET, api::ROUTES, None).await?;
        if json {
            return json_text(bytes);
        }
        let list: RoutesReport = serde_json::from_slice(&bytes).map_err(invalid)?;
        Ok(render_routes(&list.routes))
    }

    /// The full status of this client's route, for a person or as the admin API's JSON.
    async fn show_route(&self, json: bool) -> Result<String, ClientError> {
        if json {
            self.status_json().await
        } else {
            self.status().await.map(|s| render_status(&s))
        }
    }

    /// This client, addressing the route named `route`.
    fn for_route(&self, route: &str) -> AdminClient {
        AdminClient {
            route: Some(route.into()),
            ..self.clone()
        }
    }

    /// The route's status with the live window figures.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.call(Method::GET, &self.path(api::STATUS), None).await
    }

    /// The route's status JSON exactly as the admin API sent it, for `status --json`.
    async fn status_json(&self) -> Result<String, ClientError> {
        let path = self.path(api::STATUS);
        json_text(self.answer(Method::GET, &path, None).await?)
    }

    /// The route's drift reference in use (`GET /api/v1/monitor/reference`), as the admin
    /// API sent it: the JSON `monitor.reference.file` reads.
    pub async fn monitor_reference(&self) -> Result<String, ClientError> {
        let path = self.path(api::MONITOR_REFERENCE);
        json_text(self.answer(Method::GET, &path, None).await?)
    }

    /// Asks the route for `action`; the answer is its status after it.
    pub async fn control(&self, action: &Action) -> Result<StatusReport, ClientError> {
        let body = match action {
            Action::Promote { full } => Some(json!({ "full": full })),
            Action::Pause { reason } | Action::Rollback { reason } => {
                Some(json!({ "reason": reason }))
            }
            Action::Resume | Action::Retry => None,
        };
        let path = self.path(api::control_path(action));
        self.call(Method::POST, &path, body)
            .await
            .map_err(|e| self.hint(e))
    }

    /// `path`, an unscoped path of the API, for this client's route.
    fn path(&self, path: &str) -> String {
        match &self.route {
            Some(route) => api::route_path(route, path),
            None => path.to_string(),
        }
    }

    /// A refusal of an unscoped control, with how to name a route: the admin API refuses
    /// those when several routes are configured and none is named `default`.
    fn hint(&self, e: ClientError) -> ClientError {
        match e {
            ClientError::Refused {
                status: StatusCode::BAD_REQUEST,
                message,
            } if self.route.is_none() => ClientError::Refused {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "{message}\n  name the route with --route NAME (or SWITCHYARD_ROUTE); \
                     `switchyard routes` lists them"
                ),
            },
            e => e,
        }
    }

    /// Calls `method path` (as given, unscoped) with an optional JSON body and reads the
    /// JSON answer as a `T` (a [`Value`] takes any).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let bytes = self.answer(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(invalid)
    }

    /// Calls `method path` with an optional JSON body; the answer's body when it succeeded,
    /// else the admin API's `error`.
    async fn answer(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, ClientError> {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.clone(),
            reason,
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = tokio::time::timeout(ANSWER_TIMEOUT, client.request(req))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(crate::error::root_cause(&e).to_string()))?;
        let status = resp.status();
        let read = Limited::new(resp.into_body(), MAX_ANSWER).collect();
        let bytes = tokio::time::timeout(ANSWER_TIMEOUT, read)
            .await
            .map_err(|_| unreachable("the answer did not end in time".into()))?
            .map_err(|e| invalid(format!("{e} (at most {} MiB read)", MAX_ANSWER >> 20)))?
            .to_bytes();
        if !status.is_success() {
            let value: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
            let message = value["error"].as_str().unwrap_or("request failed").into();
            return Err(ClientError::Refused { status, message });
        }
        Ok(bytes)
    }
}

/// The most of one answer the CLI reads: far more than any status, history or exported
/// reference, so that an admin endpoint that never stops sending cannot fill its memory.
const MAX_ANSWER: usize = 64 << 20;

/// How long the CLI waits for an answer's head, and then for its body.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A JSON answer as the admin API sent it.
fn json_text(bytes: Bytes) -> Result<String, ClientError> {
    serde_json::from_slice::<IgnoredAny>(&bytes).map_err(invalid)?;
    String::from_utf8(bytes.into()).map_err(invalid)
}

/// An answer that is not what the admin API sends.
fn invalid(e: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(e.to_string())
}

/// A route's status as a person reads it. The route is named first unless it is `default`
/// (a config with one top-level `rollout:`).
pub fn render_status(s: &StatusReport) -> String {
    let r = &s.rollout;
    [
        route(r),
        placement(r),
        hold(r),
        finish(r),
        reason(r),
        config(&r.config),
        state(&r.state),
        analysis(&r.analysis),
        s.window.as_ref().map_or_else(String::new, window),
        s.monitoring.as_ref().map_or_else(String::new, monitoring),
        recent_events(&r.events),
        s.warning
            .as_ref()
            .map_or_else(String::new, |w| format!("WARNING:   {w}\n")),
    ]
    .concat()
}

/// Every route on one line, in config order: name, phase, step, candidate weight, and its
/// stable → candidate; an idle route (no candidate) says where all its traffic goes.
fn render_routes(routes: &[StatusReport]) -> String {
    if routes.is_empty() {
        return "no routes\n".into();
    }
    let rows: Vec<[String; 5]> = routes.iter().map(|s| route_row(&s.rollout)).collect();
    let widths: [usize; 5] =
        std::array::from_fn(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0));
    let line = |row: &[String; 5]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    rows.iter().map(line).collect()
}

/// What `switchyard status` shows, without `--route`, of several routes: their list and
/// how to see one in full.
fn render_overview(routes: &[StatusReport]) -> String {
    format!(
        "{}\nfor a route's full status: switchyard status --route NAME\n",
        render_routes(routes)
    )
}

/// A route's line in the list of routes, cell by cell.
fn route_row(r: &Status) -> [String; 5] {
    if is_idle(r) {
        let to = format!("all traffic to {}", r.stable);
        return [
            r.route.clone(),
            r.phase.clone(),
            String::new(),
            String::new(),
            to,
        ];
    }
    let backends = match &r.candidate {
        Some(candidate) => format!("{} → {candidate}", r.stable),
        None => r.stable.clone(),
    };
    [
        r.route.clone(),
        r.phase.clone(),
        format!("step {}/{}", r.step, r.steps),
        format!("weight {}%", r.weight),
        backends,
    ]
}

/// The route's name, unless it is the one route of a config without `routes:`.
fn route(r: &Status) -> String {
    if r.route == DEFAULT_ROUTE {
        return String::new();
    }
    format!("route:     {}\n", r.route)
}

/// Whether the route has no rollout: no candidate, every request to its stable.
fn is_idle(r: &Status) -> bool {
    r.phase == "idle"
}

/// Where the rollout is: phase, backends, step and traffic split; for an idle route, only
/// where its traffic goes (no step, weight or mirror: there is nothing to send them to).
fn placement(r: &Status) -> String {
    if is_idle(r) {
        return format!(
            "phase:     idle: all traffic to {}\nstable:    {}\ncandidate: (none)\n",
            r.stable, r.stable
        );
    }
    format!(
        "phase:     {}\nstrategy:  {}\nstable:    {}\ncandidate: {}\nstep:      {} of {}\nweight:    {}%\nmirror:    {}%\n",
        r.phase,
        r.strategy,
        r.stable,
        r.candidate.as_deref().unwrap_or("(none)"),
        r.step,
        r.steps,
        r.weight,
        r.mirror,
    )
}

/// How to finish a promoted rollout: the config names the promoted model `stable`.
fn finish(r: &Status) -> String {
    match (r.phase.as_str(), &r.candidate) {
        ("promoted", Some(c)) => format!(
            "finish:    set `stable: {c}` and remove `candidate` in the config (the route goes idle on {c}); editing steps or gates changes nothing for users\n"
        ),
        _ => String::new(),
    }
}

/// What the current step waits for, if anything.
fn hold(r: &Status) -> String {
    match r.hold_remaining_s {
        _ if r.manual_hold => format!(
            "hold:      manual: waits for `switchyard promote{}`\n",
            route_flag(r)
        ),
        Some(left) => format!("hold:      {left:.0}s left\n"),
        None => String::new(),
    }
}

/// ` --route NAME`, what a command needs to address this route; nothing for `default`.
fn route_flag(r: &Status) -> String {
    if r.route == DEFAULT_ROUTE {
        return String::new();
    }
    format!(" --route {}", r.route)
}

/// Why the last rollback or pause happened.
fn reason(r: &Status) -> String {
    r.reason
        .as_deref()
        .map_or_else(String::new, |why| format!("reason:    {why}\n"))
}

/// The config's generation, and why the last reload was rejected.
fn config(c: &ConfigStatus) -> String {
    match &c.last_error {
        Some(e) => format!(
            "config:    generation {}, last reload REJECTED:\n  {}\n",
            c.generation,
            e.replace('\n', "\n  ")
        ),
        None => format!("config:    generation {}\n", c.generation),
    }
}

/// The state file, when its last write failed: a restart would not find the rollout as
/// it is.
fn state(s: &StateStatus) -> String {
    let Some(e) = &s.last_error else {
        return String::new();
    };
    let path = s.path.as_deref().unwrap_or("the state file");
    let written = s
        .last_written
        .as_ref()
        .map_or("never written".into(), |t| format!("last written {t}"));
    format!("state:     {path} NOT WRITTEN: {e} ({written})\n")
}

/// The last evaluation, one line per gate.
fn analysis(a: &AnalysisStatus) -> String {
    if !a.enabled {
        return String::new();
    }
    let Some(last) = &a.last else {
        return "analysis:  no evaluation yet\n".into();
    };
    let Analysis {
        at,
        verdict,
        gates,
        samples,
        ..
    } = last;
    let mut out = format!(
        "analysis:  {} at {at} ({samples} samples; failures {}/{})\n",
        verdict.as_str(),
        a.failures,
        a.failure_limit,
    );
    for g in gates {
        let (gate, outcome) = (g.gate.as_str(), g.outcome.as_str());
        out.push_str(&format!("  {gate:<18} {outcome:<12} {}\n", g.detail));
        if let Some(seq) = &g.sequential {
            let planned = seq.planned.map_or(String::new(), |p| {
                format!(", passes by {p} without a breach")
            });
            out.push_str(&format!(
                "  {:<31} {}, {} samples since the step began{planned}\n",
                "", seq.test, seq.samples
            ));
        }
    }
    out
}

/// One line for each side's live window.
fn window(w: &WindowFigures) -> String {
    // The span as its JSON spells it (`60.0`), as this line has always shown it.
    let span = Value::from(w.span_s);
    let line = |side: &str, f: &BackendFigures, shadow: String| {
        format!(
            "{side:<10} {} requests, errors {}, p50 {}, p99 {}{shadow} (last {span}s)\n",
            f.requests,
            pct(f.error_rate),
            ms(f.p50_ms),
            ms(f.p99_ms),
        )
    };
    let stable = w.stable.as_ref().map(|f| line("stable", f, String::new()));
    let candidate = w
        .candidate
        .as_ref()
        .map(|f| line("candidate", f, shadow(f)));
    [stable, candidate].into_iter().flatten().collect()
}

/// A line of model figures (output drift, accuracy per backend) and one of the features
/// drifting most, when there is anything to say.
fn monitoring(m: &monitor::Summary) -> String {
    let mut figures = Vec::new();
    if let Some(d) = m.output_drift {
        figures.push(format!("output drift {d:.3}"));
    }
    for a in &m.accuracy {
        match (a.accuracy, a.mean_absolute_error) {
            (Some(acc), _) => figures.push(format!(
                "{} accuracy {} ({} labels)",
                a.backend,
                pct(Some(acc)),
                a.labels
            )),
            (None, Some(mae)) => figures.push(format!(
                "{} mean abs error {mae:.4} ({} labels)",
                a.backend, a.labels
            )),
            (None, None) => {}
        }
    }
    let mut out = String::new();
    if !figures.is_empty() {
        out += &format!(
            "model      {}
",
            figures.join(", ")
        );
    }
    if !m.drifting.is_empty() {
        let shown: Vec<String> = m
            .drifting
            .iter()
            .take(3)
            .map(|d| format!("{} {} on {} {:.3}", d.level, d.feature, d.backend, d.value))
            .collect();
        let more = m.drifting.len().saturating_sub(3);
        let more = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        out += &format!(
            "drift      {}{more}
",
            shown.join("; ")
        );
    }
    for w in &m.warnings {
        out += &format!("warning    {w}\n");
    }
    out
}

/// The candidate's shadow comparisons, when there were any.
fn shadow(f: &BackendFigures) -> String {
    let s = &f.shadow;
    if s.total() == 0 {
        return String::new();
    }
    format!(
        ", shadow agreement {} ({} agree, {} disagree, {} incomparable)",
        pct(s.agreement),
        s.agree,
        s.disagree,
        s.incomparable
    )
}

/// The last eight events, oldest first.
fn recent_events(events: &[Event]) -> String {
    if events.is_empty() {
        return String::new();
    }
    let recent = &events[events.len().saturating_sub(8)..];
    let lines = recent
        .iter()
        .map(|e| format!("  {}  {:<9} {}\n", e.at, e.kind, e.message));
    std::iter::once("recent events:\n".to_string())
        .chain(lines)
        .collect()
}

/// A share as a percentage with two decimals, `-` when there is none.
fn pct(share: Option<f64>) -> String {
    share.map_or("-".into(), |x| format!("{:.2}%", x * 100.0))
}

/// Milliseconds with one decimal, `-` when there are none.
fn ms(millis: Option<f64>) -> String {
    millis.map_or("-".into(), |x| format!("{x:.1}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders `json` as `switchyard status` would.
    fn rendered(json: &str) -> String {
        render_status(&serde_json::from_str(json).expect("a status the admin API sends"))
    }

    #[test]
    fn status_shows_output_drift_accuracy_and_the_worst_drifting_features() {
        let status = r#"{
          "phase": "progressing", "strategy": "canary", "route": "default", "revision": "abc",
          "stable": "blue", "candidate": "green", "step": 1, "steps": 3, "weight": 20.0,
          "mirror": 0.0, "reason": null, "hold_remaining_s": null, "manual_hold": false,
          "config": {"generation": 1, "path": "x.yaml", "last_error": null},
          "analysis": {"enabled": false, "failures": 0, "failure_limit": 0, "last": null},
          "events": [],
          "monitoring": {"output_drift": 0.31,
            "accuracy": [{"backend": "blue", "labels": 120, "accuracy": 0.95, "mean_absolute_error": null},
                         {"backend": "green", "labels": 80, "accuracy": 0.6125, "mean_absolute_error": null}],
            "drifting": [
              {"backend": "green", "feature": "petal_length", "value": 0.52, "level": "alert"},
              {"backend": "blue", "feature": "petal_length", "value": 0.41, "level": "alert"},
              {"backend": "blue", "feature": "sepal_width", "value": 0.12, "level": "warn"},
              {"backend": "green", "feature": "sepal_width", "value": 0.11, "level": "warn"}],
            "warnings": ["the reference names none of the features the requests carry"]}
        }"#;
        let shown = rendered(status);
        let lines: Vec<&str> = shown
            .lines()
            .filter(|l| {
                ["model", "drift", "warning"]
                    .iter()
                    .any(|w| l.starts_with(w))
            })
            .collect();
        assert_eq!(
            lines,
            [
                "model      output drift 0.310, blue accuracy 95.00% (120 labels), green accuracy 61.25% (80 labels)",
                "drift      alert petal_length on green 0.520; alert petal_length on blue 0.410; warn sepal_width on blue 0.120 (+1 more)",
                "warning    the reference names none of the features the requests carry",
            ]
        );
    }

    #[test]
    fn status_shows_the_rollout_its_gates_window_and_recent_events() {
        let status = r#"{
          "phase": "progressing", "strategy": "canary", "route": "default", "revision": "abc",
          "stable": "blue", "candidate": "green", "step": 2, "steps": 5, "weight": 25.0,
          "mirror": 12.5, "reason": "lunch", "hold_remaining_s": 42.6, "manual_hold": false,
          "config": {"generation": 3, "path": "x.yaml",
                     "last_error": "rollout.steps[1].weight: 150 at line 9\nrollout.candidate: purple"},
          "analysis": {"enabled": true, "failures": 1, "failure_limit": 3, "last": {
            "at": "2024-05-01T10:00:00.000Z", "verdict": "fail", "samples": 100,
            "stable_samples": 0, "min_samples": 20, "gates": [
              {"gate": "error_rate", "value": 0.01, "threshold": 0.02, "bound": "max",
               "outcome": "pass", "detail": "error rate 1.00% ≤ max 2.00% (1 of 100)"},
              {"gate": "latency_p99_ratio", "value": null, "threshold": 1.5, "bound": "max",
               "outcome": "skipped", "detail": "the stable served nothing in the window"},
              {"gate": "shadow_agreement", "value": 1.0, "threshold": 0.9, "bound": "min",
               "outcome": "inconclusive", "detail": "3 compared shadow answers in the window, 20 needed"}]}},
          "events": [{"at": "t1", "kind": "start", "message": "m1"},
            {"at": "t2", "kind": "step", "message": "m2"}, {"at": "t3", "kind": "paused", "message": "m3"},
            {"at": "t4", "kind": "resumed", "message": "m4"}, {"at": "t5", "kind": "reload", "message": "m5"},
            {"at": "t6", "kind": "analysis", "message": "m6"}, {"at": "t7", "kind": "step", "message": "m7"},
            {"at": "t8", "kind": "rollback", "message": "m8"}, {"at": "t9", "kind": "retry", "message": "m9"}],
          "window": {"span_s": 60.0, "noise_floor": null,
            "stable": {"backend": "blue", "requests": 0, "errors": 0, "error_rate": null, "p50_ms": null,
              "p99_ms": null, "shadow": {"agree": 0, "disagree": 0, "incomparable": 0, "agreement": null}},
            "candidate": {"backend": "green", "requests": 244, "errors": 3, "error_rate": 0.0123,
              "p50_ms": 4.96, "p99_ms": 12.04,
              "shadow": {"agree": 90, "disagree": 9, "incomparable": 1, "agreement": 0.9}}}
        }"#;
        let shown = "\
phase:     progressing
strategy:  canary
stable:    blue
candidate: green
step:      2 of 5
weight:    25%
mirror:    12.5%
hold:      43s left
reason:    lunch
config:    generation 3, last reload REJECTED:
  rollout.steps[1].weight: 150 at line 9
  rollout.candidate: purple
analysis:  fail at 2024-05-01T10:00:00.000Z (100 samples; failures 1/3)
  error_rate         pass         error rate 1.00% ≤ max 2.00% (1 of 100)
  latency_p99_ratio  skipped      the stable served nothing in the window
  shadow_agreement   inconclusive 3 compared shadow answers in the window, 20 needed
stable     0 requests, errors -, p50 -, p99 - (last 60.0s)
candidate  244 requests, errors 1.23%, p50 5.0ms, p99 12.0ms, shadow agreement 90.00% (90 agree, 9 disagree, 1 incomparable) (last 60.0s)
recent events:
  t2  step      m2
  t3  paused    m3
  t4  resumed   m4
  t5  reload    m5
  t6  analysis  m6
  t7  step      m7
  t8  rollback  m8
  t9  retry     m9
";
        assert_eq!(rendered(status), shown);
    }

    #[test]
    fn a_promoted_route_says_how_to_finish_the_rollout() {
        let status = r#"{
          "phase": "promoted", "strategy": "canary", "route": "default", "revision": "abc",
          "stable": "blue", "candidate": "green", "step": 2, "steps": 3, "weight": 100.0,
          "mirror": 0.0, "reason": null, "hold_remaining_s": null, "manual_hold": false,
          "config": {"generation": 1, "path": "x.yaml", "last_error": null},
          "analysis": {"enabled": false, "failures": 0, "failure_limit": 0, "last": null},
          "events": []
        }"#;
        let shown = rendered(status);
        let finish = shown
            .lines()
            .find(|l| l.starts_with("finish:"))
            .unwrap_or("");
        assert!(
            finish.contains("set `stable: green` and remove `candidate`"),
            "{shown}"
        );
        let progressing = status.replace(r#""phase": "promoted""#, r#""phase": "progressing""#);
        assert!(!rendered(&progressing).contains("finish:"));
    }

    #[test]
    fn a_control_answer_has_no_window_and_a_manual_hold_says_so() {
        let answer = r#"{
          "phase": "paused", "strategy": "blue_green", "route": "default", "revision": "r",
          "stable": "blue", "candidate": null, "step": 0, "steps": 1, "weight": 0.0, "mirror": 100.0,
          "reason": null, "hold_remaining_s": 10.0, "manual_hold": true,
          "config": {"generation": 1, "last_error": null, "path": null},
          "analysis": {"enabled": true, "last": null, "failures": 0, "failure_limit": 3},
          "events": []
        }"#;
        let shown = "\
phase:     paused
strategy:  blue_green
stable:    blue
candidate: (none)
step:      0 of 1
weight:    0%
mirror:    100%
hold:      manual: waits for `switchyard promote`
config:    generation 1
analysis:  no evaluation yet
";
        assert_eq!(rendered(answer), shown);
    }

    #[test]
    fn a_control_in_force_but_not_persisted_says_so_last() {
        let answer = r#"{
          "phase": "paused", "strategy": "canary", "route": "default", "revision": "r",
          "stable": "blue", "candidate": "green", "step": 0, "steps": 2, "weight": 10.0,
          "mirror": 0.0, "reason": null, "hold_remaining_s": null, "manual_hold": false,
          "config": {"generation": 1, "last_error": null, "path": null},
          "state": {"path": "state/rollout.json", "last_written": "2024-05-01T10:00:00.000Z",
                    "last_error": "cannot create state: Not a directory (os error 20)"},
          "analysis": {"enabled": false, "last": null, "failures": 0, "failure_limit": 3},
          "events": [], "persisted": false,
          "warning": "in force but not persisted: cannot create state: Not a directory (os error 20)"
        }"#;
        let shown = "\
phase:     paused
strategy:  canary
stable:    blue
candidate: green
step:      0 of 2
weight:    10%
mirror:    0%
config:    generation 1
state:     state/rollout.json NOT WRITTEN: cannot create state: Not a directory (os error 20) (last written 2024-05-01T10:00:00.000Z)
WARNING:   in force but not persisted: cannot create state: Not a directory (os error 20)
";
        assert_eq!(rendered(answer), shown);
    }

    /// `GET /api/v1/routes` with three routes, in config order.
    const THREE_ROUTES: &str = r#"{"routes": [
      {"route": "iris", "phase": "progressing", "strategy": "canary", "revision": "r1",
       "stable": "iris-v1", "candidate": "iris-v2", "step": 2, "steps": 5, "weight": 25.0,
       "mirror": 10.0, "reason": null, "hold_remaining_s": 30.0, "manual_hold": false,
       "config": {"generation": 4, "last_error": null, "path": "routes.yaml"},
       "analysis": {"enabled": false, "last": null, "failures": 0, "failure_limit": 3},
       "events": [{"at": "t1", "kind": "start", "message": "rollout of iris-v2 started"}],
       "window": {"span_s": 60.0, "noise_floor": null,
         "stable": {"backend": "iris-v1", "requests": 300, "errors": 0, "error_rate": 0.0,
           "p50_ms": 2.0, "p99_ms": 9.0,
           "shadow": {"agree": 0, "disagree": 0, "incomparable": 0, "agreement": null}},
         "candidate": {"backend": "iris-v2", "requests": 100, "errors": 1, "error_rate": 0.01,
           "p50_ms": 2.5, "p99_ms": 11.0,
           "shadow": {"agree": 0, "disagree": 0, "incomparable": 0, "agreement": null}}}},
      {"route": "fraud", "phase": "idle", "strategy": "canary", "revision": "r2",
       "stable": "fraud-v6", "candidate": null, "step": 0, "steps": 0, "weight": 0.0,
       "mirror": 0.0, "reason": null, "hold_remaining_s": null, "manual_hold": false,
       "config": {"generation": 4, "last_error": null, "path": "routes.yaml"},
       "analysis": {"enabled": false, "last": null, "failures": 0, "failure_limit": 3},
       "events": []},
      {"route": "chat", "phase": "rolled_back", "strategy": "canary", "revision": "r3",
       "stable": "chat-a", "candidate": "chat-b", "step": 1, "steps": 3, "weight": 0.0,
       "mirror": 0.0, "reason": "error_rate failed 3 times in a row", "hold_remaining_s": null,
       "manual_hold": false, "config": {"generation": 4, "last_error": null, "path": "routes.yaml"},
       "analysis": {"enabled": false, "last": null, "failures": 3, "failure_limit": 3},
       "events": []}
    ]}"#;

    /// The route `i` of [`THREE_ROUTES`], as its own status JSON.
    fn one_of_three(i: usize) -> String {
        let list: Value = serde_json::from_str(THREE_ROUTES).unwrap();
        list["routes"][i].to_string()
    }

    /// What `switchyard status --route iris` shows of [`THREE_ROUTES`]' iris.
    const IRIS_SHOWN: &str = "\
route:     iris
phase:     progressing
strategy:  canary
stable:    iris-v1
candidate: iris-v2
step:      2 of 5
weight:    25%
mirror:    10%
hold:      30s left
config:    generation 4
stable     300 requests, errors 0.00%, p50 2.0ms, p99 9.0ms (last 60.0s)
candidate  100 requests, errors 1.00%, p50 2.5ms, p99 11.0ms (last 60.0s)
recent events:
  t1  start     rollout of iris-v2 started
";

    /// What `switchyard routes` shows of [`THREE_ROUTES`].
    const THREE_ROUTES_SHOWN: &str = "\
iris   progressing  step 2/5  weight 25%  iris-v1 → iris-v2
fraud  idle                               all traffic to fraud-v6
chat   rolled_back  step 1/3  weight 0%   chat-a → chat-b
";

    #[test]
    fn routes_are_listed_one_a_line_in_config_order() {
        let list: RoutesReport = serde_json::from_str(THREE_ROUTES).unwrap();
        assert_eq!(render_routes(&list.routes), THREE_ROUTES_SHOWN);
        assert_eq!(render_routes(&[]), "no routes\n");
    }

    #[test]
    fn a_route_other_than_default_is_named_first_in_its_status() {
        assert_eq!(rendered(&one_of_three(0)), IRIS_SHOWN);
        let manual = one_of_three(0).replace(r#""manual_hold":false"#, r#""manual_hold":true"#);
        let hold = "hold:      manual: waits for `switchyard promote --route iris`\n";
        assert!(rendered(&manual).contains(hold), "{}", rendered(&manual));
    }

    #[test]
    fn a_route_scopes_every_path_and_without_one_the_paths_address_the_default() {
        let client = |route: Option<&str>| AdminClient {
            base: "http://127.0.0.1:9901".into(),
            token: None,
            route: route.map(Into::into),
        };
        let none = client(None);
        assert_eq!(none.path(api::STATUS), "/api/v1/status");
        assert_eq!(none.path(api::PROMOTE), "/api/v1/promote");
        let iris = client(Some("iris"));
        assert_eq!(iris.path(api::STATUS), "/api/v1/routes/iris/status");
        assert_eq!(iris.path(api::ROLLBACK), "/api/v1/routes/iris/rollback");
        assert_eq!(
            iris.path(api::SHADOW_DIFFS),
            "/api/v1/routes/iris/shadow/diffs"
        );
        // A name no route can have stays one path segment: the admin API says it is unknown.
        assert_eq!(
            client(Some("../x")).path(api::STATUS),
            "/api/v1/routes/%2E%2E%2Fx/status"
        );
    }

    // === against an admin API that answers from a script ===

    /// An admin API on a loopback port that answers each `"METHOD path"` of `script` with
    /// its status and JSON body, and anything else 404 as the real one does; its base URL.
    async fn admin_api(script: &[(&str, u16, &str)]) -> String {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let script: std::sync::Arc<Vec<(String, u16, String)>> = std::sync::Arc::new(
            script
                .iter()
                .map(|(call, code, body)| (call.to_string(), *code, body.to_string()))
                .collect(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = script.clone();
                let answer = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let call = format!("{} {}", req.method(), req.uri().path());
                    let (code, body) = script.iter().find(|(c, ..)| *c == call).map_or(
                        (404, r#"{"error": "no such endpoint"}"#.into()),
                        |(_, code, body)| (*code, body.clone()),
                    );
                    let resp = http::Response::builder()
                        .status(code)
                        .body(Full::new(Bytes::from(body)));
                    async move { resp }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer);
                tokio::spawn(conn);
            }
        });
        base
    }

    /// An admin API on a loopback port that answers every request with a 200 whose JSON
    /// never ends; its base URL.
    async fn endless_admin_api() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = [0u8; 4096];
                    let _ = stream.read(&mut head).await;
                    let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 transfer-encoding: chunked\r\n\r\n";
                    if stream.write_all(start.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = format!("{:x}\r\n{}\r\n", 1 << 16, "[".repeat(1 << 16));
                    while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn an_answer_that_never_ends_is_refused_at_the_cap_not_read_forever() {
        let status = client(endless_admin_api().await, Some("iris"));
        let e = status.show_status(true).await.unwrap_err();
        assert!(matches!(e, ClientError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("at most 64 MiB read"), "{e}");
    }

    /// A client of the admin API at `base`, addressing `route`.
    fn client(base: String, route: Option<&str>) -> AdminClient {
        AdminClient {
            base,
            token: None,
            route: route.map(Into::into),
        }
    }

    #[tokio::test]
    async fn status_without_a_route_lists_several_routes_and_how_to_see_one() {
        let base = admin_api(&[("GET /api/v1/routes", 200, THREE_ROUTES)]).await;
        let status = client(base, None);
        let shown = status.show_status(false).await.unwrap();
        let hint = "\nfor a route's full status: switchyard status --route NAME\n";
        assert_eq!(shown, format!("{THREE_ROUTES_SHOWN}{hint}"));
        assert_eq!(status.show_status(true).await.unwrap(), THREE_ROUTES);
    }

    #[tokio::test]
    async fn status_without_a_route_shows_the_only_route_in_full() {
        let iris = one_of_three(0);
        let only = format!(r#"{{"routes": [{iris}]}}"#);
        let base = admin_api(&[
            ("GET /api/v1/routes", 200, &only),
            ("GET /api/v1/routes/iris/status", 200, &iris),
        ])
        .await;
        let status = client(base, None);
        assert_eq!(status.show_status(false).await.unwrap(), IRIS_SHOWN);
        assert_eq!(status.show_status(true).await.unwrap(), iris);
    }

    #[tokio::test]
    async fn status_and_controls_with_a_route_address_that_route() {
        let iris = one_of_three(0);
        let paused = iris.replace(r#""phase":"progressing""#, r#""phase":"paused""#);
        let base = admin_api(&[
            ("GET /api/v1/routes/iris/status", 200, &iris),
            ("POST /api/v1/routes/iris/pause", 200, &paused),
        ])
        .await;
        let iris_client = client(base, Some("iris"));
        assert_eq!(iris_client.show_status(false).await.unwrap(), IRIS_SHOWN);
        assert_eq!(iris_client.show_status(true).await.unwrap(), iris);
        let pause = Action::Pause { reason: None };
        let after = render_status(&iris_client.control(&pause).await.unwrap());
        assert!(
            after.starts_with("route:     iris\nphase:     paused\n"),
            "{after}"
        );
    }

    #[tokio::test]
    async fn a_route_that_does_not_exist_is_refused_with_the_routes_there_are() {
        let unknown = r#"{"error": "no route named iris2 (routes: iris, fraud, chat)"}"#;
        let base = admin_api(&[("GET /api/v1/routes/iris2/status", 404, unknown)]).await;
        let refused = client(base, Some("iris2")).show_status(false).await;
        let why = refused.unwrap_err().to_string();
        assert_eq!(
            why,
            "404 Not Found: no route named iris2 (routes: iris, fraud, chat)"
        );
    }

    #[tokio::test]
    async fn a_control_without_a_route_among_several_says_how_to_name_one() {
        let several = r#"{"error": "several routes are configured (iris, fraud, chat): name one, /api/v1/routes/NAME/..."}"#;
        let base = admin_api(&[("POST /api/v1/promote", 400, several)]).await;
        let refused = client(base, None)
            .control(&Action::Promote { full: false })
            .await;
        assert_eq!(
            refused.unwrap_err().to_string(),
            "400 Bad Request: several routes are configured (iris, fraud, chat): name one, \
             /api/v1/routes/NAME/...\n  name the route with --route NAME (or SWITCHYARD_ROUTE); \
             `switchyard routes` lists them"
        );
    }

    #[tokio::test]
    async fn status_without_a_route_reads_an_admin_api_that_has_no_routes() {
        let fraud = one_of_three(1);
        let base = admin_api(&[("GET /api/v1/status", 200, &fraud)]).await;
        let shown = client(base.clone(), None).show_status(false).await.unwrap();
        assert!(
            shown.starts_with(
                "route:     fraud\nphase:     idle: all traffic to fraud-v6\nstable:    fraud-v6\ncandidate: (none)\nconfig:"
            ),
            "{shown}"
        );
        for busy in ["step:", "weight:", "mirror:"] {
            assert!(
                !shown.contains(busy),
                "an idle route has no {busy}\n{shown}"
            );
        }
        let routes = client(base, None).show_routes(false).await;
        assert_eq!(
            routes.unwrap_err().to_string(),
            "404 Not Found: no such endpoint"
        );
    }
}
