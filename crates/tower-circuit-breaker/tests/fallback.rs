//! The fallback layer's contract: selected errors are answered by the fallback (a closure or
//! another service), everything else passes through untouched, the predicates pick what they
//! name, and readiness is the inner service's.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::fallback::{
    AnyError, ErrorPredicate, FallbackLayer, FallbackService, IsRejection, IsTimeout,
};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState, Clock,
    HalfOpenFull, ManualClock,
};
use tower_test::mock;

const BREAK: Duration = Duration::from_secs(30);

/// The inner service's own error.
#[derive(Debug)]
struct Upstream(&'static str);

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream failed: {}", self.0)
    }
}

impl Error for Upstream {}

/// Another error wrapping one as its source, as a layer in between might.
#[derive(Debug)]
struct Wrapped(BoxError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}

fn wrapped(error: BoxError) -> BoxError {
    Box::new(Wrapped(error))
}

/// A service that fails every call with `Upstream(what)`.
fn failing(
    what: &'static str,
) -> impl Service<&'static str, Response = String, Error = BoxError, Future: Send> + Clone {
    service_fn(move |_request: &'static str| async move {
        Err::<String, _>(BoxError::from(Upstream(what)))
    })
}

fn breaker(failure_threshold: u32) -> CircuitBreaker {
    CircuitBreaker::with_config(
        "inventory",
        CircuitBreakerConfig::default()
            .failure_threshold(failure_threshold)
            .break_duration(BREAK)
            .half_open_max_calls(1)
            .success_threshold(1),
    )
    .unwrap()
}

/// A real `CircuitOpen` and a real `HalfOpenFull`, boxed as the tower layer returns them.
fn rejections() -> (BoxError, BoxError) {
    let time = ManualClock::new();
    let breaker = CircuitBreaker::builder("inventory")
        .config(
            CircuitBreakerConfig::default()
                .failure_threshold(1)
                .break_duration(BREAK)
                .half_open_max_calls(1),
        )
        .clock(Clock::manual(&time))
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().failure();
    let open = breaker.try_acquire().unwrap_err().into_error();
    time.advance(BREAK);
    let _probe = breaker.try_acquire().unwrap();
    let full = breaker.try_acquire().unwrap_err().into_error();
    assert!(open.is::<CircuitOpen>() && full.is::<HalfOpenFull>());
    (open, full)
}

/// A tokio `Elapsed`, as `tokio::time::timeout` returns it.
async fn tokio_elapsed() -> BoxError {
    tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
        .await
        .unwrap_err()
        .into()
}

fn assert_ready_ok(poll: Poll<Result<(), BoxError>>) {
    match poll {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(err)) => panic!("ready with an error: {err}"),
        Poll::Pending => panic!("pending"),
    }
}

// ===== the fallback answers =====

#[tokio::test]
async fn a_selected_error_is_answered_by_the_async_fallback() {
    let mut service = ServiceBuilder::new()
        .layer(FallbackLayer::new(|err: BoxError| async move {
            Ok::<_, BoxError>(format!("fallback after {err}"))
        }))
        .service(failing("503"));
    let response = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(response, "fallback after upstream failed: 503");
}

#[tokio::test]
async fn a_selected_error_is_answered_by_the_sync_fallback() {
    let mut service = FallbackLayer::new_sync(|err: BoxError| format!("fallback after {err}"))
        .layer(failing("503"));
    let response = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(response, "fallback after upstream failed: 503");
}

#[tokio::test]
async fn the_fallback_is_given_the_error_it_answers() {
    let mut service = FallbackLayer::new_sync(|err: BoxError| {
        let upstream = err
            .downcast::<Upstream>()
            .expect("the inner service's own error");
        format!("fallback after {}", upstream.0)
    })
    .layer(failing("503"));
    let response = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(response, "fallback after 503");
}

