//! Real-looking bodies per protocol.

use super::*;

fn exchange<'a>(
    backend: &'a str,
    path: &'a str,
    request: &'a str,
    answer: &'a str,
) -> Exchange<'a> {
    Exchange {
        route: "default",
        backend,
        path,
        status: 200,
        request: request.as_bytes(),
        request_truncated: false,
        answer: answer.as_bytes(),
        answer_truncated: false,
    }
}

fn parse(path: &str, request: &str, answer: &str) -> Payload {
    Payload::parse(&exchange("blue", path, request, answer), Protocol::Auto)
}

#[test]
fn v1_labels_regression_and_row_objects() {
    let labels = parse(
        "/x",
        r#"{"instances":[1]}"#,
        r#"{"predictions":["setosa",null]}"#,
    );
    assert_eq!(labels.protocol, Protocol::V1, "from the request's shape");
    assert_eq!(labels.predictions[0].label.as_deref(), Some("setosa"));
    assert!(labels.predictions[1].is_null());
    let regression = parse("/x", r#"{"instances":[1]}"#, r#"{"predictions":[0.83]}"#);
    assert_eq!(regression.predictions[0].score, Some(0.83));
    assert_eq!(regression.predictions[0].label, None);
    let objects = parse(
        "/x",
        r#"{"instances":[1]}"#,
        r#"{"predictions":[{"classes":["cat","dog"],"scores":[0.9,0.1]}]}"#,
    );
    assert_eq!(objects.predictions[0].label.as_deref(), Some("cat"));
    assert_eq!(objects.predictions[0].score, Some(0.9));
}

const CHAT_REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Name three rivers in France."}],"temperature":0.2}"#;

#[test]
fn openai_stream_deltas_are_joined() {
    let stream = concat!(
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Seine, \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Loire\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let p = parse("/v1/chat/completions", CHAT_REQUEST, stream);
    assert!(matches!(p.answer, Answer::Events(ref e) if e.len() == 4));
    assert_eq!(
        p.predictions,
        [Prediction {
            label: Some("length".into()),
            score: Some(12.0)
        }]
    );
}
