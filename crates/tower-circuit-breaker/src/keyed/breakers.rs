use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::pins::Pins;
use crate::registry::{BreakerSettings, BreakerSnapshot, CircuitBreakerRegistry, StoreCell};
use crate::store::BreakerId;
use crate::{CircuitBreaker, CircuitBreakerConfig, CircuitState, Clock, ConfigError, Transition};

/// The longest key a breaker is made for, in bytes: a DNS name (253) with a port. A longer key
/// goes to the no-key breaker.
pub const MAX_KEY_LEN: usize = 260;

/// After a sweep that found nothing to evict, the next `len / SKIP_AFTER_FAILED_SWEEP` new keys
/// go to the overflow breaker without one.
const SKIP_AFTER_FAILED_SWEEP: usize = 16;

/// How often the overflow is logged at most, by the group's clock: a minute.
const WARN_EVERY_NANOS: u64 = 60_000_000_000;

/// One breaker per key, made on first use, at most [`max_breakers`](KeyedBuilder::max_breakers)
/// of them. A cheap handle: clones share the breakers. See the [module docs](super).
#[derive(Clone)]
pub struct KeyedBreakers {
    inner: Arc<Inner>,
}

struct Inner {
    group: Arc<str>,
    template: Arc<CircuitBreakerConfig>,
    critical: bool,
    /// Keys with settings of their own (a registry's per-name settings).
    per_key: BTreeMap<Box<str>, (Arc<CircuitBreakerConfig>, bool)>,
    maker: Maker,
    max_breakers: usize,
    /// Live breakers by key. Read without a lock; written only under `ring`.
    map: papaya::HashMap<Arc<str>, Arc<Slot>, foldhash::fast::RandomState>,
    /// The same breakers in insertion slots, for eviction; the lock every insert takes.
    ring: Mutex<Ring>,
    /// Calls for a new key while every breaker is busy, open or half-open.
    overflow: Arc<Slot>,
    /// Calls without a usable key.
    no_key: Arc<Slot>,
    overflowed: AtomicU64,
    evicted: AtomicU64,
}

/// A breaker in the map.
struct Slot {
    breaker: CircuitBreaker,
    critical: bool,
    /// Calls in flight on this breaker, and whether it was evicted.
    pins: Pins,
    /// Used again since it was made or since the eviction hand last passed it (the clock
    /// algorithm's reference bit).
    used: AtomicBool,
}

/// The breakers in the order the eviction hand visits them (the clock algorithm).
struct Ring {
    slots: Vec<Arc<Slot>>,
    hand: usize,
    /// New keys still to send to the overflow breaker without a sweep, after a sweep that found
    /// nothing to evict: a sixteenth of the ring, so a flood of new keys while every breaker is
    /// pinned costs at most 32 slot visits a key, and a group whose breakers free up takes new
    /// keys again after that many.
    skip: usize,
    /// When the overflow was last logged, by the group's clock.
    warned: Option<u64>,
}

impl KeyedBreakers {
    /// Starts a [`KeyedBuilder`] for a group of breakers called `group` (its name in logs,
    /// metrics and health).
    pub fn builder(group: impl Into<Arc<str>>) -> KeyedBuilder {
        KeyedBuilder::new(group.into())
    }

