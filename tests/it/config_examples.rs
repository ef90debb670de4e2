//! Every example under `config/` loads and validates, and says what its name promises.
//!
//! The directory is read at test time, so a new example is covered without touching
//! this file; a file with no specific facts below still has to load and pass the
//! general checks.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::config::examples;
use switchyard::config::{load_file, Config, Hold, Route, StoreKind, Strategy, DEFAULT_ROUTE};

fn load(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    load_file(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()))
}

/// Example `name`, a rollout of a candidate with `strategy`.
fn rollout_example(name: &str, strategy: Strategy) -> Config {
    let c = load(name);
    assert_eq!(c.rollout.strategy, strategy, "{name}");
    assert!(
        c.rollout.candidate.is_some(),
        "{name} rolls out no candidate"
    );
    c
}

fn weights(config: &Config) -> Vec<f64> {
    config.rollout.steps.iter().map(|s| s.weight).collect()
}

#[test]
fn every_example_loads_and_validates() {
    let files = examples();
    assert!(
        files.len() >= 5,
        "expected at least 5 examples in config/, found {files:?}"
    );
    let mut broken = Vec::new();
    for path in &files {
        if let Err(problems) = load_file(path) {
            broken.push(format!("{}:\n{problems}", path.display()));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n\n"));
}

/// Checks that hold for every example, whatever it shows.
#[test]
fn every_example_is_a_sound_starting_point() {
    for path in examples() {
        let name = path.display();
        let config = load_file(&path).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        let text = std::fs::read_to_string(&path).unwrap();

        // Heavily commented: an SRE starts from these.
        let comments = text
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count();
        assert!(comments >= 10, "{name}: only {comments} comment lines");

        // Safe by default: the admin API stays on loopback.
        assert!(
            config.admin.listen.ip().is_loopback(),
            "{name}: admin on {}",
            config.admin.listen
        );

        for route in config.routes() {
            let r = &route.rollout;
            let name = format!("{name}, route {}", route.name);
            assert!(config.backends.contains_key(&r.stable), "{name}");
            if let Some(candidate) = &r.candidate {
                assert!(config.backends.contains_key(candidate), "{name}");
                assert_ne!(candidate, &r.stable, "{name}");
            }
            if r.strategy == Strategy::Canary && r.candidate.is_some() {
                // A ramp that ends anywhere else would promote a candidate that
                // never served everyone.
                assert_eq!(
                    r.steps.last().map(|s| s.weight),
                    Some(100.0),
                    "{name}: a canary example should end at weight 100"
                );
            }
        }
    }
}

#[test]
fn every_single_rollout_example_is_one_route_named_default() {
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.lines().any(|l| l.starts_with("rollout:")) {
            continue;
        }
        let config = load_file(&path).unwrap();
        let routes = config.routes();
        assert_eq!(routes.len(), 1, "{}", path.display());
        assert_eq!(routes[0].name, DEFAULT_ROUTE);
        assert!(routes[0].when.is_catch_all());
        assert_eq!(routes[0].rollout, config.rollout);
        assert_eq!(routes[0].shadow, config.shadow);
    }
}

#[test]
fn default_config_is_a_full_canary_of_green() {
    let c = load("switchyard.yaml");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.backends.len(), 2);
    assert_eq!(c.backends["blue"].url, "http://127.0.0.1:18001");
    assert_eq!(c.backends["green"].url, "http://127.0.0.1:18002");

    let r = &c.rollout;
    assert_eq!(r.stable, "blue");
    assert_eq!(r.candidate.as_deref(), Some("green"));
    assert_eq!(r.strategy, Strategy::Canary);
    assert!(r.sticky.is_some());
    assert!(r.override_header.is_some());
    assert!(r.fallback_to_stable);
    assert!(r.fast_rollback.is_some());
    assert!(r.blue_green.is_none());

    // Starts in shadow, waits for a person before the last step.
    let first = &r.steps[0];
    assert_eq!((first.weight, first.mirror), (0.0, Some(100.0)));
    assert!(r.steps.iter().any(|s| s.hold == Some(Hold::Manual)));

    let a = r.analysis.as_ref().expect("analysis");
    assert!(a.gates.error_rate.is_some());
    assert!(a.gates.latency_p99.is_some());
    assert!(a.gates.shadow_agreement.is_some());

    assert!(!c.shadow.compare.ignore.is_empty());
    assert_eq!(
        c.state.path.as_deref(),
        Some(Path::new("state/rollout.json"))
    );
}

