use serde_json::json;
use tokio::time::{Duration, Instant};

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn label(id: &str, label: serde_json::Value) -> Label<'static> {
    Label {
        request_id: id.to_owned().into(),
        label: LabelValue::of(&label).into_owned(),
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
            unmatched: 0,
            ..Joined::default()
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
            unmatched: 0,
            ..Joined::default()
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
            unmatched: 2,
            ..Joined::default()
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
            unmatched: 1,
            ..Joined::default()
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
        label("b", json!("x")),   // labelled already: unknown now, waits in vain
        label("zzz", json!("x")), // never seen: waits in vain
        label("", json!("x")),    // no id: unmatched at once
    ];
    assert_eq!(
        fb.join(&labels, t0 + secs(21)),
        Joined {
            matched: 1,
            unmatched: 2,
            waiting: 2,
            ..Joined::default()
        }
    );
    assert_eq!(fb.counts().waiting, 2);
    fb.expire(t0 + secs(21) + Duration::from_millis(WAIT_MS));
    let c = fb.counts();
    assert_eq!((c.matched, c.unmatched, c.late, c.waiting), (1, 4, 1, 0));
    assert_eq!(fb.take_unreported(), 2, "the two that waited in vain");
    assert_eq!(fb.take_unreported(), 0, "reported once");
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

// === request ids: the first exchange keeps its id ===

#[test]
fn a_request_id_is_bound_to_its_first_exchange() {
    let (fb, t0) = store(Settings::default());
    fb.remember("r1", "iris", "blue", class("a"), t0);
    // The same id again, on another exchange (a client resending it): not a replacement.
    fb.remember("r1", "iris", "green", class("b"), t0 + secs(1));
    fb.remember("r2", "iris", "blue", class("a"), t0 + secs(1));
    assert_eq!(fb.counts().pending, 2, "the replay waits nowhere");
    assert_eq!(fb.counts().reused, 1);

    let joined = fb.join(
        &[label("r1", json!("b")), label("r2", json!("a"))],
        t0 + secs(2),
    );
    assert_eq!(
        joined,
        Joined {
            matched: 1,
            ambiguous: 1,
            ..Joined::default()
        }
    );
    let blue = fb.score("iris", "blue", t0 + secs(2), MINUTE);
    assert_eq!((blue.classified, blue.correct), (1, 1), "only r2 is scored");
    assert_eq!(fb.score("iris", "green", t0 + secs(2), MINUTE).labels(), 0);
    let c = fb.counts();
    assert_eq!((c.matched, c.ambiguous, c.unmatched), (1, 1, 0));
    let blue = &fb.backend_counts()[0];
    assert_eq!((&*blue.backend, blue.ambiguous), ("blue", 1));
}

#[test]
fn a_replayed_id_does_not_take_the_place_of_a_forgotten_prediction() {
    let (fb, t0) = store(Settings {
        max_pending: 1,
        ..Settings::default()
    });
    fb.remember("r1", "iris", "blue", class("a"), t0);
    fb.remember("r2", "iris", "blue", class("a"), t0); // pushes r1 out
    fb.remember("r1", "iris", "green", class("b"), t0); // and r1 comes back from elsewhere
    let joined = fb.join(&[label("r1", json!("b"))], t0);
    assert_eq!(joined.ambiguous, 1, "{joined:?}");
    assert_eq!(fb.score("iris", "green", t0, MINUTE).labels(), 0);
}

#[test]
fn a_mirrored_answer_is_the_same_exchange_and_scored_with_it() {
    let (fb, t0) = store(Settings::default());
    fb.remember_exchange(
        "r1",
        "iris",
        ("blue", class("a")),
        Some(("green", class("b"))),
        t0,
    );
    fb.remember_exchange(
        "r2",
        "iris",
        ("blue", class("a")),
        Some(("green", class("a"))),
        t0,
    );
    let joined = fb.join(&[label("r1", json!("a")), label("r2", json!("a"))], t0);
    assert_eq!(
        joined,
        Joined {
            matched: 2,
            ..Joined::default()
        }
    );
    assert_eq!(fb.score("iris", "blue", t0, MINUTE).accuracy(), Some(1.0));
    assert_eq!(fb.score("iris", "green", t0, MINUTE).accuracy(), Some(0.5));
    assert_eq!(fb.counts().reused, 0);
    let green = &fb.backend_counts()[1];
    assert_eq!((green.matched, green.mirrored), (2, 2));

    // A replay of a mirrored exchange's id makes both answers' label ambiguous.
    fb.remember_exchange(
        "r3",
        "iris",
        ("blue", class("a")),
        Some(("green", class("a"))),
        t0,
    );
    fb.remember("r3", "iris", "green", class("b"), t0);
    assert_eq!(fb.join(&[label("r3", json!("a"))], t0).ambiguous, 1);
    assert_eq!(fb.score("iris", "green", t0, MINUTE).labels(), 2);
}

