//! Fair share between tenants in the queues. BullMQ runs jobs without a priority before
//! prioritized ones, and prioritized ones lowest number first (its group feature, which
//! would do this per tenant, is paid). So each process counts the jobs it enqueues per
//! tenant over a sliding window: a tenant within its share enqueues without a priority,
//! a tenant beyond it gets a priority that grows with its excess. One tenant flooding
//! thousands of messages then queues behind every other tenant's next job, and its own
//! jobs still run oldest first among themselves; when the flood stops, its count decays
//! and it is back at the front. Counting in-process costs no round trip; every process
//! that enqueues applies the same rule to what it sees, which is what fairness needs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Jobs per tenant per [`WINDOW`] that enqueue without a priority.
pub const FAIR_SHARE: u32 = 50;
/// The counting window; the previous window's count is carried, decayed, into the next.
pub const WINDOW: Duration = Duration::from_secs(10);
/// BullMQ's largest priority.
const MAX_PRIORITY: u32 = 2_097_152;

#[derive(Default)]
pub struct TenantLoad {
    counts: Mutex<HashMap<Uuid, (Instant, f64)>>,
}

impl TenantLoad {
    /// Counts one job of `tenant` and returns its priority (`0`: none, at the front).
    pub fn priority(&self, tenant: Uuid) -> u32 {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > 100_000 {
            counts.retain(|_, (at, _)| now.duration_since(*at) < WINDOW * 6);
        }
        let (at, count) = counts.entry(tenant).or_insert((now, 0.0));
        // Exponential decay with the window as its time constant: a smooth sliding count.
        let elapsed = now.duration_since(*at).as_secs_f64() / WINDOW.as_secs_f64();
        *count = *count * (-elapsed).exp() + 1.0;
        *at = now;
        let excess = *count - f64::from(FAIR_SHARE);
        if excess <= 0.0 {
            0
        } else {
            (excess.ceil() as u32).clamp(1, MAX_PRIORITY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_tenant_queues_behind_the_others_and_in_its_own_order() {
        let load = TenantLoad::default();
        let (flood, quiet) = (Uuid::new_v4(), Uuid::new_v4());
        let priorities: Vec<u32> = (0..1000).map(|_| load.priority(flood)).collect();
        assert!(
            priorities[..FAIR_SHARE as usize - 1].iter().all(|p| *p == 0),
            "within its share"
        );
        assert!(priorities[999] > 900, "{}", priorities[999]);
        assert!(
            priorities.windows(2).all(|w| w[0] <= w[1]),
            "its own jobs stay oldest first"
        );
        assert_eq!(load.priority(quiet), 0, "another tenant is at the front");
    }
}
