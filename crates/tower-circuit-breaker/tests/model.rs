//! Model test of the breaker engine: random sequences of permits, outcomes, clock moves and manual
//! overrides, checked step by step against a small reference model of the rules written out
//! plainly below.
//!
//! The model is deliberately naive (a struct of plain fields, no atomics, no packing): if it and
//! the engine ever disagree, proptest shrinks the sequence to the shortest one that shows it.
//!
//! `state()` and `metrics()` apply time-driven transitions themselves, so reading them after every
//! step would hide the paths where a stale state is found by the next call or by a probe's own
//! outcome. Each step therefore carries a flag saying whether to observe the breaker afterwards;
//! the model applies the same time rules at the same points.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tower_circuit_breaker::{
    CancelledCalls, CircuitBreaker, CircuitBreakerConfig, CircuitMetrics, CircuitState, Clock,
    ManualClock, OwnedPermit, Rejection, TransitionReason,
};

// ===== operations =====

/// One thing the test does to the breaker.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `try_acquire_owned`, keeping the permit.
    Acquire,
    /// Records an outcome on the held permit at `index % held.len()`.
    Finish {
        index: usize,
        outcome: Finish,
    },
    /// Drops the held permit at `index % held.len()` unrecorded (a cancelled call).
    Cancel {
        index: usize,
    },
    /// Moves the manual clock forward.
    Advance(Advance),
    Reset,
    Isolate,
    Disable,
    Automatic,
    /// `state()` on its own (it applies time-driven transitions).
    ReadState,
}

#[derive(Debug, Clone, Copy)]
enum Finish {
    Success,
    Failure,
    Timeout,
    Ignored,
}

/// How far to move the clock. The relative moves land on the boundaries where off-by-one errors
/// live: exactly a break or a probe timeout, and a millisecond either side of the next deadline.
#[derive(Debug, Clone, Copy)]
enum Advance {
    Millis(u64),
    BreakDuration,
    HalfOpenTimeout,
    /// To the model's next deadline (end of the break, or the earliest probe's timeout) plus
    /// `offset_ms` (-1, 0 or 1); no move if there is none or it has passed.
    ToNextDeadline {
        offset_ms: i8,
    },
}

/// What `try_acquire_owned` answered, reduced to what the rules decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admitted { probe: bool, generation: u64 },
    RejectedOpen { retry_after: Option<Duration> },
    RejectedHalfOpenFull,
}

/// A permit as the model knows it.
#[derive(Debug, Clone, Copy)]
struct HeldPermit {
    id: u64,
    generation: u64,
    probe: bool,
}

/// What an ending does to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Success,
    Failure,
    Neutral,
}

/// A transition as announced to subscribers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Announced {
    from: CircuitState,
    to: CircuitState,
    reason: TransitionReason,
    generation: u64,
}

/// The parts of a metrics snapshot the rules decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Observed {
    state: CircuitState,
    generation: u64,
    consecutive_failures: u32,
    half_open_in_flight: u32,
    total_calls: u64,
    successful_calls: u64,
    failed_calls: u64,
    timeouts: u64,
    ignored_calls: u64,
    cancelled_calls: u64,
    rejected_open: u64,
    rejected_half_open: u64,
    /// Transitions into each state, in the order of [`CircuitState::ALL`].
    transitions: [u64; 5],
    next_probe_in: Option<Duration>,
    time_in_state: Duration,
    changed_ever: bool,
}

impl Observed {
    fn from_metrics(metrics: &CircuitMetrics) -> Self {
        Self {
            state: metrics.state,
            generation: metrics.generation,
            consecutive_failures: metrics.consecutive_failures,
            half_open_in_flight: metrics.half_open_in_flight,
            total_calls: metrics.total_calls,
            successful_calls: metrics.successful_calls,
            failed_calls: metrics.failed_calls,
            timeouts: metrics.timeouts,
            ignored_calls: metrics.ignored_calls,
            cancelled_calls: metrics.cancelled_calls,
            rejected_open: metrics.rejected_open,
            rejected_half_open: metrics.rejected_half_open,
            transitions: CircuitState::ALL.map(|state| metrics.transitions.to(state)),
            next_probe_in: metrics.next_probe_in,
            time_in_state: metrics.time_in_state,
            changed_ever: metrics.last_state_change.is_some(),
        }
    }
}

// ===== the reference model =====

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    successful: u64,
    failed: u64,
    timeouts: u64,
    ignored: u64,
    cancelled: u64,
    rejected_open: u64,
    rejected_half_open: u64,
}

