//! How a breaker behaves: thresholds, durations and limits, with their defaults and rules.
//!
//! [`CircuitBreakerConfig`] is plain data: build it with its setter methods or deserialize it with
//! serde (durations are written as `"30s"`, `"1m 30s"` or `"250ms"`). It is checked when a breaker
//! is built; a bad value is refused with a [`ConfigError`] naming the field and the rule.
//!
//! The defaults: open after 5 consecutive failures, stay open
//! for 30 s, close after 3 successful probes, at most 5 probes at once.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::CircuitBreakerConfig;
//!
//! let from_code = CircuitBreakerConfig::default()
//!     .failure_threshold(3)
//!     .break_duration(Duration::from_secs(15))
//!     .success_threshold(2);
//!
//! let from_file: CircuitBreakerConfig = serde_json::from_str(
//!     r#"{ "failure_threshold": 3, "break_duration": "15s", "success_threshold": 2 }"#,
//! ).unwrap();
//! assert_eq!(from_code, from_file);
//!
//! let err = CircuitBreakerConfig::default().failure_threshold(0).validate().unwrap_err();
//! assert_eq!(err.to_string(), "failure_threshold: must be at least 1, got 0");
//! ```

use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The largest consecutive-failure threshold: the count lives in 24 bits of the state word.
pub const MAX_FAILURE_THRESHOLD: u32 = (1 << 24) - 1;
/// The largest number of concurrent half-open probes (probe slots are allocated when the breaker
/// is built).
pub const MAX_HALF_OPEN_CALLS: u32 = 10_000;

/// How a breaker behaves. See the [module docs](self) for an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the circuit. Default 5.
    pub failure_threshold: u32,
    /// How long the circuit stays open before it lets a probe through. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub break_duration: Duration,
    /// Successful probes in half-open that close the circuit. Default 3.
    pub success_threshold: u32,
    /// Probes admitted at once in half-open; further calls are rejected at once. Default 5.
    pub half_open_max_calls: u32,
    /// A probe that has not finished this long after it was admitted counts as a failure (a
    /// timeout), so the circuit never sticks half-open. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub half_open_timeout: Duration,
    /// What a call whose future was dropped before it finished counts as. Default: ignored.
    pub cancelled_calls: CancelledCalls,
    /// Latency is measured on one call in this many of this breaker's (1 measures every call):
    /// a call is timed when the breaker's successes and failures counted on the calling thread's
    /// counter stripe add up to a multiple of it, so each breaker gets a fair sample of its own
    /// calls however many breakers a thread calls. Reading the clock costs more than the rest of a closed-state call, so the
    /// default samples one call in 64 (a breaker at 100 calls a second still times about 90 a
    /// minute); rules that need every call's duration time every call whatever this says.
    pub latency_sample_every: u32,
    /// Open when the failure rate over a sliding window reaches a threshold. Default: off.
    pub failure_rate: Option<FailureRateRule>,
    /// Open when the rate of slow calls over the sliding window reaches a threshold. Default: off.
    pub slow_call: Option<SlowCallRule>,
    /// Make each break longer than the last while the service keeps failing its probes. Default:
    /// off (every break lasts `break_duration`).
    pub break_backoff: Option<BreakBackoff>,
    /// The least time the circuit stays closed before a trip rule may open it again, so a
    /// flapping service does not make it oscillate. Outcomes still count meanwhile; the first
    /// failure after the interval opens it if a rule still holds. Default 0 s (off).
    #[serde(with = "humantime_serde")]
    pub min_transition_interval: Duration,
}

/// Open when failures reach `threshold` of the calls in a sliding window.
///
/// In a file: `failure_rate: { threshold: 0.5, window: { calls: 100 }, minimum_throughput: 20 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FailureRateRule {
    /// Failed / judged calls in the window that opens the circuit, in (0, 1]. Default 0.5.
    pub threshold: f64,
    /// The window the rate is taken over. Default: the last 100 calls.
    pub window: SlidingWindow,
    /// Calls the window must hold before the rate is judged. Default 20.
    pub minimum_throughput: u32,
}

impl Default for FailureRateRule {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            window: SlidingWindow::Calls(100),
            minimum_throughput: 20,
        }
    }
}

impl FailureRateRule {
    /// A rule opening at `threshold` over the default window (the last 100 calls, judged from 20).
    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            ..Self::default()
        }
    }

    /// Sets the window.
    #[must_use]
    pub fn window(mut self, window: SlidingWindow) -> Self {
        self.window = window;
        self
    }

    /// Sets the calls needed before the rate is judged.
    #[must_use]
    pub fn minimum_throughput(mut self, calls: u32) -> Self {
        self.minimum_throughput = calls;
        self
    }
}

