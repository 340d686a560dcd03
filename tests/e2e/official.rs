//! Official WhatsApp (Meta Cloud, Gupshup): signed or secret webhooks in, the send API out,
//! the 24-hour window (a template outside it, or a clear failure when there is none), and
//! asynchronous failures (131047) marking the message failed.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::fake_providers::FakeProviders;
use crate::support::TestApp;

const META_TEXT: &str = include_str!("../fixtures/providers/meta-cloud/webhook-text.json");
const GUPSHUP_TEXT: &str = include_str!("../fixtures/providers/gupshup/v2-inbound-text.json");
pub(crate) const APP_SECRET: &str = "6f1d2c3b4a5e6f7a8b9c0d1e2f3a4b5c";

pub(crate) fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) async fn post_raw(app: &TestApp, path: &str, body: &[u8], headers: &[(&str, String)]) -> StatusCode {
    let mut req = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status()
}

/// The Meta Cloud channel the tests use, sending to `base_url`; extra credentials merged in.
pub(crate) fn meta_channel(base_url: &str, extra: Value) -> Value {
    let mut body = json!({"name": "WhatsApp oficial", "type": "whatsapp", "provider": "meta-cloud",
        "credentials": {"access_token": "EAAGsystemusertoken1234567890", "phone_number_id": "158072934066266",
                        "app_secret": APP_SECRET, "verify_token": "verify-me-please", "base_url": base_url}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body["credentials"][k] = v.clone();
    }
    body
}

/// Creates the Meta Cloud channel and returns its webhook path.
pub(crate) async fn create_meta_channel(app: &TestApp, base_url: &str, extra: Value) -> String {
    let (status, ch) = app.post("/backend/channels", &meta_channel(base_url, extra)).await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    format!("/webhooks/{}", ch["id"].as_str().unwrap())
}

/// Creates the Gupshup channel the tests use, sending to `base_url`.
pub(crate) async fn create_gupshup_channel(app: &TestApp, base_url: &str) -> Value {
    let (status, ch) = app
        .post(
            "/backend/channels",
            &json!({"name": "Gupshup", "type": "whatsapp", "provider": "gupshup",
                    "credentials": {"api_key": "8d5f0c2e7a1b4c3d9e6f0a1b2c3d4e5f", "app_name": "AcmeImoveis",
                                    "source": "5511912345678", "base_url": base_url}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    ch
}

async fn outbox(app: &TestApp) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT status, template, error FROM outbox ORDER BY created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn meta_cloud_signed_in_window_aware_out_and_failures_reported_later() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let (status, ch) = app
        .post(
            "/backend/channels",
            &meta_channel(&providers.base_url, json!({"template_name": "reengajamento_lead"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    let id = ch["id"].as_str().unwrap();
    let path = format!("/webhooks/{id}");

    // The subscription handshake.
    let hub = |token: &str| {
        format!(
            "{}{path}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            app.base
        )
    };
    let resp = app.http.get(hub("verify-me-please")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "1158201444");
    assert_eq!(
        app.http.get(hub("guess")).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Signed by Meta or refused.
    let body = META_TEXT.as_bytes();
    assert_eq!(
        post_raw(&app, &path, body, &[("x-hub-signature-256", "sha256=00".into())]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post_raw(&app, &path, body, &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post_raw(&app, &path, body, &[("x-hub-signature-256", sign(body))]).await,
        StatusCode::OK
    );
    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].path, "/v23.0/158072934066266/messages");
    assert_eq!(sent[0].headers["authorization"], "Bearer EAAGsystemusertoken1234567890");
    assert_eq!(sent[0].body["type"], json!("text"));
    assert_eq!(sent[0].body["to"], json!("5511987654321"));
    assert!(sent[0].body["text"]["body"]
        .as_str()
        .unwrap()
        .starts_with("reply to: Oi! Vi o anúncio"));

    // Meta reports later that this message failed (131047): it is marked failed.
    let status_hook = json!({"object": "whatsapp_business_account", "entry": [{"id": "112535025189792", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5511912345678", "phone_number_id": "158072934066266"},
            "statuses": [{"id": sent[0].id, "status": "failed", "timestamp": "1732290000",
                          "recipient_id": "5511987654321",
                          "errors": [{"code": 131047, "title": "Re-engagement message",
                                      "message": "Re-engagement message",
                                      "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]}]}}]}]});
    let raw = serde_json::to_vec(&status_hook).unwrap();
    assert_eq!(
        post_raw(&app, &path, &raw, &[("x-hub-signature-256", sign(&raw))]).await,
        StatusCode::OK
    );
    crate::support::eventually_text(
        &app,
        Duration::from_secs(10),
        "the reply marked failed",
        "SELECT status FROM outbox WHERE status = 'failed'",
    )
    .await;
    let rows = outbox(&app).await;
    assert_eq!(rows[0].0, "failed");
    assert_eq!(
        rows[0].2.as_deref(),
        Some("outside the 24-hour window: send a template"),
        "{rows:?}"
    );

    // Outside the window (the lead last wrote 25 h ago) an operator's message goes out as the template.
    sqlx::query("UPDATE lead_channels SET last_inbound_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (_, user) = app.post("/backend/users", &json!({"name": "Ana"})).await;
    let lead = "/backend/leads/+5511987654321/messages";
    let (status, out) = app
        .post(
            lead,
            &json!({"channel_id": id, "user_id": user["id"], "content": "Oi Mariana, ainda tem interesse?"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let sent = providers.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].body["type"], json!("template"));
    assert_eq!(sent[1].body["template"]["name"], json!("reengajamento_lead"));
    assert_eq!(sent[1].body["template"]["language"]["code"], json!("pt_BR"));
    // Without a template, the send fails with a reason, and nothing free-form goes out.
    let (status, _) = app
        .patch(
            &format!("/backend/channels/{id}"),
            &json!({"credentials": {"template_name": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.post(
        lead,
        &json!({"channel_id": id, "user_id": user["id"], "content": "Alô?"}),
    )
    .await;
    app.settle().await;
    assert_eq!(providers.sent().len(), 2);
    let rows = outbox(&app).await;
    assert_eq!(
        rows[1],
        ("sent".to_string(), Some("reengajamento_lead".to_string()), None)
    );
    assert_eq!(rows[2].0, "failed");
    assert!(rows[2].2.as_deref().unwrap().contains("24-hour window"), "{rows:?}");
    app.stop().await;
}

#[tokio::test]
async fn gupshup_in_with_its_secret_out_through_its_form_api() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = create_gupshup_channel(&app, &providers.base_url).await;
    let path = ch["webhook_path"].as_str().unwrap();
    let payload: Value = serde_json::from_str(GUPSHUP_TEXT).unwrap();
    let wrong = format!("/webhooks/{}?token=nope", ch["id"].as_str().unwrap());
    assert_eq!(
        post_raw(&app, &wrong, GUPSHUP_TEXT.as_bytes(), &[]).await,
        StatusCode::UNAUTHORIZED
    );
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].path, "/wa/api/v1/msg");
    assert_eq!(sent[0].headers["apikey"], "8d5f0c2e7a1b4c3d9e6f0a1b2c3d4e5f");
    assert_eq!(sent[0].body["channel"], json!("whatsapp"));
    assert_eq!(sent[0].body["source"], json!("5511912345678"));
    assert_eq!(sent[0].body["destination"], json!("5511987654321"));
    assert_eq!(sent[0].body["src.name"], json!("AcmeImoveis"));
    let message: Value = serde_json::from_str(sent[0].body["message"].as_str().unwrap()).unwrap();
    assert_eq!(message["type"], json!("text"));
    assert!(message["text"]
        .as_str()
        .unwrap()
        .starts_with("reply to: Oi! Vi o anúncio"));
    app.settle().await;
    let provider_id: Option<String> = sqlx::query_scalar("SELECT provider_message_id FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(provider_id.as_deref(), Some(sent[0].id.as_str()));
    app.stop().await;
}
