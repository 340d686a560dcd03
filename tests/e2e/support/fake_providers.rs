//! Fake messaging providers on one local server, speaking their send APIs as documented:
//! Z-API `POST /instances/{id}/token/{token}/send-text` → `{zaapId, messageId, id}`;
//! Telegram `POST /bot{token}/sendMessage` → `{"ok": true, "result": {"message_id"}}`;
//! Evolution `POST /message/sendText/{instance}` → `201 {"key": {"id"}}`; Meta Cloud
//! `POST /{version}/{phone_number_id}/messages` → `{"messages": [{"id": "wamid…"}]}`;
//! Gupshup form posts to `/wa/api/v1/msg` and `/template/msg` → `{"status": "submitted",
//! "messageId"}`. Every request
//! is recorded; statuses can be scripted to test retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Sent {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The message id the fake answered with.
    pub id: String,
}

#[derive(Debug, Default)]
struct Inner {
    sent: Vec<Sent>,
    script: VecDeque<u16>,
}

#[derive(Debug, Clone)]
pub struct FakeProviders {
    pub base_url: String,
    state: Arc<Mutex<Inner>>,
}

impl FakeProviders {
    pub async fn start() -> Self {
        let state: Arc<Mutex<Inner>> = Arc::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, state }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    /// The next send answers with this HTTP status instead of success.
    pub fn push_status(&self, status: u16) {
        self.lock().script.push_back(status);
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let start = Instant::now();
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            assert!(
                start.elapsed() < timeout,
                "expected {n} provider sends, got {}",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(state): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let body: Value = if form {
        // Gupshup: a form whose fields are recorded as a JSON object.
        Value::Object(
            url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let (n, scripted) = {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        (inner.sent.len() + 1, inner.script.pop_front())
    };
    let id = format!("3EB0{n:018X}");
    let record = |id: &str| {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        inner.sent.push(Sent {
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
            id: id.to_string(),
        });
    };
    if let Some(status) = scripted {
        record("");
        let status = StatusCode::from_u16(status).expect("status");
        return (status, Json(json!({"error": "scripted failure"}))).into_response();
    }
    if path.ends_with("/send-text") && path.starts_with("/instances/") {
        record(&id);
        return Json(json!({"zaapId": format!("Z{id}"), "messageId": id, "id": id})).into_response();
    }
    if path.ends_with("/sendMessage") && path.starts_with("/bot") {
        let message_id = 1189 + n as i64;
        record(&message_id.to_string());
        let chat = body.get("chat_id").cloned().unwrap_or(Value::Null);
        return Json(
            json!({"ok": true, "result": {"message_id": message_id, "chat": {"id": chat, "type": "private"},
                                                  "date": 1732197691, "text": body.get("text")}}),
        )
        .into_response();
    }
    if path.ends_with("/messages") && path.matches('/').count() == 3 {
        let wamid = format!("wamid.HBgN{id}");
        record(&wamid);
        return Json(json!({"messaging_product": "whatsapp",
                           "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                           "messages": [{"id": wamid}]}))
        .into_response();
    }
    if path == "/wa/api/v1/msg" || path == "/wa/api/v1/template/msg" {
        let gs = format!("ee4a68a0-1203-4c85-8dc3-{n:012}");
        record(&gs);
        return Json(json!({"status": "submitted", "messageId": gs})).into_response();
    }
    if path.starts_with("/message/sendText/") {
        record(&id);
        let body = json!({"key": {"remoteJid": format!("{}@s.whatsapp.net", body["number"].as_str().unwrap_or("")),
                                  "fromMe": true, "id": id}, "status": "PENDING"});
        return (StatusCode::CREATED, Json(body)).into_response();
    }
    (StatusCode::NOT_FOUND, Json(json!({"error": "unknown route"}))).into_response()
}
