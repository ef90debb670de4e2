//! Validation: every semantic problem of a parsed config, each with its field path.

use std::fmt;

use http::header::HeaderName;
use http::Uri;

use super::{Config, Hold, Strategy};

/// One segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A field path such as `rollout.steps[1].weight`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<Seg>);

impl FieldPath {
    fn new(keys: &[&str]) -> Self {
        FieldPath(keys.iter().map(|k| Seg::Key((*k).to_string())).collect())
    }
    fn key(mut self, k: &str) -> Self {
        self.0.push(Seg::Key(k.to_string()));
        self
    }
    fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }
    pub(crate) fn segs(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Collects every problem of `config`.
pub(crate) fn validate(config: &Config) -> Vec<(FieldPath, String)> {
    let mut out = Vec::new();
    let mut bad = |path: FieldPath, msg: String| out.push((path, msg));

    if config.listen == config.admin.listen && config.listen.port() != 0 {
        bad(
            FieldPath::new(&["admin", "listen"]),
            format!("must differ from `listen` ({})", config.listen),
        );
    }
    if !config.admin.listen.ip().is_loopback() && config.admin.token().is_none() {
        bad(
            FieldPath::new(&["admin", "listen"]),
            format!(
                "the admin API listens on {} (not loopback) but no token is set in ${}; set the token or listen on 127.0.0.1",
                config.admin.listen, config.admin.token_env
            ),
        );
    }
    if config.limits.max_body.0 == 0 {
        bad(
            FieldPath::new(&["limits", "max_body"]),
            "must be more than 0".into(),
        );
    }
    if config.limits.header_timeout.0.is_zero() {
        bad(
            FieldPath::new(&["limits", "header_timeout"]),
            "must be more than 0".into(),
        );
    }
    if config.limits.idle_timeout.0.is_zero() {
        bad(
            FieldPath::new(&["limits", "idle_timeout"]),
            "must be more than 0".into(),
        );
    }

    if config.backends.is_empty() {
        bad(
            FieldPath::new(&["backends"]),
            "at least one backend is needed".into(),
        );
    }
    for (name, b) in &config.backends {
        let path = FieldPath::new(&["backends", name]);
        if let Err(msg) = check_backend_url(&b.url) {
            bad(path.clone().key("url"), msg);
        }
        if b.timeout.0.is_zero() {
            bad(path.key("timeout"), "must be more than 0".into());
        }
    }

    let r = &config.rollout;
    let rollout = FieldPath::new(&["rollout"]);
    if !config.backends.contains_key(&r.stable) {
        bad(
            rollout.clone().key("stable"),
            unknown_backend(config, &r.stable),
        );
    }
    if let Some(c) = &r.candidate {
        if !config.backends.contains_key(c) {
            bad(rollout.clone().key("candidate"), unknown_backend(config, c));
        } else if *c == r.stable {
            bad(
                rollout.clone().key("candidate"),
                format!("must differ from `stable` (both are `{c}`)"),
            );
        }
    }
    if let Some(s) = &r.sticky {
        let p = rollout.clone().key("sticky");
        match (&s.header, &s.cookie) {
            (Some(h), None) => {
                if let Err(msg) = check_header(h) {
                    bad(p.key("header"), msg);
                }
            }
            (None, Some(c)) if c.is_empty() => bad(p.key("cookie"), "must not be empty".into()),
            (None, Some(_)) => {}
            _ => bad(p, "set exactly one of `header` or `cookie`".into()),
        }
    }
    if let Some(h) = &r.override_header {
        if let Err(msg) = check_header(h) {
            bad(rollout.clone().key("override_header"), msg);
        }
    }

    match r.strategy {
        Strategy::Canary => {
            if r.candidate.is_some() && r.steps.is_empty() {
                bad(
                    rollout.clone().key("steps"),
                    "a canary rollout needs at least one step (e.g. `- { weight: 100 }`)".into(),
                );
            }
            let mut last_weight = 0.0;
            for (i, step) in r.steps.iter().enumerate() {
                let p = rollout.clone().key("steps").index(i);
                if !(0.0..=100.0).contains(&step.weight) {
                    bad(
                        p.clone().key("weight"),
                        format!("must be between 0 and 100, got {}", step.weight),
                    );
                } else if step.weight < last_weight {
                    bad(
                        p.clone().key("weight"),
                        format!(
                            "must not go down ({} after {last_weight}): sticky users would flip back to stable",
                            step.weight
                        ),
                    );
                } else {
                    last_weight = step.weight;
                }
                if let Some(m) = step.mirror {
                    if !(0.0..=100.0).contains(&m) {
                        bad(
                            p.clone().key("mirror"),
                            format!("must be between 0 and 100, got {m}"),
                        );
                    }
                }
                if let Some(Hold::For(d)) = step.hold {
                    if d.0 > std::time::Duration::from_secs(30 * 24 * 3600) {
                        bad(p.key("hold"), "must be at most 30 days".into());
                    }
                }
            }
            if r.blue_green.is_some() {
                bad(
                    rollout.clone().key("blue_green"),
                    "only used with `strategy: blue-green`".into(),
                );
            }
        }
        Strategy::BlueGreen => {
            if !r.steps.is_empty() {
                bad(
                    rollout.clone().key("steps"),
                    "steps are not used with `strategy: blue-green` (promotion moves 100 % at once); remove them".into(),
                );
            }
        }
    }

    if let Some(a) = &r.analysis {
        let p = rollout.clone().key("analysis");
        if a.interval.0.is_zero() {
            bad(p.clone().key("interval"), "must be more than 0".into());
        }
        if a.window.0 < a.interval.0 {
            bad(
                p.clone().key("window"),
                format!("must be at least the interval ({})", a.interval),
            );
        }
        if a.window.0 > std::time::Duration::from_secs(3600) {
            bad(p.clone().key("window"), "must be at most 1h".into());
        }
        if a.failure_limit == 0 {
            bad(p.clone().key("failure_limit"), "must be at least 1".into());
        }
        let g = p.key("gates");
        if let Some(e) = &a.gates.error_rate {
            if !(0.0..=1.0).contains(&e.max) {
                bad(
                    g.clone().key("error_rate").key("max"),
                    format!("is a ratio between 0 and 1, got {}", e.max),
                );
            }
        }
        if let Some(l) = &a.gates.latency_p99 {
            let lp = g.clone().key("latency_p99");
            if l.max.is_some_and(|m| m.0.is_zero()) {
                bad(lp.clone().key("max"), "must be more than 0".into());
            }
            if l.max.is_none() && l.max_ratio.is_none() {
                bad(lp.clone(), "set `max`, `max_ratio` or both".into());
            }
            if let Some(ratio) = l.max_ratio {
                if !(ratio.is_finite() && ratio > 0.0) {
                    bad(
                        lp.key("max_ratio"),
                        format!("must be more than 0, got {ratio}"),
                    );
                }
            }
        }
        if let Some(s) = &a.gates.shadow_agreement {
            if !(0.0..=1.0).contains(&s.min) {
                bad(
                    g.key("shadow_agreement").key("min"),
                    format!("is a ratio between 0 and 1, got {}", s.min),
                );
            }
        }
    }
    if let Some(f) = &r.fast_rollback {
        if f.consecutive_errors == 0 {
            bad(
                rollout
                    .clone()
                    .key("fast_rollback")
                    .key("consecutive_errors"),
                "must be at least 1".into(),
            );
        }
    }

    let s = &config.shadow;
    let sp = FieldPath::new(&["shadow"]);
    if !(0.0..=100.0).contains(&s.mirror) {
        bad(
            sp.clone().key("mirror"),
            format!("must be between 0 and 100, got {}", s.mirror),
        );
    }
    if let Some(c) = s.calibrate {
        if !(c > 0.0 && c <= 100.0) {
            bad(
                sp.clone().key("calibrate"),
                format!("must be above 0 and at most 100 (% of mirrored requests), got {c}"),
            );
        }
    }
    if s.max_in_flight == 0 {
        bad(sp.clone().key("max_in_flight"), "must be at least 1".into());
    }
    let cp = sp.key("compare");
    for (field, list) in [("ignore", &s.compare.ignore), ("redact", &s.compare.redact)] {
        for (i, ptr) in list.iter().enumerate() {
            if ptr.is_empty() && field == "ignore" {
                bad(
                    cp.clone().key(field).index(i),
                    "an empty pointer means the whole response: every comparison would agree"
                        .into(),
                );
            } else if !ptr.is_empty() && !ptr.starts_with('/') {
                bad(
                    cp.clone().key(field).index(i),
                    format!("`{ptr}` is not a JSON pointer (they start with `/`)"),
                );
            }
        }
    }
    for (field, v) in [
        ("abs_tolerance", s.compare.abs_tolerance),
        ("rel_tolerance", s.compare.rel_tolerance),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bad(
                cp.clone().key(field),
                format!("must be a number ≥ 0, got {v}"),
            );
        }
    }
    out
}

fn unknown_backend(config: &Config, name: &str) -> String {
    let known: Vec<&str> = config.backends.keys().map(String::as_str).collect();
    format!("`{name}` is not a backend (known: {})", known.join(", "))
}

fn check_header(name: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("`{name}` is not a valid header name"))
}

fn check_backend_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{url}`: https upstreams are not supported yet; use http:// (TLS to model servers belongs to the mesh)"
            ))
        }
        _ => return Err(format!("`{url}` must start with http://")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("`{url}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}` must not have a query"));
    }
    Ok(())
}
