//! A queue consumer behind the Polly-order resilience stack, in process, for
//! `examples/queue_consumer.rs` and `tests/queue_consumer.rs`.
//!
//! - [`Downstream`]: the message handler the consumer protects. It takes 5 ms a message, fails
//!   every message during an outage (a span of time after it is made), never answers a poison
//!   message, and counts what reaches it, noting any message it gets while the breaker is open.
//! - [`stack`]: the handler wrapped, outermost first, in fallback, overall timeout, retry,
//!   circuit breaker and per-try timeout. The fallback ends every call in a [`Disposition`]: a
//!   message the breaker turned away goes back for redelivery, any other failure (tries used up,
//!   the overall timeout) dead-letters it.
//! - [`consume`]: takes messages off a `tokio::sync::mpsc` queue one at a time, pauses on
//!   `breaker.ready().await` while the circuit is open (taking nothing off the queue meanwhile),
//!   and keeps a message in hand until it is processed or dead-lettered, so none is lost.

#![allow(dead_code, unreachable_pub)] // the example and the test each use a part of it

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::classify::is_timeout;
use tower_circuit_breaker::fallback::FallbackLayer;
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitState, Rejection, RetryPolicy, Transition,
};

/// Bounds one try: a try that hangs is a timeout, which the breaker counts as a failure.
pub const PER_TRY_TIMEOUT: Duration = Duration::from_millis(50);
/// Bounds a message's whole processing, retries and backoff included. Three hung tries (and
/// their backoff) do not fit in it, so a poison message is ended by this one.
pub const OVERALL_TIMEOUT: Duration = Duration::from_millis(150);
/// Tries per delivery of a message, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// Backoff before the first retry, doubling after.
pub const BASE_DELAY: Duration = Duration::from_millis(10);
/// How long the handler takes over a message.
pub const HANDLING_TIME: Duration = Duration::from_millis(5);

/// A message on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// Its place in the queue, from 0.
    pub id: u32,
    /// A message the handler never finishes with.
    pub poison: bool,
}

/// What became of one delivery of a message: the response of the [`stack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The handler processed it: acknowledge it.
    Processed,
    /// It failed for good (every try failed, or the overall timeout ended it): move it to the
    /// dead-letter queue and acknowledge it.
    DeadLettered {
        /// The error that ended it.
        reason: String,
        /// Whether that error was a timeout (the overall one: see [`OVERALL_TIMEOUT`]).
        timed_out: bool,
    },
    /// The breaker turned it away: keep it, wait for the breaker, deliver it again.
    Redeliver {
        /// When the breaker said it would next let a probe through.
        retry_after: Option<Duration>,
    },
}

/// Fills a queue with `count` messages (those in `poison` poisoned) and closes it.
pub fn queue_of(count: u32, poison: &[u32]) -> mpsc::Receiver<Message> {
    let (sender, receiver) = mpsc::channel(count.max(1) as usize);
    for id in 0..count {
        let message = Message {
            id,
            poison: poison.contains(&id),
        };
        sender
            .try_send(message)
            .expect("the channel holds them all");
    }
    receiver
}

// ===== impl Downstream =====

/// The in-process handler behind the stack; cheap to clone, clones share the counts.
#[derive(Debug, Clone)]
pub struct Downstream {
    started: Instant,
    outage: Range<Duration>,
    observed: CircuitBreaker,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    hits: AtomicU32,
    failures: AtomicU32,
    hits_while_open: AtomicU32,
}

impl Downstream {
    /// A handler that fails every message during `outage` (measured from now), and notes the
    /// state of `observed` (the breaker in front of it) when each message reaches it.
    pub fn new(outage: Range<Duration>, observed: CircuitBreaker) -> Self {
        Self {
            started: Instant::now(),
            outage,
            observed,
            counts: Arc::default(),
        }
    }

    /// Messages that reached it (every try the breaker admitted).
    pub fn hits(&self) -> u32 {
        self.counts.hits.load(Ordering::SeqCst)
    }

    /// Messages it failed (during the outage).
    pub fn failures(&self) -> u32 {
        self.counts.failures.load(Ordering::SeqCst)
    }

    /// Messages that reached it while the breaker was open or isolated: 0 if the breaker works.
    pub fn hits_while_open(&self) -> u32 {
        self.counts.hits_while_open.load(Ordering::SeqCst)
    }

    /// The handler as a `Service`.
    pub fn service(
        &self,
    ) -> impl Service<Message, Response = Disposition, Error = BoxError, Future: Send> + Clone + Send
    {
        let downstream = self.clone();
        tower::service_fn(move |message: Message| {
            // Read here, as the call is made: just after the breaker admitted it.
            let state = downstream.observed.state();
            downstream.counts.hits.fetch_add(1, Ordering::SeqCst);
            if !state.allows_requests() {
                downstream
                    .counts
                    .hits_while_open
                    .fetch_add(1, Ordering::SeqCst);
            }
            downstream.clone().handle(message)
        })
    }

