//! A small deterministic model server speaking the V2 (Open Inference) protocol, for the
//! demo and the tests: `POST /v2/models/{name}/infer`, health endpoints, and an echo of
//! anything else so pass-through can be checked.
//!
//! ```no_run
//! # async fn f() {
//! use switchyard::demo::model::{ModelServer, Model};
//! let blue = ModelServer::start("blue", Model::default()).await.unwrap();
//! blue.behavior().set_error_rate(0.5); // half of the answers are now 500s
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The model: `p = sigmoid(weight · sum(x) + bias)`, answered as probabilities and a label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub weight: f64,
    pub bias: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            weight: 0.8,
            bias: -0.1,
        }
    }
}

impl Model {
    fn predict(&self, row: &[f64]) -> f64 {
        let z = self.weight * row.iter().sum::<f64>() + self.bias;
        1.0 / (1.0 + (-z).exp())
    }

    /// The class this model gives a row: 1 when its probability is at least one half, else 0.
    pub fn label(&self, row: &[f64]) -> i64 {
        i64::from(self.predict(row) >= 0.5)
    }
}

/// How the server behaves now; changeable while it runs.
#[derive(Debug, Default)]
pub struct Behavior {
    /// Share of requests answered with 500, in millionths.
    error_ppm: AtomicU32,
    /// Added latency, in microseconds.
    delay_us: AtomicU64,
    /// Requests seen.
    hits: AtomicU64,
    /// Requests carrying `x-switchyard-shadow`.
    shadow_hits: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// Share of answers whose scores are jittered (a nondeterministic model), in millionths.
    noise_ppm: AtomicU32,
    /// Added to the model's bias, in millionths: the label mix shifts.
    shift_micros: AtomicI64,
}

impl Behavior {
    pub fn set_error_rate(&self, rate: f64) {
        self.error_ppm
            .store((rate.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }
    pub fn set_delay(&self, d: Duration) {
        self.delay_us.store(d.as_micros() as u64, Ordering::Relaxed);
    }
    /// Makes the model nondeterministic: this share of answers get scores jittered by 1–5 %.
    pub fn set_noise(&self, rate: f64) {
        self.noise_ppm
            .store((rate.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }
    /// Adds `shift` to the model's bias, as a model trained on skewed data would have it:
    /// more rows cross one half, so its label mix shifts and its accuracy falls.
    pub fn set_shift(&self, shift: f64) {
        self.shift_micros
            .store((shift * 1e6).round() as i64, Ordering::Relaxed);
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
    pub fn shadow_hits(&self) -> u64 {
        self.shadow_hits.load(Ordering::Relaxed)
    }
    /// Connections accepted so far: how well a proxy in front reuses them.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A running model server.
pub struct ModelServer {
    pub name: String,
    pub addr: SocketAddr,
    behavior: Arc<Behavior>,
    stop: watch::Sender<bool>,
}

impl ModelServer {
    /// Starts a model server on an ephemeral loopback port.
    pub async fn start(name: &str, model: Model) -> std::io::Result<ModelServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let behavior = Arc::new(Behavior::default());
        let (stop, mut stopped) = watch::channel(false);
        let state = Arc::new((name.to_string(), model, behavior.clone()));
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                    _ = stopped.changed() => break,
                };
                let _ = stream.set_nodelay(true);
                state.2.connections.fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            Ok::<_, Infallible>(answer(&state.0, &state.1, &state.2, req).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        Ok(ModelServer {
            name: name.to_string(),
            addr,
            behavior,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn behavior(&self) -> &Arc<Behavior> {
        &self.behavior
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    name: &str,
    model: &Model,
    behavior: &Behavior,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    behavior.hits.fetch_add(1, Ordering::Relaxed);
    if req.headers().contains_key("x-switchyard-shadow") {
        behavior.shadow_hits.fetch_add(1, Ordering::Relaxed);
    }
    let delay = behavior.delay_us.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    let ppm = behavior.error_ppm.load(Ordering::Relaxed);
    if ppm > 0 && rand::random_range(0..1_000_000) < ppm {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "model failed"}),
            name,
        );
    }
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path == "/v2/health/ready" || path == "/v2/health/live" {
        return json_response(StatusCode::OK, &json!({}), name);
    }
    if path.starts_with("/v2/models/") && path.ends_with("/infer") {
        let noise = behavior.noise_ppm.load(Ordering::Relaxed);
        let jitter = (noise > 0 && rand::random_range(0..1_000_000) < noise)
            .then(|| rand::random_range(0.01..0.05));
        let shift = behavior.shift_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let model = Model {
            bias: model.bias + shift,
            ..*model
        };
        return match infer(name, &model, &body, jitter) {
            Ok(v) => json_response(StatusCode::OK, &v, name),
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({ "error": e }), name),
        };
    }
    // Anything else: echo what arrived.
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let echo = json!({
        "backend": name,
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    json_response(StatusCode::OK, &echo, name)
}

/// Answers a V2 inference request: every input row gets `[1-p, p]` and a label.
/// `jitter` shifts every score by that much (kept in 0..=1), as a nondeterministic model would.
fn infer(name: &str, model: &Model, body: &[u8], jitter: Option<f64>) -> Result<Value, String> {
    let req: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let input = req["inputs"]
        .as_array()
        .and_then(|a| a.first())
        .ok_or("no inputs")?;
    let data: Vec<f64> = input["data"]
        .as_array()
        .ok_or("input has no data")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let shape: Vec<usize> = input["shape"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|d| d.as_u64().map(|d| d as usize))
                .collect()
        })
        .unwrap_or_default();
    let cols = if shape.len() == 2 && shape[1] > 0 {
        shape[1]
    } else {
        data.len().max(1)
    };
    let rows: Vec<&[f64]> = data.chunks(cols).collect();
    let mut probs = Vec::with_capacity(rows.len() * 2);
    let mut labels = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut p = model.predict(row);
        if let Some(j) = jitter {
            p = if p + j <= 1.0 { p + j } else { p - j };
        }
        probs.push(1.0 - p);
        probs.push(p);
        labels.push(i64::from(p >= 0.5));
    }
    Ok(json!({
        "model_name": name,
        "model_version": "1",
        "id": crate::proxy::headers::new_request_id().to_str().unwrap_or(""),
        "outputs": [
            { "name": "probabilities", "shape": [rows.len(), 2], "datatype": "FP32", "data": probs },
            { "name": "label", "shape": [rows.len(), 1], "datatype": "INT64", "data": labels },
        ]
    }))
}

fn json_response(status: StatusCode, v: &Value, name: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(name) {
        r.headers_mut().insert("x-model", v);
    }
    r
}
