//! State transitions, as [`CircuitBreaker::subscribe`](crate::CircuitBreaker::subscribe) delivers
//! them and as the `tracing` events describe them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::CircuitState;

/// One change of state of one breaker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// Why it changed.
    pub reason: TransitionReason,
    /// The generation the breaker entered (it grows by one on every transition).
    pub generation: u64,
    /// Wall-clock time of the change.
    pub at: SystemTime,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "breaker `{}`: {} -> {} ({})",
            self.breaker, self.from, self.to, self.reason
        )
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
    /// [`CircuitBreaker::automatic`](crate::CircuitBreaker::automatic) lifted a manual override.
    Automatic,
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
                write!(f, "break of {break_duration:?} elapsed")
            }
            Self::ProbesSucceeded { successes: 1 } => f.write_str("1 successful probe"),
            Self::ProbesSucceeded { successes } => write!(f, "{successes} successful probes"),
            Self::ProbeFailed => f.write_str("probe failed"),
            Self::ProbeTimedOut { timeout } => write!(f, "probe did not finish within {timeout:?}"),
            Self::Reset => f.write_str("manual reset"),
            Self::Isolated => f.write_str("isolated by hand"),
            Self::Disabled => f.write_str("disabled by hand"),
            Self::Automatic => f.write_str("manual override lifted"),
        }
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
    window.map_or(Ok(()), |span| write!(f, " in {span:?}"))
}
