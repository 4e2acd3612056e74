//! State transitions, as [`CircuitBreaker::subscribe`](crate::CircuitBreaker::subscribe) delivers
//! them and as the `tracing` events describe them.
//!
//! Both serialize to JSON with stable field names: a [`Transition`] as `breaker`, `group`, `from`,
//! `to`, `reason`, `generation`, `at` (RFC 3339, UTC) and `open_for_seconds`; a [`TransitionReason`] as its `kind` in
//! `snake_case`, its figures (durations as seconds, in fields ending `_seconds`) and `message`,
//! the phrase it displays as:
//!
//! ```
//! use tower_circuit_breaker::TransitionReason;
//!
//! let reason = TransitionReason::ConsecutiveFailures { failures: 5 };
//! assert_eq!(
//!     serde_json::to_string(&reason).unwrap(),
//!     r#"{"kind":"consecutive_failures","failures":5,"message":"5 consecutive failures"}"#,
//! );
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::CircuitState;

/// One change of state of one breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's name; a keyed breaker's key.
    pub breaker: Arc<str>,
    /// The [keyed group](crate::keyed) of a keyed breaker (its name, as `group` in the JSON and
    /// in the `tracing` event); `None` for a named breaker.
    pub group: Option<Arc<str>>,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// Why it changed.
    pub reason: TransitionReason,
    /// The generation the breaker entered (it grows by one on every transition).
    pub generation: u64,
    /// Wall-clock time of the change.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// For a transition to open, how long the break lasts (as `open_for_seconds` in the JSON):
    /// what a [shared state store](crate::store) tells the other instances.
    #[serde(rename = "open_for_seconds", serialize_with = "seconds")]
    pub open_for: Option<Duration>,
}

fn seconds<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    duration
        .map(|duration| duration.as_secs_f64())
        .serialize(serializer)
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "breaker `{}`", self.breaker)?;
        if let Some(group) = &self.group {
            write!(f, " of `{group}`")?;
        }
        write!(f, ": {} -> {} ({})", self.from, self.to, self.reason)
    }
}

