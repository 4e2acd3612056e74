//! The router over real HTTP on 127.0.0.1, with a hyper client: `/health` follows the breakers
//! (200, 503, 200), degraded, live and ready, and the admin actions behind their token.

use std::time::Duration;

use axum::Router;
use http::{header, Method, StatusCode};
use serde_json::Value;
use tower_circuit_breaker::registry::{BreakerSettings, CircuitBreakerRegistry};
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock};
use tower_circuit_breaker_axum::BreakerRoutes;

#[path = "support/http.rs"]
mod support_http;

use support_http::{entry, serve, Http};

const TOKEN: &str = "correct horse battery staple";

/// A critical `db` (opens after 2 failures, 10 s break, 1 probe closes) and a non-critical
/// `cache` (opens after 1), on a clock the test moves.
fn registry(clock: &ManualClock) -> CircuitBreakerRegistry {
    CircuitBreakerRegistry::builder()
        .clock(clock.clone())
        .breaker(
            "db",
            BreakerSettings::new(
                CircuitBreakerConfig::default()
                    .failure_threshold(2)
                    .break_duration(Duration::from_secs(10))
                    .success_threshold(1),
            )
            .critical(true),
        )
        .breaker(
            "cache",
            CircuitBreakerConfig::default().failure_threshold(1),
        )
        .build()
        .unwrap()
}

async fn fail(breaker: &CircuitBreaker) {
    let _ = breaker.call(|| async { Err::<(), _>("down") }).await;
}

