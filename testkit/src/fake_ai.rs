//! A local fake of an OpenAI-compatible chat completions API.
//!
//! End-to-end tests must never call the real provider, but they should still
//! exercise the real client code path. This server therefore speaks OpenAI's
//! actual wire format (`POST /v1/chat/completions`, `chat.completion` objects,
//! `{"error": {...}}` bodies, rate-limit headers), records every request, and
//! lets each test script latency, errors, rate limits and hangs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::fake_transcriptions::FakeTranscriptions;

/// One request received by the fake, in arrival order.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The parsed JSON body (a JSON string holding the raw text if it was not JSON).
    pub body: Value,
    pub headers: HeaderMap,
    pub at: Instant,
}

/// A scripted answer, consumed once (FIFO) before falling back to the default reply.
#[derive(Debug, Clone)]
pub enum Scripted {
    Error {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    /// A successful `chat.completion` whose assistant content is this text.
    Reply(String),
    /// Never answers (sleeps for an hour).
    Hang,
}

impl Scripted {
    /// An `{"error": {...}}` body in OpenAI's format.
    pub fn error(status: u16, message: &str, kind: &str, code: Option<&str>) -> Self {
        let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
        Scripted::Error {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// 429 rate limit on requests, with `retry-after` and `x-ratelimit-reset-requests`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let msg = "Rate limit reached for gpt-4o-mini in organization org-test on requests per min (RPM): \
                   Limit 3, Used 3, Requested 1. Please try again in 1s.";
        let mut s = Scripted::error(429, msg, "requests", Some("rate_limit_exceeded"));
        if let Scripted::Error { headers, .. } = &mut s {
            headers.push(("retry-after".into(), retry_after_secs.to_string()));
            headers.push(("x-ratelimit-reset-requests".into(), format!("{retry_after_secs}s")));
            headers.push(("x-ratelimit-limit-requests".into(), "3".into()));
            headers.push(("x-ratelimit-remaining-requests".into(), "0".into()));
        }
        s
    }

    /// 429 caused by an exhausted billing quota (retrying does not help).
    pub fn insufficient_quota() -> Self {
        let msg = "You exceeded your current quota, please check your plan and billing details.";
        Scripted::error(429, msg, "insufficient_quota", Some("insufficient_quota"))
    }

    pub fn server_error() -> Self {
        let msg = "The server had an error while processing your request.";
        Scripted::error(500, msg, "server_error", None)
    }

    pub fn unauthorized() -> Self {
        Scripted::error(
            401,
            "Incorrect API key provided",
            "invalid_request_error",
            Some("invalid_api_key"),
        )
    }
}

/// Counters kept for every chat request, recorded or not (the benchmark reads them while
/// thousands of generations are in flight).
#[derive(Debug, Default)]
pub struct AiStats {
    /// Chat requests received so far.
    pub started: AtomicUsize,
    /// Answering now (waiting out the latency).
    pub in_flight: AtomicUsize,
    /// The most ever in flight at once.
    pub max_in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    script: VecDeque<Scripted>,
    latency: Duration,
    /// Requests are counted but not kept (load runs).
    unrecorded: bool,
    stats: Arc<AiStats>,
}

type Shared = Arc<Mutex<Inner>>;

/// Handle to a running fake; cheap to clone, all clones share state.
#[derive(Debug, Clone)]
pub struct FakeAi {
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    state: Shared,
    /// `POST /v1/audio/transcriptions` on the same server.
    pub transcriptions: FakeTranscriptions,
    pub stats: Arc<AiStats>,
}

impl FakeAi {
    /// Binds 127.0.0.1 on a random port and serves in a background tokio task.
    pub async fn start() -> FakeAi {
        let state: Shared = Arc::default();
        let transcriptions = FakeTranscriptions::default();
        let audio = Router::new()
            .route("/v1/audio/transcriptions", post(super::fake_transcriptions::handle))
            .with_state(transcriptions.clone());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .fallback(not_found)
            .with_state(state.clone())
            .merge(audio);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake AI: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake AI: local_addr");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake AI server stopped: {e}");
            }
        });
        let stats = state.lock().unwrap_or_else(|e| e.into_inner()).stats.clone();
        FakeAi {
            base_url: format!("http://{addr}/v1"),
            state,
            transcriptions,
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Stops keeping requests (they are still counted in [`Self::stats`]): for load runs,
    /// where holding every body would be the fake's cost, not Leadflow's.
    pub fn set_recording(&self, on: bool) {
        self.lock().unrecorded = !on;
    }

    /// Delay applied before every answer (does not block concurrent requests).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Queues a scripted response for the next unanswered request.
    pub fn push_response(&self, r: Scripted) {
        self.lock().script.push_back(r);
    }

    /// Waits until at least `n` requests arrived and returns all of them.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        crate::wait_for_count(
            n,
            timeout,
            || self.requests(),
            |got| {
                format!(
                    "fake AI: expected {n} chat completion request(s) within {timeout:?}, but only {} arrived",
                    got.len()
                )
            },
        )
        .await
    }
}

