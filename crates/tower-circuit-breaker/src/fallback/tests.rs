//! Fallback on responses: a selected response is answered by every kind of fallback, an
//! unselected one passes through untouched, errors behave as they did, and the default selects
//! nothing.

use std::error::Error;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_test::{assert_request_eq, mock};

use super::{
    Fallback, FallbackLayer, IsRejection, NoResponse, ResponsePredicate, SelectedResponse,
};

/// What the inner service answers: a fresh value, or a stale one a predicate may select.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Fresh(String),
    Stale,
}

fn is_stale(reply: &Reply) -> bool {
    *reply == Reply::Stale
}

/// The inner service's own error.
#[derive(Debug)]
struct Upstream;

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream broke")
    }
}

impl Error for Upstream {}

/// The fallback's own error.
#[derive(Debug)]
struct FallbackFailed;

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fallback failed too")
    }
}

impl Error for FallbackFailed {}

/// Answers `"stale"` with [`Reply::Stale`], fails `"broken"` with [`Upstream`], answers anything
/// else fresh. Records the address of the last error it returned.
#[derive(Clone, Default)]
struct Upstreams {
    last_error: Arc<Mutex<usize>>,
}

impl Upstreams {
    fn service(
        &self,
    ) -> impl Service<&'static str, Response = Reply, Error = BoxError, Future: Send> + Clone {
        let last_error = Arc::clone(&self.last_error);
        service_fn(move |request: &'static str| {
            let last_error = Arc::clone(&last_error);
            async move {
                match request {
                    "stale" => Ok(Reply::Stale),
                    "broken" => {
                        let error: BoxError = Box::new(Upstream);
                        *last_error.lock().unwrap() = address(&error);
                        Err(error)
                    }
                    other => Ok(Reply::Fresh(format!("fresh {other}"))),
                }
            }
        })
    }

    fn last_error(&self) -> usize {
        *self.last_error.lock().unwrap()
    }
}

fn address(error: &BoxError) -> usize {
    std::ptr::from_ref::<dyn Error + Send + Sync>(error.as_ref()).cast::<()>() as usize
}

async fn call<S>(service: &mut S, request: &'static str) -> Result<S::Response, BoxError>
where
    S: Service<&'static str, Error = BoxError>,
{
    service.ready().await?.call(request).await
}

/// A hand-written fallback that keeps the request (upper-cased) through `save`, and says what it
/// was called for.
#[derive(Clone)]
struct Echo;

impl Fallback<&'static str> for Echo {
    type Response = Reply;
    type Error = BoxError;
    type Future = Ready<Result<Reply, BoxError>>;
    type Saved = String;

    fn save(&self, request: &&'static str) -> String {
        request.to_uppercase()
    }

    fn call(self, saved: String, error: BoxError) -> Self::Future {
        let kind = if error.is::<SelectedResponse>() {
            "a response"
        } else {
            "an error"
        };
        ready(Ok(Reply::Fresh(format!("{saved}: fell back on {kind}"))))
    }
}

// ===== a selected response, every kind of fallback =====

#[tokio::test]
async fn a_selected_response_is_answered_by_the_async_fallback() {
    let mut service = FallbackLayer::new(|err: BoxError| async move {
        Ok::<_, BoxError>(Reply::Fresh(format!("async fallback: {err}")))
    })
    .when_response(is_stale)
    .layer(Upstreams::default().service());

    assert_eq!(
        call(&mut service, "stale").await.unwrap(),
        Reply::Fresh("async fallback: the response was selected for the fallback".into())
    );
}

#[tokio::test]
async fn a_selected_response_is_answered_by_the_sync_fallback() {
    let mut service = FallbackLayer::new_sync(|err: BoxError| {
        assert!(err.is::<SelectedResponse>(), "{err}");
        Reply::Fresh("sync fallback".into())
    })
    .when_response(is_stale)
    .layer(Upstreams::default().service());

    assert_eq!(
        call(&mut service, "stale").await.unwrap(),
        Reply::Fresh("sync fallback".into())
    );
}

