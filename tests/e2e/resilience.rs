//! Crashes and restarts: the real `leadflow` binary as the worker, killed with SIGKILL or
//! stopped with SIGTERM; a Redis of the test's own, killed and restarted from its AOF.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::media_server::{fixture, MediaServer};
use crate::support::{eventually, TestApp};

fn spawn_worker(app: &TestApp, extra: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(std::env::temp_dir().join(format!(
        "{}-worker-{}.log",
        app.prefix,
        Instant::now().elapsed().as_nanos()
    )))
    .expect("log file");
    app.leadflow_command()
        .arg("worker")
        .envs(extra.iter().copied())
        .env("LEADFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the leadflow binary starts")
}

/// One webhook-id per lead, and every lead has one.
fn webhook_ids_by_lead(app: &TestApp) -> HashMap<String, HashSet<String>> {
    let mut by_lead: HashMap<String, HashSet<String>> = HashMap::new();
    for d in app.receiver.successful() {
        by_lead
            .entry(d.json["lead_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(d.headers["webhook-id"].to_str().unwrap().to_string());
    }
    by_lead
}

#[tokio::test]
async fn kill_9_during_generations_loses_nothing_and_answers_each_burst_once() {
    kill_9_during_generations(TestApp::builder().without_workers().start().await).await;
}

/// Twenty generations in flight in a `leadflow worker` process killed with SIGKILL: a
/// second worker answers every burst, each once. `app` runs no workers of its own.
pub(crate) async fn kill_9_during_generations(app: TestApp) {
    app.set_assistant(json!({"debounce_seconds": 0.2, "max_wait_seconds": 30}))
        .await;
    app.ai.set_latency(Duration::from_secs(4));
    let mut first = spawn_worker(&app, &[]);
    const LEADS: usize = 20;
    for i in 0..LEADS {
        app.process(&app.msg(&format!("lead-k{i}"), &format!("hello {i}"), true))
            .await;
    }
    app.ai.wait_for_requests(LEADS, Duration::from_secs(20)).await;
    // Every generation is in flight in the first worker: kill it.
    first.kill().expect("kill -9");
    first.wait().unwrap();
    let killed_at = Instant::now();
    let mut second = spawn_worker(&app, &[]);
    eventually(
        Duration::from_secs(40),
        "every burst to be delivered after the crash",
        || async { (webhook_ids_by_lead(&app).len() == LEADS).then_some(()) },
    )
    .await;
    let recovered = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by_lead = webhook_ids_by_lead(&app);
    assert_eq!(by_lead.len(), LEADS, "no burst lost");
    for (lead, ids) in &by_lead {
        assert_eq!(ids.len(), 1, "{lead} got {ids:?}: one webhook-id per burst");
    }
    let replies: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE reply_to_burst IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(replies, LEADS as i64, "one stored reply per burst");
    eprintln!("recovery after kill -9: all {LEADS} bursts delivered {recovered:?} after the kill (AI latency 4 s)");
    assert!(
        recovered < Duration::from_secs(15) + Duration::from_secs(4),
        "recovered in {recovered:?}"
    );
    second.kill().ok();
    second.wait().ok();
    app.stop().await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_generations_finish() {
    let app = TestApp::builder().without_workers().start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.ai.set_latency(Duration::from_secs(2));
    let mut worker = spawn_worker(&app, &[("LEADFLOW_SHUTDOWN_TIMEOUT", "20s")]);
    for i in 0..5 {
        app.process(&app.msg(&format!("lead-t{i}"), "hi", true)).await;
    }
    app.ai.wait_for_requests(5, Duration::from_secs(15)).await;
    // The shell's own `kill`: a minimal Debian has no /bin/kill (procps).
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", worker.id()))
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "the worker exits cleanly on SIGTERM: {exit:?}");
    // Its generations finished before it exited: replies are stored and postbacks sent,
    // with no other worker running.
    let replies: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE reply_to_burst IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(replies, 5);
    // Postbacks enqueued during shutdown are delivered by whichever worker runs next.
    let mut next = spawn_worker(&app, &[]);
    app.receiver.wait_for(5, Duration::from_secs(20)).await;
    assert_eq!(webhook_ids_by_lead(&app).len(), 5);
    next.kill().ok();
    next.wait().ok();
    app.stop().await;
}

pub(crate) struct OwnRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnRedis {
    fn start(port: u16, dir: &std::path::Path) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args([
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--hz",
                "100",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)")
    }

    pub(crate) async fn new() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("lf-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Self::start(port, &dir);
        let me = Self { child, port, dir };
        me.wait_ready().await;
        me
    }

    async fn wait_ready(&self) {
        let url = self.url();
        eventually(Duration::from_secs(10), "redis to answer", || {
            let url = url.clone();
            async move {
                let c = redis::Client::open(url).ok()?;
                let mut conn = c.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
            }
        })
        .await;
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) async fn restart(&mut self) {
        self.child = Self::start(self.port, &self.dir);
        self.wait_ready().await;
    }

    async fn crash_and_restart(&mut self) {
        self.crash();
        self.restart().await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn redis_restarted_between_accept_and_flush_loses_nothing() {
    let mut redis = OwnRedis::new().await;
    let app = TestApp::builder().env("LEADFLOW_REDIS_URL", &redis.url()).start().await;
    app.set_assistant(json!({"debounce_seconds": 3.0, "max_wait_seconds": 30}))
        .await;
    for part in ["a", "b", "c"] {
        let (status, body) = app.process(&app.msg("lead-redis", part, true)).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    }
    // Past the AOF's one-second fsync, then a hard crash of Redis and a restart.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    redis.crash_and_restart().await;
    let got = app.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].json["messages_processed"], json!(3));
    assert_eq!(got[0].json["response"], json!("reply to: a\nb\nc"));
    app.settle().await;
    assert_eq!(app.receiver.successful().len(), 1, "answered once");
    app.stop().await;
}

#[tokio::test]
async fn a_message_accepted_while_redis_is_down_is_answered_once_it_is_back() {
    let mut redis = OwnRedis::new().await;
    let app = TestApp::builder().env("LEADFLOW_REDIS_URL", &redis.url()).start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    redis.crash();
    // PostgreSQL has it: the caller is told it is queued even though Redis refused the job.
    let t = Instant::now();
    let (status, body) = app.process(&app.msg("lead-down", "are you there?", true)).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "accepting took {:?} with Redis down",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().await;
    // The scheduler's sweeper finds the overdue burst and flushes it.
    let got = app.receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].json["response"], json!("reply to: are you there?"));
    app.settle().await;
    assert_eq!(app.receiver.successful().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_voice_note_accepted_while_redis_is_down_is_still_transcribed() {
    let mut redis = OwnRedis::new().await;
    let media = MediaServer::start().await;
    let app = TestApp::builder().env("LEADFLOW_REDIS_URL", &redis.url()).start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let url = media.put("/v.ogg", fixture("voice.ogg"), Some("audio/ogg"));
    redis.crash();
    // Both its jobs (media and flush) are refused; PostgreSQL has the message.
    let mut m = app.msg("lead-down-media", "", true);
    m["message_type"] = json!("audio");
    m["url"] = json!(url);
    let t = Instant::now();
    let (status, body) = app.process(&m).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    assert!(t.elapsed() < Duration::from_secs(5), "accepting took {:?}", t.elapsed());
    redis.restart().await;
    // The sweeper flushes the burst; its generation finds the medium never started and
    // starts it (the sweeper would too), then answers with the transcript.
    let got = app.receiver.wait_for(1, Duration::from_secs(40)).await;
    let reply = got[0].json["response"].as_str().unwrap();
    assert!(
        reply.contains("[voice note] transcript of a 4088-byte ogg voice note"),
        "{reply}"
    );
    app.settle().await;
    assert_eq!(app.ai.transcriptions.requests().len(), 1, "transcribed once");
    assert_eq!(app.receiver.successful().len(), 1, "answered once");
    app.stop().await;
}

#[tokio::test]
async fn a_generation_whose_job_was_lost_is_restarted_by_the_sweeper() {
    let app = TestApp::builder().env("LEADFLOW_AI_TIMEOUT", "1s").start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    // A burst left `generating` with no job anywhere (Redis lost it), long enough ago.
    app.process(&app.msg("lead-lost", "hello?", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(10)).await;
    // The receiver answers before the worker records the attempt; wait for that row so the
    // deletes below do not race the worker's insert.
    crate::support::eventually_text(
        &app,
        Duration::from_secs(10),
        "the delivery recorded as delivered",
        "SELECT status FROM deliveries WHERE status = 'delivered'",
    )
    .await;
    sqlx::raw_sql(
        "UPDATE bursts SET status = 'generating', updated_at = now() - interval '10 minutes';
         DELETE FROM delivery_attempts; DELETE FROM deliveries; DELETE FROM messages WHERE reply_to_burst IS NOT NULL;",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let got = app.receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].json["response"], json!("reply to: hello?"));
    let generations: i32 = sqlx::query_scalar("SELECT generations FROM bursts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(generations, 2, "restarted as a new generation");
    app.stop().await;
}

#[tokio::test]
async fn postgres_down_is_a_503_and_accepted_work_resumes_when_it_is_back() {
    let (proxy, app) = crate::support::proxy::app_behind_proxy().await;
    app.set_assistant(json!({"debounce_seconds": 1.0})).await;
    let (status, body) = app.process(&app.msg("lead-pg", "before the outage", true)).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");

    // PostgreSQL goes away before the burst is due.
    proxy.cut();
    let t = Instant::now();
    let (status, body) = app.process(&app.msg("lead-pg2", "during the outage", true)).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], json!("unavailable"));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the client waited {:?}",
        t.elapsed()
    );

    // Stay down past the first burst's due time, so its flush fails and is retried.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.restore();
    let (status, body) = app.process(&app.msg("lead-pg3", "after the outage", true)).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    // The burst accepted before the outage, whose flush fell into it, is answered once.
    let got = app.receiver.wait_for(2, Duration::from_secs(60)).await;
    let mut leads: Vec<_> = got
        .iter()
        .map(|d| d.json["lead_id"].as_str().unwrap().to_string())
        .collect();
    leads.sort();
    assert_eq!(leads, ["lead-pg", "lead-pg3"]);
    app.settle().await;
    assert_eq!(app.receiver.successful().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_taken_while_redis_is_down_is_answered_once_it_is_back() {
    let mut redis = OwnRedis::new().await;
    let providers = crate::support::fake_providers::FakeProviders::start().await;
    let app = TestApp::builder().env("LEADFLOW_REDIS_URL", &redis.url()).start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = crate::inbound::channel(
        &app,
        json!({"name": "WhatsApp", "type": "whatsapp", "provider": "z-api",
               "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F", "base_url": providers.base_url}}),
    )
    .await;
    redis.crash();
    // The provider gets its 2xx (stored in PostgreSQL) and does not retry for hours.
    let payload: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/providers/zapi/webhook-received-text.json")).unwrap();
    let t = Instant::now();
    let (status, out) = crate::inbound::webhook(&app, &ch.path, &payload, &[]).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{out}");
    assert!(t.elapsed() < Duration::from_secs(5), "answering took {:?}", t.elapsed());
    redis.restart().await;
    // The sweeper enqueues the stored event; it is processed and answered once.
    let sent = providers.wait_for(1, Duration::from_secs(40)).await;
    assert!(sent[0].body["message"].as_str().unwrap().starts_with("reply to: Oi!"));
    app.settle().await;
    assert_eq!(providers.sent().len(), 1, "answered once");
    app.stop().await;
}

/// The harness's end-of-test invariants are real: a test that leaves a burst generating
/// (or a job failed for good) fails at `stop`, and the app is cleaned up all the same.
#[tokio::test]
async fn the_harness_fails_a_test_that_leaves_work_behind() {
    use futures::FutureExt;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app.process(&app.msg("lead-left", "hello?", false)).await;
    sqlx::query("UPDATE bursts SET status = 'generating'")
        .execute(&app.pool)
        .await
        .unwrap();
    let db = app.db_name.clone();
    let stopped = std::panic::AssertUnwindSafe(app.stop()).catch_unwind().await;
    let message = stopped
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .expect("stop panics");
    assert!(message.contains("1 bursts still generating"), "{message}");
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&format!("{}/postgres", crate::support::pg_server()))
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&db)
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0, "the database is dropped anyway");
}