/// The breaker's rules, written plainly.
#[derive(Debug)]
struct Model {
    config: CircuitBreakerConfig,
    now: Duration,
    state: CircuitState,
    generation: u64,
    consecutive_failures: u32,
    half_open_successes: u32,
    /// Probes in flight in the current generation: permit id to start time.
    probes: BTreeMap<u64, Duration>,
    open_until: Duration,
    entered_at: Duration,
    totals: Totals,
    transitions: [u64; 5],
    announced: Vec<Announced>,
    next_permit_id: u64,
}

impl Model {
    fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            now: Duration::ZERO,
            state: CircuitState::Closed,
            generation: 0,
            consecutive_failures: 0,
            half_open_successes: 0,
            probes: BTreeMap::new(),
            open_until: Duration::ZERO,
            entered_at: Duration::ZERO,
            totals: Totals::default(),
            transitions: [0; 5],
            announced: Vec::new(),
            next_permit_id: 0,
        }
    }

    /// Every transition (and every forced move, even into the same state) starts a generation and
    /// clears the counts; only a real change of state is counted and announced.
    fn transition(&mut self, to: CircuitState, reason: TransitionReason) {
        self.transition_at(to, reason, self.now);
    }

    /// A transition dated `at`: what time alone decides is dated from the deadline that decided it.
    fn transition_at(&mut self, to: CircuitState, reason: TransitionReason, at: Duration) {
        self.generation = (self.generation + 1) & ((1 << 37) - 1);
        if to == CircuitState::Open {
            self.open_until = at + self.config.break_duration;
        }
        self.consecutive_failures = 0;
        self.half_open_successes = 0;
        self.probes.clear();
        self.entered_at = at;
        if to != self.state {
            let index = state_index(to);
            self.transitions[index] += 1;
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
                    let timeout = self.config.half_open_timeout;
                    let Some(deadline) =
                        self.probes.values().map(|started| *started + timeout).min()
                    else {
                        return;
                    };
                    if self.now < deadline {
                        return;
                    }
                    self.totals.timeouts += 1;
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

    fn acquire(&mut self) -> (Admission, Option<HeldPermit>) {
        if matches!(self.state, CircuitState::Open | CircuitState::HalfOpen) {
            self.tick();
        }
        let admitted = |model: &mut Self, probe: bool| {
            let permit = HeldPermit {
                id: model.next_permit_id,
                generation: model.generation,
                probe,
            };
            model.next_permit_id += 1;
            if probe {
                model.probes.insert(permit.id, model.now);
            }
            let admission = Admission::Admitted {
                probe,
                generation: model.generation,
            };
            (admission, Some(permit))
        };
        match self.state {
            CircuitState::Closed | CircuitState::Disabled => admitted(self, false),
            CircuitState::Open => {
                self.totals.rejected_open += 1;
                let retry_after = Some(self.open_until - self.now);
                (Admission::RejectedOpen { retry_after }, None)
            }
            CircuitState::Isolated => {
                self.totals.rejected_open += 1;
                (Admission::RejectedOpen { retry_after: None }, None)
            }
            CircuitState::HalfOpen => {
                if self.probes.len() < self.config.half_open_max_calls as usize {
                    admitted(self, true)
                } else {
                    self.totals.rejected_half_open += 1;
                    (Admission::RejectedHalfOpenFull, None)
                }
            }
        }
    }

    /// A held permit ends: with an outcome, or dropped unrecorded (`None`).
    fn finish(&mut self, permit: HeldPermit, ending: Option<Finish>) {
        let effect = match ending {
            Some(Finish::Success) => {
                self.totals.successful += 1;
                Effect::Success
            }
            Some(Finish::Failure) => {
                self.totals.failed += 1;
                Effect::Failure
            }
            Some(Finish::Timeout) => {
                self.totals.failed += 1;
                self.totals.timeouts += 1;
                Effect::Failure
            }
            Some(Finish::Ignored) => {
                self.totals.ignored += 1;
                Effect::Neutral
            }
            None => {
                self.totals.cancelled += 1;
                match self.config.cancelled_calls {
                    CancelledCalls::Ignored => Effect::Neutral,
                    CancelledCalls::Failure => Effect::Failure,
                }
            }
        };

        if permit.probe {
            // A probe that ends at or after its deadline has timed out first.
            self.tick();
            if self.generation != permit.generation {
                return;
            }
            self.probes.remove(&permit.id);
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
                        Some(Finish::Timeout) => TransitionReason::ProbeTimeout,
                        None => TransitionReason::ProbeCancelled,
                        _ => TransitionReason::ProbeFailed,
                    };
                    self.transition(CircuitState::Open, reason);
                }
                Effect::Neutral => {}
            }
            return;
        }

        if self.generation != permit.generation {
            return;
        }
        match effect {
            Effect::Success => self.consecutive_failures = 0,
            Effect::Failure => {
                self.consecutive_failures += 1;
                let failures = self.consecutive_failures;
                if self.state == CircuitState::Closed && failures >= self.config.failure_threshold {
                    self.transition(
                        CircuitState::Open,
                        TransitionReason::ConsecutiveFailures { failures },
                    );
                }
            }
            Effect::Neutral => {}
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

    fn metrics(&mut self) -> Observed {
        self.tick();
        let totals = self.totals;
        Observed {
            state: self.state,
            generation: self.generation,
            consecutive_failures: self.consecutive_failures,
            half_open_in_flight: u32::try_from(self.probes.len()).expect("few probes"),
            total_calls: totals.successful + totals.failed + totals.ignored + totals.cancelled,
            successful_calls: totals.successful,
            failed_calls: totals.failed,
            timeouts: totals.timeouts,
            ignored_calls: totals.ignored,
            cancelled_calls: totals.cancelled,
            rejected_open: totals.rejected_open,
            rejected_half_open: totals.rejected_half_open,
            transitions: self.transitions,
            next_probe_in: (self.state == CircuitState::Open).then(|| self.open_until - self.now),
            time_in_state: self.now - self.entered_at,
            changed_ever: self.transitions.iter().any(|count| *count > 0),
        }
    }

    /// How far `advance` moves the clock from here.
    fn step_for(&self, advance: Advance) -> Duration {
        match advance {
            Advance::Millis(millis) => Duration::from_millis(millis),
            Advance::BreakDuration => self.config.break_duration,
            Advance::HalfOpenTimeout => self.config.half_open_timeout,
            Advance::ToNextDeadline { offset_ms } => {
                let deadline = match self.state {
                    CircuitState::Open => Some(self.open_until),
                    CircuitState::HalfOpen => self
                        .probes
                        .values()
                        .map(|started| *started + self.config.half_open_timeout)
                        .min(),
                    _ => None,
                };
                let offset = Duration::from_millis(u64::from(offset_ms.unsigned_abs()));
                let target = deadline.and_then(|deadline| {
                    if offset_ms < 0 {
                        deadline.checked_sub(offset)
                    } else {
                        Some(deadline + offset)
                    }
                });
                target
                    .and_then(|target| target.checked_sub(self.now))
                    .unwrap_or(Duration::ZERO)
            }
        }
    }
}

