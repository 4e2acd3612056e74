//! The main job as a user runs it: the `axum_health` example binary, started on a free loopback
//! port, its upstream driven to fail over HTTP; the breaker opens as `/health` and `/metrics`
//! show, then closes after the upstream recovers.
//!
//! A second test makes one of the main job's upstream hosts fail: only that host's breaker, in
//! the keyed group `hosts`, opens, and the app is degraded.
//!
//! A third test loads the main job's dashboard, with the breakers of `examples/breakers.yaml`
//! and the hosts' keyed breakers, in headless Chromium and writes a screenshot of it to
//! `target/axum_health.png`.
//!
//! The binary keeps real time, so this test uses a breakers file with a 200 ms break and polls
//! `/health` for the change it waits for (bounded), rather than sleeping a fixed time.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[path = "../crates/tower-circuit-breaker-axum/tests/support/browser.rs"]
mod browser;
#[path = "support/example.rs"]
mod example;

const BREAKERS: &str = r"
circuit_breakers:
  default_config: { failure_threshold: 5, break_duration: 200ms, success_threshold: 1 }
  component_configs:
    pgmq: { failure_threshold: 3, critical: true }
    cache: { failure_threshold: 10 }
";

fn binary() -> PathBuf {
    example::binary("axum_health")
}

/// The running example, killed when dropped.
struct MainJob {
    child: Child,
    base: String,
}

impl Drop for MainJob {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MainJob {
    /// Starts it on a free port, with `config` (or the example's own breakers file).
    fn start(config: Option<&std::path::Path>) -> Self {
        let mut command = Command::new(binary());
        command.args(["--addr", "127.0.0.1:0", "--no-traffic"]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env("BREAKERS_ADMIN_TOKEN", "test-token")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first line says where it serves: `axum_health: serving on http://127.0.0.1:PORT`.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        // Keep reading what it prints, so it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let base = first
            .trim()
            .strip_prefix("axum_health: serving on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self { child, base }
    }
}

impl MainJob {
    /// Started with [`BREAKERS`] (written to a directory of its own, `{name}-<pid>`, which the
    /// caller removes), and a client for it.
    fn start_with_test_breakers(name: &str) -> (Self, Http, PathBuf) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("breakers.yaml");
        std::fs::write(&config, BREAKERS).unwrap();
        let job = Self::start(Some(&config));
        let http = Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: job.base.clone(),
        };
        (job, http, dir)
    }
}

struct Http {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
}

impl Http {
    async fn send(&self, method: Method, path: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::AUTHORIZATION, "Bearer test-token")
            .body(Empty::new())
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn health(&self) -> (StatusCode, Value) {
        let (status, body) = self.send(Method::GET, "/health").await;
        (status, serde_json::from_str(&body).unwrap())
    }

