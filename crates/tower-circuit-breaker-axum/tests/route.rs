//! The route layer on axum routes over real HTTP on 127.0.0.1: 5xx responses open the breaker,
//! a rejection is a 503 with `Retry-After` and never reaches the handler, 4xx do not count, and
//! a success after the break closes the circuit again. Time is a `ManualClock`: nothing sleeps.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tower::{BoxError, Service, ServiceExt};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, Clock, HttpClassifier, ManualClock, Outcome,
};
use tower_circuit_breaker_axum::route::CircuitBreakerRouteLayer;

#[path = "support/http.rs"]
mod support_http;

use support_http::serve;

const FAILURES_TO_OPEN: u32 = 3;
const BREAK: Duration = Duration::from_secs(30);

/// A breaker on a manual clock: opens after `FAILURES_TO_OPEN` failures in a row for `BREAK`,
/// closes after one successful probe.
fn breaker(time: &ManualClock) -> CircuitBreaker {
    breaker_with(time, CircuitBreakerConfig::default())
}

fn breaker_with(time: &ManualClock, config: CircuitBreakerConfig) -> CircuitBreaker {
    CircuitBreaker::builder("db")
        .config(
            config
                .failure_threshold(FAILURES_TO_OPEN)
                .break_duration(BREAK)
                .success_threshold(1),
        )
        .clock(Clock::manual(time))
        .build()
        .unwrap()
}

/// A handler answering with whatever status `status` holds, counting its calls.
#[derive(Clone)]
struct Scripted {
    status: Arc<std::sync::Mutex<StatusCode>>,
    hits: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(status: StatusCode) -> Self {
        Self {
            status: Arc::new(std::sync::Mutex::new(status)),
            hits: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn answer_with(&self, status: StatusCode) {
        *self.status.lock().unwrap() = status;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn handler(&self) -> impl Fn() -> std::future::Ready<StatusCode> + Clone + Send + 'static {
        let this = self.clone();
        move || {
            this.hits.fetch_add(1, Ordering::SeqCst);
            std::future::ready(*this.status.lock().unwrap())
        }
    }
}

/// A GET's status, `Retry-After` header and body, over a real HTTP/1 connection.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
}

async fn get_from(addr: SocketAddr, path: &str) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        retry_after,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn open_it(addr: SocketAddr, path: &str) {
    for _ in 0..FAILURES_TO_OPEN {
        assert_eq!(
            get_from(addr, path).await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

#[tokio::test]
async fn server_errors_open_the_breaker_and_rejections_skip_the_handler() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;

    open_it(addr, "/orders").await;
    assert_eq!(breaker.state(), CircuitState::Open);

    for _ in 0..4 {
        let answer = get_from(addr, "/orders").await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after.as_deref(), Some("30"));
        assert_eq!(
            answer.body, "circuit open: breaker `db`, next probe in 30s",
            "the body is the rejection's text"
        );
    }
    assert_eq!(
        handler.hits(),
        FAILURES_TO_OPEN as usize,
        "the handler is not called while the circuit is open"
    );
    let metrics = breaker.metrics();
    assert_eq!(metrics.failed_calls, u64::from(FAILURES_TO_OPEN));
    assert_eq!(metrics.rejected_open, 4);
}

#[tokio::test]
async fn retry_after_is_the_time_to_the_probe_rounded_up_to_whole_seconds() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;
    open_it(addr, "/orders").await;

    // (time since the breaker opened, expected header)
    let steps = [
        (Duration::ZERO, "30"),
        (Duration::from_millis(200), "30"), // 29.8 s left
        (Duration::from_millis(10_000), "20"),
        (Duration::from_millis(19_000), "11"), // 10.8 s left
        (Duration::from_millis(29_800), "1"),  // 200 ms left
        (Duration::from_millis(29_999), "1"),  // 1 ms left
    ];
    let mut elapsed = Duration::ZERO;
    for (at, expected) in steps {
        time.advance(at - elapsed);
        elapsed = at;
        let answer = get_from(addr, "/orders").await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{at:?}");
        assert_eq!(answer.retry_after.as_deref(), Some(expected), "{at:?}");
    }
}

#[tokio::test]
async fn client_errors_do_not_count_as_failures() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;

