//! Where a medium's bytes come from. Most providers give a downloadable URL; some give a
//! handle ([`MediaHandle`]) that must be resolved through the provider's API with the
//! channel's credentials first:
//!
//! - Telegram `file_id`: Bot API `getFile`, then `{base}/file/bot<token>/<file_path>`;
//! - Meta media id: Graph `GET /{version}/{media_id}` for a short-lived URL, downloaded
//!   with the same bearer token;
//! - Evolution message key: `getBase64FromMediaMessage` (its webhook URLs point at
//!   WhatsApp's encrypted CDN);
//! - an e-mail attachment stored with its message.
//!
//! A handle is resolved only with the channel of the message's own burst, in the
//! message's tenant, while that channel is live and of the handle's provider: the
//! credentials spent are always the ones of the channel the lead wrote to. A URL must be
//! `http`/`https` and goes through the SSRF policy, like every request here. Errors say
//! what went wrong in a few fixed words and the HTTP status, never the provider's answer
//! (it may carry another service's data back to the tenant).

use leadflow_shared::channel::Provider;
use leadflow_shared::credentials::Credentials;
use leadflow_shared::db::media::Claim;
use leadflow_shared::db::{channels, inbound, mailboxes};
use leadflow_shared::media_handle::{is_fetchable_url, MediaHandle, NOT_ALLOWED};
use uuid::Uuid;

use super::download::{self, DownloadError, Downloaded};
use crate::Ctx;

/// The largest JSON answer a provider's media API call may give (a file path or URL).
const API_ANSWER_CAP: u64 = 64 * 1024;

pub async fn fetch(ctx: &Ctx, claim: &Claim, limit: u64) -> Result<Downloaded, DownloadError> {
    let Some(handle) = claim.media_handle.as_deref() else {
        return match claim.url.as_deref() {
            Some(url) if is_fetchable_url(url) => download::fetch(&ctx.media_http, &ctx.ssrf, url, limit).await,
            _ => Err(DownloadError::Refused(NOT_ALLOWED.into())),
        };
    };
    let Some(channel) = claim.channel_id else {
        return Err(DownloadError::Refused(NOT_ALLOWED.into()));
    };
    let creds = || credentials(ctx, claim.tenant_id, channel, handle.provider());
    match handle {
        MediaHandle::MailAttachment { id } => {
            let file = mailboxes::attachment(&ctx.pool, claim.tenant_id, channel, *id, limit)
                .await
                .map_err(internal)?
                .ok_or(DownloadError::Status { status: 404 })?;
            let bytes = file.data.ok_or(DownloadError::TooLarge { limit })?;
            Ok(Downloaded {
                bytes,
                content_type: file.mime,
                file_name: file.file_name,
            })
        }
        MediaHandle::TelegramFile { file_id } => {
            let Credentials::TelegramBot(creds) = creds().await? else {
                return Err(DownloadError::Refused(NOT_ALLOWED.into()));
            };
            let base = creds.base_url.as_deref().unwrap_or("https://api.telegram.org");
            let base = base.trim_end_matches('/');
            let token = &creds.bot_token;
            let answer = api(
                ctx,
                ctx.guarded
                    .get(format!("{base}/bot{token}/getFile"))
                    .query(&[("file_id", file_id)]),
                API_ANSWER_CAP,
            )
            .await?;
            let path = answer
                .pointer("/result/file_path")
                .and_then(|v| v.as_str())
                .ok_or_else(|| DownloadError::Refused("Telegram getFile gave no file_path".into()))?;
            let mut file = download::fetch(
                &ctx.media_http,
                &ctx.ssrf,
                &format!("{base}/file/bot{token}/{path}"),
                limit,
            )
            .await?;
            file.file_name = path.rsplit('/').next().map(str::to_string);
            Ok(file)
        }
        MediaHandle::MetaMedia { media_id } => {
            let Credentials::MetaCloud(creds) = creds().await? else {
                return Err(DownloadError::Refused(NOT_ALLOWED.into()));
            };
            let base = creds.base_url.as_deref().unwrap_or("https://graph.facebook.com");
            let version = creds.api_version.as_deref().unwrap_or("v23.0");
            let token = creds.access_token.as_str();
            let req = ctx
                .guarded
                .get(format!("{}/{version}/{media_id}", base.trim_end_matches('/')))
                .bearer_auth(token);
            let answer = api(ctx, req, API_ANSWER_CAP).await?;
            if answer["file_size"].as_u64().is_some_and(|n| n > limit) {
                return Err(DownloadError::TooLarge { limit });
            }
            let media_url = answer["url"]
                .as_str()
                .ok_or_else(|| DownloadError::Refused("Meta gave no media url".into()))?;
            let mut file = download::fetch_with(&ctx.media_http, &ctx.ssrf, media_url, limit, Some(token)).await?;
            file.content_type = file
                .content_type
                .or_else(|| answer["mime_type"].as_str().map(str::to_string));
            Ok(file)
        }
        MediaHandle::EvolutionMessage { key_id } => {
            let Credentials::Evolution(creds) = creds().await? else {
                return Err(DownloadError::Refused(NOT_ALLOWED.into()));
            };
            let base = creds.base_url.trim_end_matches('/');
            let instance = &creds.instance;
            let req = ctx
                .guarded
                .post(format!("{base}/chat/getBase64FromMediaMessage/{instance}"))
                .header("apikey", &creds.api_key)
                .json(&serde_json::json!({"message": {"key": {"id": key_id}}, "convertToMp4": false}));
            // The file comes inside the JSON as base64: 4/3 of the cap, plus the envelope.
            let answer = api(ctx, req, limit / 3 * 4 + 4 + API_ANSWER_CAP).await?;
            let encoded = answer["base64"]
                .as_str()
                .ok_or_else(|| DownloadError::Refused("Evolution returned no base64".into()))?;
            // Base64 is 4/3 of the bytes: refuse before decoding what could not fit.
            if (encoded.len() as u64) / 4 * 3 > limit + 3 {
                return Err(DownloadError::TooLarge { limit });
            }
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| DownloadError::Refused("Evolution's base64 is invalid".into()))?;
            Ok(Downloaded {
                bytes,
                content_type: answer["mimetype"].as_str().map(str::to_string),
                file_name: answer["fileName"].as_str().map(str::to_string),
            })
        }
    }
}

