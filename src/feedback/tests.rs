use serde_json::json;
use tokio::time::{Duration, Instant};

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn label(id: &str, label: serde_json::Value) -> Label {
    Label {
        request_id: id.into(),
        label,
    }
}

fn class(name: &str) -> Predicted {
    Predicted::Class(name.into())
}

/// A store with `settings` and its clock's origin.
fn store(settings: Settings) -> (Feedback, Instant) {
    let t0 = Instant::now();
    (Feedback::with_origin(settings, t0), t0)
}

#[test]
fn accuracy_is_exact_on_a_known_sequence() {
    let (fb, t0) = store(Settings::default());
    let truth = ["a", "b", "a", "c", "a", "b", "b", "c", "a", "a"];
    let guess = ["a", "b", "b", "c", "a", "a", "b", "c", "c", "a"];
    for (i, g) in guess.iter().enumerate() {
        fb.remember(&format!("r{i}"), "iris", "blue", class(g), t0);
        fb.remember(&format!("g{i}"), "iris", "green", class("a"), t0);
    }
    let mut labels: Vec<Label> = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        labels.push(label(&format!("r{i}"), json!(t)));
        labels.push(label(&format!("g{i}"), json!(t)));
    }
    let joined = fb.join(&labels, t0 + secs(1));
    assert_eq!(
        joined,
        Joined {
            matched: 20,
            unmatched: 0
        }
    );

    let blue = fb.score("iris", "blue", t0 + secs(1), MINUTE);
    assert_eq!((blue.classified, blue.correct), (10, 7));
    assert_eq!(blue.accuracy(), Some(0.7));
    assert_eq!(blue.mean_absolute_error(), None);
    let green = fb.score("iris", "green", t0 + secs(1), MINUTE);
    assert_eq!(green.accuracy(), Some(0.5), "each backend on its own");
    assert_eq!(fb.score("iris", "nobody", t0, MINUTE).accuracy(), None);
}

#[test]
fn class_ids_match_however_the_label_writes_the_integer() {
    let (fb, t0) = store(Settings::default());
    for (i, l) in [json!(2), json!(2.0), json!("2"), json!(3)]
        .into_iter()
        .enumerate()
    {
        let id = format!("r{i}");
        fb.remember(&id, "iris", "blue", class("2"), t0);
        fb.join(&[label(&id, l)], t0);
    }
    fb.remember("yes", "fraud", "blue", class("true"), t0);
    fb.join(&[label("yes", json!(true))], t0);

    let iris = fb.score("iris", "blue", t0, MINUTE);
    assert_eq!((iris.classified, iris.correct), (4, 3));
    assert_eq!(fb.score("fraud", "blue", t0, MINUTE).accuracy(), Some(1.0));
}

#[test]
fn mean_absolute_error_is_exact() {
    let (fb, t0) = store(Settings::default());
    let predicted = [1.5, 2.0, -1.0, 10.0];
    let truth = [json!(2.0), json!(2.25), json!(1.25), json!("10")];
    for (i, p) in predicted.iter().enumerate() {
        fb.remember(&format!("r{i}"), "price", "blue", Predicted::Value(*p), t0);
    }
    let labels: Vec<Label> = truth
        .iter()
        .enumerate()
        .map(|(i, t)| label(&format!("r{i}"), t.clone()))
        .collect();
    assert_eq!(fb.join(&labels, t0).matched, 4);

    let s = fb.score("price", "blue", t0, MINUTE);
    assert_eq!(s.valued, 4);
    // |2 - 1.5| + |2.25 - 2| + |1.25 + 1| + |10 - 10| = 0.5 + 0.25 + 2.25 + 0 = 3
    assert_eq!(s.abs_error, 3.0);
    assert_eq!(s.mean_absolute_error(), Some(0.75));
    assert_eq!(s.accuracy(), None);
}

#[test]
fn labels_that_cannot_be_compared_are_matched_but_not_scored() {
    let (fb, t0) = store(Settings::default());
    fb.remember("c", "iris", "blue", class("a"), t0);
    fb.remember("v", "iris", "blue", Predicted::Value(1.0), t0);
    fb.remember("nan", "iris", "blue", Predicted::Value(f64::NAN), t0);
    let labels = [
        label("c", json!({"class": "a"})),
        label("v", json!("high")),
        label("nan", json!(1.0)),
    ];
    assert_eq!(
        fb.join(&labels, t0),
        Joined {
            matched: 3,
            unmatched: 0
        }
    );
    assert_eq!(fb.score("iris", "blue", t0, MINUTE).labels(), 0);
    assert_eq!(fb.backend_counts()[0].unscored, 3);
}

