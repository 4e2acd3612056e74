//! The full resilience stack in the order Polly wraps it (fallback, overall timeout, retry,
//! breaker, per-try timeout, client), over real HTTP: a hyper client against a flaky axum
//! upstream on 127.0.0.1 that answers, fails or hangs on demand.
//!
//! The servers make paused time unsafe (the runtime would jump the clock while bytes cross the
//! loopback), so these tests run on real time with short durations, and wait for the breaker with
//! `ready().await`, never with a fixed sleep.

#[path = "../examples/support/flaky_upstream.rs"]
mod flaky_upstream;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flaky_upstream::{FlakyUpstream, Mode};
use http::{Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::fallback::{ErrorPredicate, FallbackLayer, IsRejection, IsTimeout};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, HttpClassifier,
    RetryPolicy,
};

const PER_TRY: Duration = Duration::from_millis(200);
const OVERALL: Duration = Duration::from_millis(500);
const BREAK: Duration = Duration::from_millis(300);
const ATTEMPTS: u32 = 3;

/// A hyper client as a `Service<Uri>`, with the body read into memory.
fn http_client(
) -> impl Service<Uri, Response = Response<Bytes>, Error = BoxError, Future: Send> + Clone + Send {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    tower::service_fn(move |uri: Uri| {
        let client = client.clone();
        async move {
            let (parts, body) = client.get(uri).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        }
    })
}

struct Stack<S> {
    service: S,
    breaker: CircuitBreaker,
    upstream: FlakyUpstream,
}

async fn stack() -> Stack<impl Service<Uri, Response = Response<Bytes>, Error = BoxError> + Clone> {
    let upstream = FlakyUpstream::start().await.unwrap();
    let breaker = CircuitBreaker::with_config(
        "upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(3)
            .break_duration(BREAK)
            .success_threshold(1)
            .half_open_max_calls(1),
    )
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(
            FallbackLayer::new_sync(|_: BoxError| Response::new(Bytes::from_static(b"fallback")))
                .when(IsRejection.or(IsTimeout)),
        )
        .timeout(OVERALL)
        .retry(
            RetryPolicy::new()
                .max_attempts(ATTEMPTS)
                .base_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(20))
                .classify_with(HttpClassifier::new()),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        .timeout(PER_TRY)
        .service(http_client());
    Stack {
        service,
        breaker,
        upstream,
    }
}

async fn get<S>(stack: &mut Stack<S>) -> Result<(StatusCode, Bytes), BoxError>
where
    S: Service<Uri, Response = Response<Bytes>, Error = BoxError>,
{
    let uri: Uri = stack.upstream.url().parse().unwrap();
    let response = stack.service.ready().await?.call(uri).await?;
    Ok((response.status(), response.into_body()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_upstream_answers_in_one_try() {
    let mut stack = stack().await;
    let (status, body) = get(&mut stack).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"items"[..]));
    assert_eq!(stack.upstream.hits(), 1);
    assert_eq!(stack.breaker.metrics().successful_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_try_is_seen_by_the_breaker_and_the_retry_stops_at_the_rejection() {
    let mut stack = stack().await;
    stack.upstream.set(Mode::Failing);

    // Three tries, three 503s: the last one opens the circuit; the caller gets the 503.
    let (status, _) = get(&mut stack).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stack.upstream.hits(), u64::from(ATTEMPTS));
    let metrics = stack.breaker.metrics();
    assert_eq!(metrics.failed_calls, u64::from(ATTEMPTS));
    assert_eq!(metrics.state, CircuitState::Open);

    // Open: the breaker rejects, the retry does not retry a rejection, the fallback answers.
    let (status, body) = get(&mut stack).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"fallback"[..]));
    assert_eq!(
        stack.upstream.hits(),
        u64::from(ATTEMPTS),
        "nothing reached the upstream"
    );
    assert_eq!(
        stack.breaker.metrics().rejected_open,
        1,
        "one rejection: no retry of it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeouts_count_as_failures_and_the_overall_timeout_bounds_the_total() {
    let mut stack = stack().await;
    stack.upstream.set(Mode::Hanging);
    let started = Instant::now();
    let (status, body) = get(&mut stack).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"fallback"[..]),
        "the fallback answers the overall timeout"
    );
    // Bounded by the overall timeout, not by three per-try timeouts plus backoff (> 600 ms).
    assert!(
        took >= OVERALL && took < OVERALL + Duration::from_secs(1),
        "took {took:?}"
    );

    // Tries timed out inside the breaker (two, on an unloaded machine) before the overall
    // timeout cut the next one short; each was a failure and a timeout.
    let metrics = stack.breaker.metrics();
    assert!((1..=2).contains(&metrics.timeouts), "{metrics:?}");
    assert_eq!(metrics.failed_calls, metrics.timeouts);
    assert!(metrics.timeouts + metrics.cancelled_calls <= u64::from(ATTEMPTS));
    assert_eq!(metrics.state, CircuitState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_break_a_probe_closes_the_circuit() {
    let mut stack = stack().await;
    stack.upstream.set(Mode::Failing);
    let _ = get(&mut stack).await.unwrap();
    assert_eq!(stack.breaker.state(), CircuitState::Open);

    stack.upstream.set(Mode::Healthy);
    let waited = Instant::now();
    stack.breaker.ready().await;
    assert!(waited.elapsed() <= BREAK + Duration::from_millis(100));

    let (status, body) = get(&mut stack).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"items"[..]));
    assert_eq!(stack.breaker.state(), CircuitState::Closed);
    let transitions = stack.breaker.metrics().transitions;
    assert_eq!(
        (
            transitions.to_open,
            transitions.to_half_open,
            transitions.to_closed
        ),
        (1, 1, 1)
    );
}
