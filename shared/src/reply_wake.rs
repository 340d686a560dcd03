//! Waking synchronous `/ai/process` callers. The AI worker publishes a burst's id on one
//! Redis channel after committing its outcome; each API process keeps one subscriber
//! connection and wakes the matching waiter. The waiter re-reads PostgreSQL on every
//! wake-up and on a slow safety poll, so a notification lost to a Redis blip costs
//! latency, never an answer. On a Redis Cluster the subscriber listens on one node (a
//! publish reaches every node over the cluster bus) and moves to the next seed node when
//! that one goes away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionLike;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::redis_target::RedisTarget;

/// Synchronous `/ai/process` callers waiting in this API process, per tenant: one tenant
/// holding thousands of open requests cannot take every connection and worker slot.
#[derive(Default)]
pub struct SyncWaits {
    counts: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// A held slot; dropping it frees the slot.
pub struct SyncSlot {
    counts: Arc<Mutex<HashMap<Uuid, usize>>>,
    tenant: Uuid,
}

impl SyncWaits {
    /// A slot for `tenant` if fewer than `max` of its callers wait (`0`: no cap).
    pub fn acquire(&self, tenant: Uuid, max: usize) -> Option<SyncSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(tenant).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(SyncSlot {
            counts: self.counts.clone(),
            tenant,
        })
    }
}

impl Drop for SyncSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

pub fn channel(prefix: &str) -> String {
    format!("{prefix}:replies")
}

/// Publishes that `burst_id` has an outcome. Best effort: waiters also poll.
pub async fn publish(conn: &mut impl ConnectionLike, prefix: &str, burst_id: Uuid) {
    let res: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg(channel(prefix))
        .arg(burst_id.to_string())
        .query_async(conn)
        .await;
    if let Err(e) = res {
        tracing::warn!(%burst_id, error = %e, "could not publish reply notification; the caller will poll");
    }
}

type Waiters = Mutex<HashMap<Uuid, Vec<oneshot::Sender<()>>>>;

/// The API side: waiters keyed by burst id.
#[derive(Default)]
pub struct ReplyWaiters {
    waiters: Waiters,
}

impl ReplyWaiters {
    /// Starts the subscriber task (it reconnects on its own) and returns the registry.
    pub fn spawn(target: RedisTarget, prefix: String) -> Arc<Self> {
        let me = Arc::new(Self::default());
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            for url in target.node_urls().iter().cycle() {
                let Some(_) = weak.upgrade() else { return };
                if let Err(e) = Self::listen(url, &prefix, &weak).await {
                    tracing::warn!(error = %e, "reply subscriber lost its connection; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        me
    }

    async fn listen(url: &str, prefix: &str, weak: &std::sync::Weak<Self>) -> redis::RedisResult<()> {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel(prefix)).await?;
        let mut stream = pubsub.on_message();
        while let Some(msg) = stream.next().await {
            let Some(me) = weak.upgrade() else { return Ok(()) };
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            if let Ok(id) = text.parse::<Uuid>() {
                me.wake(id);
            }
        }
        Ok(())
    }

    fn wake(&self, id: Uuid) {
        let senders = self.lock().remove(&id).unwrap_or_default();
        for s in senders {
            let _ = s.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<()>>>> {
        // A poisoned map only ever holds senders; keep serving.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in `id` before the work is enqueued, so no wake-up is missed.
    pub fn register(&self, id: Uuid) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(id).or_default().push(tx);
        rx
    }

    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
    }
}
