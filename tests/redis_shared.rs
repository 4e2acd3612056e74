//! Breakers shared through a real redis-server, started by each test on a free loopback port:
//! two instances (in this process, and in two OS processes running the `distributed` example),
//! a restart, a server killed mid-run and brought back, a server that never answers, and data
//! that is not a breaker's state.
//!
//! Without `redis-server` on the PATH the tests print `skipped: redis-server not found` and pass,
//! unless `REQUIRE_REDIS=1` (as CI sets), when they fail.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};
use tower_circuit_breaker::store::{BreakerId, StoreHandle, StoreOptions};
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState, TransitionReason};
use tower_circuit_breaker_redis::RedisStateStore;

#[path = "support/example.rs"]
mod example;

// ===== the server =====

/// A redis-server of the test's own, on a free loopback port, killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
}

fn redis_server() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_REDIS").as_deref() != Ok("1"),
            "redis-server not found, and REQUIRE_REDIS=1"
        );
        eprintln!("skipped: redis-server not found");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    /// Starts one, or `None` (after saying so) when there is no redis-server.
    async fn start() -> Option<Self> {
        redis_server()?;
        let mut redis = Self {
            child: None,
            port: free_port(),
        };
        redis.restart().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port, with no persistence, and waits until it answers.
    async fn restart(&mut self) {
        let child = Command::new(redis_server().unwrap())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..500 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: no goodbye to any client.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    async fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(&mut connection).await.unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ===== instances in this process =====

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(3)
        .success_threshold(1)
        .break_duration(Duration::from_secs(30))
}

async fn instance(url: &str, name: &str) -> (CircuitBreakerRegistry, StoreHandle) {
    let registry = CircuitBreakerRegistry::builder()
        .breaker("payments", config())
        .breaker("search", config())
        .build()
        .unwrap();
    let store = RedisStateStore::open(url).unwrap();
    let handle = registry
        .attach_store(store, StoreOptions::default().instance(name))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle.synced())
        .await
        .expect("the instance reads the shared state");
    (registry, handle)
}

fn payments(registry: &CircuitBreakerRegistry) -> CircuitBreaker {
    registry.get("payments").unwrap()
}

fn trip(breaker: &CircuitBreaker) {
    while breaker.state() == CircuitState::Closed {
        breaker.try_acquire().unwrap().failure();
    }
}