    // Failures interleaved with 4xx: the 4xx neither reset the count nor add to it.
    for round in 0..(FAILURES_TO_OPEN - 1) {
        handler.answer_with(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            get_from(addr, "/orders").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        for status in [
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            handler.answer_with(status);
            assert_eq!(get_from(addr, "/orders").await.status, status);
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "round {round}");
    }
    let metrics = breaker.metrics();
    assert_eq!(metrics.consecutive_failures, FAILURES_TO_OPEN - 1);
    assert_eq!(metrics.ignored_calls, 3 * u64::from(FAILURES_TO_OPEN - 1));

    // The next 5xx is the last failure of the run: it opens the circuit.
    handler.answer_with(StatusCode::INTERNAL_SERVER_ERROR);
    get_from(addr, "/orders").await;
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test]
async fn unmatched_paths_never_reach_the_breaker() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::OK);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;

    for _ in 0..5 {
        assert_eq!(
            get_from(addr, "/no-such-path").await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(breaker.metrics().total_calls, 0);
}

#[tokio::test]
async fn a_success_after_the_break_closes_the_circuit() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;
    open_it(addr, "/orders").await;

    time.advance(BREAK - Duration::from_millis(1));
    assert_eq!(
        get_from(addr, "/orders").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    time.advance(Duration::from_millis(1));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    handler.answer_with(StatusCode::OK);
    let answer = get_from(addr, "/orders").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.retry_after, None);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        handler.hits(),
        FAILURES_TO_OPEN as usize + 1,
        "one probe reached the handler"
    );
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;
    open_it(addr, "/orders").await;

    time.advance(BREAK);
    assert_eq!(
        get_from(addr, "/orders").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(breaker.state(), CircuitState::Open);
    let answer = get_from(addr, "/orders").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after.as_deref(), Some("30"));
}

/// A handler that waits until released, to hold a half-open probe in flight.
#[derive(Clone)]
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl Gate {
    fn new() -> Self {
        Self {
            entered: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        }
    }

    fn handler(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = StatusCode> + Send>>
           + Clone
           + Send
           + Sync
           + 'static {
        let gate = self.clone();
        move || {
            let gate = gate.clone();
            Box::pin(async move {
                gate.entered.notify_one();
                gate.release.notified().await;
                StatusCode::OK
            })
        }
    }
}

#[tokio::test]
async fn half_open_with_every_probe_taken_answers_retry_after_one_second() {
    let time = ManualClock::new();
    let breaker = breaker_with(
        &time,
        CircuitBreakerConfig::default().half_open_max_calls(1),
    );
    let failing = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let gate = Gate::new();
    let app = Router::new()
        .route("/orders", get(failing.handler()))
        .route("/slow", get(gate.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;
    open_it(addr, "/orders").await;
    time.advance(BREAK);

    let probe = tokio::spawn(async move { get_from(addr, "/slow").await });
    gate.entered.notified().await;
    assert_eq!(breaker.metrics().half_open_in_flight, 1);

    let answer = get_from(addr, "/orders").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(
        answer.body,
        "circuit half-open: breaker `db` has no free probe slot"
    );
    assert_eq!(breaker.metrics().rejected_half_open, 1);

    gate.release.notify_one();
    assert_eq!(probe.await.unwrap().status, StatusCode::OK);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test]
async fn an_isolated_breaker_answers_without_retry_after() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::OK);
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(CircuitBreakerRouteLayer::new(breaker.clone()));
    let addr = serve(app).await;

    breaker.isolate();
    let answer = get_from(addr, "/orders").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after, None);
    assert_eq!(answer.body, "circuit open: breaker `db` is isolated");
    assert_eq!(handler.hits(), 0);
}