    async fn handle(self, message: Message) -> Result<Disposition, BoxError> {
        if message.poison {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(HANDLING_TIME).await;
        if self.outage.contains(&self.started.elapsed()) {
            self.counts.failures.fetch_add(1, Ordering::SeqCst);
            return Err(format!("message {}: downstream unavailable", message.id).into());
        }
        Ok(Disposition::Processed)
    }
}

// ===== the stack =====

/// `handler` wrapped in the Polly order, outermost first (the first layer added to a
/// `ServiceBuilder` is the outermost): fallback, overall timeout, retry, circuit breaker, per-try
/// timeout.
pub fn stack<S>(
    breaker: &CircuitBreaker,
    handler: S,
) -> impl Service<Message, Response = Disposition, Error = BoxError>
where
    S: Service<Message, Response = Disposition, Error = BoxError> + Clone,
{
    ServiceBuilder::new()
        // Every error ends here as a disposition: redeliver a rejection, dead-letter the rest.
        .layer(FallbackLayer::new_sync(|error: BoxError| {
            dispose_of(&error)
        }))
        .timeout(OVERALL_TIMEOUT)
        // No jitter, so that a run (and the test) goes the same way every time; a fleet of
        // consumers wants some, so that they do not retry in step.
        .retry(
            RetryPolicy::new()
                .max_attempts(MAX_ATTEMPTS)
                .base_delay(BASE_DELAY)
                .jitter(0.0),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .timeout(PER_TRY_TIMEOUT)
        .service(handler)
}

/// The fallback: what to do with a message whose processing ended in `error`.
fn dispose_of(error: &BoxError) -> Disposition {
    match Rejection::find(error.as_ref()) {
        // The retry policy does not retry a rejection: the consumer waits for the breaker.
        Some(rejection) => Disposition::Redeliver {
            retry_after: rejection.retry_after(),
        },
        None => Disposition::DeadLettered {
            timed_out: is_timeout(error.as_ref()),
            reason: error.to_string(),
        },
    }
}

// ===== the consumer =====

/// What the consumer did, as it does it.
#[derive(Debug)]
pub enum Event<'a> {
    /// One delivery of `message` ended in `disposition` after `tries` tries.
    Delivered {
        /// The message.
        message: Message,
        /// What became of it.
        disposition: &'a Disposition,
        /// Tries the breaker saw for it, rejected ones included.
        tries: u64,
    },
    /// The breaker rejects calls: the consumer stops taking messages.
    Paused {
        /// The breaker's state.
        state: CircuitState,
    },
    /// The breaker admits calls again: the consumer carries on.
    Resumed {
        /// How long it waited.
        paused_for: Duration,
        /// The breaker's state now (half-open, after a break).
        state: CircuitState,
    },
}

/// What the consumer did, in all.
#[derive(Debug, Default)]
pub struct Report {
    /// Messages processed, in order.
    pub processed: Vec<u32>,
    /// Messages dead-lettered, in order, with the error that ended each.
    pub dead_lettered: Vec<(u32, String)>,
    /// Dead-lettered messages the overall timeout ended.
    pub overall_timeouts: u32,
    /// Messages handed to the stack, redeliveries included.
    pub deliveries: u32,
    /// Deliveries of a message the breaker had turned away.
    pub redeliveries: u32,
    /// Tries after the first of a delivery.
    pub retries: u64,
    /// How many times the consumer paused for the breaker.
    pub pauses: u32,
    /// How long it paused, in all.
    pub paused_for: Duration,
    /// The breaker's transitions while the consumer ran.
    pub transitions: Vec<Transition>,
}

/// Takes every message off `queue` and through `stack`, one at a time, until the queue is closed
/// and empty; waits on `breaker` while it is open. Tells `on_event` what it does.
///
/// # Errors
///
/// Only if `stack` fails to become ready: its fallback turns every failed call into a
/// [`Disposition`].
pub async fn consume<S>(
    mut queue: mpsc::Receiver<Message>,
    mut stack: S,
    breaker: &CircuitBreaker,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Report, BoxError>
where
    S: Service<Message, Response = Disposition, Error = BoxError>,
{
    let mut transitions = breaker.subscribe();
    let mut report = Report::default();
    loop {
        pause_while_open(breaker, &mut report, &mut on_event).await;
        let Some(message) = queue.recv().await else {
            break;
        };
        // The message stays in hand until it is processed or dead-lettered.
        loop {
            let tries_before = tries_seen(breaker);
            report.deliveries += 1;
            let disposition = stack.ready().await?.call(message).await?;
            let tries = tries_seen(breaker) - tries_before;
            report.retries += tries.saturating_sub(1);
            on_event(Event::Delivered {
                message,
                disposition: &disposition,
                tries,
            });
            match disposition {
                Disposition::Processed => report.processed.push(message.id),
                Disposition::DeadLettered { reason, timed_out } => {
                    report.overall_timeouts += u32::from(timed_out);
                    report.dead_lettered.push((message.id, reason));
                }
                Disposition::Redeliver { .. } => {
                    report.redeliveries += 1;
                    pause_while_open(breaker, &mut report, &mut on_event).await;
                    continue;
                }
            }
            break;
        }
    }
    while let Ok(transition) = transitions.try_recv() {
        report.transitions.push(transition);
    }
    Ok(report)
}

/// Waits until `breaker` admits calls; a wait while it is open counts as a pause.
async fn pause_while_open(
    breaker: &CircuitBreaker,
    report: &mut Report,
    on_event: &mut impl FnMut(Event<'_>),
) {
    let state = breaker.state();
    if state.allows_requests() {
        // At once, unless half-open with every probe slot taken (by other consumers).
        breaker.ready().await;
        return;
    }
    on_event(Event::Paused { state });
    let paused_at = Instant::now();
    breaker.ready().await;
    let paused_for = paused_at.elapsed();
    report.pauses += 1;
    report.paused_for += paused_for;
    on_event(Event::Resumed {
        paused_for,
        state: breaker.state(),
    });
}

/// Tries the breaker has seen: calls it admitted and calls it turned away.
fn tries_seen(breaker: &CircuitBreaker) -> u64 {
    let metrics = breaker.metrics();
    metrics.total_calls + metrics.rejected_calls()
}
