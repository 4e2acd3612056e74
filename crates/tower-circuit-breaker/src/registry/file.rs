//! The registry's config document: its serde shape, the accepted `*_seconds` spellings, the merge
//! of a component block onto the file's default, and the loaders for YAML, TOML and JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::settings::{BreakerSettings, RegistrySettings, DEFAULT_MAX_BREAKERS};
use crate::{BreakBackoff, CancelledCalls, ConfigError, FailureRateRule, SlowCallRule};

/// A whole config file: the registry's section under `circuit_breakers`.
///
/// ```yaml
/// circuit_breakers:
///   enabled: true
///   global_settings: { max_circuit_breakers: 50, auto_create_enabled: true }
///   default_config: { failure_threshold: 5, break_duration: 30s, success_threshold: 2 }
///   component_configs:
///     pgmq: { failure_threshold: 3, break_duration: 15s }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryFile {
    /// The registry.
    pub circuit_breakers: RegistryConfig,
}

/// The registry's section of a config file, as written: embed it in your own config type to keep
/// the breakers' settings beside the rest of the app's, then hand it to
/// [`CircuitBreakerRegistry::from_config`](super::CircuitBreakerRegistry::from_config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// `false` gives breakers that admit every call and still measure (each is
    /// [disabled](crate::CircuitBreaker::disable)), so breaking can be switched off without a
    /// deploy. Default `true`.
    pub enabled: bool,
    /// Settings of the registry itself.
    pub global_settings: GlobalSettings,
    /// The settings every breaker starts from.
    pub default_config: BreakerOverrides,
    /// Per-name settings, each merged key by key onto `default_config`. These breakers exist from
    /// the start; other names are made on first use when auto-create is on.
    pub component_configs: BTreeMap<String, BreakerOverrides>,
    /// Where the breakers' state is shared with the app's other instances, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreConfig>,
}

/// The `store` section: where breaker states are shared between instances (see
/// [`store`](crate::store)). The engine checks it; the store's crate connects to it
/// (`tower-circuit-breaker-redis` attaches a Redis store from it).
///
/// ```yaml
/// store:
///   redis: { url: "redis://127.0.0.1:6379/0", key_prefix: "checkout:breaker:" }
///   share_keyed: false        # keyed groups' breakers stay local (the default)
///   timeout: 1s               # a publish or read slower than this counts as failed
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// A Redis (or Valkey) server.
    pub redis: Option<RedisStoreConfig>,
    /// Whether keyed groups' breakers are shared too (default `false`).
    #[serde(default)]
    pub share_keyed: bool,
    /// This instance's name in the store (default: the process id and a random suffix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// How long a publish or read may take (default 1s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// `store.redis`: the server and where the breakers' keys go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path` (`valkey://` too; `rediss://`
    /// where the store's crate is built with TLS).
    pub url: String,
    /// Put before every key and channel name (default `circuit-breaker:`), so apps sharing a
    /// server keep apart.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_key_prefix() -> String {
    crate::store::DEFAULT_KEY_PREFIX.to_owned()
}

impl RedisStoreConfig {
    /// A server at `url`, with the default key prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_key_prefix(),
        }
    }
}

impl StoreConfig {
    /// A Redis store at `url`, with the default settings.
    pub fn redis(url: impl Into<String>) -> Self {
        Self {
            redis: Some(RedisStoreConfig::new(url)),
            share_keyed: false,
            instance: None,
            timeout: None,
        }
    }

    /// The options a registry attaches its store with.
    pub fn options(&self) -> crate::store::StoreOptions {
        let mut options = crate::store::StoreOptions::default().share_keyed(self.share_keyed);
        options.instance.clone_from(&self.instance);
        if let Some(timeout) = self.timeout {
            options.timeout = timeout;
        }
        options
    }

