//! The state machine shared by every handle of one breaker.
//!
//! Closed (and disabled) calls are admitted with one atomic load of the state word and recorded
//! with one relaxed add to this thread's counter stripe; a failure also compare-and-swaps the
//! consecutive count in the word. Everything else (open past its break, half-open probes,
//! transitions, manual overrides) happens under one mutex, where the rules are easy to check.
//! Transitions are announced (tracing event, subscribers, `ready()` waiters) after the lock is
//! released.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, Notify};

use super::counters::{sample_this_call, Count, Counters};
use super::word::{self, CLOSED, DISABLED, HALF_OPEN, ISOLATED, OPEN};
use crate::clock::{duration_nanos, Clock};
use crate::config::CancelledCalls;
use crate::metrics::{CircuitMetrics, TransitionCounts};
use crate::sync::{lock, AtomicU64, Mutex, Ordering};
use crate::{
    CircuitBreakerConfig, CircuitOpen, CircuitState, HalfOpenFull, Outcome, Rejection, Transition,
    TransitionReason,
};

/// How many transitions a slow subscriber may fall behind before it sees `Lagged`.
const EVENT_CAPACITY: usize = 64;

/// What an admitted call carries until it is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The state word when the call was admitted: its generation and state.
    word: u64,
    /// When the call started, if it is timed.
    started: Option<u64>,
    /// The half-open probe slot it holds, if it is a probe.
    probe: Option<u32>,
}

impl Ticket {
    pub(crate) fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    pub(crate) fn generation(&self) -> u64 {
        word::generation(self.word)
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
    pub(crate) name: Arc<str>,
    pub(crate) config: CircuitBreakerConfig,
    pub(crate) clock: Clock,
    counters: Counters,
    locked: Mutex<Locked>,
    /// Woken on every transition and whenever a probe slot frees up.
    pub(crate) changed: Notify,
    events: broadcast::Sender<Transition>,
    break_nanos: u64,
    half_open_timeout_nanos: u64,
}

/// The state only touched under the lock.
struct Locked {
    half_open_successes: u32,
    /// Start time of the probe in each slot.
    probes: Box<[Option<u64>]>,
    probes_in_flight: u32,
    entered_at: u64,
    last_change: Option<SystemTime>,
    transitions: TransitionCounts,
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
    pub(crate) fn new(name: Arc<str>, config: CircuitBreakerConfig, clock: Clock) -> Self {
        let slots = config.half_open_max_calls as usize;
        Self {
            word: AtomicU64::new(word::pack(0, CLOSED, 0)),
            open_until: AtomicU64::new(0),
            break_nanos: duration_nanos(config.break_duration),
            half_open_timeout_nanos: duration_nanos(config.half_open_timeout),
            counters: Counters::new(),
            locked: Mutex::new(Locked {
                half_open_successes: 0,
                probes: vec![None; slots].into_boxed_slice(),
                probes_in_flight: 0,
                entered_at: clock.now_nanos(),
                last_change: None,
                transitions: TransitionCounts::default(),
            }),
            changed: Notify::new(),
            events: broadcast::channel(EVENT_CAPACITY).0,
            name,
            config,
            clock,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events.subscribe()
    }

    /// Approximate heap and inline bytes of one breaker, for the docs.
    pub(crate) fn size_in_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.counters.size_in_bytes()
            + self.config.half_open_max_calls as usize * std::mem::size_of::<Option<u64>>()
            + self.name.len()
    }

    // ===== admission =====

    #[inline]
    pub(crate) fn admit(&self) -> Result<Ticket, Rejection> {
        let word = self.word.load(Ordering::Acquire);
        if word::admits_freely(word) {
            let started =
                sample_this_call(self.config.latency_sample_every).then(|| self.clock.now_nanos());
            return Ok(Ticket {
                word,
                started,
                probe: None,
            });
        }
        self.admit_slow(word)
    }

