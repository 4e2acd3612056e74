//! A store in this process's memory: registries linked through clones of one
//! [`InMemoryStateStore`], for tests and examples.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::sync::{lock, Mutex, MutexGuard};

use super::{BreakerId, Inbox, SharedState, StateStore, StoreError, StoreFuture, Stored};

/// Breaker states shared between registries of one process: every clone is the same store.
///
/// It keeps each breaker's last update (an open one until its break ends) and tells every
/// listening registry about each update, in the order it took them. [`set_down`](Self::set_down)
/// makes it refuse everything, as an unreachable server would, to see how a registry copes.
#[derive(Debug, Clone, Default)]
pub struct InMemoryStateStore {
    inner: Arc<Mutex<Hub>>,
}

#[derive(Debug, Default)]
struct Hub {
    version: u64,
    down: bool,
    states: HashMap<BreakerId, (SharedState, Option<Instant>)>,
    listeners: Vec<mpsc::UnboundedSender<SharedState>>,
}

impl InMemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the store refuse every publish, read and listen (`true`), as if it were unreachable,
    /// or work again (`false`). Going down ends every listener.
    pub fn set_down(&self, down: bool) {
        let mut hub = self.hub();
        hub.down = down;
        if down {
            hub.listeners.clear();
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        lock(&self.inner)
    }

    fn check(hub: &Hub) -> Result<(), StoreError> {
        if hub.down {
            Err(StoreError::new("the in-memory store is down"))
        } else {
            Ok(())
        }
    }
}

impl StateStore for InMemoryStateStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn publish<'a>(&'a self, update: &'a SharedState) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut hub = self.hub();
            Self::check(&hub)?;
            hub.version += 1;
            let mut update = update.clone();
            update.version = hub.version;
            // A break too long for the clock never ends.
            let until = update
                .open_for
                .and_then(|open_for| Instant::now().checked_add(open_for));
            hub.states
                .insert(update.breaker.clone(), (update.clone(), until));
            hub.listeners
                .retain(|listener| listener.send(update.clone()).is_ok());
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        breakers: &'a [BreakerId],
    ) -> StoreFuture<'a, Result<Vec<Stored>, StoreError>> {
        Box::pin(async move {
            let hub = self.hub();
            Self::check(&hub)?;
            let now = Instant::now();
            Ok(breakers
                .iter()
                .map(|id| {
                    let Some((state, until)) = hub.states.get(id) else {
                        return Stored::Missing;
                    };
                    let mut state = state.clone();
                    if let Some(until) = until {
                        // Gone once the break is over, as a key with a TTL would be.
                        let Some(left) = until.checked_duration_since(now) else {
                            return Stored::Missing;
                        };
                        state.open_for = Some(left.max(Duration::ZERO));
                    }
                    Stored::State(state)
                })
                .collect())
        })
    }

    fn listen<'a>(&'a self, inbox: &'a Inbox) -> StoreFuture<'a, StoreError> {
        Box::pin(async move {
            let mut updates = {
                let mut hub = self.hub();
                if let Err(error) = Self::check(&hub) {
                    return error;
                }
                let (sender, receiver) = mpsc::unbounded_channel();
                hub.listeners.push(sender);
                receiver
            };
            inbox.connected();
            while let Some(update) = updates.recv().await {
                inbox.receive(&update);
            }
            StoreError::new("the in-memory store went down")
        })
    }
}