    async fn state_of(&self, name: &str) -> String {
        let (_, report) = self.health().await;
        report["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["name"] == name)
            .map(|entry| entry["state"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// The value of the sample `name{labels}` in a scrape.
    async fn sample(&self, series: &str) -> Option<f64> {
        let (_, text) = self.send(Method::GET, "/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_job_opens_a_breaker_when_its_upstream_fails_and_closes_it_after() {
    let (job, http, dir) = MainJob::start_with_test_breakers("tcb-axum-health");

    let (status, report) = http.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "healthy");
    let open = r#"circuit_breaker_state{breaker="pgmq",state="open"}"#;
    let closed = r#"circuit_breaker_state{breaker="pgmq",state="closed"}"#;
    assert_eq!(http.sample(closed).await, Some(1.0));

    let (status, _) = http
        .send(Method::POST, "/upstream?service=pgmq&fail=1&latency_ms=0")
        .await;
    assert_eq!(status, StatusCode::OK);
    // One request is three tries through the retry layer: the third failure opens pgmq, and the
    // caller gets the last try's answer.
    let (status, body) = http.send(Method::GET, "/call/pgmq").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (status, report) = http.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "unhealthy");
    assert_eq!(http.state_of("pgmq").await, "open");
    assert_eq!(http.state_of("cache").await, "closed");
    assert_eq!(http.sample(open).await, Some(1.0));
    assert_eq!(http.sample(closed).await, Some(0.0));
    let (status, body) = http.send(Method::GET, "/call/pgmq").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("circuit open"), "{body}");

    http.send(Method::POST, "/upstream?service=pgmq&fail=0")
        .await;
    // The break is 200 ms; then a request is the probe that closes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = http.send(Method::GET, "/call/pgmq").await;
        if status == StatusCode::OK && http.state_of("pgmq").await == "closed" {
            break;
        }
        assert!(Instant::now() < deadline, "pgmq did not close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, report) = http.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "healthy");
    assert_eq!(http.sample(closed).await, Some(1.0));
    let transitions =
        r#"circuit_breaker_transitions_total{breaker="pgmq",from="closed",to="open"}"#;
    assert!(http.sample(transitions).await.is_some_and(|n| n >= 1.0));

    // Admin, with the token from the environment.
    let (status, _) = http.send(Method::POST, "/breakers/pgmq/isolate").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(http.health().await.0, StatusCode::SERVICE_UNAVAILABLE);
    drop(job);
    std::fs::remove_dir_all(&dir).unwrap();
}

impl Http {
    /// The keyed group's entries in `/health`: (key, state).
    async fn hosts(&self) -> Vec<(String, String)> {
        let (_, report) = self.health().await;
        report["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["group"] == "hosts")
            .map(|entry| {
                let field = |name: &str| entry[name].as_str().unwrap().to_owned();
                (field("name"), field("state"))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_host_opens_only_its_own_breaker_in_the_keyed_group() {
    let (job, http, dir) = MainJob::start_with_test_breakers("tcb-axum-hosts");
    for n in 1..=3 {
        let (status, body) = http.send(Method::GET, &format!("/hosts/{n}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let hosts = http.hosts().await;
    // Three hosts, each its own authority, and the group's overflow and no-key breakers.
    assert_eq!(hosts.len(), 5, "{hosts:?}");
    assert!(
        hosts.iter().all(|(_, state)| state == "closed"),
        "{hosts:?}"
    );

    let (status, _) = http
        .send(Method::POST, "/upstream?host=2&fail=1&latency_ms=0")
        .await;
    assert_eq!(status, StatusCode::OK);
    // Each request is three tries: two requests are six failures, past the threshold of five.
    for _ in 0..2 {
        http.send(Method::GET, "/hosts/2").await;
    }
    let (status, body) = http.send(Method::GET, "/hosts/2").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("circuit open"), "{body}");
    let (status, body) = http.send(Method::GET, "/hosts/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let open: Vec<_> = http
        .hosts()
        .await
        .into_iter()
        .filter(|(_, state)| state != "closed")
        .collect();
    assert_eq!(open.len(), 1, "only host 2's breaker: {open:?}");
    assert_eq!(open[0].1, "open");
    assert!(
        open[0].0.starts_with("127.0.0.1:"),
        "keyed by authority: {open:?}"
    );
    // A key is not critical: degraded, still 200.
    let (status, report) = http.health().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "degraded");
    // The group in aggregate on /metrics, and no series of its own per key.
    assert_eq!(
        http.sample(r#"circuit_breaker_keyed_breakers{group="hosts",state="open"}"#)
            .await,
        Some(1.0)
    );
    let (_, text) = http.send(Method::GET, "/metrics").await;
    assert!(
        !text.contains(&format!("breaker=\"{}\"", open[0].0)),
        "{text}"
    );
    drop(job);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_jobs_dashboard_shows_every_configured_breaker_with_its_state() {
    let job = MainJob::start(None);
    let http = Http {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: job.base.clone(),
    };
    // Isolate the critical database breaker (the file's 1 s minimum between transitions keeps a
    // fresh breaker from opening at once), so one card is not green and the app is unhealthy.
    let (status, _) = http.send(Method::POST, "/breakers/database/isolate").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(http.state_of("database").await, "isolated");
    for n in 1..=3 {
        http.send(Method::GET, &format!("/hosts/{n}")).await;
    }

    let screenshot = browser::target_dir().join("axum_health.png");
    let _ = std::fs::remove_file(&screenshot);
    let page = browser::chromium(
        format!("{}/", job.base),
        "axum-health",
        Some(screenshot.clone()),
    )
    .await;
    let dom = page.dom();
    let cards = browser::elements(dom, "article", "data-breaker=");
    let (keyed, named): (Vec<_>, Vec<_>) = cards
        .iter()
        .partition(|card| card.attributes.contains_key("data-group"));
    let states: std::collections::BTreeMap<&str, &str> = named
        .iter()
        .map(|card| (card.attribute("data-breaker"), card.attribute("data-state")))
        .collect();
    assert_eq!(
        states,
        [
            ("cache", "closed"),
            ("database", "isolated"),
            ("pgmq", "closed"),
            ("s3", "closed")
        ]
        .into_iter()
        .collect(),
        "every breaker of examples/breakers.yaml, drawn with its state"
    );
    // The hosts' group: three hosts, its overflow and no-key breakers.
    assert_eq!(keyed.len(), 5, "{keyed:?}");
    assert!(keyed
        .iter()
        .all(|card| card.attribute("data-group") == "hosts"));
    let status = browser::elements(dom, "span", "id=\"status\"");
    assert_eq!(status[0].attribute("data-status"), "unhealthy");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
