//! Leadflow's queue consumers. Each job type has a handler in `jobs/`; `runtime` turns a
//! typed handler into a BullMQ worker with the recovery settings, event draining, timeouts
//! and logging every queue needs. Handlers are idempotent: BullMQ delivers at least once
//! and a killed worker's jobs run again elsewhere.
#![forbid(unsafe_code)]

pub mod ai;
pub mod google_tokens;
pub mod imap;
pub mod jobs;
pub mod media;
pub mod notify;
pub mod runtime;

use std::sync::Arc;

use leadflow_shared::crypto::MasterKey;
use leadflow_shared::queue::Queues;
use leadflow_shared::redis_target::RedisConn;
use leadflow_shared::Config;
use sqlx::PgPool;

/// What every handler can reach.
pub struct Ctx {
    pub cfg: Config,
    pub pool: PgPool,
    pub queues: Queues,
    /// For Leadflow's own keys (locks, send windows) and the reply pub/sub.
    pub redis: RedisConn,
    pub master_key: MasterKey,
    pub ai: ai::AiClient,
    /// SSRF-guarded client for user-given URLs (postbacks).
    pub guarded: reqwest::Client,
    /// SSRF-guarded client for media downloads: follows redirects, checking each hop.
    pub media_http: reqwest::Client,
    pub ssrf: leadflow_shared::ssrf::Policy,
    /// One permit per core for CPU-bound work (PDF parsing), so it cannot starve the
    /// async runtime or pile up beyond what the machine can do at once.
    pub cpu: tokio::sync::Semaphore,
    /// The child process and limits PDFs are read under.
    pub pdf: media::pdf::Sandbox,
}

impl Ctx {
    /// What sending through a provider needs from here.
    pub fn outbound(&self) -> leadflow_providers::Outbound<'_> {
        leadflow_providers::Outbound {
            http: &self.guarded,
            ssrf: &self.ssrf,
        }
    }

    /// Wakes a synchronous `/ai/process` caller waiting for this burst's outcome.
    pub async fn publish_outcome(&self, burst_id: uuid::Uuid) {
        let mut redis = self.redis.clone();
        leadflow_shared::reply_wake::publish(&mut redis, &self.cfg.queue_prefix, burst_id).await;
    }

    pub async fn new(cfg: Config, pool: PgPool, queues: Queues, master_key: MasterKey) -> anyhow::Result<Arc<Self>> {
        let redis = cfg.redis.connect().await?;
        let ai = ai::AiClient::new(cfg.ai_timeout)?;
        let guarded = leadflow_shared::ssrf::guarded_client(
            cfg.allow_private_urls,
            cfg.postback_timeout,
            concat!("leadflow-postback/", env!("CARGO_PKG_VERSION")),
        )?;
        let ssrf = cfg.ssrf_policy();
        let media_http = leadflow_shared::ssrf::guarded_client_following(
            ssrf.clone(),
            5,
            cfg.media.download_timeout,
            concat!("leadflow-media/", env!("CARGO_PKG_VERSION")),
        )?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pdf = media::pdf::Sandbox::from_config(&cfg.media)?;
        Ok(Arc::new(Self {
            cfg,
            pool,
            queues,
            redis,
            master_key,
            ai,
            guarded,
            media_http,
            ssrf,
            cpu: tokio::sync::Semaphore::new(cores),
            pdf,
        }))
    }
}
