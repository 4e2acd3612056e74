//! The breaker engine on its own: a flaky in-process upstream, a caller that goes through
//! `CircuitBreaker::call`, and every transition printed as it happens.
//!
//! The upstream fails for a while, the breaker opens and fails fast, probes it after the break,
//! and closes once it answers again. Runs in about three seconds and needs nothing else.
//!
//! ```text
//! cargo run --example engine_demo
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError};

/// An upstream that answers after 2 ms, except between 0.3 s and 1.3 s after it starts, when it
/// answers every request with a 503.
#[derive(Clone)]
struct FlakyUpstream {
    started: Instant,
    requests: Arc<AtomicU32>,
}

impl FlakyUpstream {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: Arc::default(),
        }
    }

    async fn get(&self) -> Result<String, String> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let outage = Duration::from_millis(300)..Duration::from_millis(1300);
        if outage.contains(&self.started.elapsed()) {
            Err(format!("request {n}: 503 service unavailable"))
        } else {
            Ok(format!("request {n}: 200 ok"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG=info shows the breaker's own tracing events as well.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let breaker = CircuitBreaker::with_config(
        "flaky-upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(5)
            .break_duration(Duration::from_millis(500))
            .success_threshold(2)
            .latency_sample_every(1),
    )?;
    let started = Instant::now();
    let mut transitions = breaker.subscribe();
    tokio::spawn(async move {
        while let Ok(transition) = transitions.recv().await {
            println!("{:>5} ms  {transition}", started.elapsed().as_millis());
        }
    });

    let upstream = FlakyUpstream::new();
    let (mut ok, mut failed, mut rejected) = (0, 0, 0);
    for _ in 0..300 {
        match breaker.call(|| upstream.get()).await {
            Ok(_) => ok += 1,
            Err(CircuitBreakerError::OperationFailed(_)) => failed += 1,
            Err(_rejection) => rejected += 1,
        }
        tokio::time::sleep(Duration::from_millis(8)).await;
    }

    let metrics = breaker.metrics();
    println!();
    println!("calls made by the caller: {ok} ok, {failed} failed, {rejected} rejected without reaching the upstream");
    println!(
        "requests the upstream saw: {}",
        upstream.requests.load(Ordering::Relaxed)
    );
    println!(
        "breaker `{}`: {} | calls {} (ok {}, failed {}) | rejected {} | opened {} times | latency min {:?} avg {:?} max {:?}",
        metrics.name,
        metrics.state,
        metrics.total_calls,
        metrics.successful_calls,
        metrics.failed_calls,
        metrics.rejected_calls(),
        metrics.transitions.to_open,
        metrics.latency.min.unwrap_or_default(),
        metrics.latency.avg().unwrap_or_default(),
        metrics.latency.max.unwrap_or_default(),
    );
    Ok(())
}
