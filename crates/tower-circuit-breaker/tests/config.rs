//! Configuration: the defaults, serde with `"30s"` durations, and validation that names the
//! field and the rule.

use std::time::Duration;

use tower_circuit_breaker::{CancelledCalls, CircuitBreaker, CircuitBreakerConfig};

#[test]
fn defaults_follow_req_009() {
    let config = CircuitBreakerConfig::default();
    assert_eq!(config.failure_threshold, 5);
    assert_eq!(config.break_duration, Duration::from_secs(30));
    assert_eq!(config.success_threshold, 3);
    assert_eq!(config.half_open_max_calls, 5);
    assert_eq!(config.cancelled_calls, CancelledCalls::Ignored);
    config.validate().unwrap();
}

#[test]
fn deserializes_from_json_with_human_durations_and_defaults_for_the_rest() {
    let config: CircuitBreakerConfig = serde_json::from_str(
        r#"{ "failure_threshold": 3, "break_duration": "1m 30s", "half_open_timeout": "250ms",
             "cancelled_calls": "failure" }"#,
    )
    .unwrap();
    assert_eq!(config.failure_threshold, 3);
    assert_eq!(config.break_duration, Duration::from_secs(90));
    assert_eq!(config.half_open_timeout, Duration::from_millis(250));
    assert_eq!(config.cancelled_calls, CancelledCalls::Failure);
    assert_eq!(config.success_threshold, 3);
}

#[test]
fn deserializes_from_toml() {
    let config: CircuitBreakerConfig = toml::from_str(
        r#"
        failure_threshold = 3
        break_duration = "15s"
        success_threshold = 2
        "#,
    )
    .unwrap();
    assert_eq!(
        config,
        CircuitBreakerConfig::default()
            .failure_threshold(3)
            .break_duration(Duration::from_secs(15))
            .success_threshold(2)
    );
}

