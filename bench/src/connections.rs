//! Connection checks at scale: 1,000 Z-API channels, each status call held 100 ms by a
//! fake provider, checked by one scheduled run with the default bound on checks in flight.
//! Measures one run from start to finish (from `scheduler_runs`), the calls in flight at
//! once at the fake, and that every channel was seen.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use leadflow_shared::db::channels::{self, ChannelFields, Credentials};
use leadflow_shared::queue::QueueKind;
use serde_json::json;

use super::sections::Section;
use super::{Row, Scope};
use leadflow::{start, Roles};

const HOLD: Duration = Duration::from_millis(100);

/// A Z-API status endpoint that answers "connected" after [`HOLD`]; counts calls and the
/// most in flight at once.
async fn slow_status() -> anyhow::Result<(String, Arc<AtomicUsize>, Arc<AtomicUsize>)> {
    let (calls, now, peak) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (c, n, p) = (calls.clone(), now.clone(), peak.clone());
    let app = Router::new().fallback(move || {
        let (c, n, p) = (c.clone(), n.clone(), p.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let in_flight = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(in_flight, Ordering::SeqCst);
            tokio::time::sleep(HOLD).await;
            n.fetch_sub(1, Ordering::SeqCst);
            axum::Json(json!({"connected": true, "error": "You are already connected.", "smartphoneConnected": true}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, calls, peak))
}

pub async fn connections(scope: &mut Scope, quick: bool) -> Section {
    let n: usize = if quick { 200 } else { 1000 };
    let (url, calls, peak) = slow_status().await?;
    // The first run starts with the scheduler, so the channels exist before it does.
    scope.set("LEADFLOW_HEALTH_CHECK_INTERVAL", "1h");
    let setup = start(
        scope.config()?,
        Roles {
            api: false,
            worker: None,
            scheduler: false,
        },
    )
    .await?;
    let tenant = scope.tenant(&setup.pool).await?;
    let key = scope.config()?.master_key.expect("scope sets a master key");
    for i in 0..n {
        let credentials: Credentials =
            serde_json::from_value(json!({"base_url": url, "instance_id": format!("I{i}"), "instance_token": "T"}))?;
        let f = ChannelFields {
            name: format!("WhatsApp {i}"),
            channel_type: "whatsapp".into(),
            provider: "z-api".into(),
            credentials,
            assistant_id: None,
            department_id: None,
            status: "active".into(),
        };
        channels::insert(&setup.pool, &key, tenant.tenant_id, &f).await?;
    }
    setup.shutdown().await;
    let running = start(
        scope.config()?,
        Roles {
            api: false,
            worker: Some((vec![QueueKind::Scheduled], 16)),
            scheduler: true,
        },
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut done = false;
    while !done && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let finished: Option<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM scheduler_runs WHERE task = 'connections' AND finished_at IS NOT NULL",
        )
        .fetch_optional(&running.pool)
        .await?;
        done = finished.unwrap_or(0) > 0;
    }
    let secs: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM scheduler_runs WHERE task = 'connections'",
    )
    .fetch_one(&running.pool)
    .await?;
    let connected: i64 = sqlx::query_scalar("SELECT count(*) FROM channels WHERE connection = 'connected'")
        .fetch_one(&running.pool)
        .await?;
    running.shutdown().await;
    anyhow::ensure!(done, "the connection check did not finish");
    let concurrency = scope.config()?.scheduler.health_check_concurrency;
    Ok((
        vec![
            Row::new(
                &format!("one check of {n} WhatsApp channels"),
                format!("{secs:.1} s ({connected} of {n} now connected)"),
                "seconds, not minutes",
                Some(secs < 60.0 && connected == n as i64),
            ),
            Row::new(
                "status calls in flight at once (at the fake provider)",
                format!(
                    "{} (bound: LEADFLOW_HEALTH_CHECK_CONCURRENCY = {concurrency})",
                    peak.load(Ordering::SeqCst)
                ),
                "",
                None,
            ),
            Row::new("status calls made", calls.load(Ordering::SeqCst).to_string(), "", None),
        ],
        vec![format!(
            "{n} Z-API channels created before the scheduler starts; the fake status endpoint holds each call {} ms, \
             so checking them one at a time would take {:.0} s; the run is timed from its scheduler_runs row (start to \
             finish, including storing each channel's state)",
            HOLD.as_millis(),
            n as f64 * HOLD.as_secs_f64()
        )],
    ))
}
