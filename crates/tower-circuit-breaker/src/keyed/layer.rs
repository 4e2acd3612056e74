use std::fmt;
use std::task::{ready, Context, Poll};

use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use super::{KeyFor, KeyedBreaker, KeyedBreakers};
use crate::layer::{Record, ResponseFuture};
use crate::{CircuitBreaker, DefaultClassifier};

/// Wraps services in a [`KeyedCircuitBreakerService`]: each request goes through the breaker of
/// its key in one [`KeyedBreakers`] group, shared by every service the layer makes.
///
/// See the [module docs](super) for an example.
#[derive(Debug, Clone)]
pub struct KeyedCircuitBreakerLayer<K, C = DefaultClassifier> {
    breakers: KeyedBreakers,
    key: K,
    classifier: C,
}

#[cfg(feature = "http")]
impl KeyedCircuitBreakerLayer<super::ByAuthority> {
    /// A layer keying HTTP requests by their authority ([`ByAuthority`](super::ByAuthority)),
    /// classified by [`DefaultClassifier`] (errors are failures; see
    /// [`classify_with`](Self::classify_with) for status codes).
    pub fn new(breakers: KeyedBreakers) -> Self {
        Self::with_key(breakers, super::ByAuthority)
    }
}

impl<K> KeyedCircuitBreakerLayer<K> {
    /// A layer keying requests with `key`: a [`KeyFor`], such as a closure
    /// `Fn(&Request) -> Option<String>`.
    pub fn with_key(breakers: KeyedBreakers, key: K) -> Self {
        Self {
            breakers,
            key,
            classifier: DefaultClassifier,
        }
    }
}

impl<K, C> KeyedCircuitBreakerLayer<K, C> {
    /// Classifies results with `classifier` instead, such as `HttpClassifier` for
    /// `http::Response`s.
    pub fn classify_with<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, C2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key: self.key,
            classifier,
        }
    }

    /// The group every service of this layer shares.
    pub fn breakers(&self) -> &KeyedBreakers {
        &self.breakers
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, C> {
    type Service = KeyedCircuitBreakerService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            inner_ready: false,
        }
    }
}

/// A [`Service`] whose calls go through the breaker of their key. Made by
/// [`KeyedCircuitBreakerLayer`].
///
/// `poll_ready` drives the inner service only: which breaker a request meets is known when it
/// arrives in `call`, which rejects it there (with the same errors as
/// [`CircuitBreakerService`](crate::CircuitBreakerService)) if its breaker does. Clones share
/// the group; each has its own readiness.
pub struct KeyedCircuitBreakerService<S, K, C = DefaultClassifier> {
    inner: S,
    breakers: KeyedBreakers,
    key: K,
    classifier: C,
    inner_ready: bool,
}

impl<S, K, C> KeyedCircuitBreakerService<S, K, C> {
    /// The group this service shares.
    pub fn breakers(&self) -> &KeyedBreakers {
        &self.breakers
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, C, Request> Service<Request> for KeyedCircuitBreakerService<S, K, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    K: KeyFor<Request>,
    C: Record<S::Response, KeyedBreaker> + Clone,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, KeyedBreaker>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.inner_ready {
            ready!(self.inner.poll_ready(cx)).map_err(Into::into)?;
            self.inner_ready = true;
        }
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        if !std::mem::take(&mut self.inner_ready) {
            return ResponseFuture::not_ready();
        }
        let breaker = self.breakers.get(self.key.key(&request).as_deref());
        match CircuitBreaker::acquire_with(breaker) {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, self.classifier.clone())
            }
            // Counted by the breaker.
            Err(rejection) => ResponseFuture::rejected(rejection.into_error()),
        }
    }
}

impl<S: Clone, K: Clone, C: Clone> Clone for KeyedCircuitBreakerService<S, K, C> {
    fn clone(&self) -> Self {
        // Readiness belongs to one handle: a clone must poll for its own.
        Self {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            inner_ready: false,
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, C: fmt::Debug> fmt::Debug
    for KeyedCircuitBreakerService<S, K, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .field("key", &self.key)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
