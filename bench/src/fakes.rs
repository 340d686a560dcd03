//! Minimal local stand-ins for the benchmark: an OpenAI-compatible chat endpoint with
//! settable latency that counts generations in flight, and a postback receiver that
//! counts deliveries. (The end-to-end tests have richer, recording versions.)

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
pub struct AiStats {
    pub latency_ms: AtomicU64,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub started: AtomicUsize,
    /// Latency of `/audio/transcriptions`.
    pub transcribe_ms: AtomicU64,
    pub transcriptions: AtomicUsize,
}

pub struct FakeAi {
    pub base_url: String,
    pub stats: Arc<AiStats>,
}

async fn chat(State(s): State<Arc<AiStats>>, Json(body): Json<Value>) -> Json<Value> {
    s.started.fetch_add(1, Ordering::SeqCst);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let ms = s.latency_ms.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    Json(json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    }))
}

/// Reads the whole multipart body (as the real API must) and answers with a transcript.
async fn transcribe(State(s): State<Arc<AiStats>>, body: axum::body::Bytes) -> Json<Value> {
    s.transcriptions.fetch_add(1, Ordering::SeqCst);
    let ms = s.transcribe_ms.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Json(json!({"text": format!("a voice note ({} bytes of form)", body.len())}))
}

pub async fn fake_ai() -> anyhow::Result<FakeAi> {
    let stats = Arc::new(AiStats::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/audio/transcriptions", post(transcribe))
        .with_state(stats.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(FakeAi { base_url, stats })
}

pub struct Counter {
    pub url: String,
    pub count: Arc<AtomicUsize>,
}

pub async fn receiver() -> anyhow::Result<Counter> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Counter { url, count })
}

/// The baseline for ingest: an axum handler that parses the same JSON and answers 202.
pub async fn bare_handler() -> anyhow::Result<String> {
    let app = Router::new().route(
        "/ai/process",
        post(|Json(body): Json<Value>| async move {
            let ok = body.get("lead_id").is_some();
            (
                axum::http::StatusCode::ACCEPTED,
                Json(json!({"success": ok, "queued": true})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
