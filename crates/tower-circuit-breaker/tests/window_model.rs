//! Model test of the sliding windows and the rate rules: random sequences of calls, clock moves
//! and overrides, with the window's figures and the trip decisions checked step by step against
//! a naive reference that keeps every recorded outcome in a list and counts it out afresh.
//!
//! The reference knows nothing of rings, running totals or bucket starts: a count window is "the
//! last N entries of the list", a time window is "the entries whose bucket, `time / width`, is
//! one of the last B up to now's". The list is emptied whenever the circuit enters Closed. If the
//! engine and the reference disagree, proptest shrinks the sequence to the shortest that shows it.
//!
//! The clock moves are biased to the edges where window arithmetic goes wrong: exactly one bucket
//! width (or the whole span, or the slow-call duration) and a millisecond either side, and the
//! next bucket boundary and a nanosecond either side.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::broadcast;
use tower_circuit_breaker::{
    CancelledCalls, CircuitBreaker, CircuitBreakerConfig, CircuitMetrics, CircuitState, Clock,
    FailureRateRule, ManualClock, OwnedPermit, Rejection, SlidingWindow, SlowCallRule, Transition,
    TransitionReason,
};

const MILLI: u64 = 1_000_000;

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).expect("test durations fit in u64 nanoseconds")
}

// ===== operations =====

/// One thing the test does to the breaker.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A whole call: acquire a permit, move the clock, end the call. A rejected call only moves
    /// the clock.
    Call {
        advance: Advance,
        ending: Ending,
    },
    /// Acquires a permit and holds it (so calls overlap, and outlive transitions).
    Acquire,
    /// Ends the held permit at `index % held.len()`, if any is held.
    End {
        index: usize,
        ending: Ending,
    },
    /// Moves the clock.
    Advance(Advance),
    Reset,
    Disable,
    Isolate,
    Automatic,
}

/// How a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Success,
    Failure,
    Timeout,
    Ignored,
    /// Dropped unrecorded: a cancelled call.
    Dropped,
}

/// How far to move the clock.
#[derive(Debug, Clone, Copy)]
enum Advance {
    Millis(u64),
    /// One bucket width plus `offset_ms` (a count window uses a nominal 250 ms).
    BucketWidth {
        offset_ms: i8,
    },
    /// The time window's whole span (a count window: 1 s) plus `offset_ms`.
    Span {
        offset_ms: i8,
    },
    /// The slow-call duration (or 300 ms without the rule) plus `offset_ms`.
    SlowDuration {
        offset_ms: i8,
    },
    /// To the start of the next bucket plus `offset_ns`.
    NextBucket {
        offset_ns: i8,
    },
    /// To the end of the break plus `offset_ms`, if the circuit is open; else no move.
    BreakEnd {
        offset_ms: i8,
    },
}

fn offset(base: u64, offset_ms: i8) -> u64 {
    let delta = u64::from(offset_ms.unsigned_abs()) * MILLI;
    if offset_ms < 0 {
        base.saturating_sub(delta)
    } else {
        base + delta
    }
}

/// What `try_acquire_owned` answered, reduced to what the rules decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admitted { probe: bool, generation: u64 },
    RejectedOpen,
    RejectedHalfOpenFull,
}

/// A permit as the reference knows it.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    id: u64,
    generation: u64,
    probe: bool,
    started: u64,
}

/// What an ending does to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Success,
    Failure,
    Neutral,
}

/// What a window holds (`WindowMetrics` is non-exhaustive, so the test has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Figures {
    calls: u64,
    failures: u64,
    slow_calls: u64,
}

/// A transition as announced to subscribers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Announced {
    from: CircuitState,
    to: CircuitState,
    reason: TransitionReason,
    generation: u64,
}

/// The parts of a metrics snapshot this test is about.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Observed {
    state: CircuitState,
    generation: u64,
    consecutive_failures: u32,
    window: Option<Figures>,
    last_transition_reason: Option<TransitionReason>,
}

