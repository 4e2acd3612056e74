//! Sliding windows over recent outcomes, recorded without a lock.
//!
//! - [`CountWindow`]: the last N outcomes, a ring. Each call takes the next position with one
//!   atomic add and writes its outcome into that slot; failure and slow tallies change only when
//!   the slot's old outcome differs from the new one, so a healthy breaker's success costs one add
//!   and one load.
//! - [`TimeWindow`]: the last T, in B buckets that age out whole. It keeps running totals (one
//!   atomic add per success, two per failure, each in a 64-bit counter of its own) and the totals
//!   at the start of each of the last B buckets; the window is the difference. Moving to a new bucket (once per bucket width, by whichever call first sees
//!   the time) writes those starts, under a flag, not a lock.
//!
//! Both are fixed in size when the breaker is built. Ignored and cancelled calls are not recorded.

use crate::sync::{spin_yield, AtomicU64, AtomicU8, Ordering};

/// What a window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WindowCounts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// A time window's bucket width in clock nanoseconds; `None` for a count window, which
    /// needs no time.
    pub(crate) fn bucket_nanos(&self) -> Option<u64> {
        match self {
            Self::Count(_) => None,
            Self::Time(window) => Some(window.bucket_nanos),
        }
    }

    /// Adds one outcome and returns what the window holds after it (`None` while a time window
    /// is moving to a new bucket, when the figures are briefly unsettled).
    pub(crate) fn record(&self, failure: bool, slow: bool, now: u64) -> Option<WindowCounts> {
        match self {
            Self::Count(window) => Some(window.record(failure, slow)),
            Self::Time(window) => window.record(failure, slow, now),
        }
    }

    pub(crate) fn counts(&self, now: u64) -> Option<WindowCounts> {
        match self {
            Self::Count(window) => Some(window.counts()),
            Self::Time(window) => window.counts(now),
        }
    }

    /// Empties the window. Called under the breaker's lock, on a transition.
    pub(crate) fn clear(&self, now: u64) {
        match self {
            Self::Count(window) => window.clear(),
            Self::Time(window) => window.clear(now),
        }
    }

    pub(crate) fn size_in_bytes(&self) -> usize {
        match self {
            Self::Count(window) => std::mem::size_of_val(&*window.slots),
            Self::Time(window) => std::mem::size_of_val(&*window.starts),
        }
    }
}

// ===== count window =====

const PRESENT: u8 = 1;
const FAILURE: u8 = 2;
const SLOW: u8 = 4;
const HIGH: u32 = 32;
const LOW_MASK: u64 = 0xffff_ffff;

/// What an outcome adds to a tally: failures in the low half, slow calls in the high half.
fn tally_of(slot: u8) -> u64 {
    u64::from(slot & FAILURE != 0) | (u64::from(slot & SLOW != 0) << HIGH)
}