    /// Checks the section; errors name the field under `path`.
    pub(crate) fn check(&self, path: &str) -> Result<(), ConfigError> {
        let Some(redis) = &self.redis else {
            return Err(ConfigError::new(
                format!("{path}.redis"),
                "is required: it is the store a config file can name",
            ));
        };
        const SCHEMES: [&str; 6] = [
            "redis://",
            "rediss://",
            "unix://",
            "redis+unix://",
            "valkey://",
            "valkeys://",
        ];
        if !SCHEMES.iter().any(|scheme| redis.url.starts_with(scheme)) {
            return Err(ConfigError::new(
                format!("{path}.redis.url"),
                format!(
                    "must be a redis://, rediss://, valkey://, valkeys://, unix:// or \
                     redis+unix:// URL, got `{}`",
                    redis.url
                ),
            ));
        }
        if redis.key_prefix.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.redis.key_prefix"),
                "must not be empty",
            ));
        }
        if self.instance.as_ref().is_some_and(String::is_empty) {
            return Err(ConfigError::new(
                format!("{path}.instance"),
                "must not be empty",
            ));
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(ConfigError::new(
                format!("{path}.timeout"),
                "must be greater than 0s, got 0s",
            ));
        }
        Ok(())
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            global_settings: GlobalSettings::default(),
            default_config: BreakerOverrides::default(),
            component_configs: BTreeMap::new(),
            store: None,
        }
    }
}

/// Settings of the registry itself.
///
/// The `*_seconds` keys (bare numbers of seconds) are accepted spellings of the duration keys:
/// `min_state_transition_interval_seconds: 1` is `min_state_transition_interval: 1s`. Giving both
/// spellings of one setting is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GlobalSettings {
    /// The most breakers the registry holds; past it, creating one is refused. Default 1000.
    pub max_circuit_breakers: usize,
    /// Whether an unknown name gets a new breaker with the default settings. Default `true`.
    pub auto_create_enabled: bool,
    /// The default of every breaker's
    /// [`min_transition_interval`](crate::CircuitBreakerConfig::min_transition_interval), unless its
    /// block sets one. Default: none.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub min_state_transition_interval: Option<Duration>,
    #[serde(skip_serializing)]
    min_state_transition_interval_seconds: Option<f64>,
    /// How often a `tracing` summary of every breaker is logged. Default: never.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub metrics_collection_interval: Option<Duration>,
    #[serde(skip_serializing)]
    metrics_collection_interval_seconds: Option<f64>,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        Self {
            max_circuit_breakers: DEFAULT_MAX_BREAKERS,
            auto_create_enabled: true,
            min_state_transition_interval: None,
            min_state_transition_interval_seconds: None,
            metrics_collection_interval: None,
            metrics_collection_interval_seconds: None,
        }
    }
}

/// Some of a breaker's settings: the keys a block gives, each over the one below it.
///
/// Every field of [`CircuitBreakerConfig`](crate::CircuitBreakerConfig) can be given, plus `critical`. A rule
/// (`failure_rate`, `slow_call`, `break_backoff`) is taken whole: a block that gives one replaces
/// the default's. `timeout_seconds` (a bare number) is another spelling of `break_duration`, and
/// `half_open_timeout_seconds` of `half_open_timeout`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerOverrides {
    /// See [`CircuitBreakerConfig::failure_threshold`](crate::CircuitBreakerConfig::failure_threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// See [`CircuitBreakerConfig::break_duration`](crate::CircuitBreakerConfig::break_duration).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub break_duration: Option<Duration>,
    #[serde(skip_serializing)]
    timeout_seconds: Option<f64>,
    /// See [`CircuitBreakerConfig::success_threshold`](crate::CircuitBreakerConfig::success_threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// See [`CircuitBreakerConfig::half_open_max_calls`](crate::CircuitBreakerConfig::half_open_max_calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_max_calls: Option<u32>,
    /// See [`CircuitBreakerConfig::half_open_timeout`](crate::CircuitBreakerConfig::half_open_timeout).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub half_open_timeout: Option<Duration>,
    #[serde(skip_serializing)]
    half_open_timeout_seconds: Option<f64>,
    /// See [`CircuitBreakerConfig::cancelled_calls`](crate::CircuitBreakerConfig::cancelled_calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_calls: Option<CancelledCalls>,
    /// See [`CircuitBreakerConfig::latency_sample_every`](crate::CircuitBreakerConfig::latency_sample_every).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_sample_every: Option<u32>,
    /// See [`CircuitBreakerConfig::failure_rate`](crate::CircuitBreakerConfig::failure_rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRateRule>,
    /// See [`CircuitBreakerConfig::slow_call`](crate::CircuitBreakerConfig::slow_call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call: Option<SlowCallRule>,
    /// See [`CircuitBreakerConfig::break_backoff`](crate::CircuitBreakerConfig::break_backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_backoff: Option<BreakBackoff>,
    /// See [`CircuitBreakerConfig::min_transition_interval`](crate::CircuitBreakerConfig::min_transition_interval).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub min_transition_interval: Option<Duration>,
    /// Whether this breaker open makes the app unhealthy (otherwise degraded). Default `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
}

