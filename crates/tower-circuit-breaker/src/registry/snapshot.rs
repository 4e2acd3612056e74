//! What a registry shows of its breakers: a serializable snapshot and the health it adds up to.

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use crate::keyed::KeyedSnapshot;
use crate::store::StoreStatus;
use crate::{CircuitBreaker, CircuitBreakerConfig, CircuitMetrics, CircuitState, Transition};

/// Every breaker of a registry at one moment, by name. Serializes with these field names:
/// `enabled`, `max_breakers`, `auto_create`, `breakers` (each a [`BreakerSnapshot`]), `keyed`
/// (each a [`KeyedSnapshot`]) and, with a store attached, `store` (a [`StoreStatus`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// Whether the breakers break (see [`RegistrySettings::enabled`](super::RegistrySettings::enabled)).
    pub enabled: bool,
    /// The most breakers the registry holds.
    pub max_breakers: usize,
    /// Whether unknown names get a breaker on first use.
    pub auto_create: bool,
    /// The named breakers, by name, then the breakers of each [keyed group](crate::keyed) (named
    /// by key, with their [`group`](BreakerSnapshot::group)).
    pub breakers: Vec<BreakerSnapshot>,
    /// The keyed groups' own figures (their breakers are in `breakers`, so here each group's
    /// `breakers` is empty).
    pub keyed: Vec<KeyedSnapshot>,
    /// The shared state store, if one is attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
}

impl RegistrySnapshot {
    /// The worst health of any breaker and of the store: [`Healthy`](HealthStatus::Healthy) when
    /// every breaker is closed or disabled (or there is none) and the store, if any, is
    /// connected; a store that is not connected makes it [`Degraded`](HealthStatus::Degraded)
    /// at worst.
    pub fn health(&self) -> HealthStatus {
        self.breakers
            .iter()
            .map(BreakerSnapshot::health)
            .chain(self.store.as_ref().map(StoreStatus::health))
            .max()
            .unwrap_or(HealthStatus::Healthy)
    }
}

/// One breaker in a [`RegistrySnapshot`]. Serializes as `name`, `group`, `critical`, `health`, `config`
/// (as a config file writes it), `metrics` (see [`CircuitMetrics`]) and `recent_transitions`
/// (oldest first).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The breaker's name; a keyed breaker's key.
    pub name: Arc<str>,
    /// The [keyed group](crate::keyed) the breaker belongs to; `None` for a named breaker.
    pub group: Option<Arc<str>>,
    /// Whether it being open makes the app unhealthy.
    pub critical: bool,
    /// Its settings.
    pub config: CircuitBreakerConfig,
    /// Its state and counters.
    pub metrics: CircuitMetrics,
    /// Its last transitions (at most ten), oldest first.
    pub recent_transitions: Vec<Transition>,
}

impl BreakerSnapshot {
    /// Reads `breaker` now.
    pub(crate) fn of(breaker: &CircuitBreaker, critical: bool, group: Option<Arc<str>>) -> Self {
        Self {
            name: breaker.shared_name(),
            group,
            critical,
            config: breaker.config().clone(),
            metrics: breaker.metrics(),
            recent_transitions: breaker.recent_transitions(),
        }
    }

    /// What this breaker's state means for the app's health.
    pub fn health(&self) -> HealthStatus {
        HealthStatus::of(self.metrics.state, self.critical)
    }
}

impl Serialize for BreakerSnapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("BreakerSnapshot", 7)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("group", &self.group)?;
        out.serialize_field("critical", &self.critical)?;
        out.serialize_field("health", &self.health())?;
        out.serialize_field("config", &self.config)?;
        out.serialize_field("metrics", &self.metrics)?;
        out.serialize_field("recent_transitions", &self.recent_transitions)?;
        out.end()
    }
}

/// How healthy an app is, judged from its breakers. Ordered from best to worst; serializes as
/// `healthy`, `degraded` or `unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every breaker is closed or disabled.
    Healthy,
    /// A non-critical breaker is open, half-open or isolated, or a critical one is half-open
    /// (probing a recovery): the app works, with less.
    Degraded,
    /// A critical breaker is open or isolated: the app cannot do its job.
    Unhealthy,
}

impl HealthStatus {
    /// The health a breaker in `state` gives, critical or not.
    pub const fn of(state: CircuitState, critical: bool) -> Self {
        match state {
            CircuitState::Closed | CircuitState::Disabled => Self::Healthy,
            CircuitState::Open | CircuitState::Isolated if critical => Self::Unhealthy,
            CircuitState::Open | CircuitState::Isolated | CircuitState::HalfOpen => Self::Degraded,
        }
    }

    /// `healthy`, `degraded` or `unhealthy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
