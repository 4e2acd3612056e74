//! Prometheus metrics of a breaker registry, read from the breakers' own counters at scrape time.
//!
//! [`RegistryCollector`] is a [`prometheus_client`] [`Collector`]: on each scrape it takes one
//! [`CircuitBreakerRegistry::snapshot`] and encodes every breaker in it, named breakers and the
//! breakers of its [keyed groups](tower_circuit_breaker::keyed) alike. Nothing is added to the
//! call path and nothing is counted twice: the figures are the engine's counters, which only grow
//! (a `reset` clears the counts the trip rules use, not these), so they are exported as
//! Prometheus counters. This module writes no format of its own: the encoding is
//! `prometheus_client`'s.
//!
//! # Two formats
//!
//! - [`render`] writes the Prometheus text format, version 0.0.4 ([`CONTENT_TYPE`]): every
//!   Prometheus-compatible scraper reads it, and `promtool check metrics` lints it clean (this
//!   crate's tests run it).
//! - [`render_openmetrics`] writes the same families as `OpenMetrics` 1.0.0 text
//!   ([`OPENMETRICS_CONTENT_TYPE`]), which adds each family's unit and ends in `# EOF`, so a
//!   scrape cut short is noticed. Prometheus asks for it first in its `Accept` header; a route
//!   that negotiates can serve it then. (`promtool check metrics` reads only the 0.0.4 format: on
//!   `OpenMetrics` it reports the counters, whose family names carry no `_total`, as lacking help.)
//!
//! # The metrics
//!
//! Every per-breaker series has a `breaker` label, the breaker's name. When the scrape holds
//! keyed breakers, every per-breaker series also has a `group` label: a keyed breaker's group,
//! empty for a named breaker (see [below](#keyed-breakers)); the table leaves it out. The other
//! labels take only the fixed values listed (the store's `store` and `instance` take one value
//! each), so the number of series is bounded by the registry's own bound on breakers and each
//! keyed group's bound on keys.
//!
//! | family | type | labels | what |
//! |---|---|---|---|
//! | `circuit_breaker_state` | gauge | `breaker`, `state` | one series per state (`closed`, `open`, `half_open`, `isolated`, `disabled`); the breaker's state is 1, the other four 0 |
//! | `circuit_breaker_critical` | gauge | `breaker` | 1 when the breaker open makes the app unhealthy, else 0 |
//! | `circuit_breaker_calls_total` | counter | `breaker`, `outcome` | admitted calls that finished, by `outcome`: `success`, `failure`, `ignored`, `cancelled`; they add up to every finished call |
//! | `circuit_breaker_timeouts_total` | counter | `breaker` | failures that were timeouts (a per-try timeout, a half-open probe that overran `half_open_timeout`) |
//! | `circuit_breaker_rejections_total` | counter | `breaker`, `reason` | calls turned away: `open` (open or isolated), `half_open_full` (half-open, every probe slot taken) |
//! | `circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` | transitions from one state to another (the five above) |
//! | `circuit_breaker_consecutive_failures` | gauge | `breaker` | failures in a row now |
//! | `circuit_breaker_probes_in_flight` | gauge | `breaker` | half-open probes admitted and not finished |
//! | `circuit_breaker_window_calls` | gauge | `breaker` | calls in the sliding window (breakers with a rate rule only) |
//! | `circuit_breaker_failure_rate` | gauge | `breaker` | failed / calls in the window, 0 to 1 (breakers with a rate rule only) |
//! | `circuit_breaker_slow_call_rate` | gauge | `breaker` | slow / calls in the window, 0 to 1 (breakers with a rate rule only) |
//! | `circuit_breaker_time_in_state_seconds` | gauge | `breaker` | time since the last transition, by the breaker's clock |
//! | `circuit_breaker_break_duration_seconds` | gauge | `breaker` | length of the current break, or of the next one when not open |
//! | `circuit_breaker_next_probe_in_seconds` | gauge | `breaker` | time left in the break (open breakers only) |
//! | `circuit_breaker_call_duration_seconds` | histogram | `breaker` | latency of the timed calls, buckets from 1 ms to 10 s |
//! | `circuit_breaker_keyed_breakers` | gauge | `group`, `state` | a keyed group's breakers in each of the five states, its overflow and no-key breakers included (the five add up to the live keys + 2) |
//! | `circuit_breaker_keyed_live_breakers` | gauge | `group` | keys of the group with a breaker now |
//! | `circuit_breaker_keyed_max_breakers` | gauge | `group` | the most keys the group holds a breaker for at once |
//! | `circuit_breaker_keyed_overflowed_calls_total` | counter | `group` | calls for a new key sent to the group's overflow breaker while the group was full |
//! | `circuit_breaker_keyed_evictions_total` | counter | `group` | idle breakers of the group evicted to make room for new keys |
//! | `circuit_breaker_store_connected` | gauge | `store`, `instance` | 1 while the [shared state store](tower_circuit_breaker::store) is reachable, 0 while the breakers decide alone |
//! | `circuit_breaker_store_published_total` | counter | `store`, `instance` | breaker updates this instance published to the store |
//! | `circuit_breaker_store_publish_failures_total` | counter | `store`, `instance` | publishes and reads that failed or timed out |
//! | `circuit_breaker_store_dropped_updates_total` | counter | `store`, `instance` | transitions dropped before they could be published (the queue was full; the breakers' state is published again) |
//! | `circuit_breaker_store_received_total` | counter | `store`, `instance` | updates heard from the store, every instance's, this one's included |
//! | `circuit_breaker_store_applied_total` | counter | `store`, `instance` | updates from the store that changed a breaker of this instance |
//! | `circuit_breaker_store_invalid_updates_total` | counter | `store`, `instance` | values under a breaker's key in the store that could not be read as an update |
//!
//! The first fifteen families hold one series (or one per label value) per breaker; the next
//! five, one (or one per state) per keyed group, written whenever the registry has a keyed
//! group, whether or not the group's breakers have series of their own.
//!
//! Choices, and why:
//!
//! - **Timeouts are their own family**, not an `outcome="timeout"`: the engine counts a timeout
//!   as a failure too, so a `timeout` outcome next to `failure` would count it twice in
//!   `sum(circuit_breaker_calls_total)`. The outcomes add up to the calls; timeouts are a subset of
//!   `outcome="failure"`.
//! - **Transitions are by `from` and `to`**, so a failed recovery (`half_open` to `open`) tells
//!   itself apart from a trip (`closed` to `open`); `sum without (from)` gives the transitions
//!   into each state. The four transitions of the automatic cycle (`closed` to `open`, `open`
//!   to `half_open`, `half_open` to `closed` and to `open`) are exported from 0, so the first
//!   trip of a breaker shows in `increase()`; the others (resets and manual overrides) appear
//!   once a breaker has made them, which keeps a registry of many breakers from exporting
//!   eleven zeros each.
//! - **Window rates exist only for breakers with a window** (a failure-rate or slow-call rule). A
//!   `0` for a breaker that measures no rate would read as "healthy" on a dashboard; an absent
//!   series says "not measured". The rate is 0 while the window is empty, and is not yet a trip
//!   signal below the rule's `minimum_throughput` (compare with `circuit_breaker_window_calls`).
//! - **`circuit_breaker_next_probe_in_seconds` exists only while the breaker is open** (not when
//!   isolated: nobody knows when that ends).
//! - **The histogram counts timed calls, not all calls**: a breaker times one call in
//!   [`latency_sample_every`](tower_circuit_breaker::CircuitBreakerConfig::latency_sample_every)
//!   (64 by default). Its `_count` is the buckets' total, which is
//!   [`LatencyMetrics::samples`](tower_circuit_breaker::LatencyMetrics::samples) except for a call
//!   being timed just as the snapshot is taken; `_sum` is in seconds. Bucket bounds are the
//!   engine's [`LATENCY_BUCKETS`], cumulative as Prometheus wants them.
//!
//! # Keyed breakers
//!
//! A [keyed group](tower_circuit_breaker::keyed) (one breaker per host, per tenant) that was
//! made from the registry ([`CircuitBreakerRegistry::keyed`]) is in the scrape in two ways:
//!
//! - **Each of its breakers, like a named one** (the default): every per-breaker family above,
//!   with `breaker` set to the key and `group` to the group's name, so a key written like a
//!   named breaker, or like a key of another group, is another series. The group's overflow
//!   breaker (`<overflow>`) and no-key breaker (`<no key>`) are among them.
//! - **The group's own figures**, the `circuit_breaker_keyed_*` families, in either mode.
//!
//! A named breaker's series then carry `group=""`. Every series of a family has the same label
//! names, as Prometheus' own client libraries require and parsers expect, and Prometheus stores
//! a label with an empty value as no label: `circuit_breaker_state{breaker="db",group="",state="open"}`
//! is the series `circuit_breaker_state{breaker="db",state="open"}` was, and queries, alerts and
//! recording rules on named breakers see no change. A registry without keyed groups (or whose
//! keyed breakers are exported in aggregate) writes no `group` label and no group family: its
//! scrape is byte for byte what it was before keyed groups existed.
//!
//! Keys come from the network, and each keyed breaker costs Prometheus as many series as a
//! named one (below): a group at its bound of `max_breakers` keys exports about
//! 40 × (`max_breakers` + 2) series, 40,000 for the default bound of 1000. For large fleets,
//! [`RegistryCollector::keyed_aggregate`] (or
//! [`BreakerRoutes::keyed_metrics_aggregate`](crate::BreakerRoutes::keyed_metrics_aggregate)
//! for `/metrics`) exports keyed breakers **only in aggregate**: no per-key series, the group
//! families alone, 9 series per group whatever its size. Per-key series are the default because
//! a group is bounded and a dashboard wants to show which host is open; aggregate is the
//! choice when the bound is large or the keys are many and short-lived (each evicted key leaves
//! a stale series behind in Prometheus until it ages out). `/health` and the dashboard list
//! every keyed breaker either way.
//!
//! A series is never written twice: a group's name is never empty, its keys are distinct, and
//! a key written like its group's overflow or no-key breaker (a key function can return any
//! string) goes through the no-key breaker rather than getting one of its own.
//!
//! | exported | series |
//! |---|---|
//! | per breaker, named or keyed | 37; 40 with a rate rule (the window's three gauges); one more while open (`next_probe_in`); one more for each transition other than the automatic cycle it has made. 16 of them are the histogram's |
//! | per keyed group | 9 (5 `keyed_breakers`, one each of the other four), in both modes |
//! | per keyed group at its bound, per key (default) | about 40 × (`max_breakers` + 2) + 9; 40,089 for the default bound of 1000 |
//! | per keyed group, per key (default) | as per breaker, for each live key and the group's overflow and no-key breakers |
//! | per keyed group, in aggregate | none beyond the group's 9 |
//! | with a shared state store | 7, in both modes |
//!
//! # Shared state store
//!
//! The seven `circuit_breaker_store_*` families are written only when the registry has a
//! [shared state store](tower_circuit_breaker::store) attached
//! ([`CircuitBreakerRegistry::attach_store`]), one series each, in either keyed mode: `store`
//! is the store's [kind](tower_circuit_breaker::store::StateStore::kind) (`redis`, `memory`)
//! and `instance` this instance's name in the store
//! ([`StoreOptions::instance`](tower_circuit_breaker::store::StoreOptions::instance)). A
//! registry without a store writes none of them. They are the figures of [`StoreStatus`], read
//! at scrape time like the breakers' own.
//!
//! Two things to know about `instance`. Prometheus gives every scraped series its own
//! `instance` label, the target's address; under the default `honor_labels: false` it keeps
//! this one as `exported_instance`. And the default instance name is made anew at each start
//! (the process id and a random suffix), so each restart starts new series: a stable name (the
//! pod's) keeps one series per instance.
//!
//! `circuit_breaker_store_connected == 0` is the alert to write: the instance's breakers still
//! decide on their own counts, but they no longer hear the fleet (and `/health` says
//! `degraded`). Across a fleet, `sum(rate(circuit_breaker_store_published_total[5m]))` is what
//! every instance's `circuit_breaker_store_received_total` should grow by; a growing
//! `circuit_breaker_store_dropped_updates_total` says transitions come faster than the store
//! takes them.
//!
//! # Cost
//!
//! A scrape costs nothing on the call path; its own cost grows with the breakers: about 40
//! series per breaker, 16 of them the histogram's. Rendering 1000 breakers, each with a window
//! and calls behind it, takes about 8.3 ms (median, on a 2.45 GHz x86-64 server). The registry's snapshot is 0.3 ms of it; the rest is `prometheus_client`'s
//! encoding, about 200 ns a series, most of it in writing labels.
//!
//! The same 1000 breakers as the keys of one keyed group took 8.8 ms per key (the `group`
//! label is one more label on every series) and 0.26 ms in aggregate, almost all of it the
//! snapshot, in a run where the 1000 named breakers took 7.2 ms (medians, same machine).
//!
//! # Example
//!
//! ```
//! use tower_circuit_breaker::CircuitBreakerRegistry;
//! use tower_circuit_breaker_axum::metrics;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = CircuitBreakerRegistry::new();
//! let db = registry.get_or_create("db")?;
//! db.call(|| async { Ok::<_, std::io::Error>(()) }).await?;
//!
//! let text = metrics::render(&registry);
//! assert!(text.contains(r#"circuit_breaker_state{breaker="db",state="closed"} 1"#));
//! assert!(text.contains(r#"circuit_breaker_calls_total{breaker="db",outcome="success"} 1"#));
//! // Served with `metrics::CONTENT_TYPE`, `text/plain; version=0.0.4; charset=utf-8`.
//!
//! let open_metrics = metrics::render_openmetrics(&registry);
//! assert!(open_metrics.contains("# UNIT circuit_breaker_call_duration_seconds seconds"));
//! assert!(open_metrics.ends_with("# EOF\n"));
//! # Ok(())
//! # }
//! ```
//!
//! A keyed group, exported per key and then in aggregate:
//!
//! ```
//! use tower_circuit_breaker::CircuitBreakerRegistry;
//! use tower_circuit_breaker_axum::metrics::{self, RegistryCollector};
//!
//! let registry = CircuitBreakerRegistry::new();
//! registry.get_or_create("api.example.com")?;
//! let hosts = registry.keyed("hosts").max_breakers(10_000).build()?;
//! hosts.get(Some("api.example.com")).isolate();
//!
//! let text = metrics::render(&registry);
//! // The named breaker and the key of the same name are two series. (The named one's empty
//! // `group` is stored by Prometheus as no label.)
//! assert!(text.contains(
//!     r#"circuit_breaker_state{breaker="api.example.com",group="",state="closed"} 1"#
//! ));
//! assert!(text.contains(
//!     r#"circuit_breaker_state{breaker="api.example.com",group="hosts",state="isolated"} 1"#
//! ));
//! assert!(text.contains(r#"circuit_breaker_keyed_breakers{group="hosts",state="isolated"} 1"#));
//! assert!(text.contains(r#"circuit_breaker_keyed_live_breakers{group="hosts"} 1"#));
//!
//! let aggregate = RegistryCollector::new(registry.clone()).keyed_aggregate(true).render();
//! // No series of the key's own, no `group` label on the named breaker; the group's figures stay.
//! assert!(!aggregate.contains(r#"breaker="api.example.com",group="#));
//! assert!(aggregate.contains(r#"circuit_breaker_keyed_breakers{group="hosts",state="isolated"} 1"#));
//! assert!(aggregate.contains(r#"circuit_breaker_state{breaker="api.example.com",state="closed"} 1"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # In an app's own `prometheus_client` registry
//!
//! An app that already exposes a [`prometheus_client::registry::Registry`] registers the
//! collector there, and its breakers appear in its own scrape:
//!
//! ```
//! use prometheus_client::encoding::text::encode;
//! use prometheus_client::metrics::counter::Counter;
//! use prometheus_client::registry::Registry;
//! use tower_circuit_breaker::CircuitBreakerRegistry;
//! use tower_circuit_breaker_axum::metrics::RegistryCollector;
//!
//! let breakers = CircuitBreakerRegistry::new();
//! breakers.get_or_create("payments")?;
//!
//! let mut registry = Registry::default();
//! let requests = Counter::<u64>::default();
//! registry.register("http_requests", "Requests served", requests.clone());
//! registry.register_collector(Box::new(RegistryCollector::new(breakers.clone())));
//!
//! let mut text = String::new();
//! encode(&mut text, &registry)?;
//! assert!(text.contains("http_requests_total 0"));
//! assert!(text.contains(r#"circuit_breaker_state{breaker="payments",state="closed"} 1"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Registered under [`Registry::sub_registry_with_prefix`](prometheus_client::registry::Registry::sub_registry_with_prefix),
//! the families take that prefix in front of `circuit_breaker_`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabel, EncodeLabelSet, LabelSetEncoder,
    MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tower_circuit_breaker::keyed::KeyedSnapshot;
