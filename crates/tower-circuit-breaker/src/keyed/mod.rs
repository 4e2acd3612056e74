//! One breaker per key (per host, per tenant), bounded in number.
//!
//! A client that talks to many hosts needs a breaker per host: one failing host must not open
//! the circuit for the others. [`KeyedBreakers`] is such a group, and
//! [`KeyedCircuitBreakerLayer`] puts it in a `tower` stack: each request goes through the
//! breaker of its key, by default the host and port it is for (`ByAuthority`, with the `http`
//! feature), made from a template config on the key's first request.
//!
//! Keys come from the network, so their number is bounded
//! ([`max_breakers`](KeyedBuilder::max_breakers), 1000 by default):
//!
//! - When the group is full, a new key takes the place of an **idle, closed** breaker: one with
//!   no call in flight, not held elsewhere, not used since the eviction hand last passed it (the
//!   clock algorithm, an approximation of least recently used; a key seen once goes before a
//!   key seen again).
//! - An **open, half-open or isolated** breaker is **never evicted**: evicting it would let the
//!   traffic it holds back reach the failing host again. Nor is a breaker with a call in flight:
//!   every call's outcome lands on the breaker its key had when the call began.
//! - When nothing can be evicted, calls for new keys go through one shared **overflow** breaker
//!   (named `<overflow>`), counted in [`overflowed_calls`](KeyedBreakers::overflowed_calls) and
//!   logged at most once a minute (by the group's clock). A sweep that finds nothing to evict
//!   is not repeated for the next sixteenth of the bound in new keys, so a flood of new keys
//!   while every breaker is pinned costs a bounded number of slot visits a key. Nothing
//!   panics, and the live breakers never outnumber the bound; an evicted one's memory is given
//!   back once no thread can still be reading it (the map frees removed entries in batches).
//! - A half-open breaker that no call reaches again stays half-open (a probe is what ends it),
//!   so it stays in the group: a host that failed and was never called again keeps its place.
//!   Such places are what the bound is for; when they fill it, new keys share the overflow
//!   breaker, which trips in turn if they fail too. [`reset`](crate::CircuitBreaker::reset) on
//!   the key's breaker ([`lookup`](KeyedBreakers::lookup)) frees the place.
//! - A breaker [disabled](crate::CircuitBreaker::disable) by hand is evictable like a closed
//!   one (its replacement starts closed); one [isolated](crate::CircuitBreaker::isolate) by
//!   hand is not.
//! - A request **without a usable key** (no authority and no valid `Host` header, an empty one,
//!   one longer than [`MAX_KEY_LEN`] (a `Host` header is measured before its credentials, if
//!   any, are taken off), bytes that are not a valid authority) goes through the `<no key>`
//!   breaker, as does a key written like the overflow or no-key breaker's name.
//!
//! # Cost
//!
//! A call for a known key looks its breaker up in a concurrent hash map without a lock, holds
//! it for the call (an `Arc` clone and a pin: two atomic adds at the start, two at the end, on
//! the key's own slot) and then costs what a call through
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) costs. The first call for a key, and
//! every call while the group is full and pinned, takes the group's insert lock. With 1,000
//! hosts on a 2.45 GHz x86-64 server, taking the key from an HTTP request costs about 10 ns,
//! the lookup and pin about 36 ns, and a whole call through the keyed layer 1.25 to 1.5 times
//! one through [`CircuitBreakerLayer`](crate::CircuitBreakerLayer); two threads on the same
//! group run a call in about half the one-thread time while they seldom meet on a key.
//!
//! Two cores calling **one key** at once do not scale: a key's breaker counts on one counter line
//! for all threads (what keeps it small, below), and each call writes its slot, so the cores
//! pass those lines back and forth (measured: 150 to 400 ns a call on two threads, against about
//! 150 on one). For an upstream that takes most of the traffic from many cores, give it a
//! [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) of its own, which counts on a line per
//! thread.
//!
//! The map is [`papaya`]'s: its reads take no lock and write nothing shared (an epoch guard on
//! a thread-local), which is what a map read on every call and written once per key wants.
//! The others were set aside: `dashmap` takes a shard's read lock on every read, a shared write
//! that two cores fight over; `moka` and `quick_cache` evict by their own rules (`moka` cannot
//! be told never to evict an open breaker; `quick_cache` can pin entries, but grows past its
//! capacity when all are pinned, where a bound must hold), so the bound and the eviction
//! policy, which must know the breakers' states, are this module's own, on a plain map. Keys
//! are hashed with `foldhash` (what `hashbrown` hashes with by default), seeded at random for
//! each group.
//!
//! # Memory
//!
//! A key's breaker counts on one counter line for all threads, rather than one line per thread
//! as a [`CircuitBreaker`](crate::CircuitBreaker) made alone does (a key sees a share of the
//! traffic, so threads seldom meet on it), shares its group's config, and makes its transition
//! history on its first transition. With the default config, a breaker for a 22-byte key takes
//! 931 bytes with its place in the map and in the eviction ring (measured with a counting
//! allocator over 10,000 keys); 784 more once it has changed state
//! (its transition counts and last transitions), 1,552 more after ten transitions. A bound of
//! 10,000 hosts costs about 9 MiB while they stay closed.
//!
//! # In a registry
//!
//! [`CircuitBreakerRegistry::keyed`](crate::CircuitBreakerRegistry::keyed) makes a group with
//! the registry's settings (a name's own settings apply to a key of that name) and lists its
//! breakers, by key, in the registry's snapshot, so in health and metrics. A key's breaker is
//! never critical unless its settings say so: a failing host makes the app degraded.
//!
//! The registry's [`get`](crate::CircuitBreakerRegistry::get) and the axum crate's admin
//! actions reach named breakers only. To act on a key's breaker, take it from its group with
//! [`lookup`](KeyedBreakers::lookup) (which, unlike [`get`](KeyedBreakers::get), never makes a
//! breaker nor answers with the overflow one): `group.lookup("db-7.internal:5432")` then
//! `isolate()` forces it open, and an isolated breaker stays in the group until
//! [`reset`](crate::CircuitBreaker::reset).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceExt};
//! use tower_circuit_breaker::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
//! use tower_circuit_breaker::{CircuitBreakerConfig, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let hosts = KeyedBreakers::builder("hosts")
//!     .template(CircuitBreakerConfig::default().failure_threshold(2))
//!     .max_breakers(10_000)
//!     .build()?;
//!
//! // Keyed by the first word of the request here; `KeyedCircuitBreakerLayer::new` keys HTTP
//! // requests by their authority.
//! let layer = KeyedCircuitBreakerLayer::with_key(hosts.clone(), |request: &String| {
//!     request.split(' ').next().map(str::to_owned)
//! });
//! let mut client = tower::ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|request: String| async move {
//!         if request.starts_with("down.example") { Err("connection refused") } else { Ok(request) }
//!     });
//!
//! for _ in 0..2 {
//!     let _ = client.ready().await?.call("down.example GET /".to_owned()).await;
//! }
//! assert_eq!(hosts.get(Some("down.example")).state(), CircuitState::Open);
//! assert_eq!(client.ready().await?.call("up.example GET /".to_owned()).await?, "up.example GET /");
//! assert_eq!(hosts.len(), 2);
//! # Ok(())
//! # }
//! ```

mod breakers;
mod key;
mod layer;
#[cfg(loom)]
pub mod pins;
#[cfg(not(loom))]
mod pins;

pub use self::breakers::{
    KeyedBreaker, KeyedBreakers, KeyedBuilder, KeyedSnapshot, StateCounts, MAX_KEY_LEN,
};
#[cfg(feature = "http")]
pub use self::key::ByAuthority;
pub use self::key::KeyFor;
pub use self::layer::{KeyedCircuitBreakerLayer, KeyedCircuitBreakerService};
