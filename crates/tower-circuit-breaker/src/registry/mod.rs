//! Many named breakers with shared defaults, configured from one file or in code.
//!
//! A [`CircuitBreakerRegistry`] holds the breakers of an app (a queue, a database, a cache, an
//! object store) by name. It is what health and metrics endpoints iterate over, and what code
//! asks for a breaker by name:
//!
//! - a default [`BreakerSettings`] and per-name settings, merged key by key onto the default: a
//!   key a block leaves out takes the file's default, not the crate's;
//! - [`get`](CircuitBreakerRegistry::get), and [`get_or_create`](CircuitBreakerRegistry::get_or_create)
//!   when auto-create is on; the same name always gives the same breaker;
//! - a bound on how many breakers it holds (names can come from the network: the bound keeps
//!   memory fixed);
//! - a `critical` flag per breaker, which decides the app's [`HealthStatus`];
//! - a serializable [`snapshot`](CircuitBreakerRegistry::snapshot) and one
//!   [`subscribe`](CircuitBreakerRegistry::subscribe) for every breaker's transitions;
//! - with a metrics interval, a `tracing` summary of every breaker (target
//!   `tower_circuit_breaker::summary`) on the Tokio runtime, ended when the registry is dropped.
//!
//! It is not a web framework's piece: the `tower-circuit-breaker-axum` crate serves its health,
//! metrics and dashboard.
//!
//! # The file
//!
//! YAML, TOML or JSON with one shape ([`RegistryFile`]); durations are written `"30s"`, and the
//! `*_seconds` keys (bare numbers) are accepted spellings of the duration keys:
//!
//! ```yaml
//! circuit_breakers:
//!   enabled: true                               # false: breakers admit everything, still measure
//!   global_settings:
//!     max_circuit_breakers: 50                  # the bound
//!     auto_create_enabled: true                 # unknown names get the default settings
//!     min_state_transition_interval_seconds: 1  # every breaker's min_transition_interval
//!     metrics_collection_interval_seconds: 30   # a tracing summary every 30 s
//!   default_config:
//!     failure_threshold: 5
//!     timeout_seconds: 30                       # or break_duration: 30s
//!     success_threshold: 2
//!   component_configs:
//!     pgmq:
//!       failure_threshold: 3
//!       timeout_seconds: 15
//!       critical: true                          # open: the app is unhealthy
//! ```
//!
//! Every setting of [`CircuitBreakerConfig`](crate::CircuitBreakerConfig) can be given in
//! `default_config` and in a component block (`failure_rate`, `slow_call`, `break_backoff`,
//! `half_open_max_calls`, ...); a rule given in a block replaces the default's rule whole.
//!
//! Unknown keys are refused (a typo never falls back to a default), and every error names the
//! setting's path and the rule: `circuit_breakers.component_configs.pgmq.failure_threshold: must
//! be at least 1, got 0`. A syntax error gives its line and column.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};
//! use tower_circuit_breaker::CircuitState;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = CircuitBreakerRegistry::from_yaml_str(r#"
//! circuit_breakers:
//!   default_config: { failure_threshold: 5, break_duration: 30s }
//!   component_configs:
//!     pgmq: { failure_threshold: 3, critical: true }
//! "#)?;
//!
//! let pgmq = registry.get("pgmq").expect("configured breakers exist from the start");
//! assert_eq!(pgmq.config().failure_threshold, 3);
//! assert_eq!(pgmq.config().break_duration, Duration::from_secs(30)); // from the file's default
//!
//! for _ in 0..3 {
//!     let _ = pgmq.call(|| async { Err::<(), _>("connection refused") }).await;
//! }
//! assert_eq!(pgmq.state(), CircuitState::Open);
//! assert_eq!(registry.snapshot().health(), HealthStatus::Unhealthy);
//!
//! let cache = registry.get_or_create("cache")?; // made with the default settings
//! assert_eq!(cache.config().failure_threshold, 5);
//! # Ok(())
//! # }
//! ```

mod file;
#[allow(clippy::module_inception)]
mod registry;
mod settings;
mod snapshot;

pub use self::file::{
    BreakerOverrides, GlobalSettings, LoadError, RedisStoreConfig, RegistryConfig, RegistryFile,
    StoreConfig, SyntaxError,
};
pub use self::registry::{CircuitBreakerRegistry, RegistryBuilder, RegistryError};
pub(crate) use self::registry::{StoreCell, WeakRegistry};
pub use self::settings::{BreakerSettings, RegistrySettings, DEFAULT_MAX_BREAKERS};
pub use self::snapshot::{BreakerSnapshot, HealthStatus, RegistrySnapshot};
