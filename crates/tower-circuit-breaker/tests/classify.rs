//! The HTTP and gRPC classifiers: how each status class and gRPC code counts, the 429 switch,
//! custom statuses and codes, errors and timeouts, `grpc-status` that is missing or malformed,
//! and both classifiers behind the tower layer.

#![cfg(feature = "http")]

use std::future::pending;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::classify::grpc::{GrpcClassifier, GrpcCode};
use tower_circuit_breaker::classify::http::HttpClassifier;
use tower_circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen, CircuitState, Classify,
    Outcome,
};

type HttpResult = Result<Response<()>, BoxError>;

fn status(code: u16) -> HttpResult {
    Ok(Response::builder().status(code).body(()).unwrap())
}

fn grpc_status(value: HeaderValue) -> HttpResult {
    Ok(Response::builder()
        .header("grpc-status", value)
        .body(())
        .unwrap())
}

fn grpc_code(code: i32) -> HttpResult {
    grpc_status(HeaderValue::from(code))
}

fn error(message: &str) -> HttpResult {
    Err(message.into())
}

fn tower_elapsed() -> HttpResult {
    Err(Box::new(tower::timeout::error::Elapsed::new()))
}

async fn tokio_elapsed() -> HttpResult {
    let elapsed = tokio::time::timeout(Duration::from_millis(1), pending::<()>())
        .await
        .unwrap_err();
    Err(Box::new(elapsed))
}

fn assert_statuses(classifier: &HttpClassifier, codes: &[u16], expected: Outcome) {
    for &code in codes {
        assert_eq!(
            classifier.classify(&status(code)),
            expected,
            "status {code}"
        );
    }
}

// ===== HTTP =====

#[test]
fn informational_successful_and_redirect_statuses_are_successes() {
    assert_statuses(
        &HttpClassifier::new(),
        &[100, 101, 200, 201, 204, 299, 301, 304, 399],
        Outcome::Success,
    );
}

#[test]
fn client_errors_are_ignored() {
    assert_statuses(
        &HttpClassifier::new(),
        &[400, 401, 403, 404, 408, 409, 422, 429, 451, 499],
        Outcome::Ignored,
    );
}

#[test]
fn server_errors_are_failures() {
    assert_statuses(
        &HttpClassifier::new(),
        &[500, 501, 502, 503, 505, 511, 599],
        Outcome::Failure,
    );
}

#[test]
fn gateway_timeout_is_a_timeout() {
    assert_statuses(&HttpClassifier::new(), &[504], Outcome::Timeout);
    assert!(HttpClassifier::new()
        .classify_status(StatusCode::GATEWAY_TIMEOUT)
        .is_failure());
}

#[test]
fn statuses_beyond_the_standard_classes_are_failures() {
    assert_statuses(&HttpClassifier::new(), &[600, 700, 999], Outcome::Failure);
}

#[test]
fn too_many_requests_is_ignored_unless_turned_on() {
    let default = HttpClassifier::new();
    assert_eq!(default.classify(&status(429)), Outcome::Ignored);

    let on = HttpClassifier::new().too_many_requests_as_failure(true);
    assert_eq!(on.classify(&status(429)), Outcome::Failure);
    // Only 429: the rest of the 4xx stay ignored.
    assert_statuses(&on, &[400, 404, 428, 430], Outcome::Ignored);

    let off_again = on.too_many_requests_as_failure(false);
    assert_eq!(off_again, default);
    assert_eq!(off_again.classify(&status(429)), Outcome::Ignored);
}

#[test]
fn too_many_requests_switch_wins_over_the_status_table() {
    let classifier = HttpClassifier::new()
        .too_many_requests_as_failure(true)
        .status_as(StatusCode::TOO_MANY_REQUESTS, Outcome::Success);
    assert_eq!(classifier.classify(&status(429)), Outcome::Failure);
    let classifier = classifier.too_many_requests_as_failure(false);
    assert_eq!(classifier.classify(&status(429)), Outcome::Success);
}