#[tokio::test]
async fn health_turns_503_while_a_critical_breaker_is_open_and_200_when_it_closes() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let http = Http::new(serve(BreakerRoutes::new(registry.clone()).into_router()).await);

    let (status, report) = http.json("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["breakers"].as_array().unwrap().len(), 2);
    assert_eq!(entry(&report, "db")["state"], "closed");
    assert_eq!(entry(&report, "db")["critical"], true);

    let db = registry.get("db").unwrap();
    fail(&db).await;
    fail(&db).await;
    let (status, report) = http.json("/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(report["status"], "unhealthy");
    let db_entry = entry(&report, "db");
    assert_eq!(db_entry["state"], "open");
    assert_eq!(db_entry["health"], "unhealthy");
    assert_eq!(db_entry["failed_calls"], 2);
    assert_eq!(db_entry["failure_rate"], 1.0);
    assert_eq!(db_entry["retry_after_seconds"], 10.0);
    assert_eq!(db_entry["last_transition"]["to"], "open");
    assert_eq!(
        db_entry["last_transition"]["reason"]["message"],
        "2 consecutive failures"
    );
    let (status, ready) = http.json("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["ready"], false);
    let (status, _) = http.json("/health/live").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "live while serving, whatever the breakers"
    );

    clock.advance(Duration::from_secs(4));
    let (_, report) = http.json("/health").await;
    assert_eq!(entry(&report, "db")["retry_after_seconds"], 6.0);

    clock.advance(Duration::from_secs(6));
    let (status, report) = http.json("/health").await;
    assert_eq!(entry(&report, "db")["state"], "half_open");
    assert_eq!(
        status,
        StatusCode::OK,
        "a critical breaker probing is degraded"
    );
    assert_eq!(report["status"], "degraded");

    db.call(|| async { Ok::<_, &str>(()) }).await.unwrap();
    let (status, report) = http.json("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "healthy");
    let recent = entry(&report, "db")["recent_transitions"]
        .as_array()
        .unwrap()
        .clone();
    let hops: Vec<_> = recent
        .iter()
        .map(|t| {
            format!(
                "{} -> {}",
                t["from"].as_str().unwrap(),
                t["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        hops,
        ["closed -> open", "open -> half_open", "half_open -> closed"]
    );
    let (status, _) = http.json("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_non_critical_breaker_open_is_degraded_and_still_200() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let http = Http::new(serve(BreakerRoutes::new(registry.clone()).into_router()).await);
    fail(&registry.get("cache").unwrap()).await;

    let (status, report) = http.json("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "degraded");
    assert_eq!(entry(&report, "cache")["health"], "degraded");
    assert_eq!(entry(&report, "db")["health"], "healthy");
    let (status, ready) = http.json("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "degraded");
}

#[tokio::test]
async fn admin_actions_need_the_token_and_a_known_breaker() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let app = BreakerRoutes::new(registry.clone())
        .admin_token(TOKEN)
        .into_router();
    let http = Http::new(serve(app).await);
    let db = registry.get("db").unwrap();

    let (status, headers, _) = http.send(Method::POST, "/breakers/db/isolate", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _, _) = http
        .send(Method::POST, "/breakers/db/isolate", Some("wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = http
        .send(Method::POST, "/breakers/nope/isolate", Some("wrong"))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "names are not probed without the token"
    );
    assert_eq!(
        db.state(),
        CircuitState::Closed,
        "refused requests change nothing"
    );

    let (status, _, body) = http
        .send(Method::POST, "/breakers/db/isolate", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(db.state(), CircuitState::Isolated);
    let entry: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["name"], "db");
    assert_eq!(entry["state"], "isolated");
    assert_eq!(entry["health"], "unhealthy");
    assert_eq!(
        http.json("/health").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    for (action, state) in [
        ("automatic", CircuitState::Closed),
        ("disable", CircuitState::Disabled),
        ("reset", CircuitState::Closed),
    ] {
        let (status, _, _) = http
            .send(Method::POST, &format!("/breakers/db/{action}"), Some(TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{action}");
        assert_eq!(db.state(), state, "{action}");
    }

    let (status, _, body) = http
        .send(Method::POST, "/breakers/nope/reset", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no breaker named `nope`\n");
    let (status, _, _) = http
        .send(Method::POST, "/breakers/db/explode", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = http
        .send(Method::GET, "/breakers/db/reset", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_a_token_there_are_no_admin_routes_and_the_dashboard_can_be_left_out() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let http = Http::new(
        serve(
            BreakerRoutes::new(registry.clone())
                .dashboard(false)
                .into_router(),
        )
        .await,
    );
    let (status, _, _) = http
        .send(Method::POST, "/breakers/db/reset", Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = http.send(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let http = Http::new(serve(BreakerRoutes::new(registry).admin_token("").into_router()).await);
    let (status, _, _) = http
        .send(Method::POST, "/breakers/db/reset", Some(""))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an empty token leaves admin off"
    );
    let (status, headers, body) = http.send(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
}

#[tokio::test]
async fn the_routes_nest_under_a_prefix_in_an_app_with_state() {
    #[derive(Clone)]
    struct AppState;
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let app: Router = Router::new()
        .route(
            "/orders",
            axum::routing::get(|_: axum::extract::State<AppState>| async { "orders" }),
        )
        .nest("/ops", BreakerRoutes::new(registry).into_router())
        .with_state(AppState);
    let http = Http::new(serve(app).await);
    assert_eq!(http.json("/ops/health").await.0, StatusCode::OK);
    assert_eq!(
        http.send(Method::GET, "/orders", None).await.0,
        StatusCode::OK
    );
    let (status, headers, _) = http.send(Method::GET, "/ops/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .contains("text"));
}

fn keyed_entry<'a>(report: &'a Value, group: &str, name: &str) -> &'a Value {
    report["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["group"] == group && entry["name"] == name)
        .unwrap_or_else(|| panic!("no {group} / {name} in {report}"))
}

#[tokio::test]
async fn an_open_keyed_breaker_is_listed_with_its_group_and_makes_health_degraded() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let hosts = registry
        .keyed("hosts")
        .template(CircuitBreakerConfig::default().failure_threshold(1))
        .max_breakers(100)
        .build()
        .unwrap();
    let http = Http::new(serve(BreakerRoutes::new(registry.clone()).into_router()).await);
    fail(&hosts.get(Some("api.example.com"))).await;
    // A key named like the named `cache`: another breaker, with `cache`'s settings.
    let cache_key = hosts.get(Some("cache"));
    assert!(!cache_key.ptr_eq(&registry.get("cache").unwrap()));
    cache_key
        .call(|| async { Ok::<_, &str>(()) })
        .await
        .unwrap();
    drop(cache_key);

    let (status, report) = http.json("/health").await;
    assert_eq!(status, StatusCode::OK, "degraded is still 200: {report}");
    assert_eq!(report["status"], "degraded");
    let (status, ready) = http.json("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["ready"], true);

    // Every entry says its group: null for a named breaker.
    let entries = report["breakers"].as_array().unwrap();
    assert_eq!(entries.len(), 2 + 4, "db, cache; 2 keys, overflow, no key");
    for entry in entries {
        assert!(entry.get("group").is_some(), "{entry}");
    }
    assert_eq!(entry(&report, "db")["group"], Value::Null);
    let named_cache = entry(&report, "cache");
    assert_eq!(named_cache["group"], Value::Null);
    assert_eq!(named_cache["total_calls"], 0);

    let host = keyed_entry(&report, "hosts", "api.example.com");
    assert_eq!(host["state"], "open");
    assert_eq!(host["health"], "degraded");
    assert_eq!(host["critical"], false);
    assert_eq!(host["failed_calls"], 1);
    assert!(host["retry_after_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(host["last_transition"]["to"], "open");
    let cache_key = keyed_entry(&report, "hosts", "cache");
    assert_eq!(cache_key["state"], "closed");
    assert_eq!(cache_key["successful_calls"], 1);
    for special in ["<overflow>", "<no key>"] {
        assert_eq!(keyed_entry(&report, "hosts", special)["state"], "closed");
    }

    // The group's figures.
    assert_eq!(
        report["keyed"],
        serde_json::json!([{
            "group": "hosts",
            "health": "degraded",
            "live": 2,
            "max_breakers": 100,
            "overflowed_calls": 0,
            "evictions": 0,
            "by_state": { "closed": 3, "open": 1, "half_open": 0, "isolated": 0, "disabled": 0 },
        }])
    );

    // A group whose keys are critical: one open key makes the app unhealthy.
    let payments = registry
        .keyed("payment-providers")
        .template(
            BreakerSettings::new(CircuitBreakerConfig::default().failure_threshold(1))
                .critical(true),
        )
        .build()
        .unwrap();
    fail(&payments.get(Some("psp-1"))).await;
    let (status, report) = http.json("/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(report["status"], "unhealthy");
    assert_eq!(
        keyed_entry(&report, "payment-providers", "psp-1")["health"],
        "unhealthy"
    );
    assert_eq!(report["keyed"][1]["group"], "payment-providers");
    assert_eq!(report["keyed"][1]["health"], "unhealthy");
    assert_eq!(report["keyed"][0]["health"], "degraded");
    let (status, ready) = http.json("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["ready"], false);
}

#[tokio::test]
async fn without_keyed_groups_health_has_an_empty_keyed_list() {
    let registry = registry(&ManualClock::new());
    let http = Http::new(serve(BreakerRoutes::new(registry).into_router()).await);
    let (_, report) = http.json("/health").await;
    assert_eq!(report["keyed"], serde_json::json!([]));
}

#[tokio::test]
async fn the_metrics_route_exports_keyed_breakers_per_key_or_in_aggregate() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    let hosts = registry
        .keyed("hosts")
        .template(CircuitBreakerConfig::default().failure_threshold(1))
        .build()
        .unwrap();
    fail(&hosts.get(Some("api.example.com"))).await;

    let per_key = Http::new(serve(BreakerRoutes::new(registry.clone()).into_router()).await);
    let (status, headers, body) = per_key.send(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        tower_circuit_breaker_axum::metrics::CONTENT_TYPE
    );
    assert!(
        body.contains(
            r#"circuit_breaker_state{breaker="api.example.com",group="hosts",state="open"} 1"#
        ),
        "{body}"
    );
    assert!(body.contains(r#"circuit_breaker_state{breaker="db",group="",state="closed"} 1"#));
    assert!(body.contains(r#"circuit_breaker_keyed_breakers{group="hosts",state="open"} 1"#));

    let aggregate = Http::new(
        serve(
            BreakerRoutes::new(registry.clone())
                .keyed_metrics_aggregate(true)
                .into_router(),
        )
        .await,
    );
    let (status, _, body) = aggregate.send(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.contains("api.example.com"),
        "no series per key: {body}"
    );
    assert!(!body.contains("<overflow>"));
    assert!(body.contains(r#"circuit_breaker_state{breaker="db",state="closed"} 1"#));
    assert!(body.contains(r#"circuit_breaker_keyed_breakers{group="hosts",state="open"} 1"#));
    assert!(body.contains(r#"circuit_breaker_keyed_live_breakers{group="hosts"} 1"#));
    // Health lists every breaker either way.
    let (_, report) = aggregate.json("/health").await;
    assert_eq!(
        keyed_entry(&report, "hosts", "api.example.com")["state"],
        "open"
    );
}
