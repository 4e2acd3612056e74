//! Keyed breakers: the bound and the clock algorithm's eviction, breakers never evicted (open,
//! half-open, isolated, held, in flight), the overflow and no-key breakers, eviction under
//! concurrency, keys taken from HTTP requests (`ByAuthority`), the overflow warning, and groups
//! in a registry (config per key, snapshot, health, refused settings).
//!
//! A breaker is told from a fresh one of the same key by a fingerprint of counts made before a
//! flood of new keys, not by a clone kept aside: a clone held elsewhere keeps its breaker from
//! eviction, so keeping one would hide the very eviction the test looks for.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_circuit_breaker::config::MAX_FAILURE_THRESHOLD;
use tower_circuit_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer, MAX_KEY_LEN};
use tower_circuit_breaker::registry::{BreakerSettings, HealthStatus};
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitOpen, CircuitState, Clock, ManualClock,
    Outcome,
};

const OVERFLOW: &str = "<overflow>";
const NO_KEY: &str = "<no key>";

/// A config whose first failure opens the circuit, for an hour.
fn trips_at_once() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(1)
        .break_duration(Duration::from_secs(3600))
}

/// A config that never opens, whatever fails.
fn never_trips() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default().failure_threshold(MAX_FAILURE_THRESHOLD)
}

/// The keys that have a breaker now (not the overflow and no-key breakers). Holds no breaker
/// once it returns.
fn live_keys(group: &KeyedBreakers) -> BTreeSet<String> {
    let breakers = group.breakers();
    let keyed = breakers.len() - 2;
    assert_eq!(breakers[keyed].0.name(), OVERFLOW);
    assert_eq!(breakers[keyed + 1].0.name(), NO_KEY);
    breakers[..keyed]
        .iter()
        .map(|(breaker, _)| breaker.name().to_owned())
        .collect()
}

/// One successful call for each of `keys`, each through a handle dropped at once.
fn touch<'a>(group: &KeyedBreakers, keys: impl IntoIterator<Item = &'a str>) {
    for key in keys {
        let handle = group.get(Some(key));
        handle.try_acquire().unwrap().success();
        assert!(group.len() <= group.max_breakers());
    }
}

/// One successful call for each of `count` keys never seen before (`{prefix}-{n}`).
fn flood(group: &KeyedBreakers, prefix: &str, count: usize) {
    for n in 0..count {
        let key = format!("{prefix}-{n}");
        let handle = group.get(Some(&key));
        if let Ok(permit) = handle.try_acquire() {
            permit.success();
        }
        drop(handle);
        assert!(group.len() <= group.max_breakers(), "after {key}");
    }
}

/// Makes `key`'s breaker with `successes` successes and then one failure: open, under
/// [`trips_at_once`], and told apart from a fresh breaker by its counts.
fn open_with_fingerprint(group: &KeyedBreakers, key: &str, successes: u64) {
    let handle = group.get(Some(key));
    for _ in 0..successes {
        handle.try_acquire().unwrap().success();
    }
    handle.try_acquire().unwrap().failure();
    assert_eq!(handle.state(), CircuitState::Open, "{key}");
}

/// Asserts that `key`'s breaker is the one [`open_with_fingerprint`] made, in `state`.
fn assert_fingerprint(group: &KeyedBreakers, key: &str, successes: u64, state: CircuitState) {
    let handle = group.get(Some(key));
    assert_eq!(handle.name(), key);
    let metrics = handle.metrics();
    assert_eq!(metrics.state, state, "{key}");
    assert_eq!(
        metrics.successful_calls, successes,
        "{key}: not its first breaker"
    );
    assert_eq!(metrics.failed_calls, 1, "{key}: not its first breaker");
}

// ===== the bound and the clock algorithm =====

#[test]
fn a_new_key_in_a_full_group_takes_the_place_of_an_idle_closed_breaker() {
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(3)
        .build()
        .unwrap();
    assert!(group.is_empty());
    touch(&group, ["a", "b", "c"]);
    assert_eq!(group.len(), 3);
    assert_eq!(group.evictions(), 0);
    assert_eq!(
        live_keys(&group),
        BTreeSet::from(["a", "b", "c"].map(String::from))
    );

    let d = group.get(Some("d"));
    assert_eq!(d.name(), "d", "a key of its own, not the overflow breaker");
    drop(d);
    assert_eq!(group.len(), 3);
    assert_eq!(group.evictions(), 1);
    assert_eq!(group.overflowed_calls(), 0);
    let live = live_keys(&group);
    assert!(live.contains("d"));
    let evicted: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|key| !live.contains(*key))
        .collect();
    assert_eq!(evicted.len(), 1, "{live:?}");

    // The evicted key's breaker went with its counts: asking for it again makes a fresh one,
    // in the place of another idle breaker.
    let again = group.get(Some(evicted[0]));
    assert_eq!(again.metrics().total_calls, 0);
    drop(again);
    assert_eq!(group.len(), 3);
    assert_eq!(group.evictions(), 2);

    let snapshot = group.snapshot();
    assert_eq!(snapshot.live, 3);
    assert_eq!(snapshot.evictions, 2);
    assert_eq!(snapshot.max_breakers, 3);
}