    /// The breaker for `key`, made now if the key has none yet; the no-key breaker when `key` is
    /// `None`, empty, longer than [`MAX_KEY_LEN`] or the name of the overflow or no-key breaker
    /// (so every breaker of a group has a name of its own); the overflow breaker when the group
    /// holds its maximum and none of its breakers can be evicted.
    ///
    /// While the returned handle lives, its breaker is not evicted: hold it for the length of
    /// the call, and the call's outcome always lands on the breaker its key has.
    #[inline]
    pub fn get(&self, key: Option<&str>) -> KeyedBreaker {
        match key {
            Some(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => {
                self.find(key, true).unwrap_or_else(|| self.insert(key))
            }
            _ => self.no_key(),
        }
    }

    /// The breaker `key` has now, if it has one: unlike [`get`](Self::get), never makes one,
    /// evicts one or answers with the overflow or no-key breaker. For acting on one key's
    /// breaker (`isolate`, `reset`) or reading it.
    pub fn lookup(&self, key: &str) -> Option<KeyedBreaker> {
        self.find(key, false)
    }

    /// The breaker `key` has in the map, pinned; with `used`, marked as used again.
    #[inline]
    fn find(&self, key: &str, used: bool) -> Option<KeyedBreaker> {
        let map = &self.inner.map;
        let guard = map.guard();
        map.get(key, &guard)
            .and_then(|slot| KeyedBreaker::pin(slot, used))
    }

    /// The breaker of calls without a usable key.
    pub fn no_key(&self) -> KeyedBreaker {
        KeyedBreaker::pin_special(&self.inner.no_key)
    }

    /// The breaker of calls for new keys while the group is full.
    pub fn overflow(&self) -> KeyedBreaker {
        KeyedBreaker::pin_special(&self.inner.overflow)
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// How many keys have a breaker now (not counting the overflow and no-key breakers). Never
    /// more than [`max_breakers`](Self::max_breakers).
    pub fn len(&self) -> usize {
        self.ring().slots.len()
    }

    /// Whether no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys with a breaker at once.
    pub fn max_breakers(&self) -> usize {
        self.inner.max_breakers
    }

    /// Calls for a new key sent to the overflow breaker, since the group was made.
    pub fn overflowed_calls(&self) -> u64 {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    /// Idle breakers evicted to make room for new keys, since the group was made.
    pub fn evictions(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// Every breaker of the group, by key, the overflow and no-key breakers last, each with
    /// whether it is critical for health.
    ///
    /// A breaker held by a clone of its handle is not evicted (see the [module docs](super)):
    /// keep these only as long as needed.
    pub fn breakers(&self) -> Vec<(CircuitBreaker, bool)> {
        // Cloned under the insert lock: none is evicted between being listed and being held.
        self.listed(|slot| (slot.breaker.clone(), slot.critical))
    }

    /// `take` of every slot, under the insert lock, by key, the overflow and no-key ones last.
    fn listed<T>(&self, take: impl Fn(&Arc<Slot>) -> T) -> Vec<T> {
        let ring = self.ring();
        let mut slots: Vec<&Arc<Slot>> = ring.slots.iter().collect();
        slots.sort_unstable_by(|a, b| a.breaker.name().cmp(b.breaker.name()));
        slots
            .into_iter()
            .chain([&self.inner.overflow, &self.inner.no_key])
            .map(take)
            .collect()
    }

    /// A snapshot of the group: its figures, and every breaker's (named by its key). Taking one
    /// keeps no breaker from being evicted; one evicted meanwhile is read as it was.
    pub fn snapshot(&self) -> KeyedSnapshot {
        // The slots, not handles to their breakers: holding a slot keeps nothing from eviction.
        let breakers: Vec<BreakerSnapshot> = self
            .listed(Arc::clone)
            .iter()
            .map(|slot| {
                BreakerSnapshot::of(&slot.breaker, slot.critical, Some(self.inner.group.clone()))
            })
            .collect();
        let mut by_state = StateCounts::default();
        for breaker in &breakers {
            *by_state.get_mut(breaker.metrics.state) += 1;
        }
        KeyedSnapshot {
            group: self.inner.group.clone(),
            max_breakers: self.inner.max_breakers,
            live: breakers.len() - 2,
            overflowed_calls: self.overflowed_calls(),
            evictions: self.evictions(),
            by_state,
            breakers,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Nothing panics under this lock with the ring half-changed.
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The first call for `key` (or one that lost a race with its eviction): made under the
    /// insert lock, which the call path for a known key never takes.
    #[cold]
    #[inline(never)]
    fn insert(&self, key: &str) -> KeyedBreaker {
        let inner = &*self.inner;
        if key == inner.overflow.breaker.name() || key == inner.no_key.breaker.name() {
            return self.no_key();
        }
        let mut ring = self.ring();
        let guard = inner.map.guard();
        // Made by another thread meanwhile? (An evicted breaker left the map under this lock.)
        if let Some(handle) = self.find(key, true) {
            return handle;
        }
        let at = if ring.slots.len() < inner.max_breakers {
            None
        } else {
            match ring.evict(inner, &guard) {
                Some(at) => Some(at),
                None => return self.overflowed(&mut ring),
            }
        };
        let slot = Arc::new(inner.make(key));
        // A key used once is evicted before one used again: the first call leaves `used` clear.
        let handle = KeyedBreaker::pin(&slot, false).unwrap_or_else(|| self.overflow());
        let name: Arc<str> = slot.breaker.shared_name();
        inner.map.insert(name, Arc::clone(&slot), &guard);
        match at {
            Some(at) => ring.slots[at] = slot,
            None => ring.slots.push(slot),
        }
        handle
    }

    fn overflowed(&self, ring: &mut Ring) -> KeyedBreaker {
        self.inner.overflowed.fetch_add(1, Ordering::Relaxed);
        let now = self.inner.maker.clock.now_nanos();
        if ring
            .warned
            .is_none_or(|at| now.saturating_sub(at) >= WARN_EVERY_NANOS)
        {
            ring.warned = Some(now);
            tracing::warn!(
                group = %self.inner.group,
                max_breakers = self.inner.max_breakers,
                overflowed_calls = self.overflowed_calls(),
                "keyed circuit breakers `{}`: none of its {} breakers could be evicted (open, \
                 half-open, isolated, in use or used lately); calls for new keys go through the \
                 overflow breaker (logged at most once a minute)",
                self.inner.group,
                self.inner.max_breakers,
            );
        }
        self.overflow()
    }
}

impl Ring {
    /// Evicts one idle closed breaker, the first the hand finds not used since it last passed;
    /// its place in the ring. `None` when none can be evicted.
    fn evict(&mut self, inner: &Inner, guard: &impl papaya::Guard) -> Option<usize> {
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let len = self.slots.len();
        // Twice round: the first pass may only clear `used` bits.
        for _ in 0..len.saturating_mul(2) {
            let at = self.hand;
            self.hand = if at + 1 >= len { 0 } else { at + 1 };
            let slot = self.slots.get(at)?;
            if slot.used.load(Ordering::Relaxed) {
                slot.used.store(false, Ordering::Relaxed);
                continue;
            }
            if slot.try_evict() {
                inner.map.remove(slot.breaker.name(), guard);
                inner.evicted.fetch_add(1, Ordering::Relaxed);
                return Some(at);
            }
        }
        self.skip = len / SKIP_AFTER_FAILED_SWEEP;
        None
    }
}

impl Slot {
    /// Marks the slot evicted if no call is in flight on it, its breaker is closed or disabled,
    /// and nobody else holds the breaker.
    fn try_evict(&self) -> bool {
        // The stored state: time alone moves a breaker only between open and half-open, so it
        // tells closed from not closed, and reading it runs nothing (no transition, no event)
        // while the slot is marked. Checked first as well, so an open breaker is not marked at
        // all and its callers' pins never fail meanwhile.
        let idle =
            || !self.breaker.stored_state().is_failure_state() && self.breaker.handles() == 1;
        idle() && self.pins.evict_if(idle)
    }
}

impl Inner {
    fn make(&self, key: &str) -> Slot {
        let (config, critical) = self
            .per_key
            .get(key)
            .map_or((&self.template, self.critical), |(config, critical)| {
                (config, *critical)
            });
        let breaker = self.maker.make(key.into(), Arc::clone(config), true);
        Slot::new(breaker, critical)
    }
}

/// What every breaker of a group is made with.
struct Maker {
    group: Arc<str>,
    clock: Clock,
    transitions: Option<broadcast::Sender<Transition>>,
    enabled: bool,
    /// The registry's store, told of each breaker made (to read its shared state).
    store: Option<StoreCell>,
}

impl Maker {
    /// A breaker; with `one`, counting on one stripe (a key's breaker, which sees a share of the
    /// traffic).
    fn make(&self, name: Arc<str>, config: Arc<CircuitBreakerConfig>, one: bool) -> CircuitBreaker {
        let mut builder = CircuitBreaker::builder(name)
            .group(Arc::clone(&self.group))
            .shared_config(config)
            .clock(self.clock.clone());
        if one {
            builder = builder.one_stripe();
        }
        if let Some(sender) = &self.transitions {
            builder = builder.transitions_to(sender.clone());
        }
        let breaker = builder.build_validated();
        if !self.enabled {
            breaker.disable_by_config();
        }
        if let Some(link) = self.store.as_ref().and_then(|cell| cell.get()) {
            if link.shares_keyed() {
                link.made(BreakerId {
                    group: Some(Arc::clone(&self.group)),
                    name: breaker.shared_name(),
                });
            }
        }
        breaker
    }
}

impl Slot {
    fn new(breaker: CircuitBreaker, critical: bool) -> Self {
        Self {
            breaker,
            critical,
            pins: Pins::new(),
            used: AtomicBool::new(false),
        }
    }
}

impl fmt::Debug for KeyedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("group", &self.inner.group)
            .field("len", &self.len())
            .field("max_breakers", &self.inner.max_breakers)
            .finish_non_exhaustive()
    }
}

/// A breaker of a [`KeyedBreakers`] group, held for one call: while a handle lives, its breaker
/// is not evicted. Dereferences to the [`CircuitBreaker`].
pub struct KeyedBreaker {
    slot: Arc<Slot>,
}

impl KeyedBreaker {
    /// Pins `slot` for a call, unless it was evicted.
    #[inline]
    fn pin(slot: &Arc<Slot>, mark_used: bool) -> Option<Self> {
        if !slot.pins.pin() {
            return None;
        }
        if mark_used && !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        Some(Self {
            slot: Arc::clone(slot),
        })
    }

    /// The overflow and no-key breakers: never evicted.
    fn pin_special(slot: &Arc<Slot>) -> Self {
        slot.pins.pin_always();
        Self {
            slot: Arc::clone(slot),
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.slot.breaker
    }

    /// Whether this breaker being open makes the app unhealthy.
    pub fn is_critical(&self) -> bool {
        self.slot.critical
    }
}

impl Drop for KeyedBreaker {
    #[inline]
    fn drop(&mut self) {
        self.slot.pins.unpin();
    }
}

impl Deref for KeyedBreaker {
    type Target = CircuitBreaker;

    fn deref(&self) -> &CircuitBreaker {
        &self.slot.breaker
    }
}

impl Borrow<CircuitBreaker> for KeyedBreaker {
    fn borrow(&self) -> &CircuitBreaker {
        &self.slot.breaker
    }
}

impl fmt::Debug for KeyedBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyedBreaker")
            .field(&self.slot.breaker)
            .finish()
    }
}

/// A [`KeyedBreakers`] group at one moment. Serializes with these field names.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct KeyedSnapshot {
    /// The group's name.
    pub group: Arc<str>,
    /// The most keys with a breaker at once.
    pub max_breakers: usize,
    /// Keys with a breaker now.
    pub live: usize,
    /// Calls for a new key sent to the overflow breaker while the group was full.
    pub overflowed_calls: u64,
    /// Idle breakers evicted to make room.
    pub evictions: u64,
    /// How many of the group's breakers (the overflow and no-key ones too) are in each state.
    pub by_state: StateCounts,
    /// Every breaker, named by its key; the overflow and no-key breakers last.
    pub breakers: Vec<BreakerSnapshot>,
}

/// A count of breakers in each state; serializes as an object with every state's name
/// (`closed`, `open`, `half_open`, `isolated`, `disabled`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StateCounts {
    /// Closed breakers.
    pub closed: usize,
    /// Open breakers.
    pub open: usize,
    /// Half-open breakers.
    pub half_open: usize,
    /// Isolated breakers.
    pub isolated: usize,
    /// Disabled breakers.
    pub disabled: usize,
}

impl StateCounts {
    /// The count of breakers in `state`.
    pub const fn get(&self, state: CircuitState) -> usize {
        match state {
            CircuitState::Closed => self.closed,
            CircuitState::Open => self.open,
            CircuitState::HalfOpen => self.half_open,
            CircuitState::Isolated => self.isolated,
            CircuitState::Disabled => self.disabled,
        }
    }