#[tokio::test]
async fn a_success_passes_through_without_calling_the_fallback() {
    let fallbacks = Arc::new(AtomicUsize::new(0));
    let counted = fallbacks.clone();
    let mut service = FallbackLayer::new_sync(move |_: BoxError| {
        counted.fetch_add(1, Ordering::Relaxed);
        String::from("fallback")
    })
    .layer(service_fn(|request: &'static str| async move {
        Ok::<_, BoxError>(format!("served {request}"))
    }));
    let response = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(response, "served GET");
    assert_eq!(fallbacks.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_failing_fallback_returns_its_own_error() {
    #[derive(Debug, thiserror::Error)]
    #[error("cache miss")]
    struct CacheMiss;

    let mut service = FallbackLayer::new(|_: BoxError| async { Err::<String, _>(CacheMiss) })
        .layer(failing("503"));
    let err = service
        .ready()
        .await
        .unwrap()
        .call("GET")
        .await
        .unwrap_err();
    assert!(err.is::<CacheMiss>(), "got {err}");
    assert!(!err.is::<Upstream>());
}

// ===== unselected errors pass through =====

#[tokio::test]
async fn an_unselected_error_passes_through_as_the_same_box_and_still_downcasts() {
    let returned = Arc::new(Mutex::new(None::<usize>));
    let recorded = returned.clone();
    let inner = service_fn(move |_request: &'static str| {
        let recorded = recorded.clone();
        async move {
            let err: BoxError = Box::new(Upstream("503"));
            *recorded.lock().unwrap() = Some(address(&err));
            Err::<String, _>(err)
        }
    });
    let mut service = FallbackLayer::new_sync(|_: BoxError| String::from("fallback"))
        .when(IsRejection)
        .layer(inner);

    let err = service
        .ready()
        .await
        .unwrap()
        .call("GET")
        .await
        .unwrap_err();
    assert_eq!(
        Some(address(&err)),
        *returned.lock().unwrap(),
        "the very same box"
    );
    assert_eq!(err.downcast_ref::<Upstream>().unwrap().0, "503");
    assert_eq!(err.to_string(), "upstream failed: 503");
}

fn address(err: &BoxError) -> usize {
    std::ptr::from_ref::<dyn Error + Send + Sync>(err.as_ref()).cast::<()>() as usize
}

#[tokio::test]
async fn a_closure_predicate_selects_by_downcast() {
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = service_fn(move |_request: &'static str| {
        let call = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            Err::<String, BoxError>(if call == 0 {
                Upstream("503").into()
            } else {
                "other".into()
            })
        }
    });
    let mut service = FallbackLayer::new_sync(|_: BoxError| String::from("fallback"))
        .when(|err: &BoxError| err.is::<Upstream>())
        .layer(inner);

    let selected = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(selected, "fallback");
    let passed = service
        .ready()
        .await
        .unwrap()
        .call("GET")
        .await
        .unwrap_err();
    assert_eq!(passed.to_string(), "other");
}

// ===== predicates =====

#[tokio::test]
async fn any_error_selects_every_error() {
    let (open, full) = rejections();
    for err in [
        Upstream("503").into(),
        open,
        full,
        tokio_elapsed().await,
        BoxError::from("text"),
    ] {
        assert!(AnyError.matches(&err), "{err}");
    }
}

#[test]
fn the_rejection_predicate_selects_circuit_open_and_half_open_full() {
    let (open, full) = rejections();
    assert!(IsRejection.matches(&open));
    assert!(IsRejection.matches(&full));
}

#[test]
fn the_rejection_predicate_finds_a_rejection_nested_as_a_source() {
    let (open, full) = rejections();
    assert!(IsRejection.matches(&wrapped(open)));
    assert!(IsRejection.matches(&wrapped(wrapped(full))));
}

#[tokio::test]
async fn the_rejection_predicate_does_not_select_other_errors() {
    for err in [
        Upstream("503").into(),
        BoxError::from("circuit open"),
        Box::new(tower::timeout::error::Elapsed::new()),
        tokio_elapsed().await,
        wrapped(Upstream("503").into()),
    ] {
        assert!(!IsRejection.matches(&err), "{err}");
    }
}

#[tokio::test]
async fn the_timeout_predicate_selects_tower_and_tokio_elapsed_also_nested() {
    let tower_elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
    assert!(IsTimeout.matches(&tower_elapsed));
    assert!(IsTimeout.matches(&tokio_elapsed().await));
    assert!(IsTimeout.matches(&wrapped(tower_elapsed)));
}

