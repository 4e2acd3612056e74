//! Loading a registry of 1 000 breakers from one file, in each format, and a `get_or_create` of
//! a name the registry has (what code asking for a breaker by name pays).
//!
//! Run with `cargo bench -p benches --bench registry`. Before measuring it prints the size of
//! each file and the memory of the breakers it makes.
//!
//! The file: the 001-shaped document with a default block and 1 000 component blocks of four
//! keys each (a failure threshold, a break in the `*_seconds` spelling, a success threshold,
//! and every tenth critical), plus a failure-rate rule on a 100-call window in every fifth.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_circuit_breaker::CircuitBreakerRegistry;

const BREAKERS: usize = 1_000;

fn yaml() -> String {
    let mut text = String::from(
        "circuit_breakers:\n  enabled: true\n  global_settings:\n    max_circuit_breakers: 1000\n    \
         auto_create_enabled: true\n    min_state_transition_interval_seconds: 1\n  \
         default_config:\n    failure_threshold: 5\n    timeout_seconds: 30\n    success_threshold: 2\n  \
         component_configs:\n",
    );
    for n in 0..BREAKERS {
        let _ = writeln!(
            text,
            "    service-{n:04}:\n      failure_threshold: {}\n      timeout_seconds: {}\n      \
             success_threshold: 2\n      critical: {}",
            3 + n % 5,
            10 + n % 50,
            n % 10 == 0
        );
        if n % 5 == 0 {
            text.push_str(
                "      failure_rate: { threshold: 0.5, window: { calls: 100 }, minimum_throughput: 20 }\n",
            );
        }
    }
    text
}

fn toml() -> String {
    let mut text = String::from(
        "[circuit_breakers]\nenabled = true\n\n[circuit_breakers.global_settings]\n\
         max_circuit_breakers = 1000\nauto_create_enabled = true\n\
         min_state_transition_interval_seconds = 1\n\n[circuit_breakers.default_config]\n\
         failure_threshold = 5\ntimeout_seconds = 30\nsuccess_threshold = 2\n",
    );
    for n in 0..BREAKERS {
        let _ = write!(
            text,
            "\n[circuit_breakers.component_configs.service-{n:04}]\nfailure_threshold = {}\n\
             timeout_seconds = {}\nsuccess_threshold = 2\ncritical = {}\n",
            3 + n % 5,
            10 + n % 50,
            n % 10 == 0
        );
        if n % 5 == 0 {
            text.push_str(
                "failure_rate = { threshold = 0.5, window = { calls = 100 }, minimum_throughput = 20 }\n",
            );
        }
    }
    text
}

fn json() -> String {
    let components: Vec<String> = (0..BREAKERS)
        .map(|n| {
            let rule = if n % 5 == 0 {
                r#", "failure_rate": { "threshold": 0.5, "window": { "calls": 100 }, "minimum_throughput": 20 }"#
            } else {
                ""
            };
            format!(
                r#"    "service-{n:04}": {{ "failure_threshold": {}, "timeout_seconds": {}, "success_threshold": 2, "critical": {}{rule} }}"#,
                3 + n % 5,
                10 + n % 50,
                n % 10 == 0
            )
        })
        .collect();
    format!(
        "{{ \"circuit_breakers\": {{\n  \"enabled\": true,\n  \"global_settings\": {{ \
         \"max_circuit_breakers\": 1000, \"auto_create_enabled\": true, \
         \"min_state_transition_interval_seconds\": 1 }},\n  \"default_config\": {{ \
         \"failure_threshold\": 5, \"timeout_seconds\": 30, \"success_threshold\": 2 }},\n  \
         \"component_configs\": {{\n{}\n  }}\n}} }}\n",
        components.join(",\n")
    )
}

fn load(c: &mut Criterion) {
    let files = [("yaml", yaml()), ("toml", toml()), ("json", json())];
    let loaders: [fn(&str) -> CircuitBreakerRegistry; 3] = [
        |text| CircuitBreakerRegistry::from_yaml_str(text).unwrap(),
        |text| CircuitBreakerRegistry::from_toml_str(text).unwrap(),
        |text| CircuitBreakerRegistry::from_json_str(text).unwrap(),
    ];
    let reference = loaders[0](&files[0].1);
    let memory: usize = reference
        .breakers()
        .iter()
        .map(tower_circuit_breaker::CircuitBreaker::size_in_bytes)
        .sum();
    println!(
        "registry of {} breakers: {memory} bytes of breakers",
        reference.len()
    );
    let mut group = c.benchmark_group("registry_load_1000");
    for ((format, text), loader) in files.iter().zip(loaders) {
        let registry = loader(text);
        assert_eq!(registry.settings(), reference.settings(), "{format}");
        println!("{format} file: {} bytes", text.len());
        group.bench_function(*format, |b| b.iter(|| loader(black_box(text))));
    }
    group.finish();

    c.bench_function("registry_get_or_create_existing", |b| {
        b.iter(|| reference.get_or_create(black_box("service-0500")).unwrap());
    });
}

criterion_group!(benches, load);
criterion_main!(benches);
