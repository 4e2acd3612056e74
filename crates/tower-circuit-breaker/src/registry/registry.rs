use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::file::{Format, LoadError, RegistryConfig, RegistryFile};
use super::settings::{BreakerSettings, RegistrySettings};
use super::snapshot::{BreakerSnapshot, RegistrySnapshot};
use crate::keyed::{KeyedBreakers, KeyedBuilder};
use crate::store::{
    AttachError, BreakerId, Link, StateStore, StoreHandle, StoreOptions, StoreStatus,
};
use crate::{CircuitBreaker, CircuitState, Clock, ConfigError, Transition};

/// Transitions a registry-wide subscriber may fall behind by before it skips ahead.
const TRANSITION_CAPACITY: usize = 256;

/// Named circuit breakers with shared defaults, per-name settings and a bound on their number.
///
/// A cheap handle: clones share the breakers. See the [module docs](super) for an example.
#[derive(Clone)]
pub struct CircuitBreakerRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RegistrySettings,
    clock: Clock,
    breakers: RwLock<BTreeMap<Arc<str>, Entry>>,
    /// Keyed groups made from this registry's settings, in the order they were made.
    keyed: RwLock<Vec<KeyedBreakers>>,
    transitions: broadcast::Sender<Transition>,
    /// The periodic summary task, ended with the registry.
    summary: Mutex<Option<tokio::task::AbortHandle>>,
    /// The shared state store, once attached; keyed groups made from the registry hold it too.
    store: StoreCell,
}

/// Where a registry keeps its store link, shared with its keyed groups.
pub(crate) type StoreCell = Arc<OnceLock<Arc<Link>>>;

/// A registry that does not keep its breakers alive: what its store's tasks hold.
#[derive(Clone)]
pub(crate) struct WeakRegistry(Weak<Inner>);

impl WeakRegistry {
    pub(crate) fn upgrade(&self) -> Option<CircuitBreakerRegistry> {
        self.0
            .upgrade()
            .map(|inner| CircuitBreakerRegistry { inner })
    }
}

#[derive(Clone)]
struct Entry {
    breaker: CircuitBreaker,
    critical: bool,
}

/// Why a registry could not hand out a breaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No breaker has this name, and the registry does not create breakers on demand.
    #[error("no breaker named `{name}`, and auto-create is off")]
    UnknownBreaker {
        /// The name asked for.
        name: String,
    },
    /// The registry already holds as many breakers as it may.
    #[error("cannot create breaker `{name}`: the registry holds its maximum of {max} breakers")]
    Full {
        /// The name asked for.
        name: String,
        /// The bound.
        max: usize,
    },
}

impl CircuitBreakerRegistry {
    /// A registry with the defaults: breakers made on first use with
    /// [`CircuitBreakerConfig::default`](crate::CircuitBreakerConfig::default), at most 1000.
    pub fn new() -> Self {
        Self::build(RegistrySettings::default(), Clock::default())
    }

