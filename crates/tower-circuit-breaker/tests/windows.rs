//! Sliding windows: failure-rate and slow-call rules over count and time windows, how they slide,
//! bucket boundaries, growing breaks, the anti-flap interval, and the reasons they give.

use std::time::Duration;

use tower_circuit_breaker::{
    BreakBackoff, CircuitBreaker, CircuitBreakerConfig, CircuitState, Clock, FailureRateRule,
    ManualClock, SlidingWindow, SlowCallRule, TransitionReason,
};

const BREAK: Duration = Duration::from_secs(10);

fn breaker_with(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
    let time = ManualClock::new();
    let breaker = CircuitBreaker::builder("ledger")
        .config(config.break_duration(BREAK))
        .clock(Clock::manual(&time))
        .build()
        .unwrap();
    (breaker, time)
}

/// Failure rate only: the consecutive rule is kept out of the way.
fn rate_config(
    window: SlidingWindow,
    threshold: f64,
    minimum_throughput: u32,
) -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(1_000_000)
        .failure_rate(
            FailureRateRule::new(threshold)
                .window(window)
                .minimum_throughput(minimum_throughput),
        )
}

fn record(breaker: &CircuitBreaker, failure: bool) {
    let permit = breaker.try_acquire().expect("closed");
    if failure {
        permit.failure();
    } else {
        permit.success();
    }
}

/// Feeds one failure in every `every` calls until the circuit opens; returns the calls it took.
fn calls_until_open(
    breaker: &CircuitBreaker,
    time: &ManualClock,
    every: u64,
    step: Duration,
) -> u64 {
    for call in 1..=10_000 {
        record(breaker, call % every == 0);
        time.advance(step);
        if breaker.state() == CircuitState::Open {
            return call;
        }
    }
    panic!("never opened");
}

#[test]
fn a_count_window_trips_on_the_failure_rate_once_it_holds_minimum_throughput() {
    let (breaker, _) = breaker_with(rate_config(SlidingWindow::Calls(10), 0.5, 4));
    record(&breaker, true);
    record(&breaker, true);
    record(&breaker, true);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "3 calls < minimum throughput 4"
    );
    record(&breaker, false);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "a success never trips"
    );
    record(&breaker, true);
    assert_eq!(breaker.state(), CircuitState::Open);
    let reason = breaker.metrics().last_transition_reason.unwrap();
    assert_eq!(
        reason,
        TransitionReason::FailureRate {
            rate: 0.8,
            threshold: 0.5,
            calls: 5,
            window: None
        }
    );
    assert_eq!(reason.to_string(), "failure rate 0.80 >= 0.5 over 5 calls");
}

#[test]
fn a_count_window_holds_only_the_last_n_outcomes() {
    let (breaker, _) = breaker_with(rate_config(SlidingWindow::Calls(4), 0.75, 4));
    for failure in [true, true, false, false, false, false, true] {
        record(&breaker, failure);
    }
    let window = breaker.metrics().window.unwrap();
    assert_eq!((window.calls, window.failures), (4, 1));
    assert!((window.failure_rate() - 0.25).abs() < 1e-9);
}

#[test]
fn ignored_and_cancelled_calls_stay_out_of_the_window() {
    let (breaker, _) = breaker_with(rate_config(SlidingWindow::Calls(10), 0.5, 2));
    breaker.try_acquire().unwrap().ignored();
    drop(breaker.try_acquire().unwrap());
    record(&breaker, false);
    let window = breaker.metrics().window.unwrap();
    assert_eq!((window.calls, window.failures), (1, 0));
}

#[test]
fn a_count_window_slides_after_a_million_successes_as_fast_as_a_new_one() {
    let config = rate_config(SlidingWindow::Calls(100), 0.5, 20);
    // A new breaker whose window is full of successes, and one that has seen a million.
    let (fresh, fresh_time) = breaker_with(config.clone());
    for _ in 0..100 {
        record(&fresh, false);
    }
    let fresh_calls = calls_until_open(&fresh, &fresh_time, 2, Duration::ZERO);

    let (aged, aged_time) = breaker_with(config);
    for _ in 0..1_000_000 {
        record(&aged, false);
    }
    let aged_calls = calls_until_open(&aged, &aged_time, 2, Duration::ZERO);
    assert_eq!(aged_calls, fresh_calls);
    assert_eq!(aged_calls, 100, "within one window of calls");
}