#[test]
fn round_trips_through_serde() {
    let config = CircuitBreakerConfig::default()
        .half_open_max_calls(2)
        .break_duration(Duration::from_millis(1500));
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains(r#""break_duration":"1s 500ms""#), "{json}");
    assert_eq!(
        serde_json::from_str::<CircuitBreakerConfig>(&json).unwrap(),
        config
    );
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let err =
        serde_json::from_str::<CircuitBreakerConfig>(r#"{ "failure_treshold": 3 }"#).unwrap_err();
    assert!(err.to_string().contains("failure_treshold"), "{err}");
}

#[test]
fn a_malformed_duration_is_refused() {
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{ "break_duration": "soon" }"#)
        .unwrap_err();
    assert!(
        err.to_string().contains("soon") || err.to_string().contains("duration"),
        "{err}"
    );
}

#[test]
fn each_rule_names_its_field() {
    let cases = [
        (
            CircuitBreakerConfig::default().failure_threshold(0),
            "failure_threshold: must be at least 1, got 0",
        ),
        (
            CircuitBreakerConfig::default().failure_threshold(1 << 24),
            "failure_threshold: must be at most 16777215, got 16777216",
        ),
        (
            CircuitBreakerConfig::default().break_duration(Duration::ZERO),
            "break_duration: must be greater than 0s, got 0s",
        ),
        (
            CircuitBreakerConfig::default().success_threshold(0),
            "success_threshold: must be at least 1, got 0",
        ),
        (
            CircuitBreakerConfig::default().half_open_max_calls(0),
            "half_open_max_calls: must be at least 1, got 0",
        ),
        (
            CircuitBreakerConfig::default().half_open_max_calls(10_001),
            "half_open_max_calls: must be at most 10000, got 10001",
        ),
        (
            CircuitBreakerConfig::default().half_open_timeout(Duration::ZERO),
            "half_open_timeout: must be greater than 0s, got 0s",
        ),
        (
            CircuitBreakerConfig::default().latency_sample_every(0),
            "latency_sample_every: must be at least 1, got 0",
        ),
    ];
    for (config, message) in cases {
        let err = CircuitBreaker::with_config("x", config).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.field(), message.split(':').next().unwrap());
    }
}

#[test]
fn a_nested_error_carries_the_full_path() {
    let err = CircuitBreakerConfig::default()
        .success_threshold(0)
        .validate()
        .unwrap_err()
        .within("breakers.pgmq");
    assert_eq!(err.field(), "breakers.pgmq.success_threshold");
    assert_eq!(err.rule(), "must be at least 1, got 0");
    assert_eq!(
        err.to_string(),
        "breakers.pgmq.success_threshold: must be at least 1, got 0"
    );
}

#[test]
fn huge_durations_saturate_instead_of_overflowing() {
    let breaker = CircuitBreaker::with_config(
        "x",
        CircuitBreakerConfig::default()
            .failure_threshold(1)
            .break_duration(Duration::MAX)
            .half_open_timeout(Duration::MAX),
    )
    .unwrap();
    breaker.try_acquire().unwrap().failure();
    let rejection = breaker.try_acquire().unwrap_err();
    assert!(rejection.retry_after().unwrap() > Duration::from_secs(100 * 365 * 86_400));
}

mod windows {
    use std::time::Duration;

    use tower_circuit_breaker::{
        BreakBackoff, CircuitBreaker, CircuitBreakerConfig, FailureRateRule, SlidingWindow,
        SlowCallRule,
    };

    #[test]
    fn window_rules_deserialize_in_the_documented_shapes() {
        let config: CircuitBreakerConfig = serde_json::from_str(
            r#"{
                "failure_rate": { "threshold": 0.5, "window": { "calls": 100 }, "minimum_throughput": 20 },
                "slow_call": { "duration": "2s", "threshold": 0.8 },
                "break_backoff": { "multiplier": 2.0, "max_duration": "5m", "jitter": 0.1 },
                "min_transition_interval": "1s"
            }"#,
        )
        .unwrap();
        assert_eq!(
            config.failure_rate,
            Some(
                FailureRateRule::new(0.5)
                    .window(SlidingWindow::Calls(100))
                    .minimum_throughput(20)
            )
        );
        assert_eq!(
            config.slow_call,
            Some(SlowCallRule::new(Duration::from_secs(2), 0.8))
        );
        assert_eq!(
            config.break_backoff,
            Some(BreakBackoff::new(2.0, Duration::from_secs(300)).jitter(0.1))
        );
        assert_eq!(config.min_transition_interval, Duration::from_secs(1));
        assert_eq!(config.window(), Some((SlidingWindow::Calls(100), 20)));
        config.validate().unwrap();
    }

    #[test]
    fn a_time_window_deserializes_with_default_buckets() {
        let config: CircuitBreakerConfig = toml::from_str(
            r#"
            [failure_rate]
            threshold = 0.25
            window = { duration = "60s" }
            "#,
        )
        .unwrap();
        assert_eq!(
            config.window(),
            Some((SlidingWindow::time(Duration::from_secs(60), 10), 20))
        );
        let round_trip: CircuitBreakerConfig =
            toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(round_trip, config);
    }

    #[test]
    fn a_window_with_both_shapes_is_refused() {
        let err = serde_json::from_str::<CircuitBreakerConfig>(
            r#"{ "failure_rate": { "window": { "calls": 10, "duration": "10s" } } }"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("either `calls` or `duration`"),
            "{err}"
        );
    }

    #[test]
    fn each_window_rule_names_its_field() {
        let rate = |rule: FailureRateRule| CircuitBreakerConfig::default().failure_rate(rule);
        let cases = [
            (rate(FailureRateRule::new(1.5)), "failure_rate.threshold: must be in (0, 1], got 1.5"),
            (rate(FailureRateRule::new(0.0)), "failure_rate.threshold: must be in (0, 1], got 0"),
            (rate(FailureRateRule::new(f64::NAN)), "failure_rate.threshold: must be in (0, 1], got NaN"),
            (
                rate(FailureRateRule::new(0.5).window(SlidingWindow::Calls(0))),
                "failure_rate.window.calls: must be at least 1, got 0",
            ),
            (
                rate(FailureRateRule::new(0.5).window(SlidingWindow::Calls(10))),
                "failure_rate.minimum_throughput: must be at most the window's 10 calls, got 20",
            ),
            (
                rate(FailureRateRule::new(0.5).minimum_throughput(0)),
                "failure_rate.minimum_throughput: must be at least 1, got 0",
            ),
            (
                rate(FailureRateRule::new(0.5).window(SlidingWindow::time(Duration::from_secs(60), 1001))),
                "failure_rate.window.buckets: must be at most 1000, got 1001",
            ),
            (
                rate(FailureRateRule::new(0.5).window(SlidingWindow::time(Duration::from_millis(10), 20))),
                "failure_rate.window.buckets: must leave buckets of at least 1ms, got 10ms in 20",
            ),
            (
                rate(FailureRateRule::new(0.5).window(SlidingWindow::time(Duration::ZERO, 2))),
                "failure_rate.window.duration: must be greater than 0s, got 0s",
            ),
            (
                CircuitBreakerConfig::default().slow_call(SlowCallRule::new(Duration::ZERO, 0.5)),
                "slow_call.duration: must be greater than 0s, got 0s",
            ),
            (
                CircuitBreakerConfig::default().slow_call(SlowCallRule::new(Duration::from_secs(1), 2.0)),
                "slow_call.threshold: must be in (0, 1], got 2",
            ),
            (
                CircuitBreakerConfig::default()
                    .slow_call(SlowCallRule::new(Duration::from_secs(1), 0.5).window(SlidingWindow::Calls(5))),
                "slow_call.minimum_throughput: must be at most the window's 5 calls, got 20",
            ),
            (
                rate(FailureRateRule::new(0.5))
                    .slow_call(SlowCallRule::new(Duration::from_secs(1), 0.5).window(SlidingWindow::Calls(50))),
                "slow_call.window: must be left out or equal failure_rate.window: both rules judge one window",
            ),
            (
                CircuitBreakerConfig::default().break_backoff(BreakBackoff::new(0.5, Duration::from_secs(60))),
                "break_backoff.multiplier: must be a number of at least 1, got 0.5",
            ),
            (
                CircuitBreakerConfig::default().break_backoff(BreakBackoff::new(2.0, Duration::from_secs(10))),
                "break_backoff.max_duration: must be at least break_duration (30s), got 10s",
            ),
            (
                CircuitBreakerConfig::default()
                    .break_backoff(BreakBackoff::new(2.0, Duration::from_secs(60)).jitter(1.0)),
                "break_backoff.jitter: must be in [0, 1), got 1",
            ),
        ];
        for (config, message) in cases {
            let err = CircuitBreaker::with_config("x", config).expect_err(message);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn the_readme_toml_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let config: CircuitBreakerConfig = toml::from_str(&readme[start..end]).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.window(),
            Some((SlidingWindow::time(Duration::from_secs(60), 10), 20))
        );
        assert!(config.slow_call.is_some() && config.break_backoff.is_some());
    }
}