fn outcome_slot(failure: bool, slow: bool) -> u8 {
    PRESENT | if failure { FAILURE } else { 0 } | if slow { SLOW } else { 0 }
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u32,
    /// `u64::MAX / size + 1`, for a remainder without a division on the call path.
    fastmod: u64,
    /// Positions handed out so far.
    cursor: AtomicU64,
    /// The cursor when the window was last cleared.
    base: AtomicU64,
    slots: Box<[AtomicU8]>,
    /// Failures (low 32 bits) and slow calls (high 32 bits) among the slots. A writer adds its
    /// outcome before it swaps it in, and a replaced outcome is taken away after it is swapped
    /// out, so neither half ever goes below zero.
    tally: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        Self {
            size,
            fastmod: (u64::MAX / u64::from(size)).wrapping_add(1),
            cursor: AtomicU64::new(0),
            base: AtomicU64::new(0),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            tally: AtomicU64::new(0),
        }
    }

    /// `position % size` by multiplication (Lemire's fastmod). Positions wrap at 2^32: one
    /// discontinuity every four billion calls, which only reuses one slot early.
    #[allow(clippy::cast_possible_truncation)]
    fn slot(&self, position: u64) -> &AtomicU8 {
        let low = self.fastmod.wrapping_mul(u64::from(position as u32));
        let index = ((u128::from(low) * u128::from(self.size)) >> 64) as usize;
        &self.slots[index]
    }

    fn record(&self, failure: bool, slow: bool) -> WindowCounts {
        let value = outcome_slot(failure, slow);
        let position = self.cursor.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(position);
        // Acquire: a writer that finds its outcome already there skips the tally, so it must see
        // the add of whoever wrote it when it reads the tally next.
        if slot.load(Ordering::Acquire) != value {
            self.replace(slot, value);
        }
        if failure || slow {
            self.counts_at(position + 1)
        } else {
            WindowCounts::default()
        }
    }

    fn replace(&self, slot: &AtomicU8, value: u8) {
        self.tally.fetch_add(tally_of(value), Ordering::Relaxed);
        // AcqRel: whoever swaps this value out later has seen the add above.
        let old = slot.swap(value, Ordering::AcqRel);
        self.tally.fetch_sub(tally_of(old), Ordering::Relaxed);
    }

    fn counts(&self) -> WindowCounts {
        self.counts_at(self.cursor.load(Ordering::Relaxed))
    }

    fn counts_at(&self, cursor: u64) -> WindowCounts {
        let tally = self.tally.load(Ordering::Relaxed);
        let calls = cursor
            .saturating_sub(self.base.load(Ordering::Relaxed))
            .min(u64::from(self.size));
        // A writer racing a clear may leave a stale outcome behind for a moment.
        WindowCounts {
            calls,
            failures: (tally & LOW_MASK).min(calls),
            slow: (tally >> HIGH).min(calls),
        }
    }

    fn clear(&self) {
        self.base
            .store(self.cursor.load(Ordering::Relaxed), Ordering::Relaxed);
        for slot in &*self.slots {
            if slot.load(Ordering::Relaxed) != 0 {
                let old = slot.swap(0, Ordering::AcqRel);
                self.tally.fetch_sub(tally_of(old), Ordering::Relaxed);
            }
        }
    }
}

// ===== time window =====

/// Set in `bucket` while a thread writes bucket starts.
const MOVING: u64 = 1 << 63;

/// Running totals since the window was made. Each in a 64-bit counter of its own: a window may
/// hold any number of calls (a 24-hour window at 50,000 calls a second holds over 2^32), and the
/// counters would take 500,000 years at a million calls a second to wrap.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    calls: u64,
    failures: u64,
    slow: u64,
}

impl Totals {
    /// The calls between `start` and `self`.
    fn since(self, start: Self) -> WindowCounts {
        // A start written by a move that raced the reads may be ahead by a call: never below 0.
        let calls = self.calls.saturating_sub(start.calls);
        WindowCounts {
            calls,
            failures: self.failures.saturating_sub(start.failures).min(calls),
            slow: self.slow.saturating_sub(start.slow).min(calls),
        }
    }
}

#[derive(Debug)]
struct BucketStart {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl BucketStart {
    /// Release: a reader that sees a start also sees running totals at least as large. The calls
    /// last, and read first (`get`): a reader that sees the new calls sees the new failures and
    /// slow calls too, so a start read while a move rewrites it has its failures from no earlier
    /// than its calls, which can only leave failures out of the window, never add some.
    fn set(&self, totals: Totals) {
        self.failures.store(totals.failures, Ordering::Release);
        self.slow.store(totals.slow, Ordering::Release);
        self.calls.store(totals.calls, Ordering::Release);
    }

