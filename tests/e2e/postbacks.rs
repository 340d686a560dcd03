//! Postback delivery: retries, exhaustion, manual retry, redirects, SSRF.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{eventually, verify_signature, TestApp};

async fn app() -> TestApp {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    app
}

#[tokio::test]
async fn failing_twice_then_2xx_is_delivered_on_attempt_three_with_the_same_webhook_id() {
    let app = app().await;
    app.receiver.push_status(503);
    app.receiver.push_status(500);
    app.process(&app.msg("lead-r", "hi", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(15)).await;
    let all = app.receiver.deliveries();
    assert_eq!(all.len(), 3);
    let ids: Vec<_> = all
        .iter()
        .map(|d| d.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "webhook-id is stable across retries: {ids:?}"
    );
    verify_signature(&app.tenant.postback_secret, &all[2]);
    let (status, list) = app.get("/backend/deliveries?status=delivered").await;
    assert_eq!(status, StatusCode::OK);
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (_, detail) = app.get(&format!("/backend/deliveries/{id}")).await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "every attempt is a row");
    assert_eq!(attempts[0]["status_code"], json!(503));
    assert_eq!(attempts[2]["status_code"], json!(200));
    assert_eq!(detail["data"]["attempts"], json!(3));
    app.stop().await;
}

#[tokio::test]
async fn exhausted_deliveries_fail_and_a_manual_retry_delivers_them() {
    let app = app().await;
    app.receiver.set_default_status(500);
    app.process(&app.msg("lead-e", "hi", true)).await;
    // Schedule of three delays: four attempts, then failed.
    let failed = eventually(Duration::from_secs(15), "the delivery to fail", || async {
        let (_, list) = app.get("/backend/deliveries?status=failed").await;
        list["data"].as_array().filter(|a| !a.is_empty()).map(|a| a[0].clone())
    })
    .await;
    assert_eq!(failed["attempts"], json!(4));
    assert_eq!(app.receiver.deliveries().len(), 4);
    let webhook_id = failed["webhook_id"].as_str().unwrap().to_string();

    app.receiver.set_default_status(200);
    let id = failed["id"].as_str().unwrap();
    let (status, body) = app.post(&format!("/backend/deliveries/{id}/retry"), &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = app.receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].headers["webhook-id"].to_str().unwrap(),
        webhook_id,
        "same webhook-id"
    );
    verify_signature(&app.tenant.postback_secret, &got[0]);
    eventually(Duration::from_secs(5), "status delivered", || async {
        let (_, d) = app.get(&format!("/backend/deliveries/{id}")).await;
        (d["data"]["status"] == json!("delivered")).then_some(())
    })
    .await;
    // A delivered one cannot be retried.
    let (status, _) = app.post(&format!("/backend/deliveries/{id}/retry"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_410_stops_retrying() {
    let app = app().await;
    app.receiver.push_redirect("http://127.0.0.1:1/elsewhere");
    app.receiver.push_status(410);
    app.process(&app.msg("lead-3xx", "hi", true)).await;
    let failed = eventually(Duration::from_secs(10), "the delivery to fail", || async {
        let (_, list) = app.get("/backend/deliveries?status=failed").await;
        list["data"].as_array().filter(|a| !a.is_empty()).map(|a| a[0].clone())
    })
    .await;
    assert_eq!(
        failed["attempts"],
        json!(2),
        "redirect failed attempt 1; 410 stopped at attempt 2"
    );
    app.settle().await;
    let all = app.receiver.deliveries();
    assert_eq!(all.len(), 2, "the redirect was not followed and nothing came after 410");
    assert_eq!(all[0].status_returned, 302);
    app.stop().await;
}

#[tokio::test]
async fn a_private_postback_url_is_refused_without_a_request() {
    let app = TestApp::builder()
        .env("LEADFLOW_ALLOW_PRIVATE_URLS", "false")
        .start()
        .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
    ] {
        let mut m = app.msg("lead-ssrf", "hi", true);
        m["postback_url"] = json!(url);
        let (status, body) = app.process(&m).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["error"]["field"], json!("postback_url"));
    }
    // A media URL gets the same check.
    let mut m = app.msg("lead-ssrf", "look", true);
    m["message_type"] = json!("image");
    m["url"] = json!("http://169.254.169.254/latest/meta-data/iam");
    let (status, body) = app.process(&m).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], json!("url"));
    app.stop().await;
}

#[tokio::test]
async fn a_receivers_retry_after_is_honoured() {
    let app = app().await;
    app.receiver.push_retry_after(503, 2);
    app.process(&app.msg("lead-ra", "hi", true)).await;
    app.receiver.wait_for(1, Duration::from_secs(15)).await;
    let all = app.receiver.wait_for_any(2, Duration::from_secs(1)).await;
    let gap = all[1].at.duration_since(all[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "waited the receiver's Retry-After (2 s), not the 200 ms schedule: {gap:?}"
    );
    app.stop().await;
}