fn state_index(state: CircuitState) -> usize {
    CircuitState::ALL
        .iter()
        .position(|candidate| *candidate == state)
        .expect("every state is in ALL")
}

// ===== running a sequence against both =====

fn admission_of(result: &Result<OwnedPermit, Rejection>) -> Admission {
    match result {
        Ok(permit) => Admission::Admitted {
            probe: permit.is_probe(),
            generation: permit.generation(),
        },
        Err(Rejection::Open(open)) => Admission::RejectedOpen {
            retry_after: open.retry_after(),
        },
        Err(Rejection::HalfOpenFull(_)) => Admission::RejectedHalfOpenFull,
    }
}

/// Runs `steps` on a real breaker and on the model, failing at the first difference.
fn run(config: &CircuitBreakerConfig, steps: &[(Op, bool)]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("model")
        .config(config.clone())
        .clock(Clock::manual(&clock))
        .build()
        .expect("generated configs are valid");
    let mut events = breaker.subscribe();
    let mut model = Model::new(config.clone());
    let mut held: Vec<(OwnedPermit, HeldPermit)> = Vec::new();

    let last = steps.len().saturating_sub(1);
    for (number, &(op, observe)) in steps.iter().enumerate() {
        match op {
            Op::Acquire => {
                let (expected, permit) = model.acquire();
                let actual = breaker.try_acquire_owned();
                prop_assert_eq!(
                    admission_of(&actual),
                    expected,
                    "admission at step {} ({:?})",
                    number,
                    op
                );
                if let (Ok(actual), Some(permit)) = (actual, permit) {
                    held.push((actual, permit));
                }
            }
            Op::Finish { index, outcome } => {
                if !held.is_empty() {
                    let (permit, known) = held.remove(index % held.len());
                    model.finish(known, Some(outcome));
                    match outcome {
                        Finish::Success => permit.success(),
                        Finish::Failure => permit.failure(),
                        Finish::Timeout => permit.timeout(),
                        Finish::Ignored => permit.ignored(),
                    }
                }
            }
            Op::Cancel { index } => {
                if !held.is_empty() {
                    let (permit, known) = held.remove(index % held.len());
                    model.finish(known, None);
                    drop(permit);
                }
            }
            Op::Advance(advance) => {
                let by = model.step_for(advance);
                model.now += by;
                clock.advance(by);
            }
            Op::Reset => {
                model.transition(CircuitState::Closed, TransitionReason::Reset);
                breaker.reset();
            }
            Op::Isolate => {
                model.transition(CircuitState::Isolated, TransitionReason::Isolated);
                breaker.isolate();
            }
            Op::Disable => {
                model.transition(CircuitState::Disabled, TransitionReason::Disabled);
                breaker.disable();
            }
            Op::Automatic => {
                model.automatic();
                breaker.automatic();
            }
            Op::ReadState => {
                prop_assert_eq!(
                    breaker.state(),
                    model.state(),
                    "state() at step {} ({:?})",
                    number,
                    op
                );
            }
        }

        if observe || number == last {
            prop_assert_eq!(
                breaker.state(),
                model.state(),
                "state() after step {} ({:?})",
                number,
                op
            );
            prop_assert_eq!(
                Observed::from_metrics(&breaker.metrics()),
                model.metrics(),
                "metrics() after step {} ({:?})",
                number,
                op
            );
        }

        let mut announced = Vec::new();
        while let Ok(transition) = events.try_recv() {
            announced.push(Announced {
                from: transition.from,
                to: transition.to,
                reason: transition.reason,
                generation: transition.generation,
            });
        }
        prop_assert_eq!(
            announced,
            std::mem::take(&mut model.announced),
            "transitions announced by step {} ({:?})",
            number,
            op
        );
    }
    Ok(())
}

