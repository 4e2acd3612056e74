//! The health report a load balancer's probe and the dashboard read: an overall
//! [`HealthStatus`], one entry per breaker and, when the registry shares its breakers' state
//! with other instances, the [store's](#shared-state-store).
//!
//! The report is built from a registry's [snapshot](CircuitBreakerRegistry::snapshot); it holds
//! no state of its own. `GET /health` answers it as JSON, with 200 for `healthy` and `degraded`
//! and 503 for `unhealthy`:
//!
//! ```json
//! {
//!   "status": "unhealthy",
//!   "checked_at": "2026-11-30T21:40:00.123456789Z",
//!   "breakers": [
//!     {
//!       "name": "pgmq", "group": null, "state": "open", "health": "unhealthy", "critical": true,
//!       "failure_rate": 1.0, "slow_call_rate": 0.0, "window_calls": null,
//!       "consecutive_failures": 3, "total_calls": 3, "successful_calls": 0,
//!       "failed_calls": 3, "rejected_calls": 12,
//!       "retry_after_seconds": 12.5, "break_duration_seconds": 15.0,
//!       "last_transition": { "breaker": "pgmq", "from": "closed", "to": "open",
//!         "reason": { "kind": "consecutive_failures", "failures": 3, "message": "3 consecutive failures" },
//!         "generation": 1, "at": "2026-11-30T21:39:47.600000000Z" },
//!       "recent_transitions": [ "... up to ten, oldest first, shaped as last_transition ..." ]
//!     },
//!     { "name": "api.example.com:443", "group": "hosts", "state": "open", "health": "degraded", "...": "..." }
//!   ],
//!   "keyed": [
//!     {
//!       "group": "hosts", "health": "degraded", "live": 12, "max_breakers": 1000,
//!       "overflowed_calls": 0, "evictions": 3,
//!       "by_state": { "closed": 13, "open": 1, "half_open": 0, "isolated": 0, "disabled": 0 }
//!     }
//!   ],
//!   "store": {
//!     "kind": "redis", "instance": "orders-7f9c", "connected": false, "synced": false,
//!     "health": "degraded", "last_error": "connection refused",
//!     "published": 12, "publish_failures": 3, "dropped_updates": 0,
//!     "received": 40, "applied": 9, "invalid_updates": 0
//!   }
//! }
//! ```
//!
//! `failure_rate` and `slow_call_rate` are taken over the breaker's sliding window when it has
//! one (`window_calls` is then the calls in it), and over its whole life otherwise
//! (`window_calls` is `null`). `retry_after_seconds` is the time left in the break while open,
//! else `null`.
//!
//! # Keyed breakers
//!
//! The breakers of a [keyed group](tower_circuit_breaker::keyed) (one per host, per tenant)
//! are entries of `breakers` like the named ones, after them: `name` is the key and `group`
//! the group's name (`null` for a named breaker, so a key and a named breaker of the same
//! name stay apart). They count for `status` by the same rules: a key's breaker is not
//! critical unless its settings say so, so an open one makes the app `degraded`, still 200.
//! Each group has its overflow breaker (`<overflow>`, the calls for new keys while the group is
//! full) and its no-key breaker (`<no key>`) among its entries.
//!
//! `keyed` holds one entry per group ([`KeyedHealth`]), in the order the groups were made:
//! the worst `health` of its breakers, `live` keys with a breaker of at most `max_breakers`,
//! the calls sent to the overflow breaker while the group was full, the idle breakers evicted
//! to make room, and `by_state`, its breakers in each state (the overflow and no-key breakers
//! included, so the five add up to `live` + 2). A group of many keys makes a long `breakers`
//! list; `keyed` is the short account of it.
//!
//! # Shared state store
//!
//! When the registry has a [shared state store](tower_circuit_breaker::store) attached, the
//! report has a `store` entry ([`StoreHealth`]): the store's `kind` and this `instance`'s name
//! in it, whether it is `connected` and has `synced` (read the breakers' shared state since it
//! last connected), the `last_error` while not connected (`null` while connected), and its
//! counters (updates published, publishes and reads that failed, transitions dropped, updates
//! received from every instance and applied here, values that could not be read). Without a
//! store the report has no `store` key.
//!
//! A store that is not connected makes `status` **`degraded`**, never `unhealthy`: the breakers
//! still decide, each instance on its own counts, so the app still serves (200, and
//! `/health/ready` stays ready); what it has lost is hearing the rest of the fleet. The store's
//! own `health` is `healthy` while connected and `degraded` otherwise.
//!
//! # Example
//!
//! ```
//! use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};
//! use tower_circuit_breaker_axum::health::HealthReport;
//!
//! let registry = CircuitBreakerRegistry::new();
//! registry.get_or_create("cache").unwrap();
//! let report = HealthReport::of(&registry);
//! assert_eq!(report.status, HealthStatus::Healthy);
//! assert_eq!(report.breakers[0].name.as_ref(), "cache");
//!
//! // A keyed group: one breaker per host. An open host's breaker makes the app degraded.
//! let hosts = registry.keyed("hosts").build().unwrap();
//! hosts.get(Some("api.example.com")).isolate();
//! let report = HealthReport::of(&registry);
//! assert_eq!(report.status, HealthStatus::Degraded);
//! let host = report.breakers.iter().find(|b| b.group.as_deref() == Some("hosts")).unwrap();
//! assert_eq!(host.name.as_ref(), "api.example.com");
//! assert_eq!(report.keyed[0].live, 1);
//! assert_eq!(report.keyed[0].by_state.isolated, 1);
//! assert_eq!(report.keyed[0].health, HealthStatus::Degraded);
//! assert!(report.store.is_none(), "no store attached");
//! ```
//!
//! With a store that goes down, the app is degraded, not unhealthy:
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};
//! use tower_circuit_breaker::store::{InMemoryStateStore, StoreOptions};
//! use tower_circuit_breaker_axum::health::HealthReport;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let registry = CircuitBreakerRegistry::new();
//! let store = InMemoryStateStore::new();
//! let handle = registry
//!     .attach_store(store.clone(), StoreOptions::default().instance("web-1"))
//!     .unwrap();
//! handle.synced().await;
//! let report = HealthReport::of(&registry);
//! assert_eq!(report.status, HealthStatus::Healthy);
//! assert!(report.store.as_ref().unwrap().connected);
//!
//! store.set_down(true);
//! while handle.status().connected {
//!     tokio::time::sleep(Duration::from_millis(1)).await;
//! }
//! let report = HealthReport::of(&registry);
//! assert_eq!(report.status, HealthStatus::Degraded);
//! let store = report.store.unwrap();
//! assert_eq!((store.kind, &*store.instance), ("memory", "web-1"));
//! assert!(store.last_error.is_some());
//! # }
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tower_circuit_breaker::keyed::KeyedSnapshot;
pub use tower_circuit_breaker::keyed::StateCounts;
use tower_circuit_breaker::registry::{BreakerSnapshot, CircuitBreakerRegistry, HealthStatus};
use tower_circuit_breaker::store::StoreStatus;
use tower_circuit_breaker::{CircuitState, Transition};

