//! The benchmark's sections. Each returns report rows and free-text notes.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use leadflow_shared::db::{assistants, bursts};
use leadflow_shared::domain::AssistantSettings;
use leadflow_shared::queue::{Noop, QueueKind, Queues};
use serde_json::json;

use super::load::{self, Stop};
use super::{fakes, rss_mib, wait_until, Row, Scope};
use leadflow::{start, Roles};

pub(super) type Section = anyhow::Result<(Vec<Row>, Vec<String>)>;

const NODE_DIR: &str = "bench/node";

async fn fill(queues: &Queues, count: u64) -> anyhow::Result<f64> {
    let run = uuid::Uuid::new_v4();
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..count)
        .map(|n| {
            let q = queues.clone();
            async move { q.enqueue(&Noop { n, run }, Duration::ZERO).await }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

async fn backlog(queues: &Queues) -> anyhow::Result<u64> {
    let q = queues.queue(QueueKind::Bench);
    Ok(q.get_waiting_count().await? + q.get_active_count().await?)
}

/// Redis's own CPU seconds so far (`INFO cpu`), to tell whether Redis was the bottleneck.
async fn redis_cpu_secs(url: &str) -> anyhow::Result<f64> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum())
}

fn node_drain(scope: &Scope, count: u64, concurrency: usize) -> anyhow::Result<f64> {
    if !std::path::Path::new(NODE_DIR).join("node_modules").exists() {
        // `npm install` from the committed lockfile: npm 11's `npm ci` rejects that lockfile
        // (it wants entries for other platforms' optional msgpackr-extract builds).
        let ok = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--silent",
                "--prefix",
                NODE_DIR,
            ])
            .status()?
            .success();
        anyhow::ensure!(ok, "npm install in {NODE_DIR} failed");
    }
    let out = Command::new("node")
        .arg(format!("{NODE_DIR}/drain.mjs"))
        .args([
            "--redis",
            &scope.redis_url,
            "--prefix",
            &scope.prefix,
            "--queue",
            "bench",
        ])
        .args(["--count", &count.to_string(), "--concurrency", &concurrency.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "node drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or("{}"))?;
    v["rate"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("node drain printed no rate: {line}"))
}

pub async fn queue_layer(scope: &mut Scope, quick: bool) -> Section {
    let count: u64 = if quick { 20_000 } else { 100_000 };
    let concurrency = 16;
    let cfg = scope.config()?;
    let queues = Queues::connect_with_bench(&cfg.redis, &cfg.queue_prefix).await?;
    let fill_rate = fill(&queues, count).await?;
    // No-op jobs never touch PostgreSQL: a lazy pool never connects.
    let pool = sqlx::PgPool::connect_lazy(&scope.db_url)?;
    let key = cfg.master_key.clone().expect("scope sets a master key");
    let ctx = leadflow_worker::Ctx::new(cfg, pool, queues.clone(), key).await?;
    let cpu0 = redis_cpu_secs(&scope.redis_url).await?;
    let t = Instant::now();
    let workers = leadflow_worker::jobs::start(&ctx, &[QueueKind::Bench], concurrency).await?;
    while backlog(&queues).await? > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rust_secs = t.elapsed().as_secs_f64();
    let rust_rate = count as f64 / rust_secs;
    let rust_redis_cpu = (redis_cpu_secs(&scope.redis_url).await? - cpu0) / rust_secs * 100.0;
    workers.close(Duration::from_secs(5)).await;

    let mut rows = vec![
        Row::new(
            "enqueue (typed layer, 128 in flight)",
            format!("{fill_rate:.0} jobs/s"),
            "",
            None,
        ),
        Row::new(
            &format!("drain, Leadflow typed jobs (concurrency {concurrency})"),
            format!("{rust_rate:.0} jobs/s (Redis CPU {rust_redis_cpu:.0} %)"),
            "",
            None,
        ),
    ];
    let mut notes = vec![format!(
        "backlog of {count} no-op jobs, filled before each drain starts"
    )];
    fill(&queues, count).await?;
    let cpu0 = redis_cpu_secs(&scope.redis_url).await?;
    let t = Instant::now();
    let node = node_drain(scope, count, concurrency);
    let node_redis_cpu = (redis_cpu_secs(&scope.redis_url).await? - cpu0) / t.elapsed().as_secs_f64() * 100.0;
    match node {
        Ok(node_rate) => {
            let ratio = rust_rate / node_rate;
            notes.push(
                "Redis runs BullMQ's Lua scripts on one core: where its CPU is near 100 % during a drain, the rate is \
                 Redis's, not the client's, and the ratio cannot exceed ~1"
                    .into(),
            );
            rows.push(Row::new(
                &format!("drain, Node BullMQ (concurrency {concurrency})"),
                format!("{node_rate:.0} jobs/s (Redis CPU {node_redis_cpu:.0} %, incl. Node start-up)"),
                "",
                None,
            ));
            rows.push(Row::new(
                "ratio Leadflow / Node BullMQ",
                format!("{ratio:.2}×"),
                "≥ 1.5×",
                Some(ratio >= 1.5),
            ));
        }
        Err(e) => notes.push(format!("Node BullMQ not measured: {e:#}")),
    }
    queues.close().await;
    Ok((rows, notes))
}

/// A section's client: a fresh tenant on the API of a running Leadflow, posting
/// debounced user messages whose postbacks go to `hook`.
pub(super) struct Sender {
    url: String,
    key: String,
    tenant: String,
    hook: String,
}

impl Sender {
    /// `timing`: the default assistant's `(debounce_seconds, max_wait_seconds)`, when not the default.
    pub(super) async fn new(
        scope: &Scope,
        running: &leadflow::Running,
        hook: &str,
        timing: Option<(f64, f64)>,
    ) -> anyhow::Result<Self> {
        let addr = running.http_addr.expect("the api role runs");
        Self::at(scope, &running.pool, addr, hook, timing).await
    }

    /// The same against the API listening on `addr` (another process), over `pool`.
    pub(super) async fn at(
        scope: &Scope,
        pool: &sqlx::PgPool,
        addr: std::net::SocketAddr,
        hook: &str,
        timing: Option<(f64, f64)>,
    ) -> anyhow::Result<Self> {
        let tenant = scope.tenant(pool).await?;
        if let Some((debounce, max_wait)) = timing {
            let s = AssistantSettings {
                debounce_seconds: debounce,
                max_wait_seconds: max_wait,
                ..AssistantSettings::default()
            };
            assistants::update(pool, tenant.tenant_id, tenant.assistant_id, &s).await?;
        }
        Ok(Self {
            url: format!("http://{addr}/ai/process"),
            key: tenant.api_key,
            tenant: tenant.tenant_id.to_string(),
            hook: hook.to_string(),
        })
    }

    /// Builds request `i` from `lead_and_text(i)`.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn tenant_id(&self) -> &str {
        &self.tenant
    }

    pub(super) fn maker(&self, lead_and_text: impl Fn(usize) -> (String, String) + Send + Sync + 'static) -> Maker {
        let (tenant, hook) = (self.tenant.clone(), self.hook.clone());
        Arc::new(move |i| {
            let (lead, content) = lead_and_text(i);
            json!({"tenant_id": tenant, "lead_id": lead, "role": "user", "content": content,
                   "message_type": "text", "debounce": true, "postback_url": hook})
        })
    }

    pub(super) async fn send(&self, concurrency: usize, stop: Stop, make: Maker) -> load::LoadResult {
        load::run(self.url.clone(), self.key.clone(), concurrency, stop, make).await
    }
}

