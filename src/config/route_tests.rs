//! Routes in the config: how both ways of writing routing read as one list of routes,
//! and every rule `routes:` is validated by, with the path and line each problem names.

use super::{parse, Match, Problem, Strategy, DEFAULT_ROUTE};

const ROUTES: &str = "\
backends:
  iris-v1: { url: 'http://127.0.0.1:18001' }
  iris-v2: { url: 'http://127.0.0.1:18002' }
  fraud-v6: { url: 'http://127.0.0.1:18003' }
shadow:
  mirror: 5
routes:
  - name: iris
    match: { model: iris }
    rollout:
      stable: iris-v1
      candidate: iris-v2
      steps: [{ weight: 100 }]
    shadow:
      compare: { protocol: v2 }
  - name: fraud
    match:
      path_prefix: /fraud/
      header: { x-tenant: acme }
    rollout: { stable: fraud-v6, strategy: blue-green }
  - name: rest
    rollout: { stable: iris-v1 }
";

const SINGLE: &str = "\
backends:
  blue: { url: 'http://127.0.0.1:18001' }
  green: { url: 'http://127.0.0.1:18002' }
rollout:
  stable: blue
  candidate: green
  steps: [{ weight: 100 }]
shadow:
  mirror: 20
";

// === normalization ===

#[test]
fn a_top_level_rollout_is_one_catch_all_route_named_default() {
    let config = parse(SINGLE).unwrap();
    let routes = config.routes();
    assert_eq!(routes.len(), 1);
    let route = &routes[0];
    assert_eq!(route.name, DEFAULT_ROUTE);
    assert!(route.when.is_catch_all());
    assert_eq!(route.rollout, config.rollout);
    assert_eq!(route.shadow, config.shadow);
    assert_eq!(route.shadow.mirror, 20.0);
}

#[test]
fn routes_keep_their_order_conditions_and_rollouts() {
    let config = parse(ROUTES).unwrap();
    let routes = config.routes();
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["iris", "fraud", "rest"]);

    assert_eq!(routes[0].when.model.as_deref(), Some("iris"));
    assert_eq!(routes[0].rollout.candidate.as_deref(), Some("iris-v2"));
    let fraud = &routes[1].when;
    assert_eq!(fraud.path_prefix.as_deref(), Some("/fraud/"));
    assert_eq!(
        fraud.header.get("x-tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!((fraud.model.as_ref(), fraud.host.as_ref()), (None, None));
    assert_eq!(routes[1].rollout.strategy, Strategy::BlueGreen);
    assert!(routes[2].when.is_catch_all());
    assert_eq!(routes[2].rollout.stable, "iris-v1");
}

#[test]
fn a_routes_own_shadow_replaces_the_top_level_one_as_a_whole() {
    let config = parse(ROUTES).unwrap();
    let routes = config.routes();
    // `iris` has its own: its unset keys take their defaults, not the top level's.
    assert_eq!(routes[0].shadow.compare.protocol, crate::wire::Protocol::V2);
    assert_eq!(routes[0].shadow.mirror, 0.0);
    // The others take the top level's.
    assert_eq!(routes[1].shadow, config.shadow);
    assert_eq!(routes[2].shadow.mirror, 5.0);
}

#[test]
fn the_single_rollout_of_a_routes_config_is_its_first_route() {
    let config = parse(ROUTES).unwrap();
    assert_eq!(config.rollout, config.routes()[0].rollout);
    assert_eq!(
        config.shadow.mirror, 5.0,
        "the top-level shadow is unchanged"
    );
}

#[test]
fn a_match_takes_everything_only_with_no_condition() {
    assert!(Match::default().is_catch_all());
    let header = Match {
        header: [("x-tenant".to_string(), "acme".to_string())].into(),
        ..Match::default()
    };
    assert!(!header.is_catch_all());
}

// === validation ===

/// The 1-based line of the only line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = (1..)
        .zip(text.lines())
        .filter(|(_, l)| l.contains(needle))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "`{needle}` should be on exactly one line of\n{text}"
    );
    hits[0]
}

/// `text` with `from` (which must occur) replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` is not in\n{text}");
    text.replacen(from, to, 1)
}