#[test]
fn the_timeout_predicate_does_not_select_other_errors() {
    let (open, full) = rejections();
    for err in [
        Upstream("503").into(),
        BoxError::from("request timed out"),
        open,
        full,
    ] {
        assert!(!IsTimeout.matches(&err), "{err}");
    }
}

#[tokio::test]
async fn or_selects_what_either_predicate_selects() {
    let (open, _) = rejections();
    let either = IsRejection.or(IsTimeout);
    assert!(either.matches(&open));
    assert!(either.matches(&tokio_elapsed().await));
    assert!(!either.matches(&Upstream("503").into()));
    let with_closure = IsTimeout.or(|err: &BoxError| err.is::<Upstream>());
    assert!(with_closure.matches(&Upstream("503").into()));
}

// ===== over a breaker and a timeout =====

#[tokio::test(start_paused = true)]
async fn the_rejection_predicate_answers_an_open_breaker_and_passes_its_failures() {
    let breaker = breaker(1);
    let mut service = ServiceBuilder::new()
        .layer(
            FallbackLayer::new_sync(|err: BoxError| {
                format!(
                    "fallback, retry in {:?}",
                    err.downcast_ref::<CircuitOpen>()
                        .unwrap()
                        .retry_after()
                        .unwrap()
                )
            })
            .when(IsRejection),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(failing("503"));

    let failure = service
        .ready()
        .await
        .unwrap()
        .call("GET")
        .await
        .unwrap_err();
    assert!(failure.is::<Upstream>());
    assert_eq!(breaker.state(), CircuitState::Open);

    let response = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(response, format!("fallback, retry in {BREAK:?}"));
}

#[tokio::test(start_paused = true)]
async fn the_rejection_predicate_answers_a_full_half_open_breaker() {
    let breaker = breaker(1);
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(
        ServiceBuilder::new()
            .layer(
                FallbackLayer::new_sync(|err: BoxError| {
                    assert!(err.is::<HalfOpenFull>(), "got {err}");
                    "fallback"
                })
                .when(IsRejection),
            )
            .layer(CircuitBreakerLayer::new(breaker.clone())),
    );

    handle.allow(1);
    assert_ready_ok(service.poll_ready());
    let failure = service.call("GET");
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error("500");
    assert_eq!(failure.await.unwrap_err().to_string(), "500");

    tokio::time::advance(BREAK).await;
    handle.allow(1);
    assert_ready_ok(service.poll_ready());
    let probe = service.call("probe");
    assert_ready_ok(service.poll_ready());
    assert_eq!(service.call("GET").await.unwrap(), "fallback");

    let (request, reply) = handle.next_request().await.unwrap();
    assert_eq!(request, "probe");
    reply.send_response("200");
    assert_eq!(probe.await.unwrap(), "200");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_while_the_breaker_is_open_and_stops_once_it_closes() {
    let breaker = breaker(1);
    let healthy = Arc::new(AtomicBool::new(false));
    let upstream = healthy.clone();
    let mut service = ServiceBuilder::new()
        .layer(FallbackLayer::new_sync(|_: BoxError| String::from("fallback")).when(IsRejection))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_request: &'static str| {
            let healthy = upstream.load(Ordering::Relaxed);
            async move {
                if healthy {
                    Ok(String::from("fresh"))
                } else {
                    Err(BoxError::from(Upstream("503")))
                }
            }
        }));

    service
        .ready()
        .await
        .unwrap()
        .call("GET")
        .await
        .unwrap_err();
    for _ in 0..3 {
        let response = service.ready().await.unwrap().call("GET").await.unwrap();
        assert_eq!(response, "fallback");
    }

    healthy.store(true, Ordering::Relaxed);
    tokio::time::advance(BREAK).await;
    let response = service.ready().await.unwrap().call("GET").await.unwrap();
    assert_eq!(response, "fresh");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_predicate_answers_elapsed_from_tower_timeout() {
    let mut service = ServiceBuilder::new()
        .layer(FallbackLayer::new_sync(|_: BoxError| String::from("too slow")).when(IsTimeout))
        .timeout(Duration::from_secs(1))
        .service(service_fn(|request: &'static str| async move {
            if request == "fail" {
                return Err(BoxError::from(Upstream("503")));
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(String::from("fresh"))
        }));

    let response = service.ready().await.unwrap().call("slow").await.unwrap();
    assert_eq!(response, "too slow");
    let failure = service
        .ready()
        .await
        .unwrap()
        .call("fail")
        .await
        .unwrap_err();
    assert!(failure.is::<Upstream>(), "not a timeout: passed through");
}

