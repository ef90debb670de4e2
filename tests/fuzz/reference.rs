//! Fuzz target: the reference file reader (`switchyard::monitor::Reference::from_json`,
//! what `monitor.reference.file` and `switchyard baseline --from-live` read, the latter
//! from an admin API's answer).
//!
//! Inputs are arbitrary bytes, byte-level mutations of references as switchyard writes
//! them, and references built from strategies: edges unsorted, repeated, infinite or
//! missing, shares negative, not adding up to 1 or one too few, unknown members, both
//! kinds of bins for features and outputs.
//!
//! Properties:
//! - nothing panics, and a monitor takes any reference accepted (and reports on it);
//! - an accepted reference is what the format says: numeric edges finite and strictly
//!   ascending with one share more than edges, every share finite and not negative, each
//!   feature's shares adding up to 1;
//! - an accepted reference written out (`to_json`, what the admin API exports) reads back
//!   with the same bins and shares within 1e-12.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard::monitor::{Bins, Monitor, Reference, Settings};
use tokio::time::Instant;

/// References as switchyard writes them, to mutate.
fn seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let files = [
            json!({ "version": 1, "requests": 1000, "features": {
                "petal_length": { "kind": "numeric", "edges": [1.4, 1.5, 4.2], "shares": [0.3, 0.1, 0.3, 0.3] },
                "country": { "kind": "categorical", "shares": { "FR": 0.6, "DE": 0.3 }, "other": 0.1 } },
              "outputs": {
                "label": { "kind": "categorical", "shares": { "0": 0.34, "1": 0.33, "2": 0.33 }, "other": 0.0 },
                "score": { "kind": "numeric", "edges": [0.6, 0.8], "shares": [0.2, 0.5, 0.3] } } }),
            json!({ "version": 1 }),
            json!({ "version": 1, "features": { "x[0]": { "kind": "numeric", "edges": [], "shares": [1.0] } } }),
        ];
        files
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("seed-{i}"), serde_json::to_vec_pretty(f).unwrap()))
            .collect()
    })
}

/// Tokens spliced into references by the byte-level mutations.
const TOKENS: &[&str] = &[
    "\"numeric\"",
    "\"categorical\"",
    "\"edges\"",
    "\"shares\"",
    "\"other\"",
    "\"features\"",
    "\"outputs\"",
    "\"version\"",
    "1e400",
    "-0.5",
    "NaN",
    "null",
    "[",
    "]",
    "{",
    "}",
    ",",
];

/// A share: mostly fair, sometimes negative, huge or not a number at all.
fn share() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0.0f64..1.0).prop_map(|s| json!(s)),
        1 => (-1.0f64..0.0).prop_map(|s| json!(s)),
        1 => Just(json!(1e300)),
        1 => Just(json!("0.5")),
    ]
}

/// One feature's (or output's) bins, well-formed or not.
fn bins() -> impl Strategy<Value = Value> {
    let numeric = (
        prop::collection::vec(-1e6f64..1e6, 0..12),
        any::<bool>(),
        prop::collection::vec(share(), 0..14),
    )
        .prop_map(|(mut edges, sorted, shares)| {
            if sorted {
                edges.sort_by(f64::total_cmp);
            }
            json!({ "kind": "numeric", "edges": edges, "shares": shares })
        });
    let categorical = (
        prop::collection::btree_map("[a-z0-9]{0,4}", share(), 0..8),
        share(),
    )
        .prop_map(
            |(shares, other)| json!({ "kind": "categorical", "shares": shares, "other": other }),
        );
    // Well-formed ones: distinct ascending edges, shares that add up to about 1.
    let fair_numeric = (
        prop::collection::btree_set(-1000i32..1000, 0..12),
        0.995f64..1.005,
    )
        .prop_map(|(edges, total)| {
            let n = edges.len() + 1;
            let edges: Vec<f64> = edges.into_iter().map(|e| f64::from(e) / 7.0).collect();
            json!({ "kind": "numeric", "edges": edges, "shares": vec![total / n as f64; n] })
        });
    let fair_categorical = (
        prop::collection::btree_set("[a-z0-9]{1,4}", 0..8),
        0.995f64..1.005,
    )
        .prop_map(|(values, total)| {
            let n = values.len() + 1;
            let shares: serde_json::Map<String, Value> = values
                .into_iter()
                .map(|v| (v, json!(total / n as f64)))
                .collect();
            json!({ "kind": "categorical", "shares": shares, "other": total / n as f64 })
        });
    prop_oneof![
        4 => fair_numeric,
        4 => fair_categorical,
        2 => numeric,
        2 => categorical,
        1 => Just(json!({ "kind": "ordinal", "shares": [1.0] })),
        1 => Just(json!({ "kind": "numeric", "edges": [1.0], "shares": [0.5, 0.5], "extra": 1 })),
    ]
}

