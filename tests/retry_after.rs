//! `Retry-After` over real HTTP: a hyper client behind `RetryPolicy::http()` and a circuit
//! breaker, against hyper servers on 127.0.0.1 that answer 503 or 429 with a `Retry-After`.
//!
//! Paused time with real sockets. Each test runs on a paused current-thread runtime, which moves
//! its clock only when it has no work left and a timer is pending (auto-advance); it then jumps
//! to that timer. Nothing here arms a timer but the retry's wait: hyper's server and the legacy
//! client arm none unless given a timer (header-read and pool-idle timeouts need one), the
//! servers answer at once, and the client connects to an IP literal (no happy-eyeballs delay).
//! So while bytes cross the loopback no timer is pending and the clock stands still, and during
//! the retry's wait the clock jumps exactly over it. Each try is stamped with tokio's clock as it
//! leaves for the socket, so the gap between two tries is the wait the policy chose, to the
//! nanosecond, and no test waits in real time. A test that armed another timer (a per-try
//! timeout) would see it fire while a response was still on the wire: these stacks have none.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::retry::{HttpRetryAfter, RetryPolicy};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, HttpClassifier,
};

/// One answer of an [`Upstream`]: a status, and a `Retry-After` value if any.
type Answer = (StatusCode, Option<&'static str>);

/// A hyper server on a free port of 127.0.0.1 that gives its answers in order, repeating the
/// last, and counts the requests that reach it.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(answers: &[Answer]) -> Self {
        let answers: Arc<[Answer]> = answers.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        // The server runs until the test's runtime ends.
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let answers = Arc::clone(&answers);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |_: Request<Incoming>| {
                        let hit = counter.fetch_add(1, Ordering::SeqCst);
                        let (status, retry_after) = answers[hit.min(answers.len() - 1)];
                        let mut response = Response::builder().status(status);
                        if let Some(value) = retry_after {
                            response = response.header(RETRY_AFTER, value);
                        }
                        let body = Full::new(Bytes::from(status.as_str().to_owned()));
                        let response = response.body(body).unwrap();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, hits }
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        Request::get(format!("http://{}/items", self.addr))
            .body(Empty::new())
            .unwrap()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// When each try left the client, by tokio's clock.
#[derive(Clone, Default)]
struct Tries(Arc<Mutex<Vec<Instant>>>);

impl Tries {
    fn record(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Time between each try and the next.
    fn gaps(&self) -> Vec<Duration> {
        let tries = self.0.lock().unwrap();
        tries.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }
}

struct Outcome {
    status: StatusCode,
    retry_after: Option<String>,
    body: Bytes,
    took: Duration,
}

/// Sends one request to `upstream` through retry, breaker and a hyper client, and reads the
/// answer whole.
async fn send(
    upstream: &Upstream,
    policy: RetryPolicy<HttpClassifier, HttpRetryAfter>,
    breaker: &CircuitBreaker,
    tries: &Tries,
) -> Outcome {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(policy)
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        .map_request(move |request: Request<Empty<Bytes>>| {
            recorder.record();
            request
        })
        .map_err(BoxError::from)
        .service(client);

    let started = Instant::now();
    let response = service
        .ready()
        .await
        .unwrap()
        .call(upstream.request())
        .await
        .unwrap();
    let took = started.elapsed();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Outcome {
        status,
        retry_after,
        body,
        took,
    }
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::with_config(
        "upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(5)
            .break_duration(Duration::from_secs(60)),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_2_makes_the_second_try_wait_2_s_and_it_succeeds() {
    let upstream = Upstream::start(&[
        (StatusCode::SERVICE_UNAVAILABLE, Some("2")),
        (StatusCode::OK, None),
    ])
    .await;
    let (breaker, tries) = (breaker(), Tries::default());

    // Default jitter: a hinted wait is not jittered, so the gap is exact all the same.
    let outcome = send(&upstream, RetryPolicy::http(), &breaker, &tries).await;

    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(&outcome.body[..], b"200");
    assert_eq!(upstream.hits(), 2, "two requests crossed the socket");
    assert_eq!(tries.gaps(), [Duration::from_secs(2)]);
    assert_eq!(outcome.took, Duration::from_secs(2));
    let metrics = breaker.metrics();
    assert_eq!((metrics.failed_calls, metrics.successful_calls), (1, 1));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_600_returns_the_503_after_exactly_one_try() {
    let upstream = Upstream::start(&[(StatusCode::SERVICE_UNAVAILABLE, Some("600"))]).await;
    let (breaker, tries) = (breaker(), Tries::default());

    let policy = RetryPolicy::http().max_attempts(5);
    let outcome = send(&upstream, policy, &breaker, &tries).await;

    assert_eq!(outcome.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        outcome.retry_after.as_deref(),
        Some("600"),
        "the caller sees the server's hint"
    );
    assert_eq!(&outcome.body[..], b"503");
    assert_eq!(upstream.hits(), 1);
    assert_eq!(tries.count(), 1);
    assert_eq!(outcome.took, Duration::ZERO, "no wait at all");
    assert_eq!(breaker.metrics().failed_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_longer_limit_waits_out_the_600_s() {
    let upstream = Upstream::start(&[
        (StatusCode::SERVICE_UNAVAILABLE, Some("600")),
        (StatusCode::OK, None),
    ])
    .await;
    let (breaker, tries) = (breaker(), Tries::default());

    let policy = RetryPolicy::http().max_retry_after(Duration::from_secs(600));
    let outcome = send(&upstream, policy, &breaker, &tries).await;

    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 2);
    assert_eq!(tries.gaps(), [Duration::from_secs(600)]);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_retried_after_its_wait() {
    let upstream = Upstream::start(&[
        (StatusCode::TOO_MANY_REQUESTS, Some("1")),
        (StatusCode::OK, None),
    ])
    .await;
    let (breaker, tries) = (breaker(), Tries::default());

    let outcome = send(&upstream, RetryPolicy::http(), &breaker, &tries).await;

    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 2);
    assert_eq!(tries.gaps(), [Duration::from_secs(1)]);
    // The breaker's own classifier ignores the 429: the retry waited, the breaker did not count
    // a failure.
    let metrics = breaker.metrics();
    assert_eq!(
        (
            metrics.ignored_calls,
            metrics.failed_calls,
            metrics.successful_calls
        ),
        (1, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn no_hint_or_an_unreadable_one_backs_off_as_usual() {
    let upstream = Upstream::start(&[
        (StatusCode::SERVICE_UNAVAILABLE, None),
        (StatusCode::SERVICE_UNAVAILABLE, Some("soon")),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("2")),
        (StatusCode::OK, None),
    ])
    .await;
    let (breaker, tries) = (breaker(), Tries::default());

    let policy = RetryPolicy::http().max_attempts(4).jitter(0.0);
    let outcome = send(&upstream, policy, &breaker, &tries).await;

    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 4);
    // 100 ms doubling: none of the three waits is a hint (a 500's `Retry-After` is not read).
    let ms = Duration::from_millis;
    assert_eq!(tries.gaps(), [ms(100), ms(200), ms(400)]);
}
