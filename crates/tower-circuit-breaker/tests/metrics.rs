//! What a breaker reports: the metrics snapshot, latency, and the `tracing` event per transition.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, Clock, ManualClock,
};

fn manual_breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
    let time = ManualClock::new();
    let breaker = CircuitBreaker::builder("orders")
        .config(config)
        .clock(Clock::manual(&time))
        .build()
        .unwrap();
    (breaker, time)
}

#[test]
fn counters_add_up_to_the_calls_made() {
    let (breaker, _) = manual_breaker(CircuitBreakerConfig::default().failure_threshold(100));
    for i in 0..40 {
        let permit = breaker.try_acquire().unwrap();
        match i % 5 {
            0 => permit.success(),
            1 => permit.failure(),
            2 => permit.timeout(),
            3 => permit.ignored(),
            _ => drop(permit),
        }
    }
    let metrics = breaker.metrics();
    assert_eq!(metrics.successful_calls, 8);
    assert_eq!(metrics.failed_calls, 16);
    assert_eq!(metrics.timeouts, 8);
    assert_eq!(metrics.ignored_calls, 8);
    assert_eq!(metrics.cancelled_calls, 8);
    assert_eq!(metrics.total_calls, 40);
    assert!((metrics.failure_rate() - 16.0 / 24.0).abs() < 1e-9);
    assert!((metrics.success_rate() - 8.0 / 24.0).abs() < 1e-9);
    assert_eq!(metrics.rejected_calls(), 0);
    assert_eq!(&*metrics.name, "orders");
}

#[test]
fn a_new_breaker_reports_a_clean_slate() {
    let (breaker, _) = manual_breaker(CircuitBreakerConfig::default());
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Closed);
    assert_eq!(metrics.total_calls, 0);
    assert_eq!(metrics.failure_rate(), 0.0);
    assert_eq!(metrics.success_rate(), 1.0);
    assert_eq!(metrics.last_state_change, None);
    assert_eq!(metrics.latency.samples, 0);
    assert_eq!(metrics.latency.avg(), None);
}

#[test]
fn latency_min_avg_max_and_histogram_come_from_timed_calls() {
    let (breaker, time) = manual_breaker(CircuitBreakerConfig::default().latency_sample_every(1));
    for millis in [2, 4, 30] {
        let permit = breaker.try_acquire().unwrap();
        time.advance(Duration::from_millis(millis));
        permit.success();
    }
    let latency = breaker.metrics().latency;
    assert_eq!(latency.samples, 3);
    assert_eq!(latency.min, Some(Duration::from_millis(2)));
    assert_eq!(latency.max, Some(Duration::from_millis(30)));
    assert_eq!(latency.avg(), Some(Duration::from_millis(12)));
    assert_eq!(latency.sum, Duration::from_millis(36));
    // Buckets: <=1ms, <=2.5ms, <=5ms, <=10ms, <=25ms, <=50ms, ...
    assert_eq!(&latency.buckets[..6], &[0, 1, 1, 0, 0, 1]);
}

#[test]
fn latency_is_sampled_one_call_in_n_per_thread() {
    let (breaker, time) = manual_breaker(CircuitBreakerConfig::default().latency_sample_every(4));
    for _ in 0..40 {
        let permit = breaker.try_acquire().unwrap();
        time.advance(Duration::from_millis(1));
        permit.success();
    }
    assert_eq!(breaker.metrics().latency.samples, 10);
}

#[test]
fn cancelled_calls_are_not_timed() {
    let (breaker, time) = manual_breaker(CircuitBreakerConfig::default().latency_sample_every(1));
    let permit = breaker.try_acquire().unwrap();
    time.advance(Duration::from_secs(60));
    drop(permit);
    assert_eq!(breaker.metrics().latency.samples, 0);
}

#[test]
fn the_snapshot_says_when_the_state_changed_and_when_the_next_probe_is() {
    let (breaker, time) = manual_breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(Duration::from_secs(20)),
    );
    time.advance(Duration::from_secs(5));
    breaker.try_acquire().unwrap().failure();
    time.advance(Duration::from_secs(8));
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Open);
    assert!(metrics.last_state_change.is_some());
    assert_eq!(metrics.time_in_state, Duration::from_secs(8));
    assert_eq!(metrics.next_probe_in, Some(Duration::from_secs(12)));
    assert_eq!(metrics.transitions.to(CircuitState::Open), 1);
    assert!(!breaker.is_healthy());
}

#[test]
fn rejections_are_counted_apart_from_calls() {
    let (breaker, time) = manual_breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .half_open_max_calls(1)
            .break_duration(Duration::from_secs(1)),
    );
    breaker.try_acquire().unwrap().failure();
    for _ in 0..3 {
        assert!(breaker.try_acquire().is_err());
    }
    time.advance(Duration::from_secs(1));
    let probe = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err());
    drop(probe);
    let metrics = breaker.metrics();
    assert_eq!((metrics.rejected_open, metrics.rejected_half_open), (3, 1));
    assert_eq!(metrics.total_calls, 2);
}

#[test]
fn memory_per_breaker_is_fixed_when_it_is_built() {
    let (breaker, _) = manual_breaker(CircuitBreakerConfig::default());
    let before = breaker.size_in_bytes();
    for _ in 0..1000 {
        breaker.try_acquire().unwrap().success();
    }
    assert_eq!(breaker.size_in_bytes(), before);
    assert!(before < 16 * 1024, "{before} bytes");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn each_transition_is_a_tracing_event_with_the_name_and_the_reason() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let (breaker, _) = manual_breaker(CircuitBreakerConfig::default());
        for _ in 0..5 {
            breaker.try_acquire().unwrap().failure();
        }
        breaker.reset();
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines[0].contains("WARN"), "{logs}");
    assert!(lines[0].contains("breaker=orders"), "{logs}");
    assert!(lines[0].contains("reason=5 consecutive failures"), "{logs}");
    assert!(lines[0].contains("to=open"), "{logs}");
    assert!(
        lines[1].contains("INFO") && lines[1].contains("reason=manual reset"),
        "{logs}"
    );
}

#[tokio::test(start_paused = true)]
async fn transitions_are_counted_by_where_they_came_from_and_went() {
    use tower_circuit_breaker::CircuitState::{Closed, HalfOpen, Isolated, Open};
    let breaker = tower_circuit_breaker::CircuitBreaker::with_config(
        "db",
        tower_circuit_breaker::CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(1)
            .break_duration(Duration::from_secs(1)),
    )
    .unwrap();
    let fail = || breaker.call(|| async { Err::<(), _>("down") });
    let _ = fail().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let _ = fail().await; // the probe fails: half-open -> open
    tokio::time::advance(Duration::from_secs(1)).await;
    breaker.call(|| async { Ok::<_, &str>(()) }).await.unwrap();
    breaker.isolate();
    breaker.reset();

    let counts = breaker.metrics().transitions;
    assert_eq!(counts.between(Closed, Open), 1);
    assert_eq!(counts.between(Open, HalfOpen), 2);
    assert_eq!(counts.between(HalfOpen, Open), 1);
    assert_eq!(counts.between(HalfOpen, Closed), 1);
    assert_eq!(counts.between(Closed, Isolated), 1);
    assert_eq!(counts.between(Isolated, Closed), 1);
    assert_eq!(counts.between(Open, Closed), 0);
    assert_eq!(counts.to(Open), 2);
    assert_eq!(counts.to(Closed), 2);
}
