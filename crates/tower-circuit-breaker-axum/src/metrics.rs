//! Prometheus metrics of a breaker registry, read from the breakers' own counters at scrape time.
//!
//! [`RegistryCollector`] is a [`prometheus_client`] [`Collector`]: on each scrape it takes one
//! [`CircuitBreakerRegistry::snapshot`] and encodes every breaker in it. Nothing is added to the
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
//! Every series has a `breaker` label, the breaker's name; the other labels take only the fixed
//! values listed, so the number of series is bounded by the registry's own bound on breakers.
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
//! # Cost
//!
//! A scrape costs nothing on the call path; its own cost grows with the breakers: about 40
//! series per breaker, 16 of them the histogram's. Rendering 1000 breakers, each with a window
//! and calls behind it, takes about 8.3 ms (median, measured on a 2.45 GHz AMD EPYC virtual
//! machine). The registry's snapshot is 0.3 ms of it; the rest is `prometheus_client`'s
//! encoding, about 200 ns a series, most of it in writing labels.
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
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tower_circuit_breaker::metrics::LATENCY_BUCKETS;
use tower_circuit_breaker::registry::{BreakerSnapshot, CircuitBreakerRegistry, RegistrySnapshot};
use tower_circuit_breaker::{CircuitMetrics, CircuitState};

/// The `Content-Type` of [`render`]'s text: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of [`render_openmetrics`]'s text: `OpenMetrics` 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label every series has: the breaker's name.
const BREAKER: &str = "breaker";

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

/// The exposition of `registry`'s breakers in the Prometheus text format (version 0.0.4), for a
/// `/metrics` route: a fresh `prometheus_client` registry holding one [`RegistryCollector`],
/// encoded by [`prometheus_client::encoding::prometheus_text`]. Serve it with [`CONTENT_TYPE`].
///
/// Every Prometheus-compatible scraper reads this format, and `promtool check metrics` lints it.
pub fn render(registry: &CircuitBreakerRegistry) -> String {
    let mut out = buffer(registry);
    // Writing to a `String` never fails, and the collector fails only when its writer does.
    let _ = prometheus_text::encode(&mut out, &exposition(registry));
    out
}

/// The same metrics as [`render`] in the `OpenMetrics` 1.0.0 text format, which adds each
/// family's unit (`# UNIT`) and ends in `# EOF`, so a cut-off scrape is noticed. Serve it with
/// [`OPENMETRICS_CONTENT_TYPE`], to a scraper whose `Accept` header asks for
/// `application/openmetrics-text` (Prometheus asks for it first).
pub fn render_openmetrics(registry: &CircuitBreakerRegistry) -> String {
    let mut out = buffer(registry);
    // As in `render`: nothing here can fail.
    let _ = text::encode(&mut out, &exposition(registry));
    out
}

fn exposition(registry: &CircuitBreakerRegistry) -> Registry {
    let mut exposition = Registry::default();
    exposition.register_collector(Box::new(RegistryCollector::new(registry.clone())));
    exposition
}

fn buffer(registry: &CircuitBreakerRegistry) -> String {
    String::with_capacity(registry.len().saturating_mul(BYTES_PER_BREAKER) + 64)
}

/// A [`Collector`] of every breaker of a [`CircuitBreakerRegistry`], read from a
/// [`snapshot`](CircuitBreakerRegistry::snapshot) on each scrape. See the [module docs](self) for
/// the families it writes and how to register it.
///
/// It holds a handle to the registry (a clone shares the breakers), so breakers created after it
/// was registered appear in the next scrape.
#[derive(Debug, Clone)]
pub struct RegistryCollector {
    registry: CircuitBreakerRegistry,
}

// ===== impl RegistryCollector =====

impl RegistryCollector {
    /// A collector of `registry`'s breakers.
    pub const fn new(registry: CircuitBreakerRegistry) -> Self {
        Self { registry }
    }

    /// The registry it reads.
    pub const fn registry(&self) -> &CircuitBreakerRegistry {
        &self.registry
    }
}

impl From<CircuitBreakerRegistry> for RegistryCollector {
    fn from(registry: CircuitBreakerRegistry) -> Self {
        Self::new(registry)
    }
}

impl Collector for RegistryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        encode_snapshot(&self.registry.snapshot(), &mut encoder)
    }
}

// ===== encoding =====

/// Writes every family, each with one series (or one per label value) per breaker.
fn encode_snapshot(
    snapshot: &RegistrySnapshot,
    encoder: &mut DescriptorEncoder<'_>,
) -> fmt::Result {
    let breakers = snapshot.breakers.as_slice();

    {
        let mut family = encoder.encode_descriptor(
            "circuit_breaker_state",
            "State of the breaker: 1 for its state, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for breaker in breakers {
            for state in CircuitState::ALL {
                let labels = [(BREAKER, &*breaker.name), ("state", state.as_str())];
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
                        let labels = [
                            (BREAKER, &*breaker.name),
                            ("from", from.as_str()),
                            ("to", to.as_str()),
                        ];
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
            let labels = [(BREAKER, &*breaker.name)];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(latency.sum.as_secs_f64(), count, &buckets, None)?;
        }
    }

    Ok(())
}

/// A gauge family with one series per breaker for which `value` gives a value.
fn gauges<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    breakers: &[BreakerSnapshot],
    value: impl Fn(&BreakerSnapshot) -> Option<V>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for breaker in breakers {
        if let Some(value) = value(breaker) {
            family
                .encode_family(&[(BREAKER, &*breaker.name)])?
                .encode_gauge(&value)?;
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
    breakers: &[BreakerSnapshot],
    values: impl Fn(&CircuitMetrics) -> [(&'static str, u64); N],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for breaker in breakers {
        for (value, count) in values(&breaker.metrics) {
            if label.is_empty() {
                counter(&mut family, &[(BREAKER, &*breaker.name)], count)?;
            } else {
                counter(
                    &mut family,
                    &[(BREAKER, &*breaker.name), (label, value)],
                    count,
                )?;
            }
        }
    }
    Ok(())
}

fn counter<const L: usize>(
    family: &mut MetricEncoder<'_>,
    labels: &[(&str, &str); L],
    count: u64,
) -> fmt::Result {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&count, None)
}
