//! The typed job layer over BullMQ (`bullmq-official`). Each kind of work has its own
//! queue so operators can size a pool per kind (`leadflow worker --queues ai,postback`),
//! and each job is one Rust type carrying ids and an attempt number, never a payload:
//! state lives in PostgreSQL. Ids are deterministic, so enqueueing the same logical step
//! twice (a re-run after a crash, the sweeper) is one job while the first still exists.
//!
//! BullMQ's own retries (`attempts`) only cover infrastructure failures (PostgreSQL
//! unreachable, a panic); domain retries — an AI 429, a postback 503 — are new delayed
//! jobs scheduled by the handler with their own policy. `add_bulk` is not atomic in this
//! port, so nothing here uses it.

pub mod fair;
mod jobs;

use std::collections::HashMap;
use std::time::Duration;

use bullmq::types::{BackoffStrategy, KeepJobs, RemoveOnFinish};
use bullmq::{JobOptions, Queue, QueueOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::redis_target::RedisTarget;

pub use jobs::{
    CalendarJob, CalendarStep, DeliverPostback, FlushBurst, GenerateReply, Noop, PollMailbox, ProcessInbound,
    ProcessMedia, SendMessage, Task, Tick,
};

/// One queue per kind of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// Decides when a burst is due and starts its generation.
    Flush,
    /// Calls the AI and stores the reply.
    Ai,
    /// Downloads and understands media (transcription, PDF text, images).
    Media,
    /// Delivers signed postbacks.
    Postback,
    /// Turns stored provider webhooks into lead messages.
    Inbound,
    /// Sends replies and operators' messages through the channel's provider.
    Send,
    /// Periodic housekeeping ticks enqueued by the scheduler.
    Scheduled,
    /// Polls e-mail channels' IMAP mailboxes (slow remote servers get their own pool).
    Mail,
    /// Google Calendar push channels: watch, renew, stop, sync.
    Calendar,
    /// No-op jobs for measuring the queue layer (`leadflow-bench`); never in `ALL`.
    Bench,
}

impl QueueKind {
    pub const ALL: [QueueKind; 9] = [
        Self::Flush,
        Self::Ai,
        Self::Media,
        Self::Postback,
        Self::Inbound,
        Self::Send,
        Self::Scheduled,
        Self::Mail,
        Self::Calendar,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Flush => "flush",
            Self::Ai => "ai",
            Self::Media => "media",
            Self::Postback => "postback",
            Self::Inbound => "inbound",
            Self::Send => "send",
            Self::Scheduled => "scheduled",
            Self::Mail => "mail",
            Self::Calendar => "calendar",
            Self::Bench => "bench",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s.trim())
    }
}

/// A typed job: its queue, its BullMQ job name, its deterministic id.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static {
    const QUEUE: QueueKind;
    const NAME: &'static str;
    /// The same logical step always gets the same id (BullMQ ignores a duplicate add).
    fn job_id(&self) -> String;
}

