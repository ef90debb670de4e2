//! The route decision: how long `Matcher::pick` takes with 1, 10 and 100 routes keyed by
//! model, path prefix or header, for a request the last route takes and one none takes;
//! and, before the timings, a check that deciding from the head allocates nothing.
//!
//! `cargo bench --bench route_match`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Method, Uri};

use switchyard::snapshot::matcher::{MatchRule, Matcher, Pick};

/// The system allocator, counting the allocations made through it.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on unchanged to `System`; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

const SIZES: [usize; 3] = [1, 10, 100];

/// A request head, with the headers a client usually sends.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    fn new(method: Method, target: &str, extra: Option<(&'static str, &str)>) -> Head {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "models.example.com"),
            ("user-agent", "python-requests/2.32"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        if let Some((name, value)) = extra {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        Head {
            method,
            uri: target.parse().unwrap(),
            headers,
        }
    }

    fn pick(&self, matcher: &Matcher) -> Pick {
        matcher.pick(&self.method, &self.uri, &self.headers)
    }

    fn pick_with_body(&self, matcher: &Matcher, body: &[u8]) -> Pick {
        matcher.pick_with_body(&self.method, &self.uri, &self.headers, body)
    }
}

/// A way to key routes.
#[derive(Clone, Copy)]
enum Kind {
    Model,
    PathPrefix,
    Header,
}

const KINDS: [Kind; 3] = [Kind::Model, Kind::PathPrefix, Kind::Header];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::PathPrefix => "path_prefix",
            Kind::Header => "header",
        }
    }

    /// The conditions of the route for `key`.
    fn rule(self, key: usize) -> MatchRule {
        let mut rule = MatchRule::default();
        match self {
            Kind::Model => rule.model = Some(format!("model-{key}")),
            Kind::PathPrefix => rule.path_prefix = Some(format!("/p{key}/")),
            Kind::Header => rule.header = vec![("x-tenant".into(), format!("tenant-{key}"))],
        }
        rule
    }

    /// A request for the route of `key`, if there is one.
    fn request(self, key: &str) -> Head {
        let (target, tenant) = match self {
            Kind::Model => (format!("/v2/models/model-{key}/infer"), None),
            Kind::PathPrefix => (format!("/p{key}/predict"), None),
            Kind::Header => ("/predict".into(), Some(format!("tenant-{key}"))),
        };
        Head::new(
            Method::POST,
            &target,
            tenant.as_deref().map(|t| ("x-tenant", t)),
        )
    }

    /// `n` routes keyed this way.
    fn matcher(self, n: usize) -> Matcher {
        let routes = (0..n).map(|i| (format!("r{i}"), Some(self.rule(i))));
        Matcher::new(routes.collect()).unwrap()
    }

    /// (case, request, what it must come to) for `n` routes.
    fn requests(self, n: usize) -> [(&'static str, Head, Pick); 2] {
        [
            (
                "last",
                self.request(&(n - 1).to_string()),
                Pick::Route(n - 1),
            ),
            ("none", self.request("none"), Pick::NoRoute),
        ]
    }
}

/// An OpenAI chat request's body (about 400 bytes) naming `model` after its messages.
fn chat_body(model: &str) -> Vec<u8> {
    format!(
        r#"{{"messages": [{{"role": "system", "content": "You are a helpful assistant. Answer briefly and cite the documents you were given."}}, {{"role": "user", "content": "Which of the three rollout strategies suits a model whose answers must not change for a user mid-session?"}}], "temperature": 0.2, "max_tokens": 256, "stream": false, "model": "{model}"}}"#
    )
    .into_bytes()
}

/// Allocations made by `f`, run `times` times.
fn allocations(times: u64, mut f: impl FnMut()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..times {
        f();
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Checks that no decision from the head allocates, for every kind, size and request.
fn allocation_check() {
    const PICKS: u64 = 10_000;
    for kind in KINDS {
        for n in SIZES {
            let matcher = kind.matcher(n);
            for (case, head, want) in kind.requests(n) {
                assert_eq!(head.pick(&matcher), want, "{} {n} {case}", kind.name());
                let made = allocations(PICKS, || {
                    black_box(head.pick(black_box(&matcher)));
                });
                let kind = kind.name();
                assert_eq!(made, 0, "{n} routes by {kind}, {case}: allocations");
            }
        }
    }
    let (default, head) = (catch_all(), Kind::Model.request("0"));
    let made = allocations(PICKS, || {
        black_box(head.pick(black_box(&default)));
    });
    assert_eq!(made, 0, "a lone catch-all: allocations");
    let (matcher, chat) = (
        Kind::Model.matcher(100),
        Head::new(Method::POST, "/v1/chat/completions", None),
    );
    let body = chat_body("model-99");
    let pick = || chat.pick_with_body(&matcher, &body);
    assert_eq!(pick(), Pick::Route(99));
    let made = allocations(PICKS, || {
        black_box(pick());
    });
    println!(
        "an OpenAI chat body read for its model: {:.2} allocations per pick (not a bound)",
        made as f64 / PICKS as f64
    );
    println!(
        "allocation check: 0 allocations in {PICKS} picks for each of 1, 10 and 100 routes by \
         model, path_prefix and header, matching the last route and none, and for a lone catch-all"
    );
}

fn bench(c: &mut Criterion) {
    for kind in KINDS {
        let mut g = c.benchmark_group(format!("pick/{}", kind.name()));
        for n in SIZES {
            let matcher = kind.matcher(n);
            for (case, head, _) in kind.requests(n) {
                g.bench_with_input(BenchmarkId::new(case, n), &head, |b, head| {
                    b.iter(|| black_box(head.pick(black_box(&matcher))))
                });
            }
        }
        g.finish();
    }
    // A config with a top-level `rollout:` is one route that takes everything.
    let (default, head) = (catch_all(), Kind::Model.request("0"));
    c.bench_function("pick/catch-all alone", |b| {
        b.iter(|| black_box(head.pick(black_box(&default))))
    });
}

/// The single route of a config with a top-level `rollout:`.
fn catch_all() -> Matcher {
    Matcher::new(vec![("default".into(), None)]).unwrap()
}

/// An OpenAI chat request routed by its body's model: the head's decision, then the body's.
fn bench_body(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick_with_body/model");
    let chat = Head::new(Method::POST, "/v1/chat/completions", None);
    for n in SIZES {
        let matcher = Kind::Model.matcher(n);
        for (case, body, want) in [
            (
                "last",
                chat_body(&format!("model-{}", n - 1)),
                Pick::Route(n - 1),
            ),
            ("none", chat_body("model-none"), Pick::NoRoute),
        ] {
            assert_eq!(chat.pick(&matcher), Pick::NeedsBody);
            assert_eq!(chat.pick_with_body(&matcher, &body), want);
            g.bench_with_input(BenchmarkId::new(case, n), &body, |b, body| {
                b.iter(|| {
                    black_box(chat.pick(black_box(&matcher)));
                    black_box(chat.pick_with_body(black_box(&matcher), black_box(body)))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench, bench_body);

fn main() {
    allocation_check();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
