//! [`RetryPolicy`]: which results are retried, and how long to wait before each retry.

use std::time::Duration;

use tower::retry::Policy;
use tower::BoxError;

use super::{NoRetryAfter, RetryAfter, RetryDelay};
use crate::{Classify, DefaultClassifier, Rejection};

/// The default of [`RetryPolicy::max_retry_after`]: the total request timeout of Microsoft's
/// standard resilience handler.
const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A [`tower::retry::Policy`] with capped exponential backoff and jitter that does not retry a
/// circuit breaker's rejection (or waits it out, when the breaker will admit soon enough), and
/// waits as long as a response's `Retry-After` asks, within a limit.
///
/// Defaults: 3 tries in all, backoff from 100 ms doubling up to 10 s with jitter 0.5, no
/// rejection waited out, results classified by [`DefaultClassifier`] (any error is a failure),
/// no hint read from responses ([`NoRetryAfter`]), and hints up to 30 s honoured once a reader is
/// set. See the [module docs](crate::retry).
///
/// Two type parameters say what a policy looks at, each with a default that keeps the policy
/// working for any response type: `C` decides which results are retried
/// ([`classify_with`](Self::classify_with)), `H` reads the wait a response asks for
/// ([`retry_after_with`](Self::retry_after_with)). `RetryPolicy<C>` is `RetryPolicy<C,
/// NoRetryAfter>`. For an HTTP client, `RetryPolicy::http()` (with the `http` feature) sets both.
#[derive(Debug, Clone)]
pub struct RetryPolicy<C = DefaultClassifier, H = NoRetryAfter> {
    max_attempts: u32,
    base_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
    max_rejection_wait: Option<Duration>,
    max_retry_after: Duration,
    classifier: C,
    retry_after: H,
    /// Retries granted so far to the request this clone belongs to.
    retries: u32,
}

// ===== impl RetryPolicy =====

impl RetryPolicy {
    /// A policy with the defaults: 3 tries, 100 ms doubling to at most 10 s, jitter 0.5, no
    /// rejection waited out, [`DefaultClassifier`], no `Retry-After` read.
    pub const fn new() -> Self {
        Self::with(DefaultClassifier, NoRetryAfter)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl RetryPolicy<crate::HttpClassifier, super::HttpRetryAfter> {
    /// A policy for an HTTP client (`http::Response<B>`), as Microsoft's standard resilience
    /// handler retries: errors (timeouts included), 5xx, 408 Request Timeout and 429 Too Many
    /// Requests are retried, and the `Retry-After` of a 429 or 503 is honoured up to
    /// [`max_retry_after`](Self::max_retry_after) (default 30 s). Otherwise the defaults of
    /// [`new`](RetryPolicy::new): 3 tries, 100 ms doubling to at most 10 s, jitter 0.5, no
    /// rejection waited out.
    ///
    /// The classifier is [`HttpClassifier`](crate::HttpClassifier) with 429 and 408 turned into
    /// failures. That differs on purpose from the breaker's default `HttpClassifier::new()`,
    /// which ignores every 4xx: the breaker asks "is the server unwell?", and a 429 that enforces
    /// this caller's quota says no; the retry asks "is another try, later, worth it?", and a 429
    /// or 408 says yes. So the breaker of the same stack keeps `HttpClassifier::new()`, and sees
    /// each 429 try as ignored. For other rules, pass a classifier to
    /// [`classify_with`](Self::classify_with); the hint reader stays.
    ///
    /// See the [module docs](crate::retry#example-http-with-retry-after) for an example.
    pub const fn http() -> Self {
        let classifier = crate::HttpClassifier::new()
            .too_many_requests_as_failure(true)
            .status_as(::http::StatusCode::REQUEST_TIMEOUT, crate::Outcome::Failure);
        Self::with(classifier, super::HttpRetryAfter::new())
    }
}

impl<C, H> RetryPolicy<C, H> {
    const fn with(classifier: C, retry_after: H) -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
            max_rejection_wait: None,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            classifier,
            retry_after,
            retries: 0,
        }
    }

