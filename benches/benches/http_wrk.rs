//! HTTP overhead of the breaker layers on an axum route, with the server driven to saturation
//! by `wrk`: requests per second of each variant against `/bare`, in interleaved slices.
//!
//! Run with `cargo bench -p benches --bench http_wrk` (about 9 minutes with the defaults). It
//! needs `wrk` on the `PATH` (Debian: `apt-get install wrk`); without it, it says so and exits
//! successfully. Under `cargo test` (no `--bench` argument) it runs a smoke pass instead: every
//! route answers once over loopback and once in process, and nothing is timed.
//!
//! # Why wrk
//!
//! The `http` bench's load generator is a tokio client on the other core; it needs about as much
//! CPU per request as the server does, so the server idles part of the time and a layer's cost
//! hides in that slack (it reported 1.010 with/without). `wrk` (C, epoll, one thread) needs far
//! less per request, so the single server thread runs at 100 % and every nanosecond it spends
//! per request shows in the request rate. The bench checks that it does (see *Saturation*).
//!
//! # Setup
//!
//! - **Server**: one axum 0.8 `Router` served by `axum::serve` on `127.0.0.1:0`, from a
//!   current-thread tokio runtime on a dedicated OS thread: one core's worth of server. Every
//!   handler is `async fn ok() -> &'static str { "ok" }`; the routes differ only in what wraps it
//!   (see [`VARIANTS`]). Every breaker stays closed (checked at the end).
//! - **Load**: `wrk -t1 -c32 -d3s http://127.0.0.1:<port>/<route>`, one process at a time.
//! - **Slices**: after a discarded 1 s warm-up of every route, `PAIRS` rounds (default 10). In
//!   each round every variant runs once as a pair with `/bare`, in alternating order (bare first
//!   in one round, second in the next), so drift and order effects cancel. The variants' order
//!   within a round rotates from round to round.
//! - **Figures** per variant: the median of its slices' requests per second, the median over
//!   pairs of `rps(variant) / rps(bare)` (the headline, with quartiles), and the median over pairs
//!   of `1e9/rps(variant) - 1e9/rps(bare)`: the nanoseconds per request the variant adds at
//!   saturation. `/bare2` is a second copy of `/bare`, the A/A control: its ratio is the noise
//!   floor.
//! - **Saturation**: the server thread's CPU time (from `/proc/thread-self/schedstat`) is sampled
//!   over the middle of each slice (a sixth of the slice is left out at each end, where wrk
//!   connects and stops); `srv CPU %` is the median of that over the variant's slices, and should
//!   read 99-100 %. `srv ns/req` is the server thread's CPU over the whole slice divided by the
//!   requests wrk counted. `other %` is the share of the machine's CPU that neither this process
//!   nor wrk used in the middle window (from `/proc/stat`): above 3 % on average the run is
//!   flagged as not clean.
//! - **In process**: before the wrk rounds, the same `Router` is called in process (`call` and one
//!   poll with a no-op waker, no sockets), interleaved in rounds, to give the nanoseconds each variant adds
//!   per request without HTTP around it. This is where the cost is
//!   taken apart; the wrk figures say what is left of it end to end.
//!
//! Environment overrides: `WRK_BENCH_PAIRS`, `WRK_BENCH_SLICE_S`, `WRK_BENCH_CONNECTIONS`,
//! `WRK_BENCH_VARIANTS` (a comma-separated list of route names, e.g. `layer,route_layer`; `bare`
//! always runs), `WRK_BENCH_SKIP_IN_PROCESS=1`, `WRK_BENCH_IN_PROCESS_ONLY=1` (the in-process
//! table alone, a few seconds; it needs no wrk), `WRK_BENCH_IN_PROCESS_ROUNDS` (31) and
//! `WRK_BENCH_IN_PROCESS_ITERATIONS` (20000).
//!
//! Output: a table on stdout and `http-wrk-bench.json` in `$CARGO_TARGET_DIR` (relative to the
//! workspace root), or in the workspace's `target/`.
//!
//! Target: the plain layer (`/layer`) and the route layer (`/route_layer`) each >= 0.98x `/bare`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

/// The target for `rps(variant) / rps(bare)` of the two breaker layers.
const TARGET_RATIO: f64 = 0.98;

