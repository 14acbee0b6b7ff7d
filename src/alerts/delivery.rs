//! Delivery of notifications to `--alert-webhook`: a background task POSTs them one at a time,
//! in order, with a timeout per request and retries with exponential backoff. Reconciles only
//! put notifications into a bounded queue and never wait: when the queue is full the oldest
//! notification is dropped (with a warning, counted in [`Webhook::dropped_total`]).
//!
//! The URL's credentials (user info) are sent as HTTP basic auth and never logged; logs name the
//! receiver by scheme, host and port only, since webhook paths and queries often carry tokens.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::webhook::Notification;

/// The flag that names the webhook (and its environment variable), for error messages.
pub const WEBHOOK_FLAG: &str = "--alert-webhook (IPFS_KIT_ALERT_WEBHOOK)";

/// A webhook URL checked at start: http or https, with a host; its user info kept apart.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// The URL without user info.
    url: Url,
    /// User name and password from the URL, sent as basic auth.
    basic_auth: Option<(String, Option<String>)>,
}

impl WebhookUrl {
    /// Checks `text`; the error names [`WEBHOOK_FLAG`] and never repeats the URL (it may hold a
    /// token).
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let mut url = Url::parse(text.trim()).map_err(|e| {
            format!("{WEBHOOK_FLAG}: not a URL ({e}); expected http(s)://host[:port]/path")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{WEBHOOK_FLAG}: the scheme must be http or https, not {:?}",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{WEBHOOK_FLAG}: the URL names no host"));
        }
        let basic_auth = (!url.username().is_empty() || url.password().is_some()).then(|| {
            (
                url.username().to_owned(),
                url.password().map(ToOwned::to_owned),
            )
        });
        // Neither can fail on an http(s) URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(WebhookUrl { url, basic_auth })
    }

    /// `scheme://host:port`: what logs say of the receiver.
    pub fn redacted(&self) -> String {
        let origin = self.url.origin().ascii_serialization();
        let hidden =
            self.url.path() != "/" || self.url.query().is_some() || self.basic_auth.is_some();
        if hidden {
            format!("{origin} (path, query and credentials not shown)")
        } else {
            origin
        }
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How notifications are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Notifications waiting at most; beyond, the oldest is dropped.
    pub capacity: usize,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// Wait before the first retry; doubles per retry up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// POSTs of one notification at most (the first included).
    pub attempts: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            capacity: 256,
            timeout: Duration::from_secs(10),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            attempts: 8,
        }
    }
}

