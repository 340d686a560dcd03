//! Request rate limits, shared by every API process through Redis: a fixed one-second
//! window per (scope, key) counted with one pipelined `INCR` + `PEXPIRE`, so ten API
//! replicas still give a tenant its rate, not ten times it. Scopes:
//!
//! - `ai`: `/ai/process` per tenant (`LEADFLOW_TENANT_RATE_LIMIT`, or the tenant's own
//!   `rate_limit_per_sec`);
//! - `backend`: `/backend/*` per tenant (`LEADFLOW_BACKEND_RATE_LIMIT`);
//! - `webhook`: `/webhooks/{id}` per channel (`LEADFLOW_WEBHOOK_RATE_LIMIT`), counted after
//!   the call is verified, so nobody can spend a channel's budget with forged calls.
//!
//! Over the limit is a 429 with `Retry-After`. When Redis cannot answer (within 250 ms)
//! each process falls back to its own token bucket, and asks Redis again only after a
//! short back-off: a Redis outage neither slows every request nor lifts every limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use leadflow_shared::redis_target::{Impatient, RedisConn, RedisTarget};

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: try again after this long.
    Limited(Duration),
}

pub struct RateLimiter {
    target: RedisTarget,
    /// Connected on first use, so a process starts while Redis is away.
    redis: tokio::sync::OnceCell<RedisConn>,
    prefix: String,
    local: Mutex<HashMap<String, (f64, Instant)>>,
    /// After Redis failed to answer, it is not asked again before this: a Redis outage
    /// must not add a timeout to every request.
    redis_down_until: Mutex<Option<Instant>>,
}

/// How long the limiter uses only its own buckets after Redis failed to answer.
const REDIS_BACKOFF: Duration = Duration::from_secs(2);

impl RateLimiter {
    /// A limiter over `target` (connected on the first check).
    pub fn new(target: &RedisTarget, prefix: &str) -> Self {
        Self {
            target: target.clone(),
            redis: tokio::sync::OnceCell::new(),
            prefix: prefix.to_string(),
            local: Mutex::default(),
            redis_down_until: Mutex::default(),
        }
    }

    /// Redis, unless it failed to answer within the back-off.
    async fn redis_usable(&self) -> Option<RedisConn> {
        {
            let down = self.redis_down_until.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*down, Some(until) if Instant::now() < until) {
                return None;
            }
        }
        let limits = Impatient {
            timeout: Duration::from_millis(250),
            retries: 1,
        };
        match self
            .redis
            .get_or_try_init(|| self.target.connect_impatient(limits))
            .await
        {
            Ok(conn) => Some(conn.clone()),
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        }
    }

    fn redis_failed(&self, e: &redis::RedisError) {
        tracing::debug!(error = %e, "rate limit not shared (Redis); using this process's own");
        *self.redis_down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + REDIS_BACKOFF);
    }

    /// Counts one request of `key` in `scope` against `per_sec` (`0`: unlimited).
    pub async fn check(&self, scope: &str, key: impl std::fmt::Display, per_sec: u32) -> Decision {
        if per_sec == 0 {
            return Decision::Allowed;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let window = now_ms / 1000;
        let name = format!(
            "{}:rl:{scope}:{key}",
            leadflow_shared::queue::state_prefix(&self.prefix)
        );
        if let Some(mut conn) = self.redis_usable().await {
            let counted: redis::RedisResult<(i64,)> = redis::pipe()
                .incr(format!("{name}:{window}"), 1)
                .pexpire(format!("{name}:{window}"), 2000)
                .ignore()
                .query_async(&mut conn)
                .await;
            match counted {
                Ok((n,)) if n > i64::from(per_sec) => {
                    return Decision::Limited(Duration::from_millis(((window + 1) * 1000 - now_ms) as u64));
                }
                Ok(_) => return Decision::Allowed,
                Err(e) => self.redis_failed(&e),
            }
        }
        self.local(&name, per_sec)
    }

    /// This process's token bucket (burst of two seconds' worth).
    fn local(&self, name: &str, per_sec: u32) -> Decision {
        let rate = f64::from(per_sec);
        let burst = rate * 2.0;
        let now = Instant::now();
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = map.entry(name.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Decision::Allowed
        } else {
            Decision::Limited(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

/// A fair share of this process's PostgreSQL pool at ingest: one tenant's concurrent
/// accepts hold at most half the pool, so a flooding tenant's requests queue among
/// themselves while another tenant's accept still finds a free connection. They wait,
/// they are not refused.
pub struct IngestShare {
    per_tenant: usize,
    tenants: Mutex<HashMap<uuid::Uuid, std::sync::Arc<tokio::sync::Semaphore>>>,
}

impl IngestShare {
    pub fn new(pool_size: u32) -> Self {
        Self {
            per_tenant: (pool_size as usize / 2).max(2),
            tenants: Mutex::default(),
        }
    }

    /// Waits for one of `tenant`'s slots; the slot is held until the permit is dropped.
    pub async fn enter(&self, tenant: uuid::Uuid) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = {
            let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 10_000 {
                let full = self.per_tenant;
                map.retain(|_, s| s.available_permits() < full);
            }
            map.entry(tenant)
                .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(self.per_tenant)))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_bucket_empties_then_refuses() {
        let l = RateLimiter::new(&RedisTarget::Single("redis://127.0.0.1:1".into()), "lft-none");
        let allowed = {
            let mut n = 0;
            for _ in 0..100 {
                if l.local("t:a", 10) == Decision::Allowed {
                    n += 1;
                }
            }
            n
        };
        assert!((20..=21).contains(&allowed), "{allowed}");
        assert_eq!(l.local("t:b", 10), Decision::Allowed, "other keys are unaffected");
        assert_eq!(l.check("ai", "x", 0).await, Decision::Allowed, "0 = unlimited");
    }

    #[tokio::test]
    async fn with_redis_unreachable_each_process_still_limits() {
        // Nothing listens on port 1: every check falls back to the local bucket, quickly.
        let l = RateLimiter::new(&RedisTarget::Single("redis://127.0.0.1:1".into()), "lft-down");
        let started = Instant::now();
        let mut allowed = 0;
        for _ in 0..30 {
            if l.check("ai", "tenant", 5).await == Decision::Allowed {
                allowed += 1;
            }
        }
        assert!((10..=11).contains(&allowed), "{allowed}: the local bucket's burst");
        assert!(matches!(l.check("ai", "tenant", 5).await, Decision::Limited(_)));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "one slow check, not thirty: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn one_tenant_holds_at_most_half_the_pool() {
        let share = IngestShare::new(8);
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(share.enter(a).await.unwrap());
        }
        let fifth = tokio::time::timeout(Duration::from_millis(50), share.enter(a)).await;
        assert!(fifth.is_err(), "the fifth of A's accepts waits");
        assert!(share.enter(b).await.is_some(), "B's goes through");
        held.pop();
        assert!(share.enter(a).await.is_some(), "a freed slot is A's again");
    }
}
