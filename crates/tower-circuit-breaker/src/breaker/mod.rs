//! The breaker engine: [`CircuitBreaker`] and its [`Permit`]s. No tower in here.
//!
//! A [`CircuitBreaker`] is a cheap handle (an `Arc` inside): every clone is the same breaker. It
//! moves between states by these rules:
//!
//! - **Closed**: calls are admitted. Any of these rules opens the circuit, the first to fire
//!   giving the reason:
//!   - `failure_threshold` failures in a row (a success resets the count);
//!   - a [failure rate](crate::FailureRateRule) at or above its threshold over a sliding window;
//!   - a [slow-call rate](crate::SlowCallRule) at or above its threshold over the same window
//!     (a call is slow when it lasts at least the rule's duration; a slow success is still a
//!     success for the failure rate).
//!
//!   Rate rules wait until the window holds `minimum_throughput` calls. A
//!   [`min_transition_interval`](crate::CircuitBreakerConfig::min_transition_interval) keeps a
//!   just-closed circuit closed for a while, so a flapping service does not make it oscillate.
//! - **Open**: calls are rejected at once with [`CircuitOpen`](crate::CircuitOpen), which says how
//!   long until the next probe. When the break has passed the circuit is half-open. A break lasts
//!   `break_duration`, or grows on each reopen from half-open with a
//!   [`BreakBackoff`](crate::BreakBackoff) (capped, optional jitter) and starts over on close.
//! - **Half-open**: at most `half_open_max_calls` probes run at once; more calls are rejected at
//!   once with [`HalfOpenFull`](crate::HalfOpenFull). `success_threshold` successful probes close
//!   the circuit; one failure opens it again. A probe still running `half_open_timeout` after it
//!   was admitted counts as a failure (a timeout), so the circuit never sticks half-open.
//! - **Isolated** and **Disabled** are manual overrides: reject everything, or admit everything
//!   while still measuring. [`automatic`](CircuitBreaker::automatic) or
//!   [`reset`](CircuitBreaker::reset) ends them.
//!
//! Every transition starts a new *generation*. A call's outcome moves the state only if the
//! breaker is still in the generation the call was admitted in: a slow failure from before a reset
//! cannot reopen it, and a call admitted while closed is not taken for a probe's result. Such
//! outcomes are still counted in the [metrics](CircuitBreaker::metrics).
//!
//! # Sliding windows
//!
//! A [count window](crate::SlidingWindow::Calls) holds the last N outcomes in a ring; a
//! [time window](crate::SlidingWindow::Time) holds the last T in B buckets that age out whole (so
//! it spans between T - T/B and T). Both slide: a breaker healthy for a week trips exactly as fast
//! as one that has seen one window of successes. Only closed-state calls of the current
//! generation go in; ignored and cancelled calls stay out; the window is emptied when the circuit
//! closes. Recording is lock-free: a count window costs one atomic add and one
//! load per call (three more atomic operations when the slot's old outcome differs); a time
//! window one read of the coarse clock (the precise one where the coarse clock may not be used,
//! see [`Clock`]), one load and one atomic add (two for a failure), and a bucket change once per
//! bucket width. A time window's counts are 64-bit: it holds any number of calls.
//! Under a race with a transition an outcome from the old generation can land in the new window
//! (it cannot itself open the circuit: the trip re-checks the generation under the lock).
//!
//! # Cost and memory
//!
//! In the closed state a call without a window costs one atomic load of the state word and one of
//! this thread's counter stripe to admit, and to record, one load and one store on that stripe
//! (a thread owns a stripe while there are stripes to own; threads beyond them share one, with an
//! atomic add) and one load of the state word; a success that finds the consecutive count at 0
//! writes nothing shared. The
//! clock is read for one call in
//! [`latency_sample_every`](crate::CircuitBreakerConfig::latency_sample_every) of this breaker's
//! (every call with a slow-call rule). No lock, no allocation.
//!
//! While the circuit is open, a rejection takes no lock either: it reads the kernel's coarse
//! clock (about 3 ns) rather than the precise one (about 24 ns) while the break is more than two
//! scheduler ticks from its end, wherever Tokio's time cannot be paused; see [`Clock`]
//! for what that changes (only a rejection's `retry_after`, by at most a tick). The rejection
//! carries the breaker's name inline (up to 23 bytes), so it touches no shared reference count.
//!
//! What makes a call cheap is also what the compiler can keep in registers: a permit is a
//! reference and two words, and the future of [`call`](CircuitBreaker::call) is written by hand
//! so its `poll` inlines into the caller's. Nothing a caller's code does can abort the process
//! from inside the breaker: the slow half of recording is a plain function, and a `tracing`
//! subscriber that panics on a transition's event unwinds to the caller once the state has
//! changed and every subscriber and waiter has heard.
//!
//! Memory is fixed when the breaker is built ([`size_in_bytes`](CircuitBreaker::size_in_bytes)),
//! but for what it learns on its first transition. With 4 counter stripes of 256 bytes (what a
//! machine with up to two cores gets):
//!
//! | configuration | bytes per breaker |
//! |---|---|
//! | default (consecutive failures only) | 1,776 |
//! | with a 100-call count window | 1,876 (+1 byte a call) |
//! | with a 60 s / 60-bucket time window | 3,216 (+24 bytes a bucket) |
//!
//! Counter stripes are twice the cores (at least 4, at most 64), so a machine with 32 cores spends
//! 16 KiB on them. Three things come on top, when used: its transition counts and the last ten
//! transitions kept for [`recent_transitions`](CircuitBreaker::recent_transitions), made on the
//! first transition (784 bytes more once it has made two); and the buffer of 64 transitions
//! behind [`subscribe`](CircuitBreaker::subscribe), made on the first call to it. A
//! [keyed](crate::keyed) breaker, made by the thousand, has one counter stripe and shares its
//! config with its group.
//!
//! Time-driven changes (a break that ended, a probe that overran) are applied whenever the breaker
//! is used or looked at: by the next call, [`state`](CircuitBreaker::state),
//! [`metrics`](CircuitBreaker::metrics) or [`ready`](CircuitBreaker::ready). No background task
//! is needed.
//!
//! # Example
//!
//! ```
//! use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreaker::with_config("inventory", CircuitBreakerConfig::default().failure_threshold(2))
//!     .expect("valid config");
//!
//! for _ in 0..2 {
//!     let result = breaker.call(|| async { Err::<(), _>("connection refused") }).await;
//!     assert!(matches!(result, Err(CircuitBreakerError::OperationFailed("connection refused"))));
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//!
//! // Rejected without running the operation, with the time left until the next probe.
//! let rejected = breaker.call(|| async { Ok::<_, &str>(()) }).await.unwrap_err();
//! assert!(rejected.is_rejection());
//! assert!(rejected.retry_after().is_some());
//! # }
//! ```

