//! Google integration: consent (`auth-url`, then Google redirects the user to `callback`
//! with a code and our single-use `state`), the stored tokens (listed without secrets,
//! revoked with `DELETE`), and Calendar push channels (`watch` creates one through the
//! `calendar` queue; the worker talks to Google). The callback is the one place the API
//! calls out: the user's browser waits on it, and the code is only good for minutes.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::db::calendars::{self, CalendarStatus};
use leadflow_shared::db::integrations::{self, IntegrationStatus};
use leadflow_shared::google::{self, GoogleError};
use leadflow_shared::queue::{CalendarJob, CalendarStep};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use super::TenantQuery;
use crate::auth::Caller;
use crate::body::path_uuid;
use crate::error::ApiError;
use crate::AppState;

const SERVICE: &str = "google";

fn not_configured(what: &str) -> ApiError {
    ApiError::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "not_configured".into(),
        message: format!("the Google integration is not configured on this server: {what}"),
        extra: Value::Null,
    }
}

fn redirect_uri(state: &AppState) -> Result<String, ApiError> {
    let origin = state
        .cfg
        .channels
        .public_url
        .as_deref()
        .ok_or_else(|| not_configured("LEADFLOW_PUBLIC_URL is not set"))?;
    Ok(format!("{origin}/integrations/google/callback"))
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub async fn auth_url(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let redirect = redirect_uri(&state)?;
    let oauth_state = random_token();
    let url = google::consent_url(&state.cfg.google, &redirect, &oauth_state)
        .map_err(|_| not_configured("LEADFLOW_GOOGLE_CLIENT_ID is not set"))?;
    integrations::new_state(&state.pool, tenant, SERVICE, &oauth_state).await?;
    Ok(Json(json!({"success": true, "url": url, "state": oauth_state,
                   "expires_in": integrations::STATE_TTL_SECS as i64})))
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub async fn callback(State(state): State<AppState>, Query(q): Query<Callback>) -> Result<Json<Value>, ApiError> {
    if let Some(e) = q.error {
        return Err(ApiError::invalid("error", format!("Google did not grant access: {e}")));
    }
    let oauth_state = q.state.ok_or_else(|| ApiError::invalid("state", "state is required"))?;
    let code = q.code.ok_or_else(|| ApiError::invalid("code", "code is required"))?;
    let tenant = integrations::take_state(&state.pool, &oauth_state, SERVICE)
        .await?
        .ok_or_else(|| ApiError::invalid("state", "unknown, expired or already used state; start again"))?;
    let redirect = redirect_uri(&state)?;
    let tokens = match google::exchange_code(&state.http, &state.cfg.google, &code, &redirect).await {
        Ok(t) => t,
        Err(GoogleError::InvalidGrant(why)) => {
            return Err(ApiError::invalid("code", format!("Google refused the code: {why}")));
        }
        Err(e) => {
            return Err(ApiError::Status {
                status: StatusCode::BAD_GATEWAY,
                code: "google_unavailable".into(),
                message: e.to_string(),
                extra: Value::Null,
            })
        }
    };
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(tokens.expires_in);
    let i = integrations::store_consent(
        &state.pool,
        state.master_key()?,
        tenant,
        SERVICE,
        &tokens.access_token,
        tokens.refresh_token.as_deref(),
        expires_at,
        &tokens.scope,
    )
    .await?;
    Ok(Json(
        json!({"success": true, "message": "Google is connected; you can close this page.", "integration": i}),
    ))
}

pub async fn tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let items = integrations::list(&state.pool, tenant).await?;
    Ok(Json(json!({"success": true, "data": items})))
}

/// Revokes an integration: its push channels are stopped at Google (by the worker, with
/// the tokens it still has), then the tokens are forgotten.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "integration")?;
    let i = integrations::get(&state.pool, id)
        .await?
        .filter(|i| i.tenant_id == tenant && i.status != IntegrationStatus::Revoked)
        .ok_or(ApiError::NotFound("integration"))?;
    integrations::set_status(&state.pool, i.id, IntegrationStatus::Revoked, None).await?;
    let stopping = calendars::end_for_integration(&state.pool, i.id, CalendarStatus::Stopping).await?;
    if stopping.is_empty() {
        integrations::wipe(&state.pool, i.id).await?;
    }
    for channel_id in stopping {
        let job = CalendarJob {
            step: CalendarStep::Stop,
            channel_id,
            n: 1,
            resumed: None,
        };
        if let Err(e) = state.queues.enqueue(&job, std::time::Duration::ZERO).await {
            tracing::warn!(%channel_id, error = %e, "stop not enqueued; the calendar tick will resume it");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn watch(
    State(state): State<AppState>,
    caller: Caller,
    Path(calendar_id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<(StatusCode, Json<calendars::CalendarChannel>), ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    if calendar_id.is_empty() || calendar_id.len() > 1024 {
        return Err(ApiError::invalid(
            "calendar_id",
            "calendar_id must be 1 to 1024 characters",
        ));
    }
    if state.cfg.channels.public_url.is_none() {
        return Err(not_configured(
            "LEADFLOW_PUBLIC_URL is not set (Google needs an address to push to)",
        ));
    }
    let i = integrations::live(&state.pool, tenant, SERVICE)
        .await?
        .filter(|i| i.status == IntegrationStatus::Active)
        .ok_or_else(|| {
            ApiError::invalid(
                "integration",
                "connect Google first (POST /backend/integrations/google/auth-url), or again if it needs re-authorisation",
            )
        })?;
    let ch = calendars::create_pending(&state.pool, state.master_key()?, tenant, i.id, &calendar_id, None).await?;
    let job = CalendarJob {
        step: CalendarStep::Watch,
        channel_id: ch.id,
        n: 1,
        resumed: None,
    };
    state.queues.enqueue(&job, std::time::Duration::ZERO).await?;
    Ok((StatusCode::ACCEPTED, Json(ch)))
}

pub async fn channels(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let items = calendars::list(&state.pool, tenant).await?;
    Ok(Json(json!({"success": true, "data": items})))
}
