//! What a registry is built from, once merged and validated: the same whether it came from a
//! file or from code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::CircuitBreakerConfig;

/// The bound on breakers when none is given.
pub const DEFAULT_MAX_BREAKERS: usize = 1000;

/// One breaker's settings: its engine config and whether it is critical for health.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BreakerSettings {
    /// How the breaker trips and recovers.
    pub config: CircuitBreakerConfig,
    /// Whether this breaker open makes the app unhealthy rather than degraded.
    pub critical: bool,
}

impl BreakerSettings {
    /// Settings with `config`, not critical.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            critical: false,
        }
    }

    /// Marks the breaker critical (or not).
    #[must_use]
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }
}

impl From<CircuitBreakerConfig> for BreakerSettings {
    fn from(config: CircuitBreakerConfig) -> Self {
        Self::new(config)
    }
}

/// A registry's settings, merged and validated; see
/// [`CircuitBreakerRegistry::settings`](super::CircuitBreakerRegistry::settings).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RegistrySettings {
    /// Whether the breakers break (`false`: every breaker is disabled, still measuring).
    pub enabled: bool,
    /// The most breakers the registry holds.
    pub max_breakers: usize,
    /// Whether an unknown name gets a new breaker with the default settings.
    pub auto_create: bool,
    /// How often a summary of every breaker is logged, if at all.
    #[serde(
        rename = "metrics_interval_seconds",
        serialize_with = "crate::metrics::option_seconds"
    )]
    pub metrics_interval: Option<Duration>,
    /// The settings of a breaker that has no block of its own.
    pub default: BreakerSettings,
    /// The named breakers' settings, by name.
    pub breakers: BTreeMap<String, BreakerSettings>,
    /// The `store` section, checked: the store's crate attaches the store it names.
    #[serde(skip)]
    pub store: Option<super::StoreConfig>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_breakers: DEFAULT_MAX_BREAKERS,
            auto_create: true,
            metrics_interval: None,
            default: BreakerSettings::default(),
            breakers: BTreeMap::new(),
            store: None,
        }
    }
}