/// The health of an app's breakers at one moment; serializes as the JSON of `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The worst health of any breaker and of the store: a store that is not connected makes
    /// it [`Degraded`](HealthStatus::Degraded) at worst, never unhealthy.
    pub status: HealthStatus,
    /// When the report was made (RFC 3339, UTC).
    #[serde(with = "humantime_serde")]
    pub checked_at: SystemTime,
    /// One entry per breaker: the named breakers by name, then each keyed group's breakers by
    /// key.
    pub breakers: Vec<BreakerHealth>,
    /// One entry per keyed group, in the order the groups were made.
    pub keyed: Vec<KeyedHealth>,
    /// The shared state store, when the registry has one attached; without one, the JSON has
    /// no `store` key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreHealth>,
}

/// One breaker in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerHealth {
    /// The breaker's name; a keyed breaker's key.
    pub name: Arc<str>,
    /// The keyed group the breaker belongs to; `None` (`null`) for a named breaker.
    pub group: Option<Arc<str>>,
    /// Its state.
    pub state: CircuitState,
    /// What its state means for the app.
    pub health: HealthStatus,
    /// Whether it being open makes the app unhealthy.
    pub critical: bool,
    /// Failed / judged calls, over the window if there is one, else over the breaker's life.
    pub failure_rate: f64,
    /// Slow / judged calls over the window; 0 without one.
    pub slow_call_rate: f64,
    /// Calls in the window, or `None` without one.
    pub window_calls: Option<u64>,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Finished calls.
    pub total_calls: u64,
    /// Calls that succeeded.
    pub successful_calls: u64,
    /// Calls that failed, timeouts included.
    pub failed_calls: u64,
    /// Calls turned away.
    pub rejected_calls: u64,
    /// Time left in the break while open, in seconds.
    pub retry_after_seconds: Option<f64>,
    /// Length of the current (or last) break, in seconds.
    pub break_duration_seconds: f64,
    /// The last transition, if any.
    pub last_transition: Option<Transition>,
    /// The last transitions (at most ten), oldest first.
    pub recent_transitions: Vec<Transition>,
}

