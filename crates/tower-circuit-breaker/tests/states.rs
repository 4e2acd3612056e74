//! The automatic states: closed trips on consecutive failures, open rejects until the break ends,
//! half-open limits, closes and reopens, and outcomes from older generations move nothing.

use std::time::Duration;

use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, Rejection, TransitionReason,
};

fn breaker(config: CircuitBreakerConfig) -> CircuitBreaker {
    CircuitBreaker::with_config("upstream", config).unwrap()
}

fn fail(breaker: &CircuitBreaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().unwrap().failure();
    }
}

const BREAK: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn opens_after_the_default_five_consecutive_failures() {
    let breaker = CircuitBreaker::new("upstream");
    fail(&breaker, 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 4);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(!breaker.is_healthy());
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(3));
    fail(&breaker, 2);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.metrics().consecutive_failures, 0);
    fail(&breaker, 2);
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_neither_trip_nor_reset_the_count() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(2));
    fail(&breaker, 1);
    for _ in 0..10 {
        breaker.try_acquire().unwrap().ignored();
    }
    assert_eq!(breaker.metrics().consecutive_failures, 1);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_the_time_left_until_the_next_probe() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(Duration::from_secs(12)).await;

    let Err(Rejection::Open(open)) = breaker.try_acquire() else {
        panic!("an open circuit must reject");
    };
    assert_eq!(open.retry_after(), Some(Duration::from_secs(18)));
    assert_eq!(open.breaker(), "upstream");
    assert_eq!(
        breaker.metrics().next_probe_in,
        Some(Duration::from_secs(18))
    );
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn the_break_ends_in_half_open_and_the_next_call_is_a_probe() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(BREAK - Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_the_probe_limit_and_rejects_the_rest_distinctly() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .half_open_max_calls(2)
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(BREAK).await;

    let first = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    let Err(Rejection::HalfOpenFull(full)) = breaker.try_acquire() else {
        panic!("a third probe must be rejected");
    };
    assert_eq!(full.breaker(), "upstream");
    assert_eq!(breaker.metrics().half_open_in_flight, 2);
    assert_eq!(breaker.metrics().rejected_half_open, 1);

    // A probe that ends without a verdict frees its slot.
    first.ignored();
    let third = breaker.try_acquire().unwrap();
    assert!(third.is_probe());
    drop((second, third));
}

#[tokio::test(start_paused = true)]
async fn success_threshold_probes_close_the_circuit() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(3)
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(BREAK).await;
    for _ in 0..2 {
        breaker.try_acquire().unwrap().success();
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    }
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(breaker.is_healthy());
}

