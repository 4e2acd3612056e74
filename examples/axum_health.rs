//! The companion app: an axum server whose routes call a flaky upstream through the full
//! resilience stack, with the breakers' health, metrics, admin actions and a live dashboard.
//!
//! ```text
//! cargo run --example axum_health
//! ```
//!
//! It needs nothing else: the upstream runs in the same process on another loopback port. The
//! breakers come from `examples/breakers.yaml` (`pgmq`, `database`, `cache`, `s3`); each has a
//! route, `GET /call/{name}`, that goes through fallback, overall timeout, retry, the breaker,
//! a per-try timeout and a hyper client, the order Polly wraps them in. A light traffic generator
//! calls every route a few times a second so the dashboard moves on its own (`--no-traffic` turns
//! it off). Make the upstream fail and watch the breakers open:
//!
//! ```text
//! curl -X POST 'http://127.0.0.1:3000/upstream?fail=0.8&latency_ms=300'   # every service
//! curl -X POST 'http://127.0.0.1:3000/upstream?service=pgmq&fail=1'       # one service
//! curl -i http://127.0.0.1:3000/health                                    # 503 once pgmq is open
//! curl -X POST 'http://127.0.0.1:3000/upstream?fail=0&latency_ms=20'      # recover
//! ```
//!
//! Beside the named breakers, a keyed group `hosts` has a breaker per upstream host: three more
//! upstreams (hosts 1 to 3, each on its own port, so its own authority) are called through
//! `GET /hosts/{n}` and one client stack whose breaker layer is a `KeyedCircuitBreakerLayer`.
//! One failing host opens its own breaker only, and the app is degraded, not unhealthy (no key
//! is critical):
//!
//! ```text
//! curl -X POST 'http://127.0.0.1:3000/upstream?host=2&fail=1'             # host 2 fails
//! curl -i http://127.0.0.1:3000/hosts/2                                   # 503 once it is open
//! ```
//!
//! `/metrics` exports the group in aggregate (`circuit_breaker_keyed_*`, by state), as a large
//! fleet of hosts would; `/health` and the dashboard list every host's breaker.
//!
//! Options: `--addr HOST:PORT` (or `AXUM_HEALTH_ADDR`; default `127.0.0.1:3000`),
//! `--config PATH` (another breakers file), `--no-traffic`. The admin token is read from
//! `BREAKERS_ADMIN_TOKEN`, or made up at start and printed. Transitions are logged at `info`
//! (`RUST_LOG` changes that).

#[path = "support/tunable_upstream.rs"]
#[allow(dead_code)]
mod tunable_upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{header, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tower::timeout::Timeout;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::fallback::{ErrorPredicate, FallbackLayer, IsRejection, IsTimeout};
use tower_circuit_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitBreakerRegistry, HttpClassifier, RetryPolicy,
};
use tower_circuit_breaker_axum::{BreakerRoutes, RejectionResponse};
use tunable_upstream::{Behaviour, TunableUpstream};

/// One breaker's client: the whole stack, ending in the upstream.
type Stack = BoxCloneSyncService<Uri, http::Response<Bytes>, BoxError>;

/// How often the traffic generator calls each route.
const TRAFFIC_EVERY: Duration = Duration::from_millis(250);
/// What the upstream does at start: mostly fine, with the odd error.
const START: Behaviour = Behaviour {
    fail: 0.05,
    latency_ms: 20,
};

struct Options {
    addr: SocketAddr,
    config: PathBuf,
    traffic: bool,
}

/// Upstream hosts behind the keyed group.
const HOSTS: usize = 3;