/// A duration key and its bare-seconds spelling.
const SPELLINGS: [(&str, &str); 2] = [
    ("break_duration", "timeout_seconds"),
    ("half_open_timeout", "half_open_timeout_seconds"),
];

impl BreakerOverrides {
    /// Puts the keys this block gives over `base`; `path` names the block in errors.
    fn apply(&self, base: &mut BreakerSettings, path: &str) -> Result<(), ConfigError> {
        let config = &mut base.config;
        let set = |slot: &mut u32, value: Option<u32>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut config.failure_threshold, self.failure_threshold);
        set(&mut config.success_threshold, self.success_threshold);
        set(&mut config.half_open_max_calls, self.half_open_max_calls);
        set(&mut config.latency_sample_every, self.latency_sample_every);
        if let Some(duration) = either(
            path,
            SPELLINGS[0],
            self.break_duration,
            self.timeout_seconds,
        )? {
            config.break_duration = duration;
        }
        if let Some(duration) = either(
            path,
            SPELLINGS[1],
            self.half_open_timeout,
            self.half_open_timeout_seconds,
        )? {
            config.half_open_timeout = duration;
        }
        if let Some(interval) = self.min_transition_interval {
            config.min_transition_interval = interval;
        }
        if let Some(cancelled) = self.cancelled_calls {
            config.cancelled_calls = cancelled;
        }
        if let Some(rule) = &self.failure_rate {
            config.failure_rate = Some(rule.clone());
        }
        if let Some(rule) = &self.slow_call {
            config.slow_call = Some(rule.clone());
        }
        if let Some(backoff) = &self.break_backoff {
            config.break_backoff = Some(backoff.clone());
        }
        if let Some(critical) = self.critical {
            base.critical = critical;
        }
        Ok(())
    }

    /// Validates merged `settings`, naming a field the way this block spelled it.
    fn check(&self, settings: &BreakerSettings, path: &str) -> Result<(), ConfigError> {
        settings.config.validate().map_err(|err| {
            let given_in_seconds = [
                self.timeout_seconds.is_some(),
                self.half_open_timeout_seconds.is_some(),
            ];
            let spelled = SPELLINGS
                .iter()
                .zip(given_in_seconds)
                .find(|((key, _), given)| *given && err.field() == *key);
            match spelled {
                Some(((_, seconds), _)) => ConfigError::new(*seconds, err.rule()).within(path),
                None => err.within(path),
            }
        })
    }
}