    /// All of them.
    pub const fn total(&self) -> usize {
        self.closed + self.open + self.half_open + self.isolated + self.disabled
    }

    fn get_mut(&mut self, state: CircuitState) -> &mut usize {
        match state {
            CircuitState::Closed => &mut self.closed,
            CircuitState::Open => &mut self.open,
            CircuitState::HalfOpen => &mut self.half_open,
            CircuitState::Isolated => &mut self.isolated,
            CircuitState::Disabled => &mut self.disabled,
        }
    }
}

/// Sets up a [`KeyedBreakers`] group; made by [`KeyedBreakers::builder`], or by
/// [`CircuitBreakerRegistry::keyed`] with the registry's settings.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct KeyedBuilder {
    group: Arc<str>,
    template: BreakerSettings,
    per_key: BTreeMap<String, BreakerSettings>,
    max_breakers: usize,
    clock: Option<Clock>,
    transitions: Option<broadcast::Sender<Transition>>,
    enabled: bool,
    overflow_name: String,
    no_key_name: String,
    registry: Option<CircuitBreakerRegistry>,
}

impl KeyedBuilder {
    fn new(group: Arc<str>) -> Self {
        Self {
            group,
            template: BreakerSettings::default(),
            per_key: BTreeMap::new(),
            max_breakers: 1000,
            clock: None,
            transitions: None,
            enabled: true,
            overflow_name: "<overflow>".to_owned(),
            no_key_name: "<no key>".to_owned(),
            registry: None,
        }
    }

