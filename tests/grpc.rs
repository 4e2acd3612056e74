//! The breaker layer around a tonic `Channel`, against a tonic server on 127.0.0.1, with
//! [`GrpcClassifier`] reading each call's `grpc-status`.
//!
//! The server is written by hand, the way `tonic-build` would generate it (one unary method,
//! `/test.Inventory/Get`, with prost messages derived by hand: no protoc, no build.rs). Its
//! handler answers `OK`, `UNAVAILABLE` or `NOT_FOUND` as the test says, and counts the calls that
//! reach it.
//!
//! What the tests pin down:
//!
//! - `UNAVAILABLE` is a failure: after `failure_threshold` of them the circuit is open, and the
//!   next call fails fast without reaching the server. tonic turns the layer's error into a
//!   `Status` with `Code::Unknown`, the rejection's text as the message and the rejection itself
//!   as the status's `source`, so [`Rejection::find`] on the status finds it.
//! - `NOT_FOUND` is the caller's problem: any number of them leaves the circuit closed.
//! - `OK` is a success, and ends a run of failures.
//! - A `map_err` over the layer can turn the rejection into an `UNAVAILABLE` status (what a gRPC
//!   caller expects from a dead upstream) and keep it findable as the source.
//! - Clones of the client, in tasks on a multi-threaded runtime, share the breaker (the guarded
//!   channel is `Send + Sync + Clone`, as tonic's generated clients want).
//! - With a manual clock, the circuit recovers through half-open probes once the server is back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::client::{Grpc, GrpcService};
use tonic::codegen::{Body as HttpBody, BoxFuture, Bytes};
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

#[path = "support/grpc.rs"]
mod grpc;
use tower::{BoxError, Service, ServiceBuilder};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerService, CircuitState,
    Clock, GrpcClassifier, ManualClock, Rejection,
};

const GET: &str = "/test.Inventory/Get";
const FAILURES_TO_OPEN: u32 = 3;
const BREAK: Duration = Duration::from_secs(60);

// ===== messages =====

/// `message GetRequest { string sku = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct GetRequest {
    #[prost(string, tag = "1")]
    sku: String,
}

/// `message Item { string sku = 1; uint32 quantity = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
struct Item {
    #[prost(string, tag = "1")]
    sku: String,
    #[prost(uint32, tag = "2")]
    quantity: u32,
}

// ===== server =====

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Ok,
    Unavailable,
    NotFound,
}

/// The upstream's behaviour, set by the test, and the calls that reached it.
#[derive(Debug, Default)]
struct Upstream {
    mode: AtomicU8,
    hits: AtomicUsize,
}

impl Upstream {
    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The handler of `Get`.
    fn get(&self, request: GetRequest) -> Result<tonic::Response<Item>, Status> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            mode if mode == Mode::Unavailable as u8 => Err(Status::unavailable("draining")),
            mode if mode == Mode::NotFound as u8 => {
                Err(Status::not_found(format!("no item {}", request.sku)))
            }
            _ => Ok(tonic::Response::new(Item {
                sku: request.sku,
                quantity: 7,
            })),
        }
    }
}

/// `service Inventory { rpc Get(GetRequest) returns (Item); }`, as tonic-build would write it.
#[derive(Debug, Clone)]
struct InventoryServer {
    upstream: Arc<Upstream>,
}

impl NamedService for InventoryServer {
    const NAME: &'static str = "test.Inventory";
}

