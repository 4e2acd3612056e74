//! A flood of a million distinct keys through `KeyedCircuitBreakerLayer`, as keys taken from the
//! network can be: the group stays at its bound, the breakers that were open before the flood
//! are still there and still open, and resident memory does not grow with the number of keys.
//!
//! Alone in its test binary, so the resident memory it reads is this test's only (a test binary
//! runs its tests on threads of one process).

use std::time::{Duration, Instant};

use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitOpen, CircuitState, ManualClock};

const BOUND: usize = 1000;
/// Keys whose breakers are opened before the flood.
const OPEN: u64 = 50;
const FLOOD: u64 = 1_000_000;
/// Keys into the flood at which the steady-state baseline is read: the group has long been
/// full, the map has grown to the size it keeps, and the allocator holds what it reuses.
const WARM: u64 = 100_000;

/// The most resident memory the whole flood may add, from before its first key. What a full
/// group of 1000 breakers takes is well under 2 MiB (931 bytes a breaker with its place in
/// the map, more for the 50 that changed state); measured growth is printed by the test, about
/// 1.5 MiB on Linux/glibc in a debug build. A leak of 16 bytes a key would be 15 MiB.
const MAX_GROWTH: u64 = 8 << 20;
/// The most resident memory the last 900 000 keys may add, once the group is warm (measured: 0):
/// a leak of 3 bytes a key would break this bound.
const MAX_STEADY_GROWTH: u64 = 2 << 20;

fn key(host: u64) -> String {
    format!("host-{host}.example")
}

/// Resident memory of this process, in bytes: `VmRSS` from `/proc/self/status`, which the kernel
/// gives in kB (so no page size is needed). `None` where there is no procfs.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "current_thread")]
async fn a_million_new_keys_through_the_layer_keep_the_bound_the_open_breakers_and_memory() {
    let time = ManualClock::new();
    let group = KeyedBreakers::builder("hosts")
        .template(
            CircuitBreakerConfig::default()
                .failure_threshold(1)
                .break_duration(Duration::from_secs(3600)),
        )
        .max_breakers(BOUND)
        .clock(time)
        .build()
        .unwrap();
    // A request is a host and whether the call to it fails.
    let layer = KeyedCircuitBreakerLayer::with_key(group.clone(), |request: &(u64, bool)| {
        Some(key(request.0))
    });
    let mut service = ServiceBuilder::new().layer(layer).service(service_fn(
        |(host, fails): (u64, bool)| async move {
            if fails {
                Err::<u64, BoxError>("connection refused".into())
            } else {
                Ok(host)
            }
        },
    ));

    // Host n of the first 50: n successes, then a failure opens its breaker. The counts tell it
    // from a breaker made afresh for the same key; holding a clone to compare would keep it
    // from eviction, and hide what this test looks for.
    for host in 0..OPEN {
        for _ in 0..host {
            assert_eq!(
                service
                    .ready()
                    .await
                    .unwrap()
                    .call((host, false))
                    .await
                    .unwrap(),
                host
            );
        }
        service
            .ready()
            .await
            .unwrap()
            .call((host, true))
            .await
            .unwrap_err();
        assert_eq!(group.get(Some(&key(host))).state(), CircuitState::Open);
    }

    let before = resident_bytes();
    let mut warm = None;
    let started = Instant::now();
    for n in 0..FLOOD {
        if n == WARM {
            warm = resident_bytes();
        }
        let host = OPEN + n;
        let reply = service.ready().await.unwrap().call((host, false)).await;
        assert_eq!(reply.unwrap(), host);
        if n % 4096 == 0 {
            assert!(
                group.len() <= BOUND,
                "{} breakers after {n} keys",
                group.len()
            );
        }
    }
    let elapsed = started.elapsed();
    let after = resident_bytes();

    assert_eq!(group.len(), BOUND);
    assert_eq!(
        group.overflowed_calls(),
        0,
        "950 breakers could always go: every key got its own"
    );
    assert_eq!(group.evictions(), OPEN + FLOOD - BOUND as u64);
    for host in 0..OPEN {
        let handle = group.get(Some(&key(host)));
        let metrics = handle.metrics();
        assert_eq!(metrics.state, CircuitState::Open, "{}", key(host));
        assert_eq!(
            metrics.successful_calls,
            host,
            "{}: a new breaker",
            key(host)
        );
        assert_eq!(metrics.failed_calls, 1, "{}: a new breaker", key(host));
    }
    // And they still hold their hosts back.
    for host in 0..OPEN {
        let err = service
            .ready()
            .await
            .unwrap()
            .call((host, false))
            .await
            .unwrap_err();
        assert_eq!(
            err.downcast_ref::<CircuitOpen>().unwrap().breaker(),
            key(host)
        );
    }

    eprintln!("{FLOOD} keys through the layer in {elapsed:?}");
    match (before, warm, after) {
        (Some(before), Some(warm), Some(after)) => {
            let growth = after.saturating_sub(before);
            let steady = after.saturating_sub(warm);
            eprintln!(
                "resident memory: {before} B before, {warm} B after {WARM} keys, {after} B after; \
                 grew {growth} B over the flood (bound {MAX_GROWTH}), {steady} B over the last \
                 {} keys (bound {MAX_STEADY_GROWTH})",
                FLOOD - WARM
            );
            assert!(growth < MAX_GROWTH, "grew {growth} B over the flood");
            assert!(steady < MAX_STEADY_GROWTH, "grew {steady} B once warm");
        }
        _ => eprintln!("no /proc/self/status here: resident memory not measured"),
    }
}
