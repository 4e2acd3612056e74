//! A multi-threaded stress test of one shared breaker: many tasks on two worker threads make
//! random calls with random outcomes, drop some permits unfinished, hold some across yields and
//! push a manual clock forward in small random steps, so the breaker cycles through closed, open
//! and half-open many times. The invariants checked on the way and at the end are the ones a
//! race would break first: never more probes at once than the half-open limit, and every admitted
//! or rejected call counted exactly once.
//!
//! No real time passes: the breaker reads a [`ManualClock`].
//!
//! Set `STRESS_SEED` to replay a failing run's random choices (thread interleavings still vary).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock, OwnedPermit, Rejection,
};

const TASKS: u64 = 16;
const CALLS_PER_TASK: u64 = 50_000;
const HALF_OPEN_MAX_CALLS: u32 = 2;
const _: () = assert!(TASKS * CALLS_PER_TASK >= 100_000, "at least 100 000 calls");

/// What the tasks saw, to compare with the breaker's own counters at the end.
#[derive(Debug, Default)]
struct Tally {
    admitted: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    ignored: AtomicU64,
    cancelled: AtomicU64,
    rejected_open: AtomicU64,
    rejected_half_open: AtomicU64,
    probes: AtomicU64,
    metrics_samples: AtomicU64,
}

impl Tally {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Live probe permits per breaker generation, kept by the test itself: incremented once a probe is
/// admitted, decremented before it is recorded or dropped.
#[derive(Debug, Default)]
struct LiveProbes {
    by_generation: Mutex<HashMap<u64, u32>>,
}

impl LiveProbes {
    /// The map, even after a failed assertion in another task: the first failure is the one to
    /// read, not a cascade of poisoned locks.
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, u32>> {
        self.by_generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, generation: u64) {
        let mut by_generation = self.lock();
        let live = by_generation.entry(generation).or_insert(0);
        *live += 1;
        assert!(
            *live <= HALF_OPEN_MAX_CALLS,
            "{live} probes live at once in generation {generation}, limit {HALF_OPEN_MAX_CALLS}"
        );
    }

    fn leave(&self, generation: u64) {
        let mut by_generation = self.lock();
        let live = by_generation
            .get_mut(&generation)
            .expect("a probe that entered");
        *live -= 1;
        if *live == 0 {
            by_generation.remove(&generation);
        }
    }
}

/// How a task ends an admitted call.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Success,
    Failure,
    Timeout,
    Ignored,
    Dropped,
}

fn random_ending(rng: &mut SmallRng) -> Ending {
    // Failures are common enough that three in a row happen every hundred calls or so, successes
    // common enough that two probes in a row often succeed: every state is entered many times.
    match rng.random_range(0..100) {
        0..65 => Ending::Success,
        65..77 => Ending::Failure,
        77..83 => Ending::Timeout,
        83..92 => Ending::Ignored,
        _ => Ending::Dropped,
    }
}

fn finish(permit: OwnedPermit, ending: Ending, tally: &Tally, live: &LiveProbes) {
    if permit.is_probe() {
        live.leave(permit.generation());
    }
    match ending {
        Ending::Success => {
            Tally::bump(&tally.successes);
            permit.success();
        }
        Ending::Failure => {
            Tally::bump(&tally.failures);
            permit.failure();
        }
        Ending::Timeout => {
            Tally::bump(&tally.timeouts);
            permit.timeout();
        }
        Ending::Ignored => {
            Tally::bump(&tally.ignored);
            permit.ignored();
        }
        Ending::Dropped => {
            Tally::bump(&tally.cancelled);
            drop(permit);
        }
    }
}

fn assert_probes_within_limit(breaker: &CircuitBreaker, tally: &Tally) {
    let in_flight = breaker.metrics().half_open_in_flight;
    assert!(
        in_flight <= HALF_OPEN_MAX_CALLS,
        "metrics report {in_flight} probes in flight, limit {HALF_OPEN_MAX_CALLS}"
    );
    Tally::bump(&tally.metrics_samples);
}

/// A step of up to 3 ms, one call in eight: probes held across a yield sometimes overrun their
/// 20 ms timeout.
fn maybe_advance(clock: &ManualClock, rng: &mut SmallRng) {
    if rng.random_ratio(1, 8) {
        clock.advance(Duration::from_micros(rng.random_range(0..=3_000)));
    }
}

/// A longer step, up to 6 ms, after one rejection in two: a 50 ms break ends after a few dozen
/// rejections, so most calls are spent closed or half-open rather than rejected.
fn maybe_wait_out_break(clock: &ManualClock, rng: &mut SmallRng) {
    if rng.random_ratio(1, 2) {
        clock.advance(Duration::from_micros(rng.random_range(0..=6_000)));
    }
}