/// Above this share of the machine's CPU used by others, on average, a run is not clean.
const MAX_CLEAN_OTHER_PCT: f64 = 3.0;

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
        what: "MethodRouter::layer(Identity): axum's own cost of a layered route",
    },
    Variant {
        name: "boxed",
        what: "layer(BoxCloneSyncService::layer()): one more boxed service",
    },
    Variant {
        name: "handle_error",
        what: "HandleErrorLayer alone (over the infallible route)",
    },
    Variant {
        name: "layer_default",
        what: "HandleErrorLayer + CircuitBreakerLayer, DefaultClassifier",
    },
    Variant {
        name: "layer",
        what: "HandleErrorLayer + CircuitBreakerLayer + HttpClassifier",
    },
    Variant {
        name: "layer_static",
        what: "the same, classify_with(DefaultHttpClassifier): no 240-byte table per call",
    },
    Variant {
        name: "route_layer",
        what: "CircuitBreakerRouteLayer (tower-circuit-breaker-axum)",
    },
    Variant {
        name: "route_layer_table",
        what: "CircuitBreakerRouteLayer, classify_with(HttpClassifier::new()): 240 B per request",
    },
    Variant {
        name: "handler_identity",
        what: "Handler::layer(Identity): a layer on the handler, no extra boxed route",
    },
    Variant {
        name: "handler_layer",
        what: "Handler::layer(HandleErrorLayer + CircuitBreakerLayer + HttpClassifier)",
    },
    Variant {
        name: "handler_route_layer",
        what: "Handler::layer(CircuitBreakerRouteLayer)",
    },
];

// ===== settings =====

/// How a run is sized.
#[derive(Debug, Clone)]
struct Settings {
    smoke: bool,
    pairs: usize,
    slice: Duration,
    connections: usize,
    variants: Vec<Variant>,
    in_process: bool,
    in_process_only: bool,
    pin: bool,
    serve_only: bool,
    in_process_rounds: usize,
    in_process_iterations: usize,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let smoke = !std::env::args().any(|arg| arg == "--bench");
        let var = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
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
            pairs: usize::try_from(var("WRK_BENCH_PAIRS", 10).max(1)).unwrap(),
            slice: Duration::from_secs(var("WRK_BENCH_SLICE_S", 3).max(1)),
            connections: usize::try_from(var("WRK_BENCH_CONNECTIONS", 32).max(1)).unwrap(),
            variants,
            in_process: std::env::var("WRK_BENCH_SKIP_IN_PROCESS").map_or(true, |v| v != "1"),
            in_process_only: std::env::var("WRK_BENCH_IN_PROCESS_ONLY").is_ok_and(|v| v == "1"),
            pin: std::env::var("WRK_BENCH_PIN").map_or(true, |v| v != "0"),
            serve_only: std::env::var("WRK_BENCH_SERVE_ONLY").is_ok_and(|v| v == "1"),
            in_process_rounds: usize::try_from(var("WRK_BENCH_IN_PROCESS_ROUNDS", 31).max(1))
                .unwrap(),
            in_process_iterations: usize::try_from(
                var("WRK_BENCH_IN_PROCESS_ITERATIONS", 20_000).max(1),
            )
            .unwrap(),
        }
    }
}

// ===== the server =====

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
                "route_layer",
                "route_layer_table",
                "handler_layer",
                "handler_route_layer",
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

