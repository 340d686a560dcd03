//! Channels end to end: a provider's own webhook in, the reply out through the
//! provider's send API; duplicates, wrong secrets, our own echoes and a human on the phone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::fake_providers::FakeProviders;
use crate::support::{last_user_turn, TestApp};

const ZAPI_TEXT: &str = include_str!("../fixtures/providers/zapi/webhook-received-text.json");
const ZAPI_FROM_ME: &str = include_str!("../fixtures/providers/zapi/webhook-received-fromme-api.json");
const TELEGRAM_TEXT: &str = include_str!("../fixtures/providers/telegram/update-text.json");
const LEAD_TEXT: &str = "Oi! Vi o anúncio do apartamento na Vila Mariana. Ainda está disponível?";

struct Channel {
    id: String,
    path: String,
    token: String,
}

async fn channel(app: &TestApp, body: Value) -> Channel {
    let (status, ch) = app.post("/backend/channels", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    let path = ch["webhook_path"].as_str().unwrap().to_string();
    let token = path.split("token=").nth(1).unwrap().to_string();
    Channel {
        id: ch["id"].as_str().unwrap().to_string(),
        path,
        token,
    }
}

async fn webhook(app: &TestApp, path: &str, body: &Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = app.http.post(format!("{}{path}", app.base)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn zapi_text_in_one_reply_out_through_zapi() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.3})).await;
    let ch = channel(
        &app,
        json!({"name": "WhatsApp vendas", "type": "whatsapp", "provider": "z-api",
               "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F",
                               "client_token": "Fa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6S",
                               "base_url": providers.base_url}}),
    )
    .await;
    let payload: Value = serde_json::from_str(ZAPI_TEXT).unwrap();

    // A wrong secret: 401, nothing stored.
    let (status, _) = webhook(&app, &format!("/webhooks/{}?token=wrong", ch.id), &payload, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(count(&app, "SELECT count(*) FROM inbound_events").await, 0);

    let (status, out) = webhook(&app, &ch.path, &payload, &[]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["stored"], json!(1));
    // Z-API resends: the same message is one message.
    let (_, again) = webhook(&app, &ch.path, &payload, &[]).await;
    assert_eq!(again["duplicates"], json!(1));

    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        sent[0].path,
        "/instances/3E4F7360B552F0C2DBCB9E6774402775/token/F0E1D2C3B4A5968778695A4B3C2D1E0F/send-text"
    );
    assert_eq!(sent[0].headers["client-token"], "Fa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6S");
    assert_eq!(sent[0].body["phone"], json!("5511987654321"));
    assert_eq!(sent[0].body["message"], json!(format!("reply to: {LEAD_TEXT}")));
    assert_eq!(last_user_turn(&app.ai.requests()[0].body), LEAD_TEXT);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.ai.request_count(), 1, "one message, one reply");
    assert_eq!(providers.sent().len(), 1);

    // The lead is known by its phone; the conversation and the lead channel are right.
    let (status, conv) = app.get("/backend/leads/+5511987654321/messages").await;
    assert_eq!(status, StatusCode::OK, "{conv}");
    let roles: Vec<&str> = conv["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant"]);
    let (n, primary, provider_id): (i32, bool, Option<String>) =
        sqlx::query_as("SELECT lc.message_count, lc.is_primary, o.provider_message_id FROM lead_channels lc, outbox o")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((n, primary), (1, true));
    assert_eq!(provider_id.as_deref(), Some(sent[0].id.as_str()));
    assert_eq!(count(&app, "SELECT count(*) FROM outbox_attempts").await, 1);

    // Our own send echoing back (fromMe, the id we got from Z-API): not a human.
    let mut echo: Value = serde_json::from_str(ZAPI_FROM_ME).unwrap();
    echo["messageId"] = json!(sent[0].id);
    echo["text"]["message"] = sent[0].body["message"].clone();
    let (status, _) = webhook(&app, &ch.path, &echo, &[]).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused: bool = sqlx::query_scalar("SELECT COALESCE(paused_until > now(), false) FROM leads")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!paused, "the bot's own echo never pauses it");

    // A human typing on the phone (fromMe, not in the outbox): the AI steps back.
    let mut human = echo.clone();
    human["messageId"] = json!("3EB0HUMANPHONE0001");
    human["fromApi"] = json!(false);
    human["text"]["message"] = json!("Oi Mariana, aqui é a Ana, posso te ligar?");
    webhook(&app, &ch.path, &human, &[]).await;
    let mut later = payload.clone();
    later["messageId"] = json!("3A554E20ECABF3D45BB3");
    later["text"]["message"] = json!("Pode sim!");
    tokio::time::sleep(Duration::from_millis(500)).await;
    webhook(&app, &ch.path, &later, &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.ai.request_count(), 1, "no AI reply while a human attends the lead");
    assert_eq!(providers.sent().len(), 1);
    let (_, conv) = app.get("/backend/leads/+5511987654321/messages").await;
    let roles: Vec<&str> = conv["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "human", "user"]);
    app.stop().await;
}

#[tokio::test]
async fn telegram_checks_its_secret_header_and_replies_to_the_chat() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(
        &app,
        json!({"name": "Telegram", "type": "telegram", "provider": "telegram-bot",
               "credentials": {"bot_token": "7123456789:AAH3kZ-example-token-Qw8", "base_url": providers.base_url}}),
    )
    .await;
    let payload: Value = serde_json::from_str(TELEGRAM_TEXT).unwrap();
    let path = format!("/webhooks/{}", ch.id);
    let (status, _) = webhook(&app, &path, &payload, &[("X-Telegram-Bot-Api-Secret-Token", "nope")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = webhook(&app, &path, &payload, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the header is required");
    let (status, out) = webhook(&app, &path, &payload, &[("X-Telegram-Bot-Api-Secret-Token", &ch.token)]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].path, "/bot7123456789:AAH3kZ-example-token-Qw8/sendMessage");
    assert_eq!(sent[0].body["chat_id"], json!(6120483377i64));
    assert_eq!(sent[0].body["text"], json!(format!("reply to: {LEAD_TEXT}")));
    let (status, _) = app.get("/backend/leads/tg:6120483377/messages").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_failing_provider_is_retried_and_every_attempt_is_a_row() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(
        &app,
        json!({"name": "Evolution", "type": "whatsapp", "provider": "evolution-api",
               "credentials": {"base_url": providers.base_url, "api_key": "B6D711FCDE4D4FD5936544120E713976",
                               "instance": "acme-vendas"}}),
    )
    .await;
    providers.push_status(503);
    let payload: Value = serde_json::from_str(include_str!(
        "../fixtures/providers/evolution/webhook-messages-upsert-conversation.json"
    ))
    .unwrap();
    let (status, out) = webhook(&app, &ch.path, &payload, &[]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let sent = providers.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(sent[1].path, "/message/sendText/acme-vendas");
    assert_eq!(sent[1].headers["apikey"], "B6D711FCDE4D4FD5936544120E713976");
    assert_eq!(sent[1].body["number"], json!("5511987654321"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts: Vec<(i32, Option<i32>)> =
        sqlx::query_as("SELECT attempt, status_code FROM outbox_attempts ORDER BY attempt")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(attempts, [(1, Some(503)), (2, Some(201))]);
    let status: String = sqlx::query_scalar("SELECT status FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "sent");
    app.stop().await;
}
