//! `RetryPolicy` under tower's `Retry`, alone and stacked over `CircuitBreakerLayer`, in paused
//! time.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState,
    HalfOpenFull, Outcome, RetryPolicy,
};

/// When each try reached the service.
#[derive(Clone, Default)]
struct Tries(Arc<Mutex<Vec<Instant>>>);

impl Tries {
    /// Records a try and returns its number, from 1.
    fn record(&self) -> usize {
        let mut tries = self.0.lock().unwrap();
        tries.push(Instant::now());
        tries.len()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Time between each try and the next.
    fn gaps(&self) -> Vec<Duration> {
        let tries = self.0.lock().unwrap();
        tries.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }

    /// Time from `start` to each try.
    fn offsets(&self, start: Instant) -> Vec<Duration> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|at| *at - start)
            .collect()
    }
}

/// A policy with no jitter, so delays are exact.
fn exact_policy() -> RetryPolicy {
    RetryPolicy::new().jitter(0.0)
}

fn breaker(failure_threshold: u32, break_duration: Duration) -> CircuitBreaker {
    CircuitBreaker::with_config(
        "upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(failure_threshold)
            .break_duration(break_duration)
            .success_threshold(1)
            .half_open_max_calls(1),
    )
    .unwrap()
}

async fn call<S, Req, Res>(service: &mut S, request: Req) -> Result<Res, BoxError>
where
    S: Service<Req, Response = Res, Error = BoxError>,
{
    service.ready().await?.call(request).await
}

/// Opens `breaker` with `failures` failed calls made directly on it.
async fn trip(breaker: &CircuitBreaker, failures: u32) {
    for _ in 0..failures {
        let _ = breaker.call(|| async { Err::<(), _>("down") }).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[derive(Debug)]
struct Wrapped(BoxError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrapped: {}", self.0)
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}

// ===== which results are retried =====

#[tokio::test(start_paused = true)]
async fn retries_a_failure_up_to_max_attempts_then_returns_the_last_error() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(3))
        .service(service_fn(move |_: ()| {
            let n = recorder.record();
            async move { Err::<(), BoxError>(format!("failure {n}").into()) }
        }));

    let err = call(&mut service, ()).await.unwrap_err();
    assert_eq!(err.to_string(), "failure 3");
    assert_eq!(tries.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_of_one_never_retries() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(1))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, ()).await.unwrap_err();
    assert_eq!(tries.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn returns_a_success_once_a_retry_succeeds() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(5))
        .service(service_fn(move |_: ()| {
            let n = recorder.record();
            async move {
                if n < 3 {
                    Err::<usize, BoxError>("down".into())
                } else {
                    Ok(n)
                }
            }
        }));

    assert_eq!(call(&mut service, ()).await.unwrap(), 3);
    assert_eq!(tries.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_a_success() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(5))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Ok::<_, BoxError>("ok") }
        }));

    assert_eq!(call(&mut service, ()).await.unwrap(), "ok");
    assert_eq!(tries.count(), 1);
}

/// An HTTP-like classifier over status codes: 5xx fail, 404 is ignored, errors fail.
fn by_status(result: &Result<u16, BoxError>) -> Outcome {
    match result {
        Ok(404) => Outcome::Ignored,
        Ok(status) if *status >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

#[tokio::test(start_paused = true)]
async fn retries_an_ok_response_its_classifier_calls_a_failure() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(5).classify_with(by_status))
        .service(service_fn(move |_: ()| {
            let n = recorder.record();
            async move { Ok::<u16, BoxError>(if n < 3 { 503 } else { 200 }) }
        }));

    assert_eq!(call(&mut service, ()).await.unwrap(), 200);
    assert_eq!(tries.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_an_outcome_its_classifier_ignores() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(5).classify_with(by_status))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Ok::<u16, BoxError>(404) }
        }));

    assert_eq!(call(&mut service, ()).await.unwrap(), 404);
    assert_eq!(tries.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_an_error_its_classifier_ignores() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let ignore_bad_request = |result: &Result<(), BoxError>| match result {
        Err(error) if error.to_string() == "400" => Outcome::Ignored,
        Err(_) => Outcome::Failure,
        Ok(()) => Outcome::Success,
    };
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(5)
                .classify_with(ignore_bad_request),
        )
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("400".into()) }
        }));

    assert_eq!(call(&mut service, ()).await.unwrap_err().to_string(), "400");
    assert_eq!(tries.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_request_gets_its_own_attempt_count() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(3))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, ()).await.unwrap_err();
    call(&mut service, ()).await.unwrap_err();
    let mut clone = service.clone();
    call(&mut clone, ()).await.unwrap_err();
    assert_eq!(tries.count(), 9);
}

