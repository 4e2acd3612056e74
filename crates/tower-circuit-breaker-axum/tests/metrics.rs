//! The Prometheus exposition of a registry, checked by Prometheus' own linter and read back by a
//! real parser: `promtool check metrics` finds nothing to report, and the parsed scrape holds, for
//! every breaker, exactly one state at 1 and the figures of the breaker's own snapshot.
//!
//! The breakers are driven through closed, open, half-open, isolated and disabled on a
//! `ManualClock`: nothing sleeps. `promtool` comes with Debian's `prometheus` package; without
//! it the promtool tests fail and say so.

use std::collections::BTreeMap;
use std::time::Duration;

use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{OpenMetricsType, OpenMetricsValue};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tower_circuit_breaker::keyed::KeyedBreakers;
use tower_circuit_breaker::metrics::LATENCY_BUCKETS;
use tower_circuit_breaker::registry::{BreakerSettings, BreakerSnapshot};
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitMetrics, CircuitState, Clock,
    FailureRateRule, ManualClock, OwnedPermit, SlidingWindow, SlowCallRule,
};
use tower_circuit_breaker_axum::metrics::{self, RegistryCollector};

#[path = "support/prometheus.rs"]
mod prometheus;

use prometheus::{insert_histogram, labels_of, le, parse, promtool_check, Labels, Scrape};

/// A breaker name that needs every escape a label value has.
const ODD_NAME: &str = "odd \"name\", {x}\\y\nz";

// ===== the scenario =====

/// A registry whose breakers stand in every state, with calls of every outcome behind them.
struct Scenario {
    registry: CircuitBreakerRegistry,
    time: ManualClock,
    /// The half-open probe of `search`, still in flight.
    probe: OwnedPermit,
}

/// Every call is timed, so the histograms have something in them.
fn base() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .latency_sample_every(1)
        .break_duration(Duration::from_secs(30))
}

/// A failure-rate and slow-call window over the last 10 calls, judged from `minimum` calls.
fn windowed(minimum: u32) -> CircuitBreakerConfig {
    base()
        .failure_threshold(100)
        .half_open_max_calls(1)
        .failure_rate(
            FailureRateRule::new(0.5)
                .window(SlidingWindow::Calls(10))
                .minimum_throughput(minimum),
        )
        .slow_call(SlowCallRule::new(Duration::from_millis(100), 1.0))
}

fn scenario() -> Scenario {
    let time = ManualClock::new();
    let registry = CircuitBreakerRegistry::builder()
        .clock(Clock::manual(&time))
        .default_config(base())
        .breaker("inventory", base().failure_threshold(5))
        .breaker(
            "payments",
            BreakerSettings::new(base().failure_threshold(2)).critical(true),
        )
        .breaker("search", windowed(4))
        .breaker("catalog", windowed(10))
        .breaker("reports", base())
        .breaker("legacy", base())
        .breaker(ODD_NAME, base())
        .build()
        .expect("valid settings");
    let get = |name: &str| registry.get(name).expect("configured");
    // Each call lasts `took` on the manual clock, between admission and outcome.
    let call = |name: &str, took: Duration, end: fn(OwnedPermit)| {
        let permit = get(name).try_acquire_owned().expect("admitted");
        time.advance(took);
        end(permit);
    };
    let ms = Duration::from_millis;

    // search: a failure rate of 0.5 over 4 calls opens it.
    for _ in 0..2 {
        call("search", ms(10), OwnedPermit::success);
    }
    for _ in 0..2 {
        call("search", ms(10), OwnedPermit::failure);
    }
    assert_eq!(get("search").state(), CircuitState::Open);

    // inventory: closed, every outcome once or more.
    for _ in 0..3 {
        call("inventory", ms(20), OwnedPermit::success);
    }
    call("inventory", ms(300), OwnedPermit::failure);
    call("inventory", ms(2_000), OwnedPermit::timeout);
    call("inventory", ms(1), OwnedPermit::ignored);
    call("inventory", ms(1), drop);

    // catalog: closed, below its minimum throughput, one failure and one slow call in four.
    for _ in 0..2 {
        call("catalog", ms(5), OwnedPermit::success);
    }
    call("catalog", ms(150), OwnedPermit::success);
    call("catalog", ms(5), OwnedPermit::failure);

    // reports and legacy: overridden by hand.
    get("reports").isolate();
    for _ in 0..2 {
        get("reports").try_acquire().expect_err("isolated");
    }
    get("legacy").disable();
    call("legacy", ms(7), OwnedPermit::success);

    // search's break is over: one probe goes in, and the next call finds every probe slot taken.
    time.advance(Duration::from_secs(30));
    let probe = get("search").try_acquire_owned().expect("the probe");
    get("search")
        .try_acquire()
        .expect_err("every probe slot taken");
    assert_eq!(get("search").state(), CircuitState::HalfOpen);

    // payments: two failures open it for 30 s; three calls are turned away.
    call("payments", ms(40), OwnedPermit::failure);
    call("payments", ms(60), OwnedPermit::failure);
    for _ in 0..3 {
        get("payments").try_acquire().expect_err("open");
    }

    Scenario {
        registry,
        time,
        probe,
    }
}

// ===== reading a scrape back =====

