//! Which route takes a request: by model (in a V2 or V1 path, or an OpenAI-style body),
//! path prefix, header and host, the first route that matches winning; and a 404 for a
//! request no route takes.

use http::{Method, StatusCode};

use super::harness::{route, Route, Routed};
use crate::support::mock::served_by;
use crate::support::{Answer, INFER};

/// One route per kind of condition, each with its own backend and no catch-all: the
/// backend that answers tells the route that took the request.
fn routes() -> Vec<Route> {
    vec![
        route("iris")
            .when("{ model: iris }")
            .rollout("{ stable: iris-v1 }"),
        route("mnist")
            .when("{ model: mnist }")
            .rollout("{ stable: mnist-v1 }"),
        route("chat")
            .when("{ model: llama-3-8b }")
            .rollout("{ stable: chat-a }"),
        route("fraud")
            .when("{ path_prefix: /fraud/, header: { x-tenant: acme } }")
            .rollout("{ stable: fraud-v6 }"),
        route("beta")
            .when("{ host: beta.example.com }")
            .rollout("{ stable: beta-a }"),
    ]
}

const BACKENDS: [&str; 5] = ["iris-v1", "mnist-v1", "chat-a", "fraud-v6", "beta-a"];

async fn start() -> Routed {
    Routed::start(&BACKENDS, &routes()).await
}

/// The route that took `a`, from its `x-switchyard-route`.
fn route_of(a: &Answer) -> &str {
    a.headers
        .get("x-switchyard-route")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(no x-switchyard-route)")
}