#[tokio::test(start_paused = true)]
async fn each_try_sends_a_clone_of_the_request() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(3))
        .service(service_fn(move |request: String| {
            recorder.lock().unwrap().push(request);
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, "GET /items".to_owned())
        .await
        .unwrap_err();
    assert_eq!(*seen.lock().unwrap(), vec!["GET /items"; 3]);
}

// ===== backoff =====

#[tokio::test(start_paused = true)]
async fn backoff_grows_by_the_multiplier_and_stops_at_max_delay() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(6)
                .base_delay(Duration::from_millis(100))
                .multiplier(2.0)
                .max_delay(Duration::from_millis(500)),
        )
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, ()).await.unwrap_err();
    let ms = Duration::from_millis;
    assert_eq!(tries.gaps(), [ms(100), ms(200), ms(400), ms(500), ms(500)]);
}

#[tokio::test(start_paused = true)]
async fn multiplier_of_one_keeps_the_backoff_constant() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(4)
                .base_delay(Duration::from_millis(250))
                .multiplier(1.0),
        )
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, ()).await.unwrap_err();
    assert_eq!(tries.gaps(), [Duration::from_millis(250); 3]);
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_between_its_floor_and_max_delay() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            RetryPolicy::new()
                .max_attempts(101)
                .base_delay(Duration::from_millis(400))
                .multiplier(2.0)
                .max_delay(Duration::from_secs(1))
                .jitter(0.5),
        )
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, ()).await.unwrap_err();
    let gaps = tries.gaps();
    assert_eq!(gaps.len(), 100);
    // Backoffs are 400 ms, 800 ms, then capped at 1 s; jitter takes off up to half of each.
    // (Tokio's timer fires on whole milliseconds, so a gap may round up, never past a bound that
    // is itself whole milliseconds.)
    let ms = Duration::from_millis;
    let bounds = |gap: usize| match gap {
        0 => ms(200)..=ms(400),
        1 => ms(400)..=ms(800),
        _ => ms(500)..=ms(1000),
    };
    for (n, gap) in gaps.iter().enumerate() {
        assert!(bounds(n).contains(gap), "gap {n}: {gap:?}");
    }
    let first = gaps[2];
    assert!(
        gaps[2..].iter().any(|gap| *gap != first),
        "jitter drew one delay 98 times: {first:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn full_jitter_never_exceeds_the_backoff() {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            RetryPolicy::new()
                .max_attempts(51)
                .base_delay(Duration::from_millis(100))
                .multiplier(1.0)
                .jitter(1.0),
        )
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    call(&mut service, ()).await.unwrap_err();
    for gap in tries.gaps() {
        assert!(gap <= Duration::from_millis(100), "{gap:?}");
    }
}

/// Gaps between the tries of a request that always fails, under `policy`.
async fn gaps_under(policy: RetryPolicy) -> (usize, Vec<Duration>) {
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(policy)
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));
    call(&mut service, ()).await.unwrap_err();
    (tries.count(), tries.gaps())
}

#[tokio::test(start_paused = true)]
async fn zero_max_attempts_still_makes_the_first_try() {
    let (count, _) = gaps_under(exact_policy().max_attempts(0)).await;
    assert_eq!(count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_multiplier_below_one_or_nan_keeps_the_backoff_constant() {
    for multiplier in [0.5, f64::NAN, f64::INFINITY] {
        let policy = exact_policy().max_attempts(4).multiplier(multiplier);
        let (_, gaps) = gaps_under(policy).await;
        assert_eq!(gaps, [Duration::from_millis(100); 3], "{multiplier}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_out_of_range_jitter_is_clamped() {
    let (_, gaps) = gaps_under(RetryPolicy::new().max_attempts(3).jitter(f64::NAN)).await;
    assert_eq!(
        gaps,
        [Duration::from_millis(100), Duration::from_millis(200)],
        "NaN is no jitter"
    );
    let (_, gaps) = gaps_under(RetryPolicy::new().max_attempts(30).jitter(7.0)).await;
    assert!(
        gaps.iter().all(|gap| *gap <= Duration::from_secs(10)),
        "{gaps:?}"
    );
}

// ===== breaker rejections =====

#[tokio::test(start_paused = true)]
async fn returns_a_rejection_with_a_long_retry_after_at_once() {
    let breaker = breaker(1, Duration::from_secs(30));
    trip(&breaker, 1).await;
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(5)
                .max_rejection_wait(Duration::from_secs(5)),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Ok::<_, BoxError>("ok") }
        }));

    let start = Instant::now();
    let err = call(&mut service, ()).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(Instant::now(), start, "no time passed");
    assert_eq!(tries.count(), 0);
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn does_not_wait_out_any_rejection_by_default() {
    let breaker = breaker(1, Duration::from_millis(10));
    trip(&breaker, 1).await;
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(5))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>("ok") }));

    let start = Instant::now();
    let err = call(&mut service, ()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(Instant::now(), start);
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn waits_out_a_short_retry_after_exactly_and_succeeds_once_half_open() {
    let breaker = breaker(1, Duration::from_secs(1));
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(5)
                .base_delay(Duration::from_millis(100))
                .max_rejection_wait(Duration::from_secs(2)),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_: ()| {
            let n = recorder.record();
            async move {
                if n == 1 {
                    Err::<_, BoxError>("down".into())
                } else {
                    Ok("ok")
                }
            }
        }));

    let start = Instant::now();
    // Try 1 fails and opens the circuit; after the 100 ms backoff, try 2 is rejected with 900 ms
    // left; the policy waits exactly that, and try 3 is the half-open probe.
    assert_eq!(call(&mut service, ()).await.unwrap(), "ok");
    assert_eq!(
        tries.offsets(start),
        [Duration::ZERO, Duration::from_secs(1)]
    );
    assert_eq!(Instant::now() - start, Duration::from_secs(1));
    let metrics = breaker.metrics();
    assert_eq!(metrics.rejected_open, 1);
    assert_eq!(metrics.failed_calls, 1);
    assert_eq!(metrics.successful_calls, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_equal_to_max_rejection_wait_is_waited_out() {
    let breaker = breaker(1, Duration::from_secs(2));
    trip(&breaker, 1).await;
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_rejection_wait(Duration::from_secs(2)))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Ok::<_, BoxError>("ok") }
        }));

    let start = Instant::now();
    assert_eq!(call(&mut service, ()).await.unwrap(), "ok");
    assert_eq!(tries.offsets(start), [Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn a_waited_out_rejection_counts_toward_max_attempts() {
    let breaker = breaker(1, Duration::from_secs(1));
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(2)
                .max_rejection_wait(Duration::from_secs(2)),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    // Try 1 fails and opens the circuit, try 2 is rejected: two tries, no more.
    let err = call(&mut service, ()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(tries.count(), 1);
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_a_half_open_breaker_with_no_free_probe_slot() {
    let breaker = breaker(1, Duration::from_secs(1));
    trip(&breaker, 1).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = breaker.try_acquire().unwrap();
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(5)
                .max_rejection_wait(Duration::from_secs(60)),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Ok::<_, BoxError>("ok") }
        }));

    let start = Instant::now();
    let err = call(&mut service, ()).await.unwrap_err();
    assert!(err.is::<HalfOpenFull>());
    assert_eq!(Instant::now(), start);
    assert_eq!(tries.count(), 0);
    assert_eq!(breaker.metrics().rejected_half_open, 1);
    drop(probe);
}

