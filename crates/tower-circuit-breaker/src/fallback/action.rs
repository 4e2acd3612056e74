use std::convert::Infallible;
use std::fmt;
use std::future::{self, Future};

use tower::BoxError;
use tower_service::Service;

use super::future::FallbackToFuture;

/// What answers in place of a selected error, or a selected response: the fallback of a
/// [`FallbackService`](super::FallbackService).
///
/// A selected response reaches the fallback as an error too, the one its
/// [`ResponsePredicate`](super::ResponsePredicate) made of it (for HTTP responses a
/// `FailedResponse` with the status and headers), so every fallback answers both.
///
/// A fallback is cloned into each call's future (as tower's `MapErr` clones its closure), so it
/// can run after the inner service has taken the request. Three are ready-made:
///
/// - [`FallbackFn`]: an async closure given the error, `FnOnce(BoxError) -> impl Future<Output =
///   Result<Response, E>>`. It keeps nothing of the request.
/// - [`FallbackSyncFn`]: a closure given the error that returns the response,
///   `FnOnce(BoxError) -> Response`.
/// - [`FallbackTo`]: another [`Service`] for the same request (a replica, a cache). The inner
///   service consumes the request, so each call keeps a clone of it (`Request: Clone`) and the
///   fallback service gets the clone; the error is dropped.
///
/// Implement it for a fallback that needs something else from the request (a header, a key),
/// keeping just that in [`Saved`](Fallback::Saved).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a fallback for requests of type `{Request}`",
    label = "not a `Fallback<{Request}>`",
    note = "make a fallback with `FallbackLayer::new(|err: BoxError| async move {{ .. }})`, `FallbackLayer::new_sync(|err: BoxError| response)` or `FallbackLayer::service(service)` (whose request must be `Clone`), or implement `Fallback<{Request}>`"
)]
pub trait Fallback<Request> {
    /// The response it produces, the inner service's response type.
    type Response;
    /// Its error, returned in place of the error it was called for.
    type Error: Into<BoxError>;
    /// The future of the response.
    type Future: Future<Output = Result<Self::Response, Self::Error>>;
    /// What a call keeps from its request until the inner service answers: `()` when the
    /// fallback does not need the request.
    type Saved;

    /// Keeps what the fallback needs from `request`, before the request goes to the inner
    /// service. Runs on every call, so it should be cheap.
    fn save(&self, request: &Request) -> Self::Saved;

    /// Answers in place of `error` (an error the error predicate selected, or a selected response
    /// turned into an error), given what [`save`](Fallback::save) kept from the call's request.
    fn call(self, saved: Self::Saved, error: BoxError) -> Self::Future;
}

// ===== impl FallbackFn =====

/// A [`Fallback`] that calls an async closure with the error. Made by
/// [`FallbackLayer::new`](super::FallbackLayer::new).
#[derive(Clone, Copy)]
pub struct FallbackFn<F> {
    f: F,
}

impl<F> FallbackFn<F> {
    /// A fallback that answers with `f(error).await`.
    pub const fn new<Fut>(f: F) -> Self
    where
        F: FnOnce(BoxError) -> Fut,
    {
        Self { f }
    }
}

impl<F, Fut, T, E, Request> Fallback<Request> for FallbackFn<F>
where
    F: FnOnce(BoxError) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Response = T;
    type Error = E;
    type Future = Fut;
    type Saved = ();

    fn save(&self, _request: &Request) -> Self::Saved {}

    fn call(self, (): Self::Saved, error: BoxError) -> Self::Future {
        (self.f)(error)
    }
}

impl<F> fmt::Debug for FallbackFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackFn")
            .field("f", &format_args!("{}", std::any::type_name::<F>()))
            .finish()
    }
}

// ===== impl FallbackSyncFn =====

/// A [`Fallback`] that calls a closure with the error and answers with what it returns. Made by
/// [`FallbackLayer::new_sync`](super::FallbackLayer::new_sync).
#[derive(Clone, Copy)]
pub struct FallbackSyncFn<F> {
    f: F,
}

impl<F> FallbackSyncFn<F> {
    /// A fallback that answers with `f(error)`; it never fails.
    pub const fn new<T>(f: F) -> Self
    where
        F: FnOnce(BoxError) -> T,
    {
        Self { f }
    }
}

impl<F, T, Request> Fallback<Request> for FallbackSyncFn<F>
where
    F: FnOnce(BoxError) -> T,
{
    type Response = T;
    type Error = Infallible;
    type Future = future::Ready<Result<T, Infallible>>;
    type Saved = ();

    fn save(&self, _request: &Request) -> Self::Saved {}

    fn call(self, (): Self::Saved, error: BoxError) -> Self::Future {
        future::ready(Ok((self.f)(error)))
    }
}

impl<F> fmt::Debug for FallbackSyncFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackSyncFn")
            .field("f", &format_args!("{}", std::any::type_name::<F>()))
            .finish()
    }
}

// ===== impl FallbackTo =====

/// A [`Fallback`] that sends a clone of the request to another [`Service`]. Made by
/// [`FallbackLayer::service`](super::FallbackLayer::service).
///
/// Every call clones its request (kept until the inner service answers) and the fallback service
/// (as `tower::retry` does); the fallback service is polled ready only when it is needed, and
/// its error, if it fails too, is the call's error.
#[derive(Debug, Clone)]
pub struct FallbackTo<T> {
    service: T,
}

impl<T> FallbackTo<T> {
    /// A fallback that calls `service` with a clone of the request.
    pub const fn new(service: T) -> Self {
        Self { service }
    }

    /// The fallback service.
    pub fn get_ref(&self) -> &T {
        &self.service
    }

    /// The fallback service, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.service
    }

    /// The fallback service, unwrapped.
    pub fn into_inner(self) -> T {
        self.service
    }
}

impl<T, Request> Fallback<Request> for FallbackTo<T>
where
    T: Service<Request>,
    T::Error: Into<BoxError>,
    Request: Clone,
{
    type Response = T::Response;
    type Error = BoxError;
    type Future = FallbackToFuture<T, Request>;
    type Saved = Request;

    fn save(&self, request: &Request) -> Self::Saved {
        request.clone()
    }

    fn call(self, request: Self::Saved, _error: BoxError) -> Self::Future {
        FallbackToFuture::new(self.service, request)
    }
}
