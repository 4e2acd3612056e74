//! The ways in: `call`, `call_with` a classifier, permits (owned, dropped), and `ready()`.

use std::time::Duration;

use tower_circuit_breaker::{
    CancelledCalls, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError, CircuitState,
    Outcome, Rejection,
};

const BREAK: Duration = Duration::from_secs(30);

fn breaker(config: CircuitBreakerConfig) -> CircuitBreaker {
    CircuitBreaker::with_config("queue", config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn call_passes_values_and_errors_through_and_counts_them() {
    let breaker = breaker(CircuitBreakerConfig::default());
    assert_eq!(breaker.call(|| async { Ok::<_, String>(7) }).await, Ok(7));
    let err = breaker
        .call(|| async { Err::<u8, _>("refused".to_string()) })
        .await
        .unwrap_err();
    assert!(!err.is_rejection());
    assert_eq!(err.into_operation_error().as_deref(), Some("refused"));
    let metrics = breaker.metrics();
    assert_eq!((metrics.successful_calls, metrics.failed_calls), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn call_does_not_run_the_operation_while_open() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(1));
    let _ = breaker.call(|| async { Err::<(), _>("down") }).await;
    let mut ran = false;
    let result = breaker
        .call(|| {
            ran = true;
            async { Ok::<_, &str>(()) }
        })
        .await;
    assert!(!ran);
    assert!(matches!(result, Err(CircuitBreakerError::Open(_))));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!("circuit open: breaker `queue`, next probe in {BREAK:?}")
    );
}

#[tokio::test(start_paused = true)]
async fn call_reports_a_full_half_open_circuit_as_its_own_error() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .half_open_max_calls(1)
            .break_duration(BREAK),
    );
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(BREAK).await;
    let _probe = breaker.try_acquire().unwrap();
    let result = breaker.call(|| async { Ok::<_, ()>(()) }).await;
    assert!(matches!(result, Err(CircuitBreakerError::HalfOpenFull(_))));
}

#[tokio::test(start_paused = true)]
async fn call_with_lets_an_ok_fail_and_an_err_be_ignored() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(2));
    let http = |result: &Result<u16, &str>| match result {
        Ok(status) if *status >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(message) if *message == "not found" => Outcome::Ignored,
        Err(_) => Outcome::Failure,
    };
    assert_eq!(
        breaker.call_with(&http, || async { Ok(503) }).await,
        Ok(503)
    );
    let ignored = breaker
        .call_with(&http, || async { Err("not found") })
        .await;
    assert!(matches!(
        ignored,
        Err(CircuitBreakerError::OperationFailed("not found"))
    ));
    assert_eq!(breaker.metrics().consecutive_failures, 1);
    assert_eq!(breaker.metrics().ignored_calls, 1);
    let _ = breaker.call_with(&http, || async { Ok(500) }).await;
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_outcome_is_a_failure_and_a_timeout() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(1));
    breaker.try_acquire().unwrap().timeout();
    let metrics = breaker.metrics();
    assert_eq!((metrics.failed_calls, metrics.timeouts), (1, 1));
    assert_eq!(metrics.state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_counts_as_cancelled_not_as_a_failure_by_default() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(1));
    let hung = breaker.call(std::future::pending::<Result<(), ()>>);
    let outcome = tokio::time::timeout(Duration::from_secs(1), hung).await;
    assert!(outcome.is_err(), "the outer timeout dropped the call");
    let metrics = breaker.metrics();
    assert_eq!(metrics.cancelled_calls, 1);
    assert_eq!(metrics.failed_calls, 0);
    assert_eq!(metrics.state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn cancelled_calls_can_count_as_failures() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(2)
            .cancelled_calls(CancelledCalls::Failure),
    );
    drop(breaker.try_acquire().unwrap());
    drop(breaker.try_acquire().unwrap());
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Open);
    assert_eq!((metrics.cancelled_calls, metrics.failed_calls), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .half_open_max_calls(1)
            .break_duration(BREAK),
    );
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(BREAK).await;
    let probe = breaker.call(std::future::pending::<Result<(), ()>>);
    let _ = tokio::time::timeout(Duration::from_millis(10), probe).await;
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
    assert!(breaker.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn an_owned_permit_records_from_a_spawned_task() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(1));
    let permit = breaker.try_acquire_owned().unwrap();
    tokio::spawn(async move { permit.failure() }).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn clones_are_the_same_breaker() {
    let breaker = breaker(CircuitBreakerConfig::default().failure_threshold(2));
    let clone = breaker.clone();
    breaker.try_acquire().unwrap().failure();
    clone.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(clone.metrics().failed_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn ready_returns_at_once_while_closed() {
    let breaker = breaker(CircuitBreakerConfig::default());
    tokio::time::timeout(Duration::from_millis(1), breaker.ready())
        .await
        .expect("a closed breaker is ready");
}

#[tokio::test(start_paused = true)]
async fn ready_waits_out_the_break_then_resolves() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(BREAK),
    );
    breaker.try_acquire().unwrap().failure();
    let start = tokio::time::Instant::now();
    breaker.ready().await;
    assert_eq!(start.elapsed(), BREAK, "woke exactly when the break ended");
    assert!(breaker.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn ready_wakes_when_a_reset_closes_the_circuit() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(BREAK),
    );
    breaker.try_acquire().unwrap().failure();
    let waiter = tokio::spawn({
        let breaker = breaker.clone();
        async move { breaker.ready().await }
    });
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    breaker.reset();
    tokio::time::timeout(Duration::from_millis(1), waiter)
        .await
        .expect("the reset woke the waiter")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn ready_waits_for_a_free_probe_slot() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .half_open_max_calls(1)
            .success_threshold(2)
            .break_duration(BREAK),
    );
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(BREAK).await;
    let probe = breaker.try_acquire_owned().unwrap();
    let waiter = tokio::spawn({
        let breaker = breaker.clone();
        async move { breaker.ready().await }
    });
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished(), "the only slot is taken");
    probe.success();
    tokio::time::timeout(Duration::from_millis(1), waiter)
        .await
        .expect("the freed slot woke the waiter")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn ready_stays_pending_while_isolated() {
    let breaker = breaker(CircuitBreakerConfig::default());
    breaker.isolate();
    let waited = tokio::time::timeout(Duration::from_secs(3600), breaker.ready()).await;
    assert!(waited.is_err());
    assert!(
        matches!(breaker.try_acquire(), Err(Rejection::Open(open)) if open.retry_after().is_none())
    );
}

#[tokio::test(start_paused = true)]
async fn a_queue_consumer_pauses_on_ready_and_loses_no_message() {
    let breaker = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(3)
            .success_threshold(1)
            .break_duration(BREAK),
    );
    // The downstream fails for messages 3..6 (the first three attempts open the circuit).
    let mut messages: std::collections::VecDeque<u32> = (0..10).collect();
    let mut processed = Vec::new();
    let mut attempts = 0;
    while let Some(message) = messages.pop_front() {
        breaker.ready().await;
        attempts += 1;
        let down = (4..=6).contains(&attempts);
        match breaker
            .call(|| async move {
                if down {
                    Err("down")
                } else {
                    Ok(message)
                }
            })
            .await
        {
            Ok(done) => processed.push(done),
            Err(_) => messages.push_front(message),
        }
    }
    assert_eq!(processed, (0..10).collect::<Vec<_>>());
    assert_eq!(
        breaker.metrics().rejected_open,
        0,
        "the consumer never hit the open circuit"
    );
    assert_eq!(breaker.metrics().transitions.to_open, 1);
}
