use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_circuit_breaker::{Classify, OwnedPermit, Rejection};

use crate::rejection::RejectionResponse;

pin_project! {
    /// The response future of
    /// [`CircuitBreakerRouteService`](super::CircuitBreakerRouteService): the route's response,
    /// classified and recorded with the call's permit, or the `503` of a rejection. Dropping it
    /// unfinished releases the permit (the call counts as cancelled).
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Rejected {
            rejection: Option<Rejection>,
        },
        Called {
            #[pin]
            future: F,
            permit: Option<OwnedPermit>,
            classifier: C,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) const fn called(future: F, permit: OwnedPermit, classifier: C) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) const fn rejected(rejection: Rejection) -> Self {
        Self {
            state: State::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<F, C, T> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, Infallible>>,
    T: IntoResponse,
    C: Classify<Response, BoxError>,
{
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { rejection } => {
                let rejection = rejection
                    .take()
                    .expect("circuit breaker route future polled after completion");
                Poll::Ready(Ok(RejectionResponse::new(rejection).into_response()))
            }
            StateProj::Called {
                future,
                permit,
                classifier,
            } => {
                let Ok(response) = ready!(future.poll(cx));
                // The classifier speaks `Result<Response, BoxError>`, as it does behind the
                // engine's layer, so one classifier serves both; here the result is always `Ok`.
                let result: Result<Response, BoxError> = Ok(response.into_response());
                if let Some(permit) = permit.take() {
                    permit.record(classifier.classify(&result));
                }
                let Ok(response) = result else {
                    unreachable!("the route's result is built as Ok")
                };
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
