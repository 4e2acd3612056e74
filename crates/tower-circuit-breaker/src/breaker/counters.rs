//! The per-call counters, striped so that threads do not fight over one cache line.
//!
//! Stripe 0 is shared; every other stripe belongs to one thread at a time. A thread claims a
//! stripe of its own on its first call to any breaker (a bit in one process-wide word) and gives
//! it back when it exits. The owner is the only thread that writes its stripe, so it counts with a
//! plain load and store, no locked instruction; threads beyond the owned stripes share stripe 0
//! and count there with atomic adds. A breaker made with one stripe (a keyed breaker) has only
//! the shared one, where every thread adds atomically. A snapshot adds the stripes up. Counters
//! never go down, and none wraps: the counts are 64-bit (a million calls a second for 500,000
//! years), and the latency sum carries into a second word.
//!
//! Latency sampling is per breaker: a call is timed when the successes and failures on its
//! stripe add up to a multiple of `latency_sample_every`, so a thread that calls many breakers
//! times one call in `latency_sample_every` of each, failing or not. Deciding it costs two loads
//! of a line the call writes anyway.

use std::cell::Cell;
use std::time::Duration;

use crate::clock::duration_nanos;
use crate::metrics::{LatencyMetrics, LATENCY_BUCKETS};
use crate::sync::{AtomicU64, Ordering::Relaxed};

const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// What a finished or rejected call adds to the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    Success,
    Failure,
    /// A failure that was a timeout: bumps both.
    TimeoutFailure,
    /// A half-open probe that overran its timeout; its own outcome is counted when it ends.
    ProbeTimeout,
    Ignored,
    Cancelled,
    RejectedOpen,
    RejectedHalfOpen,
}

/// One thread's share of the counters. Aligned to two cache lines so the adjacent-line
/// prefetcher does not pair it with a neighbour.
#[repr(align(128))]
struct Stripe {
    successes: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    ignored: AtomicU64,
    cancelled: AtomicU64,
    rejected_open: AtomicU64,
    rejected_half_open: AtomicU64,
    latency_samples: AtomicU64,
    /// Nanoseconds, wrapping; each wrap adds one to `latency_sum_high`.
    latency_sum: AtomicU64,
    latency_sum_high: AtomicU64,
    latency_min: AtomicU64,
    latency_max: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS],
}

impl Stripe {
    fn new() -> Self {
        Self {
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected_open: AtomicU64::new(0),
            rejected_half_open: AtomicU64::new(0),
            latency_samples: AtomicU64::new(0),
            latency_sum: AtomicU64::new(0),
            latency_sum_high: AtomicU64::new(0),
            latency_min: AtomicU64::new(u64::MAX),
            latency_max: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Stripe {
    /// The latency sum in nanoseconds, both words read as of one moment: re-read if a wrap came
    /// between the two reads.
    fn latency_sum_nanos(&self) -> u128 {
        loop {
            let high = self.latency_sum_high.load(Relaxed);
            let low = self.latency_sum.load(Relaxed);
            if self.latency_sum_high.load(Relaxed) == high {
                return (u128::from(high) << 64) | u128::from(low);
            }
        }
    }
}

/// Totals summed over every stripe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) timeouts: u64,
    pub(crate) ignored: u64,
    pub(crate) cancelled: u64,
    pub(crate) rejected_open: u64,
    pub(crate) rejected_half_open: u64,
    pub(crate) latency: LatencyMetrics,
}

pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
}

/// One call in `every`, judged on a count: `count % every == 0` by Lemire's divisibility test,
/// with no division on the call path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampling {
    /// `u64::MAX / every + 1`; 0 when every call is timed.
    multiplier: u64,
}

impl Sampling {
    pub(crate) fn every(every: u32) -> Self {
        let multiplier = if every <= 1 {
            0
        } else {
            (u64::MAX / u64::from(every)).wrapping_add(1)
        };
        Self { multiplier }
    }

    /// Whether the call that finds `count` is timed (the count's low 32 bits: a wrap every four
    /// billion successes moves the sampling's phase once).
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // the low 32 bits, on purpose
    fn picks(self, count: u64) -> bool {
        u64::from(count as u32).wrapping_mul(self.multiplier) <= self.multiplier.wrapping_sub(1)
    }
}