async fn caller(
    breaker: CircuitBreaker,
    clock: ManualClock,
    tally: Arc<Tally>,
    live: Arc<LiveProbes>,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    for call in 0..CALLS_PER_TASK {
        maybe_advance(&clock, &mut rng);
        match breaker.try_acquire_owned() {
            Ok(permit) => {
                Tally::bump(&tally.admitted);
                if permit.is_probe() {
                    Tally::bump(&tally.probes);
                    live.enter(permit.generation());
                    assert_probes_within_limit(&breaker, &tally);
                }
                let ending = random_ending(&mut rng);
                if rng.random_ratio(1, 5) {
                    // Held across a yield: other tasks run, time may move, the breaker may move
                    // on to another generation before this call ends.
                    tokio::task::yield_now().await;
                    maybe_advance(&clock, &mut rng);
                }
                finish(permit, ending, &tally, &live);
            }
            Err(Rejection::Open(_)) => {
                Tally::bump(&tally.rejected_open);
                maybe_wait_out_break(&clock, &mut rng);
            }
            Err(Rejection::HalfOpenFull(_)) => Tally::bump(&tally.rejected_half_open),
        }
        if call % 64 == 0 {
            assert_probes_within_limit(&breaker, &tally);
        }
        if call % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_breaker_keeps_probe_limit_and_exact_counts_under_concurrent_random_calls() {
    let seed = std::env::var("STRESS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("STRESS_SEED={seed}");

    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("stress")
        .config(
            CircuitBreakerConfig::default()
                .failure_threshold(3)
                .break_duration(Duration::from_millis(50))
                .half_open_timeout(Duration::from_millis(20))
                .half_open_max_calls(HALF_OPEN_MAX_CALLS)
                .success_threshold(2),
        )
        .clock(clock.clone())
        .build()
        .expect("valid config");
    let tally = Arc::new(Tally::default());
    let live = Arc::new(LiveProbes::default());

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            tokio::spawn(caller(
                breaker.clone(),
                clock.clone(),
                tally.clone(),
                live.clone(),
                seed.wrapping_add(task),
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("a caller panicked");
    }

    let metrics = breaker.metrics();
    println!("{metrics:#?}\n{tally:#?}");
    let admitted = Tally::get(&tally.admitted);
    let rejected = Tally::get(&tally.rejected_open) + Tally::get(&tally.rejected_half_open);
    assert_eq!(admitted + rejected, TASKS * CALLS_PER_TASK);

    // Every admitted call was counted exactly once, as what the test made of it.
    assert_eq!(
        metrics.successful_calls
            + metrics.failed_calls
            + metrics.ignored_calls
            + metrics.cancelled_calls,
        admitted
    );
    assert_eq!(metrics.total_calls, admitted);
    assert_eq!(metrics.successful_calls, Tally::get(&tally.successes));
    assert_eq!(
        metrics.failed_calls,
        Tally::get(&tally.failures) + Tally::get(&tally.timeouts),
        "failed calls include the timeouts"
    );
    // Probes that overran `half_open_timeout` are counted as timeouts too, on top of the calls
    // recorded as timeouts; held across yields while the clock moves, some always do.
    assert!(
        metrics.timeouts > Tally::get(&tally.timeouts),
        "no probe overran its timeout"
    );
    assert_eq!(metrics.ignored_calls, Tally::get(&tally.ignored));
    assert_eq!(metrics.cancelled_calls, Tally::get(&tally.cancelled));

    // Every rejection was counted exactly once, by kind.
    assert_eq!(metrics.rejected_open + metrics.rejected_half_open, rejected);
    assert_eq!(metrics.rejected_open, Tally::get(&tally.rejected_open));
    assert_eq!(
        metrics.rejected_half_open,
        Tally::get(&tally.rejected_half_open)
    );

    // No probe outlived its call, and the breaker went round its states many times.
    assert!(live.lock().is_empty());
    assert_eq!(metrics.half_open_in_flight, 0);
    let transitions = metrics.transitions;
    for (state, entered) in [
        (CircuitState::Open, transitions.to_open),
        (CircuitState::HalfOpen, transitions.to_half_open),
        (CircuitState::Closed, transitions.to_closed),
    ] {
        assert!(entered >= 10, "entered {state} only {entered} times");
    }
    assert!(Tally::get(&tally.probes) > 0);
    assert!(Tally::get(&tally.rejected_half_open) > 0);
}

/// Threads own counter stripes (and count on them without locked instructions) while there are
/// stripes to own; the rest share one. Many more threads than stripes, in waves (an exiting
/// thread's stripe goes to a later one), with permits admitted on one thread and recorded on
/// another: every count still adds up exactly.
#[test]
fn counts_add_up_when_threads_outnumber_stripes_and_permits_change_threads() {
    const WAVES: u64 = 3;
    const THREADS: u64 = 12;
    const CALLS: u64 = 20_000;
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1_000)
        .latency_sample_every(1);
    let breaker = CircuitBreaker::with_config("counts", config).expect("valid config");
    for _ in 0..WAVES {
        let (handed, received) = std::sync::mpsc::channel::<OwnedPermit>();
        std::thread::scope(|scope| {
            // Records on its own thread what the others admitted.
            scope.spawn(move || received.into_iter().for_each(OwnedPermit::success));
            for _ in 0..THREADS {
                let (breaker, handed) = (&breaker, handed.clone());
                scope.spawn(move || {
                    for call in 0..CALLS {
                        let permit = breaker.try_acquire_owned().expect("never trips");
                        match call % 5 {
                            0 => handed.send(permit).expect("recorder alive"),
                            1 => permit.failure(),
                            2 => permit.ignored(),
                            3 => drop(permit),
                            _ => permit.success(),
                        }
                    }
                });
            }
            drop(handed);
        });
    }
    let each = WAVES * THREADS * CALLS / 5;
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Closed);
    assert_eq!(metrics.successful_calls, 2 * each);
    assert_eq!(metrics.failed_calls, each);
    assert_eq!(metrics.ignored_calls, each);
    assert_eq!(metrics.cancelled_calls, each);
    assert_eq!(metrics.total_calls, WAVES * THREADS * CALLS);
    // Every finished call was timed (cancelled ones are not).
    assert_eq!(metrics.latency.samples, 4 * each);
    assert_eq!(metrics.latency.buckets.iter().sum::<u64>(), 4 * each);
}