#[tokio::test]
async fn a_selected_response_is_answered_by_the_fallback_service_with_a_clone_of_the_request() {
    let replica = service_fn(|request: &'static str| async move {
        Ok::<_, BoxError>(Reply::Fresh(format!("replica answered {request}")))
    });
    let mut service = FallbackLayer::service(replica)
        .when_response(is_stale)
        .layer(Upstreams::default().service());

    assert_eq!(
        call(&mut service, "stale").await.unwrap(),
        Reply::Fresh("replica answered stale".into())
    );
}

#[tokio::test]
async fn a_selected_response_is_answered_by_a_fallback_that_saved_the_request() {
    let mut service = FallbackLayer::with_fallback(Echo)
        .when_response(is_stale)
        .layer(Upstreams::default().service());

    assert_eq!(
        call(&mut service, "stale").await.unwrap(),
        Reply::Fresh("STALE: fell back on a response".into())
    );
    // Errors still reach the same fallback, with the same saved request.
    assert_eq!(
        call(&mut service, "broken").await.unwrap(),
        Reply::Fresh("BROKEN: fell back on an error".into())
    );
}

#[tokio::test]
async fn a_selected_response_from_a_mock_is_answered_and_readiness_is_the_inner_services() {
    let layer = FallbackLayer::new_sync(|_: BoxError| Reply::Fresh("fallback".into()))
        .when_response(is_stale);
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, Reply, _>(layer);

    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(2);
    assert!(service.poll_ready().is_ready());

    let answered = service.call("first");
    assert_request_eq!(handle, "first").send_response(Reply::Stale);
    assert_eq!(answered.await.unwrap(), Reply::Fresh("fallback".into()));

    assert!(service.poll_ready().is_ready());
    let passed = service.call("second");
    assert_request_eq!(handle, "second").send_response(Reply::Fresh("fresh".into()));
    assert_eq!(passed.await.unwrap(), Reply::Fresh("fresh".into()));
}

// ===== what passes through =====

#[tokio::test]
async fn an_unselected_response_passes_through_untouched_without_calling_the_fallback() {
    let shared = Arc::new(Reply::Fresh("fresh".into()));
    let inner = {
        let shared = Arc::clone(&shared);
        service_fn(move |_: &'static str| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, BoxError>(shared) }
        })
    };
    let fallback_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&fallback_calls);
    let mut service = FallbackLayer::new_sync(move |_: BoxError| {
        calls.fetch_add(1, Ordering::SeqCst);
        Arc::new(Reply::Fresh("fallback".into()))
    })
    .when_response(|reply: &Arc<Reply>| is_stale(reply))
    .layer(inner);

    let response = call(&mut service, "any").await.unwrap();
    assert!(Arc::ptr_eq(&response, &shared), "the very response");
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_a_response_predicate_every_response_passes_and_errors_are_answered_as_before() {
    let mut service = FallbackLayer::new_sync(|err: BoxError| Reply::Fresh(format!("for {err}")))
        .layer(Upstreams::default().service());

    assert_eq!(call(&mut service, "stale").await.unwrap(), Reply::Stale);
    assert_eq!(
        call(&mut service, "broken").await.unwrap(),
        Reply::Fresh("for upstream broke".into())
    );
}

#[tokio::test]
async fn with_a_response_predicate_errors_are_selected_by_the_error_predicate_as_before() {
    let upstreams = Upstreams::default();
    // Selects every error: the fallback is given the inner service's error.
    let mut answering = FallbackLayer::new_sync(|err: BoxError| {
        assert!(err.is::<Upstream>(), "{err}");
        Reply::Fresh("answered".into())
    })
    .when_response(is_stale)
    .layer(upstreams.service());
    assert_eq!(
        call(&mut answering, "broken").await.unwrap(),
        Reply::Fresh("answered".into())
    );

    // Selects rejections only: the inner service's error passes through, the very box.
    let mut passing = FallbackLayer::new_sync(|_: BoxError| Reply::Fresh("answered".into()))
        .when(IsRejection)
        .when_response(is_stale)
        .layer(upstreams.service());
    let err = call(&mut passing, "broken").await.unwrap_err();
    assert!(err.is::<Upstream>());
    assert_eq!(address(&err), upstreams.last_error());
    // And a response is answered, whatever the error predicate would say.
    assert_eq!(
        call(&mut passing, "stale").await.unwrap(),
        Reply::Fresh("answered".into())
    );
    assert_eq!(
        call(&mut passing, "ok").await.unwrap(),
        Reply::Fresh("fresh ok".into())
    );
}