#[test]
fn canary_ramps_5_25_50_manual_100() {
    let c = rollout_example("canary.yaml", Strategy::Canary);
    let r = &c.rollout;
    assert_eq!(weights(&c), [5.0, 25.0, 50.0, 100.0]);
    assert_eq!(r.steps[2].hold, Some(Hold::Manual));
    assert!(
        r.steps
            .iter()
            .enumerate()
            .all(|(i, s)| i == 2 || matches!(s.hold, Some(Hold::For(_)))),
        "only the 50 % step should wait for a person"
    );
    assert!(r.sticky.is_some(), "the ramp is sticky");
    let a = r.analysis.as_ref().expect("analysis gates");
    let errors = a.gates.error_rate.as_ref().expect("an error-rate gate");
    assert_eq!(
        (errors.max, errors.max_increase),
        (Some(0.005), Some(0.002))
    );
    assert!(a.gates.latency_p99.is_some());
    assert!(a.gates.sample_ratio.is_some(), "a skewed split pauses");
    assert_eq!(a.confidence, 0.95);
}

#[test]
fn blue_green_switches_at_once() {
    let c = rollout_example("blue-green.yaml", Strategy::BlueGreen);
    let r = &c.rollout;
    assert!(r.steps.is_empty());
    let bg = r.blue_green.as_ref().expect("rollout.blue_green");
    assert!(bg.auto_promote_after.is_some());
    assert!(
        r.override_header.is_some(),
        "previews use the override header"
    );
    assert!(
        c.shadow.mirror > 0.0,
        "pre-promotion analysis needs mirrored traffic"
    );
    let a = r.analysis.as_ref().expect("analysis");
    assert!(a.gates.shadow_agreement.is_some());
    assert!(a.after_promotion.0 > Duration::ZERO);
}

#[test]
fn shadow_first_compares_before_a_short_canary() {
    let c = rollout_example("shadow-first.yaml", Strategy::Canary);
    let r = &c.rollout;
    let shadow = &r.steps[0];
    assert_eq!((shadow.weight, shadow.mirror), (0.0, Some(100.0)));
    let Some(Hold::For(long)) = shadow.hold else {
        panic!("the shadow step holds for a time, got {:?}", shadow.hold);
    };
    // The shadow phase is the long one; the canary after it is short.
    for step in &r.steps[1..] {
        assert!(step.weight > 0.0);
        if let Some(Hold::For(d)) = step.hold {
            assert!(d < long, "{d} is not shorter than the shadow phase {long}");
        }
    }
    let a = r.analysis.as_ref().expect("analysis");
    assert!(a.gates.shadow_agreement.is_some());

    let cmp = &c.shadow.compare;
    assert_eq!(cmp.protocol, switchyard::wire::Protocol::V2);
    assert!(cmp.ignore.iter().all(|p| p.starts_with('/')));
    assert!(cmp.ignore.len() >= 2);
    assert!(cmp.abs_tolerance > 0.0 && cmp.rel_tolerance > 0.0);
}

#[test]
fn fleet_keeps_its_state_in_etcd_under_its_own_prefix() {
    let c = rollout_example("fleet.yaml", Strategy::Canary);
    assert_eq!(c.state.store, StoreKind::Etcd);
    let etcd = c.state.etcd.as_ref().expect("state.etcd");
    assert_eq!(etcd.endpoints.len(), 3);
    assert_eq!(etcd.prefix, "/switchyard/prod");
    assert_eq!(
        (etcd.lease_ttl.0, etcd.timeout.0),
        (Duration::from_secs(5), Duration::from_secs(2))
    );
    // `${HOSTNAME}` is the host's name, not those ten characters.
    let name = c.fleet.replica_name();
    assert!(!name.is_empty() && !name.contains('$'), "{name}");
}

#[test]
fn no_rollout_has_only_a_stable() {
    let c = load("no-rollout.yaml");
    assert_eq!(c.backends.len(), 1);
    assert!(c.backends.contains_key(&c.rollout.stable));
    assert!(c.rollout.candidate.is_none());
    assert!(c.rollout.steps.is_empty());
    assert!(c.rollout.analysis.is_none());
}

