//! HTTP end-to-end overhead of the breaker layer: the same axum server with and without
//! [`CircuitBreakerLayer`] on its route, loaded over loopback; requests per second and latency.
//!
//! Run with `cargo bench -p benches --bench http` (about 40 s). Under `cargo test` (no `--bench`
//! argument) it runs a short smoke pass instead and writes nothing.
//!
//! # Setup
//!
//! - **Server**: one axum 0.8 app per variant, both served from one current-thread tokio runtime
//!   on a dedicated OS thread (one core's worth of server), each on its own `127.0.0.1:0`
//!   listener. The handler returns `200 "ok"`.
//!   - `without`: `Router::new().route("/", get(ok))`.
//!   - `with`: the same route with `.layer(HandleErrorLayer + CircuitBreakerLayer)`, the pattern
//!     of `tests/axum_route.rs`; 5xx and errors classify as failures, so every call here is a
//!     success and the breaker stays closed (checked at the end).
//! - **Client**: a current-thread tokio runtime on the main thread (the other core) holding
//!   `CONNECTIONS` (default 32) HTTP/1.1 keep-alive connections to each server, made once with
//!   `hyper::client::conn::http1`. While a variant is loaded, each of its connections runs a
//!   closed loop: send `GET /`, read the whole body, repeat; the other variant's connections sit
//!   idle.
//! - **Slices**: after a discarded 1 s warm-up of each variant, the bench alternates the two in
//!   short slices, `PAIRS` (default 60) pairs in A/B, B/A, A/B... order so that drift and order
//!   effects cancel. A slice settles for `SETTLE_MS` (default 50 ms, not counted) and then counts
//!   for `SLICE_MS` (default 250 ms): every response completed inside that window counts towards
//!   requests per second, and its latency (send to end of body, client side) goes into p50/p99.
//!   Each slice stops itself at its deadline. Many short interleaved slices rather than a few long
//!   runs: on a small VM, throughput moves by 5-20 % for a second or more at a time, which five
//!   3 s A/B rounds turned into ratios of 0.95 to 1.05 between two identical servers; a slice and
//!   its partner see nearly the same conditions, and the median of many pair ratios shrugs off
//!   the disturbed ones. `HTTP_BENCH_CONTROL=1` measures what is left (see below).
//! - **Figures**: per variant, pooled over all its slices: requests per second (requests / counted
//!   time) and p50/p99 of all latencies. Ratios with/without: of those pooled figures, and the
//!   median over pairs of the per-pair ratio (the headline: robust to a disturbed pair), with the
//!   quartiles of the pair ratios as its spread.
//! - **CPU**: where `/proc/<tid>/schedstat` is readable (Linux), the server thread's and the
//!   client thread's CPU time per request over the counted windows (median over slices), which
//!   shows the layer's cost even when the other side is the bottleneck; and from `/proc/stat`, the
//!   share of the machine's CPU that other processes used during a window (`other %`). On a
//!   shared 2-core machine a run where that averages more than 3 % is not clean; the bench says
//!   so at the end (it cannot see a noisy neighbour on the host, only processes in the VM).
//!
//! Environment overrides: `HTTP_BENCH_CONNECTIONS`, `HTTP_BENCH_PAIRS`, `HTTP_BENCH_SLICE_MS`,
//! `HTTP_BENCH_SETTLE_MS`. `HTTP_BENCH_CONTROL=1` serves the layer-free app on both ports (an A/A
//! run): its ratios are the noise floor of the setup.
//!
//! Output: a table on stdout and `http-bench.json` (`http-bench-control.json` for a control run)
//! in `$CARGO_TARGET_DIR` (relative values are taken from the workspace root), or the workspace's
//! `target/` when that is unset.
//!
//! Target (issue 5): requests per second with the layer >= 0.98x without.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{BoxError, ServiceBuilder};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, Outcome,
};

/// The target for `rps_with / rps_without`.
const TARGET_RPS_RATIO: f64 = 0.98;

