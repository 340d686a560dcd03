//! Tenants kept apart, tried as an attacker would: a tenant posting to its own webhook
//! cannot make Leadflow spend another tenant's credentials or read its files, and one
//! webhook call cannot make the API store or hold unbounded data.

use std::time::Duration;

use leadflow_shared::db::tenants::TenantKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::inbound::{channel, count, webhook};
use crate::official::{post_raw, sign, APP_SECRET};
use crate::support::fake_providers::FakeProviders;
use crate::support::{eventually, TestApp};

/// Tenant B's channels, each pointing at B's own fake provider.
struct Victim {
    providers: FakeProviders,
    meta: String,
    telegram: String,
    evolution: String,
    attachment: uuid::Uuid,
}

async fn victim(app: &TestApp) -> Victim {
    let b = app.other_tenant(TenantKind::Agency, None).await;
    let providers = FakeProviders::start().await;
    providers.host_file("2129384756012345", "photo.jpg");
    providers.host_file("AwACAgEAAxkBAAIEoWdA2k1c", "voice.ogg");
    let create = |body: Value| {
        let key = b.api_key.clone();
        async move {
            let (status, ch) = app.post_as(&key, "/backend/channels", &body).await;
            assert_eq!(status, StatusCode::CREATED, "{ch}");
            ch["id"].as_str().unwrap().to_string()
        }
    };
    let base = providers.base_url.clone();
    let meta = create(
        json!({"name": "B oficial", "type": "whatsapp", "provider": "meta-cloud",
        "credentials": {"access_token": "EAAG-tenant-b-secret-token", "phone_number_id": "158072934066266",
                        "app_secret": APP_SECRET, "verify_token": "b-verify", "base_url": base}}),
    )
    .await;
    let telegram = create(json!({"name": "B bot", "type": "telegram", "provider": "telegram-bot",
        "credentials": {"bot_token": "7000000000:tenant-b-bot-token", "base_url": base}}))
    .await;
    let evolution = create(
        json!({"name": "B evolution", "type": "whatsapp", "provider": "evolution-api",
        "credentials": {"base_url": base, "api_key": "tenant-b-evolution-key", "instance": "b"}}),
    )
    .await;
    // An e-mailed PDF of B's, stored as the mail poller stores attachments.
    let attachment = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO mail_attachments (id, tenant_id, channel_id, file_name, mime, data) VALUES ($1, $2, $3::uuid, 'contrato.pdf', 'application/pdf', $4)")
        .bind(attachment)
        .bind(b.tenant_id)
        .bind(&meta)
        .bind(crate::support::media_server::fixture("text.pdf"))
        .execute(&app.pool)
        .await
        .unwrap();
    Victim {
        providers,
        meta,
        telegram,
        evolution,
        attachment,
    }
}