// === labels that come before their prediction ===

#[tokio::test(start_paused = true)]
async fn a_label_that_comes_before_its_prediction_waits_a_short_while_for_it() {
    let fb = Feedback::new(Settings::default());
    let joined = fb.join(&[label("r1", json!("a"))], Instant::now());
    assert_eq!(
        joined,
        Joined {
            waiting: 1,
            ..Joined::default()
        }
    );
    tokio::time::advance(Duration::from_millis(WAIT_MS / 2)).await;
    fb.remember("r1", "iris", "blue", class("a"), Instant::now());
    let c = fb.counts();
    assert_eq!(
        (c.matched, c.waiting, c.pending),
        (1, 0, 0),
        "joined on arrival"
    );
    assert_eq!(fb.score("iris", "blue", Instant::now(), MINUTE).correct, 1);

    // Not forever: a prediction later than the wait finds no label.
    fb.join(&[label("r2", json!("a"))], Instant::now());
    tokio::time::advance(Duration::from_millis(WAIT_MS)).await;
    fb.remember("r2", "iris", "blue", class("a"), Instant::now());
    let c = fb.counts();
    assert_eq!((c.matched, c.unmatched, c.pending), (1, 1, 1));
}

#[test]
fn labels_wait_in_a_bounded_buffer() {
    let (fb, t0) = store(Settings::default());
    let labels: Vec<Label> = (0..MAX_WAITING + 10)
        .map(|i| label(&format!("r{i}"), json!("a")))
        .collect();
    let joined = fb.join(&labels, t0);
    assert_eq!(joined.waiting, MAX_WAITING as u64);
    assert_eq!(joined.unmatched, 10);
    assert_eq!(fb.counts().waiting, MAX_WAITING);
}

// === bodies ===

#[test]
fn label_values_that_are_arrays_or_objects_are_skipped_not_kept() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let body = format!(
        r#"{{"feedback": [{{"request_id": "r1", "label": {deep}}}, {{"label": {{"a": [1, 2, {{"b": "c"}}]}}, "request_id": "r\u0032"}}]}}"#
    );
    let labels = parse_labels(body.as_bytes()).unwrap();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0].label, LabelValue::Nested);
    assert_eq!(labels[1].label, LabelValue::Nested);
    assert_eq!(labels[1].request_id, "r2", "escapes are read");
    assert!(parse_labels(format!("{}{}", "[".repeat(200), "]".repeat(200)).as_bytes()).is_err());
}

