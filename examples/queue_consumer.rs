//! A queue consumer that pauses while its circuit breaker is open, and loses no message.
//!
//! 150 messages go, one at a time, off an in-process queue and through the stack in the order
//! Polly wraps it (fallback, overall timeout, retry, circuit breaker, per-try timeout) to a
//! handler that fails every message from 0.3 s to 1.3 s after the start and never answers
//! message 3. The overall timeout ends message 3 and the fallback dead-letters it; during the
//! outage the retries fail, the breaker opens, and the try it turns away goes back to the
//! consumer, which keeps the message, waits on `breaker.ready().await`, and delivers it again
//! (the breaker's probe). The program prints each transition, pause and dead letter as it
//! happens, then what each layer did. With `RUST_LOG=tower_circuit_breaker=debug` it prints each
//! retry too. Runs in about two seconds and needs nothing else.
//!
//! The consumer, the stack and the handler are in `support/queue.rs`, shared with
//! `tests/queue_consumer.rs`, which runs the same outage under paused time.
//!
//! ```text
//! cargo run --example queue_consumer
//! ```

#[path = "support/queue.rs"]
mod queue;

use std::time::Duration;

use tokio::time::Instant;
use tower::BoxError;
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig};

use queue::{Disposition, Downstream, Event};

const MESSAGES: u32 = 150;
const POISON: u32 = 3;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let breaker = CircuitBreaker::with_config(
        "handler",
        CircuitBreakerConfig::default()
            .failure_threshold(5)
            .break_duration(Duration::from_millis(200))
            .success_threshold(2)
            .half_open_max_calls(1),
    )?;
    let started = Instant::now();
    let at = move || format!("{:>5} ms", started.elapsed().as_millis());
    let mut transitions = breaker.subscribe();
    tokio::spawn(async move {
        while let Ok(transition) = transitions.recv().await {
            println!(
                "{}  breaker: {} -> {} ({})",
                at(),
                transition.from,
                transition.to,
                transition.reason
            );
        }
    });

    let downstream = Downstream::new(
        Duration::from_millis(300)..Duration::from_millis(1300),
        breaker.clone(),
    );
    let stack = queue::stack(&breaker, downstream.service());
    println!(
        "{}  queue: {MESSAGES} messages in, message {POISON} poisoned",
        at()
    );
    let messages = queue::queue_of(MESSAGES, &[POISON]);
    let report = queue::consume(messages, stack, &breaker, |event| {
        if let Some(line) = describe(&event) {
            println!("{}  {line}", at());
        }
    })
    .await?;

    let metrics = breaker.metrics();
    let lost = MESSAGES as usize - report.processed.len() - report.dead_lettered.len();
    println!();
    println!(
        "queue:            {MESSAGES} in, {} processed, {} dead-lettered, {lost} lost",
        report.processed.len(),
        report.dead_lettered.len()
    );
    println!(
        "consumer:         {} deliveries ({} redeliveries); paused {} times, {} ms in all",
        report.deliveries,
        report.redeliveries,
        report.pauses,
        report.paused_for.as_millis()
    );
    println!(
        "fallback:         dead-lettered {:?}; sent {} rejected messages back for redelivery",
        report
            .dead_lettered
            .iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        report.redeliveries
    );
    println!(
        "overall timeout:  {} ms; messages it ended: {}",
        queue::OVERALL_TIMEOUT.as_millis(),
        report.overall_timeouts
    );
    println!(
        "retry:            {} retries (up to {} tries a delivery)",
        report.retries,
        queue::MAX_ATTEMPTS
    );
    println!(
        "circuit breaker:  {} tries admitted ({} ok, {} failed, {} cancelled), {} rejected; now {}",
        metrics.total_calls,
        metrics.successful_calls,
        metrics.failed_calls,
        metrics.cancelled_calls,
        metrics.rejected_calls(),
        metrics.state
    );
    println!(
        "per-try timeout:  {} ms; tries it ended: {} (failures to the breaker)",
        queue::PER_TRY_TIMEOUT.as_millis(),
        metrics.timeouts
    );
    println!(
        "handler:          {} tries reached it, {} failed, {} while the breaker was open",
        downstream.hits(),
        downstream.failures(),
        downstream.hits_while_open()
    );
    let states = report
        .transitions
        .iter()
        .map(|transition| transition.to.as_str());
    let path = std::iter::once("closed").chain(states).collect::<Vec<_>>();
    println!("transitions:      {}", path.join(" -> "));
    Ok(())
}

/// A line for what the consumer did, or `None` for a message processed in passing.
fn describe(event: &Event<'_>) -> Option<String> {
    Some(match event {
        Event::Delivered {
            message,
            disposition,
            tries,
        } => match disposition {
            Disposition::Processed if message.id % 50 == 49 => {
                format!("consumer: message {} processed", message.id)
            }
            Disposition::Processed => return None,
            Disposition::DeadLettered { reason, .. } => format!(
                "fallback: dead-lettered message {} after {tries} tries: {reason}",
                message.id
            ),
            Disposition::Redeliver { retry_after } => format!(
                "fallback: message {} rejected on try {tries} (next probe in {} ms), \
                 kept for redelivery",
                message.id,
                retry_after.unwrap_or_default().as_millis()
            ),
        },
        Event::Paused { state } => format!("consumer: breaker {state}, pausing"),
        Event::Resumed { paused_for, state } => format!(
            "consumer: breaker {state}, resuming after {} ms",
            paused_for.as_millis()
        ),
    })
}
