//! Breakers of two or more registries sharing state through the in-memory store: the rules of
//! the `store` module, on Tokio's paused clock (the Redis store's own tests run a real server).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};
use tower_circuit_breaker::store::{
    BreakerId, InMemoryStateStore, Inbox, SharedState, StateStore, StoreError, StoreFuture,
    StoreHandle, StoreOptions, Stored,
};
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState, TransitionReason};

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(2)
        .success_threshold(1)
        .break_duration(Duration::from_secs(10))
}

fn registry() -> CircuitBreakerRegistry {
    CircuitBreakerRegistry::builder()
        .breaker("payments", config())
        .default_config(config())
        .build()
        .unwrap()
}

async fn instance(store: &InMemoryStateStore, name: &str) -> (CircuitBreakerRegistry, StoreHandle) {
    let registry = registry();
    let handle = registry
        .attach_store(store.clone(), StoreOptions::default().instance(name))
        .unwrap();
    handle.synced().await;
    (registry, handle)
}

/// Waits (on the paused clock) until `done`, for at most a virtual minute.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..60_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

async fn settle() {
    // Both tasks of every link run to their next wait.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn trip(breaker: &CircuitBreaker) {
    while breaker.state() == CircuitState::Closed {
        breaker.try_acquire().unwrap().failure();
    }
}

fn payments(registry: &CircuitBreakerRegistry) -> CircuitBreaker {
    registry.get("payments").unwrap()
}

async fn run<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(600), test)
        .await
        .expect("the test finishes");
}

/// The in-memory store as one instance reaches it, with faults the test controls: its publishes
/// can wait at a gate (its publishing task falls behind), and its link can be cut (publishes,
/// reads and listening fail, as across a network partition) while the other instances go on.
#[derive(Clone)]
struct Faulty {
    store: InMemoryStateStore,
    gate: Arc<Semaphore>,
    cut: Arc<AtomicBool>,
    cutting: Arc<Notify>,
}

impl Faulty {
    /// No fault until the test makes one.
    fn new(store: &InMemoryStateStore) -> Self {
        Self {
            store: store.clone(),
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            cut: Arc::default(),
            cutting: Arc::default(),
        }
    }

    /// Publishes wait until [`open_gate`](Self::open_gate).
    fn gated(store: &InMemoryStateStore) -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            ..Self::new(store)
        }
    }

    fn open_gate(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS);
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.cutting.notify_waiters();
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(StoreError::new("partitioned"))
        } else {
            Ok(())
        }
    }
}

