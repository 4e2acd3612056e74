//! The state machine shared by every handle of one breaker.
//!
//! Closed (and disabled) calls are admitted with one atomic load of the state word and recorded
//! with one relaxed add to this thread's counter stripe; a failure also compare-and-swaps the
//! consecutive count in the word. Everything else (open past its break, half-open probes,
//! transitions, manual overrides) happens under one mutex, where the rules are easy to check.
//! Transitions are announced (tracing event, subscribers, `ready()` waiters) after the lock is
//! released.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, Notify};

use super::counters::{stripe_index, Count, Counters, Sampling};
use super::window::{CountWindow, TimeWindow, Window, WindowCounts};
use super::word::{self, CLOSED, DISABLED, HALF_OPEN, ISOLATED, OPEN};
use crate::clock::{duration_nanos, Clock};
use crate::config::CancelledCalls;
use crate::metrics::{CircuitMetrics, TransitionCounts, WindowMetrics};
use crate::sync::{lock, AtomicU64, Mutex, Ordering};
use crate::{
    CircuitBreakerConfig, CircuitOpen, CircuitState, HalfOpenFull, Outcome, Rejection,
    SlidingWindow, Transition, TransitionReason,
};

/// How many transitions a slow subscriber may fall behind before it sees `Lagged`.
const EVENT_CAPACITY: usize = 64;
/// Transitions a breaker remembers for [`CircuitBreaker::recent_transitions`](crate::CircuitBreaker::recent_transitions).
pub(crate) const RECENT_TRANSITIONS: usize = 10;

/// What kind of call a ticket is for (the low two bits of its `meta`).
const PLAIN: u64 = 0;
/// A closed call, timed from `started`.
const TIMED: u64 = 1;
/// A half-open probe holding a slot, timed from `started`.
const PROBE: u64 = 2;
/// A ticket already recorded: what a permit keeps once its call has ended.
const SPENT: u64 = 3;

/// What an admitted call carries until it is recorded: two words, so the optimizer keeps it in
/// registers while it travels inside the caller's `Result<Permit, Rejection>`.
///
/// ```text
///  meta: 63        27 26          16 15       2 1      0
///       +------------+--------------+----------+--------+
///       | generation |  probe slot  |  unused  |  kind  |
///       +------------+--------------+----------+--------+
/// ```
///
/// The generation sits where the state word keeps it, so `word::same_generation` compares a
/// ticket with the word directly. The counts go to the stripe of the thread that records the
/// call, which may not be the one that admitted it (a future can move between threads).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    meta: u64,
    /// When the call started (clock nanoseconds); meaningful for a timed call or a probe.
    started: u64,
}

const KIND_MASK: u64 = 0b11;
const PROBE_SHIFT: u32 = 13;
const PROBE_MASK: u64 = 0x3fff;
// Every probe slot has a number that fits in its field, below the generation.
const _: () = assert!(crate::config::MAX_HALF_OPEN_CALLS as u64 <= PROBE_MASK + 1);
const _: () = assert!(PROBE_SHIFT + 14 <= word::GENERATION_SHIFT);

impl Ticket {
    fn new(word: u64, kind: u64, probe: u16, started: u64) -> Self {
        let generation = word & !((1 << word::GENERATION_SHIFT) - 1);
        Self {
            meta: generation | ((u64::from(probe) & PROBE_MASK) << PROBE_SHIFT) | kind,
            started,
        }
    }

    /// A closed call's ticket, timed if `started` is given.
    fn closed(word: u64, started: Option<u64>) -> Self {
        match started {
            Some(started) => Self::new(word, TIMED, 0, started),
            None => Self::new(word, PLAIN, 0, 0),
        }
    }

    fn kind(self) -> u64 {
        self.meta & KIND_MASK
    }

    /// Whether it is still to be recorded.
    pub(crate) fn is_live(self) -> bool {
        self.kind() != SPENT
    }

    /// Marks it recorded, returning what it was.
    pub(crate) fn spend(&mut self) -> Self {
        let live = *self;
        self.meta = (self.meta & !KIND_MASK) | SPENT;
        live
    }

    pub(crate) fn is_probe(self) -> bool {
        self.kind() == PROBE
    }

    pub(crate) fn generation(self) -> u64 {
        word::generation(self.meta)
    }

    /// A word of the generation the call was admitted in, for `word::same_generation`.
    fn admitted(self) -> u64 {
        self.meta
    }

    /// When the call started, if it is timed.
    fn started(self) -> Option<u64> {
        matches!(self.kind(), TIMED | PROBE).then_some(self.started)
    }

    /// The probe slot it holds, if it is a probe.
    fn probe(self) -> Option<u32> {
        #[allow(clippy::cast_possible_truncation)] // masked to 14 bits
        self.is_probe()
            .then_some(((self.meta >> PROBE_SHIFT) & PROBE_MASK) as u32)
    }
}

/// How a call ended, from the engine's side: an outcome, or dropped before it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Finished(Outcome),
    Cancelled,
}

/// What an ending does to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Success,
    Failure,
    Neutral,
}

/// Which clock a time window picks an untimed call's bucket by.
#[derive(Debug, Clone, Copy)]
enum WindowClock {
    /// Buckets at least ten scheduler ticks wide, on a clock that may use the coarse clock.
    Coarse,
    Precise,
}

/// A probe's end, for `Guard::finish_probe`.
#[derive(Debug, Clone, Copy)]
struct ProbeEnd {
    /// A word of the generation it was admitted in.
    admitted: u64,
    slot: u32,
    /// When it started: what its slot holds while it is the slot's probe.
    started: u64,
    effect: Effect,
    /// How it was counted, for the reason's wording.
    count: Count,
}

