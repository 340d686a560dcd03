//! The benchmark (`leadflow-bench`, run by `scripts/bench`): measures Leadflow on this
//! machine against local fakes and writes the figures to `BENCHMARKS.md`. Every comparison (typed job layer vs Node BullMQ, ingest
//! vs a bare axum handler) runs both sides in the same run on the same Redis, with the
//! same load generator. Each section gets its own database and Redis prefix.

mod connections;
mod fairness;
mod fakes;
mod load;
mod media;
mod media_fakes;
mod metrics_cost;
mod retention;
mod sections;
mod webhooks;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use leadflow_shared::crypto::MasterKey;
use leadflow_shared::db::tenants::{self, CreatedTenant, TenantKind};
use leadflow_shared::Config;
use sqlx::Connection;

pub struct Options {
    pub out: PathBuf,
    /// Smaller workloads (a quick check that every section runs).
    pub quick: bool,
    pub only: Vec<String>,
}

/// One line of the report.
pub struct Row {
    pub measure: String,
    pub result: String,
    pub goal: String,
    pub met: Option<bool>,
}

impl Row {
    fn new(measure: &str, result: String, goal: &str, met: Option<bool>) -> Self {
        Self {
            measure: measure.into(),
            result,
            goal: goal.into(),
            met,
        }
    }
}

/// A fresh database and prefix for one section, with the run's base settings.
pub struct Scope {
    pub env: Vec<(String, String)>,
    pub db_url: String,
    pub admin_url: String,
    pub db_name: String,
    pub prefix: String,
    pub redis_url: String,
    base: Config,
}

impl Scope {
    fn new(base: &Config, section: &str) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut url = url::Url::parse(base.database_url.expose_secret())?;
        let db_name = format!("leadflow_bench_{section}_{id}");
        url.set_path(&db_name);
        let db_url = url.to_string();
        url.set_path("postgres");
        let prefix = format!("lfbench{section}{id}");
        // Figures compare within one run on one machine; a cluster is not what is measured.
        let leadflow_shared::redis_target::RedisTarget::Single(redis_url) = &base.redis else {
            anyhow::bail!("leadflow-bench measures against one Redis: unset LEADFLOW_REDIS_CLUSTER_NODES");
        };
        let env = vec![
            ("LEADFLOW_DATABASE_URL".into(), db_url.clone()),
            ("LEADFLOW_REDIS_URL".into(), redis_url.clone()),
            ("LEADFLOW_QUEUE_PREFIX".into(), prefix.clone()),
            ("LEADFLOW_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("LEADFLOW_OPS_ADDR".into(), "127.0.0.1:0".into()),
            ("LEADFLOW_ALLOW_PRIVATE_URLS".into(), "true".into()),
            ("LEADFLOW_TENANT_RATE_LIMIT".into(), "0".into()),
            ("LEADFLOW_BACKEND_RATE_LIMIT".into(), "0".into()),
            ("LEADFLOW_WEBHOOK_RATE_LIMIT".into(), "0".into()),
            ("LEADFLOW_MASTER_KEY".into(), MasterKey::generate().to_encoded()),
            ("LEADFLOW_AI_API_KEY".into(), "sk-bench".into()),
            ("LEADFLOW_SWEEP_INTERVAL".into(), "5s".into()),
            ("LEADFLOW_LOG".into(), "warn".into()),
        ];
        Ok(Self {
            env,
            db_url,
            admin_url: url.to_string(),
            db_name,
            prefix,
            redis_url: redis_url.clone(),
            base: base.clone(),
        })
    }

    /// Another scope from the run's base settings (a section that measures several
    /// processes, each on its own database).
    pub fn fresh(&self, section: &str) -> anyhow::Result<Self> {
        Self::new(&self.base, section)
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.into(), v.into()));
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::from_sources(&self.env)?)
    }

    pub async fn tenant(&self, pool: &sqlx::PgPool) -> anyhow::Result<CreatedTenant> {
        let key = self.config()?.master_key.expect("scope sets a master key");
        Ok(tenants::create(pool, &key, "bench", TenantKind::Client, None).await?)
    }

    async fn cleanup(&self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.db_name))
                .execute(&mut c)
                .await;
        }
        if let Ok(client) = redis::Client::open(self.redis_url.as_str()) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let own = leadflow_shared::queue::state_prefix(&self.prefix);
                for pattern in [format!("{}:*", self.prefix), format!("{own}:*")] {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(pattern)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    for chunk in keys.chunks(1000) {
                        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
                    }
                }
            }
        }
    }
}