#[tokio::test]
async fn a_selected_response_skips_the_error_predicate() {
    let mut service = FallbackLayer::new_sync(|_: BoxError| Reply::Fresh("answered".into()))
        .when(|_: &BoxError| false)
        .when_response(is_stale)
        .layer(Upstreams::default().service());

    assert_eq!(
        call(&mut service, "stale").await.unwrap(),
        Reply::Fresh("answered".into())
    );
    assert!(call(&mut service, "broken")
        .await
        .unwrap_err()
        .is::<Upstream>());
}

// ===== the fallback's own error =====

#[tokio::test]
async fn the_fallbacks_own_error_replaces_the_selected_response() {
    let mut own = FallbackLayer::new(|_: BoxError| async { Err::<Reply, _>(FallbackFailed) })
        .when_response(is_stale)
        .layer(Upstreams::default().service());
    let err = call(&mut own, "stale").await.unwrap_err();
    assert!(err.is::<FallbackFailed>(), "{err}");

    // A fallback that gives the error back: the caller gets the `SelectedResponse`.
    let mut given_back = FallbackLayer::new(|err: BoxError| async { Err::<Reply, _>(err) })
        .when_response(is_stale)
        .layer(Upstreams::default().service());
    let err = call(&mut given_back, "stale").await.unwrap_err();
    assert!(err.is::<SelectedResponse>());
    assert_eq!(
        err.to_string(),
        "the response was selected for the fallback"
    );
}

// ===== the predicates =====

#[test]
fn the_default_response_predicate_is_zero_sized_and_selects_nothing() {
    assert_eq!(size_of::<NoResponse>(), 0);
    assert_eq!(NoResponse.check(Reply::Stale).unwrap(), Reply::Stale);
    assert_eq!(
        size_of::<FallbackLayer<super::FallbackSyncFn<fn(BoxError) -> Reply>>>(),
        size_of::<fn(BoxError) -> Reply>(),
        "the default predicates add nothing to the layer"
    );
}

#[tokio::test]
async fn the_error_only_types_are_still_named_as_before() {
    type Sync = super::FallbackSyncFn<fn(BoxError) -> Reply>;
    let fallback: fn(BoxError) -> Reply = |_| Reply::Fresh("fallback".into());
    let layer: FallbackLayer<Sync, IsRejection> =
        FallbackLayer::new_sync(fallback).when(IsRejection);
    let mut service: super::FallbackService<_, Sync, IsRejection> =
        layer.layer(Upstreams::default().service());
    let future: super::ResponseFuture<_, Sync, IsRejection, &'static str> =
        service.ready().await.unwrap().call("stale");
    assert_eq!(future.await.unwrap(), Reply::Stale);
}

#[test]
fn a_closure_predicate_selects_what_it_returns_true_for() {
    assert_eq!(
        is_stale.check(Reply::Fresh("x".into())).unwrap(),
        Reply::Fresh("x".into())
    );
    let err = is_stale.check(Reply::Stale).unwrap_err();
    assert!(err.is::<SelectedResponse>());
    assert_eq!(
        Option::<u32>::is_none.check(None).unwrap_err().to_string(),
        "the response was selected for the fallback"
    );
}

#[cfg(feature = "http")]
mod http {
    use std::sync::atomic::AtomicBool;