/// The value of a setting written as a duration or as bare seconds, refusing both at once.
fn either(
    path: &str,
    (key, seconds_key): (&str, &str),
    duration: Option<Duration>,
    seconds: Option<f64>,
) -> Result<Option<Duration>, ConfigError> {
    match (duration, seconds) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            format!("{path}.{seconds_key}"),
            format!("is another spelling of {key}, which is also given; give one of them"),
        )),
        (Some(duration), None) => Ok(Some(duration)),
        (None, Some(seconds)) => from_seconds(&format!("{path}.{seconds_key}"), seconds).map(Some),
        (None, None) => Ok(None),
    }
}

fn from_seconds(field: &str, seconds: f64) -> Result<Duration, ConfigError> {
    if seconds.is_finite() && seconds >= 0.0 {
        if let Ok(duration) = Duration::try_from_secs_f64(seconds) {
            return Ok(duration);
        }
    }
    Err(ConfigError::new(
        field,
        format!("must be a number of seconds, at least 0, got {seconds}"),
    ))
}

impl RegistryConfig {
    /// Merges and validates the section into the registry's settings; `path` (such as
    /// `circuit_breakers`) is put before every field named in an error.
    pub(crate) fn resolve(&self, path: &str) -> Result<RegistrySettings, ConfigError> {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        let global = &self.global_settings;
        let globals = field("global_settings");
        let min_transition = either(
            &globals,
            (
                "min_state_transition_interval",
                "min_state_transition_interval_seconds",
            ),
            global.min_state_transition_interval,
            global.min_state_transition_interval_seconds,
        )?;
        let metrics_interval = either(
            &globals,
            (
                "metrics_collection_interval",
                "metrics_collection_interval_seconds",
            ),
            global.metrics_collection_interval,
            global.metrics_collection_interval_seconds,
        )?;
        if metrics_interval.is_some_and(|interval| interval.is_zero()) {
            let key = if global.metrics_collection_interval.is_some() {
                "metrics_collection_interval"
            } else {
                "metrics_collection_interval_seconds"
            };
            return Err(ConfigError::new(
                format!("{globals}.{key}"),
                "must be greater than 0s, got 0s",
            ));
        }
        if global.max_circuit_breakers == 0 {
            return Err(ConfigError::new(
                format!("{globals}.max_circuit_breakers"),
                "must be at least 1, got 0",
            ));
        }
        if self.component_configs.len() > global.max_circuit_breakers {
            return Err(ConfigError::new(
                format!("{globals}.max_circuit_breakers"),
                format!(
                    "must be at least the {} breakers in component_configs, got {}",
                    self.component_configs.len(),
                    global.max_circuit_breakers
                ),
            ));
        }

        let mut default = BreakerSettings::default();
        if let Some(interval) = min_transition {
            default.config.min_transition_interval = interval;
        }
        let default_path = field("default_config");
        self.default_config.apply(&mut default, &default_path)?;
        self.default_config.check(&default, &default_path)?;

        let mut breakers = BTreeMap::new();
        for (name, overrides) in &self.component_configs {
            let block = field(&format!("component_configs.{name}"));
            if name.is_empty() {
                return Err(ConfigError::new(
                    block,
                    "a breaker's name must not be empty",
                ));
            }
            let mut settings = default.clone();
            overrides.apply(&mut settings, &block)?;
            overrides.check(&settings, &block)?;
            breakers.insert(name.clone(), settings);
        }
        if let Some(store) = &self.store {
            store.check(&field("store"))?;
        }
        Ok(RegistrySettings {
            store: self.store.clone(),
            enabled: self.enabled,
            max_breakers: global.max_circuit_breakers,
            auto_create: global.auto_create_enabled,
            metrics_interval,
            default,
            breakers,
        })
    }
}

// ===== loading =====

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension names no format this build reads.
    #[error(
        "{}: cannot tell the format from the extension; use .yaml, .yml, .toml or .json{}",
        path.display(),
        missing_features()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid YAML, TOML or JSON.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// A value is of the wrong type, a key is unknown, or a setting breaks its rule.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Text that is not valid in its format, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} syntax error{}: {message}", location(*.line, *.column))]