/// Why a breaker changed state. Displays as a short phrase with the figures, such as
/// `5 consecutive failures`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The consecutive-failure rule fired.
    ConsecutiveFailures {
        /// Failures in a row when it fired.
        failures: u32,
    },
    /// The failure-rate rule fired.
    FailureRate {
        /// Failed / judged calls in the window.
        rate: f64,
        /// The configured threshold.
        threshold: f64,
        /// Calls in the window.
        calls: u64,
        /// The window's span, for a time window.
        window: Option<Duration>,
    },
    /// The slow-call rule fired.
    SlowCallRate {
        /// Slow / judged calls in the window.
        rate: f64,
        /// The configured threshold.
        threshold: f64,
        /// Calls in the window.
        calls: u64,
        /// The window's span, for a time window.
        window: Option<Duration>,
    },
    /// The break ended: the next call is a probe.
    BreakElapsed {
        /// How long the circuit was open.
        break_duration: Duration,
    },
    /// Enough probes succeeded in half-open.
    ProbesSucceeded {
        /// Successful probes.
        successes: u32,
    },
    /// A probe failed in half-open.
    ProbeFailed,
    /// A probe timed out in half-open: its outcome was a timeout (a per-try timeout, or
    /// [`Outcome::Timeout`](crate::Outcome::Timeout)), counted in the timeouts.
    ProbeTimeout,
    /// A probe was dropped before it finished, and the config counts dropped calls as failures
    /// ([`CancelledCalls::Failure`](crate::CancelledCalls::Failure)).
    ProbeCancelled,
    /// A probe did not finish within `half_open_timeout`.
    ProbeTimedOut {
        /// The timeout it overran.
        timeout: Duration,
    },
    /// [`CircuitBreaker::reset`](crate::CircuitBreaker::reset) was called.
    Reset,
    /// [`CircuitBreaker::isolate`](crate::CircuitBreaker::isolate) was called.
    Isolated,
    /// [`CircuitBreaker::disable`](crate::CircuitBreaker::disable) was called.
    Disabled,
    /// The breaker was made disabled because its registry's config switches breaking off
    /// (`enabled: false`).
    DisabledInConfig,
    /// [`CircuitBreaker::automatic`](crate::CircuitBreaker::automatic) lifted a manual override.
    Automatic,
    /// Another instance's transition, taken from the [shared state store](crate::store): the
    /// breaker follows the fleet (the other instance's own reason is in its log and in the store).
    Shared,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsecutiveFailures { failures: 1 } => f.write_str("1 failure"),
            Self::ConsecutiveFailures { failures } => write!(f, "{failures} consecutive failures"),
            Self::FailureRate {
                rate,
                threshold,
                calls,
                window,
            } => write_rate(f, "failure rate", *rate, *threshold, *calls, *window),
            Self::SlowCallRate {
                rate,
                threshold,
                calls,
                window,
            } => write_rate(f, "slow-call rate", *rate, *threshold, *calls, *window),
            Self::BreakElapsed { break_duration } => {
                write!(f, "break of {} elapsed", Human(*break_duration))
            }
            Self::ProbesSucceeded { successes: 1 } => f.write_str("1 successful probe"),
            Self::ProbesSucceeded { successes } => write!(f, "{successes} successful probes"),
            Self::ProbeFailed => f.write_str("probe failed"),
            Self::ProbeTimeout => f.write_str("probe timed out"),
            Self::ProbeCancelled => f.write_str("probe cancelled"),
            Self::ProbeTimedOut { timeout } => {
                write!(f, "probe timed out: no outcome within {}", Human(*timeout))
            }
            Self::Reset => f.write_str("manual reset"),
            Self::Isolated => f.write_str("isolated by hand"),
            Self::Disabled => f.write_str("disabled by hand"),
            Self::DisabledInConfig => f.write_str("breaking is switched off in the config"),
            Self::Automatic => f.write_str("manual override lifted"),
            Self::Shared => f.write_str("shared by another instance"),
        }
    }
}

impl TransitionReason {
    /// The reason's kind in `snake_case`, as in JSON: `consecutive_failures`, `failure_rate`,
    /// `slow_call_rate`, `break_elapsed`, `probes_succeeded`, `probe_failed`, `probe_timeout`,
    /// `probe_cancelled`, `probe_timed_out`, `reset`, `isolated`, `disabled`,
    /// `disabled_in_config`, `automatic`, `shared`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::ConsecutiveFailures { .. } => "consecutive_failures",
            Self::FailureRate { .. } => "failure_rate",
            Self::SlowCallRate { .. } => "slow_call_rate",
            Self::BreakElapsed { .. } => "break_elapsed",
            Self::ProbesSucceeded { .. } => "probes_succeeded",
            Self::ProbeFailed => "probe_failed",
            Self::ProbeTimeout => "probe_timeout",
            Self::ProbeCancelled => "probe_cancelled",
            Self::ProbeTimedOut { .. } => "probe_timed_out",
            Self::Reset => "reset",
            Self::Isolated => "isolated",
            Self::Disabled => "disabled",
            Self::DisabledInConfig => "disabled_in_config",
            Self::Automatic => "automatic",
            Self::Shared => "shared",
        }
    }
}