#[tokio::test(start_paused = true)]
async fn does_not_retry_an_isolated_breaker() {
    let breaker = breaker(1, Duration::from_secs(1));
    breaker.isolate();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(5)
                .max_rejection_wait(Duration::from_secs(60)),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>("ok") }));

    let start = Instant::now();
    let err = call(&mut service, ()).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.retry_after(), None);
    assert_eq!(Instant::now(), start);
    assert_eq!(breaker.metrics().rejected_open, 1);
}

#[tokio::test(start_paused = true)]
async fn finds_a_rejection_wrapped_in_another_error() {
    let breaker = breaker(1, Duration::from_secs(30));
    trip(&breaker, 1).await;
    let rejecting = breaker.clone();
    let tries = Tries::default();
    let recorder = tries.clone();
    // A service (or a layer between retry and breaker) that wraps the rejection it got.
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(5))
        .service(service_fn(move |_: ()| {
            recorder.record();
            let rejection = rejecting.try_acquire().map(drop).unwrap_err();
            async move { Err::<(), BoxError>(Box::new(Wrapped(rejection.into_error()))) }
        }));

    let err = call(&mut service, ()).await.unwrap_err();
    assert!(err.is::<Wrapped>());
    assert_eq!(tries.count(), 1, "a wrapped rejection is not retried");
}

// ===== stacked over the breaker =====

#[tokio::test(start_paused = true)]
async fn every_try_reaches_the_breaker_and_retry_stops_at_the_first_rejection() {
    let breaker = breaker(2, Duration::from_secs(30));
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(
            exact_policy()
                .max_attempts(10)
                .max_rejection_wait(Duration::from_secs(1)),
        )
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(service_fn(move |_: ()| {
            recorder.record();
            async { Err::<(), BoxError>("down".into()) }
        }));

    let err = call(&mut service, ()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(tries.count(), 2);
    let metrics = breaker.metrics();
    assert_eq!(metrics.total_calls, 2);
    assert_eq!(metrics.failed_calls, 2);
    assert_eq!(metrics.rejected_open, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn retries_a_per_try_timeout_that_the_breaker_counts() {
    let breaker = breaker(5, Duration::from_secs(30));
    let tries = Tries::default();
    let recorder = tries.clone();
    let mut service = ServiceBuilder::new()
        .retry(exact_policy().max_attempts(3))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .timeout(Duration::from_secs(1))
        .service(service_fn(move |_: ()| {
            let n = recorder.record();
            async move {
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<_, BoxError>(n)
            }
        }));

    assert_eq!(call(&mut service, ()).await.unwrap(), 2);
    let metrics = breaker.metrics();
    assert_eq!(metrics.timeouts, 1);
    assert_eq!(metrics.successful_calls, 1);
}
