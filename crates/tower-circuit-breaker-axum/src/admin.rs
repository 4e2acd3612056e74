//! Guarded admin actions on one breaker: reset, isolate, disable, and back to automatic.
//!
//! `POST /breakers/{name}/{action}` with `Authorization: Bearer <token>`, where action is
//! `reset`, `isolate`, `disable` or `automatic`. The routes exist only when the app gives a token
//! ([`BreakerRoutes::admin_token`](crate::BreakerRoutes::admin_token)). Answers:
//!
//! - 401 with `WWW-Authenticate: Bearer` without a token or with a wrong one (checked before the
//!   name, so callers without the token cannot probe which breakers exist);
//! - 404 for an unknown breaker or action; 405 for any method but `POST`;
//! - 200 with the breaker's [health entry](crate::health::BreakerHealth) as JSON after the action.
//!
//! The token is compared in constant time; each action is logged with `tracing` at `info`.
//!
//! `{name}` names a breaker of the registry's own; the breakers of a [keyed
//! group](tower_circuit_breaker::keyed) are not reached here (a key is not a name: 404).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;

use crate::health::BreakerHealth;
use crate::router::RoutesState;

/// The bearer token admin requests must carry.
#[derive(Clone)]
pub(crate) struct AdminToken(std::sync::Arc<[u8]>);

impl AdminToken {
    pub(crate) fn new(token: &str) -> Self {
        Self(token.as_bytes().into())
    }

    /// Whether `headers` carry this token as `Authorization: Bearer <token>`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        // Constant time in the token's bytes; only a length mismatch answers early.
        bool::from(given.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// `POST /breakers/{name}/{action}`.
pub(crate) async fn act(
    State(state): State<RoutesState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorized = state
        .admin
        .as_ref()
        .is_some_and(|token| token.admits(&headers));
    if !authorized {
        tracing::warn!(breaker = %name, action = %action, "circuit breaker admin request refused: missing or wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token is required\n",
        )
            .into_response();
    }
    let Some(breaker) = state.registry.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no breaker named `{name}`\n"),
        )
            .into_response();
    };
    match action.as_str() {
        "reset" => breaker.reset(),
        "isolate" => breaker.isolate(),
        "disable" => breaker.disable(),
        "automatic" => breaker.automatic(),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                format!("no action `{action}`: use reset, isolate, disable or automatic\n"),
            )
                .into_response()
        }
    }
    tracing::info!(breaker = %name, action = %action, state = %breaker.state(), "circuit breaker admin action");
    match state.registry.snapshot_of(&name) {
        Some(snapshot) => Json(BreakerHealth::from(&snapshot)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
