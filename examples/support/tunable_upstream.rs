//! An HTTP upstream on 127.0.0.1 whose failure rate and latency its owner turns up and down, per
//! service or for all: `GET /{service}` answers 200, or 500 with the configured probability,
//! after the configured latency.

#![allow(unreachable_pub)] // a module of the example, shaped as if it were a library

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

/// How one service of the upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Behaviour {
    /// The probability of a 500, in [0, 1].
    pub fail: f64,
    /// How long each answer takes.
    pub latency_ms: u64,
}

/// A handle on a running upstream.
#[derive(Debug, Clone)]
pub struct TunableUpstream {
    addr: SocketAddr,
    knobs: Arc<Mutex<Knobs>>,
}

/// The behaviour of every service, and the overrides of some.
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// What a service without an override does.
    pub all: Behaviour,
    /// Services that behave otherwise.
    pub services: BTreeMap<String, Behaviour>,
}

impl TunableUpstream {
    /// Starts the upstream on a free port of 127.0.0.1, every service behaving as `all`.
    pub async fn start(all: Behaviour) -> std::io::Result<Self> {
        let knobs = Arc::new(Mutex::new(Knobs {
            all,
            services: BTreeMap::new(),
        }));
        let app = Router::new()
            .route("/{service}", get(answer))
            .with_state(Arc::clone(&knobs));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            // The server runs until the process ends.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, knobs })
    }

    /// The URL of one service.
    pub fn url(&self, service: &str) -> String {
        format!("http://{}/{service}", self.addr)
    }

    /// Makes `service` (every service, for `None`) behave as `behaviour` from now on.
    pub fn set(&self, service: Option<&str>, behaviour: Behaviour) {
        let mut knobs = self.knobs.lock().unwrap_or_else(PoisonError::into_inner);
        match service {
            Some(service) => {
                knobs.services.insert(service.to_owned(), behaviour);
            }
            None => {
                knobs.all = behaviour;
                knobs.services.clear();
            }
        }
    }

    /// How every service behaves now.
    pub fn knobs(&self) -> Knobs {
        self.knobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Knobs {
    /// How `service` behaves.
    pub fn of(&self, service: &str) -> Behaviour {
        self.services.get(service).copied().unwrap_or(self.all)
    }
}

async fn answer(
    State(knobs): State<Arc<Mutex<Knobs>>>,
    Path(service): Path<String>,
) -> (StatusCode, String) {
    let behaviour = knobs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .of(&service);
    tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    if rand::random::<f64>() < behaviour.fail {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{service}: upstream error\n"),
        )
    } else {
        (StatusCode::OK, format!("{service}: ok\n"))
    }
}
