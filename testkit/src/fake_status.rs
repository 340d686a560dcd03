//! A fake WhatsApp provider's connection-status endpoints, as documented: Z-API
//! `GET /instances/{id}/token/{token}/status` → `{"connected", "error",
//! "smartphoneConnected"}` (HTTP 200 even when disconnected) and Evolution
//! `GET /instance/connectionState/{instance}` (with `apikey`) → `{"instance": {"instanceName",
//! "state"}}`. Tests flip the session up or down, or make the endpoint itself fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

#[derive(Default)]
struct Inner {
    connected: AtomicBool,
    failing: AtomicBool,
    checks: AtomicUsize,
}

#[derive(Clone)]
pub struct FakeStatus {
    pub base_url: String,
    inner: Arc<Inner>,
}

impl FakeStatus {
    /// Starts with the session connected.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        inner.connected.store(true, Ordering::SeqCst);
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let base_url = crate::serve(app).await;
        Self { base_url, inner }
    }

    pub fn set_connected(&self, up: bool) {
        self.inner.connected.store(up, Ordering::SeqCst);
    }

    /// The status endpoint itself answers 503.
    pub fn set_failing(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    pub fn checks(&self) -> usize {
        self.inner.checks.load(Ordering::SeqCst)
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    inner.checks.fetch_add(1, Ordering::SeqCst);
    if inner.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
    }
    let up = inner.connected.load(Ordering::SeqCst);
    if path.starts_with("/instances/") && path.ends_with("/status") {
        return Json(if up {
            json!({"connected": true, "error": "You are already connected.", "smartphoneConnected": true})
        } else {
            json!({"connected": false, "error": "You need to restore the session.", "smartphoneConnected": false})
        })
        .into_response();
    }
    if let Some(instance) = path.strip_prefix("/instance/connectionState/") {
        if req.headers().get("apikey").is_none() {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let state = if up { "open" } else { "close" };
        return Json(json!({"instance": {"instanceName": instance, "state": state}})).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}