/// Twice the cores, so two busy threads rarely land on one stripe; at least 4. Asked once per
/// process: the answer reads cgroup files, which costs a registry of 1 000 breakers about 90 ms
/// when asked for each.
fn stripes_per_breaker() -> usize {
    static STRIPES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *STRIPES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .clamp(4, 64)
            .next_power_of_two()
    })
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self::with_stripes(if cfg!(loom) { 1 } else { stripes_per_breaker() })
    }

    /// The shared stripe alone: every thread counts on it with atomic adds.
    pub(crate) fn one() -> Self {
        Self::with_stripes(1)
    }

    fn with_stripes(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes).map(|_| Stripe::new()).collect(),
        }
    }

    /// Memory the counters take, for the docs' per-breaker figures.
    pub(crate) fn size_in_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.stripes)
    }

    /// Stripe `index`, wrapped to the number of stripes. Always `Some` (there is at least one
    /// stripe, and the length is a power of two); `get` rather than indexing keeps a panic branch
    /// off the hot path, where it would make the caller keep its permit in memory for unwinding.
    fn stripe(&self, index: usize) -> Option<&Stripe> {
        self.stripes.get(self.wrap(index))
    }

    /// Stripe `index` wrapped to the number of stripes: a thread's own stripe in a breaker with
    /// a stripe per thread, the shared stripe 0 in one with a single stripe.
    #[inline]
    fn wrap(&self, index: usize) -> usize {
        index & self.stripes.len().wrapping_sub(1)
    }

    /// Adds `count` on this thread's stripe.
    pub(crate) fn add(&self, count: Count) {
        self.add_at(stripe_index(), count);
    }

    /// Adds `count` on stripe `index` (a thread's, from [`enter`]).
    #[inline]
    pub(crate) fn add_at(&self, index: usize, count: Count) {
        let index = self.wrap(index);
        let Some(stripe) = self.stripes.get(index) else {
            return;
        };
        // Stripe 0 is shared; any other is this thread's own.
        let owned = index != 0;
        let counter = match count {
            Count::Success => &stripe.successes,
            Count::Failure => &stripe.failures,
            Count::TimeoutFailure => {
                bump(&stripe.timeouts, owned);
                &stripe.failures
            }
            Count::ProbeTimeout => &stripe.timeouts,
            Count::Ignored => &stripe.ignored,
            Count::Cancelled => &stripe.cancelled,
            Count::RejectedOpen => &stripe.rejected_open,
            Count::RejectedHalfOpen => &stripe.rejected_half_open,
        };
        bump(counter, owned);
    }

    pub(crate) fn add_latency_at(&self, index: usize, latency: Duration) {
        let Some(stripe) = self.stripe(index) else {
            return;
        };
        let nanos = duration_nanos(latency);
        stripe.latency_samples.fetch_add(1, Relaxed);
        let before = stripe.latency_sum.fetch_add(nanos, Relaxed);
        if before.checked_add(nanos).is_none() {
            // This add wrapped the low word: exactly one add does, for each wrap.
            stripe.latency_sum_high.fetch_add(1, Relaxed);
        }
        stripe.latency_min.fetch_min(nanos, Relaxed);
        stripe.latency_max.fetch_max(nanos, Relaxed);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| latency <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        stripe.latency_buckets[bucket].fetch_add(1, Relaxed);
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        let mut min = u64::MAX;
        let mut max = 0;
        let mut sum: u128 = 0;
        for stripe in &*self.stripes {
            totals.successes += stripe.successes.load(Relaxed);
            totals.failures += stripe.failures.load(Relaxed);
            totals.timeouts += stripe.timeouts.load(Relaxed);
            totals.ignored += stripe.ignored.load(Relaxed);
            totals.cancelled += stripe.cancelled.load(Relaxed);
            totals.rejected_open += stripe.rejected_open.load(Relaxed);
            totals.rejected_half_open += stripe.rejected_half_open.load(Relaxed);
            totals.latency.samples += stripe.latency_samples.load(Relaxed);
            sum += stripe.latency_sum_nanos();
            min = min.min(stripe.latency_min.load(Relaxed));
            max = max.max(stripe.latency_max.load(Relaxed));
            for (total, bucket) in totals
                .latency
                .buckets
                .iter_mut()
                .zip(&stripe.latency_buckets)
            {
                *total += bucket.load(Relaxed);
            }
        }
        if totals.latency.samples > 0 {
            totals.latency.min = Some(Duration::from_nanos(min));
            totals.latency.max = Some(Duration::from_nanos(max));
            let secs = u64::try_from(sum / 1_000_000_000).unwrap_or(u64::MAX);
            #[allow(clippy::cast_possible_truncation)] // < 1e9
            let nanos = (sum % 1_000_000_000) as u32;
            totals.latency.sum = Duration::new(secs, nanos);
        }
        totals
    }
}

