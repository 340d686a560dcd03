//! Fair share: tenant A floods 10,000 messages while tenant B sends one synchronous
//! message per second; B's reply latency is reported next to the same with no flood, in
//! the same run (goal: B's p99 within 2× of the no-flood figure). The fake model takes
//! 200 ms and the workers hold 200 jobs per queue, so the flood is a real backlog.

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

pub async fn fairness(scope: &mut Scope, quick: bool) -> Section {
    let (flood, samples) = if quick { (2_000, 5) } else { (10_000, 15) };
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

    let alone = quiet_tenant(&http, &url, &b_key, &b_tenant, "alone", samples).await;
    let make = a.maker(|i| (format!("flood-{i}"), "oi".to_string()));
    let t = Instant::now();
    let (sent, flooded) = tokio::join!(
        a.send(64, Stop::Total(flood), make),
        quiet_tenant(&http, &url, &b_key, &b_tenant, "flood", samples)
    );
    let count = hooks.clone();
    let done = wait_until(Duration::from_secs(300), || count.count() >= flood).await;
    let drained = t.elapsed().as_secs_f64();
    running.shutdown().await;

    let (a50, a99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (f50, f99) = (percentile(&flooded, 0.5), percentile(&flooded, 0.99));
    let met = f99 <= 2.0 * a99;
    let mut notes = vec![format!(
        "tenant A: {flood} messages ({} accepted at {:.0} req/s, {} errors), answered by postback in {drained:.1} s; \
         tenant B: {samples} synchronous messages, one per second, alone and then during A's flood; \
         fake model 200 ms, 200 jobs per queue",
        sent.requests,
        sent.rate(),
        sent.errors
    )];
    if !done {
        notes.push("not every flood postback arrived within 300 s".into());
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
        ],
        notes,
    ))
}