impl DeliverySettings {
    /// The wait before attempt `attempt` + 1 (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A bounded queue that drops its oldest item when full.
#[derive(Debug)]
pub struct Queue<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Queue<T> {
        Queue {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`; returns the oldest item if it had to be dropped for it.
    pub fn push(&mut self, item: T) -> Option<T> {
        let dropped = (self.items.len() >= self.capacity)
            .then(|| self.items.pop_front())
            .flatten();
        self.items.push_back(item);
        dropped
    }

    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What the sender and its users share.
struct Shared {
    url: WebhookUrl,
    settings: DeliverySettings,
    queue: Mutex<Queue<Notification>>,
    wake: Notify,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

/// The handle of the background sender (cheap to clone). [`Webhook::send`] never waits.
#[derive(Clone)]
pub struct Webhook {
    shared: Arc<Shared>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Starts the sender task (inside a Tokio runtime).
    pub fn start(url: WebhookUrl, settings: DeliverySettings) -> Result<Webhook, String> {
        crate::tls::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("ipfs-kit-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("{WEBHOOK_FLAG}: building the HTTP client: {e}"))?;
        info!(
            receiver = %url.redacted(),
            "alerts are posted to the webhook (Alertmanager's format)"
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(settings.capacity)),
            url,
            settings,
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        tokio::spawn(run(shared.clone(), client));
        Ok(Webhook { shared })
    }

    /// Queues `notification` for delivery; drops the oldest queued one if the queue is full.
    pub fn send(&self, notification: Notification) {
        let dropped = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(notification)
        };
        if let Some(old) = dropped {
            let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                receiver = %self.shared.url.redacted(),
                dropped_total = total,
                "the alert webhook queue is full ({} notifications): dropped the oldest ({} of {})",
                self.shared.settings.capacity,
                old.status,
                old.group_key
            );
        }
        self.shared.wake.notify_one();
    }

    /// Notifications dropped because the queue was full.
    pub fn dropped_total(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Notifications the receiver accepted (2xx).
    pub fn delivered_total(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    /// Notifications given up on (refused, or every attempt failed).
    pub fn failed_total(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Notifications waiting.
    pub fn queued(&self) -> usize {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// The sender: one notification at a time, in order.
async fn run(shared: Arc<Shared>, client: reqwest::Client) {
    loop {
        let next = shared.queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match next {
            Some(n) => {
                let counter = if deliver(&shared, &client, &n).await {
                    &shared.delivered
                } else {
                    &shared.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            None => shared.wake.notified().await,
        }
    }
}

/// POSTs `n` until the receiver accepts it, refuses it for good, or the attempts run out.
async fn deliver(shared: &Shared, client: &reqwest::Client, n: &Notification) -> bool {
    let receiver = shared.url.redacted();
    let Ok(body) = serde_json::to_vec(n) else {
        return false;
    };
    let settings = &shared.settings;
    for attempt in 1..=settings.attempts.max(1) {
        let mut request = client
            .post(shared.url.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some((user, password)) = &shared.url.basic_auth {
            request = request.basic_auth(user, password.as_deref());
        }
        let outcome = match request.send().await {
            Ok(resp) if resp.status().is_success() => {
                debug!(
                    receiver,
                    status = n.status,
                    group = n.group_key,
                    "alert delivered"
                );
                return true;
            }
            Ok(resp) => {
                let code = resp.status();
                let retry = code.is_server_error() || code.as_u16() == 408 || code.as_u16() == 429;
                if !retry {
                    warn!(
                        receiver,
                        "the alert webhook refused a notification with {code}: not retried"
                    );
                    return false;
                }
                format!("answered {code}")
            }
            // Without the URL: it may hold a token.
            Err(e) => e.without_url().to_string(),
        };
        if attempt == settings.attempts.max(1) {
            warn!(
                receiver,
                "giving up on an alert notification after {attempt} attempts: {outcome}"
            );
            break;
        }
        let wait = settings.backoff(attempt);
        warn!(
            receiver,
            "posting an alert notification failed ({outcome}); retry {attempt} in {} ms",
            wait.as_millis()
        );
        tokio::time::sleep(wait).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::alerts::webhook::{Origin, notification};
    use crate::api::{AlertSeverity, AlertState, ClusterAlert};
    use crate::reconcile::status::time;

    fn sample(n: u64) -> Notification {
        let alert = ClusterAlert {
            name: "IpfsKitPeerDown".into(),
            severity: AlertSeverity::Critical,
            peer: Some(format!("demo-{n}")),
            state: AlertState::Firing,
            starts_at: time(n),
            ends_at: None,
            summary: "down".into(),
            description: "down".into(),
        };
        let origin = Origin {
            cluster: "demo",
            ..Origin::default()
        };
        notification(&origin, &[alert]).expect("notification")
    }

    fn fast() -> DeliverySettings {
        DeliverySettings {
            capacity: 2,
            timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(40),
            attempts: 4,
        }
    }

    /// A receiver on a free loopback port answering `codes` in turn (then 200); records what it
    /// got.
    struct Receiver {
        url: String,
        bodies: Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>>,
        hits: Arc<AtomicUsize>,
    }

    async fn receiver(codes: Vec<u16>, hang: bool) -> Receiver {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (bodies.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/hook/secret-token",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (b, h, codes) = (b.clone(), h.clone(), codes.clone());
                async move {
                    let i = h.fetch_add(1, Ordering::SeqCst);
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let value = serde_json::from_slice(&body).unwrap_or_default();
                    b.lock().expect("lock").push((headers, value));
                    StatusCode::from_u16(codes.get(i).copied().unwrap_or(200)).expect("code")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://alice:s3cret@{addr}/hook/secret-token?key=k"),
            bodies,
            hits,
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted_and_credentials_never_shown() {
        for bad in [
            "ftp://example.com/x",
            "not a url",
            "file:///tmp/x",
            "http://",
        ] {
            let err = WebhookUrl::parse(bad).expect_err(bad);
            assert!(err.starts_with("--alert-webhook"), "{err}");
        }
        let err = WebhookUrl::parse("unix://user:tok@x/y").expect_err("unix");
        assert!(!err.contains("tok"), "{err}");
        let url = WebhookUrl::parse("https://bot:tok3n@hooks.example:8443/T0/B1/XyZ?token=abc")
            .expect("https");
        assert_eq!(
            url.redacted(),
            "https://hooks.example:8443 (path, query and credentials not shown)"
        );
        let shown = format!("{url:?}");
        assert!(!shown.contains("tok3n") && !shown.contains("XyZ") && !shown.contains("abc"));
        assert_eq!(
            WebhookUrl::parse("http://127.0.0.1:9/")
                .expect("plain")
                .redacted(),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn the_queue_is_bounded_and_drops_its_oldest() {
        let mut q = Queue::new(2);
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), Some(1));
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(3), None));
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = DeliverySettings::default();
        let waits: Vec<u64> = (1..=8).map(|a| s.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[tokio::test]
    async fn a_receiver_answering_500_twice_then_200_gets_it_once_with_basic_auth() {
        let r = receiver(vec![500, 503], false).await;
        let hook = Webhook::start(WebhookUrl::parse(&r.url).expect("url"), fast()).expect("start");
        hook.send(sample(1));
        until("the delivery", || hook.delivered_total() == 1).await;
        assert_eq!(r.hits.load(Ordering::SeqCst), 3, "two retries");
        let bodies = r.bodies.lock().expect("lock").clone();
        assert_eq!(bodies.len(), 3);
        let expected = serde_json::to_value(sample(1)).expect("json");
        for (headers, body) in &bodies {
            assert_eq!(body, &expected, "the same notification each time");
            assert_eq!(headers["content-type"], "application/json");
            // alice:s3cret
            assert_eq!(headers["authorization"], "Basic YWxpY2U6czNjcmV0");
        }
        assert_eq!((hook.failed_total(), hook.dropped_total()), (0, 0));
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_and_attempts_are_bounded() {
        let refused = receiver(vec![400], false).await;
        let hook =
            Webhook::start(WebhookUrl::parse(&refused.url).expect("url"), fast()).expect("start");
        hook.send(sample(1));
        until("the refusal", || hook.failed_total() == 1).await;
        assert_eq!(refused.hits.load(Ordering::SeqCst), 1);

        let broken = receiver(vec![500; 10], false).await;
        let hook =
            Webhook::start(WebhookUrl::parse(&broken.url).expect("url"), fast()).expect("start");
        hook.send(sample(1));
        hook.send(sample(2));
        until("both given up", || hook.failed_total() == 2).await;
        assert_eq!(broken.hits.load(Ordering::SeqCst), 8, "4 attempts each");
    }

    #[tokio::test]
    async fn sending_never_waits_and_a_full_queue_drops_the_oldest() {
        let r = receiver(Vec::new(), true).await;
        let hook = Webhook::start(WebhookUrl::parse(&r.url).expect("url"), fast()).expect("start");
        hook.send(sample(1));
        until("the first POST in flight", || {
            r.hits.load(Ordering::SeqCst) == 1
        })
        .await;
        let started = std::time::Instant::now();
        for n in 2..=5 {
            hook.send(sample(n));
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!((hook.queued(), hook.dropped_total()), (2, 2));
    }
}