impl Observed {
    fn from_metrics(metrics: &CircuitMetrics) -> Self {
        Self {
            state: metrics.state,
            generation: metrics.generation,
            consecutive_failures: metrics.consecutive_failures,
            window: metrics.window.map(|window| Figures {
                calls: window.calls,
                failures: window.failures,
                slow_calls: window.slow_calls,
            }),
            last_transition_reason: metrics.last_transition_reason,
        }
    }
}

// ===== the reference =====

/// One outcome that went into the window.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    /// Clock nanoseconds when it was recorded.
    at: u64,
    failure: bool,
    slow: bool,
}

/// The rules, written plainly.
#[derive(Debug)]
struct Model {
    config: CircuitBreakerConfig,
    /// The window the rate rules share, and the calls it must hold before they judge.
    window: Option<(SlidingWindow, u32)>,
    now: u64,
    state: CircuitState,
    generation: u64,
    consecutive_failures: u32,
    half_open_successes: u32,
    /// Probes in flight in this generation: permit id to start time.
    probes: BTreeMap<u64, u64>,
    open_until: u64,
    last_reason: Option<TransitionReason>,
    /// Every outcome recorded in the window since it was last cleared, oldest first.
    log: Vec<Recorded>,
    announced: Vec<Announced>,
    next_id: u64,
}

impl Model {
    fn new(config: CircuitBreakerConfig) -> Self {
        let window = match (&config.failure_rate, &config.slow_call) {
            (Some(rule), _) => Some((rule.window, rule.minimum_throughput)),
            (None, Some(rule)) => Some((
                rule.window.unwrap_or(SlidingWindow::Calls(100)),
                rule.minimum_throughput.unwrap_or(20),
            )),
            (None, None) => None,
        };
        Self {
            config,
            window,
            now: 0,
            state: CircuitState::Closed,
            generation: 0,
            consecutive_failures: 0,
            half_open_successes: 0,
            probes: BTreeMap::new(),
            open_until: 0,
            last_reason: None,
            log: Vec::new(),
            announced: Vec::new(),
            next_id: 0,
        }
    }

    /// A time window's bucket width, `duration / buckets` in whole nanoseconds.
    fn bucket_width(&self) -> Option<u64> {
        match self.window {
            Some((SlidingWindow::Time { duration, buckets }, _)) => {
                Some(nanos(duration) / u64::from(buckets))
            }
            _ => None,
        }
    }

    /// What the window holds at `self.now`, counted from the log.
    fn figures(&self) -> Option<Figures> {
        let (window, _) = self.window?;
        let held: Vec<&Recorded> = match window {
            SlidingWindow::Calls(size) => self.log.iter().rev().take(size as usize).collect(),
            SlidingWindow::Time { buckets, .. } => {
                let width = self.bucket_width().expect("a time window has a width");
                let current = self.now / width;
                // Buckets current - B + 1 ..= current.
                self.log
                    .iter()
                    .filter(|entry| entry.at / width + u64::from(buckets) > current)
                    .collect()
            }
        };
        Some(Figures {
            calls: held.len() as u64,
            failures: held.iter().filter(|entry| entry.failure).count() as u64,
            slow_calls: held.iter().filter(|entry| entry.slow).count() as u64,
        })
    }

    /// Which rate rule fires on the window now, if any: the failure rate first.
    #[allow(clippy::cast_precision_loss)]
    fn judge(&self) -> Option<TransitionReason> {
        let (window, minimum) = self.window?;
        let figures = self.figures()?;
        if figures.calls == 0 || figures.calls < u64::from(minimum) {
            return None;
        }
        let span = match window {
            SlidingWindow::Time { duration, .. } => Some(duration),
            SlidingWindow::Calls(_) => None,
        };
        let calls = figures.calls as f64;
        if let Some(rule) = &self.config.failure_rate {
            let rate = figures.failures as f64 / calls;
            if rate >= rule.threshold {
                return Some(TransitionReason::FailureRate {
                    rate,
                    threshold: rule.threshold,
                    calls: figures.calls,
                    window: span,
                });
            }
        }
        if let Some(rule) = &self.config.slow_call {
            let rate = figures.slow_calls as f64 / calls;
            if rate >= rule.threshold {
                return Some(TransitionReason::SlowCallRate {
                    rate,
                    threshold: rule.threshold,
                    calls: figures.calls,
                    window: span,
                });
            }
        }
        None
    }

