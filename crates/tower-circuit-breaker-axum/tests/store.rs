//! The shared state store as `/metrics` and `/health` show it, on real servers on 127.0.0.1:
//! two registries linked by one in-memory store export the store's families with the figures of
//! what went between them, a store that goes down makes both `degraded` (never `unhealthy`) and
//! `circuit_breaker_store_connected` 0, `promtool check metrics` finds nothing to report at every
//! step, and a registry without a store shows none of it.
//!
//! The store's tasks and the polls run on Tokio's paused clock: waiting for a condition costs no
//! real time. `promtool` comes with Debian's `prometheus` package; without it these tests fail
//! and say so.

use std::future::Future;
use std::time::Duration;

use http::{header, StatusCode};
use serde_json::Value;
use tower_circuit_breaker::registry::{BreakerSettings, CircuitBreakerRegistry, HealthStatus};
use tower_circuit_breaker::store::{InMemoryStateStore, StoreHandle, StoreOptions};
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
use tower_circuit_breaker_axum::health::HealthReport;
use tower_circuit_breaker_axum::metrics::{self, RegistryCollector};
use tower_circuit_breaker_axum::BreakerRoutes;

#[path = "support/prometheus.rs"]
mod prometheus;

use prometheus::{parse, promtool_check, Scrape};

#[path = "support/http.rs"]
mod support_http;

use support_http::{entry, serve, Http};

/// The store's families as a scrape names them, with their type.
const STORE_FAMILIES: [(&str, &str); 7] = [
    ("circuit_breaker_store_connected", "gauge"),
    ("circuit_breaker_store_published_total", "counter"),
    ("circuit_breaker_store_publish_failures_total", "counter"),
    ("circuit_breaker_store_dropped_updates_total", "counter"),
    ("circuit_breaker_store_received_total", "counter"),
    ("circuit_breaker_store_applied_total", "counter"),
    ("circuit_breaker_store_invalid_updates_total", "counter"),
];

// ===== the instances =====

/// `payments` is critical and opens on one failure; `search` is not critical. Breaks last an
/// hour, so no break ends while the paused clock jumps ahead.
fn registry() -> CircuitBreakerRegistry {
    let config = CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(3600));
    CircuitBreakerRegistry::builder()
        .breaker(
            "payments",
            BreakerSettings::new(config.clone()).critical(true),
        )
        .breaker("search", config)
        .build()
        .unwrap()
}

/// One instance of the app: a registry attached to `store` as `name`, synced, and its routes
/// served on 127.0.0.1.
struct Instance {
    registry: CircuitBreakerRegistry,
    handle: StoreHandle,
    http: Http,
}

impl Instance {
    async fn start(
        store: &InMemoryStateStore,
        name: &str,
        registry: CircuitBreakerRegistry,
    ) -> Self {
        let handle = registry
            .attach_store(store.clone(), StoreOptions::default().instance(name))
            .unwrap();
        handle.synced().await;
        let http = Http::new(serve(BreakerRoutes::new(registry.clone()).into_router()).await);
        Self {
            registry,
            handle,
            http,
        }
    }

    fn payments(&self) -> CircuitBreaker {
        self.registry.get("payments").unwrap()
    }

    fn name(&self) -> &str {
        self.handle.instance()
    }

    /// `/metrics`, linted by promtool and parsed.
    async fn scrape(&self) -> Scrape {
        scrape(&self.http).await
    }

    /// A store family's value on this instance's scrape.
    fn store_value(&self, scrape: &Scrape, family: &str) -> f64 {
        scrape.get(family, &[("instance", self.name()), ("store", "memory")])
    }

    async fn health(&self) -> (StatusCode, Value) {
        self.http.json("/health").await
    }
}

/// `/metrics` of `http`, after promtool found nothing to report in it.
async fn scrape(http: &Http) -> Scrape {
    let (status, headers, text) = http.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], metrics::CONTENT_TYPE);
    lint(&text);
    parse(&text)
}

fn lint(text: &str) {
    let (ok, printed) = promtool_check(text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics reported:\n{printed}\non:\n{text}"
    );
}

/// Polls `done` on the paused clock until it holds, for at most a virtual minute.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..6_000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Every store family of `scrape`, with its type: none, or all seven.
fn store_families(scrape: &Scrape) -> Vec<(&str, &str)> {
    scrape
        .families
        .iter()
        .filter(|(name, _)| name.starts_with("circuit_breaker_store_"))
        .map(|(name, (kind, _, _))| (name.as_str(), kind.as_str()))
        .collect()
}