    /// Tries in all, the first one included: `1` never retries, `3` retries twice. Default 3.
    /// The first try is always made, so `0` counts as `1`.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the first retry, before jitter. Default 100 ms.
    #[must_use]
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// Each retry's backoff is the previous one's times `multiplier`: the `n`th retry waits
    /// `base_delay × multiplier^(n−1)`, capped at [`max_delay`](Self::max_delay). `1` keeps the
    /// backoff constant. Default 2. A backoff never shrinks: a multiplier below 1, or not a
    /// finite number, counts as 1.
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() && multiplier >= 1.0 {
            multiplier
        } else {
            1.0
        };
        self
    }

    /// The longest backoff, jitter included: growth stops here. Default 10 s. It bounds the
    /// backoff only: a breaker's `retry_after` is bounded by
    /// [`max_rejection_wait`](Self::max_rejection_wait), a response's `Retry-After` by
    /// [`max_retry_after`](Self::max_retry_after).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much of each backoff is left to chance: a backoff `d` (already capped) becomes a delay
    /// drawn uniformly from `[d × (1 − jitter), d]`, so requests that failed together do not
    /// retry together, and no delay exceeds [`max_delay`](Self::max_delay). `0` is no jitter,
    /// `0.5` the "equal jitter" and `1` the "full jitter" of the AWS architecture blog. Default
    /// 0.5. A wait someone asked for (a breaker's `retry_after`, a response's `Retry-After`) is
    /// never jittered.
    ///
    /// Unlike [`BreakBackoff::jitter`](crate::BreakBackoff::jitter), which moves a break either
    /// way, this only shortens: `max_delay` is a bound a caller can plan an overall timeout by.
    /// A value outside `[0, 1]` is clamped to it; NaN counts as 0.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// Waits out a breaker's rejection whose [`retry_after`](crate::CircuitOpen::retry_after) is
    /// at most `wait`, then retries (the retry is the breaker's probe). The wait is the
    /// `retry_after` itself, not the backoff. A rejection that says nothing of when the breaker
    /// will admit (half-open and full, or isolated) is never retried. Default: no rejection is
    /// waited out.
    #[must_use]
    pub fn max_rejection_wait(mut self, wait: Duration) -> Self {
        self.max_rejection_wait = Some(wait);
        self
    }

    /// The longest wait a response may ask for (for HTTP, its `Retry-After`) and still be
    /// retried. A hint up to `limit` is waited exactly, with no jitter; a longer one ends the
    /// retries at once, and the caller gets that response. Default 30 s, the total request
    /// timeout of Microsoft's standard resilience handler. `Duration::ZERO` honours only "try
    /// now". It matters only with a hint reader ([`retry_after_with`](Self::retry_after_with),
    /// or `RetryPolicy::http()`); see the [module docs](crate::retry#retry-after).
    ///
    /// Keep it below an overall timeout above the retry, or that timeout ends the wait first.
    #[must_use]
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.max_retry_after = limit;
        self
    }

    /// Decides which results are retried with `classifier` instead: those it calls a
    /// [`Failure`](crate::Outcome::Failure) or [`Timeout`](crate::Outcome::Timeout). Use the
    /// same classifier as the breaker's layer, so an `Ok` response with a 503 status is retried
    /// and an outcome the breaker ignores (a 404) is not. The hint reader is kept.
    pub fn classify_with<C2>(self, classifier: C2) -> RetryPolicy<C2, H> {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: self.base_delay,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            jitter: self.jitter,
            max_rejection_wait: self.max_rejection_wait,
            max_retry_after: self.max_retry_after,
            classifier,
            retry_after: self.retry_after,
            retries: self.retries,
        }
    }

    /// Reads the wait a response asks for with `reader`: a [`RetryAfter`], such as
    /// `HttpRetryAfter` (with the `http` feature), [`NoRetryAfter`] to read none, or a closure
    /// `|response: &Res| -> Option<Duration>`. It is asked only about responses the classifier
    /// would retry. The classifier is kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::BoxError;
    /// use tower_circuit_breaker::retry::RetryPolicy;
    /// use tower_circuit_breaker::Outcome;
    ///
    /// /// A queue client's answer: taken, or busy for so many milliseconds.
    /// #[derive(Clone)]
    /// struct Reply {
    ///     busy_for_ms: Option<u64>,
    /// }
    ///
    /// let policy = RetryPolicy::new()
    ///     .classify_with(|result: &Result<Reply, BoxError>| match result {
    ///         Ok(Reply { busy_for_ms: None }) => Outcome::Success,
    ///         _ => Outcome::Failure,
    ///     })
    ///     .retry_after_with(|reply: &Reply| reply.busy_for_ms.map(Duration::from_millis))
    ///     .max_retry_after(Duration::from_secs(5));
    /// # let _ = policy;
    /// ```
    pub fn retry_after_with<H2>(self, reader: H2) -> RetryPolicy<C, H2> {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: self.base_delay,
            multiplier: self.multiplier,
            max_delay: self.max_delay,
            jitter: self.jitter,
            max_rejection_wait: self.max_rejection_wait,
            max_retry_after: self.max_retry_after,
            classifier: self.classifier,
            retry_after: reader,
            retries: self.retries,
        }
    }

    /// The backoff before retry number `retry` (1 for the first), jitter drawn.
    fn backoff(&self, retry: u32) -> Duration {
        if self.base_delay.is_zero() || self.max_delay.is_zero() {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        // In nanoseconds, rounded, so 100 ms × 2 is 200 ms and not a nanosecond off either way.
        let grown = self.base_delay.as_nanos() as f64 * self.multiplier.powi(exponent);
        let capped = grown.min(self.max_delay.as_nanos() as f64);
        // The thread-local generator, not one kept in the policy: `Retry` clones the policy for
        // each request, and a generator cloned with it would give every request the same draws.
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::from_nanos(jittered.round() as u64).min(self.max_delay)
    }

    /// How long to wait before retrying after `rejection`, if it may be retried at all.
    fn rejection_wait(&self, rejection: &Rejection) -> Option<Duration> {
        let retry_after = rejection.retry_after()?;
        (retry_after <= self.max_rejection_wait?).then_some(retry_after)
    }
}

