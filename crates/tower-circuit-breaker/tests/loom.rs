//! Model checks of the engine's races under loom: every interleaving of two or three threads
//! admitting, recording and resetting, within loom's preemption bound.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p tower-circuit-breaker --test loom --release`.
//! Each model builds its breaker inside `loom::model`, since the engine's atomics and lock are
//! loom's under `--cfg loom`.

// After the docs: a crate-level `cfg` that is off drops every attribute after it, docs included,
// and `missing_docs` would fire.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, FailureRateRule, ManualClock, OwnedPermit,
    Rejection, SlidingWindow, TransitionReason, WindowMetrics,
};

const BREAK: Duration = Duration::from_millis(10);
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// Small thresholds, every call timed (no per-thread sampling state), a manual clock.
fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(2)
        .break_duration(BREAK)
        .half_open_timeout(PROBE_TIMEOUT)
        .success_threshold(1)
        .half_open_max_calls(1)
        .latency_sample_every(1)
}

fn breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("loom")
        .config(config)
        .clock(clock.clone())
        .build()
        .expect("valid config");
    (breaker, clock)
}

/// A breaker whose break has just ended: still open in its word, so the first caller to arrive
/// moves it to half-open.
fn breaker_past_its_break(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
    let (breaker, clock) = breaker(config.failure_threshold(1));
    breaker.try_acquire().expect("closed").failure();
    assert_eq!(breaker.metrics().transitions.to_open, 1);
    clock.advance(BREAK);
    (breaker, clock)
}

/// `callers` threads ask for a probe at once, racing the open -> half-open transition, and hold
/// what they got; the probes admitted are then all held at the same time.
fn check_concurrent_probes(limit: u32, callers: usize) {
    loom::model(move || {
        let (breaker, _clock) = breaker_past_its_break(
            config()
                .half_open_max_calls(limit)
                .success_threshold(limit + 1),
        );
        let handles: Vec<_> = (0..callers)
            .map(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.try_acquire_owned())
            })
            .collect();
        let results: Vec<Result<OwnedPermit, Rejection>> = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect();

        let probes: Vec<&OwnedPermit> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert!(
            probes.len() <= limit as usize,
            "{} probes held",
            probes.len()
        );
        // No time passes and nothing is recorded, so every free slot is taken.
        assert_eq!(probes.len(), limit as usize);
        assert!(probes.iter().all(|probe| probe.is_probe()));
        for result in &results {
            if let Err(rejection) = result {
                assert!(
                    matches!(rejection, Rejection::HalfOpenFull(_)),
                    "{rejection:?}"
                );
            }
        }
        let metrics = breaker.metrics();
        assert!(metrics.half_open_in_flight <= limit);
        assert_eq!(metrics.half_open_in_flight, limit);
        assert_eq!(metrics.state, CircuitState::HalfOpen);
        assert_eq!(metrics.transitions.to_half_open, 1);
        assert_eq!(
            metrics.rejected_half_open,
            (callers - limit as usize) as u64
        );

        drop(results);
        let metrics = breaker.metrics();
        assert_eq!(metrics.half_open_in_flight, 0);
        assert_eq!(metrics.cancelled_calls, u64::from(limit));
    });
}

#[test]
fn concurrent_callers_get_at_most_one_probe_when_the_limit_is_one() {
    check_concurrent_probes(1, 2);
}

#[test]
fn concurrent_callers_get_at_most_two_probes_when_the_limit_is_two() {
    check_concurrent_probes(2, 3);
}

#[test]
fn a_probe_slot_freed_by_an_outcome_is_reused_without_exceeding_the_limit() {
    loom::model(|| {
        // A success threshold out of reach keeps the breaker half-open.
        let (breaker, _clock) = breaker_past_its_break(config().success_threshold(10));
        let live = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (breaker, live, admitted) = (breaker.clone(), live.clone(), admitted.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        let Ok(probe) = breaker.try_acquire_owned() else {
                            continue;
                        };
                        admitted.fetch_add(1, Ordering::SeqCst);
                        let held = live.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(held <= 1, "{held} probes held at once");
                        assert!(breaker.metrics().half_open_in_flight <= 1);
                        live.fetch_sub(1, Ordering::SeqCst);
                        probe.ignored();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::HalfOpen);
        assert_eq!(metrics.half_open_in_flight, 0);
        assert!(admitted.load(Ordering::SeqCst) >= 2);
        // The breaker-opening failure, then the probes.
        assert_eq!(
            metrics.total_calls,
            admitted.load(Ordering::SeqCst) as u64 + 1
        );
        assert_eq!(
            metrics.ignored_calls,
            admitted.load(Ordering::SeqCst) as u64
        );
    });
}