/// `settle` waits for the work in flight: right after accepting a debounced message, it
/// returns only once the burst was flushed, generated and its postback delivered.
#[tokio::test]
async fn settle_waits_for_every_queued_and_due_job() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.5})).await;
    app.ai.set_latency(Duration::from_millis(300));
    app.process(&app.msg("lead-settle", "hello?", true)).await;
    app.settle().await;
    assert_eq!(app.ai.request_count(), 1);
    assert_eq!(app.receiver.successful().len(), 1, "delivered before settle returned");
    app.stop().await;
}

/// Redis is rebuildable: every key of the app's prefix deleted (as an operator would fear
/// a lost or flushed Redis) while bursts wait out their debounce, generations are in
/// flight and postbacks wait for their retry. PostgreSQL holds the truth, the sweeper
/// re-derives the lost jobs, and every burst is still answered exactly once.
#[tokio::test]
async fn redis_wiped_mid_pipeline_every_burst_is_still_answered_once() {
    let app = TestApp::builder()
        .env("LEADFLOW_POSTBACK_RETRY_SCHEDULE", "6s,200ms,200ms")
        .start()
        .await;
    app.set_assistant(json!({"debounce_seconds": 1.5, "max_wait_seconds": 30}))
        .await;
    // Retrying: their first postback fails, the retry is a delayed job 6 s out.
    for _ in 0..3 {
        app.receiver.push_status(500);
    }
    for i in 0..3 {
        app.process(&app.msg(&format!("lead-retry{i}"), &format!("retry {i}"), true))
            .await;
    }
    app.receiver.wait_for_any(3, Duration::from_secs(20)).await;
    // Generating: the AI takes 4 s, so these are in flight when Redis goes.
    app.ai.set_latency(Duration::from_secs(4));
    for i in 0..3 {
        app.process(&app.msg(&format!("lead-gen{i}"), &format!("generate {i}"), true))
            .await;
    }
    app.ai.wait_for_requests(6, Duration::from_secs(20)).await;
    // Pending: accepted, their flush job waiting out the debounce.
    for i in 0..3 {
        app.process(&app.msg(&format!("lead-wait{i}"), &format!("wait {i}"), true))
            .await;
    }
    let states: Vec<String> = sqlx::query_scalar("SELECT status::text FROM bursts ORDER BY status::text")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(
        states.iter().filter(|s| *s == "open").count() == 3 && states.iter().any(|s| s == "generating"),
        "the wipe must come with bursts open and generating: {states:?}"
    );
    let retrying: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(retrying, 3, "and postbacks waiting for their retry");

    crate::support::clear_redis_prefix(&app.prefix).await;
    app.ai.set_latency(Duration::ZERO);

    eventually(
        Duration::from_secs(60),
        "every burst answered after Redis was wiped",
        || async { (webhook_ids_by_lead(&app).len() == 9).then_some(()) },
    )
    .await;
    app.settle().await;
    let by_lead = webhook_ids_by_lead(&app);
    assert_eq!(by_lead.len(), 9, "no burst lost: {by_lead:?}");
    for (lead, ids) in &by_lead {
        assert_eq!(ids.len(), 1, "{lead} got {ids:?}: one webhook-id per burst");
    }
    for d in app.receiver.successful() {
        let lead = d.json["lead_id"].as_str().unwrap();
        let asked = lead.trim_start_matches("lead-").trim_end_matches(char::is_numeric);
        let n = lead.chars().last().unwrap();
        let said = match asked {
            "retry" => format!("retry {n}"),
            "gen" => format!("generate {n}"),
            _ => format!("wait {n}"),
        };
        assert_eq!(d.json["response"], json!(format!("reply to: {said}")), "{lead}");
    }
    let replies: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE reply_to_burst IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(replies, 9, "one stored reply per burst");
    // Scheduled work resumed: the waiting bursts' flush jobs were wiped, so only the
    // sweeper — a scheduled tick enqueued after the wipe — can have answered them.
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM bursts WHERE status = 'done'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(done, 9, "every burst done");
    app.stop().await;
}