impl ProbeEnd {
    /// The end of `ticket`'s call, if it is a probe.
    fn of(ticket: Ticket, effect: Effect, count: Count) -> Option<Self> {
        ticket.probe().map(|slot| Self {
            admitted: ticket.admitted(),
            slot,
            started: ticket.started,
            effect,
            count,
        })
    }
}

/// What the state allows now (see `Guard::verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Closed or disabled: admit freely (the word of the generation).
    Admit(u64),
    /// Half-open with a free probe slot.
    Probe(u64),
    /// Open until then (clock nanoseconds), or isolated (`None`).
    Open(Option<u64>),
    /// Half-open with every probe slot taken.
    Full,
}

/// Time left until `until`, if there is a deadline.
fn retry_after(until: Option<u64>, now: u64) -> Option<u64> {
    until.map(|until| until.saturating_sub(now))
}

/// Whether `ready()` can return, or until when it should wait (`None`: until a transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outlook {
    Admits,
    WaitUntil(Option<u64>),
}

pub(crate) struct Shared {
    word: AtomicU64,
    /// End of the current break (clock nanoseconds); meaningful while the word says open. Written
    /// before the word that announces it, so a reader that saw the word sees this.
    open_until: AtomicU64,
    /// The same break's end on the coarse clock, less a margin (`Clock::coarse_deadline`); 0 when
    /// the precise clock must decide. Written with `open_until`.
    open_gate: AtomicU64,
    pub(crate) name: Arc<str>,
    /// The keyed group of a keyed breaker.
    group: Option<Arc<str>>,
    /// The name again, as rejections carry it (inline when short).
    pub(crate) short_name: smol_str::SmolStr,
    /// Shared by breakers made from one template (a keyed layer's).
    pub(crate) config: Arc<CircuitBreakerConfig>,
    pub(crate) clock: Clock,
    counters: Counters,
    locked: Mutex<Locked>,
    /// Woken on every transition and whenever a probe slot frees up.
    pub(crate) changed: Notify,
    /// Made on the first `subscribe`: its buffer is most of a breaker's memory, and most
    /// breakers (per-host ones, a registry's) are never subscribed to one by one.
    events: std::sync::OnceLock<broadcast::Sender<Transition>>,
    /// A second channel every transition is sent to, shared with other breakers (a registry's).
    also_to: Option<broadcast::Sender<Transition>>,
    half_open_timeout_nanos: u64,
    /// The sliding window of the rate rules, if any.
    window: Option<Window>,
    rules: RateRules,
    /// Whether every closed call is timed (the slow-call rule needs each duration).
    time_every_call: bool,
    /// Which other calls are timed (`latency_sample_every`).
    sampling: Sampling,
    /// The clock a time window files an untimed call under; `None` without a time window.
    window_clock: Option<WindowClock>,
}

/// The rate rules, judged on the window after a failure or a slow call.
#[derive(Debug)]
struct RateRules {
    failure_rate: Option<f64>,
    slow_rate: Option<f64>,
    slow_nanos: u64,
    minimum_throughput: u64,
    /// The window's span, for the reason's wording (time windows only).
    span: Option<Duration>,
}

impl RateRules {
    fn new(config: &CircuitBreakerConfig) -> Self {
        let (span, minimum_throughput) = match config.window() {
            Some((SlidingWindow::Time { duration, .. }, minimum)) => (Some(duration), minimum),
            Some((SlidingWindow::Calls(_), minimum)) => (None, minimum),
            None => (None, 0),
        };
        Self {
            failure_rate: config.failure_rate.as_ref().map(|rule| rule.threshold),
            slow_rate: config.slow_call.as_ref().map(|rule| rule.threshold),
            slow_nanos: config
                .slow_call
                .as_ref()
                .map_or(u64::MAX, |rule| duration_nanos(rule.duration)),
            minimum_throughput: u64::from(minimum_throughput),
            span,
        }
    }

    /// Which rule fires on these counts, if any: the failure rate first.
    #[allow(clippy::cast_precision_loss)] // rates of counts far below 2^52
    fn judge(&self, counts: WindowCounts) -> Option<TransitionReason> {
        if counts.calls == 0 || counts.calls < self.minimum_throughput {
            return None;
        }
        let (calls, window) = (counts.calls, self.span);
        // The rate of `count` in the window, when it reaches `threshold`.
        let fired = |threshold: Option<f64>, count: u64| {
            let threshold = threshold?;
            let rate = count as f64 / calls as f64;
            (rate >= threshold).then_some((rate, threshold))
        };
        if let Some((rate, threshold)) = fired(self.failure_rate, counts.failures) {
            return Some(TransitionReason::FailureRate {
                rate,
                threshold,
                calls,
                window,
            });
        }
        fired(self.slow_rate, counts.slow).map(|(rate, threshold)| TransitionReason::SlowCallRate {
            rate,
            threshold,
            calls,
            window,
        })
    }
}

/// The state only touched under the lock.
struct Locked {
    half_open_successes: u32,
    /// Start time of the probe in each slot.
    probes: Box<[Option<u64>]>,
    probes_in_flight: u32,
    entered_at: u64,
    /// What the breaker remembers of its transitions: made on the first one, so the many breakers
    /// that never change state (most of a keyed layer's) do not carry it.
    history: Option<Box<History>>,
    /// Reopens from half-open since the circuit last closed: the break backoff's exponent.
    reopens: u32,
    /// The current (or last) break.
    break_duration: Duration,
}

