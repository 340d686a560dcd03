//! Malformed and hostile input, as a fuzzer would send it: whatever bytes reach a
//! webhook (past its signature) get a 2xx or a 4xx, never a 5xx; a NUL character, which
//! PostgreSQL refuses in text, is a 422 naming the field in API input and is dropped from
//! provider input while the message is kept.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::official::{sign, APP_SECRET};
use crate::support::fake_providers::FakeProviders;
use crate::support::{eventually, TestApp};

/// A small deterministic generator (xorshift): the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutations of a real payload: flipped and inserted bytes, NULs (raw and `\u0000`),
/// truncation, huge numbers, deep nesting, wrong types, random bytes.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    match rng.below(9) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
        1 => {
            let i = rng.below(b.len());
            b.truncate(i);
        }
        2 => {
            // A JSON-escaped NUL inside a string value.
            let text = String::from_utf8_lossy(&b).replacen("\": \"", "\": \"\\u0000", 1 + rng.below(5));
            b = text.into_bytes();
        }
        3 => {
            let i = rng.below(b.len());
            b.insert(i, 0);
        }
        4 => b = (0..rng.below(512)).map(|_| rng.next() as u8).collect(),
        5 => b = format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        6 => {
            let text = String::from_utf8_lossy(&b).replacen("\"", "\"1e999999\", \"x\": \"", 1);
            b = text.into_bytes();
        }
        7 => {
            let text = String::from_utf8_lossy(&b).replace(": \"", ": [");
            b = text.into_bytes();
        }
        _ => {
            let text = String::from_utf8_lossy(&b).replacen("\": ", "\": {\"a\": null}, \"b\": ", 1 + rng.below(3));
            b = text.into_bytes();
        }
    }
    b
}

struct Target {
    path: String,
    provider: &'static str,
    seeds: Vec<&'static [u8]>,
}