#[test]
fn max_pending_forgets_the_oldest_first() {
    let (fb, t0) = store(Settings {
        max_pending: 3,
        ..Settings::default()
    });
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        fb.remember(id, "iris", "blue", class("x"), t0 + secs(i as u64));
    }
    let c = fb.counts();
    assert_eq!((c.pending, c.evicted), (3, 2));

    let labels: Vec<Label> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| label(id, json!("x")))
        .collect();
    assert_eq!(
        fb.join(&labels, t0 + secs(5)),
        Joined {
            matched: 3,
            unmatched: 2
        }
    );
    let c = fb.counts();
    assert_eq!((c.matched, c.late, c.unmatched, c.pending), (3, 2, 2, 0));
}

#[test]
fn a_labelled_prediction_frees_its_place() {
    let (fb, t0) = store(Settings {
        max_pending: 2,
        ..Settings::default()
    });
    fb.remember("a", "iris", "blue", class("x"), t0);
    fb.remember("b", "iris", "blue", class("x"), t0);
    assert_eq!(fb.join(&[label("a", json!("x"))], t0).matched, 1);
    // Room for one more without forgetting "b".
    fb.remember("c", "iris", "blue", class("x"), t0);
    assert_eq!(fb.counts().evicted, 0);
    let both = [label("b", json!("x")), label("c", json!("x"))];
    assert_eq!(fb.join(&both, t0).matched, 2);
}

#[test]
fn retain_forgets_by_time() {
    let (fb, t0) = store(Settings {
        retain: secs(10),
        ..Settings::default()
    });
    fb.remember("old", "iris", "blue", class("x"), t0);
    fb.remember("new", "iris", "blue", class("x"), t0 + secs(5));
    assert_eq!(fb.counts().pending, 2);

    fb.expire(t0 + secs(9));
    assert_eq!(fb.counts().pending, 2, "not yet");
    let labels = [label("old", json!("x")), label("new", json!("x"))];
    assert_eq!(
        fb.join(&labels, t0 + secs(10)),
        Joined {
            matched: 1,
            unmatched: 1
        }
    );
    let c = fb.counts();
    assert_eq!((c.expired, c.late, c.pending), (1, 1, 0));
}

#[test]
fn unknown_late_and_repeated_labels_are_counted_apart() {
    let (fb, t0) = store(Settings {
        retain: secs(10),
        ..Settings::default()
    });
    fb.remember("a", "iris", "blue", class("x"), t0);
    fb.remember("b", "iris", "green", class("x"), t0 + secs(20));
    let labels = [
        label("a", json!("x")),   // late: forgotten at t0 + 10 s
        label("b", json!("x")),   // matched
        label("b", json!("x")),   // labelled already: unknown now
        label("zzz", json!("x")), // never seen
        label("", json!("x")),    // never seen
    ];
    assert_eq!(
        fb.join(&labels, t0 + secs(21)),
        Joined {
            matched: 1,
            unmatched: 4
        }
    );
    let c = fb.counts();
    assert_eq!((c.matched, c.unmatched, c.late), (1, 4, 1));
    let per: Vec<(String, u64, u64)> = fb
        .backend_counts()
        .iter()
        .map(|b| (b.backend.to_string(), b.matched, b.late))
        .collect();
    assert_eq!(per, [("blue".into(), 0, 1), ("green".into(), 1, 0)]);
}