#[tokio::test(start_paused = true)]
async fn reopens_on_first_failure_in_half_open_for_a_full_break() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(3)
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(BREAK).await;
    breaker.try_acquire().unwrap().success();
    breaker.try_acquire().unwrap().failure();

    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(BREAK)
    );
    assert_eq!(breaker.metrics().transitions.to_open, 2);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_finishes_counts_as_a_timeout_and_reopens() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .half_open_max_calls(1)
            .half_open_timeout(Duration::from_secs(5))
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(BREAK).await;
    let hung = breaker.try_acquire().unwrap();
    assert!(matches!(
        breaker.try_acquire(),
        Err(Rejection::HalfOpenFull(_))
    ));

    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    let metrics = breaker.metrics();
    assert_eq!(metrics.timeouts, 1);
    assert_eq!(metrics.half_open_in_flight, 0);

    // Its late success belongs to the old generation: counted, but it closes nothing.
    hung.success();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().successful_calls, 1);

    // After the next break, a fresh probe can close it: the breaker did not stick.
    tokio::time::advance(BREAK).await;
    for _ in 0..3 {
        breaker.try_acquire().unwrap().success();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_finishing_after_its_timeout_is_a_timeout_even_if_nobody_looked() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(1)
            .half_open_timeout(Duration::from_secs(5))
            .break_duration(BREAK),
    );
    fail(&breaker, 1);
    tokio::time::advance(BREAK).await;
    let slow = breaker.try_acquire().unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    slow.success();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.metrics().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_failure_from_before_a_reset_does_not_reopen() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(1));
    let slow = breaker.try_acquire().unwrap();
    breaker.reset();
    slow.failure();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 0);
    assert_eq!(
        breaker.metrics().failed_calls,
        1,
        "it still counts in the totals"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_while_closed_is_not_taken_for_a_probe_result() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(1)
            .break_duration(BREAK),
    );
    let admitted_while_closed = breaker.try_acquire().unwrap();
    assert!(!admitted_while_closed.is_probe());
    fail(&breaker, 1);
    tokio::time::advance(BREAK).await;
    assert_eq!(breaker.state(), CircuitState::HalfOpen);

    admitted_while_closed.success();
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "only a probe can close it"
    );
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn failures_from_an_older_closed_generation_do_not_trip_the_new_one() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(2)
            .success_threshold(1)
            .break_duration(BREAK),
    );
    let old: Vec<_> = (0..5)
        .map(|_| breaker.try_acquire_owned().unwrap())
        .collect();
    fail(&breaker, 2);
    tokio::time::advance(BREAK).await;
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);

    for permit in old {
        permit.failure();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn every_transition_bumps_the_generation() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(1)
            .break_duration(BREAK),
    );
    assert_eq!(breaker.metrics().generation, 0);
    fail(&breaker, 1);
    assert_eq!(breaker.metrics().generation, 1);
    tokio::time::advance(BREAK).await;
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(probe.generation(), 2);
    probe.success();
    assert_eq!(breaker.metrics().generation, 3);
    let counts = breaker.metrics().transitions;
    assert_eq!(
        (counts.to_open, counts.to_half_open, counts.to_closed),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_each_transition_with_its_reason() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(5)
            .success_threshold(1)
            .break_duration(BREAK),
    );
    let mut events = breaker.subscribe();
    fail(&breaker, 5);
    tokio::time::advance(BREAK).await;
    breaker.try_acquire().unwrap().success();

    let opened = events.recv().await.unwrap();
    assert_eq!(
        (opened.from, opened.to),
        (CircuitState::Closed, CircuitState::Open)
    );
    assert_eq!(
        opened.reason,
        TransitionReason::ConsecutiveFailures { failures: 5 }
    );
    assert_eq!(opened.reason.to_string(), "5 consecutive failures");
    assert_eq!(&*opened.breaker, "upstream");

    let half_open = events.recv().await.unwrap();
    assert_eq!(half_open.to, CircuitState::HalfOpen);
    assert_eq!(
        half_open.reason,
        TransitionReason::BreakElapsed {
            break_duration: BREAK
        }
    );

    let closed = events.recv().await.unwrap();
    assert_eq!(closed.to, CircuitState::Closed);
    assert_eq!(closed.reason.to_string(), "1 successful probe");
    assert!(events.try_recv().is_err(), "nothing else happened");
}

#[test]
fn state_helpers_follow_the_specification() {
    use CircuitState::{Closed, Disabled, HalfOpen, Isolated, Open};
    for (state, allows, failing) in [
        (Closed, true, false),
        (Open, false, true),
        (HalfOpen, true, true),
        (Isolated, false, true),
        (Disabled, true, false),
    ] {
        assert_eq!(state.allows_requests(), allows, "{state}");
        assert_eq!(state.is_failure_state(), failing, "{state}");
    }
    assert_eq!(serde_json::to_string(&HalfOpen).unwrap(), "\"half_open\"");
}

/// Outside a runtime, a running break is judged on the kernel's coarse clock: the rejection still
/// says how long is left, to within a few milliseconds, and is counted.
#[test]
fn a_rejection_outside_a_runtime_says_how_long_the_break_has_left() {
    let hour = Duration::from_secs(3600);
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(hour);
    let breaker = CircuitBreaker::with_config("coarse", config).unwrap();
    breaker.try_acquire().unwrap().failure();
    for _ in 0..3 {
        let Err(Rejection::Open(open)) = breaker.try_acquire() else {
            panic!("open");
        };
        let left = open.retry_after().expect("a running break");
        assert!(left <= hour + Duration::from_millis(25), "{left:?}");
        assert!(left >= hour - Duration::from_secs(1), "{left:?}");
    }
    assert_eq!(breaker.metrics().rejected_open, 3);
}