#[tokio::test]
async fn a_media_url_shaped_like_an_internal_handle_never_reaches_another_tenant() {
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let b = victim(&app).await;
    let gateway = FakeProviders::start().await;
    let a = channel(
        &app,
        json!({"name": "A gateway", "type": "sms", "provider": "http-sms",
               "credentials": {"send_url": format!("{}/sms/send", gateway.base_url)}}),
    )
    .await;
    let simple = |id: &str| id.replace('-', "");
    let handles = [
        (format!("meta-media:{}:2129384756012345", simple(&b.meta)), "image/jpeg"),
        (
            format!("telegram-file:{}:AwACAgEAAxkBAAIEoWdA2k1c", simple(&b.telegram)),
            "audio/ogg",
        ),
        (
            format!("evolution-media:{}:3A8F1C0D2B7E94A61C55", simple(&b.evolution)),
            "audio/ogg",
        ),
        (format!("leadflow-attachment:{}", b.attachment), "application/pdf"),
    ];
    for (i, (url, mime)) in handles.iter().enumerate() {
        let body = json!({"id": format!("probe-{i}"), "from": format!("+55119876543{i:02}"),
                          "text": "olha isso", "media_url": url, "media_type": mime});
        let (status, out) = webhook(&app, &a.path, &body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
    // Each probe is refused with the fixed note, and answered without the medium.
    let errors: Vec<(String, String)> = eventually(Duration::from_secs(20), "four refused media", || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT error_code, error FROM media WHERE status = 'failed' ORDER BY created_at")
                .fetch_all(&app.pool)
                .await
                .unwrap();
        (rows.len() == 4).then_some(rows)
    })
    .await;
    for (code, error) in &errors {
        assert_eq!(code, "media_url_refused");
        assert!(error.contains("the media link is not allowed"), "{error}");
    }
    gateway.wait_for(4, Duration::from_secs(20)).await;
    assert!(
        b.providers.media_requests().is_empty() && b.providers.sent().is_empty(),
        "tenant B's provider was called: {:?}",
        b.providers.media_requests()
    );
    // B's file is still only B's: no medium of A's holds its bytes or its name.
    let leaked = count(
        &app,
        "SELECT count(*) FROM media WHERE data IS NOT NULL OR file_name IS NOT NULL",
    )
    .await;
    assert_eq!(leaked, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_provider_handle_is_resolved_only_with_the_messages_own_channel() {
    // A legitimate Meta image on tenant A's own channel goes through; tenant B's
    // channel, which serves the same media id, is never asked.
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let b = victim(&app).await;
    let mine = FakeProviders::start().await;
    mine.host_file("2129384756012345", "photo.jpg");
    let (status, ch) = app
        .post(
            "/backend/channels",
            &json!({"name": "A oficial", "type": "whatsapp", "provider": "meta-cloud",
                    "credentials": {"access_token": "EAAG-tenant-a-token", "phone_number_id": "158072934066266",
                                    "app_secret": APP_SECRET, "verify_token": "a-verify", "base_url": mine.base_url}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    let body = include_str!("../fixtures/providers/meta-cloud/webhook-image.json").as_bytes();
    let path = format!("/webhooks/{}", ch["id"].as_str().unwrap());
    assert_eq!(
        post_raw(&app, &path, body, &[("x-hub-signature-256", sign(body))]).await,
        StatusCode::OK
    );
    mine.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        mine.media_requests(),
        ["/v23.0/2129384756012345", "/lookaside/photo.jpg"]
    );
    assert!(b.providers.media_requests().is_empty());
    // The handle is kept apart from the user-visible URL.
    let (url, handle): (Option<String>, Option<Value>) =
        sqlx::query_as("SELECT url, media_handle FROM messages WHERE message_type = 'image'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(url, None);
    assert_eq!(
        handle,
        Some(json!({"kind": "meta_media", "media_id": "2129384756012345"}))
    );
    app.stop().await;
}

/// A Meta batch of `n` text messages from distinct leads, signed.
fn meta_batch(n: usize) -> Vec<u8> {
    let messages: Vec<Value> = (0..n)
        .map(|i| {
            json!({"from": format!("55119{i:08}"), "id": format!("wamid.batch{i}"),
                        "timestamp": "1732197600", "type": "text", "text": {"body": format!("oi {i}")}})
        })
        .collect();
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "5511912345678", "phone_number_id": "158072934066266"},
                  "messages": messages}}]}]}),
    )
    .unwrap()
}

