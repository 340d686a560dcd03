//! Where a medium's bytes come from. Most providers give a downloadable URL; some give a
//! handle that must be resolved through the provider's API with the channel's
//! credentials first. The inbound worker turns those handles into internal URLs that
//! name the channel, and this module resolves them when the media job runs:
//!
//! - `telegram-file:<channel>:<file_id>`: Bot API `getFile`, then
//!   `{base}/file/bot<token>/<file_path>`;
//! - `meta-media:<channel>:<media_id>`: Graph `GET /{version}/{media_id}` for a
//!   short-lived URL, downloaded with the same bearer token;
//! - `evolution-media:<channel>:<key_id>`: Evolution's `getBase64FromMediaMessage` (its
//!   webhook URLs point at WhatsApp's encrypted CDN);
//! - `leadflow-attachment:<id>`: an e-mail attachment stored with its message;
//! - anything else is an ordinary URL.
//!
//! Every request still goes through the SSRF policy.

use std::str::FromStr;

use leadflow_shared::channel::Provider;
use leadflow_shared::db::{channels, mailboxes};
use leadflow_shared::mail::ATTACHMENT_SCHEME;
use uuid::Uuid;

use super::download::{self, DownloadError, Downloaded};
use crate::Ctx;

const TELEGRAM: &str = "telegram-file:";
const META: &str = "meta-media:";
const EVOLUTION: &str = "evolution-media:";

/// The internal URL for a provider's media handle, or `None` when the provider's handles
/// cannot be resolved (the message then says so in the prompt).
pub fn handle_url(provider: Provider, channel_id: Uuid, file_ref: &str) -> Option<String> {
    match provider {
        Provider::TelegramBot => Some(format!("{TELEGRAM}{}:{file_ref}", channel_id.simple())),
        Provider::MetaCloud => Some(format!("{META}{}:{file_ref}", channel_id.simple())),
        Provider::Evolution => Some(format!("{EVOLUTION}{}:{file_ref}", channel_id.simple())),
        _ => None,
    }
}

fn split(rest: &str) -> Result<(Uuid, &str), DownloadError> {
    rest.split_once(':')
        .and_then(|(c, r)| Uuid::from_str(c).ok().map(|c| (c, r)))
        .ok_or_else(|| DownloadError::Refused("malformed media handle".into()))
}

pub async fn fetch(ctx: &Ctx, url: &str, limit: u64) -> Result<Downloaded, DownloadError> {
    if let Some(id) = url.strip_prefix(ATTACHMENT_SCHEME) {
        let id = Uuid::from_str(id).map_err(|_| DownloadError::Refused("malformed attachment id".into()))?;
        let file = mailboxes::attachment(&ctx.pool, id, limit)
            .await
            .map_err(internal)?
            .ok_or(DownloadError::Status { status: 404 })?;
        let bytes = file.data.ok_or(DownloadError::TooLarge { limit })?;
        return Ok(Downloaded {
            bytes,
            content_type: file.mime,
            file_name: file.file_name,
        });
    }
    if let Some(rest) = url.strip_prefix(TELEGRAM) {
        let (channel, file_id) = split(rest)?;
        let creds = credentials(ctx, channel).await?;
        let base = creds.get("base_url").map_or("https://api.telegram.org", String::as_str);
        let base = base.trim_end_matches('/');
        let token = creds.get("bot_token").map_or("", String::as_str);
        let answer = api(
            ctx,
            ctx.guarded
                .get(format!("{base}/bot{token}/getFile"))
                .query(&[("file_id", file_id)]),
        )
        .await?;
        let path = answer
            .pointer("/result/file_path")
            .and_then(|v| v.as_str())
            .ok_or_else(|| DownloadError::Refused(format!("Telegram getFile gave no file_path: {answer}")))?;
        let mut file = download::fetch(
            &ctx.media_http,
            &ctx.ssrf,
            &format!("{base}/file/bot{token}/{path}"),
            limit,
        )
        .await?;
        file.file_name = path.rsplit('/').next().map(str::to_string);
        return Ok(file);
    }
    if let Some(rest) = url.strip_prefix(META) {
        let (channel, media_id) = split(rest)?;
        let creds = credentials(ctx, channel).await?;
        let base = creds
            .get("base_url")
            .map_or("https://graph.facebook.com", String::as_str);
        let version = creds.get("api_version").map_or("v23.0", String::as_str);
        let token = creds.get("access_token").map_or("", String::as_str);
        let req = ctx
            .guarded
            .get(format!("{}/{version}/{media_id}", base.trim_end_matches('/')))
            .bearer_auth(token);
        let answer = api(ctx, req).await?;
        if answer["file_size"].as_u64().is_some_and(|n| n > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let media_url = answer["url"]
            .as_str()
            .ok_or_else(|| DownloadError::Refused(format!("Meta gave no media url: {answer}")))?;
        let mut file = download::fetch_with(&ctx.media_http, &ctx.ssrf, media_url, limit, Some(token)).await?;
        file.content_type = file
            .content_type
            .or_else(|| answer["mime_type"].as_str().map(str::to_string));
        return Ok(file);
    }
    if let Some(rest) = url.strip_prefix(EVOLUTION) {
        let (channel, key_id) = split(rest)?;
        let creds = credentials(ctx, channel).await?;
        let base = creds.get("base_url").map_or("", String::as_str).trim_end_matches('/');
        let instance = creds.get("instance").map_or("", String::as_str);
        let req = ctx
            .guarded
            .post(format!("{base}/chat/getBase64FromMediaMessage/{instance}"))
            .header("apikey", creds.get("api_key").map_or("", String::as_str))
            .json(&serde_json::json!({"message": {"key": {"id": key_id}}, "convertToMp4": false}));
        let answer = api(ctx, req).await?;
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
            .map_err(|e| DownloadError::Refused(format!("Evolution's base64 is invalid: {e}")))?;
        return Ok(Downloaded {
            bytes,
            content_type: answer["mimetype"].as_str().map(str::to_string),
            file_name: answer["fileName"].as_str().map(str::to_string),
        });
    }
    download::fetch(&ctx.media_http, &ctx.ssrf, url, limit).await
}

async fn credentials(ctx: &Ctx, channel: Uuid) -> Result<channels::Credentials, DownloadError> {
    channels::credentials(&ctx.pool, &ctx.master_key, channel)
        .await
        .map_err(internal)
}

/// A provider API call answering JSON, sorted like a download (5xx/429 retried).
async fn api(ctx: &Ctx, req: reqwest::RequestBuilder) -> Result<serde_json::Value, DownloadError> {
    let built = req
        .build()
        .map_err(|e| DownloadError::Refused(crate::ai::http_error(e)))?;
    ctx.ssrf
        .check_url(built.url().as_str())
        .await
        .map_err(|e| DownloadError::Refused(e.to_string()))?;
    let resp = ctx
        .guarded
        .execute(built)
        .await
        .map_err(|e| DownloadError::Network(crate::ai::http_error(e)))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(DownloadError::Status { status });
    }
    resp.json()
        .await
        .map_err(|e| DownloadError::Network(crate::ai::error_chain(&e)))
}

fn internal(e: impl std::fmt::Display) -> DownloadError {
    DownloadError::Network(format!("database: {e}"))
}
