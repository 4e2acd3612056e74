//! Defects a review of the engine found, each kept from coming back: a panicking subscriber, latency
//! sampling shared across breakers, a stale probe, a timeline that depended on who looked, a break
//! longer than its cap, a wrapping latency sum, a stale rejection from the layer, and the words and
//! figures a log shows.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{service_fn, BoxError, Layer, Service};
use tower_circuit_breaker::{
    BreakBackoff, CancelledCalls, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer,
    CircuitOpen, CircuitState, Clock, ManualClock, TransitionReason,
};

fn breaker(config: CircuitBreakerConfig, time: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder("ledger")
        .config(config)
        .clock(Clock::manual(time))
        .build()
        .unwrap()
}

fn last_reason(breaker: &CircuitBreaker) -> TransitionReason {
    breaker.metrics().last_transition_reason.unwrap()
}

// ===== a panicking `tracing` subscriber =====

/// A subscriber that panics on every event, as test subscribers that assert do.
struct PanickingSubscriber;

impl tracing::Subscriber for PanickingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        panic!("the subscriber panicked");
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

const CHILD: &str = "TOWER_CIRCUIT_BREAKER_PANIC_CHILD";

/// What the child process runs: a transition announced to a panicking subscriber, from a
/// recorded outcome and from a permit dropped while the call's own panic unwinds.
fn panicking_subscriber_reproducer() {
    let time = ManualClock::new();
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(10))
        .cancelled_calls(CancelledCalls::Failure);
    let breaker = breaker(config, &time);
    let mut events = breaker.subscribe();

    // Recording the failure opens the circuit; its announcement panics in the subscriber.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        tracing::subscriber::with_default(PanickingSubscriber, || {
            breaker.try_acquire().unwrap().failure();
        });
    }));
    assert!(caught.is_err(), "the caller catches the subscriber's panic");
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(events.try_recv().unwrap().to, CircuitState::Open);
    println!("caught: recording an outcome");

    // A probe whose operation panics: its permit is dropped while unwinding, which reopens the
    // circuit, and the subscriber panics again on the way.
    time.advance(Duration::from_secs(10));
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        tracing::subscriber::with_default(PanickingSubscriber, || {
            let _probe = breaker.try_acquire().unwrap();
            panic!("the operation panicked");
        });
    }));
    let payload = caught.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the operation panicked")
    );
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(last_reason(&breaker).kind(), "probe_cancelled");
    println!("caught: a probe dropped while its operation panicked");

    // Admission itself moves the breaker to half-open, and the subscriber panics on that: the
    // probe slot the call took goes back before the panic reaches the caller.
    let time = ManualClock::new();
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .half_open_max_calls(1)
        .break_duration(Duration::from_secs(10));
    let admitting = self::breaker(config, &time);
    admitting.try_acquire().unwrap().failure();
    time.advance(Duration::from_secs(10));
    let caught = catch_unwind(AssertUnwindSafe(|| {
        tracing::subscriber::with_default(PanickingSubscriber, || {
            let _probe = admitting.try_acquire();
        });
    }));
    assert!(caught.is_err());
    assert_eq!(admitting.metrics().half_open_in_flight, 0);
    assert!(admitting.try_acquire().unwrap().is_probe());
    println!("caught: an admission that moved to half-open");
}