/// Every variant's route, and `/bare`.
fn app(breakers: &Breakers) -> Router {
    Router::new()
        .route("/bare", get(ok))
        .route("/bare2", get(ok))
        .route("/identity", get(ok).layer(Identity::new()))
        .route(
            "/boxed",
            get(ok).layer(BoxCloneSyncService::<Request<Body>, Response, Infallible>::layer()),
        )
        .route("/handle_error", get(ok).layer(HandleErrorLayer::new(never)))
        .route(
            "/layer_default",
            get(ok).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(error_to_response))
                    .layer(CircuitBreakerLayer::new(breakers.get("layer_default"))),
            ),
        )
        .route(
            "/layer",
            get(ok).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(error_to_response))
                    .layer(
                        CircuitBreakerLayer::new(breakers.get("layer"))
                            .classify_with(HttpClassifier::new()),
                    ),
            ),
        )
        .route(
            "/layer_static",
            get(ok).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(error_to_response))
                    .layer(
                        CircuitBreakerLayer::new(breakers.get("layer_static"))
                            .classify_with(DefaultHttpClassifier),
                    ),
            ),
        )
        .route(
            "/route_layer",
            get(ok).route_layer(CircuitBreakerRouteLayer::new(breakers.get("route_layer"))),
        )
        .route(
            "/route_layer_table",
            get(ok).route_layer(
                CircuitBreakerRouteLayer::new(breakers.get("route_layer_table"))
                    .classify_with(HttpClassifier::new()),
            ),
        )
        .route("/handler_identity", get(ok.layer(Identity::new())))
        .route(
            "/handler_layer",
            get(ok.layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(error_to_response))
                    .layer(
                        CircuitBreakerLayer::new(breakers.get("handler_layer"))
                            .classify_with(HttpClassifier::new()),
                    ),
            )),
        )
        .route(
            "/handler_route_layer",
            get(ok.layer(CircuitBreakerRouteLayer::new(
                breakers.get("handler_route_layer"),
            ))),
        )
}

/// The server, on its own thread and runtime.
struct Server {
    addr: SocketAddr,
    /// `/proc/<pid>/task/<tid>/schedstat` of the server thread, where readable.
    schedstat: Option<PathBuf>,
    shutdown: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(app: Router) -> Self {
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
                        axum::serve(listener, app).await.expect("serve");
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

/// One reading: the server thread's CPU ns, the machine's ticks, ours and wrk's ticks.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    server_ns: Option<u64>,
    machine: Option<(u64, u64)>,
    ours: Option<u64>,
    wrk: Option<u64>,
}

impl Sample {
    fn take(server: Option<&Path>, wrk_pid: u32) -> Self {
        Self {
            at: Instant::now(),
            server_ns: read_cpu_ns(server),
            machine: machine_ticks(),
            ours: process_ticks("self"),
            wrk: process_ticks(&wrk_pid.to_string()),
        }
    }

    /// The server thread's CPU share between `self` and `later`, in percent.
    fn server_pct(&self, later: &Self) -> Option<f64> {
        let cpu = later.server_ns?.checked_sub(self.server_ns?)? as f64;
        Some(cpu * 100.0 / (later.at - self.at).as_nanos() as f64)
    }