#[test]
fn concurrent_failures_open_the_circuit_exactly_once() {
    loom::model(|| {
        let (breaker, _clock) = breaker(config().failure_threshold(2));
        let mut events = breaker.subscribe();
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || match breaker.try_acquire_owned() {
                    Ok(permit) => {
                        permit.failure();
                        true
                    }
                    Err(_) => false,
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .filter(|admitted| *admitted)
            .count();

        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Open);
        assert_eq!(metrics.transitions.to_open, 1);
        assert_eq!(metrics.consecutive_failures, 0);
        assert_eq!(metrics.failed_calls, admitted as u64);
        assert_eq!(metrics.rejected_open, 3 - admitted as u64);

        let opened = events.try_recv().expect("one transition");
        assert_eq!(
            (opened.from, opened.to),
            (CircuitState::Closed, CircuitState::Open)
        );
        assert_eq!(
            opened.reason,
            TransitionReason::ConsecutiveFailures { failures: 2 }
        );
        assert!(events.try_recv().is_err(), "a second transition");
    });
}

#[test]
fn a_reset_racing_stale_failures_leaves_a_fresh_closed_generation() {
    loom::model(|| {
        let (breaker, _clock) = breaker(config().failure_threshold(2));
        let first = breaker.try_acquire_owned().expect("closed");
        let second = breaker.try_acquire_owned().expect("closed");
        let failing = thread::spawn(move || first.failure());
        let resetting = {
            let breaker = breaker.clone();
            thread::spawn(move || breaker.reset())
        };
        second.failure();
        failing.join().unwrap();
        resetting.join().unwrap();

        // Both failures may land before the reset and open the circuit, but the reset closes it;
        // a failure landing after it is from an older generation and counts for nothing.
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Closed);
        assert_eq!(metrics.consecutive_failures, 0);
        assert_eq!(metrics.transitions.to_closed, metrics.transitions.to_open);
        assert!(metrics.transitions.to_open <= 1);
        assert_eq!(metrics.failed_calls, 2);
        assert_eq!(
            metrics.successful_calls
                + metrics.failed_calls
                + metrics.ignored_calls
                + metrics.cancelled_calls,
            2
        );
    });
}

#[test]
fn a_reset_racing_stale_probe_outcomes_leaves_a_fresh_closed_generation() {
    loom::model(|| {
        let (breaker, _clock) = breaker_past_its_break(config().half_open_max_calls(3));
        let failed = breaker.try_acquire_owned().expect("a probe");
        let succeeded = breaker.try_acquire_owned().expect("a probe");
        let dropped = breaker.try_acquire_owned().expect("a probe");
        assert!(failed.is_probe() && succeeded.is_probe() && dropped.is_probe());
        let failing = thread::spawn(move || failed.failure());
        let resetting = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                drop(dropped);
                breaker.reset();
            })
        };
        succeeded.success();
        failing.join().unwrap();
        resetting.join().unwrap();

        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Closed);
        assert_eq!(metrics.consecutive_failures, 0);
        assert_eq!(metrics.half_open_in_flight, 0);
        // The opening failure, and the probes: one success, one failure, one cancelled.
        assert_eq!(
            (
                metrics.successful_calls,
                metrics.failed_calls,
                metrics.ignored_calls,
                metrics.cancelled_calls,
            ),
            (1, 2, 0, 1)
        );
        assert_eq!(metrics.total_calls, 4);
        // The next call is an ordinary closed-state call, not a probe of a stale half-open.
        let next = breaker.try_acquire().expect("closed");
        assert!(!next.is_probe());
        next.success();
    });
}

#[test]
fn a_success_racing_the_threshold_failure_leaves_closed_or_opens_once() {
    loom::model(|| {
        let (breaker, _clock) = breaker(config().failure_threshold(2));
        breaker.try_acquire().expect("closed").failure();
        let failure = breaker.try_acquire_owned().expect("closed");
        let success = breaker.try_acquire_owned().expect("closed");
        let failing = thread::spawn(move || failure.failure());
        success.success();
        failing.join().unwrap();

        let metrics = breaker.metrics();
        match metrics.state {
            // The failure came second: the success cleared the count first.
            CircuitState::Closed => {
                assert_eq!(metrics.transitions.to_open, 0);
                assert_eq!(metrics.consecutive_failures, 1);
            }
            // The failure came first and opened it; the success was from the old generation.
            CircuitState::Open => {
                assert_eq!(metrics.transitions.to_open, 1);
                assert_eq!(metrics.consecutive_failures, 0);
            }
            other => panic!("inconsistent state {other:?}"),
        }
        assert_eq!((metrics.successful_calls, metrics.failed_calls), (1, 2));
    });
}

