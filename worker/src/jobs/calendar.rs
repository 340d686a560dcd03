//! The `calendar` queue: Google Calendar push channels. Google has no renew call, so a
//! channel near its expiry is replaced: a successor row is created (at most one in flight,
//! reused by a re-run), Google creates it (`events.watch`), it becomes active, and only
//! then is the old one stopped (`channels.stop`; 404 is fine). A renewal that fails is a
//! new delayed job with a growing backoff and raises `calendar.renewal_failed`, well before
//! the old channel lapses (the margin defaults to 24 h). Pushes enqueue a sync: the
//! calendar's changes since its sync token (410 → a full sync), stored as events.

use std::sync::Arc;
use std::time::Duration;

use leadflow_shared::db::calendars::{self, CalendarChannel, CalendarStatus};
use leadflow_shared::db::integrations::{self, IntegrationStatus};
use leadflow_shared::google::{self, GoogleError, Watched};
use leadflow_shared::queue::{CalendarJob, CalendarStep};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::google_tokens::access_token;
use crate::Ctx;

/// Watch and stop attempts before giving up on a channel.
const MAX_ATTEMPTS: i64 = 6;
/// Pages of changes read in one sync (250 events each).
const MAX_PAGES: usize = 200;

/// 2 s, 8 s, 32 s, … up to an hour.
fn backoff(attempt: i64) -> Duration {
    let exp = attempt.clamp(1, 8) as u32 - 1;
    Duration::from_secs(2u64.saturating_mul(4u64.pow(exp))).min(Duration::from_secs(3600))
}

pub async fn handle(ctx: Arc<Ctx>, job: CalendarJob) -> anyhow::Result<()> {
    let Some(ch) = calendars::get(&ctx.pool, job.channel_id).await? else {
        return Ok(());
    };
    leadflow_shared::metrics::tenant(ch.tenant_id);
    match job.step {
        CalendarStep::Watch => watch(&ctx, &ch, job.n).await,
        CalendarStep::Renew => renew(&ctx, &ch, job.n).await,
        CalendarStep::Stop => stop(&ctx, &ch, job.n).await,
        CalendarStep::Sync => sync(&ctx, &ch).await,
    }
}

async fn enqueue(ctx: &Ctx, step: CalendarStep, channel_id: uuid::Uuid, n: i64, delay: Duration) -> anyhow::Result<()> {
    let job = CalendarJob {
        step,
        channel_id,
        n,
        resumed: None,
    };
    ctx.queues.enqueue(&job, delay).await?;
    Ok(())
}

/// A step whose job was lost starts again at attempt 1.
async fn resume(ctx: &Ctx, step: CalendarStep, channel_id: uuid::Uuid) -> anyhow::Result<()> {
    let job = CalendarJob {
        step,
        channel_id,
        n: 1,
        resumed: Some(crate::jobs::now_ms()),
    };
    ctx.queues.enqueue(&job, Duration::ZERO).await?;
    Ok(())
}

/// The scheduler's tick: renewals that are due, and stops and watches whose job was lost.
pub async fn tick(ctx: &Ctx) -> anyhow::Result<String> {
    let margin = ctx.cfg.google.renew_margin.as_secs_f64();
    let due = calendars::due_for_renewal(&ctx.pool, margin, 500).await?;
    for (id, attempt) in &due {
        enqueue(ctx, CalendarStep::Renew, *id, i64::from(*attempt), Duration::ZERO).await?;
    }
    let stopping = calendars::stopping(&ctx.pool, 500).await?;
    for id in &stopping {
        resume(ctx, CalendarStep::Stop, *id).await?;
    }
    let pending = calendars::stale_pending(&ctx.pool, 500).await?;
    for id in &pending {
        resume(ctx, CalendarStep::Watch, *id).await?;
    }
    Ok(format!(
        "{} renewals due, {} stops and {} watches resumed",
        due.len(),
        stopping.len(),
        pending.len()
    ))
}

fn address(ctx: &Ctx) -> Result<String, GoogleError> {
    match &ctx.cfg.channels.public_url {
        Some(origin) => Ok(format!("{origin}/webhooks/google/calendar")),
        None => Err(GoogleError::Http {
            status: 0,
            body: "LEADFLOW_PUBLIC_URL is not set: Google needs an address to push to".into(),
        }),
    }
}

/// Creates `ch` at Google.
async fn create(ctx: &Ctx, ch: &CalendarChannel) -> Result<Watched, GoogleError> {
    let address = address(ctx)?;
    let token = access_token(ctx, ch.integration_id, false).await?;
    let push_token = ch
        .push_token(&ctx.master_key)
        .map_err(|e| GoogleError::Network(format!("the channel's push token: {e}")))?;
    google::watch(
        &ctx.guarded,
        &ctx.cfg.google,
        token.expose_secret(),
        &ch.calendar_id,
        &ch.id.to_string(),
        &address,
        push_token.expose_secret(),
    )
    .await
}