#[test]
fn a_panicking_subscriber_unwinds_to_the_caller_and_never_aborts() {
    if std::env::var_os(CHILD).is_some() {
        panicking_subscriber_reproducer();
        return;
    }
    // In a child process: an abort there must fail this test, not end the test run.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panicking_subscriber_unwinds_to_the_caller_and_never_aborts",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child ended with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("caught: recording an outcome"), "{stdout}");
    assert!(
        stdout.contains("caught: a probe dropped while its operation panicked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("caught: an admission that moved to half-open"),
        "{stdout}"
    );
}

// ===== latency sampling, per breaker =====

/// Calls `a` and `b` in turn on one thread, `rounds` times each, and returns their samples.
fn alternate(a: &CircuitBreaker, b: &CircuitBreaker, rounds: u64) -> (u64, u64) {
    for _ in 0..rounds {
        a.try_acquire().unwrap().success();
        b.try_acquire().unwrap().success();
    }
    (a.metrics().latency.samples, b.metrics().latency.samples)
}

#[test]
fn sample_every_one_times_every_call_when_a_thread_uses_two_breakers() {
    let time = ManualClock::new();
    let every_call = breaker(
        CircuitBreakerConfig::default().latency_sample_every(1),
        &time,
    );
    let default = breaker(CircuitBreakerConfig::default(), &time);
    let (timed, _) = alternate(&every_call, &default, 1_000);
    assert_eq!(timed, 1_000);
}

#[test]
fn two_breakers_called_in_turn_each_get_a_fair_sample() {
    let time = ManualClock::new();
    let a = breaker(CircuitBreakerConfig::default(), &time);
    let b = breaker(CircuitBreakerConfig::default(), &time);
    let every = u64::from(CircuitBreakerConfig::default().latency_sample_every);
    let (a_timed, b_timed) = alternate(&a, &b, 2_000);
    // One call in `every` of each breaker's own calls (the first is timed).
    let fair = 2_000_u64.div_ceil(every);
    assert_eq!((a_timed, b_timed), (fair, fair));
}

// ===== a hung probe's reopen, dated from its deadline =====

#[test]
fn a_hung_probe_reopens_from_its_deadline_whoever_looks_later() {
    let time = ManualClock::new();
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(10))
        .half_open_timeout(Duration::from_secs(5))
        .success_threshold(1);
    let breaker = breaker(config, &time);
    breaker.try_acquire().unwrap().failure();
    time.advance(Duration::from_secs(10));
    // A probe starts at 0 and hangs: it times out at 5 s, reopening until 15 s.
    let hung = breaker.try_acquire().unwrap();
    assert!(hung.is_probe());

    // Nothing looks until 15 s: the break that began at 5 s is over, so this call is a probe.
    time.advance(Duration::from_secs(15));
    let probe = breaker
        .try_acquire()
        .expect("admitted at the end of the break");
    assert!(probe.is_probe());
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::HalfOpen);
    assert_eq!(metrics.time_in_state, Duration::ZERO);
    assert_eq!(metrics.timeouts, 1);
    let reasons: Vec<_> = breaker
        .recent_transitions()
        .iter()
        .map(|transition| transition.reason.kind())
        .collect();
    assert_eq!(
        reasons,
        [
            "consecutive_failures",
            "break_elapsed",
            "probe_timed_out",
            "break_elapsed"
        ]
    );
    // Their wall-clock times are set back as well: the reopen ten seconds before the half-open.
    let recent = breaker.recent_transitions();
    let gap = recent[3].at.duration_since(recent[2].at).unwrap();
    assert!(gap >= Duration::from_secs(10), "{gap:?}");
    drop(hung);
    probe.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[test]
fn a_hung_probe_seen_late_gives_the_same_timeline_as_one_seen_at_once() {
    let run = |look_at_deadline: bool| {
        let time = ManualClock::new();
        let config = CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(Duration::from_secs(10))
            .half_open_timeout(Duration::from_secs(5));
        let breaker = breaker(config, &time);
        breaker.try_acquire().unwrap().failure();
        time.advance(Duration::from_secs(10));
        let _hung = breaker.try_acquire().unwrap();
        if look_at_deadline {
            time.advance(Duration::from_secs(5));
            assert_eq!(breaker.state(), CircuitState::Open);
            time.advance(Duration::from_secs(7));
        } else {
            time.advance(Duration::from_secs(12));
        }
        let metrics = breaker.metrics();
        (metrics.state, metrics.next_probe_in, metrics.time_in_state)
    };
    let expected = (
        CircuitState::Open,
        Some(Duration::from_secs(3)),
        Duration::from_secs(7),
    );
    assert_eq!(run(true), expected);
    assert_eq!(run(false), expected);
}

// ===== the backoff's cap holds after jitter =====

#[test]
fn jitter_never_pushes_a_break_past_max_duration() {
    let time = ManualClock::new();
    let cap = Duration::from_secs(10);
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(1))
        .break_backoff(BreakBackoff::new(2.0, cap).jitter(0.5));
    let breaker = breaker(config, &time);
    breaker.try_acquire().unwrap().failure();
    let mut longest = Duration::ZERO;
    for _ in 0..200 {
        let metrics = breaker.metrics();
        let left = metrics.next_probe_in.unwrap();
        longest = longest.max(left).max(metrics.break_duration);
        time.advance(left);
        breaker.try_acquire().unwrap().failure();
    }
    assert!(
        longest <= cap,
        "a break of {longest:?} with a cap of {cap:?}"
    );
    // The cap is reached: the breaks are not all short.
    assert!(longest >= Duration::from_secs(5), "{longest:?}");
}

// ===== the latency sum does not wrap =====

#[test]
fn the_latency_sum_holds_centuries_of_call_time() {
    let time = ManualClock::new();
    let breaker = breaker(
        CircuitBreakerConfig::default().latency_sample_every(1),
        &time,
    );
    // Two calls of 300 years each: 1.9e19 ns, past what 64 bits of nanoseconds hold.
    let three_centuries = Duration::from_secs(300 * 365 * 24 * 3600);
    let first = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    time.advance(three_centuries);
    first.success();
    second.success();
    let latency = breaker.metrics().latency;
    assert_eq!(latency.samples, 2);
    assert_eq!(latency.sum, three_centuries * 2);
    assert_eq!(latency.max, Some(three_centuries));
}