#[test]
fn failures_and_a_success_racing_from_zero_leave_closed_or_open_once() {
    loom::model(|| {
        let (breaker, _clock) = breaker(config().failure_threshold(2));
        let permits: Vec<OwnedPermit> = (0..3)
            .map(|_| breaker.try_acquire_owned().expect("closed"))
            .collect();
        let handles: Vec<_> = permits
            .into_iter()
            .enumerate()
            .map(|(i, permit)| {
                thread::spawn(move || {
                    if i == 0 {
                        permit.success();
                    } else {
                        permit.failure();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }

        let metrics = breaker.metrics();
        match metrics.state {
            CircuitState::Closed => {
                assert_eq!(metrics.transitions.to_open, 0);
                assert!(metrics.consecutive_failures < 2);
            }
            CircuitState::Open => {
                assert_eq!(metrics.transitions.to_open, 1);
                assert_eq!(metrics.consecutive_failures, 0);
            }
            other => panic!("inconsistent state {other:?}"),
        }
    });
}

#[test]
fn a_probe_outcome_racing_its_timeout_changes_the_state_once() {
    loom::model(|| {
        let (breaker, clock) = breaker_past_its_break(config());
        let probe = breaker.try_acquire_owned().expect("a probe");
        assert!(probe.is_probe());
        let timing_out = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                clock.advance(PROBE_TIMEOUT);
                breaker.state()
            })
        };
        probe.success();
        timing_out.join().unwrap();

        let metrics = breaker.metrics();
        let transitions = metrics.transitions;
        match metrics.state {
            // The success closed it before the timeout was noticed.
            CircuitState::Closed => {
                assert_eq!((transitions.to_closed, transitions.to_open), (1, 1));
                assert_eq!(metrics.timeouts, 0);
            }
            // The overrun was applied first (by `state()` or by the outcome itself); the late
            // success is from the old generation.
            CircuitState::Open => {
                assert_eq!((transitions.to_closed, transitions.to_open), (0, 2));
                assert_eq!(metrics.timeouts, 1);
            }
            other => panic!("inconsistent state {other:?}"),
        }
        assert_eq!(metrics.half_open_in_flight, 0);
        assert_eq!(metrics.successful_calls, 1);
    });
}

// ===== sliding windows =====

/// A time window of two buckets, so one move ages a bucket out.
const WINDOW: Duration = Duration::from_millis(20);
const BUCKET: Duration = Duration::from_millis(10);

/// A breaker judged on `window` by a failure-rate rule alone: the consecutive rule is out of
/// reach, and every failure is judged at a rate of 1.0 once `minimum_throughput` calls are in. A
/// break outlasts every model, so a trip's reason is still the last one when it is checked.
fn windowed(window: SlidingWindow, minimum_throughput: u32) -> (CircuitBreaker, ManualClock) {
    breaker(
        config()
            .failure_threshold(1_000)
            .break_duration(Duration::from_secs(3_600))
            .failure_rate(
                FailureRateRule::new(1.0)
                    .window(window)
                    .minimum_throughput(minimum_throughput),
            ),
    )
}

fn window_of(breaker: &CircuitBreaker) -> (u64, u64) {
    let window: WindowMetrics = breaker.metrics().window.expect("a rate rule is on");
    (window.calls, window.failures)
}

fn finish(permit: OwnedPermit, failure: bool) {
    if failure {
        permit.failure();
    } else {
        permit.success();
    }
}

/// Admits a call per outcome (`true`: a failure), then records each thread's outcomes in order:
/// the last list on this thread, the others each on a thread of its own.
fn record_on_threads(breaker: &CircuitBreaker, threads: &[&[bool]]) {
    let mut admitted: Vec<Vec<(OwnedPermit, bool)>> = threads
        .iter()
        .map(|outcomes| {
            outcomes
                .iter()
                .map(|&failure| (breaker.try_acquire_owned().expect("closed"), failure))
                .collect()
        })
        .collect();
    let here = admitted.pop().expect("a thread");
    let handles: Vec<_> = admitted
        .into_iter()
        .map(|there| {
            thread::spawn(move || {
                for (permit, failure) in there {
                    finish(permit, failure);
                }
            })
        })
        .collect();
    for (permit, failure) in here {
        finish(permit, failure);
    }
    for handle in handles {
        handle.join().unwrap();
    }
}

fn assert_no_trip(breaker: &CircuitBreaker) {
    let metrics = breaker.metrics();
    assert_eq!(
        metrics.transitions.to_open, 0,
        "tripped: {:?}",
        metrics.last_transition_reason
    );
    assert_eq!(metrics.state, CircuitState::Closed);
}

#[test]
fn recorders_racing_a_bucket_move_lose_and_double_count_no_outcome() {
    loom::model(|| {
        // No rule judges fewer than 100 calls: a trip would come from torn counts.
        let (breaker, clock) = windowed(SlidingWindow::time(WINDOW, 2), 100);
        breaker.try_acquire().expect("closed").failure();
        // Into bucket 1: whichever racing record looks first moves the window, the others find
        // it moving or moved.
        clock.advance(BUCKET);
        record_on_threads(&breaker, &[&[false, true], &[true]]);

        assert_no_trip(&breaker);
        assert_eq!(window_of(&breaker), (4, 3));

        // Bucket 0 ages out. A record that landed while the move was under way counts in bucket
        // 0; the mover's own counts in bucket 1.
        clock.advance(BUCKET);
        let (calls, failures) = window_of(&breaker);
        assert!((1..=3).contains(&calls), "{calls} calls");
        assert!(failures <= calls.min(2), "{failures} failures of {calls}");

        clock.advance(WINDOW);
        assert_eq!(window_of(&breaker), (0, 0));
    });
}

#[test]
fn a_recorder_with_an_old_time_racing_a_bucket_move_reads_no_torn_window() {
    loom::model(|| {
        let (breaker, clock) = windowed(SlidingWindow::time(WINDOW, 2), 100);
        let failure = breaker.try_acquire_owned().expect("closed");
        let before = breaker.try_acquire_owned().expect("closed");
        let after = breaker.try_acquire_owned().expect("closed");
        // A success in bucket 0, then one in bucket 1 that moves the window, while this thread
        // records a failure at either time and judges the window it reads. (The clock is not
        // loom's, but loom runs one thread at a time, so its move is ordered by the schedule.) A
        // failure that read the bucket before the move and a start written by it would find the
        // running totals below that start: 2^32 - 1 calls, all failed, and a trip.
        let moving = {
            let clock = clock.clone();
            thread::spawn(move || {
                before.success();
                clock.advance(BUCKET);
                after.success();
            })
        };
        failure.failure();
        moving.join().unwrap();

        assert_no_trip(&breaker);
        assert_eq!(window_of(&breaker), (3, 1));
        clock.advance(WINDOW);
        assert_eq!(window_of(&breaker), (0, 0));
    });
}

/// Three calls, one a failure, race into a window of two slots.
fn check_count_window_tally(threads: &'static [&'static [bool]]) {
    loom::model(move || {
        // One failure among three calls in two slots: never a rate of 1.0 over two calls.
        let (breaker, _clock) = windowed(SlidingWindow::Calls(2), 2);
        record_on_threads(&breaker, threads);

        assert_no_trip(&breaker);
        let (calls, failures) = window_of(&breaker);
        assert_eq!(calls, 2);
        assert!(failures <= 1, "{failures} failures");

        // Overwriting both slots leaves exactly what was written, whatever the race left.
        for _ in 0..2 {
            breaker.try_acquire().expect("closed").success();
        }
        assert_eq!(window_of(&breaker), (2, 0));
        for _ in 0..2 {
            breaker.try_acquire().expect("closed").failure();
        }
        assert_eq!(window_of(&breaker), (2, 2));
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Open);
        assert_eq!(metrics.transitions.to_open, 1);
    });
}

