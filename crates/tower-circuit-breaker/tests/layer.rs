//! The tower layer's contract: readiness (load-shed while rejecting, never calling an unready
//! inner service, per-clone readiness, opt-in backpressure), downcastable rejections, permits
//! freed by dropped futures, timeouts classified, and one breaker shared by everything a layer
//! makes.

use std::task::Poll;
use std::time::Duration;

use tokio_test_shim::assert_ready_ok;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::layer::NotReady;
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState,
    HalfOpenFull, Outcome, Rejection,
};
use tower_test::mock;

/// Small stand-ins for tokio-test's assertion macros.
mod tokio_test_shim {
    macro_rules! assert_ready_ok {
        ($e:expr) => {
            match $e {
                std::task::Poll::Ready(Ok(value)) => value,
                std::task::Poll::Ready(Err(err)) => panic!("ready with an error: {err}"),
                std::task::Poll::Pending => panic!("pending"),
            }
        };
    }
    pub(crate) use assert_ready_ok;
}

const BREAK: Duration = Duration::from_secs(30);

fn breaker(failure_threshold: u32) -> CircuitBreaker {
    CircuitBreaker::with_config(
        "inventory",
        CircuitBreakerConfig::default()
            .failure_threshold(failure_threshold)
            .break_duration(BREAK)
            .half_open_max_calls(1),
    )
    .unwrap()
}

type Mock = (
    mock::Spawn<
        tower_circuit_breaker::CircuitBreakerService<mock::Mock<&'static str, &'static str>>,
    >,
    mock::Handle<&'static str, &'static str>,
);

fn spawn(breaker: &CircuitBreaker) -> Mock {
    mock::spawn_layer(CircuitBreakerLayer::new(breaker.clone()))
}