#[test]
fn a_key_used_again_outlives_keys_used_once() {
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(3)
        .build()
        .unwrap();
    touch(&group, ["a", "b", "c"]);
    // Used a second time: the hand passes over it once. Had the first use of b and c marked
    // them too, the hand would clear all three and come back round to `a`.
    touch(&group, ["a"]);
    touch(&group, ["d"]);
    let live = live_keys(&group);
    assert!(live.contains("a"), "{live:?}");
    assert!(live.contains("d"), "{live:?}");
    assert_eq!(live.len(), 3);

    // A hot key survives a stream of keys seen once, and keeps its counts.
    for round in 0..50 {
        touch(&group, ["a"]);
        touch(&group, [format!("once-{round}").as_str()]);
        assert!(live_keys(&group).contains("a"), "round {round}");
    }
    assert_eq!(group.get(Some("a")).metrics().successful_calls, 52);
    assert_eq!(group.evictions(), 51);
    assert_eq!(group.len(), 3);
}

#[test]
fn lookup_finds_a_keys_breaker_and_never_makes_evicts_or_overflows() {
    let group = KeyedBreakers::builder("hosts")
        .template(trips_at_once())
        .max_breakers(2)
        .build()
        .unwrap();
    assert!(group.lookup("a").is_none(), "no breaker made by a lookup");
    assert_eq!(group.len(), 0);
    open_with_fingerprint(&group, "a", 2);
    touch(&group, ["b"]);
    // Found, the same breaker, and acting on it acts on the group's.
    let found = group.lookup("a").expect("a has a breaker");
    assert!(found.ptr_eq(&group.get(Some("a"))));
    drop(found);
    // A full group: a lookup of a new key evicts nothing and answers with no overflow breaker.
    assert!(group.lookup("c").is_none());
    assert_eq!(live_keys(&group), ["a", "b"].map(str::to_owned).into());
    assert_eq!((group.evictions(), group.overflowed_calls()), (0, 0));
    // `reset` through a lookup frees an open key's place.
    group.lookup("a").unwrap().reset();
    touch(&group, ["c", "d"]);
    assert!(
        group.lookup("a").is_none(),
        "a was closed and idle, so evicted"
    );
}

/// A breaker disabled by hand is evictable like a closed one; one isolated by hand is not.
#[test]
fn a_disabled_breaker_is_evictable_and_an_isolated_one_is_not() {
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(2)
        .build()
        .unwrap();
    touch(&group, ["disabled", "isolated"]);
    group.lookup("disabled").unwrap().disable();
    group.lookup("isolated").unwrap().isolate();
    flood(&group, "new", 10);
    assert!(group.lookup("disabled").is_none());
    assert_eq!(
        group.lookup("isolated").unwrap().state(),
        CircuitState::Isolated
    );
}

/// A registry's subscriber tells a key's transition from a named breaker's of the same name.
#[test]
fn a_keys_transitions_name_its_group() {
    let registry = CircuitBreakerRegistry::builder()
        .default_config(trips_at_once())
        .breaker("api", trips_at_once())
        .build()
        .unwrap();
    let hosts = registry.keyed("hosts").build().unwrap();
    let mut transitions = registry.subscribe();
    hosts.get(Some("api")).try_acquire().unwrap().failure();
    registry
        .get("api")
        .unwrap()
        .try_acquire()
        .unwrap()
        .failure();
    let keyed = transitions.try_recv().unwrap();
    let named = transitions.try_recv().unwrap();
    assert_eq!(
        (keyed.breaker.as_ref(), keyed.group.as_deref()),
        ("api", Some("hosts"))
    );
    assert_eq!(
        (named.breaker.as_ref(), named.group.as_deref()),
        ("api", None)
    );
    assert!(
        keyed
            .to_string()
            .starts_with("breaker `api` of `hosts`: closed -> open"),
        "{keyed}"
    );
    assert!(
        named
            .to_string()
            .starts_with("breaker `api`: closed -> open"),
        "{named}"
    );
}

#[test]
fn a_bound_of_one_still_holds_and_still_admits() {
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(1)
        .build()
        .unwrap();
    flood(&group, "key", 100);
    assert_eq!(group.len(), 1);
    assert_eq!(group.evictions(), 99);
    assert_eq!(group.overflowed_calls(), 0);
    assert_eq!(live_keys(&group), BTreeSet::from(["key-99".to_owned()]));
}