fn assert_all_store_families(scrape: &Scrape) {
    let mut expected = STORE_FAMILIES.to_vec();
    expected.sort_unstable();
    assert_eq!(store_families(scrape), expected);
    for (family, _) in STORE_FAMILIES {
        let (_, help, _) = &scrape.families[family];
        assert!(!help.trim().is_empty(), "{family} has no help");
        // One series, labelled with the store and the instance.
        let series = scrape.series(family);
        assert_eq!(series.len(), 1, "{family}: {series:?}");
        let labels: Vec<&str> = series[0].0.keys().map(String::as_str).collect();
        assert_eq!(labels, ["instance", "store"], "{family}");
    }
}

async fn run<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(600), test)
        .await
        .expect("the test finishes");
}

// ===== the tests =====

#[tokio::test(start_paused = true)]
async fn two_instances_export_what_went_between_them_and_turn_degraded_when_the_store_goes_down() {
    run(async {
        let store = InMemoryStateStore::new();
        let a = Instance::start(&store, "a", registry()).await;
        let b = Instance::start(&store, "b", registry()).await;

        // Connected, nothing exchanged yet.
        for instance in [&a, &b] {
            let scrape = instance.scrape().await;
            assert_all_store_families(&scrape);
            assert_eq!(
                instance.store_value(&scrape, "circuit_breaker_store_connected"),
                1.0
            );
            for (family, kind) in STORE_FAMILIES {
                if kind == "counter" {
                    assert_eq!(instance.store_value(&scrape, family), 0.0, "{family}");
                }
            }
            let (status, report) = instance.health().await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(report["status"], "healthy");
            let store = &report["store"];
            assert_eq!(store["kind"], "memory");
            assert_eq!(store["instance"], instance.name());
            assert_eq!(store["connected"], true);
            assert_eq!(store["synced"], true);
            assert_eq!(store["health"], "healthy");
            assert_eq!(store["last_error"], Value::Null);
            assert_eq!(store["published"], 0);
        }

        // `a` trips its critical breaker: it publishes the open, `b` takes it without a failure
        // of its own, and both are unhealthy (for the breaker, not the store).
        let _ = a
            .payments()
            .call(|| async { Err::<(), _>("connection refused") })
            .await;
        assert_eq!(a.payments().state(), CircuitState::Open);
        eventually("b's payments opens", || async {
            let (_, report) = b.health().await;
            entry(&report, "payments")["state"] == "open"
        })
        .await;
        eventually("a hears its own update back", || async {
            a.handle.status().received == 1
        })
        .await;
        for instance in [&a, &b] {
            let (status, report) = instance.health().await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(report["status"], "unhealthy");
            assert_eq!(report["store"]["connected"], true);
        }
        assert_eq!(b.payments().metrics().failed_calls, 0);

        let on_a = a.scrape().await;
        let on_b = b.scrape().await;
        let figures = |instance: &Instance, scrape: &Scrape| {
            [
                "circuit_breaker_store_connected",
                "circuit_breaker_store_published_total",
                "circuit_breaker_store_received_total",
                "circuit_breaker_store_applied_total",
                "circuit_breaker_store_publish_failures_total",
                "circuit_breaker_store_dropped_updates_total",
                "circuit_breaker_store_invalid_updates_total",
            ]
            .map(|family| instance.store_value(scrape, family))
        };
        // connected, published, received (every instance's, its own included), applied.
        assert_eq!(figures(&a, &on_a), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(figures(&b, &on_b), [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
        // The scrape's figures are the store's status, and so is the health report's.
        let (_, report) = b.health().await;
        let status = b.handle.status();
        assert_eq!(report["store"]["received"], status.received);
        assert_eq!(report["store"]["applied"], status.applied);
        assert_eq!(report["store"]["published"], status.published);

        // A reset on `a` closes both: healthy again.
        a.payments().reset();
        for instance in [&a, &b] {
            eventually("payments closes everywhere", || async {
                instance.health().await.1["status"] == "healthy"
            })
            .await;
        }

        // The store goes down: both instances are degraded (200, still ready), never unhealthy,
        // though a critical breaker is among theirs; the store's entry says why.
        store.set_down(true);
        for instance in [&a, &b] {
            eventually("the store shows as not connected", || async {
                instance.health().await.1["store"]["connected"] == false
            })
            .await;
            let (status, report) = instance.health().await;
            assert_eq!(status, StatusCode::OK, "{report}");
            assert_eq!(report["status"], "degraded");
            assert_eq!(report["store"]["health"], "degraded");
            assert_eq!(report["store"]["synced"], false);
            let error = report["store"]["last_error"].as_str().unwrap();
            assert!(error.contains("in-memory store"), "{error}");
            assert!(report["breakers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|entry| entry["state"] == "closed"));
            let (status, ready) = instance.http.json("/health/ready").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(ready["ready"], true);
            assert_eq!(ready["status"], "degraded");

            let scrape = instance.scrape().await;
            assert_all_store_families(&scrape);
            assert_eq!(
                instance.store_value(&scrape, "circuit_breaker_store_connected"),
                0.0
            );
            assert_eq!(
                HealthReport::of(&instance.registry).status,
                HealthStatus::Degraded
            );
        }

        // A trip while the store is down fails to publish: counted, and the breaker still
        // decides (unhealthy now, for the breaker).
        let _ = a.payments().call(|| async { Err::<(), _>("down") }).await;
        eventually("a's publish fails", || async {
            a.handle.status().publish_failures >= 1
        })
        .await;
        let scrape = a.scrape().await;
        assert!(a.store_value(&scrape, "circuit_breaker_store_publish_failures_total") >= 1.0);
        assert_eq!(
            a.store_value(&scrape, "circuit_breaker_store_published_total"),
            2.0,
            "the open and the close; not the failed one"
        );
        let (status, report) = a.health().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(report["status"], "unhealthy");

        // Back up: connected again, 1 on the gauge.
        store.set_down(false);
        eventually("a reconnects", || async {
            a.health().await.1["store"]["connected"] == true
        })
        .await;
        let scrape = a.scrape().await;
        assert_eq!(
            a.store_value(&scrape, "circuit_breaker_store_connected"),
            1.0
        );
        let (_, report) = a.health().await;
        assert_eq!(report["store"]["last_error"], Value::Null);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_in_aggregate_or_per_key_leave_the_store_families_in_the_scrape() {
    run(async {
        let store = InMemoryStateStore::new();
        let registry = registry();
        let hosts = registry
            .keyed("hosts")
            .template(CircuitBreakerConfig::default().failure_threshold(1))
            .build()
            .unwrap();
        hosts.get(Some("api.example.com")).isolate();
        let instance = Instance::start(&store, "web-1", registry.clone()).await;
        let aggregate = Http::new(
            serve(
                BreakerRoutes::new(registry.clone())
                    .keyed_metrics_aggregate(true)
                    .into_router(),
            )
            .await,
        );

        for (mode, scrape) in [
            ("per key", instance.scrape().await),
            ("aggregate", scrape(&aggregate).await),
        ] {
            assert_all_store_families(&scrape);
            assert_eq!(
                instance.store_value(&scrape, "circuit_breaker_store_connected"),
                1.0,
                "{mode}"
            );
            assert_eq!(
                scrape.get(
                    "circuit_breaker_keyed_breakers",
                    &[("group", "hosts"), ("state", "isolated")]
                ),
                1.0,
                "{mode}"
            );
            let per_key = scrape.value(
                "circuit_breaker_state",
                &[
                    ("breaker", "api.example.com"),
                    ("group", "hosts"),
                    ("state", "isolated"),
                ],
            );
            assert_eq!(per_key.is_some(), mode == "per key", "{mode}");
        }

        store.set_down(true);
        eventually("the store shows as not connected", || async {
            !instance.handle.status().connected
        })
        .await;
        let scrape = scrape(&aggregate).await;
        assert_eq!(
            instance.store_value(&scrape, "circuit_breaker_store_connected"),
            0.0
        );

        // The collector in an app's own registry, and the OpenMetrics rendering, have them too.
        let text = RegistryCollector::new(registry.clone())
            .keyed_aggregate(true)
            .render_openmetrics();
        assert!(
            text.contains(
                "circuit_breaker_store_connected{store=\"memory\",instance=\"web-1\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE circuit_breaker_store_published counter\n"));
        assert!(text.ends_with("# EOF\n"));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn without_a_store_there_is_no_store_family_and_no_store_in_health() {
    run(async {
        let registry = registry();
        registry.keyed("hosts").build().unwrap();
        for aggregate in [false, true] {
            let http = Http::new(
                serve(
                    BreakerRoutes::new(registry.clone())
                        .keyed_metrics_aggregate(aggregate)
                        .into_router(),
                )
                .await,
            );
            let (_, _, text) = http.get("/metrics").await;
            lint(&text);
            assert!(!text.contains("circuit_breaker_store"), "{text}");
            assert!(store_families(&parse(&text)).is_empty());

            let (status, report) = http.json("/health").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(report["status"], "healthy");
            assert!(
                report.as_object().unwrap().get("store").is_none(),
                "{report}"
            );
        }
        assert!(HealthReport::of(&registry).store.is_none());
    })
    .await;
}
