//! Validation: every semantic problem of a parsed config, each with its field path.

use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::Uri;

use super::monitor::MonitorConfig;
use super::path::FieldPath;
use super::types::{
    path_under, AnalysisConfig, CaptureConfig, CompareConfig, Config, EtcdConfig, FeedbackConfig,
    FleetConfig, GatesConfig, Hold, Limits, Match, RolloutConfig, RouteConfig, ShadowConfig,
    StickyConfig, StoreKind, Strategy, FEEDBACK_MAX_BODY_LIMIT, MAX_CONNECTIONS,
};
use super::units::ByteSize;

/// Collects every problem of `config`.
pub(crate) fn validate(config: &Config) -> Vec<(FieldPath, String)> {
    let mut found = Found::default();
    admin(config, &mut found);
    limits(&config.limits, &mut found);
    backends(config, &mut found);
    routing(config, &mut found);
    shadow(&config.shadow, FieldPath::new(&["shadow"]), &mut found);
    observers(config, &mut found);
    state(config, &mut found);
    fleet(&config.fleet, &mut found);
    found.0
}

/// Checks the state store's settings: etcd's, when it is the store or its block is written.
fn state(config: &Config, found: &mut Found) {
    let etcd = FieldPath::new(&["state", "etcd"]);
    match (&config.state.etcd, config.state.store) {
        (None, StoreKind::Etcd) => found.bad(
            etcd,
            "`state.store: etcd` needs `state.etcd` (at least its `endpoints`)",
        ),
        (None, StoreKind::File) => {}
        (Some(e), _) => etcd_settings(e, etcd, found),
    }
}

/// Checks `state.etcd`: an http(s) endpoint at least, a prefix from the root, a lease of
/// a second or more and a timeout.
fn etcd_settings(e: &EtcdConfig, p: FieldPath, found: &mut Found) {
    if e.endpoints.is_empty() {
        found.bad(
            p.clone().key("endpoints"),
            "at least one endpoint is needed",
        );
    }
    for (i, url) in e.endpoints.iter().enumerate() {
        if let Err(msg) = check_http_url(url) {
            found.bad(p.clone().key("endpoints").index(i), msg);
        }
    }
    if !e.prefix.starts_with('/') {
        found.bad(
            p.clone().key("prefix"),
            format!("must start with `/`, got `{}`", e.prefix),
        );
    }
    if e.lease_ttl.0 < std::time::Duration::from_secs(1) {
        found.bad(
            p.clone().key("lease_ttl"),
            format!(
                "must be at least 1s (etcd leases count whole seconds), got {}",
                e.lease_ttl
            ),
        );
    }
    if e.timeout.0.is_zero() {
        found.bad(p.key("timeout"), "must be more than 0");
    }
}