/// The problem `text` has at `path`, whose line must be that of `on_line` and whose
/// message must contain `says`.
fn problem_at(text: &str, path: &str, on_line: &str, says: &str) -> Problem {
    let problems = parse(text).expect_err("a problem").0;
    let p = problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("nothing reported at `{path}`: {problems:#?}\n{text}"));
    assert_eq!(p.line, Some(line_of(text, on_line)), "{p}\n{text}");
    assert!(p.message.contains(says), "{p}");
    p.clone()
}

#[test]
fn both_example_forms_are_valid() {
    parse(ROUTES).unwrap();
    parse(SINGLE).unwrap();
}

#[test]
fn a_broader_route_after_a_narrower_one_is_reachable() {
    let text = edit(
        ROUTES,
        "{ model: iris }",
        "{ model: iris, host: a.example }",
    );
    let text = edit(
        &text,
        "  - name: rest\n",
        "  - name: rest\n    match: { model: iris }\n",
    );
    let text = edit(&text, "path_prefix: /fraud/", "path_prefix: /fraud/v2/");
    let text = format!("{text}  - name: fraud-all\n    match: {{ path_prefix: /fraud/ }}\n    rollout: {{ stable: fraud-v6 }}\n");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.routes().len(), 4);
}

#[test]
fn each_route_rule_names_the_route_the_field_and_its_line() {
    // (what is changed, into what, the problem's path, the text on its line, what it says)
    let cases = [
        // Names.
        ("name: fraud", "name: Fraud_1", "routes[1].name", "Fraud_1", "not a route name"),
        ("name: rest", "name: ''", "routes[2].name", "name: ''", "not a route name"),
        ("name: rest", "name: iris # again", "routes[2].name", "# again", "already the name of routes[0]"),
        // Match.
        ("    match: { model: iris }\n", "", "routes[0].match", "name: iris", "only the last route"),
        ("match: { model: iris }", "match: {}", "routes[0].match", "match: {}", "no condition"),
        ("match: { model: iris }", "match: { header: {} }", "routes[0].match", "match: {", "no condition"),
        ("model: iris", "model: ' '", "routes[0].match.model", "model: ' '", "must not be empty"),
        ("/fraud/", "fraud/", "routes[1].match.path_prefix", "fraud/", "must start with `/`"),
        ("/fraud/", "/fraud?x=1", "routes[1].match.path_prefix", "/fraud?x=1", "not a URL path"),
        ("x-tenant: acme", "'x tenant': acme", "routes[1].match.header.x tenant", "x tenant", "not a valid header name"),
        ("x-tenant: acme", "x-tenant: \"ac\\nme\"", "routes[1].match.header.x-tenant", "ac\\nme", "not a valid header value"),
        ("{ model: iris }", "{ model: iris, host: 'http://x/' }", "routes[0].match.host", "host:", "not a host"),
        ("{ model: iris }", "{ model: iris, host: 'a@b' }", "routes[0].match.host", "host:", "not a host"),
        ("{ model: iris }", "{ model: iris, host: 'a.example:99999' }", "routes[0].match.host", "host:", "not a host"),
        ("{ model: iris }", "{ model: iris, host: 'a.example:abc' }", "routes[0].match.host", "host:", "not a host"),
        ("{ model: iris }", "{ model: iris, host: 'a.example:' }", "routes[0].match.host", "host:", "not a host"),
        ("{ model: iris }", "{ model: iris, host: '*.example' }", "routes[0].match.host", "host:", "not a host"),
        ("x-tenant: acme", "x-tenant: ' acme'", "routes[1].match.header.x-tenant", "' acme'", "not a valid header value"),
        ("x-tenant: acme", "x-tenant: acme, X-Tenant: b", "routes[1].match.header.x-tenant", "X-Tenant", "given twice"),
        (
            "  - name: rest\n",
            "  - name: rest\n    match: { model: iris, host: x.example }\n",
            "routes[2].match",
            "x.example",
            "routes[0] (`iris`) takes every request",
        ),
        (
            "  - name: rest\n",
            "  - name: rest\n    match: { path_prefix: /fraud/v2, header: { X-Tenant: acme, x-b: c } }\n",
            "routes[2].match",
            "/fraud/v2",
            "routes[1] (`fraud`) takes every request",
        ),
        // The route's rollout, checked as the top-level one is.
        ("stable: fraud-v6", "stable: fraud-v7", "routes[1].rollout.stable", "fraud-v7", "not a backend"),
        ("candidate: iris-v2", "candidate: iris-v1", "routes[0].rollout.candidate", "candidate: iris-v1", "must differ"),
        ("{ weight: 100 }", "{ weight: 150 }", "routes[0].rollout.steps[0].weight", "150", "between 0 and 100"),
        ("strategy: blue-green", "strategy: blue-green, steps: [{ weight: 5 }]", "routes[1].rollout.steps", "weight: 5", "not used"),
        // The route's shadow, checked as the top-level one is.
        ("compare: { protocol: v2 }", "mirror: 150", "routes[0].shadow.mirror", "mirror: 150", "between 0 and 100"),
        ("compare: { protocol: v2 }", "compare: { ignore: [id] }", "routes[0].shadow.compare.ignore[0]", "ignore: [id]", "not a JSON pointer"),
    ];
    for (from, to, path, on_line, says) in cases {
        let text = edit(ROUTES, from, to);
        problem_at(&text, path, on_line, says);
    }
}