impl Serialize for TransitionReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("kind", self.kind())?;
        match self {
            Self::ConsecutiveFailures { failures } => out.serialize_entry("failures", failures)?,
            Self::FailureRate {
                rate,
                threshold,
                calls,
                window,
            }
            | Self::SlowCallRate {
                rate,
                threshold,
                calls,
                window,
            } => {
                out.serialize_entry("rate", rate)?;
                out.serialize_entry("threshold", threshold)?;
                out.serialize_entry("calls", calls)?;
                out.serialize_entry("window_seconds", &window.map(|span| span.as_secs_f64()))?;
            }
            Self::BreakElapsed { break_duration } => {
                out.serialize_entry("break_duration_seconds", &break_duration.as_secs_f64())?;
            }
            Self::ProbesSucceeded { successes } => out.serialize_entry("successes", successes)?,
            Self::ProbeTimedOut { timeout } => {
                out.serialize_entry("timeout_seconds", &timeout.as_secs_f64())?;
            }
            Self::ProbeFailed
            | Self::ProbeTimeout
            | Self::ProbeCancelled
            | Self::Reset
            | Self::Isolated
            | Self::Disabled
            | Self::DisabledInConfig
            | Self::Automatic
            | Self::Shared => {}
        }
        out.serialize_entry("message", &self.to_string())?;
        out.end()
    }
}

/// `failure rate 0.62 >= 0.5 over 100 calls`, with ` in 60s` for a time window.
fn write_rate(
    f: &mut fmt::Formatter<'_>,
    rule: &str,
    rate: f64,
    threshold: f64,
    calls: u64,
    window: Option<Duration>,
) -> fmt::Result {
    write!(f, "{rule} {rate:.2} >= {threshold} over {calls} calls")?;
    window.map_or(Ok(()), |span| write!(f, " in {}", Human(span)))
}

/// A duration as people read it: whole milliseconds under 10 s (`250ms`, `1.5s`), tenths of a
/// second above (`12.3s`), with minutes and hours from one minute on (`2m 30.5s`, `1h 0.5s`),
/// the way config files write them.
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MS_PER_S: u128 = 1_000;
        let ms = (self.0.as_nanos() + 500_000) / 1_000_000;
        if ms < MS_PER_S {
            return write!(f, "{ms}ms");
        }
        if ms < 10 * MS_PER_S {
            // Seconds with the milliseconds, trailing zeros left out: 1.5s, 2s, 1.234s.
            let (seconds, fraction) = (ms / MS_PER_S, ms % MS_PER_S);
            return match (fraction % 100, fraction % 10) {
                _ if fraction == 0 => write!(f, "{seconds}s"),
                (0, _) => write!(f, "{seconds}.{}s", fraction / 100),
                (_, 0) => write!(f, "{seconds}.{:02}s", fraction / 10),
                _ => write!(f, "{seconds}.{fraction:03}s"),
            };
        }
        let tenths = (self.0.as_nanos() + 50_000_000) / 100_000_000;
        let (hours, minutes, seconds) = (tenths / 36_000, tenths / 600 % 60, tenths % 600);
        // As config files write durations: the parts that are not zero, largest first.
        let mut gap = "";
        if hours > 0 {
            write!(f, "{hours}h")?;
            gap = " ";
        }
        if minutes > 0 {
            write!(f, "{gap}{minutes}m")?;
            gap = " ";
        }
        match (seconds / 10, seconds % 10) {
            (0, 0) => Ok(()),
            (whole, 0) => write!(f, "{gap}{whole}s"),
            (whole, tenth) => write!(f, "{gap}{whole}.{tenth}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (Duration::ZERO, "0ms"),
            (Duration::from_micros(999_973), "1s"),
            (Duration::from_nanos(999_973_103), "1s"),
            (Duration::from_nanos(250_400_000), "250ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(1_234), "1.234s"),
            (Duration::from_millis(1_050), "1.05s"),
            (Duration::from_millis(1_007), "1.007s"),
            (Duration::from_millis(9_999), "9.999s"),
            (Duration::from_millis(10_000), "10s"),
            (Duration::from_millis(12_345), "12.3s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_millis(150_500), "2m 30.5s"),
            (Duration::from_millis(3_600_500), "1h 0.5s"),
            (Duration::from_secs(86_400), "24h"),
        ];
        for (duration, text) in cases {
            assert_eq!(Human(duration).to_string(), text, "{duration:?}");
        }
    }
}
