//! Health: `/health` (the documented summary: PostgreSQL answers, whether an AI key is
//! configured), `/healthz` (live: the process answers, no backend touched) and `/readyz`
//! (ready: PostgreSQL, Redis and the schema version, each named; 503 when one fails).
//! `/metrics` is the Prometheus exposition. [`probes`] (all three) is also what every
//! worker and scheduler process serves on its ops listener.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use leadflow_shared::readiness::Probe;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

pub async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    sqlx::query("SELECT 1").execute(&state.pool).await?;
    Ok(Json(json!({"status": "ok", "ai_configured": state.cfg.has_ai_key()})))
}

/// `/healthz`, `/readyz` and (unless `LEADFLOW_METRICS=false`) `/metrics` over `probe`,
/// for any router.
pub fn probes<S>(probe: Probe, metrics_on: bool) -> Router<S> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let router = if metrics_on {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router.with_state(probe)
}

/// Prometheus text exposition of this process's metrics.
async fn metrics(State(probe): State<Probe>) -> Response {
    leadflow_shared::metrics::db_pool(probe.pool());
    // Readiness as a metric (`leadflow_ready{check}`), evaluated at each scrape: an alert
    // sees a process that answers /metrics but could not serve (each check is bounded).
    probe.check().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        leadflow_shared::metrics::render(),
    )
        .into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(probe): State<Probe>) -> Response {
    let r = probe.check().await;
    let status = if r.is_ready() {
        StatusCode::OK
    } else {
        tracing::warn!(checks = ?r.checks, "not ready");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}
