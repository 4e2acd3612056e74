//! Permits: one admitted call, recorded exactly once.

use std::borrow::Borrow;
use std::fmt;

use super::core::{Ending, Ticket};
use super::CircuitBreaker;
use crate::Outcome;

/// The right to make one call through a breaker.
///
/// Record how the call went with [`success`](Self::success), [`failure`](Self::failure),
/// [`timeout`](Self::timeout), [`ignored`](Self::ignored) or [`record`](Self::record). A permit
/// dropped without being recorded counts as cancelled (see
/// [`CancelledCalls`](crate::CancelledCalls)) and frees its half-open probe slot.
///
/// `Permit<&CircuitBreaker>` borrows the breaker ([`CircuitBreaker::try_acquire`]);
/// [`OwnedPermit`] holds a handle of its own and can move into a spawned task
/// ([`CircuitBreaker::try_acquire_owned`]).
#[must_use = "a permit dropped without an outcome counts as a cancelled call"]
pub struct Permit<B: Borrow<CircuitBreaker>> {
    breaker: B,
    /// Spent once the call is recorded.
    ticket: Ticket,
}

/// A permit that owns a handle to its breaker.
pub type OwnedPermit = Permit<CircuitBreaker>;

impl<B: Borrow<CircuitBreaker>> Permit<B> {
    pub(crate) fn new(breaker: B, ticket: Ticket) -> Self {
        Self { breaker, ticket }
    }

    /// The call succeeded.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The call failed.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// The call timed out: a failure, also counted as a timeout.
    pub fn timeout(self) {
        self.record(Outcome::Timeout);
    }

    /// The call finished but says nothing about the service's health.
    pub fn ignored(self) {
        self.record(Outcome::Ignored);
    }

    /// Records `outcome`.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.end(Ending::Finished(outcome));
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.is_probe()
    }

    /// The breaker generation the call was admitted in. Its outcome moves the state only while
    /// the breaker is still in that generation.
    pub fn generation(&self) -> u64 {
        self.ticket.generation()
    }

    /// Gives the permit back unused, for a call that was never made: frees its probe slot, if it
    /// holds one, and counts nothing.
    pub(crate) fn release(mut self) {
        if self.ticket.is_live() {
            let ticket = self.ticket.spend();
            self.breaker.borrow().shared.release(ticket);
        }
    }

    #[inline]
    fn end(&mut self, ending: Ending) {
        if self.ticket.is_live() {
            let ticket = self.ticket.spend();
            self.breaker.borrow().shared.record(ticket, ending);
        }
    }
}

impl<B: Borrow<CircuitBreaker>> Drop for Permit<B> {
    #[inline]
    fn drop(&mut self) {
        self.end(Ending::Cancelled);
    }
}

impl<B: Borrow<CircuitBreaker>> fmt::Debug for Permit<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.borrow().name())
            .field("generation", &self.generation())
            .field("probe", &self.is_probe())
            .finish()
    }
}