/// Open when slow calls (lasting at least `duration`) reach `threshold` of the calls in the
/// window. A slow success is still a success for the failure rate.
///
/// In a file: `slow_call: { duration: "2s", threshold: 0.8 }`. The rule shares the failure-rate
/// rule's window and minimum throughput; on its own it takes `window` and `minimum_throughput`
/// here (default: the last 100 calls, judged from 20).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SlowCallRule {
    /// A call lasting this long or longer is slow.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Slow / judged calls in the window that opens the circuit, in (0, 1].
    pub threshold: f64,
    /// The window, when there is no failure-rate rule to share one with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<SlidingWindow>,
    /// Calls the window must hold before the rate is judged, when there is no failure-rate rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_throughput: Option<u32>,
}

impl SlowCallRule {
    /// Calls lasting `duration` or more are slow; `threshold` of them open the circuit.
    pub fn new(duration: Duration, threshold: f64) -> Self {
        Self {
            duration,
            threshold,
            window: None,
            minimum_throughput: None,
        }
    }

    /// Sets the window (only when there is no failure-rate rule, whose window this rule shares).
    #[must_use]
    pub fn window(mut self, window: SlidingWindow) -> Self {
        self.window = Some(window);
        self
    }

    /// Sets the calls needed before the rate is judged (only without a failure-rate rule).
    #[must_use]
    pub fn minimum_throughput(mut self, calls: u32) -> Self {
        self.minimum_throughput = Some(calls);
        self
    }
}

/// The calls a rate is taken over.
///
/// In a file: `{ calls: 100 }` for the last 100 calls, or `{ duration: "60s", buckets: 10 }` for
/// the last minute in ten 6-second buckets (`buckets` defaults to 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "WindowFields", into = "WindowFields")]
pub enum SlidingWindow {
    /// The last N calls.
    Calls(u32),
    /// The calls of the last `duration`, kept in `buckets` buckets that age out whole: the window
    /// holds between `duration - duration / buckets` and `duration` of calls.
    Time {
        /// How far back the window reaches.
        duration: Duration,
        /// How many pieces it is kept in.
        buckets: u32,
    },
}

impl SlidingWindow {
    /// The last `duration`, in `buckets` buckets.
    pub const fn time(duration: Duration, buckets: u32) -> Self {
        Self::Time { duration, buckets }
    }
}

/// The largest count window.
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// The most buckets a time window may have.
pub const MAX_WINDOW_BUCKETS: u32 = 1_000;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calls: Option<u32>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    duration: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buckets: Option<u32>,
}

impl TryFrom<WindowFields> for SlidingWindow {
    type Error = String;

    fn try_from(fields: WindowFields) -> Result<Self, Self::Error> {
        match (fields.calls, fields.duration, fields.buckets) {
            (Some(calls), None, None) => Ok(Self::Calls(calls)),
            (None, Some(duration), buckets) => Ok(Self::Time {
                duration,
                buckets: buckets.unwrap_or(10),
            }),
            (Some(_), _, _) => {
                Err("a window has either `calls` or `duration` (with `buckets`), not both".into())
            }
            (None, None, _) => Err("a window needs `calls` or `duration`".into()),
        }
    }
}

impl From<SlidingWindow> for WindowFields {
    fn from(window: SlidingWindow) -> Self {
        match window {
            SlidingWindow::Calls(calls) => Self {
                calls: Some(calls),
                duration: None,
                buckets: None,
            },
            SlidingWindow::Time { duration, buckets } => Self {
                calls: None,
                duration: Some(duration),
                buckets: Some(buckets),
            },
        }
    }
}

/// Exponential break durations: each reopen from half-open multiplies the break, up to a cap;
/// closing starts again from `break_duration`.
///
/// In a file: `break_backoff: { multiplier: 2.0, max_duration: "5m", jitter: 0.1 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakBackoff {
    /// Each reopen multiplies the break by this, at least 1. Default 2.
    pub multiplier: f64,
    /// The longest break. Default 5 minutes.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Each break is moved by up to this fraction of itself, either way, at random, so
    /// instances that opened together do not probe together. In [0, 1). Default 0.
    pub jitter: f64,
}