// ===== breakers that are never evicted =====

#[test]
fn open_half_open_and_isolated_breakers_are_never_evicted_and_a_full_group_overflows() {
    let time = ManualClock::new();
    let group = KeyedBreakers::builder("hosts")
        .template(trips_at_once())
        .key(
            "half",
            trips_at_once().break_duration(Duration::from_secs(1)),
        )
        .clock(time.clone())
        .max_breakers(6)
        .build()
        .unwrap();

    for (n, key) in ["open-1", "open-2", "open-3"].into_iter().enumerate() {
        open_with_fingerprint(&group, key, n as u64 + 1);
    }
    open_with_fingerprint(&group, "iso", 4);
    group.get(Some("iso")).isolate();
    open_with_fingerprint(&group, "half", 5);
    time.advance(Duration::from_secs(1));
    assert_eq!(group.get(Some("half")).state(), CircuitState::HalfOpen);
    touch(&group, ["idle"]);
    assert_eq!(group.len(), 6);

    // Only one breaker can go: each new key takes its place in turn.
    flood(&group, "new", 200);
    assert_eq!(group.len(), 6);
    assert_eq!(group.evictions(), 200);
    assert_eq!(group.overflowed_calls(), 0);
    let expected = [
        ("open-1", 1, CircuitState::Open),
        ("open-2", 2, CircuitState::Open),
        ("open-3", 3, CircuitState::Open),
        ("iso", 4, CircuitState::Isolated),
        ("half", 5, CircuitState::HalfOpen),
    ];
    for (key, successes, state) in expected {
        assert_fingerprint(&group, key, successes, state);
    }
    assert_eq!(
        live_keys(&group),
        ["half", "iso", "new-199", "open-1", "open-2", "open-3"]
            .map(String::from)
            .into(),
    );

    // The last closed one opens: nothing can be evicted, so new keys share the overflow
    // breaker, and the group stays at its bound.
    open_with_fingerprint(&group, "new-199", 1);
    for n in 0..500 {
        let key = format!("late-{n}");
        let handle = group.get(Some(&key));
        assert_eq!(handle.name(), OVERFLOW);
        assert!(handle.ptr_eq(&group.overflow()));
        handle.try_acquire().unwrap().success();
        drop(handle);
        assert_eq!(group.len(), 6);
    }
    assert_eq!(group.overflowed_calls(), 500);
    assert_eq!(group.evictions(), 200);
    assert_eq!(group.overflow().metrics().successful_calls, 500);
    assert_eq!(group.snapshot().overflowed_calls, 500);
    for (key, successes, state) in expected {
        assert_fingerprint(&group, key, successes, state);
    }
    assert!(!live_keys(&group).iter().any(|key| key.starts_with("late-")));

    // Once one is closed again, new keys soon get breakers of their own again.
    group.get(Some("iso")).reset();
    let max = group.max_breakers();
    let own = (0..2 * max + 2).find(|n| {
        let key = format!("after-{n}");
        group.get(Some(&key)).name() == key
    });
    assert!(
        own.is_some(),
        "still overflowing after {} new keys",
        2 * max + 2
    );
    assert!(!live_keys(&group).contains("iso"));
    assert_eq!(group.len(), 6);
}

#[test]
fn a_breaker_with_a_handle_or_a_permit_held_is_not_evicted_and_its_outcome_lands_on_it() {
    let group = KeyedBreakers::builder("hosts")
        .template(trips_at_once())
        .max_breakers(3)
        .build()
        .unwrap();

    // A permit on A, and a handle alone on B.
    let a = group.get(Some("A"));
    let permit = a.try_acquire().unwrap();
    let b = group.get(Some("B"));
    flood(&group, "new", 1000);
    assert_eq!(group.len(), 3);
    assert_eq!(group.overflowed_calls(), 0, "one breaker could always go");
    let live = live_keys(&group);
    assert!(live.contains("A") && live.contains("B"), "{live:?}");
    assert!(group.get(Some("A")).ptr_eq(&a));
    assert!(group.get(Some("B")).ptr_eq(&b));

    // Recorded after the flood, the failure is the breaker's that A has.
    permit.record(Outcome::Failure);
    let now = group.get(Some("A"));
    assert!(now.ptr_eq(&a));
    assert_eq!(now.metrics().failed_calls, 1);
    assert_eq!(now.state(), CircuitState::Open);
    drop(now);
    // Open: A stays now that nothing holds it. B, closed and let go, can go.
    drop((a, b));
    flood(&group, "again", 10);
    let live = live_keys(&group);
    assert!(live.contains("A"), "{live:?}");
    assert!(!live.contains("B"), "{live:?}");
    assert_eq!(group.get(Some("B")).metrics().total_calls, 0);
}

