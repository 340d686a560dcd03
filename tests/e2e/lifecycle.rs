//! Personal data has a lifecycle: erased on request (`DELETE /backend/leads/{lead_id}`),
//! exported on request (`GET …/export`), and removed by housekeeping once past its
//! `LEADFLOW_RETENTION_*`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::official::create_gupshup_channel;
use crate::support::fake_providers::FakeProviders;
use crate::support::media_server::{fixture, MediaServer};
use crate::support::{eventually, TestApp};

const GUPSHUP_TEXT: &str = include_str!("../fixtures/providers/gupshup/v2-inbound-text.json");
/// The lead the Gupshup fixture's sender becomes, and the digits its payloads carry.
const PHONE: &str = "+5511987654321";
const DIGITS: &str = "5511987654321";

/// The Gupshup fixture as a new message with this provider id.
fn gupshup_message(id: &str) -> Value {
    let mut v: Value = serde_json::from_str(GUPSHUP_TEXT).unwrap();
    v["payload"]["id"] = json!(id);
    v
}

async fn webhook(app: &TestApp, ch: &Value, body: &Value) {
    let path = ch["webhook_path"].as_str().unwrap();
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .delete(format!("{}{path}", app.base))
        .bearer_auth(app.key())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// Rows anywhere that still hold `needle` in a column that carries personal data.
async fn mentions(app: &TestApp, needle: &str) -> i64 {
    let sql = "SELECT (SELECT count(*) FROM messages WHERE content LIKE '%' || $1 || '%' OR url LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM inbound_events WHERE payload::text LIKE '%' || $1 || '%' OR sender LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM webhook_payloads WHERE payload::text LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM deliveries WHERE payload LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM outbox WHERE content LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM media WHERE text LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM notifications WHERE payload LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM lead_identities WHERE value LIKE '%' || $1 || '%')
                    + (SELECT count(*) FROM leads WHERE external_id LIKE '%' || $1 || '%')";
    sqlx::query_scalar(sql).bind(needle).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn an_erased_lead_leaves_no_personal_data_and_its_phone_starts_a_new_lead() {
    let providers = FakeProviders::start().await;
    let media = MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = create_gupshup_channel(&app, &providers.base_url).await;
    // The lead writes on WhatsApp and is answered there...
    webhook(&app, &ch, &gupshup_message("wamid-first")).await;
    providers.wait_for(1, Duration::from_secs(15)).await;
    // ...and the business's CRM posts a photo for the same lead, answered by postback.
    let photo = media.put("/crm/photo.png", fixture("photo.png"), Some("image/png"));
    let mut m = app.msg(PHONE, "a foto da fachada", true);
    m["message_type"] = json!("image");
    m["url"] = json!(photo);
    let (status, _) = app.process(&m).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Another lead of the tenant, who must not be touched.
    app.process(&app.msg("lead-keep", "quero visitar", true)).await;
    app.receiver.wait_for(2, Duration::from_secs(20)).await;
    app.settle().await;

    // The export holds everything stored about the lead.
    let (status, export) = app.get(&format!("/backend/leads/{PHONE}/export")).await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["lead"]["lead_id"], json!(PHONE));
    assert!(
        export["identities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "phone" && i["value"] == PHONE),
        "{export}"
    );
    assert_eq!(export["channels"].as_array().unwrap().len(), 1, "{export}");
    let messages = export["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages.iter().filter_map(|m| m["content"].as_str()).collect();
    assert!(contents.iter().any(|c| c.contains("Vila Mariana")), "{contents:?}");
    assert!(contents.contains(&"a foto da fachada"), "{contents:?}");
    assert_eq!(
        messages.iter().filter(|m| m["role"] == "assistant").count(),
        2,
        "both replies"
    );
    let image = messages.iter().find(|m| m["message_type"] == "image").unwrap();
    assert_eq!(image["media"]["status"], json!("done"), "{image}");
    let postbacks = export["postbacks"].as_array().unwrap();
    assert_eq!(postbacks.len(), 1, "{export}");
    assert_eq!(postbacks[0]["payload"]["lead_id"], json!(PHONE));
    assert_eq!(postbacks[0]["status"], json!("delivered"));
    let shell: uuid::Uuid = export["lead"]["id"].as_str().unwrap().parse().unwrap();
    assert!(mentions(&app, DIGITS).await > 0 && mentions(&app, "Vila Mariana").await > 0);

    let (status, erased) = delete(&app, &format!("/backend/leads/{PHONE}")).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let e = &erased["erased"];
    assert_eq!(e["messages"], json!(4), "{erased}");
    assert_eq!(e["media"], json!(1), "{erased}");
    assert_eq!(e["postbacks"], json!(1), "{erased}");
    assert_eq!(e["sends"], json!(1), "{erased}");
    assert_eq!(e["lead_channels"], json!(1), "{erased}");
    assert!(e["identities"].as_u64().unwrap() >= 1, "{erased}");
    assert!(e["raw_payloads"].as_u64().unwrap() >= 1, "{erased}");
    assert_eq!(mentions(&app, DIGITS).await, 0, "the phone is nowhere");
    assert_eq!(mentions(&app, "Vila Mariana").await, 0, "nor what the lead wrote");
    assert_eq!(mentions(&app, "fachada").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_payloads").await, 0);
    // An anonymous record stays: the shell with its bursts and the counts.
    let (erased_at, counted): (bool, Value) =
        sqlx::query_as("SELECT erased_at IS NOT NULL, erased FROM leads WHERE id = $1")
            .bind(shell)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(erased_at);
    assert_eq!(counted["messages"], json!(4));
    let bursts: i64 = sqlx::query_scalar("SELECT count(*) FROM bursts WHERE lead_id = $1 AND postback_url IS NULL")
        .bind(shell)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(bursts, 2, "the two conversations are still counted, without their URLs");
    // The other lead is untouched.
    let (status, kept) = app.get("/backend/leads/lead-keep/messages").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kept["data"].as_array().unwrap().len(), 2, "{kept}");

    // Gone: a repeat, the conversation and the export are 404s.
    assert_eq!(
        delete(&app, &format!("/backend/leads/{PHONE}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/backend/leads/{PHONE}/messages")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/backend/leads/{PHONE}/export")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app.get(&format!("/backend/leads/erased:{shell}/export")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the shell is not a lead");

    // The same phone writes again: a new lead, which knows nothing of the old one.
    webhook(&app, &ch, &gupshup_message("wamid-after-erasure")).await;
    providers.wait_for(2, Duration::from_secs(15)).await;
    app.settle().await;
    let (status, fresh) = app.get(&format!("/backend/leads/{PHONE}/export")).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    assert_ne!(fresh["lead"]["id"], json!(shell.to_string()), "a new lead");
    assert_eq!(
        fresh["messages"].as_array().unwrap().len(),
        2,
        "its own message and reply only"
    );
    let history = crate::support::fake_ai::messages(&app.ai.requests().last().unwrap().body);
    assert!(
        !history.iter().any(|(_, t)| t.contains("fachada")),
        "the AI is not given the erased conversation: {history:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn erasure_drops_the_leads_work_in_flight() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    app.ai.set_latency(Duration::from_secs(2));
    app.process(&app.msg("lead-busy", "primeira", true)).await;
    app.ai.wait_for_requests(1, Duration::from_secs(10)).await;
    // One generation in flight, and a second burst waiting out its debounce behind it.
    app.process(&app.msg("lead-busy", "segunda", true)).await;
    let (status, erased) = delete(&app, "/backend/leads/lead-busy").await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert!(erased["erased"]["bursts_dropped"].as_u64().unwrap() >= 1, "{erased}");
    app.settle().await;
    assert!(app.receiver.deliveries().is_empty(), "no reply reached anyone");
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages").await,
        0,
        "no reply stored afterwards"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM bursts WHERE status IN ('open', 'generating')"
        )
        .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn housekeeping_removes_personal_data_past_its_retention() {
    let providers = FakeProviders::start().await;
    let media = MediaServer::start().await;
    let app = TestApp::builder()
        .env("LEADFLOW_HOUSEKEEPING_INTERVAL", "500ms")
        .env("LEADFLOW_RETENTION_MESSAGES", "30d")
        .env("LEADFLOW_RETENTION_MEDIA_BYTES", "7d")
        .start()
        .await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "pdf_as_file": true}))
        .await;
    let ch = create_gupshup_channel(&app, &providers.base_url).await;
    webhook(&app, &ch, &gupshup_message("wamid-old")).await;
    providers.wait_for(1, Duration::from_secs(15)).await;
    let pdf = media.put("/docs/scan.pdf", fixture("text.pdf"), Some("application/pdf"));
    let mut m = app.msg("lead-pdf", "o contrato", true);
    m["message_type"] = json!("pdf");
    m["url"] = json!(pdf);
    app.process(&m).await;
    app.receiver.wait_for(1, Duration::from_secs(20)).await;
    app.settle().await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM media WHERE data IS NOT NULL").await,
        1,
        "the PDF's bytes are kept"
    );

    // The WhatsApp conversation is 40 days old; the PDF 10 days.
    sqlx::raw_sql(&format!(
        "UPDATE messages SET created_at = created_at - interval '40 days'
             WHERE lead_id = (SELECT id FROM leads WHERE external_id = '{PHONE}');
         UPDATE inbound_events SET created_at = created_at - interval '40 days';
         UPDATE webhook_payloads SET created_at = created_at - interval '40 days';
         UPDATE outbox SET created_at = created_at - interval '40 days';
         UPDATE idempotency_keys SET created_at = created_at - interval '40 days';
         UPDATE media SET created_at = created_at - interval '10 days';
         UPDATE deliveries SET created_at = created_at - interval '40 days';"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
    // Something recent of each kind, which must stay.
    webhook(&app, &ch, &gupshup_message("wamid-new")).await;
    providers.wait_for(2, Duration::from_secs(15)).await;
    app.settle().await;

    eventually(
        Duration::from_secs(20),
        "housekeeping to expire the old data",
        || async {
            let old_messages = count(
                &app,
                "SELECT count(*) FROM messages WHERE created_at < now() - interval '30 days'",
            )
            .await;
            let bytes = count(&app, "SELECT count(*) FROM media WHERE data IS NOT NULL").await;
            let bodies = count(&app, "SELECT count(*) FROM deliveries WHERE payload <> ''").await;
            (old_messages == 0 && bytes == 0 && bodies == 0).then_some(())
        },
    )
    .await;
    let (status, conversation) = app.get(&format!("/backend/leads/{PHONE}/messages")).await;
    assert_eq!(status, StatusCode::OK);
    let contents: Vec<&str> = conversation["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents.len(), 2, "only the recent message and its reply: {contents:?}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM inbound_events").await,
        1,
        "the recent event stays"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_payloads").await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM outbox WHERE content = ''").await,
        1,
        "the old send's body"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE content <> ''").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM idempotency_keys WHERE created_at < now() - interval '7 days'"
        )
        .await,
        0
    );
    // The PDF lost its bytes and kept what was read from it, and its message.
    let (text, status): (Option<String>, String) = sqlx::query_as("SELECT text, status FROM media")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "done");
    assert!(text.is_some_and(|t| !t.is_empty()), "the extracted text stays");
    let (status, pdf_lead) = app.get("/backend/leads/lead-pdf/messages").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pdf_lead["data"].as_array().unwrap().len(), 2, "{pdf_lead}");
    // A delivered postback keeps its row, not its body.
    assert_eq!(
        count(&app, "SELECT count(*) FROM deliveries WHERE status = 'delivered'").await,
        1
    );
    app.stop().await;
}
