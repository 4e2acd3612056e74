//! Protecting outbound HTTP calls: a hyper client behind `CircuitBreakerLayer`, with
//! `HttpClassifier` deciding that 5xx answers are failures and 4xx are not.
//!
//! A local upstream starts failing; after three 503s the breaker opens and later calls fail fast
//! without reaching it, each rejection saying when the next probe is due. When the upstream
//! recovers, the first call after the break is a probe, and it closes the circuit. Runs in about
//! half a second and needs nothing else.
//!
//! ```text
//! cargo run --example hyper_client
//! ```

#[path = "support/flaky_upstream.rs"]
mod flaky_upstream;

use std::time::Duration;

use bytes::Bytes;
use flaky_upstream::{FlakyUpstream, Mode};
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, HttpClassifier,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let upstream = FlakyUpstream::start().await?;
    let breaker = CircuitBreaker::with_config(
        "catalog",
        CircuitBreakerConfig::default()
            .failure_threshold(3)
            .break_duration(Duration::from_millis(300))
            .success_threshold(1),
    )?;

    // hyper's client is a `tower::Service<http::Request<B>>`: the layer wraps it as it is.
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    let uri: Uri = upstream.url().parse()?;
    let mut get = async |label: &str| -> Result<(), BoxError> {
        let request = Request::get(uri.clone()).body(Empty::new())?;
        match client.ready().await?.call(request).await {
            Ok(response) => println!("{label:<10} {}", response.status()),
            Err(err) => match err.downcast_ref::<CircuitOpen>() {
                Some(open) => println!("{label:<10} failed fast: {open}"),
                None => println!("{label:<10} error: {err}"),
            },
        }
        Ok(())
    };

    get("healthy").await?;
    upstream.set(Mode::Failing);
    for _ in 0..5 {
        get("failing").await?;
    }
    println!(
        "           the upstream saw {} requests in all",
        upstream.hits()
    );

    upstream.set(Mode::Healthy);
    breaker.ready().await; // wait out the break
    get("recovered").await?;
    get("healthy").await?;
    println!(
        "breaker `{}` is {}; {:?}",
        breaker.name(),
        breaker.state(),
        breaker.metrics().transitions
    );
    Ok(())
}
