//! Circuit breaker state shared across instances on Redis (or Valkey).
//!
//! When a dependency fails, the first instance to open its breaker tells the rest of the fleet,
//! which rejects at once instead of each instance paying its own failed calls to find out. A
//! [`RedisStateStore`] attached to a [`CircuitBreakerRegistry`] does it; the rules
//! (what is shared, what each instance still decides alone, which update wins a race) are in the
//! engine's [`store`](tower_circuit_breaker::store) module.
//!
//! # In code, or from the config file
//!
//! ```no_run
//! use tower_circuit_breaker::registry::CircuitBreakerRegistry;
//! use tower_circuit_breaker::store::StoreOptions;
//! use tower_circuit_breaker_redis::RedisStateStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In code:
//! let registry = CircuitBreakerRegistry::new();
//! let store = RedisStateStore::open("redis://127.0.0.1:6379/0")?.key_prefix("checkout:breaker:");
//! let handle = registry.attach_store(store, StoreOptions::default().instance("checkout-7f9c"))?;
//!
//! // Or as the registry's config file says (`store: { redis: { url, key_prefix } }`):
//! let registry = CircuitBreakerRegistry::from_yaml_str(r#"
//! circuit_breakers:
//!   component_configs:
//!     payments: { failure_threshold: 5, break_duration: 30s }
//!   store:
//!     redis: { url: "redis://127.0.0.1:6379/0", key_prefix: "checkout:breaker:" }
//! "#)?;
//! let handle = tower_circuit_breaker_redis::attach(&registry)?.expect("the file names a store");
//!
//! // Optional: wait (bounded) until the fleet's state has been read, before taking traffic.
//! let _ = tokio::time::timeout(std::time::Duration::from_secs(2), handle.synced()).await;
//! # Ok(())
//! # }
//! ```
//!
//! # What it keeps in Redis
//!
//! Every name starts with the key prefix (`circuit-breaker:` unless set):
//!
//! - **A key per breaker:** `<prefix>breaker:<name>` (a keyed group's breaker, when keyed
//!   breakers are shared: `<prefix>keyed:<length of the group's name>:<group>:<key>`). It holds
//!   the last update as JSON: the state, the end of the break on the server's clock, the
//!   publishing instance and its reason. An open breaker's key expires when its break ends, so
//!   an instance starting later never joins a break that is over; an isolated or disabled
//!   breaker's key stays until another update; a closed breaker's key stays a week, so an
//!   instance that was cut off when the fleet closed it reads the close when it is back (no key
//!   reads as closed too).
//! - **`<prefix>version`:** the last version given, so every update is ordered. Versions are
//!   the server's clock in milliseconds times 1024, kept growing: they go on growing after a
//!   restart that lost the data. A value there that is not a whole number near the clock's is
//!   ignored; a version more than a day ahead of an instance's clock is not taken.
//! - **A pub/sub channel, `<prefix>updates`**, where every update is published as it is written.
//!
//! A Lua script writes the key, gives the version and publishes, in one step on the server: Redis
//! runs a script alone, so the order of versions is the order every instance hears the updates
//! in, and the last update written wins on every instance. Breaks are counted on the server's
//! clock (its `TIME`), so instances whose clocks disagree still agree on when a break ends.
//!
//! **Why pub/sub:** it tells every instance in about a round trip, it works on any Redis or
//! Valkey, managed ones included, with no server setting. Keyspace notifications need
//! `notify-keyspace-events` set on the server (often refused by managed services) and carry only
//! the key's name, so every change costs another read. Streams keep a history nobody needs here
//! (a breaker's state is its last update, not its past), must be trimmed, and need a blocking
//! read per instance. What pub/sub loses while an instance is disconnected, the instance reads
//! from the keys when it reconnects.
//!
//! # When Redis is down, slow, or never answers
//!
//! Calls never wait on Redis: publishing happens on a background task, and every publish, read,
//! connection and ping has a timeout ([`RedisStateStore::timeout`] for connecting and each answer,
//! [`StoreOptions::timeout`](tower_circuit_breaker::store::StoreOptions::timeout) for a whole
//! publish or read; both 1 s by default, both set from the config file's `store.timeout`). The instance
//! goes on deciding alone; the registry's health says degraded, with the error; `/metrics`
//! (through `tower-circuit-breaker-axum`) shows the store disconnected and counts publish
//! failures and dropped updates. Once Redis answers again, the instance publishes the breakers
//! it changed meanwhile and reads the others.
//!
//! A value under a breaker's key that is not a breaker's state (another program's string, a
//! hash) is ignored with a warning and counted, never taken.
//!
//! A single server is supported. Redis Cluster is not (the script touches two keys that may live
//! on different nodes), nor is Sentinel: this crate builds redis-rs without either. `rediss://`
//! (TLS) needs redis-rs's TLS features, which this crate does not turn on: such a URL is refused
//! when the store is made, naming `store.redis.url`. A server that restarts without its data is
//! caught up by the instances (see the [`store`](tower_circuit_breaker::store) module).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod record;
mod store;

use std::time::Duration;

pub use self::store::RedisStateStore;
use tower_circuit_breaker::registry::CircuitBreakerRegistry;
use tower_circuit_breaker::store::{AttachError, StoreHandle};

/// Why a Redis store could not be made or attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// redis-rs cannot read the URL.
    #[error("store.redis.url: {0}")]
    Url(#[source] redis::RedisError),
    /// The registry refused the store.
    #[error(transparent)]
    Attach(#[from] AttachError),
}

/// Attaches the Redis store the registry's config names (its `store` section), with the
/// section's settings; `Ok(None)` when the config names no store. Call it inside the Tokio
/// runtime the app runs on.
///
/// # Errors
///
/// [`Error::Url`] for a URL redis-rs cannot read, [`Error::Attach`] when the registry has a
/// store already or no runtime is running.
pub fn attach(registry: &CircuitBreakerRegistry) -> Result<Option<StoreHandle>, Error> {
    let Some(config) = &registry.settings().store else {
        return Ok(None);
    };
    let Some(redis) = &config.redis else {
        return Ok(None);
    };
    let store = RedisStateStore::from_config(redis)?
        .timeout(config.timeout.unwrap_or(Duration::from_secs(1)));
    Ok(Some(registry.attach_store(store, config.options())?))
}
