//! Google access tokens for the worker's calls: the stored one while it has more than a
//! minute left, else a refresh through the token endpoint (stored again, encrypted).
//! `invalid_grant` means the user must consent again: the integration becomes
//! `needs_reauth`, its push channels are stopped (Google cannot be called without a grant,
//! so they are marked stopped and left to expire; their pushes are ignored) and the
//! tenant hears `integration.needs_reauth`.

use chrono::Utc;
use leadflow_shared::db::calendars::{self, CalendarStatus};
use leadflow_shared::db::integrations::{self, IntegrationStatus};
use leadflow_shared::google::{self, GoogleError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::Ctx;

/// A usable access token for `integration_id`. `allow_revoked` lets the stop of a revoked
/// integration's channels use the tokens it still has.
pub async fn access_token(ctx: &Ctx, integration_id: Uuid, allow_revoked: bool) -> Result<SecretString, GoogleError> {
    let db = |e: leadflow_shared::db::DbError| GoogleError::Network(format!("database: {e}"));
    let Some(i) = integrations::get(&ctx.pool, integration_id).await.map_err(db)? else {
        return Err(GoogleError::InvalidGrant("the integration no longer exists".into()));
    };
    match i.status {
        IntegrationStatus::Active => {}
        IntegrationStatus::Revoked if allow_revoked => {}
        other => {
            return Err(GoogleError::InvalidGrant(format!(
                "the integration is {}",
                other.as_str()
            )))
        }
    }
    let secrets = integrations::secrets(&ctx.pool, &ctx.master_key, integration_id)
        .await
        .map_err(db)?;
    let fresh = i
        .expires_at
        .is_some_and(|at| at > Utc::now() + chrono::Duration::seconds(60));
    if let (true, Some(access)) = (fresh, secrets.access) {
        return Ok(access);
    }
    let Some(refresh) = secrets.refresh else {
        return Err(needs_reauth(ctx, &i, "no refresh token was granted").await);
    };
    match google::refresh(&ctx.guarded, &ctx.cfg.google, refresh.expose_secret()).await {
        Ok(t) => {
            let access = SecretString::from(t.access_token);
            let expires_at = Utc::now() + chrono::Duration::seconds(t.expires_in);
            integrations::refreshed(&ctx.pool, &ctx.master_key, i.id, &access, expires_at)
                .await
                .map_err(db)?;
            tracing::info!(integration_id = %i.id, "Google access token refreshed");
            Ok(access)
        }
        Err(GoogleError::InvalidGrant(why)) => Err(needs_reauth(ctx, &i, &why).await),
        Err(e) => Err(e),
    }
}

async fn needs_reauth(ctx: &Ctx, i: &integrations::Integration, why: &str) -> GoogleError {
    match integrations::set_status(&ctx.pool, i.id, IntegrationStatus::NeedsReauth, Some(why)).await {
        Ok(true) => {
            let stopped = calendars::end_for_integration(&ctx.pool, i.id, CalendarStatus::Stopped)
                .await
                .unwrap_or_default();
            tracing::warn!(integration_id = %i.id, why, channels = stopped.len(), "Google integration needs re-authorisation");
            let data = json!({"integration_id": i.id, "service": i.service, "reason": why,
                              "channels_stopped": stopped});
            crate::notify::raise(
                ctx,
                i.tenant_id,
                leadflow_shared::db::notifications::Event::IntegrationNeedsReauth,
                &i.id.to_string(),
                data,
            )
            .await;
        }
        Ok(false) => {}
        Err(e) => tracing::error!(integration_id = %i.id, error = %e, "could not mark the integration needs_reauth"),
    }
    GoogleError::InvalidGrant(why.to_string())
}