#[test]
fn outcomes_racing_into_a_small_count_window_keep_its_tally_in_step_with_its_slots() {
    check_count_window_tally(&[&[true, false], &[false]]);
}

#[test]
fn three_writers_racing_for_two_slots_keep_the_tally_in_step_with_them() {
    check_count_window_tally(&[&[true], &[false], &[false]]);
}

#[test]
fn failures_racing_into_a_small_count_window_fill_it_and_open_it_once() {
    loom::model(|| {
        let (breaker, _clock) = windowed(SlidingWindow::Calls(2), 2);
        record_on_threads(&breaker, &[&[true, true], &[true]]);

        // Both slots hold a failure. A failure recorded after the trip is from the old
        // generation and stays out, which changes nothing in a window full of failures.
        assert_eq!(window_of(&breaker), (2, 2));
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Open);
        assert_eq!(metrics.transitions.to_open, 1);
        assert!(
            matches!(
                metrics.last_transition_reason,
                Some(TransitionReason::FailureRate { calls: 2, .. })
            ),
            "{:?}",
            metrics.last_transition_reason
        );
    });
}

#[test]
fn a_reset_racing_a_stale_failure_leaves_a_consistent_count_window() {
    loom::model(|| {
        let (breaker, _clock) = windowed(SlidingWindow::Calls(2), 2);
        breaker.try_acquire().expect("closed").failure();
        breaker.try_acquire().expect("closed").success();
        let stale = breaker.try_acquire_owned().expect("closed");
        // The reset, then a success in the fresh generation, racing a failure admitted before.
        let resetting = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                breaker.reset();
                breaker.try_acquire().expect("closed").success();
            })
        };
        stale.failure();
        resetting.join().unwrap();

        assert_no_trip(&breaker);
        // The reset emptied the window; the stale failure may be in it, or for a moment in a
        // slot the calls since the reset have not reached.
        let (calls, failures) = window_of(&breaker);
        assert!((1..=2).contains(&calls), "{calls} calls");
        assert!(failures <= 1, "{failures} failures of {calls}");

        // Overwriting both slots leaves exactly what was written.
        for _ in 0..2 {
            breaker.try_acquire().expect("closed").success();
        }
        assert_eq!(window_of(&breaker), (2, 0));
        assert_no_trip(&breaker);
    });
}