#[test]
fn custom_ranges_and_statuses_replace_the_defaults() {
    let classifier = HttpClassifier::new()
        .statuses_as(400..=499, Outcome::Success)
        .status_as(StatusCode::REQUEST_TIMEOUT, Outcome::Timeout)
        .statuses_as(502..505, Outcome::Failure)
        .status_as(StatusCode::NOT_IMPLEMENTED, Outcome::Ignored)
        .statuses_as(300..=399, Outcome::Failure);
    assert_statuses(&classifier, &[400, 404, 429, 499], Outcome::Success);
    assert_statuses(&classifier, &[408], Outcome::Timeout);
    assert_statuses(&classifier, &[502, 503, 504], Outcome::Failure);
    assert_statuses(&classifier, &[501], Outcome::Ignored);
    assert_statuses(&classifier, &[300, 302, 399], Outcome::Failure);
    assert_statuses(&classifier, &[200, 299], Outcome::Success);
    assert_statuses(&classifier, &[500, 505], Outcome::Failure);
}

#[test]
fn the_last_setting_for_a_status_wins() {
    let classifier = HttpClassifier::new()
        .status_as(StatusCode::NOT_FOUND, Outcome::Failure)
        .statuses_as(400..=499, Outcome::Success);
    assert_eq!(classifier.classify(&status(404)), Outcome::Success);
    let classifier = classifier.status_as(StatusCode::NOT_FOUND, Outcome::Failure);
    assert_eq!(classifier.classify(&status(404)), Outcome::Failure);
}

#[test]
fn a_set_of_failure_statuses_from_scratch() {
    // Only 502, 503 and 504 are failures; everything else, 500 included, is a success.
    let classifier = HttpClassifier::new()
        .statuses_as(.., Outcome::Success)
        .statuses_as(502..=504, Outcome::Failure);
    assert_statuses(&classifier, &[502, 503, 504], Outcome::Failure);
    assert_statuses(
        &classifier,
        &[100, 200, 404, 429, 500, 501, 505, 999],
        Outcome::Success,
    );
}

#[test]
fn ranges_outside_the_status_codes_are_clamped_or_skipped() {
    let classifier = HttpClassifier::new()
        .statuses_as(0..100, Outcome::Failure)
        .statuses_as(..=99, Outcome::Failure)
        .statuses_as(500..500, Outcome::Success)
        .statuses_as(0..0, Outcome::Success)
        .statuses_as(
            (
                std::ops::Bound::Excluded(u16::MAX),
                std::ops::Bound::Unbounded,
            ),
            Outcome::Success,
        );
    assert_eq!(classifier, HttpClassifier::new());

    let classifier = HttpClassifier::new().statuses_as(990..=u16::MAX, Outcome::Ignored);
    assert_statuses(&classifier, &[990, 999], Outcome::Ignored);
    assert_statuses(&classifier, &[989], Outcome::Failure);
}

#[tokio::test(start_paused = true)]
async fn http_errors_are_failures_and_elapsed_is_a_timeout() {
    let classifier = HttpClassifier::new();
    assert_eq!(
        classifier.classify(&error("connection refused")),
        Outcome::Failure
    );
    assert_eq!(classifier.classify(&tower_elapsed()), Outcome::Timeout);
    assert_eq!(
        classifier.classify(&tokio_elapsed().await),
        Outcome::Timeout
    );
}

#[test]
fn http_classifier_is_default_copy_and_debug() {
    let classifier = HttpClassifier::default();
    assert_eq!(classifier, HttpClassifier::new());
    assert!(std::mem::size_of::<HttpClassifier>() <= 240);
    let copy = classifier;
    assert_eq!(
        copy.classify(&status(503)),
        classifier.classify(&status(503))
    );
    assert_eq!(
        format!(
            "{:?}",
            HttpClassifier::new().status_as(StatusCode::NOT_FOUND, Outcome::Success)
        ),
        "HttpClassifier { statuses: {100..=399: Success, 400..=403: Ignored, 404: Success, \
         405..=499: Ignored, 500..=503: Failure, 504: Timeout, 505..=999: Failure}, \
         too_many_requests_as_failure: false }"
    );
}

// ===== gRPC =====

const UNWELL: [i32; 5] = [2, 8, 13, 14, 15];
const CALLERS: [i32; 10] = [1, 3, 5, 6, 7, 9, 10, 11, 12, 16];

#[test]
fn grpc_unwell_codes_are_failures() {
    let classifier = GrpcClassifier::new();
    for code in UNWELL {
        assert_eq!(
            classifier.classify(&grpc_code(code)),
            Outcome::Failure,
            "code {code}"
        );
    }
    assert_eq!(
        classifier.classify_code(GrpcCode::Unavailable),
        Outcome::Failure
    );
}

#[test]
fn grpc_deadline_exceeded_is_a_timeout() {
    assert_eq!(
        GrpcClassifier::new().classify(&grpc_code(4)),
        Outcome::Timeout
    );
}