#[tokio::test]
async fn any_bytes_posted_to_any_webhook_get_a_2xx_or_4xx() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    let base = providers.base_url.clone();
    let mut targets = Vec::new();
    let channels: [(&str, &str, Value, Vec<&'static [u8]>); 7] = [
        (
            "whatsapp",
            "z-api",
            json!({"instance_id": "i", "instance_token": "t", "client_token": "c", "base_url": base}),
            vec![
                include_bytes!("../fixtures/providers/zapi/webhook-received-text.json"),
                include_bytes!("../fixtures/providers/zapi/webhook-received-image.json"),
            ],
        ),
        (
            "whatsapp",
            "evolution-api",
            json!({"base_url": base, "api_key": "k", "instance": "i"}),
            vec![
                include_bytes!("../fixtures/providers/evolution/webhook-messages-upsert-conversation.json"),
                include_bytes!("../fixtures/providers/evolution/webhook-connection-update-close.json"),
            ],
        ),
        (
            "whatsapp",
            "gupshup",
            json!({"api_key": "k", "app_name": "a", "source": "5511912345678", "base_url": base}),
            vec![include_bytes!("../fixtures/providers/gupshup/v2-inbound-text.json")],
        ),
        (
            "whatsapp",
            "meta-cloud",
            json!({"access_token": "t", "phone_number_id": "158072934066266",
                                           "app_secret": APP_SECRET, "verify_token": "v", "base_url": base}),
            vec![
                include_bytes!("../fixtures/providers/meta-cloud/webhook-text.json"),
                include_bytes!("../fixtures/providers/meta-cloud/webhook-image.json"),
            ],
        ),
        (
            "telegram",
            "telegram-bot",
            json!({"bot_token": "1:x", "base_url": base}),
            vec![include_bytes!("../fixtures/providers/telegram/update-text.json")],
        ),
        (
            "sms",
            "twilio",
            json!({"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "tw",
                                 "from": "+551140028922", "base_url": base}),
            vec![include_bytes!("../fixtures/providers/twilio/inbound-sms.form")],
        ),
        (
            "sms",
            "http-sms",
            json!({"send_url": format!("{base}/sms/send")}),
            vec![include_bytes!("../fixtures/providers/http-sms/inbound-text.json")],
        ),
    ];
    for (kind, provider, credentials, seeds) in channels {
        let (status, ch) = app
            .post(
                "/backend/channels",
                &json!({"name": provider, "type": kind, "provider": provider, "credentials": credentials}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{ch}");
        targets.push(Target {
            path: ch["webhook_path"].as_str().unwrap().to_string(),
            provider,
            seeds,
        });
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for t in &targets {
        let telegram_secret = t.path.split("token=").nth(1).unwrap_or_default().to_string();
        for n in 0..60 {
            let seed = t.seeds[n % t.seeds.len()];
            let body = mutate(&mut rng, seed);
            let url = format!("{}{}", app.base, t.path);
            let mut req = app.http.post(&url).body(body.clone());
            req = match t.provider {
                // Signed the provider's way, so the body reaches the parser.
                "meta-cloud" => req.header("x-hub-signature-256", sign(&body)),
                "telegram-bot" => req.header("x-telegram-bot-api-secret-token", &telegram_secret),
                "twilio" => {
                    let fields = leadflow_shared::inbound::form_fields(&body);
                    req.header("content-type", "application/x-www-form-urlencoded").header(
                        "x-twilio-signature",
                        leadflow_providers::twilio::signature("tw", &url, &fields),
                    )
                }
                _ => req.header("content-type", "application/json"),
            };
            let status = req.send().await.unwrap().status();
            assert!(
                !status.is_server_error(),
                "{} answered {status} to {:?}",
                t.provider,
                String::from_utf8_lossy(&body)
            );
            *answered.entry(status.as_u16()).or_default() += 1;
        }
    }
    // The cases reached the parsers: some were taken, some refused as malformed.
    assert!(answered.get(&200).is_some_and(|n| *n > 20), "{answered:?}");
    assert!(answered.get(&422).is_some_and(|n| *n > 20), "{answered:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_nul_is_a_422_naming_the_field_in_api_input_and_dropped_from_provider_input() {
    let providers = FakeProviders::start().await;
    let app = TestApp::start().await;
    app.set_assistant(json!({"debounce_seconds": 0.2})).await;
    let mut m = app.msg("lead-nul", "oi\u{0}tudo bem", false);
    let (status, out) = app.process(&m).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["error"]["field"], json!("content"));
    m["content"] = json!("oi");
    m["lead_id"] = json!("lead\u{0}");
    let (status, out) = app.process(&m).await;
    assert_eq!(out["error"]["field"], json!("lead_id"), "{status} {out}");
    let (status, out) = app
        .post(
            "/backend/channels",
            &json!({"name": "x", "type": "whatsapp", "provider": "z-api",
                    "credentials": {"instance_id": "i\u{0}", "token": "t", "client_token": "c"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(out["error"]["field"], json!("credentials.instance_id"));
    let (status, out) = app.get("/backend/leads/lead%00x/messages").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["error"]["field"], json!("path"));

    // A provider's text with NULs is kept without them and answered.
    let ch = crate::inbound::channel(
        &app,
        json!({"name": "gw", "type": "sms", "provider": "http-sms",
               "credentials": {"send_url": format!("{}/sms/send", providers.base_url)}}),
    )
    .await;
    let body = json!({"id": "gw-\u{0}1", "from": "+5511987654321", "text": "quero\u{0} visitar"});
    let (status, out) = crate::inbound::webhook(&app, &ch.path, &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let sent = providers.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].body["text"], json!("reply to: quero visitar"));
    let stored: String = eventually(Duration::from_secs(5), "the message", || async {
        sqlx::query_scalar("SELECT content FROM messages WHERE role = 'user'")
            .fetch_optional(&app.pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(stored, "quero visitar");
    app.stop().await;
}