#[test]
fn the_window_slides() {
    let (fb, t0) = store(Settings::default());
    fb.remember("a", "iris", "blue", class("x"), t0);
    fb.remember("b", "iris", "blue", class("x"), t0);
    fb.join(&[label("a", json!("x"))], t0); // correct, at 0 s
    fb.join(&[label("b", json!("y"))], t0 + secs(30)); // wrong, at 30 s

    let at = |s| fb.score("iris", "blue", t0 + secs(s), MINUTE);
    assert_eq!(at(30).accuracy(), Some(0.5));
    assert_eq!(
        at(60).accuracy(),
        Some(0.5),
        "0 s is still within the minute"
    );
    assert_eq!(at(61).accuracy(), Some(0.0), "the correct one has left");
    assert_eq!(at(90).accuracy(), Some(0.0));
    assert_eq!(at(91).accuracy(), None, "both have left");
    // A shorter span looks at less.
    let last_10s = fb.score("iris", "blue", t0 + secs(35), secs(10));
    assert_eq!(last_10s.classified, 1);
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_in_paused_time() {
    let fb = Feedback::new(Settings::default());
    fb.remember("a", "iris", "blue", class("x"), Instant::now());
    fb.join(&[label("a", json!("x"))], Instant::now());
    assert_eq!(
        fb.score("iris", "blue", Instant::now(), MINUTE).accuracy(),
        Some(1.0)
    );
    tokio::time::advance(secs(62)).await;
    assert_eq!(
        fb.score("iris", "blue", Instant::now(), MINUTE).accuracy(),
        None
    );
}

#[test]
fn a_new_window_shape_drops_the_verdicts_not_the_predictions() {
    let (fb, t0) = store(Settings::default());
    fb.remember("a", "iris", "blue", class("x"), t0);
    fb.remember("b", "iris", "blue", class("x"), t0);
    fb.join(&[label("a", json!("x"))], t0);
    fb.set_window(secs(60));
    assert_eq!(
        fb.score("iris", "blue", t0, MINUTE).classified,
        1,
        "same shape: kept"
    );
    fb.set_window(secs(300));
    assert_eq!(fb.score("iris", "blue", t0, MINUTE).classified, 0);
    assert_eq!(fb.join(&[label("b", json!("x"))], t0).matched, 1);
}

/// Fills a store of `max` three times over (so its tables reach their steady size),
/// labelling two in three predictions soon after or none, and returns its bytes per
/// `max_pending`.
fn bytes_per_pending(max: usize, labelled: bool) -> f64 {
    let (fb, t0) = store(Settings {
        max_pending: max,
        ..Settings::default()
    });
    for i in 0..3 * max {
        let t = t0 + Duration::from_millis(i as u64);
        fb.remember(&format!("req-{i:08}"), "iris", "blue", class("setosa"), t);
        if labelled && i % 3 != 0 && i >= 10 {
            fb.join(&[label(&format!("req-{:08}", i - 10), json!("setosa"))], t);
        }
    }
    assert!(fb.counts().pending <= max);
    fb.size_in_bytes() as f64 / max as f64
}

#[test]
fn memory_per_pending_prediction_is_bounded() {
    // Unlabelled is the worst case: every forgotten id is kept to tell late labels.
    let default = bytes_per_pending(100_000, false);
    assert!(default < 160.0, "{default:.1} bytes per pending prediction");
    let labelled = bytes_per_pending(100_000, true);
    assert!(
        labelled < default,
        "{labelled:.1} bytes per pending prediction"
    );
    // A size at which the tables' power-of-two growth wastes the most.
    let awkward = bytes_per_pending(3_000, false);
    assert!(awkward < 270.0, "{awkward:.1} bytes per pending prediction");
}

#[test]
fn feedback_bodies_are_one_label_or_a_batch() {
    let one = parse_labels(br#"{"request_id": "r1", "label": "cat"}"#).unwrap();
    assert_eq!(one, [label("r1", json!("cat"))]);
    let batch = parse_labels(
        br#"{"feedback": [{"request_id": "r1", "label": 1}, {"request_id": "r2", "label": 0.5}]}"#,
    )
    .unwrap();
    assert_eq!(batch, [label("r1", json!(1)), label("r2", json!(0.5))]);
    assert_eq!(parse_labels(br#"{"feedback": []}"#).unwrap(), []);
    for bad in [
        &br#"{"request_id": "r1"}"#[..],
        br#"{"request_id": "r1", "label": 1, "lable": 2}"#,
        br#"{"feedback": [{"request_id": "r1"}]}"#,
        br#"{"feedback": {"request_id": "r1", "label": 1}}"#,
        br#"[1, 2]"#,
        b"nope",
    ] {
        let err = parse_labels(bad).unwrap_err();
        assert!(!err.is_empty(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn predictions_read_from_json() {
    assert_eq!(Predicted::from_json(&json!("cat")), Some(class("cat")));
    assert_eq!(Predicted::from_json(&json!(2)), Some(class("2")));
    assert_eq!(Predicted::from_json(&json!(false)), Some(class("false")));
    assert_eq!(
        Predicted::from_json(&json!(2.5)),
        Some(Predicted::Value(2.5))
    );
    assert_eq!(Predicted::from_json(&json!(null)), None);
    assert_eq!(Predicted::from_json(&json!([1])), None);
}
