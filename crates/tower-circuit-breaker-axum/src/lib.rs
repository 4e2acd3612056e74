//! The axum companion of `tower-circuit-breaker`: what a web app shows of its breakers, and a
//! breaker for axum routes.
//!
//! This crate is for the owner of an axum app: the breakers' health behind a load balancer's
//! probe, their metrics in Prometheus, a page to watch them, and guarded actions to reset or
//! isolate one. It reads a [`CircuitBreakerRegistry`]'s snapshots and calls the breakers' public
//! API; every rule of when a breaker opens or closes lives in `tower-circuit-breaker`.
//!
//! - [`BreakerRoutes`]: one router with `/health`, `/health/live`, `/health/ready`, `/metrics`,
//!   the dashboard at `/` and, with a token, `POST /breakers/{name}/{action}`.
//! - [`health`]: the JSON report and the rules for healthy, degraded and unhealthy.
//! - [`metrics`]: the Prometheus exposition, also as a collector for an app's own
//!   `prometheus-client` registry.
//! - [`route`]: a layer that puts a breaker on axum routes, counting 5xx responses as failures
//!   and answering rejections with 503 and `Retry-After` ([`RejectionResponse`]).
//!
//! The breakers of a registry's [keyed groups](tower_circuit_breaker::keyed) (one per host, per
//! tenant) are shown like named ones, with their group: in the health report, on the dashboard
//! (a section per group) and in the metrics (a `group` label), where they can also be exported
//! by group only, to bound what a large fleet of keys costs Prometheus.
//!
//! A registry that shares its breakers' state with the app's other instances through a
//! [shared state store](tower_circuit_breaker::store) shows the store too:
//!
//! - in the health report, a `store` entry: its kind, this instance's name, whether it is
//!   connected, the last error, and its counters. A store that is not connected makes the app
//!   **degraded** (still 200, still ready), never unhealthy: the breakers go on deciding, each
//!   instance alone.
//! - in the metrics, seven families labelled `store` (the store's kind) and `instance`:
//!   `circuit_breaker_store_connected` (1 or 0) and the counters
//!   `circuit_breaker_store_published_total`, `circuit_breaker_store_publish_failures_total`,
//!   `circuit_breaker_store_dropped_updates_total`, `circuit_breaker_store_received_total`,
//!   `circuit_breaker_store_applied_total` and `circuit_breaker_store_invalid_updates_total`
//!   (see [`metrics`](crate::metrics#shared-state-store)). Without a store, none of them.
//! - on the dashboard, a line with the store's kind, the instance, connected or not, and the
//!   last error.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_circuit_breaker::CircuitBreakerRegistry;
//! use tower_circuit_breaker_axum::BreakerRoutes;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = CircuitBreakerRegistry::from_yaml_str(
//!     "circuit_breakers:\n  component_configs:\n    pgmq: { failure_threshold: 3, critical: true }\n",
//! )?;
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .nest("/ops", BreakerRoutes::new(registry).admin_token("s3cret").into_router());
//! // axum::serve(listener, app).await?;
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! [`CircuitBreakerRegistry`]: tower_circuit_breaker::CircuitBreakerRegistry

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples (the engine's and this crate's) are compiled and run with these doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

pub mod admin;
pub mod dashboard;
pub mod health;
pub mod metrics;
pub mod rejection;
pub mod route;
mod router;

pub use rejection::{rejection_response, RejectionResponse};
pub use route::{CircuitBreakerRouteLayer, CircuitBreakerRouteService, DefaultHttpClassifier};
pub use router::BreakerRoutes;
