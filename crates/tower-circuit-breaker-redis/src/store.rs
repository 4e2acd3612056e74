//! [`RedisStateStore`]: the engine's [`StateStore`] on redis-rs.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use tower_circuit_breaker::registry::RedisStoreConfig;
use tower_circuit_breaker::store::{
    BreakerId, Inbox, SharedState, StateStore, StoreError, StoreFuture, Stored, DEFAULT_KEY_PREFIX,
};
use tower_circuit_breaker::CircuitState;

use crate::record::{self, Keys, Outgoing};
use crate::Error;

/// How often a listening connection is pinged, to find a server that stopped answering.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a closed breaker's key stays.
const CLOSED_KEY_LIVES: Duration = Duration::from_secs(7 * 24 * 3600);

/// Breaker states shared through a Redis (or Valkey) server: a key per breaker and one pub/sub
/// channel. Cheap to clone; attach it with
/// [`CircuitBreakerRegistry::attach_store`](tower_circuit_breaker::CircuitBreakerRegistry::attach_store),
/// or let [`attach`](crate::attach) do it from the registry's config. See the
/// [crate docs](crate) for what it keeps where.
#[derive(Clone)]
pub struct RedisStateStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// Made on first use, inside the runtime; reconnects by itself.
    commands: OnceLock<ConnectionManager>,
    keys: Keys,
    channel: String,
    publish: Script,
    read: Script,
    timeout: Duration,
}

impl RedisStateStore {
    /// A store on the server at `url` (`redis://[user:password@]host[:port][/db]`,
    /// `unix:///path`), with keys under
    /// `circuit-breaker:`. Connects on first use, not here: a server that is down now is not an
    /// error.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] when redis-rs cannot read `url`.
    pub fn open(url: &str) -> Result<Self, Error> {
        Self::build(url, DEFAULT_KEY_PREFIX, Duration::from_secs(1))
    }

