//! Unit tests for the shadow response comparator.

use super::tolerance::close;
use super::*;
use serde_json::json;

fn resp(body: &str) -> Response<'_> {
    Response {
        status: 200,
        content_type: Some("application/json"),
        body: body.as_bytes(),
        truncated: false,
    }
}

fn rules(protocol: Protocol, ignore: &[&str]) -> Rules {
    Rules::new(
        protocol,
        ignore.iter().map(|s| s.to_string()).collect(),
        DEFAULT_ABS_TOLERANCE,
        DEFAULT_REL_TOLERANCE,
        Vec::new(),
    )
    .unwrap()
}

fn cmp(rules: &Rules, live: &Value, shadow: &Value) -> Comparison {
    let (l, s) = (live.to_string(), shadow.to_string());
    compare(rules, &resp(&l), &resp(&s))
}

fn cmp_str(rules: &Rules, live: &str, shadow: &str) -> Comparison {
    compare(rules, &resp(live), &resp(shadow))
}

/// An MLServer-style V2 response.
fn v2(id: &str, version: &str, outputs: Value) -> Value {
    json!({
        "model_name": "iris",
        "model_version": version,
        "id": id,
        "parameters": {"content_type": "np"},
        "outputs": outputs,
    })
}

fn fp32(name: &str, shape: Value, data: Value) -> Value {
    json!({"name": name, "shape": shape, "datatype": "FP32", "parameters": {"content_type": "np"}, "data": data})
}

fn output<'c>(c: &'c Comparison, name: &str) -> &'c OutputReport {
    c.outputs
        .iter()
        .find(|o| o.name == name)
        .expect("output report")
}

// ---------------------------------------------------------------- v2

#[test]
fn v2_identical_responses_agree() {
    let body = v2(
        "a",
        "1",
        json!([fp32("predict", json!([2, 2]), json!([0.1, 0.9, 0.8, 0.2]))]),
    );
    let c = cmp(&Rules::default(), &body, &body);
    assert_eq!(c.outcome, Outcome::Agree);
    assert_eq!(c.protocol, Protocol::V2);
    assert_eq!(c.differences_total, 0);
    assert!(c.reason.is_none());
    let o = output(&c, "predict");
    assert!(o.agree);
    assert_eq!((o.elements, o.mismatched), (4, 0));
    assert_eq!(o.max_abs_diff, Some(0.0));
    assert_eq!(o.top1_agree, Some(true));
    assert_eq!(o.top1_agreement, Some(1.0));
    assert_eq!(o.label_agreement, None);
}

#[test]
fn v2_mlserver_random_id_and_model_identity_do_not_matter() {
    let live = v2(
        "6f1c2a7e-1b7b-4a38-9b0e-9f1f3f1b3c11",
        "blue-1",
        json!([fp32("predict", json!([1]), json!([0.5]))]),
    );
    let mut shadow = v2(
        "0d9e8c51-77a2-4d52-8a1b-2a7e1c0c9d42",
        "green-7",
        json!([fp32("predict", json!([1]), json!([0.5]))]),
    );
    shadow["model_name"] = json!("iris-candidate");
    shadow["parameters"] = json!({"content_type": "np", "inference_time": 0.25});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    assert_eq!(c.protocol, Protocol::V2);
}

#[test]
fn v2_outputs_in_different_order_agree() {
    let a = fp32("scores", json!([1, 3]), json!([0.1, 0.7, 0.2]));
    let b = json!({"name": "label", "shape": [1], "datatype": "BYTES", "data": ["cat"]});
    let c = cmp(
        &Rules::default(),
        &v2("1", "1", json!([a.clone(), b.clone()])),
        &v2("2", "1", json!([b, a])),
    );
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    assert_eq!(c.outputs.len(), 2);
    assert!(c.outputs.iter().all(|o| o.agree));
}

#[test]
fn v2_value_beyond_tolerance_disagrees_with_path_by_name() {
    let live = v2(
        "1",
        "1",
        json!([fp32(
            "predict",
            json!([5]),
            json!([1.0, 2.0, 3.0, 4.0, 5.0])
        )]),
    );
    let shadow = v2(
        "1",
        "1",
        json!([fp32(
            "predict",
            json!([5]),
            json!([1.0, 2.0, 3.0, 4.5, 5.0])
        )]),
    );
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences_total, 1);
    let d = &c.differences[0];
    assert_eq!(d.path, "/outputs/predict/data/3");
    assert_eq!(d.what, "value");
    assert_eq!((d.live.as_str(), d.shadow.as_str()), ("4.0", "4.5"));
    let o = output(&c, "predict");
    assert!(!o.agree);
    assert_eq!((o.elements, o.mismatched), (5, 1));
    assert_eq!(o.max_abs_diff, Some(0.5));
}

#[test]
fn v2_shape_mismatch() {
    let live = v2(
        "1",
        "1",
        json!([fp32("p", json!([2, 2]), json!([1, 2, 3, 4]))]),
    );
    let shadow = v2(
        "1",
        "1",
        json!([fp32("p", json!([4, 1]), json!([1, 2, 3, 4]))]),
    );
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences.len(), 1);
    assert_eq!(c.differences[0].what, "shape");
    assert_eq!(c.differences[0].path, "/outputs/p/shape");
    assert_eq!(c.differences[0].live, "[2,2]");
    assert_eq!(c.differences[0].shadow, "[4,1]");
    let o = output(&c, "p");
    assert!(!o.agree);
    assert_eq!(o.mismatched, 0, "the elements themselves are equal");
    assert_eq!(o.top1_agree, None, "no top-1 across different shapes");
}

