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
//! # Rejections while open: the coarse clock
//!
//! Reading Tokio's clock (the system's monotonic clock) costs about 24 ns on x86-64 Linux,
//! more than the rest of a rejection. So while the circuit is open, a breaker on
//! [`Clock::tokio`] first asks the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on
//! Linux, a few nanoseconds, updated every scheduler tick): when the break is at least two of its
//! ticks from its end, the call is rejected without the precise read. Close to the end, and always
//! elsewhere, the precise clock decides, so a break never ends later than it would with the
//! precise clock alone. The one figure it moves is the rejection's
//! [`retry_after`](crate::CircuitOpen::retry_after), which is then correct to within one tick
//! (1 to 10 ms, depending on the kernel's `HZ`).
//!
//! Tokio's clock is the system's clock except inside a runtime whose time is paused, and only a
//! current-thread runtime can pause it. So the coarse clock is used only by a clock made outside
//! a current-thread runtime, and only for a break that began outside one: a breaker built or
//! tripped in a test that pauses time gets Tokio's time, exactly. Whether a rejection comes from
//! inside a runtime is not asked again on each call (asking costs a reference count every worker
//! thread shares); so a breaker built and tripped outside a paused runtime, then called inside
//! one, judges that break on real time. Build the breaker inside the test, or use
//! [`Clock::manual`], which is cheap to read and never uses the coarse clock.
//!
//! A time window picks the bucket of a call it does not otherwise time on the coarse clock too,
//! under the same rule, when its buckets are at least ten ticks wide (the bucket is then right to
//! within a tenth of its width); narrower buckets take the precise clock.
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
    Tokio {
        epoch: tokio::time::Instant,
        /// The coarse clock when `epoch` was read; `None` when there is no coarse clock, or it
        /// may not be used (the clock was made inside a current-thread runtime; see the module
        /// docs).
        coarse_epoch: Option<u64>,
    },
    Manual(ManualClock),
}

