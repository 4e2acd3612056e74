//! Why a call did not go through, or went through and failed.
//!
//! A breaker turns a call away in one of two ways, each its own type so code above (a fallback, a
//! retry policy, `err.downcast_ref::<CircuitOpen>()` on a `BoxError`) can tell them apart:
//!
//! - [`CircuitOpen`]: the circuit is open (or isolated); carries the time left until the next probe.
//! - [`HalfOpenFull`]: the circuit is half-open and all probe slots are taken.
//!
//! [`Rejection`] is either of them, as returned by [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire);
//! [`CircuitBreakerError`] adds the operation's own error, as returned by
//! [`CircuitBreaker::call`](crate::CircuitBreaker::call).

use std::error::Error;
use std::fmt;
use std::time::Duration;

use smol_str::SmolStr;

/// The circuit is open: the call was rejected without reaching the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    /// Inline up to 23 bytes: a rejection copies the name rather than touching a reference count
    /// every thread shares.
    breaker: SmolStr,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    pub(crate) fn new(breaker: SmolStr, retry_after: Option<Duration>) -> Self {
        Self {
            breaker,
            retry_after,
        }
    }

    /// The name of the breaker that rejected the call.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// Time left until the breaker lets a probe through; `None` while it is isolated by hand.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(after) => write!(
                f,
                "circuit open: breaker `{}`, next probe in {}",
                self.breaker,
                crate::event::Human(after)
            ),
            None => write!(f, "circuit open: breaker `{}` is isolated", self.breaker),
        }
    }
}

impl Error for CircuitOpen {}

/// The circuit is half-open and already has as many probes in flight as it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfOpenFull {
    breaker: SmolStr,
}

impl HalfOpenFull {
    pub(crate) fn new(breaker: SmolStr) -> Self {
        Self { breaker }
    }

    /// The name of the breaker that rejected the call.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }
}

impl fmt::Display for HalfOpenFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit half-open: breaker `{}` has no free probe slot",
            self.breaker
        )
    }
}

impl Error for HalfOpenFull {}

/// A call turned away by a breaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The circuit is open or isolated.
    #[error(transparent)]
    Open(CircuitOpen),
    /// The circuit is half-open with every probe slot taken.
    #[error(transparent)]
    HalfOpenFull(HalfOpenFull),
}

impl Rejection {
    /// The name of the breaker that rejected the call.
    pub fn breaker(&self) -> &str {
        match self {
            Self::Open(open) => open.breaker(),
            Self::HalfOpenFull(full) => full.breaker(),
        }
    }

    /// Time left until the next probe, when the breaker knows it (open, not isolated).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Open(open) => open.retry_after(),
            Self::HalfOpenFull(_) => None,
        }
    }

    /// The rejection as a [`BoxError`](tower::BoxError) holding the concrete type, so
    /// `err.downcast_ref::<CircuitOpen>()` (or `HalfOpenFull`) finds it.
    pub fn into_error(self) -> tower::BoxError {
        match self {
            Self::Open(open) => Box::new(open),
            Self::HalfOpenFull(full) => Box::new(full),
        }
    }

    /// The rejection in `error` or anywhere down its [`source`](Error::source) chain, if a
    /// breaker rejected the call (a layer between may have wrapped it).
    pub fn find(error: &(dyn Error + 'static)) -> Option<Rejection> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(open) = error.downcast_ref::<CircuitOpen>() {
                return Some(Self::Open(open.clone()));
            }
            if let Some(full) = error.downcast_ref::<HalfOpenFull>() {
                return Some(Self::HalfOpenFull(full.clone()));
            }
            current = error.source();
        }
        None
    }
}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): a rejection, or the
/// operation's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CircuitBreakerError<E> {
    /// The circuit is open or isolated; the operation was not run.
    Open(CircuitOpen),
    /// The circuit is half-open with every probe slot taken; the operation was not run.
    HalfOpenFull(HalfOpenFull),
    /// The operation ran and returned this error.
    OperationFailed(E),
}

impl<E> CircuitBreakerError<E> {
    /// Whether the breaker turned the call away (the operation did not run).
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Self::OperationFailed(_))
    }

    /// Time left until the next probe, for an open-circuit rejection.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Open(open) => open.retry_after(),
            _ => None,
        }
    }

    /// The operation's error, if it ran and failed.
    pub fn into_operation_error(self) -> Option<E> {
        match self {
            Self::OperationFailed(err) => Some(err),
            _ => None,
        }
    }
}

impl<E> From<Rejection> for CircuitBreakerError<E> {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Open(open) => Self::Open(open),
            Rejection::HalfOpenFull(full) => Self::HalfOpenFull(full),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CircuitBreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(open) => open.fmt(f),
            Self::HalfOpenFull(full) => full.fmt(f),
            // Transparent: the operation's error speaks for itself.
            Self::OperationFailed(err) => err.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for CircuitBreakerError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::OperationFailed(err) => err.source(),
            _ => None,
        }
    }
}
