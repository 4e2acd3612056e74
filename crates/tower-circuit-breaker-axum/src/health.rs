//! The health report a load balancer's probe and the dashboard read: an overall
//! [`HealthStatus`] and one entry per breaker.
//!
//! The report is built from a registry's [snapshot](CircuitBreakerRegistry::snapshot); it holds
//! no state of its own. `GET /health` answers it as JSON, with 200 for `healthy` and `degraded`
//! and 503 for `unhealthy`:
//!
//! ```json
//! {
//!   "status": "unhealthy",
//!   "checked_at": "2026-11-30T21:40:00.123456789Z",
//!   "breakers": [
//!     {
//!       "name": "pgmq", "state": "open", "health": "unhealthy", "critical": true,
//!       "failure_rate": 1.0, "slow_call_rate": 0.0, "window_calls": null,
//!       "consecutive_failures": 3, "total_calls": 3, "successful_calls": 0,
//!       "failed_calls": 3, "rejected_calls": 12,
//!       "retry_after_seconds": 12.5, "break_duration_seconds": 15.0,
//!       "last_transition": { "breaker": "pgmq", "from": "closed", "to": "open",
//!         "reason": { "kind": "consecutive_failures", "failures": 3, "message": "3 consecutive failures" },
//!         "generation": 1, "at": "2026-11-30T21:39:47.600000000Z" },
//!       "recent_transitions": [ "... up to ten, oldest first, shaped as last_transition ..." ]
//!     }
//!   ]
//! }
//! ```
//!
//! `failure_rate` and `slow_call_rate` are taken over the breaker's sliding window when it has
//! one (`window_calls` is then the calls in it), and over its whole life otherwise
//! (`window_calls` is `null`). `retry_after_seconds` is the time left in the break while open,
//! else `null`.
//!
//! # Example
//!
//! ```
//! use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};
//! use tower_circuit_breaker_axum::health::HealthReport;
//!
//! let registry = CircuitBreakerRegistry::new();
//! registry.get_or_create("cache").unwrap();
//! let report = HealthReport::of(&registry);
//! assert_eq!(report.status, HealthStatus::Healthy);
//! assert_eq!(report.breakers[0].name.as_ref(), "cache");
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tower_circuit_breaker::registry::{BreakerSnapshot, CircuitBreakerRegistry, HealthStatus};
use tower_circuit_breaker::{CircuitState, Transition};

/// The health of an app's breakers at one moment; serializes as the JSON of `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The worst health of any breaker.
    pub status: HealthStatus,
    /// When the report was made (RFC 3339, UTC).
    #[serde(with = "humantime_serde")]
    pub checked_at: SystemTime,
    /// One entry per breaker, by name.
    pub breakers: Vec<BreakerHealth>,
}

/// One breaker in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerHealth {
    /// The breaker's name.
    pub name: Arc<str>,
    /// Its state.
    pub state: CircuitState,
    /// What its state means for the app.
    pub health: HealthStatus,
    /// Whether it being open makes the app unhealthy.
    pub critical: bool,
    /// Failed / judged calls, over the window if there is one, else over the breaker's life.
    pub failure_rate: f64,
    /// Slow / judged calls over the window; 0 without one.
    pub slow_call_rate: f64,
    /// Calls in the window, or `None` without one.
    pub window_calls: Option<u64>,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Finished calls.
    pub total_calls: u64,
    /// Calls that succeeded.
    pub successful_calls: u64,
    /// Calls that failed, timeouts included.
    pub failed_calls: u64,
    /// Calls turned away.
    pub rejected_calls: u64,
    /// Time left in the break while open, in seconds.
    pub retry_after_seconds: Option<f64>,
    /// Length of the current (or last) break, in seconds.
    pub break_duration_seconds: f64,
    /// The last transition, if any.
    pub last_transition: Option<Transition>,
    /// The last transitions (at most ten), oldest first.
    pub recent_transitions: Vec<Transition>,
}

impl HealthReport {
    /// The report on every breaker of `registry`, now.
    pub fn of(registry: &CircuitBreakerRegistry) -> Self {
        let snapshot = registry.snapshot();
        Self {
            status: snapshot.health(),
            checked_at: SystemTime::now(),
            breakers: snapshot.breakers.iter().map(BreakerHealth::from).collect(),
        }
    }
}

impl From<&BreakerSnapshot> for BreakerHealth {
    fn from(breaker: &BreakerSnapshot) -> Self {
        let metrics = &breaker.metrics;
        let (failure_rate, slow_call_rate, window_calls) = match &metrics.window {
            Some(window) => (
                window.failure_rate(),
                window.slow_call_rate(),
                Some(window.calls),
            ),
            None => (metrics.failure_rate(), 0.0, None),
        };
        Self {
            name: breaker.name.clone(),
            state: metrics.state,
            health: breaker.health(),
            critical: breaker.critical,
            failure_rate,
            slow_call_rate,
            window_calls,
            consecutive_failures: metrics.consecutive_failures,
            total_calls: metrics.total_calls,
            successful_calls: metrics.successful_calls,
            failed_calls: metrics.failed_calls,
            rejected_calls: metrics.rejected_calls(),
            retry_after_seconds: metrics.next_probe_in.map(|left| left.as_secs_f64()),
            break_duration_seconds: metrics.break_duration.as_secs_f64(),
            last_transition: breaker.recent_transitions.last().cloned(),
            recent_transitions: breaker.recent_transitions.clone(),
        }
    }
}
