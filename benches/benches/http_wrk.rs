//! HTTP overhead of the breaker layers on an axum route, with the server driven to saturation
//! by `wrk`: the request rate of each variant against `/bare`, alternated every 20 ms.
//!
//! Run with `cargo bench -p benches --bench http_wrk` (about 7 minutes with the defaults). It
//! needs `wrk` on the `PATH` (Debian: `apt-get install wrk`); without it, it says so and exits
//! successfully. Under `cargo test` (no `--bench` argument) it runs a smoke pass instead: every
//! route answers once over loopback and once in process, and nothing is timed.
//!
//! # Why wrk
//!
//! The `http` bench's load generator is a tokio client on the other core; it needs about as much
//! CPU per request as the server does, so the server idles part of the time and a layer's cost
//! hides in that slack (it reported 1.010 with/without). `wrk` (C, epoll, one thread) needs less
//! per request, so the one server thread runs at 100 % and what it spends per request shows in
//! the request rate. The bench checks that it does (see *Saturation*).
//!
//! # Why alternate inside one wrk run
//!
//! On the project's 2-core VM, back-to-back 2 s wrk runs against the same route differ by up to
//! 25 % in requests per second, with nothing else running (both cores are busy: the loopback TCP
//! work is about 70 % of the server thread's time and splits across the cores), so pairs of
//! whole wrk runs (`wrk -d3s /bare`, then `wrk -d3s /layer`) need hundreds of pairs to resolve
//! 1 %. Instead each wrk run loads one path, `/switch`, and the server's front service rewrites
//! it to the route under test, which the bench flips between `/bare` and the variant every
//! `WINDOW_MS` (20 ms). Both see the same connections, the same wrk process and the same
//! second of the machine's weather; the front counts the requests each route served, so the
//! attribution is exact. The front's cost (one path compare, one URI swap, one relaxed counter
//! add) is the same for every route.
//!
//! # Setup
//!
//! - **Server**: one axum 0.8 `Router` per route, each with its route alone at `/` (so finding
//!   the route costs the same for every variant), behind the front service, served by
//!   `axum::serve` on `127.0.0.1:0` from a current-thread tokio runtime on a dedicated
//!   OS thread (one core's worth of server), pinned to CPU 0 with `taskset` when there are two
//!   CPUs; wrk runs on CPU 1. Every handler is `async fn ok() -> &'static str { "ok" }`; the
//!   routes differ only in what wraps it (see [`VARIANTS`]). Every breaker stays closed (checked
//!   at the end).
//! - **Load**: `wrk -t1 -c32 -d2s http://127.0.0.1:<port>/switch`.
//! - **Runs**: after a 1 s warm-up of every route, `PAIRS` rounds (default 10); in each round
//!   every variant gets one wrk run against `/bare` (the variants' order rotates from round to
//!   round). A run settles for 500 ms, then alternates the two routes in 20 ms windows (bare
//!   first in one run, the variant first in the next) until 300 ms before wrk stops: 30
//!   windows each. A run whose measured span had other processes above 5 % of the machine, or
//!   the server thread below 90 % busy, is run again (up to twice; the retries are counted).
//! - **Figures** per variant: its request rate (served / time over its windows), the median over
//!   runs of `rate(variant) / rate(bare)` (the headline, with quartiles), and the median over runs
//!   of `1e9/rate(variant) - 1e9/rate(bare)`: the nanoseconds per request the variant adds at
//!   saturation. `/bare2` is a second copy of `/bare`, the A/A control: its ratio is the noise
//!   floor.
//! - **Saturation**: the server thread's CPU time (from `/proc/thread-self/schedstat`) is read at
//!   every flip; `srv %` is its share of each route's windows (should read 99-100 %), `srv ns` its
//!   CPU per request served. `other %` is the share of the machine's CPU (`/proc/stat`) that
//!   neither this process nor wrk used over the run.
//! - **In process**: before the wrk runs, the same routers are called in process (`call` and one
//!   poll with a no-op waker, no sockets), interleaved in rounds, to give the nanoseconds each
//!   variant adds per request without HTTP around it. This is where the cost is taken apart
//!   (`valgrind --tool=callgrind` on `WRK_BENCH_IN_PROCESS_ONLY=1` counts instructions, when the
//!   time is too noisy); the wrk figures say what is left of it end to end.
//!
//! Environment overrides: `WRK_BENCH_PAIRS`, `WRK_BENCH_SLICE_S`, `WRK_BENCH_WINDOW_MS`,
//! `WRK_BENCH_CONNECTIONS`, `WRK_BENCH_VARIANTS` (a comma-separated list of route names, e.g.
//! `layer,route_layer`; `bare` always runs), `WRK_BENCH_PIN=0`, `WRK_BENCH_SKIP_IN_PROCESS=1`,
//! `WRK_BENCH_IN_PROCESS_ONLY=1` (the in-process table alone, a few seconds; no wrk needed),
//! `WRK_BENCH_IN_PROCESS_ROUNDS` (31), `WRK_BENCH_IN_PROCESS_ITERATIONS` (20000), and
//! `WRK_BENCH_SERVE_ONLY=1` (serve every route and wait for Enter, for profiling by hand).
//!
//! Output: a table on stdout and `http-wrk-bench.json` in `$CARGO_TARGET_DIR` (relative to the
//! workspace root), or in the workspace's `target/`.
//!
//! Targets: the plain layer and the route layer each >= 0.98x `/bare`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::handler::Handler;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use http::Request;
use tokio::sync::oneshot;
use tower::layer::util::Identity;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder};
use tower_circuit_breaker::classify::http::HttpClassifier;
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitState};
use tower_circuit_breaker_axum::rejection::rejection_response;
use tower_circuit_breaker_axum::route::{CircuitBreakerRouteLayer, DefaultHttpClassifier};