#[derive(Clone)]
struct App {
    upstream: TunableUpstream,
    stacks: Arc<BTreeMap<String, Stack>>,
    /// The upstream hosts of the keyed group, host 1 first.
    hosts: Arc<Vec<TunableUpstream>>,
    /// One stack for every host: the breaker layer picks the host's breaker.
    hosts_stack: Stack,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let options = options()?;
    let registry = CircuitBreakerRegistry::from_path(&options.config)
        .map_err(|err| format!("{}: {err}", options.config.display()))?;
    let upstream = TunableUpstream::start(START).await?;
    let stacks: BTreeMap<String, Stack> = registry
        .breakers()
        .into_iter()
        .map(|breaker| (breaker.name().to_owned(), stack(breaker)))
        .collect();
    let mut hosts = Vec::with_capacity(HOSTS);
    for _ in 0..HOSTS {
        hosts.push(TunableUpstream::start(START).await?);
    }
    // The file's default settings for each host; at most 100 hosts.
    let group = registry.keyed("hosts").max_breakers(100).build()?;
    let hosts_stack = keyed_stack(group);
    let token = std::env::var("BREAKERS_ADMIN_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));

    let app = Router::new()
        .route("/call/{name}", get(call))
        .route("/hosts/{n}", get(call_host))
        .route("/upstream", get(knobs).post(tune))
        .with_state(App {
            upstream: upstream.clone(),
            stacks: Arc::new(stacks.clone()),
            hosts: Arc::new(hosts.clone()),
            hosts_stack: hosts_stack.clone(),
        })
        .merge(
            BreakerRoutes::new(registry)
                .admin_token(&token)
                .keyed_metrics_aggregate(true)
                .into_router(),
        );

    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", options.addr))?;
    let addr = listener.local_addr()?;
    let names: Vec<&str> = stacks.keys().map(String::as_str).collect();
    println!("axum_health: serving on http://{addr}");
    println!("  dashboard  http://{addr}/");
    println!("  health     http://{addr}/health   (also /health/live, /health/ready)");
    println!("  metrics    http://{addr}/metrics");
    println!(
        "  calls      http://{addr}/call/{{name}}   for {}",
        names.join(", ")
    );
    println!("  hosts      http://{addr}/hosts/{{n}}    for n in 1..={HOSTS}, a breaker per host");
    println!("  upstream   curl -X POST 'http://{addr}/upstream?fail=0.8&latency_ms=300'");
    println!("  admin      curl -X POST -H 'Authorization: Bearer {token}' http://{addr}/breakers/pgmq/reset");
    if options.traffic {
        println!(
            "  traffic    {} requests a second to each breaker's route (--no-traffic turns it off)",
            1000 / TRAFFIC_EVERY.as_millis()
        );
        for (name, stack) in &stacks {
            tokio::spawn(traffic(stack.clone(), upstream.url(name)));
        }
        for host in &hosts {
            tokio::spawn(traffic(hosts_stack.clone(), host.url("api")));
        }
    }

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The stack of one breaker, outermost first as `ServiceBuilder` reads: fallback, overall
/// timeout, retry, circuit breaker, per-try timeout, hyper client.
fn stack(breaker: CircuitBreaker) -> Stack {
    let name = breaker.name().to_owned();
    resilient(
        name,
        CircuitBreakerLayer::new(breaker).classify_with(HttpClassifier::new()),
    )
}

/// The same stack for many hosts: the breaker layer is keyed by each request's authority.
fn keyed_stack(group: KeyedBreakers) -> Stack {
    resilient(
        "hosts".to_owned(),
        KeyedCircuitBreakerLayer::new(group).classify_with(HttpClassifier::new()),
    )
}

/// Fallback, overall timeout, retry, then `breaker` (a breaker layer), a per-try timeout and
/// the hyper client.
fn resilient<L>(name: String, breaker: L) -> Stack
where
    L: Layer<Timeout<Stack>>,
    L::Service: Service<Uri, Response = http::Response<Bytes>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<Uri>>::Future: Send,
{
    let service = ServiceBuilder::new()
        // A rejection or a timeout gets a degraded answer instead of an error.
        .layer(
            FallbackLayer::new_sync(move |err: BoxError| fallback(&name, &err))
                .when(IsRejection.or(IsTimeout)),
        )
        .timeout(Duration::from_secs(5))
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .base_delay(Duration::from_millis(50))
                .classify_with(HttpClassifier::new()),
        )
        .layer(breaker)
        .timeout(Duration::from_millis(1500))
        .service(client());
    BoxCloneSyncService::new(service)
}

/// A hyper client as a `Service<Uri>`, its response body read whole.
fn client() -> Stack {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    BoxCloneSyncService::new(tower::service_fn(move |uri: Uri| {
        let client = client.clone();
        async move {
            let (parts, body) = client.get(uri).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(http::Response::from_parts(parts, body))
        }
    }))
}

/// The fallback's answer: 503, with `Retry-After` as the route layer gives it (whole seconds,
/// rounded up) when a breaker turned the call away.
fn fallback(name: &str, err: &BoxError) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(format!("{name}: fallback ({err})\n")));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let retry_after = RejectionResponse::find(err.as_ref()).and_then(|r| r.retry_after_secs());
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