#[test]
fn a_time_window_slides_after_a_million_successes_as_fast_as_a_new_one() {
    let config = rate_config(SlidingWindow::time(Duration::from_secs(60), 10), 0.5, 20);
    // A new breaker with one window's worth of successes, and one with a million over ten minutes.
    let (fresh, fresh_time) = breaker_with(config.clone());
    for _ in 0..600 {
        record(&fresh, false);
        fresh_time.advance(Duration::from_millis(100));
    }
    let (aged, aged_time) = breaker_with(config);
    for _ in 0..1_000_000 {
        record(&aged, false);
        aged_time.advance(Duration::from_micros(600));
    }

    // Then one call in two fails, a call every 100 ms.
    let fresh_calls = calls_until_open(&fresh, &fresh_time, 2, Duration::from_millis(100));
    let aged_calls = calls_until_open(&aged, &aged_time, 2, Duration::from_millis(100));
    assert_eq!(aged_calls, fresh_calls);
    let took = Duration::from_millis(100) * u32::try_from(aged_calls).unwrap();
    assert!(took <= Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_failure_leaves_a_time_window_with_its_bucket_and_not_before() {
    // 10 s in 10 buckets of 1 s; one call is enough to judge.
    let window = SlidingWindow::time(Duration::from_secs(10), 10);
    let (breaker, time) = breaker_with(rate_config(window, 1.0, 2));
    // The failure lands at the very start of bucket 0.
    breaker.try_acquire().unwrap().failure();
    time.advance(Duration::from_secs(10) - Duration::from_millis(1));
    let held = breaker.metrics().window.unwrap();
    assert_eq!(
        (held.calls, held.failures),
        (1, 1),
        "at T - 1 ms it still counts"
    );
    time.advance(Duration::from_millis(1));
    let held = breaker.metrics().window.unwrap();
    assert_eq!(
        (held.calls, held.failures),
        (0, 0),
        "at T its bucket has left"
    );

    // And it no longer helps a new failure trip the 100% rule with 2 calls.
    record(&breaker, true);
    assert_eq!(breaker.state(), CircuitState::Closed);
    record(&breaker, true);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker
            .metrics()
            .last_transition_reason
            .unwrap()
            .to_string(),
        "failure rate 1.00 >= 1 over 2 calls in 10s"
    );
}

#[test]
fn a_time_window_drops_whole_buckets() {
    let window = SlidingWindow::time(Duration::from_secs(4), 4);
    let (breaker, time) = breaker_with(rate_config(window, 1.0, 100));
    time.advance(Duration::from_millis(500));
    record(&breaker, true); // bucket 0
    time.advance(Duration::from_millis(1000));
    record(&breaker, false); // bucket 1
    time.advance(Duration::from_millis(2999)); // 4.499 s: bucket 4, bucket 0 has left
    let held = breaker.metrics().window.unwrap();
    assert_eq!((held.calls, held.failures), (1, 0));
    time.advance(Duration::from_millis(1)); // 4.5 s: still bucket 4
    assert_eq!(breaker.metrics().window.unwrap().calls, 1);
    time.advance(Duration::from_millis(500)); // 5.0 s: bucket 5, bucket 1 has left
    assert_eq!(breaker.metrics().window.unwrap().calls, 0);
}

#[test]
fn a_long_quiet_spell_empties_a_time_window() {
    let window = SlidingWindow::time(Duration::from_secs(60), 60);
    let (breaker, time) = breaker_with(rate_config(window, 0.5, 1));
    for _ in 0..10 {
        record(&breaker, false);
    }
    time.advance(Duration::from_secs(3600));
    assert_eq!(breaker.metrics().window.unwrap().calls, 0);
    record(&breaker, true);
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "one failure in an empty window is 100%"
    );
}

#[test]
fn the_window_is_cleared_when_the_circuit_closes() {
    let (breaker, time) =
        breaker_with(rate_config(SlidingWindow::Calls(10), 0.5, 2).success_threshold(1));
    record(&breaker, true);
    record(&breaker, true);
    assert_eq!(breaker.state(), CircuitState::Open);
    time.advance(BREAK);
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(
        breaker.metrics().window.unwrap().calls,
        0,
        "old failures do not re-trip it"
    );
    record(&breaker, true);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn a_reset_in_the_first_buckets_empties_a_time_window() {
    // Cleared before the window has seen B buckets: every bucket start must be rewritten.
    let window = SlidingWindow::time(Duration::from_secs(60), 10);
    let (breaker, time) = breaker_with(rate_config(window, 1.0, 2));
    record(&breaker, true);
    time.advance(Duration::from_secs(6));
    breaker.reset();
    assert_eq!(breaker.metrics().window.unwrap().calls, 0);
    record(&breaker, true);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "one failure after the reset is 1 call, not 2"
    );
}

