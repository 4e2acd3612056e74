//! One breaker per host over real HTTP: a hyper client behind `KeyedCircuitBreakerLayer`,
//! against two hyper servers on 127.0.0.1 (different ports, so two authorities). A failing host
//! opens its own breaker only; requests to the other host keep going through the same service.
//!
//! The breakers trip on counts (consecutive failures), so nothing waits on time: no sleeps. The
//! break is long (a minute), so no breaker goes half-open while a test runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitOpen, CircuitState, HealthStatus,
    HttpClassifier,
};

const THRESHOLD: u32 = 3;
const BREAK: Duration = Duration::from_secs(60);

fn template() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(THRESHOLD)
        .break_duration(BREAK)
}

/// A group of its own with [`template`] for every host.
fn hosts() -> KeyedBreakers {
    KeyedBreakers::builder("hosts")
        .template(template())
        .build()
        .unwrap()
}

/// A hyper server on a free port of 127.0.0.1 that answers every request with one status and
/// counts the requests that reach it.
struct Host {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Host {
    async fn start(status: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let counter = Arc::clone(&counter);
                        connections.spawn(async move {
                            let service = service_fn(move |_: Request<Incoming>| {
                                counter.fetch_add(1, Ordering::SeqCst);
                                let body = Full::new(Bytes::from(status.as_str().to_owned()));
                                let mut response = Response::new(body);
                                *response.status_mut() = status;
                                async move { Ok::<_, Infallible>(response) }
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                }
            }
            // Closed port from here on (connection refused), and every open connection closed.
            drop(listener);
            connections.shutdown().await;
        });
        Self {
            addr,
            hits,
            stop,
            task,
        }
    }

