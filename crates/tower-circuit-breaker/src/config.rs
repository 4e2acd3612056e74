//! How a breaker behaves: thresholds, durations and limits, with their defaults and rules.
//!
//! [`CircuitBreakerConfig`] is plain data: build it with its setter methods or deserialize it with
//! serde (durations are written as `"30s"`, `"1m 30s"` or `"250ms"`). It is checked when a breaker
//! is built; a bad value is refused with a [`ConfigError`] naming the field and the rule.
//!
//! The defaults follow REQ-009 of the specification: open after 5 consecutive failures, stay open
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Latency is measured on one call in this many, per thread (1 measures every call). Reading
    /// the clock costs more than the rest of a closed-state call, so the default samples one call
    /// in 16; rules that need every call's duration time every call whatever this says.
    pub latency_sample_every: u32,
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
            latency_sample_every: 16,
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
        Ok(())
    }
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
