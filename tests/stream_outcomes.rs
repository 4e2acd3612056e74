//! Calls recorded when their response stream ends, over real connections on 127.0.0.1: a tonic
//! server that streams three messages and then ends with `UNAVAILABLE` or `OK` in its trailers, a
//! client that drops a stream halfway while it holds the only probe slot, and an HTTP body that
//! breaks off halfway.
//!
//! The gRPC server is written by hand the way `tonic-build` would generate it (one
//! server-streaming method, `/test.Inventory/List`, prost messages derived by hand: no protoc).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::codegen::BoxFuture;
use tonic::server::NamedService;
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;

#[path = "support/grpc.rs"]
mod grpc;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, Clock, GrpcClassifier,
    HttpClassifier, ManualClock, Rejection,
};

const LIST: &str = "/test.Inventory/List";
const BREAK: Duration = Duration::from_secs(60);

/// `message ListRequest { string prefix = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct ListRequest {
    #[prost(string, tag = "1")]
    prefix: String,
}

/// `message Item { string sku = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct Item {
    #[prost(string, tag = "1")]
    sku: String,
}

// ===== server =====

/// How a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Ending {
    /// Three items, then `OK`.
    Ok,
    /// Three items, then `UNAVAILABLE` in the trailers.
    Unavailable,
    /// One item, then nothing: the stream stays open.
    Hang,
}

/// `service Inventory { rpc List(ListRequest) returns (stream Item); }`
#[derive(Debug, Clone)]
struct InventoryServer {
    ending: Arc<AtomicU8>,
}

impl NamedService for InventoryServer {
    const NAME: &'static str = "test.Inventory";
}

type Items = futures::stream::BoxStream<'static, Result<Item, Status>>;

impl Service<http::Request<Body>> for InventoryServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != LIST {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let ending = self.ending.load(Ordering::SeqCst);
        let handler = tower::service_fn(move |request: tonic::Request<ListRequest>| {
            let prefix = request.into_inner().prefix;
            let item = move |n: u32| {
                Ok(Item {
                    sku: format!("{prefix}-{n}"),
                })
            };
            let items: Items = match ending {
                e if e == Ending::Ok as u8 => futures::stream::iter((1..=3).map(item)).boxed(),
                e if e == Ending::Unavailable as u8 => futures::stream::iter(
                    (1..=3)
                        .map(item)
                        .chain([Err(Status::unavailable("draining"))]),
                )
                .boxed(),
                _ => futures::stream::iter([item(1)])
                    .chain(futures::stream::pending())
                    .boxed(),
            };
            async move { Ok::<_, Status>(tonic::Response::new(items)) }
        });
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Item, ListRequest>::default());
            Ok(grpc.server_streaming(handler, request).await)
        })
    }
}

/// Serves the inventory on a free loopback port, in the background.
async fn serve(ending: Arc<AtomicU8>) -> SocketAddr {
    grpc::serve(InventoryServer { ending }).await
}

// ===== client =====

fn breaker(clock: &ManualClock, failures: u32) -> CircuitBreaker {
    CircuitBreaker::builder("inventory")
        .config(
            CircuitBreakerConfig::default()
                .failure_threshold(failures)
                .success_threshold(1)
                .half_open_max_calls(1)
                .break_duration(BREAK),
        )
        .clock(Clock::manual(clock))
        .build()
        .unwrap()
}

/// A client of the inventory at `addr` behind `layer`.
async fn guarded<L>(layer: L, addr: SocketAddr) -> Grpc<L::Service>
where
    L: tower::Layer<tonic::transport::Channel>,
{
    Grpc::new(
        ServiceBuilder::new()
            .layer(layer)
            .service(grpc::channel(addr).await),
    )
}

