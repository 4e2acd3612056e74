//! A point-in-time snapshot of a breaker's state and counters.
//!
//! [`CircuitBreaker::metrics`](crate::CircuitBreaker::metrics) sums the breaker's own counters
//! when asked; nothing is kept twice on the call path. Counters only grow (a
//! [`reset`](crate::CircuitBreaker::reset) clears the counts the trip rules use, not these), so
//! they can be exported as Prometheus counters.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{CircuitState, TransitionReason};

/// Upper bounds of the latency histogram's buckets; a last, unbounded bucket follows them.
pub const LATENCY_BUCKETS: [Duration; 13] = [
    Duration::from_micros(1_000),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// A snapshot of one breaker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitMetrics {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state when the snapshot was taken.
    pub state: CircuitState,
    /// The generation: how many transitions (and resets) the breaker has made.
    pub generation: u64,
    /// Admitted calls that have finished: successful + failed + ignored + cancelled.
    pub total_calls: u64,
    /// Calls that succeeded.
    pub successful_calls: u64,
    /// Calls that failed, timeouts included.
    pub failed_calls: u64,
    /// Failed calls that were timeouts, plus half-open probes that overran `half_open_timeout`.
    pub timeouts: u64,
    /// Calls whose outcome was ignored.
    pub ignored_calls: u64,
    /// Admitted calls dropped before they finished.
    pub cancelled_calls: u64,
    /// Calls rejected because the circuit was open or isolated.
    pub rejected_open: u64,
    /// Calls rejected because the circuit was half-open with every probe slot taken.
    pub rejected_half_open: u64,
    /// Failures in a row in the current generation.
    pub consecutive_failures: u32,
    /// Probes in flight (half-open only).
    pub half_open_in_flight: u32,
    /// Wall-clock time of the last transition, if there was one.
    pub last_state_change: Option<SystemTime>,
    /// Time spent in the current state (by the breaker's clock).
    pub time_in_state: Duration,
    /// Time left until the next probe, while open.
    pub next_probe_in: Option<Duration>,
    /// Sampled call latency.
    pub latency: LatencyMetrics,
    /// Transitions into each state.
    pub transitions: TransitionCounts,
    /// Why the breaker last changed state.
    pub last_transition_reason: Option<TransitionReason>,
    /// The sliding window of the rate rules, when one is configured.
    pub window: Option<WindowMetrics>,
    /// How long the current (or, when not open, the last) break lasts: grows with
    /// [`break_backoff`](crate::CircuitBreakerConfig::break_backoff).
    pub break_duration: Duration,
}

/// What the sliding window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WindowMetrics {
    /// Calls in the window (ignored and cancelled calls are not in it).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (0 without a slow-call rule).
    pub slow_calls: u64,
}

impl WindowMetrics {
    /// Failures / calls in the window; 0 when it is empty.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls / calls in the window; 0 when it is empty.
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow_calls, self.calls)
    }
}

impl CircuitMetrics {
    /// Calls rejected for any reason.
    pub fn rejected_calls(&self) -> u64 {
        self.rejected_open + self.rejected_half_open
    }

    /// Failed / (successful + failed) over the breaker's life; 0 before any call.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failed_calls, self.successful_calls + self.failed_calls)
    }

    /// Successful / (successful + failed) over the breaker's life; 1 before any call.
    pub fn success_rate(&self) -> f64 {
        if self.successful_calls + self.failed_calls == 0 {
            1.0
        } else {
            1.0 - self.failure_rate()
        }
    }
}

#[allow(clippy::cast_precision_loss)] // rates, not accounting
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Latency of the sampled calls (see
/// [`latency_sample_every`](crate::CircuitBreakerConfig::latency_sample_every)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LatencyMetrics {
    /// Calls timed.
    pub samples: u64,
    /// Sum of their durations.
    pub sum: Duration,
    /// The fastest.
    pub min: Option<Duration>,
    /// The slowest.
    pub max: Option<Duration>,
    /// Calls per bucket of [`LATENCY_BUCKETS`] (not cumulative), the last for longer calls.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

impl LatencyMetrics {
    /// The mean duration of the sampled calls.
    pub fn avg(&self) -> Option<Duration> {
        (self.samples > 0).then(|| {
            let nanos = self.sum.as_nanos() / u128::from(self.samples);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        })
    }
}

/// How many times a breaker entered each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TransitionCounts {
    /// Into closed.
    pub to_closed: u64,
    /// Into open.
    pub to_open: u64,
    /// Into half-open.
    pub to_half_open: u64,
    /// Into isolated.
    pub to_isolated: u64,
    /// Into disabled.
    pub to_disabled: u64,
}

impl TransitionCounts {
    /// Transitions into `state`.
    pub fn to(&self, state: CircuitState) -> u64 {
        match state {
            CircuitState::Closed => self.to_closed,
            CircuitState::Open => self.to_open,
            CircuitState::HalfOpen => self.to_half_open,
            CircuitState::Isolated => self.to_isolated,
            CircuitState::Disabled => self.to_disabled,
        }
    }

    pub(crate) fn bump(&mut self, state: CircuitState) {
        let slot = match state {
            CircuitState::Closed => &mut self.to_closed,
            CircuitState::Open => &mut self.to_open,
            CircuitState::HalfOpen => &mut self.to_half_open,
            CircuitState::Isolated => &mut self.to_isolated,
            CircuitState::Disabled => &mut self.to_disabled,
        };
        *slot += 1;
    }
}