// ===== a fallback service =====

#[tokio::test]
async fn a_fallback_service_is_called_with_a_clone_of_the_request() {
    let replica = service_fn(|request: &'static str| async move {
        Ok::<_, BoxError>(format!("replica served {request}"))
    });
    let mut service = FallbackLayer::service(replica).layer(failing("503"));
    let response = service
        .ready()
        .await
        .unwrap()
        .call("GET /items")
        .await
        .unwrap();
    assert_eq!(response, "replica served GET /items");
}

#[tokio::test(start_paused = true)]
async fn a_fallback_service_is_polled_ready_before_it_is_called() {
    let (replica, mut handle) = mock::pair::<&'static str, String>();
    handle.allow(0);
    let mut service = FallbackLayer::service(replica).layer(failing("503"));
    let call = tokio::spawn(service.ready().await.unwrap().call("GET"));

    let early = tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await;
    assert!(early.is_err(), "called before it was ready");
    assert!(!call.is_finished());

    handle.allow(1);
    let (request, reply) = handle.next_request().await.unwrap();
    assert_eq!(request, "GET");
    reply.send_response(String::from("replica"));
    assert_eq!(call.await.unwrap().unwrap(), "replica");
}

#[tokio::test]
async fn a_fallback_service_that_fails_returns_its_own_error() {
    let (replica, mut handle) = mock::pair::<&'static str, String>();
    handle.send_error(Upstream("replica down"));
    let mut service = FallbackLayer::service(replica).layer(failing("503"));
    let err = service
        .ready()
        .await
        .unwrap()
        .call("GET")
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<Upstream>().unwrap().0, "replica down");
}

// ===== readiness =====

#[tokio::test]
async fn poll_ready_is_pending_while_the_inner_service_is_pending() {
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(
        FallbackLayer::new_sync(|_: BoxError| "fallback"),
    );
    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(1);
    assert!(service.is_woken());
    assert_ready_ok(service.poll_ready());

    let response = service.call("GET");
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error("500");
    assert_eq!(response.await.unwrap(), "fallback");
}

#[tokio::test]
async fn a_poll_ready_error_is_returned_not_answered_by_the_fallback() {
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, &'static str, _>(
        FallbackLayer::new_sync(|_: BoxError| "fallback"),
    );
    handle.send_error(Upstream("gone"));
    match service.poll_ready() {
        Poll::Ready(Err(err)) => assert_eq!(err.downcast_ref::<Upstream>().unwrap().0, "gone"),
        other => panic!(
            "expected the inner service's error, got {:?}",
            other.map(|r| r.is_ok())
        ),
    }
}

// ===== Clone and Debug =====

#[tokio::test]
async fn clones_of_a_service_each_fall_back() {
    let service = FallbackService::new(
        failing("503"),
        tower_circuit_breaker::fallback::FallbackSyncFn::new(|_: BoxError| {
            String::from("fallback")
        }),
    )
    .when(IsRejection.or(|err: &BoxError| err.is::<Upstream>()));
    let mut first = service.clone();
    let mut second = service;
    assert_eq!(
        first.ready().await.unwrap().call("a").await.unwrap(),
        "fallback"
    );
    assert_eq!(
        second.ready().await.unwrap().call("b").await.unwrap(),
        "fallback"
    );
}

#[test]
fn layers_and_services_are_debug() {
    let layer = FallbackLayer::new_sync(|_: BoxError| "fallback").when(IsRejection.or(IsTimeout));
    let debug = format!("{layer:?}");
    assert!(
        debug.contains("FallbackSyncFn") && debug.contains("IsRejection"),
        "{debug}"
    );
    let service = FallbackLayer::service(mock::pair::<&'static str, &'static str>().0).layer(());
    assert!(format!("{service:?}").contains("FallbackTo"));
}