/// Polls `done` every millisecond for at most `within`.
async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_reaches_the_other_instance_and_propagation_is_measured() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, _ha) = instance(&redis.url(), "a").await;
    let (b, hb) = instance(&redis.url(), "b").await;
    let (on_a, on_b) = (payments(&a), payments(&b));
    let mut delays = Vec::new();
    for round in 0..30 {
        let mut heard = on_b.subscribe();
        let tripped = Instant::now();
        trip(&on_a);
        let opened = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let transition = heard.recv().await.unwrap();
                if transition.to == CircuitState::Open {
                    return transition;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: b never opened"));
        delays.push(tripped.elapsed());
        assert_eq!(opened.reason, TransitionReason::Shared);
        assert!(on_b.try_acquire().is_err(), "b rejects");
        assert_eq!(on_b.metrics().failed_calls, 0, "b never saw a failure");
        let left = opened.open_for.unwrap();
        assert!(
            left > Duration::from_secs(29),
            "b joins a's break: {left:?}"
        );

        // A reset on b closes a: the fleet is closed before the next round.
        on_b.reset();
        eventually("a closes", Duration::from_secs(5), || {
            on_a.state() == CircuitState::Closed
        })
        .await;
    }
    delays.sort();
    let median = delays[delays.len() / 2];
    let max = delays[delays.len() - 1];
    println!(
        "propagation from a's trip to b's rejection over {} trips on loopback: median {median:?}, max {max:?}",
        delays.len()
    );
    // b took each of a's trips (its own resets are its own).
    assert!(hb.status().applied >= 30, "{:?}", hb.status());
    // A closed breaker's key stays, a week, so an instance that was away reads the close.
    let key = RedisStateStore::open(&redis.url())
        .unwrap()
        .key_of(&BreakerId {
            group: None,
            name: "payments".into(),
        });
    let redis::Value::BulkString(stored) = redis.command(&["GET", &key]).await else {
        panic!("no key for a closed breaker");
    };
    assert!(String::from_utf8_lossy(&stored).contains(r#""state":"closed""#));
    let redis::Value::Int(lives) = redis.command(&["PTTL", &key]).await else {
        panic!("no TTL");
    };
    assert!(lives > 6 * 24 * 3_600_000, "{lives}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_the_shared_state_is_open_starts_open() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, _ha) = instance(&redis.url(), "a").await;
    trip(&payments(&a));
    a.get("search").unwrap().isolate();
    // Give a's publications time to land.
    eventually("published", Duration::from_secs(5), || {
        _ha.status().published >= 2
    })
    .await;

    let (restarted, handle) = instance(&redis.url(), "a-restarted").await;
    assert!(handle.status().synced);
    let on_restart = payments(&restarted);
    assert_eq!(on_restart.state(), CircuitState::Open);
    let left = on_restart.try_acquire().unwrap_err().retry_after().unwrap();
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}"
    );
    assert_eq!(
        restarted.get("search").unwrap().state(),
        CircuitState::Isolated
    );
}

/// Calls on `breaker` in a loop until `stop`, each checked to be admitted (the breaker is closed
/// here): counts them, and the slowest.
fn serve(
    breaker: CircuitBreaker,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Duration)> {
    tokio::spawn(async move {
        let (mut calls, mut slowest) = (0_u64, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let result = breaker.call(|| async { Ok::<_, ()>(()) }).await;
            slowest = slowest.max(started.elapsed());
            assert!(result.is_ok(), "a call failed: {result:?}");
            calls += 1;
            if calls % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        (calls, slowest)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_no_call_and_the_instances_converge_once_it_is_back() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let (a, ha) = instance(&redis.url(), "a").await;
    let (b, hb) = instance(&redis.url(), "b").await;
    // An isolate published before the server dies with its data.
    let ledger = a.get_or_create("ledger").unwrap();
    ledger.isolate();
    eventually("the isolate is published", Duration::from_secs(5), || {
        ha.status().published >= 1
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    // Calls go on all along on both instances (on a breaker that stays closed everywhere).
    let load = [
        serve(a.get("search").unwrap(), Arc::clone(&stop)),
        serve(b.get("search").unwrap(), Arc::clone(&stop)),
    ];

    redis.kill();
    eventually("both see the store down", Duration::from_secs(15), || {
        !ha.status().connected && !hb.status().connected
    })
    .await;
    assert_eq!(a.snapshot().health(), HealthStatus::Degraded);
    assert!(ha.status().last_error.is_some());

    // a trips on its own counts and rejects; b cannot hear it and keeps admitting.
    trip(&payments(&a));
    assert!(payments(&a).try_acquire().is_err());
    assert_eq!(payments(&b).state(), CircuitState::Closed);
    payments(&b).try_acquire().unwrap().success();
    eventually(
        "a counts its failed publish",
        Duration::from_secs(5),
        || ha.status().publish_failures >= 1,
    )
    .await;

    redis.restart().await;
    eventually("both reconnect", Duration::from_secs(20), || {
        ha.status().connected && hb.status().connected
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (calls, slowest) = task.await.unwrap();
        assert!(calls > 0);
        assert!(
            slowest < Duration::from_millis(500),
            "a call waited {slowest:?}"
        );
        total += calls;
    }
    // a published its trip again: b converges on it.
    eventually("b takes a's trip", Duration::from_secs(10), || {
        payments(&b).state() == CircuitState::Open
    })
    .await;
    // The restarted server lost everything (no persistence): a published the isolate again, so
    // an instance starting now starts with it.
    let (c, _hc) = instance(&redis.url(), "c").await;
    let ledger_c = c.get_or_create("ledger").unwrap();
    eventually("c reads the isolate", Duration::from_secs(5), || {
        ledger_c.state() == CircuitState::Isolated
    })
    .await;
    println!("{total} calls served while redis-server was killed and restarted; none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_slows_no_call() {
    // Accepts connections and reads what it is sent, never answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut socket, &mut sink).await;
            });
        }
    });
    let registry = CircuitBreakerRegistry::builder()
        .breaker("payments", config())
        .build()
        .unwrap();
    let handle = registry
        .attach_store(
            RedisStateStore::open(&url).unwrap(),
            StoreOptions::default().timeout(Duration::from_secs(2)),
        )
        .unwrap();
    let breaker = payments(&registry);
    let mut slowest = Duration::ZERO;
    for round in 0..200 {
        // Every round publishes two transitions; every call is timed.
        for _ in 0..100 {
            let started = Instant::now();
            let result = breaker.call(|| async { Ok::<_, ()>(()) }).await;
            slowest = slowest.max(started.elapsed());
            assert!(result.is_ok(), "round {round}");
        }
        trip(&breaker);
        let started = Instant::now();
        assert!(breaker.try_acquire().is_err());
        breaker.reset();
        slowest = slowest.max(started.elapsed());
    }
    // A call that waited on the store would wait its one-second timeout.
    assert!(
        slowest < Duration::from_millis(100),
        "slowest call {slowest:?}"
    );
    eventually(
        "the store is reported down",
        Duration::from_secs(10),
        || {
            let status = handle.status();
            !status.connected && status.publish_failures >= 1
        },
    )
    .await;
    assert!(connections.load(Ordering::Relaxed) >= 1, "it did try");
    assert!(!handle.status().synced);
    assert_eq!(registry.snapshot().health(), HealthStatus::Degraded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_are_not_a_breakers_state_are_ignored_with_a_warning() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let store = RedisStateStore::open(&redis.url()).unwrap();
    let key = |name: &str| {
        store.key_of(&BreakerId {
            group: None,
            name: name.into(),
        })
    };
    // Garbage under one key, a hash under the other, an open state with a missing field, and
    // another program's message on the channel.
    redis.command(&["SET", &key("payments"), "{not json"]).await;
    redis
        .command(&["HSET", &key("search"), "state", "open"])
        .await;
    redis
        .command(&["SET", "circuit-breaker:version", "garbage"])
        .await;

    let (a, ha) = instance(&redis.url(), "a").await;
    assert_eq!(payments(&a).state(), CircuitState::Closed);
    assert_eq!(a.get("search").unwrap().state(), CircuitState::Closed);
    assert_eq!(ha.status().invalid_updates, 2, "{:?}", ha.status());

    let channel = store.channel().to_owned();
    redis
        .command(&[
            "PUBLISH",
            &channel,
            r#"{"breaker":"payments","state":"open"}"#,
        ])
        .await;
    eventually("the message is counted", Duration::from_secs(5), || {
        ha.status().invalid_updates == 3
    })
    .await;
    assert_eq!(
        payments(&a).state(),
        CircuitState::Closed,
        "never a wrong state"
    );

    // The keys are written over by the next real update, and sharing works.
    let (b, _hb) = instance(&redis.url(), "b").await;
    trip(&payments(&b));
    b.get("search").unwrap().isolate();
    eventually("a takes b's states", Duration::from_secs(5), || {
        payments(&a).state() == CircuitState::Open
            && a.get("search").unwrap().state() == CircuitState::Isolated
    })
    .await;
}

// ===== two OS processes =====

/// One instance of the example, killed when dropped.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    fn start(binary: &PathBuf, redis: &Redis, instance: &str) -> Self {
        let mut child = Command::new(binary)
            .args(["--redis", &redis.url(), "--instance", instance])
            .args([
                "--addr",
                "127.0.0.1:0",
                "--break",
                "500",
                "--admin-token",
                "t0ken",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Self { child, base: addr }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn request(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut builder = http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(builder.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn eventually_status(what: &str, url: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = request("GET", url, None).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn payments_in_health(body: &str) -> serde_json::Value {
    let health: serde_json::Value = serde_json::from_str(body).unwrap();
    health["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|breaker| breaker["name"] == "payments")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_breaker() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let binary = example::binary("distributed");
    let a = Process::start(&binary, &redis, "a");
    let b = Process::start(&binary, &redis, "b");
    let (pay_a, pay_b) = (format!("{}/pay", a.base), format!("{}/pay", b.base));
    eventually_status("b serves", &pay_b, 200).await;

    // a's upstream fails: a opens after three failures.
    request("POST", &format!("{}/upstream/fail", a.base), None).await;
    for _ in 0..3 {
        assert_eq!(request("GET", &pay_a, None).await.0, 502);
    }
    assert_eq!(request("GET", &pay_a, None).await.0, 503);
    // b rejects without having seen a failure.
    eventually_status("b rejects", &pay_b, 503).await;
    let (_, health) = request("GET", &format!("{}/health", b.base), None).await;
    let on_b = payments_in_health(&health);
    assert_eq!(on_b["failed_calls"], 0, "{on_b}");
    assert_eq!(on_b["state"], "open");

    // a's upstream recovers; after the break a's probe closes it, and b closes too.
    request("POST", &format!("{}/upstream/heal", a.base), None).await;
    eventually_status("a closes", &pay_a, 200).await;
    eventually_status("b closes", &pay_b, 200).await;

    // An isolate from b reaches a.
    let isolate = format!("{}/breakers/payments/isolate", b.base);
    assert_eq!(request("POST", &isolate, Some("t0ken")).await.0, 200);
    eventually_status("a is isolated", &pay_a, 503).await;
    let (_, health) = request("GET", &format!("{}/health", a.base), None).await;
    assert_eq!(payments_in_health(&health)["state"], "isolated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_breakers_are_shared_when_asked_and_stay_local_otherwise() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let instance = |share: bool, name: &'static str| {
        let url = redis.url();
        async move {
            let registry = CircuitBreakerRegistry::builder()
                .default_config(config())
                .build()
                .unwrap();
            // A group name with a colon, as a key might have one too.
            let hosts = registry.keyed("upstream:hosts").build().unwrap();
            let handle = registry
                .attach_store(
                    RedisStateStore::open(&url).unwrap(),
                    StoreOptions::default().instance(name).share_keyed(share),
                )
                .unwrap();
            handle.synced().await;
            (registry, hosts, handle)
        }
    };
    let (_a, hosts_a, _ha) = instance(true, "a").await;
    let (_b, hosts_b, _hb) = instance(true, "b").await;
    let (_c, hosts_c, _hc) = instance(false, "c").await;
    let on_b = hosts_b.get(Some("api.example:443"));
    let on_c = hosts_c.get(Some("api.example:443"));
    trip(&hosts_a.get(Some("api.example:443")));
    eventually("b's key opens", Duration::from_secs(5), || {
        on_b.state() == CircuitState::Open
    })
    .await;
    assert_eq!(
        on_c.state(),
        CircuitState::Closed,
        "c keeps its keyed breakers local"
    );
    // Another key of b's is untouched; a key b makes later reads the shared state.
    assert_eq!(
        hosts_b.get(Some("db.example:5432")).state(),
        CircuitState::Closed
    );
    drop(on_b);
    let (_d, hosts_d, _hd) = instance(true, "d").await;
    let later = hosts_d.get(Some("api.example:443"));
    eventually(
        "a key made later reads its shared state",
        Duration::from_secs(5),
        || later.state() == CircuitState::Open,
    )
    .await;
    let key = redis
        .command(&[
            "EXISTS",
            "circuit-breaker:keyed:14:upstream:hosts:api.example:443",
        ])
        .await;
    assert_eq!(key, redis::Value::Int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_key_holding_something_else_is_written_over_and_updates_still_order() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (a, _ha) = instance(&redis.url(), "a").await;
    let (b, _hb) = instance(&redis.url(), "b").await;
    // Far ahead, not a number Lua keeps whole, not a number at all, another type.
    let values = ["1e300", "inf", "9007199254740993", "-5", "twelve"];
    for (round, value) in values.into_iter().enumerate() {
        redis
            .command(&["SET", "circuit-breaker:version", value])
            .await;
        let (from, to) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        payments(from).isolate();
        eventually(
            &format!("the isolate after `{value}`"),
            Duration::from_secs(5),
            || payments(to).state() == CircuitState::Isolated,
        )
        .await;
        payments(from).reset();
        eventually(
            &format!("the reset after `{value}`"),
            Duration::from_secs(5),
            || payments(to).state() == CircuitState::Closed,
        )
        .await;
    }
    redis.command(&["DEL", "circuit-breaker:version"]).await;
    redis
        .command(&["HSET", "circuit-breaker:version", "not", "a version"])
        .await;
    payments(&a).isolate();
    eventually("the isolate after a hash", Duration::from_secs(5), || {
        payments(&b).state() == CircuitState::Isolated
    })
    .await;
}