/// A breaker's past transitions.
#[derive(Default)]
struct History {
    transitions: TransitionCounts,
    /// The last few transitions, oldest first (never empty once made): the last one's time and
    /// reason are the breaker's last change and its reason.
    recent: VecDeque<Transition>,
}

/// The lock held, with the transitions to announce once it is released.
struct Guard<'a> {
    shared: &'a Shared,
    locked: &'a mut Locked,
    announce: &'a mut Announce,
}

#[derive(Default)]
struct Announce {
    transitions: Vec<Transition>,
    wake: bool,
}

impl Shared {
    /// Builds the state; `config` must already be validated.
    pub(crate) fn new(
        name: Arc<str>,
        group: Option<Arc<str>>,
        config: Arc<CircuitBreakerConfig>,
        clock: Clock,
        also_to: Option<broadcast::Sender<Transition>>,
        counters: Counters,
    ) -> Self {
        let slots = config.half_open_max_calls as usize;
        let now = clock.now_nanos();
        let window = config.window().map(|(window, _)| match window {
            SlidingWindow::Calls(calls) => Window::Count(CountWindow::new(calls)),
            SlidingWindow::Time { duration, buckets } => {
                Window::Time(TimeWindow::new(duration_nanos(duration), buckets, now))
            }
        });
        Self {
            word: AtomicU64::new(word::pack(0, CLOSED, 0)),
            open_until: AtomicU64::new(0),
            open_gate: AtomicU64::new(0),
            half_open_timeout_nanos: duration_nanos(config.half_open_timeout),
            window_clock: window
                .as_ref()
                .and_then(Window::bucket_nanos)
                .map(|bucket| {
                    if clock.coarse_fits(bucket) {
                        WindowClock::Coarse
                    } else {
                        WindowClock::Precise
                    }
                }),
            time_every_call: config.slow_call.is_some(),
            sampling: Sampling::every(config.latency_sample_every),
            rules: RateRules::new(&config),
            window,
            counters,
            locked: Mutex::new(Locked {
                half_open_successes: 0,
                probes: vec![None; slots].into_boxed_slice(),
                probes_in_flight: 0,
                entered_at: now,
                history: None,
                reopens: 0,
                break_duration: config.break_duration,
            }),
            changed: Notify::new(),
            events: std::sync::OnceLock::new(),
            also_to,
            short_name: smol_str::SmolStr::new(&*name),
            name,
            group,
            config,
            clock,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe()
    }

    pub(crate) fn recent_transitions(&self) -> Vec<Transition> {
        lock(&self.locked)
            .history
            .as_ref()
            .map(|history| history.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Approximate heap and inline bytes of one breaker, for the docs.
    /// The config is counted whole even when shared (as a keyed layer's breakers share theirs).
    pub(crate) fn size_in_bytes(&self) -> usize {
        let history = lock(&self.locked).history.as_ref().map_or(0, |history| {
            std::mem::size_of::<History>()
                + history.recent.capacity() * std::mem::size_of::<Transition>()
        });
        // The `Arc`'s two counts, the name's too.
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<Self>()
            + self.counters.size_in_bytes()
            + self.config.half_open_max_calls as usize * std::mem::size_of::<Option<u64>>()
            + self.window.as_ref().map_or(0, Window::size_in_bytes)
            + 2 * std::mem::size_of::<usize>()
            + self.name.len()
            + std::mem::size_of::<CircuitBreakerConfig>()
            + history
    }

    // ===== admission =====

    #[inline]
    pub(crate) fn admit(&self) -> Result<Ticket, Rejection> {
        let word = self.word.load(Ordering::Acquire);
        if word::admits_freely(word) {
            let sampled = self.counters.enter(self.sampling);
            let started = (sampled || self.time_every_call).then(|| self.clock.now_nanos());
            return Ok(Ticket::closed(word, started));
        }
        self.admit_slow(word)
    }

    /// Admission outside closed and disabled: a rejection while the break runs, without the lock
    /// (and mostly without the precise clock); the lock for anything else.
    #[cold]
    fn admit_slow(&self, word: u64) -> Result<Ticket, Rejection> {
        let now = match word::tag(word) {
            ISOLATED => return Err(self.reject_open(None)),
            OPEN => match self.open_for() {
                Ok(left) => return Err(self.reject_open(Some(left))),
                Err(now) => now,
            },
            _ => self.clock.now_nanos(),
        };
        self.admit_locked(now)
    }

    #[inline(never)]
    fn admit_locked(&self, now: u64) -> Result<Ticket, Rejection> {
        let (admitted, panicked) = self.with_lock_caught(|guard| guard.admit(now));
        if let Some(payload) = panicked {
            // The call will not happen: its probe slot, if it took one, goes back first.
            if let Ok(ticket) = admitted {
                self.release(ticket);
            }
            std::panic::resume_unwind(payload);
        }
        admitted
    }

    /// Gives back an admitted call that was never made: frees its probe slot, if it holds one,
    /// and counts nothing.
    pub(crate) fn release(&self, ticket: Ticket) {
        if let Some(ended) = ProbeEnd::of(ticket, Effect::Neutral, Count::Ignored) {
            let now = self.clock.now_nanos();
            self.with_lock(|guard| guard.finish_probe(ended, now));
        }
    }

    /// For a word that says open: `Ok(time left)` while the break runs, or `Err(now)` once it is
    /// over (the precise time, read for the transition). Asks the coarse clock first (see
    /// [`Clock`]'s docs).
    #[inline]
    fn open_for(&self) -> Result<u64, u64> {
        if let Some(left) = self
            .clock
            .coarse_left(self.open_gate.load(Ordering::Relaxed))
        {
            return Ok(left);
        }
        let now = self.clock.now_nanos();
        let until = self.open_until.load(Ordering::Relaxed);
        if now < until {
            Ok(until - now)
        } else {
            Err(now)
        }
    }

    /// Whether a call would be admitted now, without admitting it or counting anything: what a
    /// service's `poll_ready` asks.
    #[inline]
    pub(crate) fn peek(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        if word::admits_freely(word) {
            true
        } else {
            self.peek_slow(word)
        }
    }

    /// `peek` outside closed and disabled. Builds no rejection: `call` judges again and makes the
    /// one the caller gets.
    #[cold]
    fn peek_slow(&self, word: u64) -> bool {
        let now = match word::tag(word) {
            OPEN => match self.open_for() {
                Ok(_) => return false,
                Err(now) => now,
            },
            _ => self.clock.now_nanos(),
        };
        self.with_lock(|guard| matches!(guard.verdict(now), Verdict::Admit(_) | Verdict::Probe(_)))
    }

    fn open_rejection(&self, retry_after: Option<u64>) -> Rejection {
        Rejection::Open(CircuitOpen::new(
            self.short_name.clone(),
            retry_after.map(Duration::from_nanos),
        ))
    }

    pub(crate) fn reject_open(&self, retry_after: Option<u64>) -> Rejection {
        self.counters.add(Count::RejectedOpen);
        self.open_rejection(retry_after)
    }

    fn reject_half_open(&self) -> Rejection {
        self.counters.add(Count::RejectedHalfOpen);
        self.full_rejection()
    }

    fn full_rejection(&self) -> Rejection {
        Rejection::HalfOpenFull(HalfOpenFull::new(self.short_name.clone()))
    }

    // ===== recording =====

    /// Records how an admitted call ended. The common case (a plain closed success, untimed,
    /// no window) is inlined: one relaxed add on the thread's stripe and one load of the word.
    #[inline]
    pub(crate) fn record(&self, ticket: Ticket, ending: Ending) {
        if ending == Ending::Finished(Outcome::Success)
            && ticket.kind() == PLAIN
            && self.window.is_none()
        {
            self.counters.add_at(stripe_index(), Count::Success);
            self.closed_success(ticket.admitted());
            return;
        }
        self.record_slow(ticket, ending);
    }

    /// Everything but a plain closed success. A plain Rust function, so a panic in what it runs
    /// (a `tracing` subscriber announcing a transition) unwinds to the caller like any other.
    #[cold]
    #[inline(never)]
    fn record_slow(&self, ticket: Ticket, ending: Ending) {
        let (count, effect) = match ending {
            Ending::Finished(Outcome::Success) => (Count::Success, Effect::Success),
            Ending::Finished(Outcome::Failure) => (Count::Failure, Effect::Failure),
            Ending::Finished(Outcome::Timeout) => (Count::TimeoutFailure, Effect::Failure),
            Ending::Finished(Outcome::Ignored) => (Count::Ignored, Effect::Neutral),
            Ending::Cancelled => match self.config.cancelled_calls {
                CancelledCalls::Ignored => (Count::Cancelled, Effect::Neutral),
                CancelledCalls::Failure => (Count::Cancelled, Effect::Failure),
            },
        };
        let stripe = stripe_index();
        self.counters.add_at(stripe, count);

        // Read the clock only for what needs it: a timed call, a probe. A time window picks its
        // bucket from the cheaper window clock when the call has no time of its own, and a trip
        // from the window without one reads the precise clock then (`record_in_window`).
        let read_now = (ticket.kind() != PLAIN).then(|| self.clock.now_nanos());
        let now = read_now.unwrap_or(0);
        let elapsed = ticket.started().map(|started| now.saturating_sub(started));
        if let (Some(elapsed), Ending::Finished(_)) = (elapsed, ending) {
            self.counters
                .add_latency_at(stripe, Duration::from_nanos(elapsed));
        }

        if let Some(ended) = ProbeEnd::of(ticket, effect, count) {
            self.with_lock(|guard| guard.finish_probe(ended, now));
            return;
        }
        let failure = match effect {
            Effect::Success => {
                self.closed_success(ticket.admitted());
                false
            }
            Effect::Failure => {
                self.closed_failure(ticket.admitted());
                true
            }
            // Ignored and cancelled calls are not in the window.
            Effect::Neutral => return,
        };
        if let Some(window) = &self.window {
            let slow = elapsed.is_some_and(|elapsed| elapsed >= self.rules.slow_nanos);
            let window_now =
                read_now.or_else(|| self.window_clock.map(|clock| self.window_now(clock)));
            self.record_in_window(
                window,
                ticket.admitted(),
                failure,
                slow,
                window_now,
                read_now,
            );
        }
    }

    /// The time a time window files a call under that has no time of its own.
    fn window_now(&self, clock: WindowClock) -> u64 {
        match clock {
            WindowClock::Coarse => self.clock.window_nanos(),
            WindowClock::Precise => self.clock.now_nanos(),
        }
    }

    /// Adds a closed call to the window and, after a failure or a slow call, judges the rates.
    fn record_in_window(
        &self,
        window: &Window,
        admitted: u64,
        failure: bool,
        slow: bool,
        window_now: Option<u64>,
        now: Option<u64>,
    ) {
        let current = self.word.load(Ordering::Relaxed);
        if !word::same_generation(current, admitted) {
            return;
        }
        // A count window ignores the time; a time window always has it.
        let Some(counts) = window.record(failure, slow, window_now.unwrap_or(0)) else {
            return;
        };
        if !(failure || slow) || word::tag(current) != CLOSED {
            return;
        }
        if let Some(reason) = self.rules.judge(counts) {
            let now = now.unwrap_or_else(|| self.clock.now_nanos());
            self.with_lock(|guard| guard.trip(admitted, reason, now));
        }
    }

    /// A success in closed or disabled: clears the consecutive count, writing only if it is not 0.
    #[inline]
    fn closed_success(&self, admitted: u64) {
        let mut current = self.word.load(Ordering::Relaxed);
        while word::same_generation(current, admitted) && word::count(current) != 0 {
            match self.word.compare_exchange_weak(
                current,
                word::with_count(current, 0),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// A failure in closed or disabled: bumps the consecutive count; the failure that reaches the
    /// threshold takes the lock and opens the circuit.
    fn closed_failure(&self, admitted: u64) {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            if !word::same_generation(current, admitted) {
                return;
            }
            let failures = word::count(current).saturating_add(1).min(word::COUNT_MAX);
            if word::tag(current) == CLOSED && failures >= self.config.failure_threshold {
                let now = self.clock.now_nanos();
                self.with_lock(|guard| guard.fail_closed(admitted, now));
                return;
            }
            match self.word.compare_exchange_weak(
                current,
                word::with_count(current, failures),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    // ===== observation =====

    /// The state now, after applying what time alone decides (a break that ended, a probe that
    /// overran its timeout).
    /// The state the word holds, without applying time-driven transitions (which only move
    /// between open and half-open).
    pub(crate) fn stored_state(&self) -> CircuitState {
        word::state(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn state(&self) -> CircuitState {
        let word = self.word.load(Ordering::Acquire);
        let now = match word::tag(word) {
            OPEN => match self.open_for() {
                Ok(_) => return CircuitState::Open,
                Err(now) => now,
            },
            HALF_OPEN => self.clock.now_nanos(),
            _ => return word::state(word),
        };
        self.with_lock(|guard| {
            guard.tick(now);
            word::state(guard.word())
        })
    }

    pub(crate) fn outlook(&self) -> Outlook {
        if word::admits_freely(self.word.load(Ordering::Acquire)) {
            return Outlook::Admits;
        }
        let now = self.clock.now_nanos();
        self.with_lock(|guard| guard.outlook(now))
    }

    pub(crate) fn metrics(&self) -> CircuitMetrics {
        let now = self.clock.now_nanos();
        let (word, in_flight, entered_at, last_change, last_reason, transitions, break_duration) =
            self.with_lock(|guard| {
                guard.tick(now);
                let history = guard.locked.history.as_deref();
                (
                    guard.word(),
                    guard.locked.probes_in_flight,
                    guard.locked.entered_at,
                    history
                        .and_then(|history| history.recent.back())
                        .map(|last| last.at),
                    history
                        .and_then(|history| history.recent.back())
                        .map(|last| last.reason),
                    history
                        .map(|history| history.transitions)
                        .unwrap_or_default(),
                    guard.locked.break_duration,
                )
            });
        let totals = self.counters.totals();
        let window = self
            .window
            .as_ref()
            .and_then(|window| window.counts(now))
            .map(|counts| WindowMetrics {
                calls: counts.calls,
                failures: counts.failures,
                slow_calls: counts.slow,
            });
        let next_probe_in = (word::tag(word) == OPEN).then(|| {
            Duration::from_nanos(self.open_until.load(Ordering::Relaxed).saturating_sub(now))
        });
        CircuitMetrics {
            name: self.name.clone(),
            state: word::state(word),
            generation: word::generation(word),
            total_calls: totals.successes + totals.failures + totals.ignored + totals.cancelled,
            successful_calls: totals.successes,
            failed_calls: totals.failures,
            timeouts: totals.timeouts,
            ignored_calls: totals.ignored,
            cancelled_calls: totals.cancelled,
            rejected_open: totals.rejected_open,
            rejected_half_open: totals.rejected_half_open,
            consecutive_failures: word::count(word),
            half_open_in_flight: in_flight,
            last_state_change: last_change,
            time_in_state: Duration::from_nanos(now.saturating_sub(entered_at)),
            next_probe_in,
            latency: totals.latency,
            transitions,
            last_transition_reason: last_reason,
            window,
            break_duration,
        }
    }

    // ===== manual control =====

    /// Moves to `to` whatever the state, starting a new generation (counts cleared).
    pub(crate) fn force(&self, to: CircuitState, reason: TransitionReason) {
        let now = self.clock.now_nanos();
        self.with_lock(|guard| guard.transition(guard.word(), word::tag_of(to), reason, now));
    }

    /// Takes another instance's state (see `Guard::adopt`).
    pub(crate) fn adopt(&self, to: CircuitState, open_for: Option<Duration>) -> bool {
        let now = self.clock.now_nanos();
        self.with_lock(|guard| guard.adopt(word::tag_of(to), open_for, now))
    }

    /// Why the breaker last changed state, if it has.
    pub(crate) fn last_reason(&self) -> Option<TransitionReason> {
        lock(&self.locked)
            .history
            .as_ref()
            .and_then(|history| history.recent.back())
            .map(|last| last.reason)
    }

    /// Leaves a manual override for closed; does nothing in the automatic states.
    pub(crate) fn automatic(&self) {
        let now = self.clock.now_nanos();
        self.with_lock(|guard| {
            let current = guard.word();
            if matches!(word::tag(current), ISOLATED | DISABLED) {
                guard.transition(current, CLOSED, TransitionReason::Automatic, now);
            }
        });
    }

    // ===== the lock =====

    fn with_lock<R>(&self, f: impl FnOnce(&mut Guard<'_>) -> R) -> R {
        let (result, panicked) = self.with_lock_caught(f);
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        result
    }

    /// [`with_lock`](Self::with_lock), handing back a panic of a `tracing` subscriber instead of
    /// going on with it, for a caller that must put something right first.
    fn with_lock_caught<R>(
        &self,
        f: impl FnOnce(&mut Guard<'_>) -> R,
    ) -> (R, Option<Box<dyn std::any::Any + Send>>) {
        let mut announce = Announce::default();
        let result = {
            let mut locked = lock(&self.locked);
            f(&mut Guard {
                shared: self,
                locked: &mut locked,
                announce: &mut announce,
            })
        };
        let panicked = if announce.wake || !announce.transitions.is_empty() {
            self.publish(&announce)
        } else {
            None
        };
        (result, panicked)
    }

    /// Tells the world about transitions made under the lock, once it is released: subscribers
    /// and `ready()` waiters first, then a `tracing` event each.
    ///
    /// A `tracing` subscriber is the user's code: if it panics, the state has changed already,
    /// every subscriber and waiter has heard, and the panic is handed back, to go on to the
    /// caller once every event has been tried. While the thread is already unwinding (the call's
    /// own panic dropped its permit, and that ended a probe), a second panic would abort the
    /// process: it is dropped.
    #[cold]
    #[inline(never)]
    fn publish(&self, announce: &Announce) -> Option<Box<dyn std::any::Any + Send>> {
        for transition in &announce.transitions {
            // No subscriber is not an error.
            if let Some(also_to) = &self.also_to {
                let _ = also_to.send(transition.clone());
            }
            if let Some(events) = self.events.get() {
                let _ = events.send(transition.clone());
            }
        }
        self.changed.notify_waiters();
        let mut panicked = None;
        for transition in &announce.transitions {
            let logged = std::panic::catch_unwind(AssertUnwindSafe(|| log(transition)));
            if let Err(payload) = logged {
                panicked.get_or_insert(payload);
            }
        }
        panicked.filter(|_| !std::thread::panicking())
    }
}

/// The `tracing` event of a transition: a warning when the circuit opens.
fn log(transition: &Transition) {
    if transition.to == CircuitState::Open {
        tracing::warn!(
            breaker = %transition.breaker,
            group = transition.group.as_deref(),
            from = %transition.from,
            to = %transition.to,
            reason = %transition.reason,
            generation = transition.generation,
            "circuit breaker opened: {}",
            transition.reason,
        );
    } else {
        tracing::info!(
            breaker = %transition.breaker,
            group = transition.group.as_deref(),
            from = %transition.from,
            to = %transition.to,
            reason = %transition.reason,
            generation = transition.generation,
            "circuit breaker {}: {}",
            transition.to,
            transition.reason,
        );
    }
}

impl Guard<'_> {
    fn word(&self) -> u64 {
        self.shared.word.load(Ordering::Acquire)
    }

    /// Applies what time alone decides: an ended break lets probes in; an overdue probe reopens.
    ///
    /// Each transition is dated from the deadline that made it, not from `now`: the same history
    /// gives the same timeline whenever someone looks. A probe that overran its timeout long ago
    /// reopens the circuit from its deadline, and if that break is over too, half-open follows.
    fn tick(&mut self, now: u64) {
        loop {
            let current = self.word();
            match word::tag(current) {
                OPEN => {
                    let until = self.shared.open_until.load(Ordering::Relaxed);
                    if now < until {
                        return;
                    }
                    let reason = TransitionReason::BreakElapsed {
                        break_duration: self.locked.break_duration,
                    };
                    self.transition_dated(current, HALF_OPEN, reason, until, now - until, None);
                }
                HALF_OPEN => {
                    let Some(deadline) = self.earliest_probe_deadline() else {
                        return;
                    };
                    if now < deadline {
                        return;
                    }
                    self.shared.counters.add(Count::ProbeTimeout);
                    let reason = TransitionReason::ProbeTimedOut {
                        timeout: self.shared.config.half_open_timeout,
                    };
                    // Probes empty on this transition, so the loop ends after at most one more.
                    self.transition_dated(current, OPEN, reason, deadline, now - deadline, None);
                }
                _ => return,
            }
        }
    }

    fn earliest_probe_deadline(&self) -> Option<u64> {
        let timeout = self.shared.half_open_timeout_nanos;
        self.locked
            .probes
            .iter()
            .flatten()
            .map(|started| started.saturating_add(timeout))
            .min()
    }

    /// What the state allows now, after what time alone decides: the one reading of the state
    /// that admission, `peek` and `ready` share.
    fn verdict(&mut self, now: u64) -> Verdict {
        self.tick(now);
        let current = self.word();
        match word::tag(current) {
            CLOSED | DISABLED => Verdict::Admit(current),
            OPEN => Verdict::Open(Some(self.shared.open_until.load(Ordering::Relaxed))),
            ISOLATED => Verdict::Open(None),
            _ if self.locked.probes_in_flight < self.shared.config.half_open_max_calls => {
                Verdict::Probe(current)
            }
            _ => Verdict::Full,
        }
    }

    fn admit(&mut self, now: u64) -> Result<Ticket, Rejection> {
        match self.verdict(now) {
            Verdict::Admit(current) => {
                let sampled = self.shared.counters.enter(self.shared.sampling);
                let timed = sampled || self.shared.time_every_call;
                Ok(Ticket::closed(current, timed.then_some(now)))
            }
            Verdict::Probe(current) => {
                let free = self.locked.probes.iter().position(Option::is_none);
                match free {
                    Some(slot) => {
                        self.locked.probes[slot] = Some(now);
                        self.locked.probes_in_flight += 1;
                        // Slots are fewer than MAX_HALF_OPEN_CALLS, which fits in 16 bits.
                        let slot = u16::try_from(slot).unwrap_or(u16::MAX);
                        Ok(Ticket::new(current, PROBE, slot, now))
                    }
                    None => Err(self.shared.reject_half_open()),
                }
            }
            Verdict::Open(until) => Err(self.shared.reject_open(retry_after(until, now))),
            Verdict::Full => Err(self.shared.reject_half_open()),
        }
    }

    fn outlook(&mut self, now: u64) -> Outlook {
        match self.verdict(now) {
            Verdict::Admit(_) | Verdict::Probe(_) => Outlook::Admits,
            Verdict::Open(until) => Outlook::WaitUntil(until),
            Verdict::Full => Outlook::WaitUntil(self.earliest_probe_deadline()),
        }
    }

    /// The failure that reached the threshold, re-checked under the lock: a success or a
    /// transition may have come first.
    fn fail_closed(&mut self, admitted: u64, now: u64) {
        let mut current = self.word();
        loop {
            if !word::same_generation(current, admitted) {
                return;
            }
            let failures = word::count(current).saturating_add(1).min(word::COUNT_MAX);
            if failures >= self.shared.config.failure_threshold && self.may_trip(now) {
                let reason = TransitionReason::ConsecutiveFailures { failures };
                self.transition(current, OPEN, reason, now);
                return;
            }
            match self.shared.word.compare_exchange_weak(
                current,
                word::with_count(current, failures),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// A rate rule fired for a call admitted in `admitted`: open, if that is still the closed
    /// generation.
    fn trip(&mut self, admitted: u64, reason: TransitionReason, now: u64) {
        let current = self.word();
        if word::same_generation(current, admitted)
            && word::tag(current) == CLOSED
            && self.may_trip(now)
        {
            self.transition(current, OPEN, reason, now);
        }
    }

    /// Whether the closed state is old enough to be left (`min_transition_interval`).
    fn may_trip(&self, now: u64) -> bool {
        let interval = duration_nanos(self.shared.config.min_transition_interval);
        now.saturating_sub(self.locked.entered_at) >= interval
    }

    /// The next break: `break_duration`, grown by the backoff for each reopen from half-open.
    fn next_break(&mut self, from: u64) -> Duration {
        let config = &self.shared.config;
        self.locked.reopens = if word::tag(from) == HALF_OPEN {
            self.locked.reopens.saturating_add(1)
        } else {
            0
        };
        let Some(backoff) = &config.break_backoff else {
            return config.break_duration;
        };
        let exponent = i32::try_from(self.locked.reopens).unwrap_or(i32::MAX);
        let max = backoff.max_duration.as_secs_f64();
        let grown =
            (config.break_duration.as_secs_f64() * backoff.multiplier.powi(exponent)).min(max);
        // Capped after the jitter: `max_duration` is the longest break there is.
        let jittered = (grown * (1.0 + backoff.jitter * (2.0 * fastrand::f64() - 1.0))).min(max);
        Duration::try_from_secs_f64(jittered).unwrap_or(backoff.max_duration)
    }

    fn finish_probe(&mut self, ended: ProbeEnd, now: u64) {
        // A probe that ends after its timeout has timed out, whether or not anyone noticed.
        self.tick(now);
        let current = self.word();
        // The slot must still be this probe's: a transition empties every slot, and a ticket
        // from long ago must not free a slot another probe holds.
        let held = self.locked.probes.get_mut(ended.slot as usize);
        match held {
            Some(held)
                if word::same_generation(current, ended.admitted)
                    && *held == Some(ended.started) =>
            {
                *held = None;
                self.locked.probes_in_flight = self.locked.probes_in_flight.saturating_sub(1);
            }
            _ => return,
        }
        match ended.effect {
            Effect::Success => {
                self.locked.half_open_successes += 1;
                let successes = self.locked.half_open_successes;
                if successes >= self.shared.config.success_threshold {
                    let reason = TransitionReason::ProbesSucceeded { successes };
                    self.transition(current, CLOSED, reason, now);
                } else {
                    self.announce.wake = true;
                }
            }
            Effect::Failure => {
                let reason = match ended.count {
                    Count::TimeoutFailure => TransitionReason::ProbeTimeout,
                    Count::Cancelled => TransitionReason::ProbeCancelled,
                    _ => TransitionReason::ProbeFailed,
                };
                self.transition(current, OPEN, reason, now);
            }
            Effect::Neutral => self.announce.wake = true,
        }
    }

    /// Moves from the state in `from` to `to`, starting a new generation. Returning to the same
    /// state (a reset of a closed breaker) clears the counts but announces nothing.
    fn transition(&mut self, from: u64, to: u64, reason: TransitionReason, now: u64) {
        self.transition_dated(from, to, reason, now, 0, None);
    }

    /// Takes the state `to` another instance moved to (through the shared state store), with a
    /// break of `open_for` if it is open: a new generation, counts cleared, whatever the state.
    /// Already in `to`, it changes no generation: an open breaker's break is set to end when the
    /// other instance's does. Returns whether there was a transition.
    fn adopt(&mut self, to: u64, open_for: Option<Duration>, now: u64) -> bool {
        let current = self.word();
        if word::tag(current) != to {
            self.transition_dated(current, to, TransitionReason::Shared, now, 0, open_for);
            return true;
        }
        if let (OPEN, Some(open_for)) = (to, open_for) {
            self.locked.break_duration = open_for;
            self.set_open_until(now.saturating_add(duration_nanos(open_for)));
            self.announce.wake = true;
        }
        false
    }

    fn set_open_until(&self, until: u64) {
        self.shared.open_until.store(until, Ordering::Relaxed);
        self.shared
            .open_gate
            .store(self.shared.clock.coarse_deadline(until), Ordering::Relaxed);
    }

    /// A transition dated `now` (clock nanoseconds) that is made `late` nanoseconds after it:
    /// its wall-clock time is set back as far. A transition to open breaks for `pause` if given
    /// (another instance's break), else for the next break the config gives.
    fn transition_dated(
        &mut self,
        from: u64,
        to: u64,
        reason: TransitionReason,
        now: u64,
        late: u64,
        pause: Option<Duration>,
    ) {
        let generation = word::next_generation(from);
        let open_for = (to == OPEN).then(|| {
            let pause = pause.unwrap_or_else(|| self.next_break(from));
            self.locked.break_duration = pause;
            self.set_open_until(now.saturating_add(duration_nanos(pause)));
            pause
        });
        if to == CLOSED {
            self.locked.reopens = 0;
            // Before the new word is published: no call of the new generation is recorded yet.
            if let Some(window) = &self.shared.window {
                window.clear(now);
            }
        }
        self.locked.probes.fill(None);
        self.locked.probes_in_flight = 0;
        self.locked.half_open_successes = 0;
        self.locked.entered_at = now;
        // A swap, not a store: CAS loops outside the lock race this write, and loom orders a
        // plain store against a concurrent RMW wrongly (tokio-rs/loom#254). Same cost here.
        self.shared
            .word
            .swap(word::pack(generation, to, 0), Ordering::AcqRel);

        let (from, to) = (word::state(from), word::state(to));
        if from == to {
            return;
        }
        let at = SystemTime::now()
            .checked_sub(Duration::from_nanos(late))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let history = self.locked.history.get_or_insert_with(Box::default);
        history.transitions.bump(from, to);
        let transition = Transition {
            breaker: self.shared.name.clone(),
            group: self.shared.group.clone(),
            from,
            to,
            reason,
            generation,
            at,
            open_for,
        };
        let kept = history.recent.len();
        if kept == RECENT_TRANSITIONS {
            history.recent.pop_front();
        } else if kept == history.recent.capacity() {
            // Grow 4, 8, then the last ten exactly (not 16).
            history
                .recent
                .reserve_exact((kept * 2).clamp(4, RECENT_TRANSITIONS) - kept);
        }
        history.recent.push_back(transition.clone());
        self.announce.transitions.push(transition);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{CircuitBreaker, ManualClock};

    /// Sets the word's generation as if `2^37` transitions (or a multiple) had passed since
    /// `of`'s: the generation comes back to the same value.
    fn wrap_back_to(breaker: &CircuitBreaker, of: u64) {
        let shared = &breaker.shared;
        let current = shared.word.load(Ordering::Acquire);
        let aliased = word::pack(
            word::generation(of),
            word::tag(current),
            word::count(current),
        );
        shared.word.store(aliased, Ordering::Release);
    }

    #[test]
    fn a_stale_probe_whose_generation_wrapped_frees_no_slot_it_does_not_hold() {
        let time = ManualClock::new();
        let config = CircuitBreakerConfig::default()
            .failure_threshold(1)
            .success_threshold(1)
            .half_open_max_calls(1)
            .break_duration(Duration::from_secs(1));
        let breaker = CircuitBreaker::builder("ledger")
            .config(config)
            .clock(Clock::manual(&time))
            .build()
            .unwrap();
        let trip = || breaker.try_acquire().unwrap().failure();
        trip();
        time.advance(Duration::from_secs(1));
        let stale = breaker.try_acquire_owned().unwrap();
        assert!(stale.is_probe());
        let stale_word = word::pack(stale.generation(), HALF_OPEN, 0);

        // Later generations: a reset, another trip, half-open again; then transitions enough to
        // bring the generation round to the stale probe's, and a probe of its own in slot 0.
        breaker.reset();
        trip();
        time.advance(Duration::from_millis(1_500));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        wrap_back_to(&breaker, stale_word);
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert_eq!(probe.generation(), stale.generation());

        // The stale probe's slot is another probe's now: ending it frees nothing.
        drop(stale);
        let metrics = breaker.metrics();
        assert_eq!(metrics.half_open_in_flight, 1);
        assert_eq!(metrics.state, CircuitState::HalfOpen);
        assert!(breaker.try_acquire().is_err(), "the one slot is still held");

        // The probe that holds the slot closes the circuit, and nothing is left stuck.
        probe.success();
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, CircuitState::Closed);
        assert_eq!(metrics.half_open_in_flight, 0);
        breaker.try_acquire().unwrap().success();
    }
}