/// `(role, text)` for each entry of `body["messages"]`. Array content is reduced to
/// its `{"type":"text"}` parts joined with `\n`; null/absent content becomes `""`.
pub fn messages(body: &Value) -> Vec<(String, String)> {
    let Some(msgs) = body.get("messages").and_then(Value::as_array) else {
        return Vec::new();
    };
    msgs.iter()
        .map(|m| {
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            (role.to_owned(), content_text(m.get("content")))
        })
        .collect()
}

fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `"reply to: "` + the trailing run of user messages joined with `" | "`.
fn default_reply(body: &Value) -> String {
    let msgs = messages(body);
    let mut trailing: Vec<&str> = msgs
        .iter()
        .rev()
        .take_while(|(role, _)| role == "user")
        .map(|(_, text)| text.as_str())
        .collect();
    trailing.reverse();
    format!("reply to: {}", trailing.join(" | "))
}

fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Headers OpenAI sends on every response, plus `extra` (which override).
fn headers_for(n: usize, extra: &[(String, String)]) -> HeaderMap {
    let remaining = 10_000usize.saturating_sub(n).to_string();
    let base = [
        ("x-request-id", format!("req_fake{n:08}")),
        ("openai-version", "2020-10-01".to_owned()),
        ("openai-organization", "org-test".to_owned()),
        ("openai-processing-ms", "42".to_owned()),
        ("x-ratelimit-limit-requests", "10000".to_owned()),
        ("x-ratelimit-remaining-requests", remaining),
        ("x-ratelimit-reset-requests", "6ms".to_owned()),
        ("x-ratelimit-limit-tokens", "200000".to_owned()),
        ("x-ratelimit-remaining-tokens", "199000".to_owned()),
        ("x-ratelimit-reset-tokens", "300ms".to_owned()),
    ];
    let mut headers = HeaderMap::new();
    let mut insert = |k: &str, v: &str| {
        let name = HeaderName::from_bytes(k.as_bytes()).expect("fake AI: invalid header name");
        let value = HeaderValue::from_str(v).expect("fake AI: invalid header value");
        headers.insert(name, value);
    };
    for (k, v) in &base {
        insert(k, v);
    }
    for (k, v) in extra {
        insert(k, v);
    }
    headers
}

fn completion(n: usize, request: &Value, text: String) -> Response {
    let model = request.get("model").and_then(Value::as_str).unwrap_or("gpt-4o-mini");
    let prompt_tokens: u64 = messages(request).iter().map(|(_, t)| approx_tokens(t) + 4).sum();
    let completion_tokens = approx_tokens(&text);
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let body = json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    });
    (StatusCode::OK, headers_for(n, &[]), Json(body)).into_response()
}

async fn chat_completions(State(state): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let (body, valid_json) = match serde_json::from_slice::<Value>(&raw) {
        Ok(v) => (v, true),
        Err(_) => (Value::String(String::from_utf8_lossy(&raw).into_owned()), false),
    };
    let (n, scripted, latency, stats) = {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        let n = inner.stats.started.fetch_add(1, Ordering::SeqCst) + 1;
        if !inner.unrecorded {
            inner.requests.push(RecordedRequest {
                body: body.clone(),
                headers,
                at: Instant::now(),
            });
        }
        let scripted = if valid_json {
            inner.script.pop_front()
        } else {
            let msg = "We could not parse the JSON body of your request.";
            Some(Scripted::error(400, msg, "invalid_request_error", None))
        };
        (n, scripted, inner.latency, inner.stats.clone())
    };
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    match scripted {
        None => {
            let text = default_reply(&body);
            completion(n, &body, text)
        }
        Some(Scripted::Reply(text)) => completion(n, &body, text),
        Some(Scripted::Error { status, body, headers }) => {
            let status = StatusCode::from_u16(status).expect("fake AI: invalid scripted status");
            (status, headers_for(n, &headers), Json(body)).into_response()
        }
        Some(Scripted::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

async fn not_found() -> Response {
    let msg = "fake AI only serves POST /v1/chat/completions and /v1/audio/transcriptions";
    let body =
        json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": "unknown_url"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