use tower_circuit_breaker::metrics::LATENCY_BUCKETS;
use tower_circuit_breaker::registry::{BreakerSnapshot, CircuitBreakerRegistry, RegistrySnapshot};
use tower_circuit_breaker::store::StoreStatus;
use tower_circuit_breaker::{CircuitMetrics, CircuitState};

/// The `Content-Type` of [`render`]'s text: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of [`render_openmetrics`]'s text: `OpenMetrics` 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label every per-breaker series has: the breaker's name (a keyed breaker's key).
const BREAKER: &str = "breaker";

/// The label of a keyed breaker's series, and of every group family: the group's name.
const GROUP: &str = "group";

/// The labels of the store's series: the store's kind, and this instance's name in it.
const STORE: &str = "store";
const INSTANCE: &str = "instance";

/// The transitions breakers make on their own, exported from 0 (see the module docs); every
/// other pair is exported once it has a count.
const AUTOMATIC_CYCLE: [(CircuitState, CircuitState); 4] = {
    use CircuitState::{Closed, HalfOpen, Open};
    [
        (Closed, Open),
        (Open, HalfOpen),
        (HalfOpen, Closed),
        (HalfOpen, Open),
    ]
};

/// Bytes of text one breaker takes, about; sizes the buffer so it rarely grows.
const BYTES_PER_BREAKER: usize = 5 * 1024;

