//! `POST /webhooks/{channel_id}`: providers post their own payloads here. The handler
//! stays thin: find the channel, verify the call the provider's way, parse just enough
//! to know the message ids, store one event per message (the unique key makes a resent
//! webhook a no-op) and enqueue it. Lead lookup, the pipeline and everything else happen
//! in the `inbound` worker.
//!
//! Verification: Telegram's `X-Telegram-Bot-Api-Secret-Token` (set to the channel's
//! webhook secret when the webhook is registered); Meta's `X-Hub-Signature-256` over the
//! raw body with the app secret (and `GET` answers the `hub.challenge` handshake);
//! Twilio's `X-Twilio-Signature` (HMAC-SHA1 with the auth token over the URL it called
//! and its form fields; that URL is `LEADFLOW_PUBLIC_URL` + path when set, else rebuilt
//! from `Host`/`X-Forwarded-Proto`); every other provider carries the secret in the URL
//! (`?token=`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadflow_shared::channel::{meta_signature_ok, secrets_match, Provider};
use leadflow_shared::credentials::Credentials;
use leadflow_shared::db::{channels, inbound, tenants};
use leadflow_shared::inbound::{twilio, EventKey};
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

/// Whether the (verified) call is about this channel at all; a Meta batch keeps only
/// the changes for the channel's number. One Meta app secret or Twilio account often
/// serves several tenants' numbers: without this, any holder of it could write into
/// another tenant's channel.
fn bind_to_channel(ch: &inbound::WebhookChannel, creds: Option<&Credentials>, payload: &mut Value) -> bool {
    match creds {
        Some(Credentials::MetaCloud(c)) => {
            let dropped = leadflow_shared::inbound::meta::retain_changes_for(payload, &c.phone_number_id);
            if dropped > 0 {
                tracing::warn!(channel_id = %ch.id, dropped, "Meta changes for another number ignored");
            }
            true
        }
        Some(Credentials::Twilio(c)) => {
            let ours = twilio::is_for(payload, &c.account_sid, &c.from);
            if !ours {
                tracing::warn!(channel_id = %ch.id, "Twilio call for another account or number ignored");
            }
            ours
        }
        _ => true,
    }
}

/// Meta's subscription handshake: echo `hub.challenge` when the verify token matches.
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WebhookQuery>,
) -> Result<Response, ApiError> {
    let (ch, provider) = channel(&state, &id).await?;
    let expected = match provider {
        Provider::MetaCloud => match credentials(&state, &ch, provider)? {
            Some(Credentials::MetaCloud(c)) => Some(c.verify_token),
            _ => None,
        },
        _ => None,
    };
    match (q.hub_mode.as_deref(), q.hub_verify_token, q.hub_challenge, expected) {
        (Some("subscribe"), Some(given), Some(challenge), Some(expected)) if secrets_match(&given, &expected) => {
            Ok((StatusCode::OK, challenge).into_response())
        }
        _ => Err(ApiError::Forbidden),
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
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let token = || -> Result<String, ApiError> {
        use secrecy::ExposeSecret;
        let secret = channels::webhook_secret(state.master_key()?, ch.id, ch.webhook_secret_enc.as_deref())?;
        Ok(secret.expose_secret().to_string())
    };
    // Meta and Twilio verify with a credential and bind the call with others: decrypted once.
    let creds = match provider {
        Provider::MetaCloud | Provider::Twilio => credentials(&state, &ch, provider)?,
        _ => None,
    };
    // Twilio posts forms; they are stored as a flat JSON object of strings.
    let form = (provider == Provider::Twilio).then(|| leadflow_shared::inbound::form_fields(&body));
    let verified = match provider {
        Provider::TelegramBot => {
            let expected = token()?;
            header("x-telegram-bot-api-secret-token").is_some_and(|t| secrets_match(t, &expected))
        }
        Provider::MetaCloud => match &creds {
            Some(Credentials::MetaCloud(c)) => meta_signature_ok(&c.app_secret, &body, header("x-hub-signature-256")),
            _ => false,
        },
        Provider::Twilio => match (&creds, &form) {
            (Some(Credentials::Twilio(c)), Some(fields)) => {
                let expected = twilio::signature(&c.auth_token, &called_url(&state, &headers, &uri), fields);
                header("x-twilio-signature").is_some_and(|given| secrets_match(given, &expected))
            }
            _ => false,
        },
        _ => {
            let expected = token()?;
            q.token.as_deref().is_some_and(|t| secrets_match(t, &expected))
        }
    };
    if !verified {
        return Err(ApiError::Unauthorized);
    }
    let limit = state.cfg.channels.webhook_rate_limit;
    if let crate::rate_limit::Decision::Limited(after) = state.limiter.check("webhook", ch.id, limit).await {
        return Err(ApiError::RateLimited(after));
    }
    let mut payload: Value = match &form {
        Some(fields) => leadflow_shared::inbound::form_to_json(fields),
        None => serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?,
    };
    // A provider cannot be told to fix its payload: NULs go, the message stays.
    leadflow_shared::text::strip_nul(&mut payload);
    if !bind_to_channel(&ch, creds.as_ref(), &mut payload) {
        // Acknowledged (the provider must not retry it forever) and not stored.
        return Ok(acknowledge(provider, 0, 0));
    }
    let parsed =
        leadflow_shared::inbound::parse(provider, &payload).map_err(|e| ApiError::invalid("body", e.to_string()))?;
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
    if provider == Provider::Twilio {
        // Twilio reads the answer as TwiML: an empty <Response> sends nothing back.
        return (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/xml")],
            r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#,
        )
            .into_response();
    }
    (
        StatusCode::OK,
        Json(json!({"success": true, "stored": stored, "duplicates": duplicates})),
    )
        .into_response()
}
