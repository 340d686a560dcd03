//! `Authorization: Bearer <api_key>` → the calling tenant. A key acts for its own tenant
//! and, for an agency, for its client tenants; anything else is 403 and reveals nothing
//! about the other tenant. Lookups are cached briefly so auth stays off the database on
//! the ingest hot path.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use leadflow_shared::db::tenants::{self, Tenant};
use uuid::Uuid;

use crate::cache::TtlCache;
use crate::error::ApiError;
use crate::AppState;

const CACHE_TTL: Duration = Duration::from_secs(30);

/// The authenticated tenant, and whether the request only reads (`GET`/`HEAD`): an
/// agency may read a disabled client's data but not act for it.
#[derive(Debug, Clone)]
pub struct Caller(pub Tenant, pub bool);

pub struct AuthCache {
    by_key: TtlCache<String, Tenant>,
    by_id: TtlCache<Uuid, Tenant>,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self {
            by_key: TtlCache::new(CACHE_TTL, 100_000),
            by_id: TtlCache::new(CACHE_TTL, 100_000),
        }
    }
}

impl AuthCache {
    /// Forgets every cached tenant (a tenant was disabled): this process sees it at once,
    /// other API processes within the cache's 30 s.
    pub fn clear(&self) {
        self.by_key.clear();
        self.by_id.clear();
    }

    async fn by_key(&self, state: &AppState, key: &str) -> Result<Option<Tenant>, ApiError> {
        if let Some(t) = self.by_key.get(&key.to_string()) {
            return Ok(Some(t));
        }
        let found = tenants::find_by_api_key(&state.pool, key).await?;
        if let Some(t) = &found {
            self.by_key.put(key.to_string(), t.clone());
        }
        Ok(found)
    }

    async fn by_id(&self, state: &AppState, id: Uuid) -> Result<Option<Tenant>, ApiError> {
        if let Some(t) = self.by_id.get(&id) {
            return Ok(Some(t));
        }
        let found = tenants::find(&state.pool, id).await?;
        if let Some(t) = &found {
            self.by_id.put(id, t.clone());
        }
        Ok(found)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let tenant = state.auth.by_key(state, key).await?.ok_or(ApiError::Unauthorized)?;
        if let Some(seen) = parts.extensions.get::<crate::CallerTenant>() {
            let _ = seen.0.set(tenant.id);
        }
        if parts.uri.path().starts_with("/backend/") {
            let limit = state.cfg.backend_rate_limit;
            if let crate::rate_limit::Decision::Limited(after) = state.limiter.check("backend", tenant.id, limit).await
            {
                return Err(ApiError::RateLimited(after));
            }
        }
        let reads = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
        Ok(Caller(tenant, reads))
    }
}

impl Caller {
    pub fn id(&self) -> Uuid {
        self.0.id
    }

    /// Checks the caller may act for `tenant_id` (read only, for a disabled client) and
    /// returns that tenant.
    pub async fn act_for(&self, state: &AppState, tenant_id: Uuid) -> Result<Tenant, ApiError> {
        if tenant_id == self.0.id {
            return Ok(self.0.clone());
        }
        if self.0.kind == "agency" {
            if let Some(t) = state.auth.by_id(state, tenant_id).await? {
                if t.parent_id == Some(self.0.id) && (self.1 || !t.disabled) {
                    return Ok(t);
                }
            }
        }
        Err(ApiError::Forbidden)
    }

    /// The tenant a `/backend` call is about: `?tenant_id=` (an agency acting for a
    /// client) or, when absent, the caller itself.
    pub async fn tenant_for(&self, state: &AppState, requested: Option<Uuid>) -> Result<Uuid, ApiError> {
        match requested {
            Some(id) => Ok(self.act_for(state, id).await?.id),
            None => Ok(self.id()),
        }
    }

    /// The tenants the caller can see — itself and an agency's clients — or, for a
    /// request that acts, those it may act for (no disabled client).
    pub async fn visible_tenants(&self, state: &AppState) -> Result<Vec<Uuid>, ApiError> {
        let mut ids = vec![self.0.id];
        if self.0.kind == "agency" {
            let children: Vec<Uuid> =
                sqlx::query_scalar(r#"SELECT id FROM tenants WHERE parent_id = $1 AND ($2 OR disabled_at IS NULL)"#)
                    .bind(self.0.id)
                    .bind(self.1)
                    .fetch_all(&state.pool)
                    .await?;
            ids.extend(children);
        }
        Ok(ids)
    }
}
