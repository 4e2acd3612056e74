//! Breaker state shared across instances: one fleet, one view of a failing dependency.
//!
//! When a service runs as many replicas, each finding out on its own that a dependency is down
//! costs as many failed calls as there are replicas. With a [`StateStore`] attached to a
//! [registry](crate::registry), an instance that opens a breaker tells the others, which reject
//! at once without having seen a failure:
//!
//! - **Published:** a transition to open (with how long the break lasts), to closed (probes
//!   succeeded, a reset, a manual override lifted), and the manual overrides
//!   [`isolate`](crate::CircuitBreaker::isolate) and [`disable`](crate::CircuitBreaker::disable).
//!   Not published: half-open (each instance probes by itself once the break is over), and a
//!   breaker disabled because the registry's config switches breaking off.
//! - **Taken from the others:** an instance that hears "open for 30 s" rejects for those 30 s and
//!   then probes by itself; a close, an isolate or a reset from any instance applies everywhere.
//!   Each instance keeps deciding on its own counts: what it takes is the state, never the counts.
//!   A taken transition has the reason [`Shared`](crate::TransitionReason::Shared).
//! - **At start and after a reconnect:** the instance reads every breaker's shared state and takes
//!   it (a break that is still running is joined for what is left of it). A breaker it changed
//!   while the store was unreachable is published instead, so the fleet converges on it, unless
//!   the store holds an isolate or a disable made by hand meanwhile and the instance's own change
//!   was not: a trip or a close never undoes a hand's action. A breaker the store has no state
//!   for while it is isolated, disabled, or open by this instance's own trip is published too:
//!   the store lost its data (a restart without persistence) and gets it back from the fleet.
//! - **A registry whose config switches breaking off** (`enabled: false`) neither publishes nor
//!   takes anything: its breakers stay disabled.
//!
//! # Order: the store's, the same on every instance
//!
//! The store gives every update a version, in the order it wrote them, and tells every instance
//! every update in that order (its own included). An instance takes an update only if it is newer
//! than the last it took for that breaker, so when two instances open at once, or a close races
//! an open, the update the store wrote last wins on every instance. An instance that has a
//! publication of its own still on its way skips the updates that come before it (its own comes
//! after them, and wins); when its own update comes back it re-takes it only if another instance's
//! update slipped in meanwhile.
//!
//! # Never on a call's path
//!
//! The engine never awaits the store on a call. Transitions go to the store through the registry's
//! transition channel, a bounded queue that a background task drains; when the task falls behind,
//! the oldest transitions are dropped and counted
//! ([`dropped_updates`](StoreStatus::dropped_updates)), and the task publishes the breakers whose
//! state the store may have missed. Updates from the other instances are taken on another
//! background task. A store that is down, slow, or never answers changes nothing for a call: every
//! publish and read has a timeout, the instance goes on deciding alone, and the store shows as
//! not [`connected`](StoreStatus::connected) in the registry's
//! [snapshot](crate::registry::RegistrySnapshot::store), which makes the app's health
//! [`Degraded`](crate::HealthStatus::Degraded) (never unhealthy: the breakers still work).
//!
//! # Stores
//!
//! The `tower-circuit-breaker-redis` crate has the Redis (or Valkey) store. [`InMemoryStateStore`]
//! links registries in one process, for tests and examples. Another store implements
//! [`StateStore`]: publish, read, listen.
//!
//! # Example
//!
//! Two registries sharing one store, as two instances of a service would:
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::registry::CircuitBreakerRegistry;
//! use tower_circuit_breaker::store::{InMemoryStateStore, StoreOptions};
//! use tower_circuit_breaker::{CircuitBreakerConfig, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = InMemoryStateStore::new();
//! let instance = || {
//!     CircuitBreakerRegistry::builder()
//!         .breaker("payments", CircuitBreakerConfig::default().failure_threshold(1))
//!         .build()
//!         .unwrap()
//! };
//! let (a, b) = (instance(), instance());
//! let linked_a = a.attach_store(store.clone(), StoreOptions::default()).unwrap();
//! let linked_b = b.attach_store(store.clone(), StoreOptions::default()).unwrap();
//! linked_a.synced().await;
//! linked_b.synced().await;
//!
//! // `a` sees a failure and opens; `b` follows without having seen one.
//! let payments_a = a.get("payments").unwrap();
//! payments_a.try_acquire().unwrap().failure();
//! let payments_b = b.get("payments").unwrap();
//! while payments_b.state() != CircuitState::Open {
//!     tokio::time::sleep(Duration::from_millis(1)).await;
//! }
//! assert!(payments_b.try_acquire().is_err());
//! assert_eq!(payments_b.metrics().failed_calls, 0);
//! # }
//! ```

