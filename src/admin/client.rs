//! The admin API's client, for the control commands: `status`, `promote`, `pause`,
//! `resume`, `rollback` and `retry` call it and print its answers for a person.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api;
use super::window::{BackendFigures, WindowFigures};
use crate::rollout::analysis::Analysis;
use crate::rollout::status::{AnalysisStatus, ConfigStatus};
use crate::rollout::{Action, Event, Status};

/// Where the admin API is and how to authorize.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub base: String,
    pub token: Option<String>,
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

/// The status as the admin API answers it: the rollout's [`Status`] and, from
/// `GET /api/v1/status`, the live window figures.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub rollout: Status,
    /// Only `GET /api/v1/status` adds them; a control's answer has none.
    #[serde(default)]
    pub window: Option<WindowFigures>,
}

impl AdminClient {
    /// The rollout status with the live window figures.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.call(Method::GET, api::STATUS, None).await
    }

    /// The status JSON exactly as the admin API sent it, for `status --json`.
    pub async fn status_json(&self) -> Result<String, ClientError> {
        let bytes = self.answer(Method::GET, api::STATUS, None).await?;
        serde_json::from_slice::<IgnoredAny>(&bytes).map_err(invalid)?;
        String::from_utf8(bytes.into()).map_err(invalid)
    }

    /// Asks for `action`; the answer is the status after it.
    pub async fn control(&self, action: &Action) -> Result<StatusReport, ClientError> {
        let body = match action {
            Action::Promote { full } => Some(json!({ "full": full })),
            Action::Pause { reason } | Action::Rollback { reason } => {
                Some(json!({ "reason": reason }))
            }
            Action::Resume | Action::Retry => None,
        };
        self.call(Method::POST, api::control_path(action), body)
            .await
    }

    /// Calls `method path` with an optional JSON body and reads the JSON answer as a `T`
    /// (a [`Value`] takes any).
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
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(crate::error::root_cause(&e).to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(invalid)?
            .to_bytes();
        if !status.is_success() {
            let value: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
            let message = value["error"].as_str().unwrap_or("request failed").into();
            return Err(ClientError::Refused { status, message });
        }
        Ok(bytes)
    }
}

/// An answer that is not what the admin API sends.
fn invalid(e: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(e.to_string())
}

/// The status as a person reads it.
pub fn render_status(s: &StatusReport) -> String {
    let r = &s.rollout;
    [
        placement(r),
        hold(r),
        reason(r),
        config(&r.config),
        analysis(&r.analysis),
        s.window.as_ref().map_or_else(String::new, window),
        recent_events(&r.events),
    ]
    .concat()
}

/// Where the rollout is: phase, backends, step and traffic split.
fn placement(r: &Status) -> String {
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

/// What the current step waits for, if anything.
fn hold(r: &Status) -> String {
    match r.hold_remaining_s {
        _ if r.manual_hold => "hold:      manual: waits for `switchyard promote`\n".into(),
        Some(left) => format!("hold:      {left:.0}s left\n"),
        None => String::new(),
    }
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
}
