//! The registry: the 001 document loads as written, the same registry from every format, merging
//! onto the file's default, errors that name the path and the rule, the bound, concurrent
//! get-or-create, health, one subscription for all, the periodic summary, and a breaker from the
//! file driven through its states on paused time.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_circuit_breaker::registry::{
    BreakerSettings, CircuitBreakerRegistry, HealthStatus, LoadError, RegistryError,
};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitState, FailureRateRule, SlidingWindow};

const DOC_001_YAML: &str = include_str!("fixtures/breakers-001.yaml");
const DOC_001_TOML: &str = include_str!("fixtures/breakers-001.toml");
const DOC_001_JSON: &str = include_str!("fixtures/breakers-001.json");

async fn fail(breaker: &tower_circuit_breaker::CircuitBreaker) {
    let _ = breaker.call(|| async { Err::<(), _>("down") }).await;
}

async fn succeed(breaker: &tower_circuit_breaker::CircuitBreaker) {
    let _ = breaker.call(|| async { Ok::<_, &str>(()) }).await;
}

#[tokio::test(start_paused = true)]
async fn the_001_document_loads_as_written_with_its_values() {
    let registry = CircuitBreakerRegistry::from_yaml_str(DOC_001_YAML).unwrap();
    let settings = registry.settings();
    assert!(settings.enabled);
    assert_eq!(settings.max_breakers, 50);
    assert!(settings.auto_create);
    assert_eq!(settings.metrics_interval, Some(Duration::from_secs(30)));

    let default = &settings.default.config;
    assert_eq!(default.failure_threshold, 5);
    assert_eq!(default.break_duration, Duration::from_secs(30));
    assert_eq!(default.success_threshold, 2);
    assert_eq!(default.min_transition_interval, Duration::from_secs(1));

    let pgmq = registry
        .get("pgmq")
        .expect("a configured breaker exists from the start");
    assert_eq!(pgmq.config().failure_threshold, 3);
    assert_eq!(pgmq.config().break_duration, Duration::from_secs(15));
    assert_eq!(pgmq.config().success_threshold, 2);
    assert_eq!(
        pgmq.config().min_transition_interval,
        Duration::from_secs(1)
    );
    assert_eq!(registry.len(), 1);

    let snapshot = registry.snapshot();
    assert_eq!(snapshot.max_breakers, 50);
    assert_eq!(snapshot.breakers.len(), 1);
    assert_eq!(&*snapshot.breakers[0].name, "pgmq");
}