mod link;
mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub(crate) use self::link::Link;
pub use self::memory::InMemoryStateStore;
use crate::CircuitState;

/// The key prefix a store uses when none is given.
pub const DEFAULT_KEY_PREFIX: &str = "circuit-breaker:";

/// A boxed future a [`StateStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where breaker states are shared between instances: the three things the engine asks of it.
///
/// None of them is ever awaited on a call's path; each is given a timeout by the caller.
pub trait StateStore: Send + Sync + 'static {
    /// What it is, as health and metrics name it (`redis`).
    fn kind(&self) -> &'static str;

    /// Makes `update` the breaker's shared state, with a version after every other it has
    /// written, and tells every listening instance (this one included), in that order.
    /// `update.version` is not read: the store gives the version.
    fn publish<'a>(&'a self, update: &'a SharedState) -> StoreFuture<'a, Result<(), StoreError>>;

    /// The shared state of each of `breakers`, in the same order, with `open_for` counted from
    /// now.
    fn read<'a>(
        &'a self,
        breakers: &'a [BreakerId],
    ) -> StoreFuture<'a, Result<Vec<Stored>, StoreError>>;

    /// Listens for every update published from now on and hands each to `inbox`, in the store's
    /// order; calls [`Inbox::connected`] once listening. Returns only when the connection is
    /// lost, with why: the engine calls it again after a pause.
    fn listen<'a>(&'a self, inbox: &'a Inbox) -> StoreFuture<'a, StoreError>;
}

/// Which breaker an update is for: a registry's named breaker, or a keyed group's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BreakerId {
    /// The [keyed group](crate::keyed), for a key's breaker.
    pub group: Option<Arc<str>>,
    /// The breaker's name; a keyed breaker's key.
    pub name: Arc<str>,
}

impl fmt::Display for BreakerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(group) => write!(f, "`{}` of `{group}`", self.name),
            None => write!(f, "`{}`", self.name),
        }
    }
}

/// One breaker's state as an instance publishes it and the others receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedState {
    /// The breaker.
    pub breaker: BreakerId,
    /// Its state: open, closed, isolated or disabled.
    pub state: CircuitState,
    /// When open, how long until the break ends (from when the store wrote it, or from the read).
    pub open_for: Option<Duration>,
    /// The generation the publishing instance's breaker entered (its own count; for logs).
    pub generation: u64,
    /// The instance that published it ([`StoreOptions::instance`]).
    pub origin: Arc<str>,
    /// The publishing instance's count of its publications for this breaker.
    pub sequence: u64,
    /// The store's order: higher is later. Given by the store; 0 in what is published.
    pub version: u64,
    /// Why the publishing instance's breaker changed, in words (for logs).
    pub reason: String,
}

/// What a store holds for one breaker.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// Nothing: the breaker is closed as far as the fleet knows (or its break is over).
    Missing,
    /// Its shared state.
    State(SharedState),
    /// Something that is not a breaker's state (another program's value under its key), and
    /// why: logged as a warning and counted, never taken.
    Invalid(String),
}

/// A store could not do what was asked: unreachable, timed out, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// An error saying `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }
}

/// Where a [`StateStore`] hands what it hears while it [listens](StateStore::listen).
#[derive(Debug)]
pub struct Inbox {
    link: Arc<Link>,
}