    /// Starts a [`RegistryBuilder`], to set up a registry in code.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            settings: RegistrySettings::default(),
            clock: None,
        }
    }

    /// A registry from the `circuit_breakers` section of a config, for apps that keep it inside a
    /// config type of their own. Fields in errors are named from the section down
    /// (`component_configs.pgmq.failure_threshold`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that breaks its rule.
    pub fn from_config(config: &RegistryConfig) -> Result<Self, ConfigError> {
        Ok(Self::build(config.resolve("")?, Clock::default()))
    }

    /// Loads a config file, its format told by its extension (`.yaml`, `.yml`, `.toml`, `.json`).
    ///
    /// # Errors
    ///
    /// A [`LoadError`]: the file cannot be read, its extension is unknown, its text is not valid
    /// in its format (with line and column), or a setting is of the wrong type, unknown, or
    /// breaks its rule (with the setting's path, such as
    /// `circuit_breakers.component_configs.pgmq.failure_threshold`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let format = Format::from_path(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(format, &text)
    }

    /// Loads a config written in YAML.
    ///
    /// # Errors
    ///
    /// As [`from_path`](Self::from_path), but for reading.
    #[cfg(feature = "yaml")]
    pub fn from_yaml_str(text: &str) -> Result<Self, LoadError> {
        Self::from_text(Format::Yaml, text)
    }

    /// Loads a config written in TOML.
    ///
    /// # Errors
    ///
    /// As [`from_path`](Self::from_path), but for reading.
    #[cfg(feature = "toml")]
    pub fn from_toml_str(text: &str) -> Result<Self, LoadError> {
        Self::from_text(Format::Toml, text)
    }

    /// Loads a config written in JSON.
    ///
    /// # Errors
    ///
    /// As [`from_path`](Self::from_path), but for reading.
    #[cfg(feature = "json")]
    pub fn from_json_str(text: &str) -> Result<Self, LoadError> {
        Self::from_text(Format::Json, text)
    }

    fn from_text(format: Format, text: &str) -> Result<Self, LoadError> {
        let file: RegistryFile = format.parse(text)?;
        let settings = file.circuit_breakers.resolve("circuit_breakers")?;
        Ok(Self::build(settings, Clock::default()))
    }

    /// Makes the named breakers and starts the summary task, if one is asked for.
    fn build(settings: RegistrySettings, clock: Clock) -> Self {
        let registry = Self {
            inner: Arc::new(Inner {
                clock,
                breakers: RwLock::new(BTreeMap::new()),
                keyed: RwLock::new(Vec::new()),
                transitions: broadcast::channel(TRANSITION_CAPACITY).0,
                summary: Mutex::new(None),
                store: StoreCell::default(),
                settings,
            }),
        };
        {
            let mut breakers = registry.write();
            for (name, settings) in &registry.inner.settings.breakers {
                let name: Arc<str> = name.as_str().into();
                let entry = registry.inner.make(name.clone(), settings);
                breakers.insert(name, entry);
            }
        }
        if let Some(every) = registry.inner.settings.metrics_interval {
            registry.start_summary(every);
        }
        registry
    }

    /// The breaker called `name`, if the registry has it.
    pub fn get(&self, name: &str) -> Option<CircuitBreaker> {
        self.read().get(name).map(|entry| entry.breaker.clone())
    }

    /// The breaker called `name`, made with the default settings if the registry does not have it
    /// yet and auto-create is on. The same name always gives the same breaker, whichever thread
    /// asks first.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UnknownBreaker`] when the name is new and auto-create is off,
    /// [`RegistryError::Full`] when the name is new and the registry holds its maximum (nothing
    /// is created).
    pub fn get_or_create(&self, name: &str) -> Result<CircuitBreaker, RegistryError> {
        if let Some(breaker) = self.get(name) {
            return Ok(breaker);
        }
        let settings = &self.inner.settings;
        if !settings.auto_create {
            return Err(RegistryError::UnknownBreaker {
                name: name.to_owned(),
            });
        }
        let mut breakers = self.write();
        if let Some(entry) = breakers.get(name) {
            return Ok(entry.breaker.clone());
        }
        if breakers.len() >= settings.max_breakers {
            return Err(RegistryError::Full {
                name: name.to_owned(),
                max: settings.max_breakers,
            });
        }
        let name: Arc<str> = name.into();
        let entry = self.inner.make(name.clone(), &settings.default);
        let breaker = entry.breaker.clone();
        breakers.insert(name.clone(), entry);
        drop(breakers);
        if let Some(link) = self.inner.store.get() {
            link.made(BreakerId { group: None, name });
        }
        Ok(breaker)
    }

    /// Starts a [keyed group](crate::keyed) of breakers called `group`, one per key, made with
    /// this registry's settings: its default settings for a key, a name's own settings for a key
    /// of that name, its clock, its `enabled` switch and its [`subscribe`](Self::subscribe)
    /// channel. [`KeyedBuilder::build`] adds the group to the registry, whose snapshot (so health
    /// and metrics) then lists the group's breakers by key. The group's bound is its own
    /// ([`KeyedBuilder::max_breakers`]), apart from the registry's.
    pub fn keyed(&self, group: impl Into<Arc<str>>) -> KeyedBuilder {
        KeyedBuilder::from_registry(
            group.into(),
            self.clone(),
            self.inner.clock.clone(),
            self.inner.transitions.clone(),
        )
    }

    /// Where the registry keeps its store link (shared with its keyed groups).
    pub(crate) fn store_cell(&self) -> StoreCell {
        Arc::clone(&self.inner.store)
    }

    /// Shares the breakers' state with the app's other instances through `store` (see the
    /// [`store`](crate::store) module): from now on the registry's breakers publish their
    /// transitions and take the others', and their shared state is read at once. Two tasks on
    /// the current Tokio runtime do the work, until the registry is dropped; no call ever waits
    /// on the store.
    ///
    /// # Errors
    ///
    /// [`AttachError::AlreadyAttached`] if the registry has a store,
    /// [`AttachError::NoRuntime`] outside a Tokio runtime, [`AttachError::ZeroTimeout`] for a
    /// zero [`timeout`](StoreOptions::timeout).
    pub fn attach_store(
        &self,
        store: impl StateStore,
        options: StoreOptions,
    ) -> Result<StoreHandle, AttachError> {
        if options.timeout.is_zero() {
            return Err(AttachError::ZeroTimeout);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AttachError::NoRuntime)?;
        if self.inner.store.get().is_some() {
            return Err(AttachError::AlreadyAttached);
        }
        let link = Link::start(self, Arc::new(store), options, &runtime);
        if let Err(link) = self.inner.store.set(Arc::clone(&link)) {
            link.stop();
            return Err(AttachError::AlreadyAttached);
        }
        Ok(StoreHandle::new(link))
    }

    /// The attached store's link, if there is one.
    pub fn store(&self) -> Option<StoreHandle> {
        self.inner.store.get().cloned().map(StoreHandle::new)
    }

    /// How the attached store is doing, if there is one.
    pub fn store_status(&self) -> Option<StoreStatus> {
        self.inner.store.get().map(|link| link.status())
    }

    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.inner))
    }

    /// The keyed groups made from this registry, in the order they were made.
    pub fn keyed_groups(&self) -> Vec<KeyedBreakers> {
        self.inner
            .keyed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn add_keyed(&self, keyed: KeyedBreakers) -> Result<(), ConfigError> {
        let mut groups = self
            .inner
            .keyed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if groups.iter().any(|group| group.group() == keyed.group()) {
            return Err(ConfigError::new(
                "group",
                format!(
                    "the registry already has a keyed group called `{}`",
                    keyed.group()
                ),
            ));
        }
        groups.push(keyed);
        Ok(())
    }

    /// Whether the breaker called `name` is critical for health; `None` for an unknown name.
    pub fn is_critical(&self, name: &str) -> Option<bool> {
        self.read().get(name).map(|entry| entry.critical)
    }

    /// Every breaker, by name.
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        self.read()
            .values()
            .map(|entry| entry.breaker.clone())
            .collect()
    }

    /// How many breakers the registry holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The settings the registry was built with, merged and validated.
    pub fn settings(&self) -> &RegistrySettings {
        &self.inner.settings
    }

    /// A snapshot of every breaker (its settings, metrics and last transitions), by name, and
    /// of the registry's bound. Each breaker's figures are read when the snapshot is taken; the
    /// breakers keep running meanwhile.
    pub fn snapshot(&self) -> RegistrySnapshot {
        // The handles are copied out under the lock; each breaker is read after it is released.
        let entries: Vec<Entry> = self.read().values().cloned().collect();
        let settings = &self.inner.settings;
        let mut breakers: Vec<BreakerSnapshot> = entries.iter().map(Entry::snapshot).collect();
        let keyed = self
            .keyed_groups()
            .iter()
            .map(|group| {
                let mut snapshot = group.snapshot();
                breakers.append(&mut snapshot.breakers);
                snapshot
            })
            .collect();
        RegistrySnapshot {
            enabled: settings.enabled,
            max_breakers: settings.max_breakers,
            auto_create: settings.auto_create,
            breakers,
            keyed,
            store: self.store_status(),
        }
    }

    /// A snapshot of the breaker called `name` alone, if the registry has it.
    pub fn snapshot_of(&self, name: &str) -> Option<BreakerSnapshot> {
        let entry = self.read().get(name).cloned()?;
        Some(entry.snapshot())
    }

    /// Every transition of every breaker of this registry from now on, in one receiver. A
    /// receiver more than 256 transitions behind skips ahead (see [`broadcast::Receiver::recv`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.inner.transitions.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Arc<str>, Entry>> {
        // Nothing panics under this lock; a poisoned one still holds a consistent map.
        self.inner
            .breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Arc<str>, Entry>> {
        self.inner
            .breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn start_summary(&self, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "circuit breaker registry: metrics_collection_interval is set but no Tokio \
                 runtime is running, so no summary will be logged"
            );
            return;
        };
        // The first tick is one interval from now, not from when the task is first polled.
        let first = tokio::time::Instant::now() + every;
        let task = runtime.spawn(summarize(Arc::downgrade(&self.inner), first, every));
        *self
            .inner
            .summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
    }
}