/// Parses `OpenMetrics` text into the same shape (counter series take their `_total`).
///
/// `openmetrics-parser` 0.5 refuses a `# UNIT` line on a histogram ("Histogram metrics can't have
/// units"), which the `OpenMetrics` 1.0 specification allows (a unit is a suffix of the family's
/// name, for any type) and Prometheus reads. Those lines are checked, then left out of what the
/// parser is given.
fn parse_open(text: &str) -> Scrape {
    let histograms: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.strip_suffix(" histogram"))
        .collect();
    let mut accepted = String::with_capacity(text.len());
    let mut histogram_units = BTreeMap::new();
    for line in text.lines() {
        let unit = line
            .strip_prefix("# UNIT ")
            .and_then(|rest| rest.split_once(' '))
            .filter(|(family, _)| histograms.contains(family));
        match unit {
            Some((family, unit)) => {
                assert!(family.ends_with(&format!("_{unit}")), "{line}");
                histogram_units.insert(family.to_owned(), unit.to_owned());
            }
            None => {
                accepted.push_str(line);
                accepted.push('\n');
            }
        }
    }
    let exposition = parse_openmetrics(&accepted).unwrap_or_else(|err| panic!("unparsable: {err}"));
    let mut scrape = Scrape::default();
    for (name, family) in &exposition.families {
        scrape.families.insert(
            name.clone(),
            (
                family.family_type.to_string(),
                family.help.clone(),
                family.unit.clone(),
            ),
        );
        let names = family.get_label_names().to_vec();
        for sample in family.iter_samples() {
            let labels = labels_of(
                &names,
                sample
                    .get_labelset()
                    .expect("bound to its family")
                    .iter_values()
                    .cloned(),
            );
            match &sample.value {
                OpenMetricsValue::Counter(counter) => {
                    scrape.insert(format!("{name}_total"), labels, counter.value.as_f64());
                }
                OpenMetricsValue::Gauge(value) => {
                    scrape.insert(name.clone(), labels, value.as_f64());
                }
                OpenMetricsValue::Histogram(histogram) => {
                    insert_histogram(&mut scrape, name, &labels, histogram);
                }
                other => panic!("{name}: unexpected sample {other:?}"),
            }
        }
    }
    for (family, unit) in histogram_units {
        scrape.families.get_mut(&family).expect("declared").2 = unit;
    }
    scrape
}

fn snapshot_of(scenario: &Scenario, name: &str) -> BreakerSnapshot {
    scenario
        .registry
        .snapshot()
        .breakers
        .into_iter()
        .find(|breaker| &*breaker.name == name)
        .expect("in the registry")
}

#[allow(clippy::cast_precision_loss)] // small counts
fn f(count: u64) -> f64 {
    count as f64
}

// ===== promtool =====

#[test]
fn promtool_finds_nothing_to_report_in_the_scrape() {
    let scenario = scenario();
    let text = metrics::render(&scenario.registry);
    let (ok, printed) = promtool_check(&text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics reported:\n{printed}\non:\n{text}"
    );
}

#[test]
fn promtool_finds_nothing_to_report_without_breakers() {
    let registry = CircuitBreakerRegistry::new();
    let text = metrics::render(&registry);
    assert!(!text.contains("breaker=\""), "no series without breakers");
    let (ok, printed) = promtool_check(&text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics reported:\n{printed}\non:\n{text}"
    );
}

#[test]
fn promtool_reports_a_broken_scrape() {
    // The linter is really reading what it is given: a counter without `_total` is reported.
    let (ok, printed) =
        promtool_check("# HELP calls Calls.\n# TYPE calls counter\ncalls{breaker=\"db\"} 1\n");
    assert!(!ok, "promtool accepted a counter without _total");
    assert!(printed.contains("_total"), "promtool printed: {printed}");
}

// ===== the parsed scrape =====

#[test]
fn every_breaker_has_one_state_series_at_one_and_it_is_its_state() {
    let scenario = scenario();
    let scrape = parse(&metrics::render(&scenario.registry));
    let expected = [
        ("inventory", CircuitState::Closed),
        ("payments", CircuitState::Open),
        ("search", CircuitState::HalfOpen),
        ("catalog", CircuitState::Closed),
        ("reports", CircuitState::Isolated),
        ("legacy", CircuitState::Disabled),
        (ODD_NAME, CircuitState::Closed),
    ];
    assert_eq!(scenario.registry.len(), expected.len());
    for (name, state) in expected {
        assert_eq!(snapshot_of(&scenario, name).metrics.state, state, "{name}");
        let series: Vec<_> = scrape
            .series("circuit_breaker_state")
            .into_iter()
            .filter(|(labels, _)| labels["breaker"] == name)
            .collect();
        assert_eq!(
            series.len(),
            CircuitState::ALL.len(),
            "{name}: one per state"
        );
        let on: Vec<_> = series.iter().filter(|(_, value)| *value == 1.0).collect();
        assert_eq!(on.len(), 1, "{name}: exactly one state at 1");
        assert_eq!(on[0].0["state"], state.as_str(), "{name}");
        assert!(
            series
                .iter()
                .all(|(_, value)| *value == 0.0 || *value == 1.0),
            "{name}: states are 0 or 1"
        );
    }
    assert_eq!(
        scrape.families["circuit_breaker_state"].0, "gauge",
        "the state is a gauge"
    );
}

#[test]
fn call_counters_equal_the_breakers_snapshot() {
    let scenario = scenario();
    let scrape = parse(&metrics::render(&scenario.registry));
    for breaker in scenario.registry.snapshot().breakers {
        let name = &*breaker.name;
        let m = &breaker.metrics;
        let calls = |outcome| {
            scrape.get(
                "circuit_breaker_calls_total",
                &[("breaker", name), ("outcome", outcome)],
            )
        };
        assert_eq!(calls("success"), f(m.successful_calls), "{name}");
        assert_eq!(calls("failure"), f(m.failed_calls), "{name}");
        assert_eq!(calls("ignored"), f(m.ignored_calls), "{name}");
        assert_eq!(calls("cancelled"), f(m.cancelled_calls), "{name}");
        // The outcomes add up to the calls: a timeout is not counted a second time among them.
        let outcomes: f64 = ["success", "failure", "ignored", "cancelled"]
            .into_iter()
            .map(calls)
            .sum();
        assert_eq!(outcomes, f(m.total_calls), "{name}");
        let timeouts = scrape.get("circuit_breaker_timeouts_total", &[("breaker", name)]);
        assert_eq!(timeouts, f(m.timeouts), "{name}");
        assert!(
            timeouts <= calls("failure"),
            "{name}: timeouts are failures"
        );
    }
    // The scenario did what it says.
    let inventory = |outcome| {
        scrape.get(
            "circuit_breaker_calls_total",
            &[("breaker", "inventory"), ("outcome", outcome)],
        )
    };
    assert_eq!(inventory("success"), 3.0);
    assert_eq!(inventory("failure"), 2.0);
    assert_eq!(inventory("ignored"), 1.0);
    assert_eq!(inventory("cancelled"), 1.0);
    assert_eq!(
        scrape.get(
            "circuit_breaker_timeouts_total",
            &[("breaker", "inventory")]
        ),
        1.0
    );
    for family in [
        "circuit_breaker_calls_total",
        "circuit_breaker_timeouts_total",
        "circuit_breaker_rejections_total",
        "circuit_breaker_transitions_total",
    ] {
        assert_eq!(scrape.families[family].0, "counter", "{family}");
    }
}

