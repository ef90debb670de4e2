//! The control commands' client: `status`, `promote`, `pause`, `resume`, `rollback`, `retry`
//! talk to the admin API.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the admin API is and how to authorize.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub base: String,
    pub token: Option<String>,
}

/// A control command that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("invalid answer from the admin API: {0}")]
    Invalid(String),
}

impl AdminClient {
    /// Calls `method path` with an optional JSON body and returns the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{}", self.base.trim_end_matches('/'), path);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = req
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CliError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| CliError::Unreachable {
                url: url.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| CliError::Unreachable {
                url: url.clone(),
                reason: crate::error::root_cause(&e).to_string(),
            })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::Invalid(e.to_string()))?
            .to_bytes();
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| CliError::Invalid(e.to_string()))?;
        if !status.is_success() {
            let message = value["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_string();
            return Err(CliError::Refused { status, message });
        }
        Ok(value)
    }
}

/// The status as a person reads it.
pub fn render_status(s: &Value) -> String {
    let mut out = String::new();
    let num = |v: &Value| {
        v.as_f64()
            .map(|f| format!("{f}"))
            .unwrap_or_else(|| "-".into())
    };
    out.push_str(&format!(
        "phase:     {}\nstrategy:  {}\nstable:    {}\ncandidate: {}\nstep:      {} of {}\nweight:    {}%\nmirror:    {}%\n",
        s["phase"].as_str().unwrap_or("?"),
        s["strategy"].as_str().unwrap_or("?"),
        s["stable"].as_str().unwrap_or("?"),
        s["candidate"].as_str().unwrap_or("(none)"),
        s["step"],
        s["steps"],
        num(&s["weight"]),
        num(&s["mirror"]),
    ));
    if s["manual_hold"].as_bool() == Some(true) {
        out.push_str("hold:      manual: waits for `switchyard promote`\n");
    } else if let Some(h) = s["hold_remaining_s"].as_f64() {
        out.push_str(&format!("hold:      {h:.0}s left\n"));
    }
    if let Some(r) = s["reason"].as_str() {
        out.push_str(&format!("reason:    {r}\n"));
    }
    out.push_str(&format!(
        "config:    generation {}",
        s["config"]["generation"]
    ));
    if let Some(e) = s["config"]["last_error"].as_str() {
        out.push_str(&format!(
            ", last reload REJECTED:\n  {}",
            e.replace('\n', "\n  ")
        ));
    }
    out.push('\n');
    let a = &s["analysis"];
    if a["enabled"].as_bool() == Some(true) {
        match a["last"].as_object() {
            Some(last) => {
                out.push_str(&format!(
                    "analysis:  {} at {} ({} samples; failures {}/{})\n",
                    last["verdict"].as_str().unwrap_or("?"),
                    last["at"].as_str().unwrap_or("?"),
                    last["samples"],
                    a["failures"],
                    a["failure_limit"],
                ));
                for g in last["gates"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "  {:<18} {:<12} {}\n",
                        g["gate"].as_str().unwrap_or("?"),
                        g["outcome"].as_str().unwrap_or("?"),
                        g["detail"].as_str().unwrap_or("")
                    ));
                }
            }
            None => out.push_str("analysis:  no evaluation yet\n"),
        }
    }
    let w = &s["window"];
    for side in ["stable", "candidate"] {
        let f = &w[side];
        if f.is_object() {
            let pct = |v: &Value| {
                v.as_f64()
                    .map_or("-".to_string(), |x| format!("{:.2}%", x * 100.0))
            };
            let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}ms"));
            out.push_str(&format!(
                "{side:<10} {} requests, errors {}, p50 {}, p99 {}",
                f["requests"],
                pct(&f["error_rate"]),
                ms(&f["p50_ms"]),
                ms(&f["p99_ms"]),
            ));
            let sh = &f["shadow"];
            if side == "candidate"
                && sh["agree"].as_u64().unwrap_or(0)
                    + sh["disagree"].as_u64().unwrap_or(0)
                    + sh["incomparable"].as_u64().unwrap_or(0)
                    > 0
            {
                out.push_str(&format!(
                    ", shadow agreement {} ({} agree, {} disagree, {} incomparable)",
                    pct(&sh["agreement"]),
                    sh["agree"],
                    sh["disagree"],
                    sh["incomparable"]
                ));
            }
            out.push_str(&format!(" (last {}s)\n", w["span_s"]));
        }
    }
    let events = s["events"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        out.push_str("recent events:\n");
        for e in events.iter().rev().take(8).rev() {
            out.push_str(&format!(
                "  {}  {:<9} {}\n",
                e["at"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ));
        }
    }
    out
}
