//! Prometheus metrics on the API port and the ops listener: the documented families with
//! their labels, routes by template (never a raw id), and an exposition `promtool check
//! metrics` accepts.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{eventually, TestApp};

async fn scrape(app: &TestApp, base: &str) -> String {
    let resp = app.http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    resp.text().await.unwrap()
}

/// The value of the series whose line starts with `series` (name and labels as written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/services.sh installs Debian's prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test]
async fn every_role_exposes_the_documented_families_and_promtool_accepts_them() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let (status, body) = app.process(&app.msg("lead-metrics", "oi", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.process(&app.msg("lead-metrics-2", "oi", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(10)).await;
    let id = uuid::Uuid::new_v4();
    let (status, _) = app.get(&format!("/backend/channels/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A medium understood, and a channel to count.
    let media = crate::support::media_server::MediaServer::start().await;
    let photo = media.put(
        "/p.png",
        crate::support::media_server::fixture("photo.png"),
        Some("image/png"),
    );
    let mut m = app.msg("lead-metrics-3", "a foto", true);
    m["message_type"] = json!("image");
    m["url"] = json!(photo);
    app.process(&m).await;
    app.receiver.wait_for(2, Duration::from_secs(15)).await;
    crate::official::create_gupshup_channel(&app, "http://127.0.0.1:9").await;
    app.settle().await;

    let ops = app.ops.clone().unwrap();
    let api = scrape(&app, &app.base).await;
    let at_least_one = |series: &str| {
        let v = value(&api, series).unwrap_or(0.0);
        assert!(v >= 1.0, "{series} = {v}\n{api}");
    };
    at_least_one(r#"leadflow_http_requests_total{route="/ai/process",method="POST",status="200"}"#);
    at_least_one(r#"leadflow_http_requests_total{route="/backend/channels/{id}",method="GET",status="404"}"#);
    assert!(!api.contains(&id.to_string()), "a raw id became a label");
    at_least_one(r#"leadflow_http_request_duration_seconds_count{route="/ai/process",method="POST"}"#);
    at_least_one(r#"leadflow_messages_accepted_total{source="ai_process"}"#);
    at_least_one(r#"leadflow_ai_requests_total{outcome="ok"}"#);
    at_least_one(r#"leadflow_ai_tokens_total{kind="prompt"}"#);
    at_least_one(r#"leadflow_jobs_total{queue="ai",outcome="completed"}"#);
    at_least_one(r#"leadflow_job_duration_seconds_count{queue="ai"}"#);
    at_least_one(r#"leadflow_postbacks_total{outcome="delivered"}"#);
    at_least_one(r#"leadflow_bursts_total{outcome="done"}"#);
    at_least_one("leadflow_flush_lateness_seconds_count");
    assert!(
        value(&api, r#"leadflow_db_pool_connections{state="idle"}"#).is_some(),
        "{api}"
    );
    at_least_one(r#"leadflow_media_total{kind="image",outcome="done"}"#);
    at_least_one(r#"leadflow_scheduler_runs_total{task="sweep",outcome="ok"}"#);
    // Readiness as a gauge (its value is this process's, shared by the suite's apps, so
    // only its presence is asserted here; the alert on it is unit-tested with promtool).
    for check in ["postgres", "redis", "migrations"] {
        let series = format!(r#"leadflow_ready{{check="{check}"}}"#);
        assert!(value(&api, &series).is_some(), "{series} missing");
    }
    at_least_one("process_resident_memory_bytes");
    at_least_one("process_open_fds");
    at_least_one("process_start_time_seconds");
    assert!(value(&api, "process_cpu_seconds_total").is_some(), "{api}");
    // Channels are sampled every 5 s by the scheduler.
    eventually(Duration::from_secs(15), "the channel gauge", || async {
        let text = scrape(&app, &app.base).await;
        (value(&text, r#"leadflow_channels{provider="gupshup",connection="unknown"}"#) == Some(1.0)).then_some(())
    })
    .await;
    for state in ["waiting", "active", "delayed", "failed", "completed"] {
        let series = format!(r#"leadflow_queue_jobs{{queue="ai",state="{state}"}}"#);
        assert!(value(&api, &series).is_some(), "{series} missing");
    }
    // The ops listener serves the same process's metrics.
    let from_ops = eventually(Duration::from_secs(5), "the ops listener's metrics", || async {
        let text = scrape(&app, &ops).await;
        text.contains("leadflow_jobs_total").then_some(text)
    })
    .await;
    assert!(from_ops.contains("leadflow_ai_requests_total"));

    let (ok, said) = promtool_check(&api);
    assert!(ok, "promtool check metrics: {said}");
    // And promtool does complain about a broken exposition (the check is real).
    let (ok, _) = promtool_check("leadflow_broken{label=\"x\" 1\n");
    assert!(!ok);
    app.stop().await;
}

/// `LEADFLOW_METRICS=false`: nothing is served on `/metrics` (404 on the API port and the
/// ops listener); the probes stay.
#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = TestApp::builder().env("LEADFLOW_METRICS", "false").start().await;
    for base in [app.base.clone(), app.ops.clone().unwrap()] {
        let resp = app.http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{base}");
        let resp = app.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{base}");
    }
    app.stop().await;
}

/// `LEADFLOW_METRICS_TENANT_LABEL=true`: the job, AI and postback families carry the
/// tenant's id; an app without it records the same families with no tenant (the recorder
/// is the test process's, so each app looks only for its own tenant's id).
#[tokio::test]
async fn the_tenant_label_is_on_only_where_asked_for() {
    let labelled = TestApp::builder()
        .env("LEADFLOW_METRICS_TENANT_LABEL", "true")
        .start()
        .await;
    let plain = TestApp::start().await;
    for app in [&labelled, &plain] {
        app.set_assistant(json!({"debounce_seconds": 0.1})).await;
        app.process(&app.msg("lead-tenant-label", "oi", true)).await;
        app.receiver.wait_for(1, Duration::from_secs(10)).await;
        app.settle().await;
    }
    let text = scrape(&labelled, &labelled.base).await;
    let tenant = labelled.tenant.tenant_id.to_string();
    let of_tenant = |family: &str, labels: &str| {
        let series = format!(r#"{family}{{{labels}tenant="{tenant}"}}"#);
        let v = value(&text, &series).unwrap_or(0.0);
        assert!(v >= 1.0, "{series} = {v}");
    };
    of_tenant("leadflow_jobs_total", r#"queue="flush",outcome="completed","#);
    of_tenant("leadflow_jobs_total", r#"queue="ai",outcome="completed","#);
    of_tenant("leadflow_jobs_total", r#"queue="postback",outcome="completed","#);
    of_tenant("leadflow_job_duration_seconds_count", r#"queue="ai","#);
    of_tenant("leadflow_ai_requests_total", r#"outcome="ok","#);
    of_tenant("leadflow_ai_tokens_total", r#"kind="prompt","#);
    of_tenant("leadflow_ai_request_duration_seconds_count", "");
    of_tenant("leadflow_postbacks_total", r#"outcome="delivered","#);
    of_tenant("leadflow_postback_duration_seconds_count", "");
    // Not on the other families, and not for the app that did not ask for it.
    for line in text.lines().filter(|l| l.contains(&tenant)) {
        assert!(
            [
                "leadflow_jobs_",
                "leadflow_job_duration",
                "leadflow_ai_",
                "leadflow_postback"
            ]
            .iter()
            .any(|f| line.starts_with(f)),
            "a tenant label outside the job, AI and postback families: {line}"
        );
    }
    assert!(
        !text.contains(&plain.tenant.tenant_id.to_string()),
        "the label is off by default"
    );
    let (ok, said) = promtool_check(&text);
    assert!(ok, "promtool check metrics: {said}");
    labelled.stop().await;
    plain.stop().await;
}

/// The shipped alert rules load, and their unit tests (deploy/prometheus/alerts_test.yml)
/// pass: an AI error rate, exhausted postbacks and a growing backlog each fire.
#[test]
fn the_shipped_alert_rules_check_and_pass_their_unit_tests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool is installed (scripts/services.sh installs Debian's prometheus)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