/// The target for `rate(variant) / rate(bare)` of the breaker layers.
const TARGET_RATIO: f64 = 0.98;

/// The variants the target is checked for: the plain layer and the route layer, each where
/// axum's docs put a layer (`MethodRouter::layer` / `route_layer`) and on the handler.
const TARGET_VARIANTS: &[&str] = &[
    "layer",
    "layer_static",
    "handler_layer",
    "handler_layer_static",
    "route_layer",
    "handler_route_layer",
];

/// Above this share of the machine's CPU used by others over a run, the run is done again.
const MAX_OTHER_PCT: f64 = 5.0;

/// Below this share of a run's time on CPU, the server was not saturated: the run is done again.
const MIN_SERVER_PCT: f64 = 90.0;

/// How often a disturbed run is done again.
const RETRIES: usize = 2;

/// One route of the server.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// Its path, without the leading `/`.
    name: &'static str,
    what: &'static str,
}

/// The routes measured against `/bare`, in the order they are reported.
const VARIANTS: &[Variant] = &[
    Variant {
        name: "bare2",
        what: "A/A control: a second copy of /bare",
    },
    Variant {
        name: "identity",
        what: "MethodRouter::layer(Identity): axum's own wrapping of a layered route",
    },
    Variant {
        name: "handler_identity",
        what: "Handler::layer(Identity): a layer on the handler, no extra boxed route",
    },
    Variant {
        name: "boxed",
        what: "MethodRouter::layer(BoxCloneSyncService::layer()): one more boxed service",
    },
    Variant {
        name: "handle_error",
        what: "MethodRouter::layer(HandleErrorLayer) alone, over the infallible route",
    },
    Variant {
        name: "layer_default",
        what: "MethodRouter::layer(HandleErrorLayer + CircuitBreakerLayer), DefaultClassifier",
    },
    Variant {
        name: "layer",
        what: "MethodRouter::layer(HandleErrorLayer + CircuitBreakerLayer + HttpClassifier)",
    },
    Variant {
        name: "layer_static",
        what: "the same with classify_with(DefaultHttpClassifier): no 240-byte table per call",
    },
    Variant {
        name: "handler_layer",
        what: "Handler::layer(HandleErrorLayer + CircuitBreakerLayer + HttpClassifier)",
    },
    Variant {
        name: "handler_layer_static",
        what: "the same with classify_with(DefaultHttpClassifier)",
    },
    Variant {
        name: "adapter_layer",
        what:
            "MethodRouter::layer(ErrorResponseLayer + CircuitBreakerLayer + DefaultHttpClassifier)",
    },
    Variant {
        name: "handler_adapter_layer",
        what: "Handler::layer(ErrorResponseLayer + CircuitBreakerLayer + DefaultHttpClassifier)",
    },
    Variant {
        name: "route_layer",
        what: "MethodRouter::route_layer(CircuitBreakerRouteLayer)",
    },
    Variant {
        name: "route_layer_table",
        what: "the same with classify_with(HttpClassifier::new()): 240 B copied per request",
    },
    Variant {
        name: "handler_route_layer",
        what: "Handler::layer(CircuitBreakerRouteLayer)",
    },
    Variant {
        name: "handler_handle_only",
        what: "Handler::layer(a layer holding a breaker handle, doing nothing)",
    },
    Variant {
        name: "handler_permit_only",
        what: "Handler::layer(a permit per request, recorded as a success; nothing else)",
    },
];

// ===== settings =====

/// How a run is sized.
#[derive(Debug, Clone)]
struct Settings {
    smoke: bool,
    pairs: usize,
    slice: Duration,
    window: Duration,
    connections: usize,
    variants: Vec<Variant>,
    pin: bool,
    in_process: bool,
    in_process_only: bool,
    in_process_rounds: usize,
    in_process_iterations: usize,
    serve_only: bool,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let smoke = !std::env::args().any(|arg| arg == "--bench");
        let number = |name: &str, default: u64, min: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
                .max(min)
        };
        let count = |name: &str, default: u64| usize::try_from(number(name, default, 1)).unwrap();
        let flag = |name: &str| std::env::var(name).is_ok_and(|value| value == "1");
        let variants = match std::env::var("WRK_BENCH_VARIANTS") {
            Ok(list) => {
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                VARIANTS
                    .iter()
                    .copied()
                    .filter(|variant| names.contains(&variant.name))
                    .collect()
            }
            Err(_) => VARIANTS.to_vec(),
        };
        Self {
            smoke,
            pairs: count("WRK_BENCH_PAIRS", 10),
            slice: Duration::from_secs(number("WRK_BENCH_SLICE_S", 2, 2)),
            window: Duration::from_millis(number("WRK_BENCH_WINDOW_MS", 20, 5)),
            connections: count("WRK_BENCH_CONNECTIONS", 32),
            variants,
            pin: std::env::var("WRK_BENCH_PIN").map_or(true, |value| value != "0"),
            in_process: !flag("WRK_BENCH_SKIP_IN_PROCESS"),
            in_process_only: flag("WRK_BENCH_IN_PROCESS_ONLY"),
            in_process_rounds: count("WRK_BENCH_IN_PROCESS_ROUNDS", 31),
            in_process_iterations: count("WRK_BENCH_IN_PROCESS_ITERATIONS", 20_000),
            serve_only: flag("WRK_BENCH_SERVE_ONLY"),
        }
    }
}

// ===== the routes =====

async fn ok() -> &'static str {
    "ok"
}