/// A new channel (`POST …/watch`).
async fn watch(ctx: &Ctx, ch: &CalendarChannel, n: i64) -> anyhow::Result<()> {
    if ch.status != CalendarStatus::Pending {
        return Ok(());
    }
    match create(ctx, ch).await {
        Ok(w) => {
            calendars::activated(&ctx.pool, ch.id, &w.resource_id, w.expiration).await?;
            tracing::info!(channel_id = %ch.id, expiration = ?w.expiration, "calendar push channel created");
        }
        Err(e) if e.retryable() && n < MAX_ATTEMPTS => {
            tracing::warn!(channel_id = %ch.id, error = %e, "events.watch failed; retrying");
            calendars::set_status(&ctx.pool, ch.id, CalendarStatus::Pending, Some(&e.to_string())).await?;
            enqueue(ctx, CalendarStep::Watch, ch.id, n + 1, backoff(n)).await?;
        }
        Err(e) => {
            tracing::warn!(channel_id = %ch.id, error = %e, "events.watch failed for good");
            calendars::set_status(&ctx.pool, ch.id, CalendarStatus::Failed, Some(&e.to_string())).await?;
        }
    }
    Ok(())
}

/// Tells the tenant a renewal of `old` failed (`calendar.renewal_failed`, about the channel).
async fn renewal_failed(ctx: &Ctx, old: &CalendarChannel, data: serde_json::Value) {
    use leadflow_shared::db::notifications::Event;
    crate::notify::raise(
        ctx,
        old.tenant_id,
        Event::CalendarRenewalFailed,
        &old.id.to_string(),
        data,
    )
    .await;
}

/// Replaces `old` by a successor, then stops `old`.
async fn renew(ctx: &Ctx, old: &CalendarChannel, n: i64) -> anyhow::Result<()> {
    if old.status != CalendarStatus::Active || old.replaced_by.is_some() {
        return Ok(()); // renewed already (a re-run), or no longer live
    }
    if old.expiration.is_some_and(|at| at <= chrono::Utc::now()) {
        // Too late: Google has dropped it. Say so once and stop trying.
        let why = format!(
            "expired before it could be renewed ({})",
            old.last_error.as_deref().unwrap_or("no attempt succeeded")
        );
        calendars::set_status(&ctx.pool, old.id, CalendarStatus::Failed, Some(&why)).await?;
        let data = json!({"channel_id": old.id, "calendar_id": old.calendar_id, "expiration": old.expiration,
                          "attempts": old.renew_attempts, "error": why, "final": true});
        renewal_failed(ctx, old, data).await;
        return Ok(());
    }
    let next = calendars::create_pending(
        &ctx.pool,
        &ctx.master_key,
        old.tenant_id,
        old.integration_id,
        &old.calendar_id,
        Some(old.id),
    )
    .await?;
    let result = if next.status == CalendarStatus::Active {
        Ok(()) // created by an earlier run that stopped before moving on
    } else {
        match create(ctx, &next).await {
            Ok(w) => calendars::activated(&ctx.pool, next.id, &w.resource_id, w.expiration)
                .await
                .map(drop)
                .map_err(|e| GoogleError::Network(e.to_string())),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(old = %old.id, new = %next.id, "calendar push channel renewed");
            enqueue(ctx, CalendarStep::Stop, old.id, 1, Duration::ZERO).await
        }
        Err(GoogleError::InvalidGrant(_)) => {
            // access_token has moved the integration to needs_reauth and told the tenant.
            calendars::set_status(
                &ctx.pool,
                next.id,
                CalendarStatus::Failed,
                Some("the Google grant was revoked"),
            )
            .await?;
            Ok(())
        }
        Err(e) => {
            if !e.retryable() {
                // Google refused this successor: the next attempt makes a new one.
                calendars::set_status(&ctx.pool, next.id, CalendarStatus::Failed, Some(&e.to_string())).await?;
            }
            let delay = backoff(n);
            let at = chrono::Utc::now() + chrono::Duration::from_std(delay)?;
            let attempts = calendars::renewal_failed(&ctx.pool, old.id, &e.to_string(), at).await?;
            tracing::warn!(channel_id = %old.id, attempts, ?delay, error = %e, "calendar renewal failed; retrying");
            enqueue(ctx, CalendarStep::Renew, old.id, n + 1, delay).await?;
            let data = json!({"channel_id": old.id, "calendar_id": old.calendar_id, "expiration": old.expiration,
                              "attempts": attempts, "error": e.to_string(), "next_attempt_at": at});
            renewal_failed(ctx, old, data).await;
            Ok(())
        }
    }
}

