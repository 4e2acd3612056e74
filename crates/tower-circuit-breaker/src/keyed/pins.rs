//! The handshake between calls and eviction on one keyed breaker.

// Public under `--cfg loom` only, for the model checks.
#![cfg_attr(not(loom), allow(unreachable_pub))]

use crate::sync::{AtomicU64, Ordering};

/// Set once the breaker is evicted: no call can pin it from then on.
const EVICTED: u64 = 1 << 63;

/// Calls in flight on one keyed breaker, and whether it was evicted.
///
/// Every change is a read-modify-write of one word, so all of them fall in one order: a call's
/// pin either comes before an eviction's compare-exchange (which then fails) or after it (and
/// sees [`EVICTED`]). A call unpins with `Release` once its outcome is recorded, and an eviction
/// that finds no pin reads with `Acquire`, so the state it judges the breaker by includes every
/// outcome of the calls that pinned it.
#[derive(Debug)]
#[doc(hidden)]
pub struct Pins(AtomicU64);

impl Pins {
    /// No call in flight.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Pins for one call, unless evicted.
    #[inline]
    pub fn pin(&self) -> bool {
        if self.0.fetch_add(1, Ordering::Relaxed) & EVICTED != 0 {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Pins a breaker that is never evicted.
    pub fn pin_always(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends a call's pin, after its outcome is recorded.
    #[inline]
    pub fn unpin(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }

    /// Evicts if no call is in flight and `idle` (asked once nothing can pin any more) says so.
    pub fn evict_if(&self, idle: impl FnOnce() -> bool) -> bool {
        if self
            .0
            .compare_exchange(0, EVICTED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let evict = idle();
        if !evict {
            self.0.fetch_and(!EVICTED, Ordering::Relaxed);
        }
        evict
    }
}
