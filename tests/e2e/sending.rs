//! How replies go out through a channel: split into paragraphs with a typing pause, in
//! order; no faster than the channel's send rate; a provider's 429 retried after its
//! `Retry-After`; and a webhook taken while Redis is down still answered once it is back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, webhook, zapi_text};
use crate::support::fake_providers::FakeProviders;
use crate::support::{eventually, TestApp};

const LEAD: &str = "/backend/leads/+5511987654321";

fn zapi_channel(providers: &FakeProviders) -> Value {
    json!({"name": "WhatsApp vendas", "type": "whatsapp", "provider": "z-api",
           "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                           "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F", "base_url": providers.base_url}})
}

#[tokio::test]
async fn a_long_reply_goes_out_one_paragraph_at_a_time_in_order() {
    let providers = FakeProviders::start().await;
    let app = TestApp::builder().env("LEADFLOW_TYPING_DELAY", "400ms").start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "split_replies": true}))
        .await;
    let ch = channel(&app, zapi_channel(&providers)).await;
    webhook(
        &app,
        &ch.path,
        &zapi_text("3EB0SPLIT01", "Tem garagem?\n\nAceita pet?\n\nQual o condomínio?"),
        &[],
    )
    .await;
    let sent = providers.wait_for(3, Duration::from_secs(15)).await;
    let texts: Vec<&str> = sent.iter().map(|s| s.body["message"].as_str().unwrap()).collect();
    assert_eq!(texts, ["reply to: Tem garagem?", "Aceita pet?", "Qual o condomínio?"]);
    for pair in sent.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(350), "typing pause between parts: {gap:?}");
    }
    let parts = eventually(Duration::from_secs(5), "every part recorded as sent", || async {
        let rows: Vec<(i32, String)> = sqlx::query_as("SELECT part, status FROM outbox ORDER BY part")
            .fetch_all(&app.pool)
            .await
            .unwrap();
        rows.iter().all(|(_, s)| s == "sent").then_some(rows)
    })
    .await;
    assert_eq!(parts, [(0, "sent".into()), (1, "sent".into()), (2, "sent".into())]);
    // Not split when the assistant does not ask for it.
    app.set_assistant(json!({"split_replies": false})).await;
    webhook(&app, &ch.path, &zapi_text("3EB0SPLIT02", "Um\n\nDois"), &[]).await;
    let sent = providers.wait_for(4, Duration::from_secs(15)).await;
    assert_eq!(sent[3].body["message"], json!("reply to: Um\n\nDois"));
    app.stop().await;
}

#[tokio::test]
async fn a_channel_never_sends_faster_than_its_rate_and_honours_retry_after() {
    let providers = FakeProviders::start().await;
    let app = TestApp::builder().env("LEADFLOW_CHANNEL_SEND_RATE", "2").start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(&app, zapi_channel(&providers)).await;
    let (_, user) = app.post("/backend/users", &json!({"name": "Ana Lima"})).await;
    webhook(&app, &ch.path, &zapi_text("3EB0RATE01", "Oi"), &[]).await;
    providers.wait_for(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Five operator messages at once, two per (whole) second allowed: they need three
    // windows, so the last goes out more than a second after the first. (A fixed window
    // may let two go at the end of one second and two at the start of the next.)
    for i in 1..=5 {
        let (status, out) = app
            .post(
                &format!("{LEAD}/messages"),
                &json!({"channel_id": ch.id, "user_id": user["id"], "content": format!("mensagem {i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    }
    let sent = providers.wait_for(6, Duration::from_secs(15)).await;
    let burst = &sent[1..6];
    let span = burst[4].at - burst[0].at;
    assert!(span >= Duration::from_millis(950), "5 sends at 2/s took only {span:?}");

    // Z-API answers 429 with Retry-After: 2; the next attempt waits for it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    providers.push_status_retry_after(429, 2);
    app.post(
        &format!("{LEAD}/messages"),
        &json!({"channel_id": ch.id, "user_id": user["id"], "content": "depois do 429"}),
    )
    .await;
    let sent = providers.wait_for(8, Duration::from_secs(15)).await;
    let gap = sent[7].at - sent[6].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, not after Retry-After"
    );
    assert_eq!(sent[7].body["message"], json!("depois do 429"));
    // Every attempt is a row (the second is recorded once the provider's answer is in).
    let attempts = eventually(Duration::from_secs(5), "both attempts recorded", || async {
        let rows: Vec<(i32, Option<i32>)> = sqlx::query_as(
            "SELECT a.attempt, a.status_code FROM outbox_attempts a JOIN outbox o ON o.id = a.outbox_id
             WHERE o.content = 'depois do 429' ORDER BY a.attempt",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert_eq!(attempts, [(1, Some(429)), (2, Some(200))]);
    app.stop().await;
}
