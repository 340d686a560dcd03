//! The end-to-end harness. `TestApp` starts the whole of Leadflow in-process (API,
//! workers, scheduler — the same `leadflow::start` the binary runs) against a fresh
//! PostgreSQL database, a unique Redis key prefix, a fake OpenAI-compatible server and a
//! postback receiver, and creates one tenant. Tests talk to it over real HTTP.

pub mod browser;
pub mod pgbouncer;
pub mod proxy;
pub mod redis_cluster;

// The fakes of the outside services live in `leadflow-testkit`, shared with the benchmark.
pub use leadflow_testkit::{
    fake_ai, fake_google, fake_mail, fake_providers, fake_status, fake_transcriptions, media_server, receiver, serve,
};

use std::time::Duration;

use leadflow::{Roles, Running};
use leadflow_shared::db::tenants::{self, CreatedTenant, TenantKind};
use leadflow_shared::queue::Queues;
use leadflow_shared::redis_target::RedisTarget;
use leadflow_shared::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};

pub use fake_ai::{FakeAi, Scripted};
pub use receiver::Receiver;

/// The PostgreSQL server tests use (`LEADFLOW_TEST_PG`, default the local one).
pub fn pg_server() -> String {
    std::env::var("LEADFLOW_TEST_PG").unwrap_or_else(|_| "postgres://127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("LEADFLOW_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The suite's one Redis, as Leadflow's config names it.
pub fn redis_target() -> RedisTarget {
    RedisTarget::Single(redis_url())
}

pub struct TestApp {
    pub base: String,
    /// The ops listener (`/healthz`, `/readyz`), when the app runs workers or the scheduler.
    pub ops: Option<String>,
    pub ai: FakeAi,
    pub receiver: Receiver,
    pub tenant: CreatedTenant,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub env: Vec<(String, String)>,
    pub db_name: String,
    pub prefix: String,
    running: Option<Running>,
    /// The database and Redis keys are gone (by `stop`, or else by `Drop`).
    cleaned: bool,
}

pub struct Builder {
    env: Vec<(String, String)>,
    /// The PostgreSQL server the app connects to (default [`pg_server`]).
    pg: Option<String>,
    /// Create and migrate the database directly, and start the app with
    /// `LEADFLOW_MIGRATE_ON_START=false` (as behind PgBouncer, where migrations' session
    /// lock has no place).
    migrate_directly: bool,
    roles: fn(&Config) -> Roles,
}

impl Builder {
    /// Overrides a `LEADFLOW_*` setting.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Connect the app to PostgreSQL through `server` (e.g. a cuttable proxy); the
    /// harness still creates and drops the database directly.
    pub fn pg_via(mut self, server: &str) -> Self {
        self.pg = Some(server.to_string());
        self
    }

    /// Migrations run directly against PostgreSQL before the app starts, and the app does
    /// not migrate (`leadflow migrate` first, then the roles through a pooler).
    pub fn migrated_directly(mut self) -> Self {
        self.migrate_directly = true;
        self
    }

    /// Use `cluster` (a Redis Cluster of the test's own) instead of the suite's Redis.
    pub fn redis_cluster(self, cluster: &redis_cluster::RedisCluster) -> Self {
        let mut me = self.env("LEADFLOW_REDIS_CLUSTER_NODES", &cluster.nodes().join(","));
        me.env.retain(|(k, _)| k != "LEADFLOW_REDIS_URL");
        me
    }

    /// Only the API: workers run elsewhere (a spawned binary).
    pub fn without_workers(mut self) -> Self {
        self.roles = |_| Roles::api_only();
        self
    }

    pub async fn start(self) -> TestApp {
        init_logs();
        let ai = FakeAi::start().await;
        let receiver = Receiver::start().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("lf_test_{}", &id[..16]);
        let prefix = format!("lft{}", &id[..12]);
        let mut env: Vec<(String, String)> = vec![
            (
                "LEADFLOW_DATABASE_URL".into(),
                format!("{}/{db_name}", self.pg.clone().unwrap_or_else(pg_server)),
            ),
            ("LEADFLOW_REDIS_URL".into(), redis_url()),
            ("LEADFLOW_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("LEADFLOW_OPS_ADDR".into(), "127.0.0.1:0".into()),
            ("LEADFLOW_AI_BASE_URL".into(), ai.base_url.clone()),
            ("LEADFLOW_AI_API_KEY".into(), "sk-test".into()),
            (
                "LEADFLOW_MASTER_KEY".into(),
                leadflow_shared::crypto::MasterKey::generate().to_encoded(),
            ),
            ("LEADFLOW_ALLOW_PRIVATE_URLS".into(), "true".into()),
            ("LEADFLOW_QUEUE_PREFIX".into(), prefix.clone()),
            ("LEADFLOW_POSTBACK_RETRY_SCHEDULE".into(), "200ms,200ms,200ms".into()),
            ("LEADFLOW_POSTBACK_TIMEOUT".into(), "5s".into()),
            ("LEADFLOW_SYNC_TIMEOUT".into(), "20s".into()),
            ("LEADFLOW_WORKER_CONCURRENCY".into(), "300".into()),
            ("LEADFLOW_SWEEP_INTERVAL".into(), "1s".into()),
            ("LEADFLOW_DB_MAX_CONNECTIONS".into(), "8".into()),
            ("LEADFLOW_SHUTDOWN_TIMEOUT".into(), "5s".into()),
            ("LEADFLOW_AI_TIMEOUT".into(), "10s".into()),
            // Connection checks run at start and on wall-clock boundaries: left on, an app
            // would check its Z-API/Evolution fakes mid-test (taking a scripted failure
            // meant for a send, or finding the channel disconnected and holding its
            // sends). Tests of the checks set their own interval.
            ("LEADFLOW_HEALTH_CHECK_INTERVAL".into(), "off".into()),
            // The app runs inside the test binary: PDFs are read by the real `leadflow`.
            ("LEADFLOW_PDF_EXTRACTOR".into(), env!("CARGO_BIN_EXE_leadflow").into()),
        ];
        for (k, v) in self.env {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        }
        if self.migrate_directly {
            let mut direct = env.clone();
            direct.retain(|(k, _)| k != "LEADFLOW_DATABASE_URL");
            direct.push(("LEADFLOW_DATABASE_URL".into(), format!("{}/{db_name}", pg_server())));
            let direct = Config::from_sources(&direct).expect("test config is valid");
            let pool = leadflow_shared::db::connect_and_migrate(&direct)
                .await
                .expect("migrations apply");
            pool.close().await;
            env.retain(|(k, _)| k != "LEADFLOW_MIGRATE_ON_START");
            env.push(("LEADFLOW_MIGRATE_ON_START".into(), "false".into()));
        }
        let cfg = Config::from_sources(&env).expect("test config is valid");
        let roles = (self.roles)(&cfg);
        let running = leadflow::start(cfg.clone(), roles).await.expect("leadflow starts");
        let pool = running.pool.clone();
        let key = cfg.master_key.clone().expect("tests set a master key");
        let tenant = tenants::create(&pool, &key, "Test tenant", TenantKind::Agency, None)
            .await
            .expect("tenant");
        let base = format!("http://{}", running.http_addr.expect("api role"));
        let ops = running.ops_addr.map(|a| format!("http://{a}"));
        TestApp {
            base,
            ops,
            ai,
            receiver,
            tenant,
            pool,
            http: reqwest::Client::new(),
            env,
            db_name,
            prefix,
            running: Some(running),
            cleaned: false,
        }
    }
}

impl TestApp {
    pub fn builder() -> Builder {
        Builder {
            env: Vec::new(),
            pg: None,
            migrate_directly: false,
            roles: Roles::all,
        }
    }

    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn config(&self) -> Config {
        Config::from_sources(&self.env).expect("config")
    }

    pub fn key(&self) -> &str {
        &self.tenant.api_key
    }

    /// Producer handles on this app's queues (its Redis, its prefix).
    pub async fn queues(&self) -> Queues {
        Queues::connect(&self.config().redis, &self.prefix)
            .await
            .expect("the app's Redis answers")
    }

    /// A connection to this app's Redis and where its queues are there.
    pub async fn redis(
        &self,
    ) -> (
        leadflow_shared::redis_target::RedisConn,
        leadflow_shared::queue::Keyspace,
    ) {
        let cfg = self.config();
        let conn = cfg.redis.connect().await.expect("the app's Redis answers");
        (conn, leadflow_shared::queue::Keyspace::new(&self.prefix, &cfg.redis))
    }

    /// Creates another tenant (optionally a client of `parent`).
    pub async fn other_tenant(&self, kind: TenantKind, parent: Option<uuid::Uuid>) -> CreatedTenant {
        let key = self.config().master_key.expect("master key");
        tenants::create(&self.pool, &key, "Other", kind, parent)
            .await
            .expect("tenant")
    }

    /// A `user` text message for `lead` with this app's tenant and receiver.
    pub fn msg(&self, lead: &str, content: &str, debounce: bool) -> Value {
        let mut m = json!({
            "tenant_id": self.tenant.tenant_id,
            "lead_id": lead,
            "role": "user",
            "content": content,
            "message_type": "text",
            "debounce": debounce,
        });
        if debounce {
            m["postback_url"] = json!(self.receiver.url);
        }
        m
    }

    /// Sends a request as `key` and returns the status and the JSON body (Null if none).
    pub async fn send_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send_as(key, reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_as(self.key(), path, body).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send_as(self.key(), reqwest::Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send_as(self.key(), reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Waits until the (only) burst has `status`.
    pub async fn wait_burst_status(&self, status: &str) {
        eventually(
            Duration::from_secs(10),
            &format!("the burst to be {status}"),
            || async {
                let s: Option<String> = sqlx::query_scalar("SELECT status FROM bursts LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .unwrap();
                (s.as_deref() == Some(status)).then_some(())
            },
        )
        .await;
    }

    pub async fn process(&self, body: &Value) -> (StatusCode, Value) {
        self.post("/ai/process", body).await
    }

    /// Sets fields of the tenant's default assistant.
    pub async fn set_assistant(&self, patch: Value) {
        let (status, body) = self
            .patch(&format!("/backend/assistants/{}", self.tenant.assistant_id), &patch)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Stops Leadflow gracefully (as SIGTERM would) and keeps the harness alive.
    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// The `leadflow` binary with this app's settings (its database, Redis prefix, keys),
    /// for tests that need a role or a command as a process of its own.
    pub fn leadflow_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_leadflow"));
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// Waits until nothing more is about to happen, instead of sleeping before asserting
    /// that nothing more happened: no job waiting, active, prioritized or due within a
    /// second and a half in any work queue (ticks and mailbox polls aside) and no
    /// webhook event pending, continuously for a whole sweep interval (and at least a
    /// second), so that periodic work — the sweeper re-enqueueing something, a poll, a
    /// check — has had its chance to happen. Panics after 30 s.
    pub async fn settle(&self) {
        const HORIZON_MS: i64 = 1500;
        let (mut conn, keyspace) = self.redis().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let quiet_for = self.config().sweep_interval.max(Duration::from_secs(1)) + Duration::from_millis(200);
        let mut quiet_since: Option<tokio::time::Instant> = None;
        while quiet_since.is_none_or(|t| t.elapsed() < quiet_for) {
            let mut busy: Vec<String> = Vec::new();
            let due = chrono::Utc::now() + chrono::Duration::milliseconds(HORIZON_MS);
            for kind in leadflow_shared::queue::QueueKind::ALL {
                // Periodic by nature (ticks, mailbox polls): never idle, and not work a
                // test waits for; what they start lands in the other queues.
                if matches!(
                    kind,
                    leadflow_shared::queue::QueueKind::Scheduled | leadflow_shared::queue::QueueKind::Mail
                ) {
                    continue;
                }
                let c = leadflow_shared::queue::counts(&mut conn, &keyspace, kind, Some(due))
                    .await
                    .unwrap_or_default();
                if c.wait + c.active + c.prioritized + c.delayed > 0 {
                    busy.push(format!("{}: {c:?}", kind.name()));
                }
            }
            let events: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_events WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
            if events > 0 {
                busy.push(format!("{events} webhook events pending"));
            }
            quiet_since = match (busy.is_empty(), quiet_since) {
                (true, Some(t)) => Some(t),
                (true, None) => Some(tokio::time::Instant::now()),
                (false, _) => None,
            };
            if tokio::time::Instant::now() > deadline {
                panic!("never settled: {busy:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Checks the end-of-test invariants (as crates.io's `TestApp` does), stops everything
    /// and drops the database and the Redis keys. Without it, `Drop` still cleans up.
    pub async fn stop(mut self) {
        let problems = self.invariants().await;
        self.shutdown().await;
        self.pool.close().await;
        drop_database(&self.db_name).await;
        clear_redis_prefix(&self.prefix).await;
        self.cleaned = true;
        assert!(problems.is_empty(), "left behind at the end of the test: {problems:?}");
    }

    /// What a finished test must not leave: jobs that failed for good in a queue (an
    /// error the test did not see) and bursts still generating.
    async fn invariants(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let cfg = self.config();
        let keyspace = leadflow_shared::queue::Keyspace::new(&self.prefix, &cfg.redis);
        if let Ok(mut conn) = cfg.redis.connect().await {
            for kind in leadflow_shared::queue::QueueKind::ALL {
                let c = leadflow_shared::queue::counts(&mut conn, &keyspace, kind, None)
                    .await
                    .unwrap_or_default();
                if c.failed > 0 {
                    problems.push(format!("{} failed jobs in queue {}", c.failed, kind.name()));
                }
            }
        }
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bursts WHERE status = 'generating'")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0);
        if n > 0 {
            problems.push(format!("{n} bursts still generating"));
        }
        problems
    }
}

/// A test that panics (or never calls `stop`) still leaves no database or Redis keys.
impl Drop for TestApp {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // The roles stop through `Running`'s own Drop; the cleanup needs a runtime of its
        // own, since this one may be the panicking test's.
        let (db, prefix) = (self.db_name.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    drop_database(&db).await;
                    clear_redis_prefix(&prefix).await;
                });
            }
        })
        .join();
    }
}

pub async fn drop_database(name: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(&format!("{}/postgres", pg_server())).await {
        let _ = sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
            .execute(&mut c)
            .await;
    }
}

pub async fn clear_redis_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    // The queues' keys and Leadflow's own (`queue::state_prefix`).
    let own = leadflow_shared::queue::state_prefix(prefix);
    for pattern in [format!("{prefix}:*"), format!("{own}:*")] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
        }
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `sql` gives a row whose text column is not NULL, and returns it.
pub async fn eventually_text(app: &TestApp, timeout: Duration, what: &str, sql: &str) -> String {
    eventually(timeout, what, || async {
        sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            .flatten()
    })
    .await
}

/// Resident memory of this process, in KiB (the test binary runs Leadflow in-process).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Verifies a postback with the official Standard Webhooks library.
pub fn verify_signature(secret: &str, d: &receiver::Delivery) {
    let wh = standardwebhooks::Webhook::new(secret).expect("secret parses");
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let v = d
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("postback has no {name} header"));
        headers.insert(name, v.clone());
    }
    wh.verify(&d.body, &headers)
        .expect("postback signature verifies with the standardwebhooks library");
}

/// The user turn (last message) of a recorded chat request.
pub fn last_user_turn(body: &Value) -> String {
    fake_ai::messages(body)
        .into_iter()
        .rev()
        .find(|(role, _)| role == "user")
        .map(|(_, text)| text)
        .unwrap_or_default()
}

/// `LEADFLOW_TEST_LOG=debug` (an env filter) shows Leadflow's logs while debugging a test.
fn init_logs() {
    if let Ok(filter) = std::env::var("LEADFLOW_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