// ===== strategies =====

fn config_strategy(
    failure_thresholds: std::ops::RangeInclusive<u32>,
) -> impl Strategy<Value = CircuitBreakerConfig> {
    (
        failure_thresholds,
        1..=3u32,
        1..=3u32,
        1_000..=5_000u64,
        1_000..=5_000u64,
        prop_oneof![Just(CancelledCalls::Ignored), Just(CancelledCalls::Failure)],
    )
        .prop_map(
            |(failures, successes, probes, break_ms, timeout_ms, cancelled)| {
                CircuitBreakerConfig::default()
                    .failure_threshold(failures)
                    .success_threshold(successes)
                    .half_open_max_calls(probes)
                    .break_duration(Duration::from_millis(break_ms))
                    .half_open_timeout(Duration::from_millis(timeout_ms))
                    .cancelled_calls(cancelled)
                    .latency_sample_every(1)
            },
        )
}

fn finish_strategy() -> impl Strategy<Value = Finish> {
    prop_oneof![
        3 => Just(Finish::Success),
        3 => Just(Finish::Failure),
        1 => Just(Finish::Timeout),
        1 => Just(Finish::Ignored),
    ]
}

fn advance_strategy() -> impl Strategy<Value = Advance> {
    prop_oneof![
        4 => (0..=20u64).prop_map(Advance::Millis),
        3 => (0..=3_000u64).prop_map(Advance::Millis),
        1 => (0..=40_000u64).prop_map(Advance::Millis),
        1 => Just(Advance::BreakDuration),
        1 => Just(Advance::HalfOpenTimeout),
        3 => (-1..=1i8).prop_map(|offset_ms| Advance::ToNextDeadline { offset_ms }),
    ]
}

/// Operations; `manual` is the weight of the manual overrides (reset, isolate, disable,
/// automatic) taken together, against 24 for the rest.
fn op_strategy(manual: u32) -> impl Strategy<Value = Op> {
    let overrides = prop_oneof![
        Just(Op::Reset),
        Just(Op::Isolate),
        Just(Op::Disable),
        Just(Op::Automatic),
    ];
    prop_oneof![
        7 => Just(Op::Acquire),
        6 => (0..64usize, finish_strategy()).prop_map(|(index, outcome)| Op::Finish { index, outcome }),
        2 => (0..64usize).prop_map(|index| Op::Cancel { index }),
        8 => advance_strategy().prop_map(Op::Advance),
        1 => Just(Op::ReadState),
        manual => overrides,
    ]
}

/// A step is an operation and whether to observe the breaker (`state()`, `metrics()`) after it.
fn steps_strategy(manual: u32) -> impl Strategy<Value = Vec<(Op, bool)>> {
    prop::collection::vec((op_strategy(manual), prop::bool::weighted(0.5)), 1..=60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every rule at once: trips, breaks, probes, stale outcomes, cancellations and overrides.
    #[test]
    fn engine_follows_reference_model(
        config in config_strategy(1..=4),
        steps in steps_strategy(6),
    ) {
        run(&config, &steps)?;
    }

    /// Mostly half-open: one failure trips and overrides are rare, so sequences spend their
    /// length on probes, their deadlines and the outcomes that race them.
    #[test]
    fn half_open_probes_follow_reference_model(
        config in config_strategy(1..=1),
        steps in steps_strategy(1),
    ) {
        run(&config, &steps)?;
    }
}