#[test]
fn a_body_is_read_in_chunks_and_refused_whole() {
    let batch: Vec<String> = (0..2500)
        .map(|i| format!(r#"{{"request_id": "r{i}", "label": {}}}"#, i % 3))
        .collect();
    let body = format!(r#"{{"feedback": [{}]}}"#, batch.join(","));
    let mut sizes = Vec::new();
    let n = read_labels(body.as_bytes(), |chunk| sizes.push(chunk.len())).unwrap();
    assert_eq!((n, sizes), (2500, vec![CHUNK, CHUNK, 2500 - 2 * CHUNK]));

    // A fault after the first chunk: nothing of the body is joined.
    let (fb, t0) = store(Settings::default());
    fb.remember("r0", "iris", "blue", class("0"), t0);
    let bad = format!(
        r#"{{"feedback": [{}, {{"request_id": 7, "label": 1}}]}}"#,
        batch.join(",")
    );
    assert!(fb.join_body(bad.as_bytes(), t0).is_err());
    assert_eq!(fb.counts().pending, 1);
    assert_eq!(fb.counts().waiting, 0);
    let ok = fb.join_body(body.as_bytes(), t0).unwrap();
    assert_eq!((ok.matched, ok.waiting + ok.unmatched), (1, 2499));
}

#[test]
fn bodies_that_mix_or_repeat_members_are_refused() {
    for bad in [
        &br#"{"feedback": [], "request_id": "r1", "label": 1}"#[..],
        br#"{"request_id": "r1", "request_id": "r2", "label": 1}"#,
        br#"{"feedback": [], "feedback": []}"#,
        br#"{"feedback": [{"request_id": "r1", "label": 1, "label": 2}]}"#,
        br#"{"feedback": [{"request_id": "r1", "label": 1, "feedback": []}]}"#,
        br#"{"request_id": "r1", "label": 1} {}"#,
        br#"{}"#,
    ] {
        assert!(
            parse_labels(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_nested_label_is_read_as_json_is_not_just_scanned() {
    // A number out of range, and nesting past serde_json's limit, inside a label that is
    // never scored: refused as serde_json refuses them, not skipped over.
    let deep = format!(
        r#"{{"request_id": "r1", "label": {}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for bad in [
        &br#"{"request_id": "r1", "label": {"class": [1e4001, 2]}}"#[..],
        br#"{"feedback": [{"label": [[-1e999]], "request_id": "r1"}]}"#,
        deep.as_bytes(),
    ] {
        assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err());
        assert!(
            parse_labels(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // Within them, a nested label is read (and never scored).
    let fine = br#"{"request_id": "r1", "label": {"class": [1e300, "x", {"y": null}]}}"#;
    assert_eq!(parse_labels(fine).unwrap().len(), 1);
}

// === pairs ===

/// Remembers `n` mirrored exchanges `{prefix}{i}` on iris: blue served `a`, green answered
/// the copy with `b` for the first `wrong` of them and `a` for the rest.
fn mirrored(fb: &Feedback, prefix: &str, n: usize, wrong: usize, at: Instant) {
    for i in 0..n {
        let green = if i < wrong { "b" } else { "a" };
        let served = ("blue", class("a"));
        let copy = Some(("green", class(green)));
        fb.remember_exchange(&format!("{prefix}{i}"), "iris", served, copy, at);
    }
}

/// Labels `a` for the ids `{prefix}0..n`.
fn labels_a(prefix: &str, n: usize) -> Vec<Label<'static>> {
    (0..n)
        .map(|i| label(&format!("{prefix}{i}"), json!("a")))
        .collect()
}

#[test]
fn mirrored_requests_count_as_pairs_by_who_got_them_right() {
    let (fb, t0) = store(Settings::default());
    // 100 mirrored requests, the stable always right, the candidate wrong on 30.
    mirrored(&fb, "m", 100, 30, t0);
    assert_eq!(fb.join(&labels_a("m", 100), t0 + secs(1)).matched, 100);
    let p = fb.pairs("iris", "blue", "green", t0 + secs(1), MINUTE);
    assert_eq!(
        p,
        Pairs {
            pairs: 100,
            stable_only: 30,
            candidate_only: 0
        }
    );
    // The other way round: the candidate right where the stable was wrong.
    for i in 0..10 {
        let copy = Some(("green", class("c")));
        fb.remember_exchange(&format!("w{i}"), "iris", ("blue", class("b")), copy, t0);
    }
    let labels: Vec<Label> = (0..10)
        .map(|i| label(&format!("w{i}"), json!("c")))
        .collect();
    fb.join(&labels, t0 + secs(2));
    let p = fb.pairs("iris", "blue", "green", t0 + secs(2), MINUTE);
    assert_eq!((p.pairs, p.stable_only, p.candidate_only), (110, 30, 10));
    // Each answer is scored on its own too.
    assert_eq!(fb.score("iris", "green", t0 + secs(2), MINUTE).correct, 80);
    // Pairs are by stable and candidate, and by route.
    assert_eq!(
        fb.pairs("iris", "green", "blue", t0 + secs(2), MINUTE),
        Pairs::default()
    );
    assert_eq!(
        fb.pairs("other", "blue", "green", t0 + secs(2), MINUTE),
        Pairs::default()
    );
    // They leave with the window.
    assert_eq!(
        fb.pairs("iris", "blue", "green", t0 + secs(200), MINUTE),
        Pairs::default()
    );
}

#[test]
fn requests_one_backend_answered_are_not_pairs() {
    let (fb, t0) = store(Settings::default());
    // Served by either backend alone (a canary's split), all labelled.
    for i in 0..20 {
        fb.remember(&format!("b{i}"), "iris", "blue", class("a"), t0);
        fb.remember(&format!("g{i}"), "iris", "green", class("b"), t0);
    }
    let mut labels = labels_a("b", 20);
    labels.extend(labels_a("g", 20));
    assert_eq!(fb.join(&labels, t0).matched, 40);
    assert_eq!(fb.score("iris", "green", t0, MINUTE).classified, 20);
    assert_eq!(
        fb.pairs("iris", "blue", "green", t0, MINUTE),
        Pairs::default()
    );
    // Value predictions and labels that cannot be compared are no pairs either.
    let copy = Some(("green", Predicted::Value(2.0)));
    fb.remember_exchange("v", "iris", ("blue", Predicted::Value(1.0)), copy, t0);
    fb.remember_exchange(
        "o",
        "iris",
        ("blue", class("a")),
        Some(("green", class("a"))),
        t0,
    );
    fb.join(&[label("v", json!(1.0)), label("o", json!({"x": 1}))], t0);
    assert_eq!(
        fb.pairs("iris", "blue", "green", t0, MINUTE),
        Pairs::default()
    );
}

#[test]
fn an_ambiguous_id_is_not_a_pair() {
    let (fb, t0) = store(Settings::default());
    mirrored(&fb, "m", 10, 10, t0);
    // A client resends m0 and m1 on exchanges of its own.
    for id in ["m0", "m1"] {
        fb.remember_exchange(
            id,
            "iris",
            ("blue", class("b")),
            Some(("green", class("a"))),
            t0,
        );
    }
    let joined = fb.join(&labels_a("m", 10), t0);
    assert_eq!((joined.matched, joined.ambiguous), (8, 2));
    let p = fb.pairs("iris", "blue", "green", t0, MINUTE);
    assert_eq!((p.pairs, p.stable_only, p.candidate_only), (8, 8, 0));
}

#[test]
fn a_label_before_its_mirrored_prediction_makes_a_pair() {
    let (fb, t0) = store(Settings::default());
    let joined = fb.join(&[label("early", json!("a"))], t0);
    assert_eq!(joined.waiting, 1);
    fb.remember_exchange(
        "early",
        "iris",
        ("blue", class("b")),
        Some(("green", class("a"))),
        t0,
    );
    let p = fb.pairs("iris", "blue", "green", t0, MINUTE);
    assert_eq!((p.pairs, p.stable_only, p.candidate_only), (1, 0, 1));
}

#[test]
fn pairs_windows_are_reshaped_with_the_analysis_window_and_counted_in_the_size() {
    let (fb, t0) = store(Settings::default());
    let (unlabelled, _) = store(Settings::default());
    mirrored(&fb, "m", 10, 3, t0);
    mirrored(&unlabelled, "m", 10, 3, t0);
    fb.join(&labels_a("m", 10), t0);
    assert_eq!(fb.pairs("iris", "blue", "green", t0, MINUTE).pairs, 10);
    // The same tables, and a window of pairs: 61 buckets of 32 bytes.
    let grown = fb.size_in_bytes() - unlabelled.size_in_bytes();
    assert!((61 * 32..4 * 61 * 32).contains(&grown), "{grown}");
    fb.set_window(Duration::from_secs(600));
    assert_eq!(
        fb.pairs("iris", "blue", "green", t0, MINUTE),
        Pairs::default()
    );
}

#[test]
fn pairs_totals_outlast_the_window_for_a_long_step() {
    let (fb, t0) = store(Settings::default());
    mirrored(&fb, "m", 10, 3, t0);
    fb.join(&labels_a("m", 10), t0);
    let start = fb.pairs_total("iris", "blue", "green");
    assert_eq!((start.pairs, start.stable_only), (10, 3));
    // A step of ten minutes with a one-minute window: labels every two minutes.
    for k in 1..=5u64 {
        let at = t0 + secs(120 * k);
        let prefix = format!("k{k}-");
        mirrored(&fb, &prefix, 10, 2, at);
        fb.join(&labels_a(&prefix, 10), at);
    }
    let end = t0 + secs(600);
    assert_eq!(fb.pairs("iris", "blue", "green", end, MINUTE).pairs, 10);
    let step = fb.pairs_total("iris", "blue", "green").since(start);
    assert_eq!(
        (step.pairs, step.stable_only, step.candidate_only),
        (50, 10, 0)
    );
    // Each side's own verdicts add up the same way, past the window.
    assert_eq!(fb.score("iris", "green", end, MINUTE).classified, 10);
    let green = fb.score_total("iris", "green");
    assert_eq!((green.classified, green.correct), (60, 60 - 13));
    // Reshaping the window keeps them.
    fb.set_window(Duration::from_secs(600));
    assert_eq!(fb.pairs_total("iris", "blue", "green").pairs, 60);
    assert_eq!(fb.score_total("iris", "green"), green);
    assert_eq!(fb.pairs_total("iris", "green", "blue"), Pairs::default());
}
