//! WhatsApp connection health: the periodic check against the providers' status
//! endpoints, the providers' own connection webhooks, the notifications a change raises
//! (signed webhook, WhatsApp message), the quiet period, and outbound messages that wait
//! for a disconnected channel.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, webhook};
use crate::support::fake_providers::FakeProviders;
use crate::support::fake_status::FakeStatus;
use crate::support::receiver::Receiver;
use crate::support::{eventually, verify_signature, TestApp};

const EVOLUTION_CLOSED: &str = include_str!("../fixtures/providers/evolution/webhook-connection-update-close.json");
const EVOLUTION_TEXT: &str = include_str!("../fixtures/providers/evolution/webhook-messages-upsert-conversation.json");

async fn connection(app: &TestApp, id: &str) -> String {
    let (status, ch) = app.get(&format!("/backend/channels/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{ch}");
    ch["connection"].as_str().unwrap_or_default().to_string()
}

/// Creates a channel checked against `fake` and waits for its first check.
async fn checked_channel(app: &TestApp, body: Value) -> crate::inbound::Channel {
    let ch = channel(app, body).await;
    eventually(Duration::from_secs(10), "the first check", || async {
        (connection(app, &ch.id).await == "connected").then_some(())
    })
    .await;
    ch
}

/// An Evolution channel sending through fake providers, its connection known only from
/// its webhooks (no periodic check), with `send_wait` as LEADFLOW_DISCONNECTED_SEND_WAIT.
async fn evolution_without_checks(send_wait: &str) -> (FakeProviders, TestApp, crate::inbound::Channel) {
    let providers = FakeProviders::start().await;
    let app = TestApp::builder()
        .env("LEADFLOW_HEALTH_CHECK_INTERVAL", "off")
        .env("LEADFLOW_DISCONNECTED_SEND_WAIT", send_wait)
        .start()
        .await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let evo = channel(
        &app,
        json!({"name": "Evo", "type": "whatsapp", "provider": "evolution-api",
               "credentials": {"base_url": providers.base_url, "api_key": "B6D711FCDE4D4FD5936544120E713976",
                               "instance": "acme-vendas"}}),
    )
    .await;
    (providers, app, evo)
}

async fn notify_to(app: &TestApp, body: Value) -> String {
    let (status, c) = app.post("/backend/notification-configs", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    c["id"].as_str().unwrap().to_string()
}

fn events(r: &Receiver) -> Vec<String> {
    r.deliveries()
        .iter()
        .map(|d| d.json["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_whatsapp_session_going_down_and_up_notifies_once_each_signed() {
    let fake = FakeStatus::start().await;
    let hooks = Receiver::start().await;
    let app = TestApp::builder()
        .env("LEADFLOW_HEALTH_CHECK_INTERVAL", "200ms")
        .start()
        .await;
    notify_to(
        &app,
        json!({"events": ["channel.disconnected", "channel.reconnected"], "target": "webhook", "url": hooks.url}),
    )
    .await;
    let ch = checked_channel(
        &app,
        json!({"name": "Vendas", "type": "whatsapp", "provider": "z-api",
               "credentials": {"base_url": fake.base_url, "instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F"}}),
    )
    .await;

    fake.set_connected(false);
    let got = hooks.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json["type"], "channel.disconnected");
    assert_eq!(got[0].json["data"]["channel_id"], json!(ch.id));
    assert_eq!(got[0].json["data"]["previous"], "connected");
    assert_eq!(got[0].json["data"]["source"], "check");
    assert!(got[0].json["data"]["reason"]
        .as_str()
        .unwrap()
        .contains("restore the session"));
    verify_signature(&app.tenant.postback_secret, &got[0]);
    assert_eq!(connection(&app, &ch.id).await, "disconnected");
    // Many more checks find it still down: no second notification.
    let checks = fake.checks();
    eventually(Duration::from_secs(10), "five more checks", || async {
        (fake.checks() >= checks + 5).then_some(())
    })
    .await;
    assert_eq!(events(&hooks), ["channel.disconnected"]);

    fake.set_connected(true);
    let got = hooks.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json["type"], "channel.reconnected");
    verify_signature(&app.tenant.postback_secret, &got[1]);
    let checks = fake.checks();
    eventually(Duration::from_secs(10), "five more checks", || async {
        (fake.checks() >= checks + 5).then_some(())
    })
    .await;
    assert_eq!(events(&hooks), ["channel.disconnected", "channel.reconnected"]);

    // Flapping inside the quiet period: the change is stored, the notification is held.
    fake.set_connected(false);
    eventually(Duration::from_secs(10), "the second disconnection", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE status = 'held'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    app.settle().await;
    assert_eq!(events(&hooks), ["channel.disconnected", "channel.reconnected"]);
    let changes: Vec<(String, String, String)> =
        sqlx::query_as("SELECT previous, status, source FROM channel_connection_events ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let expected = [
        ("unknown", "connected"),
        ("connected", "disconnected"),
        ("disconnected", "connected"),
        ("connected", "disconnected"),
    ];
    assert_eq!(changes.len(), expected.len(), "{changes:?}");
    for ((p, s, source), (ep, es)) in changes.iter().zip(expected) {
        assert_eq!((p.as_str(), s.as_str(), source.as_str()), (ep, es, "check"));
    }
    let runs: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM scheduler_runs WHERE task = 'connections' AND detail IS NOT NULL")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let with_channel = runs.iter().filter(|d| d.starts_with("1 checked")).count();
    assert!(with_channel >= 10, "{runs:?}");
}

#[tokio::test]
async fn an_unreachable_status_endpoint_is_a_disconnection_only_after_several_failures() {
    let fake = FakeStatus::start().await;
    let hooks = Receiver::start().await;
    let app = TestApp::builder()
        .env("LEADFLOW_HEALTH_CHECK_INTERVAL", "200ms")
        .env("LEADFLOW_HEALTH_FAILURES_TO_DISCONNECT", "4")
        .start()
        .await;
    notify_to(
        &app,
        json!({"events": ["channel.disconnected"], "target": "webhook", "url": hooks.url}),
    )
    .await;
    let ch = checked_channel(
        &app,
        json!({"name": "Evo", "type": "whatsapp", "provider": "evolution-api",
               "credentials": {"base_url": fake.base_url, "api_key": "B6D711FCDE4D4FD5936544120E713976",
                               "instance": "acme-vendas"}}),
    )
    .await;
    let before = fake.checks();
    fake.set_failing(true);
    let got = hooks.wait_for(1, Duration::from_secs(10)).await;
    assert!(fake.checks() - before >= 4, "not before four failed checks");
    let reason = got[0].json["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed 4 checks in a row") && reason.contains("503"),
        "{reason}"
    );
    assert_eq!(connection(&app, &ch.id).await, "disconnected");
}

#[tokio::test]
async fn a_connection_webhook_disconnects_sends_wait_and_go_out_after_reconnection() {
    let (providers, app, evo) = evolution_without_checks("60s").await;
    // The ops team hears about it on WhatsApp, through another channel.
    let alerts = channel(
        &app,
        json!({"name": "Alerts", "type": "whatsapp", "provider": "z-api",
               "credentials": {"base_url": providers.base_url, "instance_id": "AL", "instance_token": "T"}}),
    )
    .await;
    notify_to(
        &app,
        json!({"events": ["channel.disconnected"], "target": "whatsapp", "channel_id": alerts.id,
               "phone": "+55 11 99999-0000"}),
    )
    .await;

    let closed: Value = serde_json::from_str(EVOLUTION_CLOSED).unwrap();
    let (status, _) = webhook(&app, &evo.path, &closed, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = webhook(&app, &evo.path, &closed, &[]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a resent callback is accepted (and is one event)"
    );
    let sent = providers.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].path, "/instances/AL/token/T/send-text");
    assert_eq!(sent[0].body["phone"], "5511999990000");
    let text = sent[0].body["message"].as_str().unwrap();
    assert!(text.contains("\"Evo\"") && text.contains("disconnected"), "{text}");
    assert_eq!(connection(&app, &evo.id).await, "disconnected");

    // A lead writes meanwhile: the reply waits for the channel instead of failing.
    let lead: Value = serde_json::from_str(EVOLUTION_TEXT).unwrap();
    webhook(&app, &evo.path, &lead, &[]).await;
    eventually(Duration::from_secs(10), "the reply in the outbox", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    app.settle().await;
    assert_eq!(
        providers.sent().len(),
        1,
        "nothing goes out through a disconnected channel"
    );

    let mut open = closed.clone();
    open["data"]["state"] = json!("open");
    open["date_time"] = json!("2024-11-21T18:45:02.101Z");
    webhook(&app, &evo.path, &open, &[]).await;
    let sent = providers.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(sent[1].path, "/message/sendText/acme-vendas");
    assert_eq!(connection(&app, &evo.id).await, "connected");
    let sources: Vec<String> =
        sqlx::query_scalar("SELECT source FROM channel_connection_events WHERE channel_id = $1::uuid ORDER BY id")
            .bind(&evo.id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        sources,
        ["webhook", "webhook"],
        "closed once (the resend is a duplicate), open once"
    );
}

#[tokio::test]
async fn a_channel_down_longer_than_the_wait_fails_its_messages_with_the_reason() {
    let (providers, app, evo) = evolution_without_checks("1s").await;
    let closed: Value = serde_json::from_str(EVOLUTION_CLOSED).unwrap();
    webhook(&app, &evo.path, &closed, &[]).await;
    eventually(Duration::from_secs(10), "the disconnection", || async {
        (connection(&app, &evo.id).await == "disconnected").then_some(())
    })
    .await;
    let lead: Value = serde_json::from_str(EVOLUTION_TEXT).unwrap();
    webhook(&app, &evo.path, &lead, &[]).await;
    let error: String = eventually(Duration::from_secs(20), "the reply to fail", || async {
        sqlx::query_scalar("SELECT error FROM outbox WHERE status = 'failed'")
            .fetch_optional(&app.pool)
            .await
            .unwrap()
    })
    .await;
    assert!(error.contains("disconnected since"), "{error}");
    assert!(providers.sent().is_empty());
}

#[tokio::test]
async fn notification_configs_are_validated_listed_and_deleted() {
    let app = TestApp::start().await;
    let cases = [
        (
            json!({"events": ["channel.exploded"], "target": "webhook", "url": "https://x.example"}),
            "events",
        ),
        (
            json!({"events": [], "target": "webhook", "url": "https://x.example"}),
            "events",
        ),
        (json!({"events": ["ai.failed"], "target": "pager"}), "target"),
        (json!({"events": ["ai.failed"], "target": "webhook"}), "url"),
        (
            json!({"events": ["ai.failed"], "target": "webhook", "url": "ftp://x.example"}),
            "url",
        ),
        (
            json!({"events": ["ai.failed"], "target": "whatsapp", "phone": "+5511999990000"}),
            "channel_id",
        ),
    ];
    for (body, field) in cases {
        let (status, out) = app.post("/backend/notification-configs", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {out}");
        assert_eq!(out["error"]["field"], field, "{body} → {out}");
    }
    let tg = channel(
        &app,
        json!({"name": "TG", "type": "telegram", "provider": "telegram-bot", "credentials": {"bot_token": "1:a"}}),
    )
    .await;
    let (status, out) = app
        .post(
            "/backend/notification-configs",
            &json!({"events": ["ai.failed"], "target": "whatsapp", "channel_id": tg.id, "phone": "+5511999990000"}),
        )
        .await;
    assert_eq!(
        (status, out["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("channel_id"))
    );

    let id = notify_to(
        &app,
        json!({"events": ["postback.exhausted", "ai.failed", "ai.failed"], "target": "webhook",
               "url": "https://hooks.example.com/leadflow"}),
    )
    .await;
    let (status, list) = app.get("/backend/notification-configs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"][0]["events"], json!(["postback.exhausted", "ai.failed"]));
    let resp = app
        .http
        .delete(format!("{}/backend/notification-configs/{id}", app.base))
        .bearer_auth(app.key())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/backend/notification-configs/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_postback_that_exhausts_its_retries_raises_a_notification() {
    let hooks = Receiver::start().await;
    let app = TestApp::start().await;
    notify_to(
        &app,
        json!({"events": ["postback.exhausted"], "target": "webhook", "url": hooks.url}),
    )
    .await;
    app.receiver.set_default_status(500);
    let mut msg = app.msg("lead-pb", "olá", true);
    msg["postback_url"] = json!(app.receiver.url);
    let (status, out) = app.process(&msg).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let got = hooks.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json["type"], "postback.exhausted");
    assert_eq!(got[0].json["data"]["url"], json!(app.receiver.url));
    assert_eq!(got[0].json["data"]["attempts"], 4);
    verify_signature(&app.tenant.postback_secret, &got[0]);
}

#[tokio::test]
async fn ai_failures_are_mailed_through_an_email_channel_once_per_quiet_period() {
    use crate::support::fake_ai::Scripted;
    use crate::support::fake_mail::FakeMail;
    let mailer = FakeMail::start("alertas@imobiliarialima.com.br", "s3nha").await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let mail = channel(
        &app,
        json!({"name": "Alertas", "type": "email", "provider": "smtp-imap",
               "credentials": {"smtp_host": mailer.host, "smtp_port": mailer.smtp_port.to_string(),
                               "smtp_security": "none", "username": "alertas@imobiliarialima.com.br",
                               "password": "s3nha", "from": "alertas@imobiliarialima.com.br"}}),
    )
    .await;
    notify_to(
        &app,
        json!({"events": ["ai.failed"], "target": "email", "channel_id": mail.id, "email": "ops@imobiliarialima.com.br"}),
    )
    .await;
    app.ai.push_response(Scripted::insufficient_quota());
    app.ai.push_response(Scripted::insufficient_quota());
    app.process(&app.msg("lead-a", "oi", true)).await;
    app.process(&app.msg("lead-b", "olá", true)).await;
    app.receiver.wait_for(2, Duration::from_secs(15)).await;
    let sent = mailer.wait_for_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].to, ["ops@imobiliarialima.com.br"]);
    assert!(sent[0].body().contains("no AI reply"), "{}", sent[0].body());
    app.settle().await;
    assert_eq!(
        mailer.sent().len(),
        1,
        "the second failure of the same assistant is in the quiet period"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE event = 'ai.failed'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "both are recorded");
}

#[tokio::test]
async fn a_held_notification_goes_out_only_if_it_is_still_the_latest_news() {
    use leadflow_shared::db::notifications::{may_send, raise};
    let app = TestApp::start().await;
    let t = app.tenant.tenant_id;
    let quiet = Duration::from_secs(3600);
    let up = |event: &'static str, subject: &'static str| {
        let pool = app.pool.clone();
        async move {
            let event = leadflow_shared::db::notifications::Event::parse(event).unwrap();
            raise(&pool, t, event, subject, "{}", quiet)
                .await
                .unwrap()
                .notification_id
                .unwrap()
        }
    };
    // down, up, down: the last word is "down", and it differs from the last one sent.
    let (a1, a2, a3) = (
        up("channel.disconnected", "A").await,
        up("channel.reconnected", "A").await,
        up("channel.disconnected", "A").await,
    );
    assert!(may_send(&app.pool, a1).await.unwrap() && may_send(&app.pool, a2).await.unwrap());
    assert!(
        may_send(&app.pool, a3).await.unwrap(),
        "held, then released: still down"
    );
    // down, up, down, up: the held "down" is superseded, the held "up" says nothing new.
    up("channel.disconnected", "B").await;
    up("channel.reconnected", "B").await;
    let (b3, b4) = (
        up("channel.disconnected", "B").await,
        up("channel.reconnected", "B").await,
    );
    assert!(!may_send(&app.pool, b3).await.unwrap());
    assert!(!may_send(&app.pool, b4).await.unwrap());
    // The same event again inside the period: nothing new.
    up("ai.failed", "C").await;
    let c2 = up("ai.failed", "C").await;
    assert!(!may_send(&app.pool, c2).await.unwrap());
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM notifications ORDER BY created_at, id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        statuses,
        ["sent", "sent", "released", "sent", "sent", "dropped", "dropped", "sent", "dropped"]
    );
}

#[tokio::test]
async fn a_failed_check_never_shows_the_instance_token() {
    // A port nobody listens on: every check fails to connect.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = TestApp::builder()
        .env("LEADFLOW_HEALTH_CHECK_INTERVAL", "200ms")
        .env("LEADFLOW_HEALTH_FAILURES_TO_DISCONNECT", "1")
        .start()
        .await;
    let ch = channel(
        &app,
        json!({"name": "Z", "type": "whatsapp", "provider": "z-api",
               "credentials": {"base_url": format!("http://{closed}"), "instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                               "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F"}}),
    )
    .await;
    let shown = eventually(Duration::from_secs(10), "the failed check", || async {
        let (_, c) = app.get(&format!("/backend/channels/{}", ch.id)).await;
        (c["connection"] == "disconnected").then(|| c.to_string())
    })
    .await;
    assert!(shown.contains("could not") || shown.contains("connect"), "{shown}");
    assert!(!shown.contains("F0E1D2C3B4A5968778695A4B3C2D1E0F"), "{shown}");
    let events: Vec<Option<String>> = sqlx::query_scalar("SELECT reason FROM channel_connection_events")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(events
        .iter()
        .flatten()
        .all(|r| !r.contains("F0E1D2C3B4A5968778695A4B3C2D1E0F")));
}