    /// Share of the machine's CPU used by neither this process nor wrk, in percent.
    fn other_pct(&self, later: &Self) -> Option<f64> {
        let ((busy0, total0), (busy1, total1)) = (self.machine?, later.machine?);
        let ours = later.ours?.checked_sub(self.ours?)?;
        let wrk = later.wrk?.checked_sub(self.wrk?)?;
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

/// The figures of one wrk run against one route.
#[derive(Debug, Clone, Copy)]
struct Slice {
    rps: f64,
    requests: u64,
    /// Server thread's CPU share over the middle of the slice, percent.
    server_pct: Option<f64>,
    /// Server thread's CPU over the whole slice per request, ns.
    server_ns_per_request: Option<f64>,
    other_pct: Option<f64>,
}

/// Runs wrk against `path` for `duration`, sampling the server thread's CPU on the way.
fn run_wrk(
    addr: SocketAddr,
    path: &str,
    duration: Duration,
    connections: usize,
    server: Option<&Path>,
) -> Slice {
    let url = format!("http://{addr}/{path}");
    let before = read_cpu_ns(server);
    let child = Command::new("wrk")
        .args([
            "-t1".to_owned(),
            format!("-c{connections}"),
            format!("-d{}s", duration.as_secs()),
            "--timeout".to_owned(),
            "5s".to_owned(),
            url.clone(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wrk");
    let pid = child.id();
    let margin = duration / 6;
    std::thread::sleep(margin);
    let start = Sample::take(server, pid);
    std::thread::sleep(duration - 2 * margin);
    let end = Sample::take(server, pid);
    let output = child.wait_with_output().expect("wrk runs");
    let after = read_cpu_ns(server);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk {url} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("Non-2xx") && !stdout.contains("Socket errors"),
        "wrk {url} saw errors:\n{stdout}"
    );
    let rps = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{stdout}"));
    let requests = stdout
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{stdout}"));
    let server_ns_per_request = match (before, after) {
        (Some(before), Some(after)) if requests > 0 => {
            Some((after - before) as f64 / requests as f64)
        }
        _ => None,
    };
    Slice {
        rps,
        requests,
        server_pct: start.server_pct(&end),
        server_ns_per_request,
        other_pct: start.other_pct(&end),
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

/// A GET for `/<name>`.
fn request(name: &str) -> Request<Body> {
    Request::get(format!("/{name}"))
        .body(Body::empty())
        .expect("request")
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

/// Times `iterations` requests to `/<name>`, with requests built beforehand; ns per request.
fn time_in_process(router: &mut Router, name: &str, iterations: usize) -> f64 {
    let requests: Vec<Request<Body>> = (0..iterations).map(|_| request(name)).collect();
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
    let mut router = app(&Breakers::new());
    for name in names {
        time_in_process(&mut router, name, iterations);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); names.len()];
    for round in 0..rounds {
        for offset in 0..names.len() {
            let index = (round + offset) % names.len();
            times[index].push(time_in_process(&mut router, names[index], iterations));
        }
    }
    times.into_iter().map(median).collect()
}

// ===== smoke =====

/// One `GET /<name>` over a fresh connection; the status line and the body.
fn get_over_tcp(addr: SocketAddr, name: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /{name} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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

fn smoke() {
    let breakers = Breakers::new();
    let server = Server::start(app(&breakers));
    let mut router = app(&Breakers::new());
    for name in std::iter::once("bare").chain(VARIANTS.iter().map(|variant| variant.name)) {
        let (status, body) = get_over_tcp(server.addr, name);
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "ok"),
            "/{name}"
        );
        let response = call_once(&mut router, request(name));
        assert_eq!(response.status(), StatusCode::OK, "/{name} in process");
    }
    for (name, breaker) in &breakers.0 {
        assert_eq!(breaker.metrics().successful_calls, 1, "/{name}'s breaker");
    }
    server.stop();
    println!(
        "http_wrk smoke: every route answers 200 over loopback and in process{}",
        if wrk_installed() {
            ""
        } else {
            " (wrk is not installed: `cargo bench` will skip the load run)"
        }
    );
}

// ===== main =====

/// One variant's results over all rounds.
#[derive(Debug, Clone)]
struct Results {
    variant: Variant,
    pairs: Vec<(Slice, Slice)>,
}

impl Results {
    fn ratios(&self) -> Vec<f64> {
        self.pairs
            .iter()
            .map(|(bare, variant)| variant.rps / bare.rps)
            .collect()
    }

    fn ns_added(&self) -> Vec<f64> {
        self.pairs
            .iter()
            .map(|(bare, variant)| 1e9 / variant.rps - 1e9 / bare.rps)
            .collect()
    }

    fn pick(&self, side: fn(&(Slice, Slice)) -> &Slice, field: fn(&Slice) -> Option<f64>) -> f64 {
        median(
            self.pairs
                .iter()
                .map(|pair| field(side(pair)).unwrap_or(f64::NAN))
                .collect(),
        )
    }
}

#[allow(clippy::too_many_lines)]
fn main() {
    let settings = Settings::from_env();
    if settings.smoke {
        smoke();
        return;
    }
    if !wrk_installed() && !settings.in_process_only && !settings.serve_only {
        println!("http_wrk: wrk is not installed (Debian: apt-get install wrk); skipping");
        return;
    }
    println!(
        "http_wrk: wrk -t1 -c{} -d{}s against one axum server (current-thread runtime, one OS \
         thread) on 127.0.0.1; {} rounds, each variant paired with /bare in alternating order",
        settings.connections,
        settings.slice.as_secs(),
        settings.pairs
    );
    println!(
        "load before the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let names: Vec<&'static str> = std::iter::once("bare")
        .chain(settings.variants.iter().map(|variant| variant.name))
        .collect();
    let in_process = ((settings.in_process || settings.in_process_only) && !settings.serve_only)
        .then(|| {
            measure_in_process(
                &names,
                settings.in_process_rounds,
                settings.in_process_iterations,
            )
        });
    if let Some(in_process) = &in_process {
        println!();
        println!(
            "in process (Router::call + one poll, no sockets; median of {} rounds of {} \
             requests):",
            settings.in_process_rounds, settings.in_process_iterations
        );
        println!("{:<20} {:>8} {:>9}", "route", "ns/req", "+ns");
        for (name, ns) in names.iter().zip(in_process) {
            println!("{:<20} {:>8.1} {:>+9.1}", name, ns, ns - in_process[0]);
        }
    }
    if settings.in_process_only {
        return;
    }

    let breakers = Breakers::new();
    let server = Server::start(app(&breakers));
    if settings.serve_only {
        println!(
            "serving every route on http://{} (server thread {}); press Enter to stop",
            server.addr,
            server
                .schedstat
                .as_deref()
                .and_then(tid_of)
                .unwrap_or("unknown"),
        );
        let _ = std::io::stdin().read_line(&mut String::new());
        server.stop();
        return;
    }
    let server_cpu = server.schedstat.as_deref();
    if server_cpu.is_none() {
        println!("(no /proc/thread-self/schedstat: the saturation check is skipped)");
    }
    // The server thread on CPU 0; this thread, and so every wrk it starts, on CPU 1.
    let pinned = settings.pin
        && std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() >= 2)
        && server_cpu.and_then(tid_of).is_some_and(|tid| pin(tid, 0))
        && thread_schedstat()
            .as_deref()
            .and_then(tid_of)
            .is_some_and(|tid| pin(tid, 1));
    println!(
        "{}",
        if pinned {
            "pinned: server thread on CPU 0, wrk on CPU 1"
        } else {
            "not pinned (WRK_BENCH_PIN=0, one CPU, or no taskset)"
        }
    );
    for name in &names {
        run_wrk(
            server.addr,
            name,
            Duration::from_secs(1),
            settings.connections,
            server_cpu,
        );
    }

    println!();
    println!(
        "{:>5} {:<20} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}",
        "round", "route", "bare r/s", "r/s", "ratio", "srv %", "srv %", "other %"
    );
    let mut results: Vec<Results> = settings
        .variants
        .iter()
        .map(|&variant| Results {
            variant,
            pairs: Vec::with_capacity(settings.pairs),
        })
        .collect();
    let count = results.len();
    for round in 0..settings.pairs {
        for offset in 0..count {
            let index = (round + offset) % count;
            let name = results[index].variant.name;
            let bare_first = (round + offset) % 2 == 0;
            let run = |path: &str| {
                run_wrk(
                    server.addr,
                    path,
                    settings.slice,
                    settings.connections,
                    server_cpu,
                )
            };
            let (bare, variant) = if bare_first {
                let bare = run("bare");
                (bare, run(name))
            } else {
                let variant = run(name);
                (run("bare"), variant)
            };
            let fmt =
                |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
            println!(
                "{:>5} {:<20} {:>9.0} {:>9.0} {:>7.3} {:>7} {:>7} {:>7}",
                round + 1,
                name,
                bare.rps,
                variant.rps,
                variant.rps / bare.rps,
                fmt(bare.server_pct),
                fmt(variant.server_pct),
                fmt(match (bare.other_pct, variant.other_pct) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                }),
            );
            results[index].pairs.push((bare, variant));
        }
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Every guarded request went through its breaker, and none was rejected.
    for (name, breaker) in &breakers.0 {
        let metrics = breaker.metrics();
        assert_eq!(breaker.state(), CircuitState::Closed, "/{name}'s breaker");
        assert_eq!(metrics.total_calls, metrics.successful_calls, "/{name}");
        if settings
            .variants
            .iter()
            .any(|variant| variant.name == *name)
        {
            assert!(
                metrics.total_calls > 0,
                "/{name}'s breaker saw its requests"
            );
        }
    }
    server.stop();

    let all_bare: Vec<f64> = results
        .iter()
        .flat_map(|results| results.pairs.iter().map(|(bare, _)| bare.rps))
        .collect();
    let bare_rps = median(all_bare);
    let bare_ns = median(
        results
            .iter()
            .flat_map(|results| {
                results
                    .pairs
                    .iter()
                    .map(|(bare, _)| bare.server_ns_per_request.unwrap_or(f64::NAN))
            })
            .collect(),
    );
    let bare_pct = median(
        results
            .iter()
            .flat_map(|results| {
                results
                    .pairs
                    .iter()
                    .map(|(bare, _)| bare.server_pct.unwrap_or(f64::NAN))
            })
            .collect(),
    );
    let others: Vec<f64> = results
        .iter()
        .flat_map(|results| {
            results
                .pairs
                .iter()
                .flat_map(|(bare, variant)| [bare.other_pct, variant.other_pct])
        })
        .flatten()
        .collect();
    let mean_other = others.iter().sum::<f64>() / others.len().max(1) as f64;
    let max_other = others.iter().copied().fold(f64::NAN, f64::max);

    println!();
    println!(
        "{:<20} {:>9} {:>7} {:>13} {:>8} {:>7} {:>8} {:>8}  what",
        "route", "r/s", "ratio", "quartiles", "+ns/req", "srv %", "srv ns", "+srv ns"
    );
    println!(
        "{:<20} {:>9.0} {:>7} {:>13} {:>8} {:>7.1} {:>8.0} {:>8}  the handler alone",
        "bare", bare_rps, "1", "", "", bare_pct, bare_ns, ""
    );
    let mut json_variants = Vec::new();
    for results in &results {
        let ratio = median(results.ratios());
        let (q1, q3) = quartiles(results.ratios());
        let ns_added = median(results.ns_added());
        let rps = results.pick(|pair| &pair.1, |slice| Some(slice.rps));
        let server_pct = results.pick(|pair| &pair.1, |slice| slice.server_pct);
        let server_ns = results.pick(|pair| &pair.1, |slice| slice.server_ns_per_request);
        let server_ns_added = median(
            results
                .pairs
                .iter()
                .map(|(bare, variant)| {
                    match (variant.server_ns_per_request, bare.server_ns_per_request) {
                        (Some(variant), Some(bare)) => variant - bare,
                        _ => f64::NAN,
                    }
                })
                .collect(),
        );
        println!(
            "{:<20} {:>9.0} {:>7.3} {:>6.3}..{:<5.3} {:>+8.0} {:>7.1} {:>8.0} {:>+8.0}  {}",
            results.variant.name,
            rps,
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
             \"server_ns_per_request\": {}, \"server_ns_added\": {}, \"requests\": {}, \
             \"ratios\": [{}]}}",
            results.variant.name,
            json_number(rps),
            json_number(ratio),
            json_number(q1),
            json_number(q3),
            json_number(ns_added),
            json_number(server_pct),
            json_number(server_ns),
            json_number(server_ns_added),
            results
                .pairs
                .iter()
                .map(|(_, variant)| variant.requests)
                .sum::<u64>(),
            results
                .ratios()
                .iter()
                .map(|ratio| json_number(*ratio))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    println!();
    for name in ["layer", "route_layer"] {
        if let Some(results) = results.iter().find(|results| results.variant.name == name) {
            let ratio = median(results.ratios());
            println!(
                "/{name}: {ratio:.3}x /bare (target >= {TARGET_RATIO}: {})",
                if ratio >= TARGET_RATIO {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    let clean = others.is_empty() || mean_other <= MAX_CLEAN_OTHER_PCT;
    let load = format!(
        "other processes used {mean_other:.1}% of the machine's CPU on average in the measured \
         windows, {max_other:.1}% at most in one; load after the run: {}",
        load_after.trim()
    );
    if clean {
        println!("clean: {load}");
    } else {
        println!("NOT CLEAN: {load} (limit {MAX_CLEAN_OTHER_PCT}%); rerun on an idle machine");
    }

    let mut json = String::new();
    let _ = writeln!(json, "{{");
    let _ = writeln!(json, "  \"pairs\": {},", settings.pairs);
    let _ = writeln!(json, "  \"slice_s\": {},", settings.slice.as_secs());
    let _ = writeln!(json, "  \"connections\": {},", settings.connections);
    let _ = writeln!(json, "  \"bare_rps\": {},", json_number(bare_rps));
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
    let _ = writeln!(
        json,
        "  \"mean_other_cpu_pct\": {},",
        json_number(mean_other)
    );
    let _ = writeln!(json, "  \"max_other_cpu_pct\": {},", json_number(max_other));
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
