//! The fake OpenAI-compatible `POST /v1/audio/transcriptions`, mounted on the same
//! server as the fake chat API. It checks what the real API checks — a multipart body
//! with a `file` whose name has a supported extension and whose bytes are that format,
//! and a `model` — records each request, and answers `{"text": …}` or a scripted error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// One transcription request as received.
#[derive(Debug, Clone)]
pub struct TranscriptionRequest {
    pub file_name: String,
    pub content_type: Option<String>,
    pub bytes: usize,
    pub model: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub response_format: Option<String>,
    pub auth: Option<String>,
    pub at: Instant,
    /// When the answer was sent (after the latency).
    pub answered_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub enum TranscriptionScript {
    Text(String),
    Error { status: u16, body: Value },
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<TranscriptionRequest>,
    script: VecDeque<TranscriptionScript>,
    latency: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct FakeTranscriptions {
    state: Arc<Mutex<Inner>>,
}

const FORMATS: &str = "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']";

impl FakeTranscriptions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> Vec<TranscriptionRequest> {
        self.lock().requests.clone()
    }

    pub fn push(&self, s: TranscriptionScript) {
        self.lock().script.push_back(s);
    }

    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// An OpenAI error body.
    pub fn error(status: u16, message: &str, kind: &str) -> TranscriptionScript {
        TranscriptionScript::Error {
            status,
            body: json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
        }
    }
}

fn bad_request(message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Whether `bytes` really are the container the extension names.
fn matches_extension(ext: &str, b: &[u8]) -> bool {
    match ext {
        "ogg" | "oga" => b.starts_with(b"OggS"),
        "wav" => b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "mp3" | "mpeg" | "mpga" => b.starts_with(b"ID3") || (b.len() > 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0),
        "flac" => b.starts_with(b"fLaC"),
        "webm" => b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]),
        "m4a" | "mp4" => b.len() > 8 && &b[4..8] == b"ftyp",
        _ => false,
    }
}

pub async fn handle(
    State(fake): State<FakeTranscriptions>,
    headers: axum::http::HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut req = TranscriptionRequest {
        file_name: String::new(),
        content_type: None,
        bytes: 0,
        model: None,
        language: None,
        prompt: None,
        response_format: None,
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: Instant::now(),
        answered_at: None,
    };
    let mut file = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return bad_request(&format!("could not parse multipart form: {e}")),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            req.file_name = field.file_name().unwrap_or_default().to_string();
            req.content_type = field.content_type().map(str::to_string);
            file = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            req.bytes = file.len();
        } else {
            let value = field.text().await.unwrap_or_default();
            match name.as_str() {
                "model" => req.model = Some(value),
                "language" => req.language = Some(value),
                "prompt" => req.prompt = Some(value),
                "response_format" => req.response_format = Some(value),
                _ => {}
            }
        }
    }
    let index = {
        let mut inner = fake.lock();
        inner.requests.push(req.clone());
        inner.requests.len() - 1
    };
    let ext = req.file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let verdict = if req.model.is_none() {
        Some(bad_request("you must provide a model parameter"))
    } else if file.is_empty() {
        Some(bad_request("you must provide a file"))
    } else {
        match ext.as_deref() {
            Some(e) if FORMATS.contains(&format!("'{e}'")) => {
                (!matches_extension(e, &file)).then(|| bad_request("Audio file might be corrupted or unsupported"))
            }
            _ => Some(bad_request(&format!(
                "Invalid file format. Supported formats: {FORMATS}"
            ))),
        }
    };
    let (scripted, latency) = {
        let mut inner = fake.lock();
        let s = if verdict.is_none() {
            inner.script.pop_front()
        } else {
            None
        };
        (s, inner.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    fake.lock().requests[index].answered_at = Some(Instant::now());
    if let Some(r) = verdict {
        return r;
    }
    match scripted {
        Some(TranscriptionScript::Error { status, body }) => {
            (StatusCode::from_u16(status).expect("valid status"), Json(body)).into_response()
        }
        Some(TranscriptionScript::Text(text)) => Json(json!({ "text": text })).into_response(),
        None => {
            let text = format!(
                "transcript of a {}-byte {} voice note",
                file.len(),
                ext.unwrap_or_default()
            );
            Json(json!({ "text": text })).into_response()
        }
    }
}
