//! A registry's link to its store: the two background tasks, and the rules that decide which
//! update a breaker takes (see the [module docs](super) for the rules in words).

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{
    BreakerId, Inbox, SharedState, StateStore, StoreError, StoreOptions, StoreStatus, Stored,
};
use crate::event::Human;
use crate::registry::{CircuitBreakerRegistry, WeakRegistry};
use crate::sync::{lock, Mutex};
use crate::{CircuitBreaker, CircuitState, Transition, TransitionReason};

/// Pauses between attempts to listen again, doubling from the first to the last.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LAST_PAUSE: Duration = Duration::from_secs(5);
/// After a failed publish or read, how long until the instance tries to sync again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The last error before the first connection.
const NOT_YET: &str = "not connected yet";
/// Breakers read in one request.
const READ_BATCH: usize = 256;
/// Breakers made since the last read that wait to be read; past this, everything is read again.
const MAX_PENDING_READS: usize = 4096;
/// Breakers tracked before the ones the registry no longer has are forgotten (keyed breakers are
/// evicted and made again by the thousand).
const FIRST_PRUNE: usize = 4096;

pub(crate) struct Link {
    store: Arc<dyn StateStore>,
    registry: WeakRegistry,
    origin: Arc<str>,
    share_keyed: bool,
    timeout: Duration,
    counts: Counts,
    /// The store is listening.
    listening: AtomicBool,
    /// The last publish or read failed.
    failing: AtomicBool,
    synced: watch::Sender<bool>,
    last_error: Mutex<Option<String>>,
    /// What the instance knows of each breaker's shared state.
    tracked: Mutex<HashMap<BreakerId, Tracked>>,
    /// Work for the publishing task besides transitions.
    wanted: Mutex<Wanted>,
    work: Notify,
    tasks: Mutex<Vec<AbortHandle>>,
    /// How many tracked breakers make the publishing task forget the ones that are gone.
    prune_at: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct Counts {
    published: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    applied: AtomicU64,
    invalid: AtomicU64,
}

/// One breaker's shared state, as this instance knows it.
#[derive(Debug, Default)]
struct Tracked {
    /// The version of the last update taken or skipped.
    last_version: u64,
    /// This instance's publications for the breaker, counted.
    published: u64,
    /// The last of them that came back from the store (or failed).
    echoed: u64,
    /// A publication failed or was dropped: the store may not have the breaker's state.
    dirty: bool,
    /// The state last published or taken.
    known: Option<CircuitState>,
}

#[derive(Debug, Default)]
struct Wanted {
    /// Publish what the store may lack, then read every breaker.
    sync: bool,
    /// With `sync`: transitions were dropped, so any breaker may differ from the store.
    full: bool,
    /// Breakers made since the last read.
    reads: Vec<BreakerId>,
}

impl Link {
    /// Links `registry` to `store` and starts the two tasks on `runtime`.
    pub(crate) fn start(
        registry: &CircuitBreakerRegistry,
        store: Arc<dyn StateStore>,
        options: StoreOptions,
        runtime: &tokio::runtime::Handle,
    ) -> Arc<Self> {
        let origin = options
            .instance
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), fastrand::u32(..)));
        let link = Arc::new(Self {
            store,
            registry: registry.downgrade(),
            origin: origin.into(),
            share_keyed: options.share_keyed,
            timeout: options.timeout,
            counts: Counts::default(),
            listening: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            synced: watch::channel(false).0,
            last_error: Mutex::new(Some(NOT_YET.to_owned())),
            tracked: Mutex::new(HashMap::new()),
            wanted: Mutex::new(Wanted::default()),
            work: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            prune_at: std::sync::atomic::AtomicUsize::new(FIRST_PRUNE),
        });
        let transitions = registry.subscribe();
        let publishing = runtime.spawn(publish_loop(Arc::clone(&link), transitions));
        let listening = runtime.spawn(listen_loop(Arc::clone(&link)));
        lock(&link.tasks).extend([publishing.abort_handle(), listening.abort_handle()]);
        link
    }

    /// Ends both tasks (the registry is gone).
    pub(crate) fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn status(&self) -> StoreStatus {
        let connected = self.is_connected();
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StoreStatus {
            kind: self.store.kind(),
            instance: Arc::clone(&self.origin),
            connected,
            synced: *self.synced.borrow(),
            published: count(&self.counts.published),
            publish_failures: count(&self.counts.failures),
            dropped_updates: count(&self.counts.dropped),
            received: count(&self.counts.received),
            applied: count(&self.counts.applied),
            invalid_updates: count(&self.counts.invalid),
            last_error: if connected {
                None
            } else {
                lock(&self.last_error).clone()
            },
        }
    }

    fn is_connected(&self) -> bool {
        self.listening.load(Ordering::Acquire) && !self.failing.load(Ordering::Acquire)
    }

    pub(crate) async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`.
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Whether this link shares the breakers of keyed groups.
    pub(crate) fn shares_keyed(&self) -> bool {
        self.share_keyed
    }

    /// A breaker was made: its shared state is read soon.
    pub(crate) fn made(&self, id: BreakerId) {
        {
            let mut wanted = lock(&self.wanted);
            if wanted.reads.len() < MAX_PENDING_READS {
                wanted.reads.push(id);
            } else {
                wanted.reads.clear();
                wanted.sync = true;
            }
        }
        self.work.notify_one();
    }

    // ===== from the store =====

    pub(crate) fn connected(&self) {
        self.listening.store(true, Ordering::Release);
        let was_lost = lock(&self.last_error)
            .take()
            .is_some_and(|error| error != NOT_YET);
        if was_lost {
            tracing::info!(
                store = self.store.kind(),
                "circuit breaker store: connected again; publishing what it missed and reading"
            );
        }
        self.want_sync(false);
    }

    fn disconnected(&self, error: &StoreError) {
        let was = self.listening.swap(false, Ordering::AcqRel);
        self.synced.send_replace(false);
        // No echo comes back on a lost connection: the sync on reconnecting decides instead.
        for known in lock(&self.tracked).values_mut() {
            known.echoed = known.published;
        }
        *lock(&self.last_error) = Some(error.to_string());
        if was {
            tracing::warn!(
                store = self.store.kind(),
                %error,
                "circuit breaker store: connection lost; breakers decide alone until it is back"
            );
        }
    }

    pub(crate) fn receive(&self, update: &SharedState) {
        self.counts.received.fetch_add(1, Ordering::Relaxed);
        self.take(update);
    }

    pub(crate) fn invalid(&self, what: &str, why: &dyn fmt::Display) {
        self.counts.invalid.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            store = self.store.kind(),
            what,
            why = %why,
            "circuit breaker store: ignored a value that is not a breaker's state"
        );
    }

    /// Takes an update from the store, by the rules of the module docs.
    fn take(&self, update: &SharedState) {
        if matches!(update.state, CircuitState::HalfOpen) {
            self.invalid(&update.breaker.to_string(), &"half-open is never shared");
            return;
        }
        if update.breaker.group.is_some() && !self.share_keyed {
            return;
        }
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        if !registry.settings().enabled {
            // Breaking is switched off here by config: the breakers stay disabled, whatever the
            // fleet does (they still publish nothing).
            return;
        }
        let Some(breaker) = find(&registry, &update.breaker) else {
            // Not made here (yet): it is read when it is made.
            return;
        };
        let mut tracked = lock(&self.tracked);
        let known = tracked.entry(update.breaker.clone()).or_default();
        let own = *update.origin == *self.origin;
        if own {
            known.echoed = known.echoed.max(update.sequence);
        }
        if update.version <= known.last_version {
            return;
        }
        known.last_version = update.version;
        if own {
            // Taken again only if another instance's update, older in the store's order, was
            // taken after this one was made: the breaker's last change came from the store.
            if update.sequence < known.published || !follows_the_store(&breaker) {
                return;
            }
        } else if known.published > known.echoed {
            // A publication of this instance's is on its way: later in the store's order.
            return;
        }
        let open_for = matches!(update.state, CircuitState::Open)
            .then(|| update.open_for.unwrap_or(breaker.config().break_duration));
        known.known = Some(update.state);
        // What this instance could not publish is superseded.
        known.dirty = false;
        // A `tracing` subscriber's panic on the transition's event (or on the line below) must
        // not end the task: the state has changed by then.
        let adopted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let adopted = breaker.adopt(update.state, open_for);
            if adopted {
                tracing::info!(
                    breaker = %update.breaker.name,
                    group = update.breaker.group.as_deref(),
                    origin = %update.origin,
                    state = %update.state,
                    reason = %update.reason,
                    "circuit breaker {} {}, following instance `{}` ({})",
                    update.breaker,
                    update.state,
                    update.origin,
                    update.reason,
                );
            }
            adopted
        }));
        if adopted.unwrap_or(true) {
            self.counts.applied.fetch_add(1, Ordering::Relaxed);
        }
    }

    // ===== to the store =====

    fn want_sync(&self, full: bool) {
        {
            let mut wanted = lock(&self.wanted);
            wanted.sync = true;
            wanted.full |= full;
        }
        self.work.notify_one();
    }

    /// Publishes `update` with this instance's next sequence number for its breaker. Returns
    /// whether the store took it.
    async fn send(&self, mut update: SharedState) -> bool {
        update.sequence = {
            let mut tracked = lock(&self.tracked);
            let known = tracked.entry(update.breaker.clone()).or_default();
            known.published += 1;
            known.known = Some(update.state);
            known.published
        };
        let sent = tokio::time::timeout(self.timeout, self.store.publish(&update)).await;
        let failed = match sent {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(StoreError::new(format!(
                "no answer within {}",
                Human(self.timeout)
            ))),
        };
        let mut tracked = lock(&self.tracked);
        let known = tracked.entry(update.breaker.clone()).or_default();
        match failed {
            None => {
                self.counts.published.fetch_add(1, Ordering::Relaxed);
                // The newest state went through, whatever failed before it.
                if known.published == update.sequence {
                    known.dirty = false;
                }
                drop(tracked);
                self.failing.store(false, Ordering::Release);
                true
            }
            Some(error) => {
                // No echo is coming (or, after a timeout, it does not matter if one does).
                known.echoed = known.echoed.max(update.sequence);
                known.dirty = true;
                drop(tracked);
                self.failed(&error);
                false
            }
        }
    }

    fn failed(&self, error: &StoreError) {
        self.counts.failures.fetch_add(1, Ordering::Relaxed);
        let was_failing = self.failing.swap(true, Ordering::AcqRel);
        *lock(&self.last_error) = Some(error.to_string());
        if !was_failing {
            tracing::warn!(
                store = self.store.kind(),
                %error,
                "circuit breaker store: a publish or read failed; breakers decide alone meanwhile"
            );
        }
    }

    /// Publishes a local transition, if it is one the others take.
    async fn publish_transition(&self, transition: Transition) -> bool {
        let shared = !matches!(
            transition.reason,
            TransitionReason::Shared | TransitionReason::DisabledInConfig
        ) && transition.to != CircuitState::HalfOpen
            && (transition.group.is_none() || self.share_keyed);
        if !shared {
            return true;
        }
        let update = SharedState {
            breaker: BreakerId {
                group: transition.group,
                name: transition.breaker,
            },
            state: transition.to,
            open_for: transition.open_for,
            generation: transition.generation,
            origin: Arc::clone(&self.origin),
            sequence: 0,
            version: 0,
            reason: transition.reason.to_string(),
        };
        self.send(update).await
    }

    /// Does what was asked besides transitions. Returns whether everything went through.
    async fn work(&self) -> bool {
        let wanted = std::mem::take(&mut *lock(&self.wanted));
        let Some(registry) = self.registry.upgrade() else {
            return true;
        };
        let mut ok = true;
        if wanted.sync {
            ok &= self.sync(&registry, wanted.full).await;
        } else if !wanted.reads.is_empty() {
            ok &= self.read(&wanted.reads).await;
        }
        if !ok {
            // Tried again after a pause, in full: breakers made meanwhile are read too.
            lock(&self.wanted).sync = true;
        }
        ok
    }

    /// Brings this instance and the store together, after a (re)connection or dropped
    /// transitions: reads every breaker's shared state, then
    ///
    /// - publishes the breakers whose own state the store missed: a publication failed (or,
    ///   with `full`, a transition was dropped before it was published), so this instance's
    ///   state is newer than the store's;
    /// - publishes the ones the store has no state for while this instance's is not closed
    ///   (the store lost its data, or never had it): an isolate or a disable, or an open break of
    ///   this instance's own;
    /// - takes the store's state for the others, by the usual rules;
    /// - publishes the last state of breakers gone from the registry (evicted keys) whose
    ///   publication failed, then forgets them.
    ///
    /// Stops at the first failure (the next attempt starts over).
    async fn sync(&self, registry: &CircuitBreakerRegistry, full: bool) -> bool {
        let attached = self.attached(registry);
        let ids: Vec<BreakerId> = attached.iter().map(|(id, _)| id.clone()).collect();
        let Some(stored) = self.read_all(&ids).await else {
            return false;
        };
        for ((id, breaker), stored) in attached.iter().zip(stored) {
            let state = breaker.stored_state();
            // A decision of this instance's: its last change was not taken from the store.
            let own = breaker
                .last_reason()
                .is_some_and(|reason| reason != TransitionReason::Shared);
            let missed = {
                let tracked = lock(&self.tracked);
                let known = tracked.get(id);
                let changed = known.and_then(|known| known.known) != Some(state);
                known.is_some_and(|known| known.dirty) || (full && own && changed)
            };
            let publish = match stored {
                // A hand's isolate or disable in the store is not undone by a trip or a close
                // this instance could not publish meanwhile; its own hand's action is published.
                Stored::State(update)
                    if missed
                        && matches!(
                            update.state,
                            CircuitState::Isolated | CircuitState::Disabled
                        )
                        && !by_hand(breaker) =>
                {
                    self.take(&update);
                    false
                }
                _ if missed => true,
                Stored::State(update) => {
                    self.take(&update);
                    false
                }
                Stored::Missing | Stored::Invalid(_) => match state {
                    CircuitState::Isolated | CircuitState::Disabled => true,
                    CircuitState::Open => own,
                    CircuitState::Closed | CircuitState::HalfOpen => false,
                },
            };
            if publish {
                if let Some(update) = self.current(id, breaker) {
                    if !self.send(update).await {
                        return false;
                    }
                }
            }
        }
        if !self.publish_gone(&ids).await {
            return false;
        }
        self.synced.send_replace(true);
        true
    }

    /// Publishes the last known state of the breakers that are gone from the registry but whose
    /// last publication failed, and forgets them.
    async fn publish_gone(&self, live: &[BreakerId]) -> bool {
        let live: std::collections::HashSet<&BreakerId> = live.iter().collect();
        let gone: Vec<(BreakerId, CircuitState)> = lock(&self.tracked)
            .iter()
            .filter(|(id, known)| known.dirty && !live.contains(id))
            .map(|(id, known)| (id.clone(), known.known.unwrap_or(CircuitState::Closed)))
            .collect();
        for (id, state) in gone {
            // Evicted breakers are closed (or disabled): nothing else is evicted.
            let update = SharedState {
                breaker: id.clone(),
                state,
                open_for: None,
                generation: 0,
                origin: Arc::clone(&self.origin),
                sequence: 0,
                version: 0,
                reason: "its last state before it was evicted".to_owned(),
            };
            if matches!(state, CircuitState::Open | CircuitState::HalfOpen) {
                lock(&self.tracked).remove(&id);
                continue;
            }
            if !self.send(update).await {
                return false;
            }
            lock(&self.tracked).remove(&id);
        }
        true
    }

    /// Reads `ids`' shared state and takes it.
    async fn read(&self, ids: &[BreakerId]) -> bool {
        let Some(stored) = self.read_all(ids).await else {
            return false;
        };
        for stored in stored {
            if let Stored::State(update) = stored {
                self.take(&update);
            }
        }
        true
    }

    /// Reads `ids`' shared state, in batches; what cannot be read is warned about and counted.
    async fn read_all(&self, ids: &[BreakerId]) -> Option<Vec<Stored>> {
        let mut all = Vec::with_capacity(ids.len());
        for batch in ids.chunks(READ_BATCH) {
            let read = tokio::time::timeout(self.timeout, self.store.read(batch)).await;
            let error = match read {
                Ok(Ok(stored)) if stored.len() == batch.len() => {
                    self.failing.store(false, Ordering::Release);
                    for (id, stored) in batch.iter().zip(&stored) {
                        if let Stored::Invalid(why) = stored {
                            self.invalid(&id.to_string(), why);
                        }
                    }
                    all.extend(stored);
                    continue;
                }
                Ok(Ok(_)) => StoreError::new("the store answered for the wrong number of breakers"),
                Ok(Err(error)) => error,
                Err(_) => StoreError::new(format!("no answer within {}", Human(self.timeout))),
            };
            self.failed(&error);
            return None;
        }
        Some(all)
    }

    /// Forgets the breakers the registry no longer has (evicted keys), once the tracked ones
    /// outgrow twice what was left last time: what is tracked stays bounded by the breakers
    /// there are. One whose publication is on its way, or failed, is kept.
    fn prune(&self) {
        let tracked_now = lock(&self.tracked).len();
        if tracked_now <= self.prune_at.load(Ordering::Relaxed) {
            return;
        }
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let live: std::collections::HashSet<BreakerId> = self
            .attached(&registry)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut tracked = lock(&self.tracked);
        tracked
            .retain(|id, known| live.contains(id) || known.dirty || known.published > known.echoed);
        self.prune_at
            .store((tracked.len() * 2).max(FIRST_PRUNE), Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        lock(&self.tracked).len()
    }

    /// The breaker's state now, as an update, if it is one the others take.
    fn current(&self, id: &BreakerId, breaker: &CircuitBreaker) -> Option<SharedState> {
        let metrics = breaker.metrics();
        let by_config = metrics.last_transition_reason == Some(TransitionReason::DisabledInConfig);
        match metrics.state {
            CircuitState::HalfOpen => return None,
            CircuitState::Disabled if by_config => return None,
            _ => {}
        }
        Some(SharedState {
            breaker: id.clone(),
            state: metrics.state,
            open_for: metrics.next_probe_in,
            generation: metrics.generation,
            origin: Arc::clone(&self.origin),
            sequence: 0,
            version: 0,
            reason: metrics
                .last_transition_reason
                .map_or_else(|| "its state".to_owned(), |reason| reason.to_string()),
        })
    }

    /// Every breaker the store shares: the registry's named breakers, and its keyed groups'
    /// breakers when they are shared.
    fn attached(&self, registry: &CircuitBreakerRegistry) -> Vec<(BreakerId, CircuitBreaker)> {
        let named = registry.breakers().into_iter().map(|breaker| {
            let id = BreakerId {
                group: None,
                name: breaker.shared_name(),
            };
            (id, breaker)
        });
        let mut attached: Vec<_> = named.collect();
        if self.share_keyed {
            for group in registry.keyed_groups() {
                let name: Arc<str> = group.group().into();
                attached.extend(group.breakers().into_iter().map(|(breaker, _)| {
                    let id = BreakerId {
                        group: Some(Arc::clone(&name)),
                        name: breaker.shared_name(),
                    };
                    (id, breaker)
                }));
            }
        }
        attached
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("store", &self.store.kind())
            .field("origin", &self.origin)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Whether the breaker's last change was taken from the store. (Not its generation: a hand's
/// isolate of an isolated breaker starts a new one without changing anything.)
fn follows_the_store(breaker: &CircuitBreaker) -> bool {
    breaker.last_reason() == Some(TransitionReason::Shared)
}

/// Whether the breaker's last change was made by hand (an isolate, a disable, a reset, an
/// override lifted).
fn by_hand(breaker: &CircuitBreaker) -> bool {
    matches!(
        breaker.last_reason(),
        Some(
            TransitionReason::Reset
                | TransitionReason::Isolated
                | TransitionReason::Disabled
                | TransitionReason::Automatic
        )
    )
}

/// The registry's breaker `id` names, if it has one (never made here).
fn find(registry: &CircuitBreakerRegistry, id: &BreakerId) -> Option<CircuitBreaker> {
    let Some(group) = &id.group else {
        return registry.get(&id.name);
    };
    let group = registry
        .keyed_groups()
        .into_iter()
        .find(|keyed| keyed.group() == &**group)?;
    if let Some(breaker) = group.lookup(&id.name) {
        return Some(CircuitBreaker::clone(&breaker));
    }
    [group.overflow(), group.no_key()]
        .into_iter()
        .find(|special| special.name() == &*id.name)
        .map(|special| CircuitBreaker::clone(&special))
}

/// Publishes the registry's transitions, and does the work the other task and new breakers ask
/// for; tries again after a pause when the store fails.
async fn publish_loop(link: Arc<Link>, mut transitions: broadcast::Receiver<Transition>) {
    let mut retry: Option<Instant> = None;
    loop {
        let pause = async {
            match retry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let ok = tokio::select! {
            received = transitions.recv() => match received {
                Ok(transition) => link.publish_transition(transition).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    link.counts.dropped.fetch_add(missed, Ordering::Relaxed);
                    link.want_sync(true);
                    true
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = link.work.notified() => link.work().await,
            () = pause => {
                retry = None;
                link.want_sync(false);
                true
            }
        };
        if !ok && retry.is_none() {
            retry = Some(Instant::now() + RETRY_AFTER);
        }
        link.prune();
    }
}

/// Listens to the store, again and again after a growing pause while it is unreachable.
async fn listen_loop(link: Arc<Link>) {
    let inbox = Inbox {
        link: Arc::clone(&link),
    };
    let mut pause = FIRST_PAUSE;
    loop {
        let started = Instant::now();
        let error = link.store.listen(&inbox).await;
        link.disconnected(&error);
        if started.elapsed() > LAST_PAUSE * 2 {
            pause = FIRST_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InMemoryStateStore, StoreOptions};

    #[tokio::test(start_paused = true)]
    async fn what_is_tracked_stays_bounded_by_the_breakers_there_are() {
        let registry = CircuitBreakerRegistry::new();
        let hosts = registry.keyed("hosts").max_breakers(100).build().unwrap();
        let handle = registry
            .attach_store(
                InMemoryStateStore::new(),
                StoreOptions::default().share_keyed(true),
            )
            .unwrap();
        handle.synced().await;
        let mut most = 0;
        for n in 0..30_000 {
            // Each key changes state (so it is published and tracked), then is evicted by the
            // keys after it.
            let breaker = hosts.get(Some(&format!("host-{n}.example")));
            breaker.isolate();
            breaker.reset();
            drop(breaker);
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                most = most.max(handle.link.tracked());
            }
        }
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(hosts.evictions() > 29_000);
        assert!(handle.status().published > 4 * FIRST_PRUNE as u64);
        // Never more than twice the first bound (what was left after a prune, doubled), and far
        // below the 30,000 keys seen.
        assert!(most <= 2 * FIRST_PRUNE + 200, "{most}");
    }
}
