//! `POST /webhooks/{channel_id}`: providers post their own payloads here. The handler
//! stays thin: find the channel, verify the call the provider's way, parse just enough
//! to know the message ids, store one event per message (the unique key makes a resent
//! webhook a no-op) and enqueue it. Lead lookup, the pipeline and everything else happen
//! in the `inbound` worker.
//!
//! How a call is verified, bound to the channel, read and answered is each provider's own
//! (`leadflow_providers::<provider>`: Telegram's secret-token header, Meta's and Twilio's
//! signatures, a `?token=` for the rest). This handler gives them the call as the
//! provider made it — for Twilio's signature, the URL it called: `LEADFLOW_PUBLIC_URL` +
//! path when set, else rebuilt from `Host`/`X-Forwarded-Proto`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadflow_providers::Credentials;
use leadflow_providers::{Ack, WebhookCall};
use leadflow_shared::channel::Provider;
use leadflow_shared::db::{channels, inbound, tenants};
use leadflow_shared::inbound::EventKey;
use leadflow_shared::queue::ProcessInbound;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::path_uuid;
use crate::error::ApiError;
use crate::AppState;

#[derive(Deserialize)]
pub struct WebhookQuery {
    token: Option<String>,
    #[serde(rename = "hub.mode")]
    hub_mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    hub_verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    hub_challenge: Option<String>,
}

async fn channel(state: &AppState, id: &str) -> Result<(inbound::WebhookChannel, Provider), ApiError> {
    let id = path_uuid(id, "channel")?;
    // An unknown channel is answered like a wrong secret: no way to probe which exist.
    let ch = inbound::channel(&state.pool, id).await?.ok_or(ApiError::Unauthorized)?;
    let provider = Provider::parse(&ch.provider)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("channel {id} has unknown provider {}", ch.provider)))?;
    Ok((ch, provider))
}

/// The channel's credentials, typed; `None` when a required key is missing (then nothing
/// verifies against them).
fn credentials(
    state: &AppState,
    ch: &inbound::WebhookChannel,
    provider: Provider,
) -> Result<Option<Credentials>, ApiError> {
    let stored = channels::open(state.master_key()?, ch.id, &ch.credentials_enc)?;
    Ok(Credentials::parse(provider, &stored).ok())
}

/// A subscription handshake (Meta's `hub.challenge`), answered when the provider's module
/// accepts it.
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WebhookQuery>,
) -> Result<Response, ApiError> {
    let (ch, provider) = channel(&state, &id).await?;
    let answer = credentials(&state, &ch, provider)?.and_then(|creds| {
        leadflow_providers::subscribe(
            &creds,
            q.hub_mode.as_deref(),
            q.hub_verify_token.as_deref(),
            q.hub_challenge.as_deref(),
        )
    });
    match answer {
        Some(challenge) => Ok((StatusCode::OK, challenge).into_response()),
        None => Err(ApiError::Forbidden),
    }
}