/// The error handler of the plain layer: a rejection as 503 + `Retry-After`, anything else 500
/// (never happens here: the breakers stay closed).
async fn error_to_response(err: BoxError) -> Response {
    rejection_response(&err)
        .unwrap_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response())
}

/// `HandleErrorLayer`'s handler over a route that cannot fail.
async fn never(err: Infallible) -> Response {
    match err {}
}

/// The breakers of the guarded routes, by route name.
#[derive(Debug, Clone)]
struct Breakers(Vec<(&'static str, CircuitBreaker)>);

impl Breakers {
    fn new() -> Self {
        Self(
            [
                "layer_default",
                "layer",
                "layer_static",
                "handler_layer",
                "handler_layer_static",
                "adapter_layer",
                "handler_adapter_layer",
                "route_layer",
                "route_layer_table",
                "handler_route_layer",
                "handler_handle_only",
                "handler_permit_only",
            ]
            .into_iter()
            .map(|name| (name, CircuitBreaker::new(name)))
            .collect(),
        )
    }

    fn get(&self, name: &str) -> CircuitBreaker {
        self.0
            .iter()
            .find(|(route, _)| *route == name)
            .map(|(_, breaker)| breaker.clone())
            .expect("a breaker per guarded route")
    }
}

/// The method router of the route called `name`: the handler and what wraps it.
fn method_router(name: &str, breakers: &Breakers) -> MethodRouter {
    // The plain layer as axum's docs stack it: `HandleErrorLayer` turns its `BoxError` back into
    // a response.
    let plain = |name: &str| {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(error_to_response))
            .layer(
                CircuitBreakerLayer::new(breakers.get(name)).classify_with(HttpClassifier::new()),
            )
    };
    let plain_static = |name: &str| {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(error_to_response))
            .layer(
                CircuitBreakerLayer::new(breakers.get(name)).classify_with(DefaultHttpClassifier),
            )
    };
    let adapter = |name: &str| {
        ServiceBuilder::new().layer(ErrorResponseLayer).layer(
            CircuitBreakerLayer::new(breakers.get(name)).classify_with(DefaultHttpClassifier),
        )
    };
    match name {
        "bare" => get(ok),
        "bare2" => get(ok),
        "identity" => get(ok).layer(Identity::new()),
        "handler_identity" => get(ok.layer(Identity::new())),
        "boxed" => {
            get(ok).layer(BoxCloneSyncService::<Request<Body>, Response, Infallible>::layer())
        }
        "handle_error" => get(ok).layer(HandleErrorLayer::new(never)),
        "layer_default" => get(ok).layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(error_to_response))
                .layer(CircuitBreakerLayer::new(breakers.get("layer_default"))),
        ),
        "layer" => get(ok).layer(plain("layer")),
        "layer_static" => get(ok).layer(plain_static("layer_static")),
        "handler_layer" => get(ok.layer(plain("handler_layer"))),
        "handler_layer_static" => get(ok.layer(plain_static("handler_layer_static"))),
        "adapter_layer" => get(ok).layer(adapter("adapter_layer")),
        "handler_adapter_layer" => get(ok.layer(adapter("handler_adapter_layer"))),
        "route_layer" => {
            get(ok).route_layer(CircuitBreakerRouteLayer::new(breakers.get("route_layer")))
        }
        "route_layer_table" => get(ok).route_layer(
            CircuitBreakerRouteLayer::new(breakers.get("route_layer_table"))
                .classify_with(HttpClassifier::new()),
        ),
        "handler_handle_only" => {
            get(ok.layer(HandleOnlyLayer(breakers.get("handler_handle_only"))))
        }
        "handler_permit_only" => {
            get(ok.layer(PermitOnlyLayer(breakers.get("handler_permit_only"))))
        }
        "handler_route_layer" => get(ok.layer(CircuitBreakerRouteLayer::new(
            breakers.get("handler_route_layer"),
        ))),
        other => panic!("no route called {other}"),
    }
}

/// One router per route, each with that route alone at `/`, so that every route is found at the
/// same cost.
fn routers(names: &[&'static str], breakers: &Breakers) -> Vec<Router> {
    names
        .iter()
        .map(|name| Router::new().route("/", method_router(name, breakers)))
        .collect()
}

// ===== prototype: an error-to-response adapter without HandleErrorLayer's clone and box =====

/// Turns a `Service<Error = BoxError>` into an axum route service (`Error = Infallible`) the
/// way `HandleErrorLayer` does, but without cloning the inner service and boxing a future per
/// request: readiness is driven in `poll_ready` (an error there is kept and answered by `call`),
/// and the inner future's error is mapped to a response in place.
#[derive(Debug, Clone, Copy)]
struct ErrorResponseLayer;

impl<S> tower::Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse {
            inner,
            failed: None,
        }
    }
}

#[derive(Debug)]
struct ErrorResponse<S> {
    inner: S,
    /// An error `poll_ready` met, for `call` to answer.
    failed: Option<BoxError>,
}

impl<S: Clone> Clone for ErrorResponse<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            failed: None,
        }
    }
}

fn error_response(err: &BoxError) -> Response {
    rejection_response(err)
        .unwrap_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response())
}