async fn stop(ctx: &Ctx, ch: &CalendarChannel, n: i64) -> anyhow::Result<()> {
    if ch.status != CalendarStatus::Stopping {
        return Ok(());
    }
    let result = match (&ch.resource_id, access_token(ctx, ch.integration_id, true).await) {
        (None, _) => Ok(()), // Google never created it
        (Some(_), Err(e)) => Err(e),
        (Some(resource), Ok(token)) => {
            let id = ch.id.to_string();
            google::stop(&ctx.guarded, &ctx.cfg.google, token.expose_secret(), &id, resource).await
        }
    };
    match result {
        Err(e) if e.retryable() && n < MAX_ATTEMPTS => {
            tracing::warn!(channel_id = %ch.id, error = %e, "channels.stop failed; retrying");
            let at = chrono::Utc::now() + chrono::Duration::from_std(backoff(n))?;
            calendars::retry_at(&ctx.pool, ch.id, &e.to_string(), at).await?;
            return enqueue(ctx, CalendarStep::Stop, ch.id, n + 1, backoff(n)).await;
        }
        // Without a grant (or after the last attempt) it is left to expire on its own;
        // its pushes are ignored from now on.
        Err(e) => calendars::set_status(&ctx.pool, ch.id, CalendarStatus::Stopped, Some(&e.to_string())).await?,
        Ok(()) => calendars::set_status(&ctx.pool, ch.id, CalendarStatus::Stopped, None).await?,
    }
    let revoked = integrations::get(&ctx.pool, ch.integration_id)
        .await?
        .is_some_and(|i| i.status == IntegrationStatus::Revoked);
    if revoked && !calendars::any_stopping(&ctx.pool, ch.integration_id).await? {
        integrations::wipe(&ctx.pool, ch.integration_id).await?;
    }
    Ok(())
}

/// Lists the calendar's changes since its sync token and stores them, one sync per
/// calendar at a time (pushes of the old and new channel overlap during a renewal). An
/// error, or a sync already running, is left to the queue's own retries.
async fn sync(ctx: &Ctx, ch: &CalendarChannel) -> anyhow::Result<()> {
    if !ch.status.is_live() {
        return Ok(());
    }
    let lock = format!(
        "{}:calsync:{}:{}",
        leadflow_shared::queue::state_prefix(&ctx.cfg.queue_prefix),
        ch.integration_id.simple(),
        ch.calendar_id
    );
    let mut redis = ctx.redis.clone();
    let taken: Option<String> = redis::cmd("SET")
        .arg(&lock)
        .arg(ch.id.to_string())
        .arg("NX")
        .arg("PX")
        .arg(300_000)
        .query_async(&mut redis)
        .await?;
    anyhow::ensure!(taken.is_some(), "another sync of this calendar is running");
    let result = sync_locked(ctx, ch).await;
    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&lock).query_async(&mut redis).await;
    result
}

async fn sync_locked(ctx: &Ctx, ch: &CalendarChannel) -> anyhow::Result<()> {
    let token = match access_token(ctx, ch.integration_id, false).await {
        Ok(t) => t,
        Err(GoogleError::InvalidGrant(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut since = calendars::sync_token(&ctx.pool, ch.integration_id, &ch.calendar_id).await?;
    'full: loop {
        let full = since.is_none();
        let (mut events, mut page) = (Vec::new(), None::<String>);
        for _ in 0..MAX_PAGES {
            let listed = google::list_events(
                &ctx.guarded,
                &ctx.cfg.google,
                token.expose_secret(),
                &ch.calendar_id,
                since.as_deref(),
                page.as_deref(),
            )
            .await;
            let p = match listed {
                Err(GoogleError::Gone) if since.is_some() => {
                    tracing::info!(channel_id = %ch.id, "sync token expired; full sync");
                    since = None;
                    continue 'full;
                }
                other => other?,
            };
            events.extend(p.items);
            if let Some(next) = p.next_sync_token {
                calendars::store_sync(
                    &ctx.pool,
                    ch.integration_id,
                    &ch.calendar_id,
                    &events,
                    Some(&next),
                    full,
                )
                .await?;
                tracing::info!(channel_id = %ch.id, events = events.len(), full, "calendar synced");
                return Ok(());
            }
            match p.next_page_token {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        // No sync token at the end (or too many pages): keep what was read, sync fully next time.
        calendars::store_sync(&ctx.pool, ch.integration_id, &ch.calendar_id, &events, None, full).await?;
        return Ok(());
    }
}