    /// Set up from a registry's settings, and added to the registry when built.
    pub(crate) fn from_registry(
        group: Arc<str>,
        registry: CircuitBreakerRegistry,
        clock: Clock,
        transitions: broadcast::Sender<Transition>,
    ) -> Self {
        let settings = registry.settings();
        Self {
            template: settings.default.clone(),
            per_key: settings.breakers.clone(),
            enabled: settings.enabled,
            clock: Some(clock),
            transitions: Some(transitions),
            registry: Some(registry),
            ..Self::new(group)
        }
    }

    /// The settings of a key's breaker (a config, or [`BreakerSettings`] to make them critical).
    /// Default: [`CircuitBreakerConfig::default`], or the registry's default settings.
    pub fn template(mut self, settings: impl Into<BreakerSettings>) -> Self {
        self.template = settings.into();
        self
    }

    /// Settings of its own for the breaker of `key`. From a registry, every name with settings
    /// of its own has them here too.
    pub fn key(mut self, key: impl Into<String>, settings: impl Into<BreakerSettings>) -> Self {
        self.per_key.insert(key.into(), settings.into());
        self
    }

    /// The most keys with a breaker at once. Default 1000.
    pub fn max_breakers(mut self, max: usize) -> Self {
        self.max_breakers = max;
        self
    }