#[test]
fn v2_datatype_mismatch() {
    let live = v2("1", "1", json!([fp32("p", json!([2]), json!([1.0, 2.0]))]));
    let mut out = fp32("p", json!([2]), json!([1.0, 2.0]));
    out["datatype"] = json!("FP64");
    let c = cmp(&Rules::default(), &live, &v2("1", "1", json!([out])));
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].what, "datatype");
    assert_eq!(c.differences[0].path, "/outputs/p/datatype");
    assert_eq!(c.differences[0].live, "\"FP32\"");
    assert!(!output(&c, "p").agree);
}

#[test]
fn v2_data_length_mismatch() {
    let live = v2(
        "1",
        "1",
        json!([fp32("p", json!([3]), json!([1.0, 2.0, 3.0]))]),
    );
    let shadow = v2("1", "1", json!([fp32("p", json!([3]), json!([1.0, 2.0]))]));
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert!(c
        .differences
        .iter()
        .any(|d| d.what == "length" && d.path == "/outputs/p/data"));
    let o = output(&c, "p");
    assert_eq!((o.elements, o.mismatched), (3, 1));
}

#[test]
fn v2_missing_and_extra_outputs() {
    let a = fp32("a", json!([1]), json!([1.0]));
    let b = fp32("b", json!([1]), json!([2.0]));
    let c2 = fp32("c", json!([1]), json!([3.0]));
    let c = cmp(
        &Rules::default(),
        &v2("1", "1", json!([a.clone(), b])),
        &v2("1", "1", json!([a, c2])),
    );
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences_total, 2);
    let missing = c
        .differences
        .iter()
        .find(|d| d.what == "missing in shadow")
        .unwrap();
    assert_eq!(missing.path, "/outputs/b");
    assert_eq!(missing.shadow, "(absent)");
    assert!(missing.live.contains("\"name\":\"b\""));
    let extra = c
        .differences
        .iter()
        .find(|d| d.what == "extra in shadow")
        .unwrap();
    assert_eq!(extra.path, "/outputs/c");
    assert!(output(&c, "a").agree);
    assert!(!output(&c, "b").agree);
    assert!(!output(&c, "c").agree);
    assert_eq!(output(&c, "b").mismatched, 1);
}

#[test]
fn v2_nested_data_is_flattened_row_major() {
    let live = v2(
        "1",
        "1",
        json!([fp32("p", json!([2, 2]), json!([[1.0, 2.0], [3.0, 4.0]]))]),
    );
    let shadow = v2(
        "1",
        "1",
        json!([fp32("p", json!([2, 2]), json!([1.0, 2.0, 3.0, 4.0]))]),
    );
    assert_eq!(
        cmp(&Rules::default(), &live, &shadow).outcome,
        Outcome::Agree
    );

    let shadow = v2(
        "1",
        "1",
        json!([fp32("p", json!([2, 2]), json!([[1.0, 2.0], [3.5, 4.0]]))]),
    );
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(
        c.differences[0].path, "/outputs/p/data/1/0",
        "nested data reports nested indexes"
    );
}

#[test]
fn v2_output_parameters_are_compared_unless_ignored() {
    let live = v2("1", "1", json!([fp32("p", json!([1]), json!([1.0]))]));
    let mut out = fp32("p", json!([1]), json!([1.0]));
    out["parameters"] = json!({"content_type": "pd"});
    let shadow = v2("1", "1", json!([out]));
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].path, "/outputs/p/parameters/content_type");

    for ptr in [
        "/outputs/0/parameters",
        "/outputs/p/parameters",
        "/outputs/*/parameters",
        "/outputs/*/parameters/content_type",
    ] {
        let c = cmp(&rules(Protocol::Auto, &[ptr]), &live, &shadow);
        assert_eq!(c.outcome, Outcome::Agree, "ignore {ptr}: {c:?}");
    }
    // Pointers that select something else do not hide the difference.
    let c = cmp(
        &rules(
            Protocol::Auto,
            &["/outputs/1/parameters", "/outputs/q/parameters"],
        ),
        &live,
        &shadow,
    );
    assert_eq!(c.outcome, Outcome::Disagree);
}

#[test]
fn v2_index_pointer_matches_position_in_either_response() {
    let a = fp32("a", json!([1]), json!([1.0]));
    let b = fp32("b", json!([1]), json!([2.0]));
    let mut b2 = b.clone();
    b2["data"] = json!([9.0]);
    // b is at index 1 in live and index 0 in shadow.
    let live = v2("1", "1", json!([a.clone(), b]));
    let shadow = v2("1", "1", json!([b2, a]));
    for ptr in [
        "/outputs/1",
        "/outputs/0/data",
        "/outputs/b",
        "/outputs/b/data/0",
    ] {
        let c = cmp(&rules(Protocol::V2, &[ptr]), &live, &shadow);
        assert_eq!(c.outcome, Outcome::Agree, "ignore {ptr}: {c:?}");
    }
    let c = cmp(&rules(Protocol::V2, &["/outputs/b"]), &live, &shadow);
    assert_eq!(c.outputs.len(), 1, "an ignored output is not reported");
}