#[test]
fn grpc_ok_is_a_success() {
    assert_eq!(
        GrpcClassifier::new().classify(&grpc_code(0)),
        Outcome::Success
    );
}

#[test]
fn grpc_caller_errors_are_ignored() {
    let classifier = GrpcClassifier::new();
    for code in CALLERS {
        assert_eq!(
            classifier.classify(&grpc_code(code)),
            Outcome::Ignored,
            "code {code}"
        );
    }
    assert_eq!(
        classifier.classify_code(GrpcCode::NotFound),
        Outcome::Ignored
    );
    assert_eq!(
        classifier.classify_code(GrpcCode::InvalidArgument),
        Outcome::Ignored
    );
}

#[test]
fn grpc_missing_status_with_http_200_is_a_success() {
    assert_eq!(
        GrpcClassifier::new().classify(&status(200)),
        Outcome::Success
    );
}

#[test]
fn grpc_status_header_decides_whatever_the_http_status() {
    let classifier = GrpcClassifier::new();
    let ok_behind_503 = Response::builder()
        .status(503)
        .header("grpc-status", "0")
        .body(())
        .unwrap();
    assert_eq!(classifier.classify(&Ok(ok_behind_503)), Outcome::Success);
    let not_found_behind_500 = Response::builder()
        .status(500)
        .header("grpc-status", "5")
        .body(())
        .unwrap();
    assert_eq!(
        classifier.classify(&Ok(not_found_behind_500)),
        Outcome::Ignored
    );
}

#[test]
fn grpc_missing_status_maps_the_http_status_as_grpc_clients_do() {
    let classifier = GrpcClassifier::new();
    // 429, 502, 503, 504: UNAVAILABLE. 500 and other statuses: UNKNOWN. 400: INTERNAL.
    for code in [429, 502, 503, 504, 500, 501, 505, 302, 400] {
        assert_eq!(
            classifier.classify(&status(code)),
            Outcome::Failure,
            "status {code}"
        );
    }
    // 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED.
    for code in [401, 403, 404] {
        assert_eq!(
            classifier.classify(&status(code)),
            Outcome::Ignored,
            "status {code}"
        );
    }
    // The mapped code goes through the configured table.
    let unimplemented_fails =
        GrpcClassifier::new().code_as(GrpcCode::Unimplemented, Outcome::Failure);
    assert_eq!(unimplemented_fails.classify(&status(404)), Outcome::Failure);
}

#[test]
fn grpc_malformed_status_reads_as_unknown_without_panicking() {
    let malformed = [
        HeaderValue::from_static(""),
        HeaderValue::from_static("abc"),
        HeaderValue::from_static("14 "),
        HeaderValue::from_static("+4"),
        HeaderValue::from_static("-1"),
        HeaderValue::from_static("017"),
        HeaderValue::from_static("17"),
        HeaderValue::from_static("99"),
        HeaderValue::from_static("4294967296"),
        HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap(),
    ];
    let default = GrpcClassifier::new();
    let unknown_ignored = GrpcClassifier::new().code_as(GrpcCode::Unknown, Outcome::Ignored);
    for value in malformed {
        let response = grpc_status(value.clone());
        assert_eq!(default.classify(&response), Outcome::Failure, "{value:?}");
        assert_eq!(
            unknown_ignored.classify(&response),
            Outcome::Ignored,
            "{value:?}"
        );
        assert_eq!(GrpcCode::from_bytes(value.as_bytes()), GrpcCode::Unknown);
    }
}

#[test]
fn grpc_code_numbers_and_header_values_round_trip() {
    for number in 0..=16 {
        let code = GrpcCode::from_i32(number);
        assert_eq!(code.as_i32(), number);
        assert_eq!(GrpcCode::from_bytes(number.to_string().as_bytes()), code);
    }
    assert_eq!(GrpcCode::from_i32(-1), GrpcCode::Unknown);
    assert_eq!(GrpcCode::from_i32(17), GrpcCode::Unknown);
    assert_eq!(GrpcCode::from_i32(14), GrpcCode::Unavailable);

    let mut headers = http::HeaderMap::new();
    assert_eq!(GrpcCode::from_headers(&headers), None);
    headers.insert(GrpcCode::HEADER, HeaderValue::from_static("4"));
    assert_eq!(
        GrpcCode::from_headers(&headers),
        Some(GrpcCode::DeadlineExceeded)
    );
}