#[test]
fn a_closed_breaker_goes_once_its_handle_is_dropped() {
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(3)
        .build()
        .unwrap();
    let a = group.get(Some("A"));
    a.try_acquire().unwrap().success();
    flood(&group, "new", 100);
    assert!(live_keys(&group).contains("A"));
    drop(a);
    flood(&group, "later", 10);
    assert!(!live_keys(&group).contains("A"));
    assert_eq!(
        group.get(Some("A")).metrics().total_calls,
        0,
        "a fresh breaker"
    );
}

#[test]
fn a_clone_of_a_breaker_kept_elsewhere_keeps_it_in_the_group() {
    let group = KeyedBreakers::builder("hosts")
        .template(trips_at_once())
        .max_breakers(3)
        .build()
        .unwrap();
    let kept = group.get(Some("A")).breaker().clone();
    flood(&group, "new", 100);
    assert!(live_keys(&group).contains("A"));
    // What the clone records is what A's key shows.
    kept.try_acquire().unwrap().failure();
    assert!(group.get(Some("A")).ptr_eq(&kept));
    assert_eq!(group.get(Some("A")).state(), CircuitState::Open);
}

/// Many threads calling through one layer, with more keys than the bound: while a call is in
/// flight (inside the inner service, its permit held by the response future), its key always
/// has a breaker, through every yield, however the other calls evict; and the live breakers
/// never outnumber the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_in_flight_through_the_layer_on_many_threads_keep_their_keys_breakers() {
    const BOUND: usize = 50;
    const KEYS: usize = 150;
    let group = KeyedBreakers::builder("hosts")
        .template(never_trips())
        .max_breakers(BOUND)
        .build()
        .unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let inner = {
        let (group, checks) = (group.clone(), checks.clone());
        service_fn(move |key: String| {
            let (group, checks) = (group.clone(), checks.clone());
            async move {
                for _ in 0..3 {
                    // Dropped at once: the lookup itself keeps nothing from eviction.
                    assert!(group.lookup(&key).is_some(), "{key} evicted mid-call");
                    assert!(group.len() <= BOUND);
                    checks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
                if key.ends_with('7') {
                    Err::<String, BoxError>("upstream error".into())
                } else {
                    Ok(key)
                }
            }
        })
    };
    let service = ServiceBuilder::new()
        .layer(KeyedCircuitBreakerLayer::with_key(
            group.clone(),
            |key: &String| Some(key.clone()),
        ))
        .service(inner);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let mut service = service.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                for call in 0..400 {
                    let key = format!("host-{}", (call * 7 + task * 13) % KEYS);
                    let ready = service.ready().await.unwrap();
                    match ready.call(key.clone()).await {
                        Ok(answer) => assert_eq!(answer, key),
                        Err(error) => assert_eq!(error.to_string(), "upstream error"),
                    }
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.expect("no assertion failed in a call");
    }
    assert_eq!(answered, 8 * 400);
    assert_eq!(checks.load(Ordering::Relaxed), 3 * 8 * 400);
    assert!(group.len() <= BOUND);
    assert!(group.evictions() > 0, "the keys outnumber the bound");
    assert_eq!(
        group.overflowed_calls(),
        0,
        "never trips, so always evictable in time"
    );
}

#[tokio::test]
async fn a_call_in_flight_through_the_layer_keeps_its_breaker_through_a_flood() {
    let group = KeyedBreakers::builder("hosts")
        .template(trips_at_once())
        .max_breakers(4)
        .build()
        .unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let inner = {
        let (release, started) = (release.clone(), started.clone());
        service_fn(move |request: String| {
            let (release, started) = (release.clone(), started.clone());
            async move {
                if request == "slow" {
                    started.notify_one();
                    release.notified().await;
                    return Err::<String, BoxError>("connection reset".into());
                }
                Ok(request)
            }
        })
    };
    let mut service = ServiceBuilder::new()
        .layer(KeyedCircuitBreakerLayer::with_key(
            group.clone(),
            |request: &String| Some(request.clone()),
        ))
        .service(inner);

    let slow = tokio::spawn(service.clone().oneshot("slow".to_owned()));
    started.notified().await;
    for n in 0..1000 {
        let key = format!("host-{n}");
        let reply = service.ready().await.unwrap().call(key.clone()).await;
        assert_eq!(reply.unwrap(), key);
        assert!(group.len() <= 4);
    }
    assert!(live_keys(&group).contains("slow"));
    assert_eq!(group.overflowed_calls(), 0);

    release.notify_one();
    slow.await.unwrap().unwrap_err();
    let handle = group.get(Some("slow"));
    assert_eq!(handle.metrics().failed_calls, 1);
    assert_eq!(handle.state(), CircuitState::Open);
    drop(handle);

    // Open, it rejects through the layer with its own name.
    let err = service
        .ready()
        .await
        .unwrap()
        .call("slow".to_owned())
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().breaker(), "slow");
}