    /// Every transition (and every forced move, even into the same state) starts a generation;
    /// entering Closed empties the window; only a real change of state is announced.
    fn transition(&mut self, to: CircuitState, reason: TransitionReason) {
        self.transition_at(to, reason, self.now);
    }

    /// A transition dated `at`: what time alone decides is dated from the deadline that decided it.
    fn transition_at(&mut self, to: CircuitState, reason: TransitionReason, at: u64) {
        self.generation = (self.generation + 1) & ((1 << 37) - 1);
        if to == CircuitState::Open {
            self.open_until = at + nanos(self.config.break_duration);
        }
        if to == CircuitState::Closed {
            self.log.clear();
        }
        self.consecutive_failures = 0;
        self.half_open_successes = 0;
        self.probes.clear();
        if to != self.state {
            self.last_reason = Some(reason);
            self.announced.push(Announced {
                from: self.state,
                to,
                reason,
                generation: self.generation,
            });
        }
        self.state = to;
    }

    /// What time alone decides, each step dated from its deadline: an ended break lets probes
    /// in; an overdue probe reopens (and that break may be over too).
    fn tick(&mut self) {
        let timeout = nanos(self.config.half_open_timeout);
        loop {
            match self.state {
                CircuitState::Open if self.now >= self.open_until => {
                    let break_duration = self.config.break_duration;
                    self.transition_at(
                        CircuitState::HalfOpen,
                        TransitionReason::BreakElapsed { break_duration },
                        self.open_until,
                    );
                }
                CircuitState::HalfOpen => {
                    let Some(deadline) =
                        self.probes.values().map(|started| started + timeout).min()
                    else {
                        return;
                    };
                    if self.now < deadline {
                        return;
                    }
                    let timeout = self.config.half_open_timeout;
                    self.transition_at(
                        CircuitState::Open,
                        TransitionReason::ProbeTimedOut { timeout },
                        deadline,
                    );
                }
                _ => return,
            }
        }
    }

    fn acquire(&mut self) -> (Admission, Option<Ticket>) {
        if matches!(self.state, CircuitState::Open | CircuitState::HalfOpen) {
            self.tick();
        }
        let probe = match self.state {
            CircuitState::Closed | CircuitState::Disabled => false,
            CircuitState::Open | CircuitState::Isolated => return (Admission::RejectedOpen, None),
            CircuitState::HalfOpen => {
                if self.probes.len() >= self.config.half_open_max_calls as usize {
                    return (Admission::RejectedHalfOpenFull, None);
                }
                true
            }
        };
        let ticket = Ticket {
            id: self.next_id,
            generation: self.generation,
            probe,
            started: self.now,
        };
        self.next_id += 1;
        if probe {
            self.probes.insert(ticket.id, self.now);
        }
        let admission = Admission::Admitted {
            probe,
            generation: self.generation,
        };
        (admission, Some(ticket))
    }

