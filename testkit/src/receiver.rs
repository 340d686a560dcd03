//! A local postback (webhook) receiver standing in for a customer's endpoint.
//!
//! End-to-end tests must never deliver to real services. This server accepts
//! `POST /hook` (and any path below it), keeps the raw body and headers of every
//! delivery so tests can verify signatures byte-for-byte, and can fail on demand
//! (error statuses, redirects, `Retry-After`) to exercise retry behaviour.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// One received delivery, in arrival order.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Request path, e.g. `/hook` or `/hook/tenant-1`.
    pub path: String,
    pub headers: HeaderMap,
    /// Raw body exactly as received (needed for signature verification).
    pub body: Bytes,
    /// Parsed body, or `Value::Null` if it was not JSON.
    pub json: Value,
    pub at: Instant,
    /// The status this receiver answered with.
    pub status_returned: u16,
}

impl Delivery {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status_returned)
    }
}

#[derive(Debug, Clone)]
enum Planned {
    Status(u16),
    Redirect(String),
    RetryAfter(u16, u64),
}

#[derive(Debug)]
struct Inner {
    deliveries: Vec<Delivery>,
    plan: VecDeque<Planned>,
    default_status: u16,
}

type Shared = Arc<Mutex<Inner>>;

/// Handle to a running receiver; cheap to clone, all clones share state.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`
    pub url: String,
    state: Shared,
}

impl Receiver {
    /// Binds 127.0.0.1 on a random port and serves in a background tokio task.
    pub async fn start() -> Receiver {
        let state: Shared = Arc::new(Mutex::new(Inner {
            deliveries: Vec::new(),
            plan: VecDeque::new(),
            default_status: 200,
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .route("/hook/{*rest}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("receiver: local_addr");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("postback receiver stopped: {e}");
            }
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many deliveries arrived so far (cheap: nothing is copied).
    pub fn count(&self) -> usize {
        self.lock().deliveries.len()
    }

    /// All deliveries so far, whatever status was returned.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Deliveries that were answered with a 2xx status.
    pub fn successful(&self) -> Vec<Delivery> {
        self.lock()
            .deliveries
            .iter()
            .filter(|d| d.is_success())
            .cloned()
            .collect()
    }

    /// Queues a status for the next request (FIFO, shared with the other `push_*`).
    pub fn push_status(&self, status: u16) {
        self.lock().plan.push_back(Planned::Status(status));
    }

    /// Queues a `302 Found` with this `Location` for the next request.
    pub fn push_redirect(&self, location: &str) {
        self.lock().plan.push_back(Planned::Redirect(location.to_owned()));
    }

    /// Queues `status` with a `Retry-After: secs` header for the next request.
    pub fn push_retry_after(&self, status: u16, secs: u64) {
        self.lock().plan.push_back(Planned::RetryAfter(status, secs));
    }

    /// Status returned once the queue is empty (initially 200).
    pub fn set_default_status(&self, status: u16) {
        self.lock().default_status = status;
    }

    /// Waits for at least `n` 2xx deliveries and returns all 2xx deliveries.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        self.wait_until(n, timeout, true).await
    }

    /// Waits for at least `n` deliveries of any status and returns all of them.
    pub async fn wait_for_any(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        self.wait_until(n, timeout, false).await
    }

    async fn wait_until(&self, n: usize, timeout: Duration, only_success: bool) -> Vec<Delivery> {
        let start = Instant::now();
        loop {
            let all = self.deliveries();
            let matching: Vec<Delivery> = if only_success {
                all.iter().filter(|d| d.is_success()).cloned().collect()
            } else {
                all.clone()
            };
            if matching.len() >= n {
                return matching;
            }
            if start.elapsed() >= timeout {
                let kind = if only_success { "successful (2xx) " } else { "" };
                panic!(
                    "postback receiver: expected {n} {kind}deliveries within {timeout:?}, got {}; received {} in total:\n{}",
                    matching.len(),
                    all.len(),
                    describe(&all)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn describe(deliveries: &[Delivery]) -> String {
    if deliveries.is_empty() {
        return "  (none)".to_owned();
    }
    deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let body = String::from_utf8_lossy(&d.body);
            let body: String = body.chars().take(300).collect();
            format!("  #{i} {} -> {}: {body}", d.path, d.status_returned)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn receive(State(state): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let plan = {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        let plan = inner.plan.pop_front().unwrap_or(Planned::Status(inner.default_status));
        let status_returned = match &plan {
            Planned::Status(s) | Planned::RetryAfter(s, _) => *s,
            Planned::Redirect(_) => 302,
        };
        inner.deliveries.push(Delivery {
            path: uri.path().to_owned(),
            headers,
            body,
            json,
            at: Instant::now(),
            status_returned,
        });
        plan
    };
    match plan {
        Planned::Status(s) => status_code(s).into_response(),
        Planned::Redirect(location) => {
            let location = HeaderValue::from_str(&location).expect("receiver: invalid redirect location");
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Planned::RetryAfter(s, secs) => {
            (status_code(s), [(header::RETRY_AFTER, HeaderValue::from(secs))]).into_response()
        }
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).expect("receiver: invalid scripted status")
}