// ===== eviction under concurrency =====

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_breaker_is_evicted_while_a_call_on_it_is_in_flight_on_many_threads() {
    const KEYS: usize = 300;
    const BOUND: usize = 100;
    const TASKS: u64 = 8;
    const CALLS: usize = 3000;

    let group = KeyedBreakers::builder("hosts")
        .template(never_trips())
        .max_breakers(BOUND)
        .build()
        .unwrap();
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|n| format!("host-{n}")).collect());
    let done = Arc::new(AtomicBool::new(false));

    let watcher = {
        let (group, done) = (group.clone(), done.clone());
        tokio::spawn(async move {
            let mut checks = 0_u64;
            while !done.load(Ordering::Acquire) {
                assert!(group.len() <= BOUND);
                checks += 1;
                tokio::task::yield_now().await;
            }
            checks
        })
    };

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (group, keys) = (group.clone(), keys.clone());
            tokio::spawn(async move {
                // Each task ranges over 150 of the 300 keys, overlapping its neighbours'.
                let mut state = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut recorded = 0_usize;
                for call in 0..CALLS {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let index = (task as usize * 37 + (state % 150) as usize) % KEYS;
                    let key = keys[index].as_str();
                    let handle = group.get(Some(key));
                    assert_eq!(handle.name(), key, "never the overflow breaker here");
                    let before = handle.metrics();
                    let permit = handle.try_acquire().unwrap();
                    tokio::task::yield_now().await;
                    assert!(
                        group.get(Some(key)).ptr_eq(&handle),
                        "{key} was evicted with a call in flight"
                    );
                    let failure = call % 3 == 0;
                    permit.record(if failure {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    });
                    tokio::task::yield_now().await;
                    let now = group.get(Some(key));
                    assert!(now.ptr_eq(&handle), "{key} was evicted while held");
                    let after = now.metrics();
                    if failure {
                        assert!(after.failed_calls > before.failed_calls, "{key}");
                    } else {
                        assert!(after.successful_calls > before.successful_calls, "{key}");
                    }
                    recorded += 1;
                }
                recorded
            })
        })
        .collect();

    let mut recorded = 0;
    for task in tasks {
        recorded += task.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let checks = watcher.await.unwrap();
    assert_eq!(recorded, TASKS as usize * CALLS);
    assert!(checks > 0);
    assert!(group.len() <= BOUND);
    assert!(
        group.evictions() > 0,
        "the test must evict to mean anything"
    );
    assert_eq!(group.overflowed_calls(), 0);
    eprintln!(
        "{recorded} calls, {} evictions, {checks} bound checks",
        group.evictions()
    );
}

#[test]
fn snapshots_taken_while_new_keys_arrive_send_no_call_to_the_overflow_breaker() {
    // Health checks and metrics scrapes read every breaker while calls go on: reading must not
    // change where calls go. Every breaker here is idle and closed, so each new key can always
    // take an idle breaker's place.
    const BOUND: usize = 100;
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(BOUND)
        .build()
        .unwrap();
    flood(&group, "warm", BOUND);
    let snapshots = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let snapshot = group.snapshot();
                assert!(snapshot.live <= BOUND);
                snapshots.fetch_add(1, Ordering::Release);
            }
        });
        // Waits on the reader only while it runs: should it panic, the scope reports it.
        let reading = || !reader.is_finished();
        while snapshots.load(Ordering::Acquire) == 0 && reading() {
            std::thread::yield_now();
        }
        let mut n = 0;
        while n < 20_000 || (snapshots.load(Ordering::Acquire) < 50 && reading()) {
            flood_one(&group, &format!("new-{n}"));
            n += 1;
        }
        done.store(true, Ordering::Release);
    });
    eprintln!(
        "{} snapshots, {} evictions, {} overflowed",
        snapshots.load(Ordering::Acquire),
        group.evictions(),
        group.overflowed_calls()
    );
    assert_eq!(
        group.overflowed_calls(),
        0,
        "calls for new keys overflowed while a snapshot held every breaker"
    );
}

/// One successful call for `key`.
fn flood_one(group: &KeyedBreakers, key: &str) {
    let handle = group.get(Some(key));
    handle.try_acquire().unwrap().success();
}

// ===== keys that are not keys =====

#[test]
fn empty_and_overlong_keys_go_to_the_no_key_breaker() {
    let group = KeyedBreakers::builder("hosts").build().unwrap();
    let longest = "a".repeat(MAX_KEY_LEN);
    let too_long = "a".repeat(MAX_KEY_LEN + 1);
    let huge = "h".repeat(64 * 1024);
    for key in [None, Some(""), Some(too_long.as_str()), Some(huge.as_str())] {
        let handle = group.get(key);
        assert_eq!(handle.name(), NO_KEY);
        assert!(handle.ptr_eq(&group.no_key()));
    }
    assert_eq!(group.get(Some(&longest)).name(), longest);
    assert_eq!(group.len(), 1);
}