impl Clock {
    /// Tokio's clock: real monotonic time, or Tokio's paused time in tests.
    ///
    /// Readable outside a runtime (it then reads the system's monotonic clock).
    pub fn tokio() -> Self {
        Self {
            kind: ClockKind::Tokio {
                coarse_epoch: coarse::usable_here().then(coarse::now).flatten(),
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

    /// A time on the coarse clock before which a break ending at `until` (this clock's
    /// nanoseconds) is certainly not over; 0 if the coarse clock cannot be used (see the module
    /// docs).
    pub(crate) fn coarse_deadline(&self, until: u64) -> u64 {
        if !self.has_coarse() || !coarse::usable_here() {
            return 0;
        }
        // Coarse first, precise second: the coarse reading is not ahead of the precise one, so
        // the deadline is not later than the break's end, less two ticks of margin.
        let Some(coarse) = coarse::now() else {
            return 0;
        };
        let left = until.saturating_sub(self.now_nanos());
        coarse
            .saturating_add(left)
            .saturating_sub(2 * coarse::resolution())
    }

    /// If the coarse clock shows `deadline` (from [`coarse_deadline`](Self::coarse_deadline))
    /// still ahead, about how long until the break ends; `None` when the precise clock must
    /// decide.
    #[inline]
    pub(crate) fn coarse_left(&self, deadline: u64) -> Option<u64> {
        if deadline == 0 {
            return None;
        }
        let now = coarse::now()?;
        if now >= deadline {
            return None;
        }
        Some(deadline - now + 2 * coarse::resolution())
    }

    /// Whether a time window with buckets `bucket_nanos` wide may pick them on the coarse clock:
    /// where it may be used, for buckets of ten scheduler ticks or more (a tick off is then a
    /// tenth of a bucket at most).
    pub(crate) fn coarse_fits(&self, bucket_nanos: u64) -> bool {
        self.has_coarse() && bucket_nanos >= 10 * coarse::resolution()
    }

    /// Whether this clock may use the coarse clock at all.
    fn has_coarse(&self) -> bool {
        matches!(
            self.kind,
            ClockKind::Tokio {
                coarse_epoch: Some(_),
                ..
            }
        )
    }

    /// Nanoseconds since this clock was made, for a time window's buckets: the coarse clock where
    /// it may be used (correct to within one scheduler tick, a few nanoseconds to read), else the
    /// precise one.
    #[inline]
    pub(crate) fn window_nanos(&self) -> u64 {
        if let ClockKind::Tokio {
            coarse_epoch: Some(epoch),
            ..
        } = &self.kind
        {
            if let Some(now) = coarse::now() {
                return now.saturating_sub(*epoch);
            }
        }
        self.now_nanos()
    }

    /// Nanoseconds since this clock was made.
    pub(crate) fn now_nanos(&self) -> u64 {
        match &self.kind {
            ClockKind::Tokio { epoch, .. } => {
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
            ClockKind::Tokio { epoch, .. } => {
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

/// The kernel's coarse monotonic clock, where there is one.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(loom)))]
mod coarse {
    use std::sync::OnceLock;

    use rustix::time::{clock_getres, clock_gettime, ClockId, Timespec};

    fn nanos(time: Timespec) -> Option<u64> {
        let secs = u64::try_from(time.tv_sec).ok()?;
        let nanos = u64::try_from(time.tv_nsec).ok()?;
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    }

    /// The coarse monotonic clock, in nanoseconds since boot.
    #[inline]
    pub(super) fn now() -> Option<u64> {
        nanos(clock_gettime(ClockId::MonotonicCoarse))
    }

    /// How far the coarse clock can lag the precise one: one tick.
    pub(super) fn resolution() -> u64 {
        static RESOLUTION: OnceLock<u64> = OnceLock::new();
        // A tick is at most 10 ms (HZ = 100); if the kernel will not say, assume that.
        *RESOLUTION
            .get_or_init(|| nanos(clock_getres(ClockId::MonotonicCoarse)).unwrap_or(10_000_000))
    }

    /// Whether Tokio's clock is the system's on this thread: it can be paused only inside a
    /// current-thread runtime.
    #[inline]
    pub(super) fn usable_here() -> bool {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) => handle.runtime_flavor() == RuntimeFlavor::MultiThread,
            Err(_) => true,
        }
    }
}

/// No coarse clock: the precise clock decides every time.
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(loom))))]
mod coarse {
    pub(super) fn now() -> Option<u64> {
        None
    }

    pub(super) fn resolution() -> u64 {
        0
    }

    pub(super) fn usable_here() -> bool {
        false
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn outside_a_runtime_a_running_break_is_judged_on_the_coarse_clock() {
        let clock = Clock::tokio();
        let until = clock.now_nanos() + 60 * SECOND;
        let deadline = clock.coarse_deadline(until);
        assert_ne!(deadline, 0, "the coarse clock is usable outside a runtime");
        let left = clock.coarse_left(deadline).expect("a minute left");
        let tick = coarse::resolution();
        // Within a few ticks of the minute, never more than the minute and the margin.
        assert!(left <= 60 * SECOND + 2 * tick, "{left}");
        assert!(left + 3 * tick + SECOND / 10 >= 60 * SECOND, "{left}");
    }

    #[test]
    fn the_last_ticks_of_a_break_go_to_the_precise_clock() {
        let clock = Clock::tokio();
        // A break ending now, or one tick from now: the coarse clock may not decide it.
        for left in [0, coarse::resolution()] {
            let deadline = clock.coarse_deadline(clock.now_nanos() + left);
            assert_eq!(clock.coarse_left(deadline), None, "{left} ns left");
        }
    }

    #[test]
    fn a_time_window_reads_the_coarse_clock_within_a_tick_of_the_precise_one() {
        let clock = Clock::tokio();
        let tick = coarse::resolution();
        for _ in 0..1_000 {
            let before = clock.now_nanos();
            let window = clock.window_nanos();
            let after = clock.now_nanos();
            assert!(window + 2 * tick >= before, "{window} vs {before}");
            assert!(window <= after + 2 * tick, "{window} vs {after}");
        }
    }

    #[test]
    fn in_a_paused_runtime_a_time_window_reads_tokios_time() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let clock = Clock::tokio();
            tokio::time::advance(Duration::from_secs(3600)).await;
            assert_eq!(clock.window_nanos(), clock.now_nanos());
            assert!(clock.window_nanos() >= 3600 * SECOND);
        });
    }

    #[test]
    fn a_manual_clock_never_uses_the_coarse_clock() {
        let clock = Clock::manual(&ManualClock::new());
        assert_eq!(clock.coarse_deadline(3600 * SECOND), 0);
        assert_eq!(clock.coarse_left(0), None);
    }

    #[test]
    fn a_current_thread_runtime_may_pause_time_so_it_gets_the_precise_clock() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // A break that begins inside such a runtime, on a clock made outside it.
        let clock = Clock::tokio();
        let until = clock.now_nanos() + 60 * SECOND;
        runtime.block_on(async {
            assert_eq!(clock.coarse_deadline(until), 0);
            // A clock made inside it never uses the coarse clock, wherever its breaks begin.
            let inside = Clock::tokio();
            let until = inside.now_nanos() + 60 * SECOND;
            std::thread::scope(|scope| {
                scope.spawn(|| assert_eq!(inside.coarse_deadline(until), 0));
            });
        });
    }

    #[test]
    fn a_multi_thread_runtime_cannot_pause_time_so_it_may_use_the_coarse_clock() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let clock = Clock::tokio();
        runtime.block_on(async {
            let deadline = clock.coarse_deadline(clock.now_nanos() + 60 * SECOND);
            assert!(clock.coarse_left(deadline).is_some());
        });
    }
}