/// Above this share of the machine's CPU used by other processes, averaged over the counted
/// windows, a run is flagged as not clean. (`/proc/stat` counts in 10 ms ticks, so one window's
/// figure is coarse: two stray ticks in a 250 ms window on 2 cores read as 4 %.)
const MAX_CLEAN_OTHER_PCT: f64 = 3.0;

/// A run is also flagged when a single counted window exceeds this.
const MAX_CLEAN_OTHER_PCT_ONE_WINDOW: f64 = 20.0;

/// How a bench run is sized.
#[derive(Debug, Clone, Copy)]
struct Settings {
    connections: usize,
    pairs: usize,
    settle: Duration,
    slice: Duration,
    initial_warmup: Duration,
    smoke: bool,
    control: bool,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let smoke = !std::env::args().any(|arg| arg == "--bench");
        let control = std::env::var("HTTP_BENCH_CONTROL").is_ok_and(|value| value == "1");
        let var = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        if smoke {
            return Self {
                connections: 4,
                pairs: 2,
                settle: Duration::from_millis(20),
                slice: Duration::from_millis(100),
                initial_warmup: Duration::ZERO,
                smoke,
                control,
            };
        }
        Self {
            connections: usize::try_from(var("HTTP_BENCH_CONNECTIONS", 32).max(1)).unwrap(),
            pairs: usize::try_from(var("HTTP_BENCH_PAIRS", 60).max(1)).unwrap(),
            settle: Duration::from_millis(var("HTTP_BENCH_SETTLE_MS", 50)),
            slice: Duration::from_millis(var("HTTP_BENCH_SLICE_MS", 250).max(50)),
            initial_warmup: Duration::from_secs(1),
            smoke,
            control,
        }
    }
}

/// 5xx responses are failures; everything else is a success (what `HttpClassifier` does by
/// default, without needing the `http` feature).
fn server_errors(result: &Result<Response, BoxError>) -> Outcome {
    match result {
        Ok(response) if response.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// A rejection or another error of the layer as a response (never happens here: the breaker
/// stays closed).
async fn error_to_response(err: BoxError) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response()
}

async fn ok() -> &'static str {
    "ok"
}

/// Which server a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Without,
    With,
}

/// Both servers, on their own thread and runtime.
struct Servers {
    without: SocketAddr,
    with: SocketAddr,
    breaker: CircuitBreaker,
    /// `/proc/<pid>/task/<tid>/schedstat` of the server thread, where readable.
    schedstat: Option<PathBuf>,
    shutdown: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Servers {
    /// With `control`, the `with` port serves the layer-free app too.
    fn start(control: bool) -> Self {
        let breaker = CircuitBreaker::with_config(
            "http-bench",
            CircuitBreakerConfig::default().failure_threshold(5),
        )
        .expect("valid config");
        let guard = ServiceBuilder::new()
            .layer(HandleErrorLayer::new(error_to_response))
            .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(server_errors));
        let without_app = Router::new().route("/", get(ok));
        let with_app = if control {
            without_app.clone()
        } else {
            Router::new().route("/", get(ok).layer(guard))
        };

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("http-bench-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(async move {
                    let mut addrs = Vec::new();
                    for app in [without_app, with_app] {
                        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                            .await
                            .expect("bind 127.0.0.1");
                        addrs.push(listener.local_addr().expect("local addr"));
                        tokio::spawn(async move {
                            axum::serve(listener, app).await.expect("serve");
                        });
                    }
                    ready_tx
                        .send((addrs[0], addrs[1], thread_schedstat()))
                        .expect("main thread waits");
                    // Until the main thread is done; dropping the runtime then ends the servers.
                    let _ = shutdown_rx.await;
                });
            })
            .expect("spawn server thread");
        let (without, with, schedstat) = ready_rx.recv().expect("server started");
        Self {
            without,
            with,
            breaker,
            schedstat,
            shutdown,
            thread,
        }
    }

    const fn addr(&self, variant: Variant) -> SocketAddr {
        match variant {
            Variant::Without => self.without,
            Variant::With => self.with,
        }
    }

    fn stop(self) {
        let _ = self.shutdown.send(());
        self.thread.join().expect("server thread");
    }
}