#[test]
fn rejections_and_transitions_equal_the_breakers_snapshot() {
    let scenario = scenario();
    let scrape = parse(&metrics::render(&scenario.registry));
    for breaker in scenario.registry.snapshot().breakers {
        let name = &*breaker.name;
        let m = &breaker.metrics;
        let rejections = |reason| {
            scrape.get(
                "circuit_breaker_rejections_total",
                &[("breaker", name), ("reason", reason)],
            )
        };
        assert_eq!(rejections("open"), f(m.rejected_open), "{name}");
        assert_eq!(
            rejections("half_open_full"),
            f(m.rejected_half_open),
            "{name}"
        );
        // Every pair the breaker has taken is there with its count; the rest are there at 0 or
        // not at all.
        let mut into = [0.0; CircuitState::ALL.len()];
        for (index, to) in CircuitState::ALL.into_iter().enumerate() {
            for from in CircuitState::ALL {
                let labels = [
                    ("breaker", name),
                    ("from", from.as_str()),
                    ("to", to.as_str()),
                ];
                let count = m.transitions.between(from, to);
                let exported = scrape.value("circuit_breaker_transitions_total", &labels);
                if count > 0 {
                    assert_eq!(exported, Some(f(count)), "{name}: {from} to {to}");
                } else {
                    assert!(
                        matches!(exported, None | Some(0.0)),
                        "{name}: {from} to {to}"
                    );
                }
                into[index] += exported.unwrap_or(0.0);
            }
            assert_eq!(into[index], f(m.transitions.to(to)), "{name}: into {to}");
        }
    }
    let rejections = |name, reason| {
        scrape.get(
            "circuit_breaker_rejections_total",
            &[("breaker", name), ("reason", reason)],
        )
    };
    assert_eq!(rejections("payments", "open"), 3.0);
    assert_eq!(rejections("reports", "open"), 2.0);
    assert_eq!(rejections("search", "half_open_full"), 1.0);
    let transitions = |name, from, to| {
        scrape.get(
            "circuit_breaker_transitions_total",
            &[("breaker", name), ("from", from), ("to", to)],
        )
    };
    assert_eq!(transitions("search", "closed", "open"), 1.0);
    assert_eq!(transitions("search", "open", "half_open"), 1.0);
    assert_eq!(transitions("search", "half_open", "open"), 0.0);
    assert_eq!(transitions("payments", "closed", "open"), 1.0);
    assert_eq!(transitions("reports", "closed", "isolated"), 1.0);
    assert_eq!(transitions("legacy", "closed", "disabled"), 1.0);
    // Exported from 0 before the first trip, so `increase()` sees the first one.
    assert_eq!(transitions("inventory", "closed", "open"), 0.0);
    assert_eq!(transitions("inventory", "half_open", "open"), 0.0);
    // A pair the state machine never takes is not exported.
    let never = [
        ("breaker", "inventory"),
        ("from", "isolated"),
        ("to", "open"),
    ];
    assert_eq!(
        scrape.value("circuit_breaker_transitions_total", &never),
        None
    );
}

#[test]
fn a_failed_probe_counts_from_half_open_to_open_not_as_a_trip() {
    let Scenario {
        registry, probe, ..
    } = scenario();
    probe.failure();
    let scrape = parse(&metrics::render(&registry));
    let transitions = |from, to| {
        scrape.get(
            "circuit_breaker_transitions_total",
            &[("breaker", "search"), ("from", from), ("to", to)],
        )
    };
    assert_eq!(transitions("half_open", "open"), 1.0);
    assert_eq!(transitions("closed", "open"), 1.0, "still the one trip");
    assert_eq!(
        scrape.get(
            "circuit_breaker_state",
            &[("breaker", "search"), ("state", "open")]
        ),
        1.0
    );
}

#[test]
fn the_duration_histogram_is_the_latency_of_the_timed_calls() {
    let scenario = scenario();
    let scrape = parse(&metrics::render(&scenario.registry));
    let family = "circuit_breaker_call_duration_seconds";
    assert_eq!(scrape.families[family].0, "histogram");
    for breaker in scenario.registry.snapshot().breakers {
        let name = &*breaker.name;
        let latency = &breaker.metrics.latency;
        let count = scrape.get(&format!("{family}_count"), &[("breaker", name)]);
        assert_eq!(count, f(latency.samples), "{name}: count = samples");
        let sum = scrape.get(&format!("{family}_sum"), &[("breaker", name)]);
        assert!(
            (sum - latency.sum.as_secs_f64()).abs() < 1e-9,
            "{name}: sum {sum} s, latency sum {:?}",
            latency.sum
        );
        // Cumulative: each bucket holds the calls at or under its bound.
        let mut below = 0;
        for (index, bound) in LATENCY_BUCKETS.iter().enumerate() {
            below += latency.buckets[index];
            let bucket = scrape.get(
                &format!("{family}_bucket"),
                &[("breaker", name), ("le", &le(bound.as_secs_f64()))],
            );
            assert_eq!(bucket, f(below), "{name}: le {bound:?}");
        }
        let inf = scrape.get(
            &format!("{family}_bucket"),
            &[("breaker", name), ("le", "+Inf")],
        );
        assert_eq!(inf, count, "{name}: +Inf = count");
        let buckets = scrape
            .series(&format!("{family}_bucket"))
            .into_iter()
            .filter(|(labels, _)| labels["breaker"] == name)
            .count();
        assert_eq!(buckets, LATENCY_BUCKETS.len() + 1, "{name}");
    }
    eprintln!("{:?}", snapshot_of(&scenario, "inventory").metrics.latency);
    // inventory.s seven calls: 3 of 20 ms, 300 ms, 2 s, two of 1 ms.
    let inventory = |le: &str| {
        scrape.get(
            &format!("{family}_bucket"),
            &[("breaker", "inventory"), ("le", le)],
        )
    };
    assert_eq!(
        scrape.get(&format!("{family}_count"), &[("breaker", "inventory")]),
        6.0
    );
    assert_eq!(inventory("0.001"), 1.0);
    assert_eq!(inventory("0.01"), 1.0);
    assert_eq!(inventory("0.025"), 4.0);
    assert_eq!(inventory("0.25"), 4.0);
    assert_eq!(inventory("0.5"), 5.0);
    assert_eq!(inventory("1"), 5.0);
    assert_eq!(inventory("2.5"), 6.0);
    assert_eq!(inventory("+Inf"), 6.0);
    let sum = scrape.get(&format!("{family}_sum"), &[("breaker", "inventory")]);
    assert!((sum - 2.361).abs() < 1e-9, "sum {sum}");
}

