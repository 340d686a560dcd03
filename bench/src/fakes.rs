//! The fakes the sections use: the shared ones from `leadflow-testkit` (the same the
//! end-to-end tests use), set up for load runs, and the bench's own baseline, a bare axum
//! handler for the ingest comparison.

use axum::routing::post;
use axum::{Json, Router};
use leadflow_testkit::fake_ai::FakeAi;
use leadflow_testkit::receiver::Receiver;
use serde_json::{json, Value};

/// The shared fake OpenAI-compatible API, counting requests without keeping them.
pub async fn fake_ai() -> anyhow::Result<FakeAi> {
    let ai = FakeAi::start().await;
    ai.set_recording(false);
    Ok(ai)
}

/// The shared postback receiver.
pub async fn receiver() -> anyhow::Result<Receiver> {
    Ok(Receiver::start().await)
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
