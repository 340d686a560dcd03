//! A local file host standing in for the places leads' media live (WhatsApp CDN, S3,
//! the integrator's storage): serves scripted files with a chosen `Content-Type` (or
//! none), status codes, redirects and delays, and counts the requests per path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The bytes of a committed fixture under `tests/fixtures/media/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/media/");
    std::fs::read(format!("{path}{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

#[derive(Debug, Clone)]
enum Entry {
    File {
        bytes: Vec<u8>,
        content_type: Option<String>,
        delay: Duration,
    },
    Redirect(String),
    Status(u16),
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    hits: HashMap<String, Vec<Instant>>,
}

#[derive(Debug, Clone)]
pub struct MediaServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<Inner>>,
}

impl MediaServer {
    pub async fn start() -> MediaServer {
        let state: Arc<Mutex<Inner>> = Arc::default();
        let app = Router::new().fallback(serve).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("media server: bind");
        let addr = listener.local_addr().expect("media server: addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MediaServer { addr, state }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `bytes` at `path`; returns its URL.
    pub fn put(&self, path: &str, bytes: Vec<u8>, content_type: Option<&str>) -> String {
        self.put_slow(path, bytes, content_type, Duration::ZERO)
    }

    /// Like [`put`](Self::put), answering only after `delay`.
    pub fn put_slow(&self, path: &str, bytes: Vec<u8>, content_type: Option<&str>, delay: Duration) -> String {
        let entry = Entry::File {
            bytes,
            content_type: content_type.map(str::to_string),
            delay,
        };
        self.lock().entries.insert(path.to_string(), entry);
        self.url(path)
    }

    pub fn redirect(&self, path: &str, location: &str) -> String {
        self.lock()
            .entries
            .insert(path.to_string(), Entry::Redirect(location.to_string()));
        self.url(path)
    }

    pub fn status(&self, path: &str, status: u16) -> String {
        self.lock().entries.insert(path.to_string(), Entry::Status(status));
        self.url(path)
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().hits.get(path).map_or(0, Vec::len)
    }

    pub fn total_hits(&self) -> usize {
        self.lock().hits.values().map(Vec::len).sum()
    }
}

async fn serve(State(state): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let entry = {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        inner.hits.entry(path.clone()).or_default().push(Instant::now());
        inner.entries.get(&path).cloned()
    };
    match entry {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Entry::Status(s)) => StatusCode::from_u16(s).expect("valid status").into_response(),
        Some(Entry::Redirect(to)) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Some(Entry::File {
            bytes,
            content_type,
            delay,
        }) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut resp = Response::new(Body::from(bytes));
            if let Some(ct) = content_type {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, ct.parse().expect("valid content type"));
            }
            resp
        }
    }
}