#[test]
fn window_rates_are_exported_only_for_breakers_with_a_window() {
    let scenario = scenario();
    let scrape = parse(&metrics::render(&scenario.registry));
    for breaker in scenario.registry.snapshot().breakers {
        let name = &*breaker.name;
        let labels = [("breaker", name)];
        let failure = scrape.value("circuit_breaker_failure_rate", &labels);
        let slow = scrape.value("circuit_breaker_slow_call_rate", &labels);
        let calls = scrape.value("circuit_breaker_window_calls", &labels);
        match breaker.metrics.window {
            Some(window) => {
                assert_eq!(failure, Some(window.failure_rate()), "{name}");
                assert_eq!(slow, Some(window.slow_call_rate()), "{name}");
                assert_eq!(calls, Some(f(window.calls)), "{name}");
            }
            None => assert_eq!((failure, slow, calls), (None, None, None), "{name}"),
        }
    }
    // catalog: one failure and one slow call in four calls.
    let catalog = [("breaker", "catalog")];
    assert_eq!(scrape.get("circuit_breaker_failure_rate", &catalog), 0.25);
    assert_eq!(scrape.get("circuit_breaker_slow_call_rate", &catalog), 0.25);
    assert_eq!(scrape.get("circuit_breaker_window_calls", &catalog), 4.0);
    assert_eq!(scrape.series("circuit_breaker_failure_rate").len(), 2);
}

#[test]
fn gauges_show_the_breakers_present_figures() {
    let scenario = scenario();
    scenario.time.advance(Duration::from_secs(5));
    let scrape = parse(&metrics::render(&scenario.registry));
    for breaker in scenario.registry.snapshot().breakers {
        let name = &*breaker.name;
        let labels = [("breaker", name)];
        let m: &CircuitMetrics = &breaker.metrics;
        assert_eq!(
            scrape.get("circuit_breaker_critical", &labels),
            f(u64::from(breaker.critical)),
            "{name}"
        );
        assert_eq!(
            scrape.get("circuit_breaker_consecutive_failures", &labels),
            f(u64::from(m.consecutive_failures)),
            "{name}"
        );
        assert_eq!(
            scrape.get("circuit_breaker_probes_in_flight", &labels),
            f(u64::from(m.half_open_in_flight)),
            "{name}"
        );
        assert_eq!(
            scrape.get("circuit_breaker_time_in_state_seconds", &labels),
            m.time_in_state.as_secs_f64(),
            "{name}"
        );
        assert_eq!(
            scrape.get("circuit_breaker_break_duration_seconds", &labels),
            m.break_duration.as_secs_f64(),
            "{name}"
        );
        let next_probe = scrape.value("circuit_breaker_next_probe_in_seconds", &labels);
        if m.state == CircuitState::Open {
            assert_eq!(
                next_probe,
                m.next_probe_in.map(|left| left.as_secs_f64()),
                "{name}"
            );
        } else {
            assert_eq!(
                next_probe, None,
                "{name}: only open breakers wait for a probe"
            );
        }
    }
    let payments = [("breaker", "payments")];
    assert_eq!(scrape.get("circuit_breaker_critical", &payments), 1.0);
    assert_eq!(
        scrape.get("circuit_breaker_probes_in_flight", &[("breaker", "search")]),
        1.0
    );
    // payments opened 5 s ago for 30 s.
    assert_eq!(
        scrape.get("circuit_breaker_next_probe_in_seconds", &payments),
        25.0
    );
    assert_eq!(
        scrape.series("circuit_breaker_next_probe_in_seconds").len(),
        1
    );
    assert_eq!(
        scrape.get(
            "circuit_breaker_consecutive_failures",
            &[("breaker", "inventory")]
        ),
        2.0
    );
}

#[test]
fn series_are_counted_per_breaker_and_no_label_set_repeats() {
    let scenario = scenario();
    let breakers = scenario.registry.len();
    // `parse` fails on a label set seen twice in a series; the counts pin what each family holds.
    let scrape = parse(&metrics::render(&scenario.registry));
    let count = |series: &str| scrape.series(series).len();
    assert_eq!(count("circuit_breaker_state"), 5 * breakers);
    assert_eq!(count("circuit_breaker_calls_total"), 4 * breakers);
    assert_eq!(count("circuit_breaker_rejections_total"), 2 * breakers);
    // The automatic cycle's four, and each other pair a breaker has taken.
    assert_eq!(
        count("circuit_breaker_transitions_total"),
        transition_series(&scenario.registry)
    );
    for per_breaker in [
        "circuit_breaker_critical",
        "circuit_breaker_timeouts_total",
        "circuit_breaker_consecutive_failures",
        "circuit_breaker_probes_in_flight",
        "circuit_breaker_time_in_state_seconds",
        "circuit_breaker_break_duration_seconds",
        "circuit_breaker_call_duration_seconds_count",
        "circuit_breaker_call_duration_seconds_sum",
    ] {
        assert_eq!(count(per_breaker), breakers, "{per_breaker}");
    }
    // Labels are the breaker's name and fixed words only.
    for (series, labels) in scrape.samples.keys() {
        for (label, value) in labels {
            let allowed: &[&str] = match label.as_str() {
                "breaker" => continue,
                "state" | "from" | "to" => &["closed", "open", "half_open", "isolated", "disabled"],
                "outcome" => &["success", "failure", "ignored", "cancelled"],
                "reason" => &["open", "half_open_full"],
                "le" => continue,
                other => panic!("{series}: unexpected label {other}"),
            };
            assert!(
                allowed.contains(&value.as_str()),
                "{series}: {label}={value}"
            );
        }
    }
    // Every family is documented.
    for (family, (_, help, _)) in &scrape.families {
        assert!(family.starts_with("circuit_breaker_"), "{family}");
        assert!(!help.is_empty(), "{family} has no help");
    }
}