/// Bytes of text one keyed group's own families take, about.
const BYTES_PER_GROUP: usize = 1024;

/// Bytes of text the store's families take, about.
const BYTES_FOR_STORE: usize = 2 * 1024;

/// The exposition of `registry`'s breakers in the Prometheus text format (version 0.0.4), for a
/// `/metrics` route: a fresh `prometheus_client` registry holding one [`RegistryCollector`],
/// encoded by [`prometheus_client::encoding::prometheus_text`]. Serve it with [`CONTENT_TYPE`].
///
/// Every Prometheus-compatible scraper reads this format, and `promtool check metrics` lints it.
/// Keyed breakers have series of their own; [`RegistryCollector::keyed_aggregate`] and
/// [`RegistryCollector::render`] export them by group only.
pub fn render(registry: &CircuitBreakerRegistry) -> String {
    RegistryCollector::new(registry.clone()).render()
}

/// The same metrics as [`render`] in the `OpenMetrics` 1.0.0 text format, which adds each
/// family's unit (`# UNIT`) and ends in `# EOF`, so a cut-off scrape is noticed. Serve it with
/// [`OPENMETRICS_CONTENT_TYPE`], to a scraper whose `Accept` header asks for
/// `application/openmetrics-text` (Prometheus asks for it first).
pub fn render_openmetrics(registry: &CircuitBreakerRegistry) -> String {
    RegistryCollector::new(registry.clone()).render_openmetrics()
}