impl StateStore for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }

    fn publish<'a>(&'a self, update: &'a SharedState) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let _pass = self.gate.acquire().await.unwrap();
            self.check()?;
            self.store.publish(update).await
        })
    }

    fn read<'a>(
        &'a self,
        breakers: &'a [BreakerId],
    ) -> StoreFuture<'a, Result<Vec<Stored>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.store.read(breakers).await
        })
    }

    fn listen<'a>(&'a self, inbox: &'a Inbox) -> StoreFuture<'a, StoreError> {
        Box::pin(async move {
            let cutting = self.cutting.notified();
            if let Err(error) = self.check() {
                return error;
            }
            tokio::select! {
                error = self.store.listen(inbox) => error,
                () = cutting => StoreError::new("partitioned"),
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_trip_on_one_instance_opens_the_other_which_probes_by_itself_and_closes_both() {
    run(async {
        let store = InMemoryStateStore::new();
        let (a, _ha) = instance(&store, "a").await;
        let (b, hb) = instance(&store, "b").await;

        trip(&payments(&a));
        eventually("b opens", || payments(&b).state() == CircuitState::Open).await;
        let b_payments = payments(&b);
        assert_eq!(b_payments.metrics().failed_calls, 0, "b saw no failure");
        let rejected = b_payments.try_acquire().unwrap_err();
        let left = rejected.retry_after().unwrap();
        assert!(
            left > Duration::from_secs(9) && left <= Duration::from_secs(10),
            "{left:?}"
        );
        assert_eq!(
            b_payments.metrics().last_transition_reason,
            Some(TransitionReason::Shared)
        );
        assert_eq!(hb.status().applied, 1);

        // The break ends on b's own clock; b probes by itself and its success closes a too.
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b_payments.try_acquire().unwrap();
        assert!(probe.is_probe());
        probe.success();
        assert_eq!(b_payments.state(), CircuitState::Closed);
        eventually("a closes", || payments(&a).state() == CircuitState::Closed).await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn isolate_and_reset_from_any_instance_apply_everywhere() {
    run(async {
        let store = InMemoryStateStore::new();
        let (a, _ha) = instance(&store, "a").await;
        let (b, _hb) = instance(&store, "b").await;

        payments(&b).isolate();
        eventually("a isolated", || {
            payments(&a).state() == CircuitState::Isolated
        })
        .await;
        assert!(payments(&a).try_acquire().is_err());

        payments(&a).reset();
        eventually("b closed", || payments(&b).state() == CircuitState::Closed).await;

        payments(&a).disable();
        eventually("b disabled", || {
            payments(&b).state() == CircuitState::Disabled
        })
        .await;
        payments(&b).automatic();
        eventually("a closed", || payments(&a).state() == CircuitState::Closed).await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_instance_started_while_the_shared_state_is_open_starts_open_for_what_is_left() {
    run(async {
        let store = InMemoryStateStore::new();
        let (a, _ha) = instance(&store, "a").await;
        trip(&payments(&a));
        settle().await;
        tokio::time::advance(Duration::from_secs(4)).await;

        let (c, hc) = instance(&store, "c").await;
        let c_payments = payments(&c);
        assert_eq!(c_payments.state(), CircuitState::Open);
        let left = c_payments.try_acquire().unwrap_err().retry_after().unwrap();
        assert!(
            left > Duration::from_secs(5) && left <= Duration::from_secs(6),
            "{left:?}"
        );
        assert!(hc.status().synced);

        // A break over by the time an instance starts is not taken: it starts closed.
        tokio::time::advance(Duration::from_secs(7)).await;
        let (d, _hd) = instance(&store, "d").await;
        assert_eq!(payments(&d).state(), CircuitState::Closed);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn breakers_made_later_read_their_shared_state() {
    run(async {
        let store = InMemoryStateStore::new();
        let (a, _ha) = instance(&store, "a").await;
        let (b, _hb) = instance(&store, "b").await;
        let search_a = a.get_or_create("search").unwrap();
        trip(&search_a);
        settle().await;
        assert!(b.get("search").is_none(), "b has not made it yet");
        let search_b = b.get_or_create("search").unwrap();
        eventually("b's new breaker opens", || {
            search_b.state() == CircuitState::Open
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn with_the_store_down_calls_go_on_alone_health_is_degraded_and_a_reconnect_converges() {
    run(async {
        let store = InMemoryStateStore::new();
        let (a, ha) = instance(&store, "a").await;
        let (b, hb) = instance(&store, "b").await;
        assert_eq!(a.snapshot().health(), HealthStatus::Healthy);

        store.set_down(true);
        eventually("a sees the store down", || !ha.status().connected).await;
        assert_eq!(a.snapshot().health(), HealthStatus::Degraded);
        assert!(ha.status().last_error.is_some());

        // Calls keep their local behaviour: b admits, a trips on its own counts and rejects.
        let b_payments = payments(&b);
        for _ in 0..100 {
            b_payments.try_acquire().unwrap().success();
        }
        trip(&payments(&a));
        assert!(payments(&a).try_acquire().is_err());
        settle().await;
        assert_eq!(
            b_payments.state(),
            CircuitState::Closed,
            "b cannot hear a meanwhile"
        );
        assert!(ha.status().publish_failures >= 1);

        store.set_down(false);
        eventually("both reconnect", || {
            ha.status().connected && hb.status().connected
        })
        .await;
        eventually("a's trip, published again, reaches b", || {
            b_payments.state() == CircuitState::Open
        })
        .await;
        assert_eq!(
            a.snapshot().health(),
            HealthStatus::Degraded,
            "payments is open"
        );
    })
    .await;
}

/// Three instances on four worker threads change one breaker at the same moment, again and
/// again; once the store has told everyone everything, every instance is in the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_transitions_end_in_the_same_state_on_every_instance() {
    run(async {
        let store = InMemoryStateStore::new();
        let mut instances = Vec::new();
        for name in ["a", "b", "c"] {
            instances.push(instance(&store, name).await);
        }
        let breakers: Vec<CircuitBreaker> = instances
            .iter()
            .map(|(registry, _)| payments(registry))
            .collect();
        let mut differed = 0;
        for round in 0..300_u64 {
            let barrier = Arc::new(std::sync::Barrier::new(breakers.len()));
            let threads: Vec<_> = breakers
                .iter()
                .enumerate()
                .map(|(index, breaker)| {
                    let (breaker, barrier) = (breaker.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        match (round + index as u64) % 4 {
                            0 => trip(&breaker),
                            1 => breaker.isolate(),
                            2 => breaker.reset(),
                            _ => breaker.disable(),
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let same = || {
                let states: Vec<_> = breakers.iter().map(CircuitBreaker::state).collect();
                states.iter().all(|state| *state == states[0])
            };
            if !same() {
                differed += 1;
            }
            for _ in 0..10_000 {
                if same() && quiet(&instances) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let states: Vec<_> = breakers.iter().map(CircuitBreaker::state).collect();
            if !states.iter().all(|state| *state == states[0]) {
                // What each instance did and heard, to tell a slow machine from a wrong rule.
                for ((_, handle), breaker) in instances.iter().zip(&breakers) {
                    eprintln!("{:?}", handle.status());
                    for transition in breaker.recent_transitions() {
                        eprintln!("  {transition} (generation {})", transition.generation);
                    }
                }
            }
            assert!(
                states.iter().all(|state| *state == states[0]),
                "round {round}: {states:?}"
            );
        }
        // The races were real: right after the changes the instances disagreed.
        assert!(differed > 0);
    })
    .await;
}

/// Every update any instance published has reached every instance.
fn quiet(instances: &[(CircuitBreakerRegistry, StoreHandle)]) -> bool {
    let statuses: Vec<_> = instances
        .iter()
        .map(|(_, handle)| handle.status())
        .collect();
    let published: u64 = statuses.iter().map(|status| status.published).sum();
    statuses.iter().all(|status| status.received == published)
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_stay_local_unless_shared() {
    run(async {
        let store = InMemoryStateStore::new();
        let group = |registry: &CircuitBreakerRegistry| registry.keyed("hosts").build().unwrap();
        let (a, b) = (registry(), registry());
        let (ga, gb) = (group(&a), group(&b));
        a.attach_store(store.clone(), StoreOptions::default())
            .unwrap()
            .synced()
            .await;
        b.attach_store(store.clone(), StoreOptions::default())
            .unwrap()
            .synced()
            .await;
        let local = ga.get(Some("db.internal"));
        let _seen_by_b = gb.get(Some("db.internal"));
        trip(&local);
        settle().await;
        assert_eq!(
            gb.lookup("db.internal").unwrap().state(),
            CircuitState::Closed
        );

        let (c, d) = (registry(), registry());
        let (gc, gd) = (group(&c), group(&d));
        let shared = || StoreOptions::default().share_keyed(true);
        c.attach_store(store.clone(), shared())
            .unwrap()
            .synced()
            .await;
        d.attach_store(store.clone(), shared())
            .unwrap()
            .synced()
            .await;
        let on_c = gc.get(Some("api.example"));
        let on_d = gd.get(Some("api.example"));
        trip(&on_c);
        eventually("d's key opens", || on_d.state() == CircuitState::Open).await;
        // A key made after the trip reads it.
        drop(on_d);
        let later = gd.get(Some("api.example"));
        assert_eq!(later.state(), CircuitState::Open);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn attaching_twice_or_outside_a_runtime_is_refused() {
    let store = InMemoryStateStore::new();
    let registry = registry();
    registry
        .attach_store(store.clone(), StoreOptions::default())
        .unwrap();
    let again = registry.attach_store(store.clone(), StoreOptions::default());
    assert!(matches!(
        again,
        Err(tower_circuit_breaker::store::AttachError::AlreadyAttached)
    ));
    let zero =
        self::registry().attach_store(store, StoreOptions::default().timeout(Duration::ZERO));
    assert!(zero.is_err());
}

#[test]
fn attaching_outside_a_runtime_is_refused() {
    let result = registry().attach_store(InMemoryStateStore::new(), StoreOptions::default());
    assert!(matches!(
        result,
        Err(tower_circuit_breaker::store::AttachError::NoRuntime)
    ));
}

#[tokio::test(start_paused = true)]
async fn transitions_past_the_queue_are_dropped_counted_and_the_last_state_still_reaches_the_others(
) {
    run(async {
        let store = InMemoryStateStore::new();
        let gated = Faulty::gated(&store);
        let a = registry();
        let ha = a
            .attach_store(
                gated.clone(),
                StoreOptions::default()
                    .instance("a")
                    .timeout(Duration::from_secs(3600)),
            )
            .unwrap();
        ha.synced().await;
        let (b, _hb) = instance(&store, "b").await;
        assert_eq!(gated.kind(), "faulty");

        // While the publishing task waits at the gate: search is isolated, then a thousand
        // transitions of payments push it out of the registry's queue of 256.
        let (search_a, search_b) = (
            a.get_or_create("search").unwrap(),
            b.get_or_create("search").unwrap(),
        );
        settle().await;
        search_a.isolate();
        // Meanwhile b isolates a breaker a has never changed: a's sync must take it, not
        // publish its own untouched closed state over it.
        let ledger_a = a.get_or_create("ledger").unwrap();
        b.get_or_create("ledger").unwrap().isolate();
        settle().await;
        let on_a = payments(&a);
        for _ in 0..500 {
            on_a.isolate();
            on_a.reset();
        }
        on_a.disable();
        gated.open_gate();
        eventually("b ends like a", || {
            payments(&b).state() == CircuitState::Disabled
                && search_b.state() == CircuitState::Isolated
        })
        .await;
        let status = ha.status();
        assert!(status.dropped_updates >= 1_002 - 256, "{status:?}");
        assert!(status.published < 1_002 - 256 + 10, "{status:?}");
        settle().await;
        assert_eq!(ledger_a.state(), CircuitState::Isolated);
        assert_eq!(b.get("ledger").unwrap().state(), CircuitState::Isolated);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_instance_cut_off_while_the_fleet_lifts_an_isolate_takes_the_close_when_it_is_back() {
    run(async {
        let store = InMemoryStateStore::new();
        let link_a = Faulty::new(&store);
        let a = registry();
        let ha = a
            .attach_store(link_a.clone(), StoreOptions::default().instance("a"))
            .unwrap();
        ha.synced().await;
        let (b, _hb) = instance(&store, "b").await;

        payments(&b).isolate();
        eventually("a follows the isolate", || {
            payments(&a).state() == CircuitState::Isolated
        })
        .await;
        link_a.set_cut(true);
        eventually("a is cut off", || !ha.status().connected).await;
        payments(&b).automatic();
        settle().await;
        assert_eq!(
            payments(&a).state(),
            CircuitState::Isolated,
            "a cannot hear it"
        );

        link_a.set_cut(false);
        eventually("a takes the close when it is back", || {
            payments(&a).state() == CircuitState::Closed
        })
        .await;
        assert_eq!(payments(&b).state(), CircuitState::Closed);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_trip_an_instance_could_not_publish_does_not_undo_the_fleets_isolate() {
    run(async {
        let store = InMemoryStateStore::new();
        let link_a = Faulty::new(&store);
        let a = registry();
        let ha = a
            .attach_store(link_a.clone(), StoreOptions::default().instance("a"))
            .unwrap();
        ha.synced().await;
        let (b, _hb) = instance(&store, "b").await;

        // a trips and is cut off before its update comes back to it.
        trip(&payments(&a));
        link_a.set_cut(true);
        settle().await;
        // The fleet moves on: b isolates.
        payments(&b).isolate();
        settle().await;
        link_a.set_cut(false);
        eventually("a takes b's isolate", || {
            payments(&a).state() == CircuitState::Isolated
        })
        .await;
        settle().await;
        assert_eq!(payments(&b).state(), CircuitState::Isolated);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_registry_with_breaking_switched_off_does_not_follow_the_fleet() {
    run(async {
        let store = InMemoryStateStore::new();
        let off = CircuitBreakerRegistry::builder()
            .enabled(false)
            .breaker("payments", config())
            .build()
            .unwrap();
        off.attach_store(store.clone(), StoreOptions::default())
            .unwrap()
            .synced()
            .await;
        let (b, _hb) = instance(&store, "b").await;
        trip(&payments(&b));
        payments(&b).isolate();
        settle().await;
        assert_eq!(payments(&off).state(), CircuitState::Disabled);
        assert_eq!(
            payments(&b).state(),
            CircuitState::Isolated,
            "nor does it lead it"
        );
    })
    .await;
}