impl Inbox {
    /// The store listens: every update published from now on reaches [`receive`](Self::receive).
    /// The instance publishes what the store may have missed and reads every breaker's state.
    pub fn connected(&self) {
        self.link.connected();
    }

    /// An update some instance published.
    pub fn receive(&self, update: &SharedState) {
        self.link.receive(update);
    }

    /// Something the store holds or heard that is not an update it can read (another program's
    /// value under a breaker's key): logged as a warning and counted, never taken.
    pub fn invalid(&self, what: &str, why: &dyn fmt::Display) {
        self.link.invalid(what, why);
    }
}

/// How a registry uses its store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// This instance's name in the updates it publishes. Default: the process id and a random
    /// suffix; give a stable one (the pod's name) to read the store's logs more easily. Two
    /// instances must not share one.
    pub instance: Option<String>,
    /// Whether the breakers of [keyed groups](crate::keyed) are shared too, each key under its own
    /// entry in the store (default `false`: keyed breakers, made by the thousand, stay local).
    pub share_keyed: bool,
    /// How long a publish or a read may take before it counts as failed (default 1 s). A store
    /// may have timeouts of its own besides (connecting, listening): see the store's docs.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            instance: None,
            share_keyed: false,
            timeout: Duration::from_secs(1),
        }
    }
}

impl StoreOptions {
    /// Names this instance in the updates it publishes.
    #[must_use]
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }

    /// Shares the breakers of keyed groups too.
    #[must_use]
    pub fn share_keyed(mut self, share: bool) -> Self {
        self.share_keyed = share;
        self
    }

    /// How long a publish or a read may take.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a store could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The registry has a store already.
    #[error("the registry has a state store already")]
    AlreadyAttached,
    /// The store's tasks need a Tokio runtime, and none is running here.
    #[error("attaching a state store needs a running Tokio runtime")]
    NoRuntime,
    /// The timeout is zero.
    #[error("store timeout: must be more than 0")]
    ZeroTimeout,
}

/// How the store is doing, as health and metrics show it. Serializes with these field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreStatus {
    /// The store's [kind](StateStore::kind).
    pub kind: &'static str,
    /// This instance's name in the store.
    pub instance: Arc<str>,
    /// Listening, and the last publish or read (if any since) went through.
    pub connected: bool,
    /// The breakers' shared state has been read since the last (re)connection.
    pub synced: bool,
    /// Updates published.
    pub published: u64,
    /// Publishes and reads that failed or timed out.
    pub publish_failures: u64,
    /// Transitions dropped before they could be published (the queue was full).
    pub dropped_updates: u64,
    /// Updates heard from the store (every instance's).
    pub received: u64,
    /// Updates that changed a breaker here.
    pub applied: u64,
    /// Values that could not be read (another program's data under a breaker's key).
    pub invalid_updates: u64,
    /// The last error, while not connected.
    pub last_error: Option<String>,
}

impl StoreStatus {
    /// What the store's state means for the app's health: degraded while it is not connected
    /// (the breakers still decide, alone), never unhealthy.
    pub fn health(&self) -> crate::HealthStatus {
        if self.connected {
            crate::HealthStatus::Healthy
        } else {
            crate::HealthStatus::Degraded
        }
    }
}

/// A registry's link to its store: its status, and a way to wait for the first read.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    link: Arc<Link>,
}

impl StoreHandle {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        Self { link }
    }

    /// How the store is doing.
    pub fn status(&self) -> StoreStatus {
        self.link.status()
    }

    /// This instance's name in the store.
    pub fn instance(&self) -> &str {
        self.link.origin()
    }

    /// Waits until the breakers' shared state has been read once since the store was attached:
    /// from then on, the registry's breakers have taken the fleet's state. Waits for as long as
    /// the store is unreachable (wrap it in a timeout to start anyway).
    pub async fn synced(&self) {
        self.link.synced().await;
    }
}
