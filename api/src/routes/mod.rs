//! One module per resource.

pub mod ai_process;
pub mod assistants;
pub mod deliveries;
pub mod health;
pub mod leads;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ai/process", post(ai_process::process))
        .route("/backend/assistants", get(assistants::list).post(assistants::create))
        .route(
            "/backend/assistants/{id}",
            get(assistants::show).patch(assistants::update),
        )
        .route("/backend/leads/{lead_id}/messages", get(leads::messages))
        .route("/backend/deliveries", get(deliveries::list))
        .route("/backend/deliveries/{id}", get(deliveries::show))
        .route("/backend/deliveries/{id}/retry", post(deliveries::retry))
        .fallback(|| async { crate::error::ApiError::NotFound("route") })
}
