//! The axum companion of `tower-circuit-breaker`: what a web app shows of its breakers.
//!
//! (Module docs are written with the router; see the crate README.)

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod rejection;
pub mod route;

pub use rejection::{rejection_response, RejectionResponse};
pub use route::{CircuitBreakerRouteLayer, CircuitBreakerRouteService};
