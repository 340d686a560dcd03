//! One module per resource.

pub mod admin;
pub mod ai_process;
pub mod assistants;
pub mod calendar_push;
pub mod channels;
pub mod clients;
pub mod deliveries;
pub mod departments;
pub mod health;
pub mod integrations;
pub mod lead_channels;
pub mod leads;
pub mod notification_configs;
pub mod refs;
pub mod users;
pub mod webhooks;

use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;

/// `?tenant_id=`: an agency acting for one of its clients on a `/backend` route.
#[derive(Deserialize)]
pub struct TenantQuery {
    pub tenant_id: Option<Uuid>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ai/process", post(ai_process::process))
        .route("/backend/assistants", get(assistants::list).post(assistants::create))
        .route(
            "/backend/assistants/{id}",
            get(assistants::show).patch(assistants::update),
        )
        .route("/backend/channels", get(channels::list).post(channels::create))
        .route(
            "/backend/channels/{id}",
            get(channels::show).patch(channels::update).delete(channels::delete),
        )
        .route("/backend/clients", get(clients::list).post(clients::create))
        .route("/backend/clients/{id}/disable", post(clients::disable))
        .route("/backend/clients/{id}/enable", post(clients::enable))
        .route("/backend/departments", get(departments::list).post(departments::create))
        .route("/backend/departments/{id}", delete(departments::delete))
        .route("/backend/users", get(users::list).post(users::create))
        .route(
            "/backend/users/{id}",
            get(users::show).patch(users::update).delete(users::delete),
        )
        .route(
            "/backend/leads/{lead_id}/messages",
            get(leads::messages).post(lead_channels::send),
        )
        .route("/backend/leads/{lead_id}", delete(leads::erase))
        .route("/backend/leads/{lead_id}/export", get(leads::export))
        .route("/backend/leads/{lead_id}/channels", get(lead_channels::list))
        .route(
            "/backend/leads/{lead_id}/channels/{id}",
            axum::routing::patch(lead_channels::update),
        )
        .route("/backend/leads/{lead_id}/attendants", get(lead_channels::attendants))
        .route("/backend/leads/{lead_id}/release", post(lead_channels::release))
        .route("/webhooks/google/calendar", post(calendar_push::receive))
        .route("/webhooks/{channel_id}", get(webhooks::verify).post(webhooks::receive))
        .route("/backend/integrations/google/auth-url", post(integrations::auth_url))
        .route("/integrations/google/callback", get(integrations::callback))
        .route("/backend/integrations/tokens", get(integrations::tokens))
        .route("/backend/integrations/tokens/{id}", delete(integrations::revoke))
        .route(
            "/backend/integrations/google/calendars/{calendar_id}/watch",
            post(integrations::watch),
        )
        .route("/backend/integrations/google/channels", get(integrations::channels))
        .route(
            "/backend/notification-configs",
            get(notification_configs::list).post(notification_configs::create),
        )
        .route(
            "/backend/notification-configs/{id}",
            get(notification_configs::show).delete(notification_configs::delete),
        )
        .route("/backend/deliveries", get(deliveries::list))
        .route("/backend/deliveries/{id}", get(deliveries::show))
        .route("/backend/deliveries/{id}/retry", post(deliveries::retry))
        .route("/admin", get(admin::page))
        .route("/admin/console.js", get(admin::script))
        .route("/admin/console.css", get(admin::style))
        .route("/admin/api/queues", get(admin::queues))
        .route("/admin/api/queues/{queue}/pause", post(admin::pause))
        .route("/admin/api/queues/{queue}/resume", post(admin::resume))
        .route("/admin/api/failures", get(admin::failures))
        .route("/admin/api/failures/retry", post(admin::retry_many))
        .route("/admin/api/failures/{kind}/{id}/retry", post(admin::retry))
        .route("/admin/api/failures/{kind}/{id}/discard", post(admin::discard))
        .route("/admin/api/tenants", get(admin::tenants))
        .route("/admin/api/tenants/{id}/disable", post(admin::disable_tenant))
        .route("/admin/api/tenants/{id}/enable", post(admin::enable_tenant))
        .route("/admin/api/channels", get(admin::channels))
        .fallback(|| async { crate::error::ApiError::NotFound("route") })
}