pub(super) type Maker = Arc<dyn Fn(usize) -> serde_json::Value + Send + Sync>;

/// A 1 s warm-up, then the measured run of `secs`.
/// One second of warm-up, then `secs` measured. The warm-up numbers its requests from a
/// billion so that no measured request repeats a warm-up message id (a duplicate takes a
/// shorter path).
pub(super) async fn warm_then_measure(
    url: &str,
    concurrency: usize,
    secs: u64,
    make: load::Requests,
) -> load::LoadResult {
    let warm = Stop::After(Duration::from_secs(1));
    let offset = make.clone();
    let warm_make: load::Requests = Arc::new(move |i| offset(i + 1_000_000_000));
    load::run_requests(url.into(), concurrency, warm, warm_make).await;
    load::run_requests(url.into(), concurrency, Stop::After(Duration::from_secs(secs)), make).await
}

pub async fn ingest(scope: &mut Scope, quick: bool) -> Section {
    let secs = if quick { 2 } else { 8 };
    let concurrency = 64;
    let running = start(scope.config()?, Roles::api_only()).await?;
    let sender = Sender::new(scope, &running, "http://127.0.0.1:9/hook", None).await?;
    let make = sender.maker(|i| (format!("lead-{}", i % 5000), "hello".to_string()));
    let ours = warm_then_measure(
        &sender.url,
        concurrency,
        secs,
        load::json_with_key(&sender.key, make.clone()),
    )
    .await;
    running.shutdown().await;
    let bare_url = format!("{}/ai/process", fakes::bare_handler().await?);
    let bare = warm_then_measure(&bare_url, concurrency, secs, load::json_with_key("k", make)).await;
    let ratio = ours.rate() / bare.rate();
    Ok((
        vec![
            Row::new(
                "/ai/process (auth, validation, PostgreSQL commit, enqueue)",
                format!(
                    "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
                    ours.rate(),
                    ours.p50_ms,
                    ours.p99_ms,
                    ours.errors
                ),
                "",
                None,
            ),
            Row::new(
                "bare axum handler (parse JSON, 202)",
                format!(
                    "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
                    bare.rate(),
                    bare.p50_ms,
                    bare.p99_ms
                ),
                "",
                None,
            ),
            Row::new("ratio", format!("{:.1} %", ratio * 100.0), "≥ 50 %", Some(ratio >= 0.5)),
        ],
        vec![format!(
            "{concurrency} concurrent connections, {secs} s each after a 1 s warm-up, 5,000 distinct leads; \
             same in-process load generator for both"
        )],
    ))
}