impl Default for BreakBackoff {
    fn default() -> Self {
        Self {
            multiplier: 2.0,
            max_duration: Duration::from_secs(300),
            jitter: 0.0,
        }
    }
}

impl BreakBackoff {
    /// Breaks grow by `multiplier` up to `max_duration`, without jitter.
    pub fn new(multiplier: f64, max_duration: Duration) -> Self {
        Self {
            multiplier,
            max_duration,
            jitter: 0.0,
        }
    }

    /// Sets the jitter fraction.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }
}

/// What a dropped, unfinished call counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledCalls {
    /// Counted as cancelled, and neither success nor failure (the default): a client that gave up
    /// says nothing about the service.
    #[default]
    Ignored,
    /// Counted as cancelled, and as a failure for the trip rules: for callers whose outer timeout
    /// is the only sign of a hung service.
    Failure,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            break_duration: Duration::from_secs(30),
            success_threshold: 3,
            half_open_max_calls: 5,
            half_open_timeout: Duration::from_secs(10),
            cancelled_calls: CancelledCalls::Ignored,
            latency_sample_every: 64,
            failure_rate: None,
            slow_call: None,
            break_backoff: None,
            min_transition_interval: Duration::ZERO,
        }
    }
}

impl CircuitBreakerConfig {
    /// Sets [`failure_threshold`](Self::failure_threshold).
    #[must_use]
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// Sets [`break_duration`](Self::break_duration).
    #[must_use]
    pub fn break_duration(mut self, duration: Duration) -> Self {
        self.break_duration = duration;
        self
    }

    /// Sets [`success_threshold`](Self::success_threshold).
    #[must_use]
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.success_threshold = successes;
        self
    }

    /// Sets [`half_open_max_calls`](Self::half_open_max_calls).
    #[must_use]
    pub fn half_open_max_calls(mut self, calls: u32) -> Self {
        self.half_open_max_calls = calls;
        self
    }

    /// Sets [`half_open_timeout`](Self::half_open_timeout).
    #[must_use]
    pub fn half_open_timeout(mut self, timeout: Duration) -> Self {
        self.half_open_timeout = timeout;
        self
    }

    /// Sets [`cancelled_calls`](Self::cancelled_calls).
    #[must_use]
    pub fn cancelled_calls(mut self, counts_as: CancelledCalls) -> Self {
        self.cancelled_calls = counts_as;
        self
    }

    /// Sets [`latency_sample_every`](Self::latency_sample_every).
    #[must_use]
    pub fn latency_sample_every(mut self, calls: u32) -> Self {
        self.latency_sample_every = calls;
        self
    }

    /// Sets [`failure_rate`](Self::failure_rate).
    #[must_use]
    pub fn failure_rate(mut self, rule: FailureRateRule) -> Self {
        self.failure_rate = Some(rule);
        self
    }

    /// Sets [`slow_call`](Self::slow_call).
    #[must_use]
    pub fn slow_call(mut self, rule: SlowCallRule) -> Self {
        self.slow_call = Some(rule);
        self
    }

    /// Sets [`break_backoff`](Self::break_backoff).
    #[must_use]
    pub fn break_backoff(mut self, backoff: BreakBackoff) -> Self {
        self.break_backoff = Some(backoff);
        self
    }

    /// Sets [`min_transition_interval`](Self::min_transition_interval).
    #[must_use]
    pub fn min_transition_interval(mut self, interval: Duration) -> Self {
        self.min_transition_interval = interval;
        self
    }

    /// The window the rate rules share and the calls it must hold before they judge, if any rate
    /// rule is on.
    pub fn window(&self) -> Option<(SlidingWindow, u32)> {
        let defaults = FailureRateRule::default();
        match (&self.failure_rate, &self.slow_call) {
            (Some(rule), _) => Some((rule.window, rule.minimum_throughput)),
            (None, Some(rule)) => Some((
                rule.window.unwrap_or(defaults.window),
                rule.minimum_throughput
                    .unwrap_or(defaults.minimum_throughput),
            )),
            (None, None) => None,
        }
    }

    /// Checks every field against its rule; the first bad one is returned.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field and the rule it breaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "failure_threshold",
            self.failure_threshold,
            1,
            MAX_FAILURE_THRESHOLD,
        )?;
        positive("break_duration", self.break_duration)?;
        in_range("success_threshold", self.success_threshold, 1, u32::MAX)?;
        in_range(
            "half_open_max_calls",
            self.half_open_max_calls,
            1,
            MAX_HALF_OPEN_CALLS,
        )?;
        positive("half_open_timeout", self.half_open_timeout)?;
        in_range(
            "latency_sample_every",
            self.latency_sample_every,
            1,
            1 << 20,
        )?;
        if let Some(rule) = &self.failure_rate {
            rate("failure_rate.threshold", rule.threshold)?;
            validate_window("failure_rate", rule.window, rule.minimum_throughput)?;
        }
        if let Some(rule) = &self.slow_call {
            positive("slow_call.duration", rule.duration)?;
            rate("slow_call.threshold", rule.threshold)?;
            if let Some(shared) = &self.failure_rate {
                if rule.window.is_some_and(|window| window != shared.window) {
                    return Err(ConfigError::new(
                        "slow_call.window",
                        "must be left out or equal failure_rate.window: both rules judge one window",
                    ));
                }
                if rule
                    .minimum_throughput
                    .is_some_and(|calls| calls != shared.minimum_throughput)
                {
                    return Err(ConfigError::new(
                        "slow_call.minimum_throughput",
                        "must be left out or equal failure_rate.minimum_throughput: both rules judge one window",
                    ));
                }
            } else if let Some((window, minimum)) = self.window() {
                validate_window("slow_call", window, minimum)?;
            }
        }
        if let Some(backoff) = &self.break_backoff {
            if !(backoff.multiplier.is_finite() && backoff.multiplier >= 1.0) {
                return Err(ConfigError::new(
                    "break_backoff.multiplier",
                    format!("must be a number of at least 1, got {}", backoff.multiplier),
                ));
            }
            if backoff.max_duration < self.break_duration {
                return Err(ConfigError::new(
                    "break_backoff.max_duration",
                    format!(
                        "must be at least break_duration ({:?}), got {:?}",
                        self.break_duration, backoff.max_duration
                    ),
                ));
            }
            if !(0.0..1.0).contains(&backoff.jitter) {
                return Err(ConfigError::new(
                    "break_backoff.jitter",
                    format!("must be in [0, 1), got {}", backoff.jitter),
                ));
            }
        }
        Ok(())
    }
}

