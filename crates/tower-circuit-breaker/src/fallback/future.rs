use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use super::{ErrorPredicate, Fallback, NoResponse, ResponsePredicate};

pin_project! {
    /// The response future of [`FallbackService`](super::FallbackService): the inner call, then
    /// the fallback if the inner call fails with an error the error predicate `P` selects, or
    /// answers with a response the response predicate `R` selects.
    pub struct ResponseFuture<Fut, F, P, Request, R = NoResponse>
    where
        F: Fallback<Request>,
    {
        #[pin]
        state: State<Fut, F, P, R, Request>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, F, P, R, Request>
    where
        F: Fallback<Request>,
    {
        Inner {
            #[pin]
            future: Fut,
            // Taken when the inner call fails or its response is selected.
            armed: Option<Armed<F, P, R, F::Saved>>,
        },
        Fallback {
            #[pin]
            future: F::Future,
        },
    }
}

/// What a call needs to fall back: the fallback, the predicates, and what it kept of the request.
struct Armed<F, P, R, Saved> {
    fallback: F,
    predicate: P,
    responses: R,
    saved: Saved,
}

impl<Fut, F, P, Request, R> ResponseFuture<Fut, F, P, Request, R>
where
    F: Fallback<Request>,
{
    pub(crate) fn new(
        future: Fut,
        fallback: F,
        predicate: P,
        responses: R,
        saved: F::Saved,
    ) -> Self {
        Self {
            state: State::Inner {
                future,
                armed: Some(Armed {
                    fallback,
                    predicate,
                    responses,
                    saved,
                }),
            },
        }
    }
}

impl<Fut, T, E, F, P, Request, R> Future for ResponseFuture<Fut, F, P, Request, R>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    F: Fallback<Request, Response = T>,
    P: ErrorPredicate,
    R: ResponsePredicate<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Inner { future, armed } => {
                    // A selected response goes to the fallback as the error its predicate made;
                    // the error predicate is for the inner service's errors only.
                    let (error, selected) = match ready!(future.poll(cx)) {
                        Ok(response) => {
                            let Some(armed) = armed.as_ref() else {
                                return Poll::Ready(Ok(response));
                            };
                            // With `NoResponse` this is `Ok(response)`, and compiles away.
                            match armed.responses.check(response) {
                                Ok(response) => return Poll::Ready(Ok(response)),
                                Err(error) => (error, true),
                            }
                        }
                        Err(error) => (error.into(), false),
                    };
                    let Some(armed) = armed.take() else {
                        return Poll::Ready(Err(error));
                    };
                    if !selected && !armed.predicate.matches(&error) {
                        return Poll::Ready(Err(error));
                    }
                    let future = armed.fallback.call(armed.saved, error);
                    state.set(State::Fallback { future });
                }
                StateProj::Fallback { future } => return future.poll(cx).map_err(Into::into),
            }
        }
    }
}

impl<Fut, F, P, Request, R> fmt::Debug for ResponseFuture<Fut, F, P, Request, R>
where
    F: Fallback<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Inner { .. } => "inner",
            State::Fallback { .. } => "fallback",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of a [`FallbackTo`](super::FallbackTo): waits for the fallback service to be
    /// ready, then calls it with the saved request.
    pub struct FallbackToFuture<T, Request>
    where
        T: Service<Request>,
    {
        #[pin]
        state: ToState<T, Request>,
    }
}

pin_project! {
    #[project = ToStateProj]
    enum ToState<T, Request>
    where
        T: Service<Request>,
    {
        NotReady {
            service: T,
            request: Option<Request>,
        },
        Called {
            #[pin]
            future: T::Future,
        },
    }
}

impl<T, Request> FallbackToFuture<T, Request>
where
    T: Service<Request>,
{
    pub(crate) fn new(service: T, request: Request) -> Self {
        Self {
            state: ToState::NotReady {
                service,
                request: Some(request),
            },
        }
    }
}

impl<T, Request> Future for FallbackToFuture<T, Request>
where
    T: Service<Request>,
    T::Error: Into<BoxError>,
{
    type Output = Result<T::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                ToStateProj::NotReady { service, request } => {
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let request = request
                        .take()
                        .expect("the request is taken only on leaving this state");
                    let future = service.call(request);
                    state.set(ToState::Called { future });
                }
                ToStateProj::Called { future } => return future.poll(cx).map_err(Into::into),
            }
        }
    }
}

impl<T, Request> fmt::Debug for FallbackToFuture<T, Request>
where
    T: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ToState::NotReady { .. } => "waiting for the service",
            ToState::Called { .. } => "called",
        };
        f.debug_struct("FallbackToFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