#[tokio::test]
async fn a_closure_key_through_the_layer_picks_the_breaker_and_none_means_no_key() {
    let group = KeyedBreakers::builder("tenants")
        .template(trips_at_once())
        .build()
        .unwrap();
    let layer = KeyedCircuitBreakerLayer::with_key(group.clone(), |request: &String| {
        request.split_once('/').map(|(tenant, _)| tenant.to_owned())
    });
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|request: String| async move {
                if request.ends_with("/fail") {
                    Err::<String, BoxError>("boom".into())
                } else {
                    Ok(request)
                }
            }));
    let call = |request: &str| service.clone().oneshot(request.to_owned());
    call("acme/fail").await.unwrap_err();
    // One tenant open, the others unaffected.
    assert_eq!(call("globex/ok").await.unwrap(), "globex/ok");
    let err = call("acme/ok").await.unwrap_err();
    assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().breaker(), "acme");
    assert_eq!(call("no-slash").await.unwrap(), "no-slash");
    assert_eq!(group.no_key().metrics().successful_calls, 1);
    assert_eq!(group.len(), 2);
}

#[cfg(feature = "http")]
mod by_authority {
    use super::*;
    use http::{HeaderValue, Request};
    use tower_circuit_breaker::keyed::{ByAuthority, KeyFor};

    fn key(request: &Request<()>) -> Option<String> {
        ByAuthority::default()
            .key(request)
            .map(std::borrow::Cow::into_owned)
    }

    fn with_host(host: HeaderValue) -> Request<()> {
        Request::builder()
            .uri("/path")
            .header(http::header::HOST, host)
            .body(())
            .unwrap()
    }

    #[test]
    fn the_key_is_the_authority_or_the_host_header_lowercased_without_credentials() {
        let uri = |uri: &str| Request::builder().uri(uri).body(()).unwrap();
        let host = |host: &'static str| with_host(HeaderValue::from_static(host));
        assert_eq!(
            key(&uri("http://api.example.com/x")).unwrap(),
            "api.example.com"
        );
        assert_eq!(
            key(&uri("https://API.Example.COM:8443/x")).unwrap(),
            "api.example.com:8443"
        );
        assert_eq!(
            key(&uri("http://user:secret@db.example.com:5432/x")).unwrap(),
            "db.example.com:5432"
        );
        assert_eq!(key(&uri("http://[::1]:8080/")).unwrap(), "[::1]:8080");
        assert_eq!(key(&host("Backend.Internal")).unwrap(), "backend.internal");
        assert_eq!(
            key(&host("backend.internal:81")).unwrap(),
            "backend.internal:81"
        );
        // The URI's authority wins over the header.
        let both = Request::builder()
            .uri("http://from-uri.example/")
            .header(http::header::HOST, "from-header.example")
            .body(())
            .unwrap();
        assert_eq!(key(&both).unwrap(), "from-uri.example");
        // Credentials never become a key, from the header either.
        assert_eq!(
            key(&host("user:secret@Cache.Example")).as_deref(),
            Some("cache.example")
        );
    }

    #[test]
    fn requests_without_a_usable_authority_have_no_key() {
        let cases: Vec<(&str, Request<()>)> = vec![
            (
                "no authority, no Host",
                Request::builder().uri("/path").body(()).unwrap(),
            ),
            ("empty Host", with_host(HeaderValue::from_static(""))),
            (
                "64 KiB Host",
                with_host(HeaderValue::from_str(&"h".repeat(64 * 1024)).unwrap()),
            ),
            (
                "a Host one byte too long",
                with_host(HeaderValue::from_str(&"h".repeat(MAX_KEY_LEN + 1)).unwrap()),
            ),
            (
                "non-UTF-8 Host",
                with_host(HeaderValue::from_bytes(&[0xff, 0xfe, b'a']).unwrap()),
            ),
            (
                "Latin-1 Host",
                with_host(HeaderValue::from_bytes(b"caf\xe9.example").unwrap()),
            ),
            (
                "a Host with a space",
                with_host(HeaderValue::from_static("exa mple.com")),
            ),
            (
                "a Host with a path",
                with_host(HeaderValue::from_static("example.com/admin")),
            ),
        ];
        for (case, request) in &cases {
            assert_eq!(key(request), None, "{case}");
        }
    }

