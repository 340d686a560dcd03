//! Liveness and readiness, the same for every role. Live (`/healthz`) is the process
//! answering at all, touching no backend: an orchestrator restarts a process that is not.
//! Ready (`/readyz`) is PostgreSQL and Redis answering (a Redis Cluster: with every slot
//! served) and the schema at this binary's migration version: a load balancer sends no
//! traffic, and a deploy waits, until it is.
//! Each check is bounded by a short timeout, so a probe never hangs on a dead backend.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use crate::redis_target::RedisTarget;

/// How long each check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Probe {
    pool: PgPool,
    redis: RedisTarget,
}

/// The outcome: `status` is `ok` only when every check is.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    pub postgres: String,
    pub redis: String,
    pub migrations: String,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ok"
    }
}

impl Probe {
    pub fn new(pool: PgPool, redis: &RedisTarget) -> Self {
        Self {
            pool,
            redis: redis.clone(),
        }
    }

    /// The pool it checks (the process's own).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn check(&self) -> Readiness {
        let (postgres, redis, migrations) = tokio::join!(self.postgres(), self.redis(), self.migrations());
        let ok = |r: &Result<(), String>| r.is_ok();
        let status = if ok(&postgres) && ok(&redis) && ok(&migrations) {
            "ok"
        } else {
            "unavailable"
        };
        for (check, r) in [("postgres", &postgres), ("redis", &redis), ("migrations", &migrations)] {
            crate::metrics::ready(check, r.is_ok());
        }
        let show = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".to_owned());
        Readiness {
            status,
            checks: Checks {
                postgres: show(postgres),
                redis: show(redis),
                migrations: show(migrations),
            },
        }
    }

    async fn postgres(&self) -> Result<(), String> {
        bounded(async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(|e| format!("unreachable: {e}"))
        })
        .await
    }

    async fn redis(&self) -> Result<(), String> {
        // A fresh connection each time: a probe must see Redis as it is now.
        bounded(self.redis.check()).await
    }

    async fn migrations(&self) -> Result<(), String> {
        bounded(async {
            match crate::db::schema_is_current(&self.pool).await {
                Ok(()) => Ok(()),
                Err(e @ crate::db::DbError::SchemaBehind { .. }) => Err(format!("behind: {e}")),
                Err(e) => Err(format!("cannot read the schema version: {e}")),
            }
        })
        .await
    }
}

async fn bounded(check: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")))
}