#[test]
fn a_reset_racing_a_bucket_move_leaves_a_consistent_time_window() {
    loom::model(|| {
        let (breaker, clock) = windowed(SlidingWindow::time(WINDOW, 2), 100);
        breaker.try_acquire().expect("closed").failure();
        breaker.try_acquire().expect("closed").failure();
        // Into bucket 1: the reset's clear races the move the stale failure makes.
        clock.advance(BUCKET);
        let stale = breaker.try_acquire_owned().expect("closed");
        // The reset, then a failure in the fresh generation, racing a failure admitted before.
        let resetting = {
            let breaker = breaker.clone();
            thread::spawn(move || {
                breaker.reset();
                breaker.try_acquire().expect("closed").failure();
            })
        };
        stale.failure();
        resetting.join().unwrap();

        assert_no_trip(&breaker);
        // The failures before it are gone; the fresh one is in, the stale one may be, or its call
        // without its failure (caught between its two counters by the clear): never more failures
        // than calls.
        let (calls, failures) = window_of(&breaker);
        assert!((1..=2).contains(&calls), "{calls} calls");
        assert!(
            (1..=calls).contains(&failures),
            "{failures} failures of {calls}"
        );

        // The window still moves and empties.
        breaker.try_acquire().expect("closed").success();
        clock.advance(WINDOW);
        assert_eq!(window_of(&breaker), (0, 0));
        breaker.try_acquire().expect("closed").success();
        assert_eq!(window_of(&breaker), (1, 0));
    });
}

/// A keyed breaker's eviction racing a call on it: the eviction never takes a breaker with a
/// call in flight, and judges it with every finished call's outcome in view. The call fails and
/// the threshold is one, so a breaker the call went through is open, and an open breaker is
/// never evicted: if the eviction went ahead, the call must have found the breaker evicted and
/// not run at all.
#[test]
fn an_eviction_racing_a_call_never_takes_the_breaker_the_call_went_through() {
    use tower_circuit_breaker::keyed::pins::Pins;

    loom::model(|| {
        let (breaker, _clock) = breaker(config().failure_threshold(1));
        let pins = Arc::new(Pins::new());
        let caller = {
            let (breaker, pins) = (breaker.clone(), Arc::clone(&pins));
            thread::spawn(move || {
                if !pins.pin() {
                    return false;
                }
                breaker.try_acquire().expect("closed").failure();
                pins.unpin();
                true
            })
        };
        let evicted = pins.evict_if(|| !breaker.state().is_failure_state());
        let called = caller.join().expect("caller");
        assert!(
            !(evicted && called),
            "evicted a breaker a call went through"
        );
        if !evicted {
            assert!(pins.pin(), "a breaker kept must stay usable");
        }
    });
}