/// Checks an etcd endpoint or an advertised address: an `http://` or `https://` URL with a
/// host and nothing after it.
fn check_http_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{url}` must start with http:// or https://"));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("`{url}` has no host"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("`{url}` must be a scheme, host and port only"));
    }
    Ok(())
}

/// Checks `fleet`: a replica name that is not blank, an advertised http(s) admin URL.
fn fleet(f: &FleetConfig, found: &mut Found) {
    if f.replica.as_ref().is_some_and(|r| r.trim().is_empty()) {
        found.bad(
            FieldPath::new(&["fleet", "replica"]),
            "must not be empty (leave it out for the host name)",
        );
    }
    if let Some(url) = &f.advertise {
        if let Err(msg) = check_http_url(url) {
            found.bad(FieldPath::new(&["fleet", "advertise"]), msg);
        }
    }
}

/// Checks every `monitor`, `capture` and `feedback` block (top-level and each route's),
/// and that each route's `output_drift` and `accuracy` gates have what they read.
fn observers(config: &Config, found: &mut Found) {
    for (p, m) in config.monitor_blocks() {
        monitor(m, p, found);
    }
    if let Some(c) = &config.capture {
        capture(c, FieldPath::new(&["capture"]), found);
    }
    if let Some(f) = &config.feedback {
        feedback(f, FieldPath::new(&["feedback"]), found);
    }
    let listed = config.written.routes.as_deref().unwrap_or_default();
    for (i, r) in listed.iter().enumerate() {
        let p = FieldPath::new(&["routes"]).index(i);
        if let Some(c) = &r.capture {
            capture(c, p.clone().key("capture"), found);
        }
        if let Some(f) = &r.feedback {
            feedback(f, p.key("feedback"), found);
        }
    }
    shared_capture_paths(config, found);
    for (i, route) in config.routes().iter().enumerate() {
        let Some(a) = &route.rollout.analysis else {
            continue;
        };
        let g = match config.written.rollout {
            true => FieldPath::new(&["rollout"]),
            false => FieldPath::new(&["routes"]).index(i).key("rollout"),
        }
        .key("analysis")
        .key("gates");
        if a.gates.output_drift.is_some() && route.monitor.sample <= 0.0 {
            found.bad(
                g.clone().key("output_drift"),
                "needs monitoring on this route (`monitor.sample` above 0)",
            );
        }
        if a.gates.accuracy.is_some() && route.feedback.is_none() {
            found.bad(
                g.key("accuracy"),
                "needs a `feedback:` block (top-level or the route's): accuracy comes from labels",
            );
        }
    }
}

/// Checks that routes writing their prediction log into the same directory agree on how:
/// one directory is one log, written with one set of `redact` pointers.
fn shared_capture_paths(config: &Config, found: &mut Found) {
    let mut seen: Vec<(&std::path::Path, &CaptureConfig, FieldPath)> = Vec::new();
    let top = config
        .capture
        .iter()
        .map(|c| (c, FieldPath::new(&["capture"])));
    let listed = config.written.routes.as_deref().unwrap_or_default();
    let routes = listed.iter().enumerate().filter_map(|(i, r)| {
        let p = FieldPath::new(&["routes"]).index(i).key("capture");
        r.capture.as_ref().map(|c| (c, p))
    });
    for (c, p) in top.chain(routes) {
        let clash = seen.iter().find(|(path, other, _)| {
            *path == c.path.as_path()
                && (other.redact != c.redact
                    || other.max_file != c.max_file
                    || other.keep != c.keep)
        });
        if let Some((_, _, first)) = clash {
            found.bad(
                p.key("path"),
                format!(
                    "{} is also the directory of `{first}` with other redact, max_file or keep: one directory is one log; give each its own directory or the same settings",
                    c.path.display()
                ),
            );
        } else {
            seen.push((c.path.as_path(), c, p));
        }
    }
}

/// Checks a `monitor` block (its reference file is checked by the monitor, which reads
/// it: see [`Outside`](crate::config::Outside)).
fn monitor(m: &MonitorConfig, p: FieldPath, found: &mut Found) {
    if let Err(e) = m.validate() {
        found.bad(p, e);
    }
}

/// Checks a `capture` block: its path, percentages, sizes and redact pointers.
fn capture(c: &CaptureConfig, p: FieldPath, found: &mut Found) {
    if c.path.as_os_str().is_empty() {
        found.bad(p.clone().key("path"), "must name a directory");
    }
    percent(c.sample, p.clone().key("sample"), found);
    if c.max_file.0 == 0 {
        found.bad(p.clone().key("max_file"), "must be more than 0");
    }
    if c.keep == 0 {
        found.bad(p.clone().key("keep"), "must be at least 1");
    }
    let mut errors = Vec::new();
    crate::wire::pointer::check("redact", &c.redact, &mut errors);
    for e in errors {
        found.bad(p.clone().key("redact"), e);
    }
}

/// Checks a `feedback` block's bounds.
fn feedback(f: &FeedbackConfig, p: FieldPath, found: &mut Found) {
    if f.retain.0.is_zero() {
        found.bad(p.clone().key("retain"), "must be more than 0");
    }
    if f.max_pending == 0 {
        found.bad(p.clone().key("max_pending"), "must be at least 1");
    }
    if f.max_body.0 == 0 {
        found.bad(p.clone().key("max_body"), "must be more than 0");
    } else if f.max_body.0 > FEEDBACK_MAX_BODY_LIMIT {
        let most = ByteSize(FEEDBACK_MAX_BODY_LIMIT);
        found.bad(
            p.clone().key("max_body"),
            format!("must be at most {most}: send labels in batches"),
        );
    }
    percent(f.sample, p.key("sample"), found);
}

/// Checks a percentage, 0 to 100.
fn percent(v: f64, p: FieldPath, found: &mut Found) {
    if !(0.0..=100.0).contains(&v) {
        found.bad(p, format!("must be between 0 and 100, got {v}"));
    }
}

/// The problems found so far, in the order they are reported.
#[derive(Default)]
struct Found(Vec<(FieldPath, String)>);

impl Found {
    /// Records that the value at `path` is wrong, and why.
    fn bad(&mut self, path: FieldPath, msg: impl Into<String>) {
        self.0.push((path, msg.into()));
    }
}

/// Checks the admin API's address against the data plane's, and its token.
fn admin(config: &Config, found: &mut Found) {
    if config.listen == config.admin.listen && config.listen.port() != 0 {
        found.bad(
            FieldPath::new(&["admin", "listen"]),
            format!("must differ from `listen` ({})", config.listen),
        );
    }
    if !config.admin.listen.ip().is_loopback() && config.admin.token().is_none() {
        found.bad(
            FieldPath::new(&["admin", "listen"]),
            format!(
                "the admin API listens on {} (not loopback) but no token is set in ${}; set the token or listen on 127.0.0.1",
                config.admin.listen, config.admin.token_env
            ),
        );
    }
}

/// Checks that the client limits are not zero.
fn limits(limits: &Limits, found: &mut Found) {
    for (field, zero) in [
        ("max_body", limits.max_body.0 == 0),
        ("header_timeout", limits.header_timeout.0.is_zero()),
        ("idle_timeout", limits.idle_timeout.0.is_zero()),
        ("body_timeout", limits.body_timeout.0.is_zero()),
        ("send_timeout", limits.send_timeout.0.is_zero()),
        ("drain_timeout", limits.drain_timeout.0.is_zero()),
    ] {
        if zero {
            found.bad(FieldPath::new(&["limits", field]), "must be more than 0");
        }
    }
    if limits.max_connections == 0 {
        found.bad(
            FieldPath::new(&["limits", "max_connections"]),
            "must be at least 1",
        );
    }
}

/// Checks that there is a backend, and each one's URL, timeout and connection bound.
fn backends(config: &Config, found: &mut Found) {
    if config.backends.is_empty() {
        found.bad(
            FieldPath::new(&["backends"]),
            "at least one backend is needed",
        );
    }
    for (name, b) in &config.backends {
        let path = FieldPath::new(&["backends", name]);
        if let Err(msg) = check_backend_url(&b.url) {
            found.bad(path.clone().key("url"), msg);
        }
        if b.timeout.0.is_zero() {
            found.bad(path.clone().key("timeout"), "must be more than 0");
        }
        if !(1..=MAX_CONNECTIONS).contains(&b.max_connections) {
            found.bad(
                path.key("max_connections"),
                format!("must be between 1 and {}", MAX_CONNECTIONS),
            );
        }
    }
}

/// Checks that the file routes one way, `rollout:` or `routes:`, then that rollout or
/// each route.
fn routing(config: &Config, found: &mut Found) {
    let written = &config.written;
    match (written.rollout, &written.routes) {
        (false, None) => found.bad(
            FieldPath::default(),
            "missing field `rollout`: a config needs a top-level `rollout:` (one route for every request) or a `routes:` list",
        ),
        (true, Some(_)) => found.bad(
            FieldPath::new(&["routes"]),
            "`rollout:` and `routes:` are both set; a config has one or the other, never both: move the top-level rollout into a route",
        ),
        _ => {}
    }
    if written.rollout {
        rollout(config, &config.rollout, FieldPath::new(&["rollout"]), found);
    }
    if let Some(list) = &written.routes {
        routes(config, list, found);
    }
}

/// Checks the `routes:` list: at least one route, each one's name and `match`, and its
/// rollout and shadow as the top-level ones are checked.
fn routes(config: &Config, list: &[RouteConfig], found: &mut Found) {
    if list.is_empty() {
        found.bad(FieldPath::new(&["routes"]), "at least one route is needed");
    }
    for (i, route) in list.iter().enumerate() {
        let p = FieldPath::new(&["routes"]).index(i);
        route_name(list, i, p.clone().key("name"), found);
        match &route.when {
            None if i + 1 < list.len() => found.bad(
                p.clone().key("match"),
                "missing: only the last route may leave out `match` (without it a route takes every request, and the routes after it would never be reached)",
            ),
            None => {}
            Some(m) => route_match(list, i, m, p.clone().key("match"), found),
        }
        rollout(config, &route.rollout, p.clone().key("rollout"), found);
        if let Some(s) = &route.shadow {
            shadow(s, p.key("shadow"), found);
        }
    }
}

/// Checks that route `i`'s name is well-formed and not taken by an earlier route.
fn route_name(list: &[RouteConfig], i: usize, p: FieldPath, found: &mut Found) {
    let name = &list[i].name;
    let well_formed = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !well_formed {
        found.bad(
            p,
            format!("`{name}` is not a route name: use lowercase letters, digits and `-`"),
        );
    } else if let Some(j) = list[..i].iter().position(|r| r.name == *name) {
        found.bad(
            p,
            format!("`{name}` is already the name of routes[{j}]; route names are unique"),
        );
    }
}

/// Checks route `i`'s conditions: at least one, each well-formed, and not all implied by
/// an earlier route's (which would take every request this one could).
fn route_match(list: &[RouteConfig], i: usize, m: &Match, p: FieldPath, found: &mut Found) {
    if m.is_catch_all() {
        found.bad(
            p,
            "has no condition: give `model`, `path_prefix`, `header` or `host`, or leave `match` out on the last route to take every request",
        );
        return;
    }
    if m.model
        .as_ref()
        .is_some_and(|model| model.trim().is_empty())
    {
        found.bad(p.clone().key("model"), "must not be empty");
    }
    if let Some(prefix) = &m.path_prefix {
        if let Err(msg) = check_path_prefix(prefix) {
            found.bad(p.clone().key("path_prefix"), msg);
        }
    }
    for (i, (name, value)) in m.header.iter().enumerate() {
        let check = check_header(name).and_then(|()| {
            let twice = m
                .header
                .keys()
                .take(i)
                .any(|n| n.eq_ignore_ascii_case(name));
            if twice {
                return Err(format!(
                    "`{name}` is given twice (header names are case-insensitive)"
                ));
            }
            HeaderValue::from_str(value)
                .ok()
                .filter(|_| value.trim() == value)
                .map(|_| ())
                .ok_or_else(|| {
                    format!("`{value}` is not a valid header value (or starts or ends with white space)")
                })
        });
        if let Err(msg) = check {
            found.bad(p.clone().key("header").key(name), msg);
        }
    }
    if let Some(host) = &m.host {
        if let Err(msg) = check_host(host) {
            found.bad(p.clone().key("host"), msg);
        }
    }
    // An earlier empty `match` is reported on its own.
    let earlier = list[..i].iter().enumerate().find(|(_, r)| {
        r.when
            .as_ref()
            .is_some_and(|e| !e.is_catch_all() && takes_all_of(e, m))
    });
    if let Some((j, r)) = earlier {
        found.bad(
            p,
            format!(
                "routes[{j}] (`{}`) takes every request these conditions match, so this route would never be reached: put the narrower route first",
                r.name
            ),
        );
    }
}

/// True when every request that `later` matches is also matched by `earlier`: each of
/// `earlier`'s conditions is one of `later`'s, or (a path prefix) implied by it.
fn takes_all_of(earlier: &Match, later: &Match) -> bool {
    fn implied<T>(e: &Option<T>, l: &Option<T>, by: impl Fn(&T, &T) -> bool) -> bool {
        match (e, l) {
            (None, _) => true,
            (Some(e), Some(l)) => by(e, l),
            (Some(_), None) => false,
        }
    }
    implied(&earlier.model, &later.model, |e, l| e == l)
        && implied(&earlier.path_prefix, &later.path_prefix, |e, l| {
            prefix_covers(e, l)
        })
        && implied(&earlier.host, &later.host, |e, l| host_covers(e, l))
        && earlier.header.iter().all(|(name, value)| {
            later
                .header
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value)
        })
}

/// True when every path under prefix `later` is under prefix `earlier`. Prefixes match
/// whole segments (as the data plane's matcher does: `/fraud` takes `/fraud` and
/// `/fraud/x`, not `/fraudulent`), and a trailing `/` changes nothing.
pub(super) fn prefix_covers(earlier: &str, later: &str) -> bool {
    path_under(later.trim_end_matches('/'), earlier)
}

/// True when every request for host `later` is for host `earlier`: the same host, and
/// the same port or none in `earlier` (a host without a port takes any port).
fn host_covers(earlier: &str, later: &str) -> bool {
    match (Authority::try_from(earlier), Authority::try_from(later)) {
        (Ok(e), Ok(l)) => {
            e.host().eq_ignore_ascii_case(l.host())
                && (e.port_u16().is_none() || e.port_u16() == l.port_u16())
        }
        // Both are validated hosts by now.
        _ => false,
    }
}

/// Checks a rollout (top-level or a route's, at `rollout`): its backends, routing
/// headers, strategy, analysis and fast rollback.
fn rollout(config: &Config, r: &RolloutConfig, rollout: FieldPath, found: &mut Found) {
    variants(config, r, &rollout, found);
    if let Some(s) = &r.sticky {
        sticky(s, rollout.clone().key("sticky"), found);
    }
    if let Some(h) = &r.override_header {
        if let Err(msg) = check_header(h) {
            found.bad(rollout.clone().key("override_header"), msg);
        }
    }
    strategy(r, &rollout, found);
    if let Some(a) = &r.analysis {
        analysis(a, rollout.clone().key("analysis"), found);
    }
    if let Some(f) = &r.fast_rollback {
        if f.consecutive_errors == 0 {
            found.bad(
                rollout.key("fast_rollback").key("consecutive_errors"),
                "must be at least 1",
            );
        }
    }
}

/// Checks that the stable and the candidate are known backends, and two different ones.
fn variants(config: &Config, r: &RolloutConfig, rollout: &FieldPath, found: &mut Found) {
    if !config.backends.contains_key(&r.stable) {
        found.bad(
            rollout.clone().key("stable"),
            unknown_backend(config, &r.stable),
        );
    }
    if let Some(c) = &r.candidate {
        if !config.backends.contains_key(c) {
            found.bad(rollout.clone().key("candidate"), unknown_backend(config, c));
        } else if *c == r.stable {
            found.bad(
                rollout.clone().key("candidate"),
                format!("must differ from `stable` (both are `{c}`)"),
            );
        }
    }
}

/// Checks that stickiness reads exactly one valid header or cookie.
fn sticky(s: &StickyConfig, p: FieldPath, found: &mut Found) {
    match (&s.header, &s.cookie) {
        (Some(h), None) => {
            if let Err(msg) = check_header(h) {
                found.bad(p.key("header"), msg);
            }
        }
        (None, Some(c)) if c.is_empty() => found.bad(p.key("cookie"), "must not be empty"),
        (None, Some(_)) => {}
        _ => found.bad(p, "set exactly one of `header` or `cookie`"),
    }
}

/// Checks that only the chosen strategy's settings are set: a canary's steps, or
/// `blue_green` for a blue-green rollout.
fn strategy(r: &RolloutConfig, rollout: &FieldPath, found: &mut Found) {
    match r.strategy {
        Strategy::Canary => {
            steps(r, rollout, found);
            if r.blue_green.is_some() {
                found.bad(
                    rollout.clone().key("blue_green"),
                    "only used with `strategy: blue-green`",
                );
            }
        }
        Strategy::BlueGreen => {
            if !r.steps.is_empty() {
                found.bad(
                    rollout.clone().key("steps"),
                    "steps are not used with `strategy: blue-green` (promotion moves 100 % at once); remove them",
                );
            }
        }
    }
}

/// Checks a canary's steps: at least one when there is a candidate, each one in range,
/// weights never going down.
fn steps(r: &RolloutConfig, rollout: &FieldPath, found: &mut Found) {
    if r.candidate.is_some() && r.steps.is_empty() {
        found.bad(
            rollout.clone().key("steps"),
            "a canary rollout needs at least one step (e.g. `- { weight: 100 }`)",
        );
    }
    let mut last_weight = 0.0;
    for (i, step) in r.steps.iter().enumerate() {
        let p = rollout.clone().key("steps").index(i);
        if !(0.0..=100.0).contains(&step.weight) {
            found.bad(
                p.clone().key("weight"),
                format!("must be between 0 and 100, got {}", step.weight),
            );
        } else if step.weight < last_weight {
            found.bad(
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
                found.bad(
                    p.clone().key("mirror"),
                    format!("must be between 0 and 100, got {m}"),
                );
            }
        }
        if let Some(Hold::For(d)) = step.hold {
            if d.0 > std::time::Duration::from_secs(30 * 24 * 3600) {
                found.bad(p.key("hold"), "must be at most 30 days");
            }
        }
    }
}

/// Checks the analysis' timing and failure limit, then its gates.
fn analysis(a: &AnalysisConfig, p: FieldPath, found: &mut Found) {
    if a.interval.0.is_zero() {
        found.bad(p.clone().key("interval"), "must be more than 0");
    }
    if a.window.0 < a.interval.0 {
        found.bad(
            p.clone().key("window"),
            format!("must be at least the interval ({})", a.interval),
        );
    }
    if a.window.0 > std::time::Duration::from_secs(3600) {
        found.bad(p.clone().key("window"), "must be at most 1h");
    }
    if a.failure_limit == 0 {
        found.bad(p.clone().key("failure_limit"), "must be at least 1");
    }
    if !(a.max_client_share > 0.0 && a.max_client_share <= 1.0) {
        found.bad(
            p.clone().key("max_client_share"),
            format!(
                "is a share above 0 and at most 1 (1: no bound), got {}",
                a.max_client_share
            ),
        );
    }
    if !(0.5..=0.999_999_999).contains(&a.confidence) {
        found.bad(
            p.clone().key("confidence"),
            format!(
                "is a probability from 0.5 to 0.999999999 (0.95: a healthy candidate is failed at most 5 % of the time), got {}",
                a.confidence
            ),
        );
    }
    gates(&a.gates, p.key("gates"), found);
}

/// Checks each gate's threshold: ratios between 0 and 1, latencies above 0.
fn gates(gates: &GatesConfig, g: FieldPath, found: &mut Found) {
    if let Some(e) = &gates.error_rate {
        let ep = g.clone().key("error_rate");
        if e.max.is_none() && e.max_increase.is_none() {
            found.bad(ep.clone(), "set `max`, `max_increase` or both");
        }
        if let Some(max) = e.max {
            ratio(max, ep.clone().key("max"), found);
        }
        if let Some(increase) = e.max_increase {
            ratio(increase, ep.key("max_increase"), found);
        }
    }
    if let Some(l) = &gates.latency_p99 {
        let lp = g.clone().key("latency_p99");
        if l.max.is_some_and(|m| m.0.is_zero()) {
            found.bad(lp.clone().key("max"), "must be more than 0");
        }
        if l.max.is_none() && l.max_ratio.is_none() {
            found.bad(lp.clone(), "set `max`, `max_ratio` or both");
        }
        if l.min_difference.is_some() && l.max_ratio.is_none() {
            found.bad(
                lp.clone().key("min_difference"),
                "goes with `max_ratio`: it lets a ratio over it pass when the difference is smaller",
            );
        }
        if let Some(ratio) = l.max_ratio {
            if !(ratio.is_finite() && ratio > 0.0) {
                found.bad(
                    lp.key("max_ratio"),
                    format!("must be more than 0, got {ratio}"),
                );
            }
        }
    }
    if let Some(s) = &gates.shadow_agreement {
        ratio(s.min, g.clone().key("shadow_agreement").key("min"), found);
    }
    if let Some(d) = &gates.output_drift {
        if !(d.max.is_finite() && d.max >= 0.0) {
            found.bad(
                g.clone().key("output_drift").key("max"),
                format!("must be 0 or more, got {}", d.max),
            );
        }
    }
    if let Some(a) = &gates.accuracy {
        let ap = g.key("accuracy");
        if a.min.is_none() && a.max_drop.is_none() {
            found.bad(ap.clone(), "set `min`, `max_drop` or both");
        }
        if let Some(min) = a.min {
            ratio(min, ap.clone().key("min"), found);
        }
        if let Some(drop) = a.max_drop {
            ratio(drop, ap.key("max_drop"), found);
        }
    }
}

/// Checks a ratio, 0 to 1.
fn ratio(v: f64, p: FieldPath, found: &mut Found) {
    if !(0.0..=1.0).contains(&v) {
        found.bad(p, format!("is a ratio between 0 and 1, got {v}"));
    }
}

/// Checks a shadow block (top-level or a route's, at `sp`): its percentages and queue,
/// then its comparison rules.
fn shadow(s: &ShadowConfig, sp: FieldPath, found: &mut Found) {
    if !(0.0..=100.0).contains(&s.mirror) {
        found.bad(
            sp.clone().key("mirror"),
            format!("must be between 0 and 100, got {}", s.mirror),
        );
    }
    if let Some(c) = s.calibrate {
        if !(c > 0.0 && c <= 100.0) {
            found.bad(
                sp.clone().key("calibrate"),
                format!("must be above 0 and at most 100 (% of mirrored requests), got {c}"),
            );
        }
    }
    if s.max_in_flight == 0 {
        found.bad(sp.clone().key("max_in_flight"), "must be at least 1");
    }
    shadow_compare(&s.compare, sp.key("compare"), found);
}

/// Checks the comparison's JSON pointers and tolerances.
fn shadow_compare(c: &CompareConfig, cp: FieldPath, found: &mut Found) {
    for (field, list) in [("ignore", &c.ignore), ("redact", &c.redact)] {
        for (i, ptr) in list.iter().enumerate() {
            if ptr.is_empty() && field == "ignore" {
                found.bad(
                    cp.clone().key(field).index(i),
                    "an empty pointer means the whole response: every comparison would agree",
                );
            } else if !ptr.is_empty() && !ptr.starts_with('/') {
                found.bad(
                    cp.clone().key(field).index(i),
                    format!("`{ptr}` is not a JSON pointer (they start with `/`)"),
                );
            } else if ptr.split('~').skip(1).any(|r| !r.starts_with(['0', '1'])) {
                found.bad(
                    cp.clone().key(field).index(i),
                    format!(
                        "`{ptr}` is not a JSON pointer (`~` is written `~0`, `/` in a key `~1`)"
                    ),
                );
            }
        }
    }
    for (field, v) in [
        ("abs_tolerance", c.abs_tolerance),
        ("rel_tolerance", c.rel_tolerance),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            found.bad(
                cp.clone().key(field),
                format!("must be a number ≥ 0, got {v}"),
            );
        }
    }
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

fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("`{prefix}` must start with `/`"));
    }
    let is_path = !prefix.contains(['?', '#']) && PathAndQuery::try_from(prefix).is_ok();
    if !is_path {
        return Err(format!("`{prefix}` is not a URL path"));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let is_host = !host.is_empty()
        && !host.contains(['@', '/', '*'])
        && Authority::try_from(host).is_ok_and(|a| !a.host().is_empty())
        && port_is_valid(host);
    if !is_host {
        return Err(format!(
            "`{host}` is not a host (such as `models.example.com` or `models.example.com:8080`)"
        ));
    }
    Ok(())
}

/// Whether the text after a host's `:` (outside IPv6 brackets), if any, is a port number:
/// `Authority` takes any text there, and the request matcher refuses what is not one.
fn port_is_valid(host: &str) -> bool {
    let after_brackets = host.rfind(']').map_or(host, |i| &host[i..]);
    match after_brackets.rfind(':') {
        Some(i) => after_brackets[i + 1..].parse::<u16>().is_ok(),
        None => true,
    }
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