#[test]
fn a_breaker_name_that_needs_escaping_reads_back_unchanged() {
    let scenario = scenario();
    let text = metrics::render(&scenario.registry);
    assert!(!text.contains(ODD_NAME), "the name is escaped in the text");
    let scrape = parse(&text);
    assert_eq!(
        scrape.get(
            "circuit_breaker_state",
            &[("breaker", ODD_NAME), ("state", "closed")]
        ),
        1.0
    );
}

#[test]
fn counters_never_go_down_across_a_reset() {
    let scenario = scenario();
    let before = parse(&metrics::render(&scenario.registry));
    for breaker in scenario.registry.breakers() {
        breaker.reset();
    }
    let after = parse(&metrics::render(&scenario.registry));
    let mut counters = 0;
    for ((series, labels), value) in &before.samples {
        if series.ends_with("_total") || series.contains("call_duration_seconds") {
            counters += 1;
            let now = after.samples[&(series.clone(), labels.clone())];
            assert!(
                now >= *value,
                "{series}{labels:?} went from {value} to {now}"
            );
        }
    }
    assert!(counters > 0);
    let transitions = |name, from| {
        after.get(
            "circuit_breaker_transitions_total",
            &[("breaker", name), ("from", from), ("to", "closed")],
        )
    };
    assert_eq!(
        transitions("payments", "open"),
        1.0,
        "a reset is a transition"
    );
    // Resetting a closed breaker changes no state: no transition, and no new series.
    let closed_to_closed = [
        ("breaker", "inventory"),
        ("from", "closed"),
        ("to", "closed"),
    ];
    assert_eq!(
        after.value("circuit_breaker_transitions_total", &closed_to_closed),
        None
    );
    assert_eq!(
        after.series("circuit_breaker_transitions_total").len(),
        transition_series(&scenario.registry)
    );
    let (ok, printed) = promtool_check(&metrics::render(&scenario.registry));
    assert!(ok && printed.trim().is_empty(), "promtool: {printed}");
}

// ===== OpenMetrics and the app's own registry =====

#[test]
fn the_openmetrics_rendering_holds_the_same_samples_with_units() {
    let scenario = scenario();
    let text = metrics::render_openmetrics(&scenario.registry);
    assert!(text.ends_with("# EOF\n"));
    let open = parse_open(&text);
    let classic = parse(&metrics::render(&scenario.registry));
    assert_eq!(open.samples, classic.samples);
    let (kind, _, unit) = &open.families["circuit_breaker_call_duration_seconds"];
    assert_eq!(
        (kind.as_str(), unit.as_str()),
        (OpenMetricsType::Histogram.to_string().as_str(), "seconds")
    );
    assert_eq!(
        open.families["circuit_breaker_time_in_state_seconds"].2,
        "seconds"
    );
    assert_eq!(open.families["circuit_breaker_calls"].0, "counter");
}

