//! Where a medium's bytes come from. Most providers give a downloadable URL; some give a
//! handle ([`MediaHandle`]: a Telegram `file_id`, a Meta media id, an Evolution message
//! key, an e-mail attachment) that the provider's own module resolves with the channel's
//! credentials (`leadflow_providers::<provider>`, `Channel::fetch_media`).
//!
//! A handle is resolved only with the channel of the message's own burst, in the
//! message's tenant, while that channel is live and of the handle's provider: the
//! credentials spent are always the ones of the channel the lead wrote to. A URL must be
//! `http`/`https` and goes through the SSRF policy, like every request here. Errors say
//! what went wrong in a few fixed words and the HTTP status, never the provider's answer
//! (it may carry another service's data back to the tenant).

use leadflow_providers::Credentials;
use leadflow_providers::{download, DownloadError, Downloaded, MediaFetch};
use leadflow_shared::channel::Provider;
use leadflow_shared::db::media::Claim;
use leadflow_shared::db::{channels, inbound};
use leadflow_shared::media_handle::{is_fetchable_url, NOT_ALLOWED};
use uuid::Uuid;

use crate::Ctx;

pub async fn fetch(ctx: &Ctx, claim: &Claim, limit: u64) -> Result<Downloaded, DownloadError> {
    let Some(handle) = claim.media_handle.as_deref() else {
        return match claim.url.as_deref() {
            Some(url) if is_fetchable_url(url) => download::fetch(&ctx.media_http, &ctx.ssrf, url, limit).await,
            _ => Err(DownloadError::Refused(NOT_ALLOWED.into())),
        };
    };
    let Some(channel_id) = claim.channel_id else {
        return Err(DownloadError::Refused(NOT_ALLOWED.into()));
    };
    let creds = credentials(ctx, claim.tenant_id, channel_id, handle.provider()).await?;
    let media = MediaFetch {
        api: &ctx.guarded,
        files: &ctx.media_http,
        ssrf: &ctx.ssrf,
        pool: &ctx.pool,
        tenant_id: claim.tenant_id,
        channel_id,
    };
    leadflow_providers::fetch_media(&media, &creds, handle, limit).await
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

fn internal(e: impl std::fmt::Display) -> DownloadError {
    DownloadError::Network(format!("database: {e}"))
}