#[test]
fn a_host_without_a_port_covers_every_port_of_it() {
    let with_hosts = |first: &str, last: &str| {
        let text = edit(
            ROUTES,
            "{ model: iris }",
            &format!("{{ model: iris, host: '{first}' }}"),
        );
        let rest = format!("  - name: rest\n    match: {{ model: iris, host: '{last}' }}\n");
        edit(&text, "  - name: rest\n", &rest)
    };
    let covered = with_hosts("A.example", "a.example:8080");
    problem_at(
        &covered,
        "routes[2].match",
        "a.example:8080",
        "routes[0] (`iris`)",
    );
    parse(&with_hosts("a.example:8080", "a.example")).expect("the broader host last");
    parse(&with_hosts("a.example:8080", "a.example:9090")).expect("another port");
}

#[test]
fn the_file_routes_one_way_or_the_other() {
    let both = format!("{ROUTES}rollout: {{ stable: iris-v1 }}\n");
    let p = problem_at(
        &both,
        "routes",
        "routes:",
        "`rollout:` and `routes:` are both set",
    );
    assert_eq!(parse(&both).unwrap_err().0, [p], "one problem, naming both");

    let top = ROUTES.split("routes:").next().unwrap();
    let p = problem_at(top, "", "backends:", "missing field `rollout`");
    assert!(p.message.contains("`routes:`"), "{p}");

    let empty = format!("{top}routes: []\n");
    problem_at(&empty, "routes", "routes: []", "at least one route");
}

#[test]
fn unknown_keys_in_a_route_are_errors_with_their_line() {
    let cases = [
        (
            "    shadow:\n",
            "    monitor: { sampel: 20 }\n    shadow:\n",
            "routes[0].monitor.sampel",
            "monitor:",
            "unknown field `sampel`",
        ),
        (
            "model: iris",
            "modle: iris",
            "routes[0].match.modle",
            "modle",
            "unknown field `modle`",
        ),
        (
            "stable: fraud-v6",
            "stabel: fraud-v6",
            "routes[1].rollout.stabel",
            "stabel",
            "unknown field `stabel`",
        ),
    ];
    for (from, to, path, on_line, says) in cases {
        let text = edit(ROUTES, from, to);
        let problems = parse(&text).expect_err("unknown key").0;
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let p = &problems[0];
        // The unknown key's own path, under the mapping that does not take it.
        assert_eq!(p.path, path, "{p}");
        assert_eq!(p.line, Some(line_of(&text, on_line)), "{p}");
        assert!(p.message.contains(says), "{p}");
    }
}

#[test]
fn every_route_problem_is_reported_at_once() {
    let text = edit(ROUTES, "name: fraud", "name: iris");
    let text = edit(&text, "stable: iris-v1\n", "stable: nowhere\n");
    let text = edit(&text, "mirror: 5", "mirror: 500");
    let problems = parse(&text).unwrap_err().0;
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[0].rollout.stable",
            "routes[1].name",
            "shadow.mirror"
        ],
        "{problems:#?}"
    );
}

#[test]
fn a_path_prefix_covers_whole_segments() {
    use super::validate::prefix_covers;
    let cases = [
        ("/fraud", "/fraud/x", true),
        ("/fraud/", "/fraud", true),
        ("/fraud", "/fraud/", true),
        ("/", "/anything", true),
        ("/fraud", "/fraudulent", false),
        ("/fraud/x", "/fraud", false),
    ];
    for (earlier, later, covers) in cases {
        assert_eq!(
            prefix_covers(earlier, later),
            covers,
            "{earlier} over {later}"
        );
    }
}