#[test]
fn the_collector_in_an_apps_registry_takes_its_prefix_and_sees_new_breakers() {
    let scenario = scenario();
    let mut registry = Registry::default();
    registry
        .sub_registry_with_prefix("shop")
        .register_collector(Box::new(RegistryCollector::new(scenario.registry.clone())));
    // A breaker made after the collector was registered is in the next scrape.
    scenario
        .registry
        .get_or_create("late")
        .expect("auto-created");
    let mut text = String::new();
    encode(&mut text, &registry).expect("encodes");
    let scrape = parse_open(&text);
    assert_eq!(
        scrape.get(
            "shop_circuit_breaker_state",
            &[("breaker", "late"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        scrape.get(
            "shop_circuit_breaker_calls_total",
            &[("breaker", "inventory"), ("outcome", "success")]
        ),
        3.0
    );
}

#[test]
fn content_types_name_the_formats_rendered() {
    assert_eq!(
        metrics::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        metrics::OPENMETRICS_CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let registry = CircuitBreakerRegistry::new();
    assert!(!metrics::render(&registry).contains("# EOF"));
    assert!(metrics::render_openmetrics(&registry).ends_with("# EOF\n"));
}

/// The transition series a scrape holds: per breaker, the four of the automatic cycle (exported
/// from 0) and every other pair the breaker has taken.
fn transition_series(registry: &CircuitBreakerRegistry) -> usize {
    use CircuitState::{Closed, HalfOpen, Open};
    let automatic = [
        (Closed, Open),
        (Open, HalfOpen),
        (HalfOpen, Closed),
        (HalfOpen, Open),
    ];
    registry
        .snapshot()
        .breakers
        .iter()
        .map(|breaker| {
            let counts = &breaker.metrics.transitions;
            let others = CircuitState::ALL
                .into_iter()
                .flat_map(|from| CircuitState::ALL.map(|to| (from, to)))
                .filter(|pair| !automatic.contains(pair))
                .filter(|&(from, to)| counts.between(from, to) > 0)
                .count();
            automatic.len() + others
        })
        .sum()
}

// ===== keyed groups =====

/// A key the hosts' group and the tenants' group share with a named breaker.
const SHARED: &str = "api.example.com";

/// A registry with named breakers and two keyed groups, on a clock that stands still.
struct Fleet {
    registry: CircuitBreakerRegistry,
    hosts: KeyedBreakers,
    tenants: KeyedBreakers,
}

/// Named `api.example.com` (2 successes) and `db` (a rate window, open after 4 failures); keyed group `hosts` (at most 2 keys, opens
/// on one failure) with `api.example.com` and `c.example` open, `b.example` evicted for
/// `c.example`, and `d.example` sent to the overflow breaker; keyed group `tenants` (a rate
/// window) with `api.example.com` (3 successes), `acme` (2 successes, 1 failure) and
/// [`ODD_NAME`] isolated.
fn fleet() -> Fleet {
    let time = ManualClock::new();
    let registry = CircuitBreakerRegistry::builder()
        .clock(Clock::manual(&time))
        .default_config(base().failure_threshold(1))
        .breaker(SHARED, base().failure_threshold(1))
        .breaker("db", windowed(4))
        .build()
        .expect("valid settings");
    let hosts = registry
        .keyed("hosts")
        .max_breakers(2)
        .build()
        .expect("valid group");
    let tenants = registry
        .keyed("tenants")
        .template(windowed(4))
        .build()
        .expect("valid group");
    let ms = Duration::from_millis;
    let call = |breaker: &tower_circuit_breaker::CircuitBreaker, end: fn(OwnedPermit)| {
        let permit = breaker.try_acquire_owned().expect("admitted");
        time.advance(ms(3));
        end(permit);
    };

    let shared = registry.get(SHARED).expect("configured");
    call(&shared, OwnedPermit::success);
    call(&shared, OwnedPermit::success);
    let db = registry.get("db").expect("configured");
    for _ in 0..4 {
        call(&db, OwnedPermit::failure);
    }
    assert_eq!(db.state(), CircuitState::Open);

    call(&hosts.get(Some(SHARED)), OwnedPermit::success);
    call(&hosts.get(Some(SHARED)), OwnedPermit::failure);
    drop(hosts.get(Some("b.example")));
    let c = hosts.get(Some("c.example"));
    assert_eq!(hosts.evictions(), 1, "b.example made room for c.example");
    call(&c, OwnedPermit::failure);
    drop(c);
    let d = hosts.get(Some("d.example"));
    assert_eq!(
        hosts.overflowed_calls(),
        1,
        "both breakers open: d.example overflows"
    );
    call(&d, OwnedPermit::success);
    drop(d);

    for _ in 0..3 {
        call(&tenants.get(Some(SHARED)), OwnedPermit::success);
    }
    call(&tenants.get(Some("acme")), OwnedPermit::success);
    call(&tenants.get(Some("acme")), OwnedPermit::success);
    call(&tenants.get(Some("acme")), OwnedPermit::failure);
    tenants.get(Some(ODD_NAME)).isolate();

    Fleet {
        registry,
        hosts,
        tenants,
    }
}

/// The labels that name `breaker`'s series in a scrape with keyed breakers: `breaker`, and
/// `group`, empty for a named breaker.
fn id_of(breaker: &BreakerSnapshot) -> Vec<(&str, &str)> {
    vec![
        ("breaker", &*breaker.name),
        ("group", breaker.group.as_deref().unwrap_or("")),
    ]
}

fn with<'a>(id: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    id.iter().chain(more).copied().collect()
}

/// How many series of `scrape` carry the labels `id`.
fn series_of(scrape: &Scrape, id: &[(&str, &str)]) -> usize {
    scrape
        .samples
        .keys()
        .filter(|(_, labels)| {
            id.iter()
                .all(|(name, value)| labels.get(*name).map(String::as_str) == Some(*value))
        })
        .count()
}

/// `labels` as Prometheus stores them: a label with an empty value is no label.
fn stored(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Fails the test if two series are the same to Prometheus, which reads a label with an empty
/// value as no label.
fn assert_unique_to_prometheus(scrape: &Scrape) {
    let mut seen = std::collections::BTreeSet::new();
    for (series, labels) in scrape.samples.keys() {
        let set = stored(labels);
        assert!(
            seen.insert((series.clone(), set.clone())),
            "{series}{set:?} appears twice to Prometheus"
        );
    }
}

/// The samples of the `circuit_breaker_keyed_*` families.
fn group_samples(scrape: &Scrape) -> BTreeMap<(String, Labels), f64> {
    scrape
        .samples
        .iter()
        .filter(|((series, _), _)| series.starts_with("circuit_breaker_keyed_"))
        .map(|(key, value)| (key.clone(), *value))
        .collect()
}

#[test]
fn keyed_breakers_have_the_series_of_named_ones_with_a_group_label() {
    let fleet = fleet();
    let text = metrics::render(&fleet.registry);
    let (ok, printed) = promtool_check(&text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics reported:\n{printed}\non:\n{text}"
    );
    let scrape = parse(&text);
    assert_unique_to_prometheus(&scrape);

    let snapshot = fleet.registry.snapshot();
    // 2 named; hosts: 2 keys, overflow, no key; tenants: 3 keys, overflow, no key.
    assert_eq!(snapshot.breakers.len(), 2 + 4 + 5);
    for breaker in &snapshot.breakers {
        let id = id_of(breaker);
        let m = &breaker.metrics;
        for state in CircuitState::ALL {
            assert_eq!(
                scrape.get(
                    "circuit_breaker_state",
                    &with(&id, &[("state", state.as_str())])
                ),
                f(u64::from(m.state == state)),
                "{id:?} {state}"
            );
        }
        for (outcome, count) in [
            ("success", m.successful_calls),
            ("failure", m.failed_calls),
            ("ignored", m.ignored_calls),
            ("cancelled", m.cancelled_calls),
        ] {
            assert_eq!(
                scrape.get(
                    "circuit_breaker_calls_total",
                    &with(&id, &[("outcome", outcome)])
                ),
                f(count),
                "{id:?} {outcome}"
            );
        }
        assert_eq!(
            scrape.get(
                "circuit_breaker_rejections_total",
                &with(&id, &[("reason", "open")])
            ),
            f(m.rejected_open),
            "{id:?}"
        );
        assert_eq!(
            scrape.get("circuit_breaker_critical", &id),
            f(u64::from(breaker.critical)),
            "{id:?}"
        );
        assert_eq!(
            scrape.get("circuit_breaker_call_duration_seconds_count", &id),
            f(m.latency.samples),
            "{id:?}"
        );
        assert_eq!(
            scrape.value("circuit_breaker_failure_rate", &id),
            m.window.map(|window| window.failure_rate()),
            "{id:?}"
        );
    }

    // One name, three breakers, three series sets: the named one's `group` is empty, which
    // Prometheus stores as no `group` label.
    let state = |id: &[(&str, &str)], state: &str| {
        scrape.get("circuit_breaker_state", &with(id, &[("state", state)]))
    };
    assert_eq!(state(&[("breaker", SHARED), ("group", "")], "closed"), 1.0);
    assert_eq!(
        state(&[("breaker", SHARED), ("group", "hosts")], "open"),
        1.0
    );
    assert_eq!(
        state(&[("breaker", SHARED), ("group", "tenants")], "closed"),
        1.0
    );
    assert_eq!(
        scrape.get(
            "circuit_breaker_calls_total",
            &[("breaker", SHARED), ("group", ""), ("outcome", "success")]
        ),
        2.0,
        "the named breaker's own count"
    );
    assert_eq!(
        state(&[("breaker", ODD_NAME), ("group", "tenants")], "isolated"),
        1.0,
        "a key that needs escaping reads back unchanged"
    );
    // The overflow breaker took d.example's call.
    assert_eq!(
        scrape.get(
            "circuit_breaker_calls_total",
            &[
                ("breaker", "<overflow>"),
                ("group", "hosts"),
                ("outcome", "success")
            ]
        ),
        1.0
    );
    // The evicted key is gone.
    assert_eq!(
        series_of(&scrape, &[("breaker", "b.example"), ("group", "hosts")]),
        0
    );

    // Every per-breaker family has each breaker, named or keyed.
    let breakers = snapshot.breakers.len();
    let count = |series: &str| scrape.series(series).len();
    assert_eq!(count("circuit_breaker_state"), 5 * breakers);
    assert_eq!(count("circuit_breaker_calls_total"), 4 * breakers);
    for per_breaker in [
        "circuit_breaker_critical",
        "circuit_breaker_timeouts_total",
        "circuit_breaker_consecutive_failures",
        "circuit_breaker_time_in_state_seconds",
        "circuit_breaker_call_duration_seconds_count",
    ] {
        assert_eq!(count(per_breaker), breakers, "{per_breaker}");
    }

    // The series one keyed breaker costs, as the module docs give them: 37, 40 with a window.
    assert_eq!(
        series_of(&scrape, &[("breaker", SHARED), ("group", "tenants")]),
        37,
        "closed, no window, only the automatic transitions"
    );
    assert_eq!(
        series_of(&scrape, &[("breaker", "acme"), ("group", "tenants")]),
        40,
        "closed, with a window"
    );
    assert_eq!(
        series_of(&scrape, &[("breaker", SHARED), ("group", "")]),
        37,
        "a named breaker costs the same"
    );
    // 5 + 4 series per group.
    assert_eq!(group_samples(&scrape).len(), 2 * 9);

    // Labels: every series has `group`; it is empty on a named breaker's series only; the group
    // families have no `breaker`.
    for (series, labels) in scrape.samples.keys() {
        let group = labels.get("group").map(String::as_str);
        if series.starts_with("circuit_breaker_keyed_") {
            assert!(!labels.contains_key("breaker"), "{series}{labels:?}");
            assert!(
                matches!(group, Some("hosts" | "tenants")),
                "{series}{labels:?}"
            );
        } else {
            let breaker = &labels["breaker"];
            let named = fleet.registry.get(breaker).is_some() && group == Some("");
            assert!(
                named || matches!(group, Some("hosts" | "tenants")),
                "{series}{labels:?}"
            );
        }
    }

    // OpenMetrics holds the same samples.
    assert_eq!(
        parse_open(&metrics::render_openmetrics(&fleet.registry)).samples,
        scrape.samples
    );
}

#[test]
fn keyed_group_families_are_the_groups_figures() {
    let fleet = fleet();
    let scrape = parse(&metrics::render(&fleet.registry));
    let snapshot = fleet.registry.snapshot();
    assert_eq!(snapshot.keyed.len(), 2);
    for group in &snapshot.keyed {
        let name = &*group.group;
        let labels = [("group", name)];
        for state in CircuitState::ALL {
            let count = group.by_state.get(state);
            assert_eq!(
                scrape.get(
                    "circuit_breaker_keyed_breakers",
                    &[("group", name), ("state", state.as_str())]
                ),
                f(count as u64),
                "{name} {state}"
            );
        }
        let by_state: f64 = CircuitState::ALL
            .iter()
            .map(|state| {
                scrape.get(
                    "circuit_breaker_keyed_breakers",
                    &[("group", name), ("state", state.as_str())],
                )
            })
            .sum();
        assert_eq!(
            by_state,
            f(group.live as u64 + 2),
            "{name}: the live keys, the overflow and no-key breakers"
        );
        assert_eq!(
            scrape.get("circuit_breaker_keyed_live_breakers", &labels),
            f(group.live as u64)
        );
        assert_eq!(
            scrape.get("circuit_breaker_keyed_max_breakers", &labels),
            f(group.max_breakers as u64)
        );
        assert_eq!(
            scrape.get("circuit_breaker_keyed_overflowed_calls_total", &labels),
            f(group.overflowed_calls)
        );
        assert_eq!(
            scrape.get("circuit_breaker_keyed_evictions_total", &labels),
            f(group.evictions)
        );
    }
    // What the fleet did.
    let hosts = [("group", "hosts")];
    let hosts_in = |state: &str| {
        scrape.get(
            "circuit_breaker_keyed_breakers",
            &[("group", "hosts"), ("state", state)],
        )
    };
    assert_eq!(hosts_in("open"), 2.0);
    assert_eq!(hosts_in("closed"), 2.0);
    assert_eq!(hosts_in("half_open"), 0.0, "every state is exported");
    assert_eq!(
        scrape.get("circuit_breaker_keyed_live_breakers", &hosts),
        2.0
    );
    assert_eq!(
        scrape.get("circuit_breaker_keyed_max_breakers", &hosts),
        2.0
    );
    assert_eq!(
        scrape.get("circuit_breaker_keyed_overflowed_calls_total", &hosts),
        1.0
    );
    assert_eq!(
        scrape.get("circuit_breaker_keyed_evictions_total", &hosts),
        1.0
    );
    assert_eq!(
        scrape.get(
            "circuit_breaker_keyed_max_breakers",
            &[("group", "tenants")]
        ),
        1000.0
    );
    assert_eq!(
        fleet.hosts.len() + fleet.tenants.len(),
        5,
        "2 hosts and 3 tenants"
    );
    for (family, kind) in [
        ("circuit_breaker_keyed_breakers", "gauge"),
        ("circuit_breaker_keyed_live_breakers", "gauge"),
        ("circuit_breaker_keyed_max_breakers", "gauge"),
        ("circuit_breaker_keyed_overflowed_calls_total", "counter"),
        ("circuit_breaker_keyed_evictions_total", "counter"),
    ] {
        let (found, help, _) = &scrape.families[family];
        assert_eq!(found, kind, "{family}");
        assert!(!help.is_empty(), "{family} has no help");
    }
}

#[test]
fn without_keyed_groups_the_scrape_has_no_group_label_and_no_group_family() {
    let scenario = scenario();
    let text = metrics::render(&scenario.registry);
    assert!(!text.contains("group=\""), "no `group` label");
    assert!(!text.contains("circuit_breaker_keyed_"), "no group family");
    assert_eq!(
        RegistryCollector::new(scenario.registry.clone())
            .keyed_aggregate(true)
            .render(),
        text,
        "nothing to aggregate"
    );
}

#[test]
fn in_aggregate_keyed_breakers_have_no_series_of_their_own_and_the_group_families_stay() {
    let fleet = fleet();
    let per_key = RegistryCollector::new(fleet.registry.clone());
    assert!(!per_key.is_keyed_aggregate(), "per key by default");
    assert_eq!(per_key.render(), metrics::render(&fleet.registry));
    let aggregate = RegistryCollector::new(fleet.registry.clone()).keyed_aggregate(true);
    assert!(aggregate.is_keyed_aggregate());

    let text = aggregate.render();
    let (ok, printed) = promtool_check(&text);
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics reported:\n{printed}\non:\n{text}"
    );
    let scrape = parse(&text);
    assert_unique_to_prometheus(&scrape);
    let full = parse(&per_key.render());

    // No series of a keyed breaker; every named breaker's series as before.
    for (series, labels) in scrape.samples.keys() {
        if labels.contains_key("breaker") {
            assert!(!labels.contains_key("group"), "{series}{labels:?}");
        } else {
            assert!(series.starts_with("circuit_breaker_keyed_"), "{series}");
        }
    }
    // (Per key, a named breaker's series have an empty `group`: the same series to Prometheus.)
    let named: BTreeMap<_, _> = full
        .samples
        .iter()
        .filter(|((_, labels), _)| labels.get("group").is_some_and(String::is_empty))
        .map(|((series, labels), value)| ((series.clone(), stored(labels)), *value))
        .collect();
    let named_here: BTreeMap<_, _> = scrape
        .samples
        .iter()
        .filter(|((_, labels), _)| labels.contains_key("breaker"))
        .map(|(key, value)| (key.clone(), *value))
        .collect();
    assert_eq!(named_here, named, "named breakers exported as before");
    assert_eq!(scrape.series("circuit_breaker_state").len(), 5 * 2);

    // The group families, the same as per key.
    assert_eq!(group_samples(&scrape), group_samples(&full));
    assert_eq!(group_samples(&scrape).len(), 2 * 9);
    assert_eq!(
        scrape.get(
            "circuit_breaker_keyed_breakers",
            &[("group", "hosts"), ("state", "open")]
        ),
        2.0
    );

    // What aggregate saves: the keyed breakers' series, 37 to 41 each.
    let keyed_breakers = fleet.registry.snapshot().breakers.len() - 2;
    let saved = full.samples.len() - scrape.samples.len();
    assert!(
        (37 * keyed_breakers..=41 * keyed_breakers).contains(&saved),
        "{saved} series for {keyed_breakers} keyed breakers"
    );

    // The same in OpenMetrics.
    assert_eq!(
        parse_open(&aggregate.render_openmetrics()).samples,
        scrape.samples
    );
}

#[test]
fn keys_named_like_other_breakers_never_repeat_a_series() {
    let registry = CircuitBreakerRegistry::builder()
        .clock(Clock::manual(&ManualClock::new()))
        .default_config(base())
        .breaker("shared", base())
        .build()
        .expect("valid settings");
    let hosts = registry.keyed("hosts").build().expect("valid group");
    let tenants = registry.keyed("tenants").build().expect("valid group");
    // Prometheus reads `group=""` as no `group` label: a group cannot be named so.
    let unnamed = registry.keyed("").build().expect_err("an empty group name");
    assert_eq!(unnamed.field(), "group");
    for group in [&hosts, &tenants] {
        drop(group.get(Some("shared")));
    }
    hosts.get(Some("shared")).isolate();
    // A key function can return any string, the overflow breaker's name too: such a key goes
    // through the no-key breaker, never a breaker of its own named like the overflow one.
    let impostor = hosts.get(Some("<overflow>"));
    assert!(impostor.ptr_eq(&hosts.no_key()), "the no-key breaker");
    drop(impostor);

    for collector in [
        RegistryCollector::new(registry.clone()),
        RegistryCollector::new(registry.clone()).keyed_aggregate(true),
    ] {
        let text = collector.render();
        // `parse` fails on a label set written twice; Prometheus also merges empty labels.
        let scrape = parse(&text);
        assert_unique_to_prometheus(&scrape);
        let (ok, printed) = promtool_check(&text);
        assert!(ok && printed.trim().is_empty(), "promtool: {printed}");

        // The named breaker has its series (closed), apart from the hosts' key (isolated).
        let named_state: Vec<_> = scrape
            .series("circuit_breaker_state")
            .into_iter()
            .filter(|(labels, value)| {
                labels["breaker"] == "shared"
                    && labels.get("group").is_none_or(String::is_empty)
                    && *value == 1.0
            })
            .map(|(labels, _)| labels["state"].clone())
            .collect();
        assert_eq!(named_state, ["closed"]);
        if collector.is_keyed_aggregate() {
            continue;
        }
        // The hosts' and tenants' keys each have theirs.
        for (group, state) in [("hosts", "isolated"), ("tenants", "closed")] {
            assert_eq!(
                scrape.get(
                    "circuit_breaker_state",
                    &[("breaker", "shared"), ("group", group), ("state", state)]
                ),
                1.0
            );
        }
        // One overflow breaker in the hosts group, closed.
        assert_eq!(
            scrape.get(
                "circuit_breaker_state",
                &[
                    ("breaker", "<overflow>"),
                    ("group", "hosts"),
                    ("state", "closed")
                ]
            ),
            1.0
        );
    }
}