/// The URL the provider called, as it saw it (Twilio signs it).
fn called_url(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(origin) = &state.cfg.channels.public_url {
        return format!("{origin}{path}");
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let proto = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    format!("{proto}://{host}{path}")
}

pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WebhookQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (ch, provider) = channel(&state, &id).await?;
    // Each call decrypts only what its provider verifies with: the credentials (which also
    // bind the call to the channel) or the webhook secret.
    let (creds, secret) = if leadflow_providers::signed(provider) {
        (credentials(&state, &ch, provider)?, None)
    } else {
        let secret = match ch.webhook_secret_enc.as_deref() {
            Some(enc) => {
                use secrecy::ExposeSecret;
                let secret = channels::webhook_secret(state.master_key()?, ch.id, Some(enc))?;
                Some(secret.expose_secret().to_string())
            }
            None => None,
        };
        (None, secret)
    };
    let url = called_url(&state, &headers, &uri);
    let call = WebhookCall {
        headers: &headers,
        query_token: q.token.as_deref(),
        url: &url,
        body: &body,
        webhook_secret: secret.as_deref(),
    };
    if !leadflow_providers::verify(provider, creds.as_ref(), &call) {
        return Err(ApiError::Unauthorized);
    }
    let limit = state.cfg.channels.webhook_rate_limit;
    if let crate::rate_limit::Decision::Limited(after) = state.limiter.check("webhook", ch.id, limit).await {
        return Err(ApiError::RateLimited(after));
    }
    let mut payload: Value =
        leadflow_providers::payload(provider, &body).map_err(|message| ApiError::invalid("body", message))?;
    // A provider cannot be told to fix its payload: NULs go, the message stays.
    leadflow_shared::text::strip_nul(&mut payload);
    if !creds.as_ref().is_none_or(|c| leadflow_providers::bind(c, &mut payload)) {
        // Acknowledged (the provider must not retry it forever) and not stored.
        tracing::warn!(channel_id = %ch.id, provider = provider.as_str(), "a verified call about another channel ignored");
        return Ok(acknowledge(provider, 0, 0));
    }
    let parsed = leadflow_providers::parse(provider, &payload).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let items = parsed.messages.len() + parsed.statuses.len();
    if items > state.cfg.channels.webhook_max_items {
        return Err(ApiError::TooManyItems {
            items,
            max: state.cfg.channels.webhook_max_items,
        });
    }
    // Only message ids are needed here; the worker parses the stored payload again.
    let mut keys: Vec<inbound::NewEvent> = Vec::new();
    for (i, m) in parsed.messages.iter().enumerate() {
        let id = &m.identity;
        let sender = id
            .phone
            .as_deref()
            .or(id.wa_lid.as_deref())
            .or(id.telegram_chat.as_deref())
            .or(id.email.as_deref());
        keys.push(inbound::NewEvent {
            dedupe_key: EventKey::Message {
                provider_message_id: m.provider_message_id.clone(),
            }
            .encode(),
            item: i as i32,
            sender: sender.map(str::to_owned),
        });
    }
    for (i, s) in parsed.statuses.iter().enumerate() {
        keys.push(inbound::NewEvent {
            dedupe_key: EventKey::Status {
                provider_message_id: s.provider_message_id.clone(),
                status: s.status,
            }
            .encode(),
            item: i as i32,
            sender: None,
        });
    }
    if let Some(state) = parsed.connection {
        keys.push(inbound::NewEvent {
            dedupe_key: EventKey::connection(state, &body).encode(),
            item: 0,
            sender: None,
        });
    }
    // A disabled tenant's calls are acknowledged (the provider must not retry forever)
    // and kept as ignored events; nothing is processed.
    let ignored = ch.tenant_disabled.then_some(tenants::DISABLED);
    let new_events = inbound::insert_all(&state.pool, &ch, &keys, &payload, ignored).await?;
    let (stored, duplicates) = (new_events.len(), keys.len() - new_events.len());
    for event_id in new_events.into_iter().filter(|_| ignored.is_none()) {
        // Stored is what matters: the sweeper enqueues events whose job was lost.
        let job = ProcessInbound { event_id, wait: 0 };
        if let Err(e) = state.queues.enqueue_for(ch.tenant_id, &job, Duration::ZERO).await {
            tracing::error!(%event_id, error = %e, "inbound job not enqueued; the sweeper will pick it up");
        }
    }
    if keys.is_empty() {
        tracing::debug!(channel_id = %ch.id, ignored = ?parsed.ignored, "webhook without messages");
    }
    Ok(acknowledge(provider, stored, duplicates))
}

/// What the provider gets back for a call it made.
fn acknowledge(provider: Provider, stored: usize, duplicates: usize) -> Response {
    match leadflow_providers::ack(provider) {
        // An empty <Response> sends nothing back.
        Ack::TwiML => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/xml")],
            r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#,
        )
            .into_response(),
        Ack::Json => (
            StatusCode::OK,
            Json(json!({"success": true, "stored": stored, "duplicates": duplicates})),
        )
            .into_response(),
    }
}