    /// A store from a config file's `store.redis` section.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn from_config(config: &RedisStoreConfig) -> Result<Self, Error> {
        Self::build(&config.url, &config.key_prefix, Duration::from_secs(1))
    }

    /// Puts `prefix` before every key and the channel's name (default `circuit-breaker:`), so apps
    /// sharing a server keep apart. An empty prefix is taken as the default.
    #[must_use]
    pub fn key_prefix(self, prefix: &str) -> Self {
        let prefix = if prefix.is_empty() {
            DEFAULT_KEY_PREFIX
        } else {
            prefix
        };
        let timeout = self.inner.timeout;
        self.rebuilt(prefix, timeout)
    }

    /// How long connecting, or waiting for one answer, may take before it fails (default 1 s).
    /// A zero is taken as the default.
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        let timeout = if timeout.is_zero() {
            Duration::from_secs(1)
        } else {
            timeout
        };
        let prefix = self.inner.keys.prefix().to_owned();
        self.rebuilt(&prefix, timeout)
    }

    fn rebuilt(self, prefix: &str, timeout: Duration) -> Self {
        let client = self.inner.client.clone();
        Self::with_client(client, prefix, timeout)
    }

    fn build(url: &str, prefix: &str, timeout: Duration) -> Result<Self, Error> {
        let client = Client::open(url).map_err(Error::Url)?;
        Ok(Self::with_client(client, prefix, timeout))
    }

    fn with_client(client: Client, prefix: &str, timeout: Duration) -> Self {
        let keys = Keys::new(prefix);
        Self {
            inner: Arc::new(Inner {
                client,
                commands: OnceLock::new(),
                channel: keys.channel(),
                keys,
                publish: Script::new(record::PUBLISH),
                read: Script::new(record::READ),
                timeout,
            }),
        }
    }

    /// The key a breaker's state is kept under.
    pub fn key_of(&self, breaker: &BreakerId) -> String {
        self.inner.keys.breaker(breaker)
    }

    /// The channel updates are published on.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    fn commands(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(manager) = self.inner.commands.get() {
            return Ok(manager.clone());
        }
        // Fails fast: the engine retries, and must never wait long on a dead server.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.inner.timeout);
        let manager = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)
            .map_err(StoreError::new)?;
        Ok(self.inner.commands.get_or_init(|| manager).clone())
    }

    async fn publish_now(&self, update: &SharedState) -> Result<(), StoreError> {
        let record = serde_json::to_string(&Outgoing::of(update)).map_err(StoreError::new)?;
        let open_for = match (update.state, update.open_for) {
            (CircuitState::Open, open_for) => open_for
                .unwrap_or_default()
                .as_millis()
                .min(record::MAX_OPEN_FOR_MS)
                .to_string(),
            _ => String::new(),
        };
        // A closed breaker's key stays a week, so an instance that was away reads the close; an
        // isolated or disabled one's until the next update.
        let lives = if update.state == CircuitState::Closed {
            CLOSED_KEY_LIVES.as_millis().to_string()
        } else {
            String::new()
        };
        let mut commands = self.commands()?;
        let _version: String = self
            .inner
            .publish
            .key(self.inner.keys.breaker(&update.breaker))
            .key(self.inner.keys.version())
            .arg(&self.inner.channel)
            .arg(record)
            .arg(open_for)
            .arg(lives)
            .invoke_async(&mut commands)
            .await
            .map_err(StoreError::new)?;
        Ok(())
    }

    async fn read_now(&self, breakers: &[BreakerId]) -> Result<Vec<Stored>, StoreError> {
        let mut invocation = self.inner.read.prepare_invoke();
        for breaker in breakers {
            invocation.key(self.inner.keys.breaker(breaker));
        }
        let mut commands = self.commands()?;
        let values: Vec<Vec<u8>> = invocation
            .invoke_async(&mut commands)
            .await
            .map_err(StoreError::new)?;
        let (now, values) = values
            .split_first()
            .ok_or_else(|| StoreError::new("the read script answered nothing"))?;
        let now_ms: u64 = std::str::from_utf8(now)
            .ok()
            .and_then(|now| now.parse().ok())
            .ok_or_else(|| StoreError::new("the read script answered no time"))?;
        if values.len() != breakers.len() {
            return Err(StoreError::new(
                "the read script answered the wrong number of keys",
            ));
        }
        Ok(breakers
            .iter()
            .zip(values)
            .map(|(breaker, value)| match value.as_slice() {
                [] => Stored::Missing,
                [b'!', error @ ..] => Stored::Invalid(format!(
                    "key `{}`: {}",
                    self.inner.keys.breaker(breaker),
                    String::from_utf8_lossy(error)
                )),
                text => match record::parse_stored(text, now_ms, breaker) {
                    Ok(state) => Stored::State(state),
                    Err(why) => Stored::Invalid(format!(
                        "key `{}`: {why}",
                        self.inner.keys.breaker(breaker)
                    )),
                },
            })
            .collect())
    }

    async fn listen_now(&self, inbox: &Inbox) -> StoreError {
        let timeout = self.inner.timeout;
        let subscribe = async {
            let (mut sink, stream) = self.inner.client.get_async_pubsub().await?.split();
            sink.subscribe(&self.inner.channel).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        let (mut sink, mut stream) = match tokio::time::timeout(timeout, subscribe).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return StoreError::new(error),
            Err(_) => return StoreError::new(format!("no answer to subscribe within {timeout:?}")),
        };
        inbox.connected();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return StoreError::new("the server closed the connection");
                    };
                    match record::parse(message.get_payload_bytes(), None) {
                        Ok(update) => inbox.receive(&update),
                        Err(why) => inbox.invalid(&format!("channel `{}`", self.inner.channel), &why),
                    }
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                    match answered {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return StoreError::new(error),
                        Err(_) => return StoreError::new(format!("no answer to a ping within {timeout:?}")),
                    }
                }
            }
        }
    }
}

impl StateStore for RedisStateStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn publish<'a>(&'a self, update: &'a SharedState) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.publish_now(update))
    }

    fn read<'a>(
        &'a self,
        breakers: &'a [BreakerId],
    ) -> StoreFuture<'a, Result<Vec<Stored>, StoreError>> {
        Box::pin(self.read_now(breakers))
    }

    fn listen<'a>(&'a self, inbox: &'a Inbox) -> StoreFuture<'a, StoreError> {
        Box::pin(self.listen_now(inbox))
    }
}

impl fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("RedisStateStore")
            .field("key_prefix", &self.inner.keys.prefix())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}
