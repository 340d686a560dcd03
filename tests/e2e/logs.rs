//! Logs an operator can follow: one access line per request with its route template,
//! status, latency and `x-request-id` (the caller's, or a new one, echoed back), and
//! `LEADFLOW_LOG_FORMAT=json` for log pipelines.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, TestApp};

/// `GET /backend/channels/{id}` for an id that does not exist, with request id
/// `req-abc-123`: a 404.
async fn unknown_channel(app: &TestApp, base: &str, id: uuid::Uuid) -> reqwest::Response {
    let resp = app
        .http
        .get(format!("{base}/backend/channels/{id}"))
        .bearer_auth(app.key())
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    resp
}

#[tokio::test]
async fn every_request_gets_an_echoed_request_id() {
    let app = TestApp::start().await;
    let id = uuid::Uuid::new_v4();
    let resp = unknown_channel(&app, &app.base, id).await;
    assert_eq!(
        resp.headers()["x-request-id"],
        "req-abc-123",
        "the caller's id is echoed"
    );
    let made = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 32, "a new id when the caller sends none: {made}");
    // A header that is not a sane token is replaced, not echoed.
    let odd = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.headers()["x-request-id"].len(), 32);
    app.stop().await;
}

/// `leadflow api` as its own process (its logs are its own, not the test binary's shared
/// subscriber), with `format` logs; returns its base URL and its stderr lines.
async fn spawn_api(app: &TestApp, format: &str) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    let port = crate::resilience::free_port();
    let mut child = app
        .leadflow_command()
        .arg("api")
        .env("LEADFLOW_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("LEADFLOW_LOG_FORMAT", format)
        .env("LEADFLOW_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "the spawned API to answer", || async {
        let r = app.http.get(format!("{base}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    (child, base, rx)
}

#[tokio::test]
async fn one_access_line_per_request_by_route_template() {
    let app = TestApp::start().await;
    let (mut child, base, lines) = spawn_api(&app, "text").await;
    let id = uuid::Uuid::new_v4();
    unknown_channel(&app, &base, id).await;
    let line = eventually(Duration::from_secs(10), "the access line", || async {
        lines.try_iter().find(|l| l.contains("req-abc-123"))
    })
    .await;
    child.kill().ok();
    child.wait().ok();
    let rest: Vec<String> = lines.try_iter().collect();
    let tenant = format!("tenant_id={}", app.tenant.tenant_id);
    for part in [
        "INFO",
        "method=GET",
        "route=/backend/channels/{id}",
        "status=404",
        "latency_ms=",
        "request_id=req-abc-123",
        &tenant,
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    assert!(!line.contains(&id.to_string()), "the raw path is not logged: {line}");
    assert!(!rest.iter().any(|l| l.contains("req-abc-123")), "one line per request");
    app.stop().await;
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    let app = TestApp::start().await;
    let (mut child, base, rx) = spawn_api(&app, "json").await;
    let r = app
        .http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "json-req-1")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let access = eventually(Duration::from_secs(10), "the JSON access line", || async {
        rx.try_iter().find(|l| l.contains("json-req-1"))
    })
    .await;
    child.kill().ok();
    child.wait().ok();
    let v: Value = serde_json::from_str(&access).expect("one JSON object per line");
    assert_eq!(v["level"], json!("INFO"));
    assert_eq!(v["request_id"], json!("json-req-1"));
    assert_eq!(v["route"], json!("/healthz"));
    assert_eq!(v["status"], json!(200));

    // A format it does not know is refused at start, naming the variable.
    let out = app
        .leadflow_command()
        .arg("api")
        .env("LEADFLOW_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LEADFLOW_LOG_FORMAT"));
    app.stop().await;
}

/// A bug in a handler is the contract's 500, not a dropped connection, and the API goes
/// on serving. (The route that panics exists only here: it is served behind the same edge
/// as every real route, `leadflow_api::edge`.)
#[tokio::test]
async fn a_panicking_handler_is_a_json_500_and_the_api_keeps_serving() {
    use axum::routing::get;
    let app = TestApp::start().await;
    let queues = app.queues().await;
    let state = leadflow_api::AppState::new(app.config(), app.pool.clone(), queues);
    let routes = axum::Router::new()
        .route(
            "/boom",
            get(|| async {
                if true {
                    panic!("a bug in a handler")
                } else {
                    "never"
                }
            }),
        )
        .route("/fine", get(|| async { "fine" }));
    let base = crate::support::serve(leadflow_api::edge(routes, state)).await;
    for _ in 0..3 {
        let resp = app
            .http
            .get(format!("{base}/boom"))
            .header("x-request-id", "req-panic")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        assert_eq!(
            resp.headers()["x-request-id"],
            "req-panic",
            "the edge's layers still ran"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"success": false, "error": {"code": "internal", "message": "an internal error occurred; it was logged"}})
        );
    }
    let resp = app.http.get(format!("{base}/fine")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "fine");
    app.stop().await;
}

/// One request id from the HTTP request to the postback: recorded on the message, and on
/// the log span of every job the request led to (flush, AI, postback), in a worker that is
/// another process.
#[tokio::test]
async fn one_request_id_follows_a_message_from_the_request_to_the_postback() {
    let app = TestApp::builder().without_workers().start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let mut worker = app
        .leadflow_command()
        .arg("worker")
        .env("LEADFLOW_LOG_FORMAT", "json")
        .env("LEADFLOW_LOG", "warn,leadflow_worker::runtime=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = worker.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let resp = app
        .http
        .post(format!("{}/ai/process", app.base))
        .bearer_auth(app.key())
        .header("x-request-id", "req-trace-42")
        .json(&app.msg("lead-trace", "quanto custa?", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.receiver.wait_for(1, Duration::from_secs(20)).await;

    let (status, conv) = app.get("/backend/leads/lead-trace/messages").await;
    assert_eq!(status, 200);
    assert_eq!(conv["data"][0]["request_id"], json!("req-trace-42"), "{conv}");

    let mut queues = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    let wanted = ["ai", "flush", "postback"];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !wanted.iter().all(|q| queues.contains(*q)) && std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        for span in v["spans"].as_array().into_iter().flatten() {
            if span["name"] == "job" && span["request_id"] == "req-trace-42" {
                queues.insert(span["queue"].as_str().unwrap_or_default().to_owned());
            }
        }
        seen.push(line);
    }
    worker.kill().ok();
    worker.wait().ok();
    assert!(
        wanted.iter().all(|q| queues.contains(*q)),
        "jobs logged with the request id: {queues:?}\n{}",
        seen.join("\n")
    );
    app.stop().await;
}