#[tokio::test]
async fn one_webhook_call_is_bounded_in_items_and_stores_its_payload_once() {
    let app = TestApp::builder().env("LEADFLOW_WEBHOOK_MAX_ITEMS", "20").start().await;
    let providers = FakeProviders::start().await;
    let (status, ch) = app
        .post(
            "/backend/channels",
            &json!({"name": "oficial", "type": "whatsapp", "provider": "meta-cloud",
                    "credentials": {"access_token": "EAAG-token", "phone_number_id": "158072934066266",
                                    "app_secret": APP_SECRET, "verify_token": "v", "base_url": providers.base_url}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    let path = format!("/webhooks/{}", ch["id"].as_str().unwrap());

    let too_many = meta_batch(21);
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(&too_many))
        .body(too_many.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], json!("too_many_items"));
    let stored = count(&app, "SELECT count(*) FROM inbound_events").await;
    assert_eq!(stored, 0, "nothing of a refused call is stored");

    let batch = meta_batch(20);
    assert_eq!(
        post_raw(&app, &path, &batch, &[("x-hub-signature-256", sign(&batch))]).await,
        StatusCode::OK
    );
    let (events, payloads, bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM inbound_events), (SELECT count(*) FROM webhook_payloads),
                (SELECT COALESCE(sum(pg_column_size(payload)), 0)::bigint FROM inbound_events)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((events, payloads, bytes), (20, 1, 0), "20 events, one payload");
    // Every lead is still answered from the one stored payload.
    providers.wait_for(20, Duration::from_secs(30)).await;
    // A resend is all duplicates and stores no second payload.
    assert_eq!(
        post_raw(&app, &path, &batch, &[("x-hub-signature-256", sign(&batch))]).await,
        StatusCode::OK
    );
    let payloads = count(&app, "SELECT count(*) FROM webhook_payloads").await;
    assert_eq!(payloads, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_shared_meta_app_secret_or_twilio_account_cannot_write_into_another_channel() {
    let app = TestApp::start().await;
    let providers = FakeProviders::start().await;
    let b = app.other_tenant(TenantKind::Agency, None).await;
    // Two tenants' numbers under one Meta app (one app secret).
    let meta = |phone_number_id: &str| {
        json!({"name": "oficial", "type": "whatsapp", "provider": "meta-cloud",
               "credentials": {"access_token": "EAAG-token", "phone_number_id": phone_number_id,
                               "app_secret": APP_SECRET, "verify_token": "v", "base_url": providers.base_url}})
    };
    let (_, a_meta) = app.post("/backend/channels", &meta("111111111111111")).await;
    let (status, _) = app
        .post_as(&b.api_key, "/backend/channels", &meta("158072934066266"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A change about B's number, posted to A's channel with the shared secret.
    let body = include_str!("../fixtures/providers/meta-cloud/webhook-text.json").as_bytes();
    let path = format!("/webhooks/{}", a_meta["id"].as_str().unwrap());
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "acknowledged, so Meta does not retry");
    assert_eq!(resp.json::<Value>().await.unwrap()["stored"], json!(0));

    // Twilio: one account's signature, another account's (or number's) call.
    let token = "tw-token-0123456789";
    let (_, tw) = app
        .post(
            "/backend/channels",
            &json!({"name": "SMS", "type": "sms", "provider": "twilio",
                    "credentials": {"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": token,
                                    "from": "+551140028922", "base_url": providers.base_url}}),
        )
        .await;
    let path = format!("/webhooks/{}", tw["id"].as_str().unwrap());
    let sms = crate::sms::fields(include_str!("../fixtures/providers/twilio/inbound-sms.form"));
    let with = |k: &str, v: &str| {
        let mut f = sms.clone();
        for (name, value) in f.iter_mut() {
            if name == k {
                *value = v.to_string();
            }
        }
        f
    };
    for forged in [
        with("AccountSid", "AC99999999999999999999999999999999"),
        with("To", "+551133334444"),
    ] {
        let (status, twiml) = crate::sms::twilio_post(&app, &path, &forged, token).await;
        assert_eq!(status, StatusCode::OK);
        assert!(twiml.contains("<Response></Response>"), "{twiml}");
    }
    let stored = count(&app, "SELECT count(*) FROM inbound_events").await;
    assert_eq!(stored, 0, "nothing of another channel's calls is stored");
    // The real call to this channel is taken.
    let (status, _) = crate::sms::twilio_post(&app, &path, &sms, token).await;
    assert_eq!(status, StatusCode::OK);
    let stored = count(&app, "SELECT count(*) FROM inbound_events").await;
    assert_eq!(stored, 1);

    // An unknown channel and a wrong token look the same from outside.
    let unknown = webhook(
        &app,
        &format!("/webhooks/{}?token=x", uuid::Uuid::now_v7()),
        &json!({}),
        &[],
    )
    .await;
    let (_, sms_gw) = app
        .post(
            "/backend/channels",
            &json!({"name": "gw", "type": "sms", "provider": "http-sms",
                    "credentials": {"send_url": format!("{}/sms/send", providers.base_url)}}),
        )
        .await;
    let wrong = webhook(
        &app,
        &format!("/webhooks/{}?token=x", sms_gw["id"].as_str().unwrap()),
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Everything Leadflow logs while `f` runs on this thread (a `#[tokio::test]` runs the
/// whole app on it): every level with every span's fields, and what an operator sees at
/// the default `info` level.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_and_no_personal_data_is_logged_at_info() {
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let (all, info) = (Captured::default(), Captured::default());
    let (a, i) = (all.clone(), info.clone());
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || a.clone())
                .with_ansi(false)
                .with_span_events(FmtSpan::NEW)
                .with_filter(EnvFilter::new("trace,hyper=info,h2=info,rustls=info,reqwest=debug")),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || i.clone())
                .with_ansi(false)
                .with_filter(EnvFilter::new("info,sqlx=warn,bullmq=warn")),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    const INSTANCE_TOKEN: &str = "PLANTEDinstanceTOKEN7f3a9c0d1e2f";
    const CLIENT_TOKEN: &str = "PLANTEDclientTOKEN1b2c3d4e5f6a7b";
    const AI_KEY: &str = "sk-PLANTED-operator-ai-key-0001";
    let providers = FakeProviders::start().await;
    let app = TestApp::builder().env("LEADFLOW_AI_API_KEY", AI_KEY).start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let ch = channel(
        &app,
        json!({"name": "WhatsApp", "type": "whatsapp", "provider": "z-api",
               "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775", "instance_token": INSTANCE_TOKEN,
                               "client_token": CLIENT_TOKEN, "base_url": providers.base_url}}),
    )
    .await;
    let payload: Value =
        serde_json::from_str(include_str!("../fixtures/providers/zapi/webhook-received-text.json")).unwrap();
    let (status, _) = webhook(&app, &ch.path, &payload, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = webhook(&app, &format!("/webhooks/{}?token=wrong", ch.id), &payload, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    providers.wait_for(1, Duration::from_secs(20)).await;
    let (status, _) = app.get("/backend/channels").await;
    assert_eq!(status, StatusCode::OK);
    let master_key = app
        .env
        .iter()
        .find(|(k, _)| k == "LEADFLOW_MASTER_KEY")
        .map(|(_, v)| v.clone())
        .unwrap();
    let secrets = [
        ("the channel's webhook token", ch.token.clone()),
        ("the Z-API instance token", INSTANCE_TOKEN.to_string()),
        ("the Z-API client token", CLIENT_TOKEN.to_string()),
        ("the operator's AI key", AI_KEY.to_string()),
        ("the tenant's API key", app.key().to_string()),
        ("the tenant's postback secret", app.tenant.postback_secret.clone()),
        ("the master key", master_key),
    ];
    app.stop().await;
    let (all, info) = (all.text(), info.text());
    assert!(
        all.lines().count() > 100,
        "the capture saw the flow: {} lines",
        all.lines().count()
    );
    for (what, secret) in &secrets {
        assert!(!all.contains(secret.as_str()), "{what} was logged");
    }
    for pii in ["5511987654321", "Vi o anúncio", "Mariana"] {
        assert!(!info.contains(pii), "{pii:?} was logged at info:\n{info}");
    }
}

#[tokio::test]
async fn a_disabled_client_is_disabled_everywhere_and_resumes_new_work_only() {
    use reqwest::Method;
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await; // the agency
    let (status, client) = app.post("/backend/clients", &json!({"name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let client_id = client["tenant_id"].as_str().unwrap().to_string();
    let key = client["api_key"].as_str().unwrap().to_string();
    let assistant = client["assistant_id"].as_str().unwrap().to_string();
    let (status, _) = app
        .send_as(
            &key,
            Method::PATCH,
            &format!("/backend/assistants/{assistant}"),
            Some(&json!({"debounce_seconds": 1.5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, ch) = app
        .post_as(
            &key,
            "/backend/channels",
            &json!({"name": "WhatsApp", "type": "whatsapp", "provider": "z-api",
                    "credentials": {"instance_id": "3E4F7360B552F0C2DBCB9E6774402775",
                                    "instance_token": "F0E1D2C3B4A5968778695A4B3C2D1E0F",
                                    "client_token": "Fa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6S",
                                    "base_url": providers.base_url}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ch}");
    let hook = ch["webhook_path"].as_str().unwrap().to_string();

    // Work in flight when the client is disabled: a burst waiting out its debounce, and
    // an operator's message whose first send the provider refuses (to be retried).
    let msg = json!({"tenant_id": client_id, "lead_id": "lead-queued", "role": "user", "content": "oi",
                     "message_type": "text", "debounce": true, "postback_url": app.receiver.url});
    let (status, out) = app.post_as(&key, "/ai/process", &msg).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let first = crate::inbound::zapi_text("3A0000000000000000A1", "primeira mensagem");
    assert_eq!(webhook(&app, &hook, &first, &[]).await.0, StatusCode::OK);
    eventually(Duration::from_secs(10), "the lead from the webhook", || async {
        let n = count(&app, "SELECT count(*) FROM lead_channels").await;
        (n == 1).then_some(())
    })
    .await;
    let (status, user) = app
        .post_as(&key, "/backend/users", &json!({"name": "Ana", "email": "ana@acme.com"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    providers.push_status(503);
    let (status, out) = app
        .post_as(
            &key,
            "/backend/leads/+5511987654321/messages",
            &json!({"channel_id": ch["id"], "user_id": user["id"], "content": "Olá, aqui é a Ana"}),
        )
        .await;
    assert!(status.is_success(), "{status} {out}");
    providers.wait_for(1, Duration::from_secs(10)).await; // the refused first attempt

    let (status, mail) = app
        .post_as(
            &key,
            "/backend/channels",
            &json!({"name": "E-mail", "type": "email", "provider": "smtp-imap",
                    "credentials": {"smtp_host": "127.0.0.1", "smtp_port": "2525", "username": "u",
                                    "password": "p", "from": "vendas@acme.example"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mail}");
    let mail_id: uuid::Uuid = mail["id"].as_str().unwrap().parse().unwrap();
    let polled = || async { leadflow_shared::db::mailboxes::channels(&app.pool).await.unwrap() };
    assert!(polled().await.contains(&mail_id));

    let (status, _) = app
        .post(&format!("/backend/clients/{client_id}/disable"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!polled().await.contains(&mail_id), "its mailboxes are no longer polled");
    let ai_calls = app.ai.request_count();

    // A webhook while disabled: acknowledged, kept as ignored, not processed.
    let while_off = crate::inbound::zapi_text("3A0000000000000000B2", "estou esperando");
    let (status, out) = webhook(&app, &hook, &while_off, &[]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let note: (String, Option<String>) =
        sqlx::query_as("SELECT status, note FROM inbound_events WHERE dedupe_key = 'msg:3A0000000000000000B2'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(note, ("ignored".into(), Some("the tenant is disabled".into())));

    // Queued work is dropped with its reason when it comes up.
    let (reason,): (Option<String>,) = eventually(Duration::from_secs(15), "the burst dropped", || async {
        sqlx::query_as::<_, (Option<String>,)>(
            "SELECT b.reason FROM bursts b JOIN leads l ON l.id = b.lead_id
             WHERE l.external_id = 'lead-queued' AND b.status = 'dropped'",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(reason.as_deref(), Some("tenant_disabled"));
    let error: String = crate::support::eventually_text(
        &app,
        Duration::from_secs(15),
        "the send refused",
        "SELECT error FROM outbox WHERE content = 'Olá, aqui é a Ana' AND status = 'failed'",
    )
    .await;
    assert!(error.contains("the tenant is disabled"), "{error}");
    assert_eq!(providers.sent().len(), 1, "nothing more was sent");
    assert!(app.receiver.deliveries().is_empty(), "nothing was posted");
    assert_eq!(app.ai.request_count(), ai_calls, "no AI reply");

    // The agency reads but does not act; the client's own key is refused.
    let (status, _) = app
        .get(&format!("/backend/leads/lead-queued/messages?tenant_id={client_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post("/ai/process", &msg).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.post_as(&key, "/ai/process", &msg).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Enabled again: new work runs, what came in meanwhile is not replayed.
    let (status, _) = app
        .post(&format!("/backend/clients/{client_id}/enable"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // (Another lead: the operator's message paused the AI for the first one.)
    let mut after = crate::inbound::zapi_text("3A0000000000000000C3", "voltei");
    after["phone"] = json!("5511912340000");
    after["chatLid"] = Value::Null;
    assert_eq!(webhook(&app, &hook, &after, &[]).await.0, StatusCode::OK);
    let sent = providers.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(sent[1].body["message"], json!("reply to: voltei"));
    let turn = crate::support::last_user_turn(&app.ai.requests().last().unwrap().body);
    assert!(!turn.contains("estou esperando"), "{turn}");
    app.stop().await;
}

#[tokio::test]
async fn a_mail_host_with_url_syntax_is_refused_naming_the_field() {
    let app = TestApp::start().await;
    for (key, host) in [
        ("smtp_host", "user@10.0.0.1"),
        ("smtp_host", "mail.example.com/x"),
        ("imap_host", "imap.example.com#frag"),
        ("imap_host", "imap.example.com?x"),
        ("smtp_host", "mail example.com"),
    ] {
        let mut creds = json!({"smtp_host": "smtp.example.com", "username": "u", "password": "p",
                               "from": "vendas@acme.example"});
        creds[key] = json!(host);
        let (status, out) = app
            .post(
                "/backend/channels",
                &json!({"name": "E-mail", "type": "email", "provider": "smtp-imap", "credentials": creds}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{host}: {out}");
        assert_eq!(out["error"]["field"], json!(format!("credentials.{key}")));
    }
    app.stop().await;
}

/// A server that answers every request 200 with a body that never ends (64 KiB chunks,
/// as fast as the client reads), counting the requests.
async fn endless_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let chunk = axum::body::Bytes::from(vec![b'7'; 64 * 1024]);
            let endless = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(endless),
            )
        }
    });
    (crate::support::serve(app).await, hits)
}

#[tokio::test]
async fn an_endless_answer_from_a_tenant_chosen_server_fails_the_call_not_the_process() {
    let (endless, hits) = endless_server().await;
    let app = TestApp::builder().env("LEADFLOW_MEDIA_MAX_ATTEMPTS", "1").start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let before = crate::support::rss_kib();
    // A send whose provider answers forever.
    let zapi = channel(
        &app,
        json!({"name": "Z", "type": "whatsapp", "provider": "z-api",
               "credentials": {"instance_id": "i", "instance_token": "t", "client_token": "c", "base_url": endless}}),
    )
    .await;
    let text = crate::inbound::zapi_text("3A00000000000000EE01", "oi");
    assert_eq!(webhook(&app, &zapi.path, &text, &[]).await.0, StatusCode::OK);
    // A Telegram getFile that answers forever.
    let tg = channel(
        &app,
        json!({"name": "T", "type": "telegram", "provider": "telegram-bot",
               "credentials": {"bot_token": "1:endless", "base_url": endless}}),
    )
    .await;
    let voice: Value = serde_json::from_str(include_str!("../fixtures/providers/telegram/update-voice.json")).unwrap();
    let (status, _) = webhook(
        &app,
        &format!("/webhooks/{}", tg.id),
        &voice,
        &[("X-Telegram-Bot-Api-Secret-Token", &tg.token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let send_error: String = crate::support::eventually_text(
        &app,
        Duration::from_secs(30),
        "a failed send attempt",
        "SELECT error FROM outbox_attempts ORDER BY id LIMIT 1",
    )
    .await;
    assert!(send_error.contains("larger than the 262144-byte limit"), "{send_error}");
    let (code, media_error): (String, String) = eventually(Duration::from_secs(30), "the medium failed", || async {
        sqlx::query_as("SELECT error_code, error FROM media WHERE status = 'failed'")
            .fetch_optional(&app.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(code, "media_too_large", "{media_error}");
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let grown = crate::support::rss_kib().saturating_sub(before);
    eprintln!("RSS grew by {grown} KiB against endless answers");
    assert!(grown < 100 * 1024, "grew by {grown} KiB");
    app.stop().await;
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_tenants_row_does_not_open_there() {
    use leadflow_shared::db::{self, tenants};
    let app = TestApp::start().await;
    let key = app.config().master_key.unwrap();
    let b = app.other_tenant(TenantKind::Agency, None).await;
    tenants::set_ai_settings(&app.pool, &key, app.tenant.tenant_id, Some("sk-tenant-a"), None)
        .await
        .unwrap();
    // Someone with database access copies A's encrypted key into B's row.
    sqlx::query("UPDATE tenants SET ai_api_key_enc = (SELECT ai_api_key_enc FROM tenants WHERE id = $1) WHERE id = $2")
        .bind(app.tenant.tenant_id)
        .bind(b.tenant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(
        tenants::ai_settings(&app.pool, &key, b.tenant_id).await.is_err(),
        "it does not open in B's row"
    );
    let own = tenants::ai_settings(&app.pool, &key, app.tenant.tenant_id)
        .await
        .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(own.api_key.unwrap().expose_secret(), "sk-tenant-a");

    // A value from before binding (v1) is rebound at start and then opens in its own row only.
    sqlx::query("UPDATE tenants SET ai_api_key_enc = $2 WHERE id = $1")
        .bind(b.tenant_id)
        .bind(key.encrypt(b"sk-legacy-b"))
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(db::rebind_secrets(&app.pool, &key).await.unwrap(), 1);
    assert_eq!(db::rebind_secrets(&app.pool, &key).await.unwrap(), 0, "idempotent");
    let legacy = tenants::ai_settings(&app.pool, &key, b.tenant_id).await.unwrap();
    assert_eq!(legacy.api_key.unwrap().expose_secret(), "sk-legacy-b");
    app.stop().await;
}

#[tokio::test]
async fn webhook_tokens_are_encrypted_at_rest_and_old_plain_ones_are_migrated() {
    let app = TestApp::start().await;
    let providers = FakeProviders::start().await;
    let ch = channel(
        &app,
        json!({"name": "gw", "type": "sms", "provider": "http-sms",
               "credentials": {"send_url": format!("{}/sms/send", providers.base_url)}}),
    )
    .await;
    let (plain, sealed): (Option<String>, Vec<u8>) =
        sqlx::query_as("SELECT webhook_secret, webhook_secret_enc FROM channels WHERE id = $1::uuid")
            .bind(&ch.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(plain, None);
    assert!(
        !String::from_utf8_lossy(&sealed).contains(&ch.token),
        "the token is not stored readable"
    );
    let body = json!({"id": "gw-1", "from": "+5511987654321", "text": "oi"});
    assert_eq!(webhook(&app, &ch.path, &body, &[]).await.0, StatusCode::OK);

    // A channel from before: its token in the clear until the next start rebinds it.
    sqlx::query(
        "UPDATE channels SET webhook_secret = 'legacy-token-0123456789', webhook_secret_enc = NULL WHERE id = $1::uuid",
    )
    .bind(&ch.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let key = app.config().master_key.unwrap();
    assert_eq!(leadflow_shared::db::rebind_secrets(&app.pool, &key).await.unwrap(), 1);
    let plain: Option<String> = sqlx::query_scalar("SELECT webhook_secret FROM channels WHERE id = $1::uuid")
        .bind(&ch.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(plain, None);
    let body = json!({"id": "gw-2", "from": "+5511987654321", "text": "oi de novo"});
    let path = format!("/webhooks/{}?token=legacy-token-0123456789", ch.id);
    assert_eq!(
        webhook(&app, &path, &body, &[]).await.0,
        StatusCode::OK,
        "the old token still works"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_channels_webhooks_are_rate_limited_after_verification() {
    let app = TestApp::builder().env("LEADFLOW_WEBHOOK_RATE_LIMIT", "5").start().await;
    let providers = FakeProviders::start().await;
    let ch = channel(
        &app,
        json!({"name": "gw", "type": "sms", "provider": "http-sms",
               "credentials": {"send_url": format!("{}/sms/send", providers.base_url)}}),
    )
    .await;
    // Forged calls do not spend the channel's budget.
    let forged = format!("/webhooks/{}?token=wrong", ch.id);
    for i in 0..20 {
        let body = json!({"id": format!("f-{i}"), "from": "+5511987654321", "text": "x"});
        assert_eq!(webhook(&app, &forged, &body, &[]).await.0, StatusCode::UNAUTHORIZED);
    }
    let app_ref = &app;
    let calls = (0..30).map(|i| {
        let path = ch.path.clone();
        async move {
            let body = json!({"id": format!("r-{i}"), "from": "+5511987654321", "text": "oi"});
            let resp = app_ref
                .http
                .post(format!("{}{path}", app_ref.base))
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status(), resp.headers().get("retry-after").cloned())
        }
    });
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert!((5..=10).contains(&ok), "{ok} of 30 taken");
    assert!(answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .all(|(_, after)| after.is_some()));
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_clients_pending_postback_is_dropped_when_it_comes_up() {
    let app = TestApp::builder()
        .env("LEADFLOW_POSTBACK_RETRY_SCHEDULE", "2s,2s")
        .start()
        .await;
    let (status, client) = app.post("/backend/clients", &json!({"name": "Acme"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let client_id = client["tenant_id"].as_str().unwrap().to_string();
    let key = client["api_key"].as_str().unwrap().to_string();
    app.receiver.push_status(503);
    let msg = json!({"tenant_id": client_id, "lead_id": "lead-pb", "role": "user", "content": "oi",
                     "message_type": "text", "debounce": true, "postback_url": app.receiver.url});
    assert_eq!(app.post_as(&key, "/ai/process", &msg).await.0, StatusCode::ACCEPTED);
    app.receiver.wait_for_any(1, Duration::from_secs(20)).await; // the refused first attempt
    let (status, _) = app
        .post(&format!("/backend/clients/{client_id}/disable"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let error: String = crate::support::eventually_text(
        &app,
        Duration::from_secs(15),
        "the delivery dropped",
        "SELECT last_error FROM deliveries WHERE status = 'failed'",
    )
    .await;
    assert_eq!(error, "the tenant is disabled");
    assert_eq!(app.receiver.deliveries().len(), 1, "no second attempt was posted");
    app.stop().await;
}