impl Service<http::Request<Body>> for InventoryServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != GET {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let upstream = Arc::clone(&self.upstream);
        // Any `Service<tonic::Request<M1>, Response = tonic::Response<M2>, Error = Status>` is a
        // `UnaryService`.
        let handler = tower::service_fn(move |request: tonic::Request<GetRequest>| {
            let answer = upstream.get(request.into_inner());
            async move { answer }
        });
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Item, GetRequest>::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// Serves the inventory on a free loopback port, in the background.
async fn serve(upstream: Arc<Upstream>) -> SocketAddr {
    grpc::serve(InventoryServer { upstream }).await
}

// ===== client =====

/// A tonic channel behind the breaker, as a user would stack it.
type GuardedChannel = CircuitBreakerService<Channel, GrpcClassifier>;

/// A breaker on a clock that moves only when the test says.
fn breaker(clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder("inventory")
        .config(
            CircuitBreakerConfig::default()
                .failure_threshold(FAILURES_TO_OPEN)
                .break_duration(BREAK),
        )
        .clock(Clock::manual(clock))
        .build()
        .unwrap()
}

/// A server and a guarded client of it: `(upstream, breaker, clock, client)`.
async fn setup() -> (
    Arc<Upstream>,
    CircuitBreaker,
    ManualClock,
    Grpc<GuardedChannel>,
) {
    let upstream = Arc::new(Upstream::default());
    let addr = serve(Arc::clone(&upstream)).await;
    let clock = ManualClock::new();
    let breaker = breaker(&clock);
    let guarded = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(GrpcClassifier::new()))
        .service(grpc::channel(addr).await);
    (upstream, breaker, clock, Grpc::new(guarded))
}

/// Calls `Get` as generated client code does: wait for readiness, then the unary call.
async fn get<T>(client: &mut Grpc<T>, sku: &str) -> Result<Item, Status>
where
    T: GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: HttpBody<Data = Bytes> + Send + 'static,
    <T::ResponseBody as HttpBody>::Error: Into<BoxError>,
{
    client
        .ready()
        .await
        .map_err(|err| Status::from_error(err.into()))?;
    let request = tonic::Request::new(GetRequest { sku: sku.into() });
    client
        .unary(
            request,
            PathAndQuery::from_static(GET),
            ProstCodec::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

// ===== tests =====

#[tokio::test]
async fn unavailable_trips_the_breaker_and_the_next_call_fails_fast() {
    let (upstream, breaker, _clock, mut client) = setup().await;
    upstream.set(Mode::Unavailable);

    for _ in 0..FAILURES_TO_OPEN {
        let status = get(&mut client, "sku-1").await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(status.message(), "draining");
        assert!(Rejection::find(&status).is_none());
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(upstream.hits(), FAILURES_TO_OPEN as usize);

    // Rejected by the layer: the server is not called.
    let status = get(&mut client, "sku-1").await.unwrap_err();
    assert_eq!(upstream.hits(), FAILURES_TO_OPEN as usize);

    // tonic makes the layer's `BoxError` a `Status`: `Unknown`, with the rejection's text as the
    // message and the rejection itself as the source.
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("circuit open: breaker `inventory`"),
        "{status:?}"
    );
    match Rejection::find(&status) {
        Some(Rejection::Open(open)) => {
            assert_eq!(open.breaker(), "inventory");
            assert_eq!(open.retry_after(), Some(BREAK));
        }
        other => panic!("expected the breaker's rejection in the source chain, got {other:?}"),
    }

    let metrics = breaker.metrics();
    assert_eq!(metrics.failed_calls, u64::from(FAILURES_TO_OPEN));
    assert_eq!(metrics.successful_calls, 0);
    assert_eq!(metrics.rejected_open, 1);
    assert_eq!(metrics.total_calls, u64::from(FAILURES_TO_OPEN));
}

#[tokio::test]
async fn not_found_does_not_trip_the_breaker() {
    let (upstream, breaker, _clock, mut client) = setup().await;
    upstream.set(Mode::NotFound);

    let calls = 4 * FAILURES_TO_OPEN;
    for _ in 0..calls {
        let status = get(&mut client, "missing").await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), "no item missing");
    }

    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(upstream.hits(), calls as usize);
    let metrics = breaker.metrics();
    assert_eq!(metrics.ignored_calls, u64::from(calls));
    assert_eq!(metrics.failed_calls, 0);
    assert_eq!(metrics.consecutive_failures, 0);
    assert_eq!(metrics.rejected_open, 0);
}