/// How long one enqueue may take before the caller moves on.
pub const ENQUEUE_BUDGET: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue}: Redis did not take the job within {after:?}")]
    Timeout { queue: &'static str, after: Duration },
    #[error("queue {queue}: {source}")]
    Bull {
        queue: &'static str,
        #[source]
        source: bullmq::Error,
    },
    /// A job that does not serialize (a bug).
    #[error("a job could not be encoded: {0}")]
    Encode(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Where Leadflow's own Redis keys live (rate windows, scheduler leases, calendar-sync
/// locks): `{prefix}-kv:…`, beside the queues' `{prefix}:{queue}:…` and not under it, so
/// a queue browser that discovers queues by key (bull-board and the like) lists only real
/// queues.
pub fn state_prefix(prefix: &str) -> String {
    format!("{prefix}-kv")
}

/// Infrastructure retries: how many times BullMQ re-runs a job whose handler errored.
pub const INFRA_ATTEMPTS: u32 = 8;
/// Name of the custom (jittered, capped) backoff every worker registers.
pub const BACKOFF_NAME: &str = "jittered";

/// Where one install's queues are in Redis: `{prefix}:{queue}:…`, each queue under its
/// own hash tag on a cluster (see [`crate::redis_target`]). The one place that names
/// BullMQ's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    prefix: String,
    tagged: bool,
}

impl Keyspace {
    pub fn new(prefix: &str, target: &RedisTarget) -> Self {
        Self {
            prefix: prefix.to_string(),
            tagged: target.is_cluster(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The queue's name in Redis: its own name, hash-tagged on a cluster.
    pub fn queue_name(&self, kind: QueueKind) -> String {
        if self.tagged {
            format!("{{{}}}", kind.name())
        } else {
            kind.name().to_string()
        }
    }

    /// One of BullMQ's keys of `kind`: `wait`, `active`, a job id, …
    pub fn key(&self, kind: QueueKind, part: &str) -> String {
        format!("{}:{}:{part}", self.prefix, self.queue_name(kind))
    }
}

/// Finished jobs are trimmed by age and count so Redis never grows without bound;
/// PostgreSQL keeps the durable record.
pub fn remove_on_complete() -> RemoveOnFinish {
    RemoveOnFinish::Options(KeepJobs {
        age: Some(3600),
        count: Some(5000),
        limit: None,
    })
}

pub fn remove_on_fail() -> RemoveOnFinish {
    RemoveOnFinish::Options(KeepJobs {
        age: Some(7 * 24 * 3600),
        count: Some(20000),
        limit: None,
    })
}

/// Producer side: a handle on every queue.
#[derive(Clone)]
pub struct Queues {
    queues: std::sync::Arc<HashMap<QueueKind, Queue>>,
    keyspace: Keyspace,
    target: RedisTarget,
    load: std::sync::Arc<fair::TenantLoad>,
}

impl Queues {
    /// Every work queue ([`QueueKind::ALL`]).
    pub async fn connect(target: &RedisTarget, prefix: &str) -> Result<Self, QueueError> {
        Self::connect_to(target, prefix, &QueueKind::ALL).await
    }

    /// The work queues and the `bench` queue: for `leadflow-bench` and the queue layer's
    /// own tests only, so a production install never has a `bench` queue.
    pub async fn connect_with_bench(target: &RedisTarget, prefix: &str) -> Result<Self, QueueError> {
        let mut kinds = QueueKind::ALL.to_vec();
        kinds.push(QueueKind::Bench);
        Self::connect_to(target, prefix, &kinds).await
    }

    async fn connect_to(target: &RedisTarget, prefix: &str, kinds: &[QueueKind]) -> Result<Self, QueueError> {
        let keyspace = Keyspace::new(prefix, target);
        let mut queues = HashMap::new();
        for &kind in kinds {
            let opts = QueueOptions {
                connection: target.bull_options(),
                prefix: prefix.to_string(),
                default_job_options: JobOptions {
                    attempts: Some(INFRA_ATTEMPTS),
                    backoff: Some(BackoffStrategy::Custom(BACKOFF_NAME.to_string())),
                    remove_on_complete: Some(remove_on_complete()),
                    remove_on_fail: Some(remove_on_fail()),
                    ..Default::default()
                },
                skip_version_check: false,
            };
            let queue = Queue::with_options(&keyspace.queue_name(kind), opts)
                .await
                .map_err(|source| QueueError::Bull {
                    queue: kind.name(),
                    source,
                })?;
            queues.insert(kind, queue);
        }
        Ok(Self {
            queues: std::sync::Arc::new(queues),
            keyspace,
            target: target.clone(),
            load: std::sync::Arc::default(),
        })
    }

    pub fn prefix(&self) -> &str {
        self.keyspace.prefix()
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    /// The Redis these queues are on.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    pub fn queue(&self, kind: QueueKind) -> &Queue {
        &self.queues[&kind]
    }

    /// [`enqueue`](Self::enqueue) on behalf of `tenant`, at its fair-share priority (see
    /// [`fair`]): a tenant enqueueing far more than its share waits behind the others.
    pub async fn enqueue_for<J: Job>(&self, tenant: uuid::Uuid, job: &J, delay: Duration) -> Result<(), QueueError> {
        let priority = self.load.priority(tenant);
        tokio::time::timeout(ENQUEUE_BUDGET, self.enqueue_with_retries(job, delay, priority))
            .await
            .map_err(|_| QueueError::Timeout {
                queue: J::QUEUE.name(),
                after: ENQUEUE_BUDGET,
            })?
    }

    /// Adds `job` to its queue, to run after `delay` (zero: now).
    #[tracing::instrument(skip(self), fields(queue = J::QUEUE.name()))]
    pub async fn enqueue<J: Job>(&self, job: &J, delay: Duration) -> Result<(), QueueError> {
        // A Redis that is down would otherwise hold the caller for the port's whole
        // reconnect cycle (minutes). Every enqueue points at state already committed to
        // PostgreSQL, which the sweeper re-enqueues, so giving up quickly loses nothing.
        tokio::time::timeout(ENQUEUE_BUDGET, self.enqueue_with_retries(job, delay, 0))
            .await
            .map_err(|_| QueueError::Timeout {
                queue: J::QUEUE.name(),
                after: ENQUEUE_BUDGET,
            })?
    }

    async fn enqueue_with_retries<J: Job>(&self, job: &J, delay: Duration, priority: u32) -> Result<(), QueueError> {
        // After Redis restarts, each connection fails its first command while it
        // reconnects in the background: a few quick retries ride that out.
        // The request that led here, if any, rides along (see `crate::request_id`).
        let mut data = serde_json::to_value(job).map_err(|e| QueueError::Encode(e.to_string()))?;
        if let (Some(id), Some(fields)) = (crate::request_id::current(), data.as_object_mut()) {
            fields.insert(crate::request_id::FIELD.into(), serde_json::Value::String(id));
        }
        let mut attempt = 0;
        loop {
            let mut add = self.queue(J::QUEUE).add(J::NAME, &data).job_id(job.job_id());
            if !delay.is_zero() {
                add = add.delay(delay);
            }
            if priority > 0 {
                add = add.priority(priority);
            }
            match add.await {
                Ok(_) => return Ok(()),
                Err(bullmq::Error::Redis(e)) if attempt < 4 && (e.is_io_error() || e.is_connection_dropped()) => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "enqueue hit a dropped Redis connection; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(source) => {
                    return Err(QueueError::Bull {
                        queue: J::QUEUE.name(),
                        source,
                    })
                }
            }
        }
    }

    pub async fn close(&self) {
        for q in self.queues.values() {
            q.close().await;
        }
    }
}

/// Milliseconds (possibly negative: overdue) to a delay.
pub fn delay_from_ms(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

/// Exponential backoff with full jitter and a cap (the port's built-in one has neither).
pub fn jittered_backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    use rand::Rng;
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(cap);
    let lo = ceiling / 2;
    let span = (ceiling - lo).as_millis() as u64;
    lo + Duration::from_millis(rand::thread_rng().gen_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..40 {
            let d = jittered_backoff(attempt, Duration::from_millis(500), Duration::from_secs(30));
            assert!(d <= Duration::from_secs(30));
            assert!(d >= Duration::from_millis(250));
        }
    }

    #[test]
    fn queue_names_round_trip() {
        for k in QueueKind::ALL {
            assert_eq!(QueueKind::parse(k.name()), Some(k));
        }
        assert_eq!(QueueKind::parse("nope"), None);
    }

    #[test]
    fn each_queue_has_its_own_hash_tag_on_a_cluster_only() {
        let single = Keyspace::new("lf", &RedisTarget::Single("redis://127.0.0.1:6379".into()));
        let cluster = Keyspace::new("lf", &RedisTarget::Cluster(vec!["redis://127.0.0.1:7000".into()]));
        assert_eq!(single.key(QueueKind::Ai, "wait"), "lf:ai:wait");
        assert_eq!(cluster.key(QueueKind::Ai, "wait"), "lf:{ai}:wait");
        let tags: std::collections::HashSet<String> = QueueKind::ALL.iter().map(|&k| cluster.queue_name(k)).collect();
        assert_eq!(tags.len(), QueueKind::ALL.len());
    }
}

/// How many jobs of one queue are in each of BullMQ's states, read from its keys (the
/// one place that knows their layout). `delayed` counts only jobs due before `due_before`
/// (BullMQ scores a delayed job `timestamp_ms * 0x1000`); `None` counts them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub wait: u64,
    pub prioritized: u64,
    pub active: u64,
    pub delayed: u64,
    pub failed: u64,
    pub completed: u64,
}

/// One queue as an operator sees it (`GET /admin/api/queues`, `leadflow queues`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueSummary {
    pub queue: &'static str,
    /// Waiting and prioritized: for an operator they wait all the same.
    pub waiting: u64,
    pub active: u64,
    pub delayed: u64,
    pub failed: u64,
    pub completed: u64,
    pub paused: bool,
    pub oldest_waiting_seconds: Option<f64>,
    /// Workers connected to it now (by their Redis client names).
    pub workers: usize,
}

/// Every work queue's [`QueueSummary`].
pub async fn summaries(queues: &Queues) -> Result<Vec<QueueSummary>, QueueError> {
    let mut conn = queues.target.connect().await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    for kind in QueueKind::ALL {
        let bull = |source| QueueError::Bull {
            queue: kind.name(),
            source,
        };
        let c = counts(&mut conn, &queues.keyspace, kind, None).await?;
        let q = queues.queue(kind);
        let oldest = oldest_waiting_ms(&mut conn, &queues.keyspace, kind).await?;
        out.push(QueueSummary {
            queue: kind.name(),
            waiting: c.wait + c.prioritized,
            active: c.active,
            delayed: c.delayed,
            failed: c.failed,
            completed: c.completed,
            paused: q.is_paused().await.map_err(bull)?,
            oldest_waiting_seconds: oldest.map(|at| ((now_ms - at).max(0) as f64) / 1000.0),
            workers: q.get_workers().await.map_err(bull)?.len(),
        });
    }
    Ok(out)
}

/// When the oldest job still waiting in `kind` was added (epoch ms), if any: the tail of
/// the wait list or the head of the prioritized set, whichever is older.
pub async fn oldest_waiting_ms(
    conn: &mut impl redis::aio::ConnectionLike,
    keyspace: &Keyspace,
    kind: QueueKind,
) -> redis::RedisResult<Option<i64>> {
    let key = |part: &str| keyspace.key(kind, part);
    let (tail, first): (Option<String>, Vec<String>) = redis::pipe()
        .cmd("LINDEX")
        .arg(key("wait"))
        .arg(-1)
        .cmd("ZRANGE")
        .arg(key("prioritized"))
        .arg(0)
        .arg(0)
        .query_async(conn)
        .await?;
    let mut oldest: Option<i64> = None;
    for id in tail.into_iter().chain(first) {
        let at: Option<i64> = redis::cmd("HGET")
            .arg(key(&id))
            .arg("timestamp")
            .query_async(conn)
            .await?;
        if let Some(at) = at {
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
        }
    }
    Ok(oldest)
}

pub async fn counts(
    conn: &mut impl redis::aio::ConnectionLike,
    keyspace: &Keyspace,
    kind: QueueKind,
    due_before: Option<chrono::DateTime<chrono::Utc>>,
) -> redis::RedisResult<Counts> {
    let key = |part: &str| keyspace.key(kind, part);
    let until = due_before.map_or("+inf".to_owned(), |t| (t.timestamp_millis() * 0x1000).to_string());
    let (wait, prioritized, active, delayed, failed, completed) = redis::pipe()
        .cmd("LLEN")
        .arg(key("wait"))
        .cmd("ZCARD")
        .arg(key("prioritized"))
        .cmd("LLEN")
        .arg(key("active"))
        .cmd("ZCOUNT")
        .arg(key("delayed"))
        .arg("-inf")
        .arg(until)
        .cmd("ZCARD")
        .arg(key("failed"))
        .cmd("ZCARD")
        .arg(key("completed"))
        .query_async(conn)
        .await?;
    Ok(Counts {
        wait,
        prioritized,
        active,
        delayed,
        failed,
        completed,
    })
}
