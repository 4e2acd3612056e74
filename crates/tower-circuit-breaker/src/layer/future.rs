use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower::BoxError;

use std::sync::Arc;

use super::record::Record;
use crate::{CircuitBreaker, Permit};

pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService) and
    /// [`KeyedCircuitBreakerService`](crate::keyed::KeyedCircuitBreakerService): the inner call
    /// with its permit, or a rejection. Dropping it unfinished releases the permit (the call
    /// counts as cancelled).
    ///
    /// `B` is how the permit holds its breaker: a shared handle, or a keyed breaker's
    /// [`KeyedBreaker`](crate::keyed::KeyedBreaker), which keeps it from being evicted until the
    /// call's outcome is recorded.
    pub struct ResponseFuture<F, C, B = Arc<CircuitBreaker>>
    where
        B: Borrow<CircuitBreaker>,
    {
        #[pin]
        state: State<F, C, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, B>
    where
        B: Borrow<CircuitBreaker>,
    {
        Rejected {
            error: Option<BoxError>,
        },
        Called {
            #[pin]
            future: F,
            permit: Option<Permit<B>>,
            classifier: C,
        },
    }
}

impl<F, C, B: Borrow<CircuitBreaker>> ResponseFuture<F, C, B> {
    #[inline]
    pub(crate) fn called(future: F, permit: Permit<B>, classifier: C) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(error: BoxError) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn not_ready() -> Self {
        Self::rejected(Box::new(NotReady))
    }
}

impl<F, C, B, T, E> Future for ResponseFuture<F, C, B>
where
    B: Borrow<CircuitBreaker>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Record<T, B>,
{
    type Output = Result<C::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Box::new(PolledAfterCompletion)))),
            StateProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                Poll::Ready(match permit.take() {
                    Some(permit) => classifier.record(result, permit),
                    None => Err(Box::new(PolledAfterCompletion)),
                })
            }
        }
    }
}

impl<F, C, B: Borrow<CircuitBreaker>> fmt::Debug for ResponseFuture<F, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// `call` came without a `poll_ready` that returned ready: the inner service was not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker service called before poll_ready returned ready")]
pub struct NotReady;

/// A rejected response future was polled again after it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker response future polled after completion")]
struct PolledAfterCompletion;
