//! The fallback answers a response, not only an error, at the top of the full resilience stack
//! in the order Polly wraps it (fallback, overall timeout, retry, breaker, per-try timeout,
//! client), over real HTTP: a hyper client against an upstream on 127.0.0.1 that answers every
//! request with 503, except `/missing`, which is a 404.
//!
//! The fallback selects responses with the breaker's and the retry's own classifier
//! (`ClassifiedFailure(HttpClassifier::new())`), so it answers exactly what they count as a
//! failure and retried, and only once the retries are spent; it keeps the request's path through
//! `Fallback::save` and answers with a cached body for that path.
//!
//! A server makes paused time unsafe (the runtime would jump the clock while bytes cross the
//! loopback and fire the timeouts), so these tests run on real time, with a 1 ms backoff and
//! timeouts that never fire; nothing waits for the breaker.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::fallback::{
    ClassifiedFailure, ErrorPredicate, FailedResponse, Fallback, FallbackLayer, IsRejection,
    IsTimeout,
};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState,
    HttpClassifier, RetryPolicy,
};

const ATTEMPTS: u32 = 3;
/// Never reached: the upstream answers at once.
const PER_TRY: Duration = Duration::from_secs(10);
const OVERALL: Duration = Duration::from_secs(30);
/// Longer than any test: an open breaker stays open, and its rejection is never waited out.
const BREAK: Duration = Duration::from_secs(600);

type HttpRequest = Request<Empty<Bytes>>;

// ===== the upstream =====

/// An upstream on 127.0.0.1 that answers 503 with `x-upstream-state: overloaded`, and `/missing`
/// with a 404; it counts the requests that reach it.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    async fn start() -> Self {
        let hits = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/missing", get(missing))
            .fallback(unavailable)
            .with_state(Arc::clone(&hits));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // The server runs until the test's runtime ends.
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, hits }
    }

    fn request(&self, path: &str) -> HttpRequest {
        Request::get(format!("http://{}{path}", self.addr))
            .body(Empty::new())
            .unwrap()
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn unavailable(
    State(hits): State<Arc<AtomicU64>>,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    hits.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("x-upstream-state", "overloaded")],
        "upstream is down",
    )
}

async fn missing(
    State(hits): State<Arc<AtomicU64>>,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    hits.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::NOT_FOUND,
        [("x-upstream-state", "fine")],
        "no such item",
    )
}

// ===== the fallback =====

/// Answers with the last good body for the request's path, which it keeps through `save`, and
/// says what it answered in `x-fallback-for` and `x-fallback-kind`. A path with nothing cached
/// gets the error back.
#[derive(Clone)]
struct CachedByPath {
    cache: Arc<HashMap<&'static str, &'static str>>,
    /// What each call was given: `path: kind: error`.
    given: Arc<Mutex<Vec<String>>>,
}

impl CachedByPath {
    fn new() -> Self {
        Self {
            cache: Arc::new(HashMap::from([("/items", "cached items")])),
            given: Arc::default(),
        }
    }

    fn given(&self) -> Vec<String> {
        self.given.lock().unwrap().clone()
    }
}

impl<B> Fallback<Request<B>> for CachedByPath {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = Ready<Result<Response<Bytes>, BoxError>>;
    type Saved = String;

    fn save(&self, request: &Request<B>) -> String {
        request.uri().path().to_owned()
    }

    fn call(self, path: String, error: BoxError) -> Self::Future {
        let kind = if error.is::<FailedResponse>() {
            "response"
        } else if error.is::<CircuitOpen>() {
            "rejection"
        } else {
            "error"
        };
        self.given
            .lock()
            .unwrap()
            .push(format!("{path}: {kind}: {error}"));
        let Some(&body) = self.cache.get(path.as_str()) else {
            return ready(Err(error));
        };
        let mut response = Response::new(Bytes::from_static(body.as_bytes()));
        let headers = response.headers_mut();
        headers.insert("x-fallback-for", error.to_string().parse().unwrap());
        headers.insert("x-fallback-kind", HeaderValue::from_static(kind));
        // A selected response comes with its headers.
        if let Some(failed) = error.downcast_ref::<FailedResponse>() {
            if let Some(state) = failed.headers().get("x-upstream-state") {
                headers.insert("x-upstream-state", state.clone());
            }
        }
        ready(Ok(response))
    }
}

// ===== the stack =====

/// A hyper client as a `Service<Request>`, with the body read into memory.
fn http_client(
) -> impl Service<HttpRequest, Response = Response<Bytes>, Error = BoxError, Future: Send> + Clone + Send
{
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    tower::service_fn(move |request: HttpRequest| {
        let client = client.clone();
        async move {
            let (parts, body) = client.request(request).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        }
    })
}

struct Stack<S> {
    service: S,
    breaker: CircuitBreaker,
    fallback: CachedByPath,
    upstream: Upstream,
}

