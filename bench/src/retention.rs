//! Retention at scale: a million messages past `LEADFLOW_RETENTION_MESSAGES` (a tenth with
//! media rows holding bytes) are purged by housekeeping's batches while a hot-path probe
//! writes and reads the same table: one message insert plus the lead's latest 20 messages
//! (what an accept and a prompt build do), back to back. The probe's latency is measured
//! first without a purge, then during it; a purge that blocked the hot path would show as
//! a p99 of seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_shared::db::housekeeping::{self, Expiring};

use super::sections::Section;
use super::{percentile, Row, Scope};

const BATCH: i64 = 1000;
const RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Probe latencies in ms, sorted, until `stop` (or `for_at_most`).
async fn probe(
    pool: sqlx::PgPool,
    tenant: uuid::Uuid,
    lead: uuid::Uuid,
    stop: Arc<AtomicBool>,
    for_at_most: Duration,
) -> anyhow::Result<Vec<f64>> {
    let started = Instant::now();
    let mut ms = Vec::new();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < for_at_most {
        let t = Instant::now();
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type) VALUES ($1, $2, $3, 'user', 'probe', 'text')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(tenant)
        .bind(lead)
        .execute(&pool)
        .await?;
        let _: Vec<(uuid::Uuid,)> =
            sqlx::query_as("SELECT id FROM messages WHERE lead_id = $1 ORDER BY seq DESC LIMIT 20")
                .bind(lead)
                .fetch_all(&pool)
                .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

pub async fn retention(scope: &mut Scope, quick: bool) -> Section {
    let old: i64 = if quick { 100_000 } else { 1_000_000 };
    let cfg = scope.config()?;
    let pool = leadflow_shared::db::connect_and_migrate(&cfg).await?;
    let tenant = scope.tenant(&pool).await?.tenant_id;
    // 1,000 leads; `old` messages 60 days old spread over them, every tenth with a media
    // row holding 512 bytes; and one recent lead the probe works on.
    let filled = Instant::now();
    sqlx::query(
        "INSERT INTO leads (id, tenant_id, external_id)
         SELECT gen_random_uuid(), $1, 'lead-' || i FROM generate_series(1, 1000) i",
    )
    .bind(tenant)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, lead_id, role, content, message_type, created_at)
         SELECT gen_random_uuid(), $1, l.ids[1 + i % 1000], 'user', 'an old message number ' || i,
                CASE WHEN i % 10 = 0 THEN 'image' ELSE 'text' END,
                now() - interval '60 days' + i * interval '1 millisecond'
         FROM generate_series(1, $2) i, (SELECT array_agg(id) AS ids FROM leads) l",
    )
    .bind(tenant)
    .bind(old)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO media (message_id, tenant_id, kind, status, data, created_at)
         SELECT id, tenant_id, 'image', 'done', decode(repeat('ab', 512), 'hex'), created_at
         FROM messages WHERE message_type = 'image'",
    )
    .execute(&pool)
    .await?;
    let lead: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO leads (id, tenant_id, external_id) VALUES (gen_random_uuid(), $1, 'lead-hot') RETURNING id",
    )
    .bind(tenant)
    .fetch_one(&pool)
    .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    let fill_secs = filled.elapsed().as_secs_f64();

    let window = if quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let never = Arc::new(AtomicBool::new(false));
    let alone = probe(pool.clone(), tenant, lead, never, window).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(probe(
        pool.clone(),
        tenant,
        lead,
        stop.clone(),
        Duration::from_secs(3600),
    ));
    let purge = Instant::now();
    let mut batches = Vec::new();
    let mut removed = 0u64;
    loop {
        let t = Instant::now();
        let n = housekeeping::expire(&pool, Expiring::Messages, RETENTION.as_secs_f64(), BATCH).await?;
        batches.push(t.elapsed().as_secs_f64() * 1000.0);
        removed += n;
        if n == 0 {
            break;
        }
    }
    let purge_secs = purge.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let during = during.await??;
    batches.sort_by(f64::total_cmp);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE created_at < now() - interval '30 days'")
        .fetch_one(&pool)
        .await?;
    let media_left: i64 = sqlx::query_scalar("SELECT count(*) FROM media")
        .fetch_one(&pool)
        .await?;
    pool.close().await;

    let (a50, a99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (d50, d99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    let rows = vec![
        Row::new(
            "old messages purged (with their media rows)",
            format!("{removed} rows in {purge_secs:.1} s ({:.0} rows/s); {left} old messages and {media_left} media rows left", removed as f64 / purge_secs),
            "all of them",
            Some(left == 0 && media_left == 0),
        ),
        Row::new(
            "one purge batch (1,000 messages), p50 / p99 / max",
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                percentile(&batches, 0.5),
                percentile(&batches, 0.99),
                batches.last().copied().unwrap_or(f64::NAN)
            ),
            "short statements (< 1 s)",
            Some(batches.last().is_some_and(|m| *m < 1000.0)),
        ),
        Row::new(
            "hot-path probe without a purge, p50 / p99",
            format!("{a50:.1} / {a99:.1} ms ({} probes)", alone.len()),
            "",
            None,
        ),
        Row::new(
            "hot-path probe during the purge, p50 / p99",
            format!("{d50:.1} / {d99:.1} ms ({} probes)", during.len()),
            "not blocked: p99 < 100 ms",
            Some(d99 < 100.0),
        ),
    ];
    let notes = vec![format!(
        "{old} messages 60 days old over 1,000 leads (every tenth with a 512-byte media row) filled in {fill_secs:.0} s; \
         purged with LEADFLOW_RETENTION_MESSAGES=30d by housekeeping's statement, in batches of {BATCH} back to back \
         (housekeeping itself runs at most 20 batches per table per run, so a real backlog is spread over several runs). \
         The probe is one message insert plus the lead's latest 20 messages, back to back on one connection."
    )];
    Ok((rows, notes))
}