// ===== the layer judges the breaker at `call` time =====

fn poll_ready<S: Service<u32>>(service: &mut S) -> Poll<Result<(), S::Error>> {
    service.poll_ready(&mut Context::from_waker(Waker::noop()))
}

fn open_layer(time: &ManualClock) -> (CircuitBreaker, CircuitBreakerLayer) {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(10))
        .success_threshold(1);
    let breaker = breaker(config, time);
    breaker.try_acquire().unwrap().failure();
    let layer = CircuitBreakerLayer::new(breaker.clone());
    (breaker, layer)
}

#[tokio::test]
async fn a_call_after_the_break_ended_is_admitted_as_a_probe() {
    let time = ManualClock::new();
    let (breaker, layer) = open_layer(&time);
    let mut service = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) }));
    assert!(matches!(poll_ready(&mut service), Poll::Ready(Ok(()))));
    // The break ends between `poll_ready` and `call`.
    time.advance(Duration::from_secs(10));
    let answer = service
        .call(21)
        .await
        .expect("a probe, not the stale rejection");
    assert_eq!(answer, 42);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().rejected_open, 0);
}

#[tokio::test]
async fn a_call_while_still_open_says_how_long_is_left_now() {
    let time = ManualClock::new();
    let (breaker, layer) = open_layer(&time);
    let mut service = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    assert!(matches!(poll_ready(&mut service), Poll::Ready(Ok(()))));
    time.advance(Duration::from_secs(4));
    let error = service.call(1).await.unwrap_err();
    let rejection = error.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(rejection.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(breaker.metrics().rejected_open, 1);
}

/// An inner service that is never ready.
#[derive(Clone)]
struct NeverReady;

impl Service<u32> for NeverReady {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Pending
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

#[tokio::test]
async fn a_call_that_cannot_go_ahead_counts_once_and_gives_its_probe_slot_back() {
    let time = ManualClock::new();
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .half_open_max_calls(1)
        .cancelled_calls(CancelledCalls::Failure)
        .break_duration(Duration::from_secs(10));
    let breaker = breaker(config, &time);
    breaker.try_acquire().unwrap().failure();
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(NeverReady);
    assert!(matches!(poll_ready(&mut service), Poll::Ready(Ok(()))));
    // The break ends, the breaker would admit a probe, but the inner service is not ready.
    time.advance(Duration::from_secs(10));
    let error = service.call(1).await.unwrap_err();
    let open = error.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(open.retry_after(), Some(Duration::ZERO));
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::HalfOpen, "not reopened");
    assert_eq!(metrics.half_open_in_flight, 0);
    assert_eq!(metrics.cancelled_calls, 0);
    assert_eq!(metrics.rejected_open, 1);
    assert!(breaker.try_acquire().unwrap().is_probe());
}

// ===== one word for one outcome =====

#[test]
fn a_probe_that_timed_out_is_logged_as_a_timeout() {
    let time = ManualClock::new();
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(1));
    let breaker = breaker(config, &time);
    breaker.try_acquire().unwrap().failure();
    time.advance(Duration::from_secs(1));
    // What a per-try timeout around the probe records.
    breaker.try_acquire().unwrap().timeout();
    let reason = last_reason(&breaker);
    assert_eq!(reason.to_string(), "probe timed out");
    assert_eq!(reason.kind(), "probe_timeout");
    assert_eq!(breaker.metrics().timeouts, 1);

    time.advance(Duration::from_secs(1));
    breaker.try_acquire().unwrap().failure();
    assert_eq!(last_reason(&breaker).to_string(), "probe failed");
}

// ===== durations for people =====

#[test]
fn durations_in_messages_are_rounded_for_people() {
    let time = ManualClock::new();
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(1))
        .half_open_timeout(Duration::from_millis(12_345));
    let breaker = breaker(config, &time);
    breaker.try_acquire().unwrap().failure();
    time.advance(Duration::from_nanos(26_896_897));
    let rejection = breaker.try_acquire().unwrap_err();
    assert_eq!(
        rejection.to_string(),
        "circuit open: breaker `ledger`, next probe in 973ms"
    );
    time.advance(Duration::from_secs(1));
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(last_reason(&breaker).to_string(), "break of 1s elapsed");
    time.advance(Duration::from_secs(13));
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        last_reason(&breaker).to_string(),
        "probe timed out: no outcome within 12.3s"
    );
    drop(probe);
}
