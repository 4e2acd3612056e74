//! A queue consumer behind the Polly-order stack (fallback, overall timeout, retry, circuit
//! breaker, per-try timeout) through a one-second outage of its handler, under paused time: the
//! consumer of `examples/queue_consumer.rs`, from `examples/support/queue.rs`.
//!
//! Every message ends processed or dead-lettered, none twice and none lost; while the breaker is
//! open the consumer waits on `breaker.ready().await` and nothing reaches the handler; a message
//! the breaker turned away is delivered again after the pause, and the consumer carries on once
//! the breaker closes. Tokio's clock is paused and jumps ahead whenever every task waits, so the
//! 2.5 s of the scenario take no real time.

#[path = "../examples/support/queue.rs"]
mod queue;

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};

use queue::{Disposition, Downstream, Event, Report};

const MESSAGES: u32 = 150;
const POISON: u32 = 3;
const OUTAGE: Range<Duration> = Duration::from_millis(300)..Duration::from_millis(1300);
const FAILURE_THRESHOLD: u32 = 5;
const BREAK: Duration = Duration::from_millis(200);

/// What the consumer did, seen from outside, with the handler's hit count at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Processed(u32),
    DeadLettered(u32),
    Redeliver(u32),
    Paused { hits: u32 },
    Resumed { hits: u32 },
}

struct Run {
    report: Report,
    seen: Vec<Seen>,
    breaker: CircuitBreaker,
    downstream: Downstream,
    took: Duration,
}

/// Runs `MESSAGES` messages (message `POISON` poisoned) through the stack while the handler
/// fails from 0.3 s to 1.3 s.
async fn run_through_outage() -> Run {
    let breaker = CircuitBreaker::with_config(
        "handler",
        CircuitBreakerConfig::default()
            .failure_threshold(FAILURE_THRESHOLD)
            .break_duration(BREAK)
            .success_threshold(2)
            .half_open_max_calls(1),
    )
    .unwrap();
    let started = Instant::now();
    let downstream = Downstream::new(OUTAGE, breaker.clone());
    let stack = queue::stack(&breaker, downstream.service());
    let mut seen = Vec::new();
    let report = queue::consume(
        queue::queue_of(MESSAGES, &[POISON]),
        stack,
        &breaker,
        |event| {
            seen.push(match event {
                Event::Delivered {
                    message,
                    disposition,
                    ..
                } => match disposition {
                    Disposition::Processed => Seen::Processed(message.id),
                    Disposition::DeadLettered { .. } => Seen::DeadLettered(message.id),
                    Disposition::Redeliver { .. } => Seen::Redeliver(message.id),
                },
                Event::Paused { .. } => Seen::Paused {
                    hits: downstream.hits(),
                },
                Event::Resumed { .. } => Seen::Resumed {
                    hits: downstream.hits(),
                },
            });
        },
    )
    .await
    .unwrap();
    Run {
        report,
        seen,
        breaker,
        downstream,
        took: started.elapsed(),
    }
}