#[test]
fn v2_ignored_elements_are_not_counted() {
    let live = v2(
        "1",
        "1",
        json!([fp32("p", json!([3]), json!([1.0, 2.0, 3.0]))]),
    );
    let shadow = v2(
        "1",
        "1",
        json!([fp32("p", json!([3]), json!([1.0, 7.0, 3.0]))]),
    );
    let c = cmp(&rules(Protocol::V2, &["/outputs/p/data/1"]), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    assert_eq!(output(&c, "p").mismatched, 0);
    let c = cmp(&rules(Protocol::V2, &["/outputs/p/data/2"]), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
}

#[test]
fn v2_top1_agrees_when_probabilities_differ_beyond_tolerance() {
    let live = v2(
        "1",
        "1",
        json!([fp32(
            "probs",
            json!([2, 3]),
            json!([0.1, 0.7, 0.2, 0.6, 0.3, 0.1])
        )]),
    );
    let shadow = v2(
        "1",
        "1",
        json!([fp32(
            "probs",
            json!([2, 3]),
            json!([0.15, 0.6, 0.25, 0.5, 0.35, 0.15])
        )]),
    );
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    let o = output(&c, "probs");
    assert!(!o.agree);
    assert_eq!(o.mismatched, 6);
    assert_eq!(o.top1_agree, Some(true));
    assert_eq!(o.top1_agreement, Some(1.0));
    assert!((o.max_abs_diff.unwrap() - 0.1).abs() < 1e-9);

    // Second row flips its argmax.
    let shadow = v2(
        "1",
        "1",
        json!([fp32(
            "probs",
            json!([2, 3]),
            json!([0.1, 0.7, 0.2, 0.3, 0.6, 0.1])
        )]),
    );
    let c = cmp(&Rules::default(), &live, &shadow);
    let o = output(&c, "probs");
    assert_eq!(o.top1_agree, Some(false));
    assert_eq!(o.top1_agreement, Some(0.5));
}

#[test]
fn v2_label_agreement_for_bytes_and_class_ids() {
    let labels = |d: Value| {
        v2(
            "1",
            "1",
            json!([{"name": "label", "shape": [4], "datatype": "BYTES", "data": d}]),
        )
    };
    let c = cmp(
        &Rules::default(),
        &labels(json!(["cat", "dog", "cat", "bird"])),
        &labels(json!(["cat", "dog", "dog", "bird"])),
    );
    assert_eq!(c.outcome, Outcome::Disagree);
    let o = output(&c, "label");
    assert_eq!(o.label_agreement, Some(0.75));
    assert_eq!(o.max_abs_diff, None);
    assert_eq!(o.top1_agree, None);

    let ids = |d: Value| {
        v2(
            "1",
            "1",
            json!([{"name": "class", "shape": [3, 1], "datatype": "INT64", "data": d}]),
        )
    };
    let c = cmp(
        &Rules::default(),
        &ids(json!([0, 2, 1])),
        &ids(json!([0, 2, 1])),
    );
    assert_eq!(c.outcome, Outcome::Agree);
    assert_eq!(output(&c, "class").label_agreement, Some(1.0));

    // Integers are compared exactly, even where the relative tolerance would accept them.
    let c = cmp(
        &Rules::default(),
        &ids(json!([1000000, 2, 1])),
        &ids(json!([1000001, 2, 1])),
    );
    assert_eq!(c.outcome, Outcome::Disagree);
    let o = output(&c, "class");
    assert!((o.label_agreement.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(o.max_abs_diff, Some(1.0));
}

#[test]
fn v2_nan_and_infinity() {
    // Python's json module writes bare NaN / Infinity tokens.
    let live = r#"{"outputs":[{"name":"p","shape":[4],"datatype":"FP32","data":[NaN, Infinity, -Infinity, 1.0]}]}"#;
    let same = r#"{"outputs":[{"name":"p","shape":[4],"datatype":"FP32","data":[NaN, Infinity, -Infinity, 1.0]}]}"#;
    let c = cmp_str(&Rules::default(), live, same);
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    assert_eq!(c.protocol, Protocol::V2);

    // Spelled as strings, as some servers do.
    let strings = r#"{"outputs":[{"name":"p","shape":[4],"datatype":"FP32","data":["NaN", "inf", "-inf", 1.0]}]}"#;
    assert_eq!(
        cmp_str(&Rules::default(), live, strings).outcome,
        Outcome::Agree
    );

    let nan_vs_num = r#"{"outputs":[{"name":"p","shape":[4],"datatype":"FP32","data":[0.0, Infinity, -Infinity, 1.0]}]}"#;
    let c = cmp_str(&Rules::default(), live, nan_vs_num);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].path, "/outputs/p/data/0");

    let inf_flip = r#"{"outputs":[{"name":"p","shape":[4],"datatype":"FP32","data":[NaN, -Infinity, -Infinity, 1.0]}]}"#;
    let c = cmp_str(&Rules::default(), live, inf_flip);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].path, "/outputs/p/data/1");
}

#[test]
fn v2_explicit_on_non_v2_json_is_incomparable() {
    let r = rules(Protocol::V2, &[]);
    let c = cmp(&r, &json!({"result": 1}), &json!({"result": 1}));
    assert_eq!(c.outcome, Outcome::Incomparable);
    assert_eq!(c.protocol, Protocol::V2);
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .starts_with("neither body is a V2"),
        "{c:?}"
    );

    let ok = v2("1", "1", json!([fp32("p", json!([1]), json!([1.0]))]));
    let c = cmp(&r, &ok, &json!({"outputs": 3}));
    assert_eq!(c.outcome, Outcome::Incomparable);
    assert!(c
        .reason
        .as_deref()
        .unwrap()
        .starts_with("shadow body is not a V2"));
}