#[tokio::test]
async fn ok_answers_are_successes_and_end_a_run_of_failures() {
    let (upstream, breaker, _clock, mut client) = setup().await;

    for _ in 0..5 {
        let item = get(&mut client, "sku-2").await.unwrap();
        assert_eq!(
            item,
            Item {
                sku: "sku-2".into(),
                quantity: 7
            }
        );
    }
    let metrics = breaker.metrics();
    assert_eq!(metrics.successful_calls, 5);
    assert_eq!(metrics.total_calls, 5);
    assert_eq!(metrics.failed_calls, 0);

    // One short of the threshold, an `OK`, one short again: never `FAILURES_TO_OPEN` in a row.
    for mode in [Mode::Unavailable, Mode::Ok, Mode::Unavailable] {
        upstream.set(mode);
        for _ in 0..FAILURES_TO_OPEN - 1 {
            let _ = get(&mut client, "sku-2").await;
        }
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    let metrics = breaker.metrics();
    assert_eq!(metrics.consecutive_failures, FAILURES_TO_OPEN - 1);
    assert_eq!(metrics.failed_calls, 2 * u64::from(FAILURES_TO_OPEN - 1));
    assert_eq!(
        metrics.successful_calls,
        5 + u64::from(FAILURES_TO_OPEN - 1)
    );
}

#[tokio::test]
async fn a_map_err_can_surface_the_rejection_as_unavailable() {
    let upstream = Arc::new(Upstream::default());
    let addr = serve(Arc::clone(&upstream)).await;
    let clock = ManualClock::new();
    let breaker = breaker(&clock);
    let guarded = ServiceBuilder::new()
        // tonic takes a `Status` found in the error as it is; keep the rejection as its source.
        .map_err(|err: BoxError| -> BoxError {
            match Rejection::find(&*err) {
                Some(rejection) => {
                    let mut status = Status::unavailable(rejection.to_string());
                    status.set_source(Arc::from(err));
                    Box::new(status)
                }
                None => err,
            }
        })
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(GrpcClassifier::new()))
        .service(grpc::channel(addr).await);
    let mut client = Grpc::new(guarded);

    upstream.set(Mode::Unavailable);
    for _ in 0..FAILURES_TO_OPEN {
        get(&mut client, "sku-3").await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    let status = get(&mut client, "sku-3").await.unwrap_err();
    assert_eq!(upstream.hits(), FAILURES_TO_OPEN as usize);
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().starts_with("circuit open"), "{status:?}");
    assert!(matches!(Rejection::find(&status), Some(Rejection::Open(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clones_of_the_client_share_the_breaker_across_tasks() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<Grpc<GuardedChannel>>();

    let (upstream, breaker, _clock, client) = setup().await;
    upstream.set(Mode::Unavailable);

    // Calls in flight when the circuit opens were admitted and still reach the server, so more
    // than `FAILURES_TO_OPEN` may; all of them end before the circuit is checked.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for _ in 0..FAILURES_TO_OPEN {
                    let _ = get(&mut client, "sku-5").await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let hits = upstream.hits();
    assert!(hits >= FAILURES_TO_OPEN as usize, "{hits}");

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { get(&mut client, "sku-5").await.unwrap_err() })
        })
        .collect();
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            matches!(Rejection::find(&status), Some(Rejection::Open(_))),
            "{status:?}"
        );
    }
    assert_eq!(upstream.hits(), hits);
    let metrics = breaker.metrics();
    assert_eq!(
        metrics.total_calls + metrics.rejected_open,
        8 * u64::from(FAILURES_TO_OPEN) + 8
    );
    assert_eq!(metrics.total_calls, hits as u64);
}

#[tokio::test]
async fn recovers_through_half_open_probes_once_the_server_is_back() {
    let (upstream, breaker, clock, mut client) = setup().await;
    upstream.set(Mode::Unavailable);
    for _ in 0..FAILURES_TO_OPEN {
        get(&mut client, "sku-4").await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    upstream.set(Mode::Ok);
    clock.advance(BREAK);
    let probes = breaker.config().success_threshold;
    for probe in 1..=probes {
        get(&mut client, "sku-4").await.unwrap();
        let expected = if probe < probes {
            CircuitState::HalfOpen
        } else {
            CircuitState::Closed
        };
        assert_eq!(breaker.state(), expected, "after probe {probe}");
    }
    assert_eq!(upstream.hits(), (FAILURES_TO_OPEN + probes) as usize);
    assert_eq!(breaker.metrics().transitions.to(CircuitState::Closed), 1);
}
