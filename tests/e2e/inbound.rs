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

pub(crate) struct Channel {
    pub id: String,
    pub path: String,
    pub token: String,
}

pub(crate) async fn channel(app: &TestApp, body: Value) -> Channel {
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

/// Z-API's text webhook with another message id and text (the same lead).
pub(crate) fn zapi_text(id: &str, text: &str) -> Value {
    let mut p: Value = serde_json::from_str(ZAPI_TEXT).unwrap();
    p["messageId"] = json!(id);
    p["text"]["message"] = json!(text);
    p
}

pub(crate) async fn webhook(app: &TestApp, path: &str, body: &Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = app.http.post(format!("{}{path}", app.base)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
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
    app.settle().await;
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
    let (_, chans) = app.get("/backend/leads/+5511987654321/channels").await;
    assert!(
        chans["data"][0]["paused_until"].is_null(),
        "the bot's own echo never pauses it: {chans}"
    );

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
    app.settle().await;
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
    let (_, chans) = app.get("/backend/leads/+5511987654321/channels").await;
    assert!(chans["data"][0]["paused_until"].is_string(), "{chans}");
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
    app.settle().await;
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

#[tokio::test]
async fn an_operator_writes_through_the_channel_and_becomes_an_attendant() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2, "name": "Vendas IA"}))
        .await;
    let (_, dept) = app.post("/backend/departments", &json!({"name": "Vendas"})).await;
    let (_, user) = app.post("/backend/users", &json!({"name": "Ana Lima"})).await;
    let mut body = json!({"name": "WhatsApp vendas", "type": "whatsapp", "provider": "z-api",
                          "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                                          "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F",
                                          "base_url": providers.base_url}});
    body["department_id"] = dept["id"].clone();
    let ch = channel(&app, body).await;
    let payload: Value = serde_json::from_str(ZAPI_TEXT).unwrap();
    webhook(&app, &ch.path, &payload, &[]).await;
    providers.wait_for(1, Duration::from_secs(15)).await;

    let lead = "/backend/leads/+5511987654321";
    let (status, out) = app
        .post(
            &format!("{lead}/messages"),
            &json!({"channel_id": ch.id, "user_id": user["id"], "content": "Oi Mariana! Aqui é a Ana."}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert!(out["paused_until"].is_string(), "the AI steps back: {out}");
    let sent = providers.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].body["message"], json!("Oi Mariana! Aqui é a Ana."));

    let (_, att) = app.get(&format!("{lead}/attendants")).await;
    let att = &att["data"][0];
    assert_eq!(att["user_id"], user["id"]);
    assert_eq!(att["user_name"], json!("Ana Lima"));
    assert_eq!(att["channel_name"], json!("WhatsApp vendas"));
    assert_eq!(att["channel_type"], json!("whatsapp"));
    assert_eq!(att["assistant_name"], json!("Vendas IA"));
    assert_eq!(att["department_name"], json!("Vendas"));
    assert_eq!(att["message_count"], json!(1));

    let (_, chans) = app.get(&format!("{lead}/channels")).await;
    let lc = &chans["data"][0];
    assert_eq!(lc["channel_id"], json!(ch.id));
    assert_eq!(lc["channel_name"], json!("WhatsApp vendas"));
    assert_eq!(lc["message_count"], json!(2), "the lead's message and the operator's");
    assert_eq!(lc["is_primary"], json!(true));
    let lc_path = format!("{lead}/channels/{}", lc["id"].as_str().unwrap());
    let (status, patched) = app.patch(&lc_path, &json!({"assigned_user_id": user["id"]})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["assigned_user_id"], user["id"]);
    let (status, resp) = app.patch(&lc_path, &json!({"is_primary": false})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp["error"]["field"], json!("is_primary"));

    // The operator's own send echoing back does not count as another human message.
    let mut echo: Value = serde_json::from_str(ZAPI_FROM_ME).unwrap();
    echo["messageId"] = json!(sent[1].id);
    echo["text"]["message"] = json!("Oi Mariana! Aqui é a Ana.");
    webhook(&app, &ch.path, &echo, &[]).await;
    // While paused the lead is not answered; released, it is.
    let mut next = payload.clone();
    next["messageId"] = json!("3A554E20ECABF3D45BC1");
    next["text"]["message"] = json!("Ok, obrigada");
    webhook(&app, &ch.path, &next, &[]).await;
    app.settle().await;
    assert_eq!(app.ai.request_count(), 1);
    // This lead channel gets its own assistant from now on.
    let (_, night) = app
        .post(
            "/backend/assistants",
            &json!({"name": "Noite", "model": "gpt-4o", "debounce_seconds": 0.2}),
        )
        .await;
    let (status, _) = app.patch(&lc_path, &json!({"assistant_id": night["id"]})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post(&format!("{lead}/release"), &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let mut after = payload.clone();
    after["messageId"] = json!("3A554E20ECABF3D45BC2");
    after["text"]["message"] = json!("Mais uma dúvida");
    webhook(&app, &ch.path, &after, &[]).await;
    let reqs = app.ai.wait_for_requests(2, Duration::from_secs(10)).await;
    assert_eq!(
        reqs[1].body["model"],
        json!("gpt-4o"),
        "the lead channel's assistant answers"
    );
    let (_, conv) = app.get(&format!("{lead}/messages")).await;
    let roles: Vec<&str> = conv["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles[..5], ["user", "assistant", "human", "user", "user"]);

    // Validation names the field.
    for (field, body) in [
        ("channel_id", json!({"user_id": user["id"], "content": "x"})),
        (
            "user_id",
            json!({"channel_id": ch.id, "user_id": uuid::Uuid::new_v4(), "content": "x"}),
        ),
        (
            "content",
            json!({"channel_id": ch.id, "user_id": user["id"], "content": ""}),
        ),
    ] {
        let (status, resp) = app.post(&format!("{lead}/messages"), &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {resp}");
        assert_eq!(resp["error"]["field"], json!(field));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_voice_note_and_a_photo_from_zapi_go_through_the_media_pipeline() {
    let providers = FakeProviders::start().await;
    let media = crate::support::media_server::MediaServer::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.5})).await;
    let ch = channel(
        &app,
        json!({"name": "WhatsApp", "type": "whatsapp", "provider": "z-api",
               "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F", "base_url": providers.base_url}}),
    )
    .await;
    let fixture = crate::support::media_server::fixture;
    let voice = media.put(
        "/voice/Xk9rT2pQe1vY.ogg",
        fixture("voice.ogg"),
        Some("audio/ogg; codecs=opus"),
    );
    let photo = media.put("/img/predio.jpg", fixture("photo.jpg"), Some("image/jpeg"));
    let mut audio: Value =
        serde_json::from_str(include_str!("../fixtures/providers/zapi/webhook-received-audio.json")).unwrap();
    audio["audio"]["audioUrl"] = json!(voice);
    let mut image: Value =
        serde_json::from_str(include_str!("../fixtures/providers/zapi/webhook-received-image.json")).unwrap();
    image["image"]["imageUrl"] = json!(photo);
    for body in [&audio, &image] {
        let (status, out) = webhook(&app, &ch.path, body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["stored"], json!(1), "{out}");
    }
    let sent = providers.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(app.ai.request_count(), 1, "one burst, one reply");
    let tr = app.ai.transcriptions.requests();
    assert_eq!(tr.len(), 1);
    assert_eq!(tr[0].file_name, "audio.ogg");
    let turn = last_user_turn(&app.ai.requests()[0].body);
    assert!(
        turn.starts_with("[voice note] transcript of a 4088-byte ogg voice note\n[image"),
        "{turn}"
    );
    let last = app.ai.requests()[0].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let parts = last["content"].as_array().expect("an image part");
    assert!(parts.iter().any(|p| p["image_url"]["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("data:image/jpeg"))));
    assert!(sent[0].body["message"]
        .as_str()
        .unwrap()
        .starts_with("reply to: [voice note]"));
    app.stop().await;
}

#[tokio::test]
async fn webhooks_and_sends_whose_jobs_were_lost_are_restarted_by_the_sweeper() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(
        &app,
        json!({"name": "WhatsApp", "type": "whatsapp", "provider": "z-api",
               "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F", "base_url": providers.base_url}}),
    )
    .await;
    let channel_id: uuid::Uuid = ch.id.parse().unwrap();
    // A webhook stored while Redis refused its job: only PostgreSQL has it.
    let payload: Value = serde_json::from_str(ZAPI_TEXT).unwrap();
    sqlx::query(
        "INSERT INTO inbound_events (id, tenant_id, channel_id, dedupe_key, item, sender, payload, created_at)
         VALUES ($1, $2, $3, 'msg:3A554E20ECABF3D45BB2', 0, '+5511987654321', $4, now() - interval '1 minute')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(app.tenant.tenant_id)
    .bind(channel_id)
    .bind(&payload)
    .execute(&app.pool)
    .await
    .unwrap();
    let sent = providers.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(sent[0].body["message"], json!(format!("reply to: {LEAD_TEXT}")));

    // A reply committed to the outbox whose send job never ran.
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, channel_id, lead_id, content, status, next_attempt_at)
         SELECT $1, $2, $3, id, 'a message whose job was lost', 'pending', now() - interval '1 minute' FROM leads",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(app.tenant.tenant_id)
    .bind(channel_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let sent = providers.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(sent[1].body["message"], json!("a message whose job was lost"));
    app.settle().await;
    assert_eq!(providers.sent().len(), 2, "each sent once");
    assert_eq!(
        count(&app, "SELECT count(*) FROM outbox WHERE status = 'sent'").await,
        2
    );
    app.stop().await;
}