async fn stack(
    failure_threshold: u32,
) -> Stack<impl Service<HttpRequest, Response = Response<Bytes>, Error = BoxError>> {
    let upstream = Upstream::start().await;
    let breaker = CircuitBreaker::with_config(
        "upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(failure_threshold)
            .break_duration(BREAK),
    )
    .unwrap();
    let fallback = CachedByPath::new();
    let classifier = HttpClassifier::new();
    let service = ServiceBuilder::new()
        .layer(
            FallbackLayer::with_fallback(fallback.clone())
                .when(IsRejection.or(IsTimeout))
                // What the breaker and the retry count as a failure: 5xx, not 4xx.
                .when_response(ClassifiedFailure(classifier)),
        )
        .timeout(OVERALL)
        .retry(
            RetryPolicy::new()
                .max_attempts(ATTEMPTS)
                .base_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(2))
                .classify_with(classifier),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(classifier))
        .timeout(PER_TRY)
        .service(http_client());
    Stack {
        service,
        breaker,
        fallback,
        upstream,
    }
}

impl<S> Stack<S>
where
    S: Service<HttpRequest, Response = Response<Bytes>, Error = BoxError>,
{
    async fn get(&mut self, path: &str) -> Result<Response<Bytes>, BoxError> {
        let request = self.upstream.request(path);
        self.service.ready().await?.call(request).await
    }
}

fn header<'a>(response: &'a Response<Bytes>, name: &str) -> Option<&'a HeaderValue> {
    response.headers().get(name)
}

// ===== the tests =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_503_after_the_last_retry_is_answered_by_the_fallback() {
    let mut stack = stack(10).await;

    let response = stack.get("/items").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.body()[..], b"cached items");
    assert_eq!(
        header(&response, "x-fallback-for").unwrap(),
        "upstream answered 503 Service Unavailable"
    );
    assert_eq!(header(&response, "x-fallback-kind").unwrap(), "response");
    assert_eq!(
        header(&response, "x-upstream-state").unwrap(),
        "overloaded",
        "the fallback read the failed response's headers"
    );

    // Every try reached the upstream, the breaker counted each as a failure, and the fallback
    // answered once, after the last.
    assert_eq!(stack.upstream.hits(), u64::from(ATTEMPTS));
    let metrics = stack.breaker.metrics();
    assert_eq!(metrics.total_calls, u64::from(ATTEMPTS));
    assert_eq!(metrics.failed_calls, u64::from(ATTEMPTS));
    assert_eq!(metrics.successful_calls, 0);
    assert_eq!(metrics.consecutive_failures, ATTEMPTS);
    assert_eq!(metrics.state, CircuitState::Closed);
    assert_eq!(
        stack.fallback.given(),
        ["/items: response: upstream answered 503 Service Unavailable"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_passes_through_to_the_caller_untouched() {
    let mut stack = stack(10).await;

    let response = stack.get("/missing").await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(&response.body()[..], b"no such item");
    assert_eq!(header(&response, "x-upstream-state").unwrap(), "fine");
    assert!(header(&response, "x-fallback-for").is_none());

    // Not a failure: one try, not retried, ignored by the breaker, not seen by the fallback.
    assert_eq!(stack.upstream.hits(), 1);
    let metrics = stack.breaker.metrics();
    assert_eq!(
        (metrics.ignored_calls, metrics.failed_calls),
        (1, 0),
        "{metrics:?}"
    );
    assert!(stack.fallback.given().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_cached_the_caller_gets_the_final_503_as_a_failed_response() {
    let mut stack = stack(10).await;

    let err = stack.get("/orders").await.unwrap_err();
    assert_eq!(err.to_string(), "upstream answered 503 Service Unavailable");
    let failed = err.downcast_ref::<FailedResponse>().unwrap();
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.headers()["x-upstream-state"], "overloaded");
    assert_eq!(stack.upstream.hits(), u64::from(ATTEMPTS));
    assert_eq!(stack.breaker.metrics().failed_calls, u64::from(ATTEMPTS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_breaker_opens_the_same_fallback_answers_its_rejection() {
    let mut stack = stack(ATTEMPTS).await;

    // The last try's 503 opens the breaker; the fallback answers that 503.
    let response = stack.get("/items").await.unwrap();
    assert_eq!(
        header(&response, "x-fallback-for").unwrap(),
        "upstream answered 503 Service Unavailable"
    );
    assert_eq!(stack.breaker.state(), CircuitState::Open);

    // Now the breaker rejects at once, the retry does not retry that, and the fallback answers
    // the rejection (an error its error predicate selects) for the same path.
    let response = stack.get("/items").await.unwrap();
    assert_eq!(&response.body()[..], b"cached items");
    assert!(header(&response, "x-upstream-state").is_none());
    assert_eq!(stack.upstream.hits(), u64::from(ATTEMPTS));
    assert_eq!(stack.breaker.metrics().rejected_open, 1);
    assert_eq!(header(&response, "x-fallback-kind").unwrap(), "rejection");
    let given = stack.fallback.given();
    assert_eq!(given.len(), 2, "{given:?}");
    assert!(given[0].starts_with("/items: response: "), "{given:?}");
    assert!(given[1].starts_with("/items: rejection: "), "{given:?}");
}
