//! What Prometheus metrics cost: `/ai/process` ingest and the whole pipeline measured with
//! `LEADFLOW_METRICS=false` and `true`, alternating (off, on, off, on) in one run so that
//! neither side always gets the warmer machine. The recorder is process-wide, so each
//! measurement runs Leadflow as its own child process (`leadflow api`, `leadflow all`),
//! each on a fresh database.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::load::{self, Stop};
use super::sections::{warm_then_measure, Section, Sender};
use super::{fakes, wait_until, Row, Scope};

/// A port nothing listens on now.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Leadflow as a child: `role` (`api` or `all`) with `scope`'s settings and metrics on or
/// off; returns once `/readyz` answers 200.
async fn spawn(scope: &Scope, role: &str, metrics: bool) -> anyhow::Result<(Child, SocketAddr)> {
    let (http, ops) = (free_port()?, free_port()?);
    let child = Command::new(super::leadflow_exe()?)
        .arg(role)
        .envs(scope.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("LEADFLOW_HTTP_ADDR", http.to_string())
        .env("LEADFLOW_OPS_ADDR", ops.to_string())
        .env("LEADFLOW_METRICS", metrics.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = client.get(format!("http://{http}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok((child, http));
        }
        anyhow::ensure!(Instant::now() < deadline, "leadflow {role} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

struct Run {
    ingest_rate: f64,
    ingest_p99: f64,
    pipeline_rate: f64,
}

async fn measure(base: &Scope, round: usize, metrics: bool, quick: bool) -> anyhow::Result<Run> {
    let (secs, leads) = if quick { (2, 300) } else { (8, 2000) };
    let section = format!("metrics{round}");
    let scope = base.fresh(&section)?;

    let (child, addr) = spawn(&scope, "api", metrics).await?;
    let pool = sqlx::PgPool::connect(&scope.db_url).await?;
    let sender = Sender::at(&scope, &pool, addr, "http://127.0.0.1:9/hook", None).await?;
    let make = sender.maker(|i| (format!("lead-{}", i % 5000), "hello".to_string()));
    let ingest = warm_then_measure(sender.url(), 64, secs, load::json_with_key(sender.key(), make)).await;
    stop(child);
    pool.close().await;
    scope.cleanup().await;

    let ai = fakes::fake_ai().await?;
    let hooks = fakes::receiver().await?;
    let mut scope = base.fresh(&format!("{section}p"))?;
    scope.set("LEADFLOW_AI_BASE_URL", &ai.base_url);
    let (child, addr) = spawn(&scope, "all", metrics).await?;
    let pool = sqlx::PgPool::connect(&scope.db_url).await?;
    let sender = Sender::at(&scope, &pool, addr, &hooks.url, Some((0.5, 5.0))).await?;
    let make = sender.maker(|i| (format!("lead-{}", i / 5), format!("part {}", i % 5)));
    let t = Instant::now();
    sender.send(64, Stop::Total(leads * 5), make).await;
    let count = hooks.clone();
    let done = wait_until(Duration::from_secs(180), || count.count() >= leads).await;
    let elapsed = t.elapsed().as_secs_f64();
    stop(child);
    pool.close().await;
    scope.cleanup().await;
    anyhow::ensure!(done, "not every postback arrived within 180 s");
    Ok(Run {
        ingest_rate: ingest.rate(),
        ingest_p99: ingest.p99_ms,
        pipeline_rate: (leads * 5) as f64 / elapsed,
    })
}

pub async fn metrics_cost(scope: &mut Scope, quick: bool) -> Section {
    let rounds = if quick { 1 } else { 2 };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        off.push(measure(scope, round * 2, false, quick).await?);
        on.push(measure(scope, round * 2 + 1, true, quick).await?);
    }
    let mean = |runs: &[Run], f: fn(&Run) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let row = |measure: &str, f: fn(&Run) -> f64, unit: &str| {
        let (a, b) = (mean(&off, f), mean(&on, f));
        let all = |runs: &[Run]| {
            runs.iter()
                .map(|r| format!("{:.0}", f(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Row::new(
            measure,
            format!(
                "off {a:.0} {unit} ({}), on {b:.0} {unit} ({}): {:+.1} %",
                all(&off),
                all(&on),
                (b / a - 1.0) * 100.0
            ),
            "cost ≤ 5 %",
            Some(b >= a * 0.95),
        )
    };
    let p99 = |runs: &[Run]| mean(runs, |r| r.ingest_p99);
    Ok((
        vec![
            row("/ai/process ingest", |r| r.ingest_rate, "req/s"),
            Row::new(
                "/ai/process p99",
                format!("off {:.1} ms, on {:.1} ms", p99(&off), p99(&on)),
                "",
                None,
            ),
            row("whole pipeline, bursts of 5", |r| r.pipeline_rate, "messages/s"),
        ],
        vec![format!(
            "LEADFLOW_METRICS=false (no recorder: the recording calls reach metrics' no-op recorder, no queue sampler) \
             against true, {rounds} round(s) alternating off/on, each a fresh `leadflow api` or `leadflow all` child \
             on a fresh database; ingest as in its section (64 connections, {} s after a 1 s warm-up), pipeline {} \
             leads × 5 messages against the fake AI at 0 ms; means, each run in brackets",
            if quick { 2 } else { 8 },
            if quick { 300 } else { 2000 },
        )],
    ))
}