#[test]
fn v2_explicit_reads_only_outputs_and_still_reports_odd_bodies() {
    // Declared V2 parses only `outputs`; what surrounds them may differ freely.
    let r = rules(Protocol::V2, &[]);
    let live = r#"{"model_name":"m","model_version":"1","id":"a","parameters":{"x":[1,{"y":2}]},"outputs":[{"name":"p","shape":[2],"datatype":"FP32","data":[1.0,2.0]}]}"#;
    let shadow = r#"{"outputs":[{"name":"p","shape":[2],"datatype":"FP32","data":[1.0,2.0]}],"model_name":"m2","id":"b"}"#;
    let c = cmp_str(&r, live, shadow);
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    let off =
        r#"{"id":"b","outputs":[{"name":"p","shape":[2],"datatype":"FP32","data":[1.0,2.5]}]}"#;
    let c = cmp_str(&r, live, off);
    assert_eq!(c.differences[0].path, "/outputs/p/data/1", "{c:?}");

    // NaN tokens, a body that is JSON but not an object, and one that is not JSON.
    let nan =
        r#"{"id":"c","outputs":[{"name":"p","shape":[2],"datatype":"FP32","data":[NaN,2.0]}]}"#;
    assert_eq!(cmp_str(&r, nan, nan).outcome, Outcome::Agree);
    let c = cmp_str(&r, live, "[1, 2]");
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .starts_with("shadow body is not a V2"),
        "{c:?}"
    );
    let c = cmp_str(&r, live, "{\"outputs\": [");
    assert_eq!(
        c.reason.as_deref(),
        Some("shadow body is not JSON"),
        "{c:?}"
    );
}

// ---------------------------------------------------------------- tolerance

#[test]
fn tolerance_edges() {
    // Absolute: exactly at the tolerance agrees, just over does not.
    assert!(close(1.0, 1.5, 0.5, 0.0));
    assert!(!close(1.0, 1.5000001, 0.5, 0.0));
    // Relative: against the larger magnitude; 4 vs 3 differs by 1 = 0.25 * 4.
    assert!(close(4.0, 3.0, 0.0, 0.25));
    assert!(close(3.0, 4.0, 0.0, 0.25));
    assert!(!close(4.0, 2.9, 0.0, 0.25));
    // Either tolerance is enough.
    assert!(close(100.0, 100.009, 1e-6, 1e-4));
    assert!(!close(100.0, 100.02, 1e-6, 1e-4));
    // Defaults near zero: the absolute tolerance decides.
    assert!(close(0.0, 1e-6, 1e-6, 1e-4));
    assert!(!close(0.0, 1.1e-6, 1e-6, 1e-4));
    // Non-finite values.
    assert!(close(f64::NAN, f64::NAN, 0.0, 0.0));
    assert!(!close(f64::NAN, 1.0, 1.0, 1.0));
    assert!(close(f64::INFINITY, f64::INFINITY, 0.0, 0.0));
    assert!(!close(f64::INFINITY, f64::NEG_INFINITY, 1.0, 1.0));
    assert!(!close(f64::INFINITY, f64::MAX, 1.0, 1.0));
    assert!(close(0.0, -0.0, 0.0, 0.0));
}

#[test]
fn tolerance_edges_through_compare() {
    let r = Rules::new(Protocol::V2, vec![], 0.5, 0.0, vec![]).unwrap();
    let body = |x: f64| v2("1", "1", json!([fp32("p", json!([1]), json!([x]))]));
    assert_eq!(cmp(&r, &body(1.0), &body(1.5)).outcome, Outcome::Agree);
    assert_eq!(
        cmp(&r, &body(1.0), &body(1.5000001)).outcome,
        Outcome::Disagree
    );

    let r = Rules::new(Protocol::V2, vec![], 0.0, 0.25, vec![]).unwrap();
    assert_eq!(cmp(&r, &body(4.0), &body(3.0)).outcome, Outcome::Agree);
    assert_eq!(cmp(&r, &body(4.0), &body(2.9)).outcome, Outcome::Disagree);

    let r = Rules::default();
    assert_eq!(cmp(&r, &body(0.0), &body(1e-6)).outcome, Outcome::Agree);
    assert_eq!(
        cmp(&r, &body(0.0), &body(1.1e-6)).outcome,
        Outcome::Disagree
    );
    assert_eq!(
        cmp(&r, &body(1000.0), &body(1000.1)).outcome,
        Outcome::Agree
    );
    assert_eq!(
        cmp(&r, &body(1000.0), &body(1000.2)).outcome,
        Outcome::Disagree
    );
}

// ---------------------------------------------------------------- v1

#[test]
fn v1_predictions_with_tolerance_and_top1() {
    let live = json!({"predictions": [[0.1, 0.9], [0.8, 0.2]]});
    let near = json!({"predictions": [[0.100000001, 0.9], [0.8, 0.2]]});
    let c = cmp(&Rules::default(), &live, &near);
    assert_eq!(c.outcome, Outcome::Agree);
    assert_eq!(c.protocol, Protocol::V1);
    assert_eq!(c.outputs.len(), 1);
    let o = output(&c, "predictions");
    assert_eq!(o.elements, 4);
    assert_eq!(o.top1_agree, Some(true));

    let far = json!({"predictions": [[0.2, 0.8], [0.3, 0.7]]});
    let c = cmp(&Rules::default(), &live, &far);
    assert_eq!(c.outcome, Outcome::Disagree);
    let o = output(&c, "predictions");
    assert_eq!(o.mismatched, 4);
    assert_eq!(o.top1_agree, Some(false));
    assert_eq!(o.top1_agreement, Some(0.5));
    assert_eq!(c.differences[0].path, "/predictions/0/0");
}