    fn finish(&mut self, ticket: Ticket, ending: Ending) {
        let effect = match ending {
            Ending::Success => Effect::Success,
            Ending::Failure | Ending::Timeout => Effect::Failure,
            Ending::Ignored => Effect::Neutral,
            Ending::Dropped => match self.config.cancelled_calls {
                CancelledCalls::Ignored => Effect::Neutral,
                CancelledCalls::Failure => Effect::Failure,
            },
        };

        if ticket.probe {
            // Probes are not in the window.
            self.tick();
            if self.generation != ticket.generation {
                return;
            }
            self.probes.remove(&ticket.id);
            match effect {
                Effect::Success => {
                    self.half_open_successes += 1;
                    let successes = self.half_open_successes;
                    if successes >= self.config.success_threshold {
                        self.transition(
                            CircuitState::Closed,
                            TransitionReason::ProbesSucceeded { successes },
                        );
                    }
                }
                Effect::Failure => {
                    let reason = match ending {
                        Ending::Timeout => TransitionReason::ProbeTimeout,
                        Ending::Dropped => TransitionReason::ProbeCancelled,
                        _ => TransitionReason::ProbeFailed,
                    };
                    self.transition(CircuitState::Open, reason);
                }
                Effect::Neutral => {}
            }
            return;
        }

        // Only a call of the current generation (admitted closed or disabled) counts.
        if self.generation != ticket.generation {
            return;
        }
        let failure = match effect {
            Effect::Success => {
                self.consecutive_failures = 0;
                false
            }
            Effect::Failure => {
                self.consecutive_failures += 1;
                let failures = self.consecutive_failures;
                // The consecutive rule first: if it opens the circuit, the failure belongs to a
                // generation that is over and does not reach the window.
                if self.state == CircuitState::Closed && failures >= self.config.failure_threshold {
                    self.transition(
                        CircuitState::Open,
                        TransitionReason::ConsecutiveFailures { failures },
                    );
                    return;
                }
                true
            }
            // Ignored and cancelled calls are not in the window.
            Effect::Neutral => return,
        };
        if self.window.is_none() {
            return;
        }
        let slow = self
            .config
            .slow_call
            .as_ref()
            .is_some_and(|rule| self.now - ticket.started >= nanos(rule.duration));
        self.log.push(Recorded {
            at: self.now,
            failure,
            slow,
        });
        if (failure || slow) && self.state == CircuitState::Closed {
            if let Some(reason) = self.judge() {
                self.transition(CircuitState::Open, reason);
            }
        }
    }

    fn automatic(&mut self) {
        if matches!(self.state, CircuitState::Isolated | CircuitState::Disabled) {
            self.transition(CircuitState::Closed, TransitionReason::Automatic);
        }
    }

    fn state(&mut self) -> CircuitState {
        self.tick();
        self.state
    }

    fn observe(&mut self) -> Observed {
        self.tick();
        Observed {
            state: self.state,
            generation: self.generation,
            consecutive_failures: self.consecutive_failures,
            window: self.figures(),
            last_transition_reason: self.last_reason,
        }
    }

    /// How far `advance` moves the clock from here, in nanoseconds.
    fn step_for(&self, advance: Advance) -> u64 {
        let width = self.bucket_width().unwrap_or(250 * MILLI);
        match advance {
            Advance::Millis(millis) => millis * MILLI,
            Advance::BucketWidth { offset_ms } => offset(width, offset_ms),
            Advance::Span { offset_ms } => {
                let span = match self.window {
                    Some((SlidingWindow::Time { duration, .. }, _)) => nanos(duration),
                    _ => 1_000 * MILLI,
                };
                offset(span, offset_ms)
            }
            Advance::SlowDuration { offset_ms } => {
                let slow = self
                    .config
                    .slow_call
                    .as_ref()
                    .map_or(300 * MILLI, |rule| nanos(rule.duration));
                offset(slow, offset_ms)
            }
            Advance::NextBucket { offset_ns } => {
                let boundary = (self.now / width + 1) * width;
                let target = if offset_ns < 0 {
                    boundary - u64::from(offset_ns.unsigned_abs())
                } else {
                    boundary + u64::from(offset_ns.unsigned_abs())
                };
                target - self.now
            }
            Advance::BreakEnd { offset_ms } => {
                if self.state == CircuitState::Open {
                    offset(self.open_until, offset_ms).saturating_sub(self.now)
                } else {
                    0
                }
            }
        }
    }
}

