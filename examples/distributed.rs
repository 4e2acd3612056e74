//! Two instances of one service, in two processes, sharing one breaker through Redis.
//!
//! Each instance serves `GET /pay`, which calls a payments upstream (embedded in the process, so
//! it needs nothing else) through the breaker `payments`, and the breakers' `/health`, `/metrics`
//! and dashboard. `POST /upstream/fail` and `POST /upstream/heal` break and mend this instance's
//! upstream. When one instance's breaker opens, the other rejects too, without having seen a
//! failure; when the first one's probe closes it, both close.
//!
//! ```text
//! redis-server --port 6379 --save '' &
//! cargo run --example distributed -- --instance a --addr 127.0.0.1:3001 &
//! cargo run --example distributed -- --instance b --addr 127.0.0.1:3002 &
//!
//! # once both print `listening on http://...`:
//! curl -X POST 127.0.0.1:3001/upstream/fail
//! for i in 1 2 3; do curl -s -w ' %{http_code}\n' 127.0.0.1:3001/pay; done  # a: 502 three times: a opens
//! curl -si 127.0.0.1:3002/pay                                  # b: 503, Retry-After: 10
//! curl -s 127.0.0.1:3002/health                                # b: payments open, "shared by another instance"
//! curl -X POST 127.0.0.1:3001/upstream/heal
//! sleep 10; curl -s 127.0.0.1:3001/pay                         # a probes after the break: both close
//! ```
//!
//! Options: `--redis URL` (default `redis://127.0.0.1:6379`), `--instance NAME` (default: the
//! process id and a random suffix), `--addr HOST:PORT` (`:0` picks a free port), `--break MS`,
//! the break in milliseconds (default 10000), and `--admin-token TOKEN` for
//! `POST /breakers/payments/isolate` (and `reset`), with `Authorization: Bearer TOKEN`. Once it
//! serves it prints ``listening on http://ADDR as instance `NAME` ``. Losing Redis and getting it
//! back are logged; `/health` and `/metrics` show the store's state all along.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_circuit_breaker::registry::CircuitBreakerRegistry;
use tower_circuit_breaker::store::StoreOptions;
use tower_circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError};
use tower_circuit_breaker_axum::BreakerRoutes;
use tower_circuit_breaker_redis::RedisStateStore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    redis: String,
    instance: Option<String>,
    addr: String,
    break_ms: u64,
    admin_token: Option<String>,
}

#[derive(Clone)]
struct App {
    payments: CircuitBreaker,
    upstream_down: Arc<AtomicBool>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = parse_args()?;

    let config = CircuitBreakerConfig::default()
        .failure_threshold(3)
        .success_threshold(1)
        .break_duration(Duration::from_millis(options.break_ms));
    let registry = CircuitBreakerRegistry::builder()
        .breaker("payments", config)
        .build()?;
    let mut store_options = StoreOptions::default();
    if let Some(instance) = &options.instance {
        store_options = store_options.instance(instance);
    }
    let store = RedisStateStore::open(&options.redis)?;
    let handle = registry.attach_store(store, store_options)?;
    // Take the fleet's state before taking traffic, but never wait long for Redis.
    if tokio::time::timeout(Duration::from_secs(2), handle.synced())
        .await
        .is_err()
    {
        tracing::warn!("redis did not answer in 2 s: starting alone, it will catch up");
    }

    let app = App {
        payments: registry.get("payments").ok_or("payments is configured")?,
        upstream_down: Arc::new(AtomicBool::new(false)),
    };
    let mut ops = BreakerRoutes::new(registry);
    if let Some(token) = &options.admin_token {
        ops = ops.admin_token(token);
    }
    let router = Router::new()
        .route("/pay", get(pay))
        .route("/upstream/fail", post(fail))
        .route("/upstream/heal", post(heal))
        .with_state(app)
        .merge(ops.into_router());

    let listener = tokio::net::TcpListener::bind(&options.addr).await?;
    println!(
        "listening on http://{} as instance `{}`",
        listener.local_addr()?,
        handle.instance()
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Calls the upstream through the breaker: 200, 502 when the upstream fails, 503 with
/// `Retry-After` when the breaker rejects.
async fn pay(State(app): State<App>) -> Response {
    let down = Arc::clone(&app.upstream_down);
    let result = app
        .payments
        .call(|| async move {
            if down.load(Ordering::Relaxed) {
                Err("payments upstream: connection refused")
            } else {
                Ok("paid")
            }
        })
        .await;
    match result {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(CircuitBreakerError::OperationFailed(error)) => {
            (StatusCode::BAD_GATEWAY, error).into_response()
        }
        Err(rejected) => {
            let seconds = rejected
                .retry_after()
                .map_or(1, |left| left.as_secs_f64().ceil() as u64);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, seconds.to_string())],
                rejected.to_string(),
            )
                .into_response()
        }
    }
}

async fn fail(State(app): State<App>) -> &'static str {
    app.upstream_down.store(true, Ordering::Relaxed);
    "upstream down\n"
}

async fn heal(State(app): State<App>) -> &'static str {
    app.upstream_down.store(false, Ordering::Relaxed);
    "upstream up\n"
}

fn parse_args() -> Result<Options, BoxError> {
    let mut options = Options {
        redis: "redis://127.0.0.1:6379".to_owned(),
        instance: None,
        addr: "127.0.0.1:3001".to_owned(),
        break_ms: 10_000,
        admin_token: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--redis" => options.redis = value()?,
            "--instance" => options.instance = Some(value()?),
            "--addr" => options.addr = value()?,
            "--break" => options.break_ms = value()?.parse()?,
            "--admin-token" => options.admin_token = Some(value()?),
            other => return Err(format!("unknown option `{other}`").into()),
        }
    }
    Ok(options)
}