#[test]
fn v1_shape_mismatch_and_labels() {
    let c = cmp(
        &rules(Protocol::V1, &[]),
        &json!({"predictions": [[1.0, 2.0], [3.0, 4.0]]}),
        &json!({"predictions": [[1.0, 2.0, 3.0, 4.0]]}),
    );
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].what, "shape");
    assert_eq!(c.differences[0].live, "[2,2]");
    assert_eq!(c.differences[0].shadow, "[1,4]");

    let c = cmp(
        &Rules::default(),
        &json!({"predictions": [0, 1, 2, 1]}),
        &json!({"predictions": [0, 1, 1, 1]}),
    );
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(output(&c, "predictions").label_agreement, Some(0.75));

    let c = cmp(
        &Rules::default(),
        &json!({"predictions": ["setosa", "virginica"]}),
        &json!({"predictions": ["setosa", "virginica"]}),
    );
    assert_eq!(c.outcome, Outcome::Agree);
    assert_eq!(output(&c, "predictions").label_agreement, Some(1.0));
}

#[test]
fn v1_columnar_outputs_and_row_objects() {
    let live = json!({"outputs": {"scores": [[0.2, 0.8]], "classes": [1]}});
    let shadow = json!({"outputs": {"classes": [1], "scores": [[0.2, 0.8]]}});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Agree);
    assert_eq!(c.protocol, Protocol::V1);
    assert_eq!(c.outputs.len(), 2);

    let shadow = json!({"outputs": {"classes": [0], "scores": [[0.2, 0.8]]}});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].path, "/outputs/classes/0");

    // Plain tensor under outputs.
    let c = cmp(
        &Rules::default(),
        &json!({"outputs": [1.0, 2.0]}),
        &json!({"outputs": [1.0, 2.0]}),
    );
    assert_eq!((c.outcome, c.protocol), (Outcome::Agree, Protocol::V1));
    assert_eq!(c.outputs[0].name, "outputs");

    // TF-Serving row format: objects per row, compared structurally.
    let live = json!({"predictions": [{"label": "a", "score": 0.9}, {"label": "b", "score": 0.4}]});
    let shadow =
        json!({"predictions": [{"label": "a", "score": 0.9}, {"label": "c", "score": 0.4}]});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].path, "/predictions/1/label");
    assert_eq!(output(&c, "predictions").mismatched, 1);
}

#[test]
fn v1_predictions_vs_outputs_and_ignore_rows() {
    let c = cmp(
        &Rules::default(),
        &json!({"predictions": [1]}),
        &json!({"outputs": [1]}),
    );
    assert_eq!(c.outcome, Outcome::Disagree);
    let whats: Vec<_> = c
        .differences
        .iter()
        .map(|d| (d.path.as_str(), d.what.as_str()))
        .collect();
    assert_eq!(
        whats,
        [
            ("/predictions", "missing in shadow"),
            ("/outputs", "extra in shadow")
        ]
    );

    let live = json!({"predictions": [[0.1, 0.9], [0.5, 0.5]]});
    let shadow = json!({"predictions": [[0.1, 0.9], [0.9, 0.1]]});
    let c = cmp(&rules(Protocol::V1, &["/predictions/1"]), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    let c = cmp(&rules(Protocol::V1, &["/predictions/*/0"]), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences_total, 1);
    assert_eq!(c.differences[0].path, "/predictions/1/1");

    let c = cmp(
        &rules(Protocol::V1, &[]),
        &json!({"result": 1}),
        &json!({"result": 1}),
    );
    assert_eq!(c.outcome, Outcome::Incomparable);
}

// ---------------------------------------------------------------- json

#[test]
fn json_structural_diff() {
    let live = json!({"a": 1.0, "b": "x", "c": [1, 2, 3], "d": {"e": true}, "f": null, "g": 1});
    let shadow = json!({"a": 1.0000001, "b": "y", "c": [1, 2], "d": {"e": true, "z": 0}, "f": null, "g": "1"});
    let c = cmp(&rules(Protocol::Json, &[]), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.protocol, Protocol::Json);
    assert!(c.outputs.is_empty());
    let mut got: Vec<_> = c
        .differences
        .iter()
        .map(|d| (d.path.as_str(), d.what.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/b", "value"),
            ("/c", "length"),
            ("/d/z", "extra in shadow"),
            ("/g", "type")
        ]
    );
    let c = cmp(
        &rules(Protocol::Json, &[]),
        &json!({"a": 1, "b": 2}),
        &json!({"a": 1}),
    );
    assert_eq!(c.differences[0].what, "missing in shadow");
    assert_eq!(c.differences[0].path, "/b");
}

#[test]
fn json_auto_detection_and_ignore_with_wildcards() {
    let live = json!({"id": "1", "meta": [{"ts": 1, "v": 1}, {"ts": 2, "v": 2}], "result": "ok"});
    let shadow = json!({"id": "2", "meta": [{"ts": 5, "v": 1}, {"ts": 6, "v": 2}], "result": "ok"});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!((c.outcome, c.protocol), (Outcome::Disagree, Protocol::Json));
    assert_eq!(c.differences_total, 3);

    let c = cmp(
        &rules(Protocol::Auto, &["/id", "/meta/*/ts"]),
        &live,
        &shadow,
    );
    assert_eq!(c.outcome, Outcome::Agree, "{c:?}");
    let c = cmp(
        &rules(Protocol::Auto, &["/id", "/meta/0/ts"]),
        &live,
        &shadow,
    );
    assert_eq!(c.differences_total, 1);
    assert_eq!(c.differences[0].path, "/meta/1/ts");
    // The empty pointer ignores the whole document.
    assert_eq!(
        cmp(&rules(Protocol::Json, &[""]), &live, &shadow).outcome,
        Outcome::Agree
    );
}

#[test]
fn json_keys_are_escaped_in_paths_and_pointers() {
    let live = json!({"a/b": {"c~d": 1}});
    let shadow = json!({"a/b": {"c~d": 2}});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.differences[0].path, "/a~1b/c~0d");
    assert_eq!(
        cmp(&rules(Protocol::Json, &["/a~1b/c~0d"]), &live, &shadow).outcome,
        Outcome::Agree
    );
}