/// The calling thread's `schedstat` path, if the kernel exposes it.
fn thread_schedstat() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    let path = Path::new("/proc").join(link).join("schedstat");
    read_cpu_ns(Some(&path)).map(|_| path)
}

/// CPU time (ns) a thread has run, from its `schedstat`.
fn read_cpu_ns(path: Option<&Path>) -> Option<u64> {
    let text = std::fs::read_to_string(path?).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A variant's open keep-alive connections.
struct Connections {
    senders: Vec<SendRequest<Empty<Bytes>>>,
    drivers: Vec<JoinHandle<hyper::Result<()>>>,
    host: HeaderValue,
}

impl Connections {
    async fn open(addr: SocketAddr, count: usize) -> Self {
        let mut senders = Vec::with_capacity(count);
        let mut drivers = Vec::with_capacity(count);
        for _ in 0..count {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (sender, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            senders.push(sender);
            drivers.push(tokio::spawn(connection));
        }
        let host = HeaderValue::from_str(&addr.to_string()).expect("host header");
        Self {
            senders,
            drivers,
            host,
        }
    }

    /// Drops the senders, which ends each connection, and waits for them to close.
    async fn close(self) {
        drop(self.senders);
        for driver in self.drivers {
            driver.await.expect("driver task").expect("connection");
        }
    }
}

/// One connection in a closed loop until `end`; returns the sender and the latencies (ns) of the
/// responses completed from `window_start` on.
async fn connection_loop(
    mut sender: SendRequest<Empty<Bytes>>,
    host: HeaderValue,
    window_start: Instant,
    end: Instant,
    capacity: usize,
) -> (SendRequest<Empty<Bytes>>, Vec<u64>) {
    let mut latencies_ns = Vec::with_capacity(capacity);
    loop {
        sender.ready().await.expect("connection ready");
        let request = http::Request::get("/")
            .header(http::header::HOST, host.clone())
            .body(Empty::new())
            .expect("request");
        let start = Instant::now();
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.expect("body");
        let done = Instant::now();
        debug_assert_eq!(body.to_bytes().as_ref(), b"ok");
        if done > end {
            break;
        }
        if done >= window_start {
            latencies_ns.push(u64::try_from((done - start).as_nanos()).unwrap_or(u64::MAX));
        }
    }
    (sender, latencies_ns)
}

/// The figures of one slice.
#[derive(Debug, Clone, Copy)]
struct SliceStats {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    server_cpu_us_per_req: Option<f64>,
    client_cpu_us_per_req: Option<f64>,
    /// Share of all CPUs' time used by other processes during the window, in percent.
    other_cpu_pct: Option<f64>,
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

/// CPU ticks (user + system) of this process, from `/proc/self/stat`.
fn process_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A CPU reading at one instant: server thread ns, client thread ns, machine ticks, our ticks.
type CpuSample = (Option<u64>, Option<u64>, Option<(u64, u64)>, Option<u64>);

fn cpu_sample(server: Option<&Path>, client: Option<&Path>) -> CpuSample {
    (
        read_cpu_ns(server),
        read_cpu_ns(client),
        machine_ticks(),
        process_ticks(),
    )
}

/// Percent of the machine's CPU time between two samples used by processes other than this one.
fn other_cpu_pct(before: &CpuSample, after: &CpuSample) -> Option<f64> {
    let ((busy0, total0), ours0) = (before.2?, before.3?);
    let ((busy1, total1), ours1) = (after.2?, after.3?);
    let total = total1.checked_sub(total0)?;
    let others = busy1
        .checked_sub(busy0)?
        .saturating_sub(ours1.checked_sub(ours0)?);
    (total > 0).then(|| others as f64 * 100.0 / total as f64)
}

/// Loads one variant's connections for `settle + slice`; returns the slice's figures and its
/// latencies (ns, sorted).
async fn run_slice(
    connections: &mut Connections,
    settle: Duration,
    slice: Duration,
    server: Option<&Path>,
    client: Option<&Path>,
) -> (SliceStats, Vec<u64>) {
    let window_start = Instant::now() + settle;
    let end = window_start + slice;
    // Rough guess of a connection's requests in the window, to avoid regrowing in the loop.
    let count = connections.senders.len();
    let capacity = usize::try_from(slice.as_millis()).unwrap_or(0) * 200 / count + 64;
    let tasks: Vec<_> = std::mem::take(&mut connections.senders)
        .into_iter()
        .map(|sender| {
            let host = connections.host.clone();
            tokio::spawn(connection_loop(sender, host, window_start, end, capacity))
        })
        .collect();

    // CPU time across the counted window.
    tokio::time::sleep_until(window_start.into()).await;
    let before = cpu_sample(server, client);
    let actual_start = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let after = cpu_sample(server, client);
    let actual_window = actual_start.elapsed();

    let mut latencies = Vec::new();
    for task in tasks {
        let (sender, latencies_ns) = task.await.expect("connection task");
        connections.senders.push(sender);
        latencies.extend(latencies_ns);
    }
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    let per_request_us = |before: Option<u64>, after: Option<u64>| {
        // Scale the CPU delta to the nominal window the requests were counted in.
        let delta = after?.checked_sub(before?)? as f64;
        let scale = slice.as_secs_f64() / actual_window.as_secs_f64();
        (requests > 0).then(|| delta * scale / requests as f64 / 1_000.0)
    };
    let stats = SliceStats {
        requests,
        rps: requests as f64 / slice.as_secs_f64(),
        p50_us: percentile_us(&latencies, 0.50),
        p99_us: percentile_us(&latencies, 0.99),
        server_cpu_us_per_req: per_request_us(before.0, after.0),
        client_cpu_us_per_req: per_request_us(before.1, after.1),
        other_cpu_pct: other_cpu_pct(&before, &after),
    };
    (stats, latencies)
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile_us(sorted_ns: &[u64], quantile: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = (quantile * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1_000.0
}

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

/// One variant's figures over all its slices.
#[derive(Debug, Clone, Copy)]
struct Summary {
    requests: u64,
    /// Pooled: all requests over all counted time.
    rps: f64,
    /// Pooled: percentiles of all latencies.
    p50_us: f64,
    p99_us: f64,
    /// Medians over slices.
    server_cpu_us_per_req: f64,
    client_cpu_us_per_req: f64,
}

impl Summary {
    fn of(slices: &[SliceStats], mut latencies: Vec<u64>, slice: Duration) -> Self {
        latencies.sort_unstable();
        let requests = latencies.len() as u64;
        let pick = |field: fn(&SliceStats) -> Option<f64>| {
            median(
                slices
                    .iter()
                    .map(|stats| field(stats).unwrap_or(f64::NAN))
                    .collect(),
            )
        };
        Self {
            requests,
            rps: requests as f64 / (slice.as_secs_f64() * slices.len() as f64),
            p50_us: percentile_us(&latencies, 0.50),
            p99_us: percentile_us(&latencies, 0.99),
            server_cpu_us_per_req: pick(|stats| stats.server_cpu_us_per_req),
            client_cpu_us_per_req: pick(|stats| stats.client_cpu_us_per_req),
        }
    }
}

/// A JSON number, or `null` when not finite.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        "null".to_owned()
    }
}

fn json_option(value: Option<f64>) -> String {
    json_number(value.unwrap_or(f64::NAN))
}

fn json_path(control: bool) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the workspace")
        .to_path_buf();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    dir.join(if control {
        "http-bench-control.json"
    } else {
        "http-bench.json"
    })
}

fn slice_json(stats: &SliceStats) -> String {
    format!(
        "{{\"requests\": {}, \"rps\": {}, \"p50_us\": {}, \"p99_us\": {}, \
         \"server_cpu_us_per_req\": {}, \"client_cpu_us_per_req\": {}, \"other_cpu_pct\": {}}}",
        stats.requests,
        json_number(stats.rps),
        json_number(stats.p50_us),
        json_number(stats.p99_us),
        json_option(stats.server_cpu_us_per_req),
        json_option(stats.client_cpu_us_per_req),
        json_option(stats.other_cpu_pct),
    )
}

fn summary_json(summary: &Summary) -> String {
    format!(
        "{{\"requests\": {}, \"rps\": {}, \"p50_us\": {}, \"p99_us\": {}, \
         \"server_cpu_us_per_req\": {}, \"client_cpu_us_per_req\": {}}}",
        summary.requests,
        json_number(summary.rps),
        json_number(summary.p50_us),
        json_number(summary.p99_us),
        json_number(summary.server_cpu_us_per_req),
        json_number(summary.client_cpu_us_per_req),
    )
}

/// A pair of slices of one round: `(without, with)`.
type Pair = (SliceStats, SliceStats);

#[allow(clippy::too_many_lines)]
fn main() {
    let settings = Settings::from_env();
    let servers = Servers::start(settings.control);
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let server_cpu = servers.schedstat.as_deref();
    // The client runtime runs on this thread.
    let client_cpu = thread_schedstat();
    let client_cpu = client_cpu.as_deref();

    println!(
        "http end-to-end: {} keep-alive HTTP/1.1 connections per server from a current-thread \
         client runtime (main thread) to a current-thread server runtime (own thread) on \
         127.0.0.1; {} pairs of slices in alternating order, each {} ms settle + {} ms counted{}",
        settings.connections,
        settings.pairs,
        settings.settle.as_millis(),
        settings.slice.as_millis(),
        if settings.smoke { " (smoke run)" } else { "" },
    );
    if settings.control {
        println!("CONTROL run: both servers without the layer (\"with\" is a second copy)");
    }

    let mut without_conns = client.block_on(Connections::open(
        servers.addr(Variant::Without),
        settings.connections,
    ));
    let mut with_conns = client.block_on(Connections::open(
        servers.addr(Variant::With),
        settings.connections,
    ));

    if !settings.initial_warmup.is_zero() {
        for conns in [&mut without_conns, &mut with_conns] {
            client.block_on(run_slice(
                conns,
                settings.initial_warmup,
                Duration::from_millis(50),
                server_cpu,
                client_cpu,
            ));
        }
    }

    println!();
    println!(
        "{:>4}  {:>9} {:>9} {:>6}  {:>8} {:>8} {:>6}  {:>8} {:>8}  {:>7}",
        "pair",
        "w/o req/s",
        "with",
        "ratio",
        "w/o p99",
        "with",
        "ratio",
        "w/o srv",
        "with",
        "other %"
    );
    let mut pairs: Vec<Pair> = Vec::with_capacity(settings.pairs);
    let mut without_latencies = Vec::new();
    let mut with_latencies = Vec::new();
    for pair in 0..settings.pairs {
        let order = if pair % 2 == 0 {
            [Variant::Without, Variant::With]
        } else {
            [Variant::With, Variant::Without]
        };
        let mut without = None;
        let mut with = None;
        for variant in order {
            let (conns, latencies, slot) = match variant {
                Variant::Without => (&mut without_conns, &mut without_latencies, &mut without),
                Variant::With => (&mut with_conns, &mut with_latencies, &mut with),
            };
            let (stats, slice_latencies) = client.block_on(run_slice(
                conns,
                settings.settle,
                settings.slice,
                server_cpu,
                client_cpu,
            ));
            latencies.extend(slice_latencies);
            *slot = Some(stats);
        }
        let (without, with) = (without.expect("ran"), with.expect("ran"));
        let fmt = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        println!(
            "{:>4}  {:>9.0} {:>9.0} {:>6.3}  {:>8.1} {:>8.1} {:>6.3}  {:>8} {:>8}  {:>7}",
            pair + 1,
            without.rps,
            with.rps,
            with.rps / without.rps,
            without.p99_us,
            with.p99_us,
            with.p99_us / without.p99_us,
            fmt(without.server_cpu_us_per_req),
            fmt(with.server_cpu_us_per_req),
            fmt(match (without.other_cpu_pct, with.other_cpu_pct) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            }),
        );
        pairs.push((without, with));
    }
    client.block_on(without_conns.close());
    client.block_on(with_conns.close());

    let without_slices: Vec<SliceStats> = pairs.iter().map(|pair| pair.0).collect();
    let with_slices: Vec<SliceStats> = pairs.iter().map(|pair| pair.1).collect();
    let without = Summary::of(&without_slices, without_latencies, settings.slice);
    let with = Summary::of(&with_slices, with_latencies, settings.slice);
    let paired = |field: fn(&SliceStats) -> f64| {
        median(
            pairs
                .iter()
                .map(|(without, with)| field(with) / field(without))
                .collect(),
        )
    };
    let rps_ratio_paired = paired(|stats| stats.rps);
    let p99_ratio_paired = paired(|stats| stats.p99_us);
    let p50_ratio_paired = paired(|stats| stats.p50_us);
    let rps_ratio_pooled = with.rps / without.rps;
    let p50_ratio_pooled = with.p50_us / without.p50_us;
    let p99_ratio_pooled = with.p99_us / without.p99_us;
    let server_cpu_ratio = with.server_cpu_us_per_req / without.server_cpu_us_per_req;
    let others: Vec<f64> = pairs
        .iter()
        .flat_map(|(without, with)| [without.other_cpu_pct, with.other_cpu_pct])
        .flatten()
        .collect();
    let max_other_pct = others.iter().copied().fold(f64::NAN, f64::max);
    let mean_other_pct = others.iter().sum::<f64>() / others.len() as f64;
    let clean = others.is_empty()
        || (mean_other_pct <= MAX_CLEAN_OTHER_PCT
            && max_other_pct <= MAX_CLEAN_OTHER_PCT_ONE_WINDOW);
    let mut rps_ratios: Vec<f64> = pairs
        .iter()
        .map(|(without, with)| with.rps / without.rps)
        .collect();
    rps_ratios.sort_by(f64::total_cmp);
    let quartile = |q: f64| rps_ratios[((rps_ratios.len() - 1) as f64 * q).round() as usize];
    let (rps_ratio_q1, rps_ratio_q3) = (quartile(0.25), quartile(0.75));

    println!();
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>11} {:>11}",
        "", "req/s", "p50 us", "p99 us", "srv us/req", "cli us/req"
    );
    for (name, summary) in [("without", without), ("with", with)] {
        println!(
            "{:<26} {:>10.0} {:>9.1} {:>9.1} {:>11.2} {:>11.2}",
            name,
            summary.rps,
            summary.p50_us,
            summary.p99_us,
            summary.server_cpu_us_per_req,
            summary.client_cpu_us_per_req,
        );
    }
    println!(
        "{:<26} {:>10.3} {:>9.3} {:>9.3} {:>11.3}",
        "with/without, pooled",
        rps_ratio_pooled,
        p50_ratio_pooled,
        p99_ratio_pooled,
        server_cpu_ratio
    );
    println!(
        "{:<26} {:>10.3} {:>9.3} {:>9.3}",
        "with/without, pair median", rps_ratio_paired, p50_ratio_paired, p99_ratio_paired
    );
    let verdict = if rps_ratio_paired >= TARGET_RPS_RATIO {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "rps_with / rps_without = {rps_ratio_paired:.3} (median over {} pairs, quartiles \
         {rps_ratio_q1:.3}..{rps_ratio_q3:.3}; target >= {TARGET_RPS_RATIO}: {verdict}); \
         p99 ratio = {p99_ratio_paired:.3}",
        pairs.len()
    );
    let load = format!(
        "other processes used {mean_other_pct:.1}% of the machine's CPU on average over the \
         counted windows, {max_other_pct:.1}% at most in one"
    );
    if clean {
        println!("clean: {load}");
    } else {
        println!(
            "NOT CLEAN: {load} (limits {MAX_CLEAN_OTHER_PCT}% and \
             {MAX_CLEAN_OTHER_PCT_ONE_WINDOW}%); rerun on an idle machine"
        );
    }

    // The breaker saw every request of the `with` slices as a success and never left closed.
    let metrics = servers.breaker.metrics();
    assert_eq!(servers.breaker.state(), CircuitState::Closed);
    assert_eq!(metrics.total_calls, metrics.successful_calls);
    if !settings.control {
        assert!(metrics.total_calls >= with.requests);
    }
    println!(
        "breaker: closed, {} calls, all successes",
        metrics.total_calls
    );
    servers.stop();

    if settings.smoke {
        return;
    }
    let mut json = String::new();
    let _ = writeln!(json, "{{");
    let _ = writeln!(json, "  \"control\": {},", settings.control);
    let _ = writeln!(json, "  \"connections\": {},", settings.connections);
    let _ = writeln!(json, "  \"pairs\": {},", settings.pairs);
    let _ = writeln!(json, "  \"settle_ms\": {},", settings.settle.as_millis());
    let _ = writeln!(json, "  \"slice_ms\": {},", settings.slice.as_millis());
    let _ = writeln!(json, "  \"without\": {},", summary_json(&without));
    let _ = writeln!(json, "  \"with\": {},", summary_json(&with));
    let _ = writeln!(json, "  \"rps_ratio\": {},", json_number(rps_ratio_paired));
    let _ = writeln!(json, "  \"p50_ratio\": {},", json_number(p50_ratio_paired));
    let _ = writeln!(json, "  \"p99_ratio\": {},", json_number(p99_ratio_paired));
    let _ = writeln!(
        json,
        "  \"rps_ratio_pooled\": {},",
        json_number(rps_ratio_pooled)
    );
    let _ = writeln!(
        json,
        "  \"p50_ratio_pooled\": {},",
        json_number(p50_ratio_pooled)
    );
    let _ = writeln!(
        json,
        "  \"p99_ratio_pooled\": {},",
        json_number(p99_ratio_pooled)
    );
    let _ = writeln!(
        json,
        "  \"server_cpu_ratio\": {},",
        json_number(server_cpu_ratio)
    );
    let _ = writeln!(json, "  \"target_rps_ratio\": {TARGET_RPS_RATIO},");
    let _ = writeln!(
        json,
        "  \"target_met\": {},",
        rps_ratio_paired >= TARGET_RPS_RATIO
    );
    let _ = writeln!(json, "  \"rps_ratio_q1\": {},", json_number(rps_ratio_q1));
    let _ = writeln!(json, "  \"rps_ratio_q3\": {},", json_number(rps_ratio_q3));
    let _ = writeln!(
        json,
        "  \"mean_other_cpu_pct\": {},",
        json_number(mean_other_pct)
    );
    let _ = writeln!(
        json,
        "  \"max_other_cpu_pct\": {},",
        json_number(max_other_pct)
    );
    let _ = writeln!(json, "  \"clean\": {clean},");
    let _ = writeln!(json, "  \"pairs_detail\": [");
    for (index, (without, with)) in pairs.iter().enumerate() {
        let _ = writeln!(
            json,
            "    {{\"without\": {}, \"with\": {}}}{}",
            slice_json(without),
            slice_json(with),
            if index + 1 == pairs.len() { "" } else { "," },
        );
    }
    let _ = writeln!(json, "  ]\n}}");
    let path = json_path(settings.control);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, json) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }
}
