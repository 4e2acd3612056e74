//! The dashboard page in a real headless Chromium, against a real axum server on 127.0.0.1:
//! every breaker drawn with its state after the page's script ran, the overall status, the
//! reasons of the transitions, the 503 body of an unhealthy app drawn rather than taken for an
//! error, names escaped, "connection lost" when `health` fails, and a screenshot to look at
//! (`target/dashboard.png`).
//!
//! Chromium must be installed (`apt-get install chromium` on Debian; CI installs it): these tests
//! fail, not skip, without it. `CHROMIUM=/path/to/chrome` picks another binary.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_circuit_breaker::registry::{BreakerSettings, CircuitBreakerRegistry};
use tower_circuit_breaker::store::{InMemoryStateStore, StoreOptions};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitState, ManualClock};
use tower_circuit_breaker_axum::health::HealthReport;
use tower_circuit_breaker_axum::{dashboard, BreakerRoutes};

#[path = "support/browser.rs"]
mod browser;

use browser::{chromium, elements, target_dir, text_of};

#[path = "support/http.rs"]
mod support_http;

use support_http::serve;

/// A name a careless page would turn into an element.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

// ===== the app under the page =====

/// Six breakers, one per state and a hostile name, on a clock the test moves:
/// `pgmq` (critical) open after 3 failures with a 30 s break, `payments` half-open after its
/// 10 s break, `object-store` isolated, `legacy-soap` disabled, `cache` and the hostile name
/// closed.
fn registry(clock: &ManualClock) -> CircuitBreakerRegistry {
    CircuitBreakerRegistry::builder()
        .clock(clock.clone())
        .breaker(
            "pgmq",
            BreakerSettings::new(
                CircuitBreakerConfig::default()
                    .failure_threshold(3)
                    .break_duration(Duration::from_secs(30)),
            )
            .critical(true),
        )
        .breaker(
            "payments",
            BreakerSettings::new(
                CircuitBreakerConfig::default()
                    .failure_threshold(1)
                    .break_duration(Duration::from_secs(10)),
            )
            .critical(true),
        )
        .breaker("cache", CircuitBreakerConfig::default())
        .breaker("object-store", CircuitBreakerConfig::default())
        .breaker("legacy-soap", CircuitBreakerConfig::default())
        .breaker(HOSTILE_NAME, CircuitBreakerConfig::default())
        .build()
        .unwrap()
}

/// Opens `pgmq` (3 failures, then 4 calls turned away) and `payments`, gives `cache` 7
/// successes and 1 failure, isolates `object-store` and disables `legacy-soap`.
async fn drive(registry: &CircuitBreakerRegistry) {
    let payments = registry.get("payments").unwrap();
    let _ = payments
        .call(|| async { Err::<(), _>("connection reset") })
        .await;
    assert_eq!(payments.state(), CircuitState::Open);

    let cache = registry.get("cache").unwrap();
    for _ in 0..7 {
        cache.call(|| async { Ok::<_, &str>(()) }).await.unwrap();
    }
    let _ = cache.call(|| async { Err::<(), _>("timeout") }).await;
    assert_eq!(cache.state(), CircuitState::Closed);

    registry.get("object-store").unwrap().isolate();
    registry.get("legacy-soap").unwrap().disable();

    let pgmq = registry.get("pgmq").unwrap();
    for _ in 0..3 {
        let _ = pgmq.call(|| async { Err::<(), _>("x") }).await;
    }
    assert_eq!(pgmq.state(), CircuitState::Open);
    for _ in 0..4 {
        assert!(pgmq.call(|| async { Ok::<_, &str>(()) }).await.is_err());
    }
}