/// Starts `List` as generated client code does, through `client`.
async fn list<T>(client: &mut Grpc<T>) -> Result<Streaming<Item>, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<tower::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tower::BoxError>,
{
    client
        .ready()
        .await
        .map_err(|err| Status::from_error(err.into()))?;
    let request = tonic::Request::new(ListRequest {
        prefix: "sku".into(),
    });
    client
        .server_streaming(
            request,
            PathAndQuery::from_static(LIST),
            ProstCodec::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

/// Reads the whole stream: the items, then how it ended.
async fn drain(mut items: Streaming<Item>) -> (usize, Result<(), Status>) {
    let mut count = 0;
    loop {
        match items.message().await {
            Ok(Some(_)) => count += 1,
            Ok(None) => return (count, Ok(())),
            Err(status) => return (count, Err(status)),
        }
    }
}

#[tokio::test]
async fn a_stream_that_ends_unavailable_after_three_messages_is_a_failure_and_trips_the_breaker() {
    let ending = Arc::new(AtomicU8::new(Ending::Unavailable as u8));
    let addr = serve(Arc::clone(&ending)).await;
    let clock = ManualClock::new();
    let breaker = breaker(&clock, 2);
    let mut client = guarded(CircuitBreakerLayer::grpc(breaker.clone()), addr).await;
    for round in 1..=2 {
        let items = list(&mut client).await.expect("the head is OK");
        let (count, ended) = drain(items).await;
        assert_eq!(count, 3);
        assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
        assert_eq!(breaker.metrics().failed_calls, round);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let rejected = list(&mut client).await.unwrap_err();
    assert!(Rejection::find(&rejected).is_some(), "{rejected:?}");

    // The same streams classified at the head only count as successes: what this layer fixes.
    let head_only = CircuitBreaker::new("head-only");
    let mut client = guarded(
        CircuitBreakerLayer::new(head_only.clone()).classify_with(GrpcClassifier::new()),
        addr,
    )
    .await;
    let (_, ended) = drain(list(&mut client).await.unwrap()).await;
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    assert_eq!(head_only.metrics().failed_calls, 0);
    assert_eq!(head_only.metrics().successful_calls, 1);
}

#[tokio::test]
async fn tower_https_grpc_classifier_through_the_adapter_agrees_at_the_end_of_the_stream() {
    use tower_circuit_breaker::layer::TowerHttp;
    use tower_http::classify::{GrpcCode as TowerHttpCode, GrpcErrorsAsFailures};

    let ending = Arc::new(AtomicU8::new(Ending::Unavailable as u8));
    let addr = serve(Arc::clone(&ending)).await;
    let breaker = breaker(&ManualClock::new(), 10);
    let classifier = TowerHttp(GrpcErrorsAsFailures::new().with_success(TowerHttpCode::NotFound));
    let mut client = guarded(
        CircuitBreakerLayer::new(breaker.clone()).classify_body_with(classifier),
        addr,
    )
    .await;
    let (count, ended) = drain(list(&mut client).await.unwrap()).await;
    assert_eq!((count, ended.unwrap_err().code()), (3, Code::Unavailable));
    ending.store(Ending::Ok as u8, Ordering::SeqCst);
    let (count, ended) = drain(list(&mut client).await.unwrap()).await;
    assert_eq!((count, ended.is_ok()), (3, true));
    let metrics = breaker.metrics();
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (1, 1));
}

#[tokio::test]
async fn a_stream_that_ends_ok_is_a_success() {
    let ending = Arc::new(AtomicU8::new(Ending::Ok as u8));
    let addr = serve(ending).await;
    let breaker = breaker(&ManualClock::new(), 1);
    let mut client = guarded(CircuitBreakerLayer::grpc(breaker.clone()), addr).await;
    for _ in 0..5 {
        let (count, ended) = drain(list(&mut client).await.unwrap()).await;
        assert_eq!((count, ended.is_ok()), (3, true));
    }
    let metrics = breaker.metrics();
    assert_eq!((metrics.successful_calls, metrics.failed_calls), (5, 0));
    assert_eq!(metrics.state, CircuitState::Closed);
}

#[tokio::test]
async fn a_client_that_drops_the_stream_halfway_frees_the_probe_slot() {
    let ending = Arc::new(AtomicU8::new(Ending::Unavailable as u8));
    let addr = serve(Arc::clone(&ending)).await;
    let clock = ManualClock::new();
    let breaker = breaker(&clock, 1);
    let mut client = guarded(CircuitBreakerLayer::grpc(breaker.clone()), addr).await;
    let (_, ended) = drain(list(&mut client).await.unwrap()).await;
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    assert_eq!(breaker.state(), CircuitState::Open);
    clock.advance(BREAK);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    // The probe's stream sends one item and then nothing: the caller reads it and walks away.
    ending.store(Ending::Hang as u8, Ordering::SeqCst);
    let mut items = list(&mut client).await.unwrap();
    assert!(items.message().await.unwrap().is_some());
    assert_eq!(
        breaker.metrics().half_open_in_flight,
        1,
        "the stream holds the probe"
    );
    let other = list(&mut client).await.unwrap_err();
    assert!(
        Rejection::find(&other).is_some(),
        "one probe at a time: {other:?}"
    );
    drop(items);
    let metrics = breaker.metrics();
    assert_eq!(
        metrics.half_open_in_flight, 0,
        "dropping the stream freed the slot"
    );
    assert_eq!(metrics.cancelled_calls, 1);

    // The slot is free: the next call is the probe, and a good stream closes the circuit.
    ending.store(Ending::Ok as u8, Ordering::SeqCst);
    let (count, ended) = drain(list(&mut client).await.unwrap()).await;
    assert_eq!((count, ended.is_ok()), (3, true));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// ===== HTTP =====

/// A server that answers every request with a head promising 100 bytes, sends 5 and closes
/// the connection.
async fn breaking_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = [0_u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http_body_that_breaks_off_halfway_is_a_failure_with_the_body_classified() {
    let addr = breaking_server().await;
    let url: http::Uri = format!("http://{addr}/report").parse().unwrap();
    let request = || {
        http::Request::get(url.clone())
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    let at_end = CircuitBreaker::new("at-end");
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(at_end.clone()).classify_body_with(HttpClassifier::new()))
        .service(client.clone());
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.into_body().collect().await.is_err(),
        "the body breaks off"
    );
    assert_eq!(at_end.metrics().failed_calls, 1);

    // At the head only, the same call is a success.
    let at_head = CircuitBreaker::new("at-head");
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(at_head.clone()).classify_with(HttpClassifier::new()))
        .service(client);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert!(response.into_body().collect().await.is_err());
    assert_eq!(at_head.metrics().failed_calls, 0);
    assert_eq!(at_head.metrics().successful_calls, 1);
}

// ===== exactly once =====

/// How a test body ends.
#[derive(Debug, Clone, Copy)]
enum BodyEnd {
    /// Trailers with this `grpc-status`.
    Trailers(&'static str),
    Plain,
    Error,
    /// The reader drops it after the first frame.
    Dropped,
}

/// A body of two data frames and then its end, polled on whatever thread the reader is on.
struct TestBody {
    left: u8,
    end: BodyEnd,
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left > 0 {
            self.left -= 1;
            return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))));
        }
        match self.end {
            BodyEnd::Trailers(code) => {
                self.end = BodyEnd::Plain;
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static(code));
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
            BodyEnd::Error => Poll::Ready(Some(Err(std::io::Error::other("broke off")))),
            BodyEnd::Plain | BodyEnd::Dropped => Poll::Ready(None),
        }
    }
}

