//! The synchronisation primitives of the engine, swapped for loom's when built with `--cfg loom`,
//! so the model checker sees every atomic and lock of the state machine.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Mutex, MutexGuard,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Mutex, MutexGuard,
};

/// Locks `mutex`, ignoring poison: no code that runs under these locks can panic half-way through
/// a transition, and a breaker that stopped working after an unrelated panic would be worse.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lets another thread finish a short critical section (a few stores) that this one waits on.
pub(crate) fn spin_yield() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