#[tokio::test(start_paused = true)]
async fn every_message_is_processed_or_dead_lettered_exactly_once() {
    let Run { report, took, .. } = run_through_outage().await;

    let mut ended: Vec<u32> = report.processed.clone();
    ended.extend(report.dead_lettered.iter().map(|(id, _)| *id));
    ended.sort_unstable();
    assert_eq!(ended, (0..MESSAGES).collect::<Vec<_>>(), "lost or doubled");
    assert!(
        report.processed.windows(2).all(|pair| pair[0] < pair[1]),
        "processed out of order: {:?}",
        report.processed
    );
    assert_eq!(report.deliveries, MESSAGES + report.redeliveries);
    // The whole scenario ran on the paused clock, outage and all.
    assert!(took > OUTAGE.end, "took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn no_message_reaches_the_handler_while_the_breaker_is_open() {
    let Run {
        seen,
        breaker,
        downstream,
        ..
    } = run_through_outage().await;

    assert_eq!(downstream.hits_while_open(), 0);
    // Every try that reached the handler was one the breaker admitted.
    assert_eq!(u64::from(downstream.hits()), breaker.metrics().total_calls);
    let pauses = seen.iter().zip(&seen[1..]).filter_map(|pair| match pair {
        (Seen::Paused { hits: before }, Seen::Resumed { hits: after }) => Some((before, after)),
        _ => None,
    });
    let mut count = 0;
    for (before, after) in pauses {
        assert_eq!(before, after, "the handler was called during a pause");
        count += 1;
    }
    assert!(count > 0, "the consumer never paused: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn consumer_pauses_while_open_and_resumes_once_the_breaker_closes() {
    let Run {
        report,
        seen,
        breaker,
        ..
    } = run_through_outage().await;

    let metrics = breaker.metrics();
    assert!(
        metrics.transitions.to_open >= 2,
        "{:?}",
        metrics.transitions
    );
    assert_eq!(u64::from(report.pauses), metrics.transitions.to_open);
    // Paused for most of the outage: every break but the time the probes took.
    assert!(
        report.paused_for >= BREAK * (report.pauses - 1),
        "paused {:?} in {} pauses",
        report.paused_for,
        report.pauses
    );
    assert!(report.paused_for < OUTAGE.end - OUTAGE.start + BREAK);
    // A rejection is followed by a pause, not by another try.
    for (at, event) in seen.iter().enumerate() {
        if let Seen::Redeliver(_) = event {
            assert!(
                matches!(seen.get(at + 1), Some(Seen::Paused { .. })),
                "no pause after {event:?}: {:?}",
                &seen[at..]
            );
        }
    }

    let last = report.transitions.last().expect("transitions");
    assert_eq!(
        (last.from, last.to),
        (CircuitState::HalfOpen, CircuitState::Closed)
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
    let first = &report.transitions[0];
    assert_eq!(
        (first.from, first.to),
        (CircuitState::Closed, CircuitState::Open)
    );
    // The consumer carried on after the last pause, to the end of the queue.
    let last_resume = seen
        .iter()
        .rposition(|event| matches!(event, Seen::Resumed { .. }))
        .unwrap();
    let processed_after = seen[last_resume..]
        .iter()
        .filter(|event| matches!(event, Seen::Processed(_)))
        .count();
    assert!(
        processed_after > 100,
        "{processed_after} processed after the last pause"
    );
    assert_eq!(report.processed.last(), Some(&(MESSAGES - 1)));
}

#[tokio::test(start_paused = true)]
async fn rejected_messages_are_redelivered_not_dead_lettered() {
    let Run {
        report,
        seen,
        breaker,
        ..
    } = run_through_outage().await;

    let redelivered: Vec<u32> = seen
        .iter()
        .filter_map(|event| match event {
            Seen::Redeliver(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert!(!redelivered.is_empty());
    assert_eq!(redelivered.len(), report.redeliveries as usize);
    for id in &redelivered {
        assert!(
            report.processed.contains(id),
            "message {id} was not processed"
        );
    }
    // Each open circuit cost one rejected try at most: the consumer does not knock on it.
    let metrics = breaker.metrics();
    assert_eq!(metrics.rejected_open, u64::from(report.redeliveries));
    assert_eq!(metrics.rejected_half_open, 0);
    // Dead letters: the poison message, and the one whose tries the outage used up before the
    // breaker opened.
    let dead: Vec<u32> = report.dead_lettered.iter().map(|(id, _)| *id).collect();
    assert_eq!(dead.len(), 2, "{:?}", report.dead_lettered);
    assert_eq!(dead[0], POISON);
    assert!(
        report.dead_lettered[1]
            .1
            .ends_with("downstream unavailable"),
        "{:?}",
        report.dead_lettered
    );
}

#[tokio::test(start_paused = true)]
async fn poison_message_is_dead_lettered_by_the_overall_timeout() {
    let Run {
        report, breaker, ..
    } = run_through_outage().await;

    assert_eq!(
        report.dead_lettered[0],
        (POISON, String::from("request timed out"))
    );
    assert_eq!(report.overall_timeouts, 1);
    // Its first two tries hit the per-try timeout (failures to the breaker); the overall
    // timeout dropped the third, which counts as cancelled.
    let metrics = breaker.metrics();
    assert_eq!(metrics.timeouts, 2);
    assert_eq!(metrics.cancelled_calls, 1);
}