/// A whole reference built from strategies.
fn built() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![4 => Just(json!(1)), 1 => Just(json!(2)), 1 => Just(json!("1"))],
        prop::collection::btree_map("[a-z_\\[\\]0-9]{0,8}", bins(), 0..6),
        prop::option::of(bins()),
        prop::option::of(bins()),
    )
        .prop_map(|(version, features, label, score)| {
            let mut outputs = serde_json::Map::new();
            if let Some(l) = label {
                outputs.insert("label".into(), l);
            }
            if let Some(s) = score {
                outputs.insert("score".into(), s);
            }
            let r = json!({ "version": version, "requests": 10, "features": features, "outputs": outputs });
            serde_json::to_vec(&r).unwrap()
        })
}

/// Checks the format's promises of one accepted set of bins.
fn well_formed(name: &str, b: &Bins) -> Result<(), TestCaseError> {
    let shares = b.shares();
    if let Bins::Numeric { edges, shares } = b {
        prop_assert!(edges.iter().all(|e| e.is_finite()), "{name}: {edges:?}");
        prop_assert!(edges.windows(2).all(|w| w[0] < w[1]), "{name}: {edges:?}");
        prop_assert_eq!(shares.len(), edges.len() + 1, "{}", name);
    }
    prop_assert!(
        shares.iter().all(|s| s.is_finite() && *s >= 0.0),
        "{name}: {shares:?}"
    );
    let sum: f64 = shares.iter().sum();
    prop_assert!((sum - 1.0).abs() < 1e-9, "{name}: shares add up to {sum}");
    Ok(())
}

/// Bins of the same kind and shape, with shares within 1e-12.
fn same_bins(a: &Bins, b: &Bins) -> bool {
    let close = |x: &[f64], y: &[f64]| {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-12)
    };
    match (a, b) {
        (
            Bins::Numeric {
                edges: e1,
                shares: s1,
            },
            Bins::Numeric {
                edges: e2,
                shares: s2,
            },
        ) => e1 == e2 && close(s1, s2),
        (Bins::Categorical { shares: s1, .. }, Bins::Categorical { shares: s2, .. }) => {
            s1.keys().eq(s2.keys()) && close(&a.shares(), &b.shares())
        }
        _ => false,
    }
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(reference) = Reference::from_json(bytes) else {
        return Ok(());
    };
    let o = &reference.outputs;
    let outputs = [("label", &o.label), ("score", &o.score)];
    let all = reference
        .features
        .iter()
        .map(|(n, b)| (n.as_str(), Some(b)))
        .chain(outputs.iter().map(|(n, b)| (*n, b.as_ref())));
    for (name, b) in all.clone() {
        if let Some(b) = b {
            well_formed(name, b)?;
        }
    }

    let again = Reference::from_json(reference.to_json().as_bytes());
    prop_assert!(again.is_ok(), "{:?}", again.err());
    let again = again.unwrap();
    prop_assert!(again.features.keys().eq(reference.features.keys()));
    for (name, b) in &reference.features {
        prop_assert!(same_bins(b, &again.features[name]), "{name}: {b:?}");
    }

    let mut monitor = Monitor::new(Settings::default()).unwrap();
    monitor.set_reference(reference);
    let _ = monitor.report(Instant::now(), None);
    let _ = monitor.warnings();
    Ok(())
}

proptest! {
    #![proptest_config(super::config(
        512,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/reference.txt"),
    ))]

    /// Arbitrary bytes.
    #[test]
    fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes)?;
    }

    /// References as switchyard writes them, mutated byte by byte.
    #[test]
    fn mutated_references(bytes in crate::mutate::mutated(seeds(), TOKENS)) {
        check(&bytes)?;
    }

    /// References built from strategies, well-formed or not.
    #[test]
    fn built_references(bytes in built()) {
        check(&bytes)?;
    }
}

#[test]
fn the_seeds_are_accepted() {
    for (name, bytes) in seeds() {
        assert!(Reference::from_json(bytes).is_ok(), "{name}");
    }
}