/// A [`Collector`] of every breaker of a [`CircuitBreakerRegistry`], read from a
/// [`snapshot`](CircuitBreakerRegistry::snapshot) on each scrape. See the [module docs](self) for
/// the families it writes and how to register it.
///
/// It holds a handle to the registry (a clone shares the breakers), so breakers created after it
/// was registered appear in the next scrape. It also holds how [keyed
/// breakers](tower_circuit_breaker::keyed) are exported: each with its own series (the default),
/// or only in their groups' figures ([`keyed_aggregate`](Self::keyed_aggregate)).
#[derive(Debug, Clone)]
pub struct RegistryCollector {
    registry: CircuitBreakerRegistry,
    keyed_aggregate: bool,
}

// ===== impl RegistryCollector =====

impl RegistryCollector {
    /// A collector of `registry`'s breakers, keyed breakers each with series of their own.
    pub const fn new(registry: CircuitBreakerRegistry) -> Self {
        Self {
            registry,
            keyed_aggregate: false,
        }
    }

    /// With `true`, the breakers of keyed groups get no series of their own: each group shows
    /// only in the `circuit_breaker_keyed_*` families (its breakers by state, live and maximum
    /// count, overflowed calls, evictions), so a group of thousands of keys costs Prometheus 9
    /// series instead of about 40 a key. Named breakers, and the shared state store's families
    /// when the registry has a store, are exported as before. Default `false`.
    #[must_use]
    pub const fn keyed_aggregate(mut self, aggregate: bool) -> Self {
        self.keyed_aggregate = aggregate;
        self
    }