impl Default for CircuitBreakerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl Entry {
    fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot::of(&self.breaker, self.critical, None)
    }
}

impl Inner {
    fn make(&self, name: Arc<str>, settings: &BreakerSettings) -> Entry {
        let breaker = CircuitBreaker::builder(name.clone())
            .config(settings.config.clone())
            .clock(self.clock.clone())
            .transitions_to(self.transitions.clone())
            .build();
        // Settings were validated when the registry was built; should one still be refused, the
        // breaker falls back to the default config rather than failing the caller.
        let breaker = breaker.unwrap_or_else(|err| {
            tracing::error!(%err, "circuit breaker settings refused; using the defaults");
            CircuitBreaker::new(name)
        });
        if !self.settings.enabled {
            breaker.disable_by_config();
        }
        Entry {
            breaker,
            critical: settings.critical,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(link) = self.store.get() {
            link.stop();
        }
        if let Some(task) = self
            .summary
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// Logs one `tracing` event per breaker every `every`, until the registry is gone.
async fn summarize(registry: Weak<Inner>, first: tokio::time::Instant, every: Duration) {
    let mut ticker = tokio::time::interval_at(first, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = registry.upgrade() else {
            return;
        };
        let registry = CircuitBreakerRegistry { inner };
        let snapshot = registry.snapshot();
        // A keyed group's breakers can be thousands: one line for each group instead.
        for group in &snapshot.keyed {
            let count = |state| group.by_state.get(state);
            tracing::info!(
                target: "tower_circuit_breaker::summary",
                group = %group.group,
                live = group.live,
                max_breakers = group.max_breakers,
                open = count(CircuitState::Open),
                half_open = count(CircuitState::HalfOpen),
                overflowed_calls = group.overflowed_calls,
                evictions = group.evictions,
                "keyed circuit breakers `{}`: {} of at most {} keys, {} open, {} half-open",
                group.group,
                group.live,
                group.max_breakers,
                count(CircuitState::Open),
                count(CircuitState::HalfOpen),
            );
        }
        for breaker in snapshot
            .breakers
            .into_iter()
            .filter(|breaker| breaker.group.is_none())
        {
            let metrics = &breaker.metrics;
            let window = metrics.window.unwrap_or_default();
            tracing::info!(
                target: "tower_circuit_breaker::summary",
                breaker = %breaker.name,
                state = %metrics.state,
                calls = metrics.total_calls,
                failures = metrics.failed_calls,
                rejected = metrics.rejected_calls(),
                window_calls = window.calls,
                failure_rate = window.failure_rate(),
                slow_call_rate = window.slow_call_rate(),
                "circuit breaker `{}`: {}, {} calls, {} rejected",
                breaker.name,
                metrics.state,
                metrics.total_calls,
                metrics.rejected_calls(),
            );
        }
    }
}

impl fmt::Debug for CircuitBreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerRegistry")
            .field("breakers", &self.len())
            .field("max_breakers", &self.inner.settings.max_breakers)
            .finish_non_exhaustive()
    }
}

/// Sets up a [`CircuitBreakerRegistry`] in code; made by [`CircuitBreakerRegistry::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct RegistryBuilder {
    settings: RegistrySettings,
    clock: Option<Clock>,
}