/// What a retry waits for.
enum Wait {
    /// A breaker's `retry_after`, exactly.
    Rejection(Duration),
    /// A response's own hint, exactly.
    Hint(Duration),
    /// The capped, jittered backoff.
    Backoff,
}

impl<C, H, Req, Res> Policy<Req, Res, BoxError> for RetryPolicy<C, H>
where
    C: Classify<Res, BoxError>,
    H: RetryAfter<Res>,
    Req: Clone,
{
    type Future = RetryDelay;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, BoxError>) -> Option<RetryDelay> {
        let wait = match &*result {
            Err(error) => match Rejection::find(error.as_ref()) {
                Some(rejection) => Wait::Rejection(self.rejection_wait(&rejection)?),
                None if self.classifier.classify(result).is_failure() => Wait::Backoff,
                None => return None,
            },
            Ok(response) if self.classifier.classify(result).is_failure() => {
                match self.retry_after.retry_after(response) {
                    Some(hint) if hint <= self.max_retry_after => Wait::Hint(hint),
                    Some(hint) => {
                        tracing::debug!(
                            ?hint,
                            max_retry_after = ?self.max_retry_after,
                            "not retrying: the response asks for a longer wait than allowed"
                        );
                        return None;
                    }
                    None => Wait::Backoff,
                }
            }
            Ok(_) => return None,
        };
        if self.retries + 1 >= self.max_attempts {
            return None;
        }
        self.retries += 1;
        let delay = match wait {
            Wait::Rejection(retry_after) => {
                tracing::debug!(
                    retry = self.retries,
                    ?retry_after,
                    "waiting out a circuit breaker rejection before retrying"
                );
                retry_after
            }
            Wait::Hint(hint) => {
                tracing::debug!(
                    retry = self.retries,
                    ?hint,
                    "waiting as long as the response asks before retrying"
                );
                hint
            }
            Wait::Backoff => {
                let backoff = self.backoff(self.retries);
                tracing::debug!(retry = self.retries, ?backoff, "retrying a failed call");
                backoff
            }
        };
        Some(RetryDelay::after(delay))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use http::{Response, StatusCode};
    use proptest::prelude::*;
    use tokio::time::Instant;
    use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

    use super::*;
    use crate::retry::HttpRetryAfter;
    use crate::{CircuitOpen, HttpClassifier};

    fn response(status: u16, retry_after: Option<&str>) -> Response<()> {
        let mut response = Response::builder().status(status);
        if let Some(value) = retry_after {
            response = response.header(http::header::RETRY_AFTER, value);
        }
        response.body(()).unwrap()
    }

    fn response_bytes(status: u16, retry_after: &[u8]) -> Option<Response<()>> {
        let value = http::HeaderValue::from_bytes(retry_after).ok()?;
        let mut response = response(status, None);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
        Some(response)
    }

    /// An HTTP policy whose backoff is exactly 100 ms, 200 ms, ...: a hint is told from it.
    fn exact() -> RetryPolicy<HttpClassifier, HttpRetryAfter> {
        RetryPolicy::http().jitter(0.0).max_attempts(10)
    }

    /// The wait `policy` chooses after `result`, from now; `None` if it does not retry.
    fn wait_after<C, H>(
        policy: &mut RetryPolicy<C, H>,
        result: Result<Response<()>, BoxError>,
    ) -> Option<Duration>
    where
        C: Classify<Response<()>, BoxError>,
        H: RetryAfter<Response<()>>,
    {
        let mut result = result;
        let delay = Policy::<(), _, _>::retry(policy, &mut (), &mut result)?;
        Some(delay.deadline() - Instant::now())
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    const BACKOFF: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn retry_after_2_on_a_503_waits_exactly_2_s() {
        // Jitter on, as by default: a hint is not jittered.
        let mut policy = RetryPolicy::http();
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("2")))),
            Some(secs(2))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_on_a_429_is_honoured() {
        let mut policy = exact();
        assert_eq!(
            wait_after(&mut policy, Ok(response(429, Some("1")))),
            Some(secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_600_is_not_retried() {
        let mut policy = exact();
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("600")))),
            None
        );
        assert_eq!(wait_after(&mut policy, Ok(response(429, Some("31")))), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_is_30_s_inclusive_by_default_and_can_be_moved() {
        let mut policy = exact();
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("30")))),
            Some(secs(30))
        );
        let mut policy = exact().max_retry_after(secs(600));
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("600")))),
            Some(secs(600))
        );
        let mut policy = exact().max_retry_after(secs(1));
        assert_eq!(wait_after(&mut policy, Ok(response(503, Some("2")))), None);
        let mut policy = exact().max_retry_after(Duration::ZERO);
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("0")))),
            Some(Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_date_in_the_future_waits_until_then() {
        let date = httpdate::fmt_http_date(SystemTime::now() + secs(10));
        let mut policy = exact();
        let wait = wait_after(&mut policy, Ok(response(503, Some(&date)))).unwrap();
        // Whole seconds, cut down: between 9 and 10 s from when the date was written.
        assert!(wait > secs(8) && wait <= secs(10), "{wait:?}");

        let far = httpdate::fmt_http_date(SystemTime::now() + secs(3600));
        assert_eq!(wait_after(&mut policy, Ok(response(503, Some(&far)))), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_date_in_the_past_retries_now() {
        let date = httpdate::fmt_http_date(SystemTime::now() - secs(3600));
        let mut policy = exact();
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some(&date)))),
            Some(Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_falls_back_to_the_backoff() {
        for value in ["soon", "-5", "2.5", "", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            let mut policy = exact();
            assert_eq!(
                wait_after(&mut policy, Ok(response(503, Some(value)))),
                Some(BACKOFF),
                "{value:?}"
            );
        }
        let mut policy = exact();
        let not_text = response_bytes(503, b"\xff\xfe").unwrap();
        assert_eq!(wait_after(&mut policy, Ok(not_text)), Some(BACKOFF));
        let mut policy = exact();
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, None))),
            Some(BACKOFF)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_number_too_large_to_hold_is_a_long_wait_and_not_retried() {
        let mut policy = exact().max_retry_after(Duration::MAX);
        // Even with no limit at all, no overflow: the deadline is tokio's far future.
        assert!(
            wait_after(&mut policy, Ok(response(503, Some(&"9".repeat(400))))).unwrap()
                > secs(86_400 * 365)
        );
        let mut policy = exact();
        for value in ["18446744073709551616", &"9".repeat(10_000)] {
            assert_eq!(
                wait_after(&mut policy, Ok(response(503, Some(value)))),
                None
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_500_with_retry_after_backs_off_like_any_5xx() {
        for status in [500, 502, 504] {
            let mut policy = exact();
            assert_eq!(
                wait_after(&mut policy, Ok(response(status, Some("2")))),
                Some(BACKOFF),
                "{status}"
            );
            let mut policy = exact();
            assert_eq!(
                wait_after(&mut policy, Ok(response(status, Some("600")))),
                Some(BACKOFF),
                "{status}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http_retries_408_and_429_without_a_hint_and_not_other_4xx_or_successes() {
        for status in [408, 429] {
            let mut policy = exact();
            assert_eq!(
                wait_after(&mut policy, Ok(response(status, None))),
                Some(BACKOFF),
                "{status}"
            );
        }
        for status in [200, 301, 400, 404] {
            let mut policy = exact();
            assert_eq!(
                wait_after(&mut policy, Ok(response(status, Some("2")))),
                None,
                "{status}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hint_is_read_only_from_a_response_the_classifier_retries() {
        // The breaker's classifier ignores 429: with it, a 429 is not retried, hint or not.
        let mut policy = exact().classify_with(HttpClassifier::new());
        assert_eq!(wait_after(&mut policy, Ok(response(429, Some("1")))), None);
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("1")))),
            Some(secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_reader_an_http_response_backs_off_as_before() {
        let mut policy = RetryPolicy::new()
            .jitter(0.0)
            .classify_with(HttpClassifier::new());
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("2")))),
            Some(BACKOFF)
        );
        let mut policy = RetryPolicy::new()
            .jitter(0.0)
            .classify_with(HttpClassifier::new());
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("600")))),
            Some(BACKOFF)
        );
        // And `NoRetryAfter` puts a reader back to reading nothing.
        let mut policy = exact().retry_after_with(NoRetryAfter);
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("2")))),
            Some(BACKOFF)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closure_is_a_reader() {
        let mut policy = exact().retry_after_with(|response: &Response<()>| {
            response
                .headers()
                .get("x-retry-in-ms")?
                .to_str()
                .ok()?
                .parse()
                .ok()
                .map(Duration::from_millis)
        });
        let mut busy = response(503, None);
        busy.headers_mut()
            .insert("x-retry-in-ms", http::HeaderValue::from_static("1500"));
        assert_eq!(
            wait_after(&mut policy, Ok(busy)),
            Some(Duration::from_millis(1500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_path_and_rejections_are_unchanged() {
        let mut policy = exact();
        assert_eq!(wait_after(&mut policy, Err("reset".into())), Some(BACKOFF));

        // A rejection longer than `max_rejection_wait` (none by default) is not retried, even
        // though a hint of that length would be.
        let open = || -> BoxError { Box::new(CircuitOpen::new("upstream".into(), Some(secs(5)))) };
        let mut policy = exact();
        assert_eq!(wait_after(&mut policy, Err(open())), None);
        let mut policy = exact().max_rejection_wait(secs(4));
        assert_eq!(wait_after(&mut policy, Err(open())), None);
        let mut policy = exact().max_rejection_wait(secs(5));
        assert_eq!(wait_after(&mut policy, Err(open())), Some(secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hinted_wait_counts_toward_max_attempts() {
        let mut policy = exact().max_attempts(2);
        assert_eq!(
            wait_after(&mut policy, Ok(response(503, Some("2")))),
            Some(secs(2))
        );
        assert_eq!(wait_after(&mut policy, Ok(response(503, Some("2")))), None);
    }

    #[tokio::test(start_paused = true)]
    async fn under_tower_retry_the_second_try_goes_out_2_s_after_the_first() {
        let tries = Arc::new(Mutex::new(Vec::new()));
        let recorder = tries.clone();
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::http())
            .service(service_fn(move |_: ()| {
                let mut tries = recorder.lock().unwrap();
                tries.push(Instant::now());
                let answer = if tries.len() == 1 {
                    response(503, Some("2"))
                } else {
                    response(200, None)
                };
                async move { Ok::<_, BoxError>(answer) }
            }));

        let response = service.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let tries = tries.lock().unwrap();
        assert_eq!(tries.len(), 2);
        assert_eq!(tries[1] - tries[0], secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn under_tower_retry_a_600_s_hint_returns_the_503_after_one_try() {
        let tries = Arc::new(Mutex::new(0));
        let recorder = tries.clone();
        let mut service = ServiceBuilder::new()
            .retry(RetryPolicy::http().max_attempts(5))
            .service(service_fn(move |_: ()| {
                *recorder.lock().unwrap() += 1;
                async { Ok::<_, BoxError>(response(503, Some("600"))) }
            }));

        let started = Instant::now();
        let response = service.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "600");
        assert_eq!(*tries.lock().unwrap(), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    proptest! {
        /// Whatever a 429 or 503's `Retry-After` holds, the policy does not panic, and it either
        /// gives up, waits a hint within the limit, or backs off.
        #[test]
        fn any_retry_after_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
            status in prop_oneof![Just(429_u16), Just(503_u16), Just(500_u16)],
            limit in 0_u64..100,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let _entered = runtime.enter();
            if let Some(answer) = response_bytes(status, &bytes) {
                let mut policy = exact().max_retry_after(secs(limit));
                let max_delay = secs(10);
                if let Some(wait) = wait_after(&mut policy, Ok(answer)) {
                    prop_assert!(wait <= secs(limit).max(max_delay), "{:?}", wait);
                }
            }
        }
    }
}