/// One failing call through `service`, answered by `handle`.
async fn fail_once(mock: &mut Mock) {
    let (service, handle) = mock;
    handle.allow(1);
    assert_ready_ok!(service.poll_ready());
    let response = service.call("GET");
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error("500");
    response.await.unwrap_err();
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_ready_while_the_inner_service_is_not() {
    let breaker = breaker(1);
    let mut mock = spawn(&breaker);
    fail_once(&mut mock).await;
    let (service, handle) = &mut mock;
    handle.allow(0);
    assert!(
        service.poll_ready().is_ready(),
        "load-shed: ready while rejecting"
    );
    let err = service.call("GET").await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.breaker(), "inventory");
    assert_eq!(open.retry_after(), Some(BREAK));
    assert!(
        handle.poll_request().is_pending(),
        "the inner service was not called"
    );
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_waits_for_the_inner_service() {
    let breaker = breaker(1);
    let (mut service, mut handle) = spawn(&breaker);
    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(1);
    assert!(service.is_woken());
    assert_ready_ok!(service.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_is_never_called_without_readiness() {
    let breaker = breaker(1);
    let (mut service, mut handle) = spawn(&breaker);
    handle.allow(1);
    // No poll_ready: the call is refused without reaching the inner service.
    let err = service.call("GET").await.unwrap_err();
    assert!(err.is::<NotReady>());
    assert!(handle.poll_request().is_pending());
    assert_eq!(breaker.metrics().total_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_clone_starts_unpolled() {
    let breaker = breaker(1);
    let (mut service, mut handle) = spawn(&breaker);
    handle.allow(2);
    assert_ready_ok!(service.poll_ready());
    let mut clone = service.get_ref().clone();
    let err = clone.call("GET").await.unwrap_err();
    assert!(err.is::<NotReady>(), "the clone did not inherit readiness");
    // The original's readiness is untouched.
    let response = service.call("GET");
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response("200");
    assert_eq!(response.await.unwrap(), "200");
}

#[tokio::test(start_paused = true)]
async fn a_full_half_open_breaker_rejects_with_its_own_type() {
    let breaker = breaker(1);
    let mut mock = spawn(&breaker);
    fail_once(&mut mock).await;
    tokio::time::advance(BREAK).await;
    let (service, handle) = &mut mock;
    handle.allow(1);
    assert_ready_ok!(service.poll_ready());
    let probe = service.call("GET");
    assert_ready_ok!(service.poll_ready());
    let err = service.call("GET").await.unwrap_err();
    assert!(err.is::<HalfOpenFull>());
    assert!(matches!(
        Rejection::find(err.as_ref()),
        Some(Rejection::HalfOpenFull(_))
    ));
    drop(probe);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_frees_its_probe_slot() {
    let breaker = breaker(1);
    let mut mock = spawn(&breaker);
    fail_once(&mut mock).await;
    tokio::time::advance(BREAK).await;
    let (service, handle) = &mut mock;
    handle.allow(2);
    assert_ready_ok!(service.poll_ready());
    let probe = service.call("GET");
    assert_eq!(breaker.metrics().half_open_in_flight, 1);
    drop(probe);
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
    assert_eq!(breaker.metrics().cancelled_calls, 1);

    assert_ready_ok!(service.poll_ready());
    let probe = service.call("GET");
    let _dropped_call = handle.next_request().await.unwrap();
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response("200");
    assert_eq!(probe.await.unwrap(), "200");
}

#[tokio::test(start_paused = true)]
async fn the_state_is_checked_again_when_called() {
    let breaker = breaker(1);
    let (mut service, mut handle) = spawn(&breaker);
    handle.allow(1);
    assert_ready_ok!(service.poll_ready());
    breaker.isolate(); // between poll_ready and call
    let err = service.call("GET").await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert!(handle.poll_request().is_pending());
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn inner_readiness_errors_pass_through() {
    let breaker = breaker(1);
    let (mut service, mut handle) = spawn(&breaker);
    handle.send_error("connection refused");
    let Poll::Ready(Err(err)) = service.poll_ready() else {
        panic!("expected the inner readiness error");
    };
    assert_eq!(err.to_string(), "connection refused");
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "readiness errors are not calls"
    );
}

#[tokio::test(start_paused = true)]
async fn backpressure_mode_is_pending_while_open_and_wakes_when_the_break_ends() {
    let breaker = breaker(1);
    breaker.try_acquire().unwrap().failure();
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(
        CircuitBreakerLayer::new(breaker.clone()).backpressure(true),
    );
    handle.allow(1);
    assert!(service.poll_ready().is_pending());
    tokio::time::advance(BREAK - Duration::from_millis(1)).await;
    assert!(service.poll_ready().is_pending());
    tokio::time::advance(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert!(service.is_woken(), "woken when the break ended");
    assert_ready_ok!(service.poll_ready());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn a_per_try_timeout_inside_the_breaker_counts_as_a_timeout() {
    let breaker = breaker(2);
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .timeout(Duration::from_secs(1))
        .service_fn(|_: ()| std::future::pending::<Result<(), BoxError>>());
    for _ in 0..2 {
        let err = client.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>());
    }
    let metrics = breaker.metrics();
    assert_eq!((metrics.timeouts, metrics.failed_calls), (2, 2));
    assert_eq!(metrics.state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn every_service_a_layer_makes_shares_one_breaker() {
    let breaker = breaker(3);
    let layer = CircuitBreakerLayer::new(breaker.clone());
    let failing = || tower::service_fn(|_: ()| async { Err::<(), BoxError>("boom".into()) });
    // As axum does: a new `layer()` call per request.
    for _ in 0..3 {
        let mut service = layer.layer(failing());
        let _ = service.ready().await.unwrap().call(()).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let mut fresh = layer.layer(failing());
    let err = fresh.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(layer.breaker().metrics().failed_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides_how_responses_count() {
    let breaker = breaker(1);
    let five_hundreds = |result: &Result<u16, BoxError>| match result {
        Ok(status) if *status >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(five_hundreds))
        .service_fn(|status: u16| async move { Ok::<_, BoxError>(status) });
    assert_eq!(service.ready().await.unwrap().call(404).await.unwrap(), 404);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(service.ready().await.unwrap().call(503).await.unwrap(), 503);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[test]
fn services_and_futures_are_send_and_sync_for_axum_and_tonic() {
    fn send_sync<T: Send + Sync>() {}
    type Inner = tower::util::BoxCloneSyncService<(), (), BoxError>;
    send_sync::<tower_circuit_breaker::CircuitBreakerService<Inner>>();
    send_sync::<CircuitBreakerLayer>();
    fn send<T: Send>() {}
    send::<
        tower_circuit_breaker::layer::ResponseFuture<
            <Inner as Service<()>>::Future,
            tower_circuit_breaker::DefaultClassifier,
        >,
    >();
}