    /// The clock every breaker reads (default: Tokio's, or the registry's).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = Some(clock.into());
        self
    }

    /// The name of the breaker that takes calls for new keys while the group is full. Default
    /// `<overflow>` (the angle brackets cannot appear in a host name, so it never meets a key).
    pub fn overflow_name(mut self, name: impl Into<String>) -> Self {
        self.overflow_name = name.into();
        self
    }

    /// The name of the breaker that takes calls without a usable key. Default `<no key>`.
    pub fn no_key_name(mut self, name: impl Into<String>) -> Self {
        self.no_key_name = name.into();
        self
    }

    /// Validates the settings and builds the group (and, from a registry, adds it there).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: `template.<field>`, `keys.<key>.<field>`,
    /// `max_breakers` (at least 1), `overflow_name` or `no_key_name` (not empty, not the same),
    /// or `group` (empty, or a registry already has a group of this name).
    pub fn build(self) -> Result<KeyedBreakers, ConfigError> {
        if self.group.is_empty() {
            return Err(ConfigError::new("group", "must not be empty"));
        }
        if self.max_breakers == 0 {
            return Err(ConfigError::new(
                "max_breakers",
                "must be at least 1, got 0",
            ));
        }
        for (field, name) in [
            ("overflow_name", &self.overflow_name),
            ("no_key_name", &self.no_key_name),
        ] {
            if name.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if self.overflow_name == self.no_key_name {
            return Err(ConfigError::new(
                "no_key_name",
                format!(
                    "must differ from overflow_name, both are `{}`",
                    self.no_key_name
                ),
            ));
        }
        self.template
            .config
            .validate()
            .map_err(|err| err.within("template"))?;
        let mut per_key = BTreeMap::new();
        for (key, settings) in self.per_key {
            settings
                .config
                .validate()
                .map_err(|err| err.within(&format!("keys.{key}")))?;
            per_key.insert(
                key.into_boxed_str(),
                (Arc::new(settings.config), settings.critical),
            );
        }
        let template = Arc::new(self.template.config);
        let critical = self.template.critical;
        let maker = Maker {
            group: Arc::clone(&self.group),
            clock: self.clock.unwrap_or_default(),
            transitions: self.transitions,
            enabled: self.enabled,
            store: self
                .registry
                .as_ref()
                .map(CircuitBreakerRegistry::store_cell),
        };
        // Both may carry much traffic: a counter stripe per thread.
        let special = |name: String| {
            Arc::new(Slot::new(
                maker.make(name.into(), Arc::clone(&template), false),
                critical,
            ))
        };
        let (overflow, no_key) = (special(self.overflow_name), special(self.no_key_name));
        let inner = Inner {
            group: self.group,
            critical,
            per_key,
            maker,
            max_breakers: self.max_breakers,
            map: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            ring: Mutex::new(Ring {
                slots: Vec::new(),
                hand: 0,
                skip: 0,
                warned: None,
            }),
            overflow,
            no_key,
            overflowed: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            template,
        };
        let keyed = KeyedBreakers {
            inner: Arc::new(inner),
        };
        if let Some(registry) = self.registry {
            registry.add_keyed(keyed.clone())?;
        }
        Ok(keyed)
    }
}