    /// The breaker key of this host: its authority.
    fn key(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops the server: once this returns, its port refuses connections and every connection
    /// it had is closed.
    async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        self.addr
    }
}

/// A real hyper client behind the keyed layer, keyed by authority, 5xx counted as failures.
fn client(
    group: &KeyedBreakers,
) -> impl Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError> {
    ServiceBuilder::new()
        .layer(KeyedCircuitBreakerLayer::new(group.clone()).classify_with(HttpClassifier::new()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>())
}

/// GET `http://addr/`, the body read to its end: the status, or the service's error.
async fn get<S>(client: &mut S, addr: SocketAddr) -> Result<StatusCode, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError>,
{
    let request = Request::get(format!("http://{addr}/")).body(Empty::new())?;
    let response = client.ready().await?.call(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// Asserts `result` is the open circuit of `key`'s breaker.
fn assert_open(result: Result<StatusCode, BoxError>, key: &str) {
    let err = result.expect_err("the circuit is open");
    let open = err
        .downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("a CircuitOpen rejection, got {err:?}"));
    assert_eq!(open.breaker(), key);
    let retry_after = open.retry_after().expect("open, not isolated");
    assert!(retry_after <= BREAK, "retry_after {retry_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_host_opens_its_own_breaker_and_the_other_host_keeps_answering() {
    let a = Host::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let b = Host::start(StatusCode::OK).await;
    let group = hosts();
    let mut client = client(&group);

    assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    // A's 503s are answers, not errors: the caller sees them, the breaker counts them as
    // failures. B's successes in between are another breaker's and reset nothing of A's.
    for n in 1..=THRESHOLD {
        assert_eq!(
            get(&mut client, a.addr).await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let expected = if n < THRESHOLD {
            CircuitState::Closed
        } else {
            CircuitState::Open
        };
        assert_eq!(group.get(Some(&a.key())).state(), expected, "after {n}");
        assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    }
    assert_eq!(a.hits(), THRESHOLD as usize);
    assert_eq!(b.hits(), 1 + THRESHOLD as usize);

    // A is open: rejected at once, named by its key, without reaching server A.
    for _ in 0..3 {
        assert_open(get(&mut client, a.addr).await, &a.key());
    }
    assert_eq!(a.hits(), THRESHOLD as usize, "nothing more reached host A");

    // B, through the same service, still answers.
    for _ in 0..3 {
        assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    }
    assert_eq!(b.hits(), 4 + THRESHOLD as usize);

    assert_eq!(group.len(), 2);
    let breaker_a = group.get(Some(&a.key()));
    let breaker_b = group.get(Some(&b.key()));
    assert_eq!(breaker_a.state(), CircuitState::Open);
    assert_eq!(breaker_b.state(), CircuitState::Closed);
    let (metrics_a, metrics_b) = (breaker_a.metrics(), breaker_b.metrics());
    assert_eq!(metrics_a.failed_calls, u64::from(THRESHOLD));
    assert_eq!(metrics_a.rejected_open, 3);
    assert_eq!(metrics_a.transitions.to_open, 1);
    assert_eq!(metrics_b.successful_calls, 4 + u64::from(THRESHOLD));
    assert_eq!(metrics_b.failed_calls, 0);
    assert_eq!(metrics_b.rejected_open, 0);
    assert_eq!(metrics_b.transitions.to_open, 0);
    // Every request had a key: nothing went through the no-key or overflow breakers.
    assert_eq!(group.no_key().metrics().total_calls, 0);
    assert_eq!(group.overflow().metrics().total_calls, 0);
    assert_eq!(group.overflowed_calls(), 0);
    assert_eq!(group.len(), 2, "looking the keys up made no new breaker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_answering_opens_only_its_breaker() {
    let a = Host::start(StatusCode::OK).await;
    let b = Host::start(StatusCode::OK).await;
    let group = hosts();
    let mut client = client(&group);

    assert_eq!(get(&mut client, a.addr).await.unwrap(), StatusCode::OK);
    assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    let key_a = a.key();
    let addr_a = a.stop().await;

    // Host A is gone: each request fails in the client (connection refused, or the pooled
    // connection found closed), and each failure counts on A's breaker.
    let mut connect_errors = 0;
    for n in 1..=THRESHOLD {
        let err = get(&mut client, addr_a).await.expect_err("host A is down");
        assert!(
            err.downcast_ref::<CircuitOpen>().is_none(),
            "a client error, not a rejection, before the threshold: {err:?}"
        );
        let client_err = err
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .unwrap_or_else(|| panic!("a hyper client error, got {err:?}"));
        if client_err.is_connect() {
            connect_errors += 1;
        }
        let expected = if n < THRESHOLD {
            CircuitState::Closed
        } else {
            CircuitState::Open
        };
        assert_eq!(group.get(Some(&key_a)).state(), expected, "after {n}");
        assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    }
    assert!(connect_errors >= 1, "connection refused was seen");

    // Open: rejected without trying to connect.
    assert_open(get(&mut client, addr_a).await, &key_a);
    assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);

    assert_eq!(group.len(), 2);
    let breaker_a = group.get(Some(&key_a));
    let breaker_b = group.get(Some(&b.key()));
    assert_eq!(breaker_a.state(), CircuitState::Open);
    assert_eq!(breaker_b.state(), CircuitState::Closed);
    let metrics_a = breaker_a.metrics();
    assert_eq!(metrics_a.successful_calls, 1);
    assert_eq!(metrics_a.failed_calls, u64::from(THRESHOLD));
    assert_eq!(metrics_a.rejected_open, 1);
    assert_eq!(breaker_b.metrics().failed_calls, 0);
    assert_eq!(b.hits(), 2 + THRESHOLD as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_lists_each_host_by_key_and_is_degraded_while_one_is_open() {
    let a = Host::start(StatusCode::SERVICE_UNAVAILABLE).await;
    let b = Host::start(StatusCode::OK).await;
    let registry = CircuitBreakerRegistry::new();
    let group = registry
        .keyed("hosts")
        .template(template())
        .build()
        .unwrap();
    let mut client = client(&group);
    let (key_a, key_b) = (a.key(), b.key());

    assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    assert_eq!(
        get(&mut client, a.addr).await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.health(), HealthStatus::Healthy);

    for _ in 1..THRESHOLD {
        assert_eq!(
            get(&mut client, a.addr).await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_open(get(&mut client, a.addr).await, &key_a);
    assert_eq!(get(&mut client, b.addr).await.unwrap(), StatusCode::OK);
    assert_eq!(a.hits(), THRESHOLD as usize);

    let snapshot = registry.snapshot();
    assert_eq!(snapshot.health(), HealthStatus::Degraded);
    let find = |key: &str| {
        snapshot
            .breakers
            .iter()
            .find(|breaker| &*breaker.name == key)
            .unwrap_or_else(|| panic!("`{key}` in {:?}", snapshot.breakers))
    };
    let (snap_a, snap_b) = (find(&key_a), find(&key_b));
    for snap in [snap_a, snap_b] {
        assert_eq!(snap.group.as_deref(), Some("hosts"));
        assert!(!snap.critical, "a key's breaker is not critical by default");
    }
    assert_eq!(snap_a.metrics.state, CircuitState::Open);
    assert_eq!(snap_a.health(), HealthStatus::Degraded);
    assert_eq!(snap_a.metrics.failed_calls, u64::from(THRESHOLD));
    assert_eq!(snap_a.metrics.rejected_open, 1);
    assert_eq!(snap_b.metrics.state, CircuitState::Closed);
    assert_eq!(snap_b.health(), HealthStatus::Healthy);
    assert_eq!(snap_b.metrics.successful_calls, 2);
    // Every breaker of the group carries its name, and only the group's breakers are listed.
    assert!(snapshot
        .breakers
        .iter()
        .all(|breaker| breaker.group.as_deref() == Some("hosts")));

    assert_eq!(snapshot.keyed.len(), 1);
    let keyed = &snapshot.keyed[0];
    assert_eq!(&*keyed.group, "hosts");
    assert_eq!(keyed.live, 2);
    assert_eq!(group.len(), 2);
}