/// Adds one to `counter`: a plain load and store on a stripe this thread owns (no other thread
/// writes it), an atomic add on the shared one.
#[inline]
fn bump(counter: &AtomicU64, owned: bool) {
    if owned {
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    } else {
        counter.fetch_add(1, Relaxed);
    }
}

/// What a thread keeps: its stripe index (0, the shared one, or one of its own), and `ASSIGNED`
/// once it has one.
const ASSIGNED: u64 = 1 << 63;

thread_local! {
    static THREAD: Cell<u64> = const { Cell::new(0) };
    /// Gives the thread's stripe back when it exits.
    static CLAIM: Claim = const { Claim(Cell::new(0)) };
}

/// The stripes owned by a thread now, one bit each (bit 0, the shared stripe, is never set).
static CLAIMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A thread's claimed stripe, given back on exit.
struct Claim(Cell<u64>);

impl Drop for Claim {
    fn drop(&mut self) {
        let stripe = self.0.get();
        if stripe != 0 {
            // From now on this thread counts on the shared stripe (other destructors may still
            // call a breaker); then the stripe is free, and whoever claims it next (Acquire) sees
            // every count this thread made on it (Release).
            THREAD.with(|cell| cell.set(ASSIGNED));
            CLAIMED.fetch_and(!(1 << stripe), std::sync::atomic::Ordering::Release);
        }
    }
}

/// A stripe of this thread's own, if one is free: 1 to the number of stripes less one.
fn claim() -> Option<u64> {
    let stripes = stripes_per_breaker() as u64;
    let usable = if stripes >= 64 {
        !1
    } else {
        ((1 << stripes) - 1) & !1
    };
    let mut claimed = CLAIMED.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let free = usable & !claimed;
        if free == 0 {
            return None;
        }
        let stripe = u64::from(free.trailing_zeros());
        match CLAIMED.compare_exchange_weak(
            claimed,
            claimed | (1 << stripe),
            std::sync::atomic::Ordering::Acquire,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return Some(stripe),
            Err(actual) => claimed = actual,
        }
    }
}

/// Gives this thread a stripe: one of its own, registered to be given back at exit, or the
/// shared one.
#[cold]
#[inline(never)]
fn assign() -> u64 {
    let owned = claim().and_then(|stripe| {
        // A thread that is exiting cannot register its claim: it gives it back at once.
        let registered = CLAIM.try_with(|claim| claim.0.set(stripe)).is_ok();
        if !registered {
            CLAIMED.fetch_and(!(1 << stripe), std::sync::atomic::Ordering::Release);
        }
        registered.then_some(stripe)
    });
    match owned {
        Some(stripe) => ASSIGNED | stripe,
        None => ASSIGNED,
    }
}

#[allow(clippy::cast_possible_truncation)] // 6 bits
fn stripe_of(state: u64) -> usize {
    (state & 0x3f) as usize
}

/// This thread's stripe index: its own stripe's, or 0 for the shared one.
#[inline]
pub(crate) fn stripe_index() -> usize {
    if cfg!(loom) {
        return 0;
    }
    THREAD.with(|cell| {
        let state = cell.get();
        if state & ASSIGNED != 0 {
            return stripe_of(state);
        }
        let state = assign();
        cell.set(state);
        stripe_of(state)
    })
}

impl Counters {
    /// For one admitted call: whether to time it.
    #[inline]
    pub(crate) fn enter(&self, sampling: Sampling) -> bool {
        if cfg!(loom) {
            return sampling.multiplier == 0;
        }
        self.stripe(stripe_index()).is_some_and(|stripe| {
            let ended = stripe.successes.load(Relaxed) + stripe.failures.load(Relaxed);
            sampling.picks(ended)
        })
    }
}