    /// Whether keyed breakers are exported only in their groups' figures.
    pub const fn is_keyed_aggregate(&self) -> bool {
        self.keyed_aggregate
    }

    /// The registry it reads.
    pub const fn registry(&self) -> &CircuitBreakerRegistry {
        &self.registry
    }

    /// What this collector exports, in the Prometheus text format (version 0.0.4), as
    /// [`render`] writes it. Serve it with [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = self.buffer();
        // Writing to a `String` never fails, and the collector fails only when its writer does.
        let _ = prometheus_text::encode(&mut out, &self.exposition());
        out
    }

    /// What this collector exports, in the `OpenMetrics` 1.0.0 text format, as
    /// [`render_openmetrics`] writes it. Serve it with [`OPENMETRICS_CONTENT_TYPE`].
    pub fn render_openmetrics(&self) -> String {
        let mut out = self.buffer();
        // As in `render`: nothing here can fail.
        let _ = text::encode(&mut out, &self.exposition());
        out
    }

    fn exposition(&self) -> Registry {
        let mut exposition = Registry::default();
        exposition.register_collector(Box::new(self.clone()));
        exposition
    }

    fn buffer(&self) -> String {
        let groups = self.registry.keyed_groups();
        let keyed: usize = if self.keyed_aggregate {
            0
        } else {
            groups.iter().map(|group| group.len() + 2).sum()
        };
        let bytes = (self.registry.len() + keyed)
            .saturating_mul(BYTES_PER_BREAKER)
            .saturating_add(groups.len().saturating_mul(BYTES_PER_GROUP))
            .saturating_add(if self.registry.store().is_some() {
                BYTES_FOR_STORE
            } else {
                0
            });
        String::with_capacity(bytes + 64)
    }
}