async fn get_text(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

// ===== the tests =====

#[test]
fn page_is_one_self_contained_document() {
    let html = dashboard::HTML;
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(dashboard::page().0, html);
    // The favicon's SVG namespace names a namespace; it is not fetched.
    let without_namespace = html.replace("http://www.w3.org/2000/svg", "");
    for external in [
        "http://",
        "https://",
        "//cdn",
        "<script src",
        "<link rel=\"stylesheet\"",
        "@import",
        "url(",
        "<img",
    ] {
        assert!(
            !without_namespace.contains(external),
            "the page must load nothing from outside, but it has `{external}`"
        );
    }
    assert!(
        !html.contains("innerHTML") && !html.contains("insertAdjacentHTML"),
        "the page must set data as text, never parse it as HTML"
    );
    assert!(html.contains("<style>") && html.contains("<script>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_draws_every_breaker_with_its_state_nested_under_a_prefix() {
    let clock = ManualClock::new();
    let registry = registry(&clock);
    drive(&registry).await;
    // `payments`' break ends; `pgmq`'s has 20 s left.
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        registry.get("payments").unwrap().state(),
        CircuitState::HalfOpen
    );

    let app = Router::new()
        .route("/", get(|| async { "the app" }))
        .nest("/ops", BreakerRoutes::new(registry.clone()).into_router());
    let addr = serve(app).await;

    // The page under test reads an unhealthy app's 503.
    let (status, body) = get_text(addr, "/ops/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("\"status\":\"unhealthy\""), "{body}");

    let screenshot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let started = Instant::now();
    // `/ops` without the slash: the page still finds `/ops/health`.
    let browser = chromium(
        format!("http://{addr}/ops"),
        "breakers",
        Some(screenshot.clone()),
    )
    .await;
    let dom = browser.dom();
    eprintln!("chromium ran for {:?}", started.elapsed());

    // The overall status, as colour hook and as text.
    let status = elements(dom, "span", "id=\"status\"");
    assert_eq!(status.len(), 1, "one #status in {dom}");
    assert_eq!(status[0].attribute("data-status"), "unhealthy");
    assert_eq!(text_of(&status[0].markup, "id=\"status\""), "unhealthy");
    let connection = elements(dom, "div", "id=\"connection\"");
    assert_eq!(connection[0].attribute("data-connection"), "ok");
    // No shared state store: no store line.
    let store = elements(dom, "div", "id=\"store\"");
    assert!(store[0].attributes.contains_key("hidden"), "{:?}", store[0]);
    assert_eq!(store[0].attribute("data-connected"), "none");

    // Every breaker, once, in name order, with its state.
    let cards = elements(dom, "article", "data-breaker=");
    let drawn: Vec<(&str, &str)> = cards
        .iter()
        .map(|card| (card.attribute("data-breaker"), card.attribute("data-state")))
        .collect();
    let mut expected = vec![
        (HOSTILE_NAME, "closed"),
        ("cache", "closed"),
        ("legacy-soap", "disabled"),
        ("object-store", "isolated"),
        ("payments", "half_open"),
        ("pgmq", "open"),
    ];
    expected.sort_unstable();
    assert_eq!(drawn, expected, "cards in name order with their states");
    let card = |name: &str| cards.iter().find(|c| c.attribute("data-breaker") == name);

    // Each card's counts are the report's (nothing moves: the clock stands still).
    for breaker in HealthReport::of(&registry).breakers {
        let markup = &card(&breaker.name).unwrap().markup;
        for (role, value) in [
            ("calls", breaker.total_calls),
            ("successes", breaker.successful_calls),
            ("failures", breaker.failed_calls),
            ("rejections", breaker.rejected_calls),
            ("consecutive", u64::from(breaker.consecutive_failures)),
        ] {
            let shown = text_of(markup, &format!("data-role=\"{role}\""));
            assert_eq!(shown, value.to_string(), "{role} of {}", breaker.name);
        }
    }

    // The open one: critical, its reason, its counts and the break counting down.
    let pgmq = card("pgmq").unwrap();
    assert_eq!(pgmq.attribute("data-critical"), "true");
    assert!(pgmq.markup.contains(">Open<"), "state written as text");
    assert!(pgmq.markup.contains(">critical<"));
    assert!(
        pgmq.markup.contains("3 consecutive failures"),
        "reason of the open breaker in {}",
        pgmq.markup
    );
    assert!(pgmq
        .markup
        .contains("data-from=\"closed\" data-to=\"open\""));
    assert_eq!(text_of(&pgmq.markup, "data-role=\"failures\""), "3");
    assert_eq!(text_of(&pgmq.markup, "data-role=\"rejections\""), "4");
    assert!(
        pgmq.markup.contains("100.0 %"),
        "failure rate as a percentage"
    );
    let left = text_of(&pgmq.markup, "data-role=\"retry-after\"");
    let seconds: f64 = left
        .strip_suffix(" s")
        .unwrap_or_else(|| panic!("countdown `{left}`"))
        .parse()
        .unwrap();
    assert!(
        seconds > 0.0 && seconds <= 20.0,
        "20 s left in the break when served, counting down: {left}"
    );
    assert!(
        pgmq.markup.contains(" s ago<") || pgmq.markup.contains(">just now<"),
        "the transition's age in {}",
        pgmq.markup
    );

    let object_store = card("object-store").unwrap();
    assert!(object_store.markup.contains("isolated by hand"));
    assert!(object_store.markup.contains(">Isolated<"));
    let payments = card("payments").unwrap();
    assert!(payments.markup.contains("break of 10s elapsed"));
    assert!(payments.markup.contains(">Half-open<"));
    assert!(card("legacy-soap")
        .unwrap()
        .markup
        .contains("disabled by hand"));
    let cache = card("cache").unwrap();
    assert_eq!(text_of(&cache.markup, "data-role=\"calls\""), "8");
    assert_eq!(text_of(&cache.markup, "data-role=\"successes\""), "7");
    assert!(cache.markup.contains("12.5 %"), "1 failure in 8 calls");

    // The hostile name is text, not an element.
    let hostile = card(HOSTILE_NAME).unwrap();
    assert!(hostile
        .markup
        .contains("&lt;img src=x onerror=alert(1)&gt;</h2>"));
    assert!(!dom.contains("<img"), "a name became markup");

    // A picture a person can look at.
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|error| panic!("no screenshot at {}: {error}", screenshot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    assert!(
        png.len() > 30_000,
        "a 1280x900 page of cards is not a blank image: {} bytes",
        png.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_orders_problems_first_when_asked() {
    // `payments` and `pgmq` both open and critical.
    let registry = registry(&ManualClock::new());
    drive(&registry).await;
    let app = BreakerRoutes::new(registry).into_router();
    let addr = serve(app).await;

    let browser = chromium(format!("http://{addr}/?sort=problems"), "problems", None).await;
    let dom = browser.dom();

    let order: Vec<String> = elements(dom, "article", "data-breaker=")
        .iter()
        .map(|card| card.attribute("data-breaker").to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "payments",
            "pgmq",
            "object-store",
            "legacy-soap",
            HOSTILE_NAME,
            "cache"
        ],
        "open, isolated, half-open, disabled, closed; by name within a state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_keeps_the_last_report_and_says_connection_lost_when_health_fails() {
    let registry = registry(&ManualClock::new());
    drive(&registry).await;
    // The first poll is answered, every later one fails.
    let polls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/", get(|| async { dashboard::page() }))
        .route(
            "/health",
            get(move || {
                let polls = polls.clone();
                let registry = registry.clone();
                async move {
                    if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                        let report = HealthReport::of(&registry);
                        (StatusCode::SERVICE_UNAVAILABLE, Json(report)).into_response()
                    } else {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "text/plain")],
                            "boom",
                        )
                            .into_response()
                    }
                }
            }),
        );
    let addr = serve(app).await;

    let screenshot = target_dir().join("dashboard-lost.png");
    let _ = std::fs::remove_file(&screenshot);
    let browser = chromium(format!("http://{addr}/"), "lost", Some(screenshot.clone())).await;
    let dom = browser.dom();

    let connection = elements(dom, "div", "id=\"connection\"");
    assert_eq!(connection.len(), 1);
    assert_eq!(connection[0].attribute("data-connection"), "lost");
    let banner = text_of(&connection[0].markup, "id=\"connection\"");
    assert!(
        banner.starts_with("Connection lost") && banner.contains("HTTP 500"),
        "banner: {banner}"
    );
    assert!(
        dom.contains("<body class=\"stale\">"),
        "the old report is dimmed"
    );
    // The last report stays on screen.
    let cards = elements(dom, "article", "data-breaker=");
    assert_eq!(cards.len(), 6);
    let status = elements(dom, "span", "id=\"status\"");
    assert_eq!(status[0].attribute("data-status"), "unhealthy");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_says_connection_lost_before_any_report() {
    let app = Router::new().route("/", get(|| async { dashboard::page() }));
    let addr = serve(app).await;

    let browser = chromium(format!("http://{addr}/"), "never", None).await;
    let dom = browser.dom();

    let connection = elements(dom, "div", "id=\"connection\"");
    assert_eq!(connection[0].attribute("data-connection"), "lost");
    assert!(text_of(&connection[0].markup, "id=\"connection\"").contains("HTTP 404"));
    let status = elements(dom, "span", "id=\"status\"");
    assert_eq!(status[0].attribute("data-status"), "unknown");
    assert!(elements(dom, "article", "data-breaker=").is_empty());
}

/// A group name a careless page would turn into an element (an app names its groups, but the
/// page takes no name on trust).
const HOSTILE_GROUP: &str = "<svg onload=alert(2)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_draws_keyed_breakers_in_a_section_per_group_with_keys_as_text() {
    // A name's settings apply to a key of that name: `api.example.com` opens on one failure
    // as a key of `hosts` too.
    let registry = CircuitBreakerRegistry::builder()
        .clock(ManualClock::new())
        .breaker(
            "api.example.com",
            CircuitBreakerConfig::default().failure_threshold(1),
        )
        .breaker("db", CircuitBreakerConfig::default())
        .build()
        .unwrap();
    let hosts = registry
        .keyed("hosts")
        .template(CircuitBreakerConfig::default().failure_threshold(1))
        .build()
        .unwrap();
    let tenants = registry.keyed(HOSTILE_GROUP).build().unwrap();
    // A key named like a named breaker, open.
    let _ = hosts
        .get(Some("api.example.com"))
        .call(|| async { Err::<(), _>("connection refused") })
        .await;
    hosts
        .get(Some("cdn.example.com"))
        .call(|| async { Ok::<_, &str>(()) })
        .await
        .unwrap();
    // Keys a key function made of anything: markup, and the overflow breaker's name (which goes
    // through the no-key breaker, never a breaker of its own named like the overflow one).
    hosts.get(Some(HOSTILE_NAME)).isolate();
    hosts.get(Some("<overflow>")).isolate();
    drop(tenants.get(Some("t1")));

    let addr = serve(BreakerRoutes::new(registry.clone()).into_router()).await;
    let (status, body) = get_text(addr, "/health").await;
    assert_eq!(status, StatusCode::OK, "an open key is degraded: {body}");

    let screenshot = target_dir().join("dashboard-keyed.png");
    let _ = std::fs::remove_file(&screenshot);
    let browser = chromium(format!("http://{addr}/"), "keyed", Some(screenshot.clone())).await;
    let dom = browser.dom();

    let status = elements(dom, "span", "id=\"status\"");
    assert_eq!(status[0].attribute("data-status"), "degraded");

    // The named breakers in their grid, without a group.
    let grid = elements(dom, "div", "id=\"breakers\"");
    let named: Vec<(String, String)> = elements(&grid[0].markup, "article", "data-breaker=")
        .iter()
        .map(|card| {
            assert!(!card.attributes.contains_key("data-group"), "{card:?}");
            (
                card.attribute("data-breaker").to_owned(),
                card.attribute("data-state").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("api.example.com".to_owned(), "closed".to_owned()),
            ("db".to_owned(), "closed".to_owned())
        ]
    );
    let title = elements(dom, "h2", "id=\"named-title\"");
    assert!(
        !title[0].attributes.contains_key("hidden"),
        "the named breakers are titled next to groups"
    );

    // One section per group, in the order the groups were made.
    let sections = elements(dom, "section", "data-group=");
    let groups: Vec<&str> = sections
        .iter()
        .map(|section| section.attribute("data-group"))
        .collect();
    assert_eq!(groups, ["hosts", HOSTILE_GROUP]);
    let hosts_section = &sections[0];
    assert_eq!(hosts_section.attribute("data-health"), "degraded");
    assert_eq!(
        text_of(&hosts_section.markup, "class=\"group-name\""),
        "hosts"
    );
    assert_eq!(
        text_of(&hosts_section.markup, "data-role=\"live\""),
        "3 of at most 1,000 keys"
    );
    assert_eq!(
        text_of(&hosts_section.markup, "data-role=\"by-state\""),
        "1 open · 2 isolated · 2 closed"
    );
    assert_eq!(
        text_of(&hosts_section.markup, "data-role=\"overflowed\""),
        "0 overflowed calls"
    );
    assert_eq!(
        text_of(&hosts_section.markup, "data-role=\"evictions\""),
        "0 evictions"
    );

    // The group's cards, each with its group, in name order; one card per name.
    let cards = elements(&hosts_section.markup, "article", "data-breaker=");
    let drawn: Vec<(&str, &str)> = cards
        .iter()
        .map(|card| {
            assert_eq!(card.attribute("data-group"), "hosts");
            assert!(
                card.markup.contains(">hosts</span>"),
                "group shown on the card"
            );
            (card.attribute("data-breaker"), card.attribute("data-state"))
        })
        .collect();
    let mut sorted = drawn.clone();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    assert_eq!(drawn.len(), 5);
    assert_eq!(
        drawn.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        sorted.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "in name order"
    );
    let mut states = drawn.clone();
    states.sort_unstable();
    assert_eq!(
        states,
        [
            (HOSTILE_NAME, "isolated"),
            ("<no key>", "isolated"),
            ("<overflow>", "closed"),
            ("api.example.com", "open"),
            ("cdn.example.com", "closed"),
        ]
    );
    let open = cards
        .iter()
        .find(|card| card.attribute("data-breaker") == "api.example.com")
        .unwrap();
    assert_eq!(text_of(&open.markup, "data-role=\"failures\""), "1");
    assert!(
        open.markup.contains(">1 failure<"),
        "the reason: {}",
        open.markup
    );

    // The header names the open key with its group.
    let summary = elements(dom, "div", "id=\"summary\"");
    assert!(
        summary[0].markup.contains("hosts / api.example.com: open"),
        "{}",
        summary[0].markup
    );

    // The hostile group and the hostile key are text, not elements.
    let hostile_section = &sections[1];
    assert_eq!(
        text_of(&hostile_section.markup, "class=\"group-name\""),
        HOSTILE_GROUP
    );
    assert!(hostile_section
        .markup
        .contains("&lt;svg onload=alert(2)&gt;</h2>"));
    let hostile_card = cards
        .iter()
        .find(|card| card.attribute("data-breaker") == HOSTILE_NAME)
        .unwrap();
    assert!(hostile_card
        .markup
        .contains("&lt;img src=x onerror=alert(1)&gt;</h2>"));
    assert!(!dom.contains("<img"), "a key became markup");
    // (The page's own script writes `<svg` for its favicon: look for elements, not text.)
    assert!(
        elements(dom, "svg", "onload").is_empty(),
        "a group name became markup"
    );
    assert!(
        elements(dom, "img", "onerror").is_empty(),
        "a key became markup"
    );
    assert_eq!(
        elements(&hostile_section.markup, "article", "data-breaker=").len(),
        3,
        "t1, overflow, no key"
    );

    assert!(std::fs::metadata(&screenshot).unwrap().len() > 30_000);
}

/// An instance name a careless page would turn into an element.
const HOSTILE_INSTANCE: &str = "<b onmouseover=alert(3)>web-1</b>";

/// Polls `done` in real time (Chromium runs in real time, so this test does too) until it
/// holds, for at most 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_shared_state_store_connected_then_down_with_its_error_as_text() {
    // Two instances of an app share `cache` through one store; the page is `web`'s.
    let store = InMemoryStateStore::new();
    let instance = || {
        CircuitBreakerRegistry::builder()
            .clock(ManualClock::new())
            .breaker(
                "cache",
                CircuitBreakerConfig::default().failure_threshold(1),
            )
            .build()
            .unwrap()
    };
    let (web, other) = (instance(), instance());
    let handle = web
        .attach_store(
            store.clone(),
            StoreOptions::default().instance(HOSTILE_INSTANCE),
        )
        .unwrap();
    let other_handle = other
        .attach_store(store.clone(), StoreOptions::default().instance("worker-2"))
        .unwrap();
    handle.synced().await;
    other_handle.synced().await;

    // The other instance trips `cache` and resets it: `web` takes both.
    let _ = other
        .get("cache")
        .unwrap()
        .call(|| async { Err::<(), _>("timeout") })
        .await;
    eventually("web's cache opens", || {
        web.get("cache").unwrap().state() == CircuitState::Open
    })
    .await;
    other.get("cache").unwrap().reset();
    eventually("web's cache closes", || handle.status().applied == 2).await;
    assert_eq!(web.get("cache").unwrap().state(), CircuitState::Closed);

    let addr = serve(BreakerRoutes::new(web.clone()).into_router()).await;
    let store_line = |dom: &str| {
        let mut found = elements(dom, "div", "id=\"store\"");
        assert_eq!(found.len(), 1, "one #store in {dom}");
        found.remove(0)
    };

    // Connected: green, no error, the figures.
    let browser = chromium(format!("http://{addr}/"), "store-up", None).await;
    let dom = browser.dom();
    assert_eq!(
        elements(dom, "span", "id=\"status\"")[0].attribute("data-status"),
        "healthy"
    );
    let line = store_line(dom);
    assert!(!line.attributes.contains_key("hidden"), "{line:?}");
    assert_eq!(line.attribute("data-connected"), "true");
    assert_eq!(text_of(&line.markup, "data-role=\"store-kind\""), "memory");
    assert_eq!(
        text_of(&line.markup, "data-role=\"store-instance\""),
        HOSTILE_INSTANCE
    );
    assert_eq!(
        text_of(&line.markup, "data-role=\"store-connection\""),
        "connected"
    );
    assert_eq!(
        text_of(&line.markup, "data-role=\"store-counts\""),
        "0 published · 2 received · 2 applied"
    );
    assert_eq!(text_of(&line.markup, "data-role=\"store-error\""), "");

    // Down: amber, the app degraded for it alone (every breaker closed), the last error shown.
    store.set_down(true);
    eventually("web sees the store down", || !handle.status().connected).await;
    let (status, body) = get_text(addr, "/health").await;
    assert_eq!(status, StatusCode::OK, "degraded is still 200: {body}");

    let screenshot = target_dir().join("dashboard-store.png");
    let _ = std::fs::remove_file(&screenshot);
    let browser = chromium(
        format!("http://{addr}/"),
        "store-down",
        Some(screenshot.clone()),
    )
    .await;
    let dom = browser.dom();
    let status = elements(dom, "span", "id=\"status\"");
    assert_eq!(status[0].attribute("data-status"), "degraded");
    assert!(
        status[0]
            .attribute("title")
            .contains("store is not connected"),
        "{:?}",
        status[0]
    );
    let cards = elements(dom, "article", "data-breaker=");
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0].attribute("data-state"), "closed");
    let line = store_line(dom);
    assert_eq!(line.attribute("data-connected"), "false");
    assert_eq!(
        text_of(&line.markup, "data-role=\"store-connection\""),
        "disconnected"
    );
    let error = text_of(&line.markup, "data-role=\"store-error\"");
    assert!(
        error.starts_with("last error: the in-memory store"),
        "the store's error in `{error}`"
    );
    assert!(
        text_of(&line.markup, "data-role=\"store-counts\"")
            .starts_with("0 published · 2 received · 2 applied"),
        "{}",
        line.markup
    );

    // The instance's name is text, not an element.
    assert!(line
        .markup
        .contains("&lt;b onmouseover=alert(3)&gt;web-1&lt;/b&gt;</b>"));
    assert!(
        elements(dom, "b", "onmouseover").is_empty(),
        "an instance name became markup"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
