//! `/backend/channels`: a tenant's WhatsApp, Telegram, e-mail and SMS channels. `type`
//! and `provider` must agree and are fixed once created; `credentials` must carry every
//! key the provider needs (422 names `credentials.<key>`), are stored encrypted and are
//! only ever shown masked. A PATCH of `credentials` changes the keys it names (`null`
//! removes an optional one). Each channel has its own inbound webhook path.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use leadflow_shared::channel::{mask, ChannelType, Provider};
use leadflow_shared::db::channels::{self, Channel, ChannelFields, Credentials};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::refs::{self, Kind};
use super::TenantQuery;
use crate::auth::Caller;
use crate::body::{path_uuid, JsonObject};
use crate::error::ApiError;
use crate::AppState;
use leadflow_shared::crypto::MasterKey;

/// The channel as the API shows it: masked credentials and its webhook path.
fn view(key: &MasterKey, c: &Channel, creds: &Credentials) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    let masked: Map<String, Value> = creds.iter().map(|(k, s)| (k.clone(), json!(mask(k, s)))).collect();
    v["credentials"] = Value::Object(masked);
    let token = channels::webhook_secret(key, c.id, c.webhook_secret_enc.as_deref())?;
    use secrecy::ExposeSecret;
    v["webhook_path"] = json!(format!("/webhooks/{}?token={}", c.id, token.expose_secret()));
    Ok(v)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let key = state.master_key()?;
    let mut items = Vec::new();
    for c in channels::list(&state.pool, tenant).await? {
        let creds = channels::credentials(&state.pool, key, c.id).await?;
        items.push(view(key, &c, &creds)?);
    }
    Ok(Json(json!({"success": true, "data": items})))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "channel")?;
    let c = channels::find(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("channel"))?;
    let key = state.master_key()?;
    let creds = channels::credentials(&state.pool, key, c.id).await?;
    Ok(Json(view(key, &c, &creds)?))
}