impl From<CircuitBreakerRegistry> for RegistryCollector {
    fn from(registry: CircuitBreakerRegistry) -> Self {
        Self::new(registry)
    }
}

impl Collector for RegistryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let snapshot = self.registry.snapshot();
        let breakers = exported(&snapshot, !self.keyed_aggregate);
        encode_breakers(&breakers, &mut encoder)?;
        if !snapshot.keyed.is_empty() {
            encode_groups(&snapshot.keyed, &mut encoder)?;
        }
        if let Some(store) = &snapshot.store {
            encode_store(store, &mut encoder)?;
        }
        Ok(())
    }
}

// ===== which breakers =====

/// A breaker with series of its own, and the labels that name them.
#[derive(Debug, Clone, Copy)]
struct Exported<'a> {
    breaker: &'a BreakerSnapshot,
    id: Id<'a>,
}

impl std::ops::Deref for Exported<'_> {
    type Target = BreakerSnapshot;

    fn deref(&self) -> &BreakerSnapshot {
        self.breaker
    }
}

/// The breakers that get series of their own, in the snapshot's order: every named breaker,
/// and with `per_key` every keyed one.
///
/// When keyed breakers are among them, every series has a `group` label, empty for a named
/// breaker (Prometheus reads an empty label as no label, so a named breaker's series stay the
/// same series): a family's series all have the same label names, as Prometheus' own client
/// libraries require and parsers expect. Without keyed breakers no series has one.
///
/// No two breakers share their labels: a group's name is never empty, its keys are distinct,
/// and a key written like its group's overflow or no-key breaker goes to the no-key breaker.
fn exported(snapshot: &RegistrySnapshot, per_key: bool) -> Vec<Exported<'_>> {
    let with_group = per_key
        && snapshot
            .breakers
            .iter()
            .any(|breaker| breaker.group.is_some());
    snapshot
        .breakers
        .iter()
        .filter(|breaker| with_group || breaker.group.is_none())
        .map(|breaker| Exported {
            breaker,
            id: Id::of(breaker, with_group),
        })
        .collect()
}

/// The labels that name a breaker's series: `breaker`, and `group` when the scrape has keyed
/// breakers (empty for a named breaker).
#[derive(Debug, Clone, Copy)]
struct Id<'a> {
    breaker: &'a str,
    group: Option<&'a str>,
}

impl<'a> Id<'a> {
    fn of(breaker: &'a BreakerSnapshot, with_group: bool) -> Self {
        Self {
            breaker: &breaker.name,
            group: with_group.then(|| breaker.group.as_deref().unwrap_or("")),
        }
    }
}