// ===== running a sequence against both =====

fn admission_of(result: &Result<OwnedPermit, Rejection>) -> Admission {
    match result {
        Ok(permit) => Admission::Admitted {
            probe: permit.is_probe(),
            generation: permit.generation(),
        },
        Err(Rejection::Open(_)) => Admission::RejectedOpen,
        Err(Rejection::HalfOpenFull(_)) => Admission::RejectedHalfOpenFull,
    }
}

fn end(permit: OwnedPermit, ending: Ending) {
    match ending {
        Ending::Success => permit.success(),
        Ending::Failure => permit.failure(),
        Ending::Timeout => permit.timeout(),
        Ending::Ignored => permit.ignored(),
        Ending::Dropped => drop(permit),
    }
}

/// The breaker and the reference, driven side by side.
struct Harness {
    clock: ManualClock,
    breaker: CircuitBreaker,
    events: broadcast::Receiver<Transition>,
    model: Model,
    held: Vec<(OwnedPermit, Ticket)>,
}

impl Harness {
    fn new(config: &CircuitBreakerConfig) -> Self {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder("window-model")
            .config(config.clone())
            .clock(Clock::manual(&clock))
            .build()
            .expect("generated configs are valid");
        let events = breaker.subscribe();
        Self {
            clock,
            breaker,
            events,
            model: Model::new(config.clone()),
            held: Vec::new(),
        }
    }

    fn advance(&mut self, advance: Advance) {
        let by = self.model.step_for(advance);
        self.model.now += by;
        self.clock.advance(Duration::from_nanos(by));
    }

    fn acquire(&mut self, number: usize) -> Result<Option<(OwnedPermit, Ticket)>, TestCaseError> {
        let (expected, ticket) = self.model.acquire();
        let actual = self.breaker.try_acquire_owned();
        prop_assert_eq!(
            admission_of(&actual),
            expected,
            "admission at step {}",
            number
        );
        Ok(actual.ok().zip(ticket))
    }

    fn step(&mut self, number: usize, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Call { advance, ending } => {
                let admitted = self.acquire(number)?;
                self.advance(advance);
                if let Some((permit, ticket)) = admitted {
                    self.model.finish(ticket, ending);
                    end(permit, ending);
                }
            }
            Op::Acquire => {
                if let Some(admitted) = self.acquire(number)? {
                    self.held.push(admitted);
                }
            }
            Op::End { index, ending } => {
                if !self.held.is_empty() {
                    let (permit, ticket) = self.held.remove(index % self.held.len());
                    self.model.finish(ticket, ending);
                    end(permit, ending);
                }
            }
            Op::Advance(advance) => self.advance(advance),
            Op::Reset => {
                self.model
                    .transition(CircuitState::Closed, TransitionReason::Reset);
                self.breaker.reset();
            }
            Op::Disable => {
                self.model
                    .transition(CircuitState::Disabled, TransitionReason::Disabled);
                self.breaker.disable();
            }
            Op::Isolate => {
                self.model
                    .transition(CircuitState::Isolated, TransitionReason::Isolated);
                self.breaker.isolate();
            }
            Op::Automatic => {
                self.model.automatic();
                self.breaker.automatic();
            }
        }
        Ok(())
    }

    fn check(&mut self, number: usize, op: Op, observe: bool) -> Result<(), TestCaseError> {
        if observe {
            prop_assert_eq!(
                self.breaker.state(),
                self.model.state(),
                "state() after step {} ({:?}) at {} ns",
                number,
                op,
                self.model.now
            );
            prop_assert_eq!(
                Observed::from_metrics(&self.breaker.metrics()),
                self.model.observe(),
                "metrics() after step {} ({:?}) at {} ns; log {:?}",
                number,
                op,
                self.model.now,
                self.model.log
            );
        }
        let mut announced = Vec::new();
        while let Ok(transition) = self.events.try_recv() {
            announced.push(Announced {
                from: transition.from,
                to: transition.to,
                reason: transition.reason,
                generation: transition.generation,
            });
        }
        prop_assert_eq!(
            announced,
            std::mem::take(&mut self.model.announced),
            "transitions announced by step {} ({:?}) at {} ns; log {:?}",
            number,
            op,
            self.model.now,
            self.model.log
        );
        Ok(())
    }
}

