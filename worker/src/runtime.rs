//! Typed handlers → BullMQ workers. This is the one place that knows about the port's
//! defects and works around them:
//! - recovery after kill -9: short lock, frequent renewal, frequent stalled checks (the
//!   port checks at half the configured rate, so the interval is set to half the target);
//! - every worker's unbounded event channel is drained by a task of its own, which is
//!   also where failures and stalls are logged;
//! - after a Redis error the fetch loop waits 1 s, not 15 s;
//! - infrastructure retries use a capped, jittered backoff (the built-in has neither);
//! - each job runs under a timeout and with a tracing span naming queue, job and attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bullmq::worker::WorkerEvent;
use bullmq::{Worker, WorkerOptions};
use leadflow_shared::queue::{self, Job, QueueKind};
use tracing::Instrument;

use crate::Ctx;

/// A running pool of workers, one per queue.
pub struct Pool {
    workers: Vec<Arc<Worker>>,
}

impl Pool {
    pub fn new() -> Self {
        Self { workers: Vec::new() }
    }

    /// Stops fetching, lets in-flight jobs finish within `timeout`; whatever is still
    /// running then is handed back to the queue by the stalled check of another worker.
    pub async fn close(&self, timeout: Duration) {
        let closes = self.workers.iter().map(|w| w.close(timeout.as_millis() as u64));
        for r in futures::future::join_all(closes).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "worker did not close cleanly");
            }
        }
    }

    /// Starts a worker for `J` that runs `handler` for each job.
    pub async fn spawn<J, F, Fut>(
        &mut self,
        ctx: &Arc<Ctx>,
        concurrency: usize,
        job_timeout: Duration,
        handler: F,
    ) -> anyhow::Result<()>
    where
        J: Job,
        F: Fn(Arc<Ctx>, J) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let kind = J::QUEUE;
        let name = format!(
            "{}-{}-{}-{}",
            hostname(),
            std::process::id(),
            kind.name(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let opts = worker_options(ctx, concurrency, name.clone());
        let processor_ctx = ctx.clone();
        let worker = Worker::with_options(
            &ctx.queues.keyspace().queue_name(kind),
            move |job: bullmq::Job, _token| {
                let ctx = processor_ctx.clone();
                let handler = handler.clone();
                async move { run_one::<J, F, Fut>(ctx, handler, job, job_timeout).await }
            },
            opts,
        )
        .await?;
        let worker = Arc::new(worker);
        tokio::spawn(drain_events(worker.clone(), kind));
        tracing::info!(queue = kind.name(), worker = %name, concurrency, "worker started");
        self.workers.push(worker);
        Ok(())
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

async fn run_one<J, F, Fut>(
    ctx: Arc<Ctx>,
    handler: F,
    job: bullmq::Job,
    job_timeout: Duration,
) -> Result<serde_json::Value, bullmq::Error>
where
    J: Job,
    F: Fn(Arc<Ctx>, J) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // The request that led to this job (see `leadflow_shared::request_id`): on its span,
    // and in scope for the jobs it enqueues.
    let request_id = job
        .data()
        .get(leadflow_shared::request_id::FIELD)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let span = tracing::info_span!(
        "job",
        queue = J::QUEUE.name(),
        job_id = %job.id(),
        attempt = job.attempts_made() + 1,
        request_id = request_id.as_deref().unwrap_or(""),
    );
    let tenant_label = ctx.cfg.metrics_tenant_label;
    let run = async move {
        let started = std::time::Instant::now();
        // The last infrastructure attempt fails for good; the sweeper takes it from there.
        let last = job.attempts_made() + 1 >= queue::INFRA_ATTEMPTS;
        let failed = if last { "failed" } else { "retried" };
        let data: J = match serde_json::from_value(job.data().clone()) {
            Ok(d) => d,
            Err(e) => {
                leadflow_shared::metrics::job(J::QUEUE.name(), "failed", started.elapsed());
                return Err(bullmq::Error::Unrecoverable(format!(
                    "job data is not a {}: {e}",
                    J::NAME
                )));
            }
        };
        let out = match tokio::time::timeout(job_timeout, handler(ctx, data)).await {
            Ok(Ok(())) => Ok(serde_json::Value::Null),
            Ok(Err(e)) => {
                tracing::warn!(error = format!("{e:#}"), "job failed; BullMQ will retry it");
                Err(bullmq::Error::ProcessingError(format!("{e:#}")))
            }
            Err(_) => {
                tracing::warn!(?job_timeout, "job timed out; BullMQ will retry it");
                Err(bullmq::Error::ProcessingError(format!(
                    "timed out after {job_timeout:?}"
                )))
            }
        };
        let outcome = if out.is_ok() { "completed" } else { failed };
        leadflow_shared::metrics::job(J::QUEUE.name(), outcome, started.elapsed());
        tracing::debug!(outcome, ms = started.elapsed().as_millis() as u64, "job finished");
        out
    }
    .instrument(span);
    // A slot the handler names its tenant in, for the metrics' `tenant` label.
    let run = async move {
        if tenant_label {
            leadflow_shared::metrics::tenant_scope(run).await
        } else {
            run.await
        }
    };
    match request_id {
        Some(id) => leadflow_shared::request_id::scope(id, run).await,
        None => run.await,
    }
}

fn worker_options(ctx: &Ctx, concurrency: usize, name: String) -> WorkerOptions {
    let lock = ctx.cfg.lock_duration.as_millis() as u64;
    let stalled = ctx.cfg.stalled_interval.as_millis().max(100) as u64;
    WorkerOptions {
        connection: ctx.cfg.redis.bull_options(),
        prefix: ctx.cfg.queue_prefix.clone(),
        name: Some(name),
        concurrency,
        lock_duration: lock,
        lock_renew_time: Some((lock / 3).max(200)),
        // A job that stalls twice (its worker died twice while holding it) is failed
        // rather than looping; PostgreSQL still has its state and the sweeper re-enqueues.
        max_stalled_count: 2,
        stalled_interval: stalled,
        drain_delay: 5,
        run_retry_delay: 1000,
        remove_on_complete: Some(queue::remove_on_complete()),
        remove_on_fail: Some(queue::remove_on_fail()),
        backoff_strategy: Some(Arc::new(|attempts, _kind, _err, _data| {
            Box::pin(async move {
                queue::jittered_backoff(attempts, Duration::from_millis(500), Duration::from_secs(60)).as_millis()
                    as i64
            })
        })),
        ..Default::default()
    }
}

/// The port pushes every event into an unbounded channel: drain it, or memory grows
/// with every job. This is also where failures and stalls become log lines.
async fn drain_events(worker: Arc<Worker>, kind: QueueKind) {
    while let Some(ev) = worker.next_event().await {
        match ev {
            WorkerEvent::Failed { job_id, error } => {
                tracing::warn!(queue = kind.name(), %job_id, %error, "job attempt failed")
            }
            WorkerEvent::Stalled { job_id } => {
                tracing::warn!(queue = kind.name(), %job_id, "stalled job returned to the queue")
            }
            WorkerEvent::Error(error) => tracing::warn!(queue = kind.name(), %error, "worker error"),
            WorkerEvent::Closed => break,
            _ => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}