/// Applies `credentials` from the body onto `creds`, then checks the provider's keys.
fn merge_credentials(provider: Provider, mut creds: Credentials, body: &JsonObject) -> Result<Credentials, ApiError> {
    match body.0.get("credentials") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            let known = |k: &str| {
                leadflow_providers::required(provider).contains(&k)
                    || leadflow_providers::optional(provider).contains(&k)
            };
            for (k, v) in given {
                let field = format!("credentials.{k}");
                if !known(k) {
                    let mut keys: Vec<&str> = leadflow_providers::required(provider).to_vec();
                    keys.extend(leadflow_providers::optional(provider));
                    let msg = format!("{} takes only: {}", provider.as_str(), keys.join(", "));
                    return Err(ApiError::invalid(field, msg));
                }
                match v {
                    Value::Null => {
                        creds.remove(k);
                    }
                    Value::String(s) if !s.trim().is_empty() && s.len() <= 4096 => {
                        creds.insert(k.clone(), s.trim().to_string());
                    }
                    Value::Number(n) => {
                        creds.insert(k.clone(), n.to_string());
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            field,
                            format!("credentials.{k} must be a non-empty string"),
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(ApiError::invalid("credentials", "credentials must be an object")),
    }
    for k in leadflow_providers::required(provider) {
        if !creds.contains_key(*k) {
            return Err(ApiError::invalid(
                format!("credentials.{k}"),
                format!("{} channels need credentials.{k}", provider.as_str()),
            ));
        }
    }
    for k in leadflow_providers::credentials::URL_KEYS {
        if let Some(u) = creds.get(k) {
            if url::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(ApiError::invalid(
                    format!("credentials.{k}"),
                    format!("credentials.{k} must be an http(s) URL"),
                ));
            }
        }
    }
    for k in ["smtp_host", "imap_host"] {
        if creds.get(k).is_some_and(|h| !leadflow_shared::ssrf::is_plain_host(h)) {
            return Err(ApiError::invalid(
                format!("credentials.{k}"),
                format!("credentials.{k} must be a bare host name or address (no @ / # ? or spaces)"),
            ));
        }
    }
    Ok(creds)
}

/// Applies the other fields, checking references stay inside the tenant.
async fn merge(
    state: &AppState,
    tenant: Uuid,
    mut f: ChannelFields,
    body: &JsonObject,
) -> Result<ChannelFields, ApiError> {
    if let Some(name) = body.opt_str("name")? {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ApiError::invalid("name", "name must be 1 to 200 characters"));
        }
        f.name = name.to_string();
    }
    if let Some(a) = refs::optional(state, tenant, body, "assistant_id", Kind::Assistant).await? {
        f.assistant_id = a;
    }
    if let Some(d) = refs::optional(state, tenant, body, "department_id", Kind::Department).await? {
        f.department_id = d;
    }
    if let Some(s) = body.opt_str("status")? {
        if !matches!(s, "active" | "inactive") {
            return Err(ApiError::invalid("status", "status must be active or inactive"));
        }
        f.status = s.to_string();
    }
    Ok(f)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    if !body.has("name") {
        return Err(ApiError::invalid("name", "name is required"));
    }
    let channel_type = ChannelType::parse(body.req_str("type")?)
        .ok_or_else(|| ApiError::invalid("type", format!("type must be one of: {}", ChannelType::ALL)))?;
    let provider = Provider::parse(body.req_str("provider")?)
        .ok_or_else(|| ApiError::invalid("provider", format!("provider must be one of: {}", Provider::ALL)))?;
    if provider.channel_type() != channel_type {
        return Err(ApiError::invalid(
            "provider",
            format!(
                "{} serves {} channels, not {}",
                provider.as_str(),
                provider.channel_type().as_str(),
                channel_type.as_str()
            ),
        ));
    }
    if !body.has("credentials") {
        return Err(ApiError::invalid("credentials", "credentials is required"));
    }
    let base = ChannelFields {
        name: String::new(),
        channel_type: channel_type.as_str().to_string(),
        provider: provider.as_str().to_string(),
        credentials: Credentials::new(),
        assistant_id: None,
        department_id: None,
        status: "active".into(),
    };
    let mut f = merge(&state, tenant, base, &body).await?;
    f.credentials = merge_credentials(provider, Credentials::new(), &body)?;
    let key = state.master_key()?;
    let c = channels::insert(&state.pool, key, tenant, &f).await?;
    Ok((StatusCode::CREATED, Json(view(key, &c, &f.credentials)?)))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "channel")?;
    let current = channels::find(&state.pool, tenant, id)
        .await?
        .ok_or(ApiError::NotFound("channel"))?;
    for (field, now) in [("type", &current.channel_type), ("provider", &current.provider)] {
        if let Some(v) = body.opt_str(field)? {
            if v != now {
                return Err(ApiError::invalid(
                    field,
                    format!("{field} cannot change; create another channel"),
                ));
            }
        }
    }
    let provider = Provider::parse(&current.provider)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("stored provider {:?} is unknown", current.provider)))?;
    let key = state.master_key()?;
    let stored = channels::credentials(&state.pool, key, id).await?;
    let base = ChannelFields {
        name: current.name.clone(),
        channel_type: current.channel_type.clone(),
        provider: current.provider.clone(),
        credentials: Credentials::new(),
        assistant_id: current.assistant_id,
        department_id: current.department_id,
        status: current.status.clone(),
    };
    let mut f = merge(&state, tenant, base, &body).await?;
    f.credentials = merge_credentials(provider, stored, &body)?;
    let c = channels::update(&state.pool, key, tenant, id, &f)
        .await?
        .ok_or(ApiError::NotFound("channel"))?;
    Ok(Json(view(key, &c, &f.credentials)?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_for(&state, q.tenant_id).await?;
    let id = path_uuid(&id, "channel")?;
    if !channels::delete(&state.pool, tenant, id).await? {
        return Err(ApiError::NotFound("channel"));
    }
    Ok(StatusCode::NO_CONTENT)
}