pub async fn pipeline(scope: &mut Scope, quick: bool) -> Section {
    let leads: usize = if quick { 400 } else { 3000 };
    let ai = fakes::fake_ai().await?;
    let hooks = fakes::receiver().await?;
    scope.set("LEADFLOW_AI_BASE_URL", &ai.base_url);
    let cfg = scope.config()?;
    let running = start(cfg.clone(), Roles::all(&cfg)).await?;
    let sender = Sender::new(scope, &running, &hooks.url, Some((0.5, 5.0))).await?;
    // Message i is part (i % 5) of lead i / 5: a lead's five messages go out back to back.
    let make = sender.maker(|i| (format!("lead-{}", i / 5), format!("part {}", i % 5)));
    let since = chrono::Utc::now();
    let t = Instant::now();
    let sent = sender.send(64, Stop::Total(leads * 5), make).await;
    let count = hooks.clone();
    let done = wait_until(Duration::from_secs(180), || count.count() >= leads).await;
    let elapsed = t.elapsed().as_secs_f64();
    let (p50, p99, max, flushed) = bursts::lateness_ms(&running.pool, since).await?;
    let generations = ai.stats.started.load(Ordering::SeqCst);
    running.shutdown().await;
    let rate = (leads * 5) as f64 / elapsed;
    let mut notes = vec![format!(
        "{leads} leads × 5 messages ({} accepted at {:.0} req/s, {} errors); debounce 0.5 s; {flushed} bursts flushed, \
         {generations} AI calls, {} postbacks; rate = messages / (first accept → last postback), so it includes one debounce window",
        sent.requests,
        sent.rate(),
        sent.errors,
        count.count()
    )];
    if !done {
        notes.push("not every postback arrived within 180 s".into());
    }
    Ok((
        vec![
            Row::new(
                "messages/s end to end",
                format!("{rate:.0}"),
                "≥ 11,000",
                Some(rate >= 11_000.0),
            ),
            Row::new(
                "flush lateness",
                format!("p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"),
                "p99 ≤ 250 ms",
                Some(p99 <= 250.0),
            ),
        ],
        notes,
    ))
}