    use ::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};

    use super::*;
    use crate::fallback::{ClassifiedFailure, FailedResponse, HttpResponseIf, StatusIn};
    use crate::{HttpClassifier, Outcome};

    fn response(status: u16) -> Response<String> {
        Response::builder()
            .status(status)
            .header(header::RETRY_AFTER, "30")
            .header("x-request-id", "r-1")
            .body(format!("body of {status}"))
            .unwrap()
    }

    fn selected<P: ResponsePredicate<Response<String>>>(predicate: &P, status: u16) -> bool {
        match predicate.check(response(status)) {
            Ok(passed) => {
                assert_eq!(passed.status().as_u16(), status);
                assert_eq!(passed.body(), &format!("body of {status}"));
                false
            }
            Err(err) => {
                let failed = err
                    .downcast_ref::<FailedResponse>()
                    .expect("a FailedResponse");
                assert_eq!(failed.status().as_u16(), status);
                true
            }
        }
    }

    #[test]
    fn status_in_selects_the_statuses_in_its_range() {
        let server_errors = StatusIn(500..=599);
        for (status, expected) in [(200, false), (404, false), (499, false), (500, true)] {
            assert_eq!(selected(&server_errors, status), expected, "{status}");
        }
        assert!(selected(&server_errors, 599));
        assert!(!selected(&server_errors, 600));
        assert!(selected(&StatusIn(500..), 600));
        assert!(selected(&StatusIn(503..=503), 503));
        assert!(!selected(&StatusIn(503..=503), 502));
        assert!(!selected(&StatusIn(400..404), 404));
        assert!(selected(&StatusIn(400..404), 403));
    }

    #[test]
    fn classified_failure_selects_what_the_classifier_calls_a_failure_or_a_timeout() {
        let breakers = ClassifiedFailure(HttpClassifier::new());
        for (status, expected) in [
            (200, false),
            (302, false),
            (404, false),
            (429, false),
            (500, true),
            (503, true),
            (504, true), // a timeout
            (600, true),
        ] {
            assert_eq!(selected(&breakers, status), expected, "{status}");
        }

        let strict = ClassifiedFailure(
            HttpClassifier::new()
                .too_many_requests_as_failure(true)
                .status_as(StatusCode::NOT_IMPLEMENTED, Outcome::Ignored),
        );
        assert!(selected(&strict, 429));
        assert!(!selected(&strict, 501));

        // Any classifier of HTTP responses, a closure too.
        let closure =
            ClassifiedFailure(|result: &Result<Response<String>, BoxError>| match result {
                Ok(response) if response.headers().contains_key("x-degraded") => Outcome::Failure,
                _ => Outcome::Success,
            });
        assert!(!selected(&closure, 503));
        let degraded = Response::builder()
            .header("x-degraded", "1")
            .body(String::new())
            .unwrap();
        assert!(closure.check(degraded).unwrap_err().is::<FailedResponse>());
    }

    #[test]
    fn http_response_if_gives_the_fallback_a_failed_response() {
        let predicate = HttpResponseIf(|response: &Response<String>| {
            response.headers().get("x-request-id") == Some(&HeaderValue::from_static("r-1"))
        });
        assert!(selected(&predicate, 200));
        let other = Response::new(String::new());
        assert!(predicate.check(other).is_ok());
    }

    /// A body that says when it is dropped.
    struct Body(Arc<AtomicBool>);

    impl Drop for Body {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_failed_response_carries_the_status_and_headers_and_drops_the_body() {
        let dropped = Arc::new(AtomicBool::new(false));
        let response = Response::builder()
            .status(503)
            .header(header::RETRY_AFTER, "30")
            .header("x-request-id", "r-1")
            .body(Body(Arc::clone(&dropped)))
            .unwrap();

        let err = StatusIn(500..=599).check(response).err().unwrap();
        assert!(dropped.load(Ordering::SeqCst), "the body is dropped");
        assert_eq!(err.to_string(), "upstream answered 503 Service Unavailable");
        let failed = err.downcast_ref::<FailedResponse>().unwrap();
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failed.headers()[header::RETRY_AFTER], "30");
        assert_eq!(failed.headers()["x-request-id"], "r-1");
        assert_eq!(failed.clone().into_headers().len(), 2);

        let unusual = FailedResponse::new(StatusCode::from_u16(599).unwrap(), HeaderMap::new());
        assert_eq!(unusual.to_string(), "upstream answered 599");
        let from: FailedResponse = Response::builder().status(502).body(()).unwrap().into();
        assert_eq!(from.to_string(), "upstream answered 502 Bad Gateway");
    }

    fn upstream() -> impl Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone
    {
        service_fn(|request: Request<()>| async move {
            let status = match request.uri().path() {
                "/missing" => 404,
                "/ok" => 200,
                _ => 503,
            };
            Ok::<_, BoxError>(response(status))
        })
    }

    async fn get<S>(service: &mut S, path: &str) -> Result<Response<String>, BoxError>
    where
        S: Service<Request<()>, Response = Response<String>, Error = BoxError>,
    {
        let request = Request::get(path).body(()).unwrap();
        service.ready().await?.call(request).await
    }

    fn failed_status(err: &BoxError) -> String {
        let failed = err
            .downcast_ref::<FailedResponse>()
            .expect("a FailedResponse");
        format!(
            "{} retry after {:?}",
            failed.status(),
            failed.headers()[header::RETRY_AFTER]
        )
    }

    /// Keeps the path of the request; answers with it and the failed status.
    #[derive(Clone)]
    struct ByPath;

    impl<B> Fallback<Request<B>> for ByPath {
        type Response = Response<String>;
        type Error = BoxError;
        type Future = Ready<Result<Response<String>, BoxError>>;
        type Saved = String;

        fn save(&self, request: &Request<B>) -> String {
            request.uri().path().to_owned()
        }

        fn call(self, path: String, error: BoxError) -> Self::Future {
            ready(Ok(Response::new(format!(
                "cached {path} ({})",
                failed_status(&error)
            ))))
        }
    }

    #[tokio::test]
    async fn a_selected_http_response_is_answered_by_every_kind_of_fallback() {
        let selects = || ClassifiedFailure(HttpClassifier::new());
        let expected = "503 Service Unavailable retry after \"30\"";

        let mut by_async = FallbackLayer::new(|err: BoxError| async move {
            Ok::<_, BoxError>(Response::new(format!("async: {}", failed_status(&err))))
        })
        .when_response(selects())
        .layer(upstream());
        let answered = get(&mut by_async, "/items").await.unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
        assert_eq!(answered.body(), &format!("async: {expected}"));

        let mut by_sync = FallbackLayer::new_sync(|err: BoxError| {
            Response::new(format!("sync: {}", failed_status(&err)))
        })
        .when_response(selects())
        .layer(upstream());
        assert_eq!(
            get(&mut by_sync, "/items").await.unwrap().body(),
            &format!("sync: {expected}")
        );

        let replica = service_fn(|request: Request<()>| async move {
            Ok::<_, BoxError>(Response::new(format!("replica: {}", request.uri().path())))
        });
        let mut by_service = FallbackLayer::service(replica)
            .when_response(selects())
            .layer(upstream());
        assert_eq!(
            get(&mut by_service, "/items").await.unwrap().body(),
            "replica: /items"
        );

        let mut by_path = FallbackLayer::with_fallback(ByPath)
            .when_response(selects())
            .layer(upstream());
        assert_eq!(
            get(&mut by_path, "/items").await.unwrap().body(),
            &format!("cached /items ({expected})")
        );
    }

    #[tokio::test]
    async fn an_unselected_http_response_passes_through_untouched() {
        let mut service = FallbackLayer::with_fallback(ByPath)
            .when_response(StatusIn(500..=599))
            .layer(upstream());
        for (path, status) in [("/missing", 404), ("/ok", 200)] {
            let passed = get(&mut service, path).await.unwrap();
            let expected = response(status);
            assert_eq!(passed.status(), expected.status());
            assert_eq!(passed.headers(), expected.headers());
            assert_eq!(passed.body(), expected.body());
        }
    }

    #[tokio::test]
    async fn the_fallbacks_own_error_replaces_the_failed_response() {
        let mut own =
            FallbackLayer::new(|_: BoxError| async { Err::<Response<String>, _>(FallbackFailed) })
                .when_response(StatusIn(500..=599))
                .layer(upstream());
        assert!(get(&mut own, "/items")
            .await
            .unwrap_err()
            .is::<FallbackFailed>());

        // Given back: the caller gets the `FailedResponse` as its error.
        let mut given_back =
            FallbackLayer::new(|err: BoxError| async { Err::<Response<String>, _>(err) })
                .when_response(StatusIn(500..=599))
                .layer(upstream());
        let err = get(&mut given_back, "/items").await.unwrap_err();
        assert_eq!(err.to_string(), "upstream answered 503 Service Unavailable");
        assert_eq!(
            failed_status(&err),
            "503 Service Unavailable retry after \"30\""
        );
    }
}