/// The `leadflow` executable, for sections that run roles as child processes: the one
/// built next to this benchmark (`scripts/bench` builds both), or `LEADFLOW_BIN`.
pub fn leadflow_exe() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("LEADFLOW_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("leadflow");
    anyhow::ensure!(
        sibling.exists(),
        "{} not found: build it (cargo build --release --bin leadflow) or set LEADFLOW_BIN",
        sibling.display()
    );
    Ok(sibling)
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let base = Config::load()?;
    let want = |s: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == s);
    let mut report: Vec<(&str, Vec<Row>, Vec<String>)> = Vec::new();
    let sections: [(&str, &str); 12] = [
        ("queue", "Queue layer: no-op jobs drained from a 100k backlog"),
        ("ingest", "/ai/process ingest (debounce: true)"),
        ("pipeline", "Whole pipeline: bursts of 5, fake AI at 0 ms"),
        ("long", "Long generations: fake AI at 2 s"),
        (
            "recovery",
            "Crash recovery: kill -9 of a worker with generations in flight",
        ),
        ("media", "Media bursts: PDF extraction and the latency media add"),
        ("media_memory", "Media worker memory: 200 × 1 MB PDFs at once"),
        ("webhooks", "Provider webhook ingest (next to /ai/process)"),
        ("connections", "WhatsApp connection checks: 1,000 channels in one run"),
        (
            "fairness",
            "Fair share: one tenant floods 10,000 messages, another sends one a second",
        ),
        (
            "retention",
            "Retention: a million old messages purged while the hot path runs",
        ),
        (
            "metrics",
            "What metrics cost: ingest and pipeline with LEADFLOW_METRICS off and on",
        ),
    ];
    for (name, title) in sections {
        if !want(name) {
            continue;
        }
        eprintln!("== {title}");
        let mut scope = Scope::new(&base, name)?;
        let result = match name {
            "queue" => sections::queue_layer(&mut scope, opts.quick).await,
            "ingest" => sections::ingest(&mut scope, opts.quick).await,
            "pipeline" => sections::pipeline(&mut scope, opts.quick).await,
            "long" => sections::long_generations(&mut scope, opts.quick).await,
            "recovery" => sections::recovery(&mut scope).await,
            "media" => media::media_latency(&mut scope, opts.quick).await,
            "media_memory" => media::media_memory(&mut scope, opts.quick).await,
            "webhooks" => webhooks::webhooks(&mut scope, opts.quick).await,
            "fairness" => fairness::fairness(&mut scope, opts.quick).await,
            "retention" => retention::retention(&mut scope, opts.quick).await,
            "metrics" => metrics_cost::metrics_cost(&mut scope, opts.quick).await,
            _ => connections::connections(&mut scope, opts.quick).await,
        };
        scope.cleanup().await;
        let (rows, notes) = match result {
            Ok(r) => r,
            Err(e) => (Vec::new(), vec![format!("section failed: {e:#}")]),
        };
        for r in &rows {
            eprintln!("   {}: {} (goal {})", r.measure, r.result, r.goal);
        }
        for n in &notes {
            eprintln!("   note: {n}");
        }
        report.push((title, rows, notes));
    }
    // With --only, the sections not run keep their earlier figures (each says when it was measured).
    let earlier = if opts.only.is_empty() {
        Vec::new()
    } else {
        std::fs::read_to_string(&opts.out)
            .map(|t| split_sections(&t))
            .unwrap_or_default()
    };
    let mut blocks = Vec::new();
    for (_, title) in sections {
        if let Some((_, rows, notes)) = report.iter().find(|(t, _, _)| *t == title) {
            blocks.push(render_section(title, rows, notes, opts.quick));
        } else if let Some((_, block)) = earlier.iter().find(|(t, _)| t == title) {
            blocks.push(block.clone());
        }
    }
    let md = render(&blocks);
    std::fs::write(&opts.out, md)?;
    eprintln!("wrote {}", opts.out.display());
    Ok(())
}

fn render(blocks: &[String]) -> String {
    let mut md = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `scripts/bench` (which runs `cargo run --release --bin leadflow -- bench`) on this machine \
         ({cores} cores; PostgreSQL, Redis, the fakes, the load generator and Leadflow all on it). Each section says \
         when it was measured; `scripts/bench --only <section>` re-measures one and keeps the others. Figures from \
         different runs are not comparable to each other: this VM's speed varies by tens of percent between \
         sessions, so comparisons are only made within one section.\n",
    );
    for b in blocks {
        md.push_str(b);
    }
    md
}

fn render_section(title: &str, rows: &[Row], notes: &[String], quick: bool) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## {title}\n");
    let _ = writeln!(
        md,
        "_Measured {}{}._\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if quick { " with `--quick`" } else { "" }
    );
    if !rows.is_empty() {
        let _ = writeln!(md, "| measure | result | goal | met |\n|---|---|---|---|");
        for r in rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(md, "| {} | {} | {} | {met} |", r.measure, r.result, r.goal);
        }
        md.push('\n');
    }
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
    md.push('\n');
    md
}

/// The `## ` sections of an earlier BENCHMARKS.md: (title, the whole block).
fn split_sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(title) = line.strip_prefix("## ") {
            out.push((title.trim_end().to_string(), String::new()));
        }
        if let Some((_, block)) = out.last_mut() {
            block.push_str(line);
        }
    }
    out
}

/// Resident and peak resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The `q` quantile (0..=1) of ascending `sorted` values (NaN when there are none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}