mod call;
mod core;
mod counters;
mod permit;
mod window;
mod word;

use std::borrow::Borrow;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::broadcast;

use self::call::Call;
use self::core::{Outlook, Shared};
use self::counters::Counters;
pub use self::permit::{OwnedPermit, Permit};
use crate::{
    CircuitBreakerConfig, CircuitBreakerError, CircuitMetrics, CircuitState, Classify, Clock,
    ConfigError, ErrorIsFailure, Rejection, Transition, TransitionReason,
};

/// A named circuit breaker. Cheap to clone; every clone is the same breaker.
///
/// See the [module docs](self) for the rules it follows.
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl CircuitBreaker {
    /// A breaker with the default configuration and Tokio's clock.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::from_parts(name.into(), CircuitBreakerConfig::default(), Clock::tokio())
    }

    /// A breaker with `config`, which is validated first.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that breaks its rule.
    pub fn with_config(
        name: impl Into<Arc<str>>,
        config: CircuitBreakerConfig,
    ) -> Result<Self, ConfigError> {
        Self::builder(name).config(config).build()
    }

    /// Starts a [`Builder`], to set the configuration and the clock.
    pub fn builder(name: impl Into<Arc<str>>) -> Builder {
        Builder {
            name: name.into(),
            config: Arc::default(),
            clock: None,
            also_to: None,
            one_stripe: false,
            group: None,
        }
    }

    fn from_parts(name: Arc<str>, config: CircuitBreakerConfig, clock: Clock) -> Self {
        Self::builder(name)
            .config(config)
            .clock(clock)
            .build_validated()
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The state now. A break that has ended reads as half-open, a probe that has overrun its
    /// timeout as open: time-driven transitions are applied here if no call applied them yet.
    pub fn state(&self) -> CircuitState {
        self.shared.state()
    }

    /// The state as last stored: time-driven transitions (open to half-open, half-open to open)
    /// not applied, no lock taken, nothing announced.
    pub(crate) fn stored_state(&self) -> CircuitState {
        self.shared.stored_state()
    }

    /// Whether the breaker is neither open, half-open nor isolated.
    pub fn is_healthy(&self) -> bool {
        !self.state().is_failure_state()
    }

    /// Asks to make one call. In the closed state this is one atomic load (and, for one call in
    /// `latency_sample_every`, a clock read).
    ///
    /// # Errors
    ///
    /// A [`Rejection`] when the circuit is open or isolated, or half-open with every probe slot
    /// taken.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<&Self>, Rejection> {
        self.shared.admit().map(|ticket| Permit::new(self, ticket))
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle to the breaker
    /// (for moving into a spawned task).
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejection> {
        self.shared
            .admit()
            .map(|ticket| Permit::new(self.clone(), ticket))
    }

    /// [`try_acquire`](Self::try_acquire) with a permit holding the handle `holder` makes, once
    /// the call is admitted.
    #[inline]
    pub(crate) fn try_acquire_holding<B: Borrow<Self>>(
        &self,
        holder: impl FnOnce() -> B,
    ) -> Result<Permit<B>, Rejection> {
        self.shared
            .admit()
            .map(|ticket| Permit::new(holder(), ticket))
    }

    /// [`try_acquire`](Self::try_acquire) on the breaker `holder` borrows, with a permit that
    /// keeps `holder`.
    #[inline]
    pub(crate) fn acquire_with<B: Borrow<Self>>(holder: B) -> Result<Permit<B>, Rejection> {
        let admitted = holder.borrow().shared.admit();
        admitted.map(|ticket| Permit::new(holder, ticket))
    }

    /// Whether `self` and `other` are handles to one breaker (clones of each other), not just
    /// breakers of one name.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The name, as the breaker keeps it.
    pub(crate) fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.shared.name)
    }

    /// How many handles to this breaker exist (clones of it, permits that own one).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// Runs `operation` through the breaker: `Err` is a failure, `Ok` a success.
    ///
    /// If the returned future is dropped while the operation runs, the call counts as cancelled.
    ///
    /// # Errors
    ///
    /// [`CircuitBreakerError::Open`] or [`CircuitBreakerError::HalfOpenFull`] when the call is
    /// rejected (the operation is not run), [`CircuitBreakerError::OperationFailed`] with the
    /// operation's error.
    pub fn call<F, Fut, T, E>(
        &self,
        operation: F,
    ) -> impl Future<Output = Result<T, CircuitBreakerError<E>>> + use<'_, F, Fut, T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(&ErrorIsFailure, operation)
    }

    /// Runs `operation` through the breaker, with `classifier` deciding how its result counts (an
    /// `Ok` that is a failure, an `Err` that is ignored). The result is returned as it was.
    ///
    /// ```
    /// use tower_circuit_breaker::{CircuitBreaker, Outcome};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = CircuitBreaker::new("search");
    /// let status_is_health = |result: &Result<u16, std::io::Error>| match result {
    ///     Ok(status) if *status >= 500 => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    ///     Err(_) => Outcome::Failure,
    /// };
    /// let status = breaker.call_with(&status_is_health, || async { Ok(503) }).await.unwrap();
    /// assert_eq!(status, 503);
    /// assert_eq!(breaker.metrics().failed_calls, 1);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_with<'a, C, F, Fut, T, E>(
        &'a self,
        classifier: &'a C,
        operation: F,
    ) -> impl Future<Output = Result<T, CircuitBreakerError<E>>> + use<'a, C, F, Fut, T, E>
    where
        C: Classify<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Call::new(self, classifier, operation)
    }

    /// Waits until the breaker would admit a call: it is closed or disabled, or half-open with a
    /// free probe slot, or open with its break over. A queue consumer awaits this instead of
    /// polling a rejecting breaker.
    ///
    /// It reserves nothing: another caller may take the slot first, so the next call can still be
    /// rejected. With [`Clock::tokio`] it needs a Tokio runtime with time enabled.
    pub async fn ready(&self) {
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            let deadline = match self.shared.outlook() {
                Outlook::Admits => return,
                Outlook::WaitUntil(deadline) => deadline,
            };
            let clock = &self.shared.clock;
            let mut sleep = pin!(async move {
                match deadline {
                    Some(deadline) => clock.sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            });
            poll_fn(|cx| {
                if changed.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// Whether a call would be admitted now; admits and counts nothing (what `poll_ready` asks).
    #[inline]
    pub(crate) fn peek(&self) -> bool {
        self.shared.peek()
    }

    /// A rejection for a call the breaker would admit but that cannot go ahead now (its
    /// service is not ready at once): open with a `retry_after` of zero, counted as one.
    pub(crate) fn retry_now(&self) -> Rejection {
        self.shared.reject_open(Some(0))
    }

    /// A snapshot of the breaker's state and counters.
    pub fn metrics(&self) -> CircuitMetrics {
        self.shared.metrics()
    }

    /// Every transition from now on. A receiver more than 64 transitions behind skips ahead (see
    /// [`broadcast::Receiver::recv`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.shared.subscribe()
    }

    /// The last transitions (at most ten), oldest first: what a dashboard shows as the breaker's
    /// recent history. Kept under the transition lock; reading them takes it briefly.
    pub fn recent_transitions(&self) -> Vec<Transition> {
        self.shared.recent_transitions()
    }

    /// Closes the circuit and clears the counts the rules use (consecutive failures, probes),
    /// whatever the state, manual overrides included. Lifetime counters are kept.
    pub fn reset(&self) {
        self.shared
            .force(CircuitState::Closed, TransitionReason::Reset);
    }

    /// Forces the circuit open until [`automatic`](Self::automatic) or [`reset`](Self::reset).
    pub fn isolate(&self) {
        self.shared
            .force(CircuitState::Isolated, TransitionReason::Isolated);
    }

    /// Admits every call, still measuring, until [`automatic`](Self::automatic) or
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.shared
            .force(CircuitState::Disabled, TransitionReason::Disabled);
    }

    /// Disables the breaker because its registry's config switches breaking off.
    pub(crate) fn disable_by_config(&self) {
        self.shared
            .force(CircuitState::Disabled, TransitionReason::DisabledInConfig);
    }

    /// Ends a manual override ([`isolate`](Self::isolate), [`disable`](Self::disable)) with the
    /// circuit closed; does nothing otherwise.
    pub fn automatic(&self) {
        self.shared.automatic();
    }

    /// Takes the state another instance moved to, from the shared state store (a break of
    /// `open_for` when open). Returns whether the state changed.
    pub(crate) fn adopt(&self, to: CircuitState, open_for: Option<Duration>) -> bool {
        self.shared.adopt(to, open_for)
    }

    /// Why the breaker last changed state, if it has.
    pub(crate) fn last_reason(&self) -> Option<TransitionReason> {
        self.shared.last_reason()
    }

    /// Bytes of memory this breaker takes (its state, counters and probe slots).
    pub fn size_in_bytes(&self) -> usize {
        self.shared.size_in_bytes()
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Builds a [`CircuitBreaker`]; made by [`CircuitBreaker::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct Builder {
    name: Arc<str>,
    config: Arc<CircuitBreakerConfig>,
    clock: Option<Clock>,
    also_to: Option<broadcast::Sender<Transition>>,
    one_stripe: bool,
    group: Option<Arc<str>>,
}

impl Builder {
    /// Uses `config` (default: [`CircuitBreakerConfig::default`]).
    pub fn config(mut self, config: CircuitBreakerConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// Uses a config shared with other breakers (a keyed layer's, made from one template).
    pub(crate) fn shared_config(mut self, config: Arc<CircuitBreakerConfig>) -> Self {
        self.config = config;
        self
    }

    /// Counts on one counter line that every thread updates with atomic adds, rather than on a
    /// line per thread: for breakers made by the thousand (one per host), each of which sees a
    /// share of the traffic, it saves most of a breaker's memory.
    pub(crate) fn one_stripe(mut self) -> Self {
        self.one_stripe = true;
        self
    }

    /// Reads time from `clock` (default: [`Clock::tokio`]).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = Some(clock.into());
        self
    }

    /// Also sends every transition to `sender`, besides the breaker's own
    /// [`subscribe`](CircuitBreaker::subscribe) channel: many breakers can share one sender, so
    /// one receiver sees them all (a [registry](crate::registry) does this).
    pub fn transitions_to(mut self, sender: broadcast::Sender<Transition>) -> Self {
        self.also_to = Some(sender);
        self
    }

    /// The keyed group the breaker belongs to, named in its transitions.
    pub(crate) fn group(mut self, group: Arc<str>) -> Self {
        self.group = Some(group);
        self
    }

    /// Builds the breaker; the config must already be validated.
    pub(crate) fn build_validated(self) -> CircuitBreaker {
        CircuitBreaker {
            shared: Arc::new(Shared::new(
                self.name,
                self.group,
                self.config,
                self.clock.unwrap_or_default(),
                self.also_to,
                if self.one_stripe {
                    Counters::one()
                } else {
                    Counters::new()
                },
            )),
        }
    }

    /// Validates the configuration and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field that breaks its rule.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        Ok(self.build_validated())
    }
}