/// Eight tasks on four threads make calls whose bodies end every way there is (trailers, plain
/// end, error, dropped halfway, a 503 head), while another thread resets, isolates and moves the
/// clock through breaks: every admitted call is recorded exactly once (the counts add up to the
/// calls admitted), and no probe slot is left held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_body_held_permit_is_released_exactly_once_whatever_the_order() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("streams")
        .config(
            CircuitBreakerConfig::default()
                .failure_threshold(4)
                .half_open_max_calls(2)
                .success_threshold(2)
                .break_duration(Duration::from_millis(5)),
        )
        .clock(Clock::manual(&clock))
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(breaker.clone()).classify_body_with(GrpcClassifier::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let meddler = {
        let (breaker, clock, stop) = (breaker.clone(), clock.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut turn = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                match turn % 7 {
                    0 => breaker.reset(),
                    1 => breaker.isolate(),
                    2 => breaker.automatic(),
                    _ => clock.advance(Duration::from_millis(2)),
                }
                std::thread::yield_now();
            }
        })
    };
    let mut tasks = Vec::new();
    for task in 0..8_u64 {
        let layer = layer.clone();
        tasks.push(tokio::spawn(async move {
            let mut service = tower::ServiceBuilder::new()
                .layer(layer)
                .service(tower::service_fn(
                    |(status, end): (u16, BodyEnd)| async move {
                        let response = http::Response::builder()
                            .status(status)
                            .body(TestBody { left: 2, end })
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    },
                ));
            let mut admitted = 0_u64;
            for call in 0..20_000_u64 {
                if admitted == 400 {
                    break;
                }
                let plan = match (task + call) % 8 {
                    0 | 1 | 5 => (200, BodyEnd::Trailers("0")),
                    2 => (200, BodyEnd::Trailers("14")),
                    3 => (200, BodyEnd::Error),
                    4 => (200, BodyEnd::Dropped),
                    6 => (503, BodyEnd::Plain),
                    _ => (200, BodyEnd::Plain),
                };
                let Ok(response) = service.ready().await.unwrap().call(plan).await else {
                    continue;
                };
                admitted += 1;
                let mut body = response.into_body();
                if matches!(plan.1, BodyEnd::Dropped) {
                    let _ = body.frame().await;
                    drop(body);
                } else {
                    while let Some(frame) = body.frame().await {
                        if frame.is_err() {
                            break;
                        }
                    }
                }
                tokio::task::yield_now().await;
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    meddler.join().unwrap();
    let metrics = breaker.metrics();
    assert!(admitted > 0);
    assert_eq!(metrics.total_calls, admitted, "{metrics:?}");
    assert_eq!(metrics.half_open_in_flight, 0);
    assert!(
        metrics.cancelled_calls > 0 && metrics.failed_calls > 0 && metrics.successful_calls > 0
    );
    assert!(
        metrics.transitions.to_open > 0,
        "the breaker moved while calls ran"
    );
    println!("{admitted} calls admitted, {metrics:?}");
}