/// Route `name` of `routes`.
fn route<'r>(routes: &'r [Route], name: &str) -> &'r Route {
    routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route `{name}`"))
}

#[test]
fn multi_model_rolls_out_each_model_on_its_own() {
    let c = load("multi-model.yaml");
    let routes = c.routes();
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["iris", "fraud-acme", "chat", "rest"]);
    assert_eq!(c.rollout, routes[0].rollout, "the single-rollout view");

    // A V2 model by its name, in a canary that starts in shadow.
    let iris = route(&routes, "iris");
    assert_eq!(iris.when.model.as_deref(), Some("iris"));
    assert_eq!(iris.rollout.candidate.as_deref(), Some("iris-v2"));
    assert_eq!(iris.rollout.steps[0].mirror, Some(100.0));
    assert_eq!(iris.shadow.compare.protocol, switchyard::wire::Protocol::V2);

    // A V2 model by path prefix and tenant header, blue-green on mirrored traffic.
    let fraud = route(&routes, "fraud-acme");
    assert_eq!(fraud.when.model, None);
    let prefix = fraud.when.path_prefix.as_deref().expect("path_prefix");
    assert!(prefix.starts_with("/v2/models/fraud"), "{prefix}");
    assert_eq!(fraud.when.header.len(), 1);
    assert_eq!(fraud.rollout.strategy, Strategy::BlueGreen);
    assert_eq!(fraud.shadow.mirror, 100.0);

    // An OpenAI-style chat model by the body's "model", with the top-level shadow.
    let chat = route(&routes, "chat");
    assert_eq!(chat.when.model.as_deref(), Some("llama-3-8b"));
    assert_eq!(chat.rollout.strategy, Strategy::Canary);
    assert_eq!(chat.shadow, c.shadow);
    let gates = &chat.rollout.analysis.as_ref().expect("analysis").gates;
    assert!(gates.shadow_agreement.is_none(), "sampled answers differ");

    // The last takes the rest, with no rollout.
    let rest = routes.last().unwrap();
    assert!(rest.when.is_catch_all());
    assert!(rest.rollout.candidate.is_none());
    assert!(routes[..routes.len() - 1]
        .iter()
        .all(|r| !r.when.is_catch_all()));

    // Each model rolls out its own pair of backends.
    let candidates: Vec<_> = routes
        .iter()
        .filter_map(|r| r.rollout.candidate.as_deref())
        .collect();
    assert_eq!(candidates, ["iris-v2", "fraud-v7", "chat-b"]);
}

/// Whatever validates is what the data plane's matcher takes: the multi-model example
/// with its first route's `match` replaced by edge cases, each either refused by
/// validation or built into a matcher.
#[test]
fn what_validates_the_request_matcher_takes() {
    use switchyard::snapshot::matcher::Matcher;
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/multi-model.yaml"),
    )
    .unwrap();
    let edges = [
        "{ model: iris }",
        "{ model: ' ' }",
        "{ model: 'a/b' }",
        "{ host: '[::1]:9000', model: iris }",
        "{ host: 'A.Example', model: iris }",
        "{ host: 'a.example:99999', model: iris }",
        "{ host: 'a.example:abc', model: iris }",
        "{ host: 'a.example:', model: iris }",
        "{ host: '*.example', model: iris }",
        "{ path_prefix: '/café' }",
        "{ path_prefix: '/a b' }",
        "{ path_prefix: / , model: iris }",
        "{ header: { x-a: ' v' }, model: iris }",
        "{ header: { x-a: \"v\\u00a0\" }, model: iris }",
        "{ header: { X-A: v, x-a: w }, model: iris }",
    ];
    let (mut valid, mut refused) = (0, 0);
    for edge in edges {
        let config = text.replacen("match: { model: iris }", &format!("match: {edge}"), 1);
        match switchyard::config::parse(&config) {
            Ok(c) => {
                valid += 1;
                if let Err(e) = Matcher::from_routes(&c.routes()) {
                    panic!("`{edge}` validates but the matcher refuses it: {e}");
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(valid > 0 && refused > 0, "{valid} valid, {refused} refused");
}