    fn get(&self) -> Totals {
        let calls = self.calls.load(Ordering::Acquire);
        Totals {
            calls,
            failures: self.failures.load(Ordering::Acquire),
            slow: self.slow.load(Ordering::Acquire),
        }
    }
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: u64,
    /// The current bucket's number (time / bucket width), with `MOVING` while it changes.
    bucket: AtomicU64,
    /// When the current bucket ends: the call path's only check.
    bucket_end: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    /// The totals when each of the last `buckets` buckets began, at `bucket % buckets`.
    starts: Box<[BucketStart]>,
}

impl TimeWindow {
    pub(crate) fn new(duration_nanos: u64, buckets: u32, now: u64) -> Self {
        let buckets = u64::from(buckets);
        let bucket_nanos = (duration_nanos / buckets).max(1);
        let current = now / bucket_nanos;
        Self {
            bucket_nanos,
            buckets,
            bucket: AtomicU64::new(current),
            bucket_end: AtomicU64::new((current + 1).saturating_mul(bucket_nanos)),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            starts: (0..buckets)
                .map(|_| BucketStart {
                    calls: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    #[allow(clippy::cast_possible_truncation)] // the remainder is below `buckets`, a u32
    fn start(&self, bucket: u64) -> &BucketStart {
        &self.starts[(bucket % self.buckets) as usize]
    }

    fn record(&self, failure: bool, slow: bool, now: u64) -> Option<WindowCounts> {
        self.advance(now);
        // What the call was first, the call last: a reader that sees the call sees what it was
        // (`now_totals` reads in the other order).
        if failure {
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
        if slow {
            self.slow.fetch_add(1, Ordering::AcqRel);
        }
        self.calls.fetch_add(1, Ordering::AcqRel);
        if failure || slow {
            self.counts(now)
        } else {
            None
        }
    }

    /// Moves to the bucket `now` falls in, if no other thread is doing it already.
    fn advance(&self, now: u64) {
        if now < self.bucket_end.load(Ordering::Acquire) {
            return;
        }
        let target = now / self.bucket_nanos;
        let current = self.bucket.load(Ordering::Acquire);
        if current < target && self.take_moving(current) {
            self.begin_buckets(current + 1, target);
        }
    }

    /// Sets `MOVING` if the bucket is still `current` and nobody holds it.
    fn take_moving(&self, current: u64) -> bool {
        current & MOVING == 0
            && self
                .bucket
                .compare_exchange(
                    current,
                    current | MOVING,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// With `MOVING` held: buckets `from..=to` begin now, with the current totals.
    fn begin_buckets(&self, from: u64, to: u64) {
        let totals = self.now_totals();
        for bucket in from.max((to + 1).saturating_sub(self.buckets))..=to {
            self.start(bucket).set(totals);
        }
        self.publish(to);
    }

    /// The running totals. The calls first: every call counted here has its failure and slowness
    /// counted too. A call being recorded at this moment may have its failure in and its call not
    /// yet (the counters are separate words, not read at one instant): a bucket start taken then
    /// leaves that failure out of the window, and a window read then counts it a moment early.
    /// Either is off by at most the calls being recorded at that moment.
    fn now_totals(&self) -> Totals {
        let calls = self.calls.load(Ordering::Acquire);
        Totals {
            calls,
            failures: self.failures.load(Ordering::Acquire),
            slow: self.slow.load(Ordering::Acquire),
        }
    }

    /// Ends a move: `to` is the current bucket. Releases `MOVING`.
    fn publish(&self, to: u64) {
        self.bucket_end.store(
            (to + 1).saturating_mul(self.bucket_nanos),
            Ordering::Release,
        );
        // Racing CASes on `bucket`: a swap, so loom orders it right (tokio-rs/loom#254).
        self.bucket.swap(to, Ordering::AcqRel);
    }

    fn counts(&self, now: u64) -> Option<WindowCounts> {
        self.advance(now);
        let bucket = self.bucket.load(Ordering::Acquire);
        if bucket & MOVING != 0 {
            return None;
        }
        // The oldest bucket in the window began `buckets - 1` buckets ago; its start shares a
        // slot with the bucket after the current one.
        let oldest = self.start(bucket + 1);
        // The start before the running totals, with Acquire: a start written by a move that
        // began after `bucket` was read is a snapshot the totals read next cannot be below, so
        // the difference does not go below zero (read the other way round, it could).
        let start = oldest.get();
        Some(self.now_totals().since(start))
    }

    fn clear(&self, now: u64) {
        loop {
            let current = self.bucket.load(Ordering::Acquire);
            if self.take_moving(current) {
                // Every slot, whichever buckets they stand for, starts now: nothing older counts.
                let totals = self.now_totals();
                for start in &*self.starts {
                    start.set(totals);
                }
                self.publish((now / self.bucket_nanos).max(current));
                return;
            }
            // Another thread is writing bucket starts: a handful of stores.
            spin_yield();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_window_counts_past_four_billion_calls() {
        // A day in 60 buckets, holding 2^32 + 1 successes (50,000 calls a second for a day is
        // more): set directly, as recording them one by one would take minutes.
        let window = TimeWindow::new(86_400 * 1_000_000_000, 60, 0);
        window.calls.fetch_add((1 << 32) + 1, Ordering::Relaxed);
        let counts = window.record(true, false, 1).unwrap();
        assert_eq!(
            counts,
            WindowCounts {
                calls: (1 << 32) + 2,
                failures: 1,
                slow: 0,
            }
        );
    }
}
