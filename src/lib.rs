//! Starting Leadflow's roles in one process. The `leadflow` binary and the end-to-end
//! tests both call [`start`], so what the tests exercise is what operators run.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use leadflow_shared::queue::{QueueKind, Queues};
use leadflow_shared::{db, Config};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which roles this process runs.
#[derive(Debug, Clone)]
pub struct Roles {
    pub api: bool,
    /// Queues to consume and jobs in flight per queue.
    pub worker: Option<(Vec<QueueKind>, usize)>,
    pub scheduler: bool,
}

impl Roles {
    pub fn all(cfg: &Config) -> Self {
        Self {
            api: true,
            worker: Some((QueueKind::ALL.to_vec(), cfg.worker_concurrency)),
            scheduler: true,
        }
    }

    /// Only the HTTP API (`leadflow api`): its work runs in other processes.
    pub fn api_only() -> Self {
        Self {
            api: true,
            worker: None,
            scheduler: false,
        }
    }
}

pub struct Running {
    pub http_addr: Option<SocketAddr>,
    /// The ops listener, when this process runs workers or the scheduler.
    pub ops_addr: Option<SocketAddr>,
    pub pool: sqlx::PgPool,
    pub queues: Queues,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Option<leadflow_worker::runtime::Pool>,
    shutdown_timeout: Duration,
}

/// Connects to PostgreSQL (creating and migrating the database) and Redis, then starts
/// the requested roles. Returns once they are accepting work.
pub async fn start(mut cfg: Config, roles: Roles) -> anyhow::Result<Running> {
    if cfg.metrics {
        leadflow_shared::metrics::install();
    }
    let master_key = cfg.resolve_master_key()?;
    let pool = db::connect_for_role(&cfg).await?;
    db::rebind_secrets(&pool, &master_key).await?;
    let queues = Queues::connect(&cfg.redis, &cfg.queue_prefix).await?;
    if cfg.has_ai_key() {
        tracing::info!(base_url = %cfg.ai_base_url, "AI provider configured");
    } else {
        tracing::warn!(
            "no AI provider is configured (LEADFLOW_AI_API_KEY is not set): replies fail with `ai_not_configured` \
             unless a tenant brings its own key"
        );
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let workers = match &roles.worker {
        Some((kinds, concurrency)) => {
            let ctx = leadflow_worker::Ctx::new(cfg.clone(), pool.clone(), queues.clone(), master_key.clone()).await?;
            Some(leadflow_worker::jobs::start(&ctx, kinds, *concurrency).await?)
        }
        None => None,
    };

    if roles.scheduler {
        let redis = cfg.redis.connect().await?;
        let scheduler = leadflow_scheduler::Scheduler {
            queues: queues.clone(),
            redis,
            prefix: cfg.queue_prefix.clone(),
            tasks: leadflow_scheduler::tasks(&cfg),
        };
        tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));
        // One sampler per scheduler process, not per scrape: BullMQ's counts cost Redis calls.
        if cfg.metrics {
            let redis = cfg.redis.connect().await?;
            tasks.push(tokio::spawn(leadflow_scheduler::sample_queues(
                redis,
                pool.clone(),
                queues.keyspace().clone(),
                shutdown_rx.clone(),
            )));
        }
    }

    // Workers and the scheduler have no API port: their probes get a listener of their own.
    let mut ops_addr = None;
    if roles.worker.is_some() || roles.scheduler {
        let listener = tokio::net::TcpListener::bind(cfg.ops_addr)
            .await
            .with_context(|| format!("LEADFLOW_OPS_ADDR: cannot listen on {}", cfg.ops_addr))?;
        ops_addr = Some(listener.local_addr()?);
        tracing::info!(addr = %listener.local_addr()?, "ops listener (/healthz, /readyz)");
        let probe = leadflow_shared::readiness::Probe::new(pool.clone(), &cfg.redis);
        let app = leadflow_api::routes::health::probes(probe, cfg.metrics);
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                tracing::error!(error = %e, "ops listener stopped");
            }
        }));
    }

    let mut http_addr = None;
    if roles.api {
        let listener = tokio::net::TcpListener::bind(cfg.http_addr).await?;
        http_addr = Some(listener.local_addr()?);
        tracing::info!(addr = %listener.local_addr()?, "API listening");
        let state = leadflow_api::AppState::new(cfg.clone(), pool.clone(), queues.clone());
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = leadflow_api::serve(listener, state, stop).await {
                tracing::error!(error = %e, "API server stopped");
            }
        }));
    }

    Ok(Running {
        http_addr,
        ops_addr,
        pool,
        queues,
        shutdown,
        tasks,
        workers,
        shutdown_timeout: cfg.shutdown_timeout,
    })
}

impl Running {
    /// Graceful stop: the API stops accepting and finishes its requests, workers stop
    /// fetching and let in-flight jobs finish (up to `LEADFLOW_SHUTDOWN_TIMEOUT`; what is
    /// still running then is recovered by another worker's stalled check).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(w) = self.workers.take() {
            w.close(self.shutdown_timeout).await;
        }
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(self.shutdown_timeout, t).await;
        }
        self.queues.close().await;
        self.pool.close().await;
    }
}

/// Dropped without [`Running::shutdown`] (an error path): still stop every role, so no
/// worker or scheduler outlives its owner.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(w) = self.workers.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let timeout = self.shutdown_timeout;
                rt.spawn(async move { w.close(timeout).await });
            }
        }
    }
}