/// Runs `steps` on a real breaker and on the reference, failing at the first difference.
fn run(config: &CircuitBreakerConfig, steps: &[(Op, bool)]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(config);
    let last = steps.len().saturating_sub(1);
    for (number, &(op, observe)) in steps.iter().enumerate() {
        harness.step(number, op)?;
        harness.check(number, op, observe || number == last)?;
    }
    Ok(())
}

// ===== strategies =====

fn threshold_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.25), Just(0.5), Just(0.75), Just(1.0)]
}

fn window_strategy() -> impl Strategy<Value = SlidingWindow> {
    prop_oneof![
        (1..=8u32).prop_map(SlidingWindow::Calls),
        (1..=4u64, 1..=4u32)
            .prop_map(|(secs, buckets)| SlidingWindow::time(Duration::from_secs(secs), buckets)),
    ]
}

/// Which rate rules are on.
#[derive(Debug, Clone, Copy)]
enum Rules {
    FailureRate,
    Both,
    /// The slow-call rule with a window of its own.
    SlowOnly,
    /// The slow-call rule on the default window (the last 100 calls, judged from 20).
    SlowOnlyDefaults,
}

fn config_strategy(
    failure_thresholds: std::ops::RangeInclusive<u32>,
) -> impl Strategy<Value = CircuitBreakerConfig> {
    let rules = prop_oneof![
        4 => Just(Rules::FailureRate),
        4 => Just(Rules::Both),
        2 => Just(Rules::SlowOnly),
        1 => Just(Rules::SlowOnlyDefaults),
    ];
    let rates = (
        rules,
        window_strategy(),
        1..=8u32,
        threshold_strategy(),
        100..=500u64,
        threshold_strategy(),
    );
    let machine = (
        failure_thresholds,
        500..=3_000u64,
        1..=2u32,
        1..=2u32,
        2_000..=10_000u64,
        prop_oneof![4 => Just(CancelledCalls::Ignored), 1 => Just(CancelledCalls::Failure)],
        prop_oneof![Just(1u32), Just(16), Just(1_000)],
    );
    (rates, machine).prop_map(
        |(
            (rules, window, minimum, failure_rate, slow_ms, slow_rate),
            (failures, break_ms, successes, probes, timeout_ms, cancelled, sample),
        )| {
            // At most the window's size for a count window, so the rule can fire.
            let minimum = match window {
                SlidingWindow::Calls(size) => 1 + (minimum - 1) % size,
                SlidingWindow::Time { .. } => minimum,
            };
            let failure_rule = FailureRateRule::new(failure_rate)
                .window(window)
                .minimum_throughput(minimum);
            let slow_rule = SlowCallRule::new(Duration::from_millis(slow_ms), slow_rate);
            let mut config = CircuitBreakerConfig::default()
                .failure_threshold(failures)
                .break_duration(Duration::from_millis(break_ms))
                .success_threshold(successes)
                .half_open_max_calls(probes)
                .half_open_timeout(Duration::from_millis(timeout_ms))
                .cancelled_calls(cancelled)
                .latency_sample_every(sample);
            config = match rules {
                Rules::FailureRate => config.failure_rate(failure_rule),
                Rules::Both => config.failure_rate(failure_rule).slow_call(slow_rule),
                Rules::SlowOnly => {
                    config.slow_call(slow_rule.window(window).minimum_throughput(minimum))
                }
                Rules::SlowOnlyDefaults => config.slow_call(slow_rule),
            };
            config
        },
    )
}

