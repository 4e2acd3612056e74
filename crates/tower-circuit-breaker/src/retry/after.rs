//! Reading a response's own idea of when to try again (`Retry-After`).

use std::time::Duration;

/// Reads how long a response asks the caller to wait before trying again: for HTTP, its
/// `Retry-After` header.
///
/// [`RetryPolicy`](super::RetryPolicy) asks its reader only about a response it would retry
/// (its classifier calls it a failure), and then waits exactly the hint when it is within
/// [`max_retry_after`](super::RetryPolicy::max_retry_after), gives up when it is longer, and
/// backs off as usual on `None`. See the [module docs](super#retry-after).
///
/// Implemented by [`NoRetryAfter`] (reads nothing, the default), `HttpRetryAfter` (with the
/// `http` feature) and every closure `Fn(&Res) -> Option<Duration>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot read a retry hint from a `{Res}`",
    label = "not a `RetryAfter<{Res}>`",
    note = "a hint reader implements `RetryAfter<{Res}>`, or is a closure `|response: &{Res}| -> Option<Duration>`",
    note = "`HttpRetryAfter` reads `http::Response<B>`; `NoRetryAfter` reads any response"
)]
pub trait RetryAfter<Res> {
    /// How long `response` asks the caller to wait before the next try: `Some(Duration::ZERO)`
    /// for "now", `None` when it says nothing this reader can read (the policy then backs off
    /// as usual). Must not panic, whatever the response holds.
    fn retry_after(&self, response: &Res) -> Option<Duration>;
}

/// Reads no hint from any response: the policy always backs off. The default reader of
/// [`RetryPolicy`](super::RetryPolicy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NoRetryAfter;

impl<Res> RetryAfter<Res> for NoRetryAfter {
    fn retry_after(&self, _response: &Res) -> Option<Duration> {
        None
    }
}

// Not recommended in errors: every type matches this impl, so without the attribute a type that
// is no reader is reported as "expected a closure" instead of with `RetryAfter`'s message.
#[diagnostic::do_not_recommend]
impl<Res, F> RetryAfter<Res> for F
where
    F: Fn(&Res) -> Option<Duration>,
{
    fn retry_after(&self, response: &Res) -> Option<Duration> {
        self(response)
    }
}

#[cfg(feature = "http")]
pub use self::http::HttpRetryAfter;

#[cfg(feature = "http")]
mod http {
    use std::time::{Duration, SystemTime};

    use ::http::header::RETRY_AFTER;
    use ::http::{HeaderValue, Response, StatusCode};

    use super::RetryAfter;

