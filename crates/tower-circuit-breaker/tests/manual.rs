//! Manual control: isolate, disable, reset and automatic.

use std::time::Duration;

use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, Rejection, TransitionReason,
};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::with_config(
        "billing",
        CircuitBreakerConfig::default()
            .failure_threshold(2)
            .break_duration(Duration::from_secs(30)),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn isolate_rejects_everything_until_automatic() {
    let breaker = breaker();
    breaker.isolate();
    assert_eq!(breaker.state(), CircuitState::Isolated);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let Err(Rejection::Open(open)) = breaker.try_acquire() else {
        panic!("isolated must reject");
    };
    assert_eq!(
        open.retry_after(),
        None,
        "nobody knows when an operator lifts it"
    );
    assert!(open.to_string().contains("isolated"));

    breaker.automatic();
    assert_eq!(breaker.state(), CircuitState::Closed);
    breaker.try_acquire().unwrap().success();
}

#[tokio::test(start_paused = true)]
async fn disable_admits_everything_and_still_measures() {
    let breaker = breaker();
    breaker.disable();
    for _ in 0..10 {
        breaker.try_acquire().unwrap().failure();
    }
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Disabled);
    assert_eq!(metrics.failed_calls, 10);
    assert_eq!(metrics.consecutive_failures, 10);
    assert!(breaker.is_healthy());

    breaker.automatic();
    assert_eq!(
        breaker.metrics().consecutive_failures,
        0,
        "leaving the override starts afresh"
    );
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_an_open_circuit_and_clears_the_counts_but_not_the_totals() {
    let breaker = breaker();
    for _ in 0..2 {
        breaker.try_acquire().unwrap().failure();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    breaker.reset();
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Closed);
    assert_eq!(metrics.consecutive_failures, 0);
    assert_eq!(metrics.failed_calls, 2, "lifetime counters only grow");
    assert_eq!(metrics.next_probe_in, None);
}

#[tokio::test(start_paused = true)]
async fn reset_of_a_closed_breaker_clears_its_count_silently() {
    let breaker = breaker();
    let mut events = breaker.subscribe();
    breaker.try_acquire().unwrap().failure();
    breaker.reset();
    assert_eq!(breaker.metrics().consecutive_failures, 0);
    breaker.try_acquire().unwrap().failure();
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "the first failure was forgotten"
    );
    assert!(
        events.try_recv().is_err(),
        "closed to closed is not a transition"
    );
    assert_eq!(breaker.metrics().transitions.to_closed, 0);
}

#[tokio::test(start_paused = true)]
async fn reset_lifts_manual_overrides() {
    let breaker = breaker();
    breaker.isolate();
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    breaker.disable();
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn automatic_leaves_automatic_states_alone() {
    let breaker = breaker();
    for _ in 0..2 {
        breaker.try_acquire().unwrap().failure();
    }
    let generation = breaker.metrics().generation;
    breaker.automatic();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().generation, generation);
}

#[tokio::test(start_paused = true)]
async fn manual_changes_are_announced_with_their_reason() {
    let breaker = breaker();
    let mut events = breaker.subscribe();
    breaker.isolate();
    breaker.automatic();
    breaker.disable();
    breaker.reset();
    let reasons: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|event| (event.to, event.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (CircuitState::Isolated, TransitionReason::Isolated),
            (CircuitState::Closed, TransitionReason::Automatic),
            (CircuitState::Disabled, TransitionReason::Disabled),
            (CircuitState::Closed, TransitionReason::Reset),
        ]
    );
}