impl EncodeLabelSet for Id<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        (BREAKER, self.breaker).encode(encoder.encode_label())?;
        if let Some(group) = self.group {
            (GROUP, group).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

// ===== encoding =====

/// Writes every per-breaker family, each with one series (or one per label value) per breaker.
fn encode_breakers(breakers: &[Exported<'_>], encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    {
        let mut family = encoder.encode_descriptor(
            "circuit_breaker_state",
            "State of the breaker: 1 for its state, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for breaker in breakers {
            for state in CircuitState::ALL {
                let labels = (breaker.id, [("state", state.as_str())]);
                family
                    .encode_family(&labels)?
                    .encode_gauge(&u32::from(breaker.metrics.state == state))?;
            }
        }
    }

    gauges(
        encoder,
        "circuit_breaker_critical",
        "Whether the breaker open makes the app unhealthy (1) or degraded (0).",
        None,
        breakers,
        |breaker| Some(u32::from(breaker.critical)),
    )?;

    counters_by(
        encoder,
        "circuit_breaker_calls",
        "Admitted calls that finished, by outcome; timeouts are among the failures.",
        "outcome",
        breakers,
        |metrics| {
            [
                ("success", metrics.successful_calls),
                ("failure", metrics.failed_calls),
                ("ignored", metrics.ignored_calls),
                ("cancelled", metrics.cancelled_calls),
            ]
        },
    )?;

    counters_by(
        encoder,
        "circuit_breaker_timeouts",
        "Failed calls that were timeouts, half-open probes that overran included.",
        "",
        breakers,
        |metrics| [("", metrics.timeouts)],
    )?;

    counters_by(
        encoder,
        "circuit_breaker_rejections",
        "Calls rejected: open (open or isolated), half_open_full (every probe slot taken).",
        "reason",
        breakers,
        |metrics| {
            [
                ("open", metrics.rejected_open),
                ("half_open_full", metrics.rejected_half_open),
            ]
        },
    )?;

    {
        let mut family = encoder.encode_descriptor(
            "circuit_breaker_transitions",
            "Transitions from one state to another.",
            None,
            MetricType::Counter,
        )?;
        for breaker in breakers {
            let counts = &breaker.metrics.transitions;
            for from in CircuitState::ALL {
                for to in CircuitState::ALL {
                    let count = counts.between(from, to);
                    if count > 0 || AUTOMATIC_CYCLE.contains(&(from, to)) {
                        let labels = (breaker.id, [("from", from.as_str()), ("to", to.as_str())]);
                        counter(&mut family, &labels, count)?;
                    }
                }
            }
        }
    }

    gauges(
        encoder,
        "circuit_breaker_consecutive_failures",
        "Failures in a row in the current state.",
        None,
        breakers,
        |breaker| Some(breaker.metrics.consecutive_failures),
    )?;

    gauges(
        encoder,
        "circuit_breaker_probes_in_flight",
        "Half-open probes admitted and not yet finished.",
        None,
        breakers,
        |breaker| Some(breaker.metrics.half_open_in_flight),
    )?;

    gauges(
        encoder,
        "circuit_breaker_window_calls",
        "Calls in the sliding window of the rate rules (breakers with a rate rule only).",
        None,
        breakers,
        |breaker| breaker.metrics.window.map(|window| window.calls),
    )?;

    gauges(
        encoder,
        "circuit_breaker_failure_rate",
        "Failed calls over calls in the sliding window, 0 to 1 (breakers with a rate rule only).",
        None,
        breakers,
        |breaker| breaker.metrics.window.map(|window| window.failure_rate()),
    )?;

    gauges(
        encoder,
        "circuit_breaker_slow_call_rate",
        "Slow calls over calls in the sliding window, 0 to 1 (breakers with a rate rule only).",
        None,
        breakers,
        |breaker| breaker.metrics.window.map(|window| window.slow_call_rate()),
    )?;

    gauges(
        encoder,
        "circuit_breaker_time_in_state",
        "Time since the breaker's last transition.",
        Some(&Unit::Seconds),
        breakers,
        |breaker| Some(breaker.metrics.time_in_state.as_secs_f64()),
    )?;

    gauges(
        encoder,
        "circuit_breaker_break_duration",
        "Length of the current break, or of the next one when not open.",
        Some(&Unit::Seconds),
        breakers,
        |breaker| Some(breaker.metrics.break_duration.as_secs_f64()),
    )?;

    gauges(
        encoder,
        "circuit_breaker_next_probe_in",
        "Time left until the breaker lets a probe through (open breakers only).",
        Some(&Unit::Seconds),
        breakers,
        |breaker| {
            let metrics = &breaker.metrics;
            (metrics.state == CircuitState::Open)
                .then_some(metrics.next_probe_in)
                .flatten()
                .map(|left| left.as_secs_f64())
        },
    )?;

    {
        let mut family = encoder.encode_descriptor(
            "circuit_breaker_call_duration",
            "Duration of the timed calls (one in latency_sample_every).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for breaker in breakers {
            let latency = &breaker.metrics.latency;
            // Per bucket, not cumulative: the encoder adds them up; the last bound is +Inf.
            let mut buckets = [(f64::INFINITY, 0_u64); LATENCY_BUCKETS.len() + 1];
            for (slot, (bound, count)) in buckets
                .iter_mut()
                .zip(LATENCY_BUCKETS.iter().zip(&latency.buckets))
            {
                *slot = (bound.as_secs_f64(), *count);
            }
            buckets[LATENCY_BUCKETS.len()].1 = latency.buckets[LATENCY_BUCKETS.len()];
            // `_count` must equal the `+Inf` bucket: take it from the buckets, which the samples
            // count can run ahead of while a call is being timed.
            let count = latency.buckets.iter().sum();
            family
                .encode_family(&breaker.id)?
                .encode_histogram::<NoLabelSet>(latency.sum.as_secs_f64(), count, &buckets, None)?;
        }
    }

    Ok(())
}

/// Writes the keyed groups' own families, one series (or one per state) per group. Written
/// whether or not the groups' breakers have series of their own, when there is a group.
fn encode_groups(groups: &[KeyedSnapshot], encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    {
        let mut family = encoder.encode_descriptor(
            "circuit_breaker_keyed_breakers",
            "Breakers of a keyed group in each state, its overflow and no-key breakers included.",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            for state in CircuitState::ALL {
                let count = group.by_state.get(state);
                let labels = [(GROUP, &*group.group), ("state", state.as_str())];
                family.encode_family(&labels)?.encode_gauge(&count)?;
            }
        }
    }

    per_group(
        encoder,
        "circuit_breaker_keyed_live_breakers",
        "Keys of a keyed group with a breaker now (at most circuit_breaker_keyed_max_breakers).",
        MetricType::Gauge,
        groups,
        |group| saturate(group.live),
    )?;
    per_group(
        encoder,
        "circuit_breaker_keyed_max_breakers",
        "The most keys of a keyed group with a breaker at once.",
        MetricType::Gauge,
        groups,
        |group| saturate(group.max_breakers),
    )?;
    per_group(
        encoder,
        "circuit_breaker_keyed_overflowed_calls",
        "Calls for a new key sent to the group's overflow breaker while the group was full.",
        MetricType::Counter,
        groups,
        |group| group.overflowed_calls,
    )?;
    per_group(
        encoder,
        "circuit_breaker_keyed_evictions",
        "Idle breakers of a keyed group evicted to make room for new keys.",
        MetricType::Counter,
        groups,
        |group| group.evictions,
    )
}

/// Writes the shared state store's families, one series each, labelled with the store's kind
/// and this instance's name in it. Written only when the registry has a store.
fn encode_store(store: &StoreStatus, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let labels = [(STORE, store.kind), (INSTANCE, &*store.instance)];
    encoder
        .encode_descriptor(
            "circuit_breaker_store_connected",
            "Whether the shared state store is reachable (1) or the breakers decide alone (0).",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&labels)?
        .encode_gauge(&u32::from(store.connected))?;
    let counters: [(&str, &str, u64); 6] = [
        (
            "circuit_breaker_store_published",
            "Breaker updates this instance published to the shared state store.",
            store.published,
        ),
        (
            "circuit_breaker_store_publish_failures",
            "Publishes to and reads from the shared state store that failed or timed out.",
            store.publish_failures,
        ),
        (
            "circuit_breaker_store_dropped_updates",
            "Transitions dropped before they could be published (the queue was full).",
            store.dropped_updates,
        ),
        (
            "circuit_breaker_store_received",
            "Updates heard from the shared state store, every instance's (this one's included).",
            store.received,
        ),
        (
            "circuit_breaker_store_applied",
            "Updates from the shared state store that changed a breaker of this instance.",
            store.applied,
        ),
        (
            "circuit_breaker_store_invalid_updates",
            "Values in the shared state store that could not be read as a breaker update.",
            store.invalid_updates,
        ),
    ];
    for (name, help, count) in counters {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        counter(&mut family, &labels, count)?;
    }
    Ok(())
}

/// A gauge or counter family (a counter's `name` gets `_total`) with one series per group.
fn per_group(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    groups: &[KeyedSnapshot],
    value: fn(&KeyedSnapshot) -> u64,
) -> fmt::Result {
    let is_counter = matches!(kind, MetricType::Counter);
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for group in groups {
        let labels = [(GROUP, &*group.group)];
        if is_counter {
            counter(&mut family, &labels, value(group))?;
        } else {
            family.encode_family(&labels)?.encode_gauge(&value(group))?;
        }
    }
    Ok(())
}

fn saturate(count: usize) -> u64 {
    u64::try_from(count).unwrap_or(u64::MAX)
}

/// A gauge family with one series per breaker for which `value` gives a value.
fn gauges<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    breakers: &[Exported<'_>],
    value: impl Fn(&BreakerSnapshot) -> Option<V>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for breaker in breakers {
        if let Some(value) = value(breaker) {
            family.encode_family(&breaker.id)?.encode_gauge(&value)?;
        }
    }
    Ok(())
}

/// A counter family (`name` gets `_total`) with, per breaker, one series per `(label value,
/// count)` that `values` gives under the label `label`; an empty `label` means no second label,
/// and then `values` gives one count.
fn counters_by<const N: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    breakers: &[Exported<'_>],
    values: impl Fn(&CircuitMetrics) -> [(&'static str, u64); N],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for breaker in breakers {
        for (value, count) in values(&breaker.metrics) {
            if label.is_empty() {
                counter(&mut family, &breaker.id, count)?;
            } else {
                counter(&mut family, &(breaker.id, [(label, value)]), count)?;
            }
        }
    }
    Ok(())
}

fn counter(
    family: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    count: u64,
) -> fmt::Result {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&count, None)
}