/// Asserts that `a` was answered 200 through route `name` by `backend`.
fn assert_served(a: &Answer, name: &str, backend: &str) {
    assert_eq!(
        (a.status, route_of(a), a.variant()),
        (StatusCode::OK, name, backend),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(served_by(a).as_deref(), Some(backend), "{:?}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_requests_reach_the_route_of_their_model_with_or_without_a_version() {
    let h = start().await;
    let json = [("content-type", "application/json")];
    for path in ["/v2/models/iris/infer", "/v2/models/iris/versions/2/infer"] {
        let a = h.send(Method::POST, path, &json, INFER).await;
        assert_served(&a, "iris", "iris-v1");
    }
    let versioned = h
        .send(
            Method::POST,
            "/v2/models/iris/versions/2/infer",
            &json,
            INFER,
        )
        .await;
    assert_eq!(
        versioned.json()["model_version"],
        "2",
        "{}",
        versioned.json()
    );
    let seen = h.backend("iris-v1").received();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/v2/models/iris/infer",
            "/v2/models/iris/versions/2/infer",
            "/v2/models/iris/versions/2/infer"
        ]
    );
    assert!(seen.iter().all(|r| r.body == INFER.as_bytes()));
    for other in ["mnist-v1", "chat-a", "fraud-v6", "beta-a"] {
        assert_eq!(h.backend(other).hits(), 0, "{other} got an iris request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_requests_reach_the_route_of_their_model_with_or_without_a_version() {
    let h = start().await;
    let body = r#"{"instances":[[0.1,0.2,0.3]]}"#;
    let json = [("content-type", "application/json")];
    for path in [
        "/v1/models/mnist/versions/3:predict",
        "/v1/models/mnist:predict",
    ] {
        let a = h.send(Method::POST, path, &json, body).await;
        assert_served(&a, "mnist", "mnist-v1");
        assert!(a.json()["predictions"].is_array(), "{}", a.json());
    }
    let seen = h.backend("mnist-v1").received();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/v1/models/mnist/versions/3:predict",
            "/v1/models/mnist:predict"
        ]
    );
    assert_eq!(h.backend("iris-v1").hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_requests_are_routed_by_the_model_in_their_body_which_arrives_byte_for_byte() {
    let h = start().await;
    // The model comes last, after 100 KiB of conversation, with the spacing a client
    // happens to send: the proxy reads the body to route, and must forward it untouched.
    let long = "word ".repeat(20 * 1024);
    let bodies = [
        (
            "/v1/chat/completions",
            format!(
                "{{ \"messages\" : [ {{\"role\":\"user\",\"content\":\"{long}\"}} ],\n  \"temperature\":0.20, \"model\" :\"llama-3-8b\" }}"
            ),
        ),
        (
            "/v1/completions",
            r#"{"model":"llama-3-8b","prompt":"Say hi","max_tokens":5}"#.to_string(),
        ),
        (
            "/v1/embeddings",
            "{\"input\":[\"caf\\u00e9\",\"naïve\"],\"model\":\"llama-3-8b\"}".to_string(),
        ),
    ];
    let json = [("content-type", "application/json")];
    for (path, body) in &bodies {
        let a = h.send(Method::POST, path, &json, body).await;
        assert_served(&a, "chat", "chat-a");
    }
    let seen = h.backend("chat-a").received();
    assert_eq!(seen.len(), bodies.len());
    for (r, (path, body)) in seen.iter().zip(&bodies) {
        assert_eq!(r.target, *path);
        assert_eq!(r.method, "POST");
        assert!(
            r.body == body.as_bytes(),
            "the body of {path} changed on its way: {} bytes sent, {} received",
            body.len(),
            r.body.len()
        );
    }
    // `model` is the request's model wherever it is written: an OpenAI-style request
    // for `iris` is the iris route's.
    let a = h
        .send(
            Method::POST,
            "/v1/chat/completions",
            &json,
            r#"{"model":"iris","messages":[]}"#,
        )
        .await;
    assert_served(&a, "iris", "iris-v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_prefix_with_a_header_takes_requests_that_have_both() {
    let h = start().await;
    let a = h
        .send(
            Method::POST,
            "/fraud/score?explain=1",
            &[("x-tenant", "acme"), ("content-type", "application/json")],
            r#"{"amount":12.5}"#,
        )
        .await;
    assert_served(&a, "fraud", "fraud-v6");
    let seen = h.backend("fraud-v6").received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/fraud/score?explain=1");
    assert_eq!(seen[0].headers["x-tenant"], "acme");
    assert_eq!(seen[0].body, r#"{"amount":12.5}"#.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_route_takes_its_host_whatever_the_port_or_case() {
    let h = start().await;
    for host in ["beta.example.com", "BETA.Example.com:8080"] {
        let a = h
            .send(Method::GET, "/anything", &[("host", host)], "")
            .await;
        assert_served(&a, "beta", "beta-a");
    }
    assert_eq!(h.backend("beta-a").hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_request_goes_to_its_targets_host_and_the_backend_is_told_that_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let routes = [
        route("alpha")
            .when("{ host: a.example }")
            .rollout("{ stable: alpha-a }"),
        route("beta")
            .when("{ host: b.example }")
            .rollout("{ stable: beta-b }"),
    ];
    let h = Routed::start(&["alpha-a", "beta-b"], &routes).await;
    let addr = h.url("").trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // RFC 9112 §3.2.2: the target's authority wins over Host.
    let request = format!(
        "POST http://a.example/v2/models/m/infer HTTP/1.1\r\nhost: b.example\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{INFER}",
        INFER.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-switchyard-route: alpha\r\n"), "{answer}");
    let got = h.backend("alpha-a").received();
    assert_eq!(got.len(), 1);
    let hosts: Vec<_> = got[0].headers.get_all("host").iter().collect();
    assert_eq!(
        hosts,
        ["a.example"],
        "the backend is told the host it was routed by"
    );
    assert_eq!(h.backend("beta-b").hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_route_that_matches_takes_the_request() {
    let h = start().await;
    // For the iris model and on beta's host: iris is listed first.
    let a = h
        .send(
            Method::POST,
            "/v2/models/iris/infer",
            &[("host", "beta.example.com")],
            INFER,
        )
        .await;
    assert_served(&a, "iris", "iris-v1");
    assert_eq!(h.backend("beta-a").hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_route_takes_gets_404_with_a_json_error_and_reaches_no_backend() {
    let h = start().await;
    let json = ("content-type", "application/json");
    let acme = ("x-tenant", "acme");
    type Miss<'a> = (&'a str, Method, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let misses: [Miss; 9] = [
        (
            "an unknown V2 model",
            Method::POST,
            "/v2/models/resnet/infer",
            vec![json],
            INFER,
        ),
        // A model name that starts like a routed one is another model.
        (
            "a V2 model named like iris",
            Method::POST,
            "/v2/models/iris-v2/infer",
            vec![json],
            INFER,
        ),
        (
            "an unknown V1 model",
            Method::POST,
            "/v1/models/bert:predict",
            vec![json],
            "{}",
        ),
        (
            "the fraud prefix without its header",
            Method::POST,
            "/fraud/score",
            vec![json],
            "{}",
        ),
        (
            "the fraud prefix for another tenant",
            Method::POST,
            "/fraud/score",
            vec![json, ("x-tenant", "globex")],
            "{}",
        ),
        (
            "the header on a path that only starts like the prefix",
            Method::POST,
            "/fraudulent",
            vec![json, acme],
            "{}",
        ),
        (
            "an OpenAI model nobody serves",
            Method::POST,
            "/v1/chat/completions",
            vec![json],
            r#"{"model":"gpt-x","messages":[]}"#,
        ),
        // Only the top-level `model` names the model.
        (
            "a routed model below the top level",
            Method::POST,
            "/v1/chat/completions",
            vec![json],
            r#"{"messages":[{"model":"llama-3-8b"}],"model":"gpt-x"}"#,
        ),
        ("a plain GET", Method::GET, "/", vec![], ""),
    ];
    for (what, method, path, headers, body) in misses {
        let a = h.send(method, path, &headers, body).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let error = a.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.starts_with("no route for"), "{what}: {error:?}");
    }
    for b in BACKENDS {
        assert_eq!(h.backend(b).hits(), 0, "{b} received an unrouted request");
    }
}
