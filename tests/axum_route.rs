//! The breaker layer on axum routes, over real HTTP on 127.0.0.1: it trips after N failing
//! requests and stays open across requests, although axum calls `Layer::layer` again for each
//! request on handler routes (state lives in the layer, so nothing resets).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState, Outcome,
};

const FAILURES_TO_OPEN: u32 = 3;

/// 5xx responses are failures; everything else is a success.
fn server_errors(result: &Result<Response, BoxError>) -> Outcome {
    match result {
        Ok(response) if response.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// A breaker's rejection as a 503 with `Retry-After`; other errors as a 500.
async fn rejection_to_response(err: BoxError) -> Response {
    match err.downcast_ref::<CircuitOpen>() {
        Some(open) => {
            let seconds = open.retry_after().unwrap_or_default().as_secs().max(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", seconds.to_string())],
                "circuit open",
            )
                .into_response()
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::with_config(
        "db",
        CircuitBreakerConfig::default()
            .failure_threshold(FAILURES_TO_OPEN)
            .break_duration(Duration::from_secs(60)),
    )
    .unwrap()
}

/// A handler that always fails, counting how often it runs.
fn failing_handler(hits: &Arc<AtomicUsize>) -> impl Fn() -> std::future::Ready<StatusCode> + Clone {
    let hits = Arc::clone(hits);
    move || {
        hits.fetch_add(1, Ordering::SeqCst);
        std::future::ready(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// GETs `path` over a real HTTP/1 connection; returns the status and the body.
async fn get_status(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn assert_trips_and_stays_open(
    addr: SocketAddr,
    path: &str,
    breaker: &CircuitBreaker,
    hits: &AtomicUsize,
) {
    for _ in 0..FAILURES_TO_OPEN {
        assert_eq!(
            get_status(addr, path).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    for _ in 0..5 {
        let (status, body) = get_status(addr, path).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "circuit open")
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        FAILURES_TO_OPEN as usize,
        "the handler was not called while open"
    );
    let metrics = breaker.metrics();
    assert_eq!(
        (metrics.failed_calls, metrics.rejected_open),
        (u64::from(FAILURES_TO_OPEN), 5)
    );
}

#[tokio::test]
async fn the_layer_on_a_route_trips_and_stays_open_across_requests() {
    let breaker = breaker();
    let hits = Arc::new(AtomicUsize::new(0));
    let guard = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rejection_to_response))
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(server_errors));
    let app = Router::new().route("/orders", get(failing_handler(&hits)).layer(guard));
    let addr = serve(app).await;
    assert_trips_and_stays_open(addr, "/orders", &breaker, &hits).await;
}

#[tokio::test]
async fn the_layer_as_a_route_layer_trips_and_stays_open_across_requests() {
    let breaker = breaker();
    let hits = Arc::new(AtomicUsize::new(0));
    let guard = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(rejection_to_response))
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(server_errors));
    let app = Router::new()
        .route("/orders", get(failing_handler(&hits)))
        .route("/health", get(|| async { "ok" }))
        .route_layer(guard);
    let addr = serve(app).await;
    assert_trips_and_stays_open(addr, "/orders", &breaker, &hits).await;
    // One breaker guards every route of the router: /health is rejected too.
    assert_eq!(
        get_status(addr, "/health").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Unknown paths never reach a route layer.
    assert_eq!(get_status(addr, "/missing").await.0, StatusCode::NOT_FOUND);
}
