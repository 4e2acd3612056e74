//! A hyper-util client behind the full resilience stack, boxed into one type and kept in axum
//! state: what an app that calls an upstream from its handlers holds.
//!
//! The stack, outermost first as `ServiceBuilder` reads: fallback, overall timeout, retry,
//! circuit breaker, per-try timeout, then `hyper_util::client::legacy::Client` itself. Three
//! things make it fit together:
//!
//! - **The response body is boxed.** The client answers `Response<hyper::body::Incoming>`, and
//!   only hyper can make an `Incoming`, so a fallback cannot answer in that type. `map_response`
//!   just above the client turns every response into `Response<BoxBody<Bytes, BoxError>>`, a
//!   type both the client's bodies and the fallback's `Full` fit into. (`BoxBody` is `Sync`, as
//!   axum state must be; a body that is not `Sync` boxes into `UnsyncBoxBody` instead.)
//! - **The request is `Clone`.** `tower::retry` sends a clone of the request on every try, so the
//!   request type is `Request<Full<Bytes>>`, not a streaming body (axum's `Body`, hyper's
//!   `Incoming`): buffer a body to `Bytes` before sending it through the stack.
//! - **Errors are `BoxError`.** The breaker's layer, tower's timeout and the fallback all return
//!   `BoxError`, and the retry policy is written for it; so is the boxed service's error.
//!
//! The program starts a flaky upstream on 127.0.0.1, an axum app whose `/items` handler calls it
//! through the stack kept in its state, and sends the app requests while the upstream fails and
//! recovers. It runs in about a second and needs nothing else:
//!
//! ```text
//! cargo run --example axum_client_stack
//! ```

#[path = "support/flaky_upstream.rs"]
mod flaky_upstream;

use std::time::Duration;

use axum::extract::State;
use axum::http::{Request, Response, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use flaky_upstream::{FlakyUpstream, Mode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::fallback::{ErrorPredicate, FallbackLayer, IsRejection, IsTimeout};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, HttpClassifier, RetryPolicy,
};

/// The body every layer of the stack answers with: the client's, or the fallback's.
type Body = BoxBody<Bytes, BoxError>;
/// The whole stack as one type: `Clone`, `Send` and `Sync`, so it can be axum state.
type Upstream = BoxCloneSyncService<Request<Full<Bytes>>, Response<Body>, BoxError>;

/// The app's state: the stack and where it sends requests.
#[derive(Clone)]
struct App {
    upstream: Upstream,
    uri: Uri,
}

fn upstream_client(breaker: CircuitBreaker) -> Upstream {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let stack = ServiceBuilder::new()
        // A rejection or a timeout is answered with a stale list instead of an error.
        .layer(
            FallbackLayer::new_sync(|err: BoxError| stale_items(&err))
                .when(IsRejection.or(IsTimeout)),
        )
        // Overall timeout, retries included; then a retry that does not retry a rejection.
        .timeout(Duration::from_secs(2))
        .retry(
            RetryPolicy::new()
                .max_attempts(2)
                .base_delay(Duration::from_millis(10))
                .classify_with(HttpClassifier::new()),
        )
        // 5xx answers are failures: without `HttpClassifier` only errors would be.
        .layer(CircuitBreakerLayer::new(breaker).classify_with(HttpClassifier::new()))
        // Per try: a hung try is a timeout the breaker counts.
        .timeout(Duration::from_millis(300))
        // Box the body, so the fallback, which cannot make hyper's `Incoming`, answers in its type.
        .map_response(|response: Response<hyper::body::Incoming>| {
            response.map(|body| body.map_err(BoxError::from).boxed())
        })
        .service(client);
    BoxCloneSyncService::new(stack)
}

/// The fallback: a response made here, in the boxed body type.
fn stale_items(err: &BoxError) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("stale items ({err})")));
    Response::new(body.map_err(|never| match never {}).boxed())
}

/// `GET /items`: the upstream's answer, through the stack; its body streams to the caller.
async fn items(State(app): State<App>) -> Result<Response<Body>, (StatusCode, String)> {
    let request = Request::get(app.uri.clone())
        .body(Full::new(Bytes::new()))
        .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    app.upstream
        .oneshot(request)
        .await
        .map_err(|err| (StatusCode::BAD_GATEWAY, err.to_string()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let upstream = FlakyUpstream::start().await?;
    let breaker = CircuitBreaker::with_config(
        "items",
        CircuitBreakerConfig::default()
            .failure_threshold(3)
            .break_duration(Duration::from_millis(300))
            .success_threshold(1),
    )?;
    let app = Router::new().route("/items", get(items)).with_state(App {
        upstream: upstream_client(breaker.clone()),
        uri: upstream.url().parse()?,
    });

    let script = [
        (Mode::Healthy, "healthy"),
        (Mode::Failing, "failing"),
        (Mode::Failing, "failing"),
        (Mode::Failing, "failing"),
        (Mode::Healthy, "recovered"),
    ];
    for (mode, label) in script {
        upstream.set(mode);
        if label == "recovered" {
            breaker.ready().await; // wait out the break: the next request is the probe
        }
        let request = Request::get("/items").body(axum::body::Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "{label:<10} {:<24} breaker {:<7} {:?}",
            status.to_string(),
            breaker.state().to_string(),
            String::from_utf8_lossy(&body),
        );
    }
    println!("the upstream saw {} requests in all", upstream.hits());
    Ok(())
}
