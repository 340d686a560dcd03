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
    for part in [
        "INFO",
        "method=GET",
        "route=/backend/channels/{id}",
        "status=404",
        "latency_ms=",
        "request_id=req-abc-123",
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