    #[cold]
    fn admit_slow(&self, word: u64) -> Result<Ticket, Rejection> {
        match word::tag(word) {
            ISOLATED => return Err(self.reject_open(None)),
            OPEN => {
                let until = self.open_until.load(Ordering::Relaxed);
                let now = self.clock.now_nanos();
                if now < until {
                    return Err(self.reject_open(Some(until - now)));
                }
            }
            _ => {}
        }
        let now = self.clock.now_nanos();
        self.with_lock(|guard| guard.admit(now))
    }

    fn reject_open(&self, retry_after: Option<u64>) -> Rejection {
        self.counters.add(Count::RejectedOpen);
        Rejection::Open(CircuitOpen::new(
            self.name.clone(),
            retry_after.map(Duration::from_nanos),
        ))
    }

    fn reject_half_open(&self) -> Rejection {
        self.counters.add(Count::RejectedHalfOpen);
        Rejection::HalfOpenFull(HalfOpenFull::new(self.name.clone()))
    }

    // ===== recording =====

    pub(crate) fn record(&self, ticket: Ticket, ending: Ending) {
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
        self.counters.add(count);

        let timed = ticket.started.is_some() || ticket.probe.is_some();
        let now = if timed { self.clock.now_nanos() } else { 0 };
        if let (Some(started), Ending::Finished(_)) = (ticket.started, ending) {
            self.counters
                .add_latency(Duration::from_nanos(now.saturating_sub(started)));
        }

        if let Some(slot) = ticket.probe {
            self.with_lock(|guard| guard.finish_probe(ticket.word, slot, effect, now));
            return;
        }
        match effect {
            Effect::Success => self.closed_success(ticket.word),
            Effect::Failure => self.closed_failure(ticket.word),
            Effect::Neutral => {}
        }
    }

    /// A success in closed or disabled: clears the consecutive count, writing only if it is not 0.
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
    pub(crate) fn state(&self) -> CircuitState {
        let word = self.word.load(Ordering::Acquire);
        match word::tag(word) {
            OPEN if self.clock.now_nanos() < self.open_until.load(Ordering::Relaxed) => {
                CircuitState::Open
            }
            OPEN | HALF_OPEN => {
                let now = self.clock.now_nanos();
                self.with_lock(|guard| {
                    guard.tick(now);
                    word::state(guard.word())
                })
            }
            _ => word::state(word),
        }
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
        let (word, in_flight, entered_at, last_change, transitions) = self.with_lock(|guard| {
            guard.tick(now);
            (
                guard.word(),
                guard.locked.probes_in_flight,
                guard.locked.entered_at,
                guard.locked.last_change,
                guard.locked.transitions,
            )
        });
        let totals = self.counters.totals();
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
        }
    }

    // ===== manual control =====

    /// Moves to `to` whatever the state, starting a new generation (counts cleared).
    pub(crate) fn force(&self, to: CircuitState, reason: TransitionReason) {
        let now = self.clock.now_nanos();
        self.with_lock(|guard| guard.transition(guard.word(), word::tag_of(to), reason, now));
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
        let mut announce = Announce::default();
        let result = {
            let mut locked = lock(&self.locked);
            f(&mut Guard {
                shared: self,
                locked: &mut locked,
                announce: &mut announce,
            })
        };
        for transition in announce.transitions.drain(..) {
            self.announce(transition);
            announce.wake = true;
        }
        if announce.wake {
            self.changed.notify_waiters();
        }
        result
    }

    fn announce(&self, transition: Transition) {
        if transition.to == CircuitState::Open {
            tracing::warn!(
                breaker = %transition.breaker,
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
                from = %transition.from,
                to = %transition.to,
                reason = %transition.reason,
                generation = transition.generation,
                "circuit breaker {}: {}",
                transition.to,
                transition.reason,
            );
        }
        // No subscriber is not an error.
        let _ = self.events.send(transition);
    }
}