fn advance_strategy() -> impl Strategy<Value = Advance> {
    prop_oneof![
        2 => Just(Advance::Millis(0)),
        2 => (0..=20u64).prop_map(Advance::Millis),
        4 => (0..=1_500u64).prop_map(Advance::Millis),
        3 => (-1..=1i8).prop_map(|offset_ms| Advance::BucketWidth { offset_ms }),
        1 => (-1..=1i8).prop_map(|offset_ms| Advance::Span { offset_ms }),
        2 => (-1..=1i8).prop_map(|offset_ms| Advance::SlowDuration { offset_ms }),
        3 => (-1..=1i8).prop_map(|offset_ns| Advance::NextBucket { offset_ns }),
        1 => (0..=1i8).prop_map(|offset_ms| Advance::BreakEnd { offset_ms }),
    ]
}

fn ending_strategy() -> impl Strategy<Value = Ending> {
    prop_oneof![
        4 => Just(Ending::Success),
        4 => Just(Ending::Failure),
        1 => Just(Ending::Timeout),
        1 => Just(Ending::Ignored),
        1 => Just(Ending::Dropped),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (advance_strategy(), ending_strategy())
            .prop_map(|(advance, ending)| Op::Call { advance, ending }),
        3 => Just(Op::Acquire),
        3 => (0..8usize, ending_strategy()).prop_map(|(index, ending)| Op::End { index, ending }),
        5 => advance_strategy().prop_map(Op::Advance),
        2 => Just(Op::Reset),
        1 => Just(Op::Disable),
        1 => Just(Op::Automatic),
        1 => Just(Op::Isolate),
    ]
}

/// A step is an operation and whether to read `state()` and `metrics()` after it (reading
/// applies time-driven transitions, so not reading sometimes leaves them to the next call).
fn steps_strategy() -> impl Strategy<Value = Vec<(Op, bool)>> {
    prop::collection::vec((op_strategy(), prop::bool::weighted(0.75)), 1..=80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The rate rules alone (the consecutive rule set out of reach): window figures, trips and
    /// their reasons follow the reference, on count and time windows.
    #[test]
    fn window_follows_reference_with_rate_rules_alone(
        config in config_strategy(1_000..=1_000),
        steps in steps_strategy(),
    ) {
        run(&config, &steps)?;
    }

    /// The consecutive rule low enough to race the rate rules: it is checked first, and the
    /// failure that fires it does not reach the window.
    #[test]
    fn window_follows_reference_racing_consecutive_rule(
        config in config_strategy(1..=3),
        steps in steps_strategy(),
    ) {
        run(&config, &steps)?;
    }
}

// ===== fixed cases =====

fn breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("window-model")
        .config(config)
        .clock(Clock::manual(&clock))
        .build()
        .expect("valid config");
    (breaker, clock)
}

fn window_of(breaker: &CircuitBreaker) -> Figures {
    let window = breaker.metrics().window.expect("a rate rule is on");
    Figures {
        calls: window.calls,
        failures: window.failures,
        slow_calls: window.slow_calls,
    }
}

/// Moves `clock` to `at` nanoseconds since it started.
fn advance_to(clock: &ManualClock, at: u64) {
    let now = nanos(clock.elapsed());
    clock.advance(Duration::from_nanos(at - now));
}