#[test]
fn auto_mixed_shapes_are_diffed_as_json() {
    let live = v2("1", "1", json!([fp32("p", json!([1]), json!([1.0]))]));
    let shadow = json!({"error": "model not loaded"});
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!((c.outcome, c.protocol), (Outcome::Disagree, Protocol::Json));
    assert_eq!(
        c.reason.as_deref(),
        Some("live looks like v2, shadow like json; compared as json")
    );
    // Compared as JSON, the whole documents are diffed, not only the V2 outputs.
    let paths: Vec<&str> = c.differences.iter().map(|d| d.path.as_str()).collect();
    assert!(paths.contains(&"/model_name"), "{paths:?}");
    assert!(paths.contains(&"/error"), "{paths:?}");
}

#[test]
fn differences_are_capped_but_counted() {
    let live: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let shadow: Vec<f32> = (0..100).map(|i| i as f32 + 1.0).collect();
    let c = cmp(
        &Rules::default(),
        &v2("1", "1", json!([fp32("p", json!([100]), json!(live))])),
        &v2("1", "1", json!([fp32("p", json!([100]), json!(shadow))])),
    );
    assert_eq!(c.differences.len(), MAX_DIFFERENCES);
    assert_eq!(c.differences_total, 100);
    assert_eq!(output(&c, "p").mismatched, 100);
    assert_eq!(c.differences[31].path, "/outputs/p/data/31");
}

// ---------------------------------------------------------------- status, truncation, bytes

