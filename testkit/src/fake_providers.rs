//! Fake messaging providers on one local server, speaking their send APIs as documented:
//! Z-API `POST /instances/{id}/token/{token}/send-text` → `{zaapId, messageId, id}`;
//! Telegram `POST /bot{token}/sendMessage` → `{"ok": true, "result": {"message_id"}}`;
//! Evolution `POST /message/sendText/{instance}` → `201 {"key": {"id"}}`; Meta Cloud
//! `POST /{version}/{phone_number_id}/messages` → `{"messages": [{"id": "wamid…"}]}`;
//! Gupshup form posts to `/wa/api/v1/msg` and `/template/msg` → `{"status": "submitted",
//! "messageId"}`; Twilio `POST /2010-04-01/Accounts/{sid}/Messages.json` → `201 {"sid"}`;
//! a generic SMS gateway `POST /sms/send` → `{"id"}`. Every send is recorded; statuses can
//! be scripted to test retries (with a `Retry-After`, as providers send with 429).
//!
//! Media behind provider handles, as the providers serve it: Telegram `getFile` →
//! `{"result": {"file_path"}}` then `GET /file/bot{token}/{file_path}`; Meta
//! `GET /{version}/{media_id}` (bearer) → `{"url", "mime_type", "file_size"}`, whose URL
//! also wants the bearer token. Files are registered with [`FakeProviders::host_file`].

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
    /// When the request arrived.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    sent: Vec<Sent>,
    script: VecDeque<(u16, Option<u64>)>,
    /// Provider media handle → fixture file name (tests/fixtures/media).
    files: std::collections::HashMap<String, String>,
    /// Media API calls and downloads, by path.
    media_requests: Vec<String>,
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
        let base_url = crate::serve(app).await;
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
        self.lock().script.push_back((status, None));
    }

    /// The next send answers with this status and a `Retry-After` of `secs`.
    pub fn push_status_retry_after(&self, status: u16, secs: u64) {
        self.lock().script.push_back((status, Some(secs)));
    }

    /// Serves fixture `file` for the provider media handle `handle` (a Telegram `file_id`
    /// or a Meta media id).
    pub fn host_file(&self, handle: &str, file: &str) {
        self.lock().files.insert(handle.to_string(), file.to_string());
    }

    /// Paths of the media API calls and downloads made so far.
    pub fn media_requests(&self) -> Vec<String> {
        self.lock().media_requests.clone()
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        crate::wait_for_count(
            n,
            timeout,
            || self.sent(),
            |got| format!("expected {n} provider sends, got {}", got.len()),
        )
        .await
    }
}

/// Telegram's and Meta's media endpoints; `None` for anything else.
fn media(state: &Mutex<Inner>, path: &str, query: &str, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
    let bearer_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    let fixture = |name: &str| crate::media_server::fixture(name);
    if path.starts_with("/bot") && path.ends_with("/getFile") {
        inner.media_requests.push(path.to_string());
        let id = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "file_id")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        return Some(match inner.files.get(&id) {
            Some(name) => Json(
                json!({"ok": true, "result": {"file_id": id, "file_unique_id": "AgADcQUAAoOKCEY",
                                       "file_size": fixture(name).len(), "file_path": format!("documents/{name}")}}),
            )
            .into_response(),
            None => (
                StatusCode::BAD_REQUEST,
                Json(json!({"ok": false, "error_code": 400, "description": "Bad Request: invalid file_id"})),
            )
                .into_response(),
        });
    }
    if let Some(rest) = path.strip_prefix("/file/bot") {
        inner.media_requests.push(path.to_string());
        let name = rest.rsplit('/').next().unwrap_or_default();
        return Some(fixture(name).into_response());
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.len() == 2 && segments[0].starts_with('v') && segments[1].chars().all(|c| c.is_ascii_digit()) {
        inner.media_requests.push(path.to_string());
        if !bearer_ok {
            return Some((StatusCode::UNAUTHORIZED, Json(json!({"error": {"code": 190}}))).into_response());
        }
        let name = inner.files.get(segments[1])?.clone();
        let mime = if name.ends_with(".ogg") {
            "audio/ogg"
        } else if name.ends_with(".pdf") {
            "application/pdf"
        } else {
            "image/jpeg"
        };
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
        return Some(
            Json(
                json!({"messaging_product": "whatsapp", "url": format!("http://{host}/lookaside/{name}"),
                        "mime_type": mime, "file_size": fixture(&name).len(), "id": segments[1]}),
            )
            .into_response(),
        );
    }
    if path.starts_with("/chat/getBase64FromMediaMessage/") {
        inner.media_requests.push(path.to_string());
        if headers.get("apikey").is_none() {
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        let key = body
            .pointer("/message/key/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(name) = inner.files.get(key).cloned() else {
            return Some(
                (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"status": 400, "error": "Bad Request",
                "response": {"message": ["Message not found"]}})),
                )
                    .into_response(),
            );
        };
        use base64::Engine;
        let mime = if name.ends_with(".ogg") {
            "audio/ogg; codecs=opus"
        } else {
            "application/octet-stream"
        };
        return Some(
            (
                StatusCode::CREATED,
                Json(json!({"mediaType": "audioMessage", "fileName": name, "mimetype": mime,
                "base64": base64::engine::general_purpose::STANDARD.encode(fixture(&name))})),
            )
                .into_response(),
        );
    }
    if let Some(name) = path.strip_prefix("/lookaside/") {
        inner.media_requests.push(path.to_string());
        if !bearer_ok {
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        return Some(fixture(name).into_response());
    }
    None
}

async fn handle(State(state): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let query = req.uri().query().unwrap_or_default().to_string();
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
    if let Some(resp) = media(&state, &path, &query, &headers, &body) {
        return resp;
    }
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
            at: Instant::now(),
        });
    };
    if let Some((status, retry_after)) = scripted {
        record("");
        let status = StatusCode::from_u16(status).expect("status");
        let mut resp = (status, Json(json!({"error": "scripted failure"}))).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("header"));
        }
        return resp;
    }
    if path.starts_with("/2010-04-01/Accounts/") && path.ends_with("/Messages.json") {
        let sid = format!("SM{n:032x}");
        record(&sid);
        return (
            StatusCode::CREATED,
            Json(
                json!({"sid": sid, "status": "queued", "to": body["To"], "from": body["From"], "body": body["Body"],
                        "num_segments": "1", "api_version": "2010-04-01"}),
            ),
        )
            .into_response();
    }
    if path == "/sms/send" {
        let gw = format!("gw-out-{n}");
        record(&gw);
        return Json(json!({"id": gw, "status": "accepted"})).into_response();
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
