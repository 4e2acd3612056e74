//! A router served on a free loopback port, and a hyper client of it: what the tests over real
//! HTTP share.

#![allow(dead_code)] // each test file uses a part of it

use std::net::SocketAddr;

use axum::Router;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Serves `app` on a free loopback port, in the background.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A client of the server at `addr`.
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    /// A request's status, headers and body, with `Authorization: Bearer <token>` if given.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// A GET's status, headers and body.
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, http::HeaderMap, String) {
        self.send(Method::GET, path, None).await
    }

    /// A GET of a JSON document, checked to say so.
    pub(crate) async fn json(&self, path: &str) -> (StatusCode, Value) {
        let (status, headers, body) = self.get(path).await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        (status, serde_json::from_str(&body).unwrap())
    }
}

/// The health report's entry for the breaker called `name`.
pub(crate) fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap()
}