impl RegistryBuilder {
    /// With `false`, every breaker admits every call and still measures. Default `true`.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// The most breakers the registry holds. Default 1000.
    pub fn max_breakers(mut self, max: usize) -> Self {
        self.settings.max_breakers = max;
        self
    }

    /// Whether unknown names get a new breaker with the default settings. Default `true`.
    pub fn auto_create(mut self, on: bool) -> Self {
        self.settings.auto_create = on;
        self
    }

    /// Logs a `tracing` summary of every breaker this often, on the Tokio runtime the registry
    /// is built on, until the registry is dropped. Default: never.
    pub fn metrics_interval(mut self, every: Duration) -> Self {
        self.settings.metrics_interval = Some(every);
        self
    }

    /// The settings of breakers without settings of their own (a config, or
    /// [`BreakerSettings`] to make them critical).
    pub fn default_config(mut self, settings: impl Into<BreakerSettings>) -> Self {
        self.settings.default = settings.into();
        self
    }

    /// A breaker called `name` with these settings, made when the registry is built.
    pub fn breaker(
        mut self,
        name: impl Into<String>,
        settings: impl Into<BreakerSettings>,
    ) -> Self {
        self.settings.breakers.insert(name.into(), settings.into());
        self
    }

    /// The clock every breaker reads (default: Tokio's).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = Some(clock.into());
        self
    }

    /// The shared state store the registry's config names, as a file's `store` section would
    /// (checked when built). The store's crate attaches it (the registry itself only keeps it).
    pub fn store(mut self, store: super::StoreConfig) -> Self {
        self.settings.store = Some(store);
        self
    }

    /// Validates the settings and builds the registry.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting, as a file would (`default_config.failure_threshold`,
    /// `component_configs.pgmq.break_duration`, `global_settings.max_circuit_breakers`).
    pub fn build(self) -> Result<CircuitBreakerRegistry, ConfigError> {
        let settings = self.settings;
        if settings.max_breakers == 0 {
            return Err(ConfigError::new(
                "global_settings.max_circuit_breakers",
                "must be at least 1, got 0",
            ));
        }
        if settings.breakers.len() > settings.max_breakers {
            return Err(ConfigError::new(
                "global_settings.max_circuit_breakers",
                format!(
                    "must be at least the {} breakers configured, got {}",
                    settings.breakers.len(),
                    settings.max_breakers
                ),
            ));
        }
        if settings
            .metrics_interval
            .is_some_and(|every| every.is_zero())
        {
            return Err(ConfigError::new(
                "global_settings.metrics_collection_interval",
                "must be greater than 0s, got 0s",
            ));
        }
        settings
            .default
            .config
            .validate()
            .map_err(|err| err.within("default_config"))?;
        for (name, breaker) in &settings.breakers {
            breaker
                .config
                .validate()
                .map_err(|err| err.within(&format!("component_configs.{name}")))?;
        }
        if let Some(store) = &settings.store {
            store.check("store")?;
        }
        Ok(CircuitBreakerRegistry::build(
            settings,
            self.clock.unwrap_or_default(),
        ))
    }
}
