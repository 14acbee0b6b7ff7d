//! A webhook receiver for the operator's alerts (Alertmanager's webhook JSON), listening on a
//! free loopback port: it answers 200 and keeps every POST with its headers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;

/// The path the receiver answers on (a token-like path: logs must never show it).
pub const HOOK_PATH: &str = "/hooks/s3cr3t-path";

pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    got: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let store = got.clone();
        let app = axum::Router::new().route(
            HOOK_PATH,
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    store.lock().expect("lock").push((headers, value));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            base: format!("http://{addr}"),
            got,
        }
    }

    /// The hook's URL.
    pub fn url(&self) -> String {
        format!("{}{HOOK_PATH}", self.base)
    }

    /// Every notification received, with its headers, in order.
    pub fn notifications(&self) -> Vec<(HeaderMap, Value)> {
        self.got.lock().expect("lock").clone()
    }

    /// Every alert received, each with the notification it came in.
    pub fn alerts(&self) -> Vec<(Value, Value)> {
        self.notifications()
            .into_iter()
            .flat_map(|(_, n)| {
                n["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (n.clone(), a))
            })
            .collect()
    }

    /// The alerts named `name` about `peer` in state `status` (`firing`, `resolved`).
    pub fn matching(&self, name: &str, peer: &str, status: &str) -> Vec<(Value, Value)> {
        self.alerts()
            .into_iter()
            .filter(|(_, a)| {
                a["labels"]["alertname"] == name
                    && a["labels"]["peer"] == peer
                    && a["status"] == status
            })
            .collect()
    }

    /// Waits up to `timeout` for an alert named `name` about `peer` in state `status`; `context`
    /// is shown when it does not come (e.g. the operator's log).
    pub async fn wait_for(
        &self,
        name: &str,
        peer: &str,
        status: &str,
        timeout: Duration,
        context: impl Fn() -> String,
    ) -> (Value, Value) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.matching(name, peer, status).into_iter().next() {
                return found;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "no {name} {status} about {peer} at the receiver within {timeout:?}; \
                     received {:?}\n{}",
                    self.alerts(),
                    context()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