#[tokio::test]
async fn a_layer_on_one_route_guards_only_that_route() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::INTERNAL_SERVER_ERROR);
    let app = Router::new()
        .route(
            "/orders",
            get(handler.handler()).layer(CircuitBreakerRouteLayer::new(breaker.clone())),
        )
        .route("/health", get(|| async { "ok" }));
    let addr = serve(app).await;

    open_it(addr, "/orders").await;
    assert_eq!(
        get_from(addr, "/orders").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_from(addr, "/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_custom_classifier_decides_what_fails() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let handler = Scripted::new(StatusCode::TOO_MANY_REQUESTS);
    // A service that sheds load with 429s: count them as failures.
    let layer = CircuitBreakerRouteLayer::new(breaker.clone())
        .classify_with(HttpClassifier::new().too_many_requests_as_failure(true));
    let app = Router::new()
        .route("/orders", get(handler.handler()))
        .route_layer(layer);
    let addr = serve(app).await;

    for _ in 0..FAILURES_TO_OPEN {
        assert_eq!(
            get_from(addr, "/orders").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);

    // A closure works too.
    let breaker = CircuitBreaker::new("teapot");
    let layer = CircuitBreakerRouteLayer::new(breaker.clone()).classify_with(
        |result: &Result<Response, BoxError>| match result {
            Ok(response) if response.status() == StatusCode::IM_A_TEAPOT => Outcome::Failure,
            _ => Outcome::Success,
        },
    );
    let app = Router::new()
        .route("/tea", get(|| async { StatusCode::IM_A_TEAPOT }))
        .route_layer(layer);
    let addr = serve(app).await;
    get_from(addr, "/tea").await;
    assert_eq!(breaker.metrics().failed_calls, 1);
}

/// An inner service that never answers, to drop a response future unfinished.
#[derive(Clone)]
struct Pending;

impl Service<Request<Body>> for Pending {
    type Response = Response;
    type Error = Infallible;
    type Future = std::future::Pending<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Body>) -> Self::Future {
        std::future::pending()
    }
}

#[tokio::test]
async fn a_dropped_response_future_releases_its_probe_slot() {
    let time = ManualClock::new();
    let breaker = breaker_with(
        &time,
        CircuitBreakerConfig::default().half_open_max_calls(1),
    );
    for _ in 0..FAILURES_TO_OPEN {
        breaker.try_acquire().unwrap().failure();
    }
    time.advance(BREAK);

    let mut service = tower::ServiceBuilder::new()
        .layer(CircuitBreakerRouteLayer::new(breaker.clone()))
        .service(Pending);
    let future = service
        .ready()
        .await
        .unwrap()
        .call(Request::new(Body::empty()));
    assert_eq!(breaker.metrics().half_open_in_flight, 1);
    drop(future);

    let metrics = breaker.metrics();
    assert_eq!(metrics.half_open_in_flight, 0);
    assert_eq!(metrics.cancelled_calls, 1);
    // The slot is free again: the next request is a probe, not a rejection.
    let _probe = service
        .ready()
        .await
        .unwrap()
        .call(Request::new(Body::empty()));
    assert_eq!(breaker.metrics().rejected_half_open, 0);
}

#[tokio::test]
async fn every_service_of_one_layer_shares_its_breaker() {
    let time = ManualClock::new();
    let breaker = breaker(&time);
    let layer = CircuitBreakerRouteLayer::new(breaker.clone());
    let failing = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(StatusCode::INTERNAL_SERVER_ERROR)
    });
    // Each failure through a service of its own, as axum makes them.
    for _ in 0..FAILURES_TO_OPEN {
        let response = tower::Layer::layer(&layer, failing)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let response = tower::Layer::layer(&layer, failing)
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(breaker.state(), CircuitState::Open);
}
