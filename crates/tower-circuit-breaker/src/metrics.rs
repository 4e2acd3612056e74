//! A point-in-time snapshot of a breaker's state and counters.
//!
//! [`CircuitBreaker::metrics`](crate::CircuitBreaker::metrics) sums the breaker's own counters
//! when asked; nothing is kept twice on the call path. Counters only grow (a
//! [`reset`](crate::CircuitBreaker::reset) clears the counts the trip rules use, not these), so
//! they can be exported as Prometheus counters.
//!
//! # As JSON
//!
//! The snapshot implements [`Serialize`]; these field names are stable (a health endpoint shows
//! them). Durations are numbers of seconds, in fields ending `_seconds`; wall-clock times are
//! RFC 3339 strings in UTC; `null` stands for "none".
//!
//! ```
//! use tower_circuit_breaker::CircuitBreaker;
//!
//! let breaker = CircuitBreaker::new("inventory");
//! let json = serde_json::to_value(breaker.metrics()).unwrap();
//! assert_eq!(json["name"], "inventory");
//! assert_eq!(json["state"], "closed");
//! assert_eq!(json["break_duration_seconds"], 30.0);
//! assert_eq!(json["last_transition_reason"], serde_json::Value::Null);
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `name`, `state`, `generation` | the breaker, its state (`closed`, `open`, `half_open`, `isolated`, `disabled`), transitions so far |
//! | `total_calls`, `successful_calls`, `failed_calls`, `timeouts`, `ignored_calls`, `cancelled_calls` | finished calls by outcome |
//! | `rejected_open`, `rejected_half_open` | calls turned away |
//! | `consecutive_failures`, `half_open_in_flight` | the counts the rules use now |
//! | `last_state_change` | RFC 3339 time of the last transition, or `null` |
//! | `time_in_state_seconds`, `next_probe_in_seconds`, `break_duration_seconds` | time in this state, time left in the break (`null` unless open), the break's length |
//! | `latency` | `samples`, `sum_seconds`, `min_seconds`, `max_seconds`, `avg_seconds`, `buckets` (counts per [`LATENCY_BUCKETS`] bucket, the last unbounded) |
//! | `transitions` | `to_closed`, `to_open`, `to_half_open`, `to_isolated`, `to_disabled` |
//! | `last_transition_reason` | a [`TransitionReason`] as JSON: `kind`, its figures, and `message` |
//! | `window` | `calls`, `failures`, `slow_calls`, `failure_rate`, `slow_call_rate`; `null` without a rate rule |

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

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

/// A snapshot of one breaker. Serializes to the JSON described in the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(with = "humantime_serde")]
    pub last_state_change: Option<SystemTime>,
    /// Time spent in the current state (by the breaker's clock).
    #[serde(rename = "time_in_state_seconds", serialize_with = "seconds")]
    pub time_in_state: Duration,
    /// Time left until the next probe, while open.
    #[serde(rename = "next_probe_in_seconds", serialize_with = "option_seconds")]
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
    #[serde(rename = "break_duration_seconds", serialize_with = "seconds")]
    pub break_duration: Duration,
}

/// A duration as a number of seconds.
pub(crate) fn seconds<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// An optional duration as a number of seconds or `null`.
#[allow(clippy::ref_option)] // the signature serde's `serialize_with` asks for
pub(crate) fn option_seconds<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
        None => serializer.serialize_none(),
    }
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

impl Serialize for WindowMetrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("WindowMetrics", 5)?;
        out.serialize_field("calls", &self.calls)?;
        out.serialize_field("failures", &self.failures)?;
        out.serialize_field("slow_calls", &self.slow_calls)?;
        out.serialize_field("failure_rate", &self.failure_rate())?;
        out.serialize_field("slow_call_rate", &self.slow_call_rate())?;
        out.end()
    }
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

impl Serialize for LatencyMetrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secs = |duration: Option<Duration>| duration.map(|d| d.as_secs_f64());
        let mut out = serializer.serialize_struct("LatencyMetrics", 6)?;
        out.serialize_field("samples", &self.samples)?;
        out.serialize_field("sum_seconds", &self.sum.as_secs_f64())?;
        out.serialize_field("min_seconds", &secs(self.min))?;
        out.serialize_field("max_seconds", &secs(self.max))?;
        out.serialize_field("avg_seconds", &secs(self.avg()))?;
        out.serialize_field("buckets", &self.buckets[..])?;
        out.end()
    }
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

/// How many times a breaker entered each state, and by which way.
///
/// Serializes as `to_closed`, `to_open`, `to_half_open`, `to_isolated`, `to_disabled` (the
/// matrix of [`between`](Self::between) is left out of JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
    /// Transitions from one state (the row, in the order of [`CircuitState::ALL`]) to another (the
    /// column).
    #[serde(skip)]
    pairs: [[u64; CircuitState::ALL.len()]; CircuitState::ALL.len()],
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

    /// Transitions from `from` to `to`.
    pub fn between(&self, from: CircuitState, to: CircuitState) -> u64 {
        self.pairs[from.index()][to.index()]
    }

    pub(crate) fn bump(&mut self, from: CircuitState, to: CircuitState) {
        let slot = match to {
            CircuitState::Closed => &mut self.to_closed,
            CircuitState::Open => &mut self.to_open,
            CircuitState::HalfOpen => &mut self.to_half_open,
            CircuitState::Isolated => &mut self.to_isolated,
            CircuitState::Disabled => &mut self.to_disabled,
        };
        *slot += 1;
        self.pairs[from.index()][to.index()] += 1;
    }
}