/// A call recorded at time t is in bucket `t / width` and leaves the window the nanosecond its
/// bucket is B buckets old, with the width rounded down to whole nanoseconds (here 1 s / 3).
#[test]
fn time_window_buckets_age_out_at_their_exact_edges() {
    let rule = FailureRateRule::new(1.0)
        .window(SlidingWindow::time(Duration::from_secs(1), 3))
        .minimum_throughput(100);
    let (breaker, clock) = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(1_000)
            .failure_rate(rule),
    );
    let width = 333_333_333;
    let calls = |calls, failures| Figures {
        calls,
        failures,
        slow_calls: 0,
    };

    breaker.try_acquire_owned().unwrap().failure(); // bucket 0
    advance_to(&clock, width - 1);
    breaker.try_acquire_owned().unwrap().success(); // bucket 0
    advance_to(&clock, width);
    breaker.try_acquire_owned().unwrap().failure(); // bucket 1
    assert_eq!(window_of(&breaker), calls(3, 2));

    // Buckets 1..=3: bucket 0 is gone a nanosecond before a whole second.
    advance_to(&clock, 3 * width - 1);
    assert_eq!(window_of(&breaker), calls(3, 2));
    advance_to(&clock, 3 * width);
    assert_eq!(window_of(&breaker), calls(1, 1));
    advance_to(&clock, 4 * width - 1);
    assert_eq!(window_of(&breaker), calls(1, 1));
    // Skipping several buckets at once empties it.
    advance_to(&clock, 9 * width + 5);
    assert_eq!(window_of(&breaker), calls(0, 0));
    breaker.try_acquire_owned().unwrap().failure();
    assert_eq!(window_of(&breaker), calls(1, 1));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

/// The tie-breaks the proptest meets only now and then: a call lasting exactly the slow-call
/// duration is slow and a nanosecond less is not; the failure rate is judged before the slow
/// rate; when the consecutive rule and a rate rule fire on one failure the consecutive rule wins
/// and that failure stays out of the window; a reset empties the window.
#[test]
fn tie_breaks_between_rules_and_at_the_slow_call_edge() {
    let slow = Duration::from_millis(100);
    let (breaker, clock) = breaker(
        CircuitBreakerConfig::default()
            .failure_threshold(2)
            .failure_rate(
                FailureRateRule::new(0.5)
                    .window(SlidingWindow::Calls(4))
                    .minimum_throughput(2),
            )
            .slow_call(SlowCallRule::new(slow, 0.5)),
    );
    let reason = |breaker: &CircuitBreaker| breaker.metrics().last_transition_reason;
    let lasting = |breaker: &CircuitBreaker, clock: &ManualClock, by: Duration, ok: bool| {
        let permit = breaker.try_acquire_owned().unwrap();
        clock.advance(by);
        if ok {
            permit.success();
        } else {
            permit.failure();
        }
    };

    // Slow is inclusive: 100 ms - 1 ns is fast, 100 ms is slow; 1 slow of 2 = 0.5 trips.
    lasting(&breaker, &clock, slow - Duration::from_nanos(1), true);
    assert_eq!(breaker.state(), CircuitState::Closed);
    lasting(&breaker, &clock, slow, true);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        reason(&breaker),
        Some(TransitionReason::SlowCallRate {
            rate: 0.5,
            threshold: 0.5,
            calls: 2,
            window: None,
        })
    );

    // A slow failure making both rates 0.5: the failure rate is judged first.
    breaker.reset();
    assert_eq!(window_of(&breaker), Figures::default());
    lasting(&breaker, &clock, Duration::ZERO, true);
    lasting(&breaker, &clock, slow, false);
    assert_eq!(
        reason(&breaker),
        Some(TransitionReason::FailureRate {
            rate: 0.5,
            threshold: 0.5,
            calls: 2,
            window: None,
        })
    );

    // Two failures: the second fires both rules; the consecutive one is checked first and the
    // failure that fired it is not in the window.
    breaker.reset();
    lasting(&breaker, &clock, Duration::ZERO, false);
    assert_eq!(breaker.state(), CircuitState::Closed); // 1 call < minimum throughput 2
    lasting(&breaker, &clock, Duration::ZERO, false);
    assert_eq!(
        reason(&breaker),
        Some(TransitionReason::ConsecutiveFailures { failures: 2 })
    );
    assert_eq!(
        window_of(&breaker),
        Figures {
            calls: 1,
            failures: 1,
            slow_calls: 0,
        }
    );
}