pub(super) fn spawn_worker(scope: &Scope, queues: &str, concurrency: usize) -> anyhow::Result<Child> {
    Ok(Command::new(super::leadflow_exe()?)
        .args(["worker", "--queues", queues, "--concurrency", &concurrency.to_string()])
        .envs(scope.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// API plus the flush and postback workers in this process; the AI worker is a child.
async fn api_side(scope: &Scope) -> anyhow::Result<leadflow::Running> {
    start(
        scope.config()?,
        Roles {
            api: true,
            worker: Some((vec![QueueKind::Flush, QueueKind::Postback], 2000)),
            scheduler: false,
        },
    )
    .await
}

pub async fn long_generations(scope: &mut Scope, quick: bool) -> Section {
    let n: usize = if quick { 500 } else { 2500 };
    let ai = fakes::fake_ai().await?;
    ai.set_latency(Duration::from_millis(2000));
    let hooks = fakes::receiver().await?;
    scope.set("LEADFLOW_AI_BASE_URL", &ai.base_url);
    let running = api_side(scope).await?;
    let sender = Sender::new(scope, &running, &hooks.url, Some((0.1, 5.0))).await?;
    let make = sender.maker(|i| (format!("lead-{i}"), "hi".to_string()));
    sender.send(64, Stop::Total(n), make).await;
    // Every burst flushed and its AI job queued before the AI worker starts, so what is
    // measured is how many generations one worker process holds, not how fast they arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let generating: i64 = sqlx::query_scalar("SELECT count(*) FROM bursts WHERE status = 'generating'")
            .fetch_one(&running.pool)
            .await?;
        if generating as usize >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut child = spawn_worker(scope, "ai", n + 500)?;
    let (mut peak_rss, mut at_peak) = (0f64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(90);
    while hooks.count() < n && Instant::now() < deadline {
        let in_flight = ai.stats.in_flight.load(Ordering::SeqCst);
        if let Some((rss, _)) = rss_mib(child.id()) {
            if in_flight >= at_peak {
                at_peak = in_flight;
                peak_rss = peak_rss.max(rss);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hwm = rss_mib(child.id()).map(|(_, hwm)| hwm).unwrap_or(0.0);
    let max_in_flight = ai.stats.max_in_flight.load(Ordering::SeqCst);
    let delivered = hooks.count();
    child.kill().ok();
    child.wait().ok();
    running.shutdown().await;
    Ok((
        vec![
            Row::new(
                "generations in flight in one worker process",
                format!("{max_in_flight}"),
                "≥ 2,000",
                Some(max_in_flight >= 2000),
            ),
            Row::new(
                "worker RSS at that point (peak RSS over the run)",
                format!("{peak_rss:.0} MiB ({hwm:.0} MiB)"),
                "< 150 MB",
                Some(hwm < 143.0),
            ),
        ],
        vec![format!(
            "{n} leads, one message each, their AI jobs queued before `leadflow worker --queues ai --concurrency {}` \
             starts as its own process; {delivered} postbacks delivered",
            n + 500
        )],
    ))
}

pub async fn recovery(scope: &mut Scope) -> Section {
    let n = 50;
    let ai = fakes::fake_ai().await?;
    ai.set_latency(Duration::from_millis(60_000));
    scope.set("LEADFLOW_AI_BASE_URL", &ai.base_url);
    let hooks = fakes::receiver().await?;
    let running = api_side(scope).await?;
    let mut first = spawn_worker(scope, "ai", 500)?;
    let sender = Sender::new(scope, &running, &hooks.url, Some((0.1, 5.0))).await?;
    let make = sender.maker(|i| (format!("lead-{i}"), "hi".to_string()));
    sender.send(16, Stop::Total(n), make).await;
    let stats = ai.stats.clone();
    anyhow::ensure!(
        wait_until(Duration::from_secs(30), || stats.started.load(Ordering::SeqCst) >= n).await,
        "generations did not start"
    );
    first.kill()?;
    first.wait()?;
    let killed = Instant::now();
    let mut second = spawn_worker(scope, "ai", 500)?;
    let first_back = wait_until(Duration::from_secs(60), || stats.started.load(Ordering::SeqCst) > n).await;
    let t_first = killed.elapsed().as_secs_f64();
    let all_back = wait_until(Duration::from_secs(60), || {
        stats.started.load(Ordering::SeqCst) >= 2 * n
    })
    .await;
    let t_all = killed.elapsed().as_secs_f64();
    second.kill().ok();
    second.wait().ok();
    running.shutdown().await;
    anyhow::ensure!(
        first_back && all_back,
        "orphaned generations did not all run again within 60 s"
    );
    let cfg = scope.config()?;
    Ok((
        vec![Row::new(
            "kill -9 → all orphaned generations running again",
            format!("{t_all:.1} s (first after {t_first:.1} s)"),
            "≤ 15 s",
            Some(t_all <= 15.0),
        )],
        vec![format!(
            "{n} generations in flight (fake AI holds each 60 s); lock {:?}, stalled check every {:?} \
             (the port runs the check at half that rate)",
            cfg.lock_duration, cfg.stalled_interval
        )],
    ))
}