impl<S, R> Service<R> for ErrorResponse<S>
where
    S: Service<R, Error = BoxError>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.failed.is_none() {
            if let Err(err) = std::task::ready!(self.inner.poll_ready(cx)) {
                self.failed = Some(err);
            }
        }
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        match self.failed.take() {
            None => ErrorResponseFuture::Inner {
                future: self.inner.call(request),
            },
            Some(err) => ErrorResponseFuture::Failed {
                response: Some(error_response(&err)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = ErrorResponseFutureProj]
    enum ErrorResponseFuture<F> {
        Inner { #[pin] future: F },
        Failed { response: Option<Response> },
    }
}

impl<F, T> Future for ErrorResponseFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
    T: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ErrorResponseFutureProj::Inner { future } => {
                Poll::Ready(Ok(match std::task::ready!(future.poll(cx)) {
                    Ok(response) => response.into_response(),
                    Err(err) => error_response(&err),
                }))
            }
            ErrorResponseFutureProj::Failed { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

// ===== prototypes that take the route layer's cost apart =====

/// A layer that holds a breaker handle and does nothing else: what any layer with shared state
/// costs on an axum route (the handle is cloned with every service, and axum clones the route's
/// service for every request).
#[derive(Debug, Clone)]
struct HandleOnlyLayer(CircuitBreaker);

impl<S> tower::Layer<S> for HandleOnlyLayer {
    type Service = HandleOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HandleOnly {
            inner,
            _breaker: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct HandleOnly<S> {
    inner: S,
    _breaker: CircuitBreaker,
}

impl<S: Service<R>, R> Service<R> for HandleOnly<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

/// The engine's permit path alone: a permit per request, recorded as a success when the
/// response is ready; no classification, no rejection handling.
#[derive(Debug, Clone)]
struct PermitOnlyLayer(CircuitBreaker);

impl<S> tower::Layer<S> for PermitOnlyLayer {
    type Service = PermitOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PermitOnly {
            inner,
            breaker: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct PermitOnly<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S: Service<R>, R> Service<R> for PermitOnly<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = PermitOnlyFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        PermitOnlyFuture {
            permit: self.breaker.try_acquire_owned().ok(),
            future: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    struct PermitOnlyFuture<F> {
        #[pin]
        future: F,
        permit: Option<tower_circuit_breaker::OwnedPermit>,
    }
}

impl<F: Future> Future for PermitOnlyFuture<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        if let Some(permit) = this.permit.take() {
            permit.success();
        }
        Poll::Ready(output)
    }
}

// ===== the server =====

/// Which route `/switch` goes to, and how many requests each route served through it.
#[derive(Debug)]
struct Switch {
    current: AtomicUsize,
    /// Every route's name, by index.
    names: Vec<&'static str>,
    served: Vec<AtomicU64>,
}

impl Switch {
    fn new(names: &[&'static str]) -> Self {
        Self {
            current: AtomicUsize::new(0),
            names: names.to_vec(),
            served: names.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn set(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    fn served(&self, index: usize) -> u64 {
        self.served[index].load(Ordering::Relaxed)
    }
}

/// The server's front service: `/switch` goes to the route [`Switch`] names, and is counted;
/// `/<name>` goes to that route; anything else to an empty router (404). Each route is a router
/// of its own, with the route at `/`.
#[derive(Debug, Clone)]
struct Front {
    routers: Vec<Router>,
    not_found: Router,
    switch: Arc<Switch>,
}

impl Service<Request<Body>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let index = if path == "/switch" {
            let index = self.switch.current.load(Ordering::Relaxed);
            self.switch.served[index].fetch_add(1, Ordering::Relaxed);
            Some(index)
        } else {
            let name = path.strip_prefix('/').unwrap_or(path);
            self.switch.names.iter().position(|route| *route == name)
        };
        *request.uri_mut() = Uri::from_static("/");
        let router = match index {
            Some(index) => &mut self.routers[index],
            None => &mut self.not_found,
        };
        <Router as Service<Request<Body>>>::call(router, request)
    }
}

/// `axum::serve`'s make-service: every connection gets a clone of the front.
impl<L: axum::serve::Listener> Service<axum::serve::IncomingStream<'_, L>> for Front {
    type Response = Self;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}

/// The server, on its own thread and runtime.
struct Server {
    addr: SocketAddr,
    switch: Arc<Switch>,
    /// `/proc/<pid>/task/<tid>/schedstat` of the server thread, where readable.
    schedstat: Option<PathBuf>,
    shutdown: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(breakers: &Breakers, names: &[&'static str]) -> Self {
        let switch = Arc::new(Switch::new(names));
        let front = Front {
            routers: routers(names, breakers),
            not_found: Router::new(),
            switch: Arc::clone(&switch),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wrk-bench-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1");
                    let addr = listener.local_addr().expect("local addr");
                    tokio::spawn(async move {
                        axum::serve(listener, front).await.expect("serve");
                    });
                    ready_tx
                        .send((addr, thread_schedstat()))
                        .expect("main thread waits");
                    // Until the main thread is done; dropping the runtime then ends the server.
                    let _ = shutdown_rx.await;
                });
            })
            .expect("spawn server thread");
        let (addr, schedstat) = ready_rx.recv().expect("server started");
        Self {
            addr,
            switch,
            schedstat,
            shutdown,
            thread,
        }
    }

    fn stop(self) {
        let _ = self.shutdown.send(());
        self.thread.join().expect("server thread");
    }
}

// ===== /proc readings =====

/// The calling thread's `schedstat` path, if the kernel exposes it.
fn thread_schedstat() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    let path = Path::new("/proc").join(link).join("schedstat");
    read_cpu_ns(Some(&path)).map(|_| path)
}

/// The thread id in a `/proc/<pid>/task/<tid>/schedstat` path.
fn tid_of(schedstat: &Path) -> Option<&str> {
    schedstat.parent()?.file_name()?.to_str()
}

/// Pins thread `tid` to `cpu` with `taskset` (util-linux); whether it worked.
fn pin(tid: &str, cpu: usize) -> bool {
    Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), tid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// CPU time (ns) a thread has run, from its `schedstat`.
fn read_cpu_ns(path: Option<&Path>) -> Option<u64> {
    let text = std::fs::read_to_string(path?).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// `(busy, total)` CPU ticks of the whole machine, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// CPU ticks (user + system) of process `pid` (`self` for this one), from `/proc/<pid>/stat`.
fn process_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's and the processes' CPU at one instant, to tell how much others used.
#[derive(Debug, Clone, Copy)]
struct Machine {
    ticks: Option<(u64, u64)>,
    ours: Option<u64>,
    wrk: Option<u64>,
}

impl Machine {
    fn now(wrk_pid: u32) -> Self {
        Self {
            ticks: machine_ticks(),
            ours: process_ticks("self"),
            wrk: process_ticks(&wrk_pid.to_string()),
        }
    }

    /// Share of the machine's CPU used by neither this process nor wrk since `earlier`, in
    /// percent.
    fn other_pct_since(&self, earlier: &Self) -> Option<f64> {
        let ((busy0, total0), (busy1, total1)) = (earlier.ticks?, self.ticks?);
        let ours = self.ours?.checked_sub(earlier.ours?)?;
        let wrk = self.wrk?.checked_sub(earlier.wrk?)?;
        let total = total1.checked_sub(total0)?;
        let others = busy1.checked_sub(busy0)?.saturating_sub(ours + wrk);
        (total > 0).then(|| others as f64 * 100.0 / total as f64)
    }
}

// ===== wrk =====

/// Whether `wrk` can be run.
fn wrk_installed() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Starts `wrk` against `path` for `duration`.
fn start_wrk(addr: SocketAddr, path: &str, duration: Duration, connections: usize) -> Child {
    Command::new("wrk")
        .args([
            "-t1".to_owned(),
            format!("-c{connections}"),
            format!("-d{}s", duration.as_secs()),
            "--timeout".to_owned(),
            "5s".to_owned(),
            format!("http://{addr}{path}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wrk")
}

/// Waits for wrk, checks that every response was a 2xx, and returns its requests per second.
fn finish_wrk(child: Child) -> f64 {
    let output = child.wait_with_output().expect("wrk runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("Non-2xx") && !stdout.contains("Socket errors"),
        "wrk saw errors:\n{stdout}"
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{stdout}"))
}

/// What one route did over its windows of one run.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    requests: u64,
    time: Duration,
    /// The server thread's CPU over those windows; `None` where it cannot be read.
    cpu_ns: Option<u64>,
}

impl Side {
    /// Requests per second.
    fn rate(&self) -> f64 {
        self.requests as f64 / self.time.as_secs_f64()
    }

    /// The server thread's share of the time, in percent.
    fn cpu_pct(&self) -> Option<f64> {
        Some(self.cpu_ns? as f64 * 100.0 / self.time.as_nanos() as f64)
    }

    /// The server thread's CPU per request, ns.
    fn cpu_ns_per_request(&self) -> Option<f64> {
        (self.requests > 0).then_some(self.cpu_ns? as f64 / self.requests as f64)
    }
}

/// One wrk run of a variant against `/bare`.
#[derive(Debug, Clone, Copy)]
struct Run {
    bare: Side,
    variant: Side,
    other_pct: Option<f64>,
    /// wrk's own figure for the whole run, both routes and the settling included.
    wrk_rps: f64,
    /// How many disturbed runs were thrown away before this one.
    retries: usize,
}

impl Run {
    fn ratio(&self) -> f64 {
        self.variant.rate() / self.bare.rate()
    }

    /// Nanoseconds per request the variant adds, at saturation.
    fn ns_added(&self) -> f64 {
        1e9 / self.variant.rate() - 1e9 / self.bare.rate()
    }

    /// The server thread's CPU per request, variant minus bare.
    fn cpu_ns_added(&self) -> Option<f64> {
        Some(self.variant.cpu_ns_per_request()? - self.bare.cpu_ns_per_request()?)
    }

    /// Others took more than [`MAX_OTHER_PCT`] of the machine, or the server was not saturated.
    fn disturbed(&self) -> bool {
        let busy = Side {
            requests: 0,
            time: self.bare.time + self.variant.time,
            cpu_ns: self
                .bare
                .cpu_ns
                .and_then(|bare| Some(bare + self.variant.cpu_ns?)),
        };
        self.other_pct.is_some_and(|pct| pct > MAX_OTHER_PCT)
            || busy.cpu_pct().is_some_and(|pct| pct < MIN_SERVER_PCT)
    }
}

/// One wrk run against `/switch`, alternating `bare` and `variant` (route indexes) in windows.
fn run_pair(
    server: &Server,
    bare: usize,
    variant: usize,
    settings: &Settings,
    variant_first: bool,
) -> Run {
    const SETTLE: Duration = Duration::from_millis(500);
    const TAIL: Duration = Duration::from_millis(300);
    let switch = &server.switch;
    let cpu = server.schedstat.as_deref();
    let order = if variant_first {
        [variant, bare]
    } else {
        [bare, variant]
    };
    switch.set(order[0]);
    let child = start_wrk(server.addr, "/switch", settings.slice, settings.connections);
    let pid = child.id();
    std::thread::sleep(SETTLE);

    let measured = settings.slice.saturating_sub(SETTLE + TAIL);
    let windows = usize::try_from(measured.as_nanos() / settings.window.as_nanos())
        .unwrap_or(2)
        .max(2)
        / 2
        * 2;
    let machine_before = Machine::now(pid);
    let mut at = Instant::now();
    let mut cpu_at = read_cpu_ns(cpu);
    let side = Side {
        cpu_ns: cpu_at.map(|_| 0),
        ..Side::default()
    };
    let mut sides = [side; 2];
    for window in 0..windows {
        let route = order[window % 2];
        // Read before the switch: until then the counter of `route` does not move.
        let served_before = switch.served(route);
        switch.set(route);
        std::thread::sleep(settings.window);
        let (now, cpu_now) = (Instant::now(), read_cpu_ns(cpu));
        let side = &mut sides[usize::from(route == variant)];
        side.requests += switch.served(route) - served_before;
        side.time += now - at;
        let cpu_spent = cpu_at.zip(cpu_now).map(|(before, after)| after - before);
        side.cpu_ns = side.cpu_ns.zip(cpu_spent).map(|(sum, spent)| sum + spent);
        (at, cpu_at) = (now, cpu_now);
    }
    let machine_after = Machine::now(pid);
    let wrk_rps = finish_wrk(child);
    Run {
        bare: sides[0],
        variant: sides[1],
        other_pct: machine_after.other_pct_since(&machine_before),
        wrk_rps,
        retries: 0,
    }
}

// ===== statistics =====

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| !value.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The lower and upper quartiles (nearest rank).
fn quartiles(mut values: Vec<f64>) -> (f64, f64) {
    values.retain(|value| !value.is_nan());
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// A JSON number, or `null` when not finite.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        "null".to_owned()
    }
}

fn json_path() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the workspace")
        .to_path_buf();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    dir.join("http-wrk-bench.json")
}

// ===== in process =====

/// A GET for `/`, where each router has its route.
fn request() -> Request<Body> {
    Request::get("/").body(Body::empty()).expect("request")
}

/// Calls the router once and polls the response to the end of its head; every route here is
/// ready at once.
#[inline(always)]
fn call_once(router: &mut Router, request: Request<Body>) -> Response {
    let mut context = Context::from_waker(Waker::noop());
    let future = <Router as Service<Request<Body>>>::call(router, request);
    match pin!(future).poll(&mut context) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(err)) => match err {},
        Poll::Pending => unreachable!("the handlers never wait"),
    }
}

/// Times `iterations` requests to `router`, with requests built beforehand; ns per request.
fn time_in_process(router: &mut Router, iterations: usize) -> f64 {
    let requests: Vec<Request<Body>> = (0..iterations).map(|_| request()).collect();
    let start = Instant::now();
    for request in requests {
        let response = call_once(router, request);
        debug_assert_eq!(response.status(), StatusCode::OK);
        black_box(response);
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Every route in process: `rounds` rounds, each timing every route once, in rotating order.
fn measure_in_process(names: &[&'static str], rounds: usize, iterations: usize) -> Vec<f64> {
    let mut routers = routers(names, &Breakers::new());
    for router in &mut routers {
        time_in_process(router, iterations);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); names.len()];
    for round in 0..rounds {
        for offset in 0..names.len() {
            let index = (round + offset) % names.len();
            times[index].push(time_in_process(&mut routers[index], iterations));
        }
    }
    times.into_iter().map(median).collect()
}

// ===== smoke =====

/// One `GET <path>` over a fresh connection; the status line and the body.
fn get_over_tcp(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Every route answers, directly and through `/switch`, over loopback and in process.
fn smoke() {
    let names = route_names(VARIANTS);
    let breakers = Breakers::new();
    let server = Server::start(&breakers, &names);
    let mut in_process = routers(&names, &Breakers::new());
    for (index, name) in names.iter().enumerate() {
        let answer = get_over_tcp(server.addr, &format!("/{name}"));
        assert_eq!(
            (answer.0.as_str(), answer.1.as_str()),
            ("HTTP/1.1 200 OK", "ok"),
            "/{name}"
        );
        server.switch.set(index);
        assert_eq!(
            get_over_tcp(server.addr, "/switch").1,
            "ok",
            "/switch to /{name}"
        );
        assert_eq!(server.switch.served(index), 1, "/switch to /{name} counted");
        let response = call_once(&mut in_process[index], request());
        assert_eq!(response.status(), StatusCode::OK, "/{name} in process");
    }
    for (name, breaker) in &breakers.0 {
        // The handle-only prototype never asks its breaker.
        let expected = if *name == "handler_handle_only" { 0 } else { 2 };
        assert_eq!(
            breaker.metrics().successful_calls,
            expected,
            "/{name}'s breaker"
        );
    }
    server.stop();
    println!(
        "http_wrk smoke: every route answers 200 over loopback, directly and through /switch, \
         and in process{}",
        if wrk_installed() {
            ""
        } else {
            " (wrk is not installed: `cargo bench` will skip the load runs)"
        }
    );
}

// ===== main =====

/// `bare` and then every variant's route name.
fn route_names(variants: &[Variant]) -> Vec<&'static str> {
    std::iter::once("bare")
        .chain(variants.iter().map(|variant| variant.name))
        .collect()
}

/// One variant's runs.
#[derive(Debug, Clone)]
struct Results {
    variant: Variant,
    /// Its index among the server's routes.
    route: usize,
    runs: Vec<Run>,
}

impl Results {
    fn each(&self, field: impl Fn(&Run) -> Option<f64>) -> Vec<f64> {
        self.runs
            .iter()
            .map(|run| field(run).unwrap_or(f64::NAN))
            .collect()
    }

    fn median(&self, field: impl Fn(&Run) -> Option<f64>) -> f64 {
        median(self.each(field))
    }
}

/// Pins the server thread to CPU 0 and this thread (and so every wrk it starts) to CPU 1.
fn pin_threads(server: &Server) -> bool {
    std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() >= 2)
        && server
            .schedstat
            .as_deref()
            .and_then(tid_of)
            .is_some_and(|tid| pin(tid, 0))
        && thread_schedstat()
            .as_deref()
            .and_then(tid_of)
            .is_some_and(|tid| pin(tid, 1))
}

/// Prints the in-process table; returns ns per request by route.
fn report_in_process(settings: &Settings, names: &[&'static str]) -> Vec<f64> {
    let in_process = measure_in_process(
        names,
        settings.in_process_rounds,
        settings.in_process_iterations,
    );
    println!();
    println!(
        "in process (Router::call + one poll, no sockets; median of {} rounds of {} requests):",
        settings.in_process_rounds, settings.in_process_iterations
    );
    println!("{:<22} {:>8} {:>9}", "route", "ns/req", "+ns");
    for (name, ns) in names.iter().zip(&in_process) {
        println!("{:<22} {:>8.1} {:>+9.1}", name, ns, ns - in_process[0]);
    }
    in_process
}

/// Serves every route until Enter is pressed.
fn serve_by_hand(names: &[&'static str]) {
    let server = Server::start(&Breakers::new(), names);
    println!(
        "serving every route on http://{} (server thread {}); `/switch` goes to /bare; press \
         Enter to stop",
        server.addr,
        server
            .schedstat
            .as_deref()
            .and_then(tid_of)
            .unwrap_or("unknown"),
    );
    let _ = std::io::stdin().read_line(&mut String::new());
    server.stop();
}

/// Runs every variant against `/bare`, `settings.pairs` rounds, redoing disturbed runs.
fn measure(settings: &Settings, server: &Server, names: &[&'static str]) -> Vec<Results> {
    let mut results: Vec<Results> = settings
        .variants
        .iter()
        .map(|&variant| Results {
            variant,
            route: names
                .iter()
                .position(|name| *name == variant.name)
                .expect("every variant has a route"),
            runs: Vec::with_capacity(settings.pairs),
        })
        .collect();
    println!();
    println!(
        "{:>5} {:<22} {:>9} {:>9} {:>7} {:>6} {:>6} {:>7} {:>9}",
        "round", "route", "bare r/s", "r/s", "ratio", "srv %", "srv %", "other %", "retried"
    );
    let count = results.len();
    for round in 0..settings.pairs {
        for offset in 0..count {
            let index = (round + offset) % count;
            let variant_first = (round + offset) % 2 == 1;
            let route = results[index].route;
            let mut run = run_pair(server, 0, route, settings, variant_first);
            while run.disturbed() && run.retries < RETRIES {
                let retries = run.retries + 1;
                run = run_pair(server, 0, route, settings, variant_first);
                run.retries = retries;
            }
            let fmt =
                |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
            println!(
                "{:>5} {:<22} {:>9.0} {:>9.0} {:>7.3} {:>6} {:>6} {:>7} {:>9}",
                round + 1,
                results[index].variant.name,
                run.bare.rate(),
                run.variant.rate(),
                run.ratio(),
                fmt(run.bare.cpu_pct()),
                fmt(run.variant.cpu_pct()),
                fmt(run.other_pct),
                match (run.retries, run.disturbed()) {
                    (0, _) => String::new(),
                    (retries, false) => format!("{retries}x"),
                    (retries, true) => format!("{retries}x, still"),
                },
            );
            results[index].runs.push(run);
        }
    }
    results
}

#[allow(clippy::too_many_lines)]
fn main() {
    let settings = Settings::from_env();
    if settings.smoke {
        smoke();
        return;
    }
    let names = route_names(&settings.variants);
    if settings.serve_only {
        serve_by_hand(&names);
        return;
    }
    if settings.in_process_only {
        report_in_process(&settings, &names);
        return;
    }
    if !wrk_installed() {
        println!("http_wrk: wrk is not installed (Debian: apt-get install wrk); skipping");
        return;
    }
    println!(
        "http_wrk: wrk -t1 -c{} -d{}s against one axum server (current-thread runtime, one OS \
         thread) on 127.0.0.1; {} rounds; in each run /bare and one variant alternate every {} ms",
        settings.connections,
        settings.slice.as_secs(),
        settings.pairs,
        settings.window.as_millis(),
    );
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|model| model.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "CPU: {cpu_model}, {} CPUs; load before the run: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load_before.trim()
    );
    let in_process = settings
        .in_process
        .then(|| report_in_process(&settings, &names));

    let breakers = Breakers::new();
    let server = Server::start(&breakers, &names);
    if server.schedstat.is_none() {
        println!("(no /proc/thread-self/schedstat: the saturation check is skipped)");
    }
    let pinned = settings.pin && pin_threads(&server);
    println!(
        "{}",
        if pinned {
            "pinned: server thread on CPU 0, this thread and wrk on CPU 1"
        } else {
            "not pinned (WRK_BENCH_PIN=0, one CPU, or no taskset)"
        }
    );
    // Warm-up: every route once.
    for route in 0..names.len() {
        server.switch.set(route);
        finish_wrk(start_wrk(
            server.addr,
            "/switch",
            Duration::from_secs(1),
            settings.connections,
        ));
    }
    let results = measure(&settings, &server, &names);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Every guarded request went through its breaker, and none was rejected.
    for (name, breaker) in &breakers.0 {
        let metrics = breaker.metrics();
        assert_eq!(breaker.state(), CircuitState::Closed, "/{name}'s breaker");
        assert_eq!(metrics.total_calls, metrics.successful_calls, "/{name}");
        if names.contains(name) && *name != "handler_handle_only" {
            assert!(
                metrics.total_calls > 0,
                "/{name}'s breaker saw its requests"
            );
        }
    }
    server.stop();

    let all_runs: Vec<&Run> = results.iter().flat_map(|results| &results.runs).collect();
    let over_bare = |field: fn(&Side) -> Option<f64>| {
        median(
            all_runs
                .iter()
                .map(|run| field(&run.bare).unwrap_or(f64::NAN))
                .collect(),
        )
    };
    let bare_rate = over_bare(|side| Some(side.rate()));
    let bare_pct = over_bare(Side::cpu_pct);
    let bare_ns = over_bare(Side::cpu_ns_per_request);
    let others: Vec<f64> = all_runs.iter().filter_map(|run| run.other_pct).collect();
    let mean_other = others.iter().sum::<f64>() / others.len().max(1) as f64;
    let max_other = others.iter().copied().fold(f64::NAN, f64::max);
    let retried = all_runs.iter().map(|run| run.retries).sum::<usize>();
    let still_disturbed = all_runs.iter().filter(|run| run.disturbed()).count();
    let wrk_rps = median(all_runs.iter().map(|run| run.wrk_rps).collect());

    println!();
    println!(
        "{:<22} {:>8} {:>7} {:>13} {:>7} {:>6} {:>7} {:>7}  what",
        "route", "r/s", "ratio", "quartiles", "+ns/req", "srv %", "srv ns", "+srv ns"
    );
    println!(
        "{:<22} {:>8.0} {:>7} {:>13} {:>7} {:>6.1} {:>7.0} {:>7}  the handler alone",
        "bare", bare_rate, "1", "", "", bare_pct, bare_ns, ""
    );
    let mut json_variants = Vec::new();
    for results in &results {
        let ratio = results.median(|run| Some(run.ratio()));
        let (q1, q3) = quartiles(results.each(|run| Some(run.ratio())));
        let ns_added = results.median(|run| Some(run.ns_added()));
        let rate = results.median(|run| Some(run.variant.rate()));
        let server_pct = results.median(|run| run.variant.cpu_pct());
        let server_ns = results.median(|run| run.variant.cpu_ns_per_request());
        let server_ns_added = results.median(Run::cpu_ns_added);
        println!(
            "{:<22} {:>8.0} {:>7.3} {:>6.3}..{:<5.3} {:>+7.0} {:>6.1} {:>7.0} {:>+7.0}  {}",
            results.variant.name,
            rate,
            ratio,
            q1,
            q3,
            ns_added,
            server_pct,
            server_ns,
            server_ns_added,
            results.variant.what,
        );
        json_variants.push(format!(
            "    {{\"route\": \"{}\", \"rps\": {}, \"ratio\": {}, \"ratio_q1\": {}, \
             \"ratio_q3\": {}, \"ns_added\": {}, \"server_cpu_pct\": {}, \
             \"server_ns_per_request\": {}, \"server_ns_added\": {}, \"ratios\": [{}]}}",
            results.variant.name,
            json_number(rate),
            json_number(ratio),
            json_number(q1),
            json_number(q3),
            json_number(ns_added),
            json_number(server_pct),
            json_number(server_ns),
            json_number(server_ns_added),
            results
                .each(|run| Some(run.ratio()))
                .iter()
                .map(|ratio| json_number(*ratio))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    println!();
    for results in &results {
        if TARGET_VARIANTS.contains(&results.variant.name) {
            let ratio = results.median(|run| Some(run.ratio()));
            println!(
                "/{}: {ratio:.3}x /bare (target >= {TARGET_RATIO}: {})",
                results.variant.name,
                if ratio >= TARGET_RATIO {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    println!("wrk's own figure (both routes, settling included): median {wrk_rps:.0} requests/s");
    let clean = still_disturbed == 0;
    let load = format!(
        "other processes used {mean_other:.1}% of the machine's CPU on average over the runs, \
         {max_other:.1}% at most in one; {retried} disturbed runs were done again; load after \
         the run: {}",
        load_after.trim()
    );
    if clean {
        println!("clean: {load}");
    } else {
        println!(
            "NOT CLEAN: {still_disturbed} runs stayed disturbed after {RETRIES} retries; {load}"
        );
    }

    let mut json = String::new();
    let _ = writeln!(json, "{{");
    let _ = writeln!(json, "  \"cpu\": \"{cpu_model}\",");
    let _ = writeln!(json, "  \"pairs\": {},", settings.pairs);
    let _ = writeln!(json, "  \"slice_s\": {},", settings.slice.as_secs());
    let _ = writeln!(json, "  \"window_ms\": {},", settings.window.as_millis());
    let _ = writeln!(json, "  \"connections\": {},", settings.connections);
    let _ = writeln!(json, "  \"pinned\": {pinned},");
    let _ = writeln!(json, "  \"bare_rps\": {},", json_number(bare_rate));
    let _ = writeln!(
        json,
        "  \"bare_server_cpu_pct\": {},",
        json_number(bare_pct)
    );
    let _ = writeln!(
        json,
        "  \"bare_server_ns_per_request\": {},",
        json_number(bare_ns)
    );
    let _ = writeln!(json, "  \"wrk_rps\": {},", json_number(wrk_rps));
    let _ = writeln!(
        json,
        "  \"mean_other_cpu_pct\": {},",
        json_number(mean_other)
    );
    let _ = writeln!(json, "  \"max_other_cpu_pct\": {},", json_number(max_other));
    let _ = writeln!(json, "  \"retried_runs\": {retried},");
    let _ = writeln!(json, "  \"clean\": {clean},");
    if let Some(in_process) = &in_process {
        let rows: Vec<String> = names
            .iter()
            .zip(in_process)
            .map(|(name, ns)| {
                format!(
                    "    {{\"route\": \"{name}\", \"ns_per_request\": {}}}",
                    json_number(*ns)
                )
            })
            .collect();
        let _ = writeln!(json, "  \"in_process\": [\n{}\n  ],", rows.join(",\n"));
    }
    let _ = writeln!(
        json,
        "  \"variants\": [\n{}\n  ]",
        json_variants.join(",\n")
    );
    let _ = writeln!(json, "}}");
    let path = json_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, json) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }
}