impl Guard<'_> {
    fn word(&self) -> u64 {
        self.shared.word.load(Ordering::Acquire)
    }

    /// Applies what time alone decides: an ended break lets probes in; an overdue probe reopens.
    fn tick(&mut self, now: u64) {
        let current = self.word();
        match word::tag(current) {
            OPEN if now >= self.shared.open_until.load(Ordering::Relaxed) => {
                let reason = TransitionReason::BreakElapsed {
                    break_duration: self.shared.config.break_duration,
                };
                self.transition(current, HALF_OPEN, reason, now);
            }
            HALF_OPEN
                if self
                    .earliest_probe_deadline()
                    .is_some_and(|deadline| now >= deadline) =>
            {
                self.shared.counters.add(Count::ProbeTimeout);
                let reason = TransitionReason::ProbeTimedOut {
                    timeout: self.shared.config.half_open_timeout,
                };
                self.transition(current, OPEN, reason, now);
            }
            _ => {}
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

    fn admit(&mut self, now: u64) -> Result<Ticket, Rejection> {
        self.tick(now);
        let current = self.word();
        match word::tag(current) {
            CLOSED | DISABLED => Ok(Ticket {
                word: current,
                started: sample_this_call(self.shared.config.latency_sample_every).then_some(now),
                probe: None,
            }),
            OPEN => {
                let until = self.shared.open_until.load(Ordering::Relaxed);
                Err(self.shared.reject_open(Some(until.saturating_sub(now))))
            }
            ISOLATED => Err(self.shared.reject_open(None)),
            _ => {
                let free = self.locked.probes.iter().position(Option::is_none);
                match free {
                    Some(slot) => {
                        self.locked.probes[slot] = Some(now);
                        self.locked.probes_in_flight += 1;
                        Ok(Ticket {
                            word: current,
                            started: Some(now),
                            // Slots are at most MAX_HALF_OPEN_CALLS.
                            probe: u32::try_from(slot).ok(),
                        })
                    }
                    None => Err(self.shared.reject_half_open()),
                }
            }
        }
    }

    fn outlook(&mut self, now: u64) -> Outlook {
        self.tick(now);
        match word::tag(self.word()) {
            CLOSED | DISABLED => Outlook::Admits,
            OPEN => Outlook::WaitUntil(Some(self.shared.open_until.load(Ordering::Relaxed))),
            ISOLATED => Outlook::WaitUntil(None),
            _ if self.locked.probes_in_flight < self.shared.config.half_open_max_calls => {
                Outlook::Admits
            }
            _ => Outlook::WaitUntil(self.earliest_probe_deadline()),
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
            if failures >= self.shared.config.failure_threshold {
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

    fn finish_probe(&mut self, admitted: u64, slot: u32, effect: Effect, now: u64) {
        // A probe that ends after its timeout has timed out, whether or not anyone noticed.
        self.tick(now);
        let current = self.word();
        if !word::same_generation(current, admitted) {
            return;
        }
        self.locked.probes[slot as usize] = None;
        self.locked.probes_in_flight -= 1;
        match effect {
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
            Effect::Failure => self.transition(current, OPEN, TransitionReason::ProbeFailed, now),
            Effect::Neutral => self.announce.wake = true,
        }
    }

    /// Moves from the state in `from` to `to`, starting a new generation. Returning to the same
    /// state (a reset of a closed breaker) clears the counts but announces nothing.
    fn transition(&mut self, from: u64, to: u64, reason: TransitionReason, now: u64) {
        let generation = word::next_generation(from);
        if to == OPEN {
            self.shared.open_until.store(
                now.saturating_add(self.shared.break_nanos),
                Ordering::Relaxed,
            );
        }
        self.locked.probes.fill(None);
        self.locked.probes_in_flight = 0;
        self.locked.half_open_successes = 0;
        self.locked.entered_at = now;
        self.shared
            .word
            .store(word::pack(generation, to, 0), Ordering::Release);

        let (from, to) = (word::state(from), word::state(to));
        if from == to {
            return;
        }
        let at = SystemTime::now();
        self.locked.last_change = Some(at);
        self.locked.transitions.bump(to);
        self.announce.transitions.push(Transition {
            breaker: self.shared.name.clone(),
            from,
            to,
            reason,
            generation,
            at,
        });
    }
}
