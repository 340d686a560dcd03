//! Prometheus metrics. One recorder per process, installed by the first role that starts
//! ([`install`]), rendered by `GET /metrics` on the API port and on the ops listener. The
//! names and labels are an interface (dashboards and alerts are written against them), so
//! every family is named here, once; code records through these functions.
//!
//! No tenant or lead label by default: their number is unbounded. An install with few
//! tenants may turn on `LEADFLOW_METRICS_TENANT_LABEL`: the worker runtime then runs each
//! job inside [`tenant_scope`], the handler names its tenant with [`tenant`] once it has
//! loaded its row, and the job, AI and postback families recorded in that job carry
//! `tenant="<tenant id>"`. Off, there is no scope and [`tenant`] does nothing.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use uuid::Uuid;

tokio::task_local! {
    static TENANT: Cell<Option<Uuid>>;
}

/// Runs a job with a slot for its tenant (the `tenant` label is on).
pub async fn tenant_scope<F: std::future::Future>(f: F) -> F::Output {
    TENANT.scope(Cell::new(None), f).await
}

/// The job in scope is about `tenant_id` (nothing when the label is off).
pub fn tenant(tenant_id: Uuid) {
    let _ = TENANT.try_with(|t| t.set(Some(tenant_id)));
}

/// `pairs` as labels, plus `tenant` when the job in scope has named one.
fn labels(pairs: &[(&'static str, &'static str)]) -> Vec<Label> {
    let mut labels: Vec<Label> = pairs.iter().map(|(k, v)| Label::from_static_parts(k, v)).collect();
    if let Ok(Some(id)) = TENANT.try_with(Cell::get) {
        labels.push(Label::new("tenant", id.to_string()));
    }
    labels
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Seconds buckets from a millisecond to two minutes: HTTP, jobs, AI calls, lateness.
const SECONDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process's recorder (once; later calls reuse it).
pub fn install() {
    HANDLE.get_or_init(|| {
        let built = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .and_then(|b| b.install_recorder());
        match built {
            Ok(handle) => {
                describe();
                // Histograms keep every sample until upkeep folds them into their buckets;
                // run only at a scrape, an unscraped process would grow without bound.
                let upkeep = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "metrics upkeep thread not started; upkeep runs at scrapes only");
                }
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// Every family's help text (Prometheus's `# HELP`).
fn describe() {
    describe_counter!(
        "leadflow_http_requests_total",
        "HTTP requests, by route template, method and status"
    );
    describe_histogram!(
        "leadflow_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by route template and method"
    );
    describe_counter!(
        "leadflow_jobs_total",
        "Job attempts, by queue and outcome (completed, retried, failed)"
    );
    describe_histogram!(
        "leadflow_job_duration_seconds",
        Unit::Seconds,
        "Job attempt duration, by queue"
    );
    describe_gauge!(
        "leadflow_queue_jobs",
        "Jobs per queue and state (waiting, active, delayed, failed, completed), sampled every 5 s"
    );
    describe_counter!(
        "leadflow_messages_accepted_total",
        "Messages accepted, by source (ai_process or the provider)"
    );
    describe_counter!(
        "leadflow_bursts_total",
        "Bursts finished, by outcome (done, failed, dropped)"
    );
    describe_histogram!(
        "leadflow_flush_lateness_seconds",
        Unit::Seconds,
        "How late a burst's first generation started past its due time"
    );
    describe_counter!(
        "leadflow_ai_requests_total",
        "AI chat calls, by outcome (ok, rate_limited, server_error, client_error, timeout)"
    );
    describe_histogram!(
        "leadflow_ai_request_duration_seconds",
        Unit::Seconds,
        "AI chat call latency"
    );
    describe_counter!(
        "leadflow_ai_tokens_total",
        "AI tokens used, by kind (prompt, completion)"
    );
    describe_gauge!(
        "leadflow_generations_in_flight",
        "AI chat calls running now in this process"
    );
    describe_counter!(
        "leadflow_postbacks_total",
        "Postback attempts, by outcome (delivered, retried, exhausted)"
    );
    describe_histogram!(
        "leadflow_postback_duration_seconds",
        Unit::Seconds,
        "Postback attempt duration"
    );
    describe_counter!(
        "leadflow_sends_total",
        "Channel send attempts, by provider and outcome (sent, retried, failed)"
    );
    describe_counter!(
        "leadflow_media_total",
        "Media processing attempts, by kind (image, audio, pdf) and outcome (done, retried, failed)"
    );
    describe_histogram!(
        "leadflow_transcription_duration_seconds",
        Unit::Seconds,
        "Voice note transcription call duration"
    );
    describe_histogram!(
        "leadflow_pdf_extraction_duration_seconds",
        Unit::Seconds,
        "PDF text extraction duration (the sandboxed child)"
    );
    describe_gauge!(
        "leadflow_channels",
        "Active channels, by provider and connection (connected, disconnected, unknown), sampled every 5 s"
    );
    describe_counter!(
        "leadflow_scheduler_runs_total",
        "Periodic task runs, by task and outcome (ok, failed, skipped: the previous run still going)"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of this process"
    );
    describe_counter!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "CPU time this process used (user + system)"
    );
    describe_gauge!("process_open_fds", "File descriptors this process has open");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "When this process started, seconds since the epoch"
    );
    describe_gauge!(
        "leadflow_ready",
        "Readiness by check (postgres, redis, migrations): 1 ok, 0 failing; evaluated at each scrape and /readyz"
    );
    describe_gauge!(
        "leadflow_db_pool_connections",
        "This process's PostgreSQL connections, by state (idle, active)"
    );
}

/// The exposition, Prometheus text format 0.0.4.
pub fn render() -> String {
    match HANDLE.get().and_then(Option::as_ref) {
        Some(h) => {
            process();
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    let (route, method) = (route.to_owned(), method.to_owned());
    counter!("leadflow_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status.to_string())
        .increment(1);
    histogram!("leadflow_http_request_duration_seconds", "route" => route, "method" => method).record(took);
}

/// How a job attempt ended: `completed`, `retried` (BullMQ runs it again) or `failed`.
pub fn job(queue: &'static str, outcome: &'static str, took: Duration) {
    counter!("leadflow_jobs_total", labels(&[("queue", queue), ("outcome", outcome)])).increment(1);
    histogram!("leadflow_job_duration_seconds", labels(&[("queue", queue)])).record(took);
}

/// Jobs in `state` (waiting, active, delayed, failed, completed) in `queue`, as sampled.
pub fn queue_jobs(queue: &'static str, state: &'static str, n: u64) {
    gauge!("leadflow_queue_jobs", "queue" => queue, "state" => state).set(n as f64);
}

/// A message accepted: `ai_process` or the provider's name.
pub fn message_accepted(source: &str) {
    counter!("leadflow_messages_accepted_total", "source" => source.to_owned()).increment(1);
}

/// A burst finished: `done`, `failed` or `dropped`.
pub fn burst(outcome: &'static str) {
    counter!("leadflow_bursts_total", "outcome" => outcome).increment(1);
}

/// How late a burst was flushed past its due time.
pub fn flush_lateness(late: Duration) {
    histogram!("leadflow_flush_lateness_seconds").record(late);
}

/// One AI call: `ok`, `rate_limited`, `server_error`, `client_error` or `timeout`.
pub fn ai_request(outcome: &'static str, took: Duration, prompt_tokens: Option<i32>, completion_tokens: Option<i32>) {
    counter!("leadflow_ai_requests_total", labels(&[("outcome", outcome)])).increment(1);
    histogram!("leadflow_ai_request_duration_seconds", labels(&[])).record(took);
    for (kind, n) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
        if let Some(n) = n.filter(|n| *n > 0) {
            counter!("leadflow_ai_tokens_total", labels(&[("kind", kind)])).increment(n as u64);
        }
    }
}

/// Generations running now in this process.
pub fn generations_in_flight(delta: f64) {
    gauge!("leadflow_generations_in_flight").increment(delta);
}

/// A postback attempt: `delivered`, `retried` or `exhausted`.
pub fn postback(outcome: &'static str, took: Duration) {
    counter!("leadflow_postbacks_total", labels(&[("outcome", outcome)])).increment(1);
    histogram!("leadflow_postback_duration_seconds", labels(&[])).record(took);
}

/// A channel send attempt: `sent`, `retried` or `failed`.
pub fn send(provider: &str, outcome: &'static str) {
    counter!("leadflow_sends_total", "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
}

/// This process's PostgreSQL pool, by state (`idle`, `active`).
pub fn db_pool(pool: &sqlx::PgPool) {
    let (size, idle) = (pool.size() as f64, pool.num_idle() as f64);
    gauge!("leadflow_db_pool_connections", "state" => "idle").set(idle);
    gauge!("leadflow_db_pool_connections", "state" => "active").set((size - idle).max(0.0));
}

/// A medium processed: `kind` image, audio or pdf; `outcome` done, retried or failed.
pub fn media(kind: &str, outcome: &'static str) {
    counter!("leadflow_media_total", "kind" => kind.to_owned(), "outcome" => outcome).increment(1);
}

pub fn transcription(took: Duration) {
    histogram!("leadflow_transcription_duration_seconds").record(took);
}

pub fn pdf_extraction(took: Duration) {
    histogram!("leadflow_pdf_extraction_duration_seconds").record(took);
}

/// Active channels of `provider` in `connection` state, as sampled.
pub fn channels(provider: &str, connection: &str, n: i64) {
    gauge!("leadflow_channels", "provider" => provider.to_owned(), "connection" => connection.to_owned()).set(n as f64);
}

/// One readiness check's outcome.
pub fn ready(check: &'static str, ok: bool) {
    gauge!("leadflow_ready", "check" => check).set(if ok { 1.0 } else { 0.0 });
}

/// A periodic task's run: `ok`, `failed` or `skipped`.
pub fn scheduler_run(task: &'static str, outcome: &'static str) {
    counter!("leadflow_scheduler_runs_total", "task" => task, "outcome" => outcome).increment(1);
}

/// The standard process families, read from `/proc/self` at scrape time (Linux; on
/// other systems they are simply absent). Hand-written rather than a crate: four values
/// from three files.
fn process() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces) — see proc(5).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // `rest` starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let ticks = 100.0; // USER_HZ, 100 on every Linux platform Leadflow targets
    if let (Some(u), Some(s)) = (num(11), num(12)) {
        // A counter holds whole numbers: whole CPU seconds, plenty for rate() over minutes.
        counter!("process_cpu_seconds_total").absolute(((u + s) / ticks) as u64);
    }
    let rss_kib = std::fs::read_to_string("/proc/self/status").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    });
    if let Some(kib) = rss_kib {
        gauge!("process_resident_memory_bytes").set(kib * 1024.0);
    }
    if let (Some(start), Some(boot)) = (num(19), boot_time()) {
        gauge!("process_start_time_seconds").set(boot + start / ticks);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    /// Every family the shipped dashboard and alert rules query (`leadflow_*`, `process_*`).
    fn families_used(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for start in ["leadflow_", "process_"] {
            for (i, _) in text.match_indices(start) {
                let before = text[..i].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_owned();
                out.push(family);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn the_dashboard_and_the_alerts_only_query_families_this_module_records() {
        let here = include_str!("metrics.rs");
        for (file, text) in [
            (
                "deploy/grafana/leadflow.json",
                include_str!("../../deploy/grafana/leadflow.json"),
            ),
            (
                "deploy/prometheus/alerts.yml",
                include_str!("../../deploy/prometheus/alerts.yml"),
            ),
        ] {
            let used = families_used(text);
            assert!(used.len() > 3, "{file}: {used:?}");
            for family in used {
                assert!(
                    here.contains(&format!("\"{family}\"")),
                    "{file} queries {family}, which shared/src/metrics.rs does not record"
                );
            }
        }
    }
}
