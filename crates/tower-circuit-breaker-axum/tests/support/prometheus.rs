//! Reading a Prometheus scrape back with a real parser, and linting it with `promtool`.
//!
//! `promtool` comes with Debian's `prometheus` package; without it the tests that lint fail and
//! say so.

#![allow(dead_code)] // each test binary uses a part of it

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::PrometheusValue;

/// Labels of one series, by name.
pub(crate) type Labels = BTreeMap<String, String>;

/// A parsed scrape: every sample by its series name (`circuit_breaker_calls_total`,
/// `..._bucket`, `..._sum`, `..._count`) and label set, with each family's type, help and unit.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Scrape {
    pub(crate) samples: BTreeMap<(String, Labels), f64>,
    pub(crate) families: BTreeMap<String, (String, String, String)>,
}

impl Scrape {
    pub(crate) fn value(&self, series: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(series.to_owned(), labels)).copied()
    }

    /// The value of a series that must be there.
    pub(crate) fn get(&self, series: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(series, labels)
            .unwrap_or_else(|| panic!("no series {series}{labels:?} in the scrape"))
    }

    /// The series of `name`, each with its labels.
    pub(crate) fn series(&self, name: &str) -> Vec<(&Labels, f64)> {
        self.samples
            .iter()
            .filter(|((series, _), _)| series == name)
            .map(|((_, labels), value)| (labels, *value))
            .collect()
    }

    /// Records one sample; a label set seen twice in a series fails the test.
    pub(crate) fn insert(&mut self, series: String, labels: Labels, value: f64) {
        let key = (series, labels);
        assert!(
            !self.samples.contains_key(&key),
            "series {key:?} appears twice"
        );
        self.samples.insert(key, value);
    }
}

pub(crate) fn labels_of(names: &[String], values: impl Iterator<Item = String>) -> Labels {
    names.iter().cloned().zip(values).collect()
}

pub(crate) fn le(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

/// Parses Prometheus text (0.0.4), failing the test on anything the parser refuses (duplicate
/// label sets included).
pub(crate) fn parse(text: &str) -> Scrape {
    let exposition = parse_prometheus(text).unwrap_or_else(|err| panic!("unparsable: {err}"));
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
                PrometheusValue::Counter(counter) => {
                    scrape.insert(name.clone(), labels, counter.value.as_f64());
                }
                PrometheusValue::Gauge(value) => {
                    scrape.insert(name.clone(), labels, value.as_f64());
                }
                PrometheusValue::Histogram(histogram) => {
                    insert_histogram(&mut scrape, name, &labels, histogram);
                }
                other => panic!("{name}: unexpected sample {other:?}"),
            }
        }
    }
    scrape
}

pub(crate) fn insert_histogram(
    scrape: &mut Scrape,
    name: &str,
    labels: &Labels,
    histogram: &openmetrics_parser::HistogramValue,
) {
    for bucket in &histogram.buckets {
        let mut labels = labels.clone();
        labels.insert("le".to_owned(), le(bucket.upper_bound));
        scrape.insert(format!("{name}_bucket"), labels, bucket.count.as_f64());
    }
    let sum = histogram.sum.expect("a histogram has a sum").as_f64();
    scrape.insert(format!("{name}_sum"), labels.clone(), sum);
    #[allow(clippy::cast_precision_loss)] // small counts
    let count = histogram.count.expect("a histogram has a count") as f64;
    scrape.insert(format!("{name}_count"), labels.clone(), count);
}

/// Runs `promtool check metrics` on `text`: its exit status and everything it printed.
pub(crate) fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run `promtool` ({err}); it lints the scrape in this test and is not \
                 optional: install it with `apt-get install -y prometheus` (Debian's package \
                 ships /usr/bin/promtool)"
            )
        });
    let mut stdin = child.stdin.take().expect("piped");
    let input = text.to_owned();
    // Written from a thread, so a promtool that prints a lot before reading all of its input
    // cannot deadlock the test.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("promtool ran");
    writer
        .join()
        .expect("writer")
        .expect("promtool read the scrape");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}
