//! Fair share: tenant A floods 10,000 messages while tenant B sends one synchronous
//! message per second; B's reply latency is reported next to the same with no flood, in
//! the same run (goal: B's p99 within 2× of the no-flood figure). The fake model takes
//! 200 ms and the workers hold 200 jobs per queue, so the flood is a real backlog.
//!
//! Twice: once with no rate limit at all (A's 64 connections take every cycle the
//! machine has), and once with the flooding tenant at its own rate limit
//! (`rate_limit_per_sec`, [`LIMITED_RATE`]), its sender waiting out each 429's
//! `Retry-After` as a well-behaved one does, so all of its messages still arrive.

use std::time::{Duration, Instant};

use serde_json::json;

use super::load::Stop;
use super::sections::{Section, Sender};
use super::{fakes, percentile, wait_until, Row, Scope};
use leadflow::{start, Roles};

/// B's synchronous round trips, one per second, `n` of them (ms, sorted).
async fn quiet_tenant(http: &reqwest::Client, url: &str, key: &str, tenant: &str, tag: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let body = json!({"tenant_id": tenant, "lead_id": format!("b-{tag}-{i}"), "role": "user",
                          "content": "oi", "message_type": "text", "debounce": false});
        let ok = http
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            out.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

/// The flooding tenant's own rate limit in the second run (messages a second).
const LIMITED_RATE: i32 = 100;

/// One flood and what B saw meanwhile.
struct Flood {
    sent: super::load::LoadResult,
    /// B's round trips during it (ms, sorted).
    b: Vec<f64>,
    /// From the flood's first request until its last postback (or the patience ran out).
    drained_s: f64,
    done: bool,
}

/// `flooder` sends `n` debounced messages over 64 connections while B sends one a
/// second; then waits (up to `patience`) until the receiver holds `until` postbacks.
async fn flood(
    flooder: &Sender,
    tag: &'static str,
    n: usize,
    b: impl std::future::Future<Output = Vec<f64>>,
    hooks: &leadflow_testkit::receiver::Receiver,
    until: usize,
    patience: Duration,
) -> Flood {
    let make = flooder.maker(move |i| (format!("{tag}-{i}"), "oi".to_string()));
    let t = Instant::now();
    let (sent, b) = tokio::join!(flooder.send(64, Stop::Total(n), make), b);
    let done = wait_until(patience, || hooks.count() >= until).await;
    Flood {
        sent,
        b,
        drained_s: t.elapsed().as_secs_f64(),
        done,
    }
}

pub async fn fairness(scope: &mut Scope, quick: bool) -> Section {
    let (flood_size, samples) = if quick { (2_000, 5) } else { (10_000, 15) };
    let ai = fakes::fake_ai().await?;
    ai.set_latency(Duration::from_millis(200));
    let hooks = fakes::receiver().await?;
    scope.set("LEADFLOW_AI_BASE_URL", &ai.base_url);
    scope.set("LEADFLOW_WORKER_CONCURRENCY", "200");
    let cfg = scope.config()?;
    let running = start(cfg.clone(), Roles::all(&cfg)).await?;
    let a = Sender::new(scope, &running, &hooks.url, Some((0.1, 5.0))).await?;
    let b = scope.tenant(&running.pool).await?;
    let url = format!("http://{}/ai/process", running.http_addr.expect("the api role runs"));
    let http = reqwest::Client::new();
    let (b_key, b_tenant) = (b.api_key.clone(), b.tenant_id.to_string());

    let b_writes = |tag: &'static str| quiet_tenant(&http, &url, &b_key, &b_tenant, tag, samples);
    let alone = b_writes("alone").await;
    let n = flood_size;
    let free = flood(&a, "flood", n, b_writes("flood"), &hooks, n, Duration::from_secs(300)).await;
    // The same flood from a tenant held to its own rate.
    let c = Sender::new(scope, &running, &hooks.url, Some((0.1, 5.0))).await?;
    sqlx::query("UPDATE tenants SET rate_limit_per_sec = $1 WHERE id = $2::uuid")
        .bind(LIMITED_RATE)
        .bind(c.tenant_id())
        .execute(&running.pool)
        .await?;
    let held = flood(
        &c,
        "limited",
        n,
        b_writes("limited"),
        &hooks,
        2 * n,
        Duration::from_secs(600),
    )
    .await;
    running.shutdown().await;
    let (sent, flooded, drained, done) = (free.sent, free.b, free.drained_s, free.done);
    let (sent_limited, limited, drained_limited, done_limited) = (held.sent, held.b, held.drained_s, held.done);

    let (a50, a99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (f50, f99) = (percentile(&flooded, 0.5), percentile(&flooded, 0.99));
    let (l50, l99) = (percentile(&limited, 0.5), percentile(&limited, 0.99));
    let met = f99 <= 2.0 * a99;
    let met_limited = l99 <= 2.0 * a99;
    let mut notes = vec![format!(
        "tenant A: {n} messages ({} accepted at {:.0} req/s, {} errors), answered by postback in {drained:.1} s; \
         tenant B: {samples} synchronous messages, one per second, alone and then during A's flood; \
         fake model 200 ms, 200 jobs per queue",
        sent.requests,
        sent.rate(),
        sent.errors
    )];
    notes.push(format!(
        "second flood: another tenant with rate_limit_per_sec = {LIMITED_RATE}, its {n} messages ({} accepted, \
         {} errors; 429s waited out and resent) over {:.0} s, answered by postback {drained_limited:.1} s after \
         its first",
        sent_limited.requests, sent_limited.errors, sent_limited.seconds
    ));
    if !done {
        notes.push("not every flood postback arrived within 300 s".into());
    }
    if !done_limited {
        notes.push("not every rate-limited flood postback arrived within 600 s".into());
    }
    Ok((
        vec![
            Row::new(
                "B's reply latency, no flood",
                format!("p50 {a50:.0} ms, p99 {a99:.0} ms ({} replies)", alone.len()),
                "",
                None,
            ),
            Row::new(
                "B's reply latency, A flooding",
                format!("p50 {f50:.0} ms, p99 {f99:.0} ms ({} replies)", flooded.len()),
                "p99 ≤ 2× no flood",
                Some(met),
            ),
            Row::new(
                &format!("B's reply latency, a tenant flooding at its rate limit ({LIMITED_RATE}/s)"),
                format!("p50 {l50:.0} ms, p99 {l99:.0} ms ({} replies)", limited.len()),
                "p99 ≤ 2× no flood",
                Some(met_limited),
            ),
        ],
        notes,
    ))
}
