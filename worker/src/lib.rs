//! Leadflow's queue consumers. Each job type has a handler in `jobs/`; `runtime` turns a
//! typed handler into a BullMQ worker with the recovery settings, event draining, timeouts
//! and logging every queue needs. Handlers are idempotent: BullMQ delivers at least once
//! and a killed worker's jobs run again elsewhere.
#![forbid(unsafe_code)]

pub mod ai;
pub mod jobs;
pub mod runtime;

use std::sync::Arc;

use leadflow_shared::crypto::MasterKey;
use leadflow_shared::queue::Queues;
use leadflow_shared::Config;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

/// What every handler can reach.
pub struct Ctx {
    pub cfg: Config,
    pub pool: PgPool,
    pub queues: Queues,
    pub redis: ConnectionManager,
    pub master_key: MasterKey,
    pub ai: ai::AiClient,
    /// SSRF-guarded client for user-given URLs (postbacks).
    pub guarded: reqwest::Client,
}

impl Ctx {
    /// Wakes a synchronous `/ai/process` caller waiting for this burst's outcome.
    pub async fn publish_outcome(&self, burst_id: uuid::Uuid) {
        let mut redis = self.redis.clone();
        leadflow_shared::notify::publish(&mut redis, &self.cfg.queue_prefix, burst_id).await;
    }

    pub async fn new(cfg: Config, pool: PgPool, queues: Queues, master_key: MasterKey) -> anyhow::Result<Arc<Self>> {
        let redis = redis::Client::open(cfg.redis_url.as_str())?
            .get_connection_manager()
            .await?;
        let ai = ai::AiClient::new(cfg.ai_timeout)?;
        let guarded = leadflow_shared::ssrf::guarded_client(
            cfg.allow_private_urls,
            cfg.postback_timeout,
            concat!("leadflow-postback/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Arc::new(Self {
            cfg,
            pool,
            queues,
            redis,
            master_key,
            ai,
            guarded,
        }))
    }
}
