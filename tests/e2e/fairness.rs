//! Fair share between tenants: one tenant flooding the queues does not delay another
//! tenant's reply. Asserted by order, not time: when the quiet tenant's reply arrives,
//! most of the flood is still waiting.

use std::time::Duration;

use leadflow_shared::db::tenants::TenantKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn a_flooding_tenant_does_not_delay_another_tenants_reply() {
    // Few workers and a slow model, so the flood is a real backlog.
    let app = TestApp::builder()
        .env("LEADFLOW_WORKER_CONCURRENCY", "8")
        .env("LEADFLOW_TENANT_RATE_LIMIT", "0")
        .start()
        .await;
    app.ai.set_latency(Duration::from_millis(100));
    app.set_assistant(json!({"debounce_seconds": 0.05})).await;
    let quiet = app.other_tenant(TenantKind::Agency, None).await;
    let (status, _) = app
        .send_as(
            &quiet.api_key,
            reqwest::Method::PATCH,
            &format!("/backend/assistants/{}", quiet.assistant_id),
            Some(&json!({"debounce_seconds": 0.05})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    const FLOOD: usize = 400;
    let app_ref = &app;
    for chunk in (0..FLOOD).collect::<Vec<_>>().chunks(50) {
        let sends = chunk.iter().map(|i| {
            let body = app_ref.msg(&format!("flood-{i}"), "oi", true);
            async move { app_ref.process(&body).await.0 }
        });
        for status in futures::future::join_all(sends).await {
            assert_eq!(status, StatusCode::ACCEPTED);
        }
    }
    let mut m = app.msg("quiet-lead", "oi, tudo bem?", true);
    m["tenant_id"] = json!(quiet.tenant_id);
    let (status, out) = app.post_as(&quiet.api_key, "/ai/process", &m).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");

    let quiet_reply = |d: &crate::support::receiver::Delivery| d.json["lead_id"] == json!("quiet-lead");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let flood_done_before = loop {
        let got = app.receiver.deliveries();
        if let Some(at) = got.iter().position(quiet_reply) {
            break got[..at].len();
        }
        assert!(tokio::time::Instant::now() < deadline, "no reply for the quiet tenant");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("the quiet tenant was answered after {flood_done_before} of {FLOOD} flood replies");
    assert!(
        flood_done_before < FLOOD / 2,
        "the quiet tenant waited for {flood_done_before} of the flood's {FLOOD} replies"
    );
    // The flood is still answered, every message.
    app.receiver.wait_for(FLOOD + 1, Duration::from_secs(60)).await;
    app.stop().await;
}