pub struct SyntaxError {
    format: &'static str,
    message: String,
    line: Option<usize>,
    column: Option<usize>,
}

impl SyntaxError {
    /// `YAML`, `TOML` or `JSON`.
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The line of the error, from 1, when the parser says.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The column of the error, from 1, when the parser says.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// What the parser said.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn missing_features() -> &'static str {
    if cfg!(all(feature = "yaml", feature = "toml", feature = "json")) {
        ""
    } else {
        " (formats whose cargo feature is off are not read)"
    }
}

/// The formats a registry file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    #[cfg(feature = "yaml")]
    Yaml,
    #[cfg(feature = "toml")]
    Toml,
    #[cfg(feature = "json")]
    Json,
}

impl Format {
    pub(crate) fn from_path(path: &Path) -> Result<Self, LoadError> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            #[cfg(feature = "yaml")]
            Some("yaml" | "yml") => Ok(Self::Yaml),
            #[cfg(feature = "toml")]
            Some("toml") => Ok(Self::Toml),
            #[cfg(feature = "json")]
            Some("json") => Ok(Self::Json),
            _ => Err(LoadError::UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }

    /// Deserializes `text`, naming the path of a bad value and the place of a syntax error. The
    /// text is parsed into its format's own tree first, so a syntax error is never taken for a
    /// bad value.
    pub(crate) fn parse<T: DeserializeOwned>(self, text: &str) -> Result<T, LoadError> {
        match self {
            #[cfg(feature = "yaml")]
            Self::Yaml => {
                let tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|err| {
                    let (line, column) = err
                        .location()
                        .map_or((None, None), |at| (Some(at.line()), Some(at.column())));
                    syntax("YAML", &err.to_string(), line, column)
                })?;
                typed(tree)
            }
            #[cfg(feature = "toml")]
            Self::Toml => {
                let tree: toml::Table = text.parse().map_err(|err: toml::de::Error| {
                    let (line, column) = err
                        .span()
                        .map_or((None, None), |span| line_column(text, span.start));
                    syntax("TOML", err.message(), line, column)
                })?;
                typed(toml::Value::Table(tree))
            }
            #[cfg(feature = "json")]
            Self::Json => {
                let tree: serde_json::Value = serde_json::from_str(text).map_err(|err| {
                    let located = err.line() > 0;
                    syntax(
                        "JSON",
                        &err.to_string(),
                        located.then(|| err.line()),
                        located.then(|| err.column()),
                    )
                })?;
                typed(tree)
            }
        }
    }
}

fn syntax(
    format: &'static str,
    message: &str,
    line: Option<usize>,
    column: Option<usize>,
) -> LoadError {
    LoadError::Syntax(SyntaxError {
        format,
        message: without_place(message).trim_end().replace('\n', "; "),
        line,
        column,
    })
}

/// Deserializes a parsed tree; a wrong type or an unknown key is a [`ConfigError`] at its path.
fn typed<'de, T, D>(tree: D) -> Result<T, LoadError>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de>,
{
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let path = err.path().to_string();
        let field = match path.as_str() {
            "." | "?" => "(document)".to_owned(),
            _ => path,
        };
        // The message's first line: TOML adds the path again on a second.
        let message = err.into_inner().to_string();
        let message = message.lines().next().unwrap_or_default();
        LoadError::Invalid(ConfigError::new(field, without_place(message)))
    })
}

/// `message` without the ` at line L column C` the parsers put in it: the error says it once.
fn without_place(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " at line ".len()..];
        let digits = |text: &str| {
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len())
        };
        let line_end = digits(tail);
        let after_line = &tail[line_end..];
        match after_line.strip_prefix(" column ") {
            Some(column) if line_end > 0 => rest = &column[digits(column)..],
            _ if line_end > 0 => rest = after_line,
            _ => {
                out.push_str(" at line ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (Some(line), Some(column))
}