#[test]
fn grpc_codes_are_configurable() {
    let classifier = GrpcClassifier::new()
        .code_as(GrpcCode::ResourceExhausted, Outcome::Ignored)
        .code_as(GrpcCode::NotFound, Outcome::Failure)
        .code_as(GrpcCode::DeadlineExceeded, Outcome::Failure)
        .code_as(GrpcCode::Ok, Outcome::Success);
    assert_eq!(classifier.classify(&grpc_code(8)), Outcome::Ignored);
    assert_eq!(classifier.classify(&grpc_code(5)), Outcome::Failure);
    assert_eq!(classifier.classify(&grpc_code(4)), Outcome::Failure);
    // The rest keep their defaults.
    assert_eq!(classifier.classify(&grpc_code(14)), Outcome::Failure);
    assert_eq!(classifier.classify(&grpc_code(3)), Outcome::Ignored);
    assert_eq!(classifier.classify(&grpc_code(0)), Outcome::Success);
    assert_ne!(classifier, GrpcClassifier::default());
}

#[tokio::test(start_paused = true)]
async fn grpc_errors_are_failures_and_elapsed_is_a_timeout() {
    let classifier = GrpcClassifier::new();
    assert_eq!(
        classifier.classify(&error("h2 protocol error")),
        Outcome::Failure
    );
    assert_eq!(classifier.classify(&tower_elapsed()), Outcome::Timeout);
    assert_eq!(
        classifier.classify(&tokio_elapsed().await),
        Outcome::Timeout
    );
}

#[test]
fn grpc_classifier_is_default_copy_and_debug() {
    let classifier = GrpcClassifier::default();
    assert_eq!(classifier, GrpcClassifier::new());
    assert_eq!(std::mem::size_of::<GrpcClassifier>(), 8);
    let debug = format!("{classifier:?}");
    assert!(
        debug.starts_with(
            "GrpcClassifier { codes: {Ok: Success, Cancelled: Ignored, Unknown: Failure,"
        ),
        "{debug}"
    );
    assert!(debug.contains("DeadlineExceeded: Timeout"), "{debug}");
}

// ===== behind the layer =====

fn breaker(failure_threshold: u32) -> CircuitBreaker {
    CircuitBreaker::with_config(
        "upstream",
        CircuitBreakerConfig::default()
            .failure_threshold(failure_threshold)
            .break_duration(Duration::from_secs(30)),
    )
    .unwrap()
}

/// An HTTP service answering each request with the status it names.
fn echo_status() -> impl Service<u16, Response = Response<()>, Error = BoxError> + Clone {
    service_fn(|code: u16| async move {
        Ok::<_, BoxError>(Response::builder().status(code).body(()).unwrap())
    })
}

#[tokio::test(start_paused = true)]
async fn layer_with_http_classifier_trips_on_503s_not_on_404s() {
    let breaker = breaker(3);
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        .service(echo_status());

    for _ in 0..10 {
        let response = client.ready().await.unwrap().call(404).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().ignored_calls, 10);

    for _ in 0..3 {
        let response = client.ready().await.unwrap().call(503).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let rejected = client.ready().await.unwrap().call(200).await.unwrap_err();
    assert!(rejected.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn client_errors_between_server_errors_do_not_reset_the_consecutive_count() {
    let breaker = breaker(3);
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        .service(echo_status());

    for code in [503, 404, 500, 400, 502] {
        client.ready().await.unwrap().call(code).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn layer_with_http_classifier_counts_a_per_try_timeout_as_a_timeout() {
    let breaker = breaker(1);
    let mut client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(HttpClassifier::new()))
        .timeout(Duration::from_secs(1))
        .service(service_fn(|_: u16| async {
            pending::<Result<Response<()>, BoxError>>().await
        }));

    let err = client.ready().await.unwrap().call(200).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(breaker.metrics().timeouts, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn layer_with_grpc_classifier_trips_on_unavailable_not_on_not_found() {
    let breaker = breaker(3);
    let mut channel = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify_with(GrpcClassifier::new()))
        .service(service_fn(|code: i32| async move {
            // HTTP 200 with the status in the head: a Trailers-Only response.
            grpc_code(code)
        }));

    for _ in 0..10 {
        channel.ready().await.unwrap().call(5).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    for _ in 0..3 {
        channel.ready().await.unwrap().call(14).await.unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let rejected = channel.ready().await.unwrap().call(0).await.unwrap_err();
    assert!(rejected.is::<CircuitOpen>());
}