    #[tokio::test]
    async fn bad_authorities_through_the_layer_meet_the_no_key_breaker_and_nothing_panics() {
        let group = KeyedBreakers::builder("hosts").build().unwrap();
        let mut service = ServiceBuilder::new()
            .layer(KeyedCircuitBreakerLayer::new(group.clone()))
            .service(service_fn(|_: Request<()>| async {
                Ok::<_, BoxError>("ok")
            }));
        let bad = [
            Request::builder().uri("/").body(()).unwrap(),
            with_host(HeaderValue::from_static("")),
            with_host(HeaderValue::from_str(&"h".repeat(64 * 1024)).unwrap()),
            with_host(HeaderValue::from_bytes(&[0xff, 0xc3, 0x28]).unwrap()),
            with_host(HeaderValue::from_static("a b")),
        ];
        let count = bad.len() as u64;
        for request in bad {
            assert_eq!(
                service.ready().await.unwrap().call(request).await.unwrap(),
                "ok"
            );
        }
        assert_eq!(group.no_key().metrics().successful_calls, count);
        assert!(group.is_empty());

        let good = [
            Request::builder()
                .uri("http://user:pass@Shop.Example:8080/cart")
                .body(())
                .unwrap(),
            with_host(HeaderValue::from_static("SHOP.example:8080")),
        ];
        for request in good {
            service.ready().await.unwrap().call(request).await.unwrap();
        }
        assert_eq!(
            live_keys(&group),
            BTreeSet::from(["shop.example:8080".to_owned()])
        );
        assert_eq!(
            group
                .get(Some("shop.example:8080"))
                .metrics()
                .successful_calls,
            2
        );
        let names = group.snapshot().breakers;
        assert!(names.iter().all(|breaker| !breaker.name.contains("pass")));
    }
}

// ===== the overflow warning =====

/// Counts WARN events and keeps the fields of the first one.
#[derive(Clone, Default)]
struct Warnings {
    count: Arc<AtomicUsize>,
    first: Arc<Mutex<Vec<(String, String)>>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN
            && self.count.fetch_add(1, Ordering::Relaxed) == 0
        {
            event.record(&mut Fields(&mut self.first.lock().unwrap()));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_thousand_overflowed_calls_log_one_warning() {
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(3)
        .build()
        .unwrap();
    // Every breaker busy with a call: pinned without a transition to log.
    let held: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|key| group.get(Some(key)))
        .collect();
    let warnings = Warnings::default();
    tracing::subscriber::with_default(warnings.clone(), || {
        flood(&group, "new", 1000);
    });
    assert_eq!(group.overflowed_calls(), 1000);
    assert_eq!(warnings.count.load(Ordering::Relaxed), 1);
    let fields = warnings.first.lock().unwrap().clone();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(field("group").as_deref(), Some("hosts"));
    assert_eq!(field("max_breakers").as_deref(), Some("3"));
    assert!(field("message").unwrap().contains("overflow"), "{fields:?}");
    drop(held);
}

#[test]
fn the_overflow_warning_repeats_once_the_group_clock_passes_a_minute() {
    let time = ManualClock::new();
    let group = KeyedBreakers::builder("hosts")
        .max_breakers(2)
        .clock(time.clone())
        .build()
        .unwrap();
    let held = (group.get(Some("a")), group.get(Some("b")));
    let warnings = Warnings::default();
    tracing::subscriber::with_default(warnings.clone(), || {
        flood(&group, "new", 100);
        assert_eq!(warnings.count.load(Ordering::Relaxed), 1);
        time.advance(Duration::from_secs(59));
        flood(&group, "later", 100);
        assert_eq!(
            warnings.count.load(Ordering::Relaxed),
            1,
            "within the minute"
        );
        time.advance(Duration::from_secs(1));
        flood(&group, "next-minute", 100);
        assert_eq!(
            warnings.count.load(Ordering::Relaxed),
            2,
            "a minute on the group's clock later, the overflow is logged again"
        );
    });
    assert_eq!(group.overflowed_calls(), 300);
    drop(held);
}

// ===== in a registry =====

#[test]
fn a_registry_group_takes_per_name_settings_and_shows_in_the_snapshot_and_health() {
    let time = ManualClock::new();
    let registry = CircuitBreakerRegistry::builder()
        .default_config(trips_at_once())
        .breaker(
            "payments.internal",
            BreakerSettings::new(CircuitBreakerConfig::default().failure_threshold(1))
                .critical(true),
        )
        .clock(Clock::manual(&time))
        .build()
        .unwrap();
    let mut transitions = registry.subscribe();
    let hosts = registry.keyed("hosts").max_breakers(10).build().unwrap();
    assert_eq!(registry.keyed_groups().len(), 1);
    assert_eq!(hosts.group(), "hosts");
    assert_eq!(hosts.max_breakers(), 10);
    touch(&hosts, ["a.example", "b.example"]);
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);

