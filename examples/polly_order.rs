//! The full resilience stack, in the order Polly wraps it and Microsoft's standard resilience
//! handler stacks it (outermost first): fallback, overall timeout, retry, circuit breaker,
//! per-try timeout, then a hyper client calling a flaky upstream on 127.0.0.1.
//!
//! The upstream answers, then fails, then hangs, then recovers; for each request the program
//! prints what came back, how many tries reached the upstream, and the breaker's state, and
//! every transition as it happens (with `RUST_LOG=tower_circuit_breaker=debug`, each retry too).
//! Runs in about two seconds and needs nothing else.
//!
//! ```text
//! cargo run --example polly_order
//! ```

#[path = "support/flaky_upstream.rs"]
mod flaky_upstream;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flaky_upstream::{FlakyUpstream, Mode};
use http::{Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::fallback::{ErrorPredicate, FallbackLayer, IsRejection, IsTimeout};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, HttpClassifier, RetryPolicy,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let upstream = FlakyUpstream::start().await?;
    let breaker = CircuitBreaker::with_config(
        "upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(3)
            .break_duration(Duration::from_millis(500))
            .success_threshold(1),
    )?;
    let started = Instant::now();
    let mut transitions = breaker.subscribe();
    tokio::spawn(async move {
        while let Ok(transition) = transitions.recv().await {
            println!(
                "{:>6} ms   breaker: {transition}",
                started.elapsed().as_millis()
            );
        }
    });

    // Outermost first, as `ServiceBuilder` reads.
    let mut client = ServiceBuilder::new()
        // 1. Fallback: a rejection or a timeout gets a stale answer instead of an error.
        .layer(
            FallbackLayer::new_sync(|err: BoxError| {
                println!("           fallback: answering `{err}`");
                Response::new(Bytes::from_static(b"cached items"))
            })
            .when(IsRejection.or(IsTimeout)),
        )
        // 2. Overall timeout: bounds the request, retries included.
        .timeout(Duration::from_millis(800))
        // 3. Retry: three tries in all, not after a rejection.
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .base_delay(Duration::from_millis(20))
                .classify_with(HttpClassifier::new()),
        )
        // 4. Circuit breaker: sees every try; 5xx and timeouts are failures.
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        // 5. Per-try timeout: a hung try is a timeout the breaker counts.
        .timeout(Duration::from_millis(200))
        // 6. The client.
        .service(http_client());

    let script = [
        (Mode::Healthy, "healthy"),
        (Mode::Healthy, "healthy"),
        (Mode::Failing, "failing"),
        (Mode::Failing, "failing"),
        (Mode::Failing, "failing"),
        (Mode::Hanging, "hanging, after the break"),
        (Mode::Healthy, "recovered, after the break"),
        (Mode::Healthy, "healthy"),
    ];
    for (n, (mode, label)) in script.into_iter().enumerate() {
        upstream.set(mode);
        if label.ends_with("after the break") {
            breaker.ready().await;
        }
        let hits = upstream.hits();
        let sent = Instant::now();
        let uri: Uri = upstream.url().parse()?;
        let outcome = match client.ready().await?.call(uri).await {
            Ok(response) => format!(
                "{} {:?}",
                response.status(),
                String::from_utf8_lossy(response.body())
            ),
            Err(err) => format!("error: {err}"),
        };
        println!(
            "{:>6} ms   request {} ({label}): {outcome} in {} ms; tries that reached the upstream: {}; breaker {}",
            started.elapsed().as_millis(),
            n + 1,
            sent.elapsed().as_millis(),
            upstream.hits() - hits,
            breaker.state(),
        );
    }

    let metrics = breaker.metrics();
    println!(
        "\nbreaker `{}`: {} tries seen ({} ok, {} failed of which {} timed out, {} cancelled), {} rejected",
        metrics.name,
        metrics.total_calls,
        metrics.successful_calls,
        metrics.failed_calls,
        metrics.timeouts,
        metrics.cancelled_calls,
        metrics.rejected_calls(),
    );
    Ok(())
}

/// A hyper client as a `Service<Uri>`, with the body read into memory so every layer (and the
/// fallback) deals in `Response<Bytes>`.
fn http_client(
) -> impl Service<Uri, Response = Response<Bytes>, Error = BoxError, Future: Send> + Clone {
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