    /// Reads the `Retry-After` header of `429 Too Many Requests` and `503 Service Unavailable`
    /// responses: a number of seconds (`Retry-After: 120`) or an HTTP date (`Retry-After: Wed,
    /// 21 Oct 2026 07:28:00 GMT`, or the two obsolete date formats HTTP still accepts).
    ///
    /// Other statuses give no hint, even with the header: RFC 9110 defines `Retry-After` as
    /// "try again later" for 503 (and for 3xx, as a redirect's delay), RFC 6585 for 429; on a
    /// 500 or 502 it is not a promise the server made, and the policy backs off as for any 5xx.
    /// For other statuses or rules, write a closure and call [`HttpRetryAfter::parse`].
    ///
    /// | `Retry-After`                             | Hint                                  |
    /// |-------------------------------------------|---------------------------------------|
    /// | `2` (spaces around it allowed)            | 2 s                                   |
    /// | `0`, a date now or in the past            | zero: try now                         |
    /// | a date in the future                      | the time until it, by the system clock |
    /// | digits too many for a `u64` of seconds    | [`Duration::MAX`]: longer than any limit |
    /// | `-1`, `1.5`, `+2`, `2s`, `soon`, empty    | none: back off                        |
    /// | bytes that are not ASCII text             | none: back off                        |
    /// | two `Retry-After` lines                   | none: back off (the field has one value) |
    ///
    /// `Copy` and free to clone: it holds nothing.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct HttpRetryAfter {
        _private: (),
    }

    impl HttpRetryAfter {
        /// The reader of 429 and 503 responses' `Retry-After`.
        pub const fn new() -> Self {
            Self { _private: () }
        }

        /// Whether a response with `status` may carry a hint: 429 and 503.
        pub const fn reads_status(status: StatusCode) -> bool {
            matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
        }

        /// Reads one `Retry-After` value as a wait from `now`, whatever the response's status:
        /// seconds, or the time from `now` until an HTTP date (zero for a date at or before
        /// `now`). `None` for anything else. Never panics. See the [table](Self) for what reads
        /// as what.
        ///
        /// ```
        /// use std::time::{Duration, SystemTime};
        /// use http::HeaderValue;
        /// use tower_circuit_breaker::retry::HttpRetryAfter;
        ///
        /// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_460);
        /// let read = |value| HttpRetryAfter::parse(&HeaderValue::from_static(value), now);
        /// assert_eq!(read("120"), Some(Duration::from_secs(120)));
        /// assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::from_secs(20)));
        /// assert_eq!(read("Tue, 20 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        /// assert_eq!(read("soon"), None);
        /// ```
        pub fn parse(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
            let value = value.as_bytes().trim_ascii();
            if let Some(seconds) = delay_seconds(value) {
                return Some(seconds);
            }
            let date = httpdate::parse_http_date(std::str::from_utf8(value).ok()?).ok()?;
            Some(date.duration_since(now).unwrap_or(Duration::ZERO))
        }
    }

    impl<B> RetryAfter<Response<B>> for HttpRetryAfter {
        fn retry_after(&self, response: &Response<B>) -> Option<Duration> {
            if !Self::reads_status(response.status()) {
                return None;
            }
            let mut values = response.headers().get_all(RETRY_AFTER).iter();
            let value = values.next()?;
            if values.next().is_some() {
                return None;
            }
            Self::parse(value, SystemTime::now())
        }
    }

    /// `delay-seconds = 1*DIGIT`; a number too large for a `u64` of seconds is
    /// [`Duration::MAX`], since it still means "a very long time".
    fn delay_seconds(value: &[u8]) -> Option<Duration> {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut seconds = 0_u64;
        for digit in value {
            match seconds
                .checked_mul(10)
                .and_then(|seconds| seconds.checked_add(u64::from(digit - b'0')))
            {
                Some(more) => seconds = more,
                None => return Some(Duration::MAX),
            }
        }
        Some(Duration::from_secs(seconds))
    }

    #[cfg(test)]
    mod tests {
        use std::time::UNIX_EPOCH;

        use proptest::prelude::*;

        use super::*;

        fn now() -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        }

        fn read(value: &str) -> Option<Duration> {
            HttpRetryAfter::parse(&HeaderValue::from_str(value).unwrap(), now())
        }

        fn response(status: u16, retry_after: &[&str]) -> Response<()> {
            let mut response = Response::builder().status(status);
            for value in retry_after {
                response = response.header(RETRY_AFTER, *value);
            }
            response.body(()).unwrap()
        }

        #[test]
        fn reads_delta_seconds() {
            assert_eq!(read("2"), Some(Duration::from_secs(2)));
            assert_eq!(read("0"), Some(Duration::ZERO));
            assert_eq!(read("007"), Some(Duration::from_secs(7)));
            assert_eq!(read(" 600\t"), Some(Duration::from_secs(600)));
            assert_eq!(
                read("18446744073709551615"),
                Some(Duration::from_secs(u64::MAX))
            );
        }

        #[test]
        fn a_number_too_large_to_hold_saturates_to_the_longest_wait() {
            assert_eq!(read("18446744073709551616"), Some(Duration::MAX));
            assert_eq!(read(&"9".repeat(10_000)), Some(Duration::MAX));
        }

        #[test]
        fn reads_http_dates_in_all_three_formats() {
            let in_90_s = now() + Duration::from_secs(90);
            let imf = httpdate::fmt_http_date(in_90_s);
            assert_eq!(read(&imf), Some(Duration::from_secs(90)));
            // 1_700_000_090 is Tuesday, 14 November 2023, 22:14:50 UTC.
            assert_eq!(imf, "Tue, 14 Nov 2023 22:14:50 GMT");
            assert_eq!(
                read("Tuesday, 14-Nov-23 22:14:50 GMT"),
                Some(Duration::from_secs(90))
            );
            assert_eq!(
                read("Tue Nov 14 22:14:50 2023"),
                Some(Duration::from_secs(90))
            );
        }

        #[test]
        fn a_date_now_or_in_the_past_means_now() {
            assert_eq!(read(&httpdate::fmt_http_date(now())), Some(Duration::ZERO));
            let an_hour_ago = now() - Duration::from_secs(3600);
            assert_eq!(
                read(&httpdate::fmt_http_date(an_hour_ago)),
                Some(Duration::ZERO)
            );
            assert_eq!(read("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        }

        #[test]
        fn a_date_far_ahead_is_a_long_wait() {
            let wait = read("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
            assert!(wait > Duration::from_secs(250_000_000_000), "{wait:?}");
        }

        #[test]
        fn garbage_reads_as_nothing() {
            for value in [
                "",
                " ",
                "-1",
                "+2",
                "1.5",
                "2s",
                "2 3",
                "2, 3",
                "0x10",
                "soon",
                "١٢",
                "Wed, 32 Oct 2015 07:28:00 GMT",
                "Wed, 21 Oct 2015 07:28:00 UTC",
                "Wed, 21 Oct 2015 07:28:00 GMT trailing",
            ] {
                let header = HeaderValue::from_bytes(value.as_bytes()).unwrap();
                assert_eq!(HttpRetryAfter::parse(&header, now()), None, "{value:?}");
            }
        }

        #[test]
        fn bytes_that_are_not_text_read_as_nothing() {
            for bytes in [
                &b"\xff\xfe"[..],
                b"2\x80",
                b"\xc3\xa9",
                b"Wed, 21 Oct 2015\xa0",
            ] {
                let header = HeaderValue::from_bytes(bytes).unwrap();
                assert_eq!(HttpRetryAfter::parse(&header, now()), None, "{bytes:?}");
            }
        }

        #[test]
        fn reads_429_and_503_only() {
            let reader = HttpRetryAfter::new();
            let two = Some(Duration::from_secs(2));
            assert_eq!(reader.retry_after(&response(503, &["2"])), two);
            assert_eq!(reader.retry_after(&response(429, &["2"])), two);
            for status in [200, 301, 408, 500, 502, 504] {
                assert_eq!(
                    reader.retry_after(&response(status, &["2"])),
                    None,
                    "{status}"
                );
            }
        }

        #[test]
        fn no_header_or_two_of_them_read_as_nothing() {
            let reader = HttpRetryAfter::new();
            assert_eq!(reader.retry_after(&response(503, &[])), None);
            assert_eq!(reader.retry_after(&response(503, &["2", "3"])), None);
        }

        #[test]
        fn a_date_is_read_against_the_system_clock() {
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10));
            let wait = HttpRetryAfter::new()
                .retry_after(&response(429, &[&date]))
                .unwrap();
            // The date is whole seconds, cut down: between 9 and 10 s from when it was written.
            assert!(
                wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
                "{wait:?}"
            );
        }

        proptest! {
            #[test]
            fn any_header_bytes_read_without_panicking(
                bytes in proptest::collection::vec(any::<u8>(), 0..64),
                seconds in any::<u64>(),
            ) {
                let now = UNIX_EPOCH + Duration::from_secs(seconds % 400_000_000_000);
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    let _ = HttpRetryAfter::parse(&value, now);
                    let response = Response::builder()
                        .status(503)
                        .header(RETRY_AFTER, value)
                        .body(())
                        .unwrap();
                    let _ = HttpRetryAfter::new().retry_after(&response);
                }
            }

            #[test]
            fn any_digits_read_as_their_seconds_or_saturate(digits in "[0-9]{1,40}") {
                let expected = digits
                    .parse::<u64>()
                    .map_or(Duration::MAX, Duration::from_secs);
                prop_assert_eq!(read(&digits), Some(expected));
            }

            #[test]
            fn date_shaped_text_reads_without_panicking(
                value in "[A-Za-z]{0,9},? [0-9]{1,4}[ -][A-Za-z]{0,4}[ -][0-9]{0,5} \
                          [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3} [A-Z]{0,4}",
            ) {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    let _ = HttpRetryAfter::parse(&value, now());
                }
            }
        }
    }
}