fn rate(field: &str, value: f64) -> Result<(), ConfigError> {
    // Written so that NaN fails too.
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be in (0, 1], got {value}"),
        ))
    }
}

fn validate_window(
    rule: &str,
    window: SlidingWindow,
    minimum_throughput: u32,
) -> Result<(), ConfigError> {
    let field = |name: &str| format!("{rule}.{name}");
    match window {
        SlidingWindow::Calls(calls) => {
            in_range(&field("window.calls"), calls, 1, MAX_WINDOW_CALLS)?;
            if minimum_throughput > calls {
                return Err(ConfigError::new(
                    field("minimum_throughput"),
                    format!("must be at most the window's {calls} calls, got {minimum_throughput}"),
                ));
            }
        }
        SlidingWindow::Time { duration, buckets } => {
            positive(&field("window.duration"), duration)?;
            in_range(&field("window.buckets"), buckets, 1, MAX_WINDOW_BUCKETS)?;
            if duration / buckets < Duration::from_millis(1) {
                return Err(ConfigError::new(
                    field("window.buckets"),
                    format!("must leave buckets of at least 1ms, got {duration:?} in {buckets}"),
                ));
            }
        }
    }
    in_range(
        &field("minimum_throughput"),
        minimum_throughput,
        1,
        u32::MAX,
    )
}

fn in_range(field: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if value < min {
        Err(ConfigError::new(
            field,
            format!("must be at least {min}, got {value}"),
        ))
    } else if value > max {
        Err(ConfigError::new(
            field,
            format!("must be at most {max}, got {value}"),
        ))
    } else {
        Ok(())
    }
}

fn positive(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be greater than 0s, got 0s"))
    } else {
        Ok(())
    }
}

/// A configuration value that breaks a rule: which field, and what the rule is.
///
/// Displays as `field: rule`, for example `failure_threshold: must be at least 1, got 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ConfigError {
    field: String,
    rule: String,
}

impl ConfigError {
    /// An error for `field` (a dotted path) breaking `rule`.
    pub fn new(field: impl Into<String>, rule: impl Display) -> Self {
        Self {
            field: field.into(),
            rule: rule.to_string(),
        }
    }

    /// The dotted path of the bad field, such as `breakers.pgmq.failure_threshold`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the value breaks, with the value, such as `must be at least 1, got 0`.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The same error with `prefix.` put before the field, for configs nested in larger ones.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}
