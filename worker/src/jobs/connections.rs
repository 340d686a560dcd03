//! The connection check: every active WhatsApp channel with a status endpoint is asked
//! whether its session is up, many at once (`LEADFLOW_HEALTH_CHECK_CONCURRENCY`). A change
//! of state is stored with its time and raises `channel.disconnected` or
//! `channel.reconnected`. A provider that cannot be reached is not yet a disconnection:
//! only `LEADFLOW_HEALTH_FAILURES_TO_DISCONNECT` failed checks in a row are. The providers'
//! own connection webhooks go through [`apply`] too; the check is the safety net.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use leadflow_providers::Credentials;
use leadflow_shared::channel::{Connection, Provider};
use leadflow_shared::db::channels;
use leadflow_shared::db::connections::{self, Checked, Observation, Transition};
use leadflow_shared::db::notifications::Event;
use serde_json::json;
use uuid::Uuid;

use crate::Ctx;
use leadflow_providers::Observed;

/// What one run did: (channels checked, state changes).
pub async fn run(ctx: &Ctx) -> anyhow::Result<(usize, usize)> {
    let list = connections::to_check(&ctx.pool, &leadflow_providers::checked()).await?;
    let n = list.len();
    let changes = futures::stream::iter(list)
        .map(|ch| async move { check_one(ctx, ch).await })
        .buffer_unordered(ctx.cfg.scheduler.health_check_concurrency)
        .filter(|changed| futures::future::ready(*changed))
        .count()
        .await;
    Ok((n, changes))
}

async fn check_one(ctx: &Ctx, ch: Checked) -> bool {
    let Some(provider) = Provider::parse(&ch.provider) else {
        return false;
    };
    let started = chrono::Utc::now();
    let opened = channels::open(&ctx.master_key, ch.id, &ch.credentials_enc)
        .map_err(|e| e.to_string())
        .and_then(|map| Credentials::parse(provider, &map).map_err(|e| e.to_string()));
    let observed = match opened {
        Err(e) => Err(e),
        Ok(creds) => match crate::jobs::send::refused_address(ctx, &creds).await {
            Some(why) => Err(why),
            None => leadflow_providers::check(&ctx.guarded, &creds)
                .await
                .map_err(|e| e.to_string()),
        },
    };
    let result = match observed {
        Ok(Observed::Connected) => apply(ctx, ch.id, &ch.provider, seen(Connection::Connected, None, started)).await,
        Ok(Observed::Disconnected(why)) => disconnected(ctx, &ch, &why, started).await,
        Ok(Observed::Unsettled(why)) => {
            tracing::debug!(channel_id = %ch.id, why, "connection unsettled; no change");
            Ok(false)
        }
        Err(e) => unreachable_check(ctx, &ch, &e, started).await,
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(channel_id = %ch.id, error = %e, "connection check not recorded");
        false
    })
}

/// A check's observation.
fn seen(status: Connection, reason: Option<&str>, at: DateTime<Utc>) -> Observation<'_> {
    Observation {
        status,
        source: "check",
        reason,
        at,
    }
}

async fn unreachable_check(ctx: &Ctx, ch: &Checked, error: &str, started: DateTime<Utc>) -> anyhow::Result<bool> {
    let failures = connections::check_failed(&ctx.pool, ch.id, error).await?;
    tracing::info!(channel_id = %ch.id, failures, error, "connection check failed");
    if failures < ctx.cfg.scheduler.health_failures_to_disconnect {
        return Ok(false);
    }
    let why = format!("the provider's status endpoint failed {failures} checks in a row: {error}");
    disconnected(ctx, ch, &why, started).await
}

/// The check saw `ch` disconnected (or could not reach its provider often enough).
async fn disconnected(ctx: &Ctx, ch: &Checked, why: &str, at: DateTime<Utc>) -> anyhow::Result<bool> {
    apply(ctx, ch.id, &ch.provider, seen(Connection::Disconnected, Some(why), at)).await
}

/// Records an observed state of a channel and notifies on a change; `true` when it changed.
pub async fn apply(ctx: &Ctx, channel_id: Uuid, provider: &str, o: Observation<'_>) -> anyhow::Result<bool> {
    let (source, reason) = (o.source, o.reason);
    let Some(t) = connections::observe(&ctx.pool, channel_id, o).await? else {
        return Ok(false);
    };
    let (previous, status) = (t.previous.as_str(), t.status.as_str());
    if t.previous == Connection::Unknown {
        tracing::info!(channel_id = %t.channel_id, status, source, reason, "channel connection first seen");
    } else {
        tracing::warn!(channel_id = %t.channel_id, previous, status, source, reason, "channel connection changed");
    }
    notify(ctx, provider, &t, source, reason).await;
    Ok(true)
}

async fn notify(ctx: &Ctx, provider: &str, t: &Transition, source: &str, reason: Option<&str>) {
    let event = match (t.previous, t.status) {
        (_, Connection::Disconnected) => Event::ChannelDisconnected,
        (Connection::Disconnected, Connection::Connected) => Event::ChannelReconnected,
        // unknown → connected is the first look at a healthy channel, not news.
        _ => return,
    };
    let data = json!({
        "channel_id": t.channel_id,
        "channel_name": t.channel_name,
        "provider": provider,
        "previous": t.previous,
        "status": t.status,
        "reason": reason,
        "source": source,
        "changed_at": t.at,
    });
    crate::notify::raise(ctx, t.tenant_id, event, &t.channel_id.to_string(), data).await;
}
