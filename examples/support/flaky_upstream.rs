//! A flaky HTTP upstream on 127.0.0.1 for the examples and the integration tests: it answers,
//! fails or hangs, as its owner says, and counts the requests that reach it.

#![allow(dead_code, unreachable_pub)] // each example or test uses a part of it

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// 200 with a body.
    Healthy = 0,
    /// 503 at once.
    Failing = 1,
    /// Never answers.
    Hanging = 2,
}

/// A handle on a running upstream.
#[derive(Debug, Clone)]
pub struct FlakyUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    mode: AtomicU8,
    hits: AtomicU64,
}

impl FlakyUpstream {
    /// Starts the upstream on a free port of 127.0.0.1, healthy.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/items", get(answer))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            // The server runs until the process ends.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of its one resource.
    pub fn url(&self) -> String {
        format!("http://{}/items", self.addr)
    }

    /// Makes it answer as `mode` from now on.
    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests that have reached it.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

async fn answer(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    match shared.mode.load(Ordering::SeqCst) {
        0 => (StatusCode::OK, "items"),
        1 => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => std::future::pending().await,
    }
}
