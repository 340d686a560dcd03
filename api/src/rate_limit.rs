//! Per-tenant request rate limit (token bucket, per API process). A tenant over its rate
//! gets 429 instead of crowding out the others; the limit is `LEADFLOW_TENANT_RATE_LIMIT`
//! requests per second, or the tenant's own `rate_limit_per_sec`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `tenant`; false when the bucket is empty.
    pub fn allow(&self, tenant: Uuid, per_sec: u32) -> bool {
        if per_sec == 0 {
            return true; // 0 = unlimited
        }
        let rate = per_sec as f64;
        let burst = rate * 2.0;
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = map.entry(tenant).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empties_then_refuses() {
        let l = RateLimiter::default();
        let t = Uuid::new_v4();
        let allowed = (0..100).filter(|_| l.allow(t, 10)).count();
        assert!((20..=21).contains(&allowed), "{allowed}");
        assert!(l.allow(Uuid::new_v4(), 10), "other tenants are unaffected");
        assert!(l.allow(t, 0));
    }
}
