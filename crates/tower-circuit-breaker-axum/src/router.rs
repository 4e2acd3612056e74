//! The routes over a registry: health, metrics, the dashboard and, when a token is given, admin.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_circuit_breaker::registry::{CircuitBreakerRegistry, HealthStatus};

use crate::admin::{self, AdminToken};
use crate::dashboard;
use crate::health::HealthReport;
use crate::metrics::{self, RegistryCollector};

/// Builds the router that shows a [`CircuitBreakerRegistry`] to the outside world.
///
/// | route | answer |
/// |---|---|
/// | `GET /health` | the [`HealthReport`] as JSON; 200 when healthy or degraded, 503 when unhealthy; a [shared state store](tower_circuit_breaker::store) that is not connected makes it degraded, never unhealthy |
/// | `GET /health/live` | 200 while the server serves |
/// | `GET /health/ready` | 200, or 503 when unhealthy (a critical breaker open or isolated; never because of the store) |
/// | `GET /metrics` | Prometheus text, rendered at scrape time from the breakers' counters (keyed breakers each with their own series, or by group only with [`keyed_metrics_aggregate`](Self::keyed_metrics_aggregate)), and the store's figures when the registry has one |
/// | `GET /` | the live dashboard (leave it out with [`dashboard(false)`](Self::dashboard)) |
/// | `POST /breakers/{name}/{action}` | [admin](crate::admin) actions, only with [`admin_token`](Self::admin_token) |
///
/// The router can be merged into an app's (`app.merge(routes)`) or nested under a prefix
/// (`app.nest("/ops", routes)`). Nested, the dashboard is at `/ops` (axum serves a nested `/` at
/// the prefix without a trailing slash) and reads `/ops/health`.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until turned into a router"]
pub struct BreakerRoutes {
    registry: CircuitBreakerRegistry,
    admin: Option<AdminToken>,
    dashboard: bool,
    keyed_metrics_aggregate: bool,
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct RoutesState {
    pub(crate) registry: CircuitBreakerRegistry,
    pub(crate) admin: Option<AdminToken>,
    pub(crate) metrics: RegistryCollector,
}

impl BreakerRoutes {
    /// Routes over `registry`: health, metrics and the dashboard; no admin actions.
    pub fn new(registry: CircuitBreakerRegistry) -> Self {
        Self {
            registry,
            admin: None,
            dashboard: true,
            keyed_metrics_aggregate: false,
        }
    }

    /// Turns the admin actions on, for requests carrying `Authorization: Bearer <token>`. An
    /// empty token leaves them off.
    pub fn admin_token(mut self, token: impl AsRef<str>) -> Self {
        let token = token.as_ref();
        self.admin = (!token.is_empty()).then(|| AdminToken::new(token));
        self
    }

    /// Serves the dashboard at `/` (`true`, the default) or not.
    pub fn dashboard(mut self, on: bool) -> Self {
        self.dashboard = on;
        self
    }

    /// With `true`, `/metrics` exports the breakers of [keyed
    /// groups](tower_circuit_breaker::keyed) only in their groups' figures (the
    /// `circuit_breaker_keyed_*` families), with no series per key, to bound what a large fleet
    /// of keys costs Prometheus. Default `false`: each keyed breaker has its series, as a named
    /// breaker does, up to its group's bound. See
    /// [`RegistryCollector::keyed_aggregate`](crate::metrics::RegistryCollector::keyed_aggregate).
    /// `/health` and the dashboard list every breaker either way.
    pub fn keyed_metrics_aggregate(mut self, aggregate: bool) -> Self {
        self.keyed_metrics_aggregate = aggregate;
        self
    }

    /// The router, ready to merge or nest into an app with any state type.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut router = Router::new()
            .route("/health", get(health))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/metrics", get(scrape));
        if self.dashboard {
            router = router.route("/", get(|| async { dashboard::page() }));
        }
        if self.admin.is_some() {
            router = router.route("/breakers/{name}/{action}", post(admin::act));
        }
        router.with_state(RoutesState {
            metrics: RegistryCollector::new(self.registry.clone())
                .keyed_aggregate(self.keyed_metrics_aggregate),
            registry: self.registry,
            admin: self.admin,
        })
    }
}

/// Probes and scrapers must see the state now, not a cached one.
const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

fn status_code(status: HealthStatus) -> StatusCode {
    match status {
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn health(State(state): State<RoutesState>) -> Response {
    let report = HealthReport::of(&state.registry);
    (status_code(report.status), [NO_STORE], Json(report)).into_response()
}

async fn live() -> Response {
    ([NO_STORE], Json(serde_json::json!({ "status": "live" }))).into_response()
}

async fn ready(State(state): State<RoutesState>) -> Response {
    let status = state.registry.snapshot().health();
    let body = Json(serde_json::json!({
        "status": status,
        "ready": status != HealthStatus::Unhealthy,
    }));
    (status_code(status), [NO_STORE], body).into_response()
}

async fn scrape(State(state): State<RoutesState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE), NO_STORE],
        state.metrics.render(),
    )
        .into_response()
}