#[test]
fn status_mismatch_is_incomparable() {
    let body = r#"{"outputs":[]}"#;
    let live = resp(body);
    let shadow = Response {
        status: 500,
        ..resp(body)
    };
    let c = compare(&Rules::default(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Incomparable);
    assert_eq!(c.reason.as_deref(), Some("status mismatch 200 vs 500"));
    assert_eq!(c.protocol, Protocol::Auto);
}

#[test]
fn equal_error_statuses_compare_bodies_by_the_same_rules() {
    let err = |b: &'static str| Response {
        status: 503,
        ..resp(b)
    };
    let a = err(r#"{"error": "overloaded"}"#);
    let b = err(r#"{"error": "overloaded"}"#);
    let c = compare(&Rules::default(), &a, &b);
    assert_eq!((c.outcome, c.protocol), (Outcome::Agree, Protocol::Json));
    let d = err(r#"{"error": "model green failed"}"#);
    assert_eq!(
        compare(&Rules::default(), &a, &d).outcome,
        Outcome::Disagree
    );

    let c = compare(&rules(Protocol::V2, &[]), &a, &b);
    assert_eq!(c.outcome, Outcome::Incomparable);
    assert!(
        c.reason.as_deref().unwrap().ends_with("(status 503)"),
        "{c:?}"
    );
}

#[test]
fn truncated_bodies_are_incomparable() {
    let body = r#"{"predictions":[1]}"#;
    let cut = Response {
        truncated: true,
        ..resp(body)
    };
    let c = compare(&Rules::default(), &resp(body), &cut);
    assert_eq!(c.outcome, Outcome::Incomparable);
    assert_eq!(c.reason.as_deref(), Some("body truncated (shadow)"));
    let c = compare(&Rules::default(), &cut, &cut);
    assert_eq!(c.reason.as_deref(), Some("body truncated (both)"));
}

#[test]
fn non_json_bodies() {
    let r = Rules::default();
    let c = cmp_str(&r, "label=cat", "label=cat");
    assert_eq!((c.outcome, c.protocol), (Outcome::Agree, Protocol::Bytes));

    let c = cmp_str(&r, "label=cat", "label=dog");
    assert_eq!(
        (c.outcome, c.protocol),
        (Outcome::Disagree, Protocol::Bytes)
    );
    assert_eq!(c.differences[0].what, "bytes");
    assert_eq!(c.differences[0].path, "");
    assert!(
        c.differences[0].live.contains("first difference at byte 6"),
        "{:?}",
        c.differences[0]
    );
    let shown = format!("{:?}", c.differences[0]);
    assert!(!shown.contains("cat") && !shown.contains("dog"), "{shown}");

    // One side JSON, the other not: compared as bytes, with a note.
    let c = cmp_str(&r, r#"{"a":1}"#, "oops");
    assert_eq!(c.outcome, Outcome::Disagree);
    assert!(c
        .reason
        .as_deref()
        .unwrap()
        .starts_with("shadow body is not JSON"));

    for p in [Protocol::Json, Protocol::V2, Protocol::V1] {
        let c = cmp_str(&rules(p, &[]), "not json", r#"{"a":1}"#);
        assert_eq!(c.outcome, Outcome::Incomparable);
        assert_eq!(c.reason.as_deref(), Some("live body is not JSON"));
        let c = cmp_str(&rules(p, &[]), "x", "y");
        assert_eq!(c.reason.as_deref(), Some("neither body is JSON"));
    }

    // Explicit bytes does not parse: whitespace matters.
    let c = cmp_str(&rules(Protocol::Bytes, &[]), r#"{"a":1}"#, r#"{"a": 1}"#);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(
        cmp_str(&rules(Protocol::Json, &[]), r#"{"a":1}"#, r#"{"a": 1}"#).outcome,
        Outcome::Agree
    );
}

#[test]
fn binary_content_type_skips_json() {
    let mut a = resp(r#"{"a":1}"#);
    let b = resp(r#"{"a": 1}"#);
    a.content_type = Some("Application/Octet-Stream");
    let c = compare(&Rules::default(), &a, &b);
    assert_eq!(
        (c.outcome, c.protocol),
        (Outcome::Disagree, Protocol::Bytes)
    );
}

// ---------------------------------------------------------------- redact

#[test]
fn redact_bodies() {
    let r = Rules::new(
        Protocol::Auto,
        vec![],
        DEFAULT_ABS_TOLERANCE,
        DEFAULT_REL_TOLERANCE,
        vec![
            "/user/email".into(),
            "/outputs/embedding/data".into(),
            "/items/*/secret".into(),
        ],
    )
    .unwrap();
    let body = json!({
        "user": {"email": "a@b.c", "plan": "pro"},
        "outputs": [{"name": "embedding", "data": [0.1, 0.2]}, {"name": "label", "data": ["x"]}],
        "items": [{"secret": 1, "k": 1}, {"secret": 2}],
    })
    .to_string();
    let v = redact(&r, body.as_bytes());
    assert_eq!(v["user"]["email"], "[redacted]");
    assert_eq!(v["user"]["plan"], "pro");
    assert_eq!(v["outputs"][0]["data"], "[redacted]");
    assert_eq!(v["outputs"][1]["data"], json!(["x"]));
    assert_eq!(v["items"][0]["secret"], "[redacted]");
    assert_eq!(v["items"][1]["secret"], "[redacted]");
    assert_eq!(v["items"][0]["k"], 1);

    // Not JSON: its size only, none of its bytes.
    let v = redact(&r, b"plain \xff secret text");
    assert_eq!(v, json!("(19 bytes, not JSON: not shown)"));

    // Large JSON: a bounded excerpt of the redacted text, cut on a character boundary.
    // Keys are written in order: the secret comes first, then what is cut.
    let big = json!({"notes": "é".repeat(3000), "user": {"email": "a@b.c"}}).to_string();
    let v = redact(&r, big.as_bytes());
    let s = v.as_str().expect("an excerpt");
    assert!(s.len() <= MAX_EXCERPT + 64, "{}", s.len());
    assert!(
        s.starts_with("{\"notes\":\"éé") && !s.contains("a@b.c"),
        "{s}"
    );
    let whole = json!({"notes": "é".repeat(3000), "user": {"email": "[redacted]"}}).to_string();
    assert!(
        s.ends_with(&format!("(cut: {} bytes of JSON in all)", whole.len())),
        "{s}"
    );
}

#[test]
fn redact_applies_to_reported_differences() {
    let r = Rules::new(
        Protocol::Auto,
        vec![],
        DEFAULT_ABS_TOLERANCE,
        DEFAULT_REL_TOLERANCE,
        vec!["/outputs/embedding/data".into(), "/user/token".into()],
    )
    .unwrap();
    let live = v2(
        "1",
        "1",
        json!([fp32("embedding", json!([2]), json!([0.1, 0.2]))]),
    );
    let shadow = v2(
        "1",
        "1",
        json!([fp32("embedding", json!([2]), json!([0.3, 0.2]))]),
    );
    let c = cmp(&r, &live, &shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].live, "[redacted]");
    assert_eq!(c.differences[0].shadow, "[redacted]");

    // A missing subtree that contains a redacted member is shown with it redacted.
    let c = cmp(
        &r,
        &json!({"a": 1}),
        &json!({"a": 1, "user": {"token": "s3cr3t", "id": 7}}),
    );
    let shown: Value = serde_json::from_str(&c.differences[0].shadow).unwrap();
    assert_eq!(shown, json!({"id": 7, "token": "[redacted]"}));
    assert!(!c.differences[0].shadow.contains("s3cr3t"));
}

// ---------------------------------------------------------------- rules and enums

#[test]
fn rules_validation() {
    assert!(Rules::new(
        Protocol::Auto,
        vec!["/ok".into(), "".into(), "/a/*/b".into()],
        0.0,
        0.0,
        vec![]
    )
    .is_ok());
    let e = Rules::new(Protocol::Auto, vec!["id".into()], 1e-6, 1e-4, vec![]).unwrap_err();
    assert!(
        e.contains("ignore[0]") && e.contains("must start with '/'"),
        "{e}"
    );
    let e = Rules::new(Protocol::Auto, vec![], 1e-6, 1e-4, vec!["/a~2".into()]).unwrap_err();
    assert!(e.contains("redact[0]"), "{e}");
    let e = Rules::new(Protocol::Auto, vec![], -1.0, f64::NAN, vec![]).unwrap_err();
    assert!(
        e.contains("abs_tolerance") && e.contains("rel_tolerance"),
        "{e}"
    );
    assert!(Rules::new(Protocol::Auto, vec![], f64::INFINITY, 0.0, vec![]).is_err());

    let d = Rules::default();
    assert_eq!(d.protocol, Protocol::Auto);
    assert_eq!((d.abs_tolerance, d.rel_tolerance), (1e-6, 1e-4));
    assert!(d.ignore.is_empty() && d.redact.is_empty());
}

#[test]
fn hand_built_rules_are_honoured() {
    let mut r = Rules::default();
    r.ignore.push("/id".into());
    let c = cmp(&r, &json!({"id": 1, "x": 2}), &json!({"id": 9, "x": 2}));
    assert_eq!(c.outcome, Outcome::Agree);

    // A literal with a bad pointer: validate() reports it, compare() skips it.
    let r = Rules {
        ignore: vec!["x".into(), "/id".into()],
        ..Rules::default()
    };
    assert!(r.validate().unwrap_err().contains("ignore[0]"));
    let c = cmp(&r, &json!({"id": 1, "x": 2}), &json!({"id": 9, "x": 3}));
    assert_eq!(c.differences_total, 1);
    assert_eq!(c.differences[0].path, "/x");
}

#[test]
fn enum_names() {
    assert_eq!(Outcome::Agree.as_str(), "agree");
    assert_eq!(Outcome::Disagree.as_str(), "disagree");
    assert_eq!(Outcome::Incomparable.as_str(), "incomparable");
    assert_eq!(
        serde_json::to_string(&Outcome::Incomparable).unwrap(),
        "\"incomparable\""
    );
    for p in [
        Protocol::Auto,
        Protocol::V2,
        Protocol::V1,
        Protocol::Json,
        Protocol::Bytes,
    ] {
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(s, format!("\"{}\"", p.as_str()));
        assert_eq!(serde_json::from_str::<Protocol>(&s).unwrap(), p);
    }
    assert_eq!(Protocol::default(), Protocol::Auto);
    let c = cmp(&Rules::default(), &json!({"a": 1}), &json!({"a": 1}));
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["outcome"], "agree");
    assert_eq!(v["protocol"], "json");
}

#[test]
fn large_tensor_compares() {
    let n = 10_000;
    let data: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut other = data.clone();
    other[1234] += 0.01;
    let live = v2("1", "1", json!([fp32("p", json!([n]), json!(data))]));
    let shadow = v2("2", "1", json!([fp32("p", json!([n]), json!(other))]));
    let c = cmp(&Rules::default(), &live, &live);
    assert_eq!(c.outcome, Outcome::Agree);
    assert_eq!(output(&c, "p").elements, n);
    let c = cmp(&Rules::default(), &live, &shadow);
    assert_eq!(c.differences_total, 1);
    assert_eq!(c.differences[0].path, "/outputs/p/data/1234");
}

#[test]
fn python_non_finite_tokens_outside_strings_only() {
    let live = r#"{"note": "NaN and -Infinity stay text", "x": NaN, "y": [-Infinity, 1]}"#;
    let v = crate::wire::json::parse(live.as_bytes()).expect("parses");
    assert_eq!(v["note"], "NaN and -Infinity stay text");
    assert_eq!(v["x"], "NaN");
    assert_eq!(v["y"][0], "-Infinity");
    let c = cmp_str(&rules(Protocol::Json, &[]), live, live);
    assert_eq!(c.outcome, Outcome::Agree);
    let c = cmp_str(
        &rules(Protocol::Json, &[]),
        live,
        r#"{"note": "NaN and -Infinity stay text", "x": 0, "y": [-Infinity, 1]}"#,
    );
    assert_eq!(c.differences_total, 1);
    assert_eq!(c.differences[0].path, "/x");
    assert!(crate::wire::json::parse(b"\x89PNG\r\n").is_none());
}

// ------------------------------------------------- v2 outputs parsed on their own

#[test]
fn v2_outputs_parsed_alone_keep_present_nulls_and_show_whole_outputs() {
    let r = rules(Protocol::V2, &[]);
    // `"datatype": null` is a member, not an absent one.
    let live = r#"{"outputs":[{"name":"p","datatype":null,"shape":[1],"data":[1.0]}]}"#;
    let shadow = r#"{"outputs":[{"name":"p","shape":[1],"data":[1.0]}]}"#;
    let c = cmp_str(&r, live, shadow);
    assert_eq!(c.outcome, Outcome::Disagree);
    assert_eq!(c.differences[0].path, "/outputs/p/datatype");
    assert_eq!(c.differences[0].live, "null");
    assert_eq!(c.differences[0].shadow, "(absent)");

    // An output on one side only is shown with its members (keys sorted, as for any
    // JSON object shown here).
    let live =
        r#"{"model_name":"m","outputs":[{"name":"q","datatype":"INT64","shape":[1],"data":[3]}]}"#;
    let c = cmp_str(&r, live, r#"{"outputs":[]}"#);
    assert_eq!(c.differences[0].what, "missing in shadow");
    assert_eq!(
        c.differences[0].live,
        r#"{"data":[3],"datatype":"INT64","name":"q","shape":[1]}"#
    );
}

#[test]
fn v2_bodies_that_do_not_parse_alone_are_compared_whole_as_before() {
    // A repeated member, and an output without a string name: the first is compared
    // whole (the last `data` wins, as in any JSON parser here), the second is not V2.
    let repeated = r#"{"outputs":[{"name":"p","data":[9.0],"data":[1.0]}]}"#;
    let plain = r#"{"outputs":[{"name":"p","data":[1.0]}]}"#;
    for p in [Protocol::V2, Protocol::Auto] {
        let c = cmp_str(&rules(p, &[]), repeated, plain);
        assert_eq!(c.outcome, Outcome::Agree, "{p}");
        assert_eq!(c.protocol, Protocol::V2, "{p}");
    }
    let nameless = r#"{"outputs":[{"name":7,"data":[1.0]}]}"#;
    let c = cmp_str(&rules(Protocol::V2, &[]), nameless, plain);
    assert_eq!(c.outcome, Outcome::Incomparable);
    let c = cmp_str(&rules(Protocol::Auto, &[]), nameless, plain);
    assert_eq!(c.protocol, Protocol::Json);
}

#[test]
fn ignore_pointers_changed_after_a_comparison_take_effect() {
    let mut r = rules(Protocol::Json, &["/id"]);
    let (live, shadow) = (json!({"id": 1, "x": 2}), json!({"id": 9, "x": 3}));
    assert_eq!(
        cmp(&r, &live, &shadow).differences_total,
        1,
        "only /x differs"
    );
    r.ignore.push("/x".into());
    assert_eq!(cmp(&r, &live, &shadow).outcome, Outcome::Agree);
    // The compiled list is a cache: equal settings are equal whatever was compared.
    assert_eq!(r, rules(Protocol::Json, &["/id", "/x"]));
}