/// Calls one breaker's route forever, a request at a time.
async fn traffic(mut stack: Stack, url: String) {
    let Ok(uri) = url.parse::<Uri>() else {
        return;
    };
    loop {
        if let Ok(ready) = stack.ready().await {
            let _ = ready.call(uri.clone()).await;
        }
        tokio::time::sleep(TRAFFIC_EVERY).await;
    }
}

/// `GET /call/{name}`: the upstream's answer through `name`'s stack.
async fn call(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(stack) = app.stacks.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no breaker named `{name}`\n"),
        )
            .into_response();
    };
    forward(stack.clone(), &app.upstream.url(&name), &name).await
}

/// `GET /hosts/{n}`: upstream host `n`'s answer, through the breaker of its authority.
async fn call_host(State(app): State<App>, Path(n): Path<usize>) -> Response {
    let Some(host) = n.checked_sub(1).and_then(|index| app.hosts.get(index)) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no host {n}: hosts are 1 to {HOSTS}\n"),
        )
            .into_response();
    };
    forward(
        app.hosts_stack.clone(),
        &host.url("api"),
        &format!("host {n}"),
    )
    .await
}

/// Sends `url` through `stack`, and answers with what came back.
async fn forward(stack: Stack, url: &str, name: &str) -> Response {
    let Ok(uri) = url.parse::<Uri>() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match stack.oneshot(uri).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let mut answer = body.into_response();
            *answer.status_mut() = parts.status;
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if let Some(after) = parts.headers.get(header::RETRY_AFTER) {
                answer
                    .headers_mut()
                    .insert(header::RETRY_AFTER, after.clone());
            }
            answer
        }
        Err(err) => (StatusCode::BAD_GATEWAY, format!("{name}: {err}\n")).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct Tune {
    /// One of the keyed group's hosts (1 to 3) instead of the named breakers' upstream.
    host: Option<usize>,
    service: Option<String>,
    fail: Option<f64>,
    latency_ms: Option<u64>,
}

/// `POST /upstream?fail=0.8&latency_ms=300[&service=pgmq | &host=2]`: changes how the upstream
/// (or one of the hosts) behaves.
async fn tune(State(app): State<App>, Query(tune): Query<Tune>) -> Response {
    let upstream = match tune.host {
        None => &app.upstream,
        Some(n) => match n.checked_sub(1).and_then(|index| app.hosts.get(index)) {
            Some(host) => host,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("host: must be 1 to {HOSTS}, got {n}\n"),
                )
                    .into_response()
            }
        },
    };
    let current = upstream.knobs().of(tune.service.as_deref().unwrap_or(""));
    let fail = tune.fail.unwrap_or(current.fail);
    if !(0.0..=1.0).contains(&fail) {
        return (
            StatusCode::BAD_REQUEST,
            format!("fail: must be in [0, 1], got {fail}\n"),
        )
            .into_response();
    }
    let latency_ms = tune.latency_ms.unwrap_or(current.latency_ms).min(60_000);
    upstream.set(tune.service.as_deref(), Behaviour { fail, latency_ms });
    tracing::info!(host = ?tune.host, service = ?tune.service, fail, latency_ms, "upstream retuned");
    Json(upstream.knobs()).into_response()
}

/// `GET /upstream`: how the upstream behaves now.
async fn knobs(State(app): State<App>) -> Response {
    Json(app.upstream.knobs()).into_response()
}

fn options() -> Result<Options, String> {
    let default_config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("breakers.yaml");
    let addr = std::env::var("AXUM_HEALTH_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let mut options = Options {
        addr: parse_addr(&addr)?,
        config: default_config,
        traffic: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let value = args.next().ok_or("--addr needs HOST:PORT")?;
                options.addr = parse_addr(&value)?;
            }
            "--config" => options.config = args.next().ok_or("--config needs a path")?.into(),
            "--no-traffic" => options.traffic = false,
            "-h" | "--help" => {
                println!("usage: axum_health [--addr HOST:PORT] [--config PATH] [--no-traffic]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(options)
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|err| format!("`{text}` is not HOST:PORT: {err}"))
}