#[tokio::test(start_paused = true)]
async fn the_same_registry_from_yaml_toml_and_json() {
    let yaml = CircuitBreakerRegistry::from_yaml_str(DOC_001_YAML).unwrap();
    let toml = CircuitBreakerRegistry::from_toml_str(DOC_001_TOML).unwrap();
    let json = CircuitBreakerRegistry::from_json_str(DOC_001_JSON).unwrap();
    assert_eq!(yaml.settings(), toml.settings());
    assert_eq!(yaml.settings(), json.settings());

    let in_code = CircuitBreakerRegistry::builder()
        .max_breakers(50)
        .metrics_interval(Duration::from_secs(30))
        .default_config(
            CircuitBreakerConfig::default()
                .failure_threshold(5)
                .break_duration(Duration::from_secs(30))
                .success_threshold(2)
                .min_transition_interval(Duration::from_secs(1)),
        )
        .breaker(
            "pgmq",
            CircuitBreakerConfig::default()
                .failure_threshold(3)
                .break_duration(Duration::from_secs(15))
                .success_threshold(2)
                .min_transition_interval(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    assert_eq!(yaml.settings(), in_code.settings());
}

#[tokio::test(start_paused = true)]
async fn from_path_picks_the_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("tcb-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected = CircuitBreakerRegistry::from_yaml_str(DOC_001_YAML).unwrap();
    for (file, text) in [
        ("breakers.yaml", DOC_001_YAML),
        ("breakers.yml", DOC_001_YAML),
        ("breakers.toml", DOC_001_TOML),
        ("breakers.JSON", DOC_001_JSON),
    ] {
        let path = dir.join(file);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let loaded = CircuitBreakerRegistry::from_path(&path).unwrap();
        assert_eq!(loaded.settings(), expected.settings(), "{file}");
    }
    let err = CircuitBreakerRegistry::from_path(dir.join("breakers.ini")).unwrap_err();
    assert!(matches!(err, LoadError::UnknownFormat { .. }));
    assert!(err.to_string().ends_with(
        "breakers.ini: cannot tell the format from the extension; use .yaml, .yml, .toml or .json"
    ));
    let err = CircuitBreakerRegistry::from_path(dir.join("missing.yaml")).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_component_block_inherits_every_key_it_leaves_out_from_the_files_default() {
    let registry = CircuitBreakerRegistry::from_yaml_str(
        r#"
circuit_breakers:
  global_settings: { auto_create_enabled: false }
  default_config:
    failure_threshold: 7
    break_duration: 45s
    success_threshold: 4
    half_open_max_calls: 2
    half_open_timeout: 3s
    cancelled_calls: failure
    latency_sample_every: 8
    failure_rate: { threshold: 0.4, window: { duration: 60s, buckets: 6 }, minimum_throughput: 10 }
    slow_call: { duration: 2s, threshold: 0.9 }
    break_backoff: { multiplier: 3.0, max_duration: 10m, jitter: 0.2 }
    min_transition_interval: 5s
    critical: true
  component_configs:
    cache: { failure_threshold: 11 }
"#,
    )
    .unwrap();
    let default = registry.settings().default.clone();
    let cache = &registry.settings().breakers["cache"];
    assert_eq!(cache.config.failure_threshold, 11);
    let mut expected = default.clone();
    expected.config.failure_threshold = 11;
    assert_eq!(
        *cache, expected,
        "every other key comes from default_config"
    );
    assert!(cache.critical);
    assert_eq!(
        default.config.failure_rate,
        Some(
            FailureRateRule::new(0.4)
                .window(SlidingWindow::time(Duration::from_secs(60), 6))
                .minimum_throughput(10)
        )
    );
    assert_eq!(registry.get("cache").unwrap().config(), &expected.config);
    assert_eq!(registry.is_critical("cache"), Some(true));
}

/// Every bad input is refused with exactly this message.
#[test]
fn bad_inputs_are_refused_naming_the_path_and_the_rule() {
    let yaml = CircuitBreakerRegistry::from_yaml_str;
    let toml = CircuitBreakerRegistry::from_toml_str;
    let json = CircuitBreakerRegistry::from_json_str;
    type Load = fn(&str) -> Result<CircuitBreakerRegistry, LoadError>;
    let cases: Vec<(&str, Load, &str, &str)> = vec![
        (
            "zero threshold in a component",
            yaml,
            "circuit_breakers:\n  component_configs:\n    pgmq:\n      failure_threshold: 0\n",
            "circuit_breakers.component_configs.pgmq.failure_threshold: must be at least 1, got 0",
        ),
        (
            "zero success threshold in the default",
            yaml,
            "circuit_breakers:\n  default_config:\n    success_threshold: 0\n",
            "circuit_breakers.default_config.success_threshold: must be at least 1, got 0",
        ),
        (
            "a rate above 1",
            yaml,
            "circuit_breakers:\n  default_config:\n    failure_rate: { threshold: 1.5 }\n",
            "circuit_breakers.default_config.failure_rate.threshold: must be in (0, 1], got 1.5",
        ),
        (
            "a rate of 0",
            json,
            r#"{"circuit_breakers": {"component_configs": {"db": {"slow_call": {"duration": "1s", "threshold": 0}}}}}"#,
            "circuit_breakers.component_configs.db.slow_call.threshold: must be in (0, 1], got 0",
        ),
        (
            "negative seconds",
            yaml,
            "circuit_breakers:\n  default_config:\n    timeout_seconds: -5\n",
            "circuit_breakers.default_config.timeout_seconds: must be a number of seconds, at least 0, got -5",
        ),
        (
            "zero seconds",
            yaml,
            "circuit_breakers:\n  component_configs:\n    pgmq:\n      timeout_seconds: 0\n",
            "circuit_breakers.component_configs.pgmq.timeout_seconds: must be greater than 0s, got 0s",
        ),
        (
            "a negative duration",
            yaml,
            "circuit_breakers:\n  default_config:\n    break_duration: -5s\n",
            "circuit_breakers.default_config.break_duration: invalid value: string \"-5s\", expected a duration",
        ),
        (
            "an unparsable duration",
            toml,
            "[circuit_breakers.default_config]\nhalf_open_timeout = \"soon\"\n",
            "circuit_breakers.default_config.half_open_timeout: invalid value: string \"soon\", expected a duration",
        ),
        (
            "an unknown key at the top",
            yaml,
            "circuit_breaker:\n  enabled: true\n",
            "circuit_breaker: unknown field `circuit_breaker`, expected `circuit_breakers`",
        ),
        (
            "an unknown key in the section",
            yaml,
            "circuit_breakers:\n  enable: true\n",
            "circuit_breakers.enable: unknown field `enable`, expected one of `enabled`, `global_settings`, `default_config`, `component_configs`, `store`",
        ),
        (
            "an unknown global setting",
            json,
            r#"{"circuit_breakers": {"global_settings": {"max_breakers": 3}}}"#,
            "circuit_breakers.global_settings.max_breakers: unknown field `max_breakers`, expected one of `max_circuit_breakers`, `auto_create_enabled`, `min_state_transition_interval`, `min_state_transition_interval_seconds`, `metrics_collection_interval`, `metrics_collection_interval_seconds`",
        ),
        (
            "a misspelt key in a component",
            toml,
            "[circuit_breakers.component_configs.pgmq]\ntimout_seconds = 15\n",
            "circuit_breakers.component_configs.pgmq.timout_seconds: unknown field `timout_seconds`, expected one of `failure_threshold`, `break_duration`, `timeout_seconds`, `success_threshold`, `half_open_max_calls`, `half_open_timeout`, `half_open_timeout_seconds`, `cancelled_calls`, `latency_sample_every`, `failure_rate`, `slow_call`, `break_backoff`, `min_transition_interval`, `critical`",
        ),
        (
            "an unknown key inside a rule",
            yaml,
            "circuit_breakers:\n  default_config:\n    failure_rate: { treshold: 0.5 }\n",
            "circuit_breakers.default_config.failure_rate.treshold: unknown field `treshold`, expected one of `threshold`, `window`, `minimum_throughput`",
        ),
        (
            "a wrong type",
            yaml,
            "circuit_breakers:\n  default_config:\n    failure_threshold: five\n",
            "circuit_breakers.default_config.failure_threshold: invalid type: string \"five\", expected u32",
        ),
        (
            "a wrong type in TOML",
            toml,
            "[circuit_breakers]\nenabled = \"yes\"\n",
            "circuit_breakers.enabled: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "both spellings of one setting",
            yaml,
            "circuit_breakers:\n  component_configs:\n    pgmq:\n      timeout_seconds: 15\n      break_duration: 15s\n",
            "circuit_breakers.component_configs.pgmq.timeout_seconds: is another spelling of break_duration, which is also given; give one of them",
        ),
        (
            "both spellings of a global setting",
            yaml,
            "circuit_breakers:\n  global_settings:\n    metrics_collection_interval: 30s\n    metrics_collection_interval_seconds: 30\n",
            "circuit_breakers.global_settings.metrics_collection_interval_seconds: is another spelling of metrics_collection_interval, which is also given; give one of them",
        ),
        (
            "more breakers than the bound",
            yaml,
            "circuit_breakers:\n  global_settings: { max_circuit_breakers: 2 }\n  component_configs: { a: {}, b: {}, c: {} }\n",
            "circuit_breakers.global_settings.max_circuit_breakers: must be at least the 3 breakers in component_configs, got 2",
        ),
        (
            "a bound of 0",
            json,
            r#"{"circuit_breakers": {"global_settings": {"max_circuit_breakers": 0}}}"#,
            "circuit_breakers.global_settings.max_circuit_breakers: must be at least 1, got 0",
        ),
        (
            "a YAML syntax error",
            yaml,
            "circuit_breakers:\n  enabled: true\n bad: [\n",
            "YAML syntax error at line 3, column 2: did not find expected key, while parsing a block mapping",
        ),
        (
            "a TOML syntax error",
            toml,
            "[circuit_breakers\nenabled = true\n",
            "TOML syntax error at line 1, column 18: invalid table header; expected `.`, `]`",
        ),
        (
            "a JSON syntax error",
            json,
            "{\n  \"circuit_breakers\": {\"enabled\": tru}\n}",
            "JSON syntax error at line 2, column 38: expected ident",
        ),
        (
            "an empty document",
            json,
            "{}",
            "(document): missing field `circuit_breakers`",
        ),
        (
            "a store section without a store",
            yaml,
            "circuit_breakers:\n  store: { share_keyed: true }\n",
            "circuit_breakers.store.redis: is required: it is the store a config file can name",
        ),
        (
            "a store URL that is not Redis's",
            yaml,
            "circuit_breakers:\n  store:\n    redis: { url: \"http://cache:6379\" }\n",
            "circuit_breakers.store.redis.url: must be a redis://, rediss://, valkey://, valkeys://, unix:// or redis+unix:// URL, got `http://cache:6379`",
        ),
        (
            "an empty key prefix",
            toml,
            "[circuit_breakers.store.redis]\nurl = \"redis://127.0.0.1\"\nkey_prefix = \"\"\n",
            "circuit_breakers.store.redis.key_prefix: must not be empty",
        ),
        (
            "a zero store timeout",
            json,
            r#"{"circuit_breakers": {"store": {"redis": {"url": "redis://127.0.0.1"}, "timeout": "0s"}}}"#,
            "circuit_breakers.store.timeout: must be greater than 0s, got 0s",
        ),
        (
            "a typo in the store section",
            yaml,
            "circuit_breakers:\n  store:\n    redis: { url: \"redis://127.0.0.1\", prefix: \"x:\" }\n",
            "circuit_breakers.store.redis.prefix: unknown field `prefix`, expected `url` or `key_prefix`",
        ),
    ];
    assert!(cases.len() >= 12);
    for (what, load, text, expected) in cases {
        let err = load(text).expect_err(what);
        assert_eq!(err.to_string(), expected, "{what}");
    }
}

#[test]
fn a_store_section_is_kept_for_the_store_crate_with_its_defaults() {
    let registry = CircuitBreakerRegistry::from_yaml_str(
        "circuit_breakers:\n  store:\n    redis: { url: \"redis://127.0.0.1:6379/2\" }\n    share_keyed: true\n",
    )
    .unwrap();
    let store = registry.settings().store.clone().expect("kept");
    let redis = store.redis.clone().unwrap();
    assert_eq!(redis.url, "redis://127.0.0.1:6379/2");
    assert_eq!(redis.key_prefix, "circuit-breaker:");
    let options = store.options();
    assert!(options.share_keyed);
    assert_eq!(options.timeout, std::time::Duration::from_secs(1));
    // Kept, not attached: the registry has no store until the store's crate attaches one.
    assert!(registry.store_status().is_none());
}

#[test]
fn the_builder_refuses_what_a_file_would() {
    let err = CircuitBreakerRegistry::builder()
        .breaker("pgmq", CircuitBreakerConfig::default().failure_threshold(0))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "component_configs.pgmq.failure_threshold: must be at least 1, got 0"
    );
    let err = CircuitBreakerRegistry::builder()
        .max_breakers(1)
        .breaker("a", CircuitBreakerConfig::default())
        .breaker("b", CircuitBreakerConfig::default())
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "global_settings.max_circuit_breakers: must be at least the 2 breakers configured, got 1"
    );
}

#[test]
fn past_the_bound_get_or_create_refuses_and_creates_nothing() {
    let registry = CircuitBreakerRegistry::from_yaml_str(
        "circuit_breakers:\n  global_settings: { max_circuit_breakers: 2 }\n  component_configs: { pgmq: {} }\n",
    )
    .unwrap();
    registry.get_or_create("cache").unwrap();
    let err = registry.get_or_create("s3").unwrap_err();
    assert_eq!(
        err,
        RegistryError::Full {
            name: "s3".into(),
            max: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "cannot create breaker `s3`: the registry holds its maximum of 2 breakers"
    );
    assert!(registry.get("s3").is_none());
    assert_eq!(registry.len(), 2);
    assert_eq!(registry.snapshot().max_breakers, 2);
    // A name it has is still handed out.
    assert_eq!(registry.get_or_create("cache").unwrap().name(), "cache");
}

#[test]
fn an_unknown_name_is_an_error_when_auto_create_is_off() {
    let registry = CircuitBreakerRegistry::from_yaml_str(
        "circuit_breakers:\n  global_settings: { auto_create_enabled: false }\n  component_configs: { pgmq: {} }\n",
    )
    .unwrap();
    assert!(registry.get_or_create("pgmq").is_ok());
    let err = registry.get_or_create("cache").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no breaker named `cache`, and auto-create is off"
    );
    assert_eq!(registry.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_get_or_create_makes_each_breaker_once_and_keeps_the_bound() {
    const TASKS: usize = 8;
    const NAMES: usize = 12;
    const MAX: usize = 9;
    for _round in 0..20 {
        let registry = CircuitBreakerRegistry::builder()
            .max_breakers(MAX)
            .build()
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let registry = registry.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut got = Vec::new();
                    // Overlapping names, each task in its own order.
                    for step in 0..NAMES {
                        let name = format!("svc-{}", (step * (task + 1) + task) % NAMES);
                        match registry.get_or_create(&name) {
                            Ok(breaker) => {
                                succeed(&breaker).await;
                                got.push(name);
                            }
                            Err(RegistryError::Full { max, .. }) => assert_eq!(max, MAX),
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                    got
                })
            })
            .collect();
        let mut handed_out = std::collections::BTreeMap::<String, u64>::new();
        for task in tasks {
            for name in task.await.unwrap() {
                *handed_out.entry(name).or_default() += 1;
            }
        }
        assert!(registry.len() <= MAX);
        assert_eq!(registry.len(), handed_out.len());
        // Every handle of a name recorded into one breaker: the counts add up.
        for (name, calls) in &handed_out {
            let breaker = registry.get(name).unwrap();
            assert_eq!(breaker.metrics().successful_calls, *calls, "{name}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_pgmq_breaker_from_the_file_trips_after_3_probes_after_15s_and_closes_after_2() {
    let registry = CircuitBreakerRegistry::from_yaml_str(DOC_001_YAML).unwrap();
    let pgmq = registry.get_or_create("pgmq").unwrap();
    // Past the file's 1 s minimum between transitions.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..2 {
        fail(&pgmq).await;
    }
    assert_eq!(pgmq.state(), CircuitState::Closed);
    fail(&pgmq).await;
    assert_eq!(pgmq.state(), CircuitState::Open);
    assert_eq!(registry.snapshot().health(), HealthStatus::Degraded);

    tokio::time::advance(Duration::from_millis(14_999)).await;
    assert_eq!(pgmq.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(pgmq.state(), CircuitState::HalfOpen);
    succeed(&pgmq).await;
    assert_eq!(pgmq.state(), CircuitState::HalfOpen);
    succeed(&pgmq).await;
    assert_eq!(pgmq.state(), CircuitState::Closed);
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn health_is_unhealthy_only_for_an_open_critical_breaker() {
    let registry = CircuitBreakerRegistry::builder()
        .default_config(CircuitBreakerConfig::default().failure_threshold(1))
        .breaker(
            "db",
            BreakerSettings::new(
                CircuitBreakerConfig::default()
                    .failure_threshold(1)
                    .break_duration(Duration::from_secs(10)),
            )
            .critical(true),
        )
        .breaker(
            "cache",
            CircuitBreakerConfig::default().failure_threshold(1),
        )
        .build()
        .unwrap();
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);
    registry.get("cache").unwrap().disable();
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);
    registry.get("cache").unwrap().isolate();
    assert_eq!(registry.snapshot().health(), HealthStatus::Degraded);

    let db = registry.get("db").unwrap();
    fail(&db).await;
    assert_eq!(registry.snapshot().health(), HealthStatus::Unhealthy);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(db.state(), CircuitState::HalfOpen);
    assert_eq!(registry.snapshot().health(), HealthStatus::Degraded);
    db.isolate();
    assert_eq!(registry.snapshot().health(), HealthStatus::Unhealthy);
    db.reset();
    registry.get("cache").unwrap().reset();
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn disabled_in_the_file_admits_every_call_and_still_measures() {
    let registry = CircuitBreakerRegistry::from_yaml_str(
        "circuit_breakers:\n  enabled: false\n  default_config: { failure_threshold: 1 }\n  component_configs: { pgmq: {} }\n",
    )
    .unwrap();
    for name in ["pgmq", "made-later"] {
        let breaker = registry.get_or_create(name).unwrap();
        for _ in 0..5 {
            fail(&breaker).await;
        }
        assert_eq!(breaker.state(), CircuitState::Disabled, "{name}");
        assert_eq!(breaker.metrics().failed_calls, 5, "{name}");
        assert!(breaker.try_acquire().is_ok());
        assert_eq!(
            breaker
                .metrics()
                .last_transition_reason
                .unwrap()
                .to_string(),
            "breaking is switched off in the config"
        );
    }
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn one_subscription_sees_every_breakers_transitions() {
    let registry = CircuitBreakerRegistry::builder()
        .default_config(CircuitBreakerConfig::default().failure_threshold(1))
        .build()
        .unwrap();
    let mut transitions = registry.subscribe();
    let a = registry.get_or_create("a").unwrap();
    let b = registry.get_or_create("b").unwrap();
    fail(&a).await;
    fail(&b).await;
    b.reset();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let t = transitions.recv().await.unwrap();
        seen.push((t.breaker.to_string(), t.from, t.to));
    }
    assert_eq!(
        seen,
        vec![
            ("a".into(), CircuitState::Closed, CircuitState::Open),
            ("b".into(), CircuitState::Closed, CircuitState::Open),
            ("b".into(), CircuitState::Open, CircuitState::Closed),
        ]
    );
    // The breaker's own subscription is unaffected.
    assert!(a.subscribe().try_recv().is_err());
    assert_eq!(b.recent_transitions().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_serializes_with_stable_field_names() {
    let registry = CircuitBreakerRegistry::from_yaml_str(
        "circuit_breakers:\n  component_configs:\n    pgmq: { failure_threshold: 1, timeout_seconds: 15, critical: true }\n",
    )
    .unwrap();
    fail(&registry.get("pgmq").unwrap()).await;
    let json = serde_json::to_value(registry.snapshot()).unwrap();
    assert_eq!(json["max_breakers"], 1000);
    assert_eq!(json["enabled"], true);
    let pgmq = &json["breakers"][0];
    assert_eq!(pgmq["name"], "pgmq");
    assert_eq!(pgmq["critical"], true);
    assert_eq!(pgmq["health"], "unhealthy");
    assert_eq!(pgmq["config"]["break_duration"], "15s");
    assert_eq!(pgmq["metrics"]["state"], "open");
    assert_eq!(pgmq["metrics"]["failed_calls"], 1);
    assert_eq!(pgmq["metrics"]["next_probe_in_seconds"], 15.0);
    assert_eq!(pgmq["metrics"]["transitions"]["to_open"], 1);
    let reason = &pgmq["metrics"]["last_transition_reason"];
    assert_eq!(reason["kind"], "consecutive_failures");
    assert_eq!(reason["failures"], 1);
    assert_eq!(reason["message"], "1 failure");
    let last = &pgmq["recent_transitions"][0];
    assert_eq!(last["from"], "closed");
    assert_eq!(last["to"], "open");
    assert!(last["at"].as_str().unwrap().ends_with('Z'), "{last}");
    assert!(pgmq["metrics"]["last_state_change"].is_string());
    // One breaker's snapshot alone is the same as its entry in the whole one.
    assert_eq!(
        registry.snapshot_of("pgmq"),
        registry.snapshot().breakers.into_iter().next()
    );
    assert_eq!(registry.snapshot_of("nope"), None);
}

/// Collects the summary events a registry logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn summaries(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|line| line.contains("tower_circuit_breaker::summary"))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn the_metrics_interval_logs_one_summary_per_breaker_until_the_registry_is_dropped() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let registry = CircuitBreakerRegistry::from_yaml_str(DOC_001_YAML).unwrap();
    registry.get_or_create("cache").unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    tokio::task::yield_now().await;
    assert!(captured.summaries().is_empty());

    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    let first = captured.summaries();
    assert_eq!(
        first.len(),
        2,
        "{}",
        String::from_utf8_lossy(&captured.0.lock().unwrap())
    );
    let names: BTreeSet<_> = first
        .iter()
        .map(|line| {
            line.split("breaker=")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["cache".to_owned(), "pgmq".to_owned()])
    );
    assert!(first.iter().all(|line| line.contains("state=closed")));

    tokio::time::advance(Duration::from_secs(30)).await;
    tokio::task::yield_now().await;
    assert_eq!(captured.summaries().len(), 4);

    drop(registry);
    tokio::time::advance(Duration::from_secs(90)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        captured.summaries().len(),
        4,
        "the task ends with the registry"
    );
}

/// An app's own config type, with the registry's section inside it.
#[derive(serde::Deserialize)]
struct AppConfig {
    #[allow(dead_code)]
    port: u16,
    circuit_breakers: tower_circuit_breaker::registry::RegistryConfig,
}

#[test]
fn a_section_embedded_in_an_apps_config_builds_a_registry() {
    let app: AppConfig = serde_json::from_str(
        r#"{ "port": 8080, "circuit_breakers": { "component_configs": { "pgmq": { "failure_threshold": 3 } } } }"#,
    )
    .unwrap();
    let registry = CircuitBreakerRegistry::from_config(&app.circuit_breakers).unwrap();
    assert_eq!(registry.get("pgmq").unwrap().config().failure_threshold, 3);

    let app: AppConfig = serde_json::from_str(
        r#"{ "port": 8080, "circuit_breakers": { "component_configs": { "pgmq": { "failure_threshold": 0 } } } }"#,
    )
    .unwrap();
    let err = CircuitBreakerRegistry::from_config(&app.circuit_breakers).unwrap_err();
    assert_eq!(
        err.to_string(),
        "component_configs.pgmq.failure_threshold: must be at least 1, got 0"
    );
    assert_eq!(
        err.within("circuit_breakers").field(),
        "circuit_breakers.component_configs.pgmq.failure_threshold"
    );
}