impl HealthReport {
    /// The report on every breaker of `registry`, now.
    pub fn of(registry: &CircuitBreakerRegistry) -> Self {
        let snapshot = registry.snapshot();
        let breakers: Vec<BreakerHealth> =
            snapshot.breakers.iter().map(BreakerHealth::from).collect();
        let keyed = snapshot
            .keyed
            .iter()
            .map(|group| KeyedHealth::of(group, &breakers))
            .collect();
        Self {
            status: snapshot.health(),
            checked_at: SystemTime::now(),
            breakers,
            keyed,
            store: snapshot.store.as_ref().map(StoreHealth::from),
        }
    }
}

/// The shared state store in a [`HealthReport`]: how it is doing, and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// What the store is (`redis`, `memory`).
    pub kind: &'static str,
    /// This instance's name in the store.
    pub instance: Arc<str>,
    /// Listening, and the last publish or read (if any since) went through.
    pub connected: bool,
    /// The breakers' shared state has been read since the store last connected.
    pub synced: bool,
    /// What the store's state means for the app: healthy while connected, degraded otherwise
    /// (never unhealthy: the breakers still decide, alone).
    pub health: HealthStatus,
    /// The last error, while not connected; `None` (`null`) while connected.
    pub last_error: Option<String>,
    /// Updates this instance published.
    pub published: u64,
    /// Publishes and reads that failed or timed out.
    pub publish_failures: u64,
    /// Transitions dropped before they could be published (the queue was full).
    pub dropped_updates: u64,
    /// Updates heard from the store, every instance's (this one's included).
    pub received: u64,
    /// Updates that changed a breaker here.
    pub applied: u64,
    /// Values under a breaker's key that could not be read as an update.
    pub invalid_updates: u64,
}

impl From<&StoreStatus> for StoreHealth {
    fn from(store: &StoreStatus) -> Self {
        Self {
            kind: store.kind,
            instance: store.instance.clone(),
            connected: store.connected,
            synced: store.synced,
            health: store.health(),
            last_error: store.last_error.clone(),
            published: store.published,
            publish_failures: store.publish_failures,
            dropped_updates: store.dropped_updates,
            received: store.received,
            applied: store.applied,
            invalid_updates: store.invalid_updates,
        }
    }
}

/// One keyed group in a [`HealthReport`]: its figures, next to its breakers' entries in
/// [`HealthReport::breakers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyedHealth {
    /// The group's name.
    pub group: Arc<str>,
    /// The worst health of the group's breakers.
    pub health: HealthStatus,
    /// Keys with a breaker now.
    pub live: usize,
    /// The most keys with a breaker at once.
    pub max_breakers: usize,
    /// Calls for a new key sent to the overflow breaker while the group was full.
    pub overflowed_calls: u64,
    /// Idle breakers evicted to make room for new keys.
    pub evictions: u64,
    /// The group's breakers in each state, the overflow and no-key breakers included.
    pub by_state: StateCounts,
}

impl KeyedHealth {
    /// The entry of `group`, whose breakers are among `breakers` (by their `group`).
    fn of(group: &KeyedSnapshot, breakers: &[BreakerHealth]) -> Self {
        let health = breakers
            .iter()
            .filter(|breaker| breaker.group.as_deref() == Some(&*group.group))
            .map(|breaker| breaker.health)
            .max()
            .unwrap_or(HealthStatus::Healthy);
        Self {
            group: group.group.clone(),
            health,
            live: group.live,
            max_breakers: group.max_breakers,
            overflowed_calls: group.overflowed_calls,
            evictions: group.evictions,
            by_state: group.by_state,
        }
    }
}

impl From<&BreakerSnapshot> for BreakerHealth {
    fn from(breaker: &BreakerSnapshot) -> Self {
        let metrics = &breaker.metrics;
        let (failure_rate, slow_call_rate, window_calls) = match &metrics.window {
            Some(window) => (
                window.failure_rate(),
                window.slow_call_rate(),
                Some(window.calls),
            ),
            None => (metrics.failure_rate(), 0.0, None),
        };
        Self {
            name: breaker.name.clone(),
            group: breaker.group.clone(),
            state: metrics.state,
            health: breaker.health(),
            critical: breaker.critical,
            failure_rate,
            slow_call_rate,
            window_calls,
            consecutive_failures: metrics.consecutive_failures,
            total_calls: metrics.total_calls,
            successful_calls: metrics.successful_calls,
            failed_calls: metrics.failed_calls,
            rejected_calls: metrics.rejected_calls(),
            retry_after_seconds: metrics.next_probe_in.map(|left| left.as_secs_f64()),
            break_duration_seconds: metrics.break_duration.as_secs_f64(),
            last_transition: breaker.recent_transitions.last().cloned(),
            recent_transitions: breaker.recent_transitions.clone(),
        }
    }
}