#[test]
fn stale_outcomes_stay_out_of_the_new_window() {
    let (breaker, _) = breaker_with(rate_config(SlidingWindow::Calls(10), 0.5, 1));
    let old = breaker.try_acquire().unwrap();
    breaker.reset();
    old.failure();
    assert_eq!(breaker.metrics().window.unwrap().calls, 0);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn slow_calls_trip_the_slow_call_rule_and_still_count_as_successes() {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1_000_000)
        .failure_rate(
            FailureRateRule::new(0.5)
                .window(SlidingWindow::Calls(10))
                .minimum_throughput(4),
        )
        .slow_call(SlowCallRule::new(Duration::from_secs(2), 0.75));
    let (breaker, time) = breaker_with(config);
    for slow in [true, false, true, true] {
        let permit = breaker.try_acquire().unwrap();
        time.advance(if slow {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(10)
        });
        permit.success();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let metrics = breaker.metrics();
    assert_eq!(metrics.failed_calls, 0, "slow successes are successes");
    let window = metrics.window.unwrap();
    assert_eq!(
        (window.calls, window.failures, window.slow_calls),
        (4, 0, 3)
    );
    assert!((window.slow_call_rate() - 0.75).abs() < 1e-9);
    assert_eq!(
        metrics.last_transition_reason.unwrap().to_string(),
        "slow-call rate 0.75 >= 0.75 over 4 calls"
    );
}

#[test]
fn a_slow_call_rule_alone_brings_its_own_window() {
    let config = CircuitBreakerConfig::default().slow_call(
        SlowCallRule::new(Duration::from_millis(500), 0.5)
            .window(SlidingWindow::time(Duration::from_secs(60), 6))
            .minimum_throughput(2),
    );
    let (breaker, time) = breaker_with(config);
    for _ in 0..2 {
        let permit = breaker.try_acquire().unwrap();
        time.advance(Duration::from_millis(500));
        permit.success();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker
            .metrics()
            .last_transition_reason
            .unwrap()
            .to_string(),
        "slow-call rate 1.00 >= 0.5 over 2 calls in 1m"
    );
}

#[test]
fn the_consecutive_rule_still_applies_alongside_the_window() {
    let config = rate_config(SlidingWindow::Calls(100), 0.9, 100).failure_threshold(3);
    let (breaker, _) = breaker_with(config);
    for _ in 0..3 {
        record(&breaker, true);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker.metrics().last_transition_reason,
        Some(TransitionReason::ConsecutiveFailures { failures: 3 })
    );
}

#[test]
fn a_disabled_breaker_fills_its_window_but_never_trips() {
    let (breaker, _) = breaker_with(rate_config(SlidingWindow::Calls(10), 0.5, 1));
    breaker.disable();
    for _ in 0..10 {
        record(&breaker, true);
    }
    assert_eq!(breaker.state(), CircuitState::Disabled);
    assert_eq!(breaker.metrics().window.unwrap().failures, 10);
}

#[test]
fn breaks_grow_on_each_reopen_up_to_the_cap_and_reset_on_close() {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .success_threshold(1)
        .break_backoff(BreakBackoff::new(2.0, Duration::from_secs(35)));
    let (breaker, time) = breaker_with(config);
    record(&breaker, true);
    let mut breaks = vec![breaker.metrics().break_duration];
    for _ in 0..3 {
        time.advance(breaker.metrics().next_probe_in.unwrap());
        breaker.try_acquire().unwrap().failure(); // the probe fails: reopen
        breaks.push(breaker.try_acquire().unwrap_err().retry_after().unwrap());
    }
    assert_eq!(
        breaks,
        [
            BREAK,
            Duration::from_secs(20),
            Duration::from_secs(35),
            Duration::from_secs(35)
        ]
    );

    time.advance(Duration::from_secs(35));
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), CircuitState::Closed);
    record(&breaker, true);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(BREAK),
        "closing starts over"
    );
}

#[test]
fn jitter_moves_each_break_within_its_fraction() {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_backoff(BreakBackoff::new(1.0, BREAK).jitter(0.2));
    let (breaker, _) = breaker_with(config);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        record(&breaker, true);
        let pause = breaker.metrics().break_duration;
        assert!(
            pause >= Duration::from_secs(8) && pause <= Duration::from_secs(12),
            "{pause:?}"
        );
        seen.insert(pause);
        breaker.reset();
    }
    assert!(seen.len() > 1, "jitter varies the break");
}

#[test]
fn the_anti_flap_interval_holds_a_fresh_closed_state() {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(2)
        .min_transition_interval(Duration::from_secs(5));
    let (breaker, time) = breaker_with(config);
    time.advance(Duration::from_secs(1));
    record(&breaker, true);
    record(&breaker, true);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "closed for 1 s < 5 s"
    );
    time.advance(Duration::from_secs(4));
    record(&breaker, true);
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "the first failure after the interval trips"
    );
    assert_eq!(
        breaker.metrics().last_transition_reason,
        Some(TransitionReason::ConsecutiveFailures { failures: 3 })
    );
}

#[test]
fn memory_per_breaker_is_fixed_and_small() {
    let sizes = [
        ("default", CircuitBreakerConfig::default()),
        (
            "count window of 100 calls",
            rate_config(SlidingWindow::Calls(100), 0.5, 20),
        ),
        (
            "time window of 60 s in 60 buckets",
            rate_config(SlidingWindow::time(Duration::from_secs(60), 60), 0.5, 20),
        ),
    ]
    .map(|(name, config)| {
        let (breaker, time) = breaker_with(config);
        let before = breaker.size_in_bytes();
        for _ in 0..10_000 {
            record(&breaker, false);
            time.advance(Duration::from_millis(7));
        }
        assert_eq!(breaker.size_in_bytes(), before, "{name}");
        println!("{name}: {before} bytes");
        before
    });
    assert!(sizes[1] - sizes[0] >= 100, "a slot per call");
    assert!(sizes[2] - sizes[0] >= 60 * 24, "three words per bucket");
    assert!(sizes.iter().all(|size| *size < 8 * 1024), "{sizes:?}");
}