// === observers: monitor, capture, feedback ===

#[test]
fn a_routes_observers_replace_the_top_level_ones_and_monitoring_is_on_by_default() {
    let text = format!(
        "{ROUTES}capture: {{ path: capture/, redact: [/inputs/*/data] }}\nfeedback: {{ retain: 10m }}\n"
    );
    let text = edit(
        &text,
        "      compare: { protocol: v2 }\n",
        "      compare: { protocol: v2 }\n    monitor: { sample: 50 }\n    capture: { path: iris/, sample: 5 }\n",
    );
    let config = parse(&text).unwrap();
    let routes = config.routes();
    assert_eq!(routes[0].monitor.sample, 50.0, "the route's own");
    assert_eq!(routes[1].monitor.sample, 10.0, "the default: on at 10 %");
    let iris = routes[0].capture.as_ref().unwrap();
    assert_eq!((iris.path.to_str(), iris.sample), (Some("iris/"), 5.0));
    assert!(iris.redact.is_empty(), "replaced as a whole, not merged");
    let fraud = routes[1].capture.as_ref().unwrap();
    assert_eq!((fraud.path.to_str(), fraud.sample), (Some("capture/"), 1.0));
    let retain = routes[2].feedback.as_ref().unwrap().retain.0;
    assert_eq!(retain, std::time::Duration::from_secs(600));
    assert_eq!(routes[2].feedback.as_ref().unwrap().sample, 100.0);
}

#[test]
fn gates_on_what_nothing_observes_are_refused_with_their_line() {
    let gated = edit(
        SINGLE,
        "  steps: [{ weight: 100 }]\n",
        "  steps: [{ weight: 100 }]\n  analysis:\n    gates:\n      accuracy: { min: 0.9 }\n      output_drift: { max: 0.2 }\n",
    );
    problem_at(
        &gated,
        "rollout.analysis.gates.accuracy",
        "accuracy:",
        "needs a `feedback:` block",
    );
    let off = format!("{gated}monitor: {{ sample: 0 }}\nfeedback: {{}}\n");
    problem_at(
        &off,
        "rollout.analysis.gates.output_drift",
        "output_drift:",
        "needs monitoring",
    );
    let fine = format!("{gated}feedback: {{}}\n");
    assert!(parse(&fine).is_ok(), "{:?}", parse(&fine).unwrap_err());
    let empty = edit(&fine, "accuracy: { min: 0.9 }", "accuracy: {}");
    problem_at(
        &empty,
        "rollout.analysis.gates.accuracy",
        "accuracy:",
        "set `min`, `max_drop`",
    );
}

#[test]
fn observer_settings_are_checked_where_they_are_written() {
    let text = format!(
        "{SINGLE}capture: {{ path: c/, sample: 150, keep: 0, redact: [inputs] }}\nfeedback: {{ max_pending: 0 }}\nmonitor: {{ sample: -1 }}\n"
    );
    let problems = parse(&text).unwrap_err().0;
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for path in [
        "monitor",
        "capture.sample",
        "capture.keep",
        "capture.redact",
        "feedback.max_pending",
    ] {
        assert!(paths.contains(&path), "{path} not reported: {problems:#?}");
    }
}

#[test]
fn two_logs_in_one_directory_must_agree_on_what_they_hide() {
    let text = edit(
        ROUTES,
        "      compare: { protocol: v2 }\n",
        "      compare: { protocol: v2 }\n    capture: { path: log/, redact: [/inputs] }\n",
    );
    let same = edit(
        &text,
        "    rollout: { stable: fraud-v6, strategy: blue-green }\n",
        "    rollout: { stable: fraud-v6, strategy: blue-green }\n    capture: { path: log/, redact: [/inputs], sample: 50 }\n",
    );
    assert!(parse(&same).is_ok(), "only the sample differs: one log");
    let other = edit(&same, "redact: [/inputs], sample: 50", "sample: 50");
    problem_at(
        &other,
        "routes[1].capture.path",
        "sample: 50",
        "also the directory of `routes[0].capture`",
    );
}