/// The credentials of the message's own channel, if it is still live and of `provider`.
async fn credentials(
    ctx: &Ctx,
    tenant_id: Uuid,
    channel: Uuid,
    provider: Provider,
) -> Result<Credentials, DownloadError> {
    // One read: the channel with its sealed credentials (the webhook path's query).
    let ch = inbound::channel(&ctx.pool, channel)
        .await
        .map_err(internal)?
        .filter(|c| c.tenant_id == tenant_id && c.status == "active" && Provider::parse(&c.provider) == Some(provider))
        .ok_or_else(|| DownloadError::Refused(NOT_ALLOWED.into()))?;
    let stored = channels::open(&ctx.master_key, ch.id, &ch.credentials_enc).map_err(internal)?;
    Credentials::parse(provider, &stored).map_err(|e| DownloadError::Refused(e.to_string()))
}

/// A provider API call answering JSON, sorted like a download (5xx/429 retried); an
/// answer longer than `cap` bytes is refused as it streams in.
async fn api(ctx: &Ctx, req: reqwest::RequestBuilder, cap: u64) -> Result<serde_json::Value, DownloadError> {
    let built = req
        .build()
        .map_err(|e| DownloadError::Refused(crate::ai::http_error(e)))?;
    ctx.ssrf
        .check_url(built.url().as_str())
        .await
        .map_err(|e| DownloadError::Refused(e.to_string()))?;
    let mut resp = ctx
        .guarded
        .execute(built)
        .await
        .map_err(|e| DownloadError::Network(crate::ai::http_error(e)))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(DownloadError::Status { status });
    }
    let body = download::read_capped(&mut resp, cap).await?;
    serde_json::from_slice(&body).map_err(|_| DownloadError::Refused("the provider's answer is not JSON".into()))
}

fn internal(e: impl std::fmt::Display) -> DownloadError {
    DownloadError::Network(format!("database: {e}"))
}
