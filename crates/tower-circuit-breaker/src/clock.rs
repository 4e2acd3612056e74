//! Where a breaker reads the time.
//!
//! A breaker never calls `std::time::Instant::now()` directly: it reads a [`Clock`], so tests can
//! drive time instead of sleeping. Two clocks exist:
//!
//! - [`Clock::tokio`] (the default) reads [`tokio::time::Instant::now`]. In production that is the
//!   monotonic clock; in a test that calls `tokio::time::pause` it is Tokio's virtual clock, so
//!   `tokio::time::advance` moves every breaker's time along with the test's timers.
//! - [`Clock::manual`] reads a [`ManualClock`] that moves only when told to. It needs no runtime,
//!   which suits model tests, loom and synchronous code.
//!
//! Times are kept inside the engine as nanoseconds since the clock was made, so they fit in one
//! atomic word.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState, Clock, ManualClock};
//!
//! let time = ManualClock::new();
//! let breaker = CircuitBreaker::builder("db")
//!     .config(CircuitBreakerConfig::default().failure_threshold(1).break_duration(Duration::from_secs(5)))
//!     .clock(Clock::manual(&time))
//!     .build()
//!     .unwrap();
//!
//! breaker.try_acquire().unwrap().failure();
//! assert_eq!(breaker.state(), CircuitState::Open);
//! time.advance(Duration::from_secs(5));
//! assert_eq!(breaker.state(), CircuitState::HalfOpen);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The time source of a breaker. Cheap to clone.
#[derive(Clone)]
pub struct Clock {
    kind: ClockKind,
}

#[derive(Clone)]
enum ClockKind {
    Tokio { epoch: tokio::time::Instant },
    Manual(ManualClock),
}

impl Clock {
    /// Tokio's clock: real monotonic time, or Tokio's paused time in tests.
    ///
    /// Readable outside a runtime (it then reads the system's monotonic clock).
    pub fn tokio() -> Self {
        Self {
            kind: ClockKind::Tokio {
                epoch: tokio::time::Instant::now(),
            },
        }
    }

    /// A clock that moves only when `clock` is advanced.
    pub fn manual(clock: &ManualClock) -> Self {
        Self {
            kind: ClockKind::Manual(clock.clone()),
        }
    }

    /// Nanoseconds since this clock was made.
    pub(crate) fn now_nanos(&self) -> u64 {
        match &self.kind {
            ClockKind::Tokio { epoch } => {
                duration_nanos(tokio::time::Instant::now().saturating_duration_since(*epoch))
            }
            ClockKind::Manual(manual) => manual.inner.nanos.load(Ordering::Acquire),
        }
    }

    /// Waits until the clock reads at least `deadline` (nanoseconds since the clock was made).
    ///
    /// With the Tokio clock this is a Tokio timer, so it needs a runtime with time enabled.
    pub(crate) async fn sleep_until(&self, deadline: u64) {
        match &self.kind {
            ClockKind::Tokio { epoch } => {
                let at = epoch.checked_add(Duration::from_nanos(deadline));
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }
            ClockKind::Manual(manual) => loop {
                let advanced = manual.inner.advanced.notified();
                tokio::pin!(advanced);
                advanced.as_mut().enable();
                if manual.inner.nanos.load(Ordering::Acquire) >= deadline {
                    return;
                }
                advanced.await;
            },
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::tokio()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ClockKind::Tokio { .. } => f.write_str("Clock::Tokio"),
            ClockKind::Manual(manual) => f
                .debug_tuple("Clock::Manual")
                .field(&manual.elapsed())
                .finish(),
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(clock: ManualClock) -> Self {
        Self {
            kind: ClockKind::Manual(clock),
        }
    }
}

/// A clock that stands still until [`advance`](ManualClock::advance) moves it.
///
/// Clones share the same time. Advancing wakes every [`CircuitBreaker::ready`](crate::CircuitBreaker::ready)
/// waiting on a breaker that reads this clock.
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Default)]
struct ManualInner {
    nanos: AtomicU64,
    advanced: Notify,
}

impl ManualClock {
    /// A clock reading zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        let mut current = self.inner.nanos.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(by);
            match self.inner.nanos.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.inner.advanced.notify_waiters();
    }

    /// How far the clock has been advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.nanos.load(Ordering::Acquire))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