    let payments = hosts.get(Some("payments.internal"));
    assert!(payments.is_critical());
    assert_eq!(payments.config().failure_threshold, 1);
    assert!(!payments.ptr_eq(&registry.get("payments.internal").unwrap()));
    drop(payments);
    assert!(!hosts.get(Some("a.example")).is_critical());

    // A non-critical key open: degraded.
    hosts
        .get(Some("a.example"))
        .try_acquire()
        .unwrap()
        .failure();
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.health(), HealthStatus::Degraded);
    let transition = transitions.try_recv().unwrap();
    assert_eq!(
        (transition.breaker.as_ref(), transition.to),
        ("a.example", CircuitState::Open)
    );

    let keyed: Vec<_> = snapshot
        .breakers
        .iter()
        .filter(|breaker| breaker.group.as_deref() == Some("hosts"))
        .collect();
    let names: BTreeSet<&str> = keyed.iter().map(|breaker| breaker.name.as_ref()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "a.example",
            "b.example",
            "payments.internal",
            OVERFLOW,
            NO_KEY
        ])
    );
    let named = snapshot
        .breakers
        .iter()
        .find(|breaker| breaker.group.is_none())
        .unwrap();
    assert_eq!(named.name.as_ref(), "payments.internal");
    let group = &snapshot.keyed[0];
    assert_eq!(group.group.as_ref(), "hosts");
    assert_eq!(group.live, 3);
    assert_eq!(group.max_breakers, 10);
    let count = |state| group.by_state.get(state);
    assert_eq!(group.by_state.total(), 5);
    assert_eq!(count(CircuitState::Open), 1);
    assert_eq!(count(CircuitState::Closed), 4, "two keys, overflow, no key");
    assert_eq!(count(CircuitState::HalfOpen), 0);

    // The critical key open: unhealthy. Its break is the default 30 s, the registry's clock.
    hosts
        .get(Some("payments.internal"))
        .try_acquire()
        .unwrap()
        .failure();
    assert_eq!(registry.snapshot().health(), HealthStatus::Unhealthy);
    let critical = registry
        .snapshot()
        .breakers
        .into_iter()
        .find(|breaker| breaker.group.is_some() && breaker.name.as_ref() == "payments.internal")
        .unwrap();
    assert!(critical.critical);
    assert_eq!(critical.health(), HealthStatus::Unhealthy);
    time.advance(Duration::from_secs(30));
    assert_eq!(
        hosts.get(Some("payments.internal")).state(),
        CircuitState::HalfOpen
    );
    // Half-open, even a critical breaker only degrades (`a.example` is still open for an hour).
    assert_eq!(registry.snapshot().health(), HealthStatus::Degraded);
    let half_open = registry.snapshot().keyed[0]
        .by_state
        .get(CircuitState::HalfOpen);
    assert_eq!(half_open, 1);
}

#[test]
fn a_disabled_registry_makes_disabled_keyed_breakers() {
    let registry = CircuitBreakerRegistry::builder()
        .enabled(false)
        .default_config(trips_at_once())
        .build()
        .unwrap();
    let hosts = registry.keyed("hosts").build().unwrap();
    let handle = hosts.get(Some("a.example"));
    for _ in 0..10 {
        handle.try_acquire().unwrap().failure();
    }
    assert_eq!(handle.state(), CircuitState::Disabled);
    drop(handle);
    assert_eq!(registry.snapshot().health(), HealthStatus::Healthy);
}

#[test]
fn refused_settings_name_their_field() {
    let registry = CircuitBreakerRegistry::new();
    registry.keyed("hosts").build().unwrap();
    let err = registry.keyed("hosts").build().unwrap_err();
    assert_eq!(err.field(), "group");
    assert!(err.rule().contains("hosts"), "{err}");
    assert_eq!(registry.keyed_groups().len(), 1);
    registry.keyed("tenants").build().unwrap();
    assert_eq!(registry.keyed_groups().len(), 2);

    let err = KeyedBreakers::builder("g")
        .max_breakers(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_breakers");
    let err = KeyedBreakers::builder("g")
        .template(CircuitBreakerConfig::default().failure_threshold(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "template.failure_threshold");
    let err = KeyedBreakers::builder("g")
        .key(
            "db",
            CircuitBreakerConfig::default().break_duration(Duration::ZERO),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "keys.db.break_duration");
    let err = KeyedBreakers::builder("g")
        .overflow_name("")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "overflow_name");
    let err = KeyedBreakers::builder("g")
        .overflow_name("same")
        .no_key_name("same")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "no_key_name");
    // A refused group is not added to the registry.
    let err = registry.keyed("bad").max_breakers(0).build().unwrap_err();
    assert_eq!(err.field(), "max_breakers");
    assert_eq!(registry.keyed_groups().len(), 2);
}
